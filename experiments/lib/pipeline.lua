-- The pieces the small end-to-end experiments share (quickstart.lua, chunks.lua, interp.lua): a SentencePiece
-- tokenizer trained on the training speeches, a batcher that cuts examples out of them through a sampler, training,
-- pre-training a base model at Lc, one extension run (sampler + RoPE override) with its evaluation, and the printed
-- table. Load it relative to the script:
--
--   local P = dofile((debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./") .. "lib/pipeline.lua")
--   local ctx = P.new(opts, "name")      -- opts: data, out, work, train_len, scale, vocab, seed, device, eval_docs,
--                                        --       eval_tokens, passkey_share, ...
local pose = require "pose"
local P = {}
local Ctx = {}
Ctx.__index = Ctx

local function read_file(p) local f = assert(io.open(p, "rb")); local s = f:read("a"); f:close(); return s end
local function list_txt(dir)
  local out, p = {}, io.popen("ls " .. dir .. "/*.txt")
  for l in p:lines() do out[#out + 1] = l end
  p:close()
  table.sort(out)
  return out
end
P.read_file, P.list_txt = read_file, list_txt

--- P.new(opts, tag) -> ctx with ctx.Lc, ctx.s, ctx.Lt, ctx:log(fmt, ...); creates opts.work and opts.out
function P.new(opts, tag)
  local ctx = setmetatable({opts = opts, tag = tag, t_start = pose.now()}, Ctx)
  ctx.Lc, ctx.s = opts.train_len, opts.scale
  ctx.Lt = ctx.Lc * ctx.s
  ctx:sh("mkdir -p " .. opts.work .. " " .. opts.out)
  return ctx
end

function Ctx:log(fmt, ...)
  io.stderr:write(string.format("[%s %6.1fs] " .. fmt .. "\n", self.tag, pose.now() - self.t_start, ...))
end
function Ctx:sh(cmd) assert(os.execute(cmd), "command failed: " .. cmd) end
function Ctx:elapsed() return pose.now() - self.t_start end

--- ctx:tokenizer(): trains (once, cached under opts.work) a BPE on the training speeches, encodes the training and
-- held-out documents (ctx.train_docs, ctx.eval_docs) and sizes the bare passkey prompt (ctx.bare_prompt); turns the
-- synthetic passkey share off when that prompt does not fit in Lc.
function Ctx:tokenizer()
  local opts, Lc = self.opts, self.Lc
  local train_files, heldout_files = list_txt(opts.data .. "/train"), list_txt(opts.data .. "/heldout")
  local spm_prefix = string.format("%s/spm%d", opts.work, opts.vocab)
  if not io.open(spm_prefix .. ".model") then
    local corpus = opts.work .. "/train_corpus.txt"
    local f = assert(io.open(corpus, "w"))
    -- one sentence per line: SentencePiece's trainer skips lines longer than max_sentence_length
    for _, p in ipairs(train_files) do f:write((read_file(p):gsub("([%.!?]) ", "%1\n")), "\n") end
    f:close()
    self:log("training a %d-piece BPE tokenizer on %d speeches", opts.vocab, #train_files)
    pose.train_tokenizer{input = corpus, model_prefix = spm_prefix, vocab_size = opts.vocab, model_type = "bpe",
                         minloglevel = 2}
  end
  local tok = pose.tokenizer(spm_prefix .. ".model")
  local train_docs, eval_docs = {}, {}
  for i, p in ipairs(train_files) do train_docs[i] = tok:encode(read_file(p), {bos = false}) end
  for i, p in ipairs(heldout_files) do
    if i > opts.eval_docs then break end
    local ids = tok:encode(read_file(p), {bos = false})
    eval_docs[#eval_docs + 1] = table.move(ids, 1, math.min(#ids, opts.eval_tokens), 1, {})
  end
  -- tokens of the passkey prompt with no filler, plus its answer: synthetic pre-training documents must fit in Lc
  local T = pose.eval.passkey_template
  local bare_prompt = #tok:encode(T.intro .. string.format(T.key, 12345, 12345) .. T.question, {bos = true})
  local answer_len = #tok:encode(" 12345.", {bos = false}) -- an upper bound: see pose.eval.passkey_answer
  if bare_prompt + answer_len > Lc and opts.passkey_share > 0 then
    self:log("the bare passkey prompt (%d tokens) does not fit in Lc = %d: no synthetic passkey documents",
             bare_prompt, Lc)
    opts.passkey_share = 0
  end
  local ntok = 0
  for _, d in ipairs(train_docs) do ntok = ntok + #d end
  self:log("tokenizer: vocab %d; %d training tokens in %d documents; %d held-out documents", tok.vocab_size, ntok,
           #train_docs, #eval_docs)
  self.tok, self.train_docs, self.eval_docs = tok, train_docs, eval_docs
  self.bare_prompt, self.answer_len = bare_prompt, answer_len
  return tok
end

--- ctx:batcher(sampler, docs, seed, passkey_share) -> next_batch(batch) -> {ids, positions, targets}
-- Each example is drawn by the sampler (offsets into a document + position ids); documents are picked by a seeded
-- stream so that every run sees the same text order. The speeches are few and long, while PoSE's recipe assumes a
-- large corpus in which every example comes from a fresh document (its first chunk starts at the document's start,
-- v_0 = 0). So each example first cuts a random window of 2*Lt tokens out of a speech (picked in proportion to its
-- length) and treats that window as its document; without this, PoSE would see the same 33 document starts over
-- and over and memorise them.
function Ctx:batcher(sampler, docs, seed, passkey_share)
  local Lc, tok, bare_prompt, answer_len = self.Lc, self.tok, self.bare_prompt, self.answer_len
  local D = 2 * self.Lt
  local usable, total = {}, 0
  for _, d in ipairs(docs) do
    if #d >= D then usable[#usable + 1] = d; total = total + #d - D + 1 end
  end
  assert(#usable > 0, "no training document holds 2*Lt tokens")
  local state = seed * 7919 + 17
  local function rand() state = (state * 48271) % 2147483647; return state / 2147483647 end
  local index = 0
  local L = sampler:example_len()
  local pk_len = Lc -- synthetic passkey documents never exceed the pre-training window
  return function(batch)
    local ids, pos, tgt = {}, {}, {}
    for b = 1, batch do
      index = index + 1
      local row_ids, row_pos, row_tgt = {}, {}, {}
      if passkey_share > 0 and rand() < passkey_share then
        -- a prompt of random length between the bare prompt and Lc, with BOS as at evaluation, then its answer
        local key = 10000 + math.floor(rand() * 90000)
        local len = bare_prompt + math.floor(rand() * (pk_len - answer_len - bare_prompt + 1))
        local prompt, info = pose.eval.passkey_prompt(tok, len, rand(), key)
        for _, t in ipairs(pose.eval.passkey_answer(tok, prompt, info.text, key)) do prompt[#prompt + 1] = t end
        for k = 1, L do
          row_ids[k] = prompt[k] or 0
          row_pos[k] = k - 1
          row_tgt[k] = prompt[k] or -100
        end
      else
        -- a start drawn uniformly over all windows of all speeches
        local r = math.floor(rand() * total)
        local doc, start
        for _, d in ipairs(usable) do
          local n = #d - D + 1
          if r < n then doc, start = d, r; break end
          r = r - n
        end
        local ex = sampler:sample(D, index)
        for k = 1, L do
          row_ids[k] = doc[start + ex.offsets[k] + 1]
          row_pos[k] = ex.positions[k]
          row_tgt[k] = row_ids[k]
        end
      end
      ids[b], pos[b], tgt[b] = row_ids, row_pos, row_tgt
    end
    return {ids = ids, positions = pos, targets = tgt}
  end
end

--- ctx:train(m, sampler, steps, batch, lr, warmup, passkey_share, run, label) -> last loss (cosine schedule, clip 1)
function Ctx:train(m, sampler, steps, batch, lr, warmup, passkey_share, run, label)
  local tr = pose.trainer(m, {lr = lr, warmup = warmup, schedule = "cosine", steps = steps, clip = 1.0,
                              weight_decay = 0.0})
  local next_batch = self:batcher(sampler, self.train_docs, self.opts.seed, passkey_share)
  local p = pose.progress.new(label, steps)
  local tokens = batch * sampler:example_len()
  local loss
  for step = 1, steps do
    local t0 = pose.now()
    local lr_used
    loss, lr_used = tr:step(next_batch(batch))
    local tps = tokens / (pose.now() - t0)
    if run then run:log_train{step = step, loss = loss, lr = lr_used, tokens_per_s = tps} end
    p:update(step, {loss = loss, ["tok/s"] = math.floor(tps)})
  end
  p:finish()
  return loss
end

--- ctx:base_config() -> the LLaMA config of the base model (opts.hidden, layers, heads, kv_heads, ffn; window Lc)
function Ctx:base_config()
  local opts, tok = self.opts, self.tok
  return {
    model_type = "llama", vocab_size = tok.vocab_size, hidden_size = opts.hidden, num_hidden_layers = opts.layers,
    num_attention_heads = opts.heads, num_key_value_heads = opts.kv_heads, intermediate_size = opts.ffn,
    max_position_embeddings = self.Lc, rope_theta = 10000.0, rms_norm_eps = 1e-5, tie_word_embeddings = false,
    initializer_range = 0.02, bos_token_id = tok.bos_id, eos_token_id = tok.eos_id,
  }
end

--- ctx:pretrain(exp, base_dir): pre-trains the base at Lc with plain RoPE (opts.steps, batch, lr, warmup,
-- passkey_share) unless base_dir already holds one (or opts.redo); logs it as run "base" of exp.
function Ctx:pretrain(exp, base_dir)
  local opts, Lc = self.opts, self.Lc
  if not (opts.redo or not io.open(base_dir .. "/config.json")) then return end
  local config = self:base_config()
  local m = pose.init(config, {seed = opts.seed, device = opts.device})
  self:log("pre-training a %.2fM-parameter LLaMA at Lc=%d for %d steps of %d examples (%.0f%% synthetic passkey)",
           m:num_params() / 1e6, Lc, opts.steps, opts.batch, 100 * opts.passkey_share)
  local run = exp:run("base", {stage = "pretrain", config = config, steps = opts.steps, batch = opts.batch,
                               lr = opts.lr, train_len = Lc, passkey_share = opts.passkey_share}, {redo = true})
  local sampler = pose.sampler{method = "pi", train_len = Lc, target_len = Lc, seed = opts.seed}
  local loss = self:train(m, sampler, opts.steps, opts.batch, opts.lr, opts.warmup, opts.passkey_share, run,
                          "pretrain")
  m:save(base_dir)
  run:scalar("final_loss", loss)
  run:finish()
end

--- ctx:windows() -> {Lc, 2Lc, ..., Lt};  ctx:passkey_lengths() -> those of {Lc, 2Lc, Lt} the bare prompt fits in
function Ctx:windows()
  local w = {}
  for x = self.Lc, self.Lt, self.Lc do w[#w + 1] = x end
  return w
end
function Ctx:passkey_lengths()
  local out = {}
  for _, L in ipairs({self.Lc, 2 * self.Lc, self.Lt}) do
    if L >= self.bare_prompt then out[#out + 1] = L end
  end
  return out
end

--- ctx:extend(exp, base_dir, spec) -> {ppl = {...}, passkey = {...} or nil}
-- One run of exp named spec.name: loads the base with spec.rope (nil: the base's own RoPE), trains it for
-- opts.ext_steps with a sampler {method = spec.method, chunks = spec.chunks, seed = spec.seed} when spec.method is
-- set (full-length batches hold batch/s examples: equal tokens per step), evaluates sliding-window perplexity at
-- spec.windows (default ctx:windows()) on dataset `spec.dataset` (default "sotu") and, unless
-- spec.passkey_lengths is empty, passkey. A finished run is skipped (opts.redo reruns it); the results are read
-- back from the file either way. spec.config adds keys to the run's stored config.
function Ctx:extend(exp, base_dir, spec)
  local opts, Lc, Lt, s = self.opts, self.Lc, self.Lt, self.s
  local windows = spec.windows or self:windows()
  local passkey_lengths = spec.passkey_lengths or self:passkey_lengths()
  local dataset = spec.dataset or "sotu"
  local cfg = {method = spec.method or "none", train_len = Lc, target_len = Lt, scale = s, chunks = spec.chunks,
               rope = spec.rope or "default", ext_steps = opts.ext_steps, ext_lr = opts.ext_lr, batch = opts.batch,
               seed = opts.seed}
  for k, v in pairs(spec.config or {}) do cfg[k] = v end
  local run = exp:run(spec.name, cfg, {redo = opts.redo})
  if run then
    local m = pose.load(base_dir, {device = opts.device, rope = spec.rope})
    if spec.method then
      local sampler = pose.sampler{method = spec.method, train_len = Lc, target_len = Lt, chunks = spec.chunks or 2,
                                   seed = spec.seed}
      -- full-length examples hold Lt tokens: fewer of them per batch keeps the tokens per step equal
      local batch = spec.method == "full" and math.max(1, opts.batch // s) or opts.batch
      self:log("extending with %s: %d steps of %d x %d tokens", spec.name, opts.ext_steps, batch, sampler:example_len())
      local t0 = pose.now()
      local loss = self:train(m, sampler, opts.ext_steps, batch, opts.ext_lr, 10, 0, run, spec.name)
      run:scalar("final_loss", loss)
      run:scalar("train_seconds", pose.now() - t0)
    end
    self:log("evaluating %s: perplexity at windows %s, passkey at %s", spec.name, table.concat(windows, "/"),
             #passkey_lengths > 0 and table.concat(passkey_lengths, "/") or "(none)")
    local sweep = pose.eval.perplexity_sweep(m, self.eval_docs, {windows = windows, bos = self.tok.bos_id})
    pose.eval.write_ppl(exp.file, run.path, dataset, sweep)
    if #passkey_lengths > 0 then
      -- greedy decoding with a KV cache, on the model's own device
      local pk = pose.eval.passkey(m, self.tok, {lengths = passkey_lengths, trials = opts.passkey_trials,
                                                 seed = opts.seed})
      pose.eval.write_passkey(exp.file, run.path, pk)
    end
    run:finish()
  end
  -- read back (also for runs finished by an earlier invocation)
  local base = "/runs/" .. spec.name
  local out = {ppl = exp.file:read(base .. "/eval/ppl/" .. dataset .. "/ppl")}
  if #passkey_lengths > 0 then
    local acc = exp.file:read(base .. "/eval/passkey/accuracy")
    out.passkey = {}
    for l = 1, #acc do out.passkey[l] = acc[l][1] end
  end
  return out
end

--- P.print_table(rows, cols, matrix, first_col_width): the table as the scripts print it
function P.print_table(rows, cols, matrix, width)
  width = width or 16
  io.write(string.format("%-" .. width .. "s", "run"))
  for _, c in ipairs(cols) do io.write(string.format("%12s", c)) end
  io.write("\n")
  for r, name in ipairs(rows) do
    io.write(string.format("%-" .. width .. "s", name))
    for _, v in ipairs(matrix[r]) do io.write(string.format(v < 10 and "%12.3f" or "%12.1f", v)) end
    io.write("\n")
  end
end

return P
