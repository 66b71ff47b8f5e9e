/* Gradient norm and clipping over a model's parameter list. */
#include "grad_clip.h"

#include <math.h>
#include <stdlib.h>

#define BLOCK 16384

/* Sum of squares of x[0..n) in double: one partial per fixed block, then the partials in order, so that the
 * parallel split does not change the result. */
static double sumsq(const float *x, int64_t n) {
  int64_t nb = (n + BLOCK - 1) / BLOCK;
  if (nb <= 1) {
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += (double)x[i] * x[i];
    return s;
  }
  double *part = malloc((size_t)nb * sizeof *part);
  if (!part) { /* fall back to the same order, serially */
    double s = 0;
    for (int64_t b = 0; b < nb; b++) {
      double p = 0;
      for (int64_t i = b * BLOCK; i < n && i < (b + 1) * BLOCK; i++) p += (double)x[i] * x[i];
      s += p;
    }
    return s;
  }
#pragma omp parallel for schedule(static) if (nb > 4)
  for (int64_t b = 0; b < nb; b++) {
    double p = 0;
    for (int64_t i = b * BLOCK; i < n && i < (b + 1) * BLOCK; i++) p += (double)x[i] * x[i];
    part[b] = p;
  }
  double s = 0;
  for (int64_t b = 0; b < nb; b++) s += part[b];
  free(part);
  return s;
}

float pose_grad_global_norm(pose_param *const *ps, size_t n) {
  /* torch: total_norm = vector_norm(stack([vector_norm(g) for g in grads])), each a float32 result */
  double s = 0;
  for (size_t i = 0; i < n; i++) {
    float ni = (float)sqrt(sumsq(ps[i]->g, ps[i]->numel));
    s += (double)ni * ni;
  }
  return (float)sqrt(s);
}

float pose_grad_clip_coef(float total_norm, double max_norm) {
  float denom = total_norm + (float)1e-6;
  float coef = (1.0f / denom) * (float)max_norm;
  return (coef < 1.0f || isnan(coef)) ? coef : 1.0f; /* torch.clamp(clip_coef, max=1.0): NaN stays NaN */
}

void pose_grad_scale(pose_param *const *ps, size_t n, float coef) {
  for (size_t i = 0; i < n; i++) {
    float *g = ps[i]->g;
    int64_t k = ps[i]->numel;
#pragma omp parallel for schedule(static) if (k > 65536)
    for (int64_t j = 0; j < k; j++) g[j] = g[j] * coef;
  }
}

size_t pose_grad_first_nonfinite(pose_param *const *ps, size_t n) {
  for (size_t i = 0; i < n; i++) {
    const float *g = ps[i]->g;
    for (int64_t j = 0; j < ps[i]->numel; j++)
      if (!isfinite(g[j])) return i;
  }
  return n;
}
