//! AMX-INT8 kernels (Intel Sapphire Rapids and later): `tdpbssd` multiplies a 16 x 64 tile of
//! signed bytes by a 64 x 16 one into a 16 x 16 tile of i32 sums, 16,384 multiply-adds per
//! instruction, s8 x s8 directly (no +128 trick).
//!
//! Tile 32 x 32: four C tiles (tmm0..3), two A tiles (tmm4, tmm5: rows 0-15 and 16-31) and two
//! B tiles (tmm6, tmm7: columns 0-15 and 16-31) per 64-deep chunk; 4 `tdpbssd` per 4 KiB of tile
//! loads. A is packed as 32-row panels of 64-byte row chunks (`pack_a::<32, 64>`: a tile is 16
//! rows at stride 64); B as 32-column panels in depth groups of 4 (`tdpbssd` wants B's rows to
//! be groups of 4 depth values), padded to 64 deep: a tile is 16 groups at stride 128.
//!
//! At that rate the loads, not the products, bound a large product: a 32 x K A panel and a 32 x K
//! B panel (32 KiB each at K = 1024) cannot both stay in L1, so each chunk prefetches the lines
//! of the chunks ahead into L1 and the C rows it will store (see `tile_product`); without that
//! the tile unit waits on L2 for every load.
//!
//! The AMX instructions are not exposed as stable intrinsics, so the kernel is one `asm!` block.
//! The driver loads the tile configuration before a thread's run of micro-kernel calls and
//! releases it after ([`TileState`]): while tiles are configured the OS saves and restores their
//! 8 KiB on every context switch, so a library must not leave them loaded between calls.
//! Linux hands out the (8 KiB) tile state only on request: [`amx_usable`] asks once with
//! `arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`.
//!
//! Small M goes to the AVX512-VNNI skinny kernel on the same B panels (with its own
//! `-128 * colsum` initial sums): a 32-row tile for one row would waste 31/32 of the work.

use super::x86_avx512vnni_i8::skinny_32;
use crate::I8Isa;
use crate::gemm_i8::pack::{self, S8, U8Biased};
use crate::gemm_i8::{AFeed, I8Kernels, I8UkernelParams, SkinnyKernel, TileState};
use std::arch::asm;
use std::sync::OnceLock;

/// Rows of the register tile (two AMX tiles).
pub const MR: usize = 32;
/// Columns of the register tile (two AMX tiles).
pub const NR: usize = 32;
/// Depth of one AMX chunk.
const KCHUNK: usize = 64;

/// The AMX kernel table.
pub fn kernels() -> I8Kernels {
    I8Kernels {
        isa: I8Isa::Amx,
        mr: MR,
        nr: NR,
        kg: KCHUNK,
        a_bytes: 1,
        b_bytes: 1,
        colsum_factor: 0,
        // Half of a Sapphire Rapids core's 2 MiB L2: a 1024 x 1024 weight is one block, so each
        // A micro-panel is packed once into one reused slot (see the driver).
        b_block_bytes: 1 << 20,
        a_feed: AFeed::Packed(pack::pack_a::<MR, KCHUNK, S8>),
        pack_b: pack::pack_b_padded::<NR, 4, KCHUNK, S8>,
        ukernel: ukernel_32x32,
        tile_state: Some(TileState {
            acquire: configure_tiles,
            release: release_tiles,
        }),
        skinny: Some(SkinnyKernel {
            max_m: 4,
            kernel: skinny_32,
            pack_rows: Some(pack::pack_rows_padded::<4, KCHUNK, U8Biased>),
            kg: 4,
            colsum_factor: -128,
        }),
    }
}

/// Whether this CPU and OS can run the AMX path: CPUID reports AMX-TILE and AMX-INT8 (and
/// AVX512-VNNI, used for small M), and the kernel granted this process the tile state.
pub fn amx_usable() -> bool {
    static USABLE: OnceLock<bool> = OnceLock::new();
    *USABLE.get_or_init(|| {
        // std's detection first: a CPU without AVX512-VNNI has no AMX either, and CPUID itself
        // is then never executed (Miri, for one, cannot run it).
        if !(is_x86_feature_detected!("avx512bw") && is_x86_feature_detected!("avx512vnni")) {
            return false;
        }
        let leaf7 = std::arch::x86_64::__cpuid_count(7, 0);
        let (tile, int8) = (leaf7.edx >> 24 & 1 == 1, leaf7.edx >> 25 & 1 == 1);
        tile && int8 && request_tile_state()
    })
}

