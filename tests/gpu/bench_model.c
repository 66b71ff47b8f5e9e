/* Whole-model benchmark on the GPU at the shapes of ../shared/baselines/torch_baseline.py and torch_longctx.py:
 * training steps (pose.trainer: forward, backward, AdamW with fp32 masters) and evaluation forwards (per-token NLL,
 * LM head in row chunks), with peak memory from the device pool's high-water mark (every model buffer comes from
 * it, as torch.cuda.max_memory_allocated counts its caching allocator's tensors). Times are CUDA-synchronised; a
 * training row reports the median of its timed steps after warm-up, an evaluation row the fastest of its timed
 * forwards after one warm-up (as the peer scripts do). FLOPs as the peer counts them: 6 N tokens plus causal
 * attention 6 L d T per token. Training rows up to 32k tokens also time forward+backward alone (fwd_bwd_s, the
 * faster of two) so that optim_s = step_s - fwd_bwd_s is the optimizer's share (zeroing, norm, AdamW).
 *   gpu_bench_model OUT.json [--quick] [--only NAME[,NAME...]] [--precision fp32-master|bf16] [--fused]
 *                   [--recompute layer|offload|selective]  (replaces the policy of the rows that recompute)
 * --precision bf16: the pure-bf16 training policy (bf16 weights and moments, fp32 gradients); the model is built
 * with fp32 masters and then switched, and the peak counter restarts after the switch (so it counts the policy's
 * steady state, not the load-time fp32 copy).
 * --fused: the trainer's fused update (fused_update = 1: AdamW per layer inside the backward on a second stream,
 * gradients in two layer slots). fwd_bwd_s is then the backward alone writing the slots (no update), so optim_s is
 * the part of the optimizer that the overlap did not hide. grad_gb: the gradient memory (arena or slots).
 * Each training row also prints one line "ROW fwd+bwd / optimizer / step / peak" to stderr.
 * Every row first prints the memory plan (pose_model_memory_plan: what the run will take, known before it runs) and
 * records it as plan_gb (device total) and plan_host_gb (pinned host memory of recompute="offload").
 * The full-length LLaMA-7B rows past 32k (64k, 128k, 256k: bf16 precision whatever --precision says, the recompute
 * policy that fits -- layer up to 128k, offload at 256k) run only when named with --only: one step takes minutes.
 * Writes one JSON object per row (an "error" field where the row failed, e.g. out of memory) and prints them. */
#include <cjson/cJSON.h>
#include <cuda_runtime_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model.h"
#include "model_gpu.h"
#include "rng.h"
#include "trainer.h"

#define TINY                                                                                                       \
  "{\"model_type\":\"llama\",\"vocab_size\":16384,\"hidden_size\":512,\"intermediate_size\":1408,"               \
  "\"num_hidden_layers\":8,\"num_attention_heads\":8,\"num_key_value_heads\":8,\"max_position_embeddings\":512," \
  "\"rms_norm_eps\":1e-6,\"rope_theta\":10000.0,\"initializer_range\":0.02,\"tie_word_embeddings\":false}"
#define TL11                                                                                                       \
  "{\"model_type\":\"llama\",\"vocab_size\":32000,\"hidden_size\":2048,\"intermediate_size\":5632,"              \
  "\"num_hidden_layers\":22,\"num_attention_heads\":32,\"num_key_value_heads\":4,"                               \
  "\"max_position_embeddings\":131072,\"rms_norm_eps\":1e-6,\"rope_theta\":10000.0,\"initializer_range\":0.02,"   \
  "\"tie_word_embeddings\":false}"
#define L7                                                                                                         \
  "{\"model_type\":\"llama\",\"vocab_size\":32000,\"hidden_size\":4096,\"intermediate_size\":11008,"             \
  "\"num_hidden_layers\":32,\"num_attention_heads\":32,\"num_key_value_heads\":32,"                              \
  "\"max_position_embeddings\":131072,\"rms_norm_eps\":1e-6,\"rope_theta\":10000.0,\"initializer_range\":0.02,"   \
  "\"tie_word_embeddings\":false}"

typedef struct {
  const char *name, *cfg;
  int64_t T, B;
  int recompute, eval; /* recompute: a pose_recompute (0 none, 1 layer, 2 offload) */
  int warm, timed;
  int quick;             /* part of --quick */
  const char *precision; /* NULL: --precision's */
  int named_only;        /* runs only when --only names it */
} row;

