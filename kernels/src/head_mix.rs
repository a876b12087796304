//! Mixing of per-head maps across heads, MiniViT's head transforms (and their gradients):
//! `dst[h] = sum_g M[h, g] src[g] + bias[h]` over `heads` rows of `len` floats
//! ([`mix_heads`]), and the `heads x heads` dot products of two sets of maps that give the mixes'
//! gradients ([`add_head_dots`]).
//!
//! A GEMM with an inner dimension of H (3 to 12 heads) spends its time loading and storing its
//! output tile; this kernel keeps each output chunk in registers while the H source rows stream
//! past it. Per-ISA bodies: `arch::head_mix`, dispatched through [`ElementwiseKernels`].

use crate::elementwise::ElementwiseKernels;
use crate::{Isa, KernelError};

/// `dst[h * len + x] = sum_g M[h, g] * src[g * len + x] + bias[h]`, with `M` the row-major
/// `heads x heads` matrix `m`, or its transpose when `transpose` (bias 0 when `None`). Runs on
/// the active path.
///
/// Errors: [`KernelError::LengthMismatch`] unless `dst` and `src` hold `heads * len` floats, `m`
/// `heads * heads` and `bias` (if any) `heads`.
pub fn mix_heads(
    dst: &mut [f32],
    src: &[f32],
    m: &[f32],
    bias: Option<&[f32]>,
    heads: usize,
    len: usize,
    transpose: bool,
) -> Result<(), KernelError> {
    mix_heads_on(
        ElementwiseKernels::active(),
        dst,
        src,
        m,
        bias,
        heads,
        len,
        transpose,
    )
}

/// [`mix_heads`] on the given path.
#[allow(clippy::too_many_arguments)]
pub fn mix_heads_with(
    isa: Isa,
    dst: &mut [f32],
    src: &[f32],
    m: &[f32],
    bias: Option<&[f32]>,
    heads: usize,
    len: usize,
    transpose: bool,
) -> Result<(), KernelError> {
    let k = ElementwiseKernels::for_isa(isa)?;
    mix_heads_on(&k, dst, src, m, bias, heads, len, transpose)
}

#[allow(clippy::too_many_arguments)]
fn mix_heads_on(
    k: &ElementwiseKernels,
    dst: &mut [f32],
    src: &[f32],
    m: &[f32],
    bias: Option<&[f32]>,
    heads: usize,
    len: usize,
    transpose: bool,
) -> Result<(), KernelError> {
    let maps = heads.checked_mul(len);
    check_lengths(
        "mix_heads",
        heads,
        len,
        [
            ("dst", dst.len(), maps),
            ("src", src.len(), maps),
            ("matrix", m.len(), heads.checked_mul(heads)),
            ("bias", bias.map_or(heads, <[f32]>::len), Some(heads)),
        ],
    )?;
    // SAFETY: `k` comes from `for_isa` (its ISA is present); lengths were just checked.
    unsafe { (k.mix_heads)(dst, src, m, bias, heads, len, transpose) };
    Ok(())
}

/// `acc[h * heads + g] += sum_x a[h * len + x] * b[g * len + x]`: the dot products of every map
/// of `a` (`[heads, len]`) with every map of `b`, added into the row-major `heads x heads` `acc`.
/// Runs on the active path.
///
/// Errors: [`KernelError::LengthMismatch`] unless `a` and `b` hold `heads * len` floats and `acc`
/// `heads * heads`.
pub fn add_head_dots(
    acc: &mut [f32],
    a: &[f32],
    b: &[f32],
    heads: usize,
    len: usize,
) -> Result<(), KernelError> {
    add_head_dots_on(ElementwiseKernels::active(), acc, a, b, heads, len)
}

/// [`add_head_dots`] on the given path.
pub fn add_head_dots_with(
    isa: Isa,
    acc: &mut [f32],
    a: &[f32],
    b: &[f32],
    heads: usize,
    len: usize,
) -> Result<(), KernelError> {
    add_head_dots_on(&ElementwiseKernels::for_isa(isa)?, acc, a, b, heads, len)
}

fn add_head_dots_on(
    k: &ElementwiseKernels,
    acc: &mut [f32],
    a: &[f32],
    b: &[f32],
    heads: usize,
    len: usize,
) -> Result<(), KernelError> {
    let maps = heads.checked_mul(len);
    check_lengths(
        "add_head_dots",
        heads,
        len,
        [
            ("acc", acc.len(), heads.checked_mul(heads)),
            ("a", a.len(), maps),
            ("b", b.len(), maps),
        ],
    )?;
    // SAFETY: `k` comes from `for_isa` (its ISA is present); lengths were just checked.
    unsafe { (k.add_head_dots)(acc, a, b, heads, len) };
    Ok(())
}

/// [`KernelError::LengthMismatch`] naming the first buffer whose length is not the expected one
/// (`None`: the expected length overflows, which no buffer can match).
fn check_lengths<const N: usize>(
    op: &str,
    heads: usize,
    len: usize,
    buffers: [(&str, usize, Option<usize>); N],
) -> Result<(), KernelError> {
    match buffers
        .iter()
        .find(|(_, got, expected)| Some(*got) != *expected)
    {
        Some((what, got, _)) => Err(KernelError::LengthMismatch(format!(
            "{op}: {what} holds {got} floats for {heads} heads of {len}"
        ))),
        None => Ok(()),
    }
}
