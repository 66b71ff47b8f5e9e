/* Token generation with the KV cache: greedy (temperature 0) or sampling with temperature and nucleus (top-p)
 * filtering, drawing from the Philox RNG (stream = batch row), so a seed gives the same tokens on any machine. */
#ifndef POSE_GENERATE_H
#define POSE_GENERATE_H

#include <stdint.h>

#include "model.h"

typedef struct {
  int64_t max_new_tokens;
  double temperature; /* 0 = greedy (argmax, lowest id on ties) */
  double top_p;       /* 1 = no nucleus filtering */
  uint64_t seed;
  int64_t eos;        /* stop a row after it produces this id; -1 = none */
} pose_generate_opts;

void pose_generate_defaults(pose_generate_opts *o);

/* prompt [B,T] at positions pos [B,T] (NULL: 0..T-1); new tokens take positions continuing each row's last prompt
 * position (+1 per step). out [B, max_new_tokens] receives the new ids, n_out[b] how many row b produced (fewer than
 * max_new_tokens only when it hit eos, which is included). */
pose_status pose_model_generate(pose_model *m, const int64_t *prompt, const int64_t *pos, int64_t B, int64_t T,
                                const pose_generate_opts *o, int64_t *out, int64_t *n_out);
/* Picks a token from one row of logits (exposed for tests): greedy, or temperature + top-p with uniform u in [0,1). */
int64_t pose_pick_token(const float *logits, int64_t V, double temperature, double top_p, double u, double *work,
                        int64_t *idx);

#endif
