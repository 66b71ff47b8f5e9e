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

static int cmp_keys(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

/* Builds a cJSON value from the Lua value at idx; raises a Lua error for functions, userdata, cycles (depth). */
cJSON *pose_lua_to_json(lua_State *L, int idx, int depth) {
  idx = lua_absindex(L, idx);
  if (depth > 64) pose_lua_errorf(L, "json: value nested deeper than 64 levels (a cycle?)");
  switch (lua_type(L, idx)) {
    case LUA_TNIL: return cJSON_CreateNull();
    case LUA_TBOOLEAN: return cJSON_CreateBool(lua_toboolean(L, idx));
    case LUA_TNUMBER: {
      double v = lua_tonumber(L, idx);
      if (!isfinite(v)) return cJSON_CreateNull(); /* JSON has no NaN/Inf */
      return cJSON_CreateNumber(v);
    }
    case LUA_TSTRING: return cJSON_CreateString(lua_tostring(L, idx));
    case LUA_TLIGHTUSERDATA: return cJSON_CreateNull(); /* pose.json_null */
    case LUA_TTABLE: break;
    default: pose_lua_errorf(L, "json: cannot encode a %s", luaL_typename(L, idx));
  }
  lua_Integer n = (lua_Integer)lua_rawlen(L, idx), count = 0;
  int only_seq = 1;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    count++;
    if (!lua_isinteger(L, -2) || lua_tointeger(L, -2) < 1 || lua_tointeger(L, -2) > n) only_seq = 0;
    lua_pop(L, 1);
  }
  if (only_seq && count == n && (n > 0 || lua_rawlen(L, idx) == 0)) {
    if (n == 0) return cJSON_CreateObject(); /* an empty table encodes as {} */
    cJSON *arr = cJSON_CreateArray();
    for (lua_Integer i = 1; i <= n; i++) {
      lua_rawgeti(L, idx, i);
      cJSON_AddItemToArray(arr, pose_lua_to_json(L, -1, depth + 1));
      lua_pop(L, 1);
    }
    return arr;
  }
  const char **keys = malloc(sizeof *keys * (size_t)count);
  size_t k = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TSTRING) {
      free(keys);
      pose_lua_errorf(L, "json: object keys must be strings (mixed table?)");
    }
    keys[k++] = lua_tostring(L, -1);
  }
  qsort(keys, k, sizeof *keys, cmp_keys);
  cJSON *obj = cJSON_CreateObject();
  for (size_t i = 0; i < k; i++) {
    lua_getfield(L, idx, keys[i]);
    cJSON_AddItemToObject(obj, keys[i], pose_lua_to_json(L, -1, depth + 1));
    lua_pop(L, 1);
  }
  free(keys);
  return obj;
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
