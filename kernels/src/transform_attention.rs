//! MiniViT's depthwise-transform attention, fused: multi-head attention whose logits are mixed
//! across heads before the softmax and whose probabilities are mixed again after it, with an
//! optional DynamicViT keep policy. Forward here, backward in [`backward`] (llm.c's argument
//! order: outputs, inputs, sizes).
//!
//! Shapes (B = batch, N = tokens, H = heads, d = head width): `q`, `k`, `v`, `out` and their
//! gradients are `[B, N, H*d]`, head `h` in the column block `h*d .. (h+1)*d`; the mix is
//! `pre [H, H]`, `pre_bias [H]`, `post [H, H]`, `post_bias [H]` (row-major); the keep policy is
//! `[B, N]` with values in `[0, 1]` (0 = key dropped; also a key padding mask). For sample `b`,
//! query `i`, key `j`:
//!
//! ```text
//! S_g[i,j]  = scale * sum_c Q[b,i,g*d+c] K[b,j,g*d+c]
//! S'_h      = sum_g pre[h,g] S_g + pre_bias[h]
//! P_h       = softmax_j(S'_h)                                          (no policy)
//! G[i,j]    = D[b,j] + (1 - D[b,j]) [i == j]                           (policy; G = 1 without)
//! P_h[i,j]  = (E[i,j] + eps/N) / (sum_j E[i,j] + eps),  E[i,j] = exp(S'_h[i,j] - m_i) G[i,j]
//! P'_h      = sum_g post[h,g] P_g + post_bias[h] G
//! O_h[i,:]  = sum_j P'_h[i,j] V[b,j,h*d..]
//! ```
//!
//! with `m_i = max_j S'_h[i,j]` and `eps` = [`POLICY_EPS`]. The row max only keeps `exp` in
//! range and is treated as a constant: no gradient flows through it (without `eps` the maths
//! does not depend on it at all).
//!
//! "Fused": per sample, a block of at most [`BLOCK_ROWS`] query rows goes through both GEMMs,
//! both head mixes and the softmax for all heads at once in a caller-owned scratch of
//! `O(H x rows x N)` floats; past [`BLOCK_ROWS`] tokens, the `H x N x N` maps of a sample are
//! never written whole (up to it, one block holds them: they fit in L2, and fewer, larger
//! GEMMs run faster). The backward
//! recomputes each block the same way (FlashAttention-style) instead of reading saved maps;
//! given the row statistics that [`transform_attention_forward_with_stats`] saves (`[B, H, N, 2]`:
//! each row's max and `1 / sum exp`), it skips their reductions and mixes and exponentiates in
//! one pass, and given the packed `K^T` that forward kept ([`PackedKeys`]), it does not pack `K`
//! again. The pre mix and the softmax run per query row on the `H` rows of that query (they
//! stay in L1); the backward's transposed mixes and the mix gradients (`H x H` dot products of
//! two sets of maps) are the register-tiled kernels of [`crate::head_mix`].
//! The policy softmax is computed from the plain softmax `u = softmax(S')`: since
//! `exp(S' - m) = u / max_j u`, `P_j = (u_j G_j + eps u_max / N) / (sum_j u_j G_j + eps u_max)`.
//!
//! Forward writes `out` (`=`); backward accumulates (`+=`) into every gradient it is given.
//! The kernels are single-threaded (the GEMMs run on one thread); callers split the batch. The
//! bounds against the f64 references in [`crate::reference`] are stated in
//! `tests/transform_attention_paths.rs`.

pub mod backward;
mod packed_heads;
mod passes;

pub use backward::{
    TransformAttentionGrads, transform_attention_backward, transform_attention_backward_with_stats,
};

pub use packed_heads::PackedKeys;

use crate::{BSource, GemmOptions, KernelError, MatMut, MatRef, PackedB, sgemm_fused};
pub(crate) use packed_heads::{PackedHeads, pack_heads};

/// The `eps` of the policy softmax (DynamicViT's value).
pub const POLICY_EPS: f32 = 1e-6;

/// Query rows per block (72: a 65-token ViT sample is one block; 197 tokens run as three): the
/// scratch of one block, a few `[H, rows, N]` maps, stays in L2 or close to it
/// for ViT-sized `H` and `N`.
pub const BLOCK_ROWS: usize = 72;

