//! GPU test of `lithe::cuda::transform_attention` (MiniViT's fused head-mixing attention, with
//! and without a DynamicViT keep policy) against a plain f64 CPU loop of the same maths, on
//! fresh random inputs and random non-identity mixes. Without a usable GPU the GPU tests print
//! a note and pass, unless `REQUIRE_CUDA=1`, in which case they fail.
//! Run: `cargo test --release --features cuda --test cuda_transform_attention`.
#![cfg(feature = "cuda")]

mod cuda_common;

use cuda_common::{Rng, device};
use lithe::cuda::{self, CudaDevice, DeviceTensor, HeadMix, f16};

/// Owned head mixes: `[H, H]` matrices near (but not equal to) the identity and small biases.
struct Mix {
    pre: Vec<f32>,
    pre_bias: Vec<f32>,
    post: Vec<f32>,
    post_bias: Vec<f32>,
}

impl Mix {
    fn random(rng: &mut Rng, h: usize) -> Self {
        let mut matrix = |diag: f64, off: f64| -> Vec<f32> {
            (0..h * h)
                .map(|e| ((e / h == e % h) as u8 as f64 * diag + rng.sym(off)) as f32)
                .collect()
        };
        let (pre, post) = (matrix(1.0, 0.4), matrix(0.7, 0.3));
        let pre_bias = (0..h).map(|_| rng.sym(0.5) as f32).collect();
        let post_bias = (0..h).map(|_| rng.sym(0.02) as f32).collect();
        Mix {
            pre,
            pre_bias,
            post,
            post_bias,
        }
    }
    fn view(&self) -> HeadMix<'_> {
        HeadMix {
            pre: &self.pre,
            pre_bias: &self.pre_bias,
            post: &self.post,
            post_bias: &self.post_bias,
        }
    }
}

/// The op written out in f64: q, k, v `[B, N, H*d]`, keep `[B, N]`.
#[allow(clippy::too_many_arguments)]
fn reference(
    q: &[f64],
    k: &[f64],
    v: &[f64],
    (b, n, h, d): (usize, usize, usize, usize),
    scale: f64,
    mix: &Mix,
    keep: Option<&[f32]>,
) -> Vec<f64> {
    let c = h * d;
    let row = |x: &[f64], s: usize, t: usize, g: usize| x[(s * n + t) * c + g * d..][..d].to_vec();
    let eps = if keep.is_some() { 1e-6 } else { 0.0 };
    let mut out = vec![0.0; b * n * c];
    for s in 0..b {
        for i in 0..n {
            // G_ij = keep_j + (1 - keep_j) [i == j]; 1 without a policy.
            let gate =
                |j: usize| keep.map_or(1.0, |kp| if i == j { 1.0 } else { kp[s * n + j] as f64 });
            // scores[g][j] = scale * Q_g[i] . K_g[j]
            let qi: Vec<Vec<f64>> = (0..h).map(|g| row(q, s, i, g)).collect();
            let scores: Vec<Vec<f64>> = (0..h)
                .map(|g| {
                    (0..n)
                        .map(|j| {
                            scale
                                * qi[g]
                                    .iter()
                                    .zip(row(k, s, j, g))
                                    .map(|(a, b)| a * b)
                                    .sum::<f64>()
                        })
                        .collect()
                })
                .collect();
            // P_h = (exp(S'_h - max) G + eps/N) / (sum_j exp(S'_h - max) G + eps)
            let p: Vec<Vec<f64>> = (0..h)
                .map(|hh| {
                    let mixed: Vec<f64> = (0..n)
                        .map(|j| {
                            mix.pre_bias[hh] as f64
                                + (0..h)
                                    .map(|g| mix.pre[hh * h + g] as f64 * scores[g][j])
                                    .sum::<f64>()
                        })
                        .collect();
                    let mx = mixed.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = (0..n).map(|j| (mixed[j] - mx).exp() * gate(j)).collect();
                    let z: f64 = e.iter().sum();
                    e.iter().map(|x| (x + eps / n as f64) / (z + eps)).collect()
                })
                .collect();
            // O_h[i] = sum_j (sum_g post[h, g] P_g + post_bias[h] G) V_h[j]
            for hh in 0..h {
                let o = &mut out[(s * n + i) * c + hh * d..][..d];
                let mixed = (0..n).map(|j| {
                    mix.post_bias[hh] as f64 * gate(j)
                        + (0..h)
                            .map(|g| mix.post[hh * h + g] as f64 * p[g][j])
                            .sum::<f64>()
                });
                for (j, pj) in mixed.enumerate() {
                    for (oc, vc) in o.iter_mut().zip(row(v, s, j, hh)) {
                        *oc += pj * vc;
                    }
                }
            }
        }
    }
    out
}

fn f64s(v: &[f16]) -> Vec<f64> {
    v.iter().map(|x| x.to_f64()).collect()
}

/// A device tensor filled with NaN, so unwritten outputs are caught.
fn poisoned(dev: &CudaDevice, shape: &[usize]) -> DeviceTensor {
    let n: usize = shape.iter().product();
    dev.upload(&vec![f16::NAN; n], shape).unwrap()
}

