/* Micro-benchmarks of the GPU kernels (not a test): measures the two ceilings first (device-to-device copy
 * bandwidth, a large bf16 cuBLASLt GEMM), then times attention forward/backward at long lengths, the GEMMs of a
 * LLaMA-7B layer, and the memory-bound kernels. Each number is the median of many launches timed with CUDA events
 * after warm-up, on random (Philox) data. Prints a table and, given a path, writes it as CSV.
 *   bench_kernels [out.csv] [--quick] */
#include <cuda_runtime_api.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "device.h"
#include "pose_cuda.h"

#define CU(x)                                                                                           \
  do {                                                                                                  \
    cudaError_t e_ = (x);                                                                               \
    if (e_ != cudaSuccess) {                                                                            \
      fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_));              \
      exit(1);                                                                                          \
    }                                                                                                   \
  } while (0)
#define PS(x)                                                                                           \
  do {                                                                                                  \
    pose_status s_ = (x);                                                                               \
    if (s_ != POSE_OK) {                                                                                \
      fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #x, pose_error_message());                \
      exit(1);                                                                                          \
    }                                                                                                   \
  } while (0)

static FILE *g_csv;
static int g_quick;
static double g_peak_tflops = 0, g_peak_gbps = 0;
static cudaEvent_t g_ev[2];
static pose_cuda_blas *g_blas;

static int cmp_f(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return x < y ? -1 : x > y;
}

/* Times `body` (one call = one launch sequence): `warm` untimed runs, then `reps` runs each between two events. */
typedef void (*bench_fn)(void *);
static double bench(const char *kernel, const char *shape, double flops, double bytes, bench_fn body, void *ctx,
                    int reps) {
  const int warm = 3;
  if (g_quick && reps > 5) reps = 5;
  for (int i = 0; i < warm; i++) body(ctx);
  CU(cudaDeviceSynchronize());
  float *t = malloc((size_t)reps * sizeof *t);
  for (int i = 0; i < reps; i++) {
    CU(cudaEventRecord(g_ev[0], 0));
    body(ctx);
    CU(cudaEventRecord(g_ev[1], 0));
    CU(cudaEventSynchronize(g_ev[1]));
    CU(cudaEventElapsedTime(&t[i], g_ev[0], g_ev[1]));
  }
  CU(cudaGetLastError());
  qsort(t, (size_t)reps, sizeof *t, cmp_f);
  double med = t[reps / 2], mn = t[0];
  double tf = flops > 0 ? flops / (med * 1e-3) / 1e12 : 0, gb = bytes > 0 ? bytes / (med * 1e-3) / 1e9 : 0;
  double pct = flops > 0 && g_peak_tflops > 0 ? 100 * tf / g_peak_tflops
               : bytes > 0 && g_peak_gbps > 0 ? 100 * gb / g_peak_gbps : 0;
  printf("%-26s %-34s %9.3f %9.3f %8.1f %8.0f %6.1f%%\n", kernel, shape, med, mn, tf, gb, pct);
  fflush(stdout);
  if (g_csv)
    fprintf(g_csv, "%s,%s,%.5f,%.5f,%.2f,%.1f,%.2f,%d\n", kernel, shape, med, mn, tf, gb, pct, reps);
  free(t);
  return flops > 0 ? tf : gb;
}

static void *dalloc_rand(size_t n, pose_dtype dt, double std) {
  void *p;
  CU(cudaMalloc(&p, n * (dt == POSE_F32 ? 4 : 2)));
  static uint64_t stream = 1;
  PS(pose_cuda_rand(p, dt, (int64_t)n, 2024, stream++, 0.0, std, 1, NULL));
  return p;
}

/* ---- ceilings ---- */
typedef struct { void *a, *b; size_t bytes; } copy_ctx;
static void run_copy(void *c) {
  copy_ctx *x = c;
  CU(cudaMemcpyAsync(x->b, x->a, x->bytes, cudaMemcpyDeviceToDevice, 0));
}

