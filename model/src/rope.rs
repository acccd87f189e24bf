//! Rotary position embedding in Hugging Face's "rotate half" convention (Llama, Qwen):
//! dimension `i` is paired with `i + head_dim/2`, not with its neighbour as in
//! `burn::nn::RotaryEncoding`. GGUF checkpoints are un-permuted at load time to match.

use burn::prelude::*;
use burn::tensor::Int;

/// cos/sin tables for the positions of one forward pass, shared by every layer.
#[derive(Debug, Clone)]
pub struct Rotary<B: Backend> {
    /// `[batch, 1, queries, head_dim]`, broadcast over heads.
    cos: Tensor<B, 4>,
    sin: Tensor<B, 4>,
}

impl<B: Backend> Rotary<B> {
    /// Tables for `positions` (`[batch, queries]`) with frequency base `theta`.
    pub fn new(positions: Tensor<B, 2, Int>, head_dim: usize, theta: f64) -> Self {
        let device = positions.device();
        let [batch, len] = positions.dims();
        // inv_freq[i] = theta^(-2i/d), computed in f32 like transformers does.
        let inv_freq: Vec<f32> = (0..head_dim / 2)
            .map(|i| 1.0 / (theta as f32).powf((2 * i) as f32 / head_dim as f32))
            .collect();
        let inv_freq =
            Tensor::<B, 1>::from_floats(inv_freq.as_slice(), &device).reshape([1, 1, head_dim / 2]);
        let angles = positions.float().reshape([batch, len, 1]).mul(inv_freq); // [b, q, d/2]
        let angles = Tensor::cat(vec![angles.clone(), angles], 2).unsqueeze_dim::<4>(1); // [b, 1, q, d]
        Self { cos: angles.clone().cos(), sin: angles.sin() }
    }

    /// Rotates `x` of shape `[batch, heads, queries, head_dim]`.
    pub fn apply(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let d = x.dims()[3];
        let half = d / 2;
        let x1 = x.clone().slice(s![.., .., .., 0..half]);
        let x2 = x.clone().slice(s![.., .., .., half..d]);
        let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
        x * self.cos.clone() + rotated * self.sin.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;

    type B = NdArray<f32>;

    #[test]
    fn rotation_preserves_norm_and_is_relative() {
        let device = Default::default();
        let x = Tensor::<B, 4>::random(
            [1, 1, 1, 8],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
        let y = Tensor::<B, 4>::random(
            [1, 1, 1, 8],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
        let at = |p: i64, t: Tensor<B, 4>| {
            Rotary::<B>::new(Tensor::from_ints([[p]], &device), 8, 10_000.0).apply(t)
        };
        // |R x| = |x|
        let n0 = x.clone().powi_scalar(2).sum().into_scalar();
        let n1 = at(7, x.clone()).powi_scalar(2).sum().into_scalar();
        assert!((n0 - n1).abs() < 1e-4);
        // <R_a x, R_b y> depends on a - b only.
        let dot = |a, b| (at(a, x.clone()) * at(b, y.clone())).sum().into_scalar();
        assert!((dot(5, 2) - dot(13, 10)).abs() < 1e-4);
    }
}
