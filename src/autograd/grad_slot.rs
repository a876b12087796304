//! [`GradSlot`]: where a backward adds the gradient of one of its inputs.

use crate::error::Result;
use crate::tensor::{Tensor, sum_to_shape};

/// The gradient of one input of an op while the tape runs backward.
///
/// A slot starts as [`GradSlot::Zero`] (an implicit zero: nothing is allocated) and becomes
/// [`GradSlot::Sum`] on the first add. The first add of a tensor of the right shape stores it
/// without copying (tensors share their buffer), so an op that passes its output gradient
/// straight through (add, reshape, a residual) costs nothing, and no gradient is ever zero-filled
/// only to be added to.
#[derive(Clone, Debug)]
pub enum GradSlot {
    /// The input needs no gradient: adds are ignored.
    Unused,
    /// The input needs a gradient of this shape; nothing has been added yet.
    Zero(Vec<usize>),
    /// The running sum.
    Sum(Tensor),
}

impl GradSlot {
    /// Whether the input needs a gradient (the backward may skip work when it does not).
    pub fn is_wanted(&self) -> bool {
        !matches!(self, GradSlot::Unused)
    }

    /// `slot += g`, first summing `g` down to the slot's shape (undoing a broadcast).
    pub fn add(&mut self, g: &Tensor) -> Result<()> {
        match self {
            GradSlot::Unused => {}
            GradSlot::Zero(shape) => *self = GradSlot::Sum(sum_to_shape(g, shape)?),
            GradSlot::Sum(acc) => {
                let shape = acc.shape().to_vec();
                acc.add_assign(&sum_to_shape(g, &shape)?)?;
            }
        }
        Ok(())
    }

    /// `slot += alpha * g` (same shape, no broadcast).
    pub fn axpy(&mut self, alpha: f32, g: &Tensor) -> Result<()> {
        match self {
            GradSlot::Unused => Ok(()),
            GradSlot::Zero(shape) if alpha == 1.0 => {
                g.expect_shape("GradSlot::axpy", shape)?;
                *self = GradSlot::Sum(g.clone());
                Ok(())
            }
            GradSlot::Zero(shape) => {
                g.expect_shape("GradSlot::axpy", shape)?;
                *self = GradSlot::Sum(g.scale(alpha));
                Ok(())
            }
            GradSlot::Sum(acc) => acc.axpy_assign(alpha, g),
        }
    }

    /// The running sum for a kernel that adds into it in place (`dx += ...`), zero-filled on
    /// first use; `None` when the input needs no gradient.
    pub fn sum_mut(&mut self) -> Option<&mut Tensor> {
        if let GradSlot::Zero(shape) = self {
            *self = GradSlot::Sum(Tensor::zeros(shape));
        }
        match self {
            GradSlot::Sum(acc) => Some(acc),
            _ => None,
        }
    }

    /// The gradient so far: `None` when unused or nothing was added.
    pub fn into_tensor(self) -> Option<Tensor> {
        match self {
            GradSlot::Sum(t) => Some(t),
            _ => None,
        }
    }
}