/// `arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`: true if granted.
#[cfg(target_os = "linux")]
fn request_tile_state() -> bool {
    const SYS_ARCH_PRCTL: i64 = 158;
    const ARCH_REQ_XCOMP_PERM: i64 = 0x1023;
    const XFEATURE_XTILEDATA: i64 = 18;
    let ret: i64;
    // SAFETY: a plain system call that only changes this process's permitted xsave features;
    // the kernel clobbers rcx and r11.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") SYS_ARCH_PRCTL => ret,
            in("rdi") ARCH_REQ_XCOMP_PERM,
            in("rsi") XFEATURE_XTILEDATA,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack)
        );
    }
    ret == 0
}

#[cfg(not(target_os = "linux"))]
fn request_tile_state() -> bool {
    false
}

/// The tile configuration: palette 1, all eight tiles 16 rows of 64 bytes.
#[repr(C, align(64))]
struct TileConfig([u8; 64]);

const TILE_CONFIG: TileConfig = {
    let mut cfg = [0u8; 64];
    cfg[0] = 1; // palette
    let mut t = 0;
    while t < 8 {
        cfg[16 + 2 * t] = 64; // bytes per row (u16, little-endian)
        cfg[48 + t] = 16; // rows
        t += 1;
    }
    TileConfig(cfg)
};

/// Loads [`TILE_CONFIG`] on the calling thread (once per driver run: `ldtilecfg` costs as much
/// as several `tdpbssd`).
///
/// # Safety
/// AMX use was granted to this process ([`amx_usable`]).
unsafe fn configure_tiles() {
    let config = TILE_CONFIG;
    // SAFETY: a valid palette-1 configuration; AMX use was granted (caller).
    unsafe { asm!("ldtilecfg [{0}]", in(reg) config.0.as_ptr(), options(nostack)) };
}

/// Returns the tile registers to their initial state, so the OS stops saving them.
///
/// # Safety
/// AMX use was granted to this process ([`amx_usable`]).
unsafe fn release_tiles() {
    // SAFETY: `tilerelease` is valid whenever AMX is usable, configured or not.
    unsafe { asm!("tilerelease", options(nostack, nomem)) };
}

/// 32 x 32 i32 sums, as the tiles store them.
#[repr(C, align(64))]
struct OutTile([[i32; NR]; MR]);

/// # Safety
/// AMX must be usable ([`amx_usable`]) and the tiles configured on this thread
/// (`configure_tiles`, done by the driver through [`TileState`]); the contract in
/// `gemm_i8::contract` holds, and every initial column sum is zero (this table's `colsum_factor` is 0: `tdpbssd` is s8 x s8).
pub unsafe fn ukernel_32x32(p: &I8UkernelParams) {
    debug_assert!(
        // SAFETY: `col_init` holds NR values.
        unsafe { std::slice::from_raw_parts(p.col_init, NR) }
            .iter()
            .all(|&v| v == 0)
    );
    if p.m == MR && p.n == NR {
        // Full tile: the tiles store straight into C (row stride ldc * 4 bytes), aligned or not.
        // On misaligned rows each 64-byte tile row store splits across two cache lines: at
        // 128 x 384 x 1536 on a Sapphire Rapids core, 2100 GOP/s against 3200 with C aligned.
        // Storing to an aligned tile and copying it out with one masked store per line of C
        // was no faster (the partial lines still have to be read for ownership), so the
        // direct store stays (a large C is rarely 64-byte aligned: the allocator's header puts
        // it 16 bytes into a page).
        // SAFETY: C holds 32 rows of 32 i32s at stride ldc (contract).
        unsafe { tile_product(p, p.c, p.ldc * 4) };
        return;
    }
    let mut out = std::mem::MaybeUninit::<OutTile>::uninit();
    // SAFETY: `out` is 32 rows of 128 bytes, all of which the tiles store; then the m x n
    // corner goes to C.
    unsafe {
        tile_product(p, out.as_mut_ptr().cast::<i32>(), NR * 4);
        let out = out.assume_init_ref();
        for (i, row) in out.0.iter().enumerate().take(p.m) {
            std::ptr::copy_nonoverlapping(row.as_ptr(), p.c.add(i * p.ldc), p.n);
        }
    }
}

/// Bytes ahead of the B chunk being multiplied that each chunk prefetches into L1: four chunks,
/// so the lines arrive from L2 (or L3) before their tile loads; past the end of the panel this
/// reaches the start of the next B panel, the one the driver's next call reads.
const B_PREFETCH: usize = 4 * 2048;
/// The same for A: one chunk ahead (the A panel is reused by consecutive calls, so its lines are
/// usually still in L1 or L2 and need less lead).
const A_PREFETCH: usize = 2048;

