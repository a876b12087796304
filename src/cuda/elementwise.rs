//! Launchers of `cuda/elementwise.cu`: LayerNorm, row softmax, GELU, residual add, embedding
//! gather. All fp16 in/out with fp32 arithmetic.

use cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};

use super::device::{CudaDevice, DeviceTensor};
use super::error::{Result, ensure};
use super::ptx::KernelSource;

fn rows_cols(t: &DeviceTensor, what: &str) -> Result<(usize, usize)> {
    let sh = t.shape();
    ensure!(!sh.is_empty(), "{what}: tensor has no dimensions");
    let cols = sh[sh.len() - 1];
    let rows = t.len() / cols;
    ensure!(
        rows <= i32::MAX as usize && cols <= i32::MAX as usize,
        "{what}: shape {sh:?} too large"
    );
    Ok((rows, cols))
}

fn grid_stride_cfg(n: usize) -> LaunchConfig {
    let pairs = n.div_ceil(2).max(1);
    LaunchConfig {
        grid_dim: (pairs.div_ceil(256).min(1 << 20) as u32, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// `out = (x - mean) / sqrt(var + eps) * gamma + beta` over the last dimension of `x`.
pub fn layernorm(
    dev: &CudaDevice,
    x: &DeviceTensor,
    gamma: &DeviceTensor,
    beta: &DeviceTensor,
    eps: f32,
    out: &mut DeviceTensor,
) -> Result<()> {
    let (rows, cols) = rows_cols(x, "layernorm")?;
    ensure!(
        gamma.len() == cols && beta.len() == cols,
        "layernorm: gamma/beta must have {cols} elements"
    );
    ensure!(
        out.shape() == x.shape(),
        "layernorm: out {:?} != x {:?}",
        out.shape(),
        x.shape()
    );
    ensure!(
        eps > 0.0 && eps.is_finite(),
        "layernorm: eps must be positive"
    );
    let f = dev.function(KernelSource::Elementwise, "layernorm_f16", 0)?;
    let cfg = LaunchConfig {
        grid_dim: (rows.div_ceil(8) as u32, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    };
    let (r, c) = (rows as i32, cols as i32);
    let mut lb = dev.stream().launch_builder(&f);
    lb.arg(&mut out.buf)
        .arg(&x.buf)
        .arg(&gamma.buf)
        .arg(&beta.buf)
        .arg(&r)
        .arg(&c)
        .arg(&eps);
    // SAFETY: matches `layernorm_f16(f16* out, const f16* x, const f16* gamma, const f16* beta,
    // int rows, int cols, float eps)`; x and out hold rows*cols, gamma and beta cols elements;
    // f16x2 accesses are used only when cols is even (4-byte aligned rows).
    unsafe { lb.launch(cfg) }?;
    Ok(())
}

/// `out[r, :] = softmax(x[r, :])` over the last dimension.
pub fn softmax_rows(dev: &CudaDevice, x: &DeviceTensor, out: &mut DeviceTensor) -> Result<()> {
    let (rows, cols) = rows_cols(x, "softmax_rows")?;
    ensure!(
        out.shape() == x.shape(),
        "softmax_rows: out {:?} != x {:?}",
        out.shape(),
        x.shape()
    );
    let f = dev.function(KernelSource::Elementwise, "softmax_rows_f16", 0)?;
    let cfg = LaunchConfig {
        grid_dim: (rows.div_ceil(8) as u32, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    };
    let (r, c) = (rows as i32, cols as i32);
    let mut lb = dev.stream().launch_builder(&f);
    lb.arg(&mut out.buf).arg(&x.buf).arg(&r).arg(&c);
    // SAFETY: matches `softmax_rows_f16(f16* out, const f16* x, int rows, int cols)`; both
    // hold rows*cols elements; cols >= 1 because tensors are never empty.
    unsafe { lb.launch(cfg) }?;
    Ok(())
}

/// `out = GELU(x)` (erf form), element-wise.
pub fn gelu(dev: &CudaDevice, x: &DeviceTensor, out: &mut DeviceTensor) -> Result<()> {
    ensure!(
        out.len() == x.len(),
        "gelu: out has {} elements, x {}",
        out.len(),
        x.len()
    );
    let f = dev.function(KernelSource::Elementwise, "gelu_f16", 0)?;
    let n = x.len() as i64;
    let mut lb = dev.stream().launch_builder(&f);
    lb.arg(&mut out.buf).arg(&x.buf).arg(&n);
    // SAFETY: matches `gelu_f16(f16* out, const f16* x, long long n)`; both hold n elements;
    // allocations are 256-byte aligned for the f16x2 accesses.
    unsafe { lb.launch(grid_stride_cfg(x.len())) }?;
    Ok(())
}

/// `out = a + b`, element-wise (the residual add).
pub fn add(
    dev: &CudaDevice,
    a: &DeviceTensor,
    b: &DeviceTensor,
    out: &mut DeviceTensor,
) -> Result<()> {
    ensure!(
        a.len() == b.len() && out.len() == a.len(),
        "add: a {:?}, b {:?}, out {:?} differ in size",
        a.shape(),
        b.shape(),
        out.shape()
    );
    let f = dev.function(KernelSource::Elementwise, "add_f16", 0)?;
    let n = a.len() as i64;
    let mut lb = dev.stream().launch_builder(&f);
    lb.arg(&mut out.buf).arg(&a.buf).arg(&b.buf).arg(&n);
    // SAFETY: matches `add_f16(f16* out, const f16* a, const f16* b, long long n)`; all hold
    // n elements, 256-byte aligned.
    unsafe { lb.launch(grid_stride_cfg(a.len())) }?;
    Ok(())
}

/// `out[i, :] = table[ids[i], :]`; `table` is `[vocab, dim]`, `out` `[n_ids, dim]`.
/// Ids `>= vocab` produce zero rows; use [`embedding_gather_checked`] to reject them.
pub fn embedding_gather(
    dev: &CudaDevice,
    table: &DeviceTensor,
    ids: &CudaSlice<u32>,
    out: &mut DeviceTensor,
) -> Result<()> {
    let sh = table.shape();
    ensure!(
        sh.len() == 2,
        "embedding_gather: table must be [vocab, dim], got {sh:?}"
    );
    let (vocab, dim) = (sh[0], sh[1]);
    let n_ids = ids.len();
    ensure!(
        out.len() == n_ids * dim && out.shape().last() == Some(&dim),
        "embedding_gather: out {:?} must be [{n_ids}, {dim}]",
        out.shape()
    );
    ensure!(
        n_ids <= i32::MAX as usize && vocab <= i32::MAX as usize && dim <= i32::MAX as usize,
        "embedding_gather: sizes must fit in i32"
    );
    let f = dev.function(KernelSource::Elementwise, "embedding_gather_f16", 0)?;
    let cfg = LaunchConfig {
        grid_dim: (n_ids as u32, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    };
    let (ni, di, vi) = (n_ids as i32, dim as i32, vocab as i32);
    let mut lb = dev.stream().launch_builder(&f);
    lb.arg(&mut out.buf)
        .arg(&table.buf)
        .arg(ids)
        .arg(&ni)
        .arg(&di)
        .arg(&vi);
    // SAFETY: matches `embedding_gather_f16(f16* out, const f16* table, const unsigned* ids,
    // int n_ids, int dim, int vocab)`; out holds n_ids*dim, table vocab*dim elements, ids
    // n_ids; the kernel never reads table rows >= vocab.
    unsafe { lb.launch(cfg) }?;
    Ok(())
}

/// [`embedding_gather`] for ids on the host: rejects ids `>= vocab`, then uploads and gathers.
pub fn embedding_gather_checked(
    dev: &CudaDevice,
    table: &DeviceTensor,
    ids: &[u32],
    out: &mut DeviceTensor,
) -> Result<()> {
    let vocab = table.shape().first().copied().unwrap_or(0);
    if let Some(bad) = ids.iter().find(|&&i| i as usize >= vocab) {
        ensure!(false, "embedding_gather: id {bad} >= vocab {vocab}");
    }
    let dids = dev.upload_u32(ids)?;
    embedding_gather(dev, table, &dids, out)
}
