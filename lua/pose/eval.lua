-- Evaluation protocols of ../shared/spec/pose.md section 2, written over the model's Lua API:
--   m:nll(ids, {positions=, targets=}) -> f32 tensor [1, T-1]   (targets = labels, -100 ignored)
--   m:generate(ids, {max_new_tokens=, temperature=0}) -> table of new ids (greedy with a KV cache)
-- and a tokenizer with tok:encode(text, {bos=}) / tok:decode(ids) / tok.bos_id.
-- Everything returns plain Lua tables; pose.eval.write_* put them into a results file in DESIGN.md section 5's layout.
local M = {}

local IGNORE = -100

local function progress(label, total, opts)
  local P = require "pose.progress"
  return P.new(label, total, {quiet = opts and opts.quiet})
end

-- Sums the per-token NLL of the window `ids` over the tokens whose labels are kept in `labels` (others -100).
local function window_nll(m, ids, labels, positions)
  local nll = m:nll({ids}, {targets = {labels}, positions = positions and {positions} or nil}):totable()[1]
  local sum, n = 0.0, 0
  for t = 2, #labels do
    if labels[t] ~= IGNORE then sum = sum + nll[t - 1]; n = n + 1 end
  end
  return sum, n
end

-- The windows of one document of n text tokens under the sliding protocol (Press et al.), as a list of
-- {start = first text index (0-based), stop = one past the last text index in the window,
--  score_from = first text index this window scores}. With BOS, a window holds BOS + up to W-1 text tokens and every
-- text token is scored exactly once; without BOS, up to W text tokens and the document's first token is never scored.
function M.windows(n, window, stride, has_bos, mode)
  local cap = has_bos and window - 1 or window
  assert(cap >= 1, "window too small")
  local out, scored = {}, has_bos and 0 or 1 -- next text index still to score
  if mode == "truncate" then
    local stop = math.min(n, cap)
    if stop > scored then out[1] = {start = 0, stop = stop, score_from = scored} end
    return out
  end
  local start = 0
  while true do
    local stop = math.min(n, start + cap)
    if stop > scored then
      out[#out + 1] = {start = start, stop = stop, score_from = math.max(scored, has_bos and start or start + 1)}
      scored = stop
    end
    if stop >= n then break end
    start = start + stride
  end
  return out
end

-- Sliding-window perplexity over documents (lists of token ids, or a shard reader with num_docs/doc).
-- opts: window (W), stride (S, default W-1: each window's scorable tokens follow the last's), bos (token id or false), mode "sliding"|"truncate", max_docs,
--       positions "natural" (0..len-1, default) | function(len) -> table (0-based ids for one window), quiet.
-- Returns {ppl=, nll=, tokens=, per_doc = {ppl...}, per_doc_tokens = {...}, windows = count, mode=, stride=, window=}.
function M.perplexity(m, docs, opts)
  opts = opts or {}
  local W = assert(math.tointeger(opts.window), "perplexity: window (an integer) is required")
  local S = math.tointeger(opts.stride or W - 1)
  if not S or S < 1 then error("perplexity: stride must be a positive integer", 2) end
  local mode = opts.mode or "sliding"
  if mode ~= "sliding" and mode ~= "truncate" then error("perplexity: mode must be 'sliding' or 'truncate'", 2) end
  local bos = opts.bos
  if bos ~= nil and bos ~= false and math.type(bos) ~= "integer" then error("perplexity: bos must be a token id or false", 2) end
  local has_bos = bos ~= nil and bos ~= false
  if has_bos and W < 2 then error("perplexity: window must be >= 2 with BOS", 2) end
  -- a window scores at most W-1 tokens (with BOS: W-1 text tokens; without: the first has no context), so a
  -- larger stride would skip tokens
  if S > W - 1 and mode == "sliding" then
    error(string.format("perplexity: stride %d > window - 1 = %d would leave tokens unscored", S, W - 1), 2)
  end
  local ndocs, get
  if type(docs) == "table" and docs.num_docs == nil then
    ndocs, get = #docs, function(i) return docs[i] end
  else
    ndocs = docs:num_docs()
    get = function(i)
      local d = docs:doc(i)
      return type(d) == "table" and d or d:totable()
    end
  end
  if opts.max_docs then ndocs = math.min(ndocs, opts.max_docs) end
  local p = progress(string.format("ppl W=%d", W), ndocs, opts)
  local total_nll, total_n, per_doc, per_doc_n, nwin = 0.0, 0, {}, {}, 0
  for d = 1, ndocs do
    local doc = get(d)
    local dsum, dn = 0.0, 0
    for _, w in ipairs(M.windows(#doc, W, S, has_bos, mode)) do
      local ids, labels = {}, {}
      if has_bos then ids[1] = bos; labels[1] = IGNORE end
      for j = w.start, w.stop - 1 do
        ids[#ids + 1] = doc[j + 1]
        labels[#labels + 1] = j >= w.score_from and doc[j + 1] or IGNORE
      end
      local positions
      if type(opts.positions) == "function" then positions = opts.positions(#ids) end
      local s, n = window_nll(m, ids, labels, positions)
      dsum, dn, nwin = dsum + s, dn + n, nwin + 1
    end
    per_doc[d] = dn > 0 and math.exp(dsum / dn) or 0 / 0
    per_doc_n[d] = dn
    total_nll, total_n = total_nll + dsum, total_n + dn
    p:update(d, {ppl = total_n > 0 and math.exp(total_nll / total_n) or 0 / 0})
  end
  p:finish()
  return {ppl = total_n > 0 and math.exp(total_nll / total_n) or 0 / 0, nll = total_nll, tokens = total_n,
          per_doc = per_doc, per_doc_tokens = per_doc_n, windows = nwin, window = W, stride = S, mode = mode,
          bos = has_bos, docs = ndocs}
end

-- Perplexity for several window sizes; returns {windows = {W...}, ppl = {...}, per_doc = {{doc1 over W}, ...}, runs}.
function M.perplexity_sweep(m, docs, opts)
  local out = {windows = {}, ppl = {}, per_doc = {}, runs = {}}
  for i, W in ipairs(opts.windows) do
    local o = {}
    for k, v in pairs(opts) do o[k] = v end
    o.window, o.windows = W, nil
    o.stride = opts.stride or W - 1
    local r = M.perplexity(m, docs, o)
    out.windows[i], out.ppl[i], out.runs[i] = W, r.ppl, r
    for d, v in ipairs(r.per_doc) do
      out.per_doc[d] = out.per_doc[d] or {}
      out.per_doc[d][i] = v
    end
  end
  out.stride, out.mode, out.bos, out.docs = opts.stride, opts.mode or "sliding", opts.bos and true or false, #out.per_doc
  return out
end

------------------------------------------------------------------------------------------------------------------
-- Passkey retrieval (Mohtashami & Jaggi 2023), the paper's template.
M.passkey_template = {
  intro = "There is an important info hidden inside a lot of irrelevant text. Find it and memorize them. " ..
          "I will quiz you about the important information there.",
  filler = " The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.",
  key = " The pass key is %d. Remember it. %d is the pass key.",
  question = " What is the pass key? The pass key is",
}

local function build_prompt(tpl, key, before, after)
  local parts = {tpl.intro}
  for _ = 1, before do parts[#parts + 1] = tpl.filler end
  parts[#parts + 1] = string.format(tpl.key, key, key)
  for _ = 1, after do parts[#parts + 1] = tpl.filler end
  parts[#parts + 1] = tpl.question
  return table.concat(parts)
end

-- The largest filler count n whose prompt (key at relative depth `depth`) encodes to <= length tokens. Token counts
-- come from the tokenizer itself, so the prompt is never over the requested length and within one filler block of it.
function M.passkey_prompt(tok, length, depth, key, opts)
  opts = opts or {}
  local tpl = opts.template or M.passkey_template
  local bos = opts.bos ~= false
  local function encode(n)
    local before = math.floor(depth * n + 0.5)
    local text = build_prompt(tpl, key, before, n - before)
    return tok:encode(text, {bos = bos}), before, text
  end
  local ids0 = encode(0)
  if #ids0 > length then
    error(string.format("passkey: length %d is shorter than the bare prompt (%d tokens)", length, #ids0), 2)
  end
  -- token count grows monotonically with n (each block adds ~the same tokens): bracket, then bisect
  local lo, hi = 0, 1
  while #encode(hi) <= length do lo, hi = hi, hi * 2 end
  while hi - lo > 1 do
    local mid = (lo + hi) // 2
    if #encode(mid) <= length then lo = mid else hi = mid end
  end
  local ids, before, text = encode(lo)
  return ids, {fillers = lo, before = before, after = lo - before, tokens = #ids, text = text}
end

-- The tokens of the answer " <key>." as they follow the prompt in running text (encoding the answer alone would add
-- the tokenizer's word-start marker a second time with SentencePiece).
function M.passkey_answer(tok, prompt_ids, prompt_text, key, bos)
  local full = tok:encode(prompt_text .. " " .. key .. ".", {bos = bos ~= false})
  for i = 1, #prompt_ids do
    if full[i] ~= prompt_ids[i] then return tok:encode(" " .. key .. ".", {bos = false}) end
  end
  return table.move(full, #prompt_ids + 1, #full, 1, {})
end

local function first_digits(s) return s:match("%d+") end

-- pose.eval.passkey(m, tok, {lengths=, depths= (list; nil = random depth per trial), trials=, seed=, max_new_tokens=,
--   teacher_forced = true}) -> {lengths, depths, accuracy = [len][depth], tf_accuracy, trials, records}
function M.passkey(m, tok, opts)
  opts = opts or {}
  local lengths = assert(opts.lengths, "passkey: lengths is required")
  local trials = opts.trials or 10
  local depths = opts.depths
  local random_depth = depths == nil
  if random_depth then depths = {0 / 0} end -- one column: random depth per trial
  local seed = opts.seed or 0
  local maxnew = opts.max_new_tokens or 10
  local tf = opts.teacher_forced ~= false
  local rng_state = seed * 2654435761 % 4294967296 + 1
  local function rand() -- a small LCG is enough to pick keys and depths reproducibly
    rng_state = (rng_state * 1103515245 + 12345) % 2147483648
    return rng_state / 2147483648
  end
  local acc, tf_acc, records = {}, {}, {}
  local p = progress("passkey", #lengths * #depths * trials, opts)
  local done = 0
  for li, L in ipairs(lengths) do
    acc[li], tf_acc[li] = {}, {}
    for di, depth in ipairs(depths) do
      local ok, tok_ok = 0, 0
      for t = 1, trials do
        local key = 10000 + math.floor(rand() * 90000)
        local d = random_depth and rand() or depth
        local ids, info = M.passkey_prompt(tok, L, d, key, opts)
        local out = m:generate(ids, {max_new_tokens = maxnew})
        local text = tok:decode(out)
        local got = first_digits(text)
        local correct = got == tostring(key)
        if correct then ok = ok + 1 end
        local tf_correct
        if tf then
          -- teacher-forced: every key token is the argmax of the model's prediction given the true prefix
          local key_ids = M.passkey_answer(tok, ids, info.text, key, opts.bos)
          key_ids[#key_ids] = nil -- the final "." is not part of the key
          local full = {}
          for i = 1, #ids do full[i] = ids[i] end
          for i = 1, #key_ids do full[#full + 1] = key_ids[i] end
          local logits = m:forward({full})
          tf_correct = true
          for i = 1, #key_ids do
            local row = #ids + i - 1 -- logits at this position predict token #ids + i
            local best, bestv = -1, -math.huge
            local V = logits:shape()[3]
            for v = 1, V do
              local x = logits:get(1, row, v)
              if x > bestv then best, bestv = v - 1, x end
            end
            if best ~= key_ids[i] then tf_correct = false; break end
          end
          if tf_correct then tok_ok = tok_ok + 1 end
        end
        records[#records + 1] = {length = L, depth = d, key = key, tokens = info.tokens, output = text,
                                 correct = correct, tf_correct = tf_correct}
        done = done + 1
        p:update(done)
      end
      acc[li][di] = ok / trials
      tf_acc[li][di] = tf and tok_ok / trials or nil
    end
  end
  p:finish()
  return {lengths = lengths, depths = random_depth and {-1} or depths, accuracy = acc,
          tf_accuracy = tf and tf_acc or nil, trials = trials, records = records, random_depth = random_depth}
end

------------------------------------------------------------------------------------------------------------------
-- Multiple choice by log-likelihood, as the common evaluation harness scores it.

local function trim(s) return (s:gsub("^%s+", ""):gsub("%s+$", "")) end

local function hellaswag_clean(s)
  s = trim(s):gsub(" %[title%]", ". "):gsub("%[.-%]", ""):gsub("  ", " ")
  return s
end

-- Each format maps one JSON record to {context=, choices={...}, gold=index (1-based) | golds={bool per choice}}.
M.formats = {
  boolq = function(r)
    local label = r.label
    if type(label) == "boolean" then label = label and 1 or 0 end
    if r.answer ~= nil then label = (r.answer == true or r.answer == "true") and 1 or 0 end
    return {context = r.passage .. "\nQuestion: " .. r.question .. "?\nAnswer:", choices = {" no", " yes"},
            gold = label + 1}
  end,
  piqa = function(r)
    return {context = "Question: " .. r.goal .. "\nAnswer:", choices = {" " .. r.sol1, " " .. r.sol2},
            gold = math.tointeger(tonumber(r.label)) + 1}
  end,
  winogrande = function(r)
    -- partial scoring: the options fill the blank in the context; the shared continuation is scored
    local i = r.sentence:find("_", 1, true)
    local before, after = r.sentence:sub(1, i - 1), r.sentence:sub(i + 1)
    return {contexts = {before .. r.option1, before .. r.option2}, continuation = " " .. trim(after),
            gold = math.tointeger(tonumber(r.answer))}
  end,
  arc = function(r)
    local q, labels, texts = r.question, {}, {}
    if type(q) == "table" then
      for i, c in ipairs(q.choices) do labels[i], texts[i] = c.label, c.text end
      q = q.stem
    else
      labels, texts = r.choices.label, r.choices.text
    end
    local gold
    for i, l in ipairs(labels) do if l == r.answerKey then gold = i end end
    local choices = {}
    for i, t in ipairs(texts) do choices[i] = " " .. t end
    return {context = "Question: " .. q .. "\nAnswer:", choices = choices, gold = gold}
  end,
  hellaswag = function(r)
    local ctx = r.ctx
    if r.ctx_a then ctx = r.ctx_a .. " " .. (r.ctx_b or ""):gsub("^%l", string.upper) end
    local choices = {}
    for i, e in ipairs(r.endings) do choices[i] = " " .. hellaswag_clean(e) end
    return {context = hellaswag_clean((r.activity_label or "") .. ": " .. ctx), choices = choices,
            gold = math.tointeger(tonumber(r.label)) + 1}
  end,
  truthfulqa_mc2 = function(r)
    local t = r.mc2_targets
    local golds = {}
    for i, l in ipairs(t.labels) do golds[i] = l == 1 end
    local choices = {}
    for i, c in ipairs(t.choices) do choices[i] = " " .. c end
    return {context = "Q: " .. r.question .. "\nA:", choices = choices, golds = golds, mc2 = true}
  end,
  -- the project's own format: {"context": ..., "choices": [...], "gold": 0-based index}
  generic = function(r)
    return {context = r.context, choices = r.choices, gold = math.tointeger(r.gold) + 1}
  end,
}

-- Reads JSONL (one JSON object per line) with pose.json_decode.
function M.read_jsonl(path)
  local pose = require "pose"
  local f, err = io.open(path, "r")
  if not f then error("read_jsonl: " .. tostring(err), 2) end
  local out, lineno = {}, 0
  for line in f:lines() do
    lineno = lineno + 1
    if line:match("%S") then
      local ok, rec = pcall(pose.json_decode, line)
      if not ok then f:close(); error(string.format("%s:%d: %s", path, lineno, rec), 2) end
      out[#out + 1] = rec
    end
  end
  f:close()
  return out
end

-- log P(continuation | context) and the continuation's token count
local function loglik(m, tok, context, continuation, bos)
  local ctx = tok:encode(context, {bos = bos})
  local whole = tok:encode(context .. continuation, {bos = bos})
  -- the continuation's tokens are those past the context's own encoding when it is a prefix; else encode separately
  local prefix_ok = #whole > #ctx
  for i = 1, #ctx do if whole[i] ~= ctx[i] then prefix_ok = false; break end end
  local ids = {}
  if prefix_ok then ids = whole
  else
    for i = 1, #ctx do ids[i] = ctx[i] end
    for _, t in ipairs(tok:encode(continuation, {bos = false})) do ids[#ids + 1] = t end
  end
  if #ctx == 0 then error("multiple choice: empty context (give bos or a context)") end
  local labels = {}
  for i = 1, #ids do labels[i] = i > #ctx and ids[i] or IGNORE end
  local s, n = window_nll(m, ids, labels)
  return -s, n
end

-- pose.eval.multiple_choice(m, tok, records, {format=, shots=0, fewshot_pool=records, seed=, bos=true, limit=})
-- -> {acc=, acc_norm=, n=, mc2= (truthfulqa)}; acc_norm divides by the continuation's byte length.
function M.multiple_choice(m, tok, records, opts)
  opts = opts or {}
  local fmt = M.formats[opts.format or "generic"]
  if not fmt then error("multiple_choice: unknown format '" .. tostring(opts.format) .. "'", 2) end
  local shots, pool = opts.shots or 0, opts.fewshot_pool or records
  local bos = opts.bos ~= false
  local n = math.min(#records, opts.limit or #records)
  local correct, correct_norm, mc2_sum = 0, 0, 0
  local p = progress("mc " .. (opts.format or "generic"), n, opts)
  local state = (opts.seed or 1234) % 2147483647 + 1
  local function rand(k) state = (state * 48271) % 2147483647; return state % k + 1 end
  for i = 1, n do
    local item = fmt(records[i])
    -- few-shot prefix: `shots` other records with their gold answers, separated by blank lines
    local prefix = ""
    if shots > 0 then
      local used, parts = {[i] = pool == records or nil}, {}
      while #parts < shots and #parts < #pool - 1 do
        local j = rand(#pool)
        if not used[j] then
          used[j] = true
          local ex = fmt(pool[j])
          if ex.contexts then parts[#parts + 1] = ex.contexts[ex.gold] .. ex.continuation
          else parts[#parts + 1] = ex.context .. ex.choices[ex.gold or 1] end
        end
      end
      prefix = table.concat(parts, "\n\n") .. "\n\n"
    end
    local scores, norms = {}, {}
    if item.contexts then
      for c, ctx in ipairs(item.contexts) do
        scores[c] = loglik(m, tok, prefix .. ctx, item.continuation, bos)
        norms[c] = scores[c] / #item.continuation
      end
    else
      for c, ch in ipairs(item.choices) do
        scores[c] = loglik(m, tok, prefix .. item.context, ch, bos)
        norms[c] = scores[c] / math.max(#ch, 1)
      end
    end
    local function argmax(t)
      local b = 1
      for k = 2, #t do if t[k] > t[b] then b = k end end
      return b
    end
    if item.mc2 then
      -- mc2: normalised probability mass on the true answers
      local tot, true_mass = 0, 0
      for c = 1, #scores do
        local pr = math.exp(scores[c])
        tot = tot + pr
        if item.golds[c] then true_mass = true_mass + pr end
      end
      mc2_sum = mc2_sum + (tot > 0 and true_mass / tot or 0)
    else
      if argmax(scores) == item.gold then correct = correct + 1 end
      if argmax(norms) == item.gold then correct_norm = correct_norm + 1 end
    end
    p:update(i)
  end
  p:finish()
  return {acc = correct / n, acc_norm = correct_norm / n, mc2 = mc2_sum / n, n = n}
end

------------------------------------------------------------------------------------------------------------------
-- Writing results (DESIGN.md section 5) into a run group of a pose.results file `f` at `base` ("/runs/<run>").

function M.write_ppl(f, base, dataset, sweep)
  local g = base .. "/eval/ppl/" .. dataset
  f:write(g .. "/ppl", sweep.ppl)
  f:write(g .. "/per_doc", sweep.per_doc)
  f:set_attr(g, "windows", sweep.windows)
  f:set_attr(g, "stride", sweep.stride or sweep.windows[1])
  f:set_attr(g, "mode", sweep.mode)
  f:set_attr(g, "bos", sweep.bos and 1 or 0)
  f:set_attr(g, "docs", sweep.docs)
end

function M.write_passkey(f, base, r)
  local g = base .. "/eval/passkey"
  f:write(g .. "/accuracy", r.accuracy)
  if r.tf_accuracy then f:write(g .. "/tf_accuracy", r.tf_accuracy) end
  f:set_attr(g .. "/accuracy", "lengths", r.lengths)
  f:set_attr(g .. "/accuracy", "depths", r.depths)
  f:set_attr(g .. "/accuracy", "trials", r.trials)
  f:set_attr(g, "lengths", r.lengths)
  f:set_attr(g, "depths", r.depths)
  f:set_attr(g, "trials", r.trials)
end

return M
