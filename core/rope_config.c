/* RoPE schemes in and out of JSON: config.json (v4 `rope_theta` + `rope_scaling`, v5 `rope_parameters`, the family
 * renames of spec §1) and pose.rope's own keys (the Lua table, the `rope` override of pose.load, the `pose_rope`
 * key of a saved config). A config is first translated into pose.rope keys, the override replaces keys, and one
 * builder validates everything and computes the frequencies, so every path shares the same checks and messages. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint.h" /* pose_json_float: floats written as 4.0, as Python writes them */
#include "rope_internal.h"

static const char *const TYPE_NAMES[] = {"default", "linear", "dynamic", "yarn", "llama3", "longrope", "vanilla_ntk",
                                         "proportional"};
#define N_TYPES ((int)(sizeof TYPE_NAMES / sizeof TYPE_NAMES[0]))

/* pose.rope's keys. Transformers' rope_scaling keys, the aliases type/base/head_dim, and pose's extensions
 * (extrapolation_factor and attn_factor from the YaRN repository, pose_variant = "revised" for PoSE's YaRN). */
static const char *const ROPE_KEYS[] = {
    "rope_type", "type", "factor", "rope_theta", "base", "dim", "head_dim", "partial_rotary_factor",
    "max_position_embeddings", "original_max_position_embeddings", "attention_factor", "beta_fast", "beta_slow",
    "mscale", "mscale_all_dim", "truncate", "extrapolation_factor", "attn_factor", "pose_variant", "short_factor",
    "long_factor", "low_freq_factor", "high_freq_factor", NULL};

/* Keys copied from a config's rope_scaling / rope_parameters dict (transformers' own; pose's extensions are only
 * read from pose.rope keys, as transformers would ignore them in a config). */
static const char *const CONFIG_DICT_KEYS[] = {
    "factor", "original_max_position_embeddings", "attention_factor", "beta_fast", "beta_slow", "mscale",
    "mscale_all_dim", "truncate", "short_factor", "long_factor", "low_freq_factor", "high_freq_factor", NULL};

#define MAX_ROPE_DIM 65536

typedef struct {
  const char *family;  /* model_type; "" for pose.rope keys alone */
  int prf_from_config; /* partial_rotary_factor came from config.json (LLaMA's default path ignores it) */
} rope_ctx;

const char *pose_rope_type_name(const pose_rope *r) { return TYPE_NAMES[r->type]; }

static int llama_like(const char *family) {
  return strcmp(family, "gptj") != 0 && strcmp(family, "gpt_neox") != 0 && strcmp(family, "baichuan") != 0;
}

static const char *json_kind(const cJSON *it) {
  if (cJSON_IsString(it)) return "a string";
  if (cJSON_IsBool(it)) return "a boolean";
  if (cJSON_IsArray(it)) return "an array";
  if (cJSON_IsObject(it)) return "an object";
  if (cJSON_IsNull(it)) return "null";
  if (cJSON_IsRaw(it)) return "a raw value";
  return "a number";
}

static const cJSON *get(const cJSON *o, const char *key) { return o ? cJSON_GetObjectItemCaseSensitive(o, key) : NULL; }
static int present(const cJSON *o, const char *key) { const cJSON *it = get(o, key); return it && !cJSON_IsNull(it); }

/* A JSON number, or a raw numeric item (pose_json_float's "4.0" in a config built in memory). */
static int json_number(const cJSON *it, double *v) {
  if (cJSON_IsNumber(it)) { *v = it->valuedouble; return 1; }
  if (cJSON_IsRaw(it) && it->valuestring && *it->valuestring) {
    char *end;
    double d = strtod(it->valuestring, &end);
    if (*end == 0) { *v = d; return 1; }
  }
  return 0;
}

/* A number field: absent or null leaves *has = 0. */
static pose_status opt_num(const cJSON *o, const char *key, double *v, int *has) {
  const cJSON *it = get(o, key);
  *has = 0;
  if (!it || cJSON_IsNull(it)) return POSE_OK;
  double d;
  if (!json_number(it, &d)) return pose_error(POSE_EINVAL, "rope: %s must be a number, got %s", key, json_kind(it));
  if (!isfinite(d)) return pose_error(POSE_EINVAL, "rope: %s must be finite", key);
  *v = d;
  *has = 1;
  return POSE_OK;
}

/* A positive integer field (JSON 4096 or 4096.0). */
static pose_status opt_pos_int(const cJSON *o, const char *key, int64_t *v, int *has) {
  double d = 0;
  POSE_TRY(opt_num(o, key, &d, has));
  if (!*has) return POSE_OK;
  if (d != floor(d) || d < 1 || d > 9007199254740992.0)
    return pose_error(POSE_EINVAL, "rope: %s must be a positive integer, got %.17g", key, d);
  *v = (int64_t)d;
  return POSE_OK;
}

static pose_status opt_str(const cJSON *o, const char *key, const char **v) {
  const cJSON *it = get(o, key);
  *v = NULL;
  if (!it || cJSON_IsNull(it)) return POSE_OK;
  if (!cJSON_IsString(it)) return pose_error(POSE_EINVAL, "rope: %s must be a string, got %s", key, json_kind(it));
  *v = it->valuestring;
  return POSE_OK;
}

