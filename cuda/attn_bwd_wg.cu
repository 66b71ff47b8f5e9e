// Flash-attention backward on Hopper's warpgroup tensor-core instructions (wgmma + TMA, sm_90a).
//
// Same contract, arithmetic and kernel split as attn_bwd.cu (Dsum first, then dK/dV per key tile and dQ per query
// tile: deterministic, no atomics), FA3-style engine: each block is one producer warpgroup (one warp streams tiles
// with the TMA engine into a two-stage ring of full/empty mbarriers) and two consumer warpgroups of 64 rows each.
//
// dK/dV block: 128 keys (consumer c owns keys k0 + 64c ..), K and V loaded once; streams (Q, dO, lse, Dsum) tiles of
// 64 queries over every query head of the group and every query tile that sees the keys. Per tile and consumer:
//   S^T  = K Q^T        (wgmma m64n64, A = K smem K-major, B = Q K-major)
//   dP^T = V dO^T       (A = V smem, B = dO K-major)
//   P^T  = exp2(S^T scale log2e - lse log2e) masked, dS^T = P^T (dP^T - Dsum)
//   dV  += P^T dO       (A = P^T registers, B = dO MN-major)
//   dK  += dS^T Q       (A = dS^T registers, B = Q MN-major)
// dQ block: 128 queries (consumer c owns 64), Q and dO loaded once, streams (K, V) tiles of 64 keys:
//   S = Q K^T, dP = dO V^T, dS = P (dP - Dsum), dQ += dS K (B = K MN-major).
// lse and Dsum of a query tile are read by the producer warp with plain loads into the stage (they are not 16-byte
// aligned rows, so no TMA); its 32 lanes arrive on the stage's full barrier next to the TMA transaction count.
// The consumers keep the register-A products in flight into the next tile, mask only boundary tiles, and run
// three stages where shared memory allows (below).
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cuda.h>
#include <cudaTypedefs.h>

#include "wgmma.cuh"

#define BW_THREADS 384 // warpgroup 0: producer (warp 0 works); warpgroups 1, 2: consumers

cudaError_t pc_attn_make_tmap(CUtensorMap *m, const void *base, int64_t D, int64_t H, int64_t T, int64_t B,
                              int64_t rstride, int64_t bstride, int rows);

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
// C[64 x N] = A[64 x D] B[N x D]^T, a 64-row and an N-row swizzled K-major tile in shared memory (not waited for)
template <int D, int N>
__device__ __forceinline__ void wg_abt(float *c, uint32_t a, uint32_t b) {
#pragma unroll
  for (int ks = 0; ks < D / 16; ks++) {
    const uint32_t ka = (ks >> 2) * (64 * 128) + (ks & 3) * 32, kb = (ks >> 2) * (N * 128) + (ks & 3) * 32;
    if constexpr (N == 128) wgmma_m64n128_ss<0>(c, wg_desc(a + ka, 16, 1024), wg_desc(b + kb, 16, 1024), ks > 0);
    else wgmma_m64n64_ss<0>(c, wg_desc(a + ka, 16, 1024), wg_desc(b + kb, 16, 1024), ks > 0);
  }
}
// C[64 x D] += A[64 x N] B[N x D]: A from registers (N/16 k16 blocks), B an N-row swizzled tile read MN-major
template <int D, int N>
__device__ __forceinline__ void wg_ab_rs(float *c, const uint32_t (*a)[4], uint32_t b) {
#pragma unroll
  for (int kk = 0; kk < N / 16; kk++) {
    const uint64_t db = wg_desc(b + kk * 2048, N * 128, 1024);
    if constexpr (D == 128) wgmma_m64n128_rs<1>(c, a[kk], db, 1);
    else wgmma_m64n64_rs<1>(c, a[kk], db, 1);
  }
}
// accumulator of m64nN -> register A operand (k16 block kk = n8 blocks 2kk, 2kk + 1)
template <int N>
__device__ __forceinline__ void wg_pack_a(uint32_t (*a)[4], const float *s) {
#pragma unroll
  for (int kk = 0; kk < N / 16; kk++) {
    a[kk][0] = pack_bf16(s[8 * kk + 0], s[8 * kk + 1]);
    a[kk][1] = pack_bf16(s[8 * kk + 2], s[8 * kk + 3]);
    a[kk][2] = pack_bf16(s[8 * kk + 4], s[8 * kk + 5]);
    a[kk][3] = pack_bf16(s[8 * kk + 6], s[8 * kk + 7]);
  }
}
#endif

