//! ALBERT's options of `Bert`: the factorized embedding (`embedding_size`: tables of width E,
//! then `encoder.embedding_hidden_mapping_in` E -> H) and cross-layer sharing
//! (`num_hidden_groups`): parameter counts and names, forward equalities with plain models,
//! gradients of shared weights, one optimizer step per shared weight, save/load, configs, and
//! the int8 lowering (sharing lowered per layer, the factorized embedding refused).

use lithe::int8::{Input, Int8Model, QuantPlan};
use lithe::nn::{AttentionMask, Bert, BertConfig, Module};
use lithe::{CrossEntropyOptions, Error, Graph, Optimizer, Param, Rng, Sgd, SgdConfig, Tensor};

const V: usize = 23;
const H: usize = 8;
const I: usize = 12;
const P: usize = 16;
const C: usize = 3;

fn config(layers: usize, embedding_size: Option<usize>, groups: Option<usize>) -> BertConfig {
    BertConfig {
        vocab_size: V,
        hidden_size: H,
        num_hidden_layers: layers,
        num_attention_heads: 2,
        intermediate_size: I,
        hidden_act: "gelu".into(),
        max_position_embeddings: P,
        type_vocab_size: 2,
        layer_norm_eps: 1e-5,
        hidden_dropout_prob: 0.1,
        attention_probs_dropout_prob: 0.1,
        num_labels: C,
        embedding_size,
        num_hidden_groups: groups,
        attention_head_size: None,
    }
}

/// Non-trivial values everywhere: N(0, 0.3^2), LayerNorm weights around 1.
fn randomise(m: &impl Module, seed: u64) {
    let mut rng = Rng::new(seed);
    for (name, p) in m.named_params() {
        let noise = Tensor::randn(&p.shape(), 0.0, 0.3, &mut rng);
        let v = if name.ends_with("LayerNorm.weight") {
            noise.map(|v| 1.0 + v)
        } else {
            noise
        };
        p.set_value(v).unwrap();
    }
}

fn model(c: &BertConfig, seed: u64) -> Bert {
    let bert = Bert::new(c, &mut Rng::new(seed)).unwrap();
    randomise(&bert, seed + 100);
    bert
}

fn param(m: &impl Module, name: &str) -> Param {
    m.named_params()
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no {name}"))
        .1
}

/// Copies every parameter of `from` into `to` by name, with `to`'s layer `i` taking `from`'s
/// `encoder.layer.{layer_of(i)}` (so a plain model can take a shared model's weights).
fn copy_weights(from: &Bert, to: &Bert, layer_of: impl Fn(usize) -> usize) {
    for (name, p) in to.named_params() {
        let source = match name.strip_prefix("encoder.layer.") {
            Some(rest) => {
                let (i, local) = rest.split_once('.').unwrap();
                format!("encoder.layer.{}.{local}", layer_of(i.parse().unwrap()))
            }
            None => name.clone(),
        };
        p.set_value(param(from, &source).value()).unwrap();
    }
}

const B: usize = 2;
const T: usize = 5;
const IDS: [usize; B * T] = [1, 4, 7, 2, 0, 3, 3, 9, 22, 5];
const TYPES: [usize; B * T] = [0, 0, 1, 1, 0, 0, 1, 1, 1, 0];
const TARGET: [usize; B] = [2, 0];

fn mask() -> AttentionMask {
    AttentionMask::from_lengths(&[3, 5], T).unwrap()
}

/// Logits `[B, C]` on an inference graph.
fn logits(bert: &Bert) -> Vec<f32> {
    let g = Graph::inference();
    let l = bert
        .forward_logits(&g, &IDS, [B, T], Some(&TYPES), Some(&mask()))
        .unwrap();
    g.value(l).unwrap().data().to_vec()
}

/// Cross-entropy of the logits on a graph with gradients and no dropout.
fn loss_on(g: &Graph, bert: &Bert) -> lithe::Var {
    g.set_training(false);
    let l = bert
        .forward_logits(g, &IDS, [B, T], Some(&TYPES), Some(&mask()))
        .unwrap();
    g.cross_entropy(l, &TARGET, &CrossEntropyOptions::default())
        .unwrap()
}

fn loss(bert: &Bert) -> f64 {
    let g = Graph::new();
    let l = loss_on(&g, bert);
    g.value(l).unwrap().item().unwrap() as f64
}

