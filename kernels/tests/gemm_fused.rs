//! `sgemm_fused`: a pre-packed B and the fused bias epilogue, on every kernel set this machine
//! supports (as shipped, with tiny cache blocks so K and N span several KC / NC blocks, with A
//! packed and read in place) and the portable kernels with odd tiles, against the f64 reference.
//!
//! Every case runs B both as a view and pre-packed (from a row-major or column-major B) and
//! requires bit-identical C from the two, then checks that C against the reference. Operands sit
//! in NaN-padded storage, so a read outside a view poisons C, and C's padding holds a sentinel
//! that any stray write changes. At beta = 0 every case also runs into uninitialized memory,
//! which must get the same bits.

use lithe_check::{Compare, Tolerance, fill};

use lithe_kernels::gemm::{KernelSet, driver};
use lithe_kernels::reference::sgemm_bias_ref;
use lithe_kernels::{
    BSource, GemmOptions, Isa, KernelError, MatMut, MatRef, PackedB, sgemm_fused,
    sgemm_fused_uninit,
};
use proptest::prelude::*;

/// Relative Frobenius error bound against the f64 reference, measured against the size of the
/// summed terms `|alpha| |A| |B| + |beta| |C0| + |bias|` (see `gemm_paths.rs`).
const REL_FROB: Tolerance = Tolerance::F32_GEMM;

/// Sentinel in C's padding: anything written outside the view changes it.
const C_PAD: f32 = 12345.0;

#[derive(Clone, Copy, Debug)]
struct Case {
    m: usize,
    n: usize,
    k: usize,
    /// A stored k x m (read through a transposed view).
    trans_a: bool,
    /// B stored n x k row-major, i.e. a column-major view (a Linear layer's `W^T`).
    b_col_major: bool,
    c_col_major: bool,
    alpha: f32,
    beta: f32,
    bias: bool,
    /// Extra NaNs after every row of A and B, extra sentinels after every row/column of C.
    pad: usize,
}

/// `rows x cols` values stored row-major with `pad` NaNs after each row.
fn padded(values: &[f32], rows: usize, cols: usize, pad: usize) -> Vec<f32> {
    let mut store = vec![f32::NAN; rows * (cols + pad)];
    for i in 0..rows {
        store[i * (cols + pad)..i * (cols + pad) + cols]
            .copy_from_slice(&values[i * cols..(i + 1) * cols]);
    }
    store
}

fn c_strides(case: &Case) -> (usize, usize, usize) {
    let Case { m, n, pad, .. } = *case;
    if case.c_col_major {
        (1, m + pad, (m + pad) * n)
    } else {
        (n + pad, 1, m * (n + pad))
    }
}

fn cview<'a>(d: &'a mut [f32], case: &Case) -> MatMut<'a> {
    let (rs, cs, _) = c_strides(case);
    MatMut::new(d, case.m, case.n, rs, cs).unwrap()
}

fn interior(d: &[f32], case: &Case) -> Vec<f32> {
    let (rs, cs, _) = c_strides(case);
    (0..case.m)
        .flat_map(|i| (0..case.n).map(move |j| d[i * rs + j * cs]))
        .collect()
}

/// The operands of one case, owned.
struct Operands {
    a: Vec<f32>,
    b: Vec<f32>,
    c0: Vec<f32>,
    bias: Vec<f32>,
}

impl Operands {
    fn new(case: &Case, seed: u64) -> Operands {
        let Case { m, n, k, pad, .. } = *case;
        let a = if case.trans_a {
            padded(&fill(m * k, seed), k, m, pad)
        } else {
            padded(&fill(m * k, seed), m, k, pad)
        };
        let b = if case.b_col_major {
            padded(&fill(k * n, seed + 1), n, k, pad)
        } else {
            padded(&fill(k * n, seed + 1), k, n, pad)
        };
        let (rs, cs, len) = c_strides(case);
        let mut c0 = vec![C_PAD; len];
        for (idx, v) in fill(m * n, seed + 2).into_iter().enumerate() {
            c0[(idx / n) * rs + (idx % n) * cs] = v;
        }
        let bias = fill(n, seed + 3).iter().map(|v| 4.0 * v).collect();
        Operands { a, b, c0, bias }
    }

