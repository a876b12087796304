//! End-to-end gradient checks of a tiny BERT and a tiny DeiT: the tape's gradients of a scalar
//! loss against central finite differences of the same f32 forward.
//!
//! The ops are individually checked in f64 (`tests/autograd_grad`); this checks that the models
//! wire them correctly. f32 forward noise (~1e-6 on a loss of ~1) divided by the step bounds
//! the finite-difference error, so the parameters are set to O(0.3) values (gradients far
//! above that noise) and the tolerance (0.5% + 3e-4) is tight enough that a gradient off by 5%
//! fails — each check asserts that too.

use lithe::nn::{AttentionMask, Bert, BertConfig, Module, Vit, VitConfig, mean_pool};
use lithe::{CrossEntropyOptions, Graph, Param, Rng, Tensor, Var};

const RTOL: f64 = 5e-3;
const ATOL: f64 = 3e-4;

fn close(got: f64, fd: f64) -> bool {
    (got - fd).abs() <= ATOL + RTOL * fd.abs()
}

/// Non-trivial values everywhere: N(0, 0.3^2), LayerNorm weights around 1.
fn randomise(params: &[(String, Param)], seed: u64) {
    let mut rng = Rng::new(seed);
    for (name, p) in params {
        let noise = Tensor::randn(&p.shape(), 0.0, 0.3, &mut rng);
        let is_ln_weight = name.ends_with("LayerNorm.weight")
            || (name.contains("layernorm") && name.ends_with("weight"));
        p.set_value(if is_ln_weight {
            noise.map(|v| 1.0 + v)
        } else {
            noise
        })
        .unwrap();
    }
}

/// Checks `grads` of `params` (from one backward of `loss`) against finite differences of
/// `loss`: along a random direction through every parameter, and element by element at
/// `probes` (parameter index, element index).
fn check_model(
    what: &str,
    params: &[(String, Param)],
    loss: &dyn Fn() -> f64,
    probes: &[(usize, usize)],
) {
    let grads: Vec<Tensor> = params
        .iter()
        .map(|(n, p)| {
            p.grad()
                .unwrap_or_else(|| panic!("{what}: {n} got no gradient"))
        })
        .collect();
    let values: Vec<Tensor> = params.iter().map(|(_, p)| p.value()).collect();
    let set = |offset: &dyn Fn(usize, &Tensor) -> Tensor| {
        for (i, (_, p)) in params.iter().enumerate() {
            p.set_value(offset(i, &values[i])).unwrap();
        }
    };
    // Directional derivative: d/dh L(theta + h u) = sum(grad * u).
    let mut rng = Rng::new(77);
    let dirs: Vec<Tensor> = values
        .iter()
        .map(|v| Tensor::randn(v.shape(), 0.0, 1.0, &mut rng))
        .collect();
    let dot: f64 = grads
        .iter()
        .zip(&dirs)
        .flat_map(|(g, u)| g.data().iter().zip(u.data()))
        .map(|(&g, &u)| g as f64 * u as f64)
        .sum();
    // Moving every parameter at once has a large third derivative, so the central difference
    // is Richardson-extrapolated: (4 D(h/2) - D(h)) / 3 cancels its h^2 error term.
    let central = |h: f32| {
        set(&|i, v| v.zip_map(&dirs[i], |a, u| a + h * u).unwrap());
        let up = loss();
        set(&|i, v| v.zip_map(&dirs[i], |a, u| a - h * u).unwrap());
        let down = loss();
        set(&|_, v| v.clone());
        (up - down) / (2.0 * h as f64)
    };
    let fd = (4.0 * central(1e-3) - central(2e-3)) / 3.0;
    eprintln!("{what}: directional derivative {dot:.6}, finite difference {fd:.6}");
    assert!(
        fd.abs() > 0.1,
        "{what}: directional derivative too small to test: {fd}"
    );
    assert!(
        close(dot, fd),
        "{what}: directional {dot} vs finite difference {fd}"
    );
    assert!(
        !close(1.05 * dot, fd),
        "{what}: the check would not catch a 5% error"
    );
    // Single elements.
    for &(pi, e) in probes {
        let (name, p) = &params[pi];
        let x0 = values[pi].data()[e];
        let h = 1e-2f32;
        let at = |x: f32| {
            let mut v = values[pi].clone();
            v.data_mut()[e] = x;
            p.set_value(v).unwrap();
            loss()
        };
        let fd = (at(x0 + h) - at(x0 - h)) / (2.0 * h as f64);
        p.set_value(values[pi].clone()).unwrap();
        let got = grads[pi].data()[e] as f64;
        eprintln!("{what}: d {name}[{e}] = {got:.6}, finite difference {fd:.6}");
        assert!(
            close(got, fd),
            "{what}: d {name}[{e}] = {got}, finite difference {fd}"
        );
    }
}

