/* The pure-bf16 policy's stochastic-rounding AdamW on the CPU (core/adamw.c, the reference the GPU kernel is checked
 * against bit for bit in tests/gpu/test_optim.c): the rounding primitive, the documented use of one Philox block per
 * element pair, independence from how the range is split, reproducibility from (seed, stream), unbiasedness; and the
 * trainer's fused_update option where it cannot run (cpu models, other trainables, accum > 1, clip > 0). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "adamw.h"
#include "dtype.h"
#include "model.h"
#include "rng.h"
#include "testutil.h"
#include "trainer.h"

static float bits_f32(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}

static void test_sr_primitive(void) {
  /* a bf16 value is kept whatever the random bits */
  const float exact[] = {1.0f, -2.5f, 0.0f, 3.140625f, bits_f32(0x0d8f0000u)};
  for (int i = 0; i < 5; i++) {
    uint16_t b = pose_f32_to_bf16(exact[i]);
    CHECK(pose_sr_bf16(exact[i], 0) == b);
    CHECK(pose_sr_bf16(exact[i], 0xffff) == b);
  }
  /* 1 + 2^-9 (half a bf16 step above 1): down with r < 2^15, up with r >= 2^15 */
  float x = bits_f32(0x3f808000u);
  CHECK(pose_sr_bf16(x, 0x7fff) == 0x3f80);
  CHECK(pose_sr_bf16(x, 0x8000) == 0x3f81);
  /* a quarter step: up only for r >= 3 * 2^14 */
  x = bits_f32(0x3f804000u);
  CHECK(pose_sr_bf16(x, 0xbfff) == 0x3f80);
  CHECK(pose_sr_bf16(x, 0xc000) == 0x3f81);
  /* negative numbers round away from zero in magnitude the same way */
  x = bits_f32(0xbf808000u);
  CHECK(pose_sr_bf16(x, 0x8000) == 0xbf81);
  /* only the low 16 bits count; NaN / Inf round to nearest */
  CHECK(pose_sr_bf16(bits_f32(0x3f808000u), 0xffff0000u) == 0x3f80);
  CHECK(pose_sr_bf16(INFINITY, 0xffff) == pose_f32_to_bf16(INFINITY));
  CHECK(pose_sr_bf16(-INFINITY, 0xffff) == pose_f32_to_bf16(-INFINITY));
  uint16_t n = pose_sr_bf16(NAN, 0xffff);
  CHECK((n & 0x7f80) == 0x7f80 && (n & 0x7f) != 0);
  /* the largest finite value does not overflow into Inf by more than RNE would */
  CHECK(pose_sr_bf16(bits_f32(0x7f7f0000u), 0xffff) == 0x7f7f);
}

static void fill(uint16_t *w, uint16_t *m, uint16_t *v, float *g, int64_t n, uint64_t seed) {
  pose_rng r;
  pose_rng_init(&r, seed, 1);
  for (int64_t i = 0; i < n; i++) {
    w[i] = pose_f32_to_bf16(pose_rng_normal(&r) * 0.5f);
    m[i] = pose_f32_to_bf16(pose_rng_normal(&r) * 0.01f);
    v[i] = pose_f32_to_bf16(1e-6f + 1e-3f * pose_rng_uniform(&r));
    g[i] = pose_rng_normal(&r) * 0.1f;
  }
}

