//! The int8 engine against the f32 models it is lowered from: logits, hidden states and
//! sentence embeddings within quantization error, one Linear exactly against an f64 reference,
//! no allocation in the forward passes, save/load round trips and every malformed-file and
//! bad-input case an error.

use lithe::embed::Pooling;
use lithe::int8::{ActQuant, Input, Int8Linear, Int8Model, QuantPlan, ToInt8, Workspace};
use lithe::nn::{
    AttentionMask, Bert, BertConfig, Linear, Module, Vit, VitConfig, l2_normalize, mean_pool,
};
use lithe::{Error, Graph, Rng, Tensor};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

// ---------------------------------------------------------------------------------------------
// Allocation counting: every allocation made on a thread while its flag is set.

struct CountingAlloc;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn note_allocation() {
    if COUNTING.with(Cell::get) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: forwards every call to the system allocator unchanged.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// Allocations `f` makes on this thread (allocations of other threads are not counted, so
/// tests running in parallel do not disturb each other).
fn allocations_in(f: impl FnOnce()) -> usize {
    // The counter is global, so count a difference only from this thread's own calls.
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCATIONS.load(Ordering::SeqCst) - before
}

// ---------------------------------------------------------------------------------------------
// Tiny models with weights large enough that logits differ clearly between classes.

fn bert_config() -> BertConfig {
    BertConfig {
        vocab_size: 50,
        hidden_size: 32,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        intermediate_size: 64,
        hidden_act: "gelu".into(),
        max_position_embeddings: 16,
        type_vocab_size: 2,
        layer_norm_eps: 1e-12,
        hidden_dropout_prob: 0.0,
        attention_probs_dropout_prob: 0.0,
        num_labels: 5,
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

/// `||a - b|| / ||b||`.
fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let (mut num, mut den) = (0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        num += (f64::from(x) - f64::from(y)).powi(2);
        den += f64::from(y).powi(2);
    }
    (num / den).sqrt()
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

#[test]
fn vit_logits_match_f32_model() {
    for distillation in [false, true] {
        let vit = tiny_vit(distillation, 10);
        let int8 = vit.to_int8(&QuantPlan::dynamic()).unwrap();
        let batch = 32;
        let x = images(batch, 11);
        let g = Graph::inference();
        let expected = g
            .value(vit.forward_logits(&g, g.constant(x.clone())).unwrap())
            .unwrap();
        let mut ws = int8.workspace(batch, 0).unwrap();
        let got = int8
            .forward(
                &mut ws,
                Input::Images {
                    pixels: x.data(),
                    batch,
                },
            )
            .unwrap();
        let err = rel_err(got, expected.data());
        let agree = argmax_agreement(got, expected.data(), 6);
        assert!(
            err < 0.05,
            "distillation {distillation}: relative error {err}"
        );
        assert!(
            agree >= 0.9,
            "distillation {distillation}: argmax agreement {agree}"
        );
    }
}

#[test]
fn vit_hidden_matches_f32_features() {
    let vit = tiny_vit(false, 12);
    let int8 = Int8Model::from_vit(&vit, &QuantPlan::dynamic()).unwrap();
    let x = images(4, 13);
    let g = Graph::inference();
    let expected = g
        .value(vit.forward_features(&g, g.constant(x.clone())).unwrap())
        .unwrap();
    let mut ws = int8.workspace(4, 0).unwrap();
    let got = int8
        .hidden(
            &mut ws,
            Input::Images {
                pixels: x.data(),
                batch: 4,
            },
        )
        .unwrap();
    assert_eq!(got.len(), 4 * 5 * 32);
    let err = rel_err(got, expected.data());
    eprintln!("vit hidden: relative error {err}");
    assert!(err < 0.05, "relative error {err}");
}

#[test]
fn bert_logits_match_f32_model_with_padding() {
    let bert = tiny_bert(20);
    let int8 = bert.to_int8(&QuantPlan::dynamic()).unwrap();
    let (batch, seq) = (32, 12);
    let (ids, lengths) = tokens(batch, seq, 21);
    let expected = bert_f32_logits(&bert, &ids, [batch, seq], &lengths);
    let mut ws = int8.workspace(batch, 16).unwrap();
    let input = Input::Tokens {
        ids: &ids,
        batch,
        seq,
        lengths: Some(&lengths),
    };
    let got = int8.forward(&mut ws, input).unwrap();
    let err = rel_err(got, &expected);
    let agree = argmax_agreement(got, &expected, 5);
    eprintln!("bert: relative error {err}, agreement {agree}");
    assert!(err < 0.05, "relative error {err}");
    assert!(agree >= 0.9, "argmax agreement {agree}");
}

#[test]
fn padding_does_not_change_real_tokens() {
    // The same sentence alone and padded in a batch: identical logits, since padded keys are
    // left out and every quantization is per row (dynamic) or per element (static).
    let bert = tiny_bert(22);
    let int8 = bert.to_int8(&QuantPlan::dynamic()).unwrap();
    let (ids, _) = tokens(1, 7, 23);
    let mut ws = int8.workspace(2, 10).unwrap();
    let alone = int8
        .forward(
            &mut ws,
            Input::Tokens {
                ids: &ids,
                batch: 1,
                seq: 7,
                lengths: None,
            },
        )
        .unwrap()
        .to_vec();
    let mut padded = vec![3u32; 20];
    padded[10..17].copy_from_slice(&ids);
    let lengths = [10, 7];
    let input = Input::Tokens {
        ids: &padded,
        batch: 2,
        seq: 10,
        lengths: Some(&lengths),
    };
    let both = int8.forward(&mut ws, input).unwrap();
    let err = rel_err(&both[5..], &alone);
    assert!(err < 1e-5, "relative error {err}");
}

#[test]
fn bert_embed_matches_f32_mean_pool() {
    let bert = tiny_bert(24);
    let int8 = bert.to_int8(&QuantPlan::dynamic()).unwrap();
    let (batch, seq) = (6, 10);
    let (ids, lengths) = tokens(batch, seq, 25);
    let g = Graph::inference();
    let ids_usize: Vec<usize> = ids.iter().map(|&i| i as usize).collect();
    let mask = AttentionMask::from_lengths(&lengths, seq).unwrap();
    let hidden = bert
        .forward_hidden(&g, &ids_usize, [batch, seq], None, Some(&mask))
        .unwrap();
    let pooled = l2_normalize(&g, mean_pool(&g, hidden, Some(&mask)).unwrap()).unwrap();
    let expected = g.value(pooled).unwrap();
    let expected_hidden = g.value(hidden).unwrap();
    let mut ws = int8.workspace(batch, seq).unwrap();
    let input = Input::Tokens {
        ids: &ids,
        batch,
        seq,
        lengths: Some(&lengths),
    };
    let got_hidden = int8.hidden(&mut ws, input).unwrap().to_vec();
    let err = rel_err(&got_hidden, expected_hidden.data());
    eprintln!("bert hidden: relative error {err}");
    assert!(err < 0.05, "hidden relative error {err}");
    let got = int8.embed(&mut ws, input, Pooling::Mean).unwrap();
    for (b, (x, y)) in got
        .chunks_exact(32)
        .zip(expected.data().chunks_exact(32))
        .enumerate()
    {
        let cos: f32 = x.iter().zip(y).map(|(a, b)| a * b).sum();
        let norm: f32 = x.iter().map(|a| a * a).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "sample {b}: norm {norm}");
        eprintln!("bert embed sample {b}: cosine {cos}");
        assert!(cos > 0.99, "sample {b}: cosine {cos}");
    }
    // CLS pooling is the normalized first token.
    let cls = int8.embed(&mut ws, input, Pooling::Cls).unwrap().to_vec();
    let first = &got_hidden[..32];
    let n = first.iter().map(|v| v * v).sum::<f32>().sqrt();
    for (a, b) in cls[..32].iter().zip(first) {
        assert!((a - b / n).abs() < 1e-6);
    }
}

// ---------------------------------------------------------------------------------------------
// Exactness of one Linear

#[test]
fn static_linear_equals_f64_reference() {
    let (k, n, m) = (37, 19, 5);
    let mut rng = Rng::new(30);
    let lin = Linear::new(k, n, true, lithe::nn::Init::Normal(0.3), &mut rng);
    lin.bias
        .as_ref()
        .unwrap()
        .set_value(Tensor::randn(&[n], 0.0, 0.5, &mut rng))
        .unwrap();
    let x = Tensor::randn(&[m, k], 0.0, 1.0, &mut rng);
    // A scale that clips the largest inputs, so the clamp is exercised too.
    let s = 2.0 / 127.0;
    let int8 = Int8Linear::from_linear(&lin, ActQuant::Static(s)).unwrap();
    assert_eq!((int8.in_features(), int8.out_features()), (k, n));
    assert_eq!(int8.act(), ActQuant::Static(s));
    let got = int8.forward(x.data(), m).unwrap();
    // Reference: the documented quantization rules, then the product in f64.
    let quant = |v: f32, scale: f32| (v / scale).clamp(-127.0, 127.0).round_ties_even();
    let w = lin.weight.value();
    let b = lin.bias.as_ref().unwrap().value();
    for i in 0..m {
        for j in 0..n {
            let row = &w.data()[j * k..(j + 1) * k];
            let max = row.iter().fold(0f32, |a, v| a.max(v.abs()));
            let s_w = max / 127.0;
            let dot: f64 = (0..k)
                .map(|p| {
                    let qx = f64::from(quant(x.data()[i * k + p], s)) * f64::from(s);
                    let qw = f64::from(quant(row[p], s_w)) * f64::from(s_w);
                    qx * qw
                })
                .sum();
            let expected = dot + f64::from(b.data()[j]);
            let g = f64::from(got[i * n + j]);
            let scale = dot.abs() + f64::from(b.data()[j]).abs();
            assert!(
                (g - expected).abs() <= 1e-5 * scale.max(1e-3),
                "[{i}, {j}]: {g} vs {expected}"
            );
        }
    }
}

#[test]
fn static_plan_runs_and_stays_close() {
    // Static scales from the largest magnitude a Linear could see (here: a generous 8 / 127)
    // on every layer; mixed with dynamic on Q so Q, K and V are not fused in this model.
    let bert = tiny_bert(32);
    let mut plan = QuantPlan {
        default_mode: ActQuant::Static(8.0 / 127.0),
        acts: Default::default(),
    };
    plan.acts.insert(
        "encoder.layer.0.attention.self.query".into(),
        ActQuant::Dynamic,
    );
    let int8 = bert.to_int8(&plan).unwrap();
    let (batch, seq) = (16, 8);
    let (ids, lengths) = tokens(batch, seq, 33);
    let expected = bert_f32_logits(&bert, &ids, [batch, seq], &lengths);
    let mut ws = int8.workspace(batch, seq).unwrap();
    let input = Input::Tokens {
        ids: &ids,
        batch,
        seq,
        lengths: Some(&lengths),
    };
    let got = int8.forward(&mut ws, input).unwrap();
    let err = rel_err(got, &expected);
    eprintln!("bert static plan: relative error {err}");
    assert!(err < 0.1, "relative error {err}");
}

// ---------------------------------------------------------------------------------------------
// No allocation

#[test]
fn forward_hidden_embed_allocate_nothing() {
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

// ---------------------------------------------------------------------------------------------
// Bad inputs

#[test]
fn engine_types_can_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Int8Model>();
    send_sync::<Int8Linear>();
    send_sync::<Workspace>();
}

#[test]
fn bad_inputs_are_errors() {
    let bert = tiny_bert(50).to_int8(&QuantPlan::dynamic()).unwrap();
    let vit = tiny_vit(false, 51).to_int8(&QuantPlan::dynamic()).unwrap();
    assert!(matches!(
        bert.workspace(0, 4),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        bert.workspace(1, 17),
        Err(Error::InvalidArgument { .. })
    ));
    assert!(matches!(
        bert.workspace(1, 0),
        Err(Error::InvalidArgument { .. })
    ));
    let mut ws = bert.workspace(2, 8).unwrap();
    let ids = [1u32; 27];
    let tok = |batch, seq, lengths| Input::Tokens {
        ids: &ids[..batch * seq],
        batch,
        seq,
        lengths,
    };
    // Bigger than the workspace.
    assert!(matches!(
        bert.forward(&mut ws, tok(3, 8, None)),
        Err(Error::Shape { .. })
    ));
    assert!(matches!(
        bert.forward(&mut ws, tok(1, 9, None)),
        Err(Error::Shape { .. })
    ));
    // Empty.
    assert!(matches!(
        bert.forward(&mut ws, tok(0, 8, None)),
        Err(Error::Empty { .. })
    ));
    assert!(matches!(
        bert.forward(&mut ws, tok(2, 0, None)),
        Err(Error::Empty { .. })
    ));
    // Ids that do not fill [B, T].
    let short = Input::Tokens {
        ids: &ids[..5],
        batch: 2,
        seq: 3,
        lengths: None,
    };
    assert!(matches!(
        bert.forward(&mut ws, short),
        Err(Error::Shape { .. })
    ));
    // A token id beyond the vocabulary.
    let bad_id = [1u32, 50, 2];
    let input = Input::Tokens {
        ids: &bad_id,
        batch: 1,
        seq: 3,
        lengths: None,
    };
    assert!(matches!(
        bert.forward(&mut ws, input),
        Err(Error::Index {
            index: 50,
            size: 50,
            ..
        })
    ));
    // Lengths: 0, beyond the sequence, wrong count.
    for lengths in [&[0usize, 2][..], &[2, 4], &[2]] {
        let r = bert.forward(&mut ws, tok(2, 3, Some(lengths)));
        assert!(
            matches!(r, Err(Error::InvalidArgument { .. } | Error::Shape { .. })),
            "{lengths:?}: {r:?}"
        );
    }
    // Images to a text model and tokens to an image model.
    let x = images(1, 52);
    let img = Input::Images {
        pixels: x.data(),
        batch: 1,
    };
    assert!(matches!(
        bert.forward(&mut ws, img),
        Err(Error::InvalidArgument { .. })
    ));
    let mut vws = vit.workspace(2, 0).unwrap();
    assert!(matches!(
        vit.forward(&mut vws, tok(1, 3, None)),
        Err(Error::InvalidArgument { .. })
    ));
    // A wrong pixel count, too many images, a NaN pixel.
    let short = Input::Images {
        pixels: &x.data()[1..],
        batch: 1,
    };
    assert!(matches!(
        vit.forward(&mut vws, short),
        Err(Error::Shape { .. })
    ));
    let three = images(3, 53);
    let input = Input::Images {
        pixels: three.data(),
        batch: 3,
    };
    assert!(matches!(
        vit.forward(&mut vws, input),
        Err(Error::Shape { .. })
    ));
    let mut nan = x.data().to_vec();
    nan[7] = f32::NAN;
    assert!(
        vit.forward(
            &mut vws,
            Input::Images {
                pixels: &nan,
                batch: 1
            }
        )
        .is_err()
    );
    // A workspace of another model.
    assert!(matches!(
        vit.forward(&mut ws, img),
        Err(Error::InvalidArgument { .. })
    ));
    // Still usable after all the errors.
    assert!(bert.forward(&mut ws, tok(2, 8, None)).is_ok());
    assert_eq!(vit.hidden(&mut vws, img).unwrap().len(), 5 * 32);
}

// ---------------------------------------------------------------------------------------------
// Files

fn temp_path(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("lithe-int8-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn logits(m: &Int8Model, ws: &mut Workspace, input: Input<'_>) -> Vec<f32> {
    m.forward(ws, input).unwrap().to_vec()
}

#[test]
fn save_load_round_trip_is_bit_exact() {
    let bert = tiny_bert(60);
    let mut plan = QuantPlan::dynamic();
    plan.acts
        .insert("classifier".into(), ActQuant::Static(0.0123));
    plan.acts.insert(
        "encoder.layer.1.attention.self.key".into(),
        ActQuant::Static(0.05),
    );
    let bert = bert.to_int8(&plan).unwrap();
    let path = temp_path("bert.safetensors");
    bert.save(&path).unwrap();
    let loaded = Int8Model::load(&path).unwrap();
    assert_eq!(loaded.weight_bytes(), bert.weight_bytes());
    assert_eq!(loaded.max_seq(), 16);
    let (ids, lengths) = tokens(3, 10, 61);
    let input = Input::Tokens {
        ids: &ids,
        batch: 3,
        seq: 10,
        lengths: Some(&lengths),
    };
    let mut ws = bert.workspace(3, 10).unwrap();
    let a = logits(&bert, &mut ws, input);
    let b = logits(&loaded, &mut ws, input);
    assert_eq!(
        a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        b.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
    let file_len = std::fs::metadata(&path).unwrap().len() as usize;
    assert!(file_len > bert.weight_bytes() && file_len < bert.weight_bytes() + 64 * 1024);

    // A model whose blocks no longer match its config (a layer dropped, as by depth pruning)
    // saves and loads as the model it is.
    let mut shallow = tiny_bert(64);
    shallow.encoder.layers.pop();
    let shallow = shallow.to_int8(&QuantPlan::dynamic()).unwrap();
    let path = temp_path("shallow.safetensors");
    shallow.save(&path).unwrap();
    let loaded = Int8Model::load(&path).unwrap();
    let a = logits(&shallow, &mut ws, input);
    assert_eq!(a, logits(&loaded, &mut ws, input));

    for distillation in [false, true] {
        let vit = tiny_vit(distillation, 62)
            .to_int8(&QuantPlan::dynamic())
            .unwrap();
        let path = temp_path(&format!("vit{distillation}.safetensors"));
        vit.save(&path).unwrap();
        let loaded = Int8Model::load(&path).unwrap();
        assert_eq!(loaded.image_shape(), Some([3, 8, 8]));
        let x = images(2, 63);
        let input = Input::Images {
            pixels: x.data(),
            batch: 2,
        };
        let mut ws = vit.workspace(2, 0).unwrap();
        let a = logits(&vit, &mut ws, input);
        let b = logits(&loaded, &mut ws, input);
        assert_eq!(a, b);
    }
}

/// The tensors and metadata of a safetensors file, owned, for rewriting.
struct RawFile {
    tensors: Vec<(String, safetensors::Dtype, Vec<usize>, Vec<u8>)>,
    metadata: std::collections::HashMap<String, String>,
}

impl RawFile {
    fn read(path: &std::path::Path) -> RawFile {
        let bytes = std::fs::read(path).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let tensors = st
            .tensors()
            .into_iter()
            .map(|(n, v)| (n, v.dtype(), v.shape().to_vec(), v.data().to_vec()))
            .collect();
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        RawFile {
            tensors,
            metadata: meta.metadata().clone().unwrap(),
        }
    }

    fn write(&self, path: &std::path::Path) {
        let views: Vec<_> = self
            .tensors
            .iter()
            .map(|(n, d, s, b)| {
                (
                    n.as_str(),
                    safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap(),
                )
            })
            .collect();
        let bytes = safetensors::serialize(views, Some(self.metadata.clone())).unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    fn tensor(&mut self, name: &str) -> &mut (String, safetensors::Dtype, Vec<usize>, Vec<u8>) {
        self.tensors.iter_mut().find(|t| t.0 == name).unwrap()
    }
}

#[test]
fn malformed_files_are_errors() {
    let bert = tiny_bert(70).to_int8(&QuantPlan::dynamic()).unwrap();
    let good = temp_path("good.safetensors");
    bert.save(&good).unwrap();
    let bad = temp_path("bad.safetensors");
    let load_rewritten = |edit: &dyn Fn(&mut RawFile)| {
        let mut raw = RawFile::read(&good);
        edit(&mut raw);
        raw.write(&bad);
        Int8Model::load(&bad)
    };

    // Truncated anywhere: in the data, in the header, before the header length.
    let bytes = std::fs::read(&good).unwrap();
    for cut in [bytes.len() - 3, 200, 5] {
        std::fs::write(&bad, &bytes[..cut]).unwrap();
        let r = Int8Model::load(&bad);
        assert!(
            matches!(r, Err(Error::Format { .. })),
            "cut at {cut}: {r:?}"
        );
    }
    // Not there at all.
    assert!(matches!(
        Int8Model::load(temp_path("absent.safetensors")),
        Err(Error::File { .. })
    ));

    // F32 where I8 is expected.
    let r = load_rewritten(&|raw| {
        let t = raw.tensor("classifier.weight");
        t.1 = safetensors::Dtype::F32;
        t.3 =
            t.3.iter()
                .flat_map(|&b| f32::from(b as i8).to_le_bytes())
                .collect();
    });
    match r {
        Err(Error::Format { msg, .. }) => assert!(msg.contains("classifier.weight"), "{msg}"),
        other => panic!("{other:?}"),
    }
    // A missing scale.
    let r = load_rewritten(&|raw| {
        raw.tensors
            .retain(|t| t.0 != "encoder.layer.1.intermediate.dense.weight_scale")
    });
    assert!(
        matches!(&r, Err(Error::MissingTensor { name }) if name == "encoder.layer.1.intermediate.dense.weight_scale"),
        "{r:?}"
    );
    // A weight of the wrong shape.
    let r = load_rewritten(&|raw| {
        let t = raw.tensor("pooler.dense.weight");
        t.2 = vec![32, 31];
        t.3.truncate(32 * 31);
    });
    assert!(
        matches!(&r, Err(Error::TensorShape { name, .. }) if name == "pooler.dense.weight"),
        "{r:?}"
    );
    // A LayerNorm of the wrong width.
    let r = load_rewritten(&|raw| {
        let t = raw.tensor("embeddings.LayerNorm.bias");
        t.2 = vec![31];
        t.3.truncate(31 * 4);
    });
    assert!(matches!(&r, Err(Error::TensorShape { .. })), "{r:?}");
    // A tensor nobody reads.
    let r = load_rewritten(&|raw| {
        raw.tensors
            .push(("extra".into(), safetensors::Dtype::F32, vec![1], vec![0; 4]))
    });
    assert!(
        matches!(&r, Err(Error::UnexpectedTensor { name }) if name == "extra"),
        "{r:?}"
    );
    // A weight of -128 (outside the symmetric range) and a NaN scale.
    let r = load_rewritten(&|raw| raw.tensor("classifier.weight").3[0] = 0x80);
    assert!(r.is_err());
    let r = load_rewritten(&|raw| {
        raw.tensor("classifier.weight_scale").3[..4].copy_from_slice(&f32::NAN.to_le_bytes())
    });
    assert!(r.is_err());
    // Metadata: corrupt JSON, missing fields, another version, an unknown mode, a config
    // that does not match the tensors.
    let edits: [(&str, Option<&str>); 7] = [
        ("act_quant", Some("{not json")),
        ("act_quant", Some(r#"{"classifier": "sometimes"}"#)),
        ("config", None),
        ("config", Some("[]")),
        ("format_version", Some("99")),
        ("heads", Some("[4]")),
        ("kind", Some("gpt")),
    ];
    for (key, value) in edits {
        let r = load_rewritten(&|raw| match value {
            Some(v) => {
                raw.metadata.insert(key.into(), v.into());
            }
            None => {
                raw.metadata.remove(key);
            }
        });
        assert!(
            matches!(&r, Err(Error::Format { .. })),
            "{key} = {value:?}: {r:?}"
        );
    }
    // A Linear without an activation mode.
    let r = load_rewritten(&|raw| {
        raw.metadata.insert("act_quant".into(), "{}".into());
    });
    assert!(matches!(&r, Err(Error::Format { .. })), "{r:?}");
    // A config whose vocabulary disagrees with the table.
    let r = load_rewritten(&|raw| {
        let c = raw.metadata["config"].replace("\"vocab_size\":50", "\"vocab_size\":51");
        raw.metadata.insert("config".into(), c);
    });
    assert!(matches!(&r, Err(Error::TensorShape { .. })), "{r:?}");
    // The untouched file still loads.
    assert!(load_rewritten(&|_| {}).is_ok());
}
