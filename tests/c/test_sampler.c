/* Samplers (core/sampler.c) and coverage (core/coverage.c): properties over many draws for every method, the
 * distributions the spec states, determinism, and every error path. */
#include <stdlib.h>
#include <string.h>

#include "coverage.h"
#include "sampler.h"
#include "testutil.h"

#define MAXL 512

static pose_sampler_opts opts(pose_sample_method m, int64_t lc, int64_t lt, int n) {
  pose_sampler_opts o;
  pose_sampler_defaults(&o);
  o.method = m;
  o.train_len = lc;
  o.target_len = lt;
  o.chunks = n;
  o.seed = 1234;
  return o;
}

/* Checks one example against the definitions of its method; returns the number of violated properties (each also
 * reported once through CHECK by the caller's tally). */
static int bad = 0;
#define PROP(cond)                                                                                  \
  do {                                                                                              \
    if (!(cond)) {                                                                                  \
      if (bad < 10) fprintf(stderr, "%s:%d: property failed: %s (index %llu)\n", __FILE__, __LINE__, #cond, \
                            (unsigned long long)index);                                             \
      bad++;                                                                                        \
    }                                                                                               \
  } while (0)

static void check_example(const pose_sampler_opts *o, int64_t doc_len, uint64_t index, const int64_t *pos,
                          const int64_t *off, const pose_chunk *ch, int nc, int64_t L) {
  int64_t lx = o->max_doc_tokens > 0 && doc_len > o->max_doc_tokens ? o->max_doc_tokens : doc_len;
  int64_t sum = 0;
  for (int i = 0; i < nc; i++) sum += ch[i].len;
  PROP(sum == L);
  for (int64_t k = 0; k < L; k++) {
    PROP(pos[k] >= 0 && pos[k] < o->target_len);
    PROP(off[k] >= 0 && off[k] < lx);
    if (k > 0) PROP(pos[k] > pos[k - 1]);
  }
  /* chunks agree with the arrays: consecutive positions and offsets inside each */
  int64_t st = 0;
  for (int i = 0; i < nc; i++) {
    PROP(ch[i].len >= 1);
    for (int64_t t = 0; t < ch[i].len; t++) {
      PROP(pos[st + t] == ch[i].position + t);
      PROP(off[st + t] == ch[i].offset + t);
    }
    st += ch[i].len;
  }
  switch (o->method) {
  case POSE_SAMPLE_POSE: {
    PROP(nc == o->chunks);
    int64_t st_i = 0, pu = -1, pv = -1;
    for (int i = 0; i < nc; i++) {
      int64_t u = ch[i].position - st_i, v = ch[i].offset - st_i;
      PROP(u >= 0 && u <= o->target_len - L);
      PROP(u >= pu); /* non-decreasing skips */
      if (i == 0 && !o->u0_random) PROP(u == 0);
      if (o->content == POSE_CONTENT_UNIFORM) {
        PROP(v >= pv);
        PROP(v <= lx - L);
        if (i == 0) PROP(v == 0);
      }
      if (o->content == POSE_CONTENT_ZERO) PROP(v == 0);
      if (o->content == POSE_CONTENT_ALIGNED) PROP(v == u);
      if (o->chunk_rule == POSE_CHUNKS_CODE && i == 0) PROP(ch[0].len >= 1 && ch[0].len <= (L + 1) / 2);
      pu = u;
      pv = v;
      st_i += ch[i].len;
    }
    break;
  }
  case POSE_SAMPLE_RANDPOS:
    for (int64_t k = 1; k < L; k++) PROP(off[k] == off[k - 1] + 1);
    for (int i = 1; i < nc; i++) PROP(ch[i].position > ch[i - 1].position + ch[i - 1].len); /* maximal runs */
    break;
  case POSE_SAMPLE_FULL:
  case POSE_SAMPLE_PI:
    PROP(nc == 1);
    PROP(L == (o->method == POSE_SAMPLE_FULL ? (lx < o->target_len ? lx : o->target_len) : (lx < o->train_len ? lx : o->train_len)));
    for (int64_t k = 0; k < L; k++) PROP(pos[k] == k);
    break;
  }
}

