//! The one generation loop: block-diffusion decoding with an exact block KV cache, used
//! by `infer`, by evaluation and by training rollouts. Plain autoregressive decoding is
//! the special case of one-slot blocks with shifted logits (see [`DecodeConfig::autoregressive`]).
//!
//! Sequences live on a grid of *slots*. Row `r` is left-padded by a multiple of the block
//! size, so blocks (aligned to absolute positions from 0) coincide across rows and one
//! active block serves the whole batch. Each block goes through:
//! 1. denoising steps: a forward pass over the active block against the cache, a token
//!    drawn for every masked slot, the commit rule keeps some;
//! 2. the stop check: a row ends at its first stop token or at its length limit and
//!    leaves the batch;
//! 3. the commit: the finished block's keys/values are appended to the cache by the *next*
//!    block's first forward pass, which processes both blocks (block-causal attention
//!    keeps the finished block blind to the new one), so a commit costs no extra pass.

use std::time::{Duration, Instant};

use burn::prelude::*;
use burn::tensor::{Int, TensorData};
use opdlm_model::{AttentionMode, CacheUse, KvCache, Layout, TokenExclusion, Transformer};
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::commit::{static_schedule, CommitRule};
use crate::sampling::{choose, Choice, SamplingConfig};
use crate::stats::DecodeStats;
use crate::trajectory::{RowOutput, VisitedState};

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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// Left padding, or past the row's end: hidden from every real query.
    Void,
    Fixed(u32),
    Masked,
}

/// Book-keeping of one sequence on the slot grid.
struct Row {
    /// Index of the prompt this row answers.
    id: usize,
    /// Void slots before the prompt (a multiple of the block size).
    left_pad: usize,
    /// First generated slot (`left_pad + prompt length`).
    gen_start: usize,
    /// One past the row's last slot: `gen_start + max_new_tokens`, or just past its stop
    /// token once it stopped.
    end: usize,
    /// One past the last slot the sampler filled: `end`, or the end of the stop token's
    /// block (slots after the stop token were denoised with the rest of their block).
    filled_end: usize,
    /// Every slot of the grid: void, a fixed token (prompt or committed) or masked.
    slots: Vec<Slot>,
    /// Per slot, the row-local denoising step that unmasked it.
    unmask_step: Vec<usize>,
    /// Denoising steps this row has taken (the trajectory's clock).
    steps: usize,
    /// Forward passes this row took part in.
    forwards: usize,
    /// Slots the static schedule unmasks at each step of the active block.
    schedule: Vec<usize>,
    /// Steps taken in the active block.
    block_step: usize,
    /// States fed to the model, when the config asks for them.
    states: Vec<VisitedState>,
    /// Generation ended on a stop token.
    stopped: bool,
    /// Generated tokens already handed to the streaming callback.
    emitted: usize,
}

impl Row {
    fn masked_in(&self, range: std::ops::Range<usize>) -> Vec<usize> {
        range.filter(|&s| self.slots[s] == Slot::Masked).collect()
    }

    /// The fixed token of a slot the sampler has completed.
    fn token(&self, slot: usize) -> u32 {
        match self.slots[slot] {
            Slot::Fixed(t) => t,
            _ => unreachable!("slot {slot} is complete"),
        }
    }

    fn into_output(self) -> RowOutput {
        RowOutput {
            tokens: (self.gen_start..self.end).map(|s| self.token(s)).collect(),
            after_stop: (self.end..self.filled_end).map(|s| self.token(s)).collect(),
            first_unmask_step: self.unmask_step[self.gen_start..self.filled_end].to_vec(),
            stopped: self.stopped,
            steps: self.steps,
            forwards: self.forwards,
            states: self.states,
        }
    }
}

