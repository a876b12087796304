// gemm_f16_sm90.cu — fp16 GEMM on Hopper (sm_90a) tensor cores with wgmma, NT layout.
//
// C[M,N] = epi(A[M,K] * B[N,K]^T + bias[N]); A row-major [M,K], B row-major [N,K] (the Linear
// weight layout), C row-major [M,N], bias fp16 [N]. Epilogues as in gemm_f16.cu
// (0 none, 1 +bias, 2 +bias+GELU erf, 3 +bias+GELU tanh).
// Precision: fp16 inputs, fp32 accumulation (wgmma .f32), fp32 epilogue, one rounding at the
// store; C is overwritten.
// Tiling: block 128x256x64, 2 warpgroups (256 threads), each owning 64x256 of C in 128 fp32
// registers per thread via wgmma.mma_async m64n256k16 (both operands from shared memory).
// Tiles are loaded by all threads with cp.async (zero-filled at the M/N/K edges) into a
// 4-stage ring laid out in the 128-byte swizzle that the wgmma descriptors name
// (16-byte chunk c of row r stored at chunk c ^ (r & 7); 1024-byte aligned 8-row atoms).
// Preconditions: compute capability 9.0 (compiled for compute_90a), K % 8 == 0, 16-byte
// aligned base pointers. Grid (ceil(N/256), ceil(M/128)), block 256, dynamic smem
// SM90_SMEM_BYTES (+1 KiB alignment slack).

#define SM90_BM 128
#define SM90_BN 256
#define SM90_BK 64
#define SM90_STAGES 4
#define SM90_STAGE_BYTES ((SM90_BM + SM90_BN) * SM90_BK * 2)
#define SM90_SMEM_BYTES (SM90_STAGES * SM90_STAGE_BYTES + 1024)

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)

__device__ __forceinline__ u64 sm90_desc(unsigned saddr) {
    u64 d = 0;
    d |= (u64)((saddr & 0x3FFFF) >> 4);      // start address
    d |= (u64)1 << 16;                       // leading byte offset (unused for K-major swizzle)
    d |= (u64)(1024 >> 4) << 32;             // stride byte offset: 8 rows x 128 B
    d |= (u64)1 << 62;                       // 128-byte swizzle
    return d;
}

// B tile stored MN-major (NN layout): 64-column chunks of [64 K rows][128 B] in the 128-byte
// swizzle, one chunk per 8 KiB. Canonical MN-major SW128 layout ((8,8,m),(8,k)) :
// ((1,8,LBO),(64,SBO)) elements: LBO = 8192 B between 64-wide N chunks, SBO = 1024 B between
// groups of 8 K rows.
__device__ __forceinline__ u64 sm90_desc_mn(unsigned saddr) {
    u64 d = 0;
    d |= (u64)((saddr & 0x3FFFF) >> 4);
    d |= (u64)(8192 >> 4) << 16;
    d |= (u64)(1024 >> 4) << 32;
    d |= (u64)1 << 62;
    return d;
}

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void wgmma_wait() { asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory"); }

// TB = 1: B is MN-major in shared memory (the NN layout), else K-major.
template <int TB = 0>
__device__ __forceinline__ void wgmma_m64n256k16(float (&d)[128], u64 da, u64 db) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %130, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n256k16.f32.f16.f16 "
        "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, %96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, %112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127}, %128, %129, p, 1, 1, 0, %131;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
          "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
          "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
          "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
          "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
          "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
          "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
          "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]),
          "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]),
          "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]),
          "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]),
          "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]),
          "+f"(d[96]), "+f"(d[97]), "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]),
          "+f"(d[104]), "+f"(d[105]), "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]), "+f"(d[110]), "+f"(d[111]),
          "+f"(d[112]), "+f"(d[113]), "+f"(d[114]), "+f"(d[115]), "+f"(d[116]), "+f"(d[117]), "+f"(d[118]), "+f"(d[119]),
          "+f"(d[120]), "+f"(d[121]), "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), "+f"(d[125]), "+f"(d[126]), "+f"(d[127])
        : "l"(da), "l"(db), "r"(1), "n"(TB));
}

template <int EPI>
__device__ __forceinline__ float sm90_epi(float v, const f16* __restrict__ bias, int col) {
    if (EPI >= 1) v += f16_to_f32(bias[col]);
    if (EPI == 2) v = gelu_erf(v);
    if (EPI == 3) v = gelu_tanh(v);
    return v;
}

