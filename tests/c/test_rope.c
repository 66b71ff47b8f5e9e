/* RoPE schemes against ../shared/spec/rope.md: the test vectors of §10 and §2.4-§2.7, the edge-case checklist of
 * §13 (config precedence, renames, odd rotary dims, positions, the dynamic state machine, yarn guards, longrope
 * switching, llama3 band edges), error messages that name the field, and save/load round trips. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "checkpoint.h"
#include "rope.h"
#include "testutil.h"

static uint32_t u_of(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

/* distance in units in the last place between two finite floats of any sign */
static int64_t ulps(float a, float b) {
  int32_t ia, ib;
  memcpy(&ia, &a, 4);
  memcpy(&ib, &b, 4);
  int64_t x = ia < 0 ? (int64_t)INT32_MIN - ia : ia, y = ib < 0 ? (int64_t)INT32_MIN - ib : ib;
  return x > y ? x - y : y - x;
}

static cJSON *J(const char *s) {
  cJSON *j = cJSON_Parse(s);
  if (!j) { fprintf(stderr, "bad test JSON: %s\n", s); exit(2); }
  return j;
}

/* pose.rope keys -> scheme (NULL and a printed message on failure) */
static pose_rope *R(const char *json) {
  cJSON *j = J(json);
  pose_rope *r = NULL;
  if (pose_rope_from_json(j, &r)) fprintf(stderr, "from_json(%s): %s\n", json, pose_error_message());
  cJSON_Delete(j);
  return r;
}

static pose_rope *C(const char *config, const char *family, int head_dim, const char *override) {
  cJSON *c = J(config), *o = override ? J(override) : NULL;
  pose_rope *r = NULL;
  if (pose_rope_from_config(c, family, head_dim, o, &r)) fprintf(stderr, "from_config(%s): %s\n", config, pose_error_message());
  cJSON_Delete(c);
  cJSON_Delete(o);
  return r;
}

static pose_status json_err(const char *json) {
  cJSON *j = J(json);
  pose_rope *r = NULL;
  pose_status st = pose_rope_from_json(j, &r);
  pose_rope_free(r);
  cJSON_Delete(j);
  return st;
}

static pose_status config_err(const char *config, const char *family, int head_dim, const char *override) {
  cJSON *c = J(config), *o = override ? J(override) : NULL;
  pose_rope *r = NULL;
  pose_status st = pose_rope_from_config(c, family, head_dim, o, &r);
  pose_rope_free(r);
  cJSON_Delete(c);
  cJSON_Delete(o);
  return st;
}

static int same_inv(const pose_rope *a, const pose_rope *b) {
  if (!a || !b || pose_rope_dim(a) != pose_rope_dim(b)) return 0;
  return memcmp(pose_rope_inv_freq(a), pose_rope_inv_freq(b), sizeof(float) * (size_t)(pose_rope_dim(a) / 2)) == 0;
}

/* a config value written by pose_rope_to_config: numbers, or raw float literals such as "4.0" */
static double num(const cJSON *it) {
  if (cJSON_IsRaw(it)) return strtod(it->valuestring, NULL);
  return cJSON_IsNumber(it) ? it->valuedouble : NAN;
}

static const int JS[8] = {0, 1, 20, 21, 30, 45, 46, 63};

/* spec §10: inv[j] for j = 0, 1, 20, 21, 30, 45, 46, 63 (r = 128, theta = 1e4); 9 significant digits identify a float */
static void check_row(const pose_rope *r, const double *want, const char *what, double rel) {
  CHECK(r != NULL);
  if (!r) return;
  const float *inv = pose_rope_inv_freq(r);
  for (int k = 0; k < 8; k++) {
    float w = (float)want[k];
    int ok = rel == 0 ? u_of(inv[JS[k]]) == u_of(w) : fabs(inv[JS[k]] - want[k]) <= rel * fabs(want[k]);
    if (!ok) fprintf(stderr, "%s: inv[%d] = %.9g, spec %.9g\n", what, JS[k], inv[JS[k]], want[k]);
    CHECK(ok);
  }
}

static void test_spec_rows(void) {
  static const double def[8] = {1.0, 0.865964353, 0.0562341288, 0.0486967526, 0.0133352149, 0.00153992651, 0.00133352145, 0.000115478193};
  static const double lin[8] = {0.25, 0.216491088, 0.0140585322, 0.0121741882, 0.00333380373, 0.000384981628, 0.000333380362, 2.88695483e-05};
  static const double dyn[8] = {1.0, 0.844122052, 0.0337368697, 0.0284780338, 0.00619665254, 0.00048779315, 0.000411756948, 2.30956375e-05};
  static const double yarn[8] = {1.0, 0.865964353, 0.0562341288, 0.0472920388, 0.00948851742, 0.0004294026, 0.000333380362, 2.88695483e-05};
  static const double ntk[8] = {1.0, 0.847117245, 0.0362134427, 0.0306770299, 0.00689135725, 0.000572080491, 0.000484619261, 2.88695519e-05};
  pose_rope *r = R("{\"dim\":128}");
  check_row(r, def, "default", 0);
  CHECK(u_of(pose_rope_inv_freq(r)[1]) == 0x3f5dafd7u);
  CHECK(u_of(pose_rope_inv_freq(r)[63]) == 0x38f22ce2u);
  CHECK(pose_rope_kind(r) == POSE_ROPE_DEFAULT && pose_rope_attention_factor(r) == 1.0);
  CHECK(strcmp(pose_rope_type_name(r), "default") == 0);
  pose_rope_free(r);
  r = R("{\"rope_type\":\"linear\",\"factor\":4,\"dim\":128}");
  check_row(r, lin, "linear", 0);
  pose_rope_free(r);
  /* the spec's dynamic row is the double-theta' path; forward computes theta' in float32 (<= 5e-7 relative) */
  r = R("{\"rope_type\":\"dynamic\",\"factor\":4,\"dim\":128,\"max_position_embeddings\":4096}");
  pose_rope_update(r, 8191);
  check_row(r, dyn, "dynamic", 5e-7);
  pose_rope_free(r);
  r = R("{\"rope_type\":\"yarn\",\"factor\":4,\"dim\":128,\"original_max_position_embeddings\":4096}");
  check_row(r, yarn, "yarn", 0);
  CHECK_NEAR(pose_rope_attention_factor(r), 1.13862944, 5e-9);
  double lo, hi;
  CHECK_OK(pose_rope_yarn_range(r, &lo, &hi));
  CHECK(lo == 20 && hi == 46);
  pose_rope_free(r);
  r = R("{\"rope_type\":\"vanilla_ntk\",\"factor\":4,\"dim\":128}");
  check_row(r, ntk, "vanilla_ntk", 0);
  pose_rope_free(r);
  /* §2.7: llama3, theta 5e5, s 8, a 1, b 4, Lo 8192 */
  static const int lj[7] = {0, 1, 20, 30, 45, 46, 63};
  static const double l3[7] = {1.0, 0.814617217, 0.0165604409, 0.00137189368, 1.22976389e-05, 1.00178686e-05, 3.06892588e-07};
  r = R("{\"rope_type\":\"llama3\",\"factor\":8,\"low_freq_factor\":1,\"high_freq_factor\":4,"
        "\"original_max_position_embeddings\":8192,\"rope_theta\":500000,\"dim\":128}");
  CHECK(r != NULL);
  for (int k = 0; r && k < 7; k++) CHECK(u_of(pose_rope_inv_freq(r)[lj[k]]) == u_of((float)l3[k]));
  CHECK(r && pose_rope_attention_factor(r) == 1.0);
  pose_rope_free(r);
}

