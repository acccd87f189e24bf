//! A whole run, as a few named steps: prepare the output directory (fresh or resumed),
//! convert the teacher into the student, train through burn-train's Learner (one Learner
//! epoch = one checkpoint interval), report why a run stopped early, export the student
//! and plot the curves.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use burn::optim::adaptor::OptimizerAdaptor;
use burn::optim::{AdamW, AdamWConfig};
use burn::tensor::backend::AutodiffBackend;
use burn::train::metric::LearningRateMetric;
use burn::train::{
    ExecutionStrategy, Interrupter, Learner, LearningComponentsMarker, MultiDeviceOptim,
    SupervisedTraining,
};
use opdlm_model::atomic::write_text_atomically;
use opdlm_model::load::save::save_hf_dir;
use opdlm_model::TextTokenizer;

use crate::batch_totals::BatchTotals;
use crate::checkpoint::{
    discard_after, latest_checkpoint, verified_checkpoint, verify_checkpoint, AtomicRecorder,
    SaveEveryEpoch,
};
use crate::config::TrainConfig;
use crate::data::{load_prompts, NoValidation, StepLoader};
use crate::error::TrainError;
use crate::guard::NumericGuard;
use crate::metrics::{read_log, step_metrics, StepRenderer};
use crate::nodes::{NodeGroup, NodeSettings};
use crate::plot::plot_curves;
use crate::schedule::WarmupCosine;
use crate::step::Distiller;
use crate::student::initial_student;

/// Where a finished run left its results, and its headline numbers.
#[derive(Debug, Clone)]
pub struct TrainSummary {
    /// The converted model (a Hugging Face directory).
    pub model_dir: PathBuf,
    /// One JSON line per step.
    pub metrics: PathBuf,
    /// Loss and tokens-per-forward curves (`None` when plotting failed).
    pub plot: Option<PathBuf>,
    /// Steps logged.
    pub steps: usize,
    /// Training tokens consumed (prompt + response of every example).
    pub tokens_total: f64,
    /// Loss of the first logged step.
    pub first_loss: f64,
    /// Loss of the last logged step.
    pub last_loss: f64,
}

/// The Learner's component types of a run: backend, schedule, model, optimizer.
type Components<B> = LearningComponentsMarker<
    B,
    WarmupCosine,
    Distiller<B>,
    OptimizerAdaptor<AdamW, Distiller<B>, B>,
>;

/// The optimizer every run uses: AdamW with the paper's β = (0.9, 0.999) and no weight
/// decay (Table 13).
pub fn optimizer<B: AutodiffBackend>() -> OptimizerAdaptor<AdamW, Distiller<B>, B> {
    AdamWConfig::new()
        .with_beta_1(0.9)
        .with_beta_2(0.999)
        .with_epsilon(1e-8)
        .with_weight_decay(0.0)
        .init()
}

/// Trains per `config` on one device; with `resume`, continues from the latest checkpoint
/// in `config.out`.
pub fn train<B: AutodiffBackend>(
    config: &TrainConfig,
    device: &B::Device,
    resume: bool,
) -> Result<TrainSummary, TrainError> {
    train_data_parallel::<B>(config, std::slice::from_ref(device), resume)
}

/// Trains per `config`, data-parallel over `devices` (the first is the main device: it
/// holds the optimizer and writes checkpoints) through burn-train's multi-device
/// strategy. Each device rolls out, scores and differentiates its share of every step's
/// batch (see `crate::data`); the main device sums the shares' gradients, which add up
/// to the whole batch's gradient (see `crate::batch_totals`), then clips and steps once.
pub fn train_data_parallel<B: AutodiffBackend>(
    config: &TrainConfig,
    devices: &[B::Device],
    resume: bool,
) -> Result<TrainSummary, TrainError> {
    run::<B>(config, devices, None, None, resume)
}

/// Trains per `config` on `devices` through burn-train's distributed data parallelism
/// (DDP; NCCL on CUDA, the only backend that implements it in burn 0.21): every device
/// keeps its own copy of the weights and optimizer, rolls out and differentiates its share
/// of each step's batch, and the gradients are summed over the devices during the backward
/// pass. Every device then clips the same global gradient and takes the same step (the
/// shared guard gives all of them one skip decision). Checkpoints, resume, the metrics log
/// and the export are the main device's, as with [`train_data_parallel`].
#[cfg(feature = "ddp")]
pub fn train_ddp<B>(
    config: &TrainConfig,
    devices: &[B::Device],
    resume: bool,
) -> Result<TrainSummary, TrainError>
where
    B: AutodiffBackend + burn::tensor::backend::distributed::DistributedBackend,
{
    use burn::tensor::backend::distributed::{DistributedConfig, ReduceOperation};
    if devices.len() < 2 {
        return Err(TrainError::Data("DDP needs at least two devices".into()));
    }
    // Sum, not mean: each share already divides by the whole batch's denominator.
    let ddp_config = DistributedConfig { all_reduce_op: ReduceOperation::Sum };
    let strategy = ExecutionStrategy::ddp(devices.to_vec(), ddp_config);
    run::<B>(config, devices, Some(strategy), None, resume)
}

