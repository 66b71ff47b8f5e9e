/* Gradients of every parameter kind of every family against central finite differences (fp32 model, loss summed
 * in double), at PoSE-style skipped positions; tiled attention against a naive double-precision reference; the
 * rotary apply and its transpose; forward / nll / decode consistency; error paths. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attention.h"
#include "model.h"
#include "model_internal.h"
#include "ops_rope_apply.h"
#include "rng.h"
#include "testutil.h"

/* ---- helpers ---------------------------------------------------------------------------------------------- */

static pose_model *make(const char *json, uint64_t seed) {
  cJSON *c = cJSON_Parse(json);
  if (!c) { fprintf(stderr, "bad json: %s\n", json); return NULL; }
  pose_model *m = NULL;
  pose_status st = pose_model_init(c, seed, POSE_DEVICE_CPU, &m);
  cJSON_Delete(c);
  if (st != POSE_OK) { fprintf(stderr, "init: %s\n", pose_error_message()); return NULL; }
  /* biases start at zero and norm weights at one: move them so that their gradients take every path */
  pose_rng r;
  pose_rng_init(&r, seed + 1000, 0);
  for (size_t i = 0; i < pose_model_num_params(m); i++) {
    pose_param *p = pose_model_param(m, i);
    if (!p->decay)
      for (int64_t k = 0; k < p->numel; k++) p->w[k] += 0.2f * pose_rng_normal(&r);
  }
  return m;
}

/* mean NLL over scored targets, accumulated in double from the fp32 per-token values */
static double loss_of(pose_model *m, const int64_t *ids, const int64_t *pos, const int64_t *tgt, int64_t B, int64_t T) {
  float *nll = malloc(sizeof(float) * (size_t)(B * (T - 1)));
  pose_status st = pose_model_nll(m, ids, pos, tgt, B, T, nll);
  if (st != POSE_OK) { fprintf(stderr, "nll: %s\n", pose_error_message()); free(nll); return NAN; }
  double s = 0;
  int64_t n = 0;
  for (int64_t b = 0; b < B; b++)
    for (int64_t t = 0; t + 1 < T; t++) {
      int64_t y = tgt ? tgt[b * T + t + 1] : ids[b * T + t + 1];
      if (y == POSE_IGNORE_INDEX) continue;
      s += nll[b * (T - 1) + t];
      n++;
    }
  free(nll);
  return s / (double)n;
}

/* PoSE-style inputs: two chunks per row, the second shifted far beyond the first; one ignored target */
#define GB 2
#define GT 11
static int64_t g_ids[GB * GT], g_pos[GB * GT], g_tgt[GB * GT];

static void make_inputs(int64_t V) {
  pose_rng r;
  pose_rng_init(&r, 7, 0);
  for (int64_t b = 0; b < GB; b++)
    for (int64_t t = 0; t < GT; t++) {
      g_ids[b * GT + t] = (int64_t)pose_rng_below(&r, (uint64_t)V);
      g_pos[b * GT + t] = t < 5 ? t + b : 40 + 17 * b + t; /* chunk 1 at [b, b+5), chunk 2 far away */
      g_tgt[b * GT + t] = g_ids[b * GT + t];
    }
  g_tgt[0 * GT + 7] = POSE_IGNORE_INDEX;
}

static void decode_check(const char *name, pose_model *m, const float *logits);

/* For every parameter tensor: the directional derivative along the normalised gradient must be |g| (central
 * differences), and along a random +-1 direction it must match g.d. */
