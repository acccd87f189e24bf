//! The real-model conversion experiment end to end at a tiny budget, on a tiny Llama
//! fixture given a chat template (two steps, a checkpoint each): it trains on the chat
//! prompts' train split, exports a model that loads and decodes, evaluates teacher,
//! unconverted model and student on the test split, every checkpoint on the validation
//! split (the curves), writes report.json with the fields the issue fixes, and a second
//! invocation reuses the run and every evaluation. A second objective's run then serves
//! as `--baseline`: the report compares the two students prompt by prompt.

use std::path::Path;

use opdlm_harness::experiment::conversion::Conversion;
use opdlm_harness::tasks::Split;
use opdlm_model::load_pretrained;
use opdlm_tests::{tiny_model_dir, TestBackend};
use opdlm_training::Objective;

#[test]
fn a_two_step_conversion_exports_evaluates_and_reports() {
    let teacher = tiny_model_dir("tiny-llama", "conversion");
    let template = "{% for m in messages %}t5 {{ m['content'] }} t6 {% endfor %}";
    let config = serde_json::json!({ "eos_token": "t2", "chat_template": template });
    std::fs::write(teacher.join("tokenizer_config.json"), config.to_string()).unwrap();
    let out = teacher.with_extension("out");
    let _ = std::fs::remove_dir_all(&out);
    let conversion = Conversion {
        teacher,
        steps: 2,
        batch_size: 2,
        lr: 1e-3,
        max_tokens: 8,
        checkpoint_every: 1,
        train_prompts: 20,
        test_prompts: 6,
        curve_prompts: 8, // more than the test prompts: the curves are on validation prompts
        batch1_prompts: 2,
        eval_batch: 4,
        out: out.clone(),
        allow_uncommitted: true,
        ..Conversion::default()
    };
    let device = Default::default();
    conversion.run::<TestBackend>(&device).unwrap();

    let model = out.join("run").join("model");
    let student = load_pretrained::<TestBackend>(&model, &device).unwrap();
    assert!(student.model.config().diffusion.is_some(), "the export is a diffusion model");
    let read = |name: &str| std::fs::read_to_string(out.join(name)).unwrap();
    let report: serde_json::Value = serde_json::from_str(&read("report.json")).unwrap();
    assert!(report["commit"].as_str().is_some_and(|c| !c.is_empty()));
    assert!(report["training_tokens"].as_f64().unwrap() > 0.0);
    for key in ["accuracy", "gen_ppl"] {
        assert!(report["teacher"][key].as_f64().is_some(), "teacher.{key}");
    }
    let modes: Vec<&String> = report["student"].as_object().unwrap().keys().collect();
    assert_eq!(modes.len(), 4, "{modes:?}");
    for mode in ["static", "dynamic_0.9", "dynamic_0.7", "dynamic_0.5"] {
        let row = &report["student"][mode];
        for key in ["agreement", "agreement_16", "accuracy"] {
            let value = row[key].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&value), "{mode}.{key} = {value}");
        }
        assert!(row["agreement"].as_f64() <= row["agreement_16"].as_f64(), "{mode}");
        for key in ["gen_ppl", "tokens_per_forward", "tok_s_batch1"] {
            assert!(row[key].as_f64().is_some_and(|v| v > 0.0), "{mode}.{key}: {row}");
        }
    }
    assert_eq!(report["teacher"]["agreement"].as_f64(), Some(1.0), "the reference agrees");
    let steps: Vec<u64> =
        report["curve"].as_array().unwrap().iter().map(|p| p["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, [0, 1, 2], "the unconverted model, then every checkpoint");
    let prompts = |split: &str| -> Vec<String> {
        let lines = read(&format!("prompts/{split}.jsonl"));
        let parse = |line: &str| serde_json::from_str::<serde_json::Value>(line).unwrap();
        lines.lines().map(|l| parse(l)["prompt"].as_str().unwrap().to_string()).collect()
    };
    let (validation, test) = (prompts("validation"), prompts("test"));
    assert_eq!((validation.len(), test.len()), (8, 6));
    assert!(validation.iter().all(|p| Split::of(p) == Split::Validation && !test.contains(p)));
    for point in report["curve"].as_array().unwrap() {
        assert_eq!(point["figures"]["prompts"], 8, "every curve point on the validation prompts");
    }
    for png in ["agreement.png", "tokens_per_forward.png"] {
        assert!(std::fs::metadata(out.join(png)).unwrap().len() > 0, "{png}");
    }

    // Again: nothing is trained or evaluated a second time.
    let metrics = read("run/metrics.jsonl");
    let cached = read("eval/student.json");
    conversion.run::<TestBackend>(&device).unwrap();
    assert_eq!(read("run/metrics.jsonl"), metrics);
    assert_eq!(read("eval/student.json"), cached);
    let again: serde_json::Value = serde_json::from_str(&read("report.json")).unwrap();
    assert_eq!(again["student"], report["student"]);

    // The sft objective on the same prompts, then this run's report against it.
    let sft_out = out.with_extension("sft");
    let _ = std::fs::remove_dir_all(&sft_out);
    let sft = Conversion { objective: Objective::Sft, out: sft_out.clone(), ..conversion.clone() };
    sft.run::<TestBackend>(&device).unwrap();
    let compared = Conversion { baseline: Some(sft_out.clone()), ..conversion.clone() };
    compared.run::<TestBackend>(&device).unwrap();
    assert_eq!(read("eval/student.json"), cached, "the comparison re-evaluates nothing");
    let report: serde_json::Value = serde_json::from_str(&read("report.json")).unwrap();
    let theirs = report_json(&sft_out);
    assert_eq!(report["baseline"]["objective"], "sft");
    let paired = report["baseline"]["modes"].as_array().unwrap();
    assert_eq!(paired.len(), 4, "every student mode: {paired:?}");
    for row in paired {
        let mode = row["mode"].as_str().unwrap();
        for key in ["agreement", "agreement_16"] {
            let d = &row[key];
            let count = |name: &str| d[name].as_u64().unwrap() as usize;
            let agreeing = |report: &serde_json::Value| {
                let outcomes = report["student"][mode][key.replace("agreement", "agrees")].clone();
                outcomes.as_str().unwrap().matches('1').count()
            };
            assert_eq!(count("prompts"), 6, "{mode}.{key}");
            assert_eq!(count("both") + count("only_first"), agreeing(&report), "{mode}.{key}");
            assert_eq!(count("both") + count("only_second"), agreeing(&theirs), "{mode}.{key}");
            let [low, difference, high, p] =
                ["low", "difference", "high", "mcnemar_p"].map(|k| d[k].as_f64().unwrap());
            assert!(-1.0 <= low && low <= difference && difference <= high && high <= 1.0, "{d}");
            assert!(0.0 < p && p <= 1.0, "{d}");
        }
    }
    assert!(read("report.md").contains("## Against sft"), "{}", read("report.md"));

    // A baseline that decoded other test prompts is refused, and so is the run itself.
    let other = out.with_extension("other");
    let _ = std::fs::remove_dir_all(&other);
    std::fs::create_dir_all(other.join("prompts")).unwrap();
    std::fs::copy(sft_out.join("report.json"), other.join("report.json")).unwrap();
    std::fs::write(other.join("prompts").join("test.jsonl"), "{}\n").unwrap();
    let refused = Conversion { baseline: Some(other), ..conversion.clone() };
    let error = refused.run::<TestBackend>(&device).unwrap_err().to_string();
    assert!(error.contains("decoded other test prompts"), "{error}");
    let itself = Conversion { baseline: Some(out.clone()), ..conversion };
    let error = itself.run::<TestBackend>(&device).unwrap_err().to_string();
    assert!(error.contains("this run's own --out"), "{error}");
}

fn report_json(out: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap()
}
