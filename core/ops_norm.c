#include "ops_common.h"
#include "ops_norm.h"

#include <math.h>

#include "ops_linear.h"

void pose_norm_fwd(int rms, const float *x, const float *w, const float *b, float eps, int64_t N, int64_t C, float *y,
                   float *mean, float *rstd) {
#pragma omp parallel for schedule(static) if (N * C > POSE_PAR_MIN)
  for (int64_t n = 0; n < N; n++) {
    const float *xr = x + n * C;
    float *yr = y + n * C;
    /* row statistics in double, rounded once: closer to the exact value than torch's fp32 reduction, which is
     * what both approximate */
    double mu = 0;
    if (!rms) {
      for (int64_t c = 0; c < C; c++) mu += xr[c];
      mu /= (double)C;
    }
    double ss = 0;
    for (int64_t c = 0; c < C; c++) {
      double d = xr[c] - mu;
      ss += d * d;
    }
    float r = (float)(1.0 / sqrt(ss / (double)C + (double)eps));
    float m = (float)mu;
    if (mean) mean[n] = m;
    rstd[n] = r;
    if (rms)
      for (int64_t c = 0; c < C; c++) yr[c] = w[c] * (xr[c] * r);
    else
      for (int64_t c = 0; c < C; c++) yr[c] = (xr[c] - m) * r * w[c] + b[c];
  }
}

#define COLBLK 64

void pose_norm_bwd(int rms, const float *x, const float *w, const float *mean, const float *rstd, const float *dy,
                   int64_t N, int64_t C, float *dx, int accumulate_dx, float *dw, float *db) {
  if (dx) {
#pragma omp parallel for schedule(static) if (N * C > POSE_PAR_MIN)
    for (int64_t n = 0; n < N; n++) {
      const float *xr = x + n * C, *g = dy + n * C;
      float *o = dx + n * C;
      float m = rms ? 0.0f : mean[n], r = rstd[n];
      /* dxhat = dy * w;  RMS: dx = r (dxhat - xhat mean(dxhat xhat));  LN: also subtract mean(dxhat) */
      double s1 = 0, s2 = 0;
      for (int64_t c = 0; c < C; c++) {
        double dh = (double)g[c] * w[c], xh = (double)(xr[c] - m) * r;
        s1 += dh;
        s2 += dh * xh;
      }
      float a1 = rms ? 0.0f : (float)(s1 / (double)C), a2 = (float)(s2 / (double)C);
      for (int64_t c = 0; c < C; c++) {
        float xh = (xr[c] - m) * r;
        float v = r * (g[c] * w[c] - a1 - xh * a2);
        o[c] = accumulate_dx ? o[c] + v : v;
      }
    }
  }
  if (dw) {
    int64_t nblk = (C + COLBLK - 1) / COLBLK;
#pragma omp parallel for schedule(static) if (N * C > POSE_PAR_MIN)
    for (int64_t blk = 0; blk < nblk; blk++) {
      int64_t c0 = blk * COLBLK, c1 = c0 + COLBLK < C ? c0 + COLBLK : C;
      float acc[COLBLK] = {0};
      for (int64_t n = 0; n < N; n++) {
        const float *xr = x + n * C, *g = dy + n * C;
        float m = rms ? 0.0f : mean[n], r = rstd[n];
        for (int64_t c = c0; c < c1; c++) acc[c - c0] += g[c] * ((xr[c] - m) * r);
      }
      for (int64_t c = c0; c < c1; c++) dw[c] += acc[c - c0];
    }
  }
  if (db) pose_colsum_add(dy, N, C, db);
}
