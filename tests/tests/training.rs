//! Training properties on the tiny Llama fixture:
//! - every state trained on is a state the sampler visited (both selection rules, stop
//!   tokens, slots after them, rows of different lengths, blocks of 2 and 4);
//! - OPDLM's loss goes down over a fixed seed;
//! - a run resumed from a checkpoint continues with exactly the losses of the
//!   uninterrupted run, and its exported model decodes;
//! - the student read back from the last checkpoint is the exported student.

use opdlm_inference::{generate, CommitRule, DecodeConfig, RowOutput, SamplingConfig};
use opdlm_model::load_model;
use opdlm_tests::{
    logged_losses as losses, max_weight_diff, tiny_model_dir, tiny_train_config as config, weights,
    TestBackend,
};
use opdlm_training::{load_checkpoint_student, train, train_data_parallel};
use opdlm_training::{
    student_noisy_inputs, Divergence, Example, Loss, Objective, StateSelection, StudentPasses,
};
use rand::rngs::StdRng;
use rand::SeedableRng;

type B = TestBackend;

/// What the visited-states test met, so that it cannot pass without its hard cases.
#[derive(Default, Debug)]
struct Coverage {
    /// Blocks with a masked slot, each found among the sampler's visited states.
    states: usize,
    /// ... of which the stop token was still masked.
    masked_stops: usize,
    /// ... of which held slots after the stop token.
    after_stop: usize,
    /// ... of which began inside the prompt (a partly filled prompt block).
    prompt_blocks: usize,
}

/// Every block of every training `x_t`, read back from the packed batch the student is fed
/// (`Loss::example` → `student_noisy_inputs`, the production path), is a state the
/// sampler fed the model, token for token: stop tokens still masked, the slots after the
/// stop token, partly filled prompt blocks and rows of different lengths included. Blocks of 2 and
/// 4, both selection rules, both ways of splitting the student's passes, temperature 1.
#[test]
fn training_states_are_states_the_sampler_visited() {
    let mut seen = Coverage::default();
    // Lengths 3, 9 and 14 put the rows in different phases of their blocks at both block
    // sizes (each row advances on its own); 3 and 9 are odd, so their prompt blocks are
    // partly filled at both.
    let prompts: Vec<Vec<u32>> =
        vec![vec![5, 17, 33], vec![9, 1, 44, 60, 23, 8, 90, 3, 7], (40..54).collect()];
    for block in [2, 4] {
        let model = load_model::<B>(&tiny_model_dir("tiny-llama", "states"), &Default::default())
            .unwrap()
            .into_diffusion(96, block, false);
        let mask_id = model.config().diffusion.as_ref().unwrap().mask_token_id;
        for seed in 0..4 {
            let config = DecodeConfig {
                sampling: SamplingConfig { temperature: 1.0, top_k: 0, top_p: 1.0 },
                // One id in eight stops a row: most rows stop, often mid-block.
                stop_tokens: (0..12).collect(),
                seed,
                record_states: true,
                ..DecodeConfig::diffusion(block, 16, CommitRule::Dynamic { threshold: 0.3 })
            };
            let rows = generate(&model, &prompts, &config, |_| {}).unwrap().rows;
            for rule in [StateSelection::PerBlock, StateSelection::Trajectory] {
                let loss = Loss::new(Objective::Opdlm, rule, Divergence::ForwardKl, None);
                let mut rng = StdRng::seed_from_u64(seed);
                for _ in 0..10 {
                    let examples: Vec<Example> = prompts
                        .iter()
                        .zip(&rows)
                        .map(|(prompt, row)| loss.example(prompt, row.clone(), block, &mut rng))
                        .collect();
                    for passes in [StudentPasses::PerPromptLength, StudentPasses::One] {
                        let inputs = student_noisy_inputs(&examples, block, mask_id, passes);
                        for ((prompt, row), input) in prompts.iter().zip(&rows).zip(inputs) {
                            let Some(input) = input else { continue };
                            check_blocks(prompt, row, &input, block, mask_id, &mut seen);
                        }
                    }
                }
            }
        }
    }
    println!("{seen:?}");
    assert!(seen.states > 200, "{seen:?}");
    assert!(seen.masked_stops > 10 && seen.after_stop > 10 && seen.prompt_blocks > 10, "{seen:?}");
}

