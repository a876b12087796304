// transform_attention.cu — MiniViT's fused depthwise-transform attention forward.
//
// For sample b, query i, key j and heads g, h (H heads of width D):
//   S_g[i,j] = scale * Q_g[i] . K_g[j]                              (fp16 in, fp32 mma)
//   S'_h     = sum_g pre[h][g] S_g + pre_bias[h]                    (pre-softmax head mix)
//   G[i,j]   = keep[b,j] + (1 - keep[b,j]) [i == j]  (= 1 if i == j else keep[b,j]; 1 with no policy)
//   E_h      = exp(S'_h - max_j S'_h) G
//   P_h      = (E_h + eps/N) / (sum_j E_h + eps)   eps = 1e-6 with a policy, 0 without (softmax)
//   P'_h     = sum_g post[h][g] P_g + post_bias[h] G                (post-softmax head mix)
//   O_h[i]   = sum_j P'_h[i,j] V_h[j]                                (P' rounded to fp16, fp32 mma)
// The max in E is over every key j (kept or not), as in DynamicViT's policy softmax.
// Layout: Q, K, V, O fp16 [B, N, H*D] (head h = columns h*D..(h+1)*D of a token's row);
// keep f32 [B, N] in [0, 1], or NULL for no policy. O is overwritten; no N x N map is written.
// Scores are carried in the log2 domain: `scale_log2` = scale * log2(e) and the host passes
// pre_bias already multiplied by log2(e), so exp(S' - max) = exp2(S'2 - max2).
// The mixes travel by value in the kernel parameter space (`TAttnMix`): with H a template
// constant, every mix coefficient is a constant-bank operand of an FFMA (no loads).
//
// One block = TA_BR = 32 query rows (2 mma row groups of 16) of one sample, all H heads, 8 warps.
// Two passes over TA_BC = 16-key tiles:
//   pass 1: S for all heads (mma) -> smem; each thread mixes S' for its query row and 2 key
//           columns and keeps a running (max, sum) per head; the 8 threads of a row merge them;
//   pass 2: S again -> smem; mix, normalise, post-mix -> P' (fp16, smem) for all heads; then
//           O_h += P'_h V_h (mma), accumulated in registers (warp w owns the (row group, head,
//           16 output columns) tiles w, w + 8, ...).
// Pipeline: K of the next tile is loaded (cp.async) while this tile is mixed and multiplied;
// V of this tile while its scores are computed and mixed.
// Grid (ceil(N / 32), B), block 256 threads, dynamic smem
//   (32 + 2 * 16) * (H*D + 8) * 2 + H * 32 * 24 * (4 + 2) bytes
// (Q rows, K and V tiles padded by 16 bytes a row so ldmatrix is conflict-free; fp32 S and fp16
// P' tiles of row stride 24). H = 12, D = 64: 154624 bytes.
// Instantiations: tattn_fwd_f16_d{32,64}_h{1,2,3,4,6,8,12}.

#define TA_MAX_HEADS 12
#define TA_BR 32                     // query rows per block
#define TA_BC 16                     // keys per tile
#define TA_NW 8                      // warps per block
#define TA_THREADS (32 * TA_NW)
#define TA_RG (TA_BR / 16)           // mma row groups per block
#define TA_TPR (TA_THREADS / TA_BR)  // threads per query row in the mixing phase
#define TA_CPT (TA_BC / TA_TPR)      // key columns per thread in the mixing phase
#define TA_SST (TA_BC + 8)           // row stride of the S (fp32) and P' (fp16) tiles

// The head mixes, row-major with row stride TA_MAX_HEADS: pre[h * 12 + g] = A[h, g].
struct TAttnMix {
    float pre[TA_MAX_HEADS * TA_MAX_HEADS];
    float pre_bias[TA_MAX_HEADS];  // times log2(e)
    float post[TA_MAX_HEADS * TA_MAX_HEADS];
    float post_bias[TA_MAX_HEADS];
};

struct __align__(8) ta_float2 {
    float x, y;
};

