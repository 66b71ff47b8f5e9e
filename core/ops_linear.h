/* Dense layers on the CPU: every matmul is an OpenBLAS sgemm; the reductions over rows (bias and embedding
 * gradients) run in a fixed order so that gradients do not depend on the thread count. */
#ifndef POSE_OPS_LINEAR_H
#define POSE_OPS_LINEAR_H

#include <stdint.h>

/* y[N,out] = x[N,in] W[out,in]^T (+ b[out]); W is a Hugging Face nn.Linear weight. */
void pose_linear_fwd(const float *x, const float *W, const float *b, float *y, int64_t N, int64_t in, int64_t out);
/* Backward of pose_linear_fwd. dx: [N,in], overwritten (accumulate_dx = 0) or added to (1); may be NULL.
 * dW += dy^T x (may be NULL); db += column sums of dy (may be NULL). */
void pose_linear_bwd(const float *x, const float *W, const float *dy, float *dx, int accumulate_dx, float *dW,
                     float *db, int64_t N, int64_t in, int64_t out);
/* out[c] += sum_n a[n*C + c], summed over n in order. */
void pose_colsum_add(const float *a, int64_t N, int64_t C, float *out);
/* Embedding lookup y[n] = E[ids[n]] and its backward dE[ids[n]] += dy[n] (rows whose id == skip_id get no
 * gradient: nn.Embedding's padding_idx; -1 = none). */
void pose_embed_fwd(const float *E, const int64_t *ids, int64_t N, int64_t D, float *y);
void pose_embed_bwd(const int64_t *ids, const float *dy, int64_t N, int64_t D, int64_t skip_id, float *dE);

#endif
