//! The numerical guard: a step whose loss or gradients are not finite takes no optimizer
//! step (the weights and Adam moments stay as they were), is reported on stderr and counted
//! in `metrics.jsonl` (`skipped`, `skipped_total`). `max_bad` skipped optimizer steps in
//! a row stop the run through the Learner's interrupter; the epoch in progress then writes
//! no checkpoint, so the last good one stays the newest. A failed rollout stops the run the
//! same way (a Learner step cannot return an error), and the trainer reports it.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use burn::train::Interrupter;

use crate::rollout::RolloutError;

/// Watches every step for non-finite numbers and failed rollouts, and stops the run
/// through the Learner's interrupter when it must.
pub struct NumericGuard {
    max_bad: usize,
    interrupter: Interrupter,
    /// Learner epoch length and micro-batches per optimizer step: the Learner accumulates
    /// within an epoch and drops a remainder at its end.
    steps_per_epoch: usize,
    grad_accum: usize,
    /// Set by a bad micro-batch, consumed by the optimizer step it belongs to.
    skip_update: AtomicBool,
    /// Optimizers that act on each judgement: 1, or one per device under DDP, where every
    /// device steps its own copy of the weights and all must take the same decision.
    optimizers: usize,
    /// The decision of the optimizer step being taken, and how many optimizers have read it.
    decision: Mutex<(usize, bool)>,
    /// The first step of the accumulation group being judged.
    group_start: Mutex<Option<usize>>,
    last_bad_step: AtomicUsize,
    in_row: AtomicUsize,
    stopped: Mutex<Option<String>>,
    /// The first failed rollout: its global step and error.
    rollout_failure: Mutex<Option<(usize, RolloutError)>>,
}

impl std::fmt::Debug for NumericGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NumericGuard")
            .field("max_bad", &self.max_bad)
            .field("in_row", &self.in_row)
            .finish_non_exhaustive()
    }
}

impl NumericGuard {
    /// A guard that stops the run through `interrupter` after `max_bad` skipped
    /// optimizer steps in a row.
    pub fn new(max_bad: usize, interrupter: Interrupter) -> Self {
        Self {
            max_bad,
            interrupter,
            steps_per_epoch: 1,
            grad_accum: 1,
            skip_update: AtomicBool::new(false),
            optimizers: 1,
            decision: Mutex::new((0, false)),
            group_start: Mutex::new(None),
            last_bad_step: AtomicUsize::new(0),
            in_row: AtomicUsize::new(0),
            stopped: Mutex::new(None),
            rollout_failure: Mutex::new(None),
        }
    }

    /// For gradient accumulation: which global steps start an optimizer step's group.
    pub fn with_accumulation(self, steps_per_epoch: usize, grad_accum: usize) -> Self {
        Self { steps_per_epoch: steps_per_epoch.max(1), grad_accum: grad_accum.max(1), ..self }
    }

    /// For DDP: `optimizers` optimizers, one per device, ask for each decision.
    pub fn with_optimizers(self, optimizers: usize) -> Self {
        Self { optimizers: optimizers.max(1), ..self }
    }

    /// Judges one micro-batch of global step `step`; true when it is bad (its optimizer
    /// step will be skipped).
    pub fn check(&self, step: usize, loss: f64, grad_norm: f64) -> bool {
        // Held to the end: the devices of a data-parallel step judge their shares of the
        // same step concurrently, and only the first of them may open the group.
        let mut group = self.group_start.lock().unwrap_or_else(PoisonError::into_inner);
        if (step % self.steps_per_epoch).is_multiple_of(self.grad_accum) && *group != Some(step) {
            // A new group: a bad micro-batch of a group the Learner dropped at the end of
            // an epoch must not cancel this one.
            *group = Some(step);
            self.skip_update.store(false, Ordering::SeqCst);
        }
        let what = match (loss.is_finite(), grad_norm.is_finite()) {
            (true, true) => return false,
            (false, _) => format!("loss is {loss}"),
            (true, false) => format!("gradient norm is {grad_norm}"),
        };
        eprintln!("warning: step {step}: {what}; skipping its optimizer step");
        self.last_bad_step.store(step, Ordering::SeqCst);
        self.skip_update.store(true, Ordering::SeqCst);
        true
    }

    /// Called at each optimizer step (by each of the `optimizers`): whether to skip it.
    /// The first caller decides, the others get the same answer. The `max_bad`-th skip in
    /// a row stops the run.
    pub fn skip_update(&self) -> bool {
        let mut decision = self.decision.lock().unwrap_or_else(PoisonError::into_inner);
        let (readers, skip) = &mut *decision;
        if *readers == 0 {
            *skip = self.decide();
        }
        *readers = (*readers + 1) % self.optimizers;
        *skip
    }

