//! The paper's data-efficiency claim at small scale: accuracy of each objective's student
//! at increasing training-token budgets, the tokens each needs to reach a fraction of the
//! teacher's accuracy, and that as a ratio to `bd3lm` (off-policy block diffusion).

use std::path::{Path, PathBuf};

use burn::backend::Autodiff;
use burn::prelude::Backend;
use opdlm_model::atomic::write_text_atomically;
use opdlm_model::{load_pretrained, stop_tokens, LoadError, Pretrained};
use opdlm_training::{
    latest_checkpoint, load_checkpoint_student, read_log, train, Objective, TrainConfig, TrainError,
};
use serde::Serialize;

use crate::builtin;
use crate::eval::{evaluate, DecodeMode, EvalError, EvalItem, EvalSettings, ModeResult};
use crate::plot::plot_accuracy_vs_tokens;

/// One evaluated checkpoint of one objective.
#[derive(Debug, Clone, Serialize)]
pub struct BudgetPoint {
    /// Training steps done.
    pub step: usize,
    /// Training tokens consumed by then.
    pub tokens: f64,
    /// Test accuracy under static decoding.
    pub static_accuracy: f64,
    /// Test accuracy under dynamic decoding.
    pub dynamic_accuracy: f64,
    /// Tokens per denoising step under dynamic decoding.
    pub dynamic_tokens_per_step: f64,
}

/// Every evaluated checkpoint of one objective, in training order.
#[derive(Debug, Clone, Serialize)]
pub struct ObjectiveCurve {
    /// The objective's name (`opdlm`, `bd3lm`, ...).
    pub objective: String,
    /// Its checkpoints.
    pub points: Vec<BudgetPoint>,
}

impl ObjectiveCurve {
    /// Training tokens of the first evaluated checkpoint whose static accuracy reaches
    /// `fraction` of `reference` (None: never within the budget).
    pub fn tokens_to_reach(&self, fraction: f64, reference: f64) -> Option<f64> {
        self.points.iter().find(|p| p.static_accuracy >= fraction * reference).map(|p| p.tokens)
    }
}

/// Fractions of the teacher's accuracy the table reports.
pub const FRACTIONS: [f64; 3] = [0.5, 0.8, 0.95];

/// The Markdown report: tokens-to-reach table with ratios to `bd3lm`, and the final
/// static vs dynamic accuracies (the paper's Table 11 point).
pub fn markdown_report(
    curves: &[ObjectiveCurve],
    teacher_accuracy: f64,
    dynamic_threshold: f32,
) -> String {
    let baseline = curves.iter().find(|c| c.objective == "bd3lm");
    let mut out = format!("Teacher accuracy (greedy AR): **{:.1}%**. A budget counts as reaching a level at the first evaluated checkpoint whose *static* accuracy is at least that fraction of the teacher's.\n\n", 100.0 * teacher_accuracy);
    out += "| objective |";
    for f in FRACTIONS {
        out += &format!(" tokens to {:.0}% | ratio to bd3lm |", 100.0 * f);
    }
    out += "\n|---|";
    out += &"---|---|".repeat(FRACTIONS.len());
    out += "\n";
    for curve in curves {
        out += &format!("| {} |", curve.objective);
        for f in FRACTIONS {
            let tokens = curve.tokens_to_reach(f, teacher_accuracy);
            let base = baseline.and_then(|b| b.tokens_to_reach(f, teacher_accuracy));
            let ratio = match (tokens, base) {
                (Some(t), Some(b)) => format!("{:.2}×", t / b),
                // bd3lm would need more than its whole budget, so the ratio is below
                // this objective's tokens over that budget.
                (Some(t), None) => match baseline.and_then(|b| b.points.last()) {
                    Some(last) => format!(
                        "< {:.2}× (bd3lm not reached in {:.0})",
                        t / last.tokens,
                        last.tokens
                    ),
                    None => "no bd3lm run".into(),
                },
                (None, _) => "–".into(),
            };
            out += &format!(
                " {} | {} |",
                tokens.map_or("not reached".into(), |t| format!("{t:.0}")),
                ratio
            );
        }
        out += "\n";
    }
    out += &format!("\nFinal checkpoint, static vs dynamic (γ = {dynamic_threshold}) decoding:\n\n| objective | training tokens | static accuracy | dynamic accuracy | Δ | dynamic tokens/step |\n|---|---|---|---|---|---|\n");
    for curve in curves {
        if let Some(p) = curve.points.last() {
            out += &format!(
                "| {} | {:.0} | {:.1}% | {:.1}% | {:+.1} | {:.2} |\n",
                curve.objective,
                p.tokens,
                100.0 * p.static_accuracy,
                100.0 * p.dynamic_accuracy,
                100.0 * (p.dynamic_accuracy - p.static_accuracy),
                p.dynamic_tokens_per_step
            );
        }
    }
    out += "\nAccuracy (static) at every evaluated budget:\n\n| objective | step | training tokens | static | dynamic | dynamic tokens/step |\n|---|---|---|---|---|---|\n";
    for curve in curves {
        for p in &curve.points {
            out += &format!(
                "| {} | {} | {:.0} | {:.1}% | {:.1}% | {:.2} |\n",
                curve.objective,
                p.step,
                p.tokens,
                100.0 * p.static_accuracy,
                100.0 * p.dynamic_accuracy,
                p.dynamic_tokens_per_step
            );
        }
    }
    out
}

