//! Post-training calibration, the plans, the errors.

use super::{bert_config, check_engine, vit_config};
use lithe::compress::qat::{self, QatConfig, QatMode};
use lithe::int8::{ActQuant, Input, symmetric_scale};
use lithe::nn::{AttentionMask, Bert, Module, Vit};
use lithe::train::ImageSet;
use lithe::{Graph, Rng, Tensor};

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
    let modes = ["static", "qat", "ptq", "dynamic"].map(|m| m.parse::<QatMode>().unwrap());
    assert_eq!(
        modes,
        [
            QatMode::Static,
            QatMode::Static,
            QatMode::Ptq,
            QatMode::Dynamic
        ]
    );
    assert!("int4".parse::<QatMode>().is_err());

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

#[test]
fn ptq_bert_calibrates_on_texts() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("compress-qat-vocab");
    std::fs::create_dir_all(&dir).unwrap();
    let words = "[PAD] [UNK] [CLS] [SEP] [MASK] the a cat dog sat on mat big red";
    std::fs::write(dir.join("vocab.txt"), words.replace(' ', "\n") + "\n").unwrap();
    let tok = lithe::data::Tokenizer::from_vocab(&dir.join("vocab.txt"), true).unwrap();
    let texts = ["the cat sat", "a big red dog sat on the mat", "red dog"];
    let rows = texts
        .iter()
        .enumerate()
        .map(|(i, t)| (i % 3, t.to_string()));
    let data = lithe::train::TextSet::new(rows.collect(), 12);
    let bert = Bert::new(&bert_config(), &mut Rng::new(9)).unwrap();
    let engine = qat::ptq_bert(&bert, &tok, &data, 2, None).unwrap();
    assert!(!qat::is_prepared(&bert));
    // By hand: the calibrated model's forward is the engine's, on the tokenized texts.
    let enc = tok.encode_batch(&texts, 12).unwrap();
    let (lengths, shape) = (enc.lengths(), [enc.batch, enc.seq]);
    let mask = AttentionMask::from_lengths(&lengths, enc.seq).unwrap();
    let eval = || {
        let g = Graph::inference();
        let y = bert.forward_logits(&g, &enc.ids_usize(), shape, None, Some(&mask));
        g.value(y.unwrap()).unwrap()
    };
    qat::prepare_qat(&bert, &QatConfig::ptq()).unwrap();
    qat::calibrate_bert(&bert, &tok, &data, 2, None).unwrap();
    let want = eval();
    let mut ws = engine.workspace(enc.batch, enc.seq).unwrap();
    let input = Input::Tokens {
        ids: &enc.ids,
        batch: enc.batch,
        seq: enc.seq,
        lengths: Some(&lengths),
    };
    let got = engine.forward(&mut ws, input).unwrap();
    qat::strip_qat(&bert);
    check_engine("bert PTQ", got, &want, &eval());
}