// Copies ROWS token rows (row0.., zero-filled past N) of one sample's [N][HD] matrix into a
// [ROWS][HD + 8] smem tile with 16-byte cp.async (consecutive threads, consecutive chunks).
template <int HD, int ROWS>
__device__ __forceinline__ void ta_load_rows(f16* tile, const f16* __restrict__ g, int row0, int N,
                                             int tid) {
    constexpr int CH = HD / 8;
    for (int c = tid; c < ROWS * CH; c += TA_THREADS) {
        const int r = c / CH, ch = c - r * CH;
        const bool p = row0 + r < N;
        const f16* src = p ? g + (size_t)(row0 + r) * HD + ch * 8 : g;
        cp_async16(smem_u32(tile + r * (HD + 8) + ch * 8), src, p ? 16 : 0);
    }
}

// Ss[g][r][c] = scale_log2 * Q_g[r] . K_g[c] for the block's TA_BR rows and the tile's TA_BC
// keys, every head; warp w computes the (row group, head) tiles w, w + TA_NW, ...
template <int D, int H>
__device__ __forceinline__ void ta_scores(const f16* Qs, const f16* Ks, float* Ss, int warp,
                                          int lane, float scale_log2) {
    constexpr int QST = H * D + 8;
    const int q = lane >> 3;
    for (int u = warp; u < TA_RG * H; u += TA_NW) {
        const int rg = u / H, g = u % H;
        float s[2][4] = {};
#pragma unroll
        for (int ks = 0; ks < D / 16; ks++) {
            unsigned a[4], kb[4];
            const int col = g * D + ks * 16;
            ldmatrix_x4(a, smem_u32(Qs + (rg * 16 + (lane & 15)) * QST + col + (lane >> 4) * 8));
            ldmatrix_x4(kb, smem_u32(Ks + ((q >> 1) * 8 + (lane & 7)) * QST + col + (q & 1) * 8));
            mma_16816(s[0], a, kb[0], kb[1]);  // keys 0..7
            mma_16816(s[1], a, kb[2], kb[3]);  // keys 8..15
        }
        float* out = Ss + (g * TA_BR + rg * 16 + (lane >> 2)) * TA_SST + 2 * (lane & 3);
#pragma unroll
        for (int nt = 0; nt < 2; nt++) {
            *reinterpret_cast<ta_float2*>(out + nt * 8) =
                ta_float2{s[nt][0] * scale_log2, s[nt][1] * scale_log2};
            *reinterpret_cast<ta_float2*>(out + 8 * TA_SST + nt * 8) =
                ta_float2{s[nt][2] * scale_log2, s[nt][3] * scale_log2};
        }
    }
}

// s[h] = sum_g pre[h][g] Ss[g][r][c] + pre_bias[h] (log2 domain).
template <int H>
__device__ __forceinline__ void ta_premix(const float* Ss, int r, int c, const TAttnMix& mix,
                                          float (&s)[H]) {
    float sg[H];
#pragma unroll
    for (int g = 0; g < H; g++) sg[g] = Ss[(g * TA_BR + r) * TA_SST + c];
#pragma unroll
    for (int h = 0; h < H; h++) {
        float acc = mix.pre_bias[h];
#pragma unroll
        for (int g = 0; g < H; g++) acc = fmaf(mix.pre[h * TA_MAX_HEADS + g], sg[g], acc);
        s[h] = acc;
    }
}

// O tiles += P'_h V_h over the tile's TA_BC keys: warp w owns the (row group, head, 16 output
// columns) tiles w + TA_NW * t, t < PVW.
template <int D, int H, int PVW>
__device__ __forceinline__ void ta_pv(const f16* Ps, const f16* Vs, float (&o)[PVW][2][4],
                                      int warp, int lane) {
    constexpr int QST = H * D + 8, DN = D / 16;
    const int q = lane >> 3;
#pragma unroll
    for (int t = 0; t < PVW; t++) {
        const int u = warp + t * TA_NW;
        if (u < TA_RG * H * DN) {
            const int rg = u / (H * DN), h = (u / DN) % H, dn = u % DN;
            unsigned a[4], vb[4];
            ldmatrix_x4(a, smem_u32(Ps + (h * TA_BR + rg * 16 + (lane & 15)) * TA_SST +
                                    (lane >> 4) * 8));
            ldmatrix_x4_trans(vb, smem_u32(Vs + ((q & 1) * 8 + (lane & 7)) * QST + h * D +
                                           dn * 16 + (q >> 1) * 8));
            mma_16816(o[t][0], a, vb[0], vb[1]);  // output columns dn*16 + 0..7
            mma_16816(o[t][1], a, vb[2], vb[3]);  // output columns dn*16 + 8..15
        }
    }
}

