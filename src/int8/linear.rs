//! One quantized Linear: int8 weights per output row, packed once, f32 bias.
//!
//! Legend: M = rows of the input, K = `in_features`, N = `out_features`.

use super::ActQuant;
use crate::error::{Error, Result};
use lithe_kernels::gemm_i8::{Activation, Dequant, Scale};
use lithe_kernels::quantize::{quantize_per_row, quantize_per_tensor};
use lithe_kernels::{I8GemmOptions, I8Isa, PackedI8B, gemm_i8_dequant};

/// A Linear lowered to int8: `y[m, n] = s_x[m] * s_w[n] * sum_k qx[m, k] qw[n, k] + b[n]`.
///
/// The weights are quantized per output row (`s_w[n] = max|W[n, :]| / 127`, the rule QAT uses)
/// and packed once for the machine's int8 path; the unpacked rows are kept for saving.
#[derive(Clone)]
pub struct Int8Linear {
    /// `[N, K]` quantized weights, as stored in files.
    pub(crate) weight: Vec<i8>,
    /// `[N]` weight scales.
    pub(crate) scales: Vec<f32>,
    /// `[N]`, absent for a bias-free layer.
    pub(crate) bias: Option<Vec<f32>>,
    /// `weight` packed for [`I8Isa::active`].
    packed: PackedI8B,
    act: ActQuant,
}

impl Int8Linear {
    /// Quantizes `lin`'s weight per output row and packs it; its input will be quantized as
    /// `act` says. [`Error::InvalidArgument`] for a static scale that is not finite and
    /// positive; a kernel error for a non-finite weight.
    pub fn from_linear(lin: &crate::nn::Linear, act: ActQuant) -> Result<Self> {
        let w = lin.weight.value(); // [N, K]
        let (n, k) = (lin.out_features(), lin.in_features());
        let mut weight = vec![0i8; n * k];
        let mut scales = vec![0f32; n];
        quantize_per_row(w.data(), k, &mut weight, &mut scales)?;
        let bias = lin.bias.as_ref().map(|b| b.value().data().to_vec());
        Self::from_quantized(weight, scales, bias, k, act)
    }

