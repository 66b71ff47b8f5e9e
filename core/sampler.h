/* Training-example samplers (../shared/spec/pose.md section 1): each turns a document of doc_len tokens into one
 * example, i.e. for every example token k its document offset and its position id. PoSE (positional skip-wise),
 * RandPos, full-length and PI-only. Every draw is a pure function of (seed, example index). */
#ifndef POSE_SAMPLER_H
#define POSE_SAMPLER_H

#include <stdint.h>

#include "status.h"

typedef enum { POSE_SAMPLE_POSE = 0, POSE_SAMPLE_RANDPOS, POSE_SAMPLE_FULL, POSE_SAMPLE_PI } pose_sample_method;
typedef enum { POSE_CONTENT_UNIFORM = 0, POSE_CONTENT_ZERO, POSE_CONTENT_ALIGNED } pose_sample_content;
typedef enum { POSE_CHUNKS_PAPER = 0, POSE_CHUNKS_CODE } pose_chunk_rule;  /* paper: random composition; code: authors' N=2 rule */
typedef enum { POSE_SHORT_SKIP = 0, POSE_SHORT_WHOLE } pose_short_docs;

typedef struct {
  pose_sample_method method;
  int64_t train_len;      /* Lc: tokens per example (full-length: the example has target_len tokens) */
  int64_t target_len;     /* Lt */
  int chunks;             /* N >= 1 (PoSE) */
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
 * one chunk). A document the policy does not allow is POSE_EINVAL naming its length. */
pose_status pose_sampler_draw(const pose_sampler *s, int64_t doc_len, uint64_t index, int64_t *positions,
                              int64_t *offsets, pose_chunk *chunks, int max_chunks, int *n_chunks);

#endif
