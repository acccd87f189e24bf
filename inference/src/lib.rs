//! `opdlm-inference`: block-diffusion decoding (static, dynamic, entropy-bounded and
//! margin commit rules) and autoregressive decoding, sharing one loop and one exact
//! block KV cache. Training rollouts call the same [`generate`].

#![warn(missing_docs)]

pub mod block_diffusion;
pub mod commit;
pub mod prompts;
mod row;
pub mod sampling;
pub mod stats;
pub mod stream;
pub mod trajectory;
mod window;

pub use block_diffusion::{generate, BlockEvent, DecodeConfig, DecodeError, Generation};
pub use commit::{CommitRule, Sampler};
pub use sampling::SamplingConfig;
pub use stats::DecodeStats;
pub use stream::TextStream;
pub use trajectory::{RowOutput, VisitedState};
