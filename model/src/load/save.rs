//! Writing a model as a Hugging Face directory (`config.json`, `model.safetensors`,
//! tokenizer files) that `transformers` and [`super::load_pretrained`] can load.
//! Only safetensors is ever written: nothing in a model directory is executable.

use std::path::{Path, PathBuf};

use burn::prelude::*;
use burn_store::{BurnToPyTorchAdapter, ModuleSnapshot, SafetensorsStore};

use super::{LoadError, NORM_SCALE_BURN, NORM_SCALE_HF};
use crate::tokenizer::TextTokenizer;
use crate::transformer::Transformer;

/// Saves `model` and `tokenizer` into `dir` atomically: everything is written to a
/// sibling temporary directory that replaces `dir` only once complete, so an interrupted
/// save never leaves a half-written model behind.
pub fn save_hf_dir<B: Backend>(
    model: &Transformer<B>,
    tokenizer: &TextTokenizer,
    dir: &Path,
) -> Result<(), LoadError> {
    let staging = sibling(dir, "staging");
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(|e| LoadError::file(&staging, e))?;
    }
    std::fs::create_dir_all(&staging).map_err(|e| LoadError::file(&staging, e))?;
    if let Err(e) = write_staging(model, tokenizer, &staging) {
        // A full disk: leave nothing half-written behind (the previous `dir` is untouched).
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e);
    }

    // Swap in the finished directory; the previous one is removed only afterwards.
    let previous = sibling(dir, "previous");
    if dir.exists() {
        std::fs::rename(dir, &previous).map_err(|e| LoadError::file(dir, e))?;
    }
    std::fs::rename(&staging, dir).map_err(|e| LoadError::file(dir, e))?;
    if previous.exists() {
        std::fs::remove_dir_all(&previous).map_err(|e| LoadError::file(&previous, e))?;
    }
    Ok(())
}

/// Writes every file of the model directory into `staging` and syncs them to disk.
fn write_staging<B: Backend>(
    model: &Transformer<B>,
    tokenizer: &TextTokenizer,
    staging: &Path,
) -> Result<(), LoadError> {
    let weights = staging.join("model.safetensors");
    let mut store = SafetensorsStore::from_file(&weights)
        .with_to_adapter(BurnToPyTorchAdapter)
        .with_key_remapping(
            format!(r"^(.*norm)\.{NORM_SCALE_BURN}$"),
            format!("$1.{NORM_SCALE_HF}"),
        )
        .metadata("format", "pt");
    model.save_into(&mut store).map_err(|e| LoadError::file(&weights, e))?;
    let config = staging.join("config.json");
    let json =
        serde_json::to_string_pretty(&model.config().to_hf_json()).expect("config serialises");
    std::fs::write(&config, json).map_err(|e| LoadError::file(&config, e))?;
    tokenizer.save_hf(staging)?;
    for entry in std::fs::read_dir(staging).map_err(|e| LoadError::file(staging, e))? {
        let path = entry.map_err(|e| LoadError::file(staging, e))?.path();
        std::fs::File::open(&path)
            .and_then(|f| f.sync_all())
            .map_err(|e| LoadError::file(&path, e))?;
    }
    Ok(())
}

fn sibling(dir: &Path, tag: &str) -> PathBuf {
    let name =
        dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
    dir.with_file_name(format!(".{name}.{tag}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ModelConfig;
    use crate::mask::{AttentionMode, Layout};
    use burn::backend::NdArray;
    use burn::tensor::{Int, TensorData};

    type B = NdArray<f32>;

    fn word_tokenizer() -> TextTokenizer {
        let json = serde_json::json!({
            "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
            "normalizer": null, "pre_tokenizer": null, "post_processor": null, "decoder": null,
            "model": { "type": "WordLevel", "vocab": { "a": 0, "b": 1, "[UNK]": 2 }, "unk_token": "[UNK]" }
        });
        let inner = tokenizers::Tokenizer::from_bytes(json.to_string().as_bytes()).unwrap();
        TextTokenizer::new(inner, Some("{{ messages[0].content }}".into()), None, Some("b".into()))
    }

    #[test]
    fn saved_directory_reloads_to_identical_logits_and_config() {
        let device = Default::default();
        for (arch, tied) in [("qwen3", false), ("llama", true), ("qwen2", false)] {
            let json = format!(
                r#"{{"model_type":"{arch}","vocab_size":40,"hidden_size":16,"intermediate_size":24,
                "num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"rms_norm_eps":1e-6,
                "max_position_embeddings":64,"tie_word_embeddings":{tied}}}"#
            );
            let config = ModelConfig::from_json_str(&json, "test").unwrap();
            let model = Transformer::<B>::new(&config, &device).into_diffusion(3, 4, false);
            let dir =
                std::env::temp_dir().join(format!("opdlm-save-{arch}-{}", std::process::id()));
            save_hf_dir(&model, &word_tokenizer(), &dir).unwrap();
            // Saving again over an existing directory replaces it.
            save_hf_dir(&model, &word_tokenizer(), &dir).unwrap();
            let loaded = crate::load::load_pretrained::<B>(&dir, &device).unwrap();
            assert_eq!(loaded.model.config(), model.config());
            assert_eq!(loaded.tokenizer.chat_template(), Some("{{ messages[0].content }}"));
            let tokens = Tensor::<B, 2, Int>::from_data(
                TensorData::new(vec![1i64, 5, 39, 3, 7], [1, 5]),
                &device,
            );
            let layout =
                Layout::contiguous(AttentionMode::BlockCausal { block_size: 4 }, 1, 0, 5, &device);
            let a: Vec<f32> = model.forward(tokens.clone(), &layout).into_data().to_vec().unwrap();
            let b: Vec<f32> = loaded.model.forward(tokens, &layout).into_data().to_vec().unwrap();
            assert_eq!(a, b, "{arch}");
            let leftovers: Vec<_> = std::fs::read_dir(dir.parent().unwrap())
                .unwrap()
                .filter_map(|e| e.ok())
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with(&format!(".opdlm-save-{arch}-{}", std::process::id()))
                })
                .collect();
            assert!(leftovers.is_empty(), "staging directories left behind");
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }
}
