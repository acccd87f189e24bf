//! `cargo xtask train`: OPDLM (or a baseline) through burn-train's Learner.
//!
//! Settings come in three layers: [`TrainConfig::default`] (the one place defaults live),
//! then `--config file.toml`, then flags. Without `--teacher`, `--prompts` and `--config`
//! the base is the built-in run's settings instead (`builtin_settings`), and the run ends
//! with the teacher-vs-student evaluation.

use opdlm_training::TrainBackend;
use std::path::PathBuf;

use anyhow::Context;
use burn::backend::Autodiff;
use burn::prelude::Backend;
use clap::Args;
use opdlm_harness::builtin;
use opdlm_training::{
    train_data_parallel, train_multi_node, Divergence, NodeSettings, Objective, RampShape,
    StateSelection, StudentPasses, TrainConfig, TrainSummary,
};
use serde::Serialize;

use crate::backend::{dispatch_devices, BackendKind, DevicesTask};

/// Flags of `cargo xtask train`. Every setting flag overrides the same key of `--config`
/// (snake_case), which overrides the defaults listed after the flags in `--help`.
#[derive(Debug, Args, Serialize)]
pub struct TrainArgs {
    /// TOML file with any of the settings below (snake_case keys); flags override it.
    #[arg(long)]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Teacher / initial student: Hugging Face directory or .gguf file. Without --teacher,
    /// --prompts and --config: the built-in tiny teacher on the built-in tasks, evaluated
    /// against the student at the end (the default run).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub teacher: Option<PathBuf>,
    /// JSONL prompts: {"prompt": ...} or {"messages": [...]}, with "answer" for --objective bd3lm.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompts: Option<PathBuf>,
    /// Output directory (checkpoints, metrics.jsonl, curves.png, model/).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub out: Option<PathBuf>,
    /// Continue the run in --out from its latest checkpoint.
    #[arg(long)]
    #[serde(skip)]
    pub resume: bool,
    /// Training objective.
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub objective: Option<Objective>,
    /// Render prompts with the teacher's chat template.
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub chat: bool,
    /// Block size of the student.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block_size: Option<usize>,
    /// Rollout sampler's dynamic confidence threshold γ.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f32>,
    /// Rollout sampling temperature.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    /// Distill on the teacher's top-k tokens only, without renormalising (default: the
    /// full vocabulary).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_k_logits: Option<usize>,
    /// Divergence between teacher and student distributions.
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub divergence: Option<Divergence>,
    /// Which visited state a rollout trains on (per-block: the reference's default;
    /// trajectory: paper Algorithm 1).
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_selection: Option<StateSelection>,
    /// How the student's forward and backward over a batch are split: per-prompt-length
    /// (one pass per distinct prompt length, no padding computed: best on the CPU) or one
    /// (the whole batch padded into one pass: fewest kernel launches, for GPUs).
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub student_passes: Option<StudentPasses>,
    /// Peak learning rate.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lr: Option<f64>,
    /// Final learning rate of the cosine decay.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub final_lr: Option<f64>,
    /// Warmup, in optimizer steps.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warmup: Option<usize>,
    /// Prompts per rollout step.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<usize>,
    /// Rollout steps per optimizer step.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grad_accum: Option<usize>,
    /// Clip gradients to this global norm.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_grad_norm: Option<f64>,
    /// Initial maximum rollout length.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout_len_min: Option<usize>,
    /// Final maximum rollout length.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout_len_max: Option<usize>,
    /// Rollout steps to reach the final length.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout_len_ramp: Option<usize>,
    /// Ramp shape: cosine (reference code) or linear (paper).
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout_len_shape: Option<RampShape>,
    /// Total rollout steps.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps: Option<usize>,
    /// Checkpoint every N rollout steps.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checkpoint_every: Option<usize>,
    /// Checkpoints kept on disk, newest first; 0 keeps all.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_checkpoints: Option<usize>,
    /// Steps with a non-finite loss or gradient are skipped; this many in a row stop the run.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_bad_steps: Option<usize>,
    /// Random seed (data order, rollouts, state selection).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Compute backend.
    #[arg(long, value_enum, default_value_t = BackendKind::Ndarray)]
    #[serde(skip)]
    pub backend: BackendKind,
    /// Data-parallel over this many devices of --backend (GPUs 0..N-1; on a CPU backend,
    /// N workers sharing the CPU, for checking a setup). Each device rolls out and trains
    /// on its share of every step's --batch-size prompts (shares differ by at most one
    /// prompt when the batch does not divide; it must hold at least N prompts); the first
    /// device sums the gradients, clips them and steps the optimizer.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    #[serde(skip)]
    pub devices: u16,
    /// How several --devices share the work: main-device (burn-train's multi-device
    /// strategy, any backend: the first device gathers the gradients, clips them and
    /// steps) or ddp (burn-train's distributed data parallelism, --backend cuda only, built
    /// with the `ddp` feature: every device steps its own copy of the weights, gradients
    /// are summed over NCCL during the backward pass).
    #[arg(long, value_enum, default_value_t = Strategy::MainDevice)]
    #[serde(skip)]
    pub strategy: Strategy,
    /// Processes (usually machines) training as one, on burn-collective: start the same
    /// command on each with its own --node-rank. Each takes its share of every step's
    /// batch; they sum gradients every step. Rank 0 writes --out and the export; rank R
    /// keeps its own checkpoints in <out>/rank-R. The transport is unauthenticated: keep
    /// the nodes on a trusted network.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    #[serde(skip)]
    pub nodes: u16,
    /// This process's rank among --nodes (0 serves the coordinator).
    #[arg(long, default_value_t = 0)]
    #[serde(skip)]
    pub node_rank: u16,
    /// host:port of the coordinator, which rank 0 serves (on its own --node-address host).
    #[arg(long, default_value = "127.0.0.1:29500")]
    #[serde(skip)]
    pub coordinator: String,
    /// host:port where this node serves its tensors to the others, listening on that
    /// host's interface only [default: the coordinator's host, port 29501 + rank].
    #[arg(long)]
    #[serde(skip)]
    pub node_address: Option<String>,
    /// Seconds a node waits for the others in any one exchange before it stops with an
    /// error naming the ranks that did not answer (a rollout step must fit in it).
    #[arg(long, default_value_t = 600.0)]
    #[serde(skip)]
    pub collective_timeout: f64,
}