static void grad_check(const char *name, const char *json) {
  pose_model *m = make(json, 11);
  CHECK(m != NULL);
  if (!m) return;
  make_inputs(pose_model_vocab(m));
  {
    float *lg = malloc(sizeof(float) * GB * GT * (size_t)pose_model_vocab(m));
    CHECK_OK(pose_model_forward(m, g_ids, g_pos, GB, GT, lg));
    decode_check(name, m, lg);
    free(lg);
  }
  pose_model_zero_grad(m);
  double loss = 0;
  int64_t count = 0;
  CHECK_OK(pose_model_backward(m, g_ids, g_pos, g_tgt, GB, GT, 1.0, &loss, &count));
  CHECK(count == GB * (GT - 1) - 1);
  double l0 = loss_of(m, g_ids, g_pos, g_tgt, GB, GT);
  CHECK_NEAR(loss, l0, 1e-5 * fabs(l0));
  int bad = 0;
  pose_rng r;
  pose_rng_init(&r, 99, 0);
  for (size_t i = 0; i < pose_model_num_params(m); i++) {
    pose_param *p = pose_model_param(m, i);
    double gn = 0;
    for (int64_t k = 0; k < p->numel; k++) gn += (double)p->g[k] * p->g[k];
    gn = sqrt(gn);
    float *w0 = malloc(sizeof(float) * (size_t)p->numel), *dir = malloc(sizeof(float) * (size_t)p->numel);
    memcpy(w0, p->w, sizeof(float) * (size_t)p->numel);
    for (int pass = 0; pass < 2; pass++) {
      /* pass 0: d = g/|g|; pass 1: random signs / sqrt(n) */
      double expect = 0;
      for (int64_t k = 0; k < p->numel; k++) {
        dir[k] = pass == 0 ? (gn > 0 ? (float)(p->g[k] / gn) : 0.0f)
                           : ((pose_rng_u32(&r) & 1) ? 1.0f : -1.0f) / sqrtf((float)p->numel);
        expect += (double)p->g[k] * dir[k];
      }
      /* central differences at h and 2h, Richardson-extrapolated: the h^2 error term cancels (curvature is large
       * with the wide initialisation used here) */
      double fdh[2];
      for (int hi = 0; hi < 2; hi++) {
        const double h = hi == 0 ? 1e-3 : 2e-3;
        for (int64_t k = 0; k < p->numel; k++) p->w[k] = w0[k] + (float)h * dir[k];
        double lp = loss_of(m, g_ids, g_pos, g_tgt, GB, GT);
        for (int64_t k = 0; k < p->numel; k++) p->w[k] = w0[k] - (float)h * dir[k];
        double lm = loss_of(m, g_ids, g_pos, g_tgt, GB, GT);
        fdh[hi] = (lp - lm) / (2 * h);
      }
      memcpy(p->w, w0, sizeof(float) * (size_t)p->numel);
      double fd = (4 * fdh[0] - fdh[1]) / 3;
      double tol = 2e-3 * fabs(expect) + 2e-4;
      if (!(fabs(fd - expect) <= tol)) {
        bad++;
        fprintf(stderr, "%s: %s (%s): analytic %.6g, finite difference %.6g\n", name, p->name,
                pass == 0 ? "along g" : "random direction", expect, fd);
      }
    }
    /* a gradient that is exactly zero everywhere would pass trivially: require signal */
    if (gn < 1e-6) { bad++; fprintf(stderr, "%s: %s has a zero gradient\n", name, p->name); }
    free(w0);
    free(dir);
  }
  if (bad) fprintf(stderr, "%s: %d mismatches\n", name, bad);
  CHECK(bad == 0);
  /* loss_scale multiplies, and gradients add up over calls */
  pose_param *p0 = pose_model_param(m, 1);
  float g1 = p0->g[0];
  CHECK_OK(pose_model_backward(m, g_ids, g_pos, g_tgt, GB, GT, 2.0, &loss, &count));
  CHECK_NEAR(p0->g[0], 3 * g1, 1e-5 * fabs(g1) + 1e-9);
  pose_model_free(m);
}

/* ---- attention ------------------------------------------------------------------------------------------------ */

