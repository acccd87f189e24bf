//! The data-efficiency report: the learning-rate sweep, accuracy curves with 95 %
//! intervals over seeds, tokens to reach fractions of the teacher with ratios to bd3lm,
//! the paper's Table 4 and Table 11 analogues, and which comparisons survive their
//! intervals. Written as `report.md`, `report.json` and `accuracy.png`.

use std::path::Path;

use opdlm_model::atomic::write_text_atomically;
use serde::Serialize;

use super::{DataEfficiency, Run};
use crate::experiment::stats::Interval;
use crate::experiment::ExperimentError;
use crate::plot::{plot_accuracy_bands, Band};

/// Fractions of the teacher's test accuracy whose token cost the report gives.
pub const LEVELS: [f64; 3] = [0.5, 0.8, 0.9];

/// Everything an experiment measured, from one commit.
#[derive(Debug, Clone)]
pub struct Report {
    /// The commit whose code produced every run.
    pub commit: String,
    /// The experiment's settings.
    pub settings: DataEfficiency,
    /// Teacher (greedy AR) accuracy on the test problems.
    pub teacher_accuracy: f64,
    /// Teacher accuracy on the validation problems.
    pub teacher_validation_accuracy: f64,
    /// The sweep: one seed per (objective, learning rate), last checkpoint on validation.
    pub sweep: Vec<Run>,
    /// The final runs: every seed at each objective's chosen rate, every checkpoint on test.
    pub runs: Vec<Run>,
    /// Wall time of this invocation (runs reused from an earlier one cost nothing here).
    pub seconds: f64,
}

/// One objective's final runs, summarised over seeds.
struct Summary<'a> {
    objective: &'a str,
    lr: f64,
    runs: Vec<&'a Run>,
}

impl<'a> Summary<'a> {
    /// Per seed, `value` of the checkpoint at `index` (runs share their checkpoints).
    fn at(&self, index: usize, value: impl Fn(&super::Point) -> f64) -> Interval {
        let values: Vec<f64> = self.runs.iter().map(|r| value(&r.points[index])).collect();
        Interval::of(&values)
    }

    fn last(&self) -> usize {
        self.runs[0].points.len() - 1
    }

    /// Per seed, the response and total tokens before the first checkpoint whose static
    /// accuracy reaches `target` (`None` for a seed that never does).
    fn tokens_to_reach(&self, target: f64) -> Vec<(u64, Option<(f64, f64)>)> {
        self.runs
            .iter()
            .map(|run| {
                let reached = run.points.iter().find(|p| p.accuracy_static >= target);
                (run.seed, reached.map(|p| (p.response_tokens, p.total_tokens)))
            })
            .collect()
    }

    /// Per seed, dynamic minus static accuracy at the last checkpoint.
    fn dynamic_drop(&self) -> Interval {
        let last = self.last();
        let drops: Vec<f64> = self
            .runs
            .iter()
            .map(|r| r.points[last].accuracy_dynamic - r.points[last].accuracy_static)
            .collect();
        Interval::of(&drops)
    }

    /// Per seed (paired by seed with `other`), `value(self) − value(other)` at the last
    /// checkpoint.
    fn paired_difference(&self, other: &Summary, value: impl Fn(&super::Point) -> f64) -> Interval {
        let diffs: Vec<f64> = self
            .runs
            .iter()
            .filter_map(|run| {
                let theirs = other.runs.iter().find(|o| o.seed == run.seed)?;
                Some(value(run.points.last()?) - value(theirs.points.last()?))
            })
            .collect();
        Interval::of(&diffs)
    }
}

