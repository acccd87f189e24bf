//! Experiments, each from one commit ([`provenance`]) and each with a report: the
//! data-efficiency comparison of objectives on the built-in tasks, and the conversion of a
//! real chat model (SmolLM2-135M-Instruct) with its before/after evaluation.

mod cache;
pub mod conversion;
pub mod data_efficiency;
pub mod proportions;
mod provenance;
pub mod stats;

use opdlm_model::LoadError;
use opdlm_training::TrainError;

use crate::eval::EvalError;

pub use data_efficiency::{DataEfficiency, Point, Report, Run};

/// Why the experiment stopped.
#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    /// The settings (or the checkout) are unusable.
    #[error("{0}")]
    Settings(String),
    /// A run could not be trained or a checkpoint read.
    #[error("{run}: {source}")]
    Train {
        /// The run that failed.
        run: String,
        /// Why.
        source: TrainError,
    },
    /// The teacher could not be loaded.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// An evaluation failed.
    #[error(transparent)]
    Eval(#[from] EvalError),
    /// A file could not be written.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
}

impl ExperimentError {
    /// A file that could not be written or read, named.
    pub(crate) fn io(path: &std::path::Path, error: impl std::fmt::Display) -> Self {
        Self::Io { path: path.display().to_string(), message: error.to_string() }
    }
}

/// A running total of a run's metrics log (`tokens_total`, `response_tokens_total`) as it
/// stood when the checkpoint after `step` steps was written.
pub(crate) fn consumed_before(log: &[serde_json::Value], step: usize, key: &str) -> f64 {
    log.iter()
        .filter(|v| v["step"].as_u64().is_some_and(|s| (s as usize) < step))
        .filter_map(|v| v[key].as_f64())
        .fold(0.0, f64::max)
}
