//! `cargo xtask train`: OPDLM (or a baseline) through burn-train's Learner.

use std::path::PathBuf;

use anyhow::Context;
use burn::backend::Autodiff;
use burn::prelude::Backend;
use clap::{Args, ValueEnum};
use opdlm_training::config::{DivergenceName, StateSelectionName};
use opdlm_training::curriculum::RampShape;
use opdlm_training::objective::Objective;
use opdlm_training::{train, TrainConfig};

use crate::backend::{dispatch, BackendKind, BackendTask};
use crate::commands::eval::{run_eval, write_report};
use opdlm_model::load_pretrained;
use opdlm_training::builtin;
use opdlm_training::eval::markdown_table;
use opdlm_training::trainer::stop_tokens;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ObjectiveArg {
    /// On-policy distillation on the student's own denoising states (the method).
    Opdlm,
    /// Student rollouts with random masking instead of visited states (paper Eq. 6).
    OpdlmOff,
    /// Off-policy block diffusion on dataset answers: random masking, 1/t weight, hard labels.
    Bd3lm,
    /// BD3LM loss on the teacher's own generations (paper A.5).
    Sft,
    /// Teacher soft targets on teacher generations with random masking.
    OffpolicyKd,
}

impl ObjectiveArg {
    pub fn objective(self) -> Objective {
        match self {
            ObjectiveArg::Opdlm => Objective::Opdlm,
            ObjectiveArg::OpdlmOff => Objective::OpdlmOff,
            ObjectiveArg::Bd3lm => Objective::Bd3lm,
            ObjectiveArg::Sft => Objective::Sft,
            ObjectiveArg::OffpolicyKd => Objective::OffpolicyKd,
        }
    }
}

