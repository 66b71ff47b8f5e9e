/* Lua bindings of the trainer (core/trainer.h):
 *   pose.trainer(m, {lr=, betas={b1, b2}, eps=, weight_decay=, clip=, warmup=, schedule=, steps=, accum=, sr_seed=,
 *                    fused_update=}) -> tr
 *     fused_update = true (cuda models, accum 1, clip 0): each layer's AdamW runs inside the backward on a second
 *     stream, gradients in two layer slots (core/trainer.h); a cpu model raises an error.
 *   tr:step{ids=, positions=?, targets=?} -> loss (before the update), lr, grad_norm
 *   tr:lr() (the lr of the next step)  tr:steps() (steps done)  tr:opts() -> table
 *   tr:save(dir, {user=string})  tr:load(dir) -> user string ("" when none was saved)
 * ids/positions/targets: [accum*B, T] tensors or nested tables of integers; the rows are split into accum
 * micro-batches of B consecutive rows. The trainer keeps its model alive (user value of the userdata). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lpose.h"
#include "trainer.h"

#define POSE_TRAINER_MT "pose.trainer"

/* The model's Lua binding (lua/l_model.c) lands separately: referenced weakly until it is linked in. */
pose_model *pose_lua_check_model(lua_State *L, int idx);
#pragma weak pose_lua_check_model

typedef struct {
  pose_trainer *t;
} ltrainer;

static pose_trainer *check_trainer(lua_State *L, int idx) {
  ltrainer *u = luaL_checkudata(L, idx, POSE_TRAINER_MT);
  if (!u->t) pose_lua_errorf(L, "pose: trainer used after it was freed");
  return u->t;
}

static const char *const trainer_keys[] = {"lr",    "betas",    "eps",   "weight_decay", "clip",
                                           "warmup", "schedule", "steps", "accum",        "sr_seed",
                                           "fused_update", NULL};

