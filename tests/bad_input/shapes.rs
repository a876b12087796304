//! Operands whose shapes do not fit: tensor ops, layers, models, optimizers, pruning plans and
//! checkpoints.

use super::*;
use lithe::compress::prune::{PrunePlan, prune_bert, prune_vit};
use lithe::int8::{Input, QuantPlan, ToInt8};
use lithe::nn::{AttentionMask, Embedding, Init, LayerNorm, Linear, Module, MultiHeadAttention};
use lithe::optim::ParamGroup;
use lithe::tensor::{self, TransformMix};
use lithe::{AdamW, AdamWConfig, Error, Graph, Optimizer, Param, Sgd, SgdConfig};

fn is_shape(e: &Error) -> bool {
    matches!(
        e,
        Error::Shape { .. } | Error::TensorShape { .. } | Error::Kernel(_)
    )
}

#[test]
fn tensor_ops_reject_mismatched_shapes() {
    let mut p = Probe::default();
    let (a, b) = (randn(&[2, 3], 1), randn(&[4, 5], 2));
    let v = randn(&[3], 3);
    p.expect(
        "from_vec",
        || Tensor::from_vec(vec![0.0; 5], &[2, 3]),
        is_shape,
    );
    p.expect("reshape", || a.reshape(&[4, 2]), is_shape);
    p.expect("item", || a.item(), is_shape);
    p.expect("add", || tensor::add(&a, &b), is_shape);
    p.expect("zip_map", || a.zip_map(&b, |x, y| x + y), is_shape);
    p.expect("add_assign", || a.clone().add_assign(&b), is_shape);
    p.expect("axpy_assign", || a.clone().axpy_assign(2.0, &b), is_shape);
    p.expect("max_abs_diff", || a.max_abs_diff(&b), is_shape);
    p.expect(
        "broadcast_to",
        || tensor::broadcast_to(&a, &[2, 4]),
        is_shape,
    );
    p.expect("sum_to_shape", || tensor::sum_to_shape(&a, &[4]), is_shape);
    p.expect("matmul", || tensor::matmul(&a, &b), is_shape);
    p.expect("matmul rank 1", || tensor::matmul(&v, &a), is_shape);
    p.expect("matmul_t", || tensor::matmul_t(&a, &b), is_shape);
    p.expect(
        "matmul_ex",
        || tensor::matmul_ex(&a, true, &b, false),
        is_shape,
    );
    p.expect("linear weight", || tensor::linear(&a, &b, None), is_shape);
    p.expect(
        "linear bias",
        || tensor::linear(&a, &randn(&[5, 3], 4), Some(&v)),
        is_shape,
    );
    p.expect(
        "linear rank 0",
        || tensor::linear(&Tensor::scalar(1.0), &b, None),
        is_shape,
    );
    p.rejects("layernorm weight", || {
        tensor::layernorm(&a, &v.reshape(&[3]).unwrap(), &randn(&[4], 5), 1e-5)
    });
    p.rejects("layernorm scalar", || {
        tensor::layernorm(&Tensor::scalar(1.0), &v, &v, 1e-5)
    });
    p.rejects("softmax scalar", || tensor::softmax(&Tensor::scalar(1.0)));
    p.rejects("log_softmax scalar", || {
        tensor::log_softmax(&Tensor::scalar(1.0))
    });
    p.rejects("sum axis", || tensor::sum(&a, &[2], false));
    p.rejects("mean axis", || tensor::mean(&a, &[0, 0], false));
    p.rejects("permute", || tensor::permute(&a, &[0, 0]));
    p.rejects("permute rank", || tensor::permute(&a, &[0]));
    p.rejects("transpose", || tensor::transpose(&a, 0, 2));
    p.rejects("slice end", || tensor::slice(&a, 1, 2, 4));
    p.rejects("slice reversed", || tensor::slice(&a, 1, 2, 1));
    p.rejects("slice axis", || tensor::slice(&a, 3, 0, 1));
    p.rejects("concat", || tensor::concat(&[&a, &b], 0));
    p.rejects("concat rank", || tensor::concat(&[&a, &v], 0));
    p.rejects("concat axis", || tensor::concat(&[&a, &a], 2));
    p.rejects("index_select", || tensor::index_select(&a, 1, &[3]));
    p.rejects("index_select axis", || tensor::index_select(&a, 2, &[0]));
    p.rejects("scatter_add src", || {
        tensor::scatter_add(&a, 1, &[0, 1], &a)
    });
    p.rejects("scatter_add index", || {
        tensor::scatter_add(&a, 1, &[0, 1, 9], &a)
    });
    p.rejects("dim", || a.dim(2));
    // Attention: Q/K/V of different shapes, heads not dividing the width, a bias of the
    // wrong length.
    let q = randn(&[2, 5, 8], 6);
    let k4 = randn(&[2, 4, 8], 7);
    p.rejects("attention k", || {
        tensor::attention(&q, &k4, &q, 2, 1.0, None)
    });
    p.rejects("attention heads", || {
        tensor::attention(&q, &q, &q, 3, 1.0, None)
    });
    p.rejects("attention zero heads", || {
        tensor::attention(&q, &q, &q, 0, 1.0, None)
    });
    p.rejects("attention rank", || {
        tensor::attention(&a, &a, &a, 1, 1.0, None)
    });
    p.rejects("attention bias", || {
        tensor::attention(&q, &q, &q, 2, 1.0, Some(&randn(&[2, 4], 8)))
    });
    let (eye, zero) = (Tensor::ones(&[2, 2]), Tensor::zeros(&[2]));
    let wrong = Tensor::ones(&[3, 3]);
    let mix = |pre| TransformMix {
        pre,
        pre_bias: &zero,
        post: &eye,
        post_bias: &zero,
    };
    p.rejects("transform_attention mix", || {
        tensor::transform_attention(&q, &q, &q, 2, 1.0, &mix(&wrong), None)
    });
    p.rejects("transform_attention keep", || {
        tensor::transform_attention(&q, &q, &q, 2, 1.0, &mix(&eye), Some(&randn(&[2, 4], 9)))
    });
    p.rejects("transform_attention k", || {
        tensor::transform_attention(&q, &k4, &q, 2, 1.0, &mix(&eye), None)
    });
    // Depthwise convolution over a grid that does not match the tokens.
    let x = randn(&[2, 9, 4], 10);
    let (w, bias) = (randn(&[4, 3, 3], 11), randn(&[4], 12));
    p.rejects("dwconv grid", || tensor::dwconv(&x, &w, &bias, (2, 4)));
    p.rejects("dwconv weight", || {
        tensor::dwconv(&x, &randn(&[3, 3, 3], 13), &bias, (3, 3))
    });
    p.rejects("dwconv even kernel", || {
        tensor::dwconv(&x, &randn(&[4, 2, 2], 14), &bias, (3, 3))
    });
    p.rejects("dwconv bias", || {
        tensor::dwconv(&x, &w, &randn(&[5], 15), (3, 3))
    });
    p.finish("tensor shapes");
}

