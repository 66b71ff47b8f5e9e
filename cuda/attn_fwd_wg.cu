// Flash-attention forward on Hopper's warpgroup tensor-core instructions (wgmma, sm_90a).
//
// Same contract and arithmetic as attn_fwd.cu (FA2 online softmax in the log2 domain, P rounded to bf16 before
// P V, fp32 statistics, natural-log lse out), different engine: one block of two warpgroups (256 threads) per
// 128-query tile; each warpgroup owns 64 query rows. S = Q K^T is one wgmma chain of D/16 steps reading Q and K
// straight from swizzled shared memory (no ldmatrix: the mma.sync kernels were bound by it, cuda/NOTES.md runs
// 2-4); P stays in registers and O += P V reads V from shared memory as an MN-major operand. Key/value tiles of
// 128 rows stream in by cp.async, two stages deep. The two warpgroups run the same loop; while one computes its
// softmax the other's wgmma chain keeps the tensor cores busy (the scheduler interleaves them).
//
// Built only for sm_90a (CMAKE_CUDA_ARCHITECTURES 90a); elsewhere the kernel body is empty and
// pc_attn_fwd_wg_usable() says no, so attn_fwd.cu keeps its mma.sync kernels.
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "wgmma.cuh"

#define WG_THREADS 256
#define WG_BM 128
#define WG_BN 128

