//! Model hyper-parameters, read from a Hugging Face `config.json`.
//!
//! The raw file is parsed into [`HfConfig`] (every field optional, exactly as HF names
//! them) and then validated into [`ModelConfig`], so that a missing or unsupported field
//! is reported by name instead of surfacing later as a shape error.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

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
    pub architecture: Architecture,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
    /// Bias on the q/k/v projections (always on for Qwen2, `attention_bias` for Llama).
    pub qkv_bias: bool,
    /// Bias on the output projection (Llama's `attention_bias` covers it too).
    pub o_bias: bool,
    pub bos_token_id: Option<u32>,
    pub eos_token_ids: Vec<u32>,
    /// Present once a model has been converted (or is being converted) to diffusion.
    pub diffusion: Option<DiffusionConfig>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read config: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: not valid JSON (line {line}, column {column}): {message}")]
    Json { path: String, line: usize, column: usize, message: String },
    #[error("{path}: missing required field `{field}`")]
    Missing { path: String, field: &'static str },
    #[error("{path}: field `{field}`: {message}")]
    Invalid { path: String, field: &'static str, message: String },
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

impl HfConfig {
    fn validate(self, origin: &str) -> Result<ModelConfig, ConfigError> {
        let path = origin.to_string();
        let missing = |field| ConfigError::Missing { path: path.clone(), field };
        let invalid =
            |field, message: String| ConfigError::Invalid { path: path.clone(), field, message };

        let model_type = self.model_type.ok_or_else(|| missing("model_type"))?;
        let architecture = Architecture::from_model_type(&model_type).ok_or_else(|| {
            invalid(
                "model_type",
                format!("`{model_type}` is not supported (expected llama, qwen2 or qwen3)"),
            )
        })?;
        let hidden_size = self.hidden_size.ok_or_else(|| missing("hidden_size"))?;
        let num_attention_heads =
            self.num_attention_heads.ok_or_else(|| missing("num_attention_heads"))?;
        let num_key_value_heads = self.num_key_value_heads.unwrap_or(num_attention_heads);
        if num_attention_heads == 0
            || num_key_value_heads == 0
            || num_attention_heads % num_key_value_heads != 0
        {
            return Err(invalid(
                "num_key_value_heads",
                format!("{num_key_value_heads} must be positive and divide num_attention_heads = {num_attention_heads}"),
            ));
        }
        let head_dim = match self.head_dim {
            Some(d) => d,
            None if hidden_size % num_attention_heads == 0 => hidden_size / num_attention_heads,
            None => {
                return Err(invalid(
                    "hidden_size",
                    format!("{hidden_size} is not divisible by {num_attention_heads} heads"),
                ))
            }
        };
        if head_dim % 2 != 0 {
            return Err(invalid(
                "head_dim",
                format!("{head_dim} must be even for rotary embeddings"),
            ));
        }
        if let Some(scaling) = self.rope_scaling.filter(|v| !v.is_null()) {
            return Err(invalid(
                "rope_scaling",
                format!("{scaling} is not supported (only plain RoPE)"),
            ));
        }
        let mut rope_theta = self.rope_theta;
        if let Some(params) = self.rope_parameters.filter(|v| !v.is_null()) {
            match params.get("rope_type").and_then(Value::as_str) {
                None | Some("default") => {}
                Some(other) => {
                    return Err(invalid(
                        "rope_parameters",
                        format!("rope_type `{other}` is not supported (only default RoPE)"),
                    ))
                }
            }
            if let Some(theta) = params.get("rope_theta") {
                rope_theta = Some(theta.as_f64().ok_or_else(|| {
                    invalid("rope_parameters", "rope_theta must be a number".into())
                })?);
            }
        }
        if let Some(act) = self.hidden_act.filter(|a| a != "silu") {
            return Err(invalid("hidden_act", format!("`{act}` is not supported (expected silu)")));
        }
        if self.use_sliding_window == Some(true) {
            return Err(invalid(
                "use_sliding_window",
                "sliding-window attention is not supported".into(),
            ));
        }
        if self.mlp_bias == Some(true) {
            return Err(invalid("mlp_bias", "MLP biases are not supported".into()));
        }
        let attention_bias = self.attention_bias.unwrap_or(false);
        let (qkv_bias, o_bias) = match architecture {
            Architecture::Llama => (attention_bias, attention_bias),
            Architecture::Qwen2 => (true, false),
            Architecture::Qwen3 => (attention_bias, attention_bias),
        };
        let rms_norm_eps = self.rms_norm_eps.ok_or_else(|| missing("rms_norm_eps"))?;
        if !(rms_norm_eps > 0.0) {
            return Err(invalid("rms_norm_eps", format!("{rms_norm_eps} must be positive")));
        }
        Ok(ModelConfig {
            architecture,
            vocab_size: self.vocab_size.ok_or_else(|| missing("vocab_size"))?,
            hidden_size,
            intermediate_size: self
                .intermediate_size
                .ok_or_else(|| missing("intermediate_size"))?,
            num_hidden_layers: self
                .num_hidden_layers
                .ok_or_else(|| missing("num_hidden_layers"))?,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            rms_norm_eps,
            rope_theta: rope_theta.unwrap_or(10_000.0),
            max_position_embeddings: self
                .max_position_embeddings
                .ok_or_else(|| missing("max_position_embeddings"))?,
            tie_word_embeddings: self.tie_word_embeddings.unwrap_or(false),
            qkv_bias,
            o_bias,
            bos_token_id: token_ids(self.bos_token_id, "bos_token_id", origin)?.first().copied(),
            eos_token_ids: token_ids(self.eos_token_id, "eos_token_id", origin)?,
            diffusion: self.opdlm,
        })
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
