-- pose.rope: the Lua API of RoPE schemes (frequencies, attention factor, cos/sin, the dynamic state machine, keys
-- in and out) and every error path. The numerics are covered in depth by tests/c/test_rope.c.
local pose = require "pose"
local T = require "pose.test"

local function bits(x) return string.unpack("<I4", string.pack("<f", x)) end
local function f32(x) return string.unpack("<f", string.pack("<f", x)) end

T.case("default frequencies are the spec's", function()
  local r = pose.rope{dim = 128}
  T.eq(r:type(), "default")
  T.eq(r:dim(), 128)
  T.eq(r:base(), 10000)
  T.eq(r:attention_factor(), 1)
  local inv = r:inv_freq()
  T.same(inv:shape(), {64})
  T.eq(inv:dtype(), "f32")
  T.eq(bits(inv:get(2)), 0x3f5dafd7, "inv[1]")
  T.eq(bits(inv:get(64)), 0x38f22ce2, "inv[63]")
  T.eq(inv:get(21), f32(0.0562341288), "inv[20]")
end)

T.case("aliases and head_dim with partial_rotary_factor", function()
  local a = pose.rope{rope_type = "linear", factor = 4, rope_theta = 500000, dim = 64}
  local b = pose.rope{type = "linear", factor = 4.0, base = 500000, head_dim = 128, partial_rotary_factor = 0.5}
  T.same(a:inv_freq():totable(), b:inv_freq():totable())
  T.eq(b:dim(), 64)
  T.eq(a:inv_freq():get(1), 0.25)
end)

T.case("yarn: attention factor, keys, variants", function()
  local r = pose.rope{rope_type = "yarn", factor = 4, dim = 128, original_max_position_embeddings = 4096}
  T.near(r:attention_factor(), 1.13862944, 1e-8)
  T.eq(r:inv_freq():get(22), f32(0.0472920388), "inv[21] in the ramp")
  local cfg = r:config()
  T.eq(cfg.rope_type, "yarn")
  T.eq(cfg.factor, 4)
  T.eq(cfg.original_max_position_embeddings, 4096)
  T.eq(cfg.beta_fast, 32)
  T.eq(cfg.beta_slow, 1)
  T.eq(cfg.dim, 128)
  local rev = pose.rope{rope_type = "yarn", factor = 4, dim = 128, original_max_position_embeddings = 4096,
                        pose_variant = "revised", truncate = false, attn_factor = 2}
  T.eq(rev:config().pose_variant, "revised")
  T.eq(rev:config().truncate, false)
  T.near(rev:attention_factor(), 2 * r:attention_factor(), 1e-15)
  T.check(rev:inv_freq():get(30) ~= r:inv_freq():get(30), "revised blend differs inside the ramp")
  T.check(tostring(r):find("pose.rope(yarn, dim=128", 1, true) ~= nil, tostring(r))
  T.check(tostring(r):find("factor=4", 1, true) ~= nil)
end)

T.case("config() feeds pose.rope back to the same scheme", function()
  local specs = {
    {dim = 96, rope_theta = 123456.5},
    {rope_type = "dynamic", factor = 3, dim = 80, max_position_embeddings = 1000},
    {rope_type = "vanilla_ntk", factor = 16, head_dim = 128},
    {rope_type = "llama3", factor = 8, low_freq_factor = 1, high_freq_factor = 4, original_max_position_embeddings = 8192,
     rope_theta = 500000, dim = 64},
    {rope_type = "longrope", dim = 4, max_position_embeddings = 8192, original_max_position_embeddings = 2048,
     short_factor = {1, 1.5}, long_factor = {3.25, 7}},
    {rope_type = "proportional", head_dim = 64, partial_rotary_factor = 0.5, factor = 2},
  }
  for _, s in ipairs(specs) do
    local a = pose.rope(s)
    local b = pose.rope(a:config())
    T.eq(b:type(), a:type())
    T.same(b:inv_freq():totable(), a:inv_freq():totable(), a:type())
    T.eq(b:attention_factor(), a:attention_factor())
  end
end)

T.case("cos_sin: shapes follow the positions", function()
  local r = pose.rope{dim = 8}
  local c, s = r:cos_sin({0, 1, 2})
  T.same(c:shape(), {3, 4})
  T.same(s:shape(), {3, 4})
  T.same(c:totable()[1], {1, 1, 1, 1}, "position 0: cos 1")
  T.same(s:totable()[1], {0, 0, 0, 0}, "position 0: sin 0")
  T.eq(c:get(2, 1), f32(math.cos(1)))
  T.eq(s:get(3, 1), f32(math.sin(2)))
  c, s = r:cos_sin({{0, 5}, {7, 100000}})
  T.same(c:shape(), {2, 2, 4})
  local phi = f32(r:inv_freq():get(2) * 100000) -- one float32 product
  T.eq(c:get(2, 2, 2), f32(math.cos(phi)))
  T.eq(s:get(2, 2, 2), f32(math.sin(phi)))
  c = r:cos_sin(pose.tensor({{3, 4, 5}}, "i32"))
  T.same(c:shape(), {1, 3, 4})
  c, s = r:cos_sin(pose.tensor({9, 10}, "i64"))
  T.same(c:shape(), {2, 4})
  c, s = r:cos_sin(42)
  T.same(c:shape(), {4})
  T.eq(c:get(1), f32(math.cos(42)))
  c = r:cos_sin({})
  T.same(c:shape(), {0, 4})
end)

