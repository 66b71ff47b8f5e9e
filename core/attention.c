#include "attention.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define DEF_TQ 64
#define DEF_TK 64

void pose_attn_dims_init(pose_attn_dims *d, int64_t B, int64_t Tq, int64_t Tk, int64_t Hq, int64_t Hkv, int64_t D,
                         int64_t window) {
  memset(d, 0, sizeof *d);
  d->B = B; d->Tq = Tq; d->Tk = Tk; d->q_off = Tk - Tq;
  d->Hq = Hq; d->Hkv = Hkv; d->D = D; d->window = window;
  d->scale = (float)(1.0 / sqrt((double)D));
  d->q_rstride = Hq * D; d->q_bstride = Tq * Hq * D;
  d->kv_rstride = Hkv * D; d->kv_bstride = Tk * Hkv * D;
}

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

/* visible key range [lo, hi] (inclusive) of the query with token index qi */
static inline void key_range(const pose_attn_dims *d, int64_t qi, int64_t *lo, int64_t *hi) {
  *hi = min64(qi, d->Tk - 1);
  *lo = d->window > 0 ? max64(0, qi - d->window + 1) : 0;
}

/* S[nq x nk] = scale * Q K^T for a query tile and a key tile */
static inline void scores(const pose_attn_dims *d, const float *Q, const float *K, int64_t nq, int64_t nk, float *S) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nq, (int)nk, (int)d->D, d->scale, Q, (int)d->q_rstride,
              K, (int)d->kv_rstride, 0.0f, S, (int)nk);
}

int pose_attention_fwd(const pose_attn_dims *d, const float *q, const float *k, const float *v, float *o,
                       float *lse) {
  const int64_t TQ = d->tile_q > 0 ? d->tile_q : DEF_TQ, TK = d->tile_k > 0 ? d->tile_k : DEF_TK, D = d->D;
  const int64_t nqt = (d->Tq + TQ - 1) / TQ, rep = d->Hq / d->Hkv;
  const int64_t ntask = d->B * d->Hq * nqt;
  int oom = 0;
#pragma omp parallel
  {
    float *S = malloc(sizeof(float) * (size_t)(TQ * TK + TQ * D + 2 * TQ));
    float *acc = S ? S + TQ * TK : NULL, *m = S ? acc + TQ * D : NULL, *l = S ? m + TQ : NULL;
    if (!S) {
#pragma omp atomic write
      oom = 1;
    }
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < ntask; task++) {
      if (!S) continue;
      int64_t qt = task % nqt, h = (task / nqt) % d->Hq, b = task / (nqt * d->Hq), g = h / rep;
      int64_t i0 = qt * TQ, nq = min64(TQ, d->Tq - i0);
      const float *Q = q + b * d->q_bstride + i0 * d->q_rstride + h * D;
      const float *Kb = k + b * d->kv_bstride + g * D, *Vb = v + b * d->kv_bstride + g * D;
      int64_t lo, hi, lo_last, hi_last;
      key_range(d, d->q_off + i0, &lo, &hi);
      key_range(d, d->q_off + i0 + nq - 1, &lo_last, &hi_last);
      for (int64_t r = 0; r < nq; r++) { m[r] = -INFINITY; l[r] = 0.0f; }
      memset(acc, 0, sizeof(float) * (size_t)(nq * D));
      for (int64_t j0 = lo; j0 <= hi_last; j0 += TK) {
        int64_t nk = min64(TK, hi_last + 1 - j0);
        scores(d, Q, Kb + j0 * d->kv_rstride, nq, nk, S);
        for (int64_t r = 0; r < nq; r++) {
          float *Sr = S + r * nk;
          int64_t rlo, rhi;
          key_range(d, d->q_off + i0 + r, &rlo, &rhi);
          int64_t c0 = max64(rlo - j0, 0), c1 = min64(rhi - j0, nk - 1); /* visible columns [c0, c1] */
          if (c0 > c1) { memset(Sr, 0, sizeof(float) * (size_t)nk); continue; }
          float mx = m[r];
          for (int64_t c = c0; c <= c1; c++) mx = Sr[c] > mx ? Sr[c] : mx;
          float alpha = m[r] == -INFINITY ? 0.0f : expf(m[r] - mx);
          float sum = 0.0f;
          for (int64_t c = 0; c < c0; c++) Sr[c] = 0.0f;
          for (int64_t c = c0; c <= c1; c++) { Sr[c] = expf(Sr[c] - mx); sum += Sr[c]; }
          for (int64_t c = c1 + 1; c < nk; c++) Sr[c] = 0.0f;
          if (alpha != 1.0f) {
            float *ar = acc + r * D;
            for (int64_t e = 0; e < D; e++) ar[e] *= alpha;
          }
          l[r] = l[r] * alpha + sum;
          m[r] = mx;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nq, (int)D, (int)nk, 1.0f, S, (int)nk,
                    Vb + j0 * d->kv_rstride, (int)d->kv_rstride, 1.0f, acc, (int)D);
      }
      (void)hi;
      for (int64_t r = 0; r < nq; r++) {
        float *orow = o + b * d->q_bstride + (i0 + r) * d->q_rstride + h * D;
        float inv = 1.0f / l[r];
        for (int64_t e = 0; e < D; e++) orow[e] = acc[r * D + e] * inv;
        if (lse) lse[(b * d->Hq + h) * d->Tq + i0 + r] = m[r] + logf(l[r]);
      }
    }
    free(S);
  }
  return oom ? -1 : 0;
}

