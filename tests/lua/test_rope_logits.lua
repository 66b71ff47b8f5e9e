-- Golden logits from transformers 5.17 for the tiny LLaMA fixture under every RoPE scheme (issue 4), at positions
-- past the original window and past max_position_embeddings: transformers loaded the config.json that pose's m:save
-- wrote (v4 form) and a copy in the v5 rope_parameters form (tests/fixtures/gen_rope_logits.py). Pose, given the
-- same scheme as a `rope` override, must produce those logits; this checks the scheme and its saved form at once.
local pose = require "pose"
local T = require "pose.test"
local dir = "tests/fixtures/rope_logits"
local cases = dofile("tests/fixtures/rope_logits_cases.lua")
if not io.open(dir .. "/default.json") then T.skip("no golden RoPE logits (run tests/fixtures/gen_rope_logits.py)") end

for _, c in ipairs(cases) do
  T.case(c.name, function()
    local f = io.open(dir .. "/" .. c.name .. ".json")
    T.check(f ~= nil, "golden file for " .. c.name)
    if not f then return end
    local g = pose.json_decode(f:read("a"))
    f:close()
    local m = pose.load("tests/fixtures/models/llama_gqa", {rope = c.rope})
    local got = m:forward(g.ids, {positions = g.positions}):totable()
    for _, form in ipairs({"v4", "v5"}) do
      local want, worst = g[form].logits, 0
      for b = 1, #want do
        for t = 1, #want[b] do
          for v = 1, #want[b][t] do worst = math.max(worst, math.abs(got[b][t][v] - want[b][t][v])) end
        end
      end
      -- dynamic recomputes inv_freq with float32 tensor ops in transformers (<= ~5e-7 relative): a little looser
      local tol = (c.rope and c.rope.rope_type == "dynamic") and 5e-4 or 1e-4
      T.check(worst <= tol, string.format("%s %s: max |logit diff| %.3g > %g", c.name, form, worst, tol))
      print(string.format("%-14s %s: max |logit - transformers| = %.2e", c.name, form, worst))
    end
  end)
end
T.done("test_rope_logits.lua")
