//! Launcher of `cuda/gemm_f16.cu`: C = epi(A * op(B) + bias) on tensor cores.

use cudarc::driver::sys;
use cudarc::driver::{DevicePtr, DeviceRepr, LaunchConfig, PushKernelArg};

use super::device::{CudaDevice, DeviceTensor};
use super::error::{Result, ensure};
use super::ptx::KernelSource;

/// Block tile of the fast path (rows of C, columns of C).
const BM: usize = 128;
const BN: usize = 128;
/// Dynamic shared memory of the fast path: (128*32 + 128*32) halfs * 2 bytes * 4 stages.
const GEMM_SMEM_BYTES: u32 = (128 * 32 + 128 * 32) * 2 * 4;

/// Layout of the B operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BLayout {
    /// B is row-major `[N, K]` (a Linear layer's weight): C = A * B^T.
    Nt,
    /// B is row-major `[K, N]`: C = A * B.
    Nn,
}

/// Fused epilogue applied in fp32 before the single rounding to fp16.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Epilogue {
    /// C = A op(B).
    None,
    /// C = A op(B) + bias.
    Bias,
    /// C = GELU(A op(B) + bias), GELU with erf.
    BiasGeluErf,
    /// C = GELU(A op(B) + bias), GELU with the tanh approximation.
    BiasGeluTanh,
}

impl Epilogue {
    fn code(self) -> i32 {
        match self {
            Self::None => 0,
            Self::Bias => 1,
            Self::BiasGeluErf => 2,
            Self::BiasGeluTanh => 3,
        }
    }
}

fn kernel_name(layout: BLayout, epi: Epilogue) -> &'static str {
    match (layout, epi) {
        (BLayout::Nt, Epilogue::None) => "gemm_f16_nt_none",
        (BLayout::Nt, Epilogue::Bias) => "gemm_f16_nt_bias",
        (BLayout::Nt, Epilogue::BiasGeluErf) => "gemm_f16_nt_bias_gelu_erf",
        (BLayout::Nt, Epilogue::BiasGeluTanh) => "gemm_f16_nt_bias_gelu_tanh",
        (BLayout::Nn, Epilogue::None) => "gemm_f16_nn_none",
        (BLayout::Nn, Epilogue::Bias) => "gemm_f16_nn_bias",
        (BLayout::Nn, Epilogue::BiasGeluErf) => "gemm_f16_nn_bias_gelu_erf",
        (BLayout::Nn, Epilogue::BiasGeluTanh) => "gemm_f16_nn_bias_gelu_tanh",
    }
}

/// Which GEMM kernel runs. [`GemmPath::Auto`] picks the fastest one the shape and device allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GemmPath {
    /// The TMA wgmma kernel where [`gemm_tma_supported`], else mma.sync, else simple.
    Auto,
    /// `gemm_f16_sm90ws_*`: warp-specialised wgmma kernel, block 128x256x64, one TMA producer
    /// warpgroup and two consumer warpgroups, 4-stage mbarrier ring (sm_90 only, K % 8 == 0,
    /// and N % 8 == 0 for NN; any M and N otherwise: the TMA unit zero-fills the edges).
    WgmmaTma,
    /// `gemm_f16_sm90_*`: wgmma m64n256k16, block 128x256x64, all threads load with cp.async
    /// (sm_90 only, NT only); the previous kernel, kept as a fallback.
    Wgmma,
    /// `gemm_f16_{nt,nn}_*`: mma.sync m16n8k16, block 128x128x32 (sm_80+).
    MmaSync,
    /// `gemm_f16_simple`: fp32 FMA fallback, any shape.
    Simple,
}

/// Dynamic shared memory of the wgmma path: 4 stages of (128 + 256) x 64 halfs + 1 KiB for
/// 1024-byte alignment.
const SM90_SMEM_BYTES: u32 = 4 * (128 + 256) * 64 * 2 + 1024;

/// Dynamic shared memory of the TMA path: 4 stages of (128 + 256) x 64 halfs, 1 KiB of
/// alignment slack and 128 bytes for the 8 mbarriers (`SM90WS_SMEM_BYTES`).
const SM90WS_SMEM_BYTES: u32 = 4 * (128 + 256) * 64 * 2 + 1024 + 128;

fn sm90ws_name(layout: BLayout, epi: Epilogue) -> &'static str {
    match (layout, epi) {
        (BLayout::Nt, Epilogue::None) => "gemm_f16_sm90ws_nt_none",
        (BLayout::Nt, Epilogue::Bias) => "gemm_f16_sm90ws_nt_bias",
        (BLayout::Nt, Epilogue::BiasGeluErf) => "gemm_f16_sm90ws_nt_bias_gelu_erf",
        (BLayout::Nt, Epilogue::BiasGeluTanh) => "gemm_f16_sm90ws_nt_bias_gelu_tanh",
        (BLayout::Nn, Epilogue::None) => "gemm_f16_sm90ws_nn_none",
        (BLayout::Nn, Epilogue::Bias) => "gemm_f16_sm90ws_nn_bias",
        (BLayout::Nn, Epilogue::BiasGeluErf) => "gemm_f16_sm90ws_nn_bias_gelu_erf",
        (BLayout::Nn, Epilogue::BiasGeluTanh) => "gemm_f16_sm90ws_nn_bias_gelu_tanh",
    }
}