typedef struct { pose_cuda_gemm_args g; } gemm_ctx;
static void run_gemm(void *c) { PS(pose_cuda_gemm(g_blas, &((gemm_ctx *)c)->g, NULL)); }

static void gemm_case(const char *name, int ta, int tb, int64_t M, int64_t N, int64_t K, pose_dtype cdt, float beta,
                      int reps) {
  gemm_ctx c;
  pose_cuda_gemm_args_init(&c.g);
  c.g.trans_a = ta;
  c.g.trans_b = tb;
  c.g.M = M; c.g.N = N; c.g.K = K;
  c.g.A = dalloc_rand((size_t)(M * K), POSE_BF16, 1.0);
  c.g.B = dalloc_rand((size_t)(K * N), POSE_BF16, 1.0);
  c.g.C = dalloc_rand((size_t)(M * N), cdt, 1.0);
  c.g.c_dt = cdt;
  c.g.beta = beta;
  char shape[96];
  snprintf(shape, sizeof shape, "%s %lldx%lldx%lld %s", ta ? (tb ? "TT" : "TN") : (tb ? "NT" : "NN"), (long long)M,
           (long long)N, (long long)K, cdt == POSE_F32 ? "->f32" : "->bf16");
  bench(name, shape, 2.0 * M * N * K, 0, run_gemm, &c, reps);
  cudaFree((void *)c.g.A);
  cudaFree((void *)c.g.B);
  cudaFree(c.g.C);
}

/* ---- attention ---- */
typedef struct {
  pose_cuda_attn_dims d;
  uint16_t *q, *k, *v, *o, *dO, *dq, *dk, *dv;
  float *lse;
} attn_ctx;
static void run_attn_fwd(void *c) {
  attn_ctx *a = c;
  PS(pose_cuda_attn_fwd(&a->d, a->q, a->k, a->v, a->o, a->lse, NULL));
}
static void run_attn_bwd(void *c) {
  attn_ctx *a = c;
  PS(pose_cuda_attn_bwd(&a->d, a->q, a->k, a->v, a->o, a->lse, a->dO, a->dq, a->dk, a->dv, NULL));
}

