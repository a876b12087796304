//! Quantization-aware training and post-training quantization (`lithe::compress::qat`): the
//! fake-quantized Linear against its formula, the observers' update rules, calibration, the
//! plans, and the contract that a QAT model's forward equals the int8 engine's.

use lithe::compress::qat::{self, QatConfig, QatMode};
use lithe::int8::{ActQuant, Input, symmetric_scale};
use lithe::kernels::quantize::{
    dequantize_per_row, dequantize_per_tensor, quantize_per_row, quantize_per_tensor,
};
use lithe::nn::{
    AttentionMask, Bert, BertConfig, Init, InputQuant, Linear, LinearQuant, Module, Vit, VitConfig,
};
use lithe::train::ImageSet;
use lithe::{AdamW, AdamWConfig, CrossEntropyOptions, Graph, Optimizer, Param, Rng, Tensor};

fn vit_config() -> VitConfig {
    VitConfig {
        image_size: 8,
        patch_size: 4,
        num_channels: 1,
        hidden_size: 16,
        num_hidden_layers: 2,
        num_attention_heads: 2,
        intermediate_size: 32,
        num_labels: 4,
        layer_norm_eps: 1e-6,
        hidden_dropout_prob: 0.0,
        distillation_token: false,
    }
}

fn bert_config() -> BertConfig {
    BertConfig {
        vocab_size: 23,
        hidden_size: 16,
        num_hidden_layers: 2,
        num_attention_heads: 2,
        intermediate_size: 24,
        hidden_act: "gelu".into(),
        max_position_embeddings: 16,
        type_vocab_size: 2,
        layer_norm_eps: 1e-12,
        hidden_dropout_prob: 0.0,
        attention_probs_dropout_prob: 0.0,
        num_labels: 3,
    }
}

fn max_abs(x: &[f32]) -> f32 {
    x.iter().fold(0.0, |m, v| m.max(v.abs()))
}

/// `y = x_q W_q^T + b` in f64 from the kernels' quantizers: per-tensor (`Some(scale)`) or
/// per-row (`None`) input, per-row weight.
fn manual_linear(x: &Tensor, lin: &Linear, x_scale: Option<f32>) -> Vec<f64> {
    let (w, b) = (lin.weight.value(), lin.bias.as_ref().unwrap().value());
    let (out, inp) = (lin.out_features(), lin.in_features());
    let rows = x.numel() / inp;
    let mut qx = vec![0i8; x.numel()];
    let mut xd = vec![0.0f32; x.numel()];
    match x_scale {
        Some(s) => {
            quantize_per_tensor(x.data(), s, &mut qx).unwrap();
            dequantize_per_tensor(&qx, s, &mut xd).unwrap();
        }
        None => {
            let mut s = vec![0.0; rows];
            quantize_per_row(x.data(), inp, &mut qx, &mut s).unwrap();
            dequantize_per_row(&qx, inp, &s, &mut xd).unwrap();
        }
    }
    let (mut qw, mut sw, mut wd) = (vec![0i8; w.numel()], vec![0.0; out], vec![0.0; w.numel()]);
    quantize_per_row(w.data(), inp, &mut qw, &mut sw).unwrap();
    dequantize_per_row(&qw, inp, &sw, &mut wd).unwrap();
    let mut y = vec![0.0f64; rows * out];
    for r in 0..rows {
        for n in 0..out {
            let dot: f64 = (0..inp)
                .map(|k| xd[r * inp + k] as f64 * wd[n * inp + k] as f64)
                .sum();
            y[r * out + n] = dot + b.data()[n] as f64;
        }
    }
    y
}

