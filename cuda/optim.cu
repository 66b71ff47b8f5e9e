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

// fp32 -> bf16 with stochastic rounding: add 16 random bits (r16 < 2^16) below the kept mantissa, truncate.
// Non-finite values round to nearest (NaN stays NaN, Inf stays Inf).
__device__ __forceinline__ uint16_t sr_bf16(float x, uint32_t r16) {
  uint32_t u = __float_as_uint(x);
  if ((u & 0x7f800000u) == 0x7f800000u) {
    bf16 b = __float2bfloat16_rn(x);
    return *(uint16_t *)&b;
  }
  return (uint16_t)((u + r16) >> 16);
}

__device__ __forceinline__ float bf16_bits_to_f32(uint16_t h) { return __uint_as_float((uint32_t)h << 16); }
__device__ __forceinline__ uint16_t bf16_rn_bits(float x) {
  bf16 b = __float2bfloat16_rn(x);
  return *(uint16_t *)&b;
}

// The rounding stream (pose_cuda.h, core/adamw.h): one Philox4x32-10 block per element PAIR j = i / 2, counter
// (j, stream_id); element 2j takes w <- r.x lo16, m <- r.x hi16, v <- r.y lo16; element 2j+1 takes w <- r.y hi16,
// m <- r.z lo16, v <- r.z hi16 (r.w unused).
__device__ __forceinline__ void sr_bits(uint4 r, int odd, uint32_t &rw, uint32_t &rm, uint32_t &rv) {
  if (!odd) {
    rw = r.x & 0xffffu; rm = r.x >> 16; rv = r.y & 0xffffu;
  } else {
    rw = r.y >> 16; rm = r.z & 0xffffu; rv = r.z >> 16;
  }
}

// ---- the element ranges: [lo, hi) of one tensor, by the threads of one block; lo is a multiple of 8 counted from
// the tensor's start, so 8-element groups never straddle a tensor. vec: every pointer 16-byte aligned (16-byte
// accesses for whole groups of 8; the tensor's last partial group element by element). ----

__device__ __forceinline__ float ld_g(const float *g, int64_t i) { return g[i]; }
__device__ __forceinline__ float ld_g(const bf16 *g, int64_t i) { return __bfloat162float(g[i]); }

template <typename G>
__device__ __forceinline__ void adamw_f32_range(float *__restrict__ w, const G *__restrict__ g, float *__restrict__ m,
                                                float *__restrict__ v, uint16_t *__restrict__ wb, int64_t lo,
                                                int64_t hi, const pose_cuda_adamw_coefs &k, const float *gscale,
                                                bool vec) {
  const float gs = gscale ? *gscale : 1.0f;
  int64_t s0 = lo;
  if (vec) {
    for (int64_t i = lo + (int64_t)threadIdx.x * 8; i + 8 <= hi; i += (int64_t)blockDim.x * 8) {
      float wv[8], gv[8], mv[8], vv[8];
      pc_ld8(w + i, wv);
      pc_ld8(g + i, gv);
      pc_ld8(m + i, mv);
      pc_ld8(v + i, vv);
#pragma unroll
      for (int e = 0; e < 8; e++) {
        if (gscale) gv[e] = __fmul_rn(gv[e], gs);
        adam_elem(k, wv[e], gv[e], mv[e], vv[e]);
      }
      pc_st8(w + i, wv);
      pc_st8(m + i, mv);
      pc_st8(v + i, vv);
      if (wb) pc_st8((bf16 *)(wb + i), wv);
    }
    s0 = lo + (hi - lo) / 8 * 8;
  }
  for (int64_t i = s0 + threadIdx.x; i < hi; i += blockDim.x) {
    float wi = w[i], gi = ld_g(g, i), mi = m[i], vi = v[i];
    if (gscale) gi = __fmul_rn(gi, gs);
    adam_elem(k, wi, gi, mi, vi);
    w[i] = wi;
    m[i] = mi;
    v[i] = vi;
    if (wb) wb[i] = bf16_rn_bits(wi);
  }
}

