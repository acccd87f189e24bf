//! A whole run: load the teacher, make the student, train through burn-train's Learner
//! (one Learner epoch = one checkpoint interval), export the student, plot the curves.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::optim::AdamWConfig;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::train::metric::LearningRateMetric;
use burn::train::{Interrupter, Learner, SupervisedTraining};
use opdlm_model::load::save::save_hf_dir;
use opdlm_model::{load_pretrained, TextTokenizer, Transformer};

pub use crate::checkpoint::latest_checkpoint;
use crate::checkpoint::{
    discard_after, verified_checkpoint, write_file_atomically, AtomicRecorder, SaveEveryEpoch,
};
use crate::config::TrainConfig;
use crate::data::{load_prompts, NoValidation, StepLoader};
use crate::example::Targets;
use crate::guard::NumericGuard;
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
    #[error("{0}")]
    Checkpoint(String),
    #[error("training stopped: {message}. {kept}")]
    Diverged { message: String, kept: String },
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
pub fn train<B: AutodiffBackend>(
    config: &TrainConfig,
    device: &B::Device,
    resume: bool,
) -> Result<TrainSummary, TrainError> {
    config.validate()?;
    let out = config.out.clone();
    std::fs::create_dir_all(&out).map_err(|e| io(&out, e))?;
    let resume_epoch = if resume { verified_checkpoint(&out) } else { 0 };
    if !resume && latest_checkpoint(&out) > 0 {
        return Err(TrainError::OutputInUse(out.display().to_string()));
    }
    // Leftovers of a killed run (temporary files, incomplete later epochs) would be
    // mistaken for, or mixed with, the checkpoints this run writes.
    discard_after(&out, resume_epoch).map_err(|e| io(&out.join("checkpoint"), e))?;
    let config_path = out.join("config.json");
    write_file_atomically(
        &config_path,
        &serde_json::to_string_pretty(config).expect("config serialises"),
    )
    .map_err(|e| io(&config_path, e))?;

    let (student, tokenizer) = initial_student::<B>(config, device)?;
    let teacher = student.clone();
    let diffusion = student.config().diffusion.clone().expect("into_diffusion sets it");
    let stop_tokens = stop_tokens(student.config().eos_token_ids.clone(), &tokenizer);
    let context = student.config().max_position_embeddings;
    if config.block_size > context {
        return Err(TrainError::Data(format!(
            "block_size {} exceeds the teacher's context of {context} ({})",
            config.block_size,
            config.teacher.display()
        )));
    }
    let items = load_prompts(config, &tokenizer, stop_tokens.first().copied(), context)
        .map_err(TrainError::Data)?;

    let interrupter = Interrupter::new();
    let guard = Arc::new(
        NumericGuard::new(config.max_bad_steps, interrupter.clone())
            .with_accumulation(config.checkpoint_every, config.grad_accum),
    );
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
        guard: guard.clone(),
        faults: config.faults.clone(),
    };
    let model = Distiller::new(student, teacher, settings);
    let optimizer = AdamWConfig::new()
        .with_beta_1(0.9)
        .with_beta_2(0.999)
        .with_epsilon(1e-8)
        .with_weight_decay(0.0)
        .init();
    // The Learner advances the schedule once per micro-batch.
    let schedule = WarmupCosine::new(
        config.lr,
        config.final_lr,
        config.warmup * config.grad_accum,
        config.steps,
    );
    let learner = Learner::new(model, optimizer, schedule);

    let loader = StepLoader::new(
        items,
        config.batch_size,
        config.checkpoint_every,
        config.steps,
        config.seed,
        resume_epoch,
    );
    let first_step = resume_epoch * config.checkpoint_every;
    let renderer = StepRenderer::new(&out, first_step, config.steps).map_err(|e| io(&out, e))?;
    let recorder = AtomicRecorder::for_run(config);
    let mut training = SupervisedTraining::new(&out, Arc::new(loader), Arc::new(NoValidation))
        .metric_train_numeric(LearningRateMetric::new())
        .with_file_checkpointer(recorder.clone())
        .with_checkpointing_strategy(SaveEveryEpoch)
        .with_interrupter(interrupter)
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
    // A failed checkpoint or the guard stopped the run: report it, export nothing.
    if let Some(error) = recorder.error() {
        return Err(TrainError::Checkpoint(format!(
            "{error}; the run stopped. {}",
            kept_checkpoint(&out)
        )));
    }
    if let Some(message) = guard.stopped() {
        return Err(TrainError::Diverged { message, kept: kept_checkpoint(&out) });
    }

    let model_dir = out.join("model");
    save_hf_dir(&result.model.student, &tokenizer, &model_dir)?;
    let metrics = out.join("metrics.jsonl");
    let log = read_log(&metrics);
    let plot = plot_curves(&log, &out.join("curves.png")).ok();
    let value = |line: Option<&serde_json::Value>, key: &str| {
        line.and_then(|v| v[key].as_f64()).unwrap_or(f64::NAN)
    };
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
pub fn initial_student<B: Backend>(
    config: &TrainConfig,
    device: &B::Device,
) -> Result<(Transformer<B>, TextTokenizer), TrainError> {
    let pretrained = load_pretrained::<B>(&config.teacher, device)?;
    let tokenizer = pretrained.tokenizer;
    Ok((
        pretrained.model.into_diffusion(tokenizer.vocab_size(), config.block_size, false),
        tokenizer,
    ))
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

/// Which checkpoint a stopped run leaves to resume from, in words.
fn kept_checkpoint(out: &Path) -> String {
    match latest_checkpoint(out) {
        0 => "No checkpoint was completed; the run has to start over.".into(),
        epoch => format!(
            "Checkpoint {epoch} in {} is intact: `--resume` continues from it.",
            out.join("checkpoint").display()
        ),
    }
}
