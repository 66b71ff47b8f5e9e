/* Long-context machinery of the GPU decoder (cuda/model_gpu.cu) on small models:
 * - the MLP in row chunks: chunked (64 rows, a partial last chunk) against one chunk over all rows. The forward's
 *   products see other M (cuBLASLt may pick another kernel) and the weight gradients of the MLP sum the tokens in
 *   chunk groups, so the comparison has a tolerance; the count of bit-equal values is printed.
 * - recompute policies at a fixed chunking: none, layer and offload (layer inputs in pinned host memory) give
 *   bit-identical losses and gradients, repeated and accumulated calls included, a 1-layer model (nothing to copy),
 *   a longer call after a shorter one (the host buffer grows), and 3 trainer steps (weights bit-identical).
 * - the memory plan (pose_model_memory_plan): its activation bytes against the pool's high-water mark of a run, the
 *   order of the policies, the host bytes of offload, and its errors. */
#include <cjson/cJSON.h>
#include <stdlib.h>

#include "gputest.h"
#include "model.h"
#include "model_gpu.h"
#include "trainer.h"

static pose_device GPU = {POSE_CUDA, 0};

static pose_model *make(const char *cfg_text, uint64_t seed) {
  cJSON *cfg = cJSON_Parse(cfg_text);
  pose_model *m = NULL;
  CHECK_OK(pose_model_init(cfg, seed, GPU, &m));
  cJSON_Delete(cfg);
  return m;
}

static float *all_grads(pose_model *m) {
  int64_t n = pose_model_numel(m), off = 0;
  float *g = malloc(sizeof(float) * (size_t)n);
  for (size_t i = 0; i < pose_model_num_params(m); i++) {
    CHECK_OK(pose_model_grad_get(m, i, g + off));
    off += pose_model_param_info(m, i)->numel;
  }
  return g;
}

static float *all_weights(pose_model *m) {
  int64_t n = pose_model_numel(m), off = 0;
  float *w = malloc(sizeof(float) * (size_t)n);
  for (size_t i = 0; i < pose_model_num_params(m); i++) {
    CHECK_OK(pose_model_param_get(m, i, w + off));
    off += pose_model_param_info(m, i)->numel;
  }
  return w;
}

static double rel_errq(const float *a, const float *ref, size_t n, size_t *equal) {
  double num = 0, den = 0;
  size_t eq = 0;
  for (size_t i = 0; i < n; i++) {
    if (!isfinite(a[i])) return INFINITY;
    double d = (double)a[i] - ref[i];
    num += d * d;
    den += (double)ref[i] * ref[i];
    eq += memcmp(&a[i], &ref[i], sizeof(float)) == 0;
  }
  if (equal) *equal = eq;
  return den > 0 ? sqrt(num / den) : sqrt(num);
}

/* one backward from zeroed gradients under (policy, chunk rows): loss and all gradients */
static float *grads_of(pose_model *m, pose_recompute r, int64_t chunk, const int64_t *ids, const int64_t *pos,
                       int64_t B, int64_t T, double *loss) {
  CHECK_OK(pose_model_set_recompute(m, r));
  CHECK_OK(pose_gpu_model_set_chunk_rows(m, chunk));
  pose_model_zero_grad(m);
  *loss = 0;
  CHECK_OK(pose_model_backward(m, ids, pos, NULL, B, T, 1.0, loss, NULL));
  return all_grads(m);
}

static void same_bits(const float *a, const float *b, size_t n, double la, double lb, const char *what) {
  size_t eq = 0;
  double e = rel_errq(a, b, n, &eq);
  int ok = eq == n && la == lb;
  printf("  %-58s %zu of %zu gradients bit-equal, loss %.9f vs %.9f%s\n", what, eq, n, la, lb, ok ? "" : "  FAIL");
  if (ok) t_pass++;
  else {
    t_fail++;
    fprintf(stderr, "%s: not bit-identical (rel err %.3e)\n", what, e);
  }
}

static int64_t *ids_for(int64_t n, int64_t V, uint64_t seed) {
  int64_t *ids = malloc(sizeof(int64_t) * (size_t)n);
  pose_rng r;
  pose_rng_init(&r, seed, 3);
  for (int64_t i = 0; i < n; i++) ids[i] = (int64_t)pose_rng_below(&r, (uint64_t)V);
  return ids;
}

/* PoSE-style positions: a jump in the middle of each row */
static int64_t *positions(int64_t B, int64_t T) {
  int64_t *pos = malloc(sizeof(int64_t) * (size_t)(B * T));
  for (int64_t b = 0; b < B; b++)
    for (int64_t t = 0; t < T; t++) pos[b * T + t] = t < T / 2 ? t : t + 500 + 900 * b;
  return pos;
}

