// Flash-attention backward, deterministic, in three kernels:
//   1. Dsum_i = sum_d dO_id O_id (one warp per query row);
//   2. dK, dV: one block per (64-key tile, kv head, batch row), each warp owning 16 keys; it walks every query tile
//      of every query head of its group that can see the keys, recomputes P^T = exp(S^T - lse) from K Q^T, and
//      accumulates dV += P^T dO and dK += dS^T Q in registers, dS = P (dP - Dsum), dP^T = V dO^T;
//   3. dQ: one block per (64-query tile, head, batch row) walks the visible key tiles, recomputes P and dP, and
//      accumulates dQ += dS K.
// FlashAttention-2 does this with one kernel and fp32 atomics for dQ (5 products per tile instead of 7 here); the
// split costs ~40% more tensor work but no atomics, no fp32 dQ buffer and bitwise-reproducible gradients. Both
// products per tile and the tile loops are where wgmma/TMA would come in on sm_90a (see attn_common.cuh).
#include <math.h>
#include <stdlib.h>

#include "attn_common.cuh"

pose_status pc_attn_check(const pose_cuda_attn_dims *d, const char *what);

__global__ void k_attn_dsum(attn_params p, int64_t B, int D, float *__restrict__ dsum) {
  int64_t w = (blockIdx.x * (int64_t)blockDim.x + threadIdx.x) >> 5;
  int lane = threadIdx.x & 31;
  int64_t total = B * p.Hq * p.Tq;
  if (w >= total) return;
  int64_t i = w % p.Tq, h = (w / p.Tq) % p.Hq, b = w / (p.Tq * p.Hq);
  int64_t off = b * p.q_bstride + i * p.q_rstride + h * D;
  const __nv_bfloat162 *o2 = (const __nv_bfloat162 *)(p.o + off), *g2 = (const __nv_bfloat162 *)(p.dout + off);
  float acc = 0.0f;
  for (int d = lane; d < D / 2; d += 32) {
    float2 a = __bfloat1622float2(o2[d]), c = __bfloat1622float2(g2[d]);
    acc += a.x * c.x + a.y * c.y;
  }
  acc = pc_warp_sum(acc);
  if (lane == 0) dsum[(b * p.Hq + h) * p.Tq + i] = acc;
}