/* §10 cos/sin with the default frequencies and a float32 angle */
static void test_spec_cos_sin(void) {
  static const int64_t P[4] = {1, 100, 4095, 65535};
  static const double cw[4][3] = {{0.540302277, 0.647905827, 1.0},
                                  {0.862318873, 0.201253638, 0.999933302},
                                  {-0.0659759939, -0.742445707, 0.890258849},
                                  {0.192344025, 0.321993649, 0.282230347}};
  static const double sw[4][3] = {{0.841470957, 0.761720419, 1.15478193e-4},
                                  {-0.506365657, -0.979539156, 0.0115475627},
                                  {-0.997821212, 0.669906199, 0.455454975},
                                  {0.981327534, 0.946741819, 0.959346652}};
  pose_rope *r = R("{\"dim\":128}");
  float c[4 * 64], s[4 * 64];
  pose_rope_cos_sin(r, P, 4, c, s);
  static const int cj[3] = {0, 1, 63};
  for (int t = 0; t < 4; t++)
    for (int k = 0; k < 3; k++) {
      CHECK(ulps(c[t * 64 + cj[k]], (float)cw[t][k]) <= 1);
      CHECK(ulps(s[t * 64 + cj[k]], (float)sw[t][k]) <= 1);
    }
  /* position 0 is the identity when A = 1 */
  int64_t zero = 0;
  pose_rope_cos_sin(r, &zero, 1, c, s);
  int ident = 1;
  for (int j = 0; j < 64; j++) ident &= c[j] == 1.0f && s[j] == 0.0f;
  CHECK(ident);
  /* large positions: the angle is one float32 product (§9.3), visibly different from a double angle */
  int64_t big[3] = {65535, 131071, 1048575};
  float cb[3 * 64], sb[3 * 64];
  pose_rope_cos_sin(r, big, 3, cb, sb);
  const float *inv = pose_rope_inv_freq(r);
  int exact = 1;
  double maxdiff = 0;
  for (int t = 0; t < 3; t++)
    for (int j = 0; j < 64; j++) {
      float phi = inv[j] * (float)big[t];
      exact &= cb[t * 64 + j] == (float)cos((double)phi) && sb[t * 64 + j] == (float)sin((double)phi);
      double d = fabs(cb[t * 64 + j] - cos((double)inv[j] * (double)big[t]));
      if (d > maxdiff) maxdiff = d;
    }
  CHECK(exact);
  CHECK(maxdiff > 1e-3); /* spec: 1.85e-2 at 1048575 */
  pose_rope_free(r);
  /* with A != 1 position 0 is not the identity: cos = fl32(A), sin = 0 */
  r = R("{\"rope_type\":\"yarn\",\"factor\":16,\"dim\":64,\"original_max_position_embeddings\":2048}");
  pose_rope_cos_sin(r, &zero, 1, c, s);
  float a = (float)pose_rope_attention_factor(r);
  int scaled = 1;
  for (int j = 0; j < 32; j++) scaled &= c[j] == a && s[j] == 0.0f;
  CHECK(scaled && a > 1.27f);
  int64_t p7 = 7;
  pose_rope_cos_sin(r, &p7, 1, c, s);
  float phi = pose_rope_inv_freq(r)[3] * 7.0f;
  CHECK(c[3] == (float)cos((double)phi) * a && s[3] == (float)sin((double)phi) * a);
  pose_rope_free(r);
  /* many positions (the parallel path) equal one-at-a-time */
  r = R("{\"rope_type\":\"linear\",\"factor\":3,\"dim\":96}");
  int n = 700;
  int64_t *pp = malloc(sizeof(int64_t) * n);
  float *c1 = malloc(sizeof(float) * n * 48), *s1 = malloc(sizeof(float) * n * 48);
  for (int t = 0; t < n; t++) pp[t] = (int64_t)t * 977 % 40000;
  pose_rope_cos_sin(r, pp, n, c1, s1);
  int agree = 1;
  for (int t = 0; t < n; t += 37) {
    float c2[48], s2[48];
    pose_rope_cos_sin(r, pp + t, 1, c2, s2);
    agree &= memcmp(c2, c1 + t * 48, sizeof c2) == 0 && memcmp(s2, s1 + t * 48, sizeof s2) == 0;
  }
  CHECK(agree);
  free(pp); free(c1); free(s1);
  pose_rope_free(r);
}

static void test_spec_scalars(void) {
  /* §2.5 yarn correction ranges */
  struct { const char *json; double lo, hi; } rng[] = {
      {"{\"rope_type\":\"yarn\",\"factor\":8,\"dim\":128,\"original_max_position_embeddings\":2048}", 16, 41},
      {"{\"rope_type\":\"yarn\",\"factor\":8,\"dim\":128,\"original_max_position_embeddings\":4096}", 20, 46},
      {"{\"rope_type\":\"yarn\",\"factor\":4,\"dim\":128,\"original_max_position_embeddings\":32768}", 35, 60},
      {"{\"rope_type\":\"yarn\",\"factor\":4,\"dim\":128,\"rope_theta\":1e6,\"original_max_position_embeddings\":32768}", 23, 40},
      {"{\"rope_type\":\"yarn\",\"factor\":4,\"dim\":64,\"original_max_position_embeddings\":2048}", 8, 21},
  };
  for (size_t i = 0; i < sizeof rng / sizeof rng[0]; i++) {
    pose_rope *r = R(rng[i].json);
    double lo = -1, hi = -1;
    CHECK(r && pose_rope_yarn_range(r, &lo, &hi) == POSE_OK);
    if (lo != rng[i].lo || hi != rng[i].hi) fprintf(stderr, "yarn range %s: (%g, %g)\n", rng[i].json, lo, hi);
    CHECK(lo == rng[i].lo && hi == rng[i].hi);
    pose_rope_free(r);
  }
  /* §2.5 attention factors */
  static const double sA[5][2] = {{2, 1.0693147}, {4, 1.1386294}, {8, 1.2079442}, {16, 1.2772589}, {32, 1.3465736}};
  char buf[256];
  for (int i = 0; i < 5; i++) {
    snprintf(buf, sizeof buf, "{\"rope_type\":\"yarn\",\"factor\":%g,\"dim\":64,\"max_position_embeddings\":4096}", sA[i][0]);
    pose_rope *r = R(buf);
    CHECK(r && fabs(pose_rope_attention_factor(r) - sA[i][1]) < 1e-7);
    pose_rope_free(r);
  }
  pose_rope *r = R("{\"rope_type\":\"yarn\",\"factor\":40,\"mscale\":1,\"mscale_all_dim\":0.707,\"dim\":64,"
                   "\"original_max_position_embeddings\":4096}");
  CHECK(r && fabs(pose_rope_attention_factor(r) - 1.0857264) < 1e-7);
  pose_rope_free(r);
  /* mscale alone (mscale_all_dim absent or 0) falls back to 0.1 ln s + 1 */
  r = R("{\"rope_type\":\"yarn\",\"factor\":40,\"mscale\":1,\"mscale_all_dim\":0,\"dim\":64,"
        "\"original_max_position_embeddings\":4096}");
  CHECK(r && pose_rope_attention_factor(r) == 0.1 * log(40.0) + 1.0);
  pose_rope_free(r);
  /* §2.6 longrope A */
  r = R("{\"rope_type\":\"longrope\",\"factor\":4,\"dim\":4,\"original_max_position_embeddings\":1024,"
        "\"short_factor\":[1,1],\"long_factor\":[2,3]}");
  CHECK(r && fabs(pose_rope_attention_factor(r) - 1.0954451) < 1e-7);
  pose_rope_free(r);
  /* §2.4 static NTK thetas */
  static const double a[5] = {2, 4, 8, 16, 32};
  static const double t128[5] = {20221.26, 40889.94, 82684.62, 167198.74, 338096.95};
  static const double t64[5] = {20452.23, 41829.37, 85550.38, 174969.59, 357851.80};
  for (int i = 0; i < 5; i++) {
    snprintf(buf, sizeof buf, "{\"rope_type\":\"vanilla_ntk\",\"factor\":%g,\"dim\":128}", a[i]);
    r = R(buf);
    CHECK(r && fabs(pose_rope_base(r) - t128[i]) < 0.01);
    /* exact arithmetic: the lowest frequency becomes inv0[r/2-1] / alpha; inv[0] stays 1 */
    CHECK(r && pose_rope_inv_freq(r)[0] == 1.0f);
    CHECK(r && fabs(pose_rope_inv_freq(r)[63] * a[i] / 0.000115478193 - 1) < 2e-6);
    pose_rope_free(r);
    snprintf(buf, sizeof buf, "{\"rope_type\":\"vanilla_ntk\",\"factor\":%g,\"dim\":64}", a[i]);
    r = R(buf);
    CHECK(r && fabs(pose_rope_base(r) - t64[i]) < 0.01);
    pose_rope_free(r);
  }
  /* §13.14: static NTK equals the default type with theta' (bitwise) */
  r = R("{\"rope_type\":\"vanilla_ntk\",\"factor\":8,\"dim\":128}");
  snprintf(buf, sizeof buf, "{\"dim\":128,\"rope_theta\":%.17g}", pose_rope_base(r));
  pose_rope *d = R(buf);
  CHECK(same_inv(r, d));
  pose_rope_free(r);
  pose_rope_free(d);
}

