//! The micro-kernel contract, written down once, and the table of kernels for one ISA.
//!
//! A micro-kernel computes one MR x NR tile:
//!
//! ```text
//! C[0..m, 0..n] := alpha * (A_panel * B_panel)[0..m, 0..n] + beta * C[0..m, 0..n] (+ bias[0..n])
//! ```
//!
//! - `a` points at a packed A micro-panel: `k` columns of `MR` values, column after column
//!   (`a[p * MR + i]` is A(i, p)); rows past `m` are zero-padded by the packer.
//! - `b` points at a packed B micro-panel: `k` rows of `NR` values (`b[p * NR + j]` is B(p, j));
//!   columns past `n` are zero-padded.
//! - Both panels are 64-byte aligned.
//! - `m <= MR` and `n <= NR`: the kernel handles partial tiles itself (the driver has no edge
//!   loops), writing only the `m x n` corner.
//! - If `beta == 0`, C is not read: it may hold NaN or infinity.
//! - C element (i, j) is at `c + i * rsc + j * csc`; the kernel takes the fast path for full tiles
//!   with `csc == 1`.
//! - `bias`, when not null, points at `n` values (the tile's columns) added to every row after
//!   the alpha/beta update, once per element (the driver passes it only with the last K block,
//!   so a Linear layer's bias costs no pass of its own over C).
//!
//! The direct-A variant ([`KernelSet::ukernel_direct_a`]) is the same except that `a` is not
//! packed: it points at A(0, 0) of the caller's A, A(i, p) at `a + i * rsa + p * csa`, and only
//! the `m` rows that exist are read (there is no padding to read). Packing A pays off when A~ is
//! reused by many B micro-panels; when N is a few panels wide (a Linear layer's 64-wide output,
//! its weight gradient, an attention head) the copy costs as much as the arithmetic it feeds, so
//! the driver hands such problems to this variant instead.

use super::pack;
use crate::{Isa, KernelError};

/// Arguments of one micro-kernel call (see the module docs for the contract).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct UkernelParams {
    /// Depth: number of packed columns of A / rows of B.
    pub k: usize,
    /// Scale of the product.
    pub alpha: f32,
    /// Scale of the existing C; 0 means C is write-only.
    pub beta: f32,
    /// Packed A micro-panel (MR x k), or A(0, 0) of the unpacked A for the direct-A variant.
    pub a: *const f32,
    /// Row stride of the unpacked A (direct-A variant only; ignored by the packed kernels).
    pub rsa: isize,
    /// Column stride of the unpacked A (direct-A variant only; ignored by the packed kernels).
    pub csa: isize,
    /// Packed B micro-panel (k x NR).
    pub b: *const f32,
    /// Top-left element of the C tile.
    pub c: *mut f32,
    /// Row stride of C in elements.
    pub rsc: isize,
    /// Column stride of C in elements.
    pub csc: isize,
    /// Rows of the tile to write (<= MR).
    pub m: usize,
    /// Columns of the tile to write (<= NR).
    pub n: usize,
    /// Bias of the tile's `n` columns, added to every row; null for none.
    pub bias: *const f32,
}

/// Arguments of a row-sweep call ([`KernelSet::rows_b_rowmajor`]):
/// `C[0..m, 0..n] := alpha * A[0..m, 0..k] * B[0..k, 0..n] + beta * C (+ bias[0..n])`, with A
/// read in place (A(i, p) at `a + i * rsa + p * csa`), B row-major in place (B(p, j) at
/// `b + p * rsb + j`) and C row-major (C(i, j) at `c + i * rsc + j`). `beta == 0` leaves C
/// unread.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct RowsParams {
    /// Depth.
    pub k: usize,
    /// Scale of the product.
    pub alpha: f32,
    /// Scale of the existing C; 0 means C is write-only.
    pub beta: f32,
    /// A(0, 0).
    pub a: *const f32,
    /// Row stride of A.
    pub rsa: isize,
    /// Column stride of A.
    pub csa: isize,
    /// B(0, 0).
    pub b: *const f32,
    /// Row stride of B.
    pub rsb: usize,
    /// C(0, 0).
    pub c: *mut f32,
    /// Row stride of C.
    pub rsc: usize,
    /// Rows (at most the sweep's [`RowsSweep::max_m`]).
    pub m: usize,
    /// Columns.
    pub n: usize,
    /// `n` bias values added to every row; null for none.
    pub bias: *const f32,
}

/// A row-sweep kernel: computes a prefix of the columns and returns how many (the rest, a last
/// panel too narrow for its arithmetic to match the micro-kernel's, goes to the micro-kernel).
///
/// # Safety
/// The caller upholds [`RowsParams`]'s layout, with `m x n` writable C elements.
pub type RowsKernel = unsafe fn(&RowsParams) -> usize;

/// A row-sweep kernel and the largest M it takes ([`KernelSet::rows_b_rowmajor`]).
#[derive(Clone, Copy, Debug)]
pub struct RowsSweep {
    /// The kernel.
    pub kernel: RowsKernel,
    /// Largest M it takes.
    pub max_m: usize,
}

