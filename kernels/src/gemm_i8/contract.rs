//! The int8 micro-kernel contracts, and the table of kernels for one int8 path.
//!
//! A micro-kernel computes one finished MR x NR tile of i32 sums over the whole depth:
//!
//! ```text
//! C[i, j] = col_init[j] + sum over the packed depth of A~[i, p] * B~[p, j]     (i < m, j < n)
//! ```
//!
//! - `a` is a packed A micro-panel (MR rows x `groups * KG` depth) and `b` a packed B panel
//!   (NR columns), both in the layout of `gemm_i8::pack`; their element formats are the
//!   kernel's own (e.g. `A + 128` as u8 for VNNI).
//! - `col_init` points at NR i32 values: each column's starting sum (the VNNI `-128 * colsum`
//!   correction, or zeros).
//! - `m <= MR`, `n <= NR`: only the `m x n` corner of C is written, row-major with stride `ldc`.
//! - The depth is not blocked: one call sums all of K, so a tile leaves the kernel finished and
//!   the fused epilogue runs on it while it is hot. For the shapes this library targets the
//!   MR x K A micro-panel stays in L1 and the NR-wide B panel streams from L2.
//!
//! A skinny kernel does the same for `m <= max_m` rows read from row-padded A (`pack_rows`),
//! without padding the rows up to MR: the small-M (decode) shapes, which are bound by streaming
//! B, not by arithmetic.

use super::pack;
use crate::{I8Isa, KernelError};

/// Arguments of one micro-kernel call (see the module docs).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct I8UkernelParams {
    /// Depth groups of `KG` values.
    pub groups: usize,
    /// Packed A micro-panel, or (skinny kernels) the first padded A row.
    pub a: *const u8,
    /// Bytes between padded A rows (skinny kernels only).
    pub lda: usize,
    /// Packed B panel.
    pub b: *const u8,
    /// NR initial column sums.
    pub col_init: *const i32,
    /// Top-left element of the C tile.
    pub c: *mut i32,
    /// Row stride of C in elements.
    pub ldc: usize,
    /// Rows to write (`<= MR`, or `<= max_m` for skinny kernels).
    pub m: usize,
    /// Columns to write (`<= NR`).
    pub n: usize,
}

/// A micro-kernel (tile or skinny).
///
/// # Safety
/// The caller upholds the contract in the module docs: panels of the right size and layout,
/// and `m x n` writable C elements at stride `ldc`.
pub type I8Ukernel = unsafe fn(&I8UkernelParams);

/// Packs an `mb x k` block of A: `(a, lda, mb, k, dst)`.
pub type PackAFn = fn(&[i8], usize, usize, usize, &mut [u8]);
/// Packs all of B: `(b, ldb, n, k, dst)`.
pub type PackBFn = fn(&[i8], usize, usize, usize, &mut [u8]);

/// A kernel for small M that reads A rows directly (no padding to MR).
#[derive(Clone, Copy, Debug)]
pub struct SkinnyKernel {
    /// Largest M it handles.
    pub max_m: usize,
    /// The kernel (`a` points at rows packed by `pack_rows`, `lda` bytes apart).
    pub kernel: I8Ukernel,
    /// Packs A rows for it (padded to the table's depth padding).
    pub pack_rows: PackAFn,
    /// Depth values per group it steps over (may be finer than the table's `kg`).
    pub kg: usize,
    /// Multiplier of each column's sum of B that starts its accumulators.
    pub colsum_factor: i32,
}

/// Per-thread register state a path must set up before its micro-kernel runs and hand back
/// after (AMX: the tile configuration, which makes the OS save 8 KiB of tile data on every
/// context switch for as long as it is loaded).
#[derive(Clone, Copy, Debug)]
pub struct TileState {
    /// Loads the state on the calling thread.
    pub acquire: unsafe fn(),
    /// Releases it.
    pub release: unsafe fn(),
}

