//! DynamicViT token dropping in the int8 engine against the f32 gathered forward
//! (`DynamicVit::forward_gather`): keep ratio 1 is the plain lowered ViT bit for bit; with
//! dropping, the kept token sets and the logits match the f32 model within the int8 error
//! (plain ViT and DeiT); no allocation in the forward; bad inputs are errors.

use super::*;
use lithe::compress::tokendrop::{DynamicVit, GatherOutput, TokenDropConfig};

/// 8x8 single-channel images in 2x2 patches: N = 16 patch tokens, 4 blocks, stages before blocks
/// 1, 2 and 3.
fn drop_config(distillation_token: bool) -> VitConfig {
    VitConfig {
        image_size: 8,
        patch_size: 2,
        num_channels: 1,
        hidden_size: 32,
        num_hidden_layers: 4,
        num_attention_heads: 4,
        intermediate_size: 64,
        num_labels: 5,
        layer_norm_eps: 1e-6,
        hidden_dropout_prob: 0.0,
        distillation_token,
        attention_head_size: None,
    }
}

/// Every parameter redrawn from N(0, 0.3^2) (as the f32 DynamicViT tests do), so token scores
/// are far from ties.
fn scramble(m: &impl Module, seed: u64) {
    let mut rng = Rng::new(seed);
    for (_, p) in m.named_params() {
        let shape = p.shape();
        let n: usize = shape.iter().product();
        let data = (0..n).map(|_| (rng.normal() * 0.3) as f32).collect();
        p.set_value(Tensor::from_vec(data, &shape).unwrap())
            .unwrap();
    }
}

pub(super) fn dynamic_vit(keep_ratio: f32, distillation_token: bool, seed: u64) -> DynamicVit {
    let mut rng = Rng::new(seed);
    let vit = Vit::new(&drop_config(distillation_token), &mut rng).unwrap();
    let td = TokenDropConfig {
        stages: vec![1, 2, 3],
        keep_ratio,
    };
    let m = DynamicVit::new(vit, &td, &mut rng).unwrap();
    scramble(&m, seed + 100);
    m
}

pub(super) fn drop_images(batch: usize, seed: u64) -> Tensor {
    Tensor::randn(&[batch, 1, 8, 8], 0.0, 1.0, &mut Rng::new(seed))
}

fn f32_gather(m: &DynamicVit, x: &Tensor) -> (Vec<f32>, Vec<f32>, GatherOutput) {
    let g = Graph::inference();
    let out = m.forward_gather(&g, g.constant(x.clone())).unwrap();
    let logits = g.value(out.logits).unwrap().data().to_vec();
    let features = g.value(out.features).unwrap().data().to_vec();
    (logits, features, out)
}

#[test]
fn keep_ratio_one_is_the_plain_vit_bit_for_bit() {
    for dist in [false, true] {
        let m = dynamic_vit(1.0, dist, 10);
        let dropping = Int8Model::from_dynamic_vit(&m, &QuantPlan::dynamic()).unwrap();
        let plain = Int8Model::from_vit(&m.vit, &QuantPlan::dynamic()).unwrap();
        assert_eq!(dropping.drop_stages(), vec![(1, 16), (2, 16), (3, 16)]);
        assert!(plain.drop_stages().is_empty());
        let x = drop_images(5, 11);
        let input = Input::Images {
            pixels: x.data(),
            batch: 5,
        };
        let mut ws = dropping.workspace(5, 0).unwrap();
        let mut plain_ws = plain.workspace(5, 0).unwrap();
        let a = dropping.forward(&mut ws, input).unwrap().to_vec();
        let b = plain.forward(&mut plain_ws, input).unwrap().to_vec();
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&a), bits(&b), "distillation token {dist}");
        let a = dropping.hidden(&mut ws, input).unwrap().to_vec();
        let b = plain.hidden(&mut plain_ws, input).unwrap().to_vec();
        assert_eq!(bits(&a), bits(&b), "hidden, distillation token {dist}");
        // Every token kept, in order.
        let all: Vec<usize> = (0..5).flat_map(|_| 0..16).collect();
        assert_eq!(dropping.kept_positions(&ws, 2).unwrap(), &all[..]);
    }
}

