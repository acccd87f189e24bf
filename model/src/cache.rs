//! Key/value cache owned by the caller and passed to the model as `&mut`.
//!
//! Block-causal attention makes caching exact: a committed block never attends to
//! anything after it, so its keys and values are final once written. The active block
//! is recomputed at every denoising step against the cached prefix and only appended
//! ([`CacheUse::Commit`]) when it is complete.

use burn::prelude::*;
use burn::tensor::Int;

/// Whether a cached forward pass appends its keys/values to the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheUse {
    /// Append the new tokens' keys/values (prefill, committing a finished block).
    Commit,
    /// Append only the first `n` new tokens: a finished block committed in the same
    /// pass as the first denoising step of the next block.
    CommitFirst(usize),
    /// Attend to the cache but leave it unchanged (a denoising step of the active block).
    ReadOnly,
}

impl CacheUse {
    /// How many of `new` tokens this pass appends.
    pub fn committed(self, new: usize) -> usize {
        match self {
            Self::Commit => new,
            Self::CommitFirst(n) => n.min(new),
            Self::ReadOnly => 0,
        }
    }
}

/// Keys and values of one layer, `[batch, kv_heads, cached_len, head_dim]` (before
/// grouped-query expansion, so the cache is `num_attention_heads / num_kv_heads` smaller).
#[derive(Debug, Clone)]
pub struct LayerKv<B: Backend> {
    /// Keys, already rotated by RoPE at their absolute positions.
    pub keys: Tensor<B, 4>,
    /// Values.
    pub values: Tensor<B, 4>,
}

/// The committed keys/values of every layer for a batch of sequences. Every row has the
/// same number of cache *columns*; a decoder whose rows advance at different speeds marks
/// the columns that hold none of a row's tokens as hidden in that row's mask, and
/// squeezes them out with [`KvCache::compact`].
#[derive(Debug, Clone)]
pub struct KvCache<B: Backend> {
    layers: Vec<Option<LayerKv<B>>>,
    len: usize,
}

impl<B: Backend> KvCache<B> {
    /// An empty cache for a model of `num_layers` layers (see `Transformer::new_cache`).
    pub fn new(num_layers: usize) -> Self {
        Self { layers: vec![None; num_layers], len: 0 }
    }

    /// Number of cached positions (the position of the next token).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing has been committed yet (no prompt prefilled).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Keys/values of `layer` followed by the new ones; stores them when committing.
    pub(crate) fn extend(&mut self, layer: usize, new: LayerKv<B>, usage: CacheUse) -> LayerKv<B> {
        let new_len = new.keys.dims()[2];
        let full = match &self.layers[layer] {
            None => new,
            Some(old) => LayerKv {
                keys: Tensor::cat(vec![old.keys.clone(), new.keys], 2),
                values: Tensor::cat(vec![old.values.clone(), new.values], 2),
            },
        };
        let keep = self.len + usage.committed(new_len);
        if keep == self.len + new_len {
            self.layers[layer] = Some(full.clone());
        } else if keep > self.len {
            self.layers[layer] = Some(LayerKv {
                keys: full.keys.clone().slice(s![.., .., 0..keep]),
                values: full.values.clone().slice(s![.., .., 0..keep]),
            });
        }
        full
    }

    /// Records that a committing pass appended `count` positions to every layer.
    pub(crate) fn advance(&mut self, count: usize) {
        self.len += count;
    }

    /// Keeps, for every row `r`, the columns `columns[r]` in that order (`[batch, new_len]`;
    /// rows may keep different columns, e.g. to drop the holes left by ragged commits).
    pub fn compact(&mut self, columns: Tensor<B, 2, Int>) {
        let [batch, new_len] = columns.dims();
        for kv in self.layers.iter_mut().flatten() {
            let [_, heads, _, dim] = kv.keys.dims();
            let index = columns
                .clone()
                .reshape([batch, 1, new_len, 1])
                .expand([batch, heads, new_len, dim]);
            kv.keys = kv.keys.clone().gather(2, index.clone());
            kv.values = kv.values.clone().gather(2, index);
        }
        self.len = new_len;
    }

    /// Keeps only the given batch rows (e.g. drop sequences that finished). Keeping none
    /// empties the cache without a kernel: an empty selection is a zero-sized launch,
    /// which CUDA rejects (`CUDA_ERROR_INVALID_VALUE`, seen on an H200).
    pub fn retain_rows(&mut self, rows: Tensor<B, 1, Int>) {
        if rows.dims()[0] == 0 {
            *self = Self::new(self.layers.len());
            return;
        }
        for kv in self.layers.iter_mut().flatten() {
            kv.keys = kv.keys.clone().select(0, rows.clone());
            kv.values = kv.values.clone().select(0, rows.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;

    type B = NdArray<f32>;

    fn rows(ids: &[i64]) -> Tensor<B, 1, Int> {
        Tensor::from_data(TensorData::new(ids.to_vec(), [ids.len()]), &Default::default())
    }

    #[test]
    fn retaining_no_rows_empties_the_cache_without_a_selection() {
        let kv = LayerKv::<B> {
            keys: Tensor::ones([2, 1, 3, 4], &Default::default()),
            values: Tensor::ones([2, 1, 3, 4], &Default::default()),
        };
        let mut cache = KvCache::new(2);
        for layer in 0..2 {
            cache.extend(layer, kv.clone(), CacheUse::Commit);
        }
        cache.advance(3);
        cache.retain_rows(rows(&[1]));
        assert_eq!(cache.len(), 3);
        assert!(cache.layers.iter().flatten().all(|kv| kv.keys.dims() == [1, 1, 3, 4]));
        // The last row leaving (end of every generation) must not select zero rows.
        cache.retain_rows(rows(&[]));
        assert!(cache.is_empty());
        assert!(cache.layers.iter().all(Option::is_none));
    }
}
