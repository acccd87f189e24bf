//! A real chat model converted end to end (by default SmolLM2-135M-Instruct): OPDLM on
//! the project's chat prompts ([`crate::chat_prompts`], train split), then the teacher
//! (greedy AR), the unconverted model decoded with the block sampler ("before") and the
//! converted student, all on the held-out test prompts. Every checkpoint is evaluated too
//! (dynamic decoding at the rollout threshold, on `curve_prompts` validation prompts),
//! which gives the curves of agreement and tokens per forward against training tokens.
//! The curves are what a budget is chosen from, so they never look at the test prompts.
//!
//! Like the data-efficiency experiment it runs from one commit, and re-running the same
//! command reuses what is done: a finished training run and every cached evaluation; an
//! interrupted run resumes from its last checkpoint.

mod baseline;
mod figures;
mod report;

use std::path::PathBuf;
use std::time::Instant;

use burn::backend::Autodiff;
use burn::prelude::Backend;
use opdlm_model::{load_pretrained, stop_tokens, ChatMessage, Pretrained, Transformer};
use opdlm_training::{
    latest_checkpoint, load_checkpoint_student, read_log, train, Objective, StudentPasses,
    TrainBackend, TrainConfig,
};

use super::cache::cached;
use super::{provenance, ExperimentError};
use crate::chat_prompts::{chat_prompts, write_chat_prompts};
use crate::eval::{evaluate, AnswerCheck, DecodeMode, EvalItem, EvalSettings};
use crate::tasks::Split;

pub use baseline::{Baseline, Paired, PairedMode};
pub use figures::{Figures, Reference};
pub use report::{CurvePoint, Report};

/// The conversion experiment's settings. [`Conversion::default`] is its default budget,
/// sized from pilot runs to finish within two hours on two idle cores (the report states
/// the time it took).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Conversion {
    /// The chat model to convert (GGUF or Hugging Face directory); also the teacher.
    pub teacher: PathBuf,
    /// Training objective (OPDLM; `sft` is the baseline of the teacher's own responses).
    pub objective: Objective,
    /// Training steps.
    pub steps: usize,
    /// Prompts per step.
    pub batch_size: usize,
    /// Peak learning rate (cosine decay to a tenth of it).
    pub lr: f64,
    /// Distill on the teacher's top-k tokens (None: the full vocabulary).
    pub top_k_logits: Option<usize>,
    /// Block size of the student.
    pub block_size: usize,
    /// Rollout threshold γ; the curves decode with it too.
    pub threshold: f32,
    /// Longest rollout, and the generation limit of every evaluation.
    pub max_tokens: usize,
    /// Longest rollout at the first step (the curriculum's start, paper §4.3).
    pub rollout_len_min: usize,
    /// Steps over which the longest rollout grows to `max_tokens`.
    pub rollout_len_ramp: usize,
    /// Checkpoint (and curve point) every this many steps.
    pub checkpoint_every: usize,
    /// Seed of the prompt order and the rollouts.
    pub seed: u64,
    /// Training prompts generated (train split).
    pub train_prompts: usize,
    /// Held-out prompts of the final evaluation (test split).
    pub test_prompts: usize,
    /// Validation prompts decoded at every checkpoint (the curves).
    pub curve_prompts: usize,
    /// The first this many test prompts are decoded one at a time for tok/s at batch 1.
    pub batch1_prompts: usize,
    /// Prompts decoded together in the evaluations.
    pub eval_batch: usize,
    /// Thresholds γ of the student's dynamic decoding rows.
    pub thresholds: Vec<f32>,
    /// How the student's training pass over a batch is split (one pass on GPUs).
    pub student_passes: StudentPasses,
    /// Output directory: prompts/, run/, eval/, commit.txt, report.md, report.json, PNGs.
    pub out: PathBuf,
    /// Run with uncommitted code changes (the report then says so): for trying it out.
    pub allow_uncommitted: bool,
    /// Another finished conversion (same commit, same test prompts; e.g. the sft objective
    /// at the same budget) whose student the report compares with, prompt by prompt.
    pub baseline: Option<PathBuf>,
}

