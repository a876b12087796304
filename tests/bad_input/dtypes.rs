//! Element types that do not fit: a checkpoint whose tensor is an integer or bool where an f32
//! parameter is expected, and an int8 model file whose tensors have the wrong types.

use super::*;
use lithe::Error;
use lithe::int8::{Int8Model, QuantPlan, ToInt8};
use lithe::nn::Module;
use safetensors::tensor::{Dtype, TensorView};
use safetensors::{SafeTensors, serialize};
use std::collections::HashMap;

/// `bytes` (a safetensors file) with the tensor `name` rewritten as `dtype`: its values
/// converted to it (or, for a same-size reinterpretation, its raw bytes kept).
fn retype(bytes: &[u8], name: &str, dtype: Dtype) -> Vec<u8> {
    let st = SafeTensors::deserialize(bytes).unwrap();
    let (_, meta) = SafeTensors::read_metadata(bytes).unwrap();
    let mut owned: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    let mut found = false;
    for (n, view) in st.tensors() {
        let shape = view.shape().to_vec();
        if n == name {
            found = true;
            let count: usize = shape.iter().product();
            let data = vec![0u8; count * dtype.bitsize() / 8];
            owned.push((n, dtype, shape, data));
        } else {
            owned.push((n, view.dtype(), shape, view.data().to_vec()));
        }
    }
    assert!(found, "no tensor {name}");
    let views: Vec<(String, TensorView<'_>)> = owned
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    let info: Option<HashMap<String, String>> = meta.metadata().clone();
    serialize(views, info).unwrap()
}

#[test]
fn checkpoint_with_wrong_dtypes_is_an_error() {
    let mut p = Probe::default();
    let bert = tiny_bert();
    let named: Vec<(String, Tensor)> = bert
        .named_params()
        .into_iter()
        .map(|(n, t)| (n, t.value()))
        .collect();
    let bytes = lithe::io::serialize_named(&named, None).unwrap();
    let name = named
        .iter()
        .find(|(n, _)| n.ends_with("query.weight"))
        .unwrap()
        .0
        .clone();
    for dtype in [Dtype::I32, Dtype::I64, Dtype::U8, Dtype::BOOL, Dtype::I8] {
        let bad = retype(&bytes, &name, dtype);
        p.expect(
            &format!("load {dtype:?}"),
            || lithe::io::load_bytes_into_module(&bert, &bad, true),
            |e| matches!(e, Error::TensorDtype { .. }),
        );
        let dir = scratch(&format!("dtype-{dtype:?}"));
        let path = dir.join("model.safetensors");
        std::fs::write(&path, &bad).unwrap();
        p.expect(
            &format!("load file {dtype:?}"),
            || lithe::io::load_into_module(&bert, &path, false),
            |e| matches!(e, Error::TensorDtype { .. }),
        );
        std::fs::remove_dir_all(dir).unwrap();
    }
    // F64 is documented as accepted (converted to f32): zeros load and the parameter is zero.
    let wide = retype(&bytes, &name, Dtype::F64);
    lithe::io::load_bytes_into_module(&bert, &wide, true).unwrap();
    let (_, param) = bert
        .named_params()
        .into_iter()
        .find(|(n, _)| *n == name)
        .unwrap();
    assert!(param.value().data().iter().all(|&v| v == 0.0));
    p.finish("checkpoint dtypes");
}

#[test]
fn int8_file_with_wrong_dtypes_is_an_error() {
    let mut p = Probe::default();
    let model = tiny_bert().to_int8(&QuantPlan::dynamic()).unwrap();
    let dir = scratch("int8-dtypes");
    let path = dir.join("model.int8.safetensors");
    model.save(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    // One tensor of each stored type, rewritten to another type of the same and of another size.
    let mut names: Vec<(String, Dtype)> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| (n, v.dtype()))
        .collect();
    names.sort();
    names.dedup_by(|a, b| a.1 == b.1);
    assert!(names.len() >= 2, "{names:?}");
    for (name, dtype) in &names {
        for to in [
            Dtype::F32,
            Dtype::F64,
            Dtype::I8,
            Dtype::U8,
            Dtype::I32,
            Dtype::F16,
        ] {
            if to == *dtype {
                continue;
            }
            let bad = retype(&bytes, name, to);
            std::fs::write(&path, &bad).unwrap();
            p.rejects(
                &format!("Int8Model::load {name} {dtype:?} as {to:?}"),
                || Int8Model::load(&path).map(|m| m.weight_bytes()),
            );
        }
    }
    std::fs::remove_dir_all(dir).unwrap();
    p.finish("int8 file dtypes");
}
