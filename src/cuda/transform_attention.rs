//! Launcher of `cuda/transform_attention.cu`: MiniViT's fused depthwise-transform attention
//! forward (head mixes before and after the softmax, optional DynamicViT keep policy).

use cudarc::driver::sys::CUdevice_attribute;
use cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};

use super::device::{CudaDevice, DeviceTensor};
use super::error::{CudaError, Result, ensure};
use super::ptx::KernelSource;

/// Largest head count [`transform_attention`] has a kernel for (the size of the kernel's mix
/// parameter).
pub const TRANSFORM_ATTENTION_MAX_HEADS: usize = 12;

/// Query rows per block, keys per tile and threads per block of every kernel of the file.
const ROWS: usize = 32;
const KEYS: usize = 16;
const THREADS: u32 = 256;
/// Floats in the kernel's `TAttnMix` parameter: pre `[12 * 12]`, pre_bias `[12]`, post
/// `[12 * 12]`, post_bias `[12]`, each row-major with row stride 12.
const MIX_FLOATS: usize = 2 * (TRANSFORM_ATTENTION_MAX_HEADS + 1) * TRANSFORM_ATTENTION_MAX_HEADS;

/// The head mixes of one MiniViT attention layer, on the host (f32, row-major).
///
/// With H heads: `S'_h = sum_g pre[h, g] S_g + pre_bias[h]` before the softmax and
/// `P'_h = sum_g post[h, g] P_g + post_bias[h] G` after it (`G` = 1 without a keep policy).
#[derive(Clone, Copy, Debug)]
pub struct HeadMix<'a> {
    /// Pre-softmax mix `[H, H]`.
    pub pre: &'a [f32],
    /// Pre-softmax bias `[H]`.
    pub pre_bias: &'a [f32],
    /// Post-softmax mix `[H, H]`.
    pub post: &'a [f32],
    /// Post-softmax bias `[H]`.
    pub post_bias: &'a [f32],
}

/// Whether [`transform_attention`] has a kernel for `heads` heads of width `head_dim`
/// (a count of [`TRANSFORM_ATTENTION_HEADS`], width 32 or 64; the device must also have the
/// shared memory, see [`transform_attention_smem_bytes`]).
pub fn transform_attention_supported(heads: usize, head_dim: usize) -> bool {
    kernel_name(heads, head_dim).is_some()
}

/// Dynamic shared memory of one block: Q rows and one K and one V tile (fp16, rows padded by
/// 8 halfs), the fp32 score tile and the fp16 probability tile of every head (row stride 24).
/// 151 KiB at 12 heads of width 64 (fits sm_80 and sm_90, not sm_86 / sm_89).
pub fn transform_attention_smem_bytes(heads: usize, head_dim: usize) -> usize {
    let row = heads * head_dim + 8;
    (ROWS + 2 * KEYS) * row * 2 + heads * ROWS * (KEYS + 8) * (4 + 2)
}

/// Head counts with a kernel (each instantiation costs NVRTC time; these are the usual ViTs'
/// counts: DeiT-Ti 3, DeiT-S 6, DeiT-B 12, Swin 3..12 per stage).
pub const TRANSFORM_ATTENTION_HEADS: [usize; 7] = [1, 2, 3, 4, 6, 8, 12];

fn kernel_name(heads: usize, head_dim: usize) -> Option<&'static str> {
    Some(match (head_dim, heads) {
        (32, 1) => "tattn_fwd_f16_d32_h1",
        (32, 2) => "tattn_fwd_f16_d32_h2",
        (32, 3) => "tattn_fwd_f16_d32_h3",
        (32, 4) => "tattn_fwd_f16_d32_h4",
        (32, 6) => "tattn_fwd_f16_d32_h6",
        (32, 8) => "tattn_fwd_f16_d32_h8",
        (32, 12) => "tattn_fwd_f16_d32_h12",
        (64, 1) => "tattn_fwd_f16_d64_h1",
        (64, 2) => "tattn_fwd_f16_d64_h2",
        (64, 3) => "tattn_fwd_f16_d64_h3",
        (64, 4) => "tattn_fwd_f16_d64_h4",
        (64, 6) => "tattn_fwd_f16_d64_h6",
        (64, 8) => "tattn_fwd_f16_d64_h8",
        (64, 12) => "tattn_fwd_f16_d64_h12",
        _ => return None,
    })
}

/// The kernel's `TAttnMix` parameter: rows of stride 12, the pre bias times log2(e) (the
/// kernel's scores are in the log2 domain).
fn pack_mix(mix: &HeadMix, heads: usize) -> [f32; MIX_FLOATS] {
    const M: usize = TRANSFORM_ATTENTION_MAX_HEADS;
    let mut p = [0.0f32; MIX_FLOATS];
    let (pre, rest) = p.split_at_mut(M * M);
    let (pre_bias, rest) = rest.split_at_mut(M);
    let (post, post_bias) = rest.split_at_mut(M * M);
    for h in 0..heads {
        pre[h * M..h * M + heads].copy_from_slice(&mix.pre[h * heads..(h + 1) * heads]);
        post[h * M..h * M + heads].copy_from_slice(&mix.post[h * heads..(h + 1) * heads]);
        pre_bias[h] = mix.pre_bias[h] * std::f32::consts::LOG2_E;
        post_bias[h] = mix.post_bias[h];
    }
    p
}

