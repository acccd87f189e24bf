//! Built-in tasks with exactly checkable answers, generated from a seed (no downloads):
//! the default conversion trains and evaluates on them.
//!
//! - [`addition`]: three-digit addition written out digit by digit with carries, so the
//!   answer needs many tokens of working;
//! - [`sort`]: sorting a list of digits (a structured task).
//!
//! Train and test splits are disjoint by construction: a problem's split is a hash of its
//! prompt (see [`split`]).

pub mod addition;
pub mod sort;
pub mod split;
pub mod tokenizer;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

pub use split::Split;

/// One problem: the prompt the model sees and the reference answer it should write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// What the model is given (`add 347+085=`).
    pub prompt: String,
    /// What it should write.
    pub answer: String,
}

/// A built-in task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Task {
    /// Three-digit addition with its working.
    Addition,
    /// Sorting 4–8 digits.
    Sort,
}

impl Task {
    /// Every task, in the order batches alternate them.
    pub const ALL: [Task; 2] = [Task::Addition, Task::Sort];

    /// The task's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Task::Addition => "addition",
            Task::Sort => "sort",
        }
    }

    /// A random problem (of either split).
    fn draw(self, rng: &mut StdRng) -> Problem {
        match self {
            Task::Addition => addition::draw(rng),
            Task::Sort => sort::draw(rng),
        }
    }

    /// Which task a prompt belongs to, if any.
    pub fn of_prompt(prompt: &str) -> Option<Task> {
        Task::ALL.into_iter().find(|t| prompt.starts_with(t.prompt_prefix()))
    }

    fn prompt_prefix(self) -> &'static str {
        match self {
            Task::Addition => addition::PREFIX,
            Task::Sort => sort::PREFIX,
        }
    }

    /// The final answer inside a written-out solution (what exact matching compares).
    pub fn final_answer(self, solution: &str) -> Option<&str> {
        match self {
            Task::Addition => addition::final_answer(solution),
            Task::Sort => Some(solution.trim()),
        }
    }

    /// Exact check of a model's output against the reference solution: the final answers
    /// must be equal (the working itself is not graded).
    pub fn is_correct(self, output: &str, reference: &str) -> bool {
        match (self.final_answer(output), self.final_answer(reference)) {
            (Some(got), Some(want)) => got == want,
            _ => false,
        }
    }
}

/// `count` distinct problems of `split`, tasks taken in turn, drawn from `seed`.
/// The same arguments always give the same problems.
pub fn problems(tasks: &[Task], split: Split, count: usize, seed: u64) -> Vec<Problem> {
    assert!(!tasks.is_empty(), "at least one task");
    let mut rng = StdRng::seed_from_u64(seed ^ split.seed_salt());
    distinct_in_split(
        split,
        count,
        &mut rng,
        |rng, n| tasks[n % tasks.len()].draw(rng),
        |p| &p.prompt,
    )
}

/// `count` draws whose `prompt` is in `split`, each prompt once: the one sampling loop of
/// every generator (built-in tasks, chat prompts). `draw` gets the number drawn so far.
pub fn distinct_in_split<T>(
    split: Split,
    count: usize,
    rng: &mut StdRng,
    mut draw: impl FnMut(&mut StdRng, usize) -> T,
    prompt: impl Fn(&T) -> &str,
) -> Vec<T> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(count);
    let mut attempts = 0usize;
    while out.len() < count {
        attempts += 1;
        assert!(
            attempts < 1000 * count.max(1000),
            "the {split:?} split has fewer than {count} distinct prompts"
        );
        let item = draw(rng, out.len());
        let text = prompt(&item);
        if Split::of(text) == split && seen.insert(text.to_string()) {
            out.push(item);
        }
    }
    out
}

/// A uniformly random element of `range` (helper for the generators).
fn uniform(rng: &mut StdRng, range: std::ops::Range<u32>) -> u32 {
    rng.random_range(range)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn splits_never_overlap_and_are_reproducible() {
        let train = problems(&Task::ALL, Split::Train, 4000, 1);
        let validation = problems(&Task::ALL, Split::Validation, 1000, 1);
        let test = problems(&Task::ALL, Split::Test, 1000, 1);
        let train_prompts: HashSet<_> = train.iter().map(|p| &p.prompt).collect();
        let validation_prompts: HashSet<_> = validation.iter().map(|p| &p.prompt).collect();
        assert_eq!(train_prompts.len(), train.len(), "train problems are distinct");
        for (held_out, name) in [(&validation, "validation"), (&test, "test")] {
            assert!(
                held_out.iter().all(|p| !train_prompts.contains(&p.prompt)),
                "a {name} prompt is in the train split"
            );
        }
        assert!(test.iter().all(|p| !validation_prompts.contains(&p.prompt)));
        assert!(test.iter().all(|p| Split::of(&p.prompt) == Split::Test));
        assert!(validation.iter().all(|p| Split::of(&p.prompt) == Split::Validation));
        // A different seed for the train split still never yields a test prompt.
        let other = problems(&Task::ALL, Split::Train, 4000, 99);
        let test_prompts: HashSet<_> = test.iter().map(|p| &p.prompt).collect();
        assert!(other.iter().all(|p| !test_prompts.contains(&p.prompt)));
        assert_eq!(problems(&Task::ALL, Split::Test, 1000, 1), test, "same seed, same problems");
    }

    #[test]
    fn every_generated_reference_checks_as_correct_and_tasks_are_recognised() {
        for problem in problems(&Task::ALL, Split::Train, 500, 3) {
            let task = Task::of_prompt(&problem.prompt).expect("known prefix");
            assert!(task.is_correct(&problem.answer, &problem.answer), "{problem:?}");
        }
        assert_eq!(Task::of_prompt("hello"), None);
    }
}
