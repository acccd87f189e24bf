//! Rebuilds a Hugging Face `tokenizers::Tokenizer` from the vocabulary a GGUF
//! file carries in its metadata (llama.cpp's `tokenizer.ggml.*` keys), so a
//! GGUF model needs no separate tokenizer.json.
//!
//! Only byte-level BPE (`tokenizer.ggml.model == "gpt2"`) is supported: that
//! covers SmolLM, Qwen2 and Llama 3. The pre-tokenizer is chosen from
//! `tokenizer.ggml.pre` to match what each model's own tokenizer.json (and
//! llama.cpp) does, because the same merges give different ids when text is
//! split differently (e.g. SmolLM2 splits every digit on its own).
//!
//! Where the two differ, llama.cpp (the GGUF's own runtime) is followed, and
//! tests/tests/tokenizer_parity.rs checks SmolLM2 against it on hard strings:
//! - codepoints are classified with llama.cpp's Unicode 15.1 tables, not the
//!   newer ones of Oniguruma and Rust (see [`UNICODE_16_LETTERS`]);
//! - a byte the vocabulary has no token for is dropped without letting its
//!   neighbours merge across it (see [`unencodable_bytes`]).

use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::normalizers::unicode::NFC;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

use super::gguf::{GgufError, GgufFile, GgufValue};

/// llama.cpp token types (`tokenizer.ggml.token_type`).
const TOKEN_TYPE_CONTROL: i128 = 3;
const TOKEN_TYPE_USER_DEFINED: i128 = 4;

/// GPT-2's split regex (what `ByteLevel` applies with `use_regex`), written out so that its
/// classes can be narrowed to llama.cpp's (`llama_cpp_classes`).
const GPT2_SPLIT: &str =
    r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
/// Llama 3's split regex (from its tokenizer.json): digits in groups of up to 3.
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Qwen2's split regex (from its tokenizer.json): every digit on its own.
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Letters (`\p{L}`) that Unicode 16 added. llama.cpp classifies codepoints with its own
/// tables, which are Unicode 15.1 (llama-cpp-python 0.3.36): to it these are unassigned, so
/// they are neither letters nor digits and its pre-tokenizer groups them with punctuation.
/// Oniguruma (the regex engine of `tokenizers`) knows Unicode 16 and would split "𐵀's" as
/// ["𐵀", "'s"] where llama.cpp has ["𐵀'", "s"]. These ranges and [`UNICODE_16_NUMBERS`] are
/// every codepoint whose class differs (`scripts/make_llamacpp_tokenizer_fixture.py --scan`
/// compares all of them); whitespace agrees.
const UNICODE_16_LETTERS: &str = concat!(
    r"\x{1C89}-\x{1C8A}\x{A7CB}-\x{A7CD}\x{A7DA}-\x{A7DC}\x{105C0}-\x{105F3}\x{10D4A}-\x{10D65}",
    r"\x{10D6F}-\x{10D85}\x{10EC2}-\x{10EC4}\x{11380}-\x{11389}\x{1138B}\x{1138E}\x{11390}-\x{113B5}",
    r"\x{113B7}\x{113D1}\x{113D3}\x{11BC0}-\x{11BE0}\x{13460}-\x{143FA}\x{16100}-\x{1611D}",
    r"\x{16D40}-\x{16D6C}\x{18CFF}\x{1E5D0}-\x{1E5ED}\x{1E5F0}",
);
/// Numbers (`\p{N}`) that Unicode 16 added; see [`UNICODE_16_LETTERS`]. Rust's
/// `char::is_numeric` (which `tokenizers`' `Digits` uses) is newer still, so digits are split
/// with this regex class instead.
const UNICODE_16_NUMBERS: &str = concat!(
    r"\x{10D40}-\x{10D49}\x{116D0}-\x{116E3}\x{11BF0}-\x{11BF9}\x{16130}-\x{16139}",
    r"\x{16D70}-\x{16D79}\x{1CCF0}-\x{1CCF9}\x{1E5F1}-\x{1E5FA}",
);

