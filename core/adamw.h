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

/* The pure-bf16 policy's AdamW (the CPU reference of the GPU's pose_cuda_adamw_bf16, bit for bit): w, m, v are
 * bf16 bit patterns, g fp32 (already scaled by any clipping coefficient); each element is updated in fp32 with the
 * arithmetic above and w, m, v are rounded back to bf16 stochastically (pose_sr_bf16). The random bits, reproducible
 * from (seed, stream, element index) alone: one Philox4x32-10 block r = pose_philox4x32(seed, stream, j) per element
 * PAIR j = i / 2; element 2j rounds w, m, v with r[0] & 0xffff, r[0] >> 16, r[1] & 0xffff, element 2j+1 with
 * r[1] >> 16, r[2] & 0xffff, r[2] >> 16 (r[3] unused). The trainer uses seed = opts.sr_seed and
 * stream = step * n_params + parameter index. Elements [lo, hi). */
void pose_adamw_bf16_sr_range(uint16_t *w, const float *g, uint16_t *m, uint16_t *v, int64_t lo, int64_t hi,
                              const pose_adamw_coefs *c, uint64_t seed, uint64_t stream);
/* fp32 -> bf16 by adding r16 (< 2^16) to the bit pattern and truncating: rounds up with probability equal to the
 * discarded fraction when r16 is uniform. NaN and Inf round to nearest. */
uint16_t pose_sr_bf16(float x, uint32_t r16);
/* The three 16-bit random numbers (w, m, v) of element i from its pair's Philox block r (see above). */
void pose_sr_bits(const uint32_t r[4], int64_t i, uint32_t *rw, uint32_t *rm, uint32_t *rv);

#endif
