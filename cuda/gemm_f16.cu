// gemm_f16.cu — fp16 GEMM on tensor cores with fused epilogues.
//
// Computes C[M,N] = epi(A[M,K] * op(B) + bias[N]) with
//   A    row-major [M, K] (leading dimension K),
//   B    either "NT": row-major [N, K] (the Linear weight layout; C = A * B^T), or
//               "NN": row-major [K, N] (C = A * B),
//   C    row-major [M, N]; bias fp16 [N] (ignored by EPI_NONE).
// Epilogues (EPI): 0 none, 1 +bias, 2 +bias then GELU (erf), 3 +bias then GELU (tanh).
// Precision: fp16 inputs, fp32 accumulation (mma.sync m16n8k16 .f32), epilogue in fp32,
// one rounding to fp16 at the store. C is overwritten (`=`), never read.
//
// Fast path `gemm_f16_{nt,nn}_*`: block tile 128x128x32, 8 warps (2x4, warp tile 64x32),
// 4-stage cp.async pipeline in dynamic shared memory (64 KiB), XOR-swizzled tiles so ldmatrix
// reads are bank-conflict free, predicated (zero-filled) loads for the M/N/K edges.
// Preconditions of the fast path: K % 8 == 0 (NT) or K % 8 == 0 and N % 8 == 0 (NN), and
// 16-byte aligned base pointers. Grid (ceil(N/128), ceil(M/128)), block 256,
// dynamic smem GEMM_SMEM_BYTES.
// Fallback `gemm_f16_simple`: any shape/alignment, 64x64 tiles of fp32 FMA, block (16,16),
// grid (ceil(N/64), ceil(M/64)); correct but slow.

#define GEMM_BM 128
#define GEMM_BN 128
#define GEMM_BK 32
#define GEMM_STAGES 4
#define GEMM_THREADS 256
// (BM*BK + BN*BK) * 2 bytes * STAGES
#define GEMM_SMEM_BYTES ((GEMM_BM * GEMM_BK + GEMM_BN * GEMM_BK) * 2 * GEMM_STAGES)

// Offset (in halfs) of 16-byte chunk `ch` (0..3) of row `row` in a [rows][32] tile.
// chunk ^ ((row >> 1) & 3) puts the 8 rows one ldmatrix reads into 8 distinct bank groups.
__device__ __forceinline__ int swz_k32(int row, int ch) { return row * 32 + ((ch ^ ((row >> 1) & 3)) << 3); }
// Offset (in halfs) of chunk `ch` (0..15) of row `row` in a [rows][128] tile.
__device__ __forceinline__ int swz_n128(int row, int ch) { return row * 128 + ((ch ^ (row & 7)) << 3); }

template <int EPI>
__device__ __forceinline__ float epilogue(float v, const f16* __restrict__ bias, int col) {
    if (EPI >= 1) v += f16_to_f32(bias[col]);
    if (EPI == 2) v = gelu_erf(v);
    if (EPI == 3) v = gelu_tanh(v);
    return v;
}

