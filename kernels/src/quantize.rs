//! Symmetric int8 quantization (DESIGN.md, "Int8 inference"): f32 -> s8 and back.
//!
//! `q = clamp(round_half_even(x / s), -127, 127)` and `x' = q * s`, with one scale per tensor
//! (static: the scale comes from calibration or QAT) or per row (dynamic: `s = max|row| / 127`,
//! and 1 for an all-zero row). For `|x| <= 127 s` the round trip is within `s / 2` (plus the
//! rounding of the one division). The loops are written so the compiler vectorizes them, and
//! each is compiled per ISA (AVX-512, AVX2, NEON) and chosen at run time like every kernel.

use crate::{Isa, KernelError};

/// `x` (any layout) quantized with one scale into `out` (same length).
///
/// Errors: length mismatch; `scale` not finite and positive; a non-finite value in `x`.
pub fn quantize_per_tensor(x: &[f32], scale: f32, out: &mut [i8]) -> Result<(), KernelError> {
    same_len("quantize_per_tensor", x.len(), out.len())?;
    check_scale(scale)?;
    check_finite(x)?;
    (kernels().quantize)(x, scale, out);
    Ok(())
}

/// Rows of `cols` values quantized dynamically: `scales[r] = max|row r| / 127` (1 for an
/// all-zero row), written alongside the quantized rows in `out`.
///
/// Errors: lengths that do not agree (`x.len() == out.len() == rows * cols`,
/// `scales.len() == rows`); a non-finite value in `x`.
pub fn quantize_per_row(
    x: &[f32],
    cols: usize,
    out: &mut [i8],
    scales: &mut [f32],
) -> Result<(), KernelError> {
    same_len("quantize_per_row", x.len(), out.len())?;
    check_rows("quantize_per_row", x.len(), cols, scales.len())?;
    check_finite(x)?;
    let k = kernels();
    for ((row, q), s) in x
        .chunks_exact(cols.max(1))
        .zip(out.chunks_exact_mut(cols.max(1)))
        .zip(scales.iter_mut())
    {
        let max = (k.abs_max)(row);
        *s = if max > 0.0 { max / 127.0 } else { 1.0 };
        (k.quantize)(row, *s, q);
    }
    Ok(())
}

/// `out = q * scale`.
///
/// Errors: length mismatch; `scale` not finite and positive.
pub fn dequantize_per_tensor(q: &[i8], scale: f32, out: &mut [f32]) -> Result<(), KernelError> {
    same_len("dequantize_per_tensor", q.len(), out.len())?;
    check_scale(scale)?;
    (kernels().dequantize)(q, scale, out);
    Ok(())
}

/// `out[r, c] = q[r, c] * scales[r]` for rows of `cols` values.
///
/// Errors: lengths that do not agree; a scale that is not finite and positive.
pub fn dequantize_per_row(
    q: &[i8],
    cols: usize,
    scales: &[f32],
    out: &mut [f32],
) -> Result<(), KernelError> {
    same_len("dequantize_per_row", q.len(), out.len())?;
    check_rows("dequantize_per_row", q.len(), cols, scales.len())?;
    scales.iter().try_for_each(|&s| check_scale(s))?;
    let k = kernels();
    for ((row, o), &s) in q
        .chunks_exact(cols.max(1))
        .zip(out.chunks_exact_mut(cols.max(1)))
        .zip(scales)
    {
        (k.dequantize)(row, s, o);
    }
    Ok(())
}

fn same_len(what: &str, a: usize, b: usize) -> Result<(), KernelError> {
    if a != b {
        return Err(KernelError::LengthMismatch(format!(
            "{what}: input has {a} values, output {b}"
        )));
    }
    Ok(())
}

fn check_rows(what: &str, len: usize, cols: usize, rows: usize) -> Result<(), KernelError> {
    if cols == 0 && len == 0 && rows == 0 {
        return Ok(());
    }
    if cols == 0 || !len.is_multiple_of(cols) || len / cols != rows {
        return Err(KernelError::LengthMismatch(format!(
            "{what}: {len} values in rows of {cols} do not match {rows} scales"
        )));
    }
    Ok(())
}

fn check_scale(scale: f32) -> Result<(), KernelError> {
    if !(scale.is_finite() && scale > 0.0) {
        return Err(KernelError::InvalidValue(format!(
            "a quantization scale must be finite and positive, got {scale}"
        )));
    }
    Ok(())
}

