//! Products of a few activation rows (decoding: 1 row per sequence; block diffusion: a
//! block of 4–16 slots per sequence, up to [`max_rows`] in all) with an f32 weight matrix
//! `[k, n]` stored row-major (the Q8 kernel is in `q8_rows`, and shares the split over
//! threads defined here).
//!
//! Such products are bound by memory bandwidth: every weight is used by only a few rows.
//! The kernel streams each weight once for all rows (`out[r, :] += x[r, i] · w[i, :]` over
//! column tiles kept in registers for a group of rows), split over the thread pool by
//! output columns. On AVX-512 it is written with intrinsics (module `avx512`); elsewhere
//! the compiler vectorises it inside a function compiled for AVX2+FMA (chosen at run time)
//! or for the baseline target. Every output is one chain of fused multiply-adds in the
//! order of `k` (plain multiply-adds without FMA), so a row's result does not depend on how
//! many other rows are multiplied with it, nor on the threads or the kernel.

use alloc::vec;
use alloc::vec::Vec;

/// Columns per tile of the compiler-vectorised kernel (the AVX-512 one has its own).
const TILE: usize = 32;
/// Rows multiplied together by the Q8 kernel and by the compiler-vectorised f32 kernel
/// (their accumulators stay in registers).
pub(crate) const ROWS_AT_ONCE: usize = 4;
/// Below this many weights one thread is faster than waking the pool.
const PARALLEL_MIN_WEIGHTS: usize = 1 << 15;

/// Up to this many activation rows (over all batches of the left operand) `matmul` sends
/// here. On AVX-512, 64: a training rollout decodes 8 sequences' blocks of 4 (32 rows), and
/// at 64 rows the kernel was still faster than gemm on SmolLM2's shapes (`[576, 1536]`:
/// 0.43–0.46 ms against 0.50). Elsewhere 16: the compiler-vectorised kernel reads the
/// weights again for every 4 rows, and was not measured against gemm above 16.
pub(crate) fn max_rows() -> usize {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        return 64;
    }
    16
}

/// f32 weights `[k, n]`, row-major.
pub(crate) struct F32Rows<'a> {
    pub values: &'a [f32],
    pub k: usize,
    pub n: usize,
}

impl F32Rows<'_> {
    /// Row `i`'s columns `j0..j0 + width` (`width ≤ TILE`) in `out[..width]`.
    #[inline(always)]
    fn load(&self, i: usize, j0: usize, width: usize, out: &mut [f32; TILE]) {
        let start = i * self.n + j0;
        out[..width].copy_from_slice(&self.values[start..start + width]);
    }
    /// [`Self::load`] of a whole tile: a fixed width, which the compiler turns into
    /// vector loads (a variable width becomes a `memcpy` call per row).
    #[inline(always)]
    fn load_tile(&self, i: usize, j0: usize, out: &mut [f32; TILE]) {
        let start = i * self.n + j0;
        let tile: &[f32; TILE] = self.values[start..start + TILE].try_into().expect("a whole tile");
        *out = *tile;
    }
}

