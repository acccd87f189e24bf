//! `cargo xtask experiment data-efficiency`: the paper's central claim at small scale
//! (the loop and the report are `opdlm_harness::experiment`).

use std::path::PathBuf;

use burn::prelude::Backend;
use clap::{Args, Subcommand};
use opdlm_harness::experiment::DataEfficiency;
use opdlm_training::Objective;

use crate::backend::{dispatch, BackendKind, BackendTask};

/// The experiments.
#[derive(Debug, Subcommand)]
pub enum Experiment {
    /// Training tokens to reach a fraction of the teacher's accuracy, and accuracy at equal
    /// budget, static vs dynamic: opdlm vs opdlm-off vs offpolicy-kd vs bd3lm vs sft, each
    /// with its own learning rate (swept on validation) and several seeds.
    DataEfficiency(DataEfficiencyArgs),
}

/// Flags of `cargo xtask experiment data-efficiency`. The defaults are the committed
/// report's (`reports/data-efficiency/`).
#[derive(Debug, Args)]
pub struct DataEfficiencyArgs {
    /// Objectives to compare, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = vec![Objective::Opdlm, Objective::OpdlmOff, Objective::OffpolicyKd, Objective::Bd3lm, Objective::Sft])]
    pub objectives: Vec<Objective>,
    /// Seeds of the final runs, comma-separated (prompt order and sampling); the
    /// learning-rate sweep runs with the first.
    #[arg(long, value_delimiter = ',', default_values_t = vec![0, 1, 2])]
    pub seeds: Vec<u64>,
    /// Peak learning rates each objective's sweep tries, comma-separated; the one with
    /// the best validation accuracy is kept.
    #[arg(long, value_delimiter = ',', default_values_t = vec![1e-3, 2e-3, 4e-3])]
    pub learning_rates: Vec<f64>,
    /// Training steps of every run (batch 32, the built-in run's).
    #[arg(long, default_value_t = 400)]
    pub steps: usize,
    /// Evaluate every N steps (each is a checkpoint).
    #[arg(long, default_value_t = 40)]
    pub eval_every: usize,
    /// Test problems per evaluation (report only).
    #[arg(long, default_value_t = 500)]
    pub test_problems: usize,
    /// Validation problems the learning-rate sweep is judged on.
    #[arg(long, default_value_t = 500)]
    pub validation_problems: usize,
    /// Confidence threshold γ of the dynamic decoding column.
    #[arg(long, default_value_t = 0.9)]
    pub threshold: f32,
    /// Output directory: runs/ (one per objective, learning rate and seed), commit.txt,
    /// report.md, report.json, accuracy.png. Finished runs and evaluations found there
    /// are reused, interrupted runs resumed, as long as the code is that of commit.txt.
    #[arg(long, default_value = "runs/data-efficiency")]
    pub out: PathBuf,
    /// Run although the code has uncommitted changes (the report says so instead of
    /// naming a commit): for trying the experiment out, not for reports.
    #[arg(long)]
    pub allow_uncommitted: bool,
    /// Compute backend.
    #[arg(long, value_enum, default_value_t = BackendKind::Ndarray)]
    pub backend: BackendKind,
}

/// Runs `cargo xtask experiment <name>`.
pub fn run(experiment: Experiment) -> anyhow::Result<()> {
    match experiment {
        Experiment::DataEfficiency(args) => {
            let experiment = DataEfficiency {
                objectives: args.objectives,
                seeds: args.seeds,
                learning_rates: args.learning_rates,
                steps: args.steps,
                eval_every: args.eval_every,
                test_problems: args.test_problems,
                validation_problems: args.validation_problems,
                threshold: args.threshold,
                out: args.out,
                allow_uncommitted: args.allow_uncommitted,
            };
            experiment.validate()?;
            dispatch(args.backend, DataEfficiencyTask(experiment))
        }
    }
}

struct DataEfficiencyTask(DataEfficiency);

impl BackendTask for DataEfficiencyTask {
    fn run<B: Backend>(self, device: B::Device) -> anyhow::Result<()> {
        let body = self.0.run::<B>(&device)?;
        let out = &self.0.out;
        println!(
            "\n{body}\nreport: {}, plot: {}",
            out.join("report.md").display(),
            out.join("accuracy.png").display()
        );
        Ok(())
    }
}
