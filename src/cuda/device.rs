//! The CUDA device: context, stream, compiled modules, and fp16 device tensors.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cudarc::driver::sys::CUfunction_attribute;
use cudarc::driver::{CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream};
use cudarc::nvrtc::Ptx;
use half::f16;

use super::error::{CudaError, Result, ensure};
use super::ptx::{KernelSource, arch_for, compile_ptx};

/// Whether the NVIDIA driver library can be loaded on this machine (no device check).
pub fn driver_available() -> bool {
    // SAFETY: only tries to dlopen libcuda by the names cudarc knows; no symbol is called.
    unsafe { cudarc::driver::sys::is_culib_present() }
}

/// One GPU: a CUDA context, the stream every launcher uses, and the kernel modules compiled
/// for its compute capability (each `cuda/*.cu` is compiled at most once per process and
/// architecture, and loaded at most once per device).
pub struct CudaDevice {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    arch: &'static str,
    cc: (i32, i32),
    modules: Mutex<HashMap<KernelSource, Arc<CudaModule>>>,
    functions: Mutex<HashMap<&'static str, CudaFunction>>,
}

impl std::fmt::Debug for CudaDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaDevice")
            .field("ordinal", &self.ctx.ordinal())
            .field("arch", &self.arch)
            .finish()
    }
}

impl CudaDevice {
    /// Opens device `ordinal`. Returns an error (never panics) when the driver library is
    /// missing, the device does not exist, or it is older than compute capability 8.0.
    pub fn new(ordinal: usize) -> Result<Self> {
        if !driver_available() {
            return Err(CudaError::DriverNotFound);
        }
        let count = CudaContext::device_count().map_err(CudaError::Driver)? as usize;
        if ordinal >= count {
            return Err(CudaError::NoDevice { ordinal, count });
        }
        let ctx = CudaContext::new(ordinal)?;
        let cc = ctx.compute_capability()?;
        let arch = arch_for(cc.0, cc.1)?;
        let stream = ctx.default_stream();
        Ok(Self {
            ctx,
            stream,
            arch,
            cc,
            modules: Mutex::new(HashMap::new()),
            functions: Mutex::new(HashMap::new()),
        })
    }

    /// The device's name as the driver reports it (e.g. "NVIDIA H100 80GB HBM3").
    pub fn name(&self) -> Result<String> {
        Ok(self.ctx.name()?)
    }

    /// Compute capability (major, minor).
    pub fn compute_capability(&self) -> (i32, i32) {
        self.cc
    }

