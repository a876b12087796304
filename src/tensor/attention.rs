//! Multi-head scaled dot-product attention on heads stored side by side, forward and backward.
//!
//! Shapes: `q`, `k`, `v` and the output are `[B, T, H]` with `H = heads * d`; head `h` is the
//! column block `h*d .. (h+1)*d`. Every per-head product is a strided GEMM view straight into
//! those blocks, so heads are never split into `[B, heads, T, d]` copies nor merged back.
//! `probs` is `[B, heads, T, T]`. `key_bias` is an additive logit bias per key, `[B, T]` (the
//! key padding mask, 0 or a large negative number), shared by every head and query.

use super::Tensor;
use crate::error::{Error, Result};
use lithe_kernels::softmax::{softmax_backward, softmax_forward};
use lithe_kernels::{MatMut, MatRef, sgemm};

/// Sizes of one attention call, checked once.
#[derive(Clone, Copy, Debug)]
struct Dims {
    batch: usize,
    seq: usize,
    width: usize,
    heads: usize,
    head_dim: usize,
}

impl Dims {
    fn check(
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        heads: usize,
        key_bias: Option<&Tensor>,
    ) -> Result<Dims> {
        const OP: &str = "attention";
        let [batch, seq, width] = q.shape()[..] else {
            return Err(Error::shape(
                OP,
                format!("q must be [B, T, H], got {:?}", q.shape()),
            ));
        };
        if k.shape() != q.shape() || v.shape() != q.shape() {
            return Err(Error::shape(
                OP,
                format!(
                    "q {:?}, k {:?}, v {:?} must agree",
                    q.shape(),
                    k.shape(),
                    v.shape()
                ),
            ));
        }
        if heads == 0 || !width.is_multiple_of(heads) {
            return Err(Error::shape(
                OP,
                format!("{heads} heads do not divide width {width}"),
            ));
        }
        if let Some(b) = key_bias
            && b.numel() != batch * seq
        {
            return Err(Error::shape(
                OP,
                format!(
                    "key bias {:?} must hold [B, T] = [{batch}, {seq}]",
                    b.shape()
                ),
            ));
        }
        Ok(Dims {
            batch,
            seq,
            width,
            heads,
            head_dim: width / heads,
        })
    }

    /// Head `h` of sample `b` in a `[B, T, H]` buffer: `T x d`, row stride `H`.
    fn head<'a>(&self, data: &'a [f32], b: usize, h: usize) -> Result<MatRef<'a>> {
        let at = b * self.seq * self.width + h * self.head_dim;
        Ok(MatRef::new(
            &data[at..],
            self.seq,
            self.head_dim,
            self.width,
            1,
        )?)
    }

    fn head_mut<'a>(&self, data: &'a mut [f32], b: usize, h: usize) -> Result<MatMut<'a>> {
        let at = b * self.seq * self.width + h * self.head_dim;
        Ok(MatMut::new(
            &mut data[at..],
            self.seq,
            self.head_dim,
            self.width,
            1,
        )?)
    }

    /// The `T x T` probability block of `(b, h)` in a `[B, heads, T, T]` buffer.
    fn block(&self, b: usize, h: usize) -> std::ops::Range<usize> {
        let tt = self.seq * self.seq;
        let at = (b * self.heads + h) * tt;
        at..at + tt
    }
}