/* Draws `draws` examples over a spread of document lengths and checks each. */
static void properties(const char *what, pose_sampler_opts o, int draws) {
  pose_sampler *s;
  CHECK_OK(pose_sampler_new(&o, &s));
  if (!s) return;
  static int64_t pos[MAXL * 8], off[MAXL * 8];
  static pose_chunk ch[MAXL * 8];
  int before = bad;
  int64_t minl = pose_sampler_min_doc_len(s), maxc = pose_sampler_max_chunks(s);
  for (int i = 0; i < draws; i++) {
    int64_t doc = minl + (i * 7919) % (3 * o.target_len + 5);
    int64_t L;
    int nc = -1;
    pose_status st = pose_sampler_doc_tokens(s, doc, &L);
    if (st == POSE_OK) st = pose_sampler_draw(s, doc, (uint64_t)i, pos, off, ch, (int)maxc, &nc);
    if (st != POSE_OK) { fprintf(stderr, "%s: draw %d failed: %s\n", what, i, pose_error_message()); bad++; continue; }
    uint64_t index = (uint64_t)i;
    PROP(L <= pose_sampler_example_len(s));
    check_example(&o, doc, index, pos, off, ch, nc, L);
  }
  if (bad != before) fprintf(stderr, "  ... in %s\n", what);
  CHECK(bad == before);
  pose_sampler_free(s);
}

static void test_properties(void) {
  const int ns[] = {1, 2, 3, 5, 16, 64};
  const pose_sample_content cs[] = {POSE_CONTENT_UNIFORM, POSE_CONTENT_ZERO, POSE_CONTENT_ALIGNED};
  for (size_t a = 0; a < sizeof ns / sizeof ns[0]; a++)
    for (size_t b = 0; b < 3; b++)
      for (int u0 = 0; u0 < 2; u0++) {
        pose_sampler_opts o = opts(POSE_SAMPLE_POSE, 64, 64 * 8, ns[a]);
        o.content = cs[b];
        o.u0_random = u0;
        char what[96];
        snprintf(what, sizeof what, "pose N=%d content=%s u0=%d", ns[a], pose_sample_content_name(cs[b]), u0);
        properties(what, o, 400);
      }
  pose_sampler_opts o = opts(POSE_SAMPLE_POSE, 64, 64, 64); /* N = Lc, s = 1: every chunk one token */
  properties("pose N=Lc, Lt=Lc", o, 200);
  o = opts(POSE_SAMPLE_POSE, 256, 4096, 2);
  o.chunk_rule = POSE_CHUNKS_CODE;
  properties("pose code rule", o, 500);
  o.short_docs = POSE_SHORT_WHOLE;
  properties("pose code rule, whole documents", o, 500);
  o = opts(POSE_SAMPLE_POSE, 256, 4096, 100); /* paper rule through the bitset/hash paths (k > 64) */
  o.short_docs = POSE_SHORT_WHOLE;
  properties("pose N=100 whole", o, 300);
  o = opts(POSE_SAMPLE_POSE, 64, 1024, 4);
  o.max_doc_tokens = 5 * 64;
  properties("pose max_doc_tokens", o, 400);
  for (int m = POSE_SAMPLE_RANDPOS; m <= POSE_SAMPLE_PI; m++)
    for (int w = 0; w < 2; w++) {
      o = opts((pose_sample_method)m, 64, 512, 2);
      o.short_docs = (pose_short_docs)w;
      char what[64];
      snprintf(what, sizeof what, "%s short_docs=%s", pose_sample_method_name(o.method), pose_short_docs_name(o.short_docs));
      properties(what, o, 400);
    }
  o = opts(POSE_SAMPLE_RANDPOS, 200, 200000, 2); /* sparse: hash path */
  properties("randpos sparse", o, 100);
  o = opts(POSE_SAMPLE_RANDPOS, 200, 200, 2); /* dense: every position */
  properties("randpos Lt=Lc", o, 50);
}

