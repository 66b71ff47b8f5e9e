/* GPU decoder (cuda/model_gpu.cu) against the CPU reference (core/model_fwd.c): logits, per-token NLL, loss and every
 * parameter's gradient of small LLaMA-family models at PoSE-style skipped positions (GQA, q/k/v biases, tied
 * embeddings, sliding window; head dims 64 and 128 through the flash kernels, 16 through the reference kernels),
 * recomputation and determinism, a 20-step AdamW trajectory tracking the CPU trainer's, the trainer state round
 * trip on the device, the transformers golden fixtures of the LLaMA family, and the error paths. Both models get the
 * same weights rounded to bf16 first, so that the differences measured are the GPU's bf16 activations alone. Every
 * comparison prints its measured error. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

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

/* ---- helpers ---------------------------------------------------------------------------------------------------- */

static cJSON *parse(const char *text) {
  cJSON *j = cJSON_Parse(text);
  if (!j) {
    fprintf(stderr, "bad JSON in the test\n");
    exit(1);
  }
  return j;
}

/* Copies a's weights, rounded to bf16, into a and b. */
static void share_bf16_weights(pose_model *a, pose_model *b) {
  for (size_t i = 0; i < pose_model_num_params(a); i++) {
    const pose_param *p = pose_model_param_info(a, i);
    float *w = malloc(sizeof(float) * (size_t)p->numel);
    CHECK_OK(pose_model_param_get(a, i, w));
    for (int64_t k = 0; k < p->numel; k++) w[k] = pose_bf16_to_f32(pose_f32_to_bf16(w[k]));
    CHECK_OK(pose_model_param_set(a, i, w));
    CHECK_OK(pose_model_param_set(b, i, w));
    free(w);
  }
}

