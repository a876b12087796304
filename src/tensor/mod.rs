//! `Tensor`: a contiguous, row-major f32 array with a shape, and the forward maths on it.
//!
//! Storage is an `Arc<Vec<f32>>`: cloning a tensor or reshaping it shares the buffer, and the
//! first write through [`Tensor::data_mut`] copies it if it is shared (copy on write). Every op
//! here takes plain tensors and returns a new one; the autograd ([`crate::autograd`]) records
//! these same functions on its tape.
//!
//! Shape legend used in the comments: `B` batch, `T` sequence, `C` channels, `M x K` and `K x N`
//! matrix operands, `...` any number of leading (batch) dimensions.
//!
//! NaN and infinity: tensors may hold them; element-wise ops, reductions, matmul and the row
//! kernels propagate them through IEEE arithmetic without checks (a NaN in a softmax row makes
//! that whole row NaN). Use [`Tensor::check_finite`] where a caller wants an error instead.

mod attention;
mod dwconv;
mod elementwise;
pub(crate) mod layout;
mod matmul;
mod nn;
pub(crate) mod parallel;
mod reduce;
pub mod rng;
pub mod shape;
mod transform_attention;

pub use attention::attention;
pub(crate) use attention::{AttentionGrads, attention_backward};
pub use dwconv::dwconv;
pub(crate) use dwconv::{DwConvGrads, dwconv_backward};
pub use elementwise::{add, broadcast_to, div, mul, sub, sum_to_shape};
pub use layout::{concat, index_select, permute, scatter_add, slice, transpose};
pub(crate) use matmul::{GemmMode, gemm_into};
pub use matmul::{linear, linear_packed, matmul, matmul_ex, matmul_t};
pub use nn::{gelu, layernorm, log_softmax, softmax};
pub use reduce::{mean, sum};
pub use rng::Rng;
pub use shape::{broadcast_shapes, checked_numel, numel, strides};
pub(crate) use transform_attention::{
    TransformGrads, transform_attention_backward, transform_attention_with_stats,
};
pub use transform_attention::{TransformMix, transform_attention};

use crate::error::{Error, Result};
use std::sync::Arc;

/// A contiguous row-major f32 tensor. A rank-0 tensor (shape `[]`) holds one scalar.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    data: Arc<Vec<f32>>,
}

impl Tensor {
    /// A tensor from its elements in row-major order; [`Error::Shape`] if `data.len()` is not the
    /// product of `shape`. Any value is accepted, NaN included.
    pub fn from_vec(data: Vec<f32>, shape: &[usize]) -> Result<Self> {
        if shape::checked_numel("Tensor::from_vec", shape)? != data.len() {
            return Err(Error::shape(
                "Tensor::from_vec",
                format!("{} elements do not fill shape {shape:?}", data.len()),
            ));
        }
        Ok(Tensor {
            shape: shape.to_vec(),
            data: Arc::new(data),
        })
    }

    /// A tensor filled with `value`. Like `vec![value; n]`, panics only if the element count
    /// does not fit in memory (or overflows `usize`); [`checked_numel`] checks a shape from
    /// untrusted input first.
    pub fn full(shape: &[usize], value: f32) -> Self {
        Tensor {
            shape: shape.to_vec(),
            data: Arc::new(vec![value; numel(shape)]),
        }
    }

    /// A tensor of zeros.
    pub fn zeros(shape: &[usize]) -> Self {
        Self::full(shape, 0.0)
    }

    /// A tensor of ones.
    pub fn ones(shape: &[usize]) -> Self {
        Self::full(shape, 1.0)
    }

    /// A rank-0 tensor holding `value`.
    pub fn scalar(value: f32) -> Self {
        Self::full(&[], value)
    }

    /// Samples from `N(mean, std^2)`, deterministic given the state of `rng`.
    pub fn randn(shape: &[usize], mean: f32, std: f32, rng: &mut Rng) -> Self {
        let data = (0..numel(shape))
            .map(|_| (mean as f64 + std as f64 * rng.normal()) as f32)
            .collect();
        Tensor {
            shape: shape.to_vec(),
            data: Arc::new(data),
        }
    }

    /// Samples uniformly from `[low, high)`, deterministic given the state of `rng`.
    pub fn uniform(shape: &[usize], low: f32, high: f32, rng: &mut Rng) -> Self {
        let data = (0..numel(shape))
            .map(|_| (low as f64 + (high as f64 - low as f64) * rng.next_f64()) as f32)
            .collect();
        Tensor {
            shape: shape.to_vec(),
            data: Arc::new(data),
        }
    }

