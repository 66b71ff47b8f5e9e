/* Global-norm gradient clipping as torch.nn.utils.clip_grad_norm_ (norm_type 2), which the transformers Trainer
 * calls when max_grad_norm > 0. */
#ifndef POSE_GRAD_CLIP_H
#define POSE_GRAD_CLIP_H

#include <stddef.h>

#include "dtype.h" /* model.h uses pose_dtype without including it */
#include "model.h"

/* ||all gradients||_2 structured as torch computes it: each tensor's norm rounded to float, then the norm of those
 * norms rounded to float. Squares are summed in double over fixed 16384-element blocks in a fixed order, so the
 * result has the same bits for any thread count (torch's own float32 reductions may differ by an ulp).
 * Non-finite when any gradient element is. */
float pose_grad_global_norm(pose_param *const *ps, size_t n);
/* torch's coefficient: clip_coef = max_norm / (total_norm + 1e-6) in float32, which Tensor.__rtruediv__ evaluates
 * as reciprocal(total_norm + 1e-6) * max_norm; clamped to at most 1. */
float pose_grad_clip_coef(float total_norm, double max_norm);
/* g *= coef for every gradient (torch multiplies even when the clamped coefficient is 1; that is exact). */
void pose_grad_scale(pose_param *const *ps, size_t n, float coef);
/* Index of the first parameter whose gradient holds a NaN or Inf, or n when all are finite. */
size_t pose_grad_first_nonfinite(pose_param *const *ps, size_t n);

#endif
