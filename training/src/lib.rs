//! `opdlm-training`: on-policy distillation of an autoregressive teacher into a
//! block-diffusion student (OPDLM), and the paper's baselines, trained through
//! burn-train's `Learner`.
//!
//! The method, bottom-up: [`state`](select_masked) picks which visited state `x_t` a
//! rollout trains on; [`Loss`] holds the whole loss (objective, weights, stop-token rule,
//! packing, divergences); [`make_examples`](RolloutSettings) produces a step's examples
//! with the inference sampler; [`Distiller`] is the Learner's `TrainStep`; [`train`] runs
//! a whole conversion with crash-safe checkpoints and `--resume`.

#![warn(missing_docs)]

mod backend;
mod batch_totals;
mod checkpoint;
mod clip;
mod config;
mod curriculum;
mod data;
mod error;
mod faults;
mod guard;
mod loss;
mod metrics;
mod nodes;
pub mod plot;
pub mod progress;
mod rollout;
mod schedule;
mod state;
mod step;
mod student;
mod trainer;

pub use backend::TrainBackend;
pub use checkpoint::{
    latest_checkpoint, load_checkpoint_student, verify_checkpoint, CheckpointError, Manifest,
    ManifestFile,
};
pub use clip::clip_global_norm;
pub use config::{ConfigFileError, TrainConfig};
pub use curriculum::{Curriculum, RampShape};
pub use data::{PromptBatch, PromptError, PromptItem};
pub use error::TrainError;
pub use faults::{BeforeRename, FaultInjection};
pub use guard::NumericGuard;
pub use loss::{
    student_noisy_inputs, BatchLoss, Divergence, Example, Loss, Objective, ResponseSource,
    StudentPasses, Targets,
};
pub use metrics::read_log;
pub use nodes::{NodeSettings, EXIT_PEER_LOST};
pub use rollout::{make_examples, RolloutError, RolloutSettings, RolloutStats};
pub use schedule::WarmupCosine;
pub use state::{random_mask, response_blocks, select_masked, MaskingSchedule, StateSelection};
pub use step::{Distiller, StepOutput, StepSettings};
pub use student::{initial_student, InitialStudent};
#[cfg(feature = "ddp")]
pub use trainer::train_ddp;
pub use trainer::{optimizer, train, train_data_parallel, train_multi_node, TrainSummary};
