// Attention for any head dim up to 256: one warp per query row (forward, dQ) or per key row (dK/dV), fp32 arithmetic
// from bf16 operands, no tensor cores. It exists so that models whose heads the flash kernels do not take (64 and
// 128 only), such as the tiny golden fixtures, still run on the GPU with the same semantics (causal over token
// index, GQA, sliding window, q_off, strides; o, dq, dout in q's layout). Cost is O(T^2 D) with poor reuse: fine
// for tests and small models, not for long sequences.
#include <math.h>

#include "common.cuh"

#define REF_MAXD 256
#define REF_DPL (REF_MAXD / 32) // dims per lane

struct ref_params {
  const bf16 *q, *k, *v, *o, *dout;
  bf16 *out, *dq, *dk, *dv;
  float *lse;
  const float *lse_in;
  float *dsum;
  int64_t Tq, Tk, q_off, Hq, Hkv, D, window;
  int64_t q_bs, q_rs, kv_bs, kv_rs;
  float scale;
};

// keys visible to query i: [lo, hi]
__device__ __forceinline__ void ref_keys(const ref_params &p, int64_t i, int64_t *lo, int64_t *hi) {
  int64_t qi = p.q_off + i;
  *hi = qi < p.Tk - 1 ? qi : p.Tk - 1;
  *lo = p.window > 0 && qi - p.window + 1 > 0 ? qi - p.window + 1 : 0;
}

// queries that see key j: [lo, hi]
__device__ __forceinline__ void ref_queries(const ref_params &p, int64_t j, int64_t *lo, int64_t *hi) {
  int64_t first = j - p.q_off;
  *lo = first > 0 ? first : 0;
  int64_t last = p.Tq - 1;
  if (p.window > 0 && first + p.window - 1 < last) last = first + p.window - 1;
  *hi = last;
}

__device__ __forceinline__ float ref_dot(const float *a, const bf16 *b, int64_t D) {
  float s = 0.0f;
  for (int64_t d = 0; d < D; d++) s = fmaf(a[d], __bfloat162float(b[d]), s);
  return s;
}

// grid (Tq, Hq, B), 32 threads
__global__ void k_ref_fwd(ref_params p) {
  __shared__ float qs[REF_MAXD];
  __shared__ float ps[32];
  const int lane = threadIdx.x;
  const int64_t i = blockIdx.x, h = blockIdx.y, b = blockIdx.z, hk = h / (p.Hq / p.Hkv), D = p.D;
  const bf16 *qrow = p.q + b * p.q_bs + i * p.q_rs + h * D;
  for (int64_t d = lane; d < D; d += 32) qs[d] = __bfloat162float(qrow[d]);
  __syncwarp();
  const bf16 *kb = p.k + b * p.kv_bs + hk * D, *vb = p.v + b * p.kv_bs + hk * D;
  int64_t lo, hi;
  ref_keys(p, i, &lo, &hi);
  float mx = -INFINITY, l = 0.0f;
  for (int64_t j = lo + lane; j <= hi; j += 32) {
    float s = p.scale * ref_dot(qs, kb + j * p.kv_rs, D);
    if (s > mx) {
      l = l * __expf(mx - s) + 1.0f;
      mx = s;
    } else {
      l += __expf(s - mx);
    }
  }
  float M = pc_warp_max(mx);
  float L = pc_warp_sum(mx == -INFINITY ? 0.0f : l * __expf(mx - M));
  float lse = L > 0.0f ? M + logf(L) : INFINITY;
  float acc[REF_DPL];
#pragma unroll
  for (int c = 0; c < REF_DPL; c++) acc[c] = 0.0f;
  for (int64_t j0 = lo; j0 <= hi; j0 += 32) {
    int64_t j = j0 + lane;
    ps[lane] = j <= hi ? __expf(p.scale * ref_dot(qs, kb + j * p.kv_rs, D) - lse) : 0.0f;
    __syncwarp();
    int64_t n = hi - j0 + 1 < 32 ? hi - j0 + 1 : 32;
    for (int64_t jj = 0; jj < n; jj++) {
      const bf16 *vr = vb + (j0 + jj) * p.kv_rs;
      float pj = ps[jj];
#pragma unroll
      for (int c = 0; c < REF_DPL; c++) {
        int64_t d = lane + 32 * c;
        if (d < D) acc[c] = fmaf(pj, __bfloat162float(vr[d]), acc[c]);
      }
    }
    __syncwarp();
  }
  bf16 *orow = p.out + b * p.q_bs + i * p.q_rs + h * D;
#pragma unroll
  for (int c = 0; c < REF_DPL; c++) {
    int64_t d = lane + 32 * c;
    if (d < D) orow[d] = __float2bfloat16_rn(acc[c]);
  }
  if (lane == 0) p.lse[(b * p.Hq + h) * p.Tq + i] = lse;
}

