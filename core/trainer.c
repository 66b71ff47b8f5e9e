/* The optimizer step: token-weighted gradient accumulation, NaN/Inf checks, global-norm clipping, lr schedule and
 * AdamW (see trainer.h for the order and the conventions, adamw.h for the update's arithmetic). */
#include "trainer.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "adamw.h"
#include "grad_clip.h"
#include "trainer_impl.h"
#ifdef POSE_HAVE_CUDA
#include "model_gpu.h"
#endif

void pose_trainer_defaults(pose_trainer_opts *o) {
  memset(o, 0, sizeof *o);
  o->lr = 5e-5; /* TrainingArguments.learning_rate */
  o->beta1 = 0.9;
  o->beta2 = 0.999;
  o->eps = 1e-8;
  o->weight_decay = 0;
  o->clip = 0;
  o->warmup = 0;
  o->steps = 0;
  o->schedule = POSE_SCHED_CONSTANT;
  o->accum = 1;
}

pose_status pose_trainer_opts_check(const pose_trainer_opts *o) {
  if (!o) return pose_error(POSE_EINVAL, "trainer: options are NULL");
  if (!isfinite(o->lr) || o->lr < 0) return pose_error(POSE_EINVAL, "trainer: lr must be >= 0 (got %g)", o->lr);
  if (!(o->beta1 >= 0 && o->beta1 < 1))
    return pose_error(POSE_EINVAL, "trainer: beta1 must be in [0, 1) (got %g)", o->beta1);
  if (!(o->beta2 >= 0 && o->beta2 < 1))
    return pose_error(POSE_EINVAL, "trainer: beta2 must be in [0, 1) (got %g)", o->beta2);
  if (!isfinite(o->eps) || o->eps < 0) return pose_error(POSE_EINVAL, "trainer: eps must be >= 0 (got %g)", o->eps);
  if (!isfinite(o->weight_decay) || o->weight_decay < 0)
    return pose_error(POSE_EINVAL, "trainer: weight_decay must be >= 0 (got %g)", o->weight_decay);
  if (!isfinite(o->clip) || o->clip < 0)
    return pose_error(POSE_EINVAL, "trainer: clip must be >= 0 (0 = off; got %g)", o->clip);
  if (o->warmup < 0) return pose_error(POSE_EINVAL, "trainer: warmup must be >= 0 (got %lld)", (long long)o->warmup);
  if (o->steps < 0) return pose_error(POSE_EINVAL, "trainer: steps must be >= 0 (got %lld)", (long long)o->steps);
  if (o->accum < 1) return pose_error(POSE_EINVAL, "trainer: accum must be >= 1 (got %d)", o->accum);
  if (o->fused_update != 0 && o->fused_update != 1)
    return pose_error(POSE_EINVAL, "trainer: fused_update must be 0 or 1 (got %d)", o->fused_update);
  if (o->fused_update && o->accum != 1)
    return pose_error(POSE_EINVAL, "trainer: fused_update needs accum = 1 (got %d): each layer is updated as soon as its "
                      "gradient exists, before another micro-batch could add to it", o->accum);
  if (o->fused_update && o->clip != 0)
    return pose_error(POSE_EINVAL, "trainer: fused_update needs clip = 0 (got %g): clipping needs the global gradient "
                      "norm before the first layer is updated", o->clip);
  if ((unsigned)o->schedule > POSE_SCHED_COSINE)
    return pose_error(POSE_EINVAL, "trainer: unknown schedule %d", (int)o->schedule);
  if (o->schedule != POSE_SCHED_CONSTANT) {
    if (o->steps == 0)
      return pose_error(POSE_EINVAL, "trainer: schedule '%s' needs the total number of steps (steps=)",
                        pose_schedule_name(o->schedule));
    if (o->warmup > o->steps)
      return pose_error(POSE_EINVAL, "trainer: warmup (%lld) exceeds steps (%lld)", (long long)o->warmup,
                        (long long)o->steps);
  }
  return POSE_OK;
}

/* ---- the model as a trainable ---------------------------------------------------------------------------- */

/* The model lands separately: until it is linked in, these references stay weak (NULL) and pose_trainer_new says
 * so instead of failing to link. */
#pragma weak pose_model_num_params
#pragma weak pose_model_param
#pragma weak pose_model_zero_grad
#pragma weak pose_model_backward
#pragma weak pose_model_device

