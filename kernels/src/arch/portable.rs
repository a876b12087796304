//! Portable micro-kernels in plain Rust: the `scalar` path, and the fallback on any target.

use crate::gemm::UkernelParams;

/// Writes an MR x NR accumulator tile into C under the contract's alpha/beta/bias rules, only
/// the `m x n` corner, at any strides. Shared by every ISA's edge path.
///
/// # Safety
/// `p.c` must address `p.m x p.n` writable elements at strides (`p.rsc`, `p.csc`), and `p.bias`
/// must be null or address `p.n` values.
#[inline(always)]
pub unsafe fn store_tile<const MR: usize, const NR: usize>(
    p: &UkernelParams,
    acc: &[[f32; NR]; MR],
) {
    let mut bias = [0.0f32; NR];
    if !p.bias.is_null() {
        // SAFETY: a non-null bias holds the tile's `n <= NR` values.
        bias[..p.n].copy_from_slice(unsafe { std::slice::from_raw_parts(p.bias, p.n) });
    }
    for (i, row) in acc.iter().enumerate().take(p.m) {
        for (j, &v) in row.iter().enumerate().take(p.n) {
            // SAFETY: (i, j) < (m, n), inside the tile the caller vouched for.
            let dst = unsafe { p.c.offset(i as isize * p.rsc + j as isize * p.csc) };
            let v = p.alpha * v;
            let v = if p.beta == 0.0 {
                v
            } else {
                // SAFETY: as above; beta != 0, so C is readable.
                v + p.beta * unsafe { *dst }
            };
            let v = if p.bias.is_null() { v } else { v + bias[j] };
            // SAFETY: as above.
            unsafe { *dst = v };
        }
    }
}

/// The portable MR x NR micro-kernel.
///
/// # Safety
/// See the contract in `gemm::contract`.
pub unsafe fn sgemm_ukernel<const MR: usize, const NR: usize>(p: &UkernelParams) {
    let mut acc = [[0.0f32; NR]; MR];
    // SAFETY: the packed panels hold `k * MR` and `k * NR` values.
    let a = unsafe { std::slice::from_raw_parts(p.a, p.k * MR) };
    let b = unsafe { std::slice::from_raw_parts(p.b, p.k * NR) };
    for (ap, bp) in a.chunks_exact(MR).zip(b.chunks_exact(NR)) {
        for i in 0..MR {
            for j in 0..NR {
                acc[i][j] += ap[i] * bp[j];
            }
        }
    }
    unsafe { store_tile(p, &acc) };
}

/// The portable MR x NR micro-kernel reading A in place (the direct-A variant of the contract:
/// A(i, p) at `a + i * rsa + p * csa`, rows past `m` never read).
///
/// # Safety
/// See the contract in `gemm::contract`.
pub unsafe fn sgemm_ukernel_direct_a<const MR: usize, const NR: usize>(p: &UkernelParams) {
    let mut acc = [[0.0f32; NR]; MR];
    // SAFETY: the packed B panel holds `k * NR` values.
    let b = unsafe { std::slice::from_raw_parts(p.b, p.k * NR) };
    for (i, acc_row) in acc.iter_mut().enumerate().take(p.m) {
        for (q, bp) in b.chunks_exact(NR).enumerate() {
            // SAFETY: (i, q) < (m, k) lies inside the caller's A.
            let ai = unsafe { *p.a.offset(i as isize * p.rsa + q as isize * p.csa) };
            for (acc_ij, &bj) in acc_row.iter_mut().zip(bp) {
                *acc_ij += ai * bj;
            }
        }
    }
    unsafe { store_tile(p, &acc) };
}
