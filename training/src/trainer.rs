//! A whole run: load the teacher, make the student, train through burn-train's Learner
//! (one Learner epoch = one checkpoint interval), export the student, plot the curves.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::optim::AdamWConfig;
use burn::record::DefaultRecorder;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::train::checkpoint::KeepLastNCheckpoints;
use burn::train::metric::LearningRateMetric;
use burn::train::{Learner, SupervisedTraining};
use opdlm_model::load::save::save_hf_dir;
use opdlm_model::{load_pretrained, TextTokenizer, Transformer};

use crate::config::TrainConfig;
use crate::data::{load_prompts, NoValidation, StepLoader};
use crate::example::Targets;
use crate::metrics::{read_log, step_metrics, StepRenderer};
use crate::plot::plot_curves;
use crate::rollout::RolloutSettings;
use crate::schedule::WarmupCosine;
use crate::step::{Distiller, StepSettings};

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigFileError),
    #[error(transparent)]
    Load(#[from] opdlm_model::LoadError),
    #[error("{0}")]
    Data(String),
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error("{0} already holds checkpoints: pass --resume to continue that run, or choose another --out")]
    OutputInUse(String),
}

fn io(path: &Path, e: impl std::fmt::Display) -> TrainError {
    TrainError::Io { path: path.display().to_string(), message: e.to_string() }
}

/// Where a finished run left its results.
#[derive(Debug, Clone)]
pub struct TrainSummary {
    pub model_dir: PathBuf,
    pub metrics: PathBuf,
    pub plot: Option<PathBuf>,
    pub steps: usize,
    pub tokens_total: f64,
    pub first_loss: f64,
    pub last_loss: f64,
}

/// Trains per `config`; with `resume`, continues from the latest checkpoint in `config.out`.
pub fn train<B: AutodiffBackend>(config: &TrainConfig, device: &B::Device, resume: bool) -> Result<TrainSummary, TrainError> {
    config.validate()?;
    let out = config.out.clone();
    std::fs::create_dir_all(&out).map_err(|e| io(&out, e))?;
    let resume_epoch = if resume { latest_checkpoint(&out) } else { 0 };
    if !resume && latest_checkpoint(&out) > 0 {
        return Err(TrainError::OutputInUse(out.display().to_string()));
    }
    write_atomically(&out.join("config.json"), &serde_json::to_string_pretty(config).expect("config serialises"))?;

    let (student, tokenizer) = initial_student::<B>(config, device)?;
    let teacher = student.clone();
    let diffusion = student.config().diffusion.clone().expect("into_diffusion sets it");
    let stop_tokens = stop_tokens(student.config().eos_token_ids.clone(), &tokenizer);
    let items = load_prompts(&config.prompts, &tokenizer, config.chat, stop_tokens.first().copied()).map_err(TrainError::Data)?;

    let settings = StepSettings {
        objective: config.objective,
        rollout: RolloutSettings {
            block_size: config.block_size,
            steps_per_block: config.block_size,
            threshold: config.threshold,
            temperature: config.temperature,
            state_selection: config.state_selection(),
            stop_tokens,
        },
        targets: if config.objective.hard_labels() {
            Targets::HardLabels
        } else {
            Targets::Teacher { divergence: config.divergence(), top_k: config.top_k_logits }
        },
        curriculum: config.curriculum(),
        mask_id: diffusion.mask_token_id,
        max_grad_norm: config.max_grad_norm,
    };
    let model = Distiller::new(student, teacher, settings);
    let optimizer = AdamWConfig::new().with_beta_1(0.9).with_beta_2(0.999).with_epsilon(1e-8).with_weight_decay(0.0).init();
    // The Learner advances the schedule once per micro-batch.
    let schedule = WarmupCosine::new(config.lr, config.final_lr, config.warmup * config.grad_accum, config.steps);
    let learner = Learner::new(model, optimizer, schedule);

    let loader = StepLoader::new(items, config.batch_size, config.checkpoint_every, config.steps, config.seed, resume_epoch);
    let first_step = resume_epoch * config.checkpoint_every;
    let renderer = StepRenderer::new(&out, first_step, config.steps).map_err(|e| io(&out, e))?;
    let mut training = SupervisedTraining::new(&out, Arc::new(loader), Arc::new(NoValidation))
        .metric_train_numeric(LearningRateMetric::new())
        .with_file_checkpointer(DefaultRecorder::new())
        .with_checkpointing_strategy(KeepLastNCheckpoints::new(match config.keep_checkpoints {
            0 => usize::MAX,
            n => n,
        }))
        .renderer(renderer)
        .with_application_logger(None)
        .num_epochs(config.epochs())
        .grads_accumulation(config.grad_accum);
    for metric in step_metrics() {
        training = training.metric_train_numeric(metric);
    }
    if resume_epoch > 0 {
        training = training.checkpoint(resume_epoch);
    }
    let result = training.launch(learner);

    let model_dir = out.join("model");
    save_hf_dir(&result.model.student, &tokenizer, &model_dir)?;
    let metrics = out.join("metrics.jsonl");
    let log = read_log(&metrics);
    let plot = plot_curves(&log, &out.join("curves.png")).ok();
    let value = |line: Option<&serde_json::Value>, key: &str| line.and_then(|v| v[key].as_f64()).unwrap_or(f64::NAN);
    Ok(TrainSummary {
        model_dir,
        metrics,
        plot,
        steps: log.len(),
        tokens_total: value(log.last(), "tokens_total"),
        first_loss: value(log.first(), "loss"),
        last_loss: value(log.last(), "loss"),
    })
}

/// The teacher of `config` turned into an untrained block-diffusion student (mask token
/// added, block-causal attention, no logit shift), and its tokenizer.
pub fn initial_student<B: Backend>(config: &TrainConfig, device: &B::Device) -> Result<(Transformer<B>, TextTokenizer), TrainError> {
    let pretrained = load_pretrained::<B>(&config.teacher, device)?;
    let tokenizer = pretrained.tokenizer;
    Ok((pretrained.model.into_diffusion(tokenizer.vocab_size(), config.block_size, false), tokenizer))
}

/// Stop tokens: the config's EOS ids, then the tokenizer's EOS token.
pub fn stop_tokens(mut ids: Vec<u32>, tokenizer: &TextTokenizer) -> Vec<u32> {
    if let Some(eos) = tokenizer.eos_token().and_then(|t| tokenizer.token_to_id(t)) {
        if !ids.contains(&eos) {
            ids.push(eos);
        }
    }
    ids
}

/// The last epoch whose model, optimizer and scheduler checkpoints are all present.
pub fn latest_checkpoint(out: &Path) -> usize {
    let dir = out.join("checkpoint");
    let Ok(entries) = std::fs::read_dir(&dir) else { return 0 };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_prefix("model-")?.strip_suffix(".mpk")?.parse::<usize>().ok()
        })
        .filter(|n| ["optim", "scheduler"].iter().all(|k| dir.join(format!("{k}-{n}.mpk")).exists()))
        .max()
        .unwrap_or(0)
}

/// Writes `text` to a temporary file and renames it over `path`.
fn write_atomically(path: &Path, text: &str) -> Result<(), TrainError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(|e| io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io(path, e))
}
