/* Lazy gradient zeroing and the trainer's fused update (core/trainer.h fused_update, cuda/optim_gpu.cu):
 *  - lazy zeroing gives the gradients of zeroing by memset (value for value) over two accumulated micro-batches and
 *    several LM-head chunks, with biases and tied embeddings;
 *  - fused vs unfused trajectories from the same weights (clip 0, accum 1): fp32 masters bit for bit (weights,
 *    moments, losses, grad norms), also with recompute = "layer" and tied embeddings; under the bf16 policy the same
 *    (the gradients and the stochastic-rounding counters are the same) and reproducible from sr_seed;
 *  - gradient memory: slots against the full arena;
 *  - the guards: a layer with a non-finite gradient is left untouched and named, a non-finite loss updates nothing;
 *  - error paths: accum > 1, clip > 0, gradients read back, states saved with accum > 1, switching trainers. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gputest.h"
#include "model.h"
#include "model_gpu.h"
#include "trainer.h"

static pose_device GPU = {POSE_CUDA, 0};

static const char *LLAMA6 =
    "{\"model_type\":\"llama\",\"vocab_size\":384,\"hidden_size\":256,\"intermediate_size\":512,"
    "\"num_hidden_layers\":6,\"num_attention_heads\":4,\"num_key_value_heads\":2,\"head_dim\":64,"
    "\"rms_norm_eps\":1e-5,\"rope_theta\":10000.0,\"max_position_embeddings\":4096,\"initializer_range\":0.05,"
    "\"tie_word_embeddings\":false}";
static const char *QWEN_TIED =
    "{\"model_type\":\"qwen2\",\"vocab_size\":300,\"hidden_size\":256,\"intermediate_size\":384,"
    "\"num_hidden_layers\":4,\"num_attention_heads\":2,\"num_key_value_heads\":1,"
    "\"rms_norm_eps\":1e-6,\"rope_theta\":1000000.0,\"max_position_embeddings\":8192,"
    "\"initializer_range\":0.05,\"tie_word_embeddings\":true}";
static const char *LLAMA_BIAS32 =
    "{\"model_type\":\"llama\",\"vocab_size\":200,\"hidden_size\":128,\"intermediate_size\":256,"
    "\"num_hidden_layers\":3,\"num_attention_heads\":4,\"num_key_value_heads\":2,\"head_dim\":32,"
    "\"mlp_bias\":true,\"attention_bias\":true,\"rope_theta\":10000.0,"
    "\"max_position_embeddings\":4096,\"initializer_range\":0.05,\"tie_word_embeddings\":false}";

static pose_model *new_model(const char *json, uint64_t seed, pose_precision p, pose_recompute rc) {
  cJSON *cfg = cJSON_Parse(json);
  pose_model *m = NULL;
  CHECK_OK(pose_model_init(cfg, seed, GPU, &m));
  cJSON_Delete(cfg);
  if (m) CHECK_OK(pose_model_set_precision(m, p));
  if (m) CHECK_OK(pose_model_set_recompute(m, rc));
  return m;
}

static int64_t *random_ids(int64_t n, int64_t V, uint64_t seed) {
  pose_rng r;
  pose_rng_init(&r, seed, 0);
  int64_t *ids = malloc(sizeof(int64_t) * (size_t)n);
  for (int64_t i = 0; i < n; i++) ids[i] = (int64_t)pose_rng_below(&r, (uint64_t)V);
  return ids;
}

static int64_t *pose_positions(int64_t B, int64_t T) {
  int64_t *p = malloc(sizeof(int64_t) * (size_t)(B * T));
  for (int64_t b = 0; b < B; b++)
    for (int64_t t = 0; t < T; t++) p[b * T + t] = t < T / 2 ? t : t + 200 * (b + 1);
  return p;
}

static float *read_all(pose_model *m, int grads) {
  float *dst = malloc(sizeof(float) * (size_t)pose_model_numel(m));
  int64_t off = 0;
  for (size_t i = 0; i < pose_model_num_params(m); i++) {
    CHECK_OK(grads ? pose_model_grad_get(m, i, dst + off) : pose_model_param_get(m, i, dst + off));
    off += pose_model_param_info(m, i)->numel;
  }
  return dst;
}

/* Values that differ (a -0 against a +0 counts as equal: overwriting and adding onto zero differ only there). */
static int64_t count_diff(const float *a, const float *b, int64_t n, double *max_rel) {
  int64_t d = 0;
  double mr = 0;
  for (int64_t i = 0; i < n; i++)
    if (!(a[i] == b[i])) {
      d++;
      double r = fabs((double)a[i] - b[i]) / (fabs((double)b[i]) + 1e-30);
      if (r > mr) mr = r;
    }
  if (max_rel) *max_rel = mr;
  return d;
}

