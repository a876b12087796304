//! Fused against composite transform attention, interleaved: each round times both on the same
//! shape back to back, and the speed-up is the median of the per-round ratios. On a noisy
//! machine this is steadier than two criterion runs a minute apart (each process and minute has
//! its own speed; a ratio taken within one round cancels it).
//!
//!     cargo run --release --example transform_attention_ratio -- [--rounds 15] [--pass fwd_bwd]
//!         [--policy] [--shapes n65_h3_b1,n197_h12_b2]
//!
//! Default shapes: the bench's twelve (N = 65, 197; H = 3, 6, 12; d = 64; B = 1, 2). One thread.
//! Prints one line per shape: median fused and composite times (ms) and the median ratio, with
//! the smallest and largest per-round ratios.

#[path = "../benches/common/transform_attention.rs"]
mod case;

use case::{Case, IMPLS};
use lithe::kernels::transform_attention::TransformAttentionShape;
use std::hint::black_box;
use std::time::Instant;

struct Args {
    rounds: usize,
    grad: bool,
    policy: bool,
    shapes: Vec<TransformAttentionShape>,
}

fn parse_shape(text: &str) -> Result<TransformAttentionShape, String> {
    let bad = || format!("shape must look like n65_h3_b1, got {text:?}");
    let mut shape = TransformAttentionShape {
        batch: 0,
        tokens: 0,
        heads: 0,
        head_dim: 64,
    };
    for part in text.split('_') {
        let (key, value) = part.split_at_checked(1).ok_or_else(bad)?;
        let value: usize = value.parse().map_err(|_| bad())?;
        match key {
            "n" => shape.tokens = value,
            "h" => shape.heads = value,
            "b" => shape.batch = value,
            "d" => shape.head_dim = value,
            _ => return Err(bad()),
        }
    }
    if shape.tokens == 0 || shape.heads == 0 || shape.batch == 0 || shape.head_dim == 0 {
        return Err(bad());
    }
    Ok(shape)
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        rounds: 15,
        grad: true,
        policy: false,
        shapes: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--rounds" => args.rounds = value()?.parse().map_err(|e| format!("--rounds: {e}"))?,
            "--pass" => {
                args.grad = match value()?.as_str() {
                    "fwd" => false,
                    "fwd_bwd" => true,
                    other => return Err(format!("--pass is fwd or fwd_bwd, got {other:?}")),
                }
            }
            "--policy" => args.policy = true,
            "--shapes" => {
                args.shapes = value()?
                    .split(',')
                    .map(parse_shape)
                    .collect::<Result<_, _>>()?
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if args.rounds == 0 {
        return Err("--rounds must be at least 1".into());
    }
    if args.shapes.is_empty() {
        for tokens in [65, 197] {
            for heads in [3, 6, 12] {
                for batch in [1, 2] {
                    args.shapes.push(TransformAttentionShape {
                        batch,
                        tokens,
                        heads,
                        head_dim: 64,
                    });
                }
            }
        }
    }
    Ok(args)
}

fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        0.5 * (xs[n / 2 - 1] + xs[n / 2])
    }
}

fn main() {
    let args = parse_args().unwrap_or_else(|e| {
        eprintln!("transform_attention_ratio: {e}");
        std::process::exit(2);
    });
    lithe::kernels::threads::set_num_threads(1);
    let pass = if args.grad { "fwd_bwd" } else { "fwd" };
    let tag = if args.policy { "policy_" } else { "" };
    println!("# {tag}{pass}, 1 thread, {} rounds", args.rounds);
    println!("shape          fused_ms  composite_ms  ratio  (min..max)");
    for shape in &args.shapes {
        let case = Case::new(shape);
        // About 30 ms of each implementation per round.
        let once = |i: usize| {
            let t = Instant::now();
            black_box(case.run(IMPLS[i].1, args.grad, args.policy));
            t.elapsed().as_secs_f64()
        };
        let reps = (0.03 / once(1).max(1e-6)).clamp(1.0, 200.0) as usize;
        let mut times = [Vec::new(), Vec::new()];
        let mut ratios = Vec::new();
        for _ in 0..args.rounds {
            let mut round = [0.0; 2];
            for (i, t) in round.iter_mut().enumerate() {
                once(i);
                let mut per_call: Vec<f64> = (0..reps).map(|_| once(i)).collect();
                *t = median(&mut per_call);
                times[i].push(*t);
            }
            ratios.push(round[1] / round[0]);
        }
        let (lo, hi) = ratios
            .iter()
            .fold((f64::INFINITY, 0f64), |(lo, hi), &r| (lo.min(r), hi.max(r)));
        println!(
            "n{}_h{}_b{}{:w$}{:>8.3}  {:>12.3}  {:>5.2}  ({lo:.2}..{hi:.2})",
            shape.tokens,
            shape.heads,
            shape.batch,
            "",
            1e3 * median(&mut times[0]),
            1e3 * median(&mut times[1]),
            median(&mut ratios),
            w = 14usize.saturating_sub(
                format!("n{}_h{}_b{}", shape.tokens, shape.heads, shape.batch).len()
            ),
        );
    }
}
