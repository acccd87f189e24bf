//! The paper's data-efficiency claim at small scale, run as a scientist would: every
//! objective gets its own learning rate from a sweep judged on a validation split, then
//! several seeds at that rate; checkpoints are evaluated on a separate test split; the
//! report gives means with 95 % confidence intervals over seeds, and names the commit
//! whose code produced every run.

mod report;

use std::path::PathBuf;
use std::time::Instant;

use burn::backend::Autodiff;
use burn::prelude::Backend;
use opdlm_model::{load_pretrained, stop_tokens, Pretrained};
use opdlm_training::{
    latest_checkpoint, load_checkpoint_student, read_log, train, Objective, TrainBackend,
    TrainConfig,
};
use serde::{Deserialize, Serialize};

use crate::builtin::{self, held_out_items};
use crate::eval::{evaluate, DecodeMode, EvalItem, EvalSettings, ModeResult};
use crate::tasks::Split;

use super::cache::cached;
use super::{consumed_before, provenance, ExperimentError};

pub use report::Report;

/// The data-efficiency experiment's settings.
#[derive(Debug, Clone)]
pub struct DataEfficiency {
    /// Objectives to compare, in order.
    pub objectives: Vec<Objective>,
    /// Seeds of the final runs (prompt order and sampling); the sweep uses the first.
    pub seeds: Vec<u64>,
    /// Learning rates each objective's sweep tries (the final rate is `lr / 20`).
    pub learning_rates: Vec<f64>,
    /// Training steps of every run (the largest budget).
    pub steps: usize,
    /// Evaluate every this many steps (each is a checkpoint).
    pub eval_every: usize,
    /// Test problems per evaluation.
    pub test_problems: usize,
    /// Validation problems the sweep is judged on.
    pub validation_problems: usize,
    /// Threshold γ of the dynamic decoding column.
    pub threshold: f32,
    /// Runs under `runs/`; report.md, report.json, accuracy.png.
    pub out: PathBuf,
    /// Run with uncommitted code changes (the report then says so instead of naming a
    /// commit that did not produce it): for trying the experiment out, not for reports.
    pub allow_uncommitted: bool,
}

/// One evaluated checkpoint (the fields `report.json` promises).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// Training steps done.
    pub step: usize,
    /// Prompt + response tokens of every training example so far.
    pub total_tokens: f64,
    /// Response tokens of every training example so far (the paper's count).
    pub response_tokens: f64,
    /// Accuracy (fraction) under static decoding.
    pub accuracy_static: f64,
    /// Accuracy (fraction) under dynamic decoding.
    pub accuracy_dynamic: f64,
    /// Tokens per denoising step under dynamic decoding.
    pub tokens_per_step_dynamic: f64,
}

/// One run's evaluated checkpoints.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Run {
    /// The objective's name.
    pub objective: String,
    /// Seed of prompt order and sampling.
    pub seed: u64,
    /// Peak learning rate.
    pub lr: f64,
    /// Checkpoints in training order (test split for final runs, validation for the
    /// sweep, which evaluates the last checkpoint only).
    pub points: Vec<Point>,
}

/// Which run of the experiment: objective, seed and learning rate.
#[derive(Debug, Clone, Copy)]
struct RunId {
    objective: Objective,
    seed: u64,
    lr: f64,
}

impl RunId {
    fn name(&self) -> String {
        format!("{}-lr{:e}-seed{}", self.objective.name(), self.lr, self.seed)
    }
}

/// Fixed prompt file seed: seeds change the order prompts are drawn in, not the set.
const PROMPT_SEED: u64 = 0;

/// Problem seed of both held-out splits (the same problems for every run).
const PROBLEM_SEED: u64 = 0;

impl DataEfficiency {
    /// Rejects budgets and thresholds that cannot run.
    pub fn validate(&self) -> Result<(), ExperimentError> {
        let counts = [self.steps, self.eval_every, self.test_problems, self.validation_problems];
        if counts.contains(&0) || self.objectives.is_empty() || self.seeds.is_empty() {
            let message = "--steps, --eval-every, --test-problems, --validation-problems, --objectives and --seeds must not be zero or empty".into();
            return Err(ExperimentError::Settings(message));
        }
        if self.learning_rates.is_empty() || self.learning_rates.iter().any(|&lr| lr <= 0.0) {
            return Err(ExperimentError::Settings("--learning-rates must be positive".into()));
        }
        opdlm_inference::CommitRule::Dynamic { threshold: self.threshold }
            .validate()
            .map_err(|e| ExperimentError::Settings(format!("--threshold: {e}")))
    }

