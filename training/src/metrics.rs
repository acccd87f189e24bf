//! What the user sees during training: burn-train metrics fed from [`StepOutput`], and a
//! renderer that draws a progress bar with the latest numbers and appends one JSON line
//! per step to `metrics.jsonl` (the source of the plots and of the final summary).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use burn::train::metric::state::{FormatOptions, NumericMetricState};
use burn::train::metric::{
    Metric, MetricAttributes, MetricDefinition, MetricId, MetricMetadata, MetricName, Numeric,
    NumericAttributes, NumericEntry, SerializedEntry,
};
use burn::train::renderer::{
    EvaluationName, EvaluationProgress, MetricState, MetricsRenderer, MetricsRendererEvaluation,
    MetricsRendererTraining, ProgressType, TrainingProgress,
};
use std::sync::Arc;

use crate::progress::Progress;
use crate::step::{rollout_means, StepOutput};

/// One number of [`StepOutput`] as a burn-train metric.
#[derive(Clone)]
pub struct ScalarMetric {
    name: MetricName,
    pick: fn(&StepOutput) -> f64,
    state: NumericMetricState,
}

impl ScalarMetric {
    /// A metric named `name` reading its value from a step's output with `pick`.
    pub fn new(name: &str, pick: fn(&StepOutput) -> f64) -> Self {
        Self { name: Arc::new(name.to_string()), pick, state: NumericMetricState::default() }
    }
}

impl Metric for ScalarMetric {
    type Input = StepOutput;

    fn name(&self) -> MetricName {
        self.name.clone()
    }

    fn attributes(&self) -> MetricAttributes {
        NumericAttributes { unit: None, higher_is_better: false }.into()
    }

    fn update(&mut self, item: &StepOutput, _metadata: &MetricMetadata) -> SerializedEntry {
        let value = (self.pick)(item);
        self.state.update(
            value,
            item.batch_size.max(1),
            FormatOptions::new(self.name()).precision(4),
        )
    }

    fn clear(&mut self) {
        self.state.reset()
    }
}

impl Numeric for ScalarMetric {
    fn value(&self) -> NumericEntry {
        self.state.current_value()
    }

    fn running_value(&self) -> NumericEntry {
        self.state.running_value()
    }
}

/// The metrics every run logs, by name.
pub fn step_metrics() -> Vec<ScalarMetric> {
    vec![
        ScalarMetric::new("loss", |o| o.loss),
        ScalarMetric::new("tokens", |o| o.tokens as f64),
        ScalarMetric::new("response_tokens", |o| o.response_tokens as f64),
        ScalarMetric::new("rollout_len", |o| o.rollout_len),
        ScalarMetric::new("max_rollout_len", |o| o.max_rollout_len as f64),
        ScalarMetric::new("rollout_tokens_per_forward", |o| o.rollout_tokens_per_forward),
        ScalarMetric::new("rollout_forwards", |o| o.rollout_forwards as f64),
        ScalarMetric::new("batch_size", |o| o.batch_size as f64),
        ScalarMetric::new("rollout_seconds", |o| o.rollout_seconds),
        ScalarMetric::new("teacher_seconds", |o| o.teacher_seconds),
        ScalarMetric::new("student_seconds", |o| o.student_seconds),
        ScalarMetric::new("skipped", |o| o.skipped),
    ]
}

/// Metrics whose running sums are logged too, as `<name>_total`: runs compare by tokens
/// consumed (total and response-only, the paper's count), and skipped steps add up.
const ACCUMULATED: [&str; 3] = ["tokens", "response_tokens", "skipped"];

/// Progress bar + `metrics.jsonl`. The [`ACCUMULATED`] totals continue from the log when
/// a run resumes.
pub struct StepRenderer {
    names: HashMap<MetricId, String>,
    current: Vec<(String, f64)>,
    /// Devices of a data-parallel run: each reports its share of a step as its own item.
    shares: usize,
    /// The shares of the step in progress received so far.
    pending: Vec<Vec<(String, f64)>>,
    log: PathBuf,
    progress: Progress,
    /// Running sum of each [`ACCUMULATED`] metric.
    totals: HashMap<&'static str, f64>,
    step: usize,
}

