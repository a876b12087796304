//! Every int8 GEMM path this machine supports (plus the portable kernels with odd tiles)
//! against the exact scalar reference: bit-identical i32 sums over shapes on every tile edge,
//! K not a multiple of any group width, M or N = 1, primes, all-±127 operands (the saturation
//! case), any thread count; the fused epilogues against f64 math on the same sums; quantize /
//! dequantize round trips; and every caller mistake as an error.

use lithe_check::{Exact, fill_i8};
use lithe_kernels::gelu::GeluKind;
use lithe_kernels::gemm_i8::{Activation, Dequant, I8Kernels, Scale};
use lithe_kernels::reference::{dequant_f64, gemm_i8_ref, quantize_ref};
use lithe_kernels::{
    I8GemmOptions, I8Isa, KernelError, PackedI8B, gemm_i8, gemm_i8_dequant, gemm_i8_requant,
};
use proptest::prelude::*;

/// Deterministic operands in [-127, 127] (the symmetric range quantization produces), with
/// the extremes sprinkled in.
fn fill(len: usize, seed: u64) -> Vec<i8> {
    fill_i8(len, seed)
        .into_iter()
        .map(|v| v.max(-127))
        .collect()
}

/// Every kernel table worth testing: each supported path as shipped, the same with a tiny L2
/// block (many B blocks) and without its skinny kernel (small M through the tile kernel), and
/// the portable kernels with odd tiles.
fn kernel_sets() -> Vec<I8Kernels> {
    let mut sets = Vec::new();
    for isa in I8Isa::available() {
        let ks = I8Kernels::for_isa(isa).unwrap();
        sets.push(ks);
        sets.push(ks.with_b_block_bytes(1).without_skinny());
    }
    sets.push(I8Kernels::portable::<3, 5>());
    sets.push(I8Kernels::portable::<1, 1>().without_skinny());
    sets
}

fn opts(ks: &I8Kernels, threads: usize) -> I8GemmOptions {
    I8GemmOptions {
        threads: Some(threads),
        kernels: Some(*ks),
    }
}

/// Runs `m x k` A (row stride `lda`) against `n x k` B on `ks` and checks every sum exactly.
#[allow(clippy::too_many_arguments)]
fn check_exact(
    ks: &I8Kernels,
    threads: usize,
    m: usize,
    n: usize,
    k: usize,
    a: &[i8],
    lda: usize,
    b: &[i8],
) {
    let packed = PackedI8B::pack_for(b, n, k, ks).unwrap();
    let ldc = n + (m % 3);
    let mut want = vec![0i32; m.max(1) * ldc];
    let mut got = vec![i32::MIN; m.max(1) * ldc];
    gemm_i8_ref(a, lda, b, k, m, n, k, &mut want, ldc);
    gemm_i8(a, lda, m, &packed, &mut got, ldc, &opts(ks, threads)).unwrap();
    // C with row stride ldc, as [m, ldc]: the padding columns of `want` are 0, of `got`
    // untouched, so compare the interiors.
    let interior = |c: &[i32]| -> Vec<i32> {
        (0..m)
            .flat_map(|i| c[i * ldc..i * ldc + n].to_vec())
            .collect()
    };
    Exact::new(&interior(&got), &interior(&want))
        .shape(&[m, n])
        .context(format_args!(
            "{} mr={} nr={} threads={threads}: m={m} n={n} k={k} lda={lda}",
            ks.isa, ks.mr, ks.nr
        ))
        .assert();
    for i in 0..m {
        // Padding between rows of C is never written.
        assert!(
            got[i * ldc + n..(i + 1) * ldc]
                .iter()
                .all(|&v| v == i32::MIN)
        );
    }
}

fn check_case(ks: &I8Kernels, threads: usize, m: usize, n: usize, k: usize, seed: u64) {
    let lda = k + (seed % 3) as usize;
    let a = fill(m * lda, seed);
    let b = fill(n * k, seed + 1);
    check_exact(ks, threads, m, n, k, &a, lda, &b);
}

/// Sizes just below, at and above a tile edge, plus 1, primes and half tiles (a last panel
/// that only partly fills the tile takes a narrower kernel on some paths).
fn edge_sizes(tile: usize) -> Vec<usize> {
    let mut v = vec![
        1,
        2,
        3,
        (tile / 2).max(1),
        tile.saturating_sub(1).max(1),
        tile,
        tile + 1,
        tile + tile / 2,
        2 * tile + 1,
        37,
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
                for &k in &[1, 3, 4, 5, 16, 17, 63, 65, 131] {
                    check_case(&ks, 1, m, n, k, (m * 1000 + n * 10 + k) as u64);
                }
            }
        }
    }
}

