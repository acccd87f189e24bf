//! SwiGLU feed-forward block: `down(silu(gate(x)) * up(x))`.

use burn::nn::{Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::silu;

use crate::config::ModelConfig;
use crate::quant::{project, quantize_linear};

/// The `mlp` block of one layer (HF's `gate_proj`, `up_proj`, `down_proj`, no biases).
#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    gate_proj: Linear<B>,
    up_proj: Linear<B>,
    down_proj: Linear<B>,
}

impl<B: Backend> Mlp<B> {
    /// A randomly initialised block of `hidden_size → intermediate_size → hidden_size`.
    pub fn new(config: &ModelConfig, device: &B::Device) -> Self {
        let (d, ff) = (config.hidden_size, config.intermediate_size);
        let linear = |i, o| LinearConfig::new(i, o).with_bias(false).init(device);
        Self { gate_proj: linear(d, ff), up_proj: linear(d, ff), down_proj: linear(ff, d) }
    }

    /// `[batch, len, hidden]` → `[batch, len, hidden]`, position-wise.
    pub fn forward(&self, x: Tensor<B, 3>) -> Tensor<B, 3> {
        let gate = silu(project(&self.gate_proj, x.clone()));
        project(&self.down_proj, gate * project(&self.up_proj, x))
    }

    /// The block with its weights quantized to Q8 (see `crate::quant`).
    pub(crate) fn quantized(self) -> Self {
        Self {
            gate_proj: quantize_linear(self.gate_proj),
            up_proj: quantize_linear(self.up_proj),
            down_proj: quantize_linear(self.down_proj),
        }
    }
}
