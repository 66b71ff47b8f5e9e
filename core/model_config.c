/* config.json -> family traits. Defaults are those of each transformers config class (so that a checkpoint that
 * omits a key means what it means to transformers); sizes are required because a config without them is almost
 * certainly a mistake rather than a request for the 7B defaults. */
#include "model_config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- typed field readers; `what` is the model type for messages ---------------------------------------------- */

static const cJSON *field(const cJSON *c, const char *key) { return cJSON_GetObjectItemCaseSensitive(c, key); }

static int is_null_or_absent(const cJSON *c, const char *key) {
  const cJSON *v = field(c, key);
  return !v || cJSON_IsNull(v);
}

static pose_status get_int(const cJSON *c, const char *key, int required, int64_t def, int64_t *out) {
  const cJSON *v = field(c, key);
  if (!v || cJSON_IsNull(v)) {
    if (required) return pose_error(POSE_EINVAL, "config.json: missing %s", key);
    *out = def;
    return POSE_OK;
  }
  if (!cJSON_IsNumber(v) || v->valuedouble != (double)(int64_t)v->valuedouble)
    return pose_error(POSE_EINVAL, "config.json: %s must be an integer", key);
  *out = (int64_t)v->valuedouble;
  return POSE_OK;
}

static pose_status get_num(const cJSON *c, const char *key, double def, double *out) {
  const cJSON *v = field(c, key);
  if (!v || cJSON_IsNull(v)) { *out = def; return POSE_OK; }
  if (!cJSON_IsNumber(v)) return pose_error(POSE_EINVAL, "config.json: %s must be a number", key);
  *out = v->valuedouble;
  return POSE_OK;
}

static pose_status get_bool(const cJSON *c, const char *key, int def, int *out) {
  const cJSON *v = field(c, key);
  if (!v || cJSON_IsNull(v)) { *out = def; return POSE_OK; }
  if (!cJSON_IsBool(v)) return pose_error(POSE_EINVAL, "config.json: %s must be true or false", key);
  *out = cJSON_IsTrue(v);
  return POSE_OK;
}

/* An integer under either of two names (GPT-J's n_embd / hidden_size attribute map). */
static pose_status get_int2(const cJSON *c, const char *k1, const char *k2, int required, int64_t def, int64_t *out) {
  if (!is_null_or_absent(c, k1)) return get_int(c, k1, 1, def, out);
  if (!is_null_or_absent(c, k2)) return get_int(c, k2, 1, def, out);
  if (required) return pose_error(POSE_EINVAL, "config.json: missing %s (or %s)", k1, k2);
  *out = def;
  return POSE_OK;
}

static pose_status parse_act(const cJSON *c, const char *key, const char *def, pose_act_kind *out) {
  const cJSON *v = field(c, key);
  const char *s = def;
  if (v && !cJSON_IsNull(v)) {
    if (!cJSON_IsString(v)) return pose_error(POSE_EINVAL, "config.json: %s must be a string", key);
    s = v->valuestring;
  }
  if (!strcmp(s, "silu") || !strcmp(s, "swish")) *out = POSE_ACT_SILU;
  else if (!strcmp(s, "gelu")) *out = POSE_ACT_GELU_ERF;
  /* gelu_new, gelu_pytorch_tanh and gelu_fast are the same tanh approximation, written differently */
  else if (!strcmp(s, "gelu_new") || !strcmp(s, "gelu_pytorch_tanh") || !strcmp(s, "gelu_fast")) *out = POSE_ACT_GELU_TANH;
  else if (!strcmp(s, "relu")) *out = POSE_ACT_RELU;
  else
    return pose_error(POSE_EUNSUPPORTED, "config.json: %s '%s' is not supported (silu, gelu, gelu_new, "
                      "gelu_pytorch_tanh, gelu_fast, relu)", key, s);
  return POSE_OK;
}

/* Sliding windows: an explicit layer_types list wins (transformers 5 writes it); otherwise Mistral applies
 * sliding_window to every layer and Qwen2 to layers >= max_window_layers when use_sliding_window is set. */
