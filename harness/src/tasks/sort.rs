//! Sorting a list of 4–8 digits: `sort 53819=` → `13589`.

use rand::rngs::StdRng;

use super::{uniform, Problem};

/// How every sorting prompt starts.
pub const PREFIX: &str = "sort ";
const MIN_LEN: u32 = 4;
const MAX_LEN: u32 = 8;

/// A random problem.
pub fn draw(rng: &mut StdRng) -> Problem {
    let len = uniform(rng, MIN_LEN..MAX_LEN + 1);
    let list: String = (0..len).map(|_| char::from(b'0' + uniform(rng, 0..10) as u8)).collect();
    problem(&list)
}

/// The problem of sorting the digits of `list`.
pub fn problem(list: &str) -> Problem {
    let mut sorted: Vec<char> = list.chars().collect();
    sorted.sort_unstable();
    Problem { prompt: format!("{PREFIX}{list}="), answer: sorted.into_iter().collect() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::Task;

    #[test]
    fn hand_checked_examples() {
        assert_eq!(
            problem("53819"),
            Problem { prompt: "sort 53819=".into(), answer: "13589".into() }
        );
        assert_eq!(problem("0000").answer, "0000");
        assert!(Task::Sort.is_correct("13589", "13589"));
        assert!(!Task::Sort.is_correct("1358", "13589"));
        assert!(!Task::Sort.is_correct("13598", "13589"));
    }
}
