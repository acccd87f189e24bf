//! Products of a few activation rows (decoding: 1 row per sequence; block diffusion: a
//! block of 4–16 slots) with an f32 weight matrix `[k, n]` stored row-major (the Q8 kernel
//! is in `q8_rows`, and shares the split over threads defined here).
//!
//! Such products are bound by memory bandwidth: every weight is used by only a few rows.
//! The kernel streams each weight once for all rows (`out[r, :] += x[r, i] · w[i, :]` over
//! column tiles of 32 kept in registers for up to 4 rows at a time), vectorised by the
//! compiler inside functions compiled for AVX-512 or AVX2+FMA and chosen at run time, and
//! split over the thread pool by output columns. Every output is a sum in a fixed order,
//! so a row's result does not depend on how many other rows are multiplied with it, nor
//! on the threads.

use alloc::vec;
use alloc::vec::Vec;

/// Columns per f32 tile.
const TILE: usize = 32;
/// Rows multiplied together (their accumulators stay in registers).
pub(crate) const ROWS_AT_ONCE: usize = 4;
/// Below this many weights one thread is faster than waking the pool.
const PARALLEL_MIN_WEIGHTS: usize = 1 << 15;

/// A weight matrix `[k, n]`, row-major, read one row-tile at a time.
pub(crate) trait WeightRows: Sync {
    fn k(&self) -> usize;
    fn n(&self) -> usize;
    /// Row `i`'s columns `j0..j0 + width` (`width ≤ TILE`) as f32 in `out[..width]`, and the
    /// factor they are all to be multiplied by.
    fn load(&self, i: usize, j0: usize, width: usize, out: &mut [f32; TILE]) -> f32;
    /// [`Self::load`] of a whole tile: a fixed width, which the compiler turns into
    /// vector loads (a variable width becomes a `memcpy` call per row).
    fn load_tile(&self, i: usize, j0: usize, out: &mut [f32; TILE]) -> f32;
}

/// f32 weights.
pub(crate) struct F32Rows<'a> {
    pub values: &'a [f32],
    pub k: usize,
    pub n: usize,
}

impl WeightRows for F32Rows<'_> {
    fn k(&self) -> usize {
        self.k
    }
    fn n(&self) -> usize {
        self.n
    }
    #[inline(always)]
    fn load(&self, i: usize, j0: usize, width: usize, out: &mut [f32; TILE]) -> f32 {
        let start = i * self.n + j0;
        out[..width].copy_from_slice(&self.values[start..start + width]);
        1.0
    }
    #[inline(always)]
    fn load_tile(&self, i: usize, j0: usize, out: &mut [f32; TILE]) -> f32 {
        let start = i * self.n + j0;
        let tile: &[f32; TILE] = self.values[start..start + TILE].try_into().expect("a whole tile");
        *out = *tile;
        1.0
    }
}

/// `x · w` for `x` of `m` rows of `w.k()` values (row-major); returns `m` rows of `w.n()`.
pub(crate) fn few_rows_product<W: WeightRows>(weights: &W, x: &[f32], m: usize) -> Vec<f32> {
    let (k, n) = (weights.k(), weights.n());
    assert_eq!(x.len(), m * k, "activations are not {m} rows of {k}");
    split_columns(m, k, n, TILE, |from, to| columns(weights, x, m, from, to))
}

/// Runs `part(from, to)` for contiguous ranges of the `n` output columns (multiples of
/// `unit`), one per pool thread when the matrix is worth it, and assembles the `m` rows.
pub(crate) fn split_columns(
    m: usize,
    k: usize,
    n: usize,
    unit: usize,
    part: impl Fn(usize, usize) -> Vec<f32> + Sync + Send,
) -> Vec<f32> {
    let units = n.div_ceil(unit);
    let threads = if k * n >= PARALLEL_MIN_WEIGHTS { pool_threads().min(units) } else { 1 };
    let ranges: Vec<(usize, usize)> = (0..threads)
        .map(|t| (t * units / threads * unit, ((t + 1) * units / threads * unit).min(n)))
        .collect();
    let parts = map_maybe_parallel(&ranges, |&(from, to)| part(from, to));
    let mut out = vec![0.0f32; m * n];
    for ((from, to), part) in ranges.iter().zip(parts) {
        let width = to - from;
        for r in 0..m {
            out[r * n + from..r * n + to].copy_from_slice(&part[r * width..(r + 1) * width]);
        }
    }
    out
}

fn pool_threads() -> usize {
    #[cfg(feature = "multi-threads")]
    {
        rayon::current_num_threads()
    }
    #[cfg(not(feature = "multi-threads"))]
    {
        1
    }
}

