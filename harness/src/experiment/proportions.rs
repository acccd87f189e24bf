//! Intervals and a test for rates measured on a set of test prompts: the Wilson score
//! interval of one model's rate, and the difference between two models' rates on the same
//! prompts, paired prompt by prompt. Pairing matters: two models of one teacher tend to
//! pass the same prompts, and an unpaired interval ignores that and comes out too wide.

use serde::Serialize;

/// The normal quantile of a two-sided 95 % interval.
const Z_95: f64 = 1.959_963_984_540_054;

/// The 95 % Wilson score interval of `successes` out of `n` (all of [0, 1] when `n` is 0).
pub fn wilson(successes: usize, n: usize) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let (n, z2) = (n as f64, Z_95 * Z_95);
    let p = successes as f64 / n;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half_width = Z_95 * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / (1.0 + z2 / n);
    ((centre - half_width).max(0.0), (centre + half_width).min(1.0))
}

/// Two models' outcomes (pass or fail) on the same prompts, compared pair by pair.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PairedDifference {
    /// Prompts compared.
    pub prompts: usize,
    /// Prompts both models pass.
    pub both: usize,
    /// Prompts only the first model passes.
    pub only_first: usize,
    /// Prompts only the second model passes.
    pub only_second: usize,
    /// The first model's rate minus the second's.
    pub difference: f64,
    /// The 95 % interval of the difference: Newcombe's score interval for paired data
    /// (his method 10, Statistics in Medicine 17:2635, 1998), built from the two Wilson
    /// intervals and the correlation of the pairs.
    pub low: f64,
    /// Upper end of that interval.
    pub high: f64,
    /// Two-sided exact McNemar test: the probability, with no difference between the
    /// models, of a split of the discordant prompts at least this uneven.
    pub mcnemar_p: f64,
}

impl PairedDifference {
    /// Compares `first[i]` with `second[i]` for every prompt `i`.
    pub fn of(first: &[bool], second: &[bool]) -> Self {
        assert_eq!(first.len(), second.len(), "outcomes of the same prompts");
        let count = |a: bool, b: bool| {
            first.iter().zip(second).filter(|&(&x, &y)| (x, y) == (a, b)).count()
        };
        let (both, only_first) = (count(true, true), count(true, false));
        let (only_second, neither) = (count(false, true), count(false, false));
        let prompts = first.len();
        let (p1, p2) = (rate(both + only_first, prompts), rate(both + only_second, prompts));
        let (l1, u1) = wilson(both + only_first, prompts);
        let (l2, u2) = wilson(both + only_second, prompts);
        let phi = phi_coefficient(both, only_first, only_second, neither);
        let spread = |a: f64, b: f64| (a * a - 2.0 * phi * a * b + b * b).max(0.0).sqrt();
        let difference = p1 - p2;
        Self {
            prompts,
            both,
            only_first,
            only_second,
            difference,
            low: (difference - spread(p1 - l1, u2 - p2)).max(-1.0),
            high: (difference + spread(u1 - p1, p2 - l2)).min(1.0),
            mcnemar_p: mcnemar_exact(only_first, only_second),
        }
    }

    /// The first and the second model's pass rates.
    pub fn rates(&self) -> (f64, f64) {
        let passes = |only: usize| rate(self.both + only, self.prompts);
        (passes(self.only_first), passes(self.only_second))
    }
}

/// `passes` out of `prompts` (0 for no prompts).
fn rate(passes: usize, prompts: usize) -> f64 {
    passes as f64 / prompts.max(1) as f64
}

/// The correlation of the two outcomes over the prompts (0 when an outcome never varies).
fn phi_coefficient(both: usize, only_first: usize, only_second: usize, neither: usize) -> f64 {
    let [a, b, c, d] = [both, only_first, only_second, neither].map(|n| n as f64);
    let margins = (a + b) * (c + d) * (a + c) * (b + d);
    if margins == 0.0 {
        return 0.0;
    }
    (a * d - b * c) / margins.sqrt()
}