/// Checks the student's `x_t` input of one example (from the block boundary at or before
/// the prompt's end) block by block against the sampler's record of `row`.
fn check_blocks(
    prompt: &[u32],
    row: &RowOutput,
    input: &[u32],
    block: usize,
    mask_id: u32,
    seen: &mut Coverage,
) {
    let p = prompt.len();
    let start = p / block * block;
    let sampled: Vec<u32> = prompt[start..].iter().copied().chain(row.trajectory()).collect();
    assert_eq!(input.len(), sampled.len(), "x_t covers the prompt tail and every filled slot");
    for (k, chunk) in input.chunks(block).enumerate() {
        let block_start = start + k * block;
        for (i, (&got, &want)) in chunk.iter().zip(&sampled[k * block..]).enumerate() {
            assert!(
                got == want || got == mask_id,
                "slot {} is neither x0 nor masked",
                k * block + i
            );
        }
        if !chunk.contains(&mask_id) {
            continue;
        }
        let visited = row.states.iter().any(|s| s.block_start == block_start && s.tokens == chunk);
        assert!(visited, "state {chunk:?} at {block_start} was never fed to the model");
        seen.states += 1;
        let slots = block_start..block_start + chunk.len();
        let stop = p + row.tokens.len() - 1;
        if row.stopped && slots.contains(&stop) && chunk[stop - block_start] == mask_id {
            seen.masked_stops += 1;
        }
        seen.after_stop += usize::from(row.stopped && slots.contains(&(stop + 1)));
        seen.prompt_blocks += usize::from(block_start < p);
    }
}

#[test]
fn opdlm_loss_goes_down_and_a_resumed_run_continues_exactly() {
    type A = burn::backend::Autodiff<B>;
    let device = Default::default();
    let teacher = tiny_model_dir("tiny-llama", "train");
    let out = fresh_out_dir(&teacher, "opdlm-run");
    let full = config(teacher.clone(), out.clone(), 12);
    let summary = train::<A>(&full, &device, false).unwrap();
    let uninterrupted = losses(&out);
    assert_eq!(uninterrupted.len(), 12);
    let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len() as f64;
    assert!(
        mean(&uninterrupted[9..]) < mean(&uninterrupted[..3]),
        "loss did not go down: {uninterrupted:?}"
    );
    assert!(summary.tokens_total > 0.0);

    // Refusing to overwrite, then "crash" after the first checkpoint: drop the later
    // checkpoints' files (their manifests stay, and no longer match) and resume.
    assert!(train::<A>(&full, &device, false).unwrap_err().to_string().contains("--resume"));
    for epoch in [2, 3] {
        for kind in ["model", "optim", "scheduler"] {
            let _ =
                std::fs::remove_file(out.join("checkpoint").join(format!("{kind}-{epoch}.mpk")));
        }
    }
    train::<A>(&full, &device, true).unwrap();
    let resumed = losses(&out);
    assert_eq!(resumed, uninterrupted, "resumed run diverged");

    // The exported student decodes with its own block size and mask token.
    let student = load_model::<B>(&summary.model_dir, &device).unwrap();
    let diffusion = student.config().diffusion.clone().unwrap();
    assert_eq!((diffusion.block_size, diffusion.shift_logits), (4, false));
    let decoded = generate(
        &student,
        &[vec![10, 20, 30]],
        &DecodeConfig::diffusion(4, 8, CommitRule::Dynamic { threshold: 0.9 }),
        |_| {},
    )
    .unwrap();
    assert_eq!(decoded.rows[0].tokens.len(), 8);

    // The last checkpoint's student is the exported one, bit for bit; an earlier one is not.
    let last = load_checkpoint_student::<B>(&out, 3, &device).unwrap();
    assert_eq!(last.config().diffusion, student.config().diffusion);
    assert!(weights(&last) == weights(&student), "checkpoint 3 differs from the exported student");
    let earlier = load_checkpoint_student::<B>(&out, 2, &device).unwrap();
    assert!(weights(&earlier) != weights(&student), "checkpoint 2 equals the final student");
    let missing = load_checkpoint_student::<B>(&out, 9, &device)
        .expect_err("there is no checkpoint 9")
        .to_string();
    assert!(
        missing.contains("manifest-9.json") && missing.contains("checkpoint 9 is incomplete"),
        "{missing}"
    );
}

