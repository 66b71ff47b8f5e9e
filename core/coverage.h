/* Coverage of relative distances and absolute positions by a sampler (../shared/spec/pose.md section 1.3): what PoSE
 * claims to buy is that training at Lc still shows the model every relative distance 1..Lt-1.
 *
 * An accumulator over examples (strictly increasing position lists in [0, Lt-1]):
 *   distance_hist[d] = number of examples in which some pair of tokens is exactly d positions apart (d >= 1; each
 *                      example counts once per distance, however many pairs realise it); distance_hist[0] = 0;
 *   position_hist[p] = number of examples that have a token at position p;
 *   fraction         = share of {1 .. Lt-1} with distance_hist > 0 (1 when Lt = 1: nothing to cover).
 * An example's positions split into m maximal runs of consecutive values; its distinct distances are the union of
 * [1, len_a - 1] over runs and [start_b - end_a, end_b - start_a] over pairs of runs a < b, so a PoSE example costs
 * O(L + N^2 log N), not O(L^2). Many runs (RandPos) switch to a bitset difference set, O(m * Lt / 64). */
#ifndef POSE_COVERAGE_H
#define POSE_COVERAGE_H

#include <stdint.h>

#include "sampler.h"
#include "status.h"

typedef struct pose_coverage pose_coverage;

/* How an example's distinct distances are found: auto picks the cheaper of intervals and bitset; pairs is the
 * O(L^2) reference. All give the same histograms (tests compare them). */
typedef enum { POSE_COVERAGE_AUTO = 0, POSE_COVERAGE_INTERVALS, POSE_COVERAGE_BITSET, POSE_COVERAGE_PAIRS } pose_coverage_method;

pose_status pose_coverage_new(int64_t target_len, pose_coverage **out);
void pose_coverage_free(pose_coverage *c);
void pose_coverage_set_method(pose_coverage *c, pose_coverage_method m);
int64_t pose_coverage_target_len(const pose_coverage *c);
int64_t pose_coverage_draws(const pose_coverage *c);

/* Adds one example: n >= 1 strictly increasing positions in [0, Lt-1] (else POSE_EINVAL, nothing added). */
pose_status pose_coverage_add(pose_coverage *c, const int64_t *positions, int64_t n);

/* Adds the examples start_index .. start_index + draws - 1 of sampler s for a document of doc_len tokens. The
 * sampler's target_len must equal the accumulator's. */
pose_status pose_coverage_add_sampler(pose_coverage *c, const pose_sampler *s, int64_t doc_len, int64_t draws,
                                      uint64_t start_index);

/* Writes the histograms (Lt entries each; either pointer may be NULL) and returns through *covered the number of
 * distances in 1..Lt-1 seen at least once (may be NULL). */
pose_status pose_coverage_result(const pose_coverage *c, int64_t *distance_hist, int64_t *position_hist, int64_t *covered);
/* covered / (Lt - 1), or 1 when Lt = 1. */
double pose_coverage_fraction(const pose_coverage *c);

#endif