    /// Sweeps, trains and evaluates everything (reusing finished runs and evaluations,
    /// resuming interrupted runs), then writes the report. Returns its Markdown body.
    pub fn run<B: TrainBackend>(&self, device: &B::Device) -> Result<String, ExperimentError> {
        self.validate()?;
        let commit = provenance::experiment_commit(&self.out, self.allow_uncommitted)?;
        let started = Instant::now();
        let test = held_out_items(Split::Test, self.test_problems, PROBLEM_SEED);
        let validation = held_out_items(Split::Validation, self.validation_problems, PROBLEM_SEED);
        let teacher = load_pretrained::<B>(&crate::pretrain::builtin_teacher_dir(), device)?;
        let teacher_accuracy = teacher_ar_accuracy(&teacher, &test)?;
        let teacher_validation = teacher_ar_accuracy(&teacher, &validation)?;
        eprintln!(
            "teacher AR accuracy: test {:.1}%, validation {:.1}%",
            100.0 * teacher_accuracy,
            100.0 * teacher_validation
        );
        let mut sweep = Vec::new();
        let mut runs = Vec::new();
        for &objective in &self.objectives {
            let mut tried = Vec::new();
            for &lr in &self.learning_rates {
                let id = RunId { objective, seed: self.seeds[0], lr };
                self.train_if_needed::<B>(id, device)?;
                tried.push(self.evaluate_run::<B>(id, &teacher, &validation, true, device)?);
            }
            let chosen = best_on_validation(&tried);
            sweep.extend(tried);
            for &seed in &self.seeds {
                let id = RunId { objective, seed, lr: chosen };
                self.train_if_needed::<B>(id, device)?;
                runs.push(self.evaluate_run::<B>(id, &teacher, &test, false, device)?);
            }
        }
        let report = Report {
            commit,
            settings: self.clone(),
            teacher_accuracy,
            teacher_validation_accuracy: teacher_validation,
            sweep,
            runs,
            seconds: started.elapsed().as_secs_f64(),
        };
        report.write(&self.out)
    }

    /// The built-in run of `id` at this experiment's budget (writes nothing).
    fn run_config(&self, id: RunId) -> TrainConfig {
        let dir = self.out.join("runs").join(id.name());
        let mut config = builtin::builtin_settings(&dir, PROMPT_SEED);
        let default_decay = config.final_lr / config.lr;
        config.objective = id.objective;
        config.seed = id.seed;
        config.lr = id.lr;
        config.final_lr = id.lr * default_decay;
        config.steps = self.steps;
        config.checkpoint_every = self.eval_every;
        config.keep_checkpoints = 0;
        config
    }

    /// Trains the run unless it already finished; resumes it when interrupted.
    fn train_if_needed<B: TrainBackend>(
        &self,
        id: RunId,
        device: &B::Device,
    ) -> Result<(), ExperimentError> {
        let config = self.run_config(id);
        let dir = &config.out;
        let done = latest_checkpoint(dir);
        if dir.join("model").exists() && done >= config.epochs() {
            return Ok(());
        }
        // The prompt file is written only for a run that trains (the same set for all).
        builtin::builtin_train_config(dir, PROMPT_SEED).map_err(|e| ExperimentError::Io {
            path: dir.display().to_string(),
            message: e.to_string(),
        })?;
        let note = if done > 0 { " (resuming)" } else { "" };
        eprintln!("\n== {}: training {} steps{note} ==", id.name(), config.steps);
        train::<Autodiff<B>>(&config, device, done > 0)
            .map_err(|source| ExperimentError::Train { run: id.name(), source })?;
        Ok(())
    }

