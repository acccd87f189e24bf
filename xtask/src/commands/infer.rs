//! `cargo xtask infer`: decode prompts with a converted model (or an unconverted ARLM).

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context};
use burn::prelude::Backend;
use clap::{Args, ValueEnum};
use opdlm_inference::prompts::{read_prompt_file, PromptRecord};
use opdlm_inference::{generate, CommitRule, DecodeConfig, SamplingConfig};
use opdlm_model::{load_pretrained, TextTokenizer, Transformer};

use crate::backend::{dispatch, BackendKind, BackendTask};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SamplerKind {
    /// Fixed number of most-confident slots per step (block_size / steps_per_block).
    Static,
    /// Every slot with confidence above --threshold (at least one per step).
    Dynamic,
    /// Lowest-entropy slots while their summed entropy stays within --threshold nats.
    Entropy,
    /// Every slot whose top-1 minus top-2 probability exceeds --threshold.
    Margin,
    /// Plain autoregressive decoding (causal, one token per forward pass).
    Ar,
}

#[derive(Debug, Args)]
pub struct InferArgs {
    /// Model: a Hugging Face directory (config.json + safetensors + tokenizer.json) or a .gguf file.
    #[arg(long)]
    pub model: PathBuf,
    /// Prompt text (raw, unless --chat wraps it in the chat template).
    #[arg(long, conflicts_with = "prompts", required_unless_present = "prompts")]
    pub prompt: Option<String>,
    /// JSONL file with one {"prompt": ...} or {"messages": [...]} per line; decoded as one batch.
    #[arg(long)]
    pub prompts: Option<PathBuf>,
    /// Render prompts with the model's own chat template (adds the assistant turn header).
    #[arg(long)]
    pub chat: bool,
    /// Decoding rule.
    #[arg(long, value_enum, default_value_t = SamplerKind::Dynamic)]
    pub sampler: SamplerKind,
    /// Confidence threshold γ (dynamic), margin threshold (margin) or entropy budget in nats (entropy).
    #[arg(long, default_value_t = 0.9)]
    pub threshold: f32,
    /// Slots per block [default: the model's trained block size, else 4].
    #[arg(long)]
    pub block_size: Option<usize>,
    /// Denoising steps per block at most [default: block size].
    #[arg(long)]
    pub steps_per_block: Option<usize>,
    /// Sampling temperature; 0 = argmax.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// Keep only the k most likely tokens when sampling (0 = off).
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    /// Nucleus sampling: keep the most likely tokens up to this total probability (1 = off).
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    /// Maximum number of generated tokens per prompt.
    #[arg(long, default_value_t = 128)]
    pub max_new_tokens: usize,
    /// Random seed for sampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Compute backend.
    #[arg(long, value_enum, default_value_t = BackendKind::Ndarray)]
    pub backend: BackendKind,
}

pub fn run(args: InferArgs) -> anyhow::Result<()> {
    validate(&args)?;
    dispatch(args.backend, args)
}

fn validate(args: &InferArgs) -> anyhow::Result<()> {
    match args.sampler {
        SamplerKind::Dynamic | SamplerKind::Margin
            if !(args.threshold > 0.0 && args.threshold <= 1.0) =>
        {
            bail!(
                "--threshold must be in (0, 1] for the {:?} sampler, got {}",
                args.sampler,
                args.threshold
            )
        }
        SamplerKind::Entropy if !(args.threshold > 0.0) => {
            bail!("--threshold (entropy budget) must be positive, got {}", args.threshold)
        }
        _ => {}
    }
    if args.block_size == Some(0) {
        bail!("--block-size must be at least 1");
    }
    if args.steps_per_block == Some(0) {
        bail!("--steps-per-block must be at least 1");
    }
    if args.temperature < 0.0 || !args.temperature.is_finite() {
        bail!("--temperature must be a finite number ≥ 0, got {}", args.temperature);
    }
    if !(args.top_p > 0.0 && args.top_p <= 1.0) {
        bail!("--top-p must be in (0, 1], got {}", args.top_p);
    }
    Ok(())
}

