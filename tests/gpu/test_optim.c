/* GPU: AdamW (fp32 master weights with the bf16 copy: bit-exact against torch's operation order computed here on
 * the CPU; pure bf16 with Philox stochastic rounding: bit-exact against the same rounding on the CPU, and unbiased),
 * deterministic sums, the global gradient norm and the clipping coefficient. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("fp-contract=off") /* the reference must round every operation, like torch */
#endif
#include "gputest.h"

static float cpu_lerp(float start, float end, float w) {
  return fabsf(w) < 0.5f ? fmaf(w, end - start, start) : fmaf(w - 1.0f, end - start, end);
}

static void cpu_adam(const pose_cuda_adamw_coefs *k, float *w, float g, float *m, float *v) {
  float wi = *w;
  if (k->apply_decay) wi = wi * k->decay;
  float mi = cpu_lerp(*m, g, k->lerp_w);
  float vi = *v * k->beta2;
  float t = k->one_minus_beta2 * g;
  t = t * g;
  vi = vi + t;
  float d = sqrtf(vi);
  d = d / k->bc2_sqrt;
  d = d + k->eps;
  float u = k->neg_step_size * mi;
  u = u / d;
  *w = wi + u;
  *m = mi;
  *v = vi;
}

static uint16_t cpu_sr(float x, uint32_t r) {
  uint32_t u;
  memcpy(&u, &x, 4);
  if ((u & 0x7f800000u) == 0x7f800000u) return pose_f32_to_bf16(x);
  return (uint16_t)((u + (r & 0xffffu)) >> 16);
}

static void test_adamw_f32(void) {
  const int64_t n = 100003;
  float *w = hrandn((size_t)n, 0.5f), *g = hrandn((size_t)n, 0.1f), *m = hrandn((size_t)n, 0.01f);
  float *v = hrandu((size_t)n, 1e-6f, 1e-3f);
  for (int variant = 0; variant < 3; variant++) {
    double wd = variant == 1 ? 0.0 : 0.1, lr = variant == 2 ? 0.9 : 1e-3, beta1 = variant == 2 ? 0.3 : 0.9;
    float coef = 0.7f;
    pose_cuda_adamw_coefs k;
    pose_cuda_adamw_coefs_init(&k, lr, beta1, 0.999, 1e-8, wd, 3 + variant);
    float *dw = gup(w, (size_t)n * 4), *dg = gup(g, (size_t)n * 4), *dm = gup(m, (size_t)n * 4);
    float *dv = gup(v, (size_t)n * 4), *dcoef = gup(&coef, 4);
    uint16_t *dwb = galloc((size_t)n * 2);
    CHECK_OK(pose_cuda_adamw(dw, dg, dm, dv, dwb, n, &k, variant == 0 ? dcoef : NULL, NULL));
    float *ow = malloc((size_t)n * 4), *om = malloc((size_t)n * 4), *ov = malloc((size_t)n * 4);
    uint16_t *owb = malloc((size_t)n * 2);
    gget(ow, dw, (size_t)n * 4);
    gget(om, dm, (size_t)n * 4);
    gget(ov, dv, (size_t)n * 4);
    gget(owb, dwb, (size_t)n * 2);
    size_t bad = 0, badb = 0;
    for (int64_t i = 0; i < n; i++) {
      float wi = w[i], mi = m[i], vi = v[i], gi = variant == 0 ? g[i] * coef : g[i];
      cpu_adam(&k, &wi, gi, &mi, &vi);
      bad += memcmp(&wi, &ow[i], 4) != 0 || memcmp(&mi, &om[i], 4) != 0 || memcmp(&vi, &ov[i], 4) != 0;
      badb += owb[i] != pose_f32_to_bf16(wi);
    }
    printf("  adamw f32 (wd %g, lr %g, beta1 %g%s): %zu of %lld elements differ from torch's arithmetic, "
           "%zu bf16 copies\n", wd, lr, beta1, variant == 0 ? ", clip coef" : "", bad, (long long)n, badb);
    CHECK(bad == 0);
    CHECK(badb == 0);
    free(ow); free(om); free(ov); free(owb);
  }
  free(w); free(g); free(m); free(v);
}

