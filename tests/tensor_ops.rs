//! The plain-tensor layer: constructors, the seeded RNG, broadcasting rules, and the forward
//! maths against naive loops (matmul on shapes that cross the GEMM's tiles and fold paths).

use lithe::Error;
use lithe::tensor::{self, Rng, Tensor};
use proptest::prelude::*;

fn randn(shape: &[usize], seed: u64) -> Tensor {
    Tensor::randn(shape, 0.0, 1.0, &mut Rng::new(seed))
}

#[test]
fn constructors_and_accessors() {
    let t = Tensor::from_vec((0..6).map(|v| v as f32).collect(), &[2, 3]).unwrap();
    assert_eq!((t.shape(), t.rank(), t.numel()), (&[2usize, 3][..], 2, 6));
    assert_eq!(t.dim(1).unwrap(), 3);
    assert!(matches!(t.dim(2), Err(Error::Axis { .. })));
    assert_eq!(Tensor::zeros(&[2, 2]).data(), &[0.0; 4]);
    assert_eq!(Tensor::ones(&[3]).data(), &[1.0; 3]);
    assert_eq!(Tensor::scalar(2.5).item().unwrap(), 2.5);
    assert!(t.item().is_err());
    let r = t.reshape(&[3, 2]).unwrap();
    assert_eq!(r.data(), t.data());
    assert_eq!(Tensor::zeros(&[0, 4]).numel(), 0);
    // Copy on write: a reshape shares the buffer until one side writes.
    let mut w = r.clone();
    w.data_mut()[0] = 9.0;
    assert_eq!(r.data()[0], 0.0);
    assert_eq!(w.into_vec()[0], 9.0);
}

#[test]
fn rng_is_deterministic_and_roughly_normal() {
    let a = randn(&[1000], 7);
    assert_eq!(a, randn(&[1000], 7));
    assert_ne!(a, randn(&[1000], 8));
    let n = 20_000;
    let big = Tensor::randn(&[n], 1.0, 2.0, &mut Rng::new(3));
    let mean = big.data().iter().map(|&v| v as f64).sum::<f64>() / n as f64;
    let var = big
        .data()
        .iter()
        .map(|&v| (v as f64 - mean).powi(2))
        .sum::<f64>()
        / n as f64;
    assert!((mean - 1.0).abs() < 0.05, "mean {mean}");
    assert!((var.sqrt() - 2.0).abs() < 0.05, "std {}", var.sqrt());
    let u = Tensor::uniform(&[n], -1.0, 3.0, &mut Rng::new(4));
    assert!(u.data().iter().all(|&v| (-1.0..3.0).contains(&v)));
    let mut rng = Rng::new(5);
    let mut counts = [0usize; 3];
    for _ in 0..3000 {
        counts[rng.below(3) as usize] += 1;
    }
    assert!(
        counts.iter().all(|&c| (900..1100).contains(&c)),
        "{counts:?}"
    );
    let mut items: Vec<u32> = (0..10).collect();
    rng.shuffle(&mut items);
    let mut sorted = items.clone();
    sorted.sort();
    assert_eq!(sorted, (0..10).collect::<Vec<_>>());
}

#[test]
fn broadcast_rules() {
    assert_eq!(
        tensor::broadcast_shapes("t", &[2, 1, 4], &[3, 1]).unwrap(),
        vec![2, 3, 4]
    );
    assert_eq!(tensor::broadcast_shapes("t", &[], &[5]).unwrap(), vec![5]);
    assert_eq!(
        tensor::broadcast_shapes("t", &[0, 1], &[3]).unwrap(),
        vec![0, 3]
    );
    assert!(tensor::broadcast_shapes("t", &[2, 3], &[4]).is_err());
    let b = Tensor::from_vec(vec![1.0, 2.0], &[2, 1]).unwrap();
    let full = tensor::broadcast_to(&b, &[3, 2, 2]).unwrap();
    assert_eq!(
        full.data(),
        &[1.0, 1.0, 2.0, 2.0, 1.0, 1.0, 2.0, 2.0, 1.0, 1.0, 2.0, 2.0]
    );
    assert!(tensor::broadcast_to(&b, &[2, 3, 1]).is_err());
    let back = tensor::sum_to_shape(&full, &[2, 1]).unwrap();
    assert_eq!(back.data(), &[6.0, 12.0]);
    let x = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]).unwrap();
    let row = Tensor::from_vec(vec![10.0, 20.0, 30.0], &[3]).unwrap();
    assert_eq!(
        tensor::add(&x, &row).unwrap().data(),
        &[11.0, 22.0, 33.0, 14.0, 25.0, 36.0]
    );
    let col = Tensor::from_vec(vec![2.0, 4.0], &[2, 1]).unwrap();
    assert_eq!(
        tensor::div(&x, &col).unwrap().data(),
        &[0.5, 1.0, 1.5, 1.0, 1.25, 1.5]
    );
    assert_eq!(
        tensor::sub(&row, &x).unwrap().data(),
        &[9.0, 18.0, 27.0, 6.0, 15.0, 24.0]
    );
}

