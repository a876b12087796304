// attention.cu — fused multi-head attention forward (FlashAttention-2 style).
//
// O = softmax(Q K^T * scale + mask) V per (batch, head), never materialising the L x L scores.
// Layout: Q, K, V, O are fp16, contiguous [B, H, L, D] (row (b,h,i) starts at ((b*H+h)*L+i)*D).
// Mask: `lens` (int32 [B], may be NULL): keys j >= lens[b] are excluded (key padding mask);
// NULL means every key is valid. Query rows are all computed (padded queries attend to the
// valid keys). A batch with lens[b] == 0 gets O = 0.
// scale = 1/sqrt(D) is passed pre-multiplied by log2(e) as `scale_log2` (exp2 softmax).
// Precision: fp16 inputs, fp32 scores / softmax statistics / output accumulators
// (mma.sync m16n8k16 .f32); P is rounded to fp16 for the PV product; O rounded once at the
// store. O is overwritten.
// Tiling: a block of NW warps owns 16*NW*MR query rows (16*MR per warp); it loops over BC-key
// tiles of K and V, double-buffered in shared memory with cp.async, XOR-swizzled for
// conflict-free ldmatrix. Online softmax (running max m, running sum l) per row.
// Grid (ceil(L/(16*NW*MR)), B*H), block 32*NW, dynamic smem (16*NW*MR*D + 2*2*BC*D) * 2 bytes.
// Instantiations (kernel names; see cuda/NOTES.md for the measured ones):
//   attn_fwd_f16_d{32,64,128}        NW = 4, MR = 1 (64-row blocks, 16 rows per warp), Q
//                                     fragments held in registers for the whole key loop (v1,
//                                     the fallback path);
//   attn_fwd_f16_d{32,64,128}_m2     NW = 4 warps x MR = 2 row groups (32 query rows per warp,
//                                     128-row blocks, FA2's d128 tiling), Q re-read from smem per
//                                     key tile: each K/V fragment loaded with ldmatrix feeds MR
//                                     mma; d64_m2k128: 128-key tiles (FA2's d64 tiling);
//   attn_fwd_f16_d{32,128}_m2p, d64_m2pk128: the same with the ldmatrix loads
//                                     software-pipelined one mma step ahead (PF = true).
// Key tiles are BC = 64 keys unless named otherwise.


// Offset (halfs) of 16-byte chunk ch of row `row` in a [rows][D] tile (CH = D/8 chunks/row).
template <int D>
__device__ __forceinline__ int swz_d(int row, int ch) {
    if (D == 32) return row * D + ((ch ^ ((row >> 1) & 3)) << 3);
    return row * D + (((ch & ~7) | ((ch & 7) ^ (row & 7))) << 3);
}

template <int D, int ROWS, int THREADS>
__device__ __forceinline__ void load_rows(f16* tile, const f16* __restrict__ g, int row0, int L,
                                          int tid) {
    constexpr int CH = D / 8;
#pragma unroll
    for (int c = tid; c < ROWS * CH; c += THREADS) {
        const int r = c / CH, ch = c % CH;
        const bool p = row0 + r < L;
        const f16* src = p ? g + (size_t)(row0 + r) * D + ch * 8 : g;
        cp_async16(smem_u32(tile + swz_d<D>(r, ch)), src, p ? 16 : 0);
    }
}