/* naive double-precision reference on contiguous layouts */
static void naive_attn(const pose_attn_dims *d, const float *q, const float *k, const float *v, const float *dout,
                       double *o, double *dq, double *dk, double *dv) {
  int64_t rep = d->Hq / d->Hkv, D = d->D;
  if (dk) memset(dk, 0, sizeof(double) * (size_t)(d->B * d->Tk * d->Hkv * D));
  if (dv) memset(dv, 0, sizeof(double) * (size_t)(d->B * d->Tk * d->Hkv * D));
  double *p = malloc(sizeof(double) * (size_t)d->Tk), *dp = malloc(sizeof(double) * (size_t)d->Tk);
  for (int64_t b = 0; b < d->B; b++)
    for (int64_t h = 0; h < d->Hq; h++)
      for (int64_t i = 0; i < d->Tq; i++) {
        int64_t qi = d->q_off + i, g = h / rep;
        const float *qr = q + b * d->q_bstride + i * d->q_rstride + h * D;
        double mx = -INFINITY;
        for (int64_t j = 0; j < d->Tk; j++) {
          int vis = j <= qi && (d->window == 0 || qi - j < d->window);
          if (!vis) { p[j] = -INFINITY; continue; }
          const float *kr = k + b * d->kv_bstride + j * d->kv_rstride + g * D;
          double s = 0;
          for (int64_t e = 0; e < D; e++) s += (double)qr[e] * kr[e];
          p[j] = s * d->scale;
          if (p[j] > mx) mx = p[j];
        }
        double z = 0;
        for (int64_t j = 0; j < d->Tk; j++) { p[j] = p[j] == -INFINITY ? 0 : exp(p[j] - mx); z += p[j]; }
        for (int64_t j = 0; j < d->Tk; j++) p[j] /= z;
        double *orow = o + ((b * d->Tq + i) * d->Hq + h) * D;
        for (int64_t e = 0; e < D; e++) {
          double s = 0;
          for (int64_t j = 0; j < d->Tk; j++) s += p[j] * v[b * d->kv_bstride + j * d->kv_rstride + g * D + e];
          orow[e] = s;
        }
        if (!dout) continue;
        const float *gr = dout + b * d->q_bstride + i * d->q_rstride + h * D;
        double delta = 0;
        for (int64_t e = 0; e < D; e++) delta += gr[e] * orow[e];
        for (int64_t j = 0; j < d->Tk; j++) {
          double s = 0;
          for (int64_t e = 0; e < D; e++) s += (double)gr[e] * v[b * d->kv_bstride + j * d->kv_rstride + g * D + e];
          dp[j] = p[j] * (s - delta);
        }
        double *dqr = dq + ((b * d->Tq + i) * d->Hq + h) * D;
        for (int64_t e = 0; e < D; e++) {
          double s = 0;
          for (int64_t j = 0; j < d->Tk; j++) s += dp[j] * k[b * d->kv_bstride + j * d->kv_rstride + g * D + e];
          dqr[e] = s * d->scale;
        }
        for (int64_t j = 0; j < d->Tk; j++)
          for (int64_t e = 0; e < D; e++) {
            dk[((b * d->Tk + j) * d->Hkv + g) * D + e] += dp[j] * qr[e] * d->scale;
            dv[((b * d->Tk + j) * d->Hkv + g) * D + e] += p[j] * gr[e];
          }
      }
  free(p);
  free(dp);
}

static double maxdiff(const float *a, const double *b, int64_t n) {
  double m = 0;
  for (int64_t i = 0; i < n; i++) m = fmax(m, fabs(a[i] - b[i]));
  return m;
}

static void fill(float *x, int64_t n, uint64_t stream) {
  pose_rng r;
  pose_rng_init(&r, 5, stream);
  for (int64_t i = 0; i < n; i++) x[i] = pose_rng_normal(&r);
}

