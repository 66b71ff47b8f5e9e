/* Training-example samplers: PoSE, RandPos, full-length, PI-only (../shared/spec/pose.md section 1).
 *
 * Notation: Lc = train_len, Lt = target_len, N = chunks, Lx = document length after max_doc_tokens, L = tokens in
 * the example (Lc, Lt for full-length, or min(Lx, that) for a short document under short_docs = "whole").
 *
 * Every example is a pure function of (seed, index): the Philox stream is the example index and the draws are
 * consumed in a fixed order, so batch size, thread count and draw order do not matter. PoSE's order:
 *   1. chunk lengths (paper: N-1 distinct cut points in 1..L-1 by Floyd's algorithm; code: l_0 ~ U{1..(L+1)/2}),
 *   2. u_0 (only when u0_random), then u_1 .. u_{N-1},
 *   3. v_1 .. v_{N-1} (uniform content only).
 * The contiguous methods draw their token offset ~ U{0 .. Lx-L} first; RandPos then draws its positions.
 * chunks/content/chunk_rule/u0_random only shape PoSE; the other methods ignore them. */
#include "sampler.h"

#include <stdlib.h>
#include <string.h>

struct pose_sampler {
  pose_sampler_opts o;
};

static const char *const method_names[] = {"pose", "randpos", "full", "pi"};
static const char *const content_names[] = {"uniform", "zero", "aligned"};
static const char *const rule_names[] = {"paper", "code"};
static const char *const short_names[] = {"skip", "whole"};

#define NAME_OF(tbl, v) ((unsigned)(v) < sizeof tbl / sizeof tbl[0] ? tbl[v] : "?")
const char *pose_sample_method_name(pose_sample_method m) { return NAME_OF(method_names, m); }
const char *pose_sample_content_name(pose_sample_content c) { return NAME_OF(content_names, c); }
const char *pose_chunk_rule_name(pose_chunk_rule r) { return NAME_OF(rule_names, r); }
const char *pose_short_docs_name(pose_short_docs p) { return NAME_OF(short_names, p); }

static int parse_name(const char *const *tbl, int n, const char *name) {
  if (!name) return -1;
  for (int i = 0; i < n; i++)
    if (strcmp(tbl[i], name) == 0) return i;
  return -1;
}
#define PARSE(tbl, s) parse_name(tbl, (int)(sizeof tbl / sizeof tbl[0]), s)
int pose_sample_method_parse(const char *name) { return PARSE(method_names, name); }
int pose_sample_content_parse(const char *name) { return PARSE(content_names, name); }
int pose_chunk_rule_parse(const char *name) { return PARSE(rule_names, name); }
int pose_short_docs_parse(const char *name) { return PARSE(short_names, name); }

void pose_sampler_defaults(pose_sampler_opts *o) {
  memset(o, 0, sizeof *o);
  o->method = POSE_SAMPLE_POSE;
  o->chunks = 2;
  o->content = POSE_CONTENT_UNIFORM;
  o->chunk_rule = POSE_CHUNKS_PAPER;
  o->u0_random = 0;
  o->short_docs = POSE_SHORT_SKIP;
  o->max_doc_tokens = 0;
  o->seed = 0;
}

/* ---- sorted distinct draws -------------------------------------------------------------------------------------- */

/* Below this many values Floyd's set is a sorted array (binary search + shift): no allocation, O(k^2) moves. */
#define SMALL_K 64

static int64_t lower_bound(const int64_t *a, int64_t n, int64_t v) {
  int64_t lo = 0, hi = n;
  while (lo < hi) {
    int64_t mid = lo + (hi - lo) / 2;
    if (a[mid] < v) lo = mid + 1; else hi = mid;
  }
  return lo;
}

static void sorted_insert(int64_t *a, int64_t n, int64_t pos, int64_t v) {
  memmove(a + pos + 1, a + pos, (size_t)(n - pos) * sizeof *a);
  a[pos] = v;
}

