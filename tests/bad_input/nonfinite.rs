//! NaN and infinity. The contract, API by API:
//! - f32 forward passes (tensor ops, layers, models) propagate NaN through IEEE arithmetic and
//!   never panic; a caller checks with `Tensor::check_finite` where it wants an error.
//! - Hyper-parameters (learning rates, temperatures, sparsities, scales) must be finite: an
//!   error otherwise.
//! - Training stops with an error at the first non-finite loss; `backward` refuses a non-finite
//!   loss; gradient clipping refuses a non-finite norm.
//! - Quantization refuses non-finite weights and scales; the int8 engine refuses non-finite
//!   input pixels; pruning refuses non-finite weights and importance scores.

use super::*;
use lithe::compress::distill::{KdConfig, SparseLogits, soft_kd};
use lithe::compress::prune::{MagnitudePruner, PrunePlan, PruneScope};
use lithe::int8::{ActQuant, Int8Linear, QuantPlan, ToInt8};
use lithe::nn::{Init, Linear, Module};
use lithe::optim::{WarmupCosine, clip_grad_norm};
use lithe::train::{TrainOptions, train_vit};
use lithe::{AdamW, AdamWConfig, Error, GeluKind, Graph, Optimizer, Param, Sgd, SgdConfig, tensor};

fn with_nan(t: &Tensor, at: usize, v: f32) -> Tensor {
    let mut t = t.clone();
    t.data_mut()[at] = v;
    t
}

#[test]
fn f32_forwards_propagate_nan_without_panicking() {
    let mut p = Probe::default();
    let x = with_nan(&randn(&[2, 3, 8], 1), 5, f32::NAN);
    let inf = with_nan(&randn(&[2, 3, 8], 2), 7, f32::INFINITY);
    for (what, t) in [("nan", &x), ("inf", &inf)] {
        p.no_panic(what, || tensor::softmax(t), |r| r.is_ok());
        p.no_panic(what, || tensor::log_softmax(t), |r| r.is_ok());
        p.no_panic(what, || tensor::gelu(t, GeluKind::Tanh), |r| r.is_ok());
        p.no_panic(what, || tensor::gelu(t, GeluKind::Erf), |r| r.is_ok());
        p.no_panic(what, || tensor::sum(t, &[1], false), |r| r.is_ok());
        p.no_panic(
            what,
            || tensor::layernorm(t, &Tensor::ones(&[8]), &Tensor::zeros(&[8]), 1e-5),
            |r| r.is_ok(),
        );
        p.no_panic(
            what,
            || tensor::attention(t, t, t, 2, 0.5, None),
            |r| r.is_ok(),
        );
        p.no_panic(
            what,
            || tensor::matmul_t(t, &randn(&[4, 8], 3)),
            |r| r.is_ok(),
        );
        p.expect(
            what,
            || t.check_finite("check"),
            |e| matches!(e, Error::NonFinite { .. }),
        );
    }
    // The NaN reaches the output of the models, which still return Ok.
    let g = Graph::inference();
    let vit = tiny_vit();
    let images = with_nan(&randn(&[2, 1, 8, 8], 4), 9, f32::NAN);
    p.no_panic(
        "Vit forward",
        || {
            vit.forward_logits(&g, g.constant(images.clone()))
                .and_then(|y| g.value(y))
        },
        |r| {
            r.as_ref()
                .is_ok_and(|y| y.data().iter().any(|v| v.is_nan()))
        },
    );
    let bert = tiny_bert();
    let (_, emb) = bert
        .named_params()
        .into_iter()
        .find(|(n, _)| n.ends_with("word_embeddings.weight"))
        .unwrap();
    emb.set_value(with_nan(&emb.value(), 16 * 3, f32::NAN))
        .unwrap();
    p.no_panic(
        "Bert forward",
        || {
            bert.forward_logits(&g, &[3, 1, 2, 1], [2, 2], None, None)
                .and_then(|y| g.value(y))
        },
        |r| {
            r.as_ref()
                .is_ok_and(|y| y.data()[..3].iter().all(|v| v.is_nan()))
        },
    );
    p.finish("f32 forwards");
}