static void attention_case(int64_t B, int64_t Tq, int64_t Tk, int64_t Hq, int64_t Hkv, int64_t D, int64_t window,
                           int64_t tq, int64_t tk, int backward) {
  pose_attn_dims d;
  pose_attn_dims_init(&d, B, Tq, Tk, Hq, Hkv, D, window);
  d.tile_q = tq;
  d.tile_k = tk;
  int64_t nq = B * Tq * Hq * D, nk = B * Tk * Hkv * D;
  float *q = malloc(4 * nq), *k = malloc(4 * nk), *v = malloc(4 * nk), *o = malloc(4 * nq), *g = malloc(4 * nq);
  float *lse = malloc(4 * B * Hq * Tq), *dq = malloc(4 * nq), *dk = malloc(4 * nk), *dv = malloc(4 * nk);
  double *ro = malloc(8 * nq), *rdq = malloc(8 * nq), *rdk = malloc(8 * nk), *rdv = malloc(8 * nk);
  fill(q, nq, 1); fill(k, nk, 2); fill(v, nk, 3); fill(g, nq, 4);
  for (int64_t i = 0; i < nq; i++) q[i] *= 2.0f; /* peakier softmax */
  CHECK(pose_attention_fwd(&d, q, k, v, o, lse) == 0);
  naive_attn(&d, q, k, v, backward ? g : NULL, ro, rdq, rdk, rdv);
  double e = maxdiff(o, ro, nq);
  if (e > 2e-5) fprintf(stderr, "attention fwd T=%lld/%lld tiles %lld/%lld window %lld: %g\n", (long long)Tq,
                        (long long)Tk, (long long)tq, (long long)tk, (long long)window, e);
  CHECK(e <= 2e-5);
  if (backward) {
    CHECK(pose_attention_bwd(&d, q, k, v, o, lse, g, dq, dk, dv) == 0);
    double e1 = maxdiff(dq, rdq, nq), e2 = maxdiff(dk, rdk, nk), e3 = maxdiff(dv, rdv, nk);
    if (e1 > 5e-5 || e2 > 5e-5 || e3 > 5e-5)
      fprintf(stderr, "attention bwd T=%lld tiles %lld/%lld window %lld: dq %g dk %g dv %g\n", (long long)Tq,
              (long long)tq, (long long)tk, (long long)window, e1, e2, e3);
    CHECK(e1 <= 5e-5 && e2 <= 5e-5 && e3 <= 5e-5);
  }
  free(q); free(k); free(v); free(o); free(g); free(lse); free(dq); free(dk); free(dv);
  free(ro); free(rdq); free(rdk); free(rdv);
}

static void test_attention(void) {
  /* T not a multiple of the tiles; GQA; windows shorter and longer than a tile; default tiles */
  attention_case(2, 23, 23, 4, 2, 8, 0, 5, 7, 1);
  attention_case(1, 23, 23, 4, 1, 8, 6, 5, 7, 1);
  attention_case(2, 37, 37, 2, 2, 4, 9, 8, 3, 1);
  attention_case(1, 130, 130, 2, 1, 16, 0, 0, 0, 1);
  attention_case(1, 130, 130, 2, 2, 16, 70, 0, 0, 1);
  attention_case(1, 1, 1, 1, 1, 4, 0, 0, 0, 1);
  /* cache-style: a few queries after a prefix of keys */
  attention_case(2, 3, 29, 4, 2, 8, 0, 2, 5, 0);
  attention_case(1, 4, 29, 2, 1, 8, 10, 0, 0, 0);
}

/* ---- rotary apply ----------------------------------------------------------------------------------------- */

static void test_rope_apply(void) {
  const int64_t N = 3, H = 2, D = 8, r = 6; /* partial: channels 6, 7 pass through */
  float cs[3 * 3], sn[3 * 3], x[3 * 2 * 8], y[3 * 2 * 8], z[3 * 2 * 8];
  for (int i = 0; i < 9; i++) { cs[i] = cosf(0.3f * (float)i + 0.1f); sn[i] = sinf(0.3f * (float)i + 0.1f); }
  fill(x, N * H * D, 9);
  for (int inter = 0; inter < 2; inter++) {
    memcpy(y, x, sizeof x);
    pose_rope_apply(y, N, H * D, H, D, r, cs, sn, inter, 0);
    /* the rotation keeps each pair's norm, leaves pass-through channels alone */
    for (int64_t n = 0; n < N; n++)
      for (int64_t h = 0; h < H; h++) {
        const float *a = x + (n * H + h) * D, *b = y + (n * H + h) * D;
        for (int64_t j = 0; j < r / 2; j++) {
          int64_t i0 = inter ? 2 * j : j, i1 = inter ? 2 * j + 1 : j + r / 2;
          CHECK_NEAR(hypot(a[i0], a[i1]), hypot(b[i0], b[i1]), 1e-5);
          float c = cs[n * 3 + j], s = sn[n * 3 + j];
          /* three roundings: fl(fl(x c) + fl(-x' s)) exactly */
          float p0 = a[i0] * c, p1 = -a[i1] * s;
          CHECK(b[i0] == p0 + p1);
        }
        CHECK(b[6] == a[6] && b[7] == a[7]);
      }
    /* the transpose undoes it */
    memcpy(z, y, sizeof y);
    pose_rope_apply(z, N, H * D, H, D, r, cs, sn, inter, 1);
    double e = 0;
    for (int i = 0; i < N * H * D; i++) e = fmax(e, fabs(z[i] - x[i]));
    CHECK(e < 1e-6);
  }
  /* half-split on the permuted channels equals interleaved (spec/rope.md 5.3) */
  float hs[3 * 2 * 8], il[3 * 2 * 8];
  for (int64_t n = 0; n < N; n++)
    for (int64_t h = 0; h < H; h++)
      for (int64_t j = 0; j < r / 2; j++) {
        const float *a = x + (n * H + h) * D;
        hs[(n * H + h) * D + j] = a[2 * j];
        hs[(n * H + h) * D + j + r / 2] = a[2 * j + 1];
      }
  for (int64_t n = 0; n < N * H; n++) { hs[n * D + 6] = x[n * D + 6]; hs[n * D + 7] = x[n * D + 7]; }
  memcpy(il, x, sizeof x);
  pose_rope_apply(hs, N, H * D, H, D, r, cs, sn, 0, 0);
  pose_rope_apply(il, N, H * D, H, D, r, cs, sn, 1, 0);
  int same = 1;
  for (int64_t n = 0; n < N * H; n++)
    for (int64_t j = 0; j < r / 2; j++)
      same &= hs[n * D + j] == il[n * D + 2 * j] && hs[n * D + j + r / 2] == il[n * D + 2 * j + 1];
  CHECK(same);
}