/// An operand that broadcasts to `full`: a suffix of it (`drop` leading dims removed) with each
/// dim kept or set to 1 by the bits of `ones`.
fn broadcast_operand(full: &[usize], drop: usize, ones: u32) -> Vec<usize> {
    let kept = &full[drop.min(full.len())..];
    let dims = kept.iter().enumerate();
    dims.map(|(d, &n)| if ones >> d & 1 == 1 { 1 } else { n })
        .collect()
}

/// A broadcasting binary op on tensors, and the same op on one pair of elements.
type TensorOp = fn(&Tensor, &Tensor) -> lithe::Result<Tensor>;
type ScalarOp = fn(f32, f32) -> f32;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Every broadcasting binary op, on any pair of shapes that broadcast (leading 1s, size-1
    /// axes on either side, ranks apart, empty axes), equals the same f32 operation on both
    /// operands expanded by `broadcast_to`, bit for bit: the op's fast paths (same shape, one
    /// value, a repeated trailing block, contiguous rows) change no result.
    #[test]
    fn broadcasting_ops_equal_the_op_on_expanded_operands(
        full in prop::collection::vec(0usize..5, 0..5),
        (drop_a, ones_a, drop_b, ones_b) in (0usize..4, any::<u32>(), 0usize..4, any::<u32>()),
        seed in any::<u64>(),
    ) {
        let (sa, sb) = (
            broadcast_operand(&full, drop_a, ones_a),
            broadcast_operand(&full, drop_b, ones_b),
        );
        let a = randn(&sa, seed);
        // Away from zero so that `div` stays finite and comparable.
        let b = randn(&sb, seed ^ 1).map(|v| if v.abs() < 0.1 { 0.5 } else { v });
        let out = tensor::broadcast_shapes("t", &sa, &sb).unwrap();
        let (ea, eb) = (
            tensor::broadcast_to(&a, &out).unwrap(),
            tensor::broadcast_to(&b, &out).unwrap(),
        );
        let ops: [(&str, TensorOp, ScalarOp); 4] = [
            ("add", tensor::add, |x, y| x + y),
            ("sub", tensor::sub, |x, y| x - y),
            ("mul", tensor::mul, |x, y| x * y),
            ("div", tensor::div, |x, y| x / y),
        ];
        for (name, op, f) in ops {
            let got = op(&a, &b).unwrap();
            prop_assert_eq!(got.shape(), &out[..], "{} {:?} {:?}", name, &sa, &sb);
            let want: Vec<f32> = ea.data().iter().zip(eb.data()).map(|(&x, &y)| f(x, y)).collect();
            let same = got.data().iter().zip(&want).all(|(g, w)| g.to_bits() == w.to_bits());
            prop_assert!(same, "{} of {:?} and {:?}: {:?} != {:?}", name, &sa, &sb, got.data(), want);
        }
    }
}

/// Naive `op(a) @ op(b)` for one batch.
fn naive(a: &[f32], ta: bool, b: &[f32], tb: bool, m: usize, k: usize, n: usize) -> Vec<f32> {
    let at = |i: usize, p: usize| if ta { a[p * m + i] } else { a[i * k + p] };
    let bt = |p: usize, j: usize| if tb { b[j * k + p] } else { b[p * n + j] };
    let mut c = vec![0.0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            c[i * n + j] = (0..k)
                .map(|p| at(i, p) as f64 * bt(p, j) as f64)
                .sum::<f64>() as f32;
        }
    }
    c
}

fn assert_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    let num: f64 = got
        .iter()
        .zip(want)
        .map(|(a, b)| ((a - b) as f64).powi(2))
        .sum();
    let den: f64 = want
        .iter()
        .map(|&b| (b as f64).powi(2))
        .sum::<f64>()
        .max(1e-30);
    assert!(
        (num / den).sqrt() < 1e-5,
        "{what}: relative error {}",
        (num / den).sqrt()
    );
}

