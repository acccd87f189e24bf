#!/usr/bin/env python3
"""PyTorch baseline of `cargo xtask bench`: the same workload in transformers on CPU.

    python3 scripts/bench_baseline.py --plan runs/bench/<model>/plan.json --out pytorch.json

The bench writes the plan (model path, token ids, sizes, thread count) and reads the result;
the JSON keys mirror `xtask/src/commands/bench/plan.rs` (`Plan` in, `Measured` out).

What is measured, with the same token ids, weights (f32) and thread count as our side:
- prefill: one forward over the prefill prompt into a fresh cache, logits of the last
  position only (`logits_to_keep=1`);
- AR decoding: greedy, KV-cached, one token per forward, no stop tokens (the usual
  transformers loop without `generate`'s bookkeeping);
- block diffusion (static / dynamic γ): the same sampler as ours, written plainly on top of
  transformers: per block, a forward over the pending committed slots plus the active block
  against a `DynamicCache` with a custom 4-D block-causal mask, the cache cropped back to the
  committed prefix after each pass;
- one OPDLM training step on the plan's batch of prompts (one token length): one batched
  student rollout (dynamic γ, temperature from the plan, rows in lockstep), one state per
  block per row, one causal teacher pass, one student pass on the BD3LM layout
  [prompt | x0 | x_t], forward KL over the teacher's top-k tokens (or the full vocabulary),
  backward, clip_grad_norm_(1.0), AdamW.
Peak memory is the process's VmHWM, reset before each phase through /proc/self/clear_refs.

Requirements: pip install torch --index-url https://download.pytorch.org/whl/cpu; pip install
transformers gguf accelerate (gguf and accelerate only for .gguf models).
"""

from __future__ import annotations

import argparse
import inspect
import json
import re
import time
from pathlib import Path

import torch
import transformers
from transformers import AutoModelForCausalLM, DynamicCache

NEVER = -1e9  # logit of the mask token in the training loss (as ours)
# transformers 5.x renames `past_key_values` to `cache` (the old name warns, then goes).
CACHE_ARG = "cache" if "cache" in inspect.signature(transformers.LlamaModel.forward).parameters else "past_key_values"


# --- memory -------------------------------------------------------------------------------

def reset_peak_rss() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_rss_mib() -> float | None:
    try:
        m = re.search(r"VmHWM:\s+(\d+)", Path("/proc/self/status").read_text())
    except OSError:
        return None
    return int(m.group(1)) / 1024 if m else None


def speed(tokens: int, forwards: int, seconds: float, rss: float | None) -> dict:
    return {
        "tokens": tokens,
        "forwards": forwards,
        "seconds": seconds,
        "tokens_per_second": tokens / max(seconds, 1e-9),
        "tokens_per_forward": tokens / max(forwards, 1),
        "peak_rss_mib": rss,
    }


# --- model --------------------------------------------------------------------------------

def load(plan: dict) -> torch.nn.Module:
    path = Path(plan["model"])
    if path.suffix.lower() == ".gguf":
        model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    else:
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32)
    model.eval()
    # The mask token: a spare embedding row, or a new one initialised to the mean row (as ours).
    rows = model.get_input_embeddings().weight.shape[0]
    if plan["mask_token_id"] >= rows:
        with torch.no_grad():
            mean = model.get_input_embeddings().weight.mean(0)
            model.resize_token_embeddings(rows + 1, mean_resizing=False)
            model.get_input_embeddings().weight[rows] = mean
            out = model.get_output_embeddings()
            if out is not None and out.weight.data_ptr() != model.get_input_embeddings().weight.data_ptr():
                out.weight[rows] = 0.0
    return model


def ids(tokens: list[int]) -> torch.Tensor:
    return torch.tensor([tokens], dtype=torch.long)


def cache_kwargs(cache: DynamicCache) -> dict:
    """The cache argument: `cache` in recent transformers, `past_key_values` before."""
    return {CACHE_ARG: cache}


def crop_to(cache: DynamicCache, length: int) -> None:
    remove = cache.get_seq_length() - length
    if remove > 0:
        cache.crop(-remove)  # a negative argument removes that many tokens (all versions)


# --- prefill and AR -----------------------------------------------------------------------

@torch.no_grad()
def prefill(model, tokens: list[int]) -> float:
    started = time.perf_counter()
    out = model(ids(tokens), use_cache=True, logits_to_keep=1)
    out.logits[0, -1].argmax().item()
    return time.perf_counter() - started


