//! `cargo xtask experiment data-efficiency`: the paper's central claim at small scale.
//! Each objective converts the built-in teacher with the same budget; every checkpoint
//! is evaluated (static and dynamic decoding) on the same test problems; the report gives
//! the training tokens each needs to reach 50/80/95% of the teacher's accuracy, as
//! ratios to `bd3lm`, and a plot of accuracy against training tokens.

use std::path::{Path, PathBuf};

use anyhow::Context;
use burn::backend::Autodiff;
use burn::prelude::Backend;
use clap::{Args, Subcommand};
use opdlm_model::load_pretrained;
use opdlm_training::builtin;
use opdlm_training::checkpoint::load_checkpoint_student;
use opdlm_training::eval::{DecodeMode, EvalSettings, ModeResult};
use opdlm_training::experiment::{markdown_report, BudgetPoint, ObjectiveCurve};
use opdlm_training::metrics::read_log;
use opdlm_training::objective::Objective;
use opdlm_training::plot::plot_accuracy_vs_tokens;
use opdlm_training::train;
use opdlm_training::trainer::{latest_checkpoint, stop_tokens};

use crate::backend::{dispatch, BackendKind, BackendTask};
use crate::commands::eval::run_eval;
use crate::commands::train::ObjectiveArg;

#[derive(Debug, Subcommand)]
pub enum Experiment {
    /// Training tokens to reach a fraction of the teacher's accuracy: opdlm vs opdlm-off vs bd3lm vs sft.
    DataEfficiency(DataEfficiencyArgs),
}

#[derive(Debug, Args)]
pub struct DataEfficiencyArgs {
    /// Objectives to compare, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = vec![ObjectiveArg::Opdlm, ObjectiveArg::OpdlmOff, ObjectiveArg::Bd3lm, ObjectiveArg::Sft])]
    pub objectives: Vec<ObjectiveArg>,
    /// Training steps per objective (the largest budget; the committed report used 420).
    #[arg(long, default_value_t = 420)]
    pub steps: usize,
    /// Evaluate every N steps (each is a checkpoint).
    #[arg(long, default_value_t = 60)]
    pub eval_every: usize,
    /// Test problems per evaluation.
    #[arg(long, default_value_t = 100)]
    pub problems: usize,
    /// Confidence threshold γ of the dynamic decoding column.
    #[arg(long, default_value_t = 0.9)]
    pub threshold: f32,
    /// Output directory: one run per objective, report.md, report.json, accuracy.png.
    /// Finished runs found there are reused, interrupted ones resumed.
    #[arg(long, default_value = "runs/data-efficiency")]
    pub out: PathBuf,
    /// Seed of prompts, rollouts and test problems.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Compute backend.
    #[arg(long, value_enum, default_value_t = BackendKind::Ndarray)]
    pub backend: BackendKind,
}

pub fn run(experiment: Experiment) -> anyhow::Result<()> {
    match experiment {
        Experiment::DataEfficiency(args) => {
            anyhow::ensure!(
                args.steps > 0 && args.eval_every > 0 && args.problems > 0,
                "--steps, --eval-every and --problems must be at least 1"
            );
            anyhow::ensure!(
                args.threshold > 0.0 && args.threshold <= 1.0,
                "--threshold {} is outside (0, 1]",
                args.threshold
            );
            dispatch(args.backend, DataEfficiency(args))
        }
    }
}

struct DataEfficiency(DataEfficiencyArgs);

