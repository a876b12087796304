//! Depthwise 2-D convolution over a channels-last token grid, forward and backward side by side
//! (llm.c's argument order): MiniViT's MLP-side weight transformation.
//!
//! Shapes (B = batch, H x W = token grid, C = channels, k = kernel size, odd):
//! `inp`, `out`, `dinp`, `dout` are `[B, H, W, C]` (row-major grid, channels last); `weight` and
//! `dweight` are `[k, k, C]` (one `k x k` filter per channel); `bias` and `dbias` are `[C]`.
//!
//! The convolution is a cross-correlation with zero padding `p = (k - 1) / 2` and stride 1, as
//! PyTorch's `Conv2d(C, C, k, padding=p, groups=C)`:
//! `out[b, i, j, c] = bias[c] + sum_{u, v} weight[u, v, c] * inp[b, i + u - p, j + v - p, c]`,
//! where taps that fall outside the grid contribute nothing (they are skipped, not multiplied by
//! a padded zero, so a NaN or infinity reaches exactly the outputs whose window holds it).
//! Forward writes (`=`); backward accumulates (`+=`) into `dinp`, `dweight` and `dbias`. The
//! residual `x + DWConv(x)` and any class token that bypasses the grid are the caller's.
//!
//! Each function runs on the process-wide path ([`crate::Isa::active`]); its `_with` twin takes an
//! explicit [`Isa`] (an error if this CPU lacks it). The kernels are single-threaded; callers
//! split the batch across threads. The bounds against the f64 references in
//! [`crate::reference`] are stated in `tests/dwconv_paths.rs`.

use crate::{Isa, KernelError};
use std::sync::OnceLock;

/// The geometry of a depthwise convolution: `batch` grids of `height x width` tokens with
/// `channels` channels each, filtered by a `k x k` kernel per channel (`k` odd).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DwConvShape {
    /// Grids in the batch (B).
    pub batch: usize,
    /// Token rows per grid (H).
    pub height: usize,
    /// Token columns per grid (W).
    pub width: usize,
    /// Channels per token (C), the contiguous dimension.
    pub channels: usize,
    /// Kernel size (k): odd, at least 1; may exceed the grid (the taps outside are skipped).
    pub k: usize,
}

impl DwConvShape {
    /// A square `grid x grid` token grid.
    pub fn square(batch: usize, grid: usize, channels: usize, k: usize) -> DwConvShape {
        DwConvShape {
            batch,
            height: grid,
            width: grid,
            channels,
            k,
        }
    }

    /// The zero padding on each side, `(k - 1) / 2`, which keeps the output grid the input's size.
    pub fn padding(&self) -> usize {
        self.k.saturating_sub(1) / 2
    }

    /// Elements of an activation buffer, `B * H * W * C` (`None` on overflow).
    pub fn activation_len(&self) -> Option<usize> {
        self.batch
            .checked_mul(self.height)?
            .checked_mul(self.width)?
            .checked_mul(self.channels)
    }

    /// Elements of the filter, `k * k * C` (`None` on overflow).
    pub fn weight_len(&self) -> Option<usize> {
        self.k.checked_mul(self.k)?.checked_mul(self.channels)
    }

    /// Floating-point operations of one forward call as conventionally counted for a
    /// convolution: one multiply and one add per tap and output element, `2 k^2 B H W C`,
    /// border taps included although the kernels skip them. The backward does twice this
    /// (`dinp` and `dweight`), plus `B H W C` adds for `dbias`.
    pub fn forward_flops(&self) -> f64 {
        2.0 * (self.k * self.k) as f64
            * self.batch as f64
            * self.height as f64
            * self.width as f64
            * self.channels as f64
    }