/* §1: config.json precedence, renames and families */
static void test_config_parsing(void) {
  /* v4 rope_scaling with both keys: 5.17 takes rope_type (v4 took type) */
  pose_rope *r = C("{\"rope_scaling\":{\"type\":\"dynamic\",\"rope_type\":\"linear\",\"factor\":2},"
                   "\"max_position_embeddings\":4096}", "llama", 64, NULL);
  CHECK(r && pose_rope_kind(r) == POSE_ROPE_LINEAR);
  pose_rope_free(r);
  r = C("{\"rope_scaling\":{\"type\":\"linear\",\"factor\":2}}", "llama", 64, NULL);
  CHECK(r && pose_rope_kind(r) == POSE_ROPE_LINEAR && pose_rope_inv_freq(r)[0] == 0.5f);
  pose_rope_free(r);
  /* v5 rope_parameters beats the top-level rope_theta; missing theta is 10000 */
  r = C("{\"rope_theta\":10000,\"rope_parameters\":{\"rope_type\":\"default\",\"rope_theta\":500000}}", "llama", 128, NULL);
  pose_rope *w = R("{\"dim\":128,\"rope_theta\":500000}");
  CHECK(same_inv(r, w) && pose_rope_base(r) == 500000);
  pose_rope_free(r); pose_rope_free(w);
  r = C("{\"rope_theta\":500000}", "llama", 128, NULL);
  CHECK(r && pose_rope_base(r) == 500000);
  pose_rope_free(r);
  r = C("{}", "llama", 128, NULL);
  w = R("{\"dim\":128}");
  CHECK(same_inv(r, w) && pose_rope_base(r) == 10000);
  pose_rope_free(r); pose_rope_free(w);
  /* rope_parameters' keys win over rope_scaling's */
  r = C("{\"rope_scaling\":{\"type\":\"linear\",\"factor\":2},\"rope_parameters\":{\"rope_type\":\"linear\",\"factor\":4}}",
        "llama", 64, NULL);
  CHECK(r && pose_rope_inv_freq(r)[0] == 0.25f);
  pose_rope_free(r);
  /* integer factor == float factor */
  r = C("{\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":4,\"original_max_position_embeddings\":4096}}", "llama", 128, NULL);
  w = C("{\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":4.0,\"original_max_position_embeddings\":4096}}", "llama", 128, NULL);
  CHECK(same_inv(r, w) && pose_rope_attention_factor(r) == pose_rope_attention_factor(w));
  pose_rope_free(w);
  /* beta_fast/beta_slow 0 or null mean 32 and 1 */
  w = C("{\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":4,\"original_max_position_embeddings\":4096,"
        "\"beta_fast\":0,\"beta_slow\":null}}", "llama", 128, NULL);
  CHECK(same_inv(r, w));
  pose_rope_free(w);
  w = C("{\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":4,\"original_max_position_embeddings\":4096,"
        "\"beta_fast\":32,\"beta_slow\":1}}", "llama", 128, NULL);
  CHECK(same_inv(r, w));
  pose_rope_free(w);
  /* yarn without original_max_position_embeddings uses max_position_embeddings (5.17 standardization) */
  w = C("{\"max_position_embeddings\":4096,\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":4}}", "llama", 128, NULL);
  CHECK(same_inv(r, w));
  pose_rope_free(w);
  /* a top-level original_max_position_embeddings (Phi-3 style) overrides the dict's */
  w = C("{\"original_max_position_embeddings\":4096,"
        "\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":4,\"original_max_position_embeddings\":1024}}", "llama", 128, NULL);
  CHECK(same_inv(r, w));
  pose_rope_free(w);
  /* factor null: max_position_embeddings / original */
  w = C("{\"max_position_embeddings\":16384,"
        "\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":null,\"original_max_position_embeddings\":4096}}", "llama", 128, NULL);
  CHECK(same_inv(r, w) && pose_rope_attention_factor(r) == pose_rope_attention_factor(w));
  pose_rope_free(w);
  pose_rope_free(r);
  /* GPT-NeoX: rotary_pct (default 0.25) and rotary_emb_base; 20B: H 96 -> r 24 */
  r = C("{\"rotary_emb_base\":10000,\"rope_theta\":777}", "gpt_neox", 96, NULL);
  CHECK(r && pose_rope_dim(r) == 24 && pose_rope_base(r) == 10000);
  w = R("{\"dim\":24}");
  CHECK(same_inv(r, w));
  pose_rope_free(r); pose_rope_free(w);
  r = C("{\"rotary_pct\":0.5,\"rotary_emb_base\":1000000}", "gpt_neox", 128, NULL);
  CHECK(r && pose_rope_dim(r) == 64 && pose_rope_base(r) == 1e6);
  pose_rope_free(r);
  /* GPT-J: rotary_dim (default 64), null = the whole head; theta fixed */
  r = C("{\"rotary_dim\":64,\"rope_theta\":500000}", "gptj", 256, NULL);
  CHECK(r && pose_rope_dim(r) == 64 && pose_rope_base(r) == 10000);
  pose_rope_free(r);
  r = C("{}", "gptj", 256, NULL);
  CHECK(r && pose_rope_dim(r) == 64);
  pose_rope_free(r);
  r = C("{\"rotary_dim\":null}", "gptj", 256, NULL);
  CHECK(r && pose_rope_dim(r) == 256);
  pose_rope_free(r);
  /* PoSE's GPT-J YaRN: original window 2048 unless the config says otherwise */
  r = C("{\"n_positions\":32768,\"rope_scaling\":{\"type\":\"yarn\",\"factor\":16}}", "gptj", 256, NULL);
  w = R("{\"rope_type\":\"yarn\",\"factor\":16,\"dim\":64,\"original_max_position_embeddings\":2048}");
  CHECK(same_inv(r, w));
  pose_rope_free(r); pose_rope_free(w);
  /* Baichuan2: theta 10000 whatever the config says; PoSE's rope_scaling is read */
  r = C("{\"rope_theta\":500000,\"rope_scaling\":{\"type\":\"vanilla_ntk\",\"factor\":2}}", "baichuan", 128, NULL);
  CHECK(r && pose_rope_kind(r) == POSE_ROPE_VANILLA_NTK && fabs(pose_rope_base(r) - 20221.26) < 0.01);
  pose_rope_free(r);
  /* LLaMA: partial_rotary_factor is ignored on the default path, used by rope-utils types */
  r = C("{\"partial_rotary_factor\":0.5}", "llama", 128, NULL);
  CHECK(r && pose_rope_dim(r) == 128);
  pose_rope_free(r);
  r = C("{\"partial_rotary_factor\":0.5,\"rope_scaling\":{\"rope_type\":\"linear\",\"factor\":2}}", "llama", 128, NULL);
  CHECK(r && pose_rope_dim(r) == 64);
  pose_rope_free(r);
  r = C("{\"rope_scaling\":{\"rope_type\":\"linear\",\"factor\":2,\"partial_rotary_factor\":0.25}}", "mistral", 128, NULL);
  CHECK(r && pose_rope_dim(r) == 32);
  pose_rope_free(r);
  /* model_type from the config when the caller passes NULL */
  r = C("{\"model_type\":\"gpt_neox\"}", NULL, 128, NULL);
  CHECK(r && pose_rope_dim(r) == 32);
  pose_rope_free(r);
  /* head_dim explicit and different from hidden/heads: the caller's head_dim is what counts */
  r = C("{\"hidden_size\":4096,\"num_attention_heads\":32,\"head_dim\":64}", "qwen2", 64, NULL);
  CHECK(r && pose_rope_dim(r) == 64);
  pose_rope_free(r);
  /* a config built in memory with float literals (pose_json_float raw items) */
  cJSON *mem = J("{\"rope_scaling\":{\"rope_type\":\"linear\"}}");
  cJSON_AddItemToObject(cJSON_GetObjectItemCaseSensitive(mem, "rope_scaling"), "factor", pose_json_float(4));
  cJSON_AddItemToObject(mem, "rope_theta", pose_json_float(10000));
  r = NULL;
  CHECK_OK(pose_rope_from_config(mem, "llama", 64, NULL, &r));
  CHECK(r && pose_rope_inv_freq(r)[0] == 0.25f && pose_rope_base(r) == 10000);
  pose_rope_free(r);
  cJSON_Delete(mem);
  /* unknown keys of a config's rope dict are ignored (transformers only warns) */
  r = C("{\"rope_scaling\":{\"type\":\"yarn\",\"factor\":16,\"original_max_position_embeddings\":4096,\"finetuned\":true}}",
        "llama", 128, NULL);
  CHECK(r && pose_rope_kind(r) == POSE_ROPE_YARN);
  pose_rope_free(r);
}

