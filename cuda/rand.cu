// Random fills on the device with the same values as pose_tensor_rand_normal / _uniform on the CPU: element i takes
// the i-th draw of the (seed, stream) Philox sequence, whose 32-bit words are consumed in order (one per uniform, two
// per normal), so a tensor initialised on the GPU equals the CPU's (uniforms exactly; normals up to the last bit
// of the device's double log/cos, which agree with glibc's after rounding to float in all but rare cases).
#include "common.cuh"
#include "philox.cuh"

__device__ __forceinline__ uint32_t word_at(uint64_t seed, uint64_t stream, uint64_t w) {
  uint4 r = philox4x32(seed, stream, w >> 2);
  switch (w & 3) {
  case 0: return r.x;
  case 1: return r.y;
  case 2: return r.z;
  default: return r.w;
  }
}

template <typename T>
__global__ void k_rand(T *__restrict__ x, int64_t n, uint64_t seed, uint64_t stream, double a, double b, int normal) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    double v;
    if (normal) {
      uint4 r = philox4x32(seed, stream, (uint64_t)i >> 1); // words 2i and 2i+1 share one block
      uint32_t w0 = (i & 1) ? r.z : r.x, w1 = (i & 1) ? r.w : r.y;
      float u1 = 1.0f - (float)(w0 >> 8) * 0x1.0p-24f, u2 = (float)(w1 >> 8) * 0x1.0p-24f;
      float z = (float)(sqrt(-2.0 * log((double)u1)) * cos(6.283185307179586 * (double)u2));
      v = a + b * (double)z;
    } else {
      float u = (float)(word_at(seed, stream, (uint64_t)i) >> 8) * 0x1.0p-24f;
      v = a + (b - a) * (double)u;
    }
    pc_st(x, i, (float)v);
  }
}

extern "C" pose_status pose_cuda_rand(void *x, pose_dtype dt, int64_t n, uint64_t seed, uint64_t stream, double a,
                                      double b, int normal, pose_cuda_stream s) {
  PC_DTYPE(dt, "rand");
  PC_REQUIRE(n >= 0, "rand: negative count");
  if (n == 0) return POSE_OK;
  PC_REQUIRE(x, "rand: NULL buffer");
  const int th = 256;
  if (dt == POSE_F32) k_rand<<<pc_grid(n, th), th, 0, s>>>((float *)x, n, seed, stream, a, b, normal);
  else k_rand<<<pc_grid(n, th), th, 0, s>>>((bf16 *)x, n, seed, stream, a, b, normal);
  PC_LAUNCHED("rand");
  return POSE_OK;
}
