//! One int8 Transformer block: f32 LayerNorms and attention products around int8 Linears.
//!
//! Legend: B = batch, T = tokens, H = hidden width, A = nh * d (width of Q, K, V), nh = heads,
//! d = head width, I = MLP width, L = real (unpadded) tokens of one sample.

use super::Int8Linear;
use crate::error::{Error, Result};
use crate::nn::{LayerNorm, NormPlacement};
use lithe_kernels::gelu::GeluKind;
use lithe_kernels::gemm_i8::Activation;
use lithe_kernels::layernorm::layernorm_forward;
use lithe_kernels::softmax::softmax_forward;
use lithe_kernels::{GemmOptions, MatMut, MatRef, sgemm_with, threads};
use rayon::prelude::*;

/// LayerNorm parameters in f32.
#[derive(Clone)]
pub(crate) struct Norm {
    /// `[H]`.
    pub(crate) weight: Vec<f32>,
    /// `[H]`.
    pub(crate) bias: Vec<f32>,
    pub(crate) eps: f32,
}

impl Norm {
    pub(crate) fn from_nn(ln: &LayerNorm) -> Norm {
        Norm {
            weight: ln.weight.value().data().to_vec(),
            bias: ln.bias.value().data().to_vec(),
            eps: ln.eps,
        }
    }

    pub(crate) fn width(&self) -> usize {
        self.weight.len()
    }

    /// `out[r] = LN(inp[r])` for `rows` rows; `mean`, `rstd` (`>= rows`) are scratch.
    pub(crate) fn forward(
        &self,
        out: &mut [f32],
        inp: &[f32],
        rows: usize,
        mean: &mut [f32],
        rstd: &mut [f32],
    ) -> Result<()> {
        let n = rows * self.width();
        layernorm_forward(
            &mut out[..n],
            &mut mean[..rows],
            &mut rstd[..rows],
            &inp[..n],
            &self.weight,
            &self.bias,
            self.width(),
            self.eps,
        )?;
        Ok(())
    }
}

/// The Q, K, V projections: one GEMM on stacked weights when the three quantize their (shared)
/// input the same way, else three GEMMs writing into the same `[B*T, 3A]` buffer.
#[derive(Clone)]
pub(crate) enum Qkv {
    /// `[3A, H]`: Q rows, then K, then V.
    Fused(Box<Int8Linear>),
    /// Q, K, V, each `[A, H]`.
    Separate(Box<[Int8Linear; 3]>),
}

/// Scratch of one block forward, borrowed from the workspace.
pub(crate) struct BlockScratch<'a> {
    /// `[B*T, 3A]`.
    pub(crate) qkv: &'a mut [f32],
    /// `[B*T, A]`.
    pub(crate) ctx: &'a mut [f32],
    /// `[B*T, I]`.
    pub(crate) inner: &'a mut [f32],
    /// `[T, T]` attention logits of one head.
    pub(crate) scores: &'a mut [f32],
    /// `[T, T]` attention probabilities of one head.
    pub(crate) probs: &'a mut [f32],
    /// `[T, d]` context of one head, before it is copied into its columns of `ctx`.
    pub(crate) head_ctx: &'a mut [f32],
    /// Quantized Linear inputs, `[B*T, max(H, A, I)]`.
    pub(crate) q8: &'a mut [i8],
    /// `[B*T]`: dynamic activation scales, then LayerNorm statistics.
    pub(crate) row_scales: &'a mut [f32],
    pub(crate) mean: &'a mut [f32],
    pub(crate) rstd: &'a mut [f32],
}

/// Batch geometry of one forward.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Batch<'a> {
    pub(crate) batch: usize,
    pub(crate) seq: usize,
    /// Real tokens per sample (each in `1..=seq`); None when nothing is padded.
    pub(crate) lengths: Option<&'a [usize]>,
}

impl Batch<'_> {
    pub(crate) fn rows(&self) -> usize {
        self.batch * self.seq
    }

    pub(crate) fn len_of(&self, b: usize) -> usize {
        self.lengths.map_or(self.seq, |l| l[b])
    }
}

/// One block of an [`super::Int8Model`].
#[derive(Clone)]
pub(crate) struct Int8Block {
    pub(crate) heads: usize,
    pub(crate) qkv: Qkv,
    /// `[H, A]` (`attention.output.dense`).
    pub(crate) dense: Int8Linear,
    pub(crate) attn_norm: Norm,
    /// `[I, H]` (`intermediate.dense`), GELU fused.
    pub(crate) fc1: Int8Linear,
    /// `[H, I]` (`output.dense`).
    pub(crate) fc2: Int8Linear,
    pub(crate) mlp_norm: Norm,
}