static void test_override(void) {
  const char *cfg = "{\"rope_theta\":500000,\"max_position_embeddings\":8192,"
                    "\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":4,\"original_max_position_embeddings\":2048}}";
  /* a key replaces the config's; the others stay */
  pose_rope *r = C(cfg, "llama", 128, "{\"factor\":8}");
  pose_rope *w = R("{\"rope_type\":\"yarn\",\"factor\":8,\"rope_theta\":500000,\"dim\":128,\"original_max_position_embeddings\":2048}");
  CHECK(same_inv(r, w) && pose_rope_attention_factor(r) == pose_rope_attention_factor(w));
  pose_rope_free(r); pose_rope_free(w);
  /* aliases replace both spellings */
  r = C(cfg, "llama", 128, "{\"type\":\"linear\",\"base\":10000}");
  w = R("{\"rope_type\":\"linear\",\"factor\":4,\"dim\":128}");
  CHECK(r && pose_rope_kind(r) == POSE_ROPE_LINEAR && same_inv(r, w));
  pose_rope_free(r); pose_rope_free(w);
  /* pose's own variants through the override */
  r = C(cfg, "llama", 128, "{\"pose_variant\":\"revised\"}");
  w = C(cfg, "llama", 128, NULL);
  CHECK(r && w && pose_rope_kind(r) == POSE_ROPE_YARN && !same_inv(r, w));
  pose_rope_free(r); pose_rope_free(w);
  /* an explicit partial_rotary_factor in the override applies even to LLaMA's default type */
  r = C("{}", "llama", 128, "{\"partial_rotary_factor\":0.5}");
  CHECK(r && pose_rope_dim(r) == 64);
  pose_rope_free(r);
  r = C("{}", "llama", 128, "{\"dim\":32}");
  CHECK(r && pose_rope_dim(r) == 32);
  pose_rope_free(r);
  CHECK_ERR(config_err(cfg, "llama", 128, "{\"factr\":8}"), POSE_EINVAL, "unknown key 'factr'");
  CHECK_ERR(config_err(cfg, "llama", 128, "{\"type\":\"linear\",\"rope_type\":\"yarn\"}"), POSE_EINVAL, "disagree");
  CHECK_ERR(config_err(cfg, "llama", 128, "[1]"), POSE_EINVAL, "override must be an object");
  CHECK_ERR(config_err(cfg, "llama", 128, "{\"factor\":\"8\"}"), POSE_EINVAL, "factor must be a number");
}

/* §2.3: 5.17's grow / keep / reset, driven by the batch-max position */
static void test_dynamic(void) {
  pose_rope *r = R("{\"rope_type\":\"dynamic\",\"factor\":4,\"dim\":128,\"max_position_embeddings\":64}");
  pose_rope *def = R("{\"dim\":128}");
  CHECK(same_inv(r, def) && pose_rope_cached_len(r) == 64);
  float after[7][64];
  const int64_t Ls[7] = {64, 100, 80, 120, 70, 10, 90};
  for (int i = 0; i < 7; i++) {
    pose_rope_update(r, Ls[i] - 1);
    memcpy(after[i], pose_rope_inv_freq(r), sizeof after[i]);
  }
  /* fresh dyn(L) for comparison */
  float fresh[3][64];
  const int64_t FL[3] = {100, 120, 90};
  for (int i = 0; i < 3; i++) {
    pose_rope *f = R("{\"rope_type\":\"dynamic\",\"factor\":4,\"dim\":128,\"max_position_embeddings\":64}");
    pose_rope_update(f, FL[i] - 1);
    memcpy(fresh[i], pose_rope_inv_freq(f), sizeof fresh[i]);
    pose_rope_free(f);
  }
  CHECK(memcmp(after[0], pose_rope_inv_freq(def), sizeof after[0]) == 0); /* L = L0: identity */
  CHECK(memcmp(after[1], fresh[0], sizeof after[1]) == 0);                 /* 100: dyn(100) */
  CHECK(memcmp(after[2], fresh[0], sizeof after[2]) == 0);                 /* 80: keeps dyn(100) */
  CHECK(memcmp(after[3], fresh[1], sizeof after[3]) == 0);                 /* 120: dyn(120) */
  CHECK(memcmp(after[4], fresh[1], sizeof after[4]) == 0);                 /* 70: keeps dyn(120) */
  CHECK(memcmp(after[5], pose_rope_inv_freq(def), sizeof after[5]) == 0); /* 10: reset */
  CHECK(memcmp(after[6], fresh[2], sizeof after[6]) == 0);                 /* 90: dyn(90) */
  CHECK(pose_rope_cached_len(r) == 90);
  CHECK(memcmp(fresh[0], fresh[1], sizeof fresh[0]) != 0);
  /* at L0 exactly no reset happens (L < L0 is needed) */
  pose_rope_update(r, 63);
  CHECK(pose_rope_cached_len(r) == 90 && memcmp(pose_rope_inv_freq(r), fresh[2], sizeof fresh[2]) == 0);
  pose_rope_free(r);
  pose_rope_free(def);
  /* theta' of §2.3: r 128, s 4, L0 4096 */
  r = R("{\"rope_type\":\"dynamic\",\"factor\":4,\"dim\":128,\"max_position_embeddings\":4096}");
  CHECK(pose_rope_base(r) == 10000);
  static const int64_t L[3] = {4097, 8192, 16384};
  static const double tp[3] = {10009.92, 51293.79, 135401.97};
  for (int i = 0; i < 3; i++) {
    pose_rope_update(r, L[i] - 1);
    CHECK(fabs(pose_rope_base(r) - tp[i]) < 0.01 * (i + 1));
    /* the float32 path against the exact formula */
    double s = 4, ex = 10000 * pow(s * (double)L[i] / 4096 - (s - 1), 128.0 / 126.0);
    CHECK(fabs(pose_rope_base(r) / ex - 1) < 5e-7);
  }
  /* the batch maximum decides, whatever the layout */
  int64_t batch[6] = {0, 1, 8191, 5, 4000, 2};
  pose_rope *bm = R("{\"rope_type\":\"dynamic\",\"factor\":4,\"dim\":128,\"max_position_embeddings\":4096}");
  pose_rope_update_positions(bm, batch, 6);
  CHECK(pose_rope_cached_len(bm) == 8192);
  pose_rope_update_positions(bm, batch, 0);
  CHECK(pose_rope_cached_len(bm) == 8192);
  pose_rope_free(bm);
  /* decode step: a single id p means L = p + 1 */
  pose_rope_update(r, 40000);
  CHECK(pose_rope_cached_len(r) == 40001);
  /* clone carries the state and is independent */
  pose_rope *c = pose_rope_clone(r);
  CHECK(c && same_inv(r, c) && pose_rope_cached_len(c) == 40001);
  pose_rope_update(c, 10);
  CHECK(pose_rope_cached_len(c) == 4096 && pose_rope_cached_len(r) == 40001 && !same_inv(r, c));
  pose_rope_free(c);
  pose_rope_free(r);
  /* static types ignore update */
  r = R("{\"rope_type\":\"linear\",\"factor\":4,\"dim\":64}");
  float before[32];
  memcpy(before, pose_rope_inv_freq(r), sizeof before);
  pose_rope_update(r, 100000);
  CHECK(memcmp(before, pose_rope_inv_freq(r), sizeof before) == 0 && pose_rope_cached_len(r) == 0);
  pose_rope_free(r);
}

