//! The single-core ceiling of each AVX2 int8 multiply-add chain, measured with 12 independent
//! accumulators (no loads, no packing: the arithmetic alone), next to what the AVX2 GEMM path
//! reaches. It answers "how far is the kernel from what this core can do with *exact* s8 x s8
//! arithmetic", which differs from the usual `vpmaddubsw` ceiling:
//!
//! - `maddubs`: `vpmaddubsw` + `vpmaddwd(1)` + `vpaddd`, 32 u8 x s8 multiply-adds per 3
//!   instructions. The customary AVX2 peak, but not exact for s8 x s8 (the u8 operand would be
//!   `a + 128`, and two products of 255 * 127 saturate the i16 pair sum);
//! - `sign-trick`: the same plus `vpsignb` moving the sign of A onto B (`|a| * sign(a) b`,
//!   exact for values in [-127, 127]), 4 instructions per 32;
//! - `sign-extend`: B stored as i16, `vpmaddwd` + `vpaddd`, 16 per 2 instructions (exact; what
//!   the AVX2 path runs).
//!
//! On a core with two vector multiply ports and three vector ALU ports (Intel since Ice Lake)
//! the exact chains are bound at about 3/4 of the `maddubs` chain: 4 instructions per 32
//! multiply-adds instead of 3 (an Intel Sapphire Rapids core measures 0.73 for the sign trick
//! and 0.74 for sign extension). A core with more multiply pipes than adds need (AMD Zen 4/5)
//! runs sign extension at the full `maddubs` rate.
//!
//! `cargo run --release --example int8_ceiling -p lithe-kernels`

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
fn main() {
    #[path = "common/cpu_time.rs"]
    mod cpu_time;
    use cpu_time::cpu_now;

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
        let mut gops: Vec<f64> = (0..7)
            .map(|_| {
                let t0 = cpu_now();
                chain(std::hint::black_box(trips));
                let dt = cpu_now() - t0;
                2.0 * (trips * chains::MACS_PER_TRIP) as f64 / dt / 1e9
            })
            .collect();
        gops.sort_by(f64::total_cmp);
        medians.push(gops[3]);
        println!("{name:40} {:7.1} GOP/s (median of 7)", gops[3]);
    }
    println!(
        "exact chains / maddubs chain: sign-trick {:.2}, sign-extend {:.2}",
        medians[1] / medians[0],
        medians[2] / medians[0]
    );
}

#[cfg(not(target_arch = "x86_64"))]
fn main() {
    eprintln!("x86-64 only");
}