static void test_adamw_bf16(void) {
  const int64_t n = 70001;
  const uint64_t seed = 1234, stream = (7ull << 32) | 5;
  for (int gt = 0; gt < 2; gt++) {
    pose_dtype gdt = gt ? POSE_BF16 : POSE_F32;
    float *w = hrandn((size_t)n, 0.5f), *g = hrandn((size_t)n, 0.1f), *m = hrandn((size_t)n, 0.01f);
    float *v = hrandu((size_t)n, 1e-6f, 1e-3f);
    uint16_t *wb = hround_bf16(w, (size_t)n), *mb = hround_bf16(m, (size_t)n), *vb = hround_bf16(v, (size_t)n);
    void *dg = gup_as(g, (size_t)n, gdt);
    uint16_t *dw = gup(wb, (size_t)n * 2), *dm = gup(mb, (size_t)n * 2), *dv = gup(vb, (size_t)n * 2);
    pose_cuda_adamw_coefs k;
    pose_cuda_adamw_coefs_init(&k, 1e-3, 0.9, 0.999, 1e-8, 0.01, 2);
    CHECK_OK(pose_cuda_adamw_bf16(dw, dg, gdt, dm, dv, n, &k, NULL, seed, stream, NULL));
    uint16_t *ow = malloc((size_t)n * 2), *om = malloc((size_t)n * 2), *ov = malloc((size_t)n * 2);
    gget(ow, dw, (size_t)n * 2);
    gget(om, dm, (size_t)n * 2);
    gget(ov, dv, (size_t)n * 2);
    size_t bad = 0;
    for (int64_t i = 0; i < n; i++) {
      float wi = w[i], mi = m[i], vi = v[i];
      cpu_adam(&k, &wi, g[i], &mi, &vi);
      uint32_t r[4];
      pose_philox4x32(seed, stream, (uint64_t)i, r);
      bad += ow[i] != cpu_sr(wi, r[0]) || om[i] != cpu_sr(mi, r[1]) || ov[i] != cpu_sr(vi, r[2]);
    }
    printf("  adamw bf16 + stochastic rounding (grad %s): %zu of %lld elements differ from the CPU's Philox "
           "rounding\n", dtn(gdt), bad, (long long)n);
    CHECK(bad == 0);
    free(w); free(g); free(m); free(v); free(wb); free(mb); free(vb); free(ow); free(om); free(ov);
  }
  /* unbiased: a step of -1e-4 from 1.0 is lost by round-to-nearest (the bf16 spacing below 1 is 2^-8) but kept
   * on average by stochastic rounding */
  const int64_t nn = 1 << 20;
  uint16_t *w1 = malloc((size_t)nn * 2), *z = calloc((size_t)nn, 2);
  float *g1 = malloc((size_t)nn * 4);
  for (int64_t i = 0; i < nn; i++) { w1[i] = pose_f32_to_bf16(1.0f); g1[i] = 1.0f; }
  uint16_t *dw = gup(w1, (size_t)nn * 2), *dm = gup(z, (size_t)nn * 2), *dv = gup(z, (size_t)nn * 2);
  float *dg = gup(g1, (size_t)nn * 4);
  pose_cuda_adamw_coefs k;
  pose_cuda_adamw_coefs_init(&k, 1e-4, 0.9, 0.999, 1e-8, 0.0, 1);
  CHECK_OK(pose_cuda_adamw_bf16(dw, dg, POSE_F32, dm, dv, nn, &k, NULL, 77, 0, NULL));
  gget(w1, dw, (size_t)nn * 2);
  double mean = 0;
  for (int64_t i = 0; i < nn; i++) mean += pose_bf16_to_f32(w1[i]);
  mean /= nn;
  float exact = 1.0f, m0 = 0, v0 = 0;
  cpu_adam(&k, &exact, 1.0f, &m0, &v0);
  printf("  stochastic rounding: mean of %lld updated weights %.8f, fp32 update %.8f (round-to-nearest: 1.0)\n",
         (long long)nn, mean, (double)exact);
  CHECK(fabs(mean - exact) < 5e-6);
  free(w1); free(z); free(g1);
}