/// The data-efficiency experiment's settings.
#[derive(Debug, Clone)]
pub struct DataEfficiency {
    /// Objectives to compare, in order.
    pub objectives: Vec<Objective>,
    /// Training steps per objective (the largest budget).
    pub steps: usize,
    /// Evaluate every this many steps (each is a checkpoint).
    pub eval_every: usize,
    /// Test problems per evaluation.
    pub problems: usize,
    /// Threshold γ of the dynamic decoding column.
    pub threshold: f32,
    /// One run per objective under it; report.md, report.json, accuracy.png.
    pub out: PathBuf,
    /// Seed of prompts, rollouts and test problems.
    pub seed: u64,
}

/// Why the experiment stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    /// The settings are unusable.
    #[error("{0}")]
    Settings(String),
    /// A run could not be trained or a checkpoint read.
    #[error("{objective}: {source}")]
    Train {
        /// The objective whose run failed.
        objective: &'static str,
        /// Why.
        source: TrainError,
    },
    /// The teacher could not be loaded.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// An evaluation failed.
    #[error(transparent)]
    Eval(#[from] EvalError),
    /// A report file could not be written.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
}

impl DataEfficiency {
    /// Rejects budgets and thresholds that cannot run.
    pub fn validate(&self) -> Result<(), ExperimentError> {
        if self.steps == 0 || self.eval_every == 0 || self.problems == 0 {
            let message = "--steps, --eval-every and --problems must be at least 1".into();
            return Err(ExperimentError::Settings(message));
        }
        opdlm_inference::CommitRule::Dynamic { threshold: self.threshold }
            .validate()
            .map_err(|e| ExperimentError::Settings(format!("--threshold: {e}")))
    }

    /// Trains every objective (reusing finished runs, resuming interrupted ones),
    /// evaluates each checkpoint, and writes the report. Returns its Markdown body.
    pub fn run<B: Backend>(&self, device: &B::Device) -> Result<String, ExperimentError> {
        self.validate()?;
        let items = builtin::test_items(self.problems, self.seed);
        let mut curves = Vec::new();
        let mut teacher_accuracy = f64::NAN;
        for &objective in &self.objectives {
            let config = self.run_config(objective)?;
            self.train_if_needed::<B>(&config, device)?;
            let teacher = load_pretrained::<B>(&config.teacher, device)?;
            if teacher_accuracy.is_nan() {
                teacher_accuracy = teacher_ar_accuracy(&teacher, &items)?;
                eprintln!("teacher AR accuracy: {:.1}%", 100.0 * teacher_accuracy);
            }
            let points = self.evaluate_checkpoints::<B>(&config, &teacher, &items, device)?;
            curves.push(ObjectiveCurve { objective: objective.name().into(), points });
        }
        self.write_outputs(&curves, teacher_accuracy)
    }

