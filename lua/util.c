/* Helpers shared by the binding files: error raising, tensor userdata, tables <-> tensors, option fields. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lpose.h"

_Noreturn void pose_lua_fail(lua_State *L, pose_status st) {
  (void)st;
  lua_pushfstring(L, "pose: %s", pose_error_message());
  lua_error(L);
  abort(); /* not reached: lua_error does not return */
}

_Noreturn void pose_lua_errorf(lua_State *L, const char *fmt, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  luaL_where(L, 1);
  lua_pushstring(L, buf);
  lua_concat(L, 2);
  lua_error(L);
  abort();
}

void pose_lua_push_tensor(lua_State *L, pose_tensor *t) {
  pose_tensor **ud = lua_newuserdatauv(L, sizeof *ud, 0);
  *ud = t;
  luaL_setmetatable(L, POSE_TENSOR_MT);
}

pose_tensor *pose_lua_test_tensor(lua_State *L, int idx) {
  pose_tensor **ud = luaL_testudata(L, idx, POSE_TENSOR_MT);
  return ud ? *ud : NULL;
}

pose_tensor *pose_lua_check_tensor(lua_State *L, int idx) {
  pose_tensor **ud = luaL_checkudata(L, idx, POSE_TENSOR_MT);
  if (!*ud) pose_lua_errorf(L, "pose: tensor used after it was freed");
  return *ud;
}

/* Walks a nested table once to find its shape, checking every level is a proper sequence of equal length. */
static void table_shape(lua_State *L, int idx, int depth, int *ndim, int64_t *shape, int *fixed) {
  idx = lua_absindex(L, idx);
  if (depth >= POSE_MAX_DIMS) pose_lua_errorf(L, "pose.tensor: nesting deeper than %d dimensions", POSE_MAX_DIMS);
  lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
  if (*fixed > depth) {
    if (shape[depth] != n) pose_lua_errorf(L, "pose.tensor: ragged table (length %d where %d was expected at depth %d)",
                                     (int)n, (int)shape[depth], depth + 1);
  } else {
    shape[depth] = n;
    *fixed = depth + 1;
  }
  if (n == 0) { if (*ndim < depth + 1) *ndim = depth + 1; return; }
  lua_rawgeti(L, idx, 1);
  int first_is_table = lua_istable(L, -1);
  lua_pop(L, 1);
  if (!first_is_table) {
    if (*ndim && *ndim != depth + 1) pose_lua_errorf(L, "pose.tensor: ragged table (numbers and tables mixed)");
    *ndim = depth + 1;
    return;
  }
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, idx, i);
    if (!lua_istable(L, -1)) pose_lua_errorf(L, "pose.tensor: ragged table (a number where a table was expected)");
    table_shape(L, -1, depth + 1, ndim, shape, fixed);
    lua_pop(L, 1);
  }
}

static void table_fill(lua_State *L, int idx, int depth, int ndim, pose_dtype dt, char **p) {
  idx = lua_absindex(L, idx);
  lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, idx, i);
    if (depth + 1 < ndim) {
      table_fill(L, -1, depth + 1, ndim, dt, p);
    } else {
      if (lua_type(L, -1) != LUA_TNUMBER) pose_lua_errorf(L, "pose.tensor: element is a %s, not a number", luaL_typename(L, -1));
      if (dt == POSE_I64 || dt == POSE_I32) {
        lua_Integer v;
        if (lua_isinteger(L, -1)) v = lua_tointeger(L, -1);
        else {
          lua_Number x = lua_tonumber(L, -1);
          if (x != floor(x) || !isfinite(x)) pose_lua_errorf(L, "pose.tensor: %g is not an integer", x);
          v = (lua_Integer)x;
        }
        if (dt == POSE_I32) {
          if (v < INT32_MIN || v > INT32_MAX) pose_lua_errorf(L, "pose.tensor: %lld does not fit in i32", (long long)v);
          *(int32_t *)*p = (int32_t)v;
        } else *(int64_t *)*p = v;
      } else {
        float f = (float)lua_tonumber(L, -1);
        pose_convert(*p, dt, &f, POSE_F32, 1);
      }
      *p += pose_dtype_size(dt);
    }
    lua_pop(L, 1);
  }
}

pose_tensor *pose_lua_table_to_tensor(lua_State *L, int idx, pose_dtype dt) {
  idx = lua_absindex(L, idx); /* a relative index would move when the tensor is pushed below */
  luaL_checktype(L, idx, LUA_TTABLE);
  int ndim = 0, fixed = 0;
  int64_t shape[POSE_MAX_DIMS] = {0};
  table_shape(L, idx, 0, &ndim, shape, &fixed);
  pose_tensor *t;
  POSE_LUA_TRY(L, pose_tensor_zeros(&t, dt, POSE_DEVICE_CPU, ndim, shape));
  /* anchor t on the stack so that an error while filling does not leak it */
  pose_lua_push_tensor(L, t);
  char *p = pose_tensor_data(t);
  table_fill(L, idx, 0, ndim, dt, &p);
  /* detach from the userdata: the caller owns the tensor */
  pose_tensor **ud = lua_touserdata(L, -1);
  *ud = NULL;
  lua_pop(L, 1);
  return t;
}