impl Default for Conversion {
    /// The budget, from measurements on the 2-core CPU. Pilots (58b0272): a step of 8
    /// prompts at 64-token rollouts cost about 65 s; the learning rate lies between the
    /// pilots' 3e-5 (no progress in 16 steps) and 2e-4 (collapsed to repeated newlines when
    /// rollouts grew to 128 tokens within 3 steps); it is not swept. The same ~29k training
    /// tokens gave 24.5 % first-16 agreement as 100 steps of 4 prompts (33.7 min on idle
    /// cores, evaluations included) against 6.0 % as 50 steps of 8
    /// (`reports/smollm2-conversion/steps-vs-batch/`): the budget is short of optimizer
    /// steps, not of prompts per step.
    fn default() -> Self {
        Self {
            teacher: PathBuf::from(".cache/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
            objective: Objective::Opdlm,
            steps: 100,
            batch_size: 4,
            lr: 1e-4,
            top_k_logits: Some(16),
            block_size: opdlm_model::DEFAULT_BLOCK_SIZE,
            threshold: 0.9,
            max_tokens: 64,
            rollout_len_min: 16,
            rollout_len_ramp: 50,
            checkpoint_every: 25,
            seed: 0,
            train_prompts: 2000,
            test_prompts: 200,
            curve_prompts: 32,
            batch1_prompts: 8,
            eval_batch: 25,
            thresholds: vec![0.9, 0.7, 0.5],
            student_passes: StudentPasses::PerPromptLength,
            out: PathBuf::from("runs/smollm2-conversion"),
            allow_uncommitted: false,
            baseline: None,
        }
    }
}

/// Prompt generator seed: the same prompt sets whatever the run's seed.
const PROMPT_SEED: u64 = 0;

impl Conversion {
    /// Rejects budgets that cannot run, before any model is loaded.
    pub fn validate(&self) -> Result<(), ExperimentError> {
        let counts = [self.train_prompts, self.test_prompts, self.curve_prompts];
        if counts.contains(&0) || self.batch1_prompts == 0 || self.eval_batch == 0 {
            let message = "--train-prompts, --test-prompts, --curve-prompts, --batch1-prompts and --eval-batch must be at least 1";
            return Err(ExperimentError::Settings(message.into()));
        }
        if self.batch1_prompts > self.test_prompts {
            let message = format!(
                "--batch1-prompts ({}) are taken from the {} test prompts",
                self.batch1_prompts, self.test_prompts
            );
            return Err(ExperimentError::Settings(message));
        }
        if self.baseline.as_ref().is_some_and(|dir| same_dir(dir, &self.out)) {
            let message = "--baseline names this run's own --out: give another run's directory";
            return Err(ExperimentError::Settings(message.into()));
        }
        for mode in self.student_modes() {
            let rule = mode.sampler.rule(mode.threshold);
            rule.validate().map_err(|e| ExperimentError::Settings(format!("--thresholds: {e}")))?;
        }
        let mut config = self.train_config();
        config.teacher = "teacher".into(); // checked when loaded, with its own error
        config.validate().map_err(|e| ExperimentError::Settings(e.to_string()))
    }

    /// The training run: the chat template on, short warmup, the rollout-length
    /// curriculum, every checkpoint kept.
    pub fn train_config(&self) -> TrainConfig {
        TrainConfig {
            teacher: self.teacher.clone(),
            prompts: self.out.join("prompts").join("train.jsonl"),
            out: self.out.join("run"),
            objective: self.objective,
            chat: true,
            block_size: self.block_size,
            threshold: self.threshold,
            top_k_logits: self.top_k_logits,
            lr: self.lr,
            final_lr: self.lr / 10.0,
            warmup: (self.steps / 20).max(1),
            batch_size: self.batch_size,
            rollout_len_min: self.rollout_len_min.min(self.max_tokens),
            rollout_len_max: self.max_tokens,
            rollout_len_ramp: self.rollout_len_ramp,
            steps: self.steps,
            checkpoint_every: self.checkpoint_every,
            keep_checkpoints: 0,
            seed: self.seed,
            student_passes: self.student_passes,
            ..TrainConfig::default()
        }
    }