impl Report {
    /// Writes report.md, report.json and accuracy.png under `out`; returns the Markdown
    /// body (without the header).
    pub fn write(&self, out: &Path) -> Result<String, ExperimentError> {
        let io = |path: &Path, e: &dyn std::fmt::Display| ExperimentError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        let summaries = self.summaries();
        let body = self.markdown(&summaries);
        let md = out.join("report.md");
        write_text_atomically(&md, &format!("{}{body}", self.header())).map_err(|e| io(&md, &e))?;
        let json = out.join("report.json");
        let text = serde_json::to_string_pretty(&self.json(&summaries)).expect("report serialises");
        write_text_atomically(&json, &text).map_err(|e| io(&json, &e))?;
        let bands: Vec<Band> = summaries
            .iter()
            .map(|s| Band {
                name: format!("{} (lr {:e})", s.objective, s.lr),
                points: (0..=s.last())
                    .map(|i| {
                        let accuracy = s.at(i, |p| p.accuracy_static);
                        let tokens = s.at(i, |p| p.response_tokens).mean;
                        (tokens, accuracy.mean, accuracy.low(), accuracy.high())
                    })
                    .collect(),
            })
            .collect();
        let png = out.join("accuracy.png");
        plot_accuracy_bands(&bands, self.teacher_accuracy, &png).map_err(|e| io(&png, &e))?;
        Ok(body)
    }

    fn summaries(&self) -> Vec<Summary<'_>> {
        self.settings
            .objectives
            .iter()
            .filter_map(|objective| {
                let runs: Vec<&Run> =
                    self.runs.iter().filter(|r| r.objective == objective.name()).collect();
                let lr = runs.first()?.lr;
                Some(Summary { objective: objective.name(), lr, runs })
            })
            .collect()
    }

    fn header(&self) -> String {
        let s = &self.settings;
        let seeds: Vec<String> = s.seeds.iter().map(u64::to_string).collect();
        let rates: Vec<String> = s.learning_rates.iter().map(|lr| format!("{lr:e}")).collect();
        format!(
            "# Data efficiency: OPDLM vs baselines on the built-in tasks\n\n\
             Commit: `{}` (every run below). Command: `cargo xtask {}`. Wall time of this invocation: {:.1} min.\n\n\
             Each objective converts the committed tiny teacher (block size 4, batch 32) for {} steps, a checkpoint every {} steps. \
             Learning rates {} were tried per objective with seed {}; the rate with the best static accuracy on {} validation problems \
             at the end of the budget was kept, then trained with seeds {}. A seed changes the prompt order and all sampling; \
             the prompt set and the teacher are the same for every run. Checkpoints are evaluated on {} test problems \
             (validation and test are disjoint halves of the held-out 10 % of the problem hash space; nobody trains on either). \
             Intervals are 95 % Student-t intervals over seeds; comparisons between objectives are paired by seed. \
             *Response tokens* count the generated tokens of every training example (the paper's accounting); \
             *total tokens* add the prompts.\n\n",
            self.commit,
            std::env::args().skip(1).collect::<Vec<_>>().join(" "),
            self.seconds / 60.0,
            s.steps,
            s.eval_every,
            rates.join(", "),
            s.seeds[0],
            s.validation_problems,
            seeds.join(", "),
            s.test_problems,
        )
    }

    fn markdown(&self, summaries: &[Summary]) -> String {
        let pct = |i: Interval| i.show(100.0, 1);
        let mut out = format!(
            "Teacher (greedy AR): **{:.1} %** on test, {:.1} % on validation.\n\n![accuracy vs response tokens](accuracy.png)\n\n",
            100.0 * self.teacher_accuracy,
            100.0 * self.teacher_validation_accuracy
        );
        out += "## Learning-rate sweep (validation, last checkpoint, seed ";
        out += &format!(
            "{})\n\n| objective | lr | static | dynamic | chosen |\n|---|---|---|---|---|\n",
            self.settings.seeds[0]
        );
        for run in &self.sweep {
            let p = run.points.last().expect("evaluated");
            let chosen = summaries.iter().any(|s| s.objective == run.objective && s.lr == run.lr);
            out += &format!(
                "| {} | {:e} | {:.1} % | {:.1} % | {} |\n",
                run.objective,
                run.lr,
                100.0 * p.accuracy_static,
                100.0 * p.accuracy_dynamic,
                if chosen { "✓" } else { "" }
            );
        }
        out += "\n## Table 4 analogue: accuracy at equal budget (last checkpoint, test)\n\n";
        out += "| objective | lr | static accuracy % | dynamic accuracy % | response tokens | total tokens |\n|---|---|---|---|---|---|\n";
        for s in summaries {
            let last = s.last();
            out += &format!(
                "| {} | {:e} | {} | {} | {:.0} | {:.0} |\n",
                s.objective,
                s.lr,
                pct(s.at(last, |p| p.accuracy_static)),
                pct(s.at(last, |p| p.accuracy_dynamic)),
                s.at(last, |p| p.response_tokens).mean,
                s.at(last, |p| p.total_tokens).mean
            );
        }
        out += &self.tokens_to_reach_table(summaries);
        out += &format!(
            "\n## Table 11 analogue: static vs dynamic (γ = {}) decoding (last checkpoint, test)\n\n",
            self.settings.threshold
        );
        out += "| objective | static % | dynamic % | dynamic − static (points) | dynamic tokens/step |\n|---|---|---|---|---|\n";
        for s in summaries {
            let last = s.last();
            out += &format!(
                "| {} | {} | {} | {} | {} |\n",
                s.objective,
                pct(s.at(last, |p| p.accuracy_static)),
                pct(s.at(last, |p| p.accuracy_dynamic)),
                pct(s.dynamic_drop()),
                s.at(last, |p| p.tokens_per_step_dynamic).show(1.0, 2)
            );
        }
        out += &self.comparisons(summaries);
        out += "\n## Every checkpoint (test)\n\n| objective | step | response tokens | total tokens | static % | dynamic % | dynamic tokens/step |\n|---|---|---|---|---|---|---|\n";
        for s in summaries {
            for i in 0..=s.last() {
                out += &format!(
                    "| {} | {} | {:.0} | {:.0} | {} | {} | {} |\n",
                    s.objective,
                    s.runs[0].points[i].step,
                    s.at(i, |p| p.response_tokens).mean,
                    s.at(i, |p| p.total_tokens).mean,
                    pct(s.at(i, |p| p.accuracy_static)),
                    pct(s.at(i, |p| p.accuracy_dynamic)),
                    s.at(i, |p| p.tokens_per_step_dynamic).show(1.0, 2)
                );
            }
        }
        out
    }
}

