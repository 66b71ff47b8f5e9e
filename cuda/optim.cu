// The optimizer side: AdamW (fp32 master weights, or pure bf16 with stochastic rounding), deterministic sums,
// the global gradient norm and the clipping coefficient. Every rounding step is spelled out with the _rn
// intrinsics so that nvcc's FMA contraction cannot merge them: the fp32 update then matches torch's (and the CPU
// trainer's) arithmetic bit for bit.
#include <math.h>
#include <stdlib.h>

#include "common.cuh"
#include "philox.cuh"

#define NORM_BLOCK 16384 // elements per partial sum, as the CPU trainer's grad_clip.c

extern "C" void pose_cuda_adamw_coefs_init(pose_cuda_adamw_coefs *c, double lr, double beta1, double beta2,
                                           double eps, double weight_decay, int64_t step) {
  double st = (double)step;
  double bc1 = 1 - pow(beta1, st), bc2 = 1 - pow(beta2, st);
  c->apply_decay = weight_decay != 0;
  c->decay = (float)(1 - lr * weight_decay);
  c->lerp_w = (float)(1 - beta1);
  c->beta2 = (float)beta2;
  c->one_minus_beta2 = (float)(1 - beta2);
  c->bc2_sqrt = (float)pow(bc2, 0.5);
  c->eps = (float)eps;
  c->neg_step_size = (float)(-(lr / bc1));
}

// ATen's lerp: start + w*(end-start) for |w| < 0.5, else end + (w-1)*(end-start), each one fma.
__device__ __forceinline__ float adam_lerp(float start, float end, float w) {
  float d = __fsub_rn(end, start);
  return fabsf(w) < 0.5f ? __fmaf_rn(w, d, start) : __fmaf_rn(__fsub_rn(w, 1.0f), d, end);
}

// One element: returns the new w, m, v in fp32.
__device__ __forceinline__ void adam_elem(const pose_cuda_adamw_coefs &k, float &w, float g, float &m, float &v) {
  if (k.apply_decay) w = __fmul_rn(w, k.decay);
  m = adam_lerp(m, g, k.lerp_w);
  v = __fmul_rn(v, k.beta2);
  float t = __fmul_rn(__fmul_rn(k.one_minus_beta2, g), g);
  v = __fadd_rn(v, t);
  float d = __fadd_rn(__fdiv_rn(__fsqrt_rn(v), k.bc2_sqrt), k.eps);
  float u = __fdiv_rn(__fmul_rn(k.neg_step_size, m), d);
  w = __fadd_rn(w, u);
}

__global__ void k_adamw(float *__restrict__ w, const float *__restrict__ g, float *__restrict__ m,
                        float *__restrict__ v, uint16_t *__restrict__ wb, int64_t n, pose_cuda_adamw_coefs k,
                        const float *__restrict__ gscale) {
  float gs = gscale ? *gscale : 1.0f;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    float wi = w[i], gi = g[i], mi = m[i], vi = v[i];
    if (gscale) gi = __fmul_rn(gi, gs);
    adam_elem(k, wi, gi, mi, vi);
    w[i] = wi;
    m[i] = mi;
    v[i] = vi;
    if (wb) {
      bf16 b = __float2bfloat16_rn(wi);
      wb[i] = *(uint16_t *)&b;
    }
  }
}

// fp32 -> bf16 with stochastic rounding: add 16 random bits below the kept mantissa, truncate. Non-finite values
// round to nearest (NaN stays NaN, Inf stays Inf).
__device__ __forceinline__ uint16_t sr_bf16(float x, uint32_t r) {
  uint32_t u = __float_as_uint(x);
  if ((u & 0x7f800000u) == 0x7f800000u) {
    bf16 b = __float2bfloat16_rn(x);
    return *(uint16_t *)&b;
  }
  return (uint16_t)((u + (r & 0xffffu)) >> 16);
}

__device__ __forceinline__ float bf16_bits_to_f32(uint16_t h) { return __uint_as_float((uint32_t)h << 16); }

template <typename G>
__global__ void k_adamw_bf16(uint16_t *__restrict__ w, const G *__restrict__ g, uint16_t *__restrict__ m,
                             uint16_t *__restrict__ v, int64_t n, pose_cuda_adamw_coefs k,
                             const float *__restrict__ gscale, uint64_t seed, uint64_t stream) {
  float gs = gscale ? *gscale : 1.0f;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    float wi = bf16_bits_to_f32(w[i]), gi = pc_ld(g, i), mi = bf16_bits_to_f32(m[i]), vi = bf16_bits_to_f32(v[i]);
    if (gscale) gi = __fmul_rn(gi, gs);
    adam_elem(k, wi, gi, mi, vi);
    uint4 r = philox4x32(seed, stream, (uint64_t)i);
    w[i] = sr_bf16(wi, r.x);
    m[i] = sr_bf16(mi, r.y);
    v[i] = sr_bf16(vi, r.z);
  }
}

