//! Loading pretrained checkpoints (Hugging Face directories and GGUF files) and saving
//! converted models back as Hugging Face directories.
//!
//! Every source is turned into a list of [`NamedTensor`]s carrying Hugging Face key
//! names; [`apply_weights`] hands them to burn-store, which matches them to module paths
//! (ours mirror HF's keys, with the one renaming rule below), transposes linear weights
//! (PyTorch `[out, in]` → Burn `[in, out]`) and checks every shape. Loading is strict: a
//! missing or unused tensor is an error naming it.

pub mod gguf;
pub mod gguf_model;
mod gguf_quants;
#[cfg(test)]
mod gguf_tests;
pub mod gguf_tokenizer;
pub mod hf_dir;
pub mod save;

use std::path::Path;

use burn::module::ParamId;
use burn::prelude::*;
use burn::tensor::TensorData;
use burn_store::{ModuleSnapshot, PyTorchToBurnAdapter, TensorSnapshot};

use crate::config::{ConfigError, ModelConfig};
use crate::tokenizer::{stop_tokens, TextTokenizer, TokenizerError};
use crate::transformer::Transformer;

/// One checkpoint tensor under its Hugging Face name, already converted to f32.
pub struct NamedTensor {
    /// The Hugging Face key, e.g. `model.layers.0.self_attn.q_proj.weight`.
    pub name: String,
    /// The values in PyTorch's layout (`[out, in]` for linear weights).
    pub data: TensorData,
}

/// A model and the tokenizer that came with it.
pub struct Pretrained<B: Backend> {
    /// The weights, with the config they were built from.
    pub model: Transformer<B>,
    /// The tokenizer and chat template read from the same source.
    pub tokenizer: TextTokenizer,
}

impl<B: Backend> Pretrained<B> {
    /// The ids that end a generation with this model: see [`crate::tokenizer::stop_tokens`].
    pub fn stop_tokens(&self) -> Vec<u32> {
        stop_tokens(&self.model.config().eos_token_ids, &self.tokenizer)
    }
}

