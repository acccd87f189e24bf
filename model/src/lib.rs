//! `opdlm-model`: one transformer for the Llama family (Llama/SmolLM2, Qwen2/2.5, Qwen3),
//! generic over the Burn backend, usable as a causal teacher and as a block-causal
//! diffusion student with an exact block KV cache.

#![warn(missing_docs)]

pub mod atomic;
pub mod attention;
pub mod block;
pub mod cache;
pub mod config;
pub mod load;
pub mod logits;
pub mod mask;
pub mod mlp;
pub mod quant;
pub mod rope;
pub mod token_ids;
pub mod tokenizer;
pub mod transformer;

pub use cache::{CacheUse, KvCache};
pub use config::{Architecture, DiffusionConfig, ModelConfig, DEFAULT_BLOCK_SIZE};
pub use load::{load_model, load_pretrained, load_tokenizer, LoadError, Pretrained};
pub use logits::{exclude_tokens, TokenExclusion, NEVER_LOGIT};
pub use mask::{AttentionMode, Layout};
pub use quant::WeightFormat;
pub use token_ids::{padded_token_ids, token_ids};
pub use tokenizer::{stop_tokens, ChatMessage, TextTokenizer};
pub use transformer::Transformer;
