//! The training step: `Distiller` wraps the student (trained) and the frozen teacher, and
//! implements burn-train's `TrainStep` (rollout → state selection → teacher → student →
//! loss → backward) and `InferenceStep` through one `forward_training`.

use std::sync::Arc;
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::optim::{GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::train::metric::{Adaptor, ItemLazy};
use burn::train::{InferenceStep, TrainOutput, TrainStep};
use opdlm_model::Transformer;
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::clip::{clip_global_norm, global_norm};
use crate::config::FaultInjection;
use crate::curriculum::Curriculum;
use crate::data::PromptBatch;
use crate::example::{batch_loss, batch_teacher_targets, Targets};
use crate::guard::NumericGuard;
use crate::objective::Objective;
use crate::rollout::{make_examples, RolloutSettings};

/// What a step needs besides the two models.
#[derive(Debug, Clone)]
pub struct StepSettings {
    pub objective: Objective,
    pub rollout: RolloutSettings,
    pub targets: Targets,
    pub curriculum: Curriculum,
    pub mask_id: u32,
    pub max_grad_norm: f64,
    /// Skips steps with a non-finite loss or gradient; shared by all copies of the model.
    pub guard: Arc<NumericGuard>,
    pub faults: FaultInjection,
}

#[derive(Module, Debug)]
pub struct Distiller<B: Backend> {
    pub student: Transformer<B>,
    /// Frozen: skipped by the optimizer and the checkpointer; `no_grad` so its forward
    /// passes build no autodiff graph.
    #[module(skip)]
    pub teacher: Transformer<B>,
    #[module(skip)]
    pub settings: StepSettings,
}

/// Numbers one step reports (plain floats, logged by `crate::metrics`).
#[derive(Debug, Clone, Default)]
pub struct StepOutput {
    pub loss: f64,
    /// Examples that carried loss.
    pub examples: usize,
    /// Tokens consumed (prompt + response of every example).
    pub tokens: usize,
    pub rollout_len: f64,
    pub rollout_tokens_per_forward: f64,
    pub max_rollout_len: usize,
    pub rollout_seconds: f64,
    pub teacher_seconds: f64,
    /// Student forward and backward passes.
    pub student_seconds: f64,
    pub batch_size: usize,
    /// 1 when the loss or a gradient was not finite and the optimizer step is skipped.
    pub skipped: f64,
}

impl ItemLazy for StepOutput {
    type ItemSync = StepOutput;
    fn sync(self) -> Self {
        self
    }
}

impl Adaptor<StepOutput> for StepOutput {
    fn adapt(&self) -> StepOutput {
        self.clone()
    }
}

impl<B: Backend> Distiller<B> {
    pub fn new(student: Transformer<B>, teacher: Transformer<B>, settings: StepSettings) -> Self {
        Self { student, teacher: teacher.no_grad(), settings }
    }

    /// Rollout with `rollout_models` (inference copies), then the loss on `self.student`.
    fn forward_training<R: Backend>(
        &self,
        batch: &PromptBatch,
        rollout_student: &Transformer<R>,
        rollout_teacher: &Transformer<R>,
    ) -> (Option<Tensor<B, 1>>, StepOutput) {
        let s = &self.settings;
        let max_len = s.curriculum.max_len_at(batch.step);
        let mut rng = StdRng::seed_from_u64(batch.seed);
        let started = Instant::now();
        let (examples, stats) = make_examples(
            s.objective,
            rollout_student,
            rollout_teacher,
            &batch.items,
            max_len,
            &s.rollout,
            batch.seed,
            &mut rng,
        )
        .unwrap_or_else(|e| panic!("rollout failed at step {}: {e}", batch.step));
        let rollout_seconds = started.elapsed().as_secs_f64();
        let started = Instant::now();
        let targets = match s.targets {
            Targets::Teacher { .. } => {
                batch_teacher_targets(&self.teacher, &examples, s.mask_id).map(sync)
            }
            Targets::HardLabels => None,
        };
        let teacher_seconds = started.elapsed().as_secs_f64();
        let started = Instant::now();
        let count = examples.iter().filter(|e| !e.loss_slots().is_empty()).count();
        let loss = batch_loss(
            &self.student,
            targets,
            &examples,
            s.targets,
            s.rollout.block_size,
            s.mask_id,
        );
        let output = StepOutput {
            loss: 0.0,
            examples: count,
            tokens: examples.iter().map(|e| e.tokens()).sum(),
            rollout_len: stats.mean_response_len,
            rollout_tokens_per_forward: stats.tokens_per_forward,
            max_rollout_len: max_len,
            rollout_seconds,
            teacher_seconds,
            student_seconds: started.elapsed().as_secs_f64(),
            batch_size: batch.items.len(),
            skipped: 0.0,
        };
        (loss, output)
    }
}

impl<B: AutodiffBackend> TrainStep for Distiller<B> {
    type Input = PromptBatch;
    type Output = StepOutput;

    fn step(&self, batch: PromptBatch) -> TrainOutput<StepOutput> {
        let inner = self.valid();
        let (loss, mut output) = self.forward_training(&batch, &inner.student, &inner.teacher);
        let started = Instant::now();
        let grads = match loss {
            Some(loss) => {
                let loss = inject_faults(loss, &self.settings.faults, batch.step);
                output.loss = loss.clone().into_scalar().elem::<f64>();
                let grads = if output.loss.is_finite() {
                    GradientsParams::from_grads(loss.backward(), self)
                } else {
                    GradientsParams::new()
                };
                let norm = global_norm::<B, Self>(self, &grads)
                    .map_or(0.0, |n| n.into_scalar().elem::<f64>());
                if self.settings.guard.check(batch.step, output.loss, norm) {
                    output.skipped = 1.0;
                    GradientsParams::new()
                } else {
                    grads
                }
            }
            // Every response was empty or only a stop token: nothing to learn this step.
            None => GradientsParams::new(),
        };
        output.student_seconds += started.elapsed().as_secs_f64();
        TrainOutput { grads, item: output }
    }

    /// Clips the (accumulated) gradients by their global norm, as `clip_grad_norm_` does,
    /// then takes the optimizer step, unless one of its micro-batches was not finite.
    fn optimize<B2, O>(self, optim: &mut O, lr: f64, grads: GradientsParams) -> Self
    where
        B2: AutodiffBackend,
        O: Optimizer<Self, B2>,
        Self: AutodiffModule<B2>,
    {
        if self.settings.guard.skip_update() {
            return self;
        }
        let max_norm = self.settings.max_grad_norm;
        let (grads, _norm) = clip_global_norm::<B2, Self>(&self, grads, max_norm);
        optim.step(lr, self, grads)
    }
}

impl<B: Backend> InferenceStep for Distiller<B> {
    type Input = PromptBatch;
    type Output = StepOutput;

    fn step(&self, batch: PromptBatch) -> StepOutput {
        let (loss, mut output) = self.forward_training(&batch, &self.student, &self.teacher);
        output.loss = loss.map_or(0.0, |l| l.into_scalar().elem::<f64>());
        output
    }
}

/// Test faults (see [`FaultInjection`]): a NaN loss, or NaN gradients under a finite loss
/// (`sqrt` has an infinite slope at 0: `0 · ∞` is NaN while `sqrt(0) · 0` is 0).
fn inject_faults<B: AutodiffBackend>(
    loss: Tensor<B, 1>,
    faults: &FaultInjection,
    step: usize,
) -> Tensor<B, 1> {
    let mut loss = loss;
    if faults.nan_loss_at.contains(&step) {
        loss = loss.mul_scalar(f32::NAN);
    }
    if faults.nan_grads_at.contains(&step) {
        let zero = loss.clone() - loss.clone().detach();
        loss = loss + zero.sqrt().mul_scalar(0.0);
    }
    loss
}

/// Forces a tensor's computation now (backends may run lazily), so timings are honest.
fn sync<B: Backend, const D: usize>(tensor: Tensor<B, D>) -> Tensor<B, D> {
    let _ = tensor.clone().sum().into_data();
    tensor
}
