//! `cargo xtask bench`: our speed side by side with PyTorch, as ratios, in one run.
//!
//! For each model (SmolLM2-135M from its GGUF, a random-weight Qwen3-0.6B, or `--model`)
//! the bench writes a [`plan::Plan`] (token ids, sizes, thread count), runs it in one
//! worker process per CPU backend (this binary, `bench --worker`) and in
//! `scripts/bench_baseline.py` (transformers on CPU), and writes a JSON and a Markdown
//! report. A benchmark, not a test: it measures, it asserts nothing. Without Python,
//! torch or transformers it says so and reports our figures alone.
//!
//! `--logits-check MODEL --backends cuda` compares a backend's logits with the CPU's
//! (used by `scripts/gpu-check.sh`).

mod baseline;
mod logits_check;
mod memory;
mod plan;
mod random_model;
mod report;
mod worker;

use opdlm_training::TrainBackend;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use burn::prelude::Backend;
use clap::{Args, ValueEnum};
use opdlm_harness::chat_prompts::chat_prompts;
use opdlm_harness::tasks::split::Split;
use opdlm_model::{load_tokenizer, ChatMessage, ModelConfig, WeightFormat};

use crate::backend::{dispatch, BackendKind, BackendTask};
use plan::{Measured, Plan, TrainPlan};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchModel {
    /// SmolLM2-135M-Instruct (the Q4_1 GGUF, dequantised to f32 by both sides).
    Smollm2,
    /// Qwen3-0.6B shapes with seeded random weights (written once under `--cache`).
    Qwen3,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Models to benchmark (ignored when `--model` is given).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [BenchModel::Smollm2, BenchModel::Qwen3])]
    pub models: Vec<BenchModel>,
    /// Benchmark this model instead (Hugging Face directory or .gguf), e.g. a converted one.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// The SmolLM2 GGUF (fetched by scripts/fetch-smollm2.sh when missing).
    #[arg(long, default_value = crate::repo::SMOLLM2_GGUF)]
    pub smollm2: PathBuf,
    /// Where the random-weight Qwen3-0.6B is written (once per seed).
    #[arg(long, default_value = ".cache/bench")]
    pub cache: PathBuf,
    /// Backends of our side (default: every CPU backend compiled into this binary).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub backends: Vec<BackendKind>,
    /// CPU threads for every implementation (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// User message of the prompt (chat template applied when the model has one; a model
    /// without tokenizer gets `--random-prompt-tokens` seeded random ids).
    #[arg(long, default_value = "Write a short story about a robot who learns to paint.")]
    pub prompt: String,
    #[arg(long, default_value_t = 32)]
    pub random_prompt_tokens: usize,
    /// Prompt length of the prefill measurement (the prompt repeated).
    #[arg(long, default_value_t = 128)]
    pub prefill_tokens: usize,
    /// Tokens generated per decoding run (stop tokens ignored).
    #[arg(long, default_value_t = 16)]
    pub max_new_tokens: usize,
    /// Block size of the diffusion runs and of training.
    #[arg(long, default_value_t = 4)]
    pub block_size: usize,
    /// Threshold γ of the dynamic run and of the training rollout.
    #[arg(long, default_value_t = 0.9)]
    pub threshold: f32,
    /// Timed repetitions of prefill and each decoding run (the fastest is reported).
    #[arg(long, default_value_t = 1)]
    pub repeats: usize,
    /// Prompts of the training step (the conversion's batch: `experiment smollm2`
    /// trains on 4 chat prompts per step; reports before 5841f03 used 8). They share one
    /// token length; see `train_prompts`.
    #[arg(long, default_value_t = 4)]
    pub train_batch: usize,
    /// Rollout length of the training step, per prompt (the conversion's longest rollout).
    #[arg(long, default_value_t = 64)]
    pub train_rollout_len: usize,
    /// The training step distils on the teacher's top-k tokens (the conversion's 16);
    /// 0: the full vocabulary.
    #[arg(long, default_value_t = 16)]
    pub train_top_k: usize,
    /// Our weight formats: each backend runs once per format (the training step runs on
    /// f32 only). q8: linear layers and LM head in int8 blocks of 32 (see `opdlm-model`'s
    /// `quant`).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [WeightFormat::F32, WeightFormat::Q8])]
    pub weights: Vec<WeightFormat>,
    /// Row counts of the forward-cost measurement: one forward of that many new rows
    /// against the cached prompt, reported as a ratio to one row.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 4, 8, 16])]
    pub forward_rows: Vec<usize>,
    /// Skip the training step (timed on both sides after two untimed steps, which allocate
    /// the memory and the optimizer state that later steps reuse).
    #[arg(long)]
    pub no_train: bool,
    /// Skip the PyTorch baseline.
    #[arg(long)]
    pub no_baseline: bool,
    /// Skip llama.cpp (run on GGUF models when llama-cpp-python is importable).
    #[arg(long)]
    pub no_llama_cpp: bool,
    /// Seed of the random model, random prompts and the training rollout.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Report directory (report.json, report.md, and per-model plans and results).
    #[arg(long, default_value = "runs/bench")]
    pub out: PathBuf,
    /// Compare this model's logits on the first of `--backends` with the CPU's, and exit.
    #[arg(long)]
    pub logits_check: Option<PathBuf>,
    /// Internal: run one plan on the first of `--backends` and write its result here.
    #[arg(long, hide = true, requires = "worker_out")]
    pub worker: Option<PathBuf>,
    #[arg(long, hide = true)]
    pub worker_out: Option<PathBuf>,
}

