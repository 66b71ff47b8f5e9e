/* GPT-J, GPT-NeoX (parallel and sequential residual) and Baichuan on the GPU (cuda/model_gpu_families.cu) against the
 * CPU reference (core/model_fwd.c): logits, per-token NLL, loss and every parameter's gradient at PoSE-style skipped
 * positions (head dims 64/128 through the flash kernels, 32 through the reference kernels; LayerNorm with bias,
 * interleaved and half-split partial rotary, GELU MLPs with biases, NeoX's fused per-head q|k|v, W_pack, NormHead,
 * the LM-head bias, tied embeddings, a padding row), recompute="layer" bit-identical, repeated backward
 * bit-identical, micro-batch accumulation, a short AdamW trajectory tracking the CPU trainer, KV-cache decoding
 * against the CPU decode and greedy generation, the pure-bf16 policy, and the transformers golden fixtures of these
 * families. Both models get the same weights rounded to bf16 first, so that the differences measured are the GPU's
 * bf16 activations alone. Every comparison prints its measured error. */
#include <cjson/cJSON.h>
#include <stdlib.h>

#include "generate.h"
#include "gputest.h"
#include "model.h"
#include "trainer.h"

static pose_device GPU = {POSE_CUDA, 0};

static double rel_errf(const float *a, const float *ref, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; i++) {
    if (!isfinite(a[i])) return INFINITY;
    double d = (double)a[i] - ref[i];
    num += d * d;
    den += (double)ref[i] * ref[i];
  }
  return den > 0 ? sqrt(num / den) : sqrt(num);
}

#define CHECK_RELF(a, ref, n, tol, ...)                                                                       \
  do {                                                                                                        \
    double e__ = rel_errf((a), (ref), (n));                                                                   \
    char lab__[256];                                                                                          \
    snprintf(lab__, sizeof lab__, __VA_ARGS__);                                                               \
    printf("  %-60s rel err %.3e (tol %.0e)%s\n", lab__, e__, (double)(tol), e__ <= (tol) ? "" : "  FAIL");   \
    if (e__ <= (tol)) t_pass++;                                                                               \
    else { t_fail++; fprintf(stderr, "%s:%d: %s: rel err %.3e > %.1e\n", __FILE__, __LINE__, lab__, e__, (double)(tol)); } \
  } while (0)

/* ---- the models ------------------------------------------------------------------------------------------------- */

static const char *GPTJ64 =
    "{\"model_type\":\"gptj\",\"vocab_size\":320,\"n_embd\":256,\"n_inner\":512,\"n_layer\":2,\"n_head\":4,"
    "\"rotary_dim\":32,\"n_positions\":4096,\"layer_norm_epsilon\":1e-5,\"activation_function\":\"gelu_new\","
    "\"initializer_range\":0.05,\"tie_word_embeddings\":false}";
static const char *GPTJ32 = /* full interleaved rotary, head dim 32: reference attention */
    "{\"model_type\":\"gptj\",\"vocab_size\":200,\"n_embd\":128,\"n_layer\":2,\"n_head\":4,\"rotary_dim\":32,"
    "\"n_positions\":4096,\"initializer_range\":0.05,\"tie_word_embeddings\":false}";
static const char *NEOX_PAR64 =
    "{\"model_type\":\"gpt_neox\",\"vocab_size\":288,\"hidden_size\":256,\"intermediate_size\":512,"
    "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"rotary_pct\":0.25,\"rotary_emb_base\":10000,"
    "\"max_position_embeddings\":4096,\"layer_norm_eps\":1e-5,\"hidden_act\":\"gelu\",\"attention_bias\":true,"
    "\"use_parallel_residual\":true,\"initializer_range\":0.05,\"tie_word_embeddings\":false}";
static const char *NEOX_SEQ128 = /* sequential residual, no attention biases, tied, tanh GELU */
    "{\"model_type\":\"gpt_neox\",\"vocab_size\":256,\"hidden_size\":256,\"intermediate_size\":384,"
    "\"num_hidden_layers\":2,\"num_attention_heads\":2,\"rotary_pct\":0.5,\"max_position_embeddings\":4096,"
    "\"hidden_act\":\"gelu_new\",\"attention_bias\":false,\"use_parallel_residual\":false,"
    "\"initializer_range\":0.05,\"tie_word_embeddings\":true}";