extern "C" pose_status pose_cuda_adamw(float *w, const float *g, float *m, float *v, uint16_t *w_bf16, int64_t n,
                                       const pose_cuda_adamw_coefs *c, const float *gscale, pose_cuda_stream s) {
  PC_REQUIRE(n >= 0 && c, "adamw: bad arguments");
  if (n == 0) return POSE_OK;
  PC_REQUIRE(w && g && m && v, "adamw: NULL buffer");
  const int th = 256;
  k_adamw<<<pc_grid(n, th), th, 0, s>>>(w, g, m, v, w_bf16, n, *c, gscale);
  PC_LAUNCHED("adamw");
  return POSE_OK;
}

extern "C" pose_status pose_cuda_adamw_bf16(uint16_t *w, const void *g, pose_dtype gdt, uint16_t *m, uint16_t *v,
                                            int64_t n, const pose_cuda_adamw_coefs *c, const float *gscale,
                                            uint64_t seed, uint64_t stream_id, pose_cuda_stream s) {
  PC_DTYPE(gdt, "adamw_bf16");
  PC_REQUIRE(n >= 0 && c, "adamw_bf16: bad arguments");
  if (n == 0) return POSE_OK;
  PC_REQUIRE(w && g && m && v, "adamw_bf16: NULL buffer");
  const int th = 256;
  if (gdt == POSE_F32)
    k_adamw_bf16<<<pc_grid(n, th), th, 0, s>>>(w, (const float *)g, m, v, n, *c, gscale, seed, stream_id);
  else
    k_adamw_bf16<<<pc_grid(n, th), th, 0, s>>>(w, (const bf16 *)g, m, v, n, *c, gscale, seed, stream_id);
  PC_LAUNCHED("adamw_bf16");
  return POSE_OK;
}

// ---- sums of squares / sums over fixed 16384-element blocks ----
// Block b of the flattened (tensor, block) list: tensor t = the last with first[t] <= b.
template <typename T, bool SQUARE>
__global__ void k_block_sums(const T *const *__restrict__ ptrs, const int64_t *__restrict__ numel,
                             const int64_t *__restrict__ first, int count, double *__restrict__ part) {
  __shared__ double sh[32];
  int64_t b = blockIdx.x;
  int lo = 0, hi = count - 1;
  while (lo < hi) {
    int mid = (lo + hi + 1) / 2;
    if (first[mid] <= b) lo = mid;
    else hi = mid - 1;
  }
  const T *x = ptrs[lo];
  int64_t n = numel[lo], start = (b - first[lo]) * NORM_BLOCK, end = start + NORM_BLOCK < n ? start + NORM_BLOCK : n;
  double acc = 0.0;
  for (int64_t i = start + threadIdx.x; i < end; i += blockDim.x) {
    double xv = (double)pc_ld(x, i);
    acc += SQUARE ? xv * xv : xv;
  }
  double tot = pc_block_sum(acc, sh);
  if (threadIdx.x == 0) part[b] = tot;
}

// Per tensor (one thread each) the in-order sum of its partials into tn[t] (its squared norm rounded through float
// in norm mode), then thread 0 adds those in tensor order.
__global__ void k_finish(const double *__restrict__ part, const int64_t *__restrict__ first, int count,
                         int64_t nparts, int norm_mode, double *__restrict__ tn, float *__restrict__ norm_out,
                         double *__restrict__ sum_out) {
  for (int t = threadIdx.x; t < count; t += blockDim.x) {
    int64_t a = first[t], e = t + 1 < count ? first[t + 1] : nparts;
    double st = 0.0;
    for (int64_t i = a; i < e; i++) st += part[i];
    if (norm_mode) {
      float nt = (float)sqrt(st);
      st = (double)nt * nt;
    }
    tn[t] = st;
  }
  __syncthreads();
  if (threadIdx.x != 0) return;
  double tot = 0.0;
  for (int t = 0; t < count; t++) tot += tn[t];
  if (norm_mode) *norm_out = (float)sqrt(tot);
  else *sum_out = tot;
}

