// Flash-attention forward on Hopper's warpgroup tensor-core instructions (wgmma, sm_90a).
//
// Same contract and arithmetic as attn_fwd.cu (FA2 online softmax in the log2 domain, P rounded to bf16 before
// P V, fp32 statistics, natural-log lse out), different engine: one block per 128-query tile, two consumer
// warpgroups of 64 query rows and a producer. S = Q K^T is one wgmma chain of D/16 steps reading Q and K straight
// from swizzled shared memory (no ldmatrix: the mma.sync kernels were bound by it, cuda/NOTES.md runs 2-4); P stays
// in registers and O += P V reads V from shared memory as an MN-major operand.
//
// Built only for sm_90a (CMAKE_CUDA_ARCHITECTURES 90a); elsewhere the kernel body is empty and
// pc_attn_fwd_wg_usable() says no, so attn_fwd.cu keeps its mma.sync kernels.
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cuda.h>
#include <cudaTypedefs.h>

#include "wgmma.cuh"

#define WG_BN 128


#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
// One key tile's softmax step for the thread's two rows (r0, r1): scale to the log2 domain, mask where the tile
// crosses the causal/window/length boundary, update the running max/sum, leave P (fp32) in s and return the
// factors O must be rescaled by (alpha_r, per row).
template <int D, int BN>
__device__ __forceinline__ void wg_softmax_tile(float *s, float *alpha_r, float *m_r, float *l_r,
                                                const attn_params &p, int64_t k0, int64_t wq0, int64_t wq1,
                                                int64_t r0, int64_t r1, float sl2, int lane) {
  const bool need_mask = k0 + BN > p.Tk || k0 + BN - 1 > wq0 + p.q_off ||
                         (p.window > 0 && wq1 + p.q_off - k0 >= p.window);
  // raw scores: the scale is positive, so the row max can be taken before scaling and the scale folded into the
  // exponent's argument (one FFMA per element instead of a multiply and a subtraction; the tile is issue-bound)
  if (need_mask) {
#pragma unroll
    for (int n = 0; n < BN / 8; n++)
#pragma unroll
      for (int e = 0; e < 4; e++) {
        const int kj = (int)(k0 + n * 8 + (lane & 3) * 2 + (e & 1));
        if (!attn_visible32((int)(e < 2 ? r0 : r1), kj, INT_MAX, (int)p.Tk, (int)p.q_off, (int)p.window))
          s[n * 4 + e] = -INFINITY;
      }
  }
  // online softmax in the log2 domain: a row's values are spread over the 4 lanes of a quad
#pragma unroll
  for (int r = 0; r < 2; r++) {
    float mx = -INFINITY;
#pragma unroll
    for (int n = 0; n < BN / 8; n++) mx = fmaxf(mx, fmaxf(s[n * 4 + 2 * r], s[n * 4 + 2 * r + 1]));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
    const float m_new = fmaxf(m_r[r], mx * sl2);
    const float m_use = m_new == -INFINITY ? 0.0f : m_new;
    const float alpha = fast_exp2(m_r[r] - m_use);
    float sum = 0.0f;
#pragma unroll
    for (int n = 0; n < BN / 8; n++) {
      const float p0 = fast_exp2(fmaf(s[n * 4 + 2 * r], sl2, -m_use));
      const float p1 = fast_exp2(fmaf(s[n * 4 + 2 * r + 1], sl2, -m_use));
      s[n * 4 + 2 * r] = p0;
      s[n * 4 + 2 * r + 1] = p1;
      sum += p0 + p1;
    }
    l_r[r] = l_r[r] * alpha + sum;
    m_r[r] = m_new;
    alpha_r[r] = alpha;
  }
}

