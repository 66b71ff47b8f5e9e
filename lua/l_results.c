/* Lua bindings of HDF5 results files (core/results.h):
 *   local f = pose.results(path, {experiment=, device=, command=, mode="a"|"w"|"r"})
 *   f:group(p)  f:exists(p)  f:kind(p)  f:delete(p)  f:list(p?)
 *   f:write(p, value, dtype?)  f:read(p)  f:append(p, number_or_list, dtype?)
 *   f:set_attr(p, name, value)  f:attr(p, name)  f:attrs(p?)
 *   f:table(name, matrix, row_labels, col_labels)  f:flush()  f:close()  f:filename()
 * Values: integers are stored as i64 and other numbers as f64 (dtype "f64" | "f32" | "i64" overrides), strings as
 * UTF-8 strings, booleans as i64 0/1, (nested) array tables as arrays, tensors as f32 (float dtypes) or i64.
 * The handle closes on f:close(), at the end of a `local f <close>` scope, or when collected. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "lpose.h"
#include "results.h"

#define RESULTS_MT "pose.results"

typedef struct {
  pose_results *r;
} lresults;

/* The open file of the handle at index 1; a closed one is an error naming the file (kept as the user value). */
static pose_results *check_open(lua_State *L) {
  lresults *u = luaL_checkudata(L, 1, RESULTS_MT);
  if (!u->r) {
    lua_getiuservalue(L, 1, 1);
    pose_lua_errorf(L, "pose.results: file '%s' is closed", lua_tostring(L, -1));
  }
  return u->r;
}

/* ---- Lua value -> pose_results_value ------------------------------------------------------------------------ */

enum { LEAF_NONE = 0, LEAF_NUM, LEAF_STR };

typedef struct {
  const char *fn;
  int max_ndim, ndim, fixed, leaf, all_int;
  int64_t dims[POSE_RESULTS_MAX_DIMS];
} shape_walk;

/* Finds the shape of a nested array table, checking that it is rectangular, holds numbers only or strings only,
 * and has no keys besides 1..n (a table with named keys is not an array and would otherwise read as empty). */
static void walk(lua_State *L, int idx, int depth, shape_walk *w) {
  idx = lua_absindex(L, idx);
  if (depth >= w->max_ndim)
    pose_lua_errorf(L, "%s: nesting deeper than %d dimension%s", w->fn, w->max_ndim, w->max_ndim == 1 ? "" : "s");
  lua_Integer n = (lua_Integer)lua_rawlen(L, idx), keys = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) { keys++; lua_pop(L, 1); }
  if (keys != n) {
    if (n == 0) pose_lua_errorf(L, "%s: table is not an array (it has named keys)", w->fn);
    pose_lua_errorf(L, "%s: table is not an array (it has keys other than 1..%lld)", w->fn, (long long)n);
  }
  if (w->fixed > depth) {
    if (w->dims[depth] != n)
      pose_lua_errorf(L, "%s: ragged table (length %lld where %lld was expected at depth %d)", w->fn, (long long)n,
                      (long long)w->dims[depth], depth + 1);
  } else {
    w->dims[depth] = n;
    w->fixed = depth + 1;
  }
  if (n == 0) { if (w->ndim < depth + 1) w->ndim = depth + 1; return; }
  for (lua_Integer i = 1; i <= n; i++) {
    int t = lua_rawgeti(L, idx, i);
    if (t == LUA_TTABLE) {
      if (w->ndim && w->ndim <= depth + 1) pose_lua_errorf(L, "%s: ragged table (values and tables mixed)", w->fn);
      walk(L, -1, depth + 1, w);
    } else {
      if (w->ndim && w->ndim != depth + 1) pose_lua_errorf(L, "%s: ragged table (values and tables mixed)", w->fn);
      w->ndim = depth + 1;
      int leaf = t == LUA_TNUMBER ? LEAF_NUM : t == LUA_TSTRING ? LEAF_STR : LEAF_NONE;
      if (leaf == LEAF_NONE) pose_lua_errorf(L, "%s: array element is a %s (numbers or strings expected)", w->fn, lua_typename(L, t));
      if (w->leaf && w->leaf != leaf) pose_lua_errorf(L, "%s: array mixes numbers and strings", w->fn);
      w->leaf = leaf;
      if (leaf == LEAF_NUM && !lua_isinteger(L, -1)) w->all_int = 0;
    }
    lua_pop(L, 1);
  }
}