static void test_lazy_zero(const char *label, const char *json) {
  printf("lazy zeroing against memset, %s\n", label);
  pose_model *a = new_model(json, 5, POSE_PRECISION_FP32_MASTER, POSE_RECOMPUTE_NONE);
  pose_model *b = new_model(json, 5, POSE_PRECISION_FP32_MASTER, POSE_RECOMPUTE_NONE);
  if (!a || !b) return;
  pose_gpu_model_set_lazy_zero(a, 0); /* the old way: memset in zero_grad, every writer adds */
  pose_gpu_model_set_head_rows(a, 24); /* 96 rows -> 4 LM-head chunks */
  pose_gpu_model_set_head_rows(b, 24);
  CHECK_OK(pose_gpu_model_set_chunk_rows(a, 40)); /* and 3 MLP row chunks: dW, bias and norm gradients add up */
  CHECK_OK(pose_gpu_model_set_chunk_rows(b, 40));
  const int64_t B = 2, T = 48, N = B * T;
  int64_t *ids = random_ids(2 * N, pose_model_vocab(a), 11), *pos = pose_positions(B, T);
  const int64_t n = pose_model_numel(a);
  for (int round = 0; round < 2; round++) { /* the second round after a first step's gradients: zeroing matters */
    pose_model_zero_grad(a);
    pose_model_zero_grad(b);
    if (round == 1) { /* lazily zeroed gradients read back as zeros before any backward */
      float *zb = read_all(b, 1);
      int64_t nz = 0;
      for (int64_t i = 0; i < n; i++) nz += zb[i] != 0.0f;
      printf("  after zero_grad (lazy): %lld of %lld gradient values non-zero\n", (long long)nz, (long long)n);
      CHECK(nz == 0);
      free(zb);
    }
    for (int mb = 0; mb < 2; mb++) { /* two micro-batches accumulate */
      double la = 0, lb = 0;
      CHECK_OK(pose_model_backward(a, ids + mb * N, pos, NULL, B, T, mb ? 0.7 : 0.3, &la, NULL));
      CHECK_OK(pose_model_backward(b, ids + mb * N, pos, NULL, B, T, mb ? 0.7 : 0.3, &lb, NULL));
      CHECK(la == lb);
    }
    float *ga = read_all(a, 1), *gb = read_all(b, 1);
    double mr = 0;
    int64_t d = count_diff(gb, ga, n, &mr);
    int64_t nz = 0;
    for (int64_t i = 0; i < n; i++) nz += ga[i] != 0.0f;
    printf("  round %d: %lld of %lld gradient values differ (max rel %.3g); %lld non-zero\n", round, (long long)d,
           (long long)n, mr, (long long)nz);
    CHECK(d == 0);
    CHECK(nz > n / 2);
    free(ga);
    free(gb);
  }
  pose_model_free(a);
  pose_model_free(b);
  free(ids);
  free(pos);
}

static pose_trainer_opts opts_fused(int fused) {
  pose_trainer_opts o;
  pose_trainer_defaults(&o);
  o.lr = 3e-3;
  o.weight_decay = 0.01;
  o.warmup = 1;
  o.steps = 8;
  o.schedule = POSE_SCHED_COSINE;
  o.sr_seed = 4242;
  o.fused_update = fused;
  return o;
}