/// The GEMMs inside a kernel run on the calling thread.
pub(crate) const SERIAL_GEMM: GemmOptions = GemmOptions {
    isa: None,
    threads: Some(1),
};

/// The sizes of a transform-attention call: `batch` samples of `tokens` tokens, `heads` heads of
/// `head_dim` columns each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TransformAttentionShape {
    /// Samples (B).
    pub batch: usize,
    /// Tokens per sample (N): queries and keys.
    pub tokens: usize,
    /// Heads (H).
    pub heads: usize,
    /// Columns per head (d).
    pub head_dim: usize,
}

/// The head-mixing transforms of one layer, row-major: `pre [H, H]`, `pre_bias [H]`,
/// `post [H, H]`, `post_bias [H]` (module docs).
#[derive(Clone, Copy, Debug)]
pub struct HeadMix<'a> {
    /// Pre-softmax mix `A [H, H]`.
    pub pre: &'a [f32],
    /// Pre-softmax bias `a [H]`.
    pub pre_bias: &'a [f32],
    /// Post-softmax mix `B [H, H]`.
    pub post: &'a [f32],
    /// Post-softmax bias `b [H]`.
    pub post_bias: &'a [f32],
}

impl TransformAttentionShape {
    /// Columns of one token's row, `H * d`.
    pub fn width(&self) -> usize {
        self.heads * self.head_dim
    }

    /// Elements of a `[B, N, H*d]` activation (`None` on overflow).
    pub fn activation_len(&self) -> Option<usize> {
        self.batch
            .checked_mul(self.tokens)?
            .checked_mul(self.heads)?
            .checked_mul(self.head_dim)
    }

    /// Query rows per block: `N` split into `ceil(N / BLOCK_ROWS)` blocks as even as possible
    /// (197 tokens run as 66 + 66 + 65 rows, not 72 + 72 + 53).
    pub fn block_rows(&self) -> usize {
        let blocks = self.tokens.div_ceil(BLOCK_ROWS).max(1);
        self.tokens.div_ceil(blocks)
    }

    /// Floats of one `[H, rows, N]` block map.
    fn block_map_len(&self) -> usize {
        self.heads * self.block_rows() * self.tokens
    }

    /// Floats of the softmax statistics of one block, `[H, rows, 2]`.
    fn block_stats_len(&self) -> usize {
        2 * self.heads * self.block_rows()
    }

    /// Scratch floats [`transform_attention_forward`] needs: two block maps and the block's
    /// softmax statistics, `2 H rows N + 2 H rows`.
    pub fn forward_scratch_len(&self) -> usize {
        2 * self.block_map_len() + self.block_stats_len()
    }

    /// Scratch floats [`transform_attention_backward`] needs: five block maps and the block's
    /// softmax statistics, `5 H rows N + 2 H rows`.
    pub fn backward_scratch_len(&self) -> usize {
        5 * self.block_map_len() + self.block_stats_len()
    }

    /// Floats of the softmax statistics [`transform_attention_forward_with_stats`] saves for
    /// the backward: `[B, H, N, 2]`, `2 B H N` (`None` on overflow).
    pub fn softmax_stats_len(&self) -> Option<usize> {
        self.batch
            .checked_mul(self.heads)?
            .checked_mul(self.tokens)?
            .checked_mul(2)
    }

    /// Floating-point operations of one forward call: the two GEMMs (`4 B H N^2 d`) and the two
    /// head mixes (`4 B H^2 N^2`); the softmax is not counted.
    pub fn forward_flops(&self) -> f64 {
        let (b, n, h, d) = (
            self.batch as f64,
            self.tokens as f64,
            self.heads as f64,
            self.head_dim as f64,
        );
        4.0 * b * h * n * n * d + 4.0 * b * h * h * n * n
    }