static void read_betas(lua_State *L, int opts, pose_trainer_opts *o) {
  if (lua_getfield(L, opts, "betas") == LUA_TNIL) {
    lua_pop(L, 1);
    return;
  }
  if (!lua_istable(L, -1) || lua_rawlen(L, -1) != 2)
    pose_lua_errorf(L, "pose.trainer: betas must be a table of two numbers {beta1, beta2}");
  double b[2];
  for (int i = 0; i < 2; i++) {
    lua_rawgeti(L, -1, i + 1);
    if (lua_type(L, -1) != LUA_TNUMBER) pose_lua_errorf(L, "pose.trainer: betas[%d] must be a number", i + 1);
    b[i] = lua_tonumber(L, -1);
    if (!(b[i] >= 0 && b[i] < 1)) pose_lua_errorf(L, "pose.trainer: betas[%d] = %g is outside [0, 1)", i + 1, b[i]);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  o->beta1 = b[0];
  o->beta2 = b[1];
}

/* pose.trainer(m, opts?) */
static int l_trainer(lua_State *L) {
  if (!pose_lua_check_model) pose_lua_errorf(L, "pose.trainer: this build has no model bindings");
  pose_model *m = pose_lua_check_model(L, 1);
  int opts = lua_isnoneornil(L, 2) ? 0 : 2;
  if (opts) luaL_checktype(L, 2, LUA_TTABLE);
  pose_lua_check_keys(L, opts, "pose.trainer", trainer_keys);
  pose_trainer_opts o;
  pose_trainer_defaults(&o);
  o.lr = pose_lua_opt_num(L, opts, "lr", o.lr);
  o.eps = pose_lua_opt_num(L, opts, "eps", o.eps);
  o.weight_decay = pose_lua_opt_num(L, opts, "weight_decay", o.weight_decay);
  o.clip = pose_lua_opt_num(L, opts, "clip", o.clip);
  o.warmup = pose_lua_opt_int(L, opts, "warmup", o.warmup);
  o.steps = pose_lua_opt_int(L, opts, "steps", o.steps);
  lua_Integer accum = pose_lua_opt_int(L, opts, "accum", o.accum);
  if (accum < 1 || accum > 1 << 20) pose_lua_errorf(L, "pose.trainer: accum must be >= 1 (got %lld)", (long long)accum);
  o.accum = (int)accum;
  o.sr_seed = (uint64_t)pose_lua_opt_int(L, opts, "sr_seed", 0); /* pure-bf16 cuda models: stochastic rounding key */
  o.fused_update = pose_lua_opt_bool(L, opts, "fused_update", 0);
  if (opts) read_betas(L, opts, &o);
  const char *sched = pose_lua_opt_str(L, opts, "schedule", "constant");
  POSE_LUA_TRY(L, pose_schedule_parse(sched, &o.schedule));
  ltrainer *u = lua_newuserdatauv(L, sizeof *u, 1);
  u->t = NULL;
  luaL_setmetatable(L, POSE_TRAINER_MT);
  lua_pushvalue(L, 1); /* keep the model alive as long as the trainer */
  lua_setiuservalue(L, -2, 1);
  POSE_LUA_TRY(L, pose_trainer_new(m, &o, &u->t));
  return 1;
}

/* Reads field `key` of the table at idx as ids (anchored on the stack as a tensor userdata, freed by the GC);
 * NULL when absent and optional. */
static pose_tensor *field_ids(lua_State *L, int idx, const char *key, int required) {
  if (lua_getfield(L, idx, key) == LUA_TNIL) {
    lua_pop(L, 1);
    if (required) pose_lua_errorf(L, "tr:step: '%s' is required", key);
    return NULL;
  }
  pose_tensor *t = pose_lua_check_ids(L, -1, key);
  lua_pop(L, 1);
  pose_lua_push_tensor(L, t);
  if (t->ndim != 2)
    pose_lua_errorf(L, "tr:step: %s must be 2-D [rows, T], got %d dimensions", key, t->ndim);
  return t;
}

static const char *const step_keys[] = {"ids", "positions", "targets", NULL};

/* tr:step{ids=, positions=?, targets=?} -> loss, lr, grad_norm */
static int l_step(lua_State *L) {
  pose_trainer *t = check_trainer(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  pose_lua_check_keys(L, 2, "tr:step", step_keys);
  pose_tensor *ids = field_ids(L, 2, "ids", 1);
  pose_tensor *pos = field_ids(L, 2, "positions", 0);
  pose_tensor *tg = field_ids(L, 2, "targets", 0);
  int64_t N = ids->shape[0], T = ids->shape[1];
  int accum = pose_trainer_get_opts(t)->accum;
  if (pos && !pose_tensor_same_shape(pos, ids))
    pose_lua_errorf(L, "tr:step: positions are [%lld, %lld] but ids are [%lld, %lld]", (long long)pos->shape[0],
                    (long long)pos->shape[1], (long long)N, (long long)T);
  if (tg && !pose_tensor_same_shape(tg, ids))
    pose_lua_errorf(L, "tr:step: targets are [%lld, %lld] but ids are [%lld, %lld]", (long long)tg->shape[0],
                    (long long)tg->shape[1], (long long)N, (long long)T);
  if (N < 1 || N % accum != 0)
    pose_lua_errorf(L, "tr:step: ids has %lld rows, which is not a positive multiple of accum=%d", (long long)N, accum);
  double loss, lr, norm;
  POSE_LUA_TRY(L, pose_trainer_step(t, pose_tensor_data(ids), pos ? pose_tensor_data(pos) : NULL,
                                    tg ? pose_tensor_data(tg) : NULL, N / accum, T, &loss, &lr, &norm));
  lua_pushnumber(L, loss);
  lua_pushnumber(L, lr);
  lua_pushnumber(L, norm);
  return 3;
}

static int l_lr(lua_State *L) {
  pose_trainer *t = check_trainer(L, 1);
  lua_pushnumber(L, pose_trainer_lr_at(t, pose_trainer_steps_done(t)));
  return 1;
}

static int l_steps(lua_State *L) {
  lua_pushinteger(L, pose_trainer_steps_done(check_trainer(L, 1)));
  return 1;
}

static int l_opts(lua_State *L) {
  const pose_trainer_opts *o = pose_trainer_get_opts(check_trainer(L, 1));
  lua_newtable(L);
  lua_pushnumber(L, o->lr); lua_setfield(L, -2, "lr");
  lua_createtable(L, 2, 0);
  lua_pushnumber(L, o->beta1); lua_rawseti(L, -2, 1);
  lua_pushnumber(L, o->beta2); lua_rawseti(L, -2, 2);
  lua_setfield(L, -2, "betas");
  lua_pushnumber(L, o->eps); lua_setfield(L, -2, "eps");
  lua_pushnumber(L, o->weight_decay); lua_setfield(L, -2, "weight_decay");
  lua_pushnumber(L, o->clip); lua_setfield(L, -2, "clip");
  lua_pushinteger(L, o->warmup); lua_setfield(L, -2, "warmup");
  lua_pushinteger(L, o->steps); lua_setfield(L, -2, "steps");
  lua_pushstring(L, pose_schedule_name(o->schedule)); lua_setfield(L, -2, "schedule");
  lua_pushinteger(L, o->accum); lua_setfield(L, -2, "accum");
  lua_pushboolean(L, o->fused_update); lua_setfield(L, -2, "fused_update");
  return 1;
}

static const char *const save_keys[] = {"user", NULL};

/* tr:save(dir, {user=string}) */
static int l_save(lua_State *L) {
  pose_trainer *t = check_trainer(L, 1);
  const char *dir = luaL_checkstring(L, 2);
  int opts = lua_isnoneornil(L, 3) ? 0 : 3;
  if (opts) luaL_checktype(L, 3, LUA_TTABLE);
  pose_lua_check_keys(L, opts, "tr:save", save_keys);
  size_t len = 0;
  const char *user = NULL;
  if (opts && lua_getfield(L, opts, "user") != LUA_TNIL) {
    if (lua_type(L, -1) != LUA_TSTRING) pose_lua_errorf(L, "tr:save: user must be a string, got %s", luaL_typename(L, -1));
    user = lua_tolstring(L, -1, &len); /* stays referenced by the options table */
  }
  POSE_LUA_TRY(L, pose_trainer_save_state(t, dir, user, len));
  return 0;
}

/* tr:load(dir) -> user string */
static int l_load(lua_State *L) {
  pose_trainer *t = check_trainer(L, 1);
  const char *dir = luaL_checkstring(L, 2);
  void *user = NULL;
  size_t len = 0;
  POSE_LUA_TRY(L, pose_trainer_load_state(t, dir, &user, &len));
  lua_pushlstring(L, user ? user : "", len);
  free(user);
  return 1;
}

static int l_gc(lua_State *L) {
  ltrainer *u = luaL_checkudata(L, 1, POSE_TRAINER_MT);
  pose_trainer_free(u->t);
  u->t = NULL;
  return 0;
}

static int l_tostring(lua_State *L) {
  ltrainer *u = luaL_checkudata(L, 1, POSE_TRAINER_MT);
  if (!u->t) {
    lua_pushstring(L, "pose.trainer (freed)");
    return 1;
  }
  const pose_trainer_opts *o = pose_trainer_get_opts(u->t);
  char buf[256];
  snprintf(buf, sizeof buf, "pose.trainer (step %lld, lr %g, %s, accum %d)", (long long)pose_trainer_steps_done(u->t),
           o->lr, pose_schedule_name(o->schedule), o->accum);
  lua_pushstring(L, buf);
  return 1;
}

void pose_lua_open_trainer(lua_State *L) {
  static const luaL_Reg methods[] = {{"step", l_step}, {"lr", l_lr},     {"steps", l_steps}, {"opts", l_opts},
                                     {"save", l_save}, {"load", l_load}, {NULL, NULL}};
  if (luaL_newmetatable(L, POSE_TRAINER_MT)) {
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, l_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);
  lua_pushcfunction(L, l_trainer);
  lua_setfield(L, -2, "trainer");
}
