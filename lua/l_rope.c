/* Lua bindings of RoPE schemes: pose.rope{...} -> handle with inv_freq, attention_factor, cos_sin, update, type,
 * dim, base, config. The keys are those of a config.json rope_scaling dict plus rope_theta (alias base), dim (alias
 * head_dim with partial_rotary_factor), max_position_embeddings and pose's extensions (see core/rope_config.c). */
#include <stdio.h>
#include <string.h>

#include "lpose.h"
#include "rope.h"

#define ROPE_MT "pose.rope"

static pose_rope *check_rope(lua_State *L, int idx) {
  pose_rope **ud = luaL_checkudata(L, idx, ROPE_MT);
  if (!*ud) pose_lua_errorf(L, "pose: rope used after it was freed");
  return *ud;
}

/* pose.rope{rope_type=, factor=, rope_theta=, dim=, ...} */
static int l_rope(lua_State *L) {
  if (!lua_istable(L, 1)) pose_lua_errorf(L, "pose.rope: expected a table of rope keys, got %s", luaL_typename(L, 1));
  cJSON *params = pose_lua_to_json(L, 1, 0);
  pose_rope **ud = lua_newuserdatauv(L, sizeof *ud, 0);
  *ud = NULL;
  luaL_setmetatable(L, ROPE_MT);
  pose_status st = pose_rope_from_json(params, ud);
  cJSON_Delete(params);
  if (st) pose_lua_fail(L, st);
  return 1;
}

static int m_inv_freq(lua_State *L) {
  pose_rope *r = check_rope(L, 1);
  int64_t h = pose_rope_dim(r) / 2;
  pose_tensor *t;
  POSE_LUA_TRY(L, pose_tensor_from_data(&t, POSE_F32, 1, &h, pose_rope_inv_freq(r)));
  pose_lua_push_tensor(L, t);
  return 1;
}

static int m_attention_factor(lua_State *L) {
  lua_pushnumber(L, pose_rope_attention_factor(check_rope(L, 1)));
  return 1;
}

/* r:cos_sin(positions) -> cos, sin of shape positions.shape .. {dim/2}, attention factor applied */
static int m_cos_sin(lua_State *L) {
  pose_rope *r = check_rope(L, 1);
  pose_tensor *pos;
  if (lua_type(L, 2) == LUA_TNUMBER) {
    if (!lua_isinteger(L, 2)) pose_lua_errorf(L, "pose: rope:cos_sin: position %g is not an integer", lua_tonumber(L, 2));
    int64_t p = lua_tointeger(L, 2);
    POSE_LUA_TRY(L, pose_tensor_from_data(&pos, POSE_I64, 0, NULL, &p));
  } else {
    pos = pose_lua_check_ids(L, 2, "rope:cos_sin positions");
  }
  pose_lua_push_tensor(L, pos); /* anchored: freed by the GC even if an error follows */
  if (pos->ndim + 1 > POSE_MAX_DIMS)
    pose_lua_errorf(L, "pose: rope:cos_sin: positions have %d dimensions (at most %d)", pos->ndim, POSE_MAX_DIMS - 1);
  int64_t shape[POSE_MAX_DIMS];
  for (int i = 0; i < pos->ndim; i++) shape[i] = pos->shape[i];
  shape[pos->ndim] = pose_rope_dim(r) / 2;
  pose_tensor *c, *s;
  POSE_LUA_TRY(L, pose_tensor_zeros(&c, POSE_F32, POSE_DEVICE_CPU, pos->ndim + 1, shape));
  pose_lua_push_tensor(L, c);
  POSE_LUA_TRY(L, pose_tensor_zeros(&s, POSE_F32, POSE_DEVICE_CPU, pos->ndim + 1, shape));
  pose_lua_push_tensor(L, s);
  pose_rope_cos_sin(r, pose_tensor_data(pos), pos->numel, pose_tensor_data(c), pose_tensor_data(s));
  return 2;
}

/* r:update(max_pos) or r:update(positions): the dynamic / longrope state machine for a forward whose largest
 * position id is max_pos (or the largest of the batch's positions) */
static int m_update(lua_State *L) {
  pose_rope *r = check_rope(L, 1);
  if (lua_istable(L, 2) || pose_lua_test_tensor(L, 2)) {
    pose_tensor *pos = pose_lua_check_ids(L, 2, "rope:update positions");
    pose_lua_push_tensor(L, pos); /* anchored for the GC */
    pose_rope_update_positions(r, pose_tensor_data(pos), pos->numel);
    return 0;
  }
  int ok;
  lua_Integer p = lua_tointegerx(L, 2, &ok);
  if (!ok) pose_lua_errorf(L, "pose: rope:update: max_pos must be an integer (or positions), got %s", luaL_typename(L, 2));
  pose_rope_update(r, p);
  return 0;
}

static int m_type(lua_State *L) { lua_pushstring(L, pose_rope_type_name(check_rope(L, 1))); return 1; }
static int m_dim(lua_State *L) { lua_pushinteger(L, pose_rope_dim(check_rope(L, 1))); return 1; }
static int m_base(lua_State *L) { lua_pushnumber(L, pose_rope_base(check_rope(L, 1))); return 1; }

static int m_config(lua_State *L) {
  cJSON *j = pose_rope_to_json(check_rope(L, 1));
  if (!j) pose_lua_errorf(L, "pose: out of memory");
  pose_lua_push_json(L, j);
  cJSON_Delete(j);
  return 1;
}

static int m_tostring(lua_State *L) {
  pose_rope *r = check_rope(L, 1);
  cJSON *j = pose_rope_to_json(r);
  const cJSON *f = j ? cJSON_GetObjectItemCaseSensitive(j, "factor") : NULL;
  char buf[256];
  int n = snprintf(buf, sizeof buf, "pose.rope(%s, dim=%d, theta=%.10g", pose_rope_type_name(r), pose_rope_dim(r),
                   cJSON_GetObjectItemCaseSensitive(j, "rope_theta")->valuedouble);
  if (f && n > 0 && (size_t)n < sizeof buf) n += snprintf(buf + n, sizeof buf - (size_t)n, ", factor=%.10g", f->valuedouble);
  if (n > 0 && (size_t)n < sizeof buf)
    snprintf(buf + n, sizeof buf - (size_t)n, ", A=%.8g)", pose_rope_attention_factor(r));
  cJSON_Delete(j);
  lua_pushstring(L, buf);
  return 1;
}

static int m_gc(lua_State *L) {
  pose_rope **ud = luaL_checkudata(L, 1, ROPE_MT);
  pose_rope_free(*ud);
  *ud = NULL;
  return 0;
}

void pose_lua_open_rope(lua_State *L) {
  static const luaL_Reg methods[] = {{"inv_freq", m_inv_freq}, {"attention_factor", m_attention_factor},
                                     {"cos_sin", m_cos_sin},   {"update", m_update},
                                     {"type", m_type},         {"dim", m_dim},
                                     {"base", m_base},         {"config", m_config},
                                     {NULL, NULL}};
  if (luaL_newmetatable(L, ROPE_MT)) {
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, m_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, m_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);
  lua_pushcfunction(L, l_rope);
  lua_setfield(L, -2, "rope");
}
