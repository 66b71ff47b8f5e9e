/* Lua bindings for data: token shards (writer and reader), the training-batch loader, and three small helpers the
 * corpus builder needs (zlib/gzip inflate, a fingerprint of normalised text, a JSONL reader).
 *
 *   local w = pose.shard_writer(path, {dtype="u16"|"u32", vocab_size=, eos_id=})
 *   w:add(ids, {source=})  w:num_docs()  w:num_tokens()  w:close() -> docs, tokens  w:abort()
 *   local r = pose.shards(path | {paths})      -- documents are numbered 1..r:num_docs() across the shards in order
 *   r:num_docs() r:num_tokens() r:doc(i, {table=false}) r:doc_len(i) r:source(i) r:eos_id() r:vocab_size()
 *   r:num_shards() r:paths() r:check(vocab?)
 *   local ld = pose.loader{shards=r | path | {paths}, sampler=s, batch=, seed=, rank=, world=, pack=, eos_id=,
 *                          pad_id=, weight="doc"|"tokens", shuffle=true, resample=true}
 *   ld:next() -> {ids=[B,T] i64, positions=[B,T] i64, targets=[B,T] i64, docs={..}}  ld:example(e)
 *   ld:state() ld:set_state(n) ld:info()
 *   pose.inflate(s, pos?) -> data, next_pos   pose.text_hash(s) -> hex   pose.jsonl(path, field?) -> iterator
 */
#define _GNU_SOURCE /* getline */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <zlib.h>

#include "loader.h"
#include "lpose.h"
#include "sampler.h"
#include "shard.h"

#define WRITER_MT "pose.shard_writer"
#define SHARDS_MT "pose.shards"
#define LOADER_MT "pose.loader"
#define JSONL_MT "pose.jsonl"

/* ---- shard writer ------------------------------------------------------------------------------------------ */

typedef struct { pose_shard_writer *w; } lwriter;

static lwriter *check_writer(lua_State *L) {
  lwriter *u = luaL_checkudata(L, 1, WRITER_MT);
  if (!u->w) pose_lua_errorf(L, "pose: shard writer used after close()");
  return u;
}

static int l_shard_writer(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  pose_shard_writer_opts o;
  pose_shard_writer_defaults(&o);
  if (!lua_isnoneornil(L, 2)) {
    luaL_checktype(L, 2, LUA_TTABLE);
    static const char *const known[] = {"dtype", "vocab_size", "eos_id", NULL};
    pose_lua_check_keys(L, 2, "pose.shard_writer", known);
    const char *dt = pose_lua_opt_str(L, 2, "dtype", "u16");
    if (!strcmp(dt, "u16")) o.dtype = POSE_SHARD_U16;
    else if (!strcmp(dt, "u32")) o.dtype = POSE_SHARD_U32;
    else pose_lua_errorf(L, "pose.shard_writer: dtype must be \"u16\" or \"u32\", got \"%s\"", dt);
    lua_Integer v = pose_lua_opt_int(L, 2, "vocab_size", 0);
    if (v < 0 || v > (lua_Integer)UINT32_MAX) pose_lua_errorf(L, "pose.shard_writer: vocab_size %lld out of range", (long long)v);
    o.vocab_size = (uint32_t)v;
    lua_Integer e = pose_lua_opt_int(L, 2, "eos_id", -1);
    if (e < -1 || e > INT32_MAX) pose_lua_errorf(L, "pose.shard_writer: eos_id %lld out of range", (long long)e);
    o.eos_id = (int32_t)e;
  }
  lwriter *u = lua_newuserdatauv(L, sizeof *u, 0);
  u->w = NULL;
  luaL_setmetatable(L, WRITER_MT);
  POSE_LUA_TRY(L, pose_shard_writer_open(path, &o, &u->w));
  return 1;
}

