//! Every GEMM path this machine supports (and the portable kernels with odd tiles) against the
//! f64 triple loop in `reference.rs`, over shapes that straddle every tile and block edge, all
//! four transpose combinations, row- and column-major C, and alpha/beta in {0, 1, other}.
//! Every ISA runs both ways of feeding A to the micro-kernel (packed, and read in place by the
//! direct-A kernel), and operands embedded in NaN-padded storage show any read
//! outside a view (the padding would poison C) and any write outside C.

use lithe_check::{Compare, Tolerance, edge_sizes, fill};
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
const REL_FROB: Tolerance = Tolerance::F32_GEMM;

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
    /// Extra elements at the end of every row (or column) of A, B and C: A and B's are NaN, C's
    /// a sentinel that must survive.
    pad: usize,
}

/// Sentinel in C's padding: anything written outside the view changes it.
const C_PAD: f32 = 12345.0;

/// A `rows x cols` row-major matrix with `pad` NaNs after each row, and its view.
fn padded(values: &[f32], rows: usize, cols: usize, pad: usize) -> Vec<f32> {
    let mut store = vec![f32::NAN; rows * (cols + pad)];
    for (i, row) in values.chunks_exact(cols.max(1)).enumerate().take(rows) {
        store[i * (cols + pad)..i * (cols + pad) + cols].copy_from_slice(row);
    }
    store
}

/// The m x n elements of a C stored with `pad` after each row or column, in view order.
fn interior(store: &[f32], m: usize, n: usize, col_major: bool, pad: usize) -> Vec<f32> {
    let (rs, cs) = if col_major {
        (1, m + pad)
    } else {
        (n + pad, 1)
    };
    (0..m)
        .flat_map(|i| (0..n).map(move |j| store[i * rs + j * cs]))
        .collect()
}

fn cview(d: &mut [f32], m: usize, n: usize, col_major: bool, pad: usize) -> MatMut<'_> {
    if col_major {
        MatMut::new(d, m, n, 1, m + pad).unwrap()
    } else {
        MatMut::new(d, m, n, n + pad, 1).unwrap()
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
        pad,
    } = *case;
    let (a_vals, b_vals) = (fill(m * k, seed), fill(k * n, seed + 1));
    let a_data = if trans_a {
        padded(&a_vals, k, m, pad)
    } else {
        padded(&a_vals, m, k, pad)
    };
    let b_data = if trans_b {
        padded(&b_vals, n, k, pad)
    } else {
        padded(&b_vals, k, n, pad)
    };
    let a = if trans_a {
        MatRef::new(&a_data, k, m, m + pad, 1).unwrap().t()
    } else {
        MatRef::new(&a_data, m, k, k + pad, 1).unwrap()
    };
    let b = if trans_b {
        MatRef::new(&b_data, n, k, k + pad, 1).unwrap().t()
    } else {
        MatRef::new(&b_data, k, n, n + pad, 1).unwrap()
    };
    let c_len = if c_col_major {
        (m + pad) * n
    } else {
        m * (n + pad)
    };
    let mut c0 = vec![C_PAD; c_len];
    let c_vals = fill(m * n, seed + 2);
    {
        let mut c = cview(&mut c0, m, n, c_col_major, pad);
        let (rs, cs) = (c.row_stride(), c.col_stride());
        for (idx, &v) in c_vals.iter().enumerate() {
            c.data_mut()[(idx / n) * rs + (idx % n) * cs] = v;
        }
    }
    let mut want = c0.clone();
    let mut got = c0.clone();
    if beta == 0.0 {
        // beta == 0 means C is write-only: poison it so a read shows up as NaN.
        let mut c = cview(&mut got, m, n, c_col_major, pad);
        let (rs, cs) = (c.row_stride(), c.col_stride());
        for idx in 0..m * n {
            c.data_mut()[(idx / n) * rs + (idx % n) * cs] = f32::NAN;
        }
    }
    sgemm_ref(alpha, a, b, beta, cview(&mut want, m, n, c_col_major, pad));
    driver::gemm(
        ks,
        threads,
        alpha,
        a,
        b,
        beta,
        cview(&mut got, m, n, c_col_major, pad),
    );
    let untouched = got
        .iter()
        .zip(&c0)
        .filter(|&(_, &c)| c == C_PAD)
        .all(|(&g, _)| g == C_PAD);
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
        cview(&mut scale, m, n, c_col_major, pad),
    );
    let got = interior(&got, m, n, c_col_major, pad);
    let want = interior(&want, m, n, c_col_major, pad);
    let scale = interior(&scale, m, n, c_col_major, pad);
    let context = format!(
        "{:?} mr={} nr={} direct_a_max_n={} threads={threads}: m={m} n={n} k={k} ta={trans_a} \
         tb={trans_b} c_col={c_col_major} alpha={alpha} beta={beta} pad={pad}",
        ks.isa, ks.mr, ks.nr, ks.direct_a_max_n
    );
    assert!(untouched, "{context}: C's padding was written");
    let shape = [m, n];
    // Against the terms' magnitude on every output, and against the result itself where there
    // are enough elements for the norm to mean something.
    Compare::new(&got, &want)
        .shape(&shape)
        .scale(&scale)
        .context(&context)
        .assert(&REL_FROB);
    if m * n >= 16 {
        Compare::new(&got, &want)
            .shape(&shape)
            .context(&context)
            .assert(&REL_FROB);
    }
}