    /// Checks `k` and every buffer length: `acts` must hold `B H W C` elements, `weights`
    /// `k k C`, `biases` `C`.
    fn check(
        &self,
        what: &str,
        acts: &[usize],
        weights: &[usize],
        biases: &[usize],
    ) -> Result<(), KernelError> {
        if self.k.is_multiple_of(2) {
            return Err(KernelError::ShapeMismatch(format!(
                "{what}: kernel size k = {} must be odd (the output grid keeps the input's size only with symmetric padding)",
                self.k
            )));
        }
        let (Some(n_act), Some(n_w)) = (self.activation_len(), self.weight_len()) else {
            return Err(KernelError::ShapeMismatch(format!(
                "{what}: {self:?} overflows usize"
            )));
        };
        let c = self.channels;
        if acts.iter().any(|&l| l != n_act)
            || weights.iter().any(|&l| l != n_w)
            || biases.iter().any(|&l| l != c)
        {
            return Err(KernelError::LengthMismatch(format!(
                "{what}: activation lengths {acts:?} must equal B*H*W*C = {n_act}, filter lengths {weights:?} must equal k*k*C = {n_w}, bias lengths {biases:?} must equal C = {c} (shape {self:?})"
            )));
        }
        Ok(())
    }
}

/// `(out, inp, weight, bias, shape)`: out, inp `[B, H, W, C]`; weight `[k, k, C]`; bias `[C]`.
pub(crate) type DwConvForwardFn = unsafe fn(&mut [f32], &[f32], &[f32], &[f32], DwConvShape);
/// `(dinp, dweight, dbias, dout, inp, weight, shape)`.
pub(crate) type DwConvBackwardFn =
    unsafe fn(&mut [f32], &mut [f32], &mut [f32], &[f32], &[f32], &[f32], DwConvShape);

/// The depthwise-convolution kernels of one ISA, as function pointers.
///
/// The pointers are private: each is an `unsafe fn` whose preconditions (the ISA is present,
/// buffer lengths agree with the shape, `k` is odd) are established by
/// [`DwConvKernels::for_isa`] and by the checked functions of this module.
#[derive(Clone, Copy, Debug)]
pub struct DwConvKernels {
    isa: Isa,
    forward: DwConvForwardFn,
    backward: DwConvBackwardFn,
}

impl DwConvKernels {
    /// The kernels for `isa`: [`KernelError::UnsupportedIsa`] if this CPU (or this build target)
    /// cannot run it.
    pub fn for_isa(isa: Isa) -> Result<DwConvKernels, KernelError> {
        isa.check()?;
        use crate::arch::dwconv as arch;
        // SAFETY (all arms): `isa.check()` just confirmed the CPU supports the path.
        let (forward, backward): (DwConvForwardFn, DwConvBackwardFn) = match isa {
            Isa::Scalar => (arch::portable::forward, arch::portable::backward),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => (arch::avx2::forward, arch::avx2::backward),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => (arch::avx512::forward, arch::avx512::backward),
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => (arch::neon::forward, arch::neon::backward),
            #[allow(unreachable_patterns)]
            _ => return Err(KernelError::UnsupportedIsa(isa.name())),
        };
        Ok(DwConvKernels {
            isa,
            forward,
            backward,
        })
    }

    /// The kernels of [`Isa::active`], chosen once per process.
    pub fn active() -> &'static DwConvKernels {
        static ACTIVE: OnceLock<DwConvKernels> = OnceLock::new();
        ACTIVE.get_or_init(|| {
            DwConvKernels::for_isa(Isa::active())
                .expect("Isa::active() only returns supported paths")
        })
    }

    /// The path these kernels run on.
    pub fn isa(&self) -> Isa {
        self.isa
    }
}

/// `out = bias + dwconv(inp, weight)` (see the module docs for the exact sum).
/// out, inp: `[B, H, W, C]`; weight: `[k, k, C]`; bias: `[C]`.
pub fn dwconv_forward(
    out: &mut [f32],
    inp: &[f32],
    weight: &[f32],
    bias: &[f32],
    shape: DwConvShape,
) -> Result<(), KernelError> {
    dwconv_forward_on(DwConvKernels::active(), out, inp, weight, bias, shape)
}