// ---- software-pipelined consumers, masks only on boundary tiles ----------------------------------------------
// Each consumer warpgroup keeps the tensor cores fed while its CUDA cores run the elementwise parts (lesson 1 of
// the forward, cuda/NOTES.md run W3): wgmma groups retire in issue order, so
//   dK/dV, tile j: issue S_j | wait<1> (dV_{j-1}, dK_{j-1} retired; release the stage they read) | issue dP_j |
//   wait<1> (S_j) | P_j under dP_j | wait<0> | dS_j | pack both, issue dV_j + dK_j (one group) -- they stay in
//   flight into tile j + 1, S_{j+1} queued behind them. (Issuing dV_j before dS_j, to run under it, needs
//   P, dS, their packs and both accumulators at once: ptxas serialises the wgmmas at D = 128, C7512.)
//   dQ, tile j: issue S_j | wait<1> (dQ_{j-1} retired; release its stage) | issue dP_j | wait<1> (S_j) | P_j under
//   dP_j | wait<0> | dS_j | pack, issue dQ_j  -- dQ_j stays in flight into tile j + 1.
// A register A operand (P, dS) is rewritten only after the group that read it has retired (else ptxas serialises,
// C7513). The stage a product still reads is released (empty barrier) only after that product retired: a stage is
// held into the next processed tile; a skipped tile first drains everything and releases what is held (holding a
// stage across a skip could deadlock: the producer may need exactly that stage for the tile after next).
// Interior tiles take an unmasked loop (template FULL): one FFMA + one MUFU per P element, one FADD + one FMUL per
// dS element, one pack per two of each; lse/Dsum pairs come from shared memory as float2.
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
// Masks of boundary tiles as one column interval per row: the row's visible columns of the tile are [lo, hi)
// (clamped to [0, W]); an element is kept iff (unsigned)(col - lo) < hi - lo: one add, one compare, one select.
// Per row of a dK/dV tile (a key k, columns = queries qb + col): qb + col >= k - q_off, < Tq, and with a window
// < k - q_off + window; nothing if k >= Tk. Per row of a dQ tile (a query q, columns = keys k0 + col): k0 + col
// <= q + q_off, < Tk, with a window > q + q_off - window; nothing if q >= Tq.
struct bw2_span {
  int lo, n;
  __device__ __forceinline__ void set(int64_t lo64, int64_t hi64, int W) {
    lo64 = lo64 < 0 ? 0 : lo64 > W ? W : lo64;
    hi64 = hi64 < lo64 ? lo64 : hi64 > W ? W : hi64;
    lo = (int)lo64;
    n = (int)(hi64 - lo64);
  }
  __device__ __forceinline__ bool in(int col) const { return (unsigned)(col - lo) < (unsigned)n; }
};
// P^T of a dK/dV tile: st[4j + e] is key row e >> 1, query column 8j + 2(lane & 3) + (e & 1)
template <int BQ, bool FULL>
__device__ __forceinline__ void bw2_pt(float *st, const float *L, float sl2, int lane, const bw2_span *sp) {
#pragma unroll
  for (int j = 0; j < BQ / 8; j++) {
    const int col = j * 8 + (lane & 3) * 2;
    const float2 l2 = *(const float2 *)(L + col);
#pragma unroll
    for (int e = 0; e < 4; e++) {
      const float pv = fast_exp2(fmaf(st[4 * j + e], sl2, -((e & 1) ? l2.y : l2.x)));
      if constexpr (FULL) st[4 * j + e] = pv;
      else st[4 * j + e] = sp[e >> 1].in(col + (e & 1)) ? pv : 0.0f;
    }
  }
}
// P of a dQ tile: sa[4n + e] is query row e >> 1, key column 8n + 2(lane & 3) + (e & 1)
template <int BK, bool FULL>
__device__ __forceinline__ void bw2_p(float *sa, const float *L, float sl2, int lane, const bw2_span *sp) {
  const float nl0 = -L[0], nl1 = -L[1];
#pragma unroll
  for (int n = 0; n < BK / 8; n++)
#pragma unroll
    for (int e = 0; e < 4; e++) {
      const float pv = fast_exp2(fmaf(sa[4 * n + e], sl2, (e >> 1) ? nl1 : nl0));
      if constexpr (FULL) sa[4 * n + e] = pv;
      else sa[4 * n + e] = sp[e >> 1].in(n * 8 + (lane & 3) * 2 + (e & 1)) ? pv : 0.0f;
    }
}
#endif

