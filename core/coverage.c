/* Coverage accumulator: see coverage.h. Per example, distances go either into a difference array over merged
 * intervals (few runs) or straight into the histogram from a bitset difference set (many runs); positions always
 * go into a difference array over runs. The histograms are the prefix sums, taken when asked. */
#include "coverage.h"

#include <stdlib.h>
#include <string.h>

struct pose_coverage {
  int64_t lt, draws;
  pose_coverage_method method;
  int64_t *dist_diff; /* [lt + 1] +1 at lo, -1 at hi + 1 of each example's merged distance intervals */
  int64_t *dist_direct; /* [lt] direct counts from the bitset / pairs paths */
  int64_t *pos_diff;  /* [lt + 1] */
  /* scratch, grown on demand */
  int64_t *run_start, *run_end;
  int64_t runs_cap, ends_cap;
  int64_t *iv; /* pairs (lo, hi) */
  int64_t iv_cap;
  uint64_t *bits, *acc, *tmp; /* [words] each */
  int64_t *stamp;             /* [lt] for the pairs path: last example that marked each distance */
};

static int64_t nwords(int64_t lt) { return (lt + 63) / 64; }

pose_status pose_coverage_new(int64_t target_len, pose_coverage **out) {
  *out = NULL;
  if (target_len < 1 || target_len > ((int64_t)1 << 40))
    return pose_error(POSE_EINVAL, "coverage: target_len must be in 1..2^40, got %lld", (long long)target_len);
  pose_coverage *c = calloc(1, sizeof *c);
  if (!c) return pose_error(POSE_ENOMEM, "coverage: out of memory");
  c->lt = target_len;
  c->dist_diff = calloc((size_t)target_len + 1, sizeof(int64_t));
  c->dist_direct = calloc((size_t)target_len, sizeof(int64_t));
  c->pos_diff = calloc((size_t)target_len + 1, sizeof(int64_t));
  if (!c->dist_diff || !c->dist_direct || !c->pos_diff) {
    pose_coverage_free(c);
    return pose_error(POSE_ENOMEM, "coverage: out of memory for target_len %lld", (long long)target_len);
  }
  *out = c;
  return POSE_OK;
}

void pose_coverage_free(pose_coverage *c) {
  if (!c) return;
  free(c->dist_diff); free(c->dist_direct); free(c->pos_diff);
  free(c->run_start); free(c->run_end); free(c->iv);
  free(c->bits); free(c->acc); free(c->tmp); free(c->stamp);
  free(c);
}

void pose_coverage_set_method(pose_coverage *c, pose_coverage_method m) { c->method = m; }
int64_t pose_coverage_target_len(const pose_coverage *c) { return c->lt; }
int64_t pose_coverage_draws(const pose_coverage *c) { return c->draws; }

static int grow(void **p, int64_t *cap, int64_t need, size_t elem) {
  if (need <= *cap) return 0;
  int64_t n = *cap ? *cap : 64;
  while (n < need) n *= 2;
  void *q = realloc(*p, (size_t)n * elem);
  if (!q) return -1;
  *p = q;
  *cap = n;
  return 0;
}

static int cmp_lo(const void *a, const void *b) {
  int64_t x = ((const int64_t *)a)[0], y = ((const int64_t *)b)[0];
  return (x > y) - (x < y);
}

/* Union of the run-pair intervals, merged, added once each to dist_diff. */
static pose_status add_intervals(pose_coverage *c, int64_t m) {
  int64_t need = m + m * (m - 1) / 2;
  if (grow((void **)&c->iv, &c->iv_cap, 2 * need, sizeof(int64_t)))
    return pose_error(POSE_ENOMEM, "coverage: out of memory for %lld intervals", (long long)need);
  int64_t k = 0, *s = c->run_start, *e = c->run_end;
  for (int64_t a = 0; a < m; a++) {
    if (e[a] > s[a]) { c->iv[2 * k] = 1; c->iv[2 * k + 1] = e[a] - s[a]; k++; }
    for (int64_t b = a + 1; b < m; b++) { c->iv[2 * k] = s[b] - e[a]; c->iv[2 * k + 1] = e[b] - s[a]; k++; }
  }
  if (k == 0) return POSE_OK;
  qsort(c->iv, (size_t)k, 2 * sizeof(int64_t), cmp_lo);
  int64_t lo = c->iv[0], hi = c->iv[1];
  for (int64_t i = 1; i <= k; i++) {
    if (i < k && c->iv[2 * i] <= hi + 1) { /* touching or overlapping: extend */
      if (c->iv[2 * i + 1] > hi) hi = c->iv[2 * i + 1];
      continue;
    }
    c->dist_diff[lo]++;
    c->dist_diff[hi + 1]--;
    if (i < k) { lo = c->iv[2 * i]; hi = c->iv[2 * i + 1]; }
  }
  return POSE_OK;
}

