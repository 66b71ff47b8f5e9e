/* luaopen_pose: builds the `pose` table from every binding file, installs the embedded pure-Lua helpers
 * (lua/pose/ *.lua) as package.preload["pose.<name>"], then runs pose.init (lua/pose/init.lua) on the table. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <omp.h>

#include "build_info.h"
#include "lpose.h"

struct pose_embedded_lua { const char *name; const char *src; size_t len; };
extern const struct pose_embedded_lua pose_embedded_lua[];

#pragma weak pose_lua_open_results
#pragma weak pose_lua_open_rope
#pragma weak pose_lua_open_sampler
#pragma weak pose_lua_open_model
#pragma weak pose_lua_open_tokenizer
#pragma weak pose_lua_open_data
#pragma weak pose_lua_open_eval
#pragma weak pose_lua_open_trainer

/* pose.now(): monotonic wall-clock seconds, for timings and progress rates (os.clock is CPU time). */
static int l_now(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  lua_pushnumber(L, (lua_Number)ts.tv_sec + 1e-9 * (lua_Number)ts.tv_nsec);
  return 1;
}

static int l_device(lua_State *L) {
  pose_device d;
  POSE_LUA_TRY(L, pose_device_default(&d));
  lua_pushstring(L, d.type == POSE_CUDA ? "cuda" : "cpu");
  return 1;
}

/* pose.info() -> {version=, cuda_built=, nccl_built=, cuda_devices=, devices={...}, cuda_why=, threads=} */
static int l_info(lua_State *L) {
  lua_newtable(L);
  lua_pushstring(L, POSE_VERSION); lua_setfield(L, -2, "version");
  lua_pushboolean(L, pose_build_has_cuda()); lua_setfield(L, -2, "cuda_built");
  lua_pushboolean(L, pose_build_has_nccl()); lua_setfield(L, -2, "nccl_built");
  lua_pushinteger(L, omp_get_max_threads()); lua_setfield(L, -2, "threads");
  /* host memory: what a CPU run (the fp32 reference) can use */
  long page = sysconf(_SC_PAGESIZE), total = sysconf(_SC_PHYS_PAGES), avail = sysconf(_SC_AVPHYS_PAGES);
  if (page > 0 && total > 0) {
    lua_pushnumber(L, (double)total * (double)page / (1 << 30)); lua_setfield(L, -2, "host_total_gb");
    lua_pushnumber(L, (double)(avail > 0 ? avail : 0) * (double)page / (1 << 30)); lua_setfield(L, -2, "host_free_gb");
  }
  const char *why = NULL;
  const pose_backend *be = pose_cuda_backend(&why);
  int n = be ? be->device_count() : 0;
  lua_pushinteger(L, n); lua_setfield(L, -2, "cuda_devices");
  if (!be && why) { lua_pushstring(L, why); lua_setfield(L, -2, "cuda_unavailable"); }
  lua_newtable(L);
  for (int i = 0; i < n; i++) {
    char name[256] = "?";
    size_t fr = 0, tot = 0;
    be->device_name(i, name, sizeof name);
    be->mem_info(i, &fr, &tot);
    lua_newtable(L);
    lua_pushfstring(L, "cuda:%d", i); lua_setfield(L, -2, "device");
    lua_pushstring(L, name); lua_setfield(L, -2, "name");
    lua_pushnumber(L, (double)tot / (1 << 30)); lua_setfield(L, -2, "total_gb");
    lua_pushnumber(L, (double)fr / (1 << 30)); lua_setfield(L, -2, "free_gb");
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "gpus");
  lua_pushstring(L, pose_build_features()); lua_setfield(L, -2, "features");
  return 1;
}

static int embedded_loader(lua_State *L) {
  const struct pose_embedded_lua *e = lua_touserdata(L, lua_upvalueindex(1));
  char chunk[128];
  snprintf(chunk, sizeof chunk, "=[pose]/%s.lua", e->name + 5);
  if (luaL_loadbuffer(L, e->src, e->len, chunk) != LUA_OK) return lua_error(L);
  lua_pushstring(L, e->name);
  lua_call(L, 1, 1);
  return 1;
}

static void install_preloads(lua_State *L) {
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  for (const struct pose_embedded_lua *e = pose_embedded_lua; e->name; e++) {
    lua_pushlightuserdata(L, (void *)e);
    lua_pushcclosure(L, embedded_loader, 1);
    lua_setfield(L, -2, e->name);
  }
  lua_pop(L, 1);
}

int luaopen_pose(lua_State *L) {
  install_preloads(L);
  lua_newtable(L);
  lua_pushstring(L, POSE_VERSION);
  lua_setfield(L, -2, "version");
  lua_pushcfunction(L, l_device);
  lua_setfield(L, -2, "device");
  lua_pushcfunction(L, l_info);
  lua_setfield(L, -2, "info");
  lua_pushcfunction(L, l_now);
  lua_setfield(L, -2, "now");
  pose_lua_open_tensor(L);
  pose_lua_open_json(L);
  pose_lua_open_bench(L);
  /* Components land one by one; each registers when it is linked in (weak references until then). */
  void (*const opens[])(lua_State *) = {pose_lua_open_results, pose_lua_open_rope,  pose_lua_open_sampler,
                                        pose_lua_open_model,   pose_lua_open_tokenizer, pose_lua_open_data,
                                        pose_lua_open_eval, pose_lua_open_trainer};
  for (size_t i = 0; i < sizeof opens / sizeof opens[0]; i++)
    if (opens[i]) opens[i](L);
  /* pure-Lua parts of the API, given the table to extend */
  lua_getglobal(L, "require");
  lua_pushstring(L, "pose.init");
  lua_call(L, 1, 1);
  lua_pushvalue(L, -2);
  lua_call(L, 1, 0);
  return 1;
}