static void test_model_policies(const char *label, const char *cfg, int64_t B, int64_t T) {
  printf("%s (B=%lld, T=%lld, chunks of 64 rows)\n", label, (long long)B, (long long)T);
  pose_model *m = make(cfg, 7);
  if (!m) return;
  const int64_t N = B * T, V = pose_model_vocab(m);
  const size_t n = (size_t)pose_model_numel(m);
  int64_t *ids = ids_for(N, V, 11 + (uint64_t)T), *pos = positions(B, T);

  /* chunked against one chunk: forward logits, then gradients */
  float *l0 = malloc(sizeof(float) * (size_t)(N * V)), *l1 = malloc(sizeof(float) * (size_t)(N * V));
  CHECK_OK(pose_gpu_model_set_chunk_rows(m, 0));
  CHECK_OK(pose_model_forward(m, ids, pos, B, T, l0));
  CHECK_OK(pose_gpu_model_set_chunk_rows(m, 64));
  CHECK_OK(pose_model_forward(m, ids, pos, B, T, l1));
  size_t eq = 0;
  double e = rel_errq(l1, l0, (size_t)(N * V), &eq);
  printf("  logits chunked vs one chunk: rel err %.3e (tol 1e-2), %zu of %lld bit-equal\n", e, eq, (long long)(N * V));
  CHECK(e <= 1e-2);
  free(l0);
  free(l1);

  double L0, L1, L2, L3, L4, L5;
  float *g0 = grads_of(m, POSE_RECOMPUTE_NONE, 0, ids, pos, B, T, &L0);
  float *g1 = grads_of(m, POSE_RECOMPUTE_NONE, 64, ids, pos, B, T, &L1);
  e = rel_errq(g1, g0, n, &eq);
  printf("  gradients chunked vs one chunk: rel err %.3e (tol 2e-2), %zu of %zu bit-equal; loss |diff| %.2e\n", e,
         eq, n, fabs(L1 - L0));
  CHECK(e <= 2e-2);
  CHECK_NEAR(L1, L0, 2e-3);

  /* the policies at the same chunking: the same bits */
  float *g2 = grads_of(m, POSE_RECOMPUTE_LAYER, 64, ids, pos, B, T, &L2);
  same_bits(g2, g1, n, L2, L1, "chunked: recompute=layer vs none");
  float *g3 = grads_of(m, POSE_RECOMPUTE_OFFLOAD, 64, ids, pos, B, T, &L3);
  same_bits(g3, g1, n, L3, L1, "chunked: recompute=offload vs none");
  float *g4 = grads_of(m, POSE_RECOMPUTE_OFFLOAD, 0, ids, pos, B, T, &L4);
  same_bits(g4, g0, n, L4, L0, "one chunk: recompute=offload vs none");
  float *g5 = grads_of(m, POSE_RECOMPUTE_OFFLOAD, 64, ids, pos, B, T, &L5);
  same_bits(g5, g3, n, L5, L3, "chunked: offload again (host buffer reused)");
  /* selective: the attention outputs kept from the forward instead of recomputed (the kernels are deterministic) */
  double L6, L7;
  float *g6 = grads_of(m, POSE_RECOMPUTE_SELECTIVE, 64, ids, pos, B, T, &L6);
  same_bits(g6, g1, n, L6, L1, "chunked: recompute=selective vs none");
  float *g7 = grads_of(m, POSE_RECOMPUTE_SELECTIVE, 0, ids, pos, B, T, &L7);
  same_bits(g7, g0, n, L7, L0, "one chunk: recompute=selective vs none");
  free(g6);
  free(g7);
  /* accumulation: a second offload backward without zeroing adds as a second layer backward does */
  CHECK_OK(pose_model_backward(m, ids, pos, NULL, B, T, 0.5, NULL, NULL));
  float *ga = all_grads(m);
  CHECK_OK(pose_model_set_recompute(m, POSE_RECOMPUTE_LAYER));
  pose_model_zero_grad(m);
  CHECK_OK(pose_model_backward(m, ids, pos, NULL, B, T, 1.0, NULL, NULL));
  CHECK_OK(pose_model_backward(m, ids, pos, NULL, B, T, 0.5, NULL, NULL));
  float *gb = all_grads(m);
  same_bits(ga, gb, n, 0, 0, "chunked: accumulated offload vs layer (1 + 0.5)");

  /* a longer call after the shorter ones: the pinned buffer grows */
  const int64_t T2 = 2 * T + 8, N2 = B * T2;
  int64_t *ids2 = ids_for(N2, V, 99), *pos2 = positions(B, T2);
  double M1, M2;
  float *h1 = grads_of(m, POSE_RECOMPUTE_LAYER, 64, ids2, pos2, B, T2, &M1);
  float *h2 = grads_of(m, POSE_RECOMPUTE_OFFLOAD, 64, ids2, pos2, B, T2, &M2);
  same_bits(h2, h1, n, M2, M1, "longer call: offload vs layer");
  pose_memory_plan p;
  CHECK_OK(pose_model_memory_plan(m, B, T2, 1, POSE_RECOMPUTE_OFFLOAD, &p));
  const cJSON *c = pose_model_config(m);
  const int64_t L = (int64_t)cJSON_GetObjectItem(c, "num_hidden_layers")->valuedouble;
  const int64_t D = (int64_t)cJSON_GetObjectItem(c, "hidden_size")->valuedouble;
  CHECK(p.host_pinned == (size_t)((L - 1) * N2 * D * 2)); /* layer inputs 0..L-2 in bf16 */

  free(h1);
  free(h2);
  free(ids2);
  free(pos2);
  free(g0);
  free(g1);
  free(g2);
  free(g3);
  free(g4);
  free(g5);
  free(ga);
  free(gb);
  free(ids);
  free(pos);
  pose_model_free(m);
}

