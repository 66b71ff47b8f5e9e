// Flash-attention forward (FlashAttention-2 scheme): one block of 4 warps per (64-query tile, head, batch row);
// each warp owns 16 queries. Key/value tiles of 64 rows stream through shared memory with cp.async, two buffers
// deep; S = Q K^T and O += P V run on bf16 tensor cores with fp32 accumulation; the softmax is online in the
// log2 domain (running max m and sum l per row, O rescaled when m grows). Out: O = sum_j P_ij V_j / l and the
// natural-log logsumexp of the scaled scores, which the backward uses to recompute P without storing it.
// Causal tiles past the diagonal and (sliding window) tiles before the window are skipped; only tiles that cross
// a boundary pay for the mask. Query tiles are issued longest first.
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attn_common.cuh"

template <int D, int MB, int BN>
__global__ void __launch_bounds__(ATTN_THREADS) k_attn_fwd(attn_params p) {
  constexpr int BM = 64 * MB, P = D + 8, NT = BN / 8, DT = D / 8;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16 *sQ = (bf16 *)smem_raw, *sK = sQ + BM * P, *sV = sK + 2 * BN * P;

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t qt = gridDim.x - 1 - blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const int64_t hk = h / (p.Hq / p.Hkv);
  const int64_t q0 = qt * BM;
  const bf16 *gq = p.q + b * p.q_bstride + h * D;
  const bf16 *gk = p.k + b * p.kv_bstride + hk * D;
  const bf16 *gv = p.v + b * p.kv_bstride + hk * D;

  // keys any query of this tile can see: [k_lo, k_hi)
  int64_t q_last = (q0 + BM < p.Tq ? q0 + BM : p.Tq) - 1;
  int64_t k_hi = q_last + p.q_off + 1;
  if (k_hi > p.Tk) k_hi = p.Tk;
  int64_t k_lo = p.window > 0 ? q0 + p.q_off - p.window + 1 : 0;
  if (k_lo < 0) k_lo = 0;
  int64_t kt_lo = k_lo / BN, kt_hi = k_hi > k_lo ? (k_hi + BN - 1) / BN : kt_lo; // tiles [kt_lo, kt_hi)
  int ntiles = (int)(kt_hi - kt_lo);

  load_tile<BM, D, P>(sQ, gq, p.q_rstride, q0, p.Tq);
  if (ntiles > 0) {
    load_tile<BN, D, P>(sK, gk, p.kv_rstride, kt_lo * BN, p.Tk);
    load_tile<BN, D, P>(sV, gv, p.kv_rstride, kt_lo * BN, p.Tk);
  }
  cp_async_commit();

  const float sl2 = p.scale * ATTN_LOG2E;
  float o[MB][DT][4];
  float m_r[MB][2], l_r[MB][2];
  int64_t qi[MB][2];
#pragma unroll
  for (int m = 0; m < MB; m++) {
#pragma unroll
    for (int d = 0; d < DT; d++) o[m][d][0] = o[m][d][1] = o[m][d][2] = o[m][d][3] = 0.0f;
    m_r[m][0] = m_r[m][1] = -INFINITY;
    l_r[m][0] = l_r[m][1] = 0.0f;
    qi[m][0] = q0 + (warp * MB + m) * 16 + (lane >> 2);
    qi[m][1] = qi[m][0] + 8;
  }
  const bf16 *wq = sQ + warp * MB * 16 * P; // this warp's MB blocks of 16 query rows

  for (int it = 0; it < ntiles; it++) {
    int64_t kt = kt_lo + it;
    int buf = it & 1;
    if (it + 1 < ntiles) {
      load_tile<BN, D, P>(sK + (buf ^ 1) * BN * P, gk, p.kv_rstride, (kt + 1) * BN, p.Tk);
      load_tile<BN, D, P>(sV + (buf ^ 1) * BN * P, gv, p.kv_rstride, (kt + 1) * BN, p.Tk);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();

    float s[MB][NT][4];
    // (Q fragments kept in registers instead were slower in run 4: more registers, same occupancy or less)
    warp_qk_mb<MB, NT, D, P>(s, wq, sK + buf * BN * P);

    const int64_t k0 = kt * BN;
    bool need_mask = k0 + BN > p.Tk || k0 + BN - 1 > q0 + p.q_off ||
                     (p.window > 0 && q0 + BM - 1 + p.q_off - k0 >= p.window);
#pragma unroll
    for (int m = 0; m < MB; m++)
#pragma unroll
      for (int n = 0; n < NT; n++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
          float v = s[m][n][e] * sl2;
          if (need_mask) {
            int64_t kj = k0 + n * 8 + (lane & 3) * 2 + (e & 1);
            // rows past Tq are never written: no need to mask them
            if (!attn_visible32((int)qi[m][e >> 1], (int)kj, INT_MAX, (int)p.Tk, (int)p.q_off, (int)p.window))
              v = -INFINITY;
          }
          s[m][n][e] = v;
        }
    // online softmax, two rows per thread and row block; a row's values are spread over the 4 lanes of a quad
#pragma unroll
    for (int m = 0; m < MB; m++)
#pragma unroll
      for (int r = 0; r < 2; r++) {
        float mx = -INFINITY;
#pragma unroll
        for (int n = 0; n < NT; n++) mx = fmaxf(mx, fmaxf(s[m][n][2 * r], s[m][n][2 * r + 1]));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        float m_new = fmaxf(m_r[m][r], mx);
        float m_use = m_new == -INFINITY ? 0.0f : m_new;
        float alpha = fast_exp2(m_r[m][r] - m_use);
        float sum = 0.0f;
#pragma unroll
        for (int n = 0; n < NT; n++) {
          float p0 = fast_exp2(s[m][n][2 * r] - m_use), p1 = fast_exp2(s[m][n][2 * r + 1] - m_use);
          s[m][n][2 * r] = p0;
          s[m][n][2 * r + 1] = p1;
          sum += p0 + p1;
        }
        l_r[m][r] = l_r[m][r] * alpha + sum;
        m_r[m][r] = m_new;
#pragma unroll
        for (int d = 0; d < DT; d++) {
          o[m][d][2 * r] *= alpha;
          o[m][d][2 * r + 1] *= alpha;
        }
      }
    warp_pv_mb<MB, NT, D, P>(o, s, sV + buf * BN * P);
    __syncthreads();
  }
  cp_async_wait<0>(); // nothing may stay in flight when no key tile was visible

  // finish: full row sums across the quad, normalise, write O and lse
#pragma unroll
  for (int m = 0; m < MB; m++)
#pragma unroll
    for (int r = 0; r < 2; r++) {
      float l = l_r[m][r];
      l += __shfl_xor_sync(0xffffffffu, l, 1);
      l += __shfl_xor_sync(0xffffffffu, l, 2);
      float inv = l > 0.0f ? 1.0f / l : 0.0f;
      int64_t row = qi[m][r];
      if (row < p.Tq) {
        bf16 *go = p.out + b * p.q_bstride + row * p.q_rstride + h * D;
#pragma unroll
        for (int d = 0; d < DT; d++)
          *(uint32_t *)(go + d * 8 + (lane & 3) * 2) = pack_bf16(o[m][d][2 * r] * inv, o[m][d][2 * r + 1] * inv);
        if ((lane & 3) == 0)
          p.lse[(b * p.Hq + h) * p.Tq + row] = l > 0.0f ? (m_r[m][r] + log2f(l)) * ATTN_LN2 : INFINITY;
      }
    }
}

static pose_status attn_check(const pose_cuda_attn_dims *d, const char *what) {
  PC_REQUIRE(d, "%s: NULL dims", what);
  PC_REQUIRE(d->B > 0 && d->Tq >= 0 && d->Tk >= 0 && d->Hq > 0 && d->Hkv > 0 && d->D > 0,
             "%s: bad sizes B=%lld Tq=%lld Tk=%lld Hq=%lld Hkv=%lld D=%lld", what, (long long)d->B, (long long)d->Tq,
             (long long)d->Tk, (long long)d->Hq, (long long)d->Hkv, (long long)d->D);
  PC_REQUIRE(d->Hq % d->Hkv == 0, "%s: Hkv=%lld does not divide Hq=%lld", what, (long long)d->Hkv, (long long)d->Hq);
  if (d->D != 64 && d->D != 128)
    return pose_error(POSE_EUNSUPPORTED, "%s: head dim %lld is not supported on the GPU yet (64 or 128)", what,
                      (long long)d->D);
  PC_REQUIRE(d->q_off >= 0 && d->window >= 0, "%s: negative q_off or window", what);
  PC_REQUIRE(d->q_rstride >= d->Hq * d->D && d->kv_rstride >= d->Hkv * d->D,
             "%s: row strides (%lld, %lld) smaller than a token's heads", what, (long long)d->q_rstride,
             (long long)d->kv_rstride);
  PC_REQUIRE(d->q_rstride % 8 == 0 && d->kv_rstride % 8 == 0 && d->q_bstride % 8 == 0 && d->kv_bstride % 8 == 0,
             "%s: strides must be multiples of 8 elements (16-byte loads)", what);
  PC_REQUIRE(d->B <= 65535 && d->Hq <= 65535 && (d->Tq + 63) / 64 < ((int64_t)1 << 31),
             "%s: grid too large (B=%lld Hq=%lld)", what, (long long)d->B, (long long)d->Hq);
  PC_REQUIRE(d->Tq + d->q_off < INT_MAX / 2 && d->Tk < INT_MAX / 2 && d->window < INT_MAX / 2,
             "%s: lengths beyond 2^30 tokens are not supported", what);
  PC_REQUIRE(d->scale > 0 && isfinite(d->scale), "%s: bad scale %g", what, (double)d->scale);
  return POSE_OK;
}

pose_status pc_attn_check(const pose_cuda_attn_dims *d, const char *what) { return attn_check(d, what); }

extern "C" void pose_cuda_attn_dims_init(pose_cuda_attn_dims *d, int64_t B, int64_t Tq, int64_t Tk, int64_t Hq,
                                         int64_t Hkv, int64_t D, int64_t window) {
  d->B = B;
  d->Tq = Tq;
  d->Tk = Tk;
  d->q_off = Tk - Tq;
  d->Hq = Hq;
  d->Hkv = Hkv;
  d->D = D;
  d->window = window;
  d->scale = (float)(1.0 / sqrt((double)D));
  d->q_rstride = Hq * D;
  d->q_bstride = Tq * Hq * D;
  d->kv_rstride = Hkv * D;
  d->kv_bstride = Tk * Hkv * D;
}

template <int D, int MB, int BN>
static cudaError_t launch_fwd(const attn_params &p, int64_t B, cudaStream_t s) {
  constexpr int P = D + 8, BM = 64 * MB;
  size_t smem = (size_t)(BM * P + 4 * BN * P) * sizeof(bf16);
  cudaError_t e = cudaFuncSetAttribute(k_attn_fwd<D, MB, BN>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
  if (e != cudaSuccess) return e;
  dim3 grid((unsigned)((p.Tq + BM - 1) / BM), (unsigned)p.Hq, (unsigned)B);
  k_attn_fwd<D, MB, BN><<<grid, ATTN_THREADS, smem, s>>>(p);
  return cudaGetLastError();
}

// Tile shape of the forward: MB blocks of 16 query rows per warp (4 warps) x BN keys per step. POSE_ATTN_FWD
// ("1x64", "2x32", "2x64") overrides the default, for benchmarks and tests of every variant.
static cudaError_t dispatch_fwd(const attn_params &p, int64_t B, int64_t D, cudaStream_t s) {
  const char *cfg = getenv("POSE_ATTN_FWD");
  // defaults from runs 3-4 of cuda/NOTES.md: 2x64 fastest at D=128 (despite a small spill), 1x64 at D=64
  int mb = D == 128 ? 2 : 1, bn = 64;
  if (cfg && (!strcmp(cfg, "1x64") || !strcmp(cfg, "2x32") || !strcmp(cfg, "2x64"))) {
    mb = cfg[0] - '0';
    bn = atoi(cfg + 2);
  }
  if (D == 64) {
    if (mb == 1) return launch_fwd<64, 1, 64>(p, B, s);
    if (bn == 32) return launch_fwd<64, 2, 32>(p, B, s);
    return launch_fwd<64, 2, 64>(p, B, s);
  }
  if (mb == 1) return launch_fwd<128, 1, 64>(p, B, s);
  if (bn == 64) return launch_fwd<128, 2, 64>(p, B, s);
  return launch_fwd<128, 2, 32>(p, B, s);
}

extern "C" pose_status pose_cuda_attn_fwd(const pose_cuda_attn_dims *d, const uint16_t *q, const uint16_t *k,
                                          const uint16_t *v, uint16_t *o, float *lse, pose_cuda_stream s) {
  POSE_TRY(attn_check(d, "attn_fwd"));
  if (d->Tq == 0) return POSE_OK;
  PC_REQUIRE(q && k && v && o && lse, "attn_fwd: NULL buffer");
  PC_REQUIRE(((uintptr_t)q | (uintptr_t)k | (uintptr_t)v | (uintptr_t)o) % 16 == 0,
             "attn_fwd: q, k, v and o must be 16-byte aligned");
  attn_params p = {};
  p.q = (const bf16 *)q;
  p.k = (const bf16 *)k;
  p.v = (const bf16 *)v;
  p.out = (bf16 *)o;
  p.lse = lse;
  p.Tq = d->Tq; p.Tk = d->Tk; p.q_off = d->q_off; p.Hq = d->Hq; p.Hkv = d->Hkv; p.window = d->window;
  p.q_bstride = d->q_bstride; p.q_rstride = d->q_rstride; p.kv_bstride = d->kv_bstride; p.kv_rstride = d->kv_rstride;
  p.scale = d->scale;
  // the wgmma kernel on Hopper (its 128-query tiles waste half a tile below 64 queries: decoding keeps mma.sync)
  cudaError_t e = d->Tq > 64 && pc_attn_fwd_wg_usable(d->D) ? pc_attn_fwd_wg(p, d->B, d->D, s)
                                                             : dispatch_fwd(p, d->B, d->D, s);
  if (e != cudaSuccess) return pose_cuda_fail(e, "attn_fwd launch");
  return POSE_OK;
}