#[test]
fn saturation_all_plus_minus_127() {
    // Every product is ±16129 and every pair of products ±32258: the case that overflows a
    // saturating i16 pair sum when an operand is -128 or unsigned, and the largest sums.
    for ks in kernel_sets() {
        for (av, bv) in [(127i8, 127i8), (-127, -127), (127, -127), (-127, 127)] {
            for (m, n, k) in [(1, 1, 1), (ks.mr + 1, ks.nr + 1, 1027), (3, 70, 4096)] {
                let a = vec![av; m * k];
                let b = vec![bv; n * k];
                check_exact(&ks, 1, m, n, k, &a, k, &b);
            }
        }
        // Alternating signs within each pair, so sign handling per element is exercised.
        let (m, n, k) = (ks.mr + 2, ks.nr + 3, 515);
        let a: Vec<i8> = (0..m * k)
            .map(|i| if i % 2 == 0 { 127 } else { -127 })
            .collect();
        let b: Vec<i8> = (0..n * k)
            .map(|i| if i % 3 == 0 { -127 } else { 127 })
            .collect();
        check_exact(&ks, 1, m, n, k, &a, k, &b);
    }
}

#[test]
fn results_identical_for_any_thread_count() {
    for isa in I8Isa::available() {
        let ks = I8Kernels::for_isa(isa).unwrap();
        for (m, n, k) in [
            (200, 37, 64),
            (37, 300, 64),
            (129, 129, 129),
            (1, 1000, 96),
            (300, 48, 40),
        ] {
            let (a, b) = (fill(m * k, 5), fill(n * k, 6));
            let packed = PackedI8B::pack_for(&b, n, k, &ks).unwrap();
            let mut first = vec![0i32; m * n];
            gemm_i8(&a, k, m, &packed, &mut first, n, &opts(&ks, 1)).unwrap();
            let mut want = vec![0i32; m * n];
            gemm_i8_ref(&a, k, &b, k, m, n, k, &mut want, n);
            Exact::new(&first, &want)
                .shape(&[m, n])
                .context(format_args!("{isa}: m={m} n={n} k={k}"))
                .assert();
            for threads in [2, 3, 4] {
                let mut got = vec![0i32; m * n];
                gemm_i8(&a, k, m, &packed, &mut got, n, &opts(&ks, threads)).unwrap();
                Exact::new(&got, &first)
                    .shape(&[m, n])
                    .context(format_args!("{isa}: threads={threads} m={m} n={n} k={k}"))
                    .assert();
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
    fn random_shapes_every_path(
        m in 1usize..40, n in 1usize..110, k in 1usize..300, seed: u64, threads in 1usize..3,
    ) {
        for ks in kernel_sets() {
            check_case(&ks, threads, m, n, k, seed);
        }
    }

    /// Random values from the whole range, including many extremes.
    #[test]
    fn random_values_every_path(
        m in 1usize..20, n in 1usize..70, k in 1usize..200,
        vals in prop::collection::vec(prop_oneof![Just(127i8), Just(-127i8), -127i8..=127], 64),
        seed: usize,
    ) {
        let pick = |len: usize, off: usize| -> Vec<i8> {
            (0..len).map(|i| vals[(i * 7 + off + seed) % vals.len()]).collect()
        };
        let (a, b) = (pick(m * k, 0), pick(n * k, 13));
        for ks in kernel_sets() {
            check_exact(&ks, 1, m, n, k, &a, k, &b);
        }
    }
}

/// Scales, bias and sums for the epilogue tests.
struct EpilogueCase {
    a: Vec<i8>,
    b: Vec<i8>,
    a_scales: Vec<f32>,
    w_scales: Vec<f32>,
    bias: Vec<f32>,
    sums: Vec<i32>,
}

fn epilogue_case(m: usize, n: usize, k: usize, seed: u64) -> EpilogueCase {
    let (a, b) = (fill(m * k, seed), fill(n * k, seed + 1));
    let a_scales = (0..m).map(|i| 0.003 + 0.0007 * (i % 13) as f32).collect();
    let w_scales = (0..n).map(|j| 0.01 / (1.0 + (j % 7) as f32)).collect();
    let bias = (0..n).map(|j| ((j % 11) as f32 - 5.0) * 0.37).collect();
    let mut sums = vec![0; m * n];
    gemm_i8_ref(&a, k, &b, k, m, n, k, &mut sums, n);
    EpilogueCase {
        a,
        b,
        a_scales,
        w_scales,
        bias,
        sums,
    }
}

#[test]
fn dequant_epilogue_matches_f64_on_the_same_sums() {
    for ks in kernel_sets() {
        for (m, n, k) in [(1, 50, 77), (ks.mr + 1, 2 * ks.nr + 3, 130), (9, 1, 5)] {
            let c = epilogue_case(m, n, k, 3);
            let packed = PackedI8B::pack_for(&c.b, n, k, &ks).unwrap();
            for per_row in [false, true] {
                for with_bias in [false, true] {
                    for act in [
                        Activation::None,
                        Activation::Gelu(GeluKind::Erf),
                        Activation::Gelu(GeluKind::Tanh),
                    ] {
                        let a_scale = if per_row {
                            Scale::PerRow(&c.a_scales)
                        } else {
                            Scale::PerTensor(0.0123)
                        };
                        let dq = Dequant {
                            a_scale,
                            w_scales: &c.w_scales,
                            bias: with_bias.then_some(&c.bias[..]),
                            act,
                        };
                        let mut out = vec![f32::NAN; m * n];
                        gemm_i8_dequant(&c.a, k, m, &packed, &dq, &mut out, n, &opts(&ks, 1))
                            .unwrap();
                        for i in 0..m {
                            for j in 0..n {
                                let (sa, sw) = (a_scale.of_row(i), c.w_scales[j]);
                                let b = if with_bias { c.bias[j] } else { 0.0 };
                                let acc = c.sums[i * n + j];
                                let want = dequant_f64(acc, sa, sw, b, act);
                                // Relative to the size of the summed terms (the bias may cancel the
                                // product); GELU adds its own kernel's 1e-5 relative error and passes
                                // the pre-activation error through a slope of at most 1.13.
                                let terms =
                                    (sa as f64 * sw as f64 * acc as f64).abs() + (b as f64).abs();
                                let bound = match act {
                                    Activation::None => 1e-6 * terms,
                                    Activation::Gelu(_) => {
                                        1.13e-6 * terms + 1e-5 * want.abs() + 1e-15
                                    }
                                };
                                let got = out[i * n + j] as f64;
                                assert!(
                                    (got - want).abs() <= bound,
                                    "{} {act:?} per_row={per_row}: ({i}, {j}) got {got} want {want}",
                                    ks.isa
                                );
                            }
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn requant_epilogue_rounds_half_to_even_and_clamps() {
    for ks in kernel_sets() {
        let (m, n, k) = (ks.mr + 2, ks.nr + 5, 97);
        let c = epilogue_case(m, n, k, 9);
        let packed = PackedI8B::pack_for(&c.b, n, k, &ks).unwrap();
        let dq = Dequant {
            a_scale: Scale::PerRow(&c.a_scales),
            w_scales: &c.w_scales,
            bias: Some(&c.bias),
            act: Activation::Gelu(GeluKind::Erf),
        };
        for out_scale in [0.05f32, 0.004] {
            let mut out = vec![0i8; m * n];
            gemm_i8_requant(
                &c.a,
                k,
                m,
                &packed,
                &dq,
                out_scale,
                &mut out,
                n,
                &opts(&ks, 2),
            )
            .unwrap();
            let mut clamped = 0;
            for i in 0..m {
                for j in 0..n {
                    let y = dequant_f64(
                        c.sums[i * n + j],
                        c.a_scales[i],
                        c.w_scales[j],
                        c.bias[j],
                        dq.act,
                    );
                    let x = y / out_scale as f64;
                    let q = out[i * n + j] as f64;
                    if x.abs() >= 127.0 {
                        clamped += 1;
                        assert_eq!(q, 127f64.copysign(x), "{}: clamp at ({i}, {j})", ks.isa);
                    } else {
                        // Rounded to the nearest integer; off by one only when x lies within the
                        // f32 epilogue's error of a rounding boundary.
                        let slack = 1.13e-6 * x.abs() + 1e-5 * x.abs() + 1e-9;
                        assert!(
                            (q - x).abs() <= 0.5 + slack,
                            "{}: ({i}, {j}) q={q} x={x}",
                            ks.isa
                        );
                    }
                }
            }
            if out_scale < 0.01 {
                assert!(clamped > 0, "the small scale must exercise the clamp");
            }
        }
    }
}

#[test]
fn zero_depth_and_empty_shapes() {
    for ks in kernel_sets() {
        let packed = PackedI8B::pack_for(&[], 5, 0, &ks).unwrap();
        let mut c = vec![7i32; 3 * 5];
        gemm_i8(&[], 0, 3, &packed, &mut c, 5, &opts(&ks, 1)).unwrap();
        assert_eq!(c, vec![0; 15]);
        let packed = PackedI8B::pack_for(&[1, 2], 1, 2, &ks).unwrap();
        gemm_i8(&[], 2, 0, &packed, &mut [], 1, &opts(&ks, 1)).unwrap();
        let empty = PackedI8B::pack_for(&[], 0, 2, &ks).unwrap();
        gemm_i8(&[1, 2], 2, 1, &empty, &mut [], 0, &opts(&ks, 1)).unwrap();
    }
}

#[test]
fn caller_mistakes_are_errors() {
    let isa = I8Isa::best();
    let b = fill(4 * 8, 1);
    assert!(matches!(
        PackedI8B::pack(&b, 4, 7, isa),
        Err(KernelError::LengthMismatch(_))
    ));
    let mut bad = b.clone();
    bad[9] = -128;
    assert_eq!(
        PackedI8B::pack(&bad, 4, 8, isa).unwrap_err(),
        KernelError::I8OutOfRange {
            what: "B",
            index: 9
        }
    );
    let packed = PackedI8B::pack(&b, 4, 8, isa).unwrap();
    let a = fill(3 * 8, 2);
    let mut c = vec![0i32; 12];
    let o = I8GemmOptions::default();
    assert!(gemm_i8(&a, 8, 3, &packed, &mut c, 4, &o).is_ok());
    // A too short, lda < K, C too short, ldc < N.
    assert!(matches!(
        gemm_i8(&a[..23], 8, 3, &packed, &mut c, 4, &o),
        Err(KernelError::LengthMismatch(_))
    ));
    assert!(matches!(
        gemm_i8(&a, 7, 3, &packed, &mut c, 4, &o),
        Err(KernelError::ShapeMismatch(_))
    ));
    assert!(matches!(
        gemm_i8(&a, 8, 3, &packed, &mut c[..11], 4, &o),
        Err(KernelError::LengthMismatch(_))
    ));
    assert!(matches!(
        gemm_i8(&a, 8, 3, &packed, &mut c, 3, &o),
        Err(KernelError::ShapeMismatch(_))
    ));
    // -128 in A.
    let mut bad_a = a.clone();
    bad_a[8 + 5] = -128;
    assert_eq!(
        gemm_i8(&bad_a, 8, 3, &packed, &mut c, 4, &o).unwrap_err(),
        KernelError::I8OutOfRange {
            what: "A",
            index: 13
        }
    );
    // ... and deep in a long row, where the scan runs its vector loop.
    let long = 200;
    let packed_long = PackedI8B::pack(&fill(4 * long, 3), 4, long, isa).unwrap();
    let mut long_a = fill(2 * long, 4);
    long_a[long + 150] = -128;
    assert_eq!(
        gemm_i8(&long_a, long, 2, &packed_long, &mut c[..8], 4, &o).unwrap_err(),
        KernelError::I8OutOfRange {
            what: "A",
            index: long + 150
        }
    );
    // Weights packed for another kernel table.
    let other = I8Kernels::portable::<3, 5>();
    let err = gemm_i8(&a, 8, 3, &packed, &mut c, 4, &opts(&other, 1)).unwrap_err();
    assert!(
        matches!(err, KernelError::PackedForOtherIsa { .. }),
        "{err}"
    );
    // Epilogue arguments.
    let w = [0.1f32; 4];
    let dq = |a_scale, w_scales, bias| Dequant {
        a_scale,
        w_scales,
        bias,
        act: Activation::None,
    };
    let mut out = vec![0.0f32; 12];
    let run = |d: &Dequant<'_>, out: &mut [f32]| gemm_i8_dequant(&a, 8, 3, &packed, d, out, 4, &o);
    assert!(run(&dq(Scale::PerTensor(0.1), &w, None), &mut out).is_ok());
    assert!(run(&dq(Scale::PerTensor(0.1), &w[..3], None), &mut out).is_err());
    assert!(run(&dq(Scale::PerTensor(0.1), &w, Some(&w[..2])), &mut out).is_err());
    assert!(run(&dq(Scale::PerRow(&w[..2]), &w, None), &mut out).is_err());
    let mut q = vec![0i8; 12];
    for bad_scale in [0.0f32, -1.0, f32::NAN, f32::INFINITY] {
        assert!(matches!(
            gemm_i8_requant(
                &a,
                8,
                3,
                &packed,
                &dq(Scale::PerTensor(0.1), &w, None),
                bad_scale,
                &mut q,
                4,
                &o
            ),
            Err(KernelError::InvalidValue(_))
        ));
    }
    // Unsupported path.
    if let Some(missing) = I8Isa::ALL.into_iter().find(|p| !p.is_supported()) {
        assert_eq!(
            PackedI8B::pack(&b, 4, 8, missing).unwrap_err(),
            KernelError::UnsupportedIsa(missing.name())
        );
    }
}

mod quantize {
    use super::*;
    use lithe_kernels::quantize::{
        dequantize_per_row, dequantize_per_tensor, quantize_per_row, quantize_per_tensor,
    };

    #[test]
    fn round_half_to_even_and_clamp() {
        let x = [
            0.5f32, 1.5, 2.5, -0.5, -1.5, -2.5, 126.5, 127.5, 1e6, -1e6, 0.49999997, -0.0,
        ];
        let want = [0i8, 2, 2, 0, -2, -2, 126, 127, 127, -127, 0, 0];
        let mut q = [0i8; 12];
        quantize_per_tensor(&x, 1.0, &mut q).unwrap();
        assert_eq!(q, want);
        // Long enough for the vector body, with the same cases in the tail.
        let xs: Vec<f32> = x.iter().cycle().take(12 * 9 + 5).copied().collect();
        let mut qs = vec![0i8; xs.len()];
        quantize_per_tensor(&xs, 0.5, &mut qs).unwrap();
        for (&v, &q) in xs.iter().zip(&qs) {
            assert_eq!(q, quantize_ref(v, 0.5), "{v}");
        }
    }

    proptest! {
        /// Per-row dynamic scales: the round trip is within scale / 2 of the input, plus the two
        /// f32 roundings on the way (the quotient x / s and the product q * s, each at most half
        /// an ulp of |x|; the bound allows 2^-22 |x|).
        #[test]
        fn quantize_dequantize_within_half_a_step(
            rows in 1usize..6, cols in 1usize..100,
            vals in prop::collection::vec(-1e3f32..1e3, 600),
        ) {
            let x: Vec<f32> = vals[..rows * cols].to_vec();
            let mut q = vec![0i8; x.len()];
            let mut s = vec![0.0f32; rows];
            quantize_per_row(&x, cols, &mut q, &mut s).unwrap();
            let mut back = vec![0.0f32; x.len()];
            dequantize_per_row(&q, cols, &s, &mut back).unwrap();
            for (r, ((xr, qr), br)) in x.chunks(cols).zip(q.chunks(cols)).zip(back.chunks(cols)).enumerate() {
                let max = xr.iter().fold(0.0f32, |m, v| m.max(v.abs()));
                prop_assert_eq!(s[r], if max > 0.0 { max / 127.0 } else { 1.0 });
                for ((&xv, &qv), &bv) in xr.iter().zip(qr).zip(br) {
                    prop_assert_eq!(qv, quantize_ref(xv, s[r]));
                    let err = (bv as f64 - xv as f64).abs();
                    prop_assert!(err <= s[r] as f64 / 2.0 + (xv as f64).abs() * 2f64.powi(-22), "x={} q={} s={}", xv, qv, s[r]);
                }
            }
            let mut back_t = vec![0.0f32; x.len()];
            dequantize_per_tensor(&q, s[0], &mut back_t).unwrap();
            for (&qv, &bv) in q.iter().zip(&back_t) {
                prop_assert_eq!(bv, qv as f32 * s[0]);
            }
        }
    }

    #[test]
    fn zero_rows_and_bad_input() {
        let mut q = [5i8; 4];
        let mut s = [0.0f32; 2];
        quantize_per_row(&[0.0, -0.0, 3.0, -6.0], 2, &mut q, &mut s).unwrap();
        assert_eq!((q, s), ([0, 0, 64, -127], [1.0, 6.0 / 127.0]));
        assert!(matches!(
            quantize_per_tensor(&[1.0, f32::NAN], 1.0, &mut [0; 2]),
            Err(KernelError::InvalidValue(_))
        ));
        assert!(matches!(
            quantize_per_tensor(&[1.0], 0.0, &mut [0; 1]),
            Err(KernelError::InvalidValue(_))
        ));
        assert!(matches!(
            quantize_per_tensor(&[1.0], 1.0, &mut [0; 2]),
            Err(KernelError::LengthMismatch(_))
        ));
        assert!(quantize_per_row(&[1.0; 6], 4, &mut [0; 6], &mut [0.0; 2]).is_err());
        assert!(dequantize_per_row(&[1; 4], 2, &[1.0, -1.0], &mut [0.0; 4]).is_err());
        assert!(quantize_per_row(&[f32::INFINITY; 2], 2, &mut [0; 2], &mut [0.0; 1]).is_err());
    }
}

#[test]
fn lithe_isa_forces_the_int8_path() {
    eprintln!("int8 paths on this CPU: {:?}", I8Isa::available());
    if let Ok(Some(isa)) = I8Isa::from_env() {
        assert_eq!(I8Isa::active(), isa);
        let (a, b) = (fill(5 * 9, 1), fill(7 * 9, 2));
        let packed = PackedI8B::pack(&b, 7, 9, I8Isa::active()).unwrap();
        assert_eq!(packed.isa(), isa);
        let (mut got, mut want) = (vec![0; 35], vec![0; 35]);
        gemm_i8(&a, 9, 5, &packed, &mut got, 7, &I8GemmOptions::default()).unwrap();
        gemm_i8_ref(&a, 9, &b, 9, 5, 7, 9, &mut want, 7);
        assert_eq!(got, want);
    }
}

/// Cache-line aligned C with a row stride of whole lines: the case where kernels may store
/// full tiles straight into C (the AMX path does).
#[test]
fn aligned_output_rows() {
    #[derive(Clone, Copy)]
    #[repr(C, align(64))]
    struct Line([i32; 16]);
    let (m, n, k) = (96, 64, 200);
    let (a, b) = (fill(m * k, 21), fill(n * k, 22));
    let mut want = vec![0i32; m * n];
    gemm_i8_ref(&a, k, &b, k, m, n, k, &mut want, n);
    for ks in kernel_sets() {
        let packed = PackedI8B::pack_for(&b, n, k, &ks).unwrap();
        let mut lines = vec![Line([-1; 16]); m * n / 16];
        // SAFETY: `Line` is 16 i32s with no padding.
        let c = unsafe { std::slice::from_raw_parts_mut(lines.as_mut_ptr().cast::<i32>(), m * n) };
        gemm_i8(&a, k, m, &packed, c, n, &opts(&ks, 1)).unwrap();
        Exact::new(c, &want[..])
            .shape(&[m, n])
            .context(format_args!("{} mr={} nr={}", ks.isa, ks.mr, ks.nr))
            .assert();
    }
}

/// The AMX path hands the tile registers back after every call: XINUSE (`xgetbv(1)`) shows
/// neither the tile configuration (bit 17) nor the tile data (bit 18) in use on the calling
/// thread once a single-threaded GEMM returns.
#[cfg(target_arch = "x86_64")]
#[test]
fn amx_releases_the_tile_state_after_each_call() {
    if !I8Isa::available().contains(&I8Isa::Amx) {
        eprintln!("no AMX on this CPU: nothing to check");
        return;
    }
    /// XINUSE bits 17 and 18 of the calling thread.
    fn tiles_in_use() -> u64 {
        let (lo, hi): (u32, u32);
        // SAFETY: `xgetbv` with ECX = 1 is valid on every CPU with AMX (which implies XSAVE and
        // the XINUSE leaf).
        unsafe {
            std::arch::asm!("xgetbv", in("ecx") 1u32, out("eax") lo, out("edx") hi,
                options(nomem, nostack));
        }
        ((u64::from(hi) << 32 | u64::from(lo)) >> 17) & 3
    }
    let ks = I8Kernels::for_isa(I8Isa::Amx).unwrap();
    let (m, n, k) = (96, 80, 200);
    let (a, b) = (fill(m * k, 1), fill(n * k, 2));
    let packed = PackedI8B::pack(&b, n, k, I8Isa::Amx).unwrap();
    let mut c = vec![0i32; m * n];
    let mut expect = vec![0i32; m * n];
    gemm_i8_ref(&a, k, &b, k, m, n, k, &mut expect, n);
    for _ in 0..2 {
        gemm_i8(&a, k, m, &packed, &mut c, n, &opts(&ks, 1)).unwrap();
        assert_eq!(c, expect);
        assert_eq!(tiles_in_use(), 0, "tile state left loaded after the call");
    }
}
