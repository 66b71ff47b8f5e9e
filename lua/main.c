/* The `pose` executable: Lua 5.4 with the pose module preloaded.
 *   pose run SCRIPT.lua [--key value ...]   run a script; the options arrive as its first argument (`...`)
 *   pose SCRIPT.lua [...]                   the same
 *   pose version | pose info | pose --help
 *   pose                                    interactive prompt */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

int luaopen_pose(lua_State *L);

static const char *usage =
    "pose " POSE_VERSION ": PoSE context-window extension for RoPE language models, scripted in Lua\n"
    "\n"
    "usage:\n"
    "  pose run SCRIPT.lua [--key value ...]  run an experiment script (options reach it as a table: `local opts = ...`)\n"
    "  pose version                           print the version\n"
    "  pose info                              build features, devices and memory\n"
    "  pose -e 'lua code'                     run a chunk with `pose` loaded\n"
    "  pose                                   interactive prompt\n"
    "\n"
    "environment: POSE_DEVICE=cpu|cuda|cuda:N overrides the default device; OMP_NUM_THREADS sets CPU threads.\n";

static int traceback(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (!msg) msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  luaL_traceback(L, L, msg, 1);
  return 1;
}

static int docall(lua_State *L, int nargs) {
  int base = lua_gettop(L) - nargs;
  lua_pushcfunction(L, traceback);
  lua_insert(L, base);
  int st = lua_pcall(L, nargs, 0, base);
  lua_remove(L, base);
  if (st != LUA_OK) {
    /* library errors already read "pose: ..."; Lua errors carry their script position */
    fprintf(stderr, "%s\n", lua_tostring(L, -1));
    lua_pop(L, 1);
  }
  return st;
}

static lua_State *new_state(void) {
  lua_State *L = luaL_newstate();
  if (!L) { fprintf(stderr, "pose: cannot create a Lua state\n"); exit(1); }
  luaL_openlibs(L);
  luaL_requiref(L, "pose", luaopen_pose, 1);
  lua_pop(L, 1);
  return L;
}

static int run_script(lua_State *L, const char *script, int argc, char **argv) {
  /* global `arg` as the stock interpreter sets it */
  lua_createtable(L, argc, 1);
  lua_pushstring(L, script);
  lua_rawseti(L, -2, 0);
  for (int i = 0; i < argc; i++) { lua_pushstring(L, argv[i]); lua_rawseti(L, -2, i + 1); }
  lua_setglobal(L, "arg");
  if (luaL_loadfile(L, script) != LUA_OK) {
    fprintf(stderr, "pose: %s\n", lua_tostring(L, -1));
    return 1;
  }
  /* parsed options: require("pose.args").parse(arg) */
  lua_getglobal(L, "require");
  lua_pushstring(L, "pose.args");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, "parse");
  lua_remove(L, -2);
  lua_getglobal(L, "arg");
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) { fprintf(stderr, "pose: %s\n", lua_tostring(L, -1)); return 1; }
  return docall(L, 1) == LUA_OK ? 0 : 1;
}

static int repl(lua_State *L) {
  char line[8192];
  int tty = isatty(0);
  if (tty) printf("pose %s (Lua 5.4): `pose` is loaded; Ctrl-D quits\n", POSE_VERSION);
  for (;;) {
    if (tty) { fputs("> ", stdout); fflush(stdout); }
    if (!fgets(line, sizeof line, stdin)) break;
    /* try as an expression first, like the stock interpreter */
    lua_pushfstring(L, "return %s", line);
    int st = luaL_loadbuffer(L, lua_tostring(L, -1), lua_rawlen(L, -1), "=stdin");
    lua_remove(L, -2);
    if (st != LUA_OK) { lua_pop(L, 1); st = luaL_loadbuffer(L, line, strlen(line), "=stdin"); }
    if (st != LUA_OK) { fprintf(stderr, "%s\n", lua_tostring(L, -1)); lua_pop(L, 1); continue; }
    int base = lua_gettop(L);
    lua_pushcfunction(L, traceback);
    lua_insert(L, base);
    if (lua_pcall(L, 0, LUA_MULTRET, base) != LUA_OK) {
      fprintf(stderr, "%s\n", lua_tostring(L, -1));
      lua_settop(L, base - 1);
      continue;
    }
    int n = lua_gettop(L) - base;
    for (int i = 1; i <= n; i++) {
      luaL_tolstring(L, base + i, NULL);
      printf("%s%s", i > 1 ? "\t" : "", lua_tostring(L, -1));
      lua_pop(L, 1);
    }
    if (n) printf("\n");
    lua_settop(L, base - 1);
  }
  return 0;
}

static int info(lua_State *L) {
  const char *code =
      "local i = pose.info()\n"
      "print('pose ' .. i.version)\n"
      "print('build features: ' .. i.features)\n"
      "print('cpu threads:    ' .. i.threads)\n"
      "if i.host_total_gb then print(string.format('host memory:    %.1f GiB total, %.1f GiB free', i.host_total_gb, i.host_free_gb)) end\n"
      "print('default device: ' .. pose.device())\n"
      "if i.cuda_unavailable then print('cuda:           ' .. i.cuda_unavailable) end\n"
      "for _, g in ipairs(i.gpus) do\n"
      "  print(string.format('%s: %s, %.1f GiB total, %.1f GiB free', g.device, g.name, g.total_gb, g.free_gb))\n"
      "end\n";
  if (luaL_loadstring(L, code) != LUA_OK) return 1;
  return docall(L, 0) == LUA_OK ? 0 : 1;
}

int main(int argc, char **argv) {
  if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help"))) {
    fputs(usage, stdout);
    return 0;
  }
  if (argc >= 2 && (!strcmp(argv[1], "version") || !strcmp(argv[1], "--version"))) {
    printf("pose %s\n", POSE_VERSION);
    return 0;
  }
  lua_State *L = new_state();
  int rc = 0;
  if (argc == 1) rc = repl(L);
  else if (!strcmp(argv[1], "info")) rc = info(L);
  else if (!strcmp(argv[1], "-e")) {
    if (argc < 3) { fputs(usage, stderr); rc = 2; }
    else if (luaL_loadstring(L, argv[2]) != LUA_OK) { fprintf(stderr, "pose: %s\n", lua_tostring(L, -1)); rc = 1; }
    else rc = docall(L, 0) == LUA_OK ? 0 : 1;
  } else if (!strcmp(argv[1], "run")) {
    if (argc < 3) { fprintf(stderr, "pose run: missing SCRIPT\n\n%s", usage); rc = 2; }
    else rc = run_script(L, argv[2], argc - 3, argv + 3);
  } else if (argv[1][0] == '-') {
    fprintf(stderr, "pose: unknown option '%s'\n\n%s", argv[1], usage);
    rc = 2;
  } else {
    rc = run_script(L, argv[1], argc - 2, argv + 2);
  }
  lua_close(L);
  return rc;
}
