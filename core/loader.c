/* Data loader (loader.h): units of documents, a stateless seeded permutation per epoch, the sampler's draw, and a
 * gather from the memory-mapped shards. */
#include "loader.h"

#include <stdlib.h>
#include <string.h>

#include "model.h" /* POSE_IGNORE_INDEX */
#include "rng.h"


struct pose_loader {
  pose_loader_opts o;
  const pose_sampler *sampler;
  pose_shard **shards;
  int n_shards;
  int64_t *doc_cum;    /* n_shards + 1: global index of each shard's first document */
  int64_t n_units;
  int64_t *unit_doc;   /* first global document of the unit */
  int64_t *unit_len;   /* tokens the sampler sees (a packed unit: exactly min_len) */
  uint8_t *unit_packed;
  int64_t *slot_cum;   /* n_units + 1 */
  int64_t T, min_len, eos, pad;
  int64_t skipped, packed;
  int any_packed;
  uint64_t state;
  int64_t *scratch;    /* batch * (T + vlen): per-row offsets and virtual documents for next() */
  int64_t vlen;        /* virtual-document buffer per row (min_len when packing, else 0) */
};

void pose_loader_defaults(pose_loader_opts *o) {
  memset(o, 0, sizeof *o);
  o->batch = 1;
  o->world = 1;
  o->pack = -1;
  o->eos_id = -1;
  o->pad_id = -1;
  o->weight = POSE_WEIGHT_DOC;
  o->shuffle = 1;
  o->resample = 1;
}

pose_status pose_loader_locate(const pose_loader *ld, int64_t doc, int *shard, int64_t *local) {
  if (doc < 0 || doc >= ld->doc_cum[ld->n_shards])
    return pose_error(POSE_EINVAL, "loader: document %lld out of range (%lld documents)", (long long)doc,
                      (long long)ld->doc_cum[ld->n_shards]);
  int lo = 0, hi = ld->n_shards; /* doc_cum[lo] <= doc < doc_cum[hi] */
  while (hi - lo > 1) {
    int mid = (lo + hi) / 2;
    if (ld->doc_cum[mid] <= doc) lo = mid; else hi = mid;
  }
  *shard = lo;
  *local = doc - ld->doc_cum[lo];
  return POSE_OK;
}

static int64_t global_doc_len(const pose_loader *ld, int64_t g) {
  int sh;
  int64_t loc;
  if (pose_loader_locate(ld, g, &sh, &loc) != POSE_OK) return 0;
  return pose_shard_doc_len(ld->shards[sh], loc);
}

static pose_status add_unit(pose_loader *ld, int64_t *cap, int64_t doc, int64_t len, int packed) {
  if (ld->n_units == *cap) {
    int64_t c = *cap ? *cap * 2 : 1024;
    int64_t *a = realloc(ld->unit_doc, sizeof(int64_t) * (size_t)c);
    if (!a) return pose_error(POSE_ENOMEM, "loader: out of memory");
    ld->unit_doc = a;
    a = realloc(ld->unit_len, sizeof(int64_t) * (size_t)c);
    if (!a) return pose_error(POSE_ENOMEM, "loader: out of memory");
    ld->unit_len = a;
    uint8_t *p = realloc(ld->unit_packed, (size_t)c);
    if (!p) return pose_error(POSE_ENOMEM, "loader: out of memory");
    ld->unit_packed = p;
    *cap = c;
  }
  ld->unit_doc[ld->n_units] = doc;
  ld->unit_len[ld->n_units] = len;
  ld->unit_packed[ld->n_units] = (uint8_t)packed;
  ld->n_units++;
  if (packed) ld->any_packed = 1;
  return POSE_OK;
}