pose_status pose_sample_sorted_distinct(pose_rng *r, int64_t n, int64_t k, int64_t *out) {
  if (k < 0 || n < 0 || k > n) return pose_error(POSE_EINVAL, "sorted distinct draw: need 0 <= k <= n (k %lld, n %lld)",
                                                 (long long)k, (long long)n);
  if (k == 0) return POSE_OK;
  if (k <= SMALL_K) {
    /* Floyd: for j = n-k .. n-1 add t ~ U{0..j}, or j itself when t is already taken. */
    int64_t m = 0;
    for (int64_t j = n - k; j < n; j++) {
      int64_t t = (int64_t)pose_rng_below(r, (uint64_t)j + 1);
      int64_t pos = lower_bound(out, m, t);
      if (pos < m && out[pos] == t) sorted_insert(out, m, m, j); /* j exceeds every value so far: append */
      else sorted_insert(out, m, pos, t);
      m++;
    }
    return POSE_OK;
  }
  if (n / 64 <= 4 * k) {
    /* n not much larger than k: the set is a bitset, and scanning it (n/64 words) yields the values in order. */
    int64_t words = (n + 63) / 64;
    uint64_t *bits = calloc((size_t)words, sizeof *bits);
    if (!bits) return pose_error(POSE_ENOMEM, "sorted distinct draw: out of memory for %lld values", (long long)k);
    for (int64_t j = n - k; j < n; j++) {
      int64_t t = (int64_t)pose_rng_below(r, (uint64_t)j + 1);
      if (bits[t >> 6] >> (t & 63) & 1) t = j;
      bits[t >> 6] |= (uint64_t)1 << (t & 63);
    }
    int64_t m = 0;
    for (int64_t w = 0; w < words; w++)
      for (uint64_t x = bits[w]; x; x &= x - 1) out[m++] = w * 64 + __builtin_ctzll(x);
    free(bits);
    return POSE_OK;
  }
  /* n much larger than k: Floyd with an open-addressing hash set, then a bucket sort on value / ceil(n/k) (expected
   * O(1) values per bucket for a uniform subset). */
  int bits = 1;
  while (((int64_t)1 << bits) < 2 * k) bits++;
  int64_t cap = (int64_t)1 << bits;
  int64_t width = n / k + (n % k != 0), nb = (n - 1) / width + 1;
  int64_t *table = malloc((size_t)cap * sizeof *table), *vals = malloc((size_t)k * sizeof *vals),
          *start = calloc((size_t)nb + 1, sizeof *start);
  if (!table || !vals || !start) {
    free(table); free(vals); free(start);
    return pose_error(POSE_ENOMEM, "sorted distinct draw: out of memory for %lld values", (long long)k);
  }
  memset(table, 0xff, (size_t)cap * sizeof *table); /* -1 = empty */
  int64_t m = 0;
  for (int64_t j = n - k; j < n; j++) {
    int64_t t = (int64_t)pose_rng_below(r, (uint64_t)j + 1);
    uint64_t h = ((uint64_t)t * 0x9E3779B97F4A7C15ull) >> (64 - bits);
    while (table[h] != -1 && table[h] != t) h = (h + 1) & (uint64_t)(cap - 1);
    if (table[h] == t) { /* taken: insert j, which no earlier step can have inserted */
      t = j;
      h = ((uint64_t)t * 0x9E3779B97F4A7C15ull) >> (64 - bits);
      while (table[h] != -1) h = (h + 1) & (uint64_t)(cap - 1);
    }
    table[h] = t;
    vals[m++] = t;
  }
  for (int64_t i = 0; i < k; i++) start[vals[i] / width + 1]++;
  for (int64_t b = 0; b < nb; b++) start[b + 1] += start[b];
  for (int64_t i = 0; i < k; i++) out[start[vals[i] / width]++] = vals[i]; /* start[b] now = end of bucket b */
  for (int64_t b = 0, lo = 0; b < nb; lo = start[b], b++) /* insertion sort inside each (tiny) bucket */
    for (int64_t i = lo + 1; i < start[b]; i++) {
      int64_t v = out[i], q = i - 1;
      while (q >= lo && out[q] > v) { out[q + 1] = out[q]; q--; }
      out[q + 1] = v;
    }
  free(table); free(vals); free(start);
  return POSE_OK;
}

/* ---- construction ---------------------------------------------------------------------------------------------- */

