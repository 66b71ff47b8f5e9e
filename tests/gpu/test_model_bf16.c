/* The pure-bf16 training policy of cuda models (pose_model_set_precision(m, POSE_PRECISION_BF16)): bf16 weights,
 * fp32 gradients, bf16 AdamW moments updated by the stochastic-rounding AdamW. Checked here: a 20-step training run
 * tracks the fp32-master run from the same initial weights, the device pool's bytes per parameter (masters dropped:
 * -4; gradients + moments: 8 against 12), reproducibility from sr_seed and the step (and a different sr_seed gives
 * different weights), parameter get/set through the bf16 weights, the trainer state round trip, switching back to
 * fp32 masters, and the error paths. Every comparison prints what it measured. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gputest.h"
#include "model.h"
#include "model_gpu.h"
#include "trainer.h"

static pose_device GPU = {POSE_CUDA, 0};

static const char *LLAMA_GQA64 =
    "{\"model_type\":\"llama\",\"vocab_size\":384,\"hidden_size\":256,\"intermediate_size\":512,"
    "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"num_key_value_heads\":2,\"head_dim\":64,"
    "\"rms_norm_eps\":1e-5,\"rope_theta\":10000.0,\"max_position_embeddings\":4096,\"initializer_range\":0.05,"
    "\"tie_word_embeddings\":false}";

static pose_model *new_model(uint64_t seed, pose_precision p) {
  cJSON *cfg = cJSON_Parse(LLAMA_GQA64);
  pose_model *m = NULL;
  CHECK_OK(pose_model_init(cfg, seed, GPU, &m));
  cJSON_Delete(cfg);
  if (m) CHECK_OK(pose_model_set_precision(m, p));
  return m;
}

static size_t used_bytes(void) {
  size_t used = 0;
  CUDA_OK(cudaDeviceSynchronize());
  CHECK_OK(pose_gpu_memory(0, 0, &used, NULL));
  return used;
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
    for (int64_t t = 0; t < T; t++) p[b * T + t] = t < T / 2 ? t : t + 300 * (b + 1);
  return p;
}

static pose_trainer_opts opts20(void) {
  pose_trainer_opts o;
  pose_trainer_defaults(&o);
  o.lr = 3e-3;
  o.weight_decay = 0.01;
  o.clip = 1.0;
  o.warmup = 2;
  o.steps = 20;
  o.schedule = POSE_SCHED_COSINE;
  o.sr_seed = 1234;
  return o;
}

static void read_all(pose_model *m, float *dst) {
  int64_t off = 0;
  for (size_t i = 0; i < pose_model_num_params(m); i++) {
    CHECK_OK(pose_model_param_get(m, i, dst + off));
    off += pose_model_param_info(m, i)->numel;
  }
}

static void test_memory_and_trajectory(void) {
  printf("bf16 policy against fp32 masters: memory per parameter and a 20-step trajectory\n");
  const int64_t B = 2, T = 64, N = B * T, S = 20;
  size_t u0 = used_bytes();
  pose_model *mf = new_model(3, POSE_PRECISION_FP32_MASTER);
  size_t u1 = used_bytes();
  pose_model *mb = new_model(3, POSE_PRECISION_FP32_MASTER); /* switched below, to measure the drop */
  if (!mf || !mb) return;
  size_t u2 = used_bytes();
  CHECK_OK(pose_model_set_precision(mb, POSE_PRECISION_BF16));
  CHECK(pose_model_get_precision(mb) == POSE_PRECISION_BF16);
  CHECK(pose_model_get_precision(mf) == POSE_PRECISION_FP32_MASTER);
  size_t u3 = used_bytes();
  const double P = (double)pose_model_numel(mf);
  double w_f = (double)(u1 - u0) / P, w_b = (double)(u3 - u1) / P, drop = (double)(u2 - u3) / P;
  printf("  %.0f parameters; weights on the device: fp32-master %.3f B/param, bf16 %.3f B/param (masters freed: "
         "%.3f B/param)\n", P, w_f, w_b, drop);
  CHECK(drop >= 4.0 && drop <= 4.2);
  CHECK(w_f >= 6.0 && w_f <= 6.3);
  CHECK(w_b >= 2.0 && w_b <= 2.15);
  /* the bf16 weights are the fp32 model's bf16 copies: same initial values */
  int64_t n = pose_model_numel(mf);
  float *wf = malloc(sizeof(float) * (size_t)n), *wb = malloc(sizeof(float) * (size_t)n);
  read_all(mf, wf);
  read_all(mb, wb);
  int64_t diff = 0;
  for (int64_t i = 0; i < n; i++) diff += wb[i] != pose_bf16_to_f32(pose_f32_to_bf16(wf[i]));
  printf("  initial bf16 weights differing from RNE(fp32 masters): %lld of %lld\n", (long long)diff, (long long)n);
  CHECK(diff == 0);
  /* the fp32 model starts from the same rounded weights, so the runs differ by the policy alone */
  int64_t off = 0;
  for (size_t i = 0; i < pose_model_num_params(mf); i++) {
    CHECK_OK(pose_model_param_set(mf, i, wb + off));
    off += pose_model_param_info(mf, i)->numel;
  }

  pose_trainer_opts o = opts20();
  pose_trainer *tf = NULL, *tb = NULL;
  int64_t *ids = random_ids(N, pose_model_vocab(mf), 99), *pos = pose_positions(B, T);
  size_t v0 = used_bytes();
  CHECK_OK(pose_trainer_new(mf, &o, &tf));
  if (tf) CHECK_OK(pose_trainer_step(tf, ids, pos, NULL, B, T, NULL, NULL, NULL)); /* gradients allocated */
  size_t v1 = used_bytes();
  CHECK_OK(pose_trainer_new(mb, &o, &tb));
  if (tb) CHECK_OK(pose_trainer_step(tb, ids, pos, NULL, B, T, NULL, NULL, NULL));
  size_t v2 = used_bytes();
  if (!tf || !tb) return;
  double s_f = (double)(v1 - v0) / P, s_b = (double)(v2 - v1) / P;
  printf("  gradients + moments: fp32-master %.3f B/param, bf16 %.3f B/param; total fp32-master %.2f, bf16 %.2f "
         "B/param (PyTorch peer's pure bf16: ~8)\n", s_f, s_b, w_f + s_f, w_b + s_b);
  CHECK(s_f >= 12.0 && s_f <= 12.5);
  CHECK(s_b >= 8.0 && s_b <= 8.4);
  /* the first step above was step 1 of both; restart both trajectories from the same weights for the comparison */
  pose_trainer_free(tf);
  pose_trainer_free(tb);
  tf = tb = NULL;
  off = 0;
  for (size_t i = 0; i < pose_model_num_params(mf); i++) {
    CHECK_OK(pose_model_param_set(mf, i, wb + off));
    CHECK_OK(pose_model_param_set(mb, i, wb + off));
    off += pose_model_param_info(mf, i)->numel;
  }
  CHECK_OK(pose_trainer_new(mf, &o, &tf));
  CHECK_OK(pose_trainer_new(mb, &o, &tb));
  if (!tf || !tb) return;
  double worst = 0, first = 0, last_f = 0, last_b = 0;
  for (int64_t k = 0; k < S; k++) {
    double lf = 0, lb = 0, nf = 0, nb = 0;
    CHECK_OK(pose_trainer_step(tf, ids, pos, NULL, B, T, &lf, NULL, &nf));
    CHECK_OK(pose_trainer_step(tb, ids, pos, NULL, B, T, &lb, NULL, &nb));
    double e = fabs(lb - lf) / lf;
    if (e > worst) worst = e;
    if (k == 0) first = lf;
    last_f = lf;
    last_b = lb;
    printf("  step %2lld  loss fp32-master %.5f bf16 %.5f (rel %.2e)  grad norm %.4f / %.4f\n", (long long)k + 1, lf, lb,
           e, nf, nb);
  }
  printf("  worst relative loss difference %.3e (tol 5e-2); last losses %.5f / %.5f from %.5f\n", worst, last_f,
         last_b, first);
  CHECK(worst <= 5e-2);
  CHECK(last_f < 0.8 * first && last_b < 0.8 * first);
  pose_trainer_free(tf);
  pose_trainer_free(tb);
  pose_model_free(mf);
  pose_model_free(mb);
  free(wf);
  free(wb);
  free(ids);
  free(pos);
}

