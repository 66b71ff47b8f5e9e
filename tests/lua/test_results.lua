-- HDF5 results from Lua: pose.results round trips, attributes, logs, tables, every error path, the run
-- conventions of pose.experiment (skip finished runs, redo, restart unfinished ones).
local pose = require "pose"
local T = require "pose.test"

local dir = T.tmpdir()
local function tmp(name) return dir .. "/" .. name end

T.case("root attributes on create and reopen", function()
  local f = pose.results(tmp("root.h5"), { experiment = "ppl", device = "cpu" })
  local a = f:attrs("/")
  T.eq(a.experiment, "ppl")
  T.eq(a.device, "cpu")
  T.eq(a.pose_version, pose.version)
  T.check(a.created:match("^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%dZ$") ~= nil, "created is ISO 8601: " .. a.created)
  T.check(a.git_commit == "unknown" or a.git_commit:match("^%x+$") and #a.git_commit >= 40, "git_commit " .. a.git_commit)
  T.check(a.command:find("test_results.lua", 1, true) ~= nil, "default command names the script: " .. a.command)
  f:set_attr("/", "created", "2000-01-01T00:00:00Z")
  f:close()
  f = pose.results(tmp("root.h5"), { command = "second writer" })
  T.eq(f:attr("/", "created"), "2000-01-01T00:00:00Z", "created kept")
  T.eq(f:attr("/", "command"), "second writer", "command of the last writer")
  T.eq(f:attr("/", "experiment"), "ppl", "experiment kept")
  f:write("x", 1)
  f:close()
  f = pose.results(tmp("root.h5"), { mode = "w" })
  T.eq(f:exists("x"), false, "mode w truncates")
  T.eq(f:attr("/", "experiment"), "root", "default experiment: the file's stem")
  f:close()
  f = pose.results(tmp("root.h5"), { mode = "r" })
  T.check(tostring(f):find("read-only", 1, true) ~= nil)
  T.raises(function() f:write("y", 1) end, "read-only")
  T.raises(function() f:group("g") end, "read-only")
  T.raises(function() f:append("l", 1) end, "read-only")
  T.raises(function() f:set_attr("/", "a", 1) end, "read-only")
  T.raises(function() f:delete("x") end, "read-only")
  f:close()
end)

T.case("the default command is the process's command line, quoted for the shell", function()
  local saved = arg
  local long = string.rep("x y", 800) -- longer than a Lua string buffer's first block
  arg = { [0] = "exp.lua", "--note", long, "it's", "--k=v" }
  local ok, err = pcall(function()
    local f <close> = pose.results(tmp("cmd.h5"), { mode = "w" })
    T.eq(f:attr("/", "command"), "pose run exp.lua --note '" .. long .. "' 'it'\\''s' --k=v")
  end)
  arg = { [-2] = "lua5.4", [-1] = "-i", [0] = "lua5.4" } -- a stock interpreter without a script
  local ok2, err2 = pcall(function()
    local f <close> = pose.results(tmp("cmd.h5"), { mode = "w" })
    T.eq(f:attr("/", "command"), "lua5.4 -i lua5.4")
  end)
  arg = nil
  local ok3, err3 = pcall(function()
    local f <close> = pose.results(tmp("cmd.h5"), { mode = "w" })
    T.eq(f:attr("/", "command"), "unknown")
  end)
  arg = saved
  assert(ok, err)
  assert(ok2, err2)
  assert(ok3, err3)
end)

T.case("datasets of every kind round-trip", function()
  local f <close> = pose.results(tmp("data.h5"), { mode = "w" })
  local cases = {
    { "s/int", 42 }, { "s/neg", -9007199254740993 }, { "s/float", 0.1 }, { "s/str", "héllo \"x\"\n" },
    { "a/ints", { 1, 2, 3 } }, { "a/floats", { 1.5, -2, 1e300 } }, { "a/strs", { "wiki", "", "pg19" } },
    { "a/m2", { { 1, 2, 3 }, { 4, 5, 6 } } }, { "a/m3", { { { 1.5 }, { 2 } }, { { 3 }, { 4 } } } },
    { "a/empty", {} }, { "a/empty2", { {}, {} } },
  }
  for _, c in ipairs(cases) do
    f:write(c[1], c[2])
    T.same(f:read(c[1]), c[2], c[1])
  end
  T.eq(math.type(f:read("s/int")), "integer")
  T.eq(math.type(f:read("a/floats")[2]), "float", "a mixed list is stored as floats")
  f:write("s/bool", true)
  T.eq(f:read("s/bool"), 1)
  -- tensors: float dtypes as f32, integer dtypes as i64
  f:write("t/f32", pose.tensor({ { 1.5, 2 }, { 3, 4.25 } }))
  T.same(f:read("t/f32"), { { 1.5, 2 }, { 3, 4.25 } })
  f:write("t/bf16", pose.tensor({ 1, 2.5 }, "bf16"))
  T.same(f:read("t/bf16"), { 1, 2.5 })
  f:write("t/i32", pose.tensor({ 7, -8 }, "i32"))
  T.same(f:read("t/i32"), { 7, -8 })
  T.eq(math.type(f:read("t/i32")[1]), "integer")
  f:write("t/scalar", pose.tensor(3.5))
  T.eq(f:read("t/scalar"), 3.5)
  -- dtype overrides
  f:write("d/f32", { 0.1, 2 }, "f32")
  T.near(f:read("d/f32")[1], 0.1, 1e-8)
  T.check(f:read("d/f32")[1] ~= 0.1, "stored as f32")
  f:write("d/i64", { 1.0, 2.0 }, "i64")
  T.eq(math.type(f:read("d/i64")[1]), "integer")
  f:write("d/f64", 3, "f64")
  T.eq(math.type(f:read("d/f64")), "float")
  -- replacing a dataset with another shape and type
  f:write("a/ints", "now text")
  T.eq(f:read("a/ints"), "now text")
end)

T.case("groups, kinds, listing, deleting", function()
  local f <close> = pose.results(tmp("groups.h5"), { mode = "w" })
  f:group("runs/a/train")
  f:group("runs/a") -- existing: fine
  f:group("runs/b")
  f:write("runs/c", 1)
  T.eq(f:exists("runs/a/train"), true)
  T.eq(f:exists("/runs/a/train/"), true)
  T.eq(f:exists("runs/zz"), false)
  T.eq(f:exists("runs/c/below"), false)
  T.eq(f:kind("runs"), "group")
  T.eq(f:kind("runs/c"), "dataset")
  T.eq(f:kind("nothing"), nil)
  T.same(f:list("runs"), { "a", "b", "c" })
  T.same(f:list(), { "runs" })
  T.same(f:list("runs/b"), {})
  f:delete("runs/a")
  T.same(f:list("runs"), { "b", "c" })
  T.raises(function() f:delete("runs/a") end, "no such object")
  T.raises(function() f:delete("/") end, "root")
  T.raises(function() f:group("runs/c") end, "is a dataset")
  T.raises(function() f:list("runs/c") end, "not a group")
  T.raises(function() f:list("nope") end, "no object '/nope'")
  T.raises(function() f:exists("a//b") end, "empty component")
end)

T.case("attributes", function()
  local f <close> = pose.results(tmp("attrs.h5"), { mode = "w" })
  f:write("g/d", { 1, 2 })
  for _, p in ipairs { "/", "g", "g/d" } do
    f:set_attr(p, "num", 2.5)
    f:set_attr(p, "int", 7)
    f:set_attr(p, "str", "sliding")
    f:set_attr(p, "bool", false)
    f:set_attr(p, "nums", { 0.5, 1 })
    f:set_attr(p, "ints", { 2048, 4096 })
    f:set_attr(p, "strs", { "a", "b" })
    T.eq(f:attr(p, "num"), 2.5)
    T.eq(f:attr(p, "int"), 7)
    T.eq(math.type(f:attr(p, "int")), "integer")
    T.eq(f:attr(p, "str"), "sliding")
    T.eq(f:attr(p, "bool"), 0)
    T.same(f:attr(p, "nums"), { 0.5, 1 })
    T.same(f:attr(p, "ints"), { 2048, 4096 })
    T.same(f:attr(p, "strs"), { "a", "b" })
    T.eq(f:attr(p, "missing"), nil, "a missing attribute is nil")
    f:set_attr(p, "num", "replaced")
    T.eq(f:attr(p, "num"), "replaced")
  end
  local a = f:attrs("g/d")
  T.same(a, { num = "replaced", int = 7, str = "sliding", bool = 0, nums = { 0.5, 1 }, ints = { 2048, 4096 },
              strs = { "a", "b" } })
  T.raises(function() f:attr("nope", "x") end, "no object '/nope'")
  T.raises(function() f:attrs("nope") end, "no object")
  T.raises(function() f:set_attr("nope", "x", 1) end, "no object '/nope'")
  T.raises(function() f:set_attr("/", "", 1) end, "empty attribute name")
  T.raises(function() f:set_attr("/", "x", { { 1 } }) end, "nesting deeper than 1 dimension")
  T.raises(function() f:set_attr("/", "x", pose.tensor({ 1 })) end, "tensor is not an attribute")
  T.raises(function() f:set_attr("/", "x", nil) end, "cannot store a nil")
  T.raises(function() f:set_attr("/", "x", { 1, "a" }) end, "mixes numbers and strings")
  T.raises(function() f:set_attr("/", {}, 1) end, "string expected")
end)

T.case("extendable logs", function()
  local f <close> = pose.results(tmp("logs.h5"), { mode = "w" })
  for i = 1, 3000 do f:append("train/step", i) end
  f:append("train/step", { 3001, 3002 })
  f:append("train/step", 3003.0) -- a whole float goes into an integer log
  local s = f:read("train/step")
  T.eq(#s, 3003)
  T.eq(s[1234], 1234)
  T.eq(math.type(s[3003]), "integer")
  T.raises(function() f:append("train/step", 0.5) end, "holds integers")
  f:append("train/loss", 2.5)
  f:append("train/loss", { 2, 1.5 }) -- integers into a float log are fine
  T.same(f:read("train/loss"), { 2.5, 2.0, 1.5 })
  f:append("train/lr", 0, "f64") -- dtype fixes the type on creation
  f:append("train/lr", 1e-4)
  T.same(f:read("train/lr"), { 0.0, 1e-4 })
  f:append("f32log", { 0.25, 0.5 }, "f32")
  T.same(f:read("f32log"), { 0.25, 0.5 })
  f:append("tensorlog", pose.tensor({ 1, 2 }))
  T.same(f:read("tensorlog"), { 1, 2 })
  f:write("fixed", { 1, 2 })
  T.raises(function() f:append("fixed", 3) end, "not an extendable 1-D dataset")
  T.raises(function() f:append("train", 3) end, "is a group")
  T.raises(function() f:append("x", "text") end, "expected a number or a list of numbers")
  T.raises(function() f:append("x", { "a" }) end, "expected numbers, got strings")
  T.raises(function() f:append("x", { { 1 } }) end, "nesting deeper than 1 dimension")
  T.raises(function() f:append("x", 1.5, "i64") end, "not an integer")
  T.raises(function() f:append("x", 1, "f16") end, "unknown dtype 'f16'")
  T.eq(f:exists("x"), false, "failed appends create nothing")
end)

T.case("paper tables", function()
  local f <close> = pose.results(tmp("tables.h5"), { mode = "w" })
  f:table("table1", { { 7.5, 6.25, 0 / 0 }, { 5, 4.5, 4 } }, { "PoSE-linear", "full" }, { 2048, 4096, "8k" })
  local m = f:read("tables/table1")
  T.eq(#m, 2)
  T.eq(m[1][1], 7.5)
  T.check(m[1][3] ~= m[1][3], "NaN kept for an empty cell")
  T.eq(math.type(m[2][1]), "float")
  T.same(f:attr("tables/table1", "row_labels"), { "PoSE-linear", "full" })
  T.same(f:attr("tables/table1", "col_labels"), { "2048", "4096", "8k" })
  f:table("t2", pose.tensor({ { 1, 2 } }), { "r" }, { "a", "b" })
  T.same(f:read("tables/t2"), { { 1, 2 } })
  T.raises(function() f:table("t", { { 1, 2 } }, { "r" }, { "a" }) end, "1 col_labels for 2 columns")
  T.raises(function() f:table("t", { { 1, 2 } }, { "r", "s" }, { "a", "b" }) end, "2 row_labels for 1 rows")
  T.raises(function() f:table("t", { 1, 2 }, { "r" }, { "a" }) end, "must be 2-D")
  T.raises(function() f:table("t", 5, { "r" }, { "a" }) end, "matrix must be a table of rows")
  T.raises(function() f:table("t", { { 1 } }, "r", { "a" }) end, "row_labels must be an array")
  T.raises(function() f:table("t", { { 1 } }, { {} }, { "a" }) end, "row_labels[1] is a table")
  T.raises(function() f:table("a/b", { { 1 } }, { "r" }, { "a" }) end, "contain no '/'")
  T.raises(function() f:table("t", { { "x" } }, { "r" }, { "a" }) end, "strings cannot be stored as f64")
end)

T.case("error paths", function()
  T.raises(function() pose.results(nil) end, "string expected")
  T.raises(function() pose.results({}) end, "string expected")
  T.raises(function() pose.results(tmp("e.h5"), "w") end, "options must be a table")
  T.raises(function() pose.results(tmp("e.h5"), { mode = "x" }) end, "unknown mode 'x'")
  T.raises(function() pose.results(tmp("e.h5"), { mode = 1 }) end, "option 'mode' must be a string")
  T.raises(function() pose.results(tmp("e.h5"), { bogus = 1 }) end, "unknown option 'bogus'")
  T.raises(function() pose.results(tmp("missing.h5"), { mode = "r" }) end, "missing.h5': cannot open for reading")
  local fh = assert(io.open(tmp("not.h5"), "w"))
  fh:write("not HDF5\n")
  fh:close()
  T.raises(function() pose.results(tmp("not.h5")) end, "not.h5' is not an HDF5 file")
  T.raises(function() pose.results(tmp("not.h5"), { mode = "r" }) end, "is not an HDF5 file")
  T.raises(function() pose.results(tmp("no/such/dir/x.h5"), { mode = "w" }) end, "cannot create [HDF5:")
  -- os.tmpname leaves an empty file: mode "a" takes it as a new results file
  local name = os.tmpname()
  local t = pose.results(name)
  t:write("x", 1)
  t:close()
  t = pose.results(name, { mode = "r" })
  T.eq(t:read("x"), 1)
  t:close()
  os.remove(name)

  local f = pose.results(tmp("e.h5"), { mode = "w" })
  f:write("d", { 1, 2 })
  T.raises(function() f:read("missing/x") end, "no object '/missing/x'")
  T.raises(function() f:read("missing/x") end, tmp("e.h5")) -- the message names the file
  f:group("g")
  T.raises(function() f:read("g") end, "is a group, not a dataset")
  T.raises(function() f:write("g", 1) end, "is a group")
  T.raises(function() f:write("/", 1) end, "root")
  T.raises(function() f:write("d/below", 1) end, "cannot create dataset")
  T.raises(function() f:write("x") end, "value expected")
  T.raises(function() f:write({}, 1) end, "string expected")
  T.raises(function() f:write("x", print) end, "cannot store a function")
  T.raises(function() f:write("x", { a = 1 }) end, "not an array (it has named keys)")
  T.raises(function() f:write("x", { 1, 2, nil, 4 }) end, "not an array")
  T.raises(function() f:write("x", { { 1, 2 }, { 3 } }) end, "ragged table")
  T.raises(function() f:write("x", { { 1 }, 2 }) end, "values and tables mixed")
  T.raises(function() f:write("x", { 1, true }) end, "array element is a boolean")
  T.raises(function() f:write("x", { { { { { 1 } } } } }) end, "nesting deeper than 4 dimensions")
  T.raises(function() f:write("x", { 1.5 }, "i64") end, "not an integer")
  T.raises(function() f:write("x", "s", "f64") end, "strings cannot be stored as f64")
  T.raises(function() f:write("x", 1, 5) end, "unknown dtype '5'")
  T.raises(function() f.read(nil, "d") end, "pose.results expected")
  T.raises(function() f.read(pose.tensor({ 1 }), "d") end, "pose.results expected")
  T.eq(f:exists("x"), false, "failed writes create nothing")
  -- a closed file: every method says so, closing again is harmless
  f:close()
  f:close()
  T.check(tostring(f):find("closed", 1, true) ~= nil)
  T.eq(f:filename(), tmp("e.h5"))
  for _, m in ipairs { "read", "write", "append", "group", "exists", "kind", "delete", "list", "set_attr", "attr",
                       "attrs", "table", "flush" } do
    T.raises(function() f[m](f, "d", 1, 2, 3) end, "e.h5' is closed", m)
  end
end)

T.case("closing by scope and by the garbage collector", function()
  do
    local f <close> = pose.results(tmp("scope.h5"), { mode = "w" })
    f:write("x", 1)
  end
  -- reopening for truncation fails while HDF5 still holds the file open, so these succeed only after a close
  local g = pose.results(tmp("scope.h5"), { mode = "w" })
  g:write("y", 2)
  g = nil
  collectgarbage()
  collectgarbage()
  local h = pose.results(tmp("scope.h5"), { mode = "w" })
  T.eq(h:exists("y"), false)
  h:close()
end)

T.case("experiments and runs", function()
  local exp = pose.experiment("exp1", { dir = dir .. "/res", device = "cpu", command = "pose run exp1.lua" })
  T.eq(exp.path, dir .. "/res/exp1.h5")
  local cfg = { model = "llama", rope = { type = "linear", factor = 16.0 }, chunks = 2, lr = 2e-5, tags = { "a" } }
  local run = exp:run("pose-linear-16x", cfg)
  T.check(run ~= nil)
  local f = exp.file
  local p = "/runs/pose-linear-16x"
  T.eq(f:attr(p, "config"),
       '{"chunks":2,"lr":2e-05,"model":"llama","rope":{"factor":16,"type":"linear"},"tags":["a"]}')
  T.eq(f:attr(p, "git_commit"), f:attr("/", "git_commit"))
  T.eq(f:attr(p, "command"), "pose run exp1.lua")
  T.check(f:attr(p, "created"):match("^%d%d%d%d%-%d%d%-%d%dT") ~= nil)
  T.eq(f:attr(p, "finished"), 0)
  T.eq(f:attr("/", "experiment"), "exp1")
  for step = 1, 5 do run:log_train { step = step, loss = 3 - step * 0.25, lr = 0, tokens_per_s = 1000 } end
  T.same(f:read(p .. "/train/step"), { 1, 2, 3, 4, 5 })
  T.same(f:read(p .. "/train/loss"), { 2.75, 2.5, 2.25, 2.0, 1.75 })
  T.eq(math.type(f:read(p .. "/train/lr")[1]), "float", "lr is f64 even when logged as integer 0")
  T.eq(#f:read(p .. "/train/tokens_per_s"), 5)
  run:scalar("final_loss", 1.75)
  run:scalar("note", "ok")
  run:scalar("perf/peak_mem_gb", 12.5)
  T.eq(f:attr(p, "final_loss"), 1.75)
  T.eq(f:read(p .. "/perf/peak_mem_gb"), 12.5)
  run:write("eval/ppl/pg19/ppl", { 10.5, 9.75 })
  run:set_attr("eval/ppl/pg19/ppl", "windows", { 2048, 4096 })
  run:append("eval/extra", 1.5)
  run:group("eval/passkey")
  T.same(f:attr(p .. "/eval/ppl/pg19/ppl", "windows"), { 2048, 4096 })
  T.eq(f:kind(p .. "/eval/passkey"), "group")
  T.raises(function() run:log_train { step = 6, loss = 1 } end, "differ from the first call")
  T.raises(function() run:log_train { loss = 1 } end, "'step' must be an integer")
  T.raises(function() run:log_train { step = 1.5, loss = 1 } end, "'step' must be an integer")
  T.raises(function() run:log_train { step = 7, loss = "x", lr = 0, tokens_per_s = 1 } end, "'loss' must be a number")
  T.raises(function() run:log_train(5) end, "expected a table")
  T.raises(function() run:scalar("x", {}) end, "must be a number, string or boolean")
  T.raises(function() run:scalar("", 1) end, "non-empty")
  T.eq(#f:read(p .. "/train/step"), 5, "failed log calls append nothing")
  run:finish()
  T.eq(f:attr(p, "finished"), 1)
  T.eq(exp:finished("pose-linear-16x"), true)
  -- an unfinished run, as a crash leaves it
  local r2 = exp:run("pi-16x", { method = "pi" })
  r2:log_train { step = 1, loss = 9 }
  T.eq(exp:finished("pi-16x"), false)
  T.same(exp:runs(), { "pi-16x", "pose-linear-16x" })
  exp:table("t", { { 1, 2 } }, { "pose" }, { "2k", "4k" })
  T.same(f:attr("tables/t", "col_labels"), { "2k", "4k" })
  exp:close()

  -- rerun: the finished run is skipped, the unfinished one starts afresh
  exp = pose.experiment("exp1", { dir = dir .. "/res", command = "rerun" })
  T.eq(exp.file:attr("/", "command"), "rerun")
  local again, why = exp:run("pose-linear-16x", cfg)
  T.eq(again, nil, "a finished run is skipped")
  T.eq(why, "finished")
  T.same(exp.file:read(p .. "/train/step"), { 1, 2, 3, 4, 5 }, "and left untouched")
  local r3 = exp:run("pi-16x", { method = "pi", factor = 16 })
  T.eq(exp.file:exists("/runs/pi-16x/train"), false, "an unfinished run restarts from scratch")
  T.eq(exp.file:attr("/runs/pi-16x", "config"), '{"factor":16,"method":"pi"}')
  r3:log_train { step = 1, loss = 8, lr = 1e-5 }
  r3:finish()
  -- redo: the finished run is deleted and recreated
  local redo = exp:run("pose-linear-16x", cfg, { redo = true })
  T.check(redo ~= nil, "redo reruns a finished run")
  T.eq(exp.file:exists(p .. "/train"), false)
  T.eq(exp.file:attr(p, "finished"), 0)
  T.eq(exp.file:attr(p, "command"), "rerun")
  T.eq(exp.file:attr(p, "final_loss"), nil)
  -- errors
  T.raises(function() exp:run("a/b", {}) end, "without '/'")
  T.raises(function() exp:run("", {}) end, "non-empty")
  T.raises(function() exp:run("x", 5) end, "config must be a table")
  T.raises(function() exp:run("x", {}, { bogus = true }) end, "unknown option 'bogus'")
  T.raises(function() exp:run("x", { bad = print }) end, "cannot encode a function")
  T.eq(exp.file:exists("/runs/x"), false, "a bad config creates nothing")
  T.raises(function() pose.experiment("a/b") end, "without '/'")
  T.raises(function() pose.experiment(5) end, "experiment name")
  T.raises(function() pose.experiment("e", { bogus = 1 }) end, "unknown option 'bogus'")
  exp:close()
  local ro = pose.experiment("exp1", { dir = dir .. "/res", mode = "r" })
  T.raises(function() ro:run("new", {}) end, "read-only")
  ro:close()
end)

T.case("pose.eval writes its results through this API", function()
  local f <close> = pose.results(tmp("eval.h5"), { mode = "w" })
  pose.eval.write_ppl(f, "/runs/r", "pg19", { windows = { 2048, 4096 }, ppl = { 9.5, 8.25 }, mode = "sliding",
                                              per_doc = { { 9, 8 }, { 10, 8.5 } }, bos = true, docs = 2 })
  local g = "/runs/r/eval/ppl/pg19"
  T.same(f:read(g .. "/ppl"), { 9.5, 8.25 })
  T.same(f:read(g .. "/per_doc"), { { 9, 8 }, { 10, 8.5 } })
  T.same(f:attrs(g), { windows = { 2048, 4096 }, stride = 2048, mode = "sliding", bos = 1, docs = 2 })
  pose.eval.write_passkey(f, "/runs/r", { accuracy = { { 1, 0.5 }, { 0.25, 0 } }, lengths = { 1024, 2048 },
                                          depths = { 0, 0.5 }, trials = 10 })
  T.same(f:read("/runs/r/eval/passkey/accuracy"), { { 1, 0.5 }, { 0.25, 0 } })
  T.same(f:attr("/runs/r/eval/passkey/accuracy", "depths"), { 0, 0.5 })
  T.eq(f:attr("/runs/r/eval/passkey", "trials"), 10)
end)

-- Another reader agrees, when h5py is installed (optional: the test does not depend on it).
T.case("readable by h5py when available", function()
  local py
  for _, exe in ipairs { "python3", "/usr/bin/python3" } do
    if os.execute(exe .. " -c 'import h5py' >/dev/null 2>&1") then py = exe; break end
  end
  if not py then print("h5py not available: readability check skipped"); return end
  local script = tmp("check.py")
  local fh = assert(io.open(script, "w"))
  fh:write([[
import sys, json, h5py
f = h5py.File(sys.argv[1], "r")
assert f.attrs["experiment"] == "exp1", f.attrs["experiment"]
r = f["runs/pi-16x"]
assert json.loads(r.attrs["config"]) == {"factor": 16, "method": "pi"}
assert int(r.attrs["finished"]) == 1
assert list(r["train/step"][:]) == [1]
assert r["train/step"].maxshape == (None,)
t = f["tables/t"]
assert t.shape == (1, 2) and list(t.attrs["col_labels"]) == ["2k", "4k"]
print("ok")
]])
  fh:close()
  local p = io.popen(py .. " " .. script .. " " .. dir .. "/res/exp1.h5 2>&1")
  local out = p:read("a")
  p:close()
  T.eq(out, "ok\n", "h5py check output")
end)

os.execute("rm -rf '" .. dir .. "'")
T.done("test_results.lua")
