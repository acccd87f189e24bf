#!/usr/bin/env python3
"""llama.cpp's tokenisation of hard strings with the SmolLM2-135M-Instruct GGUF, for the Rust
test `smollm2_tokenizer_encodes_hard_strings_like_llama_cpp` (tests/tests/tokenizer_parity.rs).

llama.cpp is the reference here: it is the tokenizer the GGUF format belongs to, and it reads the
same `tokenizer.ggml.*` metadata that model/src/load/gguf_tokenizer.rs rebuilds a Hugging Face
`tokenizers` tokenizer from. The strings (TEXTS below) are the ones tokenizers get wrong: emoji
(skin tones, ZWJ sequences, flags, variation selectors), CJK, accents in NFC and NFD form,
combining marks, non-Latin scripts, letters and digits outside the BMP, tabs and runs of spaces,
"\\r\\n", Unicode spaces, long numbers, leading/trailing spaces, and the chat template's special
tokens inside text and in a full ChatML prompt.

For each string the fixture records
  llama_cpp          Llama.tokenize(text, add_bos=False, special=True): special tokens written in
                     the text are parsed (what a rendered chat prompt needs, and what our
                     `TextTokenizer::encode` does);
  llama_cpp_plain    the same with special=False: "<|im_start|>" typed by a user is plain text
                     (our tokenizer with `set_encode_special_tokens(true)`);
  transformers       Hugging Face transformers loading the same GGUF
                     (`AutoTokenizer.from_pretrained(dir, gguf_file=...)`), as it comes;
  transformers_digits
                     the same with the pre-tokenizer of SmolLM2's own tokenizer.json
                     (Digits(individual_digits=True) + ByteLevel), which transformers' GGUF loader
                     does not know for pre-tokenizer type "smollm" (see
                     scripts/make_tokenizer_fixture.py). This is the design of our tokenizer.
Where llama.cpp and transformers disagree we follow llama.cpp: the file is a GGUF, llama.cpp
defines what its metadata means, and a model served by llama.cpp (or any GGUF runtime) sees
llama.cpp's ids. The script prints every disagreement and stores counts in "meta". Besides the
digit split, the two disagree in two places, both handled in model/src/load/gguf_tokenizer.rs:
  - Unicode version. llama.cpp classifies codepoints (letter, number, whitespace) with its own
    Unicode 15.1 tables; Oniguruma (the regex engine of `tokenizers`) knows Unicode 16 and Rust's
    `char::is_numeric` (used by `Digits`) newer still. The letters and digits Unicode 16 added
    (Garay, Kirat Rai, Egyptian hieroglyphs extension A, ...) are punctuation-like to llama.cpp,
    so "𐵀's" is "𐵀'" + "s" there and "𐵀" + "'s" in transformers. SmolLM2's tokenizer was
    trained before Unicode 16, so llama.cpp's split is also the one the model saw.
  - Bytes without a token. SmolLM2's vocabulary has no token for bytes 0x04, 0x06, 0x13, 0x14,
    0x16 and 0x1D. Both drop such a byte, but transformers drops it before merging, so " \x04's"
    merges " '" across the gap, and llama.cpp does not. Such cases are not lossless (the byte is
    gone), which the fixture records as "lossless": false.
`--scan` runs a probe string for every codepoint through llama.cpp and transformers_digits and
prints the ranges where they disagree: that is how the Unicode 16 ranges in gguf_tokenizer.rs
were found (about 6 minutes on 2 cores; nothing is written).

Requirements: pip install llama-cpp-python==0.3.36 transformers gguf torch  (transformers 5's GGUF
reader imports torch; llama-cpp-python builds llama.cpp from source, 15-20 minutes on 2 cores).
Made with llama-cpp-python 0.3.36 (llama.cpp 0.5.0-dev), transformers 5.24.0, tokenizers 0.23.3,
gguf 0.19.0, torch 2.15.0, python 3.11 (the versions are also recorded in the fixture).

Exact command (from the repository root):

    scripts/fetch-smollm2.sh                  # once: puts the GGUF in .cache/smollm2/
    python3 scripts/make_llamacpp_tokenizer_fixture.py [--gguf PATH]

Writes tests/fixtures/smollm2_llamacpp_tokenizer_cases.json:
    {"meta": {...versions, counts...},
     "cases": [{"name", "text", "lossless", "llama_cpp", "llama_cpp_plain", "transformers",
                "transformers_digits"}, ...]}
"lossless" says whether llama.cpp's ids detokenize back to the exact UTF-8 bytes of the text
(false only where the text holds a byte the vocabulary has no token for); the script asserts
that every other case is lossless.
"""

import argparse
import importlib.metadata
import json
import os
import platform
import random
import sys
import unicodedata
from pathlib import Path