static size_t model_num_params(void *ctx) { return pose_model_num_params(ctx); }
static pose_param *model_param(void *ctx, size_t i) { return pose_model_param(ctx, i); }
static void model_zero_grad(void *ctx) { pose_model_zero_grad(ctx); }
static pose_status model_backward(void *ctx, const int64_t *ids, const int64_t *pos, const int64_t *targets,
                                  int64_t B, int64_t T, double loss_scale, double *loss, int64_t *count) {
  return pose_model_backward(ctx, ids, pos, targets, B, T, loss_scale, loss, count);
}

static pose_status trainer_create(const pose_trainable *tb, const pose_trainer_opts *o, pose_model *model,
                                  pose_trainer **out);

pose_status pose_trainer_new(pose_model *m, const pose_trainer_opts *o, pose_trainer **out) {
  *out = NULL;
  if (!m) return pose_error(POSE_EINVAL, "trainer: model is NULL");
  if (!pose_model_backward || !pose_model_num_params || !pose_model_param || !pose_model_zero_grad ||
      !pose_model_device)
    return pose_error(POSE_EUNSUPPORTED, "trainer: this build has no model backward");
  if (o) POSE_TRY(pose_trainer_opts_check(o));
  pose_trainable tb = {m, model_num_params, model_param, model_zero_grad, model_backward, pose_model_device(m)};
  const int fused = o && o->fused_update;
  if (fused && tb.dev.type == POSE_CPU)
    return pose_error(POSE_EUNSUPPORTED, "trainer: fused_update needs a cuda model (the cpu trainer updates after "
                      "the backward: its AdamW is a small part of a cpu step and there is no second stream to overlap "
                      "it with)");
#ifdef POSE_HAVE_CUDA
  /* before the parameters are handed out: their gradient pointers are the slots' or the arena's */
  if (tb.dev.type != POSE_CPU) POSE_TRY(pose_gpu_model_set_grad_slots(m, fused));
#endif
  return trainer_create(&tb, o, m, out);
}

/* ---- construction ---------------------------------------------------------------------------------------- */

void pose_trainer_free(pose_trainer *t) {
  if (!t) return;
#ifdef POSE_HAVE_CUDA
  pose_gpu_optim_free(t->gpu);
#endif
  for (size_t i = 0; i < t->np; i++) {
    if (t->m) free(t->m[i]);
    if (t->v) free(t->v[i]);
  }
  free(t->m);
  free(t->v);
  free(t->ps);
  free(t);
}

pose_status pose_trainer_new_trainable(const pose_trainable *tb, const pose_trainer_opts *o, pose_trainer **out) {
  *out = NULL;
  if (o && o->fused_update)
    return pose_error(POSE_EUNSUPPORTED, "trainer: fused_update needs a cuda pose_model given to pose_trainer_new "
                      "(it runs AdamW from inside the model's backward)");
  return trainer_create(tb, o, NULL, out);
}

