//! The physical shrink: the pruned model computes what the full model computes with the
//! removed heads and neurons masked, saves and loads, and lowers to int8.

use super::*;
use lithe::compress::prune::{PrunePlan, prune_bert, prune_vit};
use lithe::nn::{LayerRun, Module};

/// Head masks and neuron masks of `plan` as the full model's `LayerRun`s on `g`.
fn masked_runs(g: &Graph, encoder: &lithe::nn::Encoder, plan: &PrunePlan) -> Vec<LayerRun> {
    plan.masks(encoder)
        .unwrap()
        .into_iter()
        .enumerate()
        .map(|(layer, (h, n))| LayerRun {
            layer,
            heads: Some(g.constant(h)),
            neurons: Some(g.constant(n)),
        })
        .collect()
}

fn plan() -> PrunePlan {
    // Different heads and neurons in each layer, listed out of order.
    PrunePlan::new(
        vec![vec![3, 1], vec![0, 2]],
        vec![
            (0..40).filter(|j| j % 3 != 0).take(17).collect(),
            (0..40).rev().step_by(2).chain([1]).take(17).collect(),
        ],
    )
    .unwrap()
}

#[test]
fn shrunk_vit_equals_the_masked_vit() {
    let full = vit(2, 1);
    let plan = plan();
    let small = prune_vit(&full, &plan).unwrap();
    assert_eq!(small.config.num_attention_heads, 2);
    assert_eq!(small.config.intermediate_size, 17);
    assert_eq!(small.config.attention_head_size, Some(6));
    let x = images(5);
    let g = Graph::inference();
    let h = full.embeddings.forward(&g, g.constant(x.clone())).unwrap();
    let runs = masked_runs(&g, &full.encoder, &plan);
    let h = full.encoder.forward_subnet(&g, h, None, &runs).unwrap();
    let masked = g.value(full.logits_from_hidden(&g, h).unwrap()).unwrap();
    let shrunk = vit_logits(&small, &x);
    let err = max_rel(&shrunk, &masked);
    assert!(err <= 1e-5, "shrunk vs masked: {err}");
    // And the masks matter: the full model differs.
    assert!(max_rel(&vit_logits(&full, &x), &masked) > 1e-2);
    // Q/K/V lost half their rows, fc1 23 of its 40.
    let b = &small.blocks()[0];
    assert_eq!(b.attention.query.weight.shape(), vec![12, 24]);
    assert_eq!(b.attention.dense.weight.shape(), vec![24, 12]);
    assert_eq!(b.mlp.fc1.weight.shape(), vec![17, 24]);
    assert_eq!(b.mlp.fc2.weight.shape(), vec![24, 17]);
    assert!(small.num_params() < full.num_params());
}

#[test]
fn shrunk_bert_equals_the_masked_bert_with_padding() {
    let full = bert(2, 2);
    let plan = plan();
    let small = prune_bert(&full, &plan).unwrap();
    let (ids, shape, mask) = tokens();
    let g = Graph::inference();
    let x = full.embed(&g, &ids, shape, None).unwrap();
    let runs = masked_runs(&g, &full.encoder, &plan);
    let h = full
        .encoder
        .forward_subnet(&g, x, Some(&mask), &runs)
        .unwrap();
    let masked = g.value(full.classify(&g, h).unwrap()).unwrap();
    let g = Graph::inference();
    let l = small
        .forward_logits(&g, &ids, shape, None, Some(&mask))
        .unwrap();
    let shrunk = g.value(l).unwrap();
    let err = max_rel(&shrunk, &masked);
    assert!(err <= 1e-5, "shrunk vs masked: {err}");
}

/// The pruned model is an ordinary model: its config and weights round-trip through files,
/// and the int8 engine runs it (within int8 rounding of f32).
#[test]
fn pruned_vit_saves_loads_and_lowers_to_int8() {
    let full = vit(2, 3);
    let small = prune_vit(&full, &plan()).unwrap();
    let dir = std::env::temp_dir().join(format!("lithe-prune-{}", std::process::id()));
    train::save_run(&dir, &small, &small.config, None).unwrap();
    let config: VitConfig = lithe::io::load_config(dir.join("config.json")).unwrap();
    assert_eq!(config, small.config);
    let loaded = Vit::new(&config, &mut Rng::new(9)).unwrap();
    lithe::io::load_into_module(&loaded, dir.join("model.safetensors"), true).unwrap();
    let x = images(8);
    assert_eq!(
        vit_logits(&loaded, &x).data(),
        vit_logits(&small, &x).data()
    );
    std::fs::remove_dir_all(&dir).ok();

    use lithe::int8::{Input, QuantPlan, ToInt8};
    let engine = small.to_int8(&QuantPlan::dynamic()).unwrap();
    let mut ws = engine.workspace(8, engine.max_seq()).unwrap();
    let q = engine
        .forward(
            &mut ws,
            Input::Images {
                pixels: x.data(),
                batch: 8,
            },
        )
        .unwrap()
        .to_vec();
    let f = vit_logits(&small, &x);
    let dot: f32 = q.iter().zip(f.data()).map(|(a, b)| a * b).sum();
    let norm = |v: &[f32]| v.iter().map(|a| a * a).sum::<f32>().sqrt();
    let cosine = dot / (norm(&q) * norm(f.data()));
    assert!(cosine > 0.99, "int8 vs f32 cosine {cosine}");
}

#[test]
fn bad_plans_are_refused() {
    assert!(PrunePlan::new(vec![vec![0], vec![0, 1]], vec![vec![0], vec![0]]).is_err());
    assert!(PrunePlan::new(vec![vec![1, 1]], vec![vec![0]]).is_err());
    assert!(PrunePlan::new(vec![vec![]], vec![vec![0]]).is_err());
    assert!(PrunePlan::new(vec![vec![0]], vec![]).is_err());
    let full = vit(2, 4);
    // Head 4 of 4 heads, neuron 40 of 40, a plan for 3 layers.
    let head_out = PrunePlan::new(vec![vec![4], vec![0]], vec![vec![0], vec![0]]).unwrap();
    assert!(prune_vit(&full, &head_out).is_err());
    let neuron_out = PrunePlan::new(vec![vec![0], vec![0]], vec![vec![40], vec![0]]).unwrap();
    assert!(prune_vit(&full, &neuron_out).is_err());
    assert!(prune_vit(&full, &PrunePlan::first(3, 1, 1).unwrap()).is_err());
    assert!(PrunePlan::top(&[vec![1.0, 2.0]], &[vec![1.0]], 3, 1).is_err());
    // ALBERT's shared layers cannot lose different heads per layer.
    let shared = shared_bert();
    let err = prune_bert(&shared, &PrunePlan::first(2, 2, 20).unwrap()).unwrap_err();
    assert!(err.to_string().contains("share"), "{err}");
}

#[test]
fn top_keeps_the_highest_scores_in_their_original_order() {
    let plan = PrunePlan::top(
        &[vec![0.1, 0.9, 0.5, 0.7]],
        &[vec![3.0, 1.0, 2.0, 2.0, 0.0]],
        2,
        3,
    )
    .unwrap();
    assert_eq!(plan.heads(0), &[1, 3]);
    // 3.0 first, then the tied 2.0s at 2 and 3 (both fit in three).
    assert_eq!(plan.neurons(0), &[0, 2, 3]);
    let tie = PrunePlan::top(&[vec![1.0, 1.0, 1.0]], &[vec![1.0]], 1, 1).unwrap();
    assert_eq!(tie.heads(0), &[0]);
}
