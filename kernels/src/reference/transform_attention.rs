//! References for the transform attention (`crate::transform_attention`), every map of a sample
//! materialized in f64.

use crate::transform_attention::{
    HeadMix, POLICY_EPS, TransformAttentionGrads, TransformAttentionShape,
};

/// The f64 maps of one transform-attention sample (see [`crate::transform_attention`]), each
/// `[H][N][N]` flattened: `s` the logits, `mixed` the pre-mixed logits, `probs` the
/// (policy) softmax, `exps` `exp(S' - m)` (the policy softmax's numerators before the gate),
/// `sums` `sum_j E + eps` per `[H][N]` row (policy) and `out_maps` the post-mixed `P'`.
struct TransformMaps {
    s: Vec<f64>,
    probs: Vec<f64>,
    exps: Vec<f64>,
    sums: Vec<f64>,
    out_maps: Vec<f64>,
}

/// The keep gate `G[i, j]`: 1 without a policy, `D_j` off the diagonal and 1 on it with one.
fn transform_gate(keep: Option<&[f32]>, i: usize, j: usize) -> f64 {
    match keep {
        Some(d) if i != j => d[j] as f64,
        _ => 1.0,
    }
}

/// Sample `b`'s maps, computed straight from the definitions in f64.
fn transform_maps(
    q: &[f32],
    k: &[f32],
    mix: &HeadMix<'_>,
    keep: Option<&[f32]>,
    s: &TransformAttentionShape,
    scale: f32,
    b: usize,
) -> TransformMaps {
    let (n, nh, hd, w) = (s.tokens, s.heads, s.head_dim, s.width());
    let at = |h: usize, i: usize, j: usize| (h * n + i) * n + j;
    let mut logits = vec![0.0f64; nh * n * n];
    for g in 0..nh {
        for i in 0..n {
            for j in 0..n {
                let mut dot = 0.0f64;
                for c in 0..hd {
                    dot += q[(b * n + i) * w + g * hd + c] as f64
                        * k[(b * n + j) * w + g * hd + c] as f64;
                }
                logits[at(g, i, j)] = scale as f64 * dot;
            }
        }
    }
    let mut probs = vec![0.0f64; nh * n * n];
    let mut exps = vec![0.0f64; nh * n * n];
    let mut sums = vec![0.0f64; nh * n];
    let mut out_maps = vec![0.0f64; nh * n * n];
    let keep_b = keep.map(|d| &d[b * n..(b + 1) * n]);
    let eps = POLICY_EPS as f64;
    for h in 0..nh {
        for i in 0..n {
            let mixed: Vec<f64> = (0..n)
                .map(|j| {
                    let mut x = mix.pre_bias[h] as f64;
                    for g in 0..nh {
                        x += mix.pre[h * nh + g] as f64 * logits[at(g, i, j)];
                    }
                    x
                })
                .collect();
            let max = mixed.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            for j in 0..n {
                exps[at(h, i, j)] = (mixed[j] - max).exp();
            }
            let gated: Vec<f64> = (0..n)
                .map(|j| exps[at(h, i, j)] * transform_gate(keep_b, i, j))
                .collect();
            let total: f64 = gated.iter().sum();
            for j in 0..n {
                probs[at(h, i, j)] = match keep_b {
                    None => gated[j] / total,
                    Some(_) => (gated[j] + eps / n as f64) / (total + eps),
                };
            }
            sums[h * n + i] = total + eps;
        }
    }
    for h in 0..nh {
        for i in 0..n {
            for j in 0..n {
                let mut x = mix.post_bias[h] as f64 * transform_gate(keep_b, i, j);
                for g in 0..nh {
                    x += mix.post[h * nh + g] as f64 * probs[at(g, i, j)];
                }
                out_maps[at(h, i, j)] = x;
            }
        }
    }
    TransformMaps {
        s: logits,
        probs,
        exps,
        sums,
        out_maps,
    }
}

/// Transform attention forward (see [`crate::transform_attention`]) from the definitions, every
/// map of a sample materialized in f64. out, q, k, v: `[B, N, H*d]`; keep: `[B, N]`.
#[allow(clippy::too_many_arguments)]
pub fn transform_attention_forward_ref(
    out: &mut [f32],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    mix: &HeadMix<'_>,
    keep: Option<&[f32]>,
    s: &TransformAttentionShape,
    scale: f32,
) {
    let (n, nh, hd, w) = (s.tokens, s.heads, s.head_dim, s.width());
    for b in 0..s.batch {
        let maps = transform_maps(q, k, mix, keep, s, scale, b);
        for h in 0..nh {
            for i in 0..n {
                for c in 0..hd {
                    let mut acc = 0.0f64;
                    for j in 0..n {
                        acc += maps.out_maps[(h * n + i) * n + j]
                            * v[(b * n + j) * w + h * hd + c] as f64;
                    }
                    out[(b * n + i) * w + h * hd + c] = acc as f32;
                }
            }
        }
    }
}

