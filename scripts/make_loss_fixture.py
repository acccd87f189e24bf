#!/usr/bin/env python3
"""Reference values and gradients for the distillation losses, computed independently with
PyTorch autograd in float64, for the Rust loss tests.

Exact command (from the repository root; CPU only, no model or network needed):

    CUDA_VISIBLE_DEVICES= python3 scripts/make_loss_fixture.py

Writes tests/fixtures/loss_reference.json (overwriting it). The output is deterministic:
torch.manual_seed(0), then S = 2*randn(5, 13), T = 2*randn(5, 12), y = randint(0, 12, (5,)),
all in float64; the weights are fixed.

Setup: n = 5 slots, student vocabulary Vs = 13, teacher vocabulary Vt = 12. The student has one
extra row appended, id 12 = mask_id, and the mask token is never a prediction:
  logp_S = log_softmax(S with column mask_id set to -inf)              (over Vs)
  logp_T = log_softmax(T padded with a -inf column at id 12 = mask_id) (over Vs)
Per-slot losses (terms whose leading probability is 0 contribute 0):
  forward_kl       sum_v p_T (logp_T - logp_S)
  forward_kl_topk  sum over the teacher's top-k (k = 4) ids of p_T (logp_T - logp_S),
                   with the unrenormalised p_T
  reverse_kl       sum_v p_S (logp_S - logp_T)
  jsd              m = (p_T + p_S)/2; 0.5 sum p_T (logp_T - log m) + 0.5 sum p_S (logp_S - log m)
  cross_entropy    -logp_S(y)
Reduction: loss = sum_i w_i per_slot_i / sum_i w_i. "grad" is d loss / d S (raw student logits,
shape [5][13]); the mask column's gradient is exactly 0.

JSON layout:
  {"meta": {...}, "student_logits": [[13]*5], "teacher_logits": [[12]*5], "weights": [5],
   "labels": [5], "mask_id": 12, "top_k": 4,
   "losses": {name: {"per_slot": [5], "loss": float, "grad": [[13]*5]}, ...}}

Checks asserted before writing: forward_kl matches torch.nn.functional.kl_div(logp_S, logp_T,
log_target=True, reduction='none').sum(-1) over the finite entries to 1e-10; the closed-form
gradients of forward_kl ((w_i/W)(p_S - p_T)) and cross_entropy ((w_i/W)(p_S - onehot(y)))
match autograd to 1e-12; every gradient is finite, its mask column is 0, and it agrees with
central finite differences to 1e-6.
"""

import importlib.metadata
import json
import os

import torch
import torch.nn.functional as F

N, VS, VT, MASK_ID, TOP_K = 5, 13, 12, 12, 4
WEIGHTS = [1.0, 0.5, 2.0, 1.0, 1.0]
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures",
                   "loss_reference.json")

DT = torch.float64
NEG_INF = float("-inf")


def student_logp(S):
    mask = torch.zeros(VS, dtype=torch.bool)
    mask[MASK_ID] = True
    return torch.log_softmax(S.masked_fill(mask, NEG_INF), dim=-1)


def teacher_logp(T):
    pad = torch.full((T.shape[0], VS - VT), NEG_INF, dtype=DT)
    Tp = torch.cat([T, pad], dim=-1)
    Tp[:, MASK_ID] = NEG_INF
    return torch.log_softmax(Tp, dim=-1)


def safe(logp):
    """-inf -> 0, so that 0 * log never yields NaN (neither forward nor backward)."""
    return torch.where(torch.isfinite(logp), logp, torch.zeros_like(logp))


def xlogx_term(p, logp, logq):
    """sum_v p (logp - logq), terms with p == 0 contributing 0."""
    t = p * (safe(logp) - safe(logq))
    return torch.where(p > 0, t, torch.zeros_like(t)).sum(-1)


