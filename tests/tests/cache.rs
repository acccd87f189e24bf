//! The block KV cache is exact: logits computed block by block against the cache equal
//! the logits of one uncached pass, for causal and block-causal attention, several block
//! sizes and prompt lengths that are not multiples of the block size.

use burn::prelude::*;
use burn::tensor::{Int, TensorData};
use opdlm_model::{load_model, AttentionMode, CacheUse, Layout, Transformer};
use opdlm_tests::{fixture, max_abs_diff, TestBackend};

type B = TestBackend;

fn tokens(ids: &[i64], device: &burn::tensor::Device<B>) -> Tensor<B, 2, Int> {
    Tensor::from_data(TensorData::new(ids.to_vec(), [1, ids.len()]), device)
}

fn floats(t: Tensor<B, 3>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec().unwrap()
}

/// Prefill the first `prefill` tokens, then feed the rest in chunks aligned to `block`
/// (the first chunk completes the prefill's partial block, as the sampler's active block
/// does), each chunk first read-only (a denoising step) and then committed.
fn cached_logits(
    model: &Transformer<B>,
    ids: &[i64],
    mode: AttentionMode,
    block: usize,
    prefill: usize,
) -> Vec<f32> {
    let device = Default::default();
    let mut cache = model.new_cache();
    // Only whole blocks may be cached in block-causal mode.
    let committed = prefill / block * block;
    let mut out = Vec::new();
    if committed > 0 {
        let layout = Layout::contiguous(mode, 1, 0, committed, &device);
        out.extend(floats(model.forward_cached(
            tokens(&ids[..committed], &device),
            &layout,
            &mut cache,
            CacheUse::Commit,
        )));
    }
    let mut start = committed;
    while start < ids.len() {
        let end = ((start / block + 1) * block).min(ids.len());
        let layout = Layout::contiguous(mode, 1, start, end - start, &device);
        let chunk = tokens(&ids[start..end], &device);
        let read_only =
            floats(model.forward_cached(chunk.clone(), &layout, &mut cache, CacheUse::ReadOnly));
        let committed = floats(model.forward_cached(chunk, &layout, &mut cache, CacheUse::Commit));
        assert_eq!(read_only, committed, "a read-only pass must not change the cache");
        out.extend(committed);
        start = end;
    }
    assert_eq!(cache.len(), ids.len());
    out
}

#[test]
fn cached_logits_equal_uncached_logits_for_causal_and_block_causal() {
    let device = Default::default();
    for name in ["tiny-llama", "tiny-qwen3"] {
        let model = load_model::<B>(&fixture(name), &device).unwrap();
        let ids: Vec<i64> = (0..23).map(|i| (i * 37 + 5) % 90).collect();
        for (mode, block) in [
            (AttentionMode::Causal, 1),
            (AttentionMode::Causal, 3),
            (AttentionMode::BlockCausal { block_size: 1 }, 1),
            (AttentionMode::BlockCausal { block_size: 2 }, 2),
            (AttentionMode::BlockCausal { block_size: 4 }, 4),
            (AttentionMode::BlockCausal { block_size: 5 }, 5),
        ] {
            let full = floats(model.forward(
                tokens(&ids, &device),
                &Layout::contiguous(mode, 1, 0, ids.len(), &device),
            ));
            for prefill in [0, 7, 10] {
                let diff = max_abs_diff(&cached_logits(&model, &ids, mode, block, prefill), &full);
                assert!(diff <= 1e-4, "{name} {mode:?} prefill {prefill}: max abs diff {diff}");
            }
        }
    }
}

#[test]
fn block_size_one_is_causal_attention() {
    let device = Default::default();
    let model = load_model::<B>(&fixture("tiny-qwen2"), &device).unwrap();
    let ids: Vec<i64> = (0..9).map(|i| (i * 11 + 2) % 90).collect();
    let run =
        |mode| {
            floats(model.forward(
                tokens(&ids, &device),
                &Layout::contiguous(mode, 1, 0, ids.len(), &device),
            ))
        };
    assert_eq!(run(AttentionMode::Causal), run(AttentionMode::BlockCausal { block_size: 1 }));
}

#[test]
fn training_layout_noisy_rows_equal_student_on_clean_prefix_and_noisy_block() {
    // [prompt | x0 | x_t] in one pass must give, for each noisy block b, exactly the
    // logits of the student run on x0[<b], x_t[b].
    let device = Default::default();
    let model = load_model::<B>(&fixture("tiny-qwen3"), &device).unwrap();
    let block = 4;
    let prompt: Vec<i64> = vec![3, 14, 15, 92, 65, 35]; // 6 tokens: last block is partial
    let x0: Vec<i64> = vec![8, 7, 9, 3, 23, 84, 62, 64, 33];
    let mask = 89;
    // x_t: some response slots masked.
    let xt_resp: Vec<i64> =
        x0.iter().enumerate().map(|(i, &t)| if i % 3 != 1 { mask } else { t }).collect();
    let (p, r) = (prompt.len(), x0.len());
    let noisy_start = p / block * block;
    let clean: Vec<i64> = prompt.iter().chain(&x0).copied().collect();
    let noisy: Vec<i64> = prompt[noisy_start..].iter().chain(&xt_resp).copied().collect();
    let all: Vec<i64> = clean.iter().chain(&noisy).copied().collect();
    let layout = Layout::training(p, r, block, 1, &device);
    let logits = model.forward(tokens(&all, &device), &layout);
    let vocab = logits.dims()[2];
    let packed = floats(logits);

    let student = AttentionMode::BlockCausal { block_size: block };
    let mut b_start = noisy_start;
    while b_start < p + r {
        let b_end = (b_start + block).min(p + r);
        // Student on x0[<b] followed by x_t[b].
        let mut seq: Vec<i64> = clean[..b_start].to_vec();
        seq.extend_from_slice(&noisy[b_start - noisy_start..b_end - noisy_start]);
        let reference = floats(model.forward(
            tokens(&seq, &device),
            &Layout::contiguous(student, 1, 0, seq.len(), &device),
        ));
        let want = &reference[b_start * vocab..b_end * vocab];
        let row = clean.len() + b_start - noisy_start;
        let got = &packed[row * vocab..(row + b_end - b_start) * vocab];
        let diff = max_abs_diff(got, want);
        assert!(diff <= 1e-4, "block at {b_start}: {diff}");
        b_start = b_end;
    }
}