template <typename G>
__device__ __forceinline__ void adamw_bf16_range(uint16_t *__restrict__ w, const G *__restrict__ g,
                                                 uint16_t *__restrict__ m, uint16_t *__restrict__ v, int64_t lo,
                                                 int64_t hi, const pose_cuda_adamw_coefs &k, const float *gscale,
                                                 uint64_t seed, uint64_t stream, bool vec) {
  const float gs = gscale ? *gscale : 1.0f;
  int64_t s0 = lo;
  if (vec) {
    for (int64_t i = lo + (int64_t)threadIdx.x * 8; i + 8 <= hi; i += (int64_t)blockDim.x * 8) {
      uint4 W = *(const uint4 *)(w + i), M = *(const uint4 *)(m + i), V = *(const uint4 *)(v + i);
      float gv[8];
      pc_ld8(g + i, gv);
      uint32_t wa[4] = {W.x, W.y, W.z, W.w}, ma[4] = {M.x, M.y, M.z, M.w}, va[4] = {V.x, V.y, V.z, V.w};
#pragma unroll
      for (int p = 0; p < 4; p++) { // word p holds elements i+2p (low half) and i+2p+1 (high half): one pair
        uint4 r = philox4x32(seed, stream, (uint64_t)(i >> 1) + p);
        uint32_t wo = 0, mo = 0, vo = 0;
#pragma unroll
        for (int h = 0; h < 2; h++) {
          float wi = __uint_as_float(h ? wa[p] & 0xffff0000u : wa[p] << 16);
          float mi = __uint_as_float(h ? ma[p] & 0xffff0000u : ma[p] << 16);
          float vi = __uint_as_float(h ? va[p] & 0xffff0000u : va[p] << 16);
          float gi = gv[2 * p + h];
          if (gscale) gi = __fmul_rn(gi, gs);
          adam_elem(k, wi, gi, mi, vi);
          uint32_t rw, rm, rv;
          sr_bits(r, h, rw, rm, rv);
          wo |= (uint32_t)sr_bf16(wi, rw) << (16 * h);
          mo |= (uint32_t)sr_bf16(mi, rm) << (16 * h);
          vo |= (uint32_t)sr_bf16(vi, rv) << (16 * h);
        }
        wa[p] = wo;
        ma[p] = mo;
        va[p] = vo;
      }
      *(uint4 *)(w + i) = make_uint4(wa[0], wa[1], wa[2], wa[3]);
      *(uint4 *)(m + i) = make_uint4(ma[0], ma[1], ma[2], ma[3]);
      *(uint4 *)(v + i) = make_uint4(va[0], va[1], va[2], va[3]);
    }
    s0 = lo + (hi - lo) / 8 * 8;
  }
  for (int64_t i = s0 + threadIdx.x; i < hi; i += blockDim.x) {
    float wi = bf16_bits_to_f32(w[i]), gi = ld_g(g, i), mi = bf16_bits_to_f32(m[i]), vi = bf16_bits_to_f32(v[i]);
    if (gscale) gi = __fmul_rn(gi, gs);
    adam_elem(k, wi, gi, mi, vi);
    uint4 r = philox4x32(seed, stream, (uint64_t)(i >> 1));
    uint32_t rw, rm, rv;
    sr_bits(r, (int)(i & 1), rw, rm, rv);
    w[i] = sr_bf16(wi, rw);
    m[i] = sr_bf16(mi, rm);
    v[i] = sr_bf16(vi, rv);
  }
}

#define ADAM_TH 256
#define ADAM_CHUNK ((int64_t)POSE_CUDA_ADAMW_CHUNK) // elements per block: 256 threads x 8 elements x 4

static_assert(POSE_CUDA_ADAMW_CHUNK % (ADAM_TH * 8) == 0, "chunk must be whole 8-element groups of every thread");

__device__ __forceinline__ bool al16(const void *p) { return ((uintptr_t)p & 15) == 0; }

// Single tensor: block b handles chunks b, b + gridDim.x, ...
template <typename G>
__global__ void k_adamw(float *__restrict__ w, const G *__restrict__ g, float *__restrict__ m, float *__restrict__ v,
                        uint16_t *__restrict__ wb, int64_t n, pose_cuda_adamw_coefs k, const float *__restrict__ gscale) {
  const bool vec = al16(w) && al16(g) && al16(m) && al16(v) && (!wb || al16(wb));
  for (int64_t lo = blockIdx.x * ADAM_CHUNK; lo < n; lo += (int64_t)gridDim.x * ADAM_CHUNK)
    adamw_f32_range(w, g, m, v, wb, lo, lo + ADAM_CHUNK < n ? lo + ADAM_CHUNK : n, k, gscale, vec);
}

