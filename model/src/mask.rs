//! Who attends to whom: the causal teacher, the block-causal student, and the BD3LM
//! training layout that evaluates a noisy block against its clean prefix in one pass.
//!
//! Every rule here is stated on *absolute positions* (blocks are `pos / block_size`,
//! counted from position 0 as the sampler counts them), so the same rule serves an
//! uncached forward, a cached one and the training layout.

use burn::prelude::*;
use burn::tensor::{Bool, Int};

/// How tokens of one sequence may attend to each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttentionMode {
    /// Ordinary autoregressive attention: key position ≤ query position.
    Causal,
    /// Bidirectional inside a block of `block_size` positions, causal across blocks.
    BlockCausal {
        /// Positions per block; blocks start at multiples of it, counted from position 0.
        block_size: usize,
    },
}

impl AttentionMode {
    /// Whether a query at position `query` may see a key at position `key`.
    pub fn allows(self, query: usize, key: usize) -> bool {
        match self {
            Self::Causal => key <= query,
            Self::BlockCausal { block_size } => key / block_size <= query / block_size,
        }
    }
}

/// Positions and attention mask for one forward pass over `[batch, queries]` tokens
/// against `keys` = cached tokens followed by the queries themselves.
#[derive(Debug, Clone)]
pub struct Layout<B: Backend> {
    /// RoPE position of every query token, `[batch, queries]`.
    pub positions: Tensor<B, 2, Int>,
    /// `true` where attention is blocked, `[batch, queries, keys]`; `None` = all visible.
    pub mask: Option<Tensor<B, 3, Bool>>,
}

impl<B: Backend> Layout<B> {
    /// `len` tokens at positions `start..start + len`, attending to the `start` tokens
    /// before them (in a cache) and to each other under `mode`.
    pub fn contiguous(
        mode: AttentionMode,
        batch: usize,
        start: usize,
        len: usize,
        device: &B::Device,
    ) -> Self {
        let query_pos = Tensor::<B, 1, Int>::arange(start as i64..(start + len) as i64, device);
        let positions = query_pos.clone().unsqueeze::<2>().expand([batch, len]);
        // Fast path: when even the first query may see the last key, nothing is masked
        // (a single causal step, or a block-causal block starting on a block boundary).
        let last_key = start + len - 1;
        let mask = if len == 0 || mode.allows(start, last_key) {
            None
        } else {
            let key_pos = Tensor::<B, 1, Int>::arange(0..(start + len) as i64, device);
            let blocked = blocked_by_mode(mode, query_pos, key_pos);
            Some(blocked.unsqueeze::<3>().expand([batch, len, start + len]))
        };
        Self { positions, mask }
    }

    /// The BD3LM training layout `[prompt | x0 response | x_t]` for a prompt of
    /// `prompt_len` and a response of `response_len` tokens.
    ///
    /// The noisy copy starts at the *block boundary* at or before the prompt's end, so the
    /// prompt's last partial block is part of it exactly as the sampler's active block
    /// holds it. Row logits of the noisy copy therefore equal those of the student run on
    /// `x0[<b], x_t[b]` (the rule is [`Layout::training_rows`]').
    pub fn training(
        prompt_len: usize,
        response_len: usize,
        block_size: usize,
        batch: usize,
        device: &B::Device,
    ) -> Self {
        let total = prompt_len + response_len;
        let noisy_start = prompt_len / block_size * block_size;
        let clean_pos = Tensor::<B, 1, Int>::arange(0..total as i64, device);
        let noisy_pos = Tensor::<B, 1, Int>::arange(noisy_start as i64..total as i64, device);
        let noisy_len = total - noisy_start;
        let positions = Tensor::cat(vec![clean_pos, noisy_pos], 0);
        let noisy = Tensor::cat(
            vec![
                Tensor::<B, 1, Bool>::full([total], false, device),
                Tensor::<B, 1, Bool>::full([noisy_len], true, device),
            ],
            0,
        );
        let len = total + noisy_len;
        Self::training_rows(
            positions.unsqueeze::<2>().expand([batch, len]),
            noisy.unsqueeze::<2>().expand([batch, len]),
            block_size,
        )
    }

