-- CPU training throughput (issue 3's benchmark): a ~5M-parameter LLaMA, forward + backward + AdamW at T = 256, in
-- tokens/s, with the FLOP rate it reaches as a fraction of this machine's OpenBLAS sgemm rate measured in the same
-- run. Writes results/bench_cpu.h5 (/tables/cpu_train) and prints a summary.
--
--   OMP_NUM_THREADS=2 build/pose run experiments/bench_cpu.lua [--steps 8] [--batch 4] [--seq 256]
local pose = require "pose"
local o = pose.args.merge(..., {steps = 8, warmup = 2, batch = 4, seq = 256, hidden = 256, layers = 4, heads = 4,
                               ffn = 688, vocab = 4096, out = "results"}, "bench_cpu")
local cfg = {model_type = "llama", vocab_size = o.vocab, hidden_size = o.hidden, num_hidden_layers = o.layers,
             num_attention_heads = o.heads, num_key_value_heads = o.heads, intermediate_size = o.ffn,
             max_position_embeddings = o.seq, tie_word_embeddings = false}
local m = pose.init(cfg, {seed = 1, device = "cpu"})
local n = m:num_params()
local tr = pose.trainer(m, {lr = 1e-4})
local ids = pose.rand({o.batch, o.seq}, {seed = 2, lo = 0, hi = o.vocab, dtype = "i64"})
local times = {}
for i = 1, o.warmup + o.steps do
  local t0 = pose.now()
  tr:step{ids = ids}
  if i > o.warmup then times[#times + 1] = pose.now() - t0 end
end
table.sort(times)
local step_s = times[(#times + 1) // 2]
local tokens = o.batch * o.seq
-- 6 flops per parameter per token for forward + backward over the parameters that multiply (all but the input
-- embedding, a lookup; the untied LM head counts), plus causal attention's scores and values: 12*L*d*T per token
-- for full attention, half of it under the causal mask
local flops_per_token = 6 * (n - o.vocab * o.hidden) + 6 * o.layers * o.hidden * o.seq
local model_gflops = flops_per_token * tokens / step_s / 1e9
-- the sgemm ceiling at the shapes this model multiplies most (tokens x hidden x ffn), and a large square one
local g_model = pose.sgemm_gflops(tokens, o.ffn, o.hidden, 10)
local g_square = pose.sgemm_gflops(1024, 1024, 1024, 5)
local threads = pose.info().threads
local tok_s = tokens / step_s
print(string.format("bench_cpu: %.2fM-parameter LLaMA, batch %d x %d tokens, %d threads", n / 1e6, o.batch, o.seq, threads))
print(string.format("  train step %.3f s (median of %d) = %.0f tokens/s = %.1f GFLOP/s", step_s, #times, tok_s, model_gflops))
print(string.format("  sgemm %dx%dx%d: %.1f GFLOP/s; 1024^3: %.1f GFLOP/s -> model reaches %.0f%% / %.0f%%", tokens,
                    o.ffn, o.hidden, g_model, g_square, 100 * model_gflops / g_model, 100 * model_gflops / g_square))
local exp = pose.experiment("bench_cpu", {dir = o.out, device = "cpu"})
local run = exp:run(string.format("llama-%.1fM-T%d", n / 1e6, o.seq), {config = cfg, batch = o.batch, seq = o.seq,
                                   steps = o.steps, threads = threads}, {redo = true})
run:scalar("perf/step_s", step_s)
run:scalar("perf/tokens_per_s", tok_s)
run:scalar("perf/model_gflops", model_gflops)
run:scalar("perf/sgemm_gflops_model_shape", g_model)
run:scalar("perf/sgemm_gflops_1024", g_square)
run:finish()
exp:table("cpu_train", {{n / 1e6, tok_s, model_gflops, g_model, model_gflops / g_model}},
          {string.format("llama-T%d-B%d-threads%d", o.seq, o.batch, threads)},
          {"params_m", "tokens_per_s", "model_gflops", "sgemm_gflops", "fraction_of_sgemm"})
exp:close()
