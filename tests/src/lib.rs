//! Shared helpers of the cross-crate tests: fixture paths, the real SmolLM2 checkpoint
//! (fetched on first use by `scripts/fetch-smollm2.sh`), comparison utilities, and the
//! backend-generic parity and decoding checks that `parity.rs`, `decoding.rs` and `wgpu.rs`
//! share.

#![warn(missing_docs)]

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use burn::prelude::*;
use burn::tensor::{Int, TensorData};
use opdlm_inference::{generate, CommitRule, DecodeConfig, SamplingConfig};
use opdlm_model::{load_model, AttentionMode, Layout, Transformer};
use serde::Deserialize;

/// The backend the tests run on (`wgpu` when that feature is on, else CPU ndarray).
#[cfg(not(feature = "wgpu"))]
pub type TestBackend = burn::backend::NdArray<f32>;
/// The backend the tests run on (`wgpu` when that feature is on, else CPU ndarray).
#[cfg(feature = "wgpu")]
pub type TestBackend = burn::backend::Wgpu;

/// The workspace root (fixtures, scripts and the cache are found from it).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// A file or directory of `tests/fixtures/`.
pub fn fixture(name: &str) -> PathBuf {
    repo_root().join("tests").join("fixtures").join(name)
}

/// Path of the SmolLM2-135M-Instruct GGUF: `$OPDLM_SMOLLM2_GGUF`, or the project cache,
/// fetched (sha256-checked) by `scripts/fetch-smollm2.sh` when missing.
pub fn smollm2_gguf() -> PathBuf {
    static FETCH: Mutex<()> = Mutex::new(());
    if let Some(path) = std::env::var_os("OPDLM_SMOLLM2_GGUF") {
        return PathBuf::from(path);
    }
    let cache = std::env::var_os("OPDLM_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".cache"));
    let path = cache.join("smollm2").join("SmolLM2-135M-Instruct.Q4_1.gguf");
    let _guard = FETCH.lock().unwrap_or_else(|e| e.into_inner());
    if !path.exists() {
        let script = repo_root().join("scripts").join("fetch-smollm2.sh");
        let status =
            std::process::Command::new("bash").arg(&script).status().expect("run fetch-smollm2.sh");
        assert!(
            status.success(),
            "{} failed: the SmolLM2 GGUF is needed by this test",
            script.display()
        );
    }
    assert!(path.exists(), "{} missing after fetching", path.display());
    path
}

/// Every float parameter of a model, in visiting order.
pub fn weights<B: Backend>(model: &Transformer<B>) -> Vec<Vec<f32>> {
    struct Collect(Vec<Vec<f32>>);
    impl<B: Backend> burn::module::ModuleVisitor<B> for Collect {
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<Tensor<B, D>>) {
            self.0.push(param.val().into_data().to_vec::<f32>().unwrap());
        }
    }
    let mut collect = Collect(vec![]);
    model.visit(&mut collect);
    collect.0
}

/// The largest absolute difference between two models' float parameters.
pub fn max_weight_diff<B: Backend>(a: &Transformer<B>, b: &Transformer<B>) -> f32 {
    let (a, b) = (weights(a), weights(b));
    assert_eq!(a.len(), b.len(), "the models have different parameters");
    a.iter().zip(&b).map(|(x, y)| max_abs_diff(x, y)).fold(0.0, f32::max)
}

/// Largest absolute difference between two equally long slices.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// `x · w` summed in f64 (an independent reference for the backend's products), `x`
/// `[m, k]` and `w` `[k, n]`, both row-major.
pub fn plain_product(x: &[f32], w: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; m * n];
    for r in 0..m {
        for j in 0..n {
            let sum: f64 = (0..k).map(|i| f64::from(x[r * k + i]) * f64::from(w[i * n + j])).sum();
            out[r * n + j] = sum as f32;
        }
    }
    out
}

/// Largest |a − b| relative to 1 + |b|.
pub fn worst_relative(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter().zip(b).map(|(x, y)| (x - y).abs() / (1.0 + y.abs())).fold(0.0, f32::max)
}

