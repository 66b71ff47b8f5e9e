#include "ops_xent.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "ops_linear.h"

/* rows per chunk: about 4M logits (16 MB) at a time */
static int64_t chunk_rows(int64_t V) {
  int64_t r = ((int64_t)1 << 22) / (V > 0 ? V : 1);
  if (r < 1) r = 1;
  if (r > 512) r = 512;
  return r;
}

static pose_status check_targets(const int64_t *tgt, int64_t N, int64_t V, int64_t *count) {
  int64_t c = 0;
  for (int64_t n = 0; n < N; n++) {
    if (tgt[n] == POSE_IGNORE_INDEX) continue;
    if (tgt[n] < 0 || tgt[n] >= V)
      return pose_error(POSE_EINVAL, "target %lld at row %lld is outside the vocabulary [0, %lld) (and not -100)",
                        (long long)tgt[n], (long long)n, (long long)V);
    c++;
  }
  *count = c;
  return POSE_OK;
}

/* One chunk: gathers the scored rows idx[0..R) of h into hc, computes their logits into L [R,V] and each row's
 * log-sum-exp. */
static void chunk_logits(const pose_xent_head *hd, const float *h, const int64_t *idx, int64_t R, float *hc, float *L,
                         double *lse) {
  const int64_t D = hd->D, V = hd->V;
  for (int64_t r = 0; r < R; r++) memcpy(hc + r * D, h + idx[r] * D, sizeof(float) * (size_t)D);
  pose_linear_fwd(hc, hd->W, hd->bias, L, R, D, V);
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < R; r++) {
    const float *Lr = L + r * V;
    float mx = -INFINITY;
    for (int64_t v = 0; v < V; v++) mx = Lr[v] > mx ? Lr[v] : mx;
    double s = 0;
    for (int64_t v = 0; v < V; v++) s += exp((double)Lr[v] - mx);
    lse[r] = mx + log(s);
  }
}

static pose_status run(const pose_xent_head *hd, const float *h, const int64_t *tgt, int64_t N, float *nll,
                       double *sum_out, int64_t *count_out, int backward, float scale, float *dh, float *dW,
                       float *db) {
  const int64_t D = hd->D, V = hd->V;
  int64_t count = 0;
  POSE_TRY(check_targets(tgt, N, V, &count));
  if (count_out) *count_out = count;
  if (nll) memset(nll, 0, sizeof(float) * (size_t)N);
  if (dh) memset(dh, 0, sizeof(float) * (size_t)(N * D));
  double total = 0;
  if (count == 0) { *sum_out = 0; return POSE_OK; }
  const int64_t R = chunk_rows(V);
  int64_t *idx = malloc(sizeof(int64_t) * (size_t)count);
  float *hc = malloc(sizeof(float) * (size_t)(R * D * (backward ? 2 : 1)));
  float *L = malloc(sizeof(float) * (size_t)(R * V));
  double *lse = malloc(sizeof(double) * (size_t)R);
  if (!idx || !hc || !L || !lse) {
    free(idx); free(hc); free(L); free(lse);
    return pose_error(POSE_ENOMEM, "cross-entropy: out of memory");
  }
  float *dhc = backward ? hc + R * D : NULL;
  int64_t c = 0;
  for (int64_t n = 0; n < N; n++) if (tgt[n] != POSE_IGNORE_INDEX) idx[c++] = n;
  for (int64_t s0 = 0; s0 < count; s0 += R) {
    int64_t nr = count - s0 < R ? count - s0 : R;
    const int64_t *ix = idx + s0;
    chunk_logits(hd, h, ix, nr, hc, L, lse);
    for (int64_t r = 0; r < nr; r++) {
      double l = lse[r] - (double)L[r * V + tgt[ix[r]]];
      total += l;
      if (nll) nll[ix[r]] = (float)l;
    }
    if (!backward) continue;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < nr; r++) {
      float *Lr = L + r * V;
      for (int64_t v = 0; v < V; v++) Lr[v] = (float)exp((double)Lr[v] - lse[r]) * scale;
      Lr[tgt[ix[r]]] -= scale;
    }
    pose_linear_bwd(hc, hd->W, L, dhc, 0, dW, db, nr, D, V);
    for (int64_t r = 0; r < nr; r++) memcpy(dh + ix[r] * D, dhc + r * D, sizeof(float) * (size_t)D);
  }
  free(idx); free(hc); free(L); free(lse);
  *sum_out = total;
  return POSE_OK;
}

pose_status pose_xent_nll(const pose_xent_head *hd, const float *h, const int64_t *tgt, int64_t N, float *nll,
                          double *sum, int64_t *count) {
  return run(hd, h, tgt, N, nll, sum, count, 0, 0.0f, NULL, NULL, NULL);
}

pose_status pose_xent_bwd(const pose_xent_head *hd, const float *h, const int64_t *tgt, int64_t N, float scale,
                          float *dh, float *dW, float *db, double *sum) {
  return run(hd, h, tgt, N, NULL, sum, NULL, 1, scale, dh, dW, db);
}
