#include "generate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"

void pose_generate_defaults(pose_generate_opts *o) {
  o->max_new_tokens = 16;
  o->temperature = 0;
  o->top_p = 1;
  o->seed = 0;
  o->eos = -1;
}

static _Thread_local const double *g_sort_p; /* qsort has no context argument in C11 */
static int by_prob_desc(const void *a, const void *b) {
  double pa = g_sort_p[*(const int64_t *)a], pb = g_sort_p[*(const int64_t *)b];
  if (pa != pb) return pa < pb ? 1 : -1;
  int64_t ia = *(const int64_t *)a, ib = *(const int64_t *)b;
  return ia < ib ? -1 : ia > ib;
}

/* work: V doubles, idx: V int64 */
int64_t pose_pick_token(const float *logits, int64_t V, double temperature, double top_p, double u, double *work,
                        int64_t *idx) {
  int64_t best = 0;
  for (int64_t v = 1; v < V; v++) if (logits[v] > logits[best]) best = v;
  if (temperature <= 0) return best;
  double mx = logits[best] / temperature, z = 0;
  for (int64_t v = 0; v < V; v++) { work[v] = exp(logits[v] / temperature - mx); z += work[v]; }
  for (int64_t v = 0; v < V; v++) { work[v] /= z; idx[v] = v; }
  int64_t keep = V;
  if (top_p < 1) {
    /* the smallest set of most probable tokens whose mass reaches top_p (at least one), as transformers' top-p */
    g_sort_p = work;
    qsort(idx, (size_t)V, sizeof *idx, by_prob_desc);
    double c = 0;
    for (keep = 0; keep < V;) {
      c += work[idx[keep++]];
      if (c >= top_p) break;
    }
  }
  double mass = 0;
  for (int64_t k = 0; k < keep; k++) mass += work[idx[k]];
  double target = u * mass, c = 0;
  for (int64_t k = 0; k < keep; k++) {
    c += work[idx[k]];
    if (target < c) return idx[k];
  }
  return idx[keep - 1];
}

pose_status pose_model_generate(pose_model *m, const int64_t *prompt, const int64_t *pos, int64_t B, int64_t T,
                                const pose_generate_opts *o, int64_t *out, int64_t *n_out) {
  if (B < 1 || T < 1) return pose_error(POSE_EINVAL, "generate: the prompt must have at least one token per row");
  if (o->max_new_tokens < 0) return pose_error(POSE_EINVAL, "generate: max_new_tokens must be >= 0");
  if (!(o->temperature >= 0) || !isfinite(o->temperature))
    return pose_error(POSE_EINVAL, "generate: temperature must be >= 0");
  if (!(o->top_p > 0 && o->top_p <= 1)) return pose_error(POSE_EINVAL, "generate: top_p must be in (0, 1]");
  for (int64_t b = 0; b < B; b++) n_out[b] = 0;
  if (o->max_new_tokens == 0) return POSE_OK;
  const int64_t V = pose_model_vocab(m), G = o->max_new_tokens;
  pose_kv_cache *kv = NULL;
  POSE_TRY(pose_kv_cache_new(m, B, T + G - 1, &kv));
  float *logits = malloc(sizeof(float) * (size_t)(B * V));
  double *work = malloc(sizeof(double) * (size_t)V);
  int64_t *idx = malloc(sizeof(int64_t) * (size_t)V);
  int64_t *step_ids = malloc(sizeof(int64_t) * (size_t)B), *step_pos = malloc(sizeof(int64_t) * (size_t)B);
  int *done = calloc((size_t)B, sizeof(int));
  pose_rng *rng = malloc(sizeof(pose_rng) * (size_t)B);
  pose_status st = POSE_OK;
  if (!logits || !work || !idx || !step_ids || !step_pos || !done || !rng) {
    st = pose_error(POSE_ENOMEM, "generate: out of memory");
    goto out;
  }
  for (int64_t b = 0; b < B; b++) {
    pose_rng_init(&rng[b], o->seed, (uint64_t)b);
    step_pos[b] = pos ? pos[b * T + T - 1] : T - 1;
  }
  st = pose_model_decode(m, kv, prompt, pos, B, T, logits);
  for (int64_t g = 0; g < G && st == POSE_OK; g++) {
    int all_done = 1;
    for (int64_t b = 0; b < B; b++) {
      double u = pose_rng_uniform_f64(&rng[b]); /* drawn every step so rows stay reproducible independently */
      int64_t t = pose_pick_token(logits + b * V, V, o->temperature, o->top_p, u, work, idx);
      step_ids[b] = t;
      step_pos[b] += 1;
      if (done[b]) continue;
      out[b * G + n_out[b]++] = t;
      if (t == o->eos) done[b] = 1;
      all_done &= done[b];
    }
    if (all_done || g + 1 == G) break;
    st = pose_model_decode(m, kv, step_ids, step_pos, B, 1, logits);
  }
out:
  pose_kv_cache_free(kv);
  free(logits); free(work); free(idx); free(step_ids); free(step_pos); free(done); free(rng);
  return st;
}
