/* Lua bindings of tensors: pose.tensor, pose.zeros, pose.randn, pose.rand and the tensor methods. Indices in Lua
 * are 1-based, as in Lua tables; t:totable() gives nested tables in the same order. */
#include <stdio.h>
#include <string.h>

#include "lpose.h"

static pose_dtype check_dtype(lua_State *L, int idx, pose_dtype def) {
  if (lua_isnoneornil(L, idx)) return def;
  const char *s = luaL_checkstring(L, idx);
  pose_dtype dt;
  if (pose_dtype_parse(s, &dt)) pose_lua_errorf(L, "pose: unknown dtype '%s' (expected f32, bf16, f16, i32 or i64)", s);
  return dt;
}

static pose_device check_device(lua_State *L, int idx) {
  pose_device d = POSE_DEVICE_CPU;
  if (lua_isnoneornil(L, idx)) return d;
  POSE_LUA_TRY(L, pose_device_parse(luaL_checkstring(L, idx), &d));
  return d;
}

static int read_shape(lua_State *L, int idx, int64_t *shape) {
  luaL_checktype(L, idx, LUA_TTABLE);
  int n = (int)lua_rawlen(L, idx);
  if (n > POSE_MAX_DIMS) pose_lua_errorf(L, "pose: shape has %d dimensions (max %d)", n, POSE_MAX_DIMS);
  for (int i = 0; i < n; i++) {
    lua_rawgeti(L, idx, i + 1);
    int ok;
    lua_Integer v = lua_tointegerx(L, -1, &ok);
    if (!ok || v < 0) pose_lua_errorf(L, "pose: shape entry %d must be a non-negative integer", i + 1);
    shape[i] = v;
    lua_pop(L, 1);
  }
  return n;
}

/* pose.tensor(nested_table, dtype?) */
static int l_tensor(lua_State *L) {
  pose_dtype dt = check_dtype(L, 2, POSE_F32);
  if (lua_type(L, 1) == LUA_TNUMBER) { /* a scalar */
    lua_Number v = lua_tonumber(L, 1);
    pose_tensor *t;
    POSE_LUA_TRY(L, pose_tensor_zeros(&t, dt, POSE_DEVICE_CPU, 0, NULL));
    pose_lua_push_tensor(L, t);
    POSE_LUA_TRY(L, pose_tensor_fill(t, v));
    return 1;
  }
  if (!lua_istable(L, 1)) pose_lua_errorf(L, "pose.tensor: expected a nested table of numbers, got %s", luaL_typename(L, 1));
  pose_lua_push_tensor(L, pose_lua_table_to_tensor(L, 1, dt));
  return 1;
}

/* pose.zeros(shape, dtype?, device?) */
static int l_zeros(lua_State *L) {
  int64_t shape[POSE_MAX_DIMS];
  int nd = read_shape(L, 1, shape);
  pose_dtype dt = check_dtype(L, 2, POSE_F32);
  pose_device dev = check_device(L, 3);
  pose_tensor *t;
  POSE_LUA_TRY(L, pose_tensor_zeros(&t, dt, dev, nd, shape));
  pose_lua_push_tensor(L, t);
  return 1;
}

/* pose.randn(shape, {seed=, stream=, mean=, std=, dtype=, device=}) and pose.rand(shape, {seed=, stream=, lo=, hi=}) */
static int rand_common(lua_State *L, int normal) {
  static const char *const keys[] = {"seed", "stream", "mean", "std", "lo", "hi", "dtype", "device", NULL};
  int64_t shape[POSE_MAX_DIMS];
  int nd = read_shape(L, 1, shape);
  pose_lua_check_keys(L, 2, normal ? "pose.randn" : "pose.rand", keys);
  uint64_t seed = (uint64_t)pose_lua_opt_int(L, 2, "seed", 0), stream = (uint64_t)pose_lua_opt_int(L, 2, "stream", 0);
  const char *dts = pose_lua_opt_str(L, 2, "dtype", "f32"), *devs = pose_lua_opt_str(L, 2, "device", "cpu");
  pose_dtype dt;
  if (pose_dtype_parse(dts, &dt)) pose_lua_errorf(L, "pose: unknown dtype '%s'", dts);
  pose_device dev;
  POSE_LUA_TRY(L, pose_device_parse(devs, &dev));
  pose_tensor *t;
  POSE_LUA_TRY(L, pose_tensor_zeros(&t, dt, dev, nd, shape));
  pose_lua_push_tensor(L, t);
  if (normal)
    POSE_LUA_TRY(L, pose_tensor_rand_normal(t, seed, stream, pose_lua_opt_num(L, 2, "mean", 0), pose_lua_opt_num(L, 2, "std", 1)));
  else
    POSE_LUA_TRY(L, pose_tensor_rand_uniform(t, seed, stream, pose_lua_opt_num(L, 2, "lo", 0), pose_lua_opt_num(L, 2, "hi", 1)));
  return 1;
}
static int l_randn(lua_State *L) { return rand_common(L, 1); }
static int l_rand(lua_State *L) { return rand_common(L, 0); }