/// Per stage, the int8 engine's kept positions against the f32 model's: (identical
/// selections, selections).
fn selections_agree(m: &Int8Model, ws: &Workspace, f32_out: &GatherOutput) -> (usize, usize) {
    let (mut same, mut total) = (0, 0);
    for (s, per_sample) in f32_out.kept.iter().enumerate() {
        let k = per_sample[0].len();
        let ours = m.kept_positions(ws, s).unwrap();
        assert_eq!(ours.len(), per_sample.len() * k);
        for (b, want) in per_sample.iter().enumerate() {
            let got = &ours[b * k..(b + 1) * k];
            assert!(
                got.windows(2).all(|w| w[0] < w[1]),
                "not ascending: {got:?}"
            );
            same += usize::from(got == &want[..]);
            total += 1;
        }
    }
    (same, total)
}

/// The int8 engine against the f32 gathered forward on 96 images.
///
/// Selections. The predictors run in f32 and score exactly as the f32 model's (the unit test of
/// `int8::tokendrop` checks scores, choices and compaction on the same tokens), so the engine
/// keeps another token only where the int8 backbone's error (about 1% of the features' norm,
/// the plain ViT tests' 5% bound on the logits being its upper end) moves two scores around the
/// k-th best past each other. Sixteen scores spread over order one leave gaps of a few hundredths
/// around the boundary, so a few percent of selections per stage flip, and a flip at one stage
/// carries into the next: on 960 images of these models 90% of (stage, sample) selections are
/// identical. At least 80% must be here (96 images: 288 selections, over three standard
/// deviations of the sample-to-sample spread below 90%), and at least 70% of the samples must
/// agree at every stage (85% on the 960 images). A wrong score, order or compaction
/// leaves far fewer: a random choice of 12 of 16 tokens matches with probability 1/1820.
/// Logits and features: a sample whose selections all agree ran the same computation as the
/// f32 model in int8, within the plain ViT's 5% (Frobenius-relative); a sample that swapped a
/// low-margin token differs little more, so the whole batch's logits stay within 5% too.
fn matches_f32_gather(dist: bool, seed: u64) {
    let m = dynamic_vit(0.7, dist, seed);
    assert_eq!(m.keep_counts(), vec![12, 8, 6]);
    let q = Int8Model::from_dynamic_vit(&m, &QuantPlan::dynamic()).unwrap();
    assert_eq!(q.drop_stages(), vec![(1, 12), (2, 8), (3, 6)]);
    let batch = 96;
    let x = drop_images(batch, seed + 1);
    let (want, want_features, f32_out) = f32_gather(&m, &x);
    let input = Input::Images {
        pixels: x.data(),
        batch,
    };
    let mut ws = q.workspace(batch, 0).unwrap();
    let got = q.forward(&mut ws, input).unwrap().to_vec();
    let (same, total) = selections_agree(&q, &ws, &f32_out);
    assert!(
        same * 10 >= total * 8,
        "distillation token {dist}: {same} of {total} selections identical"
    );
    let classes = 5;
    let err = rel_err(&got, &want);
    assert!(
        err < 5e-2,
        "distillation token {dist}: logits rel err {err}"
    );
    // Samples whose every selection agrees.
    let agree: Vec<usize> = (0..batch)
        .filter(|&b| {
            (0..3).all(|s| {
                let k = f32_out.kept[s][b].len();
                let ours = &q.kept_positions(&ws, s).unwrap()[b * k..(b + 1) * k];
                ours == &f32_out.kept[s][b][..]
            })
        })
        .collect();
    assert!(
        agree.len() * 10 >= batch * 7,
        "{} samples agree",
        agree.len()
    );
    let pick = |v: &[f32], width: usize| -> Vec<f32> {
        agree
            .iter()
            .flat_map(|&b| v[b * width..(b + 1) * width].to_vec())
            .collect()
    };
    let err = rel_err(&pick(&got, classes), &pick(&want, classes));
    assert!(
        err < 5e-2,
        "distillation token {dist}: agreeing logits rel err {err}"
    );
    // The hidden states: the kept tokens after the last stage, as the f32 features.
    let p = 1 + usize::from(dist);
    let width = (p + 6) * 32;
    let hidden = q.hidden(&mut ws, input).unwrap().to_vec();
    assert_eq!(hidden.len(), batch * width);
    assert_eq!(want_features.len(), batch * width);
    let err = rel_err(&pick(&hidden, width), &pick(&want_features, width));
    assert!(
        err < 5e-2,
        "distillation token {dist}: features rel err {err}"
    );
}

