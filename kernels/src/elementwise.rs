//! Dispatch for the element-wise kernels (softmax, log-softmax, LayerNorm, GELU, head mixing).
//!
//! An [`ElementwiseKernels`] is a table of function pointers for one [`Isa`], handed out by
//! [`ElementwiseKernels::for_isa`] only after run-time detection; [`ElementwiseKernels::active`]
//! is the table of [`Isa::active`], chosen once per process (so `LITHE_ISA` forces a path).
//! The checked, public entry points live in [`crate::softmax`], [`crate::layernorm`],
//! [`crate::gelu`] and [`crate::head_mix`]: `softmax_forward(..)` runs on the active path, `softmax_forward_with(isa,
//! ..)` on a given one, so tests and benches can run every path in one process.

use crate::gelu::GeluKind;
use crate::{Isa, KernelError};
use std::sync::OnceLock;

/// Row kernel `(out, inp, cols)`: out, inp are (rows, cols).
pub(crate) type RowForwardFn = unsafe fn(&mut [f32], &[f32], usize);
/// Row kernel `(dinp, dout, y, cols)`: all (rows, cols).
pub(crate) type RowBackwardFn = unsafe fn(&mut [f32], &[f32], &[f32], usize);
/// `(out, mean, rstd, inp, weight, bias, cols, eps)`.
pub(crate) type LayerNormForwardFn =
    unsafe fn(&mut [f32], &mut [f32], &mut [f32], &[f32], &[f32], &[f32], usize, f32);
/// `(dinp, dweight, dbias, dout, inp, weight, mean, rstd, cols)`.
pub(crate) type LayerNormBackwardFn =
    unsafe fn(&mut [f32], &mut [f32], &mut [f32], &[f32], &[f32], &[f32], &[f32], &[f32], usize);
/// `(out, inp, kind)`.
pub(crate) type GeluForwardFn = unsafe fn(&mut [f32], &[f32], GeluKind);
/// `(dinp, inp, dout, kind)`.
pub(crate) type GeluBackwardFn = unsafe fn(&mut [f32], &[f32], &[f32], GeluKind);
/// `(dst, src, m, bias, heads, len, transpose)`: see [`crate::head_mix::mix_heads`].
pub(crate) type MixHeadsFn =
    unsafe fn(&mut [f32], &[f32], &[f32], Option<&[f32]>, usize, usize, bool);
/// `(acc, a, b, heads, len)`: see [`crate::head_mix::add_head_dots`].
pub(crate) type HeadDotsFn = unsafe fn(&mut [f32], &[f32], &[f32], usize, usize);

/// The element-wise kernels of one ISA, as function pointers.
///
/// The pointers are private: each is an `unsafe fn` whose preconditions (the ISA is present,
/// buffer lengths agree) are established by [`ElementwiseKernels::for_isa`] and by the checked
/// wrappers in [`crate::softmax`], [`crate::layernorm`] and [`crate::gelu`].
#[derive(Clone, Copy, Debug)]
pub struct ElementwiseKernels {
    pub(crate) isa: Isa,
    pub(crate) softmax_forward: RowForwardFn,
    pub(crate) softmax_backward: RowBackwardFn,
    pub(crate) log_softmax_forward: RowForwardFn,
    pub(crate) log_softmax_backward: RowBackwardFn,
    pub(crate) layernorm_forward: LayerNormForwardFn,
    pub(crate) layernorm_backward: LayerNormBackwardFn,
    pub(crate) gelu_forward: GeluForwardFn,
    pub(crate) gelu_backward: GeluBackwardFn,
    pub(crate) mix_heads: MixHeadsFn,
    pub(crate) add_head_dots: HeadDotsFn,
}

impl ElementwiseKernels {
    /// The kernels for `isa`: [`KernelError::UnsupportedIsa`] if this CPU (or this build target)
    /// cannot run it.
    pub fn for_isa(isa: Isa) -> Result<ElementwiseKernels, KernelError> {
        isa.check()?;
        // SAFETY (all arms): `isa.check()` just confirmed the CPU supports the path.
        let table = match isa {
            Isa::Scalar => Some(unsafe { crate::arch::portable_elementwise::kernels() }),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => Some(unsafe { crate::arch::x86_avx2_elementwise::kernels() }),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => Some(unsafe { crate::arch::x86_avx512_elementwise::kernels() }),
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => Some(unsafe { crate::arch::aarch64_neon_elementwise::kernels() }),
            #[allow(unreachable_patterns)]
            _ => None,
        };
        table.ok_or(KernelError::UnsupportedIsa(isa.name()))
    }

    /// The kernels of [`Isa::active`], chosen once per process.
    pub fn active() -> &'static ElementwiseKernels {
        static ACTIVE: OnceLock<ElementwiseKernels> = OnceLock::new();
        ACTIVE.get_or_init(|| {
            ElementwiseKernels::for_isa(Isa::active())
                .expect("Isa::active() only returns supported paths")
        })
    }

    /// The path these kernels run on.
    pub fn isa(&self) -> Isa {
        self.isa
    }
}
