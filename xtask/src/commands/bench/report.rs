//! The bench's report: one Markdown table per model (our backends and PyTorch side by
//! side, ratios ours ÷ PyTorch) plus the targets of issue 6, and the same as JSON.

use super::plan::{Measured, Plan, Speed, TrainTiming};

/// Reads one figure off a measurement (`None`: not measured).
type Figure = dyn Fn(&Measured) -> Option<f64>;

/// Everything measured on one model.
pub struct ModelReport {
    pub plan: Plan,
    pub ours: Vec<Measured>,
    /// PyTorch's figures, or why there are none.
    pub baseline: Result<Measured, String>,
    /// llama.cpp's figures on the same GGUF, or why there are none.
    pub llama_cpp: Result<Measured, String>,
}

/// A column's name: backend and weights (`ndarray q8`).
fn label(m: &Measured) -> String {
    match m.weights.as_str() {
        "" => m.backend.clone(),
        weights => format!("{} {weights}", m.backend),
    }
}

/// Within 1.3× of PyTorch's time = at least 1 / 1.3 of its speed.
const FORWARD_TARGET: f64 = 1.0 / 1.3;
/// Dynamic block decoding at least 2× AR tokens/s.
const DYNAMIC_TARGET: f64 = 2.0;

/// Whether a larger value of a figure is better (speeds) or worse (times, memory).
#[derive(Clone, Copy)]
enum Better {
    Higher,
    Lower,
    Neither,
}

struct Row {
    label: String,
    better: Better,
    decimals: usize,
    value: Box<Figure>,
}

fn row(
    label: impl Into<String>,
    better: Better,
    decimals: usize,
    value: impl Fn(&Measured) -> Option<f64> + 'static,
) -> Row {
    Row { label: label.into(), better, decimals, value: Box::new(value) }
}

fn speed(m: &Measured, phase: &str) -> Option<Speed> {
    match phase {
        "prefill" => m.prefill.clone(),
        "ar" => m.ar.clone(),
        "static" => m.static_.clone(),
        _ => m.dynamic.clone(),
    }
}

fn train(m: &Measured, f: impl Fn(&TrainTiming) -> f64) -> Option<f64> {
    m.train.as_ref().map(f)
}

fn rows(plan: &Plan) -> Vec<Row> {
    let (b, g) = (plan.block_size, plan.threshold);
    let mut rows = vec![
        row("load s", Better::Lower, 2, |m| Some(m.load_seconds)),
        row(format!("prefill tok/s ({} tokens)", plan.prefill.len()), Better::Higher, 1, |m| {
            speed(m, "prefill").map(|s| s.tokens_per_second)
        }),
        row(format!("AR decode tok/s ({} tokens)", plan.max_new_tokens), Better::Higher, 2, |m| {
            speed(m, "ar").map(|s| s.tokens_per_second)
        }),
        row(format!("static B={b} tok/s"), Better::Higher, 2, |m| {
            speed(m, "static").map(|s| s.tokens_per_second)
        }),
        row(format!("dynamic γ={g} B={b} tok/s"), Better::Higher, 2, |m| {
            speed(m, "dynamic").map(|s| s.tokens_per_second)
        }),
        row("static tokens/forward", Better::Neither, 2, |m| {
            speed(m, "static").map(|s| s.tokens_per_forward)
        }),
        row("dynamic tokens/forward", Better::Neither, 2, |m| {
            speed(m, "dynamic").map(|s| s.tokens_per_forward)
        }),
    ];
    if let Some(t) = &plan.train {
        rows.extend([
            row(
                format!("train step s ({} × {} tokens)", t.prompts.len(), t.rollout_len),
                Better::Lower,
                2,
                |m| train(m, |t| t.total_seconds),
            ),
            row("· rollout s", Better::Lower, 2, |m| train(m, |t| t.rollout_seconds)),
            row("· rollout forwards per row", Better::Neither, 0, |m| {
                train(m, |t| t.rollout_forwards as f64)
            }),
            row("· teacher s", Better::Lower, 2, |m| train(m, |t| t.teacher_seconds)),
            row("· student fwd+bwd s", Better::Lower, 2, |m| train(m, |t| t.student_seconds)),
            row("· clip + AdamW s", Better::Lower, 2, |m| train(m, |t| t.optimizer_seconds)),
        ]);
    }
    rows.extend([
        row("peak RSS MiB: load", Better::Lower, 0, |m| m.load_peak_rss_mib),
        row("peak RSS MiB: prefill", Better::Lower, 0, |m| {
            speed(m, "prefill").and_then(|s| s.peak_rss_mib)
        }),
        row("peak RSS MiB: AR decode", Better::Lower, 0, |m| {
            speed(m, "ar").and_then(|s| s.peak_rss_mib)
        }),
        row("peak RSS MiB: dynamic decode", Better::Lower, 0, |m| {
            speed(m, "dynamic").and_then(|s| s.peak_rss_mib)
        }),
    ]);
    if plan.train.is_some() {
        rows.push(row("peak RSS MiB: train step", Better::Lower, 0, |m| {
            m.train.as_ref().and_then(|t| t.peak_rss_mib)
        }));
    }
    rows
}