impl Int8Block {
    /// A block from its parts, checked for consistent widths; Q, K and V are fused when their
    /// activation modes and bias presence agree.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        heads: usize,
        [q, k, v]: [Int8Linear; 3],
        dense: Int8Linear,
        attn_norm: Norm,
        fc1: Int8Linear,
        fc2: Int8Linear,
        mlp_norm: Norm,
    ) -> Result<Self> {
        const OP: &str = "Int8Block";
        let h = attn_norm.width();
        let a = q.out_features();
        let fits = [&q, &k, &v]
            .iter()
            .all(|l| l.in_features() == h && l.out_features() == a)
            && (dense.in_features(), dense.out_features()) == (a, h)
            && fc1.in_features() == h
            && (fc2.in_features(), fc2.out_features()) == (fc1.out_features(), h)
            && mlp_norm.width() == h;
        if !fits {
            return Err(Error::shape(
                OP,
                format!(
                    "widths do not fit H = {h}: Q/K/V [{a}, {}]/[{}, {}]/[{}, {}], dense [{}, {}], \
                     fc1 [{}, {}], fc2 [{}, {}], norms {h}/{}",
                    q.in_features(),
                    k.out_features(),
                    k.in_features(),
                    v.out_features(),
                    v.in_features(),
                    dense.out_features(),
                    dense.in_features(),
                    fc1.out_features(),
                    fc1.in_features(),
                    fc2.out_features(),
                    fc2.in_features(),
                    mlp_norm.width()
                ),
            ));
        }
        if heads == 0 || a == 0 || !a.is_multiple_of(heads) {
            return Err(Error::invalid(
                OP,
                format!("{heads} heads do not divide the attention width {a}"),
            ));
        }
        let same = |x: &Int8Linear| x.act() == q.act() && x.bias.is_some() == q.bias.is_some();
        let qkv = if same(&k) && same(&v) {
            Qkv::Fused(Box::new(Int8Linear::concat(&[&q, &k, &v])?))
        } else {
            Qkv::Separate(Box::new([q, k, v]))
        };
        Ok(Int8Block {
            heads,
            qkv,
            dense,
            attn_norm,
            fc1,
            fc2,
            mlp_norm,
        })
    }

    /// Bytes as stored: every Linear, and the LayerNorms in f32.
    pub(crate) fn stored_bytes(&self) -> usize {
        let qkv = match &self.qkv {
            Qkv::Fused(l) => l.stored_bytes(),
            Qkv::Separate(p) => p.iter().map(Int8Linear::stored_bytes).sum(),
        };
        let norms = 8 * (self.attn_norm.width() + self.mlp_norm.width());
        qkv + self.dense.stored_bytes() + self.fc1.stored_bytes() + self.fc2.stored_bytes() + norms
    }

    /// Width A of Q, K and V.
    pub(crate) fn attn_width(&self) -> usize {
        self.dense.in_features()
    }

    /// Width d of one head.
    pub(crate) fn head_dim(&self) -> usize {
        self.attn_width() / self.heads
    }

    /// MLP width I.
    pub(crate) fn inner_width(&self) -> usize {
        self.fc1.out_features()
    }

    /// `x[B*T, H]` through the block, in place, for the first `queries` tokens of each sample:
    /// the output is `x[B*queries, H]`, rows `(b, i)` packed (all of `x` when `queries == T`).
    /// Keys and values always cover every token, so a classifier that reads only the leading
    /// tokens can skip the rest of the last block. `tmp` (`[B*T, H]`) is scratch.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn forward(
        &self,
        x: &mut [f32],
        tmp: &mut [f32],
        geo: Batch<'_>,
        queries: usize,
        norm: NormPlacement,
        gelu: GeluKind,
        s: &mut BlockScratch<'_>,
    ) -> Result<()> {
        let (rows, h) = (geo.rows(), self.attn_norm.width());
        let out_rows = geo.batch * queries;
        let gelu = Activation::Gelu(gelu);
        match norm {
            NormPlacement::Post => {
                // x = LN(x + Attn(x)); x = LN(x + Mlp(x))
                self.attention_sublayer(x, tmp, false, geo, queries, s)?;
                let (x, tmp) = (&mut x[..out_rows * h], &mut tmp[..out_rows * h]);
                add_into(tmp, x);
                self.attn_norm.forward(x, tmp, out_rows, s.mean, s.rstd)?;
                self.mlp_sublayer(x, tmp, false, out_rows, gelu, s)?;
                add_into(tmp, x);
                self.mlp_norm.forward(x, tmp, out_rows, s.mean, s.rstd)
            }
            NormPlacement::Pre => {
                // x = x + Attn(LN(x)); x = x + Mlp(LN(x))
                self.attn_norm.forward(
                    &mut tmp[..rows * h],
                    &x[..rows * h],
                    rows,
                    s.mean,
                    s.rstd,
                )?;
                self.attention_sublayer(x, tmp, true, geo, queries, s)?;
                let (x, tmp) = (&mut x[..out_rows * h], &mut tmp[..out_rows * h]);
                add_into(x, tmp);
                self.mlp_norm.forward(tmp, x, out_rows, s.mean, s.rstd)?;
                self.mlp_sublayer(x, tmp, true, out_rows, gelu, s)?;
                add_into(x, tmp);
                Ok(())
            }
        }
    }

    /// The attention sub-layer of [`Int8Block::forward`]: Q, K, V of `tmp` (`from_tmp`, the
    /// pre-LN input) or of `x`, attention, the rows of the first `queries` tokens of `x` packed
    /// to the front, and the output projection into `tmp[B*queries, H]`.
    fn attention_sublayer(
        &self,
        x: &mut [f32],
        tmp: &mut [f32],
        from_tmp: bool,
        geo: Batch<'_>,
        queries: usize,
        s: &mut BlockScratch<'_>,
    ) -> Result<()> {
        let (rows, h, a) = (geo.rows(), self.attn_norm.width(), self.attn_width());
        let input = if from_tmp { &*tmp } else { &*x };
        self.project_qkv(&input[..rows * h], rows, s)?;
        self.attend(geo, queries, a, s)?;
        keep_leading_rows(x, geo, queries, h);
        let out_rows = geo.batch * queries;
        let ctx = &s.ctx[..out_rows * a];
        let none = Activation::None;
        self.dense.forward_into(
            &mut tmp[..out_rows * h],
            h,
            ctx,
            out_rows,
            none,
            s.q8,
            s.row_scales,
        )
    }

    /// The MLP sub-layer: `tmp[rows, H] = fc2(GELU(fc1(input)))` with the input read from `tmp`
    /// (`from_tmp`) or from `x`; the hidden activations live in `s.inner`.
    fn mlp_sublayer(
        &self,
        x: &[f32],
        tmp: &mut [f32],
        from_tmp: bool,
        rows: usize,
        gelu: Activation,
        s: &mut BlockScratch<'_>,
    ) -> Result<()> {
        let (h, inner) = (self.attn_norm.width(), self.inner_width());
        let inner_buf = &mut s.inner[..rows * inner];
        let input = if from_tmp { &*tmp } else { x };
        self.fc1
            .forward_into(inner_buf, inner, input, rows, gelu, s.q8, s.row_scales)?;
        let none = Activation::None;
        self.fc2
            .forward_into(tmp, h, inner_buf, rows, none, s.q8, s.row_scales)
    }

    /// `s.qkv[B*T, 3A]` = `[Q | K | V]` of `x[B*T, H]`.
    fn project_qkv(&self, x: &[f32], rows: usize, s: &mut BlockScratch<'_>) -> Result<()> {
        let a = self.attn_width();
        let qkv = &mut s.qkv[..rows * 3 * a];
        match &self.qkv {
            Qkv::Fused(l) => {
                l.forward_into(qkv, 3 * a, x, rows, Activation::None, s.q8, s.row_scales)
            }
            Qkv::Separate(parts) => {
                for (i, l) in parts.iter().enumerate() {
                    let out = &mut qkv[i * a..];
                    l.forward_into(out, 3 * a, x, rows, Activation::None, s.q8, s.row_scales)?;
                }
                Ok(())
            }
        }
    }

    /// `s.ctx[B*Q, A]` from `s.qkv` for the first Q = `queries` tokens of each sample: per
    /// sample and head, strided views into the Q, K, V column blocks (no head copies). Padded
    /// keys are left out of the products altogether, which is what the f32 model's -1e9 logit
    /// bias computes: their probabilities are exactly 0.
    fn attend(
        &self,
        geo: Batch<'_>,
        queries: usize,
        a: usize,
        s: &mut BlockScratch<'_>,
    ) -> Result<()> {
        let (t, nh, nq) = (geo.seq, self.heads, queries);
        let units = geo.batch * nh;
        if nq == 0 || units == 0 {
            return Ok(());
        }
        // One (sample, head) map and head context per slot of the workspace, at most one slot
        // per thread.
        let d = a / nh;
        let slots = (s.scores.len() / (t * t).max(1))
            .min(s.head_ctx.len() / (t * d).max(1))
            .min(threads::num_threads())
            .min(units);
        let ctx = CtxPtr(s.ctx.as_mut_ptr());
        let (qkv, scores, probs, heads) =
            (&*s.qkv, &mut *s.scores, &mut *s.probs, &mut *s.head_ctx);
        if slots <= 1 {
            return (0..units).try_for_each(|u| {
                let scratch = (&mut scores[..], &mut probs[..], &mut heads[..]);
                self.attend_head(geo, nq, a, u, qkv, ctx, scratch)
            });
        }
        // Heads are independent: contiguous runs of (sample, head) units per slot. Every unit
        // writes its own column block of its own sample's context rows.
        let per_slot = units.div_ceil(slots);
        threads::install(|| {
            scores
                .par_chunks_mut(t * t)
                .zip(probs.par_chunks_mut(t * t))
                .zip(heads.par_chunks_mut(t * d))
                .take(slots)
                .enumerate()
                .try_for_each(|(slot, ((sc, pr), hc))| {
                    let first = slot * per_slot;
                    (first..(first + per_slot).min(units)).try_for_each(|u| {
                        let scratch = (&mut sc[..], &mut pr[..], &mut hc[..]);
                        self.attend_head(geo, nq, a, u, qkv, ctx, scratch)
                    })
                })
        })
    }

    /// One unit `u = b * heads + head` of [`Int8Block::attend`]: context columns of `head` for
    /// the `nq` query rows of sample `b`, with `scores` and `probs` (`>= nq * L`) and `head`
    /// (`>= nq * d`) as scratch.
    #[allow(clippy::too_many_arguments)]
    fn attend_head(
        &self,
        geo: Batch<'_>,
        nq: usize,
        a: usize,
        u: usize,
        qkv: &[f32],
        ctx: CtxPtr,
        (scores, probs, head_ctx): (&mut [f32], &mut [f32], &mut [f32]),
    ) -> Result<()> {
        let (t, nh) = (geo.seq, self.heads);
        let (b, head) = (u / nh, u % nh);
        let d = a / nh;
        let scale = 1.0 / (d as f32).sqrt();
        // One head's products are far too small to split across threads: the hand-off costs
        // more than the GEMM.
        let opts = GemmOptions {
            threads: Some(1),
            ..GemmOptions::default()
        };
        let ld = 3 * a;
        let len = geo.len_of(b);
        let sample = &qkv[b * t * ld..];
        let col = head * d;
        let q = MatRef::new(&sample[col..], nq, d, ld, 1)?; // [Q, d]
        let k = MatRef::new(&sample[a + col..], len, d, ld, 1)?; // [L, d]
        let v = MatRef::new(&sample[2 * a + col..], len, d, ld, 1)?; // [L, d]
        let (scores, probs) = (&mut scores[..nq * len], &mut probs[..nq * len]);
        // S = Q K^T / sqrt(d): [Q, L]; P = softmax(S) per row; C_h = P V: [Q, d].
        sgemm_with(
            &opts,
            scale,
            q,
            k.t(),
            0.0,
            MatMut::row_major(scores, nq, len)?,
        )?;
        softmax_forward(probs, scores, len)?;
        let p = MatRef::row_major(probs, nq, len)?;
        // C_h into this slot's scratch, then into its columns of the shared context: a strided
        // view of the context rows would be a `&mut` slice overlapping the columns other
        // threads write at the same time, which is undefined behaviour even if no element is
        // written twice.
        let head_ctx = &mut head_ctx[..nq * d];
        sgemm_with(&opts, 1.0, p, v, 0.0, MatMut::row_major(head_ctx, nq, d)?)?;
        for (i, row) in head_ctx.chunks_exact(d).enumerate() {
            // SAFETY: row i of sample b's context starts at `(b * nq + i) * a` inside the
            // workspace's context buffer of `B*T*A >= (b * nq + nq) * a` values, so columns
            // `col..col + d` (`col + d <= a`) are in bounds; this unit alone writes them (units
            // are distinct (sample, head) pairs), through the raw pointer only, and nothing
            // reads them until every unit has finished.
            unsafe {
                std::ptr::copy_nonoverlapping(row.as_ptr(), ctx.0.add((b * nq + i) * a + col), d);
            }
        }
        Ok(())
    }
}

/// The context buffer's base pointer, shared by the threads of [`Int8Block::attend`].
#[derive(Clone, Copy)]
struct CtxPtr(*mut f32);

// SAFETY: the threads write disjoint (sample rows, head columns) blocks through it.
unsafe impl Send for CtxPtr {}
unsafe impl Sync for CtxPtr {}

/// Packs rows `(b, i < queries)` of `x[B*T, H]` to the front as `[B*queries, H]`; nothing to do
/// when every token is kept. Rows only move towards the front, so copying in order is safe.
fn keep_leading_rows(x: &mut [f32], geo: Batch<'_>, queries: usize, h: usize) {
    if queries == geo.seq {
        return;
    }
    for b in 1..geo.batch {
        let from = b * geo.seq * h;
        x.copy_within(from..from + queries * h, b * queries * h);
    }
}

/// `acc += x`, element by element.
pub(crate) fn add_into(acc: &mut [f32], x: &[f32]) {
    for (a, &v) in acc.iter_mut().zip(x) {
        *a += v;
    }
}