template <int EPI>
__device__ __forceinline__ void gemm_sm90(const f16* __restrict__ A, const f16* __restrict__ B,
                                          const f16* __restrict__ bias, f16* __restrict__ C,
                                          int M, int N, int K) {
    extern __shared__ __align__(1024) unsigned char smem_raw[];
    // 1024-byte align the ring (swizzle atoms must be 1024-byte aligned)
    const unsigned base_s = (smem_u32(smem_raw) + 1023u) & ~1023u;
    unsigned char* base = smem_raw + (base_s - smem_u32(smem_raw));

    const int tid = threadIdx.x;
    const int wg = tid >> 7;          // warpgroup 0..1: rows 64*wg
    const int warp_in_wg = (tid >> 5) & 3;
    const int lane = tid & 31;
    // Grouped rasterisation: consecutive blocks walk 8 M-tiles down before moving right, so
    // the A and B tiles a wave of blocks shares stay in L2.
    int m0, n0;
    {
        const int pid = blockIdx.y * gridDim.x + blockIdx.x;
        const int per_group = 8 * gridDim.x;
        const int first_m = (pid / per_group) * 8;
        const int gsize = min((int)gridDim.y - first_m, 8);
        const int r = pid % per_group;
        m0 = (first_m + r % gsize) * SM90_BM;
        n0 = (r / gsize) * SM90_BN;
    }
    const int KT = (K + SM90_BK - 1) / SM90_BK;

    float d[128];
#pragma unroll
    for (int i = 0; i < 128; i++) d[i] = 0.0f;

    auto load_tile = [&](int stage, int kt) {
        const int k0 = kt * SM90_BK;
        unsigned char* as = base + stage * SM90_STAGE_BYTES;
        unsigned char* bs = as + SM90_BM * SM90_BK * 2;
#pragma unroll
        for (int i = 0; i < 4; i++) {  // A: 128 rows x 8 chunks = 1024 chunks
            const int c = tid + i * 256;
            const int row = c >> 3, ch = c & 7;
            const int gm = m0 + row, gk = k0 + ch * 8;
            const bool p = gm < M && gk < K;
            const f16* src = p ? A + (size_t)gm * K + gk : A;
            cp_async16(smem_u32(as + row * 128 + ((ch ^ (row & 7)) << 4)), src, p ? 16 : 0);
        }
#pragma unroll
        for (int i = 0; i < 8; i++) {  // B: 256 rows x 8 chunks
            const int c = tid + i * 256;
            const int row = c >> 3, ch = c & 7;
            const int gn = n0 + row, gk = k0 + ch * 8;
            const bool p = gn < N && gk < K;
            const f16* src = p ? B + (size_t)gn * K + gk : B;
            cp_async16(smem_u32(bs + row * 128 + ((ch ^ (row & 7)) << 4)), src, p ? 16 : 0);
        }
    };

    // Prefetch distance STAGES-2: the stage refilled at iteration j held tile j-2, whose
    // wgmmas every warpgroup has waited for (wait_group 1 at the end of iteration j-1,
    // then the barrier at the top of iteration j).
#pragma unroll
    for (int s = 0; s < SM90_STAGES - 2; s++) {
        if (s < KT) load_tile(s, s);
        cp_async_commit();
    }
    for (int kt = 0; kt < KT; kt++) {
        cp_async_wait<SM90_STAGES - 3>();
        asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
        __syncthreads();
        {
            const int nk = kt + SM90_STAGES - 2;
            if (nk < KT) load_tile(nk % SM90_STAGES, nk);
            cp_async_commit();
        }
        const unsigned as = base_s + (kt % SM90_STAGES) * SM90_STAGE_BYTES + wg * 64 * 128;
        const unsigned bs = base_s + (kt % SM90_STAGES) * SM90_STAGE_BYTES + SM90_BM * SM90_BK * 2;
        wgmma_fence();
#pragma unroll
        for (int ks = 0; ks < SM90_BK / 16; ks++) {
            wgmma_m64n256k16(d, sm90_desc(as + ks * 32), sm90_desc(bs + ks * 32));
        }
        wgmma_commit();
        wgmma_wait<1>();
    }
    wgmma_wait<0>();
    cp_async_wait<0>();

    const bool n_even = (N & 1) == 0;
    const int rbase = m0 + wg * 64 + warp_in_wg * 16 + (lane >> 2);
#pragma unroll
    for (int j = 0; j < 32; j++) {
        const int col = n0 + j * 8 + (lane & 3) * 2;
#pragma unroll
        for (int h = 0; h < 2; h++) {
            const int row = rbase + h * 8;
            if (row >= M || col >= N) continue;
            const float v0 = sm90_epi<EPI>(d[4 * j + 2 * h], bias, col);
            if (col + 1 < N && n_even) {
                const float v1 = sm90_epi<EPI>(d[4 * j + 2 * h + 1], bias, col + 1);
                *reinterpret_cast<f16x2*>(C + (size_t)row * N + col) = pack_f16x2(v0, v1);
            } else {
                C[(size_t)row * N + col] = f32_to_f16(v0);
                if (col + 1 < N)
                    C[(size_t)row * N + col + 1] = f32_to_f16(sm90_epi<EPI>(d[4 * j + 2 * h + 1], bias, col + 1));
            }
        }
    }
}

