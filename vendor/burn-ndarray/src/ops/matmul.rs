use crate::UnsafeSharedRef;
use crate::{NdArrayElement, ShapeOps, SharedArray, iter_range_par, ops::NdArrayOps};

use alloc::{vec, vec::Vec};
use core::mem::MaybeUninit;
use burn_backend::ElementConversion;
use burn_backend::Shape;
use ndarray::{IxDyn, s};
#[cfg(feature = "multi-threads")]
use rayon::prelude::*;

pub(crate) fn matmul<E: NdArrayElement>(
    lhs: SharedArray<E>,
    rhs: SharedArray<E>,
) -> SharedArray<E> {
    let shape_lhs = lhs.shape();
    let shape_rhs = rhs.shape();
    let ndims = shape_lhs.num_dims();
    let m = shape_lhs[ndims - 2]; // # of left rows
    let k = shape_rhs[ndims - 2]; // # of left cols and right rows
    let n = shape_rhs[ndims - 1]; // # of right cols

    let (out_shape, strides_lhs, strides_rhs, strides_out) = output_shape(shape_lhs, shape_rhs);
    let l_mat_size = m * k; // size of matrix component of left array
    let r_mat_size = k * n; // size of matrix component of right array
    let out_mat_size = m * n; // size of matrix component of output array

    let num_l_batches = shape_lhs.num_elements() / l_mat_size;
    let num_r_batches = shape_rhs.num_elements() / r_mat_size;
    let num_out_batches = out_shape.num_elements() / out_mat_size;

    // A few rows against one weight matrix (decoding, blocks): see `few_rows`.
    if num_r_batches == 1 && num_l_batches * m <= super::few_rows::max_rows() {
        if let Some(out) = few_rows_f32(&lhs, &rhs, num_l_batches * m, k, n) {
            return NdArrayOps::reshape(out, out_shape);
        }
    }

    let lhs_array = batched_matrices(lhs, num_l_batches, m, k);
    let rhs_array = batched_matrices(rhs, num_r_batches, k, n);

    let alpha: E = 1.0.elem();
    let beta: E = 0.0.elem();

    // No `run_par!` around the products: `rayon::scope` moves the call onto a pool thread
    // and back, and that hand-off on every product made AR decoding 30 % slower.
    let out = {
        // Not zeroed first (patch item 17): every element is written below, and zeroing a
        // product's output (a vocabulary-wide logits array in training) cost a pass over it.
        let mut out_array = ndarray::Array3::<E>::uninit((num_out_batches, m, n));
        let unsafe_shared_out_array = UnsafeSharedRef::new(&mut out_array);

        // The batch loop goes over the threads only when the whole product is worth waking
        // them: decoding multiplies nine tiny per-head matrices per layer, and waking the
        // pool for those costs more than the products.
        let run_batch = |out_batch: usize| {
            // Here, we:
            //   1. Un-flatten the output batch into a component-based batch index.
            //   2. Use the strides for left and right batch indices to convert it to a flattened
            //      batch for left and right.
            let out_index = strides_out.unflatten(out_batch);
            let l_batch = strides_lhs.flatten(&out_index);
            let r_batch = strides_rhs.flatten(&out_index);

            let lhs_slice = lhs_array.slice(s!(l_batch, .., ..));
            let rhs_slice = rhs_array.slice(s!(r_batch, .., ..));

            unsafe {
                let mut out_slice = unsafe_shared_out_array
                    .get()
                    .slice_mut(s!(out_batch, .., ..));

                if gemm_supports::<E>() {
                    // One matrix: let gemm split it over the threads. Several: the batch
                    // loop above is already parallel.
                    let threads_inside = num_out_batches == 1 && m * n * k >= GEMM_PARALLEL_MIN_OPS;
                    gemm_into(&lhs_slice, &rhs_slice, &mut out_slice, threads_inside);
                } else {
                    out_slice.fill(MaybeUninit::new(E::zero()));
                    ndarray::linalg::general_mat_mul(
                        alpha,
                        &lhs_slice,
                        &rhs_slice,
                        beta,
                        &mut out_slice.assume_init(),
                    )
                }
            }
        };
        let parallel_batches = num_out_batches > 1
            && num_out_batches * m * n * k >= GEMM_PARALLEL_MIN_OPS;
        if parallel_batches {
            iter_range_par!(0, num_out_batches).for_each(run_batch);
        } else {
            (0..num_out_batches).for_each(run_batch);
        }

        // SAFETY: each output matrix was written whole by `gemm_into` or zeroed first.
        unsafe { out_array.assume_init() }.into_shared().into_dyn()
    };

    NdArrayOps::reshape(out, out_shape)
}

