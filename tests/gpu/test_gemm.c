/* GPU: dtype conversions, cuBLASLt GEMMs (every transpose, bf16/fp32, odd sizes, padded leading dimensions,
 * unaligned views, beta accumulation, bias, strided batches, the heuristic cache) and column sums, against double
 * references on the CPU. */
#include "gputest.h"

static void test_convert(void) {
  const size_t n = 1000003;
  float *x = hrandn(n, 3.0f);
  x[5] = NAN;
  x[6] = INFINITY;
  x[7] = -INFINITY;
  x[8] = 3.0e38f; /* rounds up to Inf in bf16 */
  union { uint32_t u; float f; } t = {0x3f808000u};
  x[9] = t.f; /* exact tie: to even */
  float *d = gup(x, n * 4);
  for (int off = 0; off < 2; off++) { /* off = 1: unaligned, the scalar path */
    uint16_t *db = galloc(n * 2);
    CHECK_OK(pose_cuda_convert(db + off, POSE_BF16, d + off, POSE_F32, (int64_t)(n - off), NULL));
    uint16_t *hb = malloc(n * 2);
    gget(hb, db, n * 2);
    size_t bad = 0;
    for (size_t i = off; i < n; i++) {
      uint16_t want = pose_f32_to_bf16(x[i]);
      if (isnan(x[i])) bad += !isnan(pose_bf16_to_f32(hb[i]));
      else bad += hb[i] != want;
    }
    printf("  convert f32->bf16 (offset %d): %zu of %zu differ from the CPU's rounding\n", off, bad, n - off);
    CHECK(bad == 0);
    float *back = galloc(n * 4);
    CHECK_OK(pose_cuda_convert(back + off, POSE_F32, db + off, POSE_BF16, (int64_t)(n - off), NULL));
    float *hf = malloc(n * 4);
    gget(hf, back, n * 4);
    bad = 0;
    for (size_t i = off; i < n; i++) {
      float want = pose_bf16_to_f32(hb[i]);
      bad += isnan(want) ? !isnan(hf[i]) : memcmp(&want, &hf[i], 4) != 0;
    }
    CHECK(bad == 0);
    free(hb);
    free(hf);
  }
  CHECK_ERR(pose_cuda_convert(d, POSE_F16, d, POSE_F32, 4, NULL), POSE_EUNSUPPORTED, "f16");
  CHECK_ERR(pose_cuda_convert(d, POSE_F32, d, POSE_BF16, -1, NULL), POSE_EINVAL, "negative");
  CHECK_OK(pose_cuda_convert(NULL, POSE_F32, NULL, POSE_BF16, 0, NULL));
  free(x);
}

/* element (r, c) of a row-major matrix with leading dimension ld, read as op(X) */
static double at(const float *X, int64_t ld, int trans, int64_t r, int64_t c) {
  return trans ? X[c * ld + r] : X[r * ld + c];
}

typedef struct {
  int64_t M, N, K;
  int ta, tb;
  pose_dtype ab, c;
  float beta;
  int bias, pad, batch, unaligned;
} gemm_case;