static pose_status parse_windows(const cJSON *c, pose_model_cfg *cfg) {
  cfg->window = calloc((size_t)cfg->layers, sizeof *cfg->window);
  if (!cfg->window) return pose_error(POSE_ENOMEM, "config: out of memory");
  if (cfg->family != POSE_FAMILY_MISTRAL && cfg->family != POSE_FAMILY_QWEN2) return POSE_OK;
  int64_t w = 0;
  if (cfg->family == POSE_FAMILY_MISTRAL) {
    /* MistralConfig's default is 4096; an explicit null means none */
    const cJSON *v = field(c, "sliding_window");
    if (!v) w = 4096;
    else if (!cJSON_IsNull(v)) POSE_TRY(get_int(c, "sliding_window", 1, 0, &w));
  } else {
    int use = 0;
    POSE_TRY(get_bool(c, "use_sliding_window", 0, &use));
    if (use) POSE_TRY(get_int(c, "sliding_window", 0, 4096, &w));
  }
  if (w < 0) return pose_error(POSE_EINVAL, "config.json: sliding_window must be >= 0 (got %lld)", (long long)w);
  const cJSON *lt = field(c, "layer_types");
  if (lt && !cJSON_IsNull(lt)) {
    if (!cJSON_IsArray(lt) || cJSON_GetArraySize(lt) != cfg->layers)
      return pose_error(POSE_EINVAL, "config.json: layer_types must be a list of num_hidden_layers (%lld) strings",
                        (long long)cfg->layers);
    for (int64_t i = 0; i < cfg->layers; i++) {
      const cJSON *e = cJSON_GetArrayItem(lt, (int)i);
      if (!cJSON_IsString(e)) return pose_error(POSE_EINVAL, "config.json: layer_types[%lld] must be a string", (long long)i);
      if (!strcmp(e->valuestring, "sliding_attention")) {
        if (w == 0 && cfg->family == POSE_FAMILY_QWEN2) POSE_TRY(get_int(c, "sliding_window", 1, 0, &w));
        if (w == 0) return pose_error(POSE_EINVAL, "config.json: layer_types[%lld] is sliding_attention but "
                                      "sliding_window is null", (long long)i);
        cfg->window[i] = w;
      } else if (strcmp(e->valuestring, "full_attention"))
        return pose_error(POSE_EUNSUPPORTED, "config.json: layer_types[%lld] '%s' is not supported", (long long)i,
                          e->valuestring);
    }
    return POSE_OK;
  }
  int64_t first = 0;
  if (cfg->family == POSE_FAMILY_QWEN2) POSE_TRY(get_int(c, "max_window_layers", 0, 28, &first));
  for (int64_t i = first < 0 ? 0 : first; i < cfg->layers; i++) cfg->window[i] = w;
  return POSE_OK;
}

