//! Streaming decode prints whole characters: on SmolLM2's byte-level BPE tokenizer a
//! character can span several tokens, and printing token by token showed U+FFFD for
//! valid text (`cargo xtask infer` streams through the same `TextStream`).

use opdlm_inference::TextStream;
use opdlm_tests::smollm2_gguf;

#[test]
fn streaming_smollm2_tokens_one_by_one_never_prints_a_replacement_character() {
    let tokenizer = opdlm_model::load_tokenizer(&smollm2_gguf()).unwrap();
    let text = "Émile et Zoë ont 3 chats 🐈. Combien de pattes? 猫は四本足です。";
    let ids = tokenizer.encode(text).unwrap();
    // The property is only tested if some character is split over tokens.
    let split = (1..ids.len()).any(|n| tokenizer.decode(&ids[..n]).ends_with('\u{FFFD}'));
    assert!(split, "no character of {text:?} spans several tokens");

    let mut stream = TextStream::new();
    let decode = |tokens: &[u32]| tokenizer.decode(tokens);
    let mut printed = String::new();
    for id in &ids {
        let piece = stream.push(std::slice::from_ref(id), decode);
        assert!(!piece.contains('\u{FFFD}'), "printed {piece:?} after {printed:?}");
        printed += &piece;
    }
    printed += &stream.finish(decode);
    assert_eq!(printed, tokenizer.decode(&ids));
    assert_eq!(printed, text);
}