template <bool B_KN, int EPI>
__device__ __forceinline__ void gemm_tc(const f16* __restrict__ A, const f16* __restrict__ B,
                                        const f16* __restrict__ bias, f16* __restrict__ C, int M,
                                        int N, int K) {
    extern __shared__ __align__(128) unsigned char smem_raw[];
    f16* As = reinterpret_cast<f16*>(smem_raw);
    f16* Bs = As + GEMM_STAGES * GEMM_BM * GEMM_BK;

    const int tid = threadIdx.x;
    const int warp = tid >> 5;
    const int lane = tid & 31;
    const int wm = warp >> 2;  // 0..1: 64-row slab
    const int wn = warp & 3;   // 0..3: 32-col slab
    const int m0 = blockIdx.y * GEMM_BM;
    const int n0 = blockIdx.x * GEMM_BN;
    const int KT = (K + GEMM_BK - 1) / GEMM_BK;

    float acc[4][4][4];
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++)
#pragma unroll
            for (int k = 0; k < 4; k++) acc[i][j][k] = 0.0f;

    auto load_tile = [&](int stage, int kt) {
        const int k0 = kt * GEMM_BK;
        f16* as = As + stage * GEMM_BM * GEMM_BK;
        f16* bs = Bs + stage * GEMM_BN * GEMM_BK;
#pragma unroll
        for (int i = 0; i < 2; i++) {
            const int c = tid + i * GEMM_THREADS;
            const int row = c >> 2, ch = c & 3;
            const int gm = m0 + row, gk = k0 + ch * 8;
            const bool p = gm < M && gk < K;
            const f16* src = p ? A + (size_t)gm * K + gk : A;
            cp_async16(smem_u32(as + swz_k32(row, ch)), src, p ? 16 : 0);
        }
        if (!B_KN) {
#pragma unroll
            for (int i = 0; i < 2; i++) {
                const int c = tid + i * GEMM_THREADS;
                const int row = c >> 2, ch = c & 3;
                const int gn = n0 + row, gk = k0 + ch * 8;
                const bool p = gn < N && gk < K;
                const f16* src = p ? B + (size_t)gn * K + gk : B;
                cp_async16(smem_u32(bs + swz_k32(row, ch)), src, p ? 16 : 0);
            }
        } else {
#pragma unroll
            for (int i = 0; i < 2; i++) {
                const int c = tid + i * GEMM_THREADS;
                const int row = c >> 4, ch = c & 15;  // row = k within tile
                const int gk = k0 + row, gn = n0 + ch * 8;
                const bool p = gk < K && gn < N;
                const f16* src = p ? B + (size_t)gk * N + gn : B;
                cp_async16(smem_u32(bs + swz_n128(row, ch)), src, p ? 16 : 0);
            }
        }
    };

#pragma unroll
    for (int s = 0; s < GEMM_STAGES - 1; s++) {
        if (s < KT) load_tile(s, s);
        cp_async_commit();
    }

    for (int kt = 0; kt < KT; kt++) {
        cp_async_wait<GEMM_STAGES - 2>();
        __syncthreads();  // tile kt visible; every warp is done with tile kt-1's stage
        {
            const int nk = kt + GEMM_STAGES - 1;
            if (nk < KT) load_tile(nk % GEMM_STAGES, nk);
            cp_async_commit();
        }
        const int stage = kt % GEMM_STAGES;
        const f16* as = As + stage * GEMM_BM * GEMM_BK;
        const f16* bs = Bs + stage * GEMM_BN * GEMM_BK;
#pragma unroll
        for (int ks = 0; ks < GEMM_BK / 16; ks++) {
            unsigned af[4][4];
            unsigned bf[4][2];
#pragma unroll
            for (int mi = 0; mi < 4; mi++) {
                const int row = wm * 64 + mi * 16 + (lane & 15);
                const int ch = ks * 2 + (lane >> 4);
                ldmatrix_x4(af[mi], smem_u32(as + swz_k32(row, ch)));
            }
#pragma unroll
            for (int nj = 0; nj < 2; nj++) {
                const int q = lane >> 3;  // which 8x8 matrix this lane addresses
                unsigned r[4];
                if (!B_KN) {
                    const int nrow = wn * 32 + nj * 16 + (q >> 1) * 8 + (lane & 7);
                    const int ch = ks * 2 + (q & 1);
                    ldmatrix_x4(r, smem_u32(bs + swz_k32(nrow, ch)));
                } else {
                    const int krow = ks * 16 + (q & 1) * 8 + (lane & 7);
                    const int ch = ((wn * 32 + nj * 16) >> 3) + (q >> 1);
                    ldmatrix_x4_trans(r, smem_u32(bs + swz_n128(krow, ch)));
                }
                bf[2 * nj][0] = r[0];
                bf[2 * nj][1] = r[1];
                bf[2 * nj + 1][0] = r[2];
                bf[2 * nj + 1][1] = r[3];
            }
#pragma unroll
            for (int mi = 0; mi < 4; mi++)
#pragma unroll
                for (int ni = 0; ni < 4; ni++) mma_16816(acc[mi][ni], af[mi], bf[ni][0], bf[ni][1]);
        }
    }
    cp_async_wait<0>();

    const bool n_even = (N & 1) == 0;