/* trainer steps: offload and layer from the same weights end on the same bits */
static void test_trainer(const char *cfg) {
  printf("trainer: 3 AdamW steps, recompute=offload vs layer (chunks of 64 rows)\n");
  pose_model *a = make(cfg, 21), *b = make(cfg, 21);
  if (!a || !b) return;
  CHECK_OK(pose_model_set_recompute(a, POSE_RECOMPUTE_LAYER));
  CHECK_OK(pose_model_set_recompute(b, POSE_RECOMPUTE_OFFLOAD));
  CHECK_OK(pose_gpu_model_set_chunk_rows(a, 64));
  CHECK_OK(pose_gpu_model_set_chunk_rows(b, 64));
  pose_trainer_opts o;
  pose_trainer_defaults(&o);
  o.lr = 3e-3;
  o.clip = 1.0;
  pose_trainer *ta = NULL, *tb = NULL;
  CHECK_OK(pose_trainer_new(a, &o, &ta));
  CHECK_OK(pose_trainer_new(b, &o, &tb));
  const int64_t B = 2, T = 72;
  int64_t *ids = ids_for(B * T, pose_model_vocab(a), 5), *pos = positions(B, T);
  for (int k = 0; k < 3 && ta && tb; k++) {
    double la = 0, lb = 0;
    CHECK_OK(pose_trainer_step(ta, ids, pos, NULL, B, T, &la, NULL, NULL));
    CHECK_OK(pose_trainer_step(tb, ids, pos, NULL, B, T, &lb, NULL, NULL));
    printf("  step %d: loss layer %.9f offload %.9f\n", k + 1, la, lb);
    CHECK(la == lb);
  }
  float *wa = all_weights(a), *wb = all_weights(b);
  size_t n = (size_t)pose_model_numel(a), eq = 0;
  rel_errq(wb, wa, n, &eq);
  printf("  weights after 3 steps: %zu of %zu bit-equal\n", eq, n);
  CHECK(eq == n);
  free(wa);
  free(wb);
  free(ids);
  free(pos);
  pose_trainer_free(ta);
  pose_trainer_free(tb);
  pose_model_free(a);
  pose_model_free(b);
}