/* §2.5 yarn edge cases and the non-transformers variants */
static void test_yarn(void) {
  double lo, hi;
  /* truncate false: fractional range */
  pose_rope *r = R("{\"rope_type\":\"yarn\",\"factor\":4,\"dim\":128,\"original_max_position_embeddings\":4096,\"truncate\":false}");
  CHECK(r && pose_rope_yarn_range(r, &lo, &hi) == POSE_OK);
  CHECK(lo > 20 && lo < 21 && hi > 45 && hi < 46 && lo != floor(lo));
  pose_rope *t = R("{\"rope_type\":\"yarn\",\"factor\":4,\"dim\":128,\"original_max_position_embeddings\":4096}");
  CHECK(!same_inv(r, t));
  pose_rope_free(r);
  /* truncate null counts as false (Python truthiness), as in transformers */
  r = R("{\"rope_type\":\"yarn\",\"factor\":4,\"dim\":128,\"original_max_position_embeddings\":4096,\"truncate\":null}");
  CHECK(r && pose_rope_yarn_range(r, &lo, &hi) == POSE_OK && lo != floor(lo));
  pose_rope_free(r);
  /* outside the ramp: pairs <= low keep inv0 bitwise, pairs >= high get 1/(s P) */
  const float *inv = pose_rope_inv_freq(t);
  pose_rope *d = R("{\"dim\":128}");
  const float *i0 = pose_rope_inv_freq(d);
  int keep = 1, interp = 1;
  for (int j = 0; j <= 20; j++) keep &= inv[j] == i0[j];
  for (int j = 46; j < 64; j++) {
    float P = (float)pow((double)10000.0f, (double)((float)(2 * j) / 128.0f));
    interp &= inv[j] == 1.0f / (4.0f * P);
  }
  CHECK(keep && interp);
  /* PoSE's revised blend: equal outside [low, high] (to rounding), different inside */
  r = R("{\"rope_type\":\"yarn\",\"factor\":4,\"dim\":128,\"original_max_position_embeddings\":4096,\"pose_variant\":\"revised\"}");
  const float *rv = pose_rope_inv_freq(r);
  int outside = 1;
  double inside = 0;
  for (int j = 0; j < 64; j++) {
    if (j <= 20) outside &= rv[j] == inv[j];
    else if (j >= 46) outside &= fabs(rv[j] / inv[j] - 1) < 2.5e-7;
    else inside = fmax(inside, fabs(rv[j] / inv[j] - 1));
  }
  CHECK(outside && inside > 1e-2);
  CHECK(pose_rope_attention_factor(r) == pose_rope_attention_factor(t));
  pose_rope_free(r);
  /* YaRN repository: extrapolation_factor 1 and attn_factor 1 are transformers' yarn; attn_factor multiplies A */
  r = R("{\"rope_type\":\"yarn\",\"factor\":4,\"dim\":128,\"original_max_position_embeddings\":4096,"
        "\"extrapolation_factor\":1,\"attn_factor\":1}");
  CHECK(same_inv(r, t) && pose_rope_attention_factor(r) == pose_rope_attention_factor(t));
  pose_rope_free(r);
  r = R("{\"rope_type\":\"yarn\",\"factor\":4,\"dim\":128,\"original_max_position_embeddings\":4096,\"attn_factor\":2}");
  CHECK(same_inv(r, t) && pose_rope_attention_factor(r) == 2 * pose_rope_attention_factor(t));
  pose_rope_free(r);
  r = R("{\"rope_type\":\"yarn\",\"factor\":4,\"dim\":128,\"original_max_position_embeddings\":4096,\"extrapolation_factor\":0.5}");
  CHECK(r && !same_inv(r, t) && pose_rope_inv_freq(r)[63] == inv[63]);
  pose_rope_free(r);
  /* explicit attention_factor */
  r = R("{\"rope_type\":\"yarn\",\"factor\":4,\"dim\":128,\"original_max_position_embeddings\":4096,\"attention_factor\":1.25}");
  CHECK(same_inv(r, t) && pose_rope_attention_factor(r) == 1.25);
  pose_rope_free(r);
  /* low == high: +0.001 guard */
  r = R("{\"rope_type\":\"yarn\",\"factor\":2,\"dim\":32,\"original_max_position_embeddings\":2048,"
        "\"beta_fast\":2,\"beta_slow\":2,\"truncate\":false}");
  CHECK(r && pose_rope_yarn_range(r, &lo, &hi) == POSE_OK && hi == lo + 0.001);
  int finite = 1;
  for (int j = 0; r && j < 16; j++) finite &= isfinite(pose_rope_inv_freq(r)[j]) && pose_rope_inv_freq(r)[j] > 0;
  CHECK(finite);
  pose_rope_free(r);
  r = R("{\"rope_type\":\"yarn\",\"factor\":2,\"dim\":32,\"original_max_position_embeddings\":6}");
  CHECK(r && pose_rope_yarn_range(r, &lo, &hi) == POSE_OK && lo == 0 && hi == 0.001);
  pose_rope_free(r);
  /* high clamped at r-1 (not r/2-1) */
  r = R("{\"rope_type\":\"yarn\",\"factor\":2,\"dim\":32,\"rope_theta\":100,\"original_max_position_embeddings\":65536}");
  CHECK(r && pose_rope_yarn_range(r, &lo, &hi) == POSE_OK && hi == 31 && lo == 20);
  pose_rope_free(r);
  pose_rope_free(d);
  pose_rope_free(t);
}

/* §2.6: short/long switching at L_orig */
static void test_longrope(void) {
  const char *js = "{\"rope_type\":\"longrope\",\"dim\":8,\"max_position_embeddings\":16384,"
                   "\"original_max_position_embeddings\":4096,\"short_factor\":[1,1.5,2,3],\"long_factor\":[1,4,9,16]}";
  pose_rope *r = R(js);
  CHECK(r != NULL);
  if (!r) return;
  float shortv[4], longv[4];
  memcpy(shortv, pose_rope_inv_freq(r), sizeof shortv);
  for (int j = 0; j < 4; j++) {
    float P = (float)pow((double)10000.0f, (double)((float)(2 * j) / 8.0f));
    static const float sf[4] = {1, 1.5f, 2, 3};
    CHECK(shortv[j] == 1.0f / (sf[j] * P));
  }
  pose_rope_update(r, 4095); /* L = L_orig: short */
  CHECK(memcmp(shortv, pose_rope_inv_freq(r), sizeof shortv) == 0);
  pose_rope_update(r, 4096); /* L = L_orig + 1: long */
  memcpy(longv, pose_rope_inv_freq(r), sizeof longv);
  CHECK(longv[1] == 1.0f / (4.0f * (float)pow((double)10000.0f, (double)(2.0f / 8.0f))));
  double A = pose_rope_attention_factor(r);
  /* A from max_position_embeddings / original when factor is absent; fixed whatever L */
  CHECK(A == sqrt(1 + log(4.0) / log(4096.0)));
  pose_rope_update(r, 100);
  CHECK(memcmp(shortv, pose_rope_inv_freq(r), sizeof shortv) == 0 && pose_rope_attention_factor(r) == A);
  pose_rope_free(r);
  r = R("{\"rope_type\":\"longrope\",\"dim\":8,\"factor\":2,\"max_position_embeddings\":16384,"
        "\"original_max_position_embeddings\":4096,\"short_factor\":[1,1.5,2,3],\"long_factor\":[1,4,9,16]}");
  CHECK(r && pose_rope_attention_factor(r) == sqrt(1 + log(2.0) / log(4096.0)));
  pose_rope_free(r);
  r = R("{\"rope_type\":\"longrope\",\"dim\":8,\"factor\":0.5,\"original_max_position_embeddings\":4096,"
        "\"short_factor\":[1,1,1,1],\"long_factor\":[1,1,1,1]}");
  CHECK(r && pose_rope_attention_factor(r) == 1.0);
  pose_rope_free(r);
  r = R("{\"rope_type\":\"longrope\",\"dim\":8,\"factor\":8,\"attention_factor\":1.5,\"original_max_position_embeddings\":4096,"
        "\"short_factor\":[1,1,1,1],\"long_factor\":[1,1,1,1]}");
  CHECK(r && pose_rope_attention_factor(r) == 1.5);
  pose_rope_free(r);
}

/* §2.7 band edges: a lane exactly at wl == lw or wl == hw is in the medium (smoothed) band */
static void test_llama3_edges(void) {
  pose_rope *d = R("{\"dim\":64}");
  const float *i0 = pose_rope_inv_freq(d);
  float twopi = (float)(2 * M_PI);
  int jl = 20, jh = 12;
  float wl_l = (1.0f / i0[jl]) * twopi, wl_h = (1.0f / i0[jh]) * twopi;
  double Lo = 8192, a = Lo / wl_l, b = Lo / wl_h;
  CHECK((float)(Lo / a) == wl_l && (float)(Lo / b) == wl_h && b > a);
  char buf[512];
  snprintf(buf, sizeof buf,
           "{\"rope_type\":\"llama3\",\"factor\":8,\"low_freq_factor\":%.17g,\"high_freq_factor\":%.17g,"
           "\"original_max_position_embeddings\":8192,\"dim\":64}", a, b);
  pose_rope *r = R(buf);
  CHECK(r != NULL);
  if (r) {
    const float *inv = pose_rope_inv_freq(r);
    float lw = (float)(Lo / a), hw = (float)(Lo / b);
    int ok = 1, medium = 0;
    for (int j = 0; j < 32; j++) {
      float wl = (1.0f / i0[j]) * twopi;
      float v = wl > lw ? i0[j] / 8.0f : i0[j];
      if (!(wl < hw) && !(wl > lw)) {
        float sm = ((1.0f / wl) * 8192.0f - (float)a) / (float)(b - a);
        float x = ((1.0f - sm) * v) / 8.0f, y = sm * v;
        v = x + y;
        medium++;
      }
      ok &= inv[j] == v;
    }
    CHECK(ok && medium == jl - jh + 1);
    CHECK(inv[jh - 1] == i0[jh - 1]);        /* high band: unchanged */
    CHECK(inv[jl + 1] == i0[jl + 1] / 8.0f); /* low band: divided by s */
    /* at wl == hw the smoothing factor is 1 (up to rounding) and at wl == lw it is 0 */
    CHECK(fabs(inv[jh] / i0[jh] - 1) < 1e-6 && fabs(inv[jl] * 8 / i0[jl] - 1) < 1e-6);
  }
  pose_rope_free(r);
  pose_rope_free(d);
}