impl BackendTask for InferArgs {
    fn run<B: Backend>(self, device: B::Device) -> anyhow::Result<()> {
        let pretrained = load_pretrained::<B>(&self.model, &device)
            .with_context(|| format!("loading {}", self.model.display()))?;
        let tokenizer = pretrained.tokenizer;
        let converted = pretrained.model.config().diffusion.clone();
        let block_size = self.block_size.or(converted.as_ref().map(|d| d.block_size)).unwrap_or(4);
        if converted.is_none() && self.sampler != SamplerKind::Ar {
            eprintln!(
                "note: {} is an unconverted autoregressive model; decoding it with shifted logits",
                self.model.display()
            );
        }
        let model = pretrained.model.into_diffusion(tokenizer.vocab_size(), block_size, true);
        let prompts = self.prompt_texts(&tokenizer)?;
        let ids = prompts.iter().map(|p| tokenizer.encode(p)).collect::<Result<Vec<_>, _>>()?;
        let config = self.decode_config(&model, &tokenizer, block_size);

        let stream = ids.len() == 1;
        let mut streamed: Vec<u32> = Vec::new();
        let mut printed = String::new();
        let generation = generate(&model, &ids, &config, |event| {
            if stream {
                streamed.extend_from_slice(event.new_tokens);
                let text = tokenizer.decode(&streamed);
                if let Some(new) = text.strip_prefix(printed.as_str()) {
                    print!("{new}");
                    let _ = std::io::stdout().flush();
                }
                printed = text;
            }
        })?;
        if stream {
            println!();
        } else {
            for (i, row) in generation.rows.iter().enumerate() {
                println!("[{i}] {}", tokenizer.decode(row.text_tokens()));
            }
        }
        eprintln!("{}", generation.stats.summary());
        Ok(())
    }
}

impl InferArgs {
    /// The prompt strings to encode, chat template applied when asked.
    fn prompt_texts(&self, tokenizer: &TextTokenizer) -> anyhow::Result<Vec<String>> {
        let records = match (&self.prompt, &self.prompts) {
            (Some(p), _) => {
                vec![PromptRecord { prompt: Some(p.clone()), messages: None, answer: None }]
            }
            (None, Some(path)) => read_prompt_file(path)?,
            (None, None) => bail!("give --prompt or --prompts"),
        };
        records
            .iter()
            .map(|r| match (&r.prompt, self.chat) {
                (Some(p), false) => Ok(p.clone()),
                (None, false) => bail!("a `messages` record needs --chat to be rendered"),
                (_, true) => Ok(tokenizer.render_chat(&r.messages(), true)?),
            })
            .collect()
    }

    fn decode_config<B: Backend>(
        &self,
        model: &Transformer<B>,
        tokenizer: &TextTokenizer,
        block_size: usize,
    ) -> DecodeConfig {
        let sampling =
            SamplingConfig { temperature: self.temperature, top_k: self.top_k, top_p: self.top_p };
        let mut stop_tokens = model.config().eos_token_ids.clone();
        if let Some(eos) = tokenizer.eos_token().and_then(|t| tokenizer.token_to_id(t)) {
            stop_tokens.push(eos);
        }
        if self.sampler == SamplerKind::Ar {
            return DecodeConfig::autoregressive(
                self.max_new_tokens,
                sampling,
                stop_tokens,
                self.seed,
            );
        }
        let rule = match self.sampler {
            SamplerKind::Static | SamplerKind::Ar => CommitRule::Static,
            SamplerKind::Dynamic => CommitRule::Dynamic { threshold: self.threshold },
            SamplerKind::Entropy => CommitRule::EntropyBounded { budget: self.threshold },
            SamplerKind::Margin => CommitRule::Margin { threshold: self.threshold },
        };
        DecodeConfig {
            steps_per_block: self.steps_per_block.unwrap_or(block_size),
            sampling,
            stop_tokens,
            seed: self.seed,
            ..DecodeConfig::diffusion(block_size, self.max_new_tokens, rule)
        }
    }
}