template <int D, int H>
__device__ __forceinline__ void tattn_fwd(const f16* __restrict__ Q, const f16* __restrict__ K,
                                          const f16* __restrict__ V, f16* __restrict__ O,
                                          const float* __restrict__ keep, int N, float scale_log2,
                                          const TAttnMix& mix) {
    constexpr int HD = H * D, QST = HD + 8, DN = D / 16;
    constexpr int PVW = (TA_RG * H * DN + TA_NW - 1) / TA_NW;  // O tiles per warp
    extern __shared__ __align__(128) unsigned char smem_raw[];
    f16* Qs = reinterpret_cast<f16*>(smem_raw);                // [TA_BR][QST]
    f16* Ks = Qs + TA_BR * QST;                                // [TA_BC][QST]
    f16* Vs = Ks + TA_BC * QST;                                // [TA_BC][QST]
    float* Ss = reinterpret_cast<float*>(Vs + TA_BC * QST);    // [H][TA_BR][TA_SST]
    f16* Ps = reinterpret_cast<f16*>(Ss + H * TA_BR * TA_SST);  // [H][TA_BR][TA_SST]

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int b = blockIdx.y, q0 = blockIdx.x * TA_BR;
    const size_t base = (size_t)b * N * HD;
    const f16* Qg = Q + base;
    const f16* Kg = K + base;
    const f16* Vg = V + base;
    const float* keep_b = keep != nullptr ? keep + (size_t)b * N : nullptr;
    const float eps = keep != nullptr ? 1e-6f : 0.0f;
    const float eps_n = eps / (float)N;
    const int n_tiles = (N + TA_BC - 1) / TA_BC;
    // Mixing phase: this thread owns query row r and key columns cl + TA_TPR * k of each tile.
    const int r = tid / TA_TPR, cl = tid % TA_TPR;
    const int i = q0 + r;

    ta_load_rows<HD, TA_BR>(Qs, Qg, q0, N, tid);
    ta_load_rows<HD, TA_BC>(Ks, Kg, 0, N, tid);
    cp_async_commit();

    // Pass 1: per head, running max m (log2 domain) and sum l of exp2(S'2 - m) G over the keys.
    float m[H], l[H];
#pragma unroll
    for (int h = 0; h < H; h++) {
        m[h] = -LITHE_INF;
        l[h] = 0.0f;
    }
    for (int t = 0; t < n_tiles; t++) {
        cp_async_wait<0>();
        __syncthreads();  // K tile t landed; the previous tile's mixing is done with Ss
        ta_scores<D, H>(Qs, Ks, Ss, warp, lane, scale_log2);
        __syncthreads();  // Ss complete, Ks free: load the next tile (pass 2's first after the last)
        ta_load_rows<HD, TA_BC>(Ks, Kg, (t + 1 < n_tiles ? t + 1 : 0) * TA_BC, N, tid);
        cp_async_commit();
#pragma unroll
        for (int k = 0; k < TA_CPT; k++) {
            const int c = cl + k * TA_TPR, j = t * TA_BC + c;
            if (j >= N) continue;
            float s[H];
            ta_premix<H>(Ss, r, c, mix, s);
            const float g = keep_b != nullptr && i != j ? keep_b[j] : 1.0f;
#pragma unroll
            for (int h = 0; h < H; h++) {
                const float m_new = fmaxf(m[h], s[h]);
                l[h] = l[h] * exp2f(m[h] - m_new) + g * exp2f(s[h] - m_new);
                m[h] = m_new;
            }
        }
    }
    // Merge the TA_TPR partial (m, l) of each row (consecutive lanes); then inv = 1 / (l + eps).
    float inv[H];
#pragma unroll
    for (int h = 0; h < H; h++) {
#pragma unroll
        for (int off = 1; off < TA_TPR; off <<= 1) {
            const float mo = __shfl_xor_sync(0xffffffffu, m[h], off);
            const float lo = __shfl_xor_sync(0xffffffffu, l[h], off);
            const float m_new = fmaxf(m[h], mo);
            const float m_use = m_new == -LITHE_INF ? 0.0f : m_new;  // both sides without keys
            l[h] = l[h] * exp2f(m[h] - m_use) + lo * exp2f(mo - m_use);
            m[h] = m_new;
        }
        inv[h] = 1.0f / (l[h] + eps);
    }

    // Pass 2: P' per tile into Ps, then O += P' V.
    float o[PVW][2][4];
#pragma unroll
    for (int t = 0; t < PVW; t++)
#pragma unroll
        for (int nt = 0; nt < 2; nt++)
#pragma unroll
            for (int e = 0; e < 4; e++) o[t][nt][e] = 0.0f;
    for (int t = 0; t < n_tiles; t++) {
        cp_async_wait<0>();
        __syncthreads();  // K tile t landed; the previous tile's P'V is done with Vs and Ps
        ta_load_rows<HD, TA_BC>(Vs, Vg, t * TA_BC, N, tid);
        cp_async_commit();
        ta_scores<D, H>(Qs, Ks, Ss, warp, lane, scale_log2);
        __syncthreads();  // Ss complete, Ks free
        if (t + 1 < n_tiles) ta_load_rows<HD, TA_BC>(Ks, Kg, (t + 1) * TA_BC, N, tid);
        cp_async_commit();  // possibly empty: keeps the group count of the wait below fixed
#pragma unroll
        for (int k = 0; k < TA_CPT; k++) {
            const int c = cl + k * TA_TPR, j = t * TA_BC + c;
            f16* pcol = Ps + r * TA_SST + c;  // head h at pcol[h * TA_BR * TA_SST]
            if (j >= N) {
#pragma unroll
                for (int h = 0; h < H; h++) pcol[h * TA_BR * TA_SST] = 0;
                continue;
            }
            float s[H];
            ta_premix<H>(Ss, r, c, mix, s);
            const float g = keep_b != nullptr && i != j ? keep_b[j] : 1.0f;
            float p[H];
#pragma unroll
            for (int h = 0; h < H; h++) p[h] = inv[h] * fmaf(exp2f(s[h] - m[h]), g, eps_n);
#pragma unroll
            for (int h = 0; h < H; h++) {
                float acc = mix.post_bias[h] * g;
#pragma unroll
                for (int gg = 0; gg < H; gg++)
                    acc = fmaf(mix.post[h * TA_MAX_HEADS + gg], p[gg], acc);
                pcol[h * TA_BR * TA_SST] = f32_to_f16(acc);
            }
        }
        cp_async_wait<1>();  // V tile t landed (the next K tile may still be in flight)
        __syncthreads();     // Ps complete
        ta_pv<D, H, PVW>(Ps, Vs, o, warp, lane);
    }
    cp_async_wait<0>();

#pragma unroll
    for (int t = 0; t < PVW; t++) {
        const int u = warp + t * TA_NW;
        if (u >= TA_RG * H * DN) continue;
        const int rg = u / (H * DN), h = (u / DN) % H, dn = u % DN;
#pragma unroll
        for (int half = 0; half < 2; half++) {
            const int row = q0 + rg * 16 + (lane >> 2) + half * 8;
            if (row >= N) continue;
            f16* orow = O + base + (size_t)row * HD + h * D + dn * 16 + 2 * (lane & 3);
#pragma unroll
            for (int nt = 0; nt < 2; nt++)
                *reinterpret_cast<f16x2*>(orow + nt * 8) =
                    pack_f16x2(o[t][nt][2 * half], o[t][nt][2 * half + 1]);
        }
    }
}

