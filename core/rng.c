#include "rng.h"

#include <math.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

void pose_philox4x32(uint64_t seed, uint64_t stream, uint64_t ctr, uint32_t out[4]) {
  uint32_t c0 = (uint32_t)ctr, c1 = (uint32_t)(ctr >> 32), c2 = (uint32_t)stream, c3 = (uint32_t)(stream >> 32);
  uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
  for (int round = 0; round < 10; round++) {
    uint64_t p0 = (uint64_t)PHILOX_M0 * c0, p1 = (uint64_t)PHILOX_M1 * c2;
    uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0, n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
    c1 = (uint32_t)p1;
    c3 = (uint32_t)p0;
    c0 = n0;
    c2 = n2;
    k0 += PHILOX_W0;
    k1 += PHILOX_W1;
  }
  out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

void pose_rng_init(pose_rng *r, uint64_t seed, uint64_t stream) {
  r->seed = seed;
  r->stream = stream;
  r->ctr = 0;
  r->used = 4;
}

uint32_t pose_rng_u32(pose_rng *r) {
  if (r->used == 4) {
    pose_philox4x32(r->seed, r->stream, r->ctr++, r->buf);
    r->used = 0;
  }
  return r->buf[r->used++];
}

uint64_t pose_rng_u64(pose_rng *r) {
  uint64_t hi = pose_rng_u32(r);
  return (hi << 32) | pose_rng_u32(r);
}

uint64_t pose_rng_below(pose_rng *r, uint64_t n) {
  if (n <= 1) return 0;
  if (n <= 0xffffffffull) { /* 32-bit Lemire */
    uint64_t m = (uint64_t)pose_rng_u32(r) * n;
    uint32_t lo = (uint32_t)m;
    if (lo < n) {
      uint32_t t = (uint32_t)(-(uint32_t)n) % (uint32_t)n;
      while (lo < t) { m = (uint64_t)pose_rng_u32(r) * n; lo = (uint32_t)m; }
    }
    return m >> 32;
  }
  /* 64-bit range: plain rejection on the next power of two (rare in practice) */
  uint64_t mask = n - 1;
  mask |= mask >> 1; mask |= mask >> 2; mask |= mask >> 4; mask |= mask >> 8; mask |= mask >> 16; mask |= mask >> 32;
  uint64_t v;
  do v = pose_rng_u64(r) & mask; while (v >= n);
  return v;
}

int64_t pose_rng_range(pose_rng *r, int64_t lo, int64_t hi) {
  return lo + (int64_t)pose_rng_below(r, (uint64_t)(hi - lo) + 1);
}

float pose_rng_uniform(pose_rng *r) { return (float)(pose_rng_u32(r) >> 8) * 0x1.0p-24f; }

double pose_rng_uniform_f64(pose_rng *r) { return (double)(pose_rng_u64(r) >> 11) * 0x1.0p-53; }

float pose_rng_normal(pose_rng *r) {
  /* u1 in (0, 1] so that log never sees 0 */
  float u1 = 1.0f - pose_rng_uniform(r), u2 = pose_rng_uniform(r);
  return (float)(sqrt(-2.0 * log((double)u1)) * cos(6.283185307179586 * (double)u2));
}
