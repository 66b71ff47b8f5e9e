/* Applies rotary cos/sin (from pose_rope_cos_sin) to query or key heads: half-split pairs (j, j + r/2) or
 * interleaved pairs (2j, 2j+1) over the first r channels of each head; channels >= r pass through. In fp32 each
 * output is y = fl(fl(x*c) + fl(rot(x)*s)), three separately rounded operations as torch evaluates
 * `x*cos + rotate(x)*sin` (spec/rope.md section 5). The backward is the transpose rotation (s -> -s). */
#ifndef POSE_OPS_ROPE_APPLY_H
#define POSE_OPS_ROPE_APPLY_H

#include <stdint.h>

/* x: [N][H][D] with row stride `stride` floats between tokens (>= H*D); cos/sin: [N][r/2]. In place. */
void pose_rope_apply(float *x, int64_t N, int64_t stride, int64_t H, int64_t D, int64_t r, const float *cos,
                     const float *sin, int interleaved, int transpose);

#endif