/// Why a model or tokenizer could not be loaded (or saved); every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// `config.json` (or the hyper-parameters in GGUF metadata) is missing or invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The tokenizer files are missing or invalid.
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    /// The GGUF file is malformed or uses something this reader does not support.
    #[error(transparent)]
    Gguf(#[from] gguf::GgufError),
    /// A file could not be read or written, or is not what was expected.
    #[error("{path}: {message}")]
    File {
        /// The file or directory, as shown to the user.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// Tensors are missing, unused or mis-shaped for the model the config describes.
    #[error("{origin}: weights do not match the model described by its config:\n{details}")]
    Weights {
        /// The checkpoint, as shown to the user.
        origin: String,
        /// Every offending tensor, as burn-store reports them.
        details: String,
    },
}

impl LoadError {
    pub(crate) fn file(path: &Path, message: impl std::fmt::Display) -> Self {
        Self::File { path: path.display().to_string(), message: message.to_string() }
    }
}

/// Loads a Hugging Face model directory or a `.gguf` file, with its tokenizer.
pub fn load_pretrained<B: Backend>(
    path: &Path,
    device: &B::Device,
) -> Result<Pretrained<B>, LoadError> {
    Ok(Pretrained { model: load_model(path, device)?, tokenizer: load_tokenizer(path)? })
}

/// Loads only the weights (and config) of a model directory or `.gguf` file.
pub fn load_model<B: Backend>(
    path: &Path,
    device: &B::Device,
) -> Result<Transformer<B>, LoadError> {
    match Source::of(path)? {
        Source::HfDir => hf_dir::load_model(path, device),
        Source::Gguf => gguf_model::load_model(path, device),
    }
}

/// Loads only the tokenizer (and chat template) of a model directory or `.gguf` file.
pub fn load_tokenizer(path: &Path) -> Result<TextTokenizer, LoadError> {
    match Source::of(path)? {
        Source::HfDir => Ok(TextTokenizer::from_hf_dir(path)?),
        Source::Gguf => gguf_model::load_tokenizer(path),
    }
}

enum Source {
    HfDir,
    Gguf,
}

impl Source {
    fn of(path: &Path) -> Result<Self, LoadError> {
        if path.is_dir() {
            Ok(Self::HfDir)
        } else if path.is_file() && path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
        {
            Ok(Self::Gguf)
        } else if path.exists() {
            Err(LoadError::file(path, "not a model: expected a Hugging Face model directory (config.json + *.safetensors) or a .gguf file"))
        } else {
            Err(LoadError::file(path, "no such file or directory"))
        }
    }
}

/// The one key that differs between HF checkpoints and our module paths: HF calls the
/// RMSNorm scale `weight`, Burn's `RmsNorm` calls it `gamma` (burn-store's PyTorch
/// adapter renames LayerNorm/BatchNorm parameters but not RMSNorm's).
pub(crate) const NORM_SCALE_HF: &str = "weight";
pub(crate) const NORM_SCALE_BURN: &str = "gamma";

/// Our module path for an HF key.
fn module_path(hf_key: &str) -> Vec<String> {
    let mut path: Vec<String> = hf_key.split('.').map(String::from).collect();
    let n = path.len();
    if n >= 2 && path[n - 2].ends_with("norm") && path[n - 1] == NORM_SCALE_HF {
        path[n - 1] = NORM_SCALE_BURN.to_string();
    }
    path
}

/// Fails unless the weights hold every layer the config declares. Checked before the
/// model is built, which allocates one (lazily initialised) block per declared layer: a
/// corrupt layer count must be reported, not exhaust memory.
pub(crate) fn check_layer_count(
    config: &ModelConfig,
    tensors: &[NamedTensor],
    origin: &str,
) -> Result<(), LoadError> {
    let layers_in_weights = tensors
        .iter()
        .filter_map(|t| {
            t.name.strip_prefix("model.layers.")?.split('.').next()?.parse::<usize>().ok()
        })
        .map(|i| i.saturating_add(1))
        .max()
        .unwrap_or(0);
    if config.num_hidden_layers > layers_in_weights {
        return Err(LoadError::Weights {
            origin: origin.to_string(),
            details: format!(
                "the config declares num_hidden_layers = {}, but the weights hold {layers_in_weights} layer(s)",
                config.num_hidden_layers
            ),
        });
    }
    Ok(())
}

/// Applies `tensors` to a freshly built `model`, failing on any missing, unused or
/// mis-shaped tensor. `origin` names the source in errors.
pub(crate) fn apply_weights<B: Backend>(
    mut model: Transformer<B>,
    tensors: Vec<NamedTensor>,
    origin: &str,
) -> Result<Transformer<B>, LoadError> {
    let snapshots = tensors
        .into_iter()
        .map(|t| TensorSnapshot::from_data(t.data, module_path(&t.name), vec![], ParamId::new()))
        .collect();
    let result = model.apply(snapshots, None, Some(Box::new(PyTorchToBurnAdapter)), false);
    if result.errors.is_empty() && result.missing.is_empty() && result.unused.is_empty() {
        Ok(model)
    } else {
        Err(LoadError::Weights { origin: origin.to_string(), details: format!("{result}") })
    }
}

/// Converts raw little-endian bytes of a supported float dtype to f32 `TensorData`.
pub(crate) fn f32_tensor(
    bytes: Vec<u8>,
    shape: Vec<usize>,
    dtype: burn::tensor::DType,
) -> TensorData {
    TensorData::from_bytes_vec(bytes, shape, dtype).convert::<f32>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;

    #[test]
    fn pretrained_stop_tokens_are_config_eos_then_tokenizer_eos() {
        let json = r#"{"model_type":"qwen3","vocab_size":8,"hidden_size":8,"intermediate_size":8,
            "num_hidden_layers":1,"num_attention_heads":2,"rms_norm_eps":1e-6,
            "max_position_embeddings":16,"eos_token_id":[5, 2]}"#;
        let config = ModelConfig::from_json_str(json, "test").unwrap();
        let vocab = serde_json::json!({
            "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
            "normalizer": null, "pre_tokenizer": null, "post_processor": null, "decoder": null,
            "model": { "type": "WordLevel", "vocab": { "a": 0, "<eos>": 1, "[UNK]": 2 }, "unk_token": "[UNK]" }
        });
        let inner = tokenizers::Tokenizer::from_bytes(vocab.to_string().as_bytes()).unwrap();
        let pretrained = Pretrained {
            model: Transformer::<NdArray<f32>>::new(&config, &Default::default()),
            tokenizer: TextTokenizer::new(inner, None, None, Some("<eos>".into())),
        };
        assert_eq!(pretrained.stop_tokens(), [5, 2, 1]);
    }
}