impl Report {
    /// Tokens to reach each level of the teacher's accuracy, and the ratio to bd3lm
    /// (geometric mean of per-seed ratios, interval in log space).
    fn tokens_to_reach_table(&self, summaries: &[Summary]) -> String {
        let baseline = summaries.iter().find(|s| s.objective == "bd3lm");
        let mut out = String::from("\n## Training tokens to reach a fraction of the teacher's test accuracy (static decoding)\n\n");
        out += "A seed reaches a level at its first checkpoint whose static accuracy is at least that fraction of the teacher's; tokens are counted before that checkpoint. The ratio to bd3lm pairs seeds that both reached the level.\n\n";
        out += "| objective | level | seeds reaching it | response tokens | total tokens | ratio to bd3lm (response tokens) |\n|---|---|---|---|---|---|\n";
        for s in summaries {
            for level in LEVELS {
                let reached = s.tokens_to_reach(level * self.teacher_accuracy);
                let hits: Vec<(u64, f64, f64)> =
                    reached.iter().filter_map(|&(seed, r)| r.map(|(a, b)| (seed, a, b))).collect();
                let response: Vec<f64> = hits.iter().map(|h| h.1).collect();
                let total: Vec<f64> = hits.iter().map(|h| h.2).collect();
                let ratio = baseline.map_or("no bd3lm runs".into(), |b| {
                    ratio_to(&hits, &b.tokens_to_reach(level * self.teacher_accuracy))
                });
                out += &format!(
                    "| {} | {:.0} % | {}/{} | {} | {} | {} |\n",
                    s.objective,
                    100.0 * level,
                    hits.len(),
                    reached.len(),
                    Interval::of(&response).show(1.0, 0),
                    Interval::of(&total).show(1.0, 0),
                    ratio
                );
            }
        }
        out
    }

