//! Every hyper-parameter of a run, in one serialisable struct: read from `--config
//! file.toml` (flags override it) and saved as `config.json` next to the checkpoints so a
//! run can be resumed or reproduced.

use std::path::{Path, PathBuf};

use opdlm_inference::{CommitRule, SamplingConfig};
use serde::{Deserialize, Serialize};

use crate::curriculum::{Curriculum, RampShape};
use crate::faults::FaultInjection;
use crate::loss::{Divergence, Loss, Objective, StudentPasses};
use crate::state::StateSelection;

/// Every setting of a conversion run. [`TrainConfig::default`] is the one place where
/// defaults live; `--config` files and flags override it field by field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// The autoregressive model to convert (HF directory or .gguf); also the frozen teacher.
    pub teacher: PathBuf,
    /// JSONL prompts (`prompt` or `messages`; `answer` for the bd3lm objective).
    pub prompts: PathBuf,
    /// Output directory: checkpoints, metrics, plots, the exported model.
    pub out: PathBuf,
    /// What the student trains on: OPDLM or one of the paper's baselines.
    pub objective: Objective,
    /// Render prompts with the teacher's chat template.
    pub chat: bool,
    /// Block size of the student: slots denoised together, bidirectional inside a block.
    pub block_size: usize,
    /// Dynamic commit threshold γ of the rollout sampler.
    pub threshold: f32,
    /// Rollout sampling temperature.
    pub temperature: f32,
    /// Distill on the teacher's top-k tokens only (None = full vocabulary).
    pub top_k_logits: Option<usize>,
    /// How teacher and student distributions are compared (distillation objectives).
    pub divergence: Divergence,
    /// Which visited state of a rollout OPDLM trains on.
    pub state_selection: StateSelection,
    /// How the student's pass over a batch is split: one per prompt length (CPU) or one
    /// for the whole batch (GPU); the loss is the same up to float rounding.
    pub student_passes: StudentPasses,
    /// Peak learning rate (after warmup).
    pub lr: f64,
    /// Learning rate at the end of the cosine decay.
    pub final_lr: f64,
    /// Linear warmup, in optimizer steps.
    pub warmup: usize,
    /// Prompts per rollout step.
    pub batch_size: usize,
    /// Rollout steps whose gradients are summed into one optimizer step.
    pub grad_accum: usize,
    /// Gradients are clipped to this global norm.
    pub max_grad_norm: f64,
    /// Maximum rollout length at the first step (the curriculum's start).
    pub rollout_len_min: usize,
    /// Maximum rollout length once the curriculum has ramped up.
    pub rollout_len_max: usize,
    /// Rollout steps to go from the minimum to the maximum rollout length.
    pub rollout_len_ramp: usize,
    /// Shape of the rollout-length ramp.
    pub rollout_len_shape: RampShape,
    /// Total rollout (training) steps.
    pub steps: usize,
    /// Checkpoint every this many steps (one Learner epoch).
    pub checkpoint_every: usize,
    /// Checkpoints kept on disk (the newest ones); 0 keeps all.
    pub keep_checkpoints: usize,
    /// Optimizer steps in a row with a non-finite loss or gradient (each one skipped)
    /// after which the run stops.
    pub max_bad_steps: usize,
    /// Seed of the data order, rollouts and state selection.
    pub seed: u64,
    /// Faults injected by tests; never read from files or flags, never saved.
    #[serde(skip)]
    pub faults: FaultInjection,
}

impl Default for TrainConfig {
    /// The paper's settings (Table 13) where they fit a CPU; rollout lengths are shorter.
    fn default() -> Self {
        Self {
            teacher: PathBuf::new(),
            prompts: PathBuf::new(),
            out: PathBuf::from("runs/opdlm"),
            objective: Objective::Opdlm,
            chat: false,
            block_size: opdlm_model::DEFAULT_BLOCK_SIZE,
            threshold: 0.9,
            temperature: 1.0,
            top_k_logits: None,
            divergence: Divergence::ForwardKl,
            state_selection: StateSelection::PerBlock,
            student_passes: StudentPasses::PerPromptLength,
            lr: 1e-5,
            final_lr: 1e-6,
            warmup: 5,
            batch_size: 8,
            grad_accum: 1,
            max_grad_norm: 1.0,
            rollout_len_min: 16,
            rollout_len_max: 128,
            rollout_len_ramp: 10,
            rollout_len_shape: RampShape::Cosine,
            steps: 100,
            checkpoint_every: 10,
            keep_checkpoints: 2,
            max_bad_steps: 5,
            seed: 0,
            faults: FaultInjection::default(),
        }
    }
}

/// A config that cannot be used, naming the file or the setting at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    /// The TOML file could not be read or parsed.
    #[error("{path}: {message}")]
    File {
        /// The config file.
        path: String,
        /// The reader's or parser's message (with line and column).
        message: String,
    },
    /// A setting is out of range.
    #[error("invalid setting `{field}`: {message}")]
    Invalid {
        /// The setting's name, as in the file.
        field: &'static str,
        /// What range it needs.
        message: String,
    },
}

