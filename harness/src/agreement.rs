//! Exact agreement of a decoding with a reference decoding of the same prompts (the
//! teacher's greedy AR responses): what a converted model keeps of the model it came from.
//!
//! Outputs are compared as token ids, stop token included, so "agrees" means the same
//! response *and* the same place to stop. A prefix of `n` tokens agrees when both
//! outputs' first `n` tokens are equal, or, when either is shorter than `n`, when both are
//! the same shorter response. Outcomes are kept per prompt, so that two models evaluated
//! on the same prompts can be compared prompt by prompt.

/// Per item, whether its output equals the reference exactly.
pub fn agrees(outputs: &[Vec<u32>], references: &[Vec<u32>]) -> Vec<bool> {
    outcomes(outputs, references, |output, reference| output == reference)
}

/// Per item, whether its output agrees with the reference on the first `n` tokens.
pub fn prefix_agrees(outputs: &[Vec<u32>], references: &[Vec<u32>], n: usize) -> Vec<bool> {
    let prefix = |tokens: &[u32]| tokens[..tokens.len().min(n)].to_vec();
    outcomes(outputs, references, |output, reference| prefix(output) == prefix(reference))
}

/// How many outcomes are agreements.
pub fn agreeing(outcomes: &[bool]) -> usize {
    outcomes.iter().filter(|&&agrees| agrees).count()
}

/// Fraction of true outcomes (0 for none).
pub fn fraction(outcomes: &[bool]) -> f64 {
    agreeing(outcomes) as f64 / outcomes.len().max(1) as f64
}

fn outcomes(
    outputs: &[Vec<u32>],
    references: &[Vec<u32>],
    agrees: impl Fn(&[u32], &[u32]) -> bool,
) -> Vec<bool> {
    assert_eq!(outputs.len(), references.len(), "one reference per output");
    outputs.iter().zip(references).map(|(o, r)| agrees(o, r)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_and_prefix_agreement_count_the_stop_token() {
        let references = vec![vec![1, 2, 3, 0], vec![5, 6, 0], vec![7, 8, 9, 10]];
        // Same as the first; stops later than the second; differs at the third token of the third.
        let outputs = vec![vec![1, 2, 3, 0], vec![5, 6, 4, 0], vec![7, 8, 1, 10]];
        assert_eq!(agrees(&outputs, &references), [true, false, false]);
        assert_eq!(fraction(&agrees(&outputs, &references)), 1.0 / 3.0);
        assert_eq!(prefix_agrees(&outputs, &references, 2), [true, true, true]);
        // The second's first three tokens are 5 6 0 against 5 6 4: the stop differs.
        assert_eq!(prefix_agrees(&outputs, &references, 3), [true, false, false]);
        assert_eq!(prefix_agrees(&outputs, &references, 16), agrees(&outputs, &references));
        assert_eq!(fraction(&[]), 0.0);
    }
}
