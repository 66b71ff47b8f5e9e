/* KV-cache decoding on cuda models (pose_model_decode through cuda/model_gpu.cu: the bf16 cache holds each token's
 * rotated k|v rows, the flash kernels attend with q_off = cache length): a prefill at PoSE-style positions then
 * single-token steps, against the CPU decode of the same bf16-rounded weights and against the GPU's own full forward
 * of the whole sequence; greedy generation against the CPU's; the pure-bf16 policy decodes too; error paths. */
#include <cjson/cJSON.h>
#include <stdlib.h>

#include "generate.h"
#include "gputest.h"
#include "model.h"

static pose_device GPU = {POSE_CUDA, 0};

static double rel_errf(const float *a, const float *ref, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; i++) {
    double d = (double)a[i] - ref[i];
    num += d * d;
    den += (double)ref[i] * ref[i];
  }
  return den > 0 ? sqrt(num / den) : sqrt(num);
}

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

static void test_decode(const char *label, const char *cfg_text, int bf16_policy) {
  printf("%s\n", label);
  cJSON *cfg = cJSON_Parse(cfg_text);
  pose_model *mc = NULL, *mg = NULL;
  CHECK_OK(pose_model_init(cfg, 21, POSE_DEVICE_CPU, &mc));
  CHECK_OK(pose_model_init(cfg, 21, GPU, &mg));
  cJSON_Delete(cfg);
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
  if (!kc || !kg) return;
  float *lc = malloc(sizeof(float) * (size_t)(B * V)), *lg = malloc(sizeof(float) * (size_t)(B * V));
  int64_t *sid = malloc(sizeof(int64_t) * (size_t)(B * L)), *spos = malloc(sizeof(int64_t) * (size_t)(B * L));
  double worst = 0;
  /* prefill P tokens, then S steps of one token */
  for (int64_t step = 0, t0 = 0; t0 < L; step++) {
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
  float *full = malloc(sizeof(float) * (size_t)(B * L * V));
  CHECK_OK(pose_model_forward(mg, ids, pos, B, L, full));
  float *last = malloc(sizeof(float) * (size_t)(B * V));
  for (int64_t b = 0; b < B; b++) memcpy(last + b * V, full + (b * L + L - 1) * V, sizeof(float) * (size_t)V);
  double ef = rel_errf(lg, last, (size_t)(B * V));
  printf("  last decode step vs the GPU's full forward: rel %.3e (tol 2e-2)\n", ef);
  CHECK(ef <= 2e-2);
  /* errors: full cache, wrong batch, a cache of the other device */
  CHECK_ERR(pose_model_decode(mg, kg, sid, NULL, B, 1, lg), POSE_EINVAL, "capacity");
  pose_kv_cache_reset(kg);
  CHECK_ERR(pose_model_decode(mg, kg, sid, NULL, 1, 1, lg), POSE_EINVAL, "batch");
  CHECK_ERR(pose_model_decode(mg, kc, sid, NULL, B, 1, lg), POSE_EINVAL, "another device");
  CHECK_ERR(pose_model_decode(mc, kg, sid, NULL, B, 1, lc), POSE_EINVAL, "another device");
  /* greedy generation: the same ids as the CPU's in most places (bf16 activations may flip near-ties) */
  pose_generate_opts go;
  pose_generate_defaults(&go);
  go.max_new_tokens = 8;
  int64_t oc[16], og[16], nc[2], ng[2];
  CHECK_OK(pose_model_generate(mc, ids, pos, B, P, &go, oc, nc));
  CHECK_OK(pose_model_generate(mg, ids, pos, B, P, &go, og, ng));
  int same = 0;
  for (int i = 0; i < 16; i++) same += oc[i] == og[i];
  printf("  greedy generation, 2 x 8 tokens: %d of 16 equal to the CPU's (first tokens %lld %lld / %lld %lld)\n", same,
         (long long)oc[0], (long long)oc[8], (long long)og[0], (long long)og[8]);
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

int main(void) {
  gpu_require("test_model_decode");
  test_decode("llama, GQA 4/2, head dim 64 (flash kernels with q_off)",
              "{\"model_type\":\"llama\",\"vocab_size\":384,\"hidden_size\":256,\"intermediate_size\":512,"
              "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"num_key_value_heads\":2,\"head_dim\":64,"
              "\"rms_norm_eps\":1e-5,\"rope_theta\":10000.0,\"max_position_embeddings\":4096,"
              "\"initializer_range\":0.05,\"tie_word_embeddings\":false}",
              0);
  test_decode("mistral, sliding window 24, GQA 4/1, head dim 64, pure-bf16 policy",
              "{\"model_type\":\"mistral\",\"vocab_size\":256,\"hidden_size\":256,\"intermediate_size\":512,"
              "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"num_key_value_heads\":1,\"head_dim\":64,"
              "\"sliding_window\":24,\"rms_norm_eps\":1e-5,\"rope_theta\":10000.0,"
              "\"max_position_embeddings\":4096,\"initializer_range\":0.05,\"tie_word_embeddings\":false}",
              1);
  test_decode("qwen2, biases, tied embeddings, head dim 32 (reference attention with q_off)",
              "{\"model_type\":\"qwen2\",\"vocab_size\":300,\"hidden_size\":128,\"intermediate_size\":256,"
              "\"num_hidden_layers\":2,\"num_attention_heads\":4,\"num_key_value_heads\":2,"
              "\"rms_norm_eps\":1e-6,\"rope_theta\":1000000.0,\"max_position_embeddings\":8192,"
              "\"initializer_range\":0.05,\"tie_word_embeddings\":true}",
              0);
  return test_summary("test_model_decode");
}
