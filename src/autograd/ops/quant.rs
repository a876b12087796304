//! Fake quantization (quantize, then dequantize, in f32) with a straight-through estimator, for
//! quantization-aware training (DESIGN.md, "QAT (Q8BERT)").
//!
//! The forwards call exactly the int8 engine's quantizers
//! ([`lithe_kernels::quantize::quantize_per_tensor`], [`lithe_kernels::quantize::quantize_per_row`]
//! and their `dequantize_*`), so a fake-quantized value is bit-identical to what the engine
//! multiplies: `q * s` with the same `q` and the same `s`.
//!
//! Backward, the straight-through estimator (STE): rounding has a zero derivative almost
//! everywhere, so training would stall; the STE treats rounding as the identity and keeps only
//! the clamp, i.e. it differentiates `clamp(x, -127 s, 127 s)`:
//! `dx += dout` where `|x / s| <= 127` and nothing where the value was clamped. This is
//! PyTorch's `fake_quantize_per_tensor_affine` rule. The scale is a constant of the op: its
//! dependence on the data (an EMA, or the row's max) gets no gradient, as in Q8BERT.
//!
//! Shapes: per tensor, `x` is any shape; per row, `x` is `[..., C]` seen as rows of `C` (a weight
//! `[out, in]` gets one scale per output channel).

use crate::autograd::{Graph, Var};
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use lithe_kernels::quantize::{
    dequantize_per_row, dequantize_per_tensor, quantize_per_row, quantize_per_tensor,
};

/// `dequantize(quantize(x, scale))` with one scale: `clamp(round(x / s), -127, 127) * s`.
///
/// Errors: `scale` not finite and positive; a non-finite value in `x`.
pub fn fake_quant_tensor(x: &Tensor, scale: f32) -> Result<Tensor> {
    let mut q = vec![0i8; x.numel()];
    quantize_per_tensor(x.data(), scale, &mut q)?;
    let mut out = Tensor::zeros(x.shape());
    dequantize_per_tensor(&q, scale, out.data_mut())?;
    Ok(out)
}

/// Per-row fake quantization of `x[..., C]`: each row of `C` values with its own scale
/// `max|row| / 127` (1 for an all-zero row), as the kernel computes it. Returns the values and
/// the scales (`[rows]`).
///
/// Errors: `x` of rank 0 or with an empty last axis while holding values; a non-finite value.
pub fn fake_quant_rows(x: &Tensor) -> Result<(Tensor, Vec<f32>)> {
    let cols = row_width("fake_quant_rows", x)?;
    let rows = x.numel().checked_div(cols).unwrap_or(0);
    let mut q = vec![0i8; x.numel()];
    let mut scales = vec![0.0f32; rows];
    quantize_per_row(x.data(), cols, &mut q, &mut scales)?;
    let mut out = Tensor::zeros(x.shape());
    dequantize_per_row(&q, cols, &scales, out.data_mut())?;
    Ok((out, scales))
}

fn row_width(op: &'static str, x: &Tensor) -> Result<usize> {
    match x.shape().last() {
        Some(&c) if c > 0 || x.numel() == 0 => Ok(c),
        _ => Err(Error::shape(
            op,
            format!("need [..., C] with C > 0, got {:?}", x.shape()),
        )),
    }
}

impl Graph {
    /// Per-tensor fake quantization `clamp(round(x / scale), -127, 127) * scale`
    /// ([`fake_quant_tensor`]); backward is the straight-through estimator: `dx += dout` where
    /// `|x / scale| <= 127`, zero where `x` was clamped.
    pub fn fake_quant(&self, x: Var, scale: f32) -> Result<Var> {
        let xv = self.value(x)?;
        let out = fake_quant_tensor(&xv, scale)?;
        self.record("fake_quant", out, &[x], move |d, dout, ins, _out| {
            // dx += dout * [|x / s| <= 127]: the same division the quantizer clamps
            if let Some(dx) = d[0].sum_mut() {
                let (x, g) = (ins[0].data(), dout.data());
                for ((dx, &x), &g) in dx.data_mut().iter_mut().zip(x).zip(g) {
                    if (x / scale).abs() <= 127.0 {
                        *dx += g;
                    }
                }
            }
            Ok(())
        })
    }

    /// Per-row fake quantization of `x[..., C]` with the scales the kernel computes from each
    /// row (`max|row| / 127`, fresh on every call: for weights per output channel, and for
    /// dynamically quantized activations); see [`fake_quant_rows`].
    ///
    /// Backward passes `dout` straight through: the scale comes from the row's own maximum, so
    /// no element is clamped (the largest lands on ±127), and the scale's dependence on that
    /// maximum is not differentiated (STE).
    pub fn fake_quant_per_row(&self, x: Var) -> Result<Var> {
        let (out, _scales) = fake_quant_rows(&self.value(x)?)?;
        self.record("fake_quant_per_row", out, &[x], |d, dout, _ins, _out| {
            // dx += dout
            if d[0].is_wanted() {
                d[0].add(dout)?;
            }
            Ok(())
        })
    }
}