static int w_add(lua_State *L) {
  lwriter *u = check_writer(L);
  const char *source = NULL;
  if (!lua_isnoneornil(L, 3)) {
    luaL_checktype(L, 3, LUA_TTABLE);
    static const char *const known[] = {"source", NULL};
    pose_lua_check_keys(L, 3, "shard_writer:add", known);
    source = pose_lua_opt_str(L, 3, "source", NULL);
  }
  pose_tensor *t = pose_lua_check_ids(L, 2, "shard_writer:add ids");
  int ndim = t->ndim;
  if (ndim > 1) {
    pose_tensor_free(t);
    pose_lua_errorf(L, "shard_writer:add: ids must be one document (1-D), got %d dimensions", ndim);
  }
  pose_status st = pose_shard_writer_add(u->w, pose_tensor_data(t), t->numel, source);
  pose_tensor_free(t);
  if (st != POSE_OK) pose_lua_fail(L, st);
  return 0;
}

static int w_num_docs(lua_State *L) { lua_pushinteger(L, pose_shard_writer_num_docs(check_writer(L)->w)); return 1; }
static int w_num_tokens(lua_State *L) { lua_pushinteger(L, pose_shard_writer_num_tokens(check_writer(L)->w)); return 1; }

static int w_close(lua_State *L) {
  lwriter *u = check_writer(L);
  int64_t d = pose_shard_writer_num_docs(u->w), t = pose_shard_writer_num_tokens(u->w);
  pose_shard_writer *w = u->w;
  u->w = NULL;
  POSE_LUA_TRY(L, pose_shard_writer_close(w));
  lua_pushinteger(L, d);
  lua_pushinteger(L, t);
  return 2;
}

static int w_abort(lua_State *L) {
  lwriter *u = luaL_checkudata(L, 1, WRITER_MT);
  pose_shard_writer_abort(u->w);
  u->w = NULL;
  return 0;
}

static int w_tostring(lua_State *L) {
  lwriter *u = luaL_checkudata(L, 1, WRITER_MT);
  if (!u->w) lua_pushstring(L, "pose.shard_writer (closed)");
  else lua_pushfstring(L, "pose.shard_writer (%d documents, %d tokens so far)", (int)pose_shard_writer_num_docs(u->w),
                       (int)pose_shard_writer_num_tokens(u->w));
  return 1;
}

/* ---- shard reader (one or more shards as one numbered collection) ------------------------------------------ */

typedef struct {
  pose_shard **s;
  int n;
  int64_t *cum; /* n + 1 */
} lshards;

static lshards *check_shards(lua_State *L, int idx) {
  lshards *u = luaL_checkudata(L, idx, SHARDS_MT);
  if (!u->s) pose_lua_errorf(L, "pose: shards used after they were closed");
  return u;
}

static void shards_free(lshards *u) {
  if (!u->s) return;
  for (int i = 0; i < u->n; i++) pose_shard_close(u->s[i]);
  free(u->s);
  free(u->cum);
  u->s = NULL;
  u->cum = NULL;
  u->n = 0;
}

/* Pushes a new shards userdata opened from a path or a list of paths at idx. */
static lshards *push_shards(lua_State *L, int idx) {
  idx = lua_absindex(L, idx);
  int n;
  if (lua_type(L, idx) == LUA_TSTRING) n = 1;
  else if (lua_istable(L, idx)) n = (int)lua_rawlen(L, idx);
  else pose_lua_errorf(L, "pose.shards: expected a path or a list of paths, got %s", luaL_typename(L, idx));
  if (n < 1) pose_lua_errorf(L, "pose.shards: empty list of paths");
  lshards *u = lua_newuserdatauv(L, sizeof *u, 0);
  memset(u, 0, sizeof *u);
  luaL_setmetatable(L, SHARDS_MT);
  u->s = calloc((size_t)n, sizeof *u->s);
  u->cum = calloc((size_t)n + 1, sizeof *u->cum);
  if (!u->s || !u->cum) { free(u->s); free(u->cum); u->s = NULL; u->cum = NULL; pose_lua_errorf(L, "pose.shards: out of memory"); }
  u->n = n;
  for (int i = 0; i < n; i++) {
    const char *p;
    if (lua_type(L, idx) == LUA_TSTRING) p = lua_tostring(L, idx);
    else {
      lua_rawgeti(L, idx, i + 1);
      if (lua_type(L, -1) != LUA_TSTRING) pose_lua_errorf(L, "pose.shards: path %d is a %s, not a string", i + 1, luaL_typename(L, -1));
      p = lua_tostring(L, -1);
      lua_pop(L, 1); /* the string stays alive: the table holds it */
    }
    POSE_LUA_TRY(L, pose_shard_open(p, &u->s[i])); /* on error __gc closes what was opened */
    u->cum[i + 1] = u->cum[i] + pose_shard_num_docs(u->s[i]);
  }
  return u;
}