static pose_status trainer_create(const pose_trainable *tb, const pose_trainer_opts *o, pose_model *model,
                                  pose_trainer **out) {
  *out = NULL;
  if (!tb || !tb->num_params || !tb->param || !tb->zero_grad || !tb->backward)
    return pose_error(POSE_EINVAL, "trainer: incomplete trainable (num_params, param, zero_grad, backward)");
  pose_trainer_opts def;
  if (!o) {
    pose_trainer_defaults(&def);
    o = &def;
  }
  POSE_TRY(pose_trainer_opts_check(o));
  size_t np = tb->num_params(tb->ctx);
  if (np == 0) return pose_error(POSE_EINVAL, "trainer: the model has no parameters");
  pose_trainer *t = calloc(1, sizeof *t);
  if (!t) return pose_error(POSE_ENOMEM, "trainer: out of memory");
  t->tb = *tb;
  t->o = *o;
  t->model = model;
  t->np = np;
  t->ps = calloc(np, sizeof *t->ps);
  t->m = calloc(np, sizeof *t->m);
  t->v = calloc(np, sizeof *t->v);
  if (!t->ps || !t->m || !t->v) {
    pose_trainer_free(t);
    return pose_error(POSE_ENOMEM, "trainer: out of memory");
  }
  const int on_gpu = tb->dev.type != POSE_CPU;
#ifndef POSE_HAVE_CUDA
  if (on_gpu) {
    pose_trainer_free(t);
    return pose_error(POSE_EUNSUPPORTED, "trainer: parameters on cuda:%d need a build with the CUDA backend", tb->dev.index);
  }
#endif
  for (size_t i = 0; i < np; i++) {
    pose_param *p = tb->param(tb->ctx, i);
    /* a cuda model under the pure-bf16 policy has no fp32 weights: its bf16 weights are w_bf16 */
    if (!p || !(p->w || (on_gpu && p->w_bf16)) || !p->g || p->numel < 0) {
      pose_trainer_free(t);
      return pose_error(POSE_EINVAL, "trainer: parameter %zu has no weights or gradient", i);
    }
    t->ps[i] = p;
    if (on_gpu) continue;
    size_t n = p->numel ? (size_t)p->numel : 1;
    t->m[i] = calloc(n, sizeof(float));
    t->v[i] = calloc(n, sizeof(float));
    if (!t->m[i] || !t->v[i]) {
      pose_trainer_free(t);
      return pose_error(POSE_ENOMEM, "trainer: out of memory for the AdamW moments of '%s' (%lld elements)",
                        p->name ? p->name : "?", (long long)p->numel);
    }
  }
#ifdef POSE_HAVE_CUDA
  if (on_gpu) {
    int *group = NULL, ngroups = 0;
    pose_status st = POSE_OK;
    if (o->fused_update) { /* per layer, then the parameters outside the layers */
      group = malloc(sizeof(int) * np);
      if (!group) st = pose_error(POSE_ENOMEM, "trainer: out of memory");
      for (size_t i = 0; group && i < np; i++) group[i] = pose_gpu_model_param_group(model, i);
      ngroups = (int)model->cfg.layers + 1;
    }
    if (st == POSE_OK) st = pose_gpu_optim_new(tb->dev.index, t->ps, np, group, ngroups, &t->gpu);
    free(group);
    if (st != POSE_OK) {
      pose_trainer_free(t);
      return st;
    }
  }
#endif
  *out = t;
  return POSE_OK;
}

/* ---- accessors ------------------------------------------------------------------------------------------- */

int64_t pose_trainer_steps_done(const pose_trainer *t) { return t->step; }
const pose_trainer_opts *pose_trainer_get_opts(const pose_trainer *t) { return &t->o; }
const float *pose_trainer_exp_avg(const pose_trainer *t, size_t i) { return i < t->np && !t->gpu ? t->m[i] : NULL; }
const float *pose_trainer_exp_avg_sq(const pose_trainer *t, size_t i) { return i < t->np && !t->gpu ? t->v[i] : NULL; }

pose_status pose_trainer_moments(const pose_trainer *t, size_t i, float *exp_avg, float *exp_avg_sq) {
  if (i >= t->np) return pose_error(POSE_EINVAL, "trainer: parameter %zu out of range (%zu)", i, t->np);
  const size_t bytes = sizeof(float) * (size_t)t->ps[i]->numel;
#ifdef POSE_HAVE_CUDA
  if (t->gpu) return pose_gpu_optim_get(t->gpu, i, t->ps[i]->numel, exp_avg, exp_avg_sq);
#endif
  if (exp_avg) memcpy(exp_avg, t->m[i], bytes);
  if (exp_avg_sq) memcpy(exp_avg_sq, t->v[i], bytes);
  return POSE_OK;
}

double pose_trainer_lr_at(const pose_trainer *t, int64_t step) {
  /* LambdaLR: base_lr * lmbda(last_epoch) */
  return t->o.lr * pose_schedule_factor(t->o.schedule, t->o.warmup, t->o.steps, step);
}

/* ---- the step -------------------------------------------------------------------------------------------- */

/* Scored targets of rows [B, T]: targets[b, 1..T-1] that are not POSE_IGNORE_INDEX (targets NULL: ids). */
static int64_t count_scored(const int64_t *ids, const int64_t *targets, int64_t B, int64_t T) {
  const int64_t *y = targets ? targets : ids;
  int64_t c = 0;
  for (int64_t b = 0; b < B; b++)
    for (int64_t s = 1; s < T; s++) c += y[b * T + s] != POSE_IGNORE_INDEX;
  return c;
}

