//! Training properties on the tiny Llama fixture:
//! - every state trained on is a state the sampler visited (both selection rules);
//! - OPDLM's loss goes down over a fixed seed;
//! - a run resumed from a checkpoint continues with exactly the losses of the
//!   uninterrupted run, and its exported model decodes;
//! - the student read back from the last checkpoint is the exported student.

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;
use opdlm_inference::{generate, CommitRule, DecodeConfig, SamplingConfig};
use opdlm_model::{load_model, Transformer};
use opdlm_tests::{
    logged_losses as losses, tiny_model_dir, tiny_train_config as config, TestBackend,
};
use opdlm_training::{load_checkpoint_student, train};
use opdlm_training::{response_blocks, select_masked, StateSelection};
use rand::rngs::StdRng;
use rand::SeedableRng;

type B = TestBackend;

#[test]
fn training_states_are_states_the_sampler_visited() {
    let block = 4;
    let model = load_model::<B>(&tiny_model_dir("tiny-llama", "states"), &Default::default())
        .unwrap()
        .into_diffusion(96, block, false);
    let mask_id = model.config().diffusion.as_ref().unwrap().mask_token_id;
    let prompts = vec![
        vec![5, 17, 33, 2, 71],
        vec![9, 1, 44, 60, 23, 8, 90],
        vec![40, 41, 42, 43, 44, 45, 46, 47],
    ];
    let config = DecodeConfig {
        sampling: SamplingConfig { temperature: 1.0, top_k: 0, top_p: 1.0 },
        seed: 11,
        record_states: true,
        ..DecodeConfig::diffusion(block, 13, CommitRule::Dynamic { threshold: 0.3 })
    };
    let out = generate(&model, &prompts, &config, |_| {}).unwrap();
    let mut rng = StdRng::seed_from_u64(5);
    let mut checked = 0;
    for (row, prompt) in out.rows.iter().zip(&prompts) {
        let p = prompt.len();
        for rule in [StateSelection::PerBlock, StateSelection::Trajectory] {
            for _ in 0..20 {
                let masked = select_masked(rule, &row.first_unmask_step, p, block, &mut rng);
                for (start, end) in response_blocks(p, row.tokens.len(), block) {
                    if !masked[start..end].contains(&true) {
                        continue;
                    }
                    // x_t of this block as the training layout builds it: prompt tail, then
                    // the response slots with the selected ones masked.
                    let block_start = (p + start) / block * block;
                    let mut tokens: Vec<u32> = prompt[block_start.min(p)..].to_vec();
                    tokens.extend((start..end).map(|j| {
                        if masked[j] {
                            mask_id
                        } else {
                            row.tokens[j]
                        }
                    }));
                    let visited = row
                        .states
                        .iter()
                        .any(|s| s.block_start == block_start && s.tokens == tokens);
                    assert!(
                        visited,
                        "{rule:?}: state {tokens:?} at {block_start} was never fed to the model"
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 100, "checked {checked} states");
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

/// Every float parameter of a model, in visiting order.
fn weights(model: &Transformer<B>) -> Vec<Vec<f32>> {
    struct Collect(Vec<Vec<f32>>);
    impl ModuleVisitor<B> for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            self.0.push(param.val().into_data().to_vec::<f32>().unwrap());
        }
    }
    let mut collect = Collect(vec![]);
    model.visit(&mut collect);
    collect.0
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