    fn a(&self, case: &Case) -> MatRef<'_> {
        let Case { m, k, pad, .. } = *case;
        if case.trans_a {
            MatRef::new(&self.a, k, m, m + pad, 1).unwrap().t()
        } else {
            MatRef::new(&self.a, m, k, k + pad, 1).unwrap()
        }
    }

    fn b(&self, case: &Case) -> MatRef<'_> {
        let Case { n, k, pad, .. } = *case;
        if case.b_col_major {
            MatRef::new(&self.b, n, k, k + pad, 1).unwrap().t()
        } else {
            MatRef::new(&self.b, k, n, n + pad, 1).unwrap()
        }
    }

    fn bias(&self, case: &Case) -> Option<&[f32]> {
        case.bias.then_some(&self.bias[..])
    }

    /// C before the call: C0, or NaN inside the view when beta == 0 (C is write-only).
    fn c_before(&self, case: &Case) -> Vec<f32> {
        let mut c = self.c0.clone();
        if case.beta == 0.0 {
            let (rs, cs, _) = c_strides(case);
            for i in 0..case.m {
                for j in 0..case.n {
                    c[i * rs + j * cs] = f32::NAN;
                }
            }
        }
        c
    }

    /// C from `driver::gemm_fused` with B as given.
    fn run(&self, ks: &KernelSet, threads: usize, case: &Case, b: BSource<'_>) -> Vec<f32> {
        let mut c = self.c_before(case);
        driver::gemm_fused(
            ks,
            threads,
            case.alpha,
            self.a(case),
            b,
            case.beta,
            self.bias(case),
            cview(&mut c, case),
        )
        .unwrap();
        c
    }
}

fn same_bits(x: &[f32], y: &[f32]) -> bool {
    x.len() == y.len() && x.iter().zip(y).all(|(a, b)| a.to_bits() == b.to_bits())
}

/// Runs `case` with B as a view and pre-packed on `ks` (each on every thread count given),
/// requires bit-identical C from all of them, and checks that C against the reference.
fn check(ks: &KernelSet, threads: &[usize], case: &Case, seed: u64) {
    let ops = Operands::new(case, seed);
    let packed = PackedB::pack_for(ks, ops.b(case)).unwrap();
    assert_eq!((packed.rows(), packed.cols()), (case.k, case.n));
    let got = ops.run(ks, threads[0], case, BSource::View(ops.b(case)));
    let ctx = format!(
        "{:?} mr={} nr={} kc={} nc={} direct_a_max_n={}: {case:?}",
        ks.isa, ks.mr, ks.nr, ks.kc, ks.nc, ks.direct_a_max_n
    );
    for &t in threads {
        let view = ops.run(ks, t, case, BSource::View(ops.b(case)));
        let pre = ops.run(ks, t, case, BSource::Packed(&packed));
        assert!(
            same_bits(&view, &got),
            "{ctx}: view B, {t} threads vs {}",
            threads[0]
        );
        assert!(
            same_bits(&pre, &got),
            "{ctx}: packed B, {t} threads vs view B"
        );
    }

    if case.beta == 0.0 {
        // Into uninitialized row-major memory: the same values, bit for bit.
        let (len, want) = (case.m * case.n, interior(&got, case));
        for b in [BSource::View(ops.b(case)), BSource::Packed(&packed)] {
            let (a, bias) = (ops.a(case), ops.bias(case));
            let mut c: Vec<f32> = Vec::with_capacity(len);
            let spare = &mut c.spare_capacity_mut()[..len];
            driver::gemm_fused_uninit(ks, threads[0], case.alpha, a, b, bias, spare).unwrap();
            // SAFETY: on Ok, all `len` values were initialized.
            unsafe { c.set_len(len) };
            assert!(same_bits(&c, &want), "{ctx}: uninitialized C");
        }
    }

    if !case.bias {
        // Without a bias, the fused entry point is the plain GEMM, bit for bit.
        let mut plain = ops.c_before(case);
        let cv = cview(&mut plain, case);
        driver::gemm(ks, 1, case.alpha, ops.a(case), ops.b(case), case.beta, cv);
        assert!(same_bits(&plain, &got), "{ctx}: driver::gemm vs view B");
    }

    let mut want = ops.c0.clone();
    sgemm_bias_ref(
        case.alpha,
        ops.a(case),
        ops.b(case),
        case.beta,
        ops.bias(case),
        cview(&mut want, case),
    );
    // The size of the summed terms, from the reference on absolute values.
    let abs = |v: &[f32]| v.iter().map(|x| x.abs()).collect::<Vec<f32>>();
    let (a_abs, b_abs, bias_abs) = (abs(&ops.a), abs(&ops.b), abs(&ops.bias));
    let mut scale = abs(&ops.c0);
    sgemm_bias_ref(
        case.alpha.abs(),
        ops.a(case).with_data(&a_abs).unwrap(),
        ops.b(case).with_data(&b_abs).unwrap(),
        case.beta.abs(),
        case.bias.then_some(&bias_abs[..]),
        cview(&mut scale, case),
    );
    let untouched = got
        .iter()
        .zip(&ops.c0)
        .filter(|&(_, &c)| c == C_PAD)
        .all(|(&g, _)| g == C_PAD);
    let (got, want, scale) = (
        interior(&got, case),
        interior(&want, case),
        interior(&scale, case),
    );
    assert!(untouched, "{ctx}: C's padding was written");
    Compare::new(&got, &want)
        .shape(&[case.m, case.n])
        .scale(&scale)
        .context(&ctx)
        .assert(&REL_FROB);
}