#ifdef POSE_HAVE_CUDA
/* One step with the fused update (trainer.h): the model's backward calls the optimizer after each layer. */
static pose_status fused_step(pose_trainer *t, const int64_t *ids, const int64_t *pos, const int64_t *targets,
                              int64_t B, int64_t T, int64_t expected, double *loss, double *lr_used,
                              double *grad_norm) {
  const long long k = (long long)t->step + 1;
  if (!t->model || !t->gpu)
    return pose_error(POSE_EINVAL, "trainer step %lld: fused_update needs a cuda model", k);
  if (t->o.accum != 1 || t->o.clip != 0)
    return pose_error(POSE_EINVAL, "trainer step %lld: fused_update needs accum = 1 and clip = 0 (got %d, %g)", k,
                      t->o.accum, t->o.clip);
  pose_status st = pose_gpu_model_set_grad_slots(t->model, 1);
  if (st != POSE_OK) return pose_error_prefix(st, "trainer step %lld: ", k);
  const double lr = pose_trainer_lr_at(t, t->step);
  const pose_gpu_bwd_hook *hook = NULL;
  if ((st = pose_gpu_optim_fused_begin(t->gpu, t->ps, &t->o, lr, t->step + 1, &hook)) != POSE_OK)
    return pose_error_prefix(st, "trainer step %lld: ", k);
  double li = 0;
  int64_t ci = 0;
  float gnorm = 0;
  size_t bad = t->np;
  st = pose_model_backward_hook(t->model, ids, pos, targets, B, T, 1.0, &li, &ci, hook);
  pose_status st2 = pose_gpu_optim_fused_end(t->gpu, st == POSE_OK, &gnorm, &bad);
  if (st != POSE_OK)
    return pose_error_prefix(st, st == POSE_ENUMERIC ? "trainer step %lld (fused update: nothing was updated): "
                                                     : "trainer step %lld (fused update: layers whose backward had "
                                                       "finished may have been updated): ", k);
  if (st2 != POSE_OK) return pose_error_prefix(st2, "trainer step %lld: ", k);
  if (ci != expected)
    return pose_error(POSE_EINVAL, "trainer step %lld: the backward scored %lld targets where %lld were expected", k,
                      (long long)ci, (long long)expected);
  if (bad < t->np) {
    const char *name = t->ps[bad]->name ? t->ps[bad]->name : "?";
    return pose_error(POSE_ENUMERIC, "trainer step %lld: gradient norm is %g (non-finite gradient in '%s'); loss was "
                      "%g; fused update: the layers with finite gradients were updated, those with non-finite ones "
                      "were not, and the step count stays %lld (reload a saved state)", k, (double)gnorm, name, li,
                      (long long)t->step);
  }
  t->step++;
  if (loss) *loss = li;
  if (lr_used) *lr_used = lr;
  if (grad_norm) *grad_norm = gnorm;
  return POSE_OK;
}
#endif

