/* Checkpoint I/O: round trips through the writer (single file and shards; f32, bf16, f16), then every malformed
 * input we know of, each written byte by byte here, each expected to fail with its own status and message. */
#define _GNU_SOURCE
#include <dirent.h>
#include <ftw.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint.h"
#include "testutil.h"

static char root[256];

static char *P(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A path under the temporary root (a few static buffers in rotation, enough for one call's arguments). */
static char *P(const char *fmt, ...) {
  static char bufs[8][512];
  static int k = 0;
  char *b = bufs[k++ & 7];
  int n = snprintf(b, 512, "%s/", root);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(b + n, 512 - (size_t)n, fmt, ap);
  va_end(ap);
  return b;
}

static void write_bytes(const char *path, const void *p, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f) { perror(path); exit(2); }
  if (n) fwrite(p, 1, n, f);
  fclose(f);
}

static void write_text(const char *path, const char *s) { write_bytes(path, s, strlen(s)); }

/* A safetensors file from a header string (its length written as given by hlen, or the true length if hlen is
 * UINT64_MAX) and a data section. */
static void write_st_len(const char *path, const char *header, uint64_t hlen, const void *data, size_t dlen) {
  size_t hl = strlen(header);
  if (hlen == UINT64_MAX) hlen = hl;
  unsigned char *buf = malloc(8 + hl + dlen + 1);
  memcpy(buf, &hlen, 8);
  memcpy(buf + 8, header, hl);
  if (dlen) memcpy(buf + 8 + hl, data, dlen);
  write_bytes(path, buf, 8 + hl + dlen);
  free(buf);
}

static void write_st(const char *path, const char *header, const void *data, size_t dlen) {
  write_st_len(path, header, UINT64_MAX, data, dlen);
}

/* A checkpoint directory with a valid config.json. */
static const char *mkckpt(const char *name) {
  char *d = P("%s", name);
  mkdir(d, 0755);
  write_text(P("%s/config.json", name), "{\"model_type\": \"llama\", \"hidden_size\": 8}");
  return d;
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
  (void)sb; (void)flag; (void)ftw;
  return remove(p);
}

static cJSON *tiny_config(void) {
  cJSON *c = cJSON_CreateObject();
  cJSON_AddStringToObject(c, "model_type", "llama");
  cJSON_AddNumberToObject(c, "hidden_size", 8);
  cJSON_AddNumberToObject(c, "rms_norm_eps", 1e-6);
  cJSON_AddStringToObject(c, "note", "tab\there");
  cJSON *rs = cJSON_AddObjectToObject(c, "rope_scaling");
  cJSON_AddItemToObject(rs, "factor", pose_json_float(4.0));
  cJSON_AddItemToObject(rs, "beta", pose_json_float(0.1));
  cJSON_AddItemToObject(rs, "big", pose_json_float(1e20));
  return c;
}

static uint64_t file_size(const char *p) {
  struct stat sb;
  return stat(p, &sb) == 0 ? (uint64_t)sb.st_size : 0;
}

/* Names starting with '.' in a directory: leftover temporary files. */
static int hidden_files(const char *dir) {
  DIR *d = opendir(dir);
  int n = 0;
  struct dirent *de;
  while (d && (de = readdir(d)))
    if (de->d_name[0] == '.' && strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) n++;
  if (d) closedir(d);
  return n;
}

static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *s = malloc((size_t)n + 1);
  size_t got = fread(s, 1, (size_t)n, f);
  s[got] = 0;
  fclose(f);
  return s;
}

/* ---- round trips ------------------------------------------------------------------------------------------ */

