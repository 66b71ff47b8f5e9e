/* Lua bindings of the model (core/model.h):
 *   pose.load(dir, {device=, dtype=, rope=, recompute=}) -> m   pose.init(config_table, {seed=, device=, recompute=})
 *     device "cpu" (default) or "cuda[:N]"; dtype: the compute type, "f32" on the cpu, "bf16" on cuda (fp32 master
 *     weights); recompute "none" | "layer" | "offload" | "selective" (training activations kept, recomputed per
 *     layer, recomputed with the layer inputs in pinned host memory, or recomputed except the attention, whose
 *     outputs are kept; cuda)
 *   m:device() -> "cpu" | "cuda:N"   m:set_recompute("none" | "layer" | "offload" | "selective")   m:recompute()
 *   m:memory_plan(B, T, {train=true, recompute=m:recompute()}) -> {weights=, grads=, optimizer=, activations=,
 *     temporary=, total=, host_pinned=, chunk_rows=} (bytes a call would take on a cuda model's device; cuda only)
 *   precision= (load/init, cuda): "fp32-master" (default) | "bf16" (pure-bf16 weights and AdamW moments with
 *     stochastic rounding, fp32 gradients; 10 bytes per parameter instead of 18)   m:precision() -> that name
 *   m.config                                   config.json's keys plus the resolved `rope` table
 *   m:forward(ids, {positions=})              -> f32 tensor [B,T,V]
 *   m:nll(ids, {positions=, targets=})        -> f32 tensor [B,T-1]
 *   m:loss(ids, {positions=, targets=})       -> mean NLL over the scored targets (a number)
 *   m:generate(prompt, {max_new_tokens=16, temperature=0, top_p=1, seed=0, positions=, eos=})
 *                                              -> table of new ids (a table of such tables for a 2-D prompt)
 *   m:save(dir, {dtype="f32"})  m:set_rope(table)  m:num_params()  m:params()  m:param(name) -> f32 tensor copy
 * ids / positions / targets: a 1-D (one row) or 2-D [B,T] integer tensor or nested table; positions and targets
 * must have the shape of ids. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "generate.h"
#include "lpose.h"
#include "model.h"

#define POSE_MODEL_MT "pose.model"

typedef struct {
  pose_model *m;
} lmodel;

pose_model *pose_lua_check_model(lua_State *L, int idx) {
  lmodel *u = luaL_checkudata(L, idx, POSE_MODEL_MT);
  if (!u->m) pose_lua_errorf(L, "pose: model used after it was freed");
  return u->m;
}

/* ---- arguments ------------------------------------------------------------------------------------------------ */

typedef struct {
  const int64_t *p;
  int64_t B, T;
  int ndim;
} rows;

/* An integer tensor/table at idx as [B,T] rows; the converted tensor is left on the stack (the GC frees it). */
static rows check_rows(lua_State *L, int idx, const char *fn, const char *what) {
  pose_tensor *t = pose_lua_check_ids(L, idx, what);
  pose_lua_push_tensor(L, t);
  rows r = {pose_tensor_data(t), 1, 0, t->ndim};
  if (t->ndim == 1) r.T = t->shape[0];
  else if (t->ndim == 2) { r.B = t->shape[0]; r.T = t->shape[1]; }
  else pose_lua_errorf(L, "%s: %s must be 1-D (one row) or 2-D [B,T], got %d dimensions", fn, what, t->ndim);
  if (r.B < 1 || r.T < 1) pose_lua_errorf(L, "%s: %s is empty", fn, what);
  return r;
}