    /// The built-in run of `objective` at this experiment's budget.
    fn run_config(&self, objective: Objective) -> Result<TrainConfig, ExperimentError> {
        let dir = self.out.join(objective.name());
        let mut config = builtin::builtin_train_config(&dir, self.seed).map_err(|e| {
            ExperimentError::Io { path: dir.display().to_string(), message: e.to_string() }
        })?;
        config.objective = objective;
        config.steps = self.steps;
        config.checkpoint_every = self.eval_every;
        config.keep_checkpoints = 0;
        Ok(config)
    }

    /// Trains the run unless it already finished; resumes it when interrupted.
    fn train_if_needed<B: Backend>(
        &self,
        config: &TrainConfig,
        device: &B::Device,
    ) -> Result<(), ExperimentError> {
        let (dir, name) = (&config.out, config.objective.name());
        let done = latest_checkpoint(dir);
        if dir.join("model").exists() && done >= config.epochs() {
            eprintln!("\n== {name}: reusing the finished run in {} ==", dir.display());
            return Ok(());
        }
        let resume = done > 0;
        let note = if resume { " (resuming)" } else { "" };
        eprintln!("\n== {name}: training {} steps{note} ==", config.steps);
        train::<Autodiff<B>>(config, device, resume)
            .map_err(|source| ExperimentError::Train { objective: name, source })?;
        Ok(())
    }

    /// Static and dynamic accuracy of every checkpoint of the run, against the tokens
    /// consumed before it.
    fn evaluate_checkpoints<B: Backend>(
        &self,
        config: &TrainConfig,
        teacher: &Pretrained<B>,
        items: &[EvalItem],
        device: &B::Device,
    ) -> Result<Vec<BudgetPoint>, ExperimentError> {
        let (dir, name) = (&config.out, config.objective.name());
        let stops = stop_tokens(&teacher.model.config().eos_token_ids, &teacher.tokenizer);
        let settings = EvalSettings {
            block_size: config.block_size,
            max_new_tokens: builtin::MAX_NEW_TOKENS,
            batch_size: 50,
            modes: vec![DecodeMode::STATIC, DecodeMode::dynamic(self.threshold)],
        };
        let log = read_log(&dir.join("metrics.jsonl"));
        let mut points = Vec::new();
        for epoch in 1..=config.epochs() {
            let step = (epoch * config.checkpoint_every).min(config.steps);
            let tokens = log
                .iter()
                .filter(|v| v["step"].as_u64().is_some_and(|s| (s as usize) < step))
                .filter_map(|v| v["tokens_total"].as_f64())
                .fold(0.0, f64::max);
            let student = load_checkpoint_student::<B>(dir, epoch, device)
                .map_err(|source| ExperimentError::Train { objective: name, source })?;
            let results = evaluate(&student, &teacher.tokenizer, None, items, &settings, &stops)?;
            let point = budget_point(step, tokens, &results);
            eprintln!(
                "{name} step {step:>4} ({tokens:>8.0} tokens): static {:.1}%, dynamic {:.1}% ({:.2} tokens/step)",
                100.0 * point.static_accuracy,
                100.0 * point.dynamic_accuracy,
                point.dynamic_tokens_per_step
            );
            points.push(point);
        }
        Ok(points)
    }