static void test_single_f32(void) {
  float a[6] = {1, -2, 3.5f, 0.1f, -1e-30f, 65536.5f}, b[4] = {7, 8, 9, 10}, s = 42.0f;
  int64_t ids[3] = {1, -2, (int64_t)1 << 40};
  float zdummy = 0;
  pose_st_entry e[5] = {
      {"model.a", POSE_F32, 2, {2, 3}, a},
      {"model.b", POSE_F32, 1, {4}, b},
      {"model.ids", POSE_I64, 1, {3}, ids},
      {"model.scalar", POSE_F32, 0, {0}, &s},
      {"model.empty", POSE_F32, 2, {0, 4}, &zdummy},
  };
  cJSON *cfg = tiny_config();
  char dir[512];
  snprintf(dir, sizeof dir, "%s", P("single/nested")); /* P's buffers rotate: keep a copy */
  CHECK_OK(pose_checkpoint_save(dir, cfg, e, 5, POSE_F32, 0));
  CHECK(file_size(P("single/nested/model.safetensors")) > 0);
  CHECK(file_size(P("single/nested/model.safetensors.index.json")) == 0);
  CHECK(hidden_files(dir) == 0);

  /* layout on disk: 8-byte length, header padded with spaces to a multiple of 8, metadata, data in entry order */
  char *raw = slurp(P("single/nested/model.safetensors"));
  uint64_t hlen;
  memcpy(&hlen, raw, 8);
  CHECK((8 + hlen) % 8 == 0);
  CHECK(strstr(raw + 8, "\"__metadata__\":{\"format\":\"pt\"}") != NULL);
  CHECK(strstr(raw + 8, "\"model.a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}") != NULL);
  CHECK(strstr(raw + 8, "\"model.b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[24,40]}") != NULL);
  CHECK(memcmp(raw + 8 + hlen, a, sizeof a) == 0);
  free(raw);
  /* config.json: pretty-printed with two-space indentation, and equal to what was saved */
  char *cj = slurp(P("single/nested/config.json"));
  CHECK(cj && !strchr(cj, '\t'));
  CHECK(cj && strstr(cj, "\n  \"model_type\": \"llama\"") != NULL);
  CHECK(cj && strstr(cj, "\"tab\\there\"") != NULL); /* a tab inside a string stays escaped */
  CHECK(cj && strstr(cj, "\"factor\": 4.0,") && strstr(cj, "\"beta\": 0.1,") && strstr(cj, "\"big\": 1e+20\n"));
  CHECK(pose_json_float(NAN) == NULL);
  free(cj);

  pose_checkpoint *c = NULL;
  CHECK_OK(pose_checkpoint_open(dir, &c));
  if (!c) { cJSON_Delete(cfg); return; }
  const cJSON *rcfg = pose_checkpoint_config(c);
  CHECK(cJSON_GetObjectItem(rcfg, "hidden_size")->valuedouble == 8);
  CHECK(strcmp(cJSON_GetObjectItem(rcfg, "note")->valuestring, "tab\there") == 0);
  const cJSON *rf = cJSON_GetObjectItem(cJSON_GetObjectItem(rcfg, "rope_scaling"), "factor");
  CHECK(cJSON_IsNumber(rf) && rf->valuedouble == 4.0); /* the raw "4.0" reads back as a number */
  CHECK(cJSON_GetObjectItem(cJSON_GetObjectItem(rcfg, "rope_scaling"), "beta")->valuedouble == 0.1);
  CHECK(pose_checkpoint_count(c) == 5);
  CHECK(strcmp(pose_checkpoint_name(c, 0), "model.a") == 0); /* names are listed sorted */
  CHECK(pose_checkpoint_name(c, 5) == NULL);
  CHECK(pose_checkpoint_has(c, "model.b") && !pose_checkpoint_has(c, "model.c"));
  CHECK(strcmp(pose_checkpoint_dir(c), dir) == 0);
  float got[6] = {0};
  int64_t sh[2] = {2, 3};
  CHECK_OK(pose_checkpoint_read_f32(c, "model.a", 2, sh, got));
  CHECK(memcmp(got, a, sizeof a) == 0);
  float gs = 0;
  CHECK_OK(pose_checkpoint_read_f32(c, "model.scalar", 0, NULL, &gs));
  CHECK(gs == 42.0f);
  int64_t esh[2] = {0, 4};
  CHECK_OK(pose_checkpoint_read_f32(c, "model.empty", 2, esh, NULL));
  pose_dtype dt;
  int nd;
  int64_t shp[4];
  CHECK_OK(pose_checkpoint_info(c, "model.ids", &dt, &nd, shp));
  CHECK(dt == POSE_I64 && nd == 1 && shp[0] == 3);
  CHECK(strcmp(pose_checkpoint_st_dtype(c, "model.ids"), "I64") == 0);
  const void *rp;
  size_t rn;
  CHECK_OK(pose_checkpoint_raw(c, "model.ids", &rp, &rn));
  CHECK(rn == sizeof ids && memcmp(rp, ids, sizeof ids) == 0);
  int64_t ish[1] = {3};
  float junk[3];
  CHECK_ERR(pose_checkpoint_read_f32(c, "model.ids", 1, ish, junk), POSE_EUNSUPPORTED,
            "tensor 'model.ids' has dtype I64; only F32, BF16 and F16 tensors can be read as weights");
  /* wrong expected shape: message gives both */
  int64_t want[2] = {2, 4};
  CHECK_ERR(pose_checkpoint_read_f32(c, "model.a", 2, want, got), POSE_EFORMAT,
            "model.safetensors: tensor 'model.a' has shape [2, 3], the config implies [2, 4]");
  int64_t want1[1] = {6};
  CHECK_ERR(pose_checkpoint_read_f32(c, "model.a", 1, want1, got), POSE_EFORMAT, "has shape [2, 3], the config implies [6]");
  /* missing tensor: names the tensor and the directory, and suggests the prefixed name */
  CHECK_ERR(pose_checkpoint_read_f32(c, "lm_head.weight", 2, sh, got), POSE_EINVAL, "tensor 'lm_head.weight' not found");
  CHECK_ERR(pose_checkpoint_read_f32(c, "lm_head.weight", 2, sh, got), POSE_EINVAL, "single/nested");
  CHECK_ERR(pose_checkpoint_read_f32(c, "a", 2, sh, got), POSE_EINVAL, "did you mean 'model.a'?");
  CHECK_ERR(pose_checkpoint_info(c, "nope", &dt, &nd, shp), POSE_EINVAL, "tensor 'nope' not found");
  CHECK_ERR(pose_checkpoint_raw(c, "nope", &rp, &rn), POSE_EINVAL, "tensor 'nope' not found");
  CHECK(pose_checkpoint_st_dtype(c, "nope") == NULL);
  pose_checkpoint_close(c);
  cJSON_Delete(cfg);
}

