-- The model's Lua API (lua/l_model.c): init, forward / nll / loss at explicit positions, save -> load, KV-cache
-- generation, set_rope, bounded memory at long lengths, and every error path.
local pose = require "pose"
local T = require "pose.test"

local function cfg(over)
  local c = {model_type = "llama", vocab_size = 61, hidden_size = 32, num_hidden_layers = 2,
             num_attention_heads = 4, num_key_value_heads = 2, intermediate_size = 48,
             max_position_embeddings = 256, initializer_range = 0.2}
  for k, v in pairs(over or {}) do c[k] = v end
  return c
end

local function maxdiff(a, b)
  local ta, tb = a:totable(), b:totable()
  local m = 0
  local function walk(x, y)
    if type(x) == "table" then for i = 1, #x do walk(x[i], y[i]) end
    else m = math.max(m, math.abs(x - y)) end
  end
  walk(ta, tb)
  return m
end

local ids = {{5, 9, 2, 33, 17, 8, 41, 3, 12, 60}, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}}
-- PoSE-style: two chunks, the second shifted far beyond the first
local pose_pos = {{0, 1, 2, 3, 4, 150, 151, 152, 153, 154}, {0, 1, 2, 3, 4, 90, 91, 92, 93, 94}}

T.case("init is deterministic by seed", function()
  local a, b, c = pose.init(cfg(), {seed = 7}), pose.init(cfg(), {seed = 7}), pose.init(cfg(), {seed = 8})
  T.eq(maxdiff(a:forward(ids), b:forward(ids)), 0, "same seed, same logits")
  T.check(maxdiff(a:forward(ids), c:forward(ids)) > 1e-3, "another seed, other logits")
  T.check(tostring(a):find("pose.model%(llama") ~= nil)
  -- 61*32 embed + 61*32 lm_head + 2 * (q 32x32, k 16x32, v 16x32, o 32x32, 3 x 48x32, 2 norms) + final norm
  T.eq(a:num_params(), 2 * 61 * 32 + 2 * (1024 + 512 + 512 + 1024 + 3 * 1536 + 64) + 32)
  local ps = a:params()
  T.eq(ps[1].name, "model.embed_tokens.weight")
  T.same(ps[1].shape, {61, 32})
  T.eq(ps[#ps].name, "lm_head.weight")
  local decay = {}
  for _, p in ipairs(ps) do decay[p.name] = p.decay end
  T.eq(decay["model.layers.0.input_layernorm.weight"], false)
  T.eq(decay["model.layers.1.mlp.down_proj.weight"], true)
  T.same(a:param("model.norm.weight"):totable()[1], 1.0)
end)

T.case("forward, nll and loss agree", function()
  local m = pose.init(cfg(), {seed = 1})
  local lg = m:forward(ids, {positions = pose_pos})
  T.same(lg:shape(), {2, 10, 61})
  local nll = m:nll(ids, {positions = pose_pos})
  T.same(nll:shape(), {2, 9})
  local L, N = lg:totable(), nll:totable()
  local err, sum = 0, 0
  for b = 1, 2 do
    for t = 1, 9 do
      local row, mx = L[b][t], -math.huge
      for v = 1, 61 do mx = math.max(mx, row[v]) end
      local s = 0
      for v = 1, 61 do s = s + math.exp(row[v] - mx) end
      local ref = mx + math.log(s) - row[ids[b][t + 1] + 1]
      err = math.max(err, math.abs(ref - N[b][t]))
      sum = sum + N[b][t]
    end
  end
  T.check(err < 1e-5, "nll = logsumexp - logit, max err " .. err)
  T.near(m:loss(ids, {positions = pose_pos}), sum / 18, 1e-6, "loss = mean nll")
  -- targets: -100 ignored (nll 0, excluded from the mean)
  local tg = {{}, {}}
  for b = 1, 2 do for t = 1, 10 do tg[b][t] = ids[b][t] end end
  tg[1][4], tg[2][10] = -100, -100
  local n2 = m:nll(ids, {positions = pose_pos, targets = tg}):totable()
  T.eq(n2[1][3], 0.0)
  T.eq(n2[2][9], 0.0)
  local s2 = sum - N[1][3] - N[2][9]
  T.near(m:loss(ids, {positions = pose_pos, targets = tg}), s2 / 16, 1e-6)
  -- 1-D ids are one row; tensors of i32/i64 are accepted
  local one = m:forward(ids[2])
  T.same(one:shape(), {1, 10, 61})
  T.eq(maxdiff(one, m:forward(pose.tensor({ids[2]}, "i32"))), 0)
  T.eq(maxdiff(m:nll(pose.tensor(ids[2], "i64")), m:nll(ids[2])), 0)
  -- default positions are 0..T-1; positions change the logits (except at the first token of a chunk... of row 1)
  local row_pos = {{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}}
  T.eq(maxdiff(m:forward({ids[1]}), m:forward({ids[1]}, {positions = row_pos})), 0)
  T.check(maxdiff(m:forward({ids[1]}), m:forward({ids[1]}, {positions = {pose_pos[1]}})) > 1e-4)
  -- a constant shift of all positions leaves the logits (nearly) unchanged: RoPE is relative
  local shifted = {{}}
  for t = 1, 10 do shifted[1][t] = pose_pos[1][t] + 1000 end
  T.check(maxdiff(m:forward({ids[1]}, {positions = {pose_pos[1]}}), m:forward({ids[1]}, {positions = shifted})) < 2e-3)
end)

T.case("save -> load round trip", function()
  local fams = {
    cfg({tie_word_embeddings = true, attention_bias = true, mlp_bias = true}),
    cfg({model_type = "mistral", sliding_window = 4}),
    cfg({model_type = "qwen2"}),
    {model_type = "gptj", vocab_size = 61, n_embd = 32, n_layer = 2, n_head = 4, rotary_dim = 4, n_positions = 256},
    {model_type = "gpt_neox", vocab_size = 61, hidden_size = 32, num_hidden_layers = 2, num_attention_heads = 4,
     intermediate_size = 48, rotary_pct = 0.5, use_parallel_residual = false},
    {model_type = "baichuan", vocab_size = 61, hidden_size = 32, num_hidden_layers = 2, num_attention_heads = 4,
     intermediate_size = 48, max_position_embeddings = 256},
  }
  for _, c in ipairs(fams) do
    local m = pose.init(c, {seed = 3})
    local dir = T.tmpdir()
    m:save(dir)
    local m2 = pose.load(dir)
    T.eq(m2.config.model_type, c.model_type)
    T.eq(m2:num_params(), m:num_params(), c.model_type .. " parameter count")
    T.eq(maxdiff(m:forward(ids, {positions = pose_pos}), m2:forward(ids, {positions = pose_pos})), 0,
         c.model_type .. " identical logits after f32 round trip")
    local dir2 = T.tmpdir()
    m:save(dir2, {dtype = "bf16"})
    local m3 = pose.load(dir2)
    local d = maxdiff(m:forward(ids), m3:forward(ids))
    T.check(d > 0 and d < 0.05, c.model_type .. " bf16 round trip close, got " .. d)
    os.execute("rm -rf " .. dir .. " " .. dir2)
  end
  -- tied embeddings: no lm_head tensor on disk
  local m = pose.init(cfg({tie_word_embeddings = true}), {seed = 3})
  local dir = T.tmpdir()
  m:save(dir)
  local f = assert(io.open(dir .. "/model.safetensors", "rb"))
  local head = f:read(4096)
  f:close()
  T.check(head:find("lm_head", 1, true) == nil, "tied lm_head is not saved")
  T.check(head:find("embed_tokens", 1, true) ~= nil)
  os.execute("rm -rf " .. dir)
end)

T.case("rope: override at load, set_rope, saved config", function()
  local m = pose.init(cfg(), {seed = 2})
  local dir = T.tmpdir()
  m:save(dir)
  local lin = pose.load(dir, {rope = {rope_type = "linear", factor = 4, max_position_embeddings = 1024}})
  T.eq(lin.config.rope.rope_type, "linear")
  T.eq(lin.config.max_position_embeddings, 1024)
  T.check(maxdiff(m:forward(ids, {positions = pose_pos}), lin:forward(ids, {positions = pose_pos})) > 1e-4)
  -- set_rope on the original gives the same model as the override at load
  m:set_rope({rope_type = "linear", factor = 4, max_position_embeddings = 1024})
  T.eq(m.config.rope.rope_type, "linear")
  T.eq(m.config.max_position_embeddings, 1024)
  T.eq(maxdiff(m:forward(ids, {positions = pose_pos}), lin:forward(ids, {positions = pose_pos})), 0)
  -- linear by 4 at positions 4p equals default at p
  local base = pose.load(dir)
  local p4 = {{}}
  for t = 1, 10 do p4[1][t] = 4 * pose_pos[1][t] end
  T.check(maxdiff(base:forward({ids[1]}, {positions = {pose_pos[1]}}), m:forward({ids[1]}, {positions = p4})) < 1e-4)
  -- saved in the v4 form and read back with the same scheme
  local dir2 = T.tmpdir()
  m:save(dir2)
  local back = pose.load(dir2)
  T.eq(back.config.rope.rope_type, "linear")
  T.eq(back.config.max_position_embeddings, 1024)
  T.eq(maxdiff(back:forward(ids, {positions = pose_pos}), m:forward(ids, {positions = pose_pos})), 0)
  local f = assert(io.open(dir2 .. "/config.json"))
  local txt = f:read("a")
  f:close()
  local j = pose.json_decode(txt)
  T.eq(j.rope_scaling.rope_type, "linear")
  T.eq(j.rope_scaling.type, "linear")
  T.check(j.rope == nil, "m.config's resolved rope table is not written to config.json")
  -- m.config feeds back: pose.init(m.config) rebuilds the same scheme (and, with the seed, the same weights)
  local again = pose.init(m.config, {seed = 2})
  T.eq(again.config.rope.rope_type, "linear")
  T.eq(maxdiff(again:forward(ids, {positions = pose_pos}), m:forward(ids, {positions = pose_pos})), 0)
  -- a bad override leaves the model as it was
  T.raises(function() m:set_rope({rope_type = "nope"}) end, "nope")
  T.eq(m.config.rope.rope_type, "linear")
  os.execute("rm -rf " .. dir .. " " .. dir2)
end)

T.case("generate with the KV cache matches full forwards", function()
  local m = pose.init(cfg({model_type = "mistral", sliding_window = 5}), {seed = 4})
  local prompt = {3, 14, 15, 9, 26, 5}
  local pos = {0, 1, 2, 40, 41, 42}
  local out = m:generate(prompt, {max_new_tokens = 6, positions = pos})
  T.eq(#out, 6)
  -- greedy by hand: argmax of the last row of a full forward, positions continuing from the last prompt position
  local seq, sp = {}, {}
  for i = 1, #prompt do seq[i], sp[i] = prompt[i], pos[i] end
  for k = 1, 6 do
    local lg = m:forward({seq}, {positions = {sp}}):totable()[1][#seq]
    local best = 1
    for v = 2, #lg do if lg[v] > lg[best] then best = v end end
    T.eq(out[k], best - 1, "token " .. k)
    seq[#seq + 1], sp[#sp + 1] = out[k], sp[#sp] + 1
  end
  -- a batch of two rows gives each row's own result
  local two = m:generate({prompt, {7, 7, 7, 1, 2, 3}}, {max_new_tokens = 3, positions = {pos, pos}})
  T.same(two[1], {out[1], out[2], out[3]})
  T.eq(#two[2], 3)
  -- sampling: reproducible by seed; a tiny top_p is greedy
  local s1 = m:generate(prompt, {max_new_tokens = 8, temperature = 1.5, seed = 11})
  local s2 = m:generate(prompt, {max_new_tokens = 8, temperature = 1.5, seed = 11})
  local s3 = m:generate(prompt, {max_new_tokens = 8, temperature = 1.5, seed = 12})
  T.same(s1, s2)
  T.check(not T.deep_equal(s1, s3), "another seed samples other tokens")
  T.same(m:generate(prompt, {max_new_tokens = 5, temperature = 1, top_p = 1e-9}), m:generate(prompt, {max_new_tokens = 5}))
  -- eos stops early (and is included)
  local e = m:generate(prompt, {max_new_tokens = 6, positions = pos, eos = out[2]})
  T.same(e, {out[1], out[2]})
  T.same(m:generate(prompt, {max_new_tokens = 0}), {})
end)

local function rss_kb(field)
  local f = io.open("/proc/self/status")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return tonumber(s:match(field .. ":%s*(%d+)"))
end

T.case("a long forward runs in bounded memory", function()
  local m = pose.init({model_type = "llama", vocab_size = 64, hidden_size = 32, num_hidden_layers = 1,
                       num_attention_heads = 2, intermediate_size = 64, max_position_embeddings = 16384}, {seed = 1})
  local n = 12288
  local row = {}
  for i = 1, n do row[i] = (i * 7) % 64 end
  local x = pose.tensor({row}, "i64")
  collectgarbage()
  -- reset the peak-RSS mark (Linux >= 4.0) so that VmHWM measures this call only
  local cr = io.open("/proc/self/clear_refs", "w")
  if cr then cr:write("5"); cr:close() end
  local before = rss_kb("VmRSS")
  local t0 = os.clock()
  local loss = m:loss(x)
  local peak = rss_kb("VmHWM")
  T.check(loss > 0 and loss < 10, "finite loss " .. loss)
  if before and peak then
    -- one T x T fp32 score matrix alone would be 576 MB
    local grew = (peak - before) / 1024
    T.check(grew < 200, string.format("peak RSS grew by %.0f MB", grew))
  end
  io.stderr:write(string.format("  %d-token loss in %.1f s CPU\n", n, os.clock() - t0))
end)

T.case("errors", function()
  local m = pose.init(cfg(), {seed = 1})
  T.raises(function() m:forward({{1, 2}, {3}}) end, "")
  T.raises(function() m:forward({1, 61}) end, "outside the vocabulary")
  T.raises(function() m:forward({1, -1}) end, "outside the vocabulary")
  T.raises(function() m:forward({1, 2}, {positions = {0, -1}}) end, "negative")
  T.raises(function() m:forward({1, 2}, {positions = {0, 1, 2}}) end, "positions shape")
  T.raises(function() m:forward({{1, 2}}, {positions = {0, 1}}) end, "positions shape")
  T.raises(function() m:forward({{{1, 2}}}) end, "1-D (one row) or 2-D")
  T.raises(function() m:forward({}) end, "empty")
  T.raises(function() m:forward({1.5, 2}) end, "")
  T.raises(function() m:forward(pose.tensor({1, 2})) end, "f32 tensor")
  T.raises(function() m:forward({1, 2}, {position = {0, 1}}) end, "unknown option 'position'")
  T.raises(function() m:forward({1, 2}, 5) end, "options must be a table")
  T.raises(function() m:nll({1, 2, 3}, {targets = {1, 2}}) end, "targets shape")
  T.raises(function() m:nll({1, 2, 3}, {targets = {1, 2, 99}}) end, "target 99")
  T.raises(function() m:loss({1, 2, 3}, {targets = {1, -100, -100}}) end, "no scored targets")
  T.raises(function() m:loss({1}) end, "no scored targets")
  T.raises(function() m:generate({1, 2}, {max_new_tokens = -1}) end, "max_new_tokens")
  T.raises(function() m:generate({1, 2}, {temperature = -1}) end, "temperature")
  T.raises(function() m:generate({1, 2}, {top_p = 0}) end, "top_p")
  T.raises(function() m:generate({1, 2}, {top_k = 3}) end, "unknown option 'top_k'")
  T.raises(function() m:save("/proc/no/such/dir") end, "")
  T.raises(function() m:save(T.tmpdir(), {dtype = "i32"}) end, "dtype")
  T.raises(function() m:set_rope(3) end, "must be a table")
  T.raises(function() m:param("nope") end, "no parameter named 'nope'")
  T.raises(function() pose.init({model_type = "bert", vocab_size = 3}) end, "model_type 'bert'")
  T.raises(function() pose.init(cfg({num_key_value_heads = 3})) end, "num_key_value_heads (3)")
  T.raises(function() pose.init(cfg({hidden_size = 30})) end, "does not divide hidden_size")
  T.raises(function() pose.init(cfg({vocab_size = "many"})) end, "vocab_size must be an integer")
  T.raises(function() pose.init("llama") end, "config must be a table")
  T.raises(function() pose.init(cfg(), {seed = 1.5}) end, "seed")
  T.raises(function() pose.init(cfg(), {sed = 1}) end, "unknown option 'sed'")
  T.raises(function() pose.init(cfg(), {device = "tpu"}) end, "unknown device")
  T.raises(function() pose.load("/nonexistent/model/dir") end, "/nonexistent/model/dir")
  local dir = T.tmpdir()
  m:save(dir)
  T.raises(function() pose.load(dir, {dtype = "bf16"}) end, "not supported on the cpu")
  T.raises(function() pose.load(dir, {dtype = "f64"}) end, "unknown dtype")
  T.raises(function() pose.load(dir, {rope = "linear"}) end, "rope must be a table")
  T.raises(function() pose.load(dir, {rope = {rope_type = "linear"}}) end, "factor")
  T.raises(function() pose.load(dir, {rop = {}}) end, "unknown option 'rop'")
  os.execute("rm -rf " .. dir)
end)

T.done("test_model")
