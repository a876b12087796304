//! Dispatch for the SIMD mix-and-softmax pass of the fused transform attention (body in
//! `arch::transform_attention`): a function pointer per [`Isa`], chosen once per process for
//! [`Isa::active`] (so `LITHE_ISA` forces a path), and its checked wrapper.

use crate::{Isa, KernelError};
use std::sync::OnceLock;

/// `(dst, src, pre, pre_bias, stats, heads, rows, n, given)`: see [`mix_softmax`].
type MixSoftmaxFn =
    unsafe fn(&mut [f32], &[f32], &[f32], &[f32], &mut [f32], usize, usize, usize, bool);

/// The pass of one ISA. The pointer is an `unsafe fn` whose preconditions (the ISA is present,
/// lengths agree) are established by [`Passes::for_isa`] and by the checked wrapper below.
#[derive(Clone, Copy, Debug)]
struct Passes {
    mix_softmax: MixSoftmaxFn,
}

impl Passes {
    fn for_isa(isa: Isa) -> Result<Passes, KernelError> {
        isa.check()?;
        use crate::arch::transform_attention as arch;
        // SAFETY (all arms): `isa.check()` just confirmed the CPU supports the path.
        let mix_softmax: MixSoftmaxFn = match isa {
            Isa::Scalar => arch::portable::mix_softmax,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => arch::avx2::mix_softmax,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => arch::avx512::mix_softmax,
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => arch::neon::mix_softmax,
            #[allow(unreachable_patterns)]
            _ => return Err(KernelError::UnsupportedIsa(isa.name())),
        };
        Ok(Passes { mix_softmax })
    }

    fn active() -> &'static Passes {
        static ACTIVE: OnceLock<Passes> = OnceLock::new();
        ACTIVE.get_or_init(|| {
            Passes::for_isa(Isa::active()).expect("Isa::active() only returns supported paths")
        })
    }
}

fn too_short(what: &str, got: usize, need: usize) -> KernelError {
    KernelError::LengthMismatch(format!(
        "transform attention pass: {what} holds {got} floats, needs {need}"
    ))
}

/// For each query row `r` and head `h` of a block (`src`, `dst`: `[H, rows, N]`):
/// `dst[h, r, :] = softmax(pre_bias[h] + sum_g pre[h,g] src[g, r, :])`. `stats` (`[H, rows, 2]`:
/// row max, `1 / sum exp(x - max)`) is written when `given` is false and used instead of
/// recomputed when it is true.
#[allow(clippy::too_many_arguments)]
pub(crate) fn mix_softmax(
    dst: &mut [f32],
    src: &[f32],
    pre: &[f32],
    pre_bias: &[f32],
    stats: &mut [f32],
    heads: usize,
    rows: usize,
    n: usize,
    given: bool,
) -> Result<(), KernelError> {
    let maps = heads * rows * n;
    for (what, got, need) in [
        ("dst", dst.len(), maps),
        ("src", src.len(), maps),
        ("pre", pre.len(), heads * heads),
        ("pre_bias", pre_bias.len(), heads),
        ("stats", stats.len(), 2 * heads * rows),
    ] {
        if got < need {
            return Err(too_short(what, got, need));
        }
    }
    // SAFETY: the table's ISA is present (`Passes::active`); lengths were just checked.
    unsafe {
        (Passes::active().mix_softmax)(dst, src, pre, pre_bias, stats, heads, rows, n, given)
    };
    Ok(())
}
