-- Pure-Lua part of the pose API: receives the table built by the C bindings and extends it.


return function(p)
  p.args = require "pose.args"
  p.progress = require "pose.progress"
  p.progress.clock = p.now
  p.eval = require "pose.eval"
  require("pose.results").attach(p) -- p.experiment: the run conventions over p.results
end
