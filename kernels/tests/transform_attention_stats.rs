//! The fused transform attention's saved softmax statistics: the forward that saves them writes
//! the same output as the plain forward, the statistics are each row's max and `1 / sum exp`
//! (against an f64 recomputation of `S'`), and the backward that reuses them gives the same
//! gradients as the one that recomputes them (the same kernel computes the statistics in both,
//! so the two agree bit for bit). Shapes straddle the 32-row query block; the policy is off,
//! soft and hard. The kernels run on the process-wide path (`LITHE_ISA` picks another).

use lithe_kernels::KernelError;
use lithe_kernels::transform_attention::{
    HeadMix, PackedKeys, TransformAttentionGrads, TransformAttentionShape,
    transform_attention_backward, transform_attention_backward_with_stats,
    transform_attention_forward, transform_attention_forward_with_stats,
};

/// A small seeded generator (xorshift64*): uniform in [-amp, amp).
struct Gen(u64);

impl Gen {
    fn vec(&mut self, len: usize, amp: f32) -> Vec<f32> {
        (0..len)
            .map(|_| {
                self.0 ^= self.0 >> 12;
                self.0 ^= self.0 << 25;
                self.0 ^= self.0 >> 27;
                let u = ((self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40) as f32)
                    / (1u64 << 24) as f32;
                amp * (2.0 * u - 1.0)
            })
            .collect()
    }
}

/// The gradients of [`grad_bufs`], in order.
const GRAD_NAMES: [&str; 8] = [
    "dq",
    "dk",
    "dv",
    "dpre",
    "dpre_bias",
    "dpost",
    "dpost_bias",
    "dkeep",
];

struct Problem {
    shape: TransformAttentionShape,
    scale: f32,
    qkv: [Vec<f32>; 3],
    mix: [Vec<f32>; 4],
    keep: Option<Vec<f32>>,
}

impl Problem {
    fn new(batch: usize, tokens: usize, heads: usize, head_dim: usize, policy: u8) -> Problem {
        let shape = TransformAttentionShape {
            batch,
            tokens,
            heads,
            head_dim,
        };
        let mut g = Gen(0x9e37_79b9 ^ (tokens * 31 + heads * 7 + policy as usize) as u64);
        let len = shape.activation_len().unwrap();
        let mut near_eye = g.vec(heads * heads, 0.3);
        for h in 0..heads {
            near_eye[h * heads + h] += 1.0;
        }
        let keep = match policy {
            0 => None,
            1 => Some(g.vec(batch * tokens, 0.5).iter().map(|x| x + 0.5).collect()),
            _ => Some(
                g.vec(batch * tokens, 1.0)
                    .iter()
                    .map(|&x| if x < 0.0 { 0.0 } else { 1.0 })
                    .collect(),
            ),
        };
        Problem {
            shape,
            scale: 1.0 / (head_dim as f32).sqrt(),
            qkv: [g.vec(len, 1.5), g.vec(len, 1.5), g.vec(len, 1.0)],
            mix: [
                near_eye.clone(),
                g.vec(heads, 0.5),
                near_eye.iter().rev().copied().collect(),
                g.vec(heads, 0.5),
            ],
            keep,
        }
    }

    fn mix(&self) -> HeadMix<'_> {
        HeadMix {
            pre: &self.mix[0],
            pre_bias: &self.mix[1],
            post: &self.mix[2],
            post_bias: &self.mix[3],
        }
    }

    /// `S'_h[i, :]` of sample `b` in f64.
    fn mixed_row(&self, b: usize, h: usize, i: usize) -> Vec<f64> {
        let s = self.shape;
        let (n, d, w) = (s.tokens, s.head_dim, s.width());
        let [q, k, _] = &self.qkv;
        (0..n)
            .map(|j| {
                let mut x = self.mix[1][h] as f64;
                for g in 0..s.heads {
                    let dot: f64 = (0..d)
                        .map(|c| {
                            q[(b * n + i) * w + g * d + c] as f64
                                * k[(b * n + j) * w + g * d + c] as f64
                        })
                        .sum();
                    x += self.mix[0][h * s.heads + g] as f64 * self.scale as f64 * dot;
                }
                x
            })
            .collect()
    }
}