static void run_gemm(pose_cuda_blas *h, gemm_case gc) {
  int64_t M = gc.M, N = gc.N, K = gc.K, batch = gc.batch > 1 ? gc.batch : 1;
  int64_t a_rows = gc.ta ? K : M, a_cols = gc.ta ? M : K, b_rows = gc.tb ? N : K, b_cols = gc.tb ? K : N;
  int64_t lda = a_cols + gc.pad, ldb = b_cols + gc.pad, ldc = N + gc.pad;
  int64_t sa = a_rows * lda + gc.pad, sb = b_rows * ldb, sc = M * ldc + 3 * gc.pad;
  int64_t off = gc.unaligned ? 1 : 0; /* element offset: 2 or 4 bytes off the allocation's alignment */
  size_t na = (size_t)(sa * batch + off), nb = (size_t)(sb * batch + off), nc = (size_t)(sc * batch + off);
  float *A = hrandn(na, 1.0f), *B = hrandn(nb, 1.0f), *C0 = hrandn(nc, 1.0f), *bias = hrandn((size_t)N, 1.0f);
  void *dA = gup_as(A, na, gc.ab), *dB = gup_as(B, nb, gc.ab), *dC = gup_as(C0, nc, gc.c);
  void *dbias = gc.bias ? gup_as(bias, (size_t)N, gc.c) : NULL;
  if (gc.beta == 0.0f) gpoison(dC, nc * pose_dtype_size(gc.c));
  size_t es_ab = pose_dtype_size(gc.ab), es_c = pose_dtype_size(gc.c);
  pose_cuda_gemm_args g;
  pose_cuda_gemm_args_init(&g);
  g.trans_a = gc.ta;
  g.trans_b = gc.tb;
  g.M = M; g.N = N; g.K = K;
  g.A = (char *)dA + off * es_ab; g.a_dt = gc.ab; g.lda = lda;
  g.B = (char *)dB + off * es_ab; g.b_dt = gc.ab; g.ldb = ldb;
  g.C = (char *)dC + off * es_c; g.c_dt = gc.c; g.ldc = ldc;
  g.alpha = 0.75f;
  g.beta = gc.beta;
  g.bias = dbias;
  g.batch = batch;
  g.stride_a = sa; g.stride_b = sb; g.stride_c = sc;
  pose_status st = pose_cuda_gemm(h, &g, NULL);
  char lab[200];
  snprintf(lab, sizeof lab, "gemm %c%c %lldx%lldx%lld %s->%s beta %g%s%s%s%s", gc.ta ? 'T' : 'N', gc.tb ? 'T' : 'N',
           (long long)M, (long long)N, (long long)K, dtn(gc.ab), dtn(gc.c), gc.beta, gc.bias ? " bias" : "",
           gc.pad ? " padded-ld" : "", batch > 1 ? " batched" : "", gc.unaligned ? " unaligned" : "");
  if (st != POSE_OK) {
    t_fail++;
    fprintf(stderr, "%s: %s\n", lab, pose_error_message());
    return;
  }
  float *out = gget_f32(dC, nc, gc.c);
  size_t nout = (size_t)(batch * M * N);
  float *o = malloc(nout * sizeof *o);
  double *ref = malloc(nout * sizeof *ref);
  size_t q = 0;
  for (int64_t bt = 0; bt < batch; bt++)
    for (int64_t m = 0; m < M; m++)
      for (int64_t n = 0; n < N; n++, q++) {
        double s = 0;
        const float *Ab = A + off + bt * sa, *Bb = B + off + bt * sb;
        for (int64_t k = 0; k < K; k++) s += at(Ab, lda, gc.ta, m, k) * at(Bb, ldb, gc.tb, k, n);
        size_t ci = (size_t)(off + bt * sc + m * ldc + n);
        ref[q] = 0.75 * s + (double)gc.beta * C0[ci] + (gc.bias ? bias[n] : 0.0);
        o[q] = out[ci];
      }
  /* bf16 outputs: one rounding of the result (2^-9 relative); fp32: accumulation order only */
  CHECK_REL(o, ref, nout, gc.c == POSE_BF16 ? 1e-2 : 1e-5, "%s", lab);
  /* padding between rows must be untouched (still the input values, or NaN poison for beta = 0) */
  if (gc.pad && gc.beta != 0.0f) {
    size_t bad = 0;
    for (int64_t m = 0; m < M; m++)
      for (int64_t n = N; n < ldc; n++) {
        size_t ci = (size_t)(off + m * ldc + n);
        bad += out[ci] != C0[ci];
      }
    CHECK(bad == 0);
  }
  free(A); free(B); free(C0); free(bias); free(out); free(o); free(ref);
}

static void test_gemm(void) {
  pose_cuda_blas *h = NULL;
  CHECK_OK(pose_cuda_blas_create(0, 0, &h));
  if (!h) return;
  const int64_t sizes[][3] = {{67, 45, 83}, {128, 256, 64}, {1, 33, 17}, {300, 7, 129}};
  const pose_dtype types[][2] = {{POSE_BF16, POSE_BF16}, {POSE_BF16, POSE_F32}, {POSE_F32, POSE_F32}};
  for (int s = 0; s < 4; s++)
    for (int t = 0; t < 3; t++)
      for (int tr = 0; tr < 4; tr++) {
        gemm_case gc = {sizes[s][0], sizes[s][1], sizes[s][2], tr & 1, tr >> 1, types[t][0], types[t][1],
                        0.0f, 0, 0, 1, 0};
        run_gemm(h, gc);
      }
  /* the transformer's three products, with the extras */
  gemm_case xs[] = {
      {96, 80, 72, 0, 1, POSE_BF16, POSE_BF16, 0.0f, 1, 0, 1, 0},  /* y = x W^T + b */
      {96, 72, 80, 0, 0, POSE_BF16, POSE_BF16, 0.0f, 0, 0, 1, 0},  /* dx = dy W */
      {80, 72, 96, 1, 0, POSE_BF16, POSE_F32, 1.0f, 0, 0, 1, 0},   /* dW += dy^T x, fp32 accumulation */
      {80, 72, 96, 1, 0, POSE_BF16, POSE_F32, 1.0f, 0, 3, 1, 0},   /* padded leading dimensions */
      {61, 50, 40, 0, 1, POSE_F32, POSE_F32, 0.5f, 1, 5, 1, 1},    /* unaligned, padded, bias, beta */
      {33, 47, 29, 0, 1, POSE_BF16, POSE_BF16, 1.0f, 0, 1, 1, 1},  /* unaligned bf16 views */
      {40, 24, 64, 0, 1, POSE_BF16, POSE_BF16, 0.0f, 0, 0, 3, 0},  /* strided batch */
      {40, 24, 64, 1, 0, POSE_BF16, POSE_F32, 1.0f, 0, 2, 3, 0},   /* strided batch, fp32 C */
      {64, 32, 0, 0, 1, POSE_BF16, POSE_BF16, 0.0f, 0, 0, 1, 0},   /* K = 0: C = 0 */
  };
  for (size_t i = 0; i < sizeof xs / sizeof xs[0]; i++) run_gemm(h, xs[i]);

  /* the heuristic cache: the same problem again is a hit */
  int64_t hits0, miss0, hits1, miss1;
  pose_cuda_blas_stats(h, &hits0, &miss0);
  run_gemm(h, xs[1]);
  pose_cuda_blas_stats(h, &hits1, &miss1);
  CHECK(hits1 == hits0 + 1 && miss1 == miss0);

  /* errors */
  pose_cuda_gemm_args g;
  pose_cuda_gemm_args_init(&g);
  void *d = galloc(4096);
  g.M = g.N = g.K = 4;
  g.A = g.B = g.C = d;
  g.a_dt = POSE_BF16;
  g.b_dt = POSE_F32;
  CHECK_ERR(pose_cuda_gemm(h, &g, NULL), POSE_EUNSUPPORTED, "unsupported types");
  g.b_dt = POSE_BF16;
  g.lda = 2;
  CHECK_ERR(pose_cuda_gemm(h, &g, NULL), POSE_EINVAL, "leading dimension");
  g.lda = 0;
  g.M = -1;
  CHECK_ERR(pose_cuda_gemm(h, &g, NULL), POSE_EINVAL, "negative");
  g.M = 4;
  CHECK_ERR(pose_cuda_gemm(NULL, &g, NULL), POSE_EINVAL, "NULL");
  g.K = 0;
  g.beta = 1.0f;
  CHECK_ERR(pose_cuda_gemm(h, &g, NULL), POSE_EINVAL, "K = 0");
  pose_cuda_blas_free(h);
  pose_cuda_blas_free(NULL);
}