#[test]
fn transform_attention_matches_reference() {
    let Some(dev) = device("transform_attention_matches_reference") else {
        return;
    };
    let mut rng = Rng::new();
    // (B, N, H, d, keep policy): N = 1, one key tile with a tail, a query block plus one row,
    // ViT's 197 tokens; H = 1, 3, 12 and the other instantiated counts.
    let cases = [
        (2, 1, 1, 64, false),
        (2, 1, 3, 32, true),
        (2, 17, 3, 64, true),
        (3, 17, 1, 32, false),
        (1, 33, 8, 64, false),
        (1, 40, 2, 64, true),
        (1, 50, 4, 32, true),
        (2, 65, 12, 64, false),
        (1, 65, 12, 32, true),
        (1, 65, 6, 64, true),
        (2, 197, 12, 64, true),
        (1, 197, 3, 64, false),
        (1, 197, 12, 32, false),
        (1, 197, 6, 64, true),
    ];
    for (b, n, h, d, policy) in cases {
        let len = b * n * h * d;
        let (q, k, v) = (
            rng.halfs(len, 2.0),
            rng.halfs(len, 2.0),
            rng.halfs(len, 1.0),
        );
        let mix = Mix::random(&mut rng, h);
        // Hard (0 / 1) decisions as at DynamicViT inference, and soft ones as in training.
        let keep: Vec<f32> = (0..b * n)
            .map(|e| match e % 3 {
                0 => 0.0,
                1 => 1.0,
                _ => rng.unit() as f32,
            })
            .collect();
        let keep = policy.then_some(keep);
        let scale = 1.0 / (d as f32).sqrt();
        let shape = [b, n, h * d];
        let (dq, dk, dv) = (
            dev.upload(&q, &shape).unwrap(),
            dev.upload(&k, &shape).unwrap(),
            dev.upload(&v, &shape).unwrap(),
        );
        let dkeep = keep.as_ref().map(|kp| dev.stream().clone_htod(kp).unwrap());
        let mut dout = poisoned(&dev, &shape);
        let view = mix.view();
        cuda::transform_attention(
            &dev,
            &dq,
            &dk,
            &dv,
            h,
            scale,
            &view,
            dkeep.as_ref(),
            &mut dout,
        )
        .unwrap();
        let got = dev.download(&dout).unwrap();
        let want = reference(
            &f64s(&q),
            &f64s(&k),
            &f64s(&v),
            (b, n, h, d),
            scale as f64,
            &mix,
            keep.as_deref(),
        );
        let out_scale = want.iter().fold(0.0f64, |m, x| m.max(x.abs()));
        let mut max_err = 0.0f64;
        for (e, (g, w)) in got.iter().zip(&want).enumerate() {
            let g = g.to_f64();
            assert!(g.is_finite(), "B{b} N{n} H{h} d{d}: output {e} is {g}");
            max_err = max_err.max((g - w).abs());
        }
        let rel = max_err / out_scale.max(1e-30);
        eprintln!(
            "transform attention B{b} N{n} H{h} d{d} policy {policy}: max err {max_err:.2e}, \
             output scale {out_scale:.2e}, relative {rel:.2e}"
        );
        assert!(
            rel <= 1e-2,
            "transform attention B{b} N{n} H{h} d{d} policy {policy}: max err {max_err:.3e} \
             over output scale {out_scale:.3e}"
        );
    }
}

#[test]
fn transform_attention_rejects_bad_arguments() {
    let Some(dev) = device("transform_attention_rejects_bad_arguments") else {
        return;
    };
    let mut rng = Rng::new();
    let (b, n, h, d) = (2, 5, 3, 32);
    let shape = [b, n, h * d];
    let x = dev.upload(&rng.halfs(b * n * h * d, 1.0), &shape).unwrap();
    let mix = Mix::random(&mut rng, h);
    let view = mix.view();
    let mut o = dev.zeros(&shape).unwrap();
    let run = |q: &DeviceTensor,
               heads: usize,
               m: &HeadMix,
               keep: Option<&[f32]>,
               o: &mut DeviceTensor| {
        let keep = keep.map(|kp| dev.stream().clone_htod(kp).unwrap());
        cuda::transform_attention(&dev, q, &x, &x, heads, 0.1, m, keep.as_ref(), o)
    };
    run(&x, h, &view, None, &mut o).unwrap();
    run(&x, h, &view, Some(&[0.5; 10]), &mut o).unwrap();
    // Q of another shape; heads not dividing the width; no kernel for d = 48 or 5 heads.
    let other = dev.zeros(&[b, n + 1, h * d]).unwrap();
    assert!(run(&other, h, &view, None, &mut o).is_err());
    assert!(run(&x, 5, &view, None, &mut o).is_err());
    assert!(run(&x, 2, &view, None, &mut o).is_err());
    // Mixes of the wrong size or not finite; a keep policy of the wrong length.
    let short = HeadMix {
        pre: &mix.pre[1..],
        ..view
    };
    assert!(run(&x, h, &short, None, &mut o).is_err());
    let nan = vec![f32::NAN; h];
    let bad = HeadMix {
        post_bias: &nan,
        ..view
    };
    assert!(run(&x, h, &bad, None, &mut o).is_err());
    assert!(run(&x, h, &view, Some(&[0.5; 9]), &mut o).is_err());
}

#[test]
fn transform_attention_kernels_fit_the_datacenter_gpus() {
    // Every head count of the kernel set at both widths; 12 heads of width 64 (DeiT-B) is the
    // largest block and must fit sm_80's 163 KiB (sm_90 allows 227 KiB).
    for h in cuda::TRANSFORM_ATTENTION_HEADS {
        for d in [32, 64] {
            assert!(cuda::transform_attention_supported(h, d));
            assert!(cuda::transform_attention_smem_bytes(h, d) <= 166_912);
        }
        assert!(!cuda::transform_attention_supported(h, 48));
    }
    assert!(!cuda::transform_attention_supported(5, 64));
    assert!(!cuda::transform_attention_supported(13, 64));
    assert_eq!(cuda::transform_attention_smem_bytes(12, 64), 154_624);
}