/// Transform attention backward from the chain rule written out in f64, accumulating (`+=`) into
/// every gradient given (see [`crate::transform_attention::backward`] for the formulas). The row
/// max of the policy softmax is a constant.
#[allow(clippy::too_many_arguments)]
pub fn transform_attention_backward_ref(
    grads: TransformAttentionGrads<'_>,
    dout: &[f32],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    mix: &HeadMix<'_>,
    keep: Option<&[f32]>,
    s: &TransformAttentionShape,
    scale: f32,
) {
    let (n, nh, hd, w) = (s.tokens, s.heads, s.head_dim, s.width());
    let at = |h: usize, i: usize, j: usize| (h * n + i) * n + j;
    let wide = |g: &Option<&mut [f32]>, len: usize| -> Vec<f64> {
        match g {
            Some(g) => g.iter().map(|&x| x as f64).collect(),
            None => vec![0.0; len],
        }
    };
    let act = s.activation_len().unwrap_or(0);
    let (mut dq, mut dk, mut dv) = (
        wide(&grads.dq, act),
        wide(&grads.dk, act),
        wide(&grads.dv, act),
    );
    let (mut dpre, mut dpre_bias) = (wide(&grads.dpre, nh * nh), wide(&grads.dpre_bias, nh));
    let (mut dpost, mut dpost_bias) = (wide(&grads.dpost, nh * nh), wide(&grads.dpost_bias, nh));
    let mut dkeep = wide(&grads.dkeep, s.batch * n);
    for b in 0..s.batch {
        let maps = transform_maps(q, k, mix, keep, s, scale, b);
        let keep_b = keep.map(|d| &d[b * n..(b + 1) * n]);
        let row = |t: usize| (b * n + t) * w;
        // dP'_h[i,j] = dO_h[i,:] . V_h[j,:];  dV_h[j,:] += sum_i P'_h[i,j] dO_h[i,:]
        let mut dout_maps = vec![0.0f64; nh * n * n];
        for h in 0..nh {
            for i in 0..n {
                for j in 0..n {
                    for c in 0..hd {
                        let (o, x) = (row(i) + h * hd + c, row(j) + h * hd + c);
                        dout_maps[at(h, i, j)] += dout[o] as f64 * v[x] as f64;
                        dv[x] += maps.out_maps[at(h, i, j)] * dout[o] as f64;
                    }
                }
            }
        }
        // Post mix and bias; dG from the bias; dP_g = sum_h post[h,g] dP'_h
        let mut dgate = vec![0.0f64; n * n];
        let mut dprobs = vec![0.0f64; nh * n * n];
        for h in 0..nh {
            for i in 0..n {
                for j in 0..n {
                    let dp = dout_maps[at(h, i, j)];
                    dpost_bias[h] += dp * transform_gate(keep_b, i, j);
                    dgate[i * n + j] += mix.post_bias[h] as f64 * dp;
                    for g in 0..nh {
                        dpost[h * nh + g] += dp * maps.probs[at(g, i, j)];
                        dprobs[at(g, i, j)] += mix.post[h * nh + g] as f64 * dp;
                    }
                }
            }
        }
        // Softmax (or policy softmax) backward to dS'
        let mut dmixed = vec![0.0f64; nh * n * n];
        for h in 0..nh {
            for i in 0..n {
                let t: f64 = (0..n)
                    .map(|j| dprobs[at(h, i, j)] * maps.probs[at(h, i, j)])
                    .sum();
                for j in 0..n {
                    let dp = dprobs[at(h, i, j)];
                    match keep_b {
                        None => dmixed[at(h, i, j)] = maps.probs[at(h, i, j)] * (dp - t),
                        Some(_) => {
                            // P_j = (E_j + eps/N) / (sum E + eps), E_j = exps_j G_j
                            let de = (dp - t) / maps.sums[h * n + i];
                            let e = maps.exps[at(h, i, j)];
                            dmixed[at(h, i, j)] = de * e * transform_gate(keep_b, i, j);
                            dgate[i * n + j] += de * e;
                        }
                    }
                }
            }
        }
        // Pre mix and bias; dS_g = sum_h pre[h,g] dS'_h
        let mut dlogits = vec![0.0f64; nh * n * n];
        for h in 0..nh {
            for i in 0..n {
                for j in 0..n {
                    let ds = dmixed[at(h, i, j)];
                    dpre_bias[h] += ds;
                    for g in 0..nh {
                        dpre[h * nh + g] += ds * maps.s[at(g, i, j)];
                        dlogits[at(g, i, j)] += mix.pre[h * nh + g] as f64 * ds;
                    }
                }
            }
        }
        // dQ_g[i,:] += scale sum_j dS_g[i,j] K_g[j,:];  dK_g[j,:] += scale sum_i dS_g[i,j] Q_g[i,:]
        for g in 0..nh {
            for i in 0..n {
                for j in 0..n {
                    let ds = scale as f64 * dlogits[at(g, i, j)];
                    for c in 0..hd {
                        let (x, y) = (row(i) + g * hd + c, row(j) + g * hd + c);
                        dq[x] += ds * k[y] as f64;
                        dk[y] += ds * q[x] as f64;
                    }
                }
            }
        }
        // dD_j: G[i,j] = D_j only off the diagonal
        for i in 0..n {
            for j in 0..n {
                if i != j {
                    dkeep[b * n + j] += dgate[i * n + j];
                }
            }
        }
    }
    let store = |g: Option<&mut [f32]>, x: Vec<f64>| {
        if let Some(g) = g {
            for (d, v) in g.iter_mut().zip(x) {
                *d = v as f32;
            }
        }
    };
    store(grads.dq, dq);
    store(grads.dk, dk);
    store(grads.dv, dv);
    store(grads.dpre, dpre);
    store(grads.dpre_bias, dpre_bias);
    store(grads.dpost, dpost);
    store(grads.dpost_bias, dpost_bias);
    store(grads.dkeep, dkeep);
}