/* One pass over every document in shard order: units, and the packing runs (see loader.h). */
static pose_status build_units(pose_loader *ld, int pack) {
  int64_t cap = 0, n_docs = ld->doc_cum[ld->n_shards];
  int64_t run_start = -1, run_len = 0;
  for (int64_t g = 0; g < n_docs; g++) {
    int64_t len = global_doc_len(ld, g);
    if (len == 0) { ld->skipped++; continue; }
    if (len >= ld->min_len) {
      if (run_start >= 0) { POSE_TRY(add_unit(ld, &cap, run_start, ld->min_len, 1)); run_start = -1; }
      POSE_TRY(add_unit(ld, &cap, g, len, 0));
    } else if (!pack) {
      ld->skipped++;
    } else {
      if (run_start < 0) { run_start = g; run_len = 0; }
      run_len += len + 1;
      ld->packed++;
      if (run_len >= ld->min_len) { POSE_TRY(add_unit(ld, &cap, run_start, ld->min_len, 1)); run_start = -1; }
    }
  }
  if (run_start >= 0) POSE_TRY(add_unit(ld, &cap, run_start, ld->min_len, 1)); /* wraps to the first documents */
  return POSE_OK;
}

pose_status pose_loader_new(pose_shard *const *shards, int n_shards, const pose_sampler *sampler,
                            const pose_loader_opts *opts, pose_loader **out) {
  *out = NULL;
  pose_loader_opts def;
  if (!opts) { pose_loader_defaults(&def); opts = &def; }
  if (!sampler) return pose_error(POSE_EINVAL, "loader: no sampler");
  if (n_shards < 1 || !shards) return pose_error(POSE_EINVAL, "loader: no shards");
  if (opts->batch < 1) return pose_error(POSE_EINVAL, "loader: batch must be >= 1 (got %lld)", (long long)opts->batch);
  if (opts->world < 1 || opts->rank < 0 || opts->rank >= opts->world)
    return pose_error(POSE_EINVAL, "loader: rank %lld outside world %lld", (long long)opts->rank,
                      (long long)opts->world);
  if (opts->weight != POSE_WEIGHT_DOC && opts->weight != POSE_WEIGHT_TOKENS)
    return pose_error(POSE_EINVAL, "loader: unknown weight %d", (int)opts->weight);
  /* the shards must agree on what their tokens mean */
  int64_t eos = -1, vocab = 0;
  for (int i = 0; i < n_shards; i++) {
    if (!shards[i]) return pose_error(POSE_EINVAL, "loader: shard %d is missing", i);
    int64_t e = pose_shard_eos_id(shards[i]), v = pose_shard_vocab_size(shards[i]);
    if (e >= 0) {
      if (eos >= 0 && e != eos)
        return pose_error(POSE_EINVAL, "loader: shards disagree on eos_id (%lld in %s, %lld before)", (long long)e,
                          pose_shard_path(shards[i]), (long long)eos);
      eos = e;
    }
    if (v) {
      if (vocab && v != vocab)
        return pose_error(POSE_EINVAL, "loader: shards disagree on vocab_size (%lld in %s, %lld before)",
                          (long long)v, pose_shard_path(shards[i]), (long long)vocab);
      vocab = v;
    }
  }
  if (opts->eos_id >= 0) eos = opts->eos_id;
  if (vocab && eos >= vocab)
    return pose_error(POSE_EINVAL, "loader: eos_id %lld outside the shards' vocabulary of %lld", (long long)eos,
                      (long long)vocab);
  pose_loader *ld = calloc(1, sizeof *ld);
  if (!ld) return pose_error(POSE_ENOMEM, "loader: out of memory");
  ld->o = *opts;
  ld->sampler = sampler;
  ld->n_shards = n_shards;
  ld->shards = malloc(sizeof(pose_shard *) * (size_t)n_shards);
  ld->doc_cum = malloc(sizeof(int64_t) * ((size_t)n_shards + 1));
  if (!ld->shards || !ld->doc_cum) { pose_loader_free(ld); return pose_error(POSE_ENOMEM, "loader: out of memory"); }
  ld->doc_cum[0] = 0;
  for (int i = 0; i < n_shards; i++) {
    ld->shards[i] = shards[i];
    ld->doc_cum[i + 1] = ld->doc_cum[i] + pose_shard_num_docs(shards[i]);
  }
  ld->T = pose_sampler_example_len(sampler);
  ld->min_len = pose_sampler_min_doc_len(sampler);
  if (ld->min_len < 1) ld->min_len = 1;
  ld->eos = eos;
  ld->pad = opts->pad_id >= 0 ? opts->pad_id : eos >= 0 ? eos : 0;
  int pack = opts->pack >= 0 ? opts->pack : pose_sampler_options(sampler)->method == POSE_SAMPLE_FULL;
  pose_status st = build_units(ld, pack);
  if (st == POSE_OK && ld->n_units == 0)
    st = pose_error(POSE_EINVAL, "loader: no usable document in %lld (%lld shorter than the sampler's minimum of %lld "
                    "tokens or empty%s)", (long long)ld->doc_cum[n_shards], (long long)ld->skipped,
                    (long long)ld->min_len, pack ? "" : "; pack = true would join short ones");
  if (st == POSE_OK && ld->any_packed && ld->eos < 0)
    st = pose_error(POSE_EINVAL, "loader: packing short documents needs an EOS id: the shards record none, "
                    "pass eos_id");
  if (st == POSE_OK) {
    ld->slot_cum = malloc(sizeof(int64_t) * ((size_t)ld->n_units + 1));
    ld->vlen = ld->any_packed ? ld->min_len : 0;
    ld->scratch = malloc(sizeof(int64_t) * (size_t)(opts->batch * (2 * ld->T + ld->vlen)));
    if (!ld->slot_cum || !ld->scratch) st = pose_error(POSE_ENOMEM, "loader: out of memory");
  }
  if (st != POSE_OK) { pose_loader_free(ld); return st; }
  ld->slot_cum[0] = 0;
  for (int64_t u = 0; u < ld->n_units; u++) {
    int64_t k = 1;
    if (opts->weight == POSE_WEIGHT_TOKENS && ld->unit_len[u] / ld->T > 1) k = ld->unit_len[u] / ld->T;
    ld->slot_cum[u + 1] = ld->slot_cum[u] + k;
  }
  *out = ld;
  return POSE_OK;
}

