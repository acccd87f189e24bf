//! Grouped-query self-attention for the Llama family, with optional q/k/v bias (Qwen2)
//! and per-head q/k RMSNorm (Qwen3). Field names mirror the checkpoint keys
//! (`self_attn.q_proj`, ...) so weights load without renaming.

use burn::nn::{Linear, LinearConfig, RmsNorm, RmsNormConfig};
use burn::prelude::*;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::Bool;

use crate::cache::{CacheUse, KvCache, LayerKv};
use crate::config::{Architecture, ModelConfig};
use crate::quant::{project, quantize_linear};
use crate::rope::Rotary;

/// The `self_attn` block of one layer: q/k/v/o projections and Qwen3's q/k norms.
#[derive(Module, Debug)]
pub struct Attention<B: Backend> {
    q_proj: Linear<B>,
    k_proj: Linear<B>,
    v_proj: Linear<B>,
    o_proj: Linear<B>,
    /// Qwen3 only: RMSNorm over each head's query/key vector before RoPE.
    q_norm: Option<RmsNorm<B>>,
    k_norm: Option<RmsNorm<B>>,
    num_heads: usize,
    num_kv_heads: usize,
    head_dim: usize,
}

/// Where one layer's attention reads and writes cached keys/values.
pub(crate) struct CacheSlot<'a, B: Backend> {
    pub cache: &'a mut KvCache<B>,
    pub layer: usize,
    pub usage: CacheUse,
}

impl<B: Backend> Attention<B> {
    /// A randomly initialised block shaped by `config`, with its architecture's biases and norms.
    pub fn new(config: &ModelConfig, device: &B::Device) -> Self {
        let (d, hd) = (config.hidden_size, config.head_dim);
        let (h, kv) = (config.num_attention_heads, config.num_key_value_heads);
        let linear =
            |d_in, d_out, bias| LinearConfig::new(d_in, d_out).with_bias(bias).init(device);
        let head_norm = || {
            (config.architecture == Architecture::Qwen3)
                .then(|| RmsNormConfig::new(hd).with_epsilon(config.rms_norm_eps).init(device))
        };
        Self {
            q_proj: linear(d, h * hd, config.qkv_bias),
            k_proj: linear(d, kv * hd, config.qkv_bias),
            v_proj: linear(d, kv * hd, config.qkv_bias),
            o_proj: linear(h * hd, d, config.o_bias),
            q_norm: head_norm(),
            k_norm: head_norm(),
            num_heads: h,
            num_kv_heads: kv,
            head_dim: hd,
        }
    }

    /// The block with its projections quantized to Q8 (see `crate::quant`).
    pub(crate) fn quantized(self) -> Self {
        Self {
            q_proj: quantize_linear(self.q_proj),
            k_proj: quantize_linear(self.k_proj),
            v_proj: quantize_linear(self.v_proj),
            o_proj: quantize_linear(self.o_proj),
            ..self
        }
    }

    /// `x`: `[batch, queries, hidden]`; `mask`: `[batch, queries, keys]`, `true` = blocked.
    pub(crate) fn forward(
        &self,
        x: Tensor<B, 3>,
        rotary: &Rotary<B>,
        mask: Option<&Tensor<B, 3, Bool>>,
        cache: Option<CacheSlot<'_, B>>,
    ) -> Tensor<B, 3> {
        let [batch, len, _] = x.dims();
        let (h, kv, hd) = (self.num_heads, self.num_kv_heads, self.head_dim);

        // 1. Project and split heads: (B, L, H*D) -> (B, H, L, D).
        let split = |t: Tensor<B, 3>, heads: usize, norm: &Option<RmsNorm<B>>| {
            let t = t.reshape([batch, len, heads, hd]);
            let t = match norm {
                Some(norm) => norm.forward(t),
                None => t,
            };
            t.swap_dims(1, 2)
        };
        let q = split(project(&self.q_proj, x.clone()), h, &self.q_norm);
        let k = split(project(&self.k_proj, x.clone()), kv, &self.k_norm);
        let v = split(project(&self.v_proj, x), kv, &None);

        // 2. Rotate queries and keys by their absolute positions.
        let q = rotary.apply(q);
        let new = LayerKv { keys: rotary.apply(k), values: v };

        // 3. Prepend cached keys/values (and store them when committing).
        let LayerKv { keys, values } = match cache {
            Some(slot) => slot.cache.extend(slot.layer, new, slot.usage),
            None => new,
        };

        // 4. Grouped-query attention. Each kv head serves `groups` consecutive query heads
        //    (transformers' `repeat_kv` order), so fold those heads into the query axis,
        //    `[B, H, L, D] -> [B, KV, groups*L, D]`, and attend against the kv heads as
        //    they are: no copy of the cache per query head.
        let groups = h / kv;
        let key_len = keys.dims()[2];
        let q = q.reshape([batch, kv, groups * len, hd]);
        let mask = mask.map(|m| {
            let m = m.clone().unsqueeze_dim::<4>(1).unsqueeze_dim::<5>(2);
            m.expand([batch, kv, groups, len, key_len]).reshape([batch, kv, groups * len, key_len])
        });
        let out = attention(q, keys, values, mask, None, AttentionModuleOptions::default())
            .reshape([batch, h, len, hd]);

        // 5. Merge heads: (B, H, L, D) -> (B, L, H*D), output projection.
        project(&self.o_proj, out.swap_dims(1, 2).reshape([batch, len, h * hd]))
    }
}