fn check_finite(x: &[f32]) -> Result<(), KernelError> {
    // A branch-free AND over the values vectorizes (an early-exit search does not, and cost as
    // much as the quantization itself); find the index only on failure.
    if x.iter().fold(true, |ok, v| ok & v.is_finite()) {
        return Ok(());
    }
    match x.iter().position(|v| !v.is_finite()) {
        Some(i) => Err(KernelError::InvalidValue(format!(
            "cannot quantize {} at index {i}",
            x[i]
        ))),
        None => Ok(()),
    }
}

/// One ISA's quantization loops.
struct QuantKernels {
    quantize: fn(&[f32], f32, &mut [i8]),
    dequantize: fn(&[i8], f32, &mut [f32]),
    abs_max: fn(&[f32]) -> f32,
}

/// 1.5 * 2^23: adding it to a float in [-2^22, 2^22] rounds it to an integer (half to even,
/// the default rounding mode) held in the low mantissa bits, at bit pattern `MAGIC_BITS + q`.
const ROUNDING_MAGIC: f32 = 12_582_912.0;
const MAGIC_BITS: i32 = 0x4B40_0000;

#[inline(always)]
fn quantize_body(x: &[f32], scale: f32, out: &mut [i8]) {
    // Clamp, then round by the magic addition: the same result as rounding first (the bounds
    // are integers), and unlike a float-to-int cast it vectorizes to plain integer lanes.
    for (o, &v) in out.iter_mut().zip(x) {
        let rounded = (v / scale).clamp(-127.0, 127.0) + ROUNDING_MAGIC;
        *o = (rounded.to_bits() as i32 - MAGIC_BITS) as i8;
    }
}

#[inline(always)]
fn dequantize_body(q: &[i8], scale: f32, out: &mut [f32]) {
    for (o, &v) in out.iter_mut().zip(q) {
        *o = v as f32 * scale;
    }
}

#[inline(always)]
fn abs_max_body(x: &[f32]) -> f32 {
    // Eight partial maxima (inputs are finite): a reduction the compiler vectorizes.
    let mut m = [0.0f32; 8];
    let mut chunks = x.chunks_exact(8);
    for c in chunks.by_ref() {
        for (m, &v) in m.iter_mut().zip(c) {
            let a = v.abs();
            *m = if a > *m { a } else { *m };
        }
    }
    let tail = chunks
        .remainder()
        .iter()
        .fold(0.0f32, |m, &v| m.max(v.abs()));
    m.iter().fold(tail, |a, &b| a.max(b))
}

/// Instantiates the three loops for one target feature set.
macro_rules! quant_kernels_for {
    ($modname:ident, $cfg:meta, $features:literal) => {
        #[$cfg]
        mod $modname {
            #[target_feature(enable = $features)]
            unsafe fn quantize(x: &[f32], s: f32, out: &mut [i8]) {
                super::quantize_body(x, s, out)
            }
            #[target_feature(enable = $features)]
            unsafe fn dequantize(q: &[i8], s: f32, out: &mut [f32]) {
                super::dequantize_body(q, s, out)
            }
            #[target_feature(enable = $features)]
            unsafe fn abs_max(x: &[f32]) -> f32 {
                super::abs_max_body(x)
            }
            pub(super) fn kernels() -> super::QuantKernels {
                // SAFETY (for each): only returned after the features were detected (`kernels`).
                super::QuantKernels {
                    quantize: |x, s, o| unsafe { quantize(x, s, o) },
                    dequantize: |q, s, o| unsafe { dequantize(q, s, o) },
                    abs_max: |x| unsafe { abs_max(x) },
                }
            }
        }
    };
}

quant_kernels_for!(
    x86_avx512,
    cfg(target_arch = "x86_64"),
    "avx512f,avx512bw,avx512vl"
);
quant_kernels_for!(x86_avx2, cfg(target_arch = "x86_64"), "avx2,fma");
quant_kernels_for!(aarch64_neon, cfg(target_arch = "aarch64"), "neon");

fn kernels() -> &'static QuantKernels {
    static K: std::sync::OnceLock<QuantKernels> = std::sync::OnceLock::new();
    K.get_or_init(|| match Isa::active() {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512
            if is_x86_feature_detected!("avx512bw") && is_x86_feature_detected!("avx512vl") =>
        {
            x86_avx512::kernels()
        }
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 | Isa::Avx2 => x86_avx2::kernels(),
        #[cfg(target_arch = "aarch64")]
        Isa::Neon => aarch64_neon::kernels(),
        _ => QuantKernels {
            quantize: quantize_body,
            dequantize: dequantize_body,
            abs_max: abs_max_body,
        },
    })
}
