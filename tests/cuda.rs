//! GPU tests of every CUDA kernel against an f64 CPU reference, on fresh random (never zero)
//! inputs. Without a usable GPU each test prints a note and passes, unless `REQUIRE_CUDA=1`,
//! in which case it fails. Run: `cargo test --release --features cuda --test cuda`.
#![cfg(feature = "cuda")]

mod cuda_common;

use cuda_common::{Rng, device};
use lithe::cuda::{self, AttnPath, BLayout, CudaDevice, DeviceTensor, Epilogue, GemmPath, f16};

fn f64s(v: &[f16]) -> Vec<f64> {
    v.iter().map(|x| x.to_f64()).collect()
}

/// Relative Frobenius error; also fails on any non-finite output (catches unwritten NaN poison).
fn rel_err(got: &[f16], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len());
    let (mut num, mut den) = (0.0, 0.0);
    for (g, w) in got.iter().zip(want) {
        let g = g.to_f64();
        assert!(g.is_finite(), "non-finite output {g} (unwritten element?)");
        num += (g - w) * (g - w);
        den += w * w;
    }
    (num / den.max(1e-300)).sqrt()
}

/// A device tensor filled with NaN, so unwritten outputs are caught.
fn poisoned(dev: &CudaDevice, shape: &[usize]) -> DeviceTensor {
    let n: usize = shape.iter().product();
    dev.upload(&vec![f16::NAN; n], shape).unwrap()
}

fn gelu_erf(x: f64) -> f64 {
    // erf via Abramowitz-Stegun 7.1.26 is too coarse; use a series/continued-fraction-free
    // high-accuracy form: erf(x) = 1 - erfc(x) with the Numerical Recipes erfc (|err| < 1.2e-7).
    let z = (x / std::f64::consts::SQRT_2).abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    let erf = if x >= 0.0 { 1.0 - r } else { r - 1.0 };
    0.5 * x * (1.0 + erf)
}

fn gelu_tanh(x: f64) -> f64 {
    0.5 * x * (1.0 + (0.797_884_560_802_865_4 * (x + 0.044715 * x * x * x)).tanh())
}

#[allow(clippy::too_many_arguments)]
fn gemm_ref(
    a: &[f64],
    b: &[f64],
    bias: &[f64],
    m: usize,
    n: usize,
    k: usize,
    layout: BLayout,
    epi: Epilogue,
) -> Vec<f64> {
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut s = 0.0;
            for p in 0..k {
                let bv = match layout {
                    BLayout::Nt => b[j * k + p],
                    BLayout::Nn => b[p * n + j],
                };
                s += a[i * k + p] * bv;
            }
            c[i * n + j] = match epi {
                Epilogue::None => s,
                Epilogue::Bias => s + bias[j],
                Epilogue::BiasGeluErf => gelu_erf(s + bias[j]),
                Epilogue::BiasGeluTanh => gelu_tanh(s + bias[j]),
            };
        }
    }
    c
}

fn check_gemm(
    dev: &CudaDevice,
    rng: &mut Rng,
    m: usize,
    n: usize,
    k: usize,
    layout: BLayout,
    epi: Epilogue,
) {
    let a = rng.vec(m * k, 1.0);
    let b = rng.vec(n * k, 1.0);
    let bias = rng.vec(n, 1.0);
    let da = dev.upload(&a, &[m, k]).unwrap();
    let bshape = match layout {
        BLayout::Nt => [n, k],
        BLayout::Nn => [k, n],
    };
    let db = dev.upload(&b, &bshape).unwrap();
    let dbias = dev.upload(&bias, &[n]).unwrap();
    let want = gemm_ref(&f64s(&a), &f64s(&b), &f64s(&bias), m, n, k, layout, epi);
    // Every path that can run this shape here: the automatic choice and each explicit one.
    let mut paths = vec![GemmPath::Auto, GemmPath::Simple];
    if cuda::gemm_uses_tensor_cores(layout, n, k) {
        paths.push(GemmPath::MmaSync);
    }
    if cuda::gemm_auto_path(dev, layout, n, k) == GemmPath::WgmmaTma {
        paths.push(GemmPath::WgmmaTma);
        if layout == BLayout::Nt {
            paths.push(GemmPath::Wgmma);
        }
    }
    for path in paths {
        let mut dc = poisoned(dev, &[m, n]);
        cuda::gemm_with(dev, path, &da, &db, layout, Some(&dbias), epi, &mut dc).unwrap();
        let got = dev.download(&dc).unwrap();
        let err = rel_err(&got, &want);
        eprintln!("gemm {m}x{n}x{k} {layout:?} {epi:?} [{path:?}]: rel err {err:.2e}");
        assert!(
            err <= 1e-2,
            "gemm {m}x{n}x{k} {layout:?} {epi:?} {path:?}: rel err {err:.3e} > 1e-2"
        );
    }
}

