//! Learning rate: linear warmup to the peak, then cosine decay to the final rate (paper
//! Table 13: 1e-5 → 1e-6, 5 warmup steps). burn's composed scheduler multiplies its parts
//! and its cosine restarts, so this one is written out; its checkpoint state is the step.
//! Under DDP every device's Learner advances the schedule once per device for each of its
//! micro-batches; `with_calls_per_iteration` keeps the rates those of one iteration.

use burn::lr_scheduler::LrScheduler;
use burn::prelude::Backend;

/// The run's learning-rate schedule (burn's `LrScheduler`).
#[derive(Debug, Clone, PartialEq)]
pub struct WarmupCosine {
    /// Rate at the end of the warmup.
    pub peak: f64,
    /// Rate at the last step.
    pub last: f64,
    /// Iterations of linear warmup from 0.
    pub warmup: usize,
    /// Iterations in all.
    pub total: usize,
    /// `step()` calls per iteration (1; the device count under DDP).
    calls_per_iteration: usize,
    /// `step()` calls so far.
    calls: usize,
}

impl WarmupCosine {
    /// A schedule over `total` iterations, starting at iteration 0.
    pub fn new(peak: f64, last: f64, warmup: usize, total: usize) -> Self {
        Self { peak, last, warmup, total, calls_per_iteration: 1, calls: 0 }
    }

    /// The same schedule, advanced by `calls` calls of `step()` per iteration.
    pub fn with_calls_per_iteration(self, calls: usize) -> Self {
        Self { calls_per_iteration: calls.max(1), ..self }
    }

    /// The iteration the calls so far have reached (1-based; a partial one counts).
    fn iteration(&self) -> usize {
        self.calls.div_ceil(self.calls_per_iteration)
    }

    /// Learning rate of iteration `step` (1-based, as the Learner counts).
    pub fn at(&self, step: usize) -> f64 {
        if step <= self.warmup {
            return self.peak * step as f64 / self.warmup.max(1) as f64;
        }
        let progress = ((step - self.warmup) as f64
            / (self.total.saturating_sub(self.warmup)).max(1) as f64)
            .min(1.0);
        self.last + 0.5 * (self.peak - self.last) * (1.0 + (std::f64::consts::PI * progress).cos())
    }
}

impl LrScheduler for WarmupCosine {
    type Record<B: Backend> = usize;

    fn step(&mut self) -> f64 {
        self.calls += 1;
        self.at(self.iteration())
    }

    /// The iteration, whatever the calls per iteration: a checkpoint resumes under
    /// another strategy.
    fn to_record<B: Backend>(&self) -> usize {
        self.iteration()
    }

    fn load_record<B: Backend>(mut self, record: usize) -> Self {
        self.calls = record * self.calls_per_iteration;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warms_up_linearly_then_decays_to_the_final_rate() {
        let s = WarmupCosine::new(1e-5, 1e-6, 5, 105);
        assert!((s.at(1) - 2e-6).abs() < 1e-15);
        assert!((s.at(5) - 1e-5).abs() < 1e-15);
        assert!((s.at(55) - 5.5e-6).abs() < 1e-12);
        assert!((s.at(105) - 1e-6).abs() < 1e-15);
        assert!((s.at(500) - 1e-6).abs() < 1e-15);
    }

    #[test]
    fn several_calls_per_iteration_give_the_rates_of_one_and_the_same_record() {
        type B = burn::backend::NdArray<f32>;
        let mut one = WarmupCosine::new(1e-5, 1e-6, 5, 20);
        let mut three = one.clone().with_calls_per_iteration(3);
        for _ in 0..7 {
            let rate = one.step();
            assert_eq!([three.step(), three.step(), three.step()], [rate; 3]);
        }
        assert_eq!(three.to_record::<B>(), one.to_record::<B>());
        let resumed = WarmupCosine::new(1e-5, 1e-6, 5, 20).with_calls_per_iteration(3);
        let mut resumed = resumed.load_record::<B>(one.to_record::<B>());
        assert_eq!(resumed.step(), one.step());
    }
}
