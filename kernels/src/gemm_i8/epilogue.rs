//! Fused epilogues: what happens to a finished tile of i32 sums before it leaves the GEMM.
//!
//! Dequantize (DESIGN.md, "Int8 inference"):
//!
//! ```text
//! y[m, n] = (s_a[m] * s_w[n]) * acc[m, n] + bias[n]        in f32
//! ```
//!
//! then optionally GELU, then either store `y` as f32 or requantize it for the next layer:
//! `q = clamp(round_half_even(y / s_out), -127, 127)`. Each step is one correctly rounded f32
//! operation, so `y` is within a few ulps of the same formula in f64 (relative to
//! `|s_a s_w acc| + |bias|`).

use super::MAX_TILE;
use crate::elementwise::{ElementwiseKernels, GeluForwardFn};
use crate::gelu::GeluKind;
use crate::quantize::DequantSumsFn;

/// The activation scale: one for the whole tensor (static quantization) or one per row of A
/// (dynamic quantization).
#[derive(Clone, Copy, Debug)]
pub enum Scale<'a> {
    /// One scale for every row.
    PerTensor(f32),
    /// `scales[i]` for row `i` (length M).
    PerRow(&'a [f32]),
}

impl Scale<'_> {
    /// The scale of row `i`.
    #[inline]
    pub fn of_row(&self, i: usize) -> f32 {
        match *self {
            Scale::PerTensor(s) => s,
            Scale::PerRow(v) => v[i],
        }
    }
}

/// An activation applied after the bias.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Activation {
    /// None.
    #[default]
    None,
    /// GELU of the given kind.
    Gelu(GeluKind),
}

/// How i32 sums become real numbers: `y = s_a[m] * s_w[n] * acc + bias[n]`, then `act`.
#[derive(Clone, Copy, Debug)]
pub struct Dequant<'a> {
    /// Activation (A) scale, per tensor or per row.
    pub a_scale: Scale<'a>,
    /// Weight scale per output column (length N).
    pub w_scales: &'a [f32],
    /// Optional bias per output column (length N).
    pub bias: Option<&'a [f32]>,
    /// Optional activation.
    pub act: Activation,
}

/// Widest tile any path produces (columns).
const MAX_NR: usize = 64;

/// Where dequantized rows go.
#[derive(Clone, Copy)]
pub(crate) enum Target {
    /// f32 output, row stride `ld`.
    F32 { out: *mut f32, ld: usize },
    /// Requantized s8 output, row stride `ld`, scale `scale`.
    S8 { out: *mut i8, ld: usize, scale: f32 },
}

/// f32 room for one tile, kept by the driver across tiles (zeroing it per tile cost more than
/// the dequantization).
pub(crate) struct EpilogueScratch {
    y: [f32; MAX_TILE],
    act: [f32; MAX_TILE],
}

impl EpilogueScratch {
    pub(crate) fn new() -> Self {
        EpilogueScratch {
            y: [0.0; MAX_TILE],
            act: [0.0; MAX_TILE],
        }
    }
}

/// A dequantizing epilogue bound to its output.
#[derive(Clone, Copy)]
pub(crate) struct Epilogue<'a> {
    spec: Dequant<'a>,
    dequant_sums: DequantSumsFn,
    gelu: Option<(GeluForwardFn, GeluKind)>,
    target: Target,
}

