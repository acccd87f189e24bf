//! The built-in default on its committed teacher (real weights trained by
//! `cargo xtask pretrain`):
//! - the teacher solves ≥ 95% of held-out test problems with greedy AR decoding;
//! - block size 1 + static decoding of the teacher gives exactly its AR outputs;
//! - an evaluation's outputs are what `generate` writes for each batch;
//! - the default conversion's settings train, export a student that loads and decodes,
//!   and evaluate it (a short run: the full one is `cargo xtask train`).

use opdlm_harness::builtin::{builtin_train_config, eval_settings, test_items, MAX_NEW_TOKENS};
use opdlm_harness::eval::{evaluate, DecodeMode, EvalSettings};
use opdlm_harness::pretrain::builtin_teacher_dir;
use opdlm_inference::{generate, CommitRule, DecodeConfig, SamplingConfig};
use opdlm_model::load_pretrained;
use opdlm_tests::TestBackend;
use opdlm_training::train;

type B = TestBackend;

#[test]
fn builtin_teacher_solves_held_out_problems() {
    let device = Default::default();
    let teacher = load_pretrained::<B>(&builtin_teacher_dir(), &device).unwrap();
    let items = test_items(200, 7);
    let settings = EvalSettings {
        block_size: 1,
        max_new_tokens: MAX_NEW_TOKENS,
        batch_size: 50,
        modes: vec![DecodeMode::AR],
        weights: Default::default(),
    };
    let result =
        &evaluate(&teacher.model, &teacher.tokenizer, None, &items, &settings, &[0]).unwrap()[0];
    println!(
        "teacher greedy AR accuracy on {} test problems: {:.1}%",
        items.len(),
        100.0 * result.accuracy
    );
    assert!(result.accuracy >= 0.95, "teacher accuracy {:.3}", result.accuracy);
    assert!((result.tokens_per_step - 1.0).abs() < 1e-9, "AR writes one token per step");
}

#[test]
fn teacher_block_one_static_equals_autoregressive_decoding() {
    let device = Default::default();
    let teacher = load_pretrained::<B>(&builtin_teacher_dir(), &device).unwrap();
    let vocab = teacher.tokenizer.vocab_size();
    let prompts: Vec<Vec<u32>> =
        test_items(12, 3).iter().map(|i| teacher.tokenizer.encode(&i.prompt).unwrap()).collect();
    let ar = DecodeConfig::autoregressive(MAX_NEW_TOKENS, SamplingConfig::GREEDY, vec![0], 0);
    let model = teacher.model.into_diffusion(vocab, 1, true);
    let block_one = DecodeConfig {
        stop_tokens: vec![0],
        ..DecodeConfig::diffusion(1, MAX_NEW_TOKENS, CommitRule::Static)
    };
    let a = generate(&model, &prompts, &ar, |_| {}).unwrap();
    let b = generate(&model, &prompts, &block_one, |_| {}).unwrap();
    for (x, y) in a.rows.iter().zip(&b.rows) {
        assert_eq!(x.tokens, y.tokens);
    }
}

/// `evaluate` writes, and counts, what `generate` writes for each batch of prompts: its
/// untimed warm-up decoding before each mode leaves no trace in the outputs or the token
/// counts (12 prompts in batches of 5, so the last batch is partial).
#[test]
fn evaluation_outputs_are_the_generated_rows_of_each_batch() {
    let device = Default::default();
    let teacher = load_pretrained::<B>(&builtin_teacher_dir(), &device).unwrap();
    let vocab = teacher.tokenizer.vocab_size();
    let items = test_items(12, 5);
    let settings = EvalSettings {
        block_size: 4,
        max_new_tokens: MAX_NEW_TOKENS,
        batch_size: 5,
        modes: vec![DecodeMode::AR, DecodeMode::STATIC],
        weights: Default::default(),
    };
    let results =
        evaluate(&teacher.model, &teacher.tokenizer, None, &items, &settings, &[0]).unwrap();
    let prompts: Vec<Vec<u32>> =
        items.iter().map(|i| teacher.tokenizer.encode(&i.prompt).unwrap()).collect();
    // As `evaluate` does: the unconverted model with shifted logits, AR as block size 1.
    let model = teacher.model.into_diffusion(vocab, 4, true);
    for (result, block) in results.iter().zip([1, 4]) {
        let config = DecodeConfig {
            stop_tokens: vec![0],
            ..DecodeConfig::diffusion(block, MAX_NEW_TOKENS, CommitRule::Static)
        };
        let expected: Vec<Vec<u32>> = prompts
            .chunks(settings.batch_size)
            .flat_map(|chunk| generate(&model, chunk, &config, |_| {}).unwrap().rows)
            .map(|row| row.tokens)
            .collect();
        assert_eq!(result.outputs, expected, "{}", result.mode);
        assert_eq!(result.tokens, expected.iter().map(Vec::len).sum::<usize>());
    }
}

#[test]
fn default_conversion_trains_exports_and_evaluates() {
    let device = Default::default();
    let out = std::env::temp_dir().join(format!("opdlm-builtin-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let mut config = builtin_train_config(&out, 0).unwrap();
    config.steps = 2;
    config.checkpoint_every = 1;
    config.batch_size = 4;
    let summary = train::<burn::backend::Autodiff<B>>(&config, &device, false).unwrap();
    assert_eq!(summary.steps, 2);
    assert!(summary.tokens_total > 0.0 && summary.last_loss.is_finite());
    let student = load_pretrained::<B>(&summary.model_dir, &device).unwrap();
    assert_eq!(student.model.config().diffusion.as_ref().unwrap().block_size, config.block_size);
    let teacher = load_pretrained::<B>(&config.teacher, &device).unwrap();
    let items = test_items(8, 0);
    let settings = EvalSettings { batch_size: 4, ..eval_settings(config.block_size, &[0.9]) };
    let results =
        evaluate(&student.model, &student.tokenizer, Some(&teacher.model), &items, &settings, &[0])
            .unwrap();
    let labels: Vec<&str> = results.iter().map(|r| r.mode.as_str()).collect();
    assert_eq!(labels, ["ar", "static", "dynamic γ=0.9"]);
    for r in &results {
        assert_eq!(r.total, 8);
        assert!(r.tokens > 0 && r.generative_perplexity.is_some_and(|p| p >= 1.0), "{r:?}");
    }
    std::fs::remove_dir_all(&out).unwrap();
}