static void attn_case(int64_t B, int64_t T, int64_t Hq, int64_t Hkv, int64_t D, int64_t window, int reps, int all_cfgs) {
  attn_ctx a;
  pose_cuda_attn_dims_init(&a.d, B, T, T, Hq, Hkv, D, window);
  size_t nq = (size_t)(B * T * Hq * D), nk = (size_t)(B * T * Hkv * D);
  a.q = dalloc_rand(nq, POSE_BF16, 1.0);
  a.k = dalloc_rand(nk, POSE_BF16, 1.0);
  a.v = dalloc_rand(nk, POSE_BF16, 1.0);
  a.dO = dalloc_rand(nq, POSE_BF16, 1.0);
  a.o = dalloc_rand(nq, POSE_BF16, 1.0);
  a.dq = dalloc_rand(nq, POSE_BF16, 1.0);
  a.dk = dalloc_rand(nk, POSE_BF16, 1.0);
  a.dv = dalloc_rand(nk, POSE_BF16, 1.0);
  CU(cudaMalloc((void **)&a.lse, (size_t)(B * Hq * T) * 4));
  /* useful FLOPs: the visible (i, j) pairs times 4 D (QK^T and PV); the backward counts 2.5x (5 products), the
   * convention of FlashAttention's benchmarks, although this kernel pair executes 7 products */
  double pairs = 0;
  for (int64_t i = 0; i < T; i++) pairs += (double)(window > 0 && i + 1 > window ? window : i + 1);
  double f = 4.0 * B * Hq * pairs * D;
  char shape[96];
  snprintf(shape, sizeof shape, "B%lld T%lld H%lld/%lld D%lld%s", (long long)B, (long long)T, (long long)Hq,
           (long long)Hkv, (long long)D, window ? " win" : "");
  if (window) snprintf(shape + strlen(shape), sizeof shape - strlen(shape), "%lld", (long long)window);
  if (all_cfgs) { /* every forward tile shape, then the default */
    const char *cfgs[] = {"1x64", "2x32", "2x64", "wg3"};
    for (int c = 0; c < 4; c++) {
      char name[64];
      snprintf(name, sizeof name, "attn_fwd[%s]", cfgs[c]);
      setenv("POSE_ATTN_FWD", cfgs[c], 1);
      bench(name, shape, f, 0, run_attn_fwd, &a, reps);
    }
    unsetenv("POSE_ATTN_FWD");
  }
  bench("attn_fwd", shape, f, 0, run_attn_fwd, &a, reps);
  if (all_cfgs) {
    setenv("POSE_ATTN_BWD", "mma", 1); /* AREG is an option of the mma.sync backward */
    setenv("POSE_ATTN_BWD_AREG", "0", 1);
    bench("attn_bwd[smemA]", shape, 2.5 * f, 0, run_attn_bwd, &a, reps);
    setenv("POSE_ATTN_BWD_AREG", "1", 1);
    bench("attn_bwd[regA]", shape, 2.5 * f, 0, run_attn_bwd, &a, reps);
    unsetenv("POSE_ATTN_BWD_AREG");
    unsetenv("POSE_ATTN_BWD");
  }
  /* the mma.sync backward (the AREG rows above when all_cfgs); the default is the sm_90a one on a H100/H200 */
  if (!all_cfgs) {
    setenv("POSE_ATTN_BWD", "mma", 1);
    bench("attn_bwd[mma]", shape, 2.5 * f, 0, run_attn_bwd, &a, reps);
  }
  if (D == 64) { /* the sm_90a backward with 64-query dK/dV tiles (the default at D = 64 has 128) */
    setenv("POSE_ATTN_BWD", "wgq64", 1);
    bench("attn_bwd[wgq64]", shape, 2.5 * f, 0, run_attn_bwd, &a, reps);
  }
  unsetenv("POSE_ATTN_BWD");
  bench("attn_bwd", shape, 2.5 * f, 0, run_attn_bwd, &a, reps);
  cudaFree(a.q); cudaFree(a.k); cudaFree(a.v); cudaFree(a.dO); cudaFree(a.o);
  cudaFree(a.dq); cudaFree(a.dk); cudaFree(a.dv); cudaFree(a.lse);
}

/* ---- memory-bound kernels ---- */
typedef struct {
  int64_t N, C;
  void *x, *y, *w, *dy, *dx, *g;
  float *mean, *rstd, *dw, *m, *v;
  int64_t *pos, *tgt;
  float *inv, *nll;
  uint16_t *wb;
  pose_cuda_adamw_coefs k;
} mem_ctx;
static void run_rms_fwd(void *c) {
  mem_ctx *m = c;
  PS(pose_cuda_norm_fwd(1, m->x, POSE_BF16, m->w, NULL, POSE_F32, 1e-5f, m->N, m->C, m->y, NULL, m->rstd, NULL));
}
static void run_rms_bwd(void *c) {
  mem_ctx *m = c;
  PS(pose_cuda_norm_bwd(1, m->x, POSE_BF16, m->w, POSE_F32, NULL, m->rstd, m->dy, m->N, m->C, m->dx, 0, m->dw, NULL,
                        NULL));
}
static void run_swiglu(void *c) {
  mem_ctx *m = c;
  PS(pose_cuda_act_fwd(POSE_CUDA_SILU, m->x, (char *)m->x + m->C * 2, 2 * m->C, POSE_BF16, m->N, m->C, m->y, NULL));
}
static void run_swiglu_bwd(void *c) {
  mem_ctx *m = c;
  PS(pose_cuda_act_bwd(POSE_CUDA_SILU, m->x, (char *)m->x + m->C * 2, 2 * m->C, POSE_BF16, m->N, m->C, m->dy, m->dx,
                       (char *)m->dx + m->C * 2, 2 * m->C, NULL));
}
static void run_rope(void *c) {
  mem_ctx *m = c;
  PS(pose_cuda_rope_apply(m->x, POSE_BF16, m->N, 32 * 128, 32, 128, 128, m->pos, m->inv, 1.0f, 0, 0, NULL));
}
static void run_xent(void *c) {
  mem_ctx *m = c;
  PS(pose_cuda_xent_fwd_bwd(m->x, POSE_BF16, m->C, m->N, m->C, m->tgt, 1e-4f, m->nll, NULL, m->y, POSE_BF16, m->C,
                            NULL));
}
static void run_adamw(void *c) {
  mem_ctx *m = c;
  PS(pose_cuda_adamw((float *)m->x, (float *)m->g, m->m, m->v, m->wb, m->N, &m->k, NULL, NULL));
}
static void run_convert(void *c) {
  mem_ctx *m = c;
  PS(pose_cuda_convert(m->y, POSE_BF16, m->x, POSE_F32, m->N, NULL));
}