static void test_bf16_f16(void) {
  /* values chosen to exercise rounding: ties to even (1 + 2^-8, 1 + 3*2^-8 in bf16), inexact decimals, f16
   * overflow to Inf, an f16 subnormal */
  float v[8] = {1.0f, -2.5f, 0.1f, 1.00390625f, 1.01171875f, 3.14159265f, 1e5f, 3e-6f};
  float expect_bf[8], expect_h[8];
  for (int i = 0; i < 8; i++) {
    expect_bf[i] = pose_bf16_to_f32(pose_f32_to_bf16(v[i]));
    expect_h[i] = pose_f16_to_f32(pose_f32_to_f16(v[i]));
  }
  CHECK(expect_bf[3] == 1.0f && expect_bf[4] == 1.015625f); /* ties to even */
  CHECK(expect_bf[2] == 0.10009765625f);
  CHECK(isinf(expect_h[6]) && expect_h[7] > 0 && expect_h[7] < 6.2e-5f);
  uint16_t already_bf[2] = {0x3f80, 0xc020}; /* 1.0, -2.5 */
  pose_st_entry e[2] = {{"w", POSE_F32, 2, {2, 4}, v}, {"raw_bf16", POSE_BF16, 1, {2}, already_bf}};
  cJSON *cfg = tiny_config();
  int64_t sh[2] = {2, 4}, sh2[1] = {2};
  float got[8], got2[2];

  CHECK_OK(pose_checkpoint_save(P("bf16"), cfg, e, 2, POSE_BF16, 0));
  pose_checkpoint *c = NULL;
  CHECK_OK(pose_checkpoint_open(P("bf16"), &c));
  if (c) {
    CHECK(strcmp(pose_checkpoint_st_dtype(c, "w"), "BF16") == 0);
    CHECK_OK(pose_checkpoint_read_f32(c, "w", 2, sh, got));
    CHECK(memcmp(got, expect_bf, sizeof got) == 0);
    const void *rp;
    size_t rn;
    CHECK_OK(pose_checkpoint_raw(c, "raw_bf16", &rp, &rn)); /* bf16 -> bf16: bits untouched */
    CHECK(rn == 4 && memcmp(rp, already_bf, 4) == 0);
    CHECK_OK(pose_checkpoint_read_f32(c, "raw_bf16", 1, sh2, got2));
    CHECK(got2[0] == 1.0f && got2[1] == -2.5f);
    pose_checkpoint_close(c);
  }
  CHECK(file_size(P("bf16/model.safetensors")) > 0);

  CHECK_OK(pose_checkpoint_save(P("f16"), cfg, e, 2, POSE_F16, 0));
  c = NULL;
  CHECK_OK(pose_checkpoint_open(P("f16"), &c));
  if (c) {
    CHECK(strcmp(pose_checkpoint_st_dtype(c, "w"), "F16") == 0);
    CHECK(strcmp(pose_checkpoint_st_dtype(c, "raw_bf16"), "F16") == 0);
    CHECK_OK(pose_checkpoint_read_f32(c, "w", 2, sh, got));
    CHECK(memcmp(got, expect_h, sizeof got) == 0);
    CHECK_OK(pose_checkpoint_read_f32(c, "raw_bf16", 1, sh2, got2));
    CHECK(got2[0] == 1.0f && got2[1] == -2.5f);
    pose_checkpoint_close(c);
  }
  /* f32 source saved as f32 from a bf16 entry: widened exactly */
  CHECK_OK(pose_checkpoint_save(P("f32_from_bf16"), cfg, &e[1], 1, POSE_F32, 0));
  c = NULL;
  CHECK_OK(pose_checkpoint_open(P("f32_from_bf16"), &c));
  if (c) {
    CHECK(strcmp(pose_checkpoint_st_dtype(c, "raw_bf16"), "F32") == 0);
    CHECK_OK(pose_checkpoint_read_f32(c, "raw_bf16", 1, sh2, got2));
    CHECK(got2[0] == 1.0f && got2[1] == -2.5f);
    pose_checkpoint_close(c);
  }
  cJSON_Delete(cfg);
}

static void fill(float *x, int n, float base) {
  for (int i = 0; i < n; i++) x[i] = base + 0.25f * (float)i;
}