#[test]
fn layers_and_models_reject_wrong_input_shapes() {
    let mut p = Probe::default();
    let mut rng = Rng::new(20);
    let g = Graph::new();
    let lin = Linear::new(8, 4, true, Init::Normal(0.02), &mut rng);
    p.rejects("Linear width", || {
        lin.forward(&g, g.variable(randn(&[2, 7], 21)))
    });
    p.rejects("Linear scalar", || {
        lin.forward(&g, g.variable(Tensor::scalar(1.0)))
    });
    p.rejects("Linear::from_params bias", || {
        Linear::from_params(
            Param::new(randn(&[4, 8], 22)),
            Some(Param::new(randn(&[5], 23))),
        )
    });
    p.rejects("Linear::from_params rank", || {
        Linear::from_params(Param::new(randn(&[4], 22)), None)
    });
    let ln = LayerNorm::new(8, 1e-5);
    p.rejects("LayerNorm width", || {
        ln.forward(&g, g.variable(randn(&[2, 7], 24)))
    });
    let emb = Embedding::new(10, 4, Init::Normal(0.02), &mut rng);
    p.rejects("Embedding id", || emb.forward(&g, &[1, 10]));
    let mha =
        MultiHeadAttention::new(8, 2, 0.0, "attention", Init::Normal(0.02), &mut rng).unwrap();
    p.rejects("attention rank 2", || {
        mha.forward(&g, g.variable(randn(&[5, 8], 25)), None, None)
    });
    p.rejects("attention width", || {
        mha.forward(&g, g.variable(randn(&[1, 5, 6], 26)), None, None)
    });
    p.rejects("attention bias", || {
        let bias = g.constant(randn(&[1, 1, 1, 4], 27));
        mha.forward(&g, g.variable(randn(&[1, 5, 8], 28)), Some(bias), None)
    });
    p.rejects("attention head mask", || {
        let m = g.constant(Tensor::ones(&[3]));
        mha.forward(&g, g.variable(randn(&[1, 5, 8], 29)), None, Some(m))
    });
    p.rejects("attention policy", || {
        let keep = g.constant(Tensor::ones(&[1, 4]));
        mha.forward_policy(&g, g.variable(randn(&[1, 5, 8], 30)), keep)
    });
    p.rejects("MultiHeadAttention::new", || {
        MultiHeadAttention::new(8, 3, 0.0, "attention", Init::Normal(0.02), &mut Rng::new(1))
    });

    let bert = tiny_bert();
    let ids = [1usize; 12];
    p.rejects("Bert ids/shape", || {
        bert.forward_logits(&g, &ids[..5], [2, 3], None, None)
    });
    p.rejects("Bert seq > positions", || {
        bert.forward_logits(&g, &[1; 13], [1, 13], None, None)
    });
    p.rejects("Bert token id", || {
        bert.forward_logits(&g, &[1, 40], [1, 2], None, None)
    });
    p.rejects("Bert token types length", || {
        bert.forward_logits(&g, &ids[..6], [2, 3], Some(&[0; 5]), None)
    });
    p.rejects("Bert token type id", || {
        bert.forward_logits(&g, &ids[..6], [2, 3], Some(&[0, 0, 2, 0, 0, 0]), None)
    });
    let mask = AttentionMask::from_lengths(&[2, 3], 3).unwrap();
    p.rejects("Bert mask batch", || {
        bert.forward_logits(&g, &ids[..3], [1, 3], None, Some(&mask))
    });
    p.rejects("AttentionMask lengths", || {
        AttentionMask::from_lengths(&[4], 3)
    });
    p.rejects("AttentionMask flags", || {
        AttentionMask::from_flags(&[true; 5], 2, 3)
    });

    let vit = tiny_vit();
    for (what, shape) in [
        ("Vit channels", vec![1, 3, 8, 8]),
        ("Vit size", vec![1, 1, 9, 9]),
        ("Vit rank", vec![1, 8, 8]),
        ("Vit non-square", vec![1, 1, 8, 4]),
    ] {
        p.rejects(what, || {
            vit.forward_logits(&g, g.variable(randn(&shape, 31)))
        });
        p.rejects(what, || {
            vit.forward_features(&g, g.variable(randn(&shape, 31)))
        });
    }
    p.finish("layer shapes");
}