/* ---- model consistency -------------------------------------------------------------------------------------- */

/* KV-cache decoding in steps of 4, 1, 3 and the rest: each step's last-token logits match the full forward */
static void decode_check(const char *name, pose_model *m, const float *logits) {
  const int64_t V = pose_model_vocab(m);
  pose_kv_cache *kv = NULL;
  CHECK_OK(pose_kv_cache_new(m, GB, GT, &kv));
  float *last = malloc(sizeof(float) * GB * V);
  int64_t steps[] = {4, 1, 3, GT - 8};
  int64_t t0 = 0;
  for (int s = 0; s < 4; s++) {
    int64_t n = steps[s];
    int64_t ids[GB * GT], pos[GB * GT];
    for (int64_t b = 0; b < GB; b++)
      for (int64_t t = 0; t < n; t++) { ids[b * n + t] = g_ids[b * GT + t0 + t]; pos[b * n + t] = g_pos[b * GT + t0 + t]; }
    CHECK_OK(pose_model_decode(m, kv, ids, pos, GB, n, last));
    t0 += n;
    double ed = 0;
    for (int64_t b = 0; b < GB; b++)
      for (int64_t v = 0; v < V; v++) ed = fmax(ed, fabs(last[b * V + v] - logits[(b * GT + t0 - 1) * V + v]));
    if (ed >= 1e-5) fprintf(stderr, "%s: decode step %d differs by %g\n", name, s, ed);
    CHECK(ed < 1e-5);
  }
  CHECK(pose_kv_cache_len(kv) == GT);
  free(last);
  pose_kv_cache_free(kv);
}

static const char *LLAMA_GQA =
    "{\"model_type\":\"llama\",\"vocab_size\":37,\"hidden_size\":16,\"num_hidden_layers\":2,"
    "\"num_attention_heads\":4,\"num_key_value_heads\":2,\"intermediate_size\":24,\"initializer_range\":0.3,"
    "\"attention_bias\":true,\"mlp_bias\":true,\"tie_word_embeddings\":true,\"rms_norm_eps\":1e-5}";