/* Two spellings of one key (rope_type/type, rope_theta/base): both may be given only with the same value. */
static pose_status aliased_str(const cJSON *o, const char *a, const char *b, const char **v) {
  const char *x, *y;
  POSE_TRY(opt_str(o, a, &x));
  POSE_TRY(opt_str(o, b, &y));
  if (x && y && strcmp(x, y) != 0)
    return pose_error(POSE_EINVAL, "rope: %s '%s' and %s '%s' disagree (give one)", a, x, b, y);
  *v = x ? x : y;
  return POSE_OK;
}

static pose_status aliased_num(const cJSON *o, const char *a, const char *b, double *v, int *has) {
  double x = 0, y = 0;
  int hx, hy;
  POSE_TRY(opt_num(o, a, &x, &hx));
  POSE_TRY(opt_num(o, b, &y, &hy));
  if (hx && hy && x != y) return pose_error(POSE_EINVAL, "rope: %s %.17g and %s %.17g disagree (give one)", a, x, b, y);
  *has = hx || hy;
  if (*has) *v = hx ? x : y;
  return POSE_OK;
}

static pose_status parse_type(const char *name, pose_rope_type *t) {
  for (int i = 0; i < N_TYPES; i++)
    if (strcmp(name, TYPE_NAMES[i]) == 0) { *t = (pose_rope_type)i; return POSE_OK; }
  return pose_error(POSE_EINVAL,
                    "rope: unknown rope_type '%s' (known: default, linear, dynamic, yarn, llama3, longrope, "
                    "vanilla_ntk, proportional)", name);
}

static pose_status check_keys(const cJSON *p) {
  for (const cJSON *c = p->child; c; c = c->next) {
    int ok = 0;
    for (const char *const *k = ROPE_KEYS; *k; k++) if (strcmp(*k, c->string) == 0) { ok = 1; break; }
    if (!ok) {
      char known[768] = "";
      for (const char *const *k = ROPE_KEYS; *k; k++) {
        if (k != ROPE_KEYS) strncat(known, ", ", sizeof known - strlen(known) - 1);
        strncat(known, *k, sizeof known - strlen(known) - 1);
      }
      return pose_error(POSE_EINVAL, "rope: unknown key '%s' (known: %s)", c->string, known);
    }
  }
  return POSE_OK;
}

static pose_status factor_list(const cJSON *p, const char *key, int n, double **out) {
  const cJSON *it = get(p, key);
  if (!it || cJSON_IsNull(it)) return pose_error(POSE_EINVAL, "rope: longrope needs %s (a list of %d numbers)", key, n);
  if (!cJSON_IsArray(it)) return pose_error(POSE_EINVAL, "rope: %s must be a list of numbers, got %s", key, json_kind(it));
  int len = cJSON_GetArraySize(it);
  if (len != n) return pose_error(POSE_EINVAL, "rope: %s has %d entries, expected %d (dim/2)", key, len, n);
  double *v = malloc(sizeof(double) * (size_t)(n > 0 ? n : 1));
  if (!v) return pose_error(POSE_ENOMEM, "rope: out of memory");
  int i = 0;
  for (const cJSON *c = it->child; c; c = c->next, i++) {
    double d;
    if (!json_number(c, &d) || !isfinite(d) || d <= 0) {
      free(v);
      return pose_error(POSE_EINVAL, "rope: %s[%d] must be a number > 0", key, i + 1);
    }
    v[i] = d;
  }
  *out = v;
  return POSE_OK;
}

