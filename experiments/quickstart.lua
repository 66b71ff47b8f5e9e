-- The mission in miniature: pre-train a tiny LLaMA at a short window Lc on public-domain text, extend it s-fold with
-- PoSE (linear interpolation), and compare with no extension (None), full-length training at Lt, PI without
-- skipping, and RandPos; evaluate sliding-window perplexity on held-out long speeches at windows Lc..Lt and passkey
-- retrieval; write results/quickstart.h5 and print the table.
--
--   build/pose run experiments/quickstart.lua [--steps 600] [--ext_steps 150] [--quick] [--redo]
--
-- What to expect: None's perplexity explodes past Lc (RoPE never saw those distances); PoSE stays flat or falls as
-- the window grows to Lt, close to Full-length, at the training cost of Lc-token examples; RandPos is worse. Passkey:
-- the base model retrieves inside Lc (it saw synthetic passkey documents no longer than Lc during pre-training);
-- beyond Lc only the extension method can make it work (the extension data holds no passkey documents).
local pose = require "pose"
local opts = pose.args.merge(..., {
  data = "experiments/data/quickstart",
  out = "results",
  work = "build/quickstart",          -- tokenizer and checkpoints
  train_len = 128,                    -- Lc
  scale = 4,                          -- s: Lt = s * Lc
  vocab = 2048,
  hidden = 192, layers = 4, heads = 6, kv_heads = 2, ffn = 512,
  steps = 800, batch = 16, lr = 2e-3, warmup = 40,
  passkey_share = 0.05,               -- share of pre-training examples that are synthetic passkey documents (<= Lc)
  ext_steps = 120, ext_lr = 5e-4,
  eval_docs = 4, eval_tokens = 4096,  -- held-out documents and tokens of each used for perplexity
  passkey_trials = 10,
  seed = 1,
  quick = false,                      -- a much smaller run (tests, smoke checks)
  redo = false,
  device = pose.device(),
}, "quickstart")

if opts.quick then
  opts.steps, opts.ext_steps, opts.batch, opts.eval_tokens, opts.passkey_trials, opts.warmup = 30, 10, 4, 512, 2, 5
  opts.hidden, opts.layers, opts.heads, opts.kv_heads, opts.ffn, opts.vocab = 64, 2, 4, 2, 128, 512
end
local Lc, s = opts.train_len, opts.scale
local Lt = Lc * s
local t_start = pose.now()

local function log(fmt, ...) io.stderr:write(string.format("[quickstart %6.1fs] " .. fmt .. "\n", pose.now() - t_start, ...)) end
local function sh(cmd) assert(os.execute(cmd), "command failed: " .. cmd) end
local function read_file(p) local f = assert(io.open(p, "rb")); local s = f:read("a"); f:close(); return s end
local function list_txt(dir)
  local out, p = {}, io.popen("ls " .. dir .. "/*.txt")
  for l in p:lines() do out[#out + 1] = l end
  p:close()
  table.sort(out)
  return out
end
sh("mkdir -p " .. opts.work .. " " .. opts.out)

------------------------------------------------------------------------------------------------------------------
-- 1. Tokenizer: a SentencePiece BPE trained on the training speeches (byte fallback: any text encodes).
local train_files, heldout_files = list_txt(opts.data .. "/train"), list_txt(opts.data .. "/heldout")
local spm_prefix = string.format("%s/spm%d", opts.work, opts.vocab)
if not io.open(spm_prefix .. ".model") then
  local corpus = opts.work .. "/train_corpus.txt"
  local f = assert(io.open(corpus, "w"))
  -- one sentence per line: SentencePiece's trainer skips lines longer than max_sentence_length
  for _, p in ipairs(train_files) do f:write((read_file(p):gsub("([%.!?]) ", "%1\n")), "\n") end
  f:close()
  log("training a %d-piece BPE tokenizer on %d speeches", opts.vocab, #train_files)
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
local bare_prompt = #tok:encode(pose.eval.passkey_template.intro .. string.format(pose.eval.passkey_template.key, 12345,
                                12345) .. pose.eval.passkey_template.question, {bos = true})
