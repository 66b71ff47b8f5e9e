-- Text helpers of the corpus builder: the document record files between stages, shell and file utilities, and the
-- crude markup strippers (roff, OSIS) plus the R-serialisation reader for janeaustenr.
local M = {}

-- ---- shell and files -------------------------------------------------------------------------------------------

function M.quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- Runs a shell command; returns true on success. quiet: output goes to a log file instead of the terminal.
function M.sh(cmd, log)
  if log then cmd = "(" .. cmd .. ") >>" .. M.quote(log) .. " 2>&1" end
  local ok = os.execute(cmd)
  return ok == true or ok == 0
end

function M.exists(p)
  local f = io.open(p, "rb")
  if f then f:close() return true end
  return false
end

function M.read(p)
  local f, err = io.open(p, "rb")
  if not f then error("build_corpus: cannot read " .. p .. ": " .. tostring(err), 0) end
  local s = f:read("a")
  f:close()
  return s
end

-- Writes atomically: a temporary file renamed into place.
function M.write(p, s)
  local tmp = p .. ".tmp"
  local f = assert(io.open(tmp, "wb"))
  f:write(s)
  f:close()
  assert(os.rename(tmp, p))
end

function M.mkdir(p) assert(M.sh("mkdir -p " .. M.quote(p)), "cannot create " .. p) end

