//! `cargo xtask bench`: decoding speed of one model, AR vs static vs dynamic block
//! diffusion, side by side in one run, reported as ratios to AR. A benchmark, not a test:
//! it measures, it asserts nothing.

use std::path::PathBuf;

use anyhow::Context;
use burn::prelude::Backend;
use clap::Args;
use opdlm_inference::{generate, CommitRule, DecodeConfig, SamplingConfig};
use opdlm_model::{load_pretrained, ChatMessage};

use crate::backend::{dispatch, BackendKind, BackendTask};

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Model: Hugging Face directory or .gguf file.
    #[arg(long)]
    pub model: PathBuf,
    /// User message, rendered with the model's chat template.
    #[arg(long, default_value = "Write a short story about a robot who learns to paint.")]
    pub prompt: String,
    /// Tokens to generate per run (stop tokens are ignored so every run generates them all).
    #[arg(long, default_value_t = 64)]
    pub max_new_tokens: usize,
    /// Block size of the diffusion runs.
    #[arg(long, default_value_t = 4)]
    pub block_size: usize,
    /// Threshold γ of the dynamic run.
    #[arg(long, default_value_t = 0.9)]
    pub threshold: f32,
    /// Repetitions per configuration (the best is reported).
    #[arg(long, default_value_t = 2)]
    pub repeats: usize,
    /// Compute backend.
    #[arg(long, value_enum, default_value_t = BackendKind::Ndarray)]
    pub backend: BackendKind,
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    dispatch(args.backend, args)
}

impl BackendTask for BenchArgs {
    fn run<B: Backend>(self, device: B::Device) -> anyhow::Result<()> {
        let pretrained = load_pretrained::<B>(&self.model, &device).with_context(|| format!("loading {}", self.model.display()))?;
        let tokenizer = pretrained.tokenizer;
        let model = pretrained.model.into_diffusion(tokenizer.vocab_size(), self.block_size, true);
        let text = tokenizer.render_chat(&[ChatMessage::user(self.prompt.clone())], true).unwrap_or(self.prompt.clone());
        let prompt = vec![tokenizer.encode(&text)?];
        let diffusion = |rule| DecodeConfig::diffusion(self.block_size, self.max_new_tokens, rule);
        let runs = [
            ("AR (causal, 1 token/forward)".to_string(), DecodeConfig::autoregressive(self.max_new_tokens, SamplingConfig::GREEDY, vec![], 0)),
            (format!("static, block {}", self.block_size), diffusion(CommitRule::Static)),
            (format!("dynamic γ={}, block {}", self.threshold, self.block_size), diffusion(CommitRule::Dynamic { threshold: self.threshold })),
        ];
        println!("model {} · prompt {} tokens · {} new tokens · backend {:?}", self.model.display(), prompt[0].len(), self.max_new_tokens, self.backend);
        println!("| decoding | tokens | NFE | tokens/forward | tok/s | prefill ms | tok/s vs AR |");
        println!("|---|---|---|---|---|---|---|");
        let mut ar_speed = None;
        for (name, config) in runs {
            let best = (0..self.repeats.max(1))
                .map(|_| generate(&model, &prompt, &config, |_| {}).map(|g| g.stats))
                .collect::<Result<Vec<_>, _>>()?
                .into_iter()
                .max_by(|a, b| a.tokens_per_second().total_cmp(&b.tokens_per_second()))
                .expect("at least one repeat");
            let speed = best.tokens_per_second();
            let base = *ar_speed.get_or_insert(speed);
            println!(
                "| {name} | {} | {} | {:.2} | {:.1} | {:.0} | {:.2}× |",
                best.tokens,
                best.forwards,
                best.tokens_per_forward(),
                speed,
                best.prefill.as_secs_f64() * 1e3,
                speed / base
            );
        }
        Ok(())
    }
}
