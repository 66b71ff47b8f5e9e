// The trainer's optimizer when the parameters live on a GPU (core/model_gpu.h): AdamW moments on the device (fp32, or
// bf16 under the pure-bf16 policy), torch's global gradient norm and clip coefficient computed there, and one
// multi-tensor AdamW launch over every parameter that also writes the bf16 compute copy. The arithmetic is
// optim.cu's, which matches the CPU trainer bit for bit. With the fused update the AdamW of each layer runs inside
// the backward instead, on a second stream (see pose_gpu_optim_fused_begin in core/model_gpu.h for the ordering).
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.cuh"

extern "C" {
#include "model_gpu.h"
}

extern "C" pose_status pc_device_stream(int dev, cudaStream_t *out); // model_gpu.cu

struct pose_gpu_optim {
  int dev;
  cudaStream_t s;          // the model's stream (shared per device)
  size_t n;
  int bf16;                // pure-bf16 policy: moments in bf16 (uint16_t), SR AdamW on the bf16 weights
  void *arena;             // m and v of every parameter
  void **m, **v;
  float *dnorm, *dcoef;    // device scalars: last gradient norm, clip coefficient
  const void **gptr;       // host array of device gradient pointers (for the norm)
  int64_t *numel;
  // Multi-tensor tables, rebuilt every step from the parameters' current pointers (gradients may move between the
  // arena and the fused update's slots) in one pinned host block, uploaded with one copy. Rows are grouped: one group
  // of everything, or (fused) one per layer and the last for the other parameters.
  int ngroups;
  int *order;              // row -> parameter index
  int *gstart, *gcount;    // per group: first row, rows
  int64_t *gchunks, *gparts, *gpoff; // per group: AdamW chunks, norm partials, offset of its partials
  char *host, *devt;
  size_t tbytes;
  pose_cuda_adamw_entry *tab_h, *tab_d;
  const void **np_h, **np_d;
  int64_t *nn_h, *nn_d, *nf_h, *nf_d;
  int32_t *ni_h, *ni_d;
  int32_t *nb_h, *nb_d;    // 1 where the gradient is bf16
  cudaEvent_t ev_tab;      // the last upload: the pinned block is rewritten only after it completed
  // fused update
  int fused;
  cudaStream_t s2;         // the updates run here, overlapping the next layers' backward
  cudaEvent_t ev_bwd, ev_free[2], ev_join;
  int free_pending[2];
  double *dd;              // tn [n] | group sums [ngroups] | loss [1] | partials
  double *tn, *gsq, *loss, *part;
  pose_cuda_adamw_coefs c0, c1;
  uint64_t seed;
  pose_gpu_bwd_hook hook;
};

extern "C" void pose_gpu_optim_free(pose_gpu_optim *o) {
  if (!o) return;
  cudaSetDevice(o->dev);
  if (o->s2) cudaStreamSynchronize(o->s2);
  if (o->s) {
    pc_scratch_free(o->arena, o->s);
    pc_scratch_free(o->dnorm, o->s);
    pc_scratch_free(o->devt, o->s);
    pc_scratch_free(o->dd, o->s);
    cudaStreamSynchronize(o->s);
  }
  if (o->host) cudaFreeHost(o->host);
  if (o->ev_tab) cudaEventDestroy(o->ev_tab);
  if (o->ev_bwd) cudaEventDestroy(o->ev_bwd);
  for (int k = 0; k < 2; k++)
    if (o->ev_free[k]) cudaEventDestroy(o->ev_free[k]);
  if (o->ev_join) cudaEventDestroy(o->ev_join);
  if (o->s2) cudaStreamDestroy(o->s2);
  free(o->m);
  free(o->v);
  free(o->gptr);
  free(o->numel);
  free(o->order);
  free(o->gstart);
  free(o->gcount);
  free(o->gchunks);
  free(o->gparts);
  free(o->gpoff);
  free(o);
}

static size_t al8(size_t b) { return (b + 7) & ~(size_t)7; }

