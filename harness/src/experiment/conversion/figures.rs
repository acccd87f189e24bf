//! The figures of one model under one decoding mode on the test prompts, as the report
//! gives them: agreement with the teacher, accuracy, generative perplexity and speed.

use serde::{Deserialize, Serialize};

use crate::agreement::{agreement, prefix_agreement};
use crate::eval::{DecodeMode, ModeResult};
use opdlm_inference::Sampler;

/// Agreement is also measured on this many first tokens.
pub const AGREEMENT_PREFIX: usize = 16;

/// One row of the report (fractions in [0, 1]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    /// Outputs equal to the teacher's greedy response (stop token included).
    pub agreement: f64,
    /// Outputs whose first 16 tokens equal the teacher's.
    pub agreement_16: f64,
    /// Correct final numbers on the checkable (arithmetic) prompts.
    pub accuracy: f64,
    /// Checkable prompts among the evaluated ones.
    pub graded: usize,
    /// exp(mean NLL) of the outputs under the teacher.
    pub gen_ppl: f64,
    /// Generated tokens per denoising step, per sequence.
    pub tokens_per_step: f64,
    /// Generated tokens per forward pass of each sequence (prefill included).
    pub tokens_per_forward: f64,
    /// Generated tokens per second decoding one prompt at a time (None: not measured).
    pub tok_s_batch1: Option<f64>,
    /// Generated tokens per second at the evaluation batch.
    pub tok_s_eval_batch: f64,
    /// Mean generated tokens per prompt (stop token included).
    pub mean_tokens: f64,
    /// Prompts evaluated.
    pub prompts: usize,
    /// The first outputs, as text.
    pub samples: Vec<String>,
}

/// The teacher's greedy AR responses to the test prompts and the teacher's own figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reference {
    /// Every test prompt's response tokens (stop token included).
    pub outputs: Vec<Vec<u32>>,
    /// The teacher's row (agreement 1 by definition).
    pub figures: Figures,
}

impl Figures {
    /// The figures of one evaluated mode: `batched` at the evaluation batch, `batch1` (if
    /// measured) one prompt at a time, agreement against `references`.
    pub fn of(batched: &ModeResult, batch1: Option<&ModeResult>, references: &[Vec<u32>]) -> Self {
        let outputs = &batched.outputs;
        Self {
            agreement: agreement(outputs, references),
            agreement_16: prefix_agreement(outputs, references, AGREEMENT_PREFIX),
            accuracy: batched.accuracy,
            graded: batched.total,
            gen_ppl: batched.generative_perplexity.unwrap_or(f64::NAN),
            tokens_per_step: batched.tokens_per_step,
            tokens_per_forward: batched.tokens_per_forward,
            tok_s_batch1: batch1.map(|r| r.tokens_per_second),
            tok_s_eval_batch: batched.tokens_per_second,
            mean_tokens: batched.tokens as f64 / outputs.len().max(1) as f64,
            prompts: outputs.len(),
            samples: batched.samples.iter().map(|s| s.output.clone()).collect(),
        }
    }
}

/// The report's name of a decoding mode: `ar`, `static`, `dynamic_0.9`, ...
pub fn mode_key(mode: DecodeMode) -> String {
    match mode.sampler {
        Sampler::Ar => "ar".into(),
        Sampler::Static => "static".into(),
        Sampler::Dynamic => format!("dynamic_{}", mode.threshold),
        Sampler::Entropy => format!("entropy_{}", mode.threshold),
        Sampler::Margin => format!("margin_{}", mode.threshold),
    }
}
