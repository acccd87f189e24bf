//! The student before training: the teacher's weights turned into a block-diffusion model
//! (mask token added, block-causal attention, no logit shift). Training, checkpoint reads
//! and the bench all start from this one conversion.

use burn::prelude::Backend;
use opdlm_model::{load_pretrained, stop_tokens, TextTokenizer, Transformer};

use crate::config::TrainConfig;
use crate::error::TrainError;

/// The untrained student of `config`'s teacher, with the teacher's tokenizer and stop
/// tokens.
pub struct InitialStudent<B: Backend> {
    /// The converted, untrained model.
    pub model: Transformer<B>,
    /// The teacher's tokenizer (the student shares it; the mask token is past its end).
    pub tokenizer: TextTokenizer,
    /// Tokens that end a response: the config's EOS ids, then the tokenizer's EOS.
    pub stop_tokens: Vec<u32>,
}

/// Loads `config.teacher` and converts it for `config.block_size`.
pub fn initial_student<B: Backend>(
    config: &TrainConfig,
    device: &B::Device,
) -> Result<InitialStudent<B>, TrainError> {
    let pretrained = load_pretrained::<B>(&config.teacher, device)?;
    let stop_tokens = stop_tokens(&pretrained.model.config().eos_token_ids, &pretrained.tokenizer);
    let tokenizer = pretrained.tokenizer;
    let model = pretrained.model.into_diffusion(tokenizer.vocab_size(), config.block_size, false);
    Ok(InitialStudent { model, tokenizer, stop_tokens })
}
