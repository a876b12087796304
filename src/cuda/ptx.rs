//! Kernel sources and the NVRTC compile cache.
//!
//! Every `cuda/*.cu` file is embedded with `include_str!` and compiled, with `cuda/common.cuh`
//! prepended, once per process and per virtual architecture (`compute_80`, `compute_90`, ...).
//! The kernels include no CUDA header (fp16 is handled through PTX `cvt`), so any NVRTC works;
//! extra include folders can still be given in `LITHE_CUDA_INCLUDE` (`:`-separated).

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use cudarc::nvrtc::{CompileError, CompileOptions};

use super::error::{CudaError, Result};

const COMMON: &str = include_str!("../../cuda/common.cuh");

/// One kernel source file of `cuda/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KernelSource {
    /// `cuda/gemm_f16.cu`: tensor-core GEMM with bias / GELU epilogues.
    Gemm,
    /// `cuda/attention.cu`: fused attention forward.
    Attention,
    /// `cuda/elementwise.cu`: LayerNorm, softmax, GELU, add, embedding gather.
    Elementwise,
    /// `cuda/gemm_f16_sm90.cu`: Hopper wgmma GEMM (compiled for `compute_90a` only).
    GemmSm90,
    /// `cuda/transform_attention.cu`: MiniViT's fused head-mixing attention forward.
    TransformAttention,
}

impl KernelSource {
    /// All kernel sources.
    pub const ALL: [KernelSource; 5] = [
        Self::Gemm,
        Self::Attention,
        Self::Elementwise,
        Self::GemmSm90,
        Self::TransformAttention,
    ];

    /// The architecture this source is compiled for on a device whose base architecture is
    /// `dev_arch`: the wgmma GEMM needs the architecture-specific `compute_90a`.
    pub fn arch_on(self, dev_arch: &'static str) -> &'static str {
        match self {
            Self::GemmSm90 => "compute_90a",
            _ => dev_arch,
        }
    }

    /// File name under `cuda/`.
    pub fn file_name(self) -> &'static str {
        match self {
            Self::Gemm => "gemm_f16.cu",
            Self::Attention => "attention.cu",
            Self::Elementwise => "elementwise.cu",
            Self::GemmSm90 => "gemm_f16_sm90.cu",
            Self::TransformAttention => "transform_attention.cu",
        }
    }

    /// The full source handed to NVRTC (the common prelude followed by the file).
    pub fn source(self) -> String {
        let body = match self {
            Self::Gemm => include_str!("../../cuda/gemm_f16.cu"),
            Self::Attention => include_str!("../../cuda/attention.cu"),
            Self::Elementwise => include_str!("../../cuda/elementwise.cu"),
            Self::GemmSm90 => include_str!("../../cuda/gemm_f16_sm90.cu"),
            Self::TransformAttention => include_str!("../../cuda/transform_attention.cu"),
        };
        format!("{COMMON}\n#line 1 \"{}\"\n{body}", self.file_name())
    }
}

/// Whether the NVRTC shared library can be loaded.
pub fn nvrtc_available() -> bool {
    // SAFETY: only tries to dlopen the library names cudarc knows; no symbol is called.
    unsafe { cudarc::nvrtc::sys::is_culib_present() }
}

/// The NVRTC virtual architecture name for a compute capability (>= 8.0).
pub fn arch_for(major: i32, minor: i32) -> Result<&'static str> {
    Ok(match (major, minor) {
        (8, 0) => "compute_80",
        (8, 6) => "compute_86",
        (8, 7) => "compute_87",
        (8, 9) => "compute_89",
        (9, 0) => "compute_90",
        (10, 0) => "compute_100",
        (12, 0) => "compute_120",
        (8, _) => "compute_80",
        (m, _) if m >= 9 => "compute_90",
        _ => return Err(CudaError::UnsupportedDevice { major, minor }),
    })
}

fn cache() -> &'static Mutex<HashMap<(KernelSource, &'static str), String>> {
    static CACHE: OnceLock<Mutex<HashMap<(KernelSource, &'static str), String>>> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Compiles `src` to PTX for `arch` (e.g. `"compute_90"`), or returns the cached PTX of an
/// earlier call in this process.
pub fn compile_ptx(src: KernelSource, arch: &'static str) -> Result<String> {
    if let Some(p) = cache()
        .lock()
        .expect("ptx cache poisoned")
        .get(&(src, arch))
    {
        return Ok(p.clone());
    }
    if !nvrtc_available() {
        return Err(CudaError::NvrtcNotFound);
    }
    let include_paths = std::env::var("LITHE_CUDA_INCLUDE")
        .map(|v| {
            v.split(':')
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    let opts = CompileOptions {
        arch: Some(arch),
        include_paths,
        options: vec!["-std=c++17".into(), "--use_fast_math".into()],
        name: Some(src.file_name().into()),
        ..Default::default()
    };
    let ptx = cudarc::nvrtc::compile_ptx_with_opts(src.source(), opts).map_err(|e| match e {
        CompileError::CompileError { log, .. } => CudaError::Compile {
            file: src.file_name(),
            arch: arch.into(),
            log: log.to_string_lossy().into_owned(),
        },
        other => CudaError::Compile {
            file: src.file_name(),
            arch: arch.into(),
            log: other.to_string(),
        },
    })?;
    let text = ptx.to_src();
    cache()
        .lock()
        .expect("ptx cache poisoned")
        .insert((src, arch), text.clone());
    Ok(text)
}
