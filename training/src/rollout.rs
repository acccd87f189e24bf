//! Producing training examples for one step: responses (student rollouts with the
//! inference sampler, teacher generations, or dataset answers), then the state `x_t` and
//! loss weights per the objective ([`Loss::example`]). Token ids flow straight from the
//! sampler: nothing is decoded and re-tokenized.

use std::time::Instant;

use burn::prelude::*;
use opdlm_inference::{
    generate, CommitRule, DecodeConfig, DecodeError, DecodeStats, RowOutput, SamplingConfig,
};
use opdlm_model::Transformer;
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::data::{PromptBatch, PromptItem};
use crate::loss::{Example, Loss, ResponseSource};

/// How the student's rollouts (and the teacher's generations) are sampled.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutSettings {
    /// Slots per block of the student's sampler.
    pub block_size: usize,
    /// Denoising steps per block at most.
    pub steps_per_block: usize,
    /// Dynamic commit threshold γ of the student's sampler.
    pub threshold: f32,
    /// Sampling temperature of rollouts and teacher generations.
    pub temperature: f32,
    /// A response ends at the first of these.
    pub stop_tokens: Vec<u32>,
    /// Length limit of the teacher's generations: they run to the stop token or this
    /// (the run's longest rollout), never to the curriculum's shorter limit, which paces
    /// the student's own rollouts only.
    pub teacher_max_len: usize,
}

/// Figures of one step's response generation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RolloutStats {
    /// Response tokens over the batch (stop tokens included; the paper's count).
    pub generated_tokens: usize,
    /// Mean response length.
    pub mean_response_len: f64,
    /// Rollout tokens per forward pass (per sequence); 0 for dataset responses.
    pub tokens_per_forward: f64,
    /// Forward passes, summed over rows (the denominator of `tokens_per_forward`).
    pub forwards: usize,
    /// Wall-clock time of the generation.
    pub seconds: f64,
}

/// Why a step's examples could not be made.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
pub enum RolloutError {
    /// A dataset objective met a prompt without an answer.
    #[error("objective bd3lm trains on dataset responses, but prompt {0} has none (give `answer` in the prompt file, or use --objective sft)")]
    MissingResponse(usize),
    /// The sampler rejected the batch.
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

/// Examples for one training step: a response per prompt of `batch` (a student rollout
/// of at most `max_len` tokens, a teacher generation up to its stop token or
/// `settings.teacher_max_len`, or the dataset's answer), then its state and weights. `student` and `teacher` are inference copies.
/// The batch's seed and each row's global index drive that row's sampling and state
/// selection, so a row draws the same numbers whichever device runs it.
pub fn make_examples<B: Backend>(
    loss: &Loss,
    settings: &RolloutSettings,
    (student, teacher): (&Transformer<B>, &Transformer<B>),
    batch: &PromptBatch,
    max_len: usize,
) -> Result<(Vec<Example>, RolloutStats), RolloutError> {
    let started = Instant::now();
    let rows = responses(loss, settings, (student, teacher), batch, max_len)?;
    let generated: usize = rows.iter().map(|r| r.tokens.len()).sum();
    let stats = RolloutStats {
        generated_tokens: generated,
        mean_response_len: generated as f64 / rows.len().max(1) as f64,
        tokens_per_forward: DecodeStats::row_tokens_per_forward(&rows),
        forwards: rows.iter().map(|r| r.forwards).sum(),
        seconds: started.elapsed().as_secs_f64(),
    };
    let examples = (batch.items.iter().zip(rows).enumerate())
        .map(|(i, (item, row))| {
            let mut rng = StdRng::seed_from_u64(state_seed(batch.seed, batch.first_row + i));
            loss.example(&item.prompt, row, settings.block_size, &mut rng)
        })
        .collect();
    Ok((examples, stats))
}

/// One response per prompt, from the source the objective names.
fn responses<B: Backend>(
    loss: &Loss,
    settings: &RolloutSettings,
    (student, teacher): (&Transformer<B>, &Transformer<B>),
    batch: &PromptBatch,
    max_len: usize,
) -> Result<Vec<RowOutput>, RolloutError> {
    let prompts: Vec<Vec<u32>> = batch.items.iter().map(|i| i.prompt.clone()).collect();
    let sampling = SamplingConfig { temperature: settings.temperature, top_k: 0, top_p: 1.0 };
    let stop_tokens = settings.stop_tokens.clone();
    Ok(match loss.objective().response_source() {
        ResponseSource::StudentRollout => {
            let rule = CommitRule::Dynamic { threshold: settings.threshold };
            let config = DecodeConfig {
                steps_per_block: settings.steps_per_block,
                sampling,
                stop_tokens,
                seed: sampler_seed(batch),
                ..DecodeConfig::diffusion(settings.block_size, max_len, rule)
            };
            generate(student, &prompts, &config, |_| {})?.rows
        }
        ResponseSource::TeacherGeneration => {
            let limit = settings.teacher_max_len;
            let config =
                DecodeConfig::autoregressive(limit, sampling, stop_tokens, sampler_seed(batch));
            generate(teacher, &prompts, &config, |_| {})?.rows
        }
        ResponseSource::Dataset => batch
            .items
            .iter()
            .enumerate()
            .map(|(i, item)| dataset_response(item, &settings.stop_tokens, i))
            .collect::<Result<_, RolloutError>>()?,
    })
}

/// The sampler seeds row `i` with `seed + i`: offset by the share's first global row.
fn sampler_seed(batch: &PromptBatch) -> u64 {
    batch.seed.wrapping_add(batch.first_row as u64)
}

/// The seed of global row `row`'s state selection (a stream apart from its sampler's).
fn state_seed(seed: u64, row: usize) -> u64 {
    (seed ^ 0x5851_F42D_4C95_7F2D).wrapping_add((row as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// A prompt file's answer as a finished row (no trajectory: it was never sampled).
fn dataset_response(
    item: &PromptItem,
    stop_tokens: &[u32],
    index: usize,
) -> Result<RowOutput, RolloutError> {
    let tokens = item.response.clone().ok_or(RolloutError::MissingResponse(index))?;
    Ok(RowOutput {
        first_unmask_step: vec![0; tokens.len()],
        after_stop: vec![],
        stopped: tokens.last().is_some_and(|t| stop_tokens.contains(t)),
        tokens,
        steps: 0,
        forwards: 0,
        states: vec![],
    })
}
