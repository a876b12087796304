//! Dispatch for the SIMD passes of the fused transform attention, the mix-and-softmax, the
//! softmax backward, the trailing-column dot products and the map sums (bodies in `arch::transform_attention`): function pointers per [`Isa`],
//! chosen once per process for [`Isa::active`] (so `LITHE_ISA` forces a path), and their
//! checked wrappers.

use crate::{Isa, KernelError};
use std::sync::OnceLock;

/// `(dst, src, pre, pre_bias, stats, heads, rows, n, given)`: see [`mix_softmax`].
type MixSoftmaxFn =
    unsafe fn(&mut [f32], &[f32], &[f32], &[f32], &mut [f32], usize, usize, usize, bool);

/// `(ds, dp, p, rows, n)`: see [`softmax_backward`].
type SoftmaxBackwardFn = unsafe fn(&mut [f32], &[f32], &[f32], usize, usize);

/// `(out, out_stride, a, lda, rows, x, depth, scale)`: see [`row_dots`].
type RowDotsFn = unsafe fn(&mut [f32], usize, &[f32], usize, usize, &[f32], usize, f32);

/// `(out, maps, len)`: see [`add_map_sums`].
type MapSumsFn = unsafe fn(&mut [f32], &[f32], usize);

/// The passes of one ISA. The pointers are `unsafe fn`s whose preconditions (the ISA is present,
/// lengths agree) are established by [`Passes::for_isa`] and by the checked wrappers below.
#[derive(Clone, Copy, Debug)]
struct Passes {
    mix_softmax: MixSoftmaxFn,
    softmax_backward: SoftmaxBackwardFn,
    row_dots: RowDotsFn,
    add_map_sums: MapSumsFn,
}

impl Passes {
    fn for_isa(isa: Isa) -> Result<Passes, KernelError> {
        isa.check()?;
        use crate::arch::transform_attention as arch;
        // SAFETY (all arms): `isa.check()` just confirmed the CPU supports the path.
        let passes = match isa {
            Isa::Scalar => Passes {
                mix_softmax: arch::portable::mix_softmax,
                softmax_backward: arch::portable::softmax_backward,
                row_dots: arch::portable::row_dots,
                add_map_sums: arch::portable::add_map_sums,
            },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => Passes {
                mix_softmax: arch::avx2::mix_softmax,
                softmax_backward: arch::avx2::softmax_backward,
                row_dots: arch::avx2::row_dots,
                add_map_sums: arch::avx2::add_map_sums,
            },
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => Passes {
                mix_softmax: arch::avx512::mix_softmax,
                softmax_backward: arch::avx512::softmax_backward,
                row_dots: arch::avx512::row_dots,
                add_map_sums: arch::avx512::add_map_sums,
            },
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => Passes {
                mix_softmax: arch::neon::mix_softmax,
                softmax_backward: arch::neon::softmax_backward,
                row_dots: arch::neon::row_dots,
                add_map_sums: arch::neon::add_map_sums,
            },
            #[allow(unreachable_patterns)]
            _ => return Err(KernelError::UnsupportedIsa(isa.name())),
        };
        Ok(passes)
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

/// `ds = p * (dp - sum_j dp_j p_j)` for each of `rows` rows of `n` (`=`: `ds` is overwritten),
/// the softmax backward of the block's `[H, rows, N]` maps taken as `H * rows` rows.
pub(crate) fn softmax_backward(
    ds: &mut [f32],
    dp: &[f32],
    p: &[f32],
    rows: usize,
    n: usize,
) -> Result<(), KernelError> {
    let len = rows * n;
    for (what, got) in [("ds", ds.len()), ("dp", dp.len()), ("p", p.len())] {
        if got < len {
            return Err(too_short(what, got, len));
        }
    }
    // SAFETY: the table's ISA is present (`Passes::active`); lengths were just checked.
    unsafe { (Passes::active().softmax_backward)(ds, dp, p, rows, n) };
    Ok(())
}

/// `out[i * out_stride] = scale * sum_c a[i * lda + c] x[c]` for `i < rows`, `c < depth`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn row_dots(
    out: &mut [f32],
    out_stride: usize,
    a: &[f32],
    lda: usize,
    rows: usize,
    x: &[f32],
    depth: usize,
    scale: f32,
) -> Result<(), KernelError> {
    if rows == 0 {
        return Ok(());
    }
    let last = rows - 1;
    for (what, got, need) in [
        ("out", out.len(), last * out_stride + 1),
        ("a", a.len(), last * lda + depth),
        ("x", x.len(), depth),
    ] {
        if got < need {
            return Err(too_short(what, got, need));
        }
    }
    // SAFETY: the table's ISA is present (`Passes::active`); lengths were just checked.
    unsafe { (Passes::active().row_dots)(out, out_stride, a, lda, rows, x, depth, scale) };
    Ok(())
}

/// `out[h] += sum(maps[h * len .. (h + 1) * len])` for every `h < out.len()`.
pub(crate) fn add_map_sums(out: &mut [f32], maps: &[f32], len: usize) -> Result<(), KernelError> {
    let need = out.len() * len;
    if maps.len() < need {
        return Err(too_short("maps", maps.len(), need));
    }
    // SAFETY: the table's ISA is present (`Passes::active`); the length was just checked.
    unsafe { (Passes::active().add_map_sums)(out, maps, len) };
    Ok(())
}