static const char *BAICHUAN64 = /* W_pack, NormHead, padding row */
    "{\"model_type\":\"baichuan\",\"vocab_size\":300,\"hidden_size\":256,\"intermediate_size\":512,"
    "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"max_position_embeddings\":4096,\"rms_norm_eps\":1e-6,"
    "\"pad_token_id\":0,\"initializer_range\":0.05,\"tie_word_embeddings\":false}";
static const char *BAICHUAN32 = /* head dim 32 (reference attention), tied NormHead */
    "{\"model_type\":\"baichuan\",\"vocab_size\":160,\"hidden_size\":128,\"intermediate_size\":256,"
    "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"max_position_embeddings\":4096,"
    "\"initializer_range\":0.05,\"tie_word_embeddings\":true}";

/* ---- helpers ---------------------------------------------------------------------------------------------------- */

static cJSON *parse(const char *text) {
  cJSON *j = cJSON_Parse(text);
  if (!j) {
    fprintf(stderr, "bad JSON in the test\n");
    exit(1);
  }
  return j;
}

static void new_pair(const char *cfg_text, uint64_t seed, pose_model **mc, pose_model **mg) {
  cJSON *cfg = parse(cfg_text);
  *mc = *mg = NULL;
  CHECK_OK(pose_model_init(cfg, seed, POSE_DEVICE_CPU, mc));
  CHECK_OK(pose_model_init(cfg, seed, GPU, mg));
  cJSON_Delete(cfg);
}

/* Copies a's weights, rounded to bf16, into a and b. The 1-d tensors (biases, norm weights and biases), which the
 * initialisation sets to 0 or 1, get random values first so that their paths are exercised too. */
static void share_bf16_weights(pose_model *a, pose_model *b) {
  pose_rng r;
  pose_rng_init(&r, 1234, 5);
  for (size_t i = 0; i < pose_model_num_params(a); i++) {
    const pose_param *p = pose_model_param_info(a, i);
    float *w = malloc(sizeof(float) * (size_t)p->numel);
    CHECK_OK(pose_model_param_get(a, i, w));
    if (p->ndim == 1)
      for (int64_t k = 0; k < p->numel; k++) w[k] += 0.1f * pose_rng_normal(&r);
    for (int64_t k = 0; k < p->numel; k++) w[k] = pose_bf16_to_f32(pose_f32_to_bf16(w[k]));
    CHECK_OK(pose_model_param_set(a, i, w));
    CHECK_OK(pose_model_param_set(b, i, w));
    free(w);
  }
}

/* all weights (which = 0) or gradients (1) concatenated (host) */
static float *all_of(pose_model *m, int which) {
  int64_t n = pose_model_numel(m), off = 0;
  float *g = malloc(sizeof(float) * (size_t)n);
  for (size_t i = 0; i < pose_model_num_params(m); i++) {
    CHECK_OK(which ? pose_model_grad_get(m, i, g + off) : pose_model_param_get(m, i, g + off));
    off += pose_model_param_info(m, i)->numel;
  }
  return g;
}

/* PoSE-style positions: the first half of each row at 0.., the second half jumped ahead by a per-row skip */
static int64_t *pose_positions(int64_t B, int64_t T) {
  int64_t *pos = malloc(sizeof(int64_t) * (size_t)(B * T));
  for (int64_t b = 0; b < B; b++)
    for (int64_t t = 0; t < T; t++) pos[b * T + t] = t < T / 2 ? t : t + 700 + 1300 * b;
  return pos;
}

static int64_t *random_ids(int64_t n, int64_t V, uint64_t seed) {
  int64_t *ids = malloc(sizeof(int64_t) * (size_t)n);
  pose_rng r;
  pose_rng_init(&r, seed, 1);
  for (int64_t i = 0; i < n; i++) ids[i] = (int64_t)pose_rng_below(&r, (uint64_t)V);
  return ids;
}

/* ---- GPU vs CPU: forward, backward, recompute ---------------------------------------------------------------------- */

