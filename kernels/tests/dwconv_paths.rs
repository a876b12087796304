//! The depthwise convolution on every ISA path this machine runs, against the f64 reference,
//! and the reference's backward against central finite differences of its f64 forward.
//!
//! Each proptest case draws one problem and runs it through `Isa::available()` (AVX-512, AVX2,
//! NEON, portable: whatever the CPU has), so a failure names the path. Shapes: B in 0..=3; grid
//! sides from {1, 2, 3, 5, 7, 14} or random in 1..=16, square or not; C from
//! {1, 3, 7, 8, 15, 16, 17, 64, 65} (around the 4-, 8- and 16-lane vectors) or random; k in
//! {1, 3, 5, 7}, so grids smaller than the kernel occur (G = 1, 2 with k = 5, 7). Values: mostly
//! in [-5, 5], with +-80, tiny magnitudes (|x| < 1e-30) and negative zero mixed in.
//!
//! Accuracy bound: `|got - ref| <= RTOL * S` with RTOL = 1e-5, where `S` is the sum of the
//! absolute values of every term of that output's sum (bias or prior accumulator contents
//! included), computed by running the reference on absolute values. An f32 sum of n terms is off
//! by at most about `n * 6e-8 * S`; the largest forward sum here has 50 terms (k = 7), so 1e-5
//! leaves room only for rounding, not for a missing or doubled term. `dweight` sums up to
//! B*H*W = 768 products, whose worst case would exceed the bound but whose actual error is a
//! random walk (~`sqrt(n) * 6e-8 * S`).
//!
//! `PROPTEST_CASES` sets the case count (default 64).

use lithe_kernels::dwconv::{
    DwConvKernels, DwConvShape, dwconv_backward, dwconv_backward_with, dwconv_forward,
    dwconv_forward_with,
};
use lithe_kernels::reference as r;
use lithe_kernels::{Isa, KernelError};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// Relative tolerance (against the sum of |terms|) of every comparison with the reference.
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

/// A grid side: the ViT grids and the sizes around the 8/4/2/1 column tiles, or random.
fn side() -> impl Strategy<Value = usize> {
    prop_oneof![
        3 => prop::sample::select(vec![1usize, 2, 3, 5, 7, 14]),
        1 => 1usize..=16,
    ]
}

/// Shapes: B, (H, W) square or not, C around the vector widths, k in {1, 3, 5, 7}.
fn shape() -> impl Strategy<Value = DwConvShape> {
    let channels = prop_oneof![
        3 => prop::sample::select(vec![1usize, 3, 7, 8, 15, 16, 17, 64, 65]),
        1 => 1usize..80,
    ];
    let grid = prop_oneof![
        2 => side().prop_map(|g| (g, g)),
        1 => (side(), side()),
    ];
    (
        0usize..=3,
        grid,
        channels,
        prop::sample::select(vec![1usize, 3, 5, 7]),
    )
        .prop_map(|(batch, (height, width), channels, k)| DwConvShape {
            batch,
            height,
            width,
            channels,
            k,
        })
}

/// Values including the extremes the contract names.
fn value() -> impl Strategy<Value = f32> {
    prop_oneof![
        12 => -5.0f32..5.0,
        1 => Just(80.0f32),
        1 => Just(-80.0f32),
        1 => -1e-30f32..1e-30,
        1 => Just(-0.0f32),
    ]
}

fn values(n: usize) -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec(value(), n)
}

/// A forward problem: (shape, inp, weight, bias).
fn forward_problem() -> impl Strategy<Value = (DwConvShape, Vec<f32>, Vec<f32>, Vec<f32>)> {
    shape().prop_flat_map(|s| {
        (
            Just(s),
            values(s.activation_len().unwrap()),
            values(s.weight_len().unwrap()),
            values(s.channels),
        )
    })
}

/// A backward problem: the forward's (shape, inp, weight) plus dout and the prior contents of
/// dinp, dweight, dbias (the kernels accumulate).
#[allow(clippy::type_complexity)]
fn backward_problem() -> impl Strategy<
    Value = (
        DwConvShape,
        Vec<f32>,
        Vec<f32>,
        Vec<f32>,
        (Vec<f32>, Vec<f32>, Vec<f32>),
    ),
