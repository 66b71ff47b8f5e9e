-- Run-level conventions of DESIGN.md section 5, on top of pose.results (lua/l_results.c):
--
--   local exp = pose.experiment("ppl", {dir = "results"})   -- opens results/ppl.h5 (mode "a": reruns add to it)
--   local run = exp:run("pose-linear-16x", config, {redo = false})
--   if run then                                             -- nil when that run is already finished
--     run:log_train{step = 1, loss = 2.3, lr = 2e-5, tokens_per_s = 1.2e4}   -- appends to train/<key>, flushed
--     run:scalar("final_loss", 1.9)                         -- an attribute of the run group
--     run:scalar("perf/peak_mem_gb", 12.5)                  -- a name with '/' is a scalar dataset below the run
--     run:finish()                                          -- finished = 1: a rerun skips this run
--   end
--   exp:table("table1", matrix, row_labels, col_labels)     -- /tables/<name>
--   exp:close()
--
-- Layout of a run, /runs/<name>: attributes `config` (pose.json_encode of the config table: keys sorted, so equal
-- configs give equal text), `git_commit` and `command` (as the file's root attributes of this writer), `created`
-- (ISO 8601 UTC) and `finished` (0, then 1).
-- A run found unfinished (a crash, a kill) is deleted and started afresh, as is a finished one with redo = true.
-- Train logs are appended column by column; after a crash the columns may differ by one row at the end, so
-- readers should cut them to the shortest.
local M = {}
local pose -- the pose table, given by attach()

local Experiment = {}
Experiment.__index = Experiment
local Run = {}
Run.__index = Run

local function check_name(what, name)
  if type(name) ~= "string" or name == "" or name:find("/", 1, true) then
    error(string.format("pose.experiment: %s name must be a non-empty string without '/', got %s", what,
                        type(name) == "string" and ("'" .. name .. "'") or type(name)), 3)
  end
end

local function shell_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

local function check_options(fn, opts, known)
  if opts == nil then return {} end
  if type(opts) ~= "table" then error(string.format("%s: options must be a table, got %s", fn, type(opts)), 3) end
  for k in pairs(opts) do
    if not known[k] then
      local names = {}
      for n in pairs(known) do names[#names + 1] = n end
      table.sort(names)
      error(string.format("%s: unknown option '%s' (known: %s)", fn, tostring(k), table.concat(names, ", ")), 3)
    end
  end
  return opts
end

--- pose.experiment(name, {dir = "results", path = dir/name.h5, device =, command =, mode = "a"}) -> experiment
-- Opens (creating when missing) the experiment's HDF5 file; the directory is created when needed.
function M.experiment(name, opts)
  check_name("experiment", name)
  opts = check_options("pose.experiment", opts,
                       { dir = true, path = true, device = true, command = true, mode = true })
  local path = opts.path
  if path == nil then
    local dir = opts.dir or "results"
    if type(dir) ~= "string" then error("pose.experiment: option 'dir' must be a string", 2) end
    if (opts.mode or "a") ~= "r" then
      local ok = os.execute("mkdir -p " .. shell_quote(dir))
      if not ok then error("pose.experiment: cannot create directory '" .. dir .. "'", 2) end
    end
    path = dir .. "/" .. name .. ".h5"
  end
  local file = pose.results(path, { experiment = name, device = opts.device, command = opts.command,
                                    mode = opts.mode })
  return setmetatable({ name = name, path = path, file = file }, Experiment)
end

--- exp:finished(run_name) -> true when /runs/<run_name> exists and is marked finished
function Experiment:finished(name)
  check_name("run", name)
  local p = "/runs/" .. name
  return self.file:exists(p) and self.file:attr(p, "finished") == 1
end

--- exp:runs() -> sorted names of the runs in the file
function Experiment:runs()
  if not self.file:exists("/runs") then return {} end
  return self.file:list("/runs")
end

--- exp:run(name, config, {redo = false}) -> run, or nil, "finished" when the run is finished and redo is not set
function Experiment:run(name, config, opts)
  check_name("run", name)
  if config ~= nil and type(config) ~= "table" then
    error("exp:run: config must be a table, got " .. type(config), 2)
  end
  opts = check_options("exp:run", opts, { redo = true })
  local f, p = self.file, "/runs/" .. name
  local config_json = pose.json_encode(config or {}) -- before touching the file: a bad config changes nothing
  if f:exists(p) then
    if f:attr(p, "finished") == 1 and not opts.redo then
      io.stderr:write(string.format("pose: run '%s' in %s is finished; skipping it (redo=true reruns it)\n",
                                    name, self.path))
      return nil, "finished"
    end
    f:delete(p)
  end
  f:group(p)
  f:set_attr(p, "config", config_json)
  f:set_attr(p, "git_commit", f:attr("/", "git_commit"))
  f:set_attr(p, "command", f:attr("/", "command"))
  f:set_attr(p, "created", os.date("!%Y-%m-%dT%H:%M:%SZ"))
  f:set_attr(p, "finished", 0)
  return setmetatable({ name = name, path = p, file = f, config = config, experiment = self }, Run)
end

--- exp:table(name, matrix, row_labels, col_labels): the paper-shaped table /tables/<name>
function Experiment:table(name, matrix, rows, cols) self.file:table(name, matrix, rows, cols) end

function Experiment:close() self.file:close() end

local function rel(run, path)
  if type(path) ~= "string" then error("run: path must be a string, got " .. type(path), 3) end
  if path == "" then return run.path end
  return run.path .. "/" .. path
end

--- run:log_train{step = <integer>, loss =, lr =, tokens_per_s =, ...}: appends each value to train/<key>.
-- `step` is stored as i64, everything else as f64. Every call must give the same keys as the run's first call.
function Run:log_train(row)
  if type(row) ~= "table" then error("run:log_train: expected a table {step=, loss=, ...}, got " .. type(row), 2) end
  local step = math.tointeger(row.step)
  if step == nil then error("run:log_train: 'step' must be an integer, got " .. tostring(row.step), 2) end
  local keys = {}
  for k, v in pairs(row) do
    if type(k) ~= "string" or k == "" or k:find("/", 1, true) then
      error("run:log_train: keys must be names without '/', got " .. tostring(k), 2)
    end
    if type(v) ~= "number" then error(string.format("run:log_train: '%s' must be a number, got %s", k, type(v)), 2) end
    keys[#keys + 1] = k
  end
  table.sort(keys)
  local sig = table.concat(keys, ",")
  if self._train_keys == nil then self._train_keys = sig
  elseif self._train_keys ~= sig then
    error(string.format("run:log_train: keys {%s} differ from the first call's {%s}", sig, self._train_keys), 2)
  end
  for _, k in ipairs(keys) do
    if k == "step" then self.file:append(self.path .. "/train/step", step, "i64")
    else self.file:append(self.path .. "/train/" .. k, row[k] + 0.0, "f64") end
  end
end

--- run:scalar(name, value): an attribute of the run group, or a scalar dataset when name has a '/' ("perf/x")
function Run:scalar(name, value)
  if type(name) ~= "string" or name == "" then error("run:scalar: name must be a non-empty string", 2) end
  local t = type(value)
  if t ~= "number" and t ~= "string" and t ~= "boolean" then
    error(string.format("run:scalar: '%s' must be a number, string or boolean, got %s", name, t), 2)
  end
  if name:find("/", 1, true) then self.file:write(rel(self, name), value)
  else self.file:set_attr(self.path, name, value) end
end

--- Helpers relative to the run's group ("" is the group itself).
function Run:write(path, value, dtype) self.file:write(rel(self, path), value, dtype) end
function Run:append(path, value, dtype) self.file:append(rel(self, path), value, dtype) end
function Run:set_attr(path, name, value) self.file:set_attr(rel(self, path), name, value) end
function Run:group(path) self.file:group(rel(self, path)) end

--- run:finish(): marks the run complete (finished = 1) and flushes the file
function Run:finish()
  self.file:set_attr(self.path, "finished", 1)
  self.file:flush()
end

function M.attach(p)
  pose = p
  p.experiment = M.experiment
end

return M
