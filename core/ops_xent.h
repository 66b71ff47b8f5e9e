/* Next-token cross-entropy through the LM head, chunked over rows so that the [rows, V] logits of a long sequence
 * are never held at once: per chunk, logits = h W^T (+ b), then log-sum-exp (accumulated in double) and, for the
 * backward, dlogits = (softmax - onehot) * scale, dh = dlogits W and dW += dlogits^T h. Rows whose target is
 * POSE_IGNORE_INDEX (-100) cost nothing. */
#ifndef POSE_OPS_XENT_H
#define POSE_OPS_XENT_H

#include <stdint.h>

#include "status.h"

typedef struct {
  const float *W;    /* [V, D] */
  const float *bias; /* [V] or NULL */
  int64_t V, D;
} pose_xent_head;

/* nll[n] = -log softmax(h[n] W^T + b)[tgt[n]] (0 for ignored rows); *sum and *count over scored rows. tgt values
 * must be -100 or in [0, V) (checked: POSE_EINVAL naming the row otherwise). */
pose_status pose_xent_nll(const pose_xent_head *hd, const float *h, const int64_t *tgt, int64_t N, float *nll,
                          double *sum, int64_t *count);
/* Backward of scale * sum_n nll[n]: dh [N,D] is overwritten (0 on ignored rows); dW [V,D] and db [V] (may be NULL)
 * are added to. Also returns the sum of nll over scored rows. */
pose_status pose_xent_bwd(const pose_xent_head *hd, const float *h, const int64_t *tgt, int64_t N, float scale,
                          float *dh, float *dW, float *db, double *sum);

#endif
