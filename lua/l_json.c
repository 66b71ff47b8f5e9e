/* pose.json_encode / pose.json_decode over cJSON: configs, JSONL evaluation sets, run configs in HDF5 attributes.
 * Decoding: objects -> tables, arrays -> sequences, null -> nil (inside arrays: pose.json_null, so lengths hold).
 * Encoding: a table with keys 1..n only is an array, otherwise an object with keys in sorted order (deterministic
 * output, so that equal configs give equal strings); integers stay integers. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "lpose.h"

static const char null_key = 'n';

void pose_lua_push_json(lua_State *L, const cJSON *j) {
  if (cJSON_IsNull(j) || !j) { lua_pushnil(L); return; }
  if (cJSON_IsBool(j)) { lua_pushboolean(L, cJSON_IsTrue(j)); return; }
  if (cJSON_IsNumber(j)) {
    double v = j->valuedouble;
    if (v == floor(v) && fabs(v) < 9007199254740992.0) lua_pushinteger(L, (lua_Integer)v);
    else lua_pushnumber(L, v);
    return;
  }
  if (cJSON_IsString(j)) { lua_pushstring(L, j->valuestring); return; }
  luaL_checkstack(L, 4, "JSON nested too deeply");
  if (cJSON_IsArray(j)) {
    lua_createtable(L, cJSON_GetArraySize(j), 0);
    int i = 1;
    for (const cJSON *c = j->child; c; c = c->next, i++) {
      if (cJSON_IsNull(c)) lua_rawgetp(L, LUA_REGISTRYINDEX, &null_key);
      else pose_lua_push_json(L, c);
      lua_rawseti(L, -2, i);
    }
    return;
  }
  lua_newtable(L);
  for (const cJSON *c = j->child; c; c = c->next) {
    if (cJSON_IsNull(c)) continue;
    pose_lua_push_json(L, c);
    lua_setfield(L, -2, c->string);
  }
}


/* Raises a Lua error for anything JSON cannot hold. Run before building, so that building never raises and a
 * half-built cJSON tree is never leaked by a longjmp. */
static void check_encodable(lua_State *L, int idx, int depth) {
  idx = lua_absindex(L, idx);
  if (depth > 64) pose_lua_errorf(L, "json: value nested deeper than 64 levels (a cycle?)");
  int ty = lua_type(L, idx);
  if (ty == LUA_TNIL || ty == LUA_TBOOLEAN || ty == LUA_TNUMBER || ty == LUA_TSTRING || ty == LUA_TLIGHTUSERDATA) return;
  if (ty != LUA_TTABLE) pose_lua_errorf(L, "json: cannot encode a %s", luaL_typename(L, idx));
  luaL_checkstack(L, 4, "json: nested too deeply");
  lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
  int has_string = 0, has_other = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    if (lua_type(L, -2) == LUA_TSTRING) has_string = 1;
    else if (!lua_isinteger(L, -2) || lua_tointeger(L, -2) < 1 || lua_tointeger(L, -2) > n) has_other = 1;
    check_encodable(L, -1, depth + 1);
    lua_pop(L, 1);
  }
  if (has_other || (has_string && n > 0)) pose_lua_errorf(L, "json: object keys must be strings (mixed table?)");
}

static int cmp_keys(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

static cJSON *build_json(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  switch (lua_type(L, idx)) {
    case LUA_TBOOLEAN: return cJSON_CreateBool(lua_toboolean(L, idx));
    case LUA_TNUMBER: {
      double v = lua_tonumber(L, idx);
      return isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull(); /* JSON has no NaN/Inf */
    }
    case LUA_TSTRING: return cJSON_CreateString(lua_tostring(L, idx));
    case LUA_TTABLE: break;
    default: return cJSON_CreateNull(); /* nil, pose.json_null */
  }
  lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
  if (n > 0) {
    cJSON *arr = cJSON_CreateArray();
    for (lua_Integer i = 1; i <= n; i++) {
      lua_rawgeti(L, idx, i);
      cJSON_AddItemToArray(arr, build_json(L, -1));
      lua_pop(L, 1);
    }
    return arr;
  }
  size_t count = 0, k = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) { count++; lua_pop(L, 1); }
  cJSON *obj = cJSON_CreateObject(); /* an empty table encodes as {} */
  const char **keys = malloc(sizeof *keys * (count ? count : 1));
  if (!keys) return obj;
  lua_pushnil(L);
  while (lua_next(L, idx)) { lua_pop(L, 1); keys[k++] = lua_tostring(L, -1); }
  qsort(keys, k, sizeof *keys, cmp_keys);
  for (size_t i = 0; i < k; i++) {
    lua_getfield(L, idx, keys[i]);
    cJSON_AddItemToObject(obj, keys[i], build_json(L, -1));
    lua_pop(L, 1);
  }
  free(keys);
  return obj;
}

/* Builds a cJSON value from the Lua value at idx; raises a Lua error (before allocating anything) for functions,
 * userdata, mixed tables and cycles. */
cJSON *pose_lua_to_json(lua_State *L, int idx, int depth) {
  check_encodable(L, idx, depth);
  return build_json(L, idx);
}

static int l_decode(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  const char *end = NULL;
  cJSON *j = cJSON_ParseWithLengthOpts(s, len, &end, 0);
  if (!j) {
    size_t at = end ? (size_t)(end - s) : 0;
    pose_lua_errorf(L, "pose.json_decode: invalid JSON near byte %zu", at);
  }
  pose_lua_push_json(L, j);
  cJSON_Delete(j);
  return 1;
}

static int l_encode(lua_State *L) {
  luaL_checkany(L, 1);
  int pretty = lua_toboolean(L, 2);
  cJSON *j = pose_lua_to_json(L, 1, 0);
  char *s = pretty ? cJSON_Print(j) : cJSON_PrintUnformatted(j);
  cJSON_Delete(j);
  if (!s) pose_lua_errorf(L, "pose.json_encode: out of memory");
  lua_pushstring(L, s);
  free(s);
  return 1;
}

void pose_lua_open_json(lua_State *L) {
  lua_pushlightuserdata(L, (void *)&null_key);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &null_key);
  lua_pushcfunction(L, l_decode);
  lua_setfield(L, -2, "json_decode");
  lua_pushcfunction(L, l_encode);
  lua_setfield(L, -2, "json_encode");
  lua_pushlightuserdata(L, (void *)&null_key);
  lua_setfield(L, -2, "json_null");
}
