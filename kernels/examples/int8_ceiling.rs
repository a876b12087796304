//! Single-core int8 ceilings on this machine, each next to what the library's GEMM reaches.
//!
//! **AVX2.** Each multiply-add chain with 12 independent accumulators (no loads, no packing: the
//! arithmetic alone). It answers "how far is the kernel from what this core can do with *exact*
//! s8 x s8 arithmetic", which differs from the usual `vpmaddubsw` ceiling:
//!
//! - `maddubs`: `vpmaddubsw` + `vpmaddwd(1)` + `vpaddd`, 32 u8 x s8 multiply-adds per 3
//!   instructions. The customary AVX2 peak, but not exact for s8 x s8 (the u8 operand would be
//!   `a + 128`, and two products of 255 * 127 saturate the i16 pair sum);
//! - `sign-trick`: the same plus `vpsignb` moving the sign of A onto B (`|a| * sign(a) b`,
//!   exact for values in [-127, 127]), 4 instructions per 32;
//! - `sign-extend`: B stored as i16, `vpmaddwd` + `vpaddd`, 16 per 2 instructions (exact; what
//!   the AVX2 path runs).
//!
//! The exact chains need 4 instructions per 32 multiply-adds instead of 3, and run below the
//! `maddubs` chain: an Intel Sapphire Rapids core measures 0.73 for the sign trick and 0.74 for
//! sign extension, an AMD Zen 4 core 0.67 and 0.83.
//!
//! **AVX512-VNNI.** The bare `vpdpbusd` chain (the peak), then the GEMM's 8 x 48 tile written out
//! in `asm!` and run over whole products, once dropping its results and once storing them as a
//! GEMM must. The stores cost the same share at any tile shape (one zmm of i32 per `K / 4`
//! `vpdpbusd`), so the stored tile is the ceiling of an i32-output GEMM at that depth: on a Zen 4
//! core about 0.97 of the chain at K = 384 and 0.99 at K = 1536.
//!
//! **AMX-INT8.** The bare `tdpbssd` chain (four 16 x 16 sums, operand tiles never reloaded: the
//! tile unit's peak), next to the library's GEMM at the shapes.
//!
//! `cargo run --release --example int8_ceiling -p lithe-kernels`

#[cfg(target_arch = "x86_64")]
#[path = "common/cpu_time.rs"]
mod cpu_time;
#[cfg(target_arch = "x86_64")]
#[path = "common/int8_bench.rs"]
mod int8_bench;

#[cfg(target_arch = "x86_64")]
use int8_bench::{rates, values};
#[cfg(target_arch = "x86_64")]
use lithe_kernels::I8Isa;
#[cfg(target_arch = "x86_64")]
use lithe_kernels::gemm_i8::{I8GemmOptions, PackedI8B, gemm_i8};

#[cfg(target_arch = "x86_64")]
mod chains {
    //! Each chain is one `asm!` loop (as in the peers' `peak.c`), so the compiler can neither fold
    //! the repeated products nor spill: 6 independent accumulators (ymm0-5), their temporaries
    //! (ymm6-11), operands in ymm12-15, 4 rounds per loop trip.

    /// Multiply-adds per loop trip of every chain: 4 rounds x 6 accumulators x 32.
    pub const MACS_PER_TRIP: usize = 4 * 6 * 32;

