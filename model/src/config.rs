//! Model hyper-parameters, read from a Hugging Face `config.json`.
//!
//! The raw file is parsed into [`HfConfig`] (every field optional, exactly as HF names
//! them) and then validated into [`ModelConfig`], so that a missing or unsupported field
//! is reported by name instead of surfacing later as a shape error.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The paper's block size, used when neither the user nor a converted model's config
/// (its [`DiffusionConfig::block_size`]) says otherwise.
pub const DEFAULT_BLOCK_SIZE: usize = 4;

/// Which member of the Llama family a checkpoint belongs to. The differences are small
/// and all live in the attention block (see [`crate::attention`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Architecture {
    /// Llama / SmolLM2: no biases (unless `attention_bias`), no q/k norm.
    Llama,
    /// Qwen2 / Qwen2.5: bias on q, k and v projections.
    Qwen2,
    /// Qwen3: per-head RMSNorm on q and k, no bias.
    Qwen3,
}

impl Architecture {
    fn from_model_type(model_type: &str) -> Option<Self> {
        match model_type {
            "llama" | "smollm" | "smollm2" => Some(Self::Llama),
            "qwen2" => Some(Self::Qwen2),
            "qwen3" => Some(Self::Qwen3),
            _ => None,
        }
    }

    /// The `model_type` / `architectures` pair written back to `config.json`.
    pub fn hf_names(self) -> (&'static str, &'static str) {
        match self {
            Self::Llama => ("llama", "LlamaForCausalLM"),
            Self::Qwen2 => ("qwen2", "Qwen2ForCausalLM"),
            Self::Qwen3 => ("qwen3", "Qwen3ForCausalLM"),
        }
    }
}

/// Settings that make a converted checkpoint a block-diffusion model. Stored in the
/// converted model's `config.json` under the key `"opdlm"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiffusionConfig {
    /// Token id written into not-yet-decoded slots; never predicted.
    pub mask_token_id: u32,
    /// Block size the model was trained with (attention is bidirectional inside a block).
    pub block_size: usize,
    /// `true` when slot `i` is predicted by the logits at position `i - 1`, as an
    /// autoregressive model predicts: used to decode an *unconverted* ARLM with the
    /// diffusion sampler. OPDLM students predict slot `i` at position `i` (`false`).
    #[serde(default)]
    pub shift_logits: bool,
}

/// Validated hyper-parameters of one transformer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Which Llama-family variant: decides the attention block's biases and norms.
    pub architecture: Architecture,
    /// Rows of the embedding and LM head (may exceed the tokenizer's size).
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the SwiGLU feed-forward block.
    pub intermediate_size: usize,
    /// Number of decoder layers.
    pub num_hidden_layers: usize,
    /// Number of query heads.
    pub num_attention_heads: usize,
    /// Number of key/value heads (fewer than query heads under grouped-query attention).
    pub num_key_value_heads: usize,
    /// Width of one attention head (Qwen3 sets it explicitly, others derive it).
    pub head_dim: usize,
    /// Epsilon of every RMSNorm.
    pub rms_norm_eps: f64,
    /// RoPE frequency base.
    pub rope_theta: f64,
    /// Longest context the model was trained for (kept for `config.json`, not enforced).
    pub max_position_embeddings: usize,
    /// Whether the LM head reuses the token embedding instead of its own weights.
    pub tie_word_embeddings: bool,
    /// Bias on the q/k/v projections (always on for Qwen2, `attention_bias` for Llama).
    pub qkv_bias: bool,
    /// Bias on the output projection (Llama's `attention_bias` covers it too).
    pub o_bias: bool,
    /// Beginning-of-sequence id, when the config declares one.
    pub bos_token_id: Option<u32>,
    /// End-of-sequence ids (HF allows one or several); generation stops at any of them.
    pub eos_token_ids: Vec<u32>,
    /// Present once a model has been converted (or is being converted) to diffusion.
    pub diffusion: Option<DiffusionConfig>,
}