/// The int8 engine's arithmetic for a per-tensor input scale `s_x`: exact i32 dot products of
/// the quantized values, then `s_x * s_w[n] * acc + b[n]` in f32.
fn integer_linear(x: &Tensor, lin: &Linear, s_x: f32) -> Vec<f64> {
    let (w, b) = (lin.weight.value(), lin.bias.as_ref().unwrap().value());
    let (out, inp) = (lin.out_features(), lin.in_features());
    let mut qx = vec![0i8; x.numel()];
    quantize_per_tensor(x.data(), s_x, &mut qx).unwrap();
    let (mut qw, mut sw) = (vec![0i8; w.numel()], vec![0.0f32; out]);
    quantize_per_row(w.data(), inp, &mut qw, &mut sw).unwrap();
    let mut y = Vec::new();
    for xr in qx.chunks_exact(inp) {
        for (n, wr) in qw.chunks_exact(inp).enumerate() {
            let acc: i32 = xr.iter().zip(wr).map(|(&a, &b)| a as i32 * b as i32).sum();
            y.push((s_x * sw[n] * acc as f32 + b.data()[n]) as f64);
        }
    }
    y
}

fn max_diff(got: &[f32], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len());
    got.iter()
        .zip(want)
        .map(|(&a, &b)| (a as f64 - b).abs())
        .fold(0.0, f64::max)
}

fn test_linear(seed: u64) -> (Linear, Tensor) {
    let mut rng = Rng::new(seed);
    let lin = Linear::new(7, 5, true, Init::Normal(0.5), &mut rng);
    let bias = lin.bias.as_ref().unwrap();
    bias.set_value(Tensor::randn(&[5], 0.0, 1.0, &mut rng))
        .unwrap();
    let x = Tensor::randn(&[2, 3, 7], 0.0, 2.0, &mut rng); // [B, T, in]
    (lin, x)
}

#[test]
fn qat_linear_forward_is_the_quantized_formula() {
    let (lin, x) = test_linear(1);
    let y_f32 = {
        let g = Graph::inference();
        g.value(lin.forward(&g, g.constant(x.clone())).unwrap())
            .unwrap()
    };
    lin.set_quant(Some(LinearQuant::new(InputQuant::Ema { decay: 0.9 })));
    // A training step observes the input first (the first observation is the range itself).
    let g = Graph::new();
    let y = g
        .value(lin.forward(&g, g.constant(x.clone())).unwrap())
        .unwrap();
    assert_eq!(y.shape(), &[2, 3, 5]);
    assert_eq!(lin.quant().unwrap().range, Some(max_abs(x.data())));
    let want = manual_linear(&x, &lin, Some(symmetric_scale(max_abs(x.data()))));
    let d = max_diff(y.data(), &want);
    assert!(d < 1e-5, "training forward differs from the formula by {d}");
    // The same up to f32 rounding as the engine's integer arithmetic.
    let d = max_diff(
        y.data(),
        &integer_linear(&x, &lin, symmetric_scale(max_abs(x.data()))),
    );
    assert!(
        d < 1e-5,
        "training forward differs from the integer formula by {d}"
    );
    // The inference path (no gradients: normally the packed f32 weight) agrees too.
    let g = Graph::inference();
    let y_inf = g
        .value(lin.forward(&g, g.constant(x.clone())).unwrap())
        .unwrap();
    let d = max_diff(y_inf.data(), &want);
    assert!(
        d < 1e-5,
        "inference forward differs from the formula by {d}"
    );
    // And the quantization is really there: the f32 layer differs by far more.
    let d = max_diff(y_f32.data(), &want);
    assert!(d > 1e-3, "f32 and quantized forwards agree to {d}");
    // Removing the state brings the f32 layer back exactly.
    lin.set_quant(None);
    let g = Graph::inference();
    let back = g.value(lin.forward(&g, g.constant(x)).unwrap()).unwrap();
    assert_eq!(back.data(), y_f32.data());
}

