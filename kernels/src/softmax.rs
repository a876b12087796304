//! Row-wise softmax and log-softmax over the last dimension.
//!
//! Shapes: `inp` and `out` are `rows x cols`, row-major, `rows = len / cols`.
//! Forward writes `out` (`=`); backward accumulates into `dinp` (`+=`), as gradients do.
//!
//! Each function runs on the process-wide path ([`crate::Isa::active`]); its `_with` twin takes an
//! explicit [`Isa`] (an error if this CPU lacks it), so tests and benches can compare paths.
//! The bounds against the f64 references in [`crate::reference`] are stated in
//! `tests/elementwise_paths.rs`.

use crate::elementwise::ElementwiseKernels;
use crate::{Isa, KernelError};

pub(crate) fn check_rows(what: &str, cols: usize, lens: &[usize]) -> Result<usize, KernelError> {
    if cols == 0 {
        return Err(KernelError::LengthMismatch(format!(
            "{what}: cols must be > 0"
        )));
    }
    let len = lens[0];
    if !len.is_multiple_of(cols) || lens.iter().any(|&l| l != len) {
        return Err(KernelError::LengthMismatch(format!(
            "{what}: buffers of lengths {lens:?} are not all the same multiple of cols = {cols}"
        )));
    }
    Ok(len / cols)
}

/// `out[r, :] = softmax(inp[r, :])`, computed as `exp(x - max) / sum`. A row holding NaN gives
/// NaN; a row of all `-inf` gives NaN (0/0), as in PyTorch.
pub fn softmax_forward(out: &mut [f32], inp: &[f32], cols: usize) -> Result<(), KernelError> {
    softmax_forward_on(ElementwiseKernels::active(), out, inp, cols)
}

/// [`softmax_forward`] on the given path.
pub fn softmax_forward_with(
    isa: Isa,
    out: &mut [f32],
    inp: &[f32],
    cols: usize,
) -> Result<(), KernelError> {
    softmax_forward_on(&ElementwiseKernels::for_isa(isa)?, out, inp, cols)
}

fn softmax_forward_on(
    k: &ElementwiseKernels,
    out: &mut [f32],
    inp: &[f32],
    cols: usize,
) -> Result<(), KernelError> {
    check_rows("softmax_forward", cols, &[out.len(), inp.len()])?;
    // SAFETY: `k` comes from `for_isa` (its ISA is present); lengths were just checked.
    unsafe { (k.softmax_forward)(out, inp, cols) };
    Ok(())
}

/// Softmax backward from the forward's output `y`: `dinp += y * (dout - sum(dout * y))`.
pub fn softmax_backward(
    dinp: &mut [f32],
    dout: &[f32],
    y: &[f32],
    cols: usize,
) -> Result<(), KernelError> {
    softmax_backward_on(ElementwiseKernels::active(), dinp, dout, y, cols)
}

/// [`softmax_backward`] on the given path.
pub fn softmax_backward_with(
    isa: Isa,
    dinp: &mut [f32],
    dout: &[f32],
    y: &[f32],
    cols: usize,
) -> Result<(), KernelError> {
    softmax_backward_on(&ElementwiseKernels::for_isa(isa)?, dinp, dout, y, cols)
}

fn softmax_backward_on(
    k: &ElementwiseKernels,
    dinp: &mut [f32],
    dout: &[f32],
    y: &[f32],
    cols: usize,
) -> Result<(), KernelError> {
    check_rows("softmax_backward", cols, &[dinp.len(), dout.len(), y.len()])?;
    // SAFETY: `k` comes from `for_isa` (its ISA is present); lengths were just checked.
    unsafe { (k.softmax_backward)(dinp, dout, y, cols) };
    Ok(())
}

/// `out[r, :] = log_softmax(inp[r, :]) = x - max - log(sum(exp(x - max)))`.
pub fn log_softmax_forward(out: &mut [f32], inp: &[f32], cols: usize) -> Result<(), KernelError> {
    log_softmax_forward_on(ElementwiseKernels::active(), out, inp, cols)
}

/// [`log_softmax_forward`] on the given path.
pub fn log_softmax_forward_with(
    isa: Isa,
    out: &mut [f32],
    inp: &[f32],
    cols: usize,
) -> Result<(), KernelError> {
    log_softmax_forward_on(&ElementwiseKernels::for_isa(isa)?, out, inp, cols)
}

fn log_softmax_forward_on(
    k: &ElementwiseKernels,
    out: &mut [f32],
    inp: &[f32],
    cols: usize,
) -> Result<(), KernelError> {
    check_rows("log_softmax_forward", cols, &[out.len(), inp.len()])?;
    // SAFETY: `k` comes from `for_isa` (its ISA is present); lengths were just checked.
    unsafe { (k.log_softmax_forward)(out, inp, cols) };
    Ok(())
}

/// Log-softmax backward from the forward's output `y`: `dinp += dout - exp(y) * sum(dout)`.
pub fn log_softmax_backward(
    dinp: &mut [f32],
    dout: &[f32],
    y: &[f32],
    cols: usize,
) -> Result<(), KernelError> {
    log_softmax_backward_on(ElementwiseKernels::active(), dinp, dout, y, cols)
}

/// [`log_softmax_backward`] on the given path.
pub fn log_softmax_backward_with(
    isa: Isa,
    dinp: &mut [f32],
    dout: &[f32],
    y: &[f32],
    cols: usize,
) -> Result<(), KernelError> {
    log_softmax_backward_on(&ElementwiseKernels::for_isa(isa)?, dinp, dout, y, cols)
}

fn log_softmax_backward_on(
    k: &ElementwiseKernels,
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
    // SAFETY: `k` comes from `for_isa` (its ISA is present); lengths were just checked.
    unsafe { (k.log_softmax_backward)(dinp, dout, y, cols) };
    Ok(())
}