void pose_loader_free(pose_loader *ld) {
  if (!ld) return;
  free(ld->shards); free(ld->doc_cum);
  free(ld->unit_doc); free(ld->unit_len); free(ld->unit_packed); free(ld->slot_cum);
  free(ld->scratch);
  free(ld);
}

int64_t pose_loader_seq_len(const pose_loader *ld) { return ld->T; }
int64_t pose_loader_batch(const pose_loader *ld) { return ld->o.batch; }
int64_t pose_loader_num_units(const pose_loader *ld) { return ld->n_units; }
int64_t pose_loader_epoch_len(const pose_loader *ld) { return ld->slot_cum[ld->n_units]; }
int64_t pose_loader_skipped_docs(const pose_loader *ld) { return ld->skipped; }
int64_t pose_loader_packed_docs(const pose_loader *ld) { return ld->packed; }
int64_t pose_loader_eos_id(const pose_loader *ld) { return ld->eos; }
uint64_t pose_loader_state(const pose_loader *ld) { return ld->state; }
void pose_loader_set_state(pose_loader *ld, uint64_t state) { ld->state = state; }

/* A pseudo-random permutation of [0, n) keyed by (seed, epoch): a 4-round balanced Feistel network over the
 * smallest even number of bits covering n, with cycle walking (fewer than 4 rounds of walking on average). The
 * stream carries a tag bit so that it never meets a sampler's stream (an example index) under the same seed. */
