/* Harness for the GPU kernel tests: skip (77) without a GPU, device buffers poisoned with NaN before every kernel
 * so that unwritten outputs fail, random non-zero inputs from the project's Philox RNG, and relative errors
 * ||out - ref|| / ||ref|| against CPU references computed in double. Every comparison prints its measured error, so
 * the log of a GPU run records how close each kernel came. */
#ifndef POSE_GPUTEST_H
#define POSE_GPUTEST_H

#include <cuda_runtime_api.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "device.h"
#include "dtype.h"
#include "pose_cuda.h"
#include "rng.h"
#include "testutil.h"

static inline void gpu_require(const char *name) {
  const char *why = NULL;
  if (!pose_cuda_backend(&why)) {
    printf("%s: SKIP (no usable GPU: %s)\n", name, why ? why : "?");
    exit(77);
  }
  cudaSetDevice(0);
}

#define CUDA_OK(expr)                                                                                       \
  do {                                                                                                      \
    cudaError_t e_ = (expr);                                                                                \
    if (e_ != cudaSuccess) {                                                                                \
      fprintf(stderr, "%s:%d: %s -> %s\n", __FILE__, __LINE__, #expr, cudaGetErrorString(e_));            \
      exit(1);                                                                                              \
    }                                                                                                       \
  } while (0)

/* Device buffer filled with 0xff bytes: NaN in f32 and bf16, -1 in integers. Freed at exit by gfree_all. */
static void *g_allocs[4096];
static int g_nallocs;
static inline void *galloc(size_t bytes) {
  void *p = NULL;
  CUDA_OK(cudaMalloc(&p, bytes ? bytes : 16));
  CUDA_OK(cudaMemset(p, 0xff, bytes ? bytes : 16));
  if (g_nallocs < 4096) g_allocs[g_nallocs++] = p;
  return p;
}
static inline void gfree_all(void) {
  for (int i = 0; i < g_nallocs; i++) cudaFree(g_allocs[i]);
  g_nallocs = 0;
}
static inline void gpoison(void *p, size_t bytes) { CUDA_OK(cudaMemset(p, 0xff, bytes)); }
static inline void *gup(const void *h, size_t bytes) {
  void *d = galloc(bytes);
  CUDA_OK(cudaMemcpy(d, h, bytes, cudaMemcpyHostToDevice));
  return d;
}
static inline void gput(void *d, const void *h, size_t bytes) { CUDA_OK(cudaMemcpy(d, h, bytes, cudaMemcpyHostToDevice)); }
static inline void gget(void *h, const void *d, size_t bytes) {
  CUDA_OK(cudaDeviceSynchronize());
  CUDA_OK(cudaMemcpy(h, d, bytes, cudaMemcpyDeviceToHost));
}
static inline void gsync(void) {
  CUDA_OK(cudaDeviceSynchronize());
  CUDA_OK(cudaGetLastError());
}

/* ---- host data ---- */
static uint64_t g_seed = 20240611;
static inline float *hrandn(size_t n, float scale) {
  float *x = malloc(n * sizeof *x);
  pose_rng r;
  pose_rng_init(&r, g_seed, g_seed * 7919u + n);
  g_seed++;
  for (size_t i = 0; i < n; i++) {
    float v = pose_rng_normal(&r) * scale;
    if (v == 0.0f) v = scale * 1e-3f; /* non-zero everywhere */
    x[i] = v;
  }
  return x;
}
static inline float *hrandu(size_t n, float lo, float hi) {
  float *x = malloc(n * sizeof *x);
  pose_rng r;
  pose_rng_init(&r, g_seed, g_seed * 104729u + n);
  g_seed++;
  for (size_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * pose_rng_uniform(&r);
  return x;
}
/* Rounds x to bf16 in place (so that the CPU reference sees exactly what the GPU sees) and returns the bf16 copy. */
static inline uint16_t *hround_bf16(float *x, size_t n) {
  uint16_t *b = malloc(n * sizeof *b);
  for (size_t i = 0; i < n; i++) {
    b[i] = pose_f32_to_bf16(x[i]);
    x[i] = pose_bf16_to_f32(b[i]);
  }
  return b;
}
/* Device copy of x in dtype dt (x rounded in place when dt is bf16). */
static inline void *gup_as(float *x, size_t n, pose_dtype dt) {
  if (dt == POSE_F32) return gup(x, n * 4);
  uint16_t *b = hround_bf16(x, n);
  void *d = gup(b, n * 2);
  free(b);
  return d;
}
/* Host float copy of a device buffer of dtype dt. */
static inline float *gget_f32(const void *d, size_t n, pose_dtype dt) {
  float *x = malloc((n ? n : 1) * sizeof *x);
  if (dt == POSE_F32) {
    gget(x, d, n * 4);
  } else {
    uint16_t *b = malloc((n ? n : 1) * 2);
    gget(b, d, n * 2);
    for (size_t i = 0; i < n; i++) x[i] = pose_bf16_to_f32(b[i]);
    free(b);
  }
  return x;
}

/* ||out - ref|| / ||ref|| over n elements (INFINITY when out holds a NaN/Inf, e.g. an unwritten poisoned element). */
static inline double rel_err(const float *out, const double *ref, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; i++) {
    if (!isfinite(out[i])) return INFINITY;
    double d = (double)out[i] - ref[i];
    num += d * d;
    den += ref[i] * ref[i];
  }
  return den > 0 ? sqrt(num / den) : sqrt(num);
}

static inline double tol_for(pose_dtype dt, double f32_tol, double bf16_tol) { return dt == POSE_F32 ? f32_tol : bf16_tol; }

#define CHECK_REL(out, ref, n, tol, ...)                                                                     \
  do {                                                                                                       \
    double e__ = rel_err((out), (ref), (n));                                                                 \
    char lab__[256];                                                                                         \
    snprintf(lab__, sizeof lab__, __VA_ARGS__);                                                              \
    printf("  %-64s rel err %.3e (tol %.0e)%s\n", lab__, e__, (double)(tol), e__ <= (tol) ? "" : "  FAIL");   \
    if (e__ <= (tol)) t_pass++;                                                                              \
    else { t_fail++; fprintf(stderr, "%s:%d: %s: rel err %.3e > %.1e\n", __FILE__, __LINE__, lab__, e__, (double)(tol)); } \
  } while (0)

static inline const char *dtn(pose_dtype dt) { return pose_dtype_name(dt); }

#endif
