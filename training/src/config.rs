//! Every hyper-parameter of a run, in one serialisable struct: read from `--config
//! file.toml` (flags override it) and saved as `config.json` next to the checkpoints so a
//! run can be resumed or reproduced.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::curriculum::{Curriculum, RampShape};
use crate::objective::{Divergence, Objective};
use crate::state::StateSelection;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// The autoregressive model to convert (HF directory or .gguf); also the frozen teacher.
    pub teacher: PathBuf,
    /// JSONL prompts (`prompt` or `messages`; `answer` for the bd3lm objective).
    pub prompts: PathBuf,
    /// Output directory: checkpoints, metrics, plots, the exported model.
    pub out: PathBuf,
    pub objective: Objective,
    /// Render prompts with the teacher's chat template.
    pub chat: bool,
    pub block_size: usize,
    /// Dynamic commit threshold γ of the rollout sampler.
    pub threshold: f32,
    /// Rollout sampling temperature.
    pub temperature: f32,
    /// Distill on the teacher's top-k tokens only (None = full vocabulary).
    pub top_k_logits: Option<usize>,
    pub divergence: DivergenceName,
    pub state_selection: StateSelectionName,
    pub lr: f64,
    pub final_lr: f64,
    /// Linear warmup, in optimizer steps.
    pub warmup: usize,
    pub batch_size: usize,
    pub grad_accum: usize,
    pub max_grad_norm: f64,
    pub rollout_len_min: usize,
    pub rollout_len_max: usize,
    /// Rollout steps to go from the minimum to the maximum rollout length.
    pub rollout_len_ramp: usize,
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
    pub seed: u64,
    /// Faults injected by tests; never read from files or flags, never saved.
    #[serde(skip)]
    pub faults: FaultInjection,
}

/// Faults a test injects into a run to check that the numerical guard and crash recovery
/// work. Empty (the default) in every real run.
#[derive(Debug, Clone, Default)]
pub struct FaultInjection {
    /// Global steps whose loss is multiplied by NaN (so are all their gradients).
    pub nan_loss_at: Vec<usize>,
    /// Global steps whose gradients are made NaN while the loss stays finite.
    pub nan_grads_at: Vec<usize>,
    /// Called with each checkpoint's temporary file after it is written and synced, just
    /// before it is renamed into place.
    pub before_rename: Option<crate::checkpoint::BeforeRename>,
}

impl PartialEq for FaultInjection {
    /// Hooks compare by presence (function addresses are not meaningful).
    fn eq(&self, other: &Self) -> bool {
        self.nan_loss_at == other.nan_loss_at
            && self.nan_grads_at == other.nan_grads_at
            && self.before_rename.is_some() == other.before_rename.is_some()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DivergenceName {
    ForwardKl,
    ReverseKl,
    Jsd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StateSelectionName {
    PerBlock,
    Trajectory,
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
            block_size: 4,
            threshold: 0.9,
            temperature: 1.0,
            top_k_logits: None,
            divergence: DivergenceName::ForwardKl,
            state_selection: StateSelectionName::PerBlock,
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

#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error("invalid setting `{field}`: {message}")]
    Invalid { field: &'static str, message: String },
}

impl TrainConfig {
    pub fn from_toml_file(path: &Path) -> Result<Self, ConfigFileError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigFileError::File { path: shown.clone(), message: e.to_string() })?;
        toml::from_str(&text)
            .map_err(|e| ConfigFileError::File { path: shown, message: e.to_string() })
    }

    pub fn divergence(&self) -> Divergence {
        match self.divergence {
            DivergenceName::ForwardKl => Divergence::ForwardKl,
            DivergenceName::ReverseKl => Divergence::ReverseKl,
            DivergenceName::Jsd => Divergence::Jsd,
        }
    }

    pub fn state_selection(&self) -> StateSelection {
        match self.state_selection {
            StateSelectionName::PerBlock => StateSelection::PerBlock,
            StateSelectionName::Trajectory => StateSelection::Trajectory,
        }
    }

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
        if !(self.threshold > 0.0 && self.threshold <= 1.0) {
            return bad("threshold", format!("{} is outside (0, 1]", self.threshold));
        }
        if !(self.temperature >= 0.0) {
            return bad("temperature", format!("{} must be ≥ 0", self.temperature));
        }
        if self.top_k_logits == Some(0) {
            return bad(
                "top_k_logits",
                "must be at least 1 (omit it for the full vocabulary)".into(),
            );
        }
        if self.top_k_logits.is_some() && self.divergence != DivergenceName::ForwardKl {
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
        if !(self.max_grad_norm > 0.0) {
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
                TrainConfig {
                    top_k_logits: Some(16),
                    divergence: DivergenceName::Jsd,
                    ..base.clone()
                },
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
