//! LayerNorm over the last dimension, forward and backward side by side (llm.c's argument order).
//!
//! Shapes: `inp`, `out`, `dinp`, `dout` are `rows x cols`; `weight`, `bias`, `dweight`, `dbias`
//! are `cols`; `mean`, `rstd` are `rows` (saved by the forward for the backward).
//! Forward writes (`=`); backward accumulates (`+=`) into `dinp`, `dweight` and `dbias`.
//!
//! Each function runs on the process-wide path ([`crate::Isa::active`]); its `_with` twin takes an
//! explicit [`Isa`] (an error if this CPU lacks it). The forward's statistics are a corrected
//! two-pass mean and variance in f32, accurate for rows with a large mean and a small spread.

use crate::elementwise::ElementwiseKernels;
use crate::softmax::check_rows;
use crate::{Isa, KernelError};

fn check_params(
    what: &str,
    cols: usize,
    rows: usize,
    params: &[usize],
    stats: &[usize],
) -> Result<(), KernelError> {
    if params.iter().any(|&l| l != cols) || stats.iter().any(|&l| l != rows) {
        return Err(KernelError::LengthMismatch(format!(
            "{what}: parameter lengths {params:?} must equal cols = {cols}, statistics lengths {stats:?} must equal rows = {rows}"
        )));
    }
    Ok(())
}

/// `out = (inp - mean) * rstd * weight + bias` per row, with `rstd = 1 / sqrt(var + eps)`
/// (biased variance, as PyTorch). Saves `mean` and `rstd`.
#[allow(clippy::too_many_arguments)]
pub fn layernorm_forward(
    out: &mut [f32],
    mean: &mut [f32],
    rstd: &mut [f32],
    inp: &[f32],
    weight: &[f32],
    bias: &[f32],
    cols: usize,
    eps: f32,
) -> Result<(), KernelError> {
    layernorm_forward_on(
        ElementwiseKernels::active(),
        out,
        mean,
        rstd,
        inp,
        weight,
        bias,
        cols,
        eps,
    )
}

/// [`layernorm_forward`] on the given path.
#[allow(clippy::too_many_arguments)]
pub fn layernorm_forward_with(
    isa: Isa,
    out: &mut [f32],
    mean: &mut [f32],
    rstd: &mut [f32],
    inp: &[f32],
    weight: &[f32],
    bias: &[f32],
    cols: usize,
    eps: f32,
) -> Result<(), KernelError> {
    layernorm_forward_on(
        &ElementwiseKernels::for_isa(isa)?,
        out,
        mean,
        rstd,
        inp,
        weight,
        bias,
        cols,
        eps,
    )
}

#[allow(clippy::too_many_arguments)]
fn layernorm_forward_on(
    k: &ElementwiseKernels,
    out: &mut [f32],
    mean: &mut [f32],
    rstd: &mut [f32],
    inp: &[f32],
    weight: &[f32],
    bias: &[f32],
    cols: usize,
    eps: f32,
) -> Result<(), KernelError> {
    let rows = check_rows("layernorm_forward", cols, &[out.len(), inp.len()])?;
    check_params(
        "layernorm_forward",
        cols,
        rows,
        &[weight.len(), bias.len()],
        &[mean.len(), rstd.len()],
    )?;
    // SAFETY: `k` comes from `for_isa` (its ISA is present); lengths were just checked.
    unsafe { (k.layernorm_forward)(out, mean, rstd, inp, weight, bias, cols, eps) };
    Ok(())
}

/// Gradients of [`layernorm_forward`], accumulated:
/// `dbias += sum_rows dout`, `dweight += sum_rows dout * xhat`,
/// `dinp += rstd * (dout*w - mean(dout*w) - xhat * mean(dout*w * xhat))`.
#[allow(clippy::too_many_arguments)]
pub fn layernorm_backward(
    dinp: &mut [f32],
    dweight: &mut [f32],
    dbias: &mut [f32],
    dout: &[f32],
    inp: &[f32],
    weight: &[f32],
    mean: &[f32],
    rstd: &[f32],
    cols: usize,
) -> Result<(), KernelError> {
    layernorm_backward_on(
        ElementwiseKernels::active(),
        dinp,
        dweight,
        dbias,
        dout,
        inp,
        weight,
        mean,
        rstd,
        cols,
    )
}

/// [`layernorm_backward`] on the given path.
#[allow(clippy::too_many_arguments)]
pub fn layernorm_backward_with(
    isa: Isa,
    dinp: &mut [f32],
    dweight: &mut [f32],
    dbias: &mut [f32],
    dout: &[f32],
    inp: &[f32],
    weight: &[f32],
    mean: &[f32],
    rstd: &[f32],
    cols: usize,
) -> Result<(), KernelError> {
    layernorm_backward_on(
        &ElementwiseKernels::for_isa(isa)?,
        dinp,
        dweight,
        dbias,
        dout,
        inp,
        weight,
        mean,
        rstd,
        cols,
    )
}

#[allow(clippy::too_many_arguments)]
fn layernorm_backward_on(
    k: &ElementwiseKernels,
    dinp: &mut [f32],
    dweight: &mut [f32],
    dbias: &mut [f32],
    dout: &[f32],
    inp: &[f32],
    weight: &[f32],
    mean: &[f32],
    rstd: &[f32],
    cols: usize,
) -> Result<(), KernelError> {
    let rows = check_rows(
        "layernorm_backward",
        cols,
        &[dinp.len(), dout.len(), inp.len()],
    )?;
    check_params(
        "layernorm_backward",
        cols,
        rows,
        &[dweight.len(), dbias.len(), weight.len()],
        &[mean.len(), rstd.len()],
    )?;
    // SAFETY: `k` comes from `for_isa` (its ISA is present); lengths were just checked.
    unsafe { (k.layernorm_backward)(dinp, dweight, dbias, dout, inp, weight, mean, rstd, cols) };
    Ok(())
}
