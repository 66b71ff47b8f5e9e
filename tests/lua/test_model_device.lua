-- The device and activation-policy options of models (lua/l_model.c): device names, recompute policies, dtype per
-- device, m:device(), m:set_recompute(). On a machine with a usable GPU a cuda model is built and checked against
-- the CPU; without one, asking for cuda must fail with a message that points to the cpu. (The GPU decoder's
-- numerics are tested on the GPU machine by tests/gpu/test_model.c.)
local pose = require "pose"
local T = require "pose.test"

local function cfg(over)
  local c = {model_type = "llama", vocab_size = 61, hidden_size = 128, num_hidden_layers = 2,
             num_attention_heads = 2, num_key_value_heads = 1, intermediate_size = 96,
             max_position_embeddings = 256, initializer_range = 0.1}
  for k, v in pairs(over or {}) do c[k] = v end
  return c
end

T.case("cpu models: device, recompute option and method", function()
  local m = pose.init(cfg(), {seed = 1, recompute = "layer"})
  T.eq(m:device(), "cpu")
  T.check(tostring(m):find("cpu", 1, true), "tostring names the device")
  T.eq(m:recompute(), "layer")
  m:set_recompute("none")
  T.eq(m:recompute(), "none")
  m:set_recompute("offload")
  T.eq(m:recompute(), "offload")
  T.eq(pose.init(cfg(), {recompute = "offload"}):recompute(), "offload")
  T.eq(pose.init(cfg()):recompute(), "none")
  m:set_recompute("layer")
  -- the CPU keeps every activation whatever the policy: the loss is the same
  local ids = {{1, 2, 3, 4, 5, 6}}
  local a = m:loss(ids)
  m:set_recompute("none")
  T.eq(m:loss(ids), a)
end)

T.case("bad options are errors naming the choices", function()
  T.raises(function() pose.init(cfg(), {recompute = "sometimes"}) end, "none, layer, offload")
  T.raises(function() pose.init(cfg(), {recompute = "Offload"}) end, "unknown recompute policy 'Offload'")
  T.raises(function() pose.init(cfg(), {recompute = 3}) end, "recompute")
  local m = pose.init(cfg())
  T.raises(function() m:set_recompute("all") end, "none, layer, offload")
  T.raises(function() m:set_recompute("") end, "unknown recompute policy")
  T.raises(function() m:memory_plan(1, 64) end, "only cuda models")
  T.raises(function() m:memory_plan(1) end, "number expected")
  T.raises(function() m:memory_plan(1, 64, {recompute = "all"}) end, "none, layer, offload")
  T.raises(function() m:memory_plan(1, 64, {chunk = 3}) end, "chunk")
  T.raises(function() m:memory_plan(1, 64, {train = "yes"}) end, "train")
  T.raises(function() m:set_recompute() end, "string")
  T.raises(function() pose.init(cfg(), {device = "tpu"}) end, "unknown device")
  T.raises(function() pose.init(cfg(), {device = "cuda:x"}) end, "bad device name")
  T.raises(function() pose.load("tests/fixtures/models/llama_gqa", {dtype = "bf16"}) end, "not supported on the cpu")
end)

T.case("precision option: fp32-master everywhere, bf16 only on cuda", function()
  local m = pose.init(cfg(), {precision = "fp32-master"})
  T.eq(m:precision(), "fp32-master")
  T.eq(pose.init(cfg()):precision(), "fp32-master")
  T.raises(function() pose.init(cfg(), {precision = "bf16"}) end, "needs device=\"cuda\"")
  T.raises(function() pose.init(cfg(), {precision = "fp8"}) end, "fp32-master, bf16")
  T.raises(function() pose.init(cfg(), {precision = 16}) end, "precision")
  T.raises(function() pose.load("tests/fixtures/models/llama_gqa", {precision = "bf16"}) end, "needs device")
  T.raises(function() pose.load("tests/fixtures/models/llama_gqa", {precision = "half"}) end, "fp32-master, bf16")
  T.raises(function() pose.trainer(m, {sr_seed = "x"}) end, "sr_seed")
end)

