//! Ops of the patched burn-ndarray that the training step leans on, through burn's own
//! tensor API: arg-max/min along a contiguous last axis (the fast path of every softmax's
//! `max_dim`) against a plain scan and against the same values in a transposed layout,
//! products with transposed operands (every backward pass, which multiplies such views
//! without copying them) against plain sums, elementwise ops split over the cores against
//! unsplit ones, `cat` of row-major tensors (copied run by run) against `cat` of
//! strided ones (ndarray's element-by-element path), products whose outputs are not zeroed
//! before they are written, filled tensors, and reads of tensors another handle holds.

use burn::prelude::*;
use burn::tensor::TensorData;
use opdlm_tests::{plain_product, worst_relative, TestBackend};

type B = TestBackend;

/// Deterministic values in [-1, 1), with repeats (ties) when `levels` is small.
fn values(len: usize, seed: u32, levels: u32) -> Vec<f32> {
    (0..len)
        .map(|i| {
            let h = (i as u32).wrapping_mul(2_654_435_761) ^ seed.wrapping_mul(40_503);
            (h % levels) as f32 / levels as f32 * 2.0 - 1.0
        })
        .collect()
}

fn tensor(values: Vec<f32>, shape: [usize; 2]) -> Tensor<B, 2> {
    Tensor::from_data(TensorData::new(values, shape), &Default::default())
}

fn indices(t: Tensor<B, 2, Int>) -> Vec<i64> {
    t.into_data().convert::<i64>().to_vec().unwrap()
}

fn floats(t: Tensor<B, 2>) -> Vec<f32> {
    t.into_data().convert::<f32>().to_vec().unwrap()
}

/// The index of the first largest (`max`) or smallest value of `row`; a NaN never wins
/// unless it comes first (the scan compares with `>`/`<`, which a NaN always fails).
fn scan(row: &[f32], max: bool) -> i64 {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if (max && v > row[best]) || (!max && v < row[best]) {
            best = i;
        }
    }
    best as i64
}

#[test]
fn arg_max_and_min_of_rows_match_a_scan_with_ties_and_nans() {
    let (rows, cols) = (37, 1001);
    let mut v = values(rows * cols, 7, 13);
    v[0] = f32::NAN; // a NaN first: the answer stays 0
    v[cols + 5] = f32::NAN; // a NaN inside a row: never chosen
    v[2 * cols + cols - 1] = 5.0; // the maximum last
    v[3 * cols..4 * cols].fill(0.25); // one value repeated: the first wins
    let expected = |max: bool| -> Vec<i64> { v.chunks(cols).map(|row| scan(row, max)).collect() };
    let t = tensor(v.clone(), [rows, cols]);
    assert_eq!(indices(t.clone().argmax(1)), expected(true));
    assert_eq!(indices(t.clone().argmin(1)), expected(false));
    // The same rows as columns of a transposed tensor go through the strided path.
    let transposed = tensor(v.clone(), [rows, cols]).transpose();
    assert_eq!(indices(transposed.clone().argmax(0)), expected(true));
    assert_eq!(indices(transposed.argmin(0)), expected(false));
    // `max_dim` (every softmax) picks the values at those indices.
    let maxima = floats(t.max_dim(1));
    for (r, &m) in maxima.iter().enumerate() {
        let at = v[r * cols + expected(true)[r] as usize];
        assert!(m == at || (m.is_nan() && at.is_nan()), "row {r}: {m} against {at}");
    }
}

/// Row-major `[cols, rows]` values of the row-major `[rows, cols]` `values`.
fn transpose_values(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    (0..cols).flat_map(|c| (0..rows).map(move |r| values[r * cols + c])).collect()
}

