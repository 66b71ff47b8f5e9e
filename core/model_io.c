/* Loading from a Hugging Face checkpoint, random initialisation as transformers' _init_weights, and saving in the
 * layout transformers reads back (config.json in the v4 form of DESIGN.md "Saving" plus safetensors). */
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h"
#include "model_internal.h"
#include "rng.h"
#ifdef POSE_HAVE_CUDA
#include "model_gpu.h"
#endif

pose_status pose_model_load(const char *dir, const cJSON *rope_override, pose_device dev, pose_model **out) {
  *out = NULL;
  pose_checkpoint *ck = NULL;
  POSE_TRY(pose_checkpoint_open(dir, &ck));
  pose_model *m = NULL;
  pose_status st = pose_model_build(pose_checkpoint_config(ck), rope_override, dev, &m);
  if (st != POSE_OK) {
    pose_checkpoint_close(ck);
    return pose_error_prefix(st, "loading %s: ", dir);
  }
  if (m->dev.type == POSE_CPU) {
    for (size_t i = 0; i < m->n_params && st == POSE_OK; i++) {
      pose_param *p = &m->params[i];
      st = pose_checkpoint_read_f32(ck, p->name, p->ndim, p->shape, p->w);
    }
  } else { /* through one host buffer as large as the largest tensor */
    int64_t big = 1;
    for (size_t i = 0; i < m->n_params; i++) big = m->params[i].numel > big ? m->params[i].numel : big;
    float *buf = malloc(sizeof(float) * (size_t)big);
    if (!buf) st = pose_error(POSE_ENOMEM, "model: out of memory staging %lld weights", (long long)big);
    for (size_t i = 0; i < m->n_params && st == POSE_OK; i++) {
      pose_param *p = &m->params[i];
      st = pose_checkpoint_read_f32(ck, p->name, p->ndim, p->shape, buf);
      if (st == POSE_OK) st = pose_model_param_set(m, i, buf);
    }
    free(buf);
  }
  pose_checkpoint_close(ck);
  if (st != POSE_OK) {
    pose_model_free(m);
    return pose_error_prefix(st, "loading %s: ", dir);
  }
  *out = m;
  return POSE_OK;
}

pose_status pose_model_init(const cJSON *config, uint64_t seed, pose_device dev, pose_model **out) {
  *out = NULL;
  pose_model *m = NULL;
  POSE_TRY(pose_model_build(config, NULL, dev, &m));
#ifdef POSE_HAVE_CUDA
  if (m->gpu) {
    pose_status st = pose_gpu_model_init_weights(m, seed);
    if (st != POSE_OK) {
      pose_model_free(m);
      return st;
    }
    *out = m;
    return POSE_OK;
  }
#endif
  const float std = (float)m->cfg.init_range;
  /* one Philox stream per tensor (its index in the parameter list), so a tensor's values do not depend on the
   * others' sizes or on the thread count */
#pragma omp parallel for schedule(dynamic, 1)
  for (size_t i = 0; i < m->n_params; i++) {
    pose_param *p = &m->params[i];
    switch (m->kinds[i]) {
    case POSE_PK_BIAS:
    case POSE_PK_NORM_B:
      memset(p->w, 0, sizeof(float) * (size_t)p->numel);
      break;
    case POSE_PK_NORM_W:
      for (int64_t k = 0; k < p->numel; k++) p->w[k] = 1.0f;
      break;
    default: {
      pose_rng r;
      pose_rng_init(&r, seed, (uint64_t)i);
      for (int64_t k = 0; k < p->numel; k++) p->w[k] = std * pose_rng_normal(&r);
      break;
    }
    }
  }
  /* nn.Embedding(padding_idx=pad_token_id): transformers zeroes that row */
  if (m->cfg.pad_id >= 0)
    memset(m->params[m->embed].w + m->cfg.pad_id * m->cfg.hidden, 0, sizeof(float) * (size_t)m->cfg.hidden);
  *out = m;
  return POSE_OK;
}

static const char *torch_dtype_name(pose_dtype dt) {
  return dt == POSE_BF16 ? "bfloat16" : dt == POSE_F16 ? "float16" : "float32";
}

