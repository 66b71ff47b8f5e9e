-- Interpolation schemes under PoSE (paper Figure 4 and Table 2): Linear (PI), NTK (PoSE's static `vanilla_ntk`,
-- theta' = theta * s^(r/(r-2))) and YaRN, each as the RoPE of a PoSE extension at a larger scale factor (8x by
-- default), plus the same schemes applied to the base model without any training (`none-*`) and plain RoPE (`none`).
-- The base is the quickstart's small LLaMA pre-trained (or reused, see lib/options.lua) at Lc; every PoSE run gets
-- the same steps and tokens (N = 2 chunks); perplexity is sliding-window on the held-out speeches at windows
-- Lc, 2Lc, 4Lc, ..., Lt.
--
--   build/pose run experiments/interp.lua [--scale 8] [--steps 600] [--ext_steps 80] [--chunks 2]
--                                         [--work build/paper] [--out results] [--quick] [--redo]
--
-- Table /tables/interp in results/interp.h5: rows none, none-linear, none-ntk, none-yarn, pose-linear, pose-ntk,
-- pose-yarn; cols ppl@<window>.
-- What to expect (paper): all three extend under PoSE; NTK and YaRN beat Linear, most clearly at large factors
-- (Table 2, 128k: YaRN best everywhere, NTK best at the shortest window and worst at the longest: its perplexity turns
-- up before the target length); without training, NTK and YaRN already extend somewhat while Linear hurts at short
-- windows. At this toy scale expect the ordering, if any, to be weak.
-- Measured (results/interp.md, 400-step base, 60 extension steps, 8x): ppl@512 / @1024 pose-linear 110.3 / 110.3,
-- pose-ntk 104.3 / 105.9 (turns up before Lt), pose-yarn 104.6 / 104.6 - the paper's ordering (flags in interp.md;
-- 3.6 min on 2 busy cores with the base already cached).
local pose = require "pose"
local here = debug.getinfo(1, "S").source:match("^@(.*[/\\])") or "./"
local P = dofile(here .. "lib/pipeline.lua")
local O = dofile(here .. "lib/options.lua")
local opts = pose.args.merge(..., O.defaults{scale = 8, chunks = 2, name = "interp"}, "interp")
if opts.quick then O.quick(opts) end

local ctx = P.new(opts, "interp")
local Lc, s, Lt = ctx.Lc, ctx.s, ctx.Lt
ctx:tokenizer()
local exp = pose.experiment(opts.name, {dir = opts.out, device = opts.device})
local base_dir = O.base_dir(opts)
ctx:pretrain(exp, base_dir)

local schemes = {
  linear = {rope_type = "linear", factor = s},
  ntk = {rope_type = "vanilla_ntk", factor = s},
  yarn = {rope_type = "yarn", factor = s, original_max_position_embeddings = Lc},
}
local order = {"linear", "ntk", "yarn"}
local specs = {{name = "none"}}
for _, k in ipairs(order) do specs[#specs + 1] = {name = "none-" .. k, rope = schemes[k]} end
for _, k in ipairs(order) do
  specs[#specs + 1] = {name = "pose-" .. k, method = "pose", chunks = opts.chunks, rope = schemes[k]}
end

local windows = {}
local w = Lc
while w < Lt do windows[#windows + 1] = w; w = w * 2 end
windows[#windows + 1] = Lt
local rows, matrix = {}, {}
for i, spec in ipairs(specs) do
  -- the same sampler seed for every PoSE run: the schemes see identical examples
  spec.seed, spec.windows, spec.passkey_lengths = opts.seed + 1, windows, {}
  spec.config = {base = base_dir}
  local res = ctx:extend(exp, base_dir, spec)
  rows[i], matrix[i] = spec.name, res.ppl
end
local cols = {}
for _, x in ipairs(windows) do cols[#cols + 1] = "ppl@" .. x end
exp:table(opts.name, matrix, rows, cols)
exp:close()

print(string.format("\nInterpolation under PoSE: Lc = %d -> Lt = %d (x%d, N = %d), %d extension steps each; " ..
                    "perplexity on %d held-out speeches (sliding window, BOS)", Lc, Lt, s, opts.chunks,
                    opts.ext_steps, #ctx.eval_docs))
P.print_table(rows, cols, matrix)
print(string.format("\nwritten: %s/%s.h5 (%.0f s)", opts.out, opts.name, ctx:elapsed()))
