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
pub fn save_hf_dir<B: Backend>(model: &Transformer<B>, tokenizer: &TextTokenizer, dir: &Path) -> Result<(), LoadError> {
    let staging = sibling(dir, "staging");
    if staging.exists() {
        std::fs::remove_dir_all(&staging).map_err(|e| LoadError::file(&staging, e))?;
    }
    std::fs::create_dir_all(&staging).map_err(|e| LoadError::file(&staging, e))?;

    let weights = staging.join("model.safetensors");
    let mut store = SafetensorsStore::from_file(&weights)
        .with_to_adapter(BurnToPyTorchAdapter)
        .with_key_remapping(format!(r"^(.*norm)\.{NORM_SCALE_BURN}$"), format!("$1.{NORM_SCALE_HF}"))
        .metadata("format", "pt");
    model.save_into(&mut store).map_err(|e| LoadError::file(&weights, e))?;
    let config = staging.join("config.json");
    let json = serde_json::to_string_pretty(&model.config().to_hf_json()).expect("config serialises");
    std::fs::write(&config, json).map_err(|e| LoadError::file(&config, e))?;
    tokenizer.save_hf(&staging)?;

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

fn sibling(dir: &Path, tag: &str) -> PathBuf {
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
    dir.with_file_name(format!(".{name}.{tag}"))
}
