//! BERT-of-Theseus (module replacement), the first-k-blocks baseline and text KD: forwards
//! against hand-built references, the schedule's maths, what training may and may not change.

use lithe::compress::distill::KdConfig;
use lithe::compress::theseus::{ReplaceSchedule, Theseus};
use lithe::data::Tokenizer;
use lithe::nn::{AttentionMask, Bert, BertConfig, Module};
use lithe::train::{self, TextSet, TrainOptions};
use lithe::{Graph, Rng, Tensor};

fn config(depth: usize) -> BertConfig {
    BertConfig {
        vocab_size: 16,
        hidden_size: 8,
        num_hidden_layers: depth,
        num_attention_heads: 2,
        intermediate_size: 12,
        max_position_embeddings: 16,
        hidden_dropout_prob: 0.1,
        attention_probs_dropout_prob: 0.1,
        ..BertConfig::default()
    }
}

/// A random BERT whose classifier weights are `N(0, 1)` instead of `N(0, 0.02^2)`, so logits
/// are O(1) and differences between forwards show.
fn bert(depth: usize, seed: u64) -> Bert {
    let b = Bert::new(&config(depth), &mut Rng::new(seed)).unwrap();
    b.classifier
        .weight
        .update(|w, _| w.data_mut().iter_mut().for_each(|x| *x *= 50.0));
    b
}

/// Ids `[2, 5]`, the second row padded after 3 tokens.
fn inputs() -> (Vec<usize>, [usize; 2], AttentionMask) {
    let ids = vec![2, 5, 9, 11, 3, 2, 7, 3, 0, 0];
    let mask = AttentionMask::from_lengths(&[5, 3], 5).unwrap();
    (ids, [2, 5], mask)
}

/// Logits of `bert` on [`inputs`], inference graph.
fn logits(bert: &Bert) -> Tensor {
    let (ids, shape, mask) = inputs();
    let g = Graph::inference();
    let y = bert
        .forward_logits(&g, &ids, shape, None, Some(&mask))
        .unwrap();
    g.value(y).unwrap()
}

fn theseus_logits(t: &Theseus, replace: &[bool]) -> Tensor {
    let (ids, shape, mask) = inputs();
    let g = Graph::inference();
    let y = t
        .forward_logits(&g, &ids, shape, None, Some(&mask), replace)
        .unwrap();
    g.value(y).unwrap()
}

/// Logits through `bert`'s embeddings and head with the given blocks in between.
fn logits_through(bert: &Bert, blocks: &[&lithe::nn::Block]) -> Tensor {
    let (ids, shape, mask) = inputs();
    let g = Graph::inference();
    let mut h = bert.embed(&g, &ids, shape, None).unwrap();
    let bias = Some(g.constant(mask.additive_bias()));
    for b in blocks {
        h = b.forward(&g, h, bias, None).unwrap();
    }
    let y = bert.classify(&g, h).unwrap();
    g.value(y).unwrap()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.shape(), b.shape());
    a.data()
        .iter()
        .zip(b.data())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn snapshot(m: &impl Module) -> Vec<(String, Tensor)> {
    m.named_params()
        .into_iter()
        .map(|(n, p)| (n, p.value()))
        .collect()
}

