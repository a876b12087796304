//! Launcher of `cuda/attention.cu`: fused attention forward.

use cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};

use super::device::{CudaDevice, DeviceTensor};
use super::error::{Result, ensure};
use super::ptx::KernelSource;

/// Which attention kernel runs (see `cuda/attention.cu`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttnPath {
    /// [`AttnPath::Rows128`] for head dim 128, [`AttnPath::Rows64`] otherwise.
    Auto,
    /// v1: blocks of 4 warps x 16 query rows, Q fragments held in registers.
    Rows64,
    /// v2: blocks of 8 warps x 16 query rows (FA2's 128-row tile), Q re-read from shared
    /// memory per key tile, at most 128 registers so 2 blocks fit one SM.
    Rows128,
    /// v2q: 8 warps x 16 query rows with Q fragments held in registers (no register cap).
    Rows128Qreg,
    /// v2k: as [`AttnPath::Rows128`] over 32-key tiles (head dim 128 only).
    Rows128Keys32,
}

/// The path [`AttnPath::Auto`] resolves to for head dim `d`.
pub fn attention_auto_path(d: usize) -> AttnPath {
    if d == 128 {
        AttnPath::Rows128
    } else {
        AttnPath::Rows64
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
    ensure!(
        path != AttnPath::Rows128Keys32 || d == 128,
        "attention: path Rows128Keys32 needs head dim 128, got {d}"
    );
    let (name, br, bc, threads) = match (path, d) {
        (AttnPath::Rows128Keys32, _) => ("attn_fwd_f16_d128_r128k32", 128, 32, 256),
        (AttnPath::Rows128, 32) => ("attn_fwd_f16_d32_r128", 128, 64, 256),
        (AttnPath::Rows128, 64) => ("attn_fwd_f16_d64_r128", 128, 64, 256),
        (AttnPath::Rows128, _) => ("attn_fwd_f16_d128_r128", 128, 64, 256),
        (AttnPath::Rows128Qreg, 32) => ("attn_fwd_f16_d32_r128q", 128, 64, 256),
        (AttnPath::Rows128Qreg, 64) => ("attn_fwd_f16_d64_r128q", 128, 64, 256),
        (AttnPath::Rows128Qreg, _) => ("attn_fwd_f16_d128_r128q", 128, 64, 256),
        (_, 32) => ("attn_fwd_f16_d32", 64, 64, 128),
        (_, 64) => ("attn_fwd_f16_d64", 64, 64, 128),
        _ => ("attn_fwd_f16_d128", 64, 64, 128),
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
    // SAFETY: matches `attn_fwd_f16_dD[_r128[q|k32]](const f16* Q, const f16* K, const f16* V, f16* O,
    // const int* lens, int H, int L, float scale_log2)`; Q, K, V, O hold B*H*L*D elements
    // (same shape, checked), D is the instantiated head dim, so rows are 16-byte multiples and
    // allocations are 256-byte aligned for cp.async; lens is NULL or holds B ints; O does not
    // alias the inputs (&mut borrow); dynamic smem was raised to `smem` on load; the block
    // has the 32*NW threads and the grid the 16*NW-row tiles the kernel was built for.
    unsafe { lb.launch(cfg) }?;
    Ok(())
}
