//! Training the built-in teacher from scratch: a tiny Llama trained autoregressively
//! (next-token cross-entropy on the answer tokens) on the built-in tasks. Everything
//! (initialisation, batches) follows from the seed, so the committed teacher can be
//! re-made exactly with `cargo xtask pretrain`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::AutodiffModule;
use burn::optim::{AdamWConfig, GradientsParams, Optimizer};
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use burn::tensor::backend::AutodiffBackend;
use opdlm_model::load::save::save_hf_dir;
use opdlm_model::{Architecture, AttentionMode, Layout, ModelConfig, TextTokenizer, Transformer};
use opdlm_training::{clip_global_norm, WarmupCosine};
use serde::{Deserialize, Serialize};

use crate::eval::{evaluate, DecodeMode, EvalItem, EvalSettings, ModeResult};
use crate::tasks::tokenizer::task_tokenizer;
use crate::tasks::{problems, Split, Task};

/// Width and depth of the teacher (Llama architecture, tied embeddings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TeacherShape {
    /// Hidden size.
    pub hidden: usize,
    /// Decoder layers.
    pub layers: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (grouped-query attention).
    pub kv_heads: usize,
    /// MLP width.
    pub intermediate: usize,
}

impl TeacherShape {
    /// The Llama config of this shape over `vocab_size` tokens and `max_positions`.
    pub fn model_config(&self, vocab_size: usize, max_positions: usize) -> ModelConfig {
        ModelConfig {
            architecture: Architecture::Llama,
            vocab_size,
            hidden_size: self.hidden,
            intermediate_size: self.intermediate,
            num_hidden_layers: self.layers,
            num_attention_heads: self.heads,
            num_key_value_heads: self.kv_heads,
            head_dim: self.hidden / self.heads,
            rms_norm_eps: 1e-6,
            rope_theta: 10_000.0,
            max_position_embeddings: max_positions,
            tie_word_embeddings: true,
            qkv_bias: false,
            o_bias: false,
            bos_token_id: None,
            eos_token_ids: vec![0],
            diffusion: None,
        }
    }
}

/// Settings of the tiny teacher's pretraining (defaults: the committed teacher's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PretrainConfig {
    /// Where the teacher (a Hugging Face directory) is written.
    pub out: PathBuf,
    /// Width and depth.
    pub shape: TeacherShape,
    /// Optimizer steps.
    pub steps: usize,
    /// Problems per step.
    pub batch_size: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Final learning rate of the cosine decay.
    pub final_lr: f64,
    /// Warmup steps.
    pub warmup: usize,
    /// Seed of the initialisation and the problems.
    pub seed: u64,
    /// Test problems for the final greedy accuracy.
    pub eval_problems: usize,
}

impl Default for PretrainConfig {
    fn default() -> Self {
        Self {
            out: PathBuf::from("runs/teacher"),
            shape: TeacherShape {
                hidden: 128,
                layers: 4,
                heads: 4,
                kv_heads: 2,
                intermediate: 384,
            },
            steps: 1500,
            batch_size: 64,
            lr: 3e-3,
            final_lr: 1e-4,
            warmup: 50,
            seed: 0,
            eval_problems: 400,
        }
    }
}

/// Longest prompt + answer + EOS of the built-in tasks, rounded up, as the context.
const MAX_POSITIONS: usize = 64;

/// What a pretraining run produced.
#[derive(Debug, Clone)]
pub struct PretrainSummary {
    /// The teacher's directory.
    pub out: PathBuf,
    /// Its parameter count.
    pub parameters: usize,
    /// Loss of the last step.
    pub final_loss: f64,
    /// Wall-clock time.
    pub seconds: f64,
    /// Greedy AR accuracy per task on the test split.
    pub accuracy: Vec<(Task, ModeResult)>,
}

/// Trains the teacher, reporting `(step, loss)` to `on_step`, and writes it to `config.out`.
pub fn pretrain<B: AutodiffBackend>(
    config: &PretrainConfig,
    device: &B::Device,
    mut on_step: impl FnMut(usize, f64),
) -> Result<PretrainSummary, String> {
    let started = Instant::now();
    let tokenizer = task_tokenizer();
    // One spare embedding row: `into_diffusion` makes it the mask token.
    let model_config = config.shape.model_config(tokenizer.vocab_size() + 1, MAX_POSITIONS);
    B::seed(device, config.seed);
    let mut model = Transformer::<B>::new(&model_config, device);
    let parameters = model.num_params();
    let mut optimizer = AdamWConfig::new().with_weight_decay(0.01).init::<B, Transformer<B>>();
    let schedule = WarmupCosine::new(config.lr, config.final_lr, config.warmup, config.steps);
    let mut loss_value = f64::NAN;
    for step in 0..config.steps {
        let batch = problems(
            &Task::ALL,
            Split::Train,
            config.batch_size,
            config.seed.wrapping_mul(1_000_003).wrapping_add(step as u64),
        );
        let loss = answer_loss(&model, &tokenizer, &batch, device)?;
        loss_value = loss.clone().into_scalar().elem::<f64>();
        if !loss_value.is_finite() {
            return Err(format!("step {step}: the loss is {loss_value}; lower --lr"));
        }
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let (grads, _) = clip_global_norm::<B, Transformer<B>>(&model, grads, 1.0);
        model = optimizer.step(schedule.at(step), model, grads);
        on_step(step, loss_value);
    }
    let model = model.valid();
    save_hf_dir(&model, &tokenizer, &config.out).map_err(|e| e.to_string())?;
    let accuracy = test_accuracy(&model, &tokenizer, config.eval_problems, config.seed)?;
    Ok(PretrainSummary {
        out: config.out.clone(),
        parameters,
        final_loss: loss_value,
        seconds: started.elapsed().as_secs_f64(),
        accuracy,
    })
}