    /// Consumes the judgement of the optimizer step being taken.
    fn decide(&self) -> bool {
        if !self.skip_update.swap(false, Ordering::SeqCst) {
            self.in_row.store(0, Ordering::SeqCst);
            return false;
        }
        let in_row = self.in_row.fetch_add(1, Ordering::SeqCst) + 1;
        if in_row >= self.max_bad {
            let message = format!(
                "{in_row} optimizer steps in a row had a non-finite loss or gradient (the last at step {}; max_bad_steps = {})",
                self.last_bad_step.load(Ordering::SeqCst),
                self.max_bad
            );
            self.interrupter.stop(Some(&message));
            *self.stopped.lock().expect("not poisoned") = Some(message);
        }
        true
    }

    /// Why the guard stopped the run, if it did.
    pub fn stopped(&self) -> Option<String> {
        self.stopped.lock().expect("not poisoned").clone()
    }

    /// Records that the rollout of global step `step` failed and stops the run.
    pub fn fail_rollout(&self, step: usize, error: RolloutError) {
        let message = format!("the rollout of step {step} failed: {error}");
        self.rollout_failure.lock().expect("not poisoned").get_or_insert((step, error));
        self.interrupter.stop(Some(&message));
    }

    /// The first failed rollout, if any: its global step and error.
    pub fn rollout_failure(&self) -> Option<(usize, RolloutError)> {
        self.rollout_failure.lock().expect("not poisoned").clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_steps_are_skipped_and_only_a_run_of_them_stops_training() {
        let interrupter = Interrupter::new();
        let guard = NumericGuard::new(2, interrupter.clone());
        assert!(!guard.check(0, 1.0, 3.0) && !guard.skip_update());
        assert!(guard.check(1, f64::NAN, 3.0) && guard.skip_update());
        assert!(!guard.check(2, 1.0, 3.0) && !guard.skip_update(), "a good step resets the count");
        assert!(guard.check(3, 1.0, f64::INFINITY) && guard.skip_update());
        assert!(!interrupter.should_stop());
        assert!(guard.check(4, f64::INFINITY, f64::NAN) && guard.skip_update());
        assert!(interrupter.should_stop());
        let message = guard.stopped().unwrap();
        assert!(
            message.contains("2 optimizer steps in a row") && message.contains("step 4"),
            "{message}"
        );
    }

    #[test]
    fn a_bad_share_of_a_data_parallel_step_skips_the_step_whatever_the_order() {
        let guard = NumericGuard::new(9, Interrupter::new());
        assert!(guard.check(0, f64::NAN, 1.0) && !guard.check(0, 1.0, 1.0));
        assert!(guard.skip_update(), "the good share judged second must not reopen the group");
        assert!(!guard.check(1, 1.0, 1.0) && guard.check(1, 1.0, f64::NAN) && guard.skip_update());
        assert!(!guard.check(2, 1.0, 1.0) && !guard.check(2, 1.0, 1.0) && !guard.skip_update());
    }

    #[test]
    fn under_ddp_every_optimizer_gets_the_same_decision_and_a_skip_counts_once() {
        let interrupter = Interrupter::new();
        let guard = NumericGuard::new(2, interrupter.clone()).with_optimizers(3);
        assert!(!guard.check(0, 1.0, 1.0) && guard.check(0, 1.0, f64::NAN));
        assert!((0..3).all(|_| guard.skip_update()), "all three skip step 0");
        assert!(!interrupter.should_stop(), "one skipped step, counted once");
        assert!(!guard.check(1, 1.0, 1.0) && (0..3).all(|_| !guard.skip_update()));
        assert!(guard.check(2, f64::NAN, 1.0) && (0..3).all(|_| guard.skip_update()));
        assert!(guard.check(3, f64::NAN, 1.0) && guard.skip_update());
        assert!(interrupter.should_stop(), "two in a row stop the run");
        assert!(guard.skip_update() && guard.skip_update(), "the others still skip step 3");
    }

    #[test]
    fn with_accumulation_a_bad_micro_batch_skips_only_its_own_group() {
        // Epochs of 5 steps, groups of 2: (0 1) (2 3) [4 dropped] | (5 6) …
        let guard = NumericGuard::new(9, Interrupter::new()).with_accumulation(5, 2);
        assert!(!guard.check(0, 1.0, 1.0) && guard.check(1, f64::NAN, 1.0) && guard.skip_update());
        assert!(!guard.check(2, 1.0, 1.0) && !guard.check(3, 1.0, 1.0) && !guard.skip_update());
        assert!(guard.check(4, f64::NAN, 1.0), "the epoch's last, dropped micro-batch");
        assert!(
            !guard.check(5, 1.0, 1.0) && !guard.check(6, 1.0, 1.0) && !guard.skip_update(),
            "step 4 must not skip the next group"
        );
    }
}