/* Validates pose.rope keys and builds the scheme. */
static pose_status build(const cJSON *p, const rope_ctx *ctx, pose_rope **out) {
  *out = NULL;
  if (!cJSON_IsObject(p)) return pose_error(POSE_EINVAL, "rope: parameters must be a JSON object / Lua table");
  POSE_TRY(check_keys(p));
  pose_rope *r = calloc(1, sizeof *r);
  if (!r) return pose_error(POSE_ENOMEM, "rope: out of memory");
  pose_status st = POSE_OK;
#define CHK(expr)                     \
  do {                                \
    if ((st = (expr)) != POSE_OK) goto fail; \
  } while (0)
#define FAIL(...)                                  \
  do {                                             \
    st = pose_error(POSE_EINVAL, __VA_ARGS__);     \
    goto fail;                                     \
  } while (0)
  snprintf(r->family, sizeof r->family, "%s", ctx->family);

  const char *tname;
  CHK(aliased_str(p, "rope_type", "type", &tname));
  r->type = POSE_ROPE_DEFAULT;
  if (tname) CHK(parse_type(tname, &r->type));
  const int t = r->type;

  int has;
  r->theta = 10000.0;
  CHK(aliased_num(p, "rope_theta", "base", &r->theta, &has));
  if (!(r->theta > 0)) FAIL("rope: rope_theta must be > 0, got %.17g", r->theta);
  if (t == POSE_ROPE_YARN && !(r->theta > 1)) FAIL("rope: yarn needs rope_theta > 1, got %.17g", r->theta);

  /* rotary dims */
  double dimd = 0, hdd = 0;
  int has_dim, has_hd;
  CHK(opt_num(p, "dim", &dimd, &has_dim));
  CHK(opt_num(p, "head_dim", &hdd, &has_hd));
  if (has_dim && (dimd != floor(dimd) || dimd < 1 || dimd > MAX_ROPE_DIM))
    FAIL("rope: dim must be a positive integer <= %d, got %.17g", MAX_ROPE_DIM, dimd);
  if (has_hd && (hdd != floor(hdd) || hdd < 1 || hdd > MAX_ROPE_DIM))
    FAIL("rope: head_dim must be a positive integer <= %d, got %.17g", MAX_ROPE_DIM, hdd);
  r->head_dim = has_hd ? (int)hdd : 0;
  CHK(opt_num(p, "partial_rotary_factor", &r->prf, &r->has_prf));
  if (r->has_prf && !(r->prf > 0 && r->prf <= 1))
    FAIL("rope: partial_rotary_factor must be in (0, 1], got %.17g", r->prf);
  if (t == POSE_ROPE_PROPORTIONAL) {
    /* every one of H/2 pairs exists; int(prf * H // 2) of them rotate, with exponent denominator H */
    if (!has_dim && !has_hd) FAIL("rope: proportional needs dim (or head_dim)");
    r->dim = has_dim ? (int)dimd : r->head_dim;
    double prf = r->has_prf ? r->prf : 1.0;
    r->pairs = (int)floor(prf * r->dim / 2.0);
  } else {
    if (has_dim) r->dim = (int)dimd;
    else if (has_hd) {
      /* transformers' LLaMA default path ignores a config's partial_rotary_factor (spec §1.3) */
      int ignore = ctx->prf_from_config && llama_like(ctx->family) &&
                   (t == POSE_ROPE_DEFAULT || t == POSE_ROPE_VANILLA_NTK);
      r->dim = (r->has_prf && !ignore) ? (int)(r->head_dim * r->prf) : r->head_dim;
      if (r->dim % 2)
        FAIL("rope: rotary dim %d (head_dim %d x partial_rotary_factor %.17g) must be even", r->dim, r->head_dim, r->prf);
    } else FAIL("rope: dim (or head_dim) is required");
    r->pairs = r->dim / 2;
  }
  if (r->dim < 2 || r->dim % 2) FAIL("rope: dim must be even and >= 2, got %d", r->dim);
  if (r->head_dim && r->dim > r->head_dim) FAIL("rope: dim %d exceeds head_dim %d", r->dim, r->head_dim);
  if ((t == POSE_ROPE_DYNAMIC || t == POSE_ROPE_VANILLA_NTK) && r->dim <= 2)
    FAIL("rope: %s needs dim > 2 (the exponent is dim/(dim-2))", TYPE_NAMES[t]);
  const int h = r->dim / 2;

  /* lengths */
  int has_mp, has_omp;
  CHK(opt_pos_int(p, "max_position_embeddings", &r->max_pos, &has_mp));
  int64_t omp = 0;
  CHK(opt_pos_int(p, "original_max_position_embeddings", &omp, &has_omp));
  if (t == POSE_ROPE_YARN || t == POSE_ROPE_LONGROPE || t == POSE_ROPE_LLAMA3) {
    /* transformers 5.17 standardization: the dict's value, else max_position_embeddings */
    if (has_omp) r->orig_max_pos = omp;
    else if (has_mp) r->orig_max_pos = r->max_pos;
    else FAIL("rope: %s needs original_max_position_embeddings (or max_position_embeddings)", TYPE_NAMES[t]);
  }
  if (t == POSE_ROPE_DYNAMIC && !has_mp) FAIL("rope: dynamic needs max_position_embeddings");

  /* factor */
  const cJSON *fit = get(p, "factor");
  CHK(opt_num(p, "factor", &r->factor, &r->has_factor));
  if (r->has_factor && !(r->factor > 0)) FAIL("rope: factor must be > 0, got %.17g", r->factor);
  if (!r->has_factor) {
    switch (t) {
      case POSE_ROPE_DEFAULT: r->factor = 1.0; break;
      case POSE_ROPE_PROPORTIONAL: r->factor = 1.0; break;
      case POSE_ROPE_YARN:
        /* 5.17 requires the key; an explicit null means max_position_embeddings / original */
        if (!fit) FAIL("rope: yarn needs factor");
        /* fall through */
      case POSE_ROPE_LONGROPE:
        if (!has_mp) FAIL("rope: %s without factor needs max_position_embeddings", TYPE_NAMES[t]);
        r->factor = (double)r->max_pos / (double)r->orig_max_pos;
        break;
      default: FAIL("rope: %s needs factor", TYPE_NAMES[t]);
    }
  }

  /* yarn */
  r->extrapolation_factor = 1.0;
  r->attn_factor = 1.0;
  r->truncate = 1;
  if (t == POSE_ROPE_YARN) {
    double bf = 0, bs = 0;
    int hbf, hbs;
    CHK(opt_num(p, "beta_fast", &bf, &hbf));
    CHK(opt_num(p, "beta_slow", &bs, &hbs));
    if (bf < 0) FAIL("rope: beta_fast must be >= 0 (0 means the default 32), got %.17g", bf);
    if (bs < 0) FAIL("rope: beta_slow must be >= 0 (0 means the default 1), got %.17g", bs);
    r->beta_fast = bf != 0 ? bf : 32; /* Python `value or default` */
    r->beta_slow = bs != 0 ? bs : 1;
    CHK(opt_num(p, "mscale", &r->mscale, &r->has_mscale));
    CHK(opt_num(p, "mscale_all_dim", &r->mscale_all_dim, &r->has_mscale_all_dim));
    const cJSON *tr = get(p, "truncate");
    if (tr) {
      /* `rope_parameters.get("truncate", True)`: null and false both switch truncation off */
      if (cJSON_IsBool(tr)) r->truncate = cJSON_IsTrue(tr);
      else if (cJSON_IsNull(tr)) r->truncate = 0;
      else FAIL("rope: truncate must be a boolean, got %s", json_kind(tr));
    }
    CHK(opt_num(p, "extrapolation_factor", &r->extrapolation_factor, &has));
    if (!has) r->extrapolation_factor = 1.0;
    CHK(opt_num(p, "attn_factor", &r->attn_factor, &has));
    if (!has) r->attn_factor = 1.0;
    if (!(r->attn_factor > 0)) FAIL("rope: attn_factor must be > 0, got %.17g", r->attn_factor);
    const char *var;
    CHK(opt_str(p, "pose_variant", &var));
    if (var) {
      if (strcmp(var, "revised") != 0) FAIL("rope: pose_variant must be \"revised\" (PoSE's YaRN), got '%s'", var);
      r->revised = 1;
    }
  } else {
    static const char *const yarn_only[] = {"extrapolation_factor", "attn_factor", "pose_variant", NULL};
    for (const char *const *k = yarn_only; *k; k++)
      if (present(p, *k)) FAIL("rope: %s applies to yarn only (rope_type is %s)", *k, TYPE_NAMES[t]);
  }
  if (t == POSE_ROPE_YARN || t == POSE_ROPE_LONGROPE) {
    CHK(opt_num(p, "attention_factor", &r->attention_factor_in, &r->has_attention_factor));
    if (r->has_attention_factor && !(r->attention_factor_in > 0))
      FAIL("rope: attention_factor must be > 0, got %.17g", r->attention_factor_in);
  }

  /* llama3 */
  if (t == POSE_ROPE_LLAMA3) {
    int ha, hb;
    CHK(opt_num(p, "low_freq_factor", &r->low_freq_factor, &ha));
    CHK(opt_num(p, "high_freq_factor", &r->high_freq_factor, &hb));
    if (!ha) FAIL("rope: llama3 needs low_freq_factor");
    if (!hb) FAIL("rope: llama3 needs high_freq_factor");
    if (!(r->low_freq_factor > 0)) FAIL("rope: low_freq_factor must be > 0, got %.17g", r->low_freq_factor);
    if (!(r->high_freq_factor > r->low_freq_factor))
      FAIL("rope: high_freq_factor (%.17g) must be greater than low_freq_factor (%.17g)", r->high_freq_factor,
           r->low_freq_factor);
  }

  /* longrope */
  if (t == POSE_ROPE_LONGROPE) {
    CHK(factor_list(p, "short_factor", h, &r->short_factor));
    CHK(factor_list(p, "long_factor", h, &r->long_factor));
  }

  CHK(pose_rope_init_state(r));
  *out = r;
  return POSE_OK;
fail:
  pose_rope_free(r);
  return st;
#undef CHK
#undef FAIL
}