static void mem_benches(void) {
  mem_ctx m;
  memset(&m, 0, sizeof m);
  char shape[96];
  /* RMSNorm [16384, 4096] bf16 */
  m.N = 16384; m.C = 4096;
  size_t n = (size_t)(m.N * m.C);
  m.x = dalloc_rand(n, POSE_BF16, 1.0); m.y = dalloc_rand(n, POSE_BF16, 1.0); m.dy = dalloc_rand(n, POSE_BF16, 1.0);
  m.dx = dalloc_rand(n, POSE_BF16, 1.0); m.w = dalloc_rand((size_t)m.C, POSE_F32, 1.0);
  m.dw = dalloc_rand((size_t)m.C, POSE_F32, 1.0);
  CU(cudaMalloc((void **)&m.rstd, (size_t)m.N * 4));
  snprintf(shape, sizeof shape, "%lldx%lld bf16", (long long)m.N, (long long)m.C);
  bench("rmsnorm_fwd", shape, 0, 2.0 * n * 2, run_rms_fwd, &m, 20);
  bench("rmsnorm_bwd", shape, 0, 3.0 * n * 2, run_rms_bwd, &m, 20);
  /* RoPE on q [16384 tokens, 32 heads, 128] in place */
  int64_t *pos = malloc((size_t)m.N * 8);
  for (int64_t i = 0; i < m.N; i++) pos[i] = (i * 7919) % 65536;
  CU(cudaMalloc((void **)&m.pos, (size_t)m.N * 8));
  CU(cudaMemcpy(m.pos, pos, (size_t)m.N * 8, cudaMemcpyHostToDevice));
  float inv[64];
  for (int j = 0; j < 64; j++) inv[j] = (float)pow(10000.0, -j / 64.0);
  CU(cudaMalloc((void **)&m.inv, sizeof inv));
  CU(cudaMemcpy(m.inv, inv, sizeof inv, cudaMemcpyHostToDevice));
  bench("rope_apply", "16384x32x128 bf16 in place", 0, 2.0 * n * 2, run_rope, &m, 20);
  cudaFree(m.x); cudaFree(m.y); cudaFree(m.dy); cudaFree(m.dx);
  /* SwiGLU [16384, 11008] from a fused [16384, 22016] buffer */
  m.C = 11008;
  n = (size_t)(m.N * m.C);
  m.x = dalloc_rand(2 * n, POSE_BF16, 2.0); m.y = dalloc_rand(n, POSE_BF16, 1.0); m.dy = dalloc_rand(n, POSE_BF16, 1.0);
  m.dx = dalloc_rand(2 * n, POSE_BF16, 1.0);
  bench("swiglu_fwd", "16384x11008 bf16", 0, 3.0 * n * 2, run_swiglu, &m, 20);
  bench("swiglu_bwd", "16384x11008 bf16", 0, 5.0 * n * 2, run_swiglu_bwd, &m, 20);
  cudaFree(m.x); cudaFree(m.y); cudaFree(m.dy); cudaFree(m.dx);
  /* cross-entropy over a [4096, 32000] bf16 logits chunk, gradient in place */
  m.N = 4096; m.C = 32000;
  n = (size_t)(m.N * m.C);
  m.x = dalloc_rand(n, POSE_BF16, 3.0);
  m.y = m.x;
  int64_t *tgt = malloc((size_t)m.N * 8);
  for (int64_t i = 0; i < m.N; i++) tgt[i] = (i * 104729) % m.C;
  CU(cudaMalloc((void **)&m.tgt, (size_t)m.N * 8));
  CU(cudaMemcpy(m.tgt, tgt, (size_t)m.N * 8, cudaMemcpyHostToDevice));
  CU(cudaMalloc((void **)&m.nll, (size_t)m.N * 4));
  bench("xent_fwd_bwd", "4096x32000 bf16 in place", 0, 2.0 * n * 2, run_xent, &m, 20);
  cudaFree(m.x);
  /* AdamW over 2^28 fp32 parameters with the bf16 copy */
  m.N = (int64_t)1 << 28;
  n = (size_t)m.N;
  m.x = dalloc_rand(n, POSE_F32, 1.0); m.g = dalloc_rand(n, POSE_F32, 1e-3);
  m.m = dalloc_rand(n, POSE_F32, 1e-3); m.v = dalloc_rand(n, POSE_F32, 1e-3);
  PS(pose_cuda_rand(m.v, POSE_F32, m.N, 7, 7, 1e-6, 1e-4, 0, NULL)); /* second moments are positive */
  CU(cudaMalloc((void **)&m.wb, n * 2));
  pose_cuda_adamw_coefs_init(&m.k, 1e-4, 0.9, 0.999, 1e-8, 0.1, 10);
  bench("adamw_f32+bf16copy", "2^28 params", 0, (16.0 + 14.0) * n, run_adamw, &m, 10);
  m.y = m.wb;
  bench("convert_f32_bf16", "2^28", 0, 6.0 * n, run_convert, &m, 10);
  cudaFree(m.x); cudaFree(m.g); cudaFree(m.m); cudaFree(m.v); cudaFree(m.wb);
  cudaFree(m.w); cudaFree(m.dw); cudaFree(m.rstd); cudaFree(m.pos); cudaFree(m.inv); cudaFree(m.tgt); cudaFree(m.nll);
  free(pos);
  free(tgt);
}

