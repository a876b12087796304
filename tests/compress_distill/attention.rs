//! Self-attention relations (MiniLMv2 / MiniViT) and `Qkv::from_attention_parts`.

use super::reference::{self as r, Layer};
use super::{check_loss, randn};
use lithe::compress::distill::{Qkv, QkvPart, RelationConfig, attention_relation_loss};
use lithe::nn::{AttentionMask, AttentionParts, Init, MultiHeadAttention};
use lithe::{Error, Graph, Rng, Tensor, Var};

const B: usize = 2;
const T: usize = 5;

/// `layers` layers of random q, k, v `[B, T, w]`, flattened layer by layer.
fn projections(layers: usize, w: usize, seed: u64) -> Vec<Tensor> {
    (0..3 * layers as u64)
        .map(|i| randn(&[B, T, w], seed + i))
        .collect()
}

fn qkvs(vars: &[Var]) -> Vec<Qkv> {
    vars.chunks(3)
        .map(|c| Qkv {
            query: c[0],
            key: c[1],
            value: c[2],
        })
        .collect()
}

fn to_layers(x: &[Vec<f64>]) -> Vec<Layer<'_>> {
    x.chunks(3)
        .map(|c| [&c[0][..], &c[1][..], &c[2][..]])
        .collect()
}

fn index(p: QkvPart) -> usize {
    QkvPart::ALL.iter().position(|&q| q == p).unwrap()
}

/// Checks the loss and every gradient (student and teacher) for `layers` layers.
fn check_relation(
    name: &str,
    layers: usize,
    (ws, wt): (usize, usize),
    config: &RelationConfig,
    lengths: Option<&[usize]>,
) {
    let mut inputs = projections(layers, ws, 100);
    inputs.extend(projections(layers, wt, 200));
    let mask = lengths.map(|l| AttentionMask::from_lengths(l, T).unwrap());
    let valid = r::flags(lengths, B, T);
    let pairs: Vec<(usize, usize)> = config
        .pairs
        .iter()
        .map(|&(i, j)| (index(i), index(j)))
        .collect();
    let n = 3 * layers;
    check_loss(
        name,
        &inputs,
        |g, v| attention_relation_loss(g, &qkvs(&v[..n]), &qkvs(&v[n..]), config, mask.as_ref()),
        |x| {
            let (s, t): (Vec<Layer>, Vec<Layer>) = (to_layers(&x[..n]), to_layers(&x[n..]));
            r::attention_relation(
                &s,
                &t,
                (B, T),
                (ws, wt),
                config.relation_heads,
                &pairs,
                &valid,
            )
        },
    );
}

#[test]
fn all_pairs_two_layers_matches_reference() {
    check_relation("9 pairs, r=2", 2, (8, 12), &RelationConfig::new(2), None);
}

#[test]
fn all_pairs_masked_matches_reference() {
    let lengths = [5, 3];
    check_relation(
        "9 pairs, r=4, mask",
        1,
        (8, 12),
        &RelationConfig::new(4),
        Some(&lengths),
    );
}

#[test]
fn diagonal_pairs_wider_student_masked_matches_reference() {
    let lengths = [2, 4];
    let config = RelationConfig::diagonal(4);
    assert_eq!(config.pairs.len(), 3);
    check_relation(
        "q-q k-k v-v, r=4, mask",
        2,
        (12, 8),
        &config,
        Some(&lengths),
    );
}

#[test]
fn chosen_pairs_match_reference() {
    let config = RelationConfig {
        relation_heads: 2,
        pairs: vec![
            (QkvPart::Query, QkvPart::Key),
            (QkvPart::Value, QkvPart::Query),
        ],
    };
    check_relation("q-k v-q, r=2", 1, (8, 12), &config, Some(&[4, 5]));
}

#[test]
fn default_config_is_all_nine_pairs() {
    let config = RelationConfig::default();
    assert_eq!(config.relation_heads, 1);
    assert_eq!(config.pairs, RelationConfig::all_pairs());
    assert_eq!(config.pairs.len(), 9);
    let mut seen = config.pairs.clone();
    seen.dedup();
    assert_eq!(seen.len(), 9);
}