/* the short-document policies and the token count they give */
static void test_short_docs(void) {
  pose_sampler_opts o = opts(POSE_SAMPLE_POSE, 64, 512, 3);
  o.short_docs = POSE_SHORT_WHOLE;
  pose_sampler *s;
  CHECK_OK(pose_sampler_new(&o, &s));
  CHECK(pose_sampler_min_doc_len(s) == 3);
  int64_t n = 0;
  CHECK_OK(pose_sampler_doc_tokens(s, 10, &n));
  CHECK(n == 10);
  CHECK_OK(pose_sampler_doc_tokens(s, 1000, &n));
  CHECK(n == 64);
  int64_t pos[64], off[64];
  pose_chunk ch[3];
  int nc;
  int64_t maxpos = 0;
  for (uint64_t i = 0; i < 300; i++) {
    CHECK_OK(pose_sampler_draw(s, 10, i, pos, off, ch, 3, &nc));
    if (pos[9] > maxpos) maxpos = pos[9];
    CHECK(off[9] == 9); /* a 10-token document is used whole */
  }
  CHECK(maxpos > 400 && maxpos <= 511); /* skips still reach up to Lt - L */
  CHECK_ERR(pose_sampler_draw(s, 2, 0, pos, off, ch, 3, &nc), POSE_EINVAL, "one per chunk");
  pose_sampler_free(s);
  o.short_docs = POSE_SHORT_SKIP;
  CHECK_OK(pose_sampler_new(&o, &s));
  CHECK(pose_sampler_min_doc_len(s) == 64);
  CHECK_ERR(pose_sampler_draw(s, 63, 0, pos, off, ch, 3, &nc), POSE_EINVAL, "63 tokens is shorter");
  CHECK_ERR(pose_sampler_doc_tokens(s, 10, &n), POSE_EINVAL, "short_docs = \"skip\"");
  CHECK_OK(pose_sampler_draw(s, 64, 0, pos, off, ch, 3, &nc));
  for (int k = 0; k < 64; k++) CHECK(off[k] == k); /* Lx = Lc: the whole document, v_i = 0 */
  pose_sampler_free(s);
  o.content = POSE_CONTENT_ALIGNED;
  CHECK_OK(pose_sampler_new(&o, &s));
  CHECK(pose_sampler_min_doc_len(s) == 512);
  CHECK_ERR(pose_sampler_draw(s, 511, 0, pos, off, ch, 3, &nc), POSE_EINVAL, "aligned");
  pose_sampler_free(s);
  o = opts(POSE_SAMPLE_FULL, 64, 512, 2);
  CHECK_OK(pose_sampler_new(&o, &s));
  CHECK(pose_sampler_example_len(s) == 512 && pose_sampler_min_doc_len(s) == 512);
  CHECK_ERR(pose_sampler_doc_tokens(s, 300, &n), POSE_EINVAL, "300 tokens");
  pose_sampler_free(s);
  o.short_docs = POSE_SHORT_WHOLE;
  CHECK_OK(pose_sampler_new(&o, &s));
  CHECK_OK(pose_sampler_doc_tokens(s, 300, &n));
  CHECK(n == 300 && pose_sampler_min_doc_len(s) == 1);
  pose_sampler_free(s);
  /* max_doc_tokens: offsets stay in the first max_doc_tokens tokens */
  o = opts(POSE_SAMPLE_PI, 64, 512, 2);
  o.max_doc_tokens = 100;
  CHECK_OK(pose_sampler_new(&o, &s));
  int64_t maxoff = 0;
  for (uint64_t i = 0; i < 200; i++) {
    CHECK_OK(pose_sampler_draw(s, 100000, i, pos, off, NULL, 0, NULL));
    if (off[63] > maxoff) maxoff = off[63];
  }
  CHECK(maxoff == 99);
  pose_sampler_free(s);
}

