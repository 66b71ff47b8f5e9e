// RMSNorm and LayerNorm, forward and backward, one block per row with fp32 statistics. The backward's weight and
// bias gradients are summed deterministically: a fixed number of blocks each own a fixed set of rows and keep their
// partial column sums in shared memory, then a second kernel adds the partials in block order.
#include "common.cuh"

#define NORM_THREADS 256
#define NORM_MAX_C 16384

template <typename T, typename W>
__global__ void __launch_bounds__(NORM_THREADS) k_norm_fwd(int rms, const T *__restrict__ x, const W *__restrict__ w,
                                                           const W *__restrict__ b, float eps, int64_t C,
                                                           T *__restrict__ y, float *__restrict__ mean_out,
                                                           float *__restrict__ rstd_out) {
  __shared__ float sh[32];
  int64_t row = blockIdx.x;
  const T *xr = x + row * C;
  T *yr = y + row * C;
  float mean = 0.0f;
  if (!rms) {
    float s = 0.0f;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) s += pc_ld(xr, c);
    mean = pc_block_sum(s, sh) / (float)C;
  }
  float ss = 0.0f;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    float d = pc_ld(xr, c) - mean;
    ss += d * d;
  }
  float var = pc_block_sum(ss, sh) / (float)C;
  float rstd = rsqrtf(var + eps);
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    float v = (pc_ld(xr, c) - mean) * rstd * pc_ld(w, c);
    if (b) v += pc_ld(b, c);
    pc_st(yr, c, v);
  }
  if (threadIdx.x == 0) {
    rstd_out[row] = rstd;
    if (mean_out) mean_out[row] = mean;
  }
}

// Block g handles rows g, g + G, ...; its dw/db partials for all C columns stay in shared memory (each thread owns
// the columns c = tid + k * blockDim, so no two threads touch one entry) and are written to part[g][C].
template <typename T, typename W>
__global__ void __launch_bounds__(NORM_THREADS)
    k_norm_bwd(int rms, const T *__restrict__ x, const W *__restrict__ w, const float *__restrict__ mean_in,
               const float *__restrict__ rstd_in, const T *__restrict__ dy, int64_t N, int64_t C, T *__restrict__ dx,
               int accumulate, float *__restrict__ part_w, float *__restrict__ part_b) {
  extern __shared__ float smem[];
  float *pw = smem, *pb = smem + C;
  __shared__ float sh[32];
  int want_b = part_b != NULL;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    pw[c] = 0.0f;
    if (want_b) pb[c] = 0.0f;
  }
  for (int64_t row = blockIdx.x; row < N; row += gridDim.x) {
    const T *xr = x + row * C, *dyr = dy + row * C;
    float mean = rms ? 0.0f : mean_in[row], rstd = rstd_in[row];
    float s_gx = 0.0f, s_g = 0.0f; // sum (dy*w) * xhat, sum dy*w
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
      float xh = (pc_ld(xr, c) - mean) * rstd, gy = pc_ld(dyr, c);
      float gw = gy * pc_ld(w, c);
      s_gx += gw * xh;
      s_g += gw;
      pw[c] += gy * xh;
      if (want_b) pb[c] += gy;
    }
    float m_gx = pc_block_sum(s_gx, sh) / (float)C;
    float m_g = rms ? 0.0f : pc_block_sum(s_g, sh) / (float)C;
    T *dxr = dx + row * C;
    for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
      float xh = (pc_ld(xr, c) - mean) * rstd;
      float gw = pc_ld(dyr, c) * pc_ld(w, c);
      float d = rstd * (gw - m_g - xh * m_gx);
      if (accumulate) d += pc_ld(dxr, c);
      pc_st(dxr, c, d);
    }
  }
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    part_w[blockIdx.x * C + c] = pw[c];
    if (want_b) part_b[blockIdx.x * C + c] = pb[c];
  }
}

__global__ void k_sum_parts(const float *__restrict__ part, int G, int64_t C, float *__restrict__ out) {
  for (int64_t c = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; c < C; c += (int64_t)gridDim.x * blockDim.x) {
    float s = 0.0f;
    for (int g = 0; g < G; g++) s += part[(int64_t)g * C + c];
    out[c] += s;
  }
}