/// Decodes a continuation for every prompt. `on_block` is called after every block with
/// the tokens it added to each live row (for streaming).
pub fn generate<B: Backend>(
    model: &Transformer<B>,
    prompts: &[Vec<u32>],
    config: &DecodeConfig,
    mut on_block: impl FnMut(BlockEvent<'_>),
) -> Result<Generation, DecodeError> {
    let started = Instant::now();
    let mut state = DecodeState::new(model, prompts, config)?;
    while let Some(block) = state.next_block() {
        state.start_block(block.clone());
        while state.has_masked(block.clone()) {
            state.denoise(model, block.clone());
        }
        state.retire_finished(block, &mut on_block);
    }
    Ok(state.finish(started.elapsed()))
}

/// Everything one decoding run carries from block to block.
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
    /// Length of the slot grid.
    total: usize,
    /// The mask token, never a prediction (built once, applied at every step).
    excluded: TokenExclusion<B>,
    cache: KvCache<B>,
    stats: DecodeStats,
    /// Hidden state of the slot just before the active block (shifted logits only).
    carry: Option<Tensor<B, 2>>,
    /// First slot of the next block.
    block_start: usize,
}

impl<'a, B: Backend> DecodeState<'a, B> {
    /// Checks the settings against the model and lays the prompts out on the grid.
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
        let live = layout_rows(prompts, config, context)?;
        let rngs = live
            .iter()
            .map(|r| StdRng::seed_from_u64(config.seed.wrapping_add(r.id as u64)))
            .collect();
        let block_start = live.iter().map(|r| r.gen_start).min().unwrap_or(0) / config.block_size
            * config.block_size;
        let excluded =
            TokenExclusion::new(model_config.vocab_size, &[diffusion.mask_token_id], &device);
        Ok(Self {
            config,
            mask_id: diffusion.mask_token_id,
            shift: config.shift_logits.unwrap_or(diffusion.shift_logits),
            device,
            total: live.iter().map(|r| r.end).max().unwrap_or(0),
            excluded,
            outputs: (0..prompts.len()).map(|_| None).collect(),
            live,
            rngs,
            cache: model.new_cache(),
            stats: DecodeStats::default(),
            carry: None,
            block_start,
        })
    }

    /// The next block's slot range, while any row is live.
    fn next_block(&self) -> Option<std::ops::Range<usize>> {
        let start = self.block_start;
        (!self.live.is_empty() && start < self.total)
            .then(|| start..(start + self.config.block_size).min(self.total))
    }

    /// Plans every row's static schedule for the block's masked slots.
    fn start_block(&mut self, block: std::ops::Range<usize>) {
        for row in self.live.iter_mut() {
            let masked = row.masked_in(block.clone()).len();
            row.schedule = static_schedule(masked, self.config.steps_per_block);
            row.block_step = 0;
        }
    }

    fn has_masked(&self, block: std::ops::Range<usize>) -> bool {
        self.live.iter().any(|r| !r.masked_in(block.clone()).is_empty())
    }

    /// One denoising step of the active block: a forward pass, a token drawn for every
    /// masked slot, the commit rule keeps some.
    fn denoise(&mut self, model: &Transformer<B>, block: std::ops::Range<usize>) {
        let (hidden, window) = self.forward_window(model, block.clone());
        let predictions = self.gather_predictions(hidden, window, block.clone());
        let logits = model.lm_head(predictions.hidden.unsqueeze::<3>()).squeeze_dim::<2>(0);
        let choices = choose(
            logits,
            &self.excluded,
            &self.config.sampling,
            &predictions.owners,
            &mut self.rngs,
        );
        self.commit(&choices, &predictions.owners, &predictions.slots, block);
    }

    /// Forwards the pending (finished, uncommitted) slots and the active block against the
    /// cache: committing the previous block costs no pass of its own, and block-causal
    /// attention keeps it blind to the new one. Returns the hidden states and the window.
    fn forward_window(
        &mut self,
        model: &Transformer<B>,
        block: std::ops::Range<usize>,
    ) -> (Tensor<B, 3>, std::ops::Range<usize>) {
        // With shifted logits a one-slot block's own input is read by nobody: skip it.
        let window_end =
            if self.shift && self.config.block_size == 1 { block.start } else { block.end };
        let window = self.cache.len()..window_end;
        let tokens = window_tokens::<B>(&self.live, window.clone(), self.mask_id, &self.device);
        let layout = window_layout::<B>(
            &self.live,
            self.config.block_size,
            window.start,
            window.end,
            &self.device,
        );
        let pending = block.start - window.start;
        let usage = if pending > 0 { CacheUse::CommitFirst(pending) } else { CacheUse::ReadOnly };
        let pass = Instant::now();
        let hidden = model.hidden(tokens, &layout, Some((&mut self.cache, usage)));
        self.stats.forwards += 1;
        if self.stats.forwards == 1 {
            self.stats.prefill = pass.elapsed();
        }
        if self.shift && pending > 0 {
            let [batch, _, dim] = hidden.dims();
            let last = hidden.clone().slice(s![.., pending - 1..pending, ..]);
            self.carry = Some(last.reshape([batch, dim]));
        }
        for row in self.live.iter_mut() {
            row.forwards += 1;
        }
        (hidden, window)
    }

    /// The hidden state that predicts each masked slot: its own row, or with shifted
    /// logits the row before it, which for the block's first slot may be the carried
    /// state of the previous block's last slot.
    fn gather_predictions(
        &self,
        hidden: Tensor<B, 3>,
        window: std::ops::Range<usize>,
        block: std::ops::Range<usize>,
    ) -> Predictions<B> {
        let [batch, width, dim] = hidden.dims();
        let mut sources = hidden.reshape([batch * width, dim]);
        if let Some(carry) = &self.carry {
            sources = Tensor::cat(vec![sources, carry.clone()], 0);
        }
        let (mut owners, mut slots, mut picks) = (Vec::new(), Vec::new(), Vec::new());
        for (r, row) in self.live.iter().enumerate() {
            for slot in row.masked_in(block.clone()) {
                let source = slot - usize::from(self.shift);
                let pick = if window.contains(&source) {
                    r * width + source - window.start
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
    fn commit(
        &mut self,
        choices: &[Choice],
        owners: &[usize],
        targets: &[usize],
        block: std::ops::Range<usize>,
    ) {
        let mut at = 0;
        for (r, row) in self.live.iter_mut().enumerate() {
            let count = owners[at..].iter().take_while(|&&o| o == r).count();
            if count == 0 {
                continue;
            }
            let (row_choices, row_targets) = (&choices[at..at + count], &targets[at..at + count]);
            at += count;
            if self.config.record_states {
                let state = visited_state(row, block.start, block.end, self.mask_id);
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

    /// After a complete block: ends rows at their first stop token or length limit,
    /// streams what the block added, and moves finished rows out of the batch (and out of
    /// the cache).
    fn retire_finished(
        &mut self,
        block: std::ops::Range<usize>,
        on_block: &mut impl FnMut(BlockEvent<'_>),
    ) {
        let mut keep = Vec::new();
        for (r, row) in self.live.iter_mut().enumerate() {
            let generated = row.gen_start.max(block.start)..row.end.min(block.end);
            let stop = generated.clone().find(
                |&s| matches!(row.slots[s], Slot::Fixed(t) if self.config.stop_tokens.contains(&t)),
            );
            row.filled_end = row.end.min(block.end);
            if let Some(stop) = stop {
                row.stopped = true;
                row.end = stop + 1;
            }
            let finished = row.stopped || row.end <= block.end;
            let new_tokens: Vec<u32> = (row.gen_start + row.emitted..row.end.min(block.end))
                .map(|s| row.token(s))
                .collect();
            row.emitted += new_tokens.len();
            on_block(BlockEvent { row: row.id, new_tokens: &new_tokens, finished });
            if !finished {
                keep.push(r);
            }
        }
        if keep.len() < self.live.len() {
            self.keep_rows(&keep);
        }
        self.block_start = block.end;
    }

    /// Keeps only the live rows `keep` (indices into the batch), finishing the others.
    fn keep_rows(&mut self, keep: &[usize]) {
        let kept =
            int_tensor::<B>(&keep.iter().map(|&r| r as i64).collect::<Vec<_>>(), &self.device);
        self.cache.retain_rows(kept.clone());
        self.carry = self.carry.take().map(|c| c.select(0, kept));
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
    /// Grid slot of each masked slot.
    slots: Vec<usize>,
}

/// Places every prompt on the slot grid: left padding (a multiple of the block size),
/// prompt, then `max_new_tokens` masked slots.
fn layout_rows(
    prompts: &[Vec<u32>],
    config: &DecodeConfig,
    context: usize,
) -> Result<Vec<Row>, DecodeError> {
    let block = config.block_size;
    let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let mut rows = Vec::new();
    for (id, prompt) in prompts.iter().enumerate() {
        if prompt.is_empty() {
            return Err(DecodeError::EmptyPrompt { row: id });
        }
        if prompt.len() + config.max_new_tokens > context {
            return Err(DecodeError::TooLong {
                row: id,
                prompt: prompt.len(),
                new: config.max_new_tokens,
                context,
            });
        }
        let left_pad = (longest - prompt.len()) / block * block;
        let gen_start = left_pad + prompt.len();
        rows.push((id, left_pad, gen_start, prompt));
    }
    let total = rows.iter().map(|r| r.2 + config.max_new_tokens).max().unwrap_or(0);
    Ok(rows
        .into_iter()
        .map(|(id, left_pad, gen_start, prompt)| {
            let end = gen_start + config.max_new_tokens;
            let mut slots = vec![Slot::Void; total];
            for (s, &t) in prompt.iter().enumerate() {
                slots[left_pad + s] = Slot::Fixed(t);
            }
            slots[gen_start..end].fill(Slot::Masked);
            Row {
                id,
                left_pad,
                gen_start,
                end,
                filled_end: end,
                slots,
                unmask_step: vec![0; total],
                steps: 0,
                forwards: 0,
                schedule: vec![],
                block_step: 0,
                states: vec![],
                stopped: false,
                emitted: 0,
            }
        })
        .collect())
}

/// Input ids of `range` for every live row (mask id in masked and void slots).
fn window_tokens<B: Backend>(
    rows: &[Row],
    range: std::ops::Range<usize>,
    mask_id: u32,
    device: &B::Device,
) -> Tensor<B, 2, Int> {
    let width = range.len();
    let ids: Vec<i64> = rows
        .iter()
        .flat_map(|row| {
            row.slots[range.clone()].iter().map(move |s| match s {
                Slot::Fixed(t) => *t as i64,
                _ => mask_id as i64,
            })
        })
        .collect();
    Tensor::from_data(TensorData::new(ids, [rows.len(), width]), device)
}

/// Block-causal layout of the window, with padding hidden when any row has some.
fn window_layout<B: Backend>(
    rows: &[Row],
    block: usize,
    start: usize,
    end: usize,
    device: &B::Device,
) -> Layout<B> {
    let layout = Layout::contiguous(
        AttentionMode::BlockCausal { block_size: block },
        rows.len(),
        start,
        end - start,
        device,
    );
    let void: Vec<bool> =
        rows.iter().flat_map(|row| row.slots[..end].iter().map(|s| *s == Slot::Void)).collect();
    if !void.contains(&true) {
        return layout;
    }
    let pads: Vec<i64> = rows.iter().map(|r| r.left_pad as i64).collect();
    let void = Tensor::<B, 2, Bool>::from_data(TensorData::new(void, [rows.len(), end]), device);
    layout.with_padding(int_tensor::<B>(&pads, device), void)
}

fn visited_state(row: &Row, block_start: usize, block_end: usize, mask_id: u32) -> VisitedState {
    let first = block_start.max(row.left_pad);
    let tokens = row.slots[first..block_end.min(row.end)]
        .iter()
        .map(|s| match s {
            Slot::Fixed(t) => *t,
            _ => mask_id,
        })
        .collect();
    VisitedState { step: row.steps, block_start: block_start - row.left_pad, tokens }
}

fn int_tensor<B: Backend>(values: &[i64], device: &B::Device) -> Tensor<B, 1, Int> {
    Tensor::from_data(TensorData::new(values.to_vec(), [values.len()]), device)
}