/// Each supported ISA as shipped, with A always packed, and with tiny blocks (K = 17 spans
/// three KC blocks, N = 2 NR + 1 two NC blocks) reading A in place; the portable kernels with
/// odd tiles.
fn kernel_sets() -> Vec<KernelSet> {
    let mut sets = Vec::new();
    for isa in Isa::available() {
        let ks = KernelSet::for_isa(isa).unwrap();
        sets.push(ks);
        sets.push(
            ks.with_blocking(2 * ks.mr, 7, 2 * ks.nr)
                .with_direct_a_max_n(0),
        );
        sets.push(
            ks.with_blocking(2 * ks.mr, 7, 2 * ks.nr)
                .with_direct_a_max_n(usize::MAX),
        );
    }
    sets.push(KernelSet::portable::<3, 5>());
    sets.push(
        KernelSet::portable::<1, 1>()
            .with_blocking(2, 3, 2)
            .with_direct_a_max_n(usize::MAX),
    );
    sets
}

/// (alpha, beta): overwrite, accumulate, scale.
const SCALES: [(f32, f32); 4] = [(1.0, 0.0), (-0.75, 1.0), (1.5, 0.5), (1.0, 1.0)];

fn edge_sizes(tile: usize) -> Vec<usize> {
    let mut v = vec![
        1,
        2,
        tile.saturating_sub(1).max(1),
        tile,
        tile + 1,
        2 * tile + 1,
    ];
    v.sort_unstable();
    v.dedup();
    v
}

#[test]
fn tile_edges_packed_and_bias() {
    for ks in kernel_sets() {
        for (x, &m) in edge_sizes(ks.mr).iter().enumerate() {
            for (y, &n) in edge_sizes(ks.nr).iter().enumerate() {
                for (z, &k) in [1, 2, 17].iter().enumerate() {
                    for b_col_major in [false, true] {
                        let (alpha, beta) = SCALES[(x + y + z) % SCALES.len()];
                        let case = Case {
                            m,
                            n,
                            k,
                            trans_a: (x + z) % 2 == 1,
                            b_col_major,
                            c_col_major: (x + y + z) % 3 == 0,
                            alpha,
                            beta,
                            bias: !(x + y + z + b_col_major as usize).is_multiple_of(4),
                            pad: (y + z) % 3,
                        };
                        check(&ks, &[1], &case, (m * 1000 + n * 10 + k) as u64);
                    }
                }
            }
        }
    }
}

/// The shipped blockings with K over two KC blocks and N over an NC block; M of at most one
/// tile height packs B one panel at a time (both layouts of B), taller M packs whole blocks.
#[test]
fn deep_k_and_wide_n_shipped_blocking() {
    for isa in Isa::available() {
        let ks = KernelSet::for_isa(isa).unwrap();
        let (k, n) = (2 * ks.kc + 3, ks.nc + ks.nr + 1);
        let shapes = [
            (1, true),
            (1, false),
            (2, false),
            (ks.mr, true),
            (ks.mr + 1, false),
        ];
        for (m, b_col_major) in shapes {
            let case = Case {
                m,
                n,
                k,
                trans_a: false,
                b_col_major,
                c_col_major: false,
                alpha: 1.0,
                beta: 0.5,
                bias: true,
                pad: 1,
            };
            check(&ks, &[1], &case, 5);
        }
    }
}

