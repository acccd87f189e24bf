//! Our logits against Hugging Face `transformers` on tiny random Llama, Qwen2 (bf16
//! weights) and Qwen3 (sharded) checkpoints, in causal and block-causal mode. Fixtures
//! and the script that made them: `tests/fixtures/tiny-*`, `scripts/make_fixtures.py`.

use opdlm_tests::{check_parity, TestBackend};

/// The tolerance the issue asks for on f32.
const TOLERANCE: f32 = 1e-4;

fn check_model(name: &str) {
    check_parity::<TestBackend>(name, &Default::default(), TOLERANCE);
}

#[test]
fn tiny_llama_logits_match_transformers() {
    check_model("tiny-llama");
}

#[test]
fn tiny_qwen2_bf16_logits_match_transformers() {
    check_model("tiny-qwen2");
}

#[test]
fn tiny_qwen3_sharded_logits_match_transformers() {
    check_model("tiny-qwen3");
}
