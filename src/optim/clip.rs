//! Gradient clipping by global L2 norm, as `torch.nn.utils.clip_grad_norm_`.

use crate::autograd::Param;
use crate::error::{Error, Result};

/// The L2 norm of all the gradients of `params` taken together (parameters without a gradient
/// count as zero). Squares are summed in `f64`.
pub fn grad_norm(params: &[Param]) -> f64 {
    params
        .iter()
        .filter_map(Param::grad)
        .map(|g| {
            g.data()
                .iter()
                .map(|&x| (x as f64) * (x as f64))
                .sum::<f64>()
        })
        .sum::<f64>()
        .sqrt()
}

/// Scales every gradient of `params` in place so that their global L2 norm is at most
/// `max_norm`, and returns the norm before clipping, like `torch.nn.utils.clip_grad_norm_`:
/// the factor is `max_norm / (total_norm + 1e-6)`, applied only when it is below 1.
///
/// [`Error::NonFinite`] (and the gradients left untouched) when the total norm is NaN or
/// infinite, as PyTorch's `error_if_nonfinite=True`: scaling by it would silently turn every
/// gradient into NaN or zero. [`Error::InvalidArgument`] for a negative or NaN `max_norm`.
/// A parameter listed twice is counted and scaled twice, as in PyTorch; do not run a backward
/// pass on the same parameters concurrently.
pub fn clip_grad_norm(params: &[Param], max_norm: f64) -> Result<f64> {
    const OP: &str = "clip_grad_norm";
    if max_norm.is_nan() || max_norm < 0.0 {
        return Err(Error::invalid(
            OP,
            format!("max_norm must be >= 0, got {max_norm}"),
        ));
    }
    let total = grad_norm(params);
    if !total.is_finite() {
        return Err(Error::NonFinite {
            op: OP,
            msg: format!("the total gradient norm is {total}"),
        });
    }
    let coef = max_norm / (total + 1e-6);
    if coef < 1.0 {
        let coef = coef as f32;
        for p in params {
            if let Some(g) = p.grad() {
                // Take the gradient out so that `g` is (usually) its buffer's only owner and the
                // scaling happens in place, then put the scaled one back.
                p.zero_grad();
                let mut g = g;
                for x in g.data_mut() {
                    *x *= coef;
                }
                p.accumulate_grad(g)?;
            }
        }
    }
    Ok(total)
}