/// A copy of a tiny fixture model in a fresh directory, with a word-level tokenizer over
/// its 96 ids (`t0` … `t95`; `t2` is the EOS of its config) so it can be trained and
/// decoded like a real checkpoint.
pub fn tiny_model_dir(name: &str, tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("opdlm-{name}-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(fixture(name)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    let vocab: serde_json::Map<String, serde_json::Value> =
        (0..96).map(|i| (format!("t{i}"), i.into())).collect();
    let tokenizer = serde_json::json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": null, "pre_tokenizer": { "type": "WhitespaceSplit" }, "post_processor": null,
        "decoder": null, "model": { "type": "WordLevel", "vocab": vocab, "unk_token": "t0" }
    });
    std::fs::write(dir.join("tokenizer.json"), tokenizer.to_string()).unwrap();
    std::fs::write(dir.join("tokenizer_config.json"), r#"{"eos_token": "t2"}"#).unwrap();
    dir
}

/// A short OPDLM run on a tiny model: six word-level prompts (written next to `out`),
/// batch 3, rollouts of 6–10 tokens, a checkpoint every 4 steps, seed 3.
pub fn tiny_train_config(
    teacher: PathBuf,
    out: PathBuf,
    steps: usize,
) -> opdlm_training::TrainConfig {
    let prompts = out.with_extension("jsonl");
    let lines: Vec<String> = (0..6)
        .map(|i| {
            format!(
                "{{\"prompt\": \"t{} t{} t{} t{} t{}\"}}",
                10 + i,
                20 + i,
                30 + i,
                40 + i,
                50 + i
            )
        })
        .collect();
    std::fs::write(&prompts, lines.join("\n")).unwrap();
    opdlm_training::TrainConfig {
        teacher,
        prompts,
        out,
        lr: 2e-3,
        final_lr: 1e-4,
        warmup: 1,
        batch_size: 3,
        rollout_len_min: 6,
        rollout_len_max: 10,
        rollout_len_ramp: 4,
        steps,
        checkpoint_every: 4,
        seed: 3,
        ..opdlm_training::TrainConfig::default()
    }
}

/// The `loss` of every line of a run's `metrics.jsonl` (NaN where it was not finite).
pub fn logged_losses(out: &Path) -> Vec<f64> {
    opdlm_training::read_log(&out.join("metrics.jsonl"))
        .iter()
        .map(|v| v["loss"].as_f64().unwrap_or(f64::NAN))
        .collect()
}

/// One case of a fixture's `reference.json` (made by `scripts/make_fixtures.py`): input ids,
/// attention mode and the logits `transformers` computed for them.
#[derive(Deserialize)]
struct ParityCase {
    name: String,
    input_ids: Vec<Vec<i64>>,
    mode: serde_json::Value,
    logits: Vec<Vec<Vec<f32>>>,
}

impl ParityCase {
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

/// Loads the tiny fixture `name` on `B` and asserts that its logits match the
/// `transformers` reference of every case within `tolerance` (max absolute difference).
pub fn check_parity<B: Backend>(name: &str, device: &B::Device, tolerance: f32) {
    #[derive(Deserialize)]
    struct Reference {
        cases: Vec<ParityCase>,
    }
    let dir = fixture(name);
    let model = load_model::<B>(&dir, device).unwrap_or_else(|e| panic!("{e}"));
    let text = std::fs::read_to_string(dir.join("reference.json")).expect("reference.json");
    let reference: Reference = serde_json::from_str(&text).expect("reference parses");
    for case in &reference.cases {
        let (batch, len) = (case.input_ids.len(), case.input_ids[0].len());
        let ids: Vec<i64> = case.input_ids.iter().flatten().copied().collect();
        let tokens = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [batch, len]), device);
        let layout = Layout::contiguous(case.mode(), batch, 0, len, device);
        let ours: Vec<f32> =
            model.forward(tokens, &layout).into_data().convert::<f32>().to_vec().unwrap();
        let theirs: Vec<f32> = case.logits.iter().flatten().flatten().copied().collect();
        let diff = max_abs_diff(&ours, &theirs);
        println!("{name}/{}: max |Δlogit| = {diff:.2e}", case.name);
        assert!(diff <= tolerance, "{name}/{}: max abs diff {diff} > {tolerance}", case.name);
    }
}