// dsum[b,h,i] = sum_d dout * o; grid (Tq, Hq, B), 32 threads
__global__ void k_ref_dsum(ref_params p) {
  const int lane = threadIdx.x;
  const int64_t i = blockIdx.x, h = blockIdx.y, b = blockIdx.z, D = p.D;
  const bf16 *o = p.o + b * p.q_bs + i * p.q_rs + h * D, *g = p.dout + b * p.q_bs + i * p.q_rs + h * D;
  float s = 0.0f;
  for (int64_t d = lane; d < D; d += 32) s = fmaf(__bfloat162float(o[d]), __bfloat162float(g[d]), s);
  s = pc_warp_sum(s);
  if (lane == 0) p.dsum[(b * p.Hq + h) * p.Tq + i] = s;
}

// dq; grid (Tq, Hq, B), 32 threads
__global__ void k_ref_dq(ref_params p) {
  __shared__ float qs[REF_MAXD], gs[REF_MAXD];
  __shared__ float dss[32];
  const int lane = threadIdx.x;
  const int64_t i = blockIdx.x, h = blockIdx.y, b = blockIdx.z, hk = h / (p.Hq / p.Hkv), D = p.D;
  const int64_t qo = b * p.q_bs + i * p.q_rs + h * D;
  for (int64_t d = lane; d < D; d += 32) {
    qs[d] = __bfloat162float(p.q[qo + d]);
    gs[d] = __bfloat162float(p.dout[qo + d]);
  }
  __syncwarp();
  const int64_t row = (b * p.Hq + h) * p.Tq + i;
  const float lse = p.lse_in[row], dsum = p.dsum[row];
  const bf16 *kb = p.k + b * p.kv_bs + hk * D, *vb = p.v + b * p.kv_bs + hk * D;
  int64_t lo, hi;
  ref_keys(p, i, &lo, &hi);
  float acc[REF_DPL];
#pragma unroll
  for (int c = 0; c < REF_DPL; c++) acc[c] = 0.0f;
  for (int64_t j0 = lo; j0 <= hi; j0 += 32) {
    int64_t j = j0 + lane;
    float ds = 0.0f;
    if (j <= hi) {
      float pij = __expf(p.scale * ref_dot(qs, kb + j * p.kv_rs, D) - lse);
      ds = pij * (ref_dot(gs, vb + j * p.kv_rs, D) - dsum);
    }
    dss[lane] = ds;
    __syncwarp();
    int64_t n = hi - j0 + 1 < 32 ? hi - j0 + 1 : 32;
    for (int64_t jj = 0; jj < n; jj++) {
      const bf16 *kr = kb + (j0 + jj) * p.kv_rs;
      float w = dss[jj];
#pragma unroll
      for (int c = 0; c < REF_DPL; c++) {
        int64_t d = lane + 32 * c;
        if (d < D) acc[c] = fmaf(w, __bfloat162float(kr[d]), acc[c]);
      }
    }
    __syncwarp();
  }
#pragma unroll
  for (int c = 0; c < REF_DPL; c++) {
    int64_t d = lane + 32 * c;
    if (d < D) p.dq[qo + d] = __float2bfloat16_rn(acc[c] * p.scale);
  }
}

