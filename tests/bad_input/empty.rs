//! Empty inputs: zero-sized tensors, batches and sequences, no parameters, no data.

use super::*;
use lithe::compress::distill::{KdConfig, kd_loss, soft_kd};
use lithe::data::Batcher;
use lithe::int8::{Input, QuantPlan, ToInt8};
use lithe::nn::{AttentionMask, Init, Linear};
use lithe::train::{TrainOptions, train_vit};
use lithe::{AdamW, AdamWConfig, CrossEntropyOptions, Graph, tensor};

#[test]
fn empty_inputs_are_errors_or_documented_empties() {
    let mut p = Probe::default();
    let e = Tensor::zeros(&[2, 0]);
    let none = Tensor::zeros(&[0, 4]);
    p.rejects("softmax", || tensor::softmax(&e));
    p.rejects("log_softmax", || tensor::log_softmax(&e));
    p.rejects("mean", || tensor::mean(&e, &[1], false));
    p.rejects("layernorm", || {
        tensor::layernorm(&e, &Tensor::zeros(&[0]), &Tensor::zeros(&[0]), 1e-5)
    });
    p.rejects("concat of nothing", || tensor::concat(&[], 0));
    p.rejects("Tensor::item", || e.item());
    // Zero rows are fine for row-wise ops: they return zero rows.
    p.no_panic(
        "softmax of zero rows",
        || tensor::softmax(&none),
        |r| r.as_ref().is_ok_and(|t| t.shape() == [0, 4]),
    );
    p.no_panic(
        "matmul of zero rows",
        || tensor::matmul(&none, &Tensor::zeros(&[4, 3])),
        |r| r.as_ref().is_ok_and(|t| t.shape() == [0, 3]),
    );
    p.no_panic(
        "attention of zero tokens",
        || {
            let q = Tensor::zeros(&[1, 0, 8]);
            tensor::attention(&q, &q, &q, 2, 1.0, None)
        },
        |r| r.as_ref().is_ok_and(|(o, _)| o.shape() == [1, 0, 8]),
    );
    let g = Graph::new();
    let lin = Linear::new(4, 3, true, Init::Normal(0.02), &mut Rng::new(1));
    p.no_panic(
        "Linear on zero rows",
        || lin.forward(&g, g.variable(none.clone())),
        |r| r.is_ok(),
    );
    let logits = g.variable(Tensor::zeros(&[0, 3]));
    p.rejects("cross_entropy no rows", || {
        g.cross_entropy(logits, &[], &CrossEntropyOptions::default())
    });
    p.rejects("soft_kd no rows", || soft_kd(&g, logits, logits, 2.0));
    p.rejects("kd_loss no rows", || {
        kd_loss(
            &g,
            logits,
            logits,
            &[],
            &KdConfig::default(),
            &CrossEntropyOptions::default(),
        )
    });
    // Zero samples are a batch of nothing (every f32 forward maps zero rows to zero rows).
    p.no_panic(
        "AttentionMask no samples",
        || AttentionMask::from_lengths(&[], 4),
        |r| r.as_ref().is_ok_and(|m| m.batch() == 0),
    );
    p.no_panic(
        "Batcher empty",
        || Batcher::new(0, 4, 1),
        |r| r.as_ref().is_ok_and(|b| b.is_empty()),
    );
    p.rejects("Batcher zero batch", || Batcher::new(10, 0, 1));

    let bert = tiny_bert();
    p.rejects("Bert no tokens", || {
        bert.forward_logits(&g, &[], [1, 0], None, None)
    });
    p.no_panic(
        "Bert no samples",
        || {
            bert.forward_logits(&g, &[], [0, 4], None, None)
                .and_then(|y| g.shape(y))
        },
        |r| r.as_ref().is_ok_and(|s| s == &[0, 3]),
    );
    let vit = tiny_vit();
    p.no_panic(
        "Vit no images",
        || {
            vit.forward_logits(&g, g.variable(Tensor::zeros(&[0, 1, 8, 8])))
                .and_then(|y| g.shape(y))
        },
        |r| r.as_ref().is_ok_and(|s| s == &[0, 3]),
    );
    // An optimizer over no parameters steps without doing anything.
    p.no_panic(
        "AdamW over nothing",
        || {
            let mut adam = AdamW::new(vec![], AdamWConfig::default())?;
            lithe::Optimizer::step(&mut adam)
        },
        |r| r.is_ok(),
    );

    // The int8 engine: nothing to run, and an image model asked for zero images.
    let int8 = tiny_vit().to_int8(&QuantPlan::dynamic()).unwrap();
    let mut ws = int8.workspace(2, 0).unwrap();
    let empty_images = Input::Images {
        pixels: &[],
        batch: 0,
    };
    p.rejects("Int8 Vit forward", || {
        int8.forward(&mut ws, empty_images).map(|v| v.len())
    });
    p.rejects("Int8 Vit hidden", || {
        int8.hidden(&mut ws, empty_images).map(|v| v.len())
    });
    p.rejects("Int8 Vit embed", || {
        int8.embed(&mut ws, empty_images, lithe::embed::Pooling::Cls)
            .map(|v| v.len())
    });

    // Training on no images, or with zero epochs or a zero batch.
    let set = |n: usize| images(vec![0.0; n * 64], vec![0; n]);
    let opts = one_epoch();
    p.rejects("train_vit no training images", || {
        train_vit(&vit, &set(0), &set(4), &opts, &mut |_| {})
    });
    p.rejects("train_vit zero batch", || {
        let opts = TrainOptions {
            batch_size: 0,
            ..opts.clone()
        };
        train_vit(&vit, &set(4), &set(4), &opts, &mut |_| {})
    });
    p.rejects("train_vit pixels short", || {
        let mut short = set(4);
        short.pixels.truncate(100);
        train_vit(&vit, &short, &set(4), &opts, &mut |_| {})
    });
    p.finish("empty inputs");
}
