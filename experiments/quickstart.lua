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
local P = dofile((debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./") .. "lib/pipeline.lua")
local ctx = P.new(opts, "quickstart")
local Lc, s, Lt = ctx.Lc, ctx.s, ctx.Lt

-- 1. Tokenizer: a SentencePiece BPE trained on the training speeches (byte fallback: any text encodes).
ctx:tokenizer()
local eval_docs = ctx.eval_docs

-- 2. Base model: pre-trained at Lc with plain RoPE (examples cut out of the speeches, see P's batcher).
local exp = pose.experiment("quickstart", {dir = opts.out, device = opts.device})
local base_dir = opts.work .. "/base"
ctx:pretrain(exp, base_dir)

-- 3. Extensions to Lt = s * Lc, each from the base model, with the same number of optimizer steps and tokens.
local methods = {
  {name = "none", method = nil},
  {name = "pose-linear", method = "pose", chunks = 2},
  {name = "full-linear", method = "full"},
  {name = "pi-linear", method = "pi"},
  {name = "randpos-linear", method = "randpos"},
}
local windows, passkey_lengths = ctx:windows(), ctx:passkey_lengths()
local rows, table_ppl, table_pk = {}, {}, {}
for i, mth in ipairs(methods) do
  local res = ctx:extend(exp, base_dir, {name = mth.name, method = mth.method, chunks = mth.chunks,
                                         rope = mth.method and {rope_type = "linear", factor = s} or nil,
                                         seed = opts.seed + i, windows = windows, passkey_lengths = passkey_lengths})
  rows[#rows + 1] = mth.name
  table_ppl[#table_ppl + 1] = res.ppl
  table_pk[#table_pk + 1] = res.passkey or {}
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
P.print_table(rows, cols, matrix)
print(string.format("\nwritten: %s/quickstart.h5 (%.0f s)", opts.out, ctx:elapsed()))
