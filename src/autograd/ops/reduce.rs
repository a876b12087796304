//! Sums and means over axes.

use crate::autograd::GradSlot;
use crate::autograd::{Graph, Var};
use crate::error::Result;
use crate::tensor::{self, Tensor};

/// `dx += broadcast(dout viewed with the reduced axes kept as 1) * scale`.
fn spread(
    slot: &mut GradSlot,
    dout: &Tensor,
    x_shape: &[usize],
    axes: &[usize],
    scale: f32,
) -> Result<()> {
    if slot.is_wanted() {
        let kept: Vec<usize> = x_shape
            .iter()
            .enumerate()
            .map(|(d, &n)| if axes.contains(&d) { 1 } else { n })
            .collect();
        let g = tensor::broadcast_to(&dout.reshape(&kept)?, x_shape)?;
        slot.axpy(scale, &g)?;
    }
    Ok(())
}

impl Graph {
    /// Sum over `axes` (`[..]` of the input; an empty list sums nothing). With `keepdim` the
    /// reduced axes stay as size 1, otherwise they are removed. Summing an empty axis gives 0.
    pub fn sum(&self, x: Var, axes: &[usize], keepdim: bool) -> Result<Var> {
        let out = tensor::sum(&self.value(x)?, axes, keepdim)?;
        let axes = axes.to_vec();
        self.record("sum", out, &[x], move |d, dout, ins, _out| {
            // dx += dout broadcast back over the reduced axes
            spread(&mut d[0], dout, ins[0].shape(), &axes, 1.0)
        })
    }

    /// Mean over `axes`; [`crate::Error::Empty`] when the reduced axes hold no element.
    pub fn mean(&self, x: Var, axes: &[usize], keepdim: bool) -> Result<Var> {
        let xv = self.value(x)?;
        let out = tensor::mean(&xv, axes, keepdim)?;
        let count: usize = axes.iter().map(|&a| xv.shape()[a]).product();
        let axes = axes.to_vec();
        self.record("mean", out, &[x], move |d, dout, ins, _out| {
            // dx += dout / count, broadcast back over the reduced axes
            spread(&mut d[0], dout, ins[0].shape(), &axes, 1.0 / count as f32)
        })
    }

    /// Sum of all elements, as a rank-0 scalar (composite: [`Graph::sum`] over every axis).
    pub fn sum_all(&self, x: Var) -> Result<Var> {
        let axes: Vec<usize> = (0..self.shape(x)?.len()).collect();
        self.sum(x, &axes, false)
    }

    /// Mean of all elements, as a rank-0 scalar (composite); [`crate::Error::Empty`] for an
    /// empty tensor.
    pub fn mean_all(&self, x: Var) -> Result<Var> {
        let axes: Vec<usize> = (0..self.shape(x)?.len()).collect();
        self.mean(x, &axes, false)
    }
}