/// Loss and student gradient for student and teacher projection values (teacher constant).
fn loss_and_grads(
    student: &[Tensor],
    teacher: &[Tensor],
    config: &RelationConfig,
    mask: Option<&AttentionMask>,
) -> (f32, Vec<Tensor>) {
    let g = Graph::new();
    let s: Vec<Var> = student.iter().map(|t| g.variable(t.clone())).collect();
    let t: Vec<Var> = teacher.iter().map(|t| g.constant(t.clone())).collect();
    let loss = attention_relation_loss(&g, &qkvs(&s), &qkvs(&t), config, mask).unwrap();
    g.backward(loss).unwrap();
    for &v in &t {
        assert!(
            g.grad(v).unwrap().is_none(),
            "a constant teacher got a gradient"
        );
    }
    let grads = s.iter().map(|&v| g.grad(v).unwrap().unwrap()).collect();
    (g.value(loss).unwrap().item().unwrap(), grads)
}

#[test]
fn perfect_student_has_zero_loss_and_gradient() {
    let x = projections(2, 12, 300);
    let mask = AttentionMask::from_lengths(&[3, 5], T).unwrap();
    for mask in [None, Some(&mask)] {
        let (loss, grads) = loss_and_grads(&x, &x, &RelationConfig::new(4), mask);
        assert!(loss.abs() <= 1e-6, "loss {loss}");
        for g in grads {
            assert!(g.data().iter().all(|v| v.abs() <= 1e-5), "{g:?}");
        }
    }
}

/// Overwrites the tokens `t >= length` of sample `b` of every `[B, T, W]` tensor.
fn scramble_padding(xs: &[Tensor], lengths: &[usize], seed: u64) -> Vec<Tensor> {
    xs.iter()
        .enumerate()
        .map(|(k, x)| {
            let w = x.shape()[2];
            let noise = randn(x.shape(), seed + k as u64).scale(10.0);
            let data = (0..x.numel())
                .map(|i| {
                    let (b, t) = (i / (T * w), i / w % T);
                    if t < lengths[b] {
                        x.data()[i]
                    } else {
                        noise.data()[i]
                    }
                })
                .collect();
            Tensor::from_vec(data, x.shape()).unwrap()
        })
        .collect()
}

#[test]
fn padding_changes_nothing() {
    let lengths = [5, 2];
    let mask = AttentionMask::from_lengths(&lengths, T).unwrap();
    let (s, t) = (projections(1, 8, 400), projections(1, 12, 500));
    let config = RelationConfig::new(2);
    let (loss, grads) = loss_and_grads(&s, &t, &config, Some(&mask));
    let (s2, t2) = (
        scramble_padding(&s, &lengths, 600),
        scramble_padding(&t, &lengths, 700),
    );
    let (loss2, grads2) = loss_and_grads(&s2, &t2, &config, Some(&mask));
    assert!((loss - loss2).abs() <= 1e-6, "{loss} vs {loss2}");
    for (g, g2) in grads.iter().zip(&grads2) {
        for (i, (&a, &b)) in g.data().iter().zip(g2.data()).enumerate() {
            let (bi, ti) = (i / (T * 8), i / 8 % T);
            if ti >= lengths[bi] {
                assert_eq!(a, 0.0, "padded token got a gradient");
            }
            assert!((a - b).abs() <= 1e-6, "gradient {i}: {a} vs {b}");
        }
    }
    // Without the mask the padding does matter: the test above can fail.
    let (unmasked, _) = loss_and_grads(&s, &t, &config, None);
    let (unmasked2, _) = loss_and_grads(&s2, &t2, &config, None);
    assert!((unmasked - unmasked2).abs() > 1e-3);
}

