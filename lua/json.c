/* Lua tables <-> cJSON, for option tables that the C library takes as JSON (pose.rope's keys, the `rope` option
 * of pose.load) and for JSON shown to Lua (m.config, r:config()). */
#include <math.h>
#include <string.h>

#include "lpose.h"

#define JSON_MAX_DEPTH 32

/* A non-empty table whose keys are exactly 1..n is an array; otherwise (an empty table too) an object, whose keys
 * must be strings. */
static int is_array(lua_State *L, int idx) {
  lua_Integer n = (lua_Integer)lua_rawlen(L, idx), count = 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    if (!lua_isinteger(L, -1)) { lua_pop(L, 1); return 0; }
    lua_Integer k = lua_tointeger(L, -1);
    if (k < 1 || k > n) { lua_pop(L, 1); return 0; }
    count++;
  }
  return n > 0 && count == n;
}

static cJSON *to_json(lua_State *L, int idx, const char *what, int depth) {
  idx = lua_absindex(L, idx);
  switch (lua_type(L, idx)) {
    case LUA_TNUMBER:
      return cJSON_CreateNumber(lua_isinteger(L, idx) ? (double)lua_tointeger(L, idx) : lua_tonumber(L, idx));
    case LUA_TSTRING: return cJSON_CreateString(lua_tostring(L, idx));
    case LUA_TBOOLEAN: return cJSON_CreateBool(lua_toboolean(L, idx));
    case LUA_TTABLE: break;
    default: pose_lua_errorf(L, "pose: %s: a %s cannot be converted to JSON", what, luaL_typename(L, idx));
  }
  if (depth >= JSON_MAX_DEPTH) pose_lua_errorf(L, "pose: %s: tables nested deeper than %d levels", what, JSON_MAX_DEPTH);
  int arr = is_array(L, idx);
  cJSON *out = arr ? cJSON_CreateArray() : cJSON_CreateObject();
  /* anchor the partial result so that a Lua error below does not leak it */
  cJSON **anchor = lua_newuserdatauv(L, sizeof *anchor, 0);
  *anchor = out;
  lua_newtable(L);
  lua_pushcfunction(L, pose_lua_json_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  if (arr) {
    lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
    for (lua_Integer i = 1; i <= n; i++) {
      lua_rawgeti(L, idx, i);
      cJSON_AddItemToArray(out, to_json(L, -1, what, depth + 1));
      lua_pop(L, 1);
    }
  } else {
    lua_pushnil(L);
    while (lua_next(L, idx)) {
      if (lua_type(L, -2) != LUA_TSTRING) pose_lua_errorf(L, "pose: %s: table keys must be strings", what);
      cJSON_AddItemToObject(out, lua_tostring(L, -2), to_json(L, -1, what, depth + 1));
      lua_pop(L, 1);
    }
  }
  *anchor = NULL;
  lua_pop(L, 1);
  return out;
}

int pose_lua_json_gc(lua_State *L) {
  cJSON **p = lua_touserdata(L, 1);
  if (p && *p) { cJSON_Delete(*p); *p = NULL; }
  return 0;
}

cJSON *pose_lua_to_json(lua_State *L, int idx, const char *what) { return to_json(L, idx, what, 0); }

void pose_lua_push_json(lua_State *L, const cJSON *j) {
  luaL_checkstack(L, 4, "pose: JSON too deep");
  if (!j || cJSON_IsNull(j)) lua_pushnil(L);
  else if (cJSON_IsBool(j)) lua_pushboolean(L, cJSON_IsTrue(j));
  else if (cJSON_IsString(j)) lua_pushstring(L, j->valuestring);
  else if (cJSON_IsNumber(j)) {
    double d = j->valuedouble;
    if (d == floor(d) && fabs(d) <= 9007199254740992.0) lua_pushinteger(L, (lua_Integer)d);
    else lua_pushnumber(L, d);
  } else if (cJSON_IsArray(j)) {
    lua_createtable(L, cJSON_GetArraySize(j), 0);
    lua_Integer i = 1;
    for (const cJSON *c = j->child; c; c = c->next) { pose_lua_push_json(L, c); lua_rawseti(L, -2, i++); }
  } else {
    lua_newtable(L);
    for (const cJSON *c = j->child; c; c = c->next) {
      if (cJSON_IsNull(c)) continue;
      pose_lua_push_json(L, c);
      lua_setfield(L, -2, c->string);
    }
  }
}
