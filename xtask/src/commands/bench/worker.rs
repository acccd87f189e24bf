//! Our side of a benchmark: one process per (model, backend), so that thread count and
//! peak memory belong to that run alone. Runs the [`Plan`]'s phases in order (load,
//! prefill, AR, static, dynamic, one training step) and writes a [`Measured`].

use opdlm_training::TrainBackend;
use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use burn::backend::Autodiff;
use burn::module::AutodiffModule;
use burn::prelude::*;
use burn::train::{Interrupter, TrainStep};
use opdlm_inference::{generate, CommitRule, DecodeConfig, SamplingConfig};
use opdlm_model::{
    load_model, token_ids, AttentionMode, CacheUse, Layout, Transformer, WeightFormat,
};
use opdlm_training::{
    optimizer, Distiller, NumericGuard, Objective, PromptBatch, PromptItem, RampShape, TrainConfig,
};

use super::memory::{peak_rss_mib, reset_peak_rss};
use super::plan::{Measured, Plan, RowsTiming, Speed, TrainPlan, TrainTiming};

/// Tokens of the untimed warm-up forward pass (first-call allocations, thread pools).
const WARMUP_TOKENS: usize = 8;

/// Runs every phase of `plan` on backend `B` and returns what was measured.
pub fn measure<B: TrainBackend>(
    plan: &Plan,
    backend: &str,
    weights: WeightFormat,
    device: &B::Device,
) -> anyhow::Result<Measured> {
    let mut measured = Measured {
        implementation: "opdlm".into(),
        backend: backend.into(),
        weights: crate::commands::bench::weights_name(weights).into(),
        threads: plan.threads,
        ..Default::default()
    };

    reset_peak_rss();
    let started = Instant::now();
    let model: Transformer<Autodiff<B>> = load_model(&plan.model, device)
        .with_context(|| format!("loading {}", plan.model.display()))?;
    let inference: Transformer<B> = model.valid();
    // Training steps the f32 model; a quantized run measures decoding only, without it.
    let model = (weights == WeightFormat::F32).then_some(model);
    // Unconverted AR model decoded by the diffusion sampler: logits read shifted.
    let decoder =
        inference.into_diffusion(plan.tokenizer_vocab, plan.block_size, true).with_weights(weights);
    if weights != WeightFormat::F32 {
        crate::allocator::return_freed_memory();
    }
    sync::<B>(device);
    measured.load_seconds = started.elapsed().as_secs_f64();
    measured.load_peak_rss_mib = peak_rss_mib();
    eprintln!("[{backend}] {}: loaded in {:.1} s", plan.name, measured.load_seconds);
    let _ = prefill(&decoder, &plan.prompt[..WARMUP_TOKENS.min(plan.prompt.len())], device);

    measured.prefill = Some(best_of(plan.repeats, || {
        reset_peak_rss();
        let seconds = prefill(&decoder, &plan.prefill, device);
        Ok(Speed::new(plan.prefill.len(), 1, seconds, peak_rss_mib()))
    })?);
    report(backend, plan, "prefill", measured.prefill.as_ref());

    decoding_runs(&decoder, plan, backend, &mut measured)?;
    measured.forward_rows = forward_rows(&decoder, plan, device);
    for t in &measured.forward_rows {
        eprintln!(
            "[{backend}] {}: forward of {} rows: {:.2} ms",
            plan.name,
            t.rows,
            t.seconds * 1e3
        );
    }
    drop(decoder);

    // Training steps f32 weights; a quantized run measures decoding only.
    if let (Some(train), Some(model)) = (&plan.train, model) {
        let timing = train_step(model, plan, train, device)?;
        eprintln!(
            "[{backend}] {}: train step {:.2} s (rollout {:.2} s, teacher {:.2} s, student {:.2} s, optimizer {:.2} s)",
            plan.name, timing.total_seconds, timing.rollout_seconds, timing.teacher_seconds, timing.student_seconds, timing.optimizer_seconds
        );
        measured.train = Some(timing);
    }
    Ok(measured)
}

/// Seconds of one prefill: the prompt through the model into a fresh cache, logits of
/// the last position only (what decoding needs), read back to the host.
fn prefill<B: Backend>(model: &Transformer<B>, prompt: &[u32], device: &B::Device) -> f64 {
    let started = Instant::now();
    let mut cache = model.new_cache();
    let layout = Layout::contiguous(AttentionMode::Causal, 1, 0, prompt.len(), device);
    let hidden =
        model.hidden(token_ids::<B>(prompt, device), &layout, Some((&mut cache, CacheUse::Commit)));
    let last = prompt.len() - 1;
    let logits = model.lm_head(hidden.slice(s![.., last..last + 1, ..]));
    let _ = logits.argmax(2).into_data();
    started.elapsed().as_secs_f64()
}

