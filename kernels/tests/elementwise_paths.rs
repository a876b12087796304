//! Every element-wise kernel on every ISA path this machine runs, against the f64 references.
//!
//! Each proptest case draws one input and runs it through `Isa::available()` (AVX-512, AVX2,
//! NEON, portable: whatever the CPU has), so a failure names the path. Shapes: cols = 1, primes,
//! and sizes just below / at / above multiples of 4, 8, 16, 32, 64 (the SIMD widths and the
//! 4-accumulator unroll), plus random sizes; rows = 0..4. Values: mostly N-ish in [-5, 5], with
//! +-80, tiny magnitudes (|x| < 1e-30), negative zero and wide [-80, 80] mixed in.
//!
//! Accuracy bound, stated per test: `|got - ref| <= RTOL * (|ref| + scale) + ATOL`, where `scale`
//! is the magnitude of the terms the kernel sums or cancels (0 where there is no cancellation),
//! so that a result near zero from a large cancellation is judged against the size of its terms.
//! RTOL = 1e-5 everywhere (measured maxima are around 1e-6); ATOL is 0 unless noted.
//!
//! `PROPTEST_CASES` sets the case count (default 64: these also run under qemu for aarch64).

use lithe_check::{Compare, Tolerance};
use lithe_kernels::gelu::{GeluKind, gelu_backward_with, gelu_forward, gelu_forward_with};
use lithe_kernels::layernorm::{
    layernorm_backward_with, layernorm_forward, layernorm_forward_with,
};
use lithe_kernels::reference as r;
use lithe_kernels::softmax::{
    log_softmax_backward_with, log_softmax_forward, log_softmax_forward_with,
    softmax_backward_with, softmax_forward, softmax_forward_with,
};
use lithe_kernels::{ElementwiseKernels, Isa, KernelError};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// Relative tolerance of every comparison below.
const RTOL: f64 = 1e-5;

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

/// Column counts around every SIMD width and unroll boundary, primes, and random sizes.
fn cols_strategy() -> impl Strategy<Value = usize> {
    prop_oneof![
        3 => prop::sample::select(vec![
            1usize, 2, 3, 4, 5, 7, 8, 9, 11, 13, 15, 16, 17, 23, 31, 32, 33, 47, 63, 64, 65, 67,
            95, 96, 97, 127, 128, 129, 191, 192, 193, 255, 256, 257,
        ]),
        1 => 1usize..300,
    ]
}

/// Values including the extremes the contract names.
fn value() -> impl Strategy<Value = f32> {
    prop_oneof![
        12 => -5.0f32..5.0,
        1 => Just(80.0f32),
        1 => Just(-80.0f32),
        1 => -1e-30f32..1e-30,
        1 => Just(-0.0f32),
        2 => -80.0f32..80.0,
    ]
}

/// (rows, cols, values of rows * cols).
fn matrix() -> impl Strategy<Value = (usize, usize, Vec<f32>)> {
    (0usize..4, cols_strategy()).prop_flat_map(|(rows, cols)| {
        (
            Just(rows),
            Just(cols),
            prop::collection::vec(value(), rows * cols),
        )
    })
}

/// Absolute slack of the GELU comparisons. The f64 reference forms `1 + erf(x / sqrt 2)` (and
/// `1 + tanh(u)`), whose absolute error is ~1e-16, and its erf returns exactly -1 below
/// x = -8.49; so for x below about -6 the reference itself is only accurate to ~1e-16 absolute
/// (the kernels, which go through erfc and `x * sigmoid(2u)`, are relatively accurate there).
const GELU_ATOL: f64 = 1e-15;

/// Checks `|got - want| <= RTOL * (|want| + scale) + atol` element-wise (and NaN where the
/// reference has NaN).
fn check(
    what: &str,
    isa: Isa,
    got: &[f32],
    want: &[f32],
    scale: impl Fn(usize) -> f64,
    atol: f64,
) -> Result<(), TestCaseError> {
    let scale: Vec<f32> = (0..want.len()).map(|i| scale(i) as f32).collect();
    Compare::new(got, want)
        .scale(&scale)
        .context(format_args!("{what} [{isa}]"))
        .check(&Tolerance::allclose(atol, RTOL))
        .map(drop)
        .map_err(|e| TestCaseError::fail(e.to_string()))
}

