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
    let dir = broken("cfg-json", |d| {
        std::fs::write(d.join("config.json"), "{\n  \"model_type\": \"qwen3\",\n  oops\n}").unwrap()
    });
    assert_mentions(&error(&dir), &["config.json", "line 3"]);
}

#[test]
fn weight_problems_name_the_file_or_tensor() {
    // A shard listed by the index is missing.
    let dir = broken("shard", |d| {
        let shard = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().ends_with("of-00003.safetensors"))
            .unwrap();
        std::fs::remove_file(shard).unwrap();
    });
    assert_mentions(&error(&dir), &["model.safetensors.index.json", "does not exist"]);
    // A truncated shard.
    let dir = broken("truncated", |d| {
        let shard = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().ends_with("00001-of-00003.safetensors"))
            .unwrap();
        let bytes = std::fs::read(&shard).unwrap();
        std::fs::write(&shard, &bytes[..bytes.len() / 2]).unwrap();
    });
    assert_mentions(&error(&dir), &["00001-of-00003.safetensors", "not a valid safetensors file"]);
    // Shapes that disagree with config.json.
    let dir = broken("shape", |d| {
        let text = std::fs::read_to_string(d.join("config.json")).unwrap();
        std::fs::write(
            d.join("config.json"),
            text.replace("\"intermediate_size\": 128", "\"intermediate_size\": 96"),
        )
        .unwrap();
    });
    let err = load_model::<TestBackend>(&dir, &Default::default())
        .expect_err("shape mismatch must fail")
        .to_string();
    assert_mentions(&err, &["weights do not match", "mlp"]);
    // Integer tensors where floats are expected: the header's dtypes are rewritten in
    // place (`F32` → `I32`, same width, so offsets stay valid).
    let dir = broken("dtype", |d| {
        let shard = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().ends_with("00002-of-00003.safetensors"))
            .unwrap();
        let mut bytes = std::fs::read(&shard).unwrap();
        let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let header = String::from_utf8(bytes[8..8 + header_len].to_vec()).unwrap();
        assert!(header.contains("\"F32\""), "fixture shard is expected to hold F32 tensors");
        bytes[8..8 + header_len].copy_from_slice(header.replace("\"F32\"", "\"I32\"").as_bytes());
        std::fs::write(&shard, bytes).unwrap();
    });
    assert_mentions(
        &error(&dir),
        &["00002-of-00003.safetensors", "dtype I32", "expected F32, F16 or BF16"],
    );
}

#[test]
fn tokenizer_problems_name_the_file() {
    let dir = broken("tok-missing", |d| std::fs::remove_file(d.join("tokenizer.json")).unwrap());
    assert_mentions(&error(&dir), &["tokenizer.json", "missing"]);
    let dir = broken("tok-invalid", |d| {
        std::fs::write(d.join("tokenizer.json"), "{\"model\": 3}").unwrap()
    });
    assert_mentions(&error(&dir), &["tokenizer.json", "invalid tokenizer"]);
}

// --- Training and decoding inputs: each error names the file and line (or the setting)
// --- and what was expected; none panics.

mod run_inputs {
    use super::assert_mentions;
    use std::path::{Path, PathBuf};

    use opdlm_inference::{generate, CommitRule, DecodeConfig, DecodeError};
    use opdlm_model::load_model;
    use opdlm_tests::{tiny_model_dir, tiny_train_config, TestBackend};
    use opdlm_training::Objective;
    use opdlm_training::{train, TrainConfig};

    type A = burn::backend::Autodiff<TestBackend>;

    /// A tiny teacher and a run config whose prompt file holds `lines`.
    fn run_with(tag: &str, lines: &[&str]) -> TrainConfig {
        let teacher = tiny_model_dir("tiny-llama", tag);
        let out = teacher.with_file_name(format!("opdlm-bad-run-{tag}-{}", std::process::id()));
        let config = tiny_train_config(teacher, out, 4);
        std::fs::write(&config.prompts, lines.join("\n")).unwrap();
        config
    }

