//! Per-slot training losses: divergence between the frozen teacher's and the student's
//! next-token distributions (OPDLM and the distillation baselines), or cross-entropy to
//! hard labels (BD3LM-style baselines).
//!
//! The mask token is never a prediction: its logit is set to a huge negative value in
//! both distributions (bd3lms' SUBS parameterisation), so it holds exactly zero
//! probability. Finite rather than −∞ keeps `0 · log 0` terms at 0 instead of NaN.

use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use burn::tensor::Int;

/// What a run trains on; OPDLM and the paper's baselines differ in three independent
/// choices: where `x0` comes from, how `x_t` is chosen, and what the targets are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Objective {
    /// Student rollouts, sampler-visited states, teacher targets (the method).
    Opdlm,
    /// Student rollouts, random masking, teacher targets (paper Eq. 6).
    OpdlmOff,
    /// Dataset responses, random masking, hard labels with `1/t` weight (BD3LM).
    Bd3lm,
    /// Teacher generations, random masking, hard labels with `1/t` weight (paper A.5).
    Sft,
    /// Teacher generations, random masking, teacher targets.
    OffpolicyKd,
}

/// Where the terminal sequence `x0` comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseSource {
    StudentRollout,
    TeacherGeneration,
    Dataset,
}

impl Objective {
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
}

/// Logit given to the mask token: `exp` of it underflows to exactly 0 in f32.
const NEVER: f32 = -1e9;

/// Which divergence pulls the student toward the teacher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Divergence {
    /// KL(teacher ‖ student): the paper's objective (mode-covering).
    ForwardKl,
    /// KL(student ‖ teacher) (mode-seeking).
    ReverseKl,
    /// Jensen–Shannon divergence.
    Jsd,
}

/// Log-probabilities over the student's vocabulary with the mask token excluded.
/// `logits` may be narrower than `vocab` (a teacher without the appended mask row);
/// missing ids get zero probability.
pub fn log_probs<B: Backend>(logits: Tensor<B, 2>, vocab: usize, mask_id: u32) -> Tensor<B, 2> {
    let [n, width] = logits.dims();
    let device = logits.device();
    let logits = if width < vocab {
        Tensor::cat(vec![logits, Tensor::full([n, vocab - width], NEVER, &device)], 1)
    } else {
        logits
    };
    let mut never = vec![false; vocab];
    never[mask_id as usize] = true;
    let never =
        Tensor::<B, 1, Bool>::from_data(burn::tensor::TensorData::new(never, [vocab]), &device);
    log_softmax(logits.mask_fill(never.unsqueeze::<2>().expand([n, vocab]), NEVER), 1)
}

/// Per-slot divergence `[n]` between teacher and student log-probabilities (`[n, V]`).
/// With `top_k`, forward KL is summed over the teacher's `k` most likely tokens only,
/// with their probabilities left unrenormalised (as the reference does at 4B/8B).
pub fn divergence<B: Backend>(
    teacher: Tensor<B, 2>,
    student: Tensor<B, 2>,
    kind: Divergence,
    top_k: Option<usize>,
) -> Tensor<B, 1> {
    match (kind, top_k) {
        (Divergence::ForwardKl, Some(k)) => {
            let (teacher_top, ids) = teacher.topk_with_indices(k, 1);
            let student_top = student.gather(1, ids);
            (teacher_top.clone().exp() * (teacher_top - student_top)).sum_dim(1).squeeze_dim(1)
        }
        (Divergence::ForwardKl, None) => kl(teacher, student),
        (Divergence::ReverseKl, _) => kl(student, teacher),
        (Divergence::Jsd, _) => {
            let mixture =
                ((teacher.clone().exp() + student.clone().exp()) * 0.5).clamp_min(1e-30).log();
            (kl(teacher, mixture.clone()) + kl(student, mixture)) * 0.5
        }
    }
}

/// KL(p ‖ q) per row from log-probabilities.
fn kl<B: Backend>(log_p: Tensor<B, 2>, log_q: Tensor<B, 2>) -> Tensor<B, 1> {
    (log_p.clone().exp() * (log_p - log_q)).sum_dim(1).squeeze_dim(1)
}