static int l_shards(lua_State *L) {
  push_shards(L, 1);
  return 1;
}

/* 1-based document number -> (shard, local index); a Lua error when out of range. */
static void locate(lua_State *L, lshards *u, int arg, int *sh, int64_t *loc) {
  lua_Integer i = luaL_checkinteger(L, arg);
  if (i < 1 || i > u->cum[u->n])
    pose_lua_errorf(L, "pose.shards: document %lld out of range 1..%lld", (long long)i, (long long)u->cum[u->n]);
  int lo = 0, hi = u->n;
  while (hi - lo > 1) {
    int mid = (lo + hi) / 2;
    if (u->cum[mid] <= i - 1) lo = mid; else hi = mid;
  }
  *sh = lo;
  *loc = i - 1 - u->cum[lo];
}

static int r_num_docs(lua_State *L) { lshards *u = check_shards(L, 1); lua_pushinteger(L, u->cum[u->n]); return 1; }
static int r_num_shards(lua_State *L) { lua_pushinteger(L, check_shards(L, 1)->n); return 1; }

static int r_num_tokens(lua_State *L) {
  lshards *u = check_shards(L, 1);
  int64_t t = 0;
  for (int i = 0; i < u->n; i++) t += pose_shard_num_tokens(u->s[i]);
  lua_pushinteger(L, t);
  return 1;
}

static int r_doc_len(lua_State *L) {
  lshards *u = check_shards(L, 1);
  int sh; int64_t loc;
  locate(L, u, 2, &sh, &loc);
  lua_pushinteger(L, pose_shard_doc_len(u->s[sh], loc));
  return 1;
}

static int r_source(lua_State *L) {
  lshards *u = check_shards(L, 1);
  int sh; int64_t loc;
  locate(L, u, 2, &sh, &loc);
  lua_pushstring(L, pose_shard_source(u->s[sh], loc));
  return 1;
}

static int r_doc(lua_State *L) {
  lshards *u = check_shards(L, 1);
  int sh; int64_t loc;
  locate(L, u, 2, &sh, &loc);
  int as_table = 0;
  if (!lua_isnoneornil(L, 3)) {
    luaL_checktype(L, 3, LUA_TTABLE);
    static const char *const known[] = {"table", NULL};
    pose_lua_check_keys(L, 3, "shards:doc", known);
    as_table = pose_lua_opt_bool(L, 3, "table", 0);
  }
  const pose_shard *s = u->s[sh];
  int64_t n = pose_shard_doc_len(s, loc), start = pose_shard_doc_start(s, loc);
  const void *tok = pose_shard_tokens(s);
  pose_shard_dtype dt = pose_shard_get_dtype(s);
  if (as_table) {
    lua_createtable(L, (int)n, 0);
    for (int64_t k = 0; k < n; k++) {
      lua_pushinteger(L, pose_shard_token_at(tok, dt, start + k));
      lua_rawseti(L, -2, k + 1);
    }
    return 1;
  }
  pose_tensor *t;
  int64_t shape[1] = {n};
  POSE_LUA_TRY(L, pose_tensor_zeros(&t, POSE_I64, POSE_DEVICE_CPU, 1, shape));
  pose_lua_push_tensor(L, t);
  POSE_LUA_TRY(L, pose_shard_read(s, loc, 0, n, pose_tensor_data(t)));
  return 1;
}

