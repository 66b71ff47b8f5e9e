/* GPU: flash attention forward and backward against a double-precision reference on the CPU: causal, grouped-query
 * heads, sliding window, queries offset into a longer key range (KV cache), fused QKV strides, lengths that are not
 * multiples of the tiles, head dims 64 and 128; outputs poisoned first; the backward must be bitwise repeatable. */
#include "gputest.h"

typedef struct {
  int64_t B, Tq, Tk, Hq, Hkv, D, window;
  int fused; /* q, k, v interleaved in one [B, T, (Hq + 2 Hkv) D] buffer (needs Tq == Tk) */
} attn_case;

/* reference for one (b, h): fills o, lse, dq and adds into dk, dv (rows of the group's kv head) */
static void ref_head(const pose_cuda_attn_dims *d, const float *q, const float *k, const float *v, const float *dout,
                     int64_t b, int64_t h, double *o, double *lse, double *dq, double *dk, double *dv) {
  int64_t Tq = d->Tq, Tk = d->Tk, D = d->D, hk = h / (d->Hq / d->Hkv);
  double *P = malloc((size_t)(Tq * Tk) * sizeof *P), *dS = malloc((size_t)(Tq * Tk) * sizeof *dS);
#define QI(i) (q + b * d->q_bstride + (i) * d->q_rstride + h * D)
#define KJ(j) (k + b * d->kv_bstride + (j) * d->kv_rstride + hk * D)
#define VJ(j) (v + b * d->kv_bstride + (j) * d->kv_rstride + hk * D)
#define GI(i) (dout + b * d->q_bstride + (i) * d->q_rstride + h * D)
  for (int64_t i = 0; i < Tq; i++) {
    int64_t qa = i + d->q_off;
    double mx = -INFINITY;
    for (int64_t j = 0; j < Tk; j++) {
      int vis = j <= qa && (d->window <= 0 || qa - j < d->window);
      double s = -INFINITY;
      if (vis) {
        s = 0;
        for (int64_t c = 0; c < D; c++) s += (double)QI(i)[c] * KJ(j)[c];
        s *= d->scale;
      }
      P[i * Tk + j] = s;
      if (s > mx) mx = s;
    }
    double sum = 0;
    for (int64_t j = 0; j < Tk; j++) sum += P[i * Tk + j] == -INFINITY ? 0 : exp(P[i * Tk + j] - mx);
    double l = mx + log(sum);
    lse[i] = l;
    for (int64_t j = 0; j < Tk; j++) P[i * Tk + j] = P[i * Tk + j] == -INFINITY ? 0 : exp(P[i * Tk + j] - l);
    double *oi = o + i * D;
    for (int64_t c = 0; c < D; c++) oi[c] = 0;
    for (int64_t j = 0; j < Tk; j++)
      if (P[i * Tk + j] != 0)
        for (int64_t c = 0; c < D; c++) oi[c] += P[i * Tk + j] * VJ(j)[c];
    double ds = 0;
    for (int64_t c = 0; c < D; c++) ds += (double)GI(i)[c] * oi[c];
    for (int64_t j = 0; j < Tk; j++) {
      double p = P[i * Tk + j], dp = 0;
      if (p == 0) { dS[i * Tk + j] = 0; continue; }
      for (int64_t c = 0; c < D; c++) dp += (double)GI(i)[c] * VJ(j)[c];
      dS[i * Tk + j] = p * (dp - ds);
    }
    double *dqi = dq + i * D;
    for (int64_t c = 0; c < D; c++) dqi[c] = 0;
    for (int64_t j = 0; j < Tk; j++)
      if (dS[i * Tk + j] != 0)
        for (int64_t c = 0; c < D; c++) dqi[c] += d->scale * dS[i * Tk + j] * KJ(j)[c];
  }
  for (int64_t j = 0; j < Tk; j++)
    for (int64_t i = 0; i < Tq; i++) {
      double p = P[i * Tk + j], s = dS[i * Tk + j];
      if (p == 0 && s == 0) continue;
      for (int64_t c = 0; c < D; c++) {
        dv[j * D + c] += p * GI(i)[c];
        dk[j * D + c] += d->scale * s * QI(i)[c];
      }
    }
#undef QI
#undef KJ
#undef VJ
#undef GI
  free(P);
  free(dS);
}

