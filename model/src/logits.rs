//! Post-processing of vocabulary logits shared by training and decoding: ids a model must
//! never produce (the mask token, rows a teacher lacks) get a logit of [`NEVER_LOGIT`].

use burn::prelude::*;
use burn::tensor::{Bool, TensorData};

/// The logit of an id that must never be produced. Finite on purpose: `exp(-1e9 - max)`
/// underflows to exactly 0 in f32, so probabilities are exactly those of −∞, while the
/// `0 · log 0` terms of a divergence stay 0 instead of becoming NaN.
pub const NEVER_LOGIT: f32 = -1e9;

/// Widens `logits` (`[n, width]`, `width ≤ vocab`) to `[n, vocab]` with [`NEVER_LOGIT`]
/// columns (ids a narrower model, e.g. a teacher without the mask row, cannot produce)
/// and sets the `excluded` ids' columns to [`NEVER_LOGIT`] as well.
///
/// Panics when `width > vocab` or an excluded id is `≥ vocab`.
pub fn exclude_tokens<B: Backend>(
    logits: Tensor<B, 2>,
    vocab: usize,
    excluded: &[u32],
) -> Tensor<B, 2> {
    TokenExclusion::new(vocab, excluded, &logits.device()).apply(logits)
}

/// [`exclude_tokens`] with its mask built once: a decoding loop applies it at every
/// denoising step without rebuilding and uploading a vocabulary-sized row each time.
#[derive(Debug, Clone)]
pub struct TokenExclusion<B: Backend> {
    vocab: usize,
    /// `[vocab]`, true at the excluded ids (`None`: nothing excluded).
    never: Option<Tensor<B, 1, Bool>>,
}

impl<B: Backend> TokenExclusion<B> {
    /// Excludes `excluded` from a vocabulary of `vocab` ids.
    ///
    /// Panics when an excluded id is `≥ vocab`.
    pub fn new(vocab: usize, excluded: &[u32], device: &B::Device) -> Self {
        if excluded.is_empty() {
            return Self { vocab, never: None };
        }
        let mut never = vec![false; vocab];
        for &id in excluded {
            assert!(
                (id as usize) < vocab,
                "excluded token {id} is outside the vocabulary ({vocab})"
            );
            never[id as usize] = true;
        }
        let never = Tensor::<B, 1, Bool>::from_data(TensorData::new(never, [vocab]), device);
        Self { vocab, never: Some(never) }
    }

    /// `logits` widened to the vocabulary, excluded ids at [`NEVER_LOGIT`].
    ///
    /// Panics when `logits` has more columns than the vocabulary.
    pub fn apply(&self, logits: Tensor<B, 2>) -> Tensor<B, 2> {
        let [n, width] = logits.dims();
        let vocab = self.vocab;
        assert!(width <= vocab, "logits have {width} columns, more than the vocabulary's {vocab}");
        let logits = if width < vocab {
            let device = logits.device();
            Tensor::cat(vec![logits, Tensor::full([n, vocab - width], NEVER_LOGIT, &device)], 1)
        } else {
            logits
        };
        match &self.never {
            Some(never) => {
                logits.mask_fill(never.clone().unsqueeze::<2>().expand([n, vocab]), NEVER_LOGIT)
            }
            None => logits,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    use burn::tensor::activation::{log_softmax, softmax};

    type B = NdArray<f32>;

    fn logits() -> Tensor<B, 2> {
        let values = vec![0.5f32, -1.0, 2.0, 3.0, 0.0, -7.5];
        Tensor::from_data(TensorData::new(values, [2, 3]), &Default::default())
    }

    #[test]
    fn pads_and_excludes_with_never_logit() {
        let out: Vec<f32> = exclude_tokens(logits(), 5, &[1]).into_data().to_vec().unwrap();
        let n = NEVER_LOGIT;
        assert_eq!(out, vec![0.5, n, 2.0, n, n, 3.0, n, -7.5, n, n]);
        // Excluded and padded ids get a probability of exactly zero.
        let p: Vec<f32> =
            softmax(exclude_tokens(logits(), 5, &[1]), 1).into_data().to_vec().unwrap();
        assert!([1, 3, 4, 6, 8, 9].iter().all(|&i| p[i] == 0.0), "{p:?}");
    }

    /// The training objective's `log_probs` before this helper existed, op for op.
    fn reference_log_probs(logits: Tensor<B, 2>, vocab: usize, mask_id: u32) -> Tensor<B, 2> {
        let [n, width] = logits.dims();
        let device = logits.device();
        let logits = if width < vocab {
            Tensor::cat(vec![logits, Tensor::full([n, vocab - width], -1e9, &device)], 1)
        } else {
            logits
        };
        let mut never = vec![false; vocab];
        never[mask_id as usize] = true;
        let never = Tensor::<B, 1, Bool>::from_data(TensorData::new(never, [vocab]), &device);
        log_softmax(logits.mask_fill(never.unsqueeze::<2>().expand([n, vocab]), -1e9), 1)
    }

    #[test]
    fn log_softmax_matches_the_objective_bit_for_bit() {
        for (vocab, mask) in [(3, 2), (5, 3), (5, 0)] {
            let ours = log_softmax(exclude_tokens(logits(), vocab, &[mask]), 1);
            let reference = reference_log_probs(logits(), vocab, mask);
            let bits = |t: Tensor<B, 2>| -> Vec<u32> {
                t.into_data().to_vec::<f32>().unwrap().iter().map(|x| x.to_bits()).collect()
            };
            assert_eq!(bits(ours), bits(reference), "vocab {vocab}, mask {mask}");
        }
    }
}
