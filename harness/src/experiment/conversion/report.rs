//! The conversion report: `report.md` (settings, the before/after table, the goals, the
//! curve table, a few outputs), `report.json` (the fields the issue fixes, and the rest)
//! and the curves as `agreement.png` and `tokens_per_forward.png`.

use std::path::Path;

use opdlm_model::atomic::write_text_atomically;
use opdlm_training::ResponseSource;
use serde::{Deserialize, Serialize};

use super::baseline::Paired;
use super::figures::{Figures, AGREEMENT_PREFIX};
use super::Conversion;
use crate::agreement::agreeing;
use crate::experiment::proportions::wilson;
use crate::experiment::{consumed_before, ExperimentError};
use crate::plot::{plot_lines, Line};

/// The goal (and moonshot) of the conversion, at the rollout threshold.
const GOAL_TOKENS_PER_FORWARD: f64 = 1.5;
const GOAL_AGREEMENT_16: f64 = 0.8;
const GOAL_PPL_RATIO: f64 = 1.2;
const MOONSHOT_TOKENS_PER_FORWARD: f64 = 2.0;
const MOONSHOT_AGREEMENT_16: f64 = 0.9;

/// What an objective trains on and against, in words: the responses, the states taken
/// from them, and the loss (the report once said "rollouts" and "forward KL" for every
/// objective, the sft baseline's included).
fn training_data_and_loss(s: &Conversion) -> String {
    let objective = s.objective;
    let responses = match objective.response_source() {
        ResponseSource::StudentRollout => {
            format!("the student's rollouts at γ {} (temperature 1)", s.threshold)
        }
        ResponseSource::TeacherGeneration => "the teacher's generations (temperature 1)".into(),
        ResponseSource::Dataset => "the prompt file's answers".into(),
    };
    let states = if objective.on_policy_states() {
        "the states the sampler visited"
    } else {
        "randomly masked states"
    };
    let loss = if objective.hard_labels() {
        "the BD3LM loss (hard labels, 1/t weight)".to_string()
    } else {
        let targets = s
            .top_k_logits
            .map_or("the full vocabulary".into(), |k| format!("the teacher's top {k}"));
        format!("forward KL on {targets}")
    };
    format!("{responses}, {states}, {loss}")
}

/// One checkpoint on the curves (dynamic decoding at the rollout threshold).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CurvePoint {
    /// Training steps done (0: the unconverted model, shifted logits).
    pub step: usize,
    /// Prompt + response tokens of every training example so far.
    pub training_tokens: f64,
    /// Response tokens of every training example so far.
    pub response_tokens: f64,
    /// The checkpoint's figures on the curve prompts.
    pub figures: Figures,
}

impl CurvePoint {
    /// The point of the checkpoint after `step` steps, its token counts read from `log`.
    pub fn new(step: usize, log: &[serde_json::Value], figures: Figures) -> Self {
        Self {
            step,
            training_tokens: consumed_before(log, step, "tokens_total"),
            response_tokens: consumed_before(log, step, "response_tokens_total"),
            figures,
        }
    }
}

/// Everything the report shows.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The commit whose code produced every run and evaluation.
    pub commit: String,
    /// The experiment's settings.
    pub settings: Conversion,
    /// Prompt + response tokens the student trained on.
    pub training_tokens: f64,
    /// Response tokens the student trained on.
    pub response_tokens: f64,
    /// Seconds of the training steps (rollouts, teacher, student), from the metrics log.
    pub training_seconds: f64,
    /// The teacher's greedy AR row.
    pub teacher: Figures,
    /// The unconverted model decoded by the block sampler, per mode.
    pub before: Vec<(String, Figures)>,
    /// The converted student, per mode.
    pub student: Vec<(String, Figures)>,
    /// The curve points, the unconverted model first.
    pub curve: Vec<CurvePoint>,
    /// The student against another run's (`--baseline`), prompt by prompt.
    pub baseline: Option<Paired>,
    /// The first test prompts (user messages), for the samples section.
    pub sample_prompts: Vec<String>,
    /// Wall time of this invocation (reused work excluded).
    pub seconds: f64,
}

impl Report {
    /// Writes report.md, report.json and the two plots into `out`; returns the Markdown.
    pub fn write(&self, out: &Path) -> Result<String, ExperimentError> {
        let markdown = self.markdown();
        let json = serde_json::to_string_pretty(&self.json()).expect("report serialises");
        for (name, text) in [("report.md", &markdown), ("report.json", &json)] {
            let path = out.join(name);
            write_text_atomically(&path, text).map_err(|e| ExperimentError::io(&path, e))?;
        }
        self.plot(out).map_err(|e| ExperimentError::io(out, e))?;
        Ok(markdown)
    }

