//! Per-call times of the GEMMs in one training step of a small Transformer (the tiny ViT: 3200
//! tokens of width 64, MLP 256, 4 heads of 16 over 50 tokens), in the layouts the model issues
//! them: a Linear's forward reads its weight transposed (`X W^T`), the input gradient is
//! `dY W`, the weight gradient `dY^T X` accumulates, and attention runs one small GEMM per
//! (batch, head). Single thread, thread CPU time (robust when the machine is shared), median.
//!
//! The `vit` rows are the per-head GEMMs of a ViT-S attention block (65 tokens, head width 64;
//! 66 query rows of a 197-token sample), whose score matrices end in a 1- or 5-column panel and
//! whose row counts end in a partial tile.
//!
//! `cargo run --release --example gemm_shapes -p lithe-kernels [filter]`

use lithe_kernels::{GemmOptions, Isa, MatMut, MatRef, sgemm_with};

#[path = "common/cpu_time.rs"]
mod cpu_time;
use cpu_time::cpu_now;

/// (name, M, K, N, A transposed, B transposed, beta).
const SHAPES: [(&str, usize, usize, usize, bool, bool, f32); 20] = [
    ("fwd qkvo X.W^T", 3200, 64, 64, false, true, 0.0),
    ("fwd fc1 X.W^T", 3200, 64, 256, false, true, 0.0),
    ("fwd fc2 X.W^T", 3200, 256, 64, false, true, 0.0),
    ("fwd patch X.W^T", 3136, 16, 64, false, true, 0.0),
    ("bwd dX qkvo dY.W", 3200, 64, 64, false, false, 1.0),
    ("bwd dX fc1 dY.W", 3200, 256, 64, false, false, 1.0),
    ("bwd dX fc2 dY.W", 3200, 64, 256, false, false, 1.0),
    ("bwd dW qkvo dY^T.X", 64, 3200, 64, true, false, 1.0),
    ("bwd dW fc1 dY^T.X", 256, 3200, 64, true, false, 1.0),
    ("bwd dW fc2 dY^T.X", 64, 3200, 256, true, false, 1.0),
    ("attn Q.K^T", 50, 16, 50, false, true, 0.0),
    ("attn P.V", 50, 50, 16, false, false, 0.0),
    ("attn dP=dO.V^T", 50, 16, 50, false, true, 1.0),
    ("attn dV=P^T.dO", 50, 50, 16, true, false, 1.0),
    ("attn dQ=dS.K", 50, 50, 16, false, false, 1.0),
    ("attn dK=dS^T.Q", 50, 50, 16, true, false, 1.0),
    ("vit Q.K^T", 65, 64, 65, false, true, 0.0),
    ("vit P.V", 65, 65, 64, false, false, 0.0),
    ("vit dK=dS^T.Q", 65, 65, 64, true, false, 1.0),
    ("vit Q.K^T 197", 66, 64, 197, false, true, 0.0),
];

fn main() {
    let filter = std::env::args().nth(1).unwrap_or_default();
    let opts = GemmOptions {
        isa: Some(Isa::best()),
        threads: Some(1),
    };
    let mut total = 0.0;
    for (name, m, k, n, ta, tb, beta) in SHAPES {
        if !name.contains(&filter) {
            continue;
        }
        let a: Vec<f32> = (0..m * k)
            .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
            .collect();
        let b: Vec<f32> = (0..k * n)
            .map(|i| ((i * 104729) % 1000) as f32 / 1000.0 - 0.5)
            .collect();
        let mut c = vec![0.0f32; m * n];
        let av = if ta {
            MatRef::row_major(&a, k, m).unwrap().t()
        } else {
            MatRef::row_major(&a, m, k).unwrap()
        };
        let bv = if tb {
            MatRef::row_major(&b, n, k).unwrap().t()
        } else {
            MatRef::row_major(&b, k, n).unwrap()
        };
        // Repeat small calls so one sample lasts ~100 us or more.
        let reps = (200_000 / (m * n * k / 1000 + 1)).clamp(1, 256);
        let mut times = Vec::new();
        for s in 0..45 {
            let t = cpu_now();
            for _ in 0..reps {
                let cv = MatMut::row_major(&mut c, m, n).unwrap();
                sgemm_with(&opts, 1.0, av, bv, beta, cv).unwrap();
            }
            if s >= 5 {
                times.push((cpu_now() - t) / reps as f64);
            }
        }
        times.sort_by(f64::total_cmp);
        let med = times[times.len() / 2];
        total += med;
        println!(
            "{name:22} {m:4}x{k:4}x{n:4} {:9.2} us {:6.1} GFLOP/s",
            med * 1e6,
            2.0 * (m * n * k) as f64 / med / 1e9
        );
    }
    println!("sum of medians {:.1} us", total * 1e6);
}
