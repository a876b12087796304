//! Row-wise neural-network maths over the last axis, on the kernels of `lithe-kernels`.

use super::Tensor;
use super::parallel::for_row_runs;
use crate::error::{Error, Result};
use lithe_kernels::gelu::{GeluKind, gelu_forward};
use lithe_kernels::layernorm::layernorm_forward;
use lithe_kernels::softmax::{log_softmax_forward, softmax_forward};

/// Size of the last axis, or an error for rank 0 / an empty last axis.
pub(crate) fn last_dim(op: &'static str, t: &Tensor) -> Result<usize> {
    match t.shape().last() {
        None => Err(Error::shape(op, "needs rank >= 1, got a scalar")),
        Some(0) => Err(Error::empty(
            op,
            format!("last axis of {:?} is empty", t.shape()),
        )),
        Some(&c) => Ok(c),
    }
}

/// Softmax over the last axis. A row holding NaN becomes all NaN; a row of `-inf` too (0/0).
pub fn softmax(t: &Tensor) -> Result<Tensor> {
    let cols = last_dim("softmax", t)?;
    let mut out = Tensor::zeros(t.shape());
    let x = t.data();
    for_row_runs(out.data_mut(), cols, |row, y| {
        Ok(softmax_forward(
            y,
            &x[row * cols..row * cols + y.len()],
            cols,
        )?)
    })?;
    Ok(out)
}

/// Log-softmax over the last axis.
pub fn log_softmax(t: &Tensor) -> Result<Tensor> {
    let cols = last_dim("log_softmax", t)?;
    let mut out = Tensor::zeros(t.shape());
    log_softmax_forward(out.data_mut(), t.data(), cols)?;
    Ok(out)
}

/// LayerNorm over the last axis `C`: `(x - mean) / sqrt(var + eps) * weight + bias` with the
/// biased variance. `weight` and `bias` are `[C]`. Returns `(out, mean, rstd)`, the last two of
/// shape `[rows]` (saved for the backward).
pub fn layernorm(
    t: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f32,
) -> Result<(Tensor, Tensor, Tensor)> {
    let cols = last_dim("layernorm", t)?;
    weight.expect_shape("layernorm weight", &[cols])?;
    bias.expect_shape("layernorm bias", &[cols])?;
    if !(eps >= 0.0 && eps.is_finite()) {
        return Err(Error::invalid(
            "layernorm",
            format!("eps = {eps} must be finite and >= 0"),
        ));
    }
    let rows = t.numel() / cols;
    let mut out = Tensor::zeros(t.shape());
    let (mut mean, mut rstd) = (Tensor::zeros(&[rows]), Tensor::zeros(&[rows]));
    layernorm_forward(
        out.data_mut(),
        mean.data_mut(),
        rstd.data_mut(),
        t.data(),
        weight.data(),
        bias.data(),
        cols,
        eps,
    )?;
    Ok((out, mean, rstd))
}

/// GELU, exact (`GeluKind::Erf`) or tanh-approximated, element-wise.
pub fn gelu(t: &Tensor, kind: GeluKind) -> Result<Tensor> {
    // Element-wise: "rows" of 64 keep the runs aligned for the SIMD kernels.
    let mut out = Tensor::zeros(t.shape());
    let x = t.data();
    for_row_runs(out.data_mut(), 64, |row, y| {
        Ok(gelu_forward(y, &x[row * 64..row * 64 + y.len()], kind)?)
    })?;
    Ok(out)
}
