//! Broadcasting element-wise binary ops, and the two maps between a shape and its broadcast:
//! [`broadcast_to`] (forward of broadcasting) and [`sum_to_shape`] (its adjoint, used by every
//! backward that has to undo a broadcast).

use super::shape::{broadcast_shapes, broadcast_strides, for_each_row, numel};
use super::{Tensor, reduce};
use crate::error::{Error, Result};

/// `out = f(a, b)` with NumPy broadcasting. `out` has the broadcast shape.
fn binary(op: &'static str, a: &Tensor, b: &Tensor, f: impl Fn(f32, f32) -> f32) -> Result<Tensor> {
    let shape = broadcast_shapes(op, a.shape(), b.shape())?;
    let (ad, bd) = (a.data(), b.data());
    // Fast paths: same shape; one side a single value; one side repeats along leading dims
    // (e.g. x[B, T, C] + bias[C], or + pos[1, T, C]: leading 1s do not change the repeat).
    if a.shape() == b.shape() {
        let data = ad.iter().zip(bd).map(|(&x, &y)| f(x, y)).collect();
        return Tensor::from_vec(data, &shape);
    }
    if bd.len() == 1 && ad.len() == numel(&shape) {
        let y = bd[0];
        return Tensor::from_vec(ad.iter().map(|&x| f(x, y)).collect(), &shape);
    }
    if ad.len() == 1 && bd.len() == numel(&shape) {
        let x = ad[0];
        return Tensor::from_vec(bd.iter().map(|&y| f(x, y)).collect(), &shape);
    }
    let n = numel(&shape);
    // (Row by row into a preallocated output, which vectorises; a `flat_map` does not.)
    if ad.len() == n && !bd.is_empty() && shape.ends_with(without_leading_ones(b.shape())) {
        let mut data = vec![0f32; n];
        for (out, row) in data
            .chunks_exact_mut(bd.len())
            .zip(ad.chunks_exact(bd.len()))
        {
            for ((o, &x), &y) in out.iter_mut().zip(row).zip(bd) {
                *o = f(x, y);
            }
        }
        return Tensor::from_vec(data, &shape);
    }
    if bd.len() == n && !ad.is_empty() && shape.ends_with(without_leading_ones(a.shape())) {
        let mut data = vec![0f32; n];
        for (out, row) in data
            .chunks_exact_mut(ad.len())
            .zip(bd.chunks_exact(ad.len()))
        {
            for ((o, &x), &y) in out.iter_mut().zip(ad).zip(row) {
                *o = f(x, y);
            }
        }
        return Tensor::from_vec(data, &shape);
    }
    // General case: walk the output row by row with broadcast strides into a and b.
    let (sa, sb) = (
        broadcast_strides(a.shape(), &shape),
        broadcast_strides(b.shape(), &shape),
    );
    let last = shape.len().saturating_sub(1);
    let (cols, ia, ib) = match shape.last() {
        Some(&c) => (c, sa[last], sb[last]),
        None => (1, 0, 0),
    };
    let mut data = Vec::with_capacity(n);
    // Along the last axis each side either steps by one or stays put (stride 0): slice loops
    // for those, which vectorise; element pushes only for what is left (a size-1 last axis).
    for_each_row(&shape, [&sa, &sb], |[oa, ob]| match (ia, ib) {
        (1, 1) => {
            let rows = ad[oa..oa + cols].iter().zip(&bd[ob..ob + cols]);
            data.extend(rows.map(|(&x, &y)| f(x, y)));
        }
        (1, 0) => {
            let y = bd[ob];
            data.extend(ad[oa..oa + cols].iter().map(|&x| f(x, y)));
        }
        (0, 1) => {
            let x = ad[oa];
            data.extend(bd[ob..ob + cols].iter().map(|&y| f(x, y)));
        }
        _ => data.extend((0..cols).map(|j| f(ad[oa + j * ia], bd[ob + j * ib]))),
    });
    Tensor::from_vec(data, &shape)
}

/// `shape` without its leading 1s (which a broadcast treats as absent).
fn without_leading_ones(shape: &[usize]) -> &[usize] {
    let first = shape.iter().position(|&d| d != 1).unwrap_or(shape.len());
    &shape[first..]
}

/// `a + b` with broadcasting.
pub fn add(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    binary("add", a, b, |x, y| x + y)
}

/// `a - b` with broadcasting.
pub fn sub(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    binary("sub", a, b, |x, y| x - y)
}

/// `a * b` (element-wise) with broadcasting.
pub fn mul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    binary("mul", a, b, |x, y| x * y)
}

/// `a / b` (element-wise) with broadcasting. Division by zero follows IEEE (inf or NaN).
pub fn div(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    binary("div", a, b, |x, y| x / y)
}

/// `t` repeated along broadcast dimensions to fill `shape`; [`Error::Shape`] if `t` does not
/// broadcast to exactly `shape`.
pub fn broadcast_to(t: &Tensor, shape: &[usize]) -> Result<Tensor> {
    let out = broadcast_shapes("broadcast_to", t.shape(), shape)?;
    if out != shape {
        return Err(Error::shape(
            "broadcast_to",
            format!("{:?} does not broadcast to {shape:?}", t.shape()),
        ));
    }
    if t.shape() == shape {
        return Ok(t.clone());
    }
    let n = super::shape::checked_numel("broadcast_to", shape)?;
    let mut data = Vec::new();
    data.try_reserve_exact(n)
        .map_err(|e| Error::shape("broadcast_to", format!("cannot allocate {shape:?}: {e}")))?;
    let strides = broadcast_strides(t.shape(), shape);
    let src = t.data();
    let last = shape.len().saturating_sub(1);
    let (cols, step) = match shape.last() {
        Some(&c) => (c, strides[last]),
        None => (1, 0),
    };
    for_each_row(shape, [&strides], |[o]| {
        data.extend((0..cols).map(|j| src[o + j * step]));
    });
    Tensor::from_vec(data, shape)
}

/// The adjoint of broadcasting: sums `t` over the dimensions along which a tensor of shape
/// `shape` would have been broadcast to `t.shape()`, giving a tensor of shape `shape`.
/// [`Error::Shape`] if `shape` does not broadcast to `t.shape()`.
pub fn sum_to_shape(t: &Tensor, shape: &[usize]) -> Result<Tensor> {
    if t.shape() == shape {
        return Ok(t.clone());
    }
    let full = broadcast_shapes("sum_to_shape", shape, t.shape())?;
    if full != t.shape() {
        return Err(Error::shape(
            "sum_to_shape",
            format!("{shape:?} does not broadcast to {:?}", t.shape()),
        ));
    }
    let lead = t.rank() - shape.len();
    let axes: Vec<usize> = (0..t.rank())
        .filter(|&d| d < lead || (shape[d - lead] == 1 && t.shape()[d] != 1))
        .collect();
    reduce::sum(t, &axes, true)?.reshape(shape)
}
