//! Products of f32 activation rows with Q8 weights stored as `n` output rows of `k` int8
//! values in blocks of 32 with one f32 scale each (GGUF Q8_0's layout, with f32 scales).
//!
//! Each output's row of weights is contiguous and read once per group of up to 4
//! activation rows (decoding reads it once in all). Per block, the 32 weights are widened
//! to f32 and multiplied by the block's scale once, then fused-multiply-added into two
//! 16-lane accumulators per activation row (the block's first and second half). Folding the
//! scale into the weights makes the per-row cost two fused multiply-adds per block, so 4
//! rows cost little more than 1; two independent accumulators per row keep the adds' latency
//! off the critical path.
//!
//! Every output is computed by the same operations in the same order (the same lanes, then
//! [`lane_sum`]) whatever the number of rows or outputs handled together and whatever the
//! thread, so a row's result does not depend on the other rows; the AVX-512 kernel and the
//! compiler-vectorised kernel with FMA give the same bits.

use alloc::vec;
use alloc::vec::Vec;

use super::few_rows::{ROWS_AT_ONCE, split_columns};

/// Values per Q8 block.
pub(crate) const Q8_BLOCK: usize = 32;
/// Half a block: the lanes of one 16-wide vector.
const HALF: usize = Q8_BLOCK / 2;

/// Q8 weights: `n` output rows of `k` int8 values (`k` a multiple of 32), one scale per
/// block of 32 values of a row, in row order.
pub(crate) struct Q8Cols<'a> {
    pub values: &'a [i8],
    pub scales: &'a [burn_backend::quantization::QParams<f32>],
    pub k: usize,
    pub n: usize,
}

/// `x · wᵀ`-style product with Q8 weights stored as output rows (see [`Q8Cols`]): `m` rows
/// of `n` outputs.
pub(crate) fn q8_product(weights: &Q8Cols<'_>, x: &[f32], m: usize) -> Vec<f32> {
    let (k, n) = (weights.k, weights.n);
    assert_eq!(x.len(), m * k, "activations are not {m} rows of {k}");
    assert!(k.is_multiple_of(Q8_BLOCK) && weights.values.len() == n * k);
    assert_eq!(weights.scales.len(), n * (k / Q8_BLOCK), "one scale per block");
    split_columns(m, k, n, 1, |from, to| outputs(weights, x, m, from, to))
}

/// Outputs `from..to` of every row of the product, as `m` rows of `to - from`.
fn outputs(w: &Q8Cols<'_>, x: &[f32], m: usize, from: usize, to: usize) -> Vec<f32> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F; `q8_product` checked the slices' lengths.
            return unsafe { avx512::outputs(w, x, m, from, to) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the CPU has the features the function is compiled for.
            return unsafe { outputs_avx2(w, x, m, from, to) };
        }
    }
    outputs_portable::<false>(w, x, m, from, to)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn outputs_avx2(w: &Q8Cols<'_>, x: &[f32], m: usize, from: usize, to: usize) -> Vec<f32> {
    outputs_portable::<true>(w, x, m, from, to)
}

/// The kernel in plain Rust, vectorised by the compiler. `FMA`: fused multiply-adds (only
/// where the CPU has them: elsewhere `mul_add` is a slow library call).
#[inline(always)]
fn outputs_portable<const FMA: bool>(
    w: &Q8Cols<'_>,
    x: &[f32],
    m: usize,
    from: usize,
    to: usize,
) -> Vec<f32> {
    let width = to - from;
    let mut out = vec![0.0f32; m * width];
    for j in from..to {
        let mut r0 = 0;
        while r0 < m {
            let rows = ROWS_AT_ONCE.min(m - r0);
            let xs = &x[r0 * w.k..(r0 + rows) * w.k];
            let mut write = |sums: &[f32]| {
                for (r, sum) in sums.iter().enumerate() {
                    out[(r0 + r) * width + j - from] = *sum;
                }
            };
            match rows {
                4 => write(&dots::<4, FMA>(w, j, xs)),
                3 => write(&dots::<3, FMA>(w, j, xs)),
                2 => write(&dots::<2, FMA>(w, j, xs)),
                _ => write(&dots::<1, FMA>(w, j, xs)),
            }
            r0 += rows;
        }
    }
    out
}