static int m_shape(lua_State *L) {
  pose_tensor *t = pose_lua_check_tensor(L, 1);
  lua_createtable(L, t->ndim, 0);
  for (int i = 0; i < t->ndim; i++) { lua_pushinteger(L, t->shape[i]); lua_rawseti(L, -2, i + 1); }
  return 1;
}

static int m_dtype(lua_State *L) { lua_pushstring(L, pose_dtype_name(pose_lua_check_tensor(L, 1)->dtype)); return 1; }
static int m_numel(lua_State *L) { lua_pushinteger(L, pose_lua_check_tensor(L, 1)->numel); return 1; }
static int m_ndim(lua_State *L) { lua_pushinteger(L, pose_lua_check_tensor(L, 1)->ndim); return 1; }

static int m_device(lua_State *L) {
  char buf[32];
  pose_device_format(pose_lua_check_tensor(L, 1)->device, buf, sizeof buf);
  lua_pushstring(L, buf);
  return 1;
}

/* t:to(x[, y]): each argument is a device name or a dtype name */
static int m_to(lua_State *L) {
  pose_tensor *t = pose_lua_check_tensor(L, 1);
  pose_dtype dt = t->dtype;
  pose_device dev = t->device;
  for (int i = 2; i <= lua_gettop(L); i++) {
    const char *s = luaL_checkstring(L, i);
    pose_dtype d2;
    if (pose_dtype_parse(s, &d2) == 0) dt = d2;
    else POSE_LUA_TRY(L, pose_device_parse(s, &dev));
  }
  pose_tensor *out;
  POSE_LUA_TRY(L, pose_tensor_to(t, dt, dev, &out));
  pose_lua_push_tensor(L, out);
  return 1;
}

static int m_totable(lua_State *L) {
  pose_tensor *t = pose_lua_check_tensor(L, 1);
  if (t->device.type != POSE_CPU) {
    pose_tensor *h;
    POSE_LUA_TRY(L, pose_tensor_to(t, t->dtype, POSE_DEVICE_CPU, &h));
    pose_lua_push_tensor(L, h); /* GC owns it */
    pose_lua_push_totable(L, h);
    return 1;
  }
  pose_lua_push_totable(L, t);
  return 1;
}

static void read_index(lua_State *L, pose_tensor *t, int first, int count, int64_t *idx) {
  if (count != t->ndim) pose_lua_errorf(L, "pose: tensor has %d dimensions, %d indices given", t->ndim, count);
  for (int i = 0; i < count; i++) {
    int ok;
    lua_Integer v = lua_tointegerx(L, first + i, &ok);
    if (!ok) pose_lua_errorf(L, "pose: index %d must be an integer", i + 1);
    if (v < 1 || v > t->shape[i])
      pose_lua_errorf(L, "pose: index %lld out of range 1..%lld in dimension %d", (long long)v, (long long)t->shape[i], i + 1);
    idx[i] = v - 1;
  }
}

/* t:get(i, j, ...) with 1-based indices */
static int m_get(lua_State *L) {
  pose_tensor *t = pose_lua_check_tensor(L, 1);
  int64_t idx[POSE_MAX_DIMS];
  read_index(L, t, 2, lua_gettop(L) - 1, idx);
  if (t->dtype == POSE_I64 || t->dtype == POSE_I32) {
    int64_t v;
    POSE_LUA_TRY(L, pose_tensor_get_i64(t, idx, &v));
    lua_pushinteger(L, v);
  } else {
    double v;
    POSE_LUA_TRY(L, pose_tensor_get(t, idx, &v));
    lua_pushnumber(L, v);
  }
  return 1;
}

