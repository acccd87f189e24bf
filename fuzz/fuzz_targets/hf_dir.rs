//! Hugging Face model directories: `config.json` validation (`ModelConfig::from_json_str`)
//! and loading a directory whose config.json, optional model.safetensors.index.json and
//! safetensors weights come from the input, written to a scratch directory.
//!
//! Input layout: `[u16 LE n][n bytes config.json][u16 LE m][m bytes index]` then the rest
//! is the weights file: `model.safetensors`, or, when `m > 0`, the shard
//! `model-00001-of-00001.safetensors` (the index decides what is actually read).
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use opdlm_model::{load_model, ModelConfig};

type B = burn::backend::NdArray<f32>;

fn take<'a>(data: &mut &'a [u8]) -> Option<&'a [u8]> {
    let (len, rest) = data.split_first_chunk::<2>()?;
    let len = usize::from(u16::from_le_bytes(*len)).min(rest.len());
    let (part, rest) = rest.split_at(len);
    *data = rest;
    Some(part)
}

fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| std::env::temp_dir().join(format!("opdlm-fuzz-hf-dir-{}", std::process::id())))
}

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    let (Some(config), Some(index)) = (take(&mut rest), take(&mut rest)) else {
        return;
    };
    if let Ok(text) = std::str::from_utf8(config) {
        if let Ok(c) = ModelConfig::from_json_str(text, "config.json") {
            let _ = c.kv_group_size();
            // What we write back must read back the same. Floats are compared to the last
            // bit or two: serde_json's default parser is not correctly rounded (1e-86 reads
            // as 9.999999999999999e-87), so an exact round trip cannot be promised.
            let again = ModelConfig::from_json_str(&c.to_hf_json().to_string(), "again").expect("re-read own config");
            let close = |a: f64, b: f64| a == b || (a - b).abs() <= 4.0 * f64::EPSILON * a.abs().max(b.abs());
            assert!(close(c.rms_norm_eps, again.rms_norm_eps) && close(c.rope_theta, again.rope_theta), "{c:?}\n{again:?}");
            assert_eq!(c, ModelConfig { rms_norm_eps: c.rms_norm_eps, rope_theta: c.rope_theta, ..again }, "config.json does not survive a round trip");
        }
    }
    let dir = scratch();
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("config.json"), config).unwrap();
    let weights = if index.is_empty() {
        "model.safetensors"
    } else {
        std::fs::write(dir.join("model.safetensors.index.json"), index).unwrap();
        "model-00001-of-00001.safetensors"
    };
    std::fs::write(dir.join(weights), rest).unwrap();
    let _ = load_model::<B>(dir, &Default::default());
});