/// Trains per `config` as one node of a multi-node run on `device` (see `crate::nodes`):
/// every node runs this with its own rank and the same settings, and takes its share of
/// each step's batch. Rank 0 writes `config.out`; another rank keeps its own checkpoints
/// and log (the same weights and figures as rank 0's) in `<out>/rank-<rank>`, so that
/// resuming needs no shared filesystem, and exports nothing.
pub fn train_multi_node<B: AutodiffBackend>(
    config: &TrainConfig,
    device: &B::Device,
    nodes: NodeSettings,
    resume: bool,
) -> Result<TrainSummary, TrainError> {
    run::<B>(config, std::slice::from_ref(device), None, Some(nodes), resume)
}

/// A run on `devices` of this process, alone or as one of several `nodes`; several
/// devices share the work through `ddp` when given, otherwise through burn-train's
/// multi-device strategy (the first device steps the optimizer).
fn run<B: AutodiffBackend>(
    config: &TrainConfig,
    devices: &[B::Device],
    ddp: Option<ExecutionStrategy<B>>,
    nodes: Option<NodeSettings>,
    resume: bool,
) -> Result<TrainSummary, TrainError> {
    config.validate()?;
    let Some(device) = devices.first() else {
        return Err(TrainError::Data("no device to train on".into()));
    };
    check_parallelism(config, devices.len(), nodes.as_ref())?;
    let group = match nodes {
        Some(settings) => Some(Arc::new(NodeGroup::join::<B::InnerBackend>(settings, device)?)),
        None => None,
    };
    let rank = group.as_ref().map_or(0, |g| g.rank());
    let config = &node_config(config, rank);
    let resume_epoch = resume.then(|| resume_epoch::<B>(config, group.as_deref(), device));
    let resume_epoch = prepare_output(config, resume_epoch)?;
    let student = initial_student::<B>(config, device)?;
    let context = student.model.config().max_position_embeddings;
    check_block_fits(config, context)?;
    let items =
        load_prompts(config, &student.tokenizer, student.stop_tokens.first().copied(), context)?;

    // Under DDP every device steps its own optimizer and learning-rate schedule.
    let optimizers = if ddp.is_some() { devices.len() } else { 1 };
    let interrupter = Interrupter::new();
    let guard = Arc::new(
        NumericGuard::new(config.max_bad_steps, interrupter.clone())
            .with_accumulation(config.checkpoint_every, config.grad_accum)
            .with_optimizers(optimizers),
    );
    let mut model =
        Distiller::from_config(config, student.model, student.stop_tokens, guard.clone());
    model.settings.totals = Arc::new(BatchTotals::new(devices.len()));
    model.settings.nodes = group.clone();
    model.settings.every_share_backwards = ddp.is_some();
    // The Learner advances the schedule once per micro-batch.
    let schedule = WarmupCosine::new(
        config.lr,
        config.final_lr,
        config.warmup * config.grad_accum,
        config.steps,
    )
    // burn-train's DDP worker advances its schedule once per device for each micro-batch.
    .with_calls_per_iteration(optimizers);
    let learner = Learner::new(model, optimizer(), schedule);
    let loader = StepLoader::new(
        items,
        config.batch_size,
        config.checkpoint_every,
        config.steps,
        config.seed,
        resume_epoch,
    )
    .split_over(devices.len())
    .node_share(rank, group.as_ref().map_or(1, |g| g.nodes()));
    let recorder = AtomicRecorder::for_run(config);
    let mut training = supervised_training(
        config,
        devices.len(),
        resume_epoch,
        loader,
        recorder.clone(),
        interrupter,
    )?;
    let strategy = ddp.or_else(|| {
        (devices.len() > 1)
            .then(|| ExecutionStrategy::multi(devices.to_vec(), MultiDeviceOptim::OptimMainDevice))
    });
    if let Some(strategy) = strategy {
        training = training.with_training_strategy(strategy.into());
    }
    let result = training.launch(learner);
    stopped_early(config, &recorder, &guard)?;
    let tokenizer = (rank == 0).then_some(&student.tokenizer);
    export(config, &result.model.student, tokenizer)
}

/// Refuses a block longer than the teacher's context of `context` positions.
fn check_block_fits(config: &TrainConfig, context: usize) -> Result<(), TrainError> {
    if config.block_size > context {
        return Err(TrainError::Data(format!(
            "block_size {} exceeds the teacher's context of {context} ({})",
            config.block_size,
            config.teacher.display()
        )));
    }
    Ok(())
}

/// Refuses what data parallelism cannot do: several devices in a node of a multi-node
/// run, and fewer prompts per step than devices in all.
fn check_parallelism(
    config: &TrainConfig,
    devices: usize,
    nodes: Option<&NodeSettings>,
) -> Result<(), TrainError> {
    if nodes.is_some() && devices > 1 {
        return Err(TrainError::Data(
            "a node of a multi-node run trains on one device (give each device its own node rank)"
                .into(),
        ));
    }
    let shares = devices * nodes.map_or(1, |n| n.nodes);
    if shares > config.batch_size {
        return Err(TrainError::Data(format!(
            "{shares} devices need a batch of at least {shares} prompts (one each); the batch size is {}",
            config.batch_size
        )));
    }
    Ok(())
}

