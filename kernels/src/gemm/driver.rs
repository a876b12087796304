//! The blocked loops around the micro-kernel, and the split across threads. No ISA code here.
//!
//! Loop nest (BLIS's five loops, with the two inner ones swapped to suit a tile whose vector
//! dimension runs along N): `jc` over NC columns of B, `pc` over KC of depth (pack B into an
//! L2-sized B~), `ic` over MC rows of A (pack A~), then `ir` over MR-high A micro-panels (one
//! stays in L1) and `jr` over the NR-wide B micro-panels streaming from L2, one micro-kernel call
//! per tile. When all of M is one A micro-panel (a batch-1 product), each B panel is used once:
//! a row-major view B is swept row by row with no packing where the kernel set has a row sweep
//! (M <= 4, see `crate::arch::rows_sweep`), and otherwise packed one panel at a time into L1
//! just before that use.

use super::pack::{CacheLine, as_floats};
use super::{BSource, KernelSet, MatMut, MatRef, PackedB, RowsParams, UkernelParams};
use crate::KernelError;
use std::cell::RefCell;
use std::mem::MaybeUninit;

/// Per-thread packing buffers: they grow to the largest block seen and are then reused, so a
/// steady stream of GEMMs allocates nothing.
#[derive(Default)]
struct PackBuffers {
    a: Vec<CacheLine>,
    /// A block of B~ (many panels).
    b: Vec<CacheLine>,
    /// One B panel, packed just before its one use (batch-1 products).
    b_panel: Vec<CacheLine>,
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
    fn of(c: &mut MatMut<'_>) -> OutPtr {
        OutPtr {
            ptr: c.as_mut_ptr(),
            rs: c.row_stride() as isize,
            cs: c.col_stride() as isize,
        }
    }

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

/// B as one thread's loop nest sees it: a view to pack block by block, or columns
/// `j0..j0 + n` of a pre-packed B (`j0` a multiple of NR).
#[derive(Clone, Copy)]
enum BPart<'a> {
    View(MatRef<'a>),
    Packed { b: &'a PackedB, j0: usize, n: usize },
}

impl BPart<'_> {
    fn cols(&self) -> usize {
        match self {
            BPart::View(b) => b.cols(),
            BPart::Packed { n, .. } => *n,
        }
    }

    /// Columns `start..start + size` (`start` a multiple of NR).
    fn cols_range(self, start: usize, size: usize) -> Self {
        match self {
            BPart::View(b) => BPart::View(b.sub(0, start, b.rows(), size)),
            BPart::Packed { b, j0, .. } => BPart::Packed {
                b,
                j0: j0 + start,
                n: size,
            },
        }
    }
}

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
    let out = OutPtr::of(&mut c);
    run(ks, threads, alpha, a, BPart::View(b), beta, None, out);
}

/// Runs `C = alpha * A * B + beta * C (+ bias[j] on column j)` on `threads` threads, after
/// checking the shapes, the bias length and that a packed B was packed for `ks`.
#[allow(clippy::too_many_arguments)] // BLAS argument order: scalars next to their operands.
pub fn gemm_fused(
    ks: &KernelSet,
    threads: usize,
    alpha: f32,
    a: MatRef<'_>,
    b: BSource<'_>,
    beta: f32,
    bias: Option<&[f32]>,
    mut c: MatMut<'_>,
) -> Result<(), KernelError> {
    super::check_shapes(&a, b.rows(), b.cols(), &c)?;
    let b = checked_b_and_bias(ks, b, bias)?;
    run(ks, threads, alpha, a, b, beta, bias, OutPtr::of(&mut c));
    Ok(())
}

/// [`gemm_fused`] with beta = 0 into a row-major `m x n` C that may be uninitialized: every
/// element is written (with beta = 0 no path reads C, see [`super::sgemm`]), so on `Ok` all of
/// `c` is initialized.
#[allow(clippy::too_many_arguments)] // BLAS argument order: scalars next to their operands.
pub fn gemm_fused_uninit(
    ks: &KernelSet,
    threads: usize,
    alpha: f32,
    a: MatRef<'_>,
    b: BSource<'_>,
    bias: Option<&[f32]>,
    c: &mut [MaybeUninit<f32>],
) -> Result<(), KernelError> {
    let (m, n) = (a.rows(), b.cols());
    if a.cols() != b.rows() || m.checked_mul(n) != Some(c.len()) {
        return Err(KernelError::ShapeMismatch(format!(
            "A is {m}x{}, B is {}x{n}, C holds {} values",
            a.cols(),
            b.rows(),
            c.len()
        )));
    }
    let b = checked_b_and_bias(ks, b, bias)?;
    let out = OutPtr {
        ptr: c.as_mut_ptr().cast::<f32>(),
        rs: n as isize,
        cs: 1,
    };
    run(ks, threads, alpha, a, b, 0.0, bias, out);
    Ok(())
}