/// A tokenizer over a dozen words and a small labelled set (label = "good" in the text).
fn text_data() -> (Tokenizer, TextSet) {
    // One file per test thread: tests run in parallel and must not read a half-written file.
    let thread = format!("{:?}", std::thread::current().id());
    let name: String = thread.chars().filter(char::is_ascii_digit).collect();
    let dir =
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("theseus-vocab-{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    let words = "[PAD] [UNK] [CLS] [SEP] [MASK] the film was good bad very plot dull fine";
    std::fs::write(dir.join("vocab.txt"), words.replace(' ', "\n") + "\n").unwrap();
    let tok = Tokenizer::from_vocab(&dir.join("vocab.txt"), true).unwrap();
    let texts = [
        (1, "the film was good"),
        (0, "the film was bad"),
        (1, "very good plot"),
        (0, "very dull plot"),
        (1, "good fine film"),
        (0, "bad dull film"),
        (1, "the plot was very good"),
        (0, "the plot was very bad"),
    ];
    let rows = texts.iter().map(|&(l, t)| (l, t.to_string())).collect();
    (tok, TextSet::new(rows, 8))
}

fn opts(epochs: usize) -> TrainOptions {
    TrainOptions {
        epochs,
        batch_size: 4,
        lr: 1e-2,
        warmup_fraction: 0.0,
        seed: 3,
        ..TrainOptions::default()
    }
}

#[test]
fn schedule_is_min_of_one_and_linear_growth() {
    let s = ReplaceSchedule::Linear {
        slope: 0.1,
        base: 0.3,
    };
    s.validate().unwrap();
    for (t, p) in [(0, 0.3), (1, 0.4), (4, 0.7), (10, 1.0), (1000, 1.0)] {
        assert!(
            (s.rate_at(t) - p).abs() < 1e-12,
            "p({t}) = {}",
            s.rate_at(t)
        );
    }
    let c = ReplaceSchedule::Constant(0.5);
    c.validate().unwrap();
    assert_eq!(c.rate_at(0), 0.5);
    assert_eq!(c.rate_at(12345), 0.5);
    // k = (1 - b) / steps: halfway at steps / 2, 1 at the end.
    let r = ReplaceSchedule::reaching_one(0.3, 10).unwrap();
    assert!((r.rate_at(5) - 0.65).abs() < 1e-12);
    assert!((r.rate_at(10) - 1.0).abs() < 1e-12);
    assert!(r.rate_at(9) < 1.0);
}

#[test]
fn schedule_rejects_bad_rates() {
    for bad in [
        ReplaceSchedule::Constant(1.5),
        ReplaceSchedule::Constant(-0.1),
        ReplaceSchedule::Constant(f64::NAN),
        ReplaceSchedule::Linear {
            slope: 0.1,
            base: 1.2,
        },
        ReplaceSchedule::Linear {
            slope: -0.1,
            base: 0.3,
        },
        ReplaceSchedule::Linear {
            slope: f64::INFINITY,
            base: 0.3,
        },
        ReplaceSchedule::Linear {
            slope: f64::NAN,
            base: 0.3,
        },
    ] {
        assert!(bad.validate().is_err(), "{bad:?} accepted");
    }
    assert!(ReplaceSchedule::reaching_one(0.3, 0).is_err());
    assert!(ReplaceSchedule::reaching_one(2.0, 10).is_err());
}

#[test]
fn new_rejects_bad_successor_counts() {
    for n in [0, 4, 5, 7] {
        assert!(Theseus::new(bert(6, 1), n).is_err(), "{n} successors of 6");
    }
    let t = Theseus::new(bert(6, 1), 3).unwrap();
    assert_eq!((t.num_successors(), t.group_size()), (3, 2));
    let one = Theseus::new(bert(6, 1), 6).unwrap();
    assert_eq!(one.group_size(), 1);
    // One decision per module.
    let (ids, shape, mask) = inputs();
    let g = Graph::inference();
    assert!(
        t.forward_logits(&g, &ids, shape, None, Some(&mask), &[true, false])
            .is_err()
    );
}

#[test]
fn all_replaced_is_the_successor_none_replaced_the_predecessor() {
    let pred = bert(6, 7);
    let want_pred = logits(&pred);
    let t = Theseus::new(pred.clone(), 3).unwrap();
    // p = 0: the predecessor unchanged.
    assert_eq!(theseus_logits(&t, &[false; 3]).data(), want_pred.data());
    // p = 1: the extracted successor, and the shared view of it.
    let succ = t.successor().unwrap();
    assert_eq!(succ.config.num_hidden_layers, 3);
    assert_eq!(succ.blocks().len(), 3);
    let all = theseus_logits(&t, &[true; 3]);
    assert!(max_diff(&all, &logits(&succ)) <= 1e-6);
    assert!(max_diff(&all, &logits(&t.successor_view())) <= 1e-6);
    // The successor starts as the predecessor's first 3 blocks, which is not the predecessor.
    let b = pred.blocks();
    assert!(max_diff(&all, &logits_through(&pred, &[&b[0], &b[1], &b[2]])) <= 1e-6);
    assert!(max_diff(&all, &want_pred) > 1e-4);
    // Mixed: module i replaces predecessor blocks 2i, 2i + 1.
    let s = t.successor_blocks();
    let mixed = theseus_logits(&t, &[true, false, true]);
    let want = logits_through(&pred, &[&s[0], &b[2], &b[3], &s[2]]);
    assert!(max_diff(&mixed, &want) <= 1e-6);
}

/// An ALBERT-style predecessor (factorized embedding, one block shared by all layers): the
/// embedding's E -> H mapping runs in every forward, and the successor keeps it but shares no
/// block.
#[test]
fn albert_predecessor_keeps_its_embedding_mapping() {
    let config = BertConfig {
        embedding_size: Some(4),
        num_hidden_groups: Some(1),
        ..config(4)
    };
    let pred = Bert::new(&config, &mut Rng::new(3)).unwrap();
    let t = Theseus::new(pred.clone(), 2).unwrap();
    assert_eq!(theseus_logits(&t, &[false; 2]).data(), logits(&pred).data());
    let succ = t.successor().unwrap();
    assert!(succ.embedding_mapping.is_some());
    assert_eq!(succ.config.num_hidden_groups, None);
    assert!(!succ.blocks()[0].shares_weights_with(&succ.blocks()[1]));
    assert!(max_diff(&theseus_logits(&t, &[true; 2]), &logits(&succ)) <= 1e-6);
}

#[test]
fn successor_is_independent_of_the_predecessor() {
    let pred = bert(4, 2);
    let t = Theseus::new(pred.clone(), 2).unwrap();
    let succ = t.successor().unwrap();
    let pred_params = pred.named_params();
    for (name, p) in succ.named_params() {
        assert!(p.requires_grad(), "{name} frozen in the successor");
        assert!(
            pred_params.iter().all(|(_, q)| !p.same_as(q)),
            "{name} shares storage with the predecessor"
        );
    }
    let before = logits(&pred);
    for (_, p) in succ.named_params() {
        p.update(|v, _| v.data_mut().iter_mut().for_each(|x| *x += 1.0));
    }
    assert_eq!(logits(&pred).data(), before.data());
}

#[test]
fn sampler_draws_bernoulli_decisions() {
    let t = Theseus::new(bert(4, 1), 4).unwrap();
    let mut rng = Rng::new(5);
    assert_eq!(t.sample_replacements(1.0, &mut rng), vec![true; 4]);
    assert_eq!(t.sample_replacements(0.0, &mut rng), vec![false; 4]);
    let draws = |seed| {
        let mut rng = Rng::new(seed);
        (0..500)
            .flat_map(|_| t.sample_replacements(0.3, &mut rng))
            .collect::<Vec<_>>()
    };
    let a = draws(11);
    assert_eq!(a, draws(11));
    assert_ne!(a, draws(12));
    let rate = a.iter().filter(|&&r| r).count() as f64 / a.len() as f64;
    // 2000 draws: the standard deviation of the rate is ~0.01.
    assert!((rate - 0.3).abs() < 0.04, "rate {rate}");
}

#[test]
fn replacement_training_changes_only_the_successor() {
    let (tok, data) = text_data();
    let pred = bert(4, 4);
    let t = Theseus::new(pred.clone(), 2).unwrap();
    for (name, p) in pred.named_params() {
        assert!(!p.requires_grad(), "{name} not frozen");
    }
    let pred_before = snapshot(&pred);
    let succ_before = snapshot(&t.successor().unwrap());
    let o = TrainOptions {
        max_steps: Some(2),
        ..opts(1)
    };
    // p = 0.5: both the predecessor groups and the successor blocks take part.
    let run = train::train_theseus(
        &t,
        &tok,
        &data,
        &data,
        &o,
        ReplaceSchedule::Constant(0.5),
        None,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(run.replacement.epochs.len(), 1);
    assert!(run.replacement.epochs[0].train_loss.is_finite());
    assert!(run.fine_tune.epochs.is_empty());
    // Phase 1 evaluates the successor (every module replaced).
    let acc = train::evaluate_bert(&run.successor, &tok, &data).unwrap();
    assert_eq!(run.replacement.final_accuracy(), acc);
    for ((name, before), (_, p)) in pred_before.iter().zip(pred.named_params()) {
        assert!(p.grad().is_none(), "{name} got a gradient");
        assert_eq!(before.data(), p.value().data(), "{name} changed");
    }
    // Successor blocks moved; the shared embeddings and head did not.
    for ((name, before), (_, after)) in succ_before.iter().zip(snapshot(&run.successor)) {
        let moved = max_diff(before, &after) > 0.0;
        assert_eq!(
            moved,
            name.starts_with("encoder."),
            "{name}: moved = {moved}"
        );
    }
}

#[test]
fn theseus_training_is_reproducible_and_fine_tunes_the_successor() {
    let (tok, data) = text_data();
    let run = || {
        let t = Theseus::new(bert(4, 4), 2).unwrap();
        let schedule = ReplaceSchedule::Linear {
            slope: 0.2,
            base: 0.3,
        };
        train::train_theseus(
            &t,
            &tok,
            &data,
            &data,
            &opts(2),
            schedule,
            Some(&opts(1)),
            &mut |_| {},
        )
        .unwrap()
    };
    let (a, b) = (run(), run());
    assert_eq!(a.replacement.epochs.len(), 2);
    assert_eq!(a.fine_tune.epochs.len(), 1);
    assert_eq!(a.successor.blocks().len(), 2);
    for ((name, x), (_, y)) in snapshot(&a.successor).iter().zip(snapshot(&b.successor)) {
        assert_eq!(x.data(), y.data(), "{name} differs between seeded runs");
    }
}

#[test]
fn first_layers_keeps_the_first_blocks() {
    let full = bert(5, 8);
    for k in [1, 3, 5] {
        let small = train::first_layers(&full, k).unwrap();
        assert_eq!(small.config.num_hidden_layers, k);
        let blocks: Vec<_> = full.blocks()[..k].iter().collect();
        assert!(max_diff(&logits(&small), &logits_through(&full, &blocks)) <= 1e-6);
        let full_params = full.named_params();
        for (name, p) in small.named_params() {
            assert!(
                full_params.iter().all(|(_, q)| !p.same_as(q)),
                "{name} shared"
            );
        }
    }
    assert!(train::first_layers(&full, 0).is_err());
    assert!(train::first_layers(&full, 6).is_err());
}

#[test]
fn kd_training_moves_the_student_only() {
    let (tok, data) = text_data();
    let teacher = bert(4, 9);
    let student = train::first_layers(&teacher, 2).unwrap();
    let (t_before, s_before) = (snapshot(&teacher), snapshot(&student));
    let h = train::train_bert_kd(
        &student,
        &teacher,
        &tok,
        (&data, &data),
        &opts(1),
        &KdConfig {
            temperature: 2.0,
            alpha: 0.5,
        },
        &mut |_| {},
    )
    .unwrap();
    assert!(h.epochs[0].train_loss.is_finite() && h.epochs[0].train_loss > 0.0);
    for ((name, before), (_, after)) in t_before.iter().zip(snapshot(&teacher)) {
        assert_eq!(before.data(), after.data(), "teacher {name} changed");
    }
    let moved = s_before
        .iter()
        .zip(snapshot(&student))
        .filter(|((_, b), (_, a))| max_diff(b, a) > 0.0)
        .count();
    assert_eq!(moved, s_before.len(), "only {moved} student tensors moved");
}

#[test]
fn kd_rejects_bad_arguments() {
    let (tok, data) = text_data();
    let teacher = bert(2, 1);
    let student = train::first_layers(&teacher, 1).unwrap();
    let o = opts(1);
    let kd = |s: &Bert, t: &Bert, temp: f32, alpha: f32| {
        let kd = KdConfig {
            temperature: temp,
            alpha,
        };
        train::train_bert_kd(s, t, &tok, (&data, &data), &o, &kd, &mut |_| {})
    };
    assert!(kd(&student, &teacher, 2.0, 1.5).is_err());
    assert!(kd(&student, &teacher, 2.0, -0.1).is_err());
    assert!(kd(&student, &teacher, 0.0, 0.5).is_err());
    assert!(kd(&student, &teacher, f32::NAN, 0.5).is_err());
    let three = Bert::new(
        &BertConfig {
            num_labels: 3,
            ..config(1)
        },
        &mut Rng::new(0),
    )
    .unwrap();
    assert!(kd(&three, &teacher, 2.0, 0.5).is_err());
}

#[test]
fn steps_without_replacement_leave_the_predecessor_alone() {
    let (tok, data) = text_data();
    let pred = bert(2, 6);
    let t = Theseus::new(pred.clone(), 1).unwrap();
    let before = snapshot(&pred);
    // p = 0: no successor block ever runs; the steps still go through.
    let run = train::train_theseus(
        &t,
        &tok,
        &data,
        &data,
        &opts(1),
        ReplaceSchedule::Constant(0.0),
        None,
        &mut |_| {},
    )
    .unwrap();
    assert!(run.replacement.epochs[0].train_loss.is_finite());
    for ((name, b), (_, a)) in before.iter().zip(snapshot(&pred)) {
        assert_eq!(b.data(), a.data(), "{name} changed");
    }
}
