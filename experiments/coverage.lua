-- Coverage of relative distances (the paper's coverage argument, sections 3.2-3.3 and its coverage appendix; spec
-- pose.md section 1.3): training at Lc, which relative distances 1..Lt-1 (and absolute positions 0..Lt-1) does each
-- sampler ever show the model? For Lc = 2048 and each target Lt, K examples are drawn from every sampler and the
-- per-distance histogram (distance_hist[d] = examples in which some pair of tokens is d positions apart) is reduced
-- to a few numbers. Pure sampler work: no model, seconds on a CPU.
--
--   build/pose run experiments/coverage.lua [--train_len 2048] [--targets 4096,16384,131072] [--draws 1000]
--                                           [--chunks 1,2,4,8,16] [--seed 1] [--out results] [--quick] [--redo]
--
-- Tables (rows = methods, cols = targets), all in results/coverage.h5:
--   /tables/coverage            fraction of distances 1..Lt-1 seen at least once in K draws (the headline);
--   /tables/coverage_positions  fraction of absolute positions 0..Lt-1 seen at least once;
--   /tables/coverage_mean_rate  mean over d of distance_hist[d]/K (how often an example shows a given distance);
--   /tables/coverage_min_rate   min over d in 1..Lt-1 of distance_hist[d]/K (the least-trained distance);
--   /tables/coverage_far_rate   mean of distance_hist[d]/K over the far half d in [Lt/2, Lt-1].
-- Each run also keeps its histograms reduced to `bins` equal-width bins (coverage/distance_rate, coverage/position_rate,
-- with attribute `edges`), enough to redraw the paper's coverage plots.
--
-- What to expect (measured at the defaults, results/coverage.md): full-length covers everything at rate 1 (at Lt
-- times the cost); PI-only and PoSE with N = 1 (u_0 = 0, the same positions) never leave 1..Lc-1, so they cover
-- (Lc-1)/(Lt-1): 0.50 / 0.12 / 0.016; PoSE with N = 2 covers 99.9% of the distances in 1,000 draws at every target
-- (the misses sit next to Lt-1, which only examples whose skip reaches the end realise), N >= 4 all but a handful,
-- and more chunks raise the per-distance rate at long distances (more cross-chunk spans per example) while the mean
-- rate still falls roughly as 1/s; RandPos covers every distance at a rate near 1, yet shows the model no run of
-- consecutive positions longer than a few tokens at large Lt, which is why it trains worse (paper Table 1), a point
-- coverage alone does not capture. Runs take seconds (about 20 s at the defaults on 2 cores).
local pose = require "pose"
local opts = pose.args.merge(..., {
  out = "results",
  name = "coverage",                -- experiment and table name (results/<name>.h5)
  train_len = 2048,                 -- Lc
  targets = "4096,16384,131072",    -- Lt values, comma-separated
  chunks = "1,2,4,8,16",            -- PoSE chunk counts N
  draws = 1000,                     -- K examples per sampler
  bins = 64,                        -- histogram bins stored per run
  seed = 1,
  quick = false,                    -- a tiny run (tests)
  redo = false,
}, "coverage")

