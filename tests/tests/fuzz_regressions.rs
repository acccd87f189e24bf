//! Inputs found by the cargo-fuzz targets in `fuzz/` (see README, "Fuzzing"), replayed in
//! plain `cargo test`. Each file under `tests/fixtures/fuzz-regressions/<target>/` goes
//! through the same calls as that target and must come back as `Ok` or a clear `Err`,
//! never a panic or an unbounded allocation. A file `<input>.expected` next to an input
//! holds text its error must contain (the clear error that replaced the crash). Files
//! named `review-*` were made by hand for bugs found by reading the code while writing
//! the targets (the overflow and Qwen3 ones were confirmed against the target binary
//! before the fix); the others are libFuzzer's crash artifacts as found.
//!
//! The seed corpora (`fuzz/seeds/<target>/`) are replayed too, and the valid tiny models
//! among them must load, so the seeds keep exercising the success paths.

use std::path::{Path, PathBuf};

use opdlm_inference::prompts::{parse_prompts, read_prompt_file};
use opdlm_model::load::gguf::GgufFile;
use opdlm_model::load::{gguf_model, hf_dir};
use opdlm_model::ModelConfig;
use opdlm_tests::{repo_root, TestBackend};

/// What one input came to: `Ok(())` or the error's text.
type Outcome = Result<(), String>;

/// The `gguf` target: parse, read and dequantise every tensor, rebuild the tokenizer,
/// build the model. Returns the first error of the model build (the deepest step).
fn gguf(bytes: &[u8]) -> Outcome {
    let gguf =
        GgufFile::from_bytes(Path::new("fuzz.gguf"), bytes.to_vec()).map_err(|e| e.to_string())?;
    for t in &gguf.tensors {
        let _ = gguf.tensor_bytes(&t.name);
        if let Ok((shape, values)) = gguf.tensor_f32(&t.name) {
            assert_eq!(shape.iter().product::<usize>(), values.len(), "tensor {}", t.name);
        }
    }
    if let Ok(tok) = gguf_model::tokenizer(&gguf) {
        for text in ["ab ab12 <|im_start|>!", "", "\u{0}\u{ffff}é 123456"] {
            if let Ok(ids) = tok.encode(text) {
                let _ = tok.decode(&ids);
            }
        }
        let _ = tok.decode(&[0, 1, 2, u32::MAX]);
    }
    gguf_model::model_from_gguf::<TestBackend>(&gguf, &Default::default())
        .map(drop)
        .map_err(|e| e.to_string())
}

/// The `hf_dir` target's input layout: `[u16 LE n][config.json][u16 LE m][index]` and the
/// weights file (model.safetensors, or the one shard when there is an index).
fn split_hf(data: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    fn take<'a>(data: &mut &'a [u8]) -> Option<&'a [u8]> {
        let (len, rest) = data.split_first_chunk::<2>()?;
        let len = usize::from(u16::from_le_bytes(*len)).min(rest.len());
        let (part, rest) = rest.split_at(len);
        *data = rest;
        Some(part)
    }
    let mut rest = data;
    let config = take(&mut rest)?;
    let index = take(&mut rest)?;
    Some((config, index, rest))
}

/// The `hf_dir` target: validate config.json alone (and its round trip through
/// `to_hf_json`), then load the whole directory.
fn hf(data: &[u8], scratch: &Path) -> Outcome {
    let (config, index, weights) =
        split_hf(data).ok_or("input shorter than its length prefixes")?;
    if let Ok(text) = std::str::from_utf8(config) {
        if let Ok(c) = ModelConfig::from_json_str(text, "config.json") {
            // What we write back must read back the same. Floats are compared to the last
            // bit or two: serde_json's default parser is not correctly rounded (1e-86 reads
            // as 9.999999999999999e-87), so an exact round trip cannot be promised.
            let again = ModelConfig::from_json_str(&c.to_hf_json().to_string(), "again")
                .expect("re-read own config");
            let close = |a: f64, b: f64| {
                a == b || (a - b).abs() <= 4.0 * f64::EPSILON * a.abs().max(b.abs())
            };
            assert!(
                close(c.rms_norm_eps, again.rms_norm_eps) && close(c.rope_theta, again.rope_theta),
                "{c:?}\n{again:?}"
            );
            assert_eq!(
                c,
                ModelConfig { rms_norm_eps: c.rms_norm_eps, rope_theta: c.rope_theta, ..again },
                "config.json does not survive a round trip"
            );
        }
    }
    let _ = std::fs::remove_dir_all(scratch);
    std::fs::create_dir_all(scratch).unwrap();
    std::fs::write(scratch.join("config.json"), config).unwrap();
    let weights_file = if index.is_empty() {
        "model.safetensors"
    } else {
        std::fs::write(scratch.join("model.safetensors.index.json"), index).unwrap();
        "model-00001-of-00001.safetensors"
    };
    std::fs::write(scratch.join(weights_file), weights).unwrap();
    hf_dir::load_model::<TestBackend>(scratch, &Default::default())
        .map(drop)
        .map_err(|e| e.to_string())
}

