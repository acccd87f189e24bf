//! Why a run could not start, continue or finish: each variant names what to fix.

use std::path::Path;

/// A failed [`train`](crate::train) (or checkpoint read), with the file or step at fault.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The settings are unusable.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigFileError),
    /// The teacher could not be loaded.
    #[error(transparent)]
    Load(#[from] opdlm_model::LoadError),
    /// The prompt file cannot be trained on.
    #[error(transparent)]
    Prompts(#[from] crate::data::PromptError),
    /// The teacher and the settings do not fit together.
    #[error("{0}")]
    Data(String),
    /// A file of the run could not be read or written.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// The operating system's or parser's message.
        message: String,
    },
    /// `--out` holds another run's checkpoints.
    #[error("{0} already holds checkpoints: pass --resume to continue that run, or choose another --out")]
    OutputInUse(String),
    /// A checkpoint could not be written, or does not match its manifest.
    #[error(transparent)]
    Checkpoint(#[from] crate::checkpoint::CheckpointError),
    /// A checkpoint could not be written: the run stopped; `kept` says what can resume.
    #[error("{message}; the run stopped. {kept}")]
    CheckpointWrite {
        /// The write error.
        message: String,
        /// Which checkpoint a resumed run starts from, in words.
        kept: String,
    },
    /// Too many non-finite steps in a row.
    #[error("training stopped: {message}. {kept}")]
    Diverged {
        /// What the numerical guard saw.
        message: String,
        /// Which checkpoint a resumed run starts from, in words.
        kept: String,
    },
    /// A step's rollout failed (the sampler rejected the batch).
    #[error("the rollout of step {step} failed: {source}. {kept}")]
    Rollout {
        /// The global step (0-based).
        step: usize,
        /// What the sampler said.
        source: crate::rollout::RolloutError,
        /// Which checkpoint a resumed run starts from, in words.
        kept: String,
    },
}

impl TrainError {
    /// An I/O failure on `path`.
    pub(crate) fn io(path: &Path, e: impl std::fmt::Display) -> Self {
        Self::Io { path: path.display().to_string(), message: e.to_string() }
    }
}
