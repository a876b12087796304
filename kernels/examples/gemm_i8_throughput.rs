//! Single-thread int8 GEMM throughput of one path at a few shapes, timed in thread CPU time
//! (robust when other work shares the machine), after an exactness check against the
//! reference. Shapes are `MxKxN`, as in `lithe bench gemm`.
//!
//! `cargo run --release --example gemm_i8_throughput -p lithe-kernels -- [isa] [MxKxN,...] [reps]`
//! (isa: `amx` by default, any name `I8Isa::parse` accepts).

#[path = "common/cpu_time.rs"]
mod cpu_time;
#[path = "common/int8_bench.rs"]
mod int8_bench;

use int8_bench::{rates, values};
use lithe_kernels::I8Isa;
use lithe_kernels::gemm_i8::{I8GemmOptions, PackedI8B, gemm_i8};

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
        let gops = rates(ops, reps, || {
            gemm_i8(&a, k, m, &packed, &mut c, n, &opts).expect("gemm");
        });
        println!(
            "{isa_name} {shape:>16}: median {:7.1} GOP/s  (min {:7.1}, max {:7.1})",
            gops[reps / 2],
            gops[0],
            gops[reps - 1]
        );
    }
}