static void test_errors(void) {
  pose_sampler *s = (pose_sampler *)1;
  pose_sampler_opts o = opts(POSE_SAMPLE_POSE, 64, 512, 2);
  o.method = (pose_sample_method)9;
  CHECK_ERR(pose_sampler_new(&o, &s), POSE_EINVAL, "unknown method");
  CHECK(s == NULL);
  o = opts(POSE_SAMPLE_POSE, 64, 512, 2);
  o.content = (pose_sample_content)5;
  CHECK_ERR(pose_sampler_new(&o, &s), POSE_EINVAL, "unknown content");
  o = opts(POSE_SAMPLE_POSE, 64, 512, 2);
  o.chunk_rule = (pose_chunk_rule)5;
  CHECK_ERR(pose_sampler_new(&o, &s), POSE_EINVAL, "unknown chunk rule");
  o = opts(POSE_SAMPLE_POSE, 64, 512, 2);
  o.short_docs = (pose_short_docs)5;
  CHECK_ERR(pose_sampler_new(&o, &s), POSE_EINVAL, "unknown short-document policy");
  o = opts(POSE_SAMPLE_POSE, 0, 512, 1);
  CHECK_ERR(pose_sampler_new(&o, &s), POSE_EINVAL, "train_len must be");
  o = opts(POSE_SAMPLE_POSE, 64, 63, 2);
  CHECK_ERR(pose_sampler_new(&o, &s), POSE_EINVAL, "target_len (63) must be >= train_len (64)");
  o = opts(POSE_SAMPLE_POSE, 64, 512, 0);
  CHECK_ERR(pose_sampler_new(&o, &s), POSE_EINVAL, "chunks must be in 1..train_len");
  o = opts(POSE_SAMPLE_POSE, 64, 512, 65);
  CHECK_ERR(pose_sampler_new(&o, &s), POSE_EINVAL, "got 65");
  o = opts(POSE_SAMPLE_POSE, 64, 512, 3);
  o.chunk_rule = POSE_CHUNKS_CODE;
  CHECK_ERR(pose_sampler_new(&o, &s), POSE_EINVAL, "needs chunks = 2");
  o = opts(POSE_SAMPLE_POSE, 64, 512, 2);
  o.u0_random = 2;
  CHECK_ERR(pose_sampler_new(&o, &s), POSE_EINVAL, "u0_random");
  o = opts(POSE_SAMPLE_POSE, 64, 512, 2);
  o.max_doc_tokens = -1;
  CHECK_ERR(pose_sampler_new(&o, &s), POSE_EINVAL, "max_doc_tokens must be >= 0");
  o.max_doc_tokens = 63;
  CHECK_ERR(pose_sampler_new(&o, &s), POSE_EINVAL, "every document would be rejected");
  o.content = POSE_CONTENT_ALIGNED;
  o.max_doc_tokens = 320;
  CHECK_ERR(pose_sampler_new(&o, &s), POSE_EINVAL, "every document would be rejected");
  /* non-PoSE methods ignore chunks */
  o = opts(POSE_SAMPLE_PI, 64, 512, 1000);
  CHECK_OK(pose_sampler_new(&o, &s));
  pose_sampler_free(s);
  /* chunk buffers are never silently truncated */
  int64_t pos[512], off[512];
  pose_chunk ch[64];
  int nc;
  o = opts(POSE_SAMPLE_POSE, 64, 512, 3);
  CHECK_OK(pose_sampler_new(&o, &s));
  CHECK_ERR(pose_sampler_draw(s, 100, 0, pos, off, ch, 2, &nc), POSE_EINVAL, "3 chunks but the chunk buffer holds 2");
  CHECK_ERR(pose_sampler_draw(s, 100, 0, pos, off, ch, -1, &nc), POSE_EINVAL, "negative chunk buffer");
  CHECK_OK(pose_sampler_draw(s, 100, 0, NULL, NULL, ch, 3, NULL)); /* chunk structure only */
  pose_sampler_free(s);
  o = opts(POSE_SAMPLE_RANDPOS, 64, 512, 2);
  CHECK_OK(pose_sampler_new(&o, &s));
  CHECK(pose_sampler_max_chunks(s) == 64);
  CHECK_ERR(pose_sampler_draw(s, 100, 0, pos, off, ch, 3, &nc), POSE_EINVAL, "chunk buffer holds 3");
  CHECK_OK(pose_sampler_draw(s, 100, 0, pos, off, ch, 64, &nc));
  pose_chunk ch2[64];
  int nc2;
  CHECK_OK(pose_sampler_draw(s, 100, 0, NULL, NULL, ch2, 64, &nc2)); /* positions NULL: same runs */
  CHECK(nc2 == nc && memcmp(ch, ch2, sizeof(pose_chunk) * (size_t)nc) == 0);
  pose_sampler_free(s);
  o = opts(POSE_SAMPLE_FULL, 64, 512, 2);
  CHECK_OK(pose_sampler_new(&o, &s));
  CHECK_ERR(pose_sampler_draw(s, 600, 0, pos, off, ch, 0, &nc), POSE_EINVAL, "1 chunks but the chunk buffer holds 0");
  pose_sampler_free(s);
  pose_rng r;
  pose_rng_init(&r, 1, 1);
  CHECK_ERR(pose_sample_sorted_distinct(&r, 3, 4, pos), POSE_EINVAL, "0 <= k <= n");
  /* names round-trip */
  CHECK(pose_sample_method_parse("randpos") == POSE_SAMPLE_RANDPOS && pose_sample_method_parse("x") == -1);
  CHECK(strcmp(pose_sample_method_name(POSE_SAMPLE_PI), "pi") == 0);
  CHECK(pose_sample_content_parse("aligned") == POSE_CONTENT_ALIGNED && pose_chunk_rule_parse("code") == POSE_CHUNKS_CODE);
  CHECK(pose_short_docs_parse("whole") == POSE_SHORT_WHOLE && pose_short_docs_parse(NULL) == -1);
}

/* same (seed, index) -> same example, whatever the order of draws or the sampler object */
static void test_determinism(void) {
  for (int m = POSE_SAMPLE_POSE; m <= POSE_SAMPLE_PI; m++) {
    pose_sampler_opts o = opts((pose_sample_method)m, 32, 256, 3);
    pose_sampler *a, *b;
    CHECK_OK(pose_sampler_new(&o, &a));
    CHECK_OK(pose_sampler_new(&o, &b));
    static int64_t pa[100][256], oa[100][256];
    int64_t pb[256], ob[256];
    int64_t L = pose_sampler_example_len(a);
    for (int i = 0; i < 100; i++) CHECK_OK(pose_sampler_draw(a, 1000, (uint64_t)i, pa[i], oa[i], NULL, 0, NULL));
    int same = 1, differ = 0;
    for (int i = 99; i >= 0; i -= 3) { /* reverse, strided, other object */
      CHECK_OK(pose_sampler_draw(b, 1000, (uint64_t)i, pb, ob, NULL, 0, NULL));
      same &= memcmp(pa[i], pb, (size_t)L * 8) == 0 && memcmp(oa[i], ob, (size_t)L * 8) == 0;
    }
    CHECK(same);
    for (int i = 1; i < 100; i++) differ += memcmp(pa[i], pa[0], (size_t)L * 8) != 0 || memcmp(oa[i], oa[0], (size_t)L * 8) != 0;
    CHECK(differ >= 90); /* indices give different examples (PI-only differs through its offset) */
    pose_sampler_free(b);
    o.seed = 99;
    CHECK_OK(pose_sampler_new(&o, &b));
    differ = 0;
    for (int i = 0; i < 100; i++) {
      CHECK_OK(pose_sampler_draw(b, 1000, (uint64_t)i, pb, ob, NULL, 0, NULL));
      differ += memcmp(pa[i], pb, (size_t)L * 8) != 0 || memcmp(oa[i], ob, (size_t)L * 8) != 0;
    }
    CHECK(differ >= 90);
    pose_sampler_free(a);
    pose_sampler_free(b);
  }
}