pub fn run(mut args: BenchArgs) -> anyhow::Result<()> {
    if args.backends.is_empty() {
        args.backends = compiled_cpu_backends();
    }
    if let Some(missing) = args.backends.iter().copied().find(|&b| !compiled(b)) {
        // Rebuilds with that backend's feature (the default ones stay) and re-runs.
        return crate::backend::rebuild_with(missing);
    }
    if args.worker.is_some() || args.logits_check.is_some() {
        return dispatch(args.backends[0], args);
    }
    orchestrate(&args)
}

fn compiled(kind: BackendKind) -> bool {
    match kind {
        BackendKind::Ndarray => cfg!(feature = "ndarray"),
        BackendKind::Flex => cfg!(feature = "flex"),
        BackendKind::Wgpu => cfg!(feature = "wgpu"),
        BackendKind::Cuda => cfg!(feature = "cuda"),
    }
}

fn compiled_cpu_backends() -> Vec<BackendKind> {
    [BackendKind::Ndarray, BackendKind::Flex].into_iter().filter(|&b| compiled(b)).collect()
}

pub(crate) fn weights_name(weights: WeightFormat) -> &'static str {
    match weights {
        WeightFormat::F32 => "f32",
        WeightFormat::Q8 => "q8",
    }
}

pub(crate) fn backend_name(kind: BackendKind) -> String {
    format!("{kind:?}").to_lowercase()
}

/// Worker and logits-check bodies, run on the chosen backend.
impl BackendTask for BenchArgs {
    fn run<B: TrainBackend>(self, device: B::Device) -> anyhow::Result<()> {
        let backend = backend_name(self.backends[0]);
        if let (Some(plan), Some(out)) = (&self.worker, &self.worker_out) {
            let weights = self.weights.first().copied().unwrap_or_default();
            return worker::run::<B>(plan, &backend, weights, out, device);
        }
        let model = self.logits_check.as_ref().expect("dispatched for a worker or a logits check");
        let check = cpu_logits_check::<B>(model, &backend, &device)?;
        logits_check::print(&check);
        std::fs::create_dir_all(&self.out)?;
        let path = self.out.join(format!("logits-check-{backend}-{}.json", file_stem(model)));
        std::fs::write(&path, serde_json::to_string_pretty(&check)?)?;
        println!("written: {}", path.display());
        Ok(())
    }
}

fn cpu_logits_check<B: Backend>(
    model: &Path,
    backend: &str,
    device: &B::Device,
) -> anyhow::Result<logits_check::LogitsCheck> {
    #[cfg(feature = "ndarray")]
    return logits_check::check::<B, burn::backend::NdArray<f32>>(
        model, backend, "ndarray", device,
    );
    #[cfg(all(not(feature = "ndarray"), feature = "flex"))]
    return logits_check::check::<B, burn::backend::Flex>(model, backend, "flex", device);
    #[allow(unreachable_code)]
    {
        let _ = (model, backend, device);
        bail!("--logits-check needs a CPU backend (feature ndarray or flex) as reference")
    }
}

/// One model's workload and where its results go.
struct Job {
    plan: Plan,
    dir: PathBuf,
}