#[test]
fn dynamic_linear_quantizes_each_row() {
    let (lin, x) = test_linear(2);
    lin.set_quant(Some(LinearQuant::new(InputQuant::Dynamic)));
    let want = manual_linear(&x, &lin, None);
    for g in [Graph::new(), Graph::inference()] {
        let y = g
            .value(lin.forward(&g, g.constant(x.clone())).unwrap())
            .unwrap();
        let d = max_diff(y.data(), &want);
        assert!(d < 1e-5, "dynamic forward differs from the formula by {d}");
    }
    assert_eq!(
        lin.quant().unwrap().range,
        None,
        "dynamic layers observe nothing"
    );
}

#[test]
fn ema_follows_the_update_rule_only_on_training_graphs() {
    let (lin, x) = test_linear(3);
    let decay = 0.9f32;
    lin.set_quant(Some(LinearQuant::new(InputQuant::Ema { decay })));
    let mut want: Option<f32> = None;
    for factor in [1.0, 3.0, 0.5, 2.0] {
        let xs = x.scale(factor);
        let m = max_abs(xs.data());
        want = Some(want.map_or(m, |r| decay * r + (1.0 - decay) * m));
        let g = Graph::new(); // a training step: the weight's gradient is recorded
        let y = lin.forward(&g, g.constant(xs)).unwrap();
        let loss = g.sum_all(g.mul(y, y).unwrap()).unwrap();
        g.backward(loss).unwrap();
        let got = lin.quant().unwrap().range.unwrap();
        let want = want.unwrap();
        assert!(
            (got - want).abs() <= 1e-6 * want,
            "factor {factor}: range {got}, expected {want}"
        );
    }
    let before = lin.quant().unwrap().range;
    // Inference graphs, no-grad sections and eval-mode graphs leave the range alone.
    let big = x.scale(10.0);
    let g = Graph::inference();
    lin.forward(&g, g.constant(big.clone())).unwrap();
    let g = Graph::new();
    g.no_grad(|| lin.forward(&g, g.constant(big.clone())).unwrap());
    g.set_training(false);
    lin.forward(&g, g.constant(big)).unwrap();
    assert_eq!(lin.quant().unwrap().range, before);
}

/// Images whose batch `i` (of 4 images) has largest pixel `maxima[i]`.
fn graded_images(maxima: &[f32], side: usize) -> ImageSet {
    let mut rng = Rng::new(9);
    let mut pixels = Vec::new();
    for &m in maxima {
        let mut batch: Vec<f32> = (0..4 * side * side).map(|_| m * rng.next_f32()).collect();
        batch[5] = m;
        pixels.extend(batch);
    }
    ImageSet {
        pixels,
        labels: vec![0; 4 * maxima.len()],
        channels: 1,
        side,
    }
}