static int64_t nominal_len(const pose_sampler_opts *o) {
  return o->method == POSE_SAMPLE_FULL ? o->target_len : o->train_len;
}

static int64_t min_doc(const pose_sampler_opts *o) {
  if (o->method == POSE_SAMPLE_POSE && o->content == POSE_CONTENT_ALIGNED) return o->target_len;
  if (o->short_docs == POSE_SHORT_SKIP) return nominal_len(o);
  return o->method == POSE_SAMPLE_POSE ? o->chunks : 1; /* whole: N positive chunks need N tokens */
}

/* Lengths above this would let u + st + l or bucket arithmetic approach int64 limits; no real run comes near. */
#define MAX_LEN ((int64_t)1 << 48)

pose_status pose_sampler_new(const pose_sampler_opts *opts, pose_sampler **out) {
  *out = NULL;
  const pose_sampler_opts *o = opts;
  if ((unsigned)o->method > POSE_SAMPLE_PI) return pose_error(POSE_EINVAL, "sampler: unknown method %d", (int)o->method);
  if ((unsigned)o->content > POSE_CONTENT_ALIGNED)
    return pose_error(POSE_EINVAL, "sampler: unknown content strategy %d", (int)o->content);
  if ((unsigned)o->chunk_rule > POSE_CHUNKS_CODE)
    return pose_error(POSE_EINVAL, "sampler: unknown chunk rule %d", (int)o->chunk_rule);
  if ((unsigned)o->short_docs > POSE_SHORT_WHOLE)
    return pose_error(POSE_EINVAL, "sampler: unknown short-document policy %d", (int)o->short_docs);
  if (o->train_len < 1 || o->train_len > MAX_LEN)
    return pose_error(POSE_EINVAL, "sampler: train_len must be in 1..%lld, got %lld", (long long)MAX_LEN,
                      (long long)o->train_len);
  if (o->target_len < o->train_len || o->target_len > MAX_LEN)
    return pose_error(POSE_EINVAL, "sampler: target_len (%lld) must be >= train_len (%lld) and <= %lld",
                      (long long)o->target_len, (long long)o->train_len, (long long)MAX_LEN);
  if (o->method == POSE_SAMPLE_POSE) {
    if (o->chunks < 1 || o->chunks > o->train_len)
      return pose_error(POSE_EINVAL, "sampler: chunks must be in 1..train_len (%lld), got %d", (long long)o->train_len,
                        o->chunks);
    if (o->chunk_rule == POSE_CHUNKS_CODE && o->chunks != 2)
      return pose_error(POSE_EINVAL, "sampler: chunk_rule \"code\" (the authors' rule) needs chunks = 2, got %d",
                        o->chunks);
  }
  if (o->u0_random != 0 && o->u0_random != 1)
    return pose_error(POSE_EINVAL, "sampler: u0_random must be 0 or 1, got %d", o->u0_random);
  if (o->max_doc_tokens < 0)
    return pose_error(POSE_EINVAL, "sampler: max_doc_tokens must be >= 0 (0 = none), got %lld", (long long)o->max_doc_tokens);
  if (o->max_doc_tokens > 0 && o->max_doc_tokens < min_doc(o))
    return pose_error(POSE_EINVAL,
                      "sampler: max_doc_tokens (%lld) is below the shortest document the sampler accepts (%lld): "
                      "every document would be rejected", (long long)o->max_doc_tokens, (long long)min_doc(o));
  pose_sampler *s = malloc(sizeof *s);
  if (!s) return pose_error(POSE_ENOMEM, "sampler: out of memory");
  s->o = *o;
  *out = s;
  return POSE_OK;
}

void pose_sampler_free(pose_sampler *s) { free(s); }
const pose_sampler_opts *pose_sampler_options(const pose_sampler *s) { return &s->o; }
int64_t pose_sampler_example_len(const pose_sampler *s) { return nominal_len(&s->o); }
int64_t pose_sampler_min_doc_len(const pose_sampler *s) { return min_doc(&s->o); }

int64_t pose_sampler_max_chunks(const pose_sampler *s) {
  switch (s->o.method) {
  case POSE_SAMPLE_POSE: return s->o.chunks;
  case POSE_SAMPLE_RANDPOS: return s->o.train_len;
  default: return 1;
  }
}

