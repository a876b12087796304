//! The int8 micro-kernel contracts, and the table of kernels for one int8 path.
//!
//! A micro-kernel computes one finished MR x NR tile of i32 sums over the whole depth:
//!
//! ```text
//! C[i, j] = init[i, j] + sum over the depth of A~[i, p] * B~[p, j]     (i < m, j < n)
//! ```
//!
//! - `b` is a packed B panel (NR columns) in the layout of `gemm_i8::pack`, in the kernel's own
//!   element format (e.g. `B + 128` as u8 for AVX512-VNNI).
//! - A comes one of two ways ([`AFeed`]): a packed micro-panel (MR rows x `groups * KG` depth,
//!   `gemm_i8::pack` layout, e.g. `A + 128` as u8 for AVX-VNNI), whose sums start at
//!   `init[i, j] = col_init[j]` (NR i32: the `-128 * colsum` correction, or zeros); or the rows
//!   of A themselves, `lda` bytes apart, as signed bytes, whose sums start at
//!   `init[i, j] = row_init[i]` (`m` i32: `rowsum_factor * sum_k A[i, k]`, computed per call).
//!   Reading A in place saves the per-call packing; it needs a kernel whose broadcast operand
//!   can be A's signed bytes (`vpdpbusd`'s s8 operand is the one that may be a broadcast from
//!   memory, so B carries the `+ 128`).
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
    /// Packed A micro-panel, or the tile's first A row (skinny kernels, and tables that read A
    /// in place).
    pub a: *const u8,
    /// Bytes between A rows (skinny kernels, and tables that read A in place).
    pub lda: usize,
    /// Packed B panel.
    pub b: *const u8,
    /// NR initial column sums (tables that pack A).
    pub col_init: *const i32,
    /// `m` initial row sums (tables that read A in place; null otherwise).
    pub row_init: *const i32,
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
/// Scans one row of A: `(holds a -128, sum of its values)`.
pub type ScanRowFn = fn(&[i8]) -> (bool, i32);

/// How a table's kernels get A.
#[derive(Clone, Copy, Debug)]
pub enum AFeed {
    /// The tile kernel reads MR-row micro-panels packed per call by this function; the skinny
    /// kernel reads rows packed by its `pack_rows`. Sums start at `col_init`.
    Packed(PackAFn),
    /// Both kernels read A's rows in place as signed bytes (`a`, `lda`). When K is not a
    /// multiple of the depth group, the rows are first copied by `pad_rows` (zero-padded to
    /// whole groups, so no kernel reads past a row) and read from the copy. Row `i`'s sums start
    /// at `row_init[i] = rowsum_factor * sum_k A[i, k]`.
    InPlace {
        /// Copies rows zero-padded to whole depth groups (`pack::pack_rows::<KG, S8>`).
        pad_rows: PackAFn,
        /// Multiplier of each row's sum of A that starts its accumulators (-128 when B is
        /// stored `+ 128`).
        rowsum_factor: i32,
        /// Whether a row holds a -128, and the sum of its values: the check every call makes
        /// on A, with the row sums in the same pass.
        scan_row: ScanRowFn,
    },
}

/// A kernel for small M that reads A rows directly (no padding to MR).
#[derive(Clone, Copy, Debug)]
pub struct SkinnyKernel {
    /// Largest M it handles.
    pub max_m: usize,
    /// The kernel (`a` points at rows packed by `pack_rows`, or A's own rows when the table
    /// reads A in place, `lda` bytes apart).
    pub kernel: I8Ukernel,
    /// Packs A rows for it (padded to the table's depth padding); `None` when the table reads A
    /// in place ([`AFeed::InPlace`]).
    pub pack_rows: Option<PackAFn>,
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
    /// How the kernels get A.
    pub a_feed: AFeed,
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
        // A skinny kernel packs its rows exactly when the tile kernel packs its panels.
        assert!(
            set.skinny
                .is_none_or(|s| s.pack_rows.is_some() == matches!(set.a_feed, AFeed::Packed(_)))
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
            a_feed: AFeed::Packed(pack::pack_a::<MR, { p::KG }, pack::S8>),
            pack_b: pack::pack_b::<NR, { p::KG }, pack::S8>,
            ukernel: p::ukernel::<MR, NR>,
            tile_state: None,
            skinny: Some(SkinnyKernel {
                max_m: 2,
                kernel: p::skinny::<NR>,
                pack_rows: Some(pack::pack_rows::<{ p::KG }, pack::S8>),
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
