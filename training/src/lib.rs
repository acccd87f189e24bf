//! `opdlm-training`: on-policy distillation of an autoregressive teacher into a
//! block-diffusion student (OPDLM), and the paper's baselines, trained through
//! burn-train's `Learner`.

pub mod builtin;
pub mod checkpoint;
pub mod clip;
pub mod config;
pub mod curriculum;
pub mod data;
pub mod eval;
pub mod example;
pub mod experiment;
pub mod guard;
pub mod metrics;
pub mod objective;
pub mod plot;
pub mod pretrain;
pub mod rollout;
pub mod schedule;
pub mod state;
pub mod step;
pub mod tasks;
pub mod trainer;

pub use checkpoint::load_checkpoint_student;
pub use config::TrainConfig;
pub use trainer::{train, TrainError, TrainSummary};
