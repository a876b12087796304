//! Launcher of `cuda/attention.cu`: fused attention forward.

use cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};

use super::device::{CudaDevice, DeviceTensor};
use super::error::{Result, ensure};
use super::ptx::KernelSource;

const BR: usize = 64;
const THREADS: u32 = 128;

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
    let name = match d {
        32 => "attn_fwd_f16_d32",
        64 => "attn_fwd_f16_d64",
        128 => "attn_fwd_f16_d128",
        _ => {
            ensure!(false, "attention: head dim {d} not in {{32, 64, 128}}");
            unreachable!()
        }
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
    // Q tile + 2 stages of K and V tiles, fp16.
    let smem = ((BR * d + 4 * 64 * d) * 2) as u32;
    let f = dev.function(KernelSource::Attention, name, smem)?;
    let cfg = LaunchConfig {
        grid_dim: (l.div_ceil(BR) as u32, (b * h) as u32, 1),
        block_dim: (THREADS, 1, 1),
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
    // SAFETY: matches `attn_fwd_f16_dD(const f16* Q, const f16* K, const f16* V, f16* O,
    // const int* lens, int H, int L, float scale_log2)`; Q, K, V, O hold B*H*L*D elements
    // (same shape, checked), D is the instantiated head dim, so rows are 16-byte multiples and
    // allocations are 256-byte aligned for cp.async; lens is NULL or holds B ints; O does not
    // alias the inputs (&mut borrow); dynamic smem was raised to `smem` on load.
    unsafe { lb.launch(cfg) }?;
    Ok(())
}