/* Runs S steps unfused on one model and fused on another from the same weights; compares everything. */
static void test_fused_vs_unfused(const char *label, const char *json, pose_precision prec, pose_recompute rc, int S,
                                  int f32_slots, int64_t chunk_rows) {
  const int exact = prec == POSE_PRECISION_FP32_MASTER || f32_slots;
  printf("fused vs unfused update, %s (%s, recompute %s, %s layer gradient slots)\n", label, pose_precision_name(prec),
         rc == POSE_RECOMPUTE_LAYER ? "layer" : "none", exact ? "fp32" : "bf16");
  pose_model *u = new_model(json, 9, prec, rc), *f = new_model(json, 9, prec, rc);
  if (!u || !f) return;
  if (f32_slots) CHECK_OK(pose_gpu_model_set_bf16_slots(f, 0));
  if (chunk_rows) { /* MLP row chunks: gradients accumulate over them (fp32 or bf16 slots, and the fp32 scratch) */
    CHECK_OK(pose_gpu_model_set_chunk_rows(u, chunk_rows));
    CHECK_OK(pose_gpu_model_set_chunk_rows(f, chunk_rows));
    printf("  (MLP row chunks of %lld rows)\n", (long long)chunk_rows);
  }
  const int64_t B = 2, T = 64, N = B * T;
  int64_t *ids = random_ids(N, pose_model_vocab(u), 21), *pos = pose_positions(B, T);
  pose_trainer_opts ou = opts_fused(0), of = opts_fused(1);
  pose_trainer *tu = NULL, *tf = NULL;
  CHECK_OK(pose_trainer_new(u, &ou, &tu));
  CHECK_OK(pose_trainer_new(f, &of, &tf));
  if (!tu || !tf) return;
  int64_t steps_equal = 0;
  double worst = 0;
  for (int k = 0; k < S; k++) {
    double lu = 0, lf = 0, nu = 0, nf = 0, ru = 0, rf = 0;
    CHECK_OK(pose_trainer_step(tu, ids, pos, NULL, B, T, &lu, &ru, &nu));
    CHECK_OK(pose_trainer_step(tf, ids, pos, NULL, B, T, &lf, &rf, &nf));
    steps_equal += lu == lf && nu == nf && ru == rf;
    double e = fabs(lf - lu) / lu;
    if (e > worst) worst = e;
    printf("  step %d: loss %.7f / %.7f, grad norm %.7f / %.7f\n", k + 1, lu, lf, nu, nf);
  }
  const int64_t n = pose_model_numel(u);
  float *wu = read_all(u, 0), *wf = read_all(f, 0);
  double mr = 0;
  int64_t dw = count_diff(wf, wu, n, &mr);
  double num = 0, den = 0; /* ||wf - wu|| / ||wu|| */
  for (int64_t i = 0; i < n; i++) num += ((double)wf[i] - wu[i]) * ((double)wf[i] - wu[i]), den += (double)wu[i] * wu[i];
  const double wrel = sqrt(num / (den > 0 ? den : 1));
  /* moments */
  int64_t dm = 0;
  for (size_t i = 0; i < pose_model_num_params(u); i++) {
    const int64_t pn = pose_model_param_info(u, i)->numel;
    float *m1 = malloc(sizeof(float) * (size_t)pn * 2), *m2 = malloc(sizeof(float) * (size_t)pn * 2);
    CHECK_OK(pose_trainer_moments(tu, i, m1, m1 + pn));
    CHECK_OK(pose_trainer_moments(tf, i, m2, m2 + pn));
    dm += count_diff(m2, m1, 2 * pn, NULL);
    free(m1);
    free(m2);
  }
  printf("  %d of %d steps with identical loss, lr and grad norm; weights differing %lld of %lld (max rel %.3g, "
         "norm-wise %.3g); moments differing %lld; worst loss rel diff %.3g\n", (int)steps_equal, S, (long long)dw,
         (long long)n, mr, wrel, (long long)dm, worst);
  if (exact) { /* same gradients, same norm, same arithmetic and (bf16 policy) the same rounding counters */
    CHECK(steps_equal == S);
    CHECK(dw == 0 && dm == 0);
  } else { /* bf16 layer gradients: the trajectory follows within the policy's tolerance */
    CHECK(worst < 1e-2);
    CHECK(wrel < 2e-2);
  }
  /* gradient memory: slots against the arena */
  size_t gu = pose_gpu_model_grad_bytes(u), gf = pose_gpu_model_grad_bytes(f);
  printf("  gradient memory: unfused %.3f B/param, fused %.3f B/param (%d layers)\n", (double)gu / n, (double)gf / n,
         (int)cJSON_GetObjectItem(pose_model_config(u), "num_hidden_layers")->valueint);
  CHECK(gf < gu);
  CHECK(pose_gpu_model_grad_slots(f) && !pose_gpu_model_grad_slots(u));
  pose_trainer_free(tu);
  pose_trainer_free(tf);
  pose_model_free(u);
  pose_model_free(f);
  free(wu);
  free(wf);
  free(ids);
  free(pos);
}