local function int_list(s, what)
  local out = {}
  for w in tostring(s):gmatch("[^,%s]+") do
    local v = math.tointeger(tonumber(w))
    if not v or v < 1 then error(string.format("coverage: --%s must be positive integers separated by commas, got '%s'",
                                               what, tostring(s)), 0) end
    out[#out + 1] = v
  end
  if #out == 0 then error("coverage: --" .. what .. " is empty", 0) end
  return out
end

if opts.quick then opts.train_len, opts.targets, opts.draws, opts.chunks, opts.bins = 64, "128,512", 50, "1,2,4", 8 end
local Lc = opts.train_len
local targets, chunk_counts = int_list(opts.targets, "targets"), int_list(opts.chunks, "chunks")
for _, Lt in ipairs(targets) do
  if Lt < Lc then error(string.format("coverage: target %d is shorter than train_len %d", Lt, Lc), 0) end
end
local K = opts.draws
local t_start = pose.now()
local function log(fmt, ...) io.stderr:write(string.format("[coverage %6.1fs] " .. fmt .. "\n", pose.now() - t_start, ...)) end

local methods = {}
for _, n in ipairs(chunk_counts) do
  if n <= Lc then methods[#methods + 1] = {label = "pose-n" .. n, method = "pose", chunks = n} end
end
methods[#methods + 1] = {label = "randpos", method = "randpos"}
methods[#methods + 1] = {label = "pi", method = "pi"}
methods[#methods + 1] = {label = "full", method = "full"}

-- equal-width bins over [lo, hi] of hist[i]/K (hist is 1-based: hist[i] is index i-1)
local function binned(hist, lo, hi, nb)
  local rates, edges = {}, {}
  local width = (hi - lo + 1) / nb
  for b = 1, nb do
    local a = lo + math.floor((b - 1) * width)
    local z = (b == nb) and hi or (lo + math.floor(b * width) - 1)
    local sum = 0
    for i = a, z do sum = sum + hist[i + 1] end
    rates[b] = z >= a and sum / ((z - a + 1) * K) or 0
    edges[b] = a
  end
  edges[nb + 1] = hi + 1
  return rates, edges
end

local exp = pose.experiment(opts.name, {dir = opts.out, device = "cpu"})
local stats = {"fraction", "position_fraction", "mean_rate", "min_rate", "far_rate"}
local tables = {}
for _, st in ipairs(stats) do tables[st] = {} end

for r, m in ipairs(methods) do
  for _, st in ipairs(stats) do tables[st][r] = {} end
  for c, Lt in ipairs(targets) do
    local run_name = string.format("%s-lt%d", m.label, Lt)
    local cfg = {method = m.method, chunks = m.chunks, train_len = Lc, target_len = Lt, draws = K, seed = opts.seed}
    local run = exp:run(run_name, cfg, {redo = opts.redo})
    if run then
      local t0 = pose.now()
      local s = pose.sampler{method = m.method, train_len = Lc, target_len = Lt, chunks = m.chunks or 2,
                             seed = opts.seed}
      local doc_len = math.max(s:min_doc_len(), Lt)
      local cov = s:coverage(doc_len, K)
      local dh, ph = cov.distance_hist:totable(), cov.position_hist:totable()
      local sum, mn, far, nfar, pos_cov = 0, math.huge, 0, 0, 0
      for d = 1, Lt - 1 do
        local v = dh[d + 1]
        sum = sum + v
        if v < mn then mn = v end
        if d >= Lt // 2 then far = far + v; nfar = nfar + 1 end
      end
      for p = 1, Lt do if ph[p] > 0 then pos_cov = pos_cov + 1 end end
      run:scalar("fraction", cov.fraction)
      run:scalar("covered", cov.covered)
      run:scalar("position_fraction", pos_cov / Lt)
      run:scalar("mean_rate", Lt > 1 and sum / ((Lt - 1) * K) or 1)
      run:scalar("min_rate", Lt > 1 and mn / K or 1)
      run:scalar("far_rate", nfar > 0 and far / (nfar * K) or 1)
      run:scalar("draws", cov.draws)
      run:scalar("seconds", pose.now() - t0)
      local nb = math.min(opts.bins, Lt - 1)
      if nb >= 1 then
        local rates, edges = binned(dh, 1, Lt - 1, nb)
        run:write("coverage/distance_rate", rates, "f64")
        run:set_attr("coverage/distance_rate", "edges", edges)
      end
      local prates, pedges = binned(ph, 0, Lt - 1, math.min(opts.bins, Lt))
      run:write("coverage/position_rate", prates, "f64")
      run:set_attr("coverage/position_rate", "edges", pedges)
      run:finish()
      log("%-10s Lt=%-7d fraction %.4f  mean rate %.4f  (%.1f s)", m.label, Lt, cov.fraction,
          Lt > 1 and sum / ((Lt - 1) * K) or 1, pose.now() - t0)
    end
    for _, st in ipairs(stats) do tables[st][r][c] = exp.file:attr("/runs/" .. run_name, st) end
  end
end

local rows, cols = {}, {}
for r, m in ipairs(methods) do rows[r] = m.label end
for c, Lt in ipairs(targets) do cols[c] = "Lt=" .. Lt end
exp:table(opts.name, tables.fraction, rows, cols)
exp:table(opts.name .. "_positions", tables.position_fraction, rows, cols)
exp:table(opts.name .. "_mean_rate", tables.mean_rate, rows, cols)
exp:table(opts.name .. "_min_rate", tables.min_rate, rows, cols)
exp:table(opts.name .. "_far_rate", tables.far_rate, rows, cols)
exp:close()

local function show(title, t)
  print("\n" .. title)
  io.write(string.format("%-10s", "method"))
  for _, c in ipairs(cols) do io.write(string.format("%14s", c)) end
  io.write("\n")
  for r, name in ipairs(rows) do
    io.write(string.format("%-10s", name))
    for c = 1, #cols do io.write(string.format("%14.5f", t[r][c])) end
    io.write("\n")
  end
end
print(string.format("Coverage of relative distances, Lc = %d, K = %d draws per sampler (seed %d)", Lc, K, opts.seed))
show("fraction of distances 1..Lt-1 covered (/tables/" .. opts.name .. ")", tables.fraction)
show("fraction of positions 0..Lt-1 covered", tables.position_fraction)
show("mean per-distance rate: mean_d hist[d]/K", tables.mean_rate)
show("min per-distance rate: min_d hist[d]/K", tables.min_rate)
show("far-half rate: mean over d >= Lt/2 of hist[d]/K", tables.far_rate)
print(string.format("\nwritten: %s/%s.h5 (%.1f s)", opts.out, opts.name, pose.now() - t_start))
