//! GPU benchmark of the CUDA kernels, timed with CUDA events (feature `cuda`).
//!
//! `cargo bench --features cuda --bench cuda` prints one JSON line per case:
//! `{"impl":"lithe","op","case","device","median_us","tflops","reps"}`. Each case warms up,
//! then times samples of 10 back-to-back calls between two events and reports the median per call; inputs rotate over
//! enough copies that the working set (>= 128 MiB) does not stay in L2. `scripts/cuda_peers.py`
//! prints the same cases for PyTorch (cuBLAS, FlashAttention) and `scripts/gpu-bench` joins them.
//! Without a GPU it prints a note and exits 0 (exit 1 with `REQUIRE_CUDA=1`).

use cudarc::driver::sys::CUevent_flags;
use lithe::cuda::{self, AttnPath, BLayout, CudaDevice, DeviceTensor, Epilogue, GemmPath, f16};

const WARMUP: usize = 10;
const SAMPLES: usize = 21;
const BATCH: usize = 10;
const REPS: usize = SAMPLES * BATCH;
const L2_ROTATE_BYTES: usize = 128 << 20;

fn fill(n: usize, seed: u64) -> Vec<f16> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let u = (s >> 40) as f32 / (1u64 << 24) as f32;
            f16::from_f32((u - 0.5) * 2.0 + 1e-3)
        })
        .collect()
}

/// Median microseconds per call of `run(i)`: SAMPLES samples, each BATCH back-to-back calls
/// between two events (so the GPU queue stays full and launch latency is hidden, as it is
/// in a model's forward), i = call index (used to rotate inputs).
fn time_us(dev: &CudaDevice, mut run: impl FnMut(usize)) -> f64 {
    let ctx = dev.context();
    let stream = dev.stream();
    for i in 0..WARMUP {
        run(i);
    }
    dev.synchronize().unwrap();
    let mut evs = Vec::with_capacity(SAMPLES);
    let mut i = 0;
    for _ in 0..SAMPLES {
        let a = ctx
            .new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
            .unwrap();
        let b = ctx
            .new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))
            .unwrap();
        a.record(stream).unwrap();
        for _ in 0..BATCH {
            run(i);
            i += 1;
        }
        b.record(stream).unwrap();
        evs.push((a, b));
    }
    dev.synchronize().unwrap();
    let mut t: Vec<f64> = evs
        .iter()
        .map(|(a, b)| a.elapsed_ms(b).unwrap() as f64 * 1e3 / BATCH as f64)
        .collect();
    t.sort_by(|x, y| x.partial_cmp(y).unwrap());
    t[t.len() / 2]
}

fn copies(bytes_per_set: usize) -> usize {
    L2_ROTATE_BYTES.div_ceil(bytes_per_set).clamp(1, 8)
}

fn emit(op: &str, case: &str, device: &str, us: f64, flops: f64) {
    println!(
        "{{\"impl\":\"lithe\",\"op\":\"{op}\",\"case\":\"{case}\",\"device\":\"{device}\",\"median_us\":{us:.2},\"tflops\":{:.1},\"reps\":{REPS}}}",
        flops / us / 1e6
    );
}

#[allow(clippy::too_many_arguments)]
fn bench_gemm(
    dev: &CudaDevice,
    name: &str,
    path: GemmPath,
    m: usize,
    n: usize,
    k: usize,
    layout: BLayout,
    epi: Epilogue,
) {
    let sets = copies((m * k + n * k) * 2);
    let bshape = match layout {
        BLayout::Nt => [n, k],
        BLayout::Nn => [k, n],
    };
    let ins: Vec<(DeviceTensor, DeviceTensor)> = (0..sets)
        .map(|s| {
            (
                dev.upload(&fill(m * k, 2 * s as u64 + 1), &[m, k]).unwrap(),
                dev.upload(&fill(n * k, 2 * s as u64 + 2), &bshape).unwrap(),
            )
        })
        .collect();
    let bias = dev.upload(&fill(n, 99), &[n]).unwrap();
    let mut c = dev.zeros(&[m, n]).unwrap();
    let us = time_us(dev, |i| {
        let (a, b) = &ins[i % sets];
        cuda::gemm_with(dev, path, a, b, layout, Some(&bias), epi, &mut c).unwrap();
    });
    let l = match layout {
        BLayout::Nt => "nt",
        BLayout::Nn => "nn",
    };
    let e = match epi {
        Epilogue::None => "none",
        Epilogue::Bias => "bias",
        Epilogue::BiasGeluErf => "bias_gelu",
        Epilogue::BiasGeluTanh => "bias_gelu_tanh",
    };
    let path = match path {
        GemmPath::Auto => cuda::gemm_auto_path(dev, layout, n, k),
        p => p,
    };
    eprintln!("{name} {m}x{n}x{k} {l} {e}: path {path:?}");
    let case = format!("{name}:{m}x{n}x{k}:{l}:{e}");
    emit(
        "gemm",
        &case,
        &dev.name().unwrap(),
        us,
        2.0 * (m * n * k) as f64,
    );
}