/// Why a `config.json` could not be turned into a [`ModelConfig`]; every variant names
/// the file (`path`) so that the user knows which one to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read config: {source}")]
    Io {
        /// The file, as shown to the user.
        path: String,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The file is not JSON.
    #[error("{path}: not valid JSON (line {line}, column {column}): {message}")]
    Json {
        /// The file, as shown to the user.
        path: String,
        /// Line of the syntax error (1-based).
        line: usize,
        /// Column of the syntax error (1-based).
        column: usize,
        /// The parser's message.
        message: String,
    },
    /// A field without a sensible default is absent.
    #[error("{path}: missing required field `{field}`")]
    Missing {
        /// The file, as shown to the user.
        path: String,
        /// The field's `config.json` name.
        field: &'static str,
    },
    /// A field has a value this model cannot honour (unsupported or inconsistent).
    #[error("{path}: field `{field}`: {message}")]
    Invalid {
        /// The file, as shown to the user.
        path: String,
        /// The field's `config.json` name.
        field: &'static str,
        /// What is wrong with its value.
        message: String,
    },
}

/// `config.json` exactly as Hugging Face writes it; unknown keys are ignored.
#[derive(Debug, Deserialize)]
struct HfConfig {
    model_type: Option<String>,
    vocab_size: Option<usize>,
    hidden_size: Option<usize>,
    intermediate_size: Option<usize>,
    num_hidden_layers: Option<usize>,
    num_attention_heads: Option<usize>,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    rms_norm_eps: Option<f64>,
    rope_theta: Option<f64>,
    /// transformers ≥ 5 writes `{"rope_theta": ..., "rope_type": "default"}` here.
    rope_parameters: Option<Value>,
    rope_scaling: Option<Value>,
    max_position_embeddings: Option<usize>,
    tie_word_embeddings: Option<bool>,
    attention_bias: Option<bool>,
    mlp_bias: Option<bool>,
    hidden_act: Option<String>,
    use_sliding_window: Option<bool>,
    bos_token_id: Option<Value>,
    eos_token_id: Option<Value>,
    opdlm: Option<DiffusionConfig>,
}

impl ModelConfig {
    /// Reads and validates `config.json`.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Io { path: shown.clone(), source })?;
        Self::from_json_str(&text, &shown)
    }

    /// Parses and validates the text of a `config.json`; `origin` names it in errors.
    pub fn from_json_str(text: &str, origin: &str) -> Result<Self, ConfigError> {
        let raw: HfConfig = serde_json::from_str(text).map_err(|e| ConfigError::Json {
            path: origin.to_string(),
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        })?;
        raw.validate(origin)
    }

    /// Number of query heads sharing one key/value head (grouped-query attention).
    pub fn kv_group_size(&self) -> usize {
        self.num_attention_heads / self.num_key_value_heads
    }

    /// `config.json` in Hugging Face's own format, loadable by `transformers`.
    pub fn to_hf_json(&self) -> Value {
        let (model_type, class) = self.architecture.hf_names();
        let mut json = serde_json::json!({
            "architectures": [class],
            "model_type": model_type,
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "head_dim": self.head_dim,
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            "hidden_act": "silu",
            "torch_dtype": "float32",
        });
        let map = json.as_object_mut().expect("literal object");
        // Qwen2's biases are implied by its architecture; Llama and Qwen3 declare theirs.
        if self.architecture != Architecture::Qwen2 {
            map.insert("attention_bias".into(), self.qkv_bias.into());
        }
        if let Some(bos) = self.bos_token_id {
            map.insert("bos_token_id".into(), bos.into());
        }
        match self.eos_token_ids.as_slice() {
            [] => {}
            [one] => {
                map.insert("eos_token_id".into(), (*one).into());
            }
            many => {
                map.insert("eos_token_id".into(), many.to_vec().into());
            }
        }
        if let Some(diffusion) = &self.diffusion {
            map.insert("opdlm".into(), serde_json::to_value(diffusion).expect("plain struct"));
        }
        json
    }
}

