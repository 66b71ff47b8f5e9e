-- Run by the stock lua5.4 interpreter with package.cpath pointing at the build: `require "pose"` must work there.
local pose = require "pose"
assert(type(pose.version) == "string", "pose.version")
local t = pose.tensor({{1, 2}, {3, 4}})
assert(t:numel() == 4 and t:get(2, 1) == 3)
assert(pose.device() == "cpu" or pose.device() == "cuda")
print("stock lua5.4: require 'pose' ok, version " .. pose.version)
print("1 passed, 0 failed")
