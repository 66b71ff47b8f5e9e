/* Counter-based random numbers (Philox4x32-10, Salmon et al. 2011). Every value is a pure function of
 * (seed, stream, counter), so the same seed gives the same samples whatever the batch size, thread count or
 * device: a sampler uses stream = example index, a tensor initialiser stream = tensor id, and so on. */
#ifndef POSE_RNG_H
#define POSE_RNG_H

#include <stdint.h>

/* One Philox block: 4 x 32 random bits for (key = seed, counter = (stream, ctr)). */
void pose_philox4x32(uint64_t seed, uint64_t stream, uint64_t ctr, uint32_t out[4]);

/* A sequential reader over one (seed, stream): cheap to create on the stack, no allocation. */
typedef struct {
  uint64_t seed, stream, ctr;
  uint32_t buf[4];
  int used; /* words of buf consumed; 4 = empty */
} pose_rng;

void pose_rng_init(pose_rng *r, uint64_t seed, uint64_t stream);
uint32_t pose_rng_u32(pose_rng *r);
uint64_t pose_rng_u64(pose_rng *r);
/* Uniform integer in [0, n), n >= 1, unbiased (Lemire's multiply-and-reject). */
uint64_t pose_rng_below(pose_rng *r, uint64_t n);
/* Uniform integer in [lo, hi] inclusive (lo <= hi). */
int64_t pose_rng_range(pose_rng *r, int64_t lo, int64_t hi);
/* Uniform float in [0, 1) with 24 random bits (exactly representable, identical on every device). */
float pose_rng_uniform(pose_rng *r);
/* Uniform double in [0, 1) with 53 random bits. */
double pose_rng_uniform_f64(pose_rng *r);
/* Standard normal by Box-Muller from two 24-bit uniforms (float rounding may differ across devices' libm). */
float pose_rng_normal(pose_rng *r);

#endif
