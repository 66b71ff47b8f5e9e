// Cross-entropy over rows of logits, one block per row. The forward makes a single pass with an online max/sum
// (each thread keeps a running (max, sum of exp(x - max)), merged across the block at the end), so any vocabulary
// size works with fp32 statistics and the row is read once; the backward pass re-reads it (from L2 for rows of a
// few hundred KB) and writes (softmax - onehot) * scale, possibly over the logits themselves.
#include <math.h>

#include "common.cuh"

#define XENT_THREADS 512

struct ms_pair {
  float m, s;
};

__device__ __forceinline__ void ms_add(ms_pair &a, float x) {
  if (x == -INFINITY) return;
  if (x > a.m) {
    a.s = a.s * expf(a.m - x) + 1.0f; // a.m = -inf: exp(-inf) = 0
    a.m = x;
  } else {
    a.s += expf(x - a.m);
  }
}

// W values at once: one rescale for the group's maximum, then W exponentials.
template <int W>
__device__ __forceinline__ void ms_add_vec(ms_pair &a, const float *v) {
  float m = v[0];
#pragma unroll
  for (int k = 1; k < W; k++) m = fmaxf(m, v[k]);
  if (m > a.m) {
    a.s *= expf(a.m - m);
    a.m = m;
  }
  if (a.m == -INFINITY) return; // all of them -inf so far
  float t = 0.0f;
#pragma unroll
  for (int k = 0; k < W; k++) t += expf(v[k] - a.m);
  a.s += t;
}

__device__ __forceinline__ ms_pair ms_merge(ms_pair a, ms_pair b) {
  if (b.m == -INFINITY) return a;
  if (a.m == -INFINITY) return b;
  float m = fmaxf(a.m, b.m);
  ms_pair r;
  r.m = m;
  r.s = a.s * expf(a.m - m) + b.s * expf(b.m - m);
  return r;
}

template <typename T, typename D, bool VEC>
__global__ void __launch_bounds__(XENT_THREADS)
    k_xent(const T *logits, int64_t ld, int64_t V, const int64_t *__restrict__ tgt, int do_fwd, float scale,
           float *__restrict__ nll, float *lse_io, D *dlogits, int64_t ld_d, bool dvec) {
  __shared__ ms_pair sh[32];
  int64_t row = blockIdx.x;
  int64_t t = tgt[row];
  const T *lr = logits + row * ld;
  if (t == -100 || t < 0 || t >= V) { // ignored (out-of-range targets are rejected on the host)
    if (do_fwd) {
      if (threadIdx.x == 0) {
        nll[row] = 0.0f;
        if (lse_io) lse_io[row] = 0.0f;
      }
    }
    if (dlogits)
      for (int64_t c = threadIdx.x; c < V; c += blockDim.x) pc_st(dlogits + row * ld_d, c, 0.0f);
    return;
  }
  // The target's logit is read before any thread can overwrite the row (in-place gradient).
  float lt = (do_fwd && threadIdx.x == 0) ? pc_ld(lr, t) : 0.0f;
  float lse;
  if (do_fwd) {
    ms_pair a = {-INFINITY, 0.0f};
    int64_t c0 = 0;
    if (VEC) {
      int64_t nv = V / 8;
      for (int64_t i = threadIdx.x; i < nv; i += blockDim.x) {
        float v[8];
        pc_ld8(lr + i * 8, v);
        ms_add_vec<8>(a, v);
      }
      c0 = nv * 8;
    }
    for (int64_t c = c0 + threadIdx.x; c < V; c += blockDim.x) ms_add(a, pc_ld(lr, c));
    // merge: warp shuffles, then warp 0 over the warps' results
    for (int o = 16; o > 0; o >>= 1) {
      ms_pair b;
      b.m = __shfl_xor_sync(0xffffffffu, a.m, o);
      b.s = __shfl_xor_sync(0xffffffffu, a.s, o);
      a = ms_merge(a, b);
    }
    int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
    if (lane == 0) sh[wid] = a;
    __syncthreads();
    if (wid == 0) {
      int nw = blockDim.x >> 5;
      a = lane < nw ? sh[lane] : ms_pair{-INFINITY, 0.0f};
      for (int o = 16; o > 0; o >>= 1) {
        ms_pair b;
        b.m = __shfl_xor_sync(0xffffffffu, a.m, o);
        b.s = __shfl_xor_sync(0xffffffffu, a.s, o);
        a = ms_merge(a, b);
      }
      if (lane == 0) sh[0] = a;
    }
    __syncthreads();
    a = sh[0];
    lse = a.m + logf(a.s);
    if (threadIdx.x == 0) {
      nll[row] = lse - lt;
      if (lse_io) lse_io[row] = lse;
    }
  } else {
    lse = lse_io[row];
  }
  if (dlogits) {
    // Every thread finished reading the row above (the merge synchronised), so writing in place is safe.
    D *dr = dlogits + row * ld_d;
    int64_t c0 = 0;
    if (VEC && dvec) {
      int64_t nv = V / 8;
      for (int64_t i = threadIdx.x; i < nv; i += blockDim.x) {
        float v[8];
        pc_ld8(lr + i * 8, v);
#pragma unroll
        for (int k = 0; k < 8; k++) v[k] = (expf(v[k] - lse) - (i * 8 + k == t ? 1.0f : 0.0f)) * scale;
        pc_st8(dr + i * 8, v);
      }
      c0 = nv * 8;
    }
    for (int64_t c = c0 + threadIdx.x; c < V; c += blockDim.x) {
      float p = expf(pc_ld(lr, c) - lse);
      pc_st(dr, c, (p - (c == t ? 1.0f : 0.0f)) * scale);
    }
  }
}

