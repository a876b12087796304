//! The int8 engine against the f32 models it is lowered from: logits, hidden states and
//! sentence embeddings within quantization error, one Linear exactly against an f64 reference,
//! no allocation in the forward passes, save/load round trips and every malformed-file and
//! bad-input case an error.

use lithe::check::Compare;
use lithe::embed::Pooling;
use lithe::int8::{ActQuant, Input, Int8Linear, Int8Model, QuantPlan, ToInt8, Workspace};
use lithe::nn::{
    AttentionMask, Bert, BertConfig, Linear, Module, Vit, VitConfig, l2_normalize, mean_pool,
};
use lithe::{Error, Graph, Rng, Tensor};

#[path = "../common/count_alloc.rs"]
mod count_alloc;
use count_alloc::allocations_in;

// ---------------------------------------------------------------------------------------------
// Tiny models with weights large enough that logits differ clearly between classes.

fn bert_config() -> BertConfig {
    BertConfig {
        vocab_size: 50,
        hidden_size: 32,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        intermediate_size: 64,
        max_position_embeddings: 16,
        num_labels: 5,
        ..BertConfig::default()
    }
}

fn vit_config(distillation_token: bool) -> VitConfig {
    VitConfig {
        image_size: 8,
        patch_size: 4,
        num_channels: 3,
        hidden_size: 32,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        intermediate_size: 64,
        num_labels: 6,
        layer_norm_eps: 1e-6,
        hidden_dropout_prob: 0.0,
        distillation_token,
        attention_head_size: None,
    }
}

/// Linear weights `N(0, 1/in)`, LayerNorm weights `1 + N(0, 0.1^2)`, everything else
/// `N(0, 0.5^2)`: activations of order 1 in every layer.
fn randomize(m: &impl Module, seed: u64) {
    let mut rng = Rng::new(seed);
    for (name, p) in m.named_params() {
        let shape = p.shape();
        let is_norm = name.contains("LayerNorm") || name.contains("layernorm");
        let t = if is_norm && name.ends_with("weight") {
            let mut t = Tensor::randn(&shape, 1.0, 0.1, &mut rng);
            t.data_mut().iter_mut().for_each(|v| *v = v.abs());
            t
        } else if shape.len() == 2 && name.ends_with(".weight") && !name.contains("embeddings.") {
            Tensor::randn(&shape, 0.0, 1.0 / (shape[1] as f32).sqrt(), &mut rng)
        } else {
            Tensor::randn(&shape, 0.0, 0.5, &mut rng)
        };
        p.set_value(t).unwrap();
    }
}

fn tiny_bert(seed: u64) -> Bert {
    let bert = Bert::new(&bert_config(), &mut Rng::new(seed)).unwrap();
    randomize(&bert, seed + 1);
    bert
}

fn tiny_vit(distillation_token: bool, seed: u64) -> Vit {
    let vit = Vit::new(&vit_config(distillation_token), &mut Rng::new(seed)).unwrap();
    randomize(&vit, seed + 1);
    vit
}

fn images(batch: usize, seed: u64) -> Tensor {
    Tensor::randn(&[batch, 3, 8, 8], 0.0, 1.0, &mut Rng::new(seed))
}

/// `[B, T]` ids in `0..50` and lengths in `1..=T` (the first sample unpadded).
fn tokens(batch: usize, seq: usize, seed: u64) -> (Vec<u32>, Vec<usize>) {
    let mut rng = Rng::new(seed);
    let u = Tensor::uniform(&[batch * seq + batch], 0.0, 1.0, &mut rng);
    let (ids, lens) = u.data().split_at(batch * seq);
    let ids = ids.iter().map(|&v| ((v * 50.0) as u32).min(49)).collect();
    let lengths = lens
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            if i == 0 {
                seq
            } else {
                1 + ((v * seq as f32) as usize).min(seq - 1)
            }
        })
        .collect();
    (ids, lengths)
}

/// `||a - b||_F / ||b||_F`, the relative Frobenius error of `lithe::check`.
fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    Compare::new(a, b).measures(0.0).rel_frobenius
}

fn argmax(row: &[f32]) -> usize {
    (0..row.len())
        .max_by(|&i, &j| row[i].total_cmp(&row[j]))
        .unwrap()
}

/// Fraction of rows of `classes` logits whose argmax agrees.
fn argmax_agreement(a: &[f32], b: &[f32], classes: usize) -> f64 {
    let rows = a.len() / classes;
    let same = a
        .chunks_exact(classes)
        .zip(b.chunks_exact(classes))
        .filter(|(x, y)| argmax(x) == argmax(y))
        .count();
    same as f64 / rows as f64
}

fn bert_f32_logits(bert: &Bert, ids: &[u32], shape: [usize; 2], lengths: &[usize]) -> Vec<f32> {
    let g = Graph::inference();
    let ids: Vec<usize> = ids.iter().map(|&i| i as usize).collect();
    let mask = AttentionMask::from_lengths(lengths, shape[1]).unwrap();
    let y = bert
        .forward_logits(&g, &ids, shape, None, Some(&mask))
        .unwrap();
    g.value(y).unwrap().data().to_vec()
}

