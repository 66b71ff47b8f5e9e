// Rotary embedding applied in place at arbitrary positions. One thread per (token, pair j): it computes the angle
// once, phi = fl32(inv[j] * fl32(p)), then cos/sin with CUDA's full-range sincosf (positions reach 10^5..10^6, so
// the fast __sinf/__cosf would be wrong), scales by the attention factor in fp32, and rotates pair j of every head.
#include "common.cuh"

template <typename T>
__global__ void k_rope(T *__restrict__ x, int64_t N, int64_t stride, int H, int D, int r,
                       const int64_t *__restrict__ pos, const float *__restrict__ inv, float A, int interleaved,
                       int transpose) {
  int half = r / 2;
  int64_t total = N * half;
  for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < total;
       idx += (int64_t)gridDim.x * blockDim.x) {
    int64_t n = idx / half;
    int j = (int)(idx - n * half);
    float phi = __fmul_rn(inv[j], (float)pos[n]);
    float sn, cs;
    sincosf(phi, &sn, &cs);
    if (A != 1.0f) {
      cs = __fmul_rn(cs, A);
      sn = __fmul_rn(sn, A);
    }
    if (transpose) sn = -sn;
    int i0 = interleaved ? 2 * j : j, i1 = interleaved ? 2 * j + 1 : j + half;
    T *xt = x + n * stride;
    for (int h = 0; h < H; h++) {
      T *xh = xt + (int64_t)h * D;
      float a = pc_ld(xh, i0), b = pc_ld(xh, i1);
      // torch's x*cos + rotate(x)*sin with each product and the sum rounded separately (exact in fp32 as the CPU)
      float y0 = __fadd_rn(__fmul_rn(a, cs), __fmul_rn(-b, sn));
      float y1 = __fadd_rn(__fmul_rn(b, cs), __fmul_rn(a, sn));
      pc_st(xh, i0, y0);
      pc_st(xh, i1, y1);
    }
  }
}

extern "C" pose_status pose_cuda_rope_apply(void *x, pose_dtype dt, int64_t N, int64_t stride, int64_t H, int64_t D,
                                            int64_t r, const int64_t *pos, const float *inv_freq, float attn_factor,
                                            int interleaved, int transpose, pose_cuda_stream s) {
  PC_DTYPE(dt, "rope_apply");
  PC_REQUIRE(N >= 0 && H > 0 && D > 0 && H < (1 << 20) && D < (1 << 20), "rope_apply: bad sizes N=%lld H=%lld D=%lld",
             (long long)N, (long long)H, (long long)D);
  PC_REQUIRE(r >= 0 && r <= D && r % 2 == 0, "rope_apply: rotary dims r=%lld must be even and at most D=%lld",
             (long long)r, (long long)D);
  PC_REQUIRE(stride >= H * D, "rope_apply: token stride %lld < H*D = %lld", (long long)stride, (long long)(H * D));
  if (N == 0 || r == 0) return POSE_OK;
  PC_REQUIRE(x && pos && inv_freq, "rope_apply: NULL buffer");
  int64_t total = N * (r / 2);
  const int th = 256;
  if (dt == POSE_F32)
    k_rope<<<pc_grid(total, th), th, 0, s>>>((float *)x, N, stride, (int)H, (int)D, (int)r, pos, inv_freq,
                                             attn_factor, interleaved, transpose);
  else
    k_rope<<<pc_grid(total, th), th, 0, s>>>((bf16 *)x, N, stride, (int)H, (int)D, (int)r, pos, inv_freq,
                                             attn_factor, interleaved, transpose);
  PC_LAUNCHED("rope_apply");
  return POSE_OK;
}