/* The value every shard agrees on, or nil when none records one / they differ. */
static int r_eos_id(lua_State *L) {
  lshards *u = check_shards(L, 1);
  int64_t v = pose_shard_eos_id(u->s[0]);
  for (int i = 1; i < u->n; i++) if (pose_shard_eos_id(u->s[i]) != v) v = -1;
  if (v < 0) lua_pushnil(L); else lua_pushinteger(L, v);
  return 1;
}

static int r_vocab_size(lua_State *L) {
  lshards *u = check_shards(L, 1);
  int64_t v = pose_shard_vocab_size(u->s[0]);
  for (int i = 1; i < u->n; i++) if ((int64_t)pose_shard_vocab_size(u->s[i]) != v) v = 0;
  if (v <= 0) lua_pushnil(L); else lua_pushinteger(L, v);
  return 1;
}

static int r_paths(lua_State *L) {
  lshards *u = check_shards(L, 1);
  lua_createtable(L, u->n, 0);
  for (int i = 0; i < u->n; i++) { lua_pushstring(L, pose_shard_path(u->s[i])); lua_rawseti(L, -2, i + 1); }
  return 1;
}

static int r_dtypes(lua_State *L) {
  lshards *u = check_shards(L, 1);
  lua_createtable(L, u->n, 0);
  for (int i = 0; i < u->n; i++) {
    lua_pushstring(L, pose_shard_get_dtype(u->s[i]) == POSE_SHARD_U16 ? "u16" : "u32");
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

static int r_check(lua_State *L) {
  lshards *u = check_shards(L, 1);
  lua_Integer v = luaL_optinteger(L, 2, 0);
  if (v < 0 || v > (lua_Integer)UINT32_MAX) pose_lua_errorf(L, "shards:check: vocab %lld out of range", (long long)v);
  for (int i = 0; i < u->n; i++) POSE_LUA_TRY(L, pose_shard_check_tokens(u->s[i], (uint32_t)v));
  lua_pushboolean(L, 1);
  return 1;
}

static int r_close(lua_State *L) { shards_free(luaL_checkudata(L, 1, SHARDS_MT)); return 0; }

static int r_tostring(lua_State *L) {
  lshards *u = luaL_checkudata(L, 1, SHARDS_MT);
  if (!u->s) { lua_pushstring(L, "pose.shards (closed)"); return 1; }
  int64_t t = 0;
  for (int i = 0; i < u->n; i++) t += pose_shard_num_tokens(u->s[i]);
  char buf[160];
  snprintf(buf, sizeof buf, "pose.shards (%d files, %lld documents, %lld tokens)", u->n, (long long)u->cum[u->n],
           (long long)t);
  lua_pushstring(L, buf);
  return 1;
}

/* ---- loader ------------------------------------------------------------------------------------------------ */

typedef struct { pose_loader *ld; } lloader;

static lloader *check_loader(lua_State *L) {
  lloader *u = luaL_checkudata(L, 1, LOADER_MT);
  if (!u->ld) pose_lua_errorf(L, "pose: loader used after it was freed");
  return u;
}

static int l_loader(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  static const char *const known[] = {"shards", "sampler", "batch", "seed", "rank", "world", "pack", "eos_id",
                                      "pad_id", "weight", "shuffle", "resample", NULL};
  pose_lua_check_keys(L, 1, "pose.loader", known);
  pose_loader_opts o;
  pose_loader_defaults(&o);
  o.batch = pose_lua_opt_int(L, 1, "batch", 1);
  o.seed = (uint64_t)pose_lua_opt_int(L, 1, "seed", 0);
  o.rank = pose_lua_opt_int(L, 1, "rank", 0);
  o.world = pose_lua_opt_int(L, 1, "world", 1);
  lua_getfield(L, 1, "pack");
  if (!lua_isnil(L, -1)) {
    if (!lua_isboolean(L, -1)) pose_lua_errorf(L, "pose.loader: pack must be a boolean, got %s", luaL_typename(L, -1));
    o.pack = lua_toboolean(L, -1);
  }
  lua_pop(L, 1);
  o.eos_id = pose_lua_opt_int(L, 1, "eos_id", -1);
  o.pad_id = pose_lua_opt_int(L, 1, "pad_id", -1);
  const char *wgt = pose_lua_opt_str(L, 1, "weight", "doc");
  if (!strcmp(wgt, "doc")) o.weight = POSE_WEIGHT_DOC;
  else if (!strcmp(wgt, "tokens")) o.weight = POSE_WEIGHT_TOKENS;
  else pose_lua_errorf(L, "pose.loader: weight must be \"doc\" or \"tokens\", got \"%s\"", wgt);
  o.shuffle = pose_lua_opt_bool(L, 1, "shuffle", 1);
  o.resample = pose_lua_opt_bool(L, 1, "resample", 1);
  if (o.batch < 1) pose_lua_errorf(L, "pose.loader: batch must be >= 1, got %lld", (long long)o.batch);
  if (o.world < 1 || o.rank < 0 || o.rank >= o.world)
    pose_lua_errorf(L, "pose.loader: rank %lld outside world %lld", (long long)o.rank, (long long)o.world);
  /* sampler */
  lua_getfield(L, 1, "sampler");
  int samp_idx = lua_gettop(L);
  pose_sampler *sampler = pose_lua_test_sampler(L, samp_idx);
  if (!sampler) pose_lua_errorf(L, "pose.loader: sampler must be a pose.sampler, got %s", luaL_typename(L, samp_idx));
  /* shards: a pose.shards or path(s) */
  lua_getfield(L, 1, "shards");
  int sh_idx = lua_gettop(L);
  lshards *sh = luaL_testudata(L, sh_idx, SHARDS_MT);
  if (!sh) {
    if (lua_isnil(L, sh_idx)) pose_lua_errorf(L, "pose.loader: shards is required (a pose.shards or path(s))");
    sh = push_shards(L, sh_idx);
    lua_replace(L, sh_idx);
  }
  if (!sh->s) pose_lua_errorf(L, "pose.loader: the shards were closed");
  lloader *u = lua_newuserdatauv(L, sizeof *u, 2);
  u->ld = NULL;
  luaL_setmetatable(L, LOADER_MT);
  /* the loader borrows both: keep them alive as long as it is */
  lua_pushvalue(L, sh_idx); lua_setiuservalue(L, -2, 1);
  lua_pushvalue(L, samp_idx); lua_setiuservalue(L, -2, 2);
  POSE_LUA_TRY(L, pose_loader_new(sh->s, sh->n, sampler, &o, &u->ld));
  return 1;
}

static pose_tensor *push_i64(lua_State *L, int ndim, int64_t d0, int64_t d1) {
  pose_tensor *t;
  int64_t shape[2] = {d0, d1};
  POSE_LUA_TRY(L, pose_tensor_zeros(&t, POSE_I64, POSE_DEVICE_CPU, ndim, shape));
  pose_lua_push_tensor(L, t);
  return t;
}

static int ld_next(lua_State *L) {
  lloader *u = check_loader(L);
  int64_t B = pose_loader_batch(u->ld), T = pose_loader_seq_len(u->ld);
  lua_createtable(L, 0, 4);
  pose_tensor *ids = push_i64(L, 2, B, T); lua_setfield(L, -2, "ids");
  pose_tensor *pos = push_i64(L, 2, B, T); lua_setfield(L, -2, "positions");
  pose_tensor *tgt = push_i64(L, 2, B, T); lua_setfield(L, -2, "targets");
  int64_t *docs = lua_newuserdatauv(L, sizeof(int64_t) * (size_t)B, 0);
  POSE_LUA_TRY(L, pose_loader_next(u->ld, pose_tensor_data(ids), pose_tensor_data(pos), pose_tensor_data(tgt), docs));
  lua_createtable(L, (int)B, 0);
  for (int64_t b = 0; b < B; b++) { lua_pushinteger(L, docs[b] + 1); lua_rawseti(L, -2, b + 1); }
  lua_setfield(L, -3, "docs");
  lua_pop(L, 1);
  return 1;
}

static int ld_example(lua_State *L) {
  lloader *u = check_loader(L);
  lua_Integer e = luaL_checkinteger(L, 2);
  if (e < 0) pose_lua_errorf(L, "loader:example: index %lld is negative (examples count from 0)", (long long)e);
  int64_t T = pose_loader_seq_len(u->ld), doc = 0;
  lua_createtable(L, 0, 4);
  pose_tensor *ids = push_i64(L, 1, T, 0); lua_setfield(L, -2, "ids");
  pose_tensor *pos = push_i64(L, 1, T, 0); lua_setfield(L, -2, "positions");
  pose_tensor *tgt = push_i64(L, 1, T, 0); lua_setfield(L, -2, "targets");
  POSE_LUA_TRY(L, pose_loader_example(u->ld, (uint64_t)e, pose_tensor_data(ids), pose_tensor_data(pos),
                                      pose_tensor_data(tgt), &doc));
  lua_pushinteger(L, doc + 1);
  lua_setfield(L, -2, "doc");
  return 1;
}

static int ld_state(lua_State *L) { lua_pushinteger(L, (lua_Integer)pose_loader_state(check_loader(L)->ld)); return 1; }

static int ld_set_state(lua_State *L) {
  lloader *u = check_loader(L);
  lua_Integer n = luaL_checkinteger(L, 2);
  if (n < 0) pose_lua_errorf(L, "loader:set_state: %lld is negative", (long long)n);
  pose_loader_set_state(u->ld, (uint64_t)n);
  return 0;
}

static int ld_info(lua_State *L) {
  lloader *u = check_loader(L);
  const pose_loader *ld = u->ld;
  lua_createtable(L, 0, 8);
  lua_pushinteger(L, pose_loader_seq_len(ld)); lua_setfield(L, -2, "seq_len");
  lua_pushinteger(L, pose_loader_batch(ld)); lua_setfield(L, -2, "batch");
  lua_pushinteger(L, pose_loader_num_units(ld)); lua_setfield(L, -2, "units");
  lua_pushinteger(L, pose_loader_epoch_len(ld)); lua_setfield(L, -2, "epoch_len");
  lua_pushinteger(L, pose_loader_skipped_docs(ld)); lua_setfield(L, -2, "skipped_docs");
  lua_pushinteger(L, pose_loader_packed_docs(ld)); lua_setfield(L, -2, "packed_docs");
  lua_pushinteger(L, pose_loader_eos_id(ld)); lua_setfield(L, -2, "eos_id");
  lua_pushinteger(L, (lua_Integer)pose_loader_state(ld)); lua_setfield(L, -2, "state");
  return 1;
}

static int ld_gc(lua_State *L) {
  lloader *u = luaL_checkudata(L, 1, LOADER_MT);
  pose_loader_free(u->ld);
  u->ld = NULL;
  return 0;
}

static int ld_tostring(lua_State *L) {
  lloader *u = luaL_checkudata(L, 1, LOADER_MT);
  if (!u->ld) { lua_pushstring(L, "pose.loader (freed)"); return 1; }
  char buf[200];
  snprintf(buf, sizeof buf, "pose.loader (batch %lld x %lld, %lld units, state %llu)",
           (long long)pose_loader_batch(u->ld), (long long)pose_loader_seq_len(u->ld),
           (long long)pose_loader_num_units(u->ld), (unsigned long long)pose_loader_state(u->ld));
  lua_pushstring(L, buf);
  return 1;
}

/* ---- helpers for the corpus builder ------------------------------------------------------------------------ */

/* pose.inflate(s, pos?) -> data, next_pos: one zlib or gzip stream starting at byte pos (1-based, default 1);
 * next_pos is the position right after the stream (where the next one, if any, starts). */
static int l_inflate(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  lua_Integer pos = luaL_optinteger(L, 2, 1);
  if (pos < 1 || (size_t)pos > len + 1) pose_lua_errorf(L, "pose.inflate: position %lld outside 1..%zu", (long long)pos, len + 1);
  z_stream z;
  memset(&z, 0, sizeof z);
  if (inflateInit2(&z, 15 + 32) != Z_OK) pose_lua_errorf(L, "pose.inflate: zlib init failed");
  z.next_in = (Bytef *)(s + pos - 1);
  z.avail_in = (uInt)(len - (size_t)(pos - 1));
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  int rc;
  do {
    char *out = luaL_prepbuffsize(&b, 65536);
    z.next_out = (Bytef *)out;
    z.avail_out = 65536;
    rc = inflate(&z, Z_NO_FLUSH);
    luaL_addsize(&b, 65536 - z.avail_out);
    if (rc == Z_BUF_ERROR && z.avail_in == 0) { inflateEnd(&z); pose_lua_errorf(L, "pose.inflate: truncated stream"); }
    if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR) {
      const char *m = z.msg ? z.msg : "corrupt data";
      char msg[200];
      snprintf(msg, sizeof msg, "%s", m);
      inflateEnd(&z);
      pose_lua_errorf(L, "pose.inflate: %s (at byte %lld)", msg, (long long)pos);
    }
  } while (rc != Z_STREAM_END);
  lua_Integer next = pos + (lua_Integer)z.total_in;
  inflateEnd(&z);
  luaL_pushresult(&b);
  lua_pushinteger(L, next);
  return 2;
}

/* pose.text_hash(s) -> 16 hex digits: FNV-1a (64-bit) of the text with ASCII letters lowercased and every run of
 * whitespace folded to one space (leading/trailing removed), so that copies differing only in case or layout
 * collide on purpose. */
static int l_text_hash(lua_State *L) {
  size_t len;
  const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &len);
  uint64_t h = 1469598103934665603ull;
  int pending_space = 0, started = 0;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = s[i];
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') { pending_space = started; continue; }
    if (pending_space) { h ^= ' '; h *= 1099511628211ull; pending_space = 0; }
    if (c >= 'A' && c <= 'Z') c = (unsigned char)(c + 32);
    h ^= c;
    h *= 1099511628211ull;
    started = 1;
  }
  char buf[17];
  snprintf(buf, sizeof buf, "%016llx", (unsigned long long)h);
  lua_pushstring(L, buf);
  return 1;
}

