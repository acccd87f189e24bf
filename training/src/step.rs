//! The training step: `Distiller` wraps the student (trained) and the frozen teacher, and
//! implements burn-train's `TrainStep` (rollout → state selection → teacher → student →
//! loss → backward) and `InferenceStep` through one `forward_training`.

use std::sync::Arc;
use std::time::Instant;

use burn::module::{AutodiffModule, ModuleVisitor, Param};
use burn::optim::{GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;
use burn::train::metric::{Adaptor, ItemLazy};
use burn::train::{InferenceStep, TrainOutput, TrainStep};
use opdlm_model::Transformer;

use crate::batch_totals::BatchTotals;
use crate::clip::{clip_global_norm, global_norm};
use crate::config::TrainConfig;
use crate::curriculum::Curriculum;
use crate::data::PromptBatch;
use crate::faults::FaultInjection;
use crate::guard::NumericGuard;
use crate::loss::Loss;
use crate::nodes::NodeGroup;
use crate::rollout::{make_examples, RolloutError, RolloutSettings};

/// What a step needs besides the two models.
#[derive(Debug, Clone)]
pub struct StepSettings {
    /// The objective with its state rule and targets.
    pub loss: Loss,
    /// How responses are sampled.
    pub rollout: RolloutSettings,
    /// The maximum rollout length per step.
    pub curriculum: Curriculum,
    /// The student's mask token.
    pub mask_id: u32,
    /// Global gradient-norm clip.
    pub max_grad_norm: f64,
    /// Skips steps with a non-finite loss or gradient, and stops the run on a failed
    /// rollout; shared by all copies of the model.
    pub guard: Arc<NumericGuard>,
    /// Test faults (empty in real runs).
    pub faults: FaultInjection,
    /// The global batch's loss denominator, summed over the devices of a data-parallel
    /// run (shared by all copies of the model).
    pub totals: Arc<BatchTotals>,
    /// The other processes of a multi-node run (`None`: this process is the whole run).
    pub nodes: Option<Arc<NodeGroup>>,
    /// Every share runs a backward pass, even one with nothing to learn or a non-finite
    /// loss: under DDP the gradients are all-reduced during the backward pass, which
    /// waits for every device (a NaN then reaches every device, which all skip the step).
    pub every_share_backwards: bool,
}

impl StepSettings {
    /// The settings of `config`'s run for a student whose mask token is `mask_id`.
    pub fn from_config(
        config: &TrainConfig,
        mask_id: u32,
        stop_tokens: Vec<u32>,
        guard: Arc<NumericGuard>,
    ) -> Self {
        Self {
            loss: config.loss(),
            rollout: RolloutSettings {
                block_size: config.block_size,
                steps_per_block: config.block_size,
                threshold: config.threshold,
                temperature: config.temperature,
                stop_tokens,
                teacher_max_len: config.rollout_len_max,
            },
            curriculum: config.curriculum(),
            mask_id,
            max_grad_norm: config.max_grad_norm,
            guard,
            faults: config.faults.clone(),
            totals: Arc::new(BatchTotals::new(1)),
            nodes: None,
            every_share_backwards: false,
        }
    }
}

/// The trained student and the frozen teacher, as one burn module: the Learner optimizes
/// and checkpoints the student only.
#[derive(Module, Debug)]
pub struct Distiller<B: Backend> {
    /// The block-diffusion model being trained.
    pub student: Transformer<B>,
    /// Frozen: skipped by the optimizer and the checkpointer; `no_grad` so its forward
    /// passes build no autodiff graph.
    #[module(skip)]
    pub teacher: Transformer<B>,
    /// The step's settings (not saved: `config.json` holds them).
    #[module(skip)]
    pub settings: StepSettings,
}

/// Numbers one step reports (plain floats, logged by `crate::metrics`).
#[derive(Debug, Clone, Default)]
pub struct StepOutput {
    /// The batch loss (0 when no example carried loss).
    pub loss: f64,
    /// Examples that carried loss.
    pub examples: usize,
    /// Tokens consumed (prompt + response of every example).
    pub tokens: usize,
    /// Response tokens of the step's examples (stop tokens included): the paper's count
    /// of training tokens.
    pub response_tokens: usize,
    /// Mean response length.
    pub rollout_len: f64,
    /// Rollout tokens per forward pass (the student's parallelism).
    pub rollout_tokens_per_forward: f64,
    /// Forward passes of the rollouts, summed over rows.
    pub rollout_forwards: usize,
    /// The curriculum's length limit at this step.
    pub max_rollout_len: usize,
    /// Time spent generating responses.
    pub rollout_seconds: f64,
    /// Time of the teacher's pass.
    pub teacher_seconds: f64,
    /// Student forward and backward passes.
    pub student_seconds: f64,
    /// Prompts in the batch.
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
    /// Pairs `student` with a frozen copy of itself as the teacher (the conversion's
    /// starting point: same weights, causal attention).
    pub fn new(student: Transformer<B>, settings: StepSettings) -> Self {
        let teacher = student.clone().no_grad();
        Self { student, teacher, settings }
    }

    /// The run of `config`: the trainer and the bench build their step through this.
    pub fn from_config(
        config: &TrainConfig,
        student: Transformer<B>,
        stop_tokens: Vec<u32>,
        guard: Arc<NumericGuard>,
    ) -> Self {
        let mask_id =
            student.config().diffusion.as_ref().expect("a converted student").mask_token_id;
        Self::new(student, StepSettings::from_config(config, mask_id, stop_tokens, guard))
    }

    /// The frozen teacher on the student's device. burn-train's multi-device strategy
    /// forks the student (a parameter) to each worker's device, but not the teacher (a
    /// skipped field): a worker on another device copies it there for its step.
    fn teacher_beside_student(&self) -> Transformer<B> {
        let device = self.student.devices()[0].clone();
        if self.teacher.devices().first() == Some(&device) {
            self.teacher.clone()
        } else {
            self.teacher.clone().to_device(&device)
        }
    }

    /// Rollout with `rollout_student`/`rollout_teacher` (inference copies), then the
    /// loss on `self.student` against `teacher`'s targets.
    fn forward_training<R: Backend>(
        &self,
        batch: &PromptBatch,
        teacher: &Transformer<B>,
        (rollout_student, rollout_teacher): (&Transformer<R>, &Transformer<R>),
    ) -> Result<(Option<Tensor<B, 1>>, StepOutput), RolloutError> {
        let s = &self.settings;
        let max_len = s.curriculum.max_len_at(batch.step);
        let started = Instant::now();
        let models = (rollout_student, rollout_teacher);
        let made = make_examples(&s.loss, &s.rollout, models, batch, max_len);
        // Every share posts, even one whose rollout failed, or the others would wait.
        let local = made.as_ref().map_or(0.0, |(examples, _)| s.loss.denominator(examples));
        let denominator = s.totals.sum(batch.step, local);
        let denominator = match &s.nodes {
            Some(group) => {
                let device = rollout_student.devices()[0].clone();
                let what = format!("step {}'s loss denominator", batch.step);
                group.sum::<R>(&what, &[denominator], &device)[0]
            }
            None => denominator,
        };
        let (examples, stats) = made?;
        let rollout_seconds = started.elapsed().as_secs_f64();
        let started = Instant::now();
        let targets = s.loss.teacher_targets(teacher, &examples, s.mask_id);
        if let Some(targets) = &targets {
            sync(targets.log_probs().clone());
        }
        let teacher_seconds = started.elapsed().as_secs_f64();
        let started = Instant::now();
        let slots = (s.rollout.block_size, s.mask_id);
        let loss = s.loss.batch_loss(&self.student, targets, &examples, denominator, slots);
        let output = StepOutput {
            loss: 0.0,
            examples: loss.as_ref().map_or(0, |l| l.examples),
            tokens: examples.iter().map(|e| e.tokens()).sum(),
            response_tokens: examples.iter().map(|e| e.response_len).sum(),
            rollout_len: stats.mean_response_len,
            rollout_tokens_per_forward: stats.tokens_per_forward,
            rollout_forwards: stats.forwards,
            max_rollout_len: max_len,
            rollout_seconds,
            teacher_seconds,
            student_seconds: started.elapsed().as_secs_f64(),
            batch_size: batch.items.len(),
            skipped: 0.0,
        };
        Ok((loss.map(|l| l.value), output))
    }
}

impl<B: AutodiffBackend> Distiller<B> {
    /// This share's gradients and their norm (none when the loss is not finite); records
    /// the loss in `output`.
    fn local_gradients(
        &self,
        loss: Tensor<B, 1>,
        output: &mut StepOutput,
        step: usize,
    ) -> (GradientsParams, f64) {
        let loss = inject_faults(loss, &self.settings.faults, step);
        output.loss = loss.clone().into_scalar().elem::<f64>();
        let grads = if output.loss.is_finite() || self.settings.every_share_backwards {
            GradientsParams::from_grads(loss.backward(), self)
        } else {
            GradientsParams::new()
        };
        let norm =
            global_norm::<B, Self>(self, &grads).map_or(0.0, |n| n.into_scalar().elem::<f64>());
        (grads, norm)
    }

    /// A loss of 0 through every parameter of the student: the backward pass of a share
    /// with nothing to learn, which DDP's all-reduce still waits for.
    fn zero_loss(&self) -> Tensor<B, 1> {
        struct SumOfParameters<B: Backend>(Option<Tensor<B, 1>>);
        impl<B: Backend> ModuleVisitor<B> for SumOfParameters<B> {
            fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
                let sum = param.val().sum();
                self.0 = Some(self.0.take().map_or(sum.clone(), |total| total + sum));
            }
        }
        let mut total = SumOfParameters(None);
        self.student.visit(&mut total);
        let device = self.student.devices().into_iter().next().unwrap_or_default();
        total.0.map_or_else(|| Tensor::zeros([1], &device), |sum| sum * 0.0)
    }

    /// `grads`, or none when the guard judges the step bad (its update is skipped).
    fn unless_bad(
        &self,
        grads: GradientsParams,
        norm: f64,
        output: &mut StepOutput,
        step: usize,
    ) -> GradientsParams {
        if self.settings.guard.check(step, output.loss, norm) {
            output.skipped = 1.0;
            GradientsParams::new()
        } else {
            grads
        }
    }

    /// A multi-node step: sums the loss, the squared gradient norm and the step's counts
    /// over the nodes (so every node judges the same global numbers, and rank 0 logs the
    /// whole batch's), then, unless that global step is bad, the gradients themselves.
    fn sum_over_nodes(
        &self,
        group: &NodeGroup,
        local: Option<(GradientsParams, f64)>,
        output: &mut StepOutput,
        step: usize,
    ) -> GradientsParams {
        let (grads, norm) = local.unwrap_or_else(|| (GradientsParams::new(), 0.0));
        let o = &*output;
        let rows = o.batch_size as f64;
        let figures = [
            o.loss,
            norm * norm,
            o.tokens as f64,
            o.response_tokens as f64,
            o.rollout_forwards as f64,
            rows,
            o.rollout_len * rows,
        ];
        let device = self.student.devices()[0].clone();
        let what = format!("step {step}'s loss and counts");
        let [loss, norm_sq, tokens, response, forwards, rows, generated] =
            group.sum::<B::InnerBackend>(&what, &figures, &device)[..]
        else {
            unreachable!("the sum has as many figures as were sent")
        };
        output.loss = loss;
        (output.tokens, output.response_tokens) = (tokens as usize, response as usize);
        (output.rollout_forwards, output.batch_size) = (forwards as usize, rows as usize);
        (output.rollout_len, output.rollout_tokens_per_forward) =
            rollout_means(generated, rows, forwards);
        let grads = self.unless_bad(grads, norm_sq.sqrt(), output, step);
        if output.skipped > 0.0 {
            return grads;
        }
        group.sum_gradients::<B, Self>(step, self, grads)
    }
}