@torch.no_grad()
def autoregressive(model, prompt: list[int], new: int, mask_id: int) -> dict:
    started = time.perf_counter()
    cache = DynamicCache(config=model.config)
    out = model(ids(prompt), **cache_kwargs(cache), use_cache=True, logits_to_keep=1)
    produced = []
    for step in range(new):
        logits = out.logits[0, -1]
        logits[mask_id] = float("-inf")
        token = int(logits.argmax())
        produced.append(token)
        if step + 1 < new:
            out = model(ids([token]), **cache_kwargs(cache), use_cache=True)
    return {"tokens": produced, "forwards": new, "seconds": time.perf_counter() - started}


# --- block diffusion ----------------------------------------------------------------------

def static_schedule(masked: int, steps: int) -> list[int]:
    steps = max(1, min(steps, max(masked, 1)))
    return [masked // steps + (1 if i < masked % steps else 0) for i in range(steps)]


def commit(rule: str, threshold: float, conf: list[float], floor: int) -> list[int]:
    floor = min(floor, len(conf))
    order = sorted(range(len(conf)), key=lambda i: (-conf[i], i))
    chosen = [i for i in range(len(conf)) if conf[i] > threshold] if rule == "dynamic" else []
    for i in order:
        if len(chosen) >= floor:
            break
        if i not in chosen:
            chosen.append(i)
    return sorted(chosen)


def block_causal_mask(queries: range, keys: int, block: int) -> torch.Tensor:
    """[1, 1, q, k] bool, True = may attend: key block ≤ query block."""
    q = torch.tensor(list(queries)).unsqueeze(1) // block
    k = torch.arange(keys).unsqueeze(0) // block
    return (k <= q).unsqueeze(0).unsqueeze(0)


@torch.no_grad()
def diffusion_decode(model, prompts, new, block, rule, threshold, shift, mask_id, temperature=0.0, generator=None) -> dict:
    """The block-diffusion sampler of `inference/src/block_diffusion.rs` as it was before
    rows advanced on their own: rows in lockstep, each forward takes every row's window,
    and a block ends when every row has committed it. The prompts share one length, so the
    rows share windows and positions. Ours now lets each row move to its next block as
    soon as it is done; with the bench's unconverted model (about one token per step for
    every row) the two take nearly the same passes."""
    started = time.perf_counter()
    p = len(prompts[0])
    assert all(len(prompt) == p for prompt in prompts), "prompts of one length"
    total, batch = p + new, len(prompts)
    rows = [list(prompt) + [None] * new for prompt in prompts]
    unmask_step = [[0] * total for _ in prompts]
    cache = DynamicCache(config=model.config)
    cache_len, carry, steps, forwards = 0, None, 0, 0
    block_start = p // block * block
    while block_start < total:
        block_end = min(block_start + block, total)
        masked = [[s for s in range(block_start, block_end) if row[s] is None] for row in rows]
        schedule = static_schedule(len(masked[0]), block)  # rows share the block's shape
        block_step = 0
        window_end = block_start if shift and block == 1 else block_end
        while any(masked):
            # 1. Forward every row's pending committed slots and active block against the cache.
            window = range(cache_len, window_end)
            tokens = [[mask_id if row[s] is None else row[s] for s in window] for row in rows]
            out = model.model(
                input_ids=torch.tensor(tokens, dtype=torch.long),
                position_ids=torch.tensor([list(window)] * batch),
                attention_mask=block_causal_mask(window, window_end, block),
                **cache_kwargs(cache),
                use_cache=True,
            )
            forwards += 1
            hidden = out.last_hidden_state
            pending = block_start - cache_len
            crop_to(cache, block_start)
            if shift and pending > 0:
                carry = hidden[:, pending - 1]
            cache_len = block_start
            # 2. The hidden state that predicts each masked slot, all rows in one projection.
            picks = [(b, s) for b in range(batch) for s in masked[b]]
            states = []
            for b, s in picks:
                source = s - int(shift)
                states.append(hidden[b, source - window.start] if window.start <= source < window_end else carry[b])
            logits = model.lm_head(torch.stack(states))
            logits[:, mask_id] = float("-inf")
            probs = logits.softmax(-1)
            if temperature == 0:
                conf, chosen = probs.max(-1)
            else:
                chosen = torch.multinomial((logits / temperature).softmax(-1), 1, generator=generator).squeeze(1)
                conf = probs.gather(1, chosen.unsqueeze(1)).squeeze(1)
            conf, chosen = conf.tolist(), chosen.tolist()
            # 3. Commit, row by row.
            last = block_step + 1 >= len(schedule)
            first = 0
            for b in range(batch):
                n = len(masked[b])
                if n:
                    floor = n if last else schedule[block_step]
                    for i in commit(rule, threshold, conf[first:first + n], floor):
                        rows[b][masked[b][i]] = chosen[first + i]
                        unmask_step[b][masked[b][i]] = steps
                first += n
            steps += 1
            block_step += 1
            masked = [[s for s in m if rows[b][s] is None] for b, m in enumerate(masked)]
        block_start = block_end
    return {
        "tokens": [row[p:] for row in rows],
        "first_unmask_step": [steps_of[p:] for steps_of in unmask_step],
        "forwards": forwards,
        "seconds": time.perf_counter() - started,
    }


def single(out: dict) -> dict:
    """A one-row decoding's result with the row unwrapped."""
    return {**out, "tokens": out["tokens"][0], "first_unmask_step": out["first_unmask_step"][0]}


# --- training step ------------------------------------------------------------------------

def select_masked(first_unmask_step: list[int], p: int, block: int, generator) -> list[bool]:
    """One state per block (`StateSelection::PerBlock`): a uniformly chosen step at which
    the block changed; slots unmasked at or after it are masked."""
    masked = [False] * len(first_unmask_step)
    j = 0
    while j < len(first_unmask_step):
        end = min(len(first_unmask_step), ((p + j) // block + 1) * block - p)
        steps = sorted(set(first_unmask_step[j:end]))
        chosen = steps[int(torch.randint(len(steps), (1,), generator=generator))]
        for k in range(j, end):
            masked[k] = first_unmask_step[k] >= chosen
        j = end
    return masked


def training_mask(p: int, r: int, block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions and [1, 1, L, L] mask (True = attend) of the BD3LM layout [prompt | x0 | x_t]."""
    total, noisy_start = p + r, p // block * block
    clean = torch.arange(total)
    noisy = torch.arange(noisy_start, total)
    cb, nb = clean // block, noisy // block
    clean_clean = cb.unsqueeze(0) <= cb.unsqueeze(1)
    clean_noisy = torch.zeros(total, len(noisy), dtype=torch.bool)
    noisy_clean = cb.unsqueeze(0) < nb.unsqueeze(1)
    noisy_noisy = nb.unsqueeze(0) == nb.unsqueeze(1)
    mask = torch.cat([torch.cat([clean_clean, clean_noisy], 1), torch.cat([noisy_clean, noisy_noisy], 1)], 0)
    return torch.cat([clean, noisy]).unsqueeze(0), mask.unsqueeze(0).unsqueeze(0)


def log_probs(logits: torch.Tensor, mask_id: int) -> torch.Tensor:
    logits = logits.clone()
    logits[:, mask_id] = NEVER
    return logits.log_softmax(-1)


def divergence(teacher: torch.Tensor, student: torch.Tensor, top_k: int) -> torch.Tensor:
    """Forward KL per slot, over the teacher's top-k tokens (unrenormalised) or all."""
    if top_k > 0:
        teacher, chosen = teacher.topk(top_k, -1)
        student = student.gather(-1, chosen)
    return (teacher.exp() * (teacher - student)).sum(-1)


def train_step(model, plan: dict, optimizer: torch.optim.Optimizer) -> dict:
    train, block, mask_id = plan["train"], plan["block_size"], plan["mask_token_id"]
    prompts = train["prompts"]
    n, p = len(prompts), len(prompts[0])
    generator = torch.Generator().manual_seed(train["seed"])
    reset_peak_rss()
    started = time.perf_counter()

    # 1. One batched student rollout (no logit shift: a student predicts slot i at position i).
    rollout = diffusion_decode(model, prompts, train["rollout_len"], block, "dynamic", plan["threshold"], False, mask_id,
                               train["temperature"], generator)
    responses, r = rollout["tokens"], train["rollout_len"]
    rollout_seconds = time.perf_counter() - started

    # 2. State x_t of each row: one visited state per block.
    masked = [select_masked(steps, p, block, generator) for steps in rollout["first_unmask_step"]]
    picks = [(b, j) for b in range(n) for j in range(r) if masked[b][j]]
    rows = torch.tensor([b for b, _ in picks])
    # Each row's loss is its slots' mean; the step's is the mean over rows.
    per_row = [sum(1 for c, _ in picks if c == b) for b in range(n)]
    weights = torch.tensor([1.0 / (per_row[b] * n) for b, _ in picks])

    # 3. Teacher: one causal pass on [prompt | x0[:-1]]; position p + j - 1 predicts slot j.
    t0 = time.perf_counter()
    with torch.no_grad():
        inputs = torch.tensor([prompt + response[:-1] for prompt, response in zip(prompts, responses)])
        hidden = model.model(input_ids=inputs).last_hidden_state
        teacher = log_probs(model.lm_head(hidden[rows, torch.tensor([p + j - 1 for _, j in picks])]), mask_id)
    teacher_seconds = time.perf_counter() - t0

    # 4. Student: one pass on [prompt | x0 | x_t] for the batch, forward KL, backward.
    t0 = time.perf_counter()
    noisy_start = p // block * block
    packed = [prompt + response + prompt[noisy_start:] + [mask_id if m else t for t, m in zip(response, masks)]
              for prompt, response, masks in zip(prompts, responses, masked)]
    positions, mask = training_mask(p, r, block)
    hidden = model.model(input_ids=torch.tensor(packed), position_ids=positions.expand(n, -1),
                         attention_mask=mask).last_hidden_state
    at = torch.tensor([(p + r) + (p - noisy_start) + j for _, j in picks])
    student = log_probs(model.lm_head(hidden[rows, at]), mask_id)
    loss = (divergence(teacher, student, train["top_k"]) * weights).sum()
    loss.backward()
    student_seconds = time.perf_counter() - t0

    # 5. Clip and AdamW.
    t0 = time.perf_counter()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    optimizer_seconds = time.perf_counter() - t0
    return {
        "rollout_seconds": rollout_seconds,
        "teacher_seconds": teacher_seconds,
        "student_seconds": student_seconds,
        "optimizer_seconds": optimizer_seconds,
        "total_seconds": time.perf_counter() - started,
        "rollout_tokens": n * r,
        "rollout_forwards": rollout["forwards"],
        "loss": loss.item(),
        "peak_rss_mib": peak_rss_mib(),
    }


# --- driver -------------------------------------------------------------------------------

def best_of(repeats: int, run) -> dict:
    results = [run() for _ in range(max(1, repeats))]
    return min(results, key=lambda s: s["seconds"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--plan", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    plan = json.loads(args.plan.read_text())
    transformers.utils.logging.disable_progress_bar()
    torch.set_num_threads(plan["threads"])
    torch.set_num_interop_threads(1)
    name = plan["name"]
    mask_id, shift, block, new = plan["mask_token_id"], plan["decode_shift"], plan["block_size"], plan["max_new_tokens"]
    measured = {
        "implementation": "pytorch",
        "backend": f"torch {torch.__version__}, transformers {transformers.__version__}, {torch.get_num_threads()} threads",
        "threads": plan["threads"],
        "notes": [],
    }

    reset_peak_rss()
    started = time.perf_counter()
    model = load(plan)
    measured["load_seconds"] = time.perf_counter() - started
    measured["load_peak_rss_mib"] = peak_rss_mib()
    print(f"[pytorch] {name}: loaded in {measured['load_seconds']:.1f} s", flush=True)
    prefill(model, plan["prompt"][:8])  # warm-up, untimed

    def timed_prefill():
        reset_peak_rss()
        seconds = prefill(model, plan["prefill"])
        return speed(len(plan["prefill"]), 1, seconds, peak_rss_mib())

    def timed(run):
        def go():
            reset_peak_rss()
            out = run()
            return {**speed(len(out["tokens"]), out["forwards"], out["seconds"], peak_rss_mib()), "output": out["tokens"]}
        return go

    prompt = plan["prompt"]
    runs = [
        ("prefill", timed_prefill),
        ("ar", timed(lambda: autoregressive(model, prompt, new, mask_id))),
        ("static", timed(lambda: single(diffusion_decode(model, [prompt], new, block, "static", plan["threshold"], shift, mask_id)))),
        ("dynamic", timed(lambda: single(diffusion_decode(model, [prompt], new, block, "dynamic", plan["threshold"], shift, mask_id)))),
    ]
    for phase, run in runs:
        measured[phase] = best_of(plan["repeats"], run)
        output = measured[phase].pop("output", None)
        if output is not None:
            measured.setdefault("outputs", {})[phase] = output
        s = measured[phase]
        print(f"[pytorch] {name}: {phase}: {s['tokens']} tokens, {s['forwards']} forwards, {s['seconds']:.2f} s, "
              f"{s['tokens_per_second']:.1f} tok/s", flush=True)
    if plan.get("train"):
        train = plan["train"]
        optimizer = torch.optim.AdamW(model.parameters(), lr=train["lr"], betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
        for _ in range(2):  # warm-up, untimed, as ours (WARM_UP_STEPS in xtask/src/commands/bench/worker.rs)
            train_step(model, plan, optimizer)
        measured["train"] = t = train_step(model, plan, optimizer)
        print(f"[pytorch] {name}: train step {t['total_seconds']:.2f} s (rollout {t['rollout_seconds']:.2f} s, "
              f"teacher {t['teacher_seconds']:.2f} s, student {t['student_seconds']:.2f} s, "
              f"optimizer {t['optimizer_seconds']:.2f} s)", flush=True)
    args.out.write_text(json.dumps(measured, indent=2))


if __name__ == "__main__":
    main()