static void test_sharded(void) {
  float t[6][6];
  for (int i = 0; i < 6; i++) fill(t[i], 6, (float)(10 * i));
  float big[20];
  fill(big, 20, -5);
  /* 24 bytes each in f32; limit 50 -> {t0,t1} {t2,t3} {big (80 bytes: alone, larger than the limit)} {t4,t5} */
  pose_st_entry e[7] = {
      {"t0", POSE_F32, 1, {6}, t[0]}, {"t1", POSE_F32, 2, {2, 3}, t[1]}, {"t2", POSE_F32, 1, {6}, t[2]},
      {"t3", POSE_F32, 1, {6}, t[3]}, {"big", POSE_F32, 2, {4, 5}, big}, {"t4", POSE_F32, 1, {6}, t[4]},
      {"t5", POSE_F32, 1, {6}, t[5]},
  };
  cJSON *cfg = tiny_config();
  char dir[512];
  snprintf(dir, sizeof dir, "%s", P("sharded"));
  CHECK_OK(pose_checkpoint_save(dir, cfg, e, 7, POSE_F32, 50));
  for (int s = 1; s <= 4; s++) CHECK(file_size(P("sharded/model-%05d-of-00004.safetensors", s)) > 0);
  CHECK(file_size(P("sharded/model-00005-of-00005.safetensors")) == 0);
  CHECK(file_size(P("sharded/model.safetensors")) == 0);
  CHECK(hidden_files(dir) == 0);
  char *idx = slurp(P("sharded/model.safetensors.index.json"));
  cJSON *ij = idx ? cJSON_Parse(idx) : NULL;
  free(idx);
  CHECK(ij != NULL);
  if (ij) {
    const cJSON *ts = cJSON_GetObjectItem(cJSON_GetObjectItem(ij, "metadata"), "total_size");
    CHECK(cJSON_IsNumber(ts) && ts->valuedouble == 6 * 24 + 80);
    const cJSON *wm = cJSON_GetObjectItem(ij, "weight_map");
    CHECK(cJSON_GetArraySize(wm) == 7);
    CHECK(strcmp(cJSON_GetObjectItem(wm, "t1")->valuestring, "model-00001-of-00004.safetensors") == 0);
    CHECK(strcmp(cJSON_GetObjectItem(wm, "t2")->valuestring, "model-00002-of-00004.safetensors") == 0);
    CHECK(strcmp(cJSON_GetObjectItem(wm, "big")->valuestring, "model-00003-of-00004.safetensors") == 0);
    CHECK(strcmp(cJSON_GetObjectItem(wm, "t5")->valuestring, "model-00004-of-00004.safetensors") == 0);
    CHECK(strcmp(wm->child->string, "big") == 0); /* weight_map is sorted by name */
    cJSON_Delete(ij);
  }
  pose_checkpoint *c = NULL;
  CHECK_OK(pose_checkpoint_open(dir, &c));
  if (c) {
    CHECK(pose_checkpoint_count(c) == 7);
    float got[20];
    int64_t s6[1] = {6}, s23[2] = {2, 3}, s45[2] = {4, 5};
    CHECK_OK(pose_checkpoint_read_f32(c, "t1", 2, s23, got));
    CHECK(memcmp(got, t[1], 24) == 0);
    CHECK_OK(pose_checkpoint_read_f32(c, "t5", 1, s6, got));
    CHECK(memcmp(got, t[5], 24) == 0);
    CHECK_OK(pose_checkpoint_read_f32(c, "big", 2, s45, got));
    CHECK(memcmp(got, big, 80) == 0);
    /* errors from a sharded checkpoint name the shard */
    CHECK_ERR(pose_checkpoint_read_f32(c, "t4", 2, s23, got), POSE_EFORMAT,
              "model-00004-of-00004.safetensors: tensor 't4' has shape [6], the config implies [2, 3]");
    pose_checkpoint_close(c);
  }

  /* bf16 shards: 12 bytes per t_i, limit 30 -> pairs again */
  CHECK_OK(pose_checkpoint_save(P("sharded_bf16"), cfg, e, 7, POSE_BF16, 30));
  CHECK(file_size(P("sharded_bf16/model-00004-of-00004.safetensors")) > 0);
  c = NULL;
  CHECK_OK(pose_checkpoint_open(P("sharded_bf16"), &c));
  if (c) {
    float got[20];
    int64_t s45[2] = {4, 5};
    CHECK_OK(pose_checkpoint_read_f32(c, "big", 2, s45, got));
    int ok = 1;
    for (int i = 0; i < 20; i++) ok &= got[i] == pose_bf16_to_f32(pose_f32_to_bf16(big[i]));
    CHECK(ok);
    pose_checkpoint_close(c);
  }

  /* Re-save over the sharded directory: first as 2 shards (old shards 3,4 of 4 and 1,2 of 4 must go), then as a
   * single file (the index and every shard must go). An open handle keeps reading the old contents. */
  pose_checkpoint *old = NULL;
  CHECK_OK(pose_checkpoint_open(dir, &old));
  float z[6] = {0};
  pose_st_entry e2[2] = {{"t0", POSE_F32, 1, {6}, z}, {"t1", POSE_F32, 1, {6}, z}};
  CHECK_OK(pose_checkpoint_save(dir, cfg, e2, 2, POSE_F32, 30));
  CHECK(file_size(P("sharded/model-00001-of-00002.safetensors")) > 0);
  CHECK(file_size(P("sharded/model-00002-of-00002.safetensors")) > 0);
  CHECK(file_size(P("sharded/model-00001-of-00004.safetensors")) == 0);
  CHECK(file_size(P("sharded/model-00004-of-00004.safetensors")) == 0);
  CHECK_OK(pose_checkpoint_save(dir, cfg, e2, 2, POSE_F32, 0));
  CHECK(file_size(P("sharded/model.safetensors")) > 0);
  CHECK(file_size(P("sharded/model.safetensors.index.json")) == 0);
  CHECK(file_size(P("sharded/model-00001-of-00002.safetensors")) == 0);
  CHECK(hidden_files(dir) == 0);
  if (old) {
    float got[6];
    int64_t s6[1] = {6};
    CHECK_OK(pose_checkpoint_read_f32(old, "t5", 1, s6, got));
    CHECK(memcmp(got, t[5], 24) == 0);
    pose_checkpoint_close(old);
  }
  c = NULL;
  CHECK_OK(pose_checkpoint_open(dir, &c));
  if (c) {
    CHECK(pose_checkpoint_count(c) == 2);
    pose_checkpoint_close(c);
  }
  cJSON_Delete(cfg);
}