/// Two-sided exact McNemar p: twice the binomial(b + c, ½) tail at the smaller count,
/// summed in log space so that thousands of prompts do not underflow.
fn mcnemar_exact(b: usize, c: usize) -> f64 {
    let n = b + c;
    let k = b.min(c);
    let ln_half_n = n as f64 * 0.5f64.ln();
    let mut ln_choose = 0.0; // ln C(n, 0)
    let mut tail = 0.0;
    for i in 0..=k {
        if i > 0 {
            ln_choose += ((n - i + 1) as f64).ln() - (i as f64).ln();
        }
        tail += (ln_choose + ln_half_n).exp();
    }
    (2.0 * tail).min(1.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `both`, `only_first`, `only_second`, `neither` prompts, as two outcome lists.
    fn pairs(counts: [usize; 4]) -> (Vec<bool>, Vec<bool>) {
        let kinds = [(true, true), (true, false), (false, true), (false, false)];
        kinds.iter().zip(counts).flat_map(|(&kind, n)| std::iter::repeat_n(kind, n)).unzip()
    }

    #[test]
    fn wilson_matches_the_closed_form_and_stays_in_range() {
        // 49 of 200: centre (p + z²/2n)/(1 + z²/n), worked by hand to 0.1906 … 0.3091.
        let (low, high) = wilson(49, 200);
        assert!((low - 0.19059).abs() < 1e-4 && (high - 0.30910).abs() < 1e-4, "{low} {high}");
        // The ends reach 0 and 1 (up to rounding) when every prompt fails or passes.
        assert!(wilson(0, 10).0.abs() < 1e-12 && (1.0 - wilson(10, 10).1).abs() < 1e-12);
        assert_eq!(wilson(0, 0), (0.0, 1.0));
    }

    #[test]
    fn mcnemar_is_the_exact_binomial_tail_of_the_discordant_prompts() {
        // 10 against 2: 2 · (1 + 12 + 66) / 2¹² = 158 / 4096.
        assert!((mcnemar_exact(10, 2) - 158.0 / 4096.0).abs() < 1e-12);
        assert!((mcnemar_exact(2, 10) - 158.0 / 4096.0).abs() < 1e-12);
        assert_eq!(mcnemar_exact(0, 0), 1.0);
        assert_eq!(mcnemar_exact(5, 5), 1.0);
        // Thousands of discordant prompts neither underflow nor exceed 1.
        let p = mcnemar_exact(1500, 1400);
        assert!(p > 0.0 && p < 1.0, "{p}");
    }

    #[test]
    fn uncorrelated_pairs_give_the_unpaired_newcombe_interval() {
        // a·d = b·c: no correlation, so the interval is the hybrid score interval for
        // independent samples, p1 − p2 ± sqrt((p − l)² + (u − p)²) with Wilson ends.
        let (first, second) = pairs([10, 10, 10, 10]);
        let paired = PairedDifference::of(&first, &second);
        let (l, u) = wilson(20, 40);
        let half = ((0.5 - l).powi(2) + (u - 0.5).powi(2)).sqrt();
        assert_eq!((paired.both, paired.only_first, paired.only_second), (10, 10, 10));
        assert_eq!(paired.difference, 0.0);
        assert!((paired.low + half).abs() < 1e-12 && (paired.high - half).abs() < 1e-12);
        assert_eq!(paired.mcnemar_p, 1.0);
    }

    #[test]
    fn correlated_pairs_narrow_the_interval_around_the_difference() {
        // Same marginal rates (60 % and 50 % of 200), different correlation.
        let correlated = PairedDifference::of(&pairs([95, 25, 5, 75]).0, &pairs([95, 25, 5, 75]).1);
        let independent =
            PairedDifference::of(&pairs([60, 60, 40, 40]).0, &pairs([60, 60, 40, 40]).1);
        for d in [correlated, independent] {
            assert!((d.difference - 0.1).abs() < 1e-12);
            assert!(d.low < d.difference && d.difference < d.high);
        }
        assert!(correlated.high - correlated.low < independent.high - independent.low);
        assert!(correlated.low > 0.0, "25 against 5 discordant prompts: {correlated:?}");
        assert!(correlated.mcnemar_p < 0.001 && independent.mcnemar_p > 0.05);
    }
}