#[test]
fn products_with_transposed_operands_match_plain_sums() {
    // Above and below the few-rows kernel's 16 rows, and large enough for gemm's threads.
    for (m, k, n) in [(3, 40, 33), (47, 300, 129), (200, 257, 190)] {
        let (a, b) = (values(m * k, 1, 2001), values(k * n, 2, 2001));
        let (a_t, b_t) = (transpose_values(&a, m, k), transpose_values(&b, k, n));
        let expected = plain_product(&a, &b, m, k, n);
        let cases = [
            ("row-major", tensor(a.clone(), [m, k]), tensor(b.clone(), [k, n])),
            ("lhs transposed", tensor(a_t.clone(), [k, m]).transpose(), tensor(b.clone(), [k, n])),
            ("rhs transposed", tensor(a.clone(), [m, k]), tensor(b_t.clone(), [n, k]).transpose()),
            ("both transposed", tensor(a_t, [k, m]).transpose(), tensor(b_t, [n, k]).transpose()),
        ];
        for (what, lhs, rhs) in cases {
            let got = floats(lhs.matmul(rhs));
            let worst = worst_relative(&got, &expected);
            assert!(worst < 1e-5, "{m}×{k}×{n}, {what}: relative error {worst}");
        }
    }
}

#[test]
fn batched_products_of_strided_views_match_plain_sums() {
    // Attention multiplies `[batch, heads, rows, dim]` views: keys transposed (`q · kᵀ`),
    // and slices of a longer tensor. `matmul` takes such operands as batches of matrices
    // whatever their strides.
    let (batch, heads, rows, dim, cached, used) = (3, 4, 5, 16, 37, 29);
    let device = Default::default();
    let q = values(batch * heads * rows * dim, 5, 2001);
    let cache = values(batch * heads * cached * dim, 6, 1999);
    let q_t =
        Tensor::<B, 4>::from_data(TensorData::new(q.clone(), [batch, heads, rows, dim]), &device);
    let cache_t = Tensor::<B, 4>::from_data(
        TensorData::new(cache.clone(), [batch, heads, cached, dim]),
        &device,
    );
    let keys = cache_t.slice([0..batch, 0..heads, 0..used, 0..dim]);
    let scores = q_t.matmul(keys.clone().swap_dims(2, 3));
    let weights = values(batch * heads * rows * used, 7, 2001);
    let weights_t = Tensor::<B, 4>::from_data(
        TensorData::new(weights.clone(), [batch, heads, rows, used]),
        &device,
    );
    let mixed = weights_t.matmul(keys);
    let (scores, mixed) =
        (scores.into_data().to_vec::<f32>().unwrap(), mixed.into_data().to_vec::<f32>().unwrap());
    for b in 0..batch * heads {
        let keys: Vec<f32> = cache[b * cached * dim..(b * cached + used) * dim].to_vec();
        let keys_t = transpose_values(&keys, used, dim);
        let q = &q[b * rows * dim..(b + 1) * rows * dim];
        let expected = plain_product(q, &keys_t, rows, dim, used);
        let worst = worst_relative(&scores[b * rows * used..(b + 1) * rows * used], &expected);
        assert!(worst < 1e-5, "q · kᵀ, matrix {b}: relative error {worst}");
        let w = &weights[b * rows * used..(b + 1) * rows * used];
        let expected = plain_product(w, &keys, rows, used, dim);
        let worst = worst_relative(&mixed[b * rows * dim..(b + 1) * rows * dim], &expected);
        assert!(worst < 1e-5, "weights · values, matrix {b}: relative error {worst}");
    }
}

/// `op` of `a` (and `b`) on the whole tensors against `op` of 1 000-element pieces, each too
/// small to be split over the cores.
fn whole_equals_pieces(
    what: &str,
    a: &[f32],
    b: &[f32],
    op: impl Fn(Tensor<B, 2>, Tensor<B, 2>) -> Tensor<B, 2>,
) {
    let piece = 1000;
    let cols = a.len() / piece;
    let whole = floats(op(tensor(a.to_vec(), [piece, cols]), tensor(b.to_vec(), [piece, cols])));
    let pieces: Vec<f32> = a
        .chunks(cols)
        .zip(b.chunks(cols))
        .flat_map(|(x, y)| floats(op(tensor(x.to_vec(), [1, cols]), tensor(y.to_vec(), [1, cols]))))
        .collect();
    let same = whole.iter().zip(&pieces).all(|(x, y)| x.to_bits() == y.to_bits());
    assert!(same, "{what}: the split pass differs from the pieces");
}