    /// The run's evaluated checkpoints on `items` (every checkpoint, or the last one only
    /// with `last_only`), read from the run's cache when it holds the same evaluation.
    fn evaluate_run<B: Backend>(
        &self,
        id: RunId,
        teacher: &Pretrained<B>,
        items: &[EvalItem],
        last_only: bool,
        device: &B::Device,
    ) -> Result<Run, ExperimentError> {
        let config = self.run_config(id);
        let split = if last_only { "validation" } else { "test" };
        let cache = config.out.join(format!("{split}-points.json"));
        let key = format!("{} problems, γ {}", items.len(), self.threshold);
        cached(&cache, &key, || {
            let stops = stop_tokens(&teacher.model.config().eos_token_ids, &teacher.tokenizer);
            let settings = EvalSettings {
                block_size: config.block_size,
                max_new_tokens: builtin::MAX_NEW_TOKENS,
                batch_size: 50,
                modes: vec![DecodeMode::STATIC, DecodeMode::dynamic(self.threshold)],
                weights: Default::default(),
            };
            let log = read_log(&config.out.join("metrics.jsonl"));
            let first = if last_only { config.epochs() } else { 1 };
            let mut points = Vec::new();
            for epoch in first..=config.epochs() {
                let step = (epoch * config.checkpoint_every).min(config.steps);
                let student = load_checkpoint_student::<B>(&config.out, epoch, device)
                    .map_err(|source| ExperimentError::Train { run: id.name(), source })?;
                let results =
                    evaluate(&student, &teacher.tokenizer, None, items, &settings, &stops)?;
                let point = checkpoint_point(step, &log, &results);
                eprintln!(
                    "{} step {step:>4} ({:>7.0} response tokens) on {split}: static {:.1}%, dynamic {:.1}% ({:.2} tokens/step)",
                    id.name(),
                    point.response_tokens,
                    100.0 * point.accuracy_static,
                    100.0 * point.accuracy_dynamic,
                    point.tokens_per_step_dynamic
                );
                points.push(point);
            }
            Ok(Run { objective: id.objective.name().into(), seed: id.seed, lr: id.lr, points })
        })
    }
}

/// The sweep's choice: the best static accuracy on validation at the end of the budget,
/// ties broken by dynamic accuracy, then by the smaller rate.
fn best_on_validation(tried: &[Run]) -> f64 {
    let last =
        |run: &Run| run.points.last().cloned().expect("the sweep evaluates the last checkpoint");
    let best = tried
        .iter()
        .max_by(|a, b| {
            let (pa, pb) = (last(a), last(b));
            (pa.accuracy_static, pa.accuracy_dynamic, -a.lr)
                .partial_cmp(&(pb.accuracy_static, pb.accuracy_dynamic, -b.lr))
                .expect("accuracies are finite")
        })
        .expect("at least one learning rate");
    best.lr
}

/// The teacher's greedy AR accuracy on `items`, the experiment's reference.
fn teacher_ar_accuracy<B: Backend>(
    teacher: &Pretrained<B>,
    items: &[EvalItem],
) -> Result<f64, ExperimentError> {
    let stops = stop_tokens(&teacher.model.config().eos_token_ids, &teacher.tokenizer);
    let settings = EvalSettings {
        block_size: 1,
        max_new_tokens: builtin::MAX_NEW_TOKENS,
        batch_size: 50,
        modes: vec![DecodeMode::AR],
        weights: Default::default(),
    };
    Ok(evaluate(&teacher.model, &teacher.tokenizer, None, items, &settings, &stops)?[0].accuracy)
}

/// A checkpoint's point: the tokens consumed before `step` (from the run's metrics log)
/// and its static and dynamic results (in that order).
fn checkpoint_point(step: usize, log: &[serde_json::Value], results: &[ModeResult]) -> Point {
    let consumed = |key: &str| consumed_before(log, step, key);
    Point {
        step,
        total_tokens: consumed("tokens_total"),
        response_tokens: consumed("response_tokens_total"),
        accuracy_static: results[0].accuracy,
        accuracy_dynamic: results[1].accuracy,
        tokens_per_step_dynamic: results[1].tokens_per_step,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tried(lr: f64, accuracy_static: f64, accuracy_dynamic: f64) -> Run {
        let point = Point {
            step: 1,
            total_tokens: 0.0,
            response_tokens: 0.0,
            accuracy_static,
            accuracy_dynamic,
            tokens_per_step_dynamic: 1.0,
        };
        Run { objective: "opdlm".into(), seed: 0, lr, points: vec![point] }
    }

    #[test]
    fn the_sweep_keeps_the_best_static_accuracy_then_dynamic_then_the_smaller_rate() {
        let runs = [tried(1e-3, 0.5, 0.4), tried(2e-3, 0.7, 0.6), tried(4e-3, 0.6, 0.9)];
        assert_eq!(best_on_validation(&runs), 2e-3);
        let ties = [tried(1e-3, 0.7, 0.5), tried(2e-3, 0.7, 0.6), tried(4e-3, 0.7, 0.6)];
        assert_eq!(best_on_validation(&ties), 2e-3);
    }
}