/// The checkpoint a resumed run starts after: the newest complete one, or, in a
/// multi-node run, the newest that every node holds complete.
fn resume_epoch<B: AutodiffBackend>(
    config: &TrainConfig,
    group: Option<&NodeGroup>,
    device: &B::Device,
) -> usize {
    match group {
        None => verified_checkpoint(&config.out),
        Some(group) => {
            let holds = |epoch| verify_checkpoint(&config.out, epoch, true).is_ok();
            group.common_checkpoint::<B::InnerBackend>(config.epochs(), holds, device)
        }
    }
}

/// The settings of node `rank`: rank 0 writes `config.out`, another rank `<out>/rank-<rank>`.
fn node_config(config: &TrainConfig, rank: usize) -> Cow<'_, TrainConfig> {
    match rank {
        0 => Cow::Borrowed(config),
        _ => Cow::Owned(TrainConfig {
            out: config.out.join(format!("rank-{rank}")),
            ..config.clone()
        }),
    }
}

/// Makes `config.out` ready: refuses another run's checkpoints unless resuming (from
/// `resume_epoch`, the newest complete checkpoint), removes leftovers of a killed run
/// (temporary files, incomplete or later epochs, which would be mistaken for, or mixed
/// with, the checkpoints this run writes) and saves `config.json`. Returns the epoch the
/// run starts after (0 when fresh).
fn prepare_output(config: &TrainConfig, resume_epoch: Option<usize>) -> Result<usize, TrainError> {
    let out = &config.out;
    std::fs::create_dir_all(out).map_err(|e| TrainError::io(out, e))?;
    let resume = resume_epoch.is_some();
    let resume_epoch = resume_epoch.unwrap_or(0);
    if !resume && latest_checkpoint(out) > 0 {
        return Err(TrainError::OutputInUse(out.display().to_string()));
    }
    discard_after(out, resume_epoch).map_err(|e| TrainError::io(&out.join("checkpoint"), e))?;
    let config_path = out.join("config.json");
    let json = serde_json::to_string_pretty(config).expect("config serialises");
    write_text_atomically(&config_path, &json).map_err(|e| TrainError::io(&config_path, e))?;
    Ok(resume_epoch)
}

/// burn-train's loop for this run: the step loader, metrics into `metrics.jsonl` and the
/// progress display (one line per step whatever the number of `devices`), atomic checkpoints every epoch, resumed at `resume_epoch`.
fn supervised_training<B: AutodiffBackend>(
    config: &TrainConfig,
    devices: usize,
    resume_epoch: usize,
    loader: StepLoader,
    recorder: AtomicRecorder,
    interrupter: Interrupter,
) -> Result<SupervisedTraining<Components<B>>, TrainError> {
    let out = &config.out;
    let first_step = resume_epoch * config.checkpoint_every;
    let renderer = StepRenderer::new(out, first_step, config.steps, devices)
        .map_err(|e| TrainError::io(out, e))?;
    let mut training = SupervisedTraining::new(out, Arc::new(loader), Arc::new(NoValidation))
        .metric_train_numeric(LearningRateMetric::new())
        .with_file_checkpointer(recorder)
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
    Ok(training)
}

/// A failed checkpoint, a failed rollout or the numerical guard stopped the run: say
/// which, and which checkpoint a resumed run starts from. Nothing is exported then.
fn stopped_early(
    config: &TrainConfig,
    recorder: &AtomicRecorder,
    guard: &NumericGuard,
) -> Result<(), TrainError> {
    let kept = || kept_checkpoint(&config.out);
    if let Some(message) = recorder.error() {
        return Err(TrainError::CheckpointWrite { message, kept: kept() });
    }
    if let Some((step, source)) = guard.rollout_failure() {
        return Err(TrainError::Rollout { step, source, kept: kept() });
    }
    if let Some(message) = guard.stopped() {
        return Err(TrainError::Diverged { message, kept: kept() });
    }
    Ok(())
}

/// Saves the trained student as a Hugging Face directory (`<out>/model`; not when
/// `tokenizer` is `None`: a node other than rank 0), plots the curves and sums up the
/// run from its metrics log.
fn export<B: burn::prelude::Backend>(
    config: &TrainConfig,
    student: &opdlm_model::Transformer<B>,
    tokenizer: Option<&TextTokenizer>,
) -> Result<TrainSummary, TrainError> {
    let model_dir = match tokenizer {
        Some(tokenizer) => {
            let model_dir = config.out.join("model");
            save_hf_dir(student, tokenizer, &model_dir)?;
            model_dir
        }
        // Rank 0's export, one level up from this node's `<out>/rank-<rank>`.
        None => config.out.parent().unwrap_or(&config.out).join("model"),
    };
    let metrics = config.out.join("metrics.jsonl");
    let log = read_log(&metrics);
    let plot = plot_curves(&log, &config.out.join("curves.png")).ok();
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
