/* Tensors and dtype conversions: rounding edge cases of bf16/f16, views, copies, errors, RNG determinism. */
#include <stdint.h>
#include <stdlib.h>

#include "rng.h"
#include "tensor.h"
#include "testutil.h"

static float f_of(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
static uint32_t u_of(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

static void test_bf16(void) {
  CHECK(pose_f32_to_bf16(1.0f) == 0x3f80);
  /* exactly halfway between 0x3f80 and 0x3f81: ties to even (down) */
  CHECK(pose_f32_to_bf16(f_of(0x3f808000u)) == 0x3f80);
  /* halfway between 0x3f81 and 0x3f82: ties to even (up) */
  CHECK(pose_f32_to_bf16(f_of(0x3f818000u)) == 0x3f82);
  CHECK(pose_f32_to_bf16(f_of(0x3f808001u)) == 0x3f81); /* just above half */
  CHECK(pose_f32_to_bf16(f_of(0x3f807fffu)) == 0x3f80); /* just below half */
  CHECK(pose_f32_to_bf16(INFINITY) == 0x7f80);
  CHECK(pose_f32_to_bf16(-INFINITY) == 0xff80);
  uint16_t n = pose_f32_to_bf16(NAN);
  CHECK((n & 0x7f80) == 0x7f80 && (n & 0x7f));
  CHECK(isnan(pose_bf16_to_f32(pose_f32_to_bf16(f_of(0x7f800001u))))); /* signalling NaN payload in low bits stays NaN */
  CHECK(pose_f32_to_bf16(f_of(0x7f7fffffu)) == 0x7f80);               /* FLT_MAX rounds up to Inf */
  CHECK(pose_f32_to_bf16(f_of(0x00000001u)) == 0x0000);               /* smallest subnormal -> 0 */
  CHECK(pose_f32_to_bf16(f_of(0x00018000u)) == 0x0002);               /* subnormal tie to even */
  CHECK(pose_f32_to_bf16(-0.0f) == 0x8000);
  CHECK(pose_bf16_to_f32(0x4049) == 3.140625f);
}

static void test_f16(void) {
  CHECK(pose_f32_to_f16(1.0f) == 0x3c00);
  CHECK(pose_f32_to_f16(65504.0f) == 0x7bff);
  CHECK(pose_f32_to_f16(65520.0f) == 0x7c00); /* halfway to the next binade: rounds to Inf */
  CHECK(pose_f32_to_f16(65519.0f) == 0x7bff);
  CHECK(pose_f32_to_f16(1e10f) == 0x7c00);
  CHECK(pose_f32_to_f16(-INFINITY) == 0xfc00);
  CHECK((pose_f32_to_f16(NAN) & 0x7c00) == 0x7c00 && (pose_f32_to_f16(NAN) & 0x3ff));
  CHECK(pose_f32_to_f16(ldexpf(1, -24)) == 0x0001);          /* smallest subnormal */
  CHECK(pose_f32_to_f16(ldexpf(1, -25)) == 0x0000);          /* half of it: tie to even -> 0 */
  CHECK(pose_f32_to_f16(ldexpf(1.5f, -25)) == 0x0001);       /* above half -> 1 */
  CHECK(pose_f32_to_f16(ldexpf(3, -25)) == 0x0002);          /* 1.5 ulp: tie to even -> 2 */
  CHECK(pose_f32_to_f16(ldexpf(1, -14)) == 0x0400);          /* smallest normal */
  CHECK(pose_f32_to_f16(ldexpf(1023.5f, -24)) == 0x0400);    /* subnormal rounding up into the normal range */
  CHECK(pose_f32_to_f16(1.0f + ldexpf(1, -11)) == 0x3c00);   /* tie to even down */
  CHECK(pose_f32_to_f16(1.0f + 3 * ldexpf(1, -11)) == 0x3c02); /* tie to even up */
  CHECK(pose_f16_to_f32(0x0001) == ldexpf(1, -24));
  CHECK(pose_f16_to_f32(0x03ff) == ldexpf(1023, -24));
  CHECK(pose_f16_to_f32(0x7c00) == INFINITY);
  CHECK(isnan(pose_f16_to_f32(0x7e00)));
  CHECK(u_of(pose_f16_to_f32(0x8000)) == 0x80000000u);
  /* every finite f16 round-trips exactly through f32 */
  int bad = 0;
  for (uint32_t h = 0; h < 0x10000; h++) {
    if ((h & 0x7c00) == 0x7c00) continue;
    if (pose_f32_to_f16(pose_f16_to_f32((uint16_t)h)) != h) bad++;
  }
  CHECK(bad == 0);
  bad = 0;
  for (uint32_t h = 0; h < 0x10000; h++) {
    if ((h & 0x7f80) == 0x7f80 && (h & 0x7f)) continue;
    if (pose_f32_to_bf16(pose_bf16_to_f32((uint16_t)h)) != h) bad++;
  }
  CHECK(bad == 0);
}

static void test_tensor_basics(void) {
  pose_tensor *t = NULL, *v = NULL, *s = NULL, *c = NULL;
  int64_t shape[3] = {4, 3, 2};
  CHECK_OK(pose_tensor_zeros(&t, POSE_F32, POSE_DEVICE_CPU, 3, shape));
  CHECK(t->numel == 24);
  float *d = pose_tensor_data(t);
  for (int i = 0; i < 24; i++) CHECK(d[i] == 0.0f);
  for (int i = 0; i < 24; i++) d[i] = (float)i;
  int64_t ns[2] = {-1, 6};
  CHECK_OK(pose_tensor_reshape(t, 2, ns, &v));
  CHECK(v->shape[0] == 4 && v->shape[1] == 6);
  CHECK_OK(pose_tensor_slice(v, 1, 3, &s));
  CHECK(s->numel == 12 && ((float *)pose_tensor_data(s))[0] == 6.0f);
  pose_tensor_free(t); /* views keep the storage alive */
  CHECK(((float *)pose_tensor_data(s))[11] == 17.0f);
  int64_t idx[2] = {1, 5};
  double x;
  CHECK_OK(pose_tensor_get(s, idx, &x));
  CHECK(x == 17.0);
  CHECK_OK(pose_tensor_set(s, idx, 2.5));
  CHECK(((float *)pose_tensor_data(v))[17] == 2.5f);
  CHECK_OK(pose_tensor_to(s, POSE_BF16, POSE_DEVICE_CPU, &c));
  CHECK(c->dtype == POSE_BF16 && pose_tensor_same_shape(c, s));
  CHECK_OK(pose_tensor_get(c, idx, &x));
  CHECK(x == 2.5);
  int64_t bad[2] = {2, 0};
  CHECK_ERR(pose_tensor_get(s, bad, &x), POSE_EINVAL, "out of range");
  int64_t bs[2] = {5, -1};
  pose_tensor *tmp = NULL;
  CHECK_ERR(pose_tensor_reshape(v, 2, bs, &tmp), POSE_EINVAL, "cannot infer");
  CHECK_ERR(pose_tensor_slice(v, 3, 5, &tmp), POSE_EINVAL, "out of range");
  int64_t big[5] = {1, 1, 1, 1, 1};
  CHECK_ERR(pose_tensor_zeros(&tmp, POSE_F32, POSE_DEVICE_CPU, 5, big), POSE_EINVAL, "dimensions");
  int64_t neg[1] = {-3};
  CHECK_ERR(pose_tensor_zeros(&tmp, POSE_F32, POSE_DEVICE_CPU, 1, neg), POSE_EINVAL, "negative");
  CHECK_ERR(pose_tensor_copy(c, v), POSE_EINVAL, "elements");
  pose_tensor_free(v);
  pose_tensor_free(s);
  pose_tensor_free(c);
}

static void test_int_conversions(void) {
  int64_t big = (int64_t)1 << 40, shape[1] = {2};
  int64_t vals[2] = {big + 1, -7};
  pose_tensor *t, *u, *w;
  CHECK_OK(pose_tensor_from_data(&t, POSE_I64, 1, shape, vals));
  CHECK_OK(pose_tensor_to(t, POSE_I32, POSE_DEVICE_CPU, &u));
  CHECK(((int32_t *)pose_tensor_data(u))[1] == -7);
  CHECK_OK(pose_tensor_to(u, POSE_F32, POSE_DEVICE_CPU, &w));
  CHECK(((float *)pose_tensor_data(w))[1] == -7.0f);
  int64_t i0[1] = {0}, got;
  CHECK_OK(pose_tensor_get_i64(t, i0, &got));
  CHECK(got == big + 1); /* i64 read stays exact past 2^53 */
  pose_tensor_free(t); pose_tensor_free(u); pose_tensor_free(w);
}

static void test_rng(void) {
  /* Philox4x32-10 known-answer test (Random123 kat_vectors: ctr=0, key=0) */
  uint32_t out[4];
  pose_philox4x32(0, 0, 0, out);
  CHECK(out[0] == 0x6627e8d5u && out[1] == 0xe169c58du && out[2] == 0xbc57ac4cu && out[3] == 0x9b00dbd8u);
  /* all-ones counter and key */
  pose_philox4x32(0xffffffffffffffffull, 0xffffffffffffffffull, 0xffffffffffffffffull, out);
  CHECK(out[0] == 0x408f276du && out[1] == 0x41c83b0eu && out[2] == 0xa20bc7c6u && out[3] == 0x6d5451fdu);
  pose_rng a, b;
  pose_rng_init(&a, 42, 7);
  pose_rng_init(&b, 42, 7);
  int same = 1;
  for (int i = 0; i < 1000; i++) same &= pose_rng_u32(&a) == pose_rng_u32(&b);
  CHECK(same);
  pose_rng_init(&a, 42, 8);
  pose_rng_init(&b, 42, 7);
  CHECK(pose_rng_u32(&a) != pose_rng_u32(&b));
  /* pose_rng_below: in range and roughly uniform */
  int hist[7] = {0};
  pose_rng_init(&a, 1, 1);
  for (int i = 0; i < 70000; i++) hist[pose_rng_below(&a, 7)]++;
  int ok = 1;
  for (int i = 0; i < 7; i++) ok &= hist[i] > 9500 && hist[i] < 10500;
  CHECK(ok);
  double m = 0, m2 = 0;
  for (int i = 0; i < 100000; i++) { double z = pose_rng_normal(&a); m += z; m2 += z * z; }
  m /= 100000; m2 /= 100000;
  CHECK_NEAR(m, 0.0, 0.02);
  CHECK_NEAR(m2, 1.0, 0.02);
  for (int i = 0; i < 1000; i++) { float u = pose_rng_uniform(&a); if (!(u >= 0 && u < 1)) { ok = 0; } }
  CHECK(ok);
  /* tensor fills are pure functions of (seed, stream) */
  int64_t sh[1] = {100};
  pose_tensor *t1, *t2;
  CHECK_OK(pose_tensor_zeros(&t1, POSE_F32, POSE_DEVICE_CPU, 1, sh));
  CHECK_OK(pose_tensor_zeros(&t2, POSE_F32, POSE_DEVICE_CPU, 1, sh));
  CHECK_OK(pose_tensor_rand_normal(t1, 5, 3, 0, 0.02));
  CHECK_OK(pose_tensor_rand_normal(t2, 5, 3, 0, 0.02));
  CHECK(memcmp(pose_tensor_data(t1), pose_tensor_data(t2), 400) == 0);
  pose_tensor_free(t1); pose_tensor_free(t2);
}

int main(void) {
  test_bf16();
  test_f16();
  test_tensor_basics();
  test_int_conversions();
  test_rng();
  return test_summary("test_tensor");
}
