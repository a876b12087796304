//! Every GEMM path this machine supports (and the portable kernels with odd tiles) against the
//! f64 triple loop in `reference.rs`, over shapes that straddle every tile and block edge, all
//! four transpose combinations, row- and column-major C, and alpha/beta in {0, 1, other}.

use lithe_kernels::gemm::{KernelSet, driver};
use lithe_kernels::reference::sgemm_ref;
use lithe_kernels::{GemmOptions, Isa, KernelError, MatMut, MatRef, sgemm_with};
use proptest::prelude::*;

/// Relative Frobenius error bound for f32 GEMM against the f64 reference.
///
/// Two measures are held to it: `||got - ref||_F / ||ref||_F` on every output with at least
/// 16 elements, and on every output `||got - ref||_F / || |alpha| |A| |B| + |beta| |C0| ||_F`,
/// the size of the terms actually summed, which stays meaningful when a single dot product
/// cancels to nearly zero (a 1x1 result can lose all relative accuracy in exact f32 arithmetic).
const REL_FROB: f64 = 1e-5;

fn rel_frobenius(got: &[f32], want: &[f32]) -> f64 {
    let num: f64 = got
        .iter()
        .zip(want)
        .map(|(&g, &w)| (g as f64 - w as f64).powi(2))
        .sum();
    let den: f64 = want.iter().map(|&w| (w as f64).powi(2)).sum();
    if den == 0.0 {
        num.sqrt()
    } else {
        (num / den).sqrt()
    }
}

/// Deterministic values in [-1, 1), with some exact extremes sprinkled in.
fn fill(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|i| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            match i % 97 {
                13 => -0.0,
                29 => 1.0,
                _ => ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0,
            }
        })
        .collect()
}

#[derive(Clone, Copy)]
struct Case {
    m: usize,
    n: usize,
    k: usize,
    trans_a: bool,
    trans_b: bool,
    c_col_major: bool,
    alpha: f32,
    beta: f32,
}

fn view(d: &mut [f32], m: usize, n: usize, col_major: bool) -> MatMut<'_> {
    if col_major {
        MatMut::col_major(d, m, n).unwrap()
    } else {
        MatMut::row_major(d, m, n).unwrap()
    }
}

/// Runs one case on `ks` through the real driver and checks it against the reference.
fn check(ks: &KernelSet, threads: usize, case: &Case, seed: u64) {
    let Case {
        m,
        n,
        k,
        trans_a,
        trans_b,
        c_col_major,
        alpha,
        beta,
    } = *case;
    let a_data = fill(m * k, seed);
    let b_data = fill(k * n, seed + 1);
    let a = if trans_a {
        MatRef::row_major(&a_data, k, m).unwrap().t()
    } else {
        MatRef::row_major(&a_data, m, k).unwrap()
    };
    let b = if trans_b {
        MatRef::row_major(&b_data, n, k).unwrap().t()
    } else {
        MatRef::row_major(&b_data, k, n).unwrap()
    };
    let c0 = fill(m * n, seed + 2);
    let mut want = c0.clone();
    let mut got = c0.clone();
    if beta == 0.0 {
        // beta == 0 means C is write-only: poison it so a read shows up as NaN.
        got.iter_mut().for_each(|v| *v = f32::NAN);
    }
    sgemm_ref(alpha, a, b, beta, view(&mut want, m, n, c_col_major));
    driver::gemm(
        ks,
        threads,
        alpha,
        a,
        b,
        beta,
        view(&mut got, m, n, c_col_major),
    );
    // The magnitude of the summed terms: |alpha| |A| |B| + |beta| |C0|, via the reference on
    // absolute values.
    let (a_abs, b_abs): (Vec<f32>, Vec<f32>) = (
        a_data.iter().map(|v| v.abs()).collect(),
        b_data.iter().map(|v| v.abs()).collect(),
    );
    let mut scale: Vec<f32> = c0.iter().map(|v| v.abs()).collect();
    let (a_abs, b_abs) = (a.with_data(&a_abs).unwrap(), b.with_data(&b_abs).unwrap());
    sgemm_ref(
        alpha.abs(),
        a_abs,
        b_abs,
        beta.abs(),
        view(&mut scale, m, n, c_col_major),
    );
    let diff: f64 = got
        .iter()
        .zip(&want)
        .map(|(&g, &w)| (g as f64 - w as f64).powi(2))
        .sum();
    let terms: f64 = scale.iter().map(|&v| (v as f64).powi(2)).sum();
    let err_terms = if terms == 0.0 {
        diff.sqrt()
    } else {
        (diff / terms).sqrt()
    };
    let err = if m * n >= 16 {
        rel_frobenius(&got, &want).max(err_terms)
    } else {
        err_terms
    };
    assert!(
        err <= REL_FROB && got.iter().all(|v| !v.is_nan()),
        "{:?} mr={} nr={} threads={threads}: m={m} n={n} k={k} ta={trans_a} tb={trans_b} \
         c_col={c_col_major} alpha={alpha} beta={beta}: rel frob err {err:e}",
        ks.isa,
        ks.mr,
        ks.nr
    );
}

