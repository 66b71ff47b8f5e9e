/* Lua bindings of the training-example samplers and the coverage analysis (core/sampler.h, core/coverage.h).
 *
 *   local s = pose.sampler{method="pose"|"randpos"|"full"|"pi", train_len=, target_len=, chunks=2,
 *                          content="uniform"|"zero"|"aligned", seed=0, chunk_rule="paper"|"code",
 *                          u0="zero"|"random", short_docs="skip"|"whole", max_doc_tokens=0}
 *   s:sample(doc_len, index?) -> {positions={..}, offsets={..}, chunks={{offset=, len=, position=}, ..}, len=, index=}
 *       0-based values; index omitted: the sampler's own counter (starts at 0, +1 per such call; an explicit index
 *       leaves the counter alone). len = number of tokens (< example_len only for a short document under "whole").
 *   s:example_len(doc_len?)  s:min_doc_len()  s:max_chunks()  s:options()  s:index()  s:seek(index)
 *   s:coverage(doc_len, K, {start_index=0, method="auto"})  or  pose.coverage(s, doc_len, K, {..})
 *   pose.coverage({positions_1, positions_2, ...}, target_len, {method=})   -- examples from anywhere
 *       -> {distance_hist = i64 tensor [Lt], position_hist = i64 tensor [Lt], fraction=, covered=, draws=, target_len=}
 * train_len and target_len are required; seed is any Lua integer (read as unsigned 64 bits). */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "coverage.h"
#include "lpose.h"
#include "sampler.h"

#define SAMPLER_MT "pose.sampler"

typedef struct {
  pose_sampler *s;
  uint64_t counter;
} lsampler;

static lsampler *check_sampler(lua_State *L, int idx) {
  lsampler *u = luaL_checkudata(L, idx, SAMPLER_MT);
  if (!u->s) pose_lua_errorf(L, "pose: sampler used after it was freed");
  return u;
}

struct pose_sampler *pose_lua_test_sampler(lua_State *L, int idx) {
  lsampler *u = luaL_testudata(L, idx, SAMPLER_MT);
  if (!u) return NULL;
  if (!u->s) pose_lua_errorf(L, "pose: sampler used after it was freed");
  return u->s;
}

static int parse_enum(lua_State *L, int tbl, const char *key, const char *def, int (*parse)(const char *),
                      const char *choices) {
  const char *v = pose_lua_opt_str(L, tbl, key, def);
  int e = parse(v);
  if (e < 0) pose_lua_errorf(L, "pose.sampler: unknown %s '%s' (expected %s)", key, v, choices);
  return e;
}

static int u0_parse(const char *s) { return strcmp(s, "zero") == 0 ? 0 : strcmp(s, "random") == 0 ? 1 : -1; }

static lua_Integer required_int(lua_State *L, int tbl, const char *key) {
  lua_getfield(L, tbl, key);
  int missing = lua_isnil(L, -1);
  lua_pop(L, 1);
  if (missing) pose_lua_errorf(L, "pose.sampler: %s is required", key);
  return pose_lua_opt_int(L, tbl, key, 0);
}

/* pose.sampler{...} */
static int l_sampler(lua_State *L) {
  static const char *const keys[] = {"method",  "train_len", "target_len", "chunks",         "content", "seed",
                                     "chunk_rule", "u0",     "short_docs", "max_doc_tokens", NULL};
  luaL_checktype(L, 1, LUA_TTABLE);
  pose_lua_check_keys(L, 1, "pose.sampler", keys);
  pose_sampler_opts o;
  pose_sampler_defaults(&o);
  o.method = parse_enum(L, 1, "method", "pose", pose_sample_method_parse, "pose, randpos, full or pi");
  o.train_len = required_int(L, 1, "train_len");
  o.target_len = required_int(L, 1, "target_len");
  lua_Integer chunks = pose_lua_opt_int(L, 1, "chunks", 2);
  if (chunks < 1 || chunks > INT_MAX) /* the range against train_len is checked by pose_sampler_new */
    pose_lua_errorf(L, "pose.sampler: chunks must be in 1..train_len, got %lld", (long long)chunks);
  o.chunks = (int)chunks;
  o.content = parse_enum(L, 1, "content", "uniform", pose_sample_content_parse, "uniform, zero or aligned");
  o.chunk_rule = parse_enum(L, 1, "chunk_rule", "paper", pose_chunk_rule_parse, "paper or code");
  o.u0_random = parse_enum(L, 1, "u0", "zero", u0_parse, "zero or random");
  o.short_docs = parse_enum(L, 1, "short_docs", "skip", pose_short_docs_parse, "skip or whole");
  o.max_doc_tokens = pose_lua_opt_int(L, 1, "max_doc_tokens", 0);
  o.seed = (uint64_t)pose_lua_opt_int(L, 1, "seed", 0);
  lsampler *u = lua_newuserdatauv(L, sizeof *u, 0);
  u->s = NULL;
  u->counter = 0;
  luaL_setmetatable(L, SAMPLER_MT);
  POSE_LUA_TRY(L, pose_sampler_new(&o, &u->s));
  return 1;
}

