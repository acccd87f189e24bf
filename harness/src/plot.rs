//! The experiments' plots: the data-efficiency accuracy bands (one mean line and one
//! confidence band per objective) and the conversion's curves against training tokens.

use std::path::{Path, PathBuf};

use opdlm_training::plot::{register_font, token_count};
use plotters::prelude::*;

/// One objective's curve: per checkpoint `(tokens, mean, low, high)` of its accuracy.
pub struct Band {
    /// Legend entry.
    pub name: String,
    /// Checkpoints in training order; `low`/`high` may be NaN (a single seed: no band).
    pub points: Vec<(f64, f64, f64, f64)>,
}

/// Accuracy against training response tokens (log x): per band a mean line and its
/// interval shaded, with the teacher's accuracy as a dashed reference line.
pub fn plot_accuracy_bands(
    bands: &[Band],
    teacher_accuracy: f64,
    path: &Path,
) -> Result<PathBuf, Box<dyn std::error::Error>> {
    let labels = register_font();
    let points = bands.iter().flat_map(|b| b.points.iter()).filter(|p| p.0 > 0.0);
    let (x_min, x_max) =
        points.fold((f64::INFINITY, 1.0f64), |(lo, hi), p| (lo.min(p.0), hi.max(p.0)));
    let x_min = if x_min.is_finite() { x_min / 1.5 } else { 1.0 };
    let root = BitMapBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut builder = ChartBuilder::on(&root);
    builder.margin(20).x_label_area_size(45).y_label_area_size(55);
    if labels {
        builder.caption(
            "test accuracy (static decoding) vs training response tokens, mean and 95 % CI",
            ("sans-serif", 20),
        );
    }
    let mut chart = builder.build_cartesian_2d((x_min..x_max * 1.5).log_scale(), 0.0..1.0)?;
    if labels {
        chart
            .configure_mesh()
            .x_desc("training response tokens (log)")
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
    for (i, band) in bands.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba().stroke_width(2);
        let points: Vec<(f64, f64, f64, f64)> =
            band.points.iter().copied().filter(|p| p.0 > 0.0).collect();
        let ends = |p: &(f64, f64, f64, f64), y: f64| (p.0, y.clamp(0.0, 1.0));
        if points.iter().all(|p| p.2.is_finite() && p.3.is_finite()) {
            let outline: Vec<(f64, f64)> = (points.iter().map(|p| ends(p, p.3)))
                .chain(points.iter().rev().map(|p| ends(p, p.2)))
                .collect();
            chart.draw_series(std::iter::once(Polygon::new(outline, color.color.mix(0.15))))?;
        }
        let means: Vec<(f64, f64)> = points.iter().map(|p| (p.0, p.1)).collect();
        chart.draw_series(means.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
        let drawn = chart.draw_series(LineSeries::new(means, color))?;
        if labels {
            drawn
                .label(band.name.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        }
    }
    if labels {
        draw_legend(&mut chart, SeriesLabelPosition::LowerRight)?;
    }
    root.present()?;
    Ok(path.to_path_buf())
}

/// One curve of [`plot_lines`].
pub struct Line {
    /// Legend entry.
    pub name: String,
    /// `(x, y)` in order.
    pub points: Vec<(f64, f64)>,
    /// Dashed (a reference level) rather than solid with markers.
    pub dashed: bool,
}

/// Curves against training tokens (linear x from 0), for figures whose first point is
/// the model before training.
pub fn plot_lines(
    lines: &[Line],
    caption: &str,
    y_desc: &str,
    y_max: f64,
    path: &Path,
) -> Result<PathBuf, Box<dyn std::error::Error>> {
    let labels = register_font();
    let x_max = lines.iter().flat_map(|l| &l.points).fold(1.0f64, |hi, p| hi.max(p.0));
    let root = BitMapBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut builder = ChartBuilder::on(&root);
    builder.margin(20).x_label_area_size(45).y_label_area_size(55);
    if labels {
        builder.caption(caption, ("sans-serif", 20));
    }
    let mut chart = builder.build_cartesian_2d(0.0..x_max * 1.05, 0.0..y_max)?;
    if labels {
        chart
            .configure_mesh()
            .x_desc("training tokens (prompt + response)")
            .y_desc(y_desc)
            .x_label_formatter(&|x| token_count(*x))
            .draw()?;
    }
    for (i, line) in lines.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba().stroke_width(2);
        let drawn = if line.dashed {
            chart.draw_series(DashedLineSeries::new(line.points.clone(), 8, 6, color))?
        } else {
            chart.draw_series(line.points.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
            chart.draw_series(LineSeries::new(line.points.clone(), color))?
        };
        if labels {
            drawn
                .label(line.name.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        }
    }
    if labels {
        draw_legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
    }
    root.present()?;
    Ok(path.to_path_buf())
}

/// The legend box of a chart's labelled series, at `position`.
fn draw_legend<'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, BitMapBackend<'a>, CT>,
    position: SeriesLabelPosition,
) -> Result<(), Box<dyn std::error::Error>> {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    Ok(())
}