/// `array` as `[batches, rows, cols]`. A matrix gets a leading unit axis as a view, whatever
/// its strides: `reshape` copies an array that is not in row-major order, so each product
/// with a transposed matrix (every backward pass) first copied it element by element
/// (`perf`: `to_vec_mapped` 5 % of a SmolLM2 training step). `gemm` reads the strides.
fn batched_matrices<E: NdArrayElement>(
    array: SharedArray<E>,
    batches: usize,
    rows: usize,
    cols: usize,
) -> SharedArray<E> {
    if array.ndim() == 2 {
        return array.insert_axis(ndarray::Axis(0));
    }
    NdArrayOps::reshape(array, Shape::new([batches, rows, cols]))
}

/// `lhs · rhs` through the few-rows kernel, when both are f32 and contiguous.
fn few_rows_f32<E: NdArrayElement>(
    lhs: &SharedArray<E>,
    rhs: &SharedArray<E>,
    rows: usize,
    k: usize,
    n: usize,
) -> Option<SharedArray<E>> {
    use core::any::TypeId;
    if TypeId::of::<E>() != TypeId::of::<f32>() {
        return None;
    }
    let (x, w) = (lhs.as_slice()?, rhs.as_slice()?);
    // SAFETY: `E` is `f32` (checked above).
    let (x, w): (&[f32], &[f32]) = unsafe {
        (
            core::slice::from_raw_parts(x.as_ptr().cast(), x.len()),
            core::slice::from_raw_parts(w.as_ptr().cast(), w.len()),
        )
    };
    let out = super::few_rows::few_rows_product(&super::few_rows::F32Rows { values: w, k, n }, x, rows);
    let mut out = core::mem::ManuallyDrop::new(out);
    // SAFETY: as above: the same allocation, as the same type.
    let out: Vec<E> =
        unsafe { Vec::from_raw_parts(out.as_mut_ptr().cast(), out.len(), out.capacity()) };
    ndarray::ArcArray::from_shape_vec(IxDyn(&[rows, n]), out).ok()
}

/// Below this many multiply-adds one thread is faster than waking the pool (burn-flex's
/// threshold for the same crate).
const GEMM_PARALLEL_MIN_OPS: usize = 192 * 192 * 192;

/// Element types the `gemm` crate multiplies (it dispatches on `TypeId`).
fn gemm_supports<E: 'static>() -> bool {
    use core::any::TypeId;
    TypeId::of::<E>() == TypeId::of::<f32>() || TypeId::of::<E>() == TypeId::of::<f64>()
}

