#!/usr/bin/env python3
"""llama.cpp side of `cargo xtask bench`: the same GGUF, prompt tokens and thread count.

    python3 scripts/bench_llamacpp.py --plan runs/bench/<model>/plan.json --out llamacpp.json

Needs PyPI `llama-cpp-python` (it builds llama.cpp from source: about 5 minutes on 2
cores): `pip install llama-cpp-python==0.3.36`. Measures, with the plan's token ids and
`n_threads` = the plan's thread count, llama.cpp's own weights (as stored in the GGUF):
- prefill: one evaluation of the prefill prompt into a fresh context;
- AR decoding: greedy, one token per evaluation, no stop tokens, the prompt's prefill
  included in the time (as our decoding figures are).
Writes the bench's `Measured` JSON (xtask/src/commands/bench/plan.rs). Exits 3 when the
plan's model is not a GGUF file.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import llama_cpp
import numpy as np


def speed(tokens: int, forwards: int, seconds: float) -> dict:
    return {
        "tokens": tokens,
        "forwards": forwards,
        "seconds": seconds,
        "tokens_per_second": tokens / max(seconds, 1e-9),
        "tokens_per_forward": tokens / max(forwards, 1),
        "peak_rss_mib": None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plan", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    plan = json.load(open(args.plan))
    model_path = plan["model"]
    if not str(model_path).endswith(".gguf"):
        print(f"llama.cpp needs a GGUF model; {model_path} is not one", file=sys.stderr)
        return 3
    threads = plan["threads"]
    n_ctx = max(len(plan["prefill"]), len(plan["prompt"]) + plan["max_new_tokens"]) + 8
    started = time.perf_counter()
    llm = llama_cpp.Llama(model_path=str(model_path), n_ctx=n_ctx, n_threads=threads,
                          n_threads_batch=threads, n_batch=max(n_ctx, 512), verbose=False)
    load_seconds = time.perf_counter() - started
    repeats = max(plan["repeats"], 1)
    n_vocab = llm.n_vocab()

    def prefill() -> float:
        llm.reset()
        started = time.perf_counter()
        llm.eval(plan["prefill"])
        return time.perf_counter() - started

    def decode() -> tuple[float, list[int]]:
        llm.reset()
        started = time.perf_counter()
        llm.eval(plan["prompt"])
        out = []
        for _ in range(plan["max_new_tokens"]):
            # The last evaluated token's logits (0.3.x keeps `scores` only with logits_all).
            logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(n_vocab,))
            token = int(np.argmax(logits))
            out.append(token)
            llm.eval([token])
        return time.perf_counter() - started, out

    prefill()  # warm-up
    prefill_seconds = min(prefill() for _ in range(repeats))
    runs = [decode() for _ in range(repeats)]
    decode_seconds = min(s for s, _ in runs)
    tokens = runs[0][1]
    n = plan["max_new_tokens"]
    measured = {
        "implementation": "llama.cpp",
        "backend": f"llama-cpp-python {llama_cpp.__version__}, GGUF weights as stored",
        "threads": threads,
        "load_seconds": load_seconds,
        "load_peak_rss_mib": None,
        "prefill": speed(len(plan["prefill"]), 1, prefill_seconds),
        "ar": speed(n, n + 1, decode_seconds),
        "static": None,
        "dynamic": None,
        "train": None,
        "outputs": {"ar": tokens},
        "notes": [],
    }
    json.dump(measured, open(args.out, "w"), indent=2)
    print(f"llama.cpp: prefill {measured['prefill']['tokens_per_second']:.1f} tok/s, "
          f"AR decode {measured['ar']['tokens_per_second']:.1f} tok/s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
