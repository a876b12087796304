//! Errors of the CUDA backend.

use cudarc::driver::DriverError;

/// Everything that can go wrong in `lithe::cuda`: no driver or device, NVRTC missing or a
/// kernel failing to compile, a driver call failing, or a caller passing bad shapes.
#[derive(Debug, thiserror::Error)]
pub enum CudaError {
    /// `libcuda` (the NVIDIA driver library) could not be loaded: no NVIDIA driver here.
    #[error("CUDA driver library (libcuda.so) not found: no NVIDIA driver on this machine")]
    DriverNotFound,
    /// The driver loaded but reports no device with this ordinal.
    #[error("no CUDA device with ordinal {ordinal} ({count} present)")]
    NoDevice {
        /// Requested ordinal.
        ordinal: usize,
        /// Number of devices the driver reports.
        count: usize,
    },
    /// The NVRTC library could not be loaded (set `LD_LIBRARY_PATH` to a folder with
    /// `libnvrtc.so*`, e.g. from the `nvidia-cuda-nvrtc-cu12` wheel).
    #[error("NVRTC library (libnvrtc.so) not found; add its folder to LD_LIBRARY_PATH")]
    NvrtcNotFound,
    /// NVRTC rejected a kernel source.
    #[error("NVRTC failed to compile {file} for {arch}: {log}")]
    Compile {
        /// Kernel file name.
        file: &'static str,
        /// Virtual architecture, e.g. `compute_90`.
        arch: String,
        /// Compiler log.
        log: String,
    },
    /// The device is older than compute capability 8.0 (the kernels need cp.async/ldmatrix).
    #[error("compute capability {major}.{minor} is not supported (lithe needs >= 8.0)")]
    UnsupportedDevice {
        /// Major version.
        major: i32,
        /// Minor version.
        minor: i32,
    },
    /// A CUDA driver call failed.
    #[error("CUDA driver error: {0}")]
    Driver(#[from] DriverError),
    /// Shapes, lengths or parameters that the kernel cannot accept.
    #[error("invalid argument: {0}")]
    Invalid(String),
}

/// Result alias of the CUDA backend.
pub type Result<T> = std::result::Result<T, CudaError>;

/// Returns `Err(CudaError::Invalid)` with a formatted message when `cond` is false.
macro_rules! ensure {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            return Err($crate::cuda::CudaError::Invalid(format!($($arg)+)));
        }
    };
}
pub(crate) use ensure;
