-- pose.trainer on a tiny random LLaMA: the loss goes down, the lr follows the schedule, accumulation equals one big
-- batch, a saved and resumed run reproduces the uninterrupted loss curve bit for bit, and every bad argument is a
-- clear Lua error.
local pose = require "pose"
local T = require "pose.test"

if not pose.init then T.skip("the model is not built in yet (pose.init missing)") end

local config = {
  model_type = "llama", architectures = {"LlamaForCausalLM"}, vocab_size = 64, hidden_size = 32,
  intermediate_size = 64, num_hidden_layers = 2, num_attention_heads = 4, num_key_value_heads = 2,
  max_position_embeddings = 64, rms_norm_eps = 1e-6, rope_theta = 10000.0, initializer_range = 0.02,
  tie_word_embeddings = false, hidden_act = "silu",
}

-- a batch of `rows` x `len` token ids that depends only on (step, rows, len): a stand-in for a data loader
local function batch(step, rows, len)
  local ids = {}
  for r = 1, rows do
    local row = {}
    for t = 1, len do row[t] = (step * 7 + r * 13 + t * t * 3) % config.vocab_size end
    ids[r] = row
  end
  return ids
end

local opts = {lr = 1e-2, betas = {0.9, 0.95}, weight_decay = 0.01, clip = 1.0, warmup = 2, schedule = "cosine",
              steps = 8, accum = 2}

local function run(tr, from, to, losses)
  for s = from, to do
    local lr_before = tr:lr()
    local loss, lr, gn = tr:step{ids = batch(s % 2, 4, 12)}
    T.eq(lr, lr_before, "step " .. s .. " uses tr:lr()")
    T.check(gn > 0, "grad norm")
    losses[s] = loss
  end
end

T.case("training lowers the loss and follows the schedule", function()
  local m = pose.init(config, {seed = 1})
  local tr = pose.trainer(m, opts)
  T.eq(tr:steps(), 0)
  T.eq(tr:lr(), 0.0, "warmup: the first update has lr 0")
  local losses = {}
  run(tr, 1, 8, losses)
  T.eq(tr:steps(), 8)
  T.check(losses[8] < losses[1] - 0.1, string.format("loss %g -> %g", losses[1], losses[8]))
  T.check(tostring(tr):find("pose.trainer %(step 8") ~= nil)
  local o = tr:opts()
  T.eq(o.schedule, "cosine"); T.eq(o.accum, 2); T.same(o.betas, {0.9, 0.95}); T.eq(o.lr, 1e-2)
  T.raises(function() tr:step{ids = batch(0, 4, 12)} end, "past the schedule's steps=8")
end)

T.case("defaults are the transformers Trainer's", function()
  local tr = pose.trainer(pose.init(config, {seed = 2}))
  local o = tr:opts()
  T.eq(o.lr, 5e-5); T.same(o.betas, {0.9, 0.999}); T.eq(o.eps, 1e-8); T.eq(o.weight_decay, 0.0)
  T.eq(o.clip, 0.0); T.eq(o.warmup, 0); T.eq(o.schedule, "constant"); T.eq(o.accum, 1)
  T.eq(tr:lr(), 5e-5)
end)

T.case("accumulation equals one big batch", function()
  local ids = batch(3, 4, 10)
  -- the second half scores fewer targets: token weighting matters
  local tg = batch(3, 4, 10)
  for t = 2, 10 do tg[3][t] = -100 end
  local a, b = pose.init(config, {seed = 3}), pose.init(config, {seed = 3})
  local ta = pose.trainer(a, {lr = 1e-2})
  local tb = pose.trainer(b, {lr = 1e-2, accum = 2})
  for _ = 1, 3 do
    local la, _, na = ta:step{ids = ids, targets = tg}
    local lb, _, nb = tb:step{ids = ids, targets = tg}
    T.near(lb, la, 1e-5 * la, "loss")
    T.near(nb, na, 1e-4 * na, "grad norm")
  end
  T.near(b:loss(ids), a:loss(ids), 1e-4, "weights after 3 steps")
end)

