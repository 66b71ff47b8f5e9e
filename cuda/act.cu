// MLP activations, elementwise over [N,F] with strided input rows (fused gate|up projections).
#include "common.cuh"

__device__ __forceinline__ void act_eval(int k, float x, float *f, float *df) {
  switch (k) {
  case POSE_CUDA_SILU: {
    float s = 1.0f / (1.0f + expf(-x));
    *f = x * s;
    *df = s * (1.0f + x * (1.0f - s));
    break;
  }
  case POSE_CUDA_GELU_ERF: {
    float cdf = 0.5f * (1.0f + erff(x * 0.70710678118654752440f));
    *f = x * cdf;
    *df = cdf + x * expf(-0.5f * x * x) * 0.39894228040143267794f;
    break;
  }
  case POSE_CUDA_GELU_TANH: {
    const float k0 = 0.79788456080286535588f, k1 = 0.044715f;
    float t = tanhf(k0 * (x + k1 * x * x * x));
    *f = 0.5f * x * (1.0f + t);
    *df = 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * k0 * (1.0f + 3.0f * k1 * x * x);
    break;
  }
  default:
    *f = x > 0.0f ? x : 0.0f;
    *df = x > 0.0f ? 1.0f : 0.0f;
    break;
  }
}

template <typename T>
__global__ void k_act_fwd(int k, const T *__restrict__ g, const T *__restrict__ u, int64_t ld, int64_t N, int64_t F,
                          T *__restrict__ a) {
  int64_t total = N * F;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
    int64_t n = i / F, c = i - n * F, o = n * ld + c;
    float f, df;
    act_eval(k, pc_ld(g, o), &f, &df);
    pc_st(a, i, u ? f * pc_ld(u, o) : f);
  }
}

template <typename T>
__global__ void k_act_bwd(int k, const T *g, const T *u, int64_t ld, int64_t N, int64_t F, const T *__restrict__ da,
                          T *dg, T *du, int64_t ldo) {
  int64_t total = N * F;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
    int64_t n = i / F, c = i - n * F, o = n * ld + c, oo = n * ldo + c;
    float f, df, d = pc_ld(da, i);
    act_eval(k, pc_ld(g, o), &f, &df);
    if (u) {
      float uv = pc_ld(u, o); // read both inputs before writing: dg/du may overwrite g/u in place
      pc_st(dg, oo, d * uv * df);
      pc_st(du, oo, d * f);
    } else {
      pc_st(dg, oo, d * df);
    }
  }
}

// 8 columns per thread with 16-byte accesses (F, the row strides and the pointers 8-element aligned).
template <typename T>
__global__ void k_act_fwd_vec(int k, const T *__restrict__ g, const T *__restrict__ u, int64_t ld, int64_t N,
                              int64_t F, T *__restrict__ a) {
  int64_t F8 = F / 8, total = N * F8;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
    int64_t n = i / F8, c = (i - n * F8) * 8, o = n * ld + c;
    float gv[8], uv[8], out[8];
    pc_ld8(g + o, gv);
    if (u) pc_ld8(u + o, uv);
#pragma unroll
    for (int e = 0; e < 8; e++) {
      float f, df;
      act_eval(k, gv[e], &f, &df);
      out[e] = u ? f * uv[e] : f;
    }
    pc_st8(a + n * F + c, out);
  }
}

template <typename T>
__global__ void k_act_bwd_vec(int k, const T *g, const T *u, int64_t ld, int64_t N, int64_t F, const T *__restrict__ da,
                              T *dg, T *du, int64_t ldo) {
  int64_t F8 = F / 8, total = N * F8;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
    int64_t n = i / F8, c = (i - n * F8) * 8, o = n * ld + c, oo = n * ldo + c;
    float gv[8], uv[8], dv[8], rg[8], ru[8];
    pc_ld8(g + o, gv);
    if (u) pc_ld8(u + o, uv); // both inputs are read before anything is written: in place is safe
    pc_ld8(da + n * F + c, dv);
#pragma unroll
    for (int e = 0; e < 8; e++) {
      float f, df;
      act_eval(k, gv[e], &f, &df);
      rg[e] = u ? dv[e] * uv[e] * df : dv[e] * df;
      ru[e] = dv[e] * f;
    }
    pc_st8(dg + oo, rg);
    if (u) pc_st8(du + oo, ru);
  }
}