#define SM90_ENTRY(name, EPI)                                                                   \
    extern "C" __global__ void __launch_bounds__(256, 1)                                        \
        name(const f16* __restrict__ A, const f16* __restrict__ B, const f16* __restrict__ bias, \
             f16* __restrict__ C, int M, int N, int K) {                                         \
        gemm_sm90<EPI>(A, B, bias, C, M, N, K);                                                 \
    }

#else  // not sm_90a: empty entries so the module still loads and names resolve

#define SM90_ENTRY(name, EPI)                                                                   \
    extern "C" __global__ void name(const f16* A, const f16* B, const f16* bias, f16* C, int M, \
                                    int N, int K) {}

#endif

SM90_ENTRY(gemm_f16_sm90_nt_none, 0)
SM90_ENTRY(gemm_f16_sm90_nt_bias, 1)
SM90_ENTRY(gemm_f16_sm90_nt_bias_gelu_erf, 2)
SM90_ENTRY(gemm_f16_sm90_nt_bias_gelu_tanh, 3)

// ---------------------------------------------------------------------------------------------
// v4: warp-specialised producer/consumer kernel (gemm_f16_sm90ws_nt_*).
// Same tile (128x256x64) and the same 128-byte swizzled ring as above, but:
//  * 3 warpgroups (384 threads): warpgroup 0 is the producer (setmaxnreg.dec to 40 registers),
//    one of its threads issues two TMA loads per stage (cp.async.bulk.tensor.2d, tensor maps
//    built on the host with cuTensorMapEncodeTiled and passed as __grid_constant__ params);
//    warpgroups 1-2 are consumers (setmaxnreg.inc to 232), each owning 64x256 of C.
//  * 4 stages guarded by mbarriers: full[s] (1 arrival + 48 KiB transaction bytes, completed
//    by the TMA unit) and empty[s] (256 arrivals, one per consumer thread after wgmma.wait
//    has retired the wgmmas that read stage s). The producer runs up to 3 tiles ahead.
//  * M/N/K edges: the TMA unit zero-fills the parts of a box outside the tensor (and still
//    counts the full box in the transaction bytes), so any M, N >= 1 and K % 8 == 0 work.
//  * Epilogue: bias / GELU in fp32 registers, fp16 staged through the (then idle) ring with a
//    528-byte row pitch (conflict-free fragment stores), then written out as 16-byte
//    coalesced stores (a warp writes 512 contiguous bytes of one row); scalar stores on the
//    N edge or when N % 8 != 0.
// NN (B row-major [K, N]): B is loaded as four 64-column boxes per stage (MN-major, 128-byte
// swizzle) and read by wgmma with the transpose-B bit set (descriptor sm90_desc_mn); needs
// N % 8 == 0 too.
// Preconditions: compute capability 9.0, K % 8 == 0 (row pitch a multiple of 16 bytes, as the
// tensor map needs), 16-byte aligned A and B. Grid (ceil(N/256), ceil(M/128)), block 384,
// dynamic smem SM90WS_SMEM_BYTES.

#define SM90WS_STAGES 4
#define SM90WS_A_BYTES (SM90_BM * SM90_BK * 2)
#define SM90WS_STAGE_BYTES ((SM90_BM + SM90_BN) * SM90_BK * 2)
#define SM90WS_SMEM_BYTES (SM90WS_STAGES * SM90WS_STAGE_BYTES + 1024 + 128)
#define SM90WS_STG_PITCH 528

struct __align__(64) TmaDesc {
    u64 opaque[16];
};
struct __align__(16) U32x4 {
    unsigned x, y, z, w;
};

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)