fn fmt(value: Option<f64>, decimals: usize) -> String {
    value.map_or("–".into(), |v| format!("{v:.decimals$}"))
}

fn ratio(ours: Option<f64>, theirs: Option<f64>) -> Option<f64> {
    match (ours, theirs) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

/// The Markdown report.
pub fn markdown(reports: &[ModelReport], threads: usize, load: &LoadAverage) -> String {
    let mut md = format!(
        "## Benchmark: opdlm vs PyTorch (transformers, CPU), {threads} CPU threads\n\n\
         CPU: {}; load average (1 min) {} at the start, {} at the end: a load above the \
         thread count means other processes shared the cores and every figure is slower than \
         on an idle machine (ratios, measured back to back, are more robust).\n\n\
         Ratios are ours ÷ PyTorch of the figure in that row: above 1 is better for tok/s (↑), \
         below 1 is better for seconds and memory (↓). Decoding tok/s include the prefill.\n",
        cpu_model().unwrap_or_else(|| "unknown".into()),
        fmt(load.start, 2),
        fmt(load.end, 2),
    );
    for r in reports {
        md.push_str(&model_section(r));
    }
    md
}

fn model_section(r: &ModelReport) -> String {
    let p = &r.plan;
    let mut md = format!(
        "\n### {}\n\nPrompt {} tokens; {} new tokens per decoding run; block {}, γ {}; repeats {}.",
        p.name,
        p.prompt.len(),
        p.max_new_tokens,
        p.block_size,
        p.threshold,
        p.repeats
    );
    if let Some(t) = &p.train {
        let kl = match t.top_k {
            0 => "the full vocabulary".to_string(),
            k => format!("the teacher's top-{k} tokens"),
        };
        let p_len = t.prompts.first().map_or(0, Vec::len);
        md.push_str(&format!(" Training step: OPDLM, {} prompts of {p_len} tokens, one batched rollout of {} tokens each at temperature {}, forward KL over {kl}, AdamW.", t.prompts.len(), t.rollout_len, t.temperature));
    }
    md.push('\n');
    let theirs = r.baseline.as_ref().ok();
    match &r.baseline {
        Ok(m) => md.push_str(&format!("PyTorch: {}.\n", m.backend)),
        Err(why) => md.push_str(&format!("**PyTorch baseline unavailable**: {why}.\n")),
    }
    for m in r.ours.iter().chain(theirs) {
        for note in &m.notes {
            md.push_str(&format!("Note ({} {}): {note}\n", m.implementation, m.backend));
        }
    }
    md.push('\n');
    md.push_str(&figures_table(r));
    if let Some(t) = theirs {
        md.push_str(&output_agreement(r, t));
    }
    md.push_str(&forward_rows_table(r));
    md.push_str(&llama_cpp_section(r));
    md.push_str(&targets(r));
    md
}

/// Forward time by row count, as a ratio to one row (issue 17's "block-4 forward ≤ 1.2×
/// an AR forward").
fn forward_rows_table(r: &ModelReport) -> String {
    let Some(first) = r.ours.iter().find(|m| !m.forward_rows.is_empty()) else {
        return String::new();
    };
    let mut md = String::from(
        "
One forward of n new rows against the cached prompt (all rows' logits), ms, and ÷ the 1-row forward:

| rows |",
    );
    for m in &r.ours {
        md.push_str(&format!(" {} ms | ÷ 1 row |", label(m)));
    }
    md.push_str(&format!(
        "
|{}
",
        "---|".repeat(1 + 2 * r.ours.len())
    ));
    for (i, t) in first.forward_rows.iter().enumerate() {
        md.push_str(&format!("| {} |", t.rows));
        for m in &r.ours {
            let one = m.forward_rows.iter().find(|t| t.rows == 1).map(|t| t.seconds);
            let this = m.forward_rows.get(i).map(|t| t.seconds);
            md.push_str(&format!(
                " {} | {} |",
                fmt(this.map(|s| s * 1e3), 2),
                fmt(ratio(this, one), 2)
            ));
        }
        md.push('\n');
    }
    md
}

/// llama.cpp on the same GGUF: its prefill and AR decoding, and ours ÷ its.
fn llama_cpp_section(r: &ModelReport) -> String {
    let l = match &r.llama_cpp {
        Ok(l) => l,
        Err(why) => return format!("\n**llama.cpp unavailable**: {why}.\n"),
    };
    let tps = |s: &Option<Speed>| s.as_ref().map(|s| s.tokens_per_second);
    let mut md = format!(
        "\nllama.cpp ({}), same prompt tokens and threads: prefill {} tok/s, greedy AR decode {} tok/s. Ours ÷ llama.cpp (tok/s, ↑):\n\n| opdlm | prefill | AR decode | static ÷ llama.cpp AR | dynamic ÷ llama.cpp AR |\n|---|---|---|---|---|\n",
        l.backend,
        fmt(tps(&l.prefill), 1),
        fmt(tps(&l.ar), 1)
    );
    for m in &r.ours {
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            label(m),
            fmt(ratio(tps(&m.prefill), tps(&l.prefill)), 2),
            fmt(ratio(tps(&m.ar), tps(&l.ar)), 2),
            fmt(ratio(tps(&m.static_), tps(&l.ar)), 2),
            fmt(ratio(tps(&m.dynamic), tps(&l.ar)), 2),
        ));
    }
    if let Some(theirs) = l.outputs.get("ar") {
        md.push_str("\nGreedy AR tokens agreeing with llama.cpp's from the start (llama.cpp multiplies its own quantized weights and activations, so near-ties may flip):");
        for m in &r.ours {
            let ours = m.outputs.get("ar").map_or(&[][..], Vec::as_slice);
            let agree = ours.iter().zip(theirs).take_while(|(a, b)| a == b).count();
            md.push_str(&format!(" {} {agree}/{};", label(m), theirs.len()));
        }
        md.push('\n');
    }
    md
}