/* Floyd's algorithm written plainly; every path of pose_sample_sorted_distinct must give exactly its set. */
static void floyd_reference(pose_rng *r, int64_t n, int64_t k, int64_t *out) {
  int64_t m = 0;
  for (int64_t j = n - k; j < n; j++) {
    int64_t t = (int64_t)pose_rng_below(r, (uint64_t)j + 1), found = 0;
    for (int64_t q = 0; q < m; q++) found |= out[q] == t;
    out[m++] = found ? j : t;
  }
  for (int64_t i = 1; i < m; i++) /* insertion sort */
    for (int64_t q = i; q > 0 && out[q - 1] > out[q]; q--) { int64_t x = out[q]; out[q] = out[q - 1]; out[q - 1] = x; }
}

static void test_sorted_distinct(void) {
  const int64_t cases[][2] = {{10, 0}, {10, 1}, {10, 10}, {100, 64}, {1000, 65}, {1000, 1000}, {100000, 300},
                              {5000000, 200}, {1 << 20, 4096}};
  static int64_t a[5000], b[5000];
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    int ok = 1;
    for (uint64_t s = 0; s < 5; s++) {
      pose_rng r1, r2;
      pose_rng_init(&r1, 7, s);
      pose_rng_init(&r2, 7, s);
      CHECK_OK(pose_sample_sorted_distinct(&r1, cases[c][0], cases[c][1], a));
      floyd_reference(&r2, cases[c][0], cases[c][1], b);
      ok &= memcmp(a, b, (size_t)cases[c][1] * 8) == 0;
      for (int64_t i = 1; i < cases[c][1]; i++) ok &= a[i] > a[i - 1];
    }
    if (!ok) fprintf(stderr, "sorted distinct n=%lld k=%lld differs from Floyd\n", (long long)cases[c][0], (long long)cases[c][1]);
    CHECK(ok);
  }
  /* uniform over the 20 3-subsets of {0..5} */
  int counts[64] = {0};
  const int draws = 40000;
  for (int i = 0; i < draws; i++) {
    pose_rng r;
    pose_rng_init(&r, 3, (uint64_t)i);
    int64_t v[3];
    pose_sample_sorted_distinct(&r, 6, 3, v);
    counts[(1 << v[0]) | (1 << v[1]) | (1 << v[2])]++;
  }
  int subsets = 0, within = 1;
  for (int m = 0; m < 64; m++)
    if (counts[m]) { subsets++; within &= abs(counts[m] - draws / 20) < 5 * 44; } /* sd = sqrt(2000 * .95) ~ 44 */
  CHECK(subsets == 20);
  CHECK(within);
}