static size_t used_bytes(void) {
  size_t used = 0;
  CUDA_OK(cudaDeviceSynchronize());
  CHECK_OK(pose_gpu_memory(0, 0, &used, NULL));
  return used;
}

static void test_memory(void) {
  printf("device memory after one step: gradient arena vs slots (6 layers, bf16 policy)\n");
  const int64_t B = 1, T = 32;
  for (int fused = 0; fused < 2; fused++) {
    size_t u0 = used_bytes();
    pose_model *m = new_model(LLAMA6, 3, POSE_PRECISION_BF16, POSE_RECOMPUTE_NONE);
    if (!m) return;
    size_t u1 = used_bytes();
    pose_trainer_opts o = opts_fused(fused);
    pose_trainer *t = NULL;
    CHECK_OK(pose_trainer_new(m, &o, &t));
    int64_t *ids = random_ids(B * T, pose_model_vocab(m), 2);
    if (t) CHECK_OK(pose_trainer_step(t, ids, NULL, NULL, B, T, NULL, NULL, NULL));
    size_t u2 = used_bytes();
    const double P = (double)pose_model_numel(m);
    printf("  %s: weights %.3f B/param, gradients + moments + tables %.3f B/param (gradients %.3f)\n",
           fused ? "fused  " : "unfused", (double)(u1 - u0) / P, (double)(u2 - u1) / P,
           (double)pose_gpu_model_grad_bytes(m) / P);
    if (fused) CHECK((double)(u2 - u1) / P < 4 + 1.5); /* moments 4 + bf16 slots (2 of 6 layers) + fp32 embeddings */
    else CHECK((double)(u2 - u1) / P >= 8.0);
    pose_trainer_free(t);
    pose_model_free(m);
    free(ids);
  }
}

static void test_reproducible(void) {
  printf("fused bf16 update reproducible from sr_seed\n");
  float *w[3] = {NULL, NULL, NULL};
  int64_t n = 0;
  for (int r = 0; r < 3; r++) {
    pose_model *m = new_model(LLAMA6, 12, POSE_PRECISION_BF16, POSE_RECOMPUTE_NONE);
    if (!m) return;
    pose_trainer_opts o = opts_fused(1);
    o.sr_seed = r == 2 ? 99 : 98;
    pose_trainer *t = NULL;
    CHECK_OK(pose_trainer_new(m, &o, &t));
    int64_t *ids = random_ids(64, pose_model_vocab(m), 4);
    for (int k = 0; k < 3 && t; k++) CHECK_OK(pose_trainer_step(t, ids, NULL, NULL, 2, 32, NULL, NULL, NULL));
    w[r] = read_all(m, 0);
    n = pose_model_numel(m);
    pose_trainer_free(t);
    pose_model_free(m);
    free(ids);
  }
  int64_t d01 = count_diff(w[0], w[1], n, NULL), d02 = count_diff(w[0], w[2], n, NULL);
  printf("  same seed: %lld of %lld weights differ; other seed: %lld differ\n", (long long)d01, (long long)n,
         (long long)d02);
  CHECK(d01 == 0);
  CHECK(d02 > 0);
  for (int r = 0; r < 3; r++) free(w[r]);
}