static void run_case(attn_case ac) {
  pose_cuda_attn_dims d;
  pose_cuda_attn_dims_init(&d, ac.B, ac.Tq, ac.Tk, ac.Hq, ac.Hkv, ac.D, ac.window);
  int64_t D = ac.D, qn, kn;
  size_t nq, nkv;
  int64_t koff = 0, voff = 0;
  if (ac.fused) { /* one buffer: token t holds [q heads | k heads | v heads] */
    int64_t w = (ac.Hq + 2 * ac.Hkv) * D;
    d.q_rstride = d.kv_rstride = w;
    d.q_bstride = d.kv_bstride = ac.Tq * w;
    koff = ac.Hq * D;
    voff = (ac.Hq + ac.Hkv) * D;
    nq = nkv = (size_t)(ac.B * ac.Tq * w);
  } else {
    nq = (size_t)(ac.B * ac.Tq * ac.Hq * D);
    nkv = (size_t)(ac.B * ac.Tk * ac.Hkv * D);
  }
  qn = (int64_t)nq;
  kn = (int64_t)nkv;
  float *hq = hrandn(nq, 1.0f), *hk = ac.fused ? hq : hrandn(nkv, 1.0f), *hv = ac.fused ? hq : hrandn(nkv, 1.0f);
  float *hg = hrandn(nq, 1.0f);
  uint16_t *dq_in = gup_as(hq, nq, POSE_BF16);
  uint16_t *dk_in = ac.fused ? dq_in + koff : gup_as(hk, nkv, POSE_BF16);
  uint16_t *dv_in = ac.fused ? dq_in + voff : gup_as(hv, nkv, POSE_BF16);
  uint16_t *dgo = gup_as(hg, nq, POSE_BF16);
  uint16_t *dout = galloc(nq * 2), *dgrad_q = galloc(nq * 2);
  uint16_t *dgrad_k = ac.fused ? dgrad_q + koff : galloc(nkv * 2), *dgrad_v = ac.fused ? dgrad_q + voff : galloc(nkv * 2);
  float *dlse = galloc((size_t)(ac.B * ac.Hq * ac.Tq) * 4);
  const float *rk = hk + koff, *rv = hv + voff;
  char lab[160];
  snprintf(lab, sizeof lab, "B=%lld Tq=%lld Tk=%lld Hq=%lld Hkv=%lld D=%lld window=%lld%s", (long long)ac.B,
           (long long)ac.Tq, (long long)ac.Tk, (long long)ac.Hq, (long long)ac.Hkv, (long long)D,
           (long long)ac.window, ac.fused ? " fused-qkv" : "");

  CHECK_OK(pose_cuda_attn_fwd(&d, dq_in, dk_in, dv_in, dout, dlse, NULL));
  /* the forward's output is the backward's input: the reference uses the exact O, the GPU its bf16 O */
  CHECK_OK(pose_cuda_attn_bwd(&d, dq_in, dk_in, dv_in, dout, dlse, dgo, dgrad_q, dgrad_k, dgrad_v, NULL));
  gsync();

  size_t no = (size_t)(ac.B * ac.Hq * ac.Tq * D), nk = (size_t)(ac.B * ac.Hkv * ac.Tk * D);
  size_t nl = (size_t)(ac.B * ac.Hq * ac.Tq);
  double *ro = malloc(no * 8), *rl = malloc(nl * 8), *rdq = malloc(no * 8), *rdk = calloc(nk, 8), *rdv = calloc(nk, 8);
  float *go = malloc(no * 4), *gdq = malloc(no * 4), *gdk = malloc(nk * 4), *gdv = malloc(nk * 4);
  float *gl = gget_f32(dlse, nl, POSE_F32);
  float *all_o = gget_f32(dout, nq, POSE_BF16), *all_dq = gget_f32(dgrad_q, nq, POSE_BF16);
  float *all_dk = ac.fused ? all_dq : gget_f32(dgrad_k, nkv, POSE_BF16);
  float *all_dv = ac.fused ? all_dq : gget_f32(dgrad_v, nkv, POSE_BF16);
  /* gather per (b, h) blocks in [b][h][t][D] order */
  for (int64_t b = 0; b < ac.B; b++) {
    for (int64_t h = 0; h < ac.Hq; h++) {
      int64_t base = (b * ac.Hq + h) * ac.Tq;
      int64_t hk_ = h / (ac.Hq / ac.Hkv);
      ref_head(&d, hq, rk, rv, hg, b, h, ro + base * D, rl + base, rdq + base * D,
               rdk + (b * ac.Hkv + hk_) * ac.Tk * D, rdv + (b * ac.Hkv + hk_) * ac.Tk * D);
      for (int64_t t = 0; t < ac.Tq; t++)
        for (int64_t c = 0; c < D; c++) {
          int64_t off = b * d.q_bstride + t * d.q_rstride + h * D + c;
          go[(base + t) * D + c] = all_o[off];
          gdq[(base + t) * D + c] = all_dq[off];
        }
    }
    for (int64_t h = 0; h < ac.Hkv; h++)
      for (int64_t t = 0; t < ac.Tk; t++)
        for (int64_t c = 0; c < D; c++) {
          int64_t off = b * d.kv_bstride + t * d.kv_rstride + h * D + c;
          size_t o = (size_t)(((b * ac.Hkv + h) * ac.Tk + t) * D + c);
          gdk[o] = all_dk[off + koff];
          gdv[o] = all_dv[off + voff];
        }
  }
  CHECK_REL(go, ro, no, 1e-2, "attn fwd O    %s", lab);
  CHECK_REL(gl, rl, nl, 1e-4, "attn fwd lse  %s", lab);
  CHECK_REL(gdq, rdq, no, 2e-2, "attn bwd dQ   %s", lab);
  CHECK_REL(gdk, rdk, nk, 2e-2, "attn bwd dK   %s", lab);
  CHECK_REL(gdv, rdv, nk, 2e-2, "attn bwd dV   %s", lab);

  /* bitwise repeatable backward */
  uint16_t *first = malloc(nq * 2), *second = malloc(nq * 2);
  gget(first, dgrad_q, nq * 2);
  CHECK_OK(pose_cuda_attn_bwd(&d, dq_in, dk_in, dv_in, dout, dlse, dgo, dgrad_q, dgrad_k, dgrad_v, NULL));
  gget(second, dgrad_q, nq * 2);
  CHECK(memcmp(first, second, nq * 2) == 0);
  if (!ac.fused) { /* the rerun's dK matches the first run's bit for bit */
    float *k2 = gget_f32(dgrad_k, nkv, POSE_BF16);
    size_t ndiff = 0;
    for (size_t i = 0; i < nkv; i++) ndiff += memcmp(&k2[i], &all_dk[i], 4) != 0;
    CHECK(ndiff == 0);
    free(k2);
  }
  (void)qn;
  (void)kn;
  free(hq);
  if (!ac.fused) { free(hk); free(hv); free(all_dk); free(all_dv); }
  free(hg); free(ro); free(rl); free(rdq); free(rdk); free(rdv); free(go); free(gdq); free(gdk); free(gdv);
  free(gl); free(all_o); free(all_dq); free(first); free(second);
}