// P (bf16) as the register A operand of O += P V: key block kk = n8 blocks 2kk and 2kk+1
template <int BN>
__device__ __forceinline__ void wg_pack_p(const float *s, uint32_t (*a)[4]) {
#pragma unroll
  for (int kk = 0; kk < BN / 16; kk++) {
    a[kk][0] = pack_bf16(s[8 * kk + 0], s[8 * kk + 1]);
    a[kk][1] = pack_bf16(s[8 * kk + 2], s[8 * kk + 3]);
    a[kk][2] = pack_bf16(s[8 * kk + 4], s[8 * kk + 5]);
    a[kk][3] = pack_bf16(s[8 * kk + 6], s[8 * kk + 7]);
  }
}

// O *= alpha, per row (the thread's rows r0: accumulators 4d + 0, 1; r1: 4d + 2, 3)
template <int D>
__device__ __forceinline__ void wg_rescale(float *o, const float *alpha_r) {
#pragma unroll
  for (int d = 0; d < D / 8; d++) {
    o[d * 4 + 0] *= alpha_r[0];
    o[d * 4 + 1] *= alpha_r[0];
    o[d * 4 + 2] *= alpha_r[1];
    o[d * 4 + 3] *= alpha_r[1];
  }
}

// O / l to bf16 rows, lse = natural log of the row's sum of exponentials
template <int D>
__device__ __forceinline__ void wg_epilogue(const float *o, const float *m_r, const float *l_r, const attn_params &p,
                                            int64_t b, int64_t h, int64_t r0, int64_t r1, int lane) {
#pragma unroll
  for (int r = 0; r < 2; r++) {
    float l = l_r[r];
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    const float inv = l > 0.0f ? 1.0f / l : 0.0f;
    const int64_t row = r ? r1 : r0;
    if (row < p.Tq) {
      bf16 *go = p.out + b * p.q_bstride + row * p.q_rstride + h * D;
#pragma unroll
      for (int d = 0; d < D / 8; d++)
        *(uint32_t *)(go + d * 8 + (lane & 3) * 2) = pack_bf16(o[d * 4 + 2 * r] * inv, o[d * 4 + 2 * r + 1] * inv);
      if ((lane & 3) == 0)
        p.lse[(b * p.Hq + h) * p.Tq + row] = l > 0.0f ? (m_r[r] + log2f(l)) * ATTN_LN2 : INFINITY;
    }
  }
}
#endif

