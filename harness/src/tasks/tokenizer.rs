//! The built-in tasks' character-level tokenizer: one token per character, an EOS token,
//! written as a standard Hugging Face `tokenizer.json` so the teacher directory loads like
//! any other checkpoint.

use opdlm_model::TextTokenizer;

/// The end-of-sequence token (id 0).
pub const EOS: &str = "<eos>";
/// Every character the tasks (and a user typing similar prompts) can use.
const CHARACTERS: &str = "0123456789abcdefghijklmnopqrstuvwxyz +-*=,|:?.";

/// `tokenizer.json` contents: a word-level vocabulary over single characters, a
/// pre-tokenizer splitting every character, and a decoder that concatenates them.
pub fn tokenizer_json() -> serde_json::Value {
    let mut vocab = serde_json::Map::new();
    vocab.insert(EOS.into(), 0.into());
    for (i, c) in CHARACTERS.chars().enumerate() {
        vocab.insert(c.to_string(), (i + 1).into());
    }
    serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [{ "id": 0, "content": EOS, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true }],
        "normalizer": null,
        "pre_tokenizer": { "type": "Split", "pattern": { "Regex": "." }, "behavior": "Isolated", "invert": false },
        "post_processor": null,
        "decoder": { "type": "Fuse" },
        "model": { "type": "WordLevel", "vocab": vocab, "unk_token": EOS }
    })
}

/// The tokenizer itself.
pub fn task_tokenizer() -> TextTokenizer {
    let inner = tokenizers::Tokenizer::from_bytes(tokenizer_json().to_string().as_bytes())
        .expect("the built-in tokenizer is valid");
    TextTokenizer::new(inner, None, None, Some(EOS.into()))
}

/// Tokens in the vocabulary.
pub fn vocab_size() -> usize {
    CHARACTERS.chars().count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_task_string_one_token_per_character() {
        let tokenizer = task_tokenizer();
        assert_eq!(tokenizer.vocab_size(), vocab_size());
        for text in ["add 347+085=", "7+5+0=12,4+8+1=13,3+0+1=04|0432", "sort 53819=", "13589"] {
            let ids = tokenizer.encode(text).unwrap();
            assert_eq!(ids.len(), text.chars().count(), "{text}");
            assert_eq!(tokenizer.decode(&ids), text);
        }
        assert_eq!(tokenizer.token_to_id(EOS), Some(0));
    }
}