/// The table of figures: ours per backend, PyTorch's, and the ratios.
fn figures_table(r: &ModelReport) -> String {
    let theirs = r.baseline.as_ref().ok();
    let mut md = String::new();
    let mut header = vec!["figure".to_string()];
    header.extend(r.ours.iter().map(|m| format!("opdlm {}", label(m))));
    if theirs.is_some() {
        header.push("PyTorch".into());
        header.extend(r.ours.iter().map(|m| format!("{} ÷ PyTorch", label(m))));
    }
    md.push_str(&format!("| {} |\n|{}\n", header.join(" | "), "---|".repeat(header.len())));
    for row in rows(&r.plan) {
        let arrow = match row.better {
            Better::Higher => " ↑",
            Better::Lower => " ↓",
            Better::Neither => "",
        };
        let mut cells = vec![format!("{}{arrow}", row.label)];
        cells.extend(r.ours.iter().map(|m| fmt((row.value)(m), row.decimals)));
        if let Some(t) = theirs {
            cells.push(fmt((row.value)(t), row.decimals));
            for m in &r.ours {
                let shown = match row.better {
                    Better::Neither => None,
                    _ => ratio((row.value)(m), (row.value)(t)),
                };
                cells.push(shown.map_or("–".into(), |v| format!("{v:.2}×")));
            }
        }
        md.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    md
}

/// How many greedy tokens of ours agree with PyTorch's, per backend and phase.
fn output_agreement(r: &ModelReport, t: &Measured) -> String {
    let mut md = String::from("\nSame model, prompt and sampler: greedy outputs of opdlm vs PyTorch (tokens agreeing from the start):");
    for m in &r.ours {
        for (phase, theirs_out) in &t.outputs {
            let ours_out = m.outputs.get(phase).map_or(&[][..], Vec::as_slice);
            let agree = ours_out.iter().zip(theirs_out).take_while(|(a, b)| a == b).count();
            md.push_str(&format!(" {} {phase} {agree}/{};", label(m), theirs_out.len()));
        }
    }
    md.push_str(" (a near-tie in f32 can flip one token and everything after it.)\n");
    md
}

/// Whether each backend meets the speed targets.
fn targets(r: &ModelReport) -> String {
    let (p, theirs) = (&r.plan, r.baseline.as_ref().ok());
    let mut md = String::from("\nTargets (issue 6):\n");
    for m in &r.ours {
        let tps = |s: &Option<Speed>| s.as_ref().map(|s| s.tokens_per_second);
        if let Some(t) = theirs {
            let prefill = ratio(tps(&m.prefill), tps(&t.prefill));
            let ar = ratio(tps(&m.ar), tps(&t.ar));
            md.push_str(&format!(
                "- {}: forward speed ÷ PyTorch's: prefill {}, AR decode {} (target ≥ {:.2}, i.e. within 1.3× of PyTorch's time): {}\n",
                label(m),
                fmt(prefill, 2),
                fmt(ar, 2),
                FORWARD_TARGET,
                verdict(prefill.zip(ar).map(|(a, b)| a.min(b) >= FORWARD_TARGET))
            ));
        }
        let dynamic = ratio(tps(&m.dynamic), tps(&m.ar));
        let converted = !p.decode_shift;
        md.push_str(&format!(
            "- {}: dynamic ÷ AR tok/s {} (target ≥ {DYNAMIC_TARGET}): {}{}\n",
            label(m),
            fmt(dynamic, 2),
            verdict(dynamic.map(|d| d >= DYNAMIC_TARGET)),
            if converted { "" } else { " — this model is not converted: it rarely clears γ, so it commits about one token per forward; the target needs a converted (trained) model" }
        ));
    }
    md
}

fn verdict(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "met",
        Some(false) => "not met",
        None => "not measured",
    }
}

/// The 1-minute load average at the start and the end of the bench.
pub struct LoadAverage {
    pub start: Option<f64>,
    pub end: Option<f64>,
}

/// The 1-minute load average (Linux `/proc/loadavg`).
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg").ok()?.split_whitespace().next()?.parse().ok()
}

/// The JSON report: every plan and every implementation's raw figures.
pub fn json(reports: &[ModelReport], threads: usize, load: &LoadAverage) -> serde_json::Value {
    let generated = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    serde_json::json!({
        "threads": threads,
        "generated_unix": generated,
        "cpu": cpu_model(),
        "load_average_start": load.start,
        "load_average_end": load.end,
        "models": reports.iter().map(|r| serde_json::json!({
            "plan": r.plan,
            "ours": r.ours,
            "baseline": r.baseline.as_ref().ok(),
            "baseline_unavailable": r.baseline.as_ref().err(),
            "llama_cpp": r.llama_cpp.as_ref().ok(),
            "llama_cpp_unavailable": r.llama_cpp.as_ref().err(),
        })).collect::<Vec<_>>(),
    })
}

/// The CPU's model name (Linux), for the record.
fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
}