/// Every kernel set worth testing: each supported ISA as shipped, the same with tiny cache
/// blocks (so M, N and K are each split into several blocks even on small shapes), and the
/// portable kernels with odd tile shapes.
fn kernel_sets() -> Vec<KernelSet> {
    let mut sets = Vec::new();
    for isa in Isa::available() {
        let ks = KernelSet::for_isa(isa).unwrap();
        sets.push(ks);
        sets.push(ks.with_blocking(2 * ks.mr, 7, 2 * ks.nr));
    }
    sets.push(KernelSet::portable::<3, 5>());
    sets.push(KernelSet::portable::<1, 1>().with_blocking(2, 3, 2));
    sets
}

/// Sizes just below, at and above a tile edge, plus 1 and a few primes.
fn edge_sizes(tile: usize) -> Vec<usize> {
    let mut v = vec![
        1,
        2,
        3,
        7,
        tile.saturating_sub(1).max(1),
        tile,
        tile + 1,
        2 * tile + 1,
        31,
        67,
    ];
    v.sort_unstable();
    v.dedup();
    v
}

#[test]
fn every_path_on_tile_edges() {
    for ks in kernel_sets() {
        for &m in &edge_sizes(ks.mr) {
            for &n in &edge_sizes(ks.nr) {
                for &k in &[1, 2, 5, 16, 17, 33] {
                    for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                        let case = Case {
                            m,
                            n,
                            k,
                            trans_a: ta,
                            trans_b: tb,
                            c_col_major: (m + n) % 3 == 0,
                            alpha: 1.0,
                            beta: if k % 2 == 0 { 0.0 } else { 0.5 },
                        };
                        check(&ks, 1, &case, (m * 1000 + n * 10 + k) as u64);
                    }
                }
            }
        }
    }
}

#[test]
fn deep_k_crosses_kc_blocks() {
    for isa in Isa::available() {
        let ks = KernelSet::for_isa(isa).unwrap();
        let k = 2 * ks.kc + 3;
        for (m, n) in [(ks.mr + 1, ks.nr - 1), (1, 1), (2 * ks.mr, 3 * ks.nr + 5)] {
            let case = Case {
                m,
                n,
                k,
                trans_a: false,
                trans_b: true,
                c_col_major: false,
                alpha: -1.5,
                beta: 2.0,
            };
            check(&ks, 1, &case, 7);
        }
    }
}

#[test]
fn threads_split_m_and_n() {
    for isa in Isa::available() {
        let ks = KernelSet::for_isa(isa).unwrap();
        for (m, n, k) in [(200, 37, 64), (37, 300, 64), (129, 129, 129), (3, 1000, 48)] {
            for threads in [2, 3] {
                let case = Case {
                    m,
                    n,
                    k,
                    trans_a: false,
                    trans_b: false,
                    c_col_major: false,
                    alpha: 1.0,
                    beta: 0.0,
                };
                check(&ks, threads, &case, 11);
            }
        }
    }
}

