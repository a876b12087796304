//! Batched matrix multiplication on `lithe_kernels::sgemm`, with broadcasting over the leading
//! (batch) dimensions and transposed operands expressed as strided views (never copied).
//!
//! Shapes: `a` is `[..., M, K]` (or `[..., K, M]` read transposed), `b` is `[..., K, N]` (or
//! `[..., N, K]` read transposed), the result is `[broadcast(...), M, N]`.

use super::Tensor;
use super::shape::{broadcast_shapes, broadcast_strides, checked_numel, for_each_row, numel};
use crate::error::{Error, Result};
use lithe_kernels::{
    BSource, GemmOptions, MatMut, MatRef, PackedB, sgemm, sgemm_fused, sgemm_fused_uninit,
};

/// Whether [`gemm_into`] overwrites its output or accumulates into it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GemmMode {
    /// `c = op(a) @ op(b)`; `c` must have the full broadcast batch shape.
    Overwrite,
    /// `c += op(a) @ op(b)`; `c`'s batch dims may be broadcast (size 1 or missing), and the
    /// products of the batches that map onto one matrix of `c` are summed into it.
    Accumulate,
}

/// `(rows, cols)` of the stored matrices and the batch dims of an operand of rank >= 2.
fn split(op: &'static str, what: &str, t: &Tensor) -> Result<(usize, usize, Vec<usize>)> {
    if t.rank() < 2 {
        return Err(Error::shape(
            op,
            format!("{what} has shape {:?}; matmul needs rank >= 2", t.shape()),
        ));
    }
    let r = t.rank();
    Ok((
        t.shape()[r - 2],
        t.shape()[r - 1],
        t.shape()[..r - 2].to_vec(),
    ))
}

/// A stored `rows x cols` row-major matrix at `off`, transposed if `trans`.
fn view(data: &[f32], off: usize, rows: usize, cols: usize, trans: bool) -> Result<MatRef<'_>> {
    let m = MatRef::row_major(&data[off.min(data.len())..], rows, cols)?;
    Ok(if trans { m.t() } else { m })
}

/// `c (= or +=) op(a) @ op(b)` over broadcast batches; see [`GemmMode`].
pub(crate) fn gemm_into(
    a: &Tensor,
    ta: bool,
    b: &Tensor,
    tb: bool,
    c: &mut Tensor,
    mode: GemmMode,
) -> Result<()> {
    const OP: &str = "matmul";
    let (ra, ca, a_batch) = split(OP, "left operand", a)?;
    let (rb, cb, b_batch) = split(OP, "right operand", b)?;
    let (m, k) = if ta { (ca, ra) } else { (ra, ca) };
    let (k2, n) = if tb { (cb, rb) } else { (rb, cb) };
    if k != k2 {
        return Err(Error::shape(
            OP,
            format!(
                "inner dimensions differ: {:?}{} @ {:?}{}",
                a.shape(),
                if ta { "^T" } else { "" },
                b.shape(),
                if tb { "^T" } else { "" }
            ),
        ));
    }
    let batch = broadcast_shapes(OP, &a_batch, &b_batch)?;
    let (_, _, c_batch) = split(OP, "output", c)?;
    let c_ok = c.shape()[c.rank() - 2..] == [m, n]
        && match mode {
            GemmMode::Overwrite => c_batch == batch,
            GemmMode::Accumulate => {
                broadcast_shapes(OP, &c_batch, &batch).ok() == Some(batch.clone())
            }
        };
    if !c_ok {
        return Err(Error::shape(
            OP,
            format!(
                "output {:?} does not fit batch {batch:?} x [{m}, {n}]",
                c.shape()
            ),
        ));
    }
    let beta = if mode == GemmMode::Accumulate {
        1.0
    } else {
        0.0
    };
    let nb = numel(&batch);
    let (ad, bd) = (a.data(), b.data());
    let cd = c.data_mut();

    // Fold 1: a shared right operand (the Linear case x[B, T, C] @ W^T): one GEMM over the
    // stacked rows of a and c.
    if numel(&b_batch) == 1 && !ta && numel(&a_batch) == nb && numel(&c_batch) == nb {
        let av = view(ad, 0, nb * m, k, false)?;
        let bv = view(bd, 0, rb, cb, tb)?;
        sgemm(1.0, av, bv, beta, MatMut::row_major(cd, nb * m, n)?)?;
        return Ok(());
    }
    // Fold 2: a shared output summed over the batch with the contraction over stacked rows
    // (the weight gradient of the Linear case, dW += dY^T X).
    if mode == GemmMode::Accumulate
        && numel(&c_batch) == 1
        && numel(&a_batch) == nb
        && numel(&b_batch) == nb
        && ta
        && !tb
    {
        let av = view(ad, 0, nb * ra, ca, true)?;
        let bv = view(bd, 0, nb * rb, cb, false)?;
        sgemm(1.0, av, bv, beta, MatMut::row_major(cd, m, n)?)?;
        return Ok(());
    }
    // General case: one GEMM per batch index, offsets from broadcast strides.
    let scale = |s: Vec<usize>, size: usize| s.into_iter().map(|v| v * size).collect::<Vec<_>>();
    let sa = scale(broadcast_strides(&a_batch, &batch), ra * ca);
    let sb = scale(broadcast_strides(&b_batch, &batch), rb * cb);
    let sc = scale(broadcast_strides(&c_batch, &batch), m * n);
    // Walk the batch as rows of a [batch..., 1] shape so for_each_row visits every batch index.
    let mut walk = batch.clone();
    walk.push(1);
    let (mut sa, mut sb, mut sc) = (sa, sb, sc);
    sa.push(0);
    sb.push(0);
    sc.push(0);
    let mut result = Ok(());
    for_each_row(&walk, [&sa, &sb, &sc], |[oa, ob, oc]| {
        if result.is_err() {
            return;
        }
        result = (|| -> Result<()> {
            let av = view(ad, oa, ra, ca, ta)?;
            let bv = view(bd, ob, rb, cb, tb)?;
            let cv = MatMut::row_major(&mut cd[oc..oc + m * n], m, n)?;
            sgemm(1.0, av, bv, beta, cv)?;
            Ok(())
        })();
    });
    result
}