/* dst = src >> sh (as one Lt-bit number, bit p = position p), zero-filled from the top. */
static void shift_right(uint64_t *dst, const uint64_t *src, int64_t words, int64_t sh) {
  int64_t q = sh / 64;
  int r = (int)(sh % 64);
  for (int64_t w = 0; w < words; w++) {
    uint64_t lo = w + q < words ? src[w + q] : 0, hi = w + q + 1 < words ? src[w + q + 1] : 0;
    dst[w] = r ? (lo >> r) | (hi << (64 - r)) : lo;
  }
}

/* Bitset difference set: distance d is covered iff some position p has p + d in the set, i.e. bit d of
 * OR_p (B >> p). A run [s, e] contributes (B >> s) smeared over shifts 0..e-s by doubling. */
static pose_status add_bitset(pose_coverage *c, const int64_t *pos, int64_t n, int64_t m) {
  int64_t W = nwords(c->lt);
  if (!c->bits) {
    c->bits = malloc((size_t)W * sizeof(uint64_t));
    c->acc = malloc((size_t)W * sizeof(uint64_t));
    c->tmp = malloc((size_t)W * sizeof(uint64_t));
    if (!c->bits || !c->acc || !c->tmp) return pose_error(POSE_ENOMEM, "coverage: out of memory for bitsets");
  }
  memset(c->bits, 0, (size_t)W * sizeof(uint64_t));
  memset(c->acc, 0, (size_t)W * sizeof(uint64_t));
  for (int64_t i = 0; i < n; i++) c->bits[pos[i] / 64] |= (uint64_t)1 << (pos[i] % 64);
  for (int64_t a = 0; a < m; a++) {
    int64_t s = c->run_start[a], len = c->run_end[a] - s + 1;
    int64_t words = W - s / 64; /* the shifted set has no bits above Lt - 1 - s */
    shift_right(c->tmp, c->bits, W, s);
    for (int64_t have = 1; have < len;) {
      int64_t step = have < len - have ? have : len - have;
      int64_t q = step / 64;
      int r = (int)(step % 64);
      for (int64_t w = 0; w < words; w++) { /* in place, ascending: reads only words >= w, not yet written */
        uint64_t lo = w + q < words ? c->tmp[w + q] : 0, hi = w + q + 1 < words ? c->tmp[w + q + 1] : 0;
        c->tmp[w] |= r ? (lo >> r) | (hi << (64 - r)) : lo;
      }
      have += step;
    }
    for (int64_t w = 0; w < words; w++) c->acc[w] |= c->tmp[w];
  }
  c->acc[0] &= ~(uint64_t)1; /* distance 0 is each token with itself */
  for (int64_t w = 0; w < W; w++)
    for (uint64_t x = c->acc[w]; x; x &= x - 1) c->dist_direct[w * 64 + __builtin_ctzll(x)]++;
  return POSE_OK;
}

/* Reference: every pair, O(n^2). */
static pose_status add_pairs(pose_coverage *c, const int64_t *pos, int64_t n) {
  if (!c->stamp) {
    c->stamp = malloc((size_t)c->lt * sizeof(int64_t));
    if (!c->stamp) return pose_error(POSE_ENOMEM, "coverage: out of memory");
    memset(c->stamp, 0xff, (size_t)c->lt * sizeof(int64_t));
  }
  for (int64_t i = 1; i < n; i++)
    for (int64_t j = 0; j < i; j++) {
      int64_t d = pos[i] - pos[j];
      if (c->stamp[d] != c->draws) { c->stamp[d] = c->draws; c->dist_direct[d]++; }
    }
  return POSE_OK;
}

