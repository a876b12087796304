//! Single-thread int8 GEMM throughput of one path at a few shapes, timed in thread CPU time
//! (robust when other work shares the machine), after an exactness check against the
//! reference. Shapes are `MxKxN`, as in `lithe bench gemm`.
//!
//! `cargo run --release --example gemm_i8_throughput -p lithe-kernels -- [isa] [MxKxN,...] [reps]`
//! (isa: `amx` by default, any name `I8Isa::parse` accepts).

#[path = "common/cpu_time.rs"]
mod cpu_time;

use cpu_time::cpu_now;
use lithe_kernels::I8Isa;
use lithe_kernels::gemm_i8::{I8GemmOptions, PackedI8B, gemm_i8};

fn values(len: usize, seed: u64) -> Vec<i8> {
    let mut s = seed;
    (0..len)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 33) % 255) as i32 - 127
        })
        .map(|v| v as i8)
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let isa_name = args.get(1).map_or("amx", String::as_str);
    let isa = I8Isa::parse(isa_name).expect("unknown isa");
    let shapes = args.get(2).map_or(
        "1024x1024x1024,128x384x1536,128x1536x384,1x384x1536",
        String::as_str,
    );
    let reps: usize = args.get(3).map_or(7, |s| s.parse().expect("reps"));
    let opts = I8GemmOptions {
        threads: Some(1),
        kernels: None,
    };
    for shape in shapes.split(',') {
        let d: Vec<usize> = shape
            .split('x')
            .map(|v| v.parse().expect("shape"))
            .collect();
        let (m, k, n) = (d[0], d[1], d[2]);
        let a = values(m * k, 1);
        let b = values(n * k, 2);
        let packed = PackedI8B::pack(&b, n, k, isa).expect("pack");
        let mut c = vec![0i32; m * n];
        gemm_i8(&a, k, m, &packed, &mut c, n, &opts).expect("gemm");
        let mut want = vec![0i32; m * n];
        lithe_kernels::reference::gemm_i8_ref(&a, k, &b, k, m, n, k, &mut want, n);
        assert!(c == want, "{shape}: result differs from the reference");
        let ops = 2.0 * (m * n * k) as f64;
        // Calls per timed sample: about 20 ms of work at 1 TOP/s.
        let calls = ((2e10 / ops) as usize).max(1);
        let mut gops: Vec<f64> = (0..reps)
            .map(|_| {
                let t0 = cpu_now();
                for _ in 0..calls {
                    gemm_i8(&a, k, m, &packed, &mut c, n, &opts).expect("gemm");
                }
                ops * calls as f64 / (cpu_now() - t0) / 1e9
            })
            .collect();
        gops.sort_by(f64::total_cmp);
        println!(
            "{isa_name} {shape:>16}: median {:7.1} GOP/s  (min {:7.1}, max {:7.1})",
            gops[reps / 2],
            gops[0],
            gops[reps - 1]
        );
    }
}
