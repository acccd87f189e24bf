//! Token choice for a set of slots: temperature (0 = argmax), top-k and top-p, with the
//! statistics the commit rules rank slots by. Confidence is always the *untempered*
//! probability of the chosen token, so that a commit threshold means the same thing at
//! every temperature.

use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use burn::tensor::IndexingUpdateOp;
use opdlm_model::{TokenExclusion, NEVER_LOGIT};
use rand::rngs::StdRng;
use rand::Rng;

/// Log-probabilities below this belong to excluded ids (real tokens' are never near it).
const EXCLUDED_BELOW: f32 = NEVER_LOGIT / 2.0;

/// How a token is drawn from a slot's distribution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingConfig {
    /// 0 = argmax; otherwise logits are divided by it before sampling.
    pub temperature: f32,
    /// Keep only the `k` most likely tokens (0 = off).
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches `p` (1.0 = off).
    pub top_p: f32,
}

impl SamplingConfig {
    /// Argmax decoding (deterministic).
    pub const GREEDY: Self = Self { temperature: 0.0, top_k: 0, top_p: 1.0 };

    /// Temperature 0: the most likely token, no random draw.
    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0
    }

    /// Rejects a temperature or top-p the sampler cannot use, naming the setting.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return Err(format!(
                "temperature must be a finite number ≥ 0, got {}",
                self.temperature
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(format!("top-p must be in (0, 1], got {}", self.top_p));
        }
        Ok(())
    }
}

/// The token drawn for one slot and how sure the model was of it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Choice {
    /// The drawn token.
    pub token: u32,
    /// Untempered softmax probability of `token`.
    pub confidence: f32,
    /// Entropy (nats) of the untempered distribution.
    pub entropy: f32,
    /// Top-1 minus top-2 untempered probability.
    pub margin: f32,
}

/// Chooses a token for every row of `logits` (`[slots, vocab]`). The `excluded` ids (the
/// mask token, which is never a prediction) get probability exactly 0 first, through the
/// same exclusion the training loss uses (`opdlm_model::exclude_tokens`). Row `i` draws
/// from `rngs[owners[i]]`, one generator per sequence, so that a sequence's draws do not
/// depend on the other sequences in the batch.
pub fn choose<B: Backend>(
    logits: Tensor<B, 2>,
    excluded: &TokenExclusion<B>,
    config: &SamplingConfig,
    owners: &[usize],
    rngs: &mut [StdRng],
) -> Vec<Choice> {
    let [slots, vocab] = logits.dims();
    if slots == 0 {
        return vec![];
    }
    let log_probs = log_softmax(excluded.apply(logits), 1);
    let probs = log_probs.clone().exp();
    let entropy = (probs.clone() * log_probs.clone().clamp_min(-1e30)).sum_dim(1).neg();
    // Two max passes instead of `topk`, which sorts the whole vocabulary of every slot.
    let (best, best_ids) = probs.clone().max_dim_with_indices(1);
    let second =
        probs.scatter(1, best_ids.clone(), best.clone().neg(), IndexingUpdateOp::Add).max_dim(1);
    // One read-back for the three per-slot statistics (each read is a device sync).
    let stats: Vec<f32> = floats(Tensor::cat(vec![entropy, best, second], 1));
    let (entropy, best, second) =
        (|i: usize| stats[3 * i], |i: usize| stats[3 * i + 1], |i: usize| stats[3 * i + 2]);
    let best_ids: Vec<i64> = best_ids.into_data().convert::<i64>().to_vec().expect("int data");
    // One-token vocabulary: no runner-up, the margin is the probability itself.
    let margin = |i: usize| if vocab > 1 { best(i) - second(i) } else { best(i) };

    if config.is_greedy() {
        return (0..slots)
            .map(|i| Choice {
                token: best_ids[i] as u32,
                confidence: best(i),
                entropy: entropy(i),
                margin: margin(i),
            })
            .collect();
    }
    let log_probs: Vec<f32> = floats(log_probs);
    (0..slots)
        .map(|i| {
            let row = &log_probs[i * vocab..(i + 1) * vocab];
            let token = sample_row(row, config, &mut rngs[owners[i]]);
            Choice {
                token,
                confidence: row[token as usize].exp(),
                entropy: entropy(i),
                margin: margin(i),
            }
        })
        .collect()
}