static pose_status parse(const cJSON *c, pose_model_cfg *cfg) {
  if (!cJSON_IsObject(c)) return pose_error(POSE_EINVAL, "config: expected a JSON object");
  const cJSON *mt = field(c, "model_type");
  if (!cJSON_IsString(mt)) return pose_error(POSE_EINVAL, "config.json: missing model_type");
  const char *t = mt->valuestring;
  if (!strcmp(t, "llama")) cfg->family = POSE_FAMILY_LLAMA;
  else if (!strcmp(t, "mistral")) cfg->family = POSE_FAMILY_MISTRAL;
  else if (!strcmp(t, "qwen2")) cfg->family = POSE_FAMILY_QWEN2;
  else if (!strcmp(t, "gptj")) cfg->family = POSE_FAMILY_GPTJ;
  else if (!strcmp(t, "gpt_neox")) cfg->family = POSE_FAMILY_NEOX;
  else if (!strcmp(t, "baichuan")) cfg->family = POSE_FAMILY_BAICHUAN;
  else
    return pose_error(POSE_EUNSUPPORTED, "config.json: model_type '%s' is not supported (llama, mistral, qwen2, "
                      "gptj, gpt_neox, baichuan)", t);
  snprintf(cfg->model_type, sizeof cfg->model_type, "%s", t);
  pose_family f = cfg->family;

  POSE_TRY(get_int(c, "vocab_size", 1, 0, &cfg->vocab));
  POSE_TRY(get_num(c, "initializer_range", 0.02, &cfg->init_range));
  POSE_TRY(get_bool(c, "tie_word_embeddings", 0, &cfg->tied));
  cfg->pad_id = -1;
  cfg->head_dim = 0;
  if (f == POSE_FAMILY_GPTJ) {
    POSE_TRY(get_int2(c, "n_embd", "hidden_size", 1, 0, &cfg->hidden));
    POSE_TRY(get_int2(c, "n_layer", "num_hidden_layers", 1, 0, &cfg->layers));
    POSE_TRY(get_int2(c, "n_head", "num_attention_heads", 1, 0, &cfg->heads));
    POSE_TRY(get_int2(c, "n_inner", "intermediate_size", 0, 4 * cfg->hidden, &cfg->inter));
    POSE_TRY(get_int2(c, "n_positions", "max_position_embeddings", 0, 2048, &cfg->max_pos));
    POSE_TRY(get_num(c, "layer_norm_epsilon", 1e-5, &cfg->norm_eps));
    POSE_TRY(parse_act(c, "activation_function", "gelu_new", &cfg->act));
    cfg->kv_heads = cfg->heads;
    cfg->norm = POSE_NORM_LAYER;
    cfg->glu = 0;
    cfg->parallel = cfg->shared_ln = 1;
    cfg->interleaved = 1;
    cfg->qkv = POSE_QKV_SEPARATE;
    cfg->qkv_bias = cfg->o_bias = 0;
    cfg->mlp_bias = cfg->lm_bias = 1;
  } else if (f == POSE_FAMILY_NEOX) {
    POSE_TRY(get_int(c, "hidden_size", 1, 0, &cfg->hidden));
    POSE_TRY(get_int(c, "num_hidden_layers", 1, 0, &cfg->layers));
    POSE_TRY(get_int(c, "num_attention_heads", 1, 0, &cfg->heads));
    POSE_TRY(get_int(c, "intermediate_size", 1, 0, &cfg->inter));
    POSE_TRY(get_int(c, "max_position_embeddings", 0, 2048, &cfg->max_pos));
    POSE_TRY(get_num(c, "layer_norm_eps", 1e-5, &cfg->norm_eps));
    POSE_TRY(parse_act(c, "hidden_act", "gelu", &cfg->act));
    POSE_TRY(get_bool(c, "use_parallel_residual", 1, &cfg->parallel));
    POSE_TRY(get_bool(c, "attention_bias", 1, &cfg->qkv_bias));
    cfg->o_bias = cfg->qkv_bias;
    cfg->kv_heads = cfg->heads;
    cfg->norm = POSE_NORM_LAYER;
    cfg->glu = 0;
    cfg->shared_ln = 0;
    cfg->interleaved = 0;
    cfg->qkv = POSE_QKV_NEOX;
    cfg->mlp_bias = 1;
    cfg->lm_bias = 0;
  } else { /* LLaMA-like: RMSNorm, SwiGLU, sequential residual, half-split rotary */
    POSE_TRY(get_int(c, "hidden_size", 1, 0, &cfg->hidden));
    POSE_TRY(get_int(c, "num_hidden_layers", 1, 0, &cfg->layers));
    POSE_TRY(get_int(c, "num_attention_heads", 1, 0, &cfg->heads));
    POSE_TRY(get_int(c, "intermediate_size", 1, 0, &cfg->inter));
    int64_t kv_def = f == POSE_FAMILY_MISTRAL ? 8 : f == POSE_FAMILY_QWEN2 ? 32 : cfg->heads;
    if (f == POSE_FAMILY_BAICHUAN) {
      if (!is_null_or_absent(c, "num_key_value_heads")) {
        int64_t kv;
        POSE_TRY(get_int(c, "num_key_value_heads", 1, 0, &kv));
        if (kv != cfg->heads)
          return pose_error(POSE_EINVAL, "config.json: num_key_value_heads (%lld) must equal num_attention_heads "
                            "(%lld) for baichuan (W_pack holds full q, k and v)", (long long)kv, (long long)cfg->heads);
      }
      cfg->kv_heads = cfg->heads;
      double z = 0;
      POSE_TRY(get_num(c, "z_loss_weight", 0, &z));
      if (z != 0) return pose_error(POSE_EUNSUPPORTED, "config.json: z_loss_weight %g is not supported (only 0)", z);
    } else {
      /* absent: the config class's default; explicit null: num_attention_heads (transformers' BC rule) */
      const cJSON *kvj = field(c, "num_key_value_heads");
      POSE_TRY(get_int(c, "num_key_value_heads", 0, kvj ? cfg->heads : kv_def, &cfg->kv_heads));
      POSE_TRY(get_int(c, "head_dim", 0, 0, &cfg->head_dim));
    }
    POSE_TRY(get_int(c, "max_position_embeddings", 0, 0, &cfg->max_pos));
    POSE_TRY(get_num(c, "rms_norm_eps", 1e-6, &cfg->norm_eps));
    POSE_TRY(parse_act(c, "hidden_act", "silu", &cfg->act));
    cfg->norm = POSE_NORM_RMS;
    cfg->glu = 1;
    cfg->parallel = cfg->shared_ln = 0;
    cfg->interleaved = 0;
    cfg->qkv = f == POSE_FAMILY_BAICHUAN ? POSE_QKV_WPACK : POSE_QKV_SEPARATE;
    cfg->lm_bias = 0;
    if (f == POSE_FAMILY_LLAMA) {
      POSE_TRY(get_bool(c, "attention_bias", 0, &cfg->qkv_bias));
      cfg->o_bias = cfg->qkv_bias;
      POSE_TRY(get_bool(c, "mlp_bias", 0, &cfg->mlp_bias));
    } else if (f == POSE_FAMILY_QWEN2) {
      cfg->qkv_bias = 1;
      cfg->o_bias = cfg->mlp_bias = 0;
    } else {
      cfg->qkv_bias = cfg->o_bias = cfg->mlp_bias = 0;
    }
    cfg->norm_head = f == POSE_FAMILY_BAICHUAN;
    /* nn.Embedding(vocab, hidden, padding_idx=pad_token_id) in these families */
    const cJSON *pad = field(c, "pad_token_id");
    if (pad && cJSON_IsNumber(pad)) {
      POSE_TRY(get_int(c, "pad_token_id", 1, 0, &cfg->pad_id));
      if (cfg->pad_id < 0 || cfg->pad_id >= cfg->vocab) cfg->pad_id = -1; /* torch would reject it; ignore instead */
    }
  }

  /* sizes */
  if (cfg->vocab <= 0) return pose_error(POSE_EINVAL, "config.json: vocab_size must be positive");
  if (cfg->hidden <= 0) return pose_error(POSE_EINVAL, "config.json: hidden_size must be positive");
  if (cfg->layers <= 0) return pose_error(POSE_EINVAL, "config.json: num_hidden_layers must be positive");
  if (cfg->heads <= 0) return pose_error(POSE_EINVAL, "config.json: num_attention_heads must be positive");
  if (cfg->inter <= 0) return pose_error(POSE_EINVAL, "config.json: intermediate_size must be positive");
  if (cfg->kv_heads <= 0 || cfg->heads % cfg->kv_heads)
    return pose_error(POSE_EINVAL, "config.json: num_key_value_heads (%lld%s) must divide num_attention_heads (%lld)",
                      (long long)cfg->kv_heads,
                      is_null_or_absent(c, "num_key_value_heads") ? ", the transformers default when absent" : "",
                      (long long)cfg->heads);
  if (cfg->head_dim == 0) {
    if (cfg->hidden % cfg->heads)
      return pose_error(POSE_EINVAL, "config.json: num_attention_heads (%lld) does not divide hidden_size (%lld)",
                        (long long)cfg->heads, (long long)cfg->hidden);
    cfg->head_dim = cfg->hidden / cfg->heads;
  }
  if (cfg->head_dim <= 0 || cfg->head_dim % 2)
    return pose_error(POSE_EINVAL, "config.json: head_dim (%lld) must be positive and even", (long long)cfg->head_dim);
  if (cfg->norm_eps < 0) return pose_error(POSE_EINVAL, "config.json: the norm epsilon must be >= 0");
  if (!(cfg->init_range >= 0)) return pose_error(POSE_EINVAL, "config.json: initializer_range must be >= 0");
  if (cfg->max_pos < 0) return pose_error(POSE_EINVAL, "config.json: max_position_embeddings must be >= 0");
  return parse_windows(c, cfg);
}

pose_status pose_model_cfg_parse(const cJSON *config, pose_model_cfg *cfg) {
  memset(cfg, 0, sizeof *cfg);
  pose_status st = parse(config, cfg);
  if (st != POSE_OK) pose_model_cfg_free(cfg);
  return st;
}

void pose_model_cfg_free(pose_model_cfg *cfg) {
  free(cfg->window);
  cfg->window = NULL;
}
