//! The leaf layers: [`Linear`], [`LayerNorm`], [`Embedding`], and the initialisers they share.
//!
//! Shapes: `x` is `[..., in]` (any rank >= 2 for `Linear`), `C` the normalised width.

use super::{Module, join};
use crate::autograd::ops::quant::fake_quant_rows;
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
///
/// A layer can carry quantization-aware-training state ([`LinearQuant`], set with
/// [`Linear::set_quant`]); its forward then fake-quantizes input and weight as the int8 engine
/// quantizes them. Clones share that state, as they share the parameters.
#[derive(Clone, Debug)]
pub struct Linear {
    /// `[out, in]`.
    pub weight: Param,
    /// `[out]`, absent for a bias-free layer.
    pub bias: Option<Param>,
    packed: PackedWeight,
    quant: QuantSlot,
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
            quant: QuantSlot::default(),
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
            quant: QuantSlot::default(),
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

    /// The layer's quantization-aware-training state, if any (a copy).
    pub fn quant(&self) -> Option<LinearQuant> {
        *self.quant.lock()
    }

    /// Sets (or, with `None`, removes) the quantization-aware-training state. Takes `&self` so
    /// a pass over [`Module::visit_linears`] can prepare a whole model.
    pub fn set_quant(&self, quant: Option<LinearQuant>) {
        *self.quant.lock() = quant;
    }

    /// `x[..., in] -> [..., out]`: one GEMM over all leading rows with `W` read transposed
    /// in place and the bias added in its epilogue ([`Graph::linear`]); without gradients, on
    /// the packed `W^T`.
    ///
    /// With quantization state ([`Linear::set_quant`]): the input's range is observed (on a
    /// training graph with gradients on, or while calibrating), the input is fake-quantized per
    /// tensor with `symmetric_scale(range)` (or per row for [`InputQuant::Dynamic`]), the weight
    /// per output row with a fresh max, then the same GEMM with the bias in f32. While
    /// calibrating the layer only observes and computes in f32.
    pub fn forward(&self, g: &Graph, x: Var) -> Result<Var> {
        if self.quant().is_some() {
            return self.forward_quant(g, x);
        }
        self.forward_f32(g, x)
    }

    fn forward_f32(&self, g: &Graph, x: Var) -> Result<Var> {
        if !g.grad_enabled() {
            let packed = self.packed.get(&self.weight)?;
            let bias = self.bias.as_ref().map(Param::value);
            let y = tensor::linear_packed(&g.value(x)?, &packed, bias.as_ref())?;
            return Ok(g.constant(y)); // [..., out]
        }
        let bias = self.bias.as_ref().map(|b| g.param(b));
        g.linear(x, g.param(&self.weight), bias) // [..., out]
    }

    fn forward_quant(&self, g: &Graph, x: Var) -> Result<Var> {
        let observing = g.is_training() && g.grad_enabled();
        let xq = match self.quant.observe(&g.value(x)?, observing)? {
            InputStep::Float => return self.forward_f32(g, x),
            InputStep::Static(scale) => g.fake_quant(x, scale)?, // [..., in]
            InputStep::PerRow => g.fake_quant_per_row(x)?,
        };
        let bias = self.bias.as_ref();
        if !g.grad_enabled() {
            // Not the packed cache: it holds the f32 weight.
            let (wq, _) = fake_quant_rows(&self.weight.value())?; // [out, in]
            let bias = bias.map(Param::value);
            let y = tensor::linear(&g.value(xq)?, &wq, bias.as_ref())?;
            return Ok(g.constant(y)); // [..., out]
        }
        let wq = g.fake_quant_per_row(g.param(&self.weight))?; // [out, in]
        g.linear(xq, wq, bias.map(|b| g.param(b))) // [..., out]
    }
}

/// How a [`Linear`] under quantization-aware training quantizes its input (the int8 engine's
/// `ActQuant`: a static scale per tensor from the observed range, or per row at run time).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum InputQuant {
    /// Static scale from an exponential moving average of `max|x|` over training steps
    /// (Q8BERT): `range = decay * range + (1 - decay) * max|x|`, the first observation
    /// initialising it.
    Ema {
        /// Weight of the old range, in `[0, 1)` (Q8BERT: 0.9999).
        decay: f32,
    },
    /// Static scale from the running maximum of `max|x|` (post-training calibration).
    Max,
    /// Each row quantized with its own `max|row| / 127` when it runs; nothing to observe.
    Dynamic,
}

/// The quantization-aware-training state of one [`Linear`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LinearQuant {
    /// How the input is quantized and its range observed.
    pub input: InputQuant,
    /// The observed `max|x|`, `None` until the first observation.
    pub range: Option<f32>,
    /// Calibration: every forward (training graph or not) raises `range` to the running
    /// maximum, and the layer computes in f32 without fake quantization (observers only).
    pub calibrating: bool,
}

impl LinearQuant {
    /// A state with nothing observed yet, not calibrating.
    pub fn new(input: InputQuant) -> Self {
        LinearQuant {
            input,
            range: None,
            calibrating: false,
        }
    }

    /// The static input scale, `symmetric_scale(range)`; `None` for a dynamic layer or one that
    /// has observed nothing.
    pub fn input_scale(&self) -> Option<f32> {
        match self.input {
            InputQuant::Dynamic => None,
            _ => self.range.map(crate::int8::symmetric_scale),
        }
    }

    /// Folds one batch's `max|x|` into the range (see [`InputQuant`]).
    fn observe(&mut self, max_abs: f32) {
        self.range = Some(match (self.range, self.input) {
            (Some(r), InputQuant::Ema { decay }) if !self.calibrating => {
                decay * r + (1.0 - decay) * max_abs
            }
            (Some(r), _) => r.max(max_abs),
            (None, _) => max_abs,
        });
    }
}

/// What [`Linear::forward`] does with its input under quantization.
enum InputStep {
    /// Calibrating: no fake quantization at all.
    Float,
    /// Fake-quantize per tensor with this scale.
    Static(f32),
    /// Fake-quantize per row.
    PerRow,
}

/// The [`LinearQuant`] of a layer (shared by clones of the layer).
#[derive(Clone, Debug, Default)]
struct QuantSlot(Arc<Mutex<Option<LinearQuant>>>);

impl QuantSlot {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<LinearQuant>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Observes `x` (when `training`, or always while calibrating) and says how to quantize it.
    /// [`Error::InvalidArgument`] for a static layer that has never observed a range.
    fn observe(&self, x: &Tensor, training: bool) -> Result<InputStep> {
        let mut slot = self.lock();
        let Some(q) = slot.as_mut() else {
            return Ok(InputStep::Float);
        };
        if q.input != InputQuant::Dynamic && (training || q.calibrating) {
            x.check_finite("Linear (observer)")?;
            q.observe(x.data().iter().fold(0.0f32, |m, v| m.max(v.abs())));
        }
        if q.calibrating {
            return Ok(InputStep::Float);
        }
        match (q.input, q.input_scale()) {
            (InputQuant::Dynamic, _) => Ok(InputStep::PerRow),
            (_, Some(scale)) => Ok(InputStep::Static(scale)),
            (_, None) => Err(Error::invalid(
                "Linear",
                "a statically quantized layer has no input range yet: \
                 run a training step or calibrate first",
            )),
        }
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
