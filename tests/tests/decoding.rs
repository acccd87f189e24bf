//! Decoding invariants on the tiny fixtures, each checked against an independent,
//! uncached implementation written here or in `opdlm_tests` (shared with `wgpu.rs`):
//! - block size 1 + static == greedy autoregressive decoding, token for token;
//! - cached block decoding == uncached block decoding;
//! - `dynamic(γ ≥ 1)` == static with one token per step;
//! - a batch of N ragged prompts == N single runs, also with sampling and stop tokens,
//!   and with rows out of phase long enough that the cache is compacted; no row sits
//!   through a forward pass that does not denoise it;
//! - stop-token truncation, and lengths that are not multiples of the block size.

use opdlm_inference::{generate, CommitRule, DecodeConfig};
use opdlm_model::{AttentionMode, Transformer};
use opdlm_tests::{
    argmax, check_block_one_static_equals_greedy, decode, decoding_prompts as prompts,
    diffusion_fixture, logits_rows, TestBackend,
};

type B = TestBackend;

fn model(name: &str, block: usize, shift: bool) -> Transformer<B> {
    diffusion_fixture(name, block, shift)
}

fn config(block: usize, steps: usize, max_new: usize, rule: CommitRule) -> DecodeConfig {
    DecodeConfig { steps_per_block: steps, ..DecodeConfig::diffusion(block, max_new, rule) }
}

/// Reference block decoding: uncached block-causal passes over the whole sequence, static
/// rule with one token per step, blocks aligned to absolute positions.
fn uncached_block_static(
    model: &Transformer<B>,
    prompt: &[u32],
    block: usize,
    max_new: usize,
    shift: bool,
) -> Vec<u32> {
    let mask_id = model.config().diffusion.as_ref().unwrap().mask_token_id;
    let end = prompt.len() + max_new;
    let mut seq: Vec<u32> =
        prompt.iter().copied().chain(std::iter::repeat_n(mask_id, max_new)).collect();
    let mut block_start = prompt.len() / block * block;
    while block_start < end {
        let block_end = (block_start + block).min(end);
        while seq[block_start..block_end].contains(&mask_id) {
            let rows = logits_rows(
                model,
                &seq[..block_end],
                AttentionMode::BlockCausal { block_size: block },
            );
            let softmax_max = |row: &[f32]| {
                let (t, m) = argmax(row, mask_id);
                let z: f32 = row
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i as u32 != mask_id)
                    .map(|(_, v)| (v - m).exp())
                    .sum();
                (t, 1.0 / z)
            };
            let best = (block_start..block_end)
                .filter(|&s| seq[s] == mask_id)
                .map(|s| (s, softmax_max(&rows[s - usize::from(shift)])))
                .fold(None, |acc: Option<(usize, (u32, f32))>, x| match acc {
                    Some(a) if a.1 .1 >= x.1 .1 => Some(a),
                    _ => Some(x),
                })
                .unwrap();
            seq[best.0] = best.1 .0;
        }
        block_start = block_end;
    }
    seq[prompt.len()..].to_vec()
}

#[test]
fn block_size_one_static_equals_greedy_autoregressive_decoding() {
    check_block_one_static_equals_greedy::<B>();
}

#[test]
fn cached_block_decoding_equals_uncached_block_decoding() {
    for shift in [false, true] {
        for block in [2, 4] {
            let m = model("tiny-qwen3", block, shift);
            for prompt in prompts() {
                // 10 new tokens: not a multiple of either block size with these prompts.
                let want = uncached_block_static(&m, &prompt, block, 10, shift);
                let got = decode(
                    &m,
                    std::slice::from_ref(&prompt),
                    &config(block, block, 10, CommitRule::Static),
                )
                .remove(0);
                assert_eq!(got, want, "block {block} shift {shift} prompt len {}", prompt.len());
                assert_eq!(got.len(), 10);
            }
        }
    }
}

#[test]
fn dynamic_with_threshold_one_equals_static_one_token_per_step() {
    let m = model("tiny-llama", 4, false);
    for prompt in prompts() {
        let stat = decode(&m, std::slice::from_ref(&prompt), &config(4, 4, 11, CommitRule::Static));
        let dynamic = decode(
            &m,
            std::slice::from_ref(&prompt),
            &config(4, 4, 11, CommitRule::Dynamic { threshold: 1.0 }),
        );
        assert_eq!(dynamic, stat);
    }
}

#[test]
fn batch_of_ragged_prompts_equals_single_runs() {
    for (block, rule) in [
        (4, CommitRule::Static),
        (3, CommitRule::Dynamic { threshold: 0.3 }),
        (1, CommitRule::Static),
    ] {
        let m = model("tiny-llama", block, false);
        let cfg = config(block, block, 9, rule);
        let batch = decode(&m, &prompts(), &cfg);
        for (i, prompt) in prompts().into_iter().enumerate() {
            assert_eq!(batch[i], decode(&m, &[prompt], &cfg).remove(0), "block {block} row {i}");
        }
    }
}