static void test_distributions(void) {
  /* mean chunk length Lc/N, mean skip u_1 = (Lt-Lc)/2 for N = 2, u0 = 0 */
  const int ns[] = {2, 4, 7};
  for (size_t a = 0; a < 3; a++) {
    pose_sampler_opts o = opts(POSE_SAMPLE_POSE, 128, 1024, ns[a]);
    pose_sampler *s;
    CHECK_OK(pose_sampler_new(&o, &s));
    pose_chunk ch[8];
    int nc;
    const int draws = 20000;
    double mean_len[8] = {0}, mean_u1 = 0;
    for (int i = 0; i < draws; i++) {
      pose_sampler_draw(s, 4096, (uint64_t)i, NULL, NULL, ch, 8, &nc);
      for (int c = 0; c < nc; c++) mean_len[c] += (double)ch[c].len / draws;
      mean_u1 += (double)(ch[1].position - ch[0].len) / draws;
    }
    /* the length of one part of a uniform composition has sd < Lc/N * sqrt(N) / ... ; 5% of Lc/N is > 5 sd here */
    for (int c = 0; c < ns[a]; c++) CHECK_NEAR(mean_len[c], 128.0 / ns[a], 0.05 * 128.0 / ns[a]);
    if (ns[a] == 2) CHECK_NEAR(mean_u1, (1024 - 128) / 2.0, 4.0); /* sd of the mean = 896/sqrt(12*20000) = 1.8 */
    pose_sampler_free(s);
  }
  /* paper rule: every composition of 6 into 3 parts (C(5,2) = 10) equally likely */
  {
    pose_sampler_opts o = opts(POSE_SAMPLE_POSE, 6, 6, 3);
    pose_sampler *s;
    CHECK_OK(pose_sampler_new(&o, &s));
    int counts[7][7] = {{0}};
    const int draws = 30000;
    pose_chunk ch[3];
    int nc;
    for (int i = 0; i < draws; i++) {
      pose_sampler_draw(s, 6, (uint64_t)i, NULL, NULL, ch, 3, &nc);
      counts[ch[0].len][ch[1].len]++;
    }
    int kinds = 0, within = 1;
    for (int x = 0; x < 7; x++)
      for (int y = 0; y < 7; y++)
        if (counts[x][y]) { kinds++; within &= abs(counts[x][y] - draws / 10) < 5 * 52; } /* sd = sqrt(3000*.9) */
    CHECK(kinds == 10);
    CHECK(within);
    pose_sampler_free(s);
  }
  /* code rule: l_0 uniform on 1..floor((L+1)/2), L = min(Lx, Lc) */
  {
    pose_sampler_opts o = opts(POSE_SAMPLE_POSE, 15, 60, 2);
    o.chunk_rule = POSE_CHUNKS_CODE;
    o.short_docs = POSE_SHORT_WHOLE;
    pose_sampler *s;
    CHECK_OK(pose_sampler_new(&o, &s));
    const int draws = 24000;
    for (int doc = 0; doc < 2; doc++) {
      int64_t lx = doc ? 9 : 100, L = lx < 15 ? lx : 15, top = (L + 1) / 2;
      int counts[16] = {0};
      pose_chunk ch[2];
      int nc;
      for (int i = 0; i < draws; i++) {
        pose_sampler_draw(s, lx, (uint64_t)i, NULL, NULL, ch, 2, &nc);
        counts[ch[0].len < 16 ? ch[0].len : 0]++;
      }
      int within = counts[0] == 0;
      double expect = (double)draws / (double)top, sd = sqrt(expect);
      for (int64_t v = 1; v <= 15; v++)
        within &= v <= top ? fabs(counts[v] - expect) < 5 * sd : counts[v] == 0;
      CHECK(within);
    }
    pose_sampler_free(s);
  }
  /* RandPos: each position of 0..Lt-1 appears with probability Lc/Lt */
  {
    pose_sampler_opts o = opts(POSE_SAMPLE_RANDPOS, 16, 64, 2);
    pose_sampler *s;
    CHECK_OK(pose_sampler_new(&o, &s));
    int counts[64] = {0};
    int64_t pos[16];
    const int draws = 20000;
    for (int i = 0; i < draws; i++) {
      pose_sampler_draw(s, 100, (uint64_t)i, pos, NULL, NULL, 0, NULL);
      for (int k = 0; k < 16; k++) counts[pos[k]]++;
    }
    int within = 1;
    for (int p = 0; p < 64; p++) within &= fabs(counts[p] - draws / 4.0) < 5 * sqrt(draws * 0.25 * 0.75);
    CHECK(within);
    pose_sampler_free(s);
  }
  /* contiguous methods: the token offset is uniform on 0..Lx-L */
  {
    pose_sampler_opts o = opts(POSE_SAMPLE_PI, 16, 64, 2);
    pose_sampler *s;
    CHECK_OK(pose_sampler_new(&o, &s));
    int counts[5] = {0};
    pose_chunk ch[1];
    int nc;
    for (int i = 0; i < 10000; i++) {
      pose_sampler_draw(s, 20, (uint64_t)i, NULL, NULL, ch, 1, &nc);
      counts[ch[0].offset]++;
    }
    int within = 1;
    for (int v = 0; v < 5; v++) within &= abs(counts[v] - 2000) < 5 * 40;
    CHECK(within);
    pose_sampler_free(s);
  }
}

/* ---- coverage -------------------------------------------------------------------------------------------------- */

static void hist(pose_coverage *c, int64_t *dh, int64_t *ph) { pose_coverage_result(c, dh, ph, NULL); }