pose_status pose_coverage_add(pose_coverage *c, const int64_t *pos, int64_t n) {
  if (n < 1) return pose_error(POSE_EINVAL, "coverage: an example needs at least one position, got %lld", (long long)n);
  for (int64_t i = 0; i < n; i++) {
    if (pos[i] < 0 || pos[i] >= c->lt)
      return pose_error(POSE_EINVAL, "coverage: position %lld (token %lld) outside 0..%lld", (long long)pos[i],
                        (long long)i, (long long)(c->lt - 1));
    if (i > 0 && pos[i] <= pos[i - 1])
      return pose_error(POSE_EINVAL, "coverage: positions must be strictly increasing (token %lld: %lld after %lld)",
                        (long long)i, (long long)pos[i], (long long)pos[i - 1]);
  }
  if (grow((void **)&c->run_start, &c->runs_cap, n, sizeof(int64_t)) ||
      grow((void **)&c->run_end, &c->ends_cap, n, sizeof(int64_t)))
    return pose_error(POSE_ENOMEM, "coverage: out of memory for %lld positions", (long long)n);
  int64_t m = 0;
  for (int64_t i = 0; i < n; i++) {
    if (i > 0 && pos[i] == pos[i - 1] + 1) { c->run_end[m - 1] = pos[i]; continue; }
    c->run_start[m] = c->run_end[m] = pos[i];
    m++;
  }
  pose_coverage_method how = c->method;
  if (how == POSE_COVERAGE_AUTO) {
    /* intervals: ~P log P for P = m^2/2 pairs of runs; bitset: ~ (sum over runs of (1 + log len)) * Lt/64 words */
    double P = (double)m * (double)(m + 1) / 2, lg = 1;
    while ((double)((int64_t)1 << (int)lg) < P && lg < 62) lg++;
    double bitset_cost = (double)(m + 8) * (double)nwords(c->lt);
    how = (P <= (double)(1 << 20) && P * lg <= 4 * bitset_cost) ? POSE_COVERAGE_INTERVALS : POSE_COVERAGE_BITSET;
  }
  pose_status st = how == POSE_COVERAGE_INTERVALS ? add_intervals(c, m)
                   : how == POSE_COVERAGE_BITSET  ? add_bitset(c, pos, n, m)
                                                  : add_pairs(c, pos, n);
  if (st) return st;
  for (int64_t a = 0; a < m; a++) {
    c->pos_diff[c->run_start[a]]++;
    c->pos_diff[c->run_end[a] + 1]--;
  }
  c->draws++;
  return POSE_OK;
}

pose_status pose_coverage_add_sampler(pose_coverage *c, const pose_sampler *s, int64_t doc_len, int64_t draws,
                                      uint64_t start_index) {
  const pose_sampler_opts *o = pose_sampler_options(s);
  if (o->target_len != c->lt)
    return pose_error(POSE_EINVAL, "coverage: sampler target_len %lld differs from the accumulator's %lld",
                      (long long)o->target_len, (long long)c->lt);
  if (draws < 0) return pose_error(POSE_EINVAL, "coverage: draws must be >= 0, got %lld", (long long)draws);
  int64_t n;
  POSE_TRY(pose_sampler_doc_tokens(s, doc_len, &n));
  int64_t *pos = malloc((size_t)n * sizeof *pos);
  if (!pos) return pose_error(POSE_ENOMEM, "coverage: out of memory");
  pose_status st = POSE_OK;
  for (int64_t k = 0; k < draws && st == POSE_OK; k++) {
    st = pose_sampler_draw(s, doc_len, start_index + (uint64_t)k, pos, NULL, NULL, 0, NULL);
    if (st == POSE_OK) st = pose_coverage_add(c, pos, n);
  }
  free(pos);
  return st;
}

pose_status pose_coverage_result(const pose_coverage *c, int64_t *distance_hist, int64_t *position_hist, int64_t *covered) {
  int64_t run_d = 0, run_p = 0, cov = 0;
  for (int64_t i = 0; i < c->lt; i++) {
    run_d += c->dist_diff[i];
    run_p += c->pos_diff[i];
    int64_t d = i == 0 ? 0 : run_d + c->dist_direct[i];
    if (i > 0 && d > 0) cov++;
    if (distance_hist) distance_hist[i] = d;
    if (position_hist) position_hist[i] = run_p;
  }
  if (covered) *covered = cov;
  return POSE_OK;
}

double pose_coverage_fraction(const pose_coverage *c) {
  if (c->lt == 1) return 1.0;
  int64_t cov;
  pose_coverage_result(c, NULL, NULL, &cov);
  return (double)cov / (double)(c->lt - 1);
}