#[test]
fn dropping_matches_the_f32_gathered_forward() {
    matches_f32_gather(false, 20);
}

#[test]
fn dropping_matches_the_f32_gathered_forward_with_distillation_token() {
    matches_f32_gather(true, 30);
}

#[test]
fn dropping_forward_allocates_nothing() {
    let _guard = THREADS.lock().unwrap_or_else(|e| e.into_inner());
    lithe_kernels::threads::set_num_threads(1);
    let q = dynamic_vit(0.6, true, 40)
        .to_int8(&QuantPlan::dynamic())
        .unwrap();
    let x = drop_images(3, 41);
    let mut ws = q.workspace(4, 0).unwrap();
    let input = Input::Images {
        pixels: x.data(),
        batch: 3,
    };
    // Warm-up: the kernels' thread-local packing buffers grow once.
    q.forward(&mut ws, input).unwrap();
    q.embed(&mut ws, input, Pooling::Mean).unwrap();
    let n = allocations_in(|| {
        q.forward(&mut ws, input).unwrap();
        q.hidden(&mut ws, input).unwrap();
        q.embed(&mut ws, input, Pooling::Mean).unwrap();
        q.kept_positions(&ws, 2).unwrap();
    });
    assert_eq!(n, 0, "token-dropping Vit allocated {n} times");
}

#[test]
fn dropping_bad_inputs_are_errors() {
    let m = dynamic_vit(0.7, false, 50);
    let q = Int8Model::from_dynamic_vit(&m, &QuantPlan::dynamic()).unwrap();
    let mut ws = q.workspace(2, 0).unwrap();
    // No forward has run yet: nothing to inspect.
    assert!(matches!(
        q.kept_positions(&ws, 0),
        Err(Error::InvalidArgument { .. })
    ));
    let pixels = vec![0.5f32; 2 * 64];
    // A pixel short, and a batch over the workspace's.
    for (pixels, batch) in [(&pixels[..127], 2), (&pixels[..], 3)] {
        let input = Input::Images { pixels, batch };
        assert!(matches!(
            q.forward(&mut ws, input),
            Err(Error::Shape { .. })
        ));
    }
    let input = Input::Images {
        pixels: &pixels,
        batch: 2,
    };
    q.forward(&mut ws, input).unwrap();
    assert_eq!(q.kept_positions(&ws, 2).unwrap().len(), 2 * 6);
    assert!(matches!(
        q.kept_positions(&ws, 3),
        Err(Error::InvalidArgument { .. })
    ));
    // A workspace of the backbone alone does not serve the dropping model, nor the reverse.
    let plain = Int8Model::from_vit(&m.vit, &QuantPlan::dynamic()).unwrap();
    let mut plain_ws = plain.workspace(2, 0).unwrap();
    assert!(matches!(
        q.forward(&mut plain_ws, input),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        plain.forward(&mut ws, input),
        Err(Error::InvalidArgument { .. })
    ));
    // A predictor short of the stages.
    let mut short = m.clone();
    short.predictors.pop();
    assert!(matches!(
        Int8Model::from_dynamic_vit(&short, &QuantPlan::dynamic()),
        Err(Error::InvalidArgument { .. })
    ));
}

