//! The leaf layers: [`Linear`], [`LayerNorm`], [`Embedding`], and the initialisers they share.
//!
//! Shapes: `x` is `[..., in]` (any rank >= 2 for `Linear`), `C` the normalised width.

use super::{Module, join};
use crate::autograd::{Graph, Param, Var};
use crate::error::{Error, Result};
use crate::tensor::{self, Rng, Tensor};
use lithe_kernels::{GemmOptions, MatRef, PackedB};
use std::sync::{Arc, Mutex};

/// Standard deviation of BERT's and ViT's weight initialisation (`initializer_range`).
pub const INIT_STD: f32 = 0.02;

/// Samples `N(0, std^2)` truncated to `[-2 std, 2 std]` by rejection (timm / Hugging Face ViT's
/// `trunc_normal_`), deterministic given `rng`.
pub fn trunc_normal(shape: &[usize], std: f32, rng: &mut Rng) -> Tensor {
    let n: usize = shape.iter().product();
    let data = (0..n)
        .map(|_| {
            loop {
                let z = rng.normal();
                if z.abs() <= 2.0 {
                    break (z * std as f64) as f32;
                }
            }
        })
        .collect();
    Tensor::from_vec(data, shape).expect("n elements fill the shape")
}

/// How a layer's weights are drawn: BERT uses a plain normal, ViT a truncated one.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// `N(0, std^2)` (Hugging Face BERT's `_init_weights`).
    Normal(f32),
    /// `N(0, std^2)` truncated to `±2 std` (Hugging Face ViT, timm).
    TruncNormal(f32),
}

impl Init {
    /// A tensor drawn from this distribution.
    pub fn sample(self, shape: &[usize], rng: &mut Rng) -> Tensor {
        match self {
            Init::Normal(std) => Tensor::randn(shape, 0.0, std, rng),
            Init::TruncNormal(std) => trunc_normal(shape, std, rng),
        }
    }
}

/// `y = x W^T + b`, with `W[out, in]` stored as PyTorch's `nn.Linear.weight`.
///
/// On graphs without gradients (inference) the layer multiplies by `W^T` packed once for the
/// GEMM kernels, kept until the weight changes.
#[derive(Clone, Debug)]
pub struct Linear {
    /// `[out, in]`.
    pub weight: Param,
    /// `[out]`, absent for a bias-free layer.
    pub bias: Option<Param>,
    packed: PackedWeight,
}

/// `W^T` packed for inference (shared by clones of the layer).
#[derive(Clone, Debug, Default)]
struct PackedWeight(Arc<Mutex<Option<PackedEntry>>>);

/// A packing and the weight handle and version it was made from.
#[derive(Debug)]
struct PackedEntry {
    weight: Param,
    version: u64,
    packed: Arc<PackedB>,
}

impl PackedWeight {
    /// The packed `W^T` of `weight`, packing it again when the weight (or its value) changed.
    fn get(&self, weight: &Param) -> Result<Arc<PackedB>> {
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let version = weight.version();
        if let Some(e) = &*slot
            && e.weight.same_as(weight)
            && e.version == version
        {
            return Ok(e.packed.clone());
        }
        let w = weight.value();
        let [out, inp] = w.shape()[..] else {
            return Err(Error::shape(
                "Linear",
                format!("weight {:?} is not [out, in]", w.shape()),
            ));
        };
        let w_t = MatRef::row_major(w.data(), out, inp)?.t();
        let packed = Arc::new(PackedB::pack(w_t, &GemmOptions::default())?);
        *slot = Some(PackedEntry {
            weight: weight.clone(),
            version,
            packed: packed.clone(),
        });
        Ok(packed)
    }
}

impl Linear {
    /// A layer with weights drawn from `init` and a zero bias when `bias` is true.
    pub fn new(inputs: usize, outputs: usize, bias: bool, init: Init, rng: &mut Rng) -> Self {
        Linear {
            weight: Param::new(init.sample(&[outputs, inputs], rng)),
            bias: bias.then(|| Param::new(Tensor::zeros(&[outputs]))),
            packed: PackedWeight::default(),
        }
    }