/// `regex` with `\p{L}` and `\p{N}` narrowed to the codepoints llama.cpp gives those classes
/// (Oniguruma class intersection; it works inside `[...]` too, as a nested class).
fn llama_cpp_classes(regex: &str) -> String {
    regex
        .replace(r"\p{L}", &format!(r"[\p{{L}}&&[^{UNICODE_16_LETTERS}]]"))
        .replace(r"\p{N}", &format!(r"[\p{{N}}&&[^{UNICODE_16_NUMBERS}]]"))
}

/// GPT-2's byte → character table: what `ByteLevel` writes each byte of the text as, and so
/// how byte tokens are spelled in a byte-level vocabulary.
fn byte_level_chars() -> [char; 256] {
    let mut chars = ['\0'; 256];
    let mut next = 256;
    for (byte, c) in chars.iter_mut().enumerate() {
        *c = if matches!(byte, 0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF) {
            char::from(byte as u8)
        } else {
            next += 1;
            char::from_u32(next - 1).expect("256..324 are chars")
        };
    }
    chars
}

/// The byte-level characters of the bytes that have no token of their own (SmolLM2 has none
/// for 0x04, 0x06, 0x13, 0x14, 0x16, 0x1D and bytes that never occur in UTF-8). Both
/// tokenizers drop such a byte, but `tokenizers`' BPE drops it before merging, so its
/// neighbours merge across the gap (" \x04's" gives "Ġ'" + "s"), while llama.cpp keeps it as a
/// symbol that nothing merges with (" " + "'" + "s"). Splitting the text around these
/// characters after `ByteLevel` does what llama.cpp does.
fn unencodable_bytes(has_token: impl Fn(&str) -> bool) -> Vec<char> {
    byte_level_chars().into_iter().filter(|c| !has_token(&c.to_string())).collect()
}

/// Special token ids declared by the file; `None` where a key is absent or is
/// not a valid token id.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GgufSpecialTokens {
    /// `tokenizer.ggml.bos_token_id`.
    pub bos: Option<u32>,
    /// `tokenizer.ggml.eos_token_id`.
    pub eos: Option<u32>,
    /// `tokenizer.ggml.padding_token_id`.
    pub pad: Option<u32>,
}

/// The BOS/EOS/padding ids the file declares (absent or invalid ones are `None`).
pub fn special_tokens_from_gguf(gguf: &GgufFile) -> GgufSpecialTokens {
    let id = |key: &str| gguf.get_u64(key).ok().and_then(|v| u32::try_from(v).ok());
    GgufSpecialTokens {
        bos: id("tokenizer.ggml.bos_token_id"),
        eos: id("tokenizer.ggml.eos_token_id"),
        pad: id("tokenizer.ggml.padding_token_id"),
    }
}

/// The model's Jinja chat template, if the file has one.
pub fn chat_template_from_gguf(gguf: &GgufFile) -> Option<String> {
    gguf.get_str("tokenizer.chat_template").ok().map(str::to_owned)
}

/// The file's tokenizer as a `tokenizers::Tokenizer` that encodes as llama.cpp does:
/// byte-level BPE with the pre-tokenizer `tokenizer.ggml.pre` names, control and
/// user-defined tokens matched whole, and BOS/EOS added when the file asks for it.
pub fn tokenizer_from_gguf(gguf: &GgufFile) -> Result<Tokenizer, GgufError> {
    let model = gguf.get_str("tokenizer.ggml.model")?;
    if model != "gpt2" {
        return Err(tok_err(
            gguf,
            format!("tokenizer.ggml.model '{model}' is not supported (only byte-level BPE 'gpt2')"),
        ));
    }
    // llama.cpp also falls back to the GPT-2 split when the key is missing.
    let pre = match gguf.get("tokenizer.ggml.pre") {
        None => "default",
        Some(_) => gguf.get_str("tokenizer.ggml.pre")?,
    };
    let tokens = gguf.get_str_array("tokenizer.ggml.tokens")?;
    let merges = merges(gguf)?;
    let vocab: Vocab =
        tokens.iter().enumerate().map(|(id, t)| (t.to_string(), id as u32)).collect();
    let split = pre_tokenizer(gguf, pre, |t| vocab.contains_key(t))?;

    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .ignore_merges(split.ignore_merges)
        .build()
        .map_err(|e| tok_err(gguf, format!("invalid BPE vocabulary/merges: {e}")))?;
    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer.with_pre_tokenizer(Some(split.pre_tokenizer));
    tokenizer.with_decoder(Some(ByteLevelDecoder::default()));
    if split.nfc {
        tokenizer.with_normalizer(Some(NFC));
    }
    add_whole_tokens(&mut tokenizer, gguf, &tokens)?;
    if let Some(post) = bos_eos_template(gguf, &tokens)? {
        tokenizer.with_post_processor(Some(post));
    }
    Ok(tokenizer)
}

