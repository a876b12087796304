//! `lithe demo`: the whole pipeline on one dataset, one table row per stage.
//!
//! Stage `fp32`: a two-layer GELU MLP trained with momentum SGD through `lithe::autograd` on the
//! 8x8 digits that ship inside the binary (UCI optdigits, 1797 images, 80/20 split with a fixed
//! seed). Row schema: `{"stage","params","bytes","accuracy","latency_ms","throughput"}` with
//! accuracy on the test split, latency the median forward time of a batch of 64 on one thread,
//! throughput images/s at that batch.

use crate::bench::median_time;
use clap::Args;
use lithe::data::idx;
use lithe::{CrossEntropyOptions, GeluKind, Graph, Param, Rng, Tensor, Var};
use serde_json::{Map, json};
use std::time::{Duration, Instant};

const DIGITS_IMAGES: &[u8] = include_bytes!("../../../data/digits8x8/digits-images-idx3-ubyte");
const DIGITS_LABELS: &[u8] = include_bytes!("../../../data/digits8x8/digits-labels-idx1-ubyte");
const STAGES: [&str; 1] = ["fp32"];

#[derive(Args)]
pub struct DemoArgs {
    /// Fewer epochs (finishes in seconds).
    #[arg(long)]
    quick: bool,
    /// Comma-separated stages to run (available: fp32).
    #[arg(long, default_value = "fp32")]
    stages: String,
    /// Print JSON lines instead of a table.
    #[arg(long)]
    json: bool,
}

/// A dataset in memory: `x` is `[n, features]` in [0, 1], `y` the class of each row.
struct Split {
    x: Vec<f32>,
    y: Vec<usize>,
    features: usize,
}

impl Split {
    fn len(&self) -> usize {
        self.y.len()
    }

    fn batch(&self, rows: &[usize]) -> (Tensor, Vec<usize>) {
        let mut x = Vec::with_capacity(rows.len() * self.features);
        for &r in rows {
            x.extend_from_slice(&self.x[r * self.features..(r + 1) * self.features]);
        }
        let t = Tensor::from_vec(x, &[rows.len(), self.features]).expect("rows * features values");
        (t, rows.iter().map(|&r| self.y[r]).collect())
    }
}

fn load_digits(seed: u64) -> lithe::Result<(Split, Split)> {
    let images = idx::parse_images(DIGITS_IMAGES, "digits images")?;
    let labels = idx::parse_labels(DIGITS_LABELS, "digits labels")?;
    let features = images.rows * images.cols;
    let mut order: Vec<usize> = (0..images.count).collect();
    Rng::new(seed).shuffle(&mut order);
    let test_len = images.count / 5;
    let split = |rows: &[usize]| Split {
        // Digits pixels run 0..=16.
        x: rows
            .iter()
            .flat_map(|&r| {
                images.pixels[r * features..(r + 1) * features]
                    .iter()
                    .map(|&p| p as f32 / 16.0)
            })
            .collect(),
        y: rows.iter().map(|&r| labels[r] as usize).collect(),
        features,
    };
    Ok((split(&order[test_len..]), split(&order[..test_len])))
}

/// `logits = gelu(x W1^T + b1) W2^T + b2`.
struct Mlp {
    w1: Param, // [hidden, in]
    b1: Param, // [hidden]
    w2: Param, // [classes, hidden]
    b2: Param, // [classes]
}

impl Mlp {
    fn new(inputs: usize, hidden: usize, classes: usize, rng: &mut Rng) -> Mlp {
        Mlp {
            w1: Param::new(Tensor::randn(
                &[hidden, inputs],
                0.0,
                (1.0 / inputs as f32).sqrt(),
                rng,
            )),
            b1: Param::new(Tensor::zeros(&[hidden])),
            w2: Param::new(Tensor::randn(
                &[classes, hidden],
                0.0,
                (1.0 / hidden as f32).sqrt(),
                rng,
            )),
            b2: Param::new(Tensor::zeros(&[classes])),
        }
    }

    fn params(&self) -> [&Param; 4] {
        [&self.w1, &self.b1, &self.w2, &self.b2]
    }

    fn forward(&self, g: &Graph, x: Var) -> lithe::Result<Var> {
        let h = g.matmul_t(x, g.param(&self.w1))?; // [B, hidden]
        let h = g.gelu(g.add(h, g.param(&self.b1))?, GeluKind::Erf)?;
        let logits = g.matmul_t(h, g.param(&self.w2))?; // [B, classes]
        g.add(logits, g.param(&self.b2))
    }

