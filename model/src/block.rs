//! One pre-norm decoder layer: `x + attn(norm(x))`, then `x + mlp(norm(x))`.

use burn::nn::{RmsNorm, RmsNormConfig};
use burn::prelude::*;
use burn::tensor::Bool;

use crate::attention::{Attention, CacheSlot};
use crate::config::ModelConfig;
use crate::mlp::Mlp;
use crate::rope::Rotary;

/// One transformer layer; field names mirror HF's keys (`input_layernorm`, `self_attn`, ...).
#[derive(Module, Debug)]
pub struct DecoderLayer<B: Backend> {
    input_layernorm: RmsNorm<B>,
    self_attn: Attention<B>,
    post_attention_layernorm: RmsNorm<B>,
    mlp: Mlp<B>,
}

impl<B: Backend> DecoderLayer<B> {
    /// A randomly initialised layer shaped by `config` (weights are usually loaded over it).
    pub fn new(config: &ModelConfig, device: &B::Device) -> Self {
        let norm = || {
            RmsNormConfig::new(config.hidden_size).with_epsilon(config.rms_norm_eps).init(device)
        };
        Self {
            input_layernorm: norm(),
            self_attn: Attention::new(config, device),
            post_attention_layernorm: norm(),
            mlp: Mlp::new(config, device),
        }
    }

    /// The layer with its linear weights quantized to Q8 (see `crate::quant`).
    pub(crate) fn quantized(self) -> Self {
        Self { self_attn: self.self_attn.quantized(), mlp: self.mlp.quantized(), ..self }
    }

    pub(crate) fn forward(
        &self,
        x: Tensor<B, 3>,
        rotary: &Rotary<B>,
        mask: Option<&Tensor<B, 3, Bool>>,
        cache: Option<CacheSlot<'_, B>>,
    ) -> Tensor<B, 3> {
        let x = x.clone()
            + self.self_attn.forward(self.input_layernorm.forward(x), rotary, mask, cache);
        x.clone() + self.mlp.forward(self.post_attention_layernorm.forward(x))
    }
}