/// Per-slot cross-entropy `[n]` of the student's log-probabilities against `labels`.
pub fn cross_entropy<B: Backend>(student: Tensor<B, 2>, labels: Tensor<B, 1, Int>) -> Tensor<B, 1> {
    student.gather(1, labels.unsqueeze_dim(1)).squeeze_dim(1).neg()
}

/// `Σ w·x / Σ w`: the weighted mean used to reduce per-slot losses.
pub fn weighted_mean<B: Backend>(values: Tensor<B, 1>, weights: Tensor<B, 1>) -> Tensor<B, 1> {
    (values * weights.clone()).sum() / weights.sum()
}

#[cfg(test)]
mod tests {
    //! Losses and gradients against `tests/fixtures/loss_reference.json`, computed in
    //! float64 by PyTorch autograd (`scripts/make_loss_fixture.py`).
    use super::*;
    use burn::backend::{Autodiff, NdArray};
    use burn::tensor::TensorData;
    use serde::Deserialize;

    type B = Autodiff<NdArray<f32>>;

    #[derive(Deserialize)]
    struct Fixture {
        student_logits: Vec<Vec<f32>>,
        teacher_logits: Vec<Vec<f32>>,
        weights: Vec<f32>,
        labels: Vec<i64>,
        mask_id: u32,
        top_k: usize,
        losses: std::collections::HashMap<String, Expected>,
    }

    #[derive(Deserialize)]
    struct Expected {
        per_slot: Vec<f32>,
        loss: f32,
        grad: Vec<Vec<f32>>,
    }

    fn matrix(rows: &[Vec<f32>]) -> Tensor<B, 2> {
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        Tensor::from_data(TensorData::new(flat, [rows.len(), rows[0].len()]), &Default::default())
    }

    #[test]
    fn losses_and_gradients_match_pytorch_to_1e_5() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/loss_reference.json");
        let fixture: Fixture =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let vocab = fixture.student_logits[0].len();
        let n = fixture.weights.len();
        let device = Default::default();
        for (name, expected) in &fixture.losses {
            let student_logits = matrix(&fixture.student_logits).require_grad();
            let student = log_probs(student_logits.clone(), vocab, fixture.mask_id);
            let teacher =
                log_probs(matrix(&fixture.teacher_logits).detach(), vocab, fixture.mask_id);
            let per_slot = match name.as_str() {
                "forward_kl" => divergence(teacher, student, Divergence::ForwardKl, None),
                "forward_kl_topk" => {
                    divergence(teacher, student, Divergence::ForwardKl, Some(fixture.top_k))
                }
                "reverse_kl" => divergence(teacher, student, Divergence::ReverseKl, None),
                "jsd" => divergence(teacher, student, Divergence::Jsd, None),
                "cross_entropy" => cross_entropy(
                    student,
                    Tensor::from_data(TensorData::new(fixture.labels.clone(), [n]), &device),
                ),
                other => panic!("unexpected loss {other}"),
            };
            let weights =
                Tensor::<B, 1>::from_data(TensorData::new(fixture.weights.clone(), [n]), &device);
            let loss = weighted_mean(per_slot.clone(), weights);
            let per_slot: Vec<f32> = per_slot.into_data().to_vec().unwrap();
            for (got, want) in per_slot.iter().zip(&expected.per_slot) {
                assert!((got - want).abs() < 1e-5, "{name}: per-slot {got} vs {want}");
            }
            let value = loss.clone().into_scalar();
            assert!(
                (value - expected.loss).abs() < 1e-5,
                "{name}: loss {value} vs {}",
                expected.loss
            );
            let grads = loss.backward();
            let grad: Vec<f32> = student_logits.grad(&grads).unwrap().into_data().to_vec().unwrap();
            let want: Vec<f32> = expected.grad.iter().flatten().copied().collect();
            let worst = grad.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
            assert!(worst < 1e-5, "{name}: gradient max abs diff {worst}");
        }
    }
}