impl BackendTask for DataEfficiency {
    fn run<B: Backend>(self, device: B::Device) -> anyhow::Result<()> {
        let args = self.0;
        let items = builtin::test_items(args.problems, args.seed);
        let mut curves = Vec::new();
        let mut teacher_accuracy = f64::NAN;
        for objective in &args.objectives {
            let objective = objective.objective();
            let name = objective_name(objective);
            let dir = args.out.join(&name);
            let mut config = builtin::builtin_train_config(&dir, args.seed)?;
            config.objective = objective;
            config.steps = args.steps;
            config.checkpoint_every = args.eval_every;
            config.keep_checkpoints = 0;
            let epochs = config.epochs();
            if !dir.join("model").exists() || latest_checkpoint(&dir) < epochs {
                let resume = latest_checkpoint(&dir) > 0;
                println!(
                    "\n== {name}: training {} steps{} ==",
                    config.steps,
                    if resume { " (resuming)" } else { "" }
                );
                train::<Autodiff<B>>(&config, &device, resume)
                    .with_context(|| format!("training {name}"))?;
            } else {
                println!("\n== {name}: reusing the finished run in {} ==", dir.display());
            }
            let teacher = load_pretrained::<B>(&config.teacher, &device)?;
            let stops =
                stop_tokens(teacher.model.config().eos_token_ids.clone(), &teacher.tokenizer);
            if teacher_accuracy.is_nan() {
                let settings = EvalSettings {
                    block_size: 1,
                    max_new_tokens: builtin::MAX_NEW_TOKENS,
                    batch_size: 50,
                    modes: vec![DecodeMode::Ar],
                };
                teacher_accuracy =
                    run_eval(&teacher.model, &teacher.tokenizer, None, &items, &settings, &stops)?
                        [0]
                    .accuracy;
                println!("teacher AR accuracy: {:.1}%", 100.0 * teacher_accuracy);
            }
            let settings = EvalSettings {
                block_size: config.block_size,
                max_new_tokens: builtin::MAX_NEW_TOKENS,
                batch_size: 50,
                modes: vec![DecodeMode::Static, DecodeMode::Dynamic(args.threshold)],
            };
            let log = read_log(&dir.join("metrics.jsonl"));
            let mut points = Vec::new();
            for epoch in 1..=epochs {
                let step = (epoch * config.checkpoint_every).min(config.steps);
                let tokens = log
                    .iter()
                    .filter(|v| v["step"].as_u64().is_some_and(|s| (s as usize) < step))
                    .filter_map(|v| v["tokens_total"].as_f64())
                    .fold(0.0, f64::max);
                let student = load_checkpoint_student::<B>(&dir, epoch, &device)
                    .with_context(|| format!("{name}: checkpoint {epoch}"))?;
                let results =
                    run_eval(&student, &teacher.tokenizer, None, &items, &settings, &stops)?;
                let point = budget_point(step, tokens, &results);
                println!("{name} step {step:>4} ({tokens:>8.0} tokens): static {:.1}%, dynamic {:.1}% ({:.2} tokens/step)", 100.0 * point.static_accuracy, 100.0 * point.dynamic_accuracy, point.dynamic_tokens_per_step);
                points.push(point);
            }
            curves.push(ObjectiveCurve { objective: name, points });
        }
        write_outputs(&args, &curves, teacher_accuracy)
    }
}

fn budget_point(step: usize, tokens: f64, results: &[ModeResult]) -> BudgetPoint {
    BudgetPoint {
        step,
        tokens,
        static_accuracy: results[0].accuracy,
        dynamic_accuracy: results[1].accuracy,
        dynamic_tokens_per_step: results[1].tokens_per_step,
    }
}

fn objective_name(objective: Objective) -> String {
    serde_json::to_value(objective)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_else(|| format!("{objective:?}"))
}

fn write_outputs(
    args: &DataEfficiencyArgs,
    curves: &[ObjectiveCurve],
    teacher_accuracy: f64,
) -> anyhow::Result<()> {
    let out: &Path = &args.out;
    let command = std::env::args().skip(1).collect::<Vec<_>>().join(" ");
    let body = markdown_report(curves, teacher_accuracy, args.threshold);
    let markdown = format!(
        "# Data efficiency: OPDLM vs baselines on the built-in tasks\n\nCommand: `cargo xtask {command}`\n\nEach objective converts the built-in teacher (block size 4) for {} steps; every {} steps a checkpoint is evaluated on the same {} test problems. Training tokens are prompt + response tokens of every training example (`tokens_total` in each run's metrics.jsonl).\n\n![accuracy vs training tokens](accuracy.png)\n\n{body}",
        args.steps, args.eval_every, args.problems
    );
    std::fs::write(out.join("report.md"), &markdown)
        .with_context(|| format!("writing {}", out.join("report.md").display()))?;
    let json = serde_json::json!({ "teacher_accuracy": teacher_accuracy, "steps": args.steps, "eval_every": args.eval_every, "problems": args.problems, "curves": curves });
    std::fs::write(out.join("report.json"), serde_json::to_string_pretty(&json)?)?;
    let series: Vec<(String, Vec<(f64, f64)>)> = curves
        .iter()
        .map(|c| {
            (c.objective.clone(), c.points.iter().map(|p| (p.tokens, p.static_accuracy)).collect())
        })
        .collect();
    let plot = plot_accuracy_vs_tokens(&series, teacher_accuracy, &out.join("accuracy.png"))
        .map_err(|e| anyhow::anyhow!("plotting: {e}"))?;
    println!("\n{body}\nreport: {}, plot: {}", out.join("report.md").display(), plot.display());
    Ok(())
}