__device__ __forceinline__ void mbar_init(unsigned bar, unsigned count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_expect_tx(unsigned bar, unsigned bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes)
                 : "memory");
}
__device__ __forceinline__ void mbar_arrive(unsigned bar) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
__device__ __forceinline__ void mbar_wait(unsigned bar, unsigned parity) {
    asm volatile(
        "{\n.reg .pred P1;\nLAB_WAIT:\n"
        "mbarrier.try_wait.parity.shared::cta.b64 P1, [%0], %1;\n"
        "@P1 bra DONE;\nbra LAB_WAIT;\nDONE:\n}\n" ::"r"(bar),
        "r"(parity)
        : "memory");
}
__device__ __forceinline__ void tma_load_2d(unsigned dst, const TmaDesc* map, unsigned bar, int x, int y) {
    asm volatile(
        "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%3, %4}], [%2];\n" ::"r"(dst),
        "l"(reinterpret_cast<u64>(map)), "r"(bar), "r"(x), "r"(y)
        : "memory");
}

template <int EPI, bool NN>
__device__ __forceinline__ void gemm_sm90ws(const TmaDesc* tmA, const TmaDesc* tmB,
                                            const f16* __restrict__ bias, f16* __restrict__ C,
                                            int M, int N, int K) {
    extern __shared__ __align__(1024) unsigned char smem_raw[];
    const unsigned raw_s = smem_u32(smem_raw);
    const unsigned base_s = (raw_s + 1023u) & ~1023u;
    unsigned char* base = smem_raw + (base_s - raw_s);
    const unsigned bar_s = base_s + SM90WS_STAGES * SM90WS_STAGE_BYTES;  // full[s], then empty[s]
#define FULL(s) (bar_s + 8u * (unsigned)(s))
#define EMPTY(s) (bar_s + 8u * (unsigned)(SM90WS_STAGES + (s)))

    const int tid = threadIdx.x;
    const int wg = tid >> 7;
    int m0, n0;
    {
        const int pid = blockIdx.y * gridDim.x + blockIdx.x;
        const int per_group = 8 * gridDim.x;
        const int first_m = (pid / per_group) * 8;
        const int gsize = min((int)gridDim.y - first_m, 8);
        const int r = pid % per_group;
        m0 = (first_m + r % gsize) * SM90_BM;
        n0 = (r / gsize) * SM90_BN;
    }
    const int KT = (K + SM90_BK - 1) / SM90_BK;

    if (tid == 0) {
#pragma unroll
        for (int s = 0; s < SM90WS_STAGES; s++) {
            mbar_init(FULL(s), 1);
            mbar_init(EMPTY(s), 256);
        }
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
    __syncthreads();

    if (wg == 0) {
        // Producer warpgroup: give registers away; one thread drives the TMA unit.
        asm volatile("setmaxnreg.dec.sync.aligned.u32 40;\n" ::: "memory");
        if (tid == 0) {
            asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<u64>(tmA)) : "memory");
            asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<u64>(tmB)) : "memory");
            for (int kt = 0; kt < KT; kt++) {
                const int s = kt % SM90WS_STAGES;
                if (kt >= SM90WS_STAGES) mbar_wait(EMPTY(s), ((kt / SM90WS_STAGES) - 1) & 1);
                mbar_expect_tx(FULL(s), SM90WS_STAGE_BYTES);
                const unsigned as = base_s + s * SM90WS_STAGE_BYTES;
                tma_load_2d(as, tmA, FULL(s), kt * SM90_BK, m0);
                if (NN) {
#pragma unroll
                    for (int j = 0; j < 4; j++)
                        tma_load_2d(as + SM90WS_A_BYTES + j * 8192, tmB, FULL(s), n0 + 64 * j, kt * SM90_BK);
                } else {
                    tma_load_2d(as + SM90WS_A_BYTES, tmB, FULL(s), kt * SM90_BK, n0);
                }
            }
        }
    } else {
        asm volatile("setmaxnreg.inc.sync.aligned.u32 232;\n" ::: "memory");
        const int cw = wg - 1;  // consumer 0..1: rows 64*cw of the tile
        float d[128];
#pragma unroll
        for (int i = 0; i < 128; i++) d[i] = 0.0f;
        for (int kt = 0; kt < KT; kt++) {
            const int s = kt % SM90WS_STAGES;
            mbar_wait(FULL(s), (kt / SM90WS_STAGES) & 1);
            const unsigned as = base_s + s * SM90WS_STAGE_BYTES + cw * 64 * 128;
            const unsigned bs = base_s + s * SM90WS_STAGE_BYTES + SM90WS_A_BYTES;
            wgmma_fence();
#pragma unroll
            for (int ks = 0; ks < SM90_BK / 16; ks++) {
                if (NN)
                    wgmma_m64n256k16<1>(d, sm90_desc(as + ks * 32), sm90_desc_mn(bs + ks * 2048));
                else
                    wgmma_m64n256k16<0>(d, sm90_desc(as + ks * 32), sm90_desc(bs + ks * 32));
            }
            wgmma_commit();
            wgmma_wait<1>();
            // The wgmmas of tile kt-1 have retired: its stage may be refilled.
            if (kt > 0) mbar_arrive(EMPTY((kt - 1) % SM90WS_STAGES));
        }
        wgmma_wait<0>();

        // Both consumers are done with the ring (the producer issued exactly KT loads, all
        // consumed): reuse it to stage C.
        asm volatile("bar.sync 1, 256;\n" ::: "memory");
        unsigned char* stg = base + cw * (64 * SM90WS_STG_PITCH);
        const int warp = (tid >> 5) & 3, lane = tid & 31;
        const int r0 = warp * 16 + (lane >> 2);
#pragma unroll
        for (int j = 0; j < 32; j++) {
            const int cl = j * 8 + (lane & 3) * 2;
            float b0 = 0.0f, b1 = 0.0f;
            if (EPI >= 1) {
                const int col = n0 + cl;
                if (col < N) b0 = f16_to_f32(bias[col]);
                if (col + 1 < N) b1 = f16_to_f32(bias[col + 1]);
            }
#pragma unroll
            for (int h = 0; h < 2; h++) {
                float v0 = d[4 * j + 2 * h] + b0, v1 = d[4 * j + 2 * h + 1] + b1;
                if (EPI == 2) { v0 = gelu_erf(v0); v1 = gelu_erf(v1); }
                if (EPI == 3) { v0 = gelu_tanh(v0); v1 = gelu_tanh(v1); }
                *reinterpret_cast<f16x2*>(stg + (r0 + 8 * h) * SM90WS_STG_PITCH + cl * 2) = pack_f16x2(v0, v1);
            }
        }
        if (cw == 0) asm volatile("bar.sync 2, 128;\n" ::: "memory");
        else asm volatile("bar.sync 3, 128;\n" ::: "memory");
        const bool n8 = (N & 7) == 0;
        const int t = tid & 127;
#pragma unroll 4
        for (int i = 0; i < 16; i++) {
            const int c = t + i * 128;
            const int row = c >> 5, ch = c & 31;
            const int grow = m0 + cw * 64 + row, gcol = n0 + ch * 8;
            if (grow >= M || gcol >= N) continue;
            const U32x4 v = *reinterpret_cast<const U32x4*>(stg + row * SM90WS_STG_PITCH + ch * 16);
            f16* dst = C + (size_t)grow * N + gcol;
            if (n8 && gcol + 8 <= N) {
                *reinterpret_cast<U32x4*>(dst) = v;
            } else {
                const unsigned w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
                for (int e = 0; e < 8; e++)
                    if (gcol + e < N) dst[e] = (f16)((w[e >> 1] >> (16 * (e & 1))) & 0xffffu);
            }
        }
    }