-- Regular files under dir (recursively) whose name matches the Lua pattern, sorted, as paths relative to dir.
function M.find(dir, pattern)
  local out = {}
  local p = io.popen("cd " .. M.quote(dir) .. " 2>/dev/null && find . -type f 2>/dev/null | LC_ALL=C sort")
  for line in p:lines() do
    local rel = line:gsub("^%./", "")
    if not pattern or rel:match(pattern) then out[#out + 1] = rel end
  end
  p:close()
  return out
end

function M.file_size(p)
  local f = io.open(p, "rb")
  if not f then return nil end
  local n = f:seek("end")
  f:close()
  return n
end

-- ---- document records ------------------------------------------------------------------------------------------
-- A .docs file is a sequence of records "#doc <bytes> <set> <source>\n" + text + "\n": binary-safe, streamable and
-- readable without a JSON parser. set is train | gov | proof | book (or a user's name); source names package:file.

function M.doc_writer(path)
  local tmp = path .. ".tmp"
  local f = assert(io.open(tmp, "wb"))
  local w = {docs = 0, bytes = 0}
  function w.add(text, set, source)
    assert(not set:find("%s") and not source:find("\n"), "bad set/source")
    f:write("#doc ", #text, " ", set, " ", source, "\n", text, "\n")
    w.docs = w.docs + 1
    w.bytes = w.bytes + #text
  end
  function w.close()
    f:close()
    assert(os.rename(tmp, path))
  end
  function w.abort()
    f:close()
    os.remove(tmp)
  end
  return w
end

function M.each_doc(path)
  local f = assert(io.open(path, "rb"))
  return function()
    local h = f:read("l")
    if not h then f:close() return nil end
    local n, set, source = h:match("^#doc (%d+) (%S+) (.*)$")
    if not n then f:close(); error("build_corpus: corrupt record header in " .. path .. ": " .. h:sub(1, 80), 0) end
    local text = f:read(tonumber(n))
    f:read(1)
    return text, set, source
  end
end

-- ---- text cleanup ----------------------------------------------------------------------------------------------

-- Valid UTF-8 (the tokenizer requires it): each byte of an invalid sequence becomes U+FFFD.
function M.clean_utf8(s)
  if utf8.len(s) then return s end
  local out, i, n = {}, 1, #s
  while i <= n do
    local ok, bad = utf8.len(s, i)
    if ok then out[#out + 1] = s:sub(i); break end
    out[#out + 1] = s:sub(i, bad - 1)
    out[#out + 1] = "\u{FFFD}"
    i = bad + 1
  end
  return table.concat(out)
end

-- Trailing spaces off every line, runs of 3+ newlines to 2, no leading/trailing blank lines.
function M.tidy(s)
  s = s:gsub("\r\n", "\n"):gsub("[ \t]+\n", "\n"):gsub("\n\n\n+", "\n\n")
  return (s:gsub("^\n+", ""):gsub("%s+$", ""))
end

local entities = {amp = "&", lt = "<", gt = ">", quot = '"', apos = "'", nbsp = " "}
local function decode_entities(s)
  return (s:gsub("&(#?%w+);", function(e)
    if entities[e] then return entities[e] end
    local n = e:match("^#(%d+)$") or (e:match("^#x(%x+)$") and tonumber(e:sub(3), 16))
    n = tonumber(n)
    if n and n < 0x110000 then return utf8.char(n) end
    return nil
  end))
end

-- OSIS (SWORD modules) -> text: paragraphs, titles and chapters on their own lines, every other tag dropped.
function M.osis_to_text(s)
  s = s:gsub("<chapter[^>]*>", "\n\n")
  s = s:gsub("<title[^>]*>", "\n\n"):gsub("</title>", "\n\n")
  s = s:gsub('<div[^>]-type="x%-p"[^>]*>', "\n"):gsub("<lb[^>]*>", "\n"):gsub("<l [^>]*>", "\n"):gsub("</?p>", "\n")
  s = s:gsub("<[^>]*>", "")
  s = decode_entities(s)
  s = s:gsub("[ \t]+", " "):gsub("\n ", "\n")
  return M.tidy(s)
end

-- roff (man pages) -> text, crudely: requests dropped or turned into line breaks, section headings and font macros
-- kept as plain text, inline escapes removed or mapped to their characters.
local roff_chars = {em = "—", en = "–", aq = "'", dq = '"', lq = '"', rq = '"', oq = "'", cq = "'", bu = "•",
                    co = "©", rg = "®", tm = "™", hy = "-", mi = "-", pl = "+", mu = "×", di = "÷", ["<="] = "<=",
                    [">="] = ">=", ["!="] = "!=", ["->"] = "->", ["<-"] = "<-", ["**"] = "*", ti = "~", ha = "^",
                    rs = "\\", ga = "`", dg = "†", de = "°", sc = "§", ["14"] = "¼", ["12"] = "½"}
local function roff_inline(s)
  s = s:gsub("\\%((..)", function(c) return roff_chars[c] or "" end)
  s = s:gsub("\\%[([^%]]*)%]", function(c) return roff_chars[c] or "" end)
  s = s:gsub("\\f%(..", ""):gsub("\\f%[[^%]]*%]", ""):gsub("\\f.", "")
  s = s:gsub("\\%*%(..", ""):gsub("\\%*%[[^%]]*%]", ""):gsub("\\%*.", "")
  s = s:gsub("\\s[-+]?%d", ""):gsub("\\[hvwlLxXoNkzbH]'[^']*'", "")
  s = s:gsub("\\%-", "-"):gsub("\\e", "\\"):gsub("\\&", ""):gsub("\\[ ~0]", " "):gsub("\\[|^c%%]", "")
  s = s:gsub("\\\\", "\\"):gsub("\\'", "'"):gsub("\\`", "`"):gsub('\\"', "")
  return s
end
local function roff_args(rest)
  local args = {}
  local i = 1
  while i <= #rest do
    local c = rest:sub(i, i)
    if c == " " or c == "\t" then i = i + 1
    elseif c == '"' then
      local j = rest:find('"', i + 1, true) or (#rest + 1)
      args[#args + 1] = rest:sub(i + 1, j - 1)
      i = j + 1
    else
      local j = rest:find("[ \t]", i) or (#rest + 1)
      args[#args + 1] = rest:sub(i, j - 1)
      i = j
    end
  end
  return args
end
local alternating = {BR = true, IR = true, RB = true, RI = true, BI = true, IB = true}
local same_font = {B = true, I = true, SM = true, SB = true}
local paragraph = {PP = true, LP = true, P = true, sp = true, TP = true, HP = true, IP = true, TQ = true}

-- Filled text (roff's default) is joined into paragraphs; no-fill blocks (.nf/.EX, tables) keep their lines.
function M.roff_to_text(s)
  if s:match("^%.so ") then return "" end
  local out, para = {}, {}
  local nofill, tbl_spec = false, false
  local function flush(blank)
    if #para > 0 then out[#out + 1] = table.concat(para, " "); para = {} end
    if blank and out[#out] ~= "" then out[#out + 1] = "" end
  end
  local function text(t)
    if nofill then out[#out + 1] = t
    elseif t:match("^%s*$") then flush(true)
    else para[#para + 1] = t end
  end
  for line in (s .. "\n"):gmatch("([^\n]*)\n") do
    if tbl_spec then
      if line:match("%.%s*$") then tbl_spec = false end -- the table's format lines end with a period
    elseif line:match("^[%.']%s*\\\"") or line:match("^\\\"") then
      -- comment
    elseif line:match("^[%.']") then
      local mac, rest = line:match("^[%.']%s*(%S*)%s*(.*)$")
      if mac == "SH" or mac == "SS" then
        flush(true)
        out[#out + 1] = roff_inline(table.concat(roff_args(rest), " "))
      elseif mac == "TH" then
        local a = roff_args(rest)
        out[#out + 1] = roff_inline((a[1] or "") .. "(" .. (a[2] or "") .. ")")
      elseif alternating[mac] then
        text(roff_inline(table.concat(roff_args(rest), "")))
      elseif same_font[mac] then
        text(roff_inline(table.concat(roff_args(rest), " ")))
      elseif paragraph[mac] then
        flush(true)
        if mac == "IP" then local a = roff_args(rest) if a[1] then out[#out + 1] = roff_inline(a[1]) end end
      elseif mac == "br" then
        flush(false)
      elseif mac == "nf" or mac == "EX" then
        flush(false); nofill = true
      elseif mac == "fi" or mac == "EE" or mac == "TE" then
        nofill = false
      elseif mac == "TS" then
        flush(true); tbl_spec, nofill = true, true
      elseif mac == "UR" or mac == "MT" then
        text(roff_inline(rest))
      end
    else
      text(roff_inline(line))
    end
  end
  flush(false)
  return M.tidy(table.concat(out, "\n"))
end

-- R serialisation (format 2 or 3, XDR) of a character vector -> list of strings; nil for any other object.
function M.r_strings(blob)
  if blob:sub(1, 2) ~= "X\n" then return nil end
  local version, pos = string.unpack(">i4", blob, 3)
  pos = pos + 8 -- writer's R version, minimal reader version
  if version == 3 then
    local n
    n, pos = string.unpack(">i4", blob, pos)
    pos = pos + n -- native encoding name
  end
  local flags, n
  flags, pos = string.unpack(">i4", blob, pos)
  if flags & 0xff ~= 16 then return nil end -- STRSXP
  n, pos = string.unpack(">i4", blob, pos)
  local out = {}
  for i = 1, n do
    local f, len
    f, pos = string.unpack(">i4", blob, pos)
    if f & 0xff ~= 9 then return nil end -- CHARSXP
    len, pos = string.unpack(">i4", blob, pos)
    if len >= 0 then
      out[i] = blob:sub(pos, pos + len - 1)
      pos = pos + len
    else
      out[i] = "" -- NA
    end
  end
  return out
end

-- ---- minimal JSON output (reports) -----------------------------------------------------------------------------
local function json_str(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    local map = {['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\t"] = "\\t", ["\r"] = "\\r"}
    return map[c] or string.format("\\u%04x", c:byte())
  end) .. '"'
end

function M.json(v, indent)
  indent = indent or ""
  local t = type(v)
  if t == "string" then return json_str(v)
  elseif t == "number" then
    if math.type(v) == "integer" then return tostring(v) end
    return string.format("%.6g", v)
  elseif t == "boolean" then return tostring(v)
  elseif t == "table" then
    local inner = indent .. "  "
    if #v > 0 or next(v) == nil then
      local parts = {}
      for _, x in ipairs(v) do parts[#parts + 1] = M.json(x, inner) end
      return "[" .. table.concat(parts, ", ") .. "]"
    end
    local keys = {}
    for k in pairs(v) do keys[#keys + 1] = k end
    table.sort(keys)
    local parts = {}
    for _, k in ipairs(keys) do parts[#parts + 1] = inner .. json_str(k) .. ": " .. M.json(v[k], inner) end
    return "{\n" .. table.concat(parts, ",\n") .. "\n" .. indent .. "}"
  end
  return "null"
end

return M