static void test_colsum(void) {
  const int64_t N = 301, C = 77, ld = 80;
  for (int t = 0; t < 2; t++) {
    pose_dtype dt = t ? POSE_BF16 : POSE_F32;
    float *a = hrandn((size_t)(N * ld), 1.0f), *o0 = hrandn((size_t)C, 1.0f);
    void *da = gup_as(a, (size_t)(N * ld), dt);
    float *dout = gup(o0, (size_t)C * 4);
    CHECK_OK(pose_cuda_colsum_add(da, dt, N, C, ld, dout, NULL));
    float *o = gget_f32(dout, (size_t)C, POSE_F32);
    double ref[77];
    for (int64_t c = 0; c < C; c++) {
      double s = o0[c];
      for (int64_t n = 0; n < N; n++) s += a[n * ld + c];
      ref[c] = s;
    }
    CHECK_REL(o, ref, (size_t)C, 1e-6, "colsum_add %s N=%lld C=%lld ld=%lld", dtn(dt), (long long)N, (long long)C,
              (long long)ld);
    free(a); free(o0); free(o);
  }
  CHECK_ERR(pose_cuda_colsum_add(NULL, POSE_F32, 4, 8, 4, NULL, NULL), POSE_EINVAL, "bad sizes");
}

static void test_rand(void) {
  const int64_t n = 100001;
  for (int normal = 0; normal < 2; normal++)
    for (int t = 0; t < 2; t++) {
      pose_dtype dt = t ? POSE_BF16 : POSE_F32;
      void *d = galloc((size_t)n * 4);
      double a = normal ? 0.5 : -2.0, b = normal ? 0.02 : 3.0;
      CHECK_OK(pose_cuda_rand(d, dt, n, 42, 9, a, b, normal, NULL));
      float *got = gget_f32(d, (size_t)n, dt);
      pose_rng r;
      pose_rng_init(&r, 42, 9);
      size_t diff = 0;
      double worst = 0;
      for (int64_t i = 0; i < n; i++) {
        double v = normal ? a + b * pose_rng_normal(&r) : a + (b - a) * pose_rng_uniform(&r);
        float want = (float)v;
        if (dt == POSE_BF16) want = pose_bf16_to_f32(pose_f32_to_bf16(want));
        if (memcmp(&want, &got[i], 4)) {
          diff++;
          double e = fabs((double)got[i] - want) / fabs((double)want);
          if (e > worst) worst = e;
        }
      }
      printf("  rand %s %s: %zu of %lld differ from the CPU stream (worst rel %.2e)\n", normal ? "normal" : "uniform",
             dtn(dt), diff, (long long)n, worst);
      if (normal) CHECK(diff <= (size_t)(n / 1000) && worst < 1e-2);
      else CHECK(diff == 0);
      free(got);
    }
  CHECK_ERR(pose_cuda_rand(NULL, POSE_I64, 4, 1, 1, 0, 1, 0, NULL), POSE_EUNSUPPORTED, "i64");
}

int main(void) {
  gpu_require("gpu_test_gemm");
  test_rand();
  test_convert();
  test_gemm();
  test_colsum();
  gfree_all();
  return test_summary("gpu_test_gemm");
}