pose_status pose_rope_from_json(const cJSON *params, pose_rope **out) {
  rope_ctx ctx = {"", 0};
  return build(params, &ctx, out);
}

/* ---- config.json -> pose.rope keys ---------------------------------------------------------------------------- */

static pose_status put_dup(cJSON *dst, const char *key, const cJSON *v) {
  cJSON *d = cJSON_Duplicate(v, 1);
  if (!d) return pose_error(POSE_ENOMEM, "rope: out of memory");
  if (get(dst, key)) cJSON_ReplaceItemInObjectCaseSensitive(dst, key, d);
  else cJSON_AddItemToObject(dst, key, d);
  return POSE_OK;
}

static pose_status put_num(cJSON *dst, const char *key, double v) {
  cJSON *n = cJSON_CreateNumber(v);
  if (!n) return pose_error(POSE_ENOMEM, "rope: out of memory");
  if (get(dst, key)) cJSON_ReplaceItemInObjectCaseSensitive(dst, key, n);
  else cJSON_AddItemToObject(dst, key, n);
  return POSE_OK;
}

static pose_status put_str(cJSON *dst, const char *key, const char *v) {
  cJSON *n = cJSON_CreateString(v);
  if (!n) return pose_error(POSE_ENOMEM, "rope: out of memory");
  if (get(dst, key)) cJSON_ReplaceItemInObjectCaseSensitive(dst, key, n);
  else cJSON_AddItemToObject(dst, key, n);
  return POSE_OK;
}

