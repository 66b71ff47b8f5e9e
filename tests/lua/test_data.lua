-- Data: shard writer/reader from Lua, the builder helpers (inflate, text_hash, jsonl), and the loader (determinism,
-- rank sharding, state, packing for full-length); the loader part skips (77) while pose.sampler is absent.
local T = require "pose.test"
local dir = T.tmpdir()

local function write(path, docs, opts)
  local w = pose.shard_writer(path, opts)
  for i, d in ipairs(docs) do w:add(d, {source = "doc" .. i}) end
  return w:close()
end

T.case("writer and reader round trip", function()
  local p = dir .. "/a.shard"
  local nd, nt = write(p, {{1, 2, 3}, {}, {65535, 7}}, {eos_id = 2})
  T.eq(nd, 3, "docs"); T.eq(nt, 5, "tokens")
  local r = pose.shards(p)
  T.eq(r:num_docs(), 3); T.eq(r:num_tokens(), 5); T.eq(r:num_shards(), 1)
  T.same(r:doc(1, {table = true}), {1, 2, 3})
  T.same(r:doc(2, {table = true}), {})
  T.same(r:doc(3):totable(), {65535, 7})
  T.eq(r:doc(3):dtype(), "i64")
  T.eq(r:doc_len(1), 3); T.eq(r:doc_len(2), 0)
  T.eq(r:source(3), "doc3")
  T.eq(r:eos_id(), 2); T.eq(r:vocab_size(), nil)
  T.same(r:dtypes(), {"u16"})
  T.raises(function() r:doc(0) end, "document 0 out of range 1..3")
  T.raises(function() r:doc(4) end, "out of range")
  T.raises(function() r:doc(1, {tabel = true}) end, "tabel")
  T.check(tostring(r):find("3 documents", 1, true) ~= nil, "tostring")
  r:close()
  T.raises(function() r:num_docs() end, "closed")
end)

T.case("several shards read as one collection; u32; tensors in", function()
  local p1, p2 = dir .. "/m1.shard", dir .. "/m2.shard"
  write(p1, {{5, 6}, {7}}, {dtype = "u32", vocab_size = 100000})
  write(p2, {pose.tensor({70000, 1, 2}, "i64"), pose.tensor({3}, "i32")}, {dtype = "u32", vocab_size = 100000})
  local r = pose.shards({p1, p2})
  T.eq(r:num_docs(), 4); T.eq(r:num_tokens(), 7)
  T.same(r:doc(3, {table = true}), {70000, 1, 2})
  T.same(r:doc(4, {table = true}), {3})
  T.eq(r:vocab_size(), 100000)
  T.check(r:check(), "check")
  T.raises(function() r:check(10) end, "outside the vocabulary of 10")
  T.same(r:paths(), {p1, p2})
end)

T.case("writer errors", function()
  local p = dir .. "/e.shard"
  T.raises(function() pose.shard_writer(p, {dtype = "u8"}) end, 'dtype must be "u16" or "u32"')
  T.raises(function() pose.shard_writer(p, {dtpye = "u16"}) end, "dtpye")
  T.raises(function() pose.shard_writer("/nonexistent/x.shard") end, "cannot create")
  local w = pose.shard_writer(p, {vocab_size = 10})
  T.raises(function() w:add({1, 10}) end, "token 1 is 10, outside [0, 10)")
  T.raises(function() w:add({1.5}) end, "not an integer")
  T.raises(function() w:add(pose.tensor({1.0})) end, "f32 tensor")
  T.raises(function() w:add({{1}, {2}}) end, "1-D")
  T.raises(function() w:add("abc") end, "table of integers")
  w:add({1, 2}, {source = "x"})
  T.eq(w:num_docs(), 1)
  w:abort()
  T.raises(function() w:add({1}) end, "after close")
  T.eq(io.open(p) , nil, "aborted writer leaves no file")
  T.raises(function() pose.shards(dir .. "/missing.shard") end, "cannot open")
  local f = io.open(dir .. "/junk.shard", "wb"); f:write(string.rep("x", 100)); f:close()
  T.raises(function() pose.shards(dir .. "/junk.shard") end, "junk.shard: bad magic")
  T.raises(function() pose.shards({}) end, "empty list")
  T.raises(function() pose.shards(3) end, "path or a list of paths")
end)

