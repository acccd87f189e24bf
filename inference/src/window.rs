//! The input of one batched forward pass when every row advances on its own: row `r`
//! contributes its *window* (its finished, not yet cached slots, then its active block),
//! windows are left-aligned and padded with void columns to the widest, and the mask
//! gives every row its own view of the shared cache.
//!
//! The cache grows by the same number of columns for every row (the widest pending part),
//! so a row that committed less leaves *holes*: columns that hold none of its slots. The
//! mask hides them, and [`compaction`] squeezes them out once they make up a third of it.

use burn::prelude::*;
use burn::tensor::{Bool, Int, TensorData};
use opdlm_model::Layout;

use crate::row::Row;

/// Where each row's window sits in the pass.
pub(crate) struct Window {
    /// Columns of the pass (the longest window).
    pub width: usize,
    /// Leading columns appended to the cache (the longest pending part).
    pub commit: usize,
    /// Per row: slots in its window.
    pub lens: Vec<usize>,
    /// Per row: finished slots at the window's front, cached by this pass.
    pub pending: Vec<usize>,
}

impl Window {
    /// Every row's window: slots `cached..block.end` (`..block.start` when `skip_active`:
    /// with shifted logits a one-slot block's own input is read by nobody).
    pub fn plan(rows: &[Row], skip_active: bool) -> Self {
        let lens: Vec<usize> = rows
            .iter()
            .map(|r| if skip_active { r.block.start } else { r.block.end } - r.cached)
            .collect();
        let pending: Vec<usize> = rows.iter().map(|r| r.block.start - r.cached).collect();
        Self {
            width: lens.iter().copied().max().unwrap_or(0),
            commit: pending.iter().copied().max().unwrap_or(0),
            lens,
            pending,
        }
    }

    /// Input ids `[rows, width]`: the window's slots, the mask id in masked and void columns.
    pub fn tokens<B: Backend>(
        &self,
        rows: &[Row],
        mask_id: u32,
        device: &B::Device,
    ) -> Tensor<B, 2, Int> {
        let mut ids = vec![mask_id as i64; rows.len() * self.width];
        for (r, row) in rows.iter().enumerate() {
            for j in 0..self.lens[r] {
                ids[r * self.width + j] = row.input_id(row.cached + j, mask_id) as i64;
            }
        }
        Tensor::from_data(TensorData::new(ids, [rows.len(), self.width]), device)
    }

    /// Positions and mask of the pass against `cache_len` cached columns. A real query
    /// sees its row's cached columns and the window slots of blocks up to its own
    /// (block-causal); a void query sees only itself, which keeps its ignored output
    /// finite. The mask is dropped when it blocks nothing.
    pub fn layout<B: Backend>(
        &self,
        rows: &[Row],
        block_size: usize,
        cache_len: usize,
        device: &B::Device,
    ) -> Layout<B> {
        let (batch, width) = (rows.len(), self.width);
        let keys = cache_len + width;
        let mut positions = vec![0i64; batch * width];
        let mut blocked = vec![true; batch * width * keys];
        for (r, row) in rows.iter().enumerate() {
            let hidden_cache: Vec<bool> = row.cache_columns.iter().map(|&own| !own).collect();
            for j in 0..width {
                let at = (r * width + j) * keys;
                let view = &mut blocked[at..at + keys];
                if j >= self.lens[r] {
                    view[cache_len + j] = false;
                    continue;
                }
                let query_block = (row.cached + j) / block_size;
                positions[r * width + j] = (row.cached + j) as i64;
                view[..cache_len].copy_from_slice(&hidden_cache);
                for k in 0..self.lens[r] {
                    view[cache_len + k] = (row.cached + k) / block_size > query_block;
                }
            }
        }
        let positions = Tensor::from_data(TensorData::new(positions, [batch, width]), device);
        let mask = blocked.contains(&true).then(|| {
            Tensor::<B, 3, Bool>::from_data(TensorData::new(blocked, [batch, width, keys]), device)
        });
        Layout { positions, mask }
    }

    /// Records that the pass appended `commit` columns: each row's first `pending` are its
    /// own, now cached, slots.
    pub fn record_commit(&self, rows: &mut [Row]) {
        for (r, row) in rows.iter_mut().enumerate() {
            row.cached += self.pending[r];
            row.cache_columns.extend((0..self.commit).map(|j| j < self.pending[r]));
        }
    }

    /// Per row, the index (into the pass's `[rows * width]` hidden states followed by the
    /// `[rows]` carried ones) of the state to carry: the last pending slot's, or the
    /// carried one when nothing was pending.
    pub fn carry_picks(&self) -> Vec<i64> {
        let rows = self.lens.len();
        (0..rows)
            .map(|r| match self.pending[r] {
                0 => rows * self.width + r,
                p => r * self.width + p - 1,
            } as i64)
            .collect()
    }
}

/// The cache columns every row keeps (`[rows, kept]`: its own, in order, padded by
/// repeating its last one to the longest row's count), once the cache is 1.5× the longest
/// row's own columns; the rows' column maps are rewritten to match. Holes cost every
/// later pass attention work and memory; a compaction copies the cache once, about what
/// one committing pass copies anyway (burn's `cat`).
pub(crate) fn compaction<B: Backend>(
    rows: &mut [Row],
    cache_len: usize,
    device: &B::Device,
) -> Option<Tensor<B, 2, Int>> {
    let own: Vec<Vec<i64>> = rows
        .iter()
        .map(|r| {
            let columns = r.cache_columns.iter().enumerate();
            columns.filter(|(_, &own)| own).map(|(c, _)| c as i64).collect()
        })
        .collect();
    let longest = own.iter().map(Vec::len).max().unwrap_or(0);
    if longest == 0 || 2 * cache_len < 3 * longest {
        return None;
    }
    let mut kept = Vec::with_capacity(rows.len() * longest);
    for (mut columns, row) in own.into_iter().zip(rows.iter_mut()) {
        row.cache_columns = (0..longest).map(|c| c < columns.len()).collect();
        let filler = columns.last().copied().unwrap_or(0);
        columns.resize(longest, filler);
        kept.extend(columns);
    }
    Some(Tensor::from_data(TensorData::new(kept, [rows.len(), longest]), device))
}
