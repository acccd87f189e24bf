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
    /// Training tokens to reach a fraction of the teacher's accuracy: opdlm vs opdlm-off vs bd3lm vs sft.
    DataEfficiency(DataEfficiencyArgs),
}

/// Flags of `cargo xtask experiment data-efficiency`.
#[derive(Debug, Args)]
pub struct DataEfficiencyArgs {
    /// Objectives to compare, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = vec![Objective::Opdlm, Objective::OpdlmOff, Objective::Bd3lm, Objective::Sft])]
    pub objectives: Vec<Objective>,
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

/// Runs `cargo xtask experiment <name>`.
pub fn run(experiment: Experiment) -> anyhow::Result<()> {
    match experiment {
        Experiment::DataEfficiency(args) => {
            let experiment = DataEfficiency {
                objectives: args.objectives,
                steps: args.steps,
                eval_every: args.eval_every,
                problems: args.problems,
                threshold: args.threshold,
                out: args.out,
                seed: args.seed,
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
