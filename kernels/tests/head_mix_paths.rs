//! The head-mixing kernels (`lithe_kernels::head_mix`) on every ISA path this machine runs,
//! against sums in f64: lengths around the SIMD widths and the 4-vector unroll, 1 to 13 heads.
//!
//! Bound, per element: `|got - ref| <= 1e-5 * (|ref| + scale)`, with `scale` the sum of the
//! magnitudes of the terms (so a result near zero from cancellation is judged against them).
//! `PROPTEST_CASES` sets the case count (default 64: these also run under qemu for aarch64).

use lithe_check::{Compare, Tolerance, fill};
use lithe_kernels::Isa;
use lithe_kernels::head_mix::{add_head_dots, add_head_dots_with, mix_heads, mix_heads_with};
use lithe_kernels::reference::{add_head_dots_ref, mix_heads_ref};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

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

/// `got` within `1e-5 * (|want| + scale[i])` of `want`, element by element.
fn check(
    what: &str,
    isa: Isa,
    got: &[f32],
    want: &[f32],
    scale: &[f64],
) -> Result<(), TestCaseError> {
    let scale: Vec<f32> = scale.iter().map(|&s| s as f32).collect();
    Compare::new(got, want)
        .scale(&scale)
        .context(format_args!("{what} [{isa}]"))
        .check(&Tolerance::allclose(0.0, 1e-5))
        .map(drop)
        .map_err(|e| TestCaseError::fail(e.to_string()))
}

/// `len` deterministic values in [-5, 5) from `seed`.
fn values(len: usize, seed: u64) -> Vec<f32> {
    fill(len, seed).iter().map(|v| 5.0 * v).collect()
}

proptest! {
    #![proptest_config(config())]

    /// Head mixing on every path, bound `1e-5 * (|ref| + sum_g |M[h,g] src[g]|)`: lengths around
    /// the SIMD widths and the 4-vector unroll (tails), 1 to 13 heads, either orientation.
    #[test]
    fn mix_heads_matches_reference(
        heads in 1usize..14,
        len in prop_oneof![0usize..80, Just(127usize), Just(128usize), Just(129usize)],
        transpose in any::<bool>(),
        with_bias in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let src = values(heads * len, seed);
        let m: Vec<f32> = values(heads * heads, seed ^ 1).iter().map(|v| v / 5.0).collect();
        let bias = values(heads, seed ^ 2);
        let bias = with_bias.then_some(&bias[..]);
        let want = mix_heads_ref(&src, &m, bias, heads, transpose);
        let abs_src: Vec<f32> = src.iter().map(|v| v.abs()).collect();
        let abs_m: Vec<f32> = m.iter().map(|v| v.abs()).collect();
        let scale: Vec<f64> = mix_heads_ref(&abs_src, &abs_m, None, heads, transpose)
            .iter()
            .map(|&v| v as f64)
            .collect();
        for isa in Isa::available() {
            let mut got = vec![f32::NAN; heads * len];
            mix_heads_with(isa, &mut got, &src, &m, bias, heads, len, transpose).unwrap();
            check("mix_heads", isa, &got, &want, &scale)?;
        }
    }
}

proptest! {
    #![proptest_config(config())]

    /// Head dot products on every path, added into a non-zero `acc`; bound
    /// `1e-5 * (|ref| + sum_x |a b|)`.
    #[test]
    fn add_head_dots_matches_reference(
        heads in 1usize..14,
        len in prop_oneof![0usize..80, Just(127usize), Just(128usize), Just(129usize)],
        seed in any::<u64>(),
    ) {
        let a = values(heads * len, seed);
        let b = values(heads * len, seed ^ 1);
        let acc0 = values(heads * heads, seed ^ 2);
        let mut want = acc0.clone();
        add_head_dots_ref(&mut want, &a, &b, heads);
        // The bound's scale: the same sums over magnitudes.
        let mut scale = vec![0f64; heads * heads];
        for h in 0..heads {
            for g in 0..heads {
                let terms = (0..len).map(|x| (a[h * len + x] as f64 * b[g * len + x] as f64).abs());
                scale[h * heads + g] = acc0[h * heads + g].abs() as f64 + terms.sum::<f64>();
            }
        }
        for isa in Isa::available() {
            let mut got = acc0.clone();
            add_head_dots_with(isa, &mut got, &a, &b, heads, len).unwrap();
            check("add_head_dots", isa, &got, &want, &scale)?;
        }
    }
}

#[test]
fn mix_heads_rejects_wrong_lengths() {
    let (src, m) = (vec![0.0f32; 3 * 5], vec![0.0f32; 9]);
    let mut dst = vec![0.0f32; 3 * 5];
    assert!(mix_heads(&mut dst, &src, &m, None, 3, 5, false).is_ok());
    assert!(mix_heads(&mut dst[..14], &src, &m, None, 3, 5, false).is_err());
    assert!(mix_heads(&mut dst, &src[..14], &m, None, 3, 5, false).is_err());
    assert!(mix_heads(&mut dst, &src, &m[..8], None, 3, 5, false).is_err());
    assert!(mix_heads(&mut dst, &src, &m, Some(&[0.0; 2]), 3, 5, true).is_err());
    let mut acc = vec![0.0f32; 9];
    assert!(add_head_dots(&mut acc, &src, &dst, 3, 5).is_ok());
    assert!(add_head_dots(&mut acc[..8], &src, &dst, 3, 5).is_err());
    assert!(add_head_dots(&mut acc, &src[..14], &dst, 3, 5).is_err());
}
