//! Three-digit addition written out column by column, least significant digit first:
//!
//! `add 347+085=` → `7+5+0=12,4+8+1=13,3+0+1=04|0432`
//!
//! Each column step is `a+b+carry=ss` with a two-digit column sum, so every step has the
//! same width and the digits it needs sit at fixed distances; the final answer after `|`
//! is four digits (the last carry, then the column sums' units, most significant first).

use rand::rngs::StdRng;

use super::{uniform, Problem};

/// How every addition prompt starts.
pub const PREFIX: &str = "add ";
const DIGITS: usize = 3;

/// A random problem.
pub fn draw(rng: &mut StdRng) -> Problem {
    let a = uniform(rng, 0..10u32.pow(DIGITS as u32));
    let b = uniform(rng, 0..10u32.pow(DIGITS as u32));
    problem(a, b)
}

/// The problem `a + b` with its written-out answer.
pub fn problem(a: u32, b: u32) -> Problem {
    let (da, db) = (digits(a), digits(b));
    let mut carry = 0;
    let mut steps = Vec::with_capacity(DIGITS);
    for i in (0..DIGITS).rev() {
        let sum = da[i] + db[i] + carry;
        steps.push(format!("{}+{}+{}={:02}", da[i], db[i], carry, sum));
        carry = sum / 10;
    }
    Problem {
        prompt: format!("{PREFIX}{a:0w$}+{b:0w$}=", w = DIGITS),
        answer: format!("{}|{:0w$}", steps.join(","), a + b, w = DIGITS + 1),
    }
}

fn digits(n: u32) -> Vec<u32> {
    format!("{n:0w$}", w = DIGITS).bytes().map(|c| u32::from(c - b'0')).collect()
}

/// The text after the last `|`, when it is all digits.
pub fn final_answer(solution: &str) -> Option<&str> {
    let answer = solution.rsplit_once('|')?.1.trim();
    (!answer.is_empty() && answer.bytes().all(|c| c.is_ascii_digit())).then_some(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_checked_examples() {
        let p = problem(347, 85);
        assert_eq!(p.prompt, "add 347+085=");
        assert_eq!(p.answer, "7+5+0=12,4+8+1=13,3+0+1=04|0432");
        assert_eq!(problem(999, 999).answer, "9+9+0=18,9+9+1=19,9+9+1=19|1998");
        assert_eq!(problem(0, 0).answer, "0+0+0=00,0+0+0=00,0+0+0=00|0000");
    }

    #[test]
    fn final_answer_is_exact() {
        assert_eq!(final_answer("7+5+0=12|0432"), Some("0432"));
        assert_eq!(final_answer("7+5+0=12,4+8"), None);
        assert_eq!(final_answer("x|04a2"), None);
        let task = crate::tasks::Task::Addition;
        let reference = problem(347, 85).answer;
        assert!(
            task.is_correct("garbled working|0432", &reference),
            "only the final answer is graded"
        );
        assert!(!task.is_correct("7+5+0=12,4+8+1=13,3+0+1=04|0433", &reference));
        assert!(!task.is_correct("7+5+0=12,4+8+1=13,3+0+1=04|04320", &reference));
    }
}
