//! One training example: a prompt, a terminal response `x0`, the noisy state `x_t` chosen
//! from it, and per-slot loss weights — and the forward passes that turn it into a loss.
//!
//! The student sees the BD3LM layout `[prompt | x0 | x_t]` in one pass (see
//! `opdlm_model::Layout::training`); the teacher sees `[prompt | x0]` causally, and its
//! logits at position `j − 1` are the target for response slot `j`.

use burn::prelude::*;
use burn::tensor::{Int, TensorData};
use opdlm_model::{AttentionMode, Layout, Transformer};

use crate::objective::{cross_entropy, divergence, log_probs, weighted_mean, Divergence};

#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub prompt: Vec<u32>,
    /// The terminal sequence `x0` (response part), stop token included when produced.
    pub response: Vec<u32>,
    /// Loss weight per response slot: 0 where the slot is not trained (unmasked in
    /// `x_t`, or the stop token), `w(t)` elsewhere.
    pub weights: Vec<f32>,
}

impl Example {
    /// `x_t`: the response with every weighted slot replaced by the mask token.
    pub fn noisy_response(&self, mask_id: u32) -> Vec<u32> {
        self.response.iter().zip(&self.weights).map(|(&t, &w)| if w > 0.0 { mask_id } else { t }).collect()
    }

    /// Response slots that carry loss.
    pub fn loss_slots(&self) -> Vec<usize> {
        (0..self.response.len()).filter(|&j| self.weights[j] > 0.0).collect()
    }

    /// Tokens this example puts through training (prompt and response).
    pub fn tokens(&self) -> usize {
        self.prompt.len() + self.response.len()
    }
}

/// What supervises the student at a masked slot.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Targets {
    /// The frozen teacher's distribution (OPDLM and distillation baselines).
    Teacher { divergence: Divergence, top_k: Option<usize> },
    /// The token of `x0` itself (BD3LM-style baselines).
    HardLabels,
}

/// The teacher's log-probabilities `[slots, vocab]` at the example's loss slots:
/// a causal pass on `[prompt | x0]`, where position `p + j − 1` predicts slot `j`.
/// `None` when the example has no loss slot. `teacher` must be `no_grad`.
pub fn teacher_targets<B: Backend>(teacher: &Transformer<B>, example: &Example, mask_id: u32) -> Option<Tensor<B, 2>> {
    let slots = example.loss_slots();
    if slots.is_empty() {
        return None;
    }
    let device = teacher.devices()[0].clone();
    let (p, r) = (example.prompt.len(), example.response.len());
    let clean: Vec<u32> = example.prompt.iter().chain(&example.response[..r - 1]).copied().collect();
    let layout = Layout::contiguous(AttentionMode::Causal, 1, 0, clean.len(), &device);
    let hidden = teacher.hidden(ids::<B>(&clean, &device), &layout, None);
    let rows: Vec<i64> = slots.iter().map(|&j| (p + j - 1) as i64).collect();
    Some(log_probs(rows_logits(teacher, hidden, &rows), teacher.config().vocab_size, mask_id).detach())
}

/// Loss of one example: the weighted mean of the per-slot loss over its loss slots.
/// `teacher` holds [`teacher_targets`] for [`Targets::Teacher`]. `None` when the example
/// has no loss slot.
pub fn example_loss<B: Backend>(
    student: &Transformer<B>,
    teacher: Option<Tensor<B, 2>>,
    example: &Example,
    targets: Targets,
    block_size: usize,
    mask_id: u32,
) -> Option<Tensor<B, 1>> {
    let slots = example.loss_slots();
    if slots.is_empty() {
        return None;
    }
    let device = student.devices()[0].clone();
    let (p, r) = (example.prompt.len(), example.response.len());
    let vocab = student.config().vocab_size;

    // Student on [prompt | x0 | x_t]; the noisy copy starts at the block boundary at or
    // before the prompt's end.
    let noisy_start = p / block_size * block_size;
    let mut packed: Vec<u32> = example.prompt.iter().chain(&example.response).copied().collect();
    packed.extend_from_slice(&example.prompt[noisy_start..]);
    packed.extend(example.noisy_response(mask_id));
    let layout = Layout::training(p, r, block_size, 1, &device);
    let hidden = student.hidden(ids::<B>(&packed, &device), &layout, None);
    let rows: Vec<i64> = slots.iter().map(|&j| ((p + r) + (p - noisy_start) + j) as i64).collect();
    let student_lp = log_probs(rows_logits(student, hidden, &rows), vocab, mask_id);

    let weights: Vec<f32> = slots.iter().map(|&j| example.weights[j]).collect();
    let weights = Tensor::<B, 1>::from_data(TensorData::new(weights, [slots.len()]), &device);
    let per_slot = match targets {
        Targets::HardLabels => {
            let labels: Vec<i64> = slots.iter().map(|&j| example.response[j] as i64).collect();
            cross_entropy(student_lp, Tensor::from_data(TensorData::new(labels, [slots.len()]), &device))
        }
        Targets::Teacher { divergence: kind, top_k } => {
            divergence(teacher.expect("teacher targets are computed for teacher objectives"), student_lp, kind, top_k)
        }
    };
    Some(weighted_mean(per_slot, weights))
}

/// Vocabulary logits `[rows, vocab]` of selected positions of `hidden` (`[1, len, d]`);
/// the projection is applied to those rows only.
fn rows_logits<B: Backend>(model: &Transformer<B>, hidden: Tensor<B, 3>, rows: &[i64]) -> Tensor<B, 2> {
    let device = hidden.device();
    let [_, len, dim] = hidden.dims();
    let picked = hidden
        .reshape([len, dim])
        .select(0, Tensor::<B, 1, Int>::from_data(TensorData::new(rows.to_vec(), [rows.len()]), &device));
    model.lm_head(picked.unsqueeze::<3>()).squeeze_dim::<2>(0)
}

fn ids<B: Backend>(tokens: &[u32], device: &B::Device) -> Tensor<B, 2, Int> {
    let ids: Vec<i64> = tokens.iter().map(|&t| t as i64).collect();
    Tensor::from_data(TensorData::new(ids, [1, tokens.len()]), device)
}