#[test]
fn matmul_against_naive_across_tile_sizes() {
    // Odd sizes that straddle micro-tile edges; batched, shared-right (folded) and transposed.
    for (bsz, m, k, n) in [(1, 1, 1, 1), (3, 7, 5, 9), (2, 17, 33, 13), (2, 65, 70, 31)] {
        for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
            let a_shape = if ta { [bsz, k, m] } else { [bsz, m, k] };
            let b_shape = if tb { [bsz, n, k] } else { [bsz, k, n] };
            let (a, b) = (randn(&a_shape, 1), randn(&b_shape, 2));
            let c = tensor::matmul_ex(&a, ta, &b, tb).unwrap();
            assert_eq!(c.shape(), &[bsz, m, n]);
            for i in 0..bsz {
                let want = naive(
                    &a.data()[i * m * k..(i + 1) * m * k],
                    ta,
                    &b.data()[i * k * n..(i + 1) * k * n],
                    tb,
                    m,
                    k,
                    n,
                );
                assert_close(&c.data()[i * m * n..(i + 1) * m * n], &want, "batched");
            }
            // The same b shared by every batch (2-D right operand).
            let b2 = tensor::slice(&b, 0, 0, 1).unwrap();
            let b2 = b2.reshape(&b_shape[1..]).unwrap();
            let c2 = tensor::matmul_ex(&a, ta, &b2, tb).unwrap();
            for i in 0..bsz {
                let want = naive(
                    &a.data()[i * m * k..(i + 1) * m * k],
                    ta,
                    b2.data(),
                    tb,
                    m,
                    k,
                    n,
                );
                assert_close(&c2.data()[i * m * n..(i + 1) * m * n], &want, "shared");
            }
        }
    }
}

#[test]
fn layout_ops_by_hand() {
    let x = Tensor::from_vec((0..6).map(|v| v as f32).collect(), &[2, 3]).unwrap();
    assert_eq!(
        tensor::transpose(&x, 0, 1).unwrap().data(),
        &[0.0, 3.0, 1.0, 4.0, 2.0, 5.0]
    );
    assert_eq!(
        tensor::slice(&x, 1, 1, 3).unwrap().data(),
        &[1.0, 2.0, 4.0, 5.0]
    );
    assert_eq!(
        tensor::index_select(&x, 1, &[2, 0]).unwrap().data(),
        &[2.0, 0.0, 5.0, 3.0]
    );
    let cat = tensor::concat(&[&x, &x], 0).unwrap();
    assert_eq!(cat.shape(), &[4, 3]);
    let sa = tensor::scatter_add(&Tensor::zeros(&[3]), 0, &[1, 1, 2], &Tensor::ones(&[3])).unwrap();
    assert_eq!(sa.data(), &[0.0, 2.0, 1.0]);
    assert_eq!(
        tensor::sum(&x, &[0], false).unwrap().data(),
        &[3.0, 5.0, 7.0]
    );
    assert_eq!(tensor::mean(&x, &[1], true).unwrap().shape(), &[2, 1]);
    let p = tensor::permute(&randn(&[2, 3, 4], 3), &[2, 0, 1]).unwrap();
    assert_eq!(p.shape(), &[4, 2, 3]);
}

#[test]
fn row_kernels() {
    let x = randn(&[3, 5], 9);
    let s = tensor::softmax(&x).unwrap();
    for row in s.data().chunks(5) {
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
    }
    let ls = tensor::log_softmax(&x).unwrap();
    assert!(ls.max_abs_diff(&s.map(f32::ln)).unwrap() < 1e-5);
    let (y, mean, rstd) =
        tensor::layernorm(&x, &Tensor::ones(&[5]), &Tensor::zeros(&[5]), 1e-5).unwrap();
    assert_eq!((mean.shape(), rstd.shape()), (&[3usize][..], &[3usize][..]));
    for row in y.data().chunks(5) {
        assert!(row.iter().sum::<f32>().abs() < 1e-5);
    }
    let g = tensor::gelu(
        &Tensor::from_vec(vec![0.0, 1.0], &[2]).unwrap(),
        lithe::GeluKind::Erf,
    )
    .unwrap();
    assert!((g.data()[1] - 0.841_344_7).abs() < 1e-6);
}

#[test]
fn row_wise_ops_split_across_threads_give_identical_bits() {
    // Large enough to be split into runs on two threads; odd sizes so runs end mid-vector.
    let x = Tensor::randn(&[301, 257], 0.0, 2.0, &mut lithe::Rng::new(40));
    let w = Tensor::randn(&[301, 257], 0.0, 1.0, &mut lithe::Rng::new(41));
    let run = |threads: usize| {
        lithe::kernels::threads::set_num_threads(threads);
        let g = lithe::Graph::new();
        let xv = g.variable(x.clone());
        let s = g.softmax(xv).unwrap();
        let y = g.gelu(xv, lithe::GeluKind::Erf).unwrap();
        let both = g.add(s, y).unwrap();
        g.backward_from(both, w.clone()).unwrap();
        vec![
            g.value(s).unwrap(),
            g.value(y).unwrap(),
            g.grad(xv).unwrap().unwrap(),
        ]
    };
    let (one, two) = (run(1), run(2));
    lithe::kernels::threads::set_num_threads(0);
    assert_eq!(one, two);
}
