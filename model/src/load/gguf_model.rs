//! Building a [`Transformer`] from a GGUF file: hyper-parameters from its metadata,
//! tensors dequantised to f32 and renamed to Hugging Face keys, tokenizer and chat
//! template from the `tokenizer.*` metadata.

use std::path::Path;

use burn::prelude::*;
use burn::tensor::TensorData;

use super::gguf::GgufFile;
use super::gguf_tokenizer::{
    chat_template_from_gguf, special_tokens_from_gguf, tokenizer_from_gguf,
};
use super::{apply_weights, check_layer_count, LoadError, NamedTensor};
use crate::config::{Architecture, ModelConfig};
use crate::tokenizer::TextTokenizer;
use crate::transformer::Transformer;

/// Opens the GGUF file at `path` and builds its model (weights dequantised to f32).
pub fn load_model<B: Backend>(
    path: &Path,
    device: &B::Device,
) -> Result<Transformer<B>, LoadError> {
    model_from_gguf(&GgufFile::open(path)?, device)
}

/// Builds the model of an already opened (or parsed) GGUF file.
pub fn model_from_gguf<B: Backend>(
    gguf: &GgufFile,
    device: &B::Device,
) -> Result<Transformer<B>, LoadError> {
    let path = gguf.path.as_path();
    let config = config_from_gguf(gguf)?;
    let tensors = gguf
        .tensors
        .iter()
        .map(|info| {
            let name = hf_name(&info.name).ok_or_else(|| {
                LoadError::file(
                    path,
                    format!(
                        "tensor `{}` has no Hugging Face counterpart (unsupported GGUF layout)",
                        info.name
                    ),
                )
            })?;
            let (shape, mut values) = gguf.tensor_f32(&info.name)?;
            // llama.cpp permutes Llama q/k rows for its interleaved RoPE; our RoPE rotates
            // halves like transformers, so undo it.
            if config.architecture == Architecture::Llama {
                if name.ends_with("q_proj.weight") || name.ends_with("q_proj.bias") {
                    values = unpermute_rows(&values, &shape, config.num_attention_heads);
                } else if name.ends_with("k_proj.weight") || name.ends_with("k_proj.bias") {
                    values = unpermute_rows(&values, &shape, config.num_key_value_heads);
                }
            }
            Ok(NamedTensor { name, data: TensorData::new(values, shape) })
        })
        .collect::<Result<Vec<_>, LoadError>>()?;
    let origin = path.display().to_string();
    check_layer_count(&config, &tensors, &origin)?;
    apply_weights(Transformer::new(&config, device), tensors, &origin)
}

/// Opens the GGUF file at `path` and builds its tokenizer and chat template.
pub fn load_tokenizer(path: &Path) -> Result<TextTokenizer, LoadError> {
    tokenizer(&GgufFile::open(path)?)
}

/// Hyper-parameters from `<arch>.*` metadata, validated by the same code as `config.json`.
fn config_from_gguf(gguf: &GgufFile) -> Result<ModelConfig, LoadError> {
    let arch = gguf.get_str("general.architecture")?.to_string();
    let key = |k: &str| format!("{arch}.{k}");
    let vocab_size = match gguf.get_u64(&key("vocab_size")) {
        Ok(n) => n,
        Err(_) => gguf.get_str_array("tokenizer.ggml.tokens")?.len() as u64,
    };
    let heads = gguf.get_u64(&key("attention.head_count"))?;
    let hidden = gguf.get_u64(&key("embedding_length"))?;
    let head_dim = gguf.get_u64(&key("attention.key_length")).unwrap_or(hidden / heads.max(1));
    let json = serde_json::json!({
        "model_type": arch,
        "vocab_size": vocab_size,
        "hidden_size": hidden,
        "intermediate_size": gguf.get_u64(&key("feed_forward_length"))?,
        "num_hidden_layers": gguf.get_u64(&key("block_count"))?,
        "num_attention_heads": heads,
        "num_key_value_heads": gguf.get_u64(&key("attention.head_count_kv")).unwrap_or(heads),
        "head_dim": head_dim,
        "rms_norm_eps": gguf.get_f64(&key("attention.layer_norm_rms_epsilon"))?,
        "rope_theta": gguf.get_f64(&key("rope.freq_base")).unwrap_or(10_000.0),
        "max_position_embeddings": gguf.get_u64(&key("context_length"))?,
        "tie_word_embeddings": gguf.tensor_info("output.weight").is_none(),
        "attention_bias": gguf.tensor_info("blk.0.attn_output.bias").is_some(),
        "bos_token_id": gguf.get_u64("tokenizer.ggml.bos_token_id").ok(),
        "eos_token_id": gguf.get_u64("tokenizer.ggml.eos_token_id").ok(),
    });
    Ok(ModelConfig::from_json_str(&json.to_string(), &gguf.path.display().to_string())?)
}

