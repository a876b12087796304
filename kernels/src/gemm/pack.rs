//! Packing: copy a block of op(A) or op(B) into the micro-panel order the micro-kernels read.
//!
//! Works on any strided view, with fast paths for the two dense layouts, so transposed operands
//! cost nothing extra. Partial panels are zero-padded up to MR / NR: the micro-kernel always runs
//! a full tile and zeros contribute nothing.

use super::MatRef;

/// 64-byte aligned storage for packed panels (the micro-kernels use aligned loads of B).
#[derive(Clone, Copy)]
#[repr(C, align(64))]
pub(crate) struct CacheLine(pub(crate) [f32; 16]);

/// The first `len` floats of `buf`, grown (zero-filled) to hold them.
pub(crate) fn as_floats(buf: &mut Vec<CacheLine>, len: usize) -> &mut [f32] {
    let lines = len.div_ceil(16);
    if buf.len() < lines {
        buf.resize(lines, CacheLine([0.0; 16]));
    }
    // SAFETY: `CacheLine` is `repr(C)` around `[f32; 16]` with no padding, so `lines` of them are
    // `16 * lines >= len` initialised, properly aligned f32s.
    unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<f32>(), len) }
}

/// Packs an `mb x kb` block of A into `ceil(mb / MR)` micro-panels of `MR x kb`, each stored
/// column by column: panel `q` holds `dst[q*MR*kb + p*MR + i] = A(q*MR + i, p)`.
pub fn pack_a<const MR: usize>(a: MatRef<'_>, dst: &mut [f32]) {
    let (mb, kb) = (a.rows(), a.cols());
    let (rs, cs) = (a.row_stride(), a.col_stride());
    let src = a.data();
    for (q, panel) in dst
        .chunks_exact_mut(MR * kb)
        .take(mb.div_ceil(MR))
        .enumerate()
    {
        let i0 = q * MR;
        let rows = MR.min(mb - i0);
        if rows == MR && rs == 1 {
            // Column-major A: each column of the panel is MR contiguous values.
            for (p, out) in panel.chunks_exact_mut(MR).enumerate() {
                let at = i0 + p * cs;
                out.copy_from_slice(&src[at..at + MR]);
            }
        } else if rows == MR && cs == 1 {
            // Row-major A: read MR rows in step, write interleaved.
            let row_at: [usize; MR] = std::array::from_fn(|i| (i0 + i) * rs);
            for (p, out) in panel.chunks_exact_mut(MR).enumerate() {
                for i in 0..MR {
                    out[i] = src[row_at[i] + p];
                }
            }
        } else {
            for (p, out) in panel.chunks_exact_mut(MR).enumerate() {
                for (i, o) in out.iter_mut().enumerate() {
                    *o = if i < rows {
                        src[(i0 + i) * rs + p * cs]
                    } else {
                        0.0
                    };
                }
            }
        }
    }
}

/// Packs a `kb x nb` block of B into `ceil(nb / NR)` micro-panels of `kb x NR`, each stored row
/// by row: panel `q` holds `dst[q*NR*kb + p*NR + j] = B(p, q*NR + j)`.
pub fn pack_b<const NR: usize>(b: MatRef<'_>, dst: &mut [f32]) {
    let (kb, nb) = (b.rows(), b.cols());
    let (rs, cs) = (b.row_stride(), b.col_stride());
    let src = b.data();
    let full = nb / NR;
    if cs == 1 && full > 0 {
        // Row-major B: walk each source row once, front to back, so the hardware prefetcher
        // streams it (walking panel by panel instead touches a new page every NR values), and
        // scatter its NR-wide pieces to the full panels.
        for p in 0..kb {
            let row = &src[p * rs..p * rs + full * NR];
            for (q, piece) in row.chunks_exact(NR).enumerate() {
                let at = q * NR * kb + p * NR;
                dst[at..at + NR].copy_from_slice(piece);
            }
        }
    }
    for (q, panel) in dst
        .chunks_exact_mut(NR * kb)
        .take(nb.div_ceil(NR))
        .enumerate()
    {
        let j0 = q * NR;
        let cols = NR.min(nb - j0);
        if cols == NR && cs == 1 {
            continue; // packed above
        } else if cs == 1 {
            // Partial panel of a row-major B: copy each row's piece and zero the padding.
            for (p, out) in panel.chunks_exact_mut(NR).enumerate() {
                let at = p * rs + j0;
                out[..cols].copy_from_slice(&src[at..at + cols]);
                out[cols..].fill(0.0);
            }
        } else if rs == 1 {
            // Column-major B (e.g. a transposed row-major weight): read each column front to
            // back (one prefetchable stream at a time) and scatter it down the panel.
            if cols < NR {
                panel.fill(0.0);
            }
            for j in 0..cols {
                let col = &src[(j0 + j) * cs..(j0 + j) * cs + kb];
                for (p, &v) in col.iter().enumerate() {
                    panel[p * NR + j] = v;
                }
            }
        } else {
            for (p, out) in panel.chunks_exact_mut(NR).enumerate() {
                for (j, o) in out.iter_mut().enumerate() {
                    *o = if j < cols {
                        src[p * rs + (j0 + j) * cs]
                    } else {
                        0.0
                    };
                }
            }
        }
    }
}
