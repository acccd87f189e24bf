//! The loss against independent references: per-slot losses and gradients against
//! PyTorch autograd (`tests/fixtures/loss_reference.json`, `scripts/make_loss_fixture.py`),
//! the packed batch against one pass per example, and the stop-token rule.

use burn::backend::{Autodiff, NdArray};
use burn::tensor::TensorData;
use opdlm_model::{Architecture, ModelConfig};
use rand::SeedableRng;
use serde::Deserialize;

use super::*;

type Ad = Autodiff<NdArray<f32>>;
type B = NdArray<f32>;

#[derive(Deserialize)]
struct Fixture {
    student_logits: Vec<Vec<f32>>,
    teacher_logits: Vec<Vec<f32>>,
    weights: Vec<f32>,
    labels: Vec<i64>,
    mask_id: u32,
    top_k: usize,
    losses: std::collections::HashMap<String, Expected>,
}

#[derive(Deserialize)]
struct Expected {
    per_slot: Vec<f32>,
    loss: f32,
    grad: Vec<Vec<f32>>,
}

fn matrix(rows: &[Vec<f32>]) -> Tensor<Ad, 2> {
    let flat: Vec<f32> = rows.iter().flatten().copied().collect();
    Tensor::from_data(TensorData::new(flat, [rows.len(), rows[0].len()]), &Default::default())
}

/// `Σ w·x / Σ w`: one example's reduction of its per-slot losses.
fn weighted_mean<Bk: Backend>(values: Tensor<Bk, 1>, weights: Tensor<Bk, 1>) -> Tensor<Bk, 1> {
    (values * weights.clone()).sum() / weights.sum()
}

#[test]
fn losses_and_gradients_match_pytorch_to_1e_5() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/loss_reference.json");
    let fixture: Fixture = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let vocab = fixture.student_logits[0].len();
    let n = fixture.weights.len();
    let device = Default::default();
    for (name, expected) in &fixture.losses {
        let student_logits = matrix(&fixture.student_logits).require_grad();
        let student = log_probs(student_logits.clone(), vocab, fixture.mask_id);
        let teacher = log_probs(matrix(&fixture.teacher_logits).detach(), vocab, fixture.mask_id);
        let per_slot = match name.as_str() {
            "forward_kl" => {
                divergence(TeacherTargets::Full(teacher), student, Divergence::ForwardKl)
            }
            "forward_kl_topk" => {
                let top_k =
                    TeacherTargets::new(teacher, Divergence::ForwardKl, Some(fixture.top_k));
                divergence(top_k, student, Divergence::ForwardKl)
            }
            "reverse_kl" => {
                divergence(TeacherTargets::Full(teacher), student, Divergence::ReverseKl)
            }
            "jsd" => divergence(TeacherTargets::Full(teacher), student, Divergence::Jsd),
            "cross_entropy" => {
                let labels = TensorData::new(fixture.labels.clone(), [n]);
                cross_entropy(student, Tensor::from_data(labels, &device))
            }
            other => panic!("unexpected loss {other}"),
        };
        let weights = TensorData::new(fixture.weights.clone(), [n]);
        let loss = weighted_mean(per_slot.clone(), Tensor::<Ad, 1>::from_data(weights, &device));
        let per_slot: Vec<f32> = per_slot.into_data().to_vec().unwrap();
        for (got, want) in per_slot.iter().zip(&expected.per_slot) {
            assert!((got - want).abs() < 1e-5, "{name}: per-slot {got} vs {want}");
        }
        let value = loss.clone().into_scalar();
        assert!((value - expected.loss).abs() < 1e-5, "{name}: loss {value} vs {}", expected.loss);
        let grads = loss.backward();
        let grad: Vec<f32> = student_logits.grad(&grads).unwrap().into_data().to_vec().unwrap();
        let want: Vec<f32> = expected.grad.iter().flatten().copied().collect();
        let worst = grad.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(worst < 1e-5, "{name}: gradient max abs diff {worst}");
    }
}

