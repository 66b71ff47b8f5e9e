-- The chunk-count trade-off (paper Appendix B): PoSE splits the Lc-token training window into N chunks. More chunks
-- cover more relative distances per example (experiments/coverage.lua) but stray further from the contiguous text
-- structure seen in pre-training. This script pre-trains (or reuses) the small base model of the quickstart at Lc,
-- extends it s-fold with PoSE + linear interpolation for N in --chunks (same steps and tokens each), next to None
-- and Full-length as the floor and ceiling, and evaluates sliding-window perplexity on the held-out speeches at
-- windows Lc..Lt. The table also holds each sampler's coverage (fraction of distances 1..Lt-1 seen in
-- --coverage_draws draws).
--
--   build/pose run experiments/chunks.lua [--chunks 1,2,4,8] [--scale 4] [--steps 600] [--ext_steps 80]
--                                         [--work build/paper] [--out results] [--quick] [--redo]
--
-- Table /tables/chunks in results/chunks.h5: rows none, pose-n<N>..., full; cols ppl@<window>..., coverage.
-- What to expect (paper Appendix B, LLaMA-7B): N = 2 is the sweet spot; N = 1 never sees distances past Lc and
-- behaves like PI without skipping; many chunks cost a little perplexity at every window. At this toy scale the
-- differences are small (a few percent) and may be within run-to-run noise: read them next to none and full.
-- Measured (results/chunks.md, 400-step base, 60 extension steps, 4x): ppl@512 none 112.6, N=1 105.9, N=2 105.6,
-- N=4 106.2, N=8 107.3, full 107.1 - N = 2 best at every window, more chunks steadily worse (flags in chunks.md;
-- 6.5 min on 2 busy cores, most of it pre-training the base, which interp.lua then reuses).
local pose = require "pose"
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./"
local P = dofile(here .. "lib/pipeline.lua")
local O = dofile(here .. "lib/options.lua")
local opts = pose.args.merge(..., O.defaults{chunks = "1,2,4,8", coverage_draws = 1000, name = "chunks"}, "chunks")
if opts.quick then O.quick(opts); opts.chunks, opts.coverage_draws = "1,2,4", 50 end

local chunk_counts = {}
for w in tostring(opts.chunks):gmatch("[^,%s]+") do
  local n = math.tointeger(tonumber(w))
  if not n or n < 1 or n > opts.train_len then
    error(string.format("chunks: --chunks must be integers in 1..train_len separated by commas, got '%s'",
                        tostring(opts.chunks)), 0)
  end
  chunk_counts[#chunk_counts + 1] = n
end

local ctx = P.new(opts, "chunks")
local Lc, s, Lt = ctx.Lc, ctx.s, ctx.Lt
ctx:tokenizer()
local exp = pose.experiment(opts.name, {dir = opts.out, device = opts.device})
local base_dir = O.base_dir(opts)
ctx:pretrain(exp, base_dir)

local linear = {rope_type = "linear", factor = s}
local specs = {{name = "none"}}
for _, n in ipairs(chunk_counts) do
  specs[#specs + 1] = {name = "pose-n" .. n, method = "pose", chunks = n, rope = linear}
end
specs[#specs + 1] = {name = "full", method = "full", rope = linear}

local windows = ctx:windows()
local rows, matrix = {}, {}
for i, spec in ipairs(specs) do
  spec.seed, spec.windows, spec.passkey_lengths = opts.seed + i, windows, {}
  spec.config = {base = base_dir}
  local res = ctx:extend(exp, base_dir, spec)
  local cov -- measured for the samplers; none keeps the base's window, which holds only 1..Lc-1
  if spec.method then
    local smp = pose.sampler{method = spec.method, train_len = Lc, target_len = Lt, chunks = spec.chunks or 2,
                             seed = spec.seed}
    cov = smp:coverage(math.max(smp:min_doc_len(), 2 * Lt), opts.coverage_draws).fraction
  else
    cov = (Lc - 1) / (Lt - 1)
  end
  rows[i] = spec.name
  matrix[i] = {}
  for _, v in ipairs(res.ppl) do matrix[i][#matrix[i] + 1] = v end
  matrix[i][#matrix[i] + 1] = cov
end
local cols = {}
for _, w in ipairs(windows) do cols[#cols + 1] = "ppl@" .. w end
cols[#cols + 1] = "coverage"
exp:table(opts.name, matrix, rows, cols)
exp:close()

print(string.format("\nPoSE chunk count: Lc = %d -> Lt = %d (linear x%d), %d extension steps each; perplexity on " ..
                    "%d held-out speeches (sliding window, BOS); coverage over %d draws", Lc, Lt, s, opts.ext_steps,
                    #ctx.eval_docs, opts.coverage_draws))
P.print_table(rows, cols, matrix)
print(string.format("\nwritten: %s/%s.h5 (%.0f s)", opts.out, opts.name, ctx:elapsed()))
