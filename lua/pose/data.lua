-- Pure-Lua part of the data API: pose.tokenize_files, the short path from a user's text to a token shard.
--   pose.tokenize_files{tokenizer = path | pose.tokenizer, files = {paths} | jsonl = path | {paths}, out = path,
--                       field = "text", dtype = nil (u16 when the vocabulary fits), bos = false, eos = false}
--   -> {docs = n, tokens = n, out = path}
-- Every plain-text file is one document, every JSONL line one document (its `field`). The shard records the
-- tokenizer's vocabulary size and EOS id, so that a loader can pack documents with it.
local M = {}

local function list(v, what)
  if v == nil then return {} end
  if type(v) == "string" then return {v} end
  if type(v) ~= "table" then error("pose.tokenize_files: " .. what .. " must be a path or a list of paths", 3) end
  return v
end

function M.tokenize_files(o)
  if type(o) ~= "table" then error("pose.tokenize_files: expected a table of options", 2) end
  local known = {tokenizer = 1, files = 1, jsonl = 1, out = 1, field = 1, dtype = 1, bos = 1, eos = 1}
  for k in pairs(o) do
    if not known[k] then error("pose.tokenize_files: unknown option '" .. tostring(k) ..
                               "' (known: bos, dtype, eos, field, files, jsonl, out, tokenizer)", 2) end
  end
  if not pose.tokenizer then error("pose.tokenize_files: this build has no tokenizer (pose.tokenizer)", 2) end
  if type(o.out) ~= "string" then error("pose.tokenize_files: out (the shard path) is required", 2) end
  local tok = o.tokenizer
  if type(tok) == "string" then tok = pose.tokenizer(tok)
  elseif tok == nil then error("pose.tokenize_files: tokenizer (a path or pose.tokenizer) is required", 2) end
  local files, jsonl = list(o.files, "files"), list(o.jsonl, "jsonl")
  if #files + #jsonl == 0 then error("pose.tokenize_files: give files= or jsonl=", 2) end
  local vocab = tok.vocab_size
  local dtype = o.dtype or (vocab <= 65536 and "u16" or "u32")
  local eos = tok.eos_id
  local w = pose.shard_writer(o.out, {dtype = dtype, vocab_size = vocab, eos_id = (eos and eos >= 0) and eos or -1})
  local enc = {bos = o.bos or false, eos = o.eos or false}
  local ok, err = pcall(function()
    for _, f in ipairs(files) do
      local h, e = io.open(f, "rb")
      if not h then error("pose.tokenize_files: cannot read " .. f .. ": " .. tostring(e), 0) end
      local text = h:read("a")
      h:close()
      w:add(tok:encode(text, enc), {source = f})
    end
    for _, f in ipairs(jsonl) do
      for text, line in pose.jsonl(f, o.field or "text") do
        w:add(tok:encode(text, enc), {source = f .. ":" .. line})
      end
    end
  end)
  if not ok then w:abort(); error(err, 2) end
  local docs, tokens = w:close()
  return {docs = docs, tokens = tokens, out = o.out}
end

return M