/// Whether the TMA wgmma path can run this layout and shape on `dev`: compute capability 9.0,
/// K % 8 == 0, and for [`BLayout::Nn`] N % 8 == 0 (16-byte row pitches for the tensor maps).
pub fn gemm_tma_supported(dev: &CudaDevice, layout: BLayout, n: usize, k: usize) -> bool {
    dev.compute_capability() == (9, 0)
        && k.is_multiple_of(8)
        && (layout == BLayout::Nt || n.is_multiple_of(8))
}

/// A `CUtensorMap` passed by value as a `__grid_constant__` kernel parameter.
#[repr(transparent)]
struct TensorMap(sys::CUtensorMap);

// SAFETY: plain 128-byte, 64-byte aligned data that the kernel declares as
// `const __grid_constant__ TmaDesc` (`struct __align__(64) { u64 opaque[16]; }`).
unsafe impl DeviceRepr for TensorMap {}

/// Tensor map of a row-major fp16 matrix `[rows, cols]` at device address `ptr`, read in boxes
/// of 64 columns x `box_rows` rows with the 128-byte swizzle the wgmma descriptors expect;
/// out-of-range parts of a box read as zero.
fn tensor_map_rows(
    ptr: sys::CUdeviceptr,
    rows: usize,
    cols: usize,
    box_rows: u32,
) -> Result<TensorMap> {
    ensure!(
        ptr.is_multiple_of(16) && cols.is_multiple_of(8),
        "gemm: the TMA path needs 16-byte aligned rows"
    );
    let dims: [u64; 2] = [cols as u64, rows as u64];
    let strides: [u64; 1] = [(cols * 2) as u64];
    let boxd: [u32; 2] = [64, box_rows];
    let elem: [u32; 2] = [1, 1];
    let mut tm = std::mem::MaybeUninit::<sys::CUtensorMap>::zeroed();
    // SAFETY: every pointer refers to a live local array of the length the rank (2) implies;
    // `tm` is writable storage of the right type; the driver only reads the device address.
    unsafe {
        sys::cuTensorMapEncodeTiled(
            tm.as_mut_ptr(),
            sys::CUtensorMapDataType::CU_TENSOR_MAP_DATA_TYPE_FLOAT16,
            2,
            ptr as *mut std::ffi::c_void,
            dims.as_ptr(),
            strides.as_ptr(),
            boxd.as_ptr(),
            elem.as_ptr(),
            sys::CUtensorMapInterleave::CU_TENSOR_MAP_INTERLEAVE_NONE,
            sys::CUtensorMapSwizzle::CU_TENSOR_MAP_SWIZZLE_128B,
            sys::CUtensorMapL2promotion::CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
            sys::CUtensorMapFloatOOBfill::CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE,
        )
        .result()?;
        Ok(TensorMap(tm.assume_init()))
    }
}

fn sm90_name(epi: Epilogue) -> &'static str {
    match epi {
        Epilogue::None => "gemm_f16_sm90_nt_none",
        Epilogue::Bias => "gemm_f16_sm90_nt_bias",
        Epilogue::BiasGeluErf => "gemm_f16_sm90_nt_bias_gelu_erf",
        Epilogue::BiasGeluTanh => "gemm_f16_sm90_nt_bias_gelu_tanh",
    }
}

/// The path [`GemmPath::Auto`] resolves to on `dev` for this layout and shape.
pub fn gemm_auto_path(dev: &CudaDevice, layout: BLayout, n: usize, k: usize) -> GemmPath {
    if gemm_tma_supported(dev, layout, n, k) {
        GemmPath::WgmmaTma
    } else if gemm_uses_tensor_cores(layout, n, k) {
        GemmPath::MmaSync
    } else {
        GemmPath::Simple
    }
}

/// Whether [`gemm`] takes the tensor-core path for this shape (otherwise the slow general
/// fallback): K must be a multiple of 8, and for [`BLayout::Nn`] N too (16-byte rows).
pub fn gemm_uses_tensor_cores(layout: BLayout, n: usize, k: usize) -> bool {
    k.is_multiple_of(8) && (layout == BLayout::Nt || n.is_multiple_of(8))
}

