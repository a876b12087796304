//! The loops around the int8 micro-kernels, and the split across threads. No ISA code here.
//!
//! B is packed once into NR-wide panels covering all of K. Per call, each thread walks blocks of
//! B panels sized to stay in L2 (`b_block_bytes`); within a block, each MR-row A micro-panel (in
//! L1) meets every B panel of the block, one micro-kernel call per tile. A thread packs each of
//! its A micro-panels during the first block, just before the panel's first use, unless the
//! table reads A's rows in place ([`AFeed::InPlace`]). Small M goes to the skinny kernel, which
//! streams each B panel once for all rows.

use super::contract::PackAFn;
use super::epilogue::{Epilogue, EpilogueScratch};
use super::{AFeed, I8Kernels, I8UkernelParams, MAX_TILE, PackedI8B};
use crate::gemm_i8::pack::AlignedBytes;
use std::cell::RefCell;
use std::ops::Range;

/// Where finished tiles go.
#[derive(Clone, Copy)]
pub(crate) enum Sink<'a> {
    /// Raw i32 sums, row stride `ldc`: written by the micro-kernel directly.
    I32 { c: *mut i32, ldc: usize },
    /// Through a fused epilogue.
    Epilogue(Epilogue<'a>),
}

// SAFETY: threads only ever receive disjoint row or column ranges of the output (see `run`), and
// the epilogue's slices are read-only.
unsafe impl Send for Sink<'_> {}
unsafe impl Sync for Sink<'_> {}

thread_local! {
    /// Per-thread packed A: grows to the largest block seen, then reused.
    static PACKED_A: RefCell<AlignedBytes> = RefCell::new(AlignedBytes::default());
}

/// The i32 tile a fused epilogue reads, aligned to a cache line.
#[repr(C, align(64))]
struct AlignedTile([i32; MAX_TILE]);

/// Work below this many multiply-adds runs on the calling thread.
const PARALLEL_MIN_MACS: usize = 1 << 17;
/// The same for the skinny kernel, whose calls take a few microseconds per million
/// multiply-adds (a 384 x 1536 weight at M = 1 is faster on one thread than handed to two).
const SKINNY_PARALLEL_MIN_MACS: usize = 1 << 22;

/// Runs `C = A * B^T` through `sink` (shapes and values already checked) on up to `threads`
/// threads; `row_init` holds each row's initial sum when the table reads A in place (empty
/// otherwise). The result does not depend on the thread count: every output is one exact
/// integer sum computed by one thread.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run(
    ks: &I8Kernels,
    threads: usize,
    a: &[i8],
    lda: usize,
    m: usize,
    row_init: &[i32],
    b: &PackedI8B,
    sink: &Sink<'_>,
) {
    let (n, k) = (b.n(), b.k());
    if m == 0 || n == 0 {
        return;
    }
    let panels = n.div_ceil(ks.nr);
    let skinny = ks.skinny.is_some_and(|s| m <= s.max_m);
    let min_macs = if skinny {
        SKINNY_PARALLEL_MIN_MACS
    } else {
        PARALLEL_MIN_MACS
    };
    let threads = if m * n * k.max(1) < min_macs {
        1
    } else {
        threads.max(1)
    };
    let m_tiles = m.div_ceil(ks.mr);
    let rows = RowsOfA { a, lda, row_init };
    if threads == 1 {
        serial(ks, &rows, 0..m, 0..panels, b, sink);
        return;
    }
    // Split M: each thread packs only its own rows of A and streams all of B from the shared
    // cache (at 1024^3 on two threads, 1.98x one thread; splitting N, where every thread packs
    // all of A, 1.89x). Split N instead when the row tiles share out less evenly than the B
    // panels, below 90% (e.g. 3 row tiles on two threads) or always (skinny M).
    let split_m = !skinny && {
        let balance = |units: usize| units as f64 / (units.div_ceil(threads) * threads) as f64;
        let (m_balance, n_balance) = (balance(m_tiles), balance(panels));
        m_balance >= n_balance || m_balance >= 0.9
    };
    let (units, unit) = if split_m {
        (m_tiles, ks.mr)
    } else {
        (panels, 1)
    };
    let parts = threads.min(units);
    let per_part = units.div_ceil(parts);
    let run_part = |t: usize| {
        let start = t * per_part;
        if start >= units {
            return;
        }
        let end = (start + per_part).min(units);
        if split_m {
            let part_rows = start * unit..(end * unit).min(m);
            serial(ks, &rows, part_rows, 0..panels, b, sink);
        } else {
            serial(ks, &rows, 0..m, start..end, b, sink);
        }
    };
    crate::threads::run_parts(parts, run_part);
}