/// Builds the errors of one config file, naming the file in each.
struct Problems<'a> {
    origin: &'a str,
}

impl Problems<'_> {
    fn missing(&self, field: &'static str) -> ConfigError {
        ConfigError::Missing { path: self.origin.to_string(), field }
    }

    fn invalid(&self, field: &'static str, message: String) -> ConfigError {
        ConfigError::Invalid { path: self.origin.to_string(), field, message }
    }
}

/// Query heads, key/value heads and head width, validated together.
struct HeadShape {
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
}

impl HfConfig {
    /// Checks every field (in the order of the checks' error messages) and fills defaults.
    fn validate(self, origin: &str) -> Result<ModelConfig, ConfigError> {
        let problems = Problems { origin };
        let architecture = self.architecture(&problems)?;
        let hidden_size = self.hidden_size.ok_or_else(|| problems.missing("hidden_size"))?;
        let heads = self.head_shape(hidden_size, &problems)?;
        let rope_theta = self.rope_theta(&problems)?;
        self.reject_unsupported(&problems)?;
        let (qkv_bias, o_bias) = self.biases(architecture);
        let rms_norm_eps = self.rms_norm_eps.ok_or_else(|| problems.missing("rms_norm_eps"))?;
        if rms_norm_eps.is_nan() || rms_norm_eps <= 0.0 {
            return Err(
                problems.invalid("rms_norm_eps", format!("{rms_norm_eps} must be positive"))
            );
        }
        let required = |value: Option<usize>, field| value.ok_or_else(|| problems.missing(field));
        Ok(ModelConfig {
            architecture,
            vocab_size: required(self.vocab_size, "vocab_size")?,
            hidden_size,
            intermediate_size: required(self.intermediate_size, "intermediate_size")?,
            num_hidden_layers: required(self.num_hidden_layers, "num_hidden_layers")?,
            num_attention_heads: heads.heads,
            num_key_value_heads: heads.kv_heads,
            head_dim: heads.head_dim,
            rms_norm_eps,
            rope_theta: rope_theta.unwrap_or(10_000.0),
            max_position_embeddings: required(
                self.max_position_embeddings,
                "max_position_embeddings",
            )?,
            tie_word_embeddings: self.tie_word_embeddings.unwrap_or(false),
            qkv_bias,
            o_bias,
            bos_token_id: token_ids(self.bos_token_id, "bos_token_id", origin)?.first().copied(),
            eos_token_ids: token_ids(self.eos_token_id, "eos_token_id", origin)?,
            diffusion: self.opdlm,
        })
    }

    /// The architecture named by `model_type`, which must be one we implement.
    fn architecture(&self, problems: &Problems) -> Result<Architecture, ConfigError> {
        let model_type =
            self.model_type.as_deref().ok_or_else(|| problems.missing("model_type"))?;
        Architecture::from_model_type(model_type).ok_or_else(|| {
            problems.invalid(
                "model_type",
                format!("`{model_type}` is not supported (expected llama, qwen2 or qwen3)"),
            )
        })
    }