#[test]
fn optimizers_reject_mismatched_params() {
    let mut p = Probe::default();
    let w = Param::new(randn(&[3, 2], 40));
    // A parameter listed twice, in one group or two.
    p.rejects("AdamW duplicate", || {
        AdamW::new(vec![w.clone(), w.clone()], AdamWConfig::default())
    });
    p.rejects("Sgd two groups", || {
        Sgd::with_groups(
            vec![
                ParamGroup::new(vec![w.clone()]),
                ParamGroup::new(vec![w.clone()]),
            ],
            SgdConfig::default(),
        )
    });
    // A gradient, then the value replaced behind the optimizer's back by one of another shape:
    // the step sees a gradient that no longer fits.
    for step in 0..2 {
        let w = Param::new(randn(&[3, 2], 41));
        let mut adam = AdamW::new(vec![w.clone()], AdamWConfig::default()).unwrap();
        let mut sgd = Sgd::new(
            vec![w.clone()],
            SgdConfig {
                momentum: 0.9,
                ..SgdConfig::default()
            },
        )
        .unwrap();
        let g = Graph::new();
        let loss = g.sum_all(g.param(&w)).unwrap();
        g.backward(loss).unwrap();
        if step == 1 {
            // The state exists with the old size before the shape changes.
            adam.step().unwrap();
            sgd.step().unwrap();
        }
        w.update(|v, _| *v = randn(&[4], 42));
        p.rejects("AdamW::step resized", || adam.step());
        p.rejects("Sgd::step resized", || sgd.step());
    }
    p.rejects("clip_grad_norm negative", || {
        lithe::optim::clip_grad_norm(std::slice::from_ref(&w), -1.0)
    });
    p.finish("optimizer shapes");
}

