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
        self.response
            .iter()
            .zip(&self.weights)
            .map(|(&t, &w)| if w > 0.0 { mask_id } else { t })
            .collect()
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
pub fn teacher_targets<B: Backend>(
    teacher: &Transformer<B>,
    example: &Example,
    mask_id: u32,
) -> Option<Tensor<B, 2>> {
    let slots = example.loss_slots();
    if slots.is_empty() {
        return None;
    }
    let device = teacher.devices()[0].clone();
    let (p, r) = (example.prompt.len(), example.response.len());
    let clean: Vec<u32> =
        example.prompt.iter().chain(&example.response[..r - 1]).copied().collect();
    let layout = Layout::contiguous(AttentionMode::Causal, 1, 0, clean.len(), &device);
    let hidden = teacher.hidden(ids::<B>(&clean, &device), &layout, None);
    let rows: Vec<i64> = slots.iter().map(|&j| (p + j - 1) as i64).collect();
    Some(
        log_probs(rows_logits(teacher, hidden, &rows), teacher.config().vocab_size, mask_id)
            .detach(),
    )
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
            cross_entropy(
                student_lp,
                Tensor::from_data(TensorData::new(labels, [slots.len()]), &device),
            )
        }
        Targets::Teacher { divergence: kind, top_k } => divergence(
            teacher.expect("teacher targets are computed for teacher objectives"),
            student_lp,
            kind,
            top_k,
        ),
    };
    Some(weighted_mean(per_slot, weights))
}

/// Vocabulary logits `[rows, vocab]` of selected positions of `hidden` (`[n, len, d]`;
/// row `i * len + k` is position `k` of sequence `i`); the projection is applied to those
/// rows only.
fn rows_logits<B: Backend>(
    model: &Transformer<B>,
    hidden: Tensor<B, 3>,
    rows: &[i64],
) -> Tensor<B, 2> {
    let device = hidden.device();
    let [n, len, dim] = hidden.dims();
    let picked = hidden.reshape([n * len, dim]).select(
        0,
        Tensor::<B, 1, Int>::from_data(TensorData::new(rows.to_vec(), [rows.len()]), &device),
    );
    model.lm_head(picked.unsqueeze::<3>()).squeeze_dim::<2>(0)
}

/// [`teacher_targets`] of a whole batch in one causal pass: rows `[prompt | x0]` are
/// right-padded (invisible to earlier positions under causal attention). Returns the
/// loss slots' log-probabilities of every example with loss slots, concatenated in
/// example order.
pub fn batch_teacher_targets<B: Backend>(
    teacher: &Transformer<B>,
    examples: &[Example],
    mask_id: u32,
) -> Option<Tensor<B, 2>> {
    let used: Vec<&Example> = examples.iter().filter(|e| !e.loss_slots().is_empty()).collect();
    if used.is_empty() {
        return None;
    }
    let device = teacher.devices()[0].clone();
    let sequences: Vec<Vec<u32>> = used
        .iter()
        .map(|e| e.prompt.iter().chain(&e.response[..e.response.len() - 1]).copied().collect())
        .collect();
    let len = sequences.iter().map(Vec::len).max().unwrap_or(1);
    let mut rows = Vec::new();
    for (i, e) in used.iter().enumerate() {
        rows.extend(e.loss_slots().into_iter().map(|j| (i * len + e.prompt.len() + j - 1) as i64));
    }
    let layout = Layout::contiguous(AttentionMode::Causal, used.len(), 0, len, &device);
    let hidden = teacher.hidden(padded_ids::<B>(&sequences, len, mask_id, &device), &layout, None);
    Some(
        log_probs(rows_logits(teacher, hidden, &rows), teacher.config().vocab_size, mask_id)
            .detach(),
    )
}

