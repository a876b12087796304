//! Row-wise softmax and log-softmax over the last dimension.
//!
//! Shapes: `inp` and `out` are `rows x cols`, row-major, `rows = len / cols`.
//! Forward writes `out` (`=`); backward accumulates into `dinp` (`+=`), as gradients do.

use crate::KernelError;

pub(crate) fn check_rows(what: &str, cols: usize, lens: &[usize]) -> Result<usize, KernelError> {
    if cols == 0 {
        return Err(KernelError::LengthMismatch(format!(
            "{what}: cols must be > 0"
        )));
    }
    let len = lens[0];
    if len % cols != 0 || lens.iter().any(|&l| l != len) {
        return Err(KernelError::LengthMismatch(format!(
            "{what}: buffers of lengths {lens:?} are not all the same multiple of cols = {cols}"
        )));
    }
    Ok(len / cols)
}

/// `out[r, :] = softmax(inp[r, :])`, computed as `exp(x - max) / sum`. A row holding NaN gives
/// NaN; a row of all `-inf` gives NaN (0/0), as in PyTorch.
pub fn softmax_forward(out: &mut [f32], inp: &[f32], cols: usize) -> Result<(), KernelError> {
    check_rows("softmax_forward", cols, &[out.len(), inp.len()])?;
    crate::reference::softmax_forward_ref(out, inp, cols);
    Ok(())
}

/// `out[r, :] = log_softmax(inp[r, :]) = x - max - log(sum(exp(x - max)))`.
pub fn log_softmax_forward(out: &mut [f32], inp: &[f32], cols: usize) -> Result<(), KernelError> {
    check_rows("log_softmax_forward", cols, &[out.len(), inp.len()])?;
    crate::reference::log_softmax_forward_ref(out, inp, cols);
    Ok(())
}

/// Softmax backward from the forward's output `y`: `dinp += y * (dout - sum(dout * y))`.
pub fn softmax_backward(
    dinp: &mut [f32],
    dout: &[f32],
    y: &[f32],
    cols: usize,
) -> Result<(), KernelError> {
    check_rows("softmax_backward", cols, &[dinp.len(), dout.len(), y.len()])?;
    crate::reference::softmax_backward_ref(dinp, dout, y, cols);
    Ok(())
}

/// Log-softmax backward from the forward's output `y`: `dinp += dout - exp(y) * sum(dout)`.
pub fn log_softmax_backward(
    dinp: &mut [f32],
    dout: &[f32],
    y: &[f32],
    cols: usize,
) -> Result<(), KernelError> {
    check_rows(
        "log_softmax_backward",
        cols,
        &[dinp.len(), dout.len(), y.len()],
    )?;
    crate::reference::log_softmax_backward_ref(dinp, dout, y, cols);
    Ok(())
}
