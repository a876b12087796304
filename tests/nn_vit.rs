//! ViT / DeiT: names, shapes, the patch layout, learning the 8x8 digits, and a timing probe.

use lithe::data::idx;
use lithe::nn::{Module, Vit, VitConfig};
use lithe::{CrossEntropyOptions, Graph, Param, Rng, Tensor};
use std::time::Instant;

fn config(image: usize, patch: usize, hidden: usize, depth: usize, heads: usize) -> VitConfig {
    VitConfig {
        image_size: image,
        patch_size: patch,
        num_channels: 1,
        hidden_size: hidden,
        num_hidden_layers: depth,
        num_attention_heads: heads,
        intermediate_size: 2 * hidden,
        num_labels: 10,
        ..VitConfig::default()
    }
}

#[test]
fn vit_names_and_shapes() {
    let mut c = config(8, 2, 16, 2, 2);
    c.num_channels = 3;
    let vit = Vit::new(&c, &mut Rng::new(1)).unwrap();
    let names: Vec<String> = vit.named_params().into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        names[..4],
        [
            "embeddings.cls_token",
            "embeddings.patch_embeddings.projection.weight",
            "embeddings.patch_embeddings.projection.bias",
            "embeddings.position_embeddings"
        ]
    );
    let layer0: Vec<&str> = names[4..20]
        .iter()
        .map(|n| n.strip_prefix("encoder.layer.0.").unwrap())
        .collect();
    assert_eq!(
        layer0,
        [
            "layernorm_before.weight",
            "layernorm_before.bias",
            "attention.attention.query.weight",
            "attention.attention.query.bias",
            "attention.attention.key.weight",
            "attention.attention.key.bias",
            "attention.attention.value.weight",
            "attention.attention.value.bias",
            "attention.output.dense.weight",
            "attention.output.dense.bias",
            "layernorm_after.weight",
            "layernorm_after.bias",
            "intermediate.dense.weight",
            "intermediate.dense.bias",
            "output.dense.weight",
            "output.dense.bias",
        ]
    );
    assert_eq!(
        names[names.len() - 4..],
        [
            "layernorm.weight",
            "layernorm.bias",
            "classifier.weight",
            "classifier.bias"
        ]
    );
    let params = vit.named_params();
    let shape = |n: &str| params.iter().find(|(m, _)| m == n).unwrap().1.shape();
    assert_eq!(
        shape("embeddings.patch_embeddings.projection.weight"),
        [16, 3 * 2 * 2]
    );
    assert_eq!(shape("embeddings.position_embeddings"), [1, 17, 16]);
    let g = Graph::inference();
    let images = g.constant(Tensor::randn(&[5, 3, 8, 8], 0.0, 1.0, &mut Rng::new(2)));
    assert_eq!(
        g.shape(vit.forward_features(&g, images).unwrap()).unwrap(),
        [5, 17, 16]
    );
    assert_eq!(
        g.shape(vit.forward_logits(&g, images).unwrap()).unwrap(),
        [5, 10]
    );
    let mut linears = 0;
    vit.visit_linears(&mut |_, _| linears += 1);
    assert_eq!(linears, 1 + 2 * 6 + 1);
    // Wrong image sizes are errors.
    let bad = g.constant(Tensor::zeros(&[1, 3, 9, 9]));
    assert!(vit.forward_logits(&g, bad).is_err());
    assert!(Vit::new(&config(8, 3, 16, 1, 2), &mut Rng::new(0)).is_err());
}

#[test]
fn deit_distillation_token_and_heads() {
    let mut c = config(8, 4, 8, 1, 2);
    c.distillation_token = true;
    let vit = Vit::new(&c, &mut Rng::new(3)).unwrap();
    let names: Vec<String> = vit.named_params().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names[1], "embeddings.distillation_token");
    assert!(names.ends_with(&[
        "distillation_classifier.weight".into(),
        "distillation_classifier.bias".into()
    ]));
    let g = Graph::inference();
    let images = g.constant(Tensor::randn(&[2, 1, 8, 8], 0.0, 1.0, &mut Rng::new(4)));
    assert_eq!(
        g.shape(vit.forward_features(&g, images).unwrap()).unwrap(),
        [2, 6, 8]
    );
    let (cls, dist) = vit.forward_heads(&g, images).unwrap();
    let (cls, dist) = (g.value(cls).unwrap(), g.value(dist.unwrap()).unwrap());
    let avg = g.value(vit.forward_logits(&g, images).unwrap()).unwrap();
    for i in 0..avg.numel() {
        assert!((avg.data()[i] - 0.5 * (cls.data()[i] + dist.data()[i])).abs() < 1e-6);
    }
}

