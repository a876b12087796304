//! Depthwise convolution on MiniViT shapes, once per ISA path this CPU runs.
//!
//! Shapes: batch 64 of the 7 x 7 and 14 x 14 token grids (224-pixel images in patches of 32 and
//! 16), C = 64, 192, 384 (the widths of Tiny/Small-sized ViTs), k = 3. Throughput is reported
//! as elements = floating-point operations, so criterion's "elem/s" reads as FLOP/s: the forward
//! counts `2 k^2 B H W C` (border taps included, as convolutions are conventionally counted,
//! although the kernels skip them), the backward twice that (`dinp` and `dweight`) plus
//! `B H W C` for `dbias`. Before timing, each path's output is checked against the f64
//! reference on the same grid and channels with a batch of 2 (a wrong fast kernel is not
//! benchmarked).
//!
//! `cargo bench -p lithe-kernels --bench dwconv [-- FILTER]`; `LITHE_PATHS=avx2,scalar` restricts
//! the paths.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use lithe_kernels::Isa;
use lithe_kernels::dwconv::{DwConvShape, dwconv_backward_with, dwconv_forward_with};
use lithe_kernels::reference as r;
use std::hint::black_box;
use std::time::Duration;

/// Deterministic pseudo-random values in [-1, 1) (xorshift), so runs compare.
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// The paths to time: `LITHE_PATHS=avx2,scalar` restricts them (default: all available).
fn paths() -> Vec<Isa> {
    let avail = Isa::available();
    match std::env::var("LITHE_PATHS") {
        Ok(list) if !list.trim().is_empty() => list
            .split(',')
            .filter_map(|n| Isa::parse(n).ok())
            .filter(|isa| avail.contains(isa))
            .collect(),
        _ => avail,
    }
}

fn assert_close(what: &str, isa: Isa, got: &[f32], want: &[f32]) {
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
            "{what} [{isa}] disagrees with the reference at {i}: {g} vs {w}"
        );
    }
}

/// Checks forward and backward of `isa` against the reference at batch 2 of `s`'s grid.
fn validate(isa: Isa, s: DwConvShape) {
    let s = DwConvShape { batch: 2, ..s };
    let (na, nw, nc) = (
        s.activation_len().unwrap(),
        s.weight_len().unwrap(),
        s.channels,
    );
    let (x, w, b, g) = (values(na, 1), values(nw, 2), values(nc, 3), values(na, 4));
    let (mut got, mut want) = (vec![0.0; na], vec![0.0; na]);
    dwconv_forward_with(isa, &mut got, &x, &w, &b, s).unwrap();
    r::dwconv_forward_ref(&mut want, &x, &w, &b, s);
    assert_close("dwconv_forward", isa, &got, &want);
    let mut k = (vec![0.0; na], vec![0.0; nw], vec![0.0; nc]);
    let mut rf = k.clone();
    dwconv_backward_with(isa, &mut k.0, &mut k.1, &mut k.2, &g, &x, &w, s).unwrap();
    r::dwconv_backward_ref(&mut rf.0, &mut rf.1, &mut rf.2, &g, &x, &w, s);
    assert_close("dwconv_backward dinp", isa, &k.0, &rf.0);
    assert_close("dwconv_backward dweight", isa, &k.1, &rf.1);
    assert_close("dwconv_backward dbias", isa, &k.2, &rf.2);
}

fn bench_dwconv(c: &mut Criterion) {
    for grid in [7, 14] {
        for channels in [64, 192, 384] {
            let s = DwConvShape::square(64, grid, channels, 3);
            let name = format!("b64_g{grid}_c{channels}_k3");
            let (na, nw) = (s.activation_len().unwrap(), s.weight_len().unwrap());
            let (x, w, b, g) = (
                values(na, 5),
                values(nw, 6),
                values(channels, 7),
                values(na, 8),
            );
            for isa in paths() {
                validate(isa, s);
            }

            let mut group = c.benchmark_group(format!("dwconv_forward/{name}"));
            group.throughput(Throughput::Elements(s.forward_flops() as u64));
            let mut out = vec![0.0f32; na];
            for isa in paths() {
                group.bench_function(BenchmarkId::from_parameter(isa), |bch| {
                    bch.iter(|| dwconv_forward_with(isa, &mut out, black_box(&x), &w, &b, s))
                });
            }
            group.finish();

            let mut group = c.benchmark_group(format!("dwconv_backward/{name}"));
            let flops = 2.0 * s.forward_flops() + na as f64;
            group.throughput(Throughput::Elements(flops as u64));
            let (mut dx, mut dw, mut db) =
                (vec![0.0f32; na], vec![0.0f32; nw], vec![0.0; channels]);
            for isa in paths() {
                group.bench_function(BenchmarkId::from_parameter(isa), |bch| {
                    bch.iter(|| {
                        dwconv_backward_with(
                            isa,
                            &mut dx,
                            &mut dw,
                            &mut db,
                            black_box(&g),
                            &x,
                            &w,
                            s,
                        )
                    })
                });
            }
            group.finish();
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20);
    targets = bench_dwconv
}
criterion_main!(benches);