// Table rows grouped by `group` (NULL: one group in parameter order); pinned host block and its device twin.
static pose_status tables_new(pose_gpu_optim *o, const int *group, int ngroups) {
  const size_t n = o->n;
  o->ngroups = ngroups;
  o->order = (int *)calloc(n, sizeof(int));
  o->gstart = (int *)calloc((size_t)ngroups, sizeof(int));
  o->gcount = (int *)calloc((size_t)ngroups, sizeof(int));
  o->gchunks = (int64_t *)calloc((size_t)ngroups, sizeof(int64_t));
  o->gparts = (int64_t *)calloc((size_t)ngroups, sizeof(int64_t));
  o->gpoff = (int64_t *)calloc((size_t)ngroups, sizeof(int64_t));
  if (!o->order || !o->gstart || !o->gcount || !o->gchunks || !o->gparts || !o->gpoff)
    return pose_error(POSE_ENOMEM, "trainer: out of memory");
  int r = 0;
  for (int g = 0; g < ngroups; g++) {
    o->gstart[g] = r;
    for (size_t i = 0; i < n; i++)
      if ((group ? group[i] : 0) == g) o->order[r++] = (int)i;
    o->gcount[g] = r - o->gstart[g];
  }
  if ((size_t)r != n) return pose_error(POSE_EINVAL, "trainer: parameter groups do not cover every parameter");
  const size_t b_tab = al8(n * sizeof(pose_cuda_adamw_entry)), b_p = al8(n * sizeof(void *)),
               b_i = al8(n * sizeof(int64_t)), b_32 = al8(n * sizeof(int32_t));
  o->tbytes = b_tab + b_p + 2 * b_i + 2 * b_32;
  PC_CU(cudaMallocHost((void **)&o->host, o->tbytes), "pinned host memory");
  POSE_TRY(pc_scratch_alloc((void **)&o->devt, o->tbytes, o->s));
  PC_CU(cudaEventCreateWithFlags(&o->ev_tab, cudaEventDisableTiming), "event");
  PC_CU(cudaEventRecord(o->ev_tab, o->s), "event");
  size_t off = 0;
  o->tab_h = (pose_cuda_adamw_entry *)(o->host + off), o->tab_d = (pose_cuda_adamw_entry *)(o->devt + off), off += b_tab;
  o->np_h = (const void **)(o->host + off), o->np_d = (const void **)(o->devt + off), off += b_p;
  o->nn_h = (int64_t *)(o->host + off), o->nn_d = (int64_t *)(o->devt + off), off += b_i;
  o->nf_h = (int64_t *)(o->host + off), o->nf_d = (int64_t *)(o->devt + off), off += b_i;
  o->ni_h = (int32_t *)(o->host + off), o->ni_d = (int32_t *)(o->devt + off), off += b_32;
  o->nb_h = (int32_t *)(o->host + off), o->nb_d = (int32_t *)(o->devt + off);
  return POSE_OK;
}

// Fills the tables for update number `step` from the parameters' current pointers and uploads them on stream us.
static pose_status tables_build(pose_gpu_optim *o, pose_param *const *ps, int64_t step, cudaStream_t us) {
  PC_CU(cudaEventSynchronize(o->ev_tab), "table upload");
  int64_t poff = 0;
  for (int g = 0; g < o->ngroups; g++) {
    for (int r = o->gstart[g]; r < o->gstart[g] + o->gcount[g]; r++) {
      const int i = o->order[r];
      const pose_param *p = ps[i];
      if ((p->w == NULL) != o->bf16)
        return pose_error(POSE_EINVAL, "trainer: the model's precision policy changed after the trainer was created");
      if (!p->g) return pose_error(POSE_EINVAL, "trainer: parameter '%s' has no gradient", p->name ? p->name : "?");
      pose_cuda_adamw_entry *e = &o->tab_h[r];
      e->w = o->bf16 ? p->w_bf16 : (void *)p->w;
      e->g = p->g;
      e->m = o->m[i];
      e->v = o->v[i];
      e->w_bf16 = o->bf16 ? NULL : p->w_bf16;
      e->n = p->numel;
      e->stream_id = (uint64_t)step * o->n + (uint64_t)i;
      e->decay = p->decay != 0;
      e->guard = o->fused ? g : -1;
      e->g_bf16 = p->g_bf16 != 0;
      e->pad_ = 0;
      o->nb_h[r] = p->g_bf16 != 0;
      o->np_h[r] = p->g;
      o->nn_h[r] = p->numel;
      o->ni_h[r] = i;
    }
    o->gchunks[g] = pose_cuda_adamw_mt_plan(o->tab_h + o->gstart[g], o->gcount[g]);
    o->gparts[g] = o->gcount[g] ? pose_cuda_sumsq_plan(o->nn_h + o->gstart[g], o->gcount[g], o->nf_h + o->gstart[g]) : 0;
    o->gpoff[g] = poff;
    poff += o->gparts[g];
  }
  PC_CU(cudaMemcpyAsync(o->devt, o->host, o->tbytes, cudaMemcpyHostToDevice, us), "table upload");
  PC_CU(cudaEventRecord(o->ev_tab, us), "event");
  return POSE_OK;
}

