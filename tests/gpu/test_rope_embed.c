/* GPU: rotary embedding at arbitrary (PoSE-like, up to 10^6) positions in both layouts, partial rotary, attention
 * factor, strided (fused QKV) rows, inverse rotation; embedding lookup and its backward (sorted/deterministic and
 * atomic), against double references. */
#include "gputest.h"

static void rope_case(pose_dtype dt, int interleaved, int64_t D, int64_t r, float A, int64_t maxpos) {
  const int64_t N = 74, H = 3, stride = H * D + 16;
  size_t nx = (size_t)(N * stride);
  float *x = hrandn(nx, 1.0f);
  int64_t *pos = malloc((size_t)N * sizeof *pos);
  pose_rng rg;
  pose_rng_init(&rg, 99, (uint64_t)(D + r + maxpos));
  for (int64_t n = 0; n < N; n++) pos[n] = n < 4 ? n : (int64_t)pose_rng_below(&rg, (uint64_t)maxpos);
  float *inv = malloc((size_t)(r / 2) * 4);
  for (int64_t j = 0; j < r / 2; j++) inv[j] = (float)(1.0 / pow(10000.0, (double)(2 * j) / (double)r));
  void *dx = gup_as(x, nx, dt);
  int64_t *dpos = gup(pos, (size_t)N * 8);
  float *dinv = gup(inv, (size_t)(r / 2) * 4);
  CHECK_OK(pose_cuda_rope_apply(dx, dt, N, stride, H, D, r, dpos, dinv, A, interleaved, 0, NULL));
  float *y = gget_f32(dx, nx, dt);
  double *ref = malloc(nx * sizeof *ref);
  size_t untouched_bad = 0;
  for (int64_t n = 0; n < N; n++) {
    for (int64_t i = H * D; i < stride; i++) /* padding between tokens */
      untouched_bad += memcmp(&y[n * stride + i], &x[n * stride + i], 4) != 0;
    for (int64_t h = 0; h < H; h++) {
      const float *xh = x + n * stride + h * D;
      double *rh = ref + n * stride + h * D;
      for (int64_t c = r; c < D; c++) {
        rh[c] = xh[c];
        untouched_bad += memcmp(&y[n * stride + h * D + c], &xh[c], 4) != 0; /* pass-through is exact */
      }
      for (int64_t j = 0; j < r / 2; j++) {
        float phi = inv[j] * (float)pos[n];
        float c = (float)cos((double)phi), s = (float)sin((double)phi);
        c = c * A;
        s = s * A;
        int64_t i0 = interleaved ? 2 * j : j, i1 = interleaved ? 2 * j + 1 : j + r / 2;
        rh[i0] = (double)xh[i0] * c - (double)xh[i1] * s;
        rh[i1] = (double)xh[i1] * c + (double)xh[i0] * s;
      }
    }
  }
  /* compare the rotated channels (and pass-through) of every head */
  size_t nh = (size_t)(N * H * D);
  float *o = malloc(nh * 4);
  double *rr = malloc(nh * sizeof *rr);
  for (int64_t n = 0; n < N; n++)
    for (int64_t k = 0; k < H * D; k++) {
      o[n * H * D + k] = y[n * stride + k];
      rr[n * H * D + k] = ref[n * stride + k];
    }
  CHECK_REL(o, rr, nh, tol_for(dt, 1e-6, 1e-2), "rope %s %s D=%lld r=%lld A=%g pos<%lld", dtn(dt),
            interleaved ? "interleaved" : "half-split", (long long)D, (long long)r, A, (long long)maxpos);
  CHECK(untouched_bad == 0);
  /* the transpose undoes it (up to rounding; A^2 scales the result when A != 1) */
  CHECK_OK(pose_cuda_rope_apply(dx, dt, N, stride, H, D, r, dpos, dinv, A, interleaved, 1, NULL));
  float *back = gget_f32(dx, nx, dt);
  for (int64_t n = 0; n < N; n++)
    for (int64_t h = 0; h < H; h++)
      for (int64_t c = 0; c < D; c++) {
        double v = x[n * stride + h * D + c];
        rr[(n * H + h) * D + c] = c < r ? v * A * A : v;
        o[(n * H + h) * D + c] = back[n * stride + h * D + c];
      }
  CHECK_REL(o, rr, nh, tol_for(dt, 1e-6, 2e-2), "rope %s %s inverse", dtn(dt), interleaved ? "interleaved" : "half-split");
  free(x); free(pos); free(inv); free(y); free(ref); free(o); free(rr); free(back);
}

