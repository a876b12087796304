// elementwise.cu — memory-bound Transformer kernels: LayerNorm, row softmax, GELU, residual
// add, embedding gather.
//
// Precision: fp16 in/out, every statistic and every intermediate in fp32, one rounding at the
// store. Outputs are overwritten (`=`). Layouts are row-major and contiguous:
//   layernorm_f16   out[rows, cols] = (x - mean) * rstd * gamma[cols] + beta[cols]
//                   (biased variance, eps added to it). One warp per row; block 256 (8 rows),
//                   grid ceil(rows/8). f16x2 loads when cols is even.
//   softmax_rows_f16 out[rows, cols] = softmax over each row (max-subtracted, fp32 sums).
//                   One warp per row, same launch shape. cols >= 1.
//   gelu_f16        out[n] = GELU_erf(x[n]); add_f16 out[n] = a[n] + b[n]. Grid-stride loops
//                   over f16x2 pairs plus a scalar tail; out may alias an input.
//   embedding_gather_f16 out[n_ids, dim] = table[ids[i], :]; ids u32, ids >= vocab give a
//                   zero row (the host launcher checks ids it can see). Block 256, grid n_ids.

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

extern "C" __global__ void __launch_bounds__(256)
    layernorm_f16(f16* __restrict__ out, const f16* __restrict__ x, const f16* __restrict__ gamma,
                  const f16* __restrict__ beta, int rows, int cols, float eps) {
    const int row = blockIdx.x * 8 + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (row >= rows) return;
    const f16* xr = x + (size_t)row * cols;
    f16* orow = out + (size_t)row * cols;
    const bool vec = (cols & 1) == 0;
    float sum = 0.0f;
    if (vec) {
        const f16x2* x2 = reinterpret_cast<const f16x2*>(xr);
        for (int i = lane; i < cols / 2; i += 32) { f16x2 v = x2[i]; sum += lo_f32(v) + hi_f32(v); }
    } else {
        for (int i = lane; i < cols; i += 32) sum += f16_to_f32(xr[i]);
    }
    const float mean = warp_sum(sum) / (float)cols;
    float sq = 0.0f;
    if (vec) {
        const f16x2* x2 = reinterpret_cast<const f16x2*>(xr);
        for (int i = lane; i < cols / 2; i += 32) {
            f16x2 v = x2[i];
            const float a = lo_f32(v) - mean, b = hi_f32(v) - mean;
            sq += a * a + b * b;
        }
    } else {
        for (int i = lane; i < cols; i += 32) { const float a = f16_to_f32(xr[i]) - mean; sq += a * a; }
    }
    const float rstd = rsqrtf(warp_sum(sq) / (float)cols + eps);
    if (vec) {
        const f16x2* x2 = reinterpret_cast<const f16x2*>(xr);
        const f16x2* g2 = reinterpret_cast<const f16x2*>(gamma);
        const f16x2* b2 = reinterpret_cast<const f16x2*>(beta);
        f16x2* o2 = reinterpret_cast<f16x2*>(orow);
        for (int i = lane; i < cols / 2; i += 32) {
            const f16x2 v = x2[i], g = g2[i], bb = b2[i];
            o2[i] = pack_f16x2((lo_f32(v) - mean) * rstd * lo_f32(g) + lo_f32(bb),
                               (hi_f32(v) - mean) * rstd * hi_f32(g) + hi_f32(bb));
        }
    } else {
        for (int i = lane; i < cols; i += 32)
            orow[i] = f32_to_f16((f16_to_f32(xr[i]) - mean) * rstd * f16_to_f32(gamma[i]) + f16_to_f32(beta[i]));
    }
}

extern "C" __global__ void __launch_bounds__(256)
    softmax_rows_f16(f16* __restrict__ out, const f16* __restrict__ x, int rows, int cols) {
    const int row = blockIdx.x * 8 + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (row >= rows) return;
    const f16* xr = x + (size_t)row * cols;
    f16* orow = out + (size_t)row * cols;
    float mx = -LITHE_INF;
    for (int i = lane; i < cols; i += 32) mx = fmaxf(mx, f16_to_f32(xr[i]));
    mx = warp_max(mx);
    float sum = 0.0f;
    for (int i = lane; i < cols; i += 32) sum += __expf(f16_to_f32(xr[i]) - mx);
    const float inv = 1.0f / warp_sum(sum);
    for (int i = lane; i < cols; i += 32) orow[i] = f32_to_f16(__expf(f16_to_f32(xr[i]) - mx) * inv);
}

extern "C" __global__ void __launch_bounds__(256) gelu_f16(f16* out, const f16* x, long long n) {
    const long long pairs = n / 2;
    const long long stride = (long long)gridDim.x * blockDim.x;
    const f16x2* x2 = reinterpret_cast<const f16x2*>(x);
    f16x2* o2 = reinterpret_cast<f16x2*>(out);
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < pairs; i += stride) {
        const f16x2 v = x2[i];
        o2[i] = pack_f16x2(gelu_erf(lo_f32(v)), gelu_erf(hi_f32(v)));
    }
    if ((n & 1) && blockIdx.x == 0 && threadIdx.x == 0) out[n - 1] = f32_to_f16(gelu_erf(f16_to_f32(x[n - 1])));
}

extern "C" __global__ void __launch_bounds__(256) add_f16(f16* out, const f16* a, const f16* b, long long n) {
    const long long pairs = n / 2;
    const long long stride = (long long)gridDim.x * blockDim.x;
    const f16x2* a2 = reinterpret_cast<const f16x2*>(a);
    const f16x2* b2 = reinterpret_cast<const f16x2*>(b);
    f16x2* o2 = reinterpret_cast<f16x2*>(out);
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < pairs; i += stride) {
        const f16x2 u = a2[i], v = b2[i];
        o2[i] = pack_f16x2(lo_f32(u) + lo_f32(v), hi_f32(u) + hi_f32(v));
    }
    if ((n & 1) && blockIdx.x == 0 && threadIdx.x == 0)
        out[n - 1] = f32_to_f16(f16_to_f32(a[n - 1]) + f16_to_f32(b[n - 1]));
}

extern "C" __global__ void __launch_bounds__(256)
    embedding_gather_f16(f16* __restrict__ out, const f16* __restrict__ table,
                         const unsigned* __restrict__ ids, int n_ids, int dim, int vocab) {
    const int i = blockIdx.x;
    if (i >= n_ids) return;
    const unsigned id = ids[i];
    f16* orow = out + (size_t)i * dim;
    if (id >= (unsigned)vocab) {
        for (int c = threadIdx.x; c < dim; c += blockDim.x) orow[c] = 0;
        return;
    }
    const f16* trow = table + (size_t)id * dim;
    if ((dim & 1) == 0) {
        const f16x2* t2 = reinterpret_cast<const f16x2*>(trow);
        f16x2* o2 = reinterpret_cast<f16x2*>(orow);
        for (int c = threadIdx.x; c < dim / 2; c += blockDim.x) o2[c] = t2[c];
    } else {
        for (int c = threadIdx.x; c < dim; c += blockDim.x) orow[c] = trow[c];
    }
}
