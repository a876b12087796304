//! The fuzz targets' seed corpus (`fuzz/corpus/`), and the absurd sizes the targets feed (a
//! config's hidden size of 2^40, a workspace batch of 2^40) pinned as typed errors. An input
//! fuzzing finds to crash gets its test here.
//!
//! `LITHE_WRITE_FUZZ_SEEDS=1 cargo test --release --test fuzz_regressions` rewrites the binary
//! model seeds from the tiny models the targets use (`fuzz/src/lib.rs`).

#[path = "../fuzz/src/lib.rs"]
#[allow(dead_code)]
mod tiny;

use lithe::Error;
use lithe::int8::Int8Model;
use lithe::io::{load_bytes_into_module, parse_config};
use lithe::nn::{Bert, BertConfig, MAX_PARAMS, Module, Vit, VitConfig};
use std::path::{Path, PathBuf};

fn corpus(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

/// The model seeds: a tiny f32 BERT checkpoint and tiny int8 BERT and ViT files.
#[test]
fn seed_models_load() {
    let dir = corpus("safetensors");
    let bert_st = dir.join("bert_tiny_f32.safetensors");
    let bert_i8 = dir.join("bert_tiny_int8.safetensors");
    let vit_i8 = dir.join("vit_tiny_int8.safetensors");
    if std::env::var_os("LITHE_WRITE_FUZZ_SEEDS").is_some() {
        lithe::io::save_module(&tiny::tiny_bert(32), &bert_st).unwrap();
        tiny::tiny_int8_bert(32).save(&bert_i8).unwrap();
        tiny::tiny_int8_vit().save(&vit_i8).unwrap();
    }
    let bert = tiny::tiny_bert(32);
    let report = load_bytes_into_module(&bert, &std::fs::read(&bert_st).unwrap(), true).unwrap();
    assert_eq!(report.loaded.len(), bert.named_params().len());
    let b = Int8Model::from_bytes(&std::fs::read(&bert_i8).unwrap()).unwrap();
    assert_eq!((b.hidden_size(), b.num_classes()), (8, 2));
    let v = Int8Model::from_bytes(&std::fs::read(&vit_i8).unwrap()).unwrap();
    assert_eq!(v.image_shape(), Some([1, 8, 8]));
}

/// Every config seed parses as its model kind, and its count is the built model's.
#[test]
fn seed_configs_count_their_parameters() {
    let mut seen = 0;
    for entry in std::fs::read_dir(corpus("config_json")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let mut rng = lithe::Rng::new(0);
        if let Ok(c) = parse_config::<BertConfig>(&text, "seed") {
            match c.num_params() {
                Ok(n) => assert_eq!(Bert::new(&c, &mut rng).unwrap().num_params(), n),
                Err(_) => assert!(Bert::new(&c, &mut rng).is_err()),
            }
            seen += 1;
        } else if let Ok(c) = parse_config::<VitConfig>(&text, "seed") {
            assert_eq!(
                Vit::new(&c, &mut rng).unwrap().num_params(),
                c.num_params().unwrap()
            );
            seen += 1;
        }
    }
    assert!(seen >= 5, "only {seen} config seeds parsed");
}

/// `config_json`: a hidden size of 2^40 used to reach the allocator (an abort); it is an
/// invalid argument before anything is allocated.
#[test]
fn config_with_huge_hidden_size_is_an_error() {
    let text = std::fs::read_to_string(corpus("config_json").join("bert_huge.json")).unwrap();
    let c: BertConfig = parse_config(&text, "fuzz").unwrap();
    let err = c.num_params().unwrap_err();
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err}");
    assert!(err.to_string().contains("parameter"), "{err}");
    assert!(Bert::new(&c, &mut lithe::Rng::new(0)).is_err());
}

/// `config_json`: sizes whose product overflows usize are an error, not a wrap or a panic.
#[test]
fn config_sizes_that_overflow_are_an_error() {
    let mut c = tiny::tiny_bert_config(32);
    c.vocab_size = usize::MAX / 2;
    assert!(c.num_params().is_err());
    let mut v = tiny::tiny_vit_config();
    v.image_size = 1 << 40;
    v.patch_size = 1;
    let err = Vit::new(&v, &mut lithe::Rng::new(0)).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err}");
    // A count just over the limit is refused; the tiny model is far below it.
    c = tiny::tiny_bert_config(MAX_PARAMS / 8 + 1);
    assert!(c.num_params().is_err());
    assert!(tiny::tiny_bert_config(32).num_params().unwrap() < 2000);
}

/// `config_json`: ALBERT shares blocks, so a million layers of a tiny block passes the
/// parameter count yet would allocate a million layers; the layer count is bounded too.
#[test]
fn config_with_absurd_layer_count_is_an_error() {
    let mut c = tiny::tiny_bert_config(32);
    c.num_hidden_layers = 1 << 20;
    c.num_hidden_groups = Some(1);
    let err = Bert::new(&c, &mut lithe::Rng::new(0)).unwrap_err();
    assert!(err.to_string().contains("layers"), "{err}");
}

/// `capi`: `lithe_workspace_new` with a max_batch of 2^40 used to size buffers with unchecked
/// products (an overflow panic or an allocation failure); it is an error naming the batch.
#[test]
fn workspace_for_absurd_batch_is_an_error() {
    let m = tiny::tiny_int8_bert(32);
    for (batch, seq) in [(1 << 40, 16), (usize::MAX, 1), (1 << 30, 16)] {
        let err = m.workspace(batch, seq).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument { .. }), "{err}");
        assert!(err.to_string().contains("exceed"), "{err}");
    }
    let v = tiny::tiny_int8_vit();
    assert!(v.workspace(usize::MAX / 3, 0).is_err());
    assert!(m.workspace(64, 16).is_ok());
}