    /// The paper's findings, checked: OPDLM against each baseline at equal budget (static
    /// accuracy) and under dynamic decoding (its drop), paired by seed.
    fn comparisons(&self, summaries: &[Summary]) -> String {
        let Some(opdlm) = summaries.iter().find(|s| s.objective == "opdlm") else {
            return String::new();
        };
        let verdict = |i: Interval| match i.side_of(0.0) {
            1 => "OPDLM higher, outside the interval",
            -1 => "OPDLM lower, outside the interval",
            _ => "the interval includes 0: no difference shown",
        };
        let mut out =
            String::from("\n## OPDLM against each baseline (paired by seed, last checkpoint)\n\n");
        out += "| baseline | Δ static accuracy (points) | verdict | Δ (dynamic − static) drop (points) | verdict |\n|---|---|---|---|---|\n";
        for other in summaries.iter().filter(|s| s.objective != "opdlm") {
            let accuracy = opdlm.paired_difference(other, |p| p.accuracy_static);
            let drop = opdlm.paired_difference(other, |p| p.accuracy_dynamic - p.accuracy_static);
            out += &format!(
                "| {} | {} | {} | {} | {} |\n",
                other.objective,
                accuracy.show(100.0, 1),
                verdict(accuracy),
                drop.show(100.0, 1),
                verdict(drop)
            );
        }
        out
    }

    /// `report.json`: the fields the issue fixes at the top level, then the sweep and the
    /// settings.
    fn json(&self, summaries: &[Summary]) -> serde_json::Value {
        #[derive(Serialize)]
        struct Chosen<'a> {
            objective: &'a str,
            lr: f64,
        }
        let chosen: Vec<Chosen> =
            summaries.iter().map(|s| Chosen { objective: s.objective, lr: s.lr }).collect();
        let s = &self.settings;
        serde_json::json!({
            "commit": self.commit,
            "runs": self.runs,
            "test_problems": s.test_problems,
            "validation_problems": s.validation_problems,
            "teacher_accuracy": self.teacher_accuracy,
            "teacher_validation_accuracy": self.teacher_validation_accuracy,
            "sweep": self.sweep,
            "chosen_lr": chosen,
            "steps": s.steps,
            "eval_every": s.eval_every,
            "seeds": s.seeds,
            "learning_rates": s.learning_rates,
            "threshold": s.threshold,
            "batch_size": crate::builtin::builtin_settings(Path::new("."), 0).batch_size,
            "seconds": self.seconds,
        })
    }
}