#[test]
fn ptq_calibration_takes_the_max_over_batches_in_f32() {
    let vit = Vit::new(&vit_config(), &mut Rng::new(4)).unwrap();
    let data = graded_images(&[0.5, 2.0, 3.0], 8);
    let (x, _) = data.batch(&(0..4).collect::<Vec<_>>()).unwrap();
    let f32_logits = {
        let g = Graph::inference();
        g.value(vit.forward_logits(&g, g.constant(x.clone())).unwrap())
            .unwrap()
    };
    qat::prepare_qat(&vit, &QatConfig::ptq()).unwrap();
    // Calibration computes in f32 (observers only).
    let during = qat::calibrate(&vit, || {
        let g = Graph::inference();
        g.value(vit.forward_logits(&g, g.constant(x.clone()))?)
    })
    .unwrap();
    assert_eq!(during.data(), f32_logits.data());
    let proj = "embeddings.patch_embeddings.projection";
    let range_of = |name: &str| {
        qat::linear_states(&vit)
            .into_iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, q)| q.unwrap().range)
    };
    assert_eq!(range_of(proj), Some(0.5));
    // Two batches: the larger maximum wins; a new calibration starts afresh.
    qat::calibrate_vit(&vit, &data, 4, Some(2)).unwrap();
    assert_eq!(range_of(proj), Some(2.0));
    qat::calibrate_vit(&vit, &data, 4, None).unwrap();
    assert_eq!(range_of(proj), Some(3.0));
    let plan = qat::quant_plan(&vit).unwrap();
    assert_eq!(plan.get(proj), ActQuant::Static(symmetric_scale(3.0)));
    let mut n = 0;
    vit.visit_linears(&mut |name, _| {
        n += 1;
        assert!(
            matches!(plan.acts.get(name), Some(ActQuant::Static(s)) if *s > 0.0),
            "{name}: {:?}",
            plan.acts.get(name)
        );
    });
    assert_eq!(plan.acts.len(), n);
    // After calibration the model fake-quantizes: its logits move away from f32.
    let g = Graph::inference();
    let q = g
        .value(vit.forward_logits(&g, g.constant(x.clone())).unwrap())
        .unwrap();
    assert_ne!(q.data(), f32_logits.data());
    // ... and the engine with the calibrated scales computes the same.
    let run = |engine: &lithe::int8::Int8Model| {
        let mut ws = engine.workspace(4, engine.max_seq()).unwrap();
        let input = Input::Images {
            pixels: x.data(),
            batch: 4,
        };
        engine.forward(&mut ws, input).unwrap().to_vec()
    };
    let got = run(&qat::convert(&vit).unwrap());
    check_engine("vit PTQ", &got, &q, &f32_logits);
    // ptq_vit does it all in one call (the same batches) and leaves the model in f32.
    assert_eq!(run(&qat::ptq_vit(&vit, &data, 4, None).unwrap()), got);
    assert!(!qat::is_prepared(&vit));
}

#[test]
fn dynamic_plan_and_errors() {
    let vit = Vit::new(&vit_config(), &mut Rng::new(5)).unwrap();
    assert!(
        qat::quant_plan(&vit).is_err(),
        "an unprepared model has no plan"
    );
    assert!(qat::calibrate(&vit, || Ok(())).is_err());
    let bad = QatConfig {
        ema_decay: 1.0,
        mode: QatMode::Static,
    };
    assert!(qat::prepare_qat(&vit, &bad).is_err());

    qat::prepare_qat(&vit, &QatConfig::default()).unwrap();
    assert!(qat::is_prepared(&vit));
    let err = qat::quant_plan(&vit).unwrap_err().to_string();
    assert!(err.contains("never observed"), "{err}");
    let g = Graph::inference();
    let x = g.constant(Tensor::zeros(&[1, 1, 8, 8]));
    assert!(
        vit.forward_logits(&g, x).is_err(),
        "static layer without a range"
    );
    assert!(
        qat::calibrate(&vit, || Ok(())).is_err(),
        "a calibration that runs nothing"
    );

    qat::prepare_qat(&vit, &QatConfig::dynamic()).unwrap();
    let plan = qat::quant_plan(&vit).unwrap();
    assert!(!plan.acts.is_empty());
    assert!(plan.acts.values().all(|a| *a == ActQuant::Dynamic));

    qat::strip_qat(&vit);
    assert!(!qat::is_prepared(&vit));
    assert!(qat::linear_states(&vit).iter().all(|(_, q)| q.is_none()));
}

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

/// The acceptance check: `engine` logits within 1e-3 of the QAT model's, and the f32 model's
/// (the same weights, QAT state removed) much further away, so the comparison can tell.
fn check_engine(what: &str, engine: &[f32], qat_logits: &Tensor, f32_logits: &Tensor) {
    let wide = |t: &Tensor| t.data().iter().map(|&v| v as f64).collect::<Vec<_>>();
    let d = max_diff(engine, &wide(qat_logits));
    let d32 = max_diff(engine, &wide(f32_logits));
    eprintln!("{what}: max |int8 - QAT| logit difference {d:e}, |int8 - f32| {d32:e}");
    assert!(d <= 1e-3, "{what}: QAT and int8 logits differ by {d}");
    assert!(
        d32 > 10.0 * d,
        "{what}: f32 is as close as QAT: {d32} vs {d}"
    );
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
