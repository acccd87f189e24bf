//! `bench --logits-check MODEL --backend B`: correctness of a (GPU) backend, as the max
//! absolute difference between its logits and the CPU backend's on the same model and
//! tokens, causal and block-causal. On a parity fixture (`tests/fixtures/tiny-*`) the
//! cases of its `reference.json` are used and compared with `transformers`' logits too.

use std::path::Path;

use anyhow::Context;
use burn::prelude::*;
use burn::tensor::{Int, TensorData};
use opdlm_model::{load_model, AttentionMode, Layout, Transformer};
use serde::{Deserialize, Serialize};

/// One input of the check.
#[derive(Debug, Clone, Deserialize)]
struct Case {
    name: String,
    input_ids: Vec<Vec<u32>>,
    mode: serde_json::Value,
    /// `transformers`' logits `[batch][len][vocab]`, when the fixture has them.
    #[serde(default)]
    logits: Option<Vec<Vec<Vec<f32>>>>,
}

#[derive(Deserialize)]
struct Reference {
    cases: Vec<Case>,
}

/// Differences found for one case.
#[derive(Debug, Serialize)]
pub struct CaseResult {
    pub name: String,
    pub tokens: usize,
    pub max_abs_diff_vs_cpu: f32,
    pub max_abs_diff_vs_transformers: Option<f32>,
    pub argmax_equal_to_cpu: bool,
}

#[derive(Debug, Serialize)]
pub struct LogitsCheck {
    pub model: String,
    pub backend: String,
    pub cpu_backend: String,
    pub cases: Vec<CaseResult>,
    pub max_abs_diff_vs_cpu: f32,
}

/// The cases: the fixture's `reference.json`, or for any other model two generated
/// inputs (16 tokens, causal and block-causal with blocks of 4).
fn cases(model_dir: &Path, vocab: usize) -> anyhow::Result<Vec<Case>> {
    let reference = model_dir.join("reference.json");
    if reference.is_file() {
        let text = std::fs::read_to_string(&reference)
            .with_context(|| format!("reading {}", reference.display()))?;
        let parsed: Reference = serde_json::from_str(&text)
            .with_context(|| format!("parsing {}", reference.display()))?;
        return Ok(parsed.cases);
    }
    let ids: Vec<u32> = (0..16u64).map(|i| ((i * 7919 + 13) % vocab as u64) as u32).collect();
    Ok(vec![
        Case {
            name: "causal_len16".into(),
            input_ids: vec![ids.clone()],
            mode: "causal".into(),
            logits: None,
        },
        Case {
            name: "block4_len16".into(),
            input_ids: vec![ids],
            mode: serde_json::json!({ "block_causal": 4 }),
            logits: None,
        },
    ])
}

fn mode(value: &serde_json::Value) -> anyhow::Result<AttentionMode> {
    if value == "causal" {
        return Ok(AttentionMode::Causal);
    }
    match value.get("block_causal").and_then(|b| b.as_u64()) {
        Some(block_size) => Ok(AttentionMode::BlockCausal { block_size: block_size as usize }),
        None => anyhow::bail!("unknown attention mode {value}"),
    }
}

/// Logits of every case, flattened, on backend `B`.
fn logits_of<B: Backend>(
    model: &Transformer<B>,
    cases: &[Case],
    device: &B::Device,
) -> anyhow::Result<Vec<Vec<f32>>> {
    cases
        .iter()
        .map(|case| {
            let (batch, len) = (case.input_ids.len(), case.input_ids[0].len());
            let ids: Vec<i64> = case.input_ids.iter().flatten().map(|&t| t as i64).collect();
            let tokens = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [batch, len]), device);
            let layout = Layout::contiguous(mode(&case.mode)?, batch, 0, len, device);
            Ok(model
                .forward(tokens, &layout)
                .into_data()
                .convert::<f32>()
                .to_vec()
                .expect("float logits"))
        })
        .collect()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn argmaxes(logits: &[f32], vocab: usize) -> Vec<usize> {
    logits
        .chunks(vocab)
        .map(|row| row.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(i, _)| i))
        .collect()
}

/// Compares backend `B` with the CPU backend `C` on `model_path`.
pub fn check<B: Backend, C: Backend>(
    model_path: &Path,
    backend: &str,
    cpu_backend: &str,
    device: &B::Device,
) -> anyhow::Result<LogitsCheck> {
    let cpu_device = C::Device::default();
    let cpu_model: Transformer<C> = load_model(model_path, &cpu_device)
        .with_context(|| format!("loading {}", model_path.display()))?;
    let vocab = cpu_model.config().vocab_size;
    let cases = cases(model_path, vocab)?;
    let expected = logits_of(&cpu_model, &cases, &cpu_device)?;
    drop(cpu_model);
    let model: Transformer<B> = load_model(model_path, device)?;
    let got = logits_of(&model, &cases, device)?;
    let results: Vec<CaseResult> = cases
        .iter()
        .zip(expected.iter().zip(&got))
        .map(|(case, (cpu, dev))| CaseResult {
            name: case.name.clone(),
            tokens: case.input_ids.iter().map(Vec::len).sum(),
            max_abs_diff_vs_cpu: max_abs_diff(cpu, dev),
            max_abs_diff_vs_transformers: case.logits.as_ref().map(|r| {
                let flat: Vec<f32> = r.iter().flatten().flatten().copied().collect();
                max_abs_diff(&flat, dev)
            }),
            argmax_equal_to_cpu: argmaxes(cpu, vocab) == argmaxes(dev, vocab),
        })
        .collect();
    let worst = results.iter().map(|r| r.max_abs_diff_vs_cpu).fold(0.0, f32::max);
    Ok(LogitsCheck {
        model: model_path.display().to_string(),
        backend: backend.into(),
        cpu_backend: cpu_backend.into(),
        cases: results,
        max_abs_diff_vs_cpu: worst,
    })
}

/// Prints a check as a Markdown table.
pub fn print(check: &LogitsCheck) {
    println!("logits of {} on {} vs {} (CPU)", check.model, check.backend, check.cpu_backend);
    println!("| case | tokens | max |Δ| vs CPU | max |Δ| vs transformers | argmax = CPU |");
    println!("|---|---|---|---|---|");
    for c in &check.cases {
        let hf = c.max_abs_diff_vs_transformers.map_or("–".into(), |d| format!("{d:.2e}"));
        println!(
            "| {} | {} | {:.2e} | {hf} | {} |",
            c.name,
            c.tokens,
            c.max_abs_diff_vs_cpu,
            if c.argmax_equal_to_cpu { "yes" } else { "NO" }
        );
    }
}
