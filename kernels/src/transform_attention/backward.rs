//! Backward of the fused transform attention: each block of query rows is recomputed (both
//! GEMMs' first half, the pre-mix, the softmax) and differentiated in place.
//!
//! Per block, with `dP'_h = dO_h V_h^T`:
//!
//! ```text
//! dV_h    += P'_h^T dO_h
//! dpost   [h,g] += sum P_g * dP'_h          dpost_bias[h] += sum dP'_h * G
//! dP_g     = sum_h post[h,g] dP'_h
//! dS'_h    = P_h * (dP_h - sum_j dP_h P_h)                     (no policy; per row)
//! dS'_h[j] = r_j G_j,  r_j = (dP_j - sum_k dP_k P_k) u_j / (sum_k u_k G_k + eps u_max)   (policy)
//! dpre    [h,g] += sum dS'_h * S_g          dpre_bias[h] += sum dS'_h
//! dS_g     = sum_h pre[h,g] dS'_h
//! dQ_g    += scale dS_g K_g                 dK_g += scale dS_g^T Q_g
//! dD_j    += sum_{i != j} (sum_h r_h[i,j] + post_bias[h] dP'_h[i,j])
//! ```
//!
//! where `u = softmax(S')` (the policy form of the module docs of the parent).

use super::{
    HeadMix, POLICY_EPS, PackedHeads, PackedKeys, TransformAttentionShape, add_map_dots,
    add_policy_bias, block_logits, dot, gate, gather_stats, gemm, gemm_cols, gemm_packed, map,
    mix_heads, pack_heads, passes, policy_probs_in_place, policy_row_terms, times_tokens_t,
};
use crate::{KernelError, PackedB};

/// The gradients [`transform_attention_backward`] adds into; `None` for those not wanted.
/// `dq`, `dk`, `dv`: `[B, N, H*d]`; `dpre`, `dpost`: `[H, H]`; `dpre_bias`, `dpost_bias`: `[H]`;
/// `dkeep`: `[B, N]` (only with a keep policy).
#[derive(Debug, Default)]
pub struct TransformAttentionGrads<'a> {
    /// Gradient of the queries.
    pub dq: Option<&'a mut [f32]>,
    /// Gradient of the keys.
    pub dk: Option<&'a mut [f32]>,
    /// Gradient of the values.
    pub dv: Option<&'a mut [f32]>,
    /// Gradient of the pre-softmax mix.
    pub dpre: Option<&'a mut [f32]>,
    /// Gradient of the pre-softmax bias.
    pub dpre_bias: Option<&'a mut [f32]>,
    /// Gradient of the post-softmax mix.
    pub dpost: Option<&'a mut [f32]>,
    /// Gradient of the post-softmax bias.
    pub dpost_bias: Option<&'a mut [f32]>,
    /// Gradient of the keep policy.
    pub dkeep: Option<&'a mut [f32]>,
}

/// The per-sample slice `b` of an optional `[B, len]` buffer.
fn sample_mut<'a>(buf: &'a mut Option<&mut [f32]>, b: usize, len: usize) -> Option<&'a mut [f32]> {
    buf.as_deref_mut().map(|x| &mut x[b * len..(b + 1) * len])
}

/// Adds the gradients of `transform_attention_forward(q, k, v, mix, keep)` for the output
/// gradient `dout` into `grads` (`+=`). Shapes as in the module docs of the parent; `scratch`
/// holds at least [`TransformAttentionShape::backward_scratch_len`] floats (any contents).
/// Errors: as the forward, plus [`KernelError::LengthMismatch`] for a gradient of the wrong
/// length and for `dkeep` without a policy.
#[allow(clippy::too_many_arguments)]
pub fn transform_attention_backward(
    grads: TransformAttentionGrads<'_>,
    dout: &[f32],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    mix: &HeadMix<'_>,
    keep: Option<&[f32]>,
    shape: &TransformAttentionShape,
    scale: f32,
    scratch: &mut [f32],
) -> Result<(), KernelError> {
    backward(
        grads, dout, None, None, q, k, v, mix, keep, shape, scale, scratch,
    )
}