#pragma unroll
    for (int mi = 0; mi < 4; mi++) {
#pragma unroll
        for (int ni = 0; ni < 4; ni++) {
            const int row0 = m0 + wm * 64 + mi * 16 + (lane >> 2);
            const int col = n0 + wn * 32 + ni * 8 + (lane & 3) * 2;
#pragma unroll
            for (int h = 0; h < 2; h++) {
                const int row = row0 + h * 8;
                if (row >= M || col >= N) continue;
                float v0 = epilogue<EPI>(acc[mi][ni][2 * h], bias, col);
                if (col + 1 < N && n_even) {
                    float v1 = epilogue<EPI>(acc[mi][ni][2 * h + 1], bias, col + 1);
                    *reinterpret_cast<f16x2*>(C + (size_t)row * N + col) = pack_f16x2(v0, v1);
                } else {
                    C[(size_t)row * N + col] = f32_to_f16(v0);
                    if (col + 1 < N) {
                        float v1 = epilogue<EPI>(acc[mi][ni][2 * h + 1], bias, col + 1);
                        C[(size_t)row * N + col + 1] = f32_to_f16(v1);
                    }
                }
            }
        }
    }
}

#define GEMM_ENTRY(name, BKN, EPI)                                                              \
    extern "C" __global__ void __launch_bounds__(GEMM_THREADS)                                 \
        name(const f16* __restrict__ A, const f16* __restrict__ B, const f16* __restrict__ bias, \
             f16* __restrict__ C, int M, int N, int K) {                                        \
        gemm_tc<BKN, EPI>(A, B, bias, C, M, N, K);                                             \
    }

GEMM_ENTRY(gemm_f16_nt_none, false, 0)
GEMM_ENTRY(gemm_f16_nt_bias, false, 1)
GEMM_ENTRY(gemm_f16_nt_bias_gelu_erf, false, 2)
GEMM_ENTRY(gemm_f16_nt_bias_gelu_tanh, false, 3)
GEMM_ENTRY(gemm_f16_nn_none, true, 0)
GEMM_ENTRY(gemm_f16_nn_bias, true, 1)
GEMM_ENTRY(gemm_f16_nn_bias_gelu_erf, true, 2)
GEMM_ENTRY(gemm_f16_nn_bias_gelu_tanh, true, 3)

// Slow, general fallback: any M, N, K, any alignment. b_kn: 0 = B is [N,K], 1 = B is [K,N].
// epi as above. Block (16,16) computes a 64x64 tile, 4x4 outputs per thread, fp32 FMA.
extern "C" __global__ void __launch_bounds__(256)
    gemm_f16_simple(const f16* __restrict__ A, const f16* __restrict__ B,
                    const f16* __restrict__ bias, f16* __restrict__ C, int M, int N, int K,
                    int b_kn, int epi) {
    __shared__ float As[16][64 + 1];  // [k][m]
    __shared__ float Bs[16][64 + 1];  // [k][n]
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int tid = ty * 16 + tx;
    const int m0 = blockIdx.y * 64, n0 = blockIdx.x * 64;
    float acc[4][4];
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) acc[i][j] = 0.0f;
    for (int k0 = 0; k0 < K; k0 += 16) {
        for (int e = tid; e < 64 * 16; e += 256) {
            const int r = e >> 4, kk = e & 15;  // A: row r, col kk
            const int gm = m0 + r, gk = k0 + kk;
            As[kk][r] = (gm < M && gk < K) ? f16_to_f32(A[(size_t)gm * K + gk]) : 0.0f;
            const int gn = n0 + r;
            float bv = 0.0f;
            if (gn < N && gk < K) bv = f16_to_f32(b_kn ? B[(size_t)gk * N + gn] : B[(size_t)gn * K + gk]);
            Bs[kk][r] = bv;
        }
        __syncthreads();
        for (int kk = 0; kk < 16; kk++) {
            float a[4], b[4];
            for (int i = 0; i < 4; i++) a[i] = As[kk][ty + 16 * i];
            for (int j = 0; j < 4; j++) b[j] = Bs[kk][tx + 16 * j];
            for (int i = 0; i < 4; i++)
                for (int j = 0; j < 4; j++) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
        }
        __syncthreads();
    }
    for (int i = 0; i < 4; i++) {
        const int row = m0 + ty + 16 * i;
        if (row >= M) continue;
        for (int j = 0; j < 4; j++) {
            const int col = n0 + tx + 16 * j;
            if (col >= N) continue;
            float v = acc[i][j];
            if (epi >= 1) v += f16_to_f32(bias[col]);
            if (epi == 2) v = gelu_erf(v);
            if (epi == 3) v = gelu_tanh(v);
            C[(size_t)row * N + col] = f32_to_f16(v);
        }
    }
}