static double cpu_sumsq_blocks(const float *x, int64_t n) {
  double s = 0;
  for (int64_t b = 0; b * 16384 < n; b++) {
    double p = 0;
    for (int64_t i = b * 16384; i < n && i < (b + 1) * 16384; i++) p += (double)x[i] * x[i];
    s += p;
  }
  return s;
}

static void test_norms(void) {
  const int64_t sizes[] = {1, 16384, 16385, 100000, 0, 3000};
  const int cnt = 6;
  for (int t = 0; t < 2; t++) {
    pose_dtype dt = t ? POSE_BF16 : POSE_F32;
    const void *ptrs[6];
    float *hs[6];
    double tot = 0;
    for (int i = 0; i < cnt; i++) {
      hs[i] = hrandn((size_t)(sizes[i] ? sizes[i] : 1), 0.01f * (float)(i + 1));
      ptrs[i] = sizes[i] ? gup_as(hs[i], (size_t)sizes[i], dt) : NULL;
      float ni = (float)sqrt(cpu_sumsq_blocks(hs[i], sizes[i]));
      tot += (double)ni * ni;
    }
    float want = (float)sqrt(tot);
    float *dn = galloc(4), got;
    CHECK_OK(pose_cuda_grad_norm(ptrs, sizes, cnt, dt, dn, NULL));
    gget(&got, dn, 4);
    printf("  grad norm %s: %.9g vs CPU %.9g (%s)\n", dtn(dt), (double)got, (double)want,
           got == want ? "identical" : "differs");
    CHECK_NEAR(got, want, 1e-6 * want);
    /* clipping coefficient from the device norm, as torch computes it */
    float *dc = galloc(4), c;
    CHECK_OK(pose_cuda_clip_coef(dn, 0.5 * want, dc, NULL));
    gget(&c, dc, 4);
    float cw = (1.0f / (got + 1e-6f)) * (float)(0.5 * want);
    CHECK(c == (cw < 1.0f ? cw : 1.0f));
    CHECK_OK(pose_cuda_clip_coef(dn, 10.0 * want, dc, NULL));
    gget(&c, dc, 4);
    CHECK(c == 1.0f);
    for (int i = 0; i < cnt; i++) free(hs[i]);
  }
  float nanv = NAN, *dn = gup(&nanv, 4), *dc = galloc(4), c = 0;
  CHECK_OK(pose_cuda_clip_coef(dn, 1.0, dc, NULL));
  gget(&c, dc, 4);
  CHECK(isnan(c));
  CHECK_ERR(pose_cuda_clip_coef(dn, 0.0, dc, NULL), POSE_EINVAL, "positive");
  const void *bad[1] = {NULL};
  int64_t badn[1] = {5};
  CHECK_ERR(pose_cuda_grad_norm(bad, badn, 1, POSE_F32, dn, NULL), POSE_EINVAL, "NULL pointer");

  /* plain sum */
  const int64_t n = 1000001;
  float *x = hrandn((size_t)n, 1.0f);
  double ref = 0, got = 0;
  for (int64_t i = 0; i < n; i++) ref += x[i];
  float *dx = gup(x, (size_t)n * 4);
  double *ds = galloc(8);
  CHECK_OK(pose_cuda_sum(dx, POSE_F32, n, ds, NULL));
  gget(&got, ds, 8);
  printf("  sum of %lld floats: %.12g vs %.12g\n", (long long)n, got, ref);
  CHECK_NEAR(got, ref, 1e-9 * fabs(ref) + 1e-9);
  free(x);
}

int main(void) {
  gpu_require("gpu_test_optim");
  test_adamw_f32();
  test_adamw_bf16();
  test_norms();
  gfree_all();
  return test_summary("gpu_test_optim");
}