static pose_status check_doc(const pose_sampler *s, int64_t doc_len, int64_t *lx, int64_t *n) {
  const pose_sampler_opts *o = &s->o;
  int64_t need = min_doc(o);
  if (doc_len < need) {
    if (o->method == POSE_SAMPLE_POSE && o->content == POSE_CONTENT_ALIGNED)
      return pose_error(POSE_EINVAL, "sampler: a document of %lld tokens is shorter than target_len (%lld), which "
                        "content \"aligned\" needs", (long long)doc_len, (long long)o->target_len);
    if (o->short_docs == POSE_SHORT_SKIP)
      return pose_error(POSE_EINVAL, "sampler: a document of %lld tokens is shorter than the %lld-token example "
                        "(short_docs = \"skip\"; filter such documents or use short_docs = \"whole\")",
                        (long long)doc_len, (long long)need);
    return pose_error(POSE_EINVAL, "sampler: a document of %lld tokens is too short (at least %lld needed%s)",
                      (long long)doc_len, (long long)need, o->method == POSE_SAMPLE_POSE ? ": one per chunk" : "");
  }
  int64_t x = doc_len;
  if (o->max_doc_tokens > 0 && x > o->max_doc_tokens) x = o->max_doc_tokens;
  int64_t L = nominal_len(o);
  if (x < L) L = x; /* only reachable under "whole" */
  if (lx) *lx = x;
  *n = L;
  return POSE_OK;
}

pose_status pose_sampler_doc_tokens(const pose_sampler *s, int64_t doc_len, int64_t *n) {
  return check_doc(s, doc_len, NULL, n);
}

/* ---- drawing --------------------------------------------------------------------------------------------------- */

/* dst[t] = first + t for t < len; unrolled by hand so that -O2 (no loop vectorizer) still stores vectors. The
 * fill is most of a PoSE draw's cost. */
static void fill_iota(int64_t *dst, int64_t len, int64_t first) {
  int64_t t = 0;
  for (; t + 8 <= len; t += 8, first += 8) {
    dst[t] = first; dst[t + 1] = first + 1; dst[t + 2] = first + 2; dst[t + 3] = first + 3;
    dst[t + 4] = first + 4; dst[t + 5] = first + 5; dst[t + 6] = first + 6; dst[t + 7] = first + 7;
  }
  for (; t < len; t++, first++) dst[t] = first;
}

static void fill_run(int64_t *positions, int64_t *offsets, int64_t st, int64_t len, int64_t pos0, int64_t off0) {
  if (positions) fill_iota(positions + st, len, pos0);
  if (offsets) fill_iota(offsets + st, len, off0);
}

static pose_status chunks_too_small(int need, int have) {
  return pose_error(POSE_EINVAL, "sampler: the example has %d chunks but the chunk buffer holds %d", need, have);
}