// ---- warp-specialised: TMA producer + consumer warpgroups on mbarriers ------------------------------------------
// A first version in which every thread loaded with cp.async and a block barrier closed each tile (run W1) kept
// both warpgroups in lock-step, so their softmax phases coincided and the tensor cores idled meanwhile: 235
// TFLOP/s, no better than mma.sync; it was removed after run W2. Here one producer warp streams
// K and V tiles with the TMA engine into a two-stage ring (full/empty mbarriers per stage); each consumer
// warpgroup waits only for the data it needs, so the two drift apart and one's wgmma chains overlap the other's
// softmax. TMA writes the same 128B-swizzled layout (box inner extent 64 elements = 128 bytes) and zero-fills
// rows past the tensor's end.
// warpgroup 0: producer (one thread issues); warpgroups 1..NC: consumers of 64 query rows each. NC = 2; NC = 3 at
// D = 64 (POSE_ATTN_FWD=wg3) was 1.5% faster in run W4 but spills at 160 registers since the FFMA softmax.
#define TMA_NS 2

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
// Inter-warpgroup ping-pong (FA3): the consumer groups take turns issuing their wgmma chains, in a fixed round
// robin on named barriers 1..NC (0 is __syncthreads'): group g waits on barrier 1+g until its predecessor has
// issued, issues, then lets its successor go. While one group's chains run, the others do softmax. Every group
// takes the same number of turns; the last group skips its final hand-over, which no one would wait for.
struct wg_turns {
  int g, nc, on;
  __device__ __forceinline__ void start() const { // the round starts with group 0
    if (on && g == nc - 1) asm volatile("bar.arrive %0, %1;\n" ::"r"(1), "r"(256) : "memory");
  }
  __device__ __forceinline__ void begin() const {
    if (on) asm volatile("bar.sync %0, %1;\n" ::"r"(1 + g), "r"(256) : "memory");
  }
  __device__ __forceinline__ void end(bool last) const {
    if (on && !(last && g == nc - 1)) asm volatile("bar.arrive %0, %1;\n" ::"r"(1 + (g + 1) % nc), "r"(256) : "memory");
  }
};
#endif

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
// S = Q K^T for one key tile (K at k_addr), issued as one wgmma group
template <int D>
__device__ __forceinline__ void issue_qk(float *sacc, uint32_t q_base, uint32_t k_addr) {
  wg_fence();
#pragma unroll
  for (int ks = 0; ks < D / 16; ks++) {
    const uint64_t dq = wg_desc(q_base + (ks >> 2) * (64 * 128) + (ks & 3) * 32, 16, 1024);
    const uint64_t dk = wg_desc(k_addr + (ks >> 2) * (WG_BN * 128) + (ks & 3) * 32, 16, 1024);
    wgmma_m64n128_ss<0>(sacc, dq, dk, ks > 0);
  }
  wg_commit();
}
// O += P V for one key tile (V at v_addr), one wgmma group
template <int D>
__device__ __forceinline__ void issue_pv(float *o, uint32_t (*a)[4], uint32_t v_addr) {
  wg_fence();
#pragma unroll
  for (int kk = 0; kk < WG_BN / 16; kk++) {
    const uint64_t dv = wg_desc(v_addr + kk * 2048, WG_BN * 128, 1024);
    if constexpr (D == 128) wgmma_m64n128_rs<1>(o, a[kk], dv, 1);
    else wgmma_m64n64_rs<1>(o, a[kk], dv, 1);
  }
  wg_commit();
}
// Key tile j >= 1. On entry nothing is in flight; P_{j-1} is in `a` and alpha_{j-1} (the rescale O owes for
// tile j - 1's new maxima) in alpha. Order (FlashAttention-3's intra-warpgroup overlap): issue S_j; rescale O and
// issue P_{j-1} V_{j-1} while S_j runs; wait for S_j only (wgmma groups retire in issue order) and run the softmax
// of tile j while P V runs; then retire P V and pack P_j. The A operand (P) is rewritten only when no wgmma is in
// flight: ptxas serialises wgmma pipelines whose register inputs are redefined mid-flight (C7513).
template <int D>
__device__ __forceinline__ void tma_step(int j, float *sacc, float *o, uint32_t (*a)[4], float *alpha, float *m_r,
                                         float *l_r, const attn_params &p, int64_t kt_lo, int64_t wq0, int64_t wq1,
                                         int64_t r0, int64_t r1, float sl2, int lane, uint32_t q_base, uint32_t k_base,
                                         uint32_t v_base, uint32_t bkf, uint32_t bvf, uint32_t bke, uint32_t bve,
                                         const wg_turns &tn) {
  constexpr int BN = WG_BN, KB = BN * D * 2, NS = TMA_NS, NSA = BN / 2, NO = D / 2;
  const int s = j % NS, sp = (j - 1) % NS;
  mbar_wait(bkf + 8 * s, (j / NS) & 1);
  tn.begin();
  issue_qk<D>(sacc, q_base, k_base + s * KB);
  wg_rescale<D>(o, alpha);
  mbar_wait(bvf + 8 * sp, ((j - 1) / NS) & 1);
  issue_pv<D>(o, a, v_base + sp * KB);
  tn.end(false);
  wg_wait<1>(); // S_j
  wg_acc_fence<NSA>(sacc);
  mbar_arrive(bke + 8 * s);
  wg_softmax_tile<D, BN>(sacc, alpha, m_r, l_r, p, (kt_lo + j) * BN, wq0, wq1, r0, r1, sl2, lane);
  wg_wait<0>(); // P_{j-1} V_{j-1}
  wg_acc_fence<NO>(o);
  mbar_arrive(bve + 8 * sp);
  wg_pack_p<BN>(sacc, a);
}
#endif

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
// Consumer warpgroup wg (0 or 1) of k_attn_fwd_tma: rows q0 + 64 wg .. + 63, warp w of the group.
template <int D>
__device__ __forceinline__ void tma_consumer(const attn_params &p, unsigned char *sQ, unsigned char *sK,
                                             unsigned char *sV, uint32_t bq, uint32_t bkf, uint32_t bvf,
                                             uint32_t bke, uint32_t bve, int64_t q0, int64_t kt_lo, int ntiles,
                                             int64_t b, int64_t h, int wg, int w, int lane, int nc, int pingpong) {
  constexpr int BN = WG_BN, QB = 64 * D * 2, KB = BN * D * 2, NS = TMA_NS, NSA = BN / 2, NO = D / 2;
  const int64_t wq0 = q0 + wg * 64;
  const int64_t wq1 = (wq0 + 63 < p.Tq ? wq0 + 63 : p.Tq - 1);
  const int64_t r0 = wq0 + w * 16 + (lane >> 2), r1 = r0 + 8;
  const float sl2 = p.scale * ATTN_LOG2E;
  const uint32_t q_base = smem_u32(sQ + wg * QB), k_base = smem_u32(sK), v_base = smem_u32(sV);
  float o[NO];
#pragma unroll
  for (int i = 0; i < NO; i++) o[i] = 0.0f;
  float m_r[2] = {-INFINITY, -INFINITY}, l_r[2] = {0.0f, 0.0f};
  mbar_wait(bq, 0);
  // Software pipeline across key tiles (tma_step). No tile is skipped: a tile a warpgroup cannot see is fully
  // masked (P = 0, alpha = 1), which costs at most the diagonal tile.
  float sacc[NSA], alpha[2];
  uint32_t a[WG_BN / 16][4];
  const wg_turns tn = {wg, nc, pingpong};
  if (ntiles > 0) { // tile 0: S, softmax, P
    tn.start();
    mbar_wait(bkf, 0);
    tn.begin();
    issue_qk<D>(sacc, q_base, k_base);
    tn.end(false);
    wg_wait<0>();
    wg_acc_fence<NSA>(sacc);
    mbar_arrive(bke);
    wg_softmax_tile<D, WG_BN>(sacc, alpha, m_r, l_r, p, kt_lo * WG_BN, wq0, wq1, r0, r1, sl2, lane);
    wg_pack_p<WG_BN>(sacc, a);
  }
  for (int j = 1; j < ntiles; j++)
    tma_step<D>(j, sacc, o, a, alpha, m_r, l_r, p, kt_lo, wq0, wq1, r0, r1, sl2, lane, q_base, k_base, v_base, bkf,
                bvf, bke, bve, tn);
  if (ntiles > 0) { // the last tile's P V
    const int sl = (ntiles - 1) % NS;
    wg_rescale<D>(o, alpha);
    mbar_wait(bvf + 8 * sl, ((ntiles - 1) / NS) & 1);
    tn.begin();
    issue_pv<D>(o, a, v_base + sl * KB);
    tn.end(true);
    wg_wait<0>();
    wg_acc_fence<NO>(o);
    mbar_arrive(bve + 8 * sl);
  }
  wg_epilogue<D>(o, m_r, l_r, p, b, h, r0, r1, lane);
}
#endif