/* Optional field `key` of the options table: rows of the same [B,T] as ids, or NULL. */
static const int64_t *opt_rows(lua_State *L, int opts, const char *key, const char *fn, const rows *ids) {
  if (!opts) return NULL;
  lua_getfield(L, opts, key);
  if (lua_isnil(L, -1)) { lua_pop(L, 1); return NULL; }
  int at = lua_gettop(L);
  rows r = check_rows(L, at, fn, key);
  if (r.B != ids->B || r.T != ids->T || r.ndim != ids->ndim)
    pose_lua_errorf(L, "%s: %s shape %s[%lld, %lld] differs from the ids shape %s[%lld, %lld]", fn, key,
                    r.ndim == 1 ? "(1-D) " : "", (long long)r.B, (long long)r.T, ids->ndim == 1 ? "(1-D) " : "",
                    (long long)ids->B, (long long)ids->T);
  return r.p; /* the tensor stays referenced from the stack until the call returns */
}

static int opts_arg(lua_State *L, int idx, const char *fn, const char *const *keys) {
  if (lua_isnoneornil(L, idx)) return 0;
  if (!lua_istable(L, idx)) pose_lua_errorf(L, "%s: options must be a table, got %s", fn, luaL_typename(L, idx));
  pose_lua_check_keys(L, idx, fn, keys);
  return idx;
}

/* Models live on the CPU unless a device is named: the CPU is the reference and runs every family, while the GPU
 * decoder computes in bf16, so a GPU machine does not silently change the numbers. */
static pose_device opt_device(lua_State *L, int opts) {
  const char *s = pose_lua_opt_str(L, opts, "device", NULL);
  pose_device d = POSE_DEVICE_CPU;
  if (s) POSE_LUA_TRY(L, pose_device_parse(s, &d));
  return d;
}

/* ---- construction ------------------------------------------------------------------------------------------ */

static void push_config(lua_State *L, int ud) {
  lmodel *u = lua_touserdata(L, ud);
  pose_lua_push_json(L, pose_model_config(u->m));
  lua_setiuservalue(L, ud, 1);
}

static lmodel *new_udata(lua_State *L) {
  lmodel *u = lua_newuserdatauv(L, sizeof *u, 1);
  u->m = NULL;
  luaL_setmetatable(L, POSE_MODEL_MT);
  return u;
}

/* cJSON from the Lua table at idx, anchored so that a Lua error does not leak it: returns the object and leaves a
 * full userdata on the stack whose __gc deletes it */
static int json_anchor_gc(lua_State *L) {
  cJSON **p = lua_touserdata(L, 1);
  if (*p) cJSON_Delete(*p);
  *p = NULL;
  return 0;
}

