-- A small JSON encoder with a deterministic output, for run configs stored in HDF5 attributes.
--   json.encode(value) -> string
-- Objects' keys are sorted, so the same table always gives the same text. A table whose keys are exactly 1..n
-- (n >= 1) is an array; any other table is an object and must have string keys only; the empty table is {}.
-- Integers print as integers, other numbers in the shortest form that reads back to the same double (with ".0"
-- when it would otherwise look like an integer). NaN, infinities, functions, userdata and cycles are errors
-- naming where they were found: JSON cannot hold them.
local M = {}

local escapes = { ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f", ["\n"] = "\\n", ["\r"] = "\\r",
                  ["\t"] = "\\t" }

local function encode_string(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    return escapes[c] or string.format("\\u%04x", c:byte())
  end) .. '"'
end

local function encode_number(x, where)
  if math.type(x) == "integer" then return string.format("%d", x) end
  if x ~= x or x == math.huge or x == -math.huge then
    error(string.format("json: %s is %s, which JSON cannot represent", where, tostring(x)), 0)
  end
  local s
  for digits = 15, 17 do
    s = string.format("%." .. digits .. "g", x)
    if tonumber(s) == x then break end
  end
  if not s:find("[.eEn]") then s = s .. ".0" end -- keep it a float for readers that care (Python)
  return s
end

local function is_array(t)
  local n = #t
  if n == 0 then return false end
  local count = 0
  for k in pairs(t) do
    if math.type(k) ~= "integer" or k < 1 or k > n then return false end
    count = count + 1
  end
  return count == n
end

local encode

local function encode_table(t, where, seen, out)
  if seen[t] then error(string.format("json: %s contains itself", where), 0) end
  seen[t] = true
  if is_array(t) then
    out[#out + 1] = "["
    for i = 1, #t do
      if i > 1 then out[#out + 1] = "," end
      encode(t[i], string.format("%s[%d]", where, i), seen, out)
    end
    out[#out + 1] = "]"
  else
    local keys = {}
    for k in pairs(t) do
      if type(k) ~= "string" then
        error(string.format("json: %s has a %s key (%s); object keys must be strings", where, type(k), tostring(k)), 0)
      end
      keys[#keys + 1] = k
    end
    table.sort(keys)
    out[#out + 1] = "{"
    for i, k in ipairs(keys) do
      if i > 1 then out[#out + 1] = "," end
      out[#out + 1] = encode_string(k)
      out[#out + 1] = ":"
      encode(t[k], where .. "." .. k, seen, out)
    end
    out[#out + 1] = "}"
  end
  seen[t] = nil
end

encode = function(v, where, seen, out)
  local ty = type(v)
  if ty == "table" then encode_table(v, where, seen, out)
  elseif ty == "string" then out[#out + 1] = encode_string(v)
  elseif ty == "number" then out[#out + 1] = encode_number(v, where)
  elseif ty == "boolean" then out[#out + 1] = tostring(v)
  elseif v == nil then out[#out + 1] = "null"
  else error(string.format("json: %s is a %s, which JSON cannot represent", where, ty), 0) end
end

function M.encode(v)
  local out = {}
  encode(v, "value", {}, out)
  return table.concat(out)
end

return M