    /// Head counts and width: kv heads must divide query heads, the width must be even
    /// (RoPE rotates pairs) and, when not given, derivable from `hidden_size`.
    fn head_shape(
        &self,
        hidden_size: usize,
        problems: &Problems,
    ) -> Result<HeadShape, ConfigError> {
        let heads =
            self.num_attention_heads.ok_or_else(|| problems.missing("num_attention_heads"))?;
        let kv_heads = self.num_key_value_heads.unwrap_or(heads);
        if heads == 0 || kv_heads == 0 || heads % kv_heads != 0 {
            return Err(problems.invalid(
                "num_key_value_heads",
                format!("{kv_heads} must be positive and divide num_attention_heads = {heads}"),
            ));
        }
        let head_dim = match self.head_dim {
            Some(d) => d,
            None if hidden_size.is_multiple_of(heads) => hidden_size / heads,
            None => {
                return Err(problems.invalid(
                    "hidden_size",
                    format!("{hidden_size} is not divisible by {heads} heads"),
                ))
            }
        };
        if head_dim % 2 != 0 {
            return Err(problems
                .invalid("head_dim", format!("{head_dim} must be even for rotary embeddings")));
        }
        Ok(HeadShape { heads, kv_heads, head_dim })
    }

    /// The RoPE base from `rope_theta` or transformers ≥ 5's `rope_parameters`; any RoPE
    /// scaling is rejected rather than silently ignored.
    fn rope_theta(&self, problems: &Problems) -> Result<Option<f64>, ConfigError> {
        if let Some(scaling) = self.rope_scaling.as_ref().filter(|v| !v.is_null()) {
            return Err(problems
                .invalid("rope_scaling", format!("{scaling} is not supported (only plain RoPE)")));
        }
        let mut rope_theta = self.rope_theta;
        if let Some(params) = self.rope_parameters.as_ref().filter(|v| !v.is_null()) {
            match params.get("rope_type").and_then(Value::as_str) {
                None | Some("default") => {}
                Some(other) => {
                    return Err(problems.invalid(
                        "rope_parameters",
                        format!("rope_type `{other}` is not supported (only default RoPE)"),
                    ))
                }
            }
            if let Some(theta) = params.get("rope_theta") {
                rope_theta = Some(theta.as_f64().ok_or_else(|| {
                    problems.invalid("rope_parameters", "rope_theta must be a number".into())
                })?);
            }
        }
        Ok(rope_theta)
    }

    /// Fails on features our transformer does not implement, instead of computing
    /// something else than the checkpoint's model.
    fn reject_unsupported(&self, problems: &Problems) -> Result<(), ConfigError> {
        if let Some(act) = self.hidden_act.as_ref().filter(|a| *a != "silu") {
            return Err(
                problems.invalid("hidden_act", format!("`{act}` is not supported (expected silu)"))
            );
        }
        if self.use_sliding_window == Some(true) {
            return Err(problems.invalid(
                "use_sliding_window",
                "sliding-window attention is not supported".into(),
            ));
        }
        if self.mlp_bias == Some(true) {
            return Err(problems.invalid("mlp_bias", "MLP biases are not supported".into()));
        }
        Ok(())
    }

    /// `(qkv_bias, o_bias)`: Qwen2 always biases q/k/v (never o); the others follow
    /// `attention_bias`.
    fn biases(&self, architecture: Architecture) -> (bool, bool) {
        let attention_bias = self.attention_bias.unwrap_or(false);
        match architecture {
            Architecture::Llama => (attention_bias, attention_bias),
            Architecture::Qwen2 => (true, false),
            Architecture::Qwen3 => (attention_bias, attention_bias),
        }
    }
}