static void compare_model(const char *label, const char *cfg_text, int64_t B, int64_t T) {
  printf("%s (B=%lld, T=%lld)\n", label, (long long)B, (long long)T);
  pose_model *mc, *mg;
  new_pair(cfg_text, 11, &mc, &mg);
  if (!mc || !mg) return;
  { /* the device initialisation draws the CPU's Philox streams (LayerNorm biases zero, weights one) */
    int64_t n = pose_model_numel(mc), diff = 0;
    float *wc = all_of(mc, 0), *wg = all_of(mg, 0);
    for (int64_t i = 0; i < n; i++) diff += wc[i] != wg[i];
    printf("  init: %lld of %lld weights differ from the CPU's\n", (long long)diff, (long long)n);
    CHECK(diff <= n / 10000);
    CHECK_RELF(wg, wc, (size_t)n, 1e-7, "init weights");
    free(wc);
    free(wg);
  }
  share_bf16_weights(mc, mg);
  const int64_t V = pose_model_vocab(mc), N = B * T;
  int64_t *ids = random_ids(N, V, 5 + (uint64_t)T), *pos = pose_positions(B, T);
  ids[1] = 0; /* the padding row, where a model has one */

  float *lc = malloc(sizeof(float) * (size_t)(N * V)), *lg = malloc(sizeof(float) * (size_t)(N * V));
  CHECK_OK(pose_model_forward(mc, ids, pos, B, T, lc));
  CHECK_OK(pose_model_forward(mg, ids, pos, B, T, lg));
  CHECK_RELF(lg, lc, (size_t)(N * V), 1e-2, "logits");
  free(lc);
  free(lg);

  float *nc = malloc(sizeof(float) * (size_t)(B * (T - 1))), *ng = malloc(sizeof(float) * (size_t)(B * (T - 1)));
  CHECK_OK(pose_model_nll(mc, ids, pos, NULL, B, T, nc));
  CHECK_OK(pose_model_nll(mg, ids, pos, NULL, B, T, ng));
  CHECK_RELF(ng, nc, (size_t)(B * (T - 1)), 1e-2, "per-token nll");
  free(nc);
  free(ng);

  int64_t *tgt = malloc(sizeof(int64_t) * (size_t)N);
  for (int64_t i = 0; i < N; i++) tgt[i] = i % 7 == 3 ? POSE_IGNORE_INDEX : ids[i];
  double loss_c = 0, loss_g = 0;
  int64_t cnt_c = 0, cnt_g = 0;
  pose_model_zero_grad(mc);
  pose_model_zero_grad(mg);
  CHECK_OK(pose_model_backward(mc, ids, pos, tgt, B, T, 1.0, &loss_c, &cnt_c));
  CHECK_OK(pose_model_backward(mg, ids, pos, tgt, B, T, 1.0, &loss_g, &cnt_g));
  CHECK(cnt_c == cnt_g);
  printf("  loss: cpu %.6f gpu %.6f (|diff| %.2e)\n", loss_c, loss_g, fabs(loss_c - loss_g));
  CHECK_NEAR(loss_g, loss_c, 1e-2);
  float *gc = all_of(mc, 1), *gg = all_of(mg, 1);
  double worst = 0;
  const char *worst_name = "";
  for (size_t i = 0, off = 0; i < pose_model_num_params(mc); off += (size_t)pose_model_param_info(mc, i)->numel, i++) {
    const pose_param *p = pose_model_param_info(mc, i);
    double e = rel_errf(gg + off, gc + off, (size_t)p->numel);
    if (e > worst) { worst = e; worst_name = p->name; }
    if (!(e <= 5e-2)) {
      t_fail++;
      fprintf(stderr, "%s: gradient of %s: rel err %.3e > 5e-2\n", label, p->name, e);
    } else {
      t_pass++;
    }
  }
  printf("  worst parameter gradient: %s rel err %.3e (tol 5e-2)\n", worst_name, worst);
  CHECK_RELF(gg, gc, (size_t)pose_model_numel(mc), 2e-2, "all gradients");

  /* the same backward again: bit-identical (deterministic kernels) */
  pose_model_zero_grad(mg);
  double loss_2 = 0;
  CHECK_OK(pose_model_backward(mg, ids, pos, tgt, B, T, 1.0, &loss_2, NULL));
  float *g2 = all_of(mg, 1);
  CHECK(loss_2 == loss_g);
  CHECK(memcmp(g2, gg, sizeof(float) * (size_t)pose_model_numel(mg)) == 0);
  /* per-layer recomputation: the same gradients, bit for bit */
  CHECK_OK(pose_model_set_recompute(mg, POSE_RECOMPUTE_LAYER));
  pose_model_zero_grad(mg);
  double loss_r = 0;
  CHECK_OK(pose_model_backward(mg, ids, pos, tgt, B, T, 1.0, &loss_r, NULL));
  float *gr = all_of(mg, 1);
  CHECK(loss_r == loss_g);
  CHECK_RELF(gr, gg, (size_t)pose_model_numel(mg), 0.0, "recompute=layer vs none");
  /* a second backward without zeroing adds (the trainer's micro-batch accumulation) */
  CHECK_OK(pose_model_backward(mg, ids, pos, tgt, B, T, 0.5, NULL, NULL));
  float *ga = all_of(mg, 1);
  for (int64_t i = 0; i < pose_model_numel(mg); i++) gr[i] *= 1.5f;
  CHECK_RELF(ga, gr, (size_t)pose_model_numel(mg), 1e-2, "accumulated backward (1 + 0.5)");
  CHECK_OK(pose_model_set_recompute(mg, POSE_RECOMPUTE_NONE));
  free(g2);
  free(gr);
  free(ga);
  free(gc);
  free(gg);
  free(tgt);
  free(ids);
  free(pos);
  pose_model_free(mc);
  pose_model_free(mg);
}

