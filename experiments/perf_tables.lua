-- Builds results/perf.h5 (/tables/train_step, /tables/eval_forward) and results/PERF.md from the JSON files of one
-- GPU call that ran pose's model benchmark and the PyTorch peer side by side (tests/gpu/run_model.sh --bench full
-- --torch). Nothing here is measured: every number is read from those files, so the tables can be rebuilt anywhere.
-- PERF.md = the generated tables followed by experiments/perf_reading.md (the written analysis).
--   pose run experiments/perf_tables.lua [--raw results/perf_raw] [--out results]
local pose = require "pose"
local opts = pose.args.merge(..., {
  raw = "results/perf_raw",      -- pose_bench.json, torch_baseline.json, torch_longctx.json, gpu.txt of one call
  out = "results",               -- where perf.h5 and PERF.md go
  reading = "experiments/perf_reading.md",
}, "perf_tables")

local function read(path)
  local f = assert(io.open(path), "cannot open " .. path)
  local s = f:read("a")
  f:close()
  return s
end

local pose_rows = {}
for _, r in ipairs(pose.json_decode(read(opts.raw .. "/pose_bench.json")).rows) do pose_rows[r.name] = r end
-- rows too long for the main call (64k-256k) come from their own calls: pose_bench_long*.json, same format
for _, name in ipairs({ "pose_bench_long.json", "pose_bench_rerun.json" }) do
  local fh = io.open(opts.raw .. "/" .. name)
  if fh then
    for _, r in ipairs(pose.json_decode(fh:read("a")).rows) do
      r.source = name
      pose_rows[r.name] = r
    end
    fh:close()
  end
end
local tb = pose.json_decode(read(opts.raw .. "/torch_baseline.json"))
-- a rerun call (pose_bench_rerun.json with torch_baseline_rerun.json, both sides again in one call) replaces rows
do
  local fh = io.open(opts.raw .. "/torch_baseline_rerun.json")
  if fh then
    for k, v in pairs(pose.json_decode(fh:read("a"))) do tb[k] = v end
    fh:close()
  end
end
local tl = pose.json_decode(read(opts.raw .. "/torch_longctx.json"))
local gpu = read(opts.raw .. "/gpu.txt")
-- commit.txt, when present, names the benchmarked tree (the device copy's own `git rev-parse` can be stale: see
-- results/perf_raw/README.md); otherwise the first line of gpu.txt
local cf = io.open(opts.raw .. "/commit.txt")
local commit = cf and cf:read("l") or gpu:match("^(%x+)") or "unknown"
if cf then cf:close() end
local device = gpu:match("\n(NVIDIA[^,]*),") or tb.device or "unknown"
local versions = gpu:match("(torch [^\n]*)") or ("torch " .. tostring(tb.torch))
local nan = 0 / 0

-- FLOPs as the peer counts them (torch_baseline.py): 6 N tokens + 6 L d T tokens
local L7 = { n = 6738415616, L = 32, d = 4096 }
local function peer_tflops(t, s, cfg)
  if not t or t.oom or not t.step_s then return nan end
  if t.tflops then return t.tflops end
  local tok = (s or t.T) * (t.batch or 1)
  return (6 * cfg.n * tok + 6 * cfg.L * cfg.d * (s or t.T) * tok) / t.step_s / 1e12
end

-- row label, pose row, peer entry, peer config for FLOPs
local train = {
  { "tiny", "tiny", tb.tiny_s512 },
  { "tinyllama-1.1b", "tinyllama-1.1b", tb.tinyllama1b_s2048_b8 },
  { "llama-7b", "llama-7b", tb.llama7b_pose_s2048_b1 },
  { "llama-7b-ckpt", "llama-7b-ckpt", tl.llama7b_pose_2048_ckpt, L7 },
  { "llama-7b-full-4k", "llama-7b-full-4k", tb.llama7b_full_s4096_b1 },
  { "llama-7b-full-8k", "llama-7b-full-8k", tb.llama7b_full_s8192_b1 },
  { "llama-7b-full-16k", "llama-7b-full-16k", tl.llama7b_full_16384_ckpt, L7 },
  { "llama-7b-full-32k", "llama-7b-full-32k", tl.llama7b_full_32768_ckpt, L7 },
  { "llama-7b-full-64k", "llama-7b-full-64k", tl.llama7b_full_65536_ckpt, L7, "quoted" },
  { "llama-7b-full-128k", "llama-7b-full-128k", tl.llama7b_full_131072_ckpt, L7, "quoted" },
  { "llama-7b-full-256k", "llama-7b-full-256k", nil },
}
local train_cols = { "pose_tok_s", "torch_tok_s", "ratio", "pose_peak_gb", "torch_peak_gb", "pose_tflops",
                     "torch_tflops", "seq", "batch", "pose_recompute", "torch_ckpt", "pose_optim_ms" }