/// `tokenizer.ggml.merges` as token pairs (each entry is `"left right"`).
fn merges(gguf: &GgufFile) -> Result<Vec<(String, String)>, GgufError> {
    gguf.get_str_array("tokenizer.ggml.merges")?
        .into_iter()
        .enumerate()
        .map(|(i, m)| {
            m.split_once(' ').map(|(a, b)| (a.to_owned(), b.to_owned())).ok_or_else(|| {
                tok_err(gguf, format!("merge {i} {m:?} is not two space-separated tokens"))
            })
        })
        .collect()
}

/// How a model's tokenizer splits text before BPE, which decides the ids as much as the
/// merges do.
struct TextSplit {
    pre_tokenizer: PreTokenizerWrapper,
    /// Look whole words up in the vocabulary before merging (Llama 3).
    ignore_merges: bool,
    /// NFC-normalise the text first (Qwen2).
    nfc: bool,
}

/// The split for `tokenizer.ggml.pre`, as each model's own tokenizer.json (and llama.cpp)
/// does it; `has_token` tells which byte-level characters the vocabulary can encode.
fn pre_tokenizer(
    gguf: &GgufFile,
    pre: &str,
    has_token: impl Fn(&str) -> bool,
) -> Result<TextSplit, GgufError> {
    let split = |regex: &str| -> Result<PreTokenizerWrapper, GgufError> {
        let pattern = SplitPattern::Regex(llama_cpp_classes(regex));
        Split::new(pattern, SplitDelimiterBehavior::Isolated, false)
            .map(Into::into)
            .map_err(|e| tok_err(gguf, format!("bad split regex: {e}")))
    };
    let (mut steps, ignore_merges, nfc): (Vec<PreTokenizerWrapper>, bool, bool) = match pre {
        "default" | "gpt2" => (vec![split(GPT2_SPLIT)?], false, false),
        // SmolLM2's tokenizer.json splits every digit first (`Digits`), as llama.cpp does.
        "smollm" => (vec![split(r"\p{N}")?, split(GPT2_SPLIT)?], false, false),
        // Llama 3's tokenizer.json (and llama.cpp) look whole words up before merging.
        "llama-bpe" | "llama3" | "llama-v3" => (vec![split(LLAMA3_SPLIT)?], true, false),
        "qwen2" | "deepseek-r1-qwen" => (vec![split(QWEN2_SPLIT)?], false, true),
        other => {
            return Err(tok_err(gguf, format!("tokenizer.ggml.pre '{other}' is not supported")))
        }
    };
    steps.push(ByteLevel::new(false, true, false).into());
    let unencodable = unencodable_bytes(has_token);
    if !unencodable.is_empty() {
        let class: String = unencodable.iter().map(|c| format!(r"\x{{{:X}}}", *c as u32)).collect();
        steps.push(split(&format!("[{class}]"))?);
    }
    let pre_tokenizer: PreTokenizerWrapper = Sequence::new(steps).into();
    Ok(TextSplit { pre_tokenizer, ignore_merges, nfc })
}