static void test_save_errors(void) {
  cJSON *cfg = tiny_config();
  float x[2] = {1, 2};
  pose_st_entry e[2] = {{"a", POSE_F32, 1, {2}, x}, {"a", POSE_F32, 1, {2}, x}};
  CHECK_ERR(pose_checkpoint_save(P("bad_save"), cfg, e, 2, POSE_F32, 0), POSE_EINVAL, "'a' is given twice");
  CHECK_ERR(pose_checkpoint_save(P("bad_save"), cfg, e, 1, POSE_I32, 0), POSE_EINVAL, "save dtype must be f32");
  CHECK_ERR(pose_checkpoint_save(P("bad_save"), NULL, e, 1, POSE_F32, 0), POSE_EINVAL, "config must be a JSON object");
  pose_st_entry meta = {"__metadata__", POSE_F32, 1, {2}, x};
  CHECK_ERR(pose_checkpoint_save(P("bad_save"), cfg, &meta, 1, POSE_F32, 0), POSE_EINVAL, "reserved name");
  pose_st_entry neg = {"n", POSE_F32, 1, {-2}, x};
  CHECK_ERR(pose_checkpoint_save(P("bad_save"), cfg, &neg, 1, POSE_F32, 0), POSE_EINVAL, "negative dimension");
  pose_st_entry nodata = {"n", POSE_F32, 1, {2}, NULL};
  CHECK_ERR(pose_checkpoint_save(P("bad_save"), cfg, &nodata, 1, POSE_F32, 0), POSE_EINVAL, "has no data");
  write_text(P("a_file"), "x");
  CHECK_ERR(pose_checkpoint_save(P("a_file/sub"), cfg, e, 1, POSE_F32, 0), POSE_EIO, "cannot create directory");
  cJSON_Delete(cfg);
}

/* ---- malformed inputs ------------------------------------------------------------------------------------- */

static pose_status open_close(const char *dir) {
  pose_checkpoint *c = NULL;
  pose_status st = pose_checkpoint_open(dir, &c);
  pose_checkpoint_close(c);
  return st;
}

