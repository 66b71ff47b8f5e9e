/* AdamW element kernel: see adamw.h for the exact operation order and why. */

/* No FMA contraction: torch rounds each of mul, add, div separately (except the lerp). GCC honours the optimize
 * pragma for this, clang the STDC one; with the default x86-64-v2 target there is no FMA instruction anyway, but a
 * -march=native build must not change the numbers. */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include "adamw.h"

#include <math.h>
#include <string.h>

#include "dtype.h"
#include "rng.h"

void pose_adamw_coefs_init(pose_adamw_coefs *c, double lr, double beta1, double beta2, double eps,
                           double weight_decay, int64_t step) {
  double s = (double)step; /* torch reads the step off a float tensor: a Python float */
  double bias_correction1 = 1 - pow(beta1, s);
  double bias_correction2 = 1 - pow(beta2, s);
  double step_size = lr / bias_correction1;
  double bias_correction2_sqrt = pow(bias_correction2, 0.5); /* Python's `x ** 0.5` is C pow */
  c->apply_decay = weight_decay != 0;
  c->decay = (float)(1 - lr * weight_decay);
  c->lerp_w = (float)(1 - beta1);
  c->beta2 = (float)beta2;
  c->one_minus_beta2 = (float)(1 - beta2);
  c->bc2_sqrt = (float)bias_correction2_sqrt;
  c->eps = (float)eps;
  c->neg_step_size = (float)(-step_size);
}

/* ATen's lerp_vec: weight small -> start + weight*(end-start), else end + (weight-1)*(end-start), one fma each. */
static inline float lerp_f32(float start, float end, float weight) {
  if (fabsf(weight) < 0.5f) return fmaf(weight, end - start, start);
  return fmaf(weight - 1.0f, end - start, end);
}

/* Elements [lo, hi). Cloned for CPUs with and without FMA (picked once at load time): the lerp's fmaf is one
 * instruction where the hardware has it and glibc's exact software fma elsewhere; the results are identical. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
__attribute__((target_clones("fma", "default")))
#endif
void pose_adamw_update_range(float *w, const float *g, float *m, float *v, int64_t lo, int64_t hi,
                             const pose_adamw_coefs *c) {
  const pose_adamw_coefs k = *c;
  for (int64_t i = lo; i < hi; i++) {
    float wi = w[i], gi = g[i];
    if (k.apply_decay) wi = wi * k.decay;
    float mi = lerp_f32(m[i], gi, k.lerp_w);
    float vi = v[i] * k.beta2;
    float t = k.one_minus_beta2 * gi;
    t = t * gi;
    vi = vi + t;
    float d = sqrtf(vi);
    d = d / k.bc2_sqrt;
    d = d + k.eps;
    float u = k.neg_step_size * mi;
    u = u / d;
    w[i] = wi + u;
    m[i] = mi;
    v[i] = vi;
  }
}

void pose_adamw_update(float *w, const float *g, float *m, float *v, int64_t n, const pose_adamw_coefs *c) {
  const int64_t chunk = 16384; /* element-wise: any split gives the same bits */
  int64_t nchunks = (n + chunk - 1) / chunk;
#pragma omp parallel for schedule(static) if (nchunks > 4)
  for (int64_t b = 0; b < nchunks; b++) {
    int64_t lo = b * chunk, hi = lo + chunk < n ? lo + chunk : n;
    pose_adamw_update_range(w, g, m, v, lo, hi, c);
  }
}

/* One element with the operation order of pose_adamw_update_range (kept separate: that loop is cloned for FMA
 * targets, and the results are identical either way because the only fused operation is the explicit fmaf). */
static void adam_elem(const pose_adamw_coefs *k, float *w, float g, float *m, float *v) {
  float wi = *w;
  if (k->apply_decay) wi = wi * k->decay;
  float mi = lerp_f32(*m, g, k->lerp_w);
  float vi = *v * k->beta2;
  float t = k->one_minus_beta2 * g;
  t = t * g;
  vi = vi + t;
  float d = sqrtf(vi);
  d = d / k->bc2_sqrt;
  d = d + k->eps;
  float u = k->neg_step_size * mi;
  u = u / d;
  *w = wi + u;
  *m = mi;
  *v = vi;
}

uint16_t pose_sr_bf16(float x, uint32_t r16) {
  uint32_t u;
  memcpy(&u, &x, 4);
  if ((u & 0x7f800000u) == 0x7f800000u) return pose_f32_to_bf16(x);
  return (uint16_t)((u + (r16 & 0xffffu)) >> 16);
}

void pose_sr_bits(const uint32_t r[4], int64_t i, uint32_t *rw, uint32_t *rm, uint32_t *rv) {
  if (!(i & 1)) {
    *rw = r[0] & 0xffffu;
    *rm = r[0] >> 16;
    *rv = r[1] & 0xffffu;
  } else {
    *rw = r[1] >> 16;
    *rm = r[2] & 0xffffu;
    *rv = r[2] >> 16;
  }
}

void pose_adamw_bf16_sr_range(uint16_t *w, const float *g, uint16_t *m, uint16_t *v, int64_t lo, int64_t hi,
                              const pose_adamw_coefs *c, uint64_t seed, uint64_t stream) {
  uint32_t r[4];
  int64_t have = -1; /* pair whose block is in r */
  for (int64_t i = lo; i < hi; i++) {
    float wi = pose_bf16_to_f32(w[i]), mi = pose_bf16_to_f32(m[i]), vi = pose_bf16_to_f32(v[i]);
    adam_elem(c, &wi, g[i], &mi, &vi);
    if (have != i / 2) {
      pose_philox4x32(seed, stream, (uint64_t)(i / 2), r);
      have = i / 2;
    }
    uint32_t rw, rm, rv;
    pose_sr_bits(r, i, &rw, &rm, &rv);
    w[i] = pose_sr_bf16(wi, rw);
    m[i] = pose_sr_bf16(mi, rm);
    v[i] = pose_sr_bf16(vi, rv);
  }
}