/// B as the loop nest takes it, after checking that a packed B was packed for `ks` and that the
/// bias (if any) has one value per column.
fn checked_b_and_bias<'a>(
    ks: &KernelSet,
    b: BSource<'a>,
    bias: Option<&[f32]>,
) -> Result<BPart<'a>, KernelError> {
    if let Some(bias) = bias
        && bias.len() != b.cols()
    {
        return Err(KernelError::ShapeMismatch(format!(
            "bias has {} values, C has {} columns",
            bias.len(),
            b.cols()
        )));
    }
    Ok(match b {
        BSource::View(b) => BPart::View(b),
        BSource::Packed(b) => {
            b.check_kernels(ks)?;
            BPart::Packed {
                b,
                j0: 0,
                n: b.cols(),
            }
        }
    })
}

/// The product into `out`, C: `a.rows() x b.cols()` (shapes checked by the caller). With
/// `beta == 0` nothing here or in the micro-kernels reads C before writing it, which is what
/// lets [`gemm_fused_uninit`] hand in uninitialized memory.
#[allow(clippy::too_many_arguments)]
fn run(
    ks: &KernelSet,
    threads: usize,
    alpha: f32,
    a: MatRef<'_>,
    b: BPart<'_>,
    beta: f32,
    bias: Option<&[f32]>,
    out: OutPtr,
) {
    let (m, n, k) = (a.rows(), b.cols(), a.cols());
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        scale_c(out, m, n, beta, bias);
        return;
    }
    let threads = if m * n * k < PARALLEL_MIN_MACS {
        1
    } else {
        threads
    };
    // Split the longer of M and N into `parts` tile-aligned ranges, one per thread; each thread
    // packs its own blocks (of a pre-packed B, it reads the panels of its NR-aligned range).
    let (split_n, tile, len) = if n >= m {
        (true, ks.nr, n)
    } else {
        (false, ks.mr, m)
    };
    let parts = threads.min(len.div_ceil(tile)).max(1);
    // Whether A is read in place is decided on the whole problem, not per thread: each way of
    // feeding A may round differently, and results must not depend on the thread count.
    let direct = ks.direct_a(&a, n);
    if parts == 1 {
        gemm_serial(ks, alpha, a, b, beta, bias, direct, out);
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
            let bias = bias.map(|v| &v[start..start + size]);
            let b = b.cols_range(start, size);
            gemm_serial(ks, alpha, a, b, beta, bias, direct, out.offset(0, start));
        } else {
            let a = a.sub(start, 0, size, k);
            gemm_serial(ks, alpha, a, b, beta, bias, direct, out.offset(start, 0));
        }
    };
    crate::threads::run_parts(parts, run_part);
}

/// The k == 0 product: `C = beta * C (+ bias)`.
fn scale_c(c: OutPtr, m: usize, n: usize, beta: f32, bias: Option<&[f32]>) {
    for i in 0..m {
        for j in 0..n {
            let p = c.offset(i, j).ptr;
            // SAFETY: (i, j) is inside the m x n view C came from.
            unsafe {
                let v = if beta == 0.0 { 0.0 } else { beta * *p };
                *p = bias.map_or(v, |bias| v + bias[j]);
            }
        }
    }
}

