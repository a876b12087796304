//! Ops that move elements: reshape, transpose, permute, slice, concat, index_select (gather),
//! scatter_add, and embedding lookup (composite).

use crate::autograd::{Graph, Var};
use crate::error::{Error, Result};
use crate::tensor::layout::{scatter_add_assign, slice_add_assign};
use crate::tensor::{self, Tensor};

impl Graph {
    /// The same elements under a new shape with the same element count.
    pub fn reshape(&self, x: Var, shape: &[usize]) -> Result<Var> {
        let out = self.value(x)?.reshape(shape)?;
        self.record("reshape", out, &[x], |d, dout, ins, _out| {
            // dx += dout viewed as x's shape
            if d[0].is_wanted() {
                d[0].add(&dout.reshape(ins[0].shape())?)?;
            }
            Ok(())
        })
    }

    /// Axes `a0` and `a1` swapped (a copy, so the result stays contiguous).
    pub fn transpose(&self, x: Var, a0: usize, a1: usize) -> Result<Var> {
        let out = tensor::transpose(&self.value(x)?, a0, a1)?;
        self.record("transpose", out, &[x], move |d, dout, _ins, _out| {
            // dx += dout with the same two axes swapped back
            if d[0].is_wanted() {
                d[0].add(&tensor::transpose(dout, a0, a1)?)?;
            }
            Ok(())
        })
    }

    /// Axes reordered: output axis `i` is input axis `perm[i]`.
    pub fn permute(&self, x: Var, perm: &[usize]) -> Result<Var> {
        let out = tensor::permute(&self.value(x)?, perm)?;
        let mut inverse = vec![0usize; perm.len()];
        for (i, &p) in perm.iter().enumerate() {
            inverse[p] = i;
        }
        self.record("permute", out, &[x], move |d, dout, _ins, _out| {
            // dx += dout permuted by the inverse permutation
            if d[0].is_wanted() {
                d[0].add(&tensor::permute(dout, &inverse)?)?;
            }
            Ok(())
        })
    }

    /// Elements `start..end` along `axis` ([`Error::Index`] if `end > shape[axis]`,
    /// [`Error::InvalidArgument`] if `start > end`).
    pub fn slice(&self, x: Var, axis: usize, start: usize, end: usize) -> Result<Var> {
        let out = tensor::slice(&self.value(x)?, axis, start, end)?;
        self.record("slice", out, &[x], move |d, dout, _ins, _out| {
            // dx[.., start..end, ..] += dout
            if let Some(dx) = d[0].sum_mut() {
                slice_add_assign(dx, axis, start, dout);
            }
            Ok(())
        })
    }

    /// The inputs joined along `axis` (all other dimensions must agree).
    pub fn concat(&self, xs: &[Var], axis: usize) -> Result<Var> {
        let values = xs
            .iter()
            .map(|&x| self.value(x))
            .collect::<Result<Vec<_>>>()?;
        let refs: Vec<&Tensor> = values.iter().collect();
        let out = tensor::concat(&refs, axis)?;
        self.record("concat", out, xs, move |d, dout, ins, _out| {
            // dx_i += dout[.., offset_i..offset_i + len_i, ..]
            let mut start = 0;
            for (slot, x) in d.iter_mut().zip(ins) {
                let len = x.shape()[axis];
                if slot.is_wanted() {
                    slot.add(&tensor::slice(dout, axis, start, start + len)?)?;
                }
                start += len;
            }
            Ok(())
        })
    }

    /// Gather along `axis`: `out[.., i, ..] = x[.., indices[i], ..]` (indices may repeat;
    /// [`Error::Index`] if one is `>= shape[axis]`).
    pub fn index_select(&self, x: Var, axis: usize, indices: &[usize]) -> Result<Var> {
        let out = tensor::index_select(&self.value(x)?, axis, indices)?;
        let indices = indices.to_vec();
        self.record("index_select", out, &[x], move |d, dout, _ins, _out| {
            // dx[.., indices[i], ..] += dout[.., i, ..] (scatter-add)
            if let Some(dx) = d[0].sum_mut() {
                scatter_add_assign(dx, axis, &indices, dout);
            }
            Ok(())
        })
    }

    /// `base` with `src` added at `indices` along `axis`:
    /// `out[.., indices[i], ..] = base[.., indices[i], ..] + src[.., i, ..]` (repeats
    /// accumulate). `src` has `base`'s shape with `indices.len()` along `axis`.
    pub fn scatter_add(&self, base: Var, axis: usize, indices: &[usize], src: Var) -> Result<Var> {
        let out = tensor::scatter_add(&self.value(base)?, axis, indices, &self.value(src)?)?;
        let indices = indices.to_vec();
        self.record(
            "scatter_add",
            out,
            &[base, src],
            move |d, dout, _ins, _out| {
                // dbase += dout, dsrc += dout[.., indices, ..] (gather)
                d[0].add(dout)?;
                if d[1].is_wanted() {
                    d[1].add(&tensor::index_select(dout, axis, &indices)?)?;
                }
                Ok(())
            },
        )
    }

    /// Embedding lookup: rows `ids` of `table[V, C]`, giving `[ids.len(), C]` (reshape to
    /// `[B, T, C]` as needed). Composite: [`Graph::index_select`] along axis 0, whose backward
    /// scatter-adds into the table. [`Error::Index`] for an id `>= V`; [`Error::Shape`] if the
    /// table is not 2-D.
    pub fn embedding(&self, table: Var, ids: &[usize]) -> Result<Var> {
        let shape = self.shape(table)?;
        if shape.len() != 2 {
            return Err(Error::shape(
                "embedding",
                format!("table must be [vocab, channels], got {shape:?}"),
            ));
        }
        self.index_select(table, 0, ids)
    }
}
