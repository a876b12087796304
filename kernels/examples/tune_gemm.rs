//! Tuning aid: times kernel sets with different blockings on one shape, measuring the thread's
//! CPU time (robust when the machine is shared). `cargo run --release --example tune_gemm MxKxN`.
use lithe_kernels::gemm::{KernelSet, driver};
use lithe_kernels::{BSource, Isa, MatMut, MatRef, PackedB};

#[path = "common/cpu_time.rs"]
mod cpu_time;
use cpu_time::cpu_now;

fn main() {
    if std::env::args().nth(1).as_deref() == Some("ukernel") {
        ukernel_alone();
        return;
    }
    let shape = std::env::args().nth(1).unwrap_or("128x384x1536".into());
    let d: Vec<usize> = shape.split('x').map(|v| v.parse().unwrap()).collect();
    let (m, k, n) = (d[0], d[1], d[2]);
    let a: Vec<f32> = (0..m * k)
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
        .collect();
    let b: Vec<f32> = (0..k * n)
        .map(|i| ((i * 104729) % 1000) as f32 / 1000.0 - 0.5)
        .collect();
    let mut c = vec![0.0f32; m * n];
    // TRANS_B=1 times C = A * W^T with W stored [N, K] row-major (a Linear layer's forward).
    let trans_b = std::env::var("TRANS_B").is_ok_and(|v| v == "1");
    let bview = || {
        if trans_b {
            MatRef::row_major(&b, n, k).unwrap().t()
        } else {
            MatRef::row_major(&b, k, n).unwrap()
        }
    };
    let base = KernelSet::for_isa(Isa::best()).unwrap();
    let mut sets = vec![("default".to_string(), base)];
    for (mc, kc, nc) in [(192, 384, 768), (192, 192, 1536)] {
        sets.push((
            format!("mc{mc} kc{kc} nc{nc}"),
            base.with_blocking(mc, kc, nc),
        ));
    }
    // Where reading A in place stops paying: both ways on this shape.
    sets.push(("A always packed".to_string(), base.with_direct_a_max_n(0)));
    sets.push((
        "A always in place".to_string(),
        base.with_direct_a_max_n(usize::MAX),
    ));
    let median_of = |f: &mut dyn FnMut()| {
        for _ in 0..5 {
            f();
        }
        let mut times: Vec<f64> = (0..40)
            .map(|_| {
                let t = cpu_now();
                f();
                cpu_now() - t
            })
            .collect();
        times.sort_by(|x, y| x.partial_cmp(y).unwrap());
        times[times.len() / 2]
    };
    let report = |name: &str, med: f64| {
        println!(
            "{shape} {name:28} {:8.1} us  {:6.1} GFLOP/s (cpu time)",
            med * 1e6,
            2.0 * (m * n * k) as f64 / med / 1e9
        );
    };
    for (name, ks) in &sets {
        let med = median_of(&mut || {
            driver::gemm(
                ks,
                1,
                1.0,
                MatRef::row_major(&a, m, k).unwrap(),
                bview(),
                0.0,
                MatMut::row_major(&mut c, m, n).unwrap(),
            )
        });
        report(name, med);
    }
    // B packed once (a weight packed at load) against packing it on every call (above), and a
    // Linear layer's bias: filled into C then accumulated (beta = 1), or added in the epilogue.
    let packed = PackedB::pack_for(&base, bview()).unwrap();
    let bias: Vec<f32> = (0..n).map(|j| j as f32 * 1e-3).collect();
    let fused = |b: BSource<'_>, bias: Option<&[f32]>, beta: f32, c: &mut [f32]| {
        let (av, cv) = (
            MatRef::row_major(&a, m, k).unwrap(),
            MatMut::row_major(c, m, n).unwrap(),
        );
        driver::gemm_fused(&base, 1, 1.0, av, b, beta, bias, cv).unwrap();
    };
    let med = median_of(&mut || fused(BSource::Packed(&packed), None, 0.0, &mut c));
    report("B pre-packed", med);
    let med = median_of(&mut || {
        for row in c.chunks_exact_mut(n) {
            row.copy_from_slice(&bias);
        }
        fused(BSource::View(bview()), None, 1.0, &mut c);
    });
    report("bias: fill C, beta = 1", med);
    let med = median_of(&mut || fused(BSource::View(bview()), Some(&bias), 0.0, &mut c));
    report("bias fused", med);
    let med = median_of(&mut || fused(BSource::Packed(&packed), Some(&bias), 0.0, &mut c));
    report("bias fused, B pre-packed", med);
}

/// The micro-kernel alone on L1-resident panels: its ceiling without any memory traffic.
#[allow(dead_code)]
pub fn ukernel_alone() {
    use lithe_kernels::gemm::UkernelParams;
    let ks = KernelSet::for_isa(Isa::best()).unwrap();
    let kc = 384;
    #[repr(align(64))]
    struct Buf([f32; 32 * 384]);
    let a = Box::new(Buf([0.5; 32 * 384]));
    let b = Box::new(Buf([0.25; 32 * 384]));
    let mut c = vec![0.0f32; ks.mr * ks.nr];
    let p = UkernelParams {
        k: kc,
        alpha: 1.0,
        beta: 0.0,
        a: a.0.as_ptr(),
        rsa: 0,
        csa: 0,
        b: b.0.as_ptr(),
        c: c.as_mut_ptr(),
        rsc: ks.nr as isize,
        csc: 1,
        m: ks.mr,
        n: ks.nr,
        bias: std::ptr::null(),
    };
    let reps = 20000;
    let t = cpu_now();
    for _ in 0..reps {
        // SAFETY: panels sized for kc, C tile of mr x nr.
        unsafe { (ks.ukernel)(&p) };
    }
    let dt = cpu_now() - t;
    println!(
        "ukernel {}x{} alone: {:.1} GFLOP/s",
        ks.mr,
        ks.nr,
        2.0 * (ks.mr * ks.nr * kc * reps) as f64 / dt / 1e9
    );
}
