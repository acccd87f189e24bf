//! Hugging Face model directories: `config.json`, `tokenizer.json`, and weights in
//! `model.safetensors` or shards listed by `model.safetensors.index.json`.

use std::collections::BTreeSet;
use std::path::Path;

use burn::prelude::*;
use burn::tensor::DType;
use safetensors::{Dtype, SafeTensors};

use super::{apply_weights, check_layer_count, f32_tensor, LoadError, NamedTensor};
use crate::config::ModelConfig;
use crate::transformer::Transformer;

const SINGLE_FILE: &str = "model.safetensors";
const SHARD_INDEX: &str = "model.safetensors.index.json";

/// Builds the model of a Hugging Face directory from its `config.json` and safetensors
/// weights (single file or shards), failing on any missing, unused or mis-shaped tensor.
pub fn load_model<B: Backend>(dir: &Path, device: &B::Device) -> Result<Transformer<B>, LoadError> {
    let config = ModelConfig::from_file(&dir.join("config.json"))?;
    let mut tensors = Vec::new();
    for file in weight_files(dir)? {
        tensors.extend(read_safetensors(&file)?);
    }
    // A tied head is the embedding; some exporters still write a copy of it.
    if config.tie_word_embeddings {
        tensors.retain(|t| t.name != "lm_head.weight");
    }
    let origin = dir.display().to_string();
    check_layer_count(&config, &tensors, &origin)?;
    apply_weights(Transformer::new(&config, device), tensors, &origin)
}

/// The safetensors files of a directory: the single file, or every shard of the index.
fn weight_files(dir: &Path) -> Result<Vec<std::path::PathBuf>, LoadError> {
    let index_path = dir.join(SHARD_INDEX);
    if index_path.exists() {
        let text =
            std::fs::read_to_string(&index_path).map_err(|e| LoadError::file(&index_path, e))?;
        let index: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
            LoadError::file(
                &index_path,
                format!("not valid JSON (line {}, column {}): {e}", e.line(), e.column()),
            )
        })?;
        let map = index["weight_map"]
            .as_object()
            .ok_or_else(|| LoadError::file(&index_path, "missing object `weight_map`"))?;
        let mut shards = BTreeSet::new();
        for (tensor, shard) in map {
            let shard = shard.as_str().ok_or_else(|| {
                LoadError::file(&index_path, format!("weight_map[{tensor}] is not a file name"))
            })?;
            shards.insert(shard.to_string());
        }
        return shards
            .into_iter()
            .map(|shard| {
                let path = dir.join(&shard);
                if path.is_file() {
                    Ok(path)
                } else {
                    Err(LoadError::file(
                        &index_path,
                        format!("names shard `{shard}`, which does not exist in {}", dir.display()),
                    ))
                }
            })
            .collect();
    }
    let single = dir.join(SINGLE_FILE);
    if single.is_file() {
        Ok(vec![single])
    } else {
        Err(LoadError::file(dir, format!("no weights: expected {SINGLE_FILE} or {SHARD_INDEX}")))
    }
}

/// Every tensor of one safetensors file, converted to f32.
fn read_safetensors(path: &Path) -> Result<Vec<NamedTensor>, LoadError> {
    let file = std::fs::File::open(path).map_err(|e| LoadError::file(path, e))?;
    // SAFETY: the file is opened read-only and only read while mapped.
    let bytes = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| LoadError::file(path, e))?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| LoadError::file(path, format!("not a valid safetensors file: {e}")))?;
    st.tensors()
        .into_iter()
        .map(|(name, view)| {
            let dtype = match view.dtype() {
                Dtype::F32 => DType::F32,
                Dtype::F16 => DType::F16,
                Dtype::BF16 => DType::BF16,
                other => {
                    return Err(LoadError::file(
                        path,
                        format!("tensor `{name}` has dtype {other:?}; expected F32, F16 or BF16"),
                    ))
                }
            };
            let data = f32_tensor(view.data().to_vec(), view.shape().to_vec(), dtype);
            Ok(NamedTensor { name, data })
        })
        .collect()
}