/// Everything the int8 driver needs for one path.
#[derive(Clone, Copy, Debug)]
pub struct I8Kernels {
    /// The path.
    pub isa: I8Isa,
    /// Rows of the register tile.
    pub mr: usize,
    /// Columns of the register tile (and of a B panel).
    pub nr: usize,
    /// Depth values per group.
    pub kg: usize,
    /// Bytes per packed A value.
    pub a_bytes: usize,
    /// Bytes per packed B value.
    pub b_bytes: usize,
    /// Multiplier of each column's sum of B that starts its accumulator (-128 on VNNI).
    pub colsum_factor: i32,
    /// Bytes of packed B kept hot in L2 while A micro-panels sweep over it.
    pub b_block_bytes: usize,
    /// Packs A into MR-row micro-panels.
    pub pack_a: PackAFn,
    /// Packs B into NR-column panels.
    pub pack_b: PackBFn,
    /// The MR x NR micro-kernel.
    pub ukernel: I8Ukernel,
    /// The small-M kernel, if this path has one.
    pub skinny: Option<SkinnyKernel>,
    /// State the micro-kernel (not the skinny kernel) needs around a run of calls.
    pub tile_state: Option<TileState>,
}

/// The largest MR x NR over all paths: the size of the stack tile fused epilogues work on.
pub const MAX_TILE: usize = 1024;

impl I8Kernels {
    /// The kernels of `isa`, or an error if this CPU lacks it.
    pub fn for_isa(isa: I8Isa) -> Result<I8Kernels, KernelError> {
        isa.check()?;
        let set = match isa {
            I8Isa::Scalar => Some(Self::scalar()),
            #[cfg(target_arch = "x86_64")]
            I8Isa::Avx2 => Some(crate::arch::x86_avx2_i8::kernels()),
            #[cfg(target_arch = "x86_64")]
            I8Isa::AvxVnni => Some(crate::arch::x86_avxvnni_i8::kernels()),
            #[cfg(target_arch = "x86_64")]
            I8Isa::Avx512Vnni => Some(crate::arch::x86_avx512vnni_i8::kernels()),
            #[cfg(target_arch = "x86_64")]
            I8Isa::Amx => Some(crate::arch::x86_amx_i8::kernels()),
            #[cfg(target_arch = "aarch64")]
            I8Isa::Neon => Some(crate::arch::aarch64_neon_i8::kernels()),
            #[cfg(target_arch = "aarch64")]
            I8Isa::NeonDotprod => Some(crate::arch::aarch64_neon_i8::dotprod_kernels()),
            #[allow(unreachable_patterns)]
            _ => None,
        };
        let set = set.ok_or(KernelError::UnsupportedIsa(isa.name()))?;
        assert!(
            set.mr * set.nr <= MAX_TILE && set.skinny.is_none_or(|s| s.max_m * set.nr <= MAX_TILE)
        );
        Ok(set)
    }

    /// The portable kernels (4 x 8 tile, depth groups of 4).
    pub fn scalar() -> I8Kernels {
        Self::portable::<4, 8>()
    }

    /// Portable kernels with any tile shape (tests use odd tiles to exercise edges).
    pub fn portable<const MR: usize, const NR: usize>() -> I8Kernels {
        use crate::arch::portable_i8 as p;
        I8Kernels {
            isa: I8Isa::Scalar,
            mr: MR,
            nr: NR,
            kg: p::KG,
            a_bytes: 1,
            b_bytes: 1,
            colsum_factor: 0,
            b_block_bytes: 256 << 10,
            pack_a: pack::pack_a::<MR, { p::KG }, pack::S8>,
            pack_b: pack::pack_b::<NR, { p::KG }, pack::S8>,
            ukernel: p::ukernel::<MR, NR>,
            tile_state: None,
            skinny: Some(SkinnyKernel {
                max_m: 2,
                kernel: p::skinny::<NR>,
                pack_rows: pack::pack_rows::<{ p::KG }, pack::S8>,
                kg: p::KG,
                colsum_factor: 0,
            }),
        }
    }

    /// The same kernels without the skinny path (tests run small M through the tile kernel).
    pub fn without_skinny(mut self) -> I8Kernels {
        self.skinny = None;
        self
    }

    /// The same kernels with another L2 block size (tests use tiny blocks to force many).
    pub fn with_b_block_bytes(mut self, bytes: usize) -> I8Kernels {
        self.b_block_bytes = bytes.max(1);
        self
    }

    /// Depth padded to whole groups.
    pub fn padded_k(&self, k: usize) -> usize {
        k.div_ceil(self.kg) * self.kg
    }

    /// Bytes of one packed B panel for depth `k`.
    pub fn b_panel_bytes(&self, k: usize) -> usize {
        self.nr * self.padded_k(k) * self.b_bytes
    }

    /// Bytes of one packed A micro-panel for depth `k`.
    pub fn a_panel_bytes(&self, k: usize) -> usize {
        self.mr * self.padded_k(k) * self.a_bytes
    }
}