    /// A layer around existing parameters (`weight[out, in]`, `bias[out]`); [`Error::Shape`]
    /// if they do not fit.
    pub fn from_params(weight: Param, bias: Option<Param>) -> Result<Self> {
        let ws = weight.shape();
        if ws.len() != 2 || bias.as_ref().is_some_and(|b| b.shape() != [ws[0]]) {
            return Err(Error::shape(
                "Linear::from_params",
                format!(
                    "weight {ws:?} must be [out, in] and bias [out], bias is {:?}",
                    bias.as_ref().map(|b| b.shape())
                ),
            ));
        }
        Ok(Linear {
            weight,
            bias,
            packed: PackedWeight::default(),
        })
    }

    /// Input width.
    pub fn in_features(&self) -> usize {
        self.weight.shape()[1]
    }

    /// Output width.
    pub fn out_features(&self) -> usize {
        self.weight.shape()[0]
    }

    /// `x[..., in] -> [..., out]`: one GEMM over all leading rows with `W` read transposed
    /// in place and the bias added in its epilogue ([`Graph::linear`]); without gradients, on
    /// the packed `W^T`.
    pub fn forward(&self, g: &Graph, x: Var) -> Result<Var> {
        if !g.grad_enabled() {
            let packed = self.packed.get(&self.weight)?;
            let bias = self.bias.as_ref().map(Param::value);
            let y = tensor::linear_packed(&g.value(x)?, &packed, bias.as_ref())?;
            return Ok(g.constant(y)); // [..., out]
        }
        let bias = self.bias.as_ref().map(|b| g.param(b));
        g.linear(x, g.param(&self.weight), bias) // [..., out]
    }
}

impl Module for Linear {
    fn named_params_with_prefix(&self, prefix: &str, out: &mut Vec<(String, Param)>) {
        out.push((join(prefix, "weight"), self.weight.clone()));
        if let Some(b) = &self.bias {
            out.push((join(prefix, "bias"), b.clone()));
        }
    }

    fn visit_linears_with_prefix(&self, prefix: &str, f: &mut dyn FnMut(&str, &Linear)) {
        f(prefix, self);
    }
}

/// LayerNorm over the last axis with a learned `weight` (ones) and `bias` (zeros).
#[derive(Clone, Debug)]
pub struct LayerNorm {
    /// `[C]`.
    pub weight: Param,
    /// `[C]`.
    pub bias: Param,
    /// Added to the variance.
    pub eps: f32,
}

impl LayerNorm {
    /// Weight ones, bias zeros.
    pub fn new(width: usize, eps: f32) -> Self {
        LayerNorm {
            weight: Param::new(Tensor::ones(&[width])),
            bias: Param::new(Tensor::zeros(&[width])),
            eps,
        }
    }

    /// `x[..., C] -> [..., C]`.
    pub fn forward(&self, g: &Graph, x: Var) -> Result<Var> {
        g.layernorm(x, g.param(&self.weight), g.param(&self.bias), self.eps)
    }
}

impl Module for LayerNorm {
    fn named_params_with_prefix(&self, prefix: &str, out: &mut Vec<(String, Param)>) {
        out.push((join(prefix, "weight"), self.weight.clone()));
        out.push((join(prefix, "bias"), self.bias.clone()));
    }
}

/// A lookup table `weight[V, C]` (PyTorch's `nn.Embedding`).
#[derive(Clone, Debug)]
pub struct Embedding {
    /// `[V, C]`.
    pub weight: Param,
}

impl Embedding {
    /// A table drawn from `init`.
    pub fn new(rows: usize, width: usize, init: Init, rng: &mut Rng) -> Self {
        Embedding {
            weight: Param::new(init.sample(&[rows, width], rng)),
        }
    }

    /// Number of rows (vocabulary size).
    pub fn rows(&self) -> usize {
        self.weight.shape()[0]
    }

    /// Rows `ids` of the table: `[ids.len(), C]`; [`Error::Index`] for an id out of range.
    pub fn forward(&self, g: &Graph, ids: &[usize]) -> Result<Var> {
        g.embedding(g.param(&self.weight), ids)
    }
}

impl Module for Embedding {
    fn named_params_with_prefix(&self, prefix: &str, out: &mut Vec<(String, Param)>) {
        out.push((join(prefix, "weight"), self.weight.clone()));
    }
}
