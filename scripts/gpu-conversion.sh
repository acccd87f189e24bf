#!/usr/bin/env bash
# The SmolLM2 conversion (`xtask experiment smollm2`) on one GPU, at a budget that fits a
# short GPU lease, then a chat decode of the export. Builds nothing and needs no network.
#
#     XTASK=gpu-bin/xtask TEACHER=<SmolLM2-135M-Instruct.Q4_1.gguf> scripts/gpu-conversion.sh [OUT_DIR]
#
# Build the binary as scripts/gpu-check.sh says. The GGUF is the one
# scripts/fetch-smollm2.sh fetches (sha256 b179c952…); the run checks that hash.
# Results: OUT_DIR holds the experiment's report.{md,json}, PNGs, prompts, evaluations
# and training log; its checkpoints and export stay in WORK (default /tmp/gpu-conversion).
# The budget: STEPS (default 24) of BATCH prompts (default 32), the rollout length ramped
# 16 → 64 tokens over RAMP steps (default half of STEPS), a checkpoint and curve point every
# EVERY steps (default a third of STEPS). TIMEOUT (seconds, default none) bounds the
# experiment, so that what it wrote still comes back within a lease.
set -uo pipefail

XTASK="${XTASK:-gpu-bin/xtask}"
TEACHER="${TEACHER:-.cache/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf}"
BACKEND="${BACKEND:-cuda}"
OUT="${1:-runs/gpu-conversion}"
WORK="${WORK:-/tmp/gpu-conversion}"
PINNED=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
mkdir -p "$OUT"

if [[ "$(sha256sum "$TEACHER" | cut -d' ' -f1)" != "$PINNED" ]]; then
    echo "error: $TEACHER is not the pinned SmolLM2-135M-Instruct Q4_1 GGUF (sha256 $PINNED)" >&2
    exit 2
fi
if ! ldconfig -p 2>/dev/null | grep -q 'libnvrtc\.so'; then
    lib=$(find /usr/local/cuda/ /usr/local/ /usr/lib/ /opt/ -name 'libnvrtc.so*' 2>/dev/null | head -1)
    [[ -n "$lib" ]] && export LD_LIBRARY_PATH="$(dirname "$lib")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi

# More prompts per step than the CPU run's 8 (a GPU step is launch-bound: 32 prompts cost
# about what 8 do), the student's pass over a batch in one padded forward (the 12-step
# pilot at 4f95778 ran one pass per prompt length: 5-13 s a step; in one pass at 045b50e,
# 0.3-1.6 s after the first steps); evaluation batches of 100 prompts, tok/s at batch 1 on 4.
STEPS="${STEPS:-24}"
BATCH="${BATCH:-32}"
RAMP="${RAMP:-$((STEPS / 2))}"
EVERY="${EVERY:-$((STEPS / 3))}"
timeout "${TIMEOUT:-0}" "$XTASK" experiment smollm2 --backend "$BACKEND" --teacher "$TEACHER" --out "$WORK" \
    --steps "$STEPS" --batch-size "$BATCH" --rollout-len-ramp "$RAMP" --checkpoint-every "$EVERY" \
    --student-passes one --eval-batch 100 --batch1-prompts 4 2>&1 | tee "$OUT/experiment.log"
status=${PIPESTATUS[0]}

# What comes back: everything but the checkpoints and the exported weights.
for item in report.md report.json agreement.png tokens_per_forward.png; do
    cp "$WORK/$item" "$OUT/" 2>/dev/null
done
cp "$WORK/run/metrics.jsonl" "$OUT/" 2>/dev/null
tar czf "$OUT/eval-and-prompts.tgz" -C "$WORK" eval prompts 2>/dev/null

if [[ $status -eq 0 ]]; then
    "$XTASK" infer --backend "$BACKEND" --model "$WORK/run/model" --chat \
        --prompt "Noah had 63 stamps and gave away 21. How many stamps are left?" 2>&1 | tee "$OUT/infer.log"
    status=${PIPESTATUS[0]}
fi
echo "gpu-conversion: exit $status"
exit $status
