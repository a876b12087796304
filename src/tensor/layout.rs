//! Ops that move elements without arithmetic (except [`scatter_add`]'s sums): permute,
//! transpose, slice, concat, index_select (gather) and scatter_add (its adjoint).
//!
//! Along an axis, a row-major tensor is seen as `[outer, dim, inner]` (see `split_at_axis`).

use super::Tensor;
use super::shape::{check_axis, for_each_row, split_at_axis, strides};
use crate::error::{Error, Result};

/// Dimensions reordered: output axis `i` is input axis `perm[i]`. [`Error::InvalidArgument`]
/// unless `perm` is a permutation of `0..rank`.
pub fn permute(t: &Tensor, perm: &[usize]) -> Result<Tensor> {
    let rank = t.rank();
    let mut seen = vec![false; rank];
    if perm.len() != rank
        || perm
            .iter()
            .any(|&p| p >= rank || std::mem::replace(&mut seen[p], true))
    {
        return Err(Error::invalid(
            "permute",
            format!(
                "{perm:?} is not a permutation of the {rank} axes of {:?}",
                t.shape()
            ),
        ));
    }
    if perm.iter().enumerate().all(|(i, &p)| i == p) {
        return Ok(t.clone());
    }
    let shape: Vec<usize> = perm.iter().map(|&p| t.shape()[p]).collect();
    let is = strides(t.shape());
    let ps: Vec<usize> = perm.iter().map(|&p| is[p]).collect();
    let cols = *shape.last().unwrap_or(&1);
    let step = *ps.last().unwrap_or(&0);
    let src = t.data();
    let mut data = Vec::with_capacity(t.numel());
    if step == 1 {
        // The last axis stays last (e.g. [B, T, nh, d] -> [B, nh, T, d]): whole rows are
        // contiguous in the input, so copy them as slices.
        for_each_row(&shape, [&ps], |[o]| {
            data.extend_from_slice(&src[o..o + cols]);
        });
    } else {
        for_each_row(&shape, [&ps], |[o]| {
            for j in 0..cols {
                data.push(src[o + j * step]);
            }
        });
    }
    Tensor::from_vec(data, &shape)
}

/// Axes `a0` and `a1` swapped (a [`permute`]).
pub fn transpose(t: &Tensor, a0: usize, a1: usize) -> Result<Tensor> {
    check_axis("transpose", a0, t.rank())?;
    check_axis("transpose", a1, t.rank())?;
    let mut perm: Vec<usize> = (0..t.rank()).collect();
    perm.swap(a0, a1);
    permute(t, &perm)
}

/// Elements `start..end` along `axis`. [`Error::Index`] unless `start <= end <= shape[axis]`.
pub fn slice(t: &Tensor, axis: usize, start: usize, end: usize) -> Result<Tensor> {
    check_axis("slice", axis, t.rank())?;
    let (outer, dim, inner) = split_at_axis(t.shape(), axis);
    if end > dim {
        return Err(Error::Index {
            op: "slice",
            index: end,
            size: dim,
        });
    }
    if start > end {
        return Err(Error::invalid(
            "slice",
            format!("start {start} > end {end}"),
        ));
    }
    let mut shape = t.shape().to_vec();
    shape[axis] = end - start;
    let src = t.data();
    let mut data = Vec::with_capacity(outer * (end - start) * inner);
    for o in 0..outer {
        data.extend_from_slice(&src[(o * dim + start) * inner..(o * dim + end) * inner]);
    }
    Tensor::from_vec(data, &shape)
}

/// `dst[.., start + i, ..] += src[.., i, ..]` along `axis`: the adjoint of [`slice`].
/// Shapes are the caller's to check (crate-internal).
pub(crate) fn slice_add_assign(dst: &mut Tensor, axis: usize, start: usize, src: &Tensor) {
    let (outer, dim, inner) = split_at_axis(dst.shape(), axis);
    let len = src.shape()[axis];
    let s = src.data();
    let d = dst.data_mut();
    for o in 0..outer {
        let drow = &mut d[(o * dim + start) * inner..(o * dim + start + len) * inner];
        for (a, &b) in drow
            .iter_mut()
            .zip(&s[o * len * inner..(o + 1) * len * inner])
        {
            *a += b;
        }
    }
}

