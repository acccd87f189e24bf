//! Elementwise passes over large contiguous buffers, split over the cores.
//!
//! burn-ndarray runs every elementwise op (`add`, `mul`, `mul_scalar`, `exp`, `sigmoid`,
//! ...) on the calling thread. On a SmolLM2 training step they are a large share of the
//! time outside the matrix products (`perf`: `mul`, `exp`, `div` and `sigmoid` were 30 %
//! of the student's forward pass): the MLP's `silu(gate) · up` on every row, the softmax
//! over a vocabulary per loss slot, AdamW's moments over every parameter. One thread also reads
//! only about half the memory bandwidth two threads read on this project's machine (10–12
//! against 19–21 GB/s). Each part writes its own contiguous range, so the results are the
//! same bits however the buffer is split.

#[cfg(feature = "multi-threads")]
use super::spin_pool;

/// Below this many elements one thread is faster than handing half to a helper.
const PARALLEL_MIN_ELEMENTS: usize = 1 << 16;
/// Parts start at multiples of this many elements (whole cache lines and vectors).
#[cfg(feature = "multi-threads")]
const ALIGN: usize = 64;

/// Calls `part(from, to)` on contiguous ranges covering `0..len`: one per pool thread when
/// `len` is worth splitting, else one range.
pub(crate) fn for_each_range(len: usize, part: &(dyn Fn(usize, usize) + Sync)) {
    let threads = if len >= PARALLEL_MIN_ELEMENTS { pool_threads() } else { 1 };
    #[cfg(feature = "multi-threads")]
    if threads > 1 {
        let units = len.div_ceil(ALIGN);
        let bound = |t: usize| (t * units / threads * ALIGN).min(len);
        spin_pool::run_parts(threads, threads, &|t| part(bound(t), bound(t + 1)));
        return;
    }
    let _ = threads; // one thread without the `multi-threads` feature
    part(0, len);
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

/// A buffer's base pointer that the parts of [`for_each_range`] share; each part makes a
/// slice of its own range only.
pub(crate) struct RangePtr<T>(*mut T);

// SAFETY: the parts use disjoint ranges of a buffer that outlives the call.
unsafe impl<T> Send for RangePtr<T> {}
unsafe impl<T> Sync for RangePtr<T> {}

impl<T> RangePtr<T> {
    pub(crate) fn new(buffer: &mut [T]) -> Self {
        Self(buffer.as_mut_ptr())
    }

    pub(crate) fn of_const(buffer: &[T]) -> Self {
        Self(buffer.as_ptr().cast_mut())
    }

    /// Elements `from..to` of the buffer.
    ///
    /// # Safety
    /// `from..to` lies within the buffer, and no other live slice overlaps it unless
    /// the caller allows that aliasing (an in-place op reading and writing one element).
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn range(&self, from: usize, to: usize) -> &mut [T] {
        unsafe { core::slice::from_raw_parts_mut(self.0.add(from), to - from) }
    }
}

/// `f` of every element of a standard-layout array, in place when the array is not
/// shared, split over the cores when it is large; other arrays go through ndarray's
/// `mapv_into` on this thread.
pub(crate) fn map_floats<E: Copy + Send + Sync>(
    array: crate::SharedArray<E>,
    f: impl Fn(E) -> E + Sync,
) -> crate::SharedArray<E> {
    if array.len() < PARALLEL_MIN_ELEMENTS || !array.is_standard_layout() {
        return array.mapv_into(f);
    }
    if array.is_unique() {
        let mut owned = array.into_owned();
        let values = owned.as_slice_mut().expect("standard layout");
        let ptr = RangePtr::new(values);
        for_each_range(values.len(), &|from, to| {
            // SAFETY: each part maps its own range.
            for v in unsafe { ptr.range(from, to) } {
                *v = f(*v);
            }
        });
        return owned.into_shared();
    }
    let input = array.as_slice().expect("standard layout");
    let mut out = Vec::<E>::with_capacity(input.len());
    let (src, dst) = (RangePtr::of_const(input), RangePtr(out.as_mut_ptr()));
    for_each_range(input.len(), &|from, to| {
        // SAFETY: each part reads its own range of `input` and writes the same range of
        // `out`'s capacity, which every part together fills before `set_len`.
        let (src, dst) = unsafe { (src.range(from, to), dst.range(from, to)) };
        for (d, &s) in dst.iter_mut().zip(src.iter()) {
            *d = f(s);
        }
    });
    // SAFETY: every element was written above.
    unsafe { out.set_len(input.len()) };
    ndarray::ArcArray::from_shape_vec(array.raw_dim(), out).expect("same shape")
}