static void fill(lua_State *L, int idx, int depth, int ndim, pose_results_type t, char **p) {
  idx = lua_absindex(L, idx);
  lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, idx, i);
    if (depth + 1 < ndim) fill(L, -1, depth + 1, ndim, t, p);
    else if (t == POSE_RESULTS_I64) { *(int64_t *)*p = lua_tointeger(L, -1); *p += 8; }
    else if (t == POSE_RESULTS_F64) { *(double *)*p = lua_tonumber(L, -1); *p += 8; }
    else { *(const char **)*p = lua_tostring(L, -1); *p += sizeof(char *); } /* kept alive by the argument table */
    lua_pop(L, 1);
  }
}

static size_t esize(pose_results_type t) {
  return t == POSE_RESULTS_F32 ? sizeof(float) : t == POSE_RESULTS_STR ? sizeof(char *) : 8;
}

/* A buffer owned by a userdata left on the stack (collected with it, also when an error unwinds). */
static void *stack_buffer(lua_State *L, int64_t n, pose_results_type t) {
  return lua_newuserdatauv(L, (size_t)(n ? n : 1) * esize(t), 0);
}

static int parse_dtype(lua_State *L, int idx, const char *fn) {
  if (lua_isnoneornil(L, idx)) return -1;
  const char *s = luaL_checkstring(L, idx);
  if (!strcmp(s, "f64")) return POSE_RESULTS_F64;
  if (!strcmp(s, "f32")) return POSE_RESULTS_F32;
  if (!strcmp(s, "i64")) return POSE_RESULTS_I64;
  pose_lua_errorf(L, "%s: unknown dtype '%s' (expected \"f64\", \"f32\" or \"i64\")", fn, s);
}

/* Converts numbers between f64/f32/i64 into a new stack buffer; floats go to i64 only when integral. */
static void convert(lua_State *L, pose_results_value *v, pose_results_type to, const char *fn) {
  if (v->type == to) return;
  if (v->type == POSE_RESULTS_STR) pose_lua_errorf(L, "%s: strings cannot be stored as %s", fn, pose_results_type_name(to));
  int64_t n = pose_results_value_numel(v);
  void *dst = stack_buffer(L, n, to);
  for (int64_t i = 0; i < n; i++) {
    double x = v->type == POSE_RESULTS_F64 ? ((double *)v->data)[i]
             : v->type == POSE_RESULTS_F32 ? ((float *)v->data)[i] : (double)((int64_t *)v->data)[i];
    if (to == POSE_RESULTS_F64) ((double *)dst)[i] = v->type == POSE_RESULTS_I64 ? (double)((int64_t *)v->data)[i] : x;
    else if (to == POSE_RESULTS_F32) ((float *)dst)[i] = (float)x;
    else if (v->type == POSE_RESULTS_I64) ((int64_t *)dst)[i] = ((int64_t *)v->data)[i];
    else {
      lua_Integer k;
      if (x != floor(x) || !lua_numbertointeger(x, &k)) pose_lua_errorf(L, "%s: %.17g is not an integer (dtype i64)", fn, x);
      ((int64_t *)dst)[i] = k;
    }
  }
  v->type = to;
  v->data = dst;
}

