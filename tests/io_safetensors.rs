//! `lithe::io`: safetensors round trips, every malformed-file error, and dtype conversion.

mod io_common;

use io_common::*;
use lithe::io;
use lithe::nn::Module;
use lithe::{Error, Param, Tensor};
use std::collections::HashMap;

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
