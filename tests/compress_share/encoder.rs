//! The shared encoder against plain models: equivalence at initialisation, gradients of shared
//! weights, what each transform does, and the parameter listing.

use super::{images, max_abs_diff, mini_logits, randomize, share, teacher, vit_logits};
use lithe::compress::share::MiniVit;
use lithe::nn::{Linear, Module, Vit};
use lithe::{AdamW, AdamWConfig, CrossEntropyOptions, Graph, Param, Rng, Tensor};
use std::collections::HashMap;

/// `teacher` with every layer's attention and MLP replaced by (handles to) its group's first
/// layer's, keeping its own LayerNorms: what a fresh shared model must compute.
fn group_first_layers(teacher: &Vit, share: usize) -> Vit {
    let mut out = teacher.clone();
    for (i, layer) in out.encoder.layers.iter_mut().enumerate() {
        let first = &teacher.encoder.layers[i - i % share];
        layer.attention = first.attention.clone();
        layer.mlp = first.mlp.clone();
    }
    out
}

#[test]
fn a_fresh_shared_model_equals_the_plain_model_of_its_groups_first_layers() {
    let depth = 5;
    for distillation_token in [false, true] {
        let teacher = teacher(depth, distillation_token, 10);
        let x = images(3, 11);
        let teacher_logits = vit_logits(&teacher, &x);
        // 1 shares nothing, 3 leaves a shorter last group, 5 shares one set among all layers.
        for s in [1, 2, 3, depth] {
            let want = vit_logits(&group_first_layers(&teacher, s), &x);
            // Without transforms the layer runs the same ops in the same order: bit-identical.
            let plain = MiniVit::from_vit(&teacher, &share(s, false)).unwrap();
            assert_eq!(mini_logits(&plain, &x), want, "share {s}, no transforms");
            // Identity transforms: the transform attention's different summation order only.
            let transformed = MiniVit::from_vit(&teacher, &share(s, true)).unwrap();
            let d = max_abs_diff(&mini_logits(&transformed, &x), &want);
            assert!(d <= 1e-6, "share {s}, identity transforms: off by {d}");
            // The comparison can tell: sharing changes the model the teacher is.
            if s > 1 {
                assert!(max_abs_diff(&want, &teacher_logits) > 1e-3);
            }
        }
    }
}

/// Loss on a fixed batch; returns the logits. Gradients land in the model's parameters.
fn loss_and_backward(model: &MiniVit, x: &Tensor, labels: &[usize]) -> Tensor {
    let g = Graph::new();
    let logits = model.forward_logits(&g, g.constant(x.clone())).unwrap();
    let loss = g
        .cross_entropy(logits, labels, &CrossEntropyOptions::default())
        .unwrap();
    g.backward(loss).unwrap();
    g.value(logits).unwrap()
}

fn assert_close(what: &str, got: &Tensor, want: &Tensor) {
    let scale = want.data().iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = max_abs_diff(got, want);
    assert!(
        d <= 1e-5 * scale + 1e-7,
        "{what}: off by {d} (largest entry {scale})"
    );
}

#[test]
fn a_shared_weight_gets_the_sum_of_the_gradients_of_its_uses() {
    // Depth 5 in groups of 2: groups {0, 1}, {2, 3}, {4}.
    let (depth, s) = (5, 2);
    let teacher = teacher(depth, false, 20);
    let shared = MiniVit::from_vit(&teacher, &share(s, true)).unwrap();
    randomize(&shared, |n| n.contains("transform"), 0.2, 21);
    // The unshared twin: every layer its own copy of its group's first layer (groups of one).
    let unshared = MiniVit::from_vit(&group_first_layers(&teacher, s), &share(1, true)).unwrap();
    let shared_params: HashMap<String, Param> = shared.named_params().into_iter().collect();
    for (name, p) in unshared.named_params() {
        if !name.starts_with("encoder.group.") {
            p.set_value(shared_params[&name].value()).unwrap();
        }
    }
    let (x, labels) = (images(4, 22), [0, 2, 1, 2]);
    let got = loss_and_backward(&shared, &x, &labels);
    let want = loss_and_backward(&unshared, &x, &labels);
    assert_close("logits", &got, &want);
    let unshared_params: HashMap<String, Param> = unshared.named_params().into_iter().collect();
    let grad = |p: &Param| p.grad().expect("every parameter is used");
    let mut checked = 0;
    for (name, p) in shared.named_params() {
        let Some(rest) = name.strip_prefix("encoder.group.") else {
            // Not shared: the same gradient in both models.
            assert_close(&name, &grad(&p), &grad(&unshared_params[&name]));
            continue;
        };
        let (group, suffix) = rest.split_once('.').unwrap();
        let group: usize = group.parse().unwrap();
        let layers = group * s..((group + 1) * s).min(depth);
        let mut sum = Tensor::zeros(&p.shape());
        for i in layers {
            let copy = &unshared_params[&format!("encoder.group.{i}.{suffix}")];
            sum.add_assign(&grad(copy)).unwrap();
        }
        assert_close(&name, &grad(&p), &sum);
        checked += 1;
    }
    assert_eq!(checked, 3 * 12, "3 groups of 6 Linears with bias");
}

