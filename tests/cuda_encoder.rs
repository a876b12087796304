//! GPU test of `CudaEncoder` (fp16 BERT forward) against the CPU fp32 `Bert::forward_hidden`:
//! per-token cosine similarity >= 0.999 on random small BERTs (head dims 32 and 64, padded
//! batches), and, when `LITHE_MINILM_DIR` names the all-MiniLM-L6-v2 directory, on the real
//! model plus its sentence embeddings vs `tests/fixtures/minilm/reference.json`.
//! Without a usable GPU each test prints a note and passes, unless `REQUIRE_CUDA=1`.
//! Run: `cargo test --release --features cuda --test cuda_encoder`.
#![cfg(feature = "cuda")]

use lithe::Graph;
use lithe::cuda::{CudaDevice, CudaEncoder};
use lithe::embed::SentenceEncoder;
use lithe::nn::{AttentionMask, Bert, BertConfig};
use lithe::tensor::Rng;
use serde_json::Value;

mod cuda_common;

use cuda_common::device;

const MIN_COS: f64 = 0.999;

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (x as f64, y as f64);
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    ab / (aa.sqrt() * bb.sqrt()).max(1e-30)
}

/// Runs CPU fp32 and GPU fp16 on the same batch; returns the smallest per-token cosine.
fn compare(
    dev: &CudaDevice,
    bert: &Bert,
    gpu: &mut CudaEncoder,
    ids: &[u32],
    types: Option<&[u32]>,
    shape: [usize; 2],
    lens: &[usize],
) -> f64 {
    let [b, t] = shape;
    let h = bert.config.hidden_size;
    let g = Graph::inference();
    let mask = AttentionMask::from_lengths(lens, t).unwrap();
    let ids_us: Vec<usize> = ids.iter().map(|&i| i as usize).collect();
    let types_us: Option<Vec<usize>> = types.map(|tt| tt.iter().map(|&i| i as usize).collect());
    let cpu = g
        .value(
            bert.forward_hidden(&g, &ids_us, shape, types_us.as_deref(), Some(&mask))
                .unwrap(),
        )
        .unwrap();
    let got = gpu.forward_f32(dev, ids, shape, types, Some(lens)).unwrap();
    assert_eq!(got.len(), b * t * h);
    assert!(got.iter().all(|v| v.is_finite()), "non-finite GPU output");
    let mut worst = 1.0f64;
    for (r, (x, y)) in got
        .chunks_exact(h)
        .zip(cpu.data().chunks_exact(h))
        .enumerate()
    {
        let c = cosine(x, y);
        assert!(
            c >= MIN_COS,
            "token {r} (batch {}, pos {}): cosine {c}",
            r / t,
            r % t
        );
        worst = worst.min(c);
    }
    worst
}

fn random_ids(n: usize, vocab: usize, rng: &mut u64) -> Vec<u32> {
    (0..n)
        .map(|_| {
            *rng ^= *rng << 13;
            *rng ^= *rng >> 7;
            *rng ^= *rng << 17;
            (*rng % vocab as u64) as u32
        })
        .collect()
}

/// A BERT config with a 1000-token vocabulary, 160 positions and no dropout.
fn small_config(
    h: usize,
    nh: usize,
    layers: usize,
    inner: usize,
    act: &str,
    head: Option<usize>,
) -> BertConfig {
    BertConfig {
        vocab_size: 1000,
        hidden_size: h,
        num_hidden_layers: layers,
        num_attention_heads: nh,
        intermediate_size: inner,
        hidden_act: act.into(),
        max_position_embeddings: 160,
        attention_head_size: head,
        ..BertConfig::default()
    }
}

#[test]
fn random_bert_matches_cpu_fp32() {
    let Some(dev) = device("random_bert_matches_cpu_fp32") else {
        return;
    };
    // (hidden, heads, layers, inner, act, head width): head dims 32 and 64, both GELU forms,
    // and a pruned model whose 2 heads of 32 make Q/K/V 64 wide against H = 128.
    for (h, nh, layers, inner, act, head) in [
        (128, 4, 2, 256, "gelu", None),
        (128, 2, 3, 512, "gelu_new", None),
        (128, 2, 2, 192, "gelu", Some(32)),
    ] {
        let c = small_config(h, nh, layers, inner, act, head);
        let bert = Bert::new(&c, &mut Rng::new(7)).unwrap();
        // Larger weights than N(0, 0.02) so attention is far from uniform.
        for (_, p) in lithe::nn::Module::named_params(&bert) {
            let v = p.value();
            if v.shape().len() == 2 {
                let scaled: Vec<f32> = v.data().iter().map(|x| x * 5.0).collect();
                p.set_value(lithe::tensor::Tensor::from_vec(scaled, v.shape()).unwrap())
                    .unwrap();
            }
        }
        let mut gpu = CudaEncoder::from_bert(&dev, &bert).unwrap();
        let mut s = 0x1234_5678_9abc_def1u64;
        for (b, t, lens) in [
            (1usize, 1usize, vec![1usize]),
            (2, 7, vec![7, 3]),
            (3, 130, vec![130, 64, 1]),
            (4, 33, vec![33, 33, 20, 2]),
        ] {
            let ids = random_ids(b * t, c.vocab_size, &mut s);
            let types: Vec<u32> = random_ids(b * t, 2, &mut s);
            let w = compare(&dev, &bert, &mut gpu, &ids, Some(&types), [b, t], &lens);
            eprintln!(
                "random BERT H{h} nh{nh} L{layers} {act} [{b}, {t}]: min token cosine {w:.6}"
            );
        }
    }
}