/// Mean next-token cross-entropy over the answer tokens (and the EOS) of a batch.
fn answer_loss<B: Backend>(
    model: &Transformer<B>,
    tokenizer: &TextTokenizer,
    batch: &[crate::tasks::Problem],
    device: &B::Device,
) -> Result<Tensor<B, 1>, String> {
    let eos = 0u32;
    let encoded: Vec<(Vec<u32>, usize)> = batch
        .iter()
        .map(|p| {
            let mut ids = tokenizer.encode(&p.prompt).map_err(|e| e.to_string())?;
            let prompt_len = ids.len();
            ids.extend(tokenizer.encode(&p.answer).map_err(|e| e.to_string())?);
            ids.push(eos);
            Ok((ids, prompt_len))
        })
        .collect::<Result<_, String>>()?;
    let len = encoded.iter().map(|(ids, _)| ids.len()).max().unwrap_or(1);
    let rows = encoded.len();
    // Right padding is invisible to earlier positions under causal attention.
    let mut inputs = vec![i64::from(eos); rows * len];
    let mut targets = vec![0i64; rows * (len - 1)];
    let mut weights = vec![0f32; rows * (len - 1)];
    for (r, (ids, prompt_len)) in encoded.iter().enumerate() {
        for (i, &t) in ids.iter().enumerate() {
            inputs[r * len + i] = i64::from(t);
            if i >= *prompt_len {
                targets[r * (len - 1) + i - 1] = i64::from(t);
                weights[r * (len - 1) + i - 1] = 1.0;
            }
        }
    }
    let inputs = Tensor::<B, 2, Int>::from_data(TensorData::new(inputs, [rows, len]), device);
    let logits =
        model.forward(inputs, &Layout::contiguous(AttentionMode::Causal, rows, 0, len, device));
    let vocab = logits.dims()[2];
    let logits = logits.slice([0..rows, 0..len - 1, 0..vocab]).reshape([rows * (len - 1), vocab]);
    let targets =
        Tensor::<B, 1, Int>::from_data(TensorData::new(targets, [rows * (len - 1)]), device);
    let weights = Tensor::<B, 1>::from_data(TensorData::new(weights, [rows * (len - 1)]), device);
    let nll = log_softmax(logits, 1).gather(1, targets.unsqueeze_dim(1)).squeeze_dim::<1>(1).neg();
    Ok((nll * weights.clone()).sum() / weights.sum())
}

/// Greedy AR accuracy per task on `count` test problems.
pub fn test_accuracy<B: Backend>(
    model: &Transformer<B>,
    tokenizer: &TextTokenizer,
    count: usize,
    seed: u64,
) -> Result<Vec<(Task, ModeResult)>, String> {
    let settings = EvalSettings {
        block_size: 1,
        max_new_tokens: MAX_POSITIONS / 2,
        batch_size: 50,
        modes: vec![DecodeMode::AR],
        weights: Default::default(),
    };
    Task::ALL
        .into_iter()
        .map(|task| {
            let items: Vec<EvalItem> =
                problems(&[task], Split::Test, count / Task::ALL.len(), seed)
                    .iter()
                    .map(EvalItem::from_problem)
                    .collect();
            let result = evaluate(model, tokenizer, None, &items, &settings, &[0])
                .map_err(|e| e.to_string())?;
            Ok((task, result.into_iter().next().expect("one mode")))
        })
        .collect()
}

/// The committed built-in teacher (made by `cargo xtask pretrain`, see the README).
pub fn builtin_teacher_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("assets").join("tiny-teacher")
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::{Autodiff, NdArray};

    /// Same seed, same teacher, bit for bit: the committed teacher can be re-made.
    #[test]
    fn pretraining_is_reproducible_from_the_seed_and_learns() {
        let run = |tag: &str| {
            let out =
                std::env::temp_dir().join(format!("opdlm-pretrain-{tag}-{}", std::process::id()));
            let config = PretrainConfig {
                out: out.clone(),
                shape: TeacherShape {
                    hidden: 32,
                    layers: 1,
                    heads: 2,
                    kv_heads: 1,
                    intermediate: 64,
                },
                steps: 12,
                batch_size: 8,
                eval_problems: 4,
                ..PretrainConfig::default()
            };
            let mut losses = Vec::new();
            pretrain::<Autodiff<NdArray<f32>>>(&config, &Default::default(), |_, loss| {
                losses.push(loss)
            })
            .unwrap();
            // Tensors by name: the file's header order is not part of the weights.
            let bytes = std::fs::read(out.join("model.safetensors")).unwrap();
            let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
            let mut weights: Vec<(String, Vec<u8>)> = file
                .tensors()
                .into_iter()
                .map(|(name, view)| (name, view.data().to_vec()))
                .collect();
            weights.sort();
            std::fs::remove_dir_all(&out).unwrap();
            (losses, weights)
        };
        let (losses_a, weights_a) = run("a");
        let (losses_b, weights_b) = run("b");
        assert_eq!(losses_a, losses_b);
        assert!(weights_a == weights_b, "same seed gave different weights");
        assert!(losses_a[11] < losses_a[0], "loss did not go down: {losses_a:?}");
    }
}