static int64_t total_parts(pose_param *const *ps, size_t n) {
  int64_t t = 0;
  for (size_t i = 0; i < n; i++) {
    int64_t nb = (ps[i]->numel + 16383) / 16384;
    t += nb > 0 ? nb : 1;
  }
  return t;
}

extern "C" pose_status pose_gpu_optim_new(int device, pose_param *const *ps, size_t n, const int *group, int ngroups,
                                          pose_gpu_optim **out) {
  *out = NULL;
  pose_gpu_optim *o = (pose_gpu_optim *)calloc(1, sizeof *o);
  if (!o) return pose_error(POSE_ENOMEM, "trainer: out of memory");
  o->dev = device;
  o->n = n;
  o->fused = group != NULL;
  o->m = (void **)calloc(n, sizeof(void *));
  o->v = (void **)calloc(n, sizeof(void *));
  // the policy is the parameters': all with fp32 masters, or none
  for (size_t i = 0; i < n; i++) o->bf16 |= ps[i]->w == NULL;
  for (size_t i = 0; i < n; i++)
    if ((ps[i]->w == NULL) != o->bf16) {
      pose_gpu_optim_free(o);
      return pose_error(POSE_EINVAL, "trainer: parameters mix fp32 masters and the pure-bf16 policy");
    }
  const size_t elt = o->bf16 ? 2 : 4;
  o->gptr = (const void **)calloc(n, sizeof(void *));
  o->numel = (int64_t *)calloc(n, sizeof(int64_t));
  pose_status st = (o->m && o->v && o->gptr && o->numel) ? POSE_OK : pose_error(POSE_ENOMEM, "trainer: out of memory");
  if (st == POSE_OK) st = pc_device_stream(device, &o->s);
  size_t total = 0;
  for (size_t i = 0; i < n; i++) total += ((size_t)ps[i]->numel + 63) / 64 * 64;
  if (st == POSE_OK) st = pc_scratch_alloc((void **)&o->arena, 2 * (total ? total : 64) * elt, o->s);
  if (st == POSE_OK) st = pc_scratch_alloc((void **)&o->dnorm, 2 * sizeof(float), o->s);
  if (st != POSE_OK) {
    pose_gpu_optim_free(o);
    return pose_error_prefix(st, "trainer: AdamW moments (%.2f GB) on cuda:%d: ", total * 2.0 * elt / 1e9, device);
  }
  o->dcoef = o->dnorm + 1;
  size_t off = 0;
  for (size_t i = 0; i < n; i++) {
    o->m[i] = (char *)o->arena + off * elt;
    o->v[i] = (char *)o->arena + (total + off) * elt;
    o->gptr[i] = ps[i]->g;
    o->numel[i] = ps[i]->numel;
    off += ((size_t)ps[i]->numel + 63) / 64 * 64;
  }
  st = tables_new(o, group, o->fused ? ngroups : 1);
  if (st == POSE_OK && o->fused) {
    const int64_t np = total_parts(ps, n);
    st = pc_scratch_alloc((void **)&o->dd, sizeof(double) * (n + (size_t)ngroups + 1 + (size_t)np), o->s);
    if (st == POSE_OK) {
      o->tn = o->dd;
      o->gsq = o->tn + n;
      o->loss = o->gsq + ngroups;
      o->part = o->loss + 1;
    }
    cudaError_t e = cudaStreamCreateWithFlags(&o->s2, cudaStreamNonBlocking);
    if (e == cudaSuccess) e = cudaEventCreateWithFlags(&o->ev_bwd, cudaEventDisableTiming);
    if (e == cudaSuccess) e = cudaEventCreateWithFlags(&o->ev_free[0], cudaEventDisableTiming);
    if (e == cudaSuccess) e = cudaEventCreateWithFlags(&o->ev_free[1], cudaEventDisableTiming);
    if (e == cudaSuccess) e = cudaEventCreateWithFlags(&o->ev_join, cudaEventDisableTiming);
    if (st == POSE_OK && e != cudaSuccess) st = pose_cuda_fail(e, "trainer: the update stream");
  }
  if (st != POSE_OK) {
    pose_gpu_optim_free(o);
    return st;
  }
  cudaError_t e = cudaMemsetAsync(o->arena, 0, 2 * (total ? total : 64) * elt, o->s);
  if (e == cudaSuccess) e = cudaStreamSynchronize(o->s);
  if (e != cudaSuccess) {
    pose_gpu_optim_free(o);
    return pose_cuda_fail(e, "trainer: zeroing the moments");
  }
  *out = o;
  return POSE_OK;
}