/* The documented stream, written out independently of pose_sr_bits: block per pair, words as in adamw.h. */
static void test_stream_layout(void) {
  const int64_t n = 1001;
  uint16_t *w = malloc(n * 2), *m = malloc(n * 2), *v = malloc(n * 2);
  uint16_t *w0 = malloc(n * 2), *m0 = malloc(n * 2), *v0 = malloc(n * 2);
  float *g = malloc(n * 4);
  fill(w, m, v, g, n, 3);
  memcpy(w0, w, n * 2);
  memcpy(m0, m, n * 2);
  memcpy(v0, v, n * 2);
  pose_adamw_coefs c;
  pose_adamw_coefs_init(&c, 1e-3, 0.9, 0.999, 1e-8, 0.01, 5);
  const uint64_t seed = 0x123456789abcdef0ull, stream = 7ull * 1000 + 3;
  pose_adamw_bf16_sr_range(w, g, m, v, 0, n, &c, seed, stream);
  int64_t bad = 0, changed = 0;
  for (int64_t i = 0; i < n; i++) {
    /* the fp32 update of the element, through the fp32 AdamW */
    float wi = pose_bf16_to_f32(w0[i]), mi = pose_bf16_to_f32(m0[i]), vi = pose_bf16_to_f32(v0[i]);
    pose_adamw_update(&wi, &g[i], &mi, &vi, 1, &c);
    uint32_t r[4];
    pose_philox4x32(seed, stream, (uint64_t)(i / 2), r);
    uint32_t rw = i % 2 ? r[1] >> 16 : r[0] & 0xffff, rm = i % 2 ? r[2] & 0xffff : r[0] >> 16,
             rv = i % 2 ? r[2] >> 16 : r[1] & 0xffff;
    bad += w[i] != pose_sr_bf16(wi, rw) || m[i] != pose_sr_bf16(mi, rm) || v[i] != pose_sr_bf16(vi, rv);
    changed += w[i] != w0[i];
    /* each result is one of the two bf16 neighbours of the fp32 value */
    float got = pose_bf16_to_f32(w[i]);
    uint32_t u;
    memcpy(&u, &wi, 4);
    float down = bits_f32(u & 0xffff0000u), up = bits_f32((u & 0xffff0000u) + 0x10000u);
    bad += !(got == down || got == up);
  }
  printf("  stream layout (block per pair): %lld of %lld elements differ; %lld weights moved\n", (long long)bad,
         (long long)n, (long long)changed);
  CHECK(bad == 0);
  CHECK(changed > n / 20); /* steps of ~1e-3 against a bf16 spacing of 2^-9..2^-7: a fraction moves */
  /* pose_sr_bits is that layout */
  uint32_t r[4] = {0x11112222u, 0x33334444u, 0x55556666u, 0x77778888u}, a, b, d;
  pose_sr_bits(r, 0, &a, &b, &d);
  CHECK(a == 0x2222 && b == 0x1111 && d == 0x4444);
  pose_sr_bits(r, 1, &a, &b, &d);
  CHECK(a == 0x3333 && b == 0x6666 && d == 0x5555);
  pose_sr_bits(r, 12345, &a, &b, &d); /* odd */
  CHECK(a == 0x3333);

  /* any split of the range gives the same bits (odd boundaries included: the kernels split at multiples of 8,
   * the element path at any index) */
  memcpy(w, w0, n * 2);
  memcpy(m, m0, n * 2);
  memcpy(v, v0, n * 2);
  const int64_t cuts[] = {0, 1, 2, 7, 8, 9, 500, 501, 1000, 1001};
  for (int k = 0; k + 1 < 10; k++) pose_adamw_bf16_sr_range(w, g, m, v, cuts[k], cuts[k + 1], &c, seed, stream);
  uint16_t *w2 = malloc(n * 2), *m2 = malloc(n * 2), *v2 = malloc(n * 2);
  memcpy(w2, w0, n * 2);
  memcpy(m2, m0, n * 2);
  memcpy(v2, v0, n * 2);
  pose_adamw_bf16_sr_range(w2, g, m2, v2, 0, n, &c, seed, stream);
  CHECK(!memcmp(w, w2, n * 2) && !memcmp(m, m2, n * 2) && !memcmp(v, v2, n * 2));
  /* another stream (the next step, or another parameter) makes other decisions */
  memcpy(w2, w0, n * 2);
  memcpy(m2, m0, n * 2);
  memcpy(v2, v0, n * 2);
  pose_adamw_bf16_sr_range(w2, g, m2, v2, 0, n, &c, seed, stream + 1);
  int64_t same = 0;
  for (int64_t i = 0; i < n; i++) same += w2[i] == w[i];
  printf("  another stream: %lld of %lld weights equal\n", (long long)same, (long long)n);
  CHECK(same < n && same > n / 4);
  free(w); free(m); free(v); free(w0); free(m0); free(v0); free(w2); free(m2); free(v2); free(g);
}