/// An example whose masked slots are exactly its weighted ones, plus `after_stop` slots
/// (masked, never weighted).
fn example(prompt: &[u32], response: &[u32], weights: &[f32]) -> Example {
    Example {
        prompt: prompt.to_vec(),
        x0: response.to_vec(),
        response_len: response.len(),
        masked: weights.iter().map(|&w| w > 0.0).collect(),
        weights: weights.to_vec(),
    }
}

fn tiny_student() -> Transformer<B> {
    let device = Default::default();
    let config = ModelConfig {
        architecture: Architecture::Llama,
        vocab_size: 21,
        hidden_size: 16,
        intermediate_size: 32,
        num_hidden_layers: 2,
        num_attention_heads: 2,
        num_key_value_heads: 1,
        head_dim: 8,
        rms_norm_eps: 1e-6,
        rope_theta: 10_000.0,
        max_position_embeddings: 64,
        tie_word_embeddings: true,
        qkv_bias: false,
        o_bias: false,
        bos_token_id: None,
        eos_token_ids: vec![0],
        diffusion: None,
    };
    Transformer::<B>::new(&config, &device).into_diffusion(20, 4, false)
}

/// Reference: the teacher's targets of one example, from its own causal pass.
fn example_teacher_targets(
    teacher: &Transformer<B>,
    example: &Example,
    mask_id: u32,
) -> Tensor<B, 2> {
    let device = teacher.devices()[0];
    let clean = example.teacher_input();
    let layout = Layout::contiguous(AttentionMode::Causal, 1, 0, clean.len(), &device);
    let hidden = teacher.hidden(
        padded_token_ids::<B>(std::slice::from_ref(&clean), clean.len(), 0, &device),
        &layout,
        None,
    );
    let p = example.prompt.len();
    let rows: Vec<i64> = example.loss_slots().iter().map(|&j| (p + j - 1) as i64).collect();
    log_probs(rows_logits(teacher, hidden, &rows), teacher.config().vocab_size, mask_id)
}

/// Reference: one example's loss from its own unpadded student pass on
/// `[prompt | x0 | x_t]`: the sum of its weighted per-slot losses, and the sum of weights.
fn example_loss(
    student: &Transformer<B>,
    teacher: Option<Tensor<B, 2>>,
    example: &Example,
    targets: Targets,
    block_size: usize,
    mask_id: u32,
) -> (f32, f32) {
    let device = student.devices()[0];
    let (p, r) = (example.prompt.len(), example.x0.len());
    let slots = example.loss_slots();
    let noisy_start = p / block_size * block_size;
    let mut packed: Vec<u32> = example.prompt.iter().chain(&example.x0).copied().collect();
    packed.extend_from_slice(&example.prompt[noisy_start..]);
    packed.extend(example.noisy_response(mask_id));
    let layout = Layout::training(p, r, block_size, 1, &device);
    let hidden = student.hidden(
        padded_token_ids::<B>(std::slice::from_ref(&packed), packed.len(), 0, &device),
        &layout,
        None,
    );
    let rows: Vec<i64> = slots.iter().map(|&j| ((p + r) + (p - noisy_start) + j) as i64).collect();
    let student_lp =
        log_probs(rows_logits(student, hidden, &rows), student.config().vocab_size, mask_id);
    let weights: Vec<f32> = slots.iter().map(|&j| example.weights[j]).collect();
    let weights = Tensor::<B, 1>::from_data(TensorData::new(weights, [slots.len()]), &device);
    let per_slot = match targets {
        Targets::HardLabels => {
            let labels: Vec<i64> = slots.iter().map(|&j| example.x0[j] as i64).collect();
            cross_entropy(
                student_lp,
                Tensor::from_data(TensorData::new(labels, [slots.len()]), &device),
            )
        }
        Targets::Teacher { divergence: kind, top_k } => {
            let teacher = TeacherTargets::new(teacher.expect("teacher targets"), kind, top_k);
            divergence(teacher, student_lp, kind)
        }
    };
    let total = weights.clone().sum().into_scalar();
    ((per_slot * weights).sum().into_scalar(), total)
}