impl TrainConfig {
    /// Reads a TOML file of settings (snake_case keys); missing keys keep their defaults.
    pub fn from_toml_file(path: &Path) -> Result<Self, ConfigFileError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigFileError::File { path: shown.clone(), message: e.to_string() })?;
        toml::from_str(&text)
            .map_err(|e| ConfigFileError::File { path: shown, message: e.to_string() })
    }

    /// The objective bound to its state rule and targets.
    pub fn loss(&self) -> Loss {
        Loss::new(self.objective, self.state_selection, self.divergence, self.top_k_logits)
            .with_student_passes(self.student_passes)
    }

    /// The rollout-length schedule.
    pub fn curriculum(&self) -> Curriculum {
        Curriculum {
            min_len: self.rollout_len_min,
            max_len: self.rollout_len_max,
            ramp_steps: self.rollout_len_ramp,
            shape: self.rollout_len_shape,
        }
    }

    /// Learner epochs: one per checkpoint interval.
    pub fn epochs(&self) -> usize {
        self.steps.div_ceil(self.checkpoint_every)
    }

    /// Rejects settings that cannot work, naming the setting.
    pub fn validate(&self) -> Result<(), ConfigFileError> {
        let bad = |field, message: String| Err(ConfigFileError::Invalid { field, message });
        if self.teacher.as_os_str().is_empty() {
            return bad("teacher", "no teacher model given".into());
        }
        if self.prompts.as_os_str().is_empty() {
            return bad("prompts", "no prompt file given".into());
        }
        if self.block_size == 0 {
            return bad("block_size", "must be at least 1".into());
        }
        // The rollout sampler's settings, checked by the sampler's own validation.
        if let Err(message) = (CommitRule::Dynamic { threshold: self.threshold }).validate() {
            return bad("threshold", message);
        }
        let sampling = SamplingConfig { temperature: self.temperature, top_k: 0, top_p: 1.0 };
        if let Err(message) = sampling.validate() {
            return bad("temperature", message);
        }
        if self.top_k_logits == Some(0) {
            return bad(
                "top_k_logits",
                "must be at least 1 (omit it for the full vocabulary)".into(),
            );
        }
        if self.top_k_logits.is_some() && self.divergence != Divergence::ForwardKl {
            return bad("top_k_logits", "teacher top-k is only defined for forward KL".into());
        }
        if !(self.lr > 0.0 && self.lr <= 1.0 && self.final_lr > 0.0 && self.final_lr <= self.lr) {
            return bad(
                "lr",
                format!("need 0 < final_lr ({}) ≤ lr ({}) ≤ 1", self.final_lr, self.lr),
            );
        }
        for (field, value) in [
            ("batch_size", self.batch_size),
            ("grad_accum", self.grad_accum),
            ("steps", self.steps),
            ("checkpoint_every", self.checkpoint_every),
            ("rollout_len_max", self.rollout_len_max),
            ("max_bad_steps", self.max_bad_steps),
        ] {
            if value == 0 {
                return bad(field, "must be at least 1".into());
            }
        }
        if self.rollout_len_min == 0 || self.rollout_len_min > self.rollout_len_max {
            return bad(
                "rollout_len_min",
                format!(
                    "need 1 ≤ rollout_len_min ({}) ≤ rollout_len_max ({})",
                    self.rollout_len_min, self.rollout_len_max
                ),
            );
        }
        if self.max_grad_norm.is_nan() || self.max_grad_norm <= 0.0 {
            return bad("max_grad_norm", "must be positive".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_overrides_defaults_and_rejects_unknown_keys() {
        let config: TrainConfig = toml::from_str(
            "teacher = \"t.gguf\"\nprompts = \"p.jsonl\"\nobjective = \"bd3lm\"\nblock_size = 8\n",
        )
        .unwrap();
        assert_eq!(config.objective, Objective::Bd3lm);
        assert_eq!(config.block_size, 8);
        assert_eq!(config.lr, TrainConfig::default().lr);
        assert!(config.validate().is_ok());
        let err = toml::from_str::<TrainConfig>("blok_size = 8\n").unwrap_err().to_string();
        assert!(err.contains("blok_size"), "{err}");
        // Test faults are neither read nor saved.
        assert!(toml::from_str::<TrainConfig>("faults = {}\n").is_err());
        assert!(!serde_json::to_string(&config).unwrap().contains("faults"));
    }

    #[test]
    fn invalid_settings_are_named() {
        let base =
            TrainConfig { teacher: "t".into(), prompts: "p".into(), ..TrainConfig::default() };
        let cases = [
            (TrainConfig { threshold: 1.5, ..base.clone() }, "threshold"),
            (TrainConfig { block_size: 0, ..base.clone() }, "block_size"),
            (
                TrainConfig { top_k_logits: Some(16), divergence: Divergence::Jsd, ..base.clone() },
                "top_k_logits",
            ),
            (TrainConfig { rollout_len_min: 500, ..base.clone() }, "rollout_len_min"),
            (TrainConfig { max_bad_steps: 0, ..base.clone() }, "max_bad_steps"),
        ];
        for (config, field) in cases {
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains(field), "{err}");
        }
    }
}