static uint64_t permute(uint64_t seed, uint64_t epoch, uint64_t i, uint64_t n) {
  if (n <= 1) return 0;
  int bits = 64 - __builtin_clzll(n - 1);
  if (bits < 2) bits = 2;
  if (bits & 1) bits++;
  int h = bits / 2;
  uint64_t mask = (h == 64) ? ~0ull : ((1ull << h) - 1);
  uint64_t stream = (1ull << 62) | epoch;
  uint64_t x = i;
  do {
    uint64_t l = x >> h, r = x & mask;
    for (uint64_t round = 0; round < 4; round++) {
      uint32_t w[4];
      pose_philox4x32(seed, stream, (round << 40) | r, w);
      uint64_t f = (((uint64_t)w[1] << 32) | w[0]) & mask;
      uint64_t nl = r;
      r = l ^ f;
      l = nl;
    }
    x = (l << h) | r;
  } while (x >= n);
  return x;
}

static int64_t unit_of_slot(const pose_loader *ld, int64_t slot) {
  int64_t lo = 0, hi = ld->n_units; /* slot_cum[lo] <= slot < slot_cum[hi] */
  while (hi - lo > 1) {
    int64_t mid = lo + (hi - lo) / 2;
    if (ld->slot_cum[mid] <= slot) lo = mid; else hi = mid;
  }
  return lo;
}

/* Fills vdoc with the packed virtual document starting at global document g: documents (empty ones skipped) each
 * followed by EOS, wrapping to the first document, truncated to len tokens. */
static void fill_virtual(const pose_loader *ld, int64_t g, int64_t len, int64_t *vdoc) {
  int64_t n_docs = ld->doc_cum[ld->n_shards], k = 0;
  while (k < len) {
    int sh;
    int64_t loc;
    pose_loader_locate(ld, g, &sh, &loc);
    const pose_shard *s = ld->shards[sh];
    int64_t dl = pose_shard_doc_len(s, loc), start = pose_shard_doc_start(s, loc);
    int64_t take = dl < len - k ? dl : len - k;
    const void *tok = pose_shard_tokens(s);
    pose_shard_dtype dt = pose_shard_get_dtype(s);
    for (int64_t j = 0; j < take; j++) vdoc[k + j] = pose_shard_token_at(tok, dt, start + j);
    k += take;
    if (dl > 0 && k < len) vdoc[k++] = ld->eos;
    g = (g + 1) % n_docs;
  }
}

/* The body of pose_loader_example with caller-provided scratch (offsets: 2T values, the second half standing in for
 * positions when the caller wants none; vdoc: vlen values). */