/// Eight `prefetcht0` covering 512 bytes at `[$reg + $part * 512]`.
macro_rules! prefetch_512 {
    ($reg:literal, $part:literal) => {
        concat!(
            "prefetcht0 [",
            $reg,
            " + ",
            $part,
            " * 512]\n",
            "prefetcht0 [",
            $reg,
            " + ",
            $part,
            " * 512 + 64]\n",
            "prefetcht0 [",
            $reg,
            " + ",
            $part,
            " * 512 + 128]\n",
            "prefetcht0 [",
            $reg,
            " + ",
            $part,
            " * 512 + 192]\n",
            "prefetcht0 [",
            $reg,
            " + ",
            $part,
            " * 512 + 256]\n",
            "prefetcht0 [",
            $reg,
            " + ",
            $part,
            " * 512 + 320]\n",
            "prefetcht0 [",
            $reg,
            " + ",
            $part,
            " * 512 + 384]\n",
            "prefetcht0 [",
            $reg,
            " + ",
            $part,
            " * 512 + 448]\n",
        )
    };
}

/// The 32 x 32 product of one A and one B panel, stored as i32 rows at `dst` (row stride
/// `stride` bytes).
///
/// Per 64-deep chunk the loads are interleaved with the products that need them (A0 B0 C00, B1
/// C01, A1 C10 C11), so each tile load waits only for the one product that last read its
/// register. Between them the chunk prefetches 2 KiB of B ([`B_PREFETCH`] ahead) and 2 KiB of A
/// ([`A_PREFETCH`] ahead) into L1, since tile loads that miss L1 stall the tile unit; and two C
/// rows for writing (`prefetchw` of their first and last bytes and the middle: the three lines a
/// misaligned 128-byte row touches), so the final tile stores do not wait for their lines (a
/// pointer that stops at the last row pair: deeper panels prefetch those lines again, at the
/// cost of an L1 hit).
///
/// # Safety
/// As [`ukernel_32x32`]; `dst` addresses 32 rows of 32 writable i32s at `stride`.
unsafe fn tile_product(p: &I8UkernelParams, dst: *mut i32, stride: usize) {
    // SAFETY: the packed A panel holds `groups` chunks of 32 x 64 bytes and the B panel
    // `groups` chunks of 16 groups x 128 bytes (see the module docs); `dst` is 32 rows of 128
    // bytes at `stride`, and the C prefetches stay inside them. Prefetches past the panels never
    // fault. The tiles were configured (caller).
    unsafe {
        asm!(
            "tilezero tmm0",
            "tilezero tmm1",
            "tilezero tmm2",
            "tilezero tmm3",
            "test {n}, {n}",
            "jz 3f",
            "mov {pc}, {o}",
            "2:",
            "tileloadd tmm4, [{a} + {s64}*1]",
            "tileloadd tmm6, [{b} + {s128}*1]",
            prefetch_512!("{b} + {bpf}", "0"),
            prefetch_512!("{a} + {apf}", "0"),
            "tdpbssd tmm0, tmm4, tmm6",
            "tileloadd tmm7, [{b} + {s128}*1 + 64]",
            prefetch_512!("{b} + {bpf}", "1"),
            prefetch_512!("{a} + {apf}", "1"),
            "prefetchw [{pc}]",
            "prefetchw [{pc} + 64]",
            "prefetchw [{pc} + 127]",
            "tdpbssd tmm1, tmm4, tmm7",
            "tileloadd tmm5, [{a} + {s64}*1 + 1024]",
            prefetch_512!("{b} + {bpf}", "2"),
            prefetch_512!("{a} + {apf}", "2"),
            "prefetchw [{pc} + {so}]",
            "prefetchw [{pc} + {so} + 64]",
            "prefetchw [{pc} + {so} + 127]",
            "tdpbssd tmm2, tmm5, tmm6",
            prefetch_512!("{b} + {bpf}", "3"),
            prefetch_512!("{a} + {apf}", "3"),
            "tdpbssd tmm3, tmm5, tmm7",
            // Next row pair of C, clamped to the last one (row 30 = pc_last).
            "lea {pc}, [{pc} + 2*{so}]",
            "cmp {pc}, {pc_last}",
            "cmova {pc}, {pc_last}",
            "add {a}, 2048",
            "add {b}, 2048",
            "dec {n}",
            "jnz 2b",
            "3:",
            "tilestored [{o} + {so}*1], tmm0",
            "lea {t}, [{o} + 64]",
            "tilestored [{t} + {so}*1], tmm1",
            "mov {t}, {so}",
            "shl {t}, 4",
            "add {o}, {t}",
            "tilestored [{o} + {so}*1], tmm2",
            "lea {t}, [{o} + 64]",
            "tilestored [{t} + {so}*1], tmm3",
            n = inout(reg) p.groups => _,
            a = inout(reg) p.a => _,
            b = inout(reg) p.b => _,
            o = inout(reg) dst => _,
            so = in(reg) stride,
            pc = out(reg) _,
            pc_last = in(reg) dst.wrapping_byte_add(30 * stride),
            t = out(reg) _,
            s64 = in(reg) 64usize,
            s128 = in(reg) 128usize,
            bpf = const B_PREFETCH,
            apf = const A_PREFETCH,
            options(nostack)
        );
    }
}
