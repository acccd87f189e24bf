#!/usr/bin/env bash
# Runs one fuzz target: ./run.sh <gguf|hf_dir|prompts> [seconds] [extra libFuzzer flags...]
# Builds first (nightly, release + debug assertions, no sanitizer), then fuzzes with the
# seed corpus, the target's dictionary, one job, a 10 s per-input timeout, 2 GiB RSS limit.
set -euo pipefail
cd "$(dirname "$0")"
target=$1; secs=${2:-600}; shift $(( $# < 2 ? $# : 2 ))
cargo +nightly fuzz build -O -a -s none "$target"
mkdir -p "corpus/$target" "artifacts/$target" logs
bin=target/x86_64-unknown-linux-gnu/release/$target
exec "$bin" "corpus/$target" "seeds/$target" -dict="dicts/$target.dict" \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -jobs=1 -workers=1 \
    -artifact_prefix="artifacts/$target/" "$@"