/* §1.3, §13.2: rotary dims that are not powers of two, partial rotary, proportional */
static void test_dims(void) {
  static const int dims[3] = {24, 80, 96};
  for (int k = 0; k < 3; k++) {
    char buf[128];
    snprintf(buf, sizeof buf, "{\"dim\":%d}", dims[k]);
    pose_rope *r = R(buf);
    CHECK(r && pose_rope_dim(r) == dims[k]);
    int ok = 1;
    for (int j = 0; r && j < dims[k] / 2; j++)
      ok &= fabs(pose_rope_inv_freq(r)[j] / pow(10000.0, -2.0 * j / dims[k]) - 1) < 3e-7;
    CHECK(ok);
    pose_rope_free(r);
  }
  /* head_dim with partial_rotary_factor */
  pose_rope *r = R("{\"head_dim\":128,\"partial_rotary_factor\":0.25}");
  CHECK(r && pose_rope_dim(r) == 32);
  pose_rope *w = R("{\"dim\":32}");
  CHECK(same_inv(r, w));
  pose_rope_free(r); pose_rope_free(w);
  /* proportional: H/2 pairs, int(prf*H//2) real ones with exponent denominator H, the rest 0 (identity) */
  r = R("{\"rope_type\":\"proportional\",\"dim\":128,\"partial_rotary_factor\":0.25,\"factor\":2,\"rope_theta\":1e6}");
  CHECK(r && pose_rope_dim(r) == 128);
  if (r) {
    const float *inv = pose_rope_inv_freq(r);
    int ok = 1;
    for (int j = 0; j < 16; j++) {
      float P = (float)pow((double)1e6f, (double)((float)(2 * j) / 128.0f));
      ok &= inv[j] == (1.0f / P) / 2.0f;
    }
    for (int j = 16; j < 64; j++) ok &= inv[j] == 0.0f;
    CHECK(ok);
    int64_t p = 1000;
    float c[64], s[64];
    pose_rope_cos_sin(r, &p, 1, c, s);
    CHECK(c[40] == 1.0f && s[40] == 0.0f && c[3] != 1.0f);
  }
  pose_rope_free(r);
}

static void test_errors(void) {
  CHECK_ERR(json_err("{\"rope_type\":\"linear\",\"factor\":0,\"dim\":64}"), POSE_EINVAL, "factor must be > 0");
  CHECK_ERR(json_err("{\"rope_type\":\"linear\",\"factor\":-2,\"dim\":64}"), POSE_EINVAL, "factor must be > 0");
  CHECK_ERR(json_err("{\"rope_type\":\"linear\",\"factor\":\"4\",\"dim\":64}"), POSE_EINVAL, "factor must be a number, got a string");
  CHECK_ERR(json_err("{\"rope_type\":\"linear\",\"factor\":true,\"dim\":64}"), POSE_EINVAL, "factor must be a number, got a boolean");
  CHECK_ERR(json_err("{\"rope_type\":\"linear\",\"dim\":64}"), POSE_EINVAL, "linear needs factor");
  CHECK_ERR(json_err("{\"rope_type\":\"yarn\",\"dim\":64,\"original_max_position_embeddings\":4096}"), POSE_EINVAL, "yarn needs factor");
  CHECK_ERR(json_err("{\"rope_type\":\"yarn\",\"factor\":4,\"dim\":64}"), POSE_EINVAL, "original_max_position_embeddings");
  CHECK_ERR(json_err("{\"rope_type\":\"yarn\",\"factor\":null,\"dim\":64,\"original_max_position_embeddings\":4096}"),
            POSE_EINVAL, "needs max_position_embeddings");
  CHECK_ERR(json_err("{\"rope_type\":\"dynamic\",\"factor\":4,\"dim\":64}"), POSE_EINVAL, "dynamic needs max_position_embeddings");
  CHECK_ERR(json_err("{\"rope_type\":\"ntk\",\"dim\":64}"), POSE_EINVAL, "unknown rope_type 'ntk'");
  CHECK_ERR(json_err("{\"rope_type\":4,\"dim\":64}"), POSE_EINVAL, "rope_type must be a string");
  CHECK_ERR(json_err("{\"dim\":64,\"scale\":2}"), POSE_EINVAL, "unknown key 'scale'");
  CHECK_ERR(json_err("{\"rope_type\":\"default\"}"), POSE_EINVAL, "dim (or head_dim) is required");
  CHECK_ERR(json_err("{\"dim\":63}"), POSE_EINVAL, "dim must be even");
  CHECK_ERR(json_err("{\"dim\":64.5}"), POSE_EINVAL, "dim must be a positive integer");
  CHECK_ERR(json_err("{\"dim\":256,\"head_dim\":128}"), POSE_EINVAL, "exceeds head_dim");
  CHECK_ERR(json_err("{\"head_dim\":100,\"partial_rotary_factor\":0.25}"), POSE_EINVAL, "must be even");
  CHECK_ERR(json_err("{\"head_dim\":128,\"partial_rotary_factor\":1.5}"), POSE_EINVAL, "partial_rotary_factor must be in (0, 1]");
  CHECK_ERR(json_err("{\"dim\":64,\"rope_theta\":-1}"), POSE_EINVAL, "rope_theta must be > 0");
  CHECK_ERR(json_err("{\"dim\":64,\"rope_theta\":10000,\"base\":500000}"), POSE_EINVAL, "disagree");
  CHECK_ERR(json_err("{\"rope_type\":\"vanilla_ntk\",\"factor\":2,\"dim\":2}"), POSE_EINVAL, "dim > 2");
  CHECK_ERR(json_err("{\"rope_type\":\"longrope\",\"dim\":8,\"factor\":2,\"original_max_position_embeddings\":4096,"
                     "\"short_factor\":[1,1,1],\"long_factor\":[1,1,1,1]}"), POSE_EINVAL, "short_factor has 3 entries, expected 4");
  CHECK_ERR(json_err("{\"rope_type\":\"longrope\",\"dim\":8,\"factor\":2,\"original_max_position_embeddings\":4096,"
                     "\"short_factor\":[1,1,1,1],\"long_factor\":[1,1,1,1,1]}"), POSE_EINVAL, "long_factor has 5 entries");
  CHECK_ERR(json_err("{\"rope_type\":\"longrope\",\"dim\":8,\"factor\":2,\"original_max_position_embeddings\":4096,"
                     "\"short_factor\":[1,1,1,1]}"), POSE_EINVAL, "longrope needs long_factor");
  CHECK_ERR(json_err("{\"rope_type\":\"longrope\",\"dim\":8,\"factor\":2,\"original_max_position_embeddings\":4096,"
                     "\"short_factor\":[1,\"x\",1,1],\"long_factor\":[1,1,1,1]}"), POSE_EINVAL, "short_factor[2] must be a number");
  CHECK_ERR(json_err("{\"rope_type\":\"longrope\",\"dim\":8,\"factor\":2,\"original_max_position_embeddings\":4096,"
                     "\"short_factor\":1,\"long_factor\":[1,1,1,1]}"), POSE_EINVAL, "short_factor must be a list");
  CHECK_ERR(json_err("{\"rope_type\":\"llama3\",\"factor\":8,\"high_freq_factor\":4,\"dim\":64,"
                     "\"original_max_position_embeddings\":8192}"), POSE_EINVAL, "llama3 needs low_freq_factor");
  CHECK_ERR(json_err("{\"rope_type\":\"llama3\",\"factor\":8,\"low_freq_factor\":4,\"high_freq_factor\":4,\"dim\":64,"
                     "\"original_max_position_embeddings\":8192}"), POSE_EINVAL, "high_freq_factor (4) must be greater");
  CHECK_ERR(json_err("{\"rope_type\":\"yarn\",\"factor\":4,\"dim\":64,\"original_max_position_embeddings\":4096.5}"),
            POSE_EINVAL, "original_max_position_embeddings must be a positive integer");
  CHECK_ERR(json_err("{\"rope_type\":\"yarn\",\"factor\":4,\"dim\":64,\"max_position_embeddings\":0}"),
            POSE_EINVAL, "max_position_embeddings must be a positive integer");
  CHECK_ERR(json_err("{\"rope_type\":\"yarn\",\"factor\":4,\"dim\":64,\"original_max_position_embeddings\":4096,\"truncate\":\"no\"}"),
            POSE_EINVAL, "truncate must be a boolean");
  CHECK_ERR(json_err("{\"rope_type\":\"yarn\",\"factor\":4,\"dim\":64,\"original_max_position_embeddings\":4096,\"beta_fast\":-1}"),
            POSE_EINVAL, "beta_fast must be >= 0");
  CHECK_ERR(json_err("{\"rope_type\":\"yarn\",\"factor\":4,\"dim\":64,\"original_max_position_embeddings\":4096,\"mscale\":\"1\"}"),
            POSE_EINVAL, "mscale must be a number");
  CHECK_ERR(json_err("{\"rope_type\":\"yarn\",\"factor\":4,\"dim\":64,\"original_max_position_embeddings\":4096,\"attention_factor\":0}"),
            POSE_EINVAL, "attention_factor must be > 0");
  CHECK_ERR(json_err("{\"rope_type\":\"yarn\",\"factor\":4,\"dim\":64,\"original_max_position_embeddings\":4096,\"pose_variant\":\"x\"}"),
            POSE_EINVAL, "pose_variant must be \"revised\"");
  CHECK_ERR(json_err("{\"rope_type\":\"linear\",\"factor\":4,\"dim\":64,\"pose_variant\":\"revised\"}"),
            POSE_EINVAL, "pose_variant applies to yarn only");
  CHECK_ERR(json_err("{\"rope_type\":\"yarn\",\"factor\":4,\"dim\":64,\"rope_theta\":1,\"original_max_position_embeddings\":4096}"),
            POSE_EINVAL, "yarn needs rope_theta > 1");
  CHECK_ERR(json_err("[1,2]"), POSE_EINVAL, "must be a JSON object");
  /* config-level errors */
  CHECK_ERR(config_err("{\"rope_scaling\":\"linear\"}", "llama", 64, NULL), POSE_EINVAL, "rope_scaling must be an object or null");
  CHECK_ERR(config_err("{\"rope_parameters\":[1]}", "llama", 64, NULL), POSE_EINVAL, "rope_parameters must be an object");
  CHECK_ERR(config_err("{\"rope_scaling\":{\"type\":\"linear\"}}", "llama", 64, NULL), POSE_EINVAL, "linear needs factor");
  CHECK_ERR(config_err("{\"rope_scaling\":{\"type\":\"su\",\"factor\":2}}", "llama", 64, NULL), POSE_EINVAL, "unknown rope_type 'su'");
  CHECK_ERR(config_err("{\"pose_rope\":3}", "llama", 64, NULL), POSE_EINVAL, "pose_rope must be an object");
  CHECK_ERR(config_err("{\"rope_parameters\":{\"full_attention\":{\"rope_type\":\"default\"}}}", "llama", 64, NULL),
            POSE_EUNSUPPORTED, "per-layer rope_parameters ('full_attention'");
  CHECK_ERR(config_err("{\"rope_theta\":\"1e4\"}", "llama", 64, NULL), POSE_EINVAL, "rope_theta must be a number");
  CHECK_ERR(config_err("{}", "llama", 0, NULL), POSE_EINVAL, "head_dim must be in");
  CHECK_ERR(config_err("[]", "llama", 64, NULL), POSE_EINVAL, "config must be a JSON object");
}

