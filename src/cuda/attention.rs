//! Launcher of `cuda/attention.cu`: fused attention forward.

use cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};

use super::device::{CudaDevice, DeviceTensor};
use super::error::{Result, ensure};
use super::ptx::KernelSource;

/// Which attention kernel runs (see `cuda/attention.cu`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttnPath {
    /// The fastest measured path per head dim (see `cuda/NOTES.md`).
    Auto,
    /// v1: blocks of 4 warps x 16 query rows, Q fragments held in registers.
    Rows64,
    /// v3: blocks of 4 warps x 32 query rows (FA2's d128 tiling), Q in shared memory, 64-key
    /// tiles.
    Rows128Warp32,
    /// v3w: as [`AttnPath::Rows128Warp32`] over 128-key tiles (head dim 64 only).
    Rows128Warp32Keys128,
    /// v4: as [`AttnPath::Rows128Warp32`] (128-key tiles at head dim 64) with the fragment
    /// loads software-pipelined one mma step ahead.
    Rows128Warp32Prefetch,
}

/// Kernel name, query rows per block, keys per tile and threads per block of `path` at head
/// dim `d` (`None`: not instantiated).
fn kernel(path: AttnPath, d: usize) -> Option<(&'static str, usize, usize, u32)> {
    use AttnPath::*;
    Some(match (path, d) {
        (Auto, _) => return kernel(attention_auto_path(d), d),
        (Rows64, 32) => ("attn_fwd_f16_d32", 64, 64, 128),
        (Rows64, 64) => ("attn_fwd_f16_d64", 64, 64, 128),
        (Rows64, 128) => ("attn_fwd_f16_d128", 64, 64, 128),
        (Rows128Warp32, 32) => ("attn_fwd_f16_d32_m2", 128, 64, 128),
        (Rows128Warp32, 64) => ("attn_fwd_f16_d64_m2", 128, 64, 128),
        (Rows128Warp32, 128) => ("attn_fwd_f16_d128_m2", 128, 64, 128),
        (Rows128Warp32Keys128, 64) => ("attn_fwd_f16_d64_m2k128", 128, 128, 128),
        (Rows128Warp32Prefetch, 32) => ("attn_fwd_f16_d32_m2p", 128, 64, 128),
        (Rows128Warp32Prefetch, 64) => ("attn_fwd_f16_d64_m2pk128", 128, 128, 128),
        (Rows128Warp32Prefetch, 128) => ("attn_fwd_f16_d128_m2p", 128, 64, 128),
        _ => return None,
    })
}

/// Whether [`attention_with`] has a kernel for `path` at head dim `d`.
pub fn attention_path_supported(path: AttnPath, d: usize) -> bool {
    kernel(path, d).is_some()
}

/// The path [`AttnPath::Auto`] resolves to for head dim `d`.
pub fn attention_auto_path(d: usize) -> AttnPath {
    match d {
        128 => AttnPath::Rows128Warp32Prefetch,
        64 => AttnPath::Rows128Warp32Keys128,
        _ => AttnPath::Rows128Warp32,
    }
}

/// `o = softmax(q k^T / sqrt(d) + mask) v` for every batch and head.
///
/// `q`, `k`, `v`, `o`: fp16 `[B, H, L, D]` (contiguous), D in {32, 64, 128}.
/// `lens`: optional int32 `[B]` key lengths: keys `j >= lens[b]` are masked out (key padding);
/// a batch with length 0 gets zeros. Softmax and accumulation in fp32.
pub fn attention(
    dev: &CudaDevice,
    q: &DeviceTensor,
    k: &DeviceTensor,
    v: &DeviceTensor,
    lens: Option<&CudaSlice<i32>>,
    o: &mut DeviceTensor,
) -> Result<()> {
    attention_with(dev, AttnPath::Auto, q, k, v, lens, o)
}

/// [`attention`] on a chosen kernel path (every path computes the same result).
pub fn attention_with(
    dev: &CudaDevice,
    path: AttnPath,
    q: &DeviceTensor,
    k: &DeviceTensor,
    v: &DeviceTensor,
    lens: Option<&CudaSlice<i32>>,
    o: &mut DeviceTensor,
) -> Result<()> {
    let sh = q.shape();
    ensure!(
        sh.len() == 4,
        "attention: Q must be [B, H, L, D], got {sh:?}"
    );
    ensure!(
        k.shape() == sh && v.shape() == sh && o.shape() == sh,
        "attention: Q {sh:?}, K {:?}, V {:?}, O {:?} must have one shape",
        k.shape(),
        v.shape(),
        o.shape()
    );
    let (b, h, l, d) = (sh[0], sh[1], sh[2], sh[3]);
    ensure!(
        matches!(d, 32 | 64 | 128),
        "attention: head dim {d} not in {{32, 64, 128}}"
    );
    let path = match path {
        AttnPath::Auto => attention_auto_path(d),
        p => p,
    };
    let Some((name, br, bc, threads)) = kernel(path, d) else {
        ensure!(
            false,
            "attention: path {path:?} has no kernel for head dim {d}"
        );
        unreachable!()
    };
    ensure!(b * h <= 65535, "attention: B*H = {} exceeds 65535", b * h);
    ensure!(l <= i32::MAX as usize, "attention: L = {l} too large");
    if let Some(ls) = lens {
        ensure!(
            ls.len() == b,
            "attention: lens has {} entries, B = {b}",
            ls.len()
        );
    }
    // Q tile + 2 stages of K and V tiles of `bc` keys, fp16.
    let smem = ((br * d + 4 * bc * d) * 2) as u32;
    let f = dev.function(KernelSource::Attention, name, smem)?;
    let cfg = LaunchConfig {
        grid_dim: (l.div_ceil(br) as u32, (b * h) as u32, 1),
        block_dim: (threads, 1, 1),
        shared_mem_bytes: smem,
    };
    let (hi, li) = (h as i32, l as i32);
    let scale_log2 = (1.0 / (d as f64).sqrt() * std::f64::consts::LOG2_E) as f32;
    let null: u64 = 0;
    let mut lb = dev.stream().launch_builder(&f);
    lb.arg(&q.buf).arg(&k.buf).arg(&v.buf).arg(&mut o.buf);
    match lens {
        Some(ls) => lb.arg(ls),
        None => lb.arg(&null),
    };
    lb.arg(&hi).arg(&li).arg(&scale_log2);
    // SAFETY: matches `attn_fwd_f16_dD[_m2...](const f16* Q, const f16* K, const f16* V, f16* O,
    // const int* lens, int H, int L, float scale_log2)`; Q, K, V, O hold B*H*L*D elements
    // (same shape, checked), D is the instantiated head dim, so rows are 16-byte multiples and
    // allocations are 256-byte aligned for cp.async; lens is NULL or holds B ints; O does not
    // alias the inputs (&mut borrow); dynamic smem was raised to `smem` on load; the block
    // has the 32*NW threads and the grid the 16*NW*MR-row tiles the kernel was built for.
    unsafe { lb.launch(cfg) }?;
    Ok(())
}
