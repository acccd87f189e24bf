//! Train/validation/test split by a hash of the prompt: a problem's split never depends on
//! the seed or on which generator produced it, so the splits cannot overlap.
//!
//! The held-out 10 % of the hash space is halved into validation and test (by a second
//! part of the same hash), so the committed teacher, pretrained on the other 90 % before
//! validation existed, has seen neither.

use serde::{Deserialize, Serialize};

/// Which side of the split a problem is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Split {
    /// Training prompts (90 % of the problem space).
    Train,
    /// Held-out problems for choosing hyper-parameters (5 %).
    Validation,
    /// Held-out problems for reporting (5 %), never used to choose anything.
    Test,
}

/// Percentage of the problem space held out (validation and test together).
const HELD_OUT_PERCENT: u64 = 10;

impl Split {
    /// The split of the problem with this prompt.
    pub fn of(prompt: &str) -> Split {
        let hash = fnv1a(prompt.as_bytes());
        match (hash % 100 < HELD_OUT_PERCENT, hash / 100 % 2) {
            (false, _) => Split::Train,
            (true, 0) => Split::Test,
            (true, _) => Split::Validation,
        }
    }

    /// The split's name, as serde writes it: `train`, `validation`, `test`.
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Validation => "validation",
            Split::Test => "test",
        }
    }

    /// Keeps the splits' random streams apart for the same user seed.
    pub(super) fn seed_salt(self) -> u64 {
        match self {
            Split::Train => 0,
            Split::Validation => 0x0A11_DA7E_0A11_DA7E,
            Split::Test => 0x7E57_7E57_7E57_7E57,
        }
    }
}

/// 64-bit FNV-1a: stable across platforms and Rust versions (unlike `DefaultHasher`).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_splits_name_is_its_serde_name() {
        for split in [Split::Train, Split::Validation, Split::Test] {
            assert_eq!(serde_json::to_value(split).unwrap(), split.name());
        }
    }

    #[test]
    fn fnv1a_matches_the_published_test_vectors() {
        assert_eq!(fnv1a(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x85944171f73967e8);
    }
}
