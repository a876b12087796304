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

// ---- encoder glue (CudaEncoder) ----
//   bert_embed_ln_f16  out[rows, H] = LN(word[ids[r]] + pos[r % T] + type[types ? types[r] : 0])
//                   with gamma/beta, fp32 sums; ids >= vocab / types >= n_types read row 0 (the
//                   host launcher rejects them). One warp per row, block 256, grid ceil(rows/8).
//   qkv_split_heads_f16 qkv[B*T, 3H] (columns: Q | K | V, head-major inside each) ->
//                   q, k, v [B, nh, T, d]. One thread per element of qkv, grid-stride.
//   merge_heads_f16 o[B, nh, T, d] -> out[B*T, H]. One thread per element, grid-stride.
//   add_layernorm_f16 out[rows, cols] = LN(a + r) (the post-LN residual), a and r fp16; out may
//                   not alias a or r. One warp per row, as layernorm_f16.

__device__ __forceinline__ float embed_sum(const f16* word, const f16* pos, const f16* typ,
                                           size_t wo, size_t po, size_t to, int i) {
    return f16_to_f32(word[wo + i]) + f16_to_f32(pos[po + i]) + f16_to_f32(typ[to + i]);
}

extern "C" __global__ void __launch_bounds__(256)
    bert_embed_ln_f16(f16* __restrict__ out, const f16* __restrict__ word, const f16* __restrict__ pos,
                      const f16* __restrict__ typ, const unsigned* __restrict__ ids,
                      const unsigned* __restrict__ types, const f16* __restrict__ gamma,
                      const f16* __restrict__ beta, int rows, int T, int H, int vocab, int n_types,
                      float eps) {
    const int row = blockIdx.x * 8 + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (row >= rows) return;
    unsigned id = ids[row];
    if (id >= (unsigned)vocab) id = 0;
    unsigned tt = types ? types[row] : 0u;
    if (tt >= (unsigned)n_types) tt = 0;
    const size_t wo = (size_t)id * H, po = (size_t)(row % T) * H, to = (size_t)tt * H;
    float sum = 0.0f;
    for (int i = lane; i < H; i += 32) sum += embed_sum(word, pos, typ, wo, po, to, i);
    const float mean = warp_sum(sum) / (float)H;
    float sq = 0.0f;
    for (int i = lane; i < H; i += 32) {
        const float a = embed_sum(word, pos, typ, wo, po, to, i) - mean;
        sq += a * a;
    }
    const float rstd = rsqrtf(warp_sum(sq) / (float)H + eps);
    f16* orow = out + (size_t)row * H;
    for (int i = lane; i < H; i += 32)
        orow[i] = f32_to_f16((embed_sum(word, pos, typ, wo, po, to, i) - mean) * rstd *
                                 f16_to_f32(gamma[i]) + f16_to_f32(beta[i]));
}

extern "C" __global__ void __launch_bounds__(256)
    qkv_split_heads_f16(f16* __restrict__ q, f16* __restrict__ k, f16* __restrict__ v,
                        const f16* __restrict__ qkv, int B, int T, int nh, int d) {
    const int H = nh * d;
    const long long n = (long long)B * T * 3 * H;
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const long long row = i / (3 * H);
        const int c = (int)(i - row * 3 * H);
        const int which = c / H, cc = c - which * H;
        const int hh = cc / d, j = cc - hh * d;
        const long long b = row / T, t = row - b * T;
        f16* dst = which == 0 ? q : (which == 1 ? k : v);
        dst[((b * nh + hh) * T + t) * d + j] = qkv[i];
    }
}

extern "C" __global__ void __launch_bounds__(256)
    merge_heads_f16(f16* __restrict__ out, const f16* __restrict__ o, int B, int T, int nh, int d) {
    const int H = nh * d;
    const long long n = (long long)B * T * H;
    const long long stride = (long long)gridDim.x * blockDim.x;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += stride) {
        const long long row = i / H;
        const int c = (int)(i - row * H);
        const int hh = c / d, j = c - hh * d;
        const long long b = row / T, t = row - b * T;
        out[i] = o[((b * nh + hh) * T + t) * d + j];
    }
}

extern "C" __global__ void __launch_bounds__(256)
    add_layernorm_f16(f16* __restrict__ out, const f16* __restrict__ a, const f16* __restrict__ r,
                      const f16* __restrict__ gamma, const f16* __restrict__ beta, int rows, int cols,
                      float eps) {
    const int row = blockIdx.x * 8 + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (row >= rows) return;
    const f16* ar = a + (size_t)row * cols;
    const f16* rr = r + (size_t)row * cols;
    f16* orow = out + (size_t)row * cols;
    float sum = 0.0f;
    for (int i = lane; i < cols; i += 32) sum += f16_to_f32(ar[i]) + f16_to_f32(rr[i]);
    const float mean = warp_sum(sum) / (float)cols;
    float sq = 0.0f;
    for (int i = lane; i < cols; i += 32) {
        const float x = f16_to_f32(ar[i]) + f16_to_f32(rr[i]) - mean;
        sq += x * x;
    }
    const float rstd = rsqrtf(warp_sum(sq) / (float)cols + eps);
    for (int i = lane; i < cols; i += 32)
        orow[i] = f32_to_f16((f16_to_f32(ar[i]) + f16_to_f32(rr[i]) - mean) * rstd *
                                 f16_to_f32(gamma[i]) + f16_to_f32(beta[i]));
}