    /// The BD3LM training rule for rows that each hold their own layout (prompts of
    /// different lengths in one pass): `positions` (`[batch, len]`, RoPE positions) and
    /// `noisy` (`[batch, len]`, `true` for tokens of the noisy copy `x_t`). Clean tokens
    /// are block-causal among themselves and never see the noisy copy; a noisy token in
    /// block `b` sees clean blocks `< b` and its own noisy block.
    pub fn training_rows(
        positions: Tensor<B, 2, Int>,
        noisy: Tensor<B, 2, Bool>,
        block_size: usize,
    ) -> Self {
        let [batch, len] = positions.dims();
        let grid = [batch, len, len];
        let block = positions.clone().div_scalar(block_size as i64);
        let query_block = block.clone().unsqueeze_dim::<3>(2).expand(grid);
        let key_block = block.unsqueeze_dim::<3>(1).expand(grid);
        let noisy_query = noisy.clone().unsqueeze_dim::<3>(2).expand(grid);
        let noisy_key = noisy.unsqueeze_dim::<3>(1).expand(grid);
        let clean_blocked =
            noisy_key.clone().bool_or(key_block.clone().greater(query_block.clone()));
        let noisy_blocked = noisy_key
            .clone()
            .bool_and(key_block.clone().not_equal(query_block.clone()))
            .bool_or(noisy_key.bool_not().bool_and(key_block.greater_equal(query_block)));
        let mask = noisy_query
            .clone()
            .bool_not()
            .bool_and(clean_blocked)
            .bool_or(noisy_query.bool_and(noisy_blocked));
        Self { positions, mask: Some(mask) }
    }

    /// Per-row left padding for ragged batches: row `r`'s tokens sit `left_pad[r]`
    /// slots to the right of their true positions, and `void_slots` (`[batch, keys]`,
    /// `true` for padding) are hidden from every real query. Padding queries keep their
    /// view so that their (ignored) outputs stay finite.
    pub fn with_padding(self, left_pad: Tensor<B, 1, Int>, void_slots: Tensor<B, 2, Bool>) -> Self {
        let [batch, len] = self.positions.dims();
        let keys = void_slots.dims()[1];
        let positions = self.positions - left_pad.unsqueeze_dim::<2>(1);
        let void_queries = void_slots.clone().slice(s![.., keys - len..keys]);
        let hidden = void_slots
            .unsqueeze_dim::<3>(1)
            .expand([batch, len, keys])
            .bool_and(void_queries.bool_not().unsqueeze_dim::<3>(2).expand([batch, len, keys]));
        let mask = match self.mask {
            Some(mask) => mask.bool_or(hidden),
            None => hidden,
        };
        Self { positions, mask: Some(mask) }
    }

    /// Number of query tokens this layout describes.
    pub fn len(&self) -> usize {
        self.positions.dims()[1]
    }