#[test]
fn elementwise_ops_split_over_the_cores_give_the_bits_of_unsplit_ones() {
    let len = 1000 * 301; // above the split threshold (2^16), not a multiple of 64
    let a: Vec<f32> = values(len, 3, 2001).iter().map(|v| v * 8.0).collect();
    let b: Vec<f32> = values(len, 4, 1999).iter().map(|v| v + 1.5).collect();
    whole_equals_pieces("add", &a, &b, |x, y| x + y);
    whole_equals_pieces("mul", &a, &b, |x, y| x * y);
    whole_equals_pieces("sub, rhs shared", &a, &b, |x, y| x - y.clone() + y * 0.0);
    whole_equals_pieces("div", &a, &b, |x, y| x / y);
    whole_equals_pieces("mul_scalar", &a, &b, |x, _| x * 0.37);
    whole_equals_pieces("div_scalar, shared", &a, &b, |x, _| {
        let kept = x.clone();
        (x / 3.0) + kept * 0.0
    });
    whole_equals_pieces("exp", &a, &b, |x, _| x.exp());
    whole_equals_pieces("exp, shared", &a, &b, |x, _| x.clone().exp() + x * 0.0);
    whole_equals_pieces("log", &a, &b, |_, y| y.log());
    whole_equals_pieces("sqrt", &a, &b, |_, y| y.sqrt());
    whole_equals_pieces("sigmoid", &a, &b, |x, _| burn::tensor::activation::sigmoid(x));
}

/// `t` with the same values in a non-row-major layout: its last two axes stored swapped.
fn strided_copy(t: Tensor<B, 4>) -> Tensor<B, 4> {
    let swapped = t.swap_dims(2, 3).into_data();
    Tensor::<B, 4>::from_data(swapped, &Default::default()).swap_dims(2, 3)
}

#[test]
fn cat_of_row_major_tensors_equals_cat_of_strided_ones_along_every_axis() {
    let device = Default::default();
    let shape = |d: usize, len: usize| {
        let mut s = [2, 3, 5, 4];
        s[d] = len;
        s
    };
    for dim in 0..4 {
        let parts: Vec<Tensor<B, 4>> = [1, 3, 2]
            .iter()
            .enumerate()
            .map(|(i, &len)| {
                let s = shape(dim, len);
                let n = s.iter().product();
                Tensor::from_data(TensorData::new(values(n, 10 + i as u32, 2001), s), &device)
            })
            .collect();
        let strided: Vec<Tensor<B, 4>> = parts.iter().cloned().map(strided_copy).collect();
        let fast = Tensor::cat(parts, dim).into_data();
        let reference = Tensor::cat(strided, dim).into_data();
        assert_eq!(fast.shape, reference.shape, "dim {dim}");
        assert_eq!(fast.to_vec::<f32>().unwrap(), reference.to_vec::<f32>().unwrap(), "dim {dim}");
    }
}

/// Leaves freed memory of `len` floats full of NaNs, so that an output allocated next
/// and not written whole shows it.
fn poison_freed_memory(len: usize) {
    let poison = Tensor::<B, 1>::full([len], f32::NAN, &Default::default());
    drop(floats(poison.reshape([1, len])));
}