static const row ROWS[] = {
    {"tiny", TINY, 512, 64, 0, 0, 2, 4, 1, NULL, 0},
    {"tinyllama-1.1b", TL11, 2048, 8, 0, 0, 2, 4, 1, NULL, 0},
    {"llama-7b", L7, 2048, 1, 0, 0, 1, 3, 1, NULL, 0},
    {"llama-7b-ckpt", L7, 2048, 1, 1, 0, 1, 3, 0, NULL, 0},
    {"llama-7b-full-4k", L7, 4096, 1, 0, 0, 1, 3, 0, NULL, 0},
    {"llama-7b-full-8k", L7, 8192, 1, 0, 0, 1, 3, 0, NULL, 0}, /* no recompute, as the peer (fits under bf16) */
    {"llama-7b-full-16k", L7, 16384, 1, 1, 0, 1, 2, 0, NULL, 0},
    {"llama-7b-full-32k", L7, 32768, 1, 1, 0, 1, 2, 0, NULL, 0},
    {"llama-7b-full-64k", L7, 65536, 1, 1, 0, 1, 1, 0, "bf16", 1},
    {"llama-7b-full-128k", L7, 131072, 1, 1, 0, 1, 1, 0, "bf16", 1},
    {"llama-7b-full-128k-offload", L7, 131072, 1, 2, 0, 1, 1, 0, "bf16", 1},
    {"llama-7b-full-256k", L7, 262144, 1, 2, 0, 0, 1, 0, "bf16", 1}, /* ~8 min a step: no warm-up */
    {"eval-tinyllama-1.1b-32k", TL11, 32768, 1, 0, 1, 1, 2, 1, NULL, 0},
    {"eval-tinyllama-1.1b-128k", TL11, 131072, 1, 0, 1, 1, 2, 0, NULL, 0},
    {"eval-llama-7b-32k", L7, 32768, 1, 0, 1, 1, 2, 0, NULL, 0},
};

static pose_precision g_precision = POSE_PRECISION_FP32_MASTER;
static int g_fused = 0;
static int g_recompute = -1; /* --recompute POLICY: replaces "layer" in the rows that use it (not offload rows) */

