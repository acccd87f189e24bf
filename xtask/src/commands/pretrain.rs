//! `cargo xtask pretrain`: trains the built-in tiny teacher from scratch on the built-in
//! tasks (autoregressively). The committed teacher was made with the defaults:
//! `cargo xtask pretrain --out harness/assets/tiny-teacher`.

use opdlm_training::TrainBackend;
use std::path::PathBuf;

use anyhow::Context;
use burn::backend::Autodiff;
use clap::Args;
use opdlm_harness::eval::markdown_table;
use opdlm_harness::pretrain::{pretrain, PretrainConfig, TeacherShape};
use opdlm_training::progress::Progress;

use crate::backend::{dispatch, BackendKind, BackendTask};

/// Flags of `cargo xtask pretrain`.
#[derive(Debug, Args)]
pub struct PretrainArgs {
    /// Where to write the teacher (a Hugging Face directory).
    #[arg(long, default_value = "runs/teacher")]
    pub out: PathBuf,
    /// Optimizer steps.
    #[arg(long, default_value_t = PretrainConfig::default().steps)]
    pub steps: usize,
    /// Problems per step.
    #[arg(long, default_value_t = PretrainConfig::default().batch_size)]
    pub batch_size: usize,
    /// Peak learning rate (AdamW, warmup then cosine decay).
    #[arg(long, default_value_t = PretrainConfig::default().lr)]
    pub lr: f64,
    /// Hidden size.
    #[arg(long, default_value_t = PretrainConfig::default().shape.hidden)]
    pub hidden: usize,
    /// Decoder layers.
    #[arg(long, default_value_t = PretrainConfig::default().shape.layers)]
    pub layers: usize,
    /// MLP width.
    #[arg(long, default_value_t = PretrainConfig::default().shape.intermediate)]
    pub intermediate: usize,
    /// Seed of the initialisation and of the training problems.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Compute backend.
    #[arg(long, value_enum, default_value_t = BackendKind::Ndarray)]
    pub backend: BackendKind,
}

/// Runs `cargo xtask pretrain`.
pub fn run(args: PretrainArgs) -> anyhow::Result<()> {
    let defaults = PretrainConfig::default();
    let config = PretrainConfig {
        out: args.out,
        steps: args.steps,
        batch_size: args.batch_size,
        lr: args.lr,
        seed: args.seed,
        shape: TeacherShape {
            hidden: args.hidden,
            layers: args.layers,
            intermediate: args.intermediate,
            ..defaults.shape
        },
        ..defaults
    };
    anyhow::ensure!(
        config.steps > 0 && config.batch_size > 0,
        "--steps and --batch-size must be at least 1"
    );
    anyhow::ensure!(
        config.shape.hidden.is_multiple_of(config.shape.heads),
        "--hidden must be a multiple of {} (heads)",
        config.shape.heads
    );
    dispatch(args.backend, PretrainTask(config))
}

struct PretrainTask(PretrainConfig);

impl BackendTask for PretrainTask {
    fn run<B: TrainBackend>(self, device: B::Device) -> anyhow::Result<()> {
        let config = self.0;
        let mut progress = Progress::new(config.steps, "pretraining", "steps");
        let mut smoothed = None::<f64>;
        let summary = pretrain::<Autodiff<B>>(&config, &device, |step, loss| {
            let s = smoothed.map_or(loss, |s| 0.95 * s + 0.05 * loss);
            smoothed = Some(s);
            progress.set_message(format!("loss {s:.4}"));
            progress.inc(1);
            if (step + 1) % 100 == 0 {
                progress.println(&format!("step {}: loss {s:.4}", step + 1));
            }
        })
        .map_err(anyhow::Error::msg)
        .context("pretraining failed")?;
        progress.finish();
        println!(
            "teacher: {} ({} parameters), final loss {:.4}, {:.0} s",
            summary.out.display(),
            summary.parameters,
            summary.final_loss,
            summary.seconds
        );
        for (task, result) in &summary.accuracy {
            println!(
                "\n{} (test split, greedy AR):\n{}",
                task.name(),
                markdown_table(std::slice::from_ref(result))
            );
        }
        Ok(())
    }
}
