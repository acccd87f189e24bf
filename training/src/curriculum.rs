//! Rollout-length curriculum (paper §4.3): early rollouts of a freshly converted student
//! are poor, so the maximum generation length grows from `min` to `max` over `ramp`
//! rollout steps.

use serde::{Deserialize, Serialize};

/// How the maximum rollout length grows from its minimum to its maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum RampShape {
    /// Paper: `L_s = min(L_max, L_min + ⌊s / S_warm · (L_max − L_min)⌋)`.
    Linear,
    /// Reference code: `L_min + (L_max − L_min) · (1 − cos(π/2 · min(s / S_warm, 1)))`.
    Cosine,
}

/// The rollout-length schedule of a run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Curriculum {
    /// Maximum rollout length at step 0.
    pub min_len: usize,
    /// Maximum rollout length once ramped up.
    pub max_len: usize,
    /// Rollout steps to reach `max_len` (0 = start at `max_len`).
    pub ramp_steps: usize,
    /// How the length grows along the ramp.
    pub shape: RampShape,
}

impl Curriculum {
    /// Maximum rollout length at rollout step `step` (0-based).
    pub fn max_len_at(&self, step: usize) -> usize {
        if self.ramp_steps == 0 || self.max_len <= self.min_len {
            return self.max_len;
        }
        let progress = (step as f64 / self.ramp_steps as f64).min(1.0);
        let span = (self.max_len - self.min_len) as f64;
        let extra = match self.shape {
            RampShape::Linear => (progress * span).floor(),
            RampShape::Cosine => {
                (span * (1.0 - (std::f64::consts::FRAC_PI_2 * progress).cos())).round()
            }
        };
        (self.min_len + extra as usize).min(self.max_len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ramps_reach_max_and_stay() {
        for shape in [RampShape::Linear, RampShape::Cosine] {
            let c = Curriculum { min_len: 100, max_len: 4000, ramp_steps: 10, shape };
            assert_eq!(c.max_len_at(0), 100);
            assert_eq!(c.max_len_at(10), 4000);
            assert_eq!(c.max_len_at(1000), 4000);
            let lens: Vec<usize> = (0..=10).map(|s| c.max_len_at(s)).collect();
            assert!(lens.windows(2).all(|w| w[0] <= w[1]), "{lens:?}");
        }
        let linear =
            Curriculum { min_len: 100, max_len: 4000, ramp_steps: 10, shape: RampShape::Linear };
        assert_eq!(linear.max_len_at(5), 2050);
        // Cosine starts slower than linear: 1 - cos(pi/4) = 0.2929
        let cosine = Curriculum { shape: RampShape::Cosine, ..linear };
        assert_eq!(
            cosine.max_len_at(5),
            100 + (3900.0f64 * (1.0 - std::f64::consts::FRAC_PI_4.cos())).round() as usize
        );
    }
}
