//! Tokenizer parity with llama.cpp on hard strings, for SmolLM2-135M-Instruct.
//!
//! Our tokenizer is rebuilt from the GGUF's `tokenizer.ggml.*` metadata
//! (model/src/load/gguf_tokenizer.rs). The reference ids in
//! `tests/fixtures/smollm2_llamacpp_tokenizer_cases.json` come from llama.cpp (llama-cpp-python,
//! `Llama(vocab_only=True).tokenize(text, add_bos=False, special=True)` and `special=False`),
//! made by `scripts/make_llamacpp_tokenizer_fixture.py`: emoji (ZWJ sequences, flags, skin
//! tones), CJK, NFC/NFD accents and combining marks, code with tabs, runs of spaces and "\r\n",
//! Unicode spaces, long numbers, leading/trailing spaces, special tokens inside text and a full
//! ChatML prompt.
//!
//! Where llama.cpp and Hugging Face transformers (loading the same GGUF) disagree, we follow
//! llama.cpp: the file is a GGUF, llama.cpp defines what its metadata means, and a model served
//! by a GGUF runtime sees llama.cpp's ids. They disagree in three ways, all visible in the
//! fixture (`transformers`, and `transformers_digits` with SmolLM2's digit split restored), of
//! which only llama.cpp's ids are asserted:
//! - transformers' GGUF loader does not know the pre-tokenizer type "smollm" and keeps a space
//!   before a number, where llama.cpp (and SmolLM2's tokenizer.json) split every digit first;
//! - llama.cpp classifies codepoints with Unicode 15.1 tables, transformers with Unicode 16 or
//!   later, so the letters and digits Unicode 16 added split differently (SmolLM2's tokenizer
//!   predates them too);
//! - for a byte the vocabulary has no token for (0x04, 0x06, ...), transformers merges its
//!   neighbours across the gap and llama.cpp does not.

use opdlm_model::load_tokenizer;
use opdlm_tests::{fixture, smollm2_gguf};
use serde::Deserialize;

#[derive(Deserialize)]
struct Fixture {
    meta: serde_json::Value,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    text: String,
    /// False where the text holds a byte the vocabulary has no token for (llama.cpp drops it).
    lossless: bool,
    /// llama.cpp with `special=true`: special tokens written in the text are parsed.
    llama_cpp: Vec<u32>,
    /// llama.cpp with `special=false`: control tokens in the text are plain text.
    llama_cpp_plain: Vec<u32>,
    transformers: Vec<u32>,
}

/// One mismatch, readable: the string, both id lists, both token lists and where they part.
fn diff(
    tokenizer: &opdlm_model::TextTokenizer,
    case: &Case,
    mode: &str,
    ours: &[u32],
    theirs: &[u32],
) -> String {
    let pieces = |ids: &[u32]| -> Vec<String> {
        ids.iter().map(|&id| tokenizer.inner().id_to_token(id).unwrap_or("<?>".into())).collect()
    };
    let first =
        ours.iter().zip(theirs).position(|(a, b)| a != b).unwrap_or(ours.len().min(theirs.len()));
    format!(
        "{} ({mode}) {:?}\n  ours      {ours:?}\n  llama.cpp {theirs:?}\n  ours      {:?}\n  \
         llama.cpp {:?}\n  first difference at token {first}",
        case.name,
        case.text,
        pieces(ours),
        pieces(theirs),
    )
}

#[test]
fn smollm2_tokenizer_encodes_hard_strings_like_llama_cpp() {
    let fixture: Fixture = serde_json::from_str(
        &std::fs::read_to_string(fixture("smollm2_llamacpp_tokenizer_cases.json")).unwrap(),
    )
    .unwrap();
    assert!(fixture.cases.len() >= 60, "the fixture lost cases: {}", fixture.cases.len());
    let tokenizer = load_tokenizer(&smollm2_gguf()).unwrap_or_else(|e| panic!("{e}"));
    // `special=false`: special tokens typed in the text are encoded as the text they are.
    let mut plain = tokenizer.inner().clone();
    plain.set_encode_special_tokens(true);

    let mut failures = Vec::new();
    let (mut agree, mut transformers_agree) = (0, 0);
    for case in &fixture.cases {
        let before = failures.len();
        let ours = tokenizer.encode(&case.text).unwrap();
        if ours != case.llama_cpp {
            failures.push(diff(&tokenizer, case, "special=true", &ours, &case.llama_cpp));
        }
        let ours_plain = plain.encode(case.text.as_str(), false).unwrap().get_ids().to_vec();
        if ours_plain != case.llama_cpp_plain {
            failures.push(diff(
                &tokenizer,
                case,
                "special=false",
                &ours_plain,
                &case.llama_cpp_plain,
            ));
        }
        let decoded = tokenizer.inner().decode(&ours, false).unwrap();
        if case.lossless && decoded != case.text {
            failures.push(format!("{}: decodes to {decoded:?}, not {:?}", case.name, case.text));
        }
        agree += usize::from(failures.len() == before);
        transformers_agree += usize::from(case.transformers == case.llama_cpp);
    }
    let n = fixture.cases.len();
    println!(
        "{n} hard strings: ours = llama.cpp on {agree} (special=true and false); transformers {} = \
         llama.cpp on {transformers_agree}; llama-cpp-python {}",
        fixture.meta["transformers"].as_str().unwrap_or("?"),
        fixture.meta["llama_cpp_python"].as_str().unwrap_or("?"),
    );
    assert!(
        failures.is_empty(),
        "{} mismatches with llama.cpp over {n} strings:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
