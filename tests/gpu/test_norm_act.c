/* GPU: RMSNorm/LayerNorm forward and backward (fp32 and bf16 activations, fp32 and bf16 weights, odd widths,
 * more rows than blocks, accumulated dx/dw/db) and the MLP activations (SiLU, GELU erf/tanh, ReLU; gated over a
 * fused gate|up buffer and plain), against double references. */
#include "gputest.h"

static void norm_case(int rms, pose_dtype dt, pose_dtype wdt, int64_t N, int64_t C, int accumulate) {
  const float eps = 1e-5f;
  size_t nx = (size_t)(N * C);
  float *x = hrandn(nx, 1.5f), *w = hrandn((size_t)C, 1.0f), *b = hrandn((size_t)C, 0.5f);
  float *dy = hrandn(nx, 1.0f), *dx0 = hrandn(nx, 1.0f), *dw0 = hrandn((size_t)C, 1.0f), *db0 = hrandn((size_t)C, 1.0f);
  for (size_t i = 0; i < nx; i++) x[i] += 0.3f; /* a non-zero mean for LayerNorm to remove */
  void *dx_in = gup_as(x, nx, dt), *dw_in = gup_as(w, (size_t)C, wdt), *db_in = gup_as(b, (size_t)C, wdt);
  void *ddy = gup_as(dy, nx, dt), *ddx = gup_as(dx0, nx, dt);
  float *ddw = gup(dw0, (size_t)C * 4), *ddb = gup(db0, (size_t)C * 4);
  void *dyo = galloc(nx * pose_dtype_size(dt));
  float *dmean = galloc((size_t)N * 4), *drstd = galloc((size_t)N * 4);
  if (!accumulate) gpoison(ddx, nx * pose_dtype_size(dt));
  const char *name = rms ? "rmsnorm" : "layernorm";
  CHECK_OK(pose_cuda_norm_fwd(rms, dx_in, dt, dw_in, rms ? NULL : db_in, wdt, eps, N, C, dyo, dmean, drstd, NULL));
  CHECK_OK(pose_cuda_norm_bwd(rms, dx_in, dt, dw_in, wdt, dmean, drstd, ddy, N, C, ddx, accumulate, ddw,
                              rms ? NULL : ddb, NULL));
  float *y = gget_f32(dyo, nx, dt), *gx = gget_f32(ddx, nx, dt), *gw = gget_f32(ddw, (size_t)C, POSE_F32);
  float *gb = gget_f32(ddb, (size_t)C, POSE_F32), *rs = gget_f32(drstd, (size_t)N, POSE_F32);
  double *ry = malloc(nx * sizeof *ry), *rx = malloc(nx * sizeof *rx), *rw = malloc((size_t)C * sizeof *rw);
  double *rb = malloc((size_t)C * sizeof *rb), *rr = malloc((size_t)N * sizeof *rr);
  for (int64_t c = 0; c < C; c++) { rw[c] = dw0[c]; rb[c] = db0[c]; }
  for (int64_t n = 0; n < N; n++) {
    const float *xr = x + n * C, *gy = dy + n * C;
    double mean = 0, var = 0;
    if (!rms) {
      for (int64_t c = 0; c < C; c++) mean += xr[c];
      mean /= C;
    }
    for (int64_t c = 0; c < C; c++) var += (xr[c] - mean) * (xr[c] - mean);
    var /= C;
    double rstd = 1.0 / sqrt(var + eps), mg = 0, mgx = 0;
    rr[n] = rstd;
    for (int64_t c = 0; c < C; c++) {
      double xh = (xr[c] - mean) * rstd, g = (double)gy[c] * w[c];
      ry[n * C + c] = xh * w[c] + (rms ? 0.0 : b[c]);
      mg += g;
      mgx += g * xh;
      rw[c] += gy[c] * xh;
      rb[c] += gy[c];
    }
    mg /= C;
    mgx /= C;
    for (int64_t c = 0; c < C; c++) {
      double xh = (xr[c] - mean) * rstd, g = (double)gy[c] * w[c];
      rx[n * C + c] = rstd * (g - (rms ? 0.0 : mg) - xh * mgx) + (accumulate ? dx0[n * C + c] : 0.0);
    }
  }
  double tol = tol_for(dt, 1e-6, 1e-2);
  CHECK_REL(y, ry, nx, tol, "%s fwd %s/w %s N=%lld C=%lld", name, dtn(dt), dtn(wdt), (long long)N, (long long)C);
  CHECK_REL(rs, rr, (size_t)N, 1e-6, "%s rstd %s N=%lld C=%lld", name, dtn(dt), (long long)N, (long long)C);
  CHECK_REL(gx, rx, nx, tol, "%s bwd dx%s %s/w %s N=%lld C=%lld", name, accumulate ? " (+=)" : "", dtn(dt), dtn(wdt),
            (long long)N, (long long)C);
  CHECK_REL(gw, rw, (size_t)C, 1e-6, "%s bwd dw (+=) %s/w %s N=%lld C=%lld", name, dtn(dt), dtn(wdt), (long long)N,
            (long long)C);
  if (!rms)
    CHECK_REL(gb, rb, (size_t)C, 1e-6, "%s bwd db (+=) %s N=%lld C=%lld", name, dtn(dt), (long long)N, (long long)C);
  /* determinism: two accumulations from zero give the same bits */
  if (!accumulate) {
    float *z = calloc((size_t)C, 4);
    gput(ddw, z, (size_t)C * 4);
    CHECK_OK(pose_cuda_norm_bwd(rms, dx_in, dt, dw_in, wdt, dmean, drstd, ddy, N, C, ddx, 0, ddw, NULL, NULL));
    float *r1 = gget_f32(ddw, (size_t)C, POSE_F32);
    gput(ddw, z, (size_t)C * 4);
    CHECK_OK(pose_cuda_norm_bwd(rms, dx_in, dt, dw_in, wdt, dmean, drstd, ddy, N, C, ddx, 0, ddw, NULL, NULL));
    float *r2 = gget_f32(ddw, (size_t)C, POSE_F32);
    size_t diff = 0;
    for (int64_t c = 0; c < C; c++) diff += memcmp(&r1[c], &r2[c], 4) != 0;
    CHECK(diff == 0);
    free(z); free(r1); free(r2);
  }
  free(x); free(w); free(b); free(dy); free(dx0); free(dw0); free(db0);
  free(y); free(gx); free(gw); free(gb); free(rs); free(ry); free(rx); free(rw); free(rb); free(rr);
}