/* The Lua value at idx as a pose_results_value; its memory stays on the stack until the caller returns. */
static void to_value(lua_State *L, int idx, pose_results_value *v, int max_ndim, int forced, const char *fn) {
  idx = lua_absindex(L, idx);
  memset(v, 0, sizeof *v);
  pose_tensor *t;
  switch (lua_type(L, idx)) {
    case LUA_TNUMBER:
      v->type = lua_isinteger(L, idx) ? POSE_RESULTS_I64 : POSE_RESULTS_F64;
      v->data = stack_buffer(L, 1, v->type);
      if (v->type == POSE_RESULTS_I64) *(int64_t *)v->data = lua_tointeger(L, idx);
      else *(double *)v->data = lua_tonumber(L, idx);
      break;
    case LUA_TBOOLEAN:
      v->type = POSE_RESULTS_I64;
      v->data = stack_buffer(L, 1, v->type);
      *(int64_t *)v->data = lua_toboolean(L, idx);
      break;
    case LUA_TSTRING:
      v->type = POSE_RESULTS_STR;
      v->data = stack_buffer(L, 1, v->type);
      *(const char **)v->data = lua_tostring(L, idx);
      break;
    case LUA_TTABLE: {
      shape_walk w = {.fn = fn, .max_ndim = max_ndim, .all_int = 1};
      walk(L, idx, 0, &w);
      v->ndim = w.ndim;
      memcpy(v->dims, w.dims, sizeof v->dims);
      v->type = w.leaf == LEAF_STR ? POSE_RESULTS_STR : w.leaf == LEAF_NUM && w.all_int ? POSE_RESULTS_I64 : POSE_RESULTS_F64;
      char *p = stack_buffer(L, pose_results_value_numel(v), v->type);
      v->data = p;
      fill(L, idx, 0, v->ndim, v->type, &p);
      break;
    }
    default:
      if ((t = pose_lua_test_tensor(L, idx))) {
        if (t->ndim > max_ndim) pose_lua_errorf(L, "%s: a %d-D tensor (at most %d-D here)", fn, t->ndim, max_ndim);
        int is_int = t->dtype == POSE_I32 || t->dtype == POSE_I64;
        pose_tensor *c;
        POSE_LUA_TRY(L, pose_tensor_to(t, is_int ? POSE_I64 : POSE_F32, POSE_DEVICE_CPU, &c));
        pose_lua_push_tensor(L, c); /* the GC frees the copy */
        v->type = is_int ? POSE_RESULTS_I64 : POSE_RESULTS_F32;
        v->ndim = c->ndim;
        for (int i = 0; i < c->ndim; i++) v->dims[i] = c->shape[i];
        v->data = pose_tensor_data(c);
        break;
      }
      pose_lua_errorf(L, "%s: cannot store a %s (numbers, strings, booleans, array tables or tensors)", fn,
                      luaL_typename(L, idx));
  }
  if (forced >= 0) convert(L, v, (pose_results_type)forced, fn);
}

/* ---- pose_results_value -> Lua ------------------------------------------------------------------------------ */

static void push_elem(lua_State *L, const pose_results_value *v, int64_t i) {
  switch (v->type) {
    case POSE_RESULTS_F64: lua_pushnumber(L, ((double *)v->data)[i]); break;
    case POSE_RESULTS_F32: lua_pushnumber(L, ((float *)v->data)[i]); break;
    case POSE_RESULTS_I64: lua_pushinteger(L, ((int64_t *)v->data)[i]); break;
    case POSE_RESULTS_STR: lua_pushstring(L, ((char **)v->data)[i]); break;
  }
}

static void push_rec(lua_State *L, const pose_results_value *v, int d, int64_t *flat) {
  lua_createtable(L, v->dims[d] < 1 << 24 ? (int)v->dims[d] : 0, 0);
  for (int64_t i = 0; i < v->dims[d]; i++) {
    if (d + 1 == v->ndim) push_elem(L, v, (*flat)++);
    else push_rec(L, v, d + 1, flat);
    lua_rawseti(L, -2, i + 1);
  }
}

static int value_gc(lua_State *L) {
  pose_results_value_free(lua_touserdata(L, 1));
  return 0;
}

/* Pushes v (scalar -> number/string, arrays -> nested tables) and frees it. The value is first moved into a
 * userdata whose __gc frees it, so that a memory error while building the tables cannot leak it. */