/// `x · w` for `x` of `m` rows of `w.k` values (row-major); returns `m` rows of `w.n`.
pub(crate) fn few_rows_product(weights: &F32Rows<'_>, x: &[f32], m: usize) -> Vec<f32> {
    let (k, n) = (weights.k, weights.n);
    assert_eq!(weights.values.len(), k * n, "weights are not {k} rows of {n}");
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
fn columns(w: &F32Rows<'_>, x: &[f32], m: usize, from: usize, to: usize) -> Vec<f32> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F; `few_rows_product` checked `x`'s length and
            // `F32Rows` holds `k · n` values.
            return unsafe { avx512::columns(w, x, m, from, to) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: as above.
            return unsafe { columns_avx2(w, x, m, from, to) };
        }
    }
    columns_body::<false>(w, x, m, from, to)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn columns_avx2(w: &F32Rows<'_>, x: &[f32], m: usize, from: usize, to: usize) -> Vec<f32> {
    columns_body::<true>(w, x, m, from, to)
}

/// The kernel: for each tile of columns and each group of up to 4 rows, one pass over
/// the `k` weight rows. `FMA`: fused multiply-adds (only where the CPU has them:
/// elsewhere `mul_add` is a slow library call).
#[inline(always)]
fn columns_body<const FMA: bool>(
    w: &F32Rows<'_>,
    x: &[f32],
    m: usize,
    from: usize,
    to: usize,
) -> Vec<f32> {
    let k = w.k;
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
                4 => tile_rows::<4, FMA>(w, x_rows, j0, tile, out_rows, j0 - from, width),
                3 => tile_rows::<3, FMA>(w, x_rows, j0, tile, out_rows, j0 - from, width),
                2 => tile_rows::<2, FMA>(w, x_rows, j0, tile, out_rows, j0 - from, width),
                _ => tile_rows::<1, FMA>(w, x_rows, j0, tile, out_rows, j0 - from, width),
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
fn tile_rows<const R: usize, const FMA: bool>(
    w: &F32Rows<'_>,
    x: &[f32],
    j0: usize,
    tile: usize,
    out: &mut [f32],
    at: usize,
    width: usize,
) {
    if tile == TILE {
        accumulate::<R, FMA, true>(w, x, j0, tile, out, at, width);
    } else {
        accumulate::<R, FMA, false>(w, x, j0, tile, out, at, width);
    }
}

/// [`tile_rows`] for a whole tile (`WHOLE`) or a narrower last one.
#[inline(always)]
fn accumulate<const R: usize, const FMA: bool, const WHOLE: bool>(
    w: &F32Rows<'_>,
    x: &[f32],
    j0: usize,
    tile: usize,
    out: &mut [f32],
    at: usize,
    width: usize,
) {
    let k = w.k;
    let mut acc = [[0.0f32; TILE]; R];
    let mut row = [0.0f32; TILE];
    for i in 0..k {
        if WHOLE {
            w.load_tile(i, j0, &mut row)
        } else {
            w.load(i, j0, tile, &mut row)
        }
        for r in 0..R {
            let xs = x[r * k + i];
            for t in 0..TILE {
                acc[r][t] = if FMA { xs.mul_add(row[t], acc[r][t]) } else { acc[r][t] + xs * row[t] };
            }
        }
    }
    for r in 0..R {
        out[r * width + at..r * width + at + tile].copy_from_slice(&acc[r][..tile]);
    }
}

/// The kernel on AVX-512, in intrinsics. The compiler-vectorised kernel above spent much of
/// its time on bounds checks and reloading spilled row pointers, and read each tile from
/// memory once per group of 4 rows, a matrix row apart (`perf`). Same operations per output
/// as [`columns_body`] (one fused multiply-add per weight, in the order of `k`), so the
/// same bits.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::F32Rows;
    use alloc::vec;
    use alloc::vec::Vec;
    use core::arch::x86_64::*;

    /// 16-lane vectors per row of a tile.
    const VECTORS: usize = 4;
    /// Columns per tile.
    const TILE: usize = 16 * VECTORS;
    /// Rows multiplied together: 6 rows of 64 columns are 24 of the 32 vector registers.
    const ROWS: usize = 6;
    /// Weight rows multiplied by every group of rows before the next ones are read: 16 KiB
    /// of a tile, which stays in the L1 cache while the groups take their turns.
    const CHUNK: usize = 64;
    /// Weight rows ahead of the one being read whose lines are fetched (`_mm_prefetch`):
    /// a tile's rows lie a matrix row apart, too far apart for the hardware's prefetcher.
    const PREFETCH_ROWS: usize = 40;

    /// Columns `from..to` of every row of `x · w`, as `m` rows of `to - from`.
    ///
    /// Each group of rows takes its turn on a chunk of the tile's weight rows, keeping its
    /// sums in `out` between chunks: storing and reloading a sum changes no bit, so every
    /// output is still one chain of fused multiply-adds in the order of `k`.
    ///
    /// # Safety
    /// The CPU has AVX-512F; `x` holds `m · w.k` values and `w.values` `w.k · w.n`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn columns(w: &F32Rows<'_>, x: &[f32], m: usize, from: usize, to: usize) -> Vec<f32> {
        let (k, n) = (w.k, w.n);
        let width = to - from;
        let mut out = vec![0.0f32; m * width];
        // The first tile ends on a cache line, so that no later one straddles an extra line
        // (allocations are aligned to 16 bytes, not 64).
        let past_line = (w.values.as_ptr().wrapping_add(from) as usize % 64) / 4;
        let mut j0 = from;
        while j0 < to {
            let tile = if j0 == from { TILE - past_line } else { TILE }.min(to - j0);
            let masks: [__mmask16; VECTORS] = core::array::from_fn(|v| lanes(tile.saturating_sub(16 * v)));
            let mut i0 = 0;
            while i0 < k {
                let i1 = (i0 + CHUNK).min(k);
                let mut r0 = 0;
                while r0 < m {
                    let rows = ROWS.min(m - r0);
                    // SAFETY: rows `i0..i1 < k` of the tile `j0..j0 + tile` lie inside the
                    // weights (lanes past `tile` are masked off); rows `r0..r0 + rows ≤ m`
                    // of `x` and `out` inside theirs.
                    unsafe {
                        let chunk = Chunk {
                            w: w.values.as_ptr().add(i0 * n + j0),
                            stride: n,
                            len: i1 - i0,
                            x: x.as_ptr().add(r0 * k + i0),
                            k,
                            out: out.as_mut_ptr().add(r0 * width + j0 - from),
                            width,
                            masks,
                        };
                        match rows {
                            6 => chunk.accumulate::<6>(),
                            5 => chunk.accumulate::<5>(),
                            4 => chunk.accumulate::<4>(),
                            3 => chunk.accumulate::<3>(),
                            2 => chunk.accumulate::<2>(),
                            _ => chunk.accumulate::<1>(),
                        }
                    }
                    r0 += rows;
                }
                i0 = i1;
            }
            j0 += tile;
        }
        out
    }

    /// The mask of the first `count` of 16 lanes.
    #[inline(always)]
    fn lanes(count: usize) -> __mmask16 {
        if count >= 16 { 0xffff } else { ((1u32 << count) - 1) as __mmask16 }
    }

    /// `len` weight rows of a tile (`stride` apart, the lanes of `masks`), the matching
    /// values of activation rows (`k` apart) and their sums (rows `width` apart).
    #[derive(Clone, Copy)]
    struct Chunk {
        w: *const f32,
        stride: usize,
        len: usize,
        x: *const f32,
        k: usize,
        out: *mut f32,
        width: usize,
        masks: [__mmask16; VECTORS],
    }

    impl Chunk {
        /// Adds `R` activation rows times the chunk to their sums.
        #[inline(always)]
        unsafe fn accumulate<const R: usize>(&self) {
            let Chunk { w, stride, len, x, k, out, width, masks } = *self;
            // SAFETY: the pointers cover what `columns` says; masked lanes are not touched.
            unsafe {
                let mut acc = [[_mm512_setzero_ps(); VECTORS]; R];
                for (r, acc) in acc.iter_mut().enumerate() {
                    for (v, acc) in acc.iter_mut().enumerate() {
                        *acc = _mm512_maskz_loadu_ps(masks[v], out.wrapping_add(r * width + 16 * v));
                    }
                }
                let ahead = PREFETCH_ROWS * stride;
                for i in 0..len {
                    let row = w.add(i * stride);
                    for v in 0..VECTORS {
                        _mm_prefetch::<_MM_HINT_T0>(row.wrapping_add(ahead + 16 * v).cast());
                    }
                    let weights: [__m512; VECTORS] =
                        core::array::from_fn(|v| _mm512_maskz_loadu_ps(masks[v], row.wrapping_add(16 * v)));
                    for (r, acc) in acc.iter_mut().enumerate() {
                        let xs = _mm512_set1_ps(*x.add(r * k + i));
                        for (acc, weights) in acc.iter_mut().zip(weights) {
                            *acc = _mm512_fmadd_ps(xs, weights, *acc);
                        }
                    }
                }
                for (r, acc) in acc.iter().enumerate() {
                    for (v, acc) in acc.iter().enumerate() {
                        _mm512_mask_storeu_ps(out.wrapping_add(r * width + 16 * v), masks[v], *acc);
                    }
                }
            }
        }
    }
}
