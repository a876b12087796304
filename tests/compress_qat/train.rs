//! QAT steps on a tiny Vit and Bert, then the int8 engine: the acceptance test; fine-tuning.

use super::{bert_config, check_engine, vit_config};
use lithe::compress::qat::{self, QatConfig};
use lithe::int8::Input;
use lithe::nn::{AttentionMask, Bert, Module, Vit, VitConfig};
use lithe::train::{self, ImageSet, TrainOptions};
use lithe::{AdamW, AdamWConfig, CrossEntropyOptions, Graph, Optimizer, Param, Rng, Tensor};

/// A few QAT steps of AdamW on `loss_of`.
fn qat_steps(params: Vec<Param>, steps: u64, loss_of: impl Fn(&Graph) -> lithe::Var) {
    let cfg = AdamWConfig {
        lr: 1e-2,
        ..AdamWConfig::default()
    };
    let mut opt = AdamW::new(params, cfg).unwrap();
    for step in 0..steps {
        opt.zero_grad();
        let g = Graph::with_seed(step);
        let loss = loss_of(&g);
        g.backward(loss).unwrap();
        opt.step().unwrap();
    }
}

fn params_of(m: &impl Module) -> Vec<Param> {
    m.named_params().into_iter().map(|(_, p)| p).collect()
}

#[test]
fn qat_vit_forward_equals_the_int8_engine() {
    let vit = Vit::new(&vit_config(), &mut Rng::new(6)).unwrap();
    let mut rng = Rng::new(60);
    let (b, shape) = (6, [6, 1, 8, 8]);
    let x = Tensor::uniform(&shape, 0.0, 1.0, &mut rng);
    let y: Vec<usize> = (0..b).map(|i| i % 4).collect();
    let logits = || {
        let g = Graph::inference();
        g.value(vit.forward_logits(&g, g.constant(x.clone())).unwrap())
            .unwrap()
    };
    for mode in [QatConfig::default(), QatConfig::dynamic()] {
        qat::prepare_qat(&vit, &mode).unwrap();
        qat_steps(params_of(&vit), 4, |g| {
            let logits = vit.forward_logits(g, g.constant(x.clone())).unwrap();
            g.cross_entropy(logits, &y, &CrossEntropyOptions::default())
                .unwrap()
        });
        let want = logits();
        let engine = qat::convert(&vit).unwrap();
        let mut ws = engine.workspace(b, engine.max_seq()).unwrap();
        let input = Input::Images {
            pixels: x.data(),
            batch: b,
        };
        let got = engine.forward(&mut ws, input).unwrap();
        qat::strip_qat(&vit);
        check_engine(&format!("vit {:?}", mode.mode), got, &want, &logits());
    }
}

#[test]
fn qat_bert_forward_equals_the_int8_engine() {
    let bert = Bert::new(&bert_config(), &mut Rng::new(7)).unwrap();
    let (b, t) = (4, 9);
    let lengths = [9, 5, 7, 2];
    let mut rng = Rng::new(70);
    let ids: Vec<usize> = (0..b * t)
        .map(|i| {
            let (row, col) = (i / t, i % t);
            if col < lengths[row] {
                1 + (rng.next_f32() * 22.0) as usize % 22
            } else {
                0
            }
        })
        .collect();
    let ids32: Vec<u32> = ids.iter().map(|&i| i as u32).collect();
    let mask = AttentionMask::from_lengths(&lengths, t).unwrap();
    let y = [0, 1, 2, 1];
    let logits = |g: &Graph| {
        bert.forward_logits(g, &ids, [b, t], None, Some(&mask))
            .unwrap()
    };
    let eval = || {
        let g = Graph::inference();
        g.value(logits(&g)).unwrap()
    };
    for mode in [QatConfig::default(), QatConfig::dynamic()] {
        qat::prepare_qat(&bert, &mode).unwrap();
        qat_steps(params_of(&bert), 4, |g| {
            g.cross_entropy(logits(g), &y, &CrossEntropyOptions::default())
                .unwrap()
        });
        let want = eval();
        let engine = qat::convert(&bert).unwrap();
        let mut ws = engine.workspace(b, t).unwrap();
        let input = Input::Tokens {
            ids: &ids32,
            batch: b,
            seq: t,
            lengths: Some(&lengths),
        };
        let got = engine.forward(&mut ws, input).unwrap();
        qat::strip_qat(&bert);
        check_engine(&format!("bert {:?}", mode.mode), got, &want, &eval());
    }
}