static void test_norm(void) {
  /* C % 8 == 0 and C <= 8192 take the vectorised kernels (1, 2 or 4 chunks of 8 per thread, 128 or 256 threads,
   * a partial last chunk row); the others the scalar ones */
  const int64_t shapes[][2] = {{37, 1000}, {300, 4099}, {5, 64}, {300, 4096}, {64, 8192}, {50, 2056}};
  for (int rms = 0; rms < 2; rms++)
    for (int s = 0; s < 6; s++) {
      norm_case(rms, POSE_F32, POSE_F32, shapes[s][0], shapes[s][1], s == 1);
      norm_case(rms, POSE_BF16, POSE_F32, shapes[s][0], shapes[s][1], s == 0);
      norm_case(rms, POSE_BF16, POSE_BF16, shapes[s][0], shapes[s][1], 0);
    }
  norm_case(1, POSE_F32, POSE_BF16, 20, 16384, 0);
  void *d = galloc(64);
  CHECK_ERR(pose_cuda_norm_bwd(1, d, POSE_F32, d, POSE_F32, NULL, d, d, 1, 20000, d, 0, NULL, NULL, NULL), POSE_EINVAL,
            "exceeds");
  CHECK_ERR(pose_cuda_norm_fwd(1, d, POSE_F16, d, NULL, POSE_F32, 1e-5f, 1, 8, d, NULL, d, NULL), POSE_EUNSUPPORTED,
            "f16");
  CHECK_ERR(pose_cuda_norm_fwd(0, d, POSE_F32, d, NULL, POSE_F32, 1e-5f, 1, 8, d, NULL, d, NULL), POSE_EINVAL,
            "NULL");
  CHECK_ERR(pose_cuda_norm_fwd(1, d, POSE_F32, d, NULL, POSE_F32, 1e-5f, 1, 0, d, NULL, d, NULL), POSE_EINVAL,
            "bad sizes");
}

static void act_ref(int k, double x, double *f, double *df) {
  switch (k) {
  case POSE_CUDA_SILU: {
    double s = 1.0 / (1.0 + exp(-x));
    *f = x * s;
    *df = s * (1.0 + x * (1.0 - s));
    break;
  }
  case POSE_CUDA_GELU_ERF: {
    double cdf = 0.5 * (1.0 + erf(x * 0.70710678118654752440));
    *f = x * cdf;
    *df = cdf + x * exp(-0.5 * x * x) * 0.39894228040143267794;
    break;
  }
  case POSE_CUDA_GELU_TANH: {
    const double k0 = 0.79788456080286535588, k1 = 0.044715;
    double t = tanh(k0 * (x + k1 * x * x * x));
    *f = 0.5 * x * (1.0 + t);
    *df = 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * k0 * (1.0 + 3.0 * k1 * x * x);
    break;
  }
  default:
    *f = x > 0 ? x : 0;
    *df = x > 0 ? 1 : 0;
  }
}