#[test]
fn identity_transforms_change_nothing_and_each_trained_transform_acts() {
    let teacher = teacher(4, true, 30);
    let x = images(2, 31);
    let without = mini_logits(&MiniVit::from_vit(&teacher, &share(2, false)).unwrap(), &x);
    let identity = mini_logits(&MiniVit::from_vit(&teacher, &share(2, true)).unwrap(), &x);
    assert!(max_abs_diff(&without, &identity) <= 1e-6);
    // A constant added to all of a head's logits cancels in its softmax, so the pre-softmax
    // bias alone changes nothing; every other transform does.
    for (part, acts) in [
        ("attention_pre.weight", true),
        ("attention_pre.bias", false),
        ("attention_post.weight", true),
        ("attention_post.bias", true),
        ("dwconv.weight", true),
        ("dwconv.bias", true),
    ] {
        let mini = MiniVit::from_vit(&teacher, &share(2, true)).unwrap();
        randomize(&mini, |n| n.ends_with(part), 0.3, 32);
        let d = max_abs_diff(&mini_logits(&mini, &x), &identity);
        if acts {
            assert!(d > 1e-4, "{part} changed the logits by only {d}");
        } else {
            assert!(d <= 1e-5, "{part} changed the logits by {d}");
        }
    }
}

#[test]
fn the_convolution_filters_the_grid_tokens_of_the_layernormed_mlp_input() {
    // DeiT shape: 2 prefix tokens, then the 3 x 3 grid, width 16.
    let teacher = teacher(1, true, 40);
    let mini = MiniVit::from_vit(&teacher, &share(1, true)).unwrap();
    let (encoder, c) = (&mini.encoder, 16);
    let layer = &encoder.layers[0];
    let conv = &layer.transform.as_ref().unwrap().dwconv;
    // Centre tap s[c] and the tap above (u = 0, v = 1) 1: DWConv(u)[i, j] = s u[i, j] +
    // u[i - 1, j] (0 on the first row) + beta. The residual makes the centre 1 + s.
    let s = Tensor::randn(&[c], 0.0, 1.0, &mut Rng::new(41));
    let beta = Tensor::randn(&[c], 0.0, 1.0, &mut Rng::new(42));
    let mut w = Tensor::zeros(&[3, 3, c]);
    for ch in 0..c {
        w.data_mut()[4 * c + ch] = s.data()[ch]; // (u, v) = (1, 1)
        w.data_mut()[c + ch] = 1.0; // (u, v) = (0, 1)
    }
    conv.weight.set_value(w).unwrap();
    conv.bias.set_value(beta.clone()).unwrap();
    let x = Tensor::randn(&[2, 11, c], 0.0, 1.0, &mut Rng::new(43));
    let g = Graph::new();
    let xv = g.constant(x);
    let got = g.value(encoder.forward(&g, xv).unwrap()).unwrap();
    // By hand, with the block's own parts.
    let block = &layer.block;
    let h = block.attn_norm.forward(&g, xv).unwrap();
    let a = block.attention.forward(&g, h, None, None).unwrap();
    let x1 = g.add(xv, a).unwrap();
    let u = block.mlp_norm.forward(&g, x1).unwrap();
    let prefix = g.slice(u, 1, 0, 2).unwrap(); // [2, 2, C]
    let grid = g.slice(u, 1, 2, 11).unwrap(); // [2, 9, C]
    let up = g
        .concat(
            &[
                g.constant(Tensor::zeros(&[2, 3, c])),
                g.slice(grid, 1, 0, 6).unwrap(),
            ],
            1,
        )
        .unwrap(); // token (i, j) <- (i - 1, j)
    let one_plus_s: Vec<f32> = s.data().iter().map(|v| 1.0 + v).collect();
    let scaled = g
        .mul(
            grid,
            g.constant(Tensor::from_vec(one_plus_s, &[c]).unwrap()),
        )
        .unwrap();
    let grid = g.add(g.add(scaled, up).unwrap(), g.constant(beta)).unwrap();
    let u2 = g.concat(&[prefix, grid], 1).unwrap();
    let want = g.add(x1, block.mlp.forward(&g, u2).unwrap()).unwrap();
    let d = max_abs_diff(&got, &g.value(want).unwrap());
    assert!(d <= 1e-5, "off by {d}");
}