/// HF writes token ids as `null`, a number, or a list of numbers.
fn token_ids(
    value: Option<Value>,
    field: &'static str,
    origin: &str,
) -> Result<Vec<u32>, ConfigError> {
    let bad = || ConfigError::Invalid {
        path: origin.to_string(),
        field,
        message: "expected a token id or a list of token ids".into(),
    };
    match value {
        None | Some(Value::Null) => Ok(vec![]),
        Some(Value::Number(n)) => {
            Ok(vec![n.as_u64().and_then(|n| u32::try_from(n).ok()).ok_or_else(bad)?])
        }
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_u64().and_then(|n| u32::try_from(n).ok()).ok_or_else(bad))
            .collect(),
        Some(_) => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QWEN3: &str = r#"{"model_type":"qwen3","vocab_size":151936,"hidden_size":1024,
        "intermediate_size":3072,"num_hidden_layers":28,"num_attention_heads":16,
        "num_key_value_heads":8,"head_dim":128,"rms_norm_eps":1e-6,"rope_theta":1000000,
        "max_position_embeddings":40960,"tie_word_embeddings":true,"eos_token_id":151645,
        "rope_scaling":null,"hidden_act":"silu"}"#;

    #[test]
    fn qwen3_config_is_read_with_explicit_head_dim() {
        let c = ModelConfig::from_json_str(QWEN3, "qwen3.json").unwrap();
        assert_eq!(c.architecture, Architecture::Qwen3);
        assert_eq!(c.head_dim, 128); // not hidden/heads = 64
        assert_eq!(c.kv_group_size(), 2);
        assert_eq!(c.eos_token_ids, vec![151645]);
        assert!(!c.qkv_bias);
    }

    #[test]
    fn round_trip_through_hf_json_keeps_every_field() {
        let mut c = ModelConfig::from_json_str(QWEN3, "qwen3.json").unwrap();
        c.diffusion =
            Some(DiffusionConfig { mask_token_id: 151669, block_size: 4, shift_logits: false });
        let again = ModelConfig::from_json_str(&c.to_hf_json().to_string(), "again").unwrap();
        assert_eq!(c, again);
    }

    #[test]
    fn qwen3_attention_bias_survives_a_round_trip() {
        // Found with the hf_dir fuzz target's round-trip check: to_hf_json wrote attention_bias
        // for Llama only.
        let text =
            QWEN3.replace(r#""rope_scaling":null"#, r#""rope_scaling":null,"attention_bias":true"#);
        let c = ModelConfig::from_json_str(&text, "qwen3.json").unwrap();
        assert!(c.qkv_bias && c.o_bias);
        assert_eq!(ModelConfig::from_json_str(&c.to_hf_json().to_string(), "again").unwrap(), c);
    }

    #[test]
    fn missing_field_is_named() {
        let text = QWEN3.replace(r#""rms_norm_eps":1e-6,"#, "");
        let err = ModelConfig::from_json_str(&text, "cfg.json").unwrap_err().to_string();
        assert_eq!(err, "cfg.json: missing required field `rms_norm_eps`");
    }

    #[test]
    fn unknown_model_type_is_rejected_by_name() {
        let text = QWEN3.replace("qwen3", "mamba");
        let err = ModelConfig::from_json_str(&text, "cfg.json").unwrap_err().to_string();
        assert!(err.contains("`mamba` is not supported"), "{err}");
    }

    #[test]
    fn rope_scaling_is_rejected_rather_than_ignored() {
        let text = QWEN3.replace(r#""rope_scaling":null"#, r#""rope_scaling":{"type":"yarn"}"#);
        let err = ModelConfig::from_json_str(&text, "cfg.json").unwrap_err().to_string();
        assert!(err.contains("rope_scaling"), "{err}");
    }

    #[test]
    fn transformers_v5_rope_parameters_are_read() {
        let text = QWEN3.replace(
            r#""rope_theta":1000000,"#,
            r#""rope_parameters":{"rope_theta":5000.0,"rope_type":"default"},"#,
        );
        assert_eq!(ModelConfig::from_json_str(&text, "cfg.json").unwrap().rope_theta, 5000.0);
        let yarn = text.replace(r#""rope_type":"default""#, r#""rope_type":"yarn""#);
        assert!(ModelConfig::from_json_str(&yarn, "cfg.json")
            .unwrap_err()
            .to_string()
            .contains("yarn"));
    }

    #[test]
    fn json_syntax_error_reports_line() {
        let err = ModelConfig::from_json_str("{\n\"a\": ,}", "cfg.json").unwrap_err().to_string();
        assert!(err.starts_with("cfg.json: not valid JSON (line 2"), "{err}");
    }
}