T.case("cos_sin applies the attention factor", function()
  local r = pose.rope{rope_type = "yarn", factor = 16, dim = 64, original_max_position_embeddings = 2048}
  local A = f32(r:attention_factor())
  local c, s = r:cos_sin({0, 3})
  T.eq(c:get(1, 1), A, "cos(0) = A")
  T.eq(s:get(1, 1), 0)
  local phi = f32(r:inv_freq():get(5) * 3)
  T.eq(c:get(2, 5), f32(f32(math.cos(phi)) * A))
end)

T.case("dynamic: grow, keep, reset (5.17)", function()
  local function fresh(L)
    local f = pose.rope{rope_type = "dynamic", factor = 4, dim = 32, max_position_embeddings = 64}
    f:update(L - 1)
    return f:inv_freq():totable()
  end
  local default = pose.rope{dim = 32}:inv_freq():totable()
  local r = pose.rope{rope_type = "dynamic", factor = 4, dim = 32, max_position_embeddings = 64}
  T.same(r:inv_freq():totable(), default, "init = default")
  local want = {[100] = fresh(100), [80] = fresh(100), [120] = fresh(120), [70] = fresh(120), [10] = default,
                [90] = fresh(90)}
  for _, L in ipairs{100, 80, 120, 70, 10, 90} do
    r:update(L - 1)
    T.same(r:inv_freq():totable(), want[L], "after L = " .. L)
  end
  T.check(r:base() > 10000)
  -- positions instead of max_pos: the batch-wide maximum decides (120 here)
  r:update({{0, 5, 119}, {3, 4, 7}})
  T.same(r:inv_freq():totable(), fresh(120), "batch max")
  r:update(pose.tensor({9}, "i32"))
  T.same(r:inv_freq():totable(), default, "reset from a tensor of positions")
  -- static types ignore update
  local s = pose.rope{rope_type = "linear", factor = 2, dim = 32}
  local before = s:inv_freq():totable()
  s:update(1e6 // 1)
  T.same(s:inv_freq():totable(), before)
end)

T.case("longrope switches at original_max_position_embeddings", function()
  local r = pose.rope{rope_type = "longrope", dim = 4, factor = 4, original_max_position_embeddings = 1024,
                      short_factor = {1, 2}, long_factor = {5, 6}}
  T.near(r:attention_factor(), 1.0954451, 1e-7)
  local short = r:inv_freq():totable()
  T.eq(short[1], 1)
  r:update(1023)
  T.same(r:inv_freq():totable(), short, "L = L_orig: short")
  r:update(1024)
  T.eq(r:inv_freq():get(1), f32(1 / 5), "L = L_orig + 1: long")
  r:update(5)
  T.same(r:inv_freq():totable(), short)
end)

T.case("errors name the field", function()
  T.raises(function() pose.rope() end, "expected a table")
  T.raises(function() pose.rope("yarn") end, "expected a table")
  T.raises(function() pose.rope{dim = 64, factr = 2} end, "unknown key 'factr'")
  T.raises(function() pose.rope{rope_type = "warp", dim = 64} end, "unknown rope_type 'warp'")
  T.raises(function() pose.rope{rope_type = "linear", dim = 64} end, "linear needs factor")
  T.raises(function() pose.rope{rope_type = "linear", factor = 0, dim = 64} end, "factor must be > 0")
  T.raises(function() pose.rope{rope_type = "linear", factor = "2", dim = 64} end, "factor must be a number, got a string")
  T.raises(function() pose.rope{rope_type = "linear", factor = {2}, dim = 64} end, "factor must be a number, got an array")
  T.raises(function() pose.rope{} end, "dim (or head_dim) is required")
  T.raises(function() pose.rope{dim = 7} end, "dim must be even")
  T.raises(function() pose.rope{dim = 64, [3] = 1} end, "keys must be strings")
  T.raises(function() pose.rope{dim = 64, rope_theta = print} end, "cannot encode a function")
  T.raises(function() pose.rope{rope_type = "dynamic", factor = 2, dim = 64} end, "dynamic needs max_position_embeddings")
  T.raises(function() pose.rope{rope_type = "yarn", factor = 2, dim = 64} end, "original_max_position_embeddings")
  T.raises(function() pose.rope{rope_type = "yarn", factor = 2, dim = 64, original_max_position_embeddings = 4096,
                                truncate = "yes"} end, "truncate must be a boolean")
  T.raises(function() pose.rope{rope_type = "linear", factor = 2, dim = 64, pose_variant = "revised"} end,
           "pose_variant applies to yarn only")
  T.raises(function() pose.rope{rope_type = "longrope", dim = 8, factor = 2, original_max_position_embeddings = 64,
                                short_factor = {1, 1}, long_factor = {1, 1, 1, 1}} end, "short_factor has 2 entries, expected 4")
  T.raises(function() pose.rope{rope_type = "longrope", dim = 8, factor = 2, original_max_position_embeddings = 64,
                                short_factor = {}, long_factor = {1, 1, 1, 1}} end, "short_factor must be a list")
  T.raises(function() pose.rope{rope_type = "linear", type = "yarn", factor = 2, dim = 8} end, "disagree")
  local r = pose.rope{dim = 8}
  T.raises(function() r:cos_sin({1.5}) end, "not an integer")
  T.raises(function() r:cos_sin(pose.tensor({1, 2})) end, "f32 tensor")
  T.raises(function() r:cos_sin("x") end, "positions must be")
  T.raises(function() r:cos_sin(2.5) end, "not an integer")
  T.raises(function() r:cos_sin({{{{1}}}}) end, "at most 3")
  T.raises(function() r:update("x") end, "max_pos must be an integer")
  T.raises(function() r:update(1.5) end, "max_pos must be an integer")
  T.raises(function() r:update({1.5}) end, "not an integer")
  T.raises(function() r.inv_freq({}) end, "pose.rope expected")
end)

T.done("test_rope.lua")
