//! Confidence intervals over seeds: Student's t intervals, because an experiment has a
//! handful of seeds and a normal interval would be too narrow.

use serde::Serialize;

/// A mean over runs and its 95 % confidence interval `mean ± half_width`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Interval {
    /// The sample mean.
    pub mean: f64,
    /// Half the width of the 95 % interval (NaN with fewer than two values).
    pub half_width: f64,
    /// How many values it summarises.
    pub n: usize,
}

impl Interval {
    /// Mean and 95 % t interval of `values` (the sample standard deviation, `n − 1`).
    pub fn of(values: &[f64]) -> Self {
        let n = values.len();
        let mean = values.iter().sum::<f64>() / n as f64;
        if n < 2 {
            return Self { mean, half_width: f64::NAN, n };
        }
        let variance = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        let half_width = t_975(n - 1) * (variance / n as f64).sqrt();
        Self { mean, half_width, n }
    }

    /// Lower end of the interval.
    pub fn low(&self) -> f64 {
        self.mean - self.half_width
    }

    /// Upper end of the interval.
    pub fn high(&self) -> f64 {
        self.mean + self.half_width
    }

    /// Whether the whole interval lies above (`1`), below (`-1`) or around (`0`) `value`.
    pub fn side_of(&self, value: f64) -> i8 {
        if self.low() > value {
            1
        } else if self.high() < value {
            -1
        } else {
            0
        }
    }

    /// `12.3 ± 4.5` with `scale` applied (100 for percentages), `–` for no values.
    pub fn show(&self, scale: f64, decimals: usize) -> String {
        // A mean that rounds to zero prints as 0, not -0.
        let unit = 10f64.powi(-(decimals as i32)) / 2.0;
        let mean = if (self.mean * scale).abs() < unit { 0.0 } else { self.mean * scale };
        match (self.n, self.half_width.is_nan()) {
            (0, _) => "–".into(),
            (_, true) => format!("{mean:.decimals$}"),
            _ => format!("{mean:.decimals$} ± {:.decimals$}", self.half_width * scale),
        }
    }

    /// The interval of `exp(x)` for an interval on `x` (for ratios averaged in log space):
    /// the geometric mean, with the ends mapped through `exp` (no longer symmetric).
    pub fn exp_ends(&self) -> (f64, f64, f64) {
        (self.mean.exp(), self.low().exp(), self.high().exp())
    }
}

/// The 0.975 quantile of Student's t with `df` degrees of freedom (two-sided 95 %).
pub fn t_975(df: usize) -> f64 {
    // Standard table values; beyond 30 the normal quantile is within 2 %.
    const TABLE: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => f64::NAN,
        d if d <= 30 => TABLE[d - 1],
        _ => 1.960,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_seeds_use_t_with_two_degrees_of_freedom() {
        // mean 0.5, sample sd 0.1: half width 4.303 · 0.1 / √3.
        let interval = Interval::of(&[0.4, 0.5, 0.6]);
        assert!((interval.mean - 0.5).abs() < 1e-12);
        assert!((interval.half_width - 4.303 * 0.1 / 3f64.sqrt()).abs() < 1e-9);
        assert_eq!(interval.side_of(0.2), 1);
        assert_eq!(interval.side_of(0.5), 0);
        assert_eq!(interval.side_of(0.9), -1);
        assert_eq!(interval.show(100.0, 1), "50.0 ± 24.8");
        assert!(Interval::of(&[0.3]).half_width.is_nan());
        assert_eq!(t_975(1), 12.706);
        assert_eq!(t_975(200), 1.960);
    }
}