static void test_coverage_methods_agree(void) {
  /* every sampler's examples through all three algorithms: identical histograms */
  const pose_sample_method ms[] = {POSE_SAMPLE_POSE, POSE_SAMPLE_POSE, POSE_SAMPLE_RANDPOS, POSE_SAMPLE_FULL, POSE_SAMPLE_PI};
  const int ns[] = {2, 9, 2, 2, 2};
  static int64_t h[4][2][300];
  for (size_t a = 0; a < 5; a++) {
    pose_sampler_opts o = opts(ms[a], 40, 300, ns[a]);
    pose_sampler *s;
    CHECK_OK(pose_sampler_new(&o, &s));
    for (int m = 0; m < 4; m++) {
      pose_coverage *c;
      CHECK_OK(pose_coverage_new(300, &c));
      pose_coverage_set_method(c, (pose_coverage_method)m);
      CHECK_OK(pose_coverage_add_sampler(c, s, 1000, 60, 5));
      CHECK(pose_coverage_draws(c) == 60);
      hist(c, h[m][0], h[m][1]);
      pose_coverage_free(c);
    }
    int same = 1;
    for (int m = 1; m < 4; m++) same &= memcmp(h[0], h[m], sizeof h[0]) == 0;
    if (!same) fprintf(stderr, "coverage methods disagree for %s N=%d\n", pose_sample_method_name(ms[a]), ns[a]);
    CHECK(same);
    pose_sampler_free(s);
  }
  /* hand-made examples, including runs that touch and a single token */
  const int64_t ex1[] = {0, 1, 2, 10, 11, 20}, ex2[] = {5}, ex3[] = {0, 29};
  for (int m = 0; m < 4; m++) {
    pose_coverage *c;
    CHECK_OK(pose_coverage_new(30, &c));
    pose_coverage_set_method(c, (pose_coverage_method)m);
    CHECK_OK(pose_coverage_add(c, ex1, 6));
    CHECK_OK(pose_coverage_add(c, ex2, 1));
    CHECK_OK(pose_coverage_add(c, ex3, 2));
    int64_t dh[30], ph[30], covered;
    CHECK_OK(pose_coverage_result(c, dh, ph, &covered));
    /* ex1 distances: 1,2 | 8..11 | 18..20 | 9,10 (11-... ) -> {1,2,8,9,10,11,18,19,20} */
    const int in1[] = {1, 2, 8, 9, 10, 11, 18, 19, 20};
    int ok = dh[0] == 0 && dh[29] == 1;
    for (int d = 1; d < 29; d++) {
      int want = 0;
      for (int q = 0; q < 9; q++) want |= in1[q] == d;
      ok &= dh[d] == want;
    }
    CHECK(ok);
    CHECK(covered == 10);
    CHECK(ph[0] == 2 && ph[1] == 1 && ph[5] == 1 && ph[29] == 1 && ph[3] == 0);
    CHECK_NEAR(pose_coverage_fraction(c), 10.0 / 29.0, 1e-12);
    pose_coverage_free(c);
    /* intervals [1,2] and [4,6] leave exactly distance 3 uncovered */
    const int64_t ex4[] = {0, 1, 2, 6};
    CHECK_OK(pose_coverage_new(8, &c));
    pose_coverage_set_method(c, (pose_coverage_method)m);
    CHECK_OK(pose_coverage_add(c, ex4, 4));
    CHECK_OK(pose_coverage_result(c, dh, ph, &covered));
    CHECK(dh[1] == 1 && dh[2] == 1 && dh[3] == 0 && dh[4] == 1 && dh[6] == 1 && dh[7] == 0 && covered == 5);
    pose_coverage_free(c);
  }
}