static pose_status norm_args(const char *what, pose_dtype dt, pose_dtype wdt, int64_t N, int64_t C) {
  PC_DTYPE(dt, what);
  PC_DTYPE(wdt, what);
  PC_REQUIRE(N >= 0 && C > 0, "%s: bad sizes N=%lld C=%lld", what, (long long)N, (long long)C);
  PC_REQUIRE(N < ((int64_t)1 << 31), "%s: %lld rows exceed the grid", what, (long long)N);
  return POSE_OK;
}

extern "C" pose_status pose_cuda_norm_fwd(int rms, const void *x, pose_dtype dt, const void *w, const void *b,
                                          pose_dtype wdt, float eps, int64_t N, int64_t C, void *y, float *mean,
                                          float *rstd, pose_cuda_stream s) {
  POSE_TRY(norm_args("norm_fwd", dt, wdt, N, C));
  if (N == 0) return POSE_OK;
  PC_REQUIRE(x && w && y && rstd && (rms || mean), "norm_fwd: NULL buffer");
  if (rms) b = NULL;
  int th = C >= 2048 ? NORM_THREADS : C >= 512 ? 128 : 64;
#define NF(T, W)                                                                                                  \
  k_norm_fwd<T, W><<<(unsigned)N, th, 0, s>>>(rms, (const T *)x, (const W *)w, (const W *)b, eps, C, (T *)y,      \
                                              rms ? NULL : mean, rstd)
  if (dt == POSE_F32 && wdt == POSE_F32) NF(float, float);
  else if (dt == POSE_F32) NF(float, bf16);
  else if (wdt == POSE_F32) NF(bf16, float);
  else NF(bf16, bf16);
#undef NF
  PC_LAUNCHED("norm_fwd");
  return POSE_OK;
}

extern "C" pose_status pose_cuda_norm_bwd(int rms, const void *x, pose_dtype dt, const void *w, pose_dtype wdt,
                                          const float *mean, const float *rstd, const void *dy, int64_t N, int64_t C,
                                          void *dx, int accumulate_dx, float *dw, float *db, pose_cuda_stream s) {
  POSE_TRY(norm_args("norm_bwd", dt, wdt, N, C));
  PC_REQUIRE(C <= NORM_MAX_C, "norm_bwd: C=%lld exceeds %d", (long long)C, NORM_MAX_C);
  if (N == 0) return POSE_OK;
  PC_REQUIRE(x && w && rstd && dy && dx && (rms || mean), "norm_bwd: NULL buffer");
  if (rms) db = NULL;
  int sms = pose_cuda_sm_count();
  int G = (int)(N < 2 * (int64_t)sms ? N : 2 * (int64_t)sms);
  if (G < 1) G = 1;
  int nparts = (dw ? 1 : 0) + (db ? 1 : 0);
  size_t smem = (size_t)C * sizeof(float) * 2;
  float *part = NULL;
  POSE_TRY(pc_scratch_alloc((void **)&part, (size_t)G * C * sizeof(float) * 2, s));
  float *part_w = part, *part_b = db ? part + (size_t)G * C : NULL;
#define NB(T, W)                                                                                                  \
  do {                                                                                                            \
    cudaFuncSetAttribute(k_norm_bwd<T, W>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);               \
    k_norm_bwd<T, W><<<G, NORM_THREADS, smem, s>>>(rms, (const T *)x, (const W *)w, mean, rstd, (const T *)dy, N, \
                                                   C, (T *)dx, accumulate_dx, part_w, part_b);                    \
  } while (0)
  if (dt == POSE_F32 && wdt == POSE_F32) NB(float, float);
  else if (dt == POSE_F32) NB(float, bf16);
  else if (wdt == POSE_F32) NB(bf16, float);
  else NB(bf16, bf16);
#undef NB
  cudaError_t e = cudaGetLastError();
  if (e == cudaSuccess && nparts) {
    unsigned gr = (unsigned)((C + 255) / 256);
    if (dw) k_sum_parts<<<gr, 256, 0, s>>>(part_w, G, C, dw);
    if (db) k_sum_parts<<<gr, 256, 0, s>>>(part_b, G, C, db);
    e = cudaGetLastError();
  }
  pc_scratch_free(part, s);
  if (e != cudaSuccess) return pose_cuda_fail(e, "norm_bwd launch");
  return POSE_OK;
}
