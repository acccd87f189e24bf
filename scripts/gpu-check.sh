#!/usr/bin/env bash
# GPU check of a CUDA build: correctness (CUDA logits vs CPU logits) and speed (AR vs
# dynamic block decoding, one OPDLM training step) on a random-weight Qwen3-0.6B.
# Builds nothing and needs no network on the GPU host; every step is under `timeout`:
# 10 minutes at most on one GPU, 5 more with XTASK_FUSED, 5 more with the data-parallel
# steps of a multi-GPU host (on an H200, steps 1-3 took 2.3 minutes).
#
# 1. Build the binary beforehand, on any machine with the Rust toolchain (no CUDA toolkit
#    needed: cudarc loads the driver and NVRTC at run time; the default `ndarray` feature
#    stays on and serves as the CPU reference):
#        cargo build --release -p xtask --features ddp      # ddp = cuda + burn-train's DDP
#        mkdir -p gpu-bin && strip -o gpu-bin/xtask target/release/xtask
#    Without `nvcc` there, prefix the build with the host's CUDA version, e.g.
#    CUDARC_CUDA_VERSION=13000 (CUDA 13.0, what the H200 run used; README, "GPU check").
# 2. Copy the repository (tests/fixtures is needed, .cache is not) and gpu-bin/xtask to the
#    GPU host, and run from the repository root:
#        XTASK=gpu-bin/xtask scripts/gpu-check.sh [OUT_DIR]      # default OUT_DIR: runs/gpu-check
#
# Results: OUT_DIR/summary.md (everything below), logits-check-*.json, bench/report.{md,json}.
# Environment: XTASK (binary), BACKEND (default cuda; wgpu works too with a wgpu build),
# CACHE (where the random model is written, default .cache/bench), XTASK_FUSED (optional: a
# second binary built with `--features cuda,fusion`, measured beside the first), SKIP_TRAINING=1
# (leaves out steps 4-5, e.g. when scripts/gpu-conversion.sh trains in the same lease).
set -uo pipefail

XTASK="${XTASK:-gpu-bin/xtask}"
BACKEND="${BACKEND:-cuda}"
OUT="${1:-runs/gpu-check}"
CACHE="${CACHE:-.cache/bench}"   # where the random model is written (not under OUT: 1.2 GB)
mkdir -p "$OUT"
SUMMARY="$OUT/summary.md"
: > "$SUMMARY"
say() { echo "$@" | tee -a "$SUMMARY"; }
status=0

if [[ ! -x "$XTASK" ]]; then
    echo "error: $XTASK is not an executable; build it first (see the top of this script)" >&2
    exit 2
fi

# cubecl-cuda compiles its kernels with NVRTC at run time. If the dynamic loader does not
# know libnvrtc, look where CUDA installs and pip wheels put it.
if ! ldconfig -p 2>/dev/null | grep -q 'libnvrtc\.so'; then
    lib=$(find /usr/local/cuda/ /usr/local/ /usr/lib/ /opt/ -name 'libnvrtc.so*' 2>/dev/null | head -1)
    if [[ -n "$lib" ]]; then
        export LD_LIBRARY_PATH="$(dirname "$lib")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    fi
fi

say "# GPU check ($BACKEND), $(date -u +%Y-%m-%dT%H:%MZ)"
say ""
say '```'
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 || echo "nvidia-smi unavailable"; } | tee -a "$SUMMARY"
say "host: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
say "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
say '```'

# Runs a step under a time limit, keeping its output in the summary.
step() {
    local limit="$1" title="$2"
    shift 2
    say ""
    say "## $title"
    say ""
    say '```'
    say "\$ $*"
    local started=$SECONDS
    timeout "$limit" "$@" 2>&1 | tee -a "$SUMMARY"
    local rc=${PIPESTATUS[0]}
    say '```'
    say "(exit $rc, $((SECONDS - started)) s)"
    [[ $rc -eq 0 ]] || status=1
}

# 1. Correctness on the parity fixtures: CUDA vs CPU (and vs transformers' logits).
for fixture in tests/fixtures/tiny-qwen3 tests/fixtures/tiny-llama; do
    step 75 "logits: $fixture" "$XTASK" bench --logits-check "$fixture" --backends "$BACKEND" --out "$OUT"
done

# 2. Speed on random-weight Qwen3-0.6B (the bench writes the model once, ≈ 1.2 GB), with
#    the GPU's memory sampled alongside.
MEM="$OUT/gpu-memory.csv"
if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 500 > "$MEM" 2>/dev/null &
    SAMPLER=$!
