//! Streaming decoded text as blocks commit, without splitting a character. A byte-level
//! tokenizer can spread one character (an emoji, a CJK ideograph) over several tokens; a
//! prefix that ends inside such a character decodes to U+FFFD. Printing token by token
//! would show that replacement character for valid text, so the stream holds back a
//! trailing U+FFFD until the bytes after it arrive (or the row ends).

/// The text of one growing sequence of tokens, handed out piece by piece.
#[derive(Debug, Clone, Default)]
pub struct TextStream {
    tokens: Vec<u32>,
    printed: String,
}

impl TextStream {
    /// An empty stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `new_tokens` and returns the text that became complete, to print now.
    /// `decode` turns all tokens so far into text (the tokenizer's decode).
    pub fn push(&mut self, new_tokens: &[u32], decode: impl Fn(&[u32]) -> String) -> String {
        self.tokens.extend_from_slice(new_tokens);
        let text = decode(&self.tokens);
        self.advance(text.trim_end_matches(char::REPLACEMENT_CHARACTER))
    }

    /// Returns whatever was held back (the sequence has ended: a trailing U+FFFD is then
    /// really in the output).
    pub fn finish(&mut self, decode: impl Fn(&[u32]) -> String) -> String {
        let text = decode(&self.tokens);
        self.advance(&text)
    }

    /// The part of `text` after what was printed, when `text` extends it (a decoder may
    /// rewrite earlier text, e.g. cleaning spaces: then nothing is printed until the new
    /// text extends what was printed again).
    fn advance(&mut self, text: &str) -> String {
        match text.strip_prefix(self.printed.as_str()) {
            Some(new) if !new.is_empty() => {
                let new = new.to_string();
                self.printed.push_str(&new);
                new
            }
            _ => String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A byte-level "tokenizer": one token per byte, decoded with replacement characters
    /// for incomplete sequences, as byte-level BPE decoders do.
    fn decode(tokens: &[u32]) -> String {
        let bytes: Vec<u8> = tokens.iter().map(|&t| t as u8).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    #[test]
    fn characters_split_over_tokens_are_printed_whole() {
        let text = "Émile et Zoë ont 3 chats 🐈. 猫";
        let tokens: Vec<u32> = text.bytes().map(u32::from).collect();
        let mut stream = TextStream::new();
        let mut printed = String::new();
        for token in &tokens {
            let piece = stream.push(std::slice::from_ref(token), decode);
            assert!(!piece.contains(char::REPLACEMENT_CHARACTER), "printed {piece:?}");
            printed += &piece;
        }
        printed += &stream.finish(decode);
        assert_eq!(printed, text);
    }

    #[test]
    fn a_character_cut_off_by_the_end_of_generation_is_shown_at_the_end() {
        let mut stream = TextStream::new();
        let cat = "🐈".as_bytes();
        let tokens = [u32::from(b'a'), u32::from(cat[0]), u32::from(cat[1])];
        assert_eq!(stream.push(&tokens, decode), "a");
        assert_eq!(stream.finish(decode), "\u{FFFD}");
    }
}
