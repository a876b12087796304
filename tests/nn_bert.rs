//! BERT: shapes, Hugging Face parameter names and counts, key padding mask, pooling helpers.

use lithe::nn::{AttentionMask, Bert, BertConfig, Module, l2_normalize, mean_pool};
use lithe::{Graph, Rng, Tensor};

fn tiny_config() -> BertConfig {
    BertConfig {
        vocab_size: 23,
        hidden_size: 8,
        num_hidden_layers: 2,
        num_attention_heads: 2,
        intermediate_size: 12,
        max_position_embeddings: 16,
        hidden_dropout_prob: 0.1,
        attention_probs_dropout_prob: 0.1,
        num_labels: 3,
        ..BertConfig::default()
    }
}

fn expected_names(layers: usize) -> Vec<String> {
    let mut names: Vec<String> = [
        "embeddings.word_embeddings.weight",
        "embeddings.position_embeddings.weight",
        "embeddings.token_type_embeddings.weight",
        "embeddings.LayerNorm.weight",
        "embeddings.LayerNorm.bias",
    ]
    .map(String::from)
    .to_vec();
    for i in 0..layers {
        for local in [
            "attention.self.query.weight",
            "attention.self.query.bias",
            "attention.self.key.weight",
            "attention.self.key.bias",
            "attention.self.value.weight",
            "attention.self.value.bias",
            "attention.output.dense.weight",
            "attention.output.dense.bias",
            "attention.output.LayerNorm.weight",
            "attention.output.LayerNorm.bias",
            "intermediate.dense.weight",
            "intermediate.dense.bias",
            "output.dense.weight",
            "output.dense.bias",
            "output.LayerNorm.weight",
            "output.LayerNorm.bias",
        ] {
            names.push(format!("encoder.layer.{i}.{local}"));
        }
    }
    names.extend(
        [
            "pooler.dense.weight",
            "pooler.dense.bias",
            "classifier.weight",
            "classifier.bias",
        ]
        .map(String::from),
    );
    names
}

#[test]
fn bert_parameter_names_are_hugging_face_names() {
    let c = tiny_config();
    let bert = Bert::new(&c, &mut Rng::new(1)).unwrap();
    let names: Vec<String> = bert.named_params().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, expected_names(c.num_hidden_layers));
}

#[test]
fn bert_parameter_count_matches_formula() {
    let c = tiny_config();
    let bert = Bert::new(&c, &mut Rng::new(1)).unwrap();
    let (v, h, p, tt, i, l, k) = (
        c.vocab_size,
        c.hidden_size,
        c.max_position_embeddings,
        c.type_vocab_size,
        c.intermediate_size,
        c.num_hidden_layers,
        c.num_labels,
    );
    let embeddings = (v + p + tt) * h + 2 * h;
    let layer = 4 * (h * h + h) + 2 * 2 * h + (h * i + i) + (i * h + h);
    let heads = (h * h + h) + (h * k + k);
    assert_eq!(bert.num_params(), embeddings + l * layer + heads);
    // Shapes are PyTorch's: Linear weights [out, in].
    let params = bert.named_params();
    let find = |name: &str| params.iter().find(|(n, _)| n == name).unwrap().1.shape();
    assert_eq!(find("encoder.layer.1.intermediate.dense.weight"), [i, h]);
    assert_eq!(find("encoder.layer.1.output.dense.weight"), [h, i]);
    assert_eq!(find("classifier.weight"), [k, h]);
}

#[test]
fn bert_visit_linears_names_every_linear() {
    let bert = Bert::new(&tiny_config(), &mut Rng::new(1)).unwrap();
    let mut names = Vec::new();
    bert.visit_linears(&mut |name, lin| names.push((name.to_string(), lin.out_features())));
    assert_eq!(names.len(), 2 * 6 + 2);
    assert_eq!(names[0].0, "encoder.layer.0.attention.self.query");
    assert_eq!(names[3].0, "encoder.layer.0.attention.output.dense");
    assert_eq!(names[5].0, "encoder.layer.0.output.dense");
    assert_eq!(names[13], ("classifier".to_string(), 3));
    // Every visited name + ".weight" is a parameter name.
    let params: Vec<String> = bert.named_params().into_iter().map(|(n, _)| n).collect();
    for (n, _) in &names {
        assert!(params.contains(&format!("{n}.weight")), "{n}");
    }
}