local eval = {
  { "tinyllama-1.1b-32k", "eval-tinyllama-1.1b-32k", tl.eval_tinyllama1b_32768 },
  { "tinyllama-1.1b-128k", "eval-tinyllama-1.1b-128k", tl.eval_tinyllama1b_131072 },
  { "llama-7b-32k", "eval-llama-7b-32k", tl.eval_llama7b_32768 },
}
local eval_cols = { "pose_tok_s", "torch_tok_s", "ratio", "pose_peak_gb", "torch_peak_gb", "pose_tflops", "seq" }

local function num(x) return type(x) == "number" and x or nan end

-- The peer's 64k and 128k full-length rows take minutes each, so torch_longctx.py runs cut to 16k/32k in the
-- benchmark call; where a row is missing, the table uses the numbers the issue quotes for the same script on one
-- H200 (gradient checkpointing), and says so in the row's note. Nothing else is quoted.
local QUOTED = {
  ["llama-7b-full-64k"] = { T = 65536, ckpt = true, tok_s = 4120, peak_gb = 79.2, quoted = true },
  ["llama-7b-full-128k"] = { T = 131072, ckpt = true, tok_s = 2570, peak_gb = 120.7, quoted = true },
}
local function ok(t) return t and not t.oom and not t.error and t.tok_s end

local function fmt(x, f)
  if x ~= x then return "-" end
  return string.format(f or "%.3g", x)
end

