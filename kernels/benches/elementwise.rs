//! Element-wise kernels on Transformer shapes: every ISA path this CPU runs, plus the f64
//! reference, on the same inputs. Throughput is reported in elements (of the `rows x cols`
//! operand) per second. Before timing, each path's output is checked against the reference
//! (a wrong fast kernel is not benchmarked).
//!
//! Shapes (BERT-base-ish, sequence 128): hidden rows `128 x 384` (MiniLM) and `128 x 768`, the
//! MLP activation `128 x 1536`, and attention probabilities `12 heads * 128 x 128`. The head
//! mixes (`head_mix`) run on the `[H, rows, N]` score blocks of MiniViT's fused attention:
//! `H = 12` at `N = 65` (one 65-row block) and `H = 6` at `N = 197` (a 66-row block); their
//! elements are those of the `H` maps, and each costs `H` multiply-adds.
//!
//! `cargo bench -p lithe-kernels --bench elementwise [-- FILTER]`.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use lithe_kernels::Isa;
use lithe_kernels::gelu::{self, GeluKind};
use lithe_kernels::head_mix;
use lithe_kernels::reference as r;
use lithe_kernels::{layernorm, softmax};
use std::hint::black_box;
use std::time::Duration;

/// Deterministic pseudo-random values in [-4, 4) (xorshift), so runs compare.
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 8.0 - 4.0
        })
        .collect()
}

fn assert_close(what: &str, isa: Isa, got: &[f32], want: &[f32], atol: f32) {
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= atol + 1e-5 * w.abs(),
            "{what} [{isa}] disagrees with the reference at {i}: {g} vs {w}"
        );
    }
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

fn bench_softmax(c: &mut Criterion) {
    for (name, rows, cols) in [
        ("attn_12x128x128", 12 * 128, 128),
        ("hidden_128x384", 128, 384),
    ] {
        let n = rows * cols;
        let x = values(n, 1);
        let (g, mut y) = (values(n, 2), vec![0.0; n]);
        r::softmax_forward_ref(&mut y, &x, cols);
        let mut group = c.benchmark_group(format!("softmax_forward/{name}"));
        group.throughput(Throughput::Elements(n as u64));
        let mut out = vec![0.0f32; n];
        for isa in paths() {
            softmax::softmax_forward_with(isa, &mut out, &x, cols).unwrap();
            assert_close("softmax_forward", isa, &out, &y, 1e-7);
            group.bench_function(BenchmarkId::from_parameter(isa), |b| {
                b.iter(|| softmax::softmax_forward_with(isa, &mut out, black_box(&x), cols))
            });
        }
        group.bench_function("reference", |b| {
            b.iter(|| r::softmax_forward_ref(&mut out, black_box(&x), cols))
        });
        group.finish();

        let mut group = c.benchmark_group(format!("softmax_backward/{name}"));
        group.throughput(Throughput::Elements(n as u64));
        let mut d = vec![0.0f32; n];
        for isa in paths() {
            group.bench_function(BenchmarkId::from_parameter(isa), |b| {
                b.iter(|| softmax::softmax_backward_with(isa, &mut d, black_box(&g), &y, cols))
            });
        }
        group.bench_function("reference", |b| {
            b.iter(|| r::softmax_backward_ref(&mut d, black_box(&g), &y, cols))
        });
        group.finish();
    }
}

fn bench_layernorm(c: &mut Criterion) {
    for (name, rows, cols) in [("hidden_128x384", 128, 384), ("hidden_128x768", 128, 768)] {
        let n = rows * cols;
        let (x, g) = (values(n, 3), values(n, 4));
        let (w, b) = (values(cols, 5), values(cols, 6));
        let (mut want, mut mean, mut rstd) = (vec![0.0; n], vec![0.0; rows], vec![0.0; rows]);
        r::layernorm_forward_ref(&mut want, &mut mean, &mut rstd, &x, &w, &b, cols, 1e-5);
        let mut group = c.benchmark_group(format!("layernorm_forward/{name}"));
        group.throughput(Throughput::Elements(n as u64));
        let mut out = vec![0.0f32; n];
        let (mut m, mut s) = (vec![0.0f32; rows], vec![0.0f32; rows]);
        for isa in paths() {
            layernorm::layernorm_forward_with(
                isa, &mut out, &mut m, &mut s, &x, &w, &b, cols, 1e-5,
            )
            .unwrap();
            assert_close("layernorm_forward", isa, &out, &want, 1e-5);
            group.bench_function(BenchmarkId::from_parameter(isa), |bch| {
                bch.iter(|| {
                    layernorm::layernorm_forward_with(
                        isa,
                        &mut out,
                        &mut m,
                        &mut s,
                        black_box(&x),
                        &w,
                        &b,
                        cols,
                        1e-5,
                    )
                })
            });
        }
        group.bench_function("reference", |bch| {
            bch.iter(|| {
                r::layernorm_forward_ref(
                    &mut out,
                    &mut m,
                    &mut s,
                    black_box(&x),
                    &w,
                    &b,
                    cols,
                    1e-5,
                )
            })
        });
        group.finish();

        let mut group = c.benchmark_group(format!("layernorm_backward/{name}"));
        group.throughput(Throughput::Elements(n as u64));
        let (mut d, mut dw, mut db) = (vec![0.0f32; n], vec![0.0f32; cols], vec![0.0f32; cols]);
        for isa in paths() {
            group.bench_function(BenchmarkId::from_parameter(isa), |bch| {
                bch.iter(|| {
                    layernorm::layernorm_backward_with(
                        isa,
                        &mut d,
                        &mut dw,
                        &mut db,
                        black_box(&g),
                        &x,
                        &w,
                        &mean,
                        &rstd,
                        cols,
                    )
                })
            });
        }
        group.bench_function("reference", |bch| {
            bch.iter(|| {
                r::layernorm_backward_ref(
                    &mut d,
                    &mut dw,
                    &mut db,
                    black_box(&g),
                    &x,
                    &w,
                    &mean,
                    &rstd,
                    cols,
                )
            })
        });
        group.finish();
    }
}