/// Parameters of one post-LN block of width H and MLP width I.
fn block_params() -> usize {
    4 * (H * H + H) + 2 * 2 * H + (H * I + I) + (I * H + H)
}

/// Pooler and classifier.
fn head_params() -> usize {
    (H * H + H) + (C * H + C)
}

#[test]
fn factorized_embedding_counts_and_names_parameters() {
    let e = 4;
    let bert = Bert::new(&config(2, Some(e), None), &mut Rng::new(1)).unwrap();
    // Tables and LayerNorm at width E, then the E -> H mapping.
    let embeddings = V * e + P * e + 2 * e + 2 * e;
    let mapping = e * H + H;
    assert_eq!(
        bert.num_params(),
        embeddings + mapping + 2 * block_params() + head_params()
    );
    let params = bert.named_params();
    let names: Vec<&str> = params.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names[..7],
        [
            "embeddings.word_embeddings.weight",
            "embeddings.position_embeddings.weight",
            "embeddings.token_type_embeddings.weight",
            "embeddings.LayerNorm.weight",
            "embeddings.LayerNorm.bias",
            "encoder.embedding_hidden_mapping_in.weight",
            "encoder.embedding_hidden_mapping_in.bias",
        ]
    );
    assert_eq!(params[0].1.shape(), [V, e]);
    assert_eq!(params[5].1.shape(), [H, e]);
    let mut linears = Vec::new();
    bert.visit_linears(&mut |name, _| linears.push(name.to_string()));
    assert_eq!(linears[0], "encoder.embedding_hidden_mapping_in");
    assert_eq!(linears.len(), 1 + 2 * 6 + 2);
    // The hidden state has width H.
    let g = Graph::inference();
    let x = bert.forward_hidden(&g, &IDS, [B, T], None, None).unwrap();
    assert_eq!(g.shape(x).unwrap(), [B, T, H]);
    // Without the option nothing changes: tables of width H, no mapping.
    let plain = Bert::new(&config(2, None, None), &mut Rng::new(1)).unwrap();
    assert!(plain.embedding_mapping.is_none());
    assert_eq!(
        plain.num_params(),
        (V + P + 2 + 2) * H + 2 * block_params() + head_params()
    );
}

#[test]
fn shared_layers_store_each_block_once() {
    let one_layer = Bert::new(&config(1, None, None), &mut Rng::new(1))
        .unwrap()
        .num_params();
    for layers in [1, 3, 6] {
        let bert = Bert::new(&config(layers, None, Some(1)), &mut Rng::new(1)).unwrap();
        assert_eq!(bert.blocks().len(), layers);
        assert_eq!(bert.encoder.groups(), vec![0; layers]);
        assert_eq!(bert.num_params(), one_layer, "{layers} layers, one group");
        let names = bert.named_params();
        assert!(names.iter().all(|(n, _)| !n.starts_with("encoder.layer.1")));
    }
    let bert = Bert::new(&config(4, Some(4), Some(2)), &mut Rng::new(1)).unwrap();
    assert_eq!(bert.encoder.groups(), [0, 0, 1, 1]);
    let blocks: Vec<String> = bert
        .named_params()
        .into_iter()
        .filter_map(|(n, _)| {
            n.strip_suffix(".attention.self.query.weight")
                .map(String::from)
        })
        .collect();
    assert_eq!(blocks, ["encoder.layer.0", "encoder.layer.1"]);
    // Layers 0 and 1 are one block; layers 1 and 2 are not.
    let layers = bert.blocks();
    assert!(layers[0].shares_weights_with(&layers[1]));
    assert!(!layers[1].shares_weights_with(&layers[2]));
    assert_eq!(
        bert.num_params(),
        (V + P + 2 + 2) * 4 + (4 * H + H) + 2 * block_params() + head_params()
    );
    // Every distinct weight listed once: an optimizer accepts the list.
    let params: Vec<Param> = bert.named_params().into_iter().map(|(_, p)| p).collect();
    assert!(Sgd::new(params.clone(), SgdConfig::default()).is_ok());
    assert!(lithe::AdamW::new(params, lithe::AdamWConfig::default()).is_ok());
}