static pose_recompute row_recompute(int rec) {
  return g_recompute >= 0 && rec == POSE_RECOMPUTE_LAYER ? (pose_recompute)g_recompute : (pose_recompute)rec;
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static cJSON *run_row(const row *r) {
  cJSON *o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "name", r->name);
  cJSON_AddStringToObject(o, "kind", r->eval ? "eval" : "train");
  cJSON_AddNumberToObject(o, "seq", (double)r->T);
  cJSON_AddNumberToObject(o, "batch", (double)r->B);
  cJSON_AddBoolToObject(o, "recompute", r->recompute != 0);
  cJSON_AddStringToObject(o, "recompute_policy", pose_recompute_name(row_recompute(r->recompute)));
  pose_device dev = {POSE_CUDA, 0};
  size_t used = 0, peak = 0;
  cudaDeviceSynchronize();
  pose_gpu_memory(0, 1, &used, &peak);
  cJSON *cfg = cJSON_Parse(r->cfg);
  pose_model *m = NULL;
  pose_trainer *tr = NULL;
  pose_status st = pose_model_init(cfg, 1234, dev, &m);
  cJSON_Delete(cfg);
  const int64_t N = r->B * r->T;
  int64_t *ids = malloc(sizeof(int64_t) * (size_t)N);
  pose_rng g;
  pose_rng_init(&g, 42, 0);
  const uint64_t V = m ? (uint64_t)pose_model_vocab(m) : 2;
  for (int64_t i = 0; i < N; i++) ids[i] = (int64_t)pose_rng_below(&g, V);
  double *t = calloc((size_t)(r->warm + r->timed), sizeof(double));
  float *nll = r->eval ? malloc(sizeof(float) * (size_t)N) : NULL;
  double loss = 0;
  pose_precision prec = g_precision;
  if (r->precision && pose_precision_parse(r->precision, &prec) != POSE_OK) st = POSE_EINVAL;
  cJSON_AddStringToObject(o, "precision", pose_precision_name(prec));
  cJSON_AddBoolToObject(o, "fused", g_fused && !r->eval);
  if (st == POSE_OK && prec != POSE_PRECISION_FP32_MASTER) {
    st = pose_model_set_precision(m, prec);
    cudaDeviceSynchronize();
    pose_gpu_memory(0, 1, &used, &peak);
  }
  if (st == POSE_OK) st = pose_model_set_recompute(m, row_recompute(r->recompute));
  if (st == POSE_OK) { /* the plan, before anything of the run is allocated */
    pose_memory_plan p;
    st = pose_model_memory_plan(m, r->B, r->T, !r->eval, row_recompute(r->recompute), &p);
    if (st == POSE_OK) {
      const double G = 1073741824.0;
      size_t fr = 0, tot = 0;
      cudaMemGetInfo(&fr, &tot);
      fprintf(stderr, "  %s plan (B=%lld T=%lld, %s, recompute %s): weights %.2f + grads %.2f + optimizer %.2f + "
              "activations %.2f + temporary %.2f = %.2f GiB of %.2f GiB on the device (MLP chunks of %lld rows); "
              "pinned host %.2f GiB\n", r->name, (long long)r->B, (long long)r->T, pose_precision_name(prec),
              pose_recompute_name(row_recompute(r->recompute)), p.weights / G, p.grads / G, p.optimizer / G,
              p.activations / G, p.temporary / G, p.total / G, tot / G, (long long)p.chunk_rows, p.host_pinned / G);
      cJSON_AddNumberToObject(o, "plan_gb", p.total / G);
      cJSON_AddNumberToObject(o, "plan_activations_gb", p.activations / G);
      cJSON_AddNumberToObject(o, "plan_host_gb", p.host_pinned / G);
      cJSON_AddNumberToObject(o, "mlp_chunk_rows", (double)p.chunk_rows);
      if (p.host_pinned) { /* pin the host copies before the timed steps (seconds for tens of GB) */
        double t0 = now();
        st = pose_gpu_model_reserve_offload(m, r->B, r->T);
        cJSON_AddNumberToObject(o, "pin_s", now() - t0);
      }
    }
  }
  if (st == POSE_OK && !r->eval) {
    pose_trainer_opts opts;
    pose_trainer_defaults(&opts);
    opts.lr = 1e-5;
    opts.weight_decay = 0.01; /* torch.optim.AdamW's default, as the peer uses it */
    opts.fused_update = g_fused;
    st = pose_trainer_new(m, &opts, &tr);
  }
  for (int k = 0; st == POSE_OK && k < r->warm + r->timed; k++) {
    cudaDeviceSynchronize();
    double t0 = now();
    if (r->eval) st = pose_model_nll(m, ids, NULL, NULL, r->B, r->T, nll);
    else st = pose_trainer_step(tr, ids, NULL, NULL, r->B, r->T, &loss, NULL, NULL);
    cudaDeviceSynchronize();
    t[k] = now() - t0;
    fprintf(stderr, "  %s %d: %.4f s%s\n", r->name, k, t[k], k < r->warm ? " (warm-up)" : "");
  }
  if (st == POSE_OK) {
    double s;
    qsort(t + r->warm, (size_t)r->timed, sizeof(double), cmp_d);
    if (r->eval) s = t[r->warm];
    else s = r->timed % 2 ? t[r->warm + r->timed / 2] : 0.5 * (t[r->warm + r->timed / 2 - 1] + t[r->warm + r->timed / 2]);
    pose_gpu_memory(0, 0, &used, &peak);
    if (!r->eval && r->T * r->B <= 32768) { /* split: forward+backward alone (the rest of a step is the optimizer) */
      double fb[2];
      for (int k = 0; k < 2 && st == POSE_OK; k++) {
        pose_model_zero_grad(m);
        cudaDeviceSynchronize();
        double t0 = now();
        st = pose_model_backward(m, ids, NULL, NULL, r->B, r->T, 1.0, NULL, NULL);
        cudaDeviceSynchronize();
        fb[k] = now() - t0;
      }
      if (st == POSE_OK) {
        double f = fb[0] < fb[1] ? fb[0] : fb[1];
        cJSON_AddNumberToObject(o, "fwd_bwd_s", f);
        cJSON_AddNumberToObject(o, "optim_s", s - f);
        fprintf(stderr, "%s (%s%s): fwd+bwd %.4f s / optimizer %.4f s / step %.4f s (%.0f tok/s) / peak %.2f GiB / "
                "gradients %.2f GiB\n", r->name, pose_precision_name(prec), g_fused ? ", fused update" : "", f,
                s - f, s, (double)N / s, peak / 1073741824.0, pose_gpu_model_grad_bytes(m) / 1073741824.0);
      }
      st = POSE_OK;
    }
    double n = (double)pose_model_numel(m), tok = (double)N;
    const cJSON *c = pose_model_config(m);
    double Lc = cJSON_GetObjectItem(c, "num_hidden_layers")->valuedouble, d = cJSON_GetObjectItem(c, "hidden_size")->valuedouble;
    double flops = 6 * n * tok + 6 * Lc * d * (double)r->T * tok;
    if (r->eval) flops /= 3; /* a forward: a third of a training step's count */
    cJSON_AddNumberToObject(o, "params", n);
    cJSON_AddNumberToObject(o, "step_s", s);
    cJSON_AddNumberToObject(o, "tok_s", tok / s);
    cJSON_AddNumberToObject(o, "tflops", flops / s / 1e12);
    cJSON_AddNumberToObject(o, "peak_gb", peak / 1073741824.0);
    cJSON_AddNumberToObject(o, "grad_gb", pose_gpu_model_grad_bytes(m) / 1073741824.0);
    if (!r->eval) cJSON_AddNumberToObject(o, "last_loss", loss);
    else {
      double sum = 0;
      for (int64_t i = 0; i < N - 1; i++) sum += nll[i];
      cJSON_AddNumberToObject(o, "loss", sum / (double)(N - 1));
    }
  } else {
    cJSON_AddStringToObject(o, "error", pose_error_message());
    cJSON_AddBoolToObject(o, "oom", st == POSE_ENOMEM);
    pose_gpu_memory(0, 0, &used, &peak);
    cJSON_AddNumberToObject(o, "peak_gb_at_failure", peak / 1073741824.0);
  }
  pose_trainer_free(tr);
  pose_model_free(m);
  free(ids);
  free(nll);
  free(t);
  return o;
}