template <int D, int NW, int MR, bool QREG, int ATT_BC, bool PF = false>
__device__ __forceinline__ void attn_fwd(const f16* __restrict__ Q, const f16* __restrict__ K,
                                         const f16* __restrict__ V, f16* __restrict__ O,
                                         const int* __restrict__ lens, int H, int L,
                                         float scale_log2) {
    constexpr int ATT_BR = 16 * NW * MR;  // query rows per block; each warp owns 16*MR rows
    constexpr int ATT_THREADS = 32 * NW;
    extern __shared__ __align__(128) unsigned char smem_raw[];
    f16* Qs = reinterpret_cast<f16*>(smem_raw);
    f16* Ks = Qs + ATT_BR * D;        // 2 stages
    f16* Vs = Ks + 2 * ATT_BC * D;    // 2 stages

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int bh = blockIdx.y;
    const int b = bh / H;
    const int q0 = blockIdx.x * ATT_BR;
    const size_t base = (size_t)bh * L * D;
    const f16* Qg = Q + base;
    const f16* Kg = K + base;
    const f16* Vg = V + base;

    int kv_len = L;
    if (lens != nullptr) kv_len = min(max(lens[b], 0), L);
    const int n_tiles = (kv_len + ATT_BC - 1) / ATT_BC;

    load_rows<D, ATT_BR, ATT_THREADS>(Qs, Qg, q0, L, tid);
    if (n_tiles > 0) {
        load_rows<D, ATT_BC, ATT_THREADS>(Ks, Kg, 0, L, tid);
        load_rows<D, ATT_BC, ATT_THREADS>(Vs, Vg, 0, L, tid);
    }
    cp_async_commit();

    float o[MR][D / 8][4];
#pragma unroll
    for (int mr = 0; mr < MR; mr++)
#pragma unroll
        for (int i = 0; i < D / 8; i++)
#pragma unroll
            for (int k = 0; k < 4; k++) o[mr][i][k] = 0.0f;
    float m_run[MR][2], l_run[MR][2];
#pragma unroll
    for (int mr = 0; mr < MR; mr++)
#pragma unroll
        for (int h = 0; h < 2; h++) {
            m_run[mr][h] = -LITHE_INF;
            l_run[mr][h] = 0.0f;
        }
    unsigned qf[QREG ? MR : 1][QREG ? D / 16 : 1][4];

    for (int j = 0; j < n_tiles; j++) {
        const int st = j & 1;
        if (j + 1 < n_tiles) {
            load_rows<D, ATT_BC, ATT_THREADS>(Ks + (st ^ 1) * ATT_BC * D, Kg, (j + 1) * ATT_BC, L, tid);
            load_rows<D, ATT_BC, ATT_THREADS>(Vs + (st ^ 1) * ATT_BC * D, Vg, (j + 1) * ATT_BC, L, tid);
            cp_async_commit();
            cp_async_wait<1>();
        } else {
            cp_async_wait<0>();
        }
        __syncthreads();
        if (QREG && j == 0) {
#pragma unroll
            for (int mr = 0; mr < MR; mr++)
#pragma unroll
                for (int ks = 0; ks < D / 16; ks++) {
                    const int row = (warp * MR + mr) * 16 + (lane & 15);
                    ldmatrix_x4(qf[QREG ? mr : 0][QREG ? ks : 0],
                                smem_u32(Qs + swz_d<D>(row, ks * 2 + (lane >> 4))));
                }
        }
        const f16* ks_t = Ks + st * ATT_BC * D;
        const f16* vs_t = Vs + st * ATT_BC * D;

        // S = Q K^T : 16*MR x BC per warp
        float s[MR][ATT_BC / 8][4];
#pragma unroll
        for (int mr = 0; mr < MR; mr++)
#pragma unroll
            for (int i = 0; i < ATT_BC / 8; i++)
#pragma unroll
                for (int k = 0; k < 4; k++) s[mr][i][k] = 0.0f;
        const int q = lane >> 3;
        if (PF && !QREG) {
            // Software-pipelined: the Q and K fragments of step t+1 are loaded (ldmatrix)
            // before the mma of step t, as FA2's gemm does, so ldmatrix latency overlaps mma.
            constexpr int NJ = ATT_BC / 16, NT = (D / 16) * NJ;
            unsigned qa[2][MR][4], kb[2][4];
            auto load_q = [&](unsigned (&dst)[MR][4], int ks) {
#pragma unroll
                for (int mr = 0; mr < MR; mr++) {
                    const int row = (warp * MR + mr) * 16 + (lane & 15);
                    ldmatrix_x4(dst[mr], smem_u32(Qs + swz_d<D>(row, ks * 2 + (lane >> 4))));
                }
            };
            auto load_k = [&](unsigned (&dst)[4], int ks, int nj) {
                const int key = nj * 16 + (q >> 1) * 8 + (lane & 7);
                ldmatrix_x4(dst, smem_u32(ks_t + swz_d<D>(key, ks * 2 + (q & 1))));
            };
            load_q(qa[0], 0);
            load_k(kb[0], 0, 0);
#pragma unroll
            for (int t = 0; t < NT; t++) {
                const int ks = t / NJ, nj = t % NJ;
                if (t + 1 < NT) {
                    if ((t + 1) % NJ == 0) load_q(qa[((t + 1) / NJ) & 1], (t + 1) / NJ);
                    load_k(kb[(t + 1) & 1], (t + 1) / NJ, (t + 1) % NJ);
                }
#pragma unroll
                for (int mr = 0; mr < MR; mr++) {
                    mma_16816(s[mr][2 * nj], qa[ks & 1][mr], kb[t & 1][0], kb[t & 1][1]);
                    mma_16816(s[mr][2 * nj + 1], qa[ks & 1][mr], kb[t & 1][2], kb[t & 1][3]);
                }
            }
        } else
#pragma unroll
        for (int ks = 0; ks < D / 16; ks++) {
            unsigned qa[QREG ? 1 : MR][4];
            if (!QREG) {
#pragma unroll
                for (int mr = 0; mr < MR; mr++) {
                    const int row = (warp * MR + mr) * 16 + (lane & 15);
                    ldmatrix_x4(qa[QREG ? 0 : mr], smem_u32(Qs + swz_d<D>(row, ks * 2 + (lane >> 4))));
                }
            }
#pragma unroll
            for (int nj = 0; nj < ATT_BC / 16; nj++) {
                unsigned r[4];
                const int key = nj * 16 + (q >> 1) * 8 + (lane & 7);
                ldmatrix_x4(r, smem_u32(ks_t + swz_d<D>(key, ks * 2 + (q & 1))));
#pragma unroll
                for (int mr = 0; mr < MR; mr++) {
                    const unsigned(&a)[4] =
                        QREG ? qf[QREG ? mr : 0][QREG ? ks : 0] : qa[QREG ? 0 : mr];
                    mma_16816(s[mr][2 * nj], a, r[0], r[1]);
                    mma_16816(s[mr][2 * nj + 1], a, r[2], r[3]);
                }
            }
        }

        // mask keys beyond kv_len (only the last tile can have them)
        if ((j + 1) * ATT_BC > kv_len) {
#pragma unroll
            for (int nt = 0; nt < ATT_BC / 8; nt++) {
                const int key = j * ATT_BC + nt * 8 + (lane & 3) * 2;
#pragma unroll
                for (int mr = 0; mr < MR; mr++) {
                    if (key >= kv_len) { s[mr][nt][0] = -LITHE_INF; s[mr][nt][2] = -LITHE_INF; }
                    if (key + 1 >= kv_len) { s[mr][nt][1] = -LITHE_INF; s[mr][nt][3] = -LITHE_INF; }
                }
            }
        }

        // online softmax; per 16-row group mr: rows g (h=0) and g+8 (h=1)
#pragma unroll
        for (int mr = 0; mr < MR; mr++)
#pragma unroll
        for (int h = 0; h < 2; h++) {
            float mx = -LITHE_INF;
#pragma unroll
            for (int nt = 0; nt < ATT_BC / 8; nt++) mx = fmaxf(mx, fmaxf(s[mr][nt][2 * h], s[mr][nt][2 * h + 1]));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
            mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
            const float m_new = fmaxf(m_run[mr][h], mx * scale_log2);
            const float m_use = (m_new == -LITHE_INF) ? 0.0f : m_new;
            const float alpha = exp2f(m_run[mr][h] - m_use);
            float sum = 0.0f;
#pragma unroll
            for (int nt = 0; nt < ATT_BC / 8; nt++) {
                const float p0 = exp2f(s[mr][nt][2 * h] * scale_log2 - m_use);
                const float p1 = exp2f(s[mr][nt][2 * h + 1] * scale_log2 - m_use);
                s[mr][nt][2 * h] = p0;
                s[mr][nt][2 * h + 1] = p1;
                sum += p0 + p1;
            }
            l_run[mr][h] = l_run[mr][h] * alpha + sum;
            m_run[mr][h] = m_new;
#pragma unroll
            for (int dt = 0; dt < D / 8; dt++) {
                o[mr][dt][2 * h] *= alpha;
                o[mr][dt][2 * h + 1] *= alpha;
            }
        }

        // O += P V
        if (PF) {
            constexpr int DN = D / 16, NT = (ATT_BC / 16) * DN;
            unsigned vb[2][4], pa[MR][4];
            auto load_v = [&](unsigned (&dst)[4], int kk, int dn) {
                const int key = kk * 16 + (q & 1) * 8 + (lane & 7);
                ldmatrix_x4_trans(dst, smem_u32(vs_t + swz_d<D>(key, dn * 2 + (q >> 1))));
            };
            load_v(vb[0], 0, 0);
#pragma unroll
            for (int t = 0; t < NT; t++) {
                const int kk = t / DN, dn = t % DN;
                if (dn == 0) {
#pragma unroll
                    for (int mr = 0; mr < MR; mr++) {
                        pa[mr][0] = pack_f16x2(s[mr][2 * kk][0], s[mr][2 * kk][1]);
                        pa[mr][1] = pack_f16x2(s[mr][2 * kk][2], s[mr][2 * kk][3]);
                        pa[mr][2] = pack_f16x2(s[mr][2 * kk + 1][0], s[mr][2 * kk + 1][1]);
                        pa[mr][3] = pack_f16x2(s[mr][2 * kk + 1][2], s[mr][2 * kk + 1][3]);
                    }
                }
                if (t + 1 < NT) load_v(vb[(t + 1) & 1], (t + 1) / DN, (t + 1) % DN);
#pragma unroll
                for (int mr = 0; mr < MR; mr++) {
                    mma_16816(o[mr][2 * dn], pa[mr], vb[t & 1][0], vb[t & 1][1]);
                    mma_16816(o[mr][2 * dn + 1], pa[mr], vb[t & 1][2], vb[t & 1][3]);
                }
            }
        } else
#pragma unroll
        for (int kk = 0; kk < ATT_BC / 16; kk++) {
            unsigned pa[MR][4];
#pragma unroll
            for (int mr = 0; mr < MR; mr++) {
                pa[mr][0] = pack_f16x2(s[mr][2 * kk][0], s[mr][2 * kk][1]);
                pa[mr][1] = pack_f16x2(s[mr][2 * kk][2], s[mr][2 * kk][3]);
                pa[mr][2] = pack_f16x2(s[mr][2 * kk + 1][0], s[mr][2 * kk + 1][1]);
                pa[mr][3] = pack_f16x2(s[mr][2 * kk + 1][2], s[mr][2 * kk + 1][3]);
            }
#pragma unroll
            for (int dn = 0; dn < D / 16; dn++) {
                unsigned r[4];
                const int key = kk * 16 + (q & 1) * 8 + (lane & 7);
                ldmatrix_x4_trans(r, smem_u32(vs_t + swz_d<D>(key, dn * 2 + (q >> 1))));
#pragma unroll
                for (int mr = 0; mr < MR; mr++) {
                    mma_16816(o[mr][2 * dn], pa[mr], r[0], r[1]);
                    mma_16816(o[mr][2 * dn + 1], pa[mr], r[2], r[3]);
                }
            }
        }
        __syncthreads();  // this stage is refilled by the next iteration's prefetch
    }
    cp_async_wait<0>();

#pragma unroll
    for (int mr = 0; mr < MR; mr++)
#pragma unroll
    for (int h = 0; h < 2; h++) {
        float l = l_run[mr][h];
        l += __shfl_xor_sync(0xffffffffu, l, 1);
        l += __shfl_xor_sync(0xffffffffu, l, 2);
        const float inv = l > 0.0f ? 1.0f / l : 0.0f;
        const int row = q0 + (warp * MR + mr) * 16 + (lane >> 2) + h * 8;
        if (row < L) {
            f16* orow = O + base + (size_t)row * D;
#pragma unroll
            for (int dt = 0; dt < D / 8; dt++) {
                const int col = dt * 8 + (lane & 3) * 2;
                *reinterpret_cast<f16x2*>(orow + col) =
                    pack_f16x2(o[mr][dt][2 * h] * inv, o[mr][dt][2 * h + 1] * inv);
            }
        }
    }
}