    /// Whether this layout describes no query token at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Blocked pairs `[queries, keys]` under `mode` (`true` = may not attend).
fn blocked_by_mode<B: Backend>(
    mode: AttentionMode,
    query_pos: Tensor<B, 1, Int>,
    key_pos: Tensor<B, 1, Int>,
) -> Tensor<B, 2, Bool> {
    let (q, k) = match mode {
        AttentionMode::Causal => (query_pos, key_pos),
        AttentionMode::BlockCausal { block_size } => {
            (query_pos.div_scalar(block_size as i64), key_pos.div_scalar(block_size as i64))
        }
    };
    k.unsqueeze_dim::<2>(0).greater(q.unsqueeze_dim::<2>(1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::NdArray;

    type B = NdArray<f32>;

    /// Which copy of the response a token of the training layout belongs to.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Stream {
        /// Prompt and the terminal sequence `x0`: the clean context.
        Clean,
        /// The partially masked state `x_t`.
        Noisy,
    }

    fn to_grid(mask: Tensor<B, 3, Bool>) -> Vec<Vec<bool>> {
        let [_, q, k] = mask.dims();
        let flat: Vec<bool> = mask.slice(s![0..1]).into_data().to_vec().unwrap();
        (0..q).map(|i| flat[i * k..(i + 1) * k].to_vec()).collect()
    }

    #[test]
    fn block_causal_mask_matches_the_position_rule() {
        let device = Default::default();
        let mode = AttentionMode::BlockCausal { block_size: 3 };
        // 5 new tokens after 2 cached: positions 2..7.
        let layout = Layout::<B>::contiguous(mode, 2, 2, 5, &device);
        let grid = to_grid(layout.mask.unwrap());
        for (qi, row) in grid.iter().enumerate() {
            for (k, &blocked) in row.iter().enumerate() {
                assert_eq!(blocked, !mode.allows(qi + 2, k), "query {} key {k}", qi + 2);
            }
        }
    }

    #[test]
    fn aligned_active_block_needs_no_mask() {
        let device = Default::default();
        let mode = AttentionMode::BlockCausal { block_size: 4 };
        assert!(Layout::<B>::contiguous(mode, 1, 8, 4, &device).mask.is_none());
        assert!(Layout::<B>::contiguous(AttentionMode::Causal, 1, 8, 1, &device).mask.is_none());
        assert!(Layout::<B>::contiguous(AttentionMode::Causal, 1, 8, 2, &device).mask.is_some());
    }

    /// Rows of different prompt lengths in one `training_rows` layout (the shorter one
    /// right-padded): each row's real part is masked and placed as `training` does alone.
    #[test]
    fn training_rows_give_each_row_its_own_training_layout() {
        let device = Default::default();
        let block = 2;
        let rows = [(3usize, 5usize), (5, 2)];
        let row_len = |(p, r): (usize, usize)| 2 * (p + r) - p / block * block;
        let len = rows.iter().map(|&row| row_len(row)).max().unwrap();
        let (mut positions, mut noisy) = (vec![], vec![]);
        for &(p, r) in &rows {
            let noisy_start = p / block * block;
            positions.extend((0..p + r).chain(noisy_start..p + r).map(|k| k as i64));
            noisy.extend((0..row_len((p, r))).map(|k| k >= p + r));
            positions.resize(positions.len() + len - row_len((p, r)), 0);
            noisy.resize(noisy.len() + len - row_len((p, r)), false);
        }
        let layout = Layout::<B>::training_rows(
            Tensor::from_data(TensorData::new(positions, [2, len]), &device),
            Tensor::from_data(TensorData::new(noisy, [2, len]), &device),
            block,
        );
        let mask = layout.mask.unwrap();
        for (i, &(p, r)) in rows.iter().enumerate() {
            let alone = Layout::<B>::training(p, r, block, 1, &device);
            let n = row_len((p, r));
            let row_positions = layout.positions.clone().slice(s![i..i + 1, 0..n]);
            assert_eq!(row_positions.into_data(), alone.positions.into_data(), "row {i}");
            let row_mask = mask.clone().slice(s![i..i + 1, 0..n, 0..n]);
            assert_eq!(to_grid(row_mask), to_grid(alone.mask.unwrap()), "row {i}");
        }
    }

    #[test]
    fn training_layout_noisy_block_sees_earlier_clean_blocks_and_itself() {
        let device = Default::default();
        // prompt 3, response 5, block 2: clean positions 0..8, noisy positions 2..8.
        let layout = Layout::<B>::training(3, 5, 2, 1, &device);
        let positions: Vec<i64> =
            layout.positions.clone().into_data().convert::<i64>().to_vec().unwrap();
        assert_eq!(positions, vec![0, 1, 2, 3, 4, 5, 6, 7, 2, 3, 4, 5, 6, 7]);
        let grid = to_grid(layout.mask.unwrap());
        let stream = |i: usize| if i < 8 { Stream::Clean } else { Stream::Noisy };
        for q in 0..14 {
            for k in 0..14 {
                let (pq, pk) = (positions[q] as usize / 2, positions[k] as usize / 2);
                let allowed = match (stream(q), stream(k)) {
                    (Stream::Clean, Stream::Clean) => pk <= pq,
                    (Stream::Clean, Stream::Noisy) => false,
                    (Stream::Noisy, Stream::Clean) => pk < pq,
                    (Stream::Noisy, Stream::Noisy) => pk == pq,
                };
                assert_eq!(grid[q][k], !allowed, "query {q} key {k}");
            }
        }
    }
}