    /// Static, then dynamic at every threshold: the student's rows.
    fn student_modes(&self) -> Vec<DecodeMode> {
        let dynamic = self.thresholds.iter().map(|&t| DecodeMode::dynamic(t));
        std::iter::once(DecodeMode::STATIC).chain(dynamic).collect()
    }

    /// Converts, evaluates and reports (reusing whatever is done). Returns the report's
    /// Markdown.
    pub fn run<B: TrainBackend>(&self, device: &B::Device) -> Result<String, ExperimentError> {
        self.validate()?;
        let commit = provenance::experiment_commit(&self.out, self.allow_uncommitted)?;
        let started = Instant::now();
        let config = self.train_config();
        let teacher = load_pretrained::<B>(&self.teacher, device)?;
        let (messages, items) = self.items(&teacher, Split::Test, self.test_prompts)?;
        let (_, curve_items) = self.items(&teacher, Split::Validation, self.curve_prompts)?;
        // Read (and checked) before training, so that a wrong --baseline fails at once.
        let read_baseline = |dir: &std::path::Path| Baseline::read(dir, &commit, &self.out);
        let baseline = self.baseline.as_deref().map(read_baseline).transpose()?;
        let evaluator = Evaluator::new(self, &teacher, Split::Test, &items);
        let reference = evaluator.teacher_reference()?;
        let curves = Evaluator::new(self, &teacher, Split::Validation, &curve_items);
        let curve_reference = curves.teacher_reference()?;
        // The unconverted model: `evaluate` decodes an AR model with shifted logits.
        let before_model = &teacher.model;
        let modes = [DecodeMode::STATIC, DecodeMode::dynamic(self.threshold)];
        let before = evaluator.figures("before", before_model, &modes, &reference)?;
        self.train_if_needed::<B>(&config, device)?;
        let log = read_log(&config.out.join("metrics.jsonl"));
        let mut curve =
            vec![curves.curve_point("before", before_model, 0, &log, &curve_reference)?];
        for epoch in 1..=config.epochs() {
            let step = (epoch * config.checkpoint_every).min(config.steps);
            let student = load_checkpoint_student::<B>(&config.out, epoch, device)
                .map_err(|source| ExperimentError::Train { run: "conversion".into(), source })?;
            let name = format!("checkpoint-{epoch}");
            curve.push(curves.curve_point(&name, &student, step, &log, &curve_reference)?);
        }
        let student = load_pretrained::<B>(&config.out.join("model"), device)?.model;
        let student_figures =
            evaluator.figures("student", &student, &self.student_modes(), &reference)?;
        let paired = baseline.map(|b| b.compare(&student_figures));
        let report = Report {
            commit,
            settings: self.clone(),
            training_tokens: curve.last().map_or(0.0, |p| p.training_tokens),
            response_tokens: curve.last().map_or(0.0, |p| p.response_tokens),
            training_seconds: log_seconds(&log),
            teacher: reference.figures.clone(),
            before,
            student: student_figures,
            curve,
            baseline: paired,
            sample_prompts: messages.into_iter().take(3).collect(),
            seconds: started.elapsed().as_secs_f64(),
        };
        report.write(&self.out)
    }