template <int D, int BQ, int NS>
__global__ void __launch_bounds__(BW_THREADS, 1)
    k_attn_bwd_dkdv_wg2(const __grid_constant__ CUtensorMap tq, const __grid_constant__ CUtensorMap tdo,
                        const __grid_constant__ CUtensorMap tk, const __grid_constant__ CUtensorMap tv, attn_params p) {
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
  constexpr int BN = 128, TB = 64 * D * 2, TQ = BQ * D * 2, DB = D / 64, NA = BQ / 2, NO = D / 2;
  // dP^T issued right behind S^T: P^T, dP^T and the in-flight packs fit next to dK, dV only at D = 64, BQ = 64
  constexpr bool EARLY = D == 64 && BQ == 64;
  extern __shared__ unsigned char smem_dyn[];
  unsigned char *sK = (unsigned char *)(((uintptr_t)smem_dyn + 1023) & ~(uintptr_t)1023);
  unsigned char *sV = sK + 2 * TB, *sQ = sV + 2 * TB, *sdO = sQ + NS * TQ;
  float *sL = (float *)(sdO + NS * TQ), *sDs = sL + NS * BQ;
  const uint32_t bfix = smem_u32(sDs + NS * BQ), bfull = bfix + 8, bempty = bfull + 8 * NS;

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int64_t kt = blockIdx.x, hk = blockIdx.y, b = blockIdx.z, G = p.Hq / p.Hkv;
  const int64_t k0 = kt * BN, k1 = k0 + BN < p.Tk ? k0 + BN : p.Tk;
  int64_t q_lo = k0 - p.q_off;
  if (q_lo < 0) q_lo = 0;
  int64_t q_hi = p.Tq;
  if (p.window > 0 && k1 - 1 - p.q_off + p.window < q_hi) q_hi = k1 - 1 - p.q_off + p.window;
  const int64_t qt_lo = q_lo / BQ, nqt = q_hi > q_lo ? (q_hi + BQ - 1) / BQ - qt_lo : 0;
  const int items = (int)(G * nqt);

  if (tid == 0) {
    mbar_init(bfix, 1);
    for (int s = 0; s < NS; s++) {
      mbar_init(bfull + 8 * s, 1 + 32); // the TMA arrive.expect_tx + the 32 lanes that wrote lse/Dsum
      mbar_init(bempty + 8 * s, 256);   // every consumer thread, once per use
    }
    mbar_init_fence();
  }
  __syncthreads();

  if (warp < 4) {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 40;\n");
    if (warp == 0) {
      if (lane == 0) {
        mbar_expect_tx(bfix, 4 * TB);
        for (int c = 0; c < 2; c++)
          for (int cb = 0; cb < DB; cb++) {
            tma_load_4d(smem_u32(sK + c * TB + cb * 64 * 128), &tk, cb * 64, (int)hk, (int)(k0 + 64 * c), (int)b, bfix);
            tma_load_4d(smem_u32(sV + c * TB + cb * 64 * 128), &tv, cb * 64, (int)hk, (int)(k0 + 64 * c), (int)b, bfix);
          }
      }
      for (int it = 0; it < items; it++) {
        const int s = it % NS, n = it / NS;
        const int64_t h = hk * G + it / nqt, qb = (qt_lo + it % nqt) * BQ;
        if (n > 0) mbar_wait(bempty + 8 * s, (n - 1) & 1);
        if (lane == 0) {
          const uint32_t bar = bfull + 8 * s;
          mbar_expect_tx(bar, 2 * TQ);
          for (int cb = 0; cb < DB; cb++) {
            tma_load_4d(smem_u32(sQ + s * TQ + cb * BQ * 128), &tq, cb * 64, (int)h, (int)qb, (int)b, bar);
            tma_load_4d(smem_u32(sdO + s * TQ + cb * BQ * 128), &tdo, cb * 64, (int)h, (int)qb, (int)b, bar);
          }
        }
        const int64_t rb = (b * p.Hq + h) * p.Tq;
        for (int j = lane; j < BQ; j += 32) {
          const int64_t q = qb + j;
          const bool ok = q < p.Tq;
          sL[s * BQ + j] = ok ? p.lse_in[rb + q] * ATTN_LOG2E : INFINITY;
          sDs[s * BQ + j] = ok ? p.dsum[rb + q] : 0.0f;
        }
        mbar_arrive(bfull + 8 * s);
      }
    }
  } else {
    asm volatile("setmaxnreg.inc.sync.aligned.u32 232;\n");
    const int c = (warp >> 2) - 1, w = warp & 3;
    const int64_t wk0 = k0 + 64 * c;
    const int64_t wk1 = wk0 + 63 < p.Tk ? wk0 + 63 : p.Tk - 1;
    const int kr[2] = {(int)(wk0 + w * 16 + (lane >> 2)), (int)(wk0 + w * 16 + (lane >> 2) + 8)};
    const float sl2 = p.scale * ATTN_LOG2E;
    const uint32_t kbase = smem_u32(sK + c * TB), vbase = smem_u32(sV + c * TB);
    float dk[NO], dv[NO];
#pragma unroll
    for (int i = 0; i < NO; i++) dk[i] = dv[i] = 0.0f;
    uint32_t ap[BQ / 16][4], ads[BQ / 16][4];
    int held = -1; // stage read by the dV/dK products still in flight
    mbar_wait(bfix, 0);

    for (int it = 0; it < items; it++) {
      const int s = it % NS, ph = (it / NS) & 1;
      const int64_t qb = (qt_lo + it % nqt) * BQ;
      const bool skip = wk0 >= p.Tk || qb + BQ - 1 + p.q_off < wk0 ||
                        (p.window > 0 && qb + p.q_off - wk1 >= p.window);
      mbar_wait(bfull + 8 * s, ph);
      if (skip) {
        if (held >= 0) {
          wg_wait<0>();
          wg_acc_fence<NO>(dv);
          wg_acc_fence<NO>(dk);
          mbar_arrive(bempty + 8 * held);
          held = -1;
        }
        mbar_arrive(bempty + 8 * s);
        continue;
      }
      const uint32_t qbase = smem_u32(sQ + s * TQ), dobase = smem_u32(sdO + s * TQ);
      float st[NA], dpt[NA];
      wg_fence();
      wg_abt<D, BQ>(st, kbase, qbase); // S^T = K Q^T
      wg_commit();
      if constexpr (EARLY) { // registers allow dP^T in flight next to the previous products
        wg_abt<D, BQ>(dpt, vbase, dobase); // dP^T = V dO^T
        wg_commit();
        wg_wait<2>(); // dV_{j-1}, dK_{j-1} retired
      } else {
        wg_wait<1>(); // dV_{j-1}, dK_{j-1} retired (S^T queued behind them keeps the tensor cores busy)
      }
      wg_acc_fence<NO>(dv);
      wg_acc_fence<NO>(dk);
      if (held >= 0) mbar_arrive(bempty + 8 * held);
      held = s;
      if constexpr (!EARLY) {
        wg_fence();
        wg_abt<D, BQ>(dpt, vbase, dobase); // dP^T = V dO^T
        wg_commit();
      }
      wg_wait<1>(); // S^T retired
      wg_acc_fence<NA>(st);
      const float *L = sL + s * BQ, *Ds = sDs + s * BQ;
      const bool full = qb + BQ <= p.Tq && wk0 + 64 <= p.Tk && wk0 + 63 <= qb + p.q_off &&
                        (p.window <= 0 || qb + BQ - 1 + p.q_off - wk0 < p.window);
      if (full) bw2_pt<BQ, true>(st, L, sl2, lane, NULL);
      else {
        bw2_span sp[2];
#pragma unroll
        for (int r = 0; r < 2; r++) {
          const int64_t k = kr[r];
          int64_t hi = p.Tq;
          if (p.window > 0 && k - p.q_off + p.window < hi) hi = k - p.q_off + p.window;
          if (k >= p.Tk) hi = 0;
          sp[r].set(k - p.q_off - qb, hi - qb, BQ);
        }
        bw2_pt<BQ, false>(st, L, sl2, lane, sp);
      }
      wg_wait<0>(); // dP^T
      wg_acc_fence<NA>(dpt);
      // dS^T = P^T (dP^T - Dsum), packed per k16 block as it is made (P, dP die block by block)
#pragma unroll
      for (int kk = 0; kk < BQ / 16; kk++) {
#pragma unroll
        for (int h2 = 0; h2 < 2; h2++) {
          const int j = 2 * kk + h2;
          const float2 d2 = *(const float2 *)(Ds + j * 8 + (lane & 3) * 2);
          const float *pj = st + 4 * j, *dj = dpt + 4 * j;
          ap[kk][2 * h2] = pack_bf16(pj[0], pj[1]);
          ap[kk][2 * h2 + 1] = pack_bf16(pj[2], pj[3]);
          ads[kk][2 * h2] = pack_bf16(pj[0] * (dj[0] - d2.x), pj[1] * (dj[1] - d2.y));
          ads[kk][2 * h2 + 1] = pack_bf16(pj[2] * (dj[2] - d2.x), pj[3] * (dj[3] - d2.y));
        }
      }
      wg_fence();
      wg_ab_rs<D, BQ>(dv, ap, dobase); // dV += P^T dO
      wg_ab_rs<D, BQ>(dk, ads, qbase); // dK += dS^T Q
      wg_commit();
    }
    wg_wait<0>();
    wg_acc_fence<NO>(dv);
    wg_acc_fence<NO>(dk);
    if (held >= 0) mbar_arrive(bempty + 8 * held);

    bf16 *gdk = p.out + b * p.kv_bstride + hk * D, *gdv = p.out2 + b * p.kv_bstride + hk * D;
#pragma unroll
    for (int r = 0; r < 2; r++) {
      if (kr[r] >= p.Tk) continue;
#pragma unroll
      for (int j = 0; j < D / 8; j++) {
        const int64_t off = (int64_t)kr[r] * p.kv_rstride + j * 8 + (lane & 3) * 2;
        *(uint32_t *)(gdk + off) = pack_bf16(dk[4 * j + 2 * r] * p.scale, dk[4 * j + 2 * r + 1] * p.scale);
        *(uint32_t *)(gdv + off) = pack_bf16(dv[4 * j + 2 * r], dv[4 * j + 2 * r + 1]);
      }
    }
  }
#endif
}