#[test]
fn the_trace_holds_each_layers_output_and_raw_projections() {
    let teacher = teacher(3, false, 60);
    let mini = MiniVit::from_vit(&teacher, &share(2, true)).unwrap();
    randomize(&mini, |n| n.contains("transform"), 0.2, 61);
    let x = images(2, 62);
    let g = Graph::new();
    let (logits, traces) = mini.forward_traced(&g, g.constant(x.clone())).unwrap();
    assert_eq!(g.value(logits).unwrap(), mini_logits(&mini, &x));
    assert_eq!(traces.len(), 3);
    // Layer 1's Q, K, V are its group's projections of its own LayerNorm of layer 0's output.
    let block = &mini.encoder.layers[1].block;
    let h = block.attn_norm.forward(&g, traces[0].output).unwrap();
    let projections = [
        (traces[1].query, &block.attention.query),
        (traces[1].key, &block.attention.key),
        (traces[1].value, &block.attention.value),
    ];
    for (traced, linear) in projections {
        let want = linear.forward(&g, h).unwrap();
        assert_eq!(g.value(traced).unwrap(), g.value(want).unwrap());
        assert_eq!(g.shape(traced).unwrap(), [2, 10, 16]);
    }
}

fn same_linear(a: &Linear, b: &Linear) -> bool {
    a.weight.same_as(&b.weight) && a.bias.as_ref().unwrap().same_as(b.bias.as_ref().unwrap())
}

#[test]
fn every_parameter_is_listed_once_and_a_group_holds_one_set_of_weights() {
    let teacher = teacher(5, true, 50);
    let mini = MiniVit::from_vit(&teacher, &share(2, true)).unwrap();
    let params = mini.named_params();
    for (i, (name, p)) in params.iter().enumerate() {
        for (other, q) in &params[..i] {
            assert!(!p.same_as(q), "{name} and {other} are one parameter");
            assert_ne!(name, other);
        }
    }
    let teacher_params = teacher.named_params();
    for (name, p) in &params {
        assert!(
            !teacher_params.iter().any(|(_, q)| p.same_as(q)),
            "{name} is the teacher's"
        );
    }
    let layers = &mini.encoder.layers;
    assert_eq!(mini.encoder.num_groups(), 3);
    for (i, layer) in layers.iter().enumerate() {
        let (mine, first) = (&layer.block, &layers[i - i % 2].block);
        let pairs = [
            (&mine.attention.query, &first.attention.query),
            (&mine.attention.key, &first.attention.key),
            (&mine.attention.value, &first.attention.value),
            (&mine.attention.dense, &first.attention.dense),
            (&mine.mlp.fc1, &first.mlp.fc1),
            (&mine.mlp.fc2, &first.mlp.fc2),
        ];
        for (a, b) in pairs {
            assert!(
                same_linear(a, b),
                "layer {i} does not hold its group's weights"
            );
        }
        if i % 2 == 1 {
            assert!(!mine.attn_norm.weight.same_as(&first.attn_norm.weight));
            assert!(!mine.mlp_norm.bias.same_as(&first.mlp_norm.bias));
        }
        if i >= 2 {
            assert!(!same_linear(&mine.mlp.fc1, &layers[0].block.mlp.fc1));
        }
    }
    let names: Vec<&str> = params.iter().map(|(n, _)| n.as_str()).collect();
    for expected in [
        "encoder.group.0.attention.attention.query.weight",
        "encoder.group.1.attention.output.dense.bias",
        "encoder.group.2.intermediate.dense.weight",
        "encoder.group.2.output.dense.bias",
        "encoder.layer.4.layernorm_before.weight",
        "encoder.layer.3.layernorm_after.bias",
        "encoder.layer.3.transform.attention_pre.weight",
        "encoder.layer.1.transform.attention_pre.bias",
        "encoder.layer.0.transform.attention_post.weight",
        "encoder.layer.2.transform.attention_post.bias",
        "encoder.layer.4.transform.dwconv.weight",
        "encoder.layer.4.transform.dwconv.bias",
        "embeddings.distillation_token",
        "distillation_classifier.weight",
    ] {
        assert!(names.contains(&expected), "{expected} missing");
    }
    assert!(!names.iter().any(|n| n.starts_with("encoder.group.3")));
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("encoder.layer.1.attention"))
    );
    // Six Linears per group, the patch projection and two heads.
    let mut linears = Vec::new();
    mini.visit_linears(&mut |name, _| linears.push(name.to_string()));
    assert_eq!(linears.len(), 3 * 6 + 3);
    assert!(linears.contains(&"encoder.group.1.intermediate.dense".to_string()));
    // AdamW refuses a parameter listed twice.
    let handles = params.into_iter().map(|(_, p)| p).collect();
    AdamW::new(handles, AdamWConfig::default()).unwrap();
}