static void test_coverage_shapes(void) {
  const int64_t lc = 16, lt = 128, K = 3000;
  static int64_t dh[128], ph[128];
  /* PoSE, N = 2: every distance 1..Lt-1 covered with enough draws; every position too */
  for (int n = 2; n <= 4; n++) {
    pose_sampler_opts o = opts(POSE_SAMPLE_POSE, lc, lt, n);
    pose_sampler *s;
    pose_coverage *c;
    CHECK_OK(pose_sampler_new(&o, &s));
    CHECK_OK(pose_coverage_new(lt, &c));
    CHECK_OK(pose_coverage_add_sampler(c, s, 1000, K, 0));
    CHECK_NEAR(pose_coverage_fraction(c), 1.0, 0);
    hist(c, dh, ph);
    int all = 1;
    for (int p = 0; p < lt; p++) all &= ph[p] > 0;
    CHECK(all);
    CHECK(ph[0] == K); /* u_0 = 0: position 0 in every example */
    CHECK(dh[1] == K); /* N < Lc: some chunk has two tokens, so distance 1 is in every example */
    pose_coverage_free(c);
    pose_sampler_free(s);
  }
  /* PI-only: distances exactly 1..Lc-1, each in every example; positions exactly 0..Lc-1 */
  {
    pose_sampler_opts o = opts(POSE_SAMPLE_PI, lc, lt, 2);
    pose_sampler *s;
    pose_coverage *c;
    CHECK_OK(pose_sampler_new(&o, &s));
    CHECK_OK(pose_coverage_new(lt, &c));
    CHECK_OK(pose_coverage_add_sampler(c, s, 1000, 100, 0));
    hist(c, dh, ph);
    int ok = dh[0] == 0;
    for (int d = 1; d < lt; d++) ok &= dh[d] == (d < lc ? 100 : 0);
    for (int p = 0; p < lt; p++) ok &= ph[p] == (p < lc ? 100 : 0);
    CHECK(ok);
    CHECK_NEAR(pose_coverage_fraction(c), (lc - 1.0) / (lt - 1.0), 1e-12);
    pose_coverage_free(c);
    pose_sampler_free(s);
  }
  /* full-length: everything in every example */
  {
    pose_sampler_opts o = opts(POSE_SAMPLE_FULL, lc, lt, 2);
    pose_sampler *s;
    pose_coverage *c;
    CHECK_OK(pose_sampler_new(&o, &s));
    CHECK_OK(pose_coverage_new(lt, &c));
    CHECK_OK(pose_coverage_add_sampler(c, s, 1000, 10, 0));
    hist(c, dh, ph);
    int ok = 1;
    for (int d = 1; d < lt; d++) ok &= dh[d] == 10 && ph[d] == 10;
    CHECK(ok);
    pose_coverage_free(c);
    pose_sampler_free(s);
  }
  /* RandPos: positions uniform (K Lc/Lt each); distance Lt-1 needs positions 0 and Lt-1 together, probability
   * Lc(Lc-1)/(Lt(Lt-1)); distance 1 is nearly always there; coverage of every distance */
  {
    pose_sampler_opts o = opts(POSE_SAMPLE_RANDPOS, lc, lt, 2);
    pose_sampler *s;
    pose_coverage *c;
    CHECK_OK(pose_sampler_new(&o, &s));
    CHECK_OK(pose_coverage_new(lt, &c));
    CHECK_OK(pose_coverage_add_sampler(c, s, 1000, K, 0));
    hist(c, dh, ph);
    int ok = 1;
    double pe = (double)lc / lt;
    for (int p = 0; p < lt; p++) ok &= fabs(ph[p] - K * pe) < 5 * sqrt(K * pe * (1 - pe));
    CHECK(ok);
    double q = (double)lc * (lc - 1) / ((double)lt * (lt - 1));
    CHECK_NEAR((double)dh[lt - 1], K * q, 5 * sqrt(K * q * (1 - q)));
    CHECK(dh[1] > dh[lt / 2] && dh[lt / 2] > dh[lt - 1]); /* decreasing shape */
    CHECK_NEAR(pose_coverage_fraction(c), 1.0, 0);
    pose_coverage_free(c);
    pose_sampler_free(s);
  }
}

static void test_coverage_errors(void) {
  pose_coverage *c = (pose_coverage *)1;
  CHECK_ERR(pose_coverage_new(0, &c), POSE_EINVAL, "target_len must be");
  CHECK(c == NULL);
  CHECK_OK(pose_coverage_new(10, &c));
  const int64_t dec[] = {3, 2}, rep[] = {3, 3}, out[] = {0, 10}, neg[] = {-1};
  CHECK_ERR(pose_coverage_add(c, dec, 2), POSE_EINVAL, "strictly increasing");
  CHECK_ERR(pose_coverage_add(c, rep, 2), POSE_EINVAL, "strictly increasing");
  CHECK_ERR(pose_coverage_add(c, out, 2), POSE_EINVAL, "outside 0..9");
  CHECK_ERR(pose_coverage_add(c, neg, 1), POSE_EINVAL, "outside 0..9");
  CHECK_ERR(pose_coverage_add(c, dec, 0), POSE_EINVAL, "at least one position");
  CHECK(pose_coverage_draws(c) == 0);
  pose_sampler_opts o = opts(POSE_SAMPLE_POSE, 4, 12, 2);
  pose_sampler *s;
  CHECK_OK(pose_sampler_new(&o, &s));
  CHECK_ERR(pose_coverage_add_sampler(c, s, 100, 5, 0), POSE_EINVAL, "differs");
  pose_coverage_free(c);
  CHECK_OK(pose_coverage_new(12, &c));
  CHECK_ERR(pose_coverage_add_sampler(c, s, 3, 5, 0), POSE_EINVAL, "3 tokens");
  CHECK_ERR(pose_coverage_add_sampler(c, s, 100, -1, 0), POSE_EINVAL, "draws must be");
  pose_coverage_free(c);
  pose_sampler_free(s);
  /* Lt = 1: nothing to cover */
  CHECK_OK(pose_coverage_new(1, &c));
  const int64_t zero[] = {0};
  CHECK_OK(pose_coverage_add(c, zero, 1));
  CHECK_NEAR(pose_coverage_fraction(c), 1.0, 0);
  pose_coverage_free(c);
}

int main(void) {
  test_errors();
  test_properties();
  test_short_docs();
  test_determinism();
  test_sorted_distinct();
  test_distributions();
  test_coverage_methods_agree();
  test_coverage_shapes();
  test_coverage_errors();
  return test_summary("test_sampler");
}