/// Every kernel set worth testing: each supported ISA as shipped, the same with tiny cache
/// blocks (so M, N and K are each split into several blocks even on small shapes), each with a
/// dense A always packed and always read in place, and the portable kernels with odd tile
/// shapes.
fn kernel_sets() -> Vec<KernelSet> {
    let mut sets = Vec::new();
    for isa in Isa::available() {
        let ks = KernelSet::for_isa(isa).unwrap();
        sets.push(ks);
        sets.push(ks.with_direct_a_max_n(0));
        sets.push(
            ks.with_blocking(2 * ks.mr, 7, 2 * ks.nr)
                .with_direct_a_max_n(usize::MAX),
        );
    }
    sets.push(KernelSet::portable::<3, 5>());
    sets.push(KernelSet::portable::<3, 5>().with_direct_a_max_n(0));
    sets.push(
        KernelSet::portable::<1, 1>()
            .with_blocking(2, 3, 2)
            .with_direct_a_max_n(usize::MAX),
    );
    sets
}

/// Whether `ks` reads a dense A in place on problems `n` wide.
fn runs_direct_a(ks: &KernelSet, n: usize) -> bool {
    ks.ukernel_direct_a.is_some() && n <= ks.direct_a_max_n
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
                            pad: 0,
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
                pad: 0,
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
                    pad: 0,
                };
                check(&ks, threads, &case, 11);
            }
        }
    }
}

/// The direct-A path (a row- or column-major A read in place) at and around every tile edge,
/// with padded (non-unit) strides, M or N = 1, K = 1, beta = 0 over NaN in C, beta != 0 and
/// alpha != 1.
#[test]
fn direct_a_on_tile_edges_with_strides() {
    let scales = [
        (1.0, 0.0),
        (-0.75, 1.0),
        (3.0, -2.5),
        (1.0, 1.0),
        (-0.75, 0.0),
    ];
    let mut ran = 0;
    for ks in kernel_sets() {
        let ks = ks.with_direct_a_max_n(usize::MAX);
        if ks.ukernel_direct_a.is_none() {
            continue;
        }
        let ms = [
            1,
            2,
            ks.mr - 1,
            ks.mr,
            ks.mr + 1,
            2 * ks.mr - 1,
            2 * ks.mr + 1,
        ];
        let ns = [1, 2, ks.nr - 1, ks.nr, ks.nr + 1, 2 * ks.nr + 1];
        for (x, &m) in ms.iter().enumerate() {
            for (y, &n) in ns.iter().enumerate() {
                for (z, &k) in [1, 2, 17].iter().enumerate() {
                    for pad in [0, 3] {
                        let (alpha, beta) = scales[(x + y + z + pad) % scales.len()];
                        let case = Case {
                            m: m.max(1),
                            n: n.max(1),
                            k,
                            trans_a: (y + z + pad) % 2 == 1,
                            trans_b: (x + y) % 2 == 1,
                            c_col_major: (y + z) % 3 == 0,
                            alpha,
                            beta,
                            pad,
                        };
                        assert!(runs_direct_a(&ks, case.n));
                        check(&ks, 1, &case, (m * 1000 + n * 10 + k) as u64);
                        ran += 1;
                    }
                }
            }
        }
    }
    assert!(ran > 0, "no kernel set has a direct-A kernel");
}