static void test_malformed_files(void) {
  float d4[4] = {1, 2, 3, 4};
  const char *d;

  d = mkckpt("m_short");
  write_bytes(P("m_short/model.safetensors"), "\x05\0\0\0\0", 5);
  CHECK_ERR(open_close(d), POSE_EFORMAT, "model.safetensors: the file is 5 bytes, too short for the 8-byte header length");

  d = mkckpt("m_hlen");
  write_st_len(P("m_hlen/model.safetensors"), "{}", 1000, NULL, 0);
  CHECK_ERR(open_close(d), POSE_EFORMAT, "model.safetensors: header length 1000 runs past the end of the file (10 bytes)");

  d = mkckpt("m_hlen_huge");
  write_st_len(P("m_hlen_huge/model.safetensors"), "{}", (uint64_t)1 << 40, NULL, 0);
  CHECK_ERR(open_close(d), POSE_EFORMAT, "exceeds the 100000000-byte limit");

  d = mkckpt("m_notjson");
  write_st(P("m_notjson/model.safetensors"), "{\"a\": {\"dtype\": \"F32\", ", d4, 16);
  CHECK_ERR(open_close(d), POSE_EFORMAT, "model.safetensors: the 23-byte header is not valid JSON");

  d = mkckpt("m_nul");
  write_bytes(P("m_nul/model.safetensors"), "\x04\0\0\0\0\0\0\0{}\0 ", 12);
  CHECK_ERR(open_close(d), POSE_EFORMAT, "header contains a NUL byte");

  d = mkckpt("m_array");
  write_st(P("m_array/model.safetensors"), "[1, 2]", NULL, 0);
  CHECK_ERR(open_close(d), POSE_EFORMAT, "model.safetensors: the header JSON is not an object");

  d = mkckpt("m_dtype");
  write_st(P("m_dtype/model.safetensors"), "{\"w\":{\"dtype\":\"F33\",\"shape\":[4],\"data_offsets\":[0,16]}}", d4, 16);
  CHECK_ERR(open_close(d), POSE_EFORMAT, "model.safetensors: tensor 'w': unknown dtype 'F33'");

  d = mkckpt("m_nodtype");
  write_st(P("m_nodtype/model.safetensors"), "{\"w\":{\"shape\":[4],\"data_offsets\":[0,16]}}", d4, 16);
  CHECK_ERR(open_close(d), POSE_EFORMAT, "tensor 'w': missing or non-string \"dtype\"");

  d = mkckpt("m_subbyte");
  write_st(P("m_subbyte/model.safetensors"), "{\"w\":{\"dtype\":\"F4\",\"shape\":[4],\"data_offsets\":[0,2]}}", d4, 2);
  CHECK_ERR(open_close(d), POSE_EUNSUPPORTED, "tensor 'w': dtype F4 packs sub-byte elements");

  d = mkckpt("m_negshape");
  write_st(P("m_negshape/model.safetensors"), "{\"w\":{\"dtype\":\"F32\",\"shape\":[-1,4],\"data_offsets\":[0,16]}}", d4, 16);
  CHECK_ERR(open_close(d), POSE_EFORMAT, "tensor 'w': \"shape\" must be a list of non-negative integers, entry 0 is -1");

  d = mkckpt("m_fracshape");
  write_st(P("m_fracshape/model.safetensors"), "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,1.5],\"data_offsets\":[0,12]}}", d4, 16);
  CHECK_ERR(open_close(d), POSE_EFORMAT, "non-negative integers, entry 1 is 1.5");

  d = mkckpt("m_strshape");
  write_st(P("m_strshape/model.safetensors"), "{\"w\":{\"dtype\":\"F32\",\"shape\":\"4\",\"data_offsets\":[0,16]}}", d4, 16);
  CHECK_ERR(open_close(d), POSE_EFORMAT, "\"shape\" must be a list of non-negative integers, got \"4\"");

  d = mkckpt("m_badoff");
  write_st(P("m_badoff/model.safetensors"), "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0]}}", d4, 16);
  CHECK_ERR(open_close(d), POSE_EFORMAT, "\"data_offsets\" must be [begin, end] with non-negative integers, got [0]");

  d = mkckpt("m_reversed");
  write_st(P("m_reversed/model.safetensors"), "{\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[16,0]}}", d4, 16);
  CHECK_ERR(open_close(d), POSE_EFORMAT, "data_offsets [16, 0) end before they begin");

  d = mkckpt("m_pastend");
  write_st(P("m_pastend/model.safetensors"),
           "{\"model.layers.0.mlp.up_proj.weight\":{\"dtype\":\"F32\",\"shape\":[2,4],\"data_offsets\":[0,32]}}", d4, 16);
  CHECK_ERR(open_close(d), POSE_EFORMAT,
            "model.safetensors: tensor 'model.layers.0.mlp.up_proj.weight': data_offsets [0, 32) extend past the end "
            "of the file (16 bytes of data after the header); the file is truncated or the header lies");

  d = mkckpt("m_sizemismatch");
  write_st(P("m_sizemismatch/model.safetensors"), "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,12]}}", d4, 16);
  CHECK_ERR(open_close(d), POSE_EFORMAT, "tensor 'w': data_offsets [0, 12) hold 12 bytes, but dtype F32 and shape [2, 2] need 16");

  d = mkckpt("m_bf16size");
  write_st(P("m_bf16size/model.safetensors"), "{\"w\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[0,16]}}", d4, 16);
  CHECK_ERR(open_close(d), POSE_EFORMAT, "hold 16 bytes, but dtype BF16 and shape [4] need 8");

  d = mkckpt("m_overlap");
  write_st(P("m_overlap/model.safetensors"),
           "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
           "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", d4, 16);
  CHECK_ERR(open_close(d), POSE_EFORMAT, "tensors 'a' [0, 8) and 'b' [4, 12) overlap");

  d = mkckpt("m_dupname");
  write_st(P("m_dupname/model.safetensors"),
           "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
           "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", d4, 16);
  CHECK_ERR(open_close(d), POSE_EFORMAT, "tensor 'a' appears twice in the header");

  d = mkckpt("m_badmeta");
  write_st(P("m_badmeta/model.safetensors"), "{\"__metadata__\": 3}", NULL, 0);
  CHECK_ERR(open_close(d), POSE_EFORMAT, "\"__metadata__\" must be an object");

  /* truncated data: a good file cut short */
  float x[8] = {0};
  pose_st_entry e = {"model.layers.0.mlp.up_proj.weight", POSE_F32, 2, {2, 4}, x};
  cJSON *cfg = tiny_config();
  CHECK_OK(pose_checkpoint_save(P("m_truncated"), cfg, &e, 1, POSE_F32, 0));
  const char *f = P("m_truncated/model.safetensors");
  CHECK(truncate(f, (off_t)(file_size(f) - 4)) == 0);
  CHECK_ERR(open_close(P("m_truncated")), POSE_EFORMAT,
            "tensor 'model.layers.0.mlp.up_proj.weight': data_offsets [0, 32) extend past the end of the file "
            "(28 bytes of data after the header); the file is truncated");
  cJSON_Delete(cfg);
}