/// The `prompts` target.
fn prompts(data: &[u8], scratch: &Path) -> Outcome {
    match std::str::from_utf8(data) {
        Ok(text) => {
            let records = parse_prompts(text, "fuzz.jsonl").map_err(|e| e.to_string())?;
            for r in &records {
                assert!(!r.messages().is_empty(), "accepted a record with no turns: {r:?}");
            }
            Ok(())
        }
        Err(_) => {
            std::fs::write(scratch, data).unwrap();
            let err = read_prompt_file(scratch).expect_err("accepted a file that is not UTF-8");
            Err(err.to_string())
        }
    }
}

/// Input files of a directory (not the `.expected` notes), sorted.
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file() && p.extension().is_none_or(|e| e != "expected"))
        .collect();
    files.sort();
    files
}

fn scratch(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("opdlm-fuzz-regression-{tag}-{}", std::process::id()))
}

/// Replays every regression input of `target` (none yet when its directory is absent:
/// git keeps no empty directories); checks each `.expected` note.
fn replay(target: &str, run: impl Fn(&[u8]) -> Outcome) {
    let dir = repo_root().join("tests/fixtures/fuzz-regressions").join(target);
    if !dir.exists() {
        return;
    }
    for input in inputs(&dir) {
        let outcome = run(&std::fs::read(&input).unwrap());
        let note = input
            .with_file_name(format!("{}.expected", input.file_name().unwrap().to_string_lossy()));
        if let Ok(expected) = std::fs::read_to_string(&note) {
            let expected = expected.trim();
            match &outcome {
                Err(e) => assert!(
                    e.contains(expected),
                    "{}: error does not mention {expected:?}:\n{e}",
                    input.display()
                ),
                Ok(()) => {
                    panic!("{}: loaded, expected an error mentioning {expected:?}", input.display())
                }
            }
        }
        eprintln!("{}: {:?}", input.display(), outcome);
    }
}

/// Replays the seeds of `target`; those listed in `valid` must succeed.
fn seeds(target: &str, valid: &[&str], run: impl Fn(&[u8]) -> Outcome) {
    let dir = repo_root().join("fuzz/seeds").join(target);
    let files = inputs(&dir);
    for name in valid {
        assert!(files.iter().any(|f| f.ends_with(name)), "seed {target}/{name} is missing");
    }
    for input in files {
        let outcome = run(&std::fs::read(&input).unwrap());
        let name = input.file_name().unwrap().to_string_lossy();
        if valid.contains(&name.as_ref()) {
            assert!(outcome.is_ok(), "seed {}: {outcome:?}", input.display());
        }
    }
}

#[test]
fn gguf_regressions() {
    replay("gguf", gguf);
}

#[test]
fn hf_dir_regressions() {
    let dir = scratch("hf");
    replay("hf_dir", |data| hf(data, &dir));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn prompts_regressions() {
    let file = scratch("prompts.jsonl");
    replay("prompts", |data| prompts(data, &file));
    let _ = std::fs::remove_file(&file);
}

#[test]
fn gguf_seeds() {
    let valid =
        ["llama-f32.gguf", "llama-f16.gguf", "qwen2-f32.gguf", "qwen2-bf16.gguf", "qwen3-f32.gguf"];
    seeds("gguf", &valid, gguf);
}

#[test]
fn hf_dir_seeds() {
    let dir = scratch("hf-seeds");
    let valid = [
        "llama-f32",
        "llama-untied-f16",
        "qwen2-f32",
        "qwen2-bf16",
        "qwen3-f32",
        "qwen3-sharded",
        "qwen3-v5-diffusion",
    ];
    seeds("hf_dir", &valid, |data| hf(data, &dir));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn prompts_seeds() {
    let file = scratch("prompts-seeds.jsonl");
    seeds("prompts", &["prompt", "messages", "mixed"], |data| prompts(data, &file));
    let _ = std::fs::remove_file(&file);
}
