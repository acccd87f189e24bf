//! `cargo xtask eval`: task accuracy of a model under AR, static and dynamic decoding,
//! with tokens per step/forward, tok/s and generative perplexity under a teacher.
//! Writes `eval.json` and `eval.md`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use burn::prelude::Backend;
use clap::Args;
use opdlm_model::{load_pretrained, ChatMessage, Transformer};
use opdlm_training::builtin::{self, DEFAULT_THRESHOLDS};
use opdlm_training::eval::{
    evaluate, items_from_jsonl, markdown_table, DecodeMode, EvalItem, EvalSettings, ModeResult,
};
use opdlm_training::pretrain::builtin_teacher_dir;
use opdlm_training::trainer::stop_tokens;
use serde::Serialize;

use crate::backend::{dispatch, BackendKind, BackendTask};
use crate::progress;

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
    /// Block size of static and dynamic decoding [default: the model's, else 4].
    #[arg(long)]
    pub block_size: Option<usize>,
    /// Decoding modes to run, comma-separated (dynamic runs once per threshold).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = vec![ModeArg::Ar, ModeArg::Static, ModeArg::Dynamic])]
    pub modes: Vec<ModeArg>,
    /// Dynamic decoding thresholds γ, comma-separated.
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
    /// Compute backend.
    #[arg(long, value_enum, default_value_t = BackendKind::Ndarray)]
    pub backend: BackendKind,
}

pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.batch_size > 0, "--batch-size must be at least 1");
    anyhow::ensure!(args.block_size != Some(0), "--block-size must be at least 1");
    if let Some(t) = args.thresholds.iter().find(|t| !(**t > 0.0 && **t <= 1.0)) {
        anyhow::bail!("--thresholds: {t} is outside (0, 1]");
    }
    dispatch(args.backend, EvalTask(args))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModeArg {
    /// Autoregressive: block size 1, one token per forward.
    Ar,
    /// Block size B, one most-confident token per step.
    Static,
    /// Block size B, every slot above γ per step.
    Dynamic,
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
    fn run<B: Backend>(self, device: B::Device) -> anyhow::Result<()> {
        let args = self.0;
        let model_path = args.model.clone().unwrap_or_else(builtin_teacher_dir);
        let pretrained = load_pretrained::<B>(&model_path, &device)
            .with_context(|| format!("loading {}", model_path.display()))?;
        let (model, tokenizer) = (pretrained.model, pretrained.tokenizer);
        let builtin_tasks = args.prompts.is_none();
        let teacher_path = args.teacher.clone().or_else(|| builtin_tasks.then(builtin_teacher_dir));
        let teacher: Option<Transformer<B>> = match &teacher_path {
            Some(path) => Some(
                load_pretrained::<B>(path, &device)
                    .with_context(|| format!("loading teacher {}", path.display()))?
                    .model,
            ),
            None => None,
        };
        let mut items = match &args.prompts {
            Some(path) => items_from_jsonl(path).map_err(anyhow::Error::msg)?,
            None => builtin::test_items(args.problems, args.seed),
        };
        if let Some(limit) = args.limit {
            items.truncate(limit);
        }
        if args.chat {
            for item in &mut items {
                item.prompt =
                    tokenizer.render_chat(&[ChatMessage::user(item.prompt.clone())], true)?;
            }
        }
        let block_size = args
            .block_size
            .or(model.config().diffusion.as_ref().map(|d| d.block_size))
            .unwrap_or(4);
        let max_new_tokens = args.max_new_tokens.unwrap_or(if builtin_tasks {
            builtin::MAX_NEW_TOKENS
        } else {
            256
        });
        let modes: Vec<DecodeMode> = args
            .modes
            .iter()
            .flat_map(|mode| match mode {
                ModeArg::Ar => vec![DecodeMode::Ar],
                ModeArg::Static => vec![DecodeMode::Static],
                ModeArg::Dynamic => {
                    args.thresholds.iter().map(|&t| DecodeMode::Dynamic(t)).collect()
                }
            })
            .collect();
        anyhow::ensure!(!modes.is_empty(), "--modes: nothing to run");
        let settings =
            EvalSettings { block_size, max_new_tokens, batch_size: args.batch_size, modes };
        let stops = stop_tokens(model.config().eos_token_ids.clone(), &tokenizer);
        let results = run_eval(&model, &tokenizer, teacher.as_ref(), &items, &settings, &stops)?;
        let report = Report {
            model: model_path.display().to_string(),
            teacher: teacher_path.map(|p| p.display().to_string()),
            prompts: args.prompts.as_ref().map_or_else(
                || format!("built-in tasks, {} test problems (seed {})", items.len(), args.seed),
                |p| p.display().to_string(),
            ),
            results: &results,
        };
        let table = markdown_table(&results);
        write_report(
            &args.out,
            &report,
            &format!("# Evaluation of {}\n\nPrompts: {}\n\n{table}", report.model, report.prompts),
        )?;
        println!("{table}");
        println!("report: {}/eval.json, {}/eval.md", args.out.display(), args.out.display());
        Ok(())
    }
}

/// Evaluation with a progress bar over prompts × modes.
pub fn run_eval<B: Backend>(
    model: &Transformer<B>,
    tokenizer: &opdlm_model::TextTokenizer,
    teacher: Option<&Transformer<B>>,
    items: &[EvalItem],
    settings: &EvalSettings,
    stops: &[u32],
) -> anyhow::Result<Vec<ModeResult>> {
    let bar = progress::bar(items.len() * settings.modes.len(), "prompts×modes");
    let results =
        evaluate(model, tokenizer, teacher, items, settings, stops, |n| bar.inc(n as u64))
            .map_err(anyhow::Error::msg)?;
    bar.finish_and_clear();
    Ok(results)
}

/// Writes `eval.json` and `eval.md` into `dir`.
pub fn write_report(dir: &Path, report: &impl Serialize, markdown: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let json = dir.join("eval.json");
    std::fs::write(&json, serde_json::to_string_pretty(report)?)
        .with_context(|| format!("writing {}", json.display()))?;
    let md = dir.join("eval.md");
    std::fs::write(&md, markdown).with_context(|| format!("writing {}", md.display()))?;
    Ok(())
}