T.case("inflate, text_hash, jsonl", function()
  -- zlib stream of "hello hello hello" (python: zlib.compress(b"hello hello hello")), twice back to back
  local z = "\x78\x9c\xcb\x48\xcd\xc9\xc9\x57\xc8\x40\x90\x00\x3a\x2e\x06\x7d"
  local s, nxt = pose.inflate(z .. z)
  T.eq(s, "hello hello hello"); T.eq(nxt, #z + 1)
  local s2, nxt2 = pose.inflate(z .. z, nxt)
  T.eq(s2, "hello hello hello"); T.eq(nxt2, 2 * #z + 1)
  -- gzip member of "abc\n" (printf 'abc\n' | gzip -n)
  local gz = "\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\x4b\x4c\x4a\xe6\x02\x00\x4e\x81\x88\x47\x04\x00\x00\x00"
  T.eq((pose.inflate(gz)), "abc\n")
  T.raises(function() pose.inflate(z:sub(1, 8)) end, "truncated")
  T.raises(function() pose.inflate("not zlib at all") end, "pose.inflate")
  T.eq(pose.text_hash("Hello,  World\n"), pose.text_hash("  hello, world"))
  T.check(pose.text_hash("hello world") ~= pose.text_hash("helloworld"), "spaces matter")
  T.eq(#pose.text_hash(""), 16)
  local p = dir .. "/in.jsonl"
  local f = io.open(p, "w")
  f:write('{"text": "first\\ndoc", "id": 1}\n\n{"text": "caf\\u00e9"}\n')
  f:close()
  local got = {}
  for text, line in pose.jsonl(p) do got[#got + 1] = {text, line} end
  T.same(got, {{"first\ndoc", 1}, {"café", 3}})
  f = io.open(p, "w"); f:write('{"body": "x"}\n'); f:close()
  T.raises(function() for _ in pose.jsonl(p) do end end, 'line 1 has no string field "text"')
  local n = 0
  for t in pose.jsonl(p, "body") do n = n + 1; T.eq(t, "x") end
  T.eq(n, 1)
  f = io.open(p, "w"); f:write('{"text": "ok"}\n[1,2]\n'); f:close()
  T.raises(function() for _ in pose.jsonl(p) do end end, "line 2 is not a JSON object")
  T.raises(function() pose.jsonl(dir .. "/none.jsonl") end, "cannot open")
end)

T.case("tokenize_files: files and JSONL to a shard (needs pose.tokenizer)", function()
  if not (pose.tokenizer and pose.train_tokenizer) then print("tokenize_files case skipped: no pose.tokenizer"); return end
  local src = "experiments/data/quickstart/train/1800_john_adams_f.txt"
  local text = io.open(src, "rb"):read("a")
  local train = dir .. "/spm.txt"
  local f = io.open(train, "w")
  for piece in text:gmatch("[^.]+%.") do f:write(piece, "\n") end
  f:close()
  -- the builder's settings: identity normalisation, byte fallback, no dummy prefix
  local model = pose.train_tokenizer{input = train, model_prefix = dir .. "/tiny", vocab_size = 400,
                                     add_dummy_prefix = false, hard_vocab_limit = false}
  local tok = pose.tokenizer(model)
  local jl = dir .. "/docs.jsonl"
  f = io.open(jl, "w"); f:write('{"text": "Two lines\\nof text."}\n{"text": "Third."}\n'); f:close()
  local res = pose.tokenize_files{tokenizer = model, files = {src}, jsonl = jl, out = dir .. "/tok.shard"}
  T.eq(res.docs, 3)
  local r = pose.shards(dir .. "/tok.shard")
  T.eq(r:num_tokens(), res.tokens)
  T.same(r:doc(1, {table = true}), tok:encode(text, {bos = false}))
  T.same(r:doc(2, {table = true}), tok:encode("Two lines\nof text.", {bos = false}))
  T.eq(r:source(3), jl .. ":2")
  T.eq(r:vocab_size(), tok.vocab_size); T.eq(r:eos_id(), tok.eos_id)
  T.eq(tok:decode(r:doc(2)), "Two lines\nof text.", "round trip with a newline")
  -- the builder's spm_encode path encodes line by line and joins with the newline piece: the same ids
  local nl = tok:id("<0x0A>")
  local joined = {}
  for _, line in ipairs({"Two lines", "of text."}) do
    if #joined > 0 then joined[#joined + 1] = nl end
    for _, id in ipairs(tok:encode(line, {bos = false})) do joined[#joined + 1] = id end
  end
  T.same(joined, r:doc(2, {table = true}), "line by line == whole document")
  T.raises(function() pose.tokenize_files{tokenizer = model, out = dir .. "/x.shard"} end, "give files= or jsonl=")
  T.raises(function() pose.tokenize_files{tokenizer = model, files = {dir .. "/nope.txt"}, out = dir .. "/x.shard"} end,
           "cannot read")
  T.eq(io.open(dir .. "/x.shard"), nil, "no shard left behind")
  T.raises(function() pose.tokenize_files{tokeniser = model} end, "unknown option 'tokeniser'")
end)

-- ---- loader ---------------------------------------------------------------------------------------------------
if not pose.sampler then
  T.done("test_data (loader cases skipped: pose.sampler is not built)")
end

-- 40 documents of lengths 10..49 (document d holds 1000*d + k at offset k: every token says where it came from)
local lp = dir .. "/loader.shard"
do
  local w = pose.shard_writer(lp, {dtype = "u32", eos_id = 3})
  for d = 1, 40 do
    local ids = {}
    for k = 0, d + 8 do ids[#ids + 1] = 1000 * d + k end
    w:add(ids, {source = "d" .. d})
  end
  w:close()
end
local shards = pose.shards(lp)

local function tbl(t) return t:totable() end

T.case("loader: batches are pure functions of (seed, example index)", function()
  local s = pose.sampler{method = "pose", train_len = 8, target_len = 32, chunks = 2, seed = 5}
  local a = pose.loader{shards = shards, sampler = s, batch = 4, seed = 1}
  local b = pose.loader{shards = lp, sampler = s, batch = 2, seed = 1}
  local info = a:info()
  T.eq(info.seq_len, 8); T.eq(info.units, 40); T.eq(info.epoch_len, 40)
  local x1, x2 = a:next(), a:next()
  T.same(x1.ids:shape(), {4, 8})
  -- batch 4 == two batches of 2
  local y1, y2 = b:next(), b:next()
  local ids = tbl(x1.ids)
  T.same({ids[1], ids[2]}, tbl(y1.ids)); T.same({ids[3], ids[4]}, tbl(y2.ids))
  -- targets = ids (labels convention), positions from the sampler: increasing, inside [0, Lt)
  T.same(tbl(x1.targets), ids)
  for r, row in ipairs(tbl(x1.positions)) do
    for k = 2, #row do T.check(row[k] > row[k - 1], "positions increase") end
    T.check(row[1] >= 0 and row[#row] < 32, "positions inside the target window")
    -- every token comes from the document the loader says, at the sampler's offset
    local d = x1.docs[r]
    for k = 1, 8 do T.eq(ids[r][k] // 1000, d, "token from its document") end
  end
  -- example(e) agrees with next()
  local e5 = a:example(5)
  T.same(tbl(e5.ids), tbl(x2.ids)[2]); T.eq(e5.doc, x2.docs[2])
  -- state and restore
  T.eq(a:state(), 8)
  a:set_state(4)
  T.same(tbl(a:next().ids), tbl(x2.ids))
  -- without resampling, a document gets the same draw in every epoch (40 examples per epoch here)
  local nr = pose.loader{shards = shards, sampler = s, batch = 1, seed = 1, resample = false, shuffle = false}
  local e0, e40 = nr:example(0), nr:example(40)
  T.eq(e0.doc, e40.doc); T.same(tbl(e0.positions), tbl(e40.positions))
  local rs = pose.loader{shards = shards, sampler = s, batch = 1, seed = 1, shuffle = false}
  T.check(not T.deep_equal(tbl(rs:example(0).positions), tbl(rs:example(40).positions)), "resampled every epoch")
  -- another seed, another order
  local c = pose.loader{shards = shards, sampler = s, batch = 4, seed = 2}
  T.check(not T.deep_equal(c:next().docs, x1.docs), "seed changes the order")
end)

T.case("loader: an epoch visits every document once; ranks partition the stream", function()
  local s = pose.sampler{method = "pi", train_len = 8, target_len = 8, seed = 1}
  local one = pose.loader{shards = shards, sampler = s, batch = 40, seed = 3}
  local all = one:next().docs
  local seen = {}
  for _, d in ipairs(all) do seen[d] = (seen[d] or 0) + 1 end
  local n = 0
  for d = 1, 40 do if seen[d] == 1 then n = n + 1 end end
  T.eq(n, 40, "a permutation of the 40 documents")
  local r0 = pose.loader{shards = shards, sampler = s, batch = 4, seed = 3, rank = 0, world = 2}
  local r1 = pose.loader{shards = shards, sampler = s, batch = 4, seed = 3, rank = 1, world = 2}
  local merged = {}
  for _ = 1, 5 do
    local b0, b1 = r0:next().docs, r1:next().docs
    for k = 1, 4 do merged[#merged + 1] = b0[k]; merged[#merged + 1] = b1[k] end
  end
  T.same(merged, all, "rank r takes examples r, r+w, ...")
  T.eq(r0:state(), 40); T.eq(r1:state(), 40)
  -- no shuffling: documents in order
  local seq = pose.loader{shards = shards, sampler = s, batch = 3, shuffle = false}
  T.same(seq:next().docs, {1, 2, 3})
  T.raises(function() pose.loader{shards = shards, sampler = s, rank = 2, world = 2} end, "rank 2 outside world 2")
  T.raises(function() pose.loader{shards = shards, sampler = s, batch = 0} end, "batch must be >= 1")
  T.raises(function() pose.loader{shards = shards, sampler = {}} end, "sampler must be a pose.sampler")
  T.raises(function() pose.loader{sampler = s} end, "shards is required")
  T.raises(function() pose.loader{shards = shards, sampler = s, wieght = "doc"} end, "wieght")
  T.raises(function() pose.loader{shards = shards, sampler = s, weight = "bytes"} end, 'weight must be "doc" or "tokens"')
end)

T.case("loader: short documents filtered; weight by tokens", function()
  local s = pose.sampler{method = "pose", train_len = 30, target_len = 60, seed = 1}
  local ld = pose.loader{shards = shards, sampler = s, batch = 8}
  local info = ld:info()
  T.eq(info.units, 20, "documents of >= 30 tokens (lengths 30..49)")
  T.eq(info.skipped_docs, 20)
  for _ = 1, 3 do for _, d in ipairs(ld:next().docs) do T.check(d >= 21, "only long documents") end end
  local s4 = pose.sampler{method = "pi", train_len = 4, target_len = 4, seed = 1}
  local wt = pose.loader{shards = shards, sampler = s4, weight = "tokens"}
  local exp = 0
  for d = 1, 40 do exp = exp + (d + 9) // 4 end
  T.eq(wt:info().epoch_len, exp, "floor(len / T) slots per document")
  local tiny = pose.sampler{method = "pi", train_len = 100, target_len = 100, seed = 1}
  T.raises(function() pose.loader{shards = shards, sampler = tiny} end, "no usable document")
end)

T.case("loader: full-length packs short documents with EOS", function()
  local s = pose.sampler{method = "full", train_len = 16, target_len = 64, seed = 1}
  local ld = pose.loader{shards = shards, sampler = s, batch = 4, shuffle = false}
  local info = ld:info()
  T.eq(info.seq_len, 64)
  T.eq(info.skipped_docs, 0)
  T.eq(info.packed_docs, 40, "every document is shorter than 64 tokens")
  local b = ld:next()
  local row = tbl(b.ids)[1]
  -- unit 1 = docs 1, 2, 3, ... each followed by EOS (3), truncated to 64 tokens; offsets start at 0
  local expect = {}
  local d = 1
  while #expect < 64 do
    for k = 0, d + 8 do if #expect < 64 then expect[#expect + 1] = 1000 * d + k end end
    if #expect < 64 then expect[#expect + 1] = 3 end
    d = d + 1
  end
  T.same(row, expect)
  T.same(tbl(b.positions)[1], (function() local p = {} for k = 0, 63 do p[#p + 1] = k end return p end)())
  T.eq(b.docs[1], 1); T.eq(b.docs[2], 6, "the next unit starts after the documents the first one used")
  -- pack = false filters instead
  T.raises(function() pose.loader{shards = shards, sampler = s, pack = false} end, "no usable document")
  -- packing without an EOS id is an error unless one is given
  local np = dir .. "/noeos.shard"
  write(np, {{1, 2}, {3, 4}})
  T.raises(function() pose.loader{shards = np, sampler = s} end, "needs an EOS id")
  local ok = pose.loader{shards = np, sampler = s, eos_id = 9, shuffle = false}
  T.same(tbl(ok:next().ids)[1], (function()
    local t, src = {}, {1, 2, 9, 3, 4, 9}
    for k = 0, 63 do t[#t + 1] = src[k % 6 + 1] end
    return t
  end)(), "the last run wraps around to the first documents")
end)

T.case("loader: short_docs = whole pads with -100 targets", function()
  local ok, s = pcall(pose.sampler, {method = "pose", train_len = 20, target_len = 40, short_docs = "whole", seed = 1})
  if not ok then T.check(false, "sampler with short_docs: " .. tostring(s)); return end
  local ld = pose.loader{shards = shards, sampler = s, batch = 1, shuffle = false, pad_id = 0}
  local b = ld:next() -- document 1: 10 tokens
  local ids, tg, pos = tbl(b.ids)[1], tbl(b.targets)[1], tbl(b.positions)[1]
  for k = 1, 10 do T.eq(ids[k] // 1000, 1); T.eq(tg[k], ids[k]) end
  for k = 11, 20 do T.eq(ids[k], 0, "pad"); T.eq(tg[k], -100, "ignored"); T.eq(pos[k], pos[10]) end
  T.eq(ld:info().skipped_docs, 0, "whole: nothing filtered")
end)

T.case("loader: speed of an 8 x 2048 batch", function()
  local p = dir .. "/long.shard"
  local w = pose.shard_writer(p)
  local ids = {}
  for k = 1, 20000 do ids[k] = k % 30000 end
  for _ = 1, 8 do w:add(ids) end
  w:close()
  local s = pose.sampler{method = "pose", train_len = 2048, target_len = 16384, seed = 1}
  local ld = pose.loader{shards = p, sampler = s, batch = 8}
  ld:next()
  local t0 = os.clock()
  for _ = 1, 50 do ld:next() end
  local per = (os.clock() - t0) / 50
  print(string.format("loader: 8 x 2048 batch in %.3f ms (including Lua tensor allocation)", per * 1e3))
  -- the strict bound (< 1 ms without Lua) is in tests/c/test_loader.c; this one only catches a pathology and
  -- leaves room for valgrind
  T.check(per < 0.05, "a batch in well under 50 ms")
end)

os.execute("rm -rf " .. dir)
T.done("test_data")
