//! Sums and means over a set of axes (accumulated in f64).

use super::Tensor;
use super::shape::{check_axis, for_each_row, strides};
use crate::error::{Error, Result};

/// Output shape with keepdim and the flags of the reduced axes; checks the axes.
fn reduced_shape(op: &'static str, shape: &[usize], axes: &[usize]) -> Result<Vec<bool>> {
    let mut reduced = vec![false; shape.len()];
    for &a in axes {
        check_axis(op, a, shape.len())?;
        if reduced[a] {
            return Err(Error::invalid(op, format!("axis {a} listed twice")));
        }
        reduced[a] = true;
    }
    Ok(reduced)
}

fn sum_impl(
    op: &'static str,
    t: &Tensor,
    axes: &[usize],
    keepdim: bool,
) -> Result<(Tensor, usize)> {
    let reduced = reduced_shape(op, t.shape(), axes)?;
    let kept: Vec<usize> = t
        .shape()
        .iter()
        .zip(&reduced)
        .map(|(&d, &r)| if r { 1 } else { d })
        .collect();
    let count: usize = t
        .shape()
        .iter()
        .zip(&reduced)
        .filter(|(_, r)| **r)
        .map(|(d, _)| d)
        .product();
    // Strides into the keepdim output, 0 along reduced axes.
    let ks = strides(&kept);
    let os: Vec<usize> = ks
        .iter()
        .zip(&reduced)
        .map(|(&s, &r)| if r { 0 } else { s })
        .collect();
    let is = strides(t.shape());
    let mut acc = vec![0f64; super::numel(&kept)];
    let data = t.data();
    let last = t.rank().saturating_sub(1);
    let (cols, step) = match t.shape().last() {
        Some(&c) => (c, os[last]),
        None => (1, 0),
    };
    for_each_row(t.shape(), [&is, &os], |[i, o]| {
        let row = &data[i..i + cols];
        match step {
            // Last axis kept (e.g. a bias gradient summed over [B, T]): element-wise, vectorises.
            1 => {
                for (a, &x) in acc[o..o + cols].iter_mut().zip(row) {
                    *a += x as f64;
                }
            }
            // Last axis reduced: one sum per row.
            0 => acc[o] += row.iter().map(|&x| x as f64).sum::<f64>(),
            _ => {
                for (j, &x) in row.iter().enumerate() {
                    acc[o + j * step] += x as f64;
                }
            }
        }
    });
    let out_shape: Vec<usize> = if keepdim {
        kept
    } else {
        t.shape()
            .iter()
            .zip(&reduced)
            .filter(|(_, r)| !**r)
            .map(|(&d, _)| d)
            .collect()
    };
    let out = Tensor::from_vec(acc.into_iter().map(|v| v as f32).collect(), &out_shape)?;
    Ok((out, count))
}

/// Sum over `axes` (each `< rank`, no repeats; an empty list sums nothing), keeping the reduced
/// axes as size 1 when `keepdim`. The sum over an empty axis is 0.
pub fn sum(t: &Tensor, axes: &[usize], keepdim: bool) -> Result<Tensor> {
    Ok(sum_impl("sum", t, axes, keepdim)?.0)
}

/// Mean over `axes`; [`Error::Empty`] if the reduced axes hold no element (0 / 0).
pub fn mean(t: &Tensor, axes: &[usize], keepdim: bool) -> Result<Tensor> {
    let (s, count) = sum_impl("mean", t, axes, keepdim)?;
    if count == 0 {
        return Err(Error::empty(
            "mean",
            format!("axes {axes:?} of shape {:?} hold no element", t.shape()),
        ));
    }
    Ok(s.scale(1.0 / count as f32))
}
