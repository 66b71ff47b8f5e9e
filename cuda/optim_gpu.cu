// The trainer's optimizer when the parameters live on a GPU (core/model_gpu.h): AdamW moments in fp32 on the device,
// torch's global gradient norm and clip coefficient computed there, and one fused AdamW pass per parameter that also
// writes the bf16 compute copy. The arithmetic is optim.cu's, which matches the CPU trainer bit for bit.
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
  cudaStream_t s;
  size_t n;
  int bf16;                // pure-bf16 policy: moments in bf16 (uint16_t), SR AdamW on the bf16 weights
  void *arena;             // m and v of every parameter
  void **m, **v;
  float *dnorm, *dcoef;    // device scalars: last gradient norm, clip coefficient
  const void **gptr;       // host array of device gradient pointers (for the norm)
  int64_t *numel;
};

extern "C" void pose_gpu_optim_free(pose_gpu_optim *o) {
  if (!o) return;
  cudaSetDevice(o->dev);
  if (o->s) {
    pc_scratch_free(o->arena, o->s);
    pc_scratch_free(o->dnorm, o->s);
    cudaStreamSynchronize(o->s);
  }
  free(o->m);
  free(o->v);
  free(o->gptr);
  free(o->numel);
  free(o);
}

extern "C" pose_status pose_gpu_optim_new(int device, pose_param *const *ps, size_t n, pose_gpu_optim **out) {
  *out = NULL;
  pose_gpu_optim *o = (pose_gpu_optim *)calloc(1, sizeof *o);
  if (!o) return pose_error(POSE_ENOMEM, "trainer: out of memory");
  o->dev = device;
  o->n = n;
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

extern "C" pose_status pose_gpu_optim_update(pose_gpu_optim *o, pose_param *const *ps, const pose_trainer_opts *opts,
                                             double lr, int64_t step) {
  PC_CU(cudaSetDevice(o->dev), "cudaSetDevice");
  const float *gscale = NULL;
  if (opts->clip > 0) {
    POSE_TRY(pose_cuda_clip_coef(o->dnorm, opts->clip, o->dcoef, o->s));
    gscale = o->dcoef;
  }
  for (size_t i = 0; i < o->n; i++) {
    pose_param *p = ps[i];
    if (p->numel == 0) continue;
    pose_cuda_adamw_coefs c;
    pose_cuda_adamw_coefs_init(&c, lr, opts->beta1, opts->beta2, opts->eps, p->decay ? opts->weight_decay : 0.0, step);
    if ((p->w == NULL) != o->bf16)
      return pose_error(POSE_EINVAL, "trainer: the model's precision policy changed after the trainer was created");
    if (o->bf16)
      POSE_TRY(pose_cuda_adamw_bf16((uint16_t *)p->w_bf16, p->g, POSE_F32, (uint16_t *)o->m[i], (uint16_t *)o->v[i],
                                    p->numel, &c, gscale, opts->sr_seed, (uint64_t)step * o->n + i, o->s));
    else
      POSE_TRY(pose_cuda_adamw(p->w, p->g, (float *)o->m[i], (float *)o->v[i], (uint16_t *)p->w_bf16, p->numel, &c,
                               gscale, o->s));
  }
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
  cudaStream_t s;
  POSE_TRY(pc_device_stream(device, &s));
  if (!p->w) return pose_gpu_bf16_get(device, (const uint16_t *)p->w_bf16, p->numel, dst);
  return copy_sync(device, s, dst, p->w, sizeof(float) * (size_t)p->numel, cudaMemcpyDeviceToHost);
}

extern "C" pose_status pose_gpu_weights_set(int device, pose_param *p, const float *src) {
  cudaStream_t s;
  POSE_TRY(pc_device_stream(device, &s));
  if (!p->w) return pose_gpu_bf16_set(device, (uint16_t *)p->w_bf16, p->numel, src);
  POSE_TRY(copy_sync(device, s, p->w, src, sizeof(float) * (size_t)p->numel, cudaMemcpyHostToDevice));
  if (p->w_bf16) {
    POSE_TRY(pose_cuda_convert(p->w_bf16, POSE_BF16, p->w, POSE_F32, p->numel, s));
    PC_CU(cudaStreamSynchronize(s), "bf16 copy");
  }
  return POSE_OK;
}