    /// The NVRTC architecture the kernels are compiled for (e.g. `compute_90`).
    pub fn arch(&self) -> &'static str {
        self.arch
    }

    /// The underlying cudarc context.
    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    /// The stream all launchers enqueue on.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// Blocks until all work queued on the stream has finished.
    pub fn synchronize(&self) -> Result<()> {
        Ok(self.stream.synchronize()?)
    }

    /// Loads (compiling if needed) kernel `name` of `src`. `max_dyn_smem` > 0 raises the
    /// function's dynamic shared-memory limit to that many bytes.
    pub(crate) fn function(
        &self,
        src: KernelSource,
        name: &'static str,
        max_dyn_smem: u32,
    ) -> Result<CudaFunction> {
        if let Some(f) = self.functions.lock().expect("poisoned").get(name) {
            return Ok(f.clone());
        }
        let module = {
            let mut mods = self.modules.lock().expect("poisoned");
            match mods.get(&src) {
                Some(m) => m.clone(),
                None => {
                    let m = self.load_module(src)?;
                    mods.insert(src, m.clone());
                    m
                }
            }
        };
        let f = module.load_function(name)?;
        if max_dyn_smem > 0 {
            f.set_attribute(
                CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                max_dyn_smem as i32,
            )?;
        }
        self.functions
            .lock()
            .expect("poisoned")
            .insert(name, f.clone());
        Ok(f)
    }

    fn load_module(&self, src: KernelSource) -> Result<Arc<CudaModule>> {
        // A folder of precompiled PTX (as written by tests/cuda_ptx.rs) can replace NVRTC.
        let arch = src.arch_on(self.arch);
        if let Ok(dir) = std::env::var("LITHE_PTX_DIR") {
            let stem = src.file_name().trim_end_matches(".cu");
            let path = std::path::Path::new(&dir).join(format!("{stem}.{arch}.ptx"));
            if let Ok(text) = std::fs::read_to_string(&path) {
                return Ok(self.ctx.load_module(Ptx::from_src(text))?);
            }
        }
        let text = compile_ptx(src, arch)?;
        Ok(self.ctx.load_module(Ptx::from_src(text))?)
    }

    /// Allocates a tensor of `shape` and copies `data` (row-major) into it.
    pub fn upload(&self, data: &[f16], shape: &[usize]) -> Result<DeviceTensor> {
        let n: usize = shape.iter().product();
        ensure!(
            n == data.len(),
            "upload: shape {shape:?} holds {n} elements, data has {}",
            data.len()
        );
        ensure!(n > 0, "upload: empty tensor {shape:?}");
        let buf = self.stream.clone_htod(data)?;
        Ok(DeviceTensor {
            buf,
            shape: shape.to_vec(),
        })
    }

    /// Allocates a zero-filled tensor of `shape`.
    pub fn zeros(&self, shape: &[usize]) -> Result<DeviceTensor> {
        let n: usize = shape.iter().product();
        ensure!(n > 0, "zeros: empty tensor {shape:?}");
        let buf = self.stream.alloc_zeros::<f16>(n)?;
        Ok(DeviceTensor {
            buf,
            shape: shape.to_vec(),
        })
    }

    /// Copies a tensor back to the host (waits for queued work).
    pub fn download(&self, t: &DeviceTensor) -> Result<Vec<f16>> {
        Ok(self.stream.clone_dtoh(&t.buf)?)
    }

    /// Copies `data` into an existing tensor of the same element count.
    pub fn copy_into(&self, data: &[f16], t: &mut DeviceTensor) -> Result<()> {
        ensure!(
            data.len() == t.len(),
            "copy_into: {} elements into a tensor of {}",
            data.len(),
            t.len()
        );
        Ok(self.stream.memcpy_htod(data, &mut t.buf)?)
    }

    /// Uploads a slice of `u32` (token ids) to the device.
    pub fn upload_u32(&self, data: &[u32]) -> Result<CudaSlice<u32>> {
        ensure!(!data.is_empty(), "upload_u32: empty slice");
        Ok(self.stream.clone_htod(data)?)
    }

    /// Uploads a slice of `i32` (e.g. per-batch valid lengths) to the device.
    pub fn upload_i32(&self, data: &[i32]) -> Result<CudaSlice<i32>> {
        ensure!(!data.is_empty(), "upload_i32: empty slice");
        Ok(self.stream.clone_htod(data)?)
    }
}

/// A contiguous row-major fp16 tensor in device memory.
#[derive(Debug)]
pub struct DeviceTensor {
    pub(crate) buf: CudaSlice<f16>,
    shape: Vec<usize>,
}

impl DeviceTensor {
    /// The tensor's shape (row-major, last dimension contiguous).
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Always false: empty tensors cannot be created.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Reinterprets the tensor with another shape of the same element count.
    pub fn reshape(&mut self, shape: &[usize]) -> Result<()> {
        let n: usize = shape.iter().product();
        ensure!(
            n == self.len(),
            "reshape {:?} -> {shape:?}: element count differs",
            self.shape
        );
        self.shape = shape.to_vec();
        Ok(())
    }

    /// The underlying cudarc buffer.
    pub fn slice(&self) -> &CudaSlice<f16> {
        &self.buf
    }
}