/// One pass per prompt length, and one pass for the whole batch, give the per-example
/// losses' mean, for teacher targets (ragged prompts and responses, partial prompt
/// blocks) and hard labels.
#[test]
fn batched_loss_equals_the_mean_of_per_example_losses() {
    let device = Default::default();
    B::seed(&device, 3);
    let model = tiny_student();
    let mask_id = 20;
    let examples = vec![
        example(&[1, 2, 3, 4, 5], &[6, 7, 8, 9, 10, 11], &[0.0, 1.0, 0.5, 0.0, 1.0, 0.0]),
        example(&[1, 2, 3, 4, 5], &[9, 9, 2], &[1.0, 0.0, 2.0]),
        example(&[7, 8, 9, 1, 2, 3, 4, 5], &[3, 3, 3, 3, 1], &[0.0, 0.0, 1.0, 1.0, 1.0]),
        example(&[4, 4, 4], &[5, 6], &[0.0, 0.0]),
        example(
            &[2, 3],
            &[1, 2, 3, 4, 5, 6, 7, 8, 9],
            &[1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0],
        ),
        // A stopped response (stop token 0 at slot 4) with two slots after it in its
        // block: the stop token and slot 5 are masked without loss.
        Example {
            masked: vec![false, true, false, true, true, true, false],
            x0: vec![6, 7, 8, 9, 0, 11, 12],
            response_len: 5,
            ..example(&[1, 2, 3, 4, 5], &[], &[0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0])
        },
    ];
    let response_tokens: usize = examples.iter().map(|e| e.response_len).sum();
    // Top-k targets are chosen in the teacher's pass, then reordered to the packed slots.
    for (objective, top_k) in
        [(Objective::Opdlm, None), (Objective::Opdlm, Some(3)), (Objective::Bd3lm, None)]
    {
        let loss = Loss::new(objective, StateSelection::PerBlock, Divergence::ForwardKl, top_k);
        let per_example: Vec<(f32, f32)> = examples
            .iter()
            .filter(|e| e.has_loss())
            .map(|e| {
                let teacher = (loss.targets() != Targets::HardLabels)
                    .then(|| example_teacher_targets(&model, e, mask_id));
                example_loss(&model, teacher, e, loss.targets(), 4, mask_id)
            })
            .collect();
        // Distillation: the mean of per-example weighted means; hard labels (BD3LM): the
        // weighted sum over the batch per response token.
        let expected = match loss.targets() {
            Targets::HardLabels => {
                per_example.iter().map(|(sum, _)| sum).sum::<f32>() / response_tokens as f32
            }
            Targets::Teacher { .. } => {
                let means = per_example.iter().map(|(sum, total)| sum / total);
                means.sum::<f32>() / per_example.len() as f32
            }
        };
        for passes in [StudentPasses::PerPromptLength, StudentPasses::One] {
            let loss = loss.with_student_passes(passes);
            let targets = loss.teacher_targets(&model, &examples, mask_id);
            let denominator = loss.denominator(&examples);
            let slots = (4, mask_id);
            let batch = loss.batch_loss(&model, targets, &examples, denominator, slots).unwrap();
            assert_eq!(batch.examples, 5);
            assert_eq!(batch.slots, examples.iter().map(|e| e.loss_slots().len()).sum::<usize>());
            let got = batch.value.into_scalar();
            assert!(
                (got - expected).abs() < 1e-5,
                "{objective:?} top-k {top_k:?} {passes:?}: batched {got} vs per-example reference {expected}"
            );
        }
    }
}