extern "C" pose_status pose_gpu_optim_grad_norm(pose_gpu_optim *o, pose_param *const *ps, float *norm) {
  PC_CU(cudaSetDevice(o->dev), "cudaSetDevice");
  for (size_t i = 0; i < o->n; i++) o->gptr[i] = ps[i]->g; // (the model keeps them; cheap to refresh)
  POSE_TRY(pose_cuda_grad_norm(o->gptr, o->numel, (int)o->n, POSE_F32, o->dnorm, o->s));
  PC_CU(cudaMemcpyAsync(norm, o->dnorm, sizeof(float), cudaMemcpyDeviceToHost, o->s), "copy the norm");
  PC_CU(cudaStreamSynchronize(o->s), "gradient norm");
  return POSE_OK;
}

extern "C" pose_status pose_gpu_optim_first_nonfinite(pose_gpu_optim *o, pose_param *const *ps, size_t *idx) {
  PC_CU(cudaSetDevice(o->dev), "cudaSetDevice");
  *idx = o->n;
  for (size_t i = 0; i < o->n; i++) {
    if (o->numel[i] == 0) continue;
    const void *g = ps[i]->g;
    float nrm = 0;
    POSE_TRY(pose_cuda_grad_norm(&g, &o->numel[i], 1, POSE_F32, o->dcoef, o->s));
    PC_CU(cudaMemcpyAsync(&nrm, o->dcoef, sizeof(float), cudaMemcpyDeviceToHost, o->s), "copy a norm");
    PC_CU(cudaStreamSynchronize(o->s), "gradient norm");
    if (!isfinite(nrm)) {
      *idx = i;
      break;
    }
  }
  return POSE_OK;
}

static void coefs_pair(pose_gpu_optim *o, const pose_trainer_opts *opts, double lr, int64_t step) {
  pose_cuda_adamw_coefs_init(&o->c0, lr, opts->beta1, opts->beta2, opts->eps, 0.0, step);
  pose_cuda_adamw_coefs_init(&o->c1, lr, opts->beta1, opts->beta2, opts->eps, opts->weight_decay, step);
}

extern "C" pose_status pose_gpu_optim_update(pose_gpu_optim *o, pose_param *const *ps, const pose_trainer_opts *opts,
                                             double lr, int64_t step) {
  PC_CU(cudaSetDevice(o->dev), "cudaSetDevice");
  if (o->fused) return pose_error(POSE_EINVAL, "trainer: this optimizer runs inside the backward (fused update)");
  const float *gscale = NULL;
  if (opts->clip > 0) {
    POSE_TRY(pose_cuda_clip_coef(o->dnorm, opts->clip, o->dcoef, o->s));
    gscale = o->dcoef;
  }
  coefs_pair(o, opts, lr, step);
  POSE_TRY(tables_build(o, ps, step, o->s));
  // one launch over every parameter
  return pose_cuda_adamw_mt(o->tab_d, (int)o->n, o->gchunks[0], o->bf16, &o->c0, &o->c1, gscale, opts->sr_seed, NULL,
                            NULL, o->s);
}

// ---- the fused update: AdamW of each layer inside the backward, on a second stream ---------------------------------