/// `hits` (seed, response tokens, total) over the baseline's per-seed results: the
/// geometric mean of the per-seed ratios with its interval, over seeds both reached.
fn ratio_to(hits: &[(u64, f64, f64)], baseline: &[(u64, Option<(f64, f64)>)]) -> String {
    let logs: Vec<f64> = hits
        .iter()
        .filter_map(|&(seed, tokens, _)| {
            let (_, base) = baseline.iter().find(|(s, _)| *s == seed)?;
            base.map(|(b, _)| (tokens / b).ln())
        })
        .collect();
    let interval = Interval::of(&logs);
    let missed = baseline.iter().filter(|(_, b)| b.is_none()).count();
    match interval.n {
        0 if missed > 0 && !hits.is_empty() => {
            format!("bd3lm did not reach it ({missed}/{} seeds)", baseline.len())
        }
        0 => "–".into(),
        1 => format!("{:.2}× (1 seed)", interval.mean.exp()),
        n => {
            let (mean, low, high) = interval.exp_ends();
            format!("{mean:.2}× [{low:.2}, {high:.2}] ({n} seeds)")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::data_efficiency::Point;
    use opdlm_training::Objective;

    /// A run whose checkpoint `i` has `100 (i + 1)` response tokens and these accuracies.
    fn run(objective: &str, seed: u64, accuracies: &[f64]) -> Run {
        let points = accuracies
            .iter()
            .enumerate()
            .map(|(i, &accuracy)| Point {
                step: 40 * (i + 1),
                total_tokens: 300.0 * (i + 1) as f64,
                response_tokens: 100.0 * (i + 1) as f64,
                accuracy_static: accuracy,
                accuracy_dynamic: accuracy - 0.1 * seed as f64,
                tokens_per_step_dynamic: 2.0,
            })
            .collect();
        Run { objective: objective.into(), seed, lr: 2e-3, points }
    }

    fn report() -> Report {
        let runs = (0..3)
            .flat_map(|seed| {
                [run("opdlm", seed, &[0.3, 0.7, 0.9]), run("bd3lm", seed, &[0.1, 0.4, 0.8])]
            })
            .collect();
        Report {
            commit: "abc".into(),
            settings: DataEfficiency {
                objectives: vec![Objective::Opdlm, Objective::Bd3lm],
                seeds: vec![0, 1, 2],
                learning_rates: vec![2e-3],
                steps: 120,
                eval_every: 40,
                test_problems: 500,
                validation_problems: 400,
                threshold: 0.9,
                out: "unused".into(),
                allow_uncommitted: false,
            },
            teacher_accuracy: 1.0,
            teacher_validation_accuracy: 1.0,
            sweep: vec![run("opdlm", 0, &[0.9]), run("bd3lm", 0, &[0.8])],
            runs,
            seconds: 60.0,
        }
    }

    #[test]
    fn levels_are_reached_at_the_first_checkpoint_and_ratios_pair_seeds() {
        let report = report();
        let markdown = report.markdown(&report.summaries());
        // opdlm reaches 50 % at its second checkpoint (200 response tokens), bd3lm at its
        // third (300): 0.67× in every seed.
        assert!(
            markdown.contains(
                "| opdlm | 50 % | 3/3 | 200 ± 0 | 600 ± 0 | 0.67× [0.67, 0.67] (3 seeds) |"
            ),
            "{markdown}"
        );
        assert!(markdown.contains("| bd3lm | 90 % | 0/3 | – | – | – |"), "{markdown}");
        assert!(
            markdown.contains(
                "| opdlm | 90 % | 3/3 | 300 ± 0 | 900 ± 0 | bd3lm did not reach it (3/3 seeds) |"
            ),
            "{markdown}"
        );
        // Static 90 % vs 80 % in every seed; drops of 0, 10, 20 points in both.
        assert!(
            markdown.contains("| bd3lm | 10.0 ± 0.0 | OPDLM higher, outside the interval | 0.0 ± 0.0 | the interval includes 0: no difference shown |"),
            "{markdown}"
        );
        assert!(
            markdown.contains("| opdlm | 90.0 ± 0.0 | 80.0 ± 24.8 | -10.0 ± 24.8 | 2.00 ± 0.00 |"),
            "{markdown}"
        );
    }

    #[test]
    fn the_json_has_the_fields_the_issue_fixes() {
        let report = report();
        let json = report.json(&report.summaries());
        assert_eq!(json["commit"], "abc");
        assert_eq!(json["test_problems"], 500);
        assert_eq!(json["validation_problems"], 400);
        assert_eq!(json["teacher_accuracy"], 1.0);
        let run = &json["runs"][0];
        assert_eq!((run["objective"].as_str(), run["seed"].as_u64()), (Some("opdlm"), Some(0)));
        assert_eq!(run["lr"], 2e-3);
        let point = &run["points"][1];
        for key in [
            "step",
            "total_tokens",
            "response_tokens",
            "accuracy_static",
            "accuracy_dynamic",
            "tokens_per_step_dynamic",
        ] {
            assert!(point[key].is_number(), "{key} missing in {point}");
        }
        assert_eq!(point["accuracy_static"], 0.7);
    }
}
