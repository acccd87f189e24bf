//! A Qwen3-0.6B-shaped model with seeded random weights, written once as a Hugging Face
//! directory (`config.json` + bf16 `model.safetensors`, ≈ 1.2 GB) that both our loader and
//! `transformers` read, so both benchmark the very same weights. Speed does not depend on
//! the values; random weights spare a 1.2 GB download.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use opdlm_model::atomic::replace_dir_atomically;
use opdlm_model::load::save::hf_tensor_shapes;
use opdlm_model::ModelConfig;

/// Qwen3-0.6B's `config.json` (shapes, norms, RoPE; tied embeddings), as published.
pub const QWEN3_0_6B_CONFIG: &str = r#"{
  "architectures": ["Qwen3ForCausalLM"],
  "attention_bias": false,
  "attention_dropout": 0.0,
  "bos_token_id": 151643,
  "eos_token_id": 151645,
  "head_dim": 128,
  "hidden_act": "silu",
  "hidden_size": 1024,
  "initializer_range": 0.02,
  "intermediate_size": 3072,
  "max_position_embeddings": 40960,
  "max_window_layers": 28,
  "model_type": "qwen3",
  "num_attention_heads": 16,
  "num_hidden_layers": 28,
  "num_key_value_heads": 8,
  "rms_norm_eps": 1e-06,
  "rope_scaling": null,
  "rope_theta": 1000000,
  "sliding_window": null,
  "tie_word_embeddings": true,
  "torch_dtype": "bfloat16",
  "use_cache": true,
  "use_sliding_window": false,
  "vocab_size": 151936
}"#;

/// Qwen3's tokenizer has 151,669 tokens; the first spare embedding row is the mask token.
pub const QWEN3_TOKENIZER_VOCAB: usize = 151_669;

/// Standard deviation of the random weights (`initializer_range`); norm scales are 1.
const INIT_STD: f32 = 0.02;

/// The directory holding the model for `seed` under `cache`, written if missing.
pub fn qwen3_0_6b(cache: &Path, seed: u64) -> anyhow::Result<PathBuf> {
    let dir = cache.join(format!("qwen3-0.6b-random-seed{seed}"));
    if dir.join("model.safetensors").is_file() && dir.join("config.json").is_file() {
        return Ok(dir);
    }
    eprintln!(
        "writing a random-weight Qwen3-0.6B (seed {seed}) to {} (once, ≈ 1.2 GB)",
        dir.display()
    );
    let config = ModelConfig::from_json_str(QWEN3_0_6B_CONFIG, "Qwen3-0.6B config")?;
    let fill = |staging: &Path| -> anyhow::Result<()> {
        std::fs::write(staging.join("config.json"), QWEN3_0_6B_CONFIG)?;
        write_random_safetensors(&config, &staging.join("model.safetensors"), seed)
    };
    let io_error = |path: &Path, e: std::io::Error| anyhow::anyhow!("{}: {e}", path.display());
    replace_dir_atomically(&dir, fill, io_error)?;
    Ok(dir)
}

/// Every tensor of `config` under its Hugging Face name with its PyTorch shape, exactly
/// as the model crate saves a model of that config.
fn tensor_shapes(config: &ModelConfig) -> Vec<(String, Vec<usize>)> {
    hf_tensor_shapes::<ShapeBackend>(config, &Default::default())
}

/// Any compiled-in backend: [`hf_tensor_shapes`] reads only the shapes of lazily
/// initialised parameters, so the backend never allocates or computes anything.
#[cfg(feature = "ndarray")]
type ShapeBackend = burn::backend::NdArray<f32>;
#[cfg(all(feature = "flex", not(feature = "ndarray")))]
type ShapeBackend = burn::backend::Flex;
#[cfg(all(feature = "wgpu", not(any(feature = "ndarray", feature = "flex"))))]
type ShapeBackend = burn::backend::Wgpu;
#[cfg(all(feature = "cuda", not(any(feature = "ndarray", feature = "flex", feature = "wgpu"))))]
type ShapeBackend = burn::backend::Cuda;

/// Writes a bf16 safetensors file: norm scales 1, everything else uniform with standard
/// deviation [`INIT_STD`] from a SplitMix64 stream seeded by `seed`.
fn write_random_safetensors(config: &ModelConfig, path: &Path, seed: u64) -> anyhow::Result<()> {
    let shapes = tensor_shapes(config);
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), serde_json::json!({ "format": "pt" }));
    let mut offset = 0usize;
    for (name, shape) in &shapes {
        let bytes = shape.iter().product::<usize>() * 2;
        header.insert(name.clone(), serde_json::json!({ "dtype": "BF16", "shape": shape, "data_offsets": [offset, offset + bytes] }));
        offset += bytes;
    }
    let mut header = serde_json::to_string(&header)?.into_bytes();
    // The data section must start 8-byte aligned.
    header.resize(header.len().div_ceil(8) * 8, b' ');

    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    out.write_all(&(header.len() as u64).to_le_bytes())?;
    out.write_all(&header)?;
    let mut rng = SplitMix64(seed);
    // Uniform on [-a, a] has standard deviation a / √3.
    let half_width = INIT_STD * 3f32.sqrt();
    for (name, shape) in &shapes {
        let count: usize = shape.iter().product();
        let is_norm = name.ends_with("norm.weight");
        for _ in 0..count {
            let value = if is_norm { 1.0 } else { (rng.unit() * 2.0 - 1.0) * half_width };
            out.write_all(&bf16_bits(value).to_le_bytes())?;
        }
    }
    out.flush()?;
    Ok(())
}

/// f32 → bf16 with round-to-nearest-even (finite inputs).
fn bf16_bits(x: f32) -> u16 {
    let bits = x.to_bits();
    ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) as u16
}

/// SplitMix64: a tiny, fast, seedable generator (quality is ample for random weights).
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// `count` token ids in `0..vocab` from the seeded stream (a prompt for a model without
/// a tokenizer).
pub fn random_ids(count: usize, vocab: usize, seed: u64) -> Vec<u32> {
    let mut rng = SplitMix64(seed ^ 0x5EED);
    (0..count).map(|_| (rng.next() % vocab as u64) as u32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16_rounding_matches_torch_examples() {
        assert_eq!(bf16_bits(1.0), 0x3F80);
        assert_eq!(bf16_bits(-2.0), 0xC000);
        // 1 + 2^-8 lies halfway between two bf16 values: ties go to the even one (1.0).
        assert_eq!(bf16_bits(1.0 + 1.0 / 256.0), 0x3F80);
        assert_eq!(bf16_bits(1.0 + 3.0 / 256.0), 0x3F82);
    }

    #[test]
    fn qwen3_shapes_count_0_6b_parameters() {
        let config = ModelConfig::from_json_str(QWEN3_0_6B_CONFIG, "test").unwrap();
        let params: usize =
            tensor_shapes(&config).iter().map(|(_, s)| s.iter().product::<usize>()).sum();
        assert_eq!(params, 596_049_920);
    }
}
