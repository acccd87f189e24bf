//! Exact agreement of a decoding with a reference decoding of the same prompts (the
//! teacher's greedy AR responses): what a converted model keeps of the model it came from.
//!
//! Outputs are compared as token ids, stop token included, so "agrees" means the same
//! response *and* the same place to stop. A prefix of `n` tokens agrees when both
//! outputs' first `n` tokens are equal, or, when either is shorter than `n`, when both are
//! the same shorter response.

/// Fraction of items whose output equals the reference exactly.
pub fn agreement(outputs: &[Vec<u32>], references: &[Vec<u32>]) -> f64 {
    fraction(outputs, references, |output, reference| output == reference)
}

/// Fraction of items whose output agrees with the reference on the first `n` tokens.
pub fn prefix_agreement(outputs: &[Vec<u32>], references: &[Vec<u32>], n: usize) -> f64 {
    let prefix = |tokens: &[u32]| tokens[..tokens.len().min(n)].to_vec();
    fraction(outputs, references, |output, reference| prefix(output) == prefix(reference))
}

fn fraction(
    outputs: &[Vec<u32>],
    references: &[Vec<u32>],
    agrees: impl Fn(&[u32], &[u32]) -> bool,
) -> f64 {
    assert_eq!(outputs.len(), references.len(), "one reference per output");
    let agreeing = outputs.iter().zip(references).filter(|(o, r)| agrees(o, r)).count();
    agreeing as f64 / outputs.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_and_prefix_agreement_count_the_stop_token() {
        let references = vec![vec![1, 2, 3, 0], vec![5, 6, 0], vec![7, 8, 9, 10]];
        // Same as the first; stops later than the second; differs at the third token of the third.
        let outputs = vec![vec![1, 2, 3, 0], vec![5, 6, 4, 0], vec![7, 8, 1, 10]];
        assert_eq!(agreement(&outputs, &references), 1.0 / 3.0);
        assert_eq!(prefix_agreement(&outputs, &references, 2), 1.0);
        // The second's first three tokens are 5 6 0 against 5 6 4: the stop differs.
        assert_eq!(prefix_agreement(&outputs, &references, 3), 1.0 / 3.0);
        assert_eq!(prefix_agreement(&outputs, &references, 16), agreement(&outputs, &references));
    }
}
