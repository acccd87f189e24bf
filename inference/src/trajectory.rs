//! What a decoding run leaves behind for training and analysis: for every generated
//! token the denoising step that unmasked it, and (on request) every state the sampler
//! fed to the model.

/// The active block as the model saw it at one denoising step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisitedState {
    /// Row-local denoising step (0-based) at which this state was the model's input.
    pub step: usize,
    /// Position of the block's first slot (a multiple of the block size).
    pub block_start: usize,
    /// Token per position of the block (prompt tokens included, mask id where masked),
    /// truncated where the sequence ends.
    pub tokens: Vec<u32>,
}

/// One finished sequence.
#[derive(Debug, Clone, PartialEq)]
pub struct RowOutput {
    /// Generated tokens, ending with the stop token when one was produced.
    pub tokens: Vec<u32>,
    /// The slots after the stop token in its block, as the sampler filled them. They are
    /// not part of the answer, but the model saw them (masked, then drawn) in every state of
    /// that block, so training must show them too. Empty unless the row stopped before the
    /// end of a block.
    pub after_stop: Vec<u32>,
    /// Per slot of the trajectory (`tokens`, then `after_stop`), the row-local denoising
    /// step at which it was unmasked.
    pub first_unmask_step: Vec<usize>,
    /// Whether generation ended on a stop token (rather than the length limit).
    pub stopped: bool,
    /// Denoising steps (forward passes that unmasked something) of this row.
    pub steps: usize,
    /// Forward passes this row took part in, prefill and commits included.
    pub forwards: usize,
    /// Every visited state, when requested in the decode config.
    pub states: Vec<VisitedState>,
}

impl RowOutput {
    /// Every slot the sampler filled: `tokens`, then `after_stop` (aligned with
    /// `first_unmask_step`).
    pub fn trajectory(&self) -> Vec<u32> {
        self.tokens.iter().chain(&self.after_stop).copied().collect()
    }

    /// Tokens without the final stop token.
    pub fn text_tokens(&self) -> &[u32] {
        match self.stopped {
            true => &self.tokens[..self.tokens.len() - 1],
            false => &self.tokens,
        }
    }
}