// dk, dv: one warp per key j of kv head hk, summing over the group's query heads; grid (Tk, Hkv, B), 32 threads
__global__ void k_ref_dkdv(ref_params p) {
  __shared__ float ks[REF_MAXD], vs[REF_MAXD];
  __shared__ float pss[32], dss[32];
  const int lane = threadIdx.x;
  const int64_t j = blockIdx.x, hk = blockIdx.y, b = blockIdx.z, D = p.D, G = p.Hq / p.Hkv;
  const int64_t ko = b * p.kv_bs + j * p.kv_rs + hk * D;
  for (int64_t d = lane; d < D; d += 32) {
    ks[d] = __bfloat162float(p.k[ko + d]);
    vs[d] = __bfloat162float(p.v[ko + d]);
  }
  __syncwarp();
  int64_t lo, hi;
  ref_queries(p, j, &lo, &hi);
  float ak[REF_DPL], av[REF_DPL];
#pragma unroll
  for (int c = 0; c < REF_DPL; c++) ak[c] = av[c] = 0.0f;
  for (int64_t g = 0; g < G; g++) {
    const int64_t h = hk * G + g;
    const bf16 *qb = p.q + b * p.q_bs + h * D, *gb = p.dout + b * p.q_bs + h * D;
    for (int64_t i0 = lo; i0 <= hi; i0 += 32) {
      int64_t i = i0 + lane;
      float pij = 0.0f, ds = 0.0f;
      if (i <= hi) {
        const int64_t row = (b * p.Hq + h) * p.Tq + i;
        float s = 0.0f, dp = 0.0f;
        const bf16 *qr = qb + i * p.q_rs, *gr = gb + i * p.q_rs;
        for (int64_t d = 0; d < D; d++) {
          s = fmaf(__bfloat162float(qr[d]), ks[d], s);
          dp = fmaf(__bfloat162float(gr[d]), vs[d], dp);
        }
        pij = __expf(p.scale * s - p.lse_in[row]);
        ds = pij * (dp - p.dsum[row]);
      }
      pss[lane] = pij;
      dss[lane] = ds;
      __syncwarp();
      int64_t n = hi - i0 + 1 < 32 ? hi - i0 + 1 : 32;
      for (int64_t ii = 0; ii < n; ii++) {
        const bf16 *qr = qb + (i0 + ii) * p.q_rs, *gr = gb + (i0 + ii) * p.q_rs;
        float wp = pss[ii], wd = dss[ii];
#pragma unroll
        for (int c = 0; c < REF_DPL; c++) {
          int64_t d = lane + 32 * c;
          if (d < D) {
            av[c] = fmaf(wp, __bfloat162float(gr[d]), av[c]);
            ak[c] = fmaf(wd, __bfloat162float(qr[d]), ak[c]);
          }
        }
      }
      __syncwarp();
    }
  }
#pragma unroll
  for (int c = 0; c < REF_DPL; c++) {
    int64_t d = lane + 32 * c;
    if (d < D) {
      p.dk[ko + d] = __float2bfloat16_rn(ak[c] * p.scale);
      p.dv[ko + d] = __float2bfloat16_rn(av[c]);
    }
  }
}

static pose_status ref_check(const pose_cuda_attn_dims *d, const char *what) {
  PC_REQUIRE(d, "%s: NULL dims", what);
  PC_REQUIRE(d->B > 0 && d->Tq >= 0 && d->Tk >= 0 && d->Hq > 0 && d->Hkv > 0 && d->D > 0,
             "%s: bad sizes B=%lld Tq=%lld Tk=%lld Hq=%lld Hkv=%lld D=%lld", what, (long long)d->B, (long long)d->Tq,
             (long long)d->Tk, (long long)d->Hq, (long long)d->Hkv, (long long)d->D);
  PC_REQUIRE(d->Hq % d->Hkv == 0, "%s: Hkv=%lld does not divide Hq=%lld", what, (long long)d->Hkv, (long long)d->Hq);
  if (d->D > REF_MAXD)
    return pose_error(POSE_EUNSUPPORTED, "%s: head dim %lld exceeds %d", what, (long long)d->D, REF_MAXD);
  PC_REQUIRE(d->q_off >= 0 && d->window >= 0, "%s: negative q_off or window", what);
  PC_REQUIRE(d->q_off + d->Tq <= d->Tk, "%s: q_off + Tq = %lld exceeds Tk = %lld", what, (long long)(d->q_off + d->Tq),
             (long long)d->Tk);
  PC_REQUIRE(d->Tq < ((int64_t)1 << 31) && d->Tk < ((int64_t)1 << 31) && d->Hq <= 65535 && d->B <= 65535,
             "%s: grid too large", what);
  PC_REQUIRE(d->scale > 0 && isfinite(d->scale), "%s: bad scale %g", what, (double)d->scale);
  return POSE_OK;
}