template <typename G>
__global__ void k_adamw_bf16(uint16_t *__restrict__ w, const G *__restrict__ g, uint16_t *__restrict__ m,
                             uint16_t *__restrict__ v, int64_t n, pose_cuda_adamw_coefs k,
                             const float *__restrict__ gscale, uint64_t seed, uint64_t stream) {
  const bool vec = al16(w) && al16(g) && al16(m) && al16(v);
  for (int64_t lo = blockIdx.x * ADAM_CHUNK; lo < n; lo += (int64_t)gridDim.x * ADAM_CHUNK)
    adamw_bf16_range(w, g, m, v, lo, lo + ADAM_CHUNK < n ? lo + ADAM_CHUNK : n, k, gscale, seed, stream, vec);
}

static unsigned adam_grid(int64_t n) {
  int64_t b = (n + ADAM_CHUNK - 1) / ADAM_CHUNK;
  int64_t cap = (int64_t)(pose_cuda_sm_count() > 0 ? pose_cuda_sm_count() : 132) * 32;
  return (unsigned)(b < 1 ? 1 : b > cap ? cap : b);
}

extern "C" pose_status pose_cuda_adamw(float *w, const float *g, float *m, float *v, uint16_t *w_bf16, int64_t n,
                                       const pose_cuda_adamw_coefs *c, const float *gscale, pose_cuda_stream s) {
  PC_REQUIRE(n >= 0 && c, "adamw: bad arguments");
  if (n == 0) return POSE_OK;
  PC_REQUIRE(w && g && m && v, "adamw: NULL buffer");
  k_adamw<<<adam_grid(n), ADAM_TH, 0, s>>>(w, g, m, v, w_bf16, n, *c, gscale);
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
  if (gdt == POSE_F32)
    k_adamw_bf16<<<adam_grid(n), ADAM_TH, 0, s>>>(w, (const float *)g, m, v, n, *c, gscale, seed, stream_id);
  else
    k_adamw_bf16<<<adam_grid(n), ADAM_TH, 0, s>>>(w, (const bf16 *)g, m, v, n, *c, gscale, seed, stream_id);
  PC_LAUNCHED("adamw_bf16");
  return POSE_OK;
}

// ---- multi-tensor AdamW: one launch over a table of tensors, one block per chunk of ADAM_CHUNK elements ----

extern "C" int64_t pose_cuda_adamw_mt_plan(pose_cuda_adamw_entry *e, int count) {
  int64_t chunks = 0;
  for (int t = 0; t < count; t++) {
    e[t].first = chunks;
    chunks += (e[t].n + ADAM_CHUNK - 1) / ADAM_CHUNK; // an empty tensor owns no chunk
  }
  return chunks;
}