#undef FULL
#undef EMPTY
}

#define SM90WS_ENTRY(name, EPI, NN)                                                              \
    extern "C" __global__ void __launch_bounds__(384, 1)                                         \
        name(const __grid_constant__ TmaDesc tmA, const __grid_constant__ TmaDesc tmB,           \
             const f16* __restrict__ A, const f16* __restrict__ B, const f16* __restrict__ bias, \
             f16* __restrict__ C, int M, int N, int K) {                                          \
        gemm_sm90ws<EPI, NN>(&tmA, &tmB, bias, C, M, N, K);                                          \
    }

#else

#define SM90WS_ENTRY(name, EPI, NN)                                                               \
    extern "C" __global__ void name(const __grid_constant__ TmaDesc tmA,                          \
                                    const __grid_constant__ TmaDesc tmB, const f16* A, const f16* B, \
                                    const f16* bias, f16* C, int M, int N, int K) {}

#endif

SM90WS_ENTRY(gemm_f16_sm90ws_nt_none, 0, false)
SM90WS_ENTRY(gemm_f16_sm90ws_nt_bias, 1, false)
SM90WS_ENTRY(gemm_f16_sm90ws_nt_bias_gelu_erf, 2, false)
SM90WS_ENTRY(gemm_f16_sm90ws_nt_bias_gelu_tanh, 3, false)
SM90WS_ENTRY(gemm_f16_sm90ws_nn_none, 0, true)
SM90WS_ENTRY(gemm_f16_sm90ws_nn_bias, 1, true)
SM90WS_ENTRY(gemm_f16_sm90ws_nn_bias_gelu_erf, 2, true)
SM90WS_ENTRY(gemm_f16_sm90ws_nn_bias_gelu_tanh, 3, true)