/// Random gradients (dout) and prior accumulator contents for the backward kernels.
fn grads(n: usize) -> impl Strategy<Value = (Vec<f32>, Vec<f32>)> {
    (
        prop::collection::vec(-2.0f32..2.0, n),
        prop::collection::vec(-1.0f32..1.0, n),
    )
}

proptest! {
    #![proptest_config(config())]

    /// softmax forward: bound `1e-5 * |ref|` (no cancellation; the error of `exp(x - max)` grows
    /// as `6e-8 * |x - max|`, so elements below ~1e-30 get ATOL = 1e-30).
    #[test]
    fn softmax_forward_matches_reference((rows, cols, x) in matrix()) {
        let mut want = vec![0.0; rows * cols];
        r::softmax_forward_ref(&mut want, &x, cols);
        for isa in Isa::available() {
            let mut got = vec![f32::NAN; rows * cols];
            softmax_forward_with(isa, &mut got, &x, cols).unwrap();
            check("softmax_forward", isa, &got, &want, |_| 0.0, 1e-30)?;
        }
    }

    /// log-softmax forward: bound `1e-5 * (|ref| + 1)` (the `ln(sum)` term is O(1) and rounded).
    #[test]
    fn log_softmax_forward_matches_reference((rows, cols, x) in matrix()) {
        let mut want = vec![0.0; rows * cols];
        r::log_softmax_forward_ref(&mut want, &x, cols);
        for isa in Isa::available() {
            let mut got = vec![f32::NAN; rows * cols];
            log_softmax_forward_with(isa, &mut got, &x, cols).unwrap();
            check("log_softmax_forward", isa, &got, &want, |_| 1.0, 0.0)?;
        }
    }

    /// softmax backward: `dinp += y * (dout - dot)`, scale `|dinp0| + |y| (|dout| + sum|dout*y|)`.
    #[test]
    fn softmax_backward_matches_reference(
        ((rows, cols, x), (g, d0)) in matrix().prop_flat_map(|m| {
            let n = m.0 * m.1;
            (Just(m), grads(n))
        })
    ) {
        let mut y = vec![0.0; rows * cols];
        r::softmax_forward_ref(&mut y, &x, cols);
        let mut want = d0.clone();
        r::softmax_backward_ref(&mut want, &g, &y, cols);
        let dot_abs: Vec<f64> = (0..rows)
            .map(|row| (0..cols).map(|j| (g[row * cols + j] * y[row * cols + j]).abs() as f64).sum())
            .collect();
        let scale = |i: usize| {
            d0[i].abs() as f64 + y[i].abs() as f64 * (g[i].abs() as f64 + dot_abs[i / cols])
        };
        for isa in Isa::available() {
            let mut got = d0.clone();
            softmax_backward_with(isa, &mut got, &g, &y, cols).unwrap();
            check("softmax_backward", isa, &got, &want, scale, 0.0)?;
        }
    }

    /// log-softmax backward: `dinp += dout - exp(y) * sum(dout)`, scale
    /// `|dinp0| + |dout| + exp(y) * sum|dout|`.
    #[test]
    fn log_softmax_backward_matches_reference(
        ((rows, cols, x), (g, d0)) in matrix().prop_flat_map(|m| {
            let n = m.0 * m.1;
            (Just(m), grads(n))
        })
    ) {
        let mut y = vec![0.0; rows * cols];
        r::log_softmax_forward_ref(&mut y, &x, cols);
        let mut want = d0.clone();
        r::log_softmax_backward_ref(&mut want, &g, &y, cols);
        let sum_abs: Vec<f64> = (0..rows)
            .map(|row| (0..cols).map(|j| g[row * cols + j].abs() as f64).sum())
            .collect();
        let scale = |i: usize| {
            d0[i].abs() as f64 + g[i].abs() as f64 + (y[i] as f64).exp() * sum_abs[i / cols]
        };
        for isa in Isa::available() {
            let mut got = d0.clone();
            log_softmax_backward_with(isa, &mut got, &g, &y, cols).unwrap();
            check("log_softmax_backward", isa, &got, &want, scale, 0.0)?;
        }
    }

    /// LayerNorm forward. out: scale `|b| + |w|` (a `xhat * w` cancelled by `b`; xhat is O(1));
    /// mean: scale `max |x|` of the row (f32 summation); rstd: pure `1e-5` relative.
    #[test]
    fn layernorm_forward_matches_reference(
        ((rows, cols, x), w, b, eps) in matrix().prop_flat_map(|m| {
            let c = m.1;
            (
                Just(m),
                prop::collection::vec(-2.0f32..2.0, c),
                prop::collection::vec(-2.0f32..2.0, c),
                prop::sample::select(vec![1e-5f32, 1e-6, 1e-12]),
            )
        })
    ) {
        let (mut want, mut want_mean, mut want_rstd) =
            (vec![0.0; rows * cols], vec![0.0; rows], vec![0.0; rows]);
        r::layernorm_forward_ref(&mut want, &mut want_mean, &mut want_rstd, &x, &w, &b, cols, eps);
        let row_max: Vec<f64> = (0..rows)
            .map(|row| x[row * cols..(row + 1) * cols].iter().fold(0.0f64, |m, &v| m.max(v.abs() as f64)))
            .collect();
        for isa in Isa::available() {
            let (mut out, mut mean, mut rstd) =
                (vec![f32::NAN; rows * cols], vec![f32::NAN; rows], vec![f32::NAN; rows]);
            layernorm_forward_with(isa, &mut out, &mut mean, &mut rstd, &x, &w, &b, cols, eps)
                .unwrap();
            check("layernorm_forward.out", isa, &out, &want, |i| {
                (b[i % cols].abs() + w[i % cols].abs()) as f64
            }, 0.0)?;
            check("layernorm_forward.mean", isa, &mean, &want_mean, |row| row_max[row], 0.0)?;
            check("layernorm_forward.rstd", isa, &rstd, &want_rstd, |_| 0.0, 0.0)?;
        }
    }

    /// LayerNorm backward, accumulating. dinp: scale `|dinp0| + rstd (|dy| + mean|dy| + |xhat|
    /// mean|dy xhat|)`; dweight: `|dw0| + sum_rows |dout xhat|`; dbias: `|db0| + sum_rows |dout|`.
    #[test]
    fn layernorm_backward_matches_reference(
        ((rows, cols, x), w, b, (g, d0), (dw0, db0)) in matrix().prop_flat_map(|m| {
            let (n, c) = (m.0 * m.1, m.1);
            (
                Just(m),
                prop::collection::vec(-2.0f32..2.0, c),
                prop::collection::vec(-2.0f32..2.0, c),
                grads(n),
                grads(c),
            )
        })
    ) {
        let eps = 1e-5;
        let (mut y, mut mean, mut rstd) = (vec![0.0; rows * cols], vec![0.0; rows], vec![0.0; rows]);
        r::layernorm_forward_ref(&mut y, &mut mean, &mut rstd, &x, &w, &b, cols, eps);
        let (mut want_d, mut want_dw, mut want_db) = (d0.clone(), dw0.clone(), db0.clone());
        r::layernorm_backward_ref(
            &mut want_d, &mut want_dw, &mut want_db, &g, &x, &w, &mean, &rstd, cols,
        );
        let xhat = |i: usize| (x[i] as f64 - mean[i / cols] as f64) * rstd[i / cols] as f64;
        let dy = |i: usize| g[i] as f64 * w[i % cols] as f64;
        let row_means: Vec<(f64, f64)> = (0..rows)
            .map(|row| {
                let idx = row * cols..(row + 1) * cols;
                let a: f64 = idx.clone().map(|i| dy(i).abs()).sum();
                let b: f64 = idx.map(|i| (dy(i) * xhat(i)).abs()).sum();
                (a / cols as f64, b / cols as f64)
            })
            .collect();
        let col_sums: Vec<(f64, f64)> = (0..cols)
            .map(|j| {
                (0..rows).fold((0.0, 0.0), |(sw, sb), row| {
                    let i = row * cols + j;
                    (sw + (g[i] as f64 * xhat(i)).abs(), sb + g[i].abs() as f64)
                })
            })
            .collect();
        for isa in Isa::available() {
            let (mut d, mut dw, mut db) = (d0.clone(), dw0.clone(), db0.clone());
            layernorm_backward_with(isa, &mut d, &mut dw, &mut db, &g, &x, &w, &mean, &rstd, cols)
                .unwrap();
            check("layernorm_backward.dinp", isa, &d, &want_d, |i| {
                let (mdy, mdyx) = row_means[i / cols];
                d0[i].abs() as f64
                    + rstd[i / cols] as f64 * (dy(i).abs() + mdy + xhat(i).abs() * mdyx)
            }, 0.0)?;
            check("layernorm_backward.dweight", isa, &dw, &want_dw, |j| {
                dw0[j].abs() as f64 + col_sums[j].0
            }, 0.0)?;
            check("layernorm_backward.dbias", isa, &db, &want_db, |j| {
                db0[j].abs() as f64 + col_sums[j].1
            }, 0.0)?;
        }
    }

    /// GELU forward (both kinds): bound `1e-5 * |ref| + GELU_ATOL`.
    #[test]
    fn gelu_forward_matches_reference(x in prop::collection::vec(value(), 0..300)) {
        for kind in [GeluKind::Erf, GeluKind::Tanh] {
            let mut want = vec![0.0; x.len()];
            r::gelu_forward_ref(&mut want, &x, kind);
            for isa in Isa::available() {
                let mut got = vec![f32::NAN; x.len()];
                gelu_forward_with(isa, &mut got, &x, kind).unwrap();
                check(&format!("gelu_forward({kind:?})"), isa, &got, &want, |_| 0.0, GELU_ATOL)?;
            }
        }
    }

    /// GELU backward (both kinds), accumulating: scale `|dinp0| + |dout| * (|t1| + |t2|)` for the
    /// two terms of gelu' (`Phi(x)` and `x phi(x)`; tanh: `s` and `x s (1 - s) dv`), which cancel
    /// near x = -0.75 where gelu' = 0; plus GELU_ATOL as for the forward.
    #[test]
    fn gelu_backward_matches_reference(
        (x, (g, d0)) in prop::collection::vec(value(), 0..300)
            .prop_flat_map(|x| { let n = x.len(); (Just(x), grads(n)) })
    ) {
        for kind in [GeluKind::Erf, GeluKind::Tanh] {
            let mut want = d0.clone();
            r::gelu_backward_ref(&mut want, &x, &g, kind);
            let terms = |i: usize| {
                let x = x[i] as f64;
                match kind {
                    GeluKind::Erf => {
                        let cdf = 0.5 * (1.0 + r::erf_f64(x / std::f64::consts::SQRT_2));
                        let pdf = (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt();
                        cdf.abs() + (x * pdf).abs()
                    }
                    GeluKind::Tanh => {
                        let c = (2.0 / std::f64::consts::PI).sqrt();
                        let u = c * (x + 0.044715 * x * x * x);
                        let s = 1.0 / (1.0 + (-2.0 * u).exp());
                        let dv = 2.0 * c * (1.0 + 3.0 * 0.044715 * x * x);
                        s + (x * s * (1.0 - s) * dv).abs()
                    }
                }
            };
            for isa in Isa::available() {
                let mut got = d0.clone();
                gelu_backward_with(isa, &mut got, &x, &g, kind).unwrap();
                check(&format!("gelu_backward({kind:?})"), isa, &got, &want, |i| {
                    d0[i].abs() as f64 + g[i].abs() as f64 * terms(i)
                }, GELU_ATOL)?;
            }
        }
    }
}

/// Rows of `cols` where row 1 carries a NaN at `pos`: that row becomes all NaN, the others stay
/// finite, on every path, for every position (including SIMD tails).
#[test]
fn nan_in_a_row_gives_a_nan_row_and_spares_the_others() {
    for cols in [1usize, 3, 8, 17, 33, 64, 100] {
        for pos in [0, cols / 2, cols - 1] {
            let mut x: Vec<f32> = (0..3 * cols).map(|i| (i % 7) as f32 - 3.0).collect();
            x[cols + pos] = f32::NAN;
            for isa in Isa::available() {
                for log in [false, true] {
                    let mut out = vec![0.0; 3 * cols];
                    if log {
                        log_softmax_forward_with(isa, &mut out, &x, cols).unwrap();
                    } else {
                        softmax_forward_with(isa, &mut out, &x, cols).unwrap();
                    }
                    let what = if log { "log_softmax" } else { "softmax" };
                    for (i, &v) in out.iter().enumerate() {
                        let in_nan_row = i / cols == 1;
                        assert_eq!(
                            v.is_nan(),
                            in_nan_row,
                            "{what} [{isa}] cols={cols} pos={pos}: out[{i}] = {v}"
                        );
                    }
                }
            }
        }
    }
}

/// A row of all `-inf` gives NaN, as PyTorch (`exp(-inf - -inf)`); a row with one finite value
/// among `-inf` gives a one-hot row.
#[test]
fn all_neg_inf_row_gives_nan() {
    for isa in Isa::available() {
        for cols in [1usize, 5, 16, 19] {
            let x = vec![f32::NEG_INFINITY; cols];
            let mut out = vec![0.0; cols];
            softmax_forward_with(isa, &mut out, &x, cols).unwrap();
            assert!(out.iter().all(|v| v.is_nan()), "[{isa}] softmax {out:?}");
            log_softmax_forward_with(isa, &mut out, &x, cols).unwrap();
            assert!(
                out.iter().all(|v| v.is_nan()),
                "[{isa}] log_softmax {out:?}"
            );

            let mut x = x;
            x[cols - 1] = 2.5;
            softmax_forward_with(isa, &mut out, &x, cols).unwrap();
            let mut want = vec![0.0; cols];
            want[cols - 1] = 1.0;
            assert_eq!(out, want, "[{isa}] softmax one-hot");
        }
    }
}

/// Magnitudes far beyond exp's range do not overflow: softmax stays in [0, 1] and sums to 1,
/// log-softmax stays finite where the reference is, GELU gives x or 0.
#[test]
fn huge_magnitudes_do_not_overflow() {
    let x = [1e30f32, 0.0, -1e30, 3e38, -3e38, 1e-38, 88.5, -88.5, 100.0];
    let cols = x.len();
    for isa in Isa::available() {
        let mut out = vec![0.0; cols];
        let mut want = vec![0.0; cols];
        softmax_forward_with(isa, &mut out, &x, cols).unwrap();
        r::softmax_forward_ref(&mut want, &x, cols);
        assert_eq!(out, want, "[{isa}] softmax");
        log_softmax_forward_with(isa, &mut out, &x, cols).unwrap();
        r::log_softmax_forward_ref(&mut want, &x, cols);
        for (o, w) in out.iter().zip(&want) {
            // Both are -inf where x - max overflows f32.
            assert!(
                o == w || (o - w).abs() <= 1e-5 * w.abs(),
                "[{isa}] log_softmax {out:?} vs {want:?}"
            );
        }
        for kind in [GeluKind::Erf, GeluKind::Tanh] {
            gelu_forward_with(isa, &mut out, &x, kind).unwrap();
            r::gelu_forward_ref(&mut want, &x, kind);
            for (o, w) in out.iter().zip(&want) {
                assert!(
                    o == w || (o - w).abs() as f64 <= 1e-5 * w.abs() as f64 + GELU_ATOL,
                    "[{isa}] gelu {kind:?}: {out:?} vs {want:?}"
                );
            }
        }
    }
}

/// NaN in GELU's input propagates to exactly that element, forward and backward.
#[test]
fn gelu_nan_propagates_elementwise() {
    let x = [
        0.5f32,
        f32::NAN,
        -1.0,
        2.0,
        0.0,
        1.0,
        -3.0,
        4.0,
        5.0,
        f32::NAN,
        0.1,
    ];
    for isa in Isa::available() {
        for kind in [GeluKind::Erf, GeluKind::Tanh] {
            let mut out = vec![0.0; x.len()];
            gelu_forward_with(isa, &mut out, &x, kind).unwrap();
            let mut d = vec![0.0; x.len()];
            gelu_backward_with(isa, &mut d, &x, &[1.0; 11], kind).unwrap();
            for i in 0..x.len() {
                assert_eq!(out[i].is_nan(), x[i].is_nan(), "[{isa}] {kind:?} fwd {i}");
                assert_eq!(d[i].is_nan(), x[i].is_nan(), "[{isa}] {kind:?} bwd {i}");
            }
        }
    }
}

fn is_length_mismatch<T: std::fmt::Debug>(r: Result<T, KernelError>) -> bool {
    matches!(r, Err(KernelError::LengthMismatch(_)))
}

/// Wrong lengths and cols = 0 are `Err(LengthMismatch)` on every path; nothing panics.
#[test]
fn wrong_lengths_and_zero_cols_are_errors() {
    let (a6, b6, c6) = (vec![0.0f32; 6], vec![0.0f32; 6], vec![0.0f32; 6]);
    let (mut o6, mut o5, mut o3) = (vec![0.0f32; 6], vec![0.0f32; 5], vec![0.0f32; 3]);
    let mut o2 = vec![0.0f32; 2];
    for isa in Isa::available() {
        for cols in [0usize, 4] {
            // cols = 0 is never valid; cols = 4 does not divide 6.
            assert!(is_length_mismatch(softmax_forward_with(
                isa, &mut o6, &a6, cols
            )));
            assert!(is_length_mismatch(log_softmax_forward_with(
                isa, &mut o6, &a6, cols
            )));
            assert!(is_length_mismatch(softmax_backward_with(
                isa, &mut o6, &a6, &b6, cols
            )));
            assert!(is_length_mismatch(log_softmax_backward_with(
                isa, &mut o6, &a6, &b6, cols
            )));
        }
        // Buffers that disagree.
        assert!(is_length_mismatch(softmax_forward_with(
            isa, &mut o5, &a6, 1
        )));
        assert!(is_length_mismatch(softmax_backward_with(
            isa,
            &mut o6,
            &a6,
            &b6[..3],
            3
        )));
        assert!(is_length_mismatch(log_softmax_backward_with(
            isa,
            &mut o6,
            &a6[..3],
            &b6,
            3
        )));
        // LayerNorm: rows = 2, cols = 3.
        let (w3, b3) = (vec![1.0f32; 3], vec![0.0f32; 3]);
        let (mut m2, mut r2) = (vec![0.0f32; 2], vec![0.0f32; 2]);
        assert!(is_length_mismatch(layernorm_forward_with(
            isa, &mut o6, &mut m2, &mut r2, &a6, &w3, &b3, 0, 1e-5
        )));
        assert!(is_length_mismatch(layernorm_forward_with(
            isa,
            &mut o6,
            &mut m2,
            &mut r2,
            &a6,
            &w3[..2],
            &b3,
            3,
            1e-5
        )));
        assert!(is_length_mismatch(layernorm_forward_with(
            isa, &mut o6, &mut o3, &mut r2, &a6, &w3, &b3, 3, 1e-5
        )));
        let (mut dw, mut db) = (vec![0.0f32; 3], vec![0.0f32; 3]);
        assert!(is_length_mismatch(layernorm_backward_with(
            isa, &mut o6, &mut dw, &mut db, &a6, &b6, &w3, &m2, &r2, 0
        )));
        assert!(is_length_mismatch(layernorm_backward_with(
            isa, &mut o6, &mut dw, &mut o2, &a6, &b6, &w3, &m2, &r2, 3
        )));
        assert!(is_length_mismatch(layernorm_backward_with(
            isa,
            &mut o6,
            &mut dw,
            &mut db,
            &a6,
            &c6[..3],
            &w3,
            &m2,
            &r2,
            3
        )));
        assert!(is_length_mismatch(layernorm_backward_with(
            isa,
            &mut o6,
            &mut dw,
            &mut db,
            &a6,
            &b6,
            &w3,
            &m2[..1],
            &r2,
            3
        )));
        // GELU.
        for kind in [GeluKind::Erf, GeluKind::Tanh] {
            assert!(is_length_mismatch(gelu_forward_with(
                isa, &mut o5, &a6, kind
            )));
            assert!(is_length_mismatch(gelu_backward_with(
                isa,
                &mut o6,
                &a6,
                &b6[..5],
                kind
            )));
        }
    }
}

/// Empty buffers with rows = 0 (and cols > 0) are fine and touch nothing.
#[test]
fn empty_buffers_are_ok() {
    let (mut e, x) = (Vec::<f32>::new(), Vec::<f32>::new());
    let (mut m, mut rs) = (Vec::<f32>::new(), Vec::<f32>::new());
    let (w, b) = (vec![1.0f32; 4], vec![0.0f32; 4]);
    let (mut dw, mut db) = (vec![7.0f32; 4], vec![7.0f32; 4]);
    for isa in Isa::available() {
        softmax_forward_with(isa, &mut e, &x, 4).unwrap();
        log_softmax_forward_with(isa, &mut e, &x, 4).unwrap();
        softmax_backward_with(isa, &mut e, &x, &x, 4).unwrap();
        log_softmax_backward_with(isa, &mut e, &x, &x, 4).unwrap();
        layernorm_forward_with(isa, &mut e, &mut m, &mut rs, &x, &w, &b, 4, 1e-5).unwrap();
        layernorm_backward_with(isa, &mut e, &mut dw, &mut db, &x, &x, &w, &m, &rs, 4).unwrap();
        assert_eq!(
            (dw.as_slice(), db.as_slice()),
            (&[7.0; 4][..], &[7.0; 4][..])
        );
        for kind in [GeluKind::Erf, GeluKind::Tanh] {
            gelu_forward_with(isa, &mut e, &x, kind).unwrap();
            gelu_backward_with(isa, &mut e, &x, &x, kind).unwrap();
        }
    }
}

/// A path this CPU (or build target) lacks is an error, not a crash.
#[test]
fn unsupported_isa_is_an_error() {
    for isa in Isa::ALL {
        let table = ElementwiseKernels::for_isa(isa);
        assert_eq!(table.is_ok(), isa.is_supported(), "{isa}");
        if !isa.is_supported() {
            let mut out = [0.0f32; 4];
            assert_eq!(
                softmax_forward_with(isa, &mut out, &[1.0; 4], 4),
                Err(KernelError::UnsupportedIsa(isa.name()))
            );
        }
    }
}

/// The default functions run `Isa::active()`'s kernels: bit-identical to the `_with` call.
#[test]
fn default_functions_use_the_active_path() {
    let active = ElementwiseKernels::active().isa();
    assert_eq!(active, Isa::active());
    let x: Vec<f32> = (0..3 * 37)
        .map(|i| ((i * 7919) % 23) as f32 * 0.37 - 4.0)
        .collect();
    let (w, b) = (vec![1.5f32; 37], vec![-0.25f32; 37]);
    let (mut a, mut c) = (vec![0.0; x.len()], vec![0.0; x.len()]);
    softmax_forward(&mut a, &x, 37).unwrap();
    softmax_forward_with(active, &mut c, &x, 37).unwrap();
    assert_eq!(a, c);
    log_softmax_forward(&mut a, &x, 37).unwrap();
    log_softmax_forward_with(active, &mut c, &x, 37).unwrap();
    assert_eq!(a, c);
    let (mut m1, mut r1, mut m2, mut r2) = (vec![0.0; 3], vec![0.0; 3], vec![0.0; 3], vec![0.0; 3]);
    layernorm_forward(&mut a, &mut m1, &mut r1, &x, &w, &b, 37, 1e-5).unwrap();
    layernorm_forward_with(active, &mut c, &mut m2, &mut r2, &x, &w, &b, 37, 1e-5).unwrap();
    assert_eq!((a.clone(), m1, r1), (c.clone(), m2, r2));
    gelu_forward(&mut a, &x, GeluKind::Erf).unwrap();
    gelu_forward_with(active, &mut c, &x, GeluKind::Erf).unwrap();
    assert_eq!(a, c);
}