import gguf
import llama_cpp
import tokenizers
import transformers
from tokenizers import Regex, pre_tokenizers
from transformers import AutoTokenizer

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "tests" / "fixtures" / "smollm2_llamacpp_tokenizer_cases.json"

CAT = "Émile et Zoë ont 3 chats 🐈. Combien de pattes?"
SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
VIET = "Tiếng Việt có dấu: người, được, những"
ACCENTS = "café naïve résumé Ångström São Paulo Œuvre"
NFD = unicodedata.normalize("NFD", ACCENTS)
assert NFD != ACCENTS

# (name, text). Names are unique and say what each string is there to catch.
TEXTS = [
    # Emoji: one codepoint, modifiers, ZWJ sequences, flags, variation selectors.
    ("emoji_single", "🤖"),
    ("emoji_skin_tone", "👍🏽 👋🏿"),
    ("emoji_zwj_family", "👩‍👩‍👧"),
    ("emoji_zwj_in_text", "family: 👩‍👩‍👧‍👦 and 👩🏽‍💻 coding"),
    ("emoji_flags", "🇫🇷🇯🇵 🇺🇸"),
    ("emoji_variation_selector", "I ❤️ 🦀 ☀︎ ✔️"),
    ("emoji_recent", "🫨 🪿 🫎"),
    ("cat_sentence", CAT),
    # CJK.
    ("chinese", "你好，世界！今天天气很好。我们去公园散步吧。"),
    ("japanese_kana", "こんにちは、ひらがなとカタカナ。ｶﾀｶﾅ"),
    ("japanese_mixed", "東京タワーは333メートルです。"),
    ("korean", "안녕하세요 세계! 한국어 문장입니다."),
    # Accents and combining characters, NFC and NFD.
    ("accents_nfc", ACCENTS),
    ("accents_nfd", NFD),
    ("vietnamese_nfc", VIET),
    ("vietnamese_nfd", unicodedata.normalize("NFD", VIET)),
    ("angstrom_three_ways", "\u212b \u00c5 A\u030a"),
    ("combining_stack", "Z̤͔ͧ̑̓ä͖̭̈̇lͮ̒ͫǧ̗͚̚o̙̔ͮ̇͐̇"),
    ("ligatures_compat", "ﬁnance ﬀ Ⅻ ㎏ ＡＢＣ"),
    ("titlecase_letters", "ǅemal ǈubljana ǋ"),
    ("other_scripts", "Ελληνικά Русский العربية עברית हिन्दी ไทย"),
    ("math_alphanumerics", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝐁𝐨𝐥𝐝 𝟙𝟚𝟛 𝟒𝟓"),
    ("recent_letters", "\U0001e030\U0001e031 \ua7ca\ua7d1"),
    # Letters new in Unicode 16 (Cyrillic U+1C89, Latin U+A7CB, Egyptian U+13460, Kirat Rai
    # U+16D43): not letters to llama.cpp (see the module docstring).
    ("letters_unicode_16", "\u1c89\u1c8a's \ua7cb\ua7cc 's \U00013460\U00013461x \U00016d43's"),
    ("contractions_case", "I'M SURE THEY'LL say it's John's, don’t you?"),
    # Code and whitespace.
    ("code_tabs_spaces", "def f(x):\n\tif x:\n\t\treturn x  # two\n    else:\n        pass\n"),
    ("space_runs_2_to_8", "a  b   c    d     e      f       g        h"),
    ("space_runs_before_newline", "x  \n   \n    y\n\n  "),
    ("crlf", "x = 1\r\ny = 2\r\n\r\nz\r\n"),
    ("lone_cr", "a\rb\r\rc"),
    ("only_newlines", "\n\n\n"),
    ("only_spaces", "    "),
    ("mixed_whitespace", " \t \n \r\n \t\t  "),
    ("rust_code", 'fn main() {\n    let v = vec![1_000, 2];\n    println!("{v:?}");\n}\n'),
    ("json_code", '{"key": [1, 2, 3], "nested": {"a": null, "b": "x\\ny"}}'),
    ("unicode_spaces", "a\u00a0b\u2003c\u3000d\u2009e\u202ff\u0085g"),
    # U+180E was White_Space before Unicode 6.3; U+2028/2029 are line/paragraph separators.
    ("unicode_spaces_rare", "a\u1680b\u2028c\u2029d\u205fe\u180ef  \u2028\u2029x \u00a0\u00a0y"),
    ("zero_width", "a\u200bb\u200cc\u200dd\ufeffe\u2060f"),
    ("control_chars", "\x07bell \x1b[31mred\x1b[0m tab\x0bvt\x0cff \x00nul"),
    # Bytes SmolLM2's vocabulary has no token for: dropped, and nothing merges across them.
    ("bytes_without_token", "x \x04's a\x06b \x13\x14 \x16\x1d! ok"),
    ("private_use", "\ue000\uf8ff \U000f0000"),
    ("repeats", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!!!!!!!!........----====____"),
    ("url", "https://example.com/a/b?q=1&r=ü#frag mailto:x@y.fr"),
    ("math_symbols", "∑∫√∞ ≤ ≥ ≠ → ⇒ ∀x∈ℝ, x²≥0"),
    # Digits.
    ("digits_long", "1234567890"),
    ("digits_pi", "3.14159"),
    ("digits_grouped", "1,000,000"),
    ("digits_mixed", "-42 +7 1e-10 0x1F 0b1010 2024-01-15T12:34:56Z v1.2.3"),
    ("digits_very_long", "12345678901234567890123456789012345678901234567890"),
    ("digits_non_ascii", "١٢٣ ۴۵۶ ४५६ ①②③ ½ ² Ⅻ ０１２"),
    ("digits_after_spaces", "  12   345\t6\n7"),
    # Digits new in Unicode 16 (Garay U+10D40, outlined U+1CCF0, Kirat Rai U+16D70) and 17
    # (Tolong Siki U+11DE0): not digits to llama.cpp, so not split off (see the module docstring).
    (
        "digits_unicode_16_17",
        "Garay \U00010d40\U00010d41's,  \U0001ccf0\U0001ccf1 \U00016d70\r\n\U00010d49'll \U00011de0's",
    ),
    # Leading and trailing spaces.
    ("leading_space", " hello"),
    ("trailing_space", "hello "),
    ("both_spaces", "  hello world  "),
    ("single_space", " "),
    ("tabs_around", "\thello\t"),
    ("newlines_around", "\nhello\n"),
    ("empty", ""),
    # The chat template's special tokens inside text.
    ("special_im_start", "<|im_start|>"),
    ("special_im_end", "<|im_end|>"),
    ("special_endoftext", "<|endoftext|>"),
    ("special_adjacent", "<|im_start|><|im_end|><|endoftext|>"),
    ("special_inside_words", "text<|im_end|>more<|endoftext|>end"),
    ("special_with_spaces", " <|im_start|> spaced  <|im_end|> \n"),
    ("special_with_newlines", "\n<|im_start|>\n\n<|im_end|>\n"),
    ("special_near_misses", "<|im_start| <|IM_END|> <|endoftext|x <im_start> |im_end|"),
    ("special_other_control", "<repo_name>opdlm<file_sep><filename>main.rs<gh_stars>42"),
    (
        "chatml_full",
        f"<|im_start|>system\n{SYSTEM}<|im_end|>\n<|im_start|>user\n{CAT}<|im_end|>\n"
        "<|im_start|>assistant\nIl y a 3 chats, donc 3 × 4 = 12 pattes. 🐾<|im_end|>\n"
        "<|im_start|>user\n  def f():\n\treturn 1,000,000\r\n<|im_end|>\n<|im_start|>assistant\n",
    ),
]


# Seeded random strings over atoms that stress the pre-tokenizer's classes (letters, digits,
# whitespace, punctuation, contractions, special tokens and near misses): 20,000 of these agreed
# between llama.cpp and transformers_digits except where they held a Unicode 16 digit; a few are
# kept as cases.
FUZZ_ATOMS = [
    " ", "  ", "\t", "\n", "\r\n", "\r", "\u00a0", "\u3000", "\u2028", "\u180e", "\u200b", "\u200d",
    "a", "The", "hello", "É", "e\u0301", "\u0301", "ß", "ǅ", "Ω", "ж", "ع", "ש", "हि", "你", "の", "カ", "한",
    "0", "1", "42", "٣", "①", "½", "Ⅻ", "𝟙", "\U00010d40", "'", "'s", "'ll", "'S", "’", ".", ",", "!",
    "-", "_", "(", "{", "#", "$", "€", "→", "🤖", "👩\u200d👩\u200d👧", "🇫🇷", "❤️", "🏽", "\ue000", "\x1b",
    "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|im_start|", "<repo_name>", "|>", "im_start",
]


def fuzz_texts(count: int = 16, seed: int = 13) -> list:
    rng = random.Random(seed)
    return [
        (f"fuzz_{i:02}", "".join(rng.choice(FUZZ_ATOMS) for _ in range(rng.randint(6, 16))))
        for i in range(count)
    ]


TEXTS += fuzz_texts()


def llama_version() -> dict:
    """llama-cpp-python's version and that of the llama.cpp library it built."""
    return {
        "llama_cpp_python": llama_cpp.__version__,
        "llama_cpp": llama_cpp.llama_cpp.llama_version().decode(),
    }


def scan(llm, tok, digits) -> None:
    """Prints the codepoint ranges where llama.cpp and transformers_digits disagree."""
    backend = tok.backend_tokenizer
    backend.pre_tokenizer = digits
    # Letters, digits, punctuation and whitespace split differently around each of these.
    probe = lambda c: f"a{c}'s {c}'s{c}1  {c}\n{c}"  # noqa: E731
    cps = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    texts = [probe(chr(c)) for c in cps]
    theirs = [e.ids for e in backend.encode_batch(texts, add_special_tokens=False)]
    bad = [c for c, t, h in zip(cps, texts, theirs) if llm.tokenize(t.encode(), add_bos=False, special=True) != h]
    onig = {k: pre_tokenizers.Split(Regex(rf"\p{{{k}}}"), "removed") for k in "LN"}

    def cls(c: int) -> str:
        """Oniguruma's class; "other" covers bytes without a token and Unicode 17 digits
        (which only Rust's `char::is_numeric`, used by `Digits`, knows)."""
        return next((k for k, split in onig.items() if not split.pre_tokenize_str(chr(c))), "other")

    ranges = []
    for c in bad:
        if ranges and ranges[-1][1] == c - 1 and ranges[-1][2] == cls(c):
            ranges[-1][1] = c
        else:
            ranges.append([c, c, cls(c)])
    print(f"{len(bad)} codepoints in {len(ranges)} ranges disagree (class by Oniguruma):")
    for lo, hi, k in ranges:
        print(f"  U+{lo:04X}..U+{hi:04X} {k}")


def main() -> None:
    default = Path(os.environ.get("OPDLM_CACHE", REPO / ".cache")) / "smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gguf", type=Path, default=default)
    parser.add_argument("--scan", action="store_true", help="compare every codepoint; write nothing")
    args = parser.parse_args()
    if not args.gguf.is_file():
        sys.exit(f"GGUF not found: {args.gguf} (run scripts/fetch-smollm2.sh or pass --gguf)")
    names = [name for name, _ in TEXTS]
    assert len(set(names)) == len(names), "case names must be unique"

    pre = gguf.GGUFReader(args.gguf).fields["tokenizer.ggml.pre"].contents()
    assert pre == "smollm", f"expected the SmolLM2 GGUF (pre-tokenizer 'smollm'), got {pre!r}"

    llm = llama_cpp.Llama(model_path=str(args.gguf), vocab_only=True, verbose=False)
    tok = AutoTokenizer.from_pretrained(str(args.gguf.parent), gguf_file=args.gguf.name)
    backend = tok.backend_tokenizer
    stock = backend.pre_tokenizer
    digits = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )

    if args.scan:
        scan(llm, tok, digits)
        return

    def hf(text: str, pre_tokenizer) -> list:
        backend.pre_tokenizer = pre_tokenizer
        return tok.encode(text, add_special_tokens=False)

    cases = []
    counts = {"transformers": 0, "transformers_digits": 0}
    for name, text in TEXTS:
        raw = text.encode("utf-8")
        ids = [int(i) for i in llm.tokenize(raw, add_bos=False, special=True)]
        plain = [int(i) for i in llm.tokenize(raw, add_bos=False, special=False)]
        lossless = llm.detokenize(ids, special=True) == raw
        assert lossless or name == "bytes_without_token", f"llama.cpp loses bytes of {name}"
        assert llm.detokenize(plain, special=True) == llm.detokenize(ids, special=True), name
        case = {
            "name": name,
            "text": text,
            "lossless": lossless,
            "llama_cpp": ids,
            "llama_cpp_plain": plain,
            "transformers": hf(text, stock),
            "transformers_digits": hf(text, digits),
        }
        for key in counts:
            if case[key] == ids:
                counts[key] += 1
            else:
                print(f"{name}: llama.cpp {ids}\n{' ' * len(name)}  {key} {case[key]}", file=sys.stderr)
        cases.append(case)

    meta = {
        "gguf": args.gguf.name,
        "generator": "scripts/make_llamacpp_tokenizer_fixture.py",
        "reference": "llama_cpp (Llama(vocab_only=True).tokenize(text, add_bos=False, special=True))",
        **llama_version(),
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "gguf_py": importlib.metadata.version("gguf"),
        "python": platform.python_version(),
        "cases": len(cases),
        "transformers_agrees_with_llama_cpp": counts["transformers"],
        "transformers_digits_agrees_with_llama_cpp": counts["transformers_digits"],
    }
    # One case per line keeps diffs of regenerated fixtures readable.
    lines = ",\n".join("  " + json.dumps(case, ensure_ascii=False) for case in cases)
    OUT.write_text(f'{{"meta": {json.dumps(meta, ensure_ascii=False)},\n "cases": [\n{lines}\n]}}\n')
    print(
        f"wrote {len(cases)} cases to {OUT.relative_to(REPO)}; agreeing with llama.cpp: "
        f"transformers {counts['transformers']}, transformers+digit split {counts['transformers_digits']}"
    )


if __name__ == "__main__":
    main()
