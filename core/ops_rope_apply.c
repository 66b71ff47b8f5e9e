/* No contraction into FMA here: the reference rounds the two products separately (x86-64-v2 has no FMA, and the
 * pragma keeps it so if the target changes). */
#pragma GCC optimize("fp-contract=off")
#include "ops_common.h"
#include "ops_rope_apply.h"

void pose_rope_apply(float *x, int64_t N, int64_t stride, int64_t H, int64_t D, int64_t r, const float *cos,
                     const float *sin, int interleaved, int transpose) {
  int64_t half = r / 2;
#pragma omp parallel for schedule(static) if (N * H * r > POSE_PAR_MIN)
  for (int64_t n = 0; n < N; n++) {
    const float *c = cos + n * half, *s = sin + n * half;
    for (int64_t h = 0; h < H; h++) {
      float *v = x + n * stride + h * D;
      for (int64_t j = 0; j < half; j++) {
        int64_t i0 = interleaved ? 2 * j : j, i1 = interleaved ? 2 * j + 1 : j + half;
        float cj = c[j], sj = transpose ? -s[j] : s[j];
        float a = v[i0], b = v[i1];
        float p0 = a * cj, p1 = -b * sj, p2 = b * cj, p3 = a * sj;
        v[i0] = p0 + p1;
        v[i1] = p2 + p3;
      }
    }
  }
}