static void test_consistency(void) {
  pose_model *m = make(LLAMA_GQA, 3);
  CHECK(m != NULL);
  if (!m) return;
  const int64_t V = pose_model_vocab(m);
  make_inputs(V);
  float *logits = malloc(sizeof(float) * GB * GT * V), *nll = malloc(sizeof(float) * GB * (GT - 1));
  CHECK_OK(pose_model_forward(m, g_ids, g_pos, GB, GT, logits));
  CHECK_OK(pose_model_nll(m, g_ids, g_pos, NULL, GB, GT, nll));
  double e = 0;
  for (int64_t b = 0; b < GB; b++)
    for (int64_t t = 0; t + 1 < GT; t++) {
      const float *l = logits + (b * GT + t) * V;
      double mx = -INFINITY, s = 0;
      for (int64_t v = 0; v < V; v++) mx = fmax(mx, l[v]);
      for (int64_t v = 0; v < V; v++) s += exp(l[v] - mx);
      double ref = mx + log(s) - l[g_ids[b * GT + t + 1]];
      e = fmax(e, fabs(ref - nll[b * (GT - 1) + t]));
    }
  CHECK(e < 1e-5);
  /* batch rows are independent: row 1 alone gives the same logits */
  float *l1 = malloc(sizeof(float) * GT * V);
  CHECK_OK(pose_model_forward(m, g_ids + GT, g_pos + GT, 1, GT, l1));
  e = 0;
  for (int64_t i = 0; i < GT * V; i++) e = fmax(e, fabs(l1[i] - logits[GT * V + i]));
  CHECK(e < 1e-5);
  decode_check("llama gqa", m, logits);
  float *last = malloc(sizeof(float) * GB * V);
  pose_kv_cache *kv = NULL;
  CHECK_OK(pose_kv_cache_new(m, GB, GT, &kv));
  CHECK_OK(pose_model_decode(m, kv, g_ids, g_pos, GB, GT, last));
  CHECK_ERR(pose_model_decode(m, kv, g_ids, g_pos, GB, 1, last), POSE_EINVAL, "capacity");
  pose_kv_cache_reset(kv);
  CHECK(pose_kv_cache_len(kv) == 0);
  CHECK_ERR(pose_model_decode(m, kv, g_ids, g_pos, 1, 1, last), POSE_EINVAL, "batch");
  pose_kv_cache_free(kv);
  /* errors */
  int64_t bad_ids[2] = {0, 37}, bad_pos[2] = {0, -1}, ok_ids[2] = {1, 2}, ok_pos[2] = {0, 1};
  CHECK_ERR(pose_model_forward(m, bad_ids, ok_pos, 1, 2, logits), POSE_EINVAL, "outside the vocabulary");
  CHECK_ERR(pose_model_forward(m, ok_ids, bad_pos, 1, 2, logits), POSE_EINVAL, "negative");
  CHECK_ERR(pose_model_forward(m, ok_ids, ok_pos, 0, 2, logits), POSE_EINVAL, "positive");
  int64_t bad_tgt[2] = {0, 99};
  CHECK_ERR(pose_model_nll(m, ok_ids, ok_pos, bad_tgt, 1, 2, nll), POSE_EINVAL, "target 99");
  double loss;
  int64_t count;
  int64_t ign[2] = {0, POSE_IGNORE_INDEX};
  CHECK_OK(pose_model_backward(m, ok_ids, ok_pos, ign, 1, 2, 1.0, &loss, &count));
  CHECK(count == 0 && loss == 0);
  free(logits); free(nll); free(l1); free(last);
  pose_model_free(m);
}