/* pose.jsonl(path, field?) -> iterator yielding (text, line_number) for every non-blank line; a line that is not
 * a JSON object with a string `field` (default "text") is a Lua error naming the file and line. */
typedef struct {
  FILE *f;
  char *line;
  size_t cap;
  long lineno;
} ljsonl;

static int jsonl_gc(lua_State *L) {
  ljsonl *j = luaL_checkudata(L, 1, JSONL_MT);
  if (j->f) fclose(j->f);
  free(j->line);
  j->f = NULL;
  j->line = NULL;
  return 0;
}

static int jsonl_next(lua_State *L) {
  ljsonl *j = luaL_checkudata(L, lua_upvalueindex(1), JSONL_MT);
  const char *path = lua_tostring(L, lua_upvalueindex(2));
  const char *field = lua_tostring(L, lua_upvalueindex(3));
  if (!j->f) return 0;
  for (;;) {
    ssize_t n = getline(&j->line, &j->cap, j->f);
    if (n < 0) {
      int err = ferror(j->f);
      fclose(j->f);
      j->f = NULL;
      if (err) pose_lua_errorf(L, "pose.jsonl: reading %s failed", path);
      return 0;
    }
    j->lineno++;
    const char *p = j->line;
    while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') p++;
    if (!*p) continue;
    cJSON *obj = cJSON_ParseWithLength(j->line, (size_t)n);
    if (!obj || !cJSON_IsObject(obj)) {
      cJSON_Delete(obj);
      pose_lua_errorf(L, "pose.jsonl: %s line %ld is not a JSON object", path, j->lineno);
    }
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(obj, field);
    if (!cJSON_IsString(t)) {
      cJSON_Delete(obj);
      pose_lua_errorf(L, "pose.jsonl: %s line %ld has no string field \"%s\"", path, j->lineno, field);
    }
    lua_pushstring(L, t->valuestring);
    cJSON_Delete(obj);
    lua_pushinteger(L, j->lineno);
    return 2;
  }
}

