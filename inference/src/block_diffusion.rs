//! The one generation loop: block-diffusion decoding with an exact block KV cache, used
//! by `infer`, by evaluation and by training rollouts. Plain autoregressive decoding is
//! the special case of one-slot blocks with shifted logits (see [`DecodeConfig::autoregressive`]).
//!
//! Every row advances on its own: it has its own active block (blocks are aligned to
//! absolute positions from 0), its own step count and its own cache length, and one
//! forward pass serves every row's current window (see [`crate::window`]). A row never
//! waits for another row's block. Each of a row's blocks goes through:
//! 1. denoising steps: the row's active block is forwarded against its cache, a token is
//!    drawn for every masked slot, and the commit rule keeps some;
//! 2. the stop check: the row ends at its first stop token or at its length limit and
//!    leaves the batch;
//! 3. the commit: the finished block's keys/values are appended to the cache by the row's
//!    next forward, which processes both blocks (block-causal attention keeps the
//!    finished block blind to the new one), so a commit costs no extra pass.

use std::time::{Duration, Instant};

use burn::prelude::*;
use burn::tensor::{Int, TensorData};
use opdlm_model::{CacheUse, KvCache, TokenExclusion, Transformer};
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::commit::CommitRule;
use crate::row::{Row, Slot};
use crate::sampling::{choose, Choice, SamplingConfig};
use crate::stats::DecodeStats;
use crate::trajectory::RowOutput;
use crate::window::{compaction, Window};

/// Everything [`generate`] needs to know besides the model and the prompts.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodeConfig {
    /// Slots per block; attention is bidirectional inside a block.
    pub block_size: usize,
    /// At most this many denoising steps per block (the static rule uses exactly this).
    pub steps_per_block: usize,
    /// Generation limit per prompt.
    pub max_new_tokens: usize,
    /// How a token is drawn for a masked slot.
    pub sampling: SamplingConfig,
    /// Which drawn tokens a denoising step keeps.
    pub rule: CommitRule,
    /// Generation of a row ends at the first of these.
    pub stop_tokens: Vec<u32>,
    /// Seed of row `i`'s generator is `seed + i`.
    pub seed: u64,
    /// Read slot `i`'s prediction at position `i - 1` (`None`: as the model's config says).
    pub shift_logits: Option<bool>,
    /// Keep every visited state in the output (for tests and analysis).
    pub record_states: bool,
}

impl DecodeConfig {
    /// Greedy block-diffusion decoding with `block_size` denoising steps per block at
    /// most, no stop tokens, seed 0 (override fields with struct update syntax).
    pub fn diffusion(block_size: usize, max_new_tokens: usize, rule: CommitRule) -> Self {
        Self {
            block_size,
            steps_per_block: block_size,
            max_new_tokens,
            sampling: SamplingConfig::GREEDY,
            rule,
            stop_tokens: vec![],
            seed: 0,
            shift_logits: None,
            record_states: false,
        }
    }

    /// Autoregressive decoding in the teacher's semantics: one-slot blocks (block-causal
    /// with blocks of one is causal attention) and shifted logits, one forward per token.
    pub fn autoregressive(
        max_new_tokens: usize,
        sampling: SamplingConfig,
        stop_tokens: Vec<u32>,
        seed: u64,
    ) -> Self {
        Self {
            sampling,
            stop_tokens,
            seed,
            shift_logits: Some(true),
            ..Self::diffusion(1, max_new_tokens, CommitRule::Static)
        }
    }

    /// Rejects settings no model can decode with, naming the setting: every caller
    /// (`infer`, evaluation, training rollouts, [`generate`]) checks through this.
    pub fn validate(&self) -> Result<(), DecodeError> {
        if self.block_size == 0 {
            return Err(DecodeError::ZeroBlockSize);
        }
        if self.steps_per_block == 0 {
            return Err(DecodeError::ZeroSteps);
        }
        self.rule
            .validate()
            .map_err(|message| DecodeError::BadRule { rule: self.rule, message })?;
        self.sampling.validate().map_err(DecodeError::BadSampling)
    }
}