/// Batch-1 products with a row-major B view sweep B's rows (where the kernel set has that
/// kernel) instead of packing it: the same bits as the micro-kernel on packed panels, across
/// its column chunks, with a last panel narrow enough to be left to the edge tiles, K blocks
/// and remainders of the 4-row depth step, A transposed or not, alpha/beta/bias variants, and 1
/// to 3 threads; then the reference check.
#[test]
fn row_sweep_gives_the_micro_kernel_bits() {
    for isa in Isa::available() {
        let shipped = KernelSet::for_isa(isa).unwrap();
        for ks in [
            shipped,
            shipped.with_blocking(shipped.mr, 7, 2 * shipped.nr),
        ] {
            let plain = ks.without_rows_kernel();
            for m in 1..=4 {
                for (x, &(n, k)) in [(1, 5), (35, 9), (3 * 32 + 3, 30), (600, 258), (1100, 1)]
                    .iter()
                    .enumerate()
                {
                    // Betas that are not powers of two: `beta * C` then rounds, so a fused
                    // and a separate `+ beta * C` differ.
                    let (alpha, beta) =
                        [(1.0, 0.0), (-0.75, 0.3), (1.5, 1.0), (0.7, -1.3)][(x + m) % 4];
                    let case = Case {
                        m,
                        n,
                        k,
                        trans_a: (x + m) % 2 == 1,
                        b_col_major: false,
                        c_col_major: false,
                        alpha,
                        beta,
                        bias: (x + m) % 3 != 0,
                        pad: x % 2,
                    };
                    let ops = Operands::new(&case, (m * 7 + x) as u64);
                    let want = ops.run(&plain, 1, &case, BSource::View(ops.b(&case)));
                    for threads in 1..=3 {
                        let got = ops.run(&ks, threads, &case, BSource::View(ops.b(&case)));
                        assert!(
                            same_bits(&got, &want),
                            "{isa:?} kc={} {threads} threads: {case:?}",
                            ks.kc
                        );
                    }
                    check(&ks, &[1], &case, (m * 7 + x) as u64);
                }
            }
        }
    }
}

/// One, two and three threads give the same bits, splitting N (thread ranges straddle the tiny
/// NC blocks of the packed B) or M, with A packed and in place.
#[test]
fn thread_counts_agree() {
    for isa in Isa::available() {
        let base = KernelSet::for_isa(isa).unwrap();
        let tiny = base.with_blocking(2 * base.mr, 7, 2 * base.nr);
        for ks in [base, tiny, tiny.with_direct_a_max_n(usize::MAX)] {
            for (m, n, k) in [(24, 10 * ks.nr + 3, 96), (300, 40, 70), (7, 500, 64)] {
                for (bias, beta) in [(true, 0.0), (false, 1.0), (true, 0.5)] {
                    let case = Case {
                        m,
                        n,
                        k,
                        trans_a: false,
                        b_col_major: true,
                        c_col_major: false,
                        alpha: 1.0,
                        beta,
                        bias,
                        pad: 0,
                    };
                    assert!(m * n * k >= 1 << 17, "too small to be split");
                    check(&ks, &[1, 2, 3], &case, 17);
                }
            }
        }
    }
}

proptest! {
    // PROPTEST_CASES, when set, wins (qemu runs use fewer cases).
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(32),
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_shapes_packed_and_bias(
        m in 1usize..70, n in 1usize..150, k in 1usize..80,
        trans_a: bool, b_col_major: bool, c_col_major: bool, bias: bool,
        alpha in prop::sample::select(vec![1.0f32, -0.75, 3.0]),
        beta in prop::sample::select(vec![0.0f32, 1.0, 0.5]),
        pad in 0usize..3,
        seed: u64,
    ) {
        let case = Case { m, n, k, trans_a, b_col_major, c_col_major, alpha, beta, bias, pad };
        for ks in kernel_sets() {
            check(&ks, &[1], &case, seed);
        }
    }
}

fn opts(isa: Isa) -> GemmOptions {
    GemmOptions {
        isa: Some(isa),
        threads: Some(1),
    }
}

