/* The AdamW update of one fp32 tensor, bit-compatible in intent with torch.optim.AdamW's single-tensor path on the
 * CPU (foreach=False, fused=False, amsgrad=False, maximize=False). Per element, in this order:
 *   1. w = w * f32(1 - lr*wd)                      param.mul_(1 - lr * weight_decay)   (only when wd != 0)
 *   2. m = fma(c, g - m, m), c = f32(1 - beta1)    exp_avg.lerp_(grad, 1 - beta1)
 *      (ATen's vectorised CPU lerp for |c| < 0.5; for c >= 0.5 it is fma(c - 1, g - m, g))
 *   3. v = v * f32(beta2);  v = v + (f32(1 - beta2) * g) * g
 *                                                  exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
 *   4. d = sqrt(v) / f32(sqrt(bc2)) + f32(eps)     denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
 *   5. w = w + (f32(-lr/bc1) * m) / d              param.addcdiv_(exp_avg, denom, value=-step_size)
 * where bc1 = 1 - beta1**step, bc2 = 1 - beta2**step and sqrt(bc2) = bc2**0.5 are computed in double (Python
 * floats) and every f32(...) is a double scalar rounded once to float, as ATen does with a Python scalar operand.
 * Each arithmetic operation above rounds to fp32 once; the kernel is compiled without FMA contraction, so the only
 * fused operation is the lerp's, exactly where ATen's vectorised kernel uses one. (ATen's scalar tail loop for the
 * last numel % vector-width elements may round the lerp twice, depending on how it was compiled; that is a 1-ulp
 * difference in m at most.) */
#ifndef POSE_ADAMW_H
#define POSE_ADAMW_H

#include <stdint.h>

typedef struct {
  float decay;     /* f32(1 - lr*wd); 1 when no weight decay applies */
  int apply_decay; /* 0: skip step 1, as torch does for weight_decay == 0 */
  float lerp_w;    /* f32(1 - beta1) */
  float beta2;     /* f32(beta2) */
  float one_minus_beta2;
  float bc2_sqrt;  /* f32((1 - beta2**step)**0.5) */
  float eps;
  float neg_step_size; /* f32(-(lr / (1 - beta1**step))) */
} pose_adamw_coefs;

/* The scalars of update number `step` (1 for the first update), computed as torch computes them in Python. */
void pose_adamw_coefs_init(pose_adamw_coefs *c, double lr, double beta1, double beta2, double eps,
                           double weight_decay, int64_t step);
/* One update of n elements: w, m (exp_avg), v (exp_avg_sq) in place, from gradient g. */
void pose_adamw_update(float *w, const float *g, float *m, float *v, int64_t n, const pose_adamw_coefs *c);
/* The same on elements [lo, hi) only, single-threaded (for callers that split the work themselves). */
void pose_adamw_update_range(float *w, const float *g, float *m, float *v, int64_t lo, int64_t hi,
                             const pose_adamw_coefs *c);

#endif