/// Registers control tokens (`<|im_start|>`, ...) as special and user-defined ones as
/// added tokens, so that both are matched whole in raw text, as llama.cpp does, instead
/// of being cut up by BPE.
fn add_whole_tokens(
    tokenizer: &mut Tokenizer,
    gguf: &GgufFile,
    tokens: &[&str],
) -> Result<(), GgufError> {
    let (special, user): (Vec<_>, Vec<_>) = token_types(gguf, tokens.len())?
        .into_iter()
        .zip(tokens)
        .filter(|(ty, _)| *ty == TOKEN_TYPE_CONTROL || *ty == TOKEN_TYPE_USER_DEFINED)
        .partition(|(ty, _)| *ty == TOKEN_TYPE_CONTROL);
    let added = |list: Vec<(i128, &&str)>, is_special: bool| -> Vec<AddedToken> {
        list.into_iter()
            .map(|(_, t)| AddedToken::from(t.to_string(), is_special).normalized(false))
            .collect()
    };
    tokenizer.add_special_tokens(&added(special, true));
    tokenizer.add_tokens(&added(user, false));
    Ok(())
}

/// `tokenizer.ggml.token_type`, or all-normal when absent; must match the vocab size.
fn token_types(gguf: &GgufFile, n_tokens: usize) -> Result<Vec<i128>, GgufError> {
    let key = "tokenizer.ggml.token_type";
    let Some(value) = gguf.get(key) else {
        return Ok(vec![1; n_tokens]);
    };
    let types: Option<Vec<i128>> = match value {
        GgufValue::Array(items) => items.iter().map(GgufValue::as_i128).collect(),
        _ => None,
    };
    match types {
        Some(types) if types.len() == n_tokens => Ok(types),
        _ => Err(tok_err(
            gguf,
            format!(
                "{key} must be an integer array with one entry per token ({n_tokens}), got {value}"
            ),
        )),
    }
}

/// A post-processor adding BOS/EOS when the file asks for it (Llama 3 does,
/// SmolLM2 and Qwen2 do not), so `encode(text, true)` matches llama.cpp.
fn bos_eos_template(
    gguf: &GgufFile,
    tokens: &[&str],
) -> Result<Option<TemplateProcessing>, GgufError> {
    let flag = |key: &str| matches!(gguf.get(key), Some(GgufValue::Bool(true)));
    let ids = special_tokens_from_gguf(gguf);
    let wanted =
        |on: bool, id: Option<u32>, what: &str| -> Result<Option<(String, u32)>, GgufError> {
            match (on, id) {
                (false, _) => Ok(None),
                (true, Some(id)) => match tokens.get(id as usize) {
                    Some(t) => Ok(Some((t.to_string(), id))),
                    None => Err(tok_err(
                        gguf,
                        format!("{what} token id {id} is outside the vocabulary"),
                    )),
                },
                (true, None) => Err(tok_err(
                    gguf,
                    format!("add_{what}_token is set but there is no {what} token id"),
                )),
            }
        };
    let bos = wanted(flag("tokenizer.ggml.add_bos_token"), ids.bos, "bos")?;
    let eos = wanted(flag("tokenizer.ggml.add_eos_token"), ids.eos, "eos")?;
    if bos.is_none() && eos.is_none() {
        return Ok(None);
    }
    let around = |seq: &str| -> Vec<String> {
        bos.iter()
            .map(|b| b.0.clone())
            .chain([seq.to_owned()])
            .chain(eos.iter().map(|e| e.0.clone()))
            .collect()
    };
    let specials: Vec<(String, u32)> = bos.iter().chain(eos.iter()).cloned().collect();
    let template = TemplateProcessing::builder()
        .try_single(around("$A"))
        .and_then(|b| b.try_pair([around("$A"), around("$B:1")].concat()))
        .map_err(|e| tok_err(gguf, format!("bad BOS/EOS template: {e}")))?
        .special_tokens(specials)
        .build()
        .map_err(|e| tok_err(gguf, format!("bad BOS/EOS template: {e}")))?;
    Ok(Some(template))
}

fn tok_err(gguf: &GgufFile, msg: String) -> GgufError {
    GgufError::Tokenizer { path: gguf.path.clone(), msg }
}

#[cfg(test)]
mod tests {
    use super::super::gguf_tests::{array_value, open, str_value, Writer};
    use super::*;

    /// A 12-token byte-level vocabulary: two control tokens, one user-defined
    /// token, and merges that can build "ab", " ab" and "12".
    fn tiny(model: &str, pre: &str) -> Writer {
        tiny_plus(model, pre, &[])
    }

