//! Products of a few activation rows (decoding: 1 row per sequence; block diffusion: a
//! block of 4–16 slots) with a weight matrix `[k, n]` stored row-major, f32 or Q8 (int8
//! values in blocks of 32 along a row, one f32 scale per block).
//!
//! Such products are bound by memory bandwidth: every weight is used by only a few rows.
//! The kernel streams each weight once for all rows (`out[r, :] += x[r, i] · w[i, :]`,
//! column tiles of 32 kept in registers for up to 4 rows at a time; a tile's weights are
//! re-read from cache for the next 4 rows), vectorised by the compiler inside functions
//! compiled for AVX-512 or AVX2+FMA and chosen at run time, and split over the thread
//! pool by column tiles. Every output is a plain sum over `i` in order, so a row's result
//! does not depend on how many other rows are multiplied with it, nor on the threads.

use alloc::vec;
use alloc::vec::Vec;

/// Columns per tile, and the Q8 block size (a Q8 tile is one block of every row).
pub(crate) const TILE: usize = 32;
/// Rows multiplied together (their accumulators stay in registers).
const ROWS_AT_ONCE: usize = 4;
/// Below this many weights one thread is faster than waking the pool.
const PARALLEL_MIN_WEIGHTS: usize = 1 << 15;

/// A weight matrix `[k, n]`, row-major, read one row-tile at a time.
pub(crate) trait WeightRows: Sync {
    fn k(&self) -> usize;
    fn n(&self) -> usize;
    /// Row `i`'s columns `j0..j0 + width` (`width ≤ TILE`) as f32 in `out[..width]`, and the
    /// factor they are all to be multiplied by.
    fn load(&self, i: usize, j0: usize, width: usize, out: &mut [f32; TILE]) -> f32;
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
}

/// Q8 weights: int8 values, one scale per block of 32 consecutive values of a row
/// (`n` is a multiple of 32, so blocks never cross rows).
pub(crate) struct Q8Rows<'a> {
    pub values: &'a [i8],
    pub scales: &'a [f32],
    pub k: usize,
    pub n: usize,
}

impl WeightRows for Q8Rows<'_> {
    fn k(&self) -> usize {
        self.k
    }
    fn n(&self) -> usize {
        self.n
    }
    #[inline(always)]
    fn load(&self, i: usize, j0: usize, width: usize, out: &mut [f32; TILE]) -> f32 {
        let start = i * self.n + j0;
        for (o, &q) in out[..width].iter_mut().zip(&self.values[start..start + width]) {
            *o = q as f32;
        }
        self.scales[start / TILE]
    }
}

/// `x · w` for `x` of `m` rows of `w.k()` values (row-major); returns `m` rows of `w.n()`.
pub(crate) fn few_rows_product<W: WeightRows>(weights: &W, x: &[f32], m: usize) -> Vec<f32> {
    let (k, n) = (weights.k(), weights.n());
    assert_eq!(x.len(), m * k, "activations are not {m} rows of {k}");
    let tiles = n.div_ceil(TILE);
    let threads = if k * n >= PARALLEL_MIN_WEIGHTS { pool_threads().min(tiles) } else { 1 };
    let ranges: Vec<(usize, usize)> = (0..threads)
        .map(|t| (t * tiles / threads * TILE, ((t + 1) * tiles / threads * TILE).min(n)))
        .collect();
    let parts = map_maybe_parallel(&ranges, |&(from, to)| columns(weights, x, m, from, to));
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

fn map_maybe_parallel<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync + Send) -> Vec<R> {
    #[cfg(feature = "multi-threads")]
    if items.len() > 1 {
        use rayon::prelude::*;
        return items.par_iter().map(f).collect();
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
    let k = w.k();
    let mut acc = [[0.0f32; TILE]; R];
    let mut row = [0.0f32; TILE];
    for i in 0..k {
        let factor = w.load(i, j0, tile, &mut row);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(w: &[f32], x: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
        let mut out = vec![0.0f32; m * n];
        for r in 0..m {
            for j in 0..n {
                out[r * n + j] = (0..k).map(|i| x[r * k + i] as f64 * w[i * n + j] as f64).sum::<f64>() as f32;
            }
        }
        out
    }

    fn values(len: usize, seed: u32) -> Vec<f32> {
        (0..len).map(|i| (((i as u32).wrapping_mul(2654435761) ^ seed) % 2001) as f32 / 1000.0 - 1.0).collect()
    }

    #[test]
    fn f32_products_match_a_plain_sum_for_odd_shapes() {
        for (m, k, n) in [(1, 7, 5), (3, 33, 31), (5, 64, 70), (16, 40, 96), (9, 300, 200)] {
            let (w, x) = (values(k * n, 1), values(m * k, 2));
            let got = few_rows_product(&F32Rows { values: &w, k, n }, &x, m);
            let want = naive(&w, &x, m, k, n);
            for (g, e) in got.iter().zip(&want) {
                assert!((g - e).abs() <= 1e-4 * (1.0 + e.abs()), "{m}×{k}×{n}: {g} vs {e}");
            }
        }
    }

    #[test]
    fn a_row_gives_the_same_bits_alone_or_among_others() {
        let (k, n) = (256, 160);
        let (w, x) = (values(k * n, 3), values(7 * k, 4));
        let weights = F32Rows { values: &w, k, n };
        let all = few_rows_product(&weights, &x, 7);
        for r in 0..7 {
            let alone = few_rows_product(&weights, &x[r * k..(r + 1) * k], 1);
            assert_eq!(alone, all[r * n..(r + 1) * n]);
        }
    }
}