#define ATTN_ENTRY(D)                                                                          \
    extern "C" __global__ void __launch_bounds__(128) attn_fwd_f16_d##D(                       \
        const f16* __restrict__ Q, const f16* __restrict__ K, const f16* __restrict__ V,       \
        f16* __restrict__ O, const int* __restrict__ lens, int H, int L, float scale_log2) {    \
        attn_fwd<D, 4, 1, true, 64>(Q, K, V, O, lens, H, L, scale_log2);                       \
    }

ATTN_ENTRY(32)
ATTN_ENTRY(64)
ATTN_ENTRY(128)

// 128-row blocks of 4 warps x 32 query rows (FA2's d128 forward on sm80/sm90: M tile 128,
// 4 warps, each K/V fragment read from smem feeds two mma per warp). Q in smem.
// PF = 1: fragment loads software-pipelined one mma step ahead.
#define ATTN_ENTRY_M2(D, BC, PF, SUFFIX)                                                       \
    extern "C" __global__ void __launch_bounds__(128, 2) attn_fwd_f16_d##D##_m2##SUFFIX(       \
        const f16* __restrict__ Q, const f16* __restrict__ K, const f16* __restrict__ V,       \
        f16* __restrict__ O, const int* __restrict__ lens, int H, int L, float scale_log2) {    \
        attn_fwd<D, 4, 2, false, BC, PF>(Q, K, V, O, lens, H, L, scale_log2);                  \
    }

ATTN_ENTRY_M2(32, 64, false, )
ATTN_ENTRY_M2(64, 64, false, )
ATTN_ENTRY_M2(128, 64, false, )
ATTN_ENTRY_M2(64, 128, false, k128)
ATTN_ENTRY_M2(32, 64, true, p)
ATTN_ENTRY_M2(64, 128, true, pk128)
ATTN_ENTRY_M2(128, 64, true, p)
