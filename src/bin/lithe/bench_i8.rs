//! `lithe bench gemm --dtype i8`: int8 GEMM timings in the same JSON shape as f32, with `gops`
//! (2 ops per multiply-accumulate) instead of `gflops`.

use crate::bench::{median_time, parse_shape};
use lithe::kernels::reference::gemm_i8_ref;
use lithe::kernels::{I8GemmOptions, I8Isa, PackedI8B, gemm_i8};
use serde_json::{Map, json};
use std::time::Duration;

/// Deterministic pseudo-random int8 values in [-127, 127].
fn random_i8(len: usize, seed: u64) -> Vec<i8> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 33) % 255) as i32 as i8
        })
        .map(|v| v.max(-127))
        .collect()
}

/// Times `C[M,N] = A[M,K] * B[N,K]^T` for each shape, after checking sampled entries exactly.
pub fn bench_gemm_i8(
    shapes: &str,
    threads: usize,
    isa: Option<&str>,
    budget: Duration,
    json_out: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let isa = match isa {
        Some(name) => I8Isa::parse(name)?.check()?,
        None => I8Isa::from_env()?.unwrap_or_else(I8Isa::best),
    };
    let threads = threads.max(1);
    let opts = I8GemmOptions {
        threads: Some(threads),
        ..Default::default()
    };
    let mut rows = Vec::new();
    for shape in shapes.split(',') {
        let (m, k, n) = parse_shape(shape)?;
        let a = random_i8(m * k, 1);
        let b = random_i8(n * k, 2);
        let packed = PackedI8B::pack(&b, n, k, isa)?;
        let mut c = vec![0i32; m * n];
        gemm_i8(&a, k, m, &packed, &mut c, n, &opts)?;
        for t in 0..64usize {
            let (i, j) = ((t * 7919) % m, (t * 104_729) % n);
            let mut want = [0i32];
            gemm_i8_ref(&a[i * k..], k, &b[j * k..], k, 1, 1, k, &mut want, 1);
            if c[i * n + j] != want[0] {
                return Err(format!(
                    "validation failed at ({i}, {j}): got {} want {}",
                    c[i * n + j],
                    want[0]
                )
                .into());
            }
        }
        let median = median_time(budget, || {
            gemm_i8(&a, k, m, &packed, &mut c, n, &opts).expect("shape checked");
        });
        let us = median.as_secs_f64() * 1e6;
        let mut row = Map::new();
        row.insert("dtype".into(), json!("i8"));
        row.insert("shape".into(), json!(format!("{m}x{k}x{n}")));
        row.insert("threads".into(), json!(threads));
        row.insert("isa".into(), json!(isa.name()));
        row.insert("median_us".into(), json!((us * 100.0).round() / 100.0));
        row.insert(
            "gops".into(),
            json!((2.0 * (m * n * k) as f64 / us / 1e3 * 100.0).round() / 100.0),
        );
        rows.push(row);
    }
    crate::table::print_rows(&rows, json_out);
    Ok(())
}
