//! LayerNorm over the last dimension, forward and backward side by side (llm.c's argument order).
//!
//! Shapes: `inp`, `out`, `dinp`, `dout` are `rows x cols`; `weight`, `bias`, `dweight`, `dbias`
//! are `cols`; `mean`, `rstd` are `rows` (saved by the forward for the backward).
//! Forward writes (`=`); backward accumulates (`+=`) into `dinp`, `dweight` and `dbias`.

use crate::KernelError;
use crate::softmax::check_rows;

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
    let rows = check_rows("layernorm_forward", cols, &[out.len(), inp.len()])?;
    check_params(
        "layernorm_forward",
        cols,
        rows,
        &[weight.len(), bias.len()],
        &[mean.len(), rstd.len()],
    )?;
    crate::reference::layernorm_forward_ref(out, mean, rstd, inp, weight, bias, cols, eps);
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
    crate::reference::layernorm_backward_ref(
        dinp, dweight, dbias, dout, inp, weight, mean, rstd, cols,
    );
    Ok(())
}
