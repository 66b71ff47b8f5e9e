/* Lua bindings of tokenizers:
 *   local tok = pose.tokenizer(path)       -- tokenizer.model, tokenizer.json, or a directory holding one
 *   tok:encode(text, {bos=false, eos=false}) -> {ids}     tok:decode(ids) -> text   (ids: table or i32/i64 tensor)
 *   tok.vocab_size  tok.bos_id  tok.eos_id  tok.unk_id  tok.pad_id (-1 when absent)  tok.kind  tok.path
 *   tok:piece(id) -> string     tok:id(piece) -> id or nil     tok:is_special(id) -> boolean
 *   pose.train_tokenizer{input=, model_prefix=, vocab_size=, model_type=, ...} -> path of the .model written
 * Ids are the vocabulary's own 0-based ids, as a model's embedding rows. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "lpose.h"
#include "tokenizer.h"

#define TOKENIZER_MT "pose.tokenizer"

static pose_tokenizer *check_tok(lua_State *L, int idx) {
  pose_tokenizer **ud = luaL_checkudata(L, idx, TOKENIZER_MT);
  if (!*ud) pose_lua_errorf(L, "pose: tokenizer used after it was freed");
  return *ud;
}

static int l_tokenizer(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  pose_tokenizer **ud = lua_newuserdatauv(L, sizeof *ud, 0);
  *ud = NULL;
  luaL_setmetatable(L, TOKENIZER_MT);
  POSE_LUA_TRY(L, pose_tokenizer_open(ud, path));
  return 1;
}

static int l_gc(lua_State *L) {
  pose_tokenizer **ud = luaL_checkudata(L, 1, TOKENIZER_MT);
  pose_tokenizer_free(*ud);
  *ud = NULL;
  return 0;
}

static int l_tostring(lua_State *L) {
  pose_tokenizer **ud = luaL_checkudata(L, 1, TOKENIZER_MT);
  if (!*ud) lua_pushstring(L, "pose.tokenizer(freed)");
  else lua_pushfstring(L, "pose.tokenizer(%s, %s, vocab %d)", pose_tokenizer_kind_name(*ud), pose_tokenizer_path(*ud),
                       (int)pose_tokenizer_vocab_size(*ud));
  return 1;
}

/* tok:encode(text, {bos=, eos=}) */
static int l_encode(lua_State *L) {
  static const char *const keys[] = {"bos", "eos", NULL};
  pose_tokenizer *t = check_tok(L, 1);
  size_t len;
  const char *text = luaL_checklstring(L, 2, &len);
  if (!lua_isnoneornil(L, 3)) luaL_checktype(L, 3, LUA_TTABLE);
  pose_lua_check_keys(L, 3, "tokenizer:encode", keys);
  int bos = pose_lua_opt_bool(L, 3, "bos", 0), eos = pose_lua_opt_bool(L, 3, "eos", 0);
  int32_t *ids;
  size_t n;
  POSE_LUA_TRY(L, pose_tokenizer_encode(t, text, len, bos, eos, &ids, &n));
  lua_createtable(L, n > INT32_MAX ? INT32_MAX : (int)n, 0);
  for (size_t i = 0; i < n; i++) {
    lua_pushinteger(L, ids[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  free(ids);
  return 1;
}

/* tok:decode(ids): a table of integers or a 1-D integer tensor */
static int l_decode(lua_State *L) {
  pose_tokenizer *t = check_tok(L, 1);
  if (lua_isnoneornil(L, 2)) pose_lua_errorf(L, "tokenizer:decode: expected ids (a table or tensor of integers)");
  pose_tensor *ids = pose_lua_check_ids(L, 2, "tokenizer:decode ids");
  pose_lua_push_tensor(L, ids); /* anchored: freed by the GC if anything below raises */
  if (ids->ndim > 1) pose_lua_errorf(L, "tokenizer:decode: ids must be one-dimensional, got %d dimensions", ids->ndim);
  const int64_t *v = pose_tensor_data(ids);
  int64_t n = ids->numel;
  int32_t *buf = malloc((size_t)(n ? n : 1) * sizeof *buf);
  if (!buf) pose_lua_errorf(L, "tokenizer:decode: out of memory");
  for (int64_t i = 0; i < n; i++) {
    if (v[i] < 0 || v[i] >= pose_tokenizer_vocab_size(t)) {
      free(buf);
      pose_lua_errorf(L, "tokenizer:decode: id %lld at position %lld is outside the vocabulary [0, %d)", (long long)v[i],
                      (long long)i + 1, (int)pose_tokenizer_vocab_size(t));
    }
    buf[i] = (int32_t)v[i];
  }
  char *text;
  size_t len;
  pose_status st = pose_tokenizer_decode(t, buf, (size_t)n, &text, &len);
  free(buf);
  if (st) pose_lua_fail(L, st);
  lua_pushlstring(L, text, len);
  free(text);
  return 1;
}

static int l_piece(lua_State *L) {
  pose_tokenizer *t = check_tok(L, 1);
  lua_Integer id = luaL_checkinteger(L, 2);
  if (id < INT32_MIN || id > INT32_MAX) pose_lua_errorf(L, "tokenizer:piece: id %lld is out of range", (long long)id);
  const char *p;
  size_t len;
  POSE_LUA_TRY(L, pose_tokenizer_id_to_piece(t, (int32_t)id, &p, &len));
  lua_pushlstring(L, p, len);
  return 1;
}

static int l_id(lua_State *L) {
  pose_tokenizer *t = check_tok(L, 1);
  size_t len;
  const char *p = luaL_checklstring(L, 2, &len);
  int32_t id = pose_tokenizer_piece_to_id(t, p, len);
  if (id < 0) lua_pushnil(L);
  else lua_pushinteger(L, id);
  return 1;
}

static int l_is_special(lua_State *L) {
  pose_tokenizer *t = check_tok(L, 1);
  lua_Integer id = luaL_checkinteger(L, 2);
  lua_pushboolean(L, id >= 0 && id < pose_tokenizer_vocab_size(t) && pose_tokenizer_is_special(t, (int32_t)id));
  return 1;
}

static const luaL_Reg methods[] = {{"encode", l_encode}, {"decode", l_decode}, {"piece", l_piece}, {"id", l_id},
                                   {"is_special", l_is_special}, {NULL, NULL}};

/* fields first (vocab_size, ...), then methods */
static int l_index(lua_State *L) {
  pose_tokenizer *t = check_tok(L, 1);
  const char *k = lua_tostring(L, 2);
  if (k) {
    if (!strcmp(k, "vocab_size")) { lua_pushinteger(L, pose_tokenizer_vocab_size(t)); return 1; }
    if (!strcmp(k, "bos_id")) { lua_pushinteger(L, pose_tokenizer_bos_id(t)); return 1; }
    if (!strcmp(k, "eos_id")) { lua_pushinteger(L, pose_tokenizer_eos_id(t)); return 1; }
    if (!strcmp(k, "unk_id")) { lua_pushinteger(L, pose_tokenizer_unk_id(t)); return 1; }
    if (!strcmp(k, "pad_id")) { lua_pushinteger(L, pose_tokenizer_pad_id(t)); return 1; }
    if (!strcmp(k, "kind")) { lua_pushstring(L, pose_tokenizer_kind_name(t)); return 1; }
    if (!strcmp(k, "path")) { lua_pushstring(L, pose_tokenizer_path(t)); return 1; }
  }
  lua_getmetatable(L, 1);
  lua_getfield(L, -1, "methods");
  lua_pushvalue(L, 2);
  lua_rawget(L, -2);
  return 1;
}

static int l_newindex(lua_State *L) {
  pose_lua_errorf(L, "pose.tokenizer: fields are read-only (tried to set '%s')", luaL_tolstring(L, 2, NULL));
}

/* ---- training -------------------------------------------------------------------------------------------------- */

/* Appends "key" and its value as the trainer flag string to the key/value arrays anchored in table `kv`. */
static void push_flag(lua_State *L, int kv, const char *key, int vidx) {
  vidx = lua_absindex(L, vidx);
  luaL_Buffer b;
  switch (lua_type(L, vidx)) {
    case LUA_TBOOLEAN: lua_pushstring(L, lua_toboolean(L, vidx) ? "true" : "false"); break;
    case LUA_TNUMBER:
      if (lua_isinteger(L, vidx)) lua_pushfstring(L, "%I", lua_tointeger(L, vidx));
      else { char num[64]; snprintf(num, sizeof num, "%.17g", lua_tonumber(L, vidx)); lua_pushstring(L, num); }
      break;
    case LUA_TSTRING: lua_pushvalue(L, vidx); break;
    case LUA_TTABLE: /* a list, joined with commas as the trainer's repeated flags are */
      luaL_buffinit(L, &b);
      for (lua_Integer i = 1; i <= (lua_Integer)lua_rawlen(L, vidx); i++) {
        lua_rawgeti(L, vidx, i);
        if (!lua_isstring(L, -1)) pose_lua_errorf(L, "pose.train_tokenizer: '%s' must be a list of strings", key);
        size_t l;
        const char *s = lua_tolstring(L, -1, &l);
        if (memchr(s, ',', l)) pose_lua_errorf(L, "pose.train_tokenizer: '%s' entry '%s' contains a comma", key, s);
        lua_pop(L, 1);
        if (i > 1) luaL_addchar(&b, ',');
        luaL_addlstring(&b, s, l);
      }
      luaL_pushresult(&b);
      break;
    default:
      pose_lua_errorf(L, "pose.train_tokenizer: option '%s' must be a boolean, number, string or list, got %s", key,
                      luaL_typename(L, vidx));
  }
  lua_Integer n = (lua_Integer)lua_rawlen(L, kv);
  lua_pushstring(L, key);
  lua_rawseti(L, kv, n + 1);
  lua_rawseti(L, kv, n + 2); /* the value pushed above */
}

static void check_input_file(lua_State *L, const char *f) {
  struct stat sb;
  if (strchr(f, ','))
    pose_lua_errorf(L, "pose.train_tokenizer: input file name '%s' contains a comma, which the trainer cannot take", f);
  if (stat(f, &sb) != 0 || !S_ISREG(sb.st_mode))
    pose_lua_errorf(L, "pose.train_tokenizer: input file '%s' does not exist or is not a file", f);
}

/* pose.train_tokenizer{input=file or {files}, model_prefix=, vocab_size=8192, model_type="bpe", verbose=false, ...}
 * Defaults chosen so that any text round-trips: byte_fallback, split_digits, identity normalisation, whitespace
 * kept as written (runs of spaces, indentation). Every other key goes to the trainer as a flag of the same name. */
static int l_train(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  static const char *const defaults[][2] = {
      {"model_type", "bpe"},          {"vocab_size", "8192"},          {"byte_fallback", "true"},
      {"split_digits", "true"},       {"normalization_rule_name", "identity"},
      {"remove_extra_whitespaces", "false"}, {"allow_whitespace_only_pieces", "true"}, {NULL, NULL}};
  lua_getfield(L, 1, "input");
  if (lua_type(L, -1) == LUA_TSTRING) check_input_file(L, lua_tostring(L, -1));
  else if (lua_istable(L, -1)) {
    lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
    if (n == 0) pose_lua_errorf(L, "pose.train_tokenizer: 'input' is an empty list");
    for (lua_Integer i = 1; i <= n; i++) {
      lua_rawgeti(L, -1, i);
      if (lua_type(L, -1) != LUA_TSTRING) pose_lua_errorf(L, "pose.train_tokenizer: 'input' must list file names");
      check_input_file(L, lua_tostring(L, -1));
      lua_pop(L, 1);
    }
  } else pose_lua_errorf(L, "pose.train_tokenizer: 'input' (a text file or a list of them) is required");
  lua_pop(L, 1);
  lua_getfield(L, 1, "model_prefix");
  if (lua_type(L, -1) != LUA_TSTRING) pose_lua_errorf(L, "pose.train_tokenizer: 'model_prefix' (a string) is required");
  const char *prefix = lua_tostring(L, -1);
  lua_getfield(L, 1, "verbose");
  int verbose = lua_toboolean(L, -1);
  if (!lua_isnil(L, -1) && !lua_isboolean(L, -1)) pose_lua_errorf(L, "pose.train_tokenizer: 'verbose' must be a boolean");
  lua_pop(L, 1);

  lua_newtable(L); /* kv: key1, value1, key2, value2, ... */
  int kv = lua_gettop(L);
  lua_pushnil(L);
  while (lua_next(L, 1)) {
    if (lua_type(L, -2) != LUA_TSTRING) pose_lua_errorf(L, "pose.train_tokenizer: option keys must be strings");
    const char *k = lua_tostring(L, -2);
    if (strcmp(k, "verbose") && strcmp(k, "minloglevel")) push_flag(L, kv, k, -1);
    lua_pop(L, 1);
  }
  for (int i = 0; defaults[i][0]; i++) {
    lua_getfield(L, 1, defaults[i][0]);
    int given = !lua_isnil(L, -1);
    lua_pop(L, 1);
    if (given) continue;
    lua_pushstring(L, defaults[i][1]);
    push_flag(L, kv, defaults[i][0], -1);
    lua_pop(L, 1);
  }
  lua_pushstring(L, verbose ? "0" : "1"); /* INFO lines only when asked for; warnings always */
  push_flag(L, kv, "minloglevel", -1);
  lua_pop(L, 1);

  int n = (int)lua_rawlen(L, kv) / 2;
  const char **keys = lua_newuserdatauv(L, (size_t)(2 * n + 1) * sizeof(char *), 0), **vals = keys + n;
  for (int i = 0; i < n; i++) {
    lua_rawgeti(L, kv, 2 * i + 1);
    keys[i] = lua_tostring(L, -1); /* anchored in kv */
    lua_rawgeti(L, kv, 2 * i + 2);
    vals[i] = lua_tostring(L, -1);
    lua_pop(L, 2);
  }
  POSE_LUA_TRY(L, pose_tokenizer_train(keys, vals, n));
  lua_pushfstring(L, "%s.model", prefix);
  return 1;
}

void pose_lua_open_tokenizer(lua_State *L) {
  if (luaL_newmetatable(L, TOKENIZER_MT)) {
    lua_pushcfunction(L, l_gc); lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, l_tostring); lua_setfield(L, -2, "__tostring");
    lua_pushcfunction(L, l_index); lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_newindex); lua_setfield(L, -2, "__newindex");
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    lua_setfield(L, -2, "methods");
  }
  lua_pop(L, 1);
  lua_pushcfunction(L, l_tokenizer); lua_setfield(L, -2, "tokenizer");
  lua_pushcfunction(L, l_train); lua_setfield(L, -2, "train_tokenizer");
}
