//! QAT steps on a tiny Vit and Bert, then the int8 engine: the acceptance test; fine-tuning.

use super::{bert_config, check_engine, vit_config};
use lithe::compress::qat::{self, QatConfig};
use lithe::int8::Input;
use lithe::nn::{AttentionMask, Bert, Module, Vit, VitConfig};
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

#[test]
fn finetune_vit_trains_with_fake_quantization() {
    let (train_set, test_set) = lithe::train::digits_split(3).unwrap();
    let c = VitConfig {
        num_labels: 10,
        ..vit_config()
    };
    let vit = Vit::new(&c, &mut Rng::new(8)).unwrap();
    let opts = lithe::train::TrainOptions {
        epochs: 1,
        batch_size: 32,
        max_steps: Some(3),
        ..Default::default()
    };
    assert!(
        qat::finetune_vit(
            &vit,
            &train_set,
            &test_set,
            &QatConfig::ptq(),
            &opts,
            &mut |_| {}
        )
        .is_err(),
        "PTQ does not train"
    );
    let mut steps = 0;
    let history = qat::finetune_vit(
        &vit,
        &train_set,
        &test_set,
        &QatConfig::default(),
        &opts,
        &mut |e| steps += matches!(e, lithe::train::Event::Step { .. }) as usize,
    )
    .unwrap();
    assert_eq!((steps, history.epochs.len()), (3, 1));
    // Every layer observed its input during the training steps (and only then).
    let states = qat::linear_states(&vit);
    assert!(
        states
            .iter()
            .all(|(_, q)| q.unwrap().range.is_some_and(|r| r > 0.0))
    );
    assert!(qat::quant_plan(&vit).is_ok());
}