/// The single-threaded five-loop nest. A row- or column-major A is read in place instead of
/// packed when the problem is narrow (`direct`, from [`KernelSet::direct_a`]): each A
/// micro-panel then meets only a few B micro-panels, too few to repay the copy. A pre-packed B
/// skips the B packing; the bias goes to the micro-kernels of the last K block only.
#[allow(clippy::too_many_arguments)]
fn gemm_serial(
    ks: &KernelSet,
    alpha: f32,
    a: MatRef<'_>,
    b: BPart<'_>,
    beta: f32,
    bias: Option<&[f32]>,
    direct: Option<super::contract::Ukernel>,
    c: OutPtr,
) {
    let (m, n, k) = (a.rows(), b.cols(), a.cols());
    let (mr, nr) = (ks.mr, ks.nr);
    BUFFERS.with(|bufs| {
        let mut bufs = bufs.borrow_mut();
        let PackBuffers {
            a: abuf,
            b: bbuf,
            b_panel: pbuf,
        } = &mut *bufs;
        for jc in (0..n).step_by(ks.nc) {
            let nb = ks.nc.min(n - jc);
            for pc in (0..k).step_by(ks.kc) {
                let kb = ks.kc.min(k - pc);
                let beta_block = if pc == 0 { beta } else { 1.0 };
                let bias_block = bias.filter(|_| pc + kb == k);
                // When all of M is one A micro-panel, each B panel is used once: a view B is
                // swept in place where the kernel set can, and the rest packed one panel at a
                // time into L1 just before its use, instead of writing a whole block out to
                // L2 / L3 and reading it back.
                let mut j_start = 0;
                let packed_b: Option<&[f32]> = match b {
                    BPart::View(b) if m <= mr => {
                        j_start =
                            sweep_rows(ks, alpha, a, b, beta_block, bias_block, c, pc, kb, jc, nb);
                        None
                    }
                    BPart::View(b) => {
                        let buf = as_floats(bbuf, nb.div_ceil(nr) * nr * kb);
                        (ks.pack_b)(b.sub(pc, jc, kb, nb), buf);
                        Some(buf)
                    }
                    BPart::Packed { b, j0, .. } => Some(b.block(pc, kb, j0 + jc)),
                };
                if j_start == nb {
                    continue;
                }
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
                        let tile = Tile {
                            ukernel,
                            params: UkernelParams {
                                k: kb,
                                alpha,
                                beta: beta_block,
                                a: a_ptr,
                                rsa: a.row_stride() as isize,
                                csa: a.col_stride() as isize,
                                b: std::ptr::null(),
                                c: std::ptr::null_mut(),
                                rsc: c.rs,
                                csc: c.cs,
                                m: rows,
                                n: 0,
                                bias: std::ptr::null(),
                            },
                            c: c.offset(ic + ir, 0),
                            bias: bias_block,
                        };
                        for jr in (j_start..nb).step_by(nr) {
                            let cols = nr.min(nb - jr);
                            let panel: &[f32] = match (packed_b, b) {
                                (Some(packed), _) => &packed[(jr / nr) * nr * kb..],
                                (None, BPart::View(b)) => {
                                    let panel = as_floats(pbuf, nr * kb);
                                    (ks.pack_b)(b.sub(pc, jc + jr, kb, cols), panel);
                                    panel
                                }
                                (None, BPart::Packed { .. }) => unreachable!("packed B has blocks"),
                            };
                            tile.run(panel, jc + jr, cols);
                        }
                    }
                }
            }
        }
    });
}

/// Runs the kernel set's row sweep on columns `jc..jc + nb` of K block `pc..pc + kb` when it
/// applies (M <= the sweep's `max_m`, B and C row-major); returns the columns it did (0
/// otherwise).
#[allow(clippy::too_many_arguments)]
fn sweep_rows(
    ks: &KernelSet,
    alpha: f32,
    a: MatRef<'_>,
    b: MatRef<'_>,
    beta: f32,
    bias: Option<&[f32]>,
    c: OutPtr,
    pc: usize,
    kb: usize,
    jc: usize,
    nb: usize,
) -> usize {
    let m = a.rows();
    let Some(sweep) = ks
        .rows_b_rowmajor
        .filter(|s| b.col_stride() == 1 && c.cs == 1 && m <= s.max_m)
    else {
        return 0;
    };
    let params = RowsParams {
        k: kb,
        alpha,
        beta,
        a: a.sub(0, pc, m, kb).data().as_ptr(),
        rsa: a.row_stride() as isize,
        csa: a.col_stride() as isize,
        b: b.sub(pc, jc, kb, nb).data().as_ptr(),
        rsb: b.row_stride(),
        c: c.offset(0, jc).ptr,
        // Non-negative: it comes from the view's (unsigned) row stride.
        rsc: c.rs as usize,
        m,
        n: nb,
        bias: bias.map_or(std::ptr::null(), |v| v[jc..].as_ptr()),
    };
    // SAFETY: A, B and C are the caller's checked views (B and C row-major, m <= max_m),
    // and the bias holds this block's nb columns.
    unsafe { (sweep.kernel)(&params) }
}

/// The micro-kernel calls of one A micro-panel in one K block: what they share, set once.
struct Tile<'a> {
    ukernel: super::contract::Ukernel,
    /// The calls' arguments but for the B panel, C, the width and the bias (set per call).
    params: UkernelParams,
    /// C at the tile's first row.
    c: OutPtr,
    /// The whole bias row, given with the last K block only.
    bias: Option<&'a [f32]>,
}

impl Tile<'_> {
    /// One micro-kernel call: the tile's rows against the B panel `panel`, into C's columns
    /// `col..col + cols`.
    fn run(&self, panel: &[f32], col: usize, cols: usize) {
        let params = UkernelParams {
            b: panel.as_ptr(),
            c: self.c.offset(0, col).ptr,
            n: cols,
            bias: self.bias.map_or(std::ptr::null(), |v| v[col..].as_ptr()),
            ..self.params
        };
        debug_assert!(panel.len() >= params.k * cols);
        // SAFETY: the B panel (and the A panel, or the `rows x kb` block of A read in place)
        // holds `kb` columns/rows of a full tile, the `rows x cols` corner of C at this offset
        // lies inside the caller's view, and the bias (length n, checked) holds this tile's
        // columns.
        unsafe { (self.ukernel)(&params) };
    }
}