static void push_value(lua_State *L, pose_results_value *v) {
  pose_results_value *held = lua_newuserdatauv(L, sizeof *held, 0);
  *held = *v;
  memset(v, 0, sizeof *v);
  if (luaL_newmetatable(L, "pose.results.value")) {
    lua_pushcfunction(L, value_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  int64_t flat = 0;
  if (held->ndim == 0) push_elem(L, held, 0);
  else push_rec(L, held, 0, &flat);
  pose_results_value_free(held);
  lua_remove(L, -2);
}

/* ---- the handle --------------------------------------------------------------------------------------------- */

/* `pose run script.lua --k v` as this process was started, from the global `arg` (stock lua: its own argv). */
static void push_default_command(lua_State *L) {
  if (lua_getglobal(L, "arg") != LUA_TTABLE) { lua_pop(L, 1); lua_pushstring(L, "unknown"); return; }
  int tbl = lua_gettop(L);
  int first = 0;
  while (lua_rawgeti(L, tbl, first - 1) == LUA_TSTRING) { lua_pop(L, 1); first--; }
  lua_pop(L, 1);
  /* no interpreter words before arg[0]: the pose executable, whose arg[0] is the script (a stock lua5.4 without a
   * script puts its own name in arg[0] instead) */
  int pose_run = 0;
  if (first == 0) {
    if (lua_rawgeti(L, tbl, 0) == LUA_TSTRING) {
      size_t n;
      const char *s0 = lua_tolstring(L, -1, &n);
      pose_run = n > 4 && !strcmp(s0 + n - 4, ".lua");
    }
    lua_pop(L, 1);
  }
  /* the strings stay alive in the arg table, so each is popped before the buffer is touched (the buffer owns the
   * top of the stack while in use) */
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  int any = 0;
  if (pose_run) { luaL_addstring(&b, "pose run"); any = 1; }
  for (int i = first;; i++) {
    int t = lua_rawgeti(L, tbl, i);
    size_t len = 0;
    const char *s = t == LUA_TSTRING ? lua_tolstring(L, -1, &len) : NULL;
    lua_pop(L, 1);
    if (!s) { if (i >= 0) break; continue; }
    if (any) luaL_addchar(&b, ' ');
    any = 1;
    /* quote words the shell would split or expand, so that the command can be pasted back */
    int plain = len > 0 && strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+@%") == len;
    if (plain) luaL_addlstring(&b, s, len);
    else {
      luaL_addchar(&b, '\'');
      for (size_t k = 0; k < len; k++) {
        if (s[k] == '\'') luaL_addstring(&b, "'\\''");
        else luaL_addchar(&b, s[k]);
      }
      luaL_addchar(&b, '\'');
    }
  }
  luaL_pushresult(&b);
  lua_remove(L, tbl);
}

/* pose.results(path, {experiment=, device=, command=, mode=}) */
static int l_results(lua_State *L) {
  static const char *const keys[] = {"experiment", "device", "command", "mode", NULL};
  const char *path = luaL_checkstring(L, 1);
  if (!lua_isnoneornil(L, 2) && !lua_istable(L, 2))
    pose_lua_errorf(L, "pose.results: options must be a table, got %s", luaL_typename(L, 2));
  pose_lua_check_keys(L, 2, "pose.results", keys);
  pose_results_opts o = {0};
  const char *mode = pose_lua_opt_str(L, 2, "mode", "a");
  if (!strcmp(mode, "a")) o.mode = POSE_RESULTS_APPEND;
  else if (!strcmp(mode, "w")) o.mode = POSE_RESULTS_WRITE;
  else if (!strcmp(mode, "r")) o.mode = POSE_RESULTS_READ;
  else pose_lua_errorf(L, "pose.results: unknown mode '%s' (expected \"a\", \"w\" or \"r\")", mode);
  o.experiment = pose_lua_opt_str(L, 2, "experiment", NULL);
  o.device = pose_lua_opt_str(L, 2, "device", NULL);
  o.command = pose_lua_opt_str(L, 2, "command", NULL);
  if (!o.command && o.mode != POSE_RESULTS_READ) {
    push_default_command(L); /* stays on the stack while the file opens */
    o.command = lua_tostring(L, -1);
  }
  lresults *u = lua_newuserdatauv(L, sizeof *u, 1);
  u->r = NULL;
  luaL_setmetatable(L, RESULTS_MT);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1);
  POSE_LUA_TRY(L, pose_results_open(&u->r, path, &o));
  return 1;
}

static int m_close(lua_State *L) {
  lresults *u = luaL_checkudata(L, 1, RESULTS_MT);
  pose_results *r = u->r;
  u->r = NULL;
  POSE_LUA_TRY(L, pose_results_close(r));
  return 0;
}

static int m_gc(lua_State *L) {
  lresults *u = luaL_checkudata(L, 1, RESULTS_MT);
  pose_results_close(u->r); /* errors cannot be raised from a finalizer */
  u->r = NULL;
  return 0;
}

static int m_tostring(lua_State *L) {
  lresults *u = luaL_checkudata(L, 1, RESULTS_MT);
  lua_getiuservalue(L, 1, 1);
  lua_pushfstring(L, "pose.results(%s%s)", lua_tostring(L, -1),
                  !u->r ? ", closed" : pose_results_readonly(u->r) ? ", read-only" : "");
  return 1;
}

static int m_filename(lua_State *L) {
  luaL_checkudata(L, 1, RESULTS_MT);
  lua_getiuservalue(L, 1, 1);
  return 1;
}

static int m_flush(lua_State *L) {
  POSE_LUA_TRY(L, pose_results_flush(check_open(L)));
  return 0;
}

static int m_group(lua_State *L) {
  pose_results *r = check_open(L);
  POSE_LUA_TRY(L, pose_results_group(r, luaL_checkstring(L, 2)));
  return 0;
}

static pose_results_kind kind(lua_State *L) {
  pose_results *r = check_open(L);
  pose_results_kind k;
  POSE_LUA_TRY(L, pose_results_kind_of(r, luaL_checkstring(L, 2), &k));
  return k;
}

static int m_exists(lua_State *L) {
  lua_pushboolean(L, kind(L) != POSE_RESULTS_NONE);
  return 1;
}

static int m_kind(lua_State *L) {
  pose_results_kind k = kind(L);
  if (k == POSE_RESULTS_NONE) lua_pushnil(L);
  else lua_pushstring(L, k == POSE_RESULTS_GROUP ? "group" : k == POSE_RESULTS_DATASET ? "dataset" : "other");
  return 1;
}

static int m_delete(lua_State *L) {
  pose_results *r = check_open(L);
  POSE_LUA_TRY(L, pose_results_delete(r, luaL_checkstring(L, 2)));
  return 0;
}

static int m_list(lua_State *L) {
  pose_results *r = check_open(L);
  pose_results_value v;
  POSE_LUA_TRY(L, pose_results_list(r, luaL_optstring(L, 2, "/"), &v));
  push_value(L, &v);
  return 1;
}

static int m_write(lua_State *L) {
  pose_results *r = check_open(L);
  const char *path = luaL_checkstring(L, 2);
  int forced = parse_dtype(L, 4, "f:write");
  luaL_checkany(L, 3);
  pose_results_value v;
  to_value(L, 3, &v, POSE_RESULTS_MAX_DIMS, forced, "f:write");
  POSE_LUA_TRY(L, pose_results_write(r, path, &v));
  return 0;
}

static int m_read(lua_State *L) {
  pose_results *r = check_open(L);
  pose_results_value v;
  POSE_LUA_TRY(L, pose_results_read(r, luaL_checkstring(L, 2), &v));
  push_value(L, &v);
  return 1;
}

/* f:append(path, number_or_list, dtype?): the dataset is created on first use, i64 when every value is an integer
 * (or dtype says so), else f64. */
static int m_append(lua_State *L) {
  pose_results *r = check_open(L);
  const char *path = luaL_checkstring(L, 2);
  int forced = parse_dtype(L, 4, "f:append");
  int t = lua_type(L, 3);
  if (t != LUA_TNUMBER && t != LUA_TTABLE && !pose_lua_test_tensor(L, 3))
    pose_lua_errorf(L, "f:append: expected a number or a list of numbers, got %s", luaL_typename(L, 3));
  pose_results_value v;
  to_value(L, 3, &v, 1, forced, "f:append");
  if (v.type == POSE_RESULTS_STR) pose_lua_errorf(L, "f:append: expected numbers, got strings");
  POSE_LUA_TRY(L, pose_results_append(r, path, &v));
  return 0;
}

static int m_set_attr(lua_State *L) {
  pose_results *r = check_open(L);
  const char *path = luaL_checkstring(L, 2), *name = luaL_checkstring(L, 3);
  luaL_checkany(L, 4);
  if (pose_lua_test_tensor(L, 4)) pose_lua_errorf(L, "f:set_attr: a tensor is not an attribute value (use write)");
  pose_results_value v;
  to_value(L, 4, &v, 1, -1, "f:set_attr");
  POSE_LUA_TRY(L, pose_results_set_attr(r, path, name, &v));
  return 0;
}

/* f:attr(path, name) -> value, or nil when the object has no such attribute (a missing object is an error) */
static int m_attr(lua_State *L) {
  pose_results *r = check_open(L);
  const char *path = luaL_checkstring(L, 2), *name = luaL_checkstring(L, 3);
  int has;
  POSE_LUA_TRY(L, pose_results_has_attr(r, path, name, &has));
  if (!has) { lua_pushnil(L); return 1; }
  pose_results_value v;
  POSE_LUA_TRY(L, pose_results_get_attr(r, path, name, &v));
  push_value(L, &v);
  return 1;
}

static int m_attrs(lua_State *L) {
  pose_results *r = check_open(L);
  const char *path = luaL_optstring(L, 2, "/");
  pose_results_value names;
  POSE_LUA_TRY(L, pose_results_attr_names(r, path, &names));
  push_value(L, &names);
  int nt = lua_gettop(L);
  lua_newtable(L);
  lua_Integer n = (lua_Integer)lua_rawlen(L, nt);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, nt, i);
    pose_results_value v;
    POSE_LUA_TRY(L, pose_results_get_attr(r, path, lua_tostring(L, -1), &v));
    push_value(L, &v);
    lua_rawset(L, -3);
  }
  return 1;
}