/* ---- training: the GPU trainer tracks the CPU trainer ----------------------------------------------------------- */

static void test_trajectory(const char *label, const char *cfg_text) {
  printf("10-step AdamW trajectory, GPU vs CPU: %s\n", label);
  pose_model *mc, *mg;
  new_pair(cfg_text, 3, &mc, &mg);
  if (!mc || !mg) return;
  share_bf16_weights(mc, mg);
  const int64_t B = 2, T = 64, N = B * T, S = 10;
  int64_t *ids = random_ids(N, pose_model_vocab(mc), 99), *pos = pose_positions(B, T);
  pose_trainer_opts o;
  pose_trainer_defaults(&o);
  o.lr = 3e-3;
  o.weight_decay = 0.01;
  o.clip = 1.0;
  o.warmup = 2;
  o.steps = S;
  o.schedule = POSE_SCHED_COSINE;
  pose_trainer *tc = NULL, *tg = NULL;
  CHECK_OK(pose_trainer_new(mc, &o, &tc));
  CHECK_OK(pose_trainer_new(mg, &o, &tg));
  if (tc && tg) {
    double worst = 0, worst_norm = 0, first = 0, last_c = 0, last_g = 0;
    for (int64_t k = 0; k < S; k++) {
      double lc = 0, lg = 0, nc = 0, ng = 0;
      CHECK_OK(pose_trainer_step(tc, ids, pos, NULL, B, T, &lc, NULL, &nc));
      CHECK_OK(pose_trainer_step(tg, ids, pos, NULL, B, T, &lg, NULL, &ng));
      double e = fabs(lg - lc) / lc, en = fabs(ng - nc) / nc;
      if (e > worst) worst = e;
      if (en > worst_norm) worst_norm = en;
      if (k == 0) first = lc;
      last_c = lc;
      last_g = lg;
      printf("  step %2lld  loss cpu %.5f gpu %.5f (rel %.2e)  grad norm cpu %.4f gpu %.4f\n", (long long)k + 1, lc,
             lg, e, nc, ng);
    }
    printf("  worst relative loss difference %.3e (tol 3e-2), grad norm %.3e (tol 1e-1)\n", worst, worst_norm);
    CHECK(worst <= 3e-2);
    CHECK(worst_norm <= 1e-1);
    CHECK(last_c < 0.9 * first && last_g < 0.9 * first); /* it trained */
  }
  pose_trainer_free(tc);
  pose_trainer_free(tg);
  pose_model_free(mc);
  pose_model_free(mg);
  free(ids);
  free(pos);
}