/// The greedy decoding runs (AR, static, dynamic) on the plan's prompt: the fastest of
/// the plan's repeats of each, and the tokens each wrote.
fn decoding_runs<B: Backend>(
    decoder: &Transformer<B>,
    plan: &Plan,
    backend: &str,
    measured: &mut Measured,
) -> anyhow::Result<()> {
    let diffusion = |rule| DecodeConfig::diffusion(plan.block_size, plan.max_new_tokens, rule);
    let runs = [
        (
            "ar",
            DecodeConfig::autoregressive(plan.max_new_tokens, SamplingConfig::GREEDY, vec![], 0),
        ),
        ("static", diffusion(CommitRule::Static)),
        ("dynamic", diffusion(CommitRule::Dynamic { threshold: plan.threshold })),
    ];
    let mut speeds = Vec::new();
    for (name, config) in runs {
        let speed = best_of(plan.repeats, || {
            reset_peak_rss();
            let generation =
                generate(decoder, std::slice::from_ref(&plan.prompt), &config, |_| {})?;
            measured.outputs.insert(name.to_string(), generation.rows[0].tokens.clone());
            let stats = generation.stats;
            Ok(Speed::new(
                stats.tokens,
                stats.forwards,
                stats.elapsed.as_secs_f64(),
                peak_rss_mib(),
            ))
        })?;
        report(backend, plan, name, Some(&speed));
        speeds.push(speed);
    }
    let mut speeds = speeds.into_iter();
    (measured.ar, measured.static_, measured.dynamic) =
        (speeds.next(), speeds.next(), speeds.next());
    Ok(())
}

/// Untimed and timed repetitions of each forward-cost measurement (the fastest counts).
const FORWARD_REPEATS: usize = 7;

/// For each of the plan's row counts, the fastest forward of that many mask tokens (a
/// block's denoising step: block-causal, the cache read, not extended) against the
/// cached prompt, with all rows' logits read back.
fn forward_rows<B: Backend>(
    model: &Transformer<B>,
    plan: &Plan,
    device: &B::Device,
) -> Vec<RowsTiming> {
    // The cached prefix ends on a block boundary of every row count, as in decoding.
    let gcd = |mut a: usize, mut b: usize| {
        while b > 0 {
            (a, b) = (b, a % b);
        }
        a
    };
    let rows_lcm = plan.forward_rows.iter().fold(1, |l, &r| l * r.max(1) / gcd(l, r.max(1)));
    let prompt = &plan.prompt[..plan.prompt.len() / rows_lcm * rows_lcm];
    let mut cache = model.new_cache();
    if !prompt.is_empty() {
        let layout = Layout::contiguous(AttentionMode::Causal, 1, 0, prompt.len(), device);
        let ids = token_ids::<B>(prompt, device);
        let _ = model.hidden(ids, &layout, Some((&mut cache, CacheUse::Commit)));
    }
    let mut timings = Vec::new();
    for &rows in &plan.forward_rows {
        let mode = AttentionMode::BlockCausal { block_size: rows.max(1) };
        let layout = Layout::contiguous(mode, 1, prompt.len(), rows, device);
        let tokens = vec![plan.mask_token_id; rows];
        let mut best = f64::INFINITY;
        for _ in 0..FORWARD_REPEATS {
            let started = Instant::now();
            let logits = model.forward_cached(
                token_ids::<B>(&tokens, device),
                &layout,
                &mut cache,
                CacheUse::ReadOnly,
            );
            let _ = logits.into_data();
            best = best.min(started.elapsed().as_secs_f64());
        }
        timings.push(RowsTiming { rows, seconds: best });
    }
    timings
}

/// Training steps run before the timed one. The first step allocates every activation
/// fresh, and AdamW's state is created after its backward pass, so the second step's
/// activations land in new memory too (page faults took half of its student forward pass,
/// `perf`); from the third on, a step reuses the memory of the one before.
/// `scripts/bench_baseline.py` warms PyTorch up the same way.
const WARM_UP_STEPS: usize = 2;

