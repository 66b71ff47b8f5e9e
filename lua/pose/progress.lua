-- Progress display for long work (training, evaluation): on a terminal one line redrawn in place, otherwise plain
-- periodic lines, so that logs stay readable. Shows done/total, rate, ETA and any extra fields (loss, tokens/s).
local M = {}
M.__index = M

local function isatty()
  -- POSE_PROGRESS=tty|plain|off overrides the guess; the guess asks the shell whether stderr is a terminal.
  local env = os.getenv("POSE_PROGRESS")
  if env == "tty" then return true elseif env == "plain" or env == "off" then return false end
  local ok = os.execute("test -t 2")
  return ok == true or ok == 0
end

local tty_cache
-- wall-clock seconds; init.lua points this at pose.now (monotonic, sub-microsecond) when the C module is there
M.clock = os.clock
local function now() return M.clock() end

-- pose.progress(label, total, {every = seconds between plain lines (default 10), quiet = bool})
function M.new(label, total, opts)
  opts = opts or {}
  if tty_cache == nil then tty_cache = isatty() end
  local off = os.getenv("POSE_PROGRESS") == "off" or opts.quiet
  return setmetatable({label = label, total = total, done = 0, t0 = now(), last = -math.huge,
                       every = opts.every or 10, tty = tty_cache, off = off}, M)
end

local function fmt_time(s)
  if s ~= s or s == math.huge then return "?" end
  s = math.floor(s + 0.5)
  if s >= 3600 then return string.format("%dh%02dm", s // 3600, (s % 3600) // 60) end
  if s >= 60 then return string.format("%dm%02ds", s // 60, s % 60) end
  return string.format("%ds", s)
end

-- p:update(done, {loss = 2.31, ["tok/s"] = 1234}) ; fields print in sorted key order
function M:update(done, fields)
  self.done = done
  if self.off then return end
  local elapsed = math.max(now() - self.t0, 1e-9)
  if not self.tty and elapsed - self.last < self.every and done < (self.total or math.huge) then return end
  self.last = elapsed
  local parts = {string.format("%s %d", self.label, done)}
  if self.total then
    parts[1] = parts[1] .. "/" .. self.total
    local rate = done / elapsed
    if done > 0 and rate > 0 then parts[#parts + 1] = "eta " .. fmt_time((self.total - done) / rate) end
  end
  parts[#parts + 1] = "elapsed " .. fmt_time(elapsed)
  if fields then
    local keys = {}
    for k in pairs(fields) do keys[#keys + 1] = k end
    table.sort(keys)
    for _, k in ipairs(keys) do
      local v = fields[k]
      parts[#parts + 1] = string.format(math.type(v) == "float" and "%s %.4g" or "%s %s", k, v)
    end
  end
  local line = table.concat(parts, "  ")
  self.printed = done
  if self.tty then io.stderr:write("\r\27[K" .. line) else io.stderr:write(line .. "\n") end
  io.stderr:flush()
end

function M:finish(fields)
  if self.off then return end
  if self.tty then self:update(self.done, fields); io.stderr:write("\n")
  elseif self.printed ~= self.done or fields then self.last = -math.huge; self:update(self.done, fields) end
end

return M