fn bench_gelu(c: &mut Criterion) {
    let (name, n) = ("mlp_128x1536", 128 * 1536);
    let (x, g) = (values(n, 7), values(n, 8));
    for kind in [GeluKind::Erf, GeluKind::Tanh] {
        let mut want = vec![0.0; n];
        r::gelu_forward_ref(&mut want, &x, kind);
        let mut group = c.benchmark_group(format!("gelu_forward_{kind:?}/{name}").to_lowercase());
        group.throughput(Throughput::Elements(n as u64));
        let mut out = vec![0.0f32; n];
        for isa in paths() {
            gelu::gelu_forward_with(isa, &mut out, &x, kind).unwrap();
            assert_close("gelu_forward", isa, &out, &want, 1e-6);
            group.bench_function(BenchmarkId::from_parameter(isa), |b| {
                b.iter(|| gelu::gelu_forward_with(isa, &mut out, black_box(&x), kind))
            });
        }
        group.bench_function("reference", |b| {
            b.iter(|| r::gelu_forward_ref(&mut out, black_box(&x), kind))
        });
        group.finish();

        let mut group = c.benchmark_group(format!("gelu_backward_{kind:?}/{name}").to_lowercase());
        group.throughput(Throughput::Elements(n as u64));
        let mut d = vec![0.0f32; n];
        for isa in paths() {
            group.bench_function(BenchmarkId::from_parameter(isa), |b| {
                b.iter(|| gelu::gelu_backward_with(isa, &mut d, black_box(&x), &g, kind))
            });
        }
        group.bench_function("reference", |b| {
            b.iter(|| r::gelu_backward_ref(&mut d, black_box(&x), &g, kind))
        });
        group.finish();
    }
}

fn bench_head_mix(c: &mut Criterion) {
    for (name, heads, len) in [
        ("vit_h12_65x65", 12, 65 * 65),
        ("vit_h6_66x197", 6, 66 * 197),
    ] {
        let n = heads * len;
        let (src, other) = (values(n, 3), values(n, 4));
        let m: Vec<f32> = values(heads * heads, 5).iter().map(|v| v / 4.0).collect();
        let bias = values(heads, 6);
        for transpose in [false, true] {
            let bias = (!transpose).then_some(&bias[..]);
            let want = r::mix_heads_ref(&src, &m, bias, heads, transpose);
            let tag = if transpose {
                "mix_heads_t"
            } else {
                "mix_heads"
            };
            let mut group = c.benchmark_group(format!("{tag}/{name}"));
            group.throughput(Throughput::Elements(n as u64));
            let mut out = vec![0.0f32; n];
            for isa in paths() {
                head_mix::mix_heads_with(isa, &mut out, &src, &m, bias, heads, len, transpose)
                    .unwrap();
                assert_close(tag, isa, &out, &want, 1e-4);
                group.bench_function(BenchmarkId::from_parameter(isa), |b| {
                    b.iter(|| {
                        head_mix::mix_heads_with(
                            isa,
                            &mut out,
                            black_box(&src),
                            &m,
                            bias,
                            heads,
                            len,
                            transpose,
                        )
                    })
                });
            }
            group.finish();
        }
        let mut want = vec![0.0f32; heads * heads];
        r::add_head_dots_ref(&mut want, &src, &other, heads);
        let mut group = c.benchmark_group(format!("add_head_dots/{name}"));
        group.throughput(Throughput::Elements(n as u64));
        let mut acc = vec![0.0f32; heads * heads];
        for isa in paths() {
            acc.fill(0.0);
            head_mix::add_head_dots_with(isa, &mut acc, &src, &other, heads, len).unwrap();
            // Sums of ~len products of magnitude up to 16: judge against their size.
            assert_close("add_head_dots", isa, &acc, &want, 1e-6 * 16.0 * len as f32);
            group.bench_function(BenchmarkId::from_parameter(isa), |b| {
                b.iter(|| {
                    head_mix::add_head_dots_with(isa, &mut acc, black_box(&src), &other, heads, len)
                })
            });
        }
        group.finish();
    }
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_softmax, bench_layernorm, bench_gelu, bench_head_mix
}
criterion_main!(benches);
