/* RoPE against transformers itself: tests/fixtures/rope_golden.json, written by tests/fixtures/gen_rope.py on a
 * machine with torch + transformers (5.17). Each case is a config.json subset read by pose_rope_from_config and the
 * float32 bits transformers computed on the CPU: inv_freq (<= 2 ulp; torch's pow is Sleef, ours correctly rounded),
 * the attention factor, the dynamic/longrope frequencies after each forward (dynamic: <= 5e-7 relative, spec §2.3),
 * and cos/sin at given positions (<= 2 ulp). Skips (77) while the fixture is absent. POSE_ROPE_GOLDEN overrides the
 * path. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "rope.h"
#include "testutil.h"

static int64_t ulps(float a, float b) {
  int32_t ia, ib;
  memcpy(&ia, &a, 4);
  memcpy(&ib, &b, 4);
  int64_t x = ia < 0 ? (int64_t)INT32_MIN - ia : ia, y = ib < 0 ? (int64_t)INT32_MIN - ib : ib;
  return x > y ? x - y : y - x;
}

static float hexf(const cJSON *s) {
  uint32_t u = (uint32_t)strtoul(cJSON_IsString(s) ? s->valuestring : "7fc00000", NULL, 16);
  float f;
  memcpy(&f, &u, 4);
  return f;
}

static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *buf = malloc((size_t)n + 1);
  if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) { free(buf); buf = NULL; }
  if (buf) buf[n] = 0;
  fclose(f);
  return buf;
}

static long lanes = 0, inexact = 0, worst = 0;

/* want: array of hex bit patterns; tol_ulp >= 0: ulp bound, else -tol_ulp is a relative bound */
static int compare(const char *name, const char *what, const float *got, int n, const cJSON *want, double tol) {
  if (!cJSON_IsArray(want) || cJSON_GetArraySize(want) != n) {
    fprintf(stderr, "%s: %s has %d values, pose has %d\n", name, what, cJSON_GetArraySize(want), n);
    return 0;
  }
  int ok = 1, shown = 0, i = 0;
  for (const cJSON *w = want->child; w; w = w->next, i++) {
    float e = hexf(w);
    int64_t d = ulps(got[i], e);
    lanes++;
    if (d) inexact++;
    if (d > worst) worst = d;
    int good = tol >= 0 ? d <= (int64_t)tol : (got[i] == e || fabs((double)got[i] / e - 1) <= -tol);
    if (!good) {
      ok = 0;
      if (shown++ < 4) fprintf(stderr, "%s: %s[%d] = %.9g (0x%08x), transformers %.9g, %lld ulp\n", name, what, i, got[i],
                               *(const uint32_t *)(const void *)&got[i], e, (long long)d);
    }
  }
  return ok;
}

/* cos/sin: 2 ulp, or the error that inv_freq's allowed 2-ulp difference (Sleef's pow vs a correctly rounded one)
 * makes in the fp32 angle p*inv at a large position p: |d cos| <= A * (p * 2 ulp(inv) + ulp(phi)). */
static int compare_trig(const char *name, const char *what, const float *got, const int64_t *pos, int n, int h,
                        const float *inv, double A, const cJSON *want) {
  if (!cJSON_IsArray(want) || cJSON_GetArraySize(want) != n * h) {
    fprintf(stderr, "%s: %s has %d values, pose has %d\n", name, what, cJSON_GetArraySize(want), n * h);
    return 0;
  }
  int ok = 1, shown = 0, i = 0;
  for (const cJSON *w = want->child; w; w = w->next, i++) {
    float e = hexf(w);
    int64_t d = ulps(got[i], e);
    lanes++;
    if (d) inexact++;
    if (d > worst) worst = d;
    float iv = inv[i % h], phi = iv * (float)pos[i / h];
    double angle_tol = A * ((double)pos[i / h] * 2 * (nextafterf(iv, INFINITY) - iv) + (nextafterf(phi, INFINITY) - phi));
    if (d > 2 && fabs((double)got[i] - e) > angle_tol) {
      ok = 0;
      if (shown++ < 4) fprintf(stderr, "%s: %s[%d] = %.9g, transformers %.9g, %lld ulp, beyond the angle bound %.3g\n",
                               name, what, i, got[i], e, (long long)d, angle_tol);
    }
  }
  return ok;
}