> {
    shape().prop_flat_map(|s| {
        let (na, nw) = (s.activation_len().unwrap(), s.weight_len().unwrap());
        (
            Just(s),
            values(na),
            values(nw),
            values(na),
            (values(na), values(nw), values(s.channels)),
        )
    })
}

fn abs(v: &[f32]) -> Vec<f32> {
    v.iter().map(|x| x.abs()).collect()
}

/// Checks `|got - want| <= RTOL * scale` element-wise (NaN where the reference has NaN).
fn check(
    what: &str,
    isa: Isa,
    s: &DwConvShape,
    got: &[f32],
    want: &[f32],
    scale: &[f32],
) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.len(), want.len());
    for (i, ((&g, &w), &sc)) in got.iter().zip(want).zip(scale).enumerate() {
        let (g, w) = (g as f64, w as f64);
        if w.is_nan() {
            prop_assert!(g.is_nan(), "{what} [{isa}] {s:?} at {i}: got {g}, want NaN");
            continue;
        }
        let bound = RTOL * sc as f64;
        prop_assert!(
            (g - w).abs() <= bound,
            "{what} [{isa}] {s:?} at {i}: got {g:e}, want {w:e}, |diff| = {:e} > bound {bound:e}",
            (g - w).abs()
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    /// Forward on every path: bound `1e-5 * (|bias| + sum |w * x|)`.
    #[test]
    fn forward_matches_reference((s, x, w, b) in forward_problem()) {
        let n = x.len();
        let mut want = vec![0.0; n];
        r::dwconv_forward_ref(&mut want, &x, &w, &b, s);
        let mut scale = vec![0.0; n];
        r::dwconv_forward_ref(&mut scale, &abs(&x), &abs(&w), &abs(&b), s);
        for isa in Isa::available() {
            let mut got = vec![f32::NAN; n];
            dwconv_forward_with(isa, &mut got, &x, &w, &b, s).unwrap();
            check("dwconv_forward", isa, &s, &got, &want, &scale)?;
        }
    }

    /// Backward on every path, accumulating onto random prior contents: each of dinp, dweight,
    /// dbias within `1e-5 * (|prior| + sum |terms|)`.
    #[test]
    fn backward_matches_reference((s, x, w, g, (dx0, dw0, db0)) in backward_problem()) {
        let (mut dx, mut dw, mut db) = (dx0.clone(), dw0.clone(), db0.clone());
        r::dwconv_backward_ref(&mut dx, &mut dw, &mut db, &g, &x, &w, s);
        let (mut sdx, mut sdw, mut sdb) = (abs(&dx0), abs(&dw0), abs(&db0));
        r::dwconv_backward_ref(&mut sdx, &mut sdw, &mut sdb, &abs(&g), &abs(&x), &abs(&w), s);
        for isa in Isa::available() {
            let (mut gx, mut gw, mut gb) = (dx0.clone(), dw0.clone(), db0.clone());
            dwconv_backward_with(isa, &mut gx, &mut gw, &mut gb, &g, &x, &w, s).unwrap();
            check("dwconv_backward dinp", isa, &s, &gx, &dx, &sdx)?;
            check("dwconv_backward dweight", isa, &s, &gw, &dw, &sdw)?;
            check("dwconv_backward dbias", isa, &s, &gb, &db, &sdb)?;
        }
    }
}

/// Small shapes for the finite-difference checks (every input element is perturbed).
fn small_shape() -> impl Strategy<Value = DwConvShape> {
    (
        1usize..=2,
        1usize..=5,
        1usize..=5,
        1usize..=3,
        prop::sample::select(vec![1usize, 3, 5]),
    )
        .prop_map(|(batch, height, width, channels, k)| DwConvShape {
            batch,
            height,
            width,
            channels,
            k,
        })
}

/// `L = sum dout * forward(inp, weight, bias)` in f64.
fn loss(s: DwConvShape, g: &[f64], x: &[f64], w: &[f64], b: &[f64]) -> f64 {
    let mut y = vec![0.0; x.len()];
    r::dwconv_forward_f64(&mut y, x, w, b, s);
    y.iter().zip(g).map(|(y, g)| y * g).sum()
}

/// Central differences of [`loss`] with respect to every element of `which` (0: inp,
/// 1: weight, 2: bias). `L` is linear in each single element, so the difference is exact up to
/// f64 rounding.
fn central_differences(
    s: DwConvShape,
    g: &[f64],
    params: &[Vec<f64>; 3],
    which: usize,
) -> Vec<f64> {
    let h = 1e-2;
    (0..params[which].len())
        .map(|e| {
            let mut p = params.clone();
            p[which][e] += h;
            let up = loss(s, g, &p[0], &p[1], &p[2]);
            p[which][e] -= 2.0 * h;
            let down = loss(s, g, &p[0], &p[1], &p[2]);
            (up - down) / (2.0 * h)
        })
        .collect()
}

proptest! {
    #![proptest_config(config())]

    /// The reference backward and every path's backward (from zero accumulators) against
    /// central differences of the f64 reference forward: `|grad - fd| <= 1e-5 * sum |terms| +
    /// 1e-9` (the slack covers the f64 rounding of the differenced losses).
    #[test]
    fn backward_matches_finite_differences(
        (s, x, w, b, g) in small_shape().prop_flat_map(|s| {
            let (na, nw) = (s.activation_len().unwrap(), s.weight_len().unwrap());
            let v = |n| prop::collection::vec(-2.0f32..2.0, n);
            (Just(s), v(na), v(nw), v(s.channels), v(na))
        })
    ) {
        let wide = |v: &[f32]| v.iter().map(|&t| t as f64).collect::<Vec<f64>>();
        let params = [wide(&x), wide(&w), wide(&b)];
        let fd: Vec<Vec<f64>> =
            (0..3).map(|q| central_differences(s, &wide(&g), &params, q)).collect();
        let (na, nw, nc) = (x.len(), w.len(), b.len());
        let (mut sdx, mut sdw, mut sdb) = (vec![0.0; na], vec![0.0; nw], vec![0.0; nc]);
        r::dwconv_backward_ref(&mut sdx, &mut sdw, &mut sdb, &abs(&g), &abs(&x), &abs(&w), s);
        let scales = [sdx, sdw, sdb];
        let mut runs: Vec<(String, [Vec<f32>; 3])> = Vec::new();
        let (mut dx, mut dw, mut db) = (vec![0.0; na], vec![0.0; nw], vec![0.0; nc]);
        r::dwconv_backward_ref(&mut dx, &mut dw, &mut db, &g, &x, &w, s);
        runs.push(("reference".into(), [dx, dw, db]));
        for isa in Isa::available() {
            let (mut dx, mut dw, mut db) = (vec![0.0; na], vec![0.0; nw], vec![0.0; nc]);
            dwconv_backward_with(isa, &mut dx, &mut dw, &mut db, &g, &x, &w, s).unwrap();
            runs.push((isa.name().into(), [dx, dw, db]));
        }
        for (who, grads) in &runs {
            for (q, name) in ["dinp", "dweight", "dbias"].iter().enumerate() {
                for (e, (&got, &want)) in grads[q].iter().zip(&fd[q]).enumerate() {
                    let bound = RTOL * scales[q][e] as f64 + 1e-9;
                    prop_assert!(
                        (got as f64 - want).abs() <= bound,
                        "{name} [{who}] {s:?} at {e}: got {got:e}, finite difference {want:e}, bound {bound:e}"
                    );
                }
            }
        }
    }
}

/// Deterministic values in [-1, 1) without zeros (xorshift), so NaN-free outputs stay finite.
fn fill(n: usize, seed: u64) -> Vec<f32> {
    let mut st = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            st ^= st << 13;
            st ^= st >> 7;
            st ^= st << 17;
            ((st >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0 + 1e-3
        })
        .collect()
}

/// Shapes for the NaN tests: the NaN sits at a border and in the interior, in a tail channel.
fn nan_cases() -> Vec<(DwConvShape, [usize; 4])> {
    vec![
        (DwConvShape::square(2, 7, 17, 3), [1, 3, 4, 16]),
        (DwConvShape::square(2, 14, 20, 5), [0, 0, 13, 9]),
        (
            DwConvShape {
                batch: 1,
                height: 2,
                width: 9,
                channels: 3,
                k: 7,
            },
            [0, 1, 0, 1],
        ),
    ]
}

fn at(s: &DwConvShape, [b, i, j, c]: [usize; 4]) -> usize {
    ((b * s.height + i) * s.width + j) * s.channels + c
}

/// Positions `[b, i', j', c]` whose k x k window holds `[b, i, j, c]` (the same channel and
/// batch only): exactly the outputs a NaN input there must reach.
fn window(s: &DwConvShape, [b, i, j, c]: [usize; 4]) -> Vec<usize> {
    let p = s.padding();
    let rows = i.saturating_sub(p)..(i + p + 1).min(s.height);
    let cols = j.saturating_sub(p)..(j + p + 1).min(s.width);
    rows.flat_map(|i2| cols.clone().map(move |j2| (i2, j2)))
        .map(|(i2, j2)| at(s, [b, i2, j2, c]))
        .collect()
}

fn nan_positions(v: &[f32]) -> Vec<usize> {
    (0..v.len()).filter(|&e| v[e].is_nan()).collect()
}

/// A NaN input reaches exactly the outputs whose window holds it (same batch, same channel),
/// and every other output stays finite.
#[test]
fn nan_input_propagates_only_to_its_window() {
    for (s, pos) in nan_cases() {
        let n = s.activation_len().unwrap();
        let (mut x, w, b) = (
            fill(n, 1),
            fill(s.weight_len().unwrap(), 2),
            fill(s.channels, 3),
        );
        x[at(&s, pos)] = f32::NAN;
        let want = window(&s, pos);
        for isa in Isa::available() {
            let mut out = vec![0.0; n];
            dwconv_forward_with(isa, &mut out, &x, &w, &b, s).unwrap();
            assert_eq!(nan_positions(&out), want, "[{isa}] {s:?} NaN at {pos:?}");
            assert!(
                out.iter().all(|v| v.is_nan() || v.is_finite()),
                "[{isa}] {s:?}"
            );
        }
    }
}

/// Backward: a NaN in dout reaches the dinp window (the flipped correlation covers the same
/// positions), dbias of its channel, and exactly the dweight taps of its channel that read an
/// input inside the grid; a NaN in inp reaches only dweight (never dinp or dbias).
#[test]
fn nan_gradient_propagates_only_to_affected_gradients() {
    for (s, pos) in nan_cases() {
        let (na, nw, nc) = (
            s.activation_len().unwrap(),
            s.weight_len().unwrap(),
            s.channels,
        );
        let (x, w, g) = (fill(na, 4), fill(nw, 5), fill(na, 6));
        let (k, p, c) = (s.k, s.padding(), pos[3]);
        // Taps (u, v) of output `pos` whose input `pos + (u - p, v - p)` is inside the grid.
        let taps: Vec<usize> = (0..k * k)
            .filter(|t| {
                let (r, q) = (
                    (pos[1] + t / k).checked_sub(p),
                    (pos[2] + t % k).checked_sub(p),
                );
                matches!((r, q), (Some(r), Some(q)) if r < s.height && q < s.width)
            })
            .map(|t| t * nc + c)
            .collect();
        let mut g_nan = g.clone();
        g_nan[at(&s, pos)] = f32::NAN;
        let mut x_nan = x.clone();
        x_nan[at(&s, pos)] = f32::NAN;
        for isa in Isa::available() {
            let (mut dx, mut dw, mut db) = (vec![0.0; na], vec![0.0; nw], vec![0.0; nc]);
            dwconv_backward_with(isa, &mut dx, &mut dw, &mut db, &g_nan, &x, &w, s).unwrap();
            assert_eq!(nan_positions(&dx), window(&s, pos), "[{isa}] dinp {s:?}");
            assert_eq!(nan_positions(&dw), taps, "[{isa}] dweight {s:?}");
            assert_eq!(nan_positions(&db), vec![c], "[{isa}] dbias {s:?}");

            let (mut dx, mut dw, mut db) = (vec![0.0; na], vec![0.0; nw], vec![0.0; nc]);
            dwconv_backward_with(isa, &mut dx, &mut dw, &mut db, &g, &x_nan, &w, s).unwrap();
            assert!(nan_positions(&dx).is_empty(), "[{isa}] dinp {s:?}");
            // inp[pos] is read by output pos - (u - p, v - p) through tap (u, v): the taps whose
            // mirrored offset stays inside the grid, which are the same taps mirrored.
            let mirrored: Vec<usize> = {
                let mut m: Vec<usize> =
                    taps.iter().map(|t| (k * k - 1 - t / nc) * nc + c).collect();
                m.sort_unstable();
                m
            };
            assert_eq!(nan_positions(&dw), mirrored, "[{isa}] dweight {s:?}");
            assert!(nan_positions(&db).is_empty(), "[{isa}] dbias {s:?}");
        }
    }
}

fn is_length_mismatch(r: Result<(), KernelError>) -> bool {
    matches!(r, Err(KernelError::LengthMismatch(_)))
}

fn is_shape_mismatch(r: Result<(), KernelError>) -> bool {
    matches!(r, Err(KernelError::ShapeMismatch(_)))
}

/// Every buffer one element too short or too long is a `LengthMismatch`; an even or zero `k`
/// and a shape whose size overflows are `ShapeMismatch`; nothing panics.
#[test]
fn bad_lengths_and_shapes_are_errors() {
    let s = DwConvShape::square(2, 3, 5, 3);
    let (na, nw, nc) = (2 * 3 * 3 * 5, 3 * 3 * 5, 5);
    for isa in Isa::available() {
        for delta in [-1isize, 1] {
            let len = |n: usize| (n as isize + delta) as usize;
            let ok = |n: usize| vec![0.5f32; n];
            // Forward: out, inp, weight, bias in turn.
            let fwd = |o: usize, i: usize, w: usize, b: usize| {
                let mut out = vec![0.0; o];
                dwconv_forward_with(isa, &mut out, &ok(i), &ok(w), &ok(b), s)
            };
            assert!(fwd(na, na, nw, nc).is_ok());
            assert!(is_length_mismatch(fwd(len(na), na, nw, nc)), "[{isa}]");
            assert!(is_length_mismatch(fwd(na, len(na), nw, nc)), "[{isa}]");
            assert!(is_length_mismatch(fwd(na, na, len(nw), nc)), "[{isa}]");
            assert!(is_length_mismatch(fwd(na, na, nw, len(nc))), "[{isa}]");
            // Backward: dinp, dweight, dbias, dout, inp, weight in turn.
            let sizes = [na, nw, nc, na, na, nw];
            for wrong in 0..=sizes.len() {
                let l: Vec<usize> = (0..sizes.len())
                    .map(|q| if q == wrong { len(sizes[q]) } else { sizes[q] })
                    .collect();
                let (mut dx, mut dw, mut db) = (ok(l[0]), ok(l[1]), ok(l[2]));
                let res = dwconv_backward_with(
                    isa,
                    &mut dx,
                    &mut dw,
                    &mut db,
                    &ok(l[3]),
                    &ok(l[4]),
                    &ok(l[5]),
                    s,
                );
                if wrong == sizes.len() {
                    assert!(res.is_ok(), "[{isa}]");
                } else {
                    assert!(is_length_mismatch(res), "[{isa}] buffer {wrong}");
                }
            }
        }
        for k in [0usize, 2, 4] {
            let s = DwConvShape::square(1, 3, 2, k);
            let a = vec![0.0f32; 18];
            let mut out = a.clone();
            let w = vec![0.0f32; k * k * 2];
            assert!(is_shape_mismatch(dwconv_forward_with(
                isa, &mut out, &a, &w, &[0.0; 2], s
            )));
            let (mut dw, mut db) = (w.clone(), vec![0.0; 2]);
            assert!(is_shape_mismatch(dwconv_backward_with(
                isa, &mut out, &mut dw, &mut db, &a, &a, &w, s
            )));
        }
        let huge = DwConvShape::square(usize::MAX / 2, 3, 2, 3);
        assert!(is_shape_mismatch(dwconv_forward_with(
            isa,
            &mut [],
            &[],
            &[0.0; 18],
            &[0.0; 2],
            huge
        )));
    }
}

/// Empty batches, grids and channel counts are fine (nothing to do, and nothing changes).
#[test]
fn empty_problems_are_ok() {
    for isa in Isa::available() {
        for s in [
            DwConvShape::square(0, 7, 8, 3),
            DwConvShape::square(2, 0, 8, 3),
            DwConvShape::square(2, 7, 0, 3),
            // No channels on a huge grid: nothing to do, and it must return at once.
            DwConvShape::square(1 << 20, 1 << 20, 0, 3),
        ] {
            let (na, nw) = (s.activation_len().unwrap(), s.weight_len().unwrap());
            let (mut o, i, w, b) = (
                vec![0.0; na],
                vec![0.0; na],
                vec![1.5; nw],
                vec![1.5; s.channels],
            );
            dwconv_forward_with(isa, &mut o, &i, &w, &b, s).unwrap();
            let (mut dw, mut db) = (w.clone(), b.clone());
            dwconv_backward_with(isa, &mut o, &mut dw, &mut db, &i, &i, &w, s).unwrap();
            assert_eq!((&dw, &db), (&w, &b), "[{isa}] {s:?}");
        }
    }
}

/// A path this CPU lacks is an error, not a crash.
#[test]
fn unsupported_isa_is_an_error() {
    for isa in Isa::ALL {
        if !isa.is_supported() {
            assert_eq!(
                DwConvKernels::for_isa(isa).err(),
                Some(KernelError::UnsupportedIsa(isa.name()))
            );
        }
    }
}

/// The functions without `_with` run on the active path, bit for bit.
#[test]
fn default_functions_use_the_active_path() {
    let s = DwConvShape::square(2, 7, 19, 3);
    let (na, nw) = (s.activation_len().unwrap(), s.weight_len().unwrap());
    let (x, w, b, g) = (fill(na, 7), fill(nw, 8), fill(19, 9), fill(na, 10));
    let isa = DwConvKernels::active().isa();
    let (mut y0, mut y1) = (vec![0.0; na], vec![0.0; na]);
    dwconv_forward(&mut y0, &x, &w, &b, s).unwrap();
    dwconv_forward_with(isa, &mut y1, &x, &w, &b, s).unwrap();
    assert_eq!(y0, y1);
    let mut a = (vec![0.0; na], vec![0.0; nw], vec![0.0; 19]);
    let mut c = a.clone();
    dwconv_backward(&mut a.0, &mut a.1, &mut a.2, &g, &x, &w, s).unwrap();
    dwconv_backward_with(isa, &mut c.0, &mut c.1, &mut c.2, &g, &x, &w, s).unwrap();
    assert_eq!(a, c);
}

/// PyTorch's `Conv2d(1, 1, 3, padding=1, bias=True)` on a 3 x 3 grid with weights 1..9 and
/// inputs 1..9 (written out by hand): a fixed point the reference and every path must hit, so
/// that a reference and kernels sharing one convention error (say, convolution instead of
/// cross-correlation) cannot agree with each other.
#[test]
fn matches_a_hand_computed_cross_correlation() {
    let s = DwConvShape::square(1, 3, 1, 3);
    let x: Vec<f32> = (1..=9).map(|v| v as f32).collect();
    let w: Vec<f32> = (1..=9).map(|v| v as f32).collect();
    let b = [0.5f32];
    // y[i][j] = 0.5 + sum_{u,v} w[u][v] x[i+u-1][j+v-1]; e.g. y[0][0] = 5*1 + 6*2 + 8*4 + 9*5.
    let want = [
        94.5f32, 154.5, 106.5, 186.5, 285.5, 186.5, 106.5, 154.5, 94.5,
    ];
    let mut got = [0.0f32; 9];
    r::dwconv_forward_ref(&mut got, &x, &w, &b, s);
    assert_eq!(got, want, "reference");
    for isa in Isa::available() {
        let mut got = [0.0f32; 9];
        dwconv_forward_with(isa, &mut got, &x, &w, &b, s).unwrap();
        assert_eq!(got, want, "[{isa}]");
    }
}