template <int D, int NC>
__global__ void __launch_bounds__(128 * (NC + 1), 1)
    k_attn_fwd_tma(const __grid_constant__ CUtensorMap tq, const __grid_constant__ CUtensorMap tk,
                   const __grid_constant__ CUtensorMap tv, attn_params p, int pingpong) {
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
  constexpr int BM = 64 * NC, BN = WG_BN, QB = 64 * D * 2, KB = BN * D * 2, DB = D / 64, NS = TMA_NS;
  extern __shared__ unsigned char smem_dyn[];
  unsigned char *sQ = (unsigned char *)(((uintptr_t)smem_dyn + 1023) & ~(uintptr_t)1023);
  unsigned char *sK = sQ + NC * QB, *sV = sK + NS * KB;
  const uint32_t bq = smem_u32(sV + NS * KB), bkf = bq + 8, bvf = bkf + 8 * NS, bke = bvf + 8 * NS,
                 bve = bke + 8 * NS;

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int64_t qt = gridDim.x - 1 - blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const int64_t hk = h / (p.Hq / p.Hkv);
  const int64_t q0 = qt * BM;
  const int64_t q_last = (q0 + BM < p.Tq ? q0 + BM : p.Tq) - 1;
  int64_t k_hi = q_last + p.q_off + 1;
  if (k_hi > p.Tk) k_hi = p.Tk;
  int64_t k_lo = p.window > 0 ? q0 + p.q_off - p.window + 1 : 0;
  if (k_lo < 0) k_lo = 0;
  const int64_t kt_lo = k_lo / BN, kt_hi = k_hi > k_lo ? (k_hi + BN - 1) / BN : kt_lo;
  const int ntiles = (int)(kt_hi - kt_lo);

  if (tid == 0) {
    mbar_init(bq, 1);
    for (int s = 0; s < NS; s++) {
      mbar_init(bkf + 8 * s, 1);
      mbar_init(bvf + 8 * s, 1);
      mbar_init(bke + 8 * s, 128 * NC); // every consumer thread arrives once per use
      mbar_init(bve + 8 * s, 128 * NC);
    }
    mbar_init_fence();
  }
  __syncthreads();

  // Registers move from the producer to the consumers (setmaxnreg): 3 warps per scheduler partition would cap
  // everyone at 168, which spills the consumers' S, O and P fragments.
  if (warp < 4) { // producer: one thread issues every copy
    if constexpr (NC == 2) asm volatile("setmaxnreg.dec.sync.aligned.u32 40;\n");
    else asm volatile("setmaxnreg.dec.sync.aligned.u32 24;\n");
    if (tid == 0) {
      mbar_expect_tx(bq, NC * QB);
      for (int g = 0; g < NC; g++)
        for (int cb = 0; cb < DB; cb++)
          tma_load_4d(smem_u32(sQ + g * QB + cb * 64 * 128), &tq, cb * 64, (int)h, (int)(q0 + g * 64), (int)b, bq);
      for (int j = 0; j < ntiles; j++) {
        const int s = j % NS, n = j / NS;
        const int row = (int)((kt_lo + j) * BN);
        if (n > 0) mbar_wait(bke + 8 * s, (n - 1) & 1);
        mbar_expect_tx(bkf + 8 * s, KB);
        for (int cb = 0; cb < DB; cb++)
          tma_load_4d(smem_u32(sK + s * KB + cb * BN * 128), &tk, cb * 64, (int)hk, row, (int)b, bkf + 8 * s);
        if (n > 0) mbar_wait(bve + 8 * s, (n - 1) & 1);
        mbar_expect_tx(bvf + 8 * s, KB);
        for (int cb = 0; cb < DB; cb++)
          tma_load_4d(smem_u32(sV + s * KB + cb * BN * 128), &tv, cb * 64, (int)hk, row, (int)b, bvf + 8 * s);
      }
    }
  } else {
    // per scheduler partition: one producer warp + NC consumer warps share 512 registers per lane
    if constexpr (NC == 2) asm volatile("setmaxnreg.inc.sync.aligned.u32 232;\n");
    else asm volatile("setmaxnreg.inc.sync.aligned.u32 160;\n");
    tma_consumer<D>(p, sQ, sK, sV, bq, bkf, bvf, bke, bve, q0, kt_lo, ntiles, b, h, (warp >> 2) - 1, warp & 3, lane,
                    NC, pingpong);
  }
#endif
}