static void test_init_and_params(void) {
  pose_model *a = make(LLAMA_GQA, 5), *b = make(LLAMA_GQA, 5);
  CHECK(a && b);
  if (!a || !b) return;
  int same = 1;
  for (size_t i = 0; i < pose_model_num_params(a); i++) {
    pose_param *pa = pose_model_param(a, i), *pb = pose_model_param(b, i);
    same &= strcmp(pa->name, pb->name) == 0 && memcmp(pa->w, pb->w, sizeof(float) * (size_t)pa->numel) == 0;
  }
  CHECK(same);
  /* tied: no lm_head tensor; names and decay flags as transformers */
  int has_lm = 0, ok_decay = 1;
  for (size_t i = 0; i < pose_model_num_params(a); i++) {
    pose_param *p = pose_model_param(a, i);
    if (!strcmp(p->name, "lm_head.weight")) has_lm = 1;
    int expect = strstr(p->name, "bias") == NULL && strstr(p->name, "norm") == NULL;
    ok_decay &= p->decay == expect;
  }
  CHECK(!has_lm && ok_decay);
  CHECK(!strcmp(pose_model_param(a, 0)->name, "model.embed_tokens.weight"));
  /* embedding counted once: 37*16 + per layer (q 16x16+16, k 8x16+8, v 8x16+8, o 16x16+16, 3 MLP mats 24x16 and
   * biases 24+24+16, 2 norms) + final norm */
  int64_t per_layer = (256 + 16) + (128 + 8) * 2 + (256 + 16) + 3 * 384 + 24 + 24 + 16 + 32;
  CHECK(pose_model_numel(a) == 37 * 16 + 2 * per_layer + 16);
  pose_model_free(a);
  pose_model_free(b);
  /* padding_idx: zero row at init, and no gradient */
  cJSON *c = cJSON_Parse("{\"model_type\":\"llama\",\"vocab_size\":20,\"hidden_size\":8,\"num_hidden_layers\":1,"
                         "\"num_attention_heads\":2,\"intermediate_size\":8,\"pad_token_id\":3}");
  pose_model *m = NULL;
  CHECK_OK(pose_model_init(c, 1, POSE_DEVICE_CPU, &m));
  cJSON_Delete(c);
  if (m) {
    pose_param *e = pose_model_param(m, 0);
    int zero = 1;
    for (int k = 0; k < 8; k++) zero &= e->w[3 * 8 + k] == 0.0f;
    CHECK(zero);
    int64_t ids[4] = {3, 5, 3, 7}, pos[4] = {0, 1, 2, 3};
    pose_model_zero_grad(m);
    CHECK_OK(pose_model_backward(m, ids, pos, NULL, 1, 4, 1.0, NULL, NULL));
    int zg = 1, nz = 0;
    for (int k = 0; k < 8; k++) { zg &= e->g[3 * 8 + k] == 0.0f; nz |= e->g[5 * 8 + k] != 0.0f; }
    CHECK(zg && nz);
    pose_model_free(m);
  }
}