impl StepRenderer {
    /// Continues `metrics.jsonl` in `dir` after `first_step` steps (lines past it, from
    /// an epoch that was interrupted before its checkpoint, are dropped).
    pub fn new(
        dir: &Path,
        first_step: usize,
        total_steps: usize,
        shares: usize,
    ) -> std::io::Result<Self> {
        let log = dir.join("metrics.jsonl");
        let kept: Vec<serde_json::Value> = read_log(&log)
            .into_iter()
            .filter(|v| v["step"].as_u64().is_some_and(|s| (s as usize) < first_step))
            .collect();
        let total =
            |key: &str| kept.last().and_then(|v| v[format!("{key}_total")].as_f64()).unwrap_or(0.0);
        let totals = ACCUMULATED.iter().map(|&key| (key, total(key))).collect();
        let mut file = std::fs::File::create(&log)?;
        for line in &kept {
            writeln!(file, "{line}")?;
        }
        let mut progress = Progress::new(total_steps, "training", "steps");
        progress.set_position(first_step);
        Ok(Self {
            names: HashMap::new(),
            current: vec![],
            shares: shares.max(1),
            pending: vec![],
            log,
            progress,
            totals,
            step: first_step,
        })
    }
}

/// One step's numbers from its shares' items (one item per device): counts and the
/// loss add up (each share's loss is its part of the global mean, see
/// `crate::batch_totals`), times and flags take the slowest or worst share, and the
/// rollout's means are re-formed from their sums. A single share is taken as it is.
fn merge_shares(shares: Vec<Vec<(String, f64)>>) -> Vec<(String, f64)> {
    if shares.len() == 1 {
        return shares.into_iter().next().unwrap_or_default();
    }
    let all = |name: &str| -> Vec<f64> {
        let pick = |item: &Vec<(String, f64)>| item.iter().find(|(n, _)| n == name).map(|e| e.1);
        shares.iter().filter_map(pick).collect()
    };
    let sum = |name: &str| all(name).iter().sum::<f64>();
    let rows = sum("batch_size");
    let generated: f64 =
        all("rollout_len").iter().zip(all("batch_size")).map(|(len, rows)| len * rows).sum();
    let (mean_len, per_forward) = rollout_means(generated, rows, sum("rollout_forwards"));
    let first = shares.first().cloned().unwrap_or_default();
    first
        .into_iter()
        .map(|(name, value)| {
            let merged = match name.as_str() {
                "loss" | "tokens" | "response_tokens" | "rollout_forwards" | "batch_size" => {
                    sum(&name)
                }
                "rollout_len" => mean_len,
                "rollout_tokens_per_forward" => per_forward,
                "skipped" | "max_rollout_len" => all(&name).into_iter().fold(value, f64::max),
                n if n.ends_with("_seconds") => all(&name).into_iter().fold(value, f64::max),
                _ => value,
            };
            (name, merged)
        })
        .collect()
}

/// Every JSON line of a metrics log (empty when the file does not exist).
pub fn read_log(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .map(|text| text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect())
        .unwrap_or_default()
}

impl MetricsRendererTraining for StepRenderer {
    fn update_train(&mut self, state: MetricState) {
        if let MetricState::Numeric(entry, value) = state {
            let name = self.names.get(&entry.metric_id).cloned().unwrap_or_default();
            self.current.push((name, value.current()));
        }
    }

    fn update_valid(&mut self, _state: MetricState) {}

    fn render_train(
        &mut self,
        _progress: TrainingProgress,
        _progress_indicators: Vec<ProgressType>,
    ) {
        self.pending.push(std::mem::take(&mut self.current));
        if self.pending.len() < self.shares {
            return;
        }
        let mut line = serde_json::Map::new();
        line.insert("step".into(), self.step.into());
        for (name, value) in merge_shares(std::mem::take(&mut self.pending)) {
            if let Some(total) = self.totals.get_mut(name.as_str()) {
                *total += value;
                line.insert(format!("{name}_total"), (*total).into());
            }
            line.insert(name.to_lowercase().replace(' ', "_"), value.into());
        }
        let get = |k: &str| line.get(k).and_then(|v| v.as_f64()).unwrap_or(f64::NAN);
        self.progress.set_message(format!(
            "loss {:.4} | rollout len {:.0} | {:.2} tok/fwd | {:.0} tokens",
            get("loss"),
            get("rollout_len"),
            get("rollout_tokens_per_forward"),
            self.totals["tokens"]
        ));
        self.progress.inc(1);
        if let Ok(mut file) = std::fs::OpenOptions::new().append(true).open(&self.log) {
            let _ = writeln!(file, "{}", serde_json::Value::Object(line));
        }
        self.step += 1;
    }

    fn render_valid(
        &mut self,
        _progress: TrainingProgress,
        _progress_indicators: Vec<ProgressType>,
    ) {
    }
}

impl MetricsRendererEvaluation for StepRenderer {
    fn update_test(&mut self, _name: EvaluationName, _state: MetricState) {}
    fn render_test(&mut self, _item: EvaluationProgress, _progress_indicators: Vec<ProgressType>) {}
}

impl MetricsRenderer for StepRenderer {
    fn manual_close(&mut self) {
        self.progress.finish();
    }

    fn register_metric(&mut self, definition: MetricDefinition) {
        self.names.insert(definition.metric_id, definition.name);
    }
}