/* ---- KV-cache decoding ------------------------------------------------------------------------------------------- */

static void test_decode(const char *label, const char *cfg_text, int bf16_policy) {
  printf("decode: %s%s\n", label, bf16_policy ? ", pure-bf16 policy" : "");
  pose_model *mc, *mg;
  new_pair(cfg_text, 21, &mc, &mg);
  if (!mc || !mg) return;
  share_bf16_weights(mc, mg);
  if (bf16_policy) CHECK_OK(pose_model_set_precision(mg, POSE_PRECISION_BF16));
  const int64_t B = 2, P = 40, S = 6, L = P + S, V = pose_model_vocab(mc);
  int64_t *ids = malloc(sizeof(int64_t) * (size_t)(B * L)), *pos = malloc(sizeof(int64_t) * (size_t)(B * L));
  pose_rng r;
  pose_rng_init(&r, 77, 0);
  for (int64_t b = 0; b < B; b++)
    for (int64_t t = 0; t < L; t++) {
      ids[b * L + t] = (int64_t)pose_rng_below(&r, (uint64_t)V);
      pos[b * L + t] = t < P / 2 ? t : t + 500 * (b + 1); /* a PoSE skip inside the prompt */
    }
  pose_kv_cache *kc = NULL, *kg = NULL;
  CHECK_OK(pose_kv_cache_new(mc, B, L, &kc));
  CHECK_OK(pose_kv_cache_new(mg, B, L, &kg));
  float *lc = malloc(sizeof(float) * (size_t)(B * V)), *lg = malloc(sizeof(float) * (size_t)(B * V));
  int64_t *sid = malloc(sizeof(int64_t) * (size_t)(B * L)), *spos = malloc(sizeof(int64_t) * (size_t)(B * L));
  double worst = 0;
  for (int64_t step = 0, t0 = 0; kc && kg && t0 < L; step++) { /* prefill P tokens, then S steps of one token */
    int64_t T = step == 0 ? P : 1;
    for (int64_t b = 0; b < B; b++)
      for (int64_t t = 0; t < T; t++) {
        sid[b * T + t] = ids[b * L + t0 + t];
        spos[b * T + t] = pos[b * L + t0 + t];
      }
    CHECK_OK(pose_model_decode(mc, kc, sid, spos, B, T, lc));
    CHECK_OK(pose_model_decode(mg, kg, sid, spos, B, T, lg));
    double e = rel_errf(lg, lc, (size_t)(B * V));
    if (e > worst) worst = e;
    t0 += T;
    CHECK(pose_kv_cache_len(kg) == t0);
  }
  printf("  decode logits (prefill %lld + %lld steps), GPU vs CPU: worst rel %.3e (tol 3e-2)\n", (long long)P,
         (long long)S, worst);
  CHECK(worst <= 3e-2);
  /* the last step's logits against the GPU's full forward of the whole sequence at its last position */
  float *full = malloc(sizeof(float) * (size_t)(B * L * V)), *last = malloc(sizeof(float) * (size_t)(B * V));
  CHECK_OK(pose_model_forward(mg, ids, pos, B, L, full));
  for (int64_t b = 0; b < B; b++) memcpy(last + b * V, full + (b * L + L - 1) * V, sizeof(float) * (size_t)V);
  double ef = rel_errf(lg, last, (size_t)(B * V));
  printf("  last decode step vs the GPU's full forward: rel %.3e (tol 2e-2)\n", ef);
  CHECK(ef <= 2e-2);
  /* greedy generation: the first tokens as the CPU's (later ones may flip at near-ties under bf16) */
  pose_generate_opts go;
  pose_generate_defaults(&go);
  go.max_new_tokens = 8;
  int64_t oc[16], og[16], nc[2], ng[2];
  CHECK_OK(pose_model_generate(mc, ids, pos, B, P, &go, oc, nc));
  CHECK_OK(pose_model_generate(mg, ids, pos, B, P, &go, og, ng));
  int same = 0;
  for (int i = 0; i < 16; i++) same += oc[i] == og[i];
  printf("  greedy generation, 2 x 8 tokens: %d of 16 equal to the CPU's\n", same);
  CHECK(ng[0] == 8 && ng[1] == 8);
  CHECK(og[0] == oc[0] && og[8] == oc[8]);
  free(full);
  free(last);
  free(lc);
  free(lg);
  free(sid);
  free(spos);
  free(ids);
  free(pos);
  pose_kv_cache_free(kc);
  pose_kv_cache_free(kg);
  pose_model_free(mc);
  pose_model_free(mg);
}

