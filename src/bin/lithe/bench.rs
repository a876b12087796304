//! `lithe bench ...`: kernel benchmarks with machine-readable output for the peer harness.

use clap::{Args, Subcommand, ValueEnum};
use lithe::kernels::{GemmOptions, Isa, MatMut, MatRef, sgemm_with};
use serde_json::{Map, json};
use std::time::{Duration, Instant};

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Time one GEMM shape: `C[M,N] = A[M,K] * B[K,N]`, all row-major.
    Gemm(GemmArgs),
    /// Median forward latency of a BERT encoder (tokenizer excluded) on random token ids.
    Minilm(MinilmArgs),
    /// A saved DynamicViT against its full model: accuracy and throughput, f32 and int8.
    Tokendrop(crate::tokendrop::TokenDropBenchArgs),
}

#[derive(Args)]
pub struct MinilmArgs {
    /// A Hugging Face BERT directory (config.json, model.safetensors, tokenizer).
    #[arg(long)]
    model: std::path::PathBuf,
    /// Sequences per forward pass.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Tokens per sequence.
    #[arg(long, default_value_t = 128)]
    seq: usize,
    /// Threads for the kernels.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Time budget in milliseconds (after warm-up).
    #[arg(long, default_value_t = 3000)]
    budget_ms: u64,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    json: bool,
    /// cpu (fp32) or cuda (fp16 encoder on GPU 0; needs the `cuda` feature).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// The int8 engine (dynamic activation scales; cpu only): reports `"precision": "int8"`.
    #[arg(long)]
    int8: bool,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Dtype {
    F32,
    /// int8 `C_i32 = A_s8 * B_s8^T` (B packed once); reports `gops`.
    I8,
}

#[derive(Args)]
pub struct GemmArgs {
    /// Element type.
    #[arg(long, value_enum, default_value = "f32")]
    dtype: Dtype,
    /// One or more shapes `MxKxN`, comma-separated.
    #[arg(long, default_value = "128x384x1536")]
    shape: String,
    /// Threads to split over.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Force a code path (f32: scalar, avx2, avx512, neon; i8 also avx-vnni, avx512-vnni,
    /// amx, neon-dotprod); default: `LITHE_ISA`, else the best this CPU has.
    #[arg(long)]
    isa: Option<String>,
    /// Time budget per shape in milliseconds (after warm-up).
    #[arg(long, default_value_t = 1000)]
    budget_ms: u64,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(cmd: BenchCommand) -> Result<(), Box<dyn std::error::Error>> {
    match cmd {
        BenchCommand::Gemm(args) => gemm(args),
        BenchCommand::Minilm(args) => minilm(args),
        BenchCommand::Tokendrop(args) => crate::tokendrop::bench(args),
    }
}

pub fn parse_shape(s: &str) -> Result<(usize, usize, usize), String> {
    let dims: Vec<usize> = s
        .split('x')
        .map(|d| d.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .map_err(|e| format!("bad shape {s:?}: {e}"))?;
    match dims[..] {
        [m, k, n] if m > 0 && k > 0 && n > 0 => {
            // Each operand is allocated in full: refuse what no machine holds instead of
            // aborting on allocation.
            let fits = |a: usize, b: usize| a.checked_mul(b).is_some_and(|e| e <= MAX_OPERAND);
            if fits(m, k) && fits(k, n) && fits(m, n) {
                Ok((m, k, n))
            } else {
                Err(format!(
                    "bad shape {s:?}: an operand would exceed {MAX_OPERAND} elements"
                ))
            }
        }
        _ => Err(format!(
            "bad shape {s:?}: expected MxKxN with positive sizes"
        )),
    }
}

/// Most elements of one GEMM operand `bench gemm` allocates: 2^30 (4 GiB of f32).
const MAX_OPERAND: usize = 1 << 30;

/// Deterministic pseudo-random values in [-1, 1).
fn random_values(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// Runs `f` for warm-up, then repeatedly within `budget` (at least 5 times), and returns the
/// median wall time.
pub fn median_time(budget: Duration, mut f: impl FnMut()) -> Duration {
    for _ in 0..3 {
        f();
    }
    let mut times = Vec::new();
    let start = Instant::now();
    while times.len() < 5 || (start.elapsed() < budget && times.len() < 10_000) {
        let t = Instant::now();
        f();
        times.push(t.elapsed());
    }
    times.sort_unstable();
    times[times.len() / 2]
}

fn gemm(args: GemmArgs) -> Result<(), Box<dyn std::error::Error>> {
    if let Dtype::I8 = args.dtype {
        return crate::bench_i8::bench_gemm_i8(
            &args.shape,
            args.threads,
            args.isa.as_deref(),
            Duration::from_millis(args.budget_ms),
            args.json,
        );
    }
    let isa = match &args.isa {
        Some(name) => Isa::parse(name)?.check()?,
        None => Isa::from_env()?.unwrap_or_else(Isa::best),
    };
    let opts = GemmOptions {
        isa: Some(isa),
        threads: Some(args.threads.max(1)),
    };
    let mut rows = Vec::new();
    for shape in args.shape.split(',') {
        let (m, k, n) = parse_shape(shape)?;
        let a = random_values(m * k, 1);
        let b = random_values(k * n, 2);
        let mut c = vec![0.0f32; m * n];
        let (av, bv) = (MatRef::row_major(&a, m, k)?, MatRef::row_major(&b, k, n)?);
        // Validate before timing: sampled entries against f64 dot products.
        sgemm_with(&opts, 1.0, av, bv, 0.0, MatMut::row_major(&mut c, m, n)?)?;
        for t in 0..64usize {
            let (i, j) = ((t * 7919) % m, (t * 104_729) % n);
            let want: f64 = (0..k)
                .map(|p| a[i * k + p] as f64 * b[p * n + j] as f64)
                .sum();
            let scale: f64 = (0..k)
                .map(|p| (a[i * k + p] as f64 * b[p * n + j] as f64).abs())
                .sum();
            if (c[i * n + j] as f64 - want).abs() > 1e-5 * scale.max(1e-30) {
                return Err(format!(
                    "validation failed at ({i}, {j}): got {} want {want}",
                    c[i * n + j]
                )
                .into());
            }
        }
        let median = median_time(Duration::from_millis(args.budget_ms), || {
            sgemm_with(
                &opts,
                1.0,
                av,
                bv,
                0.0,
                MatMut::row_major(&mut c, m, n).expect("shape checked"),
            )
            .expect("shape checked");
        });
        let us = median.as_secs_f64() * 1e6;
        let mut row = Map::new();
        row.insert("dtype".into(), json!("f32"));
        row.insert("shape".into(), json!(format!("{m}x{k}x{n}")));
        row.insert("threads".into(), json!(args.threads.max(1)));
        row.insert("isa".into(), json!(isa.name()));
        row.insert("median_us".into(), json!((us * 100.0).round() / 100.0));
        row.insert(
            "gflops".into(),
            json!((2.0 * (m * n * k) as f64 / us / 1e3 * 100.0).round() / 100.0),
        );
        rows.push(row);
    }
    crate::table::print_rows(&rows, args.json);
    Ok(())
}

fn minilm(args: MinilmArgs) -> Result<(), Box<dyn std::error::Error>> {
    use lithe::Graph;
    use lithe::embed::SentenceEncoder;
    let encoder = SentenceEncoder::from_hf_dir(&args.model)?;
    let config = &encoder.bert.config;
    if args.batch == 0 || args.seq == 0 || args.seq > config.max_position_embeddings {
        return Err(format!(
            "--batch must be > 0 and --seq in 1..={}",
            config.max_position_embeddings
        )
        .into());
    }
    lithe::kernels::threads::set_num_threads(args.threads.max(1));
    // Random ids past the special tokens, every position a real token ([CLS] first).
    let vocab = config.vocab_size as u64;
    let ids: Vec<usize> = random_values(args.batch * args.seq, 3)
        .iter()
        .enumerate()
        .map(|(i, v)| {
            if i % args.seq == 0 {
                101
            } else {
                1000 + ((v.abs() * 1e6) as u64 % (vocab - 1000)) as usize
            }
        })
        .collect();
    if args.int8 && args.device != "cpu" {
        return Err("--int8 runs on the cpu only".into());
    }
    if args.device == "cuda" {
        return minilm_cuda(&encoder, &ids, &args);
    }
    if args.device != "cpu" {
        return Err(format!("--device {:?}: expected cpu or cuda", args.device).into());
    }
    let budget = Duration::from_millis(args.budget_ms);
    let median = if args.int8 {
        minilm_int8(&encoder.bert, &ids, &args, budget)?
    } else {
        median_time(budget, || {
            let g = Graph::inference();
            let hidden = encoder
                .bert
                .forward_hidden(&g, &ids, [args.batch, args.seq], None, None)
                .expect("valid ids and shape");
            std::hint::black_box(g.value(hidden).expect("forward value"));
        })
    };
    let mut row = Map::new();
    row.insert("batch".into(), json!(args.batch));
    row.insert("seq".into(), json!(args.seq));
    row.insert("threads".into(), json!(args.threads.max(1)));
    let precision = if args.int8 { "int8" } else { "fp32" };
    row.insert("precision".into(), json!(precision));
    row.insert("device".into(), json!("cpu"));
    row.insert(
        "median_ms".into(),
        json!((median.as_secs_f64() * 1e6).round() / 1e3),
    );
    crate::table::print_rows(&[row], args.json);
    Ok(())
}

/// `lithe bench minilm --int8`: median time of the int8 engine's forward to the last hidden
/// states (lowered with dynamic activation scales; workspace allocated before timing).
fn minilm_int8(
    bert: &lithe::nn::Bert,
    ids: &[usize],
    args: &MinilmArgs,
    budget: Duration,
) -> Result<Duration, Box<dyn std::error::Error>> {
    use lithe::int8::{Input, QuantPlan, ToInt8};
    let model = bert.to_int8(&QuantPlan::dynamic())?;
    let mut ws = model.workspace(args.batch, args.seq)?;
    let ids: Vec<u32> = ids.iter().map(|&i| i as u32).collect();
    let input = Input::Tokens {
        ids: &ids,
        batch: args.batch,
        seq: args.seq,
        lengths: None,
    };
    model.hidden(&mut ws, input)?;
    Ok(median_time(budget, || {
        std::hint::black_box(model.hidden(&mut ws, input).expect("valid ids and shape"));
    }))
}

/// `lithe bench minilm --device cuda`: median wall time of one fp16 encoder forward on GPU 0
/// (ids upload + all kernels + stream synchronisation), workspace allocated before timing.
#[cfg(feature = "cuda")]
fn minilm_cuda(
    encoder: &lithe::embed::SentenceEncoder,
    ids: &[usize],
    args: &MinilmArgs,
) -> Result<(), Box<dyn std::error::Error>> {
    let dev = lithe::cuda::CudaDevice::new(0)?;
    let mut gpu = lithe::cuda::CudaEncoder::from_bert(&dev, &encoder.bert)?;
    let ids: Vec<u32> = ids.iter().map(|&i| i as u32).collect();
    let shape = [args.batch, args.seq];
    gpu.reserve(&dev, args.batch, args.seq)?;
    let median = median_time(Duration::from_millis(args.budget_ms), || {
        gpu.forward(&dev, &ids, shape, None, None)
            .expect("valid ids and shape");
        dev.synchronize().expect("synchronize");
    });
    let mut row = Map::new();
    row.insert("batch".into(), json!(args.batch));
    row.insert("seq".into(), json!(args.seq));
    row.insert("threads".into(), json!(args.threads.max(1)));
    row.insert("precision".into(), json!("fp16"));
    row.insert("device".into(), json!("cuda"));
    row.insert("gpu".into(), json!(dev.name()?));
    row.insert(
        "median_ms".into(),
        json!((median.as_secs_f64() * 1e6).round() / 1e3),
    );
    crate::table::print_rows(&[row], args.json);
    Ok(())
}

#[cfg(not(feature = "cuda"))]
fn minilm_cuda(
    _: &lithe::embed::SentenceEncoder,
    _: &[usize],
    _: &MinilmArgs,
) -> Result<(), Box<dyn std::error::Error>> {
    Err("--device cuda: this lithe was built without the `cuda` feature (cargo build --features cuda)".into())
}