static pose_status example_into(const pose_loader *ld, uint64_t e, int64_t *ids, int64_t *positions,
                                int64_t *targets, int64_t *doc, int64_t *offsets, int64_t *vdoc) {
  const int64_t T = ld->T;
  const uint64_t S = (uint64_t)ld->slot_cum[ld->n_units];
  uint64_t epoch = e / S, i = e % S;
  int64_t slot = (int64_t)(ld->o.shuffle ? permute(ld->o.seed, epoch, i, S) : i);
  int64_t u = unit_of_slot(ld, slot);
  int64_t len = ld->unit_len[u];
  if (doc) *doc = ld->unit_doc[u];
  /* tokens the sampler fills: example_len, or fewer for a short document kept whole (sampler.h) */
  int64_t n = 0;
  pose_status st = pose_sampler_doc_tokens(ld->sampler, len, &n);
  if (st != POSE_OK || n > T)
    return st != POSE_OK ? st : pose_error(POSE_EINVAL, "loader: sampler wants %lld tokens, examples have %lld",
                                           (long long)n, (long long)T);
  int64_t *pos = positions ? positions : offsets + T; /* scratch holds 2T (+ vlen) values */
  for (int64_t k = 0; k < T; k++) offsets[k] = -1;
  st = pose_sampler_draw(ld->sampler, len, ld->o.resample ? e : (uint64_t)slot, pos, offsets, NULL, 0, NULL);
  if (st != POSE_OK)
    return pose_error_prefix(st, "loader: example %llu (document %lld, %lld tokens): ", (unsigned long long)e,
                             (long long)ld->unit_doc[u], (long long)len);
  /* the sampler's contract, checked cheaply: n offsets inside the document, the rest untouched */
  for (int64_t k = 0; k < T; k++) {
    if (k < n ? (offsets[k] < 0 || offsets[k] >= len || pos[k] < 0) : offsets[k] != -1) {
      return pose_error(POSE_EINVAL, "loader: sampler gave offset %lld / position %lld for token %lld of "
                                   "example %llu, document of %lld tokens (%lld expected)", (long long)offsets[k],
                                   (long long)pos[k], (long long)k, (unsigned long long)e, (long long)len,
                                   (long long)n);
    }
  }
  if (ids || targets) {
    int64_t *dst = ids ? ids : targets;
    if (ld->unit_packed[u]) {
      fill_virtual(ld, ld->unit_doc[u], len, vdoc);
      for (int64_t k = 0; k < n; k++) dst[k] = vdoc[offsets[k]];
    } else {
      int sh;
      int64_t loc;
      pose_loader_locate(ld, ld->unit_doc[u], &sh, &loc);
      const pose_shard *s = ld->shards[sh];
      const void *tok = pose_shard_tokens(s);
      pose_shard_dtype dt = pose_shard_get_dtype(s);
      int64_t base = pose_shard_doc_start(s, loc);
      if (dt == POSE_SHARD_U16) {
        const uint16_t *t = (const uint16_t *)tok + base;
        for (int64_t k = 0; k < n; k++) dst[k] = t[offsets[k]];
      } else {
        const uint32_t *t = (const uint32_t *)tok + base;
        for (int64_t k = 0; k < n; k++) dst[k] = t[offsets[k]];
      }
    }
    for (int64_t k = n; k < T; k++) dst[k] = ld->pad;
    if (ids && targets) {
      memcpy(targets, ids, sizeof(int64_t) * (size_t)n);
    }
    if (targets)
      for (int64_t k = n; k < T; k++) targets[k] = POSE_IGNORE_INDEX;
  }
  for (int64_t k = n; k < T; k++) pos[k] = n > 0 ? pos[n - 1] : 0;
  return POSE_OK;
}

pose_status pose_loader_example(const pose_loader *ld, uint64_t e, int64_t *ids, int64_t *positions,
                                int64_t *targets, int64_t *doc) {
  int64_t *scratch = malloc(sizeof(int64_t) * (size_t)(2 * ld->T + ld->vlen));
  if (!scratch) return pose_error(POSE_ENOMEM, "loader: out of memory");
  pose_status st = example_into(ld, e, ids, positions, targets, doc, scratch, scratch + 2 * ld->T);
  free(scratch);
  return st;
}

pose_status pose_loader_next(pose_loader *ld, int64_t *ids, int64_t *positions, int64_t *targets, int64_t *docs) {
  const int64_t B = ld->o.batch, T = ld->T, W = ld->o.world;
  const uint64_t base = ld->state + (uint64_t)ld->o.rank;
  int failed_row = -1;
  /* rows are independent pure functions of their example index: threads change nothing but speed. Errors set a
   * thread-local message, so a failed row is redone on this thread below to report it. */
#pragma omp parallel for schedule(static) if (B * T >= (1 << 17))
  for (int64_t b = 0; b < B; b++) {
    int64_t *scr = ld->scratch + b * (2 * T + ld->vlen);
    pose_status st = example_into(ld, base + (uint64_t)(b * W), ids ? ids + b * T : NULL,
                                  positions ? positions + b * T : NULL, targets ? targets + b * T : NULL,
                                  docs ? docs + b : NULL, scr, scr + 2 * T);
    if (st != POSE_OK) {
#pragma omp critical(pose_loader_fail)
      if (failed_row < 0 || b < failed_row) failed_row = (int)b;
    }
  }
  if (failed_row >= 0) {
    int64_t *scr = ld->scratch;
    return example_into(ld, base + (uint64_t)(failed_row * W), NULL, NULL, NULL, NULL, scr, scr + 2 * T);
  }
  ld->state += (uint64_t)(B * W);
  return POSE_OK;
}