fn index_of(params: &[(String, Param)], name: &str) -> usize {
    params
        .iter()
        .position(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no {name}"))
}

#[test]
fn tiny_bert_gradients_match_finite_differences() {
    let c = BertConfig {
        vocab_size: 13,
        hidden_size: 8,
        num_hidden_layers: 2,
        num_attention_heads: 2,
        intermediate_size: 12,
        max_position_embeddings: 8,
        layer_norm_eps: 1e-5,
        hidden_dropout_prob: 0.1,
        attention_probs_dropout_prob: 0.1,
        num_labels: 3,
        ..BertConfig::default()
    };
    let bert = Bert::new(&c, &mut Rng::new(1)).unwrap();
    let params = bert.named_params();
    randomise(&params, 2);
    let (b, t) = (2, 5);
    let ids = [1, 4, 7, 2, 0, 3, 3, 9, 12, 5];
    let types = [0, 0, 1, 1, 0, 0, 1, 1, 1, 0];
    let mask = AttentionMask::from_lengths(&[3, 5], t).unwrap();
    let target = [2, 0];
    let pool_w = Tensor::randn(&[b, c.hidden_size], 0.0, 1.0, &mut Rng::new(3));
    let head_values = [
        Tensor::from_vec(vec![1.0, 0.6], &[2]).unwrap(),
        Tensor::ones(&[2]),
    ];
    // loss = CE(classifier(pooler(hidden))) + sum(w * mean_pool(hidden)), heads masked.
    let forward = |g: &Graph| -> (Var, Vec<Var>) {
        g.set_training(false); // deterministic: no dropout, gradients still on
        let hm: Vec<Var> = head_values.iter().map(|v| g.variable(v.clone())).collect();
        let (_, traces) = bert
            .forward_traced(g, &ids, [b, t], Some(&types), Some(&mask), Some(&hm))
            .unwrap();
        let hidden = traces.last().unwrap().output;
        let logits = bert.classify(g, hidden).unwrap();
        let ce = g
            .cross_entropy(logits, &target, &CrossEntropyOptions::default())
            .unwrap();
        let pooled = mean_pool(g, hidden, Some(&mask)).unwrap();
        let extra = g
            .sum_all(g.mul(pooled, g.constant(pool_w.clone())).unwrap())
            .unwrap();
        (g.add(ce, extra).unwrap(), hm)
    };
    let loss = || -> f64 {
        let g = Graph::new();
        let (l, _) = forward(&g);
        g.value(l).unwrap().item().unwrap() as f64
    };
    let g = Graph::new();
    let (l, hm) = forward(&g);
    g.backward(l).unwrap();
    let probes = [
        (
            index_of(&params, "embeddings.word_embeddings.weight"),
            7 * 8 + 3,
        ),
        (
            index_of(&params, "embeddings.position_embeddings.weight"),
            4 * 8 + 1,
        ),
        (
            index_of(&params, "embeddings.token_type_embeddings.weight"),
            8 + 5,
        ),
        (
            index_of(&params, "encoder.layer.0.attention.self.query.weight"),
            13,
        ),
        (
            index_of(&params, "encoder.layer.0.attention.self.key.bias"),
            2,
        ),
        (
            index_of(&params, "encoder.layer.1.attention.self.value.weight"),
            40,
        ),
        (
            index_of(&params, "encoder.layer.0.attention.output.LayerNorm.weight"),
            6,
        ),
        (
            index_of(&params, "encoder.layer.1.intermediate.dense.weight"),
            50,
        ),
        (
            index_of(&params, "encoder.layer.1.output.LayerNorm.bias"),
            0,
        ),
        (index_of(&params, "pooler.dense.weight"), 9),
        (index_of(&params, "classifier.bias"), 1),
    ];
    check_model("bert", &params, &loss, &probes);
    // A padded token's embedding gets no gradient: id 0 appears only at a padded position.
    let words = params[0].1.grad().unwrap();
    assert!(
        words.data()[..8].iter().all(|&v| v == 0.0),
        "padding leaked a gradient"
    );
    // Head-mask gradient (FastFormers' head importance) against finite differences.
    let d_hm = g.grad(hm[0]).unwrap().unwrap();
    for head in 0..2 {
        let eps = 1e-2f32;
        let at = |x: f32| {
            let g = Graph::new();
            g.set_training(false);
            let mut v = head_values[0].clone();
            v.data_mut()[head] = x;
            let hm = [g.variable(v), g.variable(head_values[1].clone())];
            let (_, tr) = bert
                .forward_traced(&g, &ids, [b, t], Some(&types), Some(&mask), Some(&hm))
                .unwrap();
            let hidden = tr.last().unwrap().output;
            let ce = g
                .cross_entropy(
                    bert.classify(&g, hidden).unwrap(),
                    &target,
                    &CrossEntropyOptions::default(),
                )
                .unwrap();
            let pooled = mean_pool(&g, hidden, Some(&mask)).unwrap();
            let extra = g
                .sum_all(g.mul(pooled, g.constant(pool_w.clone())).unwrap())
                .unwrap();
            g.value(g.add(ce, extra).unwrap()).unwrap().item().unwrap() as f64
        };
        let x0 = head_values[0].data()[head];
        let fd = (at(x0 + eps) - at(x0 - eps)) / (2.0 * eps as f64);
        let got = d_hm.data()[head] as f64;
        assert!(close(got, fd), "head mask {head}: {got} vs {fd}");
    }
}

#[test]
fn tiny_deit_gradients_match_finite_differences() {
    let c = VitConfig {
        image_size: 4,
        patch_size: 2,
        num_channels: 2,
        hidden_size: 8,
        num_hidden_layers: 2,
        num_attention_heads: 2,
        intermediate_size: 12,
        num_labels: 3,
        layer_norm_eps: 1e-5,
        hidden_dropout_prob: 0.1,
        distillation_token: true,
        ..VitConfig::default()
    };
    let vit = Vit::new(&c, &mut Rng::new(4)).unwrap();
    let params = vit.named_params();
    randomise(&params, 5);
    let images = Tensor::randn(&[3, 2, 4, 4], 0.0, 1.0, &mut Rng::new(6));
    let target = [1, 2, 0];
    let forward = |g: &Graph| -> Var {
        g.set_training(false);
        let logits = vit.forward_logits(g, g.constant(images.clone())).unwrap();
        g.cross_entropy(logits, &target, &CrossEntropyOptions::default())
            .unwrap()
    };
    let loss = || -> f64 {
        let g = Graph::new();
        g.value(forward(&g)).unwrap().item().unwrap() as f64
    };
    let g = Graph::new();
    g.backward(forward(&g)).unwrap();
    let probes = [
        (index_of(&params, "embeddings.cls_token"), 3),
        (index_of(&params, "embeddings.distillation_token"), 5),
        (
            index_of(&params, "embeddings.patch_embeddings.projection.weight"),
            17,
        ),
        (
            index_of(&params, "embeddings.position_embeddings"),
            2 * 8 + 4,
        ),
        (
            index_of(&params, "encoder.layer.0.layernorm_before.weight"),
            1,
        ),
        (
            index_of(&params, "encoder.layer.0.attention.attention.key.weight"),
            21,
        ),
        (index_of(&params, "encoder.layer.1.output.dense.weight"), 30),
        (index_of(&params, "layernorm.bias"), 7),
        (index_of(&params, "distillation_classifier.weight"), 10),
    ];
    check_model("deit", &params, &loss, &probes);
}
