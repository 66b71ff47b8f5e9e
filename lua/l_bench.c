/* pose.sgemm_gflops(m, n, k, reps): the OpenBLAS sgemm throughput of this machine at one shape, so that benchmarks
 * can report what fraction of the GEMM ceiling the model reaches, measured in the same run. */
#include <cblas.h>
#include <stdlib.h>
#include <time.h>

#include "lpose.h"
#include "rng.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int l_sgemm_gflops(lua_State *L) {
  lua_Integer m = luaL_checkinteger(L, 1), n = luaL_checkinteger(L, 2), k = luaL_checkinteger(L, 3);
  lua_Integer reps = luaL_optinteger(L, 4, 10);
  if (m < 1 || n < 1 || k < 1 || reps < 1 || m * k > (1 << 28) || k * n > (1 << 28) || m * n > (1 << 28))
    pose_lua_errorf(L, "pose.sgemm_gflops: sizes must be positive and each matrix under 2^28 elements");
  float *a = malloc(sizeof(float) * (size_t)(m * k)), *b = malloc(sizeof(float) * (size_t)(k * n)),
        *c = malloc(sizeof(float) * (size_t)(m * n));
  if (!a || !b || !c) { free(a); free(b); free(c); pose_lua_errorf(L, "pose.sgemm_gflops: out of memory"); }
  pose_rng r;
  pose_rng_init(&r, 1, 0);
  for (lua_Integer i = 0; i < m * k; i++) a[i] = pose_rng_uniform(&r) - 0.5f;
  for (lua_Integer i = 0; i < k * n; i++) b[i] = pose_rng_uniform(&r) - 0.5f;
  /* warm-up, then the median of reps timings */
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)n, (int)k, 1.0f, a, (int)k, b, (int)n, 0.0f, c, (int)n);
  double *t = malloc(sizeof(double) * (size_t)reps);
  for (lua_Integer i = 0; i < reps; i++) {
    double t0 = now_s();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)n, (int)k, 1.0f, a, (int)k, b, (int)n, 0.0f, c, (int)n);
    t[i] = now_s() - t0;
  }
  for (lua_Integer i = 1; i < reps; i++) /* insertion sort: reps is small */
    for (lua_Integer j = i; j > 0 && t[j - 1] > t[j]; j--) { double x = t[j]; t[j] = t[j - 1]; t[j - 1] = x; }
  double med = t[reps / 2];
  free(a); free(b); free(c); free(t);
  lua_pushnumber(L, 2.0 * (double)m * (double)n * (double)k / med / 1e9);
  return 1;
}

void pose_lua_open_bench(lua_State *L) {
  lua_pushcfunction(L, l_sgemm_gflops);
  lua_setfield(L, -2, "sgemm_gflops");
}
