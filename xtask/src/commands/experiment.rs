//! `cargo xtask experiment data-efficiency`: the paper's central claim at small scale;
//! `cargo xtask experiment smollm2`: a real chat model converted and evaluated (the loops
//! and the reports are `opdlm_harness::experiment`).

use opdlm_training::TrainBackend;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use opdlm_harness::experiment::conversion::Conversion;
use opdlm_harness::experiment::DataEfficiency;
use opdlm_training::{Objective, StudentPasses};

use crate::backend::{dispatch, BackendKind, BackendTask};

/// The experiments.
#[derive(Debug, Subcommand)]
pub enum Experiment {
    /// Training tokens to reach a fraction of the teacher's accuracy, and accuracy at equal
    /// budget, static vs dynamic: opdlm vs opdlm-off vs offpolicy-kd vs bd3lm vs sft, each
    /// with its own learning rate (swept on validation) and several seeds.
    DataEfficiency(DataEfficiencyArgs),
    /// Convert SmolLM2-135M-Instruct (or --teacher) by OPDLM on the project's chat prompts,
    /// then compare teacher, unconverted model and student on held-out prompts: agreement
    /// with the teacher, accuracy, generative perplexity, tokens/forward, tok/s; curves
    /// over checkpoints. Re-running the same command resumes and reuses what is done.
    Smollm2(Box<ConversionArgs>),
}

/// Flags of `cargo xtask experiment smollm2`. The defaults are its budget, sized from
/// pilot runs to finish within 2 hours on 2 idle cores.
#[derive(Debug, Args)]
pub struct ConversionArgs {
    /// The chat model to convert (GGUF or HF directory); fetched when it is the default.
    #[arg(long, default_value = crate::repo::SMOLLM2_GGUF)]
    pub teacher: PathBuf,
    /// Training objective (`sft`: the bd3lm baseline on the teacher's own responses).
    #[arg(long, value_enum, default_value_t = Conversion::default().objective)]
    pub objective: Objective,
    /// Training steps.
    #[arg(long, default_value_t = Conversion::default().steps)]
    pub steps: usize,
    /// Prompts per training step.
    #[arg(long, default_value_t = Conversion::default().batch_size)]
    pub batch_size: usize,
    /// Peak learning rate (cosine decay to a tenth).
    #[arg(long, default_value_t = Conversion::default().lr)]
    pub lr: f64,
    /// Distill on the teacher's top-k tokens; 0: the full vocabulary.
    #[arg(long, default_value_t = Conversion::default().top_k_logits.unwrap_or(0))]
    pub top_k_logits: usize,
    /// Block size of the student.
    #[arg(long, default_value_t = Conversion::default().block_size)]
    pub block_size: usize,
    /// Rollout threshold γ (the curves decode with it too).
    #[arg(long, default_value_t = Conversion::default().threshold)]
    pub threshold: f32,
    /// Longest rollout, and every evaluation's generation limit.
    #[arg(long, default_value_t = Conversion::default().max_tokens)]
    pub max_tokens: usize,
    /// Longest rollout at the first step (the rollout-length curriculum's start).
    #[arg(long, default_value_t = Conversion::default().rollout_len_min)]
    pub rollout_len_min: usize,
    /// Steps over which the longest rollout grows to --max-tokens.
    #[arg(long, default_value_t = Conversion::default().rollout_len_ramp)]
    pub rollout_len_ramp: usize,
    /// Checkpoint, and evaluate for the curves, every N steps.
    #[arg(long, default_value_t = Conversion::default().checkpoint_every)]
    pub checkpoint_every: usize,
    /// Seed of the prompt order and the rollouts.
    #[arg(long, default_value_t = Conversion::default().seed)]
    pub seed: u64,
    /// Training prompts generated (train split of the chat prompts).
    #[arg(long, default_value_t = Conversion::default().train_prompts)]
    pub train_prompts: usize,
    /// Held-out test prompts of the final evaluation.
    #[arg(long, default_value_t = Conversion::default().test_prompts)]
    pub test_prompts: usize,
    /// Validation prompts decoded at every checkpoint (the curves; never test prompts, so
    /// that a budget read off the curves is not chosen on the test split).
    #[arg(long, default_value_t = Conversion::default().curve_prompts)]
    pub curve_prompts: usize,
    /// The first N test prompts are decoded one at a time (tok/s at batch 1).
    #[arg(long, default_value_t = Conversion::default().batch1_prompts)]
    pub batch1_prompts: usize,
    /// Prompts decoded together in the evaluations.
    #[arg(long, default_value_t = Conversion::default().eval_batch)]
    pub eval_batch: usize,
    /// Thresholds γ of the student's dynamic decoding rows, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = Conversion::default().thresholds)]
    pub thresholds: Vec<f32>,
    /// Output directory: prompts/, run/ (checkpoints, model/), eval/, commit.txt,
    /// report.md, report.json, agreement.png, tokens_per_forward.png.
    #[arg(long, default_value = "runs/smollm2-conversion")]
    pub out: PathBuf,
    /// Run although the code has uncommitted changes (the report says so instead of
    /// naming a commit): for trying the experiment out, not for reports.
    #[arg(long)]
    pub allow_uncommitted: bool,
    /// How the student's pass over a batch is split (`one` on GPUs; see `train --help`).
    #[arg(long, value_enum, default_value_t = Conversion::default().student_passes)]
    pub student_passes: StudentPasses,
    /// Compare the student, prompt by prompt, with another finished run's: its --out
    /// directory, from the same commit and test prompts (e.g. `--objective sft` at the same
    /// budget). The report gains paired differences of agreement with McNemar tests.
    #[arg(long, value_name = "DIR")]
    pub baseline: Option<PathBuf>,
    /// Compute backend.
    #[arg(long, value_enum, default_value_t = BackendKind::Ndarray)]
    pub backend: BackendKind,
}

