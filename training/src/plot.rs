//! Training curves as a PNG (loss and rollout tokens per forward against training tokens).

use std::path::{Path, PathBuf};

use plotters::prelude::*;

/// A font for labels: plotters' `ab_glyph` backend needs one registered; DejaVu Sans is
/// on most Linux systems. Without it the plot is drawn without text.
fn register_font() -> bool {
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
fn token_count(x: f64) -> String {
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

/// Accuracy against training tokens (log x), one line per named series, with the
/// teacher's accuracy as a dashed reference line.
pub fn plot_accuracy_vs_tokens(
    series: &[(String, Vec<(f64, f64)>)],
    teacher_accuracy: f64,
    path: &Path,
) -> Result<PathBuf, Box<dyn std::error::Error>> {
    let labels = register_font();
    let points = series.iter().flat_map(|(_, p)| p.iter()).filter(|(x, _)| *x > 0.0);
    let (x_min, x_max) =
        points.fold((f64::INFINITY, 1.0f64), |(lo, hi), (x, _)| (lo.min(*x), hi.max(*x)));
    let x_min = if x_min.is_finite() { x_min / 1.5 } else { 1.0 };
    let root = BitMapBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut builder = ChartBuilder::on(&root);
    builder.margin(20).x_label_area_size(45).y_label_area_size(55);
    if labels {
        builder.caption("accuracy (static decoding) vs training tokens", ("sans-serif", 20));
    }
    let mut chart = builder.build_cartesian_2d((x_min..x_max * 1.5).log_scale(), 0.0..1.0)?;
    if labels {
        chart
            .configure_mesh()
            .x_desc("training tokens (log)")
            .y_desc("test accuracy")
            .x_label_formatter(&|x| token_count(*x))
            .draw()?;
    }
    let teacher_line = DashedLineSeries::new(
        vec![(x_min, teacher_accuracy), (x_max * 1.5, teacher_accuracy)],
        8,
        6,
        BLACK.stroke_width(1),
    );
    let drawn = chart.draw_series(teacher_line)?;
    if labels {
        drawn
            .label("teacher (AR)")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
    }
    for (i, (name, points)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba().stroke_width(2);
        let points: Vec<(f64, f64)> = points.iter().copied().filter(|(x, _)| *x > 0.0).collect();
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
        let drawn = chart.draw_series(LineSeries::new(points, color))?;
        if labels {
            drawn
                .label(name.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        }
    }
    if labels {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
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