/* all gradients concatenated (host) */
static float *all_grads(pose_model *m) {
  int64_t n = pose_model_numel(m), off = 0;
  float *g = malloc(sizeof(float) * (size_t)n);
  for (size_t i = 0; i < pose_model_num_params(m); i++) {
    CHECK_OK(pose_model_grad_get(m, i, g + off));
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

/* ---- GPU vs CPU: one model ---------------------------------------------------------------------------------------- */

static void compare_model(const char *label, const char *cfg_text, int64_t B, int64_t T) {
  printf("%s (B=%lld, T=%lld)\n", label, (long long)B, (long long)T);
  cJSON *cfg = parse(cfg_text);
  pose_model *mc = NULL, *mg = NULL;
  CHECK_OK(pose_model_init(cfg, 11, POSE_DEVICE_CPU, &mc));
  CHECK_OK(pose_model_init(cfg, 11, GPU, &mg));
  cJSON_Delete(cfg);
  if (!mc || !mg) return;
  /* the device initialisation draws the CPU's Philox streams: the same weights (normals to the last bit, rarely) */
  {
    int64_t n = pose_model_numel(mc), diff = 0;
    float *a = all_grads(mc); /* zeros: just an allocation of the right size */
    float *wc = malloc(sizeof(float) * (size_t)n), *wg = malloc(sizeof(float) * (size_t)n);
    int64_t off = 0;
    for (size_t i = 0; i < pose_model_num_params(mc); i++) {
      CHECK_OK(pose_model_param_get(mc, i, wc + off));
      CHECK_OK(pose_model_param_get(mg, i, wg + off));
      off += pose_model_param_info(mc, i)->numel;
    }
    for (int64_t i = 0; i < n; i++) diff += wc[i] != wg[i];
    printf("  init: %lld of %lld weights differ from the CPU's\n", (long long)diff, (long long)n);
    CHECK(diff <= n / 10000);
    CHECK_RELF(wg, wc, (size_t)n, 1e-7, "init weights");
    free(a);
    free(wc);
    free(wg);
  }
  share_bf16_weights(mc, mg);
  const int64_t V = pose_model_vocab(mc), N = B * T;
  int64_t *ids = random_ids(N, V, 5 + (uint64_t)T), *pos = pose_positions(B, T);

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

  /* targets with some ignored entries: the scored count must agree */
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
  float *gc = all_grads(mc), *gg = all_grads(mg);
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
  float *g2 = all_grads(mg);
  CHECK(loss_2 == loss_g);
  CHECK(memcmp(g2, gg, sizeof(float) * (size_t)pose_model_numel(mg)) == 0);
  /* full per-layer recomputation: the same gradients */
  CHECK_OK(pose_model_set_recompute(mg, POSE_RECOMPUTE_LAYER));
  pose_model_zero_grad(mg);
  double loss_r = 0;
  CHECK_OK(pose_model_backward(mg, ids, pos, tgt, B, T, 1.0, &loss_r, NULL));
  float *gr = all_grads(mg);
  CHECK(loss_r == loss_g);
  CHECK_RELF(gr, gg, (size_t)pose_model_numel(mg), 0.0, "recompute=layer vs none");
  /* a second backward without zeroing adds (the trainer's micro-batch accumulation) */
  CHECK_OK(pose_model_backward(mg, ids, pos, tgt, B, T, 0.5, NULL, NULL));
  float *ga = all_grads(mg);
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

/* ---- training trajectories: the GPU trainer tracks the CPU trainer ----------------------------------------------- */

static const char *LLAMA_GQA64 =
    "{\"model_type\":\"llama\",\"vocab_size\":384,\"hidden_size\":256,\"intermediate_size\":512,"
    "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"num_key_value_heads\":2,\"head_dim\":64,"
    "\"rms_norm_eps\":1e-5,\"rope_theta\":10000.0,\"max_position_embeddings\":4096,\"initializer_range\":0.05,"
    "\"tie_word_embeddings\":false}";

static void test_trajectory(void) {
  printf("20-step AdamW trajectory, GPU vs CPU (llama GQA, head dim 64, PoSE positions)\n");
  cJSON *cfg = parse(LLAMA_GQA64);
  pose_model *mc = NULL, *mg = NULL;
  CHECK_OK(pose_model_init(cfg, 3, POSE_DEVICE_CPU, &mc));
  CHECK_OK(pose_model_init(cfg, 3, GPU, &mg));
  cJSON_Delete(cfg);
  if (!mc || !mg) return;
  share_bf16_weights(mc, mg);
  const int64_t B = 2, T = 64, N = B * T, S = 20;
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
  if (!tc || !tg) return;
  CHECK(pose_trainer_exp_avg(tg, 0) == NULL); /* device moments are not host pointers */
  double worst = 0, worst_norm = 0, first = 0, last_c = 0, last_g = 0;
  for (int64_t k = 0; k < S; k++) {
    double lc = 0, lg = 0, nc = 0, ng = 0, rc = 0, rg = 0;
    CHECK_OK(pose_trainer_step(tc, ids, pos, NULL, B, T, &lc, &rc, &nc));
    CHECK_OK(pose_trainer_step(tg, ids, pos, NULL, B, T, &lg, &rg, &ng));
    CHECK(rc == rg);
    double e = fabs(lg - lc) / lc, en = fabs(ng - nc) / nc;
    if (e > worst) worst = e;
    if (en > worst_norm) worst_norm = en;
    if (k == 0) first = lc;
    last_c = lc;
    last_g = lg;
    printf("  step %2lld  loss cpu %.5f gpu %.5f (rel %.2e)  grad norm cpu %.4f gpu %.4f\n", (long long)k + 1, lc, lg, e,
           nc, ng);
  }
  printf("  worst relative loss difference %.3e (tol 3e-2), grad norm %.3e (tol 1e-1)\n", worst, worst_norm);
  CHECK(worst <= 3e-2);
  CHECK(worst_norm <= 1e-1);
  CHECK(last_c < 0.8 * first && last_g < 0.8 * first); /* it trained */
  CHECK(fabs(last_g - last_c) <= 3e-2 * last_c);
  /* moments agree with the CPU's */
  const pose_param *p0 = pose_model_param_info(mc, 1);
  float *mgm = malloc(sizeof(float) * (size_t)p0->numel), *mgv = malloc(sizeof(float) * (size_t)p0->numel);
  float *mcm = malloc(sizeof(float) * (size_t)p0->numel), *mcv = malloc(sizeof(float) * (size_t)p0->numel);
  CHECK_OK(pose_trainer_moments(tg, 1, mgm, mgv));
  CHECK_OK(pose_trainer_moments(tc, 1, mcm, mcv));
  CHECK_RELF(mgm, mcm, (size_t)p0->numel, 1e-1, "exp_avg of %s after %lld steps", p0->name, (long long)S);
  CHECK_RELF(mgv, mcv, (size_t)p0->numel, 1e-1, "exp_avg_sq of %s", p0->name);
  free(mgm); free(mgv); free(mcm); free(mcv);

  /* trainer state on the device: save after 3 more steps' worth of state, resume in a fresh model, identical steps */
  char dir[] = "/tmp/pose_gpu_stateXXXXXX";
  if (mkdtemp(dir)) {
    pose_trainer_opts o2 = o;
    o2.schedule = POSE_SCHED_CONSTANT;
    o2.steps = 0;
    cJSON *cfg2 = parse(LLAMA_GQA64);
    pose_model *ma = NULL, *mb = NULL;
    CHECK_OK(pose_model_init(cfg2, 4, GPU, &ma));
    CHECK_OK(pose_model_init(cfg2, 5, GPU, &mb)); /* other weights: the state must replace them */
    cJSON_Delete(cfg2);
    pose_trainer *ta = NULL, *tb = NULL;
    CHECK_OK(pose_trainer_new(ma, &o2, &ta));
    CHECK_OK(pose_trainer_new(mb, &o2, &tb));
    double la[5], lb[2];
    for (int k = 0; k < 3; k++) CHECK_OK(pose_trainer_step(ta, ids, pos, NULL, B, T, &la[k], NULL, NULL));
    CHECK_OK(pose_trainer_save_state(ta, dir, "gpu", 3));
    for (int k = 3; k < 5; k++) CHECK_OK(pose_trainer_step(ta, ids, pos, NULL, B, T, &la[k], NULL, NULL));
    void *user = NULL;
    size_t ulen = 0;
    CHECK_OK(pose_trainer_load_state(tb, dir, &user, &ulen));
    CHECK(ulen == 3 && user && !memcmp(user, "gpu", 3));
    free(user);
    CHECK(pose_trainer_steps_done(tb) == 3);
    for (int k = 0; k < 2; k++) CHECK_OK(pose_trainer_step(tb, ids, pos, NULL, B, T, &lb[k], NULL, NULL));
    printf("  resumed on the device: steps 4-5 loss %.7f %.7f vs uninterrupted %.7f %.7f\n", lb[0], lb[1], la[3], la[4]);
    CHECK(lb[0] == la[3] && lb[1] == la[4]);
    char path[128];
    snprintf(path, sizeof path, "%s/trainer_state.bin", dir);
    unlink(path);
    rmdir(dir);
    pose_trainer_free(ta);
    pose_trainer_free(tb);
    pose_model_free(ma);
    pose_model_free(mb);
  }
  pose_trainer_free(tc);
  pose_trainer_free(tg);
  pose_model_free(mc);
  pose_model_free(mg);
  free(ids);
  free(pos);
}

/* ---- the transformers golden fixtures of the LLaMA family, on the GPU -------------------------------------------- */

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
  /* (gptj, gpt_neox and baichuan run on the GPU too: tests/gpu/test_model_families.c) */
  cJSON *cfg = parse("{\"model_type\":\"llama\",\"vocab_size\":64,\"hidden_size\":1024,\"intermediate_size\":128,"
                     "\"num_hidden_layers\":1,\"num_attention_heads\":2}");
  CHECK_ERR(pose_model_init(cfg, 1, GPU, &m), POSE_EUNSUPPORTED, "head dim 512");
  cJSON_Delete(cfg);
  pose_device bad = {POSE_CUDA, 999};
  cfg = parse(LLAMA_GQA64);
  CHECK_ERR(pose_model_init(cfg, 1, bad, &m), POSE_EINVAL, "does not exist");
  CHECK_OK(pose_model_init(cfg, 1, GPU, &m));
  cJSON_Delete(cfg);
  if (!m) return;
  int64_t ids[4] = {1, 2, 3, 999}, pos[4] = {0, 1, 2, 3};
  float nll[3], logits[4 * 384];
  CHECK_ERR(pose_model_nll(m, ids, pos, NULL, 1, 4, nll), POSE_EINVAL, "outside the vocabulary");
  ids[3] = 4;
  pos[2] = -5;
  CHECK_ERR(pose_model_forward(m, ids, pos, 1, 4, logits), POSE_EINVAL, "negative");
  pos[2] = 2;
  CHECK_OK(pose_model_forward(m, ids, pos, 1, 4, logits));
  pose_kv_cache *kv = NULL;
  CHECK_OK(pose_kv_cache_new(m, 1, 8, &kv)); /* decoding on the device: tests/gpu/test_model_decode.c */
  pose_kv_cache_free(kv);
  CHECK_ERR(pose_model_set_recompute(m, (pose_recompute)7), POSE_EINVAL, "unknown recompute");
  pose_recompute r;
  CHECK_ERR(pose_recompute_parse("sometimes", &r), POSE_EINVAL, "none, layer");
  CHECK_ERR(pose_model_param_get(m, 100000, logits), POSE_EINVAL, "out of range");
  /* a non-finite loss is an error that stops the trainer before any update */
  float *w = malloc(sizeof(float) * 384 * 256);
  CHECK_OK(pose_model_param_get(m, 0, w));
  w[4 * 256 + 3] = NAN; /* embedding row of token 4 */
  CHECK_OK(pose_model_param_set(m, 0, w));
  pose_trainer *tr = NULL;
  CHECK_OK(pose_trainer_new(m, NULL, &tr));
  int64_t tids[4] = {4, 1, 2, 3};
  CHECK_ERR(pose_trainer_step(tr, tids, NULL, NULL, 1, 4, NULL, NULL, NULL), POSE_ENUMERIC, "not finite");
  CHECK(pose_trainer_steps_done(tr) == 0);
  free(w);
  pose_trainer_free(tr);
  pose_model_free(m);
}

int main(void) {
  gpu_require("test_model");
  compare_model("llama, GQA 4/2, head dim 64 (flash)", LLAMA_GQA64, 2, 128);
  compare_model("qwen2, q/k/v biases, tied embeddings, GQA 2/1, head dim 128 (flash)",
                "{\"model_type\":\"qwen2\",\"vocab_size\":300,\"hidden_size\":256,\"intermediate_size\":384,"
                "\"num_hidden_layers\":2,\"num_attention_heads\":2,\"num_key_value_heads\":1,"
                "\"rms_norm_eps\":1e-6,\"rope_theta\":1000000.0,\"max_position_embeddings\":8192,"
                "\"initializer_range\":0.05,\"tie_word_embeddings\":true}",
                2, 96);
  compare_model("mistral, sliding window 40 < T, GQA 4/1, head dim 64 (flash)",
                "{\"model_type\":\"mistral\",\"vocab_size\":256,\"hidden_size\":256,\"intermediate_size\":512,"
                "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"num_key_value_heads\":1,\"head_dim\":64,"
                "\"sliding_window\":40,\"rms_norm_eps\":1e-5,\"rope_theta\":10000.0,"
                "\"max_position_embeddings\":4096,\"initializer_range\":0.05,\"tie_word_embeddings\":false}",
                3, 100);
  compare_model("llama, linear rope scaling x4, head dim 32 (reference attention), bias in MLP",
                "{\"model_type\":\"llama\",\"vocab_size\":200,\"hidden_size\":128,\"intermediate_size\":256,"
                "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"num_key_value_heads\":2,\"head_dim\":32,"
                "\"mlp_bias\":true,\"attention_bias\":true,\"rope_theta\":10000.0,"
                "\"rope_scaling\":{\"rope_type\":\"linear\",\"factor\":4.0},"
                "\"max_position_embeddings\":4096,\"initializer_range\":0.05,\"tie_word_embeddings\":false}",
                2, 70);
  /* dynamic NTK: positions beyond max_position_embeddings grow inv_freq on the host before each call; the device
   * copy must follow */
  compare_model("llama, dynamic NTK (max_position_embeddings 256 < positions), head dim 64 (flash)",
                "{\"model_type\":\"llama\",\"vocab_size\":256,\"hidden_size\":256,\"intermediate_size\":512,"
                "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"num_key_value_heads\":4,"
                "\"rope_theta\":10000.0,\"rope_scaling\":{\"rope_type\":\"dynamic\",\"factor\":2.0},"
                "\"max_position_embeddings\":256,\"initializer_range\":0.05,\"tie_word_embeddings\":false}",
                2, 64);
  if (!getenv("POSE_GPU_QUICK")) test_trajectory(); /* (skipped under compute-sanitizer) */
  int ran = 0;
  const char *fixtures[] = {"llama_gqa", "llama_tied_bias", "mistral_window", "qwen2"};
  for (int i = 0; i < 4; i++) ran += test_golden(fixtures[i]);
  printf("golden fixtures run on the GPU: %d of 4\n", ran);
  test_errors();
  return test_summary("test_model");
}