    /// A layer from already quantized parts (`weight[N, K]`, `scales[N]`, `bias[N]`), checked.
    pub(crate) fn from_quantized(
        weight: Vec<i8>,
        scales: Vec<f32>,
        bias: Option<Vec<f32>>,
        in_features: usize,
        act: ActQuant,
    ) -> Result<Self> {
        const OP: &str = "Int8Linear";
        let n = scales.len();
        if weight.len() != n * in_features || bias.as_ref().is_some_and(|b| b.len() != n) {
            return Err(Error::shape(
                OP,
                format!(
                    "{} weights, {n} scales and {:?} biases for [{n}, {in_features}]",
                    weight.len(),
                    bias.as_ref().map(Vec::len)
                ),
            ));
        }
        if let Some(s) = scales.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(Error::invalid(
                OP,
                format!("weight scale {s} is not finite and positive"),
            ));
        }
        if let Some(b) = bias
            .as_ref()
            .and_then(|b| b.iter().find(|v| !v.is_finite()))
        {
            return Err(Error::invalid(OP, format!("bias {b} is not finite")));
        }
        if let ActQuant::Static(s) = act
            && !(s.is_finite() && s > 0.0)
        {
            return Err(Error::invalid(
                OP,
                format!("static activation scale {s} is not finite and positive"),
            ));
        }
        let packed = PackedI8B::pack(&weight, n, in_features, I8Isa::active())?;
        Ok(Int8Linear {
            weight,
            scales,
            bias,
            packed,
            act,
        })
    }

    /// Rows `parts` stacked into one layer (`[sum N, K]`): Q, K and V as one GEMM. Exact, since
    /// each output row is quantized on its own and the parts share one input quantization.
    pub(crate) fn concat(parts: &[&Int8Linear]) -> Result<Self> {
        let first = parts[0];
        if parts
            .iter()
            .any(|p| p.act != first.act || p.in_features() != first.in_features())
        {
            return Err(Error::invalid(
                "Int8Linear::concat",
                "the parts differ in input width or activation mode",
            ));
        }
        let weight = parts
            .iter()
            .flat_map(|p| p.weight.iter().copied())
            .collect();
        let scales = parts
            .iter()
            .flat_map(|p| p.scales.iter().copied())
            .collect();
        let bias = match parts.iter().all(|p| p.bias.is_none()) {
            true => None,
            false => Some(parts.iter().flat_map(|p| p.bias_or_zeros()).collect()),
        };
        Self::from_quantized(weight, scales, bias, first.in_features(), first.act)
    }

    fn bias_or_zeros(&self) -> Vec<f32> {
        self.bias
            .clone()
            .unwrap_or_else(|| vec![0.0; self.out_features()])
    }

    /// Width of the input K.
    pub fn in_features(&self) -> usize {
        self.packed.k()
    }

    /// Width of the output N.
    pub fn out_features(&self) -> usize {
        self.scales.len()
    }

    /// How the input is quantized.
    pub fn act(&self) -> ActQuant {
        self.act
    }

    /// `x[M, K] -> [M, N]` for `rows` rows, into a new vector (for one-off use and tests; the
    /// models run on a [`super::Workspace`] and allocate nothing).
    pub fn forward(&self, x: &[f32], rows: usize) -> Result<Vec<f32>> {
        let (k, n) = (self.in_features(), self.out_features());
        if Some(x.len()) != rows.checked_mul(k) {
            return Err(Error::shape(
                "Int8Linear::forward",
                format!("{} inputs for [{rows}, {k}]", x.len()),
            ));
        }
        let mut out = vec![0.0; rows * n];
        let (mut q, mut s) = (vec![0; rows * k], vec![0.0; rows]);
        self.forward_into(&mut out, n, x, rows, Activation::None, &mut q, &mut s)?;
        Ok(out)
    }

    /// Bytes as stored: int8 weights, f32 scales and biases.
    pub(crate) fn stored_bytes(&self) -> usize {
        self.weight.len() + 4 * self.scales.len() + 4 * self.bias.as_ref().map_or(0, Vec::len)
    }

    /// `out[m, :N] = act(x[m, :] W^T + b)` for the `rows` rows of `x` (`[M, K]`, contiguous);
    /// output row `m` starts at `out[m * ldo]`. `q` (`>= M * K`) and `row_scales` (`>= M`) are
    /// scratch. Allocates nothing.
    #[allow(clippy::too_many_arguments)] // BLAS-style: output with its stride, then scratch
    pub(crate) fn forward_into(
        &self,
        out: &mut [f32],
        ldo: usize,
        x: &[f32],
        rows: usize,
        act: Activation,
        q: &mut [i8],
        row_scales: &mut [f32],
    ) -> Result<()> {
        let k = self.in_features();
        let (x, q) = (&x[..rows * k], &mut q[..rows * k]);
        let a_scale = match self.act {
            ActQuant::Static(s) => {
                quantize_per_tensor(x, s, q)?;
                Scale::PerTensor(s)
            }
            ActQuant::Dynamic => {
                let s = &mut row_scales[..rows];
                quantize_per_row(x, k, q, s)?;
                Scale::PerRow(s)
            }
        };
        let dq = Dequant {
            a_scale,
            w_scales: &self.scales,
            bias: self.bias.as_deref(),
            act,
        };
        gemm_i8_dequant(
            q,
            k,
            rows,
            &self.packed,
            &dq,
            out,
            ldo,
            &I8GemmOptions::default(),
        )?;
        Ok(())
    }
}

impl std::fmt::Debug for Int8Linear {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Int8Linear")
            .field("in_features", &self.in_features())
            .field("out_features", &self.out_features())
            .field("act", &self.act)
            .field("isa", &self.packed.isa())
            .finish_non_exhaustive()
    }
}
