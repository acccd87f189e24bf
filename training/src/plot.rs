//! Training curves as a PNG (loss and rollout tokens per forward against training tokens),
//! and the two helpers every plot of the workspace uses (a font, token-count labels).

use std::path::{Path, PathBuf};

use plotters::prelude::*;

/// A font for labels: plotters' `ab_glyph` backend needs one registered; DejaVu Sans is
/// on most Linux systems. Without it the plot is drawn without text.
pub fn register_font() -> bool {
    const CANDIDATES: [&str; 2] = [
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    ];
    for path in CANDIDATES {
        if let Ok(bytes) = std::fs::read(path) {
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                return true;
            }
        }
    }
    false
}

/// A token count as an axis label: `950`, `150k`, `1.2M` (plain floats overlap).
pub fn token_count(x: f64) -> String {
    let trim = |v: f64| {
        let text = format!("{v:.1}");
        text.strip_suffix(".0").map(str::to_string).unwrap_or(text)
    };
    match x.abs() {
        v if v >= 1e6 => format!("{}M", trim(x / 1e6)),
        v if v >= 1e3 => format!("{}k", trim(x / 1e3)),
        _ => trim(x),
    }
}

/// Plots named series from `metrics.jsonl` lines against `tokens_total`.
pub fn plot_curves(
    log: &[serde_json::Value],
    path: &Path,
) -> Result<PathBuf, Box<dyn std::error::Error>> {
    let labels = register_font();
    let series = |key: &str| -> Vec<(f64, f64)> {
        log.iter()
            .filter_map(|v| Some((v["tokens_total"].as_f64()?, v[key].as_f64()?)))
            .filter(|(_, y)| y.is_finite())
            .collect()
    };
    let panels = [("loss", "loss"), ("rollout_tokens_per_forward", "rollout tokens / forward")];
    let root = BitMapBackend::new(path, (1000, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    for (area, (key, title)) in root.split_evenly((1, 2)).iter().zip(panels) {
        let points = series(key);
        if points.is_empty() {
            continue;
        }
        let (x_max, y_max) =
            points.iter().fold((1.0f64, 0.0f64), |(x, y), p| (x.max(p.0), y.max(p.1)));
        let mut builder = ChartBuilder::on(area);
        builder.margin(15).x_label_area_size(35).y_label_area_size(50);
        if labels {
            builder.caption(title, ("sans-serif", 18));
        }
        let mut chart = builder.build_cartesian_2d(0.0..x_max, 0.0..y_max * 1.1 + 1e-9)?;
        if labels {
            chart
                .configure_mesh()
                .x_desc("training tokens")
                .x_label_formatter(&|x| token_count(*x))
                .draw()?;
        }
        chart.draw_series(LineSeries::new(points, &BLUE))?;
    }
    root.present()?;
    Ok(path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::token_count;

    #[test]
    fn token_counts_are_short_labels() {
        assert_eq!(token_count(0.0), "0");
        assert_eq!(token_count(950.0), "950");
        assert_eq!(token_count(150_000.0), "150k");
        assert_eq!(token_count(1_240.0), "1.2k");
        assert_eq!(token_count(1_200_000.0), "1.2M");
    }
}