pose_tensor *pose_lua_check_ids(lua_State *L, int idx, const char *what) {
  pose_tensor *t = pose_lua_test_tensor(L, idx);
  if (t) {
    if (t->dtype != POSE_I32 && t->dtype != POSE_I64)
      pose_lua_errorf(L, "pose: %s must be an i32/i64 tensor or a table of integers, got a %s tensor", what,
                 pose_dtype_name(t->dtype));
    pose_tensor *c;
    POSE_LUA_TRY(L, pose_tensor_to(t, POSE_I64, POSE_DEVICE_CPU, &c));
    return c;
  }
  if (!lua_istable(L, idx))
    pose_lua_errorf(L, "pose: %s must be an i32/i64 tensor or a table of integers, got %s", what, luaL_typename(L, idx));
  return pose_lua_table_to_tensor(L, idx, POSE_I64);
}

static void push_elem(lua_State *L, const pose_tensor *t, int64_t i) {
  const char *p = (const char *)pose_tensor_data(t) + (size_t)i * pose_dtype_size(t->dtype);
  if (t->dtype == POSE_I64) lua_pushinteger(L, *(const int64_t *)p);
  else if (t->dtype == POSE_I32) lua_pushinteger(L, *(const int32_t *)p);
  else { float f; pose_convert(&f, POSE_F32, p, t->dtype, 1); lua_pushnumber(L, f); }
}

static void totable_rec(lua_State *L, const pose_tensor *t, int d, int64_t *flat) {
  lua_createtable(L, (int)t->shape[d], 0);
  for (int64_t i = 0; i < t->shape[d]; i++) {
    if (d + 1 == t->ndim) push_elem(L, t, (*flat)++);
    else totable_rec(L, t, d + 1, flat);
    lua_rawseti(L, -2, i + 1);
  }
}

void pose_lua_push_totable(lua_State *L, const pose_tensor *t) {
  if (t->ndim == 0) { push_elem(L, t, 0); return; }
  int64_t flat = 0;
  totable_rec(L, t, 0, &flat);
}

static int get_field(lua_State *L, int tbl, const char *key) {
  if (tbl == 0 || lua_isnoneornil(L, tbl)) { lua_pushnil(L); return LUA_TNIL; }
  return lua_getfield(L, tbl, key);
}

lua_Integer pose_lua_opt_int(lua_State *L, int tbl, const char *key, lua_Integer def) {
  int ty = get_field(L, tbl, key);
  lua_Integer v = def;
  if (ty != LUA_TNIL) {
    int ok;
    v = lua_tointegerx(L, -1, &ok);
    if (!ok) pose_lua_errorf(L, "pose: option '%s' must be an integer, got %s", key,
                        ty == LUA_TNUMBER ? "a fractional number" : lua_typename(L, ty));
  }
  lua_pop(L, 1);
  return v;
}

lua_Number pose_lua_opt_num(lua_State *L, int tbl, const char *key, lua_Number def) {
  int ty = get_field(L, tbl, key);
  lua_Number v = def;
  if (ty != LUA_TNIL) {
    if (ty != LUA_TNUMBER) pose_lua_errorf(L, "pose: option '%s' must be a number, got %s", key, lua_typename(L, ty));
    v = lua_tonumber(L, -1);
  }
  lua_pop(L, 1);
  return v;
}

const char *pose_lua_opt_str(lua_State *L, int tbl, const char *key, const char *def) {
  int ty = get_field(L, tbl, key);
  const char *v = def;
  if (ty != LUA_TNIL) {
    if (ty != LUA_TSTRING) pose_lua_errorf(L, "pose: option '%s' must be a string, got %s", key, lua_typename(L, ty));
    v = lua_tostring(L, -1); /* stays valid: the string is still referenced by the options table */
  }
  lua_pop(L, 1);
  return v;
}

int pose_lua_opt_bool(lua_State *L, int tbl, const char *key, int def) {
  int ty = get_field(L, tbl, key);
  int v = def;
  if (ty != LUA_TNIL) {
    if (ty != LUA_TBOOLEAN) pose_lua_errorf(L, "pose: option '%s' must be a boolean, got %s", key, lua_typename(L, ty));
    v = lua_toboolean(L, -1);
  }
  lua_pop(L, 1);
  return v;
}

void pose_lua_check_keys(lua_State *L, int tbl, const char *fn, const char *const *known) {
  if (tbl == 0 || lua_isnoneornil(L, tbl)) return;
  luaL_checktype(L, tbl, LUA_TTABLE);
  tbl = lua_absindex(L, tbl);
  lua_pushnil(L);
  while (lua_next(L, tbl)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TSTRING) pose_lua_errorf(L, "%s: option keys must be strings", fn);
    const char *k = lua_tostring(L, -1);
    int ok = 0;
    for (const char *const *q = known; *q; q++) if (strcmp(*q, k) == 0) { ok = 1; break; }
    if (!ok) {
      luaL_Buffer b;
      luaL_buffinit(L, &b);
      for (const char *const *q = known; *q; q++) { if (q != known) luaL_addstring(&b, ", "); luaL_addstring(&b, *q); }
      luaL_pushresult(&b);
      pose_lua_errorf(L, "%s: unknown option '%s' (known: %s)", fn, k, lua_tostring(L, -1));
    }
  }
}