/// `out = softmax(scale * Q K^T + key_bias) V` per sample and head. Returns `(out [B, T, H],
/// probs [B, heads, T, T])`; [`Error::Shape`] when the shapes do not fit.
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    heads: usize,
    scale: f32,
    key_bias: Option<&Tensor>,
) -> Result<(Tensor, Tensor)> {
    let dims = Dims::check(q, k, v, heads, key_bias)?;
    let (t, n) = (dims.seq, dims.batch * dims.heads);
    let mut out = vec![0f32; q.numel()];
    let mut probs = vec![0f32; n * t * t];
    let mut logits = vec![0f32; t * t];
    let (qd, kd, vd) = (q.data(), k.data(), v.data());
    for b in 0..dims.batch {
        for h in 0..heads {
            // S = scale * Q_h K_h^T (+ bias on every row), P = softmax(S) row by row.
            let s = MatMut::row_major(&mut logits, t, t)?;
            sgemm(
                scale,
                dims.head(qd, b, h)?,
                dims.head(kd, b, h)?.t(),
                0.0,
                s,
            )?;
            if let Some(bias) = key_bias {
                let row_bias = &bias.data()[b * t..(b + 1) * t];
                for row in logits.chunks_exact_mut(t) {
                    for (x, &m) in row.iter_mut().zip(row_bias) {
                        *x += m;
                    }
                }
            }
            let p = &mut probs[dims.block(b, h)];
            softmax_forward(p, &logits, t)?;
            // O_h = P V_h, written into its column block of out.
            let p = MatRef::row_major(p, t, t)?;
            sgemm(
                1.0,
                p,
                dims.head(vd, b, h)?,
                0.0,
                dims.head_mut(&mut out, b, h)?,
            )?;
        }
    }
    Ok((
        Tensor::from_vec(out, q.shape())?,
        Tensor::from_vec(probs, &[dims.batch, heads, t, t])?,
    ))
}

/// Where [`attention_backward`] adds the input gradients (`None`: not wanted), each `[B, T, H]`.
pub(crate) struct AttentionGrads<'a> {
    pub dq: Option<&'a mut Tensor>,
    pub dk: Option<&'a mut Tensor>,
    pub dv: Option<&'a mut Tensor>,
}

/// Adds the gradients of [`attention`] for output gradient `dout [B, T, H]`, given its inputs
/// and the `probs` it returned. Per head, with `dS = softmax'(P) (dO V^T)`:
/// `dQ += scale dS K`, `dK += scale dS^T Q`, `dV += P^T dO`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn attention_backward(
    dout: &Tensor,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    probs: &Tensor,
    heads: usize,
    scale: f32,
    grads: AttentionGrads<'_>,
) -> Result<()> {
    let dims = Dims::check(q, k, v, heads, None)?;
    dout.expect_shape("attention backward", q.shape())?;
    let t = dims.seq;
    let AttentionGrads { dq, dk, dv } = grads;
    let mut dq = dq.map(|g| g.data_mut());
    let mut dk = dk.map(|g| g.data_mut());
    let mut dv = dv.map(|g| g.data_mut());
    let (go, qd, kd, vd, pd) = (dout.data(), q.data(), k.data(), v.data(), probs.data());
    let mut dp = vec![0f32; t * t];
    let mut ds = vec![0f32; t * t];
    for b in 0..dims.batch {
        for h in 0..heads {
            let p = MatRef::row_major(&pd[dims.block(b, h)], t, t)?;
            let dout_h = dims.head(go, b, h)?;
            if let Some(dv) = dv.as_deref_mut() {
                sgemm(1.0, p.t(), dout_h, 1.0, dims.head_mut(dv, b, h)?)?; // dV += P^T dO
            }
            if dq.is_none() && dk.is_none() {
                continue;
            }
            // dP = dO V^T, then dS = P * (dP - rowsum(dP * P)) (added into a zeroed dS).
            let dp_m = MatMut::row_major(&mut dp, t, t)?;
            sgemm(1.0, dout_h, dims.head(vd, b, h)?.t(), 0.0, dp_m)?;
            ds.fill(0.0);
            softmax_backward(&mut ds, &dp, &pd[dims.block(b, h)], t)?;
            let ds_m = MatRef::row_major(&ds, t, t)?;
            if let Some(dq) = dq.as_deref_mut() {
                sgemm(
                    scale,
                    ds_m,
                    dims.head(kd, b, h)?,
                    1.0,
                    dims.head_mut(dq, b, h)?,
                )?;
            }
            if let Some(dk) = dk.as_deref_mut() {
                sgemm(
                    scale,
                    ds_m.t(),
                    dims.head(qd, b, h)?,
                    1.0,
                    dims.head_mut(dk, b, h)?,
                )?;
            }
        }
    }
    Ok(())
}