#[test]
fn from_attention_parts_undoes_scale_and_head_split() {
    let mut rng = Rng::new(7);
    let attn = MultiHeadAttention::new(12, 3, 0.0, "self", Init::Normal(0.5), &mut rng).unwrap();
    let g = Graph::new();
    let x = g.constant(Tensor::randn(&[B, T, 12], 0.0, 1.0, &mut rng));
    let parts = attn.forward_parts(&g, x, None, None).unwrap();
    let qkv = Qkv::from_attention_parts(&g, &parts).unwrap();
    let linears = [&attn.query, &attn.key, &attn.value];
    for (part, linear) in QkvPart::ALL.into_iter().zip(linears) {
        let want = g.value(linear.forward(&g, x).unwrap()).unwrap();
        let got = g.value(qkv.part(part)).unwrap();
        assert_eq!(got.shape(), &[B, T, 12]);
        for (&a, &b) in got.data().iter().zip(want.data()) {
            assert!(
                (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                "{part:?}: {a} vs {b}"
            );
        }
    }
    // Gradients reach the layer's weights through the merged projections.
    let teacher = Qkv {
        query: qkv.query,
        key: qkv.key,
        value: qkv.value,
    };
    let t = [teacher].map(|q| Qkv {
        query: g.constant(g.value(q.query).unwrap().scale(0.5)),
        key: g.constant(g.value(q.key).unwrap()),
        value: g.constant(g.value(q.value).unwrap()),
    });
    let loss = attention_relation_loss(&g, &[qkv], &t, &RelationConfig::new(3), None).unwrap();
    g.backward(loss).unwrap();
    assert!(attn.query.weight.grad().is_some());
}

#[test]
fn from_attention_parts_errors() {
    let g = Graph::new();
    let four = g.constant(Tensor::zeros(&[B, 2, T, 4]));
    let other = g.constant(Tensor::zeros(&[B, 2, T, 3]));
    let three = g.constant(Tensor::zeros(&[B, T, 8]));
    let parts = |query, key| AttentionParts {
        output: three,
        query,
        key,
        value: four,
        probs: four,
        context: four,
    };
    assert!(Qkv::from_attention_parts(&g, &parts(four, four)).is_ok());
    for bad in [parts(three, four), parts(four, other)] {
        assert!(matches!(
            Qkv::from_attention_parts(&g, &bad),
            Err(Error::Shape { .. })
        ));
    }
}

#[test]
fn errors() {
    let g = Graph::new();
    let make = |b: usize, t: usize, w: usize| {
        let v = g.constant(Tensor::zeros(&[b, t, w]));
        Qkv {
            query: v,
            key: v,
            value: v,
        }
    };
    let (s, t) = (make(B, T, 8), make(B, T, 12));
    let cfg = RelationConfig::new(2);
    let loss = |s: &[Qkv], t: &[Qkv], cfg: &RelationConfig, m: Option<&AttentionMask>| {
        attention_relation_loss(&g, s, t, cfg, m)
    };
    assert!(loss(&[s], &[t], &cfg, None).is_ok());
    // Mismatched T, B; a layer whose parts differ; not [B, T, W].
    assert!(matches!(
        loss(&[s], &[make(B, T + 1, 12)], &cfg, None),
        Err(Error::Shape { .. })
    ));
    assert!(matches!(
        loss(&[s], &[make(B + 1, T, 12)], &cfg, None),
        Err(Error::Shape { .. })
    ));
    let mixed = Qkv {
        key: make(B, T, 4).key,
        ..s
    };
    assert!(matches!(
        loss(&[mixed], &[t], &cfg, None),
        Err(Error::Shape { .. })
    ));
    let flat = g.constant(Tensor::zeros(&[B * T, 8]));
    let flat = Qkv {
        query: flat,
        key: flat,
        value: flat,
    };
    assert!(matches!(
        loss(&[flat], &[t], &cfg, None),
        Err(Error::Shape { .. })
    ));
    // r not dividing a width (8 and 12 are both multiples of 4, not of 3 or 8).
    for r in [0, 3, 8] {
        let cfg = RelationConfig::new(r);
        assert!(matches!(
            loss(&[s], &[t], &cfg, None),
            Err(Error::InvalidArgument { .. })
        ));
    }
    let none = RelationConfig {
        relation_heads: 2,
        pairs: vec![],
    };
    assert!(matches!(
        loss(&[s], &[t], &none, None),
        Err(Error::InvalidArgument { .. })
    ));
    // Layer counts.
    assert!(matches!(
        loss(&[s, s], &[t], &cfg, None),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        loss(&[], &[], &cfg, None),
        Err(Error::Empty { .. })
    ));
    // Masks of another shape, and with no valid token.
    let wrong = AttentionMask::from_lengths(&[1, 2, 3], T).unwrap();
    assert!(matches!(
        loss(&[s], &[t], &cfg, Some(&wrong)),
        Err(Error::Shape { .. })
    ));
    let empty = AttentionMask::from_lengths(&[0, 0], T).unwrap();
    assert!(matches!(
        loss(&[s], &[t], &cfg, Some(&empty)),
        Err(Error::Empty { .. })
    ));
}