/// Settings or prompts [`generate`] cannot decode, with what is wrong.
#[derive(Debug, Clone, thiserror::Error, PartialEq)]
#[allow(missing_docs)] // the fields are named by the messages
pub enum DecodeError {
    /// The model was never given a mask token.
    #[error("the model has no mask token: convert it first (Transformer::into_diffusion)")]
    NoMaskToken,
    /// A prompt has no tokens (nothing to condition on).
    #[error("prompt {row} is empty")]
    EmptyPrompt { row: usize },
    /// A prompt plus the generation limit does not fit the model's context.
    #[error("prompt {row} has {prompt} tokens; with max_new_tokens = {new} that exceeds the model's context of {context}")]
    TooLong { row: usize, prompt: usize, new: usize, context: usize },
    /// Block size 0.
    #[error("block size must be at least 1")]
    ZeroBlockSize,
    /// A block longer than the model's context.
    #[error("block size {block} exceeds the model's context of {context}")]
    BlockTooLarge { block: usize, context: usize },
    /// A threshold or budget the commit rule cannot use.
    #[error("commit rule {rule:?}: {message}")]
    BadRule { rule: CommitRule, message: String },
    /// Zero denoising steps per block.
    #[error("steps per block must be at least 1")]
    ZeroSteps,
    /// A temperature or top-p out of range.
    #[error("{0}")]
    BadSampling(String),
}

/// What one finished block added to one row, for streaming.
pub struct BlockEvent<'a> {
    /// Index of the prompt this row answers.
    pub row: usize,
    /// Tokens this block added (stop token included), empty for prompt-only blocks.
    pub new_tokens: &'a [u32],
    /// The row has finished.
    pub finished: bool,
}

/// The result of [`generate`].
pub struct Generation {
    /// One output per prompt, in prompt order.
    pub rows: Vec<RowOutput>,
    /// Forward passes, tokens and time of the whole run.
    pub stats: DecodeStats,
}

/// Decodes a continuation for every prompt. `on_block` is called whenever a row finishes
/// a block, with the tokens that block added (for streaming).
pub fn generate<B: Backend>(
    model: &Transformer<B>,
    prompts: &[Vec<u32>],
    config: &DecodeConfig,
    mut on_block: impl FnMut(BlockEvent<'_>),
) -> Result<Generation, DecodeError> {
    let started = Instant::now();
    let mut state = DecodeState::new(model, prompts, config)?;
    state.close_finished_blocks(&mut on_block);
    while !state.live.is_empty() {
        state.denoise(model);
        state.close_finished_blocks(&mut on_block);
    }
    Ok(state.finish(started.elapsed()))
}

/// Everything one decoding run carries from step to step.
struct DecodeState<'a, B: Backend> {
    config: &'a DecodeConfig,
    mask_id: u32,
    /// Read slot `i`'s prediction at position `i - 1` (an AR model's convention).
    shift: bool,
    device: B::Device,
    /// Rows still generating, and their random generators (one per row, so a row's draws
    /// do not depend on the others).
    live: Vec<Row>,
    rngs: Vec<StdRng>,
    /// Finished rows, by prompt index.
    outputs: Vec<Option<RowOutput>>,
    /// The mask token, never a prediction (built once, applied at every step).
    excluded: TokenExclusion<B>,
    cache: KvCache<B>,
    stats: DecodeStats,
    /// Per row, the hidden state of the slot just before its active block (shifted logits
    /// only): that slot was cached by an earlier pass, but it predicts the block's first slot.
    carry: Option<Tensor<B, 2>>,
}

impl<'a, B: Backend> DecodeState<'a, B> {
    /// Checks the settings against the model and sets every row up at its first block.
    fn new(
        model: &Transformer<B>,
        prompts: &[Vec<u32>],
        config: &'a DecodeConfig,
    ) -> Result<Self, DecodeError> {
        let device = model.devices().into_iter().next().expect("model has a device");
        let model_config = model.config();
        let diffusion = model_config.diffusion.as_ref().ok_or(DecodeError::NoMaskToken)?;
        config.validate()?;
        let context = model_config.max_position_embeddings;
        if config.block_size > context {
            return Err(DecodeError::BlockTooLarge { block: config.block_size, context });
        }
        check_prompts(prompts, config, context)?;
        let live: Vec<Row> = prompts
            .iter()
            .enumerate()
            .map(|(id, prompt)| {
                let (block, steps) = (config.block_size, config.steps_per_block);
                Row::new(id, prompt, config.max_new_tokens, block, steps)
            })
            .collect();
        let rngs = live
            .iter()
            .map(|r| StdRng::seed_from_u64(config.seed.wrapping_add(r.id as u64)))
            .collect();
        let excluded =
            TokenExclusion::new(model_config.vocab_size, &[diffusion.mask_token_id], &device);
        Ok(Self {
            config,
            mask_id: diffusion.mask_token_id,
            shift: config.shift_logits.unwrap_or(diffusion.shift_logits),
            device,
            excluded,
            outputs: (0..prompts.len()).map(|_| None).collect(),
            live,
            rngs,
            cache: model.new_cache(),
            stats: DecodeStats::default(),
            carry: None,
        })
    }