def per_slot_losses(S, T, y):
    lS, lT = student_logp(S), teacher_logp(T)
    pS, pT = lS.exp(), lT.exp()
    out = {}
    out["forward_kl"] = xlogx_term(pT, lT, lS)

    top = torch.topk(pT, TOP_K, dim=-1).indices
    sel = torch.zeros_like(pT, dtype=torch.bool).scatter(-1, top, True)
    t = pT * (safe(lT) - safe(lS))
    out["forward_kl_topk"] = torch.where(sel & (pT > 0), t, torch.zeros_like(t)).sum(-1)

    out["reverse_kl"] = xlogx_term(pS, lS, lT)

    m = 0.5 * (pT + pS)
    lm = torch.where(m > 0, torch.log(torch.where(m > 0, m, torch.ones_like(m))),
                     torch.full_like(m, NEG_INF))
    out["jsd"] = 0.5 * xlogx_term(pT, lT, lm) + 0.5 * xlogx_term(pS, lS, lm)

    out["cross_entropy"] = -lS.gather(-1, y[:, None]).squeeze(-1)
    return out, lS, lT


def reduce(per_slot, w):
    return (w * per_slot).sum() / w.sum()


def main():
    torch.manual_seed(0)
    S0 = 2.0 * torch.randn(N, VS, dtype=DT)
    T = 2.0 * torch.randn(N, VT, dtype=DT)
    y = torch.randint(0, VT, (N,))
    w = torch.tensor(WEIGHTS, dtype=DT)

    losses = {}
    names = ["forward_kl", "forward_kl_topk", "reverse_kl", "jsd", "cross_entropy"]
    for name in names:
        S = S0.clone().requires_grad_(True)
        per, lS, lT = per_slot_losses(S, T, y)
        loss = reduce(per[name], w)
        (grad,) = torch.autograd.grad(loss, S)
        assert torch.isfinite(per[name]).all() and torch.isfinite(loss), name
        assert torch.isfinite(grad).all(), name
        assert (grad[:, MASK_ID] == 0).all(), name

        # central finite differences on every entry of S (float64)
        eps = 1e-6
        fd = torch.zeros_like(S0)
        with torch.no_grad():
            for i in range(N):
                for j in range(VS):
                    Sp, Sm = S0.clone(), S0.clone()
                    Sp[i, j] += eps
                    Sm[i, j] -= eps
                    fp = reduce(per_slot_losses(Sp, T, y)[0][name], w)
                    fm = reduce(per_slot_losses(Sm, T, y)[0][name], w)
                    fd[i, j] = (fp - fm) / (2 * eps)
        err = (fd - grad).abs().max().item()
        assert err < 1e-6, (name, err)

        losses[name] = {"per_slot": per[name].detach().tolist(), "loss": loss.item(),
                        "grad": grad.tolist()}

        if name == "forward_kl":
            kl = F.kl_div(lS, lT, log_target=True, reduction="none")
            kl = torch.where(torch.isfinite(kl), kl, torch.zeros_like(kl)).sum(-1)
            d = (kl - per[name]).abs().max().item()
            assert d < 1e-10, ("kl_div cross-check", d)
            closed = (w / w.sum())[:, None] * (lS.exp() - lT.exp())
            assert (closed - grad).abs().max().item() < 1e-12
        if name == "cross_entropy":
            onehot = F.one_hot(y, VS).to(DT)
            closed = (w / w.sum())[:, None] * (lS.exp() - onehot)
            assert (closed - grad).abs().max().item() < 1e-12

    # sanity: divergences are non-negative, JSD is bounded by ln 2
    for name in ["forward_kl", "reverse_kl", "jsd"]:
        assert min(losses[name]["per_slot"]) >= -1e-15, name
    assert max(losses["jsd"]["per_slot"]) <= torch.log(torch.tensor(2.0)).item()

    doc = {
        "meta": {
            "generator": "scripts/make_loss_fixture.py",
            "torch": importlib.metadata.version("torch"),
            "dtype": "float64",
            "seed": 0,
            "reduction": "sum_i w_i * per_slot_i / sum_i w_i",
            "grad": "d loss / d student_logits",
        },
        "student_logits": S0.tolist(),
        "teacher_logits": T.tolist(),
        "weights": w.tolist(),
        "labels": y.tolist(),
        "mask_id": MASK_ID,
        "top_k": TOP_K,
        "losses": losses,
    }
    out = os.path.normpath(OUT)
    with open(out, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
    print(f"wrote {out} ({os.path.getsize(out)} bytes)")
    for name in names:
        print(f"  {name:16s} loss = {losses[name]['loss']!r}")


if __name__ == "__main__":
    main()