/// `c[M,N] = epi(a[M,K] * op(b) + bias[N])`, fp16 in/out, fp32 accumulation.
///
/// `a`'s last dimension is K and its other dimensions are flattened into M; `b` is `[N, K]`
/// ([`BLayout::Nt`]) or `[K, N]` ([`BLayout::Nn`]); `c` must hold M*N elements, its last
/// dimension N; `bias` (`[N]`) is required by every epilogue but [`Epilogue::None`].
/// Any M, N, K >= 1; shapes off the fast path's alignment use a slower exact fallback.
pub fn gemm(
    dev: &CudaDevice,
    a: &DeviceTensor,
    b: &DeviceTensor,
    layout: BLayout,
    bias: Option<&DeviceTensor>,
    epi: Epilogue,
    c: &mut DeviceTensor,
) -> Result<()> {
    gemm_with(dev, GemmPath::Auto, a, b, layout, bias, epi, c)
}

/// [`gemm`] on a chosen kernel path; errors if the path cannot run this shape on this device.
#[allow(clippy::too_many_arguments)]
pub fn gemm_with(
    dev: &CudaDevice,
    path: GemmPath,
    a: &DeviceTensor,
    b: &DeviceTensor,
    layout: BLayout,
    bias: Option<&DeviceTensor>,
    epi: Epilogue,
    c: &mut DeviceTensor,
) -> Result<()> {
    let ash = a.shape();
    let bsh = b.shape();
    ensure!(!ash.is_empty(), "gemm: A has no dimensions");
    ensure!(bsh.len() == 2, "gemm: B must be 2-D, got {bsh:?}");
    let k = ash[ash.len() - 1];
    let m = a.len() / k;
    let (n, kb) = match layout {
        BLayout::Nt => (bsh[0], bsh[1]),
        BLayout::Nn => (bsh[1], bsh[0]),
    };
    ensure!(
        kb == k,
        "gemm: A {ash:?} and B {bsh:?} ({layout:?}) disagree on K"
    );
    ensure!(
        c.len() == m * n && c.shape().last() == Some(&n),
        "gemm: C {:?} must be [{m}, {n}]",
        c.shape()
    );
    match (epi, bias) {
        (Epilogue::None, _) => {}
        (_, Some(bt)) => ensure!(
            bt.len() == n,
            "gemm: bias {:?} must have N = {n} elements",
            bt.shape()
        ),
        (_, None) => ensure!(false, "gemm: epilogue {epi:?} needs a bias"),
    }
    ensure!(
        m <= i32::MAX as usize && n <= i32::MAX as usize && k <= i32::MAX as usize,
        "gemm: dimensions must fit in i32"
    );
    let (mi, ni, ki) = (m as i32, n as i32, k as i32);
    let null: u64 = 0;
    let path = match path {
        GemmPath::Auto => gemm_auto_path(dev, layout, n, k),
        p => p,
    };

    if path == GemmPath::WgmmaTma {
        ensure!(
            gemm_tma_supported(dev, layout, n, k),
            "gemm: the TMA wgmma path needs compute capability 9.0, K % 8 == 0 (and N % 8 == 0 for NN)"
        );
        ensure!(
            m.div_ceil(128) <= 65535 && m <= u32::MAX as usize && n <= u32::MAX as usize,
            "gemm: M = {m} too large for one launch"
        );
        let stream = dev.stream();
        let tma = {
            let (pa, _ga) = a.buf.device_ptr(stream);
            tensor_map_rows(pa, m, k, 128)?
        };
        let tmb = {
            let (pb, _gb) = b.buf.device_ptr(stream);
            match layout {
                BLayout::Nt => tensor_map_rows(pb, n, k, 256)?,
                BLayout::Nn => tensor_map_rows(pb, k, n, 64)?,
            }
        };
        let f = dev.function(
            KernelSource::GemmSm90,
            sm90ws_name(layout, epi),
            SM90WS_SMEM_BYTES,
        )?;
        let cfg = LaunchConfig {
            grid_dim: (n.div_ceil(256) as u32, m.div_ceil(128) as u32, 1),
            block_dim: (384, 1, 1),
            shared_mem_bytes: SM90WS_SMEM_BYTES,
        };
        let mut lb = stream.launch_builder(&f);
        lb.arg(&tma).arg(&tmb).arg(&a.buf).arg(&b.buf);
        match (epi, bias) {
            (Epilogue::None, _) | (_, None) => lb.arg(&null),
            (_, Some(bt)) => lb.arg(&bt.buf),
        };
        lb.arg(&mut c.buf).arg(&mi).arg(&ni).arg(&ki);
        // SAFETY: matches `gemm_f16_sm90ws_{nt,nn}_*(TmaDesc tmA, TmaDesc tmB, const f16* A,
        // const f16* B, const f16* bias, f16* C, int M, int N, int K)`; the tensor maps describe
        // exactly A ([M, K]) and B ([N, K] or [K, N]), which are also passed (unused by the kernel) so the
        // stream orders this launch after their writes and they outlive it; C holds M*N and bias
        // N elements (checked); K % 8 == 0 and the allocations are 256-byte aligned as TMA needs;
        // compute_90a module on a 9.0 device; smem limit raised on load.
        unsafe { lb.launch(cfg) }?;
    } else if path == GemmPath::Wgmma {
        ensure!(
            layout == BLayout::Nt && k.is_multiple_of(8) && dev.compute_capability() == (9, 0),
            "gemm: the wgmma path needs NT, K % 8 == 0 and compute capability 9.0"
        );
        ensure!(
            m.div_ceil(128) <= 65535,
            "gemm: M = {m} too large for one launch"
        );
        let f = dev.function(KernelSource::GemmSm90, sm90_name(epi), SM90_SMEM_BYTES)?;
        let cfg = LaunchConfig {
            grid_dim: (n.div_ceil(256) as u32, m.div_ceil(128) as u32, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: SM90_SMEM_BYTES,
        };
        let mut lb = dev.stream().launch_builder(&f);
        lb.arg(&a.buf).arg(&b.buf);
        match (epi, bias) {
            (Epilogue::None, _) | (_, None) => lb.arg(&null),
            (_, Some(bt)) => lb.arg(&bt.buf),
        };
        lb.arg(&mut c.buf).arg(&mi).arg(&ni).arg(&ki);
        // SAFETY: matches `gemm_f16_sm90_nt_*(const f16* A, const f16* B, const f16* bias,
        // f16* C, int M, int N, int K)`; A holds M*K, B N*K, C M*N, bias N elements (checked);
        // K % 8 == 0 and 256-byte aligned allocations satisfy the 16-byte cp.async loads; the
        // module was compiled for compute_90a and the device is 9.0; smem limit raised on load.
        unsafe { lb.launch(cfg) }?;
    } else if path == GemmPath::MmaSync {
        ensure!(
            gemm_uses_tensor_cores(layout, n, k),
            "gemm: the mma.sync path needs K % 8 == 0 (and N % 8 == 0 for NN)"
        );
        ensure!(
            m.div_ceil(BM) <= 65535,
            "gemm: M = {m} too large for one launch"
        );
        let f = dev.function(
            KernelSource::Gemm,
            kernel_name(layout, epi),
            GEMM_SMEM_BYTES,
        )?;
        let cfg = LaunchConfig {
            grid_dim: (n.div_ceil(BN) as u32, m.div_ceil(BM) as u32, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: GEMM_SMEM_BYTES,
        };
        let mut lb = dev.stream().launch_builder(&f);
        lb.arg(&a.buf).arg(&b.buf);
        match (epi, bias) {
            (Epilogue::None, _) | (_, None) => lb.arg(&null),
            (_, Some(bt)) => lb.arg(&bt.buf),
        };
        lb.arg(&mut c.buf).arg(&mi).arg(&ni).arg(&ki);
        // SAFETY: argument order and types match `gemm_f16_{nt,nn}_*(const f16* A, const f16* B,
        // const f16* bias, f16* C, int M, int N, int K)`; A holds M*K, B N*K, C M*N and bias N
        // elements (checked above); K % 8 == 0 (and N % 8 == 0 for NN) and cudarc allocations
        // are 256-byte aligned, as the cp.async 16-byte loads require; the bias pointer is only
        // read by epilogues that were given one; C does not alias A or B (&mut borrow).
        unsafe { lb.launch(cfg) }?;
    } else {
        ensure!(
            m.div_ceil(64) <= 65535,
            "gemm: M = {m} too large for one launch"
        );
        let f = dev.function(KernelSource::Gemm, "gemm_f16_simple", 0)?;
        let cfg = LaunchConfig {
            grid_dim: (n.div_ceil(64) as u32, m.div_ceil(64) as u32, 1),
            block_dim: (16, 16, 1),
            shared_mem_bytes: 0,
        };
        let b_kn: i32 = (layout == BLayout::Nn) as i32;
        let code = epi.code();
        let mut lb = dev.stream().launch_builder(&f);
        lb.arg(&a.buf).arg(&b.buf);
        match (epi, bias) {
            (Epilogue::None, _) | (_, None) => lb.arg(&null),
            (_, Some(bt)) => lb.arg(&bt.buf),
        };
        lb.arg(&mut c.buf)
            .arg(&mi)
            .arg(&ni)
            .arg(&ki)
            .arg(&b_kn)
            .arg(&code);
        // SAFETY: matches `gemm_f16_simple(const f16* A, const f16* B, const f16* bias, f16* C,
        // int M, int N, int K, int b_kn, int epi)`; sizes checked above; the kernel bounds-checks
        // every element access, so no alignment is needed; bias is read only when epi >= 1.
        unsafe { lb.launch(cfg) }?;
    }
    Ok(())
}