/// Every flag overrides the same key of `--config` (which overrides the defaults).
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// TOML file with any of the settings below (snake_case keys); flags override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Teacher / initial student: Hugging Face directory or .gguf file. Without --teacher,
    /// --prompts and --config: the built-in tiny teacher on the built-in tasks, evaluated
    /// against the student at the end (the default run).
    #[arg(long)]
    pub teacher: Option<PathBuf>,
    /// JSONL prompts: {"prompt": ...} or {"messages": [...]}, with "answer" for --objective bd3lm.
    #[arg(long)]
    pub prompts: Option<PathBuf>,
    /// Output directory (checkpoints, metrics.jsonl, curves.png, model/) [default: runs/opdlm].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the run in --out from its latest checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Training objective [default: opdlm].
    #[arg(long, value_enum)]
    pub objective: Option<ObjectiveArg>,
    /// Render prompts with the teacher's chat template.
    #[arg(long)]
    pub chat: bool,
    /// Block size of the student [default: 4].
    #[arg(long)]
    pub block_size: Option<usize>,
    /// Rollout sampler's dynamic confidence threshold γ [default: 0.9].
    #[arg(long)]
    pub threshold: Option<f32>,
    /// Rollout sampling temperature [default: 1.0].
    #[arg(long)]
    pub temperature: Option<f32>,
    /// Distill on the teacher's top-k tokens only, without renormalising [default: full vocabulary].
    #[arg(long)]
    pub top_k_logits: Option<usize>,
    /// Divergence [default: forward-kl].
    #[arg(long, value_enum)]
    pub divergence: Option<DivergenceArg>,
    /// Which visited state a rollout trains on [default: per-block].
    #[arg(long, value_enum)]
    pub state_selection: Option<StateSelectionArg>,
    /// Peak learning rate [default: 1e-5].
    #[arg(long)]
    pub lr: Option<f64>,
    /// Final learning rate of the cosine decay [default: 1e-6].
    #[arg(long)]
    pub final_lr: Option<f64>,
    /// Warmup, in optimizer steps [default: 5].
    #[arg(long)]
    pub warmup: Option<usize>,
    /// Prompts per rollout step [default: 8].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Rollout steps per optimizer step [default: 1].
    #[arg(long)]
    pub grad_accum: Option<usize>,
    /// Initial maximum rollout length [default: 16].
    #[arg(long)]
    pub rollout_len_min: Option<usize>,
    /// Final maximum rollout length [default: 128].
    #[arg(long)]
    pub rollout_len_max: Option<usize>,
    /// Rollout steps to reach the final length [default: 10].
    #[arg(long)]
    pub rollout_len_ramp: Option<usize>,
    /// Ramp shape: cosine (reference code) or linear (paper) [default: cosine].
    #[arg(long, value_enum)]
    pub rollout_len_shape: Option<RampArg>,
    /// Total rollout steps [default: 100].
    #[arg(long)]
    pub steps: Option<usize>,
    /// Checkpoint every N rollout steps [default: 10].
    #[arg(long)]
    pub checkpoint_every: Option<usize>,
    /// Checkpoints kept on disk, newest first; 0 keeps all [default: 2].
    #[arg(long)]
    pub keep_checkpoints: Option<usize>,
    /// Steps with a non-finite loss or gradient are skipped; this many in a row stop the run [default: 5].
    #[arg(long)]
    pub max_bad_steps: Option<usize>,
    /// Random seed (data order, rollouts, state selection) [default: 0].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Compute backend.
    #[arg(long, value_enum, default_value_t = BackendKind::Ndarray)]
    pub backend: BackendKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DivergenceArg {
    ForwardKl,
    ReverseKl,
    Jsd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StateSelectionArg {
    /// Each block picks one of its own change steps (reference default).
    PerBlock,
    /// One step of the whole trajectory (paper Algorithm 1).
    Trajectory,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RampArg {
    Cosine,
    Linear,
}

impl TrainArgs {
    /// No teacher, prompts or config file given: convert the built-in teacher on the
    /// built-in tasks and evaluate it (the default run).
    fn is_builtin(&self) -> bool {
        self.config.is_none() && self.teacher.is_none() && self.prompts.is_none()
    }

    /// Defaults, then the TOML file, then flags.
    fn config(&self) -> anyhow::Result<TrainConfig> {
        let mut c = match &self.config {
            Some(path) => TrainConfig::from_toml_file(path)?,
            None if self.is_builtin() => {
                let out = self.out.clone().unwrap_or_else(builtin::default_out);
                builtin::builtin_train_config(&out, self.seed.unwrap_or(0)).with_context(|| {
                    format!("writing the built-in prompts into {}", out.display())
                })?
            }
            None => TrainConfig::default(),
        };
        macro_rules! set {
            ($($field:ident),*) => { $( if let Some(v) = self.$field.clone() { c.$field = v; } )* };
        }
        set!(
            teacher,
            prompts,
            out,
            block_size,
            threshold,
            temperature,
            lr,
            final_lr,
            warmup,
            batch_size,
            grad_accum,
            rollout_len_min,
            rollout_len_max,
            rollout_len_ramp,
            steps,
            checkpoint_every,
            keep_checkpoints,
            max_bad_steps,
            seed
        );
        if self.top_k_logits.is_some() {
            c.top_k_logits = self.top_k_logits;
        }
        c.chat |= self.chat;
        if let Some(o) = self.objective {
            c.objective = o.objective();
        }
        if let Some(d) = self.divergence {
            c.divergence = match d {
                DivergenceArg::ForwardKl => DivergenceName::ForwardKl,
                DivergenceArg::ReverseKl => DivergenceName::ReverseKl,
                DivergenceArg::Jsd => DivergenceName::Jsd,
            };
        }
        if let Some(s) = self.state_selection {
            c.state_selection = match s {
                StateSelectionArg::PerBlock => StateSelectionName::PerBlock,
                StateSelectionArg::Trajectory => StateSelectionName::Trajectory,
            };
        }
        if let Some(r) = self.rollout_len_shape {
            c.rollout_len_shape = match r {
                RampArg::Cosine => RampShape::Cosine,
                RampArg::Linear => RampShape::Linear,
            };
        }
        c.validate()?;
        Ok(c)
    }
}

struct TrainTask {
    config: TrainConfig,
    resume: bool,
    /// Evaluate teacher and student on the built-in tasks' test split afterwards.
    builtin: bool,
}

pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    dispatch(args.backend, TrainTask { config, resume: args.resume, builtin: args.is_builtin() })
}

impl BackendTask for TrainTask {
    fn run<B: Backend>(self, device: B::Device) -> anyhow::Result<()> {
        let summary =
            train::<Autodiff<B>>(&self.config, &device, self.resume).context("training failed")?;
        println!(
            "trained {} steps on {:.0} tokens: loss {:.4} → {:.4}",
            summary.steps, summary.tokens_total, summary.first_loss, summary.last_loss
        );
        println!("model:   {}", summary.model_dir.display());
        println!("metrics: {}", summary.metrics.display());
        if let Some(plot) = summary.plot {
            println!("curves:  {}", plot.display());
        }
        if self.builtin {
            compare_on_builtin_tasks::<B>(&self.config, &summary.model_dir, &device)?;
        }
        Ok(())
    }
}

/// Teacher vs student on the built-in test split: accuracy under AR, static and dynamic
/// decoding, tokens per step; written to `<out>/eval/` and printed.
fn compare_on_builtin_tasks<B: Backend>(
    config: &TrainConfig,
    student_dir: &std::path::Path,
    device: &B::Device,
) -> anyhow::Result<()> {
    let teacher = load_pretrained::<B>(&config.teacher, device)
        .with_context(|| format!("loading {}", config.teacher.display()))?;
    let student = load_pretrained::<B>(student_dir, device)
        .with_context(|| format!("loading {}", student_dir.display()))?;
    let items = builtin::test_items(builtin::TEST_PROBLEMS, config.seed);
    let settings = builtin::eval_settings(config.block_size, &builtin::DEFAULT_THRESHOLDS);
    let stops = stop_tokens(teacher.model.config().eos_token_ids.clone(), &teacher.tokenizer);
    println!("\nevaluating teacher and student on {} test problems…", items.len());
    let teacher_results = run_eval(
        &teacher.model,
        &teacher.tokenizer,
        Some(&teacher.model),
        &items,
        &settings,
        &stops,
    )?;
    let student_results = run_eval(
        &student.model,
        &student.tokenizer,
        Some(&teacher.model),
        &items,
        &settings,
        &stops,
    )?;
    let reference =
        teacher_results.iter().find(|r| r.mode == "ar").map_or(f64::NAN, |r| r.accuracy);
    let student_static =
        student_results.iter().find(|r| r.mode == "static").map_or(f64::NAN, |r| r.accuracy);
    let headline = format!(
        "student static accuracy {:.1}% = {:.0}% of the teacher's AR accuracy {:.1}%",
        100.0 * student_static,
        100.0 * student_static / reference,
        100.0 * reference
    );
    let markdown = format!(
        "# Built-in conversion: teacher vs student\n\n{} test problems, block size {}.\n\n## Teacher (AR model; static/dynamic read its logits shifted)\n\n{}\n## Student\n\n{}\n{headline}\n",
        items.len(),
        config.block_size,
        markdown_table(&teacher_results),
        markdown_table(&student_results)
    );
    let report = serde_json::json!({ "teacher": teacher_results, "student": student_results, "teacher_ar_accuracy": reference, "student_static_accuracy": student_static });
    let dir = config.out.join("eval");
    write_report(&dir, &report, &markdown)?;
    println!("{markdown}");
    println!("report:  {}/eval.md", dir.display());
    Ok(())
}