template <int D>
__global__ void __launch_bounds__(WG_THREADS, 1) k_attn_fwd_wg(attn_params p, uint32_t v_lbo, uint32_t v_sbo) {
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
  constexpr int BM = WG_BM, BN = WG_BN, QB = 64 * D * 2, KB = BN * D * 2;
  constexpr int NS = BN / 2, NO = D / 2; // accumulators per thread: S (m64nBN), O (m64nD)
  extern __shared__ unsigned char smem_dyn[];
  unsigned char *sQ = (unsigned char *)(((uintptr_t)smem_dyn + 1023) & ~(uintptr_t)1023);
  unsigned char *sK = sQ + 2 * QB, *sV = sK + 2 * KB;

  const int tid = threadIdx.x, wg = tid >> 7, warp = (tid >> 5) & 3, lane = tid & 31;
  const int64_t qt = gridDim.x - 1 - blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const int64_t hk = h / (p.Hq / p.Hkv);
  const int64_t q0 = qt * BM;
  const bf16 *gq = p.q + b * p.q_bstride + h * D;
  const bf16 *gk = p.k + b * p.kv_bstride + hk * D;
  const bf16 *gv = p.v + b * p.kv_bstride + hk * D;

  // keys any query of this block can see: [k_lo, k_hi)
  const int64_t q_last = (q0 + BM < p.Tq ? q0 + BM : p.Tq) - 1;
  int64_t k_hi = q_last + p.q_off + 1;
  if (k_hi > p.Tk) k_hi = p.Tk;
  int64_t k_lo = p.window > 0 ? q0 + p.q_off - p.window + 1 : 0;
  if (k_lo < 0) k_lo = 0;
  const int64_t kt_lo = k_lo / BN, kt_hi = k_hi > k_lo ? (k_hi + BN - 1) / BN : kt_lo;
  const int ntiles = (int)(kt_hi - kt_lo);

  load_tile_sw<64, D, WG_THREADS>(sQ, gq, p.q_rstride, q0, p.Tq);
  load_tile_sw<64, D, WG_THREADS>(sQ + QB, gq, p.q_rstride, q0 + 64, p.Tq);
  if (ntiles > 0) {
    load_tile_sw<BN, D, WG_THREADS>(sK, gk, p.kv_rstride, kt_lo * BN, p.Tk);
    load_tile_sw<BN, D, WG_THREADS>(sV, gv, p.kv_rstride, kt_lo * BN, p.Tk);
  }
  cp_async_commit();

  // this warpgroup's rows: [wq0, wq1]; the thread's two rows
  const int64_t wq0 = q0 + wg * 64;
  const int64_t wq1 = (wq0 + 63 < p.Tq ? wq0 + 63 : p.Tq - 1);
  const int64_t r0 = wq0 + warp * 16 + (lane >> 2), r1 = r0 + 8;
  const float sl2 = p.scale * ATTN_LOG2E;
  const uint32_t q_base = smem_u32(sQ + wg * QB), k_base = smem_u32(sK), v_base = smem_u32(sV);

  float o[NO];
#pragma unroll
  for (int i = 0; i < NO; i++) o[i] = 0.0f;
  float m_r[2] = {-INFINITY, -INFINITY}, l_r[2] = {0.0f, 0.0f};

  for (int it = 0; it < ntiles; it++) {
    const int64_t kt = kt_lo + it;
    const int buf = it & 1;
    if (it + 1 < ntiles) {
      load_tile_sw<BN, D, WG_THREADS>(sK + (buf ^ 1) * KB, gk, p.kv_rstride, (kt + 1) * BN, p.Tk);
      load_tile_sw<BN, D, WG_THREADS>(sV + (buf ^ 1) * KB, gv, p.kv_rstride, (kt + 1) * BN, p.Tk);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    fence_proxy_async();
    __syncthreads();

    const int64_t k0 = kt * BN;
    // a tile no row of this warpgroup can see (the other group's diagonal, or before this group's window)
    const bool skip = wq0 >= p.Tq || k0 > wq1 + p.q_off || (p.window > 0 && k0 + BN - 1 + p.window <= wq0 + p.q_off);
    if (!skip) {
      float s[NS];
      wg_fence();
#pragma unroll
      for (int ks = 0; ks < D / 16; ks++) {
        const uint64_t dq = wg_desc(q_base + (ks >> 2) * (64 * 128) + (ks & 3) * 32, 16, 1024);
        const uint64_t dk = wg_desc(k_base + buf * KB + (ks >> 2) * (BN * 128) + (ks & 3) * 32, 16, 1024);
        wgmma_m64n128_ss<0>(s, dq, dk, ks > 0);
      }
      wg_commit();
      wg_wait<0>();
      wg_acc_fence<NS>(s);

      const bool need_mask = k0 + BN > p.Tk || k0 + BN - 1 > wq0 + p.q_off ||
                             (p.window > 0 && wq1 + p.q_off - k0 >= p.window);
#pragma unroll
      for (int n = 0; n < BN / 8; n++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
          float v = s[n * 4 + e] * sl2;
          if (need_mask) {
            const int kj = (int)(k0 + n * 8 + (lane & 3) * 2 + (e & 1));
            if (!attn_visible32((int)(e < 2 ? r0 : r1), kj, INT_MAX, (int)p.Tk, (int)p.q_off, (int)p.window))
              v = -INFINITY;
          }
          s[n * 4 + e] = v;
        }
      // online softmax: a row's values are spread over the 4 lanes of a quad
#pragma unroll
      for (int r = 0; r < 2; r++) {
        float mx = -INFINITY;
#pragma unroll
        for (int n = 0; n < BN / 8; n++) mx = fmaxf(mx, fmaxf(s[n * 4 + 2 * r], s[n * 4 + 2 * r + 1]));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        const float m_new = fmaxf(m_r[r], mx);
        const float m_use = m_new == -INFINITY ? 0.0f : m_new;
        const float alpha = fast_exp2(m_r[r] - m_use);
        float sum = 0.0f;
#pragma unroll
        for (int n = 0; n < BN / 8; n++) {
          const float p0 = fast_exp2(s[n * 4 + 2 * r] - m_use), p1 = fast_exp2(s[n * 4 + 2 * r + 1] - m_use);
          s[n * 4 + 2 * r] = p0;
          s[n * 4 + 2 * r + 1] = p1;
          sum += p0 + p1;
        }
        l_r[r] = l_r[r] * alpha + sum;
        m_r[r] = m_new;
#pragma unroll
        for (int d = 0; d < D / 8; d++) {
          o[d * 4 + 2 * r] *= alpha;
          o[d * 4 + 2 * r + 1] *= alpha;
        }
      }
      // P (bf16) as the register A operand: key block kk = n8 blocks 2kk and 2kk+1
      uint32_t a[BN / 16][4];
#pragma unroll
      for (int kk = 0; kk < BN / 16; kk++) {
        a[kk][0] = pack_bf16(s[8 * kk + 0], s[8 * kk + 1]);
        a[kk][1] = pack_bf16(s[8 * kk + 2], s[8 * kk + 3]);
        a[kk][2] = pack_bf16(s[8 * kk + 4], s[8 * kk + 5]);
        a[kk][3] = pack_bf16(s[8 * kk + 6], s[8 * kk + 7]);
      }
      wg_fence();
#pragma unroll
      for (int kk = 0; kk < BN / 16; kk++) {
        const uint64_t dv = wg_desc(v_base + buf * KB + kk * 2048, v_lbo, v_sbo);
        if constexpr (D == 128) wgmma_m64n128_rs<1>(o, a[kk], dv, 1);
        else wgmma_m64n64_rs<1>(o, a[kk], dv, 1);
      }
      wg_commit();
      wg_wait<0>();
      wg_acc_fence<NO>(o);
    }
    __syncthreads(); // both groups are done with this stage before the next iteration refills it
  }
  cp_async_wait<0>();

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
#endif
}

template <int D>
static cudaError_t launch_wg(const attn_params &p, int64_t B, cudaStream_t s) {
  const size_t smem = (size_t)(2 * 64 * D * 2 + 4 * WG_BN * D * 2 + 1024);
  cudaError_t e = cudaFuncSetAttribute(k_attn_fwd_wg<D>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
  if (e != cudaSuccess) return e;
  // MN-major V: leading offset = 64-column blocks (WG_BN rows of 128 bytes apart), stride = 8-row groups.
  // POSE_WG_VDESC=swap exchanges them (a diagnosis switch for the first runs on a new toolkit/driver).
  uint32_t lbo = WG_BN * 128, sbo = 1024;
  const char *sw = getenv("POSE_WG_VDESC");
  if (sw && !strcmp(sw, "swap")) {
    lbo = 1024;
    sbo = WG_BN * 128;
  }
  dim3 grid((unsigned)((p.Tq + WG_BM - 1) / WG_BM), (unsigned)p.Hq, (unsigned)B);
  k_attn_fwd_wg<D><<<grid, WG_THREADS, smem, s>>>(p, lbo, sbo);
  return cudaGetLastError();
}

// Is the wgmma forward usable here: built for sm_90a, running on a 9.0 device, D = 64 or 128, and not switched off
// (POSE_ATTN_FWD names one of the mma.sync tile shapes, or "mma")?
int pc_attn_fwd_wg_usable(int64_t D) {
#if defined(POSE_CUDA_SM90A)
  const char *cfg = getenv("POSE_ATTN_FWD");
  if (cfg && strcmp(cfg, "wg") != 0) return 0;
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
  return D == 128 ? launch_wg<128>(p, B, s) : launch_wg<64>(p, B, s);
}
