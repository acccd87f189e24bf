//! The data-efficiency plot: accuracy against training tokens, one line per objective.

use std::path::{Path, PathBuf};

use opdlm_training::plot::{register_font, token_count};
use plotters::prelude::*;

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