/* Unbiased: steps of about -1e-4 from 1.0 are lost by round-to-nearest (spacing 2^-8 below 1) but kept on average. */
static void test_unbiased(void) {
  const int64_t n = 1 << 18;
  uint16_t *w = malloc(n * 2), *m = calloc(n, 2), *v = calloc(n, 2);
  float *g = malloc(n * 4);
  for (int64_t i = 0; i < n; i++) {
    w[i] = pose_f32_to_bf16(1.0f);
    g[i] = 1.0f;
  }
  pose_adamw_coefs c;
  pose_adamw_coefs_init(&c, 1e-4, 0.9, 0.999, 1e-8, 0.0, 1);
  pose_adamw_bf16_sr_range(w, g, m, v, 0, n, &c, 77, 0);
  double mean = 0, mm = 0;
  for (int64_t i = 0; i < n; i++) mean += pose_bf16_to_f32(w[i]), mm += pose_bf16_to_f32(m[i]);
  mean /= n;
  mm /= n;
  float exact = 1.0f, m0 = 0, v0 = 0, g0 = 1.0f;
  pose_adamw_update(&exact, &g0, &m0, &v0, 1, &c);
  printf("  mean of %lld updated weights %.8f, fp32 update %.8f; mean m %.8f vs %.8f\n", (long long)n, mean,
         (double)exact, mm, (double)m0);
  CHECK(fabs(mean - exact) < 1e-5);
  CHECK(fabs(mm - m0) < 1e-3 * m0);
  free(w); free(m); free(v); free(g);
}

static size_t toy_n(void *c) { (void)c; return 1; }
static float toy_w[4], toy_g[4];
static pose_param toy_p = {.name = "toy", .w = toy_w, .g = toy_g, .numel = 4};
static pose_param *toy_param(void *c, size_t i) { (void)c; (void)i; return &toy_p; }
static void toy_zero(void *c) { (void)c; }
static pose_status toy_bwd(void *c, const int64_t *ids, const int64_t *pos, const int64_t *t, int64_t B, int64_t T,
                           double s, double *loss, int64_t *count) {
  (void)c; (void)ids; (void)pos; (void)t; (void)B; (void)T; (void)s;
  *loss = 0;
  *count = 0;
  return POSE_OK;
}

static void test_fused_option_errors(void) {
  pose_trainer_opts o;
  pose_trainer_defaults(&o);
  CHECK(o.fused_update == 0);
  o.fused_update = 1;
  CHECK_OK(pose_trainer_opts_check(&o));
  o.accum = 2;
  CHECK_ERR(pose_trainer_opts_check(&o), POSE_EINVAL, "fused_update needs accum = 1");
  o.accum = 1;
  o.clip = 1.0;
  CHECK_ERR(pose_trainer_opts_check(&o), POSE_EINVAL, "fused_update needs clip = 0");
  o.clip = 0;
  o.fused_update = 2;
  CHECK_ERR(pose_trainer_opts_check(&o), POSE_EINVAL, "0 or 1");
  o.fused_update = 1;
  /* other trainables: the option needs the model's backward */
  pose_trainable tb = {NULL, toy_n, toy_param, toy_zero, toy_bwd, {POSE_CPU, 0}};
  pose_trainer *t = NULL;
  CHECK_ERR(pose_trainer_new_trainable(&tb, &o, &t), POSE_EUNSUPPORTED, "cuda pose_model");
  CHECK(t == NULL);
  /* a cpu model */
  cJSON *cfg = cJSON_Parse("{\"model_type\":\"llama\",\"vocab_size\":64,\"hidden_size\":32,\"intermediate_size\":48,"
                           "\"num_hidden_layers\":2,\"num_attention_heads\":2,\"num_key_value_heads\":2,"
                           "\"rms_norm_eps\":1e-5,\"max_position_embeddings\":128}");
  pose_model *m = NULL;
  pose_device cpu = {POSE_CPU, 0};
  CHECK_OK(pose_model_init(cfg, 1, cpu, &m));
  cJSON_Delete(cfg);
  if (!m) return;
  CHECK_ERR(pose_trainer_new(m, &o, &t), POSE_EUNSUPPORTED, "fused_update needs a cuda model");
  CHECK(t == NULL);
  o.accum = 3;
  CHECK_ERR(pose_trainer_new(m, &o, &t), POSE_EINVAL, "accum = 1");
  /* without the option the cpu trainer works as before */
  o.accum = 1;
  o.fused_update = 0;
  CHECK_OK(pose_trainer_new(m, &o, &t));
  CHECK(t && pose_trainer_get_opts(t)->fused_update == 0);
  int64_t ids[16];
  for (int i = 0; i < 16; i++) ids[i] = (i * 7) % 64;
  double loss = 0;
  if (t) CHECK_OK(pose_trainer_step(t, ids, NULL, NULL, 2, 8, &loss, NULL, NULL));
  CHECK(isfinite(loss) && loss > 0);
  pose_trainer_free(t);
  pose_model_free(m);
}

int main(void) {
  test_sr_primitive();
  test_stream_layout();
  test_unbiased();
  test_fused_option_errors();
  return test_summary("test_adamw_sr");
}