/* the plan against what a run takes from the pool */
static void test_plan(const char *cfg) {
  printf("memory plan\n");
  pose_model *m = make(cfg, 3);
  if (!m) return;
  const int64_t B = 2, T = 160, N = B * T;
  int64_t *ids = ids_for(N, pose_model_vocab(m), 8);
  pose_memory_plan pn, pl, po, pf;
  CHECK_OK(pose_model_memory_plan(m, B, T, 1, POSE_RECOMPUTE_NONE, &pn));
  CHECK_OK(pose_model_memory_plan(m, B, T, 1, POSE_RECOMPUTE_LAYER, &pl));
  CHECK_OK(pose_model_memory_plan(m, B, T, 1, POSE_RECOMPUTE_OFFLOAD, &po));
  CHECK_OK(pose_model_memory_plan(m, B, T, 0, POSE_RECOMPUTE_NONE, &pf));
  printf("  activations: none %zu, layer %zu, offload %zu, forward %zu bytes; host (offload) %zu\n", pn.activations,
         pl.activations, po.activations, pf.activations, po.host_pinned);
  CHECK(pn.activations > pl.activations && pl.activations > po.activations && po.activations > pf.activations);
  CHECK(pn.host_pinned == 0 && pl.host_pinned == 0 && pf.host_pinned == 0);
  const cJSON *c = pose_model_config(m);
  int64_t L = (int64_t)cJSON_GetObjectItem(c, "num_hidden_layers")->valuedouble;
  int64_t D = (int64_t)cJSON_GetObjectItem(c, "hidden_size")->valuedouble;
  CHECK(po.host_pinned == (size_t)((L - 1) * N * D * 2));
  CHECK(pn.chunk_rows == N && pf.grads == 0 && pf.optimizer == 0 && pn.grads > 0);
  CHECK(pn.total == pn.weights + pn.grads + pn.optimizer + pn.activations + pn.temporary);
  CHECK_OK(pose_gpu_model_set_chunk_rows(m, 64));
  pose_memory_plan pc;
  CHECK_OK(pose_model_memory_plan(m, B, T, 1, POSE_RECOMPUTE_LAYER, &pc));
  CHECK(pc.chunk_rows == 64 && pc.activations < pl.activations);
  /* a run's pool high-water mark above what was in use: the workspace plus at most the largest temporary */
  const pose_recompute pols[3] = {POSE_RECOMPUTE_NONE, POSE_RECOMPUTE_LAYER, POSE_RECOMPUTE_OFFLOAD};
  for (int k = 0; k < 3; k++) {
    pose_memory_plan p;
    CHECK_OK(pose_model_memory_plan(m, B, T, 1, pols[k], &p));
    CHECK_OK(pose_model_set_recompute(m, pols[k]));
    CHECK_OK(pose_model_backward(m, ids, NULL, NULL, B, T, 1.0, NULL, NULL)); /* gradients exist from here on */
    size_t used = 0, peak = 0;
    CUDA_OK(cudaDeviceSynchronize());
    CHECK_OK(pose_gpu_memory(0, 1, &used, &peak));
    CHECK_OK(pose_model_backward(m, ids, NULL, NULL, B, T, 1.0, NULL, NULL));
    CUDA_OK(cudaDeviceSynchronize());
    CHECK_OK(pose_gpu_memory(0, 0, NULL, &peak));
    size_t delta = peak - used;
    printf("  %-8s plan: activations %zu + temporary <= %zu; the run took %zu from the pool\n",
           pose_recompute_name(pols[k]), p.activations, p.temporary, delta);
    /* (3 x temporary: headroom for scratch blocks whose stream-ordered release the pool has not counted yet) */
    CHECK(delta >= p.activations && delta <= p.activations + 3 * p.temporary + ((size_t)4 << 20));
  }
  /* errors */
  CHECK_ERR(pose_model_memory_plan(m, 0, T, 1, POSE_RECOMPUTE_NONE, &pn), POSE_EINVAL, "bad shape");
  CHECK_ERR(pose_model_memory_plan(m, 1, T, 1, (pose_recompute)9, &pn), POSE_EINVAL, "unknown recompute");
  CHECK_ERR(pose_gpu_model_set_chunk_rows(m, -1), POSE_EINVAL, "chunk");
  free(ids);
  pose_model_free(m);
}

int main(void) {
  gpu_require("test_model_longctx");
  const char *llama = "{\"model_type\":\"llama\",\"vocab_size\":320,\"hidden_size\":256,\"intermediate_size\":512,"
                      "\"num_hidden_layers\":3,\"num_attention_heads\":4,\"num_key_value_heads\":2,\"head_dim\":64,"
                      "\"rms_norm_eps\":1e-5,\"rope_theta\":10000.0,\"max_position_embeddings\":4096,"
                      "\"initializer_range\":0.05,\"tie_word_embeddings\":false}";
  test_model_policies("llama, 3 layers, GQA 4/2, head dim 64 (flash)", llama, 2, 96);
  test_model_policies("llama, 2 layers, head dim 32 (reference attention), biases in attention and MLP",
                      "{\"model_type\":\"llama\",\"vocab_size\":200,\"hidden_size\":128,\"intermediate_size\":256,"
                      "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"num_key_value_heads\":2,\"head_dim\":32,"
                      "\"mlp_bias\":true,\"attention_bias\":true,\"rope_theta\":10000.0,"
                      "\"max_position_embeddings\":4096,\"initializer_range\":0.05,\"tie_word_embeddings\":false}",
                      2, 80);
  test_model_policies("qwen2, 1 layer (offload copies nothing), q/k/v biases, tied, head dim 128 (flash)",
                      "{\"model_type\":\"qwen2\",\"vocab_size\":300,\"hidden_size\":256,\"intermediate_size\":384,"
                      "\"num_hidden_layers\":1,\"num_attention_heads\":2,\"num_key_value_heads\":1,"
                      "\"rms_norm_eps\":1e-6,\"rope_theta\":1000000.0,\"max_position_embeddings\":8192,"
                      "\"initializer_range\":0.05,\"tie_word_embeddings\":true}",
                      1, 136);
  test_trainer(llama);
  test_plan(llama);
  gfree_all();
  return test_summary("test_model_longctx");
}