    fn predict(&self, x: Tensor) -> lithe::Result<Vec<usize>> {
        let g = Graph::inference();
        let logits = self.forward(&g, g.constant(x))?;
        let v = g.value(logits)?;
        let classes = *v.shape().last().expect("rank 2");
        Ok(v.data()
            .chunks_exact(classes)
            .map(|row| {
                (0..classes)
                    .max_by(|&a, &b| row[a].total_cmp(&row[b]))
                    .expect("classes > 0")
            })
            .collect())
    }
}

/// One momentum-SGD step: `v = mu v + g; w -= lr v`, then clears the gradient.
fn sgd_step(p: &Param, velocity: &mut [f32], lr: f32, momentum: f32) {
    p.update(|value, grad| {
        if let Some(grad) = grad {
            for ((w, v), &g) in value
                .data_mut()
                .iter_mut()
                .zip(velocity.iter_mut())
                .zip(grad.data())
            {
                *v = momentum * *v + g;
                *w -= lr * *v;
            }
        }
    });
    p.zero_grad();
}

fn stage_fp32(quick: bool) -> lithe::Result<Map<String, serde_json::Value>> {
    let (train, test) = load_digits(42)?;
    let mut rng = Rng::new(7);
    let model = Mlp::new(train.features, 128, 10, &mut rng);
    let mut velocity: Vec<Vec<f32>> = model
        .params()
        .iter()
        .map(|p| vec![0.0; p.numel()])
        .collect();
    let (epochs, batch, lr) = (if quick { 8 } else { 40 }, 64, 0.05f32);
    let start = Instant::now();
    let mut order: Vec<usize> = (0..train.len()).collect();
    for epoch in 0..epochs {
        rng.shuffle(&mut order);
        let mut loss_sum = 0.0;
        for rows in order.chunks(batch) {
            let (x, y) = train.batch(rows);
            let g = Graph::new();
            let logits = model.forward(&g, g.constant(x))?;
            let loss = g.cross_entropy(logits, &y, &CrossEntropyOptions::default())?;
            loss_sum += g.value(loss)?.item()? * rows.len() as f32;
            g.backward(loss)?;
            for (p, v) in model.params().into_iter().zip(velocity.iter_mut()) {
                sgd_step(p, v, lr, 0.9);
            }
        }
        eprintln!(
            "demo fp32: epoch {:>2}/{epochs}  train loss {:.4}",
            epoch + 1,
            loss_sum / train.len() as f32
        );
    }
    eprintln!(
        "demo fp32: trained in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    let all: Vec<usize> = (0..test.len()).collect();
    let (x, y) = test.batch(&all);
    let correct = model
        .predict(x)?
        .iter()
        .zip(&y)
        .filter(|(p, t)| p == t)
        .count();
    let accuracy = correct as f64 / test.len() as f64;

    lithe::kernels::threads::set_num_threads(1);
    let rows: Vec<usize> = (0..64).map(|i| i % test.len()).collect();
    let (x64, _) = test.batch(&rows);
    let latency = median_time(Duration::from_millis(500), || {
        model
            .predict(x64.clone())
            .expect("forward of a valid batch");
    });
    lithe::kernels::threads::set_num_threads(0);
    let params: usize = model.params().iter().map(|p| p.numel()).sum();
    let ms = latency.as_secs_f64() * 1e3;
    let mut row = Map::new();
    row.insert("stage".into(), json!("fp32"));
    row.insert("params".into(), json!(params));
    row.insert("bytes".into(), json!(params * 4));
    row.insert("accuracy".into(), json!((accuracy * 1e4).round() / 1e4));
    row.insert("latency_ms".into(), json!((ms * 1e3).round() / 1e3));
    row.insert(
        "throughput".into(),
        json!((64.0 / latency.as_secs_f64()).round()),
    );
    Ok(row)
}

pub fn run(args: DemoArgs) -> Result<(), Box<dyn std::error::Error>> {
    let mut rows = Vec::new();
    for stage in args.stages.split(',').map(str::trim) {
        match stage {
            "fp32" => rows.push(stage_fp32(args.quick)?),
            other => {
                return Err(
                    format!("unknown stage {other:?}; available: {}", STAGES.join(", ")).into(),
                );
            }
        }
    }
    crate::table::print_rows(&rows, args.json);
    Ok(())
}