impl<B: AutodiffBackend> TrainStep for Distiller<B> {
    type Input = PromptBatch;
    type Output = StepOutput;

    fn step(&self, batch: PromptBatch) -> TrainOutput<StepOutput> {
        let teacher = self.teacher_beside_student();
        let rollout_models = (&self.student.valid(), &teacher.valid());
        let (loss, mut output) = match self.forward_training(&batch, &teacher, rollout_models) {
            Ok(result) => result,
            Err(error) => {
                // The Learner's step cannot fail: stop the run and report it afterwards.
                // A node of a multi-node run still takes part in the step's sums below.
                self.settings.guard.fail_rollout(batch.step, error);
                (None, StepOutput { batch_size: batch.items.len(), ..Default::default() })
            }
        };
        let started = Instant::now();
        let loss = loss.or_else(|| self.settings.every_share_backwards.then(|| self.zero_loss()));
        let local = loss.map(|loss| self.local_gradients(loss, &mut output, batch.step));
        let grads = match (&self.settings.nodes, local) {
            (Some(group), local) => self.sum_over_nodes(group, local, &mut output, batch.step),
            (None, Some((grads, norm))) => self.unless_bad(grads, norm, &mut output, batch.step),
            // Every response was empty or only a stop token: nothing to learn this step.
            (None, None) => GradientsParams::new(),
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
        match self.forward_training(&batch, &self.teacher, (&self.student, &self.teacher)) {
            Ok((loss, mut output)) => {
                output.loss = loss.map_or(0.0, |l| l.into_scalar().elem::<f64>());
                output
            }
            Err(error) => {
                self.settings.guard.fail_rollout(batch.step, error);
                StepOutput::default()
            }
        }
    }
}

/// Mean response length and rollout tokens per forward from a step's sums over its
/// shares (generated tokens, rows, forward passes); 0 where nothing was generated.
pub(crate) fn rollout_means(generated: f64, rows: f64, forwards: f64) -> (f64, f64) {
    let ratio = |num: f64, den: f64| if den > 0.0 { num / den } else { 0.0 };
    (ratio(generated, rows), ratio(generated, forwards))
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