static void test_rope(void) {
  for (int t = 0; t < 2; t++) {
    pose_dtype dt = t ? POSE_BF16 : POSE_F32;
    for (int il = 0; il < 2; il++) {
      rope_case(dt, il, 128, 128, 1.0f, 4096);
      rope_case(dt, il, 96, 64, 1.0f, 1000000); /* partial rotary, positions far past any training length */
      rope_case(dt, il, 80, 24, 1.2f, 300000);  /* r not a power of two, attention factor (YaRN-like) */
    }
  }
  void *d = galloc(1024);
  CHECK_ERR(pose_cuda_rope_apply(d, POSE_F32, 1, 8, 1, 8, 3, d, d, 1.0f, 0, 0, NULL), POSE_EINVAL, "even");
  CHECK_ERR(pose_cuda_rope_apply(d, POSE_F32, 1, 8, 1, 8, 10, d, d, 1.0f, 0, 0, NULL), POSE_EINVAL, "at most");
  CHECK_ERR(pose_cuda_rope_apply(d, POSE_F32, 1, 8, 2, 8, 8, d, d, 1.0f, 0, 0, NULL), POSE_EINVAL, "stride");
}

static void embed_case(pose_dtype dt, int deterministic) {
  const int64_t V = 1000, D = 72, N = 517, skip = 7;
  float *E = hrandn((size_t)(V * D), 1.0f), *dy = hrandn((size_t)(N * D), 1.0f), *dE0 = hrandn((size_t)(V * D), 1.0f);
  int64_t *ids = malloc((size_t)N * sizeof *ids);
  pose_rng rg;
  pose_rng_init(&rg, 5, (uint64_t)deterministic);
  for (int64_t n = 0; n < N; n++) ids[n] = n % 3 == 0 ? (int64_t)pose_rng_below(&rg, 50) /* repeats */
                                                      : (int64_t)pose_rng_below(&rg, (uint64_t)V);
  ids[10] = skip;
  ids[11] = V - 1;
  void *dE = gup_as(E, (size_t)(V * D), dt), *ddy = gup_as(dy, (size_t)(N * D), dt);
  int64_t *dids = gup(ids, (size_t)N * 8);
  void *dyo = galloc((size_t)(N * D) * pose_dtype_size(dt));
  CHECK_OK(pose_cuda_embed_fwd(dE, dt, dids, N, D, V, dyo, NULL));
  float *y = gget_f32(dyo, (size_t)(N * D), dt);
  size_t bad = 0;
  for (int64_t n = 0; n < N; n++)
    for (int64_t c = 0; c < D; c++) bad += memcmp(&y[n * D + c], &E[ids[n] * D + c], 4) != 0;
  printf("  embed fwd %s: %zu elements differ (exact copy expected)\n", dtn(dt), bad);
  CHECK(bad == 0);

  float *dgrad = gup(dE0, (size_t)(V * D) * 4);
  CHECK_OK(pose_cuda_embed_bwd(dids, ddy, dt, N, D, V, skip, dgrad, deterministic, NULL));
  float *g = gget_f32(dgrad, (size_t)(V * D), POSE_F32);
  double *ref = malloc((size_t)(V * D) * sizeof *ref);
  for (int64_t i = 0; i < V * D; i++) ref[i] = dE0[i];
  for (int64_t n = 0; n < N; n++)
    if (ids[n] != skip)
      for (int64_t c = 0; c < D; c++) ref[ids[n] * D + c] += dy[n * D + c];
  CHECK_REL(g, ref, (size_t)(V * D), 1e-6, "embed bwd %s %s (skip id)", dtn(dt), deterministic ? "sorted" : "atomic");
  CHECK(memcmp(&g[skip * D], &dE0[skip * D], (size_t)D * 4) == 0); /* the skipped id got nothing */
  if (deterministic) { /* bitwise repeatable */
    gput(dgrad, dE0, (size_t)(V * D) * 4);
    CHECK_OK(pose_cuda_embed_bwd(dids, ddy, dt, N, D, V, skip, dgrad, 1, NULL));
    float *g2 = gget_f32(dgrad, (size_t)(V * D), POSE_F32);
    CHECK(memcmp(g, g2, (size_t)(V * D) * 4) == 0);
    free(g2);
  }
  /* an id out of range poisons its row instead of reading past E */
  ids[0] = V;
  gput(dids, ids, 8);
  CHECK_OK(pose_cuda_embed_fwd(dE, dt, dids, N, D, V, dyo, NULL));
  float *y2 = gget_f32(dyo, (size_t)D, dt);
  CHECK(isnan(y2[0]) && isnan(y2[D - 1]));
  free(E); free(dy); free(dE0); free(ids); free(y); free(g); free(ref); free(y2);
}

static void test_embed(void) {
  for (int t = 0; t < 2; t++)
    for (int det = 0; det < 2; det++) embed_case(t ? POSE_BF16 : POSE_F32, det);
  void *d = galloc(64);
  CHECK_ERR(pose_cuda_embed_fwd(d, POSE_F32, d, 1, 0, 4, d, NULL), POSE_EINVAL, "bad sizes");
  CHECK_ERR(pose_cuda_embed_bwd(d, d, POSE_I32, 1, 4, 4, -1, d, 1, NULL), POSE_EUNSUPPORTED, "i32");
}

int main(void) {
  gpu_require("gpu_test_rope_embed");
  test_rope();
  test_embed();
  gfree_all();
  return test_summary("gpu_test_rope_embed");
}