/* f:table(name, matrix, row_labels, col_labels): labels may be strings or numbers (written as text) */
static void check_labels(lua_State *L, int idx, int64_t want, const char *what, const char ***out) {
  if (!lua_istable(L, idx)) pose_lua_errorf(L, "f:table: %s must be an array of strings, got %s", what, luaL_typename(L, idx));
  int64_t n = (int64_t)lua_rawlen(L, idx);
  if (n != want)
    pose_lua_errorf(L, "f:table: %lld %s for %lld %s", (long long)n, what, (long long)want,
                    what[0] == 'r' ? "rows" : "columns");
  const char **s = lua_newuserdatauv(L, (size_t)(n ? n : 1) * sizeof *s, 0);
  lua_newtable(L); /* keeps converted labels alive */
  for (int64_t i = 0; i < n; i++) {
    int t = lua_rawgeti(L, idx, i + 1);
    if (t != LUA_TSTRING && t != LUA_TNUMBER)
      pose_lua_errorf(L, "f:table: %s[%lld] is a %s (strings expected)", what, (long long)(i + 1), lua_typename(L, t));
    s[i] = luaL_tolstring(L, -1, NULL);
    lua_rawseti(L, -3, i + 1);
    lua_pop(L, 1);
  }
  *out = s;
}