#[test]
fn patches_follow_the_conv_weight_layout() {
    // Projection column (c, py, px) of patch (gy, gx) must read pixel (c, gy*p+py, gx*p+px):
    // exactly Conv2d(stride = kernel = p) with weight [H, C, p, p] flattened.
    let mut c = config(6, 3, 4, 1, 1);
    c.num_channels = 2;
    let vit = Vit::new(&c, &mut Rng::new(5)).unwrap();
    let img = Tensor::randn(&[2, 2, 6, 6], 0.0, 1.0, &mut Rng::new(6));
    let g = Graph::inference();
    let patches = g
        .value(
            vit.embeddings
                .patchify(&g, g.constant(img.clone()))
                .unwrap(),
        )
        .unwrap();
    assert_eq!(patches.shape(), [2, 4, 18]);
    for b in 0..2 {
        for (n, (gy, gx)) in [(0, 0), (0, 1), (1, 0), (1, 1)].into_iter().enumerate() {
            for ch in 0..2 {
                for py in 0..3 {
                    for px in 0..3 {
                        let want = img.data()[((b * 2 + ch) * 6 + gy * 3 + py) * 6 + gx * 3 + px];
                        let got = patches.data()[(b * 4 + n) * 18 + (ch * 3 + py) * 3 + px];
                        assert_eq!(got, want);
                    }
                }
            }
        }
    }
}

/// Images `[n, 1, 8, 8]` (flat, in [0, 1]) and their labels.
type Split = (Vec<f32>, Vec<usize>);

/// The 8x8 digits, split 80/20 (train, test) by a fixed shuffle.
fn digits() -> (Split, Split) {
    let root = env!("CARGO_MANIFEST_DIR");
    let images =
        idx::read_images(format!("{root}/data/digits8x8/digits-images-idx3-ubyte").as_ref())
            .unwrap();
    let labels =
        idx::read_labels(format!("{root}/data/digits8x8/digits-labels-idx1-ubyte").as_ref())
            .unwrap();
    let mut order: Vec<usize> = (0..images.count).collect();
    Rng::new(42).shuffle(&mut order);
    let split = |rows: &[usize]| {
        let x = rows
            .iter()
            .flat_map(|&r| {
                images.pixels[r * 64..(r + 1) * 64]
                    .iter()
                    .map(|&p| p as f32 / 16.0)
            })
            .collect();
        (x, rows.iter().map(|&r| labels[r] as usize).collect())
    };
    let test = images.count / 5;
    (split(&order[test..]), split(&order[..test]))
}

/// Adam (no weight decay) written here; the library's AdamW lands separately.
struct Adam {
    params: Vec<Param>,
    m: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    t: i32,
}

impl Adam {
    fn new(params: Vec<Param>) -> Self {
        let zeros = |p: &Param| vec![0.0; p.numel()];
        Adam {
            m: params.iter().map(zeros).collect(),
            v: params.iter().map(zeros).collect(),
            params,
            t: 0,
        }
    }

    fn step(&mut self, lr: f32) {
        let (b1, b2, eps) = (0.9f32, 0.999f32, 1e-8f32);
        self.t += 1;
        let (c1, c2) = (1.0 - b1.powi(self.t), 1.0 - b2.powi(self.t));
        for ((p, m), v) in self.params.iter().zip(&mut self.m).zip(&mut self.v) {
            p.update(|w, g| {
                let Some(g) = g else { return };
                for i in 0..m.len() {
                    let gi = g.data()[i];
                    m[i] = b1 * m[i] + (1.0 - b1) * gi;
                    v[i] = b2 * v[i] + (1.0 - b2) * gi * gi;
                    w.data_mut()[i] -= lr * (m[i] / c1) / ((v[i] / c2).sqrt() + eps);
                }
            });
            p.zero_grad();
        }
    }
}