/// Tiny fixtures have no tokenizer; their 96 ids are all "real", so the mask is a new row.
pub const FIXTURE_VOCAB: usize = 96;

/// The tiny fixture `name` as a block-diffusion model.
pub fn diffusion_fixture<B: Backend>(name: &str, block: usize, shift: bool) -> Transformer<B> {
    load_model::<B>(&fixture(name), &Default::default()).unwrap().into_diffusion(
        FIXTURE_VOCAB,
        block,
        shift,
    )
}

/// The generated tokens of each prompt.
pub fn decode<B: Backend>(
    model: &Transformer<B>,
    prompts: &[Vec<u32>],
    config: &DecodeConfig,
) -> Vec<Vec<u32>> {
    generate(model, prompts, config, |_| {}).unwrap().rows.into_iter().map(|r| r.tokens).collect()
}

/// The logits of one uncached forward pass over `seq`, one row per position.
pub fn logits_rows<B: Backend>(
    model: &Transformer<B>,
    seq: &[u32],
    mode: AttentionMode,
) -> Vec<Vec<f32>> {
    let device = Default::default();
    let ids: Vec<i64> = seq.iter().map(|&t| t as i64).collect();
    let tokens = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [1, seq.len()]), &device);
    let logits = model.forward(tokens, &Layout::contiguous(mode, 1, 0, seq.len(), &device));
    let vocab = logits.dims()[2];
    let flat: Vec<f32> = logits.into_data().convert::<f32>().to_vec().unwrap();
    flat.chunks(vocab).map(|c| c.to_vec()).collect()
}

/// Argmax excluding the mask id; ties go to the lowest id (as the sampler's top-k does).
pub fn argmax(row: &[f32], mask_id: u32) -> (u32, f32) {
    let mut best = (0u32, f32::NEG_INFINITY);
    for (i, &v) in row.iter().enumerate() {
        if i as u32 != mask_id && v > best.1 {
            best = (i as u32, v);
        }
    }
    best
}

/// Reference greedy AR decoding: full uncached causal pass per token.
pub fn uncached_ar<B: Backend>(model: &Transformer<B>, prompt: &[u32], max_new: usize) -> Vec<u32> {
    let mask_id = model.config().diffusion.as_ref().unwrap().mask_token_id;
    let mut seq = prompt.to_vec();
    for _ in 0..max_new {
        let rows = logits_rows(model, &seq, AttentionMode::Causal);
        seq.push(argmax(rows.last().unwrap(), mask_id).0);
    }
    seq[prompt.len()..].to_vec()
}

/// Prompts of the decoding invariants: three lengths, none a multiple of 4.
pub fn decoding_prompts() -> Vec<Vec<u32>> {
    vec![vec![5, 17, 33, 2, 71], vec![9, 1, 44, 60, 23, 8, 90], vec![40, 41, 42, 43, 44, 45]]
}

/// Block size 1 with the static rule, and the AR decoder, both produce exactly the tokens of
/// uncached greedy AR decoding (tiny Llama and Qwen2, 9 new tokens per prompt).
pub fn check_block_one_static_equals_greedy<B: Backend>() {
    for name in ["tiny-llama", "tiny-qwen2"] {
        let m = diffusion_fixture::<B>(name, 1, true);
        for prompt in decoding_prompts() {
            let want = uncached_ar(&m, &prompt, 9);
            let static_1 = DecodeConfig {
                steps_per_block: 1,
                ..DecodeConfig::diffusion(1, 9, CommitRule::Static)
            };
            let block1 = decode(&m, std::slice::from_ref(&prompt), &static_1).remove(0);
            let ar_config = DecodeConfig::autoregressive(9, SamplingConfig::GREEDY, vec![], 0);
            let ar = decode(&m, std::slice::from_ref(&prompt), &ar_config).remove(0);
            assert_eq!(block1, want, "{name}: block-1 static vs uncached AR");
            assert_eq!(ar, want, "{name}: AR decoder vs uncached AR");
        }
    }
}