#[test]
fn gemm_matches_reference_on_odd_shapes() {
    let Some(dev) = device("gemm_matches_reference_on_odd_shapes") else {
        return;
    };
    let mut rng = Rng::new();
    let shapes = [
        (1, 1, 8),
        (1, 7, 24),
        (7, 33, 8),
        (33, 1, 40),
        (127, 129, 24),
        (128, 128, 32),
        (129, 127, 136),
        (1000, 257, 64),
        (300, 520, 200),
        (256, 384, 1024),
        (130, 264, 584), // 10 K-tiles (ring wraps), K tail of 8, M and N edges
        (385, 1000, 8),  // one K-tile, mostly out of range
        (5, 3, 7),       // K % 8 != 0: fallback
        (33, 130, 13),   // fallback
        (1, 1, 1),
    ];
    for &(m, n, k) in &shapes {
        for layout in [BLayout::Nt, BLayout::Nn] {
            check_gemm(&dev, &mut rng, m, n, k, layout, Epilogue::None);
        }
    }
    for epi in [
        Epilogue::Bias,
        Epilogue::BiasGeluErf,
        Epilogue::BiasGeluTanh,
    ] {
        for layout in [BLayout::Nt, BLayout::Nn] {
            check_gemm(&dev, &mut rng, 200, 136, 72, layout, epi);
            check_gemm(&dev, &mut rng, 17, 9, 11, layout, epi);
        }
    }
}

#[test]
fn gemm_rejects_bad_shapes() {
    let Some(dev) = device("gemm_rejects_bad_shapes") else {
        return;
    };
    let a = dev.zeros(&[4, 8]).unwrap();
    let b = dev.zeros(&[5, 16]).unwrap();
    let mut c = dev.zeros(&[4, 5]).unwrap();
    assert!(cuda::gemm(&dev, &a, &b, BLayout::Nt, None, Epilogue::None, &mut c).is_err());
    let b = dev.zeros(&[5, 8]).unwrap();
    assert!(cuda::gemm(&dev, &a, &b, BLayout::Nt, None, Epilogue::Bias, &mut c).is_err());
    cuda::gemm(&dev, &a, &b, BLayout::Nt, None, Epilogue::None, &mut c).unwrap();
}

#[allow(clippy::too_many_arguments)]
fn attention_ref(
    q: &[f64],
    k: &[f64],
    v: &[f64],
    lens: Option<&[i32]>,
    b: usize,
    h: usize,
    l: usize,
    d: usize,
) -> Vec<f64> {
    let mut o = vec![0.0; b * h * l * d];
    let scale = 1.0 / (d as f64).sqrt();
    for bi in 0..b {
        let kv = lens.map_or(l, |ls| (ls[bi].max(0) as usize).min(l));
        for hi in 0..h {
            let base = (bi * h + hi) * l * d;
            for i in 0..l {
                if kv == 0 {
                    continue;
                }
                let s: Vec<f64> = (0..kv)
                    .map(|j| {
                        (0..d)
                            .map(|c| q[base + i * d + c] * k[base + j * d + c])
                            .sum::<f64>()
                            * scale
                    })
                    .collect();
                let mx = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = s.iter().map(|x| (x - mx).exp()).collect();
                let z: f64 = e.iter().sum();
                for c in 0..d {
                    o[base + i * d + c] =
                        (0..kv).map(|j| e[j] * v[base + j * d + c]).sum::<f64>() / z;
                }
            }
        }
    }
    o
}