T.case("save and resume reproduce the loss curve bit for bit", function()
  local ref = {}
  run(pose.trainer(pose.init(config, {seed = 4}), opts), 1, 8, ref)
  local dir = T.tmpdir()
  local part = {}
  local tr = pose.trainer(pose.init(config, {seed = 4}), opts)
  run(tr, 1, 4, part)
  tr:save(dir, {user = "data position 4"})
  tr = nil
  collectgarbage()
  local m2 = pose.init(config, {seed = 99}) -- other weights: the state brings them back
  local tr2 = pose.trainer(m2) -- default options: the state brings them back too
  T.eq(tr2:load(dir), "data position 4")
  T.eq(tr2:steps(), 4)
  T.eq(tr2:opts().schedule, "cosine")
  run(tr2, 5, 8, part)
  for s = 1, 8 do T.eq(part[s], ref[s], "loss at step " .. s) end
  -- saving without a user blob gives "" back
  tr2:save(dir)
  T.eq(tr2:load(dir), "")
  os.execute("rm -rf " .. dir)
end)

T.case("errors", function()
  local m = pose.init(config, {seed = 5})
  T.raises(function() pose.trainer(m, {lr = 1e-3, learning_rate = 1}) end, "unknown option 'learning_rate'")
  T.raises(function() pose.trainer(m, {lr = -1}) end, "lr must be >= 0")
  T.raises(function() pose.trainer(m, {lr = "big"}) end, "option 'lr' must be a number")
  T.raises(function() pose.trainer(m, {betas = {1.0, 0.9}}) end, "betas[1] = 1 is outside [0, 1)")
  T.raises(function() pose.trainer(m, {betas = {0.9, -0.1}}) end, "betas[2] = -0.1 is outside [0, 1)")
  T.raises(function() pose.trainer(m, {betas = 0.9}) end, "betas must be a table of two numbers")
  T.raises(function() pose.trainer(m, {accum = 0}) end, "accum must be >= 1")
  T.raises(function() pose.trainer(m, {accum = 1.5}) end, "option 'accum' must be an integer")
  T.raises(function() pose.trainer(m, {schedule = "cosine"}) end, "needs the total number of steps")
  T.raises(function() pose.trainer(m, {schedule = "step"}) end, "unknown lr schedule 'step'")
  T.raises(function() pose.trainer(m, {eps = -1}) end, "eps must be >= 0")
  T.raises(function() pose.trainer(m, {clip = -1}) end, "clip must be >= 0")
  T.raises(function() pose.trainer(m, {weight_decay = -1}) end, "weight_decay must be >= 0")
  -- fused_update: only cuda models run it; the option's constraints come first
  T.raises(function() pose.trainer(m, {fused_update = true}) end, "fused_update needs a cuda model")
  T.raises(function() pose.trainer(m, {fused_update = true, accum = 2}) end, "fused_update needs accum = 1")
  T.raises(function() pose.trainer(m, {fused_update = true, clip = 1}) end, "fused_update needs clip = 0")
  T.raises(function() pose.trainer(m, {fused_update = "yes"}) end, "fused_update")
  T.eq(pose.trainer(m, {fused_update = false}):opts().fused_update, false)
  T.raises(function() pose.trainer({}, {}) end, "model")
  T.raises(function() pose.trainer(m, 5) end, "table expected")
  local tr = pose.trainer(m, {accum = 2})
  T.raises(function() tr:step{ids = batch(0, 3, 8)} end, "ids has 3 rows, which is not a positive multiple of accum=2")
  T.raises(function() tr:step{} end, "'ids' is required")
  T.raises(function() tr:step{ids = batch(0, 2, 8), labels = 1} end, "unknown option 'labels'")
  T.raises(function() tr:step{ids = batch(0, 2, 8), positions = batch(0, 2, 7)} end, "positions are [2, 7] but ids are [2, 8]")
  T.raises(function() tr:step{ids = batch(0, 2, 8), targets = batch(0, 4, 8)} end, "targets are [4, 8] but ids are [2, 8]")
  T.raises(function() tr:step{ids = {1, 2, 3, 4}} end, "ids must be 2-D")
  T.raises(function() tr:step{ids = {{1.5, 2}, {3, 4}}} end, "not an integer")
  T.raises(function() tr:step(5) end, "table expected")
  T.raises(function() tr:load("/nonexistent/dir") end, "cannot open")
  T.raises(function() tr:save(T.tmpdir(), {user = 5}) end, "user must be a string")
  T.raises(function() tr:save(T.tmpdir(), {usr = "x"}) end, "unknown option 'usr'")
  T.eq(tr:steps(), 0, "no step was taken")
  -- another model's state does not load
  local dir = T.tmpdir()
  tr:save(dir)
  local other = {}
  for k, v in pairs(config) do other[k] = v end
  other.hidden_size = 16
  local tr3 = pose.trainer(pose.init(other, {seed = 1}))
  T.raises(function() tr3:load(dir) end, "does not fit this model")
  os.execute("rm -rf " .. dir)
end)

T.done("test_trainer")
