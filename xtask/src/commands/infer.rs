//! `cargo xtask infer`: decode prompts with a converted model (or an unconverted ARLM).

use opdlm_training::TrainBackend;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use opdlm_inference::prompts::{read_prompt_file, PromptRecord};
use opdlm_inference::{generate, DecodeConfig, Sampler, SamplingConfig, TextStream};
use opdlm_model::{load_pretrained, TextTokenizer, WeightFormat, DEFAULT_BLOCK_SIZE};

use crate::backend::{dispatch, BackendKind, BackendTask};

/// Flags of `cargo xtask infer`.
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
    #[arg(long, value_enum, default_value_t = Sampler::Dynamic)]
    pub sampler: Sampler,
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
    /// Weights in memory while decoding: f32, or q8 (linear layers and LM head in int8
    /// blocks of 32 with an f32 scale each: about a quarter of the bytes per forward).
    #[arg(long, value_enum, default_value_t = WeightFormat::F32)]
    pub weights: WeightFormat,
    /// Compute backend.
    #[arg(long, value_enum, default_value_t = BackendKind::Ndarray)]
    pub backend: BackendKind,
}

/// Runs `cargo xtask infer`.
pub fn run(args: InferArgs) -> anyhow::Result<()> {
    // Settings errors surface before the model is loaded.
    args.decode_config(args.block_size.unwrap_or(DEFAULT_BLOCK_SIZE), vec![]).validate()?;
    dispatch(args.backend, args)
}

impl BackendTask for InferArgs {
    fn run<B: TrainBackend>(self, device: B::Device) -> anyhow::Result<()> {
        let pretrained = load_pretrained::<B>(&self.model, &device)
            .with_context(|| format!("loading {}", self.model.display()))?;
        let pretrained_stop_tokens = pretrained.stop_tokens();
        let tokenizer = pretrained.tokenizer;
        let converted = pretrained.model.config().diffusion.clone();
        let block_size = self
            .block_size
            .or(converted.as_ref().map(|d| d.block_size))
            .unwrap_or(DEFAULT_BLOCK_SIZE);
        if converted.is_none() && self.sampler != Sampler::Ar {
            eprintln!(
                "note: {} is an unconverted autoregressive model; decoding it with shifted logits",
                self.model.display()
            );
        }
        let model = pretrained
            .model
            .into_diffusion(tokenizer.vocab_size(), block_size, true)
            .with_weights(self.weights);
        if self.weights != WeightFormat::F32 {
            crate::allocator::return_freed_memory();
        }
        let prompts = self.prompt_texts(&tokenizer)?;
        let ids = prompts.iter().map(|p| tokenizer.encode(p)).collect::<Result<Vec<_>, _>>()?;
        let config = self.decode_config(block_size, pretrained_stop_tokens);

        let stream = ids.len() == 1;
        let mut text = TextStream::new();
        let decode = |tokens: &[u32]| tokenizer.decode(tokens);
        let print = |piece: String| {
            print!("{piece}");
            let _ = std::io::stdout().flush();
        };
        let generation = generate(&model, &ids, &config, |event| {
            if stream {
                print(text.push(event.new_tokens, decode));
            }
        })?;
        if stream {
            print(text.finish(decode));
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
                vec![PromptRecord {
                    prompt: Some(p.clone()),
                    messages: None,
                    answer: None,
                    source: None,
                }]
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

    /// The decoding settings the flags ask for, at `block_size`.
    fn decode_config(&self, block_size: usize, stop_tokens: Vec<u32>) -> DecodeConfig {
        let sampling =
            SamplingConfig { temperature: self.temperature, top_k: self.top_k, top_p: self.top_p };
        if self.sampler == Sampler::Ar {
            return DecodeConfig::autoregressive(
                self.max_new_tokens,
                sampling,
                stop_tokens,
                self.seed,
            );
        }
        DecodeConfig {
            steps_per_block: self.steps_per_block.unwrap_or(block_size),
            sampling,
            stop_tokens,
            seed: self.seed,
            ..DecodeConfig::diffusion(
                block_size,
                self.max_new_tokens,
                self.sampler.rule(self.threshold),
            )
        }
    }
}