// The entry owning chunk b: the last t with first[t] <= b and a non-empty range (empty tensors share their
// successor's first; the search takes the last such, which is the non-empty one).
__device__ __forceinline__ int mt_find(const pose_cuda_adamw_entry *__restrict__ e, int count, int64_t b) {
  int lo = 0, hi = count - 1;
  while (lo < hi) {
    int mid = (lo + hi + 1) / 2;
    if (e[mid].first <= b) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

template <bool BF16>
__global__ void k_adamw_mt(const pose_cuda_adamw_entry *__restrict__ tab, int count, pose_cuda_adamw_coefs k0,
                           pose_cuda_adamw_coefs k1, const float *__restrict__ gscale, uint64_t seed,
                           const double *__restrict__ guard, const double *__restrict__ guard_all) {
  const pose_cuda_adamw_entry e = tab[mt_find(tab, count, blockIdx.x)];
  if (guard && e.guard >= 0 && !isfinite(guard[e.guard])) return; // non-finite gradients: leave w, m, v alone
  if (guard_all && !isfinite(*guard_all)) return;
  const int64_t lo = ((int64_t)blockIdx.x - e.first) * ADAM_CHUNK, hi = lo + ADAM_CHUNK < e.n ? lo + ADAM_CHUNK : e.n;
  // a field-wise select keeps both in registers (a reference to either parameter would go to local memory)
  const bool d = e.decay != 0;
  pose_cuda_adamw_coefs k;
  k.decay = d ? k1.decay : k0.decay;
  k.apply_decay = d ? k1.apply_decay : k0.apply_decay;
  k.lerp_w = d ? k1.lerp_w : k0.lerp_w;
  k.beta2 = d ? k1.beta2 : k0.beta2;
  k.one_minus_beta2 = d ? k1.one_minus_beta2 : k0.one_minus_beta2;
  k.bc2_sqrt = d ? k1.bc2_sqrt : k0.bc2_sqrt;
  k.eps = d ? k1.eps : k0.eps;
  k.neg_step_size = d ? k1.neg_step_size : k0.neg_step_size;
  if (BF16) {
    const bool vec = al16(e.w) && al16(e.g) && al16(e.m) && al16(e.v);
    if (e.g_bf16)
      adamw_bf16_range((uint16_t *)e.w, (const bf16 *)e.g, (uint16_t *)e.m, (uint16_t *)e.v, lo, hi, k, gscale, seed,
                       e.stream_id, vec);
    else
      adamw_bf16_range((uint16_t *)e.w, (const float *)e.g, (uint16_t *)e.m, (uint16_t *)e.v, lo, hi, k, gscale, seed,
                       e.stream_id, vec);
  } else {
    const bool vec = al16(e.w) && al16(e.g) && al16(e.m) && al16(e.v) && (!e.w_bf16 || al16(e.w_bf16));
    if (e.g_bf16)
      adamw_f32_range((float *)e.w, (const bf16 *)e.g, (float *)e.m, (float *)e.v, (uint16_t *)e.w_bf16, lo, hi, k,
                      gscale, vec);
    else
      adamw_f32_range((float *)e.w, (const float *)e.g, (float *)e.m, (float *)e.v, (uint16_t *)e.w_bf16, lo, hi, k,
                      gscale, vec);
  }
}

extern "C" pose_status pose_cuda_adamw_mt(const pose_cuda_adamw_entry *table, int count, int64_t chunks, int bf16_policy,
                                          const pose_cuda_adamw_coefs *no_decay, const pose_cuda_adamw_coefs *decay,
                                          const float *gscale, uint64_t seed, const double *guard,
                                          const double *guard_all, pose_cuda_stream s) {
  PC_REQUIRE(count >= 0 && chunks >= 0 && no_decay && decay, "adamw_mt: bad arguments");
  PC_REQUIRE(chunks < ((int64_t)1 << 31), "adamw_mt: %lld chunks exceed the grid", (long long)chunks);
  if (count == 0 || chunks == 0) return POSE_OK;
  PC_REQUIRE(table, "adamw_mt: NULL table");
  if (bf16_policy)
    k_adamw_mt<true><<<(unsigned)chunks, ADAM_TH, 0, s>>>(table, count, *no_decay, *decay, gscale, seed, guard, guard_all);
  else
    k_adamw_mt<false><<<(unsigned)chunks, ADAM_TH, 0, s>>>(table, count, *no_decay, *decay, gscale, seed, guard, guard_all);
  PC_LAUNCHED("adamw_mt");
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

// ---- per-group squared norms for the fused update: the partials of k_block_sums, then each tensor's squared norm
// rounded through float as k_finish does, stored at its parameter index (so that the global norm summed in
// parameter order is bit for bit pose_cuda_grad_norm's), and the group's sum of them ----

extern "C" int64_t pose_cuda_sumsq_plan(const int64_t *numel, int count, int64_t *first) {
  int64_t nparts = 0;
  for (int t = 0; t < count; t++) {
    first[t] = nparts;
    int64_t nb = (numel[t] + NORM_BLOCK - 1) / NORM_BLOCK;
    nparts += nb > 0 ? nb : 1;
  }
  return nparts;
}

__global__ void k_finish_group(const double *__restrict__ part, const int64_t *__restrict__ first,
                               const int32_t *__restrict__ idx, int count, int64_t nparts, double *__restrict__ tn,
                               double *__restrict__ group_sq) {
  for (int t = threadIdx.x; t < count; t += blockDim.x) {
    int64_t a = first[t], e = t + 1 < count ? first[t + 1] : nparts;
    double st = 0.0;
    for (int64_t i = a; i < e; i++) st += part[i];
    float nt = (float)sqrt(st);
    tn[idx[t]] = (double)nt * nt;
  }
  __syncthreads();
  if (threadIdx.x != 0) return;
  double tot = 0.0;
  for (int t = 0; t < count; t++) tot += tn[idx[t]];
  if (group_sq) *group_sq = tot;
}

// k_block_sums's squares with the dtype chosen per tensor (1 = bf16): the same partials for each tensor.
__global__ void k_block_sumsq_mixed(const void *const *__restrict__ ptrs, const int64_t *__restrict__ numel,
                                    const int64_t *__restrict__ first, const int32_t *__restrict__ is_bf16, int count,
                                    double *__restrict__ part) {
  __shared__ double sh[32];
  int64_t b = blockIdx.x;
  int lo = 0, hi = count - 1;
  while (lo < hi) {
    int mid = (lo + hi + 1) / 2;
    if (first[mid] <= b) lo = mid;
    else hi = mid - 1;
  }
  int64_t n = numel[lo], start = (b - first[lo]) * NORM_BLOCK, end = start + NORM_BLOCK < n ? start + NORM_BLOCK : n;
  double acc = 0.0;
  if (is_bf16[lo]) {
    const bf16 *x = (const bf16 *)ptrs[lo];
    for (int64_t i = start + threadIdx.x; i < end; i += blockDim.x) {
      double xv = (double)pc_ld(x, i);
      acc += xv * xv;
    }
  } else {
    const float *x = (const float *)ptrs[lo];
    for (int64_t i = start + threadIdx.x; i < end; i += blockDim.x) {
      double xv = (double)pc_ld(x, i);
      acc += xv * xv;
    }
  }
  double tot = pc_block_sum(acc, sh);
  if (threadIdx.x == 0) part[b] = tot;
}

extern "C" pose_status pose_cuda_group_sumsq(const void *const *ptrs, const int64_t *numel, const int64_t *first,
                                             const int32_t *idx, const int32_t *is_bf16, int count, int64_t nparts,
                                             pose_dtype dt, double *part, double *tn, double *group_sq,
                                             pose_cuda_stream s) {
  PC_DTYPE(dt, "group_sumsq");
  PC_REQUIRE(count > 0 && nparts > 0 && ptrs && numel && first && idx && part && tn, "group_sumsq: bad arguments");
  PC_REQUIRE(nparts < ((int64_t)1 << 31), "group_sumsq: %lld partials exceed the grid", (long long)nparts);
  if (is_bf16)
    k_block_sumsq_mixed<<<(unsigned)nparts, 256, 0, s>>>(ptrs, numel, first, is_bf16, count, part);
  else if (dt == POSE_F32)
    k_block_sums<float, true><<<(unsigned)nparts, 256, 0, s>>>((const float *const *)ptrs, numel, first, count, part);
  else k_block_sums<bf16, true><<<(unsigned)nparts, 256, 0, s>>>((const bf16 *const *)ptrs, numel, first, count, part);
  PC_LAUNCHED("group_sumsq");
  k_finish_group<<<1, 256, 0, s>>>(part, first, idx, count, nparts, tn, group_sq);
  PC_LAUNCHED("group_sumsq finish");
  return POSE_OK;
}

__global__ void k_norm_from_sq(const double *__restrict__ tn, int count, float *__restrict__ norm) {
  double tot = 0.0;
  for (int t = 0; t < count; t++) tot += tn[t];
  *norm = (float)sqrt(tot);
}

extern "C" pose_status pose_cuda_norm_from_sq(const double *tn, int count, float *norm, pose_cuda_stream s) {
  PC_REQUIRE(tn && norm && count > 0, "norm_from_sq: bad arguments");
  k_norm_from_sq<<<1, 1, 0, s>>>(tn, count, norm);
  PC_LAUNCHED("norm_from_sq");
  return POSE_OK;
}

// One block, no host-side table (so no pageable copy that could stall the host mid-run): a guard value, summed in a
// fixed order all the same.
__global__ void k_sum_small(const float *__restrict__ x, int64_t n, double *__restrict__ out) {
  __shared__ double sh[32];
  double acc = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) acc += (double)x[i];
  double tot = pc_block_sum(acc, sh);
  if (threadIdx.x == 0) *out = tot;
}

extern "C" pose_status pose_cuda_sum_small(const float *x, int64_t n, double *out, pose_cuda_stream s) {
  PC_REQUIRE(n >= 0 && x && out, "sum_small: bad arguments");
  k_sum_small<<<1, 256, 0, s>>>(x, n, out);
  PC_LAUNCHED("sum_small");
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