/* t:set(i, j, ..., value) */
static int m_set(lua_State *L) {
  pose_tensor *t = pose_lua_check_tensor(L, 1);
  int top = lua_gettop(L);
  int64_t idx[POSE_MAX_DIMS];
  read_index(L, t, 2, top - 2, idx);
  lua_Number v = luaL_checknumber(L, top);
  if ((t->dtype == POSE_I32 || t->dtype == POSE_I64) && !lua_isinteger(L, top) && v != (lua_Number)(lua_Integer)v)
    pose_lua_errorf(L, "pose: %g is not an integer for a %s tensor", v, pose_dtype_name(t->dtype));
  POSE_LUA_TRY(L, pose_tensor_set(t, idx, v));
  return 0;
}

/* t:reshape{2, -1} */
static int m_reshape(lua_State *L) {
  pose_tensor *t = pose_lua_check_tensor(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  int n = (int)lua_rawlen(L, 2);
  if (n > POSE_MAX_DIMS) pose_lua_errorf(L, "pose: reshape to %d dimensions (max %d)", n, POSE_MAX_DIMS);
  int64_t shape[POSE_MAX_DIMS];
  for (int i = 0; i < n; i++) {
    lua_rawgeti(L, 2, i + 1);
    int ok;
    shape[i] = lua_tointegerx(L, -1, &ok);
    if (!ok) pose_lua_errorf(L, "pose: reshape entry %d must be an integer", i + 1);
    lua_pop(L, 1);
  }
  pose_tensor *v;
  POSE_LUA_TRY(L, pose_tensor_reshape(t, n, shape, &v));
  pose_lua_push_tensor(L, v);
  return 1;
}

/* t:slice(first, last): rows first..last (1-based, inclusive) of the first axis, as a view */
static int m_slice(lua_State *L) {
  pose_tensor *t = pose_lua_check_tensor(L, 1);
  lua_Integer a = luaL_checkinteger(L, 2), b = luaL_optinteger(L, 3, t->ndim ? t->shape[0] : 0);
  if (t->ndim < 1) pose_lua_errorf(L, "pose: cannot slice a scalar");
  if (a < 1 || b > t->shape[0] || b < a - 1)
    pose_lua_errorf(L, "pose: slice %lld..%lld out of range 1..%lld", (long long)a, (long long)b, (long long)t->shape[0]);
  pose_tensor *v;
  POSE_LUA_TRY(L, pose_tensor_slice(t, a - 1, b, &v));
  pose_lua_push_tensor(L, v);
  return 1;
}

static int m_fill(lua_State *L) {
  pose_tensor *t = pose_lua_check_tensor(L, 1);
  POSE_LUA_TRY(L, pose_tensor_fill(t, luaL_checknumber(L, 2)));
  lua_settop(L, 1);
  return 1;
}

static int m_copy(lua_State *L) { /* dst:copy(src) */
  POSE_LUA_TRY(L, pose_tensor_copy(pose_lua_check_tensor(L, 1), pose_lua_check_tensor(L, 2)));
  lua_settop(L, 1);
  return 1;
}

static int m_gc(lua_State *L) {
  pose_tensor **ud = luaL_checkudata(L, 1, POSE_TENSOR_MT);
  pose_tensor_free(*ud);
  *ud = NULL;
  return 0;
}

static int m_len(lua_State *L) {
  pose_tensor *t = pose_lua_check_tensor(L, 1);
  lua_pushinteger(L, t->ndim ? t->shape[0] : 1);
  return 1;
}

static int m_tostring(lua_State *L) {
  pose_tensor *t = pose_lua_check_tensor(L, 1);
  char shape[96], dev[32];
  pose_tensor_shape_str(t, shape, sizeof shape);
  pose_device_format(t->device, dev, sizeof dev);
  lua_pushfstring(L, "pose.tensor(%s, %s, %s)", shape, pose_dtype_name(t->dtype), dev);
  return 1;
}

void pose_lua_open_tensor(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"shape", m_shape}, {"dtype", m_dtype}, {"device", m_device}, {"to", m_to}, {"totable", m_totable},
      {"numel", m_numel}, {"ndim", m_ndim}, {"get", m_get}, {"set", m_set}, {"reshape", m_reshape},
      {"slice", m_slice}, {"fill", m_fill}, {"copy", m_copy}, {NULL, NULL}};
  if (luaL_newmetatable(L, POSE_TENSOR_MT)) {
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, m_gc); lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, m_len); lua_setfield(L, -2, "__len");
    lua_pushcfunction(L, m_tostring); lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);
  static const luaL_Reg fns[] = {{"tensor", l_tensor}, {"zeros", l_zeros}, {"randn", l_randn}, {"rand", l_rand}, {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
}