/// A micro-kernel.
///
/// # Safety
/// The caller upholds the contract in the module docs: panels of the right size and alignment,
/// and `m x n` writable C elements at the given strides.
pub type Ukernel = unsafe fn(&UkernelParams);

/// Packs an `rows x cols` block of op(A) into MR-row micro-panels (see [`pack`]).
pub type PackFn = fn(src: super::MatRef<'_>, dst: &mut [f32]);

/// Everything the driver needs for one ISA: tile shape, cache blocking and the functions.
#[derive(Clone, Copy, Debug)]
pub struct KernelSet {
    /// The path these kernels belong to.
    pub isa: Isa,
    /// Rows of the register tile.
    pub mr: usize,
    /// Columns of the register tile.
    pub nr: usize,
    /// Rows of A packed at once (a multiple of `mr`; sized for L2).
    pub mc: usize,
    /// Depth packed at once (sized so a B micro-panel stays in L1).
    pub kc: usize,
    /// Columns of B packed at once (a multiple of `nr`; sized for L3).
    pub nc: usize,
    /// Packs A into MR-row micro-panels.
    pub pack_a: PackFn,
    /// Packs B into NR-column micro-panels.
    pub pack_b: PackFn,
    /// The MR x NR micro-kernel.
    pub ukernel: Ukernel,
    /// The MR x NR micro-kernel reading A in place, if this ISA has one.
    pub ukernel_direct_a: Option<Ukernel>,
    /// The driver reads a row- or column-major A in place (no packing) when the problem has at
    /// most this many columns (0: never).
    pub direct_a_max_n: usize,
    /// For M of at most the sweep's `max_m` rows, a row-major B view and a row-major C: a
    /// kernel that sweeps B's rows front to back instead of packing B, giving the micro-kernel's
    /// bits.
    pub rows_b_rowmajor: Option<RowsSweep>,
}

impl KernelSet {
    /// The kernels of `isa`, or an error if this CPU lacks it.
    pub fn for_isa(isa: Isa) -> Result<KernelSet, KernelError> {
        isa.check()?;
        let set = match isa {
            Isa::Scalar => Some(Self::scalar()),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => Some(crate::arch::x86_avx2::sgemm_kernels()),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => Some(crate::arch::x86_avx512::sgemm_kernels()),
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => Some(crate::arch::aarch64_neon::sgemm_kernels()),
            #[allow(unreachable_patterns)]
            _ => None,
        };
        set.ok_or(KernelError::UnsupportedIsa(isa.name()))
    }

    /// The portable kernels (4 x 8 tile), run through the same packing and driver as the SIMD
    /// paths.
    pub fn scalar() -> KernelSet {
        Self::portable::<4, 8>()
    }

    /// Portable kernels with any tile shape: tests run the real driver with odd tiles to shake
    /// out edge handling that a power-of-two tile would hide.
    pub fn portable<const MR: usize, const NR: usize>() -> KernelSet {
        KernelSet {
            isa: Isa::Scalar,
            mr: MR,
            nr: NR,
            mc: MR * (128 / MR).max(1),
            kc: 256,
            nc: NR * (2048 / NR).max(1),
            pack_a: pack::pack_a::<MR>,
            pack_b: pack::pack_b::<NR>,
            ukernel: crate::arch::portable::sgemm_ukernel::<MR, NR>,
            ukernel_direct_a: Some(crate::arch::portable::sgemm_ukernel_direct_a::<MR, NR>),
            direct_a_max_n: 4 * NR,
            rows_b_rowmajor: None,
        }
    }

    /// The same kernels with other cache blocking (for tuning and for tests that force many
    /// blocks on small matrices). Values are rounded up to multiples of the tile.
    pub fn with_blocking(mut self, mc: usize, kc: usize, nc: usize) -> KernelSet {
        self.mc = mc.max(1).div_ceil(self.mr) * self.mr;
        self.kc = kc.max(1);
        self.nc = nc.max(1).div_ceil(self.nr) * self.nr;
        self
    }

    /// The same kernels, reading a row- or column-major A in place for problems up to `max_n`
    /// columns wide (0: always pack; `usize::MAX`: never pack such an A). Ignored without a
    /// direct-A kernel.
    pub fn with_direct_a_max_n(mut self, max_n: usize) -> KernelSet {
        self.direct_a_max_n = max_n;
        self
    }

    /// The same kernels without the row-sweep kernel (tests compare the two ways).
    pub fn without_rows_kernel(mut self) -> KernelSet {
        self.rows_b_rowmajor = None;
        self
    }

    /// Whether the driver reads this A in place for a problem `n` columns wide.
    pub(crate) fn direct_a(&self, a: &super::MatRef<'_>, n: usize) -> Option<Ukernel> {
        // A unit stride keeps the reads of one tile on few cache lines: k-contiguous rows (each
        // row a stream) or MR-contiguous columns (one stream); any other layout is packed.
        if (a.col_stride() == 1 || a.row_stride() == 1) && n <= self.direct_a_max_n {
            self.ukernel_direct_a
        } else {
            None
        }
    }
}