struct Case {
    text: String,
    embedding: Vec<f32>,
}

fn fixture() -> Vec<Case> {
    let raw = include_str!("fixtures/minilm/reference.json");
    let json: Value = serde_json::from_str(raw).unwrap();
    json["sentences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| Case {
            text: s["text"].as_str().unwrap().to_string(),
            embedding: s["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap() as f32)
                .collect(),
        })
        .collect()
}

#[test]
fn minilm_matches_cpu_and_reference() {
    let Ok(dir) = std::env::var("LITHE_MINILM_DIR") else {
        eprintln!("NOTE: LITHE_MINILM_DIR unset; skipping the real MiniLM GPU checks");
        return;
    };
    let Some(dev) = device("minilm_matches_cpu_and_reference") else {
        return;
    };
    let enc = SentenceEncoder::from_hf_dir(&dir).unwrap();
    let mut gpu = CudaEncoder::from_bert(&dev, &enc.bert).unwrap();
    let cases = fixture();
    let texts: Vec<&str> = cases.iter().map(|c| c.text.as_str()).collect();

    // Token states of the padded fixture batch vs CPU fp32.
    let e = enc.tokenizer.encode_batch(&texts, enc.max_len).unwrap();
    let w = compare(
        &dev,
        &enc.bert,
        &mut gpu,
        &e.ids,
        Some(&e.token_type_ids),
        [e.batch, e.seq],
        &e.lengths(),
    );
    eprintln!(
        "MiniLM [{}, {}]: min token cosine vs CPU fp32 {w:.6}",
        e.batch, e.seq
    );

    // A full B32 x L128 batch of random ids (no padding) vs CPU fp32.
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    let mut ids = random_ids(32 * 128, enc.bert.config.vocab_size - 1000, &mut s);
    ids.iter_mut().for_each(|i| *i += 1000);
    let w = compare(&dev, &enc.bert, &mut gpu, &ids, None, [32, 128], &[128; 32]);
    eprintln!("MiniLM [32, 128] random ids: min token cosine vs CPU fp32 {w:.6}");

    // Sentence embeddings, one at a time and batched, vs the PyTorch reference.
    let mut worst = 1.0f64;
    for case in &cases {
        let got = enc
            .embed_cuda(&dev, &mut gpu, &[&case.text])
            .unwrap()
            .remove(0);
        let c = cosine(&got, &case.embedding);
        assert!(c >= MIN_COS, "{:?}: cosine {c}", case.text);
        worst = worst.min(c);
    }
    for (got, case) in enc
        .embed_cuda(&dev, &mut gpu, &texts)
        .unwrap()
        .iter()
        .zip(&cases)
    {
        let c = cosine(got, &case.embedding);
        assert!(c >= MIN_COS, "batched {:?}: cosine {c}", case.text);
        worst = worst.min(c);
    }
    eprintln!(
        "MiniLM GPU embeddings: min cosine vs PyTorch reference {worst:.6} over {} sentences",
        cases.len()
    );
}

/// The fp16 encoder through `lithe::check`: its last hidden states against the f32 model's
/// over a few padded batches, with the per-stage report (the CUDA engine traces only the last
/// layer, so the other stages are listed as not compared).
#[test]
fn cuda_engine_is_equivalent_to_f32_through_check() {
    use lithe::check::{CudaEngine, F32Engine, Sample, Tolerance, assert_equivalent};
    let Some(dev) = device("cuda_engine_is_equivalent_to_f32_through_check") else {
        return;
    };
    let c = small_config(128, 4, 2, 256, "gelu", None);
    let bert = Bert::new(&c, &mut Rng::new(11)).unwrap();
    let mut s = 0x0fed_cba9_8765_4321u64;
    let samples: Vec<Sample> = [(2usize, 9usize, vec![9usize, 4]), (3, 17, vec![17, 1, 8])]
        .into_iter()
        .map(|(b, t, lens)| {
            Sample::tokens(random_ids(b * t, c.vocab_size, &mut s), b, t, Some(lens))
        })
        .collect();
    let report = assert_equivalent(
        &mut CudaEngine::new(&dev, &bert).unwrap(),
        &mut F32Engine::bert(&bert),
        &samples,
        &Tolerance::cosine(MIN_COS),
    );
    eprintln!("{report}");
    assert_eq!(report.stages.len(), 1);
    assert_eq!(report.stages[0].name, "layer.1");
}
