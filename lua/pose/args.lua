-- Command-line options for `pose run SCRIPT --key value ...`: numbers and booleans are parsed, `--flag` alone is
-- true, `--no-flag` is false, `--key=value` works too, and positional words land in opts[1], opts[2], ...
local M = {}

local function convert(v)
  if v == "true" then return true end
  if v == "false" then return false end
  if v == "nil" then return nil end
  local n = math.tointeger(tonumber(v)) or tonumber(v)
  if n ~= nil and v:match("^%s*[-+]?[%d.]") then return n end
  return v
end

function M.parse(argv)
  local opts, i = {}, 1
  while i <= #argv do
    local a = argv[i]
    local key, val = a:match("^%-%-([%w_%-%.]+)=(.*)$")
    if key then
      opts[key:gsub("-", "_")] = convert(val)
    elseif a:match("^%-%-no%-[%w_%-]+$") then
      opts[(a:sub(6):gsub("-", "_"))] = false
    elseif a:match("^%-%-[%w_%-%.]+$") then
      key = a:sub(3):gsub("-", "_")
      local nxt = argv[i + 1]
      if nxt ~= nil and not nxt:match("^%-%-%a") then
        opts[key] = convert(nxt); i = i + 1
      else
        opts[key] = true
      end
    else
      opts[#opts + 1] = convert(a)
    end
    i = i + 1
  end
  return opts
end

-- Fills in defaults and rejects keys the script does not know (a typo must not silently run the default).
function M.merge(opts, defaults, name)
  local out = {}
  for k, v in pairs(defaults) do out[k] = v end
  for k, v in pairs(opts or {}) do
    if type(k) == "string" then
      if defaults[k] == nil then
        local known = {}
        for dk in pairs(defaults) do known[#known + 1] = dk end
        table.sort(known)
        error(string.format("%s: unknown option --%s (known: %s)", name or "script", k, table.concat(known, ", ")), 2)
      end
      if type(defaults[k]) == "number" and type(v) ~= "number" then
        error(string.format("%s: option --%s expects a number, got '%s'", name or "script", k, tostring(v)), 2)
      end
      out[k] = v
    end
  end
  return out
end

return M