/* ---- the pure-bf16 policy: loss, gradients, training steps ------------------------------------------------------ */

static void test_bf16_policy(const char *label, const char *cfg_text) {
  printf("pure-bf16 policy: %s\n", label);
  pose_model *mc, *mg;
  new_pair(cfg_text, 31, &mc, &mg);
  if (!mc || !mg) return;
  share_bf16_weights(mc, mg);
  CHECK_OK(pose_model_set_precision(mg, POSE_PRECISION_BF16));
  const int64_t B = 2, T = 48, N = B * T, V = pose_model_vocab(mc);
  int64_t *ids = random_ids(N, V, 41), *pos = pose_positions(B, T);
  float *lc = malloc(sizeof(float) * (size_t)(N * V)), *lg = malloc(sizeof(float) * (size_t)(N * V));
  CHECK_OK(pose_model_forward(mc, ids, pos, B, T, lc));
  CHECK_OK(pose_model_forward(mg, ids, pos, B, T, lg));
  CHECK_RELF(lg, lc, (size_t)(N * V), 1e-2, "logits (fp32 logits from bf16 weights)");
  double loss_c = 0, loss_g = 0;
  pose_model_zero_grad(mc);
  pose_model_zero_grad(mg);
  CHECK_OK(pose_model_backward(mc, ids, pos, NULL, B, T, 1.0, &loss_c, NULL));
  CHECK_OK(pose_model_backward(mg, ids, pos, NULL, B, T, 1.0, &loss_g, NULL));
  printf("  loss: cpu %.6f gpu %.6f\n", loss_c, loss_g);
  CHECK_NEAR(loss_g, loss_c, 1e-2);
  float *gc = all_of(mc, 1), *gg = all_of(mg, 1);
  CHECK_RELF(gg, gc, (size_t)pose_model_numel(mc), 2e-2, "all gradients");
  free(gc);
  free(gg);
  pose_trainer_opts o;
  pose_trainer_defaults(&o);
  o.lr = 3e-3;
  o.sr_seed = 9;
  pose_trainer *tr = NULL;
  CHECK_OK(pose_trainer_new(mg, &o, &tr));
  double l1 = 0, l3 = 0;
  for (int k = 0; tr && k < 3; k++) CHECK_OK(pose_trainer_step(tr, ids, pos, NULL, B, T, k == 0 ? &l1 : &l3, NULL, NULL));
  printf("  3 bf16 AdamW steps: loss %.5f -> %.5f\n", l1, l3);
  CHECK(l3 < l1);
  pose_trainer_free(tr);
  free(lc);
  free(lg);
  free(ids);
  free(pos);
  pose_model_free(mc);
  pose_model_free(mg);
}

/* ---- the transformers golden fixtures of these families, on the GPU ------------------------------------------------ */

static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *s = malloc((size_t)n + 1);
  if (fread(s, 1, (size_t)n, f) != (size_t)n) n = 0;
  s[n] = 0;
  fclose(f);
  return s;
}

static int64_t *ints_2d(const cJSON *a, int64_t *B, int64_t *T) {
  *B = cJSON_GetArraySize(a);
  *T = cJSON_GetArraySize(cJSON_GetArrayItem(a, 0));
  int64_t *x = malloc(sizeof(int64_t) * (size_t)(*B * *T));
  for (int64_t b = 0; b < *B; b++)
    for (int64_t t = 0; t < *T; t++)
      x[b * *T + t] = (int64_t)cJSON_GetArrayItem(cJSON_GetArrayItem(a, (int)b), (int)t)->valuedouble;
  return x;
}

