//! Portable int8 micro-kernels in plain Rust: the `scalar` int8 path and the fallback on any
//! target. Signed bytes in, exact i32 sums out (depth groups of 4, like the SIMD paths).

use crate::gemm_i8::I8UkernelParams;

/// Depth values per packed group.
pub const KG: usize = 4;

/// Writes the `m x n` corner of an MR x NR tile of sums to C. Shared by every ISA's edge path.
///
/// # Safety
/// `p.c` must address `p.m x p.n` writable i32s at row stride `p.ldc`.
#[inline(always)]
pub unsafe fn store_tile<const MR: usize, const NR: usize>(
    p: &I8UkernelParams,
    acc: &[[i32; NR]; MR],
) {
    for (i, row) in acc.iter().enumerate().take(p.m) {
        // SAFETY: row i < m of the tile the caller vouched for, n <= NR values.
        let dst = unsafe { std::slice::from_raw_parts_mut(p.c.add(i * p.ldc), p.n) };
        dst.copy_from_slice(&row[..p.n]);
    }
}

/// The portable MR x NR tile kernel (A and B packed as signed bytes).
///
/// # Safety
/// See the contract in `gemm_i8::contract`.
pub unsafe fn ukernel<const MR: usize, const NR: usize>(p: &I8UkernelParams) {
    let kp = p.groups * KG;
    // SAFETY: the packed panels hold `MR * kp` and `NR * kp` bytes; `col_init` NR values.
    let (a, b, init) = unsafe {
        (
            std::slice::from_raw_parts(p.a.cast::<i8>(), MR * kp),
            std::slice::from_raw_parts(p.b.cast::<i8>(), NR * kp),
            std::slice::from_raw_parts(p.col_init, NR),
        )
    };
    let mut acc = [[0i32; NR]; MR];
    for row in acc.iter_mut() {
        row.copy_from_slice(init);
    }
    for (ag, bg) in a.chunks_exact(MR * KG).zip(b.chunks_exact(NR * KG)) {
        for (row, ai) in acc.iter_mut().zip(ag.chunks_exact(KG)) {
            for (sum, bj) in row.iter_mut().zip(bg.chunks_exact(KG)) {
                *sum += ai
                    .iter()
                    .zip(bj)
                    .map(|(&x, &y)| x as i32 * y as i32)
                    .sum::<i32>();
            }
        }
    }
    // SAFETY: forwarded contract.
    unsafe { store_tile(p, &acc) };
}

/// The portable skinny kernel: `m` rows of row-padded A against one NR-wide B panel.
///
/// # Safety
/// See the contract in `gemm_i8::contract`.
pub unsafe fn skinny<const NR: usize>(p: &I8UkernelParams) {
    let kp = p.groups * KG;
    // SAFETY: the B panel holds `NR * kp` bytes; `col_init` NR values.
    let (b, init) = unsafe {
        (
            std::slice::from_raw_parts(p.b.cast::<i8>(), NR * kp),
            std::slice::from_raw_parts(p.col_init, NR),
        )
    };
    for i in 0..p.m {
        // SAFETY: row i of A holds `kp` bytes at `a + i * lda`.
        let a = unsafe { std::slice::from_raw_parts(p.a.add(i * p.lda).cast::<i8>(), kp) };
        let mut acc: [i32; NR] = init.try_into().expect("NR values");
        for (ag, bg) in a.chunks_exact(KG).zip(b.chunks_exact(NR * KG)) {
            for (sum, bj) in acc.iter_mut().zip(bg.chunks_exact(KG)) {
                *sum += ag
                    .iter()
                    .zip(bj)
                    .map(|(&x, &y)| x as i32 * y as i32)
                    .sum::<i32>();
            }
        }
        // SAFETY: row i < m of C, n <= NR values.
        let dst = unsafe { std::slice::from_raw_parts_mut(p.c.add(i * p.ldc), p.n) };
        dst.copy_from_slice(&acc[..p.n]);
    }
}