static const cJSON *opt_obj(const cJSON *config, const char *key, pose_status *st) {
  const cJSON *it = get(config, key);
  *st = POSE_OK;
  if (!it || cJSON_IsNull(it)) return NULL;
  if (!cJSON_IsObject(it)) {
    *st = pose_error(POSE_EINVAL, "rope: config %s must be an object or null, got %s", key, json_kind(it));
    return NULL;
  }
  return it;
}

/* Translates config.json into pose.rope keys following transformers 5.17 (spec §1). */
static pose_status config_to_params(const cJSON *config, const char *family, int head_dim, cJSON *p, rope_ctx *ctx) {
  pose_status st;
  const cJSON *rs = opt_obj(config, "rope_scaling", &st);
  POSE_TRY(st);
  const cJSON *rp = opt_obj(config, "rope_parameters", &st);
  POSE_TRY(st);
  /* the rope dict: v4 rope_scaling, with v5 rope_parameters' keys taking precedence */
  const cJSON *dicts[2] = {rs, rp};
  for (int d = 0; d < 2; d++)
    for (const cJSON *c = dicts[d] ? dicts[d]->child : NULL; c; c = c->next)
      if (cJSON_IsObject(c))
        return pose_error(POSE_EUNSUPPORTED, "rope: per-layer %s ('%s': {...}) is not supported",
                          d ? "rope_parameters" : "rope_scaling", c->string);
  const char *type = NULL;
  for (int d = 0; d < 2; d++) {
    if (!dicts[d]) continue;
    const char *x;
    POSE_TRY(opt_str(dicts[d], "type", &x));
    if (x && !type) type = x; /* legacy key, used when no rope_type anywhere */
  }
  for (int d = 0; d < 2; d++) {
    if (!dicts[d]) continue;
    const char *x;
    POSE_TRY(opt_str(dicts[d], "rope_type", &x));
    if (x) type = x; /* 5.17: rope_type wins over type (v4 was the other way round) */
  }
  for (int d = 0; d < 2; d++) {
    if (!dicts[d]) continue;
    for (const char *const *k = CONFIG_DICT_KEYS; *k; k++) {
      const cJSON *v = get(dicts[d], *k);
      if (v) POSE_TRY(put_dup(p, *k, v));
    }
  }
  POSE_TRY(put_str(p, "rope_type", type ? type : "default"));

  /* theta, by family */
  const cJSON *theta = NULL;
  if (strcmp(family, "gptj") == 0 || strcmp(family, "baichuan") == 0) {
    /* hard-wired 10000 in both (GPT-J has no rope parameters; Baichuan2-7B's remote code fixes the base) */
  } else {
    for (int d = 0; d < 2; d++) if (dicts[d] && present(dicts[d], "rope_theta")) theta = get(dicts[d], "rope_theta");
    if (!theta) {
      /* NeoX renames rotary_emb_base (its top-level rope_theta is never read) */
      const char *top = strcmp(family, "gpt_neox") == 0 ? "rotary_emb_base" : "rope_theta";
      if (present(config, top)) theta = get(config, top);
    }
  }
  if (theta) POSE_TRY(put_dup(p, "rope_theta", theta));

  /* rotary dims, by family */
  POSE_TRY(put_num(p, "head_dim", head_dim));
  if (strcmp(family, "gptj") == 0) {
    const cJSON *rd = get(config, "rotary_dim");
    if (!rd) POSE_TRY(put_num(p, "dim", 64)); /* GPTJConfig's default */
    else if (cJSON_IsNull(rd)) POSE_TRY(put_num(p, "dim", head_dim));
    else POSE_TRY(put_dup(p, "dim", rd));
  } else if (strcmp(family, "baichuan") == 0) {
    POSE_TRY(put_num(p, "dim", head_dim));
  } else if (strcmp(family, "gpt_neox") == 0) {
    /* rotary_pct -> partial_rotary_factor (default 0.25); it applies to the default path too */
    const cJSON *prf = present(config, "partial_rotary_factor") ? get(config, "partial_rotary_factor")
                       : present(config, "rotary_pct")           ? get(config, "rotary_pct")
                                                                 : NULL;
    for (int d = 0; d < 2 && !prf; d++)
      if (dicts[d] && present(dicts[d], "partial_rotary_factor")) prf = get(dicts[d], "partial_rotary_factor");
    if (prf) POSE_TRY(put_dup(p, "partial_rotary_factor", prf));
    else POSE_TRY(put_num(p, "partial_rotary_factor", 0.25));
  } else {
    /* the config attribute overwrites the dict's value at standardization */
    const cJSON *prf = present(config, "partial_rotary_factor") ? get(config, "partial_rotary_factor") : NULL;
    for (int d = 0; d < 2 && !prf; d++)
      if (dicts[d] && present(dicts[d], "partial_rotary_factor")) prf = get(dicts[d], "partial_rotary_factor");
    if (prf) {
      POSE_TRY(put_dup(p, "partial_rotary_factor", prf));
      ctx->prf_from_config = 1;
    }
  }

  /* lengths: GPT-J calls it n_positions; a top-level original_max_position_embeddings (Phi-3 style) wins over
   * the dict's (5.17 standardization) */
  const cJSON *mp = get(config, "max_position_embeddings");
  if ((!mp || cJSON_IsNull(mp)) && strcmp(family, "gptj") == 0) mp = get(config, "n_positions");
  if (mp && !cJSON_IsNull(mp)) POSE_TRY(put_dup(p, "max_position_embeddings", mp));
  if (present(config, "original_max_position_embeddings"))
    POSE_TRY(put_dup(p, "original_max_position_embeddings", get(config, "original_max_position_embeddings")));
  else if (strcmp(family, "gptj") == 0 && !present(p, "original_max_position_embeddings"))
    POSE_TRY(put_num(p, "original_max_position_embeddings", 2048)); /* PoSE's GPT-J YaRN hard-codes 2048 */
  return POSE_OK;
}