static int test_golden(const char *name) {
  char path[256];
  snprintf(path, sizeof path, "tests/fixtures/models/%s/golden.json", name);
  char *txt = slurp(path);
  if (!txt) {
    printf("golden %s: fixture absent, skipped\n", name);
    return 0;
  }
  printf("golden %s on the GPU (transformers fp32 reference)\n", name);
  cJSON *g = parse(txt);
  free(txt);
  int64_t B, T, B2, T2;
  int64_t *ids = ints_2d(cJSON_GetObjectItem(g, "ids"), &B, &T);
  int64_t *pos = ints_2d(cJSON_GetObjectItem(g, "positions"), &B2, &T2);
  snprintf(path, sizeof path, "tests/fixtures/models/%s", name);
  pose_model *m = NULL;
  CHECK_OK(pose_model_load(path, NULL, GPU, &m));
  if (m) {
    const int64_t V = pose_model_vocab(m), N = B * T;
    float *lg = malloc(sizeof(float) * (size_t)(N * V)), *ref = malloc(sizeof(float) * (size_t)(N * V));
    const cJSON *L = cJSON_GetObjectItem(g, "logits");
    for (int64_t b = 0; b < B; b++)
      for (int64_t t = 0; t < T; t++)
        for (int64_t v = 0; v < V; v++)
          ref[(b * T + t) * V + v] =
              (float)cJSON_GetArrayItem(cJSON_GetArrayItem(cJSON_GetArrayItem(L, (int)b), (int)t), (int)v)->valuedouble;
    CHECK_OK(pose_model_forward(m, ids, pos, B, T, lg));
    CHECK_RELF(lg, ref, (size_t)(N * V), 2e-2, "%s logits", name);
    float *nll = malloc(sizeof(float) * (size_t)(B * (T - 1)));
    CHECK_OK(pose_model_nll(m, ids, pos, NULL, B, T, nll));
    double s = 0;
    for (int64_t i = 0; i < B * (T - 1); i++) s += nll[i];
    double loss = s / (double)(B * (T - 1)), want = cJSON_GetObjectItem(g, "loss")->valuedouble;
    printf("  loss %.6f vs transformers %.6f (rel %.2e, tol 1e-2)\n", loss, want, fabs(loss - want) / want);
    CHECK(fabs(loss - want) <= 1e-2 * want);
    const cJSON *a = cJSON_GetObjectItem(g, "adamw_hf");
    if (a) { /* the Trainer's AdamW trajectory (decay on matrices only) */
      pose_trainer_opts o;
      pose_trainer_defaults(&o);
      o.lr = cJSON_GetObjectItem(a, "lr")->valuedouble;
      o.weight_decay = cJSON_GetObjectItem(a, "weight_decay")->valuedouble;
      o.beta1 = cJSON_GetArrayItem(cJSON_GetObjectItem(a, "betas"), 0)->valuedouble;
      o.beta2 = cJSON_GetArrayItem(cJSON_GetObjectItem(a, "betas"), 1)->valuedouble;
      o.eps = cJSON_GetObjectItem(a, "eps")->valuedouble;
      const cJSON *ls = cJSON_GetObjectItem(a, "losses");
      int n = cJSON_GetArraySize(ls);
      pose_trainer *tr = NULL;
      CHECK_OK(pose_trainer_new(m, &o, &tr));
      double worst = 0;
      for (int k = 0; tr && k < n - 1; k++) {
        double l = 0;
        CHECK_OK(pose_trainer_step(tr, ids, pos, NULL, B, T, &l, NULL, NULL));
        double w = cJSON_GetArrayItem(ls, k)->valuedouble, e = fabs(l - w) / w;
        if (e > worst) worst = e;
      }
      CHECK_OK(pose_model_nll(m, ids, pos, NULL, B, T, nll));
      s = 0;
      for (int64_t i = 0; i < B * (T - 1); i++) s += nll[i];
      double fin = s / (double)(B * (T - 1)), wfin = cJSON_GetArrayItem(ls, n - 1)->valuedouble;
      if (fabs(fin - wfin) / wfin > worst) worst = fabs(fin - wfin) / wfin;
      printf("  AdamW %d steps: worst relative loss difference to torch %.3e (tol 2e-2); final %.5f vs %.5f\n", n - 1,
             worst, fin, wfin);
      CHECK(worst <= 2e-2);
      pose_trainer_free(tr);
    }
    free(nll);
    free(lg);
    free(ref);
    pose_model_free(m);
  }
  free(ids);
  free(pos);
  cJSON_Delete(g);
  return 1;
}