/// Output `j` for `R` activation rows (row `r` at `x[r·k..]`).
#[inline(always)]
fn dots<const R: usize, const FMA: bool>(w: &Q8Cols<'_>, j: usize, x: &[f32]) -> [f32; R] {
    let k = w.k;
    let blocks = k / Q8_BLOCK;
    let row = &w.values[j * k..(j + 1) * k];
    let scales = &w.scales[j * blocks..(j + 1) * blocks];
    let fma = |a: f32, b: f32, c: f32| if FMA { a.mul_add(b, c) } else { a * b + c };
    let mut lo = [[0.0f32; HALF]; R];
    let mut hi = [[0.0f32; HALF]; R];
    for b in 0..blocks {
        let q: &[i8; Q8_BLOCK] = row[b * Q8_BLOCK..(b + 1) * Q8_BLOCK].try_into().expect("a block");
        prefetch(q.as_ptr().wrapping_add(PREFETCH_AHEAD));
        let scale = scales[b].scales;
        let mut w_lo = [0.0f32; HALF];
        let mut w_hi = [0.0f32; HALF];
        for t in 0..HALF {
            w_lo[t] = scale * q[t] as f32;
            w_hi[t] = scale * q[t + HALF] as f32;
        }
        for r in 0..R {
            let xs: &[f32; Q8_BLOCK] =
                x[r * k + b * Q8_BLOCK..r * k + (b + 1) * Q8_BLOCK].try_into().expect("a block");
            for t in 0..HALF {
                lo[r][t] = fma(xs[t], w_lo[t], lo[r][t]);
                hi[r][t] = fma(xs[t + HALF], w_hi[t], hi[r][t]);
            }
        }
    }
    let mut sums = [0.0f32; R];
    for r in 0..R {
        let mut lanes = [0.0f32; HALF];
        for t in 0..HALF {
            lanes[t] = lo[r][t] + hi[r][t];
        }
        sums[r] = lane_sum(lanes);
    }
    sums
}

/// How far ahead of the block being read its row's bytes are prefetched: a row's weights
/// and the next rows' are one stream, which the hardware prefetcher alone fetches too late
/// (`infer --weights q8 --sampler ar` on SmolLM2, alternating runs: 512 bytes ahead gave
/// 1.05–1.17× the tok/s of no prefetch, 1024 and 2048 a little more).
const PREFETCH_AHEAD: usize = 2048;