    /// Checks every length: `acts` must hold `B N H d` elements, the mix `H H` and `H`, the
    /// policy `B N`, `scratch` at least `scratch_len`.
    pub(crate) fn check(
        &self,
        what: &str,
        acts: &[usize],
        mix: &HeadMix<'_>,
        keep: Option<usize>,
        scratch: (usize, usize),
    ) -> Result<(), KernelError> {
        let Some(n_act) = self.activation_len() else {
            return Err(KernelError::ShapeMismatch(format!(
                "{what}: {self:?} overflows usize"
            )));
        };
        if self.heads == 0 || self.head_dim == 0 {
            return Err(KernelError::ShapeMismatch(format!(
                "{what}: heads and head_dim must be > 0 ({self:?})"
            )));
        }
        let h = self.heads;
        let mats = [mix.pre.len(), mix.post.len()];
        let biases = [mix.pre_bias.len(), mix.post_bias.len()];
        if acts.iter().any(|&l| l != n_act)
            || mats.iter().any(|&l| l != h * h)
            || biases.iter().any(|&l| l != h)
            || keep.is_some_and(|l| l != self.batch * self.tokens)
        {
            return Err(KernelError::LengthMismatch(format!(
                "{what}: activation lengths {acts:?} must equal B*N*H*d = {n_act}, mix lengths {mats:?} must equal H*H = {}, bias lengths {biases:?} must equal H = {h}, policy length {keep:?} must equal B*N = {} (shape {self:?})",
                h * h,
                self.batch * self.tokens
            )));
        }
        let (have, need) = scratch;
        if have < need {
            return Err(KernelError::LengthMismatch(format!(
                "{what}: scratch holds {have} floats, needs {need} (shape {self:?})"
            )));
        }
        Ok(())
    }

    /// Head `h` of one sample's `[N, H*d]` rows `r0 .. r0 + rows`: `rows x d`, row stride `H*d`.
    pub(crate) fn head<'a>(
        &self,
        sample: &'a [f32],
        h: usize,
        r0: usize,
        rows: usize,
    ) -> Result<MatRef<'a>, KernelError> {
        let w = self.width();
        MatRef::new(
            &sample[r0 * w + h * self.head_dim..],
            rows,
            self.head_dim,
            w,
            1,
        )
    }

    /// [`Self::head`] for writing.
    pub(crate) fn head_mut<'a>(
        &self,
        sample: &'a mut [f32],
        h: usize,
        r0: usize,
        rows: usize,
    ) -> Result<MatMut<'a>, KernelError> {
        let w = self.width();
        MatMut::new(
            &mut sample[r0 * w + h * self.head_dim..],
            rows,
            self.head_dim,
            w,
            1,
        )
    }
}

/// One `rows x N` map of a block, row-major.
pub(crate) fn map(data: &[f32], rows: usize, n: usize) -> Result<MatRef<'_>, KernelError> {
    MatRef::new(data, rows, n, n, 1)
}

/// `C = alpha A B + beta C` on the calling thread with a packed B.
pub(crate) fn gemm_packed(
    alpha: f32,
    a: MatRef<'_>,
    b: &PackedB,
    beta: f32,
    c: MatMut<'_>,
) -> Result<(), KernelError> {
    sgemm_fused(&SERIAL_GEMM, alpha, a, BSource::Packed(b), beta, None, c)
}

/// `C = alpha A B + beta C` on the calling thread.
pub(crate) fn gemm(
    alpha: f32,
    a: MatRef<'_>,
    b: MatRef<'_>,
    beta: f32,
    c: MatMut<'_>,
) -> Result<(), KernelError> {
    sgemm_fused(&SERIAL_GEMM, alpha, a, BSource::View(b), beta, None, c)
}

/// `dst[h] = bias[h] + sum_g M[h,g] src[g]` (or `sum_g M[g,h] src[g]` when `transpose`) over
/// `H` maps of `len` floats each (`bias` zero when `None`), by the SIMD head-mix kernel: each
/// output chunk stays in registers while the `H` source rows stream past it.
pub(crate) fn mix_heads(
    dst: &mut [f32],
    src: &[f32],
    heads: usize,
    len: usize,
    m: &[f32],
    transpose: bool,
    bias: Option<&[f32]>,
) -> Result<(), KernelError> {
    let n = heads * len;
    crate::head_mix::mix_heads(&mut dst[..n], &src[..n], m, bias, heads, len, transpose)
}

/// `acc[h, g] += sum_e a[h][e] b[g][e]` over `H` maps of `len` floats on each side (the SIMD
/// head-dot kernel).
pub(crate) fn add_map_dots(
    acc: &mut [f32],
    a: &[f32],
    b: &[f32],
    heads: usize,
    len: usize,
) -> Result<(), KernelError> {
    let n = heads * len;
    crate::head_mix::add_head_dots(&mut acc[..heads * heads], &a[..n], &b[..n], heads, len)
}