// Group g's norm contributions and update on the update stream (ordered after the model's work so far).
static pose_status group_update(pose_gpu_optim *o, int g) {
  PC_CU(cudaEventRecord(o->ev_bwd, o->s), "event");
  PC_CU(cudaStreamWaitEvent(o->s2, o->ev_bwd, 0), "stream wait");
  const int r0 = o->gstart[g], cnt = o->gcount[g];
  if (cnt == 0) return POSE_OK;
  POSE_TRY(pose_cuda_group_sumsq(o->np_d + r0, o->nn_d + r0, o->nf_d + r0, o->ni_d + r0, o->nb_d + r0, cnt,
                                 o->gparts[g], POSE_F32, o->part + o->gpoff[g], o->tn, o->gsq + g, o->s2));
  return pose_cuda_adamw_mt(o->tab_d + r0, cnt, o->gchunks[g], o->bf16, &o->c0, &o->c1, NULL, o->seed, o->gsq,
                            o->loss, o->s2);
}

static pose_status hook_slot_wait(void *ctx, int64_t layer, int slot) {
  (void)layer;
  pose_gpu_optim *o = (pose_gpu_optim *)ctx;
  if (slot < 0 || slot > 1) return pose_error(POSE_EINVAL, "trainer: bad gradient slot %d", slot);
  if (o->free_pending[slot]) PC_CU(cudaStreamWaitEvent(o->s, o->ev_free[slot], 0), "stream wait");
  o->free_pending[slot] = 0;
  return POSE_OK;
}

static pose_status hook_layer_done(void *ctx, int64_t layer, int slot) {
  pose_gpu_optim *o = (pose_gpu_optim *)ctx;
  if (layer < 0 || layer >= o->ngroups - 1 || slot < 0 || slot > 1)
    return pose_error(POSE_EINVAL, "trainer: bad layer %lld / slot %d in the fused update", (long long)layer, slot);
  POSE_TRY(group_update(o, (int)layer));
  PC_CU(cudaEventRecord(o->ev_free[slot], o->s2), "event");
  o->free_pending[slot] = 1;
  return POSE_OK;
}

static pose_status hook_rest_done(void *ctx) {
  pose_gpu_optim *o = (pose_gpu_optim *)ctx;
  POSE_TRY(group_update(o, o->ngroups - 1));
  POSE_TRY(pose_cuda_norm_from_sq(o->tn, (int)o->n, o->dnorm, o->s2));
  PC_CU(cudaEventRecord(o->ev_join, o->s2), "event");
  PC_CU(cudaStreamWaitEvent(o->s, o->ev_join, 0), "stream wait");
  return POSE_OK;
}

extern "C" pose_status pose_gpu_optim_fused_begin(pose_gpu_optim *o, pose_param *const *ps,
                                                  const pose_trainer_opts *opts, double lr, int64_t step,
                                                  const pose_gpu_bwd_hook **hook) {
  *hook = NULL;
  if (!o->fused) return pose_error(POSE_EINVAL, "trainer: this optimizer was not created for the fused update");
  PC_CU(cudaSetDevice(o->dev), "cudaSetDevice");
  // the updates must follow whatever the model's stream did before this step
  PC_CU(cudaEventRecord(o->ev_bwd, o->s), "event");
  PC_CU(cudaStreamWaitEvent(o->s2, o->ev_bwd, 0), "stream wait");
  coefs_pair(o, opts, lr, step);
  o->seed = opts->sr_seed;
  POSE_TRY(tables_build(o, ps, step, o->s2));
  // a loss that is never computed (a failed run) must not let updates through
  const double nan = NAN;
  PC_CU(cudaMemcpyAsync(o->loss, &nan, sizeof nan, cudaMemcpyHostToDevice, o->s), "copy");
  PC_CU(cudaStreamSynchronize(o->s), "copy");
  o->free_pending[0] = o->free_pending[1] = 0;
  o->hook.ctx = o;
  o->hook.loss_sum = o->loss;
  o->hook.slot_wait = hook_slot_wait;
  o->hook.layer_done = hook_layer_done;
  o->hook.rest_done = hook_rest_done;
  *hook = &o->hook;
  return POSE_OK;
}