static int l_jsonl(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  luaL_optstring(L, 2, "text");
  lua_settop(L, 2);
  ljsonl *j = lua_newuserdatauv(L, sizeof *j, 0);
  memset(j, 0, sizeof *j);
  luaL_setmetatable(L, JSONL_MT);
  j->f = fopen(path, "rb");
  if (!j->f) pose_lua_errorf(L, "pose.jsonl: cannot open %s: %s", path, strerror(errno));
  lua_pushvalue(L, 1);
  if (lua_isnoneornil(L, 2)) lua_pushstring(L, "text"); else lua_pushvalue(L, 2);
  lua_pushcclosure(L, jsonl_next, 3);
  return 1;
}

/* ---- registration ------------------------------------------------------------------------------------------ */

static void new_class(lua_State *L, const char *name, const luaL_Reg *methods, lua_CFunction gc, lua_CFunction tostr) {
  if (luaL_newmetatable(L, name)) {
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    lua_setfield(L, -2, "__index");
    if (gc) { lua_pushcfunction(L, gc); lua_setfield(L, -2, "__gc"); }
    if (tostr) { lua_pushcfunction(L, tostr); lua_setfield(L, -2, "__tostring"); }
  }
  lua_pop(L, 1);
}

void pose_lua_open_data(lua_State *L) {
  static const luaL_Reg wm[] = {{"add", w_add}, {"num_docs", w_num_docs}, {"num_tokens", w_num_tokens},
                                {"close", w_close}, {"abort", w_abort}, {NULL, NULL}};
  new_class(L, WRITER_MT, wm, w_abort, w_tostring);
  static const luaL_Reg rm[] = {{"num_docs", r_num_docs}, {"num_tokens", r_num_tokens}, {"num_shards", r_num_shards},
                                {"doc", r_doc}, {"doc_len", r_doc_len}, {"source", r_source}, {"eos_id", r_eos_id},
                                {"vocab_size", r_vocab_size}, {"paths", r_paths}, {"dtypes", r_dtypes},
                                {"check", r_check}, {"close", r_close}, {NULL, NULL}};
  new_class(L, SHARDS_MT, rm, r_close, r_tostring);
  static const luaL_Reg lm[] = {{"next", ld_next}, {"example", ld_example}, {"state", ld_state},
                                {"set_state", ld_set_state}, {"info", ld_info}, {NULL, NULL}};
  new_class(L, LOADER_MT, lm, ld_gc, ld_tostring);
  static const luaL_Reg jm[] = {{NULL, NULL}};
  new_class(L, JSONL_MT, jm, jsonl_gc, NULL);
  static const luaL_Reg fns[] = {{"shard_writer", l_shard_writer}, {"shards", l_shards}, {"loader", l_loader},
                                 {"inflate", l_inflate}, {"text_hash", l_text_hash}, {"jsonl", l_jsonl},
                                 {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
}
