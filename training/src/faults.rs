//! Faults a test injects into a run, to check that the numerical guard and crash recovery
//! work. Empty (the default) in every real run: never read from files or flags, never
//! saved.

use std::path::Path;

/// Called with a checkpoint's temporary file once it is written and synced, before the
/// rename (tests use it to kill a run mid-write).
pub type BeforeRename = fn(&Path);

/// The faults of one run, by global step.
#[derive(Debug, Clone, Default)]
pub struct FaultInjection {
    /// Global steps whose loss is multiplied by NaN (so are all their gradients).
    pub nan_loss_at: Vec<usize>,
    /// Global steps whose gradients are made NaN while the loss stays finite.
    pub nan_grads_at: Vec<usize>,
    /// Called with each checkpoint's temporary file after it is written and synced, just
    /// before it is renamed into place.
    pub before_rename: Option<BeforeRename>,
}

impl PartialEq for FaultInjection {
    /// Hooks compare by presence (function addresses are not meaningful).
    fn eq(&self, other: &Self) -> bool {
        self.nan_loss_at == other.nan_loss_at
            && self.nan_grads_at == other.nan_grads_at
            && self.before_rename.is_some() == other.before_rename.is_some()
    }
}
