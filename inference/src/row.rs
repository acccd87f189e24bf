//! One sequence of a decoding batch: its slots, its own active block and its place in the
//! shared KV cache. Rows advance independently (see [`crate::window`]), so every piece of
//! progress (block, step, cached length) is per row.

use std::ops::Range;

use crate::commit::static_schedule;
use crate::trajectory::{RowOutput, VisitedState};

/// What a slot of a row's sequence holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    /// A prompt token or a committed one.
    Fixed(u32),
    Masked,
}

/// Book-keeping of one sequence. Slot `i` is the token at absolute position `i`, so
/// blocks (`i / block_size`) are the ones the model was trained on.
pub(crate) struct Row {
    /// Index of the prompt this row answers.
    pub id: usize,
    /// First generated slot (the prompt's length).
    pub gen_start: usize,
    /// One past the row's last slot: `gen_start + max_new_tokens`, or just past its stop
    /// token once it stopped.
    pub end: usize,
    /// One past the last slot the sampler filled: `end`, or the end of the stop token's
    /// block (slots after the stop token were denoised with the rest of their block).
    pub filled_end: usize,
    /// The prompt, then the generated slots.
    pub slots: Vec<Slot>,
    /// Per slot, the row-local denoising step that unmasked it.
    pub unmask_step: Vec<usize>,
    /// The block being denoised (slots at its start may be prompt tokens).
    pub block: Range<usize>,
    /// Slots before this one have their keys/values in the cache.
    pub cached: usize,
    /// Per cache column, whether it holds one of this row's slots (a batch appends the
    /// same number of columns for every row; the others are holes, hidden by the mask).
    pub cache_columns: Vec<bool>,
    /// Denoising steps this row has taken (the trajectory's clock).
    pub steps: usize,
    /// Forward passes this row took part in.
    pub forwards: usize,
    /// Slots the static schedule unmasks at each step of the active block.
    pub schedule: Vec<usize>,
    /// Steps taken in the active block.
    pub block_step: usize,
    /// States fed to the model, when the config asks for them.
    pub states: Vec<VisitedState>,
    /// Generation ended on a stop token.
    pub stopped: bool,
    /// Generated tokens already handed to the streaming callback.
    pub emitted: usize,
}

impl Row {
    /// A row for `prompt` with `max_new_tokens` masked slots after it, its active block
    /// the one holding the first generated slot.
    pub fn new(
        id: usize,
        prompt: &[u32],
        max_new_tokens: usize,
        block_size: usize,
        steps_per_block: usize,
    ) -> Self {
        let gen_start = prompt.len();
        let end = gen_start + max_new_tokens;
        let slots: Vec<Slot> = prompt
            .iter()
            .map(|&t| Slot::Fixed(t))
            .chain(std::iter::repeat_n(Slot::Masked, max_new_tokens))
            .collect();
        let block_start = gen_start / block_size * block_size;
        let mut row = Self {
            id,
            gen_start,
            end,
            filled_end: end,
            unmask_step: vec![0; slots.len()],
            slots,
            block: block_start..(block_start + block_size).min(end),
            cached: 0,
            cache_columns: Vec::new(),
            steps: 0,
            forwards: 0,
            schedule: Vec::new(),
            block_step: 0,
            states: Vec::new(),
            stopped: false,
            emitted: 0,
        };
        row.plan_block(steps_per_block);
        row
    }

    /// The masked slots of the active block.
    pub fn masked(&self) -> Vec<usize> {
        self.block.clone().filter(|&s| self.slots[s] == Slot::Masked).collect()
    }

    /// Whether the active block still has a masked slot.
    pub fn has_masked(&self) -> bool {
        self.block.clone().any(|s| self.slots[s] == Slot::Masked)
    }

    /// Plans the static schedule of the active block's masked slots.
    fn plan_block(&mut self, steps_per_block: usize) {
        self.schedule = static_schedule(self.masked().len(), steps_per_block);
        self.block_step = 0;
    }

    /// Moves on to the next block (the finished one waits to be cached by the next pass).
    pub fn next_block(&mut self, block_size: usize, steps_per_block: usize) {
        let start = self.block.end;
        self.block = start..(start + block_size).min(self.end);
        self.plan_block(steps_per_block);
    }

    /// The active block as the model sees it now, for training on visited states.
    pub fn visited_state(&self, mask_id: u32) -> VisitedState {
        let tokens = (self.block.start..self.block.end.min(self.end))
            .map(|s| self.input_id(s, mask_id))
            .collect();
        VisitedState { step: self.steps, block_start: self.block.start, tokens }
    }

    /// Input id of slot `s` (the mask id while masked).
    pub fn input_id(&self, slot: usize, mask_id: u32) -> u32 {
        match self.slots[slot] {
            Slot::Fixed(t) => t,
            Slot::Masked => mask_id,
        }
    }

    /// The fixed token of a slot the sampler has completed.
    pub fn token(&self, slot: usize) -> u32 {
        match self.slots[slot] {
            Slot::Fixed(t) => t,
            Slot::Masked => unreachable!("slot {slot} is complete"),
        }
    }

    /// Ends the row at its first stop token in the finished active block, if any, and
    /// returns the tokens not yet streamed and whether the row is done.
    pub fn close_block(&mut self, stop_tokens: &[u32]) -> (Vec<u32>, bool) {
        let block = self.block.clone();
        let generated = self.gen_start.max(block.start)..self.end.min(block.end);
        let stop = generated
            .clone()
            .find(|&s| matches!(self.slots[s], Slot::Fixed(t) if stop_tokens.contains(&t)));
        self.filled_end = self.end.min(block.end);
        if let Some(stop) = stop {
            self.stopped = true;
            self.end = stop + 1;
        }
        let finished = self.stopped || self.end <= block.end;
        let new_tokens: Vec<u32> = (self.gen_start + self.emitted..self.end.min(block.end))
            .map(|s| self.token(s))
            .collect();
        self.emitted += new_tokens.len();
        (new_tokens, finished)
    }

    /// The finished sequence.
    pub fn into_output(self) -> RowOutput {
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
