//! Shape arithmetic: element counts, row-major strides, NumPy broadcasting, axis checks, and the
//! strided loop every layout-changing op runs on.

use crate::error::{Error, Result};

/// Number of elements of a tensor of this shape (1 for a rank-0 scalar).
pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// [`numel`] with overflow checks: [`Error::Shape`] naming `op` when the product of `shape`
/// overflows `usize` or its f32 elements would exceed `isize::MAX` bytes (the most one buffer
/// can hold), so a bogus shape is an error instead of a wrapped count or an allocation abort.
pub fn checked_numel(op: &'static str, shape: &[usize]) -> Result<usize> {
    if shape.contains(&0) {
        return Ok(0);
    }
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= isize::MAX as usize / std::mem::size_of::<f32>())
        .ok_or_else(|| Error::shape(op, format!("{shape:?} has too many elements")))
}

/// Row-major (C order) strides, in elements.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1usize; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        s[d] = s[d + 1] * shape[d + 1];
    }
    s
}

/// The shape two operands broadcast to, by NumPy's rule: align trailing dimensions; two sizes
/// agree when they are equal or one of them is 1; missing leading dimensions count as 1.
pub fn broadcast_shapes(op: &'static str, a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    let rank = a.len().max(b.len());
    let mut out = vec![0usize; rank];
    for i in 0..rank {
        let da = if i < rank - a.len() {
            1
        } else {
            a[i - (rank - a.len())]
        };
        let db = if i < rank - b.len() {
            1
        } else {
            b[i - (rank - b.len())]
        };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => {
                return Err(Error::shape(
                    op,
                    format!("shapes {a:?} and {b:?} do not broadcast"),
                ));
            }
        };
    }
    Ok(out)
}

/// Strides (in elements of a contiguous tensor of shape `shape`) for reading it as if it had the
/// broadcast shape `out`: 0 along broadcast (size-1 or missing) dimensions. `shape` must
/// broadcast to `out` (checked by the caller).
pub(crate) fn broadcast_strides(shape: &[usize], out: &[usize]) -> Vec<usize> {
    let own = strides(shape);
    let lead = out.len() - shape.len();
    (0..out.len())
        .map(|i| {
            if i < lead || (shape[i - lead] == 1 && out[i] != 1) {
                0
            } else {
                own[i - lead]
            }
        })
        .collect()
}

/// `Ok(())` when `axis < rank`, else [`Error::Axis`].
pub(crate) fn check_axis(op: &'static str, axis: usize, rank: usize) -> Result<()> {
    if axis < rank {
        Ok(())
    } else {
        Err(Error::Axis { op, axis, rank })
    }
}

/// Sizes `(outer, dim, inner)` of a row-major tensor seen as `[outer, shape[axis], inner]`.
pub(crate) fn split_at_axis(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    (
        numel(&shape[..axis]),
        shape[axis],
        numel(&shape[axis + 1..]),
    )
}

/// Calls `f(offsets)` once for every index of `shape[..rank - 1]` in row-major order, where
/// `offsets[k] = sum_d index[d] * strides[k][d]`; the callee walks the last dimension itself
/// (with `strides[k][rank - 1]`). A rank-0 shape calls `f([0; K])` once; a shape with a zero
/// dimension calls nothing.
pub(crate) fn for_each_row<const K: usize>(
    shape: &[usize],
    strides: [&[usize]; K],
    mut f: impl FnMut([usize; K]),
) {
    if shape.contains(&0) {
        return;
    }
    let outer = shape.len().saturating_sub(1);
    let mut idx = vec![0usize; outer];
    let mut off = [0usize; K];
    loop {
        f(off);
        let mut d = outer;
        loop {
            if d == 0 {
                return;
            }
            d -= 1;
            idx[d] += 1;
            for k in 0..K {
                off[k] += strides[k][d];
            }
            if idx[d] < shape[d] {
                break;
            }
            for k in 0..K {
                off[k] -= strides[k][d] * shape[d];
            }
            idx[d] = 0;
        }
    }
}