#[test]
fn a_non_finite_step_is_skipped_counted_and_training_goes_on() {
    type A = burn::backend::Autodiff<B>;
    let device = Default::default();
    let teacher = tiny_model_dir("tiny-llama", "guard");
    let out = fresh_out_dir(&teacher, "opdlm-guard-run");
    let mut run = config(teacher, out.clone(), 8);
    run.faults.nan_loss_at = vec![2];
    run.faults.nan_grads_at = vec![5];
    let summary = train::<A>(&run, &device, false).unwrap();
    let log = opdlm_training::read_log(&summary.metrics);
    let skipped: Vec<f64> = log.iter().map(|v| v["skipped"].as_f64().unwrap()).collect();
    assert_eq!(skipped, [0., 0., 1., 0., 0., 1., 0., 0.]);
    assert_eq!(log.last().unwrap()["skipped_total"].as_f64(), Some(2.0));
    let losses = losses(&out);
    assert!(losses[2].is_nan(), "step 2's loss was poisoned: {losses:?}");
    // Had either bad step reached the optimizer, NaN weights would make every later loss NaN.
    for (step, loss) in losses.iter().enumerate().filter(|(s, _)| *s != 2) {
        assert!(loss.is_finite(), "step {step}: loss {loss} ({losses:?})");
    }
    let student = load_model::<B>(&summary.model_dir, &device).unwrap();
    assert!(
        weights(&student).iter().flatten().all(|w| w.is_finite()),
        "the exported student has non-finite weights"
    );
}

#[test]
fn repeated_non_finite_steps_stop_the_run_and_keep_the_last_checkpoint() {
    type A = burn::backend::Autodiff<B>;
    let device = Default::default();
    let teacher = tiny_model_dir("tiny-llama", "diverge");
    let out = fresh_out_dir(&teacher, "opdlm-diverge-run");
    let mut run = config(teacher, out.clone(), 12);
    run.max_bad_steps = 3;
    run.faults.nan_loss_at = vec![5, 6, 7];
    let err = train::<A>(&run, &device, false)
        .expect_err("three bad steps in a row must stop the run")
        .to_string();
    for part in ["3 optimizer steps in a row", "step 7", "Checkpoint 1", "intact", "--resume"] {
        assert!(err.contains(part), "error does not mention {part:?}: {err}");
    }
    assert_eq!(
        opdlm_training::latest_checkpoint(&out),
        1,
        "the interrupted epoch 2 wrote no checkpoint"
    );
    assert_eq!(losses(&out).len(), 8, "the run stopped right after step 7");
    assert!(!out.join("model").exists(), "a stopped run exports nothing");
}

/// An empty run directory beside `teacher` (left over from an earlier run: removed).
fn fresh_out_dir(teacher: &std::path::Path, name: &str) -> std::path::PathBuf {
    let out = teacher.with_file_name(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    out
}

/// Data parallelism through burn-train's multi-device strategy (two NdArray workers):
/// the same seed and global batch on 1 and on 2 devices give the same losses and the same
/// weights, up to summation order. Each device rolls out its share of the batch (rows
/// 0..1 and 1..3 of 3) with the row's own random numbers, normalises by the global
/// denominator, and the main device sums the two gradients.
#[test]
fn two_devices_train_as_one_and_resume_exactly() {
    type A = burn::backend::Autodiff<B>;
    let device = burn::backend::ndarray::NdArrayDevice::Cpu;
    let teacher = tiny_model_dir("tiny-llama", "parallel");
    let one = fresh_out_dir(&teacher, "one-device");
    let two = fresh_out_dir(&teacher, "two-devices");
    let single = train::<A>(&config(teacher.clone(), one.clone(), 8), &device, false).unwrap();
    let run = config(teacher, two.clone(), 8);
    let parallel = train_data_parallel::<A>(&run, &[device, device], false).unwrap();

    let (a, b) = (losses(&one), losses(&two));
    assert_eq!((a.len(), b.len()), (8, 8));
    let loss_diff = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
    let weight_diff = max_weight_diff(
        &load_model::<B>(&single.model_dir, &device).unwrap(),
        &load_model::<B>(&parallel.model_dir, &device).unwrap(),
    );
    println!("1 vs 2 devices, 8 steps: max |Δloss| {loss_diff:e}, max |Δweight| {weight_diff:e}");
    assert!(loss_diff < 1e-5, "losses differ by {loss_diff}: {a:?} vs {b:?}");
    assert!(weight_diff < 1e-5, "weights differ by {weight_diff}");
    // One line per step with the whole batch's counts, not one per device.
    let log = opdlm_training::read_log(&two.join("metrics.jsonl"));
    let single_log = opdlm_training::read_log(&one.join("metrics.jsonl"));
    for (p, s) in log.iter().zip(&single_log) {
        for key in ["batch_size", "tokens", "response_tokens", "rollout_forwards", "tokens_total"] {
            assert_eq!(p[key], s[key], "{key} at step {}", s["step"]);
        }
    }

    // "Crash" after the first checkpoint and resume on two devices: the same losses.
    for kind in ["model", "optim", "scheduler"] {
        let _ = std::fs::remove_file(two.join("checkpoint").join(format!("{kind}-2.mpk")));
    }
    train_data_parallel::<A>(&run, &[device, device], true).unwrap();
    assert_eq!(losses(&two), b, "the resumed two-device run diverged");
}
