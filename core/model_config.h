/* Family traits of the decoder, parsed from a Hugging Face config.json (DESIGN.md section 3). One decoder
 * implementation reads these flags instead of branching on the model name, so a new family is a new row here. */
#ifndef POSE_MODEL_CONFIG_H
#define POSE_MODEL_CONFIG_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "status.h"

typedef enum {
  POSE_FAMILY_LLAMA = 0, /* LLaMA 1/2/3 */
  POSE_FAMILY_MISTRAL,
  POSE_FAMILY_QWEN2,
  POSE_FAMILY_GPTJ,
  POSE_FAMILY_NEOX,
  POSE_FAMILY_BAICHUAN
} pose_family;

typedef enum { POSE_NORM_RMS = 0, POSE_NORM_LAYER } pose_norm_kind;
typedef enum { POSE_ACT_SILU = 0, POSE_ACT_GELU_ERF, POSE_ACT_GELU_TANH, POSE_ACT_RELU } pose_act_kind;
/* q/k/v projections: three matrices; GPT-NeoX's fused [heads][q|k|v] rows; Baichuan's W_pack = [q; k; v] thirds */
typedef enum { POSE_QKV_SEPARATE = 0, POSE_QKV_NEOX, POSE_QKV_WPACK } pose_qkv_layout;

typedef struct {
  pose_family family;
  char model_type[16];
  int64_t vocab, hidden, layers, heads, kv_heads, head_dim, inter;
  double norm_eps;
  double init_range;
  pose_norm_kind norm;
  pose_act_kind act;
  int glu;          /* MLP = down(act(gate(x)) * up(x)) (LLaMA-like) instead of down(act(up(x))) */
  int parallel;     /* x + attn(ln1(x)) + mlp(ln2(x)) (NeoX use_parallel_residual) */
  int shared_ln;    /* GPT-J: one ln_1 feeds both attention and MLP (implies parallel) */
  int interleaved;  /* rotary pairs (2j, 2j+1) (GPT-J) instead of (j, j + r/2) */
  pose_qkv_layout qkv;
  int qkv_bias, o_bias, mlp_bias, lm_bias;
  int tied;         /* lm_head shares the input embedding */
  int norm_head;    /* Baichuan2 NormHead: lm_head rows L2-normalised at each forward */
  int64_t pad_id;   /* embedding padding_idx (row initialised to zero, no gradient); -1 = none */
  int64_t max_pos;  /* max_position_embeddings (n_positions for GPT-J); 0 when absent */
  int64_t *window;  /* per layer: sliding-window width over token index, 0 = full causal attention */
} pose_model_cfg;

/* Parses config.json into traits; errors name the offending field. cfg->window is allocated (free with
 * pose_model_cfg_free). */
pose_status pose_model_cfg_parse(const cJSON *config, pose_model_cfg *cfg);
void pose_model_cfg_free(pose_model_cfg *cfg);

#endif
