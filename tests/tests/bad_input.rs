//! Bad model directories give clear errors that name the file and what was expected,
//! never a panic. Each case is made by the test from a valid tiny fixture.

use std::path::{Path, PathBuf};

use opdlm_model::{load_model, load_pretrained};
use opdlm_tests::{tiny_model_dir, TestBackend};

fn broken(tag: &str, edit: impl FnOnce(&Path)) -> PathBuf {
    let dir = tiny_model_dir("tiny-qwen3", tag);
    edit(&dir);
    dir
}

fn error(dir: &Path) -> String {
    match load_pretrained::<TestBackend>(dir, &Default::default()) {
        Ok(_) => panic!("{} loaded although it is broken", dir.display()),
        Err(e) => e.to_string(),
    }
}

fn assert_mentions(err: &str, parts: &[&str]) {
    for part in parts {
        assert!(err.contains(part), "error does not mention {part:?}:\n{err}");
    }
}

#[test]
fn missing_paths_and_non_models_are_named() {
    assert_mentions(&error(Path::new("/no/such/model")), &["/no/such/model", "no such file"]);
    let file = std::env::temp_dir().join(format!("opdlm-not-a-model-{}.txt", std::process::id()));
    std::fs::write(&file, "hello").unwrap();
    assert_mentions(&error(&file), &["not a model", ".gguf"]);
}

#[test]
fn config_problems_name_the_field() {
    let dir = broken("cfg-missing", |d| {
        let text = std::fs::read_to_string(d.join("config.json")).unwrap();
        let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
        json.as_object_mut().unwrap().remove("hidden_size");
        std::fs::write(d.join("config.json"), json.to_string()).unwrap();
    });
    assert_mentions(&error(&dir), &["config.json", "hidden_size"]);
    let dir = broken("cfg-json", |d| std::fs::write(d.join("config.json"), "{\n  \"model_type\": \"qwen3\",\n  oops\n}").unwrap());
    assert_mentions(&error(&dir), &["config.json", "line 3"]);
}

#[test]
fn weight_problems_name_the_file_or_tensor() {
    // A shard listed by the index is missing.
    let dir = broken("shard", |d| {
        let shard = std::fs::read_dir(d).unwrap().map(|e| e.unwrap().path()).find(|p| p.to_string_lossy().ends_with("of-00003.safetensors")).unwrap();
        std::fs::remove_file(shard).unwrap();
    });
    assert_mentions(&error(&dir), &["model.safetensors.index.json", "does not exist"]);
    // A truncated shard.
    let dir = broken("truncated", |d| {
        let shard = std::fs::read_dir(d).unwrap().map(|e| e.unwrap().path()).find(|p| p.to_string_lossy().ends_with("00001-of-00003.safetensors")).unwrap();
        let bytes = std::fs::read(&shard).unwrap();
        std::fs::write(&shard, &bytes[..bytes.len() / 2]).unwrap();
    });
    assert_mentions(&error(&dir), &["00001-of-00003.safetensors", "not a valid safetensors file"]);
    // Shapes that disagree with config.json.
    let dir = broken("shape", |d| {
        let text = std::fs::read_to_string(d.join("config.json")).unwrap();
        std::fs::write(d.join("config.json"), text.replace("\"intermediate_size\": 128", "\"intermediate_size\": 96")).unwrap();
    });
    let err = load_model::<TestBackend>(&dir, &Default::default()).err().expect("shape mismatch must fail").to_string();
    assert_mentions(&err, &["weights do not match", "mlp"]);
}

#[test]
fn tokenizer_problems_name_the_file() {
    let dir = broken("tok-missing", |d| std::fs::remove_file(d.join("tokenizer.json")).unwrap());
    assert_mentions(&error(&dir), &["tokenizer.json", "missing"]);
    let dir = broken("tok-invalid", |d| std::fs::write(d.join("tokenizer.json"), "{\"model\": 3}").unwrap());
    assert_mentions(&error(&dir), &["tokenizer.json", "invalid tokenizer"]);
}