fi
step 210 "speed: Qwen3-0.6B (random weights)" "$XTASK" bench --models qwen3 --backends "$BACKEND" --no-baseline \
    --max-new-tokens 64 --repeats 2 --train-rollout-len 32 --cache "$CACHE" --out "$OUT/bench"
if [[ -n "${SAMPLER:-}" ]]; then
    kill "$SAMPLER" 2>/dev/null
    say ""
    say "peak GPU memory used during the speed run: $(sort -n "$MEM" | tail -1) MiB"
fi

# 3. Correctness at full size: the same Qwen3-0.6B, CUDA vs CPU logits (16 tokens).
MODEL=$(ls -d "$CACHE"/qwen3-0.6b-random-seed0 2>/dev/null)
if [[ -n "$MODEL" ]]; then
    step 90 "logits: Qwen3-0.6B (random weights)" "$XTASK" bench --logits-check "$MODEL" --backends "$BACKEND" --out "$OUT"
fi

# 3b. With XTASK_FUSED naming a build with burn's kernel fusion and autotuning
#     (`--features cuda,fusion`): its tiny-fixture logits and the same speed run, for an
#     A/B against the build above in one session.
if [[ -n "${XTASK_FUSED:-}" ]]; then
    step 75 "logits with fusion: tests/fixtures/tiny-qwen3" "$XTASK_FUSED" bench --logits-check \
        tests/fixtures/tiny-qwen3 --backends "$BACKEND" --out "$OUT/fused"
    step 240 "speed with fusion: Qwen3-0.6B (random weights)" "$XTASK_FUSED" bench --models qwen3 \
        --backends "$BACKEND" --no-baseline --max-new-tokens 64 --repeats 2 --train-rollout-len 32 \
        --cache "$CACHE" --out "$OUT/bench-fused"
fi

# 4. The whole training path on 1 GPU: the built-in run for 6 steps (rollouts, teacher,
#    loss, optimizer, checkpoint, export) and its evaluation.
# (Steps 4 and 5 are a function so that SKIP_TRAINING=1 can leave them out.)
training_checks() {
step 150 "training: built-in run, 6 steps on 1 GPU" "$XTASK" train --backend "$BACKEND" \
    --steps 6 --checkpoint-every 6 --out "$OUT/train-1-gpu"

# 5. Data parallelism (issue 16), where the host has several GPUs: the built-in run on all
#    of them with burn-train's multi-device strategy (main-device) and with its DDP (NCCL;
#    CUDA only), then the losses side by side against the 1-GPU run (they should agree to
#    float rounding) and the step times.
GPUS=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
if (( GPUS >= 2 )); then
    strategies=(main-device)
    [[ "$BACKEND" == cuda ]] && strategies+=(ddp)
    for strategy in "${strategies[@]}"; do
        step 150 "data-parallel: built-in run, 6 steps on $GPUS GPUs, --strategy $strategy" "$XTASK" train \
            --backend "$BACKEND" --devices "$GPUS" --strategy "$strategy" --steps 6 --checkpoint-every 6 \
            --out "$OUT/train-$GPUS-gpus-$strategy"
        step 10 "data-parallel: 1 GPU vs $GPUS GPUs ($strategy)" python3 - "$OUT/train-1-gpu" \
            "$OUT/train-$GPUS-gpus-$strategy" <<'PY'
import json, sys
logs = [[json.loads(l) for l in open(f"{d}/metrics.jsonl")] for d in sys.argv[1:]]
for a, b in zip(*logs):
    step = lambda m: m["rollout_seconds"] + m["teacher_seconds"] + m["student_seconds"]
    print(f"step {a['step']}: loss {a['loss']:.6f} vs {b['loss']:.6f} (|Δ| {abs(a['loss'] - b['loss']):.2e}); "
          f"step time {step(a):.3f} s vs {step(b):.3f} s")
PY
    done
else
    say ""
    say "data-parallel check skipped: $GPUS GPU(s) on this host"
fi
}

if [[ "${SKIP_TRAINING:-0}" == 1 ]]; then
    say ""
    say "training checks skipped (SKIP_TRAINING=1)"
else
    training_checks
fi

say ""
say "overall: $([[ $status -eq 0 ]] && echo ok || echo 'FAILED (see above)')"
exit $status
