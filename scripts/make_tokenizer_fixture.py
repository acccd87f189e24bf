#!/usr/bin/env python3
"""Reference tokenisations of the SmolLM2-135M-Instruct GGUF tokenizer, for the Rust test
`gguf_tokenizer::tests::matches_transformers_fixture` (model/src/load/gguf_tokenizer.rs).

The reference is Hugging Face `transformers` building a tokenizer from the same GGUF
(`AutoTokenizer.from_pretrained(dir, gguf_file=...)`), an implementation independent of ours,
with one correction: transformers has no entry for the GGUF pre-tokenizer type "smollm", so it
falls back to the plain GPT-2 split and does not split digits one by one. SmolLM2's own
tokenizer.json and llama.cpp both split every digit first (HF `Digits(individual_digits=True)`,
llama.cpp regex `\\p{N}`), which changes ids for text like "  12" or "½". The script therefore
installs that pre-tokenizer and prints the cases where the correction matters.

Requirements: pip install transformers gguf  (no torch needed for the tokenizer).

Exact command (from the repository root):

    scripts/fetch-smollm2.sh                  # once: puts the GGUF in .cache/smollm2/
    python3 scripts/make_tokenizer_fixture.py [--gguf PATH]

Default GGUF: ${OPDLM_CACHE:-.cache}/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf.
Writes tests/fixtures/smollm2_tokenizer_cases.json:
    {"meta": {...versions...}, "cases": [{"text": str, "ids": [int, ...]}, ...]}
ids are `encode(text, add_special_tokens=True)` (SmolLM2 adds no BOS); every case also
decodes back to its text exactly, which the script asserts.
"""

import argparse
import importlib.metadata
import json
import os
import sys
from pathlib import Path

import gguf
import tokenizers
import transformers
from tokenizers import pre_tokenizers
from transformers import AutoTokenizer

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "tests" / "fixtures" / "smollm2_tokenizer_cases.json"

TEXTS = [
    "Hello, world!",
    "12345",
    "Order 66 shipped 1,234.5 units in 2024.",
    "L'Étoile, la Cité, and naïve café — ünïcödé 日本語 🤖",
    "def f(x):\n    return x**2  # square\n",
    "spaces   and\ttabs\n\n\nnewlines   ",
    "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
    "I'm sure they'll say we've done it, don't you?",
    "  leading spaces and trailing  ",
    "<|endoftext|>text after <|im_end|> special",
    "",
    "x = [1, 22, 333]; y = {'a': 0.5e-3}",
    "  12",
    "½ ² ③ ٣٤ ١٢",
    "$100,000.00 and 3.14159265358979",
]


def main() -> None:
    default = Path(os.environ.get("OPDLM_CACHE", REPO / ".cache")) / "smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gguf", type=Path, default=default)
    args = parser.parse_args()
    if not args.gguf.is_file():
        sys.exit(f"GGUF not found: {args.gguf} (run scripts/fetch-smollm2.sh or pass --gguf)")

    pre = gguf.GGUFReader(args.gguf).fields["tokenizer.ggml.pre"].contents()
    assert pre == "smollm", f"expected the SmolLM2 GGUF (pre-tokenizer 'smollm'), got {pre!r}"

    tok = AutoTokenizer.from_pretrained(str(args.gguf.parent), gguf_file=args.gguf.name)
    backend = tok.backend_tokenizer
    stock = backend.pre_tokenizer
    corrected = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )

    cases = []
    for text in TEXTS:
        backend.pre_tokenizer = stock
        stock_ids = tok.encode(text, add_special_tokens=True)
        backend.pre_tokenizer = corrected
        ids = tok.encode(text, add_special_tokens=True)
        decoded = tok.decode(ids)
        assert decoded == text, f"decode round-trip failed for {text!r}: {decoded!r}"
        if ids != stock_ids:
            print(f"digit split changes {text!r}: {stock_ids} -> {ids}", file=sys.stderr)
        cases.append({"text": text, "ids": ids})

    meta = {
        "gguf": args.gguf.name,
        "generator": "scripts/make_tokenizer_fixture.py",
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "gguf_py": importlib.metadata.version("gguf"),
        "pre_tokenizer": "Digits(individual) + ByteLevel (SmolLM2 tokenizer.json / llama.cpp 'smollm')",
    }
    # One case per line keeps diffs of regenerated fixtures readable.
    lines = ",\n".join("  " + json.dumps(case, ensure_ascii=False) for case in cases)
    OUT.write_text(f'{{"meta": {json.dumps(meta, ensure_ascii=False)},\n "cases": [\n{lines}\n]}}\n')
    print(f"wrote {len(cases)} cases to {OUT.relative_to(REPO)}")


if __name__ == "__main__":
    main()