/// `sum_k a[k] b[k]` in f32 with eight independent partial sums (vectorizes, and keeps the
/// rounding error of long sums small).
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ar, br) = (ac.remainder(), bc.remainder());
    for (x, y) in ac.zip(bc) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let tail: f32 = ar.iter().zip(br).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

/// The keep gate of query `i` and key `j`: `D_j`, or 1 on the diagonal.
#[inline]
pub(crate) fn gate(keep: &[f32], i: usize, j: usize) -> f32 {
    if i == j { 1.0 } else { keep[j] }
}

/// Turns the softmax rows `u` of one block (`[H, rows, N]`, query rows `r0..`) into policy
/// probabilities in place: `P_j = (u_j G_j + eps u_max / N) / (sum_j u_j G_j + eps u_max)`.
pub(crate) fn policy_probs_in_place(u: &mut [f32], keep: &[f32], r0: usize, rows: usize, n: usize) {
    for (r, row) in u.chunks_exact_mut(n).enumerate() {
        let i = r0 + r % rows;
        let (u_max, denom) = policy_row_terms(row, keep, i);
        let inv = 1.0 / denom;
        let floor = POLICY_EPS * u_max / n as f32;
        for (j, p) in row.iter_mut().enumerate() {
            *p = (*p * gate(keep, i, j) + floor) * inv;
        }
    }
}

/// `(u_max, sum_j u_j G_j + eps u_max)` of one softmax row of query `i`.
#[inline]
pub(crate) fn policy_row_terms(u: &[f32], keep: &[f32], i: usize) -> (f32, f32) {
    let u_max = u.iter().copied().fold(0f32, f32::max);
    let kept = dot(u, keep) + u[i] * (1.0 - keep[i]);
    (u_max, kept + POLICY_EPS * u_max)
}

/// `O = transform_attention(Q, K, V)` (module docs). `out`, `q`, `k`, `v`: `[B, N, H*d]`;
/// `keep`: `[B, N]` or `None`; `scratch`: at least [`TransformAttentionShape::forward_scratch_len`]
/// floats (any contents). Errors: [`KernelError::LengthMismatch`] for any length that does not
/// fit the shape, [`KernelError::ShapeMismatch`] for zero heads or head width.
#[allow(clippy::too_many_arguments)]
pub fn transform_attention_forward(
    out: &mut [f32],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    mix: &HeadMix<'_>,
    keep: Option<&[f32]>,
    shape: &TransformAttentionShape,
    scale: f32,
    scratch: &mut [f32],
) -> Result<(), KernelError> {
    forward(out, None, None, q, k, v, mix, keep, shape, scale, scratch)
}

/// [`transform_attention_forward`] that also saves the softmax statistics of every row for
/// [`transform_attention_backward_with_stats`]: `stats [B, H, N, 2]` holds, for sample `b`, head
/// `h`, query `i`, the row max `m_i` of `S'_h` and `1 / sum_j exp(S'_h[i,j] - m_i)`
/// ([`TransformAttentionShape::softmax_stats_len`] floats, overwritten). With `keys`, the packed
/// `K^T` of every sample is kept there too (replacing what it held). Errors: as the plain
/// forward, plus [`KernelError::LengthMismatch`] for `stats` of the wrong length.
#[allow(clippy::too_many_arguments)]
pub fn transform_attention_forward_with_stats(
    out: &mut [f32],
    stats: &mut [f32],
    keys: Option<&mut PackedKeys>,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    mix: &HeadMix<'_>,
    keep: Option<&[f32]>,
    shape: &TransformAttentionShape,
    scale: f32,
    scratch: &mut [f32],
) -> Result<(), KernelError> {
    shape.check_stats("transform_attention_forward_with_stats", stats.len())?;
    forward(
        out,
        Some(stats),
        keys,
        q,
        k,
        v,
        mix,
        keep,
        shape,
        scale,
        scratch,
    )
}

impl TransformAttentionShape {
    /// [`KernelError::LengthMismatch`] unless `len` is [`Self::softmax_stats_len`].
    pub(crate) fn check_stats(&self, what: &str, len: usize) -> Result<(), KernelError> {
        if Some(len) != self.softmax_stats_len() {
            return Err(KernelError::LengthMismatch(format!(
                "{what}: softmax statistics hold {len} floats, need 2*B*H*N (shape {self:?})"
            )));
        }
        Ok(())
    }
}

