-- Evaluation protocols against mock models whose answers are known exactly: every token scored once in sliding
-- perplexity, passkey prompts within one filler block of the requested length, multiple-choice formats.
local pose = require "pose"
local T = require "pose.test"
local E = pose.eval

-- A "model" whose NLL for predicting token x is x/100, independent of context: sums are checkable by hand.
local function mock_model(log)
  local m = {}
  function m:nll(ids, opts)
    local row, labels = ids[1], opts.targets[1]
    local out = {}
    for t = 1, #row - 1 do out[t] = labels[t + 1] == -100 and 0 or labels[t + 1] / 100 end
    if log then log[#log + 1] = #row end
    return {totable = function() return {out} end}
  end
  return m
end

-- byte-level tokenizer: one id per byte, BOS = 256
local tok = {bos_id = 256, vocab_size = 257}
function tok:encode(s, o)
  local ids = {}
  if o and o.bos then ids[1] = 256 end
  for i = 1, #s do ids[#ids + 1] = s:byte(i) end
  return ids
end
function tok:decode(ids)
  local c = {}
  for _, i in ipairs(ids) do if i < 256 then c[#c + 1] = string.char(i) end end
  return table.concat(c)
end

T.case("sliding windows score every token once", function()
  for _, n in ipairs({1, 5, 17, 64, 100}) do
    for _, cfg in ipairs({{8, 3}, {8, 8}, {16, 5}, {7, 6}}) do
      local W, S = cfg[1], cfg[2]
      for _, bos in ipairs({true, false}) do
        if S <= W - 1 then
          local seen = {}
          for _, w in ipairs(E.windows(n, W, S, bos, "sliding")) do
            T.check(w.stop - w.start <= (bos and W - 1 or W), "window holds at most W tokens")
            for j = w.score_from, w.stop - 1 do seen[j] = (seen[j] or 0) + 1 end
          end
          local ok = true
          for j = 0, n - 1 do
            local want = (bos or j > 0) and 1 or nil
            if seen[j] ~= want then ok = false end
          end
          T.check(ok, string.format("n=%d W=%d S=%d bos=%s", n, W, S, tostring(bos)))
        end
      end
    end
  end
end)

T.case("perplexity totals", function()
  local docs = {{}, {}}
  for i = 1, 50 do docs[1][i] = i % 7 + 1 end
  for i = 1, 23 do docs[2][i] = i % 5 + 10 end
  local sum, n = 0, 0
  for _, d in ipairs(docs) do for _, x in ipairs(d) do sum = sum + x / 100; n = n + 1 end end
  local log = {}
  local r = E.perplexity(mock_model(log), docs, {window = 16, stride = 4, bos = 256, quiet = true})
  T.eq(r.tokens, n, "with BOS all tokens scored")
  T.near(r.nll, sum, 1e-9)
  T.near(r.ppl, math.exp(sum / n), 1e-12)
  T.eq(#r.per_doc, 2)
  local maxlen = 0
  for _, l in ipairs(log) do maxlen = math.max(maxlen, l) end
  T.eq(maxlen, 16, "windows never exceed W tokens including BOS")
  local r2 = E.perplexity(mock_model(), docs, {window = 16, stride = 4, quiet = true})
  T.eq(r2.tokens, n - 2, "without BOS the first token of each document is not scored")
  local r3 = E.perplexity(mock_model(), docs, {window = 16, mode = "truncate", bos = 256, quiet = true})
  T.eq(r3.tokens, 15 + 15, "truncate: one window of W-1 text tokens per document")
  local sw = E.perplexity_sweep(mock_model(), docs, {windows = {8, 16}, stride = 4, bos = 256, quiet = true})
  T.same(sw.windows, {8, 16})
  T.eq(#sw.per_doc, 2)
  T.eq(#sw.per_doc[1], 2)
  T.near(sw.ppl[1], sw.ppl[2], 1e-12, "context-free mock: same ppl at every window")
end)

T.case("perplexity errors", function()
  T.raises(function() E.perplexity(mock_model(), {{1, 2}}, {}) end, "window")
  T.raises(function() E.perplexity(mock_model(), {{1, 2}}, {window = 8, stride = 8}) end, "unscored")
  T.raises(function() E.perplexity(mock_model(), {{1, 2}}, {window = 8, mode = "x"}) end, "mode")
  T.raises(function() E.perplexity(mock_model(), {{1, 2}}, {window = 8, bos = "x"}) end, "bos")
end)

-- retrieves the key by reading the prompt: a perfect model; `wrong` answers 99999
local function retriever(wrong)
  local m = {}
  function m:generate(ids, o)
    local key = tok:decode(ids):match("pass key is (%d+)")
    return tok:encode(" " .. (wrong and "99999" or key) .. ". The", {bos = false})
  end
  function m:forward(rows)
    local ids = rows[1]
    local text = tok:decode(ids)
    local key = text:match("pass key is (%d+)")
    local want = tok:encode(" " .. (wrong and "99999" or key))
    -- logits [1, T, V]: at each position the next true key byte wins
    local L = #ids
    return {
      shape = function() return {1, L, 257} end,
      get = function(_, _, row, v)
        local k = row - (L - #want) + 1 -- index into want predicted at this row
        if k >= 1 and k <= #want then return (v - 1 == want[k]) and 1 or 0 end
        return 0
      end,
    }
  end
  return m
end

T.case("passkey prompts and accuracy", function()
  local filler = #E.passkey_template.filler
  for _, L in ipairs({400, 1000, 2500}) do
    for _, d in ipairs({0, 0.5, 1}) do
      local ids, info = E.passkey_prompt(tok, L, d, 12345)
      T.check(#ids <= L, "never over the requested length")
      T.check(#ids > L - filler - 12, "within one filler block of it")
      T.eq(info.before + info.after, info.fillers)
      T.check(tok:decode(ids):find("The pass key is 12345. Remember it. 12345 is the pass key.", 1, true) ~= nil)
    end
  end
  local _, i0 = E.passkey_prompt(tok, 1000, 0, 11111)
  T.eq(i0.before, 0, "depth 0 puts the key first")
  local _, i1 = E.passkey_prompt(tok, 1000, 1, 11111)
  T.eq(i1.after, 0, "depth 1 puts the key last")
  T.raises(function() E.passkey_prompt(tok, 50, 0.5, 12345) end, "shorter than the bare prompt")
  local r = E.passkey(retriever(false), tok, {lengths = {500, 900}, depths = {0, 0.5, 1}, trials = 3, seed = 1, quiet = true})
  T.same(r.accuracy, {{1, 1, 1}, {1, 1, 1}})
  T.same(r.tf_accuracy, {{1, 1, 1}, {1, 1, 1}})
  T.eq(#r.records, 18)
  local r2 = E.passkey(retriever(true), tok, {lengths = {500}, trials = 4, seed = 2, quiet = true})
  T.same(r2.accuracy, {{0}})
  T.same(r2.depths, {-1}, "random depth is recorded as -1")
  local r3 = E.passkey(retriever(false), tok, {lengths = {500}, trials = 2, seed = 9, quiet = true})
  local r4 = E.passkey(retriever(false), tok, {lengths = {500}, trials = 2, seed = 9, quiet = true})
  T.eq(r3.records[1].key, r4.records[1].key, "same seed, same keys")
end)

-- A model preferring continuations made of the letter 'a': NLL 0 for 'a', 1 otherwise.
local function a_lover()
  local m = {}
  function m:nll(ids, opts)
    local labels, out = opts.targets[1], {}
    for t = 1, #ids[1] - 1 do
      local x = labels[t + 1]
      out[t] = (x == -100) and 0 or ((x == string.byte("a")) and 0 or 1)
    end
    return {totable = function() return {out} end}
  end
  return m
end

T.case("multiple choice formats", function()
  local m = a_lover()
  local r = E.multiple_choice(m, tok, {
    {context = "Q?", choices = {" bbb", " aaa", " ccc"}, gold = 1},
    {context = "Q?", choices = {" bbbbbb", " aaaa"}, gold = 1},
  }, {format = "generic", quiet = true})
  T.eq(r.n, 2)
  T.near(r.acc, 1.0, 0, "choice with only 'a' (1 NLL for the space) wins")
  local piqa = E.multiple_choice(m, tok, {{goal = "g", sol1 = "aa", sol2 = "bb", label = 0}}, {format = "piqa", quiet = true})
  T.eq(piqa.acc, 1)
  local boolq = E.multiple_choice(m, tok, {{passage = "p", question = "q", label = true}}, {format = "boolq", quiet = true})
  T.eq(boolq.acc, 0, "' yes' costs 4, ' no' costs 3: the model says no, gold is yes")
  local wino = E.multiple_choice(m, tok, {{sentence = "x _ aa", option1 = "b", option2 = "a", answer = "2"}},
                                 {format = "winogrande", quiet = true})
  T.eq(wino.n, 1)
  local arc = E.multiple_choice(m, tok, {{question = {stem = "s", choices = {{label = "A", text = "bb"}, {label = "B", text = "aa"}}}, answerKey = "B"}},
                                {format = "arc", quiet = true})
  T.eq(arc.acc, 1)
  local hs = E.multiple_choice(m, tok, {{activity_label = "x", ctx_a = "y", ctx_b = "z", endings = {"bbb", "aaa"}, label = "1"}},
                               {format = "hellaswag", quiet = true})
  T.eq(hs.acc_norm, 1)
  local tq = E.multiple_choice(m, tok, {{question = "q", mc2_targets = {choices = {"aaa", "bbb"}, labels = {1, 0}}}},
                               {format = "truthfulqa_mc2", quiet = true})
  T.near(tq.mc2, math.exp(-1) / (math.exp(-1) + math.exp(-4)), 1e-12)
  local shots = E.multiple_choice(m, tok, {
    {context = "Q1", choices = {" a", " b"}, gold = 0}, {context = "Q2", choices = {" a", " b"}, gold = 0},
    {context = "Q3", choices = {" a", " b"}, gold = 0}}, {shots = 2, quiet = true})
  T.eq(shots.acc, 1)
  T.raises(function() E.multiple_choice(m, tok, {}, {format = "nope"}) end, "unknown format")
end)

T.case("jsonl", function()
  local p = os.tmpname()
  local f = io.open(p, "w")
  f:write('{"context": "c", "choices": ["x", "y"], "gold": 0}\n\n{"a": [1, 2.5, null, "s"]}\n')
  f:close()
  local recs = E.read_jsonl(p)
  T.eq(#recs, 2)
  T.eq(recs[1].gold, 0)
  T.eq(recs[2].a[2], 2.5)
  T.eq(recs[2].a[3], pose.json_null)
  f = io.open(p, "w"); f:write('{"a": }\n'); f:close()
  T.raises(function() E.read_jsonl(p) end, ":1:")
  os.remove(p)
  T.raises(function() E.read_jsonl("/nonexistent/x.jsonl") end, "read_jsonl")
  T.eq(pose.json_encode({b = 1, a = {1, 2}, c = "x"}), '{"a":[1,2],"b":1,"c":"x"}')
  T.raises(function() pose.json_encode({f = print}) end, "cannot encode")
  T.raises(function() pose.json_decode("{") end, "invalid JSON")
end)

T.case("progress", function()
  local P = pose.progress
  local p = P.new("x", 3, {quiet = true})
  p:update(1, {loss = 1.5})
  p:finish()
  T.check(pose.now() > 0)
end)

T.done("test_eval.lua")