/// Every gradient buffer, filled with the same non-zero contents (the backward adds into them).
fn grad_bufs(p: &Problem) -> Vec<Vec<f32>> {
    let s = p.shape;
    let (len, h) = (s.activation_len().unwrap(), s.heads);
    let lens = [len, len, len, h * h, h, h * h, h, s.batch * s.tokens];
    let mut g = Gen(5);
    lens.iter().map(|&l| g.vec(l, 1.0)).collect()
}

fn grads<'a>(bufs: &'a mut [Vec<f32>], policy: bool) -> TransformAttentionGrads<'a> {
    let [dq, dk, dv, dpre, dpre_bias, dpost, dpost_bias, dkeep] = bufs else {
        unreachable!("eight gradient buffers")
    };
    TransformAttentionGrads {
        dq: Some(dq),
        dk: Some(dk),
        dv: Some(dv),
        dpre: Some(dpre),
        dpre_bias: Some(dpre_bias),
        dpost: Some(dpost),
        dpost_bias: Some(dpost_bias),
        dkeep: policy.then_some(&mut dkeep[..]),
    }
}

fn check(p: &Problem) {
    let s = p.shape;
    let [q, k, v] = &p.qkv;
    let keep = p.keep.as_deref();
    let len = s.activation_len().unwrap();
    let mut scratch = vec![f32::NAN; s.backward_scratch_len()];
    let fwd_scratch = s.forward_scratch_len();

    let mut plain = vec![f32::NAN; len];
    transform_attention_forward(
        &mut plain,
        q,
        k,
        v,
        &p.mix(),
        keep,
        &s,
        p.scale,
        &mut scratch[..fwd_scratch],
    )
    .unwrap();
    let mut out = vec![f32::NAN; len];
    let mut stats = vec![f32::NAN; s.softmax_stats_len().unwrap()];
    let mut keys = PackedKeys::new();
    transform_attention_forward_with_stats(
        &mut out,
        &mut stats,
        Some(&mut keys),
        q,
        k,
        v,
        &p.mix(),
        keep,
        &s,
        p.scale,
        &mut scratch[..fwd_scratch],
    )
    .unwrap();
    assert_eq!(
        out, plain,
        "{s:?}: the output must not depend on saving statistics"
    );
    assert_eq!(
        keys.samples(),
        s.batch,
        "{s:?}: one set of packed keys per sample"
    );

    // stats[b, h, i] = (max_j S', 1 / sum_j exp(S' - max)); S' in f64 differs from the
    // kernel's f32 by a few ulp of its terms (|S'| ~ 10 here).
    for b in 0..s.batch {
        for h in 0..s.heads {
            for i in 0..s.tokens {
                let row = p.mixed_row(b, h, i);
                let m = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let inv = 1.0 / row.iter().map(|x| (x - m).exp()).sum::<f64>();
                let at = 2 * ((b * s.heads + h) * s.tokens + i);
                let (got_m, got_inv) = (stats[at] as f64, stats[at + 1] as f64);
                assert!(
                    (got_m - m).abs() <= 1e-5 * (1.0 + m.abs()),
                    "{s:?} row max of ({b}, {h}, {i}): {got_m} vs {m}"
                );
                assert!(
                    (got_inv - inv).abs() <= 1e-4 * inv,
                    "{s:?} 1/sum of ({b}, {h}, {i}): {got_inv} vs {inv}"
                );
            }
        }
    }

    let dout = Gen(11).vec(len, 1.0);
    let policy = keep.is_some();
    let mut want = grad_bufs(p);
    transform_attention_backward(
        grads(&mut want, policy),
        &dout,
        q,
        k,
        v,
        &p.mix(),
        keep,
        &s,
        p.scale,
        &mut scratch,
    )
    .unwrap();
    // With the statistics alone, and with the packed keys too (the same K^T the backward would
    // pack).
    for (keys, with) in [(None, "statistics"), (Some(&keys), "statistics and keys")] {
        let mut got = grad_bufs(p);
        transform_attention_backward_with_stats(
            grads(&mut got, policy),
            &dout,
            &stats,
            keys,
            q,
            k,
            v,
            &p.mix(),
            keep,
            &s,
            p.scale,
            &mut scratch,
        )
        .unwrap();
        for ((name, g), w) in GRAD_NAMES.iter().zip(&got).zip(&want) {
            assert_eq!(g, w, "{s:?}: {name} with saved {with}");
        }
    }
}