// ---------------------------------------------------------------------------------------------
// Accuracy against the f32 models
//
// Bounds: weights quantized per row and activations per row with 8 bits have a relative
// rounding error of about 1/(2 * 127) per element at the row maximum, ~0.3% in RMS over a dot
// product; through 2 blocks of 6 int8 GEMMs each (and LayerNorms that keep the scale), the
// logits move by a few percent of their norm at most. 5% leaves headroom over that; a wrong
// wiring (a missing bias, a head mixed up, a transposed weight) moves them by order 100%.

mod accuracy;
mod equivalence;
mod errors;
mod io;
mod tokendrop;

/// The thread count is process-wide and tests run in parallel: tests that set it take this lock.
static THREADS: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn forward_hidden_embed_allocate_nothing() {
    let _guard = THREADS.lock().unwrap_or_else(|e| e.into_inner());
    lithe_kernels::threads::set_num_threads(1);
    let bert = tiny_bert(40).to_int8(&QuantPlan::dynamic()).unwrap();
    let (ids, lengths) = tokens(3, 9, 41);
    let mut ws = bert.workspace(4, 12).unwrap();
    let input = Input::Tokens {
        ids: &ids,
        batch: 3,
        seq: 9,
        lengths: Some(&lengths),
    };
    // Warm-up: the kernels' thread-local packing buffers grow once.
    bert.forward(&mut ws, input).unwrap();
    bert.embed(&mut ws, input, Pooling::Mean).unwrap();
    let n = allocations_in(|| {
        bert.forward(&mut ws, input).unwrap();
        bert.hidden(&mut ws, input).unwrap();
        bert.embed(&mut ws, input, Pooling::Mean).unwrap();
        bert.embed(&mut ws, input, Pooling::Cls).unwrap();
    });
    assert_eq!(n, 0, "Bert allocated {n} times");

    let vit = tiny_vit(true, 42).to_int8(&QuantPlan::dynamic()).unwrap();
    let x = images(2, 43);
    let mut ws = vit.workspace(2, 0).unwrap();
    let input = Input::Images {
        pixels: x.data(),
        batch: 2,
    };
    vit.forward(&mut ws, input).unwrap();
    vit.embed(&mut ws, input, Pooling::Mean).unwrap();
    let n = allocations_in(|| {
        vit.forward(&mut ws, input).unwrap();
        vit.hidden(&mut ws, input).unwrap();
        vit.embed(&mut ws, input, Pooling::Cls).unwrap();
    });
    assert_eq!(n, 0, "Vit allocated {n} times");
    // The counter does count: a Vec is an allocation.
    assert!(allocations_in(|| drop(std::hint::black_box(vec![1u8; 10]))) >= 1);
}

/// Attention heads run on several threads and the int8 GEMMs split their columns, but every
/// value is computed by one thread in one order: outputs are bit-identical for any thread count,
/// whichever count the workspace was sized for.
#[test]
fn results_do_not_depend_on_the_thread_count() {
    let _guard = THREADS.lock().unwrap_or_else(|e| e.into_inner());
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    let bert = tiny_bert(50).to_int8(&QuantPlan::dynamic()).unwrap();
    let (ids, lengths) = tokens(3, 9, 51);
    let input = Input::Tokens {
        ids: &ids,
        batch: 3,
        seq: 9,
        lengths: Some(&lengths),
    };
    let vit = tiny_vit(true, 52).to_int8(&QuantPlan::dynamic()).unwrap();
    let x = images(3, 53);
    let pixels = Input::Images {
        pixels: x.data(),
        batch: 3,
    };
    // A DynamicViT: the f32 predictors' GEMMs split their work too.
    let dynamic = tokendrop::dynamic_vit(0.7, true, 54)
        .to_int8(&QuantPlan::dynamic())
        .unwrap();
    let y = tokendrop::drop_images(3, 55);
    let small = Input::Images {
        pixels: y.data(),
        batch: 3,
    };
    let run = |sized_for: usize, threads: usize| {
        lithe_kernels::threads::set_num_threads(sized_for);
        let mut bws = bert.workspace(3, 9).unwrap();
        let mut vws = vit.workspace(3, 0).unwrap();
        let mut dws = dynamic.workspace(3, 0).unwrap();
        lithe_kernels::threads::set_num_threads(threads);
        let mut out = bits(bert.forward(&mut bws, input).unwrap());
        out.extend(bits(bert.hidden(&mut bws, input).unwrap()));
        out.extend(bits(vit.forward(&mut vws, pixels).unwrap()));
        out.extend(bits(vit.hidden(&mut vws, pixels).unwrap()));
        out.extend(bits(dynamic.forward(&mut dws, small).unwrap()));
        out.extend(bits(dynamic.hidden(&mut dws, small).unwrap()));
        out
    };
    let one = run(1, 1);
    for (sized_for, threads) in [(2, 2), (4, 4), (1, 2), (4, 2), (2, 1)] {
        assert!(
            one == run(sized_for, threads),
            "workspace sized for {sized_for} threads, run on {threads}: outputs differ"
        );
    }
    lithe_kernels::threads::set_num_threads(1);
}

// ---------------------------------------------------------------------------------------------
// Bad inputs

#[test]
fn engine_types_can_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Int8Model>();
    send_sync::<Int8Linear>();
    send_sync::<Workspace>();
}