static pose_status block_reduce(const void *const *ptrs, const int64_t *numel, int count, pose_dtype dt, int square,
                                float *norm_out, double *sum_out, cudaStream_t s) {
  int64_t nparts = 0;
  int64_t *first_h = (int64_t *)malloc(sizeof(int64_t) * (size_t)count);
  if (!first_h) return pose_error(POSE_ENOMEM, "out of memory");
  for (int t = 0; t < count; t++) {
    if (numel[t] < 0 || (numel[t] && !ptrs[t])) {
      free(first_h);
      return pose_error(POSE_EINVAL, "reduction: tensor %d has a bad size or a NULL pointer", t);
    }
    first_h[t] = nparts;
    int64_t nb = (numel[t] + NORM_BLOCK - 1) / NORM_BLOCK;
    nparts += nb > 0 ? nb : 1; // an empty tensor still owns one (zero) partial
  }
  size_t bytes_p = sizeof(void *) * (size_t)count, bytes_i = sizeof(int64_t) * (size_t)count;
  size_t bytes = bytes_p + 2 * bytes_i + sizeof(double) * (size_t)(nparts + count) + 64;
  char *buf = NULL;
  pose_status st = pc_scratch_alloc((void **)&buf, bytes, s);
  if (st != POSE_OK) {
    free(first_h);
    return st;
  }
  const void **d_ptrs = (const void **)buf;
  int64_t *d_numel = (int64_t *)(buf + bytes_p), *d_first = (int64_t *)(buf + bytes_p + bytes_i);
  double *d_part = (double *)(buf + bytes_p + 2 * bytes_i);
  // Pageable host sources: cudaMemcpyAsync stages them before returning, so the host arrays may go at once.
  cudaError_t e = cudaMemcpyAsync(d_ptrs, ptrs, bytes_p, cudaMemcpyHostToDevice, s);
  if (e == cudaSuccess) e = cudaMemcpyAsync(d_numel, numel, bytes_i, cudaMemcpyHostToDevice, s);
  if (e == cudaSuccess) e = cudaMemcpyAsync(d_first, first_h, bytes_i, cudaMemcpyHostToDevice, s);
  free(first_h);
  if (e == cudaSuccess) {
    // An empty tensor's one partial comes out 0 (its block finds start >= end).
    unsigned gr = (unsigned)nparts;
#define BR(T)                                                                                                     \
  do {                                                                                                            \
    if (square) k_block_sums<T, true><<<gr, 256, 0, s>>>((const T *const *)d_ptrs, d_numel, d_first, count, d_part); \
    else k_block_sums<T, false><<<gr, 256, 0, s>>>((const T *const *)d_ptrs, d_numel, d_first, count, d_part);     \
  } while (0)
    if (dt == POSE_F32) BR(float);
    else BR(bf16);
#undef BR
    e = cudaGetLastError();
  }
  if (e == cudaSuccess) {
    k_finish<<<1, 256, 0, s>>>(d_part, d_first, count, nparts, square, d_part + nparts, norm_out, sum_out);
    e = cudaGetLastError();
  }
  pc_scratch_free(buf, s);
  if (e != cudaSuccess) return pose_cuda_fail(e, "reduction");
  return POSE_OK;
}

extern "C" pose_status pose_cuda_sum(const void *x, pose_dtype dt, int64_t n, double *out, pose_cuda_stream s) {
  PC_DTYPE(dt, "sum");
  PC_REQUIRE(n >= 0 && out, "sum: bad arguments");
  const void *p[1] = {x};
  int64_t nn[1] = {n};
  return block_reduce(p, nn, 1, dt, 0, NULL, out, s);
}

extern "C" pose_status pose_cuda_grad_norm(const void *const *grads, const int64_t *numel, int count, pose_dtype dt,
                                           float *norm, pose_cuda_stream s) {
  PC_DTYPE(dt, "grad_norm");
  PC_REQUIRE(count > 0 && grads && numel && norm, "grad_norm: bad arguments");
  return block_reduce(grads, numel, count, dt, 1, norm, NULL, s);
}

__global__ void k_clip_coef(const float *norm, float max_norm, float *coef) {
  float denom = __fadd_rn(*norm, 1e-6f);
  float c = __fmul_rn(__frcp_rn(denom), max_norm);
  *coef = (c < 1.0f || isnan(c)) ? c : 1.0f;
}

extern "C" pose_status pose_cuda_clip_coef(const float *norm, double max_norm, float *coef, pose_cuda_stream s) {
  PC_REQUIRE(norm && coef, "clip_coef: NULL buffer");
  PC_REQUIRE(max_norm > 0, "clip_coef: max_norm must be positive (got %g)", max_norm);
  k_clip_coef<<<1, 1, 0, s>>>(norm, (float)max_norm, coef);
  PC_LAUNCHED("clip_coef");
  return POSE_OK;
}