/* The optimizer's guards driven directly: three groups (layer 0, layer 1, the rest), layer 1's gradient NaN. */
static void test_guards(void) {
  printf("fused update guards: non-finite layer gradient, non-finite loss\n");
  for (int variant = 0; variant < 2; variant++) { /* 0: NaN in group 1's gradient; 1: finite grads, NaN loss */
    enum { NP = 3 };
    const int64_t ns[NP] = {1000, 777, 64};
    pose_param ps[NP];
    pose_param *pp[NP];
    float *h0[NP];
    memset(ps, 0, sizeof ps);
    for (int i = 0; i < NP; i++) {
      float *hw = hrandn((size_t)ns[i], 0.3f), *hg = hrandn((size_t)ns[i], 0.1f);
      if (variant == 0 && i == 1) hg[5] = NAN;
      ps[i].name = i == 0 ? "layer0.w" : i == 1 ? "layer1.w" : "rest.w";
      ps[i].numel = ns[i];
      ps[i].decay = 1;
      ps[i].w = gup(hw, sizeof(float) * (size_t)ns[i]);
      ps[i].g = gup(hg, sizeof(float) * (size_t)ns[i]);
      ps[i].w_bf16 = galloc(2 * (size_t)ns[i]);
      pp[i] = &ps[i];
      h0[i] = hw;
      free(hg);
    }
    const int group[NP] = {0, 1, 2};
    pose_gpu_optim *o = NULL;
    CHECK_OK(pose_gpu_optim_new(0, pp, NP, group, 3, &o));
    if (!o) return;
    pose_trainer_opts opts = opts_fused(1);
    const pose_gpu_bwd_hook *hk = NULL;
    CHECK_OK(pose_gpu_optim_fused_begin(o, pp, &opts, 1e-2, 1, &hk));
    if (!hk) return;
    double loss = variant == 1 ? NAN : 3.0;
    gput(hk->loss_sum, &loss, sizeof loss);
    /* a model's order: top layer first, then the rest */
    CHECK_OK(hk->slot_wait(hk->ctx, 1, 1));
    CHECK_OK(hk->layer_done(hk->ctx, 1, 1));
    CHECK_OK(hk->slot_wait(hk->ctx, 0, 0));
    CHECK_OK(hk->layer_done(hk->ctx, 0, 0));
    CHECK_ERR(hk->layer_done(hk->ctx, 5, 0), POSE_EINVAL, "bad layer");
    CHECK_OK(hk->rest_done(hk->ctx));
    float norm = 0;
    size_t bad = 99;
    CHECK_OK(pose_gpu_optim_fused_end(o, 1, &norm, &bad));
    int changed[NP];
    for (int i = 0; i < NP; i++) {
      float *now = malloc(sizeof(float) * (size_t)ns[i]);
      CHECK_OK(pose_gpu_weights_get(0, &ps[i], now));
      int64_t c = 0;
      for (int64_t j = 0; j < ns[i]; j++) c += now[j] != h0[i][j];
      changed[i] = c > ns[i] / 2;
      free(now);
    }
    printf("  %s: first non-finite parameter %zu, norm %g; updated: layer0 %d, layer1 %d, rest %d\n",
           variant ? "NaN loss" : "NaN in layer 1's gradient", bad, (double)norm, changed[0], changed[1], changed[2]);
    if (variant == 0) {
      CHECK(bad == 1 && !isfinite(norm));
      CHECK(changed[0] && !changed[1] && changed[2]);
    } else {
      CHECK(bad == NP && isfinite(norm));
      CHECK(!changed[0] && !changed[1] && !changed[2]);
    }
    CHECK_ERR(pose_gpu_optim_update(o, pp, &opts, 1e-2, 1), POSE_EINVAL, "inside the backward");
    pose_gpu_optim_free(o);
    for (int i = 0; i < NP; i++) free(h0[i]);
  }
}

