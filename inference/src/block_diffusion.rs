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
use opdlm_model::{AttentionMode, CacheUse, Layout, Transformer};
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::commit::{static_schedule, CommitRule};
use crate::sampling::{choose, forbidden_row, SamplingConfig};
use crate::stats::DecodeStats;
use crate::trajectory::{RowOutput, VisitedState};

#[derive(Debug, Clone, PartialEq)]
pub struct DecodeConfig {
    /// Slots per block; attention is bidirectional inside a block.
    pub block_size: usize,
    /// At most this many denoising steps per block (the static rule uses exactly this).
    pub steps_per_block: usize,
    pub max_new_tokens: usize,
    pub sampling: SamplingConfig,
    pub rule: CommitRule,
    /// Generation of a row ends at the first of these.
    pub stop_tokens: Vec<u32>,
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
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DecodeError {
    #[error("the model has no mask token: convert it first (Transformer::into_diffusion)")]
    NoMaskToken,
    #[error("prompt {row} is empty")]
    EmptyPrompt { row: usize },
    #[error("prompt {row} has {prompt} tokens; with max_new_tokens = {new} that exceeds the model's context of {context}")]
    TooLong { row: usize, prompt: usize, new: usize, context: usize },
    #[error("block size must be at least 1")]
    ZeroBlockSize,
    #[error("block size {block} exceeds the model's context of {context}")]
    BlockTooLarge { block: usize, context: usize },
    #[error("commit rule {rule:?}: {message}")]
    BadRule { rule: CommitRule, message: String },
    #[error("steps per block must be at least 1")]
    ZeroSteps,
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

pub struct Generation {
    /// One output per prompt, in prompt order.
    pub rows: Vec<RowOutput>,
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
    id: usize,
    left_pad: usize,
    gen_start: usize,
    end: usize,
    slots: Vec<Slot>,
    unmask_step: Vec<usize>,
    steps: usize,
    forwards: usize,
    schedule: Vec<usize>,
    block_step: usize,
    states: Vec<VisitedState>,
    stopped: bool,
    emitted: usize,
}

impl Row {
    fn masked_in(&self, range: std::ops::Range<usize>) -> Vec<usize> {
        range.filter(|&s| self.slots[s] == Slot::Masked).collect()
    }

    fn into_output(self) -> RowOutput {
        let range = self.gen_start..self.end;
        RowOutput {
            tokens: self.slots[range.clone()]
                .iter()
                .map(|s| match s {
                    Slot::Fixed(t) => *t,
                    _ => unreachable!("a finished row has no masked slot"),
                })
                .collect(),
            first_unmask_step: self.unmask_step[range].to_vec(),
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
    let device = model.devices().into_iter().next().expect("model has a device");
    let model_config = model.config();
    let diffusion = model_config.diffusion.as_ref().ok_or(DecodeError::NoMaskToken)?;
    let (mask_id, shift) =
        (diffusion.mask_token_id, config.shift_logits.unwrap_or(diffusion.shift_logits));
    let block = config.block_size;
    if block == 0 {
        return Err(DecodeError::ZeroBlockSize);
    }
    if config.steps_per_block == 0 {
        return Err(DecodeError::ZeroSteps);
    }
    if block > model_config.max_position_embeddings {
        return Err(DecodeError::BlockTooLarge {
            block,
            context: model_config.max_position_embeddings,
        });
    }
    config
        .rule
        .validate()
        .map_err(|message| DecodeError::BadRule { rule: config.rule, message })?;
    let mut live = layout_rows(prompts, config, model_config.max_position_embeddings)?;
    let mut rngs: Vec<StdRng> =
        live.iter().map(|r| StdRng::seed_from_u64(config.seed.wrapping_add(r.id as u64))).collect();
    let mut outputs: Vec<Option<RowOutput>> = (0..prompts.len()).map(|_| None).collect();
    let total = live.iter().map(|r| r.end).max().unwrap_or(0);
    let forbidden = forbidden_row::<B>(model_config.vocab_size, &[mask_id], &device);
    let mut cache = model.new_cache();
    let mut stats = DecodeStats::default();
    // Hidden state of the slot just before the active block (shifted logits only).
    let mut carry: Option<Tensor<B, 2>> = None;
    let mut block_start = live.iter().map(|r| r.gen_start).min().unwrap_or(0) / block * block;

    while !live.is_empty() && block_start < total {
        let block_end = (block_start + block).min(total);
        for row in live.iter_mut() {
            let masked = row.masked_in(block_start..block_end).len();
            row.schedule = static_schedule(masked, config.steps_per_block);
            row.block_step = 0;
        }
        // With shifted logits a one-slot block's own input is read by nobody: skip it.
        let window_end = if shift && block == 1 { block_start } else { block_end };

        while live.iter().any(|r| !r.masked_in(block_start..block_end).is_empty()) {
            // 1. Forward the pending (finished, uncommitted) slots and the active block.
            let window_start = cache.len();
            let tokens = window_tokens::<B>(&live, window_start..window_end, mask_id, &device);
            let layout = window_layout::<B>(&live, block, window_start, window_end, &device);
            let pending = block_start - window_start;
            let usage =
                if pending > 0 { CacheUse::CommitFirst(pending) } else { CacheUse::ReadOnly };
            let pass = Instant::now();
            let hidden = model.hidden(tokens, &layout, Some((&mut cache, usage)));
            stats.forwards += 1;
            if stats.forwards == 1 {
                stats.prefill = pass.elapsed();
            }
            let [batch, width, dim] = hidden.dims();
            if shift && pending > 0 {
                carry = Some(
                    hidden.clone().slice(s![.., pending - 1..pending, ..]).reshape([batch, dim]),
                );
            }

            // 2. Gather the hidden state that predicts each masked slot: its own row, or
            //    with shifted logits the row before it, which for the block's first slot
            //    may be the carried state of the previous block's last slot.
            let mut sources = hidden.reshape([batch * width, dim]);
            if let Some(carry) = &carry {
                sources = Tensor::cat(vec![sources, carry.clone()], 0);
            }
            let (mut owners, mut targets, mut picks) = (Vec::new(), Vec::new(), Vec::new());
            for (r, row) in live.iter_mut().enumerate() {
                row.forwards += 1;
                for slot in row.masked_in(block_start..block_end) {
                    let source = slot - usize::from(shift);
                    let pick = if (window_start..window_end).contains(&source) {
                        r * width + source - window_start
                    } else {
                        batch * width + r
                    };
                    owners.push(r);
                    targets.push(slot);
                    picks.push(pick as i64);
                }
            }
            let selected = sources.select(0, int_tensor::<B>(&picks, &device));
            let logits = model.lm_head(selected.unsqueeze::<3>()).squeeze_dim::<2>(0);
            let choices = choose(logits, &forbidden, &config.sampling, &owners, &mut rngs);

            // 3. Commit per row.
            let mut at = 0;
            for (r, row) in live.iter_mut().enumerate() {
                let count = owners[at..].iter().take_while(|&&o| o == r).count();
                if count == 0 {
                    continue;
                }
                let (row_choices, row_targets) =
                    (&choices[at..at + count], &targets[at..at + count]);
                at += count;
                if config.record_states {
                    let state = visited_state(row, block_start, block_end, mask_id);
                    row.states.push(state);
                }
                let last_step = row.block_step + 1 >= row.schedule.len();
                let floor = if last_step { count } else { row.schedule[row.block_step] };
                for i in config.rule.select(row_choices, floor) {
                    row.slots[row_targets[i]] = Slot::Fixed(row_choices[i].token);
                    row.unmask_step[row_targets[i]] = row.steps;
                }
                row.steps += 1;
                row.block_step += 1;
            }
        }

        // 4. Stop check, streaming, and retiring finished rows.
        let mut keep = Vec::new();
        for (r, row) in live.iter_mut().enumerate() {
            let generated = row.gen_start.max(block_start)..row.end.min(block_end);
            if let Some(stop) = generated.clone().find(
                |&s| matches!(row.slots[s], Slot::Fixed(t) if config.stop_tokens.contains(&t)),
            ) {
                row.stopped = true;
                row.end = stop + 1;
            }
            let finished = row.stopped || row.end <= block_end;
            let new_tokens: Vec<u32> = (row.gen_start + row.emitted..row.end.min(block_end))
                .map(|s| match row.slots[s] {
                    Slot::Fixed(t) => t,
                    _ => unreachable!("block is complete"),
                })
                .collect();
            row.emitted += new_tokens.len();
            on_block(BlockEvent { row: row.id, new_tokens: &new_tokens, finished });
            if !finished {
                keep.push(r);
            }
        }
        if keep.len() < live.len() {
            let kept =
                int_tensor::<B>(&keep.iter().map(|&r| r as i64).collect::<Vec<_>>(), &device);
            cache.retain_rows(kept.clone());
            carry = carry.map(|c| c.select(0, kept));
            let mut next_live = Vec::new();
            let mut next_rngs = Vec::new();
            for (r, (row, rng)) in live.into_iter().zip(rngs).enumerate() {
                if keep.contains(&r) {
                    next_live.push(row);
                    next_rngs.push(rng);
                } else {
                    stats.tokens += row.end - row.gen_start;
                    let id = row.id;
                    outputs[id] = Some(row.into_output());
                }
            }
            live = next_live;
            rngs = next_rngs;
        }
        block_start = block_end;
    }
    stats.elapsed = started.elapsed();
    if stats.forwards == 0 {
        stats.prefill = Duration::ZERO;
    }
    Ok(Generation {
        rows: outputs.into_iter().map(|o| o.expect("every row finishes")).collect(),
        stats,
    })
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
