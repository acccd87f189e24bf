//! The global batch's totals in a data-parallel step. Every device holds a share of the
//! step's rows, but the loss's mean runs over the whole batch (the examples that carry
//! loss, or the response tokens): each share posts its own count and waits for the sum
//! of all shares' counts, so that every share normalises by the same global number and
//! the shares' gradients add up to the gradient of the single-device step.

use std::sync::{Condvar, Mutex, PoisonError};

/// A reusable rendezvous of the `shares` workers of a data-parallel step (one per device,
/// threads of one process), summing one number per worker per step.
#[derive(Debug)]
pub struct BatchTotals {
    shares: usize,
    round: Mutex<Round>,
    done: Condvar,
}

/// The round in progress and the result of the last finished one.
#[derive(Debug, Default)]
struct Round {
    /// The step this round sums (every share must post the same step).
    step: Option<usize>,
    arrived: usize,
    sum: f64,
    /// Finished rounds; a waiter leaves when it changes.
    generation: u64,
    /// The sum of the last finished round. The next round cannot finish before every
    /// waiter of this one has read it, because each of them must post to it first.
    last: f64,
}

impl BatchTotals {
    /// A rendezvous of `shares` workers (1: a single-device run, where the sum is the
    /// worker's own number and nothing waits).
    pub fn new(shares: usize) -> Self {
        Self { shares: shares.max(1), round: Mutex::default(), done: Condvar::new() }
    }

    /// Posts this share's `value` for `step` and returns the sum over all shares, once
    /// every share has posted. Shares run their steps in lockstep (burn-train hands each
    /// device one batch per step and waits for all of them), so a round never mixes steps.
    pub fn sum(&self, step: usize, value: f64) -> f64 {
        if self.shares == 1 {
            return value;
        }
        let mut round = self.round.lock().unwrap_or_else(PoisonError::into_inner);
        let started = *round.step.get_or_insert(step);
        assert_eq!(started, step, "a data-parallel share posted step {step} during step {started}");
        round.arrived += 1;
        round.sum += value;
        if round.arrived == self.shares {
            round.last = round.sum;
            round.generation += 1;
            (round.step, round.arrived, round.sum) = (None, 0, 0.0);
            self.done.notify_all();
            return round.last;
        }
        let generation = round.generation;
        let round = self
            .done
            .wait_while(round, |r| r.generation == generation)
            .unwrap_or_else(PoisonError::into_inner);
        round.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn every_share_gets_the_sum_of_its_round_over_many_rounds() {
        let totals = Arc::new(BatchTotals::new(3));
        let workers: Vec<_> = (0..3)
            .map(|share| {
                let totals = totals.clone();
                std::thread::spawn(move || {
                    (0..50).map(|step| totals.sum(step, (step * 10 + share) as f64)).collect()
                })
            })
            .collect();
        for worker in workers {
            let sums: Vec<f64> = worker.join().unwrap();
            let expected: Vec<f64> = (0..50).map(|step| (30 * step + 3) as f64).collect();
            assert_eq!(sums, expected);
        }
    }

    #[test]
    fn a_single_share_is_its_own_total() {
        assert_eq!(BatchTotals::new(1).sum(7, 2.5), 2.5);
    }
}
