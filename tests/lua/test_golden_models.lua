-- The decoder against transformers (tests/fixtures/gen_models.py, run on the GPU machine): logits (<= 1e-4 abs) and
-- loss (<= 1e-5 rel) of tiny random models of every family at PoSE-style skipped positions, and 5-step AdamW
-- trajectories through pose.trainer (the Trainer's parameter groups). Skips while the fixtures are absent.
local pose = require "pose"
local T = require "pose.test"

local DIR = "tests/fixtures/models/"
local NAMES = {"llama_gqa", "llama_tied_bias", "mistral_window", "qwen2", "gptj", "neox_parallel",
               "neox_sequential", "baichuan"}

local function read(path)
  local f = io.open(path)
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

local present = {}
for _, name in ipairs(NAMES) do
  local txt = read(DIR .. name .. "/golden.json")
  if txt then present[#present + 1] = {name = name, golden = pose.json_decode(txt)} end
end
if #present == 0 then T.skip("no golden fixtures under " .. DIR .. " (run tests/fixtures/gen_models.py)") end
if not pose.trainer then io.stderr:write("pose.trainer is not built in: skipping the AdamW trajectories\n") end

for _, fx in ipairs(present) do
  local g = fx.golden
  T.case(fx.name .. ": logits and loss", function()
    local m = pose.load(DIR .. fx.name)
    local lg = m:forward(g.ids, {positions = g.positions}):totable()
    local err = 0
    for b = 1, #g.logits do
      for t = 1, #g.logits[b] do
        local want, got = g.logits[b][t], lg[b][t]
        T.eq(#got, #want, "vocab")
        for v = 1, #want do err = math.max(err, math.abs(got[v] - want[v])) end
      end
    end
    T.check(err <= 1e-4, string.format("%s: max |logit diff| %.3g", fx.name, err))
    local loss = m:loss(g.ids, {positions = g.positions})
    T.check(math.abs(loss - g.loss) <= 1e-5 * math.abs(g.loss),
            string.format("%s: loss %.9g vs transformers %.9g", fx.name, loss, g.loss))
  end)
  if pose.trainer and g.adamw_hf then
    T.case(fx.name .. ": AdamW trajectory", function()
      local a = g.adamw_hf
      local m = pose.load(DIR .. fx.name)
      local tr = pose.trainer(m, {lr = a.lr, weight_decay = a.weight_decay, betas = a.betas, eps = a.eps})
      local n = #a.losses
      for k = 1, n - 1 do
        local loss = tr:step{ids = g.ids, positions = g.positions}
        T.check(math.abs(loss - a.losses[k]) <= 5e-5 * math.abs(a.losses[k]),
                string.format("%s step %d: loss %.9g vs torch %.9g", fx.name, k, loss, a.losses[k]))
      end
      local final = m:loss(g.ids, {positions = g.positions})
      T.check(math.abs(final - a.losses[n]) <= 5e-5 * math.abs(a.losses[n]),
              string.format("%s after %d steps: loss %.9g vs torch %.9g", fx.name, n - 1, final, a.losses[n]))
    end)
  end
end

T.done("test_golden_models")