static void act_case(int k, int gated, pose_dtype dt, int64_t N, int64_t F) {
  static const char *names[] = {"silu", "gelu_erf", "gelu_tanh", "relu"};
  int64_t ld = gated ? 2 * F : F + (F % 8 ? 3 : 8); /* F % 8 == 0: the vectorised kernels */
  size_t nin = (size_t)(N * ld), nf = (size_t)(N * F);
  float *in = hrandn(nin, 2.0f), *da = hrandn(nf, 1.0f);
  void *din = gup_as(in, nin, dt), *dda = gup_as(da, nf, dt);
  void *dout = galloc(nf * pose_dtype_size(dt)), *dgrad = galloc(nin * pose_dtype_size(dt));
  const char *g = din, *u = gated ? (const char *)din + F * pose_dtype_size(dt) : NULL;
  CHECK_OK(pose_cuda_act_fwd((pose_cuda_act)k, g, u, ld, dt, N, F, dout, NULL));
  void *dgp = dgrad, *dup = gated ? (char *)dgrad + F * pose_dtype_size(dt) : NULL;
  CHECK_OK(pose_cuda_act_bwd((pose_cuda_act)k, g, u, ld, dt, N, F, dda, dgp, dup, ld, NULL));
  float *a = gget_f32(dout, nf, dt), *gr = gget_f32(dgrad, nin, dt);
  double *ra = malloc(nf * sizeof *ra), *rg = malloc(nf * sizeof *rg), *ru = malloc(nf * sizeof *ru);
  float *og = malloc(nf * 4), *ou = malloc(nf * 4);
  for (int64_t n = 0; n < N; n++)
    for (int64_t c = 0; c < F; c++) {
      double f, df, x = in[n * ld + c], uv = gated ? in[n * ld + F + c] : 1.0, d = da[n * F + c];
      act_ref(k, x, &f, &df);
      ra[n * F + c] = f * uv;
      rg[n * F + c] = d * uv * df;
      ru[n * F + c] = d * f;
      og[n * F + c] = gr[n * ld + c];
      ou[n * F + c] = gated ? gr[n * ld + F + c] : 0.0f;
    }
  double tol = tol_for(dt, 1e-6, 1e-2);
  CHECK_REL(a, ra, nf, tol, "%s%s fwd %s N=%lld F=%lld", names[k], gated ? " gated" : "", dtn(dt), (long long)N,
            (long long)F);
  CHECK_REL(og, rg, nf, tol, "%s%s bwd dg %s", names[k], gated ? " gated" : "", dtn(dt));
  if (gated) CHECK_REL(ou, ru, nf, tol, "%s gated bwd du %s", names[k], dtn(dt));
  free(in); free(da); free(a); free(gr); free(ra); free(rg); free(ru); free(og); free(ou);
}

static void test_act(void) {
  for (int k = 0; k < 4; k++)
    for (int gated = 0; gated < 2; gated++) {
      act_case(k, gated, POSE_F32, 37, 1001);
      act_case(k, gated, POSE_BF16, 19, 777);
      act_case(k, gated, POSE_F32, 21, 1024);
      act_case(k, gated, POSE_BF16, 13, 2048);
    }
  void *d = galloc(64);
  CHECK_ERR(pose_cuda_act_fwd((pose_cuda_act)9, d, NULL, 4, POSE_F32, 1, 4, d, NULL), POSE_EINVAL, "unknown");
  CHECK_ERR(pose_cuda_act_fwd(POSE_CUDA_SILU, d, NULL, 2, POSE_F32, 1, 4, d, NULL), POSE_EINVAL, "bad sizes");
  CHECK_ERR(pose_cuda_act_bwd(POSE_CUDA_SILU, d, d, 4, POSE_F32, 1, 4, d, d, NULL, 4, NULL), POSE_EINVAL, "du");
}

int main(void) {
  gpu_require("gpu_test_norm_act");
  test_norm();
  test_act();
  gfree_all();
  return test_summary("gpu_test_norm_act");
}