int main(int argc, char **argv) {
  const char *csv = NULL;
  int profile = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--quick")) g_quick = 1;
    else if (!strcmp(argv[i], "--profile")) profile = 1;
    else csv = argv[i];
  }
  const char *why = NULL;
  if (!pose_cuda_backend(&why)) {
    printf("bench_kernels: no usable GPU (%s)\n", why ? why : "?");
    return 77;
  }
  CU(cudaSetDevice(0));
  struct cudaDeviceProp prop;
  CU(cudaGetDeviceProperties(&prop, 0));
  printf("device: %s, %d SMs, %.0f GiB\n", prop.name, prop.multiProcessorCount, prop.totalGlobalMem / 1073741824.0);
  if (csv) {
    g_csv = fopen(csv, "w");
    if (!g_csv) { perror(csv); return 1; }
    fprintf(g_csv, "kernel,shape,median_ms,min_ms,tflops,gbps,pct_of_ceiling,reps\n");
  }
  CU(cudaEventCreate(&g_ev[0]));
  CU(cudaEventCreate(&g_ev[1]));
  PS(pose_cuda_blas_create(0, 0, &g_blas));
  printf("%-26s %-34s %9s %9s %8s %8s %7s\n", "kernel", "shape", "med ms", "min ms", "TFLOP/s", "GB/s", "of ceil");

  if (profile) { /* one launch of each kernel worth profiling (ncu -k <name> -c 1), nothing else */
    g_quick = 1;
    attn_case(4, 4096, 32, 32, 128, 0, 1, 0);
    pose_cuda_blas_free(g_blas);
    return 0;
  }

  /* ceilings: copy bandwidth (bytes read + written) and the bf16 matmul rate on random data */
  copy_ctx cc;
  cc.bytes = (size_t)2 << 30;
  CU(cudaMalloc(&cc.a, cc.bytes));
  CU(cudaMalloc(&cc.b, cc.bytes));
  PS(pose_cuda_rand(cc.a, POSE_F32, (int64_t)(cc.bytes / 4), 1, 1, 0, 1, 1, NULL));
  double copy_gbps = bench("ceiling_copy_d2d", "2 GiB", 0, 2.0 * cc.bytes, run_copy, &cc, 20);
  cudaFree(cc.a);
  cudaFree(cc.b);
  double gemm_tflops;
  {
    gemm_ctx c;
    pose_cuda_gemm_args_init(&c.g);
    c.g.trans_b = 1;
    c.g.M = c.g.N = c.g.K = 8192;
    c.g.A = dalloc_rand((size_t)8192 * 8192, POSE_BF16, 1.0);
    c.g.B = dalloc_rand((size_t)8192 * 8192, POSE_BF16, 1.0);
    c.g.C = dalloc_rand((size_t)8192 * 8192, POSE_BF16, 1.0);
    gemm_tflops = bench("ceiling_gemm_bf16", "NT 8192x8192x8192 ->bf16", 2.0 * 8192.0 * 8192 * 8192, 0, run_gemm, &c, 30);
    cudaFree((void *)c.g.A); cudaFree((void *)c.g.B); cudaFree(c.g.C);
  }
  /* the percentages below are against these medians, measured here, not the datasheet */
  g_peak_tflops = gemm_tflops;
  g_peak_gbps = copy_gbps;
  printf("# ceilings used below: %.0f TFLOP/s bf16 GEMM, %.0f GB/s copy (read + write)\n", g_peak_tflops, g_peak_gbps);
  if (g_csv) fprintf(g_csv, "# ceilings,%.1f TFLOP/s,%.0f GB/s\n", g_peak_tflops, g_peak_gbps);

  /* LLaMA-7B layer GEMMs over 16384 tokens (d 4096, ffn 11008, vocab 32000) */
  const int64_t M = 16384;
  gemm_case("gemm_qkv_fwd", 0, 1, M, 12288, 4096, POSE_BF16, 0.0f, 20);
  gemm_case("gemm_o_fwd", 0, 1, M, 4096, 4096, POSE_BF16, 0.0f, 20);
  gemm_case("gemm_gateup_fwd", 0, 1, M, 22016, 4096, POSE_BF16, 0.0f, 20);
  gemm_case("gemm_down_fwd", 0, 1, M, 4096, 11008, POSE_BF16, 0.0f, 20);
  gemm_case("gemm_gateup_dx", 0, 0, M, 4096, 22016, POSE_BF16, 0.0f, 20);
  gemm_case("gemm_gateup_dw", 1, 0, 22016, 4096, M, POSE_F32, 1.0f, 20);
  gemm_case("gemm_lmhead_chunk", 0, 1, 4096, 32000, 4096, POSE_BF16, 0.0f, 20);

  /* attention at 16384 tokens per step, LLaMA-7B heads */
  const int64_t Ts[] = {2048, 4096, 8192, 16384};
  for (int i = 0; i < 4; i++) attn_case(16384 / Ts[i], Ts[i], 32, 32, 128, 0, i == 3 ? 8 : 12, i == 1 || i == 3);
  attn_case(2, 8192, 32, 8, 128, 0, 10, 0);    /* GQA 4:1 */
  attn_case(4, 4096, 32, 32, 64, 0, 10, 1);    /* head dim 64 */
  attn_case(1, 16384, 32, 8, 128, 4096, 8, 0); /* Mistral-like window */
  if (!g_quick) attn_case(1, 65536, 32, 32, 128, 0, 3, 0);

  mem_benches();
  pose_cuda_blas_free(g_blas);
  if (g_csv) fclose(g_csv);
  return 0;
}
