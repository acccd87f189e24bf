#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/seeds/<target>/: tiny valid inputs (and a few
near-valid ones) for the fuzz targets. Standard library only; rerun to regenerate."""

import json
import os
import struct
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEEDS = HERE / "seeds"
FIXTURES = HERE.parent / "tests" / "fixtures"

# Tiny transformer shared by the GGUF and HF seeds.
VOCAB, HIDDEN, HEADS, KV_HEADS, HEAD_DIM, INTER, CTX = 12, 4, 2, 1, 2, 4, 16


def f16(x):
    return struct.pack("<e", x)


def floats(n, fmt="<f", scale=0.1):
    return b"".join(struct.pack(fmt, ((i * 7) % 11 - 5) * scale) for i in range(n))


def bf16s(n):
    return b"".join(struct.pack("<f", ((i * 7) % 11 - 5) * 0.1)[2:] for i in range(n))


# ---------------------------------------------------------------- GGUF


def gstr(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def garray(elem_ty, items):
    return struct.pack("<IQ", elem_ty, len(items)) + b"".join(items)


class Gguf:
    def __init__(self, version=3, alignment=32):
        self.version, self.alignment = version, alignment
        self.kvs, self.infos, self.data = [], [], b""

    def kv(self, key, ty, value):
        self.kvs.append(gstr(key) + struct.pack("<I", ty) + value)
        return self

    def tensor(self, name, dims, ty, data):
        pad = (-len(self.data)) % self.alignment
        self.data += b"\0" * pad
        info = gstr(name) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        info += struct.pack("<IQ", ty, len(self.data))
        self.infos.append(info)
        self.data += data
        return self

    def finish(self):
        out = b"GGUF" + struct.pack("<IQQ", self.version, len(self.infos), len(self.kvs))
        out += b"".join(self.kvs) + b"".join(self.infos)
        out += b"\0" * ((-len(out)) % self.alignment)
        return out + self.data


TOKENS = ["<|endoftext|>", "<|im_start|>", "<think>", "a", "b", "ab", "Ġ", "Ġab", "1", "2", "12", "!"]
TYPES = [3, 3, 4, 1, 1, 1, 1, 1, 1, 1, 1, 1]
MERGES = ["a b", "Ġ ab", "1 2"]


def tokenizer_kvs(g, pre="smollm", add_bos=False):
    g.kv("tokenizer.ggml.model", 8, gstr("gpt2"))
    g.kv("tokenizer.ggml.pre", 8, gstr(pre))
    g.kv("tokenizer.ggml.tokens", 9, garray(8, [gstr(t) for t in TOKENS]))
    g.kv("tokenizer.ggml.token_type", 9, garray(5, [struct.pack("<i", t) for t in TYPES]))
    g.kv("tokenizer.ggml.merges", 9, garray(8, [gstr(m) for m in MERGES]))
    g.kv("tokenizer.ggml.bos_token_id", 4, struct.pack("<I", 1))
    g.kv("tokenizer.ggml.eos_token_id", 4, struct.pack("<I", 0))
    if add_bos:
        g.kv("tokenizer.ggml.add_bos_token", 7, b"\1")
    g.kv("tokenizer.chat_template", 8, gstr("{% for m in messages %}{{ m.content }}{% endfor %}"))
    return g


def gguf_model(arch, pre, dtype=0):
    """dtype: 0 F32, 1 F16, 30 BF16 for the matrices (norms stay F32)."""
    enc = {0: lambda n: floats(n), 1: lambda n: floats(n, "<e"), 30: bf16s}[dtype]
    g = Gguf()
    g.kv("general.architecture", 8, gstr(arch))
    g.kv(f"{arch}.block_count", 4, struct.pack("<I", 1))
    g.kv(f"{arch}.context_length", 4, struct.pack("<I", CTX))
    g.kv(f"{arch}.embedding_length", 4, struct.pack("<I", HIDDEN))
    g.kv(f"{arch}.feed_forward_length", 4, struct.pack("<I", INTER))
    g.kv(f"{arch}.attention.head_count", 4, struct.pack("<I", HEADS))
    g.kv(f"{arch}.attention.head_count_kv", 4, struct.pack("<I", KV_HEADS))
    g.kv(f"{arch}.attention.layer_norm_rms_epsilon", 6, struct.pack("<f", 1e-6))
    g.kv(f"{arch}.rope.freq_base", 6, struct.pack("<f", 10000.0))
    tokenizer_kvs(g, pre, add_bos=(arch == "llama"))
    norm = lambda n: struct.pack("<f", 1.0) * n
    g.tensor("token_embd.weight", [HIDDEN, VOCAB], dtype, enc(HIDDEN * VOCAB))
    g.tensor("output_norm.weight", [HIDDEN], 0, norm(HIDDEN))
    q, kv = HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM
    g.tensor("blk.0.attn_norm.weight", [HIDDEN], 0, norm(HIDDEN))
    g.tensor("blk.0.attn_q.weight", [HIDDEN, q], dtype, enc(HIDDEN * q))
    g.tensor("blk.0.attn_k.weight", [HIDDEN, kv], dtype, enc(HIDDEN * kv))
    g.tensor("blk.0.attn_v.weight", [HIDDEN, kv], dtype, enc(HIDDEN * kv))
    g.tensor("blk.0.attn_output.weight", [q, HIDDEN], dtype, enc(q * HIDDEN))
    if arch == "qwen2":
        g.tensor("blk.0.attn_q.bias", [q], 0, floats(q))
        g.tensor("blk.0.attn_k.bias", [kv], 0, floats(kv))
        g.tensor("blk.0.attn_v.bias", [kv], 0, floats(kv))
    if arch == "qwen3":
        g.tensor("blk.0.attn_q_norm.weight", [HEAD_DIM], 0, norm(HEAD_DIM))
        g.tensor("blk.0.attn_k_norm.weight", [HEAD_DIM], 0, norm(HEAD_DIM))
    g.tensor("blk.0.ffn_norm.weight", [HIDDEN], 0, norm(HIDDEN))
    g.tensor("blk.0.ffn_gate.weight", [HIDDEN, INTER], dtype, enc(HIDDEN * INTER))
    g.tensor("blk.0.ffn_up.weight", [HIDDEN, INTER], dtype, enc(HIDDEN * INTER))
    g.tensor("blk.0.ffn_down.weight", [INTER, HIDDEN], dtype, enc(INTER * HIDDEN))
    return g.finish()


# (type id, elements per block, bytes per block) of every quantised type the reader decodes.
QUANTS = [(2, 32, 18), (3, 32, 20), (6, 32, 22), (7, 32, 24), (8, 32, 34),
          (10, 256, 84), (11, 256, 110), (12, 256, 144), (13, 256, 176), (14, 256, 210), (15, 256, 292)]


def gguf_quants():
    g = Gguf(version=2, alignment=16)
    g.kv("general.alignment", 4, struct.pack("<I", 16))
    for ty, qk, size in QUANTS:
        block = bytes((i * 37 + ty) % 256 for i in range(size))
        g.tensor(f"q{ty}", [qk, 1], ty, block)
    g.tensor("unsupported", [4], 99, b"\0" * 16)
    return g.finish()


def gguf_values():
    """Every metadata value type, nested arrays, no tensors."""
    g = Gguf()
    vals = [(0, b"\x07"), (1, b"\xf9"), (2, struct.pack("<H", 7)), (3, struct.pack("<h", -7)),
            (4, struct.pack("<I", 7)), (5, struct.pack("<i", -7)), (6, struct.pack("<f", 0.5)),
            (7, b"\1"), (8, gstr("seven")), (10, struct.pack("<Q", 7)), (11, struct.pack("<q", -7)),
            (12, struct.pack("<d", 0.25))]
    for ty, v in vals:
        g.kv(f"v.{ty}", ty, v)
    g.kv("v.nested", 9, garray(9, [garray(4, [struct.pack("<I", 1), struct.pack("<I", 2)]), garray(8, [gstr("x")])]))
    return g.finish()


# ---------------------------------------------------------------- safetensors / HF


def safetensors(tensors, metadata=None):
    header, data = {}, b""
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    if metadata:
        header["__metadata__"] = metadata
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((-len(h)) % 8)
    return struct.pack("<Q", len(h)) + h + data


def hf_config(arch, tie=True):
    c = {"model_type": arch, "vocab_size": VOCAB, "hidden_size": HIDDEN, "intermediate_size": INTER,
         "num_hidden_layers": 1, "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS,
         "head_dim": HEAD_DIM, "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "max_position_embeddings": CTX,
         "tie_word_embeddings": tie, "bos_token_id": 1, "eos_token_id": [0, 2], "hidden_act": "silu"}
    return c


def hf_tensors(arch, dtype="F32", tie=True):
    enc = {"F32": lambda n: floats(n), "F16": lambda n: floats(n, "<e"), "BF16": bf16s}[dtype]
    q, kv = HEADS * HEAD_DIM, KV_HEADS * HEAD_DIM
    t = lambda shape: (dtype, shape, enc(shape[0] * (shape[1] if len(shape) > 1 else 1)))
    out = {"model.embed_tokens.weight": t([VOCAB, HIDDEN]), "model.norm.weight": t([HIDDEN])}
    p = "model.layers.0."
    out[p + "input_layernorm.weight"] = t([HIDDEN])
    out[p + "post_attention_layernorm.weight"] = t([HIDDEN])
    out[p + "self_attn.q_proj.weight"] = t([q, HIDDEN])
    out[p + "self_attn.k_proj.weight"] = t([kv, HIDDEN])
    out[p + "self_attn.v_proj.weight"] = t([kv, HIDDEN])
    out[p + "self_attn.o_proj.weight"] = t([HIDDEN, q])
    if arch == "qwen2":
        out[p + "self_attn.q_proj.bias"] = t([q])
        out[p + "self_attn.k_proj.bias"] = t([kv])
        out[p + "self_attn.v_proj.bias"] = t([kv])
    if arch == "qwen3":
        out[p + "self_attn.q_norm.weight"] = t([HEAD_DIM])
        out[p + "self_attn.k_norm.weight"] = t([HEAD_DIM])
    out[p + "mlp.gate_proj.weight"] = t([INTER, HIDDEN])
    out[p + "mlp.up_proj.weight"] = t([INTER, HIDDEN])
    out[p + "mlp.down_proj.weight"] = t([HIDDEN, INTER])
    if not tie:
        out["lm_head.weight"] = t([VOCAB, HIDDEN])
    return out


def hf_input(config, weights, index=b""):
    """The hf_dir target's layout: u16 LE length + config.json, u16 LE length + index, weights."""
    config = config if isinstance(config, bytes) else json.dumps(config).encode()
    index = index if isinstance(index, bytes) else json.dumps(index).encode()
    return struct.pack("<H", len(config)) + config + struct.pack("<H", len(index)) + index + weights