local train_m, eval_m, md_train, md_eval = {}, {}, {}, {}
for _, e in ipairs(train) do
  local label, p, t = e[1], pose_rows[e[2]], e[3]
  if not t and e[5] == "quoted" then t = QUOTED[label] end
  local pt, tt = ok(p) and p.tok_s or nan, ok(t) and t.tok_s or nan
  local seq = p and p.seq or (t and (t.seq or t.T)) or nan
  local row = { pt, tt, pt / tt, ok(p) and p.peak_gb or nan, ok(t) and t.peak_gb or nan, ok(p) and p.tflops or nan,
                peer_tflops(t, t and (t.seq or t.T), e[4] or L7), num(seq), p and p.batch or (t and t.batch) or 1,
                p and (p.recompute and 1 or 0) or nan, t and (t.ckpt and 1 or 0) or nan,
                p and p.optim_s and p.optim_s * 1e3 or nan }
  train_m[#train_m + 1] = row
  local note = ""
  if p and p.error then note = "pose: " .. (p.oom and "out of memory" or p.error) end
  if t and t.quoted then note = "torch: quoted from the issue (same script, earlier run), not measured in this call" end
  if p and p.source == "pose_bench_rerun.json" then note = "both sides from the rerun call (perf_raw/rerun_args.txt)" end
  if p and p.source == "pose_bench_long.json" then
    note = note .. (note ~= "" and "; " or "") .. "pose: from the long-row call (perf_raw/bench_args_long.txt)"
  end
  if t and t.oom then note = note .. (note ~= "" and "; " or "") .. "torch: out of memory" end
  if not p then note = note .. (note ~= "" and "; " or "") .. "pose: not run in this call" end
  if not t then
    note = note .. (note ~= "" and "; " or "") .. (label == "llama-7b-full-256k" and "torch: not in the peer scripts"
           or "torch: cut from torch_longctx.py in this call")
  end
  md_train[#md_train + 1] = string.format("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |", label,
    fmt(row[1], "%.0f"), fmt(row[2], "%.0f"), fmt(row[3], "%.2f"), fmt(row[4], "%.1f"), fmt(row[5], "%.1f"),
    fmt(row[6], "%.0f"), fmt(row[7], "%.0f"),
    (p and p.recompute_policy or "-") .. " / " ..
      (row[11] == 1 and "ckpt" or row[11] == 0 and "none" or "-"), note)
end
for _, e in ipairs(eval) do
  local label, p, t = e[1], pose_rows[e[2]], e[3]
  local pt, tt = ok(p) and p.tok_s or nan, ok(t) and t.tok_s or nan
  local row = { pt, tt, pt / tt, ok(p) and p.peak_gb or nan, ok(t) and t.peak_gb or nan, ok(p) and p.tflops or nan,
                p and p.seq or (t and t.T) or nan }
  eval_m[#eval_m + 1] = row
  md_eval[#md_eval + 1] = string.format("| %s | %s | %s | %s | %s | %s | %s |", label, fmt(row[1], "%.0f"),
    fmt(row[2], "%.0f"), fmt(row[3], "%.2f"), fmt(row[4], "%.1f"), fmt(row[5], "%.1f"), fmt(row[6], "%.0f"))
end

local labels = function(list) local l = {} for i, e in ipairs(list) do l[i] = e[1] end return l end
local bench_args = read(opts.raw .. "/bench_args.txt"):gsub("%s+$", "")
local command = "tests/gpu/run_model.sh " .. bench_args .. " (commit " .. commit .. "), then pose run " ..
                "experiments/perf_tables.lua"
local p0 = pose_rows["llama-7b"] or {}
local pose_policy = string.format("bf16 compute; precision %s%s; long rows: recompute as listed per row",
  tostring(p0.precision or "?"), p0.fused and ", fused AdamW in the backward (gradients in two layer slots)" or "")
local f = pose.results(opts.out .. "/perf.h5", { experiment = "perf", device = device, command = command, mode = "w" })
f:table("train_step", train_m, labels(train), train_cols)
f:table("eval_forward", eval_m, labels(eval), eval_cols)
for _, t in ipairs({ "/tables/train_step", "/tables/eval_forward" }) do
  f:set_attr(t, "bench_commit", commit)
  f:set_attr(t, "bench_device", device)
  f:set_attr(t, "peer", versions .. ", sdpa, bf16 weights, fused AdamW (bf16 moments)")
  f:set_attr(t, "pose_policy", pose_policy)
end
f:set_attr("/tables/train_step", "units", "tokens/s; GiB (pose: device pool high-water mark, torch: max_memory_allocated); TFLOP/s as torch_baseline.py counts (6 N tok + 6 L d T tok); recompute 1 = full per-layer; optim_ms = step - forward+backward")
f:set_attr("/tables/eval_forward", "units", "tokens/s of a forward with the loss over every token; GiB; TFLOP/s = a third of the training count")
f:close()

local md = {}
local function w(s) md[#md + 1] = s end
w("# GPU performance: pose against the PyTorch peer, side by side")
w("")
w("Generated by `experiments/perf_tables.lua` from the JSON files in `results/perf_raw/` (do not edit the numbers by")
w("hand). Both sides ran in ONE call on the GPU machine:")
w("")
w("    bash .deps/with-deps.sh bash tests/gpu/run_model.sh " .. bench_args)
w("")
w(string.format("- commit %s, device %s, %s", commit, device, versions))
w("- pose: `tests/gpu/bench_model.c` (pose.trainer steps: forward, backward, AdamW; " .. pose_policy .. ";")
w("  training rows are the median of the timed steps after warm-up, evaluation rows the fastest timed forward after")
w("  one warm-up; the rows past 32k ran in separate calls, listed in results/perf_raw/README.md); peak = the device")
w("  pool's high-water mark")
w("- peer: `../shared/baselines/torch_baseline.py` and `torch_longctx.py` (transformers LlamaForCausalLM, sdpa, bf16")
w("  weights, fused AdamW with bf16 moments); torch_longctx.py with its training lengths cut to 16k and 32k")
w("")
w("## Training step (/tables/train_step)")
w("")
w("| row | pose tok/s | torch tok/s | ratio | pose GiB | torch GiB | pose TFLOP/s | torch TFLOP/s | recompute pose / torch | notes |")
w("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for _, l in ipairs(md_train) do w(l) end
w("")
w("## Evaluation forward (/tables/eval_forward)")
w("")
w("| row | pose tok/s | torch tok/s | ratio | pose GiB | torch GiB | pose TFLOP/s |")
w("| --- | --- | --- | --- | --- | --- | --- |")
for _, l in ipairs(md_eval) do w(l) end
w("")
local split = {}
for _, e in ipairs(train) do
  local p = pose_rows[e[2]]
  if p and p.fwd_bwd_s then
    split[#split + 1] = string.format("%s %.0f + %.0f ms", e[1], p.fwd_bwd_s * 1e3, p.optim_s * 1e3)
  end
end
w("Forward+backward + optimizer (zeroing, norm, AdamW) per pose step: " .. table.concat(split, "; ") .. ".")
w("")
local rf = io.open(opts.reading)
if rf then
  w(rf:read("a"))
  rf:close()
end
local out = assert(io.open(opts.out .. "/PERF.md", "w"))
out:write(table.concat(md, "\n"), "\n")
out:close()
print("wrote " .. opts.out .. "/perf.h5 and " .. opts.out .. "/PERF.md")