static pose_status xent_launch(const char *what, const void *logits, pose_dtype dt, int64_t ld, int64_t N, int64_t V,
                               const int64_t *tgt, int do_fwd, float scale, float *nll, float *lse, void *dlogits,
                               pose_dtype ddt, int64_t ld_d, cudaStream_t s) {
  PC_DTYPE(dt, what);
  if (dlogits) PC_DTYPE(ddt, what);
  PC_REQUIRE(N >= 0 && V > 0 && ld >= V, "%s: bad sizes N=%lld V=%lld ld=%lld", what, (long long)N, (long long)V,
             (long long)ld);
  PC_REQUIRE(N < ((int64_t)1 << 31), "%s: %lld rows exceed the grid", what, (long long)N);
  if (dlogits) {
    PC_REQUIRE(ld_d >= V, "%s: ld_d %lld < V %lld", what, (long long)ld_d, (long long)V);
    PC_REQUIRE(dlogits != logits || (ddt == dt && ld_d == ld), "%s: in-place gradient needs the same dtype and ld",
               what);
  }
  if (N == 0) return POSE_OK;
  PC_REQUIRE(logits && tgt && (!do_fwd || nll) && (do_fwd || lse), "%s: NULL buffer", what);
  size_t es = pose_dtype_size(dt);
  bool vec = ((uintptr_t)logits % 16 == 0) && ((size_t)ld * es) % 16 == 0;
  bool dvec = dlogits && ((uintptr_t)dlogits % 16 == 0) && ((size_t)ld_d * pose_dtype_size(ddt)) % 16 == 0;
  int th = V >= 16384 ? XENT_THREADS : V >= 2048 ? 256 : 128;
  unsigned gr = (unsigned)N;
#define XL(T, D, VEC)                                                                                            \
  k_xent<T, D, VEC><<<gr, th, 0, s>>>((const T *)logits, ld, V, tgt, do_fwd, scale, nll, lse, (D *)dlogits, ld_d, \
                                      dvec)
#define XV(T, D)           \
  do {                     \
    if (vec) XL(T, D, true); \
    else XL(T, D, false);  \
  } while (0)
  bool dbf = dlogits && ddt == POSE_BF16;
  if (dt == POSE_F32) {
    if (dbf) XV(float, bf16);
    else XV(float, float);
  } else {
    if (dbf || !dlogits) XV(bf16, bf16);
    else XV(bf16, float);
  }
#undef XV
#undef XL
  PC_LAUNCHED(what);
  return POSE_OK;
}

extern "C" pose_status pose_cuda_xent_fwd(const void *logits, pose_dtype dt, int64_t ld, int64_t N, int64_t V,
                                          const int64_t *tgt, float *nll, float *lse, pose_cuda_stream s) {
  return xent_launch("xent_fwd", logits, dt, ld, N, V, tgt, 1, 0.0f, nll, lse, NULL, dt, 0, s);
}

extern "C" pose_status pose_cuda_xent_fwd_bwd(const void *logits, pose_dtype dt, int64_t ld, int64_t N, int64_t V,
                                              const int64_t *tgt, float scale, float *nll, float *lse,
                                              void *dlogits, pose_dtype ddt, int64_t ld_d, pose_cuda_stream s) {
  PC_REQUIRE(dlogits, "xent_fwd_bwd: NULL dlogits");
  return xent_launch("xent_fwd_bwd", logits, dt, ld, N, V, tgt, 1, scale, nll, lse, dlogits, ddt, ld_d, s);
}

extern "C" pose_status pose_cuda_xent_bwd(const void *logits, pose_dtype dt, int64_t ld, int64_t N, int64_t V,
                                          const int64_t *tgt, const float *lse, float scale, void *dlogits,
                                          pose_dtype ddt, int64_t ld_d, pose_cuda_stream s) {
  PC_REQUIRE(dlogits, "xent_bwd: NULL dlogits");
  return xent_launch("xent_bwd", logits, dt, ld, N, V, tgt, 0, scale, NULL, (float *)lse, dlogits, ddt, ld_d, s);
}