/// `out = lhs · rhs` with the `gemm` crate, which reads any strides directly and has
/// dedicated kernels for one-row (decoding) and small products; `matrixmultiply` packs the
/// whole right-hand matrix on every call, which doubled the memory traffic of decoding.
///
/// Writes every element of `out`, which may be uninitialised.
///
/// # Safety
/// `E` must be one of the types [`gemm_supports`] accepts; `out` must not alias the inputs.
unsafe fn gemm_into<E: NdArrayElement>(
    lhs: &ndarray::ArrayView2<'_, E>,
    rhs: &ndarray::ArrayView2<'_, E>,
    out: &mut ndarray::ArrayViewMut2<'_, MaybeUninit<E>>,
    threads_inside: bool,
) {
    let (m, k) = lhs.dim();
    let n = rhs.dim().1;
    let parallelism = if threads_inside {
        #[cfg(feature = "multi-threads")]
        {
            gemm::Parallelism::Rayon(0)
        }
        #[cfg(not(feature = "multi-threads"))]
        {
            gemm::Parallelism::None
        }
    } else {
        gemm::Parallelism::None
    };
    let (lhs_rs, lhs_cs) = (lhs.strides()[0], lhs.strides()[1]);
    let (rhs_rs, rhs_cs) = (rhs.strides()[0], rhs.strides()[1]);
    let (out_rs, out_cs) = (out.strides()[0], out.strides()[1]);
    unsafe {
        // gemm computes dst = alpha·dst + beta·lhs·rhs; read_dst = false ignores dst.
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr().cast::<E>(),
            out_cs,
            out_rs,
            false,
            lhs.as_ptr(),
            lhs_cs,
            lhs_rs,
            rhs.as_ptr(),
            rhs_cs,
            rhs_rs,
            E::zero(),
            E::one(),
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[derive(Debug, PartialEq)]
struct Strides {
    strides: Vec<usize>,
}
impl Strides {
    fn new(strides: Vec<usize>) -> Self {
        Strides { strides }
    }

    fn unflatten(&self, linear_index: usize) -> Vec<usize> {
        let mut coord = Vec::with_capacity(self.strides.len());
        let mut rem = linear_index;
        for stride in self.strides.iter() {
            coord.push(rem / stride);
            rem %= stride;
        }
        coord
    }

    fn flatten(&self, index: &Vec<usize>) -> usize {
        assert_eq!(self.strides.len(), index.len());
        self.strides
            .iter()
            .zip(index)
            .map(|(stride, index)| stride * index)
            .sum()
    }
}

/// Compute the (broadcasted) output shape of matrix multiplication, along with strides for
/// the non-matrix dimensions of all arrays.
///
/// # Arguments
/// * `lsh`: Shape of the first (left-hand) matrix multiplication argument.
/// * `rsh`: Shape of the second (right-hand) matrix multiplication argument.
///
/// # Panics
/// * If `D` is not at least 2.
/// * If the matrix multiplication dimensions (last 2) are incompatible.
/// * If any other dimension is not the same for both tensors, or equal to 1. (Any dimension where
///   one dim is equal to 1 is broadcast.)
fn output_shape(lsh: &[usize], rsh: &[usize]) -> (Shape, Strides, Strides, Strides) {
    let ndims = lsh.num_dims();
    if ndims < 2 {
        panic!("Matrix multiplication requires an array with at least 2 dimensions.");
    }

    // Fetch matrix dimensions and check compatibility.
    let l_rows = lsh[ndims - 2];
    let l_cols = lsh[ndims - 1];
    let r_rows = rsh[ndims - 2];
    let r_cols = rsh[ndims - 1];
    if l_cols != r_rows {
        panic!("Dimensions are incompatible for matrix multiplication.");
    }
    // Set matrix dimensions of the output shape.
    let mut osh = vec![0; ndims];
    osh[ndims - 2] = l_rows;
    osh[ndims - 1] = r_cols;

    // Set other array dimensions, broadcasting as necessary.
    // Compute the strides inline.
    let mut cur_l_stride: usize = 1;
    let mut cur_r_stride: usize = 1;
    let mut cur_o_stride: usize = 1;
    let mut l_strides = Vec::with_capacity(ndims - 2);
    let mut r_strides = Vec::with_capacity(ndims - 2);
    let mut o_strides = Vec::with_capacity(ndims - 2);
    for i in (0..ndims - 2).rev() {
        let l_dim = lsh[i];
        let r_dim = rsh[i];

        // Compatible dimensions are:
        //   1. Both dimensions are equal.
        //   2. One of the dimensions is equal to 1.
        let o_dim: usize;
        if l_dim == r_dim {
            o_dim = l_dim; // both dimensions are equal
            l_strides.push(cur_l_stride);
            r_strides.push(cur_r_stride);
        } else if l_dim == 1 {
            o_dim = r_dim; // broadcast the left
            l_strides.push(0);
            r_strides.push(cur_r_stride);
        } else if r_dim == 1 {
            o_dim = l_dim; // broadcast the right
            l_strides.push(cur_l_stride);
            r_strides.push(0);
        } else {
            panic!("Dimensions differ and cannot be broadcasted.");
        }
        osh[i] = o_dim;
        o_strides.push(cur_o_stride);
        cur_o_stride *= o_dim;

        cur_l_stride *= l_dim;
        cur_r_stride *= r_dim;
    }
    l_strides.reverse();
    r_strides.reverse();
    o_strides.reverse();

    (
        Shape::from(osh),
        Strides::new(l_strides),
        Strides::new(r_strides),
        Strides::new(o_strides),
    )
}

pub(crate) fn cross<E: NdArrayElement>(
    lhs: SharedArray<E>,
    rhs: SharedArray<E>,
    dim: usize,
) -> SharedArray<E> {
    let shape_lhs = lhs.shape();
    let shape_rhs = rhs.shape();
    let ndims = shape_lhs.num_dims();

    // Broadcast the shapes except along dim
    let mut broadcast_shape = vec![0; ndims];
    for i in 0..ndims {
        if i == dim {
            broadcast_shape[i] = shape_lhs[i]; // already checked to be 3
        } else {
            let l = shape_lhs[i];
            let r = shape_rhs[i];
            if l == r {
                broadcast_shape[i] = l;
            } else if l == 1 {
                broadcast_shape[i] = r;
            } else if r == 1 {
                broadcast_shape[i] = l;
            } else {
                panic!("Tensors are not broadcastable along dimension {}", i);
            }
        }
    }

    // Broadcast lhs and rhs
    let lhs_broadcast = if shape_lhs == broadcast_shape.as_slice() {
        lhs
    } else {
        NdArrayOps::expand(lhs, Shape::from(broadcast_shape.clone()))
    };
    let rhs_broadcast = if shape_rhs == broadcast_shape.as_slice() {
        rhs
    } else {
        NdArrayOps::expand(rhs, Shape::from(broadcast_shape.clone()))
    };

    // Now, move dim to the last dimension
    let mut perm = (0..ndims).collect::<Vec<_>>();
    perm.remove(dim);
    perm.push(dim);

    let lhs_permuted = NdArrayOps::permute(lhs_broadcast, &perm);
    let rhs_permuted = NdArrayOps::permute(rhs_broadcast, &perm);

    // Reshape to (*, 3)
    let total_elements = lhs_permuted.shape().num_elements();
    let batch_size = total_elements / 3;
    let lhs_reshaped = NdArrayOps::reshape(lhs_permuted, Shape::new([batch_size, 3]));
    let rhs_reshaped = NdArrayOps::reshape(rhs_permuted, Shape::new([batch_size, 3]));

    // Compute cross product
    let mut result = ndarray::ArrayD::<E>::zeros(IxDyn(&[batch_size, 3]));
    for i in 0..batch_size {
        let a1 = lhs_reshaped[IxDyn(&[i, 0])];
        let a2 = lhs_reshaped[IxDyn(&[i, 1])];
        let a3 = lhs_reshaped[IxDyn(&[i, 2])];
        let b1 = rhs_reshaped[IxDyn(&[i, 0])];
        let b2 = rhs_reshaped[IxDyn(&[i, 1])];
        let b3 = rhs_reshaped[IxDyn(&[i, 2])];
        result[IxDyn(&[i, 0])] = a2.mul(b3).sub(a3.mul(b2));
        result[IxDyn(&[i, 1])] = a3.mul(b1).sub(a1.mul(b3));
        result[IxDyn(&[i, 2])] = a1.mul(b2).sub(a2.mul(b1));
    }

    let result_shared = result.into_shared();

    // Reshape back to the broadcast shape with dim at the end
    let mut result_shape = broadcast_shape;
    result_shape.remove(dim);
    result_shape.push(3);
    let result_reshaped = NdArrayOps::reshape(result_shared, Shape::from(result_shape));

    // Permute back
    let mut inv_perm = vec![0; ndims];
    for (i, &p) in perm.iter().enumerate() {
        inv_perm[p] = i;
    }
    NdArrayOps::permute(result_reshaped, &inv_perm)
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Strides {
        fn empty() -> Self {
            Strides {
                strides: Vec::with_capacity(0),
            }
        }
    }

    #[test]
    fn test_output_shape() {
        // plain matrix multiply
        assert_eq!(
            output_shape(&[5, 3], &[3, 7]),
            (
                Shape::from([5, 7]),
                Strides::empty(),
                Strides::empty(),
                Strides::empty()
            )
        );
        // matrix multiply with one extra stack dimension
        assert_eq!(
            output_shape(&[4, 5, 3], &[4, 3, 7]),
            (
                Shape::from([4, 5, 7]),
                Strides::new(vec![1]),
                Strides::new(vec![1]),
                Strides::new(vec![1])
            )
        );
        // rank 3, broadcast left
        assert_eq!(
            output_shape(&[1, 5, 3], &[4, 3, 7]),
            (
                Shape::from([4, 5, 7]),
                Strides::new(vec![0]),
                Strides::new(vec![1]),
                Strides::new(vec![1])
            )
        );
        // rank 3, broadcast right
        assert_eq!(
            output_shape(&[4, 5, 3], &[1, 3, 7]),
            (
                Shape::from([4, 5, 7]),
                Strides::new(vec![1]),
                Strides::new(vec![0]),
                Strides::new(vec![1])
            )
        );
        // rank 4, multi broadcast
        assert_eq!(
            output_shape(&[1, 4, 5, 3], &[8, 1, 3, 7]),
            (
                Shape::from([8, 4, 5, 7]),
                Strides::new(vec![0, 1]),
                Strides::new(vec![1, 0]),
                Strides::new(vec![4, 1])
            )
        );
        // rank 5, multi-broadcast
        assert_eq!(
            output_shape(&[1, 3, 4, 5, 3], &[8, 3, 1, 3, 7]),
            (
                Shape::from([8, 3, 4, 5, 7]),
                Strides::new(vec![0, 4, 1]),
                Strides::new(vec![3, 1, 0]),
                Strides::new(vec![12, 4, 1])
            )
        )
    }

    #[test]
    #[should_panic(
        expected = "Matrix multiplication requires an array with at least 2 dimensions."
    )]
    fn test_output_shape_too_small() {
        output_shape(&[4], &[4]);
    }

    #[test]
    #[should_panic(expected = "Dimensions are incompatible for matrix multiplication.")]
    fn test_output_shape_bad_matrix_dims() {
        output_shape(&[5, 3], &[4, 7]);
    }

    #[test]
    #[should_panic(expected = "Dimensions differ and cannot be broadcasted.")]
    fn test_output_shape_non_broadcast() {
        output_shape(&[4, 5, 3], &[2, 3, 7]);
    }
}
