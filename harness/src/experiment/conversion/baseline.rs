//! Another conversion run (another objective at the same budget, such as the sft
//! baseline) compared with this one prompt by prompt. Both decoded the same test prompts,
//! so under each decoding mode the two agreements form pairs, and their difference gets a
//! paired interval and test instead of two separate intervals that ignore the pairing.

use std::path::{Path, PathBuf};

use opdlm_training::Objective;
use serde::Serialize;

use super::figures::{Figures, AGREEMENT_PREFIX};
use crate::experiment::proportions::PairedDifference;
use crate::experiment::ExperimentError;

/// The other run, as its `report.json` gives it.
#[derive(Debug, Clone)]
pub struct Baseline {
    /// Its output directory.
    pub dir: PathBuf,
    /// Its training objective.
    pub objective: Objective,
    /// Its student's figures per decoding mode, per-prompt outcomes included.
    pub student: Vec<(String, Figures)>,
}

/// This run against the baseline, under every decoding mode both evaluated.
#[derive(Debug, Clone, Serialize)]
pub struct Paired {
    /// The baseline's output directory.
    pub dir: PathBuf,
    /// The baseline's objective.
    pub objective: Objective,
    /// One comparison per decoding mode.
    pub modes: Vec<PairedMode>,
}

/// Both agreements of this run's student against the baseline's under one mode (this
/// run first).
#[derive(Debug, Clone, Serialize)]
pub struct PairedMode {
    /// The decoding mode (`static`, `dynamic_0.9`, ...).
    pub mode: String,
    /// Whole-response agreement.
    pub agreement: PairedDifference,
    /// First-16-token agreement.
    pub agreement_16: PairedDifference,
}

impl Baseline {
    /// Reads the finished run in `dir`. It must come from `commit` (a report compares runs
    /// of one commit) and have decoded the same test prompts as the run in `out`.
    pub fn read(dir: &Path, commit: &str, out: &Path) -> Result<Self, ExperimentError> {
        let path = dir.join("report.json");
        let text = std::fs::read_to_string(&path).map_err(|e| {
            ExperimentError::io(&path, format!("{e} (the baseline writes it when its run ends)"))
        })?;
        let report: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| ExperimentError::io(&path, e))?;
        let theirs = report["commit"].as_str().unwrap_or("no commit");
        if theirs != commit {
            return Err(ExperimentError::Settings(format!(
                "the baseline in {} comes from commit {theirs}, this run from {commit}: a report compares runs of one commit",
                dir.display()
            )));
        }
        let test_prompts = |run: &Path| {
            let prompts = run.join("prompts").join("test.jsonl");
            std::fs::read(&prompts).map_err(|e| ExperimentError::io(&prompts, e))
        };
        if test_prompts(dir)? != test_prompts(out)? {
            return Err(ExperimentError::Settings(format!(
                "the baseline in {} decoded other test prompts than this run (its prompts/test.jsonl differs)",
                dir.display()
            )));
        }
        let field = |name: &str, error: &dyn std::fmt::Display| {
            ExperimentError::io(&path, format!("{name}: {error}"))
        };
        let objective = serde_json::from_value(report["settings"]["objective"].clone())
            .map_err(|e| field("settings.objective", &e))?;
        let modes = report["student"].as_object().ok_or_else(|| field("student", &"missing"))?;
        let student = modes
            .iter()
            .map(|(mode, figures)| {
                let figures = serde_json::from_value(figures.clone()).map_err(|e| {
                    let why = format!("{e} (per-prompt outcomes are kept since this field exists: re-run the baseline at this commit)");
                    field(&format!("student.{mode}"), &why)
                })?;
                Ok((mode.clone(), figures))
            })
            .collect::<Result<_, ExperimentError>>()?;
        Ok(Self { dir: dir.to_path_buf(), objective, student })
    }

    /// `student` (this run's figures per mode) against the baseline's, under every mode
    /// both decoded.
    pub fn compare(&self, student: &[(String, Figures)]) -> Paired {
        let modes = student
            .iter()
            .filter_map(|(mode, ours)| {
                let (_, theirs) = self.student.iter().find(|(m, _)| m == mode)?;
                Some(PairedMode {
                    mode: mode.clone(),
                    agreement: PairedDifference::of(&ours.agrees, &theirs.agrees),
                    agreement_16: PairedDifference::of(&ours.agrees_16, &theirs.agrees_16),
                })
            })
            .collect();
        Paired { dir: self.dir.clone(), objective: self.objective, modes }
    }
}

impl Paired {
    /// The report's section: a row per mode and agreement, `ours` naming this run.
    pub fn markdown(&self, ours: Objective) -> String {
        let (ours, theirs) = (ours.name(), self.objective.name());
        let prompts = self.modes.first().map_or(0, |m| m.agreement.prompts);
        let mut md = format!(
            "\n## Against {theirs} ({}), prompt by prompt\n\nBoth runs decoded the same {prompts} test prompts. Difference: {ours}'s agreement minus {theirs}'s, in points, with Newcombe's 95 % interval for paired outcomes; McNemar p: the exact two-sided test on the prompts where only one of the two agrees.\n\n| decoding | agreement | {ours} | {theirs} | only {ours} | only {theirs} | difference (95 % interval) | McNemar p |\n|---|---|---|---|---|---|---|---|\n",
            self.dir.display()
        );
        for m in &self.modes {
            let first_n = format!("first {AGREEMENT_PREFIX}");
            for (name, d) in [("whole", &m.agreement), (first_n.as_str(), &m.agreement_16)] {
                let (ours_rate, theirs_rate) = d.rates();
                md += &format!(
                    "| {} | {name} | {:.1} % | {:.1} % | {} | {} | {:+.1} ({:+.1} to {:+.1}) | {:.3} |\n",
                    m.mode,
                    100.0 * ours_rate,
                    100.0 * theirs_rate,
                    d.only_first,
                    d.only_second,
                    100.0 * d.difference,
                    100.0 * d.low,
                    100.0 * d.high,
                    d.mcnemar_p,
                );
            }
        }
        md
    }
}