/// Rows in different phases of their blocks (prompts of 3, 9 and 14 tokens at blocks of
/// 2 and 4), sampled at temperature 1 with stop tokens: each row of the batch is the single run of
/// its prompt with the same seed, to the token, the unmask step and the slots after the
/// stop token.
#[test]
fn ragged_batch_with_sampling_and_stop_tokens_equals_single_runs() {
    let prompts: Vec<Vec<u32>> =
        vec![vec![5, 17, 33], vec![9, 1, 44, 60, 23, 8, 90, 3, 7], (40..54).collect()];
    let mut stopped_mid_block = 0;
    for block in [2, 4] {
        let m = model("tiny-llama", block, false);
        let cfg = DecodeConfig {
            sampling: opdlm_inference::SamplingConfig { temperature: 1.0, top_k: 0, top_p: 1.0 },
            stop_tokens: (0..8).collect(),
            seed: 7,
            ..config(block, block, 12, CommitRule::Dynamic { threshold: 0.3 })
        };
        let batch = generate(&m, &prompts, &cfg, |_| {}).unwrap().rows;
        for (i, prompt) in prompts.iter().enumerate() {
            // Row i of a batch draws from seed + i, as the single run of seed + i does.
            let single_cfg = DecodeConfig { seed: cfg.seed + i as u64, ..cfg.clone() };
            let single = generate(&m, std::slice::from_ref(prompt), &single_cfg, |_| {}).unwrap();
            let (got, want) = (&batch[i], &single.rows[0]);
            let what = format!("block {block} row {i}");
            assert_eq!(got.tokens, want.tokens, "{what}: tokens");
            assert_eq!(got.after_stop, want.after_stop, "{what}: slots after the stop token");
            assert_eq!(got.first_unmask_step, want.first_unmask_step, "{what}: unmask steps");
            assert_eq!((got.stopped, got.steps), (want.stopped, want.steps), "{what}");
            stopped_mid_block += usize::from(!got.after_stop.is_empty());
        }
    }
    assert!(stopped_mid_block > 0, "no row stopped inside a block");
}

/// Nine prompts of 1–9 tokens at block 4 under the static rule start in four different
/// phases (their first blocks have 1–4 masked slots), so their commits interleave and
/// leave holes in the shared cache until it is compacted. Every row is still its single
/// run, token for token, and every forward a row takes part in denoises it: rows never
/// wait for each other.
#[test]
fn rows_advance_on_their_own_through_cache_compaction() {
    let prompts: Vec<Vec<u32>> = (1..=9).map(|n| (0..n).map(|t| 11 + 7 * t).collect()).collect();
    for shift in [false, true] {
        let m = model("tiny-qwen3", 4, shift);
        let cfg = config(4, 4, 22, CommitRule::Static);
        let batch = generate(&m, &prompts, &cfg, |_| {}).unwrap();
        assert!(batch.stats.compactions > 0, "shift {shift}: the cache was never compacted");
        for (i, (row, prompt)) in batch.rows.iter().zip(&prompts).enumerate() {
            assert_eq!(row.forwards, row.steps, "shift {shift} row {i}: idle forwards");
            let single = decode(&m, std::slice::from_ref(prompt), &cfg).remove(0);
            assert_eq!(row.tokens, single, "shift {shift} row {i}");
        }
    }
}

#[test]
fn generation_stops_at_the_first_stop_token_and_drops_the_rest() {
    let m = model("tiny-qwen2", 4, false);
    let cfg = config(4, 4, 12, CommitRule::Static);
    let free = decode(&m, &prompts(), &cfg);
    // Use a token that appears in the middle of the first row's output as "EOS".
    let stop = free[0][5];
    let first = free[0].iter().position(|&t| t == stop).unwrap();
    let stopped =
        generate(&m, &prompts(), &DecodeConfig { stop_tokens: vec![stop], ..cfg }, |_| {}).unwrap();
    let row = &stopped.rows[0];
    assert!(row.stopped);
    assert_eq!(row.tokens, free[0][..=first].to_vec());
    assert_eq!(row.text_tokens(), &free[0][..first]);
    // The rest of the stop token's block was denoised all the same: kept as `after_stop`.
    let prompt_len = prompts()[0].len();
    let block_end = ((prompt_len + first) / 4 + 1) * 4 - prompt_len;
    assert_eq!(row.after_stop, free[0][first + 1..block_end.min(12)].to_vec());
    assert_eq!(row.first_unmask_step.len(), block_end.min(12));
    for (i, out) in stopped.rows.iter().enumerate().skip(1) {
        let cut = free[i].iter().position(|&t| t == stop).map_or(free[i].len(), |p| p + 1);
        assert_eq!(out.tokens, free[i][..cut].to_vec(), "row {i}");
    }
}

#[test]
fn recorded_states_are_the_trajectory_implied_by_first_unmask_steps() {
    let m = model("tiny-llama", 4, false);
    let cfg = DecodeConfig {
        record_states: true,
        ..config(4, 2, 10, CommitRule::Dynamic { threshold: 0.2 })
    };
    let mask_id = m.config().diffusion.as_ref().unwrap().mask_token_id;
    let out = generate(&m, &prompts(), &cfg, |_| {}).unwrap();
    for (row, prompt) in out.rows.iter().zip(prompts()) {
        assert_eq!(row.states.len(), row.steps);
        for state in &row.states {
            for (k, &token) in state.tokens.iter().enumerate() {
                let pos = state.block_start + k;
                let expected = if pos < prompt.len() {
                    prompt[pos]
                } else {
                    let j = pos - prompt.len();
                    if row.first_unmask_step[j] < state.step {
                        row.tokens[j]
                    } else {
                        mask_id
                    }
                };
                assert_eq!(token, expected, "step {} position {pos}", state.step);
            }
        }
    }
}