/* Captures what f writes on stderr (the save warning). */
static int stderr_lines(pose_status (*f)(const pose_rope *, cJSON *), const pose_rope *r, cJSON *cfg, pose_status *st) {
  fflush(stderr);
  int saved = dup(2);
  FILE *tmp = tmpfile();
  dup2(fileno(tmp), 2);
  *st = f(r, cfg);
  fflush(stderr);
  dup2(saved, 2);
  close(saved);
  rewind(tmp);
  int lines = 0, ch;
  while ((ch = fgetc(tmp)) != EOF) lines += ch == '\n';
  fclose(tmp);
  return lines;
}

/* DESIGN.md "Saving": write the v4 form, read it back, get the same scheme; inexpressible ones under pose_rope. */
static void round_trip(const char *json, const char *family, int head_dim, const char *base_cfg, int expect_pose_rope,
                       const char *want_type_back) {
  pose_rope *r = R(json);
  CHECK(r != NULL);
  if (!r) return;
  /* the scheme as a model holds it: built from its config so that family and head_dim are known */
  cJSON *keys = pose_rope_to_json(r);
  cJSON *cfg0 = J(base_cfg);
  pose_rope *m = NULL;
  CHECK_OK(pose_rope_from_config(cfg0, family, head_dim, keys, &m));
  cJSON_Delete(keys);
  if (!m) { pose_rope_free(r); cJSON_Delete(cfg0); return; }
  CHECK(same_inv(r, m));
  pose_status st;
  int lines = stderr_lines(pose_rope_to_config, m, cfg0, &st);
  CHECK(st == POSE_OK);
  const cJSON *pr = cJSON_GetObjectItemCaseSensitive(cfg0, "pose_rope");
  if ((pr != NULL) != expect_pose_rope || lines != expect_pose_rope)
    fprintf(stderr, "round trip %s (%s): pose_rope %s, %d warning lines\n", json, family, pr ? "written" : "absent", lines);
  CHECK((pr != NULL) == expect_pose_rope && lines == expect_pose_rope);
  const cJSON *rs = cJSON_GetObjectItemCaseSensitive(cfg0, "rope_scaling");
  if (cJSON_IsObject(rs)) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(rs, "rope_type"), *b = cJSON_GetObjectItemCaseSensitive(rs, "type");
    CHECK(cJSON_IsString(a) && cJSON_IsString(b) && strcmp(a->valuestring, b->valuestring) == 0);
  }
  CHECK(isfinite(num(cJSON_GetObjectItemCaseSensitive(cfg0, "rope_theta"))));
  CHECK(!cJSON_GetObjectItemCaseSensitive(cfg0, "rope_parameters"));
  /* through text, as a file would */
  char *text = cJSON_PrintUnformatted(cfg0);
  cJSON *cfg1 = J(text);
  free(text);
  pose_rope *back = NULL;
  CHECK_OK(pose_rope_from_config(cfg1, family, head_dim, NULL, &back));
  if (back) {
    CHECK(same_inv(m, back) && pose_rope_attention_factor(m) == pose_rope_attention_factor(back));
    if (strcmp(pose_rope_type_name(back), want_type_back) != 0)
      fprintf(stderr, "round trip %s: back as %s, expected %s\n", json, pose_rope_type_name(back), want_type_back);
    CHECK(strcmp(pose_rope_type_name(back), want_type_back) == 0);
    /* runtime state too */
    pose_rope_update(m, 20000);
    pose_rope_update(back, 20000);
    CHECK(same_inv(m, back));
  }
  pose_rope_free(back);
  cJSON_Delete(cfg1);
  cJSON_Delete(cfg0);
  pose_rope_free(m);
  pose_rope_free(r);
}

