-- Lua bindings of the samplers and the coverage analysis: shapes of the results, the sampler's own counter,
-- determinism, properties over many draws, and every error path.
local pose = require "pose"
local T = require "pose.test"

local function check_example(e, o, doc_len)
  local lc, lt = o.train_len, o.target_len
  local n = e.len
  T.eq(#e.positions, n, "positions length")
  T.eq(#e.offsets, n, "offsets length")
  local sum, k = 0, 1
  for _, c in ipairs(e.chunks) do
    for t = 0, c.len - 1 do
      if e.positions[k] ~= c.position + t or e.offsets[k] ~= c.offset + t then
        T.check(false, "chunk does not match the arrays")
        return
      end
      k = k + 1
    end
    sum = sum + c.len
  end
  T.eq(sum, n, "chunk lengths sum to the example length")
  local ok = true
  for i = 1, n do
    ok = ok and e.positions[i] >= 0 and e.positions[i] < lt and e.offsets[i] >= 0 and e.offsets[i] < doc_len
    if i > 1 then ok = ok and e.positions[i] > e.positions[i - 1] end
  end
  T.check(ok, "positions increasing inside [0, Lt-1], offsets inside the document")
  if o.method == "pose" then
    T.eq(#e.chunks, o.chunks, "N chunks")
    local st, pu, pv = 0, 0, 0
    for i, c in ipairs(e.chunks) do
      local u, v = c.position - st, c.offset - st
      T.check(u >= pu and u <= lt - n, "skips non-decreasing and bounded")
      if i == 1 and o.u0 == "zero" then T.eq(u, 0, "u_0 = 0") end
      if o.content == "uniform" then T.check(v >= pv and v <= doc_len - n, "v non-decreasing") end
      if o.content == "zero" then T.eq(v, 0, "zero content") end
      if o.content == "aligned" then T.eq(v, u, "aligned content") end
      st, pu, pv = st + c.len, u, v
    end
  elseif o.method == "full" or o.method == "pi" then
    T.eq(#e.chunks, 1, "one chunk")
    T.eq(e.positions[1], 0)
    T.eq(e.positions[n], n - 1)
  end
end

T.case("construction, options, tostring", function()
  local s = pose.sampler{train_len = 64, target_len = 512}
  T.same(s:options(), {method = "pose", train_len = 64, target_len = 512, chunks = 2, content = "uniform", seed = 0,
                       chunk_rule = "paper", u0 = "zero", short_docs = "skip", max_doc_tokens = 0})
  T.eq(s:example_len(), 64)
  T.eq(s:min_doc_len(), 64)
  T.eq(s:max_chunks(), 2)
  T.check(tostring(s):find("pose.sampler%(pose, 64 %-> 512, chunks 2") ~= nil, tostring(s))
  local o = {method = "pose", train_len = 32, target_len = 256, chunks = 3, content = "aligned", seed = -5,
             chunk_rule = "paper", u0 = "random", short_docs = "whole", max_doc_tokens = 1000}
  local s2 = pose.sampler(o)
  T.same(s2:options(), o, "options round-trip")
  T.same(pose.sampler(s2:options()):sample(2000, 3), s2:sample(2000, 3), "a sampler rebuilt from options() is the same")
  T.eq(s2:min_doc_len(), 256, "aligned needs the target length")
  local f = pose.sampler{method = "full", train_len = 32, target_len = 256}
  T.eq(f:example_len(), 256)
  T.eq(f:max_chunks(), 1)
  T.check(tostring(f):find("full") ~= nil)
  T.eq(pose.sampler{method = "randpos", train_len = 32, target_len = 256}:max_chunks(), 32)
end)

T.case("sample: 0-based values, own counter, explicit index", function()
  local s = pose.sampler{train_len = 16, target_len = 128, chunks = 3, seed = 7}
  T.eq(s:index(), 0)
  local a = s:sample(100)
  T.eq(a.index, 0)
  T.eq(a.len, 16)
  T.eq(s:index(), 1)
  local b = s:sample(100)
  T.eq(b.index, 1)
  T.same(s:sample(100, 0), a, "explicit index 0 = first counter draw")
  T.eq(s:index(), 2, "an explicit index leaves the counter alone")
  T.eq(a.positions[1], 0, "u_0 = 0: first position is 0 (0-based)")
  T.eq(a.offsets[1], 0, "v_0 = 0: first offset is 0 (0-based)")
  T.eq(a.chunks[1].position, 0)
  s:seek(1)
  T.same(s:sample(100), b, "seek resumes at an index")
  T.eq(s:index(), 2)
  -- determinism across samplers and draw order
  local s2 = pose.sampler{train_len = 16, target_len = 128, chunks = 3, seed = 7}
  T.same(s2:sample(100, 1), b)
  local later = s2:sample(100, 50)
  for _ = 1, 10 do s2:sample(100) end
  T.same(s2:sample(100, 50), later, "same (seed, index), same example")
  local other = pose.sampler{train_len = 16, target_len = 128, chunks = 3, seed = 8}
  local differ = 0
  for i = 0, 19 do
    if not T.deep_equal(other:sample(100, i), s2:sample(100, i)) then differ = differ + 1 end
  end
  T.check(differ >= 18, "another seed gives other examples")
end)

T.case("properties over draws, every method", function()
  local configs = {
    {method = "pose", chunks = 1}, {method = "pose", chunks = 2}, {method = "pose", chunks = 5},
    {method = "pose", chunks = 2, content = "zero"}, {method = "pose", chunks = 3, content = "aligned"},
    {method = "pose", chunks = 2, chunk_rule = "code", u0 = "random"},
    {method = "pose", chunks = 4, short_docs = "whole"},
    {method = "randpos"}, {method = "full"}, {method = "pi"}, {method = "pi", short_docs = "whole"},
  }
  for _, cfg in ipairs(configs) do
    cfg.train_len, cfg.target_len, cfg.seed = 24, 192, 3
    local s = pose.sampler(cfg)
    local o = s:options()
    for i = 0, 59 do
      local doc = s:min_doc_len() + (i * 37) % 400
      local e = s:sample(doc, i)
      T.eq(e.len, s:example_len(doc), "len = example_len(doc_len)")
      check_example(e, o, doc)
    end
  end
end)

T.case("short documents and max_doc_tokens", function()
  local w = pose.sampler{train_len = 32, target_len = 256, chunks = 2, short_docs = "whole"}
  T.eq(w:min_doc_len(), 2)
  T.eq(w:example_len(10), 10, "a short document gives a shorter example")
  T.eq(w:example_len(1000), 32)
  local e = w:sample(10, 0)
  T.eq(#e.positions, 10)
  T.same(e.offsets, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, "used whole")
  local m = pose.sampler{method = "pi", train_len = 32, target_len = 256, max_doc_tokens = 40}
  local top = 0
  for i = 0, 99 do top = math.max(top, m:sample(10000, i).offsets[32]) end
  T.eq(top, 39, "offsets stay inside the first max_doc_tokens tokens")
end)

T.case("coverage", function()
  local s = pose.sampler{train_len = 16, target_len = 128, chunks = 2, seed = 1}
  local c = s:coverage(1000, 2000)
  T.eq(c.draws, 2000)
  T.eq(c.target_len, 128)
  T.eq(c.distance_hist:dtype(), "i64")
  T.same(c.distance_hist:shape(), {128})
  T.same(c.position_hist:shape(), {128})
  T.eq(c.fraction, 1.0, "PoSE covers every distance 1..Lt-1")
  T.eq(c.covered, 127)
  T.eq(c.distance_hist:get(1), 0, "distance 0 is not counted")
  T.eq(c.position_hist:get(1), 2000, "position 0 in every example")
  local c2 = pose.coverage(s, 1000, 2000, {start_index = 0, method = "pairs"})
  T.same(c2.distance_hist:totable(), c.distance_hist:totable(), "pairs reference agrees")
  T.same(c2.position_hist:totable(), c.position_hist:totable())
  local c3 = s:coverage(1000, 50, {start_index = 10})
  local ex = {}
  for i = 10, 59 do ex[#ex + 1] = s:sample(1000, i).positions end
  local c4 = pose.coverage(ex, 128)
  T.same(c4.distance_hist:totable(), c3.distance_hist:totable(), "coverage of listed examples = of the sampler")
  T.eq(c4.draws, 50)
  local c5 = pose.coverage({pose.tensor({0, 1, 5}, "i32"), {2, 3}}, 8)
  T.same(c5.distance_hist:totable(), {0, 2, 0, 0, 1, 1, 0, 0}, "tensors or tables of positions")
  T.same(c5.position_hist:totable(), {1, 1, 1, 1, 0, 1, 0, 0})
  T.near(c5.fraction, 3 / 7, 1e-12)
  -- PI-only: distances only up to Lc-1
  local pi = pose.sampler{method = "pi", train_len = 16, target_len = 128}
  local cp = pi:coverage(1000, 30)
  local dh, ph = cp.distance_hist:totable(), cp.position_hist:totable()
  local ok = true
  for d = 1, 127 do ok = ok and dh[d + 1] == (d < 16 and 30 or 0) and ph[d + 1] == (d < 16 and 30 or 0) end
  T.check(ok, "PI-only shape")
  T.near(cp.fraction, 15 / 127, 1e-12)
  -- RandPos: every position, decreasing distance histogram
  local rp = pose.sampler{method = "randpos", train_len = 16, target_len = 128}
  local cr = rp:coverage(1000, 500, {method = "bitset"})
  T.check(cr.distance_hist:get(2) > cr.distance_hist:get(128), "RandPos: short distances more often than Lt-1")
  local cr2 = rp:coverage(1000, 500, {method = "intervals"})
  T.same(cr2.distance_hist:totable(), cr.distance_hist:totable())
end)

T.case("errors", function()
  T.raises(function() pose.sampler{train_len = 64, target_len = 32} end, "target_len (32) must be >= train_len (64)")
  T.raises(function() pose.sampler{method = "yarn", train_len = 64, target_len = 128} end, "unknown method 'yarn'")
  T.raises(function() pose.sampler{content = "random", train_len = 64, target_len = 128} end, "unknown content 'random'")
  T.raises(function() pose.sampler{chunk_rule = "x", train_len = 64, target_len = 128} end, "unknown chunk_rule")
  T.raises(function() pose.sampler{u0 = "one", train_len = 64, target_len = 128} end, "unknown u0")
  T.raises(function() pose.sampler{short_docs = "pad", train_len = 64, target_len = 128} end, "unknown short_docs")
  T.raises(function() pose.sampler{chunks = 0, train_len = 64, target_len = 128} end, "chunks must be in 1..train_len")
  T.raises(function() pose.sampler{chunks = 65, train_len = 64, target_len = 128} end, "got 65")
  T.raises(function() pose.sampler{chunks = 3, chunk_rule = "code", train_len = 64, target_len = 128} end, "needs chunks = 2")
  T.raises(function() pose.sampler{train_len = 64, target_len = 128, max_doc_tokens = -3} end, "max_doc_tokens")
  T.raises(function() pose.sampler{train_len = 64, target_len = 128, max_doc_tokens = 10} end, "every document would be rejected")
  T.raises(function() pose.sampler{train_len = 64, target_len = 128, chunk = 2} end, "unknown option 'chunk'")
  T.raises(function() pose.sampler{target_len = 128} end, "train_len is required")
  T.raises(function() pose.sampler{train_len = 64} end, "target_len is required")
  T.raises(function() pose.sampler{train_len = "abc", target_len = 128} end, "must be an integer")
  T.raises(function() pose.sampler{train_len = 64.5, target_len = 128} end, "must be an integer")
  T.raises(function() pose.sampler{train_len = 0, target_len = 128} end, "train_len must be")
  T.raises(function() pose.sampler(5) end, "table expected")
  local s = pose.sampler{train_len = 64, target_len = 128}
  T.raises(function() s:sample(63) end, "63 tokens is shorter")
  T.raises(function() s:sample(0) end, "doc_len must be a positive integer")
  T.raises(function() s:sample("x") end, "doc_len must be a positive integer")
  T.raises(function() s:sample(100, -1) end, "non-negative integer")
  T.raises(function() s:sample(100, 1.5) end, "non-negative integer")
  T.raises(function() s:seek(-1) end, "non-negative integer")
  T.raises(function() s:example_len(3) end, "shorter")
  T.raises(function() s.sample(5, 100) end, "pose.sampler expected")
  local a = pose.sampler{train_len = 64, target_len = 128, content = "aligned"}
  T.raises(function() a:sample(100) end, "content \"aligned\" needs")
  local w = pose.sampler{train_len = 64, target_len = 128, chunks = 4, short_docs = "whole"}
  T.raises(function() w:sample(3) end, "one per chunk")
  T.raises(function() s:coverage(100, 0) end, "positive integer")
  T.raises(function() s:coverage(100, 5, {start = 1}) end, "unknown option 'start'")
  T.raises(function() s:coverage(100, 5, {start_index = -1}) end, "start_index must be >= 0")
  T.raises(function() s:coverage(100, 5, {method = "fft"}) end, "unknown method 'fft'")
  T.raises(function() s:coverage(10, 5) end, "10 tokens")
  T.raises(function() pose.coverage("s", 10, 5) end, "expected a sampler or a list")
  T.raises(function() pose.coverage({{0, 1}}, 0) end, "target_len must be a positive integer")
  T.raises(function() pose.coverage({}, 10) end, "empty")
  T.raises(function() pose.coverage({{0, 1}, {3, 2}}, 10) end, "example 2: coverage: positions must be strictly increasing")
  T.raises(function() pose.coverage({{0, 10}}, 10) end, "outside 0..9")
  T.raises(function() pose.coverage({{{0, 1}}}, 10) end, "flat list")
  T.raises(function() pose.coverage({{0.5}}, 10) end, "not an integer")
  T.raises(function() pose.coverage({{0, 1}}, 10, {start_index = 3}) end, "unknown option 'start_index'")
end)

T.done("test_sampler.lua")
