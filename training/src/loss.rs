//! The whole training loss, OPDLM and its baselines, in one place:
//!
//! 1. the objective's definition ([`Objective`]): where `x0` comes from, how `x_t` is
//!    chosen, and what the targets are ([`Loss`] binds an objective to its targets);
//! 2. one [`Example`] per response: `x_t` and the per-slot weights (1 for distillation,
//!    `1/t` for hard labels) with the stop-token rule ([`Loss::example`]);
//! 3. the teacher's targets for a whole batch in one causal pass
//!    ([`Loss::teacher_targets`]);
//! 4. the batch loss ([`Loss::batch_loss`]): examples packed into the BD3LM layout
//!    `[prompt | x0 | x_t]` (`packing.rs`: one student pass per prompt length, or one for
//!    the batch), the per-slot divergence or cross-entropy, and the normalisation (a
//!    row's weighted mean, then the mean over rows).
//!
//! The student sees the BD3LM layout in one pass (see `opdlm_model::Layout::training`);
//! the teacher sees `[prompt | x0]` causally, and its logits at position `j − 1` are the
//! target for response slot `j`. The mask token is never a prediction: its logit is
//! [`NEVER_LOGIT`] in both distributions (bd3lms' SUBS parameterisation), so it holds
//! exactly zero probability.

use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, TensorData};
use opdlm_inference::RowOutput;
use opdlm_model::{exclude_tokens, padded_token_ids, AttentionMode, Layout, Transformer};
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use crate::state::{random_mask, select_masked, MaskingSchedule, StateSelection};
use packing::PackedBatch;
pub use packing::StudentPasses;

#[cfg(doc)]
use opdlm_model::NEVER_LOGIT;

/// What a run trains on. OPDLM and the paper's baselines differ in three independent
/// choices: where `x0` comes from ([`Objective::response_source`]), how `x_t` is chosen
/// ([`Objective::on_policy_states`]), and what the targets are
/// ([`Objective::hard_labels`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum Objective {
    /// On-policy distillation on the student's own denoising states (the method).
    Opdlm,
    /// Student rollouts with random masking instead of visited states (paper Eq. 6).
    OpdlmOff,
    /// Off-policy block diffusion on dataset answers: random masking, 1/t weight, hard labels.
    Bd3lm,
    /// BD3LM loss on the teacher's own generations (paper A.5).
    Sft,
    /// Teacher soft targets on teacher generations with random masking.
    OffpolicyKd,
}

/// Where the terminal sequence `x0` comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseSource {
    /// The student's own rollout with the inference sampler (on-policy `x0`).
    StudentRollout,
    /// The frozen teacher's autoregressive generation.
    TeacherGeneration,
    /// The `answer` of the prompt file.
    Dataset,
}

impl Objective {
    /// Where this objective's `x0` comes from.
    pub fn response_source(self) -> ResponseSource {
        match self {
            Self::Opdlm | Self::OpdlmOff => ResponseSource::StudentRollout,
            Self::Sft | Self::OffpolicyKd => ResponseSource::TeacherGeneration,
            Self::Bd3lm => ResponseSource::Dataset,
        }
    }

    /// `true`: states come from the sampler's trajectory; `false`: random masking.
    pub fn on_policy_states(self) -> bool {
        self == Self::Opdlm
    }

    /// `true`: hard labels weighted by `1/t`; `false`: teacher distributions, `w = 1`.
    pub fn hard_labels(self) -> bool {
        matches!(self, Self::Bd3lm | Self::Sft)
    }

    /// The name used on the command line and in config files (`opdlm-off`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::Opdlm => "opdlm",
            Self::OpdlmOff => "opdlm-off",
            Self::Bd3lm => "bd3lm",
            Self::Sft => "sft",
            Self::OffpolicyKd => "offpolicy-kd",
        }
    }
}

/// Which divergence pulls the student toward the teacher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum Divergence {
    /// KL(teacher ‖ student): the paper's objective (mode-covering).
    ForwardKl,
    /// KL(student ‖ teacher) (mode-seeking).
    ReverseKl,
    /// Jensen–Shannon divergence.
    Jsd,
}

