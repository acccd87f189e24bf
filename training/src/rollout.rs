//! Producing training examples for one step: responses (student rollouts with the
//! inference sampler, teacher generations, or dataset answers), then the state `x_t` and
//! loss weights per the objective. Token ids flow straight from the sampler: nothing is
//! decoded and re-tokenized.

use std::time::Instant;

use burn::prelude::*;
use opdlm_inference::{generate, CommitRule, DecodeConfig, RowOutput, SamplingConfig};
use opdlm_model::Transformer;
use rand::rngs::StdRng;

use crate::example::Example;
use crate::objective::{Objective, ResponseSource};
use crate::state::{random_mask, select_masked, StateSelection};

/// How rollouts are sampled and states chosen.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutSettings {
    pub block_size: usize,
    pub steps_per_block: usize,
    /// Dynamic commit threshold γ of the student's sampler.
    pub threshold: f32,
    pub temperature: f32,
    pub state_selection: StateSelection,
    pub stop_tokens: Vec<u32>,
}

/// A prompt and, for dataset-driven objectives, its reference response.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptItem {
    pub prompt: Vec<u32>,
    pub response: Option<Vec<u32>>,
}

/// Figures of one step's response generation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RolloutStats {
    pub generated_tokens: usize,
    pub mean_response_len: f64,
    /// Rollout tokens per forward pass (per sequence).
    pub tokens_per_forward: f64,
    pub seconds: f64,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RolloutError {
    #[error("objective bd3lm trains on dataset responses, but prompt {0} has none (give `answer` in the prompt file, or use --objective sft)")]
    MissingResponse(usize),
    #[error(transparent)]
    Decode(#[from] opdlm_inference::DecodeError),
}

/// Examples for one training step. `student` is the inference copy of the student.
#[allow(clippy::too_many_arguments)]
pub fn make_examples<B: Backend>(
    objective: Objective,
    student: &Transformer<B>,
    teacher: &Transformer<B>,
    items: &[PromptItem],
    max_len: usize,
    settings: &RolloutSettings,
    seed: u64,
    rng: &mut StdRng,
) -> Result<(Vec<Example>, RolloutStats), RolloutError> {
    let started = Instant::now();
    let prompts: Vec<Vec<u32>> = items.iter().map(|i| i.prompt.clone()).collect();
    let sampling = SamplingConfig { temperature: settings.temperature, top_k: 0, top_p: 1.0 };
    let rows: Vec<RowOutput> = match objective.response_source() {
        ResponseSource::StudentRollout => {
            let config = DecodeConfig {
                steps_per_block: settings.steps_per_block,
                sampling,
                stop_tokens: settings.stop_tokens.clone(),
                seed,
                ..DecodeConfig::diffusion(
                    settings.block_size,
                    max_len,
                    CommitRule::Dynamic { threshold: settings.threshold },
                )
            };
            generate(student, &prompts, &config, |_| {})?.rows
        }
        ResponseSource::TeacherGeneration => {
            let config =
                DecodeConfig::autoregressive(max_len, sampling, settings.stop_tokens.clone(), seed);
            generate(teacher, &prompts, &config, |_| {})?.rows
        }
        ResponseSource::Dataset => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let tokens = item.response.clone().ok_or(RolloutError::MissingResponse(i))?;
                Ok(RowOutput {
                    first_unmask_step: vec![0; tokens.len()],
                    stopped: tokens.last().is_some_and(|t| settings.stop_tokens.contains(t)),
                    tokens,
                    steps: 0,
                    forwards: 0,
                    states: vec![],
                })
            })
            .collect::<Result<_, RolloutError>>()?,
    };
    let generated: usize = rows.iter().map(|r| r.tokens.len()).sum();
    let forwards: usize = rows.iter().map(|r| r.forwards).sum();
    let stats = RolloutStats {
        generated_tokens: generated,
        mean_response_len: generated as f64 / rows.len().max(1) as f64,
        tokens_per_forward: if forwards > 0 { generated as f64 / forwards as f64 } else { 0.0 },
        seconds: started.elapsed().as_secs_f64(),
    };
    let examples = items
        .iter()
        .zip(rows)
        .map(|(item, row)| to_example(objective, item, row, settings, rng))
        .collect();
    Ok((examples, stats))
}

/// Chooses `x_t` and the per-slot weights for one response.
fn to_example(
    objective: Objective,
    item: &PromptItem,
    row: RowOutput,
    settings: &RolloutSettings,
    rng: &mut StdRng,
) -> Example {
    let (p, r) = (item.prompt.len(), row.tokens.len());
    let (masked, times) = if objective.on_policy_states() {
        (
            select_masked(
                settings.state_selection,
                &row.first_unmask_step,
                p,
                settings.block_size,
                rng,
            ),
            vec![1.0; r],
        )
    } else {
        random_mask(p, r, settings.block_size, rng)
    };
    // Distillation objectives leave the stop token out of the loss, as the OPDLM loss of
    // the reference does. Hard-label objectives (bd3lm, sft) train it, as the BD3LM recipe
    // does: without it their students never learn to stop.
    let trained = if row.stopped && !objective.hard_labels() { r - 1 } else { r };
    let weights = (0..r)
        .map(|j| match (masked[j] && j < trained, objective.hard_labels()) {
            (false, _) => 0.0,
            (true, true) => 1.0 / times[j],
            (true, false) => 1.0,
        })
        .collect();
    Example { prompt: item.prompt.clone(), response: row.tokens, weights }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// Loss weight of the stop slot of a stopped response, under a random mask (both
    /// objectives below mask randomly) drawn from a seed that masks that slot.
    fn stop_slot_weight(objective: Objective) -> f32 {
        let item = PromptItem { prompt: vec![5, 6, 7, 8], response: Some(vec![1, 2, 3, 0]) };
        let row = RowOutput {
            tokens: vec![1, 2, 3, 0],
            first_unmask_step: vec![0; 4],
            stopped: true,
            steps: 0,
            forwards: 0,
            states: vec![],
        };
        let settings = RolloutSettings {
            block_size: 4,
            steps_per_block: 4,
            threshold: 0.9,
            temperature: 1.0,
            state_selection: StateSelection::PerBlock,
            stop_tokens: vec![0],
        };
        for seed in 0..1000 {
            let mut rng = StdRng::seed_from_u64(seed);
            let (masked, _) = random_mask(4, 4, 4, &mut StdRng::seed_from_u64(seed));
            if masked[3] {
                return to_example(objective, &item, row.clone(), &settings, &mut rng).weights[3];
            }
        }
        panic!("no seed masked the stop slot");
    }

    #[test]
    fn the_stop_token_is_trained_with_hard_labels_only() {
        assert!(
            stop_slot_weight(Objective::Bd3lm) > 0.0,
            "bd3lm must learn to emit the stop token"
        );
        assert_eq!(
            stop_slot_weight(Objective::OpdlmOff),
            0.0,
            "distillation leaves the stop token out, as the reference"
        );
    }
}