/// `f` of every item, over the cores when there are several items (see `spin_pool`).
fn map_maybe_parallel<T: Sync, R: Send + Sync>(
    items: &[T],
    f: impl Fn(&T) -> R + Sync + Send,
) -> Vec<R> {
    #[cfg(feature = "multi-threads")]
    if items.len() > 1 {
        use std::sync::OnceLock;
        let slots: Vec<OnceLock<R>> = items.iter().map(|_| OnceLock::new()).collect();
        super::spin_pool::run_parts(pool_threads(), items.len(), &|i| {
            let _ = slots[i].set(f(&items[i]));
        });
        return slots.into_iter().map(|slot| slot.into_inner().expect("every part ran")).collect();
    }
    items.iter().map(f).collect()
}

/// Columns `from..to` of every row of the product, as `m` rows of `to - from`.
fn columns<W: WeightRows>(w: &W, x: &[f32], m: usize, from: usize, to: usize) -> Vec<f32> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has the features the function is compiled for.
            return unsafe { columns_avx512(w, x, m, from, to) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: as above.
            return unsafe { columns_avx2(w, x, m, from, to) };
        }
    }
    columns_body::<W, false>(w, x, m, from, to)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn columns_avx512<W: WeightRows>(w: &W, x: &[f32], m: usize, from: usize, to: usize) -> Vec<f32> {
    columns_body::<W, true>(w, x, m, from, to)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn columns_avx2<W: WeightRows>(w: &W, x: &[f32], m: usize, from: usize, to: usize) -> Vec<f32> {
    columns_body::<W, true>(w, x, m, from, to)
}

/// The kernel: for each tile of columns and each group of up to 4 rows, one pass over
/// the `k` weight rows. `FMA`: fused multiply-adds (only where the CPU has them:
/// elsewhere `mul_add` is a slow library call).
#[inline(always)]
fn columns_body<W: WeightRows, const FMA: bool>(
    w: &W,
    x: &[f32],
    m: usize,
    from: usize,
    to: usize,
) -> Vec<f32> {
    let k = w.k();
    let width = to - from;
    let mut out = vec![0.0f32; m * width];
    let mut j0 = from;
    while j0 < to {
        let tile = TILE.min(to - j0);
        let mut r0 = 0;
        while r0 < m {
            let rows = ROWS_AT_ONCE.min(m - r0);
            let x_rows = &x[r0 * k..(r0 + rows) * k];
            let out_rows = &mut out[r0 * width..(r0 + rows) * width];
            match rows {
                4 => tile_rows::<W, 4, FMA>(w, x_rows, j0, tile, out_rows, j0 - from, width),
                3 => tile_rows::<W, 3, FMA>(w, x_rows, j0, tile, out_rows, j0 - from, width),
                2 => tile_rows::<W, 2, FMA>(w, x_rows, j0, tile, out_rows, j0 - from, width),
                _ => tile_rows::<W, 1, FMA>(w, x_rows, j0, tile, out_rows, j0 - from, width),
            }
            r0 += rows;
        }
        j0 += tile;
    }
    out
}

/// `R` rows times columns `j0..j0 + tile` of the weights, written at column `at` of
/// `out` (rows of `width`).
#[inline(always)]
fn tile_rows<W: WeightRows, const R: usize, const FMA: bool>(
    w: &W,
    x: &[f32],
    j0: usize,
    tile: usize,
    out: &mut [f32],
    at: usize,
    width: usize,
) {
    if tile == TILE {
        accumulate::<W, R, FMA, true>(w, x, j0, tile, out, at, width);
    } else {
        accumulate::<W, R, FMA, false>(w, x, j0, tile, out, at, width);
    }
}

/// [`tile_rows`] for a whole tile (`WHOLE`) or a narrower last one.
#[inline(always)]
fn accumulate<W: WeightRows, const R: usize, const FMA: bool, const WHOLE: bool>(
    w: &W,
    x: &[f32],
    j0: usize,
    tile: usize,
    out: &mut [f32],
    at: usize,
    width: usize,
) {
    let k = w.k();
    let mut acc = [[0.0f32; TILE]; R];
    let mut row = [0.0f32; TILE];
    for i in 0..k {
        let factor = if WHOLE { w.load_tile(i, j0, &mut row) } else { w.load(i, j0, tile, &mut row) };
        for r in 0..R {
            let xs = x[r * k + i] * factor;
            for t in 0..TILE {
                acc[r][t] = if FMA { xs.mul_add(row[t], acc[r][t]) } else { acc[r][t] + xs * row[t] };
            }
        }
    }
    for r in 0..R {
        out[r * width + at..r * width + at + tile].copy_from_slice(&acc[r][..tile]);
    }
}
