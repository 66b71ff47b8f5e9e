/* KV cache for incremental decoding: per layer, the rotated keys and the values of every token seen so far. A
 * decode step runs the decoder on the new tokens only, attending to the cache (causal over token index, as in a
 * full forward), and returns the last token's logits per row. */
#include <stdlib.h>

#include "model_internal.h"
#ifdef POSE_HAVE_CUDA
#include "model_gpu.h"
#endif

pose_status pose_kv_cache_new(const pose_model *m, int64_t B, int64_t capacity, pose_kv_cache **out) {
  *out = NULL;
  if (B < 1 || capacity < 1)
    return pose_error(POSE_EINVAL, "kv cache: batch %lld and capacity %lld must be positive", (long long)B,
                      (long long)capacity);
  pose_kv_cache *kv = calloc(1, sizeof *kv);
  if (!kv) return pose_error(POSE_ENOMEM, "kv cache: out of memory");
  kv->B = B;
  kv->cap = capacity;
  kv->layers = m->cfg.layers;
  kv->kvdim = m->kvdim;
  kv->dev = -1;
#ifdef POSE_HAVE_CUDA
  if (m->gpu) { /* the cache lives beside the weights, in bf16 */
    pose_status st = pose_gpu_kv_alloc(m, kv);
    if (st != POSE_OK) {
      pose_kv_cache_free(kv);
      return st;
    }
    *out = kv;
    return POSE_OK;
  }
#endif
  if (m->dev.type != POSE_CPU) {
    free(kv);
    return pose_error(POSE_EUNSUPPORTED, "kv cache: this build has no CUDA backend");
  }
  size_t n = (size_t)(kv->layers * B * capacity * kv->kvdim);
  kv->k = malloc(n * sizeof(float));
  kv->v = malloc(n * sizeof(float));
  if (!kv->k || !kv->v) {
    pose_kv_cache_free(kv);
    return pose_error(POSE_ENOMEM, "kv cache: cannot allocate %.1f MB", 2.0 * n * 4 / 1e6);
  }
  *out = kv;
  return POSE_OK;
}

void pose_kv_cache_free(pose_kv_cache *kv) {
  if (!kv) return;
#ifdef POSE_HAVE_CUDA
  pose_gpu_kv_free(kv);
#endif
  free(kv->k);
  free(kv->v);
  free(kv);
}

void pose_kv_cache_reset(pose_kv_cache *kv) { kv->len = 0; }
int64_t pose_kv_cache_len(const pose_kv_cache *kv) { return kv->len; }

pose_status pose_model_decode(pose_model *m, pose_kv_cache *kv, const int64_t *ids, const int64_t *pos, int64_t B,
                              int64_t T, float *logits_last) {
  if (!kv) return pose_error(POSE_EINVAL, "decode: no cache");
  int64_t *dpos = NULL;
  if (!pos) { /* default: continue the cache, kv->len + t */
    if (B < 1 || T < 1) return pose_error(POSE_EINVAL, "decode: batch and length must be positive");
    dpos = malloc(sizeof(int64_t) * (size_t)(B * T));
    if (!dpos) return pose_error(POSE_ENOMEM, "decode: out of memory");
    for (int64_t b = 0; b < B; b++) for (int64_t t = 0; t < T; t++) dpos[b * T + t] = kv->len + t;
  }
  pose_model_run_args a = {.ids = ids, .pos = pos ? pos : dpos, .B = B, .T = T, .logits = logits_last, .kv = kv};
  pose_status st = pose_model_run(m, &a);
  free(dpos);
  return st;
}