/// `--strategy`: how the devices of one machine share a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Strategy {
    /// The first device gathers the gradients, clips them and steps (any backend).
    MainDevice,
    /// Distributed data parallelism over NCCL (CUDA, `ddp` build).
    Ddp,
}

/// `--help`'s closing table: every setting's default, and what the bare `cargo xtask
/// train` (the built-in run) uses instead, both read from the code that applies them.
pub fn defaults_help() -> String {
    let to_map = |config: &TrainConfig| match serde_json::to_value(config) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => unreachable!("a config serialises to an object"),
    };
    let defaults = to_map(&TrainConfig::default());
    let builtin = to_map(&builtin::builtin_settings(&builtin::default_out(), 0));
    let show = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) if s.is_empty() => "(none)".to_string(),
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "(none)".to_string(),
        // f32 settings widen to f64 on the way (0.9 → 0.8999999761581421): show them short.
        serde_json::Value::Number(n) if n.is_f64() => {
            let v = n.as_f64().unwrap_or(f64::NAN);
            if f64::from(v as f32) == v {
                (v as f32).to_string()
            } else {
                v.to_string()
            }
        }
        other => other.to_string(),
    };
    let mut out = String::from(
        "Settings (flag = config key with '-' for '_'): the default with --teacher/--prompts/--config,\nand what the bare `cargo xtask train` (the built-in run) uses:\n\n",
    );
    out += &format!("  {:<20} {:<22} {}\n", "setting", "default", "built-in run");
    for (key, value) in &defaults {
        let builtin_value = builtin.get(key).map(show).unwrap_or_default();
        out += &format!("  {key:<20} {:<22} {builtin_value}\n", show(value));
    }
    out
}

impl TrainArgs {
    /// No teacher, prompts or config file given: convert the built-in teacher on the
    /// built-in tasks and evaluate it (the default run).
    fn is_builtin(&self) -> bool {
        self.config.is_none() && self.teacher.is_none() && self.prompts.is_none()
    }

