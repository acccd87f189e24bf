//! Evaluation: task accuracy of any model (an AR teacher or a converted student) under
//! AR, static and dynamic decoding, with tokens per step/forward, tokens per second and
//! the generative perplexity of its outputs under a teacher.

use std::path::Path;
use std::time::Duration;

use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use opdlm_inference::prompts::read_prompt_file;
use opdlm_inference::{generate, DecodeConfig, DecodeStats, Sampler};
use opdlm_model::atomic::write_text_atomically;
use opdlm_model::{AttentionMode, Layout, TextTokenizer, Transformer, WeightFormat};
use opdlm_training::progress::Progress;
use serde::Serialize;

use crate::tasks::{Problem, Task};

/// How an output is graded against the reference answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AnswerCheck {
    /// A built-in task's exact final answer.
    Task(Task),
    /// The last number in the output equals the reference's final number (after `####`
    /// when present, as GSM8K writes it).
    LastNumber,
    /// Not graded (no checkable answer): the prompt counts towards agreement and speed,
    /// not towards accuracy.
    Ungraded,
}

/// One graded prompt.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalItem {
    /// The text given to the model.
    pub prompt: String,
    /// The reference answer.
    pub answer: String,
    /// How an output is graded against it.
    pub check: AnswerCheck,
}

impl EvalItem {
    /// A built-in task's problem, graded by its task's rule.
    pub fn from_problem(problem: &Problem) -> Self {
        let task =
            Task::of_prompt(&problem.prompt).expect("built-in problems carry their task's prefix");
        Self {
            prompt: problem.prompt.clone(),
            answer: problem.answer.clone(),
            check: AnswerCheck::Task(task),
        }
    }

    /// Whether the item has an answer to grade against.
    pub fn is_graded(&self) -> bool {
        self.check != AnswerCheck::Ungraded
    }

    /// Grades one output against the reference answer (never correct when ungraded).
    pub fn is_correct(&self, output: &str) -> bool {
        match self.check {
            AnswerCheck::Ungraded => false,
            AnswerCheck::Task(task) => task.is_correct(output, &self.answer),
            AnswerCheck::LastNumber => {
                let reference =
                    self.answer.rsplit_once("####").map_or(self.answer.as_str(), |(_, r)| r);
                match (last_number(output), last_number(reference)) {
                    (Some(got), Some(want)) => got == want,
                    _ => false,
                }
            }
        }
    }
}

/// The last number in `text`, without thousands separators or a trailing `.0`s.
pub fn last_number(text: &str) -> Option<String> {
    let mut numbers = Vec::new();
    let mut current = String::new();
    for c in text.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_digit()
            || (c == '-' && current.is_empty())
            || (c == '.' && !current.is_empty())
        {
            current.push(c);
        } else if c == ',' && !current.is_empty() {
            // Thousands separator: "1,234" is one number.
        } else {
            let trimmed = current.trim_end_matches('.');
            if trimmed.bytes().any(|b| b.is_ascii_digit()) {
                numbers.push(trimmed.to_string());
            }
            current.clear();
        }
    }
    let last = numbers.pop()?;
    Some(match last.split_once('.') {
        Some((int, frac)) if frac.bytes().all(|b| b == b'0') => int.to_string(),
        _ => last,
    })
}

/// Items of a JSONL file of `{"prompt": ..., "answer": ...}`, graded by last number;
/// errors name the record missing a field.
pub fn items_from_jsonl(path: &Path) -> Result<Vec<EvalItem>, EvalError> {
    let records = read_prompt_file(path).map_err(|e| EvalError::Prompts(e.to_string()))?;
    records
        .into_iter()
        .enumerate()
        .map(|(i, record)| {
            let missing = |field: &str| {
                EvalError::Prompts(format!(
                    "{}: record {}: missing `{field}` (evaluation needs {{\"prompt\", \"answer\"}})",
                    path.display(),
                    i + 1
                ))
            };
            let prompt = record.prompt.ok_or_else(|| missing("prompt"))?;
            let answer = record.answer.ok_or_else(|| missing("answer"))?;
            Ok(EvalItem { prompt, answer, check: AnswerCheck::LastNumber })
        })
        .collect()
}

/// One decoding method of an evaluation: a sampler and its threshold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecodeMode {
    /// AR (block size 1, the model's own logit convention) or a block-diffusion rule.
    pub sampler: Sampler,
    /// The rule's threshold (ignored by AR and static).
    pub threshold: f32,
}