int main(void) {
  gpu_require("gpu_test_attention");
  attn_case cases[] = {
      {2, 77, 77, 4, 2, 64, 0, 0},     /* GQA, odd length */
      {1, 200, 200, 4, 1, 128, 0, 0},  /* multi-query */
      {2, 150, 150, 2, 2, 128, 50, 0}, /* sliding window */
      {1, 37, 150, 4, 2, 64, 0, 0},    /* queries at the end of a longer key range (KV cache) */
      {1, 37, 150, 4, 2, 128, 40, 0},  /* ... with a window */
      {2, 130, 130, 4, 2, 64, 0, 1},   /* fused QKV buffer */
      {1, 520, 520, 4, 4, 128, 0, 0},  /* several tiles each way */
      {1, 1, 1, 2, 1, 64, 0, 0},       /* one token */
      {1, 100, 300, 4, 2, 128, 0, 0},  /* KV-cache offset with more than 64 queries (the sm_90a kernel) */
      {1, 100, 300, 4, 2, 64, 60, 0},  /* ... with a window, D = 64 */
      {1, 700, 700, 2, 1, 64, 0, 0},   /* several 128-query tiles at D = 64 */
      {1, 129, 129, 4, 2, 128, 0, 0},  /* one row past the sm_90a backward's 128-row blocks */
      {2, 257, 257, 4, 1, 64, 70, 0},  /* ... with a window crossing 64-row tiles, D = 64 */
      {1, 257, 257, 2, 2, 128, 100, 1}, /* ... fused strides, window, D = 128 */
      {1, 65, 321, 4, 2, 128, 0, 0},   /* KV-cache offset, 65 queries, keys past two blocks */
  };
  /* POSE_GPU_QUICK (set under compute-sanitizer, which is slow): the small cases only */
  int quick = getenv("POSE_GPU_QUICK") != NULL;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    if (!quick || cases[i].Tq * cases[i].Tk <= 40000) run_case(cases[i]);
  /* every forward tile shape (the default is one of them), on both head dims, windows, offsets and fused strides */
  const char *cfgs[] = {"1x64", "2x32", "2x64", "wg3"};
  const int subset[] = {0, 2, 4, 5};
  for (int c = 0; c < 4; c++) {
    setenv("POSE_ATTN_FWD", cfgs[c], 1);
    printf("  forward tiles %s:\n", cfgs[c]);
    for (int i = 0; i < 4; i++) run_case(cases[subset[i]]);
  }
  unsetenv("POSE_ATTN_FWD");
  /* the backward's other operand placement: register-resident A operands at D = 128, shared memory at D = 64 */
  setenv("POSE_ATTN_BWD", "mma", 1); /* AREG is an option of the mma.sync backward */
  for (int v = 0; v < 2; v++) {
    setenv("POSE_ATTN_BWD_AREG", v ? "1" : "0", 1);
    printf("  backward with A operands %s:\n", v ? "in registers" : "from shared memory");
    for (int i = 0; i < 4; i++) run_case(cases[subset[i]]);
  }
  unsetenv("POSE_ATTN_BWD_AREG");
  /* the other backward kernels on cases the sm_90a backward takes by default (more than 64 queries; with fewer,
   * or off Hopper, every run takes the mma.sync kernels) */
  const int bsub[] = {1, 2, 5, 8, 9, 10, 11, 12, 13, 14};
  /* mma.sync; the first sm_90a kernels (wg1) and them with 64-key tiles in dQ (wg64); the default (version 2) with
   * 128-query dK/dV tiles at D = 64 (wgq128; D = 128 cases run the default again) */
  const char *bcfgs[] = {"mma", "wgq64"};
  for (int c = 0; c < 2; c++) {
    setenv("POSE_ATTN_BWD", bcfgs[c], 1);
    printf("  backward %s:\n", bcfgs[c]);
    for (int i = 0; i < 10; i++)
      if (!quick || cases[bsub[i]].Tq * cases[bsub[i]].Tk <= 40000) run_case(cases[bsub[i]]);
  }
  unsetenv("POSE_ATTN_BWD");

  pose_cuda_attn_dims d;
  void *p = galloc(1 << 16);
  pose_cuda_attn_dims_init(&d, 1, 16, 16, 2, 2, 96, 0);
  CHECK_ERR(pose_cuda_attn_fwd(&d, p, p, p, p, p, NULL), POSE_EUNSUPPORTED, "head dim 96");
  pose_cuda_attn_dims_init(&d, 1, 16, 16, 4, 3, 64, 0);
  CHECK_ERR(pose_cuda_attn_fwd(&d, p, p, p, p, p, NULL), POSE_EINVAL, "does not divide");
  pose_cuda_attn_dims_init(&d, 1, 16, 16, 2, 2, 64, 0);
  d.q_rstride = 130;
  CHECK_ERR(pose_cuda_attn_bwd(&d, p, p, p, p, p, p, p, p, p, NULL), POSE_EINVAL, "multiples of 8");
  pose_cuda_attn_dims_init(&d, 1, 16, 16, 2, 2, 64, 0);
  CHECK_ERR(pose_cuda_attn_fwd(&d, (uint16_t *)p + 1, p, p, p, p, NULL), POSE_EINVAL, "aligned");
  gfree_all();
  return test_summary("gpu_test_attention");
}
