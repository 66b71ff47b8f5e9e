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

// ---- vectorised versions for C % 8 == 0 and C <= 8 * VPT * TH: each thread owns VPT chunks of 8 columns, the
// row stays in registers between the statistics and the output, and the backward keeps its dw/db partials in
// registers across all rows of its block (no shared-memory partials) ----
template <typename T, typename W, int TH, int VPT>
__global__ void __launch_bounds__(TH) k_norm_fwd_vec(int rms, const T *__restrict__ x, const W *__restrict__ w,
                                                     const W *__restrict__ b, float eps, int64_t C,
                                                     T *__restrict__ y, float *__restrict__ mean_out,
                                                     float *__restrict__ rstd_out) {
  __shared__ float sh[32];
  const int64_t row = blockIdx.x;
  const T *xr = x + row * C;
  const int nc = (int)(C / 8);
  float v[VPT][8];
  float s = 0.0f;
#pragma unroll
  for (int k = 0; k < VPT; k++) {
    int c8 = threadIdx.x + k * TH;
    if (c8 < nc) {
      pc_ld8(xr + c8 * 8, v[k]);
#pragma unroll
      for (int e = 0; e < 8; e++) s += v[k][e];
    }
  }
  float mean = rms ? 0.0f : pc_block_sum(s, sh) / (float)C;
  float ss = 0.0f;
#pragma unroll
  for (int k = 0; k < VPT; k++)
    if (threadIdx.x + k * TH < nc)
#pragma unroll
      for (int e = 0; e < 8; e++) {
        float d = v[k][e] - mean;
        ss += d * d;
      }
  float rstd = rsqrtf(pc_block_sum(ss, sh) / (float)C + eps);
#pragma unroll
  for (int k = 0; k < VPT; k++) {
    int c8 = threadIdx.x + k * TH;
    if (c8 < nc) {
      float wv[8], bv[8], o[8];
      pc_ld8(w + c8 * 8, wv);
      if (b) pc_ld8(b + c8 * 8, bv);
#pragma unroll
      for (int e = 0; e < 8; e++) o[e] = (v[k][e] - mean) * rstd * wv[e] + (b ? bv[e] : 0.0f);
      pc_st8(y + row * C + c8 * 8, o);
    }
  }
  if (threadIdx.x == 0) {
    rstd_out[row] = rstd;
    if (mean_out) mean_out[row] = mean;
  }
}

template <typename T, typename W, int TH, int VPT>
__global__ void __launch_bounds__(TH)
    k_norm_bwd_vec(int rms, const T *__restrict__ x, const W *__restrict__ w, const float *__restrict__ mean_in,
                   const float *__restrict__ rstd_in, const T *__restrict__ dy, int64_t N, int64_t C,
                   T *__restrict__ dx, int accumulate, float *__restrict__ part_w, float *__restrict__ part_b) {
  __shared__ float2 sh[32];
  const int nc = (int)(C / 8);
  float pw[VPT][8], pb[VPT][8], xh[VPT][8], g[VPT][8];
#pragma unroll
  for (int k = 0; k < VPT; k++)
#pragma unroll
    for (int e = 0; e < 8; e++) pw[k][e] = pb[k][e] = 0.0f;
  for (int64_t row = blockIdx.x; row < N; row += gridDim.x) {
    const float mean = rms ? 0.0f : mean_in[row], rstd = rstd_in[row];
    float s_gx = 0.0f, s_g = 0.0f;
#pragma unroll
    for (int k = 0; k < VPT; k++) {
      int c8 = threadIdx.x + k * TH;
      if (c8 < nc) {
        float xv[8], dv[8], wv[8];
        pc_ld8(x + row * C + c8 * 8, xv);
        pc_ld8(dy + row * C + c8 * 8, dv);
        pc_ld8(w + c8 * 8, wv);
#pragma unroll
        for (int e = 0; e < 8; e++) {
          xh[k][e] = (xv[e] - mean) * rstd;
          g[k][e] = dv[e] * wv[e];
          s_gx += g[k][e] * xh[k][e];
          s_g += g[k][e];
          pw[k][e] += dv[e] * xh[k][e];
          pb[k][e] += dv[e];
        }
      }
    }
    float2 m = pc_block_sum2(s_gx, s_g, sh);
    const float m_gx = m.x / (float)C, m_g = rms ? 0.0f : m.y / (float)C;
#pragma unroll
    for (int k = 0; k < VPT; k++) {
      int c8 = threadIdx.x + k * TH;
      if (c8 < nc) {
        float o[8], old[8];
        if (accumulate) pc_ld8(dx + row * C + c8 * 8, old);
#pragma unroll
        for (int e = 0; e < 8; e++) o[e] = rstd * (g[k][e] - m_g - xh[k][e] * m_gx) + (accumulate ? old[e] : 0.0f);
        pc_st8(dx + row * C + c8 * 8, o);
      }
    }
  }
#pragma unroll
  for (int k = 0; k < VPT; k++) {
    int c8 = threadIdx.x + k * TH;
    if (c8 < nc) {
      pc_st8(part_w + blockIdx.x * C + c8 * 8, pw[k]);
      if (part_b) pc_st8(part_b + blockIdx.x * C + c8 * 8, pb[k]);
    }
  }
}