static void test_errors(void) {
  printf("fused update: error paths and switching trainers\n");
  pose_model *m = new_model(LLAMA6, 6, POSE_PRECISION_FP32_MASTER, POSE_RECOMPUTE_NONE);
  if (!m) return;
  pose_trainer_opts o = opts_fused(1);
  o.warmup = 0; /* (the first update with lr 0 would not move the loss) */
  pose_trainer *t = NULL;
  o.accum = 2;
  CHECK_ERR(pose_trainer_new(m, &o, &t), POSE_EINVAL, "fused_update needs accum = 1");
  o.accum = 1;
  o.clip = 1.0;
  CHECK_ERR(pose_trainer_new(m, &o, &t), POSE_EINVAL, "fused_update needs clip = 0");
  o.clip = 0;
  CHECK(t == NULL);
  CHECK_OK(pose_trainer_new(m, &o, &t));
  if (!t) return;
  int64_t *ids = random_ids(64, pose_model_vocab(m), 7);
  double l1 = 0, l2 = 0;
  CHECK_OK(pose_trainer_step(t, ids, NULL, NULL, 2, 32, &l1, NULL, NULL));
  float *g = malloc(sizeof(float) * (size_t)pose_model_param_info(m, 0)->numel);
  CHECK_ERR(pose_model_grad_get(m, 0, g), POSE_EUNSUPPORTED, "transient");
  /* a trainer without the option brings the gradient arena back; the fused one takes the slots again */
  pose_trainer_opts ou = opts_fused(0);
  ou.warmup = 0;
  ou.accum = 2;
  pose_trainer *tu = NULL;
  CHECK_OK(pose_trainer_new(m, &ou, &tu));
  CHECK(!pose_gpu_model_grad_slots(m));
  if (tu) CHECK_OK(pose_trainer_step(tu, ids, NULL, NULL, 1, 32, NULL, NULL, NULL));
  CHECK_OK(pose_model_grad_get(m, 0, g));
  CHECK_OK(pose_trainer_step(t, ids, NULL, NULL, 2, 32, &l2, NULL, NULL));
  CHECK(pose_gpu_model_grad_slots(m));
  CHECK(isfinite(l2) && l2 < l1);
  /* a state saved with accum 2 cannot be run by the fused trainer; nothing changes */
  char dir[] = "/tmp/pose_gpu_fusedXXXXXX";
  if (mkdtemp(dir)) {
    CHECK_OK(pose_trainer_save_state(tu, dir, NULL, 0));
    int64_t before = pose_trainer_steps_done(t);
    CHECK_ERR(pose_trainer_load_state(t, dir, NULL, NULL), POSE_EINVAL, "fused_update");
    CHECK(pose_trainer_steps_done(t) == before && pose_trainer_get_opts(t)->fused_update == 1);
    /* and a state saved by the fused trainer resumes bit for bit in another fused trainer */
    CHECK_OK(pose_trainer_save_state(t, dir, NULL, 0));
    double a[2], b[2];
    for (int k = 0; k < 2; k++) CHECK_OK(pose_trainer_step(t, ids, NULL, NULL, 2, 32, &a[k], NULL, NULL));
    pose_model *m2 = new_model(LLAMA6, 77, POSE_PRECISION_FP32_MASTER, POSE_RECOMPUTE_NONE);
    pose_trainer *t2 = NULL;
    if (m2) CHECK_OK(pose_trainer_new(m2, &o, &t2));
    if (t2) {
      CHECK_OK(pose_trainer_load_state(t2, dir, NULL, NULL));
      for (int k = 0; k < 2; k++) CHECK_OK(pose_trainer_step(t2, ids, NULL, NULL, 2, 32, &b[k], NULL, NULL));
      printf("  resumed fused run: %.7f %.7f vs %.7f %.7f\n", b[0], b[1], a[0], a[1]);
      CHECK(a[0] == b[0] && a[1] == b[1]);
    }
    pose_trainer_free(t2);
    pose_model_free(m2);
    char path[128];
    snprintf(path, sizeof path, "%s/trainer_state.bin", dir);
    unlink(path);
    rmdir(dir);
  }
  /* a non-finite loss: nothing is updated, the step count stays */
  const pose_param *p0 = pose_model_param_info(m, 0);
  float *w0 = read_all(m, 0);
  float *bad = malloc(sizeof(float) * (size_t)p0->numel);
  CHECK_OK(pose_model_param_get(m, 0, bad));
  for (int64_t i = 0; i < p0->numel; i++) bad[i] = NAN;
  CHECK_OK(pose_model_param_set(m, 0, bad));
  float *wnan = read_all(m, 0);
  const int64_t steps = pose_trainer_steps_done(t);
  CHECK_ERR(pose_trainer_step(t, ids, NULL, NULL, 2, 32, NULL, NULL, NULL), POSE_ENUMERIC, "nothing was updated");
  float *w1 = read_all(m, 0);
  int64_t moved = 0;
  for (int64_t i = p0->numel; i < pose_model_numel(m); i++) moved += !(w1[i] == wnan[i]);
  printf("  NaN weights in '%s': %lld other weights moved, steps %lld -> %lld\n", p0->name, (long long)moved,
         (long long)steps, (long long)pose_trainer_steps_done(t));
  CHECK(moved == 0 && pose_trainer_steps_done(t) == steps);
  /* other trainables cannot run it (the CPU tests check cpu models) */
  pose_trainable tb = {m, NULL, NULL, NULL, NULL, GPU};
  pose_trainer *tx = NULL;
  CHECK_ERR(pose_trainer_new_trainable(&tb, &o, &tx), POSE_EUNSUPPORTED, "cuda pose_model");
  free(w0); free(w1); free(wnan); free(bad); free(g); free(ids);
  pose_trainer_free(tu);
  pose_trainer_free(t);
  pose_model_free(m);
}