    /// The dimensions.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.data.len()
    }

    /// Size of dimension `axis`, or [`Error::Axis`].
    pub fn dim(&self, axis: usize) -> Result<usize> {
        shape::check_axis("Tensor::dim", axis, self.rank())?;
        Ok(self.shape[axis])
    }

    /// The elements in row-major order.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// Mutable elements; copies the buffer first if another tensor shares it.
    pub fn data_mut(&mut self) -> &mut [f32] {
        Arc::make_mut(&mut self.data).as_mut_slice()
    }

    /// The elements as an owned vector (no copy when the buffer is not shared).
    pub fn into_vec(self) -> Vec<f32> {
        Arc::try_unwrap(self.data).unwrap_or_else(|shared| (*shared).clone())
    }

    /// The single element of a one-element tensor (any rank), or [`Error::Shape`].
    pub fn item(&self) -> Result<f32> {
        if self.numel() != 1 {
            return Err(Error::shape(
                "Tensor::item",
                format!("shape {:?} does not hold exactly one element", self.shape),
            ));
        }
        Ok(self.data[0])
    }

    /// The same elements under another shape with the same element count (shares the buffer).
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        if shape::checked_numel("reshape", shape)? != self.numel() {
            return Err(Error::shape(
                "reshape",
                format!("cannot view {:?} as {shape:?}", self.shape),
            ));
        }
        Ok(Tensor {
            shape: shape.to_vec(),
            data: self.data.clone(),
        })
    }

    /// [`Error::NonFinite`] naming `op` if any element is NaN or infinite.
    pub fn check_finite(&self, op: &'static str) -> Result<()> {
        match self.data.iter().position(|v| !v.is_finite()) {
            None => Ok(()),
            Some(i) => Err(Error::NonFinite {
                op,
                msg: format!(
                    "element {i} of a {:?} tensor is {}",
                    self.shape, self.data[i]
                ),
            }),
        }
    }

    /// `f` applied to every element.
    pub fn map(&self, f: impl Fn(f32) -> f32) -> Tensor {
        Tensor {
            shape: self.shape.clone(),
            data: Arc::new(self.data.iter().map(|&v| f(v)).collect()),
        }
    }

    /// `f(self[i], other[i])` for two tensors of the same shape, or [`Error::Shape`].
    pub fn zip_map(&self, other: &Tensor, f: impl Fn(f32, f32) -> f32) -> Result<Tensor> {
        self.expect_shape("Tensor::zip_map", other.shape())?;
        Ok(Tensor {
            shape: self.shape.clone(),
            data: Arc::new(
                self.data
                    .iter()
                    .zip(other.data.iter())
                    .map(|(&a, &b)| f(a, b))
                    .collect(),
            ),
        })
    }

    /// `self += other` element-wise (same shape, no broadcasting), as gradients accumulate.
    pub fn add_assign(&mut self, other: &Tensor) -> Result<()> {
        self.expect_shape("Tensor::add_assign", other.shape())?;
        for (a, &b) in self.data_mut().iter_mut().zip(other.data.iter()) {
            *a += b;
        }
        Ok(())
    }

    /// `self += alpha * other` element-wise (same shape).
    pub fn axpy_assign(&mut self, alpha: f32, other: &Tensor) -> Result<()> {
        self.expect_shape("Tensor::axpy_assign", other.shape())?;
        for (a, &b) in self.data_mut().iter_mut().zip(other.data.iter()) {
            *a += alpha * b;
        }
        Ok(())
    }

    /// `self * alpha`.
    pub fn scale(&self, alpha: f32) -> Tensor {
        self.map(|v| v * alpha)
    }

    /// [`Error::Shape`] unless this tensor has exactly `shape`.
    pub fn expect_shape(&self, op: &'static str, shape: &[usize]) -> Result<()> {
        if self.shape != shape {
            return Err(Error::shape(
                op,
                format!("expected shape {shape:?}, got {:?}", self.shape),
            ));
        }
        Ok(())
    }

    /// Largest absolute element-wise difference to `other` (same shape), for tests.
    pub fn max_abs_diff(&self, other: &Tensor) -> Result<f32> {
        self.expect_shape("Tensor::max_abs_diff", other.shape())?;
        Ok(self
            .data
            .iter()
            .zip(other.data.iter())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max))
    }
}