extern "C" pose_status pose_gpu_optim_fused_end(pose_gpu_optim *o, int ok, float *norm, size_t *bad) {
  PC_CU(cudaSetDevice(o->dev), "cudaSetDevice");
  // join the update stream into the model's stream whatever happened (a failed backward may have left updates in
  // flight), and wait for both
  PC_CU(cudaEventRecord(o->ev_join, o->s2), "event");
  PC_CU(cudaStreamWaitEvent(o->s, o->ev_join, 0), "stream wait");
  PC_CU(cudaStreamSynchronize(o->s), "fused update");
  if (!ok) return POSE_OK;
  double *tn = (double *)malloc(sizeof(double) * o->n);
  if (!tn) return pose_error(POSE_ENOMEM, "trainer: out of memory");
  cudaError_t e = cudaMemcpy(tn, o->tn, sizeof(double) * o->n, cudaMemcpyDeviceToHost);
  if (e == cudaSuccess) e = cudaMemcpy(norm, o->dnorm, sizeof(float), cudaMemcpyDeviceToHost);
  *bad = o->n;
  for (size_t i = 0; e == cudaSuccess && i < o->n; i++)
    if (!isfinite(tn[i])) {
      *bad = i;
      break;
    }
  free(tn);
  if (e != cudaSuccess) return pose_cuda_fail(e, "trainer: reading the gradient norms");
  return POSE_OK;
}

static pose_status copy_sync(int dev, cudaStream_t s, void *dst, const void *src, size_t bytes, cudaMemcpyKind k) {
  if (!dst || !bytes) return POSE_OK;
  PC_CU(cudaSetDevice(dev), "cudaSetDevice");
  PC_CU(cudaMemcpyAsync(dst, src, bytes, k, s), "copy");
  PC_CU(cudaStreamSynchronize(s), "copy");
  return POSE_OK;
}

extern "C" pose_status pose_gpu_optim_get(pose_gpu_optim *o, size_t i, int64_t numel, float *m, float *v) {
  if (i >= o->n) return pose_error(POSE_EINVAL, "trainer: parameter %zu out of range", i);
  if (o->bf16) {
    if (m) POSE_TRY(pose_gpu_bf16_get(o->dev, (const uint16_t *)o->m[i], numel, m));
    if (v) POSE_TRY(pose_gpu_bf16_get(o->dev, (const uint16_t *)o->v[i], numel, v));
    return POSE_OK;
  }
  POSE_TRY(copy_sync(o->dev, o->s, m, o->m[i], sizeof(float) * (size_t)numel, cudaMemcpyDeviceToHost));
  return copy_sync(o->dev, o->s, v, o->v[i], sizeof(float) * (size_t)numel, cudaMemcpyDeviceToHost);
}

extern "C" pose_status pose_gpu_optim_set(pose_gpu_optim *o, size_t i, int64_t numel, const float *m, const float *v) {
  if (i >= o->n) return pose_error(POSE_EINVAL, "trainer: parameter %zu out of range", i);
  if (o->bf16) {
    if (m) POSE_TRY(pose_gpu_bf16_set(o->dev, (uint16_t *)o->m[i], numel, m));
    if (v) POSE_TRY(pose_gpu_bf16_set(o->dev, (uint16_t *)o->v[i], numel, v));
    return POSE_OK;
  }
  if (m) POSE_TRY(copy_sync(o->dev, o->s, o->m[i], m, sizeof(float) * (size_t)numel, cudaMemcpyHostToDevice));
  if (v) POSE_TRY(copy_sync(o->dev, o->s, o->v[i], v, sizeof(float) * (size_t)numel, cudaMemcpyHostToDevice));
  return POSE_OK;
}

extern "C" pose_status pose_gpu_weights_get(int device, const pose_param *p, float *dst) {
  cudaStream_t s = NULL;
  POSE_TRY(pc_device_stream(device, &s));
  if (!p->w) return pose_gpu_bf16_get(device, (const uint16_t *)p->w_bf16, p->numel, dst);
  return copy_sync(device, s, dst, p->w, sizeof(float) * (size_t)p->numel, cudaMemcpyDeviceToHost);
}

extern "C" pose_status pose_gpu_weights_set(int device, pose_param *p, const float *src) {
  cudaStream_t s = NULL;
  POSE_TRY(pc_device_stream(device, &s));
  if (!p->w) return pose_gpu_bf16_set(device, (uint16_t *)p->w_bf16, p->numel, src);
  POSE_TRY(copy_sync(device, s, p->w, src, sizeof(float) * (size_t)p->numel, cudaMemcpyHostToDevice));
  if (p->w_bf16) {
    POSE_TRY(pose_cuda_convert(p->w_bf16, POSE_BF16, p->w, POSE_F32, p->numel, s));
    PC_CU(cudaStreamSynchronize(s), "bf16 copy");
  }
  return POSE_OK;
}
