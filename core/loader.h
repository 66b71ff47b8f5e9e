/* Data loader: training batches from token shards through a sampler (sampler.h).
 *
 * The example stream. Over one or more shards the loader forms "units": a document of at least the sampler's
 * min_doc_len tokens is a unit by itself; shorter ones are skipped, or, with packing on, consecutive documents are
 * joined with EOS after each into a virtual document of exactly min_doc_len tokens (a run of short documents is
 * closed by borrowing the head of the next document, which stays a unit of its own too; the run at the very end
 * borrows from the first documents). Empty documents are always skipped. Each unit has a number of slots per
 * epoch: 1 (weight "doc": one example per document per epoch, as the paper) or max(1, floor(len / example_len))
 * (weight "tokens": long documents are drawn in proportion to their length). Global example e belongs to epoch
 * e / S (S = slots per epoch) and takes slot perm_epoch(e mod S), perm being a seeded pseudo-random permutation
 * (a Feistel network, stateless) or the identity without shuffling; the sampler then draws example e from the
 * unit with index e. Hence example e is a pure function of (shards, sampler options, loader seed, e): batch k is
 * the same whatever the thread count, and world w x batch B covers exactly the examples that world 1 x batch B*w
 * does. The sampler draws example e with index e (or, without resampling, with the index of its slot).
 *
 * Ranks: rank r of world w takes global examples g + r, g + r + w, ... where g is the shared state counter (the
 * number of global examples all ranks together have consumed); a batch of B advances it by B*w. Restoring the
 * same g on every rank resumes exactly, whatever the world size was.
 *
 * A batch is ids [B,T], positions [B,T], targets [B,T] (int64, row-major), T = the sampler's example_len.
 * targets follow model.h's labels convention: targets = ids, and POSE_IGNORE_INDEX (-100) where a short example
 * (short_docs = "whole") is padded (pad id, positions repeating the last real one). */
#ifndef POSE_LOADER_H
#define POSE_LOADER_H

#include <stdint.h>

#include "sampler.h"
#include "shard.h"
#include "status.h"

typedef enum { POSE_WEIGHT_DOC = 0, POSE_WEIGHT_TOKENS } pose_loader_weight;

typedef struct {
  int64_t batch;             /* B >= 1 */
  uint64_t seed;             /* document order (the sampler has its own seed for positions and offsets) */
  int64_t rank, world;       /* 0 <= rank < world */
  int pack;                  /* -1: default (on for the full-length method, off otherwise); 0 filter; 1 pack */
  int64_t eos_id;            /* -1: the shards' eos_id (needed only when packing) */
  int64_t pad_id;            /* id written where a short example is padded; -1: eos_id, or 0 when there is none */
  pose_loader_weight weight; /* default POSE_WEIGHT_DOC */
  int shuffle;               /* default 1 */
  int resample;              /* default 1: the sampler draws example e with index e (fresh chunks and skips every
                              * epoch); 0: with the slot's index, so a document gets the same draw every epoch, as
                              * the authors' code that samples once at preprocessing (pose.md 1.1) */
} pose_loader_opts;

void pose_loader_defaults(pose_loader_opts *o);

typedef struct pose_loader pose_loader;

/* The loader borrows the shards and the sampler: they must outlive it. No usable unit is POSE_EINVAL saying why. */
pose_status pose_loader_new(pose_shard *const *shards, int n_shards, const pose_sampler *sampler,
                            const pose_loader_opts *o, pose_loader **out);
void pose_loader_free(pose_loader *ld);

int64_t pose_loader_seq_len(const pose_loader *ld);   /* T */
int64_t pose_loader_batch(const pose_loader *ld);     /* B */
int64_t pose_loader_num_units(const pose_loader *ld); /* documents or packed documents in use */
int64_t pose_loader_epoch_len(const pose_loader *ld); /* S: examples per epoch (all ranks together) */
int64_t pose_loader_skipped_docs(const pose_loader *ld); /* documents below min_doc_len that were filtered out */
int64_t pose_loader_packed_docs(const pose_loader *ld);  /* documents that went into packed units */
int64_t pose_loader_eos_id(const pose_loader *ld);

/* Global example e into one row: ids, positions, targets (T values each; any may be NULL); *doc (may be NULL)
 * receives the global index (over all shards, in order) of the unit's first document. */
pose_status pose_loader_example(const pose_loader *ld, uint64_t e, int64_t *ids, int64_t *positions,
                                int64_t *targets, int64_t *doc);
/* The next batch of this rank: B rows (docs: B values, may be NULL). Advances the state by B*world. */
pose_status pose_loader_next(pose_loader *ld, int64_t *ids, int64_t *positions, int64_t *targets, int64_t *docs);
/* Global examples consumed by all ranks together (see above), and restoring it. */
uint64_t pose_loader_state(const pose_loader *ld);
void pose_loader_set_state(pose_loader *ld, uint64_t state);

/* Global document index -> (shard, document within it); POSE_EINVAL when out of range. */
pose_status pose_loader_locate(const pose_loader *ld, int64_t doc, int *shard, int64_t *local);

#endif