    fn train_error(config: &TrainConfig) -> String {
        match train::<A>(config, &Default::default(), false) {
            Ok(_) => panic!("training on bad input succeeded"),
            Err(e) => e.to_string(),
        }
    }

    fn prompts(config: &TrainConfig) -> String {
        config.prompts.display().to_string()
    }

    #[test]
    fn a_chat_template_that_fails_names_its_file_and_the_prompt_line() {
        let mut config = run_with(
            "template",
            &[r#"{"prompt": "t10 t11"}"#, r#"{"messages": [{"role": "user", "content": "t12"}]}"#],
        );
        config.chat = true;
        let tokenizer_config = config.teacher.join("tokenizer_config.json");
        // A syntax error (an unclosed expression).
        std::fs::write(
            &tokenizer_config,
            r#"{"eos_token": "t2", "chat_template": "{% for m in messages %}{{ m.content }"}"#,
        )
        .unwrap();
        let err = train_error(&config);
        assert_mentions(
            &err,
            &[
                &format!("{}:1:", prompts(&config)),
                "tokenizer_config.json `chat_template`",
                "syntax error",
            ],
        );
        // A template that raises on the second record's conversation.
        let template = r#"{% for m in messages %}{% if m.content == 't12' %}{{ raise_exception('no t12 allowed') }}{% endif %}{{ m.content }}{% endfor %}"#;
        std::fs::write(
            &tokenizer_config,
            serde_json::json!({"eos_token": "t2", "chat_template": template}).to_string(),
        )
        .unwrap();
        assert_mentions(
            &train_error(&config),
            &[
                &format!("{}:2:", prompts(&config)),
                "tokenizer_config.json `chat_template`",
                "no t12 allowed",
            ],
        );
    }

    #[test]
    fn prompt_files_with_missing_fields_or_empty_prompts_name_the_line() {
        let cases: [(&[&str], &str, &str); 5] = [
            (
                &[r#"{"prompt": "t10"}"#, r#"{"answer": "t11"}"#],
                ":2:",
                "expected a `prompt` string or a `messages` list",
            ),
            (&[r#"{"prompt": "t10"}"#, "", r#"{"prompt": "   "}"#], ":3:", "`prompt` is empty"),
            (&[r#"{"messages": [{"content": "t10"}]}"#], ":1:", "missing field `role`"),
            (
                &[r#"{"prompt": "t10"}"#, r#"{"messages": [{"role": "user", "content": "t10"}]}"#],
                ":2:",
                "`messages` needs the chat template",
            ),
            (&["", ""], "", "no prompts (the file is empty)"),
        ];
        for (i, (lines, at, expected)) in cases.into_iter().enumerate() {
            let config = run_with(&format!("jsonl{i}"), lines);
            assert_mentions(
                &train_error(&config),
                &[&format!("{}{at}", prompts(&config)), expected],
            );
        }
        // The dataset objective needs an answer on every line.
        let config = TrainConfig {
            objective: Objective::Bd3lm,
            ..run_with(
                "no-answer",
                &[r#"{"prompt": "t10", "answer": "t11"}"#, r#"{"prompt": "t12"}"#],
            )
        };
        assert_mentions(
            &train_error(&config),
            &[&format!("{}:2:", prompts(&config)), "no `answer`"],
        );
    }

    fn words(n: usize) -> String {
        (0..n).map(|i| format!("t{}", 10 + i % 80)).collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn prompts_longer_than_the_context_are_rejected_before_training_and_decoding() {
        // The tiny teacher's context is 256 positions; rollouts add up to 10 tokens.
        let long = format!(r#"{{"prompt": "{}"}}"#, words(250));
        let config = run_with("too-long", &[r#"{"prompt": "t10"}"#, &long]);
        assert_mentions(
            &train_error(&config),
            &[
                &format!("{}:2:", prompts(&config)),
                "250 tokens",
                "rollout_len_max",
                "context of 256",
            ],
        );
        let long_answer = format!(r#"{{"prompt": "t10", "answer": "{}"}}"#, words(300));
        let config =
            TrainConfig { objective: Objective::Bd3lm, ..run_with("long-answer", &[&long_answer]) };
        assert_mentions(
            &train_error(&config),
            &[&format!("{}:1:", prompts(&config)), "its answer", "context of 256"],
        );

        let model = load_model::<TestBackend>(
            &tiny_model_dir("tiny-llama", "decode-long"),
            &Default::default(),
        )
        .unwrap()
        .into_diffusion(96, 4, false);
        let err = generate(
            &model,
            &[vec![5; 3], vec![5; 250]],
            &DecodeConfig::diffusion(4, 16, CommitRule::Static),
            |_| {},
        )
        .err()
        .unwrap();
        assert_eq!(err, DecodeError::TooLong { row: 1, prompt: 250, new: 16, context: 256 });
        assert_mentions(
            &err.to_string(),
            &["prompt 1 has 250 tokens", "max_new_tokens = 16", "context of 256"],
        );
    }

    #[test]
    fn block_sizes_of_zero_or_beyond_the_context_are_rejected() {
        let config = TrainConfig { block_size: 0, ..run_with("block0", &[r#"{"prompt": "t10"}"#]) };
        assert_mentions(&train_error(&config), &["block_size", "at least 1"]);
        let config =
            TrainConfig { block_size: 512, ..run_with("block-big", &[r#"{"prompt": "t10"}"#]) };
        assert_mentions(&train_error(&config), &["block_size 512", "context of 256"]);

        let model = load_model::<TestBackend>(
            &tiny_model_dir("tiny-llama", "decode-block"),
            &Default::default(),
        )
        .unwrap()
        .into_diffusion(96, 4, false);
        let decode = |block| {
            generate(
                &model,
                &[vec![5; 3]],
                &DecodeConfig::diffusion(block, 8, CommitRule::Static),
                |_| {},
            )
            .err()
            .map(|e| e.to_string())
        };
        assert_mentions(&decode(0).unwrap(), &["block size must be at least 1"]);
        assert_mentions(&decode(300).unwrap(), &["block size 300", "context of 256"]);
    }

    #[test]
    fn thresholds_outside_zero_to_one_are_rejected() {
        for threshold in [0.0, -0.5, 1.5, f32::NAN] {
            let config =
                TrainConfig { threshold, ..run_with("threshold", &[r#"{"prompt": "t10"}"#]) };
            assert_mentions(&train_error(&config), &["threshold", "outside (0, 1]"]);
        }
        let model = load_model::<TestBackend>(
            &tiny_model_dir("tiny-llama", "decode-threshold"),
            &Default::default(),
        )
        .unwrap()
        .into_diffusion(96, 4, false);
        for rule in [
            CommitRule::Dynamic { threshold: 0.0 },
            CommitRule::Margin { threshold: 1.5 },
            CommitRule::Dynamic { threshold: f32::NAN },
        ] {
            let err = generate(&model, &[vec![5; 3]], &DecodeConfig::diffusion(4, 8, rule), |_| {})
                .err()
                .expect("bad threshold accepted")
                .to_string();
            assert_mentions(&err, &["threshold", "outside (0, 1]"]);
        }
        let err = generate(
            &model,
            &[vec![5; 3]],
            &DecodeConfig::diffusion(4, 8, CommitRule::EntropyBounded { budget: 0.0 }),
            |_| {},
        )
        .err()
        .unwrap()
        .to_string();
        assert_mentions(&err, &["entropy budget", "must be positive"]);
    }

    #[test]
    fn a_model_directory_with_only_pickle_weights_is_refused_without_reading_them() {
        let dir: PathBuf = tiny_model_dir("tiny-llama", "pickle");
        std::fs::rename(dir.join("model.safetensors"), dir.join("pytorch_model.bin")).unwrap();
        let err = load_model::<TestBackend>(Path::new(&dir), &Default::default())
            .expect_err("loaded pickle weights")
            .to_string();
        assert_mentions(&err, &["model.safetensors"]);
    }
}