/* PoSE: chunk lengths, skips u, content offsets v; writes chunk i as (v_i + st_i, l_i, u_i + st_i). */
static pose_status draw_pose(const pose_sampler_opts *o, pose_rng *r, int64_t lx, int64_t L, int64_t *positions,
                             int64_t *offsets, pose_chunk *chunks, int max_chunks, int *n_chunks) {
  int N = o->chunks;
  if (chunks && max_chunks < N) return chunks_too_small(N, max_chunks);
  /* one array of 3N: st, u, v; on the stack for the common small N */
  int64_t stack[3 * 64], *buf = stack;
  if (N > 64) {
    buf = malloc((size_t)N * 3 * sizeof *buf);
    if (!buf) return pose_error(POSE_ENOMEM, "sampler: out of memory for %d chunks", N);
  }
  int64_t *st = buf, *u = buf + N, *v = buf + 2 * N;
  /* 1. start indices: st_0 = 0 and st_1..st_{N-1} = the cut points */
  st[0] = 0;
  if (o->chunk_rule == POSE_CHUNKS_CODE) {
    st[1] = pose_rng_range(r, 1, (L + 1) / 2); /* N = 2 checked at construction; L >= 2 by min_doc */
  } else if (N > 1) {
    pose_status e = pose_sample_sorted_distinct(r, L - 1, N - 1, st + 1);
    if (e) { if (buf != stack) free(buf); return e; }
    for (int i = 1; i < N; i++) st[i] += 1; /* {0..L-2} -> cut points {1..L-1} */
  }
  /* 2. skips */
  int64_t umax = o->target_len - L;
  u[0] = o->u0_random ? pose_rng_range(r, 0, umax) : 0;
  for (int i = 1; i < N; i++) u[i] = pose_rng_range(r, u[i - 1], umax);
  /* 3. content offsets */
  switch (o->content) {
  case POSE_CONTENT_UNIFORM:
    v[0] = 0;
    for (int i = 1; i < N; i++) v[i] = pose_rng_range(r, v[i - 1], lx - L);
    break;
  case POSE_CONTENT_ZERO:
    for (int i = 0; i < N; i++) v[i] = 0;
    break;
  case POSE_CONTENT_ALIGNED:
    for (int i = 0; i < N; i++) v[i] = u[i];
    break;
  }
  for (int i = 0; i < N; i++) {
    int64_t len = (i + 1 < N ? st[i + 1] : L) - st[i];
    fill_run(positions, offsets, st[i], len, u[i] + st[i], v[i] + st[i]);
    if (chunks) chunks[i] = (pose_chunk){.offset = v[i] + st[i], .len = len, .position = u[i] + st[i]};
  }
  if (n_chunks) *n_chunks = N;
  if (buf != stack) free(buf);
  return POSE_OK;
}

/* RandPos: L contiguous tokens at a random offset, positions = L distinct sorted values of {0..Lt-1}. */
static pose_status draw_randpos(const pose_sampler_opts *o, pose_rng *r, int64_t off, int64_t L, int64_t *positions,
                                int64_t *offsets, pose_chunk *chunks, int max_chunks, int *n_chunks) {
  int64_t *pos = positions;
  if (!pos && !(pos = malloc((size_t)L * sizeof *pos)))
    return pose_error(POSE_ENOMEM, "sampler: out of memory for %lld positions", (long long)L);
  pose_status e = pose_sample_sorted_distinct(r, o->target_len, L, pos);
  if (e == POSE_OK) {
    if (offsets) fill_run(NULL, offsets, 0, L, 0, off);
    int n = 0;
    for (int64_t k = 0; k < L; k++) {
      if (k > 0 && pos[k] == pos[k - 1] + 1) { if (chunks && n <= max_chunks) chunks[n - 1].len++; continue; }
      if (chunks && n < max_chunks) chunks[n] = (pose_chunk){.offset = off + k, .len = 1, .position = pos[k]};
      n++;
    }
    if (chunks && n > max_chunks) e = chunks_too_small(n, max_chunks);
    else if (n_chunks) *n_chunks = n;
  }
  if (pos != positions) free(pos);
  return e;
}

pose_status pose_sampler_draw(const pose_sampler *s, int64_t doc_len, uint64_t index, int64_t *positions,
                              int64_t *offsets, pose_chunk *chunks, int max_chunks, int *n_chunks) {
  const pose_sampler_opts *o = &s->o;
  int64_t lx, L;
  POSE_TRY(check_doc(s, doc_len, &lx, &L));
  if (chunks && max_chunks < 0) return pose_error(POSE_EINVAL, "sampler: negative chunk buffer size %d", max_chunks);
  pose_rng r;
  pose_rng_init(&r, o->seed, index);
  if (o->method == POSE_SAMPLE_POSE) return draw_pose(o, &r, lx, L, positions, offsets, chunks, max_chunks, n_chunks);
  int64_t off = pose_rng_range(&r, 0, lx - L);
  if (o->method == POSE_SAMPLE_RANDPOS) return draw_randpos(o, &r, off, L, positions, offsets, chunks, max_chunks, n_chunks);
  /* full-length and PI-only: one run at positions 0..L-1 */
  if (chunks && max_chunks < 1) return chunks_too_small(1, max_chunks);
  fill_run(positions, offsets, 0, L, 0, off);
  if (chunks) chunks[0] = (pose_chunk){.offset = off, .len = L, .position = 0};
  if (n_chunks) *n_chunks = 1;
  return POSE_OK;
}
