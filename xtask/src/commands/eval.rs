//! `cargo xtask eval`: task accuracy of a model under AR, static and dynamic decoding,
//! with tokens per step/forward, tok/s and generative perplexity under a teacher.
//! Writes `eval.json` and `eval.md`.

use opdlm_training::TrainBackend;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use opdlm_harness::builtin::{self, DEFAULT_THRESHOLDS};
use opdlm_harness::eval::{
    evaluate, items_from_jsonl, markdown_table, write_report, DecodeMode, EvalItem, EvalSettings,
    ModeResult,
};
use opdlm_harness::pretrain::builtin_teacher_dir;
use opdlm_inference::Sampler;
use opdlm_model::{
    load_pretrained, ChatMessage, TextTokenizer, Transformer, WeightFormat, DEFAULT_BLOCK_SIZE,
};
use serde::Serialize;

use crate::backend::{dispatch, BackendKind, BackendTask};

/// Flags of `cargo xtask eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Model to evaluate: an AR model or a converted student (HF directory or .gguf)
    /// [default: the built-in teacher].
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Teacher that scores the outputs (generative perplexity) [default: the built-in
    /// teacher for the built-in tasks, none for --prompts].
    #[arg(long)]
    pub teacher: Option<PathBuf>,
    /// JSONL of {"prompt", "answer"} graded by the last number of the output (e.g.
    /// GSM8K); without it, the built-in tasks' test split.
    #[arg(long)]
    pub prompts: Option<PathBuf>,
    /// Render --prompts with the model's chat template.
    #[arg(long)]
    pub chat: bool,
    /// Built-in test problems (half per task).
    #[arg(long, default_value_t = builtin::TEST_PROBLEMS)]
    pub problems: usize,
    /// Evaluate only the first N prompts of --prompts.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Block size of the block-diffusion modes [default: the model's, else 4].
    #[arg(long)]
    pub block_size: Option<usize>,
    /// Decoding modes to run, comma-separated (dynamic, entropy and margin run once per
    /// threshold).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = vec![Sampler::Ar, Sampler::Static, Sampler::Dynamic])]
    pub modes: Vec<Sampler>,
    /// Thresholds of the dynamic (γ), entropy (budget, nats) and margin modes, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = DEFAULT_THRESHOLDS.to_vec())]
    pub thresholds: Vec<f32>,
    /// Generation limit per prompt [default: 40 for the built-in tasks, 256 for --prompts].
    #[arg(long)]
    pub max_new_tokens: Option<usize>,
    /// Prompts decoded together.
    #[arg(long, default_value_t = 50)]
    pub batch_size: usize,
    /// Seed of the built-in test problems.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output directory for eval.json and eval.md.
    #[arg(long, default_value = "runs/eval")]
    pub out: PathBuf,
    /// Weights in memory while decoding: f32, or q8 (linear layers and LM head in int8
    /// blocks of 32 with an f32 scale each: about a quarter of the bytes per forward).
    #[arg(long, value_enum, default_value_t = WeightFormat::F32)]
    pub weights: WeightFormat,
    /// Compute backend.
    #[arg(long, value_enum, default_value_t = BackendKind::Ndarray)]
    pub backend: BackendKind,
}

impl EvalArgs {
    /// The evaluation's settings for a model whose own block size is `model_block`.
    fn settings(&self, model_block: Option<usize>) -> EvalSettings {
        let builtin_tasks = self.prompts.is_none();
        let modes = self
            .modes
            .iter()
            .flat_map(|&sampler| match sampler.uses_threshold() {
                true => self
                    .thresholds
                    .iter()
                    .map(|&threshold| DecodeMode { sampler, threshold })
                    .collect(),
                false => vec![DecodeMode { sampler, threshold: 0.0 }],
            })
            .collect();
        EvalSettings {
            block_size: self.block_size.or(model_block).unwrap_or(DEFAULT_BLOCK_SIZE),
            max_new_tokens: self.max_new_tokens.unwrap_or(if builtin_tasks {
                builtin::MAX_NEW_TOKENS
            } else {
                256
            }),
            batch_size: self.batch_size,
            modes,
            weights: self.weights,
        }
    }

    /// The items: --prompts (chat template applied with --chat, cut at --limit) or the
    /// built-in test split.
    fn items(&self, tokenizer: &TextTokenizer) -> anyhow::Result<Vec<EvalItem>> {
        let mut items = match &self.prompts {
            Some(path) => items_from_jsonl(path)?,
            None => builtin::test_items(self.problems, self.seed),
        };
        if let Some(limit) = self.limit {
            items.truncate(limit);
        }
        if self.chat {
            for item in &mut items {
                item.prompt =
                    tokenizer.render_chat(&[ChatMessage::user(item.prompt.clone())], true)?;
            }
        }
        Ok(items)
    }
}

/// Runs `cargo xtask eval`.
pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    // Settings errors surface before any model is loaded.
    args.settings(None).validate()?;
    dispatch(args.backend, EvalTask(args))
}

struct EvalTask(EvalArgs);

#[derive(Serialize)]
struct Report<'a> {
    model: String,
    teacher: Option<String>,
    prompts: String,
    results: &'a [ModeResult],
}

impl BackendTask for EvalTask {
    fn run<B: TrainBackend>(self, device: B::Device) -> anyhow::Result<()> {
        let args = self.0;
        let model_path = args.model.clone().unwrap_or_else(builtin_teacher_dir);
        let pretrained = load_pretrained::<B>(&model_path, &device)
            .with_context(|| format!("loading {}", model_path.display()))?;
        let teacher_path =
            args.teacher.clone().or_else(|| args.prompts.is_none().then(builtin_teacher_dir));
        let teacher: Option<Transformer<B>> = match &teacher_path {
            Some(path) => Some(
                load_pretrained::<B>(path, &device)
                    .with_context(|| format!("loading teacher {}", path.display()))?
                    .model,
            ),
            None => None,
        };
        let items = args.items(&pretrained.tokenizer)?;
        let model_block = pretrained.model.config().diffusion.as_ref().map(|d| d.block_size);
        let settings = args.settings(model_block);
        let stops = pretrained.stop_tokens();
        let results = evaluate(
            &pretrained.model,
            &pretrained.tokenizer,
            teacher.as_ref(),
            &items,
            &settings,
            &stops,
        )?;
        let prompts = args.prompts.as_ref().map_or_else(
            || format!("built-in tasks, {} test problems (seed {})", items.len(), args.seed),
            |p| p.display().to_string(),
        );
        let report = Report {
            model: model_path.display().to_string(),
            teacher: teacher_path.map(|p| p.display().to_string()),
            prompts,
            results: &results,
        };
        let table = markdown_table(&results);
        let markdown =
            format!("# Evaluation of {}\n\nPrompts: {}\n\n{table}", report.model, report.prompts);
        write_report(&args.out, &report, &markdown)?;
        println!("{table}");
        println!("report: {}/eval.json, {}/eval.md", args.out.display(), args.out.display());
        Ok(())
    }
}