    /// `count` held-out prompts of `split` (user messages, also written to
    /// `prompts/<split>.jsonl`) and their evaluation items, rendered by the chat template;
    /// arithmetic is graded by its last number, the rest only by agreement.
    fn items<B: Backend>(
        &self,
        teacher: &Pretrained<B>,
        split: Split,
        count: usize,
    ) -> Result<(Vec<String>, Vec<EvalItem>), ExperimentError> {
        let prompts = chat_prompts(split, count, PROMPT_SEED);
        let path = self.out.join("prompts").join(format!("{}.jsonl", split.name()));
        write_chat_prompts(&path, &prompts).map_err(|e| ExperimentError::io(&path, e))?;
        let render = |message: &str| {
            let turn = [ChatMessage::user(message.to_string())];
            let shown = self.teacher.display();
            teacher
                .tokenizer
                .render_chat(&turn, true)
                .map_err(|e| ExperimentError::Settings(format!("{shown}: {e}")))
        };
        let items = prompts
            .iter()
            .map(|p| {
                let (answer, check) = match &p.answer {
                    Some(answer) => (answer.clone(), AnswerCheck::LastNumber),
                    None => (String::new(), AnswerCheck::Ungraded),
                };
                Ok(EvalItem { prompt: render(&p.prompt)?, answer, check })
            })
            .collect::<Result<_, ExperimentError>>()?;
        Ok((prompts.into_iter().map(|p| p.prompt).collect(), items))
    }

    /// Trains unless the run finished; resumes an interrupted one. The training prompts
    /// are written first (the same set whatever the seed).
    fn train_if_needed<B: TrainBackend>(
        &self,
        config: &TrainConfig,
        device: &B::Device,
    ) -> Result<(), ExperimentError> {
        let done = latest_checkpoint(&config.out);
        if config.out.join("model").exists() && done >= config.epochs() {
            return Ok(());
        }
        let prompts = chat_prompts(Split::Train, self.train_prompts, PROMPT_SEED);
        write_chat_prompts(&config.prompts, &prompts)
            .map_err(|e| ExperimentError::io(&config.prompts, e))?;
        let note = if done > 0 { " (resuming)" } else { "" };
        eprintln!("\n== converting {}: {} steps{note} ==", self.teacher.display(), config.steps);
        train::<Autodiff<B>>(config, device, done > 0)
            .map_err(|source| ExperimentError::Train { run: "conversion".into(), source })?;
        Ok(())
    }
}

/// Whether two paths name one directory (as given, or once resolved where both exist).
fn same_dir(a: &std::path::Path, b: &std::path::Path) -> bool {
    a == b || matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
}

/// Seconds the training steps took (rollout, teacher and student phases), from the log.
fn log_seconds(log: &[serde_json::Value]) -> f64 {
    let phases = ["rollout_seconds", "teacher_seconds", "student_seconds"];
    log.iter().map(|line| phases.iter().filter_map(|k| line[*k].as_f64()).sum::<f64>()).sum()
}

/// The evaluations of one experiment on one split's items, the same teacher scoring every
/// output. Results are cached under `out/eval/` (test) or `out/eval/validation/`.
struct Evaluator<'a, B: Backend> {
    conversion: &'a Conversion,
    teacher: &'a Pretrained<B>,
    split: Split,
    items: &'a [EvalItem],
}

impl<'a, B: Backend> Evaluator<'a, B> {
    fn new(
        conversion: &'a Conversion,
        teacher: &'a Pretrained<B>,
        split: Split,
        items: &'a [EvalItem],
    ) -> Self {
        Self { conversion, teacher, split, items }
    }

    /// Where the evaluation `name` of this split is cached.
    fn cache_file(&self, name: &str) -> PathBuf {
        let eval = self.conversion.out.join("eval");
        match self.split {
            Split::Test => eval.join(format!("{name}.json")),
            split => eval.join(split.name()).join(format!("{name}.json")),
        }
    }

    /// Speed one prompt at a time is a figure of the report's (test) rows only.
    fn measures_batch1(&self) -> bool {
        self.split == Split::Test
    }

    fn stops(&self) -> Vec<u32> {
        stop_tokens(&self.teacher.model.config().eos_token_ids, &self.teacher.tokenizer)
    }