/// 30 epochs of Adam on 1437 images: ~97% test accuracy in ~3 s (release, one busy core).
#[test]
fn tiny_vit_learns_digits() {
    let ((train_x, train_y), (test_x, test_y)) = digits();
    // 4x4 patches: 4 patch tokens + the class token, width 32, 2 blocks, 4 heads.
    let c = config(8, 4, 32, 2, 4);
    let vit = Vit::new(&c, &mut Rng::new(7)).unwrap();
    let mut opt = Adam::new(vit.named_params().into_iter().map(|(_, p)| p).collect());
    let mut rng = Rng::new(8);
    let n = train_y.len();
    let mut order: Vec<usize> = (0..n).collect();
    let (epochs, batch) = (30, 64);
    let steps = epochs * n.div_ceil(batch);
    let start = Instant::now();
    let mut step = 0;
    let mut first_loss = None;
    let mut last_loss = 0.0;
    for epoch in 0..epochs {
        rng.shuffle(&mut order);
        let mut sum = 0.0;
        for rows in order.chunks(batch) {
            let x: Vec<f32> = rows
                .iter()
                .flat_map(|&r| train_x[r * 64..(r + 1) * 64].iter().copied())
                .collect();
            let y: Vec<usize> = rows.iter().map(|&r| train_y[r]).collect();
            let g = Graph::new();
            let images = g.constant(Tensor::from_vec(x, &[rows.len(), 1, 8, 8]).unwrap());
            let loss = g
                .cross_entropy(
                    vit.forward_logits(&g, images).unwrap(),
                    &y,
                    &CrossEntropyOptions::default(),
                )
                .unwrap();
            sum += g.value(loss).unwrap().item().unwrap() * rows.len() as f32;
            g.backward(loss).unwrap();
            // Linear warm-up then cosine decay.
            let peak = 3e-3;
            let lr = if step < 30 {
                peak * (step + 1) as f32 / 30.0
            } else {
                0.5 * peak * (1.0 + (std::f32::consts::PI * step as f32 / steps as f32).cos())
            };
            opt.step(lr);
            step += 1;
        }
        last_loss = sum / n as f32;
        first_loss.get_or_insert(last_loss);
        eprintln!("epoch {epoch}: train loss {last_loss:.4}");
    }
    let train_time = start.elapsed();
    let g = Graph::inference();
    let images = g.constant(Tensor::from_vec(test_x.clone(), &[test_y.len(), 1, 8, 8]).unwrap());
    let logits = g.value(vit.forward_logits(&g, images).unwrap()).unwrap();
    let correct = logits
        .data()
        .chunks(10)
        .zip(&test_y)
        .filter(|(row, t)| (0..10).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap() == **t)
        .count();
    let accuracy = correct as f32 / test_y.len() as f32;
    eprintln!(
        "tiny ViT on digits: {epochs} epochs in {:.2} s, test accuracy {accuracy:.4}, loss {:.3} -> {last_loss:.3}",
        train_time.as_secs_f64(),
        first_loss.unwrap()
    );
    assert!(accuracy >= 0.9, "test accuracy {accuracy}");
    assert!(
        last_loss < 0.1 * first_loss.unwrap(),
        "training loss did not fall"
    );
}

#[test]
fn vit_traces_and_head_masks() {
    let c = config(8, 4, 8, 2, 2);
    let vit = Vit::new(&c, &mut Rng::new(11)).unwrap();
    let g = Graph::inference();
    let images = g.constant(Tensor::randn(&[3, 1, 8, 8], 0.0, 1.0, &mut Rng::new(12)));
    let ones = [
        g.constant(Tensor::ones(&[2])),
        g.constant(Tensor::ones(&[2])),
    ];
    let (emb, traces) = vit.forward_traced(&g, images, Some(&ones)).unwrap();
    assert_eq!(g.shape(emb).unwrap(), [3, 5, 8]);
    assert_eq!(traces.len(), 2);
    assert_eq!(g.shape(traces[1].attention.probs).unwrap(), [3, 2, 5, 5]);
    assert_eq!(g.shape(traces[1].attention.query).unwrap(), [3, 2, 5, 4]);
    // All-ones head masks change nothing; a zeroed head does.
    let plain = vit.encoder.forward(&g, emb, None, None).unwrap();
    assert_eq!(g.value(plain).unwrap(), g.value(traces[1].output).unwrap());
    let off = [
        g.constant(Tensor::from_vec(vec![1.0, 0.0], &[2]).unwrap()),
        ones[1],
    ];
    let masked = vit.encoder.forward(&g, emb, None, Some(&off)).unwrap();
    assert_ne!(g.value(plain).unwrap(), g.value(masked).unwrap());
    // One head mask per layer, or an error.
    assert!(
        vit.encoder
            .forward(&g, emb, None, Some(&ones[..1]))
            .is_err()
    );
    assert_eq!(vit.blocks().len(), 2);
}
