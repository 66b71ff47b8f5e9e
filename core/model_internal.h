/* The model's representation, shared by model.c (construction, parameters), model_fwd.c (forward, backward),
 * model_io.c (load, init, save) and model_decode.c (KV cache). Not part of the public API. */
#ifndef POSE_MODEL_INTERNAL_H
#define POSE_MODEL_INTERNAL_H

#include "model.h"
#include "model_config.h"

typedef enum { POSE_PK_MATRIX = 0, POSE_PK_EMBED, POSE_PK_BIAS, POSE_PK_NORM_W, POSE_PK_NORM_B } pose_param_kind;

/* Indices into pose_model.params of one decoder layer; -1 where the family has no such tensor. */
typedef struct {
  int ln1_w, ln1_b, ln2_w, ln2_b;
  int q_w, q_b, k_w, k_b, v_w, v_b; /* POSE_QKV_SEPARATE */
  int qkv_w, qkv_b;                 /* fused layouts */
  int o_w, o_b;
  int mg_w, mg_b; /* gate_proj (GLU) or fc_in / dense_h_to_4h */
  int mu_w, mu_b; /* up_proj (GLU only) */
  int md_w, md_b; /* down_proj or fc_out / dense_4h_to_h */
} pose_layer_idx;

struct pose_model {
  pose_model_cfg cfg;
  cJSON *base;   /* config.json as given (max_position_embeddings updated by a rope override that sets it) */
  cJSON *config; /* base plus "rope": the resolved scheme (m.config) */
  pose_rope *rope;
  pose_device dev;
  int64_t qdim, kvdim, rot; /* heads*head_dim, kv_heads*head_dim, rotary dims */

  size_t n_params;
  pose_param *params;
  pose_param_kind *kinds;
  float *w_arena, *g_arena; /* all weights / all gradients, contiguous (g allocated on first use) */
  size_t arena_numel;

  int embed, final_w, final_b, lm_w, lm_b; /* lm_w == embed when tied */
  pose_layer_idx *layer;

  float *lm_hat, *lm_norm; /* NormHead: row-normalised lm_head [V,D] and the row norms [V] (allocated lazily) */

  pose_recompute recompute;        /* training activation policy (the GPU path honours it) */
  struct pose_gpu_model *gpu;      /* cuda models: device state (cuda/model_gpu.cu); NULL on the cpu */
};

/* Builds an empty (zero-weight) model from config.json: traits, rope scheme (override may be NULL), parameter
 * table. */
pose_status pose_model_build(const cJSON *config, const cJSON *rope_override, pose_device dev, pose_model **out);
/* Allocates the gradient arena if needed (zeroed). */
pose_status pose_model_ensure_grads(pose_model *m);
static inline float *pose_model_w(pose_model *m, int i) { return i < 0 ? NULL : m->params[i].w; }
static inline float *pose_model_g(pose_model *m, int i) { return i < 0 ? NULL : m->params[i].g; }

/* Runs the decoder. Exactly one use per call:
 *  - logits != NULL: full logits [B*T, V];
 *  - nll != NULL: per-row NLL against tgt (per-row targets, -100 ignored) and their sum/count;
 *  - backward: forward + backward of scale * sum(nll) into the gradients;
 *  - kv != NULL: appends to the cache and writes the last token's logits per row into logits ([B, V]). */
typedef struct {
  const int64_t *ids, *pos; /* [B*T]; pos never NULL here */
  int64_t B, T;
  const int64_t *tgt;       /* [B*T] per-row target (next token), for nll / backward */
  float *logits;
  float *nll;
  int backward;
  float scale;              /* backward: gradient scale of sum(nll) */
  pose_kv_cache *kv;
  const struct pose_gpu_bwd_hook *hook; /* cuda backward: the fused update's callbacks (core/model_gpu.h), or NULL */
  double sum;               /* out: sum of nll over scored rows */
  int64_t count;            /* out: scored rows */
} pose_model_run_args;

pose_status pose_model_run(pose_model *m, pose_model_run_args *a);
/* pose_model_backward with the fused update's callbacks (cuda models; hook NULL = pose_model_backward). */
pose_status pose_model_backward_hook(pose_model *m, const int64_t *ids, const int64_t *pos, const int64_t *targets,
                                     int64_t B, int64_t T, double loss_scale, double *loss, int64_t *count,
                                     const struct pose_gpu_bwd_hook *hook);

struct pose_kv_cache {
  int64_t B, cap, len, layers, kvdim;
  float *k, *v; /* [layers][B][cap][kvdim], keys already rotated (cpu models; NULL for cuda models) */
  void *dev_kv;  /* cuda models: bf16 [layers][B][cap][2*kvdim] on the model's device, each token's rotated key then
                  * its value (the layout of the decoder's fused k|v GEMM output); NULL on the cpu */
  int dev;       /* device index of dev_kv */
};

#endif