static cJSON *table_json(lua_State *L, int idx, const char *fn, const char *what) {
  idx = lua_absindex(L, idx);
  if (!lua_istable(L, idx)) pose_lua_errorf(L, "%s: %s must be a table, got %s", fn, what, luaL_typename(L, idx));
  cJSON **p = lua_newuserdatauv(L, sizeof *p, 0);
  *p = NULL;
  lua_newtable(L);
  lua_pushcfunction(L, json_anchor_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  *p = pose_lua_to_json(L, idx, 0);
  if (!*p || !cJSON_IsObject(*p)) pose_lua_errorf(L, "%s: %s must be a table with string keys", fn, what);
  return *p;
}

static pose_recompute opt_recompute(lua_State *L, int opts, const char *fn) {
  const char *s = pose_lua_opt_str(L, opts, "recompute", "none");
  pose_recompute r;
  if (pose_recompute_parse(s, &r) != POSE_OK) pose_lua_errorf(L, "%s: %s", fn, pose_error_message());
  return r;
}

/* Training precision of a cuda model: "fp32-master" (default) or "bf16" (pure bf16 weights and moments). Checked
 * before anything is loaded, so a cpu model asking for bf16 fails fast. */
static pose_precision opt_precision(lua_State *L, int opts, pose_device dev, const char *fn) {
  const char *s = pose_lua_opt_str(L, opts, "precision", "fp32-master");
  pose_precision p;
  if (pose_precision_parse(s, &p) != POSE_OK) pose_lua_errorf(L, "%s: %s", fn, pose_error_message());
  if (p == POSE_PRECISION_BF16 && dev.type == POSE_CPU)
    pose_lua_errorf(L, "%s: precision \"bf16\" needs device=\"cuda\" (the cpu trains in fp32)", fn);
  return p;
}

static int l_load(lua_State *L) {
  static const char *const keys[] = {"device", "dtype", "rope", "recompute", "precision", NULL};
  lua_settop(L, 2);
  const char *dir = luaL_checkstring(L, 1);
  int opts = opts_arg(L, 2, "pose.load", keys);
  pose_device dev = opt_device(L, opts);
  pose_recompute rec = opt_recompute(L, opts, "pose.load");
  pose_precision prec = opt_precision(L, opts, dev, "pose.load");
  const char *dts = pose_lua_opt_str(L, opts, "dtype", dev.type == POSE_CPU ? "f32" : "bf16");
  pose_dtype dt;
  if (pose_dtype_parse(dts, &dt) || !pose_dtype_is_float(dt))
    pose_lua_errorf(L, "pose.load: unknown dtype '%s' (f32, bf16, f16)", dts);
  if (dt != POSE_F32 && dev.type == POSE_CPU)
    pose_lua_errorf(L, "pose.load: dtype '%s' is not supported on the cpu (the CPU path computes in f32)", dts);
  if (dt != POSE_BF16 && dev.type != POSE_CPU)
    pose_lua_errorf(L, "pose.load: dtype '%s' is not supported on cuda (the GPU computes in bf16 with fp32 master "
                    "weights)", dts);
  cJSON *rope = NULL;
  if (opts) {
    lua_getfield(L, opts, "rope");
    if (!lua_isnil(L, -1)) rope = table_json(L, -1, "pose.load", "rope");
  }
  lmodel *u = new_udata(L);
  POSE_LUA_TRY(L, pose_model_load(dir, rope, dev, &u->m));
  POSE_LUA_TRY(L, pose_model_set_recompute(u->m, rec));
  POSE_LUA_TRY(L, pose_model_set_precision(u->m, prec));
  push_config(L, lua_gettop(L));
  return 1;
}

static int l_init(lua_State *L) {
  static const char *const keys[] = {"seed", "device", "recompute", "precision", NULL};
  lua_settop(L, 2); /* the JSON anchor goes above the arguments */
  cJSON *cfg = table_json(L, 1, "pose.init", "config");
  int opts = opts_arg(L, 2, "pose.init", keys);
  lua_Integer seed = pose_lua_opt_int(L, opts, "seed", 0);
  pose_device dev = opt_device(L, opts);
  pose_recompute rec = opt_recompute(L, opts, "pose.init");
  pose_precision prec = opt_precision(L, opts, dev, "pose.init");
  lmodel *u = new_udata(L);
  POSE_LUA_TRY(L, pose_model_init(cfg, (uint64_t)seed, dev, &u->m));
  POSE_LUA_TRY(L, pose_model_set_recompute(u->m, rec));
  POSE_LUA_TRY(L, pose_model_set_precision(u->m, prec));
  push_config(L, lua_gettop(L));
  return 1;
}

/* ---- methods ----------------------------------------------------------------------------------------------- */

static int m_forward(lua_State *L) {
  static const char *const keys[] = {"positions", NULL};
  pose_model *m = pose_lua_check_model(L, 1);
  int opts = opts_arg(L, 3, "m:forward", keys);
  rows ids = check_rows(L, 2, "m:forward", "ids");
  const int64_t *pos = opt_rows(L, opts, "positions", "m:forward", &ids);
  int64_t shape[3] = {ids.B, ids.T, pose_model_vocab(m)};
  pose_tensor *out;
  POSE_LUA_TRY(L, pose_tensor_zeros(&out, POSE_F32, POSE_DEVICE_CPU, 3, shape));
  pose_lua_push_tensor(L, out);
  POSE_LUA_TRY(L, pose_model_forward(m, ids.p, pos, ids.B, ids.T, pose_tensor_data(out)));
  return 1;
}

static pose_tensor *nll_common(lua_State *L, const char *fn) {
  static const char *const keys[] = {"positions", "targets", NULL};
  pose_model *m = pose_lua_check_model(L, 1);
  int opts = opts_arg(L, 3, fn, keys);
  rows ids = check_rows(L, 2, fn, "ids");
  const int64_t *pos = opt_rows(L, opts, "positions", fn, &ids);
  const int64_t *tgt = opt_rows(L, opts, "targets", fn, &ids);
  int64_t shape[2] = {ids.B, ids.T - 1};
  pose_tensor *out;
  POSE_LUA_TRY(L, pose_tensor_zeros(&out, POSE_F32, POSE_DEVICE_CPU, 2, shape));
  pose_lua_push_tensor(L, out);
  POSE_LUA_TRY(L, pose_model_nll(m, ids.p, pos, tgt, ids.B, ids.T, pose_tensor_data(out)));
  /* leave the count of scored targets below the tensor for m:loss */
  const int64_t *y = tgt ? tgt : ids.p;
  lua_Integer n = 0;
  for (int64_t b = 0; b < ids.B; b++)
    for (int64_t t = 1; t < ids.T; t++) n += y[b * ids.T + t] != POSE_IGNORE_INDEX;
  lua_pushinteger(L, n);
  return out;
}

static int m_nll(lua_State *L) {
  nll_common(L, "m:nll");
  lua_pop(L, 1);
  return 1;
}

static int m_loss(lua_State *L) {
  pose_tensor *t = nll_common(L, "m:loss");
  lua_Integer n = lua_tointeger(L, -1);
  if (n == 0) pose_lua_errorf(L, "m:loss: no scored targets (every target is -100 or the rows have one token)");
  const float *v = pose_tensor_data(t);
  double s = 0;
  for (int64_t i = 0; i < t->numel; i++) s += v[i]; /* ignored targets hold 0 */
  lua_pushnumber(L, s / (double)n);
  return 1;
}

static int m_generate(lua_State *L) {
  static const char *const keys[] = {"max_new_tokens", "temperature", "top_p", "seed", "positions", "eos", NULL};
  pose_model *m = pose_lua_check_model(L, 1);
  int opts = opts_arg(L, 3, "m:generate", keys);
  rows ids = check_rows(L, 2, "m:generate", "prompt");
  const int64_t *pos = opt_rows(L, opts, "positions", "m:generate", &ids);
  pose_generate_opts o;
  pose_generate_defaults(&o);
  lua_Integer mx = pose_lua_opt_int(L, opts, "max_new_tokens", o.max_new_tokens);
  if (mx < 0 || mx > (1 << 24)) pose_lua_errorf(L, "m:generate: max_new_tokens must be in [0, 2^24] (got %lld)", (long long)mx);
  o.max_new_tokens = mx;
  o.temperature = pose_lua_opt_num(L, opts, "temperature", 0);
  o.top_p = pose_lua_opt_num(L, opts, "top_p", 1);
  o.seed = (uint64_t)pose_lua_opt_int(L, opts, "seed", 0);
  o.eos = pose_lua_opt_int(L, opts, "eos", -1);
  int64_t *out = lua_newuserdatauv(L, sizeof(int64_t) * (size_t)(ids.B * (mx ? mx : 1) + ids.B), 0);
  int64_t *n_out = out + ids.B * (mx ? mx : 1);
  POSE_LUA_TRY(L, pose_model_generate(m, ids.p, pos, ids.B, ids.T, &o, out, n_out));
  lua_createtable(L, (int)ids.B, 0);
  for (int64_t b = 0; b < ids.B; b++) {
    lua_createtable(L, (int)n_out[b], 0);
    for (int64_t k = 0; k < n_out[b]; k++) {
      lua_pushinteger(L, out[b * mx + k]);
      lua_rawseti(L, -2, k + 1);
    }
    lua_rawseti(L, -2, b + 1);
  }
  if (ids.ndim == 1) lua_rawgeti(L, -1, 1); /* one row in, one flat table out */
  return 1;
}

static int m_save(lua_State *L) {
  static const char *const keys[] = {"dtype", NULL};
  pose_model *m = pose_lua_check_model(L, 1);
  const char *dir = luaL_checkstring(L, 2);
  int opts = opts_arg(L, 3, "m:save", keys);
  const char *dts = pose_lua_opt_str(L, opts, "dtype", "f32");
  pose_dtype dt;
  if (pose_dtype_parse(dts, &dt) || !pose_dtype_is_float(dt))
    pose_lua_errorf(L, "m:save: unknown dtype '%s' (f32, bf16, f16)", dts);
  POSE_LUA_TRY(L, pose_model_save(m, dir, dt));
  return 0;
}

static int m_set_rope(lua_State *L) {
  lua_settop(L, 2);
  pose_model *m = pose_lua_check_model(L, 1);
  cJSON *r = table_json(L, 2, "m:set_rope", "the rope table");
  POSE_LUA_TRY(L, pose_model_set_rope(m, r));
  push_config(L, 1);
  return 0;
}

static int m_num_params(lua_State *L) {
  lua_pushinteger(L, pose_model_numel(pose_lua_check_model(L, 1)));
  return 1;
}

static int m_params(lua_State *L) {
  pose_model *m = pose_lua_check_model(L, 1);
  size_t n = pose_model_num_params(m);
  lua_createtable(L, (int)n, 0);
  for (size_t i = 0; i < n; i++) {
    const pose_param *p = pose_model_param_info(m, i);
    lua_createtable(L, 0, 3);
    lua_pushstring(L, p->name);
    lua_setfield(L, -2, "name");
    lua_createtable(L, p->ndim, 0);
    for (int d = 0; d < p->ndim; d++) { lua_pushinteger(L, p->shape[d]); lua_rawseti(L, -2, d + 1); }
    lua_setfield(L, -2, "shape");
    lua_pushboolean(L, p->decay);
    lua_setfield(L, -2, "decay");
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  return 1;
}

static int m_param(lua_State *L) {
  pose_model *m = pose_lua_check_model(L, 1);
  const char *name = luaL_checkstring(L, 2);
  for (size_t i = 0; i < pose_model_num_params(m); i++) {
    const pose_param *p = pose_model_param_info(m, i);
    if (strcmp(p->name, name)) continue;
    pose_tensor *t;
    POSE_LUA_TRY(L, pose_tensor_zeros(&t, POSE_F32, POSE_DEVICE_CPU, p->ndim, p->shape));
    pose_lua_push_tensor(L, t);
    POSE_LUA_TRY(L, pose_model_param_get(m, i, pose_tensor_data(t)));
    return 1;
  }
  pose_lua_errorf(L, "m:param: no parameter named '%s'", name);
}

static int m_device(lua_State *L) {
  char buf[32];
  pose_device_format(pose_model_device(pose_lua_check_model(L, 1)), buf, sizeof buf);
  lua_pushstring(L, buf);
  return 1;
}

static int m_precision(lua_State *L) {
  lua_pushstring(L, pose_precision_name(pose_model_get_precision(pose_lua_check_model(L, 1))));
  return 1;
}

static int m_set_recompute(lua_State *L) {
  pose_model *m = pose_lua_check_model(L, 1);
  pose_recompute r;
  if (pose_recompute_parse(luaL_checkstring(L, 2), &r) != POSE_OK)
    pose_lua_errorf(L, "m:set_recompute: %s", pose_error_message());
  POSE_LUA_TRY(L, pose_model_set_recompute(m, r));
  return 0;
}

static int m_recompute(lua_State *L) {
  lua_pushstring(L, pose_recompute_name(pose_model_get_recompute(pose_lua_check_model(L, 1))));
  return 1;
}

static int m_memory_plan(lua_State *L) {
  pose_model *m = pose_lua_check_model(L, 1);
  lua_Integer B = luaL_checkinteger(L, 2), T = luaL_checkinteger(L, 3);
  int opts = lua_isnoneornil(L, 4) ? 0 : 4;
  if (opts) {
    luaL_checktype(L, 4, LUA_TTABLE);
    static const char *const keys[] = {"train", "recompute", NULL};
    pose_lua_check_keys(L, 4, "m:memory_plan", keys);
  }
  int train = opts ? pose_lua_opt_bool(L, opts, "train", 1) : 1;
  pose_recompute r = pose_model_get_recompute(m);
  if (opts) {
    const char *s = pose_lua_opt_str(L, opts, "recompute", pose_recompute_name(r));
    if (pose_recompute_parse(s, &r) != POSE_OK) pose_lua_errorf(L, "m:memory_plan: %s", pose_error_message());
  }
  pose_memory_plan p;
  if (pose_model_memory_plan(m, (int64_t)B, (int64_t)T, train, r, &p) != POSE_OK)
    pose_lua_errorf(L, "m:memory_plan: %s", pose_error_message());
  lua_createtable(L, 0, 8);
  const struct { const char *k; size_t v; } f[] = {
      {"weights", p.weights},         {"grads", p.grads}, {"optimizer", p.optimizer}, {"activations", p.activations},
      {"temporary", p.temporary},     {"total", p.total}, {"host_pinned", p.host_pinned}};
  for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
    lua_pushinteger(L, (lua_Integer)f[i].v);
    lua_setfield(L, -2, f[i].k);
  }
  lua_pushinteger(L, (lua_Integer)p.chunk_rows);
  lua_setfield(L, -2, "chunk_rows");
  return 1;
}

static int m_gc(lua_State *L) {
  lmodel *u = luaL_checkudata(L, 1, POSE_MODEL_MT);
  pose_model_free(u->m);
  u->m = NULL;
  return 0;
}

static int m_tostring(lua_State *L) {
  lmodel *u = luaL_checkudata(L, 1, POSE_MODEL_MT);
  if (!u->m) { lua_pushstring(L, "pose.model(freed)"); return 1; }
  const cJSON *c = pose_model_config(u->m);
  const cJSON *mt = cJSON_GetObjectItemCaseSensitive(c, "model_type");
  char buf[160], dev[32];
  pose_device_format(pose_model_device(u->m), dev, sizeof dev);
  snprintf(buf, sizeof buf, "pose.model(%s, %.3gM params, %s)", cJSON_IsString(mt) ? mt->valuestring : "?",
           (double)pose_model_numel(u->m) / 1e6, dev);
  lua_pushstring(L, buf);
  return 1;
}

/* __index: methods first, then `config` */
static int m_index(lua_State *L) {
  lua_pushvalue(L, 2);
  if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL) return 1;
  lua_pop(L, 1);
  const char *k = lua_tostring(L, 2);
  if (k && !strcmp(k, "config")) {
    pose_lua_check_model(L, 1);
    lua_getiuservalue(L, 1, 1);
    return 1;
  }
  return 0;
}

void pose_lua_open_model(lua_State *L) {
  static const luaL_Reg methods[] = {{"forward", m_forward},     {"nll", m_nll},           {"loss", m_loss},
                                     {"generate", m_generate},   {"save", m_save},         {"set_rope", m_set_rope},
                                     {"num_params", m_num_params}, {"params", m_params},   {"param", m_param},
                                     {"device", m_device},       {"set_recompute", m_set_recompute},
                                     {"recompute", m_recompute}, {"memory_plan", m_memory_plan},
                                     {"precision", m_precision},
                                     {NULL, NULL}};
  luaL_newmetatable(L, POSE_MODEL_MT);
  lua_newtable(L);
  luaL_setfuncs(L, methods, 0);
  lua_pushcclosure(L, m_index, 1);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, m_gc);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, m_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
  static const luaL_Reg fns[] = {{"load", l_load}, {"init", l_init}, {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
}