proptest! {
    // PROPTEST_CASES, when set, wins (qemu runs use fewer cases).
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(48),
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_shapes_every_path(
        m in 1usize..90, n in 1usize..90, k in 1usize..300,
        ta: bool, tb: bool, c_col: bool,
        alpha in prop::sample::select(vec![1.0f32, 0.0, -0.75, 3.0]),
        beta in prop::sample::select(vec![0.0f32, 1.0, -2.5]),
        seed: u64,
    ) {
        for ks in kernel_sets() {
            let case = Case { m, n, k, trans_a: ta, trans_b: tb, c_col_major: c_col, alpha, beta };
            check(&ks, 1, &case, seed);
        }
    }
}

fn run(isa: Isa, a: MatRef<'_>, b: MatRef<'_>, beta: f32, c: MatMut<'_>) {
    let opts = GemmOptions {
        isa: Some(isa),
        threads: Some(1),
    };
    sgemm_with(&opts, 1.0, a, b, beta, c).unwrap();
}

#[test]
fn empty_and_degenerate_shapes() {
    for isa in Isa::available() {
        // m == 0: nothing touched, Ok.
        let ones = vec![1.0f32; 3];
        let mut c: Vec<f32> = vec![];
        let a0 = MatRef::row_major(&[], 0, 3).unwrap();
        run(
            isa,
            a0,
            MatRef::row_major(&ones, 3, 1).unwrap(),
            0.0,
            MatMut::row_major(&mut c, 0, 1).unwrap(),
        );
        // k == 0: C = beta * C, and beta == 0 clears even NaN.
        let (a1, b1) = (
            MatRef::row_major(&[], 1, 0).unwrap(),
            MatRef::row_major(&[], 0, 2).unwrap(),
        );
        let mut c = vec![2.0f32, f32::NAN];
        run(isa, a1, b1, 0.5, MatMut::row_major(&mut c, 1, 2).unwrap());
        assert_eq!(c[0], 1.0);
        assert!(c[1].is_nan());
        run(isa, a1, b1, 0.0, MatMut::row_major(&mut c, 1, 2).unwrap());
        assert_eq!(c, vec![0.0, 0.0]);
    }
}

#[test]
fn nan_in_inputs_propagates() {
    for isa in Isa::available() {
        let mut a = fill(20 * 30, 1);
        a[5 * 30 + 7] = f32::NAN; // row 5 of A
        let b = fill(30 * 40, 2);
        let mut c = vec![0.0f32; 20 * 40];
        let (av, bv) = (
            MatRef::row_major(&a, 20, 30).unwrap(),
            MatRef::row_major(&b, 30, 40).unwrap(),
        );
        run(isa, av, bv, 0.0, MatMut::row_major(&mut c, 20, 40).unwrap());
        for (i, row) in c.chunks_exact(40).enumerate() {
            let ok = if i == 5 {
                row.iter().all(|v| v.is_nan())
            } else {
                row.iter().all(|v| v.is_finite())
            };
            assert!(ok, "{isa}: row {i}");
        }
    }
}

#[test]
fn mismatched_shapes_are_errors() {
    let a = vec![0.0f32; 6];
    let b = vec![0.0f32; 6];
    let mut c = vec![0.0f32; 9];
    let err = lithe_kernels::sgemm(
        1.0,
        MatRef::row_major(&a, 2, 3).unwrap(),
        MatRef::row_major(&b, 2, 3).unwrap(),
        0.0,
        MatMut::row_major(&mut c, 2, 3).unwrap(),
    );
    assert!(matches!(err, Err(KernelError::ShapeMismatch(_))));
    assert!(matches!(
        MatRef::row_major(&a, 3, 3),
        Err(KernelError::OutOfBounds { .. })
    ));
}

#[test]
fn forced_unsupported_isa_is_an_error() {
    if let Some(isa) = Isa::ALL.into_iter().find(|isa| !isa.is_supported()) {
        assert_eq!(
            KernelSet::for_isa(isa).unwrap_err(),
            KernelError::UnsupportedIsa(isa.name())
        );
    }
    for isa in Isa::available() {
        assert_eq!(KernelSet::for_isa(isa).unwrap().isa, isa);
    }
}