/// `op(a) @ op(b)` where `op` transposes the last two dimensions when its flag is set, batched
/// over broadcast leading dimensions. Both operands need rank >= 2 ([`Error::Shape`] otherwise,
/// and when the inner dimensions or the batch dimensions do not fit).
pub fn matmul_ex(a: &Tensor, ta: bool, b: &Tensor, tb: bool) -> Result<Tensor> {
    let (ra, ca, a_batch) = split("matmul", "left operand", a)?;
    let (rb, cb, b_batch) = split("matmul", "right operand", b)?;
    let m = if ta { ca } else { ra };
    let n = if tb { rb } else { cb };
    let mut shape = broadcast_shapes("matmul", &a_batch, &b_batch)?;
    shape.extend([m, n]);
    let mut c = Tensor::zeros(&shape);
    gemm_into(a, ta, b, tb, &mut c, GemmMode::Overwrite)?;
    Ok(c)
}

/// A Linear layer's `x[..., in] @ w[out, in]^T + bias[out] -> [..., out]`: one GEMM over all
/// leading rows with `w` read transposed in place and the bias added in the GEMM's epilogue (no
/// pass of its own). [`Error::Shape`] unless `x` has rank >= 2, `w` is `[out, in]` and `bias` is
/// `[out]`.
pub fn linear(x: &Tensor, w: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    if w.rank() != 2 {
        return Err(Error::shape(
            "linear",
            format!("weight {:?} must be [out, in]", w.shape()),
        ));
    }
    let (outputs, inputs) = (w.shape()[0], w.shape()[1]);
    let wt = MatRef::row_major(w.data(), outputs, inputs)?.t(); // [in, out], read in place
    linear_with(x, BSource::View(wt), bias, Output::Zeroed)
}

/// [`linear`] with the weight already packed for the GEMM ([`PackedB`] of `w^T`, `[in, out]`):
/// the inference path, where weights do not change between calls. Its output buffer is not
/// zeroed before the product writes it.
pub fn linear_packed(x: &Tensor, w_t: &PackedB, bias: Option<&Tensor>) -> Result<Tensor> {
    linear_with(x, BSource::Packed(w_t), bias, Output::Uninit)
}

/// How [`linear_with`] gets its output buffer.
#[derive(Clone, Copy)]
enum Output {
    /// A zeroed buffer the product overwrites. Training keeps this: without the zeroing pass,
    /// the ViT training step (`examples/vit_step`) measured 3% slower, the GELU passes that read
    /// this output (forward, and again in the backward) slowing down more than the pass saved.
    Zeroed,
    /// Uninitialized memory the product writes in full (`sgemm_fused_uninit`): about 8% off the
    /// inference forward (batch 64) of the same ViT at patch 4, 2% at patch 7.
    Uninit,
}

fn linear_with(
    x: &Tensor,
    w_t: BSource<'_>,
    bias: Option<&Tensor>,
    output: Output,
) -> Result<Tensor> {
    let (inputs, outputs) = match w_t {
        BSource::View(m) => (m.rows(), m.cols()),
        BSource::Packed(p) => (p.rows(), p.cols()),
    };
    let ok = x.rank() >= 2
        && x.shape()[x.rank() - 1] == inputs
        && bias.is_none_or(|b| b.shape() == [outputs]);
    if !ok {
        return Err(Error::shape(
            "linear",
            format!(
                "x {:?}, weight [{outputs}, {inputs}], bias {:?}: need x [..., in] and bias [out]",
                x.shape(),
                bias.map(|b| b.shape())
            ),
        ));
    }
    let rows: usize = x.shape()[..x.rank() - 1].iter().product();
    let mut shape = x.shape().to_vec();
    *shape.last_mut().expect("rank >= 2") = outputs;
    let xv = MatRef::row_major(x.data(), rows, inputs)?;
    let bias = bias.map(|b| b.data());
    let opts = GemmOptions::default();
    if let Output::Zeroed = output {
        let mut out = Tensor::zeros(&shape);
        let c = MatMut::row_major(out.data_mut(), rows, outputs)?;
        sgemm_fused(&opts, 1.0, xv, w_t, 0.0, bias, c)?;
        return Ok(out);
    }
    let len = checked_numel("linear", &shape)?;
    let mut out = Vec::with_capacity(len);
    sgemm_fused_uninit(
        &opts,
        1.0,
        xv,
        w_t,
        bias,
        &mut out.spare_capacity_mut()[..len],
    )?;
    // SAFETY: on Ok, sgemm_fused_uninit initialized all `len` values.
    unsafe { out.set_len(len) };
    Tensor::from_vec(out, &shape)
}

/// `a @ b`: `[..., M, K] x [..., K, N] -> [..., M, N]`.
pub fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    matmul_ex(a, false, b, false)
}

/// `a @ b^T` without copying `b`: `[..., M, K] x [..., N, K] -> [..., M, N]` (Linear with
/// `W[out, in]`: `x[B, T, in] @ W^T`).
pub fn matmul_t(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    matmul_ex(a, false, b, true)
}