int main(int argc, char **argv) {
  const char *outp = NULL, *only = NULL;
  int quick = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--quick")) quick = 1;
    else if (!strcmp(argv[i], "--fused")) g_fused = 1;
    else if (!strcmp(argv[i], "--recompute") && i + 1 < argc) {
      pose_recompute rp;
      if (pose_recompute_parse(argv[++i], &rp) != POSE_OK) {
        fprintf(stderr, "bench_model: %s\n", pose_error_message());
        return 2;
      }
      g_recompute = (int)rp;
    }
    else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
    else if (!strcmp(argv[i], "--precision") && i + 1 < argc) {
      if (pose_precision_parse(argv[++i], &g_precision) != POSE_OK) {
        fprintf(stderr, "bench_model: %s\n", pose_error_message());
        return 2;
      }
    }
    else outp = argv[i];
  }
  if (!pose_cuda_backend(NULL)) {
    fprintf(stderr, "bench_model: no usable GPU\n");
    return 77;
  }
  cudaSetDevice(0);
  struct cudaDeviceProp p;
  cudaGetDeviceProperties(&p, 0);
  cJSON *root = cJSON_CreateObject(), *rows = cJSON_AddArrayToObject(root, "rows");
  cJSON_AddStringToObject(root, "device", p.name);
  for (size_t i = 0; i < sizeof ROWS / sizeof ROWS[0]; i++) {
    const row *r = &ROWS[i];
    if (quick && !r->quick) continue;
    if (r->named_only && !only) continue;
    if (only) {
      char key[96];
      snprintf(key, sizeof key, ",%s,", r->name);
      char list[1024];
      snprintf(list, sizeof list, ",%s,", only);
      if (!strstr(list, key)) continue;
    }
    double t0 = now();
    cJSON *o = run_row(r);
    cJSON_AddNumberToObject(o, "wall_s", now() - t0);
    char *s = cJSON_PrintUnformatted(o);
    printf("%s\n", s);
    fflush(stdout);
    free(s);
    cJSON_AddItemToArray(rows, o);
    if (outp) { /* rewritten after every row, so a killed run keeps what it measured */
      FILE *f = fopen(outp, "w");
      char *all = cJSON_Print(root);
      if (f) {
        fputs(all, f);
        fclose(f);
      }
      free(all);
    }
  }
  cJSON_Delete(root);
  return 0;
}