#define TATTN_ENTRY(D, H)                                                                     \
    extern "C" __global__ void __launch_bounds__(TA_THREADS, 1) tattn_fwd_f16_d##D##_h##H(    \
        const f16* __restrict__ Q, const f16* __restrict__ K, const f16* __restrict__ V,      \
        f16* __restrict__ O, const float* __restrict__ keep, int N, float scale_log2,         \
        const TAttnMix mix) {                                                                 \
        tattn_fwd<D, H>(Q, K, V, O, keep, N, scale_log2, mix);                                \
    }
// The head counts of the usual ViTs (DeiT-Ti 3, DeiT-S 6, DeiT-B 12; Swin 3..12 per stage);
// each instantiation costs NVRTC time, so the set is kept small.
#define TATTN_ENTRIES(D)                                                                      \
    TATTN_ENTRY(D, 1)                                                                         \
    TATTN_ENTRY(D, 2)                                                                         \
    TATTN_ENTRY(D, 3)                                                                         \
    TATTN_ENTRY(D, 4)                                                                         \
    TATTN_ENTRY(D, 6)                                                                         \
    TATTN_ENTRY(D, 8)                                                                         \
    TATTN_ENTRY(D, 12)

TATTN_ENTRIES(32)
TATTN_ENTRIES(64)
