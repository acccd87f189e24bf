//! State selection: which partially denoised state `x_t` of a sequence is trained on.
//!
//! A rollout records for every slot it filled the step that unmasked it
//! (`first_unmask_step`; the slots after the stop token in its block included). The state
//! the sampler fed the model at step `s` is "every slot unmasked at a step ≥ s is still
//! masked". Both OPDLM rules below only ever produce such states, so training happens
//! exactly on states the sampler visited. The random-masking objectives draw `x_t` from the
//! forward process instead ([`random_mask`]).

use rand::rngs::StdRng;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// Which visited state of a rollout OPDLM trains on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "kebab-case")]
pub enum StateSelection {
    /// Reference default: every block picks, independently and uniformly, one of the
    /// steps at which it changed.
    PerBlock,
    /// Paper Algorithm 1: one step of the whole trajectory, uniformly; later blocks are
    /// then fully masked and earlier blocks clean.
    Trajectory,
}

/// Which response slots are masked in the selected `x_t` (the loss slots).
///
/// `prompt_len` places the response on absolute positions so that blocks are aligned as
/// the sampler aligned them (block `k` = positions `kB..(k+1)B`).
pub fn select_masked(
    rule: StateSelection,
    first_unmask_step: &[usize],
    prompt_len: usize,
    block_size: usize,
    rng: &mut StdRng,
) -> Vec<bool> {
    let len = first_unmask_step.len();
    let mut masked = vec![false; len];
    if len == 0 {
        return masked;
    }
    match rule {
        StateSelection::Trajectory => {
            let steps = first_unmask_step.iter().max().expect("non-empty") + 1;
            let chosen = rng.random_range(0..steps);
            for (m, &s) in masked.iter_mut().zip(first_unmask_step) {
                *m = s >= chosen;
            }
        }
        StateSelection::PerBlock => {
            for (start, end) in response_blocks(prompt_len, len, block_size) {
                let steps = &first_unmask_step[start..end];
                let mut changed: Vec<usize> = steps.to_vec();
                changed.sort_unstable();
                changed.dedup();
                let chosen = changed[rng.random_range(0..changed.len())];
                for (m, &s) in masked[start..end].iter_mut().zip(steps) {
                    *m = s >= chosen;
                }
            }
        }
    }
    masked
}

/// The forward process of the random-masking objectives: every block draws a masking
/// rate `t ~ U[min_rate, max_rate]` and masks each of its slots with probability `t`; a
/// draw whose masked fraction falls outside the allowed range is redrawn with the same
/// `t` (BD3LM's `training.resample`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MaskingSchedule {
    /// Smallest masking rate (and smallest masked fraction) of a block.
    pub min_rate: f32,
    /// Largest masking rate (and largest masked fraction) of a block.
    pub max_rate: f32,
}

impl MaskingSchedule {
    /// `t ~ U(10⁻³, 1)` with at least one masked slot per block: the distillation
    /// baselines (paper Eq. 6, the weight is 1 so no `t` can dominate). The floor is the
    /// `sampling_eps` of bd3lms' unclipped schedule.
    pub const FULL_RANGE: Self = Self { min_rate: 1e-3, max_rate: 1.0 };

    /// BD3LM's clipped schedule for blocks of 4 (Arriola et al., 2025, "clipped noise
    /// schedules"): `t ~ U[0.45, 0.95]`, masked fraction resampled into that range. With
    /// the `1/t` weight this bounds a slot's weight by 1/0.45 instead of 1000.
    pub const BD3LM_CLIPPED: Self = Self { min_rate: 0.45, max_rate: 0.95 };

    /// Whether masking `masked` of `slots` slots is an allowed draw: at least one, and
    /// within the range when any count is (a one-slot block cannot be 45–95 % masked).
    fn allows(&self, masked: usize, slots: usize) -> bool {
        let within = |k: usize| {
            let fraction = k as f32 / slots as f32;
            fraction >= self.min_rate && fraction <= self.max_rate
        };
        masked >= 1 && (within(masked) || !(1..=slots).any(within))
    }
}