/// What supervises the student at a masked slot.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Targets {
    /// The frozen teacher's distribution (OPDLM and distillation baselines); with `top_k`,
    /// forward KL over the teacher's `k` most likely tokens only.
    Teacher {
        /// How the two distributions are compared.
        divergence: Divergence,
        /// Teacher tokens kept per slot (`None`: the full vocabulary).
        top_k: Option<usize>,
    },
    /// The token of `x0` itself (BD3LM-style baselines).
    HardLabels,
}

/// An objective together with its state rule and targets: one value, so that an
/// objective cannot be paired with targets it does not use.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Loss {
    objective: Objective,
    state_selection: StateSelection,
    targets: Targets,
    student_passes: StudentPasses,
}

impl Loss {
    /// Hard-label objectives (bd3lm, sft) ignore `divergence` and `top_k`; only OPDLM reads
    /// `state_selection`.
    pub fn new(
        objective: Objective,
        state_selection: StateSelection,
        divergence: Divergence,
        top_k: Option<usize>,
    ) -> Self {
        let targets = if objective.hard_labels() {
            Targets::HardLabels
        } else {
            Targets::Teacher { divergence, top_k }
        };
        Self { objective, state_selection, targets, student_passes: StudentPasses::default() }
    }

    /// The same loss computed with the student's passes split as `passes` says (the
    /// value is the same up to float rounding; the cost differs).
    pub fn with_student_passes(self, passes: StudentPasses) -> Self {
        Self { student_passes: passes, ..self }
    }

    /// The objective this loss trains.
    pub fn objective(&self) -> Objective {
        self.objective
    }

    /// What supervises the masked slots.
    pub fn targets(&self) -> Targets {
        self.targets
    }

    /// Chooses `x_t` and the per-slot weights for one response `row` of `prompt`.
    ///
    /// `x_t` covers the whole trajectory (the slots after the stop token in its block
    /// included) and masks what the chosen state masks, whatever the weights say: the
    /// student trains on states the sampler visited (OPDLM) or on the forward process
    /// applied to the same sequence (the random-masking objectives). The weights then pick
    /// the trained slots among the masked ones: never a slot after the stop token;
    /// distillation objectives leave the stop token itself out, as the OPDLM loss of the
    /// reference does, while hard-label objectives (bd3lm, sft) train it, as the BD3LM
    /// recipe does (without it their students never learn to stop).
    pub fn example(
        &self,
        prompt: &[u32],
        row: RowOutput,
        block_size: usize,
        rng: &mut StdRng,
    ) -> Example {
        let p = prompt.len();
        let x0 = row.trajectory();
        let hard_labels = self.objective.hard_labels();
        let (masked, times) = if self.objective.on_policy_states() {
            let masked =
                select_masked(self.state_selection, &row.first_unmask_step, p, block_size, rng);
            (masked, vec![1.0; x0.len()])
        } else {
            random_mask(p, x0.len(), block_size, self.masking_schedule(), rng)
        };
        let r = row.tokens.len();
        let trained = if row.stopped && !hard_labels { r - 1 } else { r };
        let weights = (0..x0.len())
            .map(|j| match (masked[j] && j < trained, hard_labels) {
                (false, _) => 0.0,
                (true, true) => 1.0 / times[j],
                (true, false) => 1.0,
            })
            .collect();
        Example { prompt: prompt.to_vec(), x0, response_len: r, masked, weights }
    }

    /// How the random-masking objectives draw `x_t`: BD3LM's clipped schedule for the
    /// hard-label baselines (their recipe), the full `U(0, 1)` range for the distillation
    /// baselines (paper Eq. 6).
    pub fn masking_schedule(&self) -> MaskingSchedule {
        match self.objective.hard_labels() {
            true => MaskingSchedule::BD3LM_CLIPPED,
            false => MaskingSchedule::FULL_RANGE,
        }
    }