#[test]
fn products_write_every_output_though_it_is_not_zeroed_first() {
    // gemm's outputs are not zeroed before it writes them: each matrix of a batched
    // product (split over the threads) and a single one (split inside gemm) written whole.
    let device = Default::default();
    let (batch, m, k, n) = (6, 90, 70, 80);
    poison_freed_memory(batch * m * n);
    let (a, b) = (values(batch * m * k, 8, 2001), values(batch * k * n, 9, 1999));
    let lhs = Tensor::<B, 3>::from_data(TensorData::new(a.clone(), [batch, m, k]), &device);
    let rhs = Tensor::<B, 3>::from_data(TensorData::new(b.clone(), [batch, k, n]), &device);
    let got = lhs.matmul(rhs).into_data().to_vec::<f32>().unwrap();
    for i in 0..batch {
        let expected =
            plain_product(&a[i * m * k..(i + 1) * m * k], &b[i * k * n..(i + 1) * k * n], m, k, n);
        let worst = worst_relative(&got[i * m * n..(i + 1) * m * n], &expected);
        assert!(worst < 1e-5, "matrix {i}: relative error {worst}");
    }
    let (m, k, n) = (300, 200, 250);
    let (a, b) = (values(m * k, 10, 2001), values(k * n, 11, 1999));
    poison_freed_memory(m * n);
    let got = floats(tensor(a.clone(), [m, k]).matmul(tensor(b.clone(), [k, n])));
    let worst = worst_relative(&got, &plain_product(&a, &b, m, k, n));
    assert!(worst < 1e-5, "one matrix: relative error {worst}");
}

#[test]
fn integer_products_equal_plain_sums() {
    // Integers take ndarray's product (not gemm), into an output zeroed first.
    let (m, k, n) = (5, 7, 3);
    let a: Vec<i64> = (0..m * k).map(|i| (i as i64 * 7) % 11 - 5).collect();
    let b: Vec<i64> = (0..k * n).map(|i| (i as i64 * 5) % 13 - 6).collect();
    let device = Default::default();
    let lhs = Tensor::<B, 2, Int>::from_data(TensorData::new(a.clone(), [m, k]), &device);
    let rhs = Tensor::<B, 2, Int>::from_data(TensorData::new(b.clone(), [k, n]), &device);
    let expected: Vec<i64> =
        (0..m * n).map(|o| (0..k).map(|i| a[o / n * k + i] * b[i * n + o % n]).sum()).collect();
    assert_eq!(indices(lhs.matmul(rhs)), expected);
}

#[test]
fn filled_tensors_hold_their_value_in_every_element() {
    let device = Default::default();
    let shape = [37, 129];
    let len = shape[0] * shape[1];
    poison_freed_memory(len);
    assert_eq!(floats(Tensor::<B, 2>::zeros(shape, &device)), vec![0.0; len]);
    assert_eq!(floats(Tensor::<B, 2>::ones(shape, &device)), vec![1.0; len]);
    assert_eq!(floats(Tensor::<B, 2>::full(shape, -2.5, &device)), vec![-2.5; len]);
    let wide = Tensor::<B, 2>::ones(shape, (&device, burn::tensor::DType::F64));
    assert_eq!(wide.dtype(), burn::tensor::DType::F64);
    assert_eq!(wide.into_data().to_vec::<f64>().unwrap(), vec![1.0; len]);
}

#[test]
fn a_tensor_still_held_elsewhere_reads_back_its_values_in_row_major_order() {
    // Reading a tensor that another handle still holds copies it; row-major ones as one
    // slice, others element by element in row-major order.
    let (rows, cols) = (23, 41);
    let v = values(rows * cols, 11, 2001);
    let t = tensor(v.clone(), [rows, cols]);
    let held = t.clone();
    assert_eq!(floats(t.clone()), v, "row-major");
    assert_eq!(floats(t.clone().transpose()), transpose_values(&v, rows, cols), "transposed");
    let sliced: Vec<f32> = v.chunks(cols).skip(2).take(5).flat_map(|r| r[3..20].to_vec()).collect();
    assert_eq!(floats(t.slice([2..7, 3..20])), sliced, "sliced");
    assert_eq!(floats(held), v, "the other handle");
}
