-- pose's tokenizers against the `tokenizers` and `sentencepiece` libraries: ids and decodings of tricky strings,
-- recorded by tests/fixtures/gen_tokenizers.py. Skips while the fixtures have not been generated.
local pose = require "pose"
local T = require "pose.test"

local root = "tests/fixtures/tokenizers/"
local f = io.open(root .. "expected.json", "rb")
if not f then T.skip("tests/fixtures/tokenizers/expected.json is absent (run tests/fixtures/gen_tokenizers.py)") end
local text = f:read("a")
f:close()

-- A small JSON reader (objects, arrays, strings with \u escapes and surrogate pairs, numbers, literals): enough
-- for the fixture, which the generator writes as ASCII.
local function decode_json(s)
  local pos = 1
  local function ws() pos = s:find("[^ \t\r\n]", pos) or #s + 1 end
  local value
  local function str()
    local out = {}
    pos = pos + 1
    while true do
      local c = s:sub(pos, pos)
      if c == '"' then pos = pos + 1; return table.concat(out) end
      if c == "\\" then
        local e = s:sub(pos + 1, pos + 1)
        local simple = {['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f", n = "\n", r = "\r", t = "\t"}
        if simple[e] then out[#out + 1] = simple[e]; pos = pos + 2
        elseif e == "u" then
          local cp = tonumber(s:sub(pos + 2, pos + 5), 16)
          pos = pos + 6
          if cp >= 0xD800 and cp <= 0xDBFF and s:sub(pos, pos + 1) == "\\u" then
            local lo = tonumber(s:sub(pos + 2, pos + 5), 16)
            cp = 0x10000 + (cp - 0xD800) * 0x400 + (lo - 0xDC00)
            pos = pos + 6
          end
          out[#out + 1] = utf8.char(cp)
        else error("bad escape at " .. pos) end
      elseif c == "" then error("unterminated string")
      else
        local j = s:find('["\\]', pos)
        out[#out + 1] = s:sub(pos, j - 1)
        pos = j
      end
    end
  end
  function value()
    ws()
    local c = s:sub(pos, pos)
    if c == "{" then
      local t = {}
      pos = pos + 1
      ws()
      if s:sub(pos, pos) == "}" then pos = pos + 1; return t end
      while true do
        ws()
        local k = str()
        ws(); assert(s:sub(pos, pos) == ":", "colon expected"); pos = pos + 1
        t[k] = value()
        ws()
        local d = s:sub(pos, pos); pos = pos + 1
        if d == "}" then return t end
        assert(d == ",", "comma expected")
      end
    elseif c == "[" then
      local t = {}
      pos = pos + 1
      ws()
      if s:sub(pos, pos) == "]" then pos = pos + 1; return t end
      while true do
        t[#t + 1] = value()
        ws()
        local d = s:sub(pos, pos); pos = pos + 1
        if d == "]" then return t end
        assert(d == ",", "comma expected")
      end
    elseif c == '"' then return str()
    elseif s:sub(pos, pos + 3) == "true" then pos = pos + 4; return true
    elseif s:sub(pos, pos + 4) == "false" then pos = pos + 5; return false
    elseif s:sub(pos, pos + 3) == "null" then pos = pos + 4; return nil
    else
      local num = s:match("^-?%d+%.?%d*[eE]?[-+]?%d*", pos)
      pos = pos + #num
      return math.tointeger(tonumber(num)) or tonumber(num)
    end
  end
  return value()
end

local fx = decode_json(text)
local strings = fx.strings

for _, e in ipairs(fx.tokenizers) do
  T.case(e.name, function()
    local tok = pose.tokenizer(root .. e.path)
    T.eq(tok.kind, e.kind, e.name .. " kind")
    T.eq(tok.vocab_size, e.vocab_size, e.name .. " vocab_size")
    T.eq(tok.bos_id, e.bos_id, e.name .. " bos_id")
    T.eq(tok.eos_id, e.eos_id, e.name .. " eos_id")
    for i, s in ipairs(strings) do
      local label = ("%s: %q"):format(e.name, s)
      local ok, ids = pcall(tok.encode, tok, s)
      if not ok then T.check(false, label .. " raised " .. tostring(ids))
      else
        if not T.deep_equal(ids, e.ids[i]) then
          io.stderr:write(("  got      %s\n  expected %s\n"):format(table.concat(ids, " "), table.concat(e.ids[i], " ")))
        end
        T.same(ids, e.ids[i], label .. " ids")
        T.eq(tok:decode(e.ids[i]), e.decoded[i], label .. " decoded")
      end
    end
  end)
end

T.done("test_tokenizer_fixtures")