static int64_t check_doc_len(lua_State *L, int idx) {
  int ok;
  lua_Integer n = lua_tointegerx(L, idx, &ok);
  if (!ok || n < 1) pose_lua_errorf(L, "pose: doc_len must be a positive integer (tokens in the document)");
  return n;
}

static void push_int_array(lua_State *L, const int64_t *v, int64_t n) {
  lua_createtable(L, (int)n, 0);
  for (int64_t i = 0; i < n; i++) { lua_pushinteger(L, v[i]); lua_rawseti(L, -2, i + 1); }
}

/* s:sample(doc_len, index?) */
static int m_sample(lua_State *L) {
  lsampler *u = check_sampler(L, 1);
  int64_t doc_len = check_doc_len(L, 2);
  uint64_t index;
  int own = lua_isnoneornil(L, 3);
  if (own) index = u->counter;
  else {
    int ok;
    lua_Integer i = lua_tointegerx(L, 3, &ok);
    if (!ok || i < 0) pose_lua_errorf(L, "pose: sample index must be a non-negative integer");
    index = (uint64_t)i;
  }
  int64_t n;
  POSE_LUA_TRY(L, pose_sampler_doc_tokens(u->s, doc_len, &n));
  int64_t maxc = pose_sampler_max_chunks(u->s);
  if (maxc > n) maxc = n;
  /* one block for positions, offsets and chunks, owned by a userdata so that a Lua error cannot leak it */
  size_t bytes = (size_t)n * 2 * sizeof(int64_t) + (size_t)maxc * sizeof(pose_chunk);
  int64_t *pos = lua_newuserdatauv(L, bytes, 0), *off = pos + n;
  pose_chunk *ch = (pose_chunk *)(off + n);
  int nc = 0;
  POSE_LUA_TRY(L, pose_sampler_draw(u->s, doc_len, index, pos, off, ch, (int)maxc, &nc));
  if (own) u->counter++;
  lua_createtable(L, 0, 5);
  push_int_array(L, pos, n); lua_setfield(L, -2, "positions");
  push_int_array(L, off, n); lua_setfield(L, -2, "offsets");
  lua_createtable(L, nc, 0);
  for (int i = 0; i < nc; i++) {
    lua_createtable(L, 0, 3);
    lua_pushinteger(L, ch[i].offset); lua_setfield(L, -2, "offset");
    lua_pushinteger(L, ch[i].len); lua_setfield(L, -2, "len");
    lua_pushinteger(L, ch[i].position); lua_setfield(L, -2, "position");
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "chunks");
  lua_pushinteger(L, n); lua_setfield(L, -2, "len");
  lua_pushinteger(L, (lua_Integer)index); lua_setfield(L, -2, "index");
  return 1;
}

/* s:example_len(doc_len?) */
static int m_example_len(lua_State *L) {
  lsampler *u = check_sampler(L, 1);
  if (lua_isnoneornil(L, 2)) { lua_pushinteger(L, pose_sampler_example_len(u->s)); return 1; }
  int64_t n;
  POSE_LUA_TRY(L, pose_sampler_doc_tokens(u->s, check_doc_len(L, 2), &n));
  lua_pushinteger(L, n);
  return 1;
}

static int m_min_doc_len(lua_State *L) { lua_pushinteger(L, pose_sampler_min_doc_len(check_sampler(L, 1)->s)); return 1; }
static int m_max_chunks(lua_State *L) { lua_pushinteger(L, pose_sampler_max_chunks(check_sampler(L, 1)->s)); return 1; }
static int m_index(lua_State *L) { lua_pushinteger(L, (lua_Integer)check_sampler(L, 1)->counter); return 1; }

/* s:seek(index): the next s:sample without an index draws example `index` (resuming a run) */
static int m_seek(lua_State *L) {
  lsampler *u = check_sampler(L, 1);
  int ok;
  lua_Integer i = lua_tointegerx(L, 2, &ok);
  if (!ok || i < 0) pose_lua_errorf(L, "pose: seek index must be a non-negative integer");
  u->counter = (uint64_t)i;
  lua_settop(L, 1);
  return 1;
}