// 4-D tensor map over a [B][T][H][D]-addressed bf16 tensor (row and batch strides in elements), boxes of
// 64 (D) x 1 (head) x rows x 1, 128-byte swizzle, zero fill out of bounds.
cudaError_t pc_attn_make_tmap(CUtensorMap *m, const void *base, int64_t D, int64_t H, int64_t T, int64_t B,
                             int64_t rstride, int64_t bstride, int rows) {
  static PFN_cuTensorMapEncodeTiled_v12000 encode = NULL;
  if (!encode) {
    cudaDriverEntryPointQueryResult q;
    void *fn = NULL;
    cudaError_t e = cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &q);
    if (e != cudaSuccess) return e;
    if (q != cudaDriverEntryPointSuccess || !fn) return cudaErrorNotSupported;
    encode = (PFN_cuTensorMapEncodeTiled_v12000)fn;
  }
  const cuuint64_t dims[4] = {(cuuint64_t)D, (cuuint64_t)H, (cuuint64_t)T, (cuuint64_t)B};
  const cuuint64_t strides[3] = {(cuuint64_t)D * 2, (cuuint64_t)rstride * 2, (cuuint64_t)bstride * 2};
  const cuuint32_t box[4] = {64, 1, (cuuint32_t)rows, 1}, estr[4] = {1, 1, 1, 1};
  CUresult r = encode(m, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 4, (void *)base, dims, strides, box, estr,
                      CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                      CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  return r == CUDA_SUCCESS ? cudaSuccess : cudaErrorInvalidValue;
}

