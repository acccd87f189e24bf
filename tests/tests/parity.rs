//! Our logits against Hugging Face `transformers` on tiny random Llama, Qwen2 (bf16
//! weights) and Qwen3 (sharded) checkpoints, in causal and block-causal mode. Fixtures
//! and the script that made them: `tests/fixtures/tiny-*`, `scripts/make_fixtures.py`.

use burn::prelude::*;
use burn::tensor::{Int, TensorData};
use opdlm_model::{load_model, AttentionMode, Layout};
use opdlm_tests::{fixture, max_abs_diff, TestBackend};
use serde::Deserialize;

/// The tolerance the issue asks for on f32.
const TOLERANCE: f32 = 1e-4;

#[derive(Deserialize)]
struct Reference {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    input_ids: Vec<Vec<i64>>,
    mode: serde_json::Value,
    logits: Vec<Vec<Vec<f32>>>,
}

impl Case {
    fn mode(&self) -> AttentionMode {
        match &self.mode {
            serde_json::Value::String(s) if s == "causal" => AttentionMode::Causal,
            serde_json::Value::Object(o) => AttentionMode::BlockCausal {
                block_size: o["block_causal"].as_u64().expect("block_causal size") as usize,
            },
            other => panic!("unknown mode {other}"),
        }
    }
}

fn check_model(name: &str) {
    let device = Default::default();
    let dir = fixture(name);
    let model = load_model::<TestBackend>(&dir, &device).unwrap_or_else(|e| panic!("{e}"));
    let text = std::fs::read_to_string(dir.join("reference.json")).expect("reference.json");
    let reference: Reference = serde_json::from_str(&text).expect("reference parses");
    for case in &reference.cases {
        let (batch, len) = (case.input_ids.len(), case.input_ids[0].len());
        let ids: Vec<i64> = case.input_ids.iter().flatten().copied().collect();
        let tokens =
            Tensor::<TestBackend, 2, Int>::from_data(TensorData::new(ids, [batch, len]), &device);
        let layout = Layout::contiguous(case.mode(), batch, 0, len, &device);
        let ours: Vec<f32> =
            model.forward(tokens, &layout).into_data().convert::<f32>().to_vec().unwrap();
        let theirs: Vec<f32> = case.logits.iter().flatten().flatten().copied().collect();
        let diff = max_abs_diff(&ours, &theirs);
        println!("{name}/{}: max |Δlogit| = {diff:.2e}", case.name);
        assert!(diff <= TOLERANCE, "{name}/{}: max abs diff {diff} > {TOLERANCE}", case.name);
    }
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