/* The override's keys replace p's; the aliases replace both spellings. */
static pose_status apply_override(cJSON *p, const cJSON *ov, rope_ctx *ctx) {
  if (!cJSON_IsObject(ov)) return pose_error(POSE_EINVAL, "rope: the rope override must be an object / table");
  const char *type;
  POSE_TRY(aliased_str(ov, "rope_type", "type", &type));
  double theta;
  int has_theta;
  POSE_TRY(aliased_num(ov, "rope_theta", "base", &theta, &has_theta));
  for (const cJSON *c = ov->child; c; c = c->next) {
    const char *k = c->string;
    if (strcmp(k, "type") == 0 || strcmp(k, "rope_type") == 0) {
      cJSON_DeleteItemFromObjectCaseSensitive(p, "type");
      POSE_TRY(put_dup(p, "rope_type", c));
    } else if (strcmp(k, "base") == 0 || strcmp(k, "rope_theta") == 0) {
      cJSON_DeleteItemFromObjectCaseSensitive(p, "base");
      POSE_TRY(put_dup(p, "rope_theta", c));
    } else {
      if (strcmp(k, "partial_rotary_factor") == 0) ctx->prf_from_config = 0;
      POSE_TRY(put_dup(p, k, c));
    }
  }
  return POSE_OK;
}

pose_status pose_rope_from_config(const cJSON *config, const char *model_type, int head_dim, const cJSON *override,
                                  pose_rope **out) {
  *out = NULL;
  if (!cJSON_IsObject(config)) return pose_error(POSE_EINVAL, "rope: config must be a JSON object");
  if (head_dim <= 0 || head_dim > MAX_ROPE_DIM) return pose_error(POSE_EINVAL, "rope: head_dim must be in 1..%d, got %d", MAX_ROPE_DIM, head_dim);
  const char *family = model_type;
  if (!family) {
    const cJSON *mt = get(config, "model_type");
    family = cJSON_IsString(mt) ? mt->valuestring : "llama";
  }
  rope_ctx ctx = {family, 0};
  cJSON *p = NULL;
  pose_status st = POSE_OK;
  const cJSON *saved = get(config, "pose_rope");
  if (saved && !cJSON_IsNull(saved)) {
    /* written by pose_rope_to_config for a scheme transformers cannot express: it is the exact scheme */
    if (!cJSON_IsObject(saved)) return pose_error(POSE_EINVAL, "rope: config pose_rope must be an object, got %s", json_kind(saved));
    p = cJSON_Duplicate(saved, 1);
    if (!p) return pose_error(POSE_ENOMEM, "rope: out of memory");
    if (!get(p, "head_dim")) st = put_num(p, "head_dim", head_dim);
    if (!st && !get(p, "max_position_embeddings") && present(config, "max_position_embeddings"))
      st = put_dup(p, "max_position_embeddings", get(config, "max_position_embeddings"));
  } else {
    p = cJSON_CreateObject();
    if (!p) return pose_error(POSE_ENOMEM, "rope: out of memory");
    st = config_to_params(config, family, head_dim, p, &ctx);
  }
  if (!st && override && !cJSON_IsNull(override)) st = apply_override(p, override, &ctx);
  if (!st) st = build(p, &ctx, out);
  cJSON_Delete(p);
  return st;
}

/* ---- out: pose.rope keys and config.json ---------------------------------------------------------------------- */

static int uses_factor(pose_rope_type t) { return t != POSE_ROPE_DEFAULT; }
static int uses_orig(pose_rope_type t) {
  return t == POSE_ROPE_YARN || t == POSE_ROPE_LONGROPE || t == POSE_ROPE_LLAMA3;
}

