/* Shared helpers of the Lua bindings: status -> Lua error, tensor userdata, tables of integers. Each binding file
 * (l_*.c) exports one `pose_lua_open_<x>(lua_State *L)` that adds its functions to the `pose` table on top of the
 * stack; lua/module.c calls them all. */
#ifndef POSE_LPOSE_H
#define POSE_LPOSE_H

#include <lauxlib.h>
#include <lua.h>
#include <stdint.h>

#include "status.h"
#include "tensor.h"

#define POSE_TENSOR_MT "pose.tensor"

/* Raises a Lua error carrying the library's current message. Never returns. */
_Noreturn void pose_lua_fail(lua_State *L, pose_status st);
/* Raises a Lua error formatted with the full printf syntax (luaL_error only knows %d %s %f). */
_Noreturn void pose_lua_errorf(lua_State *L, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* `if (st) raise` in one go */
#define POSE_LUA_TRY(L, expr)                          \
  do {                                                 \
    pose_status pose_lst_ = (expr);                    \
    if (pose_lst_ != POSE_OK) pose_lua_fail(L, pose_lst_); \
  } while (0)

/* Tensor userdata: push takes ownership of t (the GC frees it); check raises a Lua error for a non-tensor. */
void pose_lua_push_tensor(lua_State *L, pose_tensor *t);
pose_tensor *pose_lua_check_tensor(lua_State *L, int idx);
pose_tensor *pose_lua_test_tensor(lua_State *L, int idx); /* NULL when not a tensor */

/* A nested Lua table of numbers -> new CPU tensor of dtype dt (ragged tables, non-numbers: Lua error). */
pose_tensor *pose_lua_table_to_tensor(lua_State *L, int idx, pose_dtype dt);
/* Wherever token ids or positions are taken: an integer tensor or a nested table of integers -> new CPU i64
 * tensor (caller frees). A float tensor or non-integer value is a Lua error naming `what`. */
pose_tensor *pose_lua_check_ids(lua_State *L, int idx, const char *what);
/* Pushes a CPU tensor's contents as nested Lua tables. */
void pose_lua_push_totable(lua_State *L, const pose_tensor *t);

/* Options tables: fetch a field with a default, raising a clear error for the wrong type. */
lua_Integer pose_lua_opt_int(lua_State *L, int tbl, const char *key, lua_Integer def);
lua_Number pose_lua_opt_num(lua_State *L, int tbl, const char *key, lua_Number def);
const char *pose_lua_opt_str(lua_State *L, int tbl, const char *key, const char *def);
int pose_lua_opt_bool(lua_State *L, int tbl, const char *key, int def);
/* Raises an error when the options table at `tbl` has a key that is not in the NULL-terminated list `known`. */
void pose_lua_check_keys(lua_State *L, int tbl, const char *fn, const char *const *known);

/* JSON <-> Lua (lua/l_json.c). */
#include <cjson/cJSON.h>
void pose_lua_push_json(lua_State *L, const cJSON *j);
cJSON *pose_lua_to_json(lua_State *L, int idx, int depth);

/* The pose_sampler of a pose.sampler userdata at idx, or NULL when idx holds something else (lua/l_sampler.c);
 * a freed sampler raises a Lua error. */
struct pose_sampler;
struct pose_sampler *pose_lua_test_sampler(lua_State *L, int idx);

/* Registration, one per binding file. */
void pose_lua_open_json(lua_State *L);
void pose_lua_open_bench(lua_State *L);
void pose_lua_open_tensor(lua_State *L);
void pose_lua_open_results(lua_State *L);
void pose_lua_open_rope(lua_State *L);
void pose_lua_open_sampler(lua_State *L);
void pose_lua_open_model(lua_State *L);
void pose_lua_open_tokenizer(lua_State *L);
void pose_lua_open_data(lua_State *L);
void pose_lua_open_eval(lua_State *L);
void pose_lua_open_trainer(lua_State *L);

#endif