static bool act_vec_ok(int64_t F, int64_t ld, const void *a, const void *b, const void *c, const void *d) {
  return F % 8 == 0 && ld % 8 == 0 && pc_al16(a) && (!b || pc_al16(b)) && (!c || pc_al16(c)) && (!d || pc_al16(d));
}

static pose_status act_args(const char *what, pose_cuda_act k, pose_dtype dt, int64_t ld, int64_t N, int64_t F) {
  PC_DTYPE(dt, what);
  PC_REQUIRE((int)k >= POSE_CUDA_SILU && (int)k <= POSE_CUDA_RELU, "%s: unknown activation %d", what, (int)k);
  PC_REQUIRE(N >= 0 && F >= 0 && ld >= F, "%s: bad sizes N=%lld F=%lld ld=%lld", what, (long long)N, (long long)F,
             (long long)ld);
  return POSE_OK;
}

extern "C" pose_status pose_cuda_act_fwd(pose_cuda_act k, const void *g, const void *u, int64_t ld_in, pose_dtype dt,
                                         int64_t N, int64_t F, void *a, pose_cuda_stream s) {
  POSE_TRY(act_args("act_fwd", k, dt, ld_in, N, F));
  if (N * F == 0) return POSE_OK;
  PC_REQUIRE(g && a, "act_fwd: NULL buffer");
  const int th = 256;
  if (act_vec_ok(F, ld_in, g, u, a, NULL)) {
    unsigned gv = pc_grid(N * F / 8, th);
    if (dt == POSE_F32)
      k_act_fwd_vec<<<gv, th, 0, s>>>((int)k, (const float *)g, (const float *)u, ld_in, N, F, (float *)a);
    else
      k_act_fwd_vec<<<gv, th, 0, s>>>((int)k, (const bf16 *)g, (const bf16 *)u, ld_in, N, F, (bf16 *)a);
    PC_LAUNCHED("act_fwd");
    return POSE_OK;
  }
  unsigned gr = pc_grid(N * F, th);
  if (dt == POSE_F32) k_act_fwd<<<gr, th, 0, s>>>((int)k, (const float *)g, (const float *)u, ld_in, N, F, (float *)a);
  else k_act_fwd<<<gr, th, 0, s>>>((int)k, (const bf16 *)g, (const bf16 *)u, ld_in, N, F, (bf16 *)a);
  PC_LAUNCHED("act_fwd");
  return POSE_OK;
}

extern "C" pose_status pose_cuda_act_bwd(pose_cuda_act k, const void *g, const void *u, int64_t ld_in, pose_dtype dt,
                                         int64_t N, int64_t F, const void *da, void *dg, void *du, int64_t ld_out,
                                         pose_cuda_stream s) {
  POSE_TRY(act_args("act_bwd", k, dt, ld_in, N, F));
  PC_REQUIRE(ld_out >= F, "act_bwd: ld_out %lld < F %lld", (long long)ld_out, (long long)F);
  if (N * F == 0) return POSE_OK;
  PC_REQUIRE(g && da && dg && (!u || du), "act_bwd: NULL buffer (gated activations need du)");
  const int th = 256;
  if (act_vec_ok(F, ld_in, g, u, da, NULL) && act_vec_ok(F, ld_out, dg, du, NULL, NULL)) {
    unsigned gv = pc_grid(N * F / 8, th);
    if (dt == POSE_F32)
      k_act_bwd_vec<<<gv, th, 0, s>>>((int)k, (const float *)g, (const float *)u, ld_in, N, F, (const float *)da,
                                      (float *)dg, (float *)du, ld_out);
    else
      k_act_bwd_vec<<<gv, th, 0, s>>>((int)k, (const bf16 *)g, (const bf16 *)u, ld_in, N, F, (const bf16 *)da,
                                      (bf16 *)dg, (bf16 *)du, ld_out);
    PC_LAUNCHED("act_bwd");
    return POSE_OK;
  }
  unsigned gr = pc_grid(N * F, th);
  if (dt == POSE_F32)
    k_act_bwd<<<gr, th, 0, s>>>((int)k, (const float *)g, (const float *)u, ld_in, N, F, (const float *)da,
                                (float *)dg, (float *)du, ld_out);
  else
    k_act_bwd<<<gr, th, 0, s>>>((int)k, (const bf16 *)g, (const bf16 *)u, ld_in, N, F, (const bf16 *)da, (bf16 *)dg,
                                (bf16 *)du, ld_out);
  PC_LAUNCHED("act_bwd");
  return POSE_OK;
}