/// Accuracy of the int8 engine on `data`, in batches of 128.
fn int8_accuracy(engine: &lithe::int8::Int8Model, data: &ImageSet) -> f64 {
    let mut ws = engine.workspace(128, engine.max_seq()).unwrap();
    let rows: Vec<usize> = (0..data.len()).collect();
    let mut correct = 0;
    for chunk in rows.chunks(128) {
        let (x, y) = data.batch(chunk).unwrap();
        let input = Input::Images {
            pixels: x.data(),
            batch: chunk.len(),
        };
        let logits = engine.forward(&mut ws, input).unwrap();
        let classes = logits.len() / chunk.len();
        for (row, &t) in logits.chunks_exact(classes).zip(&y) {
            let best = (0..classes).max_by(|&a, &b| row[a].total_cmp(&row[b]));
            correct += usize::from(best == Some(t));
        }
    }
    correct as f64 / data.len() as f64
}

#[test]
fn digits_ptq_and_qat_keep_the_f32_accuracy_in_int8() {
    let (train_set, test_set) = train::digits_split(42).unwrap();
    let c = VitConfig {
        hidden_size: 32,
        num_attention_heads: 4,
        intermediate_size: 64,
        num_labels: 10,
        ..vit_config()
    };
    let vit = Vit::new(&c, &mut Rng::new(7)).unwrap();
    let opts = TrainOptions {
        epochs: 20,
        lr: 3e-3,
        seed: 8,
        ..TrainOptions::default()
    };
    train::train_vit(&vit, &train_set, &test_set, &opts, &mut |_| {}).unwrap();
    let f32_acc = train::evaluate_vit(&vit, &test_set).unwrap();
    assert!(f32_acc > 0.85, "f32 accuracy {f32_acc}");

    let ptq = qat::ptq_vit(&vit, &train_set, 64, Some(8)).unwrap();
    let ptq_acc = int8_accuracy(&ptq, &test_set);

    let fine = TrainOptions {
        epochs: 2,
        lr: 3e-4,
        warmup_fraction: 0.0,
        ..opts
    };
    let ptq_mode = QatConfig::ptq();
    let no_progress = &mut |_: train::Event| {};
    assert!(qat::finetune_vit(&vit, &train_set, &test_set, &ptq_mode, &fine, no_progress).is_err());
    let config = QatConfig::default();
    let history = qat::finetune_vit(&vit, &train_set, &test_set, &config, &fine, no_progress);
    let qat_acc = history.unwrap().final_accuracy(); // of the fake-quantized model
    let int8_acc = int8_accuracy(&qat::convert(&vit).unwrap(), &test_set);
    eprintln!(
        "digits: f32 {f32_acc:.4}, PTQ int8 {ptq_acc:.4}, QAT (fake-quant) {qat_acc:.4}, \
         QAT int8 {int8_acc:.4}"
    );
    assert!(ptq_acc >= f32_acc - 0.03, "PTQ {ptq_acc} vs f32 {f32_acc}");
    assert!(
        int8_acc >= f32_acc - 0.03,
        "QAT int8 {int8_acc} vs f32 {f32_acc}"
    );
    // The engine predicts what the QAT model predicts (up to a near-tie or two).
    assert!(
        (int8_acc - qat_acc).abs() <= 0.006,
        "{int8_acc} vs {qat_acc}"
    );
}