impl DecodeMode {
    /// One token per forward pass (block size 1).
    pub const AR: Self = Self { sampler: Sampler::Ar, threshold: 0.0 };
    /// Block size B, one most-confident token per step (the paper's static decoding).
    pub const STATIC: Self = Self { sampler: Sampler::Static, threshold: 0.0 };

    /// Block size B, every slot above the confidence threshold γ per step.
    pub fn dynamic(threshold: f32) -> Self {
        Self { sampler: Sampler::Dynamic, threshold }
    }

    /// The row label of the results table (`ar`, `static`, `dynamic γ=0.9`, ...).
    pub fn label(self) -> String {
        self.sampler.label(self.threshold)
    }

    /// Block size this mode decodes with.
    pub fn block_size(self, block_size: usize) -> usize {
        if self.sampler == Sampler::Ar {
            1
        } else {
            block_size
        }
    }

    fn decode_config(
        self,
        block_size: usize,
        max_new_tokens: usize,
        stop_tokens: Vec<u32>,
    ) -> DecodeConfig {
        let rule = self.sampler.rule(self.threshold);
        let block = self.block_size(block_size);
        DecodeConfig { stop_tokens, ..DecodeConfig::diffusion(block, max_new_tokens, rule) }
    }
}

/// How an evaluation decodes.
#[derive(Debug, Clone)]
pub struct EvalSettings {
    /// Block size of the block-diffusion modes.
    pub block_size: usize,
    /// Generation limit per prompt.
    pub max_new_tokens: usize,
    /// Prompts decoded together.
    pub batch_size: usize,
    /// The decoding methods, each evaluated on every item.
    pub modes: Vec<DecodeMode>,
    /// How the model's weights are held while decoding (the teacher's stay f32).
    pub weights: WeightFormat,
}

impl EvalSettings {
    /// Rejects modes and sizes no model can decode with, before any model is loaded.
    pub fn validate(&self) -> Result<(), EvalError> {
        if self.batch_size == 0 {
            return Err(EvalError::Settings("the batch size must be at least 1".into()));
        }
        if self.modes.is_empty() {
            return Err(EvalError::Settings("no decoding mode to run".into()));
        }
        for mode in &self.modes {
            mode.decode_config(self.block_size, self.max_new_tokens, vec![]).validate()?;
        }
        Ok(())
    }
}

/// Why an evaluation could not run.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// The prompt file cannot be read or lacks a field.
    #[error("{0}")]
    Prompts(String),
    /// The settings are unusable.
    #[error("{0}")]
    Settings(String),
    /// A prompt could not be encoded.
    #[error("encoding a prompt: {0}")]
    Tokenizer(String),
    /// The sampler rejected the settings or a prompt.
    #[error(transparent)]
    Decode(#[from] opdlm_inference::DecodeError),
    /// The report could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The operating system's error.
        source: std::io::Error,
    },
}

/// Figures of one decoding mode over all items.
#[derive(Debug, Clone, Serialize)]
pub struct ModeResult {
    /// The mode's label (`ar`, `static`, `dynamic γ=0.9`, ...).
    pub mode: String,
    /// Block size it decoded with.
    pub block_size: usize,
    /// Items graded correct.
    pub correct: usize,
    /// Items graded (all of them unless some are [`AnswerCheck::Ungraded`]).
    pub total: usize,
    /// `correct / total`.
    pub accuracy: f64,
    /// Generated tokens per denoising step, per sequence (the paper's tokens/step).
    pub tokens_per_step: f64,
    /// Generated tokens per forward pass of each sequence, prefill and commits included.
    pub tokens_per_forward: f64,
    /// Generated tokens per second of decoding (batched).
    pub tokens_per_second: f64,
    /// Generated tokens over all items (stop tokens included).
    pub tokens: usize,
    /// Decoding time over all items.
    pub seconds: f64,
    /// exp(mean NLL) of the generated tokens under the teacher (None: no teacher given).
    pub generative_perplexity: Option<f64>,
    /// A few outputs, for a look at what the model writes.
    pub samples: Vec<Sample>,
    /// Every item's generated tokens (stop token included), in item order: what agreement
    /// with a reference decoding is computed from. Not serialised.
    #[serde(skip)]
    pub outputs: Vec<Vec<u32>>,
}

/// One prompt and what the model wrote.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// The prompt text.
    pub prompt: String,
    /// The decoded output (stop token removed).
    pub output: String,
    /// Whether it was graded correct.
    pub correct: bool,
}