/// The forward, saving the statistics when `stats` is given (length checked by the caller) and
/// the packed keys when `keys` is.
#[allow(clippy::too_many_arguments)]
fn forward(
    out: &mut [f32],
    mut stats: Option<&mut [f32]>,
    mut keys: Option<&mut PackedKeys>,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    mix: &HeadMix<'_>,
    keep: Option<&[f32]>,
    shape: &TransformAttentionShape,
    scale: f32,
    scratch: &mut [f32],
) -> Result<(), KernelError> {
    let lens = [out.len(), q.len(), k.len(), v.len()];
    let need = shape.forward_scratch_len();
    shape.check(
        "transform_attention_forward",
        &lens,
        mix,
        keep.map(<[f32]>::len),
        (scratch.len(), need),
    )?;
    let (n, heads) = (shape.tokens, shape.heads);
    if let Some(keys) = keys.as_deref_mut() {
        keys.clear();
    }
    if shape.batch == 0 || n == 0 {
        return Ok(());
    }
    let sample_len = n * shape.width();
    let map_len = shape.block_map_len();
    let (logits, rest) = scratch.split_at_mut(map_len);
    let (mixed, rest) = rest.split_at_mut(map_len);
    let block_stats = &mut rest[..shape.block_stats_len()];
    for b in 0..shape.batch {
        let at = b * sample_len..(b + 1) * sample_len;
        let (q_b, k_b, v_b) = (&q[at.clone()], &k[at.clone()], &v[at.clone()]);
        let out_b = &mut out[at];
        let keep_b = keep.map(|d| &d[b * n..(b + 1) * n]);
        let (k_t, v_p) = (
            pack_heads(k_b, shape, true, gemm_cols(n))?,
            pack_heads(v_b, shape, false, n)?,
        );
        let block = shape.block_rows();
        for r0 in (0..n).step_by(block) {
            let rows = block.min(n - r0);
            let len = rows * n;
            let (logits, mixed) = (&mut logits[..heads * len], &mut mixed[..heads * len]);
            let block_stats = &mut block_stats[..2 * heads * rows];
            // S_g = scale Q_g[rows] K_g^T: [H, rows, N]
            block_logits(logits, q_b, k_b, &k_t, shape, scale, r0, rows)?;
            // P_h = softmax(sum_g A[h,g] S_g + a[h]) into `mixed`
            passes::mix_softmax(
                mixed,
                logits,
                mix.pre,
                mix.pre_bias,
                block_stats,
                heads,
                rows,
                n,
                false,
            )?;
            if let Some(stats) = stats.as_deref_mut() {
                let stats_b = &mut stats[b * 2 * heads * n..(b + 1) * 2 * heads * n];
                scatter_stats(stats_b, block_stats, heads, r0, rows, n);
            }
            if let Some(keep_b) = keep_b {
                policy_probs_in_place(mixed, keep_b, r0, rows, n);
            }
            // P'_h = sum_g B[h,g] P_g + b[h] G into `logits`
            mix_heads(
                logits,
                mixed,
                heads,
                len,
                mix.post,
                false,
                Some(mix.post_bias),
            )?;
            if let Some(keep_b) = keep_b {
                add_policy_bias(logits, mix.post_bias, keep_b, r0, rows, n);
            }
            // O_h[rows] = P'_h V_h
            for (h, p) in logits.chunks_exact(len).enumerate() {
                let o = shape.head_mut(out_b, h, r0, rows)?;
                gemm_packed(1.0, map(p, rows, n)?, &v_p[h], 0.0, o)?;
            }
        }
        if let Some(keys) = keys.as_deref_mut() {
            keys.push(k_t);
        }
    }
    Ok(())
}

/// Copies the statistics of one block (`[H, rows, 2]`) into those of its sample (`[H, N, 2]`).
pub(crate) fn scatter_stats(
    stats: &mut [f32],
    block: &[f32],
    heads: usize,
    r0: usize,
    rows: usize,
    n: usize,
) {
    for h in 0..heads {
        stats[2 * (h * n + r0)..2 * (h * n + r0 + rows)]
            .copy_from_slice(&block[2 * h * rows..2 * (h + 1) * rows]);
    }
}