    /// Defaults (or the built-in run), then the TOML file, then the flags given.
    fn config(&self) -> anyhow::Result<TrainConfig> {
        let base = match &self.config {
            Some(path) => TrainConfig::from_toml_file(path)?,
            None if self.is_builtin() => {
                let out = self.out.clone().unwrap_or_else(builtin::default_out);
                let seed = self.seed.unwrap_or(0);
                // Each node of a multi-node run writes the built-in prompts (the same: they
                // come from the seed) into its own directory: nodes may share `--out`.
                let prompts_dir = match self.node_rank {
                    0 => out.clone(),
                    rank => out.join(format!("rank-{rank}")),
                };
                let config =
                    builtin::builtin_train_config(&prompts_dir, seed).with_context(|| {
                        format!("writing the built-in prompts into {}", prompts_dir.display())
                    })?;
                TrainConfig { out, ..config }
            }
            None => TrainConfig::default(),
        };
        let config = self.apply_to(base)?;
        config.validate()?;
        Ok(config)
    }

    /// The multi-node settings of `--nodes` > 1.
    fn node_settings(&self) -> anyhow::Result<Option<NodeSettings>> {
        if self.nodes == 1 {
            return Ok(None);
        }
        if self.devices > 1 {
            anyhow::bail!("--nodes with --devices > 1: start one node per device instead");
        }
        let address = match &self.node_address {
            Some(address) => address.clone(),
            None => {
                let (host, _) = self.coordinator.rsplit_once(':').with_context(|| {
                    format!("--coordinator `{}` is not host:port", self.coordinator)
                })?;
                format!("{host}:{}", 29501 + u32::from(self.node_rank))
            }
        };
        if !(self.collective_timeout > 0.0 && self.collective_timeout.is_finite()) {
            anyhow::bail!("--collective-timeout must be a positive number of seconds");
        }
        Ok(Some(NodeSettings {
            nodes: usize::from(self.nodes),
            rank: usize::from(self.node_rank),
            coordinator: self.coordinator.clone(),
            address,
            timeout: std::time::Duration::from_secs_f64(self.collective_timeout),
        }))
    }

    /// `base` with every flag that was given written over its key.
    fn apply_to(&self, base: TrainConfig) -> anyhow::Result<TrainConfig> {
        let mut merged = serde_json::to_value(&base)?;
        let serde_json::Value::Object(flags) = serde_json::to_value(self)? else {
            unreachable!("flags serialise to an object")
        };
        let target = merged.as_object_mut().expect("a config serialises to an object");
        for (key, value) in flags {
            target.insert(key, value);
        }
        let faults = base.faults;
        Ok(TrainConfig { faults, ..serde_json::from_value(merged)? })
    }
}

struct TrainTask {
    config: TrainConfig,
    resume: bool,
    /// This process's place in a multi-node run (`None`: the whole run).
    nodes: Option<NodeSettings>,
    /// Evaluate teacher and student on the built-in tasks' test split afterwards.
    builtin: bool,
}

impl TrainArgs {
    /// Refuses a `--strategy ddp` that cannot run.
    fn check_strategy(&self) -> anyhow::Result<()> {
        if self.strategy == Strategy::MainDevice {
            return Ok(());
        }
        if self.backend != BackendKind::Cuda {
            anyhow::bail!(
                "--strategy ddp runs on --backend cuda only (burn 0.21 implements DDP for CUDA)"
            );
        }
        if self.devices < 2 {
            anyhow::bail!("--strategy ddp needs --devices 2 or more");
        }
        if self.nodes > 1 {
            anyhow::bail!("--strategy ddp trains on one machine; --nodes uses burn-collective");
        }
        Ok(())
    }
}

/// Runs `cargo xtask train`.
pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    let nodes = args.node_settings()?;
    args.check_strategy()?;
    let task = TrainTask { config, resume: args.resume, builtin: args.is_builtin(), nodes };
    if args.strategy == Strategy::Ddp {
        return task.run_ddp(usize::from(args.devices));
    }
    dispatch_devices(args.backend, usize::from(args.devices), task)
}

impl DevicesTask for TrainTask {
    fn run<B: TrainBackend>(self, devices: Vec<B::Device>) -> anyhow::Result<()> {
        let summary = match &self.nodes {
            Some(nodes) => train_multi_node::<Autodiff<B>>(
                &self.config,
                &devices[0],
                nodes.clone(),
                self.resume,
            ),
            None => train_data_parallel::<Autodiff<B>>(&self.config, &devices, self.resume),
        }
        .context("training failed")?;
        self.report::<B>(summary, &devices[0])
    }
}