/// [`dwconv_forward`] on the given path.
pub fn dwconv_forward_with(
    isa: Isa,
    out: &mut [f32],
    inp: &[f32],
    weight: &[f32],
    bias: &[f32],
    shape: DwConvShape,
) -> Result<(), KernelError> {
    dwconv_forward_on(&DwConvKernels::for_isa(isa)?, out, inp, weight, bias, shape)
}

fn dwconv_forward_on(
    k: &DwConvKernels,
    out: &mut [f32],
    inp: &[f32],
    weight: &[f32],
    bias: &[f32],
    shape: DwConvShape,
) -> Result<(), KernelError> {
    shape.check(
        "dwconv_forward",
        &[out.len(), inp.len()],
        &[weight.len()],
        &[bias.len()],
    )?;
    // No output element (B, H, W or C is 0): return before the kernels walk a possibly huge
    // but empty grid (C = 0 with a large H x W passes the length checks).
    if shape.activation_len() == Some(0) {
        return Ok(());
    }
    // SAFETY: `k` comes from `for_isa` (its ISA is present); `k` odd and lengths just checked.
    unsafe { (k.forward)(out, inp, weight, bias, shape) };
    Ok(())
}

/// Gradients of [`dwconv_forward`], accumulated:
/// `dbias[c] += sum_{b,i,j} dout[b,i,j,c]`,
/// `dweight[u,v,c] += sum_{b,i,j} dout[b,i,j,c] * inp[b, i+u-p, j+v-p, c]` (taps inside the grid),
/// `dinp[b,r,s,c] += sum_{u,v} weight[u,v,c] * dout[b, r-u+p, s-v+p, c]` (the correlation of
/// `dout` with the flipped filter).
/// dinp, dout, inp: `[B, H, W, C]`; dweight, weight: `[k, k, C]`; dbias: `[C]`.
#[allow(clippy::too_many_arguments)]
pub fn dwconv_backward(
    dinp: &mut [f32],
    dweight: &mut [f32],
    dbias: &mut [f32],
    dout: &[f32],
    inp: &[f32],
    weight: &[f32],
    shape: DwConvShape,
) -> Result<(), KernelError> {
    dwconv_backward_on(
        DwConvKernels::active(),
        dinp,
        dweight,
        dbias,
        dout,
        inp,
        weight,
        shape,
    )
}

/// [`dwconv_backward`] on the given path.
#[allow(clippy::too_many_arguments)]
pub fn dwconv_backward_with(
    isa: Isa,
    dinp: &mut [f32],
    dweight: &mut [f32],
    dbias: &mut [f32],
    dout: &[f32],
    inp: &[f32],
    weight: &[f32],
    shape: DwConvShape,
) -> Result<(), KernelError> {
    dwconv_backward_on(
        &DwConvKernels::for_isa(isa)?,
        dinp,
        dweight,
        dbias,
        dout,
        inp,
        weight,
        shape,
    )
}

#[allow(clippy::too_many_arguments)]
fn dwconv_backward_on(
    k: &DwConvKernels,
    dinp: &mut [f32],
    dweight: &mut [f32],
    dbias: &mut [f32],
    dout: &[f32],
    inp: &[f32],
    weight: &[f32],
    shape: DwConvShape,
) -> Result<(), KernelError> {
    shape.check(
        "dwconv_backward",
        &[dinp.len(), dout.len(), inp.len()],
        &[dweight.len(), weight.len()],
        &[dbias.len()],
    )?;
    // No position to sum over: every gradient is unchanged (see the forward for why to return).
    if shape.activation_len() == Some(0) {
        return Ok(());
    }
    // SAFETY: `k` comes from `for_isa` (its ISA is present); `k` odd and lengths just checked.
    unsafe { (k.backward)(dinp, dweight, dbias, dout, inp, weight, shape) };
    Ok(())
}
