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
use lithe_kernels::{GemmOptions, MatMut, MatRef, sgemm_with, threads};

/// Sizes of one attention call, checked once.
#[derive(Clone, Copy, Debug)]
struct Dims {
    batch: usize,
    seq: usize,
    width: usize,
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
            head_dim: width / heads,
        })
    }

    /// Head `h` of one sample's `[T, H]` rows: `T x d`, row stride `H`.
    fn head<'a>(&self, sample: &'a [f32], h: usize) -> Result<MatRef<'a>> {
        let at = h * self.head_dim;
        Ok(MatRef::new(
            &sample[at..],
            self.seq,
            self.head_dim,
            self.width,
            1,
        )?)
    }

    fn head_mut<'a>(&self, sample: &'a mut [f32], h: usize) -> Result<MatMut<'a>> {
        let at = h * self.head_dim;
        Ok(MatMut::new(
            &mut sample[at..],
            self.seq,
            self.head_dim,
            self.width,
            1,
        )?)
    }

    /// Elements of one sample in a `[B, T, H]` buffer.
    fn sample_len(&self) -> usize {
        self.seq * self.width
    }
}

/// Samples run in parallel on lithe's pool; the GEMMs inside each stay single-threaded.
const SERIAL_GEMM: GemmOptions = GemmOptions {
    isa: None,
    threads: Some(1),
};

fn gemm(alpha: f32, a: MatRef<'_>, b: MatRef<'_>, beta: f32, c: MatMut<'_>) -> Result<()> {
    Ok(sgemm_with(&SERIAL_GEMM, alpha, a, b, beta, c)?)
}

/// One optional `[B, T, H]` gradient split into per-sample chunks (all `None` when not wanted).
fn per_sample(grad: Option<&mut Tensor>, batch: usize, len: usize) -> Vec<Option<&mut [f32]>> {
    match grad {
        Some(g) => g.data_mut().chunks_mut(len.max(1)).map(Some).collect(),
        None => (0..batch).map(|_| None).collect(),
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
    let (t, len) = (dims.seq, dims.sample_len());
    let mut out = vec![0f32; q.numel()];
    let mut probs = vec![0f32; dims.batch * heads * t * t];
    let (qd, kd, vd) = (q.data(), k.data(), v.data());
    let sample = |b: usize, out_b: &mut [f32], probs_b: &mut [f32]| -> Result<()> {
        let (q_b, k_b, v_b) = (&qd[b * len..], &kd[b * len..], &vd[b * len..]);
        let mut logits = vec![0f32; t * t];
        for (h, p) in probs_b.chunks_exact_mut(t * t).enumerate() {
            // S = scale * Q_h K_h^T (+ bias on every row), P = softmax(S) row by row.
            let s = MatMut::row_major(&mut logits, t, t)?;
            gemm(scale, dims.head(q_b, h)?, dims.head(k_b, h)?.t(), 0.0, s)?;
            if let Some(bias) = key_bias {
                let row_bias = &bias.data()[b * t..(b + 1) * t];
                for row in logits.chunks_exact_mut(t) {
                    for (x, &m) in row.iter_mut().zip(row_bias) {
                        *x += m;
                    }
                }
            }
            softmax_forward(p, &logits, t)?;
            // O_h = P V_h, written into its column block of out.
            let p = MatRef::row_major(p, t, t)?;
            gemm(1.0, p, dims.head(v_b, h)?, 0.0, dims.head_mut(out_b, h)?)?;
        }
        Ok(())
    };
    if dims.batch > 0 && len > 0 && t > 0 {
        let items: Vec<_> = out
            .chunks_mut(len)
            .zip(probs.chunks_mut(heads * t * t))
            .enumerate()
            .collect();
        threads::map(items, |(b, (out_b, probs_b))| sample(b, out_b, probs_b))
            .into_iter()
            .collect::<Result<()>>()?;
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
    let (t, len, batch) = (dims.seq, dims.sample_len(), dims.batch);
    let AttentionGrads { dq, dk, dv } = grads;
    let want_ds = dq.is_some() || dk.is_some();
    let (go, qd, kd, vd, pd) = (dout.data(), q.data(), k.data(), v.data(), probs.data());
    let sample = |b: usize,
                  mut dq_b: Option<&mut [f32]>,
                  mut dk_b: Option<&mut [f32]>,
                  mut dv_b: Option<&mut [f32]>|
     -> Result<()> {
        let (q_b, k_b, v_b, go_b) = (
            &qd[b * len..],
            &kd[b * len..],
            &vd[b * len..],
            &go[b * len..],
        );
        let probs_b = &pd[b * heads * t * t..(b + 1) * heads * t * t];
        let (mut dp, mut ds) = (vec![0f32; t * t], vec![0f32; t * t]);
        for (h, p_h) in probs_b.chunks_exact(t * t).enumerate() {
            let p = MatRef::row_major(p_h, t, t)?;
            let dout_h = dims.head(go_b, h)?;
            if let Some(dv) = dv_b.as_deref_mut() {
                gemm(1.0, p.t(), dout_h, 1.0, dims.head_mut(dv, h)?)?; // dV += P^T dO
            }
            if !want_ds {
                continue;
            }
            // dP = dO V^T, then dS = P * (dP - rowsum(dP * P)) (added into a zeroed dS).
            gemm(
                1.0,
                dout_h,
                dims.head(v_b, h)?.t(),
                0.0,
                MatMut::row_major(&mut dp, t, t)?,
            )?;
            ds.fill(0.0);
            softmax_backward(&mut ds, &dp, p_h, t)?;
            let ds_m = MatRef::row_major(&ds, t, t)?;
            if let Some(dq) = dq_b.as_deref_mut() {
                gemm(scale, ds_m, dims.head(k_b, h)?, 1.0, dims.head_mut(dq, h)?)?; // dQ += s dS K
            }
            if let Some(dk) = dk_b.as_deref_mut() {
                gemm(
                    scale,
                    ds_m.t(),
                    dims.head(q_b, h)?,
                    1.0,
                    dims.head_mut(dk, h)?,
                )?; // dK += s dS^T Q
            }
        }
        Ok(())
    };
    if batch == 0 || len == 0 || t == 0 {
        return Ok(());
    }
    let work: Vec<_> = per_sample(dq, batch, len)
        .into_iter()
        .zip(per_sample(dk, batch, len))
        .zip(per_sample(dv, batch, len))
        .enumerate()
        .collect();
    threads::map(work, |(b, ((dq_b, dk_b), dv_b))| {
        sample(b, dq_b, dk_b, dv_b)
    })
    .into_iter()
    .collect::<Result<()>>()?;
    Ok(())
}
