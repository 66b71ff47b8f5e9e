-- Unpacks a travel pack written by build_corpus.lua --travel-pack (tokenizer + gzip'd shards) on a machine with no
-- registry access, using only the pose binary (gzip is inflated in-process), and checks every shard.
--
--   build/pose run experiments/data/unpack_travel.lua --pack DIR/travel --out DATA
--
-- DATA then holds tokenizer.model, manifest.json and the shards (train.shard, gov-000.shard, ...); a shard already
-- unpacked (same size as the manifest says) is left alone.
local script_dir = (arg and arg[0] and arg[0]:match("^(.*)/[^/]*$")) or "."
package.path = script_dir .. "/?.lua;" .. package.path
local X = require "corpus_text"

local opts = pose.args.merge(..., {pack = "", out = ""}, "unpack_travel")
if opts.pack == "" or opts.out == "" then
  io.stderr:write("usage: pose run experiments/data/unpack_travel.lua --pack DIR/travel --out DATA\n")
  os.exit(2)
end
local PACK, OUT = opts.pack:gsub("/+$", ""), opts.out:gsub("/+$", "")
X.mkdir(OUT)
for _, f in ipairs({"tokenizer.model", "manifest.json"}) do
  if not X.exists(PACK .. "/" .. f) then error("unpack_travel: " .. PACK .. "/" .. f .. " is missing", 0) end
  X.write(OUT .. "/" .. f, X.read(PACK .. "/" .. f))
end
local files = {}
for _, rel in ipairs(X.find(PACK, "^[^/]+%.shard%.gz$")) do files[#files + 1] = rel end
if #files == 0 then error("unpack_travel: no *.shard.gz in " .. PACK, 0) end
local tokens, docs = 0, 0
for _, rel in ipairs(files) do
  local name = rel:gsub("%.gz$", "")
  local dst = OUT .. "/" .. name
  if not X.exists(dst) then
    local data = pose.inflate(X.read(PACK .. "/" .. rel))
    X.write(dst, data)
  end
  local r = pose.shards(dst) -- validates the format
  r:check()                  -- and every token against the recorded vocabulary
  print(string.format("%-20s %8d documents %12d tokens", name, r:num_docs(), r:num_tokens()))
  tokens, docs = tokens + r:num_tokens(), docs + r:num_docs()
  r:close()
end
print(string.format("unpacked %d shards (%d documents, %d tokens) into %s", #files, docs, tokens, OUT))