#[test]
fn non_finite_hyper_parameters_and_losses_are_errors() {
    let mut p = Probe::default();
    let w = Param::new(randn(&[3, 2], 10));
    for bad in [f64::NAN, f64::INFINITY, -1.0] {
        p.rejects("AdamW lr", || {
            AdamW::new(
                vec![w.clone()],
                AdamWConfig {
                    lr: bad,
                    ..AdamWConfig::default()
                },
            )
        });
        p.rejects("Sgd lr", || {
            Sgd::new(
                vec![w.clone()],
                SgdConfig {
                    lr: bad,
                    ..SgdConfig::default()
                },
            )
        });
        p.rejects("set_lr", || {
            let mut o = AdamW::new(vec![w.clone()], AdamWConfig::default())?;
            o.set_lr(bad)
        });
        p.rejects("WarmupCosine", || WarmupCosine::new(bad, 0.0, 1, 10));
    }
    // An infinite bound is a valid "no clipping"; NaN and negative ones are not.
    for bad in [f64::NAN, -1.0] {
        p.rejects("clip max_norm", || {
            clip_grad_norm(std::slice::from_ref(&w), bad)
        });
    }
    let g = Graph::new();
    let s = g.variable(randn(&[2, 3], 11));
    for t in [f32::NAN, f32::INFINITY, 0.0] {
        p.rejects("soft_kd temperature", || soft_kd(&g, s, s, t));
        p.rejects("KdConfig temperature", || {
            KdConfig {
                temperature: t,
                ..KdConfig::default()
            }
            .validate()
        });
        p.rejects("SparseLogits temperature", || SparseLogits::new(3, 2, t));
    }
    p.rejects("KdConfig alpha", || {
        KdConfig {
            alpha: f32::NAN,
            ..KdConfig::default()
        }
        .validate()
    });
    p.rejects("SparseLogits NaN logits", || {
        let mut sl = SparseLogits::new(3, 2, 1.0)?;
        sl.push_logits(&[0.1, f32::NAN, 0.3])
    });
    // Gradients: a NaN gradient is refused by clipping, and a NaN loss by backward.
    let q = Param::new(randn(&[2], 12));
    let loss = g
        .sum_all(
            g.mul(
                g.param(&q),
                g.constant(Tensor::from_vec(vec![f32::NAN, 1.0], &[2]).unwrap()),
            )
            .unwrap(),
        )
        .unwrap();
    p.rejects("backward NaN loss", || g.backward(loss));
    // Training stops at the first non-finite loss.
    let vit = tiny_vit();
    let mut pixels = vec![0.5f32; 4 * 64];
    pixels[70] = f32::NAN;
    let set = images(pixels, vec![0, 1, 2, 0]);
    let opts = one_epoch();
    p.rejects("train_vit NaN pixel", || {
        train_vit(&vit, &set, &set, &opts, &mut |_| {})
    });
    p.rejects("train_vit NaN lr", || {
        let opts = TrainOptions {
            lr: f64::NAN,
            ..opts.clone()
        };
        let mut clean = set.clone();
        clean.pixels[70] = 0.0;
        train_vit(&vit, &clean, &clean, &opts, &mut |_| {})
    });
    p.finish("hyper-parameters");
}

#[test]
fn quantization_and_pruning_refuse_non_finite_weights() {
    let mut p = Probe::default();
    let mut rng = Rng::new(30);
    let lin = Linear::new(8, 4, true, Init::Normal(0.5), &mut rng);
    lin.weight
        .set_value(with_nan(&lin.weight.value(), 3, f32::NAN))
        .unwrap();
    p.rejects("Int8Linear NaN weight", || {
        Int8Linear::from_linear(&lin, ActQuant::Dynamic)
    });
    lin.weight
        .set_value(with_nan(&lin.weight.value(), 3, f32::INFINITY))
        .unwrap();
    p.rejects("Int8Linear inf weight", || {
        Int8Linear::from_linear(&lin, ActQuant::Dynamic)
    });
    let ok = Linear::new(8, 4, true, Init::Normal(0.5), &mut rng);
    for s in [f32::NAN, f32::INFINITY, 0.0, -1.0] {
        p.rejects("Int8Linear static scale", || {
            Int8Linear::from_linear(&ok, ActQuant::Static(s))
        });
    }
    // Dynamic-scale int8 forward of a NaN input row.
    let q = Int8Linear::from_linear(&ok, ActQuant::Dynamic).unwrap();
    let mut x = vec![0.5f32; 16];
    x[3] = f32::NAN;
    p.rejects("Int8Linear::forward NaN input", || q.forward(&x, 2));
    // Every kind of parameter of a model: a Linear weight, a LayerNorm, an embedding, a bias.
    for suffix in [
        "query.weight",
        "LayerNorm.weight",
        "word_embeddings.weight",
        "dense.bias",
    ] {
        let bert = tiny_bert();
        let (_, param) = bert
            .named_params()
            .into_iter()
            .find(|(n, _)| n.ends_with(suffix))
            .unwrap();
        param
            .set_value(with_nan(&param.value(), 1, f32::NAN))
            .unwrap();
        p.rejects(&format!("Bert to_int8 NaN {suffix}"), || {
            bert.to_int8(&QuantPlan::dynamic())
                .map(|m| m.weight_bytes())
        });
    }
    let vit = tiny_vit();
    let (_, param) = vit
        .named_params()
        .into_iter()
        .find(|(n, _)| n.contains("patch") && n.ends_with("weight"))
        .unwrap();
    param
        .set_value(with_nan(&param.value(), 1, f32::NAN))
        .unwrap();
    p.rejects("Vit to_int8 NaN patch weight", || {
        vit.to_int8(&QuantPlan::dynamic()).map(|m| m.weight_bytes())
    });
    // Pruning ranks by magnitude and importance: NaN has no rank.
    let bert = tiny_bert();
    let (_, param) = bert
        .named_params()
        .into_iter()
        .find(|(n, _)| n.ends_with("query.weight"))
        .unwrap();
    param
        .set_value(with_nan(&param.value(), 1, f32::NAN))
        .unwrap();
    p.rejects("MagnitudePruner NaN weight", || {
        let mut m = MagnitudePruner::encoder_weights(&bert, PruneScope::Global)?;
        m.prune_to(0.5)
    });
    p.rejects("MagnitudePruner NaN sparsity", || {
        let mut m = MagnitudePruner::encoder_weights(&tiny_bert(), PruneScope::PerLayer)?;
        m.prune_to(f32::NAN)
    });
    p.rejects("PrunePlan::top NaN score", || {
        PrunePlan::top(&[vec![0.1, f32::NAN, 0.3]], &[vec![0.2, 0.1]], 2, 1)
    });
    p.finish("quantization and pruning");
}