/// [`transform_attention_backward`] with the softmax statistics `stats [B, H, N, 2]` that
/// [`super::transform_attention_forward_with_stats`] saved for the same inputs: the backward
/// reuses them instead of recomputing each row's max and normaliser, and the packed keys when
/// that forward kept them (`keys`) instead of packing `K^T` again. Errors: as the plain
/// backward, plus [`KernelError::LengthMismatch`] for `stats` of the wrong length or `keys` of
/// another shape.
#[allow(clippy::too_many_arguments)]
pub fn transform_attention_backward_with_stats(
    grads: TransformAttentionGrads<'_>,
    dout: &[f32],
    stats: &[f32],
    keys: Option<&PackedKeys>,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    mix: &HeadMix<'_>,
    keep: Option<&[f32]>,
    shape: &TransformAttentionShape,
    scale: f32,
    scratch: &mut [f32],
) -> Result<(), KernelError> {
    shape.check_stats("transform_attention_backward_with_stats", stats.len())?;
    if let Some(keys) = keys {
        keys.check("transform_attention_backward_with_stats", shape)?;
    }
    backward(
        grads,
        dout,
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

/// The backward, with the forward's statistics and packed keys when given (checked by the
/// caller).
#[allow(clippy::too_many_arguments)]
fn backward(
    grads: TransformAttentionGrads<'_>,
    dout: &[f32],
    stats: Option<&[f32]>,
    keys: Option<&PackedKeys>,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    mix: &HeadMix<'_>,
    keep: Option<&[f32]>,
    shape: &TransformAttentionShape,
    scale: f32,
    scratch: &mut [f32],
) -> Result<(), KernelError> {
    const WHAT: &str = "transform_attention_backward";
    let mut lens = vec![dout.len(), q.len(), k.len(), v.len()];
    lens.extend(
        [&grads.dq, &grads.dk, &grads.dv]
            .iter()
            .filter_map(|g| g.as_ref().map(|g| g.len())),
    );
    let need = shape.backward_scratch_len();
    shape.check(
        WHAT,
        &lens,
        mix,
        keep.map(<[f32]>::len),
        (scratch.len(), need),
    )?;
    let h = shape.heads;
    let small = [
        (grads.dpre.as_ref().map(|g| g.len()), h * h),
        (grads.dpost.as_ref().map(|g| g.len()), h * h),
        (grads.dpre_bias.as_ref().map(|g| g.len()), h),
        (grads.dpost_bias.as_ref().map(|g| g.len()), h),
        (
            grads.dkeep.as_ref().map(|g| g.len()),
            shape.batch * shape.tokens,
        ),
    ];
    if small
        .iter()
        .any(|&(got, want)| got.is_some_and(|l| l != want))
        || (grads.dkeep.is_some() && keep.is_none())
    {
        return Err(KernelError::LengthMismatch(format!(
            "{WHAT}: mix gradient lengths {:?} must be [H*H, H*H, H, H] = [{}, {}, {h}, {h}] and the policy gradient B*N = {} (only with a policy; shape {shape:?})",
            small.map(|(g, _)| g),
            h * h,
            h * h,
            shape.batch * shape.tokens
        )));
    }
    let TransformAttentionGrads {
        mut dq,
        mut dk,
        mut dv,
        mut dpre,
        mut dpre_bias,
        mut dpost,
        mut dpost_bias,
        mut dkeep,
    } = grads;
    let n = shape.tokens;
    if shape.batch == 0 || n == 0 {
        return Ok(());
    }
    let sample_len = n * shape.width();
    let map_len = shape.block_map_len();
    let (logits, rest) = scratch.split_at_mut(map_len);
    let (softmax, rest) = rest.split_at_mut(map_len);
    let (policy_probs, rest) = rest.split_at_mut(map_len);
    let (work, rest) = rest.split_at_mut(map_len);
    let (dmixed, rest) = rest.split_at_mut(map_len);
    let block_stats = &mut rest[..shape.block_stats_len()];
    // Anything upstream of P' wanted (else only dV is computed).
    let upstream = dq.is_some()
        || dk.is_some()
        || dpre.is_some()
        || dpre_bias.is_some()
        || dpost.is_some()
        || dpost_bias.is_some()
        || dkeep.is_some();
    for b in 0..shape.batch {
        let at = b * sample_len..(b + 1) * sample_len;
        let (q_b, k_b, v_b, dout_b) = (
            &q[at.clone()],
            &k[at.clone()],
            &v[at],
            &dout[b * sample_len..(b + 1) * sample_len],
        );
        let keep_b = keep.map(|d| &d[b * n..(b + 1) * n]);
        let mut dq_b = sample_mut(&mut dq, b, sample_len);
        let mut dk_b = sample_mut(&mut dk, b, sample_len);
        let mut dv_b = sample_mut(&mut dv, b, sample_len);
        let mut dkeep_b = sample_mut(&mut dkeep, b, n);
        // K_g^T for S (unless the forward kept it), V_h^T for dP' and K_g for dQ, packed once
        // per sample.
        let packed_here;
        let k_t: &[PackedB] = match keys {
            Some(keys) => keys.sample(b),
            None => {
                packed_here = pack_heads(k_b, shape, true, gemm_cols(n))?;
                &packed_here
            }
        };
        let v_t = if upstream {
            pack_heads(v_b, shape, true, gemm_cols(n))?
        } else {
            PackedHeads::default()
        };
        let k_p = if dq_b.is_some() {
            pack_heads(k_b, shape, false, n)?
        } else {
            PackedHeads::default()
        };
        let block = shape.block_rows();
        for r0 in (0..n).step_by(block) {
            let rows = block.min(n - r0);
            let len = rows * n;
            let m = h * len;
            let (logits, softmax) = (&mut logits[..m], &mut softmax[..m]);
            let (policy_probs, work, dmixed) =
                (&mut policy_probs[..m], &mut work[..m], &mut dmixed[..m]);
            // Recompute S [H, rows, N], u = softmax(S') (with the forward's row statistics when
            // given), P.
            block_logits(logits, q_b, k_b, k_t, shape, scale, r0, rows)?;
            let block_stats = &mut block_stats[..2 * h * rows];
            if let Some(stats) = stats {
                gather_stats(block_stats, &stats[b * 2 * h * n..], h, r0, rows, n);
            }
            passes::mix_softmax(
                softmax,
                logits,
                mix.pre,
                mix.pre_bias,
                block_stats,
                h,
                rows,
                n,
                stats.is_some(),
            )?;
            let probs: &[f32] = match keep_b {
                Some(keep_b) => {
                    policy_probs.copy_from_slice(softmax);
                    policy_probs_in_place(policy_probs, keep_b, r0, rows, n);
                    policy_probs
                }
                None => softmax,
            };
            // dV_h += P'_h^T dO_h[rows]
            if let Some(dv_b) = dv_b.as_deref_mut() {
                mix_heads(work, probs, h, len, mix.post, false, Some(mix.post_bias))?;
                if let Some(keep_b) = keep_b {
                    add_policy_bias(work, mix.post_bias, keep_b, r0, rows, n);
                }
                for (x, p) in work.chunks_exact(len).enumerate() {
                    let doh = shape.head(dout_b, x, r0, rows)?;
                    let dvh = shape.head_mut(dv_b, x, 0, n)?;
                    gemm(1.0, map(p, rows, n)?.t(), doh, 1.0, dvh)?;
                }
            }
            if !upstream {
                continue;
            }
            // dP'_h = dO_h[rows] V_h^T
            for ((x, dp), vt) in dmixed.chunks_exact_mut(len).enumerate().zip(v_t.iter()) {
                times_tokens_t(dp, dout_b, v_b, vt, x, shape, 1.0, r0, rows)?;
            }
            post_bias_grads(
                dpost_bias.as_deref_mut(),
                dkeep_b.as_deref_mut(),
                dmixed,
                mix,
                keep_b,
                r0,
                rows,
                n,
            )?;
            // dP_g = sum_h post[h,g] dP'_h; dpost[h,g] += sum dP'_h P_g
            mix_heads(work, dmixed, h, len, mix.post, true, None)?;
            if let Some(dpost) = dpost.as_deref_mut() {
                add_map_dots(dpost, dmixed, probs, h, len)?;
            }
            // dS'_h into `dmixed`. A softmax ignores a shift of its row, so without a policy
            // dpre_bias[h] = sum dS'_h is exactly 0 (summing the rounded dS' would only add
            // noise); with one it is a closed form (`policy_softmax_backward`).
            match keep_b {
                None => passes::softmax_backward(dmixed, work, softmax, h * rows, n)?,
                Some(keep_b) => policy_softmax_backward(
                    dmixed,
                    dpre_bias.as_deref_mut(),
                    dkeep_b.as_deref_mut(),
                    work,
                    softmax,
                    probs,
                    keep_b,
                    r0,
                    rows,
                    n,
                ),
            }
            // dpre[h,g] += sum dS'_h S_g (dpre_bias: see the softmax backwards)
            if let Some(dpre) = dpre.as_deref_mut() {
                add_map_dots(dpre, dmixed, logits, h, len)?;
            }
            if dq_b.is_none() && dk_b.is_none() {
                continue;
            }
            // dS_g = sum_h pre[h,g] dS'_h; dQ_g += scale dS_g K_g; dK_g += scale dS_g^T Q_g
            mix_heads(work, dmixed, h, len, mix.pre, true, None)?;
            for (g, ds) in work.chunks_exact(len).enumerate() {
                let ds = map(ds, rows, n)?;
                if let Some(dq_b) = dq_b.as_deref_mut() {
                    // dQ_g[rows] += scale dS_g K_g
                    let dqg = shape.head_mut(dq_b, g, r0, rows)?;
                    gemm_packed(scale, ds, &k_p[g], 1.0, dqg)?;
                }
                if let Some(dk_b) = dk_b.as_deref_mut() {
                    let qg = shape.head(q_b, g, r0, rows)?;
                    let dkg = shape.head_mut(dk_b, g, 0, n)?;
                    gemm(scale, ds.t(), qg, 1.0, dkg)?;
                }
            }
        }
    }
    Ok(())
}

/// `sum_k x[k]` with eight partial sums.
fn sum(x: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = x.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for l in 0..8 {
            acc[l] += c[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// The gradients that come straight from `dP'` (`[H, rows, N]`) besides the post mix's: the
/// post bias and its share of the policy gradient.
#[allow(clippy::too_many_arguments)]
fn post_bias_grads(
    dpost_bias: Option<&mut [f32]>,
    dkeep: Option<&mut [f32]>,
    dmixed: &[f32],
    mix: &HeadMix<'_>,
    keep: Option<&[f32]>,
    r0: usize,
    rows: usize,
    n: usize,
) -> Result<(), KernelError> {
    let len = rows * n;
    if let Some(db) = dpost_bias {
        match keep {
            None => passes::add_map_sums(db, dmixed, len)?,
            Some(keep) => {
                for (d, dp) in db.iter_mut().zip(dmixed.chunks_exact(len)) {
                    // sum_{i,j} dP'[i,j] G[i,j], G = D off the diagonal and 1 on it
                    *d += dp
                        .chunks_exact(n)
                        .enumerate()
                        .map(|(r, row)| dot(row, keep) + row[r0 + r] * (1.0 - keep[r0 + r]))
                        .sum::<f32>();
                }
            }
        }
    }
    if let Some(dkeep) = dkeep {
        // dD_j += sum_h b[h] sum_{i != j} dP'_h[i,j]
        for (bh, dp) in mix.post_bias.iter().zip(dmixed.chunks_exact(len)) {
            for (r, row) in dp.chunks_exact(n).enumerate() {
                for (j, (d, &g)) in dkeep.iter_mut().zip(row).enumerate() {
                    if j != r0 + r {
                        *d += bh * g;
                    }
                }
            }
        }
    }
    Ok(())
}

/// Backward of the policy softmax for one block: writes `dS'` (`[H, rows, N]`) and adds
/// `dpre_bias` and the softmax's share of the policy gradient. `dprobs` is `dP`, `softmax` is `u = softmax(S')`,
/// `probs` is `P`.
#[allow(clippy::too_many_arguments)]
fn policy_softmax_backward(
    dmixed: &mut [f32],
    mut dpre_bias: Option<&mut [f32]>,
    mut dkeep: Option<&mut [f32]>,
    dprobs: &[f32],
    softmax: &[f32],
    probs: &[f32],
    keep: &[f32],
    r0: usize,
    rows: usize,
    n: usize,
) {
    let rows_iter = dmixed
        .chunks_exact_mut(n)
        .zip(dprobs.chunks_exact(n))
        .zip(softmax.chunks_exact(n).zip(probs.chunks_exact(n)));
    for (r, ((ds, dp), (u, p))) in rows_iter.enumerate() {
        let i = r0 + r % rows;
        let (u_max, denom) = policy_row_terms(u, keep, i);
        let inv = 1.0 / denom;
        let t = dot(dp, p);
        if let Some(da) = dpre_bias.as_deref_mut() {
            // sum_j dS'_j = sum_j (dP_j - t) u_j G_j / W with W = sum u G + eps u_max and
            // sum_j P_j = 1 reduces to eps u_max (t - sum_j dP_j / N) / W: no cancellation.
            da[r / rows] += POLICY_EPS * u_max * (t - sum(dp) / n as f32) * inv;
        }
        for (j, ((ds, &dp), &u)) in ds.iter_mut().zip(dp).zip(u).enumerate() {
            let r = (dp - t) * u * inv;
            *ds = r * gate(keep, i, j);
        }
        if let Some(dkeep) = dkeep.as_deref_mut() {
            for (j, ((d, &dp), &u)) in dkeep.iter_mut().zip(dp).zip(u).enumerate() {
                if j != i {
                    *d += (dp - t) * u * inv;
                }
            }
        }
    }
}