local answer_len = #tok:encode(" 12345.", {bos = false}) -- an upper bound: see pose.eval.passkey_answer
if bare_prompt + answer_len > Lc and opts.passkey_share > 0 then
  log("the bare passkey prompt (%d tokens) does not fit in Lc = %d: no synthetic passkey documents", bare_prompt, Lc)
  opts.passkey_share = 0
end
local ntok = 0
for _, d in ipairs(train_docs) do ntok = ntok + #d end
log("tokenizer: vocab %d; %d training tokens in %d documents; %d held-out documents", tok.vocab_size, ntok,
    #train_docs, #eval_docs)

------------------------------------------------------------------------------------------------------------------
-- 2. Batches: each example is drawn by a sampler (offsets into a document + position ids); documents are picked
-- by a seeded stream so that every run sees the same text order.
-- Documents: the speeches are few and long, while PoSE's recipe assumes a large corpus in which every example comes
-- from a fresh document (its first chunk starts at the document's start, v_0 = 0). So each example first cuts a
-- random window of 2*Lt tokens out of a speech (picked in proportion to its length) and treats that window as its
-- document; without this, PoSE would see the same 33 document starts over and over and memorise them.
local function make_batcher(sampler, docs, seed, passkey_share)
  local D = 2 * Lt
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

local function train(m, sampler, steps, batch, lr, warmup, passkey_share, run, label)
  local tr = pose.trainer(m, {lr = lr, warmup = warmup, schedule = "cosine", steps = steps, clip = 1.0,
                              weight_decay = 0.0})
  local next_batch = make_batcher(sampler, train_docs, opts.seed, passkey_share)
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

------------------------------------------------------------------------------------------------------------------
-- 3. Base model: pre-trained at Lc with plain RoPE.
local exp = pose.experiment("quickstart", {dir = opts.out, device = opts.device})
local base_dir = opts.work .. "/base"
local config = {
  model_type = "llama", vocab_size = tok.vocab_size, hidden_size = opts.hidden, num_hidden_layers = opts.layers,
  num_attention_heads = opts.heads, num_key_value_heads = opts.kv_heads, intermediate_size = opts.ffn,
  max_position_embeddings = Lc, rope_theta = 10000.0, rms_norm_eps = 1e-5, tie_word_embeddings = false,
  initializer_range = 0.02, bos_token_id = tok.bos_id, eos_token_id = tok.eos_id,
}
if opts.redo or not io.open(base_dir .. "/config.json") then
  local m = pose.init(config, {seed = opts.seed, device = opts.device})
  log("pre-training a %.2fM-parameter LLaMA at Lc=%d for %d steps of %d examples (%.0f%% synthetic passkey)",
      m:num_params() / 1e6, Lc, opts.steps, opts.batch, 100 * opts.passkey_share)
  local run = exp:run("base", {stage = "pretrain", config = config, steps = opts.steps, batch = opts.batch,
                               lr = opts.lr, train_len = Lc, passkey_share = opts.passkey_share}, {redo = true})
  local sampler = pose.sampler{method = "pi", train_len = Lc, target_len = Lc, seed = opts.seed}
  local loss = train(m, sampler, opts.steps, opts.batch, opts.lr, opts.warmup, opts.passkey_share, run, "pretrain")
  m:save(base_dir)
  run:scalar("final_loss", loss)
  run:finish()
end

------------------------------------------------------------------------------------------------------------------
-- 4. Extensions to Lt = s * Lc, each from the base model, with the same number of optimizer steps and tokens.
local methods = {
  {name = "none", method = nil},
  {name = "pose-linear", method = "pose", chunks = 2},
  {name = "full-linear", method = "full"},
  {name = "pi-linear", method = "pi"},
  {name = "randpos-linear", method = "randpos"},
}
local windows = {}
for w = Lc, Lt, Lc do windows[#windows + 1] = w end
-- passkey lengths from Lc to Lt; a length shorter than the bare prompt (no filler at all) cannot be asked
local passkey_lengths = {}
for _, L in ipairs({Lc, 2 * Lc, Lt}) do
  if L >= bare_prompt then passkey_lengths[#passkey_lengths + 1] = L end
end
local rows, table_ppl, table_pk = {}, {}, {}

for i, mth in ipairs(methods) do
  local cfg = {method = mth.method or "none", train_len = Lc, target_len = Lt, scale = s, chunks = mth.chunks,
               rope = mth.method and {rope_type = "linear", factor = s} or "default", ext_steps = opts.ext_steps,
               ext_lr = opts.ext_lr, batch = opts.batch, seed = opts.seed}
  local run = exp:run(mth.name, cfg, {redo = opts.redo})
  if run then
    local m = pose.load(base_dir, {device = opts.device, rope = mth.method and {rope_type = "linear", factor = s} or nil})
    if mth.method then
      local sampler = pose.sampler{method = mth.method, train_len = Lc, target_len = Lt, chunks = mth.chunks or 2,
                                   seed = opts.seed + i}
      -- full-length examples hold Lt tokens: fewer of them per batch keeps the tokens per step equal
      local batch = mth.method == "full" and math.max(1, opts.batch // s) or opts.batch
      log("extending with %s: %d steps of %d x %d tokens", mth.name, opts.ext_steps, batch, sampler:example_len())
      local t0 = pose.now()
      local loss = train(m, sampler, opts.ext_steps, batch, opts.ext_lr, 10, 0, run, mth.name)
      run:scalar("final_loss", loss)
      run:scalar("train_seconds", pose.now() - t0)
    end
    log("evaluating %s: perplexity at windows %s, passkey at %s", mth.name, table.concat(windows, "/"),
        table.concat(passkey_lengths, "/"))
    local sweep = pose.eval.perplexity_sweep(m, eval_docs, {windows = windows, bos = tok.bos_id})
    pose.eval.write_ppl(exp.file, run.path, "sotu", sweep)
    -- generation with a KV cache runs on cpu models only for now: passkey uses a cpu copy of a GPU model
    local pk_model = m
    if opts.device ~= "cpu" then
      local dir = opts.work .. "/" .. mth.name
      m:save(dir)
      pk_model = pose.load(dir, {device = "cpu"})
    end
    local pk = pose.eval.passkey(pk_model, tok, {lengths = passkey_lengths, trials = opts.passkey_trials,
                                                 seed = opts.seed})
    pose.eval.write_passkey(exp.file, run.path, pk)
    run:finish()
  end
  -- read back (also for runs finished by an earlier invocation)
  local base = "/runs/" .. mth.name
  rows[#rows + 1] = mth.name
  table_ppl[#table_ppl + 1] = exp.file:read(base .. "/eval/ppl/sotu/ppl")
  local acc = exp.file:read(base .. "/eval/passkey/accuracy")
  local flat = {}
  for l = 1, #acc do flat[l] = acc[l][1] end
  table_pk[#table_pk + 1] = flat
end

local cols = {}
for _, w in ipairs(windows) do cols[#cols + 1] = "ppl@" .. w end
for _, l in ipairs(passkey_lengths) do cols[#cols + 1] = "passkey@" .. l end
local matrix = {}
for r = 1, #rows do
  matrix[r] = {}
  for _, v in ipairs(table_ppl[r]) do matrix[r][#matrix[r] + 1] = v end
  for _, v in ipairs(table_pk[r]) do matrix[r][#matrix[r] + 1] = v end
end
exp:table("quickstart", matrix, rows, cols)
exp:close()

print(string.format("\nPoSE quickstart: Lc = %d -> Lt = %d (linear x%d); perplexity on %d held-out speeches " ..
                    "(sliding window, BOS); passkey accuracy (%d trials per length)", Lc, Lt, s, #eval_docs,
                    opts.passkey_trials))
io.write(string.format("%-16s", "run"))
for _, c in ipairs(cols) do io.write(string.format("%12s", c)) end
io.write("\n")
for r, name in ipairs(rows) do
  io.write(string.format("%-16s", name))
  for _, v in ipairs(matrix[r]) do io.write(string.format(v < 10 and "%12.3f" or "%12.1f", v)) end
  io.write("\n")
end
print(string.format("\nwritten: %s/quickstart.h5 (%.0f s)", opts.out, pose.now() - t_start))