// Picks (threads, chunks per thread) for the vector kernels; 0 when the row does not fit or is not 8-aligned.
static int norm_vec_cfg(int64_t C, int *th, int *vpt) {
  if (C % 8 || C > 8192) return 0;
  int64_t nc = C / 8;
  *th = nc > 512 ? 256 : 128;
  int64_t need = (nc + *th - 1) / *th;
  *vpt = need <= 1 ? 1 : need <= 2 ? 2 : 4;
  return 1;
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
  int vth, vpt;
  if (norm_vec_cfg(C, &vth, &vpt) && pc_al16(x) && pc_al16(y) && pc_al16(w) && (!b || pc_al16(b))) {
#define NFV(T, W, TH, VP)                                                                                         \
  k_norm_fwd_vec<T, W, TH, VP><<<(unsigned)N, TH, 0, s>>>(rms, (const T *)x, (const W *)w, (const W *)b, eps, C,   \
                                                          (T *)y, rms ? NULL : mean, rstd)
#define NFC(T, W)                                                     \
  do {                                                                \
    if (vth == 128 && vpt == 1) NFV(T, W, 128, 1);                    \
    else if (vth == 128 && vpt == 2) NFV(T, W, 128, 2);               \
    else if (vth == 128) NFV(T, W, 128, 4);                           \
    else if (vpt == 1) NFV(T, W, 256, 1);                             \
    else if (vpt == 2) NFV(T, W, 256, 2);                             \
    else NFV(T, W, 256, 4);                                           \
  } while (0)
    if (dt == POSE_F32 && wdt == POSE_F32) NFC(float, float);
    else if (dt == POSE_F32) NFC(float, bf16);
    else if (wdt == POSE_F32) NFC(bf16, float);
    else NFC(bf16, bf16);
#undef NFC
#undef NFV
    PC_LAUNCHED("norm_fwd");
    return POSE_OK;
  }
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
  int vth, vpt;
  int vec = norm_vec_cfg(C, &vth, &vpt) && pc_al16(x) && pc_al16(dy) && pc_al16(dx) && pc_al16(w);
  int64_t gmax = (int64_t)(sms > 0 ? sms : 132) * (vec ? 4 : 2);
  int G = (int)(N < gmax ? N : gmax);
  if (G < 1) G = 1;
  int nparts = (dw ? 1 : 0) + (db ? 1 : 0);
  size_t smem = (size_t)C * sizeof(float) * 2;
  float *part = NULL;
  POSE_TRY(pc_scratch_alloc((void **)&part, (size_t)G * C * sizeof(float) * 2, s));
  float *part_w = part, *part_b = db ? part + (size_t)G * C : NULL;
#define NBV(T, W, TH, VP)                                                                                         \
  k_norm_bwd_vec<T, W, TH, VP><<<G, TH, 0, s>>>(rms, (const T *)x, (const W *)w, mean, rstd, (const T *)dy, N, C,   \
                                                (T *)dx, accumulate_dx, part_w, part_b)
#define NBC(T, W)                                                     \
  do {                                                                \
    if (vth == 128 && vpt == 1) NBV(T, W, 128, 1);                    \
    else if (vth == 128 && vpt == 2) NBV(T, W, 128, 2);               \
    else if (vth == 128) NBV(T, W, 128, 4);                           \
    else if (vpt == 1) NBV(T, W, 256, 1);                             \
    else if (vpt == 2) NBV(T, W, 256, 2);                             \
    else NBV(T, W, 256, 4);                                           \
  } while (0)
#define NB(T, W)                                                                                                  \
  do {                                                                                                            \
    if (vec) { NBC(T, W); break; }                                                                                \
    cudaFuncSetAttribute(k_norm_bwd<T, W>, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);               \
    k_norm_bwd<T, W><<<G, NORM_THREADS, smem, s>>>(rms, (const T *)x, (const W *)w, mean, rstd, (const T *)dy, N, \
                                                   C, (T *)dx, accumulate_dx, part_w, part_b);                    \
  } while (0)
  if (dt == POSE_F32 && wdt == POSE_F32) NB(float, float);
  else if (dt == POSE_F32) NB(float, bf16);
  else if (wdt == POSE_F32) NB(bf16, float);
  else NB(bf16, bf16);
#undef NB
#undef NBC
#undef NBV
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