    /// How per-slot losses are reduced to the step's loss: a token mean over the batch
    /// for the hard-label objectives (the BD3LM recipe: `Σ w·nll / tokens`), otherwise each
    /// example's weighted mean, then the mean over examples (the OPDLM reference).
    fn normalisation(&self) -> Normalisation {
        match self.objective.hard_labels() {
            true => Normalisation::TokenMean,
            false => Normalisation::ExampleMean,
        }
    }

    /// The teacher's log-probabilities at the loss slots of every example, in example
    /// order, from one causal pass: rows `[prompt | x0]` are right-padded (invisible to
    /// earlier positions under causal attention), and position `p + j − 1` predicts slot
    /// `j`. `None` for hard labels or when no example has a loss slot. `teacher` must be
    /// `no_grad`.
    pub fn teacher_targets<B: Backend>(
        &self,
        teacher: &Transformer<B>,
        examples: &[Example],
        mask_id: u32,
    ) -> Option<TeacherTargets<B>> {
        let Targets::Teacher { divergence, top_k } = self.targets else {
            return None;
        };
        let used: Vec<&Example> = examples.iter().filter(|e| e.has_loss()).collect();
        if used.is_empty() {
            return None;
        }
        let device = teacher.devices()[0].clone();
        let sequences: Vec<Vec<u32>> = used.iter().map(|e| e.teacher_input()).collect();
        let len = sequences.iter().map(Vec::len).max().unwrap_or(1);
        let mut rows = Vec::new();
        for (i, e) in used.iter().enumerate() {
            rows.extend(
                e.loss_slots().into_iter().map(|j| (i * len + e.prompt.len() + j - 1) as i64),
            );
        }
        let layout = Layout::contiguous(AttentionMode::Causal, used.len(), 0, len, &device);
        let ids = padded_token_ids::<B>(&sequences, len, mask_id, &device);
        let hidden = teacher.hidden(ids, &layout, None);
        let logits = rows_logits(teacher, hidden, &rows);
        let log_probs = log_probs(logits, teacher.config().vocab_size, mask_id).detach();
        Some(TeacherTargets::new(log_probs, divergence, top_k))
    }

    /// The denominator of the objective's recipe (see [`Normalisation`]) over `examples`:
    /// the examples that carry loss, or their response tokens. A data-parallel step sums
    /// it over every device's share before [`Loss::batch_loss`], so that each share's
    /// loss is its part of the global batch's mean and the shares' gradients add up to
    /// the global batch's gradient.
    pub fn denominator(&self, examples: &[Example]) -> f64 {
        match self.normalisation() {
            Normalisation::ExampleMean => examples.iter().filter(|e| e.has_loss()).count() as f64,
            Normalisation::TokenMean => {
                examples.iter().map(|e| e.response_len).sum::<usize>() as f64
            }
        }
    }

    /// The step's loss, normalised as the objective's recipe does (see [`Normalisation`])
    /// with `denominator` (from [`Loss::denominator`], summed over every share of the
    /// batch), with the student passes of [`Loss::with_student_passes`]. `teacher` holds
    /// [`Loss::teacher_targets`] for teacher targets. `None` when no example has a loss
    /// slot.
    pub fn batch_loss<B: Backend>(
        &self,
        student: &Transformer<B>,
        teacher: Option<TeacherTargets<B>>,
        examples: &[Example],
        denominator: f64,
        (block_size, mask_id): (usize, u32),
    ) -> Option<BatchLoss<B>> {
        let used: Vec<&Example> = examples.iter().filter(|e| e.has_loss()).collect();
        if used.is_empty() {
            return None;
        }
        let device = student.devices()[0].clone();
        let denominator = denominator as f32;
        let packed = match self.normalisation() {
            Normalisation::ExampleMean => {
                PackedBatch::new(&used, block_size, mask_id, self.student_passes, |e, j| {
                    let total: f32 = e.weights.iter().sum();
                    e.weights[j] / (total * denominator)
                })
            }
            Normalisation::TokenMean => {
                PackedBatch::new(&used, block_size, mask_id, self.student_passes, |e, j| {
                    e.weights[j] / denominator
                })
            }
        };
        let student_rows: Vec<Tensor<B, 2>> = packed
            .groups
            .iter()
            .map(|group| group.student_logits(student, block_size, mask_id, &device))
            .collect();
        let slots = packed.coefficients.len();
        let student_lp =
            log_probs(Tensor::cat(student_rows, 0), student.config().vocab_size, mask_id);
        let per_slot = match self.targets {
            Targets::HardLabels => {
                let labels = TensorData::new(packed.labels, [slots]);
                cross_entropy(student_lp, Tensor::from_data(labels, &device))
            }
            Targets::Teacher { divergence: kind, .. } => {
                let teacher = teacher.expect("teacher targets are computed for teacher objectives");
                let order = TensorData::new(packed.teacher_order, [slots]);
                let order = Tensor::<B, 1, Int>::from_data(order, &device);
                divergence(teacher.select(order), student_lp, kind)
            }
        };
        let coefficients = TensorData::new(packed.coefficients, [slots]);
        let coefficients = Tensor::<B, 1>::from_data(coefficients, &device);
        Some(BatchLoss { value: (per_slot * coefficients).sum(), examples: used.len(), slots })
    }
}