static int m_table(lua_State *L) {
  pose_results *r = check_open(L);
  const char *name = luaL_checkstring(L, 2);
  pose_results_value v;
  if (!lua_istable(L, 3) && !pose_lua_test_tensor(L, 3))
    pose_lua_errorf(L, "f:table: matrix must be a table of rows (or a 2-D tensor), got %s", luaL_typename(L, 3));
  to_value(L, 3, &v, 2, POSE_RESULTS_F64, "f:table");
  if (v.ndim != 2) pose_lua_errorf(L, "f:table: matrix must be 2-D (a table of rows), got %d-D", v.ndim);
  const char **rows, **cols;
  check_labels(L, 4, v.dims[0], "row_labels", &rows);
  check_labels(L, 5, v.dims[1], "col_labels", &cols);
  POSE_LUA_TRY(L, pose_results_table(r, name, v.dims[0], v.dims[1], v.data, rows, cols));
  return 0;
}

void pose_lua_open_results(lua_State *L) {
  if (luaL_newmetatable(L, RESULTS_MT)) {
    static const luaL_Reg methods[] = {
        {"group", m_group},       {"exists", m_exists}, {"kind", m_kind},   {"delete", m_delete},
        {"list", m_list},         {"write", m_write},   {"read", m_read},   {"append", m_append},
        {"set_attr", m_set_attr}, {"attr", m_attr},     {"attrs", m_attrs}, {"table", m_table},
        {"flush", m_flush},       {"close", m_close},   {"filename", m_filename}, {NULL, NULL}};
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, m_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, m_gc);
    lua_setfield(L, -2, "__close");
    lua_pushcfunction(L, m_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);
  lua_pushcfunction(L, l_results);
  lua_setfield(L, -2, "results");
}