#[test]
fn bert_output_shapes() {
    let c = tiny_config();
    let bert = Bert::new(&c, &mut Rng::new(2)).unwrap();
    let (b, t) = (3, 5);
    let ids: Vec<usize> = (0..b * t).map(|i| (i * 7) % c.vocab_size).collect();
    let types: Vec<usize> = (0..b * t).map(|i| usize::from(i % t >= 3)).collect();
    let mask = AttentionMask::from_lengths(&[5, 3, 1], t).unwrap();
    let g = Graph::inference();
    let hidden = bert
        .forward_hidden(&g, &ids, [b, t], Some(&types), Some(&mask))
        .unwrap();
    assert_eq!(g.shape(hidden).unwrap(), [b, t, c.hidden_size]);
    let logits = bert.classify(&g, hidden).unwrap();
    assert_eq!(g.shape(logits).unwrap(), [b, c.num_labels]);
    let emb = l2_normalize(&g, mean_pool(&g, hidden, Some(&mask)).unwrap()).unwrap();
    let e = g.value(emb).unwrap();
    assert_eq!(e.shape(), [b, c.hidden_size]);
    for row in e.data().chunks(c.hidden_size) {
        let norm: f32 = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
    }
    // Errors, not panics, for ids that do not fill [B, T] and too long sequences.
    assert!(
        bert.forward_hidden(&g, &ids[1..], [b, t], None, None)
            .is_err()
    );
    let long = vec![0; 17];
    assert!(bert.forward_hidden(&g, &long, [1, 17], None, None).is_err());
    assert!(bert.forward_hidden(&g, &[99], [1, 1], None, None).is_err());
}

#[test]
fn key_padding_mask_hides_padded_tokens() {
    let c = tiny_config();
    let bert = Bert::new(&c, &mut Rng::new(3)).unwrap();
    let (b, t) = (2, 6);
    let lengths = [4, 6];
    let mask = AttentionMask::from_lengths(&lengths, t).unwrap();
    let mut ids: Vec<usize> = (0..b * t).map(|i| (i * 5 + 1) % c.vocab_size).collect();
    let run = |ids: &[usize], mask: Option<&AttentionMask>| {
        let g = Graph::inference();
        let h = bert.forward_hidden(&g, ids, [b, t], None, mask).unwrap();
        let pooled = mean_pool(&g, h, mask).unwrap();
        (g.value(h).unwrap(), g.value(pooled).unwrap())
    };
    let (h0, p0) = run(&ids, Some(&mask));
    // Change the padded tokens of sample 0 (positions 4 and 5).
    ids[4] = 0;
    ids[5] = 22;
    let (h1, p1) = run(&ids, Some(&mask));
    let hc = c.hidden_size;
    for (s, &len) in lengths.iter().enumerate() {
        for pos in 0..len {
            let at = (s * t + pos) * hc;
            assert_eq!(
                h0.data()[at..at + hc],
                h1.data()[at..at + hc],
                "sample {s} pos {pos}"
            );
        }
    }
    assert_eq!(p0, p1, "mean pooling ignores padding");
    // Without the mask the same change does reach the real tokens: the mask is what hides it.
    let (u0, _) = run(
        &(0..b * t)
            .map(|i| (i * 5 + 1) % c.vocab_size)
            .collect::<Vec<_>>(),
        None,
    );
    let (u1, _) = run(&ids, None);
    assert!(u0.data()[..hc] != u1.data()[..hc]);
}

#[test]
fn mean_pool_is_the_masked_mean() {
    let g = Graph::inference();
    // [B=1, T=3, H=2]
    let h =
        g.constant(Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0, 100.0, 100.0], &[1, 3, 2]).unwrap());
    let mask = AttentionMask::from_flags(&[true, true, false], 1, 3).unwrap();
    let m = g.value(mean_pool(&g, h, Some(&mask)).unwrap()).unwrap();
    assert_eq!(m.data(), [2.0, 3.0]);
}

#[test]
fn dropout_only_in_training() {
    let c = tiny_config();
    let bert = Bert::new(&c, &mut Rng::new(4)).unwrap();
    let ids: Vec<usize> = (0..8).collect();
    let run = |g: &Graph| {
        let y = bert.forward_logits(g, &ids, [2, 4], None, None).unwrap();
        g.value(y).unwrap()
    };
    let eval = Graph::new();
    eval.set_training(false);
    let (e0, e1) = (run(&eval), run(&Graph::inference()));
    assert_eq!(e0, e1, "eval mode is deterministic and equals inference");
    let train = run(&Graph::with_seed(5));
    assert_ne!(train, e0, "dropout active in training");
}

#[test]
fn gelu_kind_follows_hidden_act() {
    let mut c = tiny_config();
    assert_eq!(c.gelu_kind().unwrap(), lithe::GeluKind::Erf);
    c.hidden_act = "gelu_new".into();
    assert_eq!(c.gelu_kind().unwrap(), lithe::GeluKind::Tanh);
    c.hidden_act = "swish".into();
    assert!(Bert::new(&c, &mut Rng::new(0)).is_err());
}