    fn settings(&self, modes: &[DecodeMode], batch_size: usize) -> EvalSettings {
        EvalSettings {
            block_size: self.conversion.block_size,
            max_new_tokens: self.conversion.max_tokens,
            batch_size,
            modes: modes.to_vec(),
            weights: Default::default(),
        }
    }

    fn cache_key(&self, items: usize, modes: &[DecodeMode]) -> String {
        let c = self.conversion;
        let labels: Vec<String> = modes.iter().map(|m| m.label()).collect();
        format!(
            "{items} prompts, {} at batch 1, batch {}, B {}, {} tokens, {}",
            c.batch1_prompts,
            c.eval_batch,
            c.block_size,
            c.max_tokens,
            labels.join("/")
        )
    }

    /// The teacher's greedy AR responses (every other row's reference) and figures.
    fn teacher_reference(&self) -> Result<Reference, ExperimentError> {
        let path = self.cache_file("teacher");
        let key = self.cache_key(self.items.len(), &[DecodeMode::AR]);
        cached(&path, &key, || {
            let (n, split) = (self.items.len(), self.split.name());
            eprintln!("teacher: greedy AR on {n} {split} prompts");
            let batch1 = self.measures_batch1();
            let [batched, batch1] = self.decode(&self.teacher.model, &[DecodeMode::AR], batch1)?;
            let outputs = batched[0].outputs.clone();
            let figures = Figures::of(&batched[0], batch1.first(), &outputs);
            Ok(Reference { outputs, figures })
        })
    }

    /// Figures of `model` under each mode on every test item, cached as `eval/<name>.json`.
    fn figures(
        &self,
        name: &str,
        model: &Transformer<B>,
        modes: &[DecodeMode],
        reference: &Reference,
    ) -> Result<Vec<(String, Figures)>, ExperimentError> {
        let path = self.cache_file(name);
        cached(&path, &self.cache_key(self.items.len(), modes), || {
            let (n, split) = (self.items.len(), self.split.name());
            eprintln!("{name}: {} modes on {n} {split} prompts", modes.len());
            let [batched, batch1] = self.decode(model, modes, true)?;
            Ok(modes
                .iter()
                .zip(&batched)
                .zip(&batch1)
                .map(|((mode, b), one)| {
                    (figures::mode_key(*mode), Figures::of(b, Some(one), &reference.outputs))
                })
                .collect())
        })
    }

    /// One point of the curves: `model` at the rollout threshold on every item, after
    /// `step` steps.
    fn curve_point(
        &self,
        name: &str,
        model: &Transformer<B>,
        step: usize,
        log: &[serde_json::Value],
        reference: &Reference,
    ) -> Result<CurvePoint, ExperimentError> {
        let mode = [DecodeMode::dynamic(self.conversion.threshold)];
        let path = self.cache_file(&format!("curve-{name}"));
        let figures = cached(&path, &self.cache_key(self.items.len(), &mode), || {
            let [batched, _] = self.decode(model, &mode, false)?;
            Ok(Figures::of(&batched[0], None, &reference.outputs))
        })?;
        Ok(CurvePoint::new(step, log, figures))
    }

    /// Every mode over all items at the evaluation batch (scored by the teacher), and,
    /// with `batch1`, over the first `batch1_prompts` items one at a time (speed only).
    fn decode(
        &self,
        model: &Transformer<B>,
        modes: &[DecodeMode],
        batch1: bool,
    ) -> Result<[Vec<crate::eval::ModeResult>; 2], ExperimentError> {
        let tokenizer = &self.teacher.tokenizer;
        let stops = self.stops();
        let settings = self.settings(modes, self.conversion.eval_batch);
        let teacher = Some(&self.teacher.model);
        let batched = evaluate(model, tokenizer, teacher, self.items, &settings, &stops)?;
        let single = match batch1 {
            true => {
                let items = &self.items[..self.conversion.batch1_prompts];
                evaluate(model, tokenizer, None, items, &self.settings(modes, 1), &stops)?
            }
            false => Vec::new(),
        };
        Ok([batched, single])
    }
}
