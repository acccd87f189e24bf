//! The transformer: token embedding → decoder layers → final norm → LM head.
//!
//! One model serves as teacher and student; only the [`Layout`] (positions and mask)
//! passed to [`Transformer::forward`] differs. Module paths mirror Hugging Face's
//! checkpoint keys (`model.layers.3.self_attn.q_proj.weight`, `lm_head.weight`).

use burn::module::Param;
use burn::nn::{Embedding, EmbeddingConfig, Linear, LinearConfig, RmsNorm, RmsNormConfig};
use burn::prelude::*;
use burn::tensor::Int;

use crate::attention::CacheSlot;
use crate::block::DecoderLayer;
use crate::cache::{CacheUse, KvCache};
use crate::config::{DiffusionConfig, ModelConfig};
use crate::mask::Layout;
use crate::rope::Rotary;

/// Everything below the LM head (HF's `model.` prefix).
#[derive(Module, Debug)]
pub struct Trunk<B: Backend> {
    embed_tokens: Embedding<B>,
    layers: Vec<DecoderLayer<B>>,
    norm: RmsNorm<B>,
}

/// A Llama-family decoder-only language model: the trunk plus the LM head, with the
/// config it was built from (saved with it, and read by the sampler for diffusion).
#[derive(Module, Debug)]
pub struct Transformer<B: Backend> {
    model: Trunk<B>,
    /// `None` when the LM head is tied to the token embedding.
    lm_head: Option<Linear<B>>,
    #[module(skip)]
    config: ModelConfig,
}

impl<B: Backend> Transformer<B> {
    /// A randomly initialised model (weights are usually loaded over it, see [`crate::load`]).
    /// Embeddings start at N(0, 0.02²), Hugging Face's `initializer_range`: burn's default
    /// N(0, 1) with a tied head makes the first logits huge and slows training from scratch.
    pub fn new(config: &ModelConfig, device: &B::Device) -> Self {
        let embedding_init = burn::nn::Initializer::Normal { mean: 0.0, std: 0.02 };
        let model = Trunk {
            embed_tokens: EmbeddingConfig::new(config.vocab_size, config.hidden_size)
                .with_initializer(embedding_init)
                .init(device),
            layers: (0..config.num_hidden_layers)
                .map(|_| DecoderLayer::new(config, device))
                .collect(),
            norm: RmsNormConfig::new(config.hidden_size)
                .with_epsilon(config.rms_norm_eps)
                .init(device),
        };
        let lm_head = (!config.tie_word_embeddings).then(|| {
            LinearConfig::new(config.hidden_size, config.vocab_size).with_bias(false).init(device)
        });
        Self { model, lm_head, config: config.clone() }
    }

    /// The hyper-parameters (and diffusion settings) this model was built with.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Logits `[batch, len, vocab]` for `tokens` (`[batch, len]`) without a cache.
    pub fn forward(&self, tokens: Tensor<B, 2, Int>, layout: &Layout<B>) -> Tensor<B, 3> {
        self.lm_head(self.hidden(tokens, layout, None))
    }

    /// Logits for `tokens` placed after the cached prefix; `usage` says whether their
    /// keys/values are appended. `layout` must start at position `cache.len()`.
    pub fn forward_cached(
        &self,
        tokens: Tensor<B, 2, Int>,
        layout: &Layout<B>,
        cache: &mut KvCache<B>,
        usage: CacheUse,
    ) -> Tensor<B, 3> {
        self.lm_head(self.hidden(tokens, layout, Some((cache, usage))))
    }

    /// Final-normed hidden states `[batch, len, hidden]`; callers that need logits for
    /// only some positions slice these before [`Self::lm_head`] (the vocabulary
    /// projection dominates the cost for large vocabularies).
    pub fn hidden(
        &self,
        tokens: Tensor<B, 2, Int>,
        layout: &Layout<B>,
        mut cache: Option<(&mut KvCache<B>, CacheUse)>,
    ) -> Tensor<B, 3> {
        let len = tokens.dims()[1];
        assert_eq!(len, layout.len(), "layout describes {} tokens, got {len}", layout.len());
        let rotary =
            Rotary::new(layout.positions.clone(), self.config.head_dim, self.config.rope_theta);
        let mut x = self.model.embed_tokens.forward(tokens);
        for (index, layer) in self.model.layers.iter().enumerate() {
            let slot = cache.as_mut().map(|(cache, usage)| CacheSlot {
                cache: &mut **cache,
                layer: index,
                usage: *usage,
            });
            x = layer.forward(x, &rotary, layout.mask.as_ref(), slot);
        }
        if let Some((cache, usage)) = cache {
            cache.advance(usage.committed(len));
        }
        self.model.norm.forward(x)
    }

