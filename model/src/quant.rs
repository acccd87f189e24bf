//! Quantized weights for decoding (`--weights q8`): the linear layers' weights (and the
//! LM head) as Burn `QFloat` tensors, int8 in blocks of 32 along each weight row with one
//! f32 scale per block (Q8_0-style, symmetric). Embeddings and norms stay f32: a lookup
//! reads one row per token, and norms are a vanishing share of the bytes.
//!
//! burn's `Linear::forward` dequantizes a quantized weight on every call (`B::linear`
//! takes float primitives), which would stream more bytes than f32 weights do; so the
//! projections here multiply by the quantized weight directly (`Tensor::matmul`, which
//! reaches the backend's `q_matmul`: on NdArray the patched kernel that reads int8, see
//! `vendor/burn-ndarray/OPDLM-PATCH.md`, item 8; elsewhere burn's dequantize-then-multiply).

use burn::module::Param;
use burn::nn::Linear;
use burn::prelude::*;
use burn::tensor::quantization::{QuantLevel, QuantScheme, QuantStore, QuantValue};
use burn::tensor::DType;

/// How a model's weights are held in memory for decoding.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum WeightFormat {
    /// f32, as loaded.
    #[default]
    F32,
    /// Linear layers and the LM head in int8 blocks of 32 with an f32 scale each.
    Q8,
}

/// Values per quantization block (along a weight's input features, as GGUF's Q8_0).
pub const Q8_BLOCK: usize = 32;

/// The Q8 scheme: symmetric int8, one f32 scale per block of [`Q8_BLOCK`] values.
pub fn q8_scheme() -> QuantScheme {
    QuantScheme::default()
        .with_value(QuantValue::Q8S)
        .with_store(QuantStore::Native)
        .with_level(QuantLevel::block([Q8_BLOCK as u8]))
}

/// `weight` (`[in, out]`, as burn's `Linear` holds it) quantized to Q8 and stored as its
/// output rows (`[out, in]`, blocks of 32 along `in`, GGUF Q8_0's layout), viewed back as
/// `[in, out]`: each output's weights are contiguous, which the kernel streams. Unchanged
/// when `in` does not split into whole blocks.
///
/// The view is a transposed one: reshaping it would copy it into `[in, out]` order and
/// leave its scales in the old order; [`project`] never reshapes it.
pub fn quantize_q8<B: Backend>(weight: Tensor<B, 2>) -> Tensor<B, 2> {
    let [inputs, _] = weight.dims();
    if !inputs.is_multiple_of(Q8_BLOCK) {
        return weight;
    }
    weight.transpose().quantize_dynamic(&q8_scheme()).transpose()
}

/// A linear layer with its weight quantized to Q8 (the bias stays f32).
pub fn quantize_linear<B: Backend>(linear: Linear<B>) -> Linear<B> {
    let Linear { weight, bias } = linear;
    Linear { weight: Param::from_tensor(quantize_q8(weight.val())), bias }
}

/// `linear(x)` as one product of all `batch · len` rows with the weight; a quantized weight
/// is multiplied without being dequantized first.
///
/// Why the rows are flattened: burn's linear on `[batch, len, in]` is a batched product
/// against the broadcast weight. A decoding step of several rows then reads the weight once
/// per row, and the backward pass forms the weight's gradient as `batch` products summed
/// afterwards (a `[batch, in, out]` temporary per layer). One `[batch · len, in]` product
/// reads the weight once, and its gradient is one product with no sum.
pub fn project<B: Backend>(linear: &Linear<B>, x: Tensor<B, 3>) -> Tensor<B, 3> {
    let [batch, len, inputs] = x.dims();
    let rows = x.reshape([batch * len, inputs]);
    let weight = linear.weight.val();
    let out = if matches!(weight.dtype(), DType::QFloat(_)) {
        let out = rows.matmul(weight);
        match &linear.bias {
            Some(bias) => out + bias.val().unsqueeze::<2>(),
            None => out,
        }
    } else {
        linear.forward(rows)
    };
    let outputs = out.dims()[1];
    out.reshape([batch, len, outputs])
}