int main(void) {
  gpu_require("test_fused_update");
  test_lazy_zero("llama GQA, 6 layers", LLAMA6);
  test_lazy_zero("qwen2: q/k/v biases, tied embeddings", QWEN_TIED);
  test_lazy_zero("llama: MLP and attention biases, head dim 32 (reference attention)", LLAMA_BIAS32);
  test_fused_vs_unfused("llama GQA, 6 layers", LLAMA6, POSE_PRECISION_FP32_MASTER, POSE_RECOMPUTE_NONE, 5, 0, 0);
  test_fused_vs_unfused("llama GQA, 6 layers", LLAMA6, POSE_PRECISION_FP32_MASTER, POSE_RECOMPUTE_LAYER, 3, 0, 48);
  test_fused_vs_unfused("qwen2 tied, biases", QWEN_TIED, POSE_PRECISION_FP32_MASTER, POSE_RECOMPUTE_NONE, 4, 0, 0);
  test_fused_vs_unfused("llama biases, head dim 32", LLAMA_BIAS32, POSE_PRECISION_FP32_MASTER, POSE_RECOMPUTE_NONE, 3, 0, 48);
  test_fused_vs_unfused("llama GQA, 6 layers", LLAMA6, POSE_PRECISION_BF16, POSE_RECOMPUTE_NONE, 5, 1, 0);
  test_fused_vs_unfused("llama GQA, 6 layers", LLAMA6, POSE_PRECISION_BF16, POSE_RECOMPUTE_NONE, 8, 0, 0);
  test_fused_vs_unfused("qwen2 tied, biases", QWEN_TIED, POSE_PRECISION_BF16, POSE_RECOMPUTE_LAYER, 3, 1, 0);
  test_fused_vs_unfused("llama biases, head dim 32", LLAMA_BIAS32, POSE_PRECISION_BF16, POSE_RECOMPUTE_NONE, 4, 0, 48);
  test_memory();
  test_reproducible();
  test_guards();
  test_errors();
  gfree_all();
  return test_summary("test_fused_update");
}
