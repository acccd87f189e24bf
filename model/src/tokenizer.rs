//! Text ↔ token ids (the `tokenizers` crate) and chat templates (Jinja, rendered by
//! minijinja with the same whitespace settings `transformers` uses).

use std::path::Path;

use serde::{Deserialize, Serialize};

/// Why a tokenizer could not be read, written, or used to build a prompt.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// A tokenizer file is missing, unreadable or malformed.
    #[error("{path}: {message}")]
    File {
        /// The file, as shown to the user.
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// The chat template is invalid Jinja or raised an error (`raise_exception`).
    #[error("chat template failed to render: {0}")]
    Template(String),
    /// A chat prompt was asked of a model that ships no chat template.
    #[error("this model has no chat template (tokenizer_config.json `chat_template` or GGUF `tokenizer.chat_template`)")]
    NoTemplate,
    /// The `tokenizers` crate failed to encode the text.
    #[error("tokenizer: {0}")]
    Encode(String),
}

/// One chat turn, as in `transformers`' `apply_chat_template`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Who speaks: `"system"`, `"user"` or `"assistant"` (what the template expects).
    pub role: String,
    /// The turn's text.
    pub content: String,
}

impl ChatMessage {
    /// A user turn, the usual single-message prompt.
    pub fn user(content: impl Into<String>) -> Self {
        Self { role: "user".into(), content: content.into() }
    }
}

/// A tokenizer plus what is needed to build prompts for it.
#[derive(Clone)]
pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
    chat_template: Option<String>,
    /// Where the chat template was read from, for errors.
    template_origin: String,
    bos_token: Option<String>,
    eos_token: Option<String>,
}

impl TextTokenizer {
    /// Wraps a `tokenizers` tokenizer with its chat template and BOS/EOS strings (the
    /// template refers to them as `bos_token` / `eos_token`).
    pub fn new(
        inner: tokenizers::Tokenizer,
        chat_template: Option<String>,
        bos_token: Option<String>,
        eos_token: Option<String>,
    ) -> Self {
        Self {
            inner,
            chat_template,
            template_origin: "the model's chat template".into(),
            bos_token,
            eos_token,
        }
    }

    /// Reads `tokenizer.json` and, when present, `tokenizer_config.json` (chat template,
    /// BOS/EOS strings) from a Hugging Face model directory.
    pub fn from_hf_dir(dir: &Path) -> Result<Self, TokenizerError> {
        let path = dir.join("tokenizer.json");
        let inner = tokenizers::Tokenizer::from_file(&path).map_err(|e| TokenizerError::File {
            path: path.display().to_string(),
            message: if path.exists() {
                format!("invalid tokenizer: {e}")
            } else {
                "missing (expected a Hugging Face tokenizer.json)".into()
            },
        })?;
        let config_path = dir.join("tokenizer_config.json");
        let config: serde_json::Value = match std::fs::read_to_string(&config_path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| TokenizerError::File {
                path: config_path.display().to_string(),
                message: format!("not valid JSON (line {}, column {}): {e}", e.line(), e.column()),
            })?,
            Err(_) => serde_json::Value::Null,
        };
        let special = |key: &str| match &config[key] {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Object(o) => {
                o.get("content").and_then(|c| c.as_str()).map(String::from)
            }
            _ => None,
        };
        let jinja = dir.join("chat_template.jinja");
        let (chat_template, template_origin) = match &config["chat_template"] {
            serde_json::Value::String(s) => {
                (Some(s.clone()), format!("{} `chat_template`", config_path.display()))
            }
            _ => (std::fs::read_to_string(&jinja).ok(), jinja.display().to_string()),
        };
        Ok(Self {
            template_origin,
            ..Self::new(inner, chat_template, special("bos_token"), special("eos_token"))
        })
    }

    /// Encodes `text` exactly as written: no BOS/EOS is added (chat templates spell out
    /// the special tokens a model expects).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        let encoding =
            self.inner.encode(text, false).map_err(|e| TokenizerError::Encode(e.to_string()))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Decodes ids to text, keeping special tokens out of the output.
    pub fn decode(&self, ids: &[u32]) -> String {
        self.inner.decode(ids, true).unwrap_or_default()
    }

    /// Number of ids the tokenizer can produce (added tokens included).
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The id of a token given by its text (e.g. a special token), if it exists.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The end-of-sequence token's text, as declared by the tokenizer's config.
    pub fn eos_token(&self) -> Option<&str> {
        self.eos_token.as_deref()
    }

    /// The Jinja chat template's source, if the model ships one.
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    /// The underlying `tokenizers` tokenizer, for what this wrapper does not expose.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// Renders `messages` with the model's own chat template, as `transformers`'
    /// `apply_chat_template(messages, add_generation_prompt=..., tokenize=False)` does.
    pub fn render_chat(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, TokenizerError> {
        let source = self.chat_template.as_deref().ok_or(TokenizerError::NoTemplate)?;
        let mut env = minijinja::Environment::new();
        // transformers renders with trim_blocks and lstrip_blocks, and Python string
        // methods (`.strip()`, `.startswith()`) are common in templates.
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |message: String| -> Result<String, minijinja::Error> {
                Err(minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, message))
            },
        );
        let failed = |e: minijinja::Error| {
            TokenizerError::Template(format!("{}: {e:#}", self.template_origin))
        };
        let template = env.template_from_str(source).map_err(failed)?;
        template
            .render(minijinja::context! {
                messages => messages,
                add_generation_prompt => add_generation_prompt,
                bos_token => self.bos_token.clone().unwrap_or_default(),
                eos_token => self.eos_token.clone().unwrap_or_default(),
            })
            .map_err(failed)
    }

    /// Writes `tokenizer.json` and `tokenizer_config.json` into `dir` (HF layout).
    pub fn save_hf(&self, dir: &Path) -> Result<(), TokenizerError> {
        let path = dir.join("tokenizer.json");
        let io = |path: &Path, e: &dyn std::fmt::Display| TokenizerError::File {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        self.inner.save(&path, false).map_err(|e| io(&path, &e))?;
        let mut config = serde_json::json!({ "tokenizer_class": "PreTrainedTokenizerFast" });
        let map = config.as_object_mut().expect("literal object");
        for (key, value) in [
            ("chat_template", &self.chat_template),
            ("bos_token", &self.bos_token),
            ("eos_token", &self.eos_token),
        ] {
            if let Some(v) = value {
                map.insert(key.into(), v.clone().into());
            }
        }
        let path = dir.join("tokenizer_config.json");
        std::fs::write(&path, serde_json::to_string_pretty(&config).expect("json"))
            .map_err(|e| io(&path, &e))
    }
}

