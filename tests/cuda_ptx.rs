//! Compile-only check of every CUDA kernel with NVRTC, no GPU needed.
//!
//! Compiles each `cuda/*.cu` for compute_80 and compute_90 and, when `LITHE_PTX_OUT` names a
//! folder, writes `<file>.<arch>.ptx` there (scripts/cuda-ptx-check then runs ptxas on them).
//! Skips with a note when NVRTC cannot be loaded, but FAILS when `REQUIRE_NVRTC=1`.
#![cfg(feature = "cuda")]

use lithe::cuda::ptx::{KernelSource, compile_ptx, nvrtc_available};

#[test]
fn every_kernel_compiles_to_ptx() {
    if !nvrtc_available() {
        if std::env::var("REQUIRE_NVRTC").as_deref() == Ok("1") {
            panic!("REQUIRE_NVRTC=1 but NVRTC (libnvrtc.so) cannot be loaded; set LD_LIBRARY_PATH");
        }
        eprintln!(
            "SKIP every_kernel_compiles_to_ptx: NVRTC not found (set REQUIRE_NVRTC=1 to fail)"
        );
        return;
    }
    let out = std::env::var_os("LITHE_PTX_OUT").map(std::path::PathBuf::from);
    if let Some(dir) = &out {
        std::fs::create_dir_all(dir).expect("create LITHE_PTX_OUT");
    }
    for arch in ["compute_80", "compute_90"] {
        for src in KernelSource::ALL {
            let arch = src.arch_on(arch);
            let t = std::time::Instant::now();
            let ptx = compile_ptx(src, arch).unwrap_or_else(|e| panic!("{e}"));
            assert!(
                ptx.contains(".entry"),
                "{} for {arch}: no kernel entry in PTX",
                src.file_name()
            );
            if src == KernelSource::GemmSm90 {
                assert!(
                    ptx.contains("wgmma.mma_async"),
                    "gemm_f16_sm90.cu: no wgmma"
                );
            }
            if matches!(
                src,
                KernelSource::Gemm | KernelSource::Attention | KernelSource::TransformAttention
            ) {
                assert!(
                    ptx.contains("mma.sync.aligned.m16n8k16"),
                    "{}: no mma.sync",
                    src.file_name()
                );
                assert!(ptx.contains("ldmatrix"), "{}: no ldmatrix", src.file_name());
                assert!(ptx.contains("cp.async"), "{}: no cp.async", src.file_name());
            }
            eprintln!(
                "compiled {} for {arch} in {:?} ({} bytes of PTX)",
                src.file_name(),
                t.elapsed(),
                ptx.len()
            );
            if let Some(dir) = &out {
                let stem = src.file_name().trim_end_matches(".cu");
                std::fs::write(dir.join(format!("{stem}.{arch}.ptx")), &ptx).expect("write PTX");
            }
        }
    }
}