/// New tokens each mode decodes, untimed and discarded, on its first batch of prompts
/// before its timed decoding: a GPU backend compiles its kernels at their first use, and
/// that cost would be charged to whichever mode happens to run first (on an H200 the
/// SmolLM2 teacher's first batch of 100 prompts took 27 s, its second 7 s;
/// `reports/smollm2-conversion/gpu-045b50e/`). On the CPU it only adds these few
/// forwards.
const WARM_UP_TOKENS: usize = 8;

/// Decodes `prompts` for [`WARM_UP_TOKENS`] with `config` and throws the result away. It
/// cannot change what the timed decoding writes: every `generate` call seeds its rows
/// afresh from `config.seed`.
fn warm_up<B: Backend>(
    model: &Transformer<B>,
    prompts: &[Vec<u32>],
    config: &DecodeConfig,
) -> Result<(), EvalError> {
    let short = DecodeConfig {
        max_new_tokens: WARM_UP_TOKENS.min(config.max_new_tokens),
        ..config.clone()
    };
    generate(model, prompts, &short, |_| {})?;
    Ok(())
}

/// Evaluates `model` on `items` under every mode, with a progress display over prompts ×
/// modes. `teacher` scores the outputs (AR, causal attention).
pub fn evaluate<B: Backend>(
    model: &Transformer<B>,
    tokenizer: &TextTokenizer,
    teacher: Option<&Transformer<B>>,
    items: &[EvalItem],
    settings: &EvalSettings,
    stop_tokens: &[u32],
) -> Result<Vec<ModeResult>, EvalError> {
    let mut progress =
        Progress::new(items.len() * settings.modes.len(), "evaluation", "prompts×modes");
    // An unconverted model is decoded with shifted logits: block size 1 is then exactly AR.
    let model = model
        .clone()
        .into_diffusion(tokenizer.vocab_size(), settings.block_size, true)
        .with_weights(settings.weights);
    let prompts: Vec<Vec<u32>> = items
        .iter()
        .map(|item| tokenizer.encode(&item.prompt).map_err(|e| EvalError::Tokenizer(e.to_string())))
        .collect::<Result<_, _>>()?;
    let mut results = Vec::new();
    for &mode in &settings.modes {
        let config =
            mode.decode_config(settings.block_size, settings.max_new_tokens, stop_tokens.to_vec());
        let (mut correct, mut tokens, mut steps, mut forwards) = (0, 0, 0, 0);
        let mut elapsed = Duration::ZERO;
        let (mut nll, mut scored) = (0.0, 0usize);
        let mut samples = Vec::new();
        let mut outputs = Vec::with_capacity(items.len());
        if let Some(first_batch) = prompts.chunks(settings.batch_size).next() {
            warm_up(&model, first_batch, &config)?;
        }
        for (chunk_items, chunk_prompts) in
            items.chunks(settings.batch_size).zip(prompts.chunks(settings.batch_size))
        {
            let generation = generate(&model, chunk_prompts, &config, |_| {})?;
            elapsed += generation.stats.elapsed;
            for ((item, prompt), row) in chunk_items.iter().zip(chunk_prompts).zip(&generation.rows)
            {
                let output = tokenizer.decode(row.text_tokens());
                let ok = item.is_correct(&output);
                correct += usize::from(ok);
                tokens += row.tokens.len();
                steps += row.steps;
                forwards += row.forwards;
                if let Some(teacher) = teacher {
                    nll += sequence_nll(teacher, prompt, &row.tokens);
                    scored += row.tokens.len();
                }
                if samples.len() < 4 {
                    samples.push(Sample { prompt: item.prompt.clone(), output, correct: ok });
                }
                outputs.push(row.tokens.clone());
            }
            progress.inc(chunk_items.len());
        }
        let stats = DecodeStats { forwards, tokens, elapsed, ..DecodeStats::default() };
        let graded = items.iter().filter(|item| item.is_graded()).count();
        results.push(ModeResult {
            mode: mode.label(),
            block_size: mode.block_size(settings.block_size),
            correct,
            total: graded,
            accuracy: correct as f64 / graded.max(1) as f64,
            tokens_per_step: tokens as f64 / steps.max(1) as f64,
            tokens_per_forward: stats.tokens_per_forward(),
            tokens_per_second: stats.tokens_per_second(),
            tokens,
            seconds: elapsed.as_secs_f64(),
            generative_perplexity: (scored > 0).then(|| (nll / scored as f64).exp()),
            samples,
            outputs,
        });
    }
    progress.finish_and_clear();
    Ok(results)
}