int main(void) {
  const char *path = getenv("POSE_ROPE_GOLDEN");
  if (!path || !*path) path = "tests/fixtures/rope_golden.json";
  char *text = slurp(path);
  if (!text) {
    printf("SKIP: %s is absent (generate it with tests/fixtures/gen_rope.py where transformers is installed)\n", path);
    return 77;
  }
  cJSON *doc = cJSON_Parse(text);
  free(text);
  CHECK(doc != NULL);
  const cJSON *cases = cJSON_GetObjectItemCaseSensitive(doc, "cases");
  CHECK(cJSON_IsArray(cases) && cJSON_GetArraySize(cases) > 0);
  const cJSON *ver = cJSON_GetObjectItemCaseSensitive(doc, "transformers");
  int n_cases = 0, skipped = 0;
  for (const cJSON *c = cases ? cases->child : NULL; c; c = c->next) {
    const char *name = cJSON_GetObjectItemCaseSensitive(c, "name")->valuestring;
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(c, "error");
    if (err) {
      printf("  transformers could not run '%s': %s\n", name, cJSON_IsString(err) ? err->valuestring : "?");
      skipped++;
      continue;
    }
    n_cases++;
    const char *family = cJSON_GetObjectItemCaseSensitive(c, "model_type")->valuestring;
    int H = (int)cJSON_GetObjectItemCaseSensitive(c, "head_dim")->valuedouble;
    pose_rope *r = NULL;
    pose_status st = pose_rope_from_config(cJSON_GetObjectItemCaseSensitive(c, "config"), family, H, NULL, &r);
    if (st) fprintf(stderr, "%s: %s\n", name, pose_error_message());
    CHECK(st == POSE_OK);
    if (st) continue;
    int h = pose_rope_dim(r) / 2;
    const cJSON *inv = cJSON_GetObjectItemCaseSensitive(c, "inv");
    CHECK(compare(name, "inv", pose_rope_inv_freq(r), h, inv, 2));
    double A = strtod(cJSON_GetObjectItemCaseSensitive(c, "A")->valuestring, NULL);
    if (fabs(pose_rope_attention_factor(r) - A) > 1e-14 * fabs(A))
      fprintf(stderr, "%s: A = %.17g, transformers %.17g\n", name, pose_rope_attention_factor(r), A);
    CHECK(fabs(pose_rope_attention_factor(r) - A) <= 1e-14 * fabs(A));
    const cJSON *steps = cJSON_GetObjectItemCaseSensitive(c, "steps");
    int dynamic = pose_rope_kind(r) == POSE_ROPE_DYNAMIC;
    for (const cJSON *s = steps ? steps->child : NULL; s; s = s->next) {
      int64_t m = (int64_t)cJSON_GetObjectItemCaseSensitive(s, "max_pos")->valuedouble;
      pose_rope_update(r, m);
      char what[64];
      snprintf(what, sizeof what, "inv after max_pos %lld", (long long)m);
      CHECK(compare(name, what, pose_rope_inv_freq(r), h, cJSON_GetObjectItemCaseSensitive(s, "inv"), dynamic ? -5e-7 : 2));
    }
    const cJSON *cs = cJSON_GetObjectItemCaseSensitive(c, "cos_sin");
    if (cs) {
      const cJSON *pj = cJSON_GetObjectItemCaseSensitive(cs, "positions");
      int n = cJSON_GetArraySize(pj), i = 0;
      int64_t *pos = malloc(sizeof(int64_t) * (size_t)n);
      float *co = malloc(sizeof(float) * (size_t)n * h), *si = malloc(sizeof(float) * (size_t)n * h);
      int64_t maxp = 0;
      for (const cJSON *p = pj->child; p; p = p->next) {
        pos[i] = (int64_t)p->valuedouble;
        if (pos[i] > maxp) maxp = pos[i];
        i++;
      }
      pose_rope_update(r, maxp); /* the forward that produced them updated the state first */
      pose_rope_cos_sin(r, pos, n, co, si);
      const float *iv = pose_rope_inv_freq(r);
      double A = pose_rope_attention_factor(r);
      CHECK(compare_trig(name, "cos", co, pos, n, h, iv, A, cJSON_GetObjectItemCaseSensitive(cs, "cos")));
      CHECK(compare_trig(name, "sin", si, pos, n, h, iv, A, cJSON_GetObjectItemCaseSensitive(cs, "sin")));
      free(pos); free(co); free(si);
    }
    pose_rope_free(r);
  }
  printf("golden (transformers %s): %d cases, %d not run by transformers; %ld lanes, %ld not bitwise, worst %ld ulp\n",
         cJSON_IsString(ver) ? ver->valuestring : "?", n_cases, skipped, lanes, inexact, worst);
  cJSON_Delete(doc);
  return test_summary("test_rope_golden");
}
