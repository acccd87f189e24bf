//! Speed figures of one decoding run.

use std::time::Duration;

use crate::trajectory::RowOutput;

/// Forward passes, tokens and time of one [`generate`](crate::generate) run.
#[derive(Debug, Clone, Default)]
pub struct DecodeStats {
    /// Batched forward passes (NFE), prefill and cache commits included.
    pub forwards: usize,
    /// Generated tokens over all rows (stop tokens included).
    pub tokens: usize,
    /// Wall-clock time of the whole run.
    pub elapsed: Duration,
    /// Time of the first forward pass (the prompt prefill).
    pub prefill: Duration,
    /// Times the cache was compacted: rows that advance at different speeds leave holes in
    /// the shared cache, squeezed out once they make up a third of it.
    pub compactions: usize,
}

impl DecodeStats {
    /// Generated tokens per batched forward pass.
    pub fn tokens_per_forward(&self) -> f64 {
        self.tokens as f64 / self.forwards.max(1) as f64
    }

    /// Tokens per forward as one sequence experiences it, over all rows (0 when no row
    /// took a forward pass, e.g. responses that were given rather than sampled).
    pub fn row_tokens_per_forward(rows: &[RowOutput]) -> f64 {
        let tokens: usize = rows.iter().map(|r| r.tokens.len()).sum();
        let forwards: usize = rows.iter().map(|r| r.forwards).sum();
        if forwards > 0 {
            tokens as f64 / forwards as f64
        } else {
            0.0
        }
    }

    /// Generated tokens per second of the whole run.
    pub fn tokens_per_second(&self) -> f64 {
        self.tokens as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// One-line summary: tokens, NFE, tokens/forward, tok/s.
    pub fn summary(&self) -> String {
        format!(
            "{} tokens, {} forwards (NFE), {:.2} tokens/forward, {:.1} tok/s, prefill {:.0} ms, total {:.2} s",
            self.tokens,
            self.forwards,
            self.tokens_per_forward(),
            self.tokens_per_second(),
            self.prefill.as_secs_f64() * 1e3,
            self.elapsed.as_secs_f64()
        )
    }
}