#[test]
fn one_layer_per_group_equals_the_unshared_model() {
    for e in [None, Some(5)] {
        let shared = model(&config(3, e, Some(3)), 7);
        let plain = Bert::new(&config(3, e, None), &mut Rng::new(7)).unwrap();
        assert_eq!(shared.encoder.groups(), plain.encoder.groups());
        let names =
            |m: &Bert| -> Vec<String> { m.named_params().into_iter().map(|(n, _)| n).collect() };
        assert_eq!(names(&shared), names(&plain));
        copy_weights(&shared, &plain, |i| i);
        assert_eq!(logits(&shared), logits(&plain), "embedding_size {e:?}");
    }
}

#[test]
fn one_group_runs_its_block_at_every_layer() {
    let layers = 3;
    let bert = model(&config(layers, Some(4), Some(1)), 3);
    let g = Graph::inference();
    let m = mask();
    let hidden = bert
        .forward_hidden(&g, &IDS, [B, T], Some(&TYPES), Some(&m))
        .unwrap();
    // By hand: the embeddings, the mapping, then the one block L times.
    let x = bert
        .embeddings
        .forward(&g, &IDS, [B, T], Some(&TYPES))
        .unwrap();
    let mut h = bert
        .embedding_mapping
        .as_ref()
        .unwrap()
        .forward(&g, x)
        .unwrap();
    let bias = g.constant(m.additive_bias());
    let block = &bert.blocks()[0];
    for _ in 0..layers {
        h = block.forward(&g, h, Some(bias), None).unwrap();
    }
    assert_eq!(g.value(hidden).unwrap().data(), g.value(h).unwrap().data());
    // The same block twice differs from once: the layers really repeat it.
    let once = model(&config(1, Some(4), Some(1)), 3);
    assert_ne!(logits(&once), logits(&bert));
    // A plain model whose three layers all hold the block computes the same.
    let plain = Bert::new(&config(layers, Some(4), None), &mut Rng::new(0)).unwrap();
    copy_weights(&bert, &plain, |_| 0);
    assert_eq!(logits(&plain), logits(&bert));
}

#[test]
fn shared_weight_gradient_is_the_sum_over_its_layers() {
    let shared = model(&config(2, Some(4), Some(1)), 11);
    let plain = Bert::new(&config(2, Some(4), None), &mut Rng::new(0)).unwrap();
    copy_weights(&shared, &plain, |_| 0);
    for m in [&shared, &plain] {
        let g = Graph::new();
        let l = loss_on(&g, m);
        g.backward(l).unwrap();
    }
    for local in [
        "attention.self.query.weight",
        "attention.output.LayerNorm.weight",
        "intermediate.dense.bias",
        "output.dense.weight",
    ] {
        let got = param(&shared, &format!("encoder.layer.0.{local}"))
            .grad()
            .unwrap();
        let g0 = param(&plain, &format!("encoder.layer.0.{local}"))
            .grad()
            .unwrap();
        let g1 = param(&plain, &format!("encoder.layer.1.{local}"))
            .grad()
            .unwrap();
        let mut nonzero = false;
        for ((&s, &a), &b) in got.data().iter().zip(g0.data()).zip(g1.data()) {
            let want = a + b;
            assert!(
                (s - want).abs() <= 1e-5 + 1e-4 * want.abs(),
                "{local}: shared grad {s}, layers' sum {want} ({a} + {b})"
            );
            nonzero |= a.abs() > 1e-4 && b.abs() > 1e-4;
        }
        assert!(nonzero, "{local}: both layers must contribute");
    }
}

#[test]
fn shared_weight_gradients_match_finite_differences() {
    let bert = model(&config(3, Some(4), Some(1)), 5);
    let g = Graph::new();
    let l = loss_on(&g, &bert);
    g.backward(l).unwrap();
    let probes = [
        ("encoder.layer.0.attention.self.query.weight", 13),
        ("encoder.layer.0.attention.self.value.weight", 40),
        ("encoder.layer.0.attention.output.LayerNorm.weight", 6),
        ("encoder.layer.0.intermediate.dense.weight", 50),
        ("encoder.layer.0.output.dense.bias", 3),
        ("encoder.embedding_hidden_mapping_in.weight", 9),
        ("encoder.embedding_hidden_mapping_in.bias", 2),
        ("embeddings.word_embeddings.weight", 7 * 4 + 1),
    ];
    for (name, e) in probes {
        let p = param(&bert, name);
        let value = p.value();
        let at = |x: f32| {
            let mut v = value.clone();
            v.data_mut()[e] = x;
            p.set_value(v).unwrap();
            loss(&bert)
        };
        let (x0, h) = (value.data()[e], 1e-2f32);
        let fd = (at(x0 + h) - at(x0 - h)) / (2.0 * h as f64);
        p.set_value(value).unwrap();
        let got = p.grad().unwrap().data()[e] as f64;
        assert!(
            (got - fd).abs() <= 3e-4 + 5e-3 * fd.abs(),
            "d {name}[{e}] = {got}, finite difference {fd}"
        );
        assert!(fd.abs() > 1e-3, "d {name}[{e}] too small to test: {fd}");
    }
}

