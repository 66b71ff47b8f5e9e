/* Model construction: family traits -> the Hugging Face parameter table (names, shapes, decay flags), the rope
 * scheme and m.config; parameter access for the trainer. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model_internal.h"
#ifdef POSE_HAVE_CUDA
#include "model_gpu.h"
#endif

/* ---- parameter table --------------------------------------------------------------------------------------- */

typedef struct {
  pose_model *m;
  size_t cap;
  size_t numel;
} table_builder;

static int add_param(table_builder *tb, pose_param_kind kind, int ndim, int64_t d0, int64_t d1, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

/* Appends a parameter; returns its index or -1 when out of memory. */
static int add_param(table_builder *tb, pose_param_kind kind, int ndim, int64_t d0, int64_t d1, const char *fmt, ...) {
  pose_model *m = tb->m;
  if (m->n_params == tb->cap) {
    size_t nc = tb->cap ? 2 * tb->cap : 64;
    pose_param *np = realloc(m->params, nc * sizeof *np);
    if (!np) return -1;
    m->params = np;
    pose_param_kind *nk = realloc(m->kinds, nc * sizeof *nk);
    if (!nk) return -1;
    m->kinds = nk;
    tb->cap = nc;
  }
  char buf[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  char *name = strdup(buf);
  if (!name) return -1;
  pose_param *p = &m->params[m->n_params];
  memset(p, 0, sizeof *p);
  p->name = name;
  p->ndim = ndim;
  p->shape[0] = d0;
  p->shape[1] = ndim > 1 ? d1 : 0;
  p->numel = ndim > 1 ? d0 * d1 : d0;
  /* as the transformers Trainer: no weight decay for biases and norm weights */
  p->decay = kind == POSE_PK_MATRIX || kind == POSE_PK_EMBED;
  m->kinds[m->n_params] = kind;
  tb->numel += (size_t)p->numel;
  return (int)m->n_params++;
}

#define ADD(var, ...)                                                              \
  do {                                                                             \
    if (((var) = add_param(&tb, __VA_ARGS__)) < 0)                                 \
      return pose_error(POSE_ENOMEM, "model: out of memory building the parameter table"); \
  } while (0)

static pose_status build_table(pose_model *m) {
  const pose_model_cfg *c = &m->cfg;
  table_builder tb = {m, 0, 0};
  const int64_t D = c->hidden, I = c->inter, V = c->vocab, Q = m->qdim, KV = m->kvdim;
  m->layer = calloc((size_t)c->layers, sizeof *m->layer);
  if (!m->layer) return pose_error(POSE_ENOMEM, "model: out of memory");
  m->final_b = m->lm_b = -1;
  for (int64_t l = 0; l < c->layers; l++) {
    pose_layer_idx *L = &m->layer[l];
    memset(L, 0xff, sizeof *L); /* every index -1 */
  }
  if (c->family == POSE_FAMILY_GPTJ) {
    ADD(m->embed, POSE_PK_EMBED, 2, V, D, "transformer.wte.weight");
    for (int64_t l = 0; l < c->layers; l++) {
      pose_layer_idx *L = &m->layer[l];
      int i = (int)l;
      ADD(L->ln1_w, POSE_PK_NORM_W, 1, D, 0, "transformer.h.%d.ln_1.weight", i);
      ADD(L->ln1_b, POSE_PK_NORM_B, 1, D, 0, "transformer.h.%d.ln_1.bias", i);
      ADD(L->k_w, POSE_PK_MATRIX, 2, D, D, "transformer.h.%d.attn.k_proj.weight", i);
      ADD(L->v_w, POSE_PK_MATRIX, 2, D, D, "transformer.h.%d.attn.v_proj.weight", i);
      ADD(L->q_w, POSE_PK_MATRIX, 2, D, D, "transformer.h.%d.attn.q_proj.weight", i);
      ADD(L->o_w, POSE_PK_MATRIX, 2, D, D, "transformer.h.%d.attn.out_proj.weight", i);
      ADD(L->mg_w, POSE_PK_MATRIX, 2, I, D, "transformer.h.%d.mlp.fc_in.weight", i);
      ADD(L->mg_b, POSE_PK_BIAS, 1, I, 0, "transformer.h.%d.mlp.fc_in.bias", i);
      ADD(L->md_w, POSE_PK_MATRIX, 2, D, I, "transformer.h.%d.mlp.fc_out.weight", i);
      ADD(L->md_b, POSE_PK_BIAS, 1, D, 0, "transformer.h.%d.mlp.fc_out.bias", i);
    }
    ADD(m->final_w, POSE_PK_NORM_W, 1, D, 0, "transformer.ln_f.weight");
    ADD(m->final_b, POSE_PK_NORM_B, 1, D, 0, "transformer.ln_f.bias");
  } else if (c->family == POSE_FAMILY_NEOX) {
    ADD(m->embed, POSE_PK_EMBED, 2, V, D, "gpt_neox.embed_in.weight");
    for (int64_t l = 0; l < c->layers; l++) {
      pose_layer_idx *L = &m->layer[l];
      int i = (int)l;
      ADD(L->ln1_w, POSE_PK_NORM_W, 1, D, 0, "gpt_neox.layers.%d.input_layernorm.weight", i);
      ADD(L->ln1_b, POSE_PK_NORM_B, 1, D, 0, "gpt_neox.layers.%d.input_layernorm.bias", i);
      ADD(L->ln2_w, POSE_PK_NORM_W, 1, D, 0, "gpt_neox.layers.%d.post_attention_layernorm.weight", i);
      ADD(L->ln2_b, POSE_PK_NORM_B, 1, D, 0, "gpt_neox.layers.%d.post_attention_layernorm.bias", i);
      ADD(L->qkv_w, POSE_PK_MATRIX, 2, 3 * D, D, "gpt_neox.layers.%d.attention.query_key_value.weight", i);
      if (c->qkv_bias) ADD(L->qkv_b, POSE_PK_BIAS, 1, 3 * D, 0, "gpt_neox.layers.%d.attention.query_key_value.bias", i);
      ADD(L->o_w, POSE_PK_MATRIX, 2, D, D, "gpt_neox.layers.%d.attention.dense.weight", i);
      if (c->o_bias) ADD(L->o_b, POSE_PK_BIAS, 1, D, 0, "gpt_neox.layers.%d.attention.dense.bias", i);
      ADD(L->mg_w, POSE_PK_MATRIX, 2, I, D, "gpt_neox.layers.%d.mlp.dense_h_to_4h.weight", i);
      ADD(L->mg_b, POSE_PK_BIAS, 1, I, 0, "gpt_neox.layers.%d.mlp.dense_h_to_4h.bias", i);
      ADD(L->md_w, POSE_PK_MATRIX, 2, D, I, "gpt_neox.layers.%d.mlp.dense_4h_to_h.weight", i);
      ADD(L->md_b, POSE_PK_BIAS, 1, D, 0, "gpt_neox.layers.%d.mlp.dense_4h_to_h.bias", i);
    }
    ADD(m->final_w, POSE_PK_NORM_W, 1, D, 0, "gpt_neox.final_layer_norm.weight");
    ADD(m->final_b, POSE_PK_NORM_B, 1, D, 0, "gpt_neox.final_layer_norm.bias");
  } else { /* LLaMA, Mistral, Qwen2, Baichuan */
    ADD(m->embed, POSE_PK_EMBED, 2, V, D, "model.embed_tokens.weight");
    for (int64_t l = 0; l < c->layers; l++) {
      pose_layer_idx *L = &m->layer[l];
      int i = (int)l;
      if (c->qkv == POSE_QKV_WPACK) {
        ADD(L->qkv_w, POSE_PK_MATRIX, 2, 3 * D, D, "model.layers.%d.self_attn.W_pack.weight", i);
      } else {
        ADD(L->q_w, POSE_PK_MATRIX, 2, Q, D, "model.layers.%d.self_attn.q_proj.weight", i);
        if (c->qkv_bias) ADD(L->q_b, POSE_PK_BIAS, 1, Q, 0, "model.layers.%d.self_attn.q_proj.bias", i);
        ADD(L->k_w, POSE_PK_MATRIX, 2, KV, D, "model.layers.%d.self_attn.k_proj.weight", i);
        if (c->qkv_bias) ADD(L->k_b, POSE_PK_BIAS, 1, KV, 0, "model.layers.%d.self_attn.k_proj.bias", i);
        ADD(L->v_w, POSE_PK_MATRIX, 2, KV, D, "model.layers.%d.self_attn.v_proj.weight", i);
        if (c->qkv_bias) ADD(L->v_b, POSE_PK_BIAS, 1, KV, 0, "model.layers.%d.self_attn.v_proj.bias", i);
      }
      ADD(L->o_w, POSE_PK_MATRIX, 2, D, Q, "model.layers.%d.self_attn.o_proj.weight", i);
      if (c->o_bias) ADD(L->o_b, POSE_PK_BIAS, 1, D, 0, "model.layers.%d.self_attn.o_proj.bias", i);
      ADD(L->mg_w, POSE_PK_MATRIX, 2, I, D, "model.layers.%d.mlp.gate_proj.weight", i);
      if (c->mlp_bias) ADD(L->mg_b, POSE_PK_BIAS, 1, I, 0, "model.layers.%d.mlp.gate_proj.bias", i);
      ADD(L->mu_w, POSE_PK_MATRIX, 2, I, D, "model.layers.%d.mlp.up_proj.weight", i);
      if (c->mlp_bias) ADD(L->mu_b, POSE_PK_BIAS, 1, I, 0, "model.layers.%d.mlp.up_proj.bias", i);
      ADD(L->md_w, POSE_PK_MATRIX, 2, D, I, "model.layers.%d.mlp.down_proj.weight", i);
      if (c->mlp_bias) ADD(L->md_b, POSE_PK_BIAS, 1, D, 0, "model.layers.%d.mlp.down_proj.bias", i);
      ADD(L->ln1_w, POSE_PK_NORM_W, 1, D, 0, "model.layers.%d.input_layernorm.weight", i);
      ADD(L->ln2_w, POSE_PK_NORM_W, 1, D, 0, "model.layers.%d.post_attention_layernorm.weight", i);
    }
    ADD(m->final_w, POSE_PK_NORM_W, 1, D, 0, "model.norm.weight");
  }
  if (c->tied) {
    m->lm_w = m->embed;
  } else {
    const char *name = c->family == POSE_FAMILY_NEOX ? "embed_out.weight" : "lm_head.weight";
    ADD(m->lm_w, POSE_PK_MATRIX, 2, V, D, "%s", name);
  }
  if (c->lm_bias) ADD(m->lm_b, POSE_PK_BIAS, 1, V, 0, "lm_head.bias");

  m->arena_numel = tb.numel;
  if (m->dev.type != POSE_CPU) return POSE_OK; /* the device arenas come from pose_gpu_model_new */
  m->w_arena = calloc(tb.numel ? tb.numel : 1, sizeof(float));
  if (!m->w_arena)
    return pose_error(POSE_ENOMEM, "model: cannot allocate %zu parameters (%.1f MB)", tb.numel, tb.numel * 4.0 / 1e6);
  size_t off = 0;
  for (size_t i = 0; i < m->n_params; i++) {
    m->params[i].w = m->w_arena + off;
    off += (size_t)m->params[i].numel;
  }
  return POSE_OK;
}

/* ---- config / rope ------------------------------------------------------------------------------------------ */

/* m->config = base + {"rope": resolved scheme} */
static pose_status refresh_config(pose_model *m) {
  cJSON *cfg = cJSON_Duplicate(m->base, 1);
  cJSON *rj = pose_rope_to_json(m->rope);
  if (!cfg || !rj) {
    cJSON_Delete(cfg);
    cJSON_Delete(rj);
    return pose_error(POSE_ENOMEM, "model: out of memory");
  }
  cJSON_DeleteItemFromObjectCaseSensitive(cfg, "rope");
  cJSON_AddItemToObject(cfg, "rope", rj);
  cJSON_Delete(m->config);
  m->config = cfg;
  return POSE_OK;
}

/* The rope scheme for base + override; checks that its rotary dims fit the heads. */
static pose_status make_rope(pose_model *m, const cJSON *override, pose_rope **out) {
  pose_rope *r = NULL;
  POSE_TRY(pose_rope_from_config(m->base, m->cfg.model_type, (int)m->cfg.head_dim, override, &r));
  int dim = pose_rope_dim(r);
  if (dim <= 0 || dim % 2 || dim > m->cfg.head_dim) {
    pose_rope_free(r);
    return pose_error(POSE_EINVAL, "rope: rotary dims %d must be even and at most head_dim %lld", dim,
                      (long long)m->cfg.head_dim);
  }
  *out = r;
  return POSE_OK;
}

/* A rope override that names max_position_embeddings sets the model's (the target length it is extended to). */
static pose_status apply_override_max_pos(pose_model *m, const cJSON *override) {
  const cJSON *mp = override ? cJSON_GetObjectItemCaseSensitive(override, "max_position_embeddings") : NULL;
  if (!mp || cJSON_IsNull(mp)) return POSE_OK;
  if (!cJSON_IsNumber(mp) || mp->valuedouble < 1 || mp->valuedouble != (double)(int64_t)mp->valuedouble)
    return pose_error(POSE_EINVAL, "rope: max_position_embeddings must be a positive integer");
  const char *key = m->cfg.family == POSE_FAMILY_GPTJ && cJSON_HasObjectItem(m->base, "n_positions")
                        ? "n_positions" : "max_position_embeddings";
  cJSON *num = cJSON_CreateNumber(mp->valuedouble);
  if (!num) return pose_error(POSE_ENOMEM, "model: out of memory");
  if (cJSON_HasObjectItem(m->base, key)) cJSON_ReplaceItemInObjectCaseSensitive(m->base, key, num);
  else cJSON_AddItemToObject(m->base, key, num);
  m->cfg.max_pos = (int64_t)mp->valuedouble;
  return POSE_OK;
}

pose_status pose_model_build(const cJSON *config, const cJSON *rope_override, pose_device dev, pose_model **out) {
  *out = NULL;
#ifndef POSE_HAVE_CUDA
  if (dev.type != POSE_CPU)
    return pose_error(POSE_EUNSUPPORTED, "model: device cuda:%d needs a build with the CUDA backend; use device "
                      "\"cpu\"", dev.index);
#else
  if (dev.type != POSE_CPU) {
    const char *why = NULL;
    const pose_backend *be = pose_cuda_backend(&why);
    if (!be)
      return pose_error(POSE_EUNSUPPORTED, "model: device cuda:%d is not available (%s); use device \"cpu\"",
                        dev.index, why ? why : "no GPU");
    if (dev.index < 0 || dev.index >= be->device_count())
      return pose_error(POSE_EINVAL, "model: device cuda:%d does not exist", dev.index);
  }
#endif
  if (!cJSON_IsObject(config)) return pose_error(POSE_EINVAL, "model: config must be a JSON object");
  if (rope_override && !cJSON_IsObject(rope_override) && !cJSON_IsNull(rope_override))
    return pose_error(POSE_EINVAL, "model: the rope override must be a JSON object");
  pose_model *m = calloc(1, sizeof *m);
  if (!m) return pose_error(POSE_ENOMEM, "model: out of memory");
  m->dev = dev;
  pose_status st = pose_model_cfg_parse(config, &m->cfg);
  if (st != POSE_OK) { free(m); return st; }
  m->base = cJSON_Duplicate(config, 1);
  if (!m->base) { pose_model_free(m); return pose_error(POSE_ENOMEM, "model: out of memory"); }
  /* A config that came from m.config carries the resolved scheme under "rope": it acts as the override (unless one
   * is given), so that pose.init(m.config) rebuilds the same scheme; it is not a config.json key. */
  cJSON *own_rope = cJSON_DetachItemFromObjectCaseSensitive(m->base, "rope");
  if (own_rope && !cJSON_IsObject(own_rope)) {
    cJSON_Delete(own_rope);
    pose_model_free(m);
    return pose_error(POSE_EINVAL, "config: \"rope\" must be an object of pose.rope keys");
  }
  if (!rope_override) rope_override = own_rope;
  m->qdim = m->cfg.heads * m->cfg.head_dim;
  m->kvdim = m->cfg.kv_heads * m->cfg.head_dim;
  if (m->cfg.qkv != POSE_QKV_SEPARATE && m->qdim != m->cfg.hidden) {
    cJSON_Delete(own_rope);
    pose_model_free(m);
    return pose_error(POSE_EINVAL, "config.json: %s needs num_attention_heads * head_dim == hidden_size",
                      m->cfg.model_type);
  }
  if ((st = apply_override_max_pos(m, rope_override)) != POSE_OK ||
      (st = make_rope(m, rope_override, &m->rope)) != POSE_OK || (st = build_table(m)) != POSE_OK ||
      (st = refresh_config(m)) != POSE_OK) {
    cJSON_Delete(own_rope);
    pose_model_free(m);
    return st;
  }
  m->rot = pose_rope_dim(m->rope);
#ifdef POSE_HAVE_CUDA
  if (dev.type != POSE_CPU && (st = pose_gpu_model_new(m)) != POSE_OK) {
    cJSON_Delete(own_rope);
    pose_model_free(m);
    return st;
  }
#endif
  cJSON_Delete(own_rope);
  *out = m;
  return POSE_OK;
}

void pose_model_free(pose_model *m) {
  if (!m) return;
#ifdef POSE_HAVE_CUDA
  pose_gpu_model_free(m);
#endif
  for (size_t i = 0; i < m->n_params; i++) free((char *)m->params[i].name);
  free(m->params);
  free(m->kinds);
  free(m->w_arena);
  free(m->g_arena);
  free(m->layer);
  free(m->lm_hat);
  free(m->lm_norm);
  pose_rope_free(m->rope);
  cJSON_Delete(m->base);
  cJSON_Delete(m->config);
  pose_model_cfg_free(&m->cfg);
  free(m);
}

const cJSON *pose_model_config(const pose_model *m) { return m->config; }
int64_t pose_model_vocab(const pose_model *m) { return m->cfg.vocab; }
pose_rope *pose_model_rope(pose_model *m) { return m->rope; }

pose_status pose_model_set_rope(pose_model *m, const cJSON *override) {
  if (override && !cJSON_IsObject(override) && !cJSON_IsNull(override))
    return pose_error(POSE_EINVAL, "set_rope: expected a JSON object of pose.rope keys");
  /* validate everything before changing anything */
  int64_t old_max = m->cfg.max_pos;
  cJSON *old_base = cJSON_Duplicate(m->base, 1);
  if (!old_base) return pose_error(POSE_ENOMEM, "model: out of memory");
  pose_rope *r = NULL;
  pose_status st = apply_override_max_pos(m, override);
  if (st == POSE_OK) st = make_rope(m, override, &r);
  if (st == POSE_OK && pose_rope_dim(r) != m->rot) {
    int dim = pose_rope_dim(r);
    pose_rope_free(r);
    st = pose_error(POSE_EINVAL, "set_rope: rotary dims %d differ from the model's %lld", dim, (long long)m->rot);
  }
  if (st != POSE_OK) {
    cJSON_Delete(m->base);
    m->base = old_base;
    m->cfg.max_pos = old_max;
    return st;
  }
  cJSON_Delete(old_base);
  pose_rope_free(m->rope);
  m->rope = r;
  return refresh_config(m);
}

/* ---- parameters ----------------------------------------------------------------------------------------------- */

pose_status pose_model_ensure_grads(pose_model *m) {
#ifdef POSE_HAVE_CUDA
  if (m->gpu) return pose_gpu_model_ensure_grads(m);
#endif
  if (m->g_arena) return POSE_OK;
  m->g_arena = calloc(m->arena_numel ? m->arena_numel : 1, sizeof(float));
  if (!m->g_arena) return pose_error(POSE_ENOMEM, "model: cannot allocate gradients (%.1f MB)", m->arena_numel * 4.0 / 1e6);
  size_t off = 0;
  for (size_t i = 0; i < m->n_params; i++) {
    m->params[i].g = m->g_arena + off;
    off += (size_t)m->params[i].numel;
  }
  return POSE_OK;
}

size_t pose_model_num_params(const pose_model *m) { return m->n_params; }

int64_t pose_model_numel(const pose_model *m) { return (int64_t)m->arena_numel; }

pose_param *pose_model_param(pose_model *m, size_t i) {
  if (i >= m->n_params) return NULL;
  pose_model_ensure_grads(m); /* on failure g stays NULL; the trainer's own allocations will fail the same way */
  return &m->params[i];
}

const pose_param *pose_model_param_info(const pose_model *m, size_t i) {
  return i < m->n_params ? &m->params[i] : NULL;
}

void pose_model_zero_grad(pose_model *m) {
#ifdef POSE_HAVE_CUDA
  if (m->gpu) {
    pose_gpu_model_zero_grad(m); /* a failure here resurfaces at the next device call */
    return;
  }
#endif
  if (pose_model_ensure_grads(m) == POSE_OK) memset(m->g_arena, 0, m->arena_numel * sizeof(float));
}

pose_device pose_model_device(const pose_model *m) { return m->dev; }

static pose_status check_index(const pose_model *m, size_t i, const char *fn) {
  if (i >= m->n_params)
    return pose_error(POSE_EINVAL, "%s: parameter index %zu out of range (%zu parameters)", fn, i, m->n_params);
  return POSE_OK;
}

pose_status pose_model_param_get(pose_model *m, size_t i, float *dst) {
  POSE_TRY(check_index(m, i, "param_get"));
#ifdef POSE_HAVE_CUDA
  if (m->gpu) return pose_gpu_param_get(m, i, 0, dst);
#endif
  memcpy(dst, m->params[i].w, sizeof(float) * (size_t)m->params[i].numel);
  return POSE_OK;
}

pose_status pose_model_param_set(pose_model *m, size_t i, const float *src) {
  POSE_TRY(check_index(m, i, "param_set"));
#ifdef POSE_HAVE_CUDA
  if (m->gpu) return pose_gpu_param_set(m, i, src);
#endif
  memcpy(m->params[i].w, src, sizeof(float) * (size_t)m->params[i].numel);
  return POSE_OK;
}

pose_status pose_model_grad_get(pose_model *m, size_t i, float *dst) {
  POSE_TRY(check_index(m, i, "grad_get"));
#ifdef POSE_HAVE_CUDA
  if (m->gpu) return pose_gpu_param_get(m, i, 1, dst);
#endif
  if (!m->params[i].g) memset(dst, 0, sizeof(float) * (size_t)m->params[i].numel);
  else memcpy(dst, m->params[i].g, sizeof(float) * (size_t)m->params[i].numel);
  return POSE_OK;
}

pose_status pose_model_set_recompute(pose_model *m, pose_recompute r) {
  if (r != POSE_RECOMPUTE_NONE && r != POSE_RECOMPUTE_LAYER && r != POSE_RECOMPUTE_OFFLOAD && r != POSE_RECOMPUTE_SELECTIVE)
    return pose_error(POSE_EINVAL, "model: unknown recompute policy %d", (int)r);
  m->recompute = r;
  return POSE_OK;
}

pose_recompute pose_model_get_recompute(const pose_model *m) { return m->recompute; }

pose_status pose_recompute_parse(const char *s, pose_recompute *out) {
  if (!strcmp(s, "none")) *out = POSE_RECOMPUTE_NONE;
  else if (!strcmp(s, "layer")) *out = POSE_RECOMPUTE_LAYER;
  else if (!strcmp(s, "offload")) *out = POSE_RECOMPUTE_OFFLOAD;
  else if (!strcmp(s, "selective")) *out = POSE_RECOMPUTE_SELECTIVE;
  else return pose_error(POSE_EINVAL, "unknown recompute policy '%s' (none, layer, offload, selective)", s);
  return POSE_OK;
}

const char *pose_recompute_name(pose_recompute r) {
  switch (r) {
  case POSE_RECOMPUTE_NONE: return "none";
  case POSE_RECOMPUTE_LAYER: return "layer";
  case POSE_RECOMPUTE_OFFLOAD: return "offload";
  case POSE_RECOMPUTE_SELECTIVE: return "selective";
  }
  return "?";
}

pose_status pose_model_memory_plan(pose_model *m, int64_t B, int64_t T, int train, pose_recompute r,
                                   pose_memory_plan *out) {
  if (!m || !out) return pose_error(POSE_EINVAL, "memory plan: NULL argument");
  if (B <= 0 || T <= 0) return pose_error(POSE_EINVAL, "memory plan: bad shape B=%lld T=%lld", (long long)B, (long long)T);
  if (r != POSE_RECOMPUTE_NONE && r != POSE_RECOMPUTE_LAYER && r != POSE_RECOMPUTE_OFFLOAD && r != POSE_RECOMPUTE_SELECTIVE)
    return pose_error(POSE_EINVAL, "memory plan: unknown recompute policy %d", (int)r);
#ifdef POSE_HAVE_CUDA
  if (m->gpu) return pose_gpu_model_plan(m, B, T, train, r, out);
#endif
  return pose_error(POSE_EUNSUPPORTED, "memory plan: only cuda models have one (this model is on the cpu)");
}

pose_status pose_model_set_precision(pose_model *m, pose_precision p) {
  if (p != POSE_PRECISION_FP32_MASTER && p != POSE_PRECISION_BF16)
    return pose_error(POSE_EINVAL, "model: unknown precision policy %d", (int)p);
#ifdef POSE_HAVE_CUDA
  if (m->gpu) return pose_gpu_model_set_bf16(m, p == POSE_PRECISION_BF16);
#endif
  if (p == POSE_PRECISION_BF16)
    return pose_error(POSE_EUNSUPPORTED, "model: precision \"bf16\" needs a cuda model (the cpu trains in fp32)");
  return POSE_OK;
}

pose_precision pose_model_get_precision(const pose_model *m) {
#ifdef POSE_HAVE_CUDA
  if (m->gpu && pose_gpu_model_is_bf16(m)) return POSE_PRECISION_BF16;
#else
  (void)m;
#endif
  return POSE_PRECISION_FP32_MASTER;
}

pose_status pose_precision_parse(const char *s, pose_precision *out) {
  if (!strcmp(s, "fp32-master")) *out = POSE_PRECISION_FP32_MASTER;
  else if (!strcmp(s, "bf16")) *out = POSE_PRECISION_BF16;
  else return pose_error(POSE_EINVAL, "unknown precision policy '%s' (fp32-master, bf16)", s);
  return POSE_OK;
}

const char *pose_precision_name(pose_precision p) { return p == POSE_PRECISION_BF16 ? "bf16" : "fp32-master"; }