fn orchestrate(args: &BenchArgs) -> anyhow::Result<()> {
    let repo = crate::repo::repo_root();
    let threads =
        args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let available = |skip: bool, flag: &str, b: &baseline::Baseline| {
        let found = if skip { Err(format!("skipped ({flag})")) } else { b.availability(&repo) };
        match &found {
            Ok(versions) => eprintln!("{}: {versions}", b.name),
            Err(why) => eprintln!("{} unavailable: {why}. Reporting the rest.", b.name),
        }
        found
    };
    let baseline = available(args.no_baseline, "--no-baseline", &baseline::PYTORCH);
    let llama_cpp = available(args.no_llama_cpp, "--no-llama-cpp", &baseline::LLAMA_CPP);
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let load_start = report::load_average();
    let jobs = jobs(args, threads)?;
    let mut reports = Vec::new();
    let mut failures = Vec::new();
    for job in jobs {
        std::fs::create_dir_all(&job.dir)?;
        let plan_path = job.dir.join("plan.json");
        std::fs::write(&plan_path, serde_json::to_string_pretty(&job.plan)?)?;
        eprintln!(
            "== {}: prompt {} tokens, prefill {} tokens, {} new tokens, block {}, γ {}, {} threads",
            job.plan.name,
            job.plan.prompt.len(),
            job.plan.prefill.len(),
            job.plan.max_new_tokens,
            job.plan.block_size,
            job.plan.threshold,
            threads
        );
        let ours = run_ours(args, &job, &plan_path, threads, &mut failures);
        let run_baseline = |found: &Result<String, String>, b: &baseline::Baseline, file| {
            let theirs = match found {
                Ok(_) => b.run(&repo, &plan_path, &job.dir.join(file)),
                Err(why) => Err(why.clone()),
            };
            if let Err(why) = &theirs {
                eprintln!("{}: {} unavailable: {why}", job.plan.name, b.name);
            }
            theirs
        };
        let theirs = run_baseline(&baseline, &baseline::PYTORCH, "pytorch.json");
        let llama = if job.plan.model.extension().is_some_and(|e| e == "gguf") {
            run_baseline(&llama_cpp, &baseline::LLAMA_CPP, "llamacpp.json")
        } else {
            Err("llama.cpp runs GGUF models only".to_string())
        };
        reports.push(report::ModelReport {
            plan: job.plan,
            ours,
            baseline: theirs,
            llama_cpp: llama,
        });
    }
    let load = report::LoadAverage { start: load_start, end: report::load_average() };
    let markdown = report::markdown(&reports, threads, &load);
    println!("{markdown}");
    let json = report::json(&reports, threads, &load);
    std::fs::write(args.out.join("report.md"), &markdown)?;
    std::fs::write(args.out.join("report.json"), serde_json::to_string_pretty(&json)?)?;
    eprintln!("written: {} and report.json", args.out.join("report.md").display());
    if !failures.is_empty() {
        bail!("these runs failed (see their output above): {}", failures.join(", "));
    }
    Ok(())
}

/// Our side of one job: a worker per backend and weight format; a failed one is named in
/// `failures` and the others go on.
fn run_ours(
    args: &BenchArgs,
    job: &Job,
    plan_path: &Path,
    threads: usize,
    failures: &mut Vec<String>,
) -> Vec<Measured> {
    let mut ours = Vec::new();
    for &backend in &args.backends {
        for &weights in &args.weights {
            let name = format!("{}-{}", backend_name(backend), weights_name(weights));
            let out = job.dir.join(format!("opdlm-{name}.json"));
            match run_worker(plan_path, backend, weights, &out, threads) {
                Ok(measured) => ours.push(measured),
                Err(e) => {
                    eprintln!("{} on {name} failed: {e:#}", job.plan.name);
                    failures.push(format!("{} on {name}", job.plan.name));
                }
            }
        }
    }
    ours
}

/// Runs one plan in a fresh process of this binary (own thread pool, own peak memory).
fn run_worker(
    plan: &Path,
    backend: BackendKind,
    weights: WeightFormat,
    out: &Path,
    threads: usize,
) -> anyhow::Result<Measured> {
    let exe = std::env::current_exe().context("locating this binary")?;
    let status = Command::new(exe)
        .args(["bench", "--backends", &backend_name(backend), "--weights", weights_name(weights)])
        .arg("--worker")
        .arg(plan)
        .arg("--worker-out")
        .arg(out)
        .env("RAYON_NUM_THREADS", threads.to_string())
        .status()
        .context("starting the worker")?;
    if !status.success() {
        bail!("worker exited with {status}");
    }
    let text =
        std::fs::read_to_string(out).with_context(|| format!("reading {}", out.display()))?;
    Ok(serde_json::from_str(&text)?)
}

