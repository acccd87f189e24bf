//! The figures of one model under one decoding mode on the test prompts, as the report
//! gives them: agreement with the teacher, accuracy, generative perplexity and speed.

use serde::{Deserialize, Serialize};

use crate::agreement::{agrees, fraction, prefix_agrees};
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
    /// Per test prompt, in order: whether the whole output agreed (for paired comparisons
    /// of two models on the same prompts).
    #[serde(with = "outcome_string")]
    pub agrees: Vec<bool>,
    /// Per test prompt, in order: whether the first 16 tokens agreed.
    #[serde(with = "outcome_string")]
    pub agrees_16: Vec<bool>,
    /// Correct final numbers on the checkable (arithmetic) prompts.
    pub accuracy: f64,
    /// Checkable prompts among the evaluated ones.
    pub graded: usize,
    /// exp(mean NLL) of the outputs under the teacher (NaN: not scored; `null` in JSON).
    #[serde(with = "nan_as_null")]
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
        let whole = agrees(outputs, references);
        let first_16 = prefix_agrees(outputs, references, AGREEMENT_PREFIX);
        Self {
            agreement: fraction(&whole),
            agreement_16: fraction(&first_16),
            agrees: whole,
            agrees_16: first_16,
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

/// Per-prompt outcomes in JSON as one string of `1` (agrees) and `0` in prompt order: a
/// line per report row instead of a line per prompt.
mod outcome_string {
    use serde::de::Error;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(outcomes: &[bool], serializer: S) -> Result<S::Ok, S::Error> {
        let text: String = outcomes.iter().map(|&agrees| if agrees { '1' } else { '0' }).collect();
        serializer.serialize_str(&text)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<bool>, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.chars()
            .map(|c| match c {
                '1' => Ok(true),
                '0' => Ok(false),
                other => {
                    Err(D::Error::custom(format!("per-prompt outcomes are 0 or 1, not {other:?}")))
                }
            })
            .collect()
    }
}

/// JSON has no NaN: serde_json writes a NaN `f64` as `null` and then refuses to read it
/// back. A figure that was not measured is written as `null` and read back as NaN.
mod nan_as_null {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
        match value.is_nan() {
            true => serializer.serialize_none(),
            false => serializer.serialize_f64(*value),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(deserializer)?.unwrap_or(f64::NAN))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// An AR result on `outputs`, scored by the teacher at gen. PPL 2.
    fn ar_result(outputs: Vec<Vec<u32>>) -> ModeResult {
        ModeResult {
            mode: "ar".into(),
            block_size: 1,
            correct: 0,
            total: 0,
            accuracy: 0.0,
            tokens_per_step: 1.0,
            tokens_per_forward: 1.0,
            tokens_per_second: 1.0,
            tokens: outputs.iter().map(Vec::len).sum(),
            seconds: 1.0,
            generative_perplexity: Some(2.0),
            samples: Vec::new(),
            outputs,
        }
    }

    #[test]
    fn per_prompt_outcomes_round_trip_through_json_as_one_string() {
        let batched = ar_result(vec![vec![1, 2, 0], vec![3, 0], vec![4, 5, 6]]);
        let references = [vec![1, 2, 0], vec![3, 4, 0], vec![4, 5, 7]];
        let figures = Figures::of(&batched, None, &references);
        assert_eq!(figures.agrees, [true, false, false]);
        assert_eq!(figures.agreement, 1.0 / 3.0);
        let json = serde_json::to_value(&figures).unwrap();
        assert_eq!(json["agrees"], "100");
        assert_eq!(json["agrees_16"], "100");
        let back: Figures = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(back.agrees, figures.agrees);
        let mut bad = json;
        bad["agrees"] = "10x".into();
        let error = serde_json::from_value::<Figures>(bad).unwrap_err().to_string();
        assert!(error.contains("0 or 1, not 'x'"), "{error}");
    }

    #[test]
    fn an_unscored_perplexity_round_trips_through_json_as_null() {
        let scored = Figures::of(&ar_result(vec![vec![1, 0]]), None, &[vec![1, 0]]);
        assert_eq!(scored.gen_ppl, 2.0);
        let back: Figures = serde_json::from_value(serde_json::to_value(&scored).unwrap()).unwrap();
        assert_eq!(back, scored);
        let mut figures = scored;
        figures.gen_ppl = f64::NAN;
        let json = serde_json::to_value(&figures).unwrap();
        assert!(json["gen_ppl"].is_null(), "{json}");
        let back: Figures = serde_json::from_value(json).unwrap();
        assert!(back.gen_ppl.is_nan());
    }
}