/// The result of [`Loss::batch_loss`].
#[derive(Debug, Clone)]
pub struct BatchLoss<B: Backend> {
    /// The scalar loss (`[1]`) to differentiate.
    pub value: Tensor<B, 1>,
    /// Examples that carried loss (the mean's denominator).
    pub examples: usize,
    /// Response slots that carried loss, over all examples.
    pub slots: usize,
}

/// One training example: a prompt, the terminal sequence `x0`, the state `x_t` (which
/// slots it masks) and the per-slot loss weights. The mask and the weights are separate
/// decisions: a masked slot may carry no loss (the stop token under distillation, the
/// slots after it), but it is masked all the same, because the sampler had it masked.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// The prompt's token ids.
    pub prompt: Vec<u32>,
    /// The terminal sequence `x0` as the sampler left it: the response (stop token
    /// included when produced), then the slots after the stop token in its block.
    pub x0: Vec<u32>,
    /// Length of the response within `x0` (the rest are the slots after the stop token).
    pub response_len: usize,
    /// Per slot of `x0`: masked in `x_t`.
    pub masked: Vec<bool>,
    /// Loss weight per slot of `x0`: `w(t)` on trained slots, 0 elsewhere (always 0 where
    /// `x_t` is not masked).
    pub weights: Vec<f32>,
}

impl Example {
    /// The response part of `x0` (stop token included when produced).
    pub fn response(&self) -> &[u32] {
        &self.x0[..self.response_len]
    }

    /// `x_t`: `x0` with every masked slot replaced by the mask token.
    pub fn noisy_response(&self, mask_id: u32) -> Vec<u32> {
        self.x0.iter().zip(&self.masked).map(|(&t, &m)| if m { mask_id } else { t }).collect()
    }

    /// Response slots that carry loss.
    pub fn loss_slots(&self) -> Vec<usize> {
        (0..self.x0.len()).filter(|&j| self.weights[j] > 0.0).collect()
    }

    /// Whether any slot carries loss (examples without are left out of the mean).
    pub fn has_loss(&self) -> bool {
        self.weights.iter().any(|&w| w > 0.0)
    }

    /// Tokens this example puts through training (prompt and response).
    pub fn tokens(&self) -> usize {
        self.prompt.len() + self.response_len
    }

    /// The teacher's causal input `[prompt | response[..r-1]]`: position `p + j − 1`
    /// predicts response slot `j`.
    fn teacher_input(&self) -> Vec<u32> {
        let r = self.response_len;
        self.prompt.iter().chain(&self.x0[..r - 1]).copied().collect()
    }
}

/// How a batch's per-slot losses become one number.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Normalisation {
    /// Each example's weighted mean `Σ w·ℓ / Σ w`, then the mean over examples.
    ExampleMean,
    /// `Σ w·ℓ` over the batch divided by the batch's response tokens (masked or not).
    TokenMean,
}

