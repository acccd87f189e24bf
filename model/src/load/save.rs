//! Writing a model as a Hugging Face directory (`config.json`, `model.safetensors`,
//! tokenizer files) that `transformers` and [`super::load_pretrained`] can load.
//! Only safetensors is ever written: nothing in a model directory is executable.

use std::path::Path;
use std::rc::Rc;

use burn::module::{ModuleVisitor, Param};
use burn::prelude::*;
use burn::tensor::DType;
use burn_store::{
    BurnToPyTorchAdapter, KeyRemapper, ModuleAdapter, ModuleSnapshot, SafetensorsStore,
    TensorSnapshot, TensorSnapshotError,
};

use super::{LoadError, NORM_SCALE_BURN, NORM_SCALE_HF};
use crate::atomic::replace_dir_atomically;
use crate::config::ModelConfig;
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
    replace_dir_atomically(dir, |staging| write_staging(model, tokenizer, staging), LoadError::file)
}

/// Writes every file of the model directory into `staging`.
fn write_staging<B: Backend>(
    model: &Transformer<B>,
    tokenizer: &TextTokenizer,
    staging: &Path,
) -> Result<(), LoadError> {
    let weights = staging.join("model.safetensors");
    let mut store = SafetensorsStore::from_file(&weights)
        .with_to_adapter(BurnToPyTorchAdapter)
        .remap(hf_key_remapper())
        .metadata("format", "pt");
    model.save_into(&mut store).map_err(|e| LoadError::file(&weights, e))?;
    let config = staging.join("config.json");
    let json =
        serde_json::to_string_pretty(&model.config().to_hf_json()).expect("config serialises");
    std::fs::write(&config, json).map_err(|e| LoadError::file(&config, e))?;
    Ok(tokenizer.save_hf(staging)?)
}

/// How saving renames module paths to HF keys, after the PyTorch adapter (which
/// transposes linear weights): `…norm.gamma` → `…norm.weight`, see [`NORM_SCALE_HF`].
fn hf_key_remapper() -> KeyRemapper {
    KeyRemapper::new()
        .add_pattern(format!(r"^(.*norm)\.{NORM_SCALE_BURN}$"), format!("$1.{NORM_SCALE_HF}"))
        .expect("a valid regex")
}

/// Every tensor [`save_hf_dir`] writes for a model of `config`: its Hugging Face key and
/// PyTorch shape, in module order. Derived from [`Transformer::new`]'s module tree through
/// the same adapter and renaming as the saved file, but reading only the shapes of its
/// lazily initialised parameters: nothing is allocated, so any backend will do, and a
/// checkpoint can be written tensor by tensor (e.g. with random values) from this list.
pub fn hf_tensor_shapes<B: Backend>(
    config: &ModelConfig,
    device: &B::Device,
) -> Vec<(String, Vec<usize>)> {
    let mut shapes = ShapeCollector::default();
    Transformer::<B>::new(config, device).visit(&mut shapes);
    let adapted = shapes.tensors.iter().map(|t| BurnToPyTorchAdapter.adapt(t)).collect();
    let (renamed, _) = hf_key_remapper().remap(adapted);
    renamed.into_iter().map(|t| (t.full_path(), t.shape.to_vec())).collect()
}

/// burn-store's `Collector` (what `save_into` walks the module with), minus the data:
/// it records each parameter's path, containers and shape without initialising it.
#[derive(Default)]
struct ShapeCollector {
    tensors: Vec<TensorSnapshot>,
    path: Vec<String>,
    containers: Vec<String>,
}

impl<B: Backend> ModuleVisitor<B> for ShapeCollector {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.containers.push(container_type.to_string());
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.containers.pop();
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let no_data = Rc::new(|| Err(TensorSnapshotError::DataError("shape only".into())));
        self.tensors.push(TensorSnapshot::from_closure(
            no_data,
            DType::F32,
            param.lazy_shape(),
            self.path.clone(),
            self.containers.clone(),
            param.id,
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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

    /// Names and shapes as written in a saved directory's safetensors header.
    fn saved_shapes(dir: &Path) -> Vec<(String, Vec<usize>)> {
        let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let mut shapes: Vec<_> =
            st.tensors().into_iter().map(|(name, view)| (name, view.shape().to_vec())).collect();
        shapes.sort();
        shapes
    }

    #[test]
    fn hf_tensor_shapes_match_a_saved_model() {
        let device = Default::default();
        let fixture =
            concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/tiny-qwen3/config.json");
        let qwen3 = ModelConfig::from_file(Path::new(fixture)).unwrap();
        let mut llama_tied = qwen3.clone();
        llama_tied.architecture = crate::config::Architecture::Llama;
        llama_tied.tie_word_embeddings = true;
        let mut qwen2 = qwen3.clone();
        qwen2.architecture = crate::config::Architecture::Qwen2;
        qwen2.qkv_bias = true;
        for (i, config) in [qwen3, llama_tied, qwen2].into_iter().enumerate() {
            let dir = std::env::temp_dir().join(format!("opdlm-shapes-{i}-{}", std::process::id()));
            save_hf_dir(&Transformer::<B>::new(&config, &device), &word_tokenizer(), &dir).unwrap();
            let mut derived = hf_tensor_shapes::<B>(&config, &device);
            derived.sort();
            assert_eq!(derived, saved_shapes(&dir), "{:?}", config.architecture);
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }

    #[test]
    fn hf_tensor_shapes_of_qwen3_0_6b_are_read_without_allocating_its_weights() {
        let json = r#"{"model_type":"qwen3","vocab_size":151936,"hidden_size":1024,
            "intermediate_size":3072,"num_hidden_layers":28,"num_attention_heads":16,
            "num_key_value_heads":8,"head_dim":128,"rms_norm_eps":1e-6,"rope_theta":1000000,
            "max_position_embeddings":40960,"tie_word_embeddings":true}"#;
        let config = ModelConfig::from_json_str(json, "Qwen3-0.6B").unwrap();
        let shapes = hf_tensor_shapes::<B>(&config, &Default::default());
        let params: usize = shapes.iter().map(|(_, s)| s.iter().product::<usize>()).sum();
        assert_eq!(params, 596_049_920);
        assert_eq!(shapes[0], ("model.embed_tokens.weight".to_string(), vec![151936, 1024]));
        assert!(shapes.iter().all(|(name, _)| name != "lm_head.weight"), "tied head");
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