#[allow(clippy::too_many_arguments)]
fn bench_attention(
    dev: &CudaDevice,
    name: &str,
    path: AttnPath,
    b: usize,
    h: usize,
    l: usize,
    d: usize,
    masked: bool,
) {
    let n = b * h * l * d;
    let sets = copies(3 * n * 2);
    let shape = [b, h, l, d];
    let ins: Vec<[DeviceTensor; 3]> = (0..sets)
        .map(|s| {
            [0, 1, 2].map(|j| {
                dev.upload(&fill(n, (3 * s + j + 7) as u64), &shape)
                    .unwrap()
            })
        })
        .collect();
    // Masked case: valid key lengths L, L-32, L-64, ... (at least L/2).
    let lens: Vec<i32> = (0..b).map(|i| (l - (32 * i).min(l / 2)) as i32).collect();
    let dl = dev.upload_i32(&lens).unwrap();
    let mut o = dev.zeros(&shape).unwrap();
    let us = time_us(dev, |i| {
        let [q, k, v] = &ins[i % sets];
        cuda::attention_with(dev, path, q, k, v, masked.then_some(&dl), &mut o).unwrap();
    });
    // FLOPs counted on the keys actually attended: 4 * H * L * d * sum_b(valid keys).
    let keys: usize = if masked {
        lens.iter().map(|&x| x as usize).sum()
    } else {
        b * l
    };
    let flops = 4.0 * (h * l * d * keys) as f64;
    let path = match path {
        AttnPath::Auto => cuda::attention_auto_path(d),
        p => p,
    };
    eprintln!("{name} B{b}H{h}L{l}d{d} masked {masked}: path {path:?}");
    let case = format!(
        "{name}:B{b}H{h}L{l}d{d}:{}",
        if masked { "mask" } else { "nomask" }
    );
    emit("attention", &case, &dev.name().unwrap(), us, flops);
}

/// MiniViT's fused transform attention on ViT shapes `[B, N, H*d]`, random non-identity mixes,
/// with or without a keep policy. FLOPs counted as the two score passes and P'V
/// (6 * B * H * N^2 * d); the head mixes (2 * H^2 FMAs per score, on CUDA cores) come on top.
fn bench_transform_attention(
    dev: &CudaDevice,
    name: &str,
    (b, n, h, d): (usize, usize, usize, usize),
    policy: bool,
) {
    let len = b * n * h * d;
    let sets = copies(3 * len * 2);
    let shape = [b, n, h * d];
    let ins: Vec<[DeviceTensor; 3]> = (0..sets)
        .map(|s| {
            [0, 1, 2].map(|j| {
                dev.upload(&fill(len, (3 * s + j + 11) as u64), &shape)
                    .unwrap()
            })
        })
        .collect();
    let mix_of = |seed: u64, diag: f32| -> Vec<f32> {
        fill(h * h, seed)
            .iter()
            .enumerate()
            .map(|(e, x)| (e / h == e % h) as u8 as f32 * diag + 0.2 * x.to_f32())
            .collect()
    };
    let (pre, post) = (mix_of(101, 1.0), mix_of(102, 0.7));
    let bias = |seed: u64| -> Vec<f32> { fill(h, seed).iter().map(|x| 0.1 * x.to_f32()).collect() };
    let (pre_bias, post_bias) = (bias(103), bias(104));
    let mix = cuda::HeadMix {
        pre: &pre,
        pre_bias: &pre_bias,
        post: &post,
        post_bias: &post_bias,
    };
    // Keep policy of about 70 % of the tokens (DynamicViT's first stage), as 0 / 1 decisions.
    let keep: Vec<f32> = (0..b * n)
        .map(|e| ((e * 7) % 10 < 7) as u8 as f32)
        .collect();
    let dkeep = dev.stream().clone_htod(&keep).unwrap();
    let mut o = dev.zeros(&shape).unwrap();
    let scale = 1.0 / (d as f32).sqrt();
    let us = time_us(dev, |i| {
        let [q, k, v] = &ins[i % sets];
        let keep = policy.then_some(&dkeep);
        cuda::transform_attention(dev, q, k, v, h, scale, &mix, keep, &mut o).unwrap();
    });
    let flops = 6.0 * (b * h * n * n * d) as f64;
    let case = format!(
        "{name}:B{b}N{n}H{h}d{d}:{}",
        if policy { "policy" } else { "nopolicy" }
    );
    emit(
        "transform_attention",
        &case,
        &dev.name().unwrap(),
        us,
        flops,
    );
}