/// The `x_t` segment of each example as the student receives it, read back from the
/// packed batch that [`Loss::batch_loss`] feeds the student: from the block boundary at or
/// before the prompt's end to the end of `x0`, padding removed. `None` for an example
/// without loss slots (it is not packed). For tests that compare training states with the
/// sampler's visited states through the production path.
pub fn student_noisy_inputs(
    examples: &[Example],
    block_size: usize,
    mask_id: u32,
    passes: StudentPasses,
) -> Vec<Option<Vec<u32>>> {
    let used: Vec<&Example> = examples.iter().filter(|e| e.has_loss()).collect();
    let packed = PackedBatch::new(&used, block_size, mask_id, passes, |_, _| 0.0);
    let mut inputs: Vec<Option<Vec<u32>>> = vec![None; examples.len()];
    let positions: Vec<usize> = (0..examples.len()).filter(|&i| examples[i].has_loss()).collect();
    for group in &packed.groups {
        let len = group.len();
        for (g, &u) in group.members.iter().enumerate() {
            let visible =
                (0..len).filter(|&k| !group.void[g * len + k] && k >= group.noisy_from(g));
            inputs[positions[u]] = Some(visible.map(|k| group.sequences[g][k]).collect());
        }
    }
    inputs
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
    let rows =
        Tensor::<B, 1, Int>::from_data(TensorData::new(rows.to_vec(), [rows.len()]), &device);
    let picked = hidden.reshape([n * len, dim]).select(0, rows);
    model.lm_head(picked.unsqueeze::<3>()).squeeze_dim::<2>(0)
}

/// Log-probabilities over the student's vocabulary with the mask token excluded.
/// `logits` may be narrower than `vocab` (a teacher without the appended mask row);
/// missing ids get zero probability.
fn log_probs<B: Backend>(logits: Tensor<B, 2>, vocab: usize, mask_id: u32) -> Tensor<B, 2> {
    log_softmax(exclude_tokens(logits, vocab, &[mask_id]), 1)
}

/// The teacher's targets for a batch's loss slots, one row per slot.
#[derive(Debug, Clone)]
pub enum TeacherTargets<B: Backend> {
    /// Log-probabilities over the whole vocabulary, `[slots, V]`.
    Full(Tensor<B, 2>),
    /// Forward KL's targets with a teacher top-k: the log-probabilities of each slot's `k`
    /// most likely tokens `[slots, k]`, in decreasing order, and their ids. Chosen once, in
    /// the teacher's pass, so the vocabulary-wide log-probabilities are freed before the
    /// student's pass instead of being reordered and scanned during it.
    TopK {
        /// The `k` largest log-probabilities of each slot, unrenormalised.
        log_probs: Tensor<B, 2>,
        /// Their token ids.
        ids: Tensor<B, 2, Int>,
    },
}

impl<B: Backend> TeacherTargets<B> {
    /// What `divergence` reads of the teacher's log-probabilities `[slots, V]`: the top
    /// `k` only for forward KL with `top_k` (the configuration allows it nowhere else).
    pub fn new(log_probs: Tensor<B, 2>, divergence: Divergence, top_k: Option<usize>) -> Self {
        match (divergence, top_k) {
            (Divergence::ForwardKl, Some(k)) => {
                let (log_probs, ids) = largest_k(log_probs, k);
                Self::TopK { log_probs, ids }
            }
            _ => Self::Full(log_probs),
        }
    }

    /// The log-probabilities held: the whole vocabulary's, or the top `k`'s.
    pub fn log_probs(&self) -> &Tensor<B, 2> {
        match self {
            Self::Full(log_probs) | Self::TopK { log_probs, .. } => log_probs,
        }
    }

    /// The rows `order` names, in that order.
    fn select(self, order: Tensor<B, 1, Int>) -> Self {
        match self {
            Self::Full(log_probs) => Self::Full(log_probs.select(0, order)),
            Self::TopK { log_probs, ids } => Self::TopK {
                log_probs: log_probs.select(0, order.clone()),
                ids: ids.select(0, order),
            },
        }
    }
}