def write(target, name, data):
    d = SEEDS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


def main():
    for arch, pre in [("llama", "llama-bpe"), ("qwen2", "qwen2"), ("qwen3", "smollm")]:
        write("gguf", f"{arch}-f32.gguf", gguf_model(arch, pre))
    write("gguf", "llama-f16.gguf", gguf_model("llama", "gpt2", 1))
    write("gguf", "qwen2-bf16.gguf", gguf_model("qwen2", "default", 30))
    write("gguf", "quants-v2.gguf", gguf_quants())
    write("gguf", "values.gguf", gguf_values())

    for arch in ["llama", "qwen2", "qwen3"]:
        write("hf_dir", f"{arch}-f32", hf_input(hf_config(arch), safetensors(hf_tensors(arch))))
    untied = hf_config("llama", tie=False)
    write("hf_dir", "llama-untied-f16", hf_input(untied, safetensors(hf_tensors("llama", "F16", tie=False))))
    write("hf_dir", "qwen2-bf16", hf_input(hf_config("qwen2"), safetensors(hf_tensors("qwen2", "BF16"), {"format": "pt"})))
    tensors = hf_tensors("qwen3")
    index = {"metadata": {"total_size": 0}, "weight_map": {k: "model-00001-of-00001.safetensors" for k in tensors}}
    write("hf_dir", "qwen3-sharded", hf_input(hf_config("qwen3"), safetensors(tensors), index))
    # Real fixture configs (bigger model) over tiny weights: a shape mismatch to report.
    for name in ["tiny-llama", "tiny-qwen2", "tiny-qwen3"]:
        config = (FIXTURES / name / "config.json").read_bytes()
        write("hf_dir", f"fixture-{name}-config", hf_input(config, safetensors(hf_tensors("llama"))))
    v5 = hf_config("qwen3")
    del v5["rope_theta"]
    v5["rope_parameters"] = {"rope_theta": 5000.0, "rope_type": "default"}
    v5["opdlm"] = {"mask_token_id": 11, "block_size": 4, "shift_logits": False}
    write("hf_dir", "qwen3-v5-diffusion", hf_input(v5, safetensors(hf_tensors("qwen3"))))
    biased = hf_config("qwen3")
    biased["attention_bias"] = True
    write("hf_dir", "qwen3-attention-bias", hf_input(biased, safetensors(hf_tensors("qwen3"))))

    write("prompts", "prompt", b'{"prompt": "What is 2+2?", "answer": "4"}\n')
    write("prompts", "messages", b'{"messages": [{"role": "system", "content": "Be brief."}, '
                                 b'{"role": "user", "content": "hi"}]}\n\n{"prompt": "x"}\n')
    write("prompts", "mixed", b'{"prompt": "a"}\r\n{"messages": [{"role": "user", "content": "\\u00e9\\n"}], "answer": null}\n')
    write("prompts", "bad-line", b'{"prompt": "a"}\n{"answer": "1"}\n')
    write("prompts", "empty", b"\n \n")


if __name__ == "__main__":
    main()