/* A real-valued key: a plain number for pose.rope keys (Lua), a float literal ("4.0") for config.json. */
static cJSON *real(double v, int as_float) { return as_float ? pose_json_float(v) : cJSON_CreateNumber(v); }
static void add_real(cJSON *o, const char *key, double v, int as_float) { cJSON_AddItemToObject(o, key, real(v, as_float)); }

static cJSON *num_list(const double *v, int n, int as_float) {
  cJSON *a = cJSON_CreateArray();
  for (int i = 0; a && i < n; i++) cJSON_AddItemToArray(a, real(v[i], as_float));
  return a;
}

/* The transformers keys of the scheme's rope_scaling dict (shared by pose.rope keys and config.json). */
static void add_type_keys(const pose_rope *r, cJSON *o, int as_float) {
  pose_rope_type t = r->type;
  if (uses_factor(t)) add_real(o, "factor", r->factor, as_float);
  if (uses_orig(t)) cJSON_AddNumberToObject(o, "original_max_position_embeddings", (double)r->orig_max_pos);
  if (t == POSE_ROPE_YARN) {
    add_real(o, "beta_fast", r->beta_fast, as_float);
    add_real(o, "beta_slow", r->beta_slow, as_float);
    if (r->has_mscale) add_real(o, "mscale", r->mscale, as_float);
    if (r->has_mscale_all_dim) add_real(o, "mscale_all_dim", r->mscale_all_dim, as_float);
    if (!r->truncate) cJSON_AddBoolToObject(o, "truncate", 0);
  }
  if ((t == POSE_ROPE_YARN || t == POSE_ROPE_LONGROPE) && r->has_attention_factor)
    add_real(o, "attention_factor", r->attention_factor_in, as_float);
  if (t == POSE_ROPE_LLAMA3) {
    add_real(o, "low_freq_factor", r->low_freq_factor, as_float);
    add_real(o, "high_freq_factor", r->high_freq_factor, as_float);
  }
  if (t == POSE_ROPE_LONGROPE) {
    cJSON_AddItemToObject(o, "short_factor", num_list(r->short_factor, r->dim / 2, as_float));
    cJSON_AddItemToObject(o, "long_factor", num_list(r->long_factor, r->dim / 2, as_float));
  }
  if (t == POSE_ROPE_PROPORTIONAL && r->has_prf) add_real(o, "partial_rotary_factor", r->prf, as_float);
}

cJSON *pose_rope_to_json(const pose_rope *r) {
  cJSON *o = cJSON_CreateObject();
  if (!o) return NULL;
  cJSON_AddStringToObject(o, "rope_type", TYPE_NAMES[r->type]);
  cJSON_AddNumberToObject(o, "rope_theta", r->theta);
  cJSON_AddNumberToObject(o, "dim", r->dim);
  if (r->head_dim) cJSON_AddNumberToObject(o, "head_dim", r->head_dim);
  if (r->max_pos) cJSON_AddNumberToObject(o, "max_position_embeddings", (double)r->max_pos);
  add_type_keys(r, o, 0);
  if (r->type == POSE_ROPE_YARN) {
    if (r->extrapolation_factor != 1.0) cJSON_AddNumberToObject(o, "extrapolation_factor", r->extrapolation_factor);
    if (r->attn_factor != 1.0) cJSON_AddNumberToObject(o, "attn_factor", r->attn_factor);
    if (r->revised) cJSON_AddStringToObject(o, "pose_variant", "revised");
  }
  return o;
}

/* A partial_rotary_factor p with int(H * p) == r, as transformers computes it. */
static double prf_for(int r, int H) {
  double p = (double)r / (double)H;
  while ((int)(H * p) < r) p = nextafter(p, 2.0);
  return p;
}

static void set_item(cJSON *o, const char *key, cJSON *v) {
  if (!v) return;
  if (get(o, key)) cJSON_ReplaceItemInObjectCaseSensitive(o, key, v);
  else cJSON_AddItemToObject(o, key, v);
}
static void set_num(cJSON *o, const char *key, double v) { set_item(o, key, cJSON_CreateNumber(v)); }
static void set_float(cJSON *o, const char *key, double v) { set_item(o, key, pose_json_float(v)); }

/* Same frequencies, attention factor and runtime behaviour: what a reader of the written config would compute. */
static int same_scheme(const pose_rope *a, const pose_rope *b) {
  if (a->dim != b->dim || a->attention != b->attention) return 0;
  if (memcmp(a->inv_orig, b->inv_orig, sizeof(float) * (size_t)(a->dim / 2)) != 0) return 0;
  int dyn_a = a->type == POSE_ROPE_DYNAMIC || a->type == POSE_ROPE_LONGROPE;
  int dyn_b = b->type == POSE_ROPE_DYNAMIC || b->type == POSE_ROPE_LONGROPE;
  if (dyn_a || dyn_b) {
    if (a->type != b->type) return 0;
    if (a->type == POSE_ROPE_DYNAMIC &&
        (a->max_pos != b->max_pos || (float)a->theta != (float)b->theta || (float)a->factor != (float)b->factor ||
         (float)(a->factor - 1) != (float)(b->factor - 1)))
      return 0;
    if (a->type == POSE_ROPE_LONGROPE &&
        (a->orig_max_pos != b->orig_max_pos ||
         memcmp(a->inv_long, b->inv_long, sizeof(float) * (size_t)(a->dim / 2)) != 0))
      return 0;
  }
  return 1;
}