/// The tokenizer (and chat template) of an already opened (or parsed) GGUF file.
pub fn tokenizer(gguf: &GgufFile) -> Result<TextTokenizer, LoadError> {
    let inner = tokenizer_from_gguf(gguf)?;
    let special = special_tokens_from_gguf(gguf);
    let text = |id: Option<u32>| id.and_then(|id| inner.id_to_token(id));
    let (bos, eos) = (text(special.bos), text(special.eos));
    Ok(TextTokenizer::new(inner, chat_template_from_gguf(gguf), bos, eos))
}

/// GGUF tensor name → Hugging Face key. One rule per line, as llama.cpp's converter
/// names them.
fn hf_name(gguf_name: &str) -> Option<String> {
    let fixed = match gguf_name {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        "output.weight" => Some("lm_head.weight"),
        _ => None,
    };
    if let Some(name) = fixed {
        return Some(name.to_string());
    }
    let rest = gguf_name.strip_prefix("blk.")?;
    let (layer, rest) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (part, param) = rest.rsplit_once('.')?;
    let hf_part = match part {
        "attn_norm" => "input_layernorm",
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_output" => "self_attn.o_proj",
        "attn_q_norm" => "self_attn.q_norm",
        "attn_k_norm" => "self_attn.k_norm",
        "ffn_norm" => "post_attention_layernorm",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{hf_part}.{param}"))
}

/// Inverse of llama.cpp's `permute`: within each head, GGUF orders rows as
/// `(i, j)` for `i < head_dim/2, j < 2`, transformers as `(j, i)`.
/// A tensor whose rows do not split into `heads` even halves cannot be a q/k projection of
/// this config: it is returned unchanged, for the shape check to report.
fn unpermute_rows(values: &[f32], shape: &[usize], heads: usize) -> Vec<f32> {
    let Some((&rows, rest)) = shape.split_first() else {
        return values.to_vec();
    };
    if !heads.checked_mul(2).is_some_and(|h2| h2 > 0 && rows % h2 == 0) {
        return values.to_vec();
    }
    let cols: usize = rest.iter().product();
    let half = rows / heads / 2;
    let mut out = vec![0.0; values.len()];
    for h in 0..heads {
        for i in 0..half {
            for j in 0..2 {
                let src = (h * half + i) * 2 + j;
                let dst = h * 2 * half + j * half + i;
                out[dst * cols..(dst + 1) * cols]
                    .copy_from_slice(&values[src * cols..(src + 1) * cols]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpermute_inverts_llama_cpp_permute() {
        // llama.cpp: w.reshape(heads, 2, half, cols).swapaxes(1, 2).reshape(rows, cols)
        let (heads, half, cols) = (2, 3, 2);
        let rows = heads * 2 * half;
        let hf: Vec<f32> = (0..rows * cols).map(|v| v as f32).collect();
        let mut permuted = vec![0.0; hf.len()];
        for h in 0..heads {
            for j in 0..2 {
                for i in 0..half {
                    let src = h * 2 * half + j * half + i;
                    let dst = h * 2 * half + i * 2 + j;
                    permuted[dst * cols..(dst + 1) * cols]
                        .copy_from_slice(&hf[src * cols..(src + 1) * cols]);
                }
            }
        }
        assert_eq!(unpermute_rows(&permuted, &[rows, cols], heads), hf);
    }

    #[test]
    fn every_layer_tensor_has_a_hf_name() {
        assert_eq!(
            hf_name("blk.12.ffn_down.weight").unwrap(),
            "model.layers.12.mlp.down_proj.weight"
        );
        assert_eq!(hf_name("blk.0.attn_q.bias").unwrap(), "model.layers.0.self_attn.q_proj.bias");
        assert_eq!(hf_name("output.weight").unwrap(), "lm_head.weight");
        assert!(hf_name("rope_freqs.weight").is_none());
    }
}
