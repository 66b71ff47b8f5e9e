#include "ops_common.h"
#include "ops_linear.h"

#include <cblas.h>
#include <string.h>

void pose_linear_fwd(const float *x, const float *W, const float *b, float *y, int64_t N, int64_t in, int64_t out) {
  if (N == 0) return;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, (int)out, (int)in, 1.0f, x, (int)in, W, (int)in, 0.0f,
              y, (int)out);
  if (b) {
#pragma omp parallel for schedule(static) if (N * out > POSE_PAR_MIN)
    for (int64_t n = 0; n < N; n++) {
      float *row = y + n * out;
      for (int64_t o = 0; o < out; o++) row[o] += b[o];
    }
  }
}

void pose_linear_bwd(const float *x, const float *W, const float *dy, float *dx, int accumulate_dx, float *dW,
                     float *db, int64_t N, int64_t in, int64_t out) {
  if (N == 0) return;
  if (dx)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)N, (int)in, (int)out, 1.0f, dy, (int)out, W, (int)in,
                accumulate_dx ? 1.0f : 0.0f, dx, (int)in);
  if (dW)
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)out, (int)in, (int)N, 1.0f, dy, (int)out, x, (int)in,
                1.0f, dW, (int)in);
  if (db) pose_colsum_add(dy, N, out, db);
}

/* Columns are split into blocks (one per task); each block sums its rows in order, so the result is the same for
 * any number of threads. */
#define COLBLK 64

void pose_colsum_add(const float *a, int64_t N, int64_t C, float *out) {
  int64_t nblk = (C + COLBLK - 1) / COLBLK;
#pragma omp parallel for schedule(static) if (N * C > POSE_PAR_MIN)
  for (int64_t blk = 0; blk < nblk; blk++) {
    int64_t c0 = blk * COLBLK, c1 = c0 + COLBLK < C ? c0 + COLBLK : C;
    float acc[COLBLK] = {0};
    for (int64_t n = 0; n < N; n++) {
      const float *row = a + n * C;
      for (int64_t c = c0; c < c1; c++) acc[c - c0] += row[c];
    }
    for (int64_t c = c0; c < c1; c++) out[c] += acc[c - c0];
  }
}

void pose_embed_fwd(const float *E, const int64_t *ids, int64_t N, int64_t D, float *y) {
#pragma omp parallel for schedule(static) if (N * D > POSE_PAR_MIN)
  for (int64_t n = 0; n < N; n++) memcpy(y + n * D, E + ids[n] * D, (size_t)D * sizeof(float));
}

void pose_embed_bwd(const int64_t *ids, const float *dy, int64_t N, int64_t D, int64_t skip_id, float *dE) {
  int64_t nblk = (D + COLBLK - 1) / COLBLK;
#pragma omp parallel for schedule(static) if (N * D > POSE_PAR_MIN)
  for (int64_t blk = 0; blk < nblk; blk++) {
    int64_t c0 = blk * COLBLK, c1 = c0 + COLBLK < D ? c0 + COLBLK : D;
    for (int64_t n = 0; n < N; n++) {
      if (ids[n] == skip_id) continue;
      float *dst = dE + ids[n] * D;
      const float *src = dy + n * D;
      for (int64_t c = c0; c < c1; c++) dst[c] += src[c];
    }
  }
}