    /// One denoising step of every live row's active block: a forward pass over all
    /// windows, a token drawn for every masked slot, each row's commit rule keeps some.
    fn denoise(&mut self, model: &Transformer<B>) {
        let (hidden, window) = self.forward_windows(model);
        let predictions = self.gather_predictions(hidden, &window);
        let logits = model.lm_head(predictions.hidden.unsqueeze::<3>()).squeeze_dim::<2>(0);
        let choices = choose(
            logits,
            &self.excluded,
            &self.config.sampling,
            &predictions.owners,
            &mut self.rngs,
        );
        self.commit(&choices, &predictions.owners, &predictions.slots);
    }

    /// Forwards every row's window against the cache and appends the finished slots at
    /// the windows' fronts to it: committing a block costs no pass of its own, and
    /// block-causal attention keeps it blind to the block after it.
    fn forward_windows(&mut self, model: &Transformer<B>) -> (Tensor<B, 3>, Window) {
        // With shifted logits a one-slot block's own input is read by nobody: skip it.
        let window = Window::plan(&self.live, self.shift && self.config.block_size == 1);
        let tokens = window.tokens::<B>(&self.live, self.mask_id, &self.device);
        let layout =
            window.layout::<B>(&self.live, self.config.block_size, self.cache.len(), &self.device);
        let usage = match window.commit {
            0 => CacheUse::ReadOnly,
            n => CacheUse::CommitFirst(n),
        };
        let pass = Instant::now();
        let hidden = model.hidden(tokens, &layout, Some((&mut self.cache, usage)));
        self.stats.forwards += 1;
        if self.stats.forwards == 1 {
            self.stats.prefill = pass.elapsed();
        }
        if self.shift && window.commit > 0 {
            let [batch, width, dim] = hidden.dims();
            let carried =
                self.carry.take().unwrap_or_else(|| Tensor::zeros([batch, dim], &self.device));
            let sources =
                Tensor::cat(vec![hidden.clone().reshape([batch * width, dim]), carried], 0);
            self.carry =
                Some(sources.select(0, int_tensor::<B>(&window.carry_picks(), &self.device)));
        }
        window.record_commit(&mut self.live);
        for row in self.live.iter_mut() {
            row.forwards += 1;
        }
        (hidden, window)
    }

    /// The hidden state that predicts each masked slot: its own column, or with shifted
    /// logits the column before it, which for a block's first slot may be the row's
    /// carried state.
    fn gather_predictions(&self, hidden: Tensor<B, 3>, window: &Window) -> Predictions<B> {
        let [batch, width, dim] = hidden.dims();
        let mut sources = hidden.reshape([batch * width, dim]);
        if let Some(carry) = &self.carry {
            sources = Tensor::cat(vec![sources, carry.clone()], 0);
        }
        let (mut owners, mut slots, mut picks) = (Vec::new(), Vec::new(), Vec::new());
        for (r, row) in self.live.iter().enumerate() {
            // The window started at the row's cache length before this pass committed.
            let window_start = row.cached - window.pending[r];
            for slot in row.masked() {
                let source = slot - usize::from(self.shift);
                let pick = if source >= window_start {
                    r * width + source - window_start
                } else {
                    batch * width + r
                };
                owners.push(r);
                slots.push(slot);
                picks.push(pick as i64);
            }
        }
        let hidden = sources.select(0, int_tensor::<B>(&picks, &self.device));
        Predictions { hidden, owners, slots }
    }