/// The ids that end a generation: the config's EOS ids in order, then the tokenizer's EOS
/// token when the config does not list it (chat models often end a turn with a token,
/// e.g. `<|im_end|>`, that only the tokenizer names).
pub fn stop_tokens(config_eos: &[u32], tokenizer: &TextTokenizer) -> Vec<u32> {
    let mut ids = config_eos.to_vec();
    if let Some(eos) = tokenizer.eos_token().and_then(|t| tokenizer.token_to_id(t)) {
        if !ids.contains(&eos) {
            ids.push(eos);
        }
    }
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    fn byte_tokenizer(template: &str) -> TextTokenizer {
        let json = serde_json::json!({
            "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
            "normalizer": null, "pre_tokenizer": null, "post_processor": null, "decoder": null,
            "model": { "type": "WordLevel", "vocab": { "a": 0, "b": 1, "[UNK]": 2 }, "unk_token": "[UNK]" }
        });
        let inner = tokenizers::Tokenizer::from_bytes(json.to_string().as_bytes()).unwrap();
        TextTokenizer::new(inner, Some(template.into()), Some("<s>".into()), Some("</s>".into()))
    }

    #[test]
    fn chat_template_renders_like_jinja_with_trim_and_python_methods() {
        let template = "{{ bos_token }}{% for m in messages %}\n<|{{ m.role }}|>{{ m.content.strip() }}{{ eos_token }}\n{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}";
        let tok = byte_tokenizer(template);
        let out = tok.render_chat(&[ChatMessage::user("  hi  ")], true).unwrap();
        assert_eq!(out, "<s><|user|>hi</s>\n<|assistant|>");
    }

    #[test]
    fn stop_tokens_append_the_tokenizer_eos_once() {
        // The tokenizer's EOS "b" is id 1.
        let tok =
            TextTokenizer::new(byte_tokenizer("").inner().clone(), None, None, Some("b".into()));
        assert_eq!(stop_tokens(&[7, 3], &tok), [7, 3, 1]);
        assert_eq!(stop_tokens(&[1, 7], &tok), [1, 7]);
        assert_eq!(stop_tokens(&[], &tok), [1]);
        // An EOS string the vocabulary lacks ("</s>" here) adds nothing.
        assert_eq!(stop_tokens(&[7], &byte_tokenizer("")), [7]);
    }

    #[test]
    fn template_raise_exception_becomes_an_error() {
        let tok = byte_tokenizer("{{ raise_exception('only user turns') }}");
        let err = tok.render_chat(&[], false).unwrap_err().to_string();
        assert!(err.contains("only user turns"), "{err}");
    }
}
