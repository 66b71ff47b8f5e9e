/* The pose_rope struct, shared by rope.c (frequencies, state machine, cos/sin) and rope_config.c (config.json and
 * pose.rope keys in and out). Not part of the public API. */
#ifndef POSE_ROPE_INTERNAL_H
#define POSE_ROPE_INTERNAL_H

#include <stdint.h>

#include "rope.h"

struct pose_rope {
  pose_rope_type type;
  char family[24];  /* config model_type, "" when built from pose.rope keys alone */
  int head_dim;     /* H; 0 when unknown */
  int dim;          /* r, the rotated channels (proportional: H, of which `pairs` have a real frequency) */
  int pairs;        /* pairs with a non-zero frequency (proportional); dim/2 otherwise */
  double prf;       /* partial_rotary_factor as given (proportional uses it) */
  int has_prf;
  double theta;     /* the base as a double, as Python holds it */
  double factor;    /* s, effective (yarn/longrope without one: max_position_embeddings / original) */
  int has_factor;   /* factor given explicitly (else derived or unused) */
  int64_t max_pos;  /* max_position_embeddings; 0 when unknown */
  int64_t orig_max_pos; /* original_max_position_embeddings (effective) for yarn/longrope/llama3 */
  /* yarn */
  double beta_fast, beta_slow;   /* effective: 0 or null mean 32 and 1 */
  int has_attention_factor;      /* yarn/longrope: attention_factor given */
  double attention_factor_in;
  double mscale, mscale_all_dim; /* 0 when absent (falsy in Python) */
  int has_mscale, has_mscale_all_dim;
  int truncate;                  /* floor/ceil the correction range (default true) */
  double extrapolation_factor;   /* YaRN repository: multiplies the extrapolation mix (1 = transformers) */
  double attn_factor;            /* YaRN repository: multiplies A (1 = transformers) */
  int revised;                   /* PoSE's revised YaRN: blend wavelengths instead of frequencies */
  /* llama3 */
  double low_freq_factor, high_freq_factor;
  /* longrope: dim/2 factors each, as given (converted to float32 where used) */
  double *short_factor, *long_factor;
  /* derived state */
  double attention; /* A */
  float *inv;       /* current inverse frequencies (dim/2) */
  float *inv_orig;  /* the frequencies at init (dynamic resets to them; longrope's short factors) */
  float *inv_long;  /* longrope: long-factor frequencies */
  double base_orig; /* the base of inv_orig (vanilla_ntk and dynamic: theta', in double) */
  double base_now;  /* the base of inv (dynamic after growth: the float32 theta') */
  int64_t cached;   /* dynamic: max_seq_len_cached */
  int long_active;  /* longrope: long factors in force */
};

/* Allocates the frequency buffers and computes inv_orig / inv_long / A from the parameters (rope.c). */
pose_status pose_rope_init_state(pose_rope *r);

#endif