static void test_config_errors(void) {
  struct { const char *json; pose_status st; const char *needle; } cases[] = {
    {"{\"model_type\":\"bert\",\"vocab_size\":8}", POSE_EUNSUPPORTED, "model_type 'bert'"},
    {"{\"vocab_size\":8}", POSE_EINVAL, "model_type"},
    {"{\"model_type\":\"llama\",\"hidden_size\":8,\"num_hidden_layers\":1,\"num_attention_heads\":2,"
     "\"intermediate_size\":8}", POSE_EINVAL, "vocab_size"},
    {"{\"model_type\":\"llama\",\"vocab_size\":8,\"hidden_size\":10,\"num_hidden_layers\":1,\"num_attention_heads\":4,"
     "\"intermediate_size\":8}", POSE_EINVAL, "num_attention_heads (4) does not divide hidden_size (10)"},
    {"{\"model_type\":\"llama\",\"vocab_size\":8,\"hidden_size\":8,\"num_hidden_layers\":1,\"num_attention_heads\":4,"
     "\"num_key_value_heads\":3,\"intermediate_size\":8}", POSE_EINVAL, "num_key_value_heads (3)"},
    {"{\"model_type\":\"llama\",\"vocab_size\":8,\"hidden_size\":8,\"num_hidden_layers\":1,\"num_attention_heads\":2,"
     "\"intermediate_size\":8,\"hidden_act\":\"mish\"}", POSE_EUNSUPPORTED, "hidden_act 'mish'"},
    {"{\"model_type\":\"llama\",\"vocab_size\":8,\"hidden_size\":8,\"num_hidden_layers\":1.5,\"num_attention_heads\":2,"
     "\"intermediate_size\":8}", POSE_EINVAL, "num_hidden_layers must be an integer"},
    {"{\"model_type\":\"mistral\",\"vocab_size\":8,\"hidden_size\":8,\"num_hidden_layers\":1,\"num_attention_heads\":2,"
     "\"num_key_value_heads\":2,\"intermediate_size\":8,\"sliding_window\":-2}", POSE_EINVAL, "sliding_window"},
    {"{\"model_type\":\"baichuan\",\"vocab_size\":8,\"hidden_size\":8,\"num_hidden_layers\":1,\"num_attention_heads\":2,"
     "\"intermediate_size\":8,\"z_loss_weight\":0.1}", POSE_EUNSUPPORTED, "z_loss_weight"},
    {"{\"model_type\":\"llama\",\"vocab_size\":8,\"hidden_size\":8,\"num_hidden_layers\":1,\"num_attention_heads\":2,"
     "\"intermediate_size\":8,\"tie_word_embeddings\":\"yes\"}", POSE_EINVAL, "tie_word_embeddings"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    cJSON *c = cJSON_Parse(cases[i].json);
    pose_model *m = NULL;
    CHECK_ERR(pose_model_init(c, 0, POSE_DEVICE_CPU, &m), cases[i].st, cases[i].needle);
    CHECK(m == NULL);
    cJSON_Delete(c);
  }
  cJSON *c = cJSON_Parse(LLAMA_GQA);
  pose_model *m = NULL;
  if (pose_cuda_backend(NULL)) { /* a GPU machine: the LLaMA family runs there (tests/gpu/test_model.c) */
    CHECK_OK(pose_model_init(c, 0, (pose_device){POSE_CUDA, 0}, &m));
    pose_model_free(m);
  } else {
    CHECK_ERR(pose_model_init(c, 0, (pose_device){POSE_CUDA, 0}, &m), POSE_EUNSUPPORTED, "cpu");
  }
  cJSON_Delete(c);
}

int main(void) {
  test_rope_apply();
  test_attention();
  test_consistency();
  test_init_and_params();
  test_config_errors();
  /* every parameter kind of every family */
  grad_check("llama gqa+bias+tied", LLAMA_GQA);
  grad_check("llama linear rope, untied",
             "{\"model_type\":\"llama\",\"vocab_size\":29,\"hidden_size\":16,\"num_hidden_layers\":2,"
             "\"num_attention_heads\":2,\"head_dim\":6,\"intermediate_size\":20,\"initializer_range\":0.3,"
             "\"rope_scaling\":{\"rope_type\":\"linear\",\"factor\":2.0}}");
  grad_check("llama yarn (A != 1)",
             "{\"model_type\":\"llama\",\"vocab_size\":29,\"hidden_size\":16,\"num_hidden_layers\":1,"
             "\"num_attention_heads\":2,\"intermediate_size\":20,\"initializer_range\":0.3,"
             "\"max_position_embeddings\":256,\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":4.0,"
             "\"original_max_position_embeddings\":64}}");
  grad_check("mistral window 3",
             "{\"model_type\":\"mistral\",\"vocab_size\":31,\"hidden_size\":16,\"num_hidden_layers\":2,"
             "\"num_attention_heads\":4,\"num_key_value_heads\":1,\"intermediate_size\":24,"
             "\"initializer_range\":0.3,\"sliding_window\":3}");
  grad_check("qwen2",
             "{\"model_type\":\"qwen2\",\"vocab_size\":31,\"hidden_size\":16,\"num_hidden_layers\":2,"
             "\"num_attention_heads\":4,\"num_key_value_heads\":2,\"intermediate_size\":24,"
             "\"initializer_range\":0.3,\"rope_theta\":1000000.0}");
  grad_check("gptj partial interleaved",
             "{\"model_type\":\"gptj\",\"vocab_size\":33,\"n_embd\":16,\"n_layer\":2,\"n_head\":2,"
             "\"rotary_dim\":4,\"n_inner\":20,\"n_positions\":128,\"initializer_range\":0.3}");
  grad_check("neox parallel",
             "{\"model_type\":\"gpt_neox\",\"vocab_size\":33,\"hidden_size\":16,\"num_hidden_layers\":2,"
             "\"num_attention_heads\":2,\"intermediate_size\":20,\"rotary_pct\":0.5,"
             "\"use_parallel_residual\":true,\"initializer_range\":0.3}");
  grad_check("neox sequential, gelu_new",
             "{\"model_type\":\"gpt_neox\",\"vocab_size\":33,\"hidden_size\":16,\"num_hidden_layers\":2,"
             "\"num_attention_heads\":2,\"intermediate_size\":20,\"rotary_pct\":0.25,\"hidden_act\":\"gelu_new\","
             "\"use_parallel_residual\":false,\"initializer_range\":0.3}");
  grad_check("baichuan W_pack + NormHead",
             "{\"model_type\":\"baichuan\",\"vocab_size\":31,\"hidden_size\":16,\"num_hidden_layers\":2,"
             "\"num_attention_heads\":2,\"intermediate_size\":24,\"initializer_range\":0.3}");
  return test_summary("test_grad");
}