local has_gpu = pcall(pose.init, cfg(), {device = "cuda"})
T.case("cuda models " .. (has_gpu and "(GPU present)" or "(no GPU: errors)"), function()
  if not has_gpu then
    T.raises(function() pose.init(cfg(), {device = "cuda"}) end, "not available")
    T.raises(function() pose.load("tests/fixtures/models/llama_gqa", {device = "cuda"}) end, "not available")
    return
  end
  local c = pose.init(cfg(), {seed = 3})
  local g = pose.init(cfg(), {seed = 3, device = "cuda", recompute = "layer"})
  T.eq(g:device(), "cuda:0")
  local ids = {{3, 1, 4, 1, 5, 9, 2, 6}}
  local pos = {{0, 1, 2, 3, 100, 101, 102, 103}}
  T.near(g:loss(ids, {positions = pos}), c:loss(ids, {positions = pos}), 2e-2)
  T.eq(#g:param("model.norm.weight"):totable(), 128)
  T.eq(#g:generate({1, 2, 3}, {max_new_tokens = 4}), 4) -- KV-cache decoding on the device
  T.raises(function() pose.load("tests/fixtures/models/llama_gqa", {device = "cuda", dtype = "f32"}) end, "bf16")
  -- the other families run on the GPU too (numerics: tests/gpu/test_model_families.c)
  for _, fam in ipairs{"gptj", "neox_parallel", "baichuan"} do
    local dir = "tests/fixtures/models/" .. fam
    if io.open(dir .. "/config.json") then
      local fg = pose.load(dir, {device = "cuda"})
      T.near(fg:loss(ids, {positions = pos}), pose.load(dir):loss(ids, {positions = pos}), 2e-2)
      T.eq(#fg:generate({1, 2, 3}, {max_new_tokens = 3}), 3)
    end
  end
  local b = pose.init(cfg(), {seed = 3, device = "cuda", precision = "bf16"})
  T.eq(b:precision(), "bf16")
  T.near(b:loss(ids, {positions = pos}), c:loss(ids, {positions = pos}), 2e-2)
  local tb = pose.trainer(b, {lr = 1e-3, sr_seed = 5})
  local b1 = tb:step{ids = ids, positions = pos}
  T.check(tb:step{ids = ids, positions = pos} < b1, "a bf16-policy GPU step lowers the loss")
  local tr = pose.trainer(g, {lr = 1e-3})
  local l1 = tr:step{ids = ids, positions = pos}
  local l2 = tr:step{ids = ids, positions = pos}
  T.check(l2 < l1, "a GPU training step lowers the loss")
  -- the fused update (AdamW per layer inside the backward) gives the unfused trajectory (fp32 masters: bit for bit)
  local fa, fb = pose.init(cfg(), {seed = 8, device = "cuda"}), pose.init(cfg(), {seed = 8, device = "cuda"})
  local ta = pose.trainer(fa, {lr = 1e-3})
  local tf = pose.trainer(fb, {lr = 1e-3, fused_update = true})
  T.eq(tf:opts().fused_update, true)
  for _ = 1, 3 do
    local la, _, na = ta:step{ids = ids, positions = pos}
    local lf, _, nf = tf:step{ids = ids, positions = pos}
    T.eq(lf, la)
    T.eq(nf, na)
  end
  T.same(fb:param("model.layers.0.self_attn.q_proj.weight"):totable(), fa:param("model.layers.0.self_attn.q_proj.weight"):totable())
  T.raises(function() pose.trainer(fb, {fused_update = true, clip = 1.0}) end, "clip = 0")
  -- recompute="offload" (layer inputs in pinned host memory) trains exactly as "layer" from the same weights
  local ga = pose.init(cfg(), {seed = 4, device = "cuda", recompute = "layer"})
  local gb = pose.init(cfg(), {seed = 4, device = "cuda", recompute = "offload"})
  T.eq(gb:recompute(), "offload")
  local ta, tb2 = pose.trainer(ga, {lr = 1e-3}), pose.trainer(gb, {lr = 1e-3})
  for _ = 1, 2 do T.eq(tb2:step{ids = ids, positions = pos}, ta:step{ids = ids, positions = pos}) end
  local p = gb:memory_plan(1, 8)
  T.eq(p.total, p.weights + p.grads + p.optimizer + p.activations + p.temporary)
  T.eq(p.host_pinned, 1 * 8 * 128 * 2) -- layer input 0 of 2 layers, bf16
  T.eq(p.chunk_rows, 8)
  local f = gb:memory_plan(1, 8, {train = false})
  T.eq(f.grads, 0)
  T.check(gb:memory_plan(1, 8, {recompute = "none"}).activations > p.activations, "none keeps more than offload")
  T.raises(function() gb:memory_plan(0, 8) end, "bad shape")
end)

T.done("test_model_device")