template <int D, int BK, int NS>
__global__ void __launch_bounds__(BW_THREADS, 1)
    k_attn_bwd_dq_wg2(const __grid_constant__ CUtensorMap tq, const __grid_constant__ CUtensorMap tdo,
                      const __grid_constant__ CUtensorMap tk, const __grid_constant__ CUtensorMap tv, attn_params p) {
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
  constexpr int BM = 128, TB = 64 * D * 2, TK = BK * D * 2, DB = D / 64, NA = BK / 2, NO = D / 2;
  constexpr bool EARLY = D == 64; // dP issued right behind S (S, dP, dQ and the in-flight dS fit at D = 64)
  extern __shared__ unsigned char smem_dyn[];
  unsigned char *sQ = (unsigned char *)(((uintptr_t)smem_dyn + 1023) & ~(uintptr_t)1023);
  unsigned char *sdO = sQ + 2 * TB, *sK = sdO + 2 * TB, *sV = sK + NS * TK;
  const uint32_t bfix = smem_u32(sV + NS * TK), bfull = bfix + 8, bempty = bfull + 8 * NS;

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int64_t qt = gridDim.x - 1 - blockIdx.x, h = blockIdx.y, b = blockIdx.z; // longest rows first
  const int64_t hk = h / (p.Hq / p.Hkv), q0 = qt * BM;
  const int64_t q_last = (q0 + BM < p.Tq ? q0 + BM : p.Tq) - 1;
  int64_t k_hi = q_last + p.q_off + 1;
  if (k_hi > p.Tk) k_hi = p.Tk;
  int64_t k_lo = p.window > 0 ? q0 + p.q_off - p.window + 1 : 0;
  if (k_lo < 0) k_lo = 0;
  const int64_t kt_lo = k_lo / BK, kt_hi = k_hi > k_lo ? (k_hi + BK - 1) / BK : kt_lo;
  const int ntiles = (int)(kt_hi - kt_lo);

  if (tid == 0) {
    mbar_init(bfix, 1);
    for (int s = 0; s < NS; s++) {
      mbar_init(bfull + 8 * s, 1);
      mbar_init(bempty + 8 * s, 256);
    }
    mbar_init_fence();
  }
  __syncthreads();

  if (warp < 4) {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 40;\n");
    if (tid == 0) {
      mbar_expect_tx(bfix, 4 * TB);
      for (int c = 0; c < 2; c++)
        for (int cb = 0; cb < DB; cb++) {
          tma_load_4d(smem_u32(sQ + c * TB + cb * 64 * 128), &tq, cb * 64, (int)h, (int)(q0 + 64 * c), (int)b, bfix);
          tma_load_4d(smem_u32(sdO + c * TB + cb * 64 * 128), &tdo, cb * 64, (int)h, (int)(q0 + 64 * c), (int)b, bfix);
        }
      for (int j = 0; j < ntiles; j++) {
        const int s = j % NS, n = j / NS;
        const int row = (int)((kt_lo + j) * BK);
        const uint32_t bar = bfull + 8 * s;
        if (n > 0) mbar_wait(bempty + 8 * s, (n - 1) & 1);
        mbar_expect_tx(bar, 2 * TK);
        for (int cb = 0; cb < DB; cb++) {
          tma_load_4d(smem_u32(sK + s * TK + cb * BK * 128), &tk, cb * 64, (int)hk, row, (int)b, bar);
          tma_load_4d(smem_u32(sV + s * TK + cb * BK * 128), &tv, cb * 64, (int)hk, row, (int)b, bar);
        }
      }
    }
  } else {
    asm volatile("setmaxnreg.inc.sync.aligned.u32 232;\n");
    const int c = (warp >> 2) - 1, w = warp & 3;
    const int64_t wq0 = q0 + 64 * c;
    const int64_t wq1 = wq0 + 63 < p.Tq ? wq0 + 63 : p.Tq - 1;
    const int qr[2] = {(int)(wq0 + w * 16 + (lane >> 2)), (int)(wq0 + w * 16 + (lane >> 2) + 8)};
    const float sl2 = p.scale * ATTN_LOG2E;
    float L[2], Ds[2];
#pragma unroll
    for (int r = 0; r < 2; r++) {
      const bool ok = qr[r] < p.Tq;
      const int64_t i = (b * p.Hq + h) * p.Tq + qr[r];
      L[r] = ok ? p.lse_in[i] * ATTN_LOG2E : INFINITY;
      Ds[r] = ok ? p.dsum[i] : 0.0f;
    }
    const uint32_t qbase = smem_u32(sQ + c * TB), dobase = smem_u32(sdO + c * TB);
    float dq[NO];
#pragma unroll
    for (int i = 0; i < NO; i++) dq[i] = 0.0f;
    uint32_t ads[BK / 16][4];
    int held = -1; // stage read by the dQ product still in flight
    mbar_wait(bfix, 0);

    for (int j = 0; j < ntiles; j++) {
      const int s = j % NS, ph = (j / NS) & 1;
      const int64_t k0 = (kt_lo + j) * BK;
      const bool skip = wq0 >= p.Tq || k0 > wq1 + p.q_off || (p.window > 0 && k0 + BK - 1 + p.window <= wq0 + p.q_off);
      mbar_wait(bfull + 8 * s, ph);
      if (skip) {
        if (held >= 0) {
          wg_wait<0>();
          wg_acc_fence<NO>(dq);
          mbar_arrive(bempty + 8 * held);
          held = -1;
        }
        mbar_arrive(bempty + 8 * s);
        continue;
      }
      const uint32_t kbase = smem_u32(sK + s * TK), vbase = smem_u32(sV + s * TK);
      float sa[NA], dp[NA];
      wg_fence();
      wg_abt<D, BK>(sa, qbase, kbase); // S = Q K^T
      wg_commit();
      if constexpr (EARLY) { // registers allow dP in flight next to dQ_{j-1}
        wg_abt<D, BK>(dp, dobase, vbase); // dP = dO V^T
        wg_commit();
        wg_wait<2>(); // dQ_{j-1} retired
      } else {
        wg_wait<1>(); // dQ_{j-1} retired
      }
      wg_acc_fence<NO>(dq);
      if (held >= 0) mbar_arrive(bempty + 8 * held);
      held = s;
      if constexpr (!EARLY) {
        wg_fence();
        wg_abt<D, BK>(dp, dobase, vbase); // dP = dO V^T
        wg_commit();
      }
      wg_wait<1>(); // S
      wg_acc_fence<NA>(sa);
      const bool full = wq0 + 64 <= p.Tq && k0 + BK <= p.Tk && k0 + BK - 1 <= wq0 + p.q_off &&
                        (p.window <= 0 || wq0 + 63 + p.q_off - k0 < p.window);
      if (full) bw2_p<BK, true>(sa, L, sl2, lane, NULL);
      else {
        bw2_span sp[2];
#pragma unroll
        for (int r = 0; r < 2; r++) {
          const int64_t qa = (int64_t)qr[r] + p.q_off;
          int64_t lo = 0, hi = qa + 1 < p.Tk ? qa + 1 : p.Tk;
          if (p.window > 0) lo = qa - p.window + 1;
          if (qr[r] >= p.Tq) hi = lo;
          sp[r].set(lo - k0, hi - k0, BK);
        }
        bw2_p<BK, false>(sa, L, sl2, lane, sp);
      }
      wg_wait<0>(); // dP
      wg_acc_fence<NA>(dp);
#pragma unroll
      for (int n = 0; n < BK / 8; n++)
#pragma unroll
        for (int e = 0; e < 4; e++) sa[4 * n + e] *= dp[4 * n + e] - Ds[e >> 1]; // dS
      wg_pack_a<BK>(ads, sa);
      wg_fence();
      wg_ab_rs<D, BK>(dq, ads, kbase); // dQ += dS K
      wg_commit();
    }
    wg_wait<0>();
    wg_acc_fence<NO>(dq);
    if (held >= 0) mbar_arrive(bempty + 8 * held);

    bf16 *gdq = p.out + b * p.q_bstride + h * D;
#pragma unroll
    for (int r = 0; r < 2; r++) {
      if (qr[r] >= p.Tq) continue;
#pragma unroll
      for (int n = 0; n < D / 8; n++)
        *(uint32_t *)(gdq + (int64_t)qr[r] * p.q_rstride + n * 8 + (lane & 3) * 2) =
            pack_bf16(dq[4 * n + 2 * r] * p.scale, dq[4 * n + 2 * r + 1] * p.scale);
    }
  }
#endif
}