    /// One chain as a function running `trips` loop trips of `$round` (a string literal)
    /// four times, after `$setup`.
    macro_rules! chain {
        ($(#[$doc:meta])* $name:ident, $setup:expr, $round:expr) => {
            $(#[$doc])*
            ///
            /// # Safety
            /// The CPU has AVX2.
            #[target_feature(enable = "avx2")]
            pub unsafe fn $name(trips: usize) {
                // SAFETY: register-only AVX2 code (the caller checked AVX2).
                unsafe {
                    std::arch::asm!(
                        "vpcmpeqb ymm12, ymm12, ymm12",
                        "vpabsb ymm14, ymm12",
                        "vpabsw ymm13, ymm12",
                        "vmovdqa ymm15, ymm14",
                        $setup,
                        "2:",
                        $round, $round, $round, $round,
                        "dec {n}",
                        "jnz 2b",
                        n = inout(reg) trips => _,
                        out("ymm0") _, out("ymm1") _, out("ymm2") _, out("ymm3") _,
                        out("ymm4") _, out("ymm5") _, out("ymm6") _, out("ymm7") _,
                        out("ymm8") _, out("ymm9") _, out("ymm10") _, out("ymm11") _,
                        out("ymm12") _, out("ymm13") _, out("ymm14") _, out("ymm15") _,
                        options(nostack, nomem),
                    );
                }
            }
        };
    }

    chain!(
        /// `vpmaddubsw` + `vpmaddwd(1)` + `vpaddd` per 32 multiply-adds.
        maddubs,
        "",
        concat!(
            "vpmaddubsw ymm6, ymm14, ymm15\n vpmaddubsw ymm7, ymm14, ymm15\n",
            "vpmaddubsw ymm8, ymm14, ymm15\n vpmaddubsw ymm9, ymm14, ymm15\n",
            "vpmaddubsw ymm10, ymm14, ymm15\n vpmaddubsw ymm11, ymm14, ymm15\n",
            "vpmaddwd ymm6, ymm6, ymm13\n vpmaddwd ymm7, ymm7, ymm13\n",
            "vpmaddwd ymm8, ymm8, ymm13\n vpmaddwd ymm9, ymm9, ymm13\n",
            "vpmaddwd ymm10, ymm10, ymm13\n vpmaddwd ymm11, ymm11, ymm13\n",
            "vpaddd ymm0, ymm0, ymm6\n vpaddd ymm1, ymm1, ymm7\n",
            "vpaddd ymm2, ymm2, ymm8\n vpaddd ymm3, ymm3, ymm9\n",
            "vpaddd ymm4, ymm4, ymm10\n vpaddd ymm5, ymm5, ymm11\n",
        )
    );

    chain!(
        /// `vpsignb` (sign of A onto B) + the `maddubs` chain on `|A|`.
        sign_trick,
        "",
        concat!(
            "vpsignb ymm6, ymm15, ymm12\n vpsignb ymm7, ymm15, ymm12\n",
            "vpsignb ymm8, ymm15, ymm12\n vpsignb ymm9, ymm15, ymm12\n",
            "vpsignb ymm10, ymm15, ymm12\n vpsignb ymm11, ymm15, ymm12\n",
            "vpmaddubsw ymm6, ymm14, ymm6\n vpmaddubsw ymm7, ymm14, ymm7\n",
            "vpmaddubsw ymm8, ymm14, ymm8\n vpmaddubsw ymm9, ymm14, ymm9\n",
            "vpmaddubsw ymm10, ymm14, ymm10\n vpmaddubsw ymm11, ymm14, ymm11\n",
            "vpmaddwd ymm6, ymm6, ymm13\n vpmaddwd ymm7, ymm7, ymm13\n",
            "vpmaddwd ymm8, ymm8, ymm13\n vpmaddwd ymm9, ymm9, ymm13\n",
            "vpmaddwd ymm10, ymm10, ymm13\n vpmaddwd ymm11, ymm11, ymm13\n",
            "vpaddd ymm0, ymm0, ymm6\n vpaddd ymm1, ymm1, ymm7\n",
            "vpaddd ymm2, ymm2, ymm8\n vpaddd ymm3, ymm3, ymm9\n",
            "vpaddd ymm4, ymm4, ymm10\n vpaddd ymm5, ymm5, ymm11\n",
        )
    );

    chain!(
        /// Two `vpmaddwd` + two `vpaddd` on i16 operands per 32 multiply-adds.
        sign_extend,
        "",
        concat!(
            "vpmaddwd ymm6, ymm13, ymm15\n vpmaddwd ymm7, ymm13, ymm15\n",
            "vpmaddwd ymm8, ymm13, ymm15\n vpmaddwd ymm9, ymm13, ymm15\n",
            "vpmaddwd ymm10, ymm13, ymm15\n vpmaddwd ymm11, ymm13, ymm15\n",
            "vpaddd ymm0, ymm0, ymm6\n vpaddd ymm1, ymm1, ymm7\n",
            "vpaddd ymm2, ymm2, ymm8\n vpaddd ymm3, ymm3, ymm9\n",
            "vpaddd ymm4, ymm4, ymm10\n vpaddd ymm5, ymm5, ymm11\n",
            "vpmaddwd ymm6, ymm13, ymm14\n vpmaddwd ymm7, ymm13, ymm14\n",
            "vpmaddwd ymm8, ymm13, ymm14\n vpmaddwd ymm9, ymm13, ymm14\n",
            "vpmaddwd ymm10, ymm13, ymm14\n vpmaddwd ymm11, ymm13, ymm14\n",
            "vpaddd ymm0, ymm0, ymm6\n vpaddd ymm1, ymm1, ymm7\n",
            "vpaddd ymm2, ymm2, ymm8\n vpaddd ymm3, ymm3, ymm9\n",
            "vpaddd ymm4, ymm4, ymm10\n vpaddd ymm5, ymm5, ymm11\n",
        )
    );
}

#[cfg(target_arch = "x86_64")]
mod vnni_tile {
    //! The AVX512-VNNI GEMM tile (8 x 48: 24 zmm sums, 3 zmm of B and one broadcast dword of A
    //! per depth group of 4, as in the library's kernel) written out in `asm!`, timed over a
    //! whole `M x K x N` product with and without storing its i32 results, next to the bare
    //! `vpdpbusd` chain. It shows what the stores of a shallow tile cost on this core: each tile
    //! writes its 24 zmm of C once, after `K / 4 * 24` `vpdpbusd`.

    /// Rows of the tile.
    pub const MR: usize = 8;
    /// Columns of the tile.
    pub const NR: usize = 48;
    /// Multiply-adds per trip of [`chain`].
    pub const CHAIN_MACS_PER_TRIP: usize = 24 * 64;

    /// `trips` x 24 independent `vpdpbusd` on registers only (the arithmetic peak).
    ///
    /// # Safety
    /// The CPU has AVX512-VNNI.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub unsafe fn chain(trips: usize) {
        // SAFETY: register-only AVX-512 code (the caller checked AVX512-VNNI).
        unsafe {
            std::arch::asm!(
                "vpternlogd zmm24, zmm24, zmm24, 0xff",
                "vpabsb zmm25, zmm24",
                "vpabsb zmm26, zmm24",
                "2:",
                "vpdpbusd zmm0, zmm26, zmm24",
                "vpdpbusd zmm1, zmm26, zmm25",
                "vpdpbusd zmm2, zmm26, zmm24",
                "vpdpbusd zmm3, zmm26, zmm25",
                "vpdpbusd zmm4, zmm26, zmm24",
                "vpdpbusd zmm5, zmm26, zmm25",
                "vpdpbusd zmm6, zmm26, zmm24",
                "vpdpbusd zmm7, zmm26, zmm25",
                "vpdpbusd zmm8, zmm26, zmm24",
                "vpdpbusd zmm9, zmm26, zmm25",
                "vpdpbusd zmm10, zmm26, zmm24",
                "vpdpbusd zmm11, zmm26, zmm25",
                "vpdpbusd zmm12, zmm26, zmm24",
                "vpdpbusd zmm13, zmm26, zmm25",
                "vpdpbusd zmm14, zmm26, zmm24",
                "vpdpbusd zmm15, zmm26, zmm25",
                "vpdpbusd zmm16, zmm26, zmm24",
                "vpdpbusd zmm17, zmm26, zmm25",
                "vpdpbusd zmm18, zmm26, zmm24",
                "vpdpbusd zmm19, zmm26, zmm25",
                "vpdpbusd zmm20, zmm26, zmm24",
                "vpdpbusd zmm21, zmm26, zmm25",
                "vpdpbusd zmm22, zmm26, zmm24",
                "vpdpbusd zmm23, zmm26, zmm25",
                "dec {n}",
                "jnz 2b",
                n = inout(reg) trips => _,
                out("zmm0") _, out("zmm1") _, out("zmm2") _, out("zmm3") _, out("zmm4") _,
                out("zmm5") _, out("zmm6") _, out("zmm7") _, out("zmm8") _, out("zmm9") _,
                out("zmm10") _, out("zmm11") _, out("zmm12") _, out("zmm13") _, out("zmm14") _,
                out("zmm15") _, out("zmm16") _, out("zmm17") _, out("zmm18") _, out("zmm19") _,
                out("zmm20") _, out("zmm21") _, out("zmm22") _, out("zmm23") _, out("zmm24") _,
                out("zmm25") _, out("zmm26") _,
                options(nostack, nomem),
            );
        }
    }

    /// One tile as a function: sums start from the 48 column values at `init`, take `groups`
    /// depth groups of the packed A (`MR x 4` bytes each) and B (`NR x 4` bytes each) panels,
    /// then run `$stores` (the 8 rows of 48 i32 to `c`, `ldc` bytes apart, or nothing). The
    /// library's tile broadcasts the same dwords from A's rows in place and starts from row
    /// sums instead: per group the same 3 loads of B, 8 broadcasts and 24 `vpdpbusd`.
    macro_rules! tile {
        ($(#[$doc:meta])* $name:ident, $stores:expr) => {
            $(#[$doc])*
            ///
            /// # Safety
            /// The CPU has AVX512-VNNI; the panels hold `groups` groups, `init` 48 i32 and `c`
            /// 8 rows of 48 i32 at `ldc` bytes.
            #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
            pub unsafe fn $name(
                a: *const u8,
                b: *const i8,
                groups: usize,
                init: *const i32,
                c: *mut i32,
                ldc: usize,
            ) {
                // SAFETY: reads and writes stay inside the panels, `init` and the C tile
                // (caller); prefetches never fault.
                unsafe {
                    std::arch::asm!(
                        "vmovdqu64 zmm28, [{init}]",
                        "vmovdqu64 zmm29, [{init} + 64]",
                        "vmovdqu64 zmm30, [{init} + 128]",
                        "vmovdqa64 zmm0, zmm28",
                        "vmovdqa64 zmm1, zmm29",
                        "vmovdqa64 zmm2, zmm30",
                        "vmovdqa64 zmm3, zmm28",
                        "vmovdqa64 zmm4, zmm29",
                        "vmovdqa64 zmm5, zmm30",
                        "vmovdqa64 zmm6, zmm28",
                        "vmovdqa64 zmm7, zmm29",
                        "vmovdqa64 zmm8, zmm30",
                        "vmovdqa64 zmm9, zmm28",
                        "vmovdqa64 zmm10, zmm29",
                        "vmovdqa64 zmm11, zmm30",
                        "vmovdqa64 zmm12, zmm28",
                        "vmovdqa64 zmm13, zmm29",
                        "vmovdqa64 zmm14, zmm30",
                        "vmovdqa64 zmm15, zmm28",
                        "vmovdqa64 zmm16, zmm29",
                        "vmovdqa64 zmm17, zmm30",
                        "vmovdqa64 zmm18, zmm28",
                        "vmovdqa64 zmm19, zmm29",
                        "vmovdqa64 zmm20, zmm30",
                        "vmovdqa64 zmm21, zmm28",
                        "vmovdqa64 zmm22, zmm29",
                        "vmovdqa64 zmm23, zmm30",
                        "2:",
                        "prefetcht0 [{b} + 1536]",
                        "prefetcht0 [{b} + 1600]",
                        "prefetcht0 [{b} + 1664]",
                        "vmovdqu64 zmm24, [{b}]",
                        "vmovdqu64 zmm25, [{b} + 64]",
                        "vmovdqu64 zmm27, [{b} + 128]",
                        "vpbroadcastd zmm26, dword ptr [{a} + 0]",
                        "vpdpbusd zmm0, zmm26, zmm24",
                        "vpdpbusd zmm1, zmm26, zmm25",
                        "vpdpbusd zmm2, zmm26, zmm27",
                        "vpbroadcastd zmm26, dword ptr [{a} + 4]",
                        "vpdpbusd zmm3, zmm26, zmm24",
                        "vpdpbusd zmm4, zmm26, zmm25",
                        "vpdpbusd zmm5, zmm26, zmm27",
                        "vpbroadcastd zmm26, dword ptr [{a} + 8]",
                        "vpdpbusd zmm6, zmm26, zmm24",
                        "vpdpbusd zmm7, zmm26, zmm25",
                        "vpdpbusd zmm8, zmm26, zmm27",
                        "vpbroadcastd zmm26, dword ptr [{a} + 12]",
                        "vpdpbusd zmm9, zmm26, zmm24",
                        "vpdpbusd zmm10, zmm26, zmm25",
                        "vpdpbusd zmm11, zmm26, zmm27",
                        "vpbroadcastd zmm26, dword ptr [{a} + 16]",
                        "vpdpbusd zmm12, zmm26, zmm24",
                        "vpdpbusd zmm13, zmm26, zmm25",
                        "vpdpbusd zmm14, zmm26, zmm27",
                        "vpbroadcastd zmm26, dword ptr [{a} + 20]",
                        "vpdpbusd zmm15, zmm26, zmm24",
                        "vpdpbusd zmm16, zmm26, zmm25",
                        "vpdpbusd zmm17, zmm26, zmm27",
                        "vpbroadcastd zmm26, dword ptr [{a} + 24]",
                        "vpdpbusd zmm18, zmm26, zmm24",
                        "vpdpbusd zmm19, zmm26, zmm25",
                        "vpdpbusd zmm20, zmm26, zmm27",
                        "vpbroadcastd zmm26, dword ptr [{a} + 28]",
                        "vpdpbusd zmm21, zmm26, zmm24",
                        "vpdpbusd zmm22, zmm26, zmm25",
                        "vpdpbusd zmm23, zmm26, zmm27",
                        "add {a}, 32",
                        "add {b}, 192",
                        "dec {n}",
                        "jnz 2b",
                        $stores,
                        a = inout(reg) a => _,
                        b = inout(reg) b => _,
                        n = inout(reg) groups => _,
                        c = inout(reg) c => _,
                        init = in(reg) init,
                        ldc = in(reg) ldc,
                        out("zmm0") _, out("zmm1") _, out("zmm2") _, out("zmm3") _,
                        out("zmm4") _, out("zmm5") _, out("zmm6") _, out("zmm7") _,
                        out("zmm8") _, out("zmm9") _, out("zmm10") _, out("zmm11") _,
                        out("zmm12") _, out("zmm13") _, out("zmm14") _, out("zmm15") _,
                        out("zmm16") _, out("zmm17") _, out("zmm18") _, out("zmm19") _,
                        out("zmm20") _, out("zmm21") _, out("zmm22") _, out("zmm23") _,
                        out("zmm24") _, out("zmm25") _, out("zmm26") _, out("zmm27") _,
                        out("zmm28") _, out("zmm29") _, out("zmm30") _,
                        options(nostack),
                    );
                }
            }
        };
    }

    tile!(
        /// The tile, writing its results (what a GEMM must do).
        tile_stored,
        concat!(
            "vmovdqu64 [{c}], zmm0\n",
            "vmovdqu64 [{c} + 64], zmm1\n",
            "vmovdqu64 [{c} + 128], zmm2\n",
            "add {c}, {ldc}\n",
            "vmovdqu64 [{c}], zmm3\n",
            "vmovdqu64 [{c} + 64], zmm4\n",
            "vmovdqu64 [{c} + 128], zmm5\n",
            "add {c}, {ldc}\n",
            "vmovdqu64 [{c}], zmm6\n",
            "vmovdqu64 [{c} + 64], zmm7\n",
            "vmovdqu64 [{c} + 128], zmm8\n",
            "add {c}, {ldc}\n",
            "vmovdqu64 [{c}], zmm9\n",
            "vmovdqu64 [{c} + 64], zmm10\n",
            "vmovdqu64 [{c} + 128], zmm11\n",
            "add {c}, {ldc}\n",
            "vmovdqu64 [{c}], zmm12\n",
            "vmovdqu64 [{c} + 64], zmm13\n",
            "vmovdqu64 [{c} + 128], zmm14\n",
            "add {c}, {ldc}\n",
            "vmovdqu64 [{c}], zmm15\n",
            "vmovdqu64 [{c} + 64], zmm16\n",
            "vmovdqu64 [{c} + 128], zmm17\n",
            "add {c}, {ldc}\n",
            "vmovdqu64 [{c}], zmm18\n",
            "vmovdqu64 [{c} + 64], zmm19\n",
            "vmovdqu64 [{c} + 128], zmm20\n",
            "add {c}, {ldc}\n",
            "vmovdqu64 [{c}], zmm21\n",
            "vmovdqu64 [{c} + 64], zmm22\n",
            "vmovdqu64 [{c} + 128], zmm23\n",
            "add {c}, {ldc}\n",
        )
    );

    tile!(
        /// The tile without its 24 stores (the results are dropped).
        tile_unstored,
        "# results dropped; C would be at {c}, rows {ldc} bytes apart"
    );
}

#[cfg(target_arch = "x86_64")]
fn main() {
    if !is_x86_feature_detected!("avx2") {
        eprintln!("this CPU has no AVX2");
        return;
    }
    // SAFETY (of each call below): AVX2 was detected above.
    /// A chain's name and its loop.
    type Chain = (&'static str, fn(usize));
    let chains: [Chain; 3] = [
        ("maddubs (vpmaddubsw+vpmaddwd+vpaddd)", |n| unsafe {
            chains::maddubs(n)
        }),
        ("sign-trick (vpsignb+maddubs chain)", |n| unsafe {
            chains::sign_trick(n)
        }),
        ("sign-extend (vpmaddwd+vpaddd)", |n| unsafe {
            chains::sign_extend(n)
        }),
    ];
    let trips = 1_000_000;
    let mut medians = Vec::new();
    for (name, chain) in chains {
        let ops = 2.0 * (trips * chains::MACS_PER_TRIP) as f64;
        let gops = rates(ops, 7, || chain(std::hint::black_box(trips)))[3];
        medians.push(gops);
        println!("{name:40} {gops:7.1} GOP/s (median of 7)");
    }
    println!(
        "exact chains / maddubs chain: sign-trick {:.2}, sign-extend {:.2}",
        medians[1] / medians[0],
        medians[2] / medians[0]
    );
    let gemm = library_gemm(I8Isa::Avx2, 1024, 1024, 1024);
    println!(
        "lithe gemm_i8, avx2, 1024x1024x1024      {gemm:7.1} GOP/s ({:.2} of sign-extend)",
        gemm / medians[2]
    );
    if is_x86_feature_detected!("avx512vnni") && is_x86_feature_detected!("avx512bw") {
        vnni_section();
    }
    if I8Isa::Amx.is_supported() {
        amx_section();
    }
}

#[cfg(target_arch = "x86_64")]
mod amx_chain {
    //! The AMX peak: `tdpbssd` into four C tiles from two A and two B tiles that stay loaded.

    /// Multiply-adds per trip: four 16 x 16 x 64 products.
    pub const MACS_PER_TRIP: usize = 4 * 16 * 16 * 64;

    /// Palette 1, eight tiles of 16 rows x 64 bytes.
    #[repr(C, align(64))]
    struct TileConfig([u8; 64]);

    /// `trips` x 4 `tdpbssd` on zeroed tiles (the unit's throughput does not depend on values).
    ///
    /// # Safety
    /// AMX is usable (`I8Isa::Amx.is_supported()`, which also asks the OS for the tile state).
    pub unsafe fn chain(trips: usize) {
        let mut cfg = [0u8; 64];
        cfg[0] = 1;
        for t in 0..8 {
            cfg[16 + 2 * t] = 64;
            cfg[48 + t] = 16;
        }
        let cfg = TileConfig(cfg);
        // SAFETY: a valid palette-1 configuration, released before returning; tile registers
        // only.
        unsafe {
            std::arch::asm!(
                "ldtilecfg [{cfg}]",
                "tilezero tmm0", "tilezero tmm1", "tilezero tmm2", "tilezero tmm3",
                "tilezero tmm4", "tilezero tmm5", "tilezero tmm6", "tilezero tmm7",
                "2:",
                "tdpbssd tmm0, tmm4, tmm6",
                "tdpbssd tmm1, tmm4, tmm7",
                "tdpbssd tmm2, tmm5, tmm6",
                "tdpbssd tmm3, tmm5, tmm7",
                "dec {n}",
                "jnz 2b",
                "tilerelease",
                cfg = in(reg) cfg.0.as_ptr(),
                n = inout(reg) trips => _,
                options(nostack),
            );
        }
    }
}

/// The library's AMX GEMM at the shapes against the `tdpbssd` chain.
#[cfg(target_arch = "x86_64")]
fn amx_section() {
    let trips = 200_000;
    let ops = 2.0 * (trips * amx_chain::MACS_PER_TRIP) as f64;
    // SAFETY: the caller checked that AMX is usable.
    let peak = rates(ops, 7, || unsafe {
        amx_chain::chain(std::hint::black_box(trips))
    })[3];
    println!("tdpbssd chain (amx)                      {peak:7.1} GOP/s");
    for (m, k, n) in [(128, 384, 1536), (128, 1536, 384), (1024, 1024, 1024)] {
        let gemm = library_gemm(I8Isa::Amx, m, k, n);
        println!(
            "{:17} lithe gemm_i8, amx {gemm:7.1} GOP/s ({:.3} of the chain)",
            format!("{m}x{k}x{n}"),
            gemm / peak
        );
    }
}

/// Single-thread GOP/s of the library's int8 GEMM on `isa` at `m x k x n`.
#[cfg(target_arch = "x86_64")]
fn library_gemm(isa: I8Isa, m: usize, k: usize, n: usize) -> f64 {
    let (a, b) = (values(m * k, 1), values(n * k, 2));
    let packed = PackedI8B::pack(&b, n, k, isa).expect("pack");
    let mut c = vec![0i32; m * n];
    let opts = I8GemmOptions {
        threads: Some(1),
        kernels: None,
    };
    rates(2.0 * (m * n * k) as f64, 7, || {
        gemm_i8(&a, k, m, &packed, &mut c, n, &opts).expect("gemm");
    })[3]
}

/// The AVX512-VNNI tile against the `vpdpbusd` peak and the library's GEMM, at the shallow
/// BERT shape where the stores weigh most (K = 384) and a deeper one.
#[cfg(target_arch = "x86_64")]
fn vnni_section() {
    use vnni_tile::{MR, NR};
    let trips = 1_000_000;
    let chain_ops = 2.0 * (trips * vnni_tile::CHAIN_MACS_PER_TRIP) as f64;
    // SAFETY: AVX512-VNNI was detected by the caller.
    let peak = rates(chain_ops, 7, || unsafe {
        vnni_tile::chain(std::hint::black_box(trips))
    })[3];
    println!("vpdpbusd zmm chain (avx512-vnni)         {peak:7.1} GOP/s");
    for (m, k, n) in [(128, 384, 1536), (128, 1536, 384)] {
        let groups = k / 4;
        let a = vec![1u8; m * k];
        let b = vec![1i8; n * k];
        let init = vec![0i32; n];
        let mut c = vec![0i32; m * n];
        let ops = 2.0 * (m * n * k) as f64;
        type Tile = unsafe fn(*const u8, *const i8, usize, *const i32, *mut i32, usize);
        let tiles: [(&str, Tile); 2] = [
            ("results dropped", vnni_tile::tile_unstored),
            ("results stored", vnni_tile::tile_stored),
        ];
        let mut stored = 0.0;
        for (what, tile) in tiles {
            let gops = rates(ops, 7, || {
                for ip in 0..m / MR {
                    for q in 0..n / NR {
                        // SAFETY: AVX512-VNNI was detected; panel (ip, q) of A and B holds
                        // `groups` groups, and the C tile lies inside `c` (m, n multiples of the
                        // tile).
                        unsafe {
                            tile(
                                a.as_ptr().add(ip * MR * k),
                                b.as_ptr().add(q * NR * k),
                                groups,
                                init.as_ptr().add(q * NR),
                                c.as_mut_ptr().add(ip * MR * n + q * NR),
                                4 * n,
                            )
                        };
                    }
                }
            })[3];
            stored = gops;
            println!(
                "{m}x{k}x{n} 8x48 tile, {what:15} {gops:7.1} GOP/s ({:.3} of the chain)",
                gops / peak
            );
        }
        let gemm = library_gemm(I8Isa::Avx512Vnni, m, k, n);
        println!(
            "{m}x{k}x{n} lithe gemm_i8, avx512-vnni {gemm:7.1} GOP/s ({:.3} of the chain, {:.3} of \
             the stored tile)",
            gemm / peak,
            gemm / stored
        );
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn main() {
    eprintln!("x86-64 only");
}
