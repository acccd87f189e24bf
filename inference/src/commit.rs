//! Commit rules: which of the active block's masked slots keep their drawn token after a
//! denoising step. Every rule commits at least a *floor* of slots (the static schedule's
//! count for this step), which guarantees a block finishes within `steps_per_block`.

use crate::sampling::Choice;

/// A decoding method as users name it (`--sampler`, `--modes`): autoregressive, or block
/// diffusion with one of the commit rules. Its threshold comes separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Sampler {
    /// Plain autoregressive decoding: one token per forward pass (block size 1).
    Ar,
    /// Fixed number of most-confident slots per step (block size / steps per block).
    Static,
    /// Every slot with confidence above the threshold γ (at least one per step).
    Dynamic,
    /// Lowest-entropy slots while their summed entropy stays within the threshold (nats).
    Entropy,
    /// Every slot whose top-1 minus top-2 probability exceeds the threshold.
    Margin,
}

impl Sampler {
    /// The commit rule of this sampler with `threshold` (AR commits its one slot: static).
    pub fn rule(self, threshold: f32) -> CommitRule {
        match self {
            Self::Ar | Self::Static => CommitRule::Static,
            Self::Dynamic => CommitRule::Dynamic { threshold },
            Self::Entropy => CommitRule::EntropyBounded { budget: threshold },
            Self::Margin => CommitRule::Margin { threshold },
        }
    }

    /// Whether the threshold means anything to this sampler.
    pub fn uses_threshold(self) -> bool {
        matches!(self, Self::Dynamic | Self::Entropy | Self::Margin)
    }

    /// A short label for tables: `ar`, `static`, `dynamic γ=0.9`, `entropy ≤0.5`,
    /// `margin >0.3`.
    pub fn label(self, threshold: f32) -> String {
        match self {
            Self::Ar => "ar".into(),
            Self::Static => "static".into(),
            Self::Dynamic => format!("dynamic γ={threshold}"),
            Self::Entropy => format!("entropy ≤{threshold}"),
            Self::Margin => format!("margin >{threshold}"),
        }
    }
}

/// Which of the active block's masked slots keep their drawn token after a denoising step.
#[derive(Debug, Clone, Copy, PartialEq)]
#[allow(missing_docs)] // each variant's threshold is documented on the variant
pub enum CommitRule {
    /// Exactly the schedule's count of most confident slots (`B / steps_per_block`).
    Static,
    /// Every slot whose confidence exceeds `threshold` (Fast-dLLM's threshold rule).
    Dynamic { threshold: f32 },
    /// Lowest-entropy slots while their summed entropy stays within `budget` nats
    /// (EB-sampler).
    EntropyBounded { budget: f32 },
    /// Every slot whose top-1 minus top-2 probability exceeds `threshold`.
    Margin { threshold: f32 },
}

impl CommitRule {
    /// Rejects a threshold the rule cannot use, saying which range it needs.
    pub fn validate(&self) -> Result<(), String> {
        match *self {
            Self::Static => Ok(()),
            Self::Dynamic { threshold } | Self::Margin { threshold }
                if !(threshold > 0.0 && threshold <= 1.0) =>
            {
                Err(format!("threshold {threshold} is outside (0, 1]"))
            }
            Self::EntropyBounded { budget } if !(budget > 0.0 && budget.is_finite()) => {
                Err(format!("entropy budget {budget} must be positive"))
            }
            _ => Ok(()),
        }
    }

    /// Indices (into `choices`) of the slots to commit, at least `floor` of them (or all
    /// when fewer remain), returned in increasing order.
    pub fn select(&self, choices: &[Choice], floor: usize) -> Vec<usize> {
        let floor = floor.min(choices.len());
        let mut by_confidence: Vec<usize> = (0..choices.len()).collect();
        by_confidence.sort_by(|&a, &b| {
            choices[b].confidence.total_cmp(&choices[a].confidence).then(a.cmp(&b))
        });
        let mut chosen: Vec<usize> = match *self {
            Self::Static => vec![],
            Self::Dynamic { threshold } => {
                (0..choices.len()).filter(|&i| choices[i].confidence > threshold).collect()
            }
            Self::Margin { threshold } => {
                (0..choices.len()).filter(|&i| choices[i].margin > threshold).collect()
            }
            Self::EntropyBounded { budget } => {
                let mut by_entropy: Vec<usize> = (0..choices.len()).collect();
                by_entropy.sort_by(|&a, &b| {
                    choices[a].entropy.total_cmp(&choices[b].entropy).then(a.cmp(&b))
                });
                let mut spent = 0.0;
                by_entropy
                    .into_iter()
                    .take_while(|&i| {
                        spent += choices[i].entropy;
                        spent <= budget
                    })
                    .collect()
            }
        };
        // Top up to the floor with the most confident remaining slots.
        for &i in &by_confidence {
            if chosen.len() >= floor {
                break;
            }
            if !chosen.contains(&i) {
                chosen.push(i);
            }
        }
        chosen.sort_unstable();
        chosen
    }
}

/// How many slots the static schedule unmasks at each of `steps` steps when `masked`
/// slots start masked: as even as possible, earlier steps taking the remainder.
pub fn static_schedule(masked: usize, steps: usize) -> Vec<usize> {
    let steps = steps.clamp(1, masked.max(1));
    (0..steps).map(|i| masked / steps + usize::from(i < masked % steps)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn choices(conf: &[f32]) -> Vec<Choice> {
        conf.iter()
            .map(|&c| Choice { token: 0, confidence: c, entropy: 1.0 - c, margin: c / 2.0 })
            .collect()
    }

    #[test]
    fn static_commits_the_most_confident() {
        assert_eq!(CommitRule::Static.select(&choices(&[0.1, 0.9, 0.5, 0.8]), 2), vec![1, 3]);
    }

    #[test]
    fn dynamic_commits_everything_above_threshold_but_at_least_the_floor() {
        let c = choices(&[0.95, 0.2, 0.99, 0.3]);
        assert_eq!(CommitRule::Dynamic { threshold: 0.9 }.select(&c, 1), vec![0, 2]);
        assert_eq!(CommitRule::Dynamic { threshold: 0.999 }.select(&c, 1), vec![2]);
    }

    #[test]
    fn dynamic_threshold_one_equals_static_one_per_step() {
        let c = choices(&[0.4, 0.7, 1.0, 0.7]);
        assert_eq!(
            CommitRule::Dynamic { threshold: 1.0 }.select(&c, 1),
            CommitRule::Static.select(&c, 1)
        );
    }

    #[test]
    fn entropy_bound_takes_low_entropy_prefix() {
        // entropies 0.1, 0.8, 0.05, 0.6 -> sorted 0.05, 0.1, 0.6 ... budget 0.2 keeps two.
        let c = choices(&[0.9, 0.2, 0.95, 0.4]);
        assert_eq!(CommitRule::EntropyBounded { budget: 0.2 }.select(&c, 1), vec![0, 2]);
    }

    #[test]
    fn margin_rule_uses_margin() {
        let c = choices(&[0.9, 0.2, 0.5, 0.4]); // margins 0.45, 0.1, 0.25, 0.2
        assert_eq!(CommitRule::Margin { threshold: 0.22 }.select(&c, 1), vec![0, 2]);
    }

    #[test]
    fn schedule_spreads_remainder_first() {
        assert_eq!(static_schedule(4, 4), vec![1, 1, 1, 1]);
        assert_eq!(static_schedule(5, 2), vec![3, 2]);
        assert_eq!(static_schedule(2, 4), vec![1, 1]);
        assert_eq!(static_schedule(0, 4), vec![0]);
    }
}
