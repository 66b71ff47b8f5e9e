/* Training-example samplers (../shared/spec/pose.md section 1): each turns a document of doc_len tokens into one
 * example, i.e. for every example token k its document offset and its position id. PoSE (positional skip-wise),
 * RandPos, full-length and PI-only. Every draw is a pure function of (seed, example index). */
#ifndef POSE_SAMPLER_H
#define POSE_SAMPLER_H

#include <stdint.h>

#include "rng.h"
#include "status.h"

typedef enum { POSE_SAMPLE_POSE = 0, POSE_SAMPLE_RANDPOS, POSE_SAMPLE_FULL, POSE_SAMPLE_PI } pose_sample_method;
typedef enum { POSE_CONTENT_UNIFORM = 0, POSE_CONTENT_ZERO, POSE_CONTENT_ALIGNED } pose_sample_content;
typedef enum { POSE_CHUNKS_PAPER = 0, POSE_CHUNKS_CODE } pose_chunk_rule;  /* paper: random composition; code: authors' N=2 rule */
typedef enum { POSE_SHORT_SKIP = 0, POSE_SHORT_WHOLE } pose_short_docs;

typedef struct {
  pose_sample_method method;
  int64_t train_len;      /* Lc: tokens per example (full-length: the example has target_len tokens) */
  int64_t target_len;     /* Lt */
  int chunks;             /* N >= 1 (PoSE; chunks, content, chunk_rule and u0_random are ignored by the other methods) */
  pose_sample_content content;
  pose_chunk_rule chunk_rule;
  int u0_random;          /* 0: u_0 = 0 (paper); 1: u_0 random too (authors' code before 43b43b3) */
  pose_short_docs short_docs;
  int64_t max_doc_tokens; /* 0 = none; else documents are truncated to this many tokens before sampling */
  uint64_t seed;
} pose_sampler_opts;

/* Fills opts with the defaults: PoSE, chunks 2, uniform content, paper chunk rule, u0 = 0, short docs skipped. */
void pose_sampler_defaults(pose_sampler_opts *opts);

typedef struct {
  int64_t offset;   /* document index of the chunk's first token (v_i + st_i) */
  int64_t len;      /* l_i */
  int64_t position; /* position id of the chunk's first token (u_i + st_i) */
} pose_chunk;

typedef struct pose_sampler pose_sampler;

pose_status pose_sampler_new(const pose_sampler_opts *opts, pose_sampler **out);
void pose_sampler_free(pose_sampler *s);
const pose_sampler_opts *pose_sampler_options(const pose_sampler *s);
/* Tokens per example: train_len, or target_len for the full-length method. */
int64_t pose_sampler_example_len(const pose_sampler *s);
/* Shortest document the sampler accepts under its short-document policy. */
int64_t pose_sampler_min_doc_len(const pose_sampler *s);

/* Draws example `index` for a document of doc_len tokens. positions and offsets receive example_len values each;
 * chunks (may be NULL) receives up to max_chunks entries and *n_chunks their count (a contiguous method reports
 * one chunk). A document the policy does not allow is POSE_EINVAL naming its length.
 * Details of this implementation (sampler.c):
 * - with short_docs = "whole", a document shorter than the example gives a shorter example: positions and offsets
 *   receive pose_sampler_doc_tokens(s, doc_len) values (min(Lx, example_len), Lx after max_doc_tokens), and every
 *   rule of the method is applied with that count L in place of Lc (PoSE: the composition of L, skips up to Lt - L);
 * - positions and offsets may each be NULL when only the chunk structure is wanted;
 * - chunks are pieces of consecutive positions and consecutive offsets: PoSE reports its N chunks as drawn (two may
 *   happen to be adjacent when u_i = u_{i-1}), full-length and PI-only one, RandPos one per maximal run of
 *   consecutive positions (up to L); a chunks buffer smaller than the example needs is POSE_EINVAL (never silently
 *   truncated: size it with pose_sampler_max_chunks); n_chunks may be NULL;
 * - the example is a pure function of (seed, index, doc_len and the options): the Philox stream is the index. */
pose_status pose_sampler_draw(const pose_sampler *s, int64_t doc_len, uint64_t index, int64_t *positions,
                              int64_t *offsets, pose_chunk *chunks, int max_chunks, int *n_chunks);

/* Tokens in the example drawn from a document of doc_len tokens: example_len, or fewer for a short document under
 * short_docs = "whole". POSE_EINVAL when the policy does not allow the document. */
pose_status pose_sampler_doc_tokens(const pose_sampler *s, int64_t doc_len, int64_t *n);
/* Most chunks one example can have: N for PoSE, 1 for full-length and PI-only, train_len for RandPos. */
int64_t pose_sampler_max_chunks(const pose_sampler *s);

/* Names of the enum values as the Lua API spells them ("pose", "uniform", "paper", "skip", ...), and back
 * (parse returns -1 for an unknown name). */
const char *pose_sample_method_name(pose_sample_method m);
const char *pose_sample_content_name(pose_sample_content c);
const char *pose_chunk_rule_name(pose_chunk_rule r);
const char *pose_short_docs_name(pose_short_docs p);
int pose_sample_method_parse(const char *name);
int pose_sample_content_parse(const char *name);
int pose_chunk_rule_parse(const char *name);
int pose_short_docs_parse(const char *name);

/* k distinct integers drawn uniformly from {0 .. n-1} (every k-subset equally likely), written to out in increasing
 * order: Robert Floyd's algorithm (k draws) with a sorted array (small k), a bitset (n <= 256 k) or a hash set and a
 * bucket sort (O(k) expected time and memory whatever n is). All three give the same values for the same draws.
 * 0 <= k <= n. The RandPos positions and the paper's chunk cut points both come from here. */
pose_status pose_sample_sorted_distinct(pose_rng *r, int64_t n, int64_t k, int64_t *out);

#endif