/// Per-slot divergence `[n]` between the teacher's targets and the student's
/// log-probabilities (`[n, V]`). Top-k targets are forward KL summed over the teacher's `k`
/// most likely tokens only, with their probabilities left unrenormalised (as the reference
/// does at 4B/8B).
fn divergence<B: Backend>(
    teacher: TeacherTargets<B>,
    student: Tensor<B, 2>,
    kind: Divergence,
) -> Tensor<B, 1> {
    match teacher {
        TeacherTargets::TopK { log_probs: teacher_top, ids } => {
            kl(teacher_top, student.gather(1, ids))
        }
        TeacherTargets::Full(teacher) => match kind {
            Divergence::ForwardKl => kl(teacher, student),
            Divergence::ReverseKl => kl(student, teacher),
            Divergence::Jsd => {
                let mixture =
                    ((teacher.clone().exp() + student.clone().exp()) * 0.5).clamp_min(1e-30).log();
                (kl(teacher, mixture.clone()) + kl(student, mixture)) * 0.5
            }
        },
    }
}

/// The `k` largest entries of each row of `x` (`[n, V]`), in decreasing order, with their
/// ids; ties go to the lower id. The ids are chosen by one scan of each row on the host
/// ([`largest_k_ids`]) and the values gathered from `x`, so they are `x`'s own bits.
/// burn's `topk_with_indices` sorts every whole row (a vocabulary per loss slot), and `k`
/// rounds of a row maximum with the winner knocked out cost 16 full passes and 16
/// scatters over the targets (0.8 s of a SmolLM2 step, more than its LM head).
fn largest_k<B: Backend>(x: Tensor<B, 2>, k: usize) -> (Tensor<B, 2>, Tensor<B, 2, Int>) {
    let [n, vocab] = x.dims();
    let k = k.min(vocab);
    let values = x.to_data().convert::<f32>().into_vec::<f32>().expect("f32 values");
    let ids: Vec<i64> = values.chunks(vocab.max(1)).flat_map(|row| largest_k_ids(row, k)).collect();
    let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [n, k]), &x.device());
    (x.gather(1, ids.clone()), ids)
}

/// The ids of the `k` largest values of `row`, in decreasing order of value and, among
/// equal values, increasing id. A NaN is never chosen while `k` other values remain.
fn largest_k_ids(row: &[f32], k: usize) -> Vec<i64> {
    if k == 0 {
        return vec![];
    }
    // Kept sorted: a value enters after every kept value at least as large, so an earlier
    // (lower) id stays ahead of an equal later one.
    let mut kept: Vec<(f32, usize)> = Vec::with_capacity(k + 1);
    for (id, &v) in row.iter().enumerate() {
        let full = kept.len() == k;
        if v.is_nan() || (full && v <= kept[k - 1].0) {
            continue;
        }
        let at = kept.partition_point(|&(kept_v, _)| kept_v >= v);
        kept.insert(at, (v, id));
        kept.truncate(k);
    }
    // Fewer than `k` non-NaN values: fill with the lowest unused ids (NaNs).
    let mut id = 0;
    while kept.len() < k {
        if !kept.iter().any(|&(_, used)| used == id) {
            kept.push((f32::NAN, id));
        }
        id += 1;
    }
    kept.into_iter().map(|(_, id)| id as i64).collect()
}

/// KL(p ‖ q) per row from log-probabilities.
fn kl<B: Backend>(log_p: Tensor<B, 2>, log_q: Tensor<B, 2>) -> Tensor<B, 1> {
    (log_p.clone().exp() * (log_p - log_q)).sum_dim(1).squeeze_dim(1)
}

/// Per-slot cross-entropy `[n]` of the student's log-probabilities against `labels`.
fn cross_entropy<B: Backend>(student: Tensor<B, 2>, labels: Tensor<B, 1, Int>) -> Tensor<B, 1> {
    student.gather(1, labels.unsqueeze_dim(1)).squeeze_dim(1).neg()
}

mod packing;
#[cfg(test)]
mod tests;