/// Draws one token from untempered log-probabilities under `config`.
fn sample_row(log_probs: &[f32], config: &SamplingConfig, rng: &mut StdRng) -> u32 {
    // The candidates. Excluded ids sit at NEVER_LOGIT − logsumexp, far below any real
    // token's log-probability.
    let mut order: Vec<u32> =
        (0..log_probs.len() as u32).filter(|&t| log_probs[t as usize] > EXCLUDED_BELOW).collect();
    // Top-k and top-p cut the candidates ranked by decreasing probability. Plain temperature
    // sampling (the rollouts') draws from the same distribution in id order: sorting the
    // whole vocabulary of every slot was a tenth of a SmolLM2 rollout's main thread (`perf`).
    if config.top_k > 0 || config.top_p < 1.0 {
        order.sort_by(|&a, &b| {
            log_probs[b as usize].total_cmp(&log_probs[a as usize]).then(a.cmp(&b))
        });
        if config.top_k > 0 {
            order.truncate(config.top_k);
        }
    }
    // Tempered weights exp((logp - max) / T), relative to the best token.
    let best = order.iter().map(|&t| log_probs[t as usize]).fold(f32::NEG_INFINITY, f32::max);
    let mut weights: Vec<f64> = order
        .iter()
        .map(|&t| (((log_probs[t as usize] - best) / config.temperature) as f64).exp())
        .collect();
    if config.top_p < 1.0 {
        let total: f64 = weights.iter().sum();
        let mut cumulative = 0.0;
        let keep = weights
            .iter()
            .position(|w| {
                cumulative += w / total;
                cumulative >= config.top_p as f64
            })
            .map_or(weights.len(), |i| i + 1);
        weights.truncate(keep);
    }
    let total: f64 = weights.iter().sum();
    let mut target = rng.random::<f64>() * total;
    for (i, w) in weights.iter().enumerate() {
        target -= w;
        if target < 0.0 {
            return order[i];
        }
    }
    order[weights.len() - 1]
}

fn floats<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec().expect("float data")
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;
    use rand::SeedableRng;

    type B = NdArray<f32>;

    fn logits(rows: &[[f32; 4]]) -> Tensor<B, 2> {
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        Tensor::<B, 1>::from_floats(flat.as_slice(), &Default::default()).reshape([rows.len(), 4])
    }

    #[test]
    fn greedy_picks_argmax_and_reports_untempered_probability() {
        let l = logits(&[[0.0, 2.0, 1.0, 0.0]]);
        let mut rng = StdRng::seed_from_u64(0);
        let c = choose(
            l,
            &TokenExclusion::new(4, &[], &Default::default()),
            &SamplingConfig::GREEDY,
            &[0],
            std::slice::from_mut(&mut rng),
        )[0];
        let z: f32 = [0.0f32, 2.0, 1.0, 0.0].iter().map(|x| x.exp()).sum();
        assert_eq!(c.token, 1);
        assert!((c.confidence - 2f32.exp() / z).abs() < 1e-6);
        assert!((c.margin - (2f32.exp() - 1f32.exp()) / z).abs() < 1e-6);
    }

    #[test]
    fn greedy_rows_are_independent_and_a_tie_has_zero_margin() {
        let l = logits(&[[0.0, 3.0, 0.0, 3.0], [1.0, 0.0, 4.0, 2.0]]);
        let mut rng = StdRng::seed_from_u64(0);
        let c = choose(
            l,
            &TokenExclusion::new(4, &[], &Default::default()),
            &SamplingConfig::GREEDY,
            &[0, 0],
            std::slice::from_mut(&mut rng),
        );
        // A tie goes to the lowest id (as `torch.argmax`), and nothing separates the two best.
        assert_eq!(c[0].token, 1);
        assert_eq!(c[0].margin, 0.0);
        let z: f32 = [1.0f32, 0.0, 4.0, 2.0].iter().map(|x| x.exp()).sum();
        assert_eq!(c[1].token, 2);
        assert!((c[1].margin - (4f32.exp() - 2f32.exp()) / z).abs() < 1e-6);
    }

    #[test]
    fn forbidden_token_is_never_chosen_even_if_most_likely() {
        let l = logits(&[[9.0, 1.0, 0.0, 0.0]]);
        let mut rng = StdRng::seed_from_u64(0);
        let forbidden = TokenExclusion::<B>::new(4, &[0], &Default::default());
        assert_eq!(
            choose(
                l.clone(),
                &forbidden,
                &SamplingConfig::GREEDY,
                &[0],
                std::slice::from_mut(&mut rng)
            )[0]
            .token,
            1
        );
        let hot = SamplingConfig { temperature: 5.0, top_k: 0, top_p: 1.0 };
        for _ in 0..50 {
            assert_ne!(
                choose(l.clone(), &forbidden, &hot, &[0], std::slice::from_mut(&mut rng))[0].token,
                0
            );
        }
    }

    #[test]
    fn top_k_one_is_argmax_and_top_p_cuts_the_tail() {
        let mut rng = StdRng::seed_from_u64(3);
        let lp: Vec<f32> = [0.6f32, 0.3, 0.05, 0.05].iter().map(|p| p.ln()).collect();
        let k1 = SamplingConfig { temperature: 1.0, top_k: 1, top_p: 1.0 };
        let p = SamplingConfig { temperature: 1.0, top_k: 0, top_p: 0.85 };
        for _ in 0..200 {
            assert_eq!(sample_row(&lp, &k1, &mut rng), 0);
            assert!(sample_row(&lp, &p, &mut rng) < 2);
        }
    }

    #[test]
    fn sampling_frequencies_follow_the_tempered_distribution() {
        let mut rng = StdRng::seed_from_u64(7);
        let lp: Vec<f32> = [0.5f32, 0.25, 0.25].iter().map(|p| p.ln()).collect();
        let cfg = SamplingConfig { temperature: 1.0, top_k: 0, top_p: 1.0 };
        let n = 20_000;
        let zeros = (0..n).filter(|_| sample_row(&lp, &cfg, &mut rng) == 0).count();
        assert!((zeros as f64 / n as f64 - 0.5).abs() < 0.02, "{zeros}");
    }
}
