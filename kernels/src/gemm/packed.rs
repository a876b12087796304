//! B packed once: a Linear layer's weight is the same B on every call, so inference packs it at
//! load time (as MLAS and oneDNN do) and every GEMM with it skips the B packing, whose cost is
//! spread over few rows of A when M is small (one sequence, or one token).
//!
//! Layout: the KC-deep blocks of B one after another (block `pc` holds rows `pc..pc + kb`), each
//! the `ceil(n / NR)` micro-panels of all N columns, exactly as the driver's B packer writes one
//! (jc, pc) block. The NC split does not appear in the layout: the (jc, pc) block the driver
//! wants is the contiguous run of panels `jc / NR ..` of block `pc`, and so is any NR-aligned
//! column range a thread gets, wherever it meets the NC blocks. Every panel starts a multiple of
//! NR floats past a 64-byte boundary, as in the driver's own buffers, so the x86 kernels' aligned
//! loads of B hold. The layout therefore depends on the ISA's packer, NR and KC only; those are
//! recorded and checked against the kernels of every call.

use super::pack::{CacheLine, as_floats};
use super::{GemmOptions, KernelSet, MatRef};
use crate::{Isa, KernelError};

/// B (k x n) packed once for one kernel set (ISA + blocking): every (jc, pc) block in the
/// layout the driver's micro-kernels read, so calls with it skip packing B.
///
/// Pack it with the same [`GemmOptions::isa`] (or the same default path) that the GEMM calls
/// use; a mismatch is reported as [`KernelError::PackedMismatch`], never a wrong answer.
#[derive(Clone)]
pub struct PackedB {
    /// 64-byte aligned panels (see the module docs for the order).
    data: Vec<CacheLine>,
    k: usize,
    n: usize,
    isa: Isa,
    nr: usize,
    kc: usize,
}

impl std::fmt::Debug for PackedB {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedB")
            .field("rows", &self.k)
            .field("cols", &self.n)
            .field("isa", &self.isa)
            .field("nr", &self.nr)
            .field("kc", &self.kc)
            .finish_non_exhaustive()
    }
}

impl PackedB {
    /// Packs `b` (k x n, any strides) for the kernels that `opts` resolves to.
    pub fn pack(b: MatRef<'_>, opts: &GemmOptions) -> Result<PackedB, KernelError> {
        let ks = super::resolve_kernels(opts)?;
        Self::pack_for(&ks, b)
    }

    /// Packs `b` for an explicit kernel set (tests and tuning use sets with other blockings).
    pub fn pack_for(ks: &KernelSet, b: MatRef<'_>) -> Result<PackedB, KernelError> {
        let mut packed = PackedB {
            data: Vec::new(),
            k: 0,
            n: 0,
            isa: ks.isa,
            nr: ks.nr,
            kc: ks.kc,
        };
        packed.fill(ks, b)?;
        Ok(packed)
    }

    /// Packs `b` (k x n, any strides) into this B's storage for the kernels that `opts` resolves
    /// to, replacing what it held. The allocation is reused (it only grows), so a caller that
    /// packs a new B of a similar size on every call (attention's keys, say) allocates nothing
    /// after the first.
    pub fn repack(&mut self, b: MatRef<'_>, opts: &GemmOptions) -> Result<(), KernelError> {
        let ks = super::resolve_kernels(opts)?;
        self.fill(&ks, b)
    }

    fn fill(&mut self, ks: &KernelSet, b: MatRef<'_>) -> Result<(), KernelError> {
        let (k, n) = (b.rows(), b.cols());
        let too_big = || KernelError::ShapeMismatch(format!("B of {k}x{n} is too large to pack"));
        let n_pad = n.div_ceil(ks.nr).checked_mul(ks.nr).ok_or_else(too_big)?;
        let len = n_pad.checked_mul(k).ok_or_else(too_big)?;
        let dst = as_floats(&mut self.data, len);
        if n > 0 {
            for pc in (0..k).step_by(ks.kc) {
                let kb = ks.kc.min(k - pc);
                (ks.pack_b)(b.sub(pc, 0, kb, n), &mut dst[pc * n_pad..(pc + kb) * n_pad]);
            }
        }
        (self.k, self.n, self.isa, self.nr, self.kc) = (k, n, ks.isa, ks.nr, ks.kc);
        Ok(())
    }

    /// Rows of B (the GEMM's k).
    pub fn rows(&self) -> usize {
        self.k
    }

    /// Columns of B (the GEMM's n).
    pub fn cols(&self) -> usize {
        self.n
    }

    /// The code path this B was packed for.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// An error unless `ks` reads this layout (same ISA, NR and KC).
    pub(crate) fn check_kernels(&self, ks: &KernelSet) -> Result<(), KernelError> {
        if (self.isa, self.nr, self.kc) == (ks.isa, ks.nr, ks.kc) {
            Ok(())
        } else {
            Err(KernelError::PackedMismatch(format!(
                "B was packed for {} with NR = {}, KC = {}, but this call runs {} with NR = {}, \
                 KC = {}; pack it with the same GemmOptions as the call",
                self.isa, self.nr, self.kc, ks.isa, ks.nr, ks.kc
            )))
        }
    }

    /// The packed panels of rows `pc..pc + kb` (one KC block, `pc` a multiple of KC) from
    /// column `j` (a multiple of NR) to the end of B.
    pub(crate) fn block(&self, pc: usize, kb: usize, j: usize) -> &[f32] {
        debug_assert!(pc.is_multiple_of(self.kc) && j.is_multiple_of(self.nr) && pc + kb <= self.k);
        let n_pad = self.n.div_ceil(self.nr) * self.nr;
        // SAFETY: `CacheLine` is `repr(C)` around `[f32; 16]` with no padding, and `data` holds
        // at least `k * n_pad` floats (see `pack_for`).
        let all =
            unsafe { std::slice::from_raw_parts(self.data.as_ptr().cast::<f32>(), self.k * n_pad) };
        &all[pc * n_pad + j * kb..(pc + kb) * n_pad]
    }
}

/// The B operand: a strided view, or packed once by [`PackedB::pack`].
#[derive(Clone, Copy, Debug)]
pub enum BSource<'a> {
    /// Packed by every call (blocks of B at a time).
    View(MatRef<'a>),
    /// Packed once, read in place.
    Packed(&'a PackedB),
}

impl BSource<'_> {
    /// Rows of B (the GEMM's k).
    pub fn rows(&self) -> usize {
        match self {
            BSource::View(b) => b.rows(),
            BSource::Packed(b) => b.rows(),
        }
    }

    /// Columns of B (the GEMM's n).
    pub fn cols(&self) -> usize {
        match self {
            BSource::View(b) => b.cols(),
            BSource::Packed(b) => b.cols(),
        }
    }
}