/// A last B panel of a few columns (an `N = 65` score matrix ends in a 1-column one) takes an
/// edge tile whose rounding depends on how A is fed (packed or read in place); problems just
/// wider than the in-place limit, whose per-thread column ranges fall below it, must still give
/// the same bits on every thread count.
#[test]
fn narrow_last_panel_same_bits_on_any_thread_count() {
    let mut compared = 0;
    for isa in Isa::available() {
        let ks = KernelSet::for_isa(isa).unwrap();
        let wide = ks.direct_a_max_n.max(ks.nr);
        for n in [wide + 1, wide + 3, 2 * wide + 2, 3 * ks.nr + 1] {
            for (m, k) in [(24, 64), (40, 17), (13, 300)] {
                for trans_a in [false, true] {
                    let a_vals = fill(m * k, (m + n + k) as u64);
                    let b_vals = fill(k * n, 7);
                    let a = if trans_a {
                        MatRef::new(&a_vals, k, m, m, 1).unwrap().t()
                    } else {
                        MatRef::new(&a_vals, m, k, k, 1).unwrap()
                    };
                    let b = MatRef::new(&b_vals, n, k, k, 1).unwrap().t();
                    let run = |threads: usize| {
                        let mut c = fill(m * n, 3);
                        let view = MatMut::new(&mut c, m, n, n, 1).unwrap();
                        driver::gemm(&ks, threads, 0.5, a, b, 1.5, view);
                        c
                    };
                    let one = run(1);
                    for threads in [2, 3] {
                        let same = run(threads)
                            .iter()
                            .zip(&one)
                            .all(|(x, y)| x.to_bits() == y.to_bits());
                        assert!(same, "{isa:?} m={m} n={n} k={k} ta={trans_a} t={threads}");
                        compared += 1;
                    }
                }
            }
        }
    }
    assert!(compared > 0);
}

/// The small GEMMs of one training step of a little Transformer: attention per (batch, head)
/// (50 tokens, head width 16) in all four layouts, and narrow Linear layers, overwriting and
/// accumulating, on every kernel set.
#[test]
fn small_training_shapes() {
    let shapes = [
        (50, 16, 50),
        (50, 50, 16),
        (16, 50, 50),
        (64, 200, 64),
        (200, 64, 64),
        (100, 16, 64),
    ];
    for ks in kernel_sets() {
        for (m, k, n) in shapes {
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                for beta in [0.0, 1.0] {
                    let case = Case {
                        m,
                        n,
                        k,
                        trans_a: ta,
                        trans_b: tb,
                        c_col_major: false,
                        alpha: 1.0,
                        beta,
                        pad: 0,
                    };
                    check(&ks, 1, &case, (m + n + k) as u64);
                }
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
        pad in 0usize..4,
        seed: u64,
    ) {
        for ks in kernel_sets() {
            let case =
                Case { m, n, k, trans_a: ta, trans_b: tb, c_col_major: c_col, alpha, beta, pad };
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