    /// Commits, per row, the slots the rule keeps (at least the static schedule's count),
    /// and records the step that unmasked them.
    fn commit(&mut self, choices: &[Choice], owners: &[usize], targets: &[usize]) {
        let mut at = 0;
        for (r, row) in self.live.iter_mut().enumerate() {
            let count = owners[at..].iter().take_while(|&&o| o == r).count();
            let (row_choices, row_targets) = (&choices[at..at + count], &targets[at..at + count]);
            at += count;
            if self.config.record_states {
                let state = row.visited_state(self.mask_id);
                row.states.push(state);
            }
            let last_step = row.block_step + 1 >= row.schedule.len();
            let floor = if last_step { count } else { row.schedule[row.block_step] };
            for i in self.config.rule.select(row_choices, floor) {
                row.slots[row_targets[i]] = Slot::Fixed(row_choices[i].token);
                row.unmask_step[row_targets[i]] = row.steps;
            }
            row.steps += 1;
            row.block_step += 1;
        }
    }

    /// For every row whose active block is complete: ends it at its first stop token or
    /// length limit, streams what the block added, and moves it to its next block or out
    /// of the batch (and out of the cache).
    fn close_finished_blocks(&mut self, on_block: &mut impl FnMut(BlockEvent<'_>)) {
        let mut keep = Vec::new();
        for (r, row) in self.live.iter_mut().enumerate() {
            if row.has_masked() {
                keep.push(r);
                continue;
            }
            let (new_tokens, finished) = row.close_block(&self.config.stop_tokens);
            on_block(BlockEvent { row: row.id, new_tokens: &new_tokens, finished });
            if !finished {
                row.next_block(self.config.block_size, self.config.steps_per_block);
                keep.push(r);
            }
        }
        if keep.len() < self.live.len() {
            self.keep_rows(&keep);
        }
        if let Some(columns) = compaction::<B>(&mut self.live, self.cache.len(), &self.device) {
            self.cache.compact(columns);
            self.stats.compactions += 1;
        }
    }

    /// Keeps only the live rows `keep` (indices into the batch), finishing the others.
    fn keep_rows(&mut self, keep: &[usize]) {
        let kept =
            int_tensor::<B>(&keep.iter().map(|&r| r as i64).collect::<Vec<_>>(), &self.device);
        self.cache.retain_rows(kept.clone());
        // No row left, no carry: selecting none would be a zero-sized launch (see retain_rows).
        self.carry = self.carry.take().filter(|_| !keep.is_empty()).map(|c| c.select(0, kept));
        let live = std::mem::take(&mut self.live);
        let rngs = std::mem::take(&mut self.rngs);
        for (r, (row, rng)) in live.into_iter().zip(rngs).enumerate() {
            if keep.contains(&r) {
                self.live.push(row);
                self.rngs.push(rng);
            } else {
                self.stats.tokens += row.end - row.gen_start;
                let id = row.id;
                self.outputs[id] = Some(row.into_output());
            }
        }
    }

    fn finish(mut self, elapsed: Duration) -> Generation {
        self.stats.elapsed = elapsed;
        if self.stats.forwards == 0 {
            self.stats.prefill = Duration::ZERO;
        }
        let rows = self.outputs.into_iter().map(|o| o.expect("every row finishes")).collect();
        Generation { rows, stats: self.stats }
    }
}

/// The hidden states that predict the masked slots of one step, and whose they are.
struct Predictions<B: Backend> {
    /// `[slots, d]`, one row per masked slot, rows in batch order.
    hidden: Tensor<B, 2>,
    /// Batch row of each masked slot.
    owners: Vec<usize>,
    /// Slot of each masked slot in its row.
    slots: Vec<usize>,
}

/// Rejects empty prompts and prompts that leave no room for `max_new_tokens`.
fn check_prompts(
    prompts: &[Vec<u32>],
    config: &DecodeConfig,
    context: usize,
) -> Result<(), DecodeError> {
    for (row, prompt) in prompts.iter().enumerate() {
        if prompt.is_empty() {
            return Err(DecodeError::EmptyPrompt { row });
        }
        if prompt.len() + config.max_new_tokens > context {
            let (prompt, new) = (prompt.len(), config.max_new_tokens);
            return Err(DecodeError::TooLong { row, prompt, new, context });
        }
    }
    Ok(())
}

fn int_tensor<B: Backend>(values: &[i64], device: &B::Device) -> Tensor<B, 1, Int> {
    Tensor::from_data(TensorData::new(values.to_vec(), [values.len()]), device)
}