/// The tensors joined along `axis`; all must have the same rank and agree on every other
/// dimension. [`Error::Empty`] for an empty list.
pub fn concat(ts: &[&Tensor], axis: usize) -> Result<Tensor> {
    let first = ts
        .first()
        .ok_or_else(|| Error::empty("concat", "no tensors to join"))?;
    check_axis("concat", axis, first.rank())?;
    for t in ts {
        let same = t.rank() == first.rank()
            && t.shape()
                .iter()
                .zip(first.shape())
                .enumerate()
                .all(|(d, (a, b))| d == axis || a == b);
        if !same {
            return Err(Error::shape(
                "concat",
                format!(
                    "{:?} and {:?} differ outside axis {axis}",
                    first.shape(),
                    t.shape()
                ),
            ));
        }
    }
    let mut shape = first.shape().to_vec();
    shape[axis] = ts.iter().map(|t| t.shape()[axis]).sum();
    let (outer, _, inner) = split_at_axis(first.shape(), axis);
    let mut data = Vec::with_capacity(super::numel(&shape));
    for o in 0..outer {
        for t in ts {
            let n = t.shape()[axis] * inner;
            data.extend_from_slice(&t.data()[o * n..(o + 1) * n]);
        }
    }
    Tensor::from_vec(data, &shape)
}

fn check_indices(op: &'static str, indices: &[usize], size: usize) -> Result<()> {
    match indices.iter().find(|&&i| i >= size) {
        Some(&index) => Err(Error::Index { op, index, size }),
        None => Ok(()),
    }
}

/// Gather along `axis`: `out[.., i, ..] = t[.., indices[i], ..]`; the output has
/// `indices.len()` in place of `shape[axis]`. Indices may repeat. [`Error::Index`] for an index
/// `>= shape[axis]`.
pub fn index_select(t: &Tensor, axis: usize, indices: &[usize]) -> Result<Tensor> {
    check_axis("index_select", axis, t.rank())?;
    let (outer, dim, inner) = split_at_axis(t.shape(), axis);
    check_indices("index_select", indices, dim)?;
    let mut shape = t.shape().to_vec();
    shape[axis] = indices.len();
    let src = t.data();
    let mut data = Vec::with_capacity(outer * indices.len() * inner);
    for o in 0..outer {
        for &i in indices {
            data.extend_from_slice(&src[(o * dim + i) * inner..(o * dim + i + 1) * inner]);
        }
    }
    Tensor::from_vec(data, &shape)
}

/// `base` with `src` added at `indices` along `axis`: `out[.., indices[i], ..] += src[.., i, ..]`
/// (repeated indices accumulate). `src` must equal `base` except `src.shape[axis] ==
/// indices.len()`. The adjoint of [`index_select`].
pub fn scatter_add(base: &Tensor, axis: usize, indices: &[usize], src: &Tensor) -> Result<Tensor> {
    check_axis("scatter_add", axis, base.rank())?;
    let mut expect = base.shape().to_vec();
    expect[axis] = indices.len();
    src.expect_shape("scatter_add", &expect)?;
    let (_, dim, _) = split_at_axis(base.shape(), axis);
    check_indices("scatter_add", indices, dim)?;
    let mut out = base.clone();
    scatter_add_assign(&mut out, axis, indices, src);
    Ok(out)
}

/// In-place [`scatter_add`] without checks (crate-internal; the caller checked).
pub(crate) fn scatter_add_assign(dst: &mut Tensor, axis: usize, indices: &[usize], src: &Tensor) {
    let (outer, dim, inner) = split_at_axis(dst.shape(), axis);
    let n = indices.len();
    let s = src.data();
    let d = dst.data_mut();
    for o in 0..outer {
        for (k, &i) in indices.iter().enumerate() {
            let drow = &mut d[(o * dim + i) * inner..(o * dim + i + 1) * inner];
            let srow = &s[(o * n + k) * inner..(o * n + k + 1) * inner];
            for (a, &b) in drow.iter_mut().zip(srow) {
                *a += b;
            }
        }
    }
}