static void set_item(cJSON *obj, const char *key, cJSON *val) {
  if (cJSON_HasObjectItem(obj, key)) cJSON_ReplaceItemInObjectCaseSensitive(obj, key, val);
  else cJSON_AddItemToObject(obj, key, val);
}

/* config.json as saved: the checkpoint's keys, the rope scheme written by the rope module (v4 form), the dtype */
static pose_status saved_config(const pose_model *m, pose_dtype dtype, cJSON **out) {
  cJSON *cfg = cJSON_Duplicate(m->base, 1);
  if (!cfg) return pose_error(POSE_ENOMEM, "save: out of memory");
  pose_status st = pose_rope_to_config(m->rope, cfg);
  if (st != POSE_OK) { cJSON_Delete(cfg); return st; }
  /* explicit, so that readers with another default (PretrainedConfig's is true) agree */
  set_item(cfg, "tie_word_embeddings", cJSON_CreateBool(m->cfg.tied));
  if (!cJSON_HasObjectItem(cfg, "architectures")) {
    static const char *const arch[] = {"LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM",
                                       "GPTJForCausalLM", "GPTNeoXForCausalLM", "BaichuanForCausalLM"};
    const char *a = arch[m->cfg.family];
    cJSON_AddItemToObject(cfg, "architectures", cJSON_CreateStringArray(&a, 1));
  }
  set_item(cfg, "torch_dtype", cJSON_CreateString(torch_dtype_name(dtype)));
  if (cJSON_HasObjectItem(cfg, "dtype")) set_item(cfg, "dtype", cJSON_CreateString(torch_dtype_name(dtype)));
  *out = cfg;
  return POSE_OK;
}

/* 2 GB shards, as transformers' default max_shard_size was for years (it reads any sharding) */
#define SHARD_BYTES ((size_t)2 << 30)

pose_status pose_model_save(pose_model *m, const char *dir, pose_dtype dtype) {
  if (dtype != POSE_F32 && dtype != POSE_BF16 && dtype != POSE_F16)
    return pose_error(POSE_EINVAL, "save: dtype %s is not a float type (f32, bf16, f16)", pose_dtype_name(dtype));
  cJSON *cfg = NULL;
  POSE_TRY(saved_config(m, dtype, &cfg));
  pose_st_entry *e = calloc(m->n_params ? m->n_params : 1, sizeof *e);
  if (!e) { cJSON_Delete(cfg); return pose_error(POSE_ENOMEM, "save: out of memory"); }
  float *host = NULL; /* a device model's weights, copied to the host for writing */
  if (m->dev.type != POSE_CPU) {
    host = malloc(sizeof(float) * (m->arena_numel ? m->arena_numel : 1));
    pose_status st = host ? POSE_OK : pose_error(POSE_ENOMEM, "save: cannot stage %.1f MB of weights on the host",
                                                 m->arena_numel * 4.0 / 1e6);
    for (size_t i = 0, off = 0; i < m->n_params && st == POSE_OK; off += (size_t)m->params[i].numel, i++)
      st = pose_model_param_get(m, i, host + off);
    if (st != POSE_OK) {
      free(host);
      free(e);
      cJSON_Delete(cfg);
      return st;
    }
  }
  /* tied lm_head is not a separate parameter, so it is not written (as save_pretrained drops tied weights) */
  for (size_t i = 0; i < m->n_params; i++) {
    const pose_param *p = &m->params[i];
    e[i].name = p->name;
    e[i].dtype = POSE_F32;
    e[i].ndim = p->ndim;
    memcpy(e[i].shape, p->shape, sizeof e[i].shape);
    e[i].data = p->w;
  }
  if (host)
    for (size_t i = 0, off = 0; i < m->n_params; off += (size_t)m->params[i].numel, i++) e[i].data = host + off;
  pose_status st = pose_checkpoint_save(dir, cfg, e, m->n_params, dtype, SHARD_BYTES);
  free(host);
  free(e);
  cJSON_Delete(cfg);
  return st;
}