impl<'a> Epilogue<'a> {
    /// Binds `spec` to `target`; GELU runs on `elementwise`'s path.
    pub(crate) fn new(
        spec: Dequant<'a>,
        target: Target,
        elementwise: &ElementwiseKernels,
    ) -> Epilogue<'a> {
        let gelu = match spec.act {
            Activation::None => None,
            Activation::Gelu(kind) => Some((elementwise.gelu_forward, kind)),
        };
        Epilogue {
            spec,
            dequant_sums: crate::quantize::kernels().dequant_sums,
            gelu,
            target,
        }
    }

    /// Applies the epilogue to the `m x n` corner of `tile` (row stride `ldt`), which holds the
    /// sums of output rows `row0..row0 + m` and columns `col0..col0 + n`.
    ///
    /// # Safety
    /// The target holds those rows and columns, and no other thread writes them; the spec's
    /// slices cover them (checked by the public entry points).
    #[allow(clippy::too_many_arguments)] // the tile, its place in the output, and scratch
    pub(crate) unsafe fn apply(
        &self,
        scratch: &mut EpilogueScratch,
        tile: &[i32],
        ldt: usize,
        m: usize,
        n: usize,
        row0: usize,
        col0: usize,
    ) {
        debug_assert!(n <= MAX_NR && m * n <= MAX_TILE);
        let w = &self.spec.w_scales[col0..col0 + n];
        let bias = self.spec.bias.map(|b| &b[col0..col0 + n]);
        let row_out = |i: usize, out: *mut f32, ld: usize| {
            // SAFETY: (row0 + i, col0..col0 + n) is inside the output (see above).
            unsafe { std::slice::from_raw_parts_mut(out.add((row0 + i) * ld + col0), n) }
        };
        match (self.target, self.gelu) {
            (Target::F32 { out, ld }, None) => {
                // Straight into the output rows.
                for i in 0..m {
                    let sa = self.spec.a_scale.of_row(row0 + i);
                    let acc = &tile[i * ldt..i * ldt + n];
                    (self.dequant_sums)(acc, sa, w, bias, row_out(i, out, ld));
                }
                return;
            }
            (Target::F32 { out, ld }, Some((gelu, kind))) => {
                // GELU once over the whole dequantized tile, then row copies: its polynomial
                // and division chains are long, and one call per short row left them
                // latency-bound (more than the copies cost).
                let (y, act) = (&mut scratch.y[..m * n], &mut scratch.act[..m * n]);
                self.dequant_tile(y, tile, ldt, n, row0, w, bias);
                // SAFETY: the kernel set's ISA was checked when it was built; equal lengths.
                unsafe { gelu(act, y, kind) };
                for (i, vals) in act.chunks_exact(n).enumerate() {
                    copy_row(row_out(i, out, ld), vals);
                }
                return;
            }
            (Target::S8 { .. }, _) => {}
        }
        let (y, act) = (&mut scratch.y[..m * n], &mut scratch.act[..m * n]);
        self.dequant_tile(y, tile, ldt, n, row0, w, bias);
        let vals: &[f32] = match self.gelu {
            Some((gelu, kind)) => {
                // SAFETY: as above.
                unsafe { gelu(act, y, kind) };
                act
            }
            None => y,
        };
        if let Target::S8 { out, ld, scale } = self.target {
            for (i, vals) in vals.chunks_exact(n).enumerate() {
                // SAFETY: as above.
                let dst =
                    unsafe { std::slice::from_raw_parts_mut(out.add((row0 + i) * ld + col0), n) };
                for (q, &v) in dst.iter_mut().zip(vals) {
                    *q = requantize(v, scale);
                }
            }
        }
    }

    /// `y` (rows of `n`) = the dequantized sums of the tile's rows.
    #[allow(clippy::too_many_arguments)]
    fn dequant_tile(
        &self,
        y: &mut [f32],
        tile: &[i32],
        ldt: usize,
        n: usize,
        row0: usize,
        w: &[f32],
        bias: Option<&[f32]>,
    ) {
        for (i, y) in y.chunks_exact_mut(n).enumerate() {
            let sa = self.spec.a_scale.of_row(row0 + i);
            (self.dequant_sums)(&tile[i * ldt..i * ldt + n], sa, w, bias, y);
        }
    }
}

/// `dst = src` for one tile row: the common widths get a fixed-size copy the compiler keeps
/// inline (a `memcpy` call per 128-byte row cost more than the copy).
#[inline(always)]
fn copy_row(dst: &mut [f32], src: &[f32]) {
    if let (Ok(d), Ok(s)) = (
        <&mut [f32; 32]>::try_from(&mut *dst),
        <&[f32; 32]>::try_from(src),
    ) {
        *d = *s;
    } else if let (Ok(d), Ok(s)) = (
        <&mut [f32; 16]>::try_from(&mut *dst),
        <&[f32; 16]>::try_from(src),
    ) {
        *d = *s;
    } else {
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = s;
        }
    }
}

/// `clamp(round_half_even(v / scale), -127, 127)`; NaN becomes 0.
#[inline(always)]
pub(crate) fn requantize(v: f32, scale: f32) -> i8 {
    // `as` saturates and maps NaN to 0; the clamp keeps -128 out.
    (v / scale).round_ties_even().clamp(-127.0, 127.0) as i8
}