impl TrainTask {
    /// `--strategy ddp` on CUDA GPUs 0..count, or a rebuild with the `ddp` feature.
    fn run_ddp(self, count: usize) -> anyhow::Result<()> {
        #[cfg(feature = "ddp")]
        {
            use burn::backend::cuda::CudaDevice;
            use burn::backend::Cuda;
            let devices: Vec<CudaDevice> = (0..count).map(CudaDevice::new).collect();
            let summary =
                opdlm_training::train_ddp::<Autodiff<Cuda>>(&self.config, &devices, self.resume)
                    .context("training failed")?;
            self.report::<Cuda>(summary, &devices[0])
        }
        #[cfg(not(feature = "ddp"))]
        {
            let _ = (self, count);
            crate::backend::rebuild_with_feature("ddp")
        }
    }

    /// Prints where the run left its results; after the built-in run, evaluates teacher
    /// and student on the built-in tasks.
    fn report<B: Backend>(self, summary: TrainSummary, device: &B::Device) -> anyhow::Result<()> {
        // Only rank 0 of a multi-node run has the export to evaluate.
        let evaluate = self.builtin && self.nodes.as_ref().is_none_or(|n| n.rank == 0);
        println!(
            "trained {} steps on {:.0} tokens: loss {:.4} → {:.4}",
            summary.steps, summary.tokens_total, summary.first_loss, summary.last_loss
        );
        println!("model:   {}", summary.model_dir.display());
        println!("metrics: {}", summary.metrics.display());
        if let Some(plot) = summary.plot {
            println!("curves:  {}", plot.display());
        }
        if evaluate {
            let markdown =
                builtin::compare_on_builtin_tasks::<B>(&self.config, &summary.model_dir, device)?;
            println!("{markdown}");
            println!("report:  {}/eval.md", self.config.out.join("eval").display());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: TrainArgs,
    }

    fn parse(flags: &[&str]) -> TrainArgs {
        Cli::parse_from(std::iter::once("train").chain(flags.iter().copied())).args
    }

    #[test]
    fn every_flag_overrides_its_config_key_and_nothing_else() {
        let args = parse(&[
            "--teacher",
            "t.gguf",
            "--prompts",
            "p.jsonl",
            "--objective",
            "opdlm-off",
            "--divergence",
            "jsd",
            "--state-selection",
            "trajectory",
            "--student-passes",
            "one",
            "--rollout-len-shape",
            "linear",
            "--lr",
            "0.01",
            "--final-lr",
            "0.001",
            "--batch-size",
            "3",
            "--chat",
            "--max-grad-norm",
            "2.5",
            "--seed",
            "9",
        ]);
        let config = args.apply_to(TrainConfig::default()).unwrap();
        let expected = TrainConfig {
            teacher: "t.gguf".into(),
            prompts: "p.jsonl".into(),
            objective: Objective::OpdlmOff,
            divergence: Divergence::Jsd,
            state_selection: StateSelection::Trajectory,
            student_passes: StudentPasses::One,
            rollout_len_shape: RampShape::Linear,
            lr: 0.01,
            final_lr: 0.001,
            batch_size: 3,
            chat: true,
            max_grad_norm: 2.5,
            seed: 9,
            ..TrainConfig::default()
        };
        assert_eq!(config, expected);
    }

    #[test]
    fn no_flags_leave_the_base_unchanged() {
        let base = builtin::builtin_settings(std::path::Path::new("runs/x"), 3);
        assert_eq!(parse(&[]).apply_to(base.clone()).unwrap(), base);
    }

    #[test]
    fn help_lists_the_built_in_runs_settings() {
        let help = defaults_help();
        let lr_line = help.lines().find(|l| l.trim_start().starts_with("lr ")).unwrap();
        assert!(lr_line.contains("0.00001") || lr_line.contains("1e-5"), "{lr_line}");
        assert!(lr_line.contains("0.002"), "{lr_line}");
    }

    #[test]
    fn ddp_is_refused_where_it_cannot_run() {
        let refusal = |flags: &[&str]| parse(flags).check_strategy().unwrap_err().to_string();
        assert!(refusal(&["--strategy", "ddp", "--devices", "2"]).contains("--backend cuda only"));
        let one_device = refusal(&["--strategy", "ddp", "--backend", "cuda"]);
        assert!(one_device.contains("--devices 2 or more"), "{one_device}");
        let nodes = ["--strategy", "ddp", "--backend", "cuda", "--devices", "2", "--nodes", "2"];
        assert!(refusal(&nodes).contains("one machine"));
        assert!(parse(&["--strategy", "ddp", "--backend", "cuda", "--devices", "2"])
            .check_strategy()
            .is_ok());
        assert!(parse(&["--devices", "2"]).check_strategy().is_ok());
    }
}
