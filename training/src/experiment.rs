//! The paper's data-efficiency claim at small scale: accuracy of each objective's student
//! at increasing training-token budgets, the tokens each needs to reach a fraction of the
//! teacher's accuracy, and that as a ratio to `bd3lm` (off-policy block diffusion).

use serde::Serialize;

/// One evaluated checkpoint of one objective.
#[derive(Debug, Clone, Serialize)]
pub struct BudgetPoint {
    pub step: usize,
    pub tokens: f64,
    pub static_accuracy: f64,
    pub dynamic_accuracy: f64,
    /// Tokens per denoising step under dynamic decoding.
    pub dynamic_tokens_per_step: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ObjectiveCurve {
    pub objective: String,
    pub points: Vec<BudgetPoint>,
}

impl ObjectiveCurve {
    /// Training tokens of the first evaluated checkpoint whose static accuracy reaches
    /// `fraction` of `reference` (None: never within the budget).
    pub fn tokens_to_reach(&self, fraction: f64, reference: f64) -> Option<f64> {
        self.points.iter().find(|p| p.static_accuracy >= fraction * reference).map(|p| p.tokens)
    }
}

/// Fractions of the teacher's accuracy the table reports.
pub const FRACTIONS: [f64; 3] = [0.5, 0.8, 0.95];

/// The Markdown report: tokens-to-reach table with ratios to `bd3lm`, and the final
/// static vs dynamic accuracies (the paper's Table 11 point).
pub fn markdown_report(
    curves: &[ObjectiveCurve],
    teacher_accuracy: f64,
    dynamic_threshold: f32,
) -> String {
    let baseline = curves.iter().find(|c| c.objective == "bd3lm");
    let mut out = format!("Teacher accuracy (greedy AR): **{:.1}%**. A budget counts as reaching a level at the first evaluated checkpoint whose *static* accuracy is at least that fraction of the teacher's.\n\n", 100.0 * teacher_accuracy);
    out += "| objective |";
    for f in FRACTIONS {
        out += &format!(" tokens to {:.0}% | ratio to bd3lm |", 100.0 * f);
    }
    out += "\n|---|";
    out += &"---|---|".repeat(FRACTIONS.len());
    out += "\n";
    for curve in curves {
        out += &format!("| {} |", curve.objective);
        for f in FRACTIONS {
            let tokens = curve.tokens_to_reach(f, teacher_accuracy);
            let base = baseline.and_then(|b| b.tokens_to_reach(f, teacher_accuracy));
            let ratio = match (tokens, base) {
                (Some(t), Some(b)) => format!("{:.2}×", t / b),
                // bd3lm would need more than its whole budget, so the ratio is below
                // this objective's tokens over that budget.
                (Some(t), None) => match baseline.and_then(|b| b.points.last()) {
                    Some(last) => format!(
                        "< {:.2}× (bd3lm not reached in {:.0})",
                        t / last.tokens,
                        last.tokens
                    ),
                    None => "no bd3lm run".into(),
                },
                (None, _) => "–".into(),
            };
            out += &format!(
                " {} | {} |",
                tokens.map_or("not reached".into(), |t| format!("{t:.0}")),
                ratio
            );
        }
        out += "\n";
    }
    out += &format!("\nFinal checkpoint, static vs dynamic (γ = {dynamic_threshold}) decoding:\n\n| objective | training tokens | static accuracy | dynamic accuracy | Δ | dynamic tokens/step |\n|---|---|---|---|---|---|\n");
    for curve in curves {
        if let Some(p) = curve.points.last() {
            out += &format!(
                "| {} | {:.0} | {:.1}% | {:.1}% | {:+.1} | {:.2} |\n",
                curve.objective,
                p.tokens,
                100.0 * p.static_accuracy,
                100.0 * p.dynamic_accuracy,
                100.0 * (p.dynamic_accuracy - p.static_accuracy),
                p.dynamic_tokens_per_step
            );
        }
    }
    out += "\nAccuracy (static) at every evaluated budget:\n\n| objective | step | training tokens | static | dynamic | dynamic tokens/step |\n|---|---|---|---|---|---|\n";
    for curve in curves {
        for p in &curve.points {
            out += &format!(
                "| {} | {} | {:.0} | {:.1}% | {:.1}% | {:.2} |\n",
                curve.objective,
                p.step,
                p.tokens,
                100.0 * p.static_accuracy,
                100.0 * p.dynamic_accuracy,
                p.dynamic_tokens_per_step
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curve(name: &str, points: &[(f64, f64)]) -> ObjectiveCurve {
        ObjectiveCurve {
            objective: name.into(),
            points: points
                .iter()
                .enumerate()
                .map(|(i, &(tokens, acc))| BudgetPoint {
                    step: i,
                    tokens,
                    static_accuracy: acc,
                    dynamic_accuracy: acc,
                    dynamic_tokens_per_step: 1.0,
                })
                .collect(),
        }
    }

    #[test]
    fn tokens_to_reach_takes_the_first_checkpoint_at_the_level_and_ratios_divide_by_bd3lm() {
        let opdlm = curve("opdlm", &[(100.0, 0.3), (200.0, 0.7), (400.0, 0.9)]);
        let bd3lm = curve("bd3lm", &[(100.0, 0.1), (200.0, 0.4), (400.0, 0.6), (800.0, 0.8)]);
        assert_eq!(opdlm.tokens_to_reach(0.5, 0.8), Some(200.0)); // 0.7 ≥ 0.4
        assert_eq!(bd3lm.tokens_to_reach(0.5, 0.8), Some(200.0)); // 0.4 ≥ 0.4
        assert_eq!(opdlm.tokens_to_reach(0.95, 0.8), Some(400.0));
        assert_eq!(bd3lm.tokens_to_reach(0.95, 0.8), Some(800.0));
        assert_eq!(bd3lm.tokens_to_reach(1.2, 0.8), None);
        let report = markdown_report(&[opdlm.clone(), bd3lm], 0.8, 0.9);
        assert!(report.contains("| opdlm | 200 | 1.00× | 200 | 0.25× | 400 | 0.50× |"), "{report}");
        // A level bd3lm never reaches: a bound from its whole budget (800 tokens).
        let slow = curve("bd3lm", &[(100.0, 0.1), (800.0, 0.3)]);
        let report = markdown_report(&[opdlm, slow], 0.8, 0.9);
        assert!(
            report.contains("| opdlm | 200 | < 0.25× (bd3lm not reached in 800) |"),
            "{report}"
        );
    }
}