#[test]
fn one_optimizer_step_moves_a_shared_weight_once() {
    let bert = model(&config(3, None, Some(1)), 13);
    let params: Vec<Param> = bert.named_params().into_iter().map(|(_, p)| p).collect();
    let lr = 0.5;
    let mut sgd = Sgd::new(
        params,
        SgdConfig {
            lr,
            ..SgdConfig::default()
        },
    )
    .unwrap();
    let g = Graph::new();
    let l = loss_on(&g, &bert);
    g.backward(l).unwrap();
    let w = param(&bert, "encoder.layer.0.intermediate.dense.weight");
    let (before, grad) = (w.value(), w.grad().unwrap());
    sgd.step().unwrap();
    let after = w.value();
    for ((&a, &b), &d) in after.data().iter().zip(before.data()).zip(grad.data()) {
        let want = b - lr as f32 * d;
        assert!((a - want).abs() <= 1e-6, "{a} != {b} - {lr} * {d}");
    }
    assert_ne!(after.data(), before.data());
    // Every layer sees the stepped weight.
    for layer in bert.blocks() {
        assert_eq!(layer.mlp.fc1.weight.value().data(), after.data());
    }
}

#[test]
fn albert_model_saves_and_loads_to_the_same_logits() {
    let c = config(4, Some(4), Some(2));
    let bert = model(&c, 17);
    let dir = std::env::temp_dir().join(format!("lithe-albert-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    lithe::io::save_module(&bert, dir.join("model.safetensors")).unwrap();
    lithe::io::save_config(&c, dir.join("config.json")).unwrap();
    let (tensors, _) = lithe::io::read_safetensors(dir.join("model.safetensors")).unwrap();
    assert_eq!(tensors.len(), bert.named_params().len());
    assert!(
        tensors
            .iter()
            .any(|(n, _)| n == "encoder.embedding_hidden_mapping_in.weight")
    );
    assert!(
        tensors
            .iter()
            .all(|(n, _)| !n.starts_with("encoder.layer.2"))
    );
    let config: BertConfig = lithe::io::load_config(dir.join("config.json")).unwrap();
    assert_eq!(config, c);
    let again = Bert::new(&config, &mut Rng::new(99)).unwrap();
    lithe::io::load_into_module(&again, dir.join("model.safetensors"), true).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(again.encoder.groups(), [0, 0, 1, 1]);
    assert_eq!(logits(&again), logits(&bert));
}

#[test]
fn configs_without_the_albert_fields_are_unchanged() {
    let plain = config(2, None, None);
    let text = serde_json::to_string(&plain).unwrap();
    assert!(!text.contains("embedding_size") && !text.contains("num_hidden_groups"));
    let back: BertConfig = serde_json::from_str(&text).unwrap();
    assert_eq!(back, plain);
    let albert = config(2, Some(4), Some(1));
    let text = serde_json::to_string(&albert).unwrap();
    assert!(text.contains("\"embedding_size\":4") && text.contains("\"num_hidden_groups\":1"));
    assert_eq!(serde_json::from_str::<BertConfig>(&text).unwrap(), albert);
}

#[test]
fn invalid_groups_and_embedding_size_are_rejected() {
    let cases = [
        config(4, None, Some(0)),
        config(4, None, Some(3)),
        config(4, None, Some(8)),
        config(0, None, Some(1)),
        config(2, Some(0), None),
    ];
    for c in cases {
        match Bert::new(&c, &mut Rng::new(0)) {
            Err(Error::InvalidArgument { .. }) => {}
            other => panic!(
                "{:?} / {:?}: expected InvalidArgument, got {:?}",
                c.num_hidden_groups,
                c.embedding_size,
                other.map(|_| ())
            ),
        }
    }
}

/// Int8 logits of `m` (dynamic activation quantization).
fn int8_logits(m: &Int8Model) -> Vec<f32> {
    let ids: Vec<u32> = IDS.iter().map(|&i| i as u32).collect();
    let mut ws = m.workspace(B, T).unwrap();
    let input = Input::Tokens {
        ids: &ids,
        batch: B,
        seq: T,
        lengths: Some(&[3, 5]),
    };
    m.forward(&mut ws, input).unwrap().to_vec()
}

#[test]
fn int8_lowers_shared_layers_and_refuses_the_factorized_embedding() {
    let shared = model(&config(2, None, Some(1)), 19);
    let plain = Bert::new(&config(2, None, None), &mut Rng::new(0)).unwrap();
    copy_weights(&shared, &plain, |_| 0);
    let plan = QuantPlan::dynamic();
    let lowered = Int8Model::from_bert(&shared, &plan).unwrap();
    assert_eq!(
        int8_logits(&lowered),
        int8_logits(&Int8Model::from_bert(&plain, &plan).unwrap())
    );
    let path = std::env::temp_dir().join(format!(
        "lithe-albert-int8-{}.safetensors",
        std::process::id()
    ));
    lowered.save(&path).unwrap();
    let again = Int8Model::load(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(int8_logits(&again), int8_logits(&lowered));
    let factorized = model(&config(2, Some(4), None), 19);
    match Int8Model::from_bert(&factorized, &plan) {
        Err(Error::InvalidArgument { msg, .. }) => {
            assert!(msg.contains("embedding_size"), "{msg}")
        }
        other => panic!("expected InvalidArgument, got {:?}", other.map(|_| ())),
    }
}

fn lithe(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_lithe"))
        .args(args)
        .output()
        .expect("run lithe")
}

/// The last JSON line of a successful run's stdout.
fn last_json(out: &std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "lithe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
}

#[test]
fn lithe_train_text_builds_an_albert_that_eval_reads_back() {
    let dir = std::env::temp_dir().join(format!("lithe-albert-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let words = [
        "good", "fine", "great", "bad", "poor", "awful", "film", "plot",
    ];
    let vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        .iter()
        .chain(&words)
        .copied()
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(dir.join("vocab.txt"), vocab + "\n").unwrap();
    let texts: String = (0..24)
        .map(|i| {
            let label = i % 2;
            let word = words[3 * label + i % 3];
            format!("{label}\t{word} {} {word}\n", words[6 + i % 2])
        })
        .collect();
    std::fs::write(dir.join("texts.tsv"), texts).unwrap();
    let (data, vocab, out) = (
        dir.join("texts.tsv"),
        dir.join("vocab.txt"),
        dir.join("run"),
    );
    let path = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let train = |extra: &[&str]| {
        let mut args = vec![
            "train".to_string(),
            "text".into(),
            "--train".into(),
            path(&data),
            "--test".into(),
            path(&data),
            "--vocab".into(),
            path(&vocab),
            "--width".into(),
            "16".into(),
            "--depth".into(),
            "2".into(),
            "--epochs".into(),
            "1".into(),
            "--batch".into(),
            "8".into(),
            "--threads".into(),
            "1".into(),
            "--json".into(),
            "--out".into(),
            path(&out),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        lithe(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let trained = last_json(&train(&["--embedding-size", "4", "--groups", "1"]));
    let config: BertConfig = lithe::io::load_config(out.join("config.json")).unwrap();
    assert_eq!(
        (config.embedding_size, config.num_hidden_groups),
        (Some(4), Some(1))
    );
    let eval = last_json(&lithe(&[
        "eval",
        "--model",
        &path(&out),
        "--data",
        &path(&data),
        "--json",
    ]));
    assert_eq!(eval["accuracy"], trained["test_accuracy"]);
    // Groups that do not divide the depth, and the flags on a loaded model, are errors.
    assert!(!train(&["--groups", "3"]).status.success());
    assert!(!train(&["--embedding-size", "0"]).status.success());
    assert!(
        !train(&["--groups", "1", "--init", &path(&dir)])
            .status
            .success()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