#[test]
fn pruning_plans_reject_out_of_range_heads_and_neurons() {
    let mut p = Probe::default();
    let (bert, vit) = (tiny_bert(), tiny_vit());
    let layers = 2;
    let plan = |heads: Vec<usize>, neurons: Vec<usize>| {
        PrunePlan::new(vec![heads; layers], vec![neurons; layers]).unwrap()
    };
    // Head 4 of 4, neuron 32 of 32, and a plan for 3 layers of a 2-layer model.
    let heads = plan(vec![0, 4], vec![0, 1]);
    let neurons = plan(vec![0, 1], vec![0, 32]);
    let deep = PrunePlan::first(3, 1, 1).unwrap();
    let wide = PrunePlan::first(2, 5, 1).unwrap();
    for (what, pl) in [
        ("head", &heads),
        ("neuron", &neurons),
        ("layers", &deep),
        ("all heads+1", &wide),
    ] {
        p.rejects(what, || prune_bert(&bert, pl));
        p.rejects(what, || prune_vit(&vit, pl));
        p.rejects(what, || pl.check(&bert.encoder));
        p.rejects(what, || pl.masks(&bert.encoder));
    }
    p.rejects("PrunePlan::new layers", || {
        PrunePlan::new(vec![vec![0]; 2], vec![vec![0]; 3])
    });
    p.rejects("PrunePlan::new ragged", || {
        PrunePlan::new(vec![vec![0], vec![0, 1]], vec![vec![0]; 2])
    });
    p.rejects("PrunePlan::new repeat", || {
        PrunePlan::new(vec![vec![1, 1]], vec![vec![0]])
    });
    p.rejects("PrunePlan::top count", || {
        PrunePlan::top(&[vec![0.1, 0.2]], &[vec![0.3]], 3, 1)
    });
    p.finish("pruning plans");
}

#[test]
fn checkpoint_shape_mismatch_is_an_error() {
    let mut p = Probe::default();
    let bert = tiny_bert();
    let mut named: Vec<(String, Tensor)> = bert
        .named_params()
        .into_iter()
        .map(|(n, t)| (n, t.value()))
        .collect();
    let i = named
        .iter()
        .position(|(n, _)| n.ends_with("query.weight"))
        .unwrap();
    named[i].1 = randn(&[16, 15], 50);
    p.expect(
        "load_named_into_module",
        || lithe::io::load_named_into_module(&bert, &named, true),
        |e| matches!(e, Error::TensorShape { .. }),
    );
    let bytes = lithe::io::serialize_named(&named, None).unwrap();
    p.expect(
        "load_bytes_into_module",
        || lithe::io::load_bytes_into_module(&bert, &bytes, false),
        |e| matches!(e, Error::TensorShape { .. }),
    );
    // The int8 engine: a forward whose input does not fit the model it was lowered from.
    let int8 = tiny_bert().to_int8(&QuantPlan::dynamic()).unwrap();
    let mut ws = int8.workspace(2, 12).unwrap();
    let ids = [1u32; 8];
    let input = Input::Tokens {
        ids: &ids,
        batch: 2,
        seq: 3,
        lengths: None,
    };
    p.rejects("Int8 forward ids", || {
        int8.forward(&mut ws, input).map(|v| v.len())
    });
    p.rejects("Int8 hidden ids", || {
        int8.hidden(&mut ws, input).map(|v| v.len())
    });
    p.rejects("Int8 embed ids", || {
        int8.embed(&mut ws, input, lithe::embed::Pooling::Mean)
            .map(|v| v.len())
    });
    p.finish("checkpoint shapes");
}
