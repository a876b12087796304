//! GELU, exact (erf) and tanh-approximated, forward and backward side by side.
//!
//! Shapes: all buffers have the same length (element-wise). Forward writes (`=`); backward
//! accumulates (`+=`) into `dinp`.
//!
//! Each function runs on the process-wide path ([`crate::Isa::active`]); its `_with` twin takes an
//! explicit [`Isa`] (an error if this CPU lacks it). The erf GELU computes `Phi(x)` through
//! erfc, so it stays relatively accurate for negative x; the tanh GELU is evaluated as
//! `x * sigmoid(2u)`, the same function without the cancellation of `1 + tanh(u)`.

use crate::elementwise::ElementwiseKernels;
use crate::{Isa, KernelError};

/// Which GELU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum GeluKind {
    /// `x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2))` (BERT, PyTorch's default).
    #[default]
    Erf,
    /// `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))` (GPT-2, PyTorch's `approximate="tanh"`).
    Tanh,
}

fn check_same(what: &str, lens: &[usize]) -> Result<(), KernelError> {
    if lens.iter().any(|&l| l != lens[0]) {
        return Err(KernelError::LengthMismatch(format!(
            "{what}: buffer lengths {lens:?} differ"
        )));
    }
    Ok(())
}

/// `out = gelu(inp)`.
pub fn gelu_forward(out: &mut [f32], inp: &[f32], kind: GeluKind) -> Result<(), KernelError> {
    gelu_forward_on(ElementwiseKernels::active(), out, inp, kind)
}

/// [`gelu_forward`] on the given path.
pub fn gelu_forward_with(
    isa: Isa,
    out: &mut [f32],
    inp: &[f32],
    kind: GeluKind,
) -> Result<(), KernelError> {
    gelu_forward_on(&ElementwiseKernels::for_isa(isa)?, out, inp, kind)
}

fn gelu_forward_on(
    k: &ElementwiseKernels,
    out: &mut [f32],
    inp: &[f32],
    kind: GeluKind,
) -> Result<(), KernelError> {
    check_same("gelu_forward", &[out.len(), inp.len()])?;
    // SAFETY: `k` comes from `for_isa` (its ISA is present); lengths were just checked.
    unsafe { (k.gelu_forward)(out, inp, kind) };
    Ok(())
}

/// `dinp += gelu'(inp) * dout`.
pub fn gelu_backward(
    dinp: &mut [f32],
    inp: &[f32],
    dout: &[f32],
    kind: GeluKind,
) -> Result<(), KernelError> {
    gelu_backward_on(ElementwiseKernels::active(), dinp, inp, dout, kind)
}

/// [`gelu_backward`] on the given path.
pub fn gelu_backward_with(
    isa: Isa,
    dinp: &mut [f32],
    inp: &[f32],
    dout: &[f32],
    kind: GeluKind,
) -> Result<(), KernelError> {
    gelu_backward_on(&ElementwiseKernels::for_isa(isa)?, dinp, inp, dout, kind)
}

fn gelu_backward_on(
    k: &ElementwiseKernels,
    dinp: &mut [f32],
    inp: &[f32],
    dout: &[f32],
    kind: GeluKind,
) -> Result<(), KernelError> {
    check_same("gelu_backward", &[dinp.len(), inp.len(), dout.len()])?;
    // SAFETY: `k` comes from `for_isa` (its ISA is present); lengths were just checked.
    unsafe { (k.gelu_backward)(dinp, inp, dout, kind) };
    Ok(())
}