/// The step's loss: the mean over examples (with loss slots) of [`example_loss`], computed
/// with one student pass per distinct prompt length instead of one per example.
///
/// Examples sharing a prompt length share the BD3LM layout; their responses are
/// right-padded to the longest one, and the padding (in both the clean and the noisy
/// copy) is hidden from every real query, so each real row sees exactly what it sees
/// alone. `teacher` holds [`batch_teacher_targets`] for [`Targets::Teacher`].
pub fn batch_loss<B: Backend>(
    student: &Transformer<B>,
    teacher: Option<Tensor<B, 2>>,
    examples: &[Example],
    targets: Targets,
    block_size: usize,
    mask_id: u32,
) -> Option<Tensor<B, 1>> {
    let used: Vec<&Example> = examples.iter().filter(|e| !e.loss_slots().is_empty()).collect();
    if used.is_empty() {
        return None;
    }
    let device = student.devices()[0].clone();
    let vocab = student.config().vocab_size;
    // Teacher rows come in example order; `offsets[i]` is example i's first row.
    let offsets: Vec<usize> = used
        .iter()
        .scan(0, |acc, e| {
            let start = *acc;
            *acc += e.loss_slots().len();
            Some(start)
        })
        .collect();
    let mut groups: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
    for (i, e) in used.iter().enumerate() {
        groups.entry(e.prompt.len()).or_default().push(i);
    }
    let (mut student_rows, mut order, mut coefficients, mut labels) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (&p, members) in &groups {
        let r_max = members.iter().map(|&i| used[i].response.len()).max().expect("non-empty group");
        let noisy_start = p / block_size * block_size;
        let noisy_offset = (p + r_max) + (p - noisy_start);
        let len = noisy_offset + r_max;
        let (mut sequences, mut void, mut rows) = (Vec::new(), Vec::new(), Vec::new());
        for (g, &i) in members.iter().enumerate() {
            let e = used[i];
            let r = e.response.len();
            let pad = std::iter::repeat_n(mask_id, r_max - r);
            let mut tokens: Vec<u32> =
                e.prompt.iter().chain(&e.response).copied().chain(pad.clone()).collect();
            tokens.extend_from_slice(&e.prompt[noisy_start..]);
            tokens.extend(e.noisy_response(mask_id).into_iter().chain(pad));
            sequences.push(tokens);
            void.extend((0..len).map(|k| (p + r..p + r_max).contains(&k) || k >= noisy_offset + r));
            let slots = e.loss_slots();
            let total_weight: f32 = slots.iter().map(|&j| e.weights[j]).sum();
            for (k, &j) in slots.iter().enumerate() {
                rows.push((g * len + noisy_offset + j) as i64);
                order.push((offsets[i] + k) as i64);
                coefficients.push(e.weights[j] / (total_weight * used.len() as f32));
                labels.push(e.response[j] as i64);
            }
        }
        let n = members.len();
        let void = Tensor::<B, 2, Bool>::from_data(TensorData::new(void, [n, len]), &device);
        let layout = Layout::training(p, r_max, block_size, n, &device)
            .with_padding(Tensor::zeros([n], &device), void);
        let hidden =
            student.hidden(padded_ids::<B>(&sequences, len, mask_id, &device), &layout, None);
        student_rows.push(rows_logits(student, hidden, &rows));
    }
    let slots = coefficients.len();
    let student_lp = log_probs(Tensor::cat(student_rows, 0), vocab, mask_id);
    let per_slot = match targets {
        Targets::HardLabels => {
            cross_entropy(student_lp, Tensor::from_data(TensorData::new(labels, [slots]), &device))
        }
        Targets::Teacher { divergence: kind, top_k } => {
            let teacher = teacher.expect("teacher targets are computed for teacher objectives");
            let order = Tensor::<B, 1, Int>::from_data(TensorData::new(order, [slots]), &device);
            divergence(teacher.select(0, order), student_lp, kind, top_k)
        }
    };
    let coefficients = Tensor::<B, 1>::from_data(TensorData::new(coefficients, [slots]), &device);
    Some((per_slot * coefficients).sum())
}

/// Token ids `[n, len]`, each sequence right-padded with `pad`.
fn padded_ids<B: Backend>(
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
pub fn ids<B: Backend>(tokens: &[u32], device: &B::Device) -> Tensor<B, 2, Int> {
    let ids: Vec<i64> = tokens.iter().map(|&t| t as i64).collect();
    Tensor::from_data(TensorData::new(ids, [1, tokens.len()]), device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;

    type B = NdArray<f32>;

    fn example(prompt: &[u32], response: &[u32], weights: &[f32]) -> Example {
        Example { prompt: prompt.to_vec(), response: response.to_vec(), weights: weights.to_vec() }
    }

    /// One pass per prompt length gives the per-example losses' mean, for teacher targets
    /// (ragged prompts and responses, partial prompt blocks) and hard labels.
    #[test]
    fn batched_loss_equals_the_mean_of_per_example_losses() {
        let device = Default::default();
        B::seed(&device, 3);
        let shape = crate::pretrain::TeacherShape {
            hidden: 16,
            layers: 2,
            heads: 2,
            kv_heads: 1,
            intermediate: 32,
        };
        let model = Transformer::<B>::new(&shape.model_config(21, 64), &device)
            .into_diffusion(20, 4, false);
        let mask_id = 20;
        let examples = vec![
            example(&[1, 2, 3, 4, 5], &[6, 7, 8, 9, 10, 11], &[0.0, 1.0, 0.5, 0.0, 1.0, 0.0]),
            example(&[1, 2, 3, 4, 5], &[9, 9, 2], &[1.0, 0.0, 2.0]),
            example(&[7, 8, 9, 1, 2, 3, 4, 5], &[3, 3, 3, 3, 1], &[0.0, 0.0, 1.0, 1.0, 1.0]),
            example(&[4, 4, 4], &[5, 6], &[0.0, 0.0]),
            example(
                &[2, 3],
                &[1, 2, 3, 4, 5, 6, 7, 8, 9],
                &[1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0],
            ),
        ];
        for targets in [
            Targets::Teacher { divergence: Divergence::ForwardKl, top_k: None },
            Targets::HardLabels,
        ] {
            let per_example: Vec<f32> = examples
                .iter()
                .filter_map(|e| {
                    let t = matches!(targets, Targets::Teacher { .. })
                        .then(|| teacher_targets(&model, e, mask_id))
                        .flatten();
                    example_loss(&model, t, e, targets, 4, mask_id).map(|l| l.into_scalar())
                })
                .collect();
            let expected = per_example.iter().sum::<f32>() / per_example.len() as f32;
            let batch_targets = matches!(targets, Targets::Teacher { .. })
                .then(|| batch_teacher_targets(&model, &examples, mask_id))
                .flatten();
            let got = batch_loss(&model, batch_targets, &examples, targets, 4, mask_id)
                .unwrap()
                .into_scalar();
            assert!(
                (got - expected).abs() < 1e-5,
                "{targets:?}: batched {got} vs per-example mean {expected}"
            );
        }
    }
}