/* Three steps of a fresh bf16 model; returns the losses and (in w) the weights afterwards. */
static void run3(uint64_t sr_seed, double *loss, float *w) {
  pose_model *m = new_model(7, POSE_PRECISION_BF16);
  if (!m) return;
  pose_trainer_opts o = opts20();
  o.sr_seed = sr_seed;
  pose_trainer *t = NULL;
  CHECK_OK(pose_trainer_new(m, &o, &t));
  int64_t *ids = random_ids(2 * 32, pose_model_vocab(m), 5);
  for (int k = 0; k < 3 && t; k++) CHECK_OK(pose_trainer_step(t, ids, NULL, NULL, 2, 32, &loss[k], NULL, NULL));
  read_all(m, w);
  pose_trainer_free(t);
  pose_model_free(m);
  free(ids);
}

static void test_reproducible(void) {
  printf("stochastic rounding reproducible by sr_seed and step\n");
  pose_model *m = new_model(7, POSE_PRECISION_BF16);
  if (!m) return;
  int64_t n = pose_model_numel(m);
  pose_model_free(m);
  float *a = malloc(sizeof(float) * (size_t)n), *b = malloc(sizeof(float) * (size_t)n),
        *c = malloc(sizeof(float) * (size_t)n);
  double la[3] = {0}, lb[3] = {0}, lc[3] = {0};
  run3(11, la, a);
  run3(11, lb, b);
  run3(12, lc, c);
  int64_t same_ab = 0, same_ac = 0, nonbf16 = 0;
  for (int64_t i = 0; i < n; i++) {
    same_ab += a[i] == b[i];
    same_ac += a[i] == c[i];
    nonbf16 += a[i] != pose_bf16_to_f32(pose_f32_to_bf16(a[i]));
  }
  printf("  same seed: %lld of %lld weights equal, losses %.7f %.7f %.7f / %.7f %.7f %.7f; other seed: %lld equal\n",
         (long long)same_ab, (long long)n, la[0], la[1], la[2], lb[0], lb[1], lb[2], (long long)same_ac);
  CHECK(same_ab == n);
  CHECK(la[0] == lb[0] && la[1] == lb[1] && la[2] == lb[2]);
  CHECK(same_ac < n);    /* other rounding decisions */
  CHECK(la[0] == lc[0]); /* the first loss is before any update */
  CHECK(nonbf16 == 0);   /* the weights are bf16 values */
  free(a);
  free(b);
  free(c);
}