/// `repack` into a buffer that held another B (larger, smaller, with and without a partial
/// panel, transposed) gives the same products, bit for bit, as a fresh `pack`: no stale panel or
/// padding from the earlier B leaks into the new one.
#[test]
fn repack_reuses_storage_and_matches_a_fresh_pack() {
    for isa in Isa::available() {
        let o = opts(isa);
        let mut reused =
            PackedB::pack(MatRef::row_major(&fill(70 * 90, 1), 70, 90).unwrap(), &o).unwrap();
        // (k, n, transposed): smaller, partial last panel, transposed, larger again.
        for (step, &(k, n, t)) in [
            (33, 17, false),
            (64, 65, true),
            (5, 1, false),
            (300, 97, true),
        ]
        .iter()
        .enumerate()
        {
            let data = fill(k * n, 10 + step as u64);
            let b = if t {
                MatRef::row_major(&data, n, k).unwrap().t()
            } else {
                MatRef::row_major(&data, k, n).unwrap()
            };
            reused.repack(b, &o).unwrap();
            assert_eq!((reused.rows(), reused.cols(), reused.isa()), (k, n, isa));
            let fresh = PackedB::pack(b, &o).unwrap();
            let m = 13;
            let a_data = fill(m * k, 20 + step as u64);
            let a = MatRef::row_major(&a_data, m, k).unwrap();
            let run = |packed: &PackedB| {
                let mut c = vec![0f32; m * n];
                let cv = MatMut::row_major(&mut c, m, n).unwrap();
                sgemm_fused(&o, 1.0, a, BSource::Packed(packed), 0.0, None, cv).unwrap();
                c
            };
            assert!(
                same_bits(&run(&reused), &run(&fresh)),
                "{isa}: repacked {k}x{n} (transposed {t}) differs from a fresh pack"
            );
        }
    }
}

/// BLAS edges: m or n = 0 touches nothing; k = 0 gives `beta * C + bias`, and with beta = 0 the
/// NaN in C does not survive.
#[test]
fn empty_and_k0_shapes() {
    for isa in Isa::available() {
        let o = opts(isa);
        let e = MatRef::row_major(&[], 0, 2).unwrap();
        let packed = PackedB::pack(e, &o).unwrap();
        for b in [BSource::View(e), BSource::Packed(&packed)] {
            let a = MatRef::row_major(&[], 3, 0).unwrap();
            let mut c = vec![2.0f32, f32::NAN, 4.0, 1.0, 1.0, 1.0];
            let bias = [10.0f32, 20.0];
            let cv = MatMut::row_major(&mut c, 3, 2).unwrap();
            sgemm_fused(&o, 1.0, a, b, 0.5, Some(&bias), cv).unwrap();
            assert_eq!(c[0], 11.0);
            assert!(c[1].is_nan());
            assert_eq!(&c[2..], &[12.0, 20.5, 10.5, 20.5]);
            let cv = MatMut::row_major(&mut c, 3, 2).unwrap();
            sgemm_fused(&o, 1.0, a, b, 0.0, Some(&bias), cv).unwrap();
            assert_eq!(c, vec![10.0, 20.0, 10.0, 20.0, 10.0, 20.0]);
            let cv = MatMut::row_major(&mut c, 3, 2).unwrap();
            sgemm_fused(&o, 1.0, a, b, 0.0, None, cv).unwrap();
            assert_eq!(c, vec![0.0; 6]);
        }
        // m = 0 and n = 0: Ok, nothing touched.
        let ones = [1.0f32; 4];
        let b = MatRef::row_major(&ones, 2, 2).unwrap();
        let packed = PackedB::pack(b, &o).unwrap();
        let a0 = MatRef::row_major(&[], 0, 2).unwrap();
        let mut c: Vec<f32> = vec![];
        let cv = MatMut::row_major(&mut c, 0, 2).unwrap();
        sgemm_fused(
            &o,
            1.0,
            a0,
            BSource::Packed(&packed),
            0.0,
            Some(&[1.0, 2.0]),
            cv,
        )
        .unwrap();
        let b0 = MatRef::row_major(&[], 2, 0).unwrap();
        let packed0 = PackedB::pack(b0, &o).unwrap();
        let a = MatRef::row_major(&ones, 2, 2).unwrap();
        let cv = MatMut::row_major(&mut c, 2, 0).unwrap();
        sgemm_fused(&o, 1.0, a, BSource::Packed(&packed0), 0.0, Some(&[]), cv).unwrap();
    }
}

