// Shared by the kernel files: status helpers, bf16/fp32 element access, block reductions, scratch memory.
#ifndef POSE_CUDA_COMMON_CUH
#define POSE_CUDA_COMMON_CUH

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>

extern "C" {
#include "pose_cuda.h"
}

typedef __nv_bfloat16 bf16;

static inline pose_status pose_cuda_fail(cudaError_t e, const char *what) {
  return pose_error(POSE_EDEVICE, "CUDA %s failed: %s", what, cudaGetErrorString(e));
}

#define PC_CU(expr, what)                                    \
  do {                                                       \
    cudaError_t pc_e_ = (expr);                              \
    if (pc_e_ != cudaSuccess) return pose_cuda_fail(pc_e_, what); \
  } while (0)

// After a launch: configuration errors (too many threads, too much shared memory) show up here.
#define PC_LAUNCHED(what) PC_CU(cudaGetLastError(), what)

#define PC_REQUIRE(cond, ...)                              \
  do {                                                     \
    if (!(cond)) return pose_error(POSE_EINVAL, __VA_ARGS__); \
  } while (0)

static inline int pc_float_dt(pose_dtype dt) { return dt == POSE_F32 || dt == POSE_BF16; }

#define PC_DTYPE(dt, what)                                                                                        \
  do {                                                                                                            \
    if (!pc_float_dt(dt))                                                                                         \
      return pose_error(POSE_EUNSUPPORTED, "%s: dtype %s is not supported on the GPU (f32 or bf16)", what,        \
                        pose_dtype_name(dt));                                                                     \
  } while (0)

// ---- element access: loads return fp32, stores round to nearest even ----
__device__ __forceinline__ float pc_ld(const float *p, int64_t i) { return p[i]; }
__device__ __forceinline__ float pc_ld(const bf16 *p, int64_t i) { return __bfloat162float(p[i]); }
__device__ __forceinline__ void pc_st(float *p, int64_t i, float v) { p[i] = v; }
__device__ __forceinline__ void pc_st(bf16 *p, int64_t i, float v) { p[i] = __float2bfloat16_rn(v); }

// ---- reductions ----
__device__ __forceinline__ float pc_warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ double pc_warp_sum(double v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float pc_warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result. `sh` holds 32
// values of T; the function synchronises before returning so that `sh` can be reused at once.
template <typename T>
__device__ __forceinline__ T pc_block_sum(T v, T *sh) {
  int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = pc_warp_sum(v);
  if (lane == 0) sh[wid] = v;
  __syncthreads();
  T r = 0;
  for (int i = 0; i < nw; i++) r += sh[i]; // same order in every thread: identical results
  __syncthreads();
  return r;
}

// Two sums at once (one pair of barriers instead of two); `sh` holds 32 float2.
__device__ __forceinline__ float2 pc_block_sum2(float a, float b, float2 *sh) {
  int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
  a = pc_warp_sum(a);
  b = pc_warp_sum(b);
  if (lane == 0) sh[wid] = make_float2(a, b);
  __syncthreads();
  float2 r = make_float2(0.0f, 0.0f);
  for (int i = 0; i < nw; i++) {
    r.x += sh[i].x;
    r.y += sh[i].y;
  }
  __syncthreads();
  return r;
}

// ---- 8 consecutive elements as 16-byte accesses (p 16-byte aligned): one uint4 of bf16, two float4 of fp32 ----
__device__ __forceinline__ void pc_ld8(const bf16 *p, float *v) {
  uint4 u = *(const uint4 *)p;
  uint32_t w[4] = {u.x, u.y, u.z, u.w};
#pragma unroll
  for (int i = 0; i < 4; i++) {
    v[2 * i] = __uint_as_float(w[i] << 16);
    v[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
  }
}
__device__ __forceinline__ void pc_ld8(const float *p, float *v) {
  float4 a = ((const float4 *)p)[0], b = ((const float4 *)p)[1];
  v[0] = a.x; v[1] = a.y; v[2] = a.z; v[3] = a.w;
  v[4] = b.x; v[5] = b.y; v[6] = b.z; v[7] = b.w;
}
__device__ __forceinline__ void pc_st8(bf16 *p, const float *v) {
  uint4 u;
  __nv_bfloat162 h0 = __floats2bfloat162_rn(v[0], v[1]), h1 = __floats2bfloat162_rn(v[2], v[3]);
  __nv_bfloat162 h2 = __floats2bfloat162_rn(v[4], v[5]), h3 = __floats2bfloat162_rn(v[6], v[7]);
  u.x = *(uint32_t *)&h0; u.y = *(uint32_t *)&h1; u.z = *(uint32_t *)&h2; u.w = *(uint32_t *)&h3;
  *(uint4 *)p = u;
}
__device__ __forceinline__ void pc_st8(float *p, const float *v) {
  ((float4 *)p)[0] = make_float4(v[0], v[1], v[2], v[3]);
  ((float4 *)p)[1] = make_float4(v[4], v[5], v[6], v[7]);
}
static inline bool pc_al16(const void *p) { return ((uintptr_t)p & 15) == 0; }

// ---- scratch: stream-ordered allocations from the device's default pool, which is told to keep freed memory so
// that repeated calls do not go back to the driver ----
pose_status pc_scratch_alloc(void **p, size_t bytes, cudaStream_t s);
void pc_scratch_free(void *p, cudaStream_t s);

// Blocks for a grid-stride elementwise loop over n items.
static inline unsigned pc_grid(int64_t n, int threads) {
  int64_t b = (n + threads - 1) / threads;
  int64_t cap = (int64_t)(pose_cuda_sm_count() > 0 ? pose_cuda_sm_count() : 132) * 16;
  if (b > cap) b = cap;
  if (b < 1) b = 1;
  return (unsigned)b;
}

#endif
