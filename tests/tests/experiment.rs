//! The data-efficiency experiment end to end at a tiny budget (two objectives, two learning
//! rates, two seeds, two steps), through `DataEfficiency::run`: the sweep picks each
//! objective's rate on validation, seed 0 of the final runs is the sweep's run at that rate,
//! report.json has the fields the issue fixes, and a second invocation reuses every run
//! and evaluation instead of training again.

use opdlm_harness::experiment::DataEfficiency;
use opdlm_tests::TestBackend;
use opdlm_training::Objective;

#[test]
fn a_tiny_experiment_sweeps_on_validation_reuses_its_runs_and_writes_the_report() {
    let out = std::env::temp_dir().join(format!("opdlm-experiment-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let experiment = DataEfficiency {
        objectives: vec![Objective::Opdlm, Objective::Bd3lm],
        seeds: vec![0, 1],
        learning_rates: vec![1e-3, 2e-3],
        steps: 2,
        eval_every: 1,
        test_problems: 12,
        validation_problems: 10,
        threshold: 0.9,
        out: out.clone(),
        allow_uncommitted: true,
    };
    experiment.run::<TestBackend>(&Default::default()).unwrap();
    let read = || -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap()
    };
    let report = read();
    // A commit id (or, outside a git checkout, a sentence saying so), marked as uncommitted
    // when the tree has changes.
    assert!(report["commit"].as_str().is_some_and(|c| !c.is_empty()), "{}", report["commit"]);
    assert_eq!(
        (report["test_problems"].as_u64(), report["validation_problems"].as_u64()),
        (Some(12), Some(10))
    );
    let teacher = report["teacher_accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&teacher));
    assert_eq!(report["sweep"].as_array().unwrap().len(), 4, "two rates per objective");
    let runs = report["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 4, "two seeds per objective");
    for run in runs {
        let chosen = report["chosen_lr"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["objective"] == run["objective"])
            .unwrap();
        assert_eq!(run["lr"], chosen["lr"], "final runs use the sweep's rate");
        let points = run["points"].as_array().unwrap();
        assert_eq!(points.iter().map(|p| p["step"].as_u64().unwrap()).collect::<Vec<_>>(), [1, 2]);
        for point in points {
            for key in ["accuracy_static", "accuracy_dynamic"] {
                assert!((0.0..=1.0).contains(&point[key].as_f64().unwrap()), "{key}: {point}");
            }
            let (total, response) = (
                point["total_tokens"].as_f64().unwrap(),
                point["response_tokens"].as_f64().unwrap(),
            );
            assert!(response > 0.0 && total > response, "{point}");
        }
    }
    // Sweep runs at both rates, plus one more seed per objective at its chosen rate.
    let dirs = std::fs::read_dir(out.join("runs")).unwrap().count();
    assert_eq!(dirs, 2 * 2 + 2);
    for file in ["report.md", "accuracy.png", "commit.txt"] {
        assert!(out.join(file).exists(), "{file}");
    }
    // Everything is reused: no run trains again, the numbers are the same.
    let started = std::time::Instant::now();
    experiment.run::<TestBackend>(&Default::default()).unwrap();
    let again = read();
    assert_eq!(again["runs"], report["runs"]);
    assert_eq!(again["sweep"], report["sweep"]);
    println!("second invocation: {:.1} s", started.elapsed().as_secs_f64());
    let _ = std::fs::remove_dir_all(&out);
}