    /// The figures of the student at the rollout threshold (the goal's mode).
    fn at_threshold(&self) -> Option<&Figures> {
        let key = format!("dynamic_{}", self.settings.threshold);
        self.student.iter().find(|(k, _)| *k == key).map(|(_, f)| f)
    }

    fn markdown(&self) -> String {
        let s = &self.settings;
        let mut md = format!(
            "# Converting {} into a block-diffusion model ({})\n\nCommit `{}`. Objective {}, block {}: {}; {} steps of {} prompts, lr {:e} (cosine to a tenth), rollout length ramped {} → {} tokens. Trained on **{} tokens** ({} of them response tokens) in {:.1} min of training steps; this invocation took {:.1} min.\n\nTest prompts: {} held-out chat prompts (`prompts/test.jsonl`, {} of them arithmetic with a checkable answer), decoded at batch {} with at most {} new tokens; tok/s at batch 1 on the first {}. Agreement: the output equals the teacher's greedy response token for token, stop token included (whole response, and first {} tokens with a 95 % Wilson interval). Gen. PPL: the outputs' perplexity under the teacher.\n\n",
            s.teacher.display(),
            s.objective.name().to_uppercase(),
            self.commit,
            s.objective.name(),
            s.block_size,
            training_data_and_loss(s),
            s.steps,
            s.batch_size,
            s.lr,
            s.train_config().rollout_len_min,
            s.max_tokens,
            self.training_tokens,
            self.response_tokens,
            self.training_seconds / 60.0,
            self.seconds / 60.0,
            s.test_prompts,
            self.teacher.graded,
            s.eval_batch,
            s.max_tokens,
            s.batch1_prompts,
            AGREEMENT_PREFIX,
        );
        md += "| model | decoding | agreement | first 16 (95 % interval) | accuracy | gen. PPL | tokens/step | tokens/forward | tok/s batch 1 | tok/s batch | tokens/response |\n|---|---|---|---|---|---|---|---|---|---|---|\n";
        md += &row("teacher", "ar", &self.teacher);
        for (model, rows) in [("before (unconverted)", &self.before), ("student", &self.student)] {
            for (mode, figures) in rows {
                md += &row(model, mode, figures);
            }
        }
        md += &self.goals();
        if let Some(paired) = &self.baseline {
            md += &paired.markdown(s.objective);
        }
        md += &self.curve_table();
        md += &self.samples();
        md
    }

    fn goals(&self) -> String {
        let Some(f) = self.at_threshold() else {
            return String::new();
        };
        let ppl_ratio = f.gen_ppl / self.teacher.gen_ppl;
        let verdict = |met: bool| if met { "**met**" } else { "not met" };
        let goal = f.tokens_per_forward >= GOAL_TOKENS_PER_FORWARD
            && f.agreement_16 >= GOAL_AGREEMENT_16
            && ppl_ratio <= GOAL_PPL_RATIO;
        let moonshot = f.tokens_per_forward >= MOONSHOT_TOKENS_PER_FORWARD
            && f.agreement_16 >= MOONSHOT_AGREEMENT_16;
        format!(
            "\nAt γ {}: {:.2} tokens/forward, {:.1} % first-16 agreement, gen. PPL {:.2}× the teacher's.\n- Goal (≥ {GOAL_TOKENS_PER_FORWARD} tokens/forward, ≥ {:.0} % first-16 agreement, gen. PPL ≤ {GOAL_PPL_RATIO}× the teacher's): {}\n- Moonshot (≥ {MOONSHOT_TOKENS_PER_FORWARD} tokens/forward, ≥ {:.0} % first-16 agreement): {}\n",
            self.settings.threshold,
            f.tokens_per_forward,
            100.0 * f.agreement_16,
            ppl_ratio,
            100.0 * GOAL_AGREEMENT_16,
            verdict(goal),
            100.0 * MOONSHOT_AGREEMENT_16,
            verdict(moonshot),
        )
    }

    fn curve_table(&self) -> String {
        let mut md = format!(
            "\n## Curves (dynamic γ {}, {} validation prompts)\n\nEvery checkpoint decoded on `prompts/validation.jsonl`, held out from training and disjoint from the test prompts: a budget chosen from these curves has not seen the test prompts.\n\n![agreement](agreement.png)\n![tokens per forward](tokens_per_forward.png)\n\n| step | training tokens | response tokens | agreement | first 16 | tokens/forward | gen. PPL |\n|---|---|---|---|---|---|---|\n",
            self.settings.threshold, self.settings.curve_prompts
        );
        for p in &self.curve {
            let f = &p.figures;
            md += &format!(
                "| {} | {:.0} | {:.0} | {:.1} % | {:.1} % | {:.2} | {:.2} |\n",
                p.step,
                p.training_tokens,
                p.response_tokens,
                100.0 * f.agreement,
                100.0 * f.agreement_16,
                f.tokens_per_forward,
                f.gen_ppl
            );
        }
        md
    }