    /// Vocabulary logits from final hidden states.
    pub fn lm_head(&self, hidden: Tensor<B, 3>) -> Tensor<B, 3> {
        match &self.lm_head {
            Some(head) => crate::quant::project(head, hidden),
            None => {
                // Tied head: logits = h · Eᵀ. Computed as (E · hᵀ)ᵀ so the large embedding
                // matrix is read in its stored layout; transposing it would copy it every call.
                let [batch, len, dim] = hidden.dims();
                let weight = self.model.embed_tokens.weight.val();
                let vocab = weight.dims()[0];
                weight
                    .matmul(hidden.reshape([batch * len, dim]).transpose())
                    .transpose()
                    .reshape([batch, len, vocab])
            }
        }
    }

    /// The model with its weights held as `format` for decoding. Q8 quantizes every
    /// linear layer and the LM head; a tied head gets its own quantized copy of the embedding (`[hidden, vocab]`), while
    /// the lookup keeps the f32 embedding. A quantized model decodes; it is not trained
    /// or saved. Apply it last (after [`Self::into_diffusion`], which grows the vocabulary).
    pub fn with_weights(self, format: crate::WeightFormat) -> Self {
        if format == crate::WeightFormat::F32 {
            return self;
        }
        let Self { model, lm_head, config } = self;
        let head = match lm_head {
            Some(head) => head.weight.val(),
            None => model.embed_tokens.weight.val().transpose(),
        };
        let head =
            Linear { weight: Param::from_tensor(crate::quant::quantize_q8(head)), bias: None };
        let model = Trunk {
            layers: model.layers.into_iter().map(DecoderLayer::quantized).collect(),
            ..model
        };
        Self { model, lm_head: Some(head), config }
    }

    /// A fresh cache sized for this model.
    pub fn new_cache(&self) -> KvCache<B> {
        KvCache::new(self.config.num_hidden_layers)
    }

    /// Makes this model decodable by block diffusion: picks the mask token and records
    /// the block size (and whether logits are read shifted, see [`DiffusionConfig`]).
    ///
    /// Uses the first embedding row the tokenizer never produces (Qwen3 has spare rows:
    /// 151,936 rows for 151,669 tokens → id 151669, as the reference does); when there is
    /// none, appends a row initialised to the mean embedding so that the mask token starts
    /// as an "average" input rather than a random one.
    /// A model that already has a mask token keeps it and its `shift_logits`.
    pub fn into_diffusion(
        mut self,
        tokenizer_vocab_size: usize,
        block_size: usize,
        shift_logits: bool,
    ) -> Self {
        if let Some(diffusion) = &self.config.diffusion {
            self.config.diffusion = Some(DiffusionConfig { block_size, ..diffusion.clone() });
            return self;
        }
        let rows = self.config.vocab_size;
        if tokenizer_vocab_size >= rows {
            self = self.append_mean_embedding_row();
        }
        self.config.diffusion = Some(DiffusionConfig {
            mask_token_id: tokenizer_vocab_size as u32,
            block_size,
            shift_logits,
        });
        self
    }

    fn append_mean_embedding_row(mut self) -> Self {
        let weight = self.model.embed_tokens.weight.val();
        let mean = weight.clone().mean_dim(0);
        // Detached: a new leaf parameter, also on autodiff backends.
        self.model.embed_tokens.weight =
            Param::from_tensor(Tensor::cat(vec![weight, mean], 0).detach());
        if let Some(head) = &mut self.lm_head {
            // The mask token is never predicted (its logit is -inf), so its output row is zero.
            let w = head.weight.val(); // [hidden, vocab]
            let zeros = Tensor::zeros([w.dims()[0], 1], &w.device());
            head.weight = Param::from_tensor(Tensor::cat(vec![w, zeros], 1).detach());
        }
        self.config.vocab_size += 1;
        self
    }
}
