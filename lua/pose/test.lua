-- A small test harness for Lua tests (tests/lua/*.lua): named cases, assertions that say what differed, and the
-- closing line "N passed, N failed" with a non-zero exit status on failure.
local M = {}
local passed, failed, current = 0, 0, "?"

local function fail(msg, level)
  failed = failed + 1
  local info = debug.getinfo(level or 3, "Sl")
  io.stderr:write(string.format("FAIL [%s] %s:%d: %s\n", current, info.short_src, info.currentline, msg))
end

function M.case(name, fn)
  current = name
  local ok, err = xpcall(fn, debug.traceback)
  if not ok then
    failed = failed + 1
    io.stderr:write(string.format("FAIL [%s] raised: %s\n", name, tostring(err)))
  end
end

function M.check(cond, msg)
  if cond then passed = passed + 1 else fail(msg or "condition is false") end
end

function M.eq(a, b, msg)
  if a == b then passed = passed + 1
  else fail(string.format("%s: got %s, expected %s", msg or "eq", tostring(a), tostring(b))) end
end

function M.near(a, b, tol, msg)
  if type(a) == "number" and type(b) == "number" and math.abs(a - b) <= tol then passed = passed + 1
  else fail(string.format("%s: got %s, expected %s (tol %g)", msg or "near", tostring(a), tostring(b), tol)) end
end

-- deep equality of nested tables of numbers/strings
local function deq(a, b)
  if type(a) ~= type(b) then return false end
  if type(a) ~= "table" then return a == b end
  for k, v in pairs(a) do if not deq(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end
M.deep_equal = deq

function M.same(a, b, msg)
  if deq(a, b) then passed = passed + 1 else fail((msg or "same") .. ": tables differ") end
end

-- fn must raise an error whose message contains `pattern` (plain text)
function M.raises(fn, pattern, msg)
  local ok, err = pcall(fn)
  if ok then fail((msg or "raises") .. ": no error raised (expected '" .. pattern .. "')")
  elseif not tostring(err):find(pattern, 1, true) then
    fail(string.format("%s: error '%s' does not contain '%s'", msg or "raises", tostring(err), pattern))
  else passed = passed + 1 end
end

function M.tmpdir()
  local d = os.tmpname()
  os.remove(d)
  assert(os.execute("mkdir -p " .. d))
  return d
end

function M.done(name)
  print(string.format("%s: %d passed, %d failed", name or (arg and arg[0]) or "lua", passed, failed))
  os.exit(failed == 0 and 0 or 1)
end

function M.skip(why)
  print("SKIP: " .. why)
  os.exit(77)
end

return M