/// The example made from a stopped response (stop token 0 at slot 3, then two slots
/// after it in its block), under a random mask drawn from a seed that masks the stop slot.
fn stopped_example(objective: Objective) -> Example {
    let row = RowOutput {
        tokens: vec![1, 2, 3, 0],
        after_stop: vec![4, 5],
        first_unmask_step: vec![0; 6],
        stopped: true,
        steps: 0,
        forwards: 0,
        states: vec![],
    };
    let loss = Loss::new(objective, StateSelection::PerBlock, Divergence::ForwardKl, None);
    for seed in 0..1000 {
        let schedule = loss.masking_schedule();
        let (masked, _) = random_mask(2, 6, 4, schedule, &mut StdRng::seed_from_u64(seed));
        if masked[3] && masked[4] {
            let mut rng = StdRng::seed_from_u64(seed);
            return loss.example(&[5, 6], row.clone(), 4, &mut rng);
        }
    }
    panic!("no seed masked the stop slot and the one after it");
}

#[test]
fn the_stop_token_is_trained_with_hard_labels_only_and_masked_whenever_the_state_masks_it() {
    let mask_id = 20;
    for (objective, trained) in [(Objective::Bd3lm, true), (Objective::OpdlmOff, false)] {
        let example = stopped_example(objective);
        assert_eq!(example.response(), &[1, 2, 3, 0]);
        assert_eq!(example.x0, vec![1, 2, 3, 0, 4, 5]);
        assert_eq!(example.weights[3] > 0.0, trained, "{objective:?}: stop-token weight");
        assert_eq!(example.weights[4], 0.0, "{objective:?}: a slot after the stop token");
        let noisy = example.noisy_response(mask_id);
        assert_eq!(&noisy[3..5], &[mask_id, mask_id], "{objective:?}: x_t shows the state");
    }
}

#[test]
fn an_objective_is_bound_to_its_targets() {
    let soft = Loss::new(Objective::Opdlm, StateSelection::PerBlock, Divergence::Jsd, Some(3));
    assert_eq!(soft.targets(), Targets::Teacher { divergence: Divergence::Jsd, top_k: Some(3) });
    let hard = Loss::new(Objective::Sft, StateSelection::PerBlock, Divergence::Jsd, Some(3));
    assert_eq!(hard.targets(), Targets::HardLabels);
}

#[test]
fn largest_k_equals_a_full_sort_and_breaks_ties_toward_the_lower_id() {
    use rand::Rng;
    let mut rng = StdRng::seed_from_u64(7);
    let (rows, vocab, k) = (5, 300, 16);
    let values: Vec<f32> = (0..rows * vocab).map(|_| rng.random_range(-30.0..0.0)).collect();
    let x = Tensor::<B, 2>::from_data(TensorData::new(values, [rows, vocab]), &Default::default());
    let (ours, our_ids) = largest_k(x.clone(), k);
    let (sorted, sorted_ids) = x.topk_with_indices(k, 1);
    assert_eq!(
        ours.into_data().to_vec::<f32>().unwrap(),
        sorted.into_data().to_vec::<f32>().unwrap()
    );
    assert_eq!(
        our_ids.into_data().to_vec::<i64>().unwrap(),
        sorted_ids.into_data().to_vec::<i64>().unwrap()
    );

    let tied = Tensor::<B, 2>::from_data(
        TensorData::new(vec![1.0f32, 3.0, 3.0, 2.0, 3.0], [1, 5]),
        &Default::default(),
    );
    let (values, ids) = largest_k(tied, 4);
    assert_eq!(values.into_data().to_vec::<f32>().unwrap(), vec![3.0, 3.0, 3.0, 2.0]);
    assert_eq!(ids.into_data().to_vec::<i64>().unwrap(), vec![1, 2, 4, 3]);
}

#[test]
fn largest_k_passes_over_nans_and_fills_with_them_only_when_it_must() {
    assert_eq!(largest_k_ids(&[f32::NAN, -1.0, f32::NEG_INFINITY, 0.5], 3), vec![3, 1, 2]);
    assert_eq!(largest_k_ids(&[f32::NAN, 2.0, f32::NAN], 3), vec![1, 0, 2]);
    assert_eq!(largest_k_ids(&[1.0, 2.0], 0), Vec::<i64>::new());
}
