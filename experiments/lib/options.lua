-- Defaults shared by the paper experiments built on experiments/lib/pipeline.lua (chunks.lua, interp.lua): the
-- quickstart's base model and data, so that these scripts can reuse one pre-trained base (cached under work/ by
-- base_key) instead of each pre-training its own.
local pose = require "pose"
local M = {}

--- M.defaults(extra) -> the common defaults with extra's keys added (extra wins)
function M.defaults(extra)
  local d = {
    data = "experiments/data/quickstart",
    out = "results",
    work = "build/paper",              -- tokenizer and checkpoints (the base is shared between scripts)
    train_len = 128,                   -- Lc
    scale = 4,                         -- s: Lt = s * Lc
    vocab = 2048,
    hidden = 192, layers = 4, heads = 6, kv_heads = 2, ffn = 512,
    steps = 600, batch = 16, lr = 2e-3, warmup = 40,
    passkey_share = 0.05,
    ext_steps = 80, ext_lr = 5e-4,
    eval_docs = 4, eval_tokens = 4096,
    passkey_trials = 0,                -- passkey off by default: the small base cannot retrieve (RESULTS.md)
    seed = 1,
    quick = false,
    redo = false,
    device = pose.device(),
  }
  for k, v in pairs(extra or {}) do d[k] = v end
  return d
end

--- M.quick(opts): the quickstart's --quick sizes (seconds)
function M.quick(opts)
  opts.steps, opts.ext_steps, opts.batch, opts.eval_tokens, opts.warmup = 30, 10, 4, 512, 5
  opts.hidden, opts.layers, opts.heads, opts.kv_heads, opts.ffn, opts.vocab = 64, 2, 4, 2, 128, 512
  if opts.passkey_trials > 0 then opts.passkey_trials = 2 end
end

--- M.base_dir(opts) -> work/base-<what determines the base>: scripts with the same base options share it
function M.base_dir(opts)
  return string.format("%s/base-L%d-v%d-h%dx%d-a%d-kv%d-f%d-s%d-b%d-lr%g-pk%g-seed%d", opts.work, opts.train_len,
                       opts.vocab, opts.hidden, opts.layers, opts.heads, opts.kv_heads, opts.ffn, opts.steps,
                       opts.batch, opts.lr, opts.passkey_share, opts.seed)
end

return M