template <int D, int NC>
static cudaError_t launch_tma(const attn_params &p, int64_t B, cudaStream_t s) {
  CUtensorMap tq, tk, tv;
  cudaError_t e;
  if ((e = pc_attn_make_tmap(&tq, p.q, D, p.Hq, p.Tq, B, p.q_rstride, p.q_bstride, 64)) != cudaSuccess) return e;
  if ((e = pc_attn_make_tmap(&tk, p.k, D, p.Hkv, p.Tk, B, p.kv_rstride, p.kv_bstride, WG_BN)) != cudaSuccess) return e;
  if ((e = pc_attn_make_tmap(&tv, p.v, D, p.Hkv, p.Tk, B, p.kv_rstride, p.kv_bstride, WG_BN)) != cudaSuccess) return e;
  const size_t smem = (size_t)(NC * 64 * D * 2 + 2 * TMA_NS * WG_BN * D * 2 + 8 * (1 + 4 * TMA_NS) + 1024);
  e = cudaFuncSetAttribute(k_attn_fwd_tma<D, NC>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
  if (e != cudaSuccess) return e;
  dim3 grid((unsigned)((p.Tq + 64 * NC - 1) / (64 * NC)), (unsigned)p.Hq, (unsigned)B);
  // POSE_ATTN_PINGPONG=0: consumer groups issue independently (for comparison)
  const char *pp = getenv("POSE_ATTN_PINGPONG");
  k_attn_fwd_tma<D, NC><<<grid, 128 * (NC + 1), smem, s>>>(tq, tk, tv, p, !(pp && !strcmp(pp, "0")));
  return cudaGetLastError();
}

// Is the wgmma forward usable here: built for sm_90a, running on a 9.0 device, D = 64 or 128, and not switched off
// (POSE_ATTN_FWD names one of the mma.sync tile shapes, or "mma")?
int pc_attn_fwd_wg_usable(int64_t D) {
#if defined(POSE_CUDA_SM90A)
  const char *cfg = getenv("POSE_ATTN_FWD");
  if (cfg && strcmp(cfg, "wg") != 0 && strcmp(cfg, "wg3") != 0) return 0;
  if (D != 64 && D != 128) return 0;
  int dev = 0, major = 0, minor = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) return 0;
  if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess)
    return 0;
  return major == 9 && minor == 0;
#else
  (void)D;
  return 0;
#endif
}

cudaError_t pc_attn_fwd_wg(const attn_params &p, int64_t B, int64_t D, cudaStream_t s) {
  const char *cfg = getenv("POSE_ATTN_FWD");
  if (D == 128) return launch_tma<128, 2>(p, B, s);
  if (cfg && !strcmp(cfg, "wg3")) return launch_tma<64, 3>(p, B, s); // D = 64 with three consumer groups
  return launch_tma<64, 2>(p, B, s);
}