/// Asks the CPU to bring the cache line at `p` into cache (`p` may lie past the weights: a
/// prefetch never faults).
#[inline(always)]
fn prefetch(p: *const i8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is a hint and reads nothing; SSE is part of x86_64.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// The sum of 16 lanes in a fixed order: halves added lane-wise until one is left.
#[inline(always)]
fn lane_sum(mut lanes: [f32; HALF]) -> f32 {
    let mut width = HALF / 2;
    while width > 0 {
        for t in 0..width {
            lanes[t] += lanes[t + width];
        }
        width /= 2;
    }
    lanes[0]
}

/// The kernel with AVX-512 intrinsics. It also takes two outputs at a time when there are
/// several rows, so each activation vector loaded serves both (the compiler does not
/// schedule the portable kernel that way).
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use alloc::vec;
    use alloc::vec::Vec;
    use core::arch::x86_64::*;

    use super::{HALF, PREFETCH_AHEAD, Q8_BLOCK, Q8Cols, ROWS_AT_ONCE, prefetch};

    /// # Safety
    /// The CPU has AVX-512F; `w.values` holds `n · k` values, `w.scales` `n · k / 32` and
    /// `x` `m · k`, with `from ≤ to ≤ n`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn outputs(
        w: &Q8Cols<'_>,
        x: &[f32],
        m: usize,
        from: usize,
        to: usize,
    ) -> Vec<f32> {
        let width = to - from;
        let mut out = vec![0.0f32; m * width];
        let mut j = from;
        while j < to {
            let pair = m > 1 && to - j >= 2;
            let mut r0 = 0;
            while r0 < m {
                let rows = ROWS_AT_ONCE.min(m - r0);
                // SAFETY: rows r0..r0 + rows and outputs j..j + 1 or 2 are in bounds.
                unsafe {
                    let xs = x.as_ptr().add(r0 * w.k);
                    match (rows, pair) {
                        (4, true) => put::<4, 2>(dots::<4, 2>(w, j, xs), &mut out, r0, j - from, width),
                        (3, true) => put::<3, 2>(dots::<3, 2>(w, j, xs), &mut out, r0, j - from, width),
                        (2, true) => put::<2, 2>(dots::<2, 2>(w, j, xs), &mut out, r0, j - from, width),
                        (1, true) => put::<1, 2>(dots::<1, 2>(w, j, xs), &mut out, r0, j - from, width),
                        (4, false) => put::<4, 1>(dots::<4, 1>(w, j, xs), &mut out, r0, j - from, width),
                        (3, false) => put::<3, 1>(dots::<3, 1>(w, j, xs), &mut out, r0, j - from, width),
                        (2, false) => put::<2, 1>(dots::<2, 1>(w, j, xs), &mut out, r0, j - from, width),
                        _ => put::<1, 1>(dots::<1, 1>(w, j, xs), &mut out, r0, j - from, width),
                    }
                }
                r0 += rows;
            }
            j += if pair { 2 } else { 1 };
        }
        out
    }

    /// Writes outputs `at..at + J` of rows `r0..r0 + R` (rows of `width`).
    #[inline(always)]
    fn put<const R: usize, const J: usize>(
        sums: [[f32; R]; J],
        out: &mut [f32],
        r0: usize,
        at: usize,
        width: usize,
    ) {
        for (jj, column) in sums.iter().enumerate() {
            for (r, sum) in column.iter().enumerate() {
                out[(r0 + r) * width + at + jj] = *sum;
            }
        }
    }

    /// 16 int8 values at `p` as f32.
    #[inline(always)]
    unsafe fn widen(p: *const i8) -> __m512 {
        // SAFETY: the caller's CPU has AVX-512F and p points at 16 readable bytes.
        unsafe { _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(p.cast()))) }
    }

    /// Outputs `j..j + J` for `R` activation rows starting at `x` (rows of `k`).
    #[inline(always)]
    unsafe fn dots<const R: usize, const J: usize>(
        w: &Q8Cols<'_>,
        j: usize,
        x: *const f32,
    ) -> [[f32; R]; J] {
        let k = w.k;
        let blocks = k / Q8_BLOCK;
        // SAFETY (the whole loop): the caller's CPU has AVX-512F (`outputs`), outputs
        // j..j + J < n, blocks b < k / 32, and rows r < R of x hold k values each.
        let lanes = unsafe {
            let zero = _mm512_setzero_ps();
            let mut lo = [[zero; R]; J];
            let mut hi = [[zero; R]; J];
            for b in 0..blocks {
                let mut w_lo = [zero; J];
                let mut w_hi = [zero; J];
                for jj in 0..J {
                    let q = w.values.as_ptr().add((j + jj) * k + b * Q8_BLOCK);
                    prefetch(q.wrapping_add(PREFETCH_AHEAD));
                    let scale = _mm512_set1_ps(w.scales.get_unchecked((j + jj) * blocks + b).scales);
                    w_lo[jj] = _mm512_mul_ps(scale, widen(q));
                    w_hi[jj] = _mm512_mul_ps(scale, widen(q.add(HALF)));
                }
                for r in 0..R {
                    let p = x.add(r * k + b * Q8_BLOCK);
                    let (x_lo, x_hi) = (_mm512_loadu_ps(p), _mm512_loadu_ps(p.add(HALF)));
                    for jj in 0..J {
                        lo[jj][r] = _mm512_fmadd_ps(x_lo, w_lo[jj], lo[jj][r]);
                        hi[jj][r] = _mm512_fmadd_ps(x_hi, w_hi[jj], hi[jj][r]);
                    }
                }
            }
            // Up to 8 (output, row) pairs (`R · J ≤ 8`), reduced together.
            let mut lanes = [zero; 8];
            for jj in 0..J {
                for r in 0..R {
                    lanes[jj * R + r] = _mm512_add_ps(lo[jj][r], hi[jj][r]);
                }
            }
            lane_sums(lanes)
        };
        let mut sums = [[0.0f32; R]; J];
        for jj in 0..J {
            for r in 0..R {
                sums[jj][r] = lanes[jj * R + r];
            }
        }
        sums
    }

    /// [`lane_sum`](super::lane_sum) of each of 8 vectors at once: the same additions of
    /// the same lanes in the same order (the halves added lane-wise until one lane is
    /// left), with several vectors' lanes side by side in one register at each step instead
    /// of 8 stores and 120 scalar additions. Addition is commutative, so which operand of
    /// each addition a lane comes from does not change a bit.
    #[inline(always)]
    unsafe fn lane_sums(v: [__m512; 8]) -> [f32; 8] {
        // SAFETY: register shuffles and additions, on a CPU with AVX-512F (the caller's).
        unsafe {
            // Lanes t and t + 8 of two vectors: [a0..7 | b0..7] + [a8..15 | b8..15].
            let halves = |a: __m512, b: __m512| {
                _mm512_add_ps(
                    _mm512_shuffle_f32x4::<0b01_00_01_00>(a, b),
                    _mm512_shuffle_f32x4::<0b11_10_11_10>(a, b),
                )
            };
            let (ab, cd) = (halves(v[0], v[1]), halves(v[2], v[3]));
            let (ef, gh) = (halves(v[4], v[5]), halves(v[6], v[7]));
            // Lanes t and t + 4 of each 8: 128-bit quarters 0 and 2 of both against 1 and 3.
            let quarters = |p: __m512, q: __m512| {
                _mm512_add_ps(
                    _mm512_shuffle_f32x4::<0b10_00_10_00>(p, q),
                    _mm512_shuffle_f32x4::<0b11_01_11_01>(p, q),
                )
            };
            // [a b c d] and [e f g h], four lanes each, one vector per quarter.
            let (abcd, efgh) = (quarters(ab, cd), quarters(ef, gh));
            // Lanes t and t + 2 of each 4, within each quarter: [a0 a1 e0 e1 | b.. f.. | ..].
            let pairs = _mm512_add_ps(
                _mm512_shuffle_ps::<0b01_00_01_00>(abcd, efgh),
                _mm512_shuffle_ps::<0b11_10_11_10>(abcd, efgh),
            );
            // Lanes t and t + 1: each even lane holds one vector's sum.
            let sums = _mm512_add_ps(pairs, _mm512_shuffle_ps::<0b10_11_00_01>(pairs, pairs));
            let mut out = [0.0f32; 16];
            _mm512_storeu_ps(out.as_mut_ptr(), sums);
            // Quarter i holds [a|b|c|d][i] at lane 0 and [e|f|g|h][i] at lane 2.
            [out[0], out[4], out[8], out[12], out[2], out[6], out[10], out[14]]
        }
    }
}