#[test]
fn attention_matches_reference_with_padding_mask() {
    let Some(dev) = device("attention_matches_reference_with_padding_mask") else {
        return;
    };
    let mut rng = Rng::new();
    // (B, H, L, D, key lengths)
    type Case = (usize, usize, usize, usize, Option<Vec<i32>>);
    let cases: [Case; 10] = [
        (2, 3, 77, 64, Some(vec![77, 40])),
        (2, 2, 130, 32, None),
        (1, 2, 64, 128, None),
        (3, 1, 200, 128, Some(vec![1, 199, 64])),
        (2, 2, 1, 64, None),
        (2, 1, 50, 32, Some(vec![0, 50])),
        (1, 4, 256, 64, Some(vec![129])),
        (2, 2, 300, 128, Some(vec![300, 131])),
        (1, 3, 257, 64, None),
        (1, 1, 1, 128, None),
    ];
    for (b, h, l, d, lens) in cases {
        let n = b * h * l * d;
        let (q, k, v) = (rng.vec(n, 2.0), rng.vec(n, 2.0), rng.vec(n, 1.0));
        let shape = [b, h, l, d];
        let (dq, dk, dv) = (
            dev.upload(&q, &shape).unwrap(),
            dev.upload(&k, &shape).unwrap(),
            dev.upload(&v, &shape).unwrap(),
        );
        let dl = lens.as_ref().map(|ls| dev.upload_i32(ls).unwrap());
        let want = attention_ref(&f64s(&q), &f64s(&k), &f64s(&v), lens.as_deref(), b, h, l, d);
        for path in [
            AttnPath::Auto,
            AttnPath::Rows64,
            AttnPath::Rows128Warp32,
            AttnPath::Rows128Warp32Keys128,
            AttnPath::Rows128Warp32Prefetch,
        ] {
            if !cuda::attention_path_supported(path, d) {
                let mut dout = dev.zeros(&shape).unwrap();
                let r = cuda::attention_with(&dev, path, &dq, &dk, &dv, dl.as_ref(), &mut dout);
                assert!(r.is_err());
                continue;
            }
            let mut dout = poisoned(&dev, &shape);
            cuda::attention_with(&dev, path, &dq, &dk, &dv, dl.as_ref(), &mut dout).unwrap();
            let got = dev.download(&dout).unwrap();
            let err = rel_err(&got, &want);
            eprintln!("attention B{b} H{h} L{l} d{d} lens {lens:?} [{path:?}]: rel err {err:.2e}");
            assert!(
                err <= 1e-2,
                "attention B{b} H{h} L{l} d{d} [{path:?}]: rel err {err:.3e}"
            );
            if let Some(ls) = &lens {
                for (bi, &len) in ls.iter().enumerate() {
                    if len == 0 {
                        let s = bi * h * l * d;
                        assert!(got[s..s + h * l * d].iter().all(|x| x.to_f32() == 0.0));
                    }
                }
            }
        }
    }
}

#[test]
fn layernorm_matches_reference() {
    let Some(dev) = device("layernorm_matches_reference") else {
        return;
    };
    let mut rng = Rng::new();
    for (rows, cols) in [(37, 384), (5, 127), (1, 1), (64, 1000)] {
        let x: Vec<f16> = rng
            .vec(rows * cols, 3.0)
            .iter()
            .map(|v| f16::from_f32(v.to_f32() + 0.5))
            .collect();
        let g = rng.vec(cols, 1.5);
        let bt = rng.vec(cols, 1.0);
        let eps = 1e-5f32;
        let dx = dev.upload(&x, &[rows, cols]).unwrap();
        let dg = dev.upload(&g, &[cols]).unwrap();
        let db = dev.upload(&bt, &[cols]).unwrap();
        let mut dout = poisoned(&dev, &[rows, cols]);
        cuda::layernorm(&dev, &dx, &dg, &db, eps, &mut dout).unwrap();
        let got = dev.download(&dout).unwrap();
        let (xf, gf, bf) = (f64s(&x), f64s(&g), f64s(&bt));
        let mut want = vec![0.0; rows * cols];
        for r in 0..rows {
            let row = &xf[r * cols..(r + 1) * cols];
            let mean = row.iter().sum::<f64>() / cols as f64;
            let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / cols as f64;
            let rstd = 1.0 / (var + eps as f64).sqrt();
            for c in 0..cols {
                want[r * cols + c] = (row[c] - mean) * rstd * gf[c] + bf[c];
            }
        }
        let err = rel_err(&got, &want);
        eprintln!("layernorm {rows}x{cols}: rel err {err:.2e}");
        assert!(err <= 1e-2, "layernorm {rows}x{cols}: {err:.3e}");
    }
}