static void test_save_load(void) {
  const char *llama = "{\"model_type\":\"llama\",\"max_position_embeddings\":16384,\"rope_theta\":10000}";
  round_trip("{\"dim\":128,\"rope_theta\":500000}", "llama", 128, llama, 0, "default");
  round_trip("{\"rope_type\":\"linear\",\"factor\":3,\"dim\":128}", "llama", 128, llama, 0, "linear");
  round_trip("{\"rope_type\":\"dynamic\",\"factor\":4,\"dim\":128,\"max_position_embeddings\":16384}", "llama", 128, llama, 0, "dynamic");
  /* PoSE's static NTK is saved as the default type with theta' */
  round_trip("{\"rope_type\":\"vanilla_ntk\",\"factor\":8,\"dim\":128}", "llama", 128, llama, 0, "default");
  round_trip("{\"rope_type\":\"yarn\",\"factor\":16,\"dim\":128,\"original_max_position_embeddings\":1024,\"beta_fast\":16,"
             "\"truncate\":false,\"mscale\":1,\"mscale_all_dim\":0.5}", "llama", 128, llama, 0, "yarn");
  round_trip("{\"rope_type\":\"yarn\",\"factor\":4,\"dim\":128,\"original_max_position_embeddings\":4096,\"attention_factor\":1.5}",
             "llama", 128, llama, 0, "yarn");
  round_trip("{\"rope_type\":\"llama3\",\"factor\":8,\"low_freq_factor\":1,\"high_freq_factor\":4,"
             "\"original_max_position_embeddings\":8192,\"rope_theta\":500000,\"dim\":128}", "llama", 128, llama, 0, "llama3");
  round_trip("{\"rope_type\":\"longrope\",\"dim\":8,\"factor\":4,\"original_max_position_embeddings\":4096,"
             "\"short_factor\":[1,1.5,2,3],\"long_factor\":[1,4,9,16.25]}", "llama", 8, llama, 0, "longrope");
  round_trip("{\"rope_type\":\"proportional\",\"dim\":128,\"partial_rotary_factor\":0.25,\"factor\":2}", "llama", 128, llama, 0,
             "proportional");
  /* partial rotary on a rope-utils type: written as partial_rotary_factor */
  round_trip("{\"rope_type\":\"linear\",\"factor\":2,\"dim\":34}", "llama", 102, llama, 0, "linear");
  /* inexpressible: PoSE's revised YaRN, the YaRN repo's factors, LLaMA's default with a partial dim */
  round_trip("{\"rope_type\":\"yarn\",\"factor\":16,\"dim\":128,\"original_max_position_embeddings\":2048,\"pose_variant\":\"revised\"}",
             "llama", 128, llama, 1, "yarn");
  round_trip("{\"rope_type\":\"yarn\",\"factor\":16,\"dim\":128,\"original_max_position_embeddings\":2048,\"attn_factor\":1.1}",
             "llama", 128, llama, 1, "yarn");
  round_trip("{\"rope_type\":\"yarn\",\"factor\":16,\"dim\":128,\"original_max_position_embeddings\":2048,\"extrapolation_factor\":0.9}",
             "llama", 128, llama, 1, "yarn");
  round_trip("{\"dim\":64}", "llama", 128, llama, 1, "default");
  /* dynamic whose L0 differs from the model's max_position_embeddings */
  round_trip("{\"rope_type\":\"dynamic\",\"factor\":4,\"dim\":64,\"max_position_embeddings\":2048}", "llama", 64, llama, 1, "dynamic");
  /* families */
  const char *neox = "{\"model_type\":\"gpt_neox\",\"max_position_embeddings\":2048,\"rotary_pct\":0.25,\"rotary_emb_base\":10000}";
  round_trip("{\"dim\":24,\"rope_theta\":1000000}", "gpt_neox", 96, neox, 0, "default");
  round_trip("{\"rope_type\":\"linear\",\"factor\":4,\"dim\":48}", "gpt_neox", 96, neox, 0, "linear");
  const char *gptj = "{\"model_type\":\"gptj\",\"n_positions\":2048,\"rotary_dim\":64}";
  round_trip("{\"dim\":64}", "gptj", 256, gptj, 0, "default");
  round_trip("{\"rope_type\":\"linear\",\"factor\":4,\"dim\":64}", "gptj", 256, gptj, 1, "linear");
  round_trip("{\"rope_type\":\"vanilla_ntk\",\"factor\":4,\"dim\":64}", "gptj", 256, gptj, 1, "vanilla_ntk");
  const char *bc = "{\"model_type\":\"baichuan\",\"max_position_embeddings\":4096}";
  round_trip("{\"dim\":128}", "baichuan", 128, bc, 0, "default");
  round_trip("{\"rope_type\":\"yarn\",\"factor\":4,\"dim\":128,\"original_max_position_embeddings\":4096}", "baichuan", 128, bc, 1, "yarn");

  /* specifics of what is written */
  pose_rope *r = R("{\"rope_type\":\"vanilla_ntk\",\"factor\":4,\"dim\":128}");
  cJSON *cfg = J("{\"rope_parameters\":{\"rope_type\":\"linear\",\"factor\":2},\"pose_rope\":{\"dim\":8}}");
  CHECK_OK(pose_rope_to_config(r, cfg));
  CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(cfg, "rope_scaling")));
  CHECK(fabs(num(cJSON_GetObjectItemCaseSensitive(cfg, "rope_theta")) - 40889.94) < 0.01);
  CHECK(!cJSON_GetObjectItemCaseSensitive(cfg, "pose_rope") && !cJSON_GetObjectItemCaseSensitive(cfg, "rope_parameters"));
  cJSON_Delete(cfg);
  pose_rope_free(r);
  r = R("{\"rope_type\":\"yarn\",\"factor\":4,\"dim\":128,\"original_max_position_embeddings\":4096}");
  cfg = J("{\"original_max_position_embeddings\":1024}");
  CHECK_OK(pose_rope_to_config(r, cfg));
  CHECK(cJSON_GetObjectItemCaseSensitive(cfg, "original_max_position_embeddings")->valuedouble == 4096);
  const cJSON *rs = cJSON_GetObjectItemCaseSensitive(cfg, "rope_scaling");
  CHECK(cJSON_GetObjectItemCaseSensitive(rs, "original_max_position_embeddings")->valuedouble == 4096);
  /* real-valued keys print as Python floats, integer ones as ints */
  CHECK(cJSON_IsRaw(cJSON_GetObjectItemCaseSensitive(rs, "factor")) &&
        strcmp(cJSON_GetObjectItemCaseSensitive(rs, "factor")->valuestring, "4.0") == 0);
  char *txt = cJSON_PrintUnformatted(cfg);
  CHECK(strstr(txt, "\"rope_theta\":10000.0") && strstr(txt, "\"original_max_position_embeddings\":4096,") &&
        strstr(txt, "\"beta_fast\":32.0"));
  free(txt);
  cJSON_Delete(cfg);
  pose_rope_free(r);
  r = R("{\"rope_type\":\"dynamic\",\"factor\":4,\"dim\":64,\"max_position_embeddings\":2048}");
  cfg = J("{}");
  CHECK_OK(pose_rope_to_config(r, cfg));
  CHECK(cJSON_GetObjectItemCaseSensitive(cfg, "max_position_embeddings")->valuedouble == 2048);
  CHECK(!cJSON_GetObjectItemCaseSensitive(cfg, "pose_rope"));
  cJSON_Delete(cfg);
  pose_rope_free(r);
  r = R("{\"dim\":8}");
  cfg = J("[]");
  CHECK_ERR(pose_rope_to_config(r, cfg), POSE_EINVAL, "config must be a JSON object");
  cJSON_Delete(cfg);
  pose_rope_free(r);
}

/* pose.rope keys out and back in: the same scheme for every type */
static void test_json_round_trip(void) {
  const char *schemes[] = {
      "{\"dim\":96,\"rope_theta\":123456.5}",
      "{\"rope_type\":\"linear\",\"factor\":2.5,\"dim\":64}",
      "{\"rope_type\":\"dynamic\",\"factor\":3,\"dim\":80,\"max_position_embeddings\":1000}",
      "{\"rope_type\":\"vanilla_ntk\",\"factor\":16,\"head_dim\":128}",
      "{\"rope_type\":\"yarn\",\"factor\":null,\"dim\":64,\"max_position_embeddings\":65536,\"original_max_position_embeddings\":2048,"
      "\"beta_fast\":0,\"truncate\":false,\"pose_variant\":\"revised\",\"attn_factor\":1.05,\"extrapolation_factor\":0.75}",
      "{\"rope_type\":\"llama3\",\"factor\":8,\"low_freq_factor\":1,\"high_freq_factor\":4,\"max_position_embeddings\":8192,\"dim\":64}",
      "{\"rope_type\":\"longrope\",\"dim\":4,\"max_position_embeddings\":8192,\"original_max_position_embeddings\":2048,"
      "\"short_factor\":[1,1.0000001],\"long_factor\":[3.25,7]}",
      "{\"rope_type\":\"proportional\",\"head_dim\":64,\"partial_rotary_factor\":0.5}",
  };
  for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++) {
    pose_rope *a = R(schemes[i]);
    CHECK(a != NULL);
    if (!a) continue;
    cJSON *k = pose_rope_to_json(a);
    char *text = cJSON_PrintUnformatted(k);
    cJSON *k2 = J(text);
    pose_rope *b = NULL;
    CHECK_OK(pose_rope_from_json(k2, &b));
    CHECK(b && same_inv(a, b) && pose_rope_attention_factor(a) == pose_rope_attention_factor(b) &&
          pose_rope_kind(a) == pose_rope_kind(b));
    if (b) {
      pose_rope_update(a, 9000);
      pose_rope_update(b, 9000);
      CHECK(same_inv(a, b));
    }
    free(text);
    cJSON_Delete(k);
    cJSON_Delete(k2);
    pose_rope_free(a);
    pose_rope_free(b);
  }
}

int main(void) {
  test_spec_rows();
  test_spec_cos_sin();
  test_spec_scalars();
  test_config_parsing();
  test_override();
  test_dynamic();
  test_yarn();
  test_longrope();
  test_llama3_edges();
  test_dims();
  test_errors();
  test_save_load();
  test_json_round_trip();
  return test_summary("test_rope");
}
