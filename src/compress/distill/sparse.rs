//! TinyViT's stored sparse teacher logits (Wu et al. 2022): one teacher pass keeps, per sample,
//! the top-k probabilities (fp16) and their classes; the student later trains from that file with
//! no teacher in memory. The mass the file drops, `1 - sum(top-k)`, is spread uniformly over the
//! other `C - k` classes.
//!
//! On disk a [`SparseLogits`] is a safetensors file: `values` F16 `[n, k]` (probabilities,
//! descending per row), `indices` U8 `[n, k]` (U16 beyond 256 classes), and the metadata
//! `classes`, `k` and `temperature`. A dense file of the same teacher keeps `n * C` f32 logits;
//! [`SparseLogits::dense_bytes`] gives that size for comparison.

use crate::autograd::{Graph, Var};
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use half::f16;
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use std::collections::HashMap;
use std::path::Path;

/// Top-k teacher probabilities of `n` samples over `classes` classes.
#[derive(Clone, Debug, PartialEq)]
pub struct SparseLogits {
    classes: usize,
    k: usize,
    temperature: f32,
    /// `[n, k]`, descending per row.
    values: Vec<f16>,
    /// `[n, k]`, the class of each value.
    indices: Vec<u16>,
}

impl SparseLogits {
    /// An empty store for the top `k` of `classes` classes of `softmax(logits / temperature)`.
    ///
    /// Errors: [`Error::InvalidArgument`] unless `1 <= k <= classes <= 65536` and the
    /// temperature is finite and positive.
    pub fn new(classes: usize, k: usize, temperature: f32) -> Result<Self> {
        const OP: &str = "SparseLogits::new";
        if k == 0 || k > classes || classes > 1 << 16 {
            return Err(Error::invalid(
                OP,
                format!("need 1 <= k <= classes <= 65536, got k = {k}, classes = {classes}"),
            ));
        }
        if !(temperature.is_finite() && temperature > 0.0) {
            return Err(Error::invalid(
                OP,
                format!("temperature = {temperature} must be finite and positive"),
            ));
        }
        Ok(SparseLogits {
            classes,
            k,
            temperature,
            values: Vec::new(),
            indices: Vec::new(),
        })
    }

    /// Appends the rows of teacher `logits[rows, classes]` (row-major): each row's tempered
    /// softmax, of which the top k are kept (the lower class first on ties).
    /// [`Error::Shape`] unless the length is a multiple of the class count, [`Error::NonFinite`]
    /// (nothing appended) for a NaN or infinite logit.
    pub fn push_logits(&mut self, logits: &[f32]) -> Result<()> {
        let c = self.classes;
        if !logits.len().is_multiple_of(c) {
            return Err(Error::shape(
                "SparseLogits::push_logits",
                format!("{} logits are not rows of {c} classes", logits.len()),
            ));
        }
        if let Some(x) = logits.iter().find(|x| !x.is_finite()) {
            return Err(Error::NonFinite {
                op: "SparseLogits::push_logits",
                msg: format!("a teacher logit is {x}"),
            });
        }
        let mut order: Vec<usize> = Vec::with_capacity(c);
        let mut probs = vec![0f32; c];
        for row in logits.chunks_exact(c) {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0f64;
            for (p, &x) in probs.iter_mut().zip(row) {
                *p = ((x - max) / self.temperature).exp();
                sum += *p as f64;
            }
            let inv = (1.0 / sum) as f32;
            probs.iter_mut().for_each(|p| *p *= inv);
            order.clear();
            order.extend(0..c);
            // Stable: equal probabilities keep the lower class first.
            order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
            for &class in &order[..self.k] {
                self.values.push(f16::from_f32(probs[class]));
                self.indices.push(class as u16);
            }
        }
        Ok(())
    }

    /// Samples stored.
    pub fn len(&self) -> usize {
        self.values.len() / self.k
    }

    /// Whether no sample is stored.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Classes C.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Probabilities kept per sample.
    pub fn k(&self) -> usize {
        self.k
    }

    /// The temperature the probabilities were computed at.
    pub fn temperature(&self) -> f32 {
        self.temperature
    }

