//! State selection: which partially denoised state `x_t` of a rollout is trained on.
//!
//! A rollout records for every generated token the step that unmasked it
//! (`first_unmask_step`). The state the sampler fed the model at step `s` is "every token
//! unmasked at a step ≥ s is still masked". Both rules below only ever produce such
//! states, so training happens exactly on states the sampler visited.

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

/// Forward-process masking (the baselines' states): each block draws `t ~ U(0, 1)` and
/// masks each of its slots with probability `t` (at least one). Returns the mask and,
/// per slot, the `t` of its block (for the `1/t` weight).
pub fn random_mask(
    prompt_len: usize,
    response_len: usize,
    block_size: usize,
    rng: &mut StdRng,
) -> (Vec<bool>, Vec<f32>) {
    let mut masked = vec![false; response_len];
    let mut times = vec![0.0; response_len];
    for (start, end) in response_blocks(prompt_len, response_len, block_size) {
        // Keep t away from 0 so that the 1/t weight stays bounded.
        let t: f32 = rng.random_range(MIN_MASK_RATE..=1.0);
        for j in start..end {
            masked[j] = rng.random::<f32>() < t;
            times[j] = t;
        }
        if !masked[start..end].contains(&true) {
            masked[rng.random_range(start..end)] = true;
        }
    }
    (masked, times)
}

/// Smallest masking rate the baselines draw (bounds the `1/t` weight by 1000).
const MIN_MASK_RATE: f32 = 1e-3;

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
    fn random_mask_masks_at_least_one_slot_per_block() {
        let mut rng = StdRng::seed_from_u64(3);
        for _ in 0..50 {
            let (masked, times) = select_random(&mut rng);
            for (start, end) in response_blocks(3, 9, 4) {
                assert!(masked[start..end].contains(&true));
                assert!(times[start..end].iter().all(|&t| t == times[start] && t >= MIN_MASK_RATE));
            }
        }
    }

    fn select_random(rng: &mut StdRng) -> (Vec<bool>, Vec<f32>) {
        random_mask(3, 9, 4, rng)
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