/* ---- errors ------------------------------------------------------------------------------------------------------- */

static void test_errors(void) {
  printf("error paths\n");
  pose_model *m = NULL;
  cJSON *cfg = parse("{\"model_type\":\"gptj\",\"vocab_size\":64,\"n_embd\":1024,\"n_layer\":1,\"n_head\":2,"
                     "\"rotary_dim\":64}");
  CHECK_ERR(pose_model_init(cfg, 1, GPU, &m), POSE_EUNSUPPORTED, "head dim 512");
  cJSON_Delete(cfg);
  cfg = parse(NEOX_PAR64);
  CHECK_OK(pose_model_init(cfg, 1, GPU, &m));
  cJSON_Delete(cfg);
  if (!m) return;
  int64_t ids[4] = {1, 2, 3, 999}, pos[4] = {0, 1, 2, 3};
  float nll[3];
  CHECK_ERR(pose_model_nll(m, ids, pos, NULL, 1, 4, nll), POSE_EINVAL, "outside the vocabulary");
  pose_kv_cache *kv = NULL;
  CHECK_OK(pose_kv_cache_new(m, 1, 2, &kv));
  ids[3] = 4;
  float lg[2 * 288];
  CHECK_ERR(pose_model_decode(m, kv, ids, NULL, 1, 3, lg), POSE_EINVAL, "capacity");
  CHECK_OK(pose_model_decode(m, kv, ids, NULL, 1, 2, lg));
  CHECK(pose_kv_cache_len(kv) == 2);
  pose_kv_cache_free(kv);
  pose_model_free(m);
}

int main(void) {
  gpu_require("test_model_families");
  compare_model("gptj, head dim 64 (flash), interleaved rotary 32 of 64, gelu_new, LM-head bias", GPTJ64, 2, 96);
  compare_model("gptj, head dim 32 (reference attention), full interleaved rotary", GPTJ32, 2, 70);
  compare_model("gpt_neox parallel, head dim 64 (flash), rotary_pct 0.25, q|k|v and dense biases", NEOX_PAR64, 2, 128);
  compare_model("gpt_neox sequential, head dim 128 (flash), rotary_pct 0.5, no attention biases, tied", NEOX_SEQ128, 3,
                80);
  compare_model("baichuan, head dim 64 (flash), W_pack, NormHead, padding row", BAICHUAN64, 2, 100);
  compare_model("baichuan, head dim 32 (reference attention), tied NormHead", BAICHUAN32, 2, 64);
  if (!getenv("POSE_GPU_QUICK")) {
    test_trajectory("gptj", GPTJ64);
    test_trajectory("gpt_neox parallel", NEOX_PAR64);
    test_trajectory("gpt_neox sequential", NEOX_SEQ128);
    test_trajectory("baichuan", BAICHUAN64);
  }
  test_decode("gptj, head dim 64", GPTJ64, 0);
  test_decode("gptj, head dim 32, LM-head bias", GPTJ32, 1);
  test_decode("gpt_neox parallel, head dim 64", NEOX_PAR64, 0);
  test_decode("gpt_neox sequential, head dim 128", NEOX_SEQ128, 0);
  test_decode("baichuan, NormHead", BAICHUAN64, 1);
  test_bf16_policy("gptj (LayerNorm weights and biases in bf16)", GPTJ64);
  test_bf16_policy("baichuan (NormHead from bf16 weights)", BAICHUAN32);
  int ran = 0;
  const char *fixtures[] = {"gptj", "neox_parallel", "neox_sequential", "baichuan"};
  for (int i = 0; i < 4; i++) ran += test_golden(fixtures[i]);
  printf("golden fixtures run on the GPU: %d of 4\n", ran);
  test_errors();
  return test_summary("test_model_families");
}