template <int D, int BQ, bool AREG>
__global__ void __launch_bounds__(ATTN_THREADS) k_attn_bwd_dkdv(attn_params p) {
  constexpr int BN = 64, P = D + 8, NQ = BQ / 8, DT = D / 8;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16 *sK = (bf16 *)smem_raw, *sV = sK + BN * P, *sQ = sV + BN * P, *sdO = sQ + 2 * BQ * P;
  float *sL = (float *)(sdO + 2 * BQ * P), *sDs = sL + 2 * BQ;

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t kt = blockIdx.x, hk = blockIdx.y, b = blockIdx.z, G = p.Hq / p.Hkv;
  const int64_t k0 = kt * BN, k1 = k0 + BN < p.Tk ? k0 + BN : p.Tk;
  const bf16 *gk = p.k + b * p.kv_bstride + hk * D, *gv = p.v + b * p.kv_bstride + hk * D;

  // queries that can see some key of the tile: [q_lo, q_hi)
  int64_t q_lo = k0 - p.q_off;
  if (q_lo < 0) q_lo = 0;
  int64_t q_hi = p.Tq;
  if (p.window > 0 && k1 - 1 - p.q_off + p.window < q_hi) q_hi = k1 - 1 - p.q_off + p.window;
  int64_t qt_lo = q_lo / BQ, nqt = q_hi > q_lo ? (q_hi + BQ - 1) / BQ - qt_lo : 0;
  const int64_t items = G * nqt;

  auto load_item = [&](int64_t item, int buf) {
    int64_t h = hk * G + item / nqt, qb = (qt_lo + item % nqt) * BQ;
    const bf16 *gq = p.q + b * p.q_bstride + h * D, *gdo = p.dout + b * p.q_bstride + h * D;
    load_tile<BQ, D, P>(sQ + buf * BQ * P, gq, p.q_rstride, qb, p.Tq);
    load_tile<BQ, D, P>(sdO + buf * BQ * P, gdo, p.q_rstride, qb, p.Tq);
    for (int j = threadIdx.x; j < BQ; j += ATTN_THREADS) {
      int64_t q = qb + j;
      bool ok = q < p.Tq;
      sL[buf * BQ + j] = ok ? p.lse_in[(b * p.Hq + h) * p.Tq + q] * ATTN_LOG2E : INFINITY;
      sDs[buf * BQ + j] = ok ? p.dsum[(b * p.Hq + h) * p.Tq + q] : 0.0f;
    }
  };

  load_tile<BN, D, P>(sK, gk, p.kv_rstride, k0, p.Tk);
  load_tile<BN, D, P>(sV, gv, p.kv_rstride, k0, p.Tk);
  if (items > 0) load_item(0, 0);
  cp_async_commit();

  float dk[DT][4], dv[DT][4];
#pragma unroll
  for (int d = 0; d < DT; d++)
#pragma unroll
    for (int e = 0; e < 4; e++) dk[d][e] = dv[d][e] = 0.0f;
  const float sl2 = p.scale * ATTN_LOG2E;
  constexpr bool KV_REG = AREG && D <= 64;
  uint32_t kf[KV_REG ? D / 16 : 1][4], vf[KV_REG ? D / 16 : 1][4];
  const int64_t key[2] = {k0 + warp * 16 + (lane >> 2), k0 + warp * 16 + (lane >> 2) + 8};
  const int key32[2] = {(int)key[0], (int)key[1]};
  const int Tq32 = (int)p.Tq, Tk32 = (int)p.Tk, qoff32 = (int)p.q_off, win32 = (int)p.window;

  for (int64_t it = 0; it < items; it++) {
    int buf = (int)(it & 1);
    if (it + 1 < items) {
      load_item(it + 1, buf ^ 1);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    const int64_t qb = (qt_lo + it % nqt) * BQ;
    const float *L = sL + buf * BQ, *Ds = sDs + buf * BQ;

    float st[NQ][4], dpt[NQ][4];
    if constexpr (KV_REG) {
      if (it == 0) { // K and V arrived in commit group 0
        load_afrags<D, P>(kf, sK + warp * 16 * P);
        load_afrags<D, P>(vf, sV + warp * 16 * P);
      }
      warp_qk_areg<NQ, D, P>(st, kf, sQ + buf * BQ * P);   // S^T = K Q^T
      warp_qk_areg<NQ, D, P>(dpt, vf, sdO + buf * BQ * P); // dP^T = V dO^T
    } else {
      warp_qk<NQ, D, P>(st, sK + warp * 16 * P, sQ + buf * BQ * P);
      warp_qk<NQ, D, P>(dpt, sV + warp * 16 * P, sdO + buf * BQ * P);
    }
    // every (query, key) pair of the tile visible: no per-element test
    const bool full = qb + BQ <= p.Tq && k0 + 64 <= p.Tk && k0 + 63 <= qb + p.q_off &&
                      (p.window <= 0 || qb + BQ - 1 + p.q_off - k0 < p.window);
#pragma unroll
    for (int n = 0; n < NQ; n++)
#pragma unroll
      for (int e = 0; e < 4; e++) {
        int c = n * 8 + (lane & 3) * 2 + (e & 1);
        float pv = 0.0f;
        if (full || attn_visible32((int)qb + c, key32[e >> 1], Tq32, Tk32, qoff32, win32))
          pv = fast_exp2(st[n][e] * sl2 - L[c]);
        st[n][e] = pv;                        // P^T
        dpt[n][e] = pv * (dpt[n][e] - Ds[c]); // dS^T
      }
    warp_pv<NQ, D, P>(dv, st, sdO + buf * BQ * P); // dV += P^T dO
    warp_pv<NQ, D, P>(dk, dpt, sQ + buf * BQ * P); // dK += dS^T Q
    __syncthreads();
  }
  cp_async_wait<0>();

  bf16 *gdk = p.out + b * p.kv_bstride + hk * D, *gdv = p.out2 + b * p.kv_bstride + hk * D;
#pragma unroll
  for (int r = 0; r < 2; r++) {
    if (key[r] >= p.Tk) continue;
#pragma unroll
    for (int d = 0; d < DT; d++) {
      int64_t off = key[r] * p.kv_rstride + d * 8 + (lane & 3) * 2;
      *(uint32_t *)(gdk + off) = pack_bf16(dk[d][2 * r] * p.scale, dk[d][2 * r + 1] * p.scale);
      *(uint32_t *)(gdv + off) = pack_bf16(dv[d][2 * r], dv[d][2 * r + 1]);
    }
  }
}

template <int D, int BK, bool AREG>
__global__ void __launch_bounds__(ATTN_THREADS) k_attn_bwd_dq(attn_params p) {
  constexpr int BM = 64, P = D + 8, NT = BK / 8, DT = D / 8;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  bf16 *sQ = (bf16 *)smem_raw, *sdO = sQ + BM * P, *sK = sdO + BM * P, *sV = sK + 2 * BK * P;

  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int64_t qt = gridDim.x - 1 - blockIdx.x, h = blockIdx.y, b = blockIdx.z;
  const int64_t hk = h / (p.Hq / p.Hkv), q0 = qt * BM;
  const bf16 *gq = p.q + b * p.q_bstride + h * D, *gdo = p.dout + b * p.q_bstride + h * D;
  const bf16 *gk = p.k + b * p.kv_bstride + hk * D, *gv = p.v + b * p.kv_bstride + hk * D;

  int64_t q_last = (q0 + BM < p.Tq ? q0 + BM : p.Tq) - 1;
  int64_t k_hi = q_last + p.q_off + 1;
  if (k_hi > p.Tk) k_hi = p.Tk;
  int64_t k_lo = p.window > 0 ? q0 + p.q_off - p.window + 1 : 0;
  if (k_lo < 0) k_lo = 0;
  int64_t kt_lo = k_lo / BK, kt_hi = k_hi > k_lo ? (k_hi + BK - 1) / BK : kt_lo;
  int ntiles = (int)(kt_hi - kt_lo);

  load_tile<BM, D, P>(sQ, gq, p.q_rstride, q0, p.Tq);
  load_tile<BM, D, P>(sdO, gdo, p.q_rstride, q0, p.Tq);
  if (ntiles > 0) {
    load_tile<BK, D, P>(sK, gk, p.kv_rstride, kt_lo * BK, p.Tk);
    load_tile<BK, D, P>(sV, gv, p.kv_rstride, kt_lo * BK, p.Tk);
  }
  cp_async_commit();

  const int64_t qi[2] = {q0 + warp * 16 + (lane >> 2), q0 + warp * 16 + (lane >> 2) + 8};
  const int qi32[2] = {(int)qi[0], (int)qi[1]};
  const int Tq32 = (int)p.Tq, Tk32 = (int)p.Tk, qoff32 = (int)p.q_off, win32 = (int)p.window;
  float L[2], Ds[2];
#pragma unroll
  for (int r = 0; r < 2; r++) {
    bool ok = qi[r] < p.Tq;
    L[r] = ok ? p.lse_in[(b * p.Hq + h) * p.Tq + qi[r]] * ATTN_LOG2E : INFINITY;
    Ds[r] = ok ? p.dsum[(b * p.Hq + h) * p.Tq + qi[r]] : 0.0f;
  }
  const float sl2 = p.scale * ATTN_LOG2E;
  float dq[DT][4];
#pragma unroll
  for (int d = 0; d < DT; d++) dq[d][0] = dq[d][1] = dq[d][2] = dq[d][3] = 0.0f;
  uint32_t qf[AREG ? D / 16 : 1][4], df[AREG ? D / 16 : 1][4];

  for (int it = 0; it < ntiles; it++) {
    int64_t kt = kt_lo + it;
    int buf = it & 1;
    if (it + 1 < ntiles) {
      load_tile<BK, D, P>(sK + (buf ^ 1) * BK * P, gk, p.kv_rstride, (kt + 1) * BK, p.Tk);
      load_tile<BK, D, P>(sV + (buf ^ 1) * BK * P, gv, p.kv_rstride, (kt + 1) * BK, p.Tk);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    float s[NT][4], dp[NT][4];
    if constexpr (AREG) {
      if (it == 0) { // Q and dO arrived with the first tile (commit group 0)
        load_afrags<D, P>(qf, sQ + warp * 16 * P);
        load_afrags<D, P>(df, sdO + warp * 16 * P);
      }
      warp_qk_areg<NT, D, P>(s, qf, sK + buf * BK * P);  // S = Q K^T
      warp_qk_areg<NT, D, P>(dp, df, sV + buf * BK * P); // dP = dO V^T
    } else {
      warp_qk<NT, D, P>(s, sQ + warp * 16 * P, sK + buf * BK * P);
      warp_qk<NT, D, P>(dp, sdO + warp * 16 * P, sV + buf * BK * P);
    }
    const int64_t k0 = kt * BK;
    const bool full = q0 + BM <= p.Tq && k0 + BK <= p.Tk && k0 + BK - 1 <= q0 + p.q_off &&
                      (p.window <= 0 || q0 + BM - 1 + p.q_off - k0 < p.window);
#pragma unroll
    for (int n = 0; n < NT; n++)
#pragma unroll
      for (int e = 0; e < 4; e++) {
        int kj = (int)k0 + n * 8 + (lane & 3) * 2 + (e & 1);
        int r = e >> 1;
        float pv = 0.0f;
        if (full || attn_visible32(qi32[r], kj, Tq32, Tk32, qoff32, win32)) pv = fast_exp2(s[n][e] * sl2 - L[r]);
        s[n][e] = pv * (dp[n][e] - Ds[r]); // dS
      }
    warp_pv<NT, D, P>(dq, s, sK + buf * BK * P); // dQ += dS K
    __syncthreads();
  }
  cp_async_wait<0>();

  bf16 *gdq = p.out + b * p.q_bstride + h * D;
#pragma unroll
  for (int r = 0; r < 2; r++) {
    if (qi[r] >= p.Tq) continue;
#pragma unroll
    for (int d = 0; d < DT; d++)
      *(uint32_t *)(gdq + qi[r] * p.q_rstride + d * 8 + (lane & 3) * 2) =
          pack_bf16(dq[d][2 * r] * p.scale, dq[d][2 * r + 1] * p.scale);
  }
}

template <int D, int BQ, int BK, bool AREG>
static cudaError_t launch_bwd(attn_params p, int64_t B, float *dsum, bf16 *dq, bf16 *dk, bf16 *dv, cudaStream_t s) {
  constexpr int P = D + 8;
  p.dsum = dsum;
  if (p.Tq > 0) {
    int64_t rows = B * p.Hq * p.Tq;
    k_attn_dsum<<<(unsigned)((rows * 32 + 255) / 256), 256, 0, s>>>(p, B, D, dsum);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return e;
  }
  if (p.Tk > 0) {
    size_t smem = (size_t)(2 * 64 * P + 4 * BQ * P) * sizeof(bf16) + 4 * BQ * sizeof(float);
    cudaError_t e = cudaFuncSetAttribute(k_attn_bwd_dkdv<D, BQ, AREG>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         (int)smem);
    if (e != cudaSuccess) return e;
    attn_params pk = p;
    pk.out = dk;
    pk.out2 = dv;
    dim3 grid((unsigned)((p.Tk + 63) / 64), (unsigned)p.Hkv, (unsigned)B);
    k_attn_bwd_dkdv<D, BQ, AREG><<<grid, ATTN_THREADS, smem, s>>>(pk);
    e = cudaGetLastError();
    if (e != cudaSuccess) return e;
  }
  if (p.Tq > 0) {
    size_t smem = (size_t)(2 * 64 * P + 4 * BK * P) * sizeof(bf16);
    cudaError_t e = cudaFuncSetAttribute(k_attn_bwd_dq<D, BK, AREG>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         (int)smem);
    if (e != cudaSuccess) return e;
    attn_params pq = p;
    pq.out = dq;
    dim3 grid((unsigned)((p.Tq + 63) / 64), (unsigned)p.Hq, (unsigned)B);
    k_attn_bwd_dq<D, BK, AREG><<<grid, ATTN_THREADS, smem, s>>>(pq);
    e = cudaGetLastError();
    if (e != cudaSuccess) return e;
  }
  return cudaSuccess;
}

extern "C" pose_status pose_cuda_attn_bwd(const pose_cuda_attn_dims *d, const uint16_t *q, const uint16_t *k,
                                          const uint16_t *v, const uint16_t *o, const float *lse,
                                          const uint16_t *dout, uint16_t *dq, uint16_t *dk, uint16_t *dv,
                                          pose_cuda_stream s) {
  POSE_TRY(pc_attn_check(d, "attn_bwd"));
  if (d->Tq == 0 && d->Tk == 0) return POSE_OK;
  PC_REQUIRE(q && k && v && o && lse && dout && dq && dk && dv, "attn_bwd: NULL buffer");
  PC_REQUIRE(((uintptr_t)q | (uintptr_t)k | (uintptr_t)v | (uintptr_t)o | (uintptr_t)dout | (uintptr_t)dq |
              (uintptr_t)dk | (uintptr_t)dv) % 16 == 0,
             "attn_bwd: all bf16 buffers must be 16-byte aligned");
  attn_params p = {};
  p.q = (const bf16 *)q;
  p.k = (const bf16 *)k;
  p.v = (const bf16 *)v;
  p.o = (const bf16 *)o;
  p.dout = (const bf16 *)dout;
  p.lse_in = lse;
  p.Tq = d->Tq; p.Tk = d->Tk; p.q_off = d->q_off; p.Hq = d->Hq; p.Hkv = d->Hkv; p.window = d->window;
  p.q_bstride = d->q_bstride; p.q_rstride = d->q_rstride; p.kv_bstride = d->kv_bstride; p.kv_rstride = d->kv_rstride;
  p.scale = d->scale;
  float *dsum = NULL;
  POSE_TRY(pc_scratch_alloc((void **)&dsum, sizeof(float) * (size_t)(d->B * d->Hq * d->Tq), s));
  // Fixed A operands in registers (areg) or reloaded from shared memory every tile: run 4 measured the first 4%
  // faster at D = 64 and 1-6% slower at D = 128 (232 instead of 158 registers in dQ: 2 blocks per SM instead of 3).
  // POSE_ATTN_BWD_AREG=0/1 overrides, for tests and benchmarks of both.
  const char *ar = getenv("POSE_ATTN_BWD_AREG");
  bool areg = ar && (ar[0] == '0' || ar[0] == '1') ? ar[0] == '1' : d->D == 64;
  bf16 *bq = (bf16 *)dq, *bk = (bf16 *)dk, *bv = (bf16 *)dv;
  cudaError_t e;
  // the wgmma/TMA kernels of attn_bwd_wg.cu on Hopper (128-row blocks: short sequences keep mma.sync, as the
  // forward does); POSE_ATTN_BWD=mma forces the mma.sync kernels
  if (d->Tq > 64 && d->Tk > 0 && pc_attn_bwd_wg_usable(d->D)) {
    p.dsum = dsum;
    int64_t rows = d->B * p.Hq * p.Tq;
    k_attn_dsum<<<(unsigned)((rows * 32 + 255) / 256), 256, 0, (cudaStream_t)s>>>(p, d->B, (int)d->D, dsum);
    e = cudaGetLastError();
    if (e == cudaSuccess) e = pc_attn_bwd_wg(p, d->B, d->D, bq, bk, bv, (cudaStream_t)s);
  } else
    e = d->D == 64 ? (areg ? launch_bwd<64, 64, 64, true>(p, d->B, dsum, bq, bk, bv, s)
                                     : launch_bwd<64, 64, 64, false>(p, d->B, dsum, bq, bk, bv, s))
                             : (areg ? launch_bwd<128, 32, 32, true>(p, d->B, dsum, bq, bk, bv, s)
                                     : launch_bwd<128, 32, 32, false>(p, d->B, dsum, bq, bk, bv, s));
  pc_scratch_free(dsum, s);
  if (e != cudaSuccess) return pose_cuda_fail(e, "attn_bwd launch");
  return POSE_OK;
}