    /// [`tiny`] with `extra` tokens after its 12.
    fn tiny_plus(model: &str, pre: &str, extra: &[String]) -> Writer {
        let mut tokens: Vec<&str> = vec![
            "<|endoftext|>",
            "<|im_start|>",
            "<think>",
            "a",
            "b",
            "ab",
            "Ġ",
            "Ġab",
            "1",
            "2",
            "12",
            "!",
        ];
        tokens.extend(extra.iter().map(String::as_str));
        let mut types = vec![3, 3, 4, 1, 1, 1, 1, 1, 1, 1, 1, 1];
        types.resize(tokens.len(), 1);
        let merges = ["a b", "Ġ ab", "1 2"];
        let strs =
            |xs: &[&str]| array_value(8, &xs.iter().map(|s| str_value(s)).collect::<Vec<_>>());
        let ints: Vec<Vec<u8>> = types.iter().map(|t: &i32| t.to_le_bytes().to_vec()).collect();
        Writer::new()
            .kv("tokenizer.ggml.model", 8, &str_value(model))
            .kv("tokenizer.ggml.pre", 8, &str_value(pre))
            .kv("tokenizer.ggml.tokens", 9, &strs(&tokens))
            .kv("tokenizer.ggml.token_type", 9, &array_value(5, &ints))
            .kv("tokenizer.ggml.merges", 9, &strs(&merges))
            .kv("tokenizer.ggml.bos_token_id", 4, &1u32.to_le_bytes())
            .kv("tokenizer.ggml.eos_token_id", 4, &0u32.to_le_bytes())
            .kv("tokenizer.chat_template", 8, &str_value("{{ messages }}"))
    }

    fn encode(tok: &Tokenizer, text: &str) -> Vec<u32> {
        tok.encode(text, true).unwrap().get_ids().to_vec()
    }

    #[test]
    fn smollm_splits_digits_and_keeps_special_tokens_whole() {
        let g = open(&tiny("gpt2", "smollm").finish()).unwrap();
        let tok = tokenizer_from_gguf(&g).unwrap();
        let text = "<|im_start|>ab ab12<think>!<|endoftext|>";
        let ids = encode(&tok, text);
        assert_eq!(ids, [1, 5, 7, 8, 9, 2, 11, 0]);
        assert_eq!(tok.decode(&ids, false).unwrap(), text);
        assert_eq!(
            tok.decode(&ids, true).unwrap(),
            "ab ab12<think>!",
            "only control tokens are special"
        );

        assert_eq!(
            special_tokens_from_gguf(&g),
            GgufSpecialTokens { bos: Some(1), eos: Some(0), pad: None }
        );
        assert_eq!(chat_template_from_gguf(&g).as_deref(), Some("{{ messages }}"));
    }