/// One OPDLM step on the plan's prompt batch through the training crate's `TrainStep` (the timing split is its
/// `StepOutput`), then clipping and AdamW through `TrainStep::optimize`.
fn train_step<B: TrainBackend>(
    model: Transformer<Autodiff<B>>,
    plan: &Plan,
    train: &TrainPlan,
    device: &B::Device,
) -> anyhow::Result<TrainTiming> {
    let student = model.into_diffusion(plan.tokenizer_vocab, plan.block_size, false);
    // The plan's step as a run's settings, built by the trainer's own constructors.
    let config = TrainConfig {
        objective: Objective::Opdlm,
        block_size: plan.block_size,
        threshold: plan.threshold,
        temperature: train.temperature,
        lr: train.lr,
        rollout_len_min: train.rollout_len,
        rollout_len_max: train.rollout_len,
        rollout_len_ramp: 0,
        rollout_len_shape: RampShape::Linear,
        top_k_logits: (train.top_k > 0).then_some(train.top_k),
        ..TrainConfig::default()
    };
    let guard = std::sync::Arc::new(NumericGuard::new(usize::MAX, Interrupter::new()));
    let mut distiller = Distiller::from_config(&config, student, vec![], guard);
    let mut optimizer = optimizer();
    let batch = |step| PromptBatch {
        step,
        items: (train.prompts.iter())
            .map(|prompt| PromptItem { prompt: prompt.clone(), response: None })
            .collect(),
        first_row: 0,
        seed: train.seed,
    };

    // Untimed steps first: the timed one then reuses the allocator's memory and AdamW's
    // state, as every step of a conversion after its first two does.
    for step in 0..WARM_UP_STEPS {
        let warm_up = TrainStep::step(&distiller, batch(step));
        distiller = TrainStep::optimize(distiller, &mut optimizer, train.lr, warm_up.grads);
        sync::<B>(device);
    }

    reset_peak_rss();
    let started = Instant::now();
    let output = TrainStep::step(&distiller, batch(WARM_UP_STEPS));
    let step_seconds = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let distiller = TrainStep::optimize(distiller, &mut optimizer, train.lr, output.grads);
    sync::<B>(device);
    let optimizer_seconds = started.elapsed().as_secs_f64();
    drop(distiller);
    let item = output.item;
    let rollout_tokens = (item.rollout_len * item.batch_size as f64).round() as usize;
    // Forwards each row took part in, over the batch (every row lives to the end: no stop
    // tokens). Rows advance on their own, so this divided by the batch is the mean per
    // row; PyTorch's sampler moves rows in lockstep, where every row takes every pass.
    let row_forwards = rollout_tokens as f64 / item.rollout_tokens_per_forward.max(1e-9);
    Ok(TrainTiming {
        rollout_seconds: item.rollout_seconds,
        teacher_seconds: item.teacher_seconds,
        student_seconds: item.student_seconds,
        optimizer_seconds,
        total_seconds: step_seconds + optimizer_seconds,
        rollout_tokens,
        rollout_forwards: (row_forwards / item.batch_size.max(1) as f64).round() as usize,
        loss: item.loss,
        peak_rss_mib: peak_rss_mib(),
    })
}

/// The fastest of `repeats` runs (at least one).
fn best_of(
    repeats: usize,
    mut run: impl FnMut() -> anyhow::Result<Speed>,
) -> anyhow::Result<Speed> {
    let mut best: Option<Speed> = None;
    for _ in 0..repeats.max(1) {
        let speed = run()?;
        if best.as_ref().is_none_or(|b| speed.seconds < b.seconds) {
            best = Some(speed);
        }
    }
    Ok(best.expect("at least one run"))
}

fn report(backend: &str, plan: &Plan, phase: &str, speed: Option<&Speed>) {
    if let Some(s) = speed {
        eprintln!(
            "[{backend}] {}: {phase}: {} tokens, {} forwards, {:.2} s, {:.1} tok/s",
            plan.name, s.tokens, s.forwards, s.seconds, s.tokens_per_second
        );
    }
}

/// Waits for queued device work (a no-op on CPU backends).
fn sync<B: Backend>(device: &B::Device) {
    let _ = B::sync(device);
}

/// Reads the plan at `plan_path`, measures on `B` and writes the result to `out`.
pub fn run<B: TrainBackend>(
    plan_path: &Path,
    backend: &str,
    weights: WeightFormat,
    out: &Path,
    device: B::Device,
) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(plan_path)
        .with_context(|| format!("reading {}", plan_path.display()))?;
    let plan: Plan =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", plan_path.display()))?;
    let measured = measure::<B>(&plan, backend, weights, &device)?;
    std::fs::write(out, serde_json::to_string_pretty(&measured)?)
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(())
}