#[test]
fn saved_statistics_match_recomputed_ones() {
    for (batch, tokens, heads, head_dim) in
        [(1, 1, 1, 1), (2, 33, 3, 8), (1, 65, 4, 16), (2, 40, 6, 5)]
    {
        for policy in 0..3 {
            check(&Problem::new(batch, tokens, heads, head_dim, policy));
        }
    }
}

#[test]
fn wrong_statistics_lengths_are_errors() {
    let p = Problem::new(2, 5, 3, 4, 0);
    let s = p.shape;
    let [q, k, v] = &p.qkv;
    let len = s.activation_len().unwrap();
    let mut scratch = vec![0f32; s.backward_scratch_len()];
    let mut out = vec![0f32; len];
    let short = s.softmax_stats_len().unwrap() - 1;
    let mut stats = vec![0f32; short];
    let fwd = transform_attention_forward_with_stats(
        &mut out,
        &mut stats,
        None,
        q,
        k,
        v,
        &p.mix(),
        None,
        &s,
        p.scale,
        &mut scratch[..s.forward_scratch_len()],
    );
    assert!(
        matches!(fwd, Err(KernelError::LengthMismatch(_))),
        "{fwd:?}"
    );
    let mut bufs = grad_bufs(&p);
    let bwd = transform_attention_backward_with_stats(
        grads(&mut bufs, false),
        &out,
        &stats,
        None,
        q,
        k,
        v,
        &p.mix(),
        None,
        &s,
        p.scale,
        &mut scratch,
    );
    assert!(
        matches!(bwd, Err(KernelError::LengthMismatch(_))),
        "{bwd:?}"
    );
}

/// Packed keys saved by a forward of another shape (or never filled) are refused, not read.
#[test]
fn keys_of_another_shape_are_errors() {
    let p = Problem::new(2, 5, 3, 4, 0);
    let s = p.shape;
    let [q, k, v] = &p.qkv;
    let len = s.activation_len().unwrap();
    let mut scratch = vec![0f32; s.backward_scratch_len()];
    let mut out = vec![0f32; len];
    let mut stats = vec![0f32; s.softmax_stats_len().unwrap()];
    // Keys of the first sample only: a one-sample forward of the same tensors.
    let one = TransformAttentionShape { batch: 1, ..s };
    let sample = one.activation_len().unwrap();
    let mut one_keys = PackedKeys::new();
    transform_attention_forward_with_stats(
        &mut out[..sample],
        &mut stats[..one.softmax_stats_len().unwrap()],
        Some(&mut one_keys),
        &q[..sample],
        &k[..sample],
        &v[..sample],
        &p.mix(),
        None,
        &one,
        p.scale,
        &mut scratch[..one.forward_scratch_len()],
    )
    .unwrap();
    assert_eq!(one_keys.samples(), 1);
    for keys in [PackedKeys::new(), one_keys] {
        let mut bufs = grad_bufs(&p);
        let bwd = transform_attention_backward_with_stats(
            grads(&mut bufs, false),
            &out,
            &stats,
            Some(&keys),
            q,
            k,
            v,
            &p.mix(),
            None,
            &s,
            p.scale,
            &mut scratch,
        );
        assert!(
            matches!(bwd, Err(KernelError::LengthMismatch(_))),
            "{keys:?}: {bwd:?}"
        );
    }
}