static ref_params ref_fill(const pose_cuda_attn_dims *d) {
  ref_params p = {};
  p.Tq = d->Tq; p.Tk = d->Tk; p.q_off = d->q_off; p.Hq = d->Hq; p.Hkv = d->Hkv; p.D = d->D; p.window = d->window;
  p.q_bs = d->q_bstride; p.q_rs = d->q_rstride; p.kv_bs = d->kv_bstride; p.kv_rs = d->kv_rstride;
  p.scale = d->scale;
  return p;
}

extern "C" pose_status pose_cuda_attn_ref_fwd(const pose_cuda_attn_dims *d, const uint16_t *q, const uint16_t *k,
                                              const uint16_t *v, uint16_t *o, float *lse, pose_cuda_stream s) {
  POSE_TRY(ref_check(d, "attn_ref_fwd"));
  if (d->Tq == 0) return POSE_OK;
  PC_REQUIRE(q && k && v && o && lse, "attn_ref_fwd: NULL buffer");
  ref_params p = ref_fill(d);
  p.q = (const bf16 *)q; p.k = (const bf16 *)k; p.v = (const bf16 *)v;
  p.out = (bf16 *)o;
  p.lse = lse;
  k_ref_fwd<<<dim3((unsigned)d->Tq, (unsigned)d->Hq, (unsigned)d->B), 32, 0, s>>>(p);
  PC_LAUNCHED("attn_ref_fwd");
  return POSE_OK;
}

extern "C" pose_status pose_cuda_attn_ref_bwd(const pose_cuda_attn_dims *d, const uint16_t *q, const uint16_t *k,
                                              const uint16_t *v, const uint16_t *o, const float *lse,
                                              const uint16_t *dout, uint16_t *dq, uint16_t *dk, uint16_t *dv,
                                              pose_cuda_stream s) {
  POSE_TRY(ref_check(d, "attn_ref_bwd"));
  if (d->Tq == 0 && d->Tk == 0) return POSE_OK;
  PC_REQUIRE(q && k && v && o && lse && dout && dq && dk && dv, "attn_ref_bwd: NULL buffer");
  ref_params p = ref_fill(d);
  p.q = (const bf16 *)q; p.k = (const bf16 *)k; p.v = (const bf16 *)v; p.o = (const bf16 *)o;
  p.dout = (const bf16 *)dout;
  p.dq = (bf16 *)dq; p.dk = (bf16 *)dk; p.dv = (bf16 *)dv;
  p.lse_in = lse;
  POSE_TRY(pc_scratch_alloc((void **)&p.dsum, sizeof(float) * (size_t)(d->B * d->Hq * (d->Tq ? d->Tq : 1)), s));
  dim3 gq((unsigned)(d->Tq ? d->Tq : 1), (unsigned)d->Hq, (unsigned)d->B);
  if (d->Tq) {
    k_ref_dsum<<<gq, 32, 0, s>>>(p);
    k_ref_dq<<<gq, 32, 0, s>>>(p);
  }
  if (d->Tk) k_ref_dkdv<<<dim3((unsigned)d->Tk, (unsigned)d->Hkv, (unsigned)d->B), 32, 0, s>>>(p);
  cudaError_t e = cudaGetLastError();
  pc_scratch_free(p.dsum, s);
  if (e != cudaSuccess) return pose_cuda_fail(e, "attn_ref_bwd launch");
  return POSE_OK;
}