fn jobs(args: &BenchArgs, threads: usize) -> anyhow::Result<Vec<Job>> {
    let train = |prompts: Vec<Vec<u32>>| {
        (!args.no_train).then_some(TrainPlan {
            prompts,
            rollout_len: args.train_rollout_len,
            top_k: args.train_top_k,
            temperature: 1.0,
            lr: 1e-5,
            seed: args.seed,
        })
    };
    let plan = |name: String,
                model: PathBuf,
                (prompt, train_prompts): (Vec<u32>, Vec<Vec<u32>>),
                tokenizer_vocab: usize,
                config: Option<ModelConfig>| {
        let prefill = prompt.iter().copied().cycle().take(args.prefill_tokens).collect();
        let diffusion = config.and_then(|c| c.diffusion);
        Plan {
            name,
            model,
            prompt,
            prefill,
            tokenizer_vocab,
            mask_token_id: diffusion.as_ref().map_or(tokenizer_vocab as u32, |d| d.mask_token_id),
            decode_shift: diffusion.as_ref().is_none_or(|d| d.shift_logits),
            max_new_tokens: args.max_new_tokens,
            block_size: args.block_size,
            threshold: args.threshold,
            repeats: args.repeats,
            threads,
            train: train(train_prompts),
            forward_rows: args.forward_rows.clone(),
        }
    };
    let mut plans = Vec::new();
    if let Some(model) = &args.model {
        let config = model
            .is_dir()
            .then(|| ModelConfig::from_file(&model.join("config.json")))
            .transpose()?;
        let (prompt, vocab) = chat_prompt(model, &args.prompt)?;
        let prompts = (prompt, train_prompts(model, args.train_batch, args.seed)?);
        plans.push(plan(file_stem(model), model.clone(), prompts, vocab, config));
    } else {
        for m in &args.models {
            match m {
                BenchModel::Smollm2 => {
                    let gguf = crate::repo::smollm2_gguf(&args.smollm2)
                        .context("pass --smollm2 PATH or --models qwen3")?;
                    let (prompt, vocab) = chat_prompt(&gguf, &args.prompt)?;
                    let prompts = (prompt, train_prompts(&gguf, args.train_batch, args.seed)?);
                    plans.push(plan("smollm2-135m".into(), gguf, prompts, vocab, None));
                }
                BenchModel::Qwen3 => {
                    let dir = random_model::qwen3_0_6b(&args.cache, args.seed)?;
                    let vocab = random_model::QWEN3_TOKENIZER_VOCAB;
                    let random =
                        |seed| random_model::random_ids(args.random_prompt_tokens, vocab, seed);
                    let batch = (0..args.train_batch as u64).map(|i| random(args.seed + i));
                    let prompts = (random(args.seed), batch.collect());
                    plans.push(plan("qwen3-0.6b-random".into(), dir, prompts, vocab, None));
                }
            }
        }
    }
    for plan in &mut plans {
        // Absolute, so that workers and the baseline can run from any directory.
        plan.model = std::fs::canonicalize(&plan.model)
            .with_context(|| format!("{}", plan.model.display()))?;
    }
    Ok(plans.into_iter().map(|plan| Job { dir: args.out.join(&plan.name), plan }).collect())
}

/// The prompt's token ids (chat template applied when there is one) and the tokenizer's size.
fn chat_prompt(model: &Path, message: &str) -> anyhow::Result<(Vec<u32>, usize)> {
    let tokenizer = load_tokenizer(model)
        .with_context(|| format!("loading the tokenizer of {}", model.display()))?;
    let text = tokenizer
        .render_chat(&[ChatMessage::user(message.to_string())], true)
        .unwrap_or_else(|_| message.to_string());
    Ok((tokenizer.encode(&text)?, tokenizer.vocab_size()))
}

/// Prompts in which to try lengths until `batch` of them share one token length.
const TRAIN_PROMPT_POOL: usize = 400;

/// The training step's `batch` prompts: the conversion's chat prompts (train split), the
/// first `batch` of the most common token length among the first [`TRAIN_PROMPT_POOL`].
/// One length lets the PyTorch baseline batch every pass without padding; the conversion
/// itself mixes lengths, which our step packs into one student pass per length.
fn train_prompts(model: &Path, batch: usize, seed: u64) -> anyhow::Result<Vec<Vec<u32>>> {
    let tokenizer = load_tokenizer(model)
        .with_context(|| format!("loading the tokenizer of {}", model.display()))?;
    let mut by_len: std::collections::BTreeMap<usize, Vec<Vec<u32>>> = Default::default();
    for prompt in chat_prompts(Split::Train, TRAIN_PROMPT_POOL, seed) {
        let message = [ChatMessage::user(prompt.prompt.clone())];
        let text = tokenizer
            .render_chat(&message, true)
            .map_err(|e| anyhow::anyhow!("{}: chat template: {e}", model.display()))?;
        let ids = tokenizer.encode(&text)?;
        by_len.entry(ids.len()).or_default().push(ids);
    }
    // The most common length; the shorter one on a tie (BTreeMap order, `max_by_key` keeps
    // the last maximum, hence the reversal).
    let (_, mut prompts) = (by_len.into_iter().rev())
        .max_by_key(|(_, prompts)| prompts.len())
        .context("no training prompts")?;
    if prompts.len() < batch {
        bail!(
            "only {} of {TRAIN_PROMPT_POOL} chat prompts share a token length; --train-batch {batch} needs that many",
            prompts.len()
        );
    }
    prompts.truncate(batch);
    Ok(prompts)
}

/// A model's name for file names: a directory's name, or a file's name without extension.
fn file_stem(path: &Path) -> String {
    let name = if path.is_dir() { path.file_name() } else { path.file_stem() };
    name.map_or_else(|| "model".into(), |s| s.to_string_lossy().into_owned())
}