impl ConversionArgs {
    fn conversion(&self) -> anyhow::Result<Conversion> {
        Ok(Conversion {
            teacher: crate::repo::smollm2_gguf(&self.teacher)?,
            objective: self.objective,
            steps: self.steps,
            batch_size: self.batch_size,
            lr: self.lr,
            top_k_logits: (self.top_k_logits > 0).then_some(self.top_k_logits),
            block_size: self.block_size,
            threshold: self.threshold,
            max_tokens: self.max_tokens,
            rollout_len_min: self.rollout_len_min,
            rollout_len_ramp: self.rollout_len_ramp,
            checkpoint_every: self.checkpoint_every,
            seed: self.seed,
            train_prompts: self.train_prompts,
            test_prompts: self.test_prompts,
            curve_prompts: self.curve_prompts,
            batch1_prompts: self.batch1_prompts,
            eval_batch: self.eval_batch,
            thresholds: self.thresholds.clone(),
            student_passes: self.student_passes,
            out: self.out.clone(),
            allow_uncommitted: self.allow_uncommitted,
            baseline: self.baseline.clone(),
        })
    }
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
        Experiment::Smollm2(args) => {
            let conversion = args.conversion()?;
            conversion.validate()?;
            dispatch(args.backend, ConversionTask(conversion))
        }
    }
}

struct ConversionTask(Conversion);

impl BackendTask for ConversionTask {
    fn run<B: TrainBackend>(self, device: B::Device) -> anyhow::Result<()> {
        let markdown = self.0.run::<B>(&device)?;
        let out = &self.0.out;
        println!("\n{markdown}\nreport: {}", out.join("report.md").display());
        println!("model:  {}", out.join("run").join("model").display());
        Ok(())
    }
}

struct DataEfficiencyTask(DataEfficiency);

impl BackendTask for DataEfficiencyTask {
    fn run<B: TrainBackend>(self, device: B::Device) -> anyhow::Result<()> {
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