/* Files we did not write but must accept: extra metadata, a header not padded to 8 (so f32 data sits at an odd
 * address), holes between tensors, integer and BOOL tensors that are reported but not read as weights. */
static void test_foreign_file(void) {
  const char *d = mkckpt("foreign");
  unsigned char data[1 + 16 + 3 + 4 + 2];
  float w[4] = {1.5f, -2, 3, 1e-3f};
  memset(data, 0xab, sizeof data);
  memcpy(data + 1, w, 16);                         /* w at [1, 17): unaligned */
  data[17] = 1; data[18] = 0; data[19] = 1;        /* mask (BOOL) at [17, 20) */
  int32_t i32 = -7;
  memcpy(data + 20, &i32, 4);                      /* k (I32) at [20, 24) */
  uint16_t h = 0x3c00;                             /* f16 1.0 at [24, 26) */
  memcpy(data + 24, &h, 2);
  write_st(P("foreign/model.safetensors"),
           "{\"__metadata__\":{\"format\":\"pt\",\"source\":\"hand\"},"
           "\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[1,17]},"
           "\"mask\":{\"dtype\":\"BOOL\",\"shape\":[3],\"data_offsets\":[17,20]},"
           "\"k\":{\"dtype\":\"I32\",\"shape\":[],\"data_offsets\":[20,24]},"
           "\"h\":{\"dtype\":\"F16\",\"shape\":[1,1,1,1,1],\"data_offsets\":[24,26]}}   ",
           data, sizeof data);
  pose_checkpoint *c = NULL;
  CHECK_OK(pose_checkpoint_open(d, &c));
  if (!c) return;
  CHECK(pose_checkpoint_count(c) == 4);
  float got[4];
  int64_t s22[2] = {2, 2};
  CHECK_OK(pose_checkpoint_read_f32(c, "w", 2, s22, got));
  CHECK(memcmp(got, w, 16) == 0);
  CHECK(strcmp(pose_checkpoint_st_dtype(c, "mask"), "BOOL") == 0);
  pose_dtype dt;
  int nd;
  int64_t shp[4];
  CHECK_ERR(pose_checkpoint_info(c, "mask", &dt, &nd, shp), POSE_EUNSUPPORTED, "tensor 'mask' has dtype BOOL");
  int64_t s3[1] = {3};
  CHECK_ERR(pose_checkpoint_read_f32(c, "mask", 1, s3, got), POSE_EUNSUPPORTED,
            "model.safetensors: tensor 'mask' has dtype BOOL; only F32, BF16 and F16");
  CHECK_OK(pose_checkpoint_info(c, "k", &dt, &nd, shp));
  CHECK(dt == POSE_I32 && nd == 0);
  CHECK_ERR(pose_checkpoint_read_f32(c, "k", 0, NULL, got), POSE_EUNSUPPORTED, "tensor 'k' has dtype I32");
  CHECK_ERR(pose_checkpoint_info(c, "h", &dt, &nd, shp), POSE_EUNSUPPORTED, "has 5 dimensions");
  int64_t s5[5] = {1, 1, 1, 1, 1};
  CHECK_OK(pose_checkpoint_read_f32(c, "h", 5, s5, got));
  CHECK(got[0] == 1.0f);
  pose_checkpoint_close(c);
}