/// Writes `eval.json` and `eval.md` into `dir`, each atomically.
pub fn write_report(dir: &Path, report: &impl Serialize, markdown: &str) -> Result<(), EvalError> {
    let io = |path: &Path, source| EvalError::Io { path: path.display().to_string(), source };
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let json = dir.join("eval.json");
    let text = serde_json::to_string_pretty(report).expect("reports serialise");
    write_text_atomically(&json, &text).map_err(|e| io(&json, e))?;
    let md = dir.join("eval.md");
    write_text_atomically(&md, markdown).map_err(|e| io(&md, e))
}

/// Summed negative log-likelihood of `continuation` after `prompt` under `teacher`
/// (causal attention, logits at position i predict token i + 1).
pub fn sequence_nll<B: Backend>(
    teacher: &Transformer<B>,
    prompt: &[u32],
    continuation: &[u32],
) -> f64 {
    if continuation.is_empty() {
        return 0.0;
    }
    let device = teacher.devices().into_iter().next().expect("model has a device");
    let ids: Vec<i64> = prompt.iter().chain(continuation).map(|&t| i64::from(t)).collect();
    let len = ids.len();
    let tokens =
        Tensor::<B, 1, Int>::from_data(TensorData::new(ids, [len]), &device).unsqueeze::<2>();
    let logits =
        teacher.forward(tokens, &Layout::contiguous(AttentionMode::Causal, 1, 0, len, &device));
    let vocab = logits.dims()[2];
    let start = prompt.len() - 1;
    let predicted =
        logits.slice([0..1, start..len - 1, 0..vocab]).reshape([continuation.len(), vocab]);
    let log_probs = log_softmax(predicted, 1);
    let targets: Vec<i64> = continuation.iter().map(|&t| i64::from(t)).collect();
    let targets =
        Tensor::<B, 1, Int>::from_data(TensorData::new(targets, [continuation.len()]), &device);
    let picked = log_probs.gather(1, targets.unsqueeze_dim(1));
    -picked.sum().into_scalar().elem::<f64>()
}

/// A Markdown table of the results (one row per mode).
pub fn markdown_table(results: &[ModeResult]) -> String {
    let mut out = String::from("| decoding | B | accuracy | tokens/step | tokens/forward | tok/s | gen. PPL |\n|---|---|---|---|---|---|---|\n");
    for r in results {
        let ppl = r.generative_perplexity.map_or("–".into(), |p| format!("{p:.3}"));
        out += &format!(
            "| {} | {} | {:.1}% ({}/{}) | {:.2} | {:.2} | {:.1} | {} |\n",
            r.mode,
            r.block_size,
            100.0 * r.accuracy,
            r.correct,
            r.total,
            r.tokens_per_step,
            r.tokens_per_forward,
            r.tokens_per_second,
            ppl
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;

    struct Zero;
    impl<B: Backend> burn::module::ModuleMapper<B> for Zero {
        fn map_float<const D: usize>(
            &mut self,
            param: burn::module::Param<Tensor<B, D>>,
        ) -> burn::module::Param<Tensor<B, D>> {
            let (id, tensor, mapper) = param.consume();
            burn::module::Param::from_mapped_value(id, tensor.zeros_like(), mapper)
        }
    }

    #[test]
    fn last_number_reads_gsm8k_style_answers() {
        assert_eq!(last_number("so she has 1,234 apples."), Some("1234".into()));
        assert_eq!(last_number("It costs $18.00 in total"), Some("18".into()));
        assert_eq!(last_number("-5 then 3.5"), Some("3.5".into()));
        assert_eq!(last_number("no digits"), None);
        let item = EvalItem {
            prompt: "q".into(),
            answer: "She pays 9 * 2 = 18 dollars.\n#### 18".into(),
            check: AnswerCheck::LastNumber,
        };
        assert!(item.is_correct("The answer is 18."));
        assert!(!item.is_correct("The answer is 2."));
    }

    /// Hand-checked generative perplexity: a one-layer model with all weights zero
    /// predicts uniformly, so every token costs ln(V) and the perplexity is exactly V.
    #[test]
    fn generative_perplexity_of_a_uniform_model_is_the_vocabulary_size() {
        type B = NdArray<f32>;
        let device = Default::default();
        let config = crate::pretrain::TeacherShape {
            hidden: 8,
            layers: 1,
            heads: 2,
            kv_heads: 1,
            intermediate: 16,
        }
        .model_config(12, 64);
        let model = Transformer::<B>::new(&config, &device);
        let model = model.map(&mut Zero);
        let nll = sequence_nll(&model, &[1, 2, 3], &[4, 5]);
        assert!((nll - 2.0 * (12f64).ln()).abs() < 1e-5, "{nll}");
    }
}
