//! Helpers shared by the `lithe::io` integration tests.
#![allow(dead_code)]

use lithe::io::LoadReport;
use lithe::nn::{Module, join};
use lithe::{Error, Param, Tensor};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A module that is just a list of named parameters.
pub struct Toy {
    pub params: Vec<(String, Param)>,
}

impl Toy {
    pub fn new(specs: &[(&str, &[usize])]) -> Self {
        Toy {
            params: specs
                .iter()
                .map(|(n, s)| (n.to_string(), Param::new(Tensor::zeros(s))))
                .collect(),
        }
    }

    pub fn from_shapes(shapes: &BTreeMap<String, Vec<usize>>) -> Self {
        Toy {
            params: shapes
                .iter()
                .map(|(n, s)| (n.clone(), Param::new(Tensor::zeros(s))))
                .collect(),
        }
    }

    pub fn get(&self, name: &str) -> Tensor {
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
pub fn tmp_dir(name: &str) -> PathBuf {
    let base = std::env::var_os("CARGO_TARGET_TMPDIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!("io_safetensors-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A safetensors file from a header JSON (padded to 8 bytes) and a data section.
pub fn raw_file(header: &str, data: &[u8]) -> Vec<u8> {
    let mut h = header.as_bytes().to_vec();
    while !h.len().is_multiple_of(8) {
        h.push(b' ');
    }
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend(h);
    out.extend(data);
    out
}

pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub fn bits(t: &Tensor) -> Vec<u32> {
    t.data().iter().map(|v| v.to_bits()).collect()
}

pub fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

pub fn toy_values() -> Toy {
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

pub fn expect_format(result: Result<LoadReport, Error>, needles: &[&str]) {
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
