/* RMSNorm and LayerNorm over the last dimension, forward and backward, computed as transformers does in fp32:
 * RMSNorm y = w * (x * rsqrt(mean(x^2) + eps)); LayerNorm y = w * (x - mean) * rsqrt(var + eps) + b (biased
 * variance). The forward saves per-row statistics (mean, rstd) for the backward. */
#ifndef POSE_OPS_NORM_H
#define POSE_OPS_NORM_H

#include <stdint.h>

/* rms: 1 for RMSNorm (b and mean unused, may be NULL). mean/rstd: [N] outputs (mean may be NULL for RMSNorm). */
void pose_norm_fwd(int rms, const float *x, const float *w, const float *b, float eps, int64_t N, int64_t C, float *y,
                   float *mean, float *rstd);
/* dx (+)= d/dx; dw += sum_n dy * xhat; db += sum_n dy (NULL to skip). accumulate_dx: add to dx instead of writing. */
void pose_norm_bwd(int rms, const float *x, const float *w, const float *mean, const float *rstd, const float *dy,
                   int64_t N, int64_t C, float *dx, int accumulate_dx, float *dw, float *db);

#endif