fn main() {
    let dev = match CudaDevice::new(0) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("cuda bench: no usable CUDA device ({e}); nothing to time");
            if std::env::var("REQUIRE_CUDA").as_deref() == Ok("1") {
                std::process::exit(1);
            }
            return;
        }
    };
    eprintln!("cuda bench on {} ({})", dev.name().unwrap(), dev.arch());
    bench_gemm(
        &dev,
        "square",
        GemmPath::Auto,
        4096,
        4096,
        4096,
        BLayout::Nt,
        Epilogue::None,
    );
    bench_gemm(
        &dev,
        "square_wgmma_v3",
        GemmPath::Wgmma,
        4096,
        4096,
        4096,
        BLayout::Nt,
        Epilogue::None,
    );
    bench_gemm(
        &dev,
        "square_mmasync",
        GemmPath::MmaSync,
        4096,
        4096,
        4096,
        BLayout::Nt,
        Epilogue::None,
    );
    bench_gemm(
        &dev,
        "square",
        GemmPath::Auto,
        4096,
        4096,
        4096,
        BLayout::Nn,
        Epilogue::None,
    );
    bench_gemm(
        &dev,
        "square_nn_mmasync",
        GemmPath::MmaSync,
        4096,
        4096,
        4096,
        BLayout::Nn,
        Epilogue::None,
    );
    // MiniLM-L6 (hidden 384, FFN 1536) on 8 x 512 tokens, and BERT-base FFN on the same.
    bench_gemm(
        &dev,
        "minilm_qkv",
        GemmPath::Auto,
        4096,
        1152,
        384,
        BLayout::Nt,
        Epilogue::Bias,
    );
    bench_gemm(
        &dev,
        "minilm_ffn1",
        GemmPath::Auto,
        4096,
        1536,
        384,
        BLayout::Nt,
        Epilogue::BiasGeluErf,
    );
    bench_gemm(
        &dev,
        "minilm_ffn2",
        GemmPath::Auto,
        4096,
        384,
        1536,
        BLayout::Nt,
        Epilogue::Bias,
    );
    bench_gemm(
        &dev,
        "bert_ffn1",
        GemmPath::Auto,
        4096,
        3072,
        768,
        BLayout::Nt,
        Epilogue::BiasGeluErf,
    );
    // "attn" = the Auto path (what the peers' cases are joined with); the others time each
    // kernel path on the same shapes (no peer line).
    use AttnPath::{Auto, Rows64, Rows128Warp32, Rows128Warp32Keys128, Rows128Warp32Prefetch};
    bench_attention(&dev, "attn", Auto, 8, 12, 512, 64, false);
    bench_attention(&dev, "attn", Auto, 8, 12, 512, 64, true);
    bench_attention(&dev, "attn", Auto, 8, 12, 512, 32, false);
    bench_attention(&dev, "attn", Auto, 4, 16, 1024, 128, false);
    bench_attention(&dev, "attn", Auto, 32, 12, 128, 32, false);
    bench_attention(&dev, "attn", Auto, 32, 12, 128, 32, true);
    let shapes = [
        (4, 16, 1024, 128),
        (8, 12, 512, 64),
        (8, 12, 512, 32),
        (32, 12, 128, 32),
    ];
    for (b, h, l, d) in shapes {
        for (name, p) in [
            ("attn_r64", Rows64),
            ("attn_m2", Rows128Warp32),
            ("attn_m2p", Rows128Warp32Prefetch),
        ] {
            bench_attention(&dev, name, p, b, h, l, d, false);
        }
    }
    let m2k128 = Rows128Warp32Keys128;
    bench_attention(&dev, "attn_m2k128", m2k128, 8, 12, 512, 64, false);
    bench_attention(&dev, "attn_r64", Rows64, 8, 12, 512, 64, true);
    bench_attention(
        &dev,
        "attn_m2p",
        Rows128Warp32Prefetch,
        8,
        12,
        512,
        64,
        true,
    );
    // MiniViT on DeiT-S (6 heads) and DeiT-B (12 heads), 197 tokens.
    for (name, shape) in [("deit_s", (64, 197, 6, 64)), ("deit_b", (64, 197, 12, 64))] {
        bench_transform_attention(&dev, name, shape, false);
        bench_transform_attention(&dev, name, shape, true);
    }
}