#[test]
fn mismatches_are_errors() {
    let best = Isa::best();
    let o = opts(best);
    let (a, b) = (fill(6, 1), fill(12, 2));
    let av = MatRef::row_major(&a, 2, 3).unwrap();
    let bv = MatRef::row_major(&b, 3, 4).unwrap();
    let packed = PackedB::pack(bv, &o).unwrap();
    assert_eq!(packed.isa(), best);
    let mut c = vec![0.0f32; 8];
    // Bias of the wrong length.
    for b in [BSource::View(bv), BSource::Packed(&packed)] {
        let cv = MatMut::row_major(&mut c, 2, 4).unwrap();
        let err = sgemm_fused(&o, 1.0, av, b, 0.0, Some(&[1.0; 3]), cv);
        assert!(matches!(err, Err(KernelError::ShapeMismatch(_))), "{err:?}");
    }
    // Inner dimensions: A is 2x3, packed B is 4x3.
    let packed_t = PackedB::pack(bv.t(), &o).unwrap();
    let cv = MatMut::row_major(&mut c, 2, 4).unwrap();
    let err = sgemm_fused(&o, 1.0, av, BSource::Packed(&packed_t), 0.0, None, cv);
    assert!(matches!(err, Err(KernelError::ShapeMismatch(_))), "{err:?}");
    // C of the wrong width; an uninitialized C of the wrong length; a bias of the wrong length
    // into uninitialized C.
    let cv = MatMut::row_major(&mut c, 2, 3).unwrap();
    let err = sgemm_fused(&o, 1.0, av, BSource::Packed(&packed), 0.0, None, cv);
    assert!(matches!(err, Err(KernelError::ShapeMismatch(_))), "{err:?}");
    let mut spare: Vec<f32> = Vec::with_capacity(9);
    for (len, bias) in [(7, None), (9, None), (8, Some(&[1.0f32; 3][..]))] {
        let out = &mut spare.spare_capacity_mut()[..len];
        let err = sgemm_fused_uninit(&o, 1.0, av, BSource::Packed(&packed), bias, out);
        assert!(
            matches!(err, Err(KernelError::ShapeMismatch(_))),
            "{len}: {err:?}"
        );
    }
    // Packed for another ISA.
    if best != Isa::Scalar {
        let scalar = PackedB::pack(bv, &opts(Isa::Scalar)).unwrap();
        let cv = MatMut::row_major(&mut c, 2, 4).unwrap();
        let err = sgemm_fused(&o, 1.0, av, BSource::Packed(&scalar), 0.0, None, cv);
        assert!(
            matches!(err, Err(KernelError::PackedMismatch(_))),
            "{err:?}"
        );
    }
    // Packed with another blocking (KC) for the same ISA.
    let ks = KernelSet::for_isa(best).unwrap();
    let other = PackedB::pack_for(&ks.with_blocking(ks.mc, 7, ks.nc), bv).unwrap();
    let cv = MatMut::row_major(&mut c, 2, 4).unwrap();
    let err = driver::gemm_fused(&ks, 1, 1.0, av, BSource::Packed(&other), 0.0, None, cv);
    let Err(KernelError::PackedMismatch(msg)) = err else {
        panic!("expected a PackedMismatch, got {err:?}");
    };
    assert!(msg.contains("KC = 7"), "{msg}");
    // An unsupported ISA cannot be packed for.
    if let Some(isa) = Isa::ALL.into_iter().find(|isa| !isa.is_supported()) {
        let err = PackedB::pack(bv, &opts(isa)).unwrap_err();
        assert_eq!(err, KernelError::UnsupportedIsa(isa.name()));
    }
    assert_eq!(c, vec![0.0; 8], "a rejected call wrote C");
}

/// The default path (no ISA, default threads) through the crate-root API, and a cloned PackedB.
#[test]
fn default_options_and_clone() {
    fn traits<T: Send + Sync + Clone + std::fmt::Debug>() {}
    traits::<PackedB>();
    let (m, k, n) = (33, 70, 45);
    let (a, w, bias) = (fill(m * k, 1), fill(n * k, 2), fill(n, 3));
    let av = MatRef::row_major(&a, m, k).unwrap();
    let wt = MatRef::row_major(&w, n, k).unwrap().t(); // a Linear layer's W^T
    let o = GemmOptions::default();
    let packed = PackedB::pack(wt, &o).unwrap().clone();
    assert!(format!("{packed:?}").contains("PackedB"));
    let mut fused = vec![f32::NAN; m * n];
    let cv = MatMut::row_major(&mut fused, m, n).unwrap();
    sgemm_fused(&o, 1.0, av, BSource::Packed(&packed), 0.0, Some(&bias), cv).unwrap();
    let mut want = vec![0.0f32; m * n];
    let cv = MatMut::row_major(&mut want, m, n).unwrap();
    sgemm_bias_ref(1.0, av, wt, 0.0, Some(&bias), cv);
    for (g, w) in fused.iter().zip(&want) {
        assert!((g - w).abs() <= 1e-4 * (1.0 + w.abs()), "{g} vs {w}");
    }
}