pose_status pose_rope_to_config(const pose_rope *r, cJSON *config) {
  if (!cJSON_IsObject(config)) return pose_error(POSE_EINVAL, "rope: config must be a JSON object");
  const char *family = r->family;
  if (!family[0]) {
    const cJSON *mt = get(config, "model_type");
    family = cJSON_IsString(mt) ? mt->valuestring : "llama";
  }
  char fam[sizeof r->family];
  snprintf(fam, sizeof fam, "%s", family);
  const int H = r->head_dim ? r->head_dim : r->dim;
  const pose_rope_type t = r->type;
  /* PoSE's static NTK is the default RoPE with theta' = theta * alpha^(r/(r-2)) (spec §2.4) */
  double theta = t == POSE_ROPE_VANILLA_NTK ? r->theta * pow(r->factor, (double)r->dim / (double)(r->dim - 2)) : r->theta;

  cJSON_DeleteItemFromObjectCaseSensitive(config, "rope_parameters"); /* v5 readers would prefer it */
  set_float(config, "rope_theta", theta);
  cJSON *rs;
  if (t == POSE_ROPE_DEFAULT || t == POSE_ROPE_VANILLA_NTK) rs = cJSON_CreateNull();
  else {
    rs = cJSON_CreateObject();
    if (rs) {
      /* both spellings: transformers <= 4.44 reads type, 4.45+ and 5.x rope_type */
      cJSON_AddStringToObject(rs, "rope_type", TYPE_NAMES[t]);
      cJSON_AddStringToObject(rs, "type", TYPE_NAMES[t]);
      add_type_keys(r, rs, 1);
    }
  }
  if (!rs) return pose_error(POSE_ENOMEM, "rope: out of memory");
  if (get(config, "rope_scaling")) cJSON_ReplaceItemInObjectCaseSensitive(config, "rope_scaling", rs);
  else cJSON_AddItemToObject(config, "rope_scaling", rs);

  if (strcmp(fam, "gpt_neox") == 0) {
    set_float(config, "rotary_emb_base", theta);
    set_float(config, "rotary_pct", prf_for(r->dim, H));
    cJSON_DeleteItemFromObjectCaseSensitive(config, "partial_rotary_factor");
  } else if (strcmp(fam, "gptj") == 0) {
    set_num(config, "rotary_dim", r->dim);
  } else if (llama_like(fam)) {
    if (t == POSE_ROPE_PROPORTIONAL) {
      if (r->has_prf || get(config, "partial_rotary_factor")) set_float(config, "partial_rotary_factor", r->has_prf ? r->prf : 1.0);
    } else if (r->dim != H || get(config, "partial_rotary_factor")) {
      set_float(config, "partial_rotary_factor", prf_for(r->dim, H));
    }
  }
  if (uses_orig(t) && get(config, "original_max_position_embeddings"))
    set_num(config, "original_max_position_embeddings", (double)r->orig_max_pos);
  if (t == POSE_ROPE_DYNAMIC && !present(config, "max_position_embeddings") && r->max_pos)
    set_num(config, "max_position_embeddings", (double)r->max_pos);

  /* Read it back as transformers would (our parser follows it) and compare. */
  cJSON *copy = cJSON_Duplicate(config, 1);
  if (!copy) return pose_error(POSE_ENOMEM, "rope: out of memory");
  cJSON_DeleteItemFromObjectCaseSensitive(copy, "pose_rope");
  pose_rope *back = NULL;
  pose_status st = pose_rope_from_config(copy, fam, H, NULL, &back);
  /* GPT-J and Baichuan2 read no rope_scaling in transformers (PoSE's code and ours do) */
  int fixed = strcmp(fam, "gptj") == 0 || strcmp(fam, "baichuan") == 0;
  int same = st == POSE_OK && same_scheme(r, back) && !(fixed && t != POSE_ROPE_DEFAULT);
  pose_rope_free(back);
  cJSON_Delete(copy);
  pose_error_clear();
  if (same) {
    cJSON_DeleteItemFromObjectCaseSensitive(config, "pose_rope");
    return POSE_OK;
  }
  cJSON *pj = pose_rope_to_json(r);
  if (!pj) return pose_error(POSE_ENOMEM, "rope: out of memory");
  if (get(config, "pose_rope")) cJSON_ReplaceItemInObjectCaseSensitive(config, "pose_rope", pj);
  else cJSON_AddItemToObject(config, "pose_rope", pj);
  fprintf(stderr,
          "pose: warning: rope scheme %s%s cannot be expressed in a transformers config.json for model_type '%s'; "
          "saved exactly under \"pose_rope\" (transformers will read rope_scaling and compute different numbers)\n",
          TYPE_NAMES[t], r->revised ? " (pose_variant revised)" : "", fam);
  return POSE_OK;
}