    /// report.md, report.json and accuracy.png under `out`; returns the report's body.
    fn write_outputs(
        &self,
        curves: &[ObjectiveCurve],
        teacher_accuracy: f64,
    ) -> Result<String, ExperimentError> {
        let out: &Path = &self.out;
        let io = |path: &Path, e: &dyn std::fmt::Display| ExperimentError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        let command = std::env::args().skip(1).collect::<Vec<_>>().join(" ");
        let body = markdown_report(curves, teacher_accuracy, self.threshold);
        let markdown = format!(
            "# Data efficiency: OPDLM vs baselines on the built-in tasks\n\nCommand: `cargo xtask {command}`\n\nEach objective converts the built-in teacher (block size 4) for {} steps; every {} steps a checkpoint is evaluated on the same {} test problems. Training tokens are prompt + response tokens of every training example (`tokens_total` in each run's metrics.jsonl).\n\n![accuracy vs training tokens](accuracy.png)\n\n{body}",
            self.steps, self.eval_every, self.problems
        );
        let md = out.join("report.md");
        write_text_atomically(&md, &markdown).map_err(|e| io(&md, &e))?;
        let json = serde_json::json!({ "teacher_accuracy": teacher_accuracy, "steps": self.steps, "eval_every": self.eval_every, "problems": self.problems, "curves": curves });
        let json_path = out.join("report.json");
        let text = serde_json::to_string_pretty(&json).expect("report serialises");
        write_text_atomically(&json_path, &text).map_err(|e| io(&json_path, &e))?;
        let series: Vec<(String, Vec<(f64, f64)>)> = curves
            .iter()
            .map(|c| {
                (
                    c.objective.clone(),
                    c.points.iter().map(|p| (p.tokens, p.static_accuracy)).collect(),
                )
            })
            .collect();
        let png = out.join("accuracy.png");
        plot_accuracy_vs_tokens(&series, teacher_accuracy, &png).map_err(|e| io(&png, &e))?;
        Ok(body)
    }
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
    };
    Ok(evaluate(&teacher.model, &teacher.tokenizer, None, items, &settings, &stops)?[0].accuracy)
}

/// A checkpoint's point from its static and dynamic results (in that order).
fn budget_point(step: usize, tokens: f64, results: &[ModeResult]) -> BudgetPoint {
    BudgetPoint {
        step,
        tokens,
        static_accuracy: results[0].accuracy,
        dynamic_accuracy: results[1].accuracy,
        dynamic_tokens_per_step: results[1].tokens_per_step,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curve(name: &str, points: &[(f64, f64)]) -> ObjectiveCurve {
        ObjectiveCurve {
            objective: name.into(),
            points: points
                .iter()
                .enumerate()
                .map(|(i, &(tokens, acc))| BudgetPoint {
                    step: i,
                    tokens,
                    static_accuracy: acc,
                    dynamic_accuracy: acc,
                    dynamic_tokens_per_step: 1.0,
                })
                .collect(),
        }
    }

    #[test]
    fn tokens_to_reach_takes_the_first_checkpoint_at_the_level_and_ratios_divide_by_bd3lm() {
        let opdlm = curve("opdlm", &[(100.0, 0.3), (200.0, 0.7), (400.0, 0.9)]);
        let bd3lm = curve("bd3lm", &[(100.0, 0.1), (200.0, 0.4), (400.0, 0.6), (800.0, 0.8)]);
        assert_eq!(opdlm.tokens_to_reach(0.5, 0.8), Some(200.0)); // 0.7 ≥ 0.4
        assert_eq!(bd3lm.tokens_to_reach(0.5, 0.8), Some(200.0)); // 0.4 ≥ 0.4
        assert_eq!(opdlm.tokens_to_reach(0.95, 0.8), Some(400.0));
        assert_eq!(bd3lm.tokens_to_reach(0.95, 0.8), Some(800.0));
        assert_eq!(bd3lm.tokens_to_reach(1.2, 0.8), None);
        let report = markdown_report(&[opdlm.clone(), bd3lm], 0.8, 0.9);
        assert!(report.contains("| opdlm | 200 | 1.00× | 200 | 0.25× | 400 | 0.50× |"), "{report}");
        // A level bd3lm never reaches: a bound from its whole budget (800 tokens).
        let slow = curve("bd3lm", &[(100.0, 0.1), (800.0, 0.3)]);
        let report = markdown_report(&[opdlm, slow], 0.8, 0.9);
        assert!(
            report.contains("| opdlm | 200 | < 0.25× (bd3lm not reached in 800) |"),
            "{report}"
        );
    }
}