/// Copies the statistics of one block out of those of its sample (the inverse of
/// [`scatter_stats`]).
pub(crate) fn gather_stats(
    block: &mut [f32],
    stats: &[f32],
    heads: usize,
    r0: usize,
    rows: usize,
    n: usize,
) {
    for h in 0..heads {
        block[2 * h * rows..2 * (h + 1) * rows]
            .copy_from_slice(&stats[2 * (h * n + r0)..2 * (h * n + r0 + rows)]);
    }
}

/// `S_g = scale Q_g[rows] K_g^T` for every head into `logits` (`[H, rows, N]`), with `k_t` the
/// sample's `K_g^T` packed by [`pack_heads`] (its first [`gemm_cols`] tokens).
#[allow(clippy::too_many_arguments)]
pub(crate) fn block_logits(
    logits: &mut [f32],
    q: &[f32],
    k: &[f32],
    k_t: &[PackedB],
    shape: &TransformAttentionShape,
    scale: f32,
    r0: usize,
    rows: usize,
) -> Result<(), KernelError> {
    let n = shape.tokens;
    for ((g, s), kt) in logits.chunks_exact_mut(rows * n).enumerate().zip(k_t) {
        times_tokens_t(s, q, k, kt, g, shape, scale, r0, rows)?;
    }
    Ok(())
}

/// Trailing tokens that [`times_tokens_t`] takes as dot products instead of GEMM columns.
const DIRECT_COLS: usize = 4;

/// How many of `n` tokens the `[rows, N]` block products against all tokens (`Q K^T`,
/// `dO V^T`) take as GEMM columns: all but a last few (at most [`DIRECT_COLS`]) past a multiple
/// of 16, so 65 tokens run as 64 GEMM columns and one column of dot products. A 1-column GEMM
/// panel would spend a full tile's packing and loads on it; the token's row of `K` or `V` is
/// contiguous, so its dot products need neither.
pub(crate) fn gemm_cols(n: usize) -> usize {
    let rest = n % 16;
    if n > 16 && rest <= DIRECT_COLS {
        n - rest
    } else {
        n
    }
}

/// `C = alpha A_h[rows] X_h^T` (`[rows, N]`, row-major) for head `h`: `A` the block's rows of
/// one sample's `[N, H*d]` activation (`Q` or `dO`), `X` all its tokens (`K` or `V`), `x_t`
/// the first [`gemm_cols`] tokens of `X_h^T` packed. Those columns run as a GEMM, the others as
/// dot products of A's rows with X's.
#[allow(clippy::too_many_arguments)]
pub(crate) fn times_tokens_t(
    c: &mut [f32],
    a: &[f32],
    x: &[f32],
    x_t: &PackedB,
    h: usize,
    shape: &TransformAttentionShape,
    alpha: f32,
    r0: usize,
    rows: usize,
) -> Result<(), KernelError> {
    let (n, d, w) = (shape.tokens, shape.head_dim, shape.width());
    let main = x_t.cols();
    let ah = shape.head(a, h, r0, rows)?;
    gemm_packed(
        alpha,
        ah,
        x_t,
        0.0,
        MatMut::new(&mut c[..rows * n], rows, main, n, 1)?,
    )?;
    let a_rows = &a[r0 * w + h * d..];
    for j in main..n {
        let token = &x[j * w + h * d..j * w + (h + 1) * d];
        passes::row_dots(&mut c[j..], n, a_rows, w, rows, token, d, alpha)?;
    }
    Ok(())
}

/// Turns the post bias `b[h]` already added to every entry of `P'_h` into `b[h] G[i,j]`:
/// adds `b[h] (G[i,j] - 1)`, i.e. `b[h] (D_j - 1)` off the diagonal.
pub(crate) fn add_policy_bias(
    maps: &mut [f32],
    post_bias: &[f32],
    keep: &[f32],
    r0: usize,
    rows: usize,
    n: usize,
) {
    for (h, m) in maps.chunks_exact_mut(rows * n).enumerate() {
        let bh = post_bias[h];
        for (r, row) in m.chunks_exact_mut(n).enumerate() {
            for (j, (x, &d)) in row.iter_mut().zip(keep).enumerate() {
                if j != r0 + r {
                    *x += bh * (d - 1.0);
                }
            }
        }
    }
}