static void test_state_and_switch(void) {
  printf("trainer state round trip and policy switches under bf16\n");
  char dir[] = "/tmp/pose_gpu_bf16XXXXXX";
  if (!mkdtemp(dir)) return;
  pose_model *ma = new_model(4, POSE_PRECISION_BF16), *mb = new_model(5, POSE_PRECISION_BF16);
  if (!ma || !mb) return;
  pose_trainer_opts o;
  pose_trainer_defaults(&o);
  o.lr = 2e-3;
  o.sr_seed = 99;
  pose_trainer *ta = NULL, *tb = NULL;
  CHECK_OK(pose_trainer_new(ma, &o, &ta));
  CHECK_OK(pose_trainer_new(mb, &o, &tb));
  if (!ta || !tb) return;
  int64_t *ids = random_ids(2 * 48, pose_model_vocab(ma), 8);
  double la[5], lb[2];
  for (int k = 0; k < 3; k++) CHECK_OK(pose_trainer_step(ta, ids, NULL, NULL, 2, 48, &la[k], NULL, NULL));
  /* moments read back as fp32 copies of bf16 values */
  const pose_param *p1 = pose_model_param_info(ma, 1);
  float *mm = malloc(sizeof(float) * (size_t)p1->numel), *vv = malloc(sizeof(float) * (size_t)p1->numel);
  CHECK_OK(pose_trainer_moments(ta, 1, mm, vv));
  int64_t nz = 0, nonbf16 = 0;
  for (int64_t i = 0; i < p1->numel; i++) {
    nz += mm[i] != 0 && vv[i] > 0;
    nonbf16 += mm[i] != pose_bf16_to_f32(pose_f32_to_bf16(mm[i])) || vv[i] != pose_bf16_to_f32(pose_f32_to_bf16(vv[i]));
  }
  printf("  %s: %lld of %lld moments non-zero, %lld not bf16 values\n", p1->name, (long long)nz, (long long)p1->numel,
         (long long)nonbf16);
  CHECK(nz > p1->numel / 2 && nonbf16 == 0);
  free(mm);
  free(vv);
  CHECK_OK(pose_trainer_save_state(ta, dir, "b", 1));
  for (int k = 3; k < 5; k++) CHECK_OK(pose_trainer_step(ta, ids, NULL, NULL, 2, 48, &la[k], NULL, NULL));
  void *user = NULL;
  size_t ulen = 0;
  CHECK_OK(pose_trainer_load_state(tb, dir, &user, &ulen));
  free(user);
  CHECK(pose_trainer_steps_done(tb) == 3 && pose_trainer_get_opts(tb)->sr_seed == 99);
  for (int k = 0; k < 2; k++) CHECK_OK(pose_trainer_step(tb, ids, NULL, NULL, 2, 48, &lb[k], NULL, NULL));
  printf("  resumed: steps 4-5 loss %.7f %.7f vs uninterrupted %.7f %.7f\n", lb[0], lb[1], la[3], la[4]);
  CHECK(lb[0] == la[3] && lb[1] == la[4]);
  char path[128];
  snprintf(path, sizeof path, "%s/trainer_state.bin", dir);
  unlink(path);
  rmdir(dir);

  /* param_set under bf16 rounds to nearest; get reads the bf16 values */
  const pose_param *p0 = pose_model_param_info(ma, 0);
  float *w = malloc(sizeof(float) * (size_t)p0->numel), *r = malloc(sizeof(float) * (size_t)p0->numel);
  for (int64_t i = 0; i < p0->numel; i++) w[i] = 0.01f * (float)(i % 97) + 1e-4f;
  CHECK_OK(pose_model_param_set(ma, 0, w));
  CHECK_OK(pose_model_param_get(ma, 0, r));
  int64_t bad = 0;
  for (int64_t i = 0; i < p0->numel; i++) bad += r[i] != pose_bf16_to_f32(pose_f32_to_bf16(w[i]));
  printf("  param_set/get through bf16: %lld of %lld differ from RNE\n", (long long)bad, (long long)p0->numel);
  CHECK(bad == 0);

  /* a trainer refuses a policy changed under it; back to fp32 masters keeps the values */
  CHECK_OK(pose_model_set_precision(ma, POSE_PRECISION_FP32_MASTER));
  CHECK(pose_model_get_precision(ma) == POSE_PRECISION_FP32_MASTER);
  CHECK_OK(pose_model_param_get(ma, 0, w));
  CHECK(!memcmp(w, r, sizeof(float) * (size_t)p0->numel));
  CHECK_ERR(pose_trainer_step(ta, ids, NULL, NULL, 2, 48, NULL, NULL, NULL), POSE_EINVAL, "policy changed");
  pose_trainer *tc = NULL;
  CHECK_OK(pose_trainer_new(ma, &o, &tc)); /* a new trainer under fp32 masters works */
  double lc = 0;
  if (tc) CHECK_OK(pose_trainer_step(tc, ids, NULL, NULL, 2, 48, &lc, NULL, NULL));
  CHECK(isfinite(lc) && lc > 0);
  CHECK_OK(pose_model_set_precision(ma, POSE_PRECISION_BF16)); /* and bf16 again (idempotent twice) */
  CHECK_OK(pose_model_set_precision(ma, POSE_PRECISION_BF16));
  CHECK_ERR(pose_model_set_precision(ma, (pose_precision)7), POSE_EINVAL, "unknown precision");
  CHECK_ERR(pose_gpu_model_init_weights(ma, 1), POSE_EINVAL, "bf16 policy");
  pose_trainer_free(tc);
  free(w);
  free(r);
  pose_trainer_free(ta);
  pose_trainer_free(tb);
  pose_model_free(ma);
  pose_model_free(mb);
  free(ids);
}

int main(void) {
  gpu_require("test_model_bf16");
  test_memory_and_trajectory();
  test_reproducible();
  test_state_and_switch();
  return test_summary("test_model_bf16");
}
