//! GELU, exact (erf) and tanh-approximated, forward and backward side by side.
//!
//! Shapes: all buffers have the same length (element-wise). Forward writes (`=`); backward
//! accumulates (`+=`) into `dinp`.

use crate::KernelError;

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
    check_same("gelu_forward", &[out.len(), inp.len()])?;
    crate::reference::gelu_forward_ref(out, inp, kind);
    Ok(())
}

/// `dinp += gelu'(inp) * dout`.
pub fn gelu_backward(
    dinp: &mut [f32],
    inp: &[f32],
    dout: &[f32],
    kind: GeluKind,
) -> Result<(), KernelError> {
    check_same("gelu_backward", &[dinp.len(), inp.len(), dout.len()])?;
    crate::reference::gelu_backward_ref(dinp, inp, dout, kind);
    Ok(())
}
