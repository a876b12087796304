//! Elastic width and depth: reordering preserves the function, sub-networks cut out equal the
//! supernet run at that width and depth, DynaBERT's layer rule, and a short supernet run.

use super::*;
use lithe::compress::elastic::{
    ElasticConfig, Subnet, extract_bert, extract_vit, reorder_by_importance, subnet_layers,
    subnet_runs,
};
use lithe::compress::prune::Importance;
use lithe::nn::Module;
use lithe::train::TrainOptions;

fn random_importance(layers: usize, heads: usize, inner: usize, seed: u64) -> Importance {
    let mut rng = Rng::new(seed);
    Importance {
        heads: (0..layers)
            .map(|_| (0..heads).map(|_| rng.next_f32()).collect())
            .collect(),
        neurons: (0..layers)
            .map(|_| (0..inner).map(|_| rng.next_f32()).collect())
            .collect(),
    }
}

#[test]
fn reordering_heads_and_neurons_changes_nothing_computed() {
    let mut v = vit(2, 1);
    let x = images(6);
    let before = vit_logits(&v, &x);
    reorder_by_importance(&mut v.encoder, &random_importance(2, 4, 40, 3)).unwrap();
    let after = vit_logits(&v, &x);
    assert!(max_rel(&after, &before) <= 1e-5);
    // Scores must cover every head and neuron.
    let short = Importance {
        heads: vec![vec![1.0; 2]; 2],
        neurons: vec![vec![1.0; 40]; 2],
    };
    assert!(reorder_by_importance(&mut v.encoder, &short).is_err());
}

/// Every sub-network of the grid, cut out, computes what the supernet computes through
/// `forward_subnet` at that width and depth.
#[test]
fn extracted_subnets_equal_the_supernet_at_their_width_and_depth() {
    let v = vit(4, 2);
    let x = images(5);
    let config = ElasticConfig::default();
    for subnet in config.subnets() {
        let g = Graph::inference();
        let runs = subnet_runs(&g, &v.encoder, subnet).unwrap();
        let h = v.embeddings.forward(&g, g.constant(x.clone())).unwrap();
        let h = v.encoder.forward_subnet(&g, h, None, &runs).unwrap();
        let supernet = g.value(v.logits_from_hidden(&g, h).unwrap()).unwrap();
        let small = extract_vit(&v, subnet).unwrap();
        let err = max_rel(&vit_logits(&small, &x), &supernet);
        assert!(err <= 1e-5, "{}: {err}", subnet.name());
        let (layers, heads, inner) = (
            small.blocks().len(),
            small.config.num_attention_heads,
            small.config.intermediate_size,
        );
        assert_eq!(layers, Subnet::count(subnet.depth, 4));
        assert_eq!(heads, Subnet::count(subnet.width, 4));
        assert_eq!(inner, Subnet::count(subnet.width, 40));
    }
    let full = extract_vit(&v, Subnet::FULL).unwrap();
    assert_eq!(vit_logits(&full, &x).data(), vit_logits(&v, &x).data());
}

#[test]
fn extracted_bert_subnet_equals_the_supernet() {
    let b = bert(4, 3);
    let subnet = Subnet {
        width: 0.5,
        depth: 0.75,
    };
    let (ids, shape, mask) = tokens();
    let g = Graph::inference();
    let runs = subnet_runs(&g, &b.encoder, subnet).unwrap();
    let h = b.embed(&g, &ids, shape, None).unwrap();
    let h = b.encoder.forward_subnet(&g, h, Some(&mask), &runs).unwrap();
    let supernet = g.value(b.classify(&g, h).unwrap()).unwrap();
    let small = extract_bert(&b, subnet).unwrap();
    assert_eq!(small.config.num_hidden_layers, 3);
    let g = Graph::inference();
    let l = small
        .forward_logits(&g, &ids, shape, None, Some(&mask))
        .unwrap();
    assert!(max_rel(&g.value(l).unwrap(), &supernet) <= 1e-5);
}

#[test]
fn depth_keeps_layers_spread_as_dynabert_does() {
    assert_eq!(subnet_layers(12, 1.0), (0..12).collect::<Vec<_>>());
    // DynaBERT drops every other layer at half depth and layers 3, 7, 11 at 3/4.
    assert_eq!(subnet_layers(12, 0.5), vec![0, 2, 4, 6, 8, 10]);
    assert_eq!(subnet_layers(12, 0.75), vec![0, 1, 2, 4, 5, 6, 8, 9, 10]);
    assert_eq!(subnet_layers(6, 0.5), vec![0, 2, 4]);
    assert_eq!(subnet_layers(1, 0.5), vec![0]);
    assert_eq!(Subnet::count(0.01, 4), 1);
}

#[test]
fn bad_elastic_settings_are_refused() {
    for bad in [
        ElasticConfig {
            widths: vec![],
            ..ElasticConfig::default()
        },
        ElasticConfig {
            depths: vec![1.5],
            ..ElasticConfig::default()
        },
        ElasticConfig {
            widths: vec![0.0],
            ..ElasticConfig::default()
        },
        ElasticConfig {
            temperature: 0.0,
            ..ElasticConfig::default()
        },
    ] {
        assert!(bad.validate().is_err(), "{bad:?}");
    }
    let v = vit(2, 0);
    let g = Graph::inference();
    assert!(
        subnet_runs(
            &g,
            &v.encoder,
            Subnet {
                width: 1.2,
                depth: 1.0
            }
        )
        .is_err()
    );
    let (tr, te) = small_digits(16);
    let opts = TrainOptions {
        epochs: 1,
        batch_size: 8,
        ..TrainOptions::default()
    };
    let bad = ElasticConfig {
        widths: vec![2.0],
        ..ElasticConfig::default()
    };
    assert!(train::train_vit_ofa(&v, &tr, &te, &opts, &bad, &mut |_| {}).is_err());
}

/// A short supernet run from a trained ViT: finite losses, the full model still accurate, and
/// the half-width sub-network far better than chance.
#[test]
fn supernet_training_keeps_narrow_subnets_working() {
    let v = Vit::new(&vit_config(2), &mut Rng::new(5)).unwrap();
    let (tr, te) = small_digits(512);
    let opts = TrainOptions {
        epochs: 15,
        batch_size: 32,
        lr: 3e-3,
        ..TrainOptions::default()
    };
    train::train_vit(&v, &tr, &te, &opts, &mut |_| {}).unwrap();
    let imp = train::vit_importance(&v, &tr, 64, 512).unwrap();
    let mut v = v;
    reorder_by_importance(&mut v.encoder, &imp).unwrap();
    let h = train::train_vit_ofa(
        &v,
        &tr,
        &te,
        &TrainOptions {
            epochs: 8,
            lr: 1e-3,
            ..opts
        },
        &ElasticConfig::default(),
        &mut |_| {},
    )
    .unwrap();
    assert!(h.epochs.iter().all(|e| e.train_loss.is_finite()));
    let half = extract_vit(
        &v,
        Subnet {
            width: 0.5,
            depth: 1.0,
        },
    )
    .unwrap();
    let acc_half = train::evaluate_vit(&half, &te).unwrap();
    let acc_full = train::evaluate_vit(&v, &te).unwrap();
    println!("supernet: full {acc_full:.3}, half width {acc_half:.3}");
    assert!(acc_full > 0.7, "{acc_full}");
    assert!(acc_half > 0.6, "{acc_half}");
    assert!(half.num_params() < v.num_params());
}
