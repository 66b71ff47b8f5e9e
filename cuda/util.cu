// Device facts, scratch memory and the dtype conversions.
#include <pthread.h>
#include <stdint.h>

#include "common.cuh"

#define PC_MAX_DEVICES 64
static int g_sms[PC_MAX_DEVICES];
static int g_pool_set[PC_MAX_DEVICES];
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;

extern "C" int pose_cuda_sm_count(void) {
  int dev = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || dev < 0 || dev >= PC_MAX_DEVICES) {
    cudaGetLastError();
    return 0;
  }
  if (g_sms[dev] > 0) return g_sms[dev];
  int n = 0;
  if (cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  g_sms[dev] = n;
  return n;
}

pose_status pc_scratch_alloc(void **p, size_t bytes, cudaStream_t s) {
  int dev = 0;
  PC_CU(cudaGetDevice(&dev), "cudaGetDevice");
  if (dev >= 0 && dev < PC_MAX_DEVICES && !g_pool_set[dev]) {
    pthread_mutex_lock(&g_mu);
    if (!g_pool_set[dev]) {
      // Keep freed blocks in the pool: without this, every synchronisation hands them back to the driver and the
      // next allocation pays for a fresh mapping.
      cudaMemPool_t pool;
      if (cudaDeviceGetDefaultMemPool(&pool, dev) == cudaSuccess) {
        uint64_t keep = UINT64_MAX;
        cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &keep);
      }
      cudaGetLastError();
      g_pool_set[dev] = 1;
    }
    pthread_mutex_unlock(&g_mu);
  }
  if (bytes == 0) bytes = 16;
  cudaError_t e = cudaMallocAsync(p, bytes, s);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return pose_error(POSE_ENOMEM, "cuda: out of memory allocating %.1f MiB of scratch (%s)", bytes / 1048576.0,
                      cudaGetErrorString(e));
  }
  return POSE_OK;
}

void pc_scratch_free(void *p, cudaStream_t s) {
  if (p) cudaFreeAsync(p, s);
}

// ---- conversions: 8 elements per thread when both buffers are 16-byte aligned, one otherwise ----
template <typename D, typename S>
__global__ void k_convert(D *__restrict__ dst, const S *__restrict__ src, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    pc_st(dst, i, pc_ld(src, i));
}

__global__ void k_f32_to_bf16_vec(uint4 *__restrict__ dst, const float4 *__restrict__ src, int64_t n8) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n8; i += (int64_t)gridDim.x * blockDim.x) {
    float4 a = src[2 * i], b = src[2 * i + 1];
    __nv_bfloat162 r0 = __floats2bfloat162_rn(a.x, a.y), r1 = __floats2bfloat162_rn(a.z, a.w);
    __nv_bfloat162 r2 = __floats2bfloat162_rn(b.x, b.y), r3 = __floats2bfloat162_rn(b.z, b.w);
    uint4 o;
    o.x = *(uint32_t *)&r0; o.y = *(uint32_t *)&r1; o.z = *(uint32_t *)&r2; o.w = *(uint32_t *)&r3;
    dst[i] = o;
  }
}

__global__ void k_bf16_to_f32_vec(float4 *__restrict__ dst, const uint4 *__restrict__ src, int64_t n8) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n8; i += (int64_t)gridDim.x * blockDim.x) {
    uint4 v = src[i];
    float4 a, b;
    a.x = __uint_as_float(v.x << 16); a.y = __uint_as_float(v.x & 0xffff0000u);
    a.z = __uint_as_float(v.y << 16); a.w = __uint_as_float(v.y & 0xffff0000u);
    b.x = __uint_as_float(v.z << 16); b.y = __uint_as_float(v.z & 0xffff0000u);
    b.z = __uint_as_float(v.w << 16); b.w = __uint_as_float(v.w & 0xffff0000u);
    dst[2 * i] = a;
    dst[2 * i + 1] = b;
  }
}

extern "C" pose_status pose_cuda_convert(void *dst, pose_dtype dst_dt, const void *src, pose_dtype src_dt, int64_t n,
                                         pose_cuda_stream s) {
  PC_DTYPE(dst_dt, "convert");
  PC_DTYPE(src_dt, "convert");
  PC_REQUIRE(n >= 0, "convert: negative count %lld", (long long)n);
  if (n == 0) return POSE_OK;
  PC_REQUIRE(dst && src, "convert: NULL buffer");
  if (dst_dt == src_dt) {
    PC_CU(cudaMemcpyAsync(dst, src, (size_t)n * pose_dtype_size(dst_dt), cudaMemcpyDeviceToDevice, s), "copy");
    return POSE_OK;
  }
  const int th = 256;
  int aligned = ((uintptr_t)dst % 16 == 0) && ((uintptr_t)src % 16 == 0);
  int64_t n8 = aligned ? n / 8 : 0, done = n8 * 8;
  if (dst_dt == POSE_BF16) {
    if (n8) k_f32_to_bf16_vec<<<pc_grid(n8, th), th, 0, s>>>((uint4 *)dst, (const float4 *)src, n8);
    if (n > done)
      k_convert<<<pc_grid(n - done, th), th, 0, s>>>((bf16 *)dst + done, (const float *)src + done, n - done);
  } else {
    if (n8) k_bf16_to_f32_vec<<<pc_grid(n8, th), th, 0, s>>>((float4 *)dst, (const uint4 *)src, n8);
    if (n > done)
      k_convert<<<pc_grid(n - done, th), th, 0, s>>>((float *)dst + done, (const bf16 *)src + done, n - done);
  }
  PC_LAUNCHED("convert");
  return POSE_OK;
}