/// MiniViT's fused transform attention: for every sample, query and head, with `S_g = scale *
/// Q_g K_g^T`, `S'_h = sum_g pre[h, g] S_g + pre_bias[h]`, `P_h = softmax_j(S'_h)` (or, with a
/// keep policy, DynamicViT's `(exp(S'_h - max) G + eps/N) / (sum_j exp(S'_h - max) G + eps)`,
/// `G_ij = keep_j + (1 - keep_j) [i == j]`, eps = 1e-6), `P'_h = sum_g post[h, g] P_g +
/// post_bias[h] G` and `o_h = P'_h V_h`, without writing any N x N map to memory.
///
/// `q`, `k`, `v`, `o`: fp16 `[B, N, H * d]` (head h = columns `h*d..(h+1)*d`), `heads` = H in
/// [`TRANSFORM_ATTENTION_HEADS`], d in {32, 64}. `keep`: optional f32 `[B * N]` device buffer (values in [0, 1]; upload
/// with `dev.stream().clone_htod`). Scores, softmax, mixes and accumulators in fp32; `P'` is
/// rounded to fp16 for the `P'V` product and `o` once at the store.
#[allow(clippy::too_many_arguments)]
pub fn transform_attention(
    dev: &CudaDevice,
    q: &DeviceTensor,
    k: &DeviceTensor,
    v: &DeviceTensor,
    heads: usize,
    scale: f32,
    mix: &HeadMix,
    keep: Option<&CudaSlice<f32>>,
    o: &mut DeviceTensor,
) -> Result<()> {
    let sh = q.shape();
    ensure!(
        sh.len() == 3,
        "transform_attention: Q must be [B, N, H*d], got {sh:?}"
    );
    ensure!(
        k.shape() == sh && v.shape() == sh && o.shape() == sh,
        "transform_attention: Q {sh:?}, K {:?}, V {:?}, O {:?} must have one shape",
        k.shape(),
        v.shape(),
        o.shape()
    );
    let (b, n, c) = (sh[0], sh[1], sh[2]);
    ensure!(
        heads > 0 && c % heads == 0,
        "transform_attention: width {c} is not a multiple of {heads} heads"
    );
    let d = c / heads;
    let Some(name) = kernel_name(heads, d) else {
        return Err(CudaError::Invalid(format!(
            "transform_attention: no kernel for {heads} heads of width {d} (heads in \
             {TRANSFORM_ATTENTION_HEADS:?}, width 32 or 64)"
        )));
    };
    let hh = heads * heads;
    ensure!(
        mix.pre.len() == hh
            && mix.post.len() == hh
            && mix.pre_bias.len() == heads
            && mix.post_bias.len() == heads,
        "transform_attention: mixes must be [{heads}, {heads}] and biases [{heads}], got pre {}, \
         pre_bias {}, post {}, post_bias {} values",
        mix.pre.len(),
        mix.pre_bias.len(),
        mix.post.len(),
        mix.post_bias.len()
    );
    ensure!(
        [mix.pre, mix.pre_bias, mix.post, mix.post_bias]
            .iter()
            .all(|m| m.iter().all(|x| x.is_finite()))
            && scale.is_finite(),
        "transform_attention: non-finite scale or mix coefficient"
    );
    ensure!(b <= 65535, "transform_attention: B = {b} exceeds 65535");
    ensure!(
        n <= i32::MAX as usize,
        "transform_attention: N = {n} too large"
    );
    if let Some(keep) = keep {
        ensure!(
            keep.len() == b * n,
            "transform_attention: keep has {} values, B * N = {}",
            keep.len(),
            b * n
        );
    }
    let smem = transform_attention_smem_bytes(heads, d);
    let smem_max = dev
        .context()
        .attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)?;
    ensure!(
        smem <= smem_max as usize,
        "transform_attention: {heads} heads of width {d} need {smem} bytes of shared memory per \
         block, the device allows {smem_max}"
    );
    let smem = smem as u32;
    let f = dev.function(KernelSource::TransformAttention, name, smem)?;
    let cfg = LaunchConfig {
        grid_dim: (n.div_ceil(ROWS) as u32, b as u32, 1),
        block_dim: (THREADS, 1, 1),
        shared_mem_bytes: smem,
    };
    let ni = n as i32;
    let scale_log2 = scale * std::f32::consts::LOG2_E;
    let packed = pack_mix(mix, heads);
    let null: u64 = 0;
    let mut lb = dev.stream().launch_builder(&f);
    lb.arg(&q.buf).arg(&k.buf).arg(&v.buf).arg(&mut o.buf);
    match keep {
        Some(kp) => lb.arg(kp),
        None => lb.arg(&null),
    };
    lb.arg(&ni).arg(&scale_log2).arg(&packed);
    // SAFETY: matches `tattn_fwd_f16_dD_hH(const f16* Q, const f16* K, const f16* V, f16* O,
    // const float* keep, int N, float scale_log2, TAttnMix mix)`, TAttnMix being 312 floats
    // (`MIX_FLOATS`, passed by value); Q, K, V, O hold B*N*H*D elements (same shape, checked)
    // with H*D a multiple of 32, so rows are 16-byte multiples and allocations are 256-byte
    // aligned for cp.async; keep is NULL or holds B*N floats; O does not alias the inputs
    // (&mut borrow); dynamic smem was raised to `smem` on load and is within the device limit;
    // the block has the 256 threads and the grid the 32-row tiles the kernel was built for.
    unsafe { lb.launch(cfg) }?;
    Ok(())
}