// BQ: query rows per streamed tile of the dK/dV kernel, BK: key rows per streamed tile of the dQ kernel; NSK stages
// of Q/dO tiles in dK/dV, NSQ stages of K/V tiles in dQ
template <int D, int BQ, int BK, int NSK, int NSQ>
static cudaError_t launch_bwd_wg2(const attn_params &p, int64_t B, bf16 *dq, bf16 *dk, bf16 *dv, cudaStream_t s) {
  constexpr int TB = 64 * D * 2;
  CUtensorMap tq, tdo, tk, tv, tq64, tdo64, tk64, tv64;
  cudaError_t e;
  if ((e = pc_attn_make_tmap(&tq, p.q, D, p.Hq, p.Tq, B, p.q_rstride, p.q_bstride, BQ)) != cudaSuccess) return e;
  if ((e = pc_attn_make_tmap(&tdo, p.dout, D, p.Hq, p.Tq, B, p.q_rstride, p.q_bstride, BQ)) != cudaSuccess) return e;
  if ((e = pc_attn_make_tmap(&tk64, p.k, D, p.Hkv, p.Tk, B, p.kv_rstride, p.kv_bstride, 64)) != cudaSuccess) return e;
  if ((e = pc_attn_make_tmap(&tv64, p.v, D, p.Hkv, p.Tk, B, p.kv_rstride, p.kv_bstride, 64)) != cudaSuccess) return e;
  if ((e = pc_attn_make_tmap(&tq64, p.q, D, p.Hq, p.Tq, B, p.q_rstride, p.q_bstride, 64)) != cudaSuccess) return e;
  if ((e = pc_attn_make_tmap(&tdo64, p.dout, D, p.Hq, p.Tq, B, p.q_rstride, p.q_bstride, 64)) != cudaSuccess) return e;
  if ((e = pc_attn_make_tmap(&tk, p.k, D, p.Hkv, p.Tk, B, p.kv_rstride, p.kv_bstride, BK)) != cudaSuccess) return e;
  if ((e = pc_attn_make_tmap(&tv, p.v, D, p.Hkv, p.Tk, B, p.kv_rstride, p.kv_bstride, BK)) != cudaSuccess) return e;
  {
    const size_t smem =
        (size_t)(4 * TB + 2 * NSK * BQ * D * 2) + 2 * NSK * BQ * sizeof(float) + 8 * (1 + 2 * NSK) + 1024;
    e = cudaFuncSetAttribute(k_attn_bwd_dkdv_wg2<D, BQ, NSK>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    if (e != cudaSuccess) return e;
    attn_params pk = p;
    pk.out = dk;
    pk.out2 = dv;
    dim3 grid((unsigned)((p.Tk + 127) / 128), (unsigned)p.Hkv, (unsigned)B);
    k_attn_bwd_dkdv_wg2<D, BQ, NSK><<<grid, BW_THREADS, smem, s>>>(tq, tdo, tk64, tv64, pk);
    if ((e = cudaGetLastError()) != cudaSuccess) return e;
  }
  {
    const size_t smem = (size_t)(4 * TB + 2 * NSQ * BK * D * 2) + 8 * (1 + 2 * NSQ) + 1024;
    e = cudaFuncSetAttribute(k_attn_bwd_dq_wg2<D, BK, NSQ>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    if (e != cudaSuccess) return e;
    attn_params pq = p;
    pq.out = dq;
    dim3 grid((unsigned)((p.Tq + 127) / 128), (unsigned)p.Hq, (unsigned)B);
    k_attn_bwd_dq_wg2<D, BK, NSQ><<<grid, BW_THREADS, smem, s>>>(tq64, tdo64, tk, tv, pq);
    if ((e = cudaGetLastError()) != cudaSuccess) return e;
  }
  return cudaSuccess;
}

// Is the wgmma backward usable: built for sm_90a, a 9.0 device, D = 64 or 128, not switched off (POSE_ATTN_BWD=mma)?
int pc_attn_bwd_wg_usable(int64_t D) {
#if defined(POSE_CUDA_SM90A)
  const char *cfg = getenv("POSE_ATTN_BWD");
  if (cfg && strcmp(cfg, "wg") != 0 && strcmp(cfg, "wgq64") != 0) return 0;
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

// dK, dV and dQ (p.dsum already computed); Tq and Tk > 0. The dQ kernel streams 128-key tiles (S and dP m64n128).
// (The first sm_90a version, which retired every product within its tile, ran at 289 TFLOP/s at T16384 D128 and
// was removed after run W7 measured this one at 410: cuda/NOTES.md.)
cudaError_t pc_attn_bwd_wg(const attn_params &p, int64_t B, int64_t D, bf16 *dq, bf16 *dk, bf16 *dv, cudaStream_t s) {
  const char *cfg = getenv("POSE_ATTN_BWD");
  // three stages where shared memory allows (dQ at D = 128: 64 KiB of Q/dO + 64 KiB per K/V stage);
  // D = 64: 128-query tiles in dK/dV (twice the MMA work per elementwise step; 288 vs 263 TFLOP/s in run W7);
  // POSE_ATTN_BWD=wgq64 keeps 64-query tiles there. D = 128 has no register room for 128-query tiles.
  if (D == 64 && !(cfg && !strcmp(cfg, "wgq64"))) return launch_bwd_wg2<64, 128, 128, 3, 3>(p, B, dq, dk, dv, s);
  return D == 128 ? launch_bwd_wg2<128, 64, 128, 3, 2>(p, B, dq, dk, dv, s)
                  : launch_bwd_wg2<64, 64, 128, 3, 3>(p, B, dq, dk, dv, s);
}