    /// Sample `row`'s kept `(class, probability)` pairs, most probable first.
    pub fn top(&self, row: usize) -> impl Iterator<Item = (usize, f32)> + '_ {
        let span = row * self.k..(row + 1) * self.k;
        self.indices[span.clone()]
            .iter()
            .zip(&self.values[span])
            .map(|(&c, &v)| (c as usize, v.to_f32()))
    }

    /// The teacher distribution of `rows` rebuilt as `[rows.len(), C]`: the kept probabilities
    /// in place and `max(0, 1 - sum(kept)) / (C - k)` in every other class.
    /// [`Error::Index`] for a row past the end.
    pub fn targets(&self, rows: &[usize]) -> Result<Tensor> {
        let c = self.classes;
        let mut out = vec![0f32; rows.len() * c];
        for (dst, &r) in out.chunks_exact_mut(c).zip(rows) {
            if r >= self.len() {
                return Err(Error::Index {
                    op: "SparseLogits::targets",
                    index: r,
                    size: self.len(),
                });
            }
            let kept: f32 = self.top(r).map(|(_, p)| p).sum();
            let rest = if c > self.k {
                (1.0 - kept).max(0.0) / (c - self.k) as f32
            } else {
                0.0
            };
            dst.fill(rest);
            for (class, p) in self.top(r) {
                dst[class] = p;
            }
        }
        Tensor::from_vec(out, &[rows.len(), c])
    }

    /// Bytes of a dense file of `n` samples: every class's logit as f32.
    pub fn dense_bytes(n: usize, classes: usize) -> usize {
        n * classes * 4
    }

    /// The width of one stored class index: 1 byte up to 256 classes, else 2.
    fn index_dtype(&self) -> Dtype {
        if self.classes <= 256 {
            Dtype::U8
        } else {
            Dtype::U16
        }
    }

    /// The file's bytes (safetensors; see the module docs).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        const OP: &str = "SparseLogits::save";
        let shape = vec![self.len(), self.k];
        let values: Vec<u8> = self.values.iter().flat_map(|v| v.to_le_bytes()).collect();
        let indices: Vec<u8> = match self.index_dtype() {
            Dtype::U8 => self.indices.iter().map(|&i| i as u8).collect(),
            _ => self.indices.iter().flat_map(|i| i.to_le_bytes()).collect(),
        };
        let err = |e: safetensors::SafeTensorError| Error::invalid(OP, e.to_string());
        let views = vec![
            (
                "values",
                TensorView::new(Dtype::F16, shape.clone(), &values).map_err(err)?,
            ),
            (
                "indices",
                TensorView::new(self.index_dtype(), shape, &indices).map_err(err)?,
            ),
        ];
        let meta = HashMap::from([
            ("classes".to_string(), self.classes.to_string()),
            ("k".to_string(), self.k.to_string()),
            ("temperature".to_string(), self.temperature.to_string()),
        ]);
        safetensors::serialize(views, Some(meta)).map_err(err)
    }

    /// Writes the file to `path`.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        std::fs::write(path, self.to_bytes()?).map_err(|e| crate::io::file_error(path, e))
    }

    /// Reads a file written by [`SparseLogits::save`].
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| crate::io::file_error(path, e))?;
        Self::from_bytes(&bytes)
    }

    /// Parses a file's bytes. [`Error::InvalidArgument`] for anything but a well-formed sparse
    /// logit file (missing tensors or metadata, wrong dtypes or shapes, a class out of range).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        const OP: &str = "SparseLogits::load";
        let bad = |msg: String| Error::invalid(OP, msg);
        let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| bad(e.to_string()))?;
        let st = SafeTensors::deserialize(bytes).map_err(|e| bad(e.to_string()))?;
        let meta = meta.metadata().clone().unwrap_or_default();
        let field = |key: &str| -> Result<&String> {
            meta.get(key)
                .ok_or_else(|| bad(format!("metadata `{key}` is missing")))
        };
        let parse_usize = |key: &str| -> Result<usize> {
            field(key)?
                .parse()
                .map_err(|_| bad(format!("metadata `{key}` is not a count")))
        };
        let classes = parse_usize("classes")?;
        let k = parse_usize("k")?;
        let temperature: f32 = field("temperature")?
            .parse()
            .map_err(|_| bad("metadata `temperature` is not a number".into()))?;
        let mut out = SparseLogits::new(classes, k, temperature)?;
        let values = st.tensor("values").map_err(|e| bad(e.to_string()))?;
        let indices = st.tensor("indices").map_err(|e| bad(e.to_string()))?;
        let shape = values.shape().to_vec();
        if values.dtype() != Dtype::F16 || shape.len() != 2 || shape[1] != k {
            return Err(bad(format!(
                "`values` must be F16 [n, {k}], got {:?} {shape:?}",
                values.dtype()
            )));
        }
        if indices.dtype() != out.index_dtype() || indices.shape() != shape.as_slice() {
            return Err(bad(format!(
                "`indices` must be {:?} {shape:?}, got {:?} {:?}",
                out.index_dtype(),
                indices.dtype(),
                indices.shape()
            )));
        }
        out.values = values
            .data()
            .chunks_exact(2)
            .map(|b| f16::from_le_bytes([b[0], b[1]]))
            .collect();
        out.indices = match out.index_dtype() {
            Dtype::U8 => indices.data().iter().map(|&i| i as u16).collect(),
            _ => indices
                .data()
                .chunks_exact(2)
                .map(|b| u16::from_le_bytes([b[0], b[1]]))
                .collect(),
        };
        if let Some(&c) = out.indices.iter().find(|&&c| c as usize >= classes) {
            return Err(bad(format!("class {c} of {classes}")));
        }
        if let Some(v) = out.values.iter().find(|v| v.is_nan() || v.to_f32() < 0.0) {
            return Err(bad(format!("probability {v} is not >= 0")));
        }
        Ok(out)
    }
}

/// KD from stored targets: `T^2 / B * sum_rows KL(p || softmax(student / T))` for the student's
/// `logits[B, C]` and the rebuilt teacher distribution `targets[B, C]` ([`SparseLogits::targets`],
/// already at temperature T). With dense targets `softmax(teacher / T)` it equals
/// [`soft_kd`](super::soft_kd)`(student, teacher, T)`.
///
/// Errors: [`Error::Shape`] unless both are the same `[B, C]`; [`Error::InvalidArgument`] for a
/// temperature that is not finite and positive.
pub fn sparse_kd(g: &Graph, student_logits: Var, targets: Tensor, temperature: f32) -> Result<Var> {
    const OP: &str = "sparse_kd";
    if !(temperature.is_finite() && temperature > 0.0) {
        return Err(Error::invalid(
            OP,
            format!("temperature = {temperature} must be finite and positive"),
        ));
    }
    let shape = g.shape(student_logits)?;
    if shape.len() != 2 || targets.shape() != shape.as_slice() {
        return Err(Error::shape(
            OP,
            format!(
                "student logits {shape:?} and targets {:?} must be one [B, C] shape",
                targets.shape()
            ),
        ));
    }
    let s = if temperature == 1.0 {
        student_logits
    } else {
        g.mul_scalar(student_logits, 1.0 / temperature)?
    };
    let log_q = g.log_softmax(s)?;
    let kl = g.kl_div(log_q, g.constant(targets))?;
    g.mul_scalar(kl, temperature * temperature)
}