/* s:options() -> the resolved options with the names pose.sampler takes (round-trips into pose.sampler) */
static int m_options(lua_State *L) {
  const pose_sampler_opts *o = pose_sampler_options(check_sampler(L, 1)->s);
  lua_createtable(L, 0, 10);
  lua_pushstring(L, pose_sample_method_name(o->method)); lua_setfield(L, -2, "method");
  lua_pushinteger(L, o->train_len); lua_setfield(L, -2, "train_len");
  lua_pushinteger(L, o->target_len); lua_setfield(L, -2, "target_len");
  lua_pushinteger(L, o->chunks); lua_setfield(L, -2, "chunks");
  lua_pushstring(L, pose_sample_content_name(o->content)); lua_setfield(L, -2, "content");
  lua_pushinteger(L, (lua_Integer)o->seed); lua_setfield(L, -2, "seed");
  lua_pushstring(L, pose_chunk_rule_name(o->chunk_rule)); lua_setfield(L, -2, "chunk_rule");
  lua_pushstring(L, o->u0_random ? "random" : "zero"); lua_setfield(L, -2, "u0");
  lua_pushstring(L, pose_short_docs_name(o->short_docs)); lua_setfield(L, -2, "short_docs");
  lua_pushinteger(L, o->max_doc_tokens); lua_setfield(L, -2, "max_doc_tokens");
  return 1;
}

/* ---- coverage -------------------------------------------------------------------------------------------------- */

typedef struct { pose_coverage *c; } lcoverage; /* a userdata anchoring the accumulator while Lua may raise */

static int cov_gc(lua_State *L) {
  lcoverage *a = lua_touserdata(L, 1);
  pose_coverage_free(a->c);
  a->c = NULL;
  return 0;
}

static lcoverage *new_anchor(lua_State *L, int64_t lt) {
  lcoverage *a = lua_newuserdatauv(L, sizeof *a, 0);
  a->c = NULL;
  if (luaL_newmetatable(L, "pose.coverage_anchor")) { lua_pushcfunction(L, cov_gc); lua_setfield(L, -2, "__gc"); }
  lua_setmetatable(L, -2);
  POSE_LUA_TRY(L, pose_coverage_new(lt, &a->c));
  return a;
}

static pose_coverage_method check_cov_method(lua_State *L, int tbl) {
  const char *m = pose_lua_opt_str(L, tbl, "method", "auto");
  if (strcmp(m, "auto") == 0) return POSE_COVERAGE_AUTO;
  if (strcmp(m, "intervals") == 0) return POSE_COVERAGE_INTERVALS;
  if (strcmp(m, "bitset") == 0) return POSE_COVERAGE_BITSET;
  if (strcmp(m, "pairs") == 0) return POSE_COVERAGE_PAIRS;
  pose_lua_errorf(L, "pose.coverage: unknown method '%s' (expected auto, intervals, bitset or pairs)", m);
}

static int push_coverage(lua_State *L, pose_coverage *c) {
  int64_t lt = pose_coverage_target_len(c), covered;
  pose_tensor *dh, *ph;
  POSE_LUA_TRY(L, pose_tensor_zeros(&dh, POSE_I64, POSE_DEVICE_CPU, 1, &lt));
  pose_lua_push_tensor(L, dh);
  POSE_LUA_TRY(L, pose_tensor_zeros(&ph, POSE_I64, POSE_DEVICE_CPU, 1, &lt));
  pose_lua_push_tensor(L, ph);
  POSE_LUA_TRY(L, pose_coverage_result(c, pose_tensor_data(dh), pose_tensor_data(ph), &covered));
  lua_createtable(L, 0, 6);
  lua_pushvalue(L, -3); lua_setfield(L, -2, "distance_hist");
  lua_pushvalue(L, -2); lua_setfield(L, -2, "position_hist");
  lua_pushnumber(L, lt == 1 ? 1.0 : (double)covered / (double)(lt - 1)); lua_setfield(L, -2, "fraction");
  lua_pushinteger(L, covered); lua_setfield(L, -2, "covered");
  lua_pushinteger(L, pose_coverage_draws(c)); lua_setfield(L, -2, "draws");
  lua_pushinteger(L, lt); lua_setfield(L, -2, "target_len");
  return 1;
}