/// A as the call gave it: rows `lda` bytes apart, and each row's initial sum when the table
/// reads A in place.
struct RowsOfA<'a> {
    a: &'a [i8],
    lda: usize,
    row_init: &'a [i32],
}

/// Where one thread's kernels read A.
#[derive(Clone, Copy)]
enum ASource {
    /// Rows in place (A itself, or its copy zero-padded to whole depth groups), `ld` bytes
    /// apart.
    Rows { ptr: *const u8, ld: usize },
    /// MR-row micro-panels packed by this function.
    Panels(PackAFn),
}

/// One thread's share: rows `rows` of C against B panels `panels`.
fn serial(
    ks: &I8Kernels,
    a: &RowsOfA<'_>,
    rows: Range<usize>,
    panels: Range<usize>,
    b: &PackedI8B,
    sink: &Sink<'_>,
) {
    let (n, k) = (b.n(), b.k());
    let kp = ks.padded_k(k);
    let groups = kp / ks.kg;
    let b_panel = ks.b_panel_bytes(k);
    let (b_data, col_init) = (b.data(), b.col_init());
    let mb = rows.len();
    let (lda, a_rows) = (a.lda, &a.a[rows.start * a.lda..]);
    let row_init = a.row_init.get(rows.start..).unwrap_or(&[]);
    // Cache-line aligned, so the AMX tiles store straight into it.
    let mut tile = AlignedTile([0; MAX_TILE]);
    let mut scratch = EpilogueScratch::new();
    PACKED_A.with(|buf| {
        let mut buf = buf.borrow_mut();
        // In-place kernels read A itself, or, when K is not a whole number of depth groups, a
        // copy padded with zeros (a group must not run past a row).
        let source = match ks.a_feed {
            AFeed::InPlace { pad_rows, .. } if k % ks.kg != 0 => {
                buf.set_len(mb * kp);
                pad_rows(a_rows, lda, mb, k, buf.as_mut_slice());
                ASource::Rows {
                    ptr: buf.as_slice().as_ptr(),
                    ld: kp,
                }
            }
            AFeed::InPlace { .. } => ASource::Rows {
                ptr: a_rows.as_ptr().cast(),
                ld: lda,
            },
            AFeed::Packed(pack_a) => ASource::Panels(pack_a),
        };
        let in_place = matches!(source, ASource::Rows { .. });
        let params = |a: *const u8, lda: usize, m: usize, q: usize| I8UkernelParams {
            groups,
            a,
            lda,
            b: b_data[q * b_panel..].as_ptr(),
            col_init: col_init[q * ks.nr..].as_ptr(),
            row_init: std::ptr::null(),
            c: std::ptr::null_mut(),
            ldc: 0,
            m,
            n: ks.nr.min(n - q * ks.nr),
        };
        if let Some(sk) = ks.skinny.filter(|s| mb <= s.max_m) {
            let (a_ptr, a_ld) = match (sk.pack_rows, source) {
                (Some(pack_rows), _) => {
                    let row_bytes = kp * ks.a_bytes;
                    buf.set_len(mb * row_bytes);
                    pack_rows(a_rows, lda, mb, k, buf.as_mut_slice());
                    (buf.as_slice().as_ptr(), row_bytes)
                }
                (None, ASource::Rows { ptr, ld }) => (ptr, ld),
                (None, ASource::Panels(_)) => {
                    panic!("a skinny kernel without pack_rows needs a table that reads A in place")
                }
            };
            let skinny_init = b.skinny_col_init();
            for q in panels {
                let p = I8UkernelParams {
                    groups: kp / sk.kg,
                    col_init: skinny_init[q * ks.nr..].as_ptr(),
                    row_init: if in_place {
                        row_init.as_ptr()
                    } else {
                        std::ptr::null()
                    },
                    ..params(a_ptr, a_ld, mb, q)
                };
                // SAFETY: `p` points at `mb` rows (padded, or in place with K a whole number of
                // groups), their initial sums if read in place, and one full B panel; emit
                // supplies C.
                unsafe {
                    emit(
                        ks,
                        sink,
                        sk.kernel,
                        p,
                        &mut tile.0,
                        &mut scratch,
                        rows.start,
                        q * ks.nr,
                    )
                };
            }
            return;
        }
        let a_panel = ks.a_panel_bytes(k);
        let m_panels = mb.div_ceil(ks.mr);
        if let Some(state) = ks.tile_state {
            // SAFETY: the table comes from `I8Kernels::for_isa`, which checked the path is usable.
            unsafe { (state.acquire)() };
        }
        // Blocks of at most `b_block_bytes`, as even as possible (22 panels in blocks of at
        // most 8 run as 8 + 7 + 7, not 8 + 8 + 6).
        let max_block = (ks.b_block_bytes / b_panel.max(1)).max(1);
        let block = panels
            .len()
            .div_ceil(panels.len().div_ceil(max_block).max(1))
            .max(1);
        // With one block of B, each A micro-panel is used once, right after it is packed: one
        // panel of buffer, rewritten in place, stays in L1 (a buffer for all of A would have to
        // be fetched back from L3 for every write).
        let a_slots = if panels.len() > block { m_panels } else { 1 };
        if !in_place {
            buf.set_len(a_slots * a_panel);
        }
        let mut q0 = panels.start;
        while q0 < panels.end {
            let q1 = (q0 + block).min(panels.end);
            for ip in 0..m_panels {
                let m_tile = ks.mr.min(mb - ip * ks.mr);
                let (a_ptr, a_ld, r_init) = match source {
                    ASource::Rows { ptr, ld } => (
                        ptr.wrapping_add(ip * ks.mr * ld),
                        ld,
                        row_init[ip * ks.mr..].as_ptr(),
                    ),
                    ASource::Panels(pack_a) => {
                        let slot = if a_slots == 1 { 0 } else { ip };
                        if q0 == panels.start {
                            // Each A micro-panel is packed just before its first use, so it is
                            // still in L1 / L2 when the kernel reads it (packing all of A first
                            // would leave the first panels in L3 by the time they run).
                            pack_a(
                                &a_rows[ip * ks.mr * lda..],
                                lda,
                                m_tile,
                                k,
                                &mut buf.as_mut_slice()[slot * a_panel..(slot + 1) * a_panel],
                            );
                        }
                        let panel = buf.as_slice()[slot * a_panel..].as_ptr();
                        (panel, 0, std::ptr::null())
                    }
                };
                for q in q0..q1 {
                    let p = I8UkernelParams {
                        row_init: r_init,
                        ..params(a_ptr, a_ld, m_tile, q)
                    };
                    let row0 = rows.start + ip * ks.mr;
                    // SAFETY: `p` points at one full A micro-panel (or `m_tile` rows in place,
                    // K a whole number of groups, with their initial sums) and one full B
                    // panel.
                    unsafe {
                        emit(
                            ks,
                            sink,
                            ks.ukernel,
                            p,
                            &mut tile.0,
                            &mut scratch,
                            row0,
                            q * ks.nr,
                        )
                    };
                }
            }
            q0 = q1;
        }
        if let Some(state) = ks.tile_state {
            // SAFETY: as for `acquire`; no micro-kernel runs on this thread after this.
            unsafe { (state.release)() };
        }
    });
}

/// Runs one kernel call and sends its tile (output rows from `row0`, columns from `col0`) to
/// the sink.
///
/// # Safety
/// `p` satisfies the kernel contract apart from C, and the `p.m x p.n` tile at (row0, col0) lies
/// inside the sink's output and belongs to this thread.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn emit(
    ks: &I8Kernels,
    sink: &Sink<'_>,
    kernel: super::I8Ukernel,
    mut p: I8UkernelParams,
    tile: &mut [i32; MAX_TILE],
    scratch: &mut EpilogueScratch,
    row0: usize,
    col0: usize,
) {
    match sink {
        Sink::I32 { c, ldc } => {
            p.c = c.wrapping_add(row0 * ldc + col0);
            p.ldc = *ldc;
            // SAFETY: forwarded contract.
            unsafe { kernel(&p) };
        }
        Sink::Epilogue(e) => {
            p.c = tile.as_mut_ptr();
            p.ldc = ks.nr;
            // SAFETY: the stack tile holds MAX_TILE >= m * NR values.
            unsafe {
                kernel(&p);
                e.apply(scratch, &tile[..], ks.nr, p.m, p.n, row0, col0);
            }
        }
    }
}