static void test_malformed_index(void) {
  float d4[4] = {1, 2, 3, 4};
  const char *hdr_a = "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}";
  const char *hdr_b = "{\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}";
  const char *d;

  d = mkckpt("i_missing_shard");
  write_st(P("i_missing_shard/s1.safetensors"), hdr_a, d4, 16);
  write_text(P("i_missing_shard/model.safetensors.index.json"),
             "{\"metadata\":{},\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"s2.safetensors\"}}");
  CHECK_ERR(open_close(d), POSE_EIO,
            "model.safetensors.index.json: weight_map puts tensor 'b' in shard 's2.safetensors', which does not exist");

  d = mkckpt("i_absent_tensor");
  write_st(P("i_absent_tensor/s1.safetensors"), hdr_a, d4, 16);
  write_st(P("i_absent_tensor/s2.safetensors"), hdr_b, d4, 16);
  write_text(P("i_absent_tensor/model.safetensors.index.json"),
             "{\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"s1.safetensors\"}}");
  CHECK_ERR(open_close(d), POSE_EFORMAT,
            "weight_map puts tensor 'b' in shard 's1.safetensors', but that shard has no such tensor");

  d = mkckpt("i_duplicate");
  write_st(P("i_duplicate/s1.safetensors"), hdr_a, d4, 16);
  write_st(P("i_duplicate/s2.safetensors"),
           "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
           "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}", d4, 16);
  write_text(P("i_duplicate/model.safetensors.index.json"),
             "{\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"s2.safetensors\"}}");
  CHECK_ERR(open_close(d), POSE_EFORMAT, "tensor 'a' appears in two shards");

  d = mkckpt("i_bad_shard");
  write_bytes(P("i_bad_shard/s1.safetensors"), "xyz", 3);
  write_text(P("i_bad_shard/model.safetensors.index.json"), "{\"weight_map\":{\"a\":\"s1.safetensors\"}}");
  CHECK_ERR(open_close(d), POSE_EFORMAT, "s1.safetensors: the file is 3 bytes");

  d = mkckpt("i_traversal");
  write_text(P("i_traversal/model.safetensors.index.json"), "{\"weight_map\":{\"a\":\"../s1.safetensors\"}}");
  CHECK_ERR(open_close(d), POSE_EFORMAT, "weight_map entry for tensor 'a' must be the file name of a shard");

  d = mkckpt("i_no_map");
  write_text(P("i_no_map/model.safetensors.index.json"), "{\"metadata\":{\"total_size\":16}}");
  CHECK_ERR(open_close(d), POSE_EFORMAT, "\"weight_map\" is missing, not an object, or empty");

  d = mkckpt("i_notjson");
  write_text(P("i_notjson/model.safetensors.index.json"), "{\"weight_map\":");
  CHECK_ERR(open_close(d), POSE_EFORMAT, "model.safetensors.index.json: not valid JSON");

  /* a good index: tensors spread over two shards */
  d = mkckpt("i_good");
  write_st(P("i_good/s1.safetensors"), hdr_a, d4, 16);
  write_st(P("i_good/s2.safetensors"), hdr_b, d4, 16);
  write_text(P("i_good/model.safetensors.index.json"),
             "{\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"s2.safetensors\"}}");
  pose_checkpoint *c = NULL;
  CHECK_OK(pose_checkpoint_open(d, &c));
  if (c) {
    float got[4];
    int64_t s4[1] = {4};
    CHECK_OK(pose_checkpoint_read_f32(c, "b", 1, s4, got));
    CHECK(memcmp(got, d4, 16) == 0);
    pose_checkpoint_close(c);
  }
}

static void test_directory_errors(void) {
  float d4[4] = {1, 2, 3, 4};
  const char *hdr = "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}";
  CHECK_ERR(open_close(P("does_not_exist")), POSE_EIO, "does_not_exist");
  write_text(P("plain_file"), "x");
  CHECK_ERR(open_close(P("plain_file")), POSE_EINVAL, "is not a directory");

  const char *d = P("c_noconfig");
  mkdir(d, 0755);
  write_st(P("c_noconfig/model.safetensors"), hdr, d4, 16);
  CHECK_ERR(open_close(d), POSE_EIO, "c_noconfig: no config.json");

  d = P("c_badconfig");
  mkdir(d, 0755);
  write_st(P("c_badconfig/model.safetensors"), hdr, d4, 16);
  write_text(P("c_badconfig/config.json"), "{\n  \"model_type\": \"llama\",\n  \"hidden_size\": 8,,\n}");
  CHECK_ERR(open_close(d), POSE_EFORMAT, "config.json: not valid JSON (error at line 3");

  write_text(P("c_badconfig/config.json"), "[\"llama\"]");
  CHECK_ERR(open_close(d), POSE_EFORMAT, "config.json: the top-level JSON value is not an object");

  d = mkckpt("c_noweights");
  CHECK_ERR(open_close(d), POSE_EIO, "no model.safetensors or model.safetensors.index.json");
  write_text(P("c_noweights/pytorch_model.bin"), "x");
  CHECK_ERR(open_close(d), POSE_EIO, "only pytorch_model.bin");
}

int main(void) {
  snprintf(root, sizeof root, "/tmp/pose_test_checkpoint_XXXXXX");
  if (!mkdtemp(root)) { perror("mkdtemp"); return 1; }
  test_single_f32();
  test_bf16_f16();
  test_sharded();
  test_save_errors();
  test_malformed_files();
  test_foreign_file();
  test_malformed_index();
  test_directory_errors();
  nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
  return test_summary("test_checkpoint");
}