#[test]
fn dropping_model_saves_and_loads_bit_exact() {
    use super::io::{RawFile, temp_path};
    let q = dynamic_vit(0.7, true, 60)
        .to_int8(&QuantPlan::dynamic())
        .unwrap();
    let good = temp_path("dynamicvit.safetensors");
    q.save(&good).unwrap();
    let loaded = Int8Model::load(&good).unwrap();
    assert_eq!(loaded.drop_stages(), q.drop_stages());
    assert_eq!(loaded.weight_bytes(), q.weight_bytes());
    let x = drop_images(4, 61);
    let input = Input::Images {
        pixels: x.data(),
        batch: 4,
    };
    let mut ws = q.workspace(4, 0).unwrap();
    let mut loaded_ws = loaded.workspace(4, 0).unwrap();
    let a = q.forward(&mut ws, input).unwrap().to_vec();
    let b = loaded.forward(&mut loaded_ws, input).unwrap().to_vec();
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&a), bits(&b));
    for s in 0..3 {
        assert_eq!(
            q.kept_positions(&ws, s).unwrap(),
            loaded.kept_positions(&loaded_ws, s).unwrap()
        );
    }

    // Malformed stages: a missing predictor tensor, a predictor of the wrong width, stages out
    // of order or keeping more than the stage before, metadata that is not a stage list.
    let bad = temp_path("dynamicvit-bad.safetensors");
    let load_rewritten = |edit: &dyn Fn(&mut RawFile)| {
        let mut raw = RawFile::read(&good);
        edit(&mut raw);
        raw.write(&bad);
        Int8Model::load(&bad)
    };
    let r = load_rewritten(&|raw| {
        raw.tensors
            .retain(|t| t.0 != "score_predictor.2.out_conv.4.weight")
    });
    assert!(
        matches!(&r, Err(Error::MissingTensor { name }) if name == "score_predictor.2.out_conv.4.weight"),
        "{r:?}"
    );
    let r = load_rewritten(&|raw| {
        let t = raw.tensor("score_predictor.0.in_conv.1.weight");
        t.2 = vec![32, 31];
        t.3.truncate(32 * 31 * 4);
    });
    assert!(matches!(&r, Err(Error::TensorShape { .. })), "{r:?}");
    let stages = |list: &str| {
        let list = list.to_string();
        load_rewritten(&move |raw| {
            raw.metadata.insert("token_drop".into(), list.clone());
        })
    };
    let eps = 1e-5f32.to_bits();
    let stage = |block: usize, keep: usize| {
        format!(r#"{{"block":{block},"keep":{keep},"norm_eps_bits":{eps}}}"#)
    };
    for (list, what) in [
        (
            format!("[{},{},{}]", stage(2, 12), stage(1, 8), stage(3, 6)),
            "order",
        ),
        (
            format!("[{},{},{}]", stage(1, 12), stage(2, 13), stage(3, 6)),
            "keep",
        ),
        (
            format!("[{},{},{}]", stage(1, 12), stage(2, 8), stage(4, 6)),
            "depth",
        ),
    ] {
        let r = stages(&list);
        assert!(
            matches!(&r, Err(Error::InvalidArgument { .. })),
            "{what}: {r:?}"
        );
    }
    assert!(matches!(&stages("{oops"), Err(Error::Format { .. })));
    assert!(matches!(
        &stages(r#"[{"block":1}]"#),
        Err(Error::Format { .. })
    ));
    // Fewer stages than predictors: the third predictor's tensors are unexpected.
    let two = format!("[{},{}]", stage(1, 12), stage(2, 8));
    assert!(matches!(&stages(&two), Err(Error::UnexpectedTensor { .. })));
    assert!(load_rewritten(&|_| {}).is_ok());
}