    /// The pieces the pre-tokenizer cuts `text` into, as slices of `text`.
    fn pieces<'a>(tok: &Tokenizer, text: &'a str) -> Vec<&'a str> {
        use tokenizers::{OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer};
        let mut pre = PreTokenizedString::from(text);
        tok.get_pre_tokenizer().unwrap().pre_tokenize(&mut pre).unwrap();
        pre.get_splits(OffsetReferential::Original, OffsetType::Byte)
            .into_iter()
            .map(|(_, (start, end), _)| &text[start..end])
            .collect()
    }

    #[test]
    fn codepoints_new_in_unicode_16_are_neither_letters_nor_digits_as_in_llama_cpp() {
        // Every byte has a token, so pieces are only what the split regexes cut.
        let bytes: Vec<String> = byte_level_chars().iter().map(|c| c.to_string()).collect();
        for pre in ["smollm", "gpt2", "qwen2", "llama-bpe"] {
            let g = open(&tiny_plus("gpt2", pre, &bytes).finish()).unwrap();
            let tok = tokenizer_from_gguf(&g).unwrap();
            // U+10D40 is a Garay digit and U+1C89 a Cyrillic letter since Unicode 16.
            let text = "\u{10D40}'s \u{1C89}\u{1C89}x 0's";
            let want = ["\u{10D40}'", "s", " \u{1C89}\u{1C89}", "x", " ", "0", "'s"];
            let want = if pre == "gpt2" {
                ["\u{10D40}'", "s", " \u{1C89}\u{1C89}", "x", " 0", "'s"].to_vec()
            } else {
                want.to_vec()
            };
            assert_eq!(pieces(&tok, text), want, "pre {pre}");
        }
    }

    #[test]
    fn bytes_without_a_token_are_not_merged_across() {
        // "é" is two bytes the tiny vocabulary has no token for: llama.cpp drops them but
        // does not merge "a" and "b" around them.
        let tok = tokenizer_from_gguf(&open(&tiny("gpt2", "smollm").finish()).unwrap()).unwrap();
        assert_eq!(encode(&tok, "ab a\u{e9}b"), [5, 6, 3, 4]);
        let vocab = tok.get_vocab(false);
        assert_eq!(unencodable_bytes(|t| vocab.contains_key(t)).len(), 256 - 6);
    }

    #[test]
    fn pre_type_decides_digit_splitting() {
        for pre in ["gpt2", "default", "qwen2", "llama-bpe"] {
            let tok = tokenizer_from_gguf(&open(&tiny("gpt2", pre).finish()).unwrap()).unwrap();
            let want: &[u32] = if pre == "qwen2" { &[5, 7, 8, 9] } else { &[5, 7, 10] };
            assert_eq!(encode(&tok, "ab ab12"), want, "pre {pre}");
        }
    }

    #[test]
    fn add_bos_token_prepends_bos() {
        let w = tiny("gpt2", "smollm").kv("tokenizer.ggml.add_bos_token", 7, &[1]);
        let tok = tokenizer_from_gguf(&open(&w.finish()).unwrap()).unwrap();
        assert_eq!(encode(&tok, "ab"), [1, 5]);
        assert_eq!(tok.encode("ab", false).unwrap().get_ids(), [5]);
    }

    #[test]
    fn unsupported_model_or_pre_is_named() {
        for (model, pre, named) in
            [("llama", "default", "'llama'"), ("gpt2", "mystery", "'mystery'")]
        {
            let err = tokenizer_from_gguf(&open(&tiny(model, pre).finish()).unwrap()).unwrap_err();
            assert!(
                matches!(err, GgufError::Tokenizer { .. }) && err.to_string().contains(named),
                "{err}"
            );
        }
        let err = tokenizer_from_gguf(&open(&Writer::new().finish()).unwrap()).unwrap_err();
        assert!(
            matches!(err, GgufError::MissingKey { ref key, .. } if key == "tokenizer.ggml.model"),
            "{err}"
        );
    }

    /// Runs only with `OPDLM_SMOLLM2_GGUF` set; the fixture comes from
    /// scripts/make_tokenizer_fixture.py (transformers, see its docstring).
    #[test]
    fn matches_transformers_fixture() {
        let Ok(path) = std::env::var("OPDLM_SMOLLM2_GGUF") else {
            eprintln!("skipping: OPDLM_SMOLLM2_GGUF not set");
            return;
        };
        let g = GgufFile::open(std::path::Path::new(&path)).unwrap();
        let tok = tokenizer_from_gguf(&g).unwrap();
        assert_eq!(tok.get_vocab_size(true), 49152);
        let fixture =
            concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/smollm2_tokenizer_cases.json");
        let fixture: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(fixture).unwrap()).unwrap();
        let cases = fixture["cases"].as_array().unwrap();
        assert!(cases.len() >= 10);
        for case in cases {
            let text = case["text"].as_str().unwrap();
            let want: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
            let ids = encode(&tok, text);
            assert_eq!(ids, want, "encoding {text:?}");
            assert_eq!(tok.decode(&ids, false).unwrap(), text, "decoding {text:?}");
        }
        let chatml =
            "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n";
        assert_eq!(encode(&tok, chatml)[..3], [1, 4093, 198]);
        let special = special_tokens_from_gguf(&g);
        assert_eq!(special, GgufSpecialTokens { bos: Some(1), eos: Some(2), pad: Some(2) });
        assert!(chat_template_from_gguf(&g).unwrap().contains("<|im_start|>"));
    }
}