/// Forward-process masking (the random-masking objectives' states): per block a rate `t`
/// from `schedule`, then each slot masked with probability `t`, redrawn until the count is
/// allowed. Returns the mask and, per slot, the `t` of its block (for the `1/t` weight).
pub fn random_mask(
    prompt_len: usize,
    response_len: usize,
    block_size: usize,
    schedule: MaskingSchedule,
    rng: &mut StdRng,
) -> (Vec<bool>, Vec<f32>) {
    let mut masked = vec![false; response_len];
    let mut times = vec![0.0; response_len];
    for (start, end) in response_blocks(prompt_len, response_len, block_size) {
        let t: f32 = rng.random_range(schedule.min_rate..=schedule.max_rate);
        loop {
            for m in &mut masked[start..end] {
                *m = rng.random::<f32>() < t;
            }
            let count = masked[start..end].iter().filter(|&&m| m).count();
            if schedule.allows(count, end - start) {
                break;
            }
        }
        times[start..end].fill(t);
    }
    (masked, times)
}

/// Response index ranges `[start, end)` of each block, blocks aligned to absolute
/// positions (the first may be partial when the prompt ends mid-block).
pub fn response_blocks(
    prompt_len: usize,
    response_len: usize,
    block_size: usize,
) -> Vec<(usize, usize)> {
    let mut blocks = Vec::new();
    let mut pos = prompt_len;
    let end = prompt_len + response_len;
    while pos < end {
        let block_end = ((pos / block_size + 1) * block_size).min(end);
        blocks.push((pos - prompt_len, block_end - prompt_len));
        pos = block_end;
    }
    blocks
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn blocks_follow_absolute_positions() {
        // prompt of 6, block 4: first response block covers positions 6,7 only.
        assert_eq!(response_blocks(6, 7, 4), vec![(0, 2), (2, 6), (6, 7)]);
        assert_eq!(response_blocks(8, 4, 4), vec![(0, 4)]);
    }

    #[test]
    fn per_block_states_mask_everything_unmasked_at_or_after_a_step_of_that_block() {
        let steps = [0, 1, 1, 2, 4, 3, 5, 5];
        let mut rng = StdRng::seed_from_u64(1);
        for _ in 0..50 {
            let masked = select_masked(StateSelection::PerBlock, &steps, 2, 4, &mut rng);
            for (start, end) in response_blocks(2, steps.len(), 4) {
                let block = &steps[start..end];
                // Some step s of this block explains the mask exactly.
                let ok = block.iter().any(|&s| (start..end).all(|i| masked[i] == (steps[i] >= s)));
                assert!(ok, "{masked:?}");
                assert!(
                    masked[start..end].iter().any(|&m| m),
                    "a chosen state masks at least one slot"
                );
            }
        }
    }

    #[test]
    fn random_masks_keep_every_block_within_its_schedule() {
        let mut rng = StdRng::seed_from_u64(3);
        for schedule in [MaskingSchedule::FULL_RANGE, MaskingSchedule::BD3LM_CLIPPED] {
            let mut fractions = vec![];
            for _ in 0..200 {
                // Prompt of 3, block 4: blocks of 1, 4, 4 and 2 slots.
                let (masked, times) = random_mask(3, 11, 4, schedule, &mut rng);
                for (start, end) in response_blocks(3, 11, 4) {
                    let count = masked[start..end].iter().filter(|&&m| m).count();
                    assert!(count >= 1, "{schedule:?}: a block without a masked slot");
                    let t = times[start];
                    assert!(times[start..end].iter().all(|&x| x == t));
                    assert!((schedule.min_rate..=schedule.max_rate).contains(&t));
                    if end - start > 1 {
                        fractions.push(count as f32 / (end - start) as f32);
                    }
                }
            }
            let clipped = schedule == MaskingSchedule::BD3LM_CLIPPED;
            let inside = fractions.iter().all(|f| (0.45..=0.95).contains(f));
            assert_eq!(inside, clipped, "{schedule:?}: masked fractions {fractions:?}");
        }
    }

    #[test]
    fn trajectory_state_is_one_global_step() {
        let steps = [0, 1, 1, 2, 4, 3];
        let mut rng = StdRng::seed_from_u64(2);
        for _ in 0..30 {
            let masked = select_masked(StateSelection::Trajectory, &steps, 0, 2, &mut rng);
            let ok = (0..=4).any(|s| masked.iter().zip(&steps).all(|(&m, &t)| m == (t >= s)));
            assert!(ok);
        }
    }
}