#[test]
fn softmax_matches_reference() {
    let Some(dev) = device("softmax_matches_reference") else {
        return;
    };
    let mut rng = Rng::new();
    for (rows, cols) in [(19, 1000), (7, 33), (3, 1), (128, 512)] {
        let x = rng.vec(rows * cols, 6.0);
        let dx = dev.upload(&x, &[rows, cols]).unwrap();
        let mut dout = poisoned(&dev, &[rows, cols]);
        cuda::softmax_rows(&dev, &dx, &mut dout).unwrap();
        let got = dev.download(&dout).unwrap();
        let xf = f64s(&x);
        let mut want = vec![0.0; rows * cols];
        for r in 0..rows {
            let row = &xf[r * cols..(r + 1) * cols];
            let mx = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let z: f64 = row.iter().map(|v| (v - mx).exp()).sum();
            for c in 0..cols {
                want[r * cols + c] = (row[c] - mx).exp() / z;
            }
        }
        let err = rel_err(&got, &want);
        eprintln!("softmax {rows}x{cols}: rel err {err:.2e}");
        assert!(err <= 1e-2, "softmax {rows}x{cols}: {err:.3e}");
    }
}

#[test]
fn gelu_and_add_match_reference() {
    let Some(dev) = device("gelu_and_add_match_reference") else {
        return;
    };
    let mut rng = Rng::new();
    for n in [1usize, 2, 1001, 65536 + 3] {
        let x = rng.vec(n, 4.0);
        let y = rng.vec(n, 4.0);
        let dx = dev.upload(&x, &[n]).unwrap();
        let dy = dev.upload(&y, &[n]).unwrap();
        let mut dout = poisoned(&dev, &[n]);
        cuda::gelu(&dev, &dx, &mut dout).unwrap();
        let got = dev.download(&dout).unwrap();
        let want: Vec<f64> = f64s(&x).into_iter().map(gelu_erf).collect();
        let err = rel_err(&got, &want);
        assert!(err <= 1e-2, "gelu n={n}: {err:.3e}");
        let mut dsum = poisoned(&dev, &[n]);
        cuda::add(&dev, &dx, &dy, &mut dsum).unwrap();
        let got = dev.download(&dsum).unwrap();
        let want: Vec<f64> = x
            .iter()
            .zip(&y)
            .map(|(a, b)| a.to_f64() + b.to_f64())
            .collect();
        let err2 = rel_err(&got, &want);
        eprintln!("gelu/add n={n}: rel err {err:.2e} / {err2:.2e}");
        assert!(err2 <= 1e-2, "add n={n}: {err2:.3e}");
    }
}

#[test]
fn embedding_gather_matches_reference() {
    let Some(dev) = device("embedding_gather_matches_reference") else {
        return;
    };
    let mut rng = Rng::new();
    for (vocab, dim) in [(1000, 384), (17, 7)] {
        let table = rng.vec(vocab * dim, 1.0);
        let ids: Vec<u32> = (0..93)
            .map(|_| (rng.next() % vocab as u64) as u32)
            .collect();
        let dt = dev.upload(&table, &[vocab, dim]).unwrap();
        let mut dout = poisoned(&dev, &[ids.len(), dim]);
        cuda::embedding_gather_checked(&dev, &dt, &ids, &mut dout).unwrap();
        let got = dev.download(&dout).unwrap();
        for (i, &id) in ids.iter().enumerate() {
            let id = id as usize;
            assert_eq!(
                &got[i * dim..(i + 1) * dim],
                &table[id * dim..(id + 1) * dim]
            );
        }
        let bad = [0u32, vocab as u32];
        assert!(cuda::embedding_gather_checked(&dev, &dt, &bad, &mut dout).is_err());
    }
}