/* s:coverage(doc_len, K, {start_index=, method=}) */
static int m_coverage(lua_State *L) {
  static const char *const keys[] = {"start_index", "method", NULL};
  lsampler *u = check_sampler(L, 1);
  int64_t doc_len = check_doc_len(L, 2);
  int ok;
  lua_Integer k = lua_tointegerx(L, 3, &ok);
  if (!ok || k < 1) pose_lua_errorf(L, "pose.coverage: the number of draws K must be a positive integer");
  if (!lua_isnoneornil(L, 4)) luaL_checktype(L, 4, LUA_TTABLE);
  pose_lua_check_keys(L, 4, "pose.coverage", keys);
  lua_Integer start = pose_lua_opt_int(L, 4, "start_index", 0);
  if (start < 0) pose_lua_errorf(L, "pose.coverage: start_index must be >= 0");
  pose_coverage_method how = check_cov_method(L, 4);
  lcoverage *a = new_anchor(L, pose_sampler_options(u->s)->target_len);
  pose_coverage_set_method(a->c, how);
  POSE_LUA_TRY(L, pose_coverage_add_sampler(a->c, u->s, doc_len, k, (uint64_t)start));
  return push_coverage(L, a->c);
}

/* pose.coverage(sampler, doc_len, K, opts) or pose.coverage({examples}, target_len, {method=}) */
static int l_coverage(lua_State *L) {
  if (luaL_testudata(L, 1, SAMPLER_MT)) return m_coverage(L);
  if (!lua_istable(L, 1))
    pose_lua_errorf(L, "pose.coverage: expected a sampler or a list of position lists, got %s", luaL_typename(L, 1));
  int ok;
  lua_Integer lt = lua_tointegerx(L, 2, &ok);
  if (!ok || lt < 1) pose_lua_errorf(L, "pose.coverage: target_len must be a positive integer");
  static const char *const keys[] = {"method", NULL};
  if (!lua_isnoneornil(L, 3)) luaL_checktype(L, 3, LUA_TTABLE);
  pose_lua_check_keys(L, 3, "pose.coverage", keys);
  pose_coverage_method how = check_cov_method(L, 3);
  lcoverage *a = new_anchor(L, lt);
  pose_coverage_set_method(a->c, how);
  lua_Integer n = (lua_Integer)lua_rawlen(L, 1);
  if (n < 1) pose_lua_errorf(L, "pose.coverage: the list of examples is empty");
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, 1, i);
    pose_tensor *t = pose_lua_check_ids(L, lua_gettop(L), "positions");
    pose_lua_push_tensor(L, t); /* GC owns it */
    if (t->ndim != 1) pose_lua_errorf(L, "pose.coverage: example %lld must be a flat list of positions", (long long)i);
    pose_status st = pose_coverage_add(a->c, pose_tensor_data(t), t->numel);
    if (st) pose_lua_errorf(L, "pose.coverage: example %lld: %s", (long long)i, pose_error_message());
    lua_pop(L, 2);
  }
  return push_coverage(L, a->c);
}

static int m_gc(lua_State *L) {
  lsampler *u = luaL_checkudata(L, 1, SAMPLER_MT);
  pose_sampler_free(u->s);
  u->s = NULL;
  return 0;
}

static int m_tostring(lua_State *L) {
  lsampler *u = check_sampler(L, 1);
  const pose_sampler_opts *o = pose_sampler_options(u->s);
  if (o->method == POSE_SAMPLE_POSE)
    lua_pushfstring(L, "pose.sampler(pose, %I -> %I, chunks %d, %s, %s)", (lua_Integer)o->train_len,
                    (lua_Integer)o->target_len, o->chunks, pose_sample_content_name(o->content),
                    pose_chunk_rule_name(o->chunk_rule));
  else
    lua_pushfstring(L, "pose.sampler(%s, %I -> %I)", pose_sample_method_name(o->method), (lua_Integer)o->train_len,
                    (lua_Integer)o->target_len);
  return 1;
}

void pose_lua_open_sampler(lua_State *L) {
  static const luaL_Reg methods[] = {{"sample", m_sample},       {"example_len", m_example_len},
                                     {"min_doc_len", m_min_doc_len}, {"max_chunks", m_max_chunks},
                                     {"options", m_options},     {"coverage", m_coverage},
                                     {"index", m_index},         {"seek", m_seek},
                                     {NULL, NULL}};
  if (luaL_newmetatable(L, SAMPLER_MT)) {
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, m_gc); lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, m_tostring); lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);
  static const luaL_Reg fns[] = {{"sampler", l_sampler}, {"coverage", l_coverage}, {NULL, NULL}};
  luaL_setfuncs(L, fns, 0);
}
