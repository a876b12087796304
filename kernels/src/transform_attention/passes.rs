//! Dispatch for the SIMD head-mix passes of the fused transform attention (bodies in
//! `arch::transform_attention`): a table of function pointers per [`Isa`], chosen once per
//! process for [`Isa::active`] (so `LITHE_ISA` forces a path), and checked wrappers.

use crate::{Isa, KernelError};
use std::sync::OnceLock;

/// `(dst, src, pre, pre_bias, stats, heads, rows, n, given)`: see [`mix_softmax`].
type MixSoftmaxFn =
    unsafe fn(&mut [f32], &[f32], &[f32], &[f32], &mut [f32], usize, usize, usize, bool);
/// `(dst, src, m, dots, heads, len)`: see [`mix_t_dots`].
type MixTDotsFn = unsafe fn(&mut [f32], &[f32], &[f32], Option<(&[f32], &mut [f32])>, usize, usize);

/// The passes of one ISA. The pointers are `unsafe fn`s whose preconditions (the ISA is present,
/// lengths agree) are established by [`Passes::for_isa`] and by the checked wrappers below.
#[derive(Clone, Copy, Debug)]
struct Passes {
    mix_softmax: MixSoftmaxFn,
    mix_t_dots: MixTDotsFn,
}

impl Passes {
    fn for_isa(isa: Isa) -> Result<Passes, KernelError> {
        isa.check()?;
        use crate::arch::transform_attention as arch;
        // SAFETY (all arms): `isa.check()` just confirmed the CPU supports the path.
        let (mix_softmax, mix_t_dots): (MixSoftmaxFn, MixTDotsFn) = match isa {
            Isa::Scalar => (arch::portable::mix_softmax, arch::portable::mix_t_dots),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => (arch::avx2::mix_softmax, arch::avx2::mix_t_dots),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => (arch::avx512::mix_softmax, arch::avx512::mix_t_dots),
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => (arch::neon::mix_softmax, arch::neon::mix_t_dots),
            #[allow(unreachable_patterns)]
            _ => return Err(KernelError::UnsupportedIsa(isa.name())),
        };
        Ok(Passes {
            mix_softmax,
            mix_t_dots,
        })
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

/// `dst[g] = sum_h m[h,g] src[h]` over `heads` maps of `len` floats, and with `dots = (other,
/// acc)`, `acc[h * heads + g] += <src[h], other[g]>`.
pub(crate) fn mix_t_dots(
    dst: &mut [f32],
    src: &[f32],
    m: &[f32],
    dots: Option<(&[f32], &mut [f32])>,
    heads: usize,
    len: usize,
) -> Result<(), KernelError> {
    let maps = heads * len;
    let (other, acc) = dots
        .as_ref()
        .map_or((maps, heads * heads), |(o, a)| (o.len(), a.len()));
    for (what, got, need) in [
        ("dst", dst.len(), maps),
        ("src", src.len(), maps),
        ("matrix", m.len(), heads * heads),
        ("other", other, maps),
        ("acc", acc, heads * heads),
    ] {
        if got < need {
            return Err(too_short(what, got, need));
        }
    }
    // SAFETY: the table's ISA is present (`Passes::active`); lengths were just checked.
    unsafe { (Passes::active().mix_t_dots)(dst, src, m, dots, heads, len) };
    Ok(())
}
