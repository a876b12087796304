//! The blocked loops around the micro-kernel, and the split across threads. No ISA code here.
//!
//! Loop nest (BLIS's five loops, with the two inner ones swapped to suit a tile whose vector
//! dimension runs along N): `jc` over NC columns of B, `pc` over KC of depth (pack B into an
//! L2-sized B~), `ic` over MC rows of A (pack A~), then `ir` over MR-high A micro-panels (one
//! stays in L1) and `jr` over the NR-wide B micro-panels streaming from L2, one micro-kernel call
//! per tile.

use super::{KernelSet, MatMut, MatRef, UkernelParams};
use std::cell::RefCell;

/// 64-byte aligned storage for packed panels.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct CacheLine([f32; 16]);

/// Per-thread packing buffers: they grow to the largest block seen and are then reused, so a
/// steady stream of GEMMs allocates nothing.
#[derive(Default)]
struct PackBuffers {
    a: Vec<CacheLine>,
    b: Vec<CacheLine>,
}

fn as_floats(buf: &mut Vec<CacheLine>, len: usize) -> &mut [f32] {
    let lines = len.div_ceil(16);
    if buf.len() < lines {
        buf.resize(lines, CacheLine([0.0; 16]));
    }
    // SAFETY: `CacheLine` is `repr(C)` around `[f32; 16]` with no padding, so `lines` of them are
    // `16 * lines >= len` initialised, properly aligned f32s.
    unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<f32>(), len) }
}

thread_local! {
    static BUFFERS: RefCell<PackBuffers> = RefCell::new(PackBuffers::default());
}

/// Raw C pointer plus strides, sendable to pool threads that each own a disjoint tile range.
#[derive(Clone, Copy)]
struct OutPtr {
    ptr: *mut f32,
    rs: isize,
    cs: isize,
}

// SAFETY: threads only ever receive disjoint row or column ranges of C (see `gemm`).
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

impl OutPtr {
    fn offset(self, i: usize, j: usize) -> OutPtr {
        // SAFETY (for callers): (i, j) lies inside the C view this pointer came from.
        let ptr = self
            .ptr
            .wrapping_offset(i as isize * self.rs + j as isize * self.cs);
        OutPtr { ptr, ..self }
    }
}

/// Work below this many multiply-adds runs on the calling thread: a pool hand-off costs more.
pub(crate) const PARALLEL_MIN_MACS: usize = 1 << 17;

/// Runs `C = alpha * A * B + beta * C` (shapes already checked) on `threads` threads.
pub fn gemm(
    ks: &KernelSet,
    threads: usize,
    alpha: f32,
    a: MatRef<'_>,
    b: MatRef<'_>,
    beta: f32,
    mut c: MatMut<'_>,
) {
    let (m, n, k) = (a.rows(), b.cols(), a.cols());
    if m == 0 || n == 0 {
        return;
    }
    let out = OutPtr {
        ptr: c.as_mut_ptr(),
        rs: c.row_stride() as isize,
        cs: c.col_stride() as isize,
    };
    if k == 0 {
        scale_c(out, m, n, beta);
        return;
    }
    let threads = if m * n * k < PARALLEL_MIN_MACS {
        1
    } else {
        threads
    };
    // Split the longer of M and N into `parts` tile-aligned ranges, one per thread; each thread
    // packs its own blocks.
    let (split_n, tile, len) = if n >= m {
        (true, ks.nr, n)
    } else {
        (false, ks.mr, m)
    };
    let parts = threads.min(len.div_ceil(tile)).max(1);
    if parts == 1 {
        gemm_serial(ks, alpha, a, b, beta, out);
        return;
    }
    let tiles_per_part = len.div_ceil(tile).div_ceil(parts);
    let chunk = tiles_per_part * tile;
    let run_part = |t: usize| {
        let start = t * chunk;
        if start >= len {
            return;
        }
        let size = chunk.min(len - start);
        if split_n {
            gemm_serial(
                ks,
                alpha,
                a,
                b.sub(0, start, k, size),
                beta,
                out.offset(0, start),
            );
        } else {
            gemm_serial(
                ks,
                alpha,
                a.sub(start, 0, size, k),
                b,
                beta,
                out.offset(start, 0),
            );
        }
    };
    crate::threads::pool(parts).broadcast(|ctx| run_part(ctx.index()));
}

fn scale_c(c: OutPtr, m: usize, n: usize, beta: f32) {
    for i in 0..m {
        for j in 0..n {
            let p = c.offset(i, j).ptr;
            // SAFETY: (i, j) is inside the m x n view C came from.
            unsafe { *p = if beta == 0.0 { 0.0 } else { beta * *p } };
        }
    }
}

/// The single-threaded five-loop nest. A row- or column-major A is read in place instead of
/// packed when the problem is narrow (see [`KernelSet::direct_a`]): each A micro-panel then
/// meets only a few B micro-panels, too few to repay the copy.
fn gemm_serial(ks: &KernelSet, alpha: f32, a: MatRef<'_>, b: MatRef<'_>, beta: f32, c: OutPtr) {
    let (m, n, k) = (a.rows(), b.cols(), a.cols());
    let (mr, nr) = (ks.mr, ks.nr);
    let direct = ks.direct_a(&a, n);
    BUFFERS.with(|bufs| {
        let mut bufs = bufs.borrow_mut();
        let PackBuffers { a: abuf, b: bbuf } = &mut *bufs;
        for jc in (0..n).step_by(ks.nc) {
            let nb = ks.nc.min(n - jc);
            for pc in (0..k).step_by(ks.kc) {
                let kb = ks.kc.min(k - pc);
                let packed_b = as_floats(bbuf, nb.div_ceil(nr) * nr * kb);
                (ks.pack_b)(b.sub(pc, jc, kb, nb), packed_b);
                let beta_block = if pc == 0 { beta } else { 1.0 };
                for ic in (0..m).step_by(ks.mc) {
                    let mb = ks.mc.min(m - ic);
                    let packed_a = match direct {
                        Some(_) => &mut [][..],
                        None => {
                            let buf = as_floats(abuf, mb.div_ceil(mr) * mr * kb);
                            (ks.pack_a)(a.sub(ic, pc, mb, kb), buf);
                            buf
                        }
                    };
                    for ir in (0..mb).step_by(mr) {
                        let rows = mr.min(mb - ir);
                        let (ukernel, a_ptr) = match direct {
                            // A in place: A(ic + ir, pc) and its strides.
                            Some(uk) => (uk, a.sub(ic + ir, pc, rows, kb).data().as_ptr()),
                            None => (ks.ukernel, packed_a[(ir / mr) * mr * kb..].as_ptr()),
                        };
                        for jr in (0..nb).step_by(nr) {
                            let params = UkernelParams {
                                k: kb,
                                alpha,
                                beta: beta_block,
                                a: a_ptr,
                                rsa: a.row_stride() as isize,
                                csa: a.col_stride() as isize,
                                b: packed_b[(jr / nr) * nr * kb..].as_ptr(),
                                c: c.offset(ic + ir, jc + jr).ptr,
                                rsc: c.rs,
                                csc: c.cs,
                                m: rows,
                                n: nr.min(nb - jr),
                            };
                            // SAFETY: the B panel (and the A panel, or the `rows x kb` block of A
                            // read in place) holds `kb` columns/rows of a full tile, and the
                            // `m x n` corner of C at this offset lies inside the caller's view.
                            unsafe { ukernel(&params) };
                        }
                    }
                }
            }
        }
    });
}