    fn samples(&self) -> String {
        let mut md = String::from("\n## Samples (first test prompts)\n");
        let dynamic = self.at_threshold();
        for (i, prompt) in self.sample_prompts.iter().enumerate() {
            md += &format!("\n**{prompt}**\n\n");
            let mut show = |who: &str, figures: Option<&Figures>| {
                if let Some(text) = figures.and_then(|f| f.samples.get(i)) {
                    md += &format!("- {who}: `{}`\n", text.replace('\n', " ⏎ ").replace('`', "'"));
                }
            };
            show("teacher", Some(&self.teacher));
            show(&format!("student, dynamic γ {}", self.settings.threshold), dynamic);
        }
        md
    }

    /// `report.json`: commit, token counts, the teacher's and every mode's figures, the
    /// curve and the settings.
    fn json(&self) -> serde_json::Value {
        let modes = |rows: &[(String, Figures)]| -> serde_json::Map<String, serde_json::Value> {
            rows.iter()
                .map(|(k, f)| (k.clone(), serde_json::to_value(f).expect("figures serialise")))
                .collect()
        };
        serde_json::json!({
            "commit": self.commit,
            "training_tokens": self.training_tokens,
            "response_tokens": self.response_tokens,
            "training_seconds": self.training_seconds,
            "seconds": self.seconds,
            "teacher": self.teacher,
            "before": modes(&self.before),
            "student": modes(&self.student),
            "curve": self.curve,
            "baseline": self.baseline,
            "settings": self.settings,
        })
    }

    fn plot(&self, out: &Path) -> Result<(), Box<dyn std::error::Error>> {
        let series = |name: &str, value: fn(&Figures) -> f64| Line {
            name: name.into(),
            points: self.curve.iter().map(|p| (p.training_tokens, value(&p.figures))).collect(),
            dashed: false,
        };
        let level = |name: &str, y: f64| Line {
            name: name.into(),
            points: vec![(0.0, y), (self.training_tokens.max(1.0), y)],
            dashed: true,
        };
        let caption = format!(
            "agreement with the teacher's greedy responses (dynamic γ {})",
            self.settings.threshold
        );
        let agreement = [
            series("whole response", |f| f.agreement),
            series("first 16 tokens", |f| f.agreement_16),
            level("goal: 80 % of the first 16", GOAL_AGREEMENT_16),
        ];
        plot_lines(&agreement, &caption, "agreement", 1.0, &out.join("agreement.png"))?;
        let tokens = [
            series("student", |f| f.tokens_per_forward),
            level("goal: 1.5", GOAL_TOKENS_PER_FORWARD),
        ];
        let top = self.curve.iter().map(|p| p.figures.tokens_per_forward).fold(2.5, f64::max);
        let caption = format!("tokens per forward (dynamic γ {})", self.settings.threshold);
        plot_lines(&tokens, &caption, "tokens/forward", top, &out.join("tokens_per_forward.png"))?;
        Ok(())
    }
}

fn row(model: &str, mode: &str, f: &Figures) -> String {
    let speed = |v: Option<f64>| v.map_or("–".into(), |v| format!("{v:.1}"));
    let (low, high) = wilson(agreeing(&f.agrees_16), f.agrees_16.len());
    format!(
        "| {model} | {mode} | {:.1} % | {:.1} % ({:.1}–{:.1}) | {:.1} % ({} prompts) | {:.2} | {:.2} | {:.2} | {} | {:.1} | {:.1} |\n",
        100.0 * f.agreement,
        100.0 * f.agreement_16,
        100.0 * low,
        100.0 * high,
        100.0 * f.accuracy,
        f.graded,
        f.gen_ppl,
        f.tokens_per_step,
        f.tokens_per_forward,
        speed(f.tok_s_batch1),
        f.tok_s_eval_batch,
        f.mean_tokens,
    )
}

#[cfg(test)]
mod tests {
    use opdlm_training::Objective;

    use super::*;

    #[test]
    fn the_settings_sentence_names_each_objectives_responses_states_and_loss() {
        let opdlm = training_data_and_loss(&Conversion::default());
        assert_eq!(
            opdlm,
            "the student's rollouts at γ 0.9 (temperature 1), the states the sampler visited, \
             forward KL on the teacher's top 16"
        );
        let sft = Conversion { objective: Objective::Sft, ..Conversion::default() };
        assert_eq!(
            training_data_and_loss(&sft),
            "the teacher's generations (temperature 1), randomly masked states, \
             the BD3LM loss (hard labels, 1/t weight)"
        );
        let full = Conversion { top_k_logits: None, ..Conversion::default() };
        assert!(training_data_and_loss(&full).ends_with("forward KL on the full vocabulary"));
    }
}
