//! Token ids as the model's input tensor.

use burn::prelude::*;
use burn::tensor::{Int, TensorData};

/// Token ids `[n, len]` of `sequences`, each right-padded with `pad` to `len` (at least
/// the longest sequence's length).
pub fn padded_token_ids<B: Backend>(
    sequences: &[Vec<u32>],
    len: usize,
    pad: u32,
    device: &B::Device,
) -> Tensor<B, 2, Int> {
    let ids: Vec<i64> = sequences
        .iter()
        .flat_map(|s| {
            s.iter().copied().chain(std::iter::repeat_n(pad, len - s.len())).map(i64::from)
        })
        .collect();
    Tensor::from_data(TensorData::new(ids, [sequences.len(), len]), device)
}

/// Token ids of one sequence as a `[1, len]` tensor.
pub fn token_ids<B: Backend>(tokens: &[u32], device: &B::Device) -> Tensor<B, 2, Int> {
    let ids: Vec<i64> = tokens.iter().map(|&t| i64::from(t)).collect();
    Tensor::from_data(TensorData::new(ids, [1, tokens.len()]), device)
}
