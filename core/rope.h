/* Rotary position embeddings and every context-extension scheme, computed as transformers 5.17 does (see
 * ../shared/spec/rope.md; float32 operation order matters). A pose_rope holds the inverse frequencies, the
 * attention factor and, for dynamic/longrope, the length-dependent state. The rotation layout (half-split or
 * interleaved) is a model trait and lives with the model, not here. */
#ifndef POSE_ROPE_H
#define POSE_ROPE_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "status.h"

typedef enum {
  POSE_ROPE_DEFAULT = 0,
  POSE_ROPE_LINEAR,
  POSE_ROPE_DYNAMIC,
  POSE_ROPE_YARN,
  POSE_ROPE_LLAMA3,
  POSE_ROPE_LONGROPE,
  POSE_ROPE_VANILLA_NTK, /* PoSE's static NTK: theta' = theta * s^(r/(r-2)) */
  POSE_ROPE_PROPORTIONAL
} pose_rope_type;

typedef struct pose_rope pose_rope;

/* From a config.json object (v4 `rope_theta`/`rope_scaling` or v5 `rope_parameters`), for `model_type` ("llama",
 * "mistral", "qwen2", "gptj", "gpt_neox", "baichuan") whose heads have `head_dim` channels. `override` (may be
 * NULL) is a JSON object with pose.rope's keys that replace the config's (the `rope` option of pose.load).
 * Errors name the offending field. */
pose_status pose_rope_from_config(const cJSON *config, const char *model_type, int head_dim, const cJSON *override,
                                  pose_rope **out);
/* From pose.rope's keys alone: rope_type (alias type), factor, rope_theta (alias base), dim (or head_dim with
 * partial_rotary_factor), max_position_embeddings, original_max_position_embeddings, beta_fast, ...
 * The keys are those of a transformers rope_scaling dict (attention_factor, beta_fast, beta_slow, mscale,
 * mscale_all_dim, truncate, short_factor, long_factor, low_freq_factor, high_freq_factor) plus pose's extensions:
 *   rope_type "vanilla_ntk"          PoSE's static NTK, theta' = theta * factor^(r/(r-2));
 *   pose_variant = "revised"         (yarn) PoSE's revised YaRN: inv0 / ((1-ef)*s + ef), a blend of wavelengths;
 *   extrapolation_factor, attn_factor (yarn) the YaRN repository's options: ef *= extrapolation_factor, A *= attn_factor.
 * For proportional, dim is the head dimension H (pairs beyond int(partial_rotary_factor*H//2) have frequency 0).
 * An unknown key, a missing required key, a wrong type or an invalid value is an error naming the key. */
pose_status pose_rope_from_json(const cJSON *params, pose_rope **out);
pose_rope *pose_rope_clone(const pose_rope *r);
void pose_rope_free(pose_rope *r);

pose_rope_type pose_rope_kind(const pose_rope *r);
const char *pose_rope_type_name(const pose_rope *r);
int pose_rope_dim(const pose_rope *r);                 /* rotary dims r (even); channels >= r pass through */
double pose_rope_attention_factor(const pose_rope *r); /* A, multiplies cos and sin */

/* Dynamic and longrope: advance the state machine for a forward whose largest position id over the batch is
 * max_pos (L = max_pos + 1), exactly as transformers does (grow / keep / reset). No-op for static types. */
void pose_rope_update(pose_rope *r, int64_t max_pos);
/* The same for a batch's position ids (n of them, any layout): L = max over all of them + 1. n = 0 does nothing. */
void pose_rope_update_positions(pose_rope *r, const int64_t *pos, int64_t n);
/* The current inverse frequencies, r/2 floats. */
const float *pose_rope_inv_freq(const pose_rope *r);
/* cos and sin for n positions, each written as [n][r/2] floats, A applied: phi = fl32(inv[j] * fl32(p)). */
void pose_rope_cos_sin(const pose_rope *r, const int64_t *pos, int64_t n, float *cos_out, float *sin_out);

/* Added for tests, diagnostics and __tostring: */
/* The base the current frequencies come from: rope_theta, or theta' for vanilla_ntk (double) and dynamic (the init
 * value in double; after growth the float32 value forward computed). */
double pose_rope_base(const pose_rope *r);
/* Dynamic: the largest length L the current frequencies were computed for (max_seq_len_cached); 0 otherwise. */
int64_t pose_rope_cached_len(const pose_rope *r);
/* YaRN: the correction range (low, high) after truncation, clamping and the low == high guard. */
pose_status pose_rope_yarn_range(const pose_rope *r, double *low, double *high);

/* Writes the scheme into a config.json object the way DESIGN.md "Saving" says (top-level rope_theta; rope_scaling
 * with rope_type and type; vanilla_ntk as default with the new theta; inexpressible schemes under `pose_rope`).
 * Also: original_max_position_embeddings inside rope_scaling (and at top level if the config has one there), the
 * rotary dims in the family's own key (partial_rotary_factor; NeoX rotary_pct and rotary_emb_base; GPT-J
 * rotary_dim), max_position_embeddings for dynamic only when the config has none (set the model's own value
 * before calling). rope_parameters is removed. The written config is read back with transformers' rules; when the
 * numbers differ (PoSE's revised YaRN, the YaRN repository's factors, any scaling on GPT-J or Baichuan2, LLaMA's
 * default type with a partial dim, dynamic with another max_position_embeddings) the exact scheme is added under
 * `pose_rope` (which pose_rope_from_config reads first) and one warning line goes to stderr. */
pose_status pose_rope_to_config(const pose_rope *r, cJSON *config);
/* The scheme as a JSON object of pose.rope keys (for m.config.rope). Caller frees with cJSON_Delete. */
cJSON *pose_rope_to_json(const pose_rope *r);

#endif