/* P = exp(S - lse) on visible entries, 0 elsewhere; then, with dP = dO V^T already in dS, dS = P * (dP - delta) */
static inline void probs_and_ds(const pose_attn_dims *d, int64_t qi0, int64_t j0, int64_t nq, int64_t nk,
                                const float *lse_row, const float *delta_row, float *P, float *dS, int phase) {
  for (int64_t r = 0; r < nq; r++) {
    int64_t rlo, rhi;
    key_range(d, qi0 + r, &rlo, &rhi);
    int64_t c0 = max64(rlo - j0, 0), c1 = min64(rhi - j0, nk - 1);
    float *Pr = P + r * nk;
    if (phase == 0) {
      for (int64_t c = 0; c < nk; c++) Pr[c] = (c >= c0 && c <= c1) ? expf(Pr[c] - lse_row[r]) : 0.0f;
    } else {
      float *dr = dS + r * nk;
      for (int64_t c = 0; c < nk; c++) dr[c] = Pr[c] * (dr[c] - delta_row[r]);
    }
  }
}

int pose_attention_bwd(const pose_attn_dims *d, const float *q, const float *k, const float *v, const float *o,
                       const float *lse, const float *dout, float *dq, float *dk, float *dv) {
  const int64_t TQ = d->tile_q > 0 ? d->tile_q : DEF_TQ, TK = d->tile_k > 0 ? d->tile_k : DEF_TK, D = d->D;
  const int64_t rep = d->Hq / d->Hkv;
  /* delta[b][h][i] = sum_e dO * O (the softmax backward's row term) */
  float *delta = malloc(sizeof(float) * (size_t)(d->B * d->Hq * d->Tq + 1));
  if (!delta) return -1;
  int64_t nrows = d->B * d->Hq * d->Tq;
#pragma omp parallel for schedule(static)
  for (int64_t idx = 0; idx < nrows; idx++) {
    int64_t i = idx % d->Tq, h = (idx / d->Tq) % d->Hq, b = idx / (d->Tq * d->Hq);
    const float *orow = o + b * d->q_bstride + i * d->q_rstride + h * D;
    const float *grow = dout + b * d->q_bstride + i * d->q_rstride + h * D;
    double s = 0;
    for (int64_t e = 0; e < D; e++) s += (double)orow[e] * grow[e];
    delta[idx] = (float)s;
  }
  int oom = 0;
  /* pass 1: dK, dV. One task owns one key tile of one kv head, so nothing is shared between threads. */
  const int64_t nkt = (d->Tk + TK - 1) / TK, ntask1 = d->B * d->Hkv * nkt;
#pragma omp parallel
  {
    float *P = malloc(sizeof(float) * (size_t)(2 * TQ * TK + 2 * TK * D));
    float *dS = P ? P + TQ * TK : NULL, *dK = P ? dS + TQ * TK : NULL, *dV = P ? dK + TK * D : NULL;
    if (!P) {
#pragma omp atomic write
      oom = 1;
    }
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < ntask1; task++) {
      if (!P) continue;
      int64_t kt = task % nkt, g = (task / nkt) % d->Hkv, b = task / (nkt * d->Hkv);
      int64_t j0 = kt * TK, nk = min64(TK, d->Tk - j0);
      const float *K = k + b * d->kv_bstride + j0 * d->kv_rstride + g * D;
      const float *V = v + b * d->kv_bstride + j0 * d->kv_rstride + g * D;
      memset(dK, 0, sizeof(float) * (size_t)(2 * TK * D));
      /* queries that can see a key of this tile: token index in [j0, j0 + nk - 1 + window - 1] */
      int64_t qi_lo = j0, qi_hi = d->window > 0 ? j0 + nk - 1 + d->window - 1 : INT64_MAX;
      int64_t i_lo = max64(qi_lo - d->q_off, 0), i_hi = min64(qi_hi - d->q_off, d->Tq - 1);
      for (int64_t h = g * rep; h < (g + 1) * rep; h++) {
        const float *lse_h = lse + (b * d->Hq + h) * d->Tq, *delta_h = delta + (b * d->Hq + h) * d->Tq;
        for (int64_t i0 = i_lo; i0 <= i_hi; i0 += TQ) {
          int64_t nq = min64(TQ, i_hi + 1 - i0);
          const float *Q = q + b * d->q_bstride + i0 * d->q_rstride + h * D;
          const float *dO = dout + b * d->q_bstride + i0 * d->q_rstride + h * D;
          scores(d, Q, K, nq, nk, P);
          probs_and_ds(d, d->q_off + i0, j0, nq, nk, lse_h + i0, delta_h + i0, P, dS, 0);
          cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)nk, (int)D, (int)nq, 1.0f, P, (int)nk, dO,
                      (int)d->q_rstride, 1.0f, dV, (int)D);
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nq, (int)nk, (int)D, 1.0f, dO, (int)d->q_rstride,
                      V, (int)d->kv_rstride, 0.0f, dS, (int)nk);
          probs_and_ds(d, d->q_off + i0, j0, nq, nk, lse_h + i0, delta_h + i0, P, dS, 1);
          cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)nk, (int)D, (int)nq, d->scale, dS, (int)nk, Q,
                      (int)d->q_rstride, 1.0f, dK, (int)D);
        }
      }
      for (int64_t c = 0; c < nk; c++) {
        memcpy(dk + b * d->kv_bstride + (j0 + c) * d->kv_rstride + g * D, dK + c * D, sizeof(float) * (size_t)D);
        memcpy(dv + b * d->kv_bstride + (j0 + c) * d->kv_rstride + g * D, dV + c * D, sizeof(float) * (size_t)D);
      }
    }
    free(P);
  }
  /* pass 2: dQ, one task per query tile of one head */
  const int64_t nqt = (d->Tq + TQ - 1) / TQ, ntask2 = d->B * d->Hq * nqt;