pose_status pose_trainer_step(pose_trainer *t, const int64_t *ids, const int64_t *pos, const int64_t *targets,
                              int64_t B, int64_t T, double *loss, double *lr_used, double *grad_norm) {
  if (!t) return pose_error(POSE_EINVAL, "trainer: NULL trainer");
  const long long k = (long long)t->step + 1; /* the step being computed, counting from 1, for messages */
  if (!ids) return pose_error(POSE_EINVAL, "trainer step %lld: ids are NULL", k);
  if (B < 1 || T < 2)
    return pose_error(POSE_EINVAL, "trainer step %lld: need B >= 1 rows per micro-batch and T >= 2 tokens (got B=%lld, T=%lld)",
                      k, (long long)B, (long long)T);
  if (t->o.schedule != POSE_SCHED_CONSTANT && t->step >= t->o.steps)
    return pose_error(POSE_EINVAL, "trainer step %lld is past the schedule's steps=%lld", k, (long long)t->o.steps);
  const int A = t->o.accum;
  const int64_t rows = B * T;

  int64_t *counts = malloc((size_t)A * sizeof *counts);
  if (!counts) return pose_error(POSE_ENOMEM, "trainer: out of memory");
  int64_t total = 0;
  for (int i = 0; i < A; i++) {
    counts[i] = count_scored(ids + i * rows, targets ? targets + i * rows : NULL, B, T);
    total += counts[i];
  }
  if (total == 0) {
    free(counts);
    return pose_error(POSE_EINVAL, "trainer step %lld: no scored targets in the batch (all -100?)", k);
  }
  int64_t *defpos = NULL;
  if (!pos) { /* 0..T-1 on every row, shared by the micro-batches */
    defpos = malloc((size_t)rows * sizeof *defpos);
    if (!defpos) {
      free(counts);
      return pose_error(POSE_ENOMEM, "trainer: out of memory");
    }
    for (int64_t b = 0; b < B; b++)
      for (int64_t s = 0; s < T; s++) defpos[b * T + s] = s;
  }

  pose_status st = POSE_OK;
  double mean = 0;
#ifdef POSE_HAVE_CUDA
  if (t->o.fused_update) {
    st = fused_step(t, ids, pos ? pos : defpos, targets, B, T, counts[0], loss, lr_used, grad_norm);
    free(counts);
    free(defpos);
    return st;
  }
  /* a fused trainer created on the same model since may have moved its gradients into slots */
  if (t->model && t->gpu && (st = pose_gpu_model_set_grad_slots(t->model, 0)) != POSE_OK) {
    free(counts);
    free(defpos);
    return pose_error_prefix(st, "trainer step %lld: ", k);
  }
#endif
  t->tb.zero_grad(t->tb.ctx);
  for (int i = 0; i < A; i++) {
    if (counts[i] == 0) continue;
    double scale = (double)counts[i] / (double)total; /* exactly 1 for a single micro-batch */
    double li = 0;
    int64_t ci = 0;
    st = t->tb.backward(t->tb.ctx, ids + i * rows, pos ? pos + i * rows : defpos, targets ? targets + i * rows : NULL,
                        B, T, scale, &li, &ci);
    if (st != POSE_OK) {
      if (A > 1) st = pose_error_prefix(st, "trainer step %lld, micro-batch %d: ", k, i + 1);
      else st = pose_error_prefix(st, "trainer step %lld: ", k);
      break;
    }
    if (!isfinite(li)) {
      st = pose_error(POSE_ENUMERIC, "trainer step %lld: loss is %g (micro-batch %d of %d)", k, li, i + 1, A);
      break;
    }
    if (ci != counts[i]) {
      st = pose_error(POSE_EINVAL, "trainer step %lld: the backward scored %lld targets where %lld were expected",
                      k, (long long)ci, (long long)counts[i]);
      break;
    }
    mean += li * scale;
  }
  free(counts);
  free(defpos);
  if (st != POSE_OK) return st;

  double lr = pose_trainer_lr_at(t, t->step);
#ifdef POSE_HAVE_CUDA
  if (t->gpu) { /* the same steps on the device: norm (read back for the check), clip coefficient, AdamW */
    float gnorm = 0;
    if ((st = pose_gpu_optim_grad_norm(t->gpu, t->ps, &gnorm)) != POSE_OK) return pose_error_prefix(st, "trainer step %lld: ", k);
    if (!isfinite(gnorm)) {
      size_t bad = t->np;
      pose_gpu_optim_first_nonfinite(t->gpu, t->ps, &bad);
      const char *name = bad < t->np && t->ps[bad]->name ? t->ps[bad]->name : "?";
      return pose_error(POSE_ENUMERIC, "trainer step %lld: gradient norm is %g (non-finite gradient in '%s'); loss was %g",
                        k, (double)gnorm, name, mean);
    }
    if ((st = pose_gpu_optim_update(t->gpu, t->ps, &t->o, lr, t->step + 1)) != POSE_OK)
      return pose_error_prefix(st, "trainer step %lld: ", k);
    t->step++;
    if (loss) *loss = mean;
    if (lr_used) *lr_used = lr;
    if (grad_norm) *grad_norm = gnorm;
    return POSE_OK;
  }
#endif
  float norm = pose_grad_global_norm(t->ps, t->np);
  if (!isfinite(norm)) {
    size_t bad = pose_grad_first_nonfinite(t->ps, t->np);
    const char *name = bad < t->np && t->ps[bad]->name ? t->ps[bad]->name : "?";
    return pose_error(POSE_ENUMERIC, "trainer step %lld: gradient norm is %g (non-finite gradient in '%s'); loss was %g",
                      k, (double)norm, name, mean);
  }
  if (t->o.clip > 0) pose_grad_scale(t->ps, t->np, pose_grad_clip_coef(norm, t->o.clip));

  for (size_t i = 0; i < t->np; i++) {
    pose_param *p = t->ps[i];
    pose_adamw_coefs c;
    pose_adamw_coefs_init(&c, lr, t->o.beta1, t->o.beta2, t->o.eps, p->decay ? t->o.weight_decay : 0.0,
                          t->step + 1);
    pose_adamw_update(p->w, p->g, t->m[i], t->v[i], p->numel, &c);
  }
  t->step++;
  if (loss) *loss = mean;
  if (lr_used) *lr_used = lr;
  if (grad_norm) *grad_norm = norm;
  return POSE_OK;
}
