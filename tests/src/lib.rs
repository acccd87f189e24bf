//! Shared helpers of the cross-crate tests: fixture paths, the real SmolLM2 checkpoint
//! (fetched on first use by `scripts/fetch-smollm2.sh`), and comparison utilities.

#![warn(missing_docs)]

use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The backend the tests run on (`wgpu` when that feature is on, else CPU ndarray).
#[cfg(not(feature = "wgpu"))]
pub type TestBackend = burn::backend::NdArray<f32>;
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

/// Largest absolute difference between two equally long slices.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
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