#pragma omp parallel
  {
    float *P = malloc(sizeof(float) * (size_t)(2 * TQ * TK + TQ * D));
    float *dS = P ? P + TQ * TK : NULL, *dQ = P ? dS + TQ * TK : NULL;
    if (!P) {
#pragma omp atomic write
      oom = 1;
    }
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < ntask2; task++) {
      if (!P) continue;
      int64_t qt = task % nqt, h = (task / nqt) % d->Hq, b = task / (nqt * d->Hq), g = h / rep;
      int64_t i0 = qt * TQ, nq = min64(TQ, d->Tq - i0);
      const float *Q = q + b * d->q_bstride + i0 * d->q_rstride + h * D;
      const float *dO = dout + b * d->q_bstride + i0 * d->q_rstride + h * D;
      const float *Kb = k + b * d->kv_bstride + g * D, *Vb = v + b * d->kv_bstride + g * D;
      const float *lse_h = lse + (b * d->Hq + h) * d->Tq + i0, *delta_h = delta + (b * d->Hq + h) * d->Tq + i0;
      int64_t lo, hi, lo_last, hi_last;
      key_range(d, d->q_off + i0, &lo, &hi);
      key_range(d, d->q_off + i0 + nq - 1, &lo_last, &hi_last);
      memset(dQ, 0, sizeof(float) * (size_t)(nq * D));
      for (int64_t j0 = lo; j0 <= hi_last; j0 += TK) {
        int64_t nk = min64(TK, hi_last + 1 - j0);
        scores(d, Q, Kb + j0 * d->kv_rstride, nq, nk, P);
        probs_and_ds(d, d->q_off + i0, j0, nq, nk, lse_h, delta_h, P, dS, 0);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nq, (int)nk, (int)D, 1.0f, dO, (int)d->q_rstride,
                    Vb + j0 * d->kv_rstride, (int)d->kv_rstride, 0.0f, dS, (int)nk);
        probs_and_ds(d, d->q_off + i0, j0, nq, nk, lse_h, delta_h, P, dS, 1);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nq, (int)D, (int)nk, d->scale, dS, (int)nk,
                    Kb + j0 * d->kv_rstride, (int)d->kv_rstride, 1.0f, dQ, (int)D);
      }
      (void)hi;
      for (int64_t r = 0; r < nq; r++)
        memcpy(dq + b * d->q_bstride + (i0 + r) * d->q_rstride + h * D, dQ + r * D, sizeof(float) * (size_t)D);
    }
    free(P);
  }
  free(delta);
  return oom ? -1 : 0;
}
