// The decoder on the GPU (core/model_gpu.h): the same function as core/model_fwd.c, assembled from the kernels of
// pose_cuda.h, in bf16 with fp32 accumulation, fp32 statistics and fp32 master weights and gradients. LLaMA family
// (llama, mistral, qwen2): RMSNorm, SwiGLU, half-split rotary, GQA, q/k/v biases, sliding window, tied embeddings.
// (GPT-J, GPT-NeoX and Baichuan share the arenas and parameter functions here; their layers and run are in
// cuda/model_gpu_families.cu.)
//
// One layer, sequential residual (every tensor bf16 [N rows, ...] unless noted):
//   h1 = rmsnorm(x) (rstd fp32)      q = h1 Wq^T + bq [N,Q]      kv = h1 [Wk;Wv]^T + [bk;bv] [N,2KV] (one GEMM)
//   rope(q), rope(k) in place        att, lse = attention(q, k, v)  (flash kernels; reference kernels for odd heads)
//   x1 = x + att Wo^T (+ bo)         (GEMM with beta = 1 onto a copy of x: the sum is rounded once)
//   h2 = rmsnorm(x1)                 gu = h2 [Wg;Wu]^T [N,2I]    a = silu(g) * u    y = x1 + a Wd^T
// The backward mirrors it (weight gradients go to the fp32 arena through GEMMs: beta = 0 for a parameter's first
// writer after zero_grad (lazy zeroing), beta = 1 for the next ones; or, for the trainer's fused update, to two
// alternating layer slots, with the optimizer's callbacks after each layer), the LM
// head and cross-entropy run in row chunks (logits of at most HEAD_BYTES at a time, never [N,V] in fp32), and the
// embedding gradient is summed deterministically. Training keeps each layer's activations, or (POSE_RECOMPUTE_LAYER)
// only each layer's input and recomputes the layer's forward just before its backward.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model_gpu_internal.cuh"

#define ARENA_ALIGN 64                       // elements: 256 bytes of fp32, 128 of bf16

// ---- per-device stream shared by the model and its optimizer (every call orders on it) ---------------------------

#define MAX_DEV 64
static cudaStream_t g_streams[MAX_DEV];
static int g_stream_ok[MAX_DEV];

static pose_status dev_stream(int dev, cudaStream_t *out) {
  if (dev < 0 || dev >= MAX_DEV) return pose_error(POSE_EINVAL, "cuda: device index %d out of range", dev);
  PC_CU(cudaSetDevice(dev), "cudaSetDevice");
  if (!g_stream_ok[dev]) {
    // the highest priority: the fused update's second stream (default priority, the lowest) then only fills the SMs
    // that the model's kernels leave idle instead of delaying the backward's critical path
    int least = 0, greatest = 0;
    PC_CU(cudaDeviceGetStreamPriorityRange(&least, &greatest), "stream priorities");
    PC_CU(cudaStreamCreateWithPriority(&g_streams[dev], cudaStreamNonBlocking, greatest), "stream creation");
    g_stream_ok[dev] = 1;
  }
  *out = g_streams[dev];
  return POSE_OK;
}

extern "C" pose_status pc_device_stream(int dev, cudaStream_t *out) { return dev_stream(dev, out); }

static size_t g_reset_used[MAX_DEV];

extern "C" pose_status pose_gpu_memory(int dev, int reset, size_t *used, size_t *peak) {
  cudaStream_t s = NULL;
  POSE_TRY(dev_stream(dev, &s));
  cudaMemPool_t pool;
  PC_CU(cudaDeviceGetDefaultMemPool(&pool, dev), "cudaDeviceGetDefaultMemPool");
  uint64_t cur = 0, high = 0;
  PC_CU(cudaMemPoolGetAttribute(pool, cudaMemPoolAttrUsedMemCurrent, &cur), "pool attribute");
  if (reset) {
    uint64_t zero = 0;
    PC_CU(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrUsedMemHigh, &zero), "pool attribute");
    g_reset_used[dev] = (size_t)cur;
  }
  PC_CU(cudaMemPoolGetAttribute(pool, cudaMemPoolAttrUsedMemHigh, &high), "pool attribute");
  if (used) *used = (size_t)cur;
  if (peak) {
    size_t p = (size_t)high > g_reset_used[dev] ? (size_t)high : g_reset_used[dev];
    *peak = p > (size_t)cur ? p : (size_t)cur;
  }
  return POSE_OK;
}

static pose_status check_supported(const pose_model *m) {
  const pose_model_cfg *c = &m->cfg;
  if (pc_fam_generic(m)) POSE_TRY(pc_fam_check(m)); // gptj, gpt_neox, baichuan: cuda/model_gpu_families.cu
  else if (c->family != POSE_FAMILY_LLAMA && c->family != POSE_FAMILY_MISTRAL && c->family != POSE_FAMILY_QWEN2)
    return pose_error(POSE_EUNSUPPORTED, "model: the GPU decoder does not support model type %s; load it with "
                      "device \"cpu\"", c->model_type);
  else if (c->norm != POSE_NORM_RMS || !c->glu || c->parallel || c->shared_ln || c->interleaved ||
      c->qkv != POSE_QKV_SEPARATE || c->norm_head)
    return pose_error(POSE_EUNSUPPORTED, "model: this %s variant (norm, MLP, residual or rotary layout) is not "
                      "supported on the GPU", c->model_type);
  if (c->head_dim > 256)
    return pose_error(POSE_EUNSUPPORTED, "model: head dim %lld is not supported on the GPU (at most 256)",
                      (long long)c->head_dim);
  if (c->hidden > 16384)
    return pose_error(POSE_EUNSUPPORTED, "model: hidden size %lld is not supported on the GPU (at most 16384)",
                      (long long)c->hidden);
  return POSE_OK;
}

// Arena offsets: tensors read by one GEMM adjacent (k|v, gate|up and their biases), every group 256-byte aligned.
static size_t gpu_layout(const pose_model *m, size_t *off, int *grp, size_t *layer_lo, size_t *span, size_t *rest_lo) {
  size_t n = m->n_params, cur = 0;
  char *placed = (char *)calloc(n ? n : 1, 1);
  if (!placed) return 0;
  auto align = [&]() { cur = (cur + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN; };
  auto group = [&](int a, int b) {
    align();
    if (a >= 0 && !placed[a]) { off[a] = cur; cur += (size_t)m->params[a].numel; placed[a] = 1; }
    if (b >= 0 && !placed[b]) { off[b] = cur; cur += (size_t)m->params[b].numel; placed[b] = 1; }
  };
  *span = 0;
  for (size_t i = 0; i < n; i++) grp[i] = (int)m->cfg.layers;
  for (int64_t l = 0; l < m->cfg.layers; l++) {
    const pose_layer_idx *L = &m->layer[l];
    align();
    layer_lo[l] = cur;
    group(L->q_w, -1); group(L->k_w, L->v_w); group(L->q_b, -1); group(L->k_b, L->v_b);
    group(L->o_w, -1); group(L->o_b, -1); group(L->mg_w, L->mu_w); group(L->mg_b, L->mu_b);
    group(L->md_w, -1); group(L->md_b, -1); group(L->ln1_w, -1); group(L->ln2_w, -1);
    const int li[] = {L->q_w, L->k_w, L->v_w, L->q_b, L->k_b, L->v_b, L->o_w, L->o_b, L->mg_w, L->mu_w,
                      L->mg_b, L->mu_b, L->md_w, L->md_b, L->ln1_w, L->ln2_w};
    for (int j = 0; j < 16; j++)
      if (li[j] >= 0) grp[li[j]] = (int)l;
    align();
    if (cur - layer_lo[l] > *span) *span = cur - layer_lo[l];
  }
  align();
  *rest_lo = cur;
  for (size_t i = 0; i < n; i++) group((int)i, -1);
  align();
  free(placed);
  return cur ? cur : ARENA_ALIGN;
}

static pose_status galloc(void **p, size_t bytes, cudaStream_t s) { return pc_scratch_alloc(p, bytes, s); }

extern "C" pose_status pose_gpu_model_new(pose_model *m) {
  POSE_TRY(check_supported(m));
  pose_gpu_model *G = (pose_gpu_model *)calloc(1, sizeof *G);
  if (!G) return pose_error(POSE_ENOMEM, "model: out of memory");
  m->gpu = G;
  G->dev = m->dev.index;
  POSE_TRY(dev_stream(G->dev, &G->s));
  G->off = (size_t *)calloc(m->n_params ? m->n_params : 1, sizeof(size_t));
  G->gz = (unsigned char *)calloc(m->n_params ? m->n_params : 1, 1);
  G->group = (int *)calloc(m->n_params ? m->n_params : 1, sizeof(int));
  G->layer_lo = (size_t *)calloc(m->cfg.layers > 0 ? (size_t)m->cfg.layers : 1, sizeof(size_t));
  if (!G->off || !G->gz || !G->group || !G->layer_lo) return pose_error(POSE_ENOMEM, "model: out of memory");
  G->numel = gpu_layout(m, G->off, G->group, G->layer_lo, &G->span, &G->rest_lo);
  if (!G->numel) return pose_error(POSE_ENOMEM, "model: out of memory");
  G->ref_attn = m->cfg.head_dim != 64 && m->cfg.head_dim != 128;
  pose_status st = galloc((void **)&G->w, G->numel * sizeof(float), G->s);
  if (st == POSE_OK) st = galloc((void **)&G->wc, G->numel * sizeof(bf16), G->s);
  if (st == POSE_OK) st = galloc((void **)&G->inv_freq, sizeof(float) * (size_t)(m->rot / 2 + 1), G->s);
  if (st != POSE_OK)
    return pose_error_prefix(st, "model: %.2f GB of weights on cuda:%d: ", G->numel * 6.0 / 1e9, G->dev);
  PC_CU(cudaMemsetAsync(G->w, 0, G->numel * sizeof(float), G->s), "memset");
  PC_CU(cudaMemsetAsync(G->wc, 0, G->numel * sizeof(bf16), G->s), "memset");
  POSE_TRY(pose_cuda_blas_create(G->dev, 0, &G->blas));
  for (size_t i = 0; i < m->n_params; i++) {
    m->params[i].w = G->w + G->off[i];
    m->params[i].w_bf16 = G->wc + G->off[i];
    m->params[i].g = NULL;
  }
  return POSE_OK;
}

extern "C" void pose_gpu_model_free(pose_model *m) {
  pose_gpu_model *G = m->gpu;
  if (!G) return;
  cudaSetDevice(G->dev);
  if (G->s) {
    pc_scratch_free(G->w, G->s);
    pc_scratch_free(G->g, G->s);
    pc_scratch_free(G->gslot, G->s);
    pc_scratch_free(G->gscr, G->s);
    pc_scratch_free(G->wc, G->s);
    pc_scratch_free(G->inv_freq, G->s);
    cudaStreamSynchronize(G->s);
  }
  if (G->blas) pose_cuda_blas_free(G->blas);
  if (G->cs) cudaStreamDestroy(G->cs);
  if (G->host_ckpt) cudaFreeHost(G->host_ckpt);
  free(G->off);
  free(G->gz);
  free(G->group);
  free(G->layer_lo);
  free(G->scr_off);
  free(G->scr_pending);
  free(G);
  m->gpu = NULL;
  for (size_t i = 0; i < m->n_params; i++) m->params[i].w = m->params[i].g = NULL, m->params[i].w_bf16 = NULL;
}

// Slot memory in fp32 units: two layer slots (fp32, or bf16 = half the bytes) and the fp32 region of the others.
static size_t slot_elems(const pose_gpu_model *G) {
  return (G->slot_bf16 ? G->span : 2 * G->span) + (G->numel - G->rest_lo);
}

extern "C" pose_status pose_gpu_model_ensure_grads(pose_model *m) {
  pose_gpu_model *G = m->gpu;
  if (G->slots ? G->gslot != NULL : G->g != NULL) return POSE_OK;
  PC_CU(cudaSetDevice(G->dev), "cudaSetDevice");
  if (G->slots) {
    G->slot_bf16 = G->bf16 && !G->no_bf16_slots;
    const size_t n = slot_elems(G);
    pose_status st = galloc((void **)&G->gslot, n * sizeof(float), G->s);
    if (st != POSE_OK) return pose_error_prefix(st, "model: gradient slots (%.2f GB): ", n * 4.0 / 1e9);
    // fp32 scratch for a layer's small gradients (norm weights, biases) bound for bf16 slots: one region each,
    // packed in arena order so that adjacent pairs (k|v, gate|up biases) stay adjacent
    if (!G->scr_off) G->scr_off = (size_t *)calloc(m->n_params ? m->n_params : 1, sizeof(size_t));
    if (!G->scr_pending) G->scr_pending = (unsigned char *)calloc(m->n_params ? m->n_params : 1, 1);
    if (!G->scr_off || !G->scr_pending) return pose_error(POSE_ENOMEM, "model: out of memory");
    int *lst = (int *)malloc(sizeof(int) * (m->n_params ? m->n_params : 1));
    if (!lst) return pose_error(POSE_ENOMEM, "model: out of memory");
    size_t sc = 64;
    for (int64_t l = 0; l < m->cfg.layers; l++) {
      int k = 0;
      for (size_t i = 0; i < m->n_params; i++) // layer l's small parameters, insertion-sorted by arena offset
        if (G->group[i] == l && m->kinds[i] != POSE_PK_MATRIX) {
          int j = k++;
          while (j > 0 && G->off[lst[j - 1]] > G->off[i]) lst[j] = lst[j - 1], j--;
          lst[j] = (int)i;
        }
      size_t cur = 0;
      for (int j = 0; j < k; j++) G->scr_off[lst[j]] = cur, cur += (size_t)m->params[lst[j]].numel;
      if (cur > sc) sc = cur;
    }
    free(lst);
    memset(G->scr_pending, 0, m->n_params);
    if (G->slot_bf16 && G->gscr_n < sc) {
      pc_scratch_free(G->gscr, G->s);
      G->gscr = NULL;
      G->gscr_n = 0;
      st = galloc((void **)&G->gscr, sc * sizeof(float), G->s);
      if (st != POSE_OK) return pose_error_prefix(st, "model: gradient scratch: ");
      G->gscr_n = sc;
    }
    bf16 *lb = (bf16 *)G->gslot;
    float *rest = G->slot_bf16 ? (float *)(lb + 2 * G->span) : G->gslot + 2 * G->span;
    for (size_t i = 0; i < m->n_params; i++) {
      const int l = G->group[i];
      const size_t o = l < m->cfg.layers ? (size_t)(l % 2) * G->span + (G->off[i] - G->layer_lo[l]) : 0;
      if (l >= m->cfg.layers) m->params[i].g = rest + (G->off[i] - G->rest_lo), m->params[i].g_bf16 = 0;
      else if (G->slot_bf16) m->params[i].g = (float *)(void *)(lb + o), m->params[i].g_bf16 = 1;
      else m->params[i].g = G->gslot + o, m->params[i].g_bf16 = 0;
      G->gz[i] = 1; // whatever the slot holds, nothing has been written for this parameter
    }
    return POSE_OK;
  }
  pose_status st = galloc((void **)&G->g, G->numel * sizeof(float), G->s);
  if (st != POSE_OK) return pose_error_prefix(st, "model: gradients (%.2f GB): ", G->numel * 4.0 / 1e9);
  PC_CU(cudaMemsetAsync(G->g, 0, G->numel * sizeof(float), G->s), "memset");
  for (size_t i = 0; i < m->n_params; i++) m->params[i].g = G->g + G->off[i], m->params[i].g_bf16 = 0, G->gz[i] = 0;
  return POSE_OK;
}

extern "C" pose_status pose_gpu_model_zero_grad(pose_model *m) {
  pose_gpu_model *G = m->gpu;
  POSE_TRY(pose_gpu_model_ensure_grads(m));
  if (G->eager_zero || pc_fam_generic(m)) { // (the GPT-J / NeoX / Baichuan decoder only adds to its gradients)
    PC_CU(cudaMemsetAsync(G->slots ? G->gslot : G->g, 0, (G->slots ? slot_elems(G) : G->numel) * sizeof(float), G->s),
          "memset");
    memset(G->gz, 0, m->n_params);
  } else {
    memset(G->gz, 1, m->n_params);
  }
  return POSE_OK;
}

extern "C" void pose_gpu_model_set_lazy_zero(pose_model *m, int on) { m->gpu->eager_zero = !on; }

// Gradient slots of another dtype: reallocated (their content is transient anyway).
static pose_status slots_realloc(pose_model *m) {
  pose_gpu_model *G = m->gpu;
  if (!G->slots || !G->gslot) return POSE_OK;
  pc_scratch_free(G->gslot, G->s);
  G->gslot = NULL;
  for (size_t i = 0; i < m->n_params; i++) m->params[i].g = NULL;
  return pose_gpu_model_ensure_grads(m);
}

extern "C" pose_status pose_gpu_model_set_bf16_slots(pose_model *m, int on) {
  m->gpu->no_bf16_slots = !on;
  return slots_realloc(m);
}
extern "C" void pose_gpu_model_set_head_rows(pose_model *m, int64_t rows) { m->gpu->head_rows = rows > 0 ? rows : 0; }

extern "C" pose_status pose_gpu_model_set_grad_slots(pose_model *m, int on) {
  pose_gpu_model *G = m->gpu;
  on = on != 0;
  if (G->slots == on) return POSE_OK;
  if (on && pc_fam_generic(m))
    return pose_error(POSE_EUNSUPPORTED, "model: the fused update (gradient slots, per-layer optimizer callbacks) is "
                      "implemented for the LLaMA family's GPU decoder, not for %s", m->cfg.model_type);
  PC_CU(cudaSetDevice(G->dev), "cudaSetDevice");
  // stream-ordered frees: every earlier use of the old buffers on this stream completes first
  if (on) {
    pc_scratch_free(G->g, G->s);
    G->g = NULL;
  } else {
    pc_scratch_free(G->gslot, G->s);
    G->gslot = NULL;
  }
  for (size_t i = 0; i < m->n_params; i++) m->params[i].g = NULL;
  G->slots = on;
  return pose_gpu_model_ensure_grads(m);
}

extern "C" int pose_gpu_model_grad_slots(const pose_model *m) { return m->gpu && m->gpu->slots; }

extern "C" int pose_gpu_model_param_group(const pose_model *m, size_t i) { return m->gpu->group[i]; }

extern "C" size_t pose_gpu_model_grad_bytes(const pose_model *m) {
  const pose_gpu_model *G = m->gpu;
  if (G->slots) return G->gslot ? slot_elems(G) * sizeof(float) : 0;
  return G->g ? G->numel * sizeof(float) : 0;
}

// Pure-bf16 policy <-> fp32 masters. To bf16: the bf16 copies (RNE of the masters) become the weights and the fp32
// arena is freed (memory per parameter: 2 bytes of weights instead of 6). Back: masters rebuilt from the bf16
// weights. The trainer's moments follow the policy in force when the trainer is created.
extern "C" pose_status pose_gpu_model_set_bf16(pose_model *m, int on) {
  pose_gpu_model *G = m->gpu;
  on = on != 0;
  if (G->bf16 == on) return POSE_OK;
  PC_CU(cudaSetDevice(G->dev), "cudaSetDevice");
  if (on) {
    PC_CU(cudaStreamSynchronize(G->s), "model");
    pc_scratch_free(G->w, G->s);
    G->w = NULL;
    for (size_t i = 0; i < m->n_params; i++) m->params[i].w = NULL;
  } else {
    pose_status st = galloc((void **)&G->w, G->numel * sizeof(float), G->s);
    if (st != POSE_OK) return pose_error_prefix(st, "model: fp32 master weights (%.2f GB): ", G->numel * 4.0 / 1e9);
    POSE_TRY(pose_cuda_convert(G->w, POSE_F32, G->wc, POSE_BF16, (int64_t)G->numel, G->s));
    for (size_t i = 0; i < m->n_params; i++) m->params[i].w = G->w + G->off[i];
    PC_CU(cudaStreamSynchronize(G->s), "model");
  }
  G->bf16 = on;
  return slots_realloc(m); // bf16 layer slots follow the policy
}

extern "C" int pose_gpu_model_is_bf16(const pose_model *m) { return m->gpu && m->gpu->bf16; }

// host fp32 <-> device bf16 through a device fp32 staging buffer (RNE on the way in)
extern "C" pose_status pose_gpu_bf16_get(int dev, const uint16_t *src, int64_t n, float *dst) {
  cudaStream_t s = NULL;
  POSE_TRY(dev_stream(dev, &s));
  if (n <= 0) return POSE_OK;
  float *tmp = NULL;
  POSE_TRY(pc_scratch_alloc((void **)&tmp, sizeof(float) * (size_t)n, s));
  pose_status st = pose_cuda_convert(tmp, POSE_F32, src, POSE_BF16, n, s);
  cudaError_t e = st == POSE_OK ? cudaMemcpyAsync(dst, tmp, sizeof(float) * (size_t)n, cudaMemcpyDeviceToHost, s)
                                : cudaSuccess;
  pc_scratch_free(tmp, s);
  if (e == cudaSuccess) e = cudaStreamSynchronize(s);
  if (st == POSE_OK && e != cudaSuccess) st = pose_cuda_fail(e, "copy to host");
  return st;
}

extern "C" pose_status pose_gpu_bf16_set(int dev, uint16_t *dst, int64_t n, const float *src) {
  cudaStream_t s = NULL;
  POSE_TRY(dev_stream(dev, &s));
  if (n <= 0) return POSE_OK;
  float *tmp = NULL;
  POSE_TRY(pc_scratch_alloc((void **)&tmp, sizeof(float) * (size_t)n, s));
  pose_status st = POSE_OK;
  cudaError_t e = cudaMemcpyAsync(tmp, src, sizeof(float) * (size_t)n, cudaMemcpyHostToDevice, s);
  if (e != cudaSuccess) st = pose_cuda_fail(e, "copy to device");
  if (st == POSE_OK) st = pose_cuda_convert(dst, POSE_BF16, tmp, POSE_F32, n, s);
  pc_scratch_free(tmp, s);
  e = cudaStreamSynchronize(s);
  if (st == POSE_OK && e != cudaSuccess) st = pose_cuda_fail(e, "copy to device");
  return st;
}

extern "C" pose_status pose_gpu_kv_alloc(const pose_model *m, pose_kv_cache *kv) {
  pose_gpu_model *G = m->gpu;
  PC_CU(cudaSetDevice(G->dev), "cudaSetDevice");
  const size_t bytes = sizeof(bf16) * (size_t)(kv->layers * kv->B * kv->cap * 2 * kv->kvdim);
  pose_status st = galloc(&kv->dev_kv, bytes, G->s);
  if (st != POSE_OK) return pose_error_prefix(st, "kv cache (%.2f GB on cuda:%d): ", bytes / 1e9, G->dev);
  kv->dev = G->dev;
  return POSE_OK;
}

extern "C" void pose_gpu_kv_free(pose_kv_cache *kv) {
  if (!kv->dev_kv) return;
  cudaStream_t s = NULL;
  if (dev_stream(kv->dev, &s) != POSE_OK) return;
  pc_scratch_free(kv->dev_kv, s);
  cudaStreamSynchronize(s);
  kv->dev_kv = NULL;
}

__global__ void k_fill(float *x, int64_t n, float v) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) x[i] = v;
}

extern "C" pose_status pose_gpu_model_init_weights(pose_model *m, uint64_t seed) {
  pose_gpu_model *G = m->gpu;
  PC_CU(cudaSetDevice(G->dev), "cudaSetDevice");
  // the CPU computes fl32(std_f32 * z_f32); std as the float it is there makes the device's double product round to
  // the same value
  const double stdf = (double)(float)m->cfg.init_range;
  if (G->bf16) return pose_error(POSE_EINVAL, "model: initialise the weights before switching to the bf16 policy");
  for (size_t i = 0; i < m->n_params; i++) {
    pose_param *p = &m->params[i];
    switch (m->kinds[i]) {
    case POSE_PK_BIAS:
    case POSE_PK_NORM_B:
      PC_CU(cudaMemsetAsync(p->w, 0, sizeof(float) * (size_t)p->numel, G->s), "memset");
      break;
    case POSE_PK_NORM_W:
      k_fill<<<pc_grid(p->numel, 256), 256, 0, G->s>>>(p->w, p->numel, 1.0f);
      PC_LAUNCHED("fill");
      break;
    default:
      POSE_TRY(pose_cuda_rand(p->w, POSE_F32, p->numel, seed, (uint64_t)i, 0.0, stdf, 1, G->s));
    }
  }
  if (m->cfg.pad_id >= 0)
    PC_CU(cudaMemsetAsync(m->params[m->embed].w + m->cfg.pad_id * m->cfg.hidden, 0, sizeof(float) * (size_t)m->cfg.hidden,
                          G->s), "memset");
  POSE_TRY(pose_cuda_convert(G->wc, POSE_BF16, G->w, POSE_F32, (int64_t)G->numel, G->s));
  PC_CU(cudaStreamSynchronize(G->s), "initialisation");
  return POSE_OK;
}

extern "C" pose_status pose_gpu_param_get(pose_model *m, size_t i, int which, float *dst) {
  pose_gpu_model *G = m->gpu;
  const pose_param *p = &m->params[i];
  PC_CU(cudaSetDevice(G->dev), "cudaSetDevice");
  size_t bytes = sizeof(float) * (size_t)p->numel;
  if (which == 1 && G->slots)
    return pose_error(POSE_EUNSUPPORTED, "model: gradients are transient under the trainer's fused update "
                      "(fused_update = true keeps two layer slots, not a gradient per parameter)");
  if (which == 1 && (!p->g || G->gz[i])) { // never allocated, or zeroed lazily
    memset(dst, 0, bytes);
    return POSE_OK;
  }
  if (which == 0 && G->bf16) return pose_gpu_bf16_get(G->dev, (const uint16_t *)p->w_bf16, p->numel, dst);
  PC_CU(cudaMemcpyAsync(dst, which ? p->g : p->w, bytes, cudaMemcpyDeviceToHost, G->s), "copy to host");
  PC_CU(cudaStreamSynchronize(G->s), "copy to host");
  return POSE_OK;
}

extern "C" pose_status pose_gpu_param_set(pose_model *m, size_t i, const float *src) {
  pose_gpu_model *G = m->gpu;
  pose_param *p = &m->params[i];
  PC_CU(cudaSetDevice(G->dev), "cudaSetDevice");
  if (G->bf16) return pose_gpu_bf16_set(G->dev, (uint16_t *)p->w_bf16, p->numel, src);
  PC_CU(cudaMemcpyAsync(p->w, src, sizeof(float) * (size_t)p->numel, cudaMemcpyHostToDevice, G->s), "copy to device");
  POSE_TRY(pose_cuda_convert(p->w_bf16, POSE_BF16, p->w, POSE_F32, p->numel, G->s));
  PC_CU(cudaStreamSynchronize(G->s), "copy to device");
  return POSE_OK;
}

// ---- the run's workspace: one allocation carved into buffers (laid out twice: to size, then to place) -------------

struct layer_acts {
  bf16 *h1, *q, *kv, *att, *x1, *h2, *gu, *a;
  float *rs1, *rs2, *lse;
  int mlp_full; // h2, gu, a hold every row (training without recompute); else one row chunk, reused chunk by chunk
};

struct workspace {
  bf16 **xs;          // layer inputs: training L+1 (xs[L] the final residual), offload 2 (ping-pong); inference one
  layer_acts *acts;   // training without recompute: one per layer; else one shared
  bf16 *hf;           // final norm output
  float *rsf;
  bf16 *head;         // logits chunk [R,V] (bf16; fp32 when the caller wants logits)
  int64_t R;
  float *nll;         // [N]
  int64_t *ids, *pos, *tgt;
  bf16 *dres, *dh, *dA, *dB; // backward: residual gradient, norm-input gradient, [max(N*Q, C*I)], [N*(Q+2KV)]
  // recompute="offload": pinned host copies of layer inputs 0..L-2, the copy stream and its events
  bf16 *host;
  cudaStream_t cs;
  cudaEvent_t ev_mark, ev_saved[2], ev_loaded[2];
  // recompute="selective": each layer's attention output [N,Q] and lse, from the forward to the backward
  bf16 **att_s;
  float **lse_s;
};

struct bump {
  char *base;
  size_t off;
  template <typename T> T *take(size_t n) {
    T *p = base ? (T *)(base + off) : NULL;
    off += (n * sizeof(T) + 255) & ~(size_t)255;
    return p;
  }
};

struct run_ctx {
  int64_t B, T, N;
  int train, rec, logits32;
  pose_kv_cache *kv; // decoding: append k|v to the cache, attend to it, logits of each row's last token
  const pose_gpu_bwd_hook *hook; // training with the fused update: the optimizer's per-layer callbacks
  int64_t head_rows;             // 0, or a smaller LM-head chunk (tests)
  int offl;          // recompute="offload" (implies rec)
  int keep;          // recompute="selective" (implies rec): attention outputs and lse kept per layer
  int64_t C;         // MLP row chunk (C >= N: one chunk)
};

// Rows per MLP chunk: the chunk's h2 [C,D], gate|up [C,2I], act [C,I] and act gradient [C,I] (bf16) fit in
// MLP_CHUNK_BYTES; a multiple of 256 rows (so that every chunk's buffers keep the 256-byte alignment of a whole
// buffer, and with it cuBLASLt's choice of kernel), N when that is fewer. It depends on the model and N only, never
// on the recompute policy: the policies then run the same products on the same rows and stay bit-identical.
static int64_t mlp_chunk_rows(const pose_model *m, int64_t N) {
  int64_t C = m->gpu->chunk_rows;
  if (C <= 0) {
    const int64_t row = 2 * (m->cfg.hidden + 4 * m->cfg.inter);
    C = (int64_t)(MLP_CHUNK_BYTES / (size_t)row) / 256 * 256;
    if (C < 256) C = 256;
  }
  return C < N ? C : (N > 0 ? N : 1);
}

// The workspace's host-side pointer arrays (layer inputs, activation sets, kept attention outputs), zeroed
static pose_status ws_arrays(const pose_model *m, const run_ctx &rc, workspace *w) {
  memset(w, 0, sizeof *w);
  const int64_t L = m->cfg.layers, nx = !rc.train ? 1 : rc.offl ? 2 : L + 1, nsets = rc.train && !rc.rec ? L : 1;
  w->xs = (bf16 **)calloc((size_t)nx, sizeof *w->xs);
  w->acts = (layer_acts *)calloc((size_t)nsets, sizeof *w->acts);
  w->att_s = (bf16 **)calloc((size_t)L, sizeof *w->att_s);
  w->lse_s = (float **)calloc((size_t)L, sizeof *w->lse_s);
  if (w->xs && w->acts && w->att_s && w->lse_s) return POSE_OK;
  free(w->xs);
  free(w->acts);
  free(w->att_s);
  free(w->lse_s);
  return pose_error(POSE_ENOMEM, "model: out of memory");
}

static void ws_arrays_free(workspace *w) {
  free(w->xs);
  free(w->acts);
  free(w->att_s);
  free(w->lse_s);
}

static void ws_layout(const pose_model *m, const run_ctx &rc, workspace *w, bump *b) {
  const pose_model_cfg *c = &m->cfg;
  const size_t D = (size_t)c->hidden, I = (size_t)c->inter, Q = (size_t)m->qdim, KV = (size_t)m->kvdim,
               V = (size_t)c->vocab, n = (size_t)rc.N, C = (size_t)rc.C;
  const int64_t nx = !rc.train ? 1 : rc.offl ? 2 : c->layers + 1, nsets = rc.train && !rc.rec ? c->layers : 1;
  const int full = rc.train && !rc.rec;
  const size_t mrows = full ? n : C; // rows of h2, gu, a
  for (int64_t l = 0; l < nx; l++) w->xs[l] = b->take<bf16>(n * D);
  if (rc.keep)
    for (int64_t l = 0; l < c->layers; l++) {
      w->att_s[l] = b->take<bf16>(n * Q);
      w->lse_s[l] = b->take<float>((size_t)(rc.B * c->heads * rc.T));
    }
  for (int64_t l = 0; l < nsets; l++) {
    layer_acts *A = &w->acts[l];
    A->mlp_full = full;
    A->h1 = b->take<bf16>(n * D);
    A->rs1 = b->take<float>(n);
    A->q = b->take<bf16>(n * Q);
    A->kv = b->take<bf16>(n * 2 * KV);
    A->att = rc.keep ? NULL : b->take<bf16>(n * Q); // selective: the layer's own, set before each use
    A->lse = rc.keep ? NULL : b->take<float>((size_t)(rc.B * c->heads * rc.T));
    A->x1 = rc.train ? b->take<bf16>(n * D) : NULL;
    A->rs2 = b->take<float>(n);
    A->h2 = b->take<bf16>(mrows * D);
    A->gu = b->take<bf16>(mrows * 2 * I);
    A->a = b->take<bf16>(mrows * I);
  }
  w->hf = b->take<bf16>(n * D);
  w->rsf = b->take<float>(n);
  size_t elt = rc.logits32 ? 4 : 2;
  int64_t R = (int64_t)(HEAD_BYTES / (V * elt));
  R = R >= 64 ? R / 64 * 64 : (R < 1 ? 1 : R);
  if (rc.head_rows > 0 && R > rc.head_rows) R = rc.head_rows;
  if (R > rc.N) R = rc.N;
  w->R = R;
  w->head = (bf16 *)b->take<char>((size_t)R * V * elt);
  w->nll = b->take<float>(n);
  w->ids = b->take<int64_t>(n);
  w->pos = b->take<int64_t>(n);
  w->tgt = b->take<int64_t>(n);
  if (rc.train) {
    size_t a = n * Q > C * I ? n * Q : C * I;
    w->dres = b->take<bf16>(n * D);
    w->dh = b->take<bf16>(n * D);
    w->dA = b->take<bf16>(a);
    w->dB = b->take<bf16>(n * (Q + 2 * KV));
  }
}

// ---- lazy zeroing: the first writer of a parameter's gradient in a step overwrites it ------------------------------

// Clears parameter i's gradient for real if it is only logically zero (before a kernel that can only add).
static pose_status grad_clear(pose_model *m, int i) {
  pose_gpu_model *G = m->gpu;
  if (i < 0 || !G->gz[i]) return POSE_OK;
  const size_t esz = m->params[i].g_bf16 ? 2 : 4;
  PC_CU(cudaMemsetAsync(m->params[i].g, 0, esz * (size_t)m->params[i].numel, G->s), "memset");
  G->gz[i] = 0;
  return POSE_OK;
}

// beta for a weight-gradient GEMM writing parameter a (and b, adjacent, the same GEMM): 0 overwrites when both are
// logically zero; otherwise any still-zero one is cleared and the GEMM accumulates. (Overwriting gives the same
// bits as adding onto zeros, except that an exact -0 may stay -0; AdamW cannot tell the two apart.)
static pose_status dw_beta(pose_model *m, int a, int b, float *beta) {
  pose_gpu_model *G = m->gpu;
  const int za = a >= 0 && G->gz[a], zb = b >= 0 && G->gz[b];
  if (za && (b < 0 || zb)) {
    G->gz[a] = 0;
    if (b >= 0) G->gz[b] = 0;
    *beta = 0.0f;
    return POSE_OK;
  }
  POSE_TRY(grad_clear(m, a));
  POSE_TRY(grad_clear(m, b));
  *beta = 1.0f;
  return POSE_OK;
}

// Every gradient of `group` (a layer, or cfg.layers for the others) not written by this backward: cleared, so that
// what the optimizer reads is the zero gradient it stands for.
// Small gradients summed in fp32 scratch for bf16 slots are converted into their slots here.
static pose_status grads_settle(pose_model *m, int group) {
  pose_gpu_model *G = m->gpu;
  for (size_t i = 0; i < m->n_params; i++) {
    if (G->group[i] != group && group >= 0) continue;
    if (G->scr_pending && G->scr_pending[i]) {
      POSE_TRY(pose_cuda_convert(m->params[i].g, POSE_BF16, G->gscr + G->scr_off[i], POSE_F32, m->params[i].numel,
                                 G->s));
      G->scr_pending[i] = 0;
    }
    POSE_TRY(grad_clear(m, (int)i));
  }
  return POSE_OK;
}

// dW[out,in] (+)= dy[N,out]^T x[N,in] (fp32) into parameter wi's gradient (and wj's, adjacent: a fused projection)
static pose_status lin_dw_lazy(pose_model *m, int wi, int wj, const bf16 *dy, int64_t lddy, int64_t N, int64_t out,
                          const bf16 *x, int64_t in) {
  if (wi < 0) return POSE_OK;
  float beta = 1.0f;
  POSE_TRY(dw_beta(m, wi, wj, &beta));
  // bf16 slots: the fp32 accumulators rounded once to bf16 (written once per backward: beta 0)
  return gemm(m->gpu, 1, 0, out, in, N, dy, lddy, x, in, m->params[wi].g, m->params[wi].g_bf16 ? POSE_BF16 : POSE_F32,
              in, beta, NULL);
}

// Where an adding kernel should put small parameter i's gradient: the parameter itself (fp32), or, bound for a bf16
// slot, its fp32 scratch region (cleared by its first writer of the backward; converted by grads_settle).
static pose_status small_grad_dst(pose_model *m, int i, float **dst) {
  pose_gpu_model *G = m->gpu;
  *dst = G32(m, i);
  if (i < 0 || !m->params[i].g_bf16) return POSE_OK;
  if (!G->gscr || G->scr_off[i] + (size_t)m->params[i].numel > G->gscr_n)
    return pose_error(POSE_EINVAL, "model: no gradient scratch for '%s'", m->params[i].name);
  *dst = G->gscr + G->scr_off[i];
  if (G->gz[i]) {
    PC_CU(cudaMemsetAsync(*dst, 0, sizeof(float) * (size_t)m->params[i].numel, G->s), "memset");
    G->gz[i] = 0;
  }
  G->scr_pending[i] = 1;
  return POSE_OK;
}
static pose_status bias_grad_lazy(pose_model *m, int bi, int bj, const bf16 *dy, int64_t ld, int64_t N, int64_t C) {
  if (bi < 0) return POSE_OK;
  if (m->params[bi].g_bf16) { // bf16 slots: summed in fp32 scratch (the pair's regions are adjacent)
    float *db = NULL, *dj = NULL;
    POSE_TRY(small_grad_dst(m, bi, &db));
    POSE_TRY(small_grad_dst(m, bj, &dj));
    if (dj && dj != db + m->params[bi].numel)
      return pose_error(POSE_EINVAL, "model: bias pair '%s' not adjacent in the gradient scratch", m->params[bi].name);
    return pose_cuda_colsum_add(dy, POSE_BF16, N, C, ld, db, m->gpu->s);
  }
  POSE_TRY(grad_clear(m, bi));
  POSE_TRY(grad_clear(m, bj));
  return pose_cuda_colsum_add(dy, POSE_BF16, N, C, ld, m->params[bi].g, m->gpu->s);
}

// Largest temporary a kernel of the run allocates on top of the workspace (stream-ordered scratch): the attention
// backward's Dsum, the norm backward's per-block partials, the embedding backward's sort.
static size_t run_scratch_bytes(const pose_model *m, const run_ctx &rc) {
  const size_t n = (size_t)rc.N, D = (size_t)m->cfg.hidden;
  int sms = pose_cuda_sm_count();
  size_t dsum = sizeof(float) * (size_t)(rc.B * m->cfg.heads * rc.T);
  size_t parts = (size_t)(sms > 0 ? sms : 132) * 4 * D * sizeof(float) * 2;
  size_t sort = 3 * ((n * 8 + 255) & ~(size_t)255) + 2 * n * 8 + ((size_t)1 << 20); // CUB's temporary: an estimate
  size_t r = parts;
  if (rc.train && dsum > r) r = dsum;
  if (rc.train && sort > r) r = sort;
  return r;
}

// ---- blocks ------------------------------------------------------------------------------------------------------

static pose_status rms_fwd(pose_model *m, int w_idx, const bf16 *x, int64_t N, bf16 *y, float *rs) {
  return pose_cuda_norm_fwd(1, x, POSE_BF16, NW(m, w_idx), NULL, NWDT(m), (float)m->cfg.norm_eps, N, m->cfg.hidden,
                            y, NULL, rs, m->gpu->s);
}

// dx (+)= the gradient at the norm's input; the norm weight's gradient is added to its fp32 slot
static pose_status rms_bwd(pose_model *m, int w_idx, const bf16 *x, const float *rs, const bf16 *dy, int64_t N,
                           bf16 *dx, int acc) {
  if (w_idx >= 0 && m->params[w_idx].g_bf16) { // bf16 slots: summed in fp32 scratch, converted by grads_settle
    float *dw = NULL;
    POSE_TRY(small_grad_dst(m, w_idx, &dw));
    return pose_cuda_norm_bwd(1, x, POSE_BF16, NW(m, w_idx), NWDT(m), NULL, rs, dy, N, m->cfg.hidden, dx, acc, dw,
                              NULL, m->gpu->s);
  }
  POSE_TRY(grad_clear(m, w_idx));
  return pose_cuda_norm_bwd(1, x, POSE_BF16, NW(m, w_idx), NWDT(m), NULL, rs, dy, N, m->cfg.hidden, dx, acc,
                            G32(m, w_idx), NULL, m->gpu->s);
}

static void attn_dims(const pose_model *m, int64_t l, const run_ctx &rc, pose_cuda_attn_dims *d) {
  const pose_model_cfg *c = &m->cfg;
  pose_cuda_attn_dims_init(d, rc.B, rc.T, rc.T, c->heads, c->kv_heads, c->head_dim, c->window[l]);
  d->q_rstride = m->qdim;
  d->q_bstride = rc.T * m->qdim;
  d->kv_rstride = 2 * m->kvdim;
  d->kv_bstride = rc.T * 2 * m->kvdim;
}

static pose_status rope(pose_model *m, bf16 *x, int64_t N, int64_t stride, int64_t H, const int64_t *pos, int inverse) {
  return pose_cuda_rope_apply(x, POSE_BF16, N, stride, H, m->cfg.head_dim, m->rot, pos, m->gpu->inv_freq,
                              (float)pose_rope_attention_factor(m->rope), 0, inverse, m->gpu->s);
}

static pose_cuda_act act_kind(const pose_model *m) { return (pose_cuda_act)m->cfg.act; }

// Attention half of layer l: x1 = x + attention(rmsnorm(x)) Wo^T (x1 == x: in place, inference). Needs the whole
// sequence at once.
// skip_attn: the recomputation of recompute="selective", whose attention output (A->att, A->lse) was kept from
// the forward: the projections and rotations (the attention backward needs q, k, v) and x1 are recomputed, the
// attention itself is not.
static pose_status attn_half_fwd(pose_model *m, int64_t l, layer_acts *A, const bf16 *x, bf16 *x1,
                                 const workspace *w, const run_ctx &rc, int skip_attn) {
  pose_gpu_model *G = m->gpu;
  const pose_model_cfg *c = &m->cfg;
  const pose_layer_idx *L = &m->layer[l];
  const int64_t N = rc.N, D = c->hidden, Q = m->qdim, KV = m->kvdim;
  POSE_TRY(rms_fwd(m, L->ln1_w, x, N, A->h1, A->rs1));
  POSE_TRY(lin_fwd(G, A->h1, N, D, WC(m, L->q_w), Q, WC(m, L->q_b), A->q, 0.0f));
  POSE_TRY(lin_fwd(G, A->h1, N, D, WC(m, L->k_w), 2 * KV, WC(m, L->k_b), A->kv, 0.0f));
  POSE_TRY(rope(m, A->q, N, Q, c->heads, w->pos, 0));
  POSE_TRY(rope(m, A->kv, N, 2 * KV, c->kv_heads, w->pos, 0));
  pose_cuda_attn_dims d;
  attn_dims(m, l, rc, &d);
  const uint16_t *q = (const uint16_t *)A->q, *k = (const uint16_t *)A->kv, *v = (const uint16_t *)(A->kv + KV);
  if (rc.kv) { // append this call's rotated k|v rows at len.. of every batch row, then attend over the cache
    pose_kv_cache *kc = rc.kv;
    bf16 *cl = (bf16 *)kc->dev_kv + (size_t)(l * kc->B * kc->cap * 2 * KV);
    PC_CU(cudaMemcpy2DAsync(cl + kc->len * 2 * KV, sizeof(bf16) * (size_t)(kc->cap * 2 * KV), A->kv,
                            sizeof(bf16) * (size_t)(rc.T * 2 * KV), sizeof(bf16) * (size_t)(rc.T * 2 * KV),
                            (size_t)rc.B, cudaMemcpyDeviceToDevice, G->s), "kv cache append");
    d.Tk = kc->len + rc.T;
    d.q_off = kc->len;
    d.kv_bstride = kc->cap * 2 * KV;
    k = (const uint16_t *)cl;
    v = (const uint16_t *)(cl + KV);
  }
  if (!skip_attn)
    POSE_TRY(G->ref_attn ? pose_cuda_attn_ref_fwd(&d, q, k, v, (uint16_t *)A->att, A->lse, G->s)
                         : pose_cuda_attn_fwd(&d, q, k, v, (uint16_t *)A->att, A->lse, G->s));
  if (x1 != x) PC_CU(cudaMemcpyAsync(x1, x, sizeof(bf16) * (size_t)(N * D), cudaMemcpyDeviceToDevice, G->s), "copy");
  return lin_fwd(G, A->att, N, Q, WC(m, L->o_w), D, WC(m, L->o_b), x1, 1.0f);
}

// The MLP is per token: it runs over row chunks of rc.C rows, so that gate|up [N,2I] never exists at length.
// Chunk r0's h2, gate|up and activation rows: views into the full buffers (training without recompute keeps them
// for the backward) or the one chunk-sized set.
static void mlp_bufs(const pose_model *m, const layer_acts *A, int64_t r0, bf16 **h2, bf16 **gu, bf16 **a) {
  const int64_t D = m->cfg.hidden, I = m->cfg.inter, r = A->mlp_full ? r0 : 0;
  *h2 = A->h2 + r * D;
  *gu = A->gu + r * 2 * I;
  *a = A->a + r * I;
}

// rows [r0, r0 + rr) of x1 -> h2 = rmsnorm(x1), gu = h2 [Wg;Wu]^T, a = act(g) * u
static pose_status mlp_rows_fwd(pose_model *m, int64_t l, layer_acts *A, const bf16 *x1, int64_t r0, int64_t rr) {
  pose_gpu_model *G = m->gpu;
  const pose_layer_idx *L = &m->layer[l];
  const int64_t D = m->cfg.hidden, I = m->cfg.inter;
  bf16 *h2, *gu, *a;
  mlp_bufs(m, A, r0, &h2, &gu, &a);
  POSE_TRY(rms_fwd(m, L->ln2_w, x1 + r0 * D, rr, h2, A->rs2 + r0));
  POSE_TRY(lin_fwd(G, h2, rr, D, WC(m, L->mg_w), 2 * I, WC(m, L->mg_b), gu, 0.0f));
  return pose_cuda_act_fwd(act_kind(m), gu, gu + I, 2 * I, POSE_BF16, rr, I, a, G->s);
}

// x -> y through layer l (x1: where x + attention goes; == x in inference, in place). y NULL: stop after the
// attention half (a recomputation for the backward; layer_bwd recomputes the MLP chunk by chunk).
static pose_status layer_fwd(pose_model *m, int64_t l, layer_acts *A, const bf16 *x, bf16 *x1, bf16 *y,
                             const workspace *w, const run_ctx &rc) {
  pose_gpu_model *G = m->gpu;
  const pose_layer_idx *L = &m->layer[l];
  const int64_t N = rc.N, D = m->cfg.hidden, I = m->cfg.inter;
  POSE_TRY(attn_half_fwd(m, l, A, x, x1, w, rc, rc.keep && !y));
  if (!y) return POSE_OK;
  for (int64_t r0 = 0; r0 < N; r0 += rc.C) {
    const int64_t rr = N - r0 < rc.C ? N - r0 : rc.C;
    bf16 *h2, *gu, *a;
    mlp_bufs(m, A, r0, &h2, &gu, &a);
    // in place (y == x1) each chunk's rows are read by the norm before the down projection writes them
    POSE_TRY(mlp_rows_fwd(m, l, A, x1, r0, rr));
    if (y != x1)
      PC_CU(cudaMemcpyAsync(y + r0 * D, x1 + r0 * D, sizeof(bf16) * (size_t)(rr * D), cudaMemcpyDeviceToDevice, G->s),
            "copy");
    POSE_TRY(lin_fwd(G, a, rr, I, WC(m, L->md_w), D, WC(m, L->md_b), y + r0 * D, 1.0f));
  }
  return POSE_OK;
}

// w->dres: gradient at the layer's output on entry, at its input x on return. The MLP part runs chunk by chunk
// (recomputing the chunk's h2, gate|up and activation first unless they were kept); its weight gradients
// accumulate over the chunks (fp32, beta = 1), so with more than one chunk they are summed in another grouping of
// the tokens than one product over all rows would (same values to fp32 rounding, not the same bits).
static pose_status layer_bwd(pose_model *m, int64_t l, layer_acts *A, const bf16 *x, const workspace *w,
                             const run_ctx &rc) {
  pose_gpu_model *G = m->gpu;
  const pose_model_cfg *c = &m->cfg;
  const pose_layer_idx *L = &m->layer[l];
  const int64_t N = rc.N, D = c->hidden, I = c->inter, Q = m->qdim, KV = m->kvdim;
  // MLP, per chunk: da = dres Wd; dg|du = act' (in place over gate|up); dh2 = dgu [Wg;Wu]; dres += norm'(dh2)
  for (int64_t r0 = 0; r0 < N; r0 += rc.C) {
    const int64_t rr = N - r0 < rc.C ? N - r0 : rc.C;
    bf16 *h2, *gu, *a, *da = w->dA, *dres = w->dres + r0 * D, *dh2 = w->dh + r0 * D;
    mlp_bufs(m, A, r0, &h2, &gu, &a);
    if (!A->mlp_full) POSE_TRY(mlp_rows_fwd(m, l, A, A->x1, r0, rr));
    POSE_TRY(lin_dx(G, dres, D, rr, D, WC(m, L->md_w), I, da, 0.0f));
    POSE_TRY(lin_dw_lazy(m, L->md_w, -1, dres, D, rr, D, a, I));
    POSE_TRY(bias_grad_lazy(m, L->md_b, -1, dres, D, rr, D));
    POSE_TRY(pose_cuda_act_bwd(act_kind(m), gu, gu + I, 2 * I, POSE_BF16, rr, I, da, gu, gu + I, 2 * I, G->s));
    POSE_TRY(lin_dx(G, gu, 2 * I, rr, 2 * I, WC(m, L->mg_w), D, dh2, 0.0f));
    POSE_TRY(lin_dw_lazy(m, L->mg_w, L->mu_w, gu, 2 * I, rr, 2 * I, h2, D));
    POSE_TRY(bias_grad_lazy(m, L->mg_b, L->mu_b, gu, 2 * I, rr, 2 * I));
    POSE_TRY(rms_bwd(m, L->ln2_w, A->x1 + r0 * D, A->rs2 + r0, dh2, rr, dres, 1));
  }
  // attention: datt = dres Wo; flash backward; inverse rotation; dh1 = dq Wq + dkv [Wk;Wv]
  bf16 *datt = w->dA, *dq = w->dB, *dkv = w->dB + N * Q;
  POSE_TRY(lin_dx(G, w->dres, D, N, D, WC(m, L->o_w), Q, datt, 0.0f));
  POSE_TRY(lin_dw_lazy(m, L->o_w, -1, w->dres, D, N, D, A->att, Q));
  POSE_TRY(bias_grad_lazy(m, L->o_b, -1, w->dres, D, N, D));
  pose_cuda_attn_dims d;
  attn_dims(m, l, rc, &d);
  const uint16_t *q = (const uint16_t *)A->q, *k = (const uint16_t *)A->kv, *v = (const uint16_t *)(A->kv + KV);
  // dq uses q's strides (Q), dk/dv the kv buffer's (2KV): the same layouts as the forward's buffers
  POSE_TRY(G->ref_attn ? pose_cuda_attn_ref_bwd(&d, q, k, v, (const uint16_t *)A->att, A->lse, (const uint16_t *)datt,
                                                (uint16_t *)dq, (uint16_t *)dkv, (uint16_t *)(dkv + KV), G->s)
                       : pose_cuda_attn_bwd(&d, q, k, v, (const uint16_t *)A->att, A->lse, (const uint16_t *)datt,
                                            (uint16_t *)dq, (uint16_t *)dkv, (uint16_t *)(dkv + KV), G->s));
  POSE_TRY(rope(m, dq, N, Q, c->heads, w->pos, 1));
  POSE_TRY(rope(m, dkv, N, 2 * KV, c->kv_heads, w->pos, 1));
  POSE_TRY(lin_dx(G, dq, Q, N, Q, WC(m, L->q_w), D, w->dh, 0.0f));
  POSE_TRY(lin_dx(G, dkv, 2 * KV, N, 2 * KV, WC(m, L->k_w), D, w->dh, 1.0f));
  POSE_TRY(lin_dw_lazy(m, L->q_w, -1, dq, Q, N, Q, A->h1, D));
  POSE_TRY(lin_dw_lazy(m, L->k_w, L->v_w, dkv, 2 * KV, N, 2 * KV, A->h1, D));
  POSE_TRY(bias_grad_lazy(m, L->q_b, -1, dq, Q, N, Q));
  POSE_TRY(bias_grad_lazy(m, L->k_b, L->v_b, dkv, 2 * KV, N, 2 * KV));
  return rms_bwd(m, L->ln1_w, x, A->rs1, w->dh, N, w->dres, 1);
}

// ---- the run ---------------------------------------------------------------------------------------------------

// Layer l's input during training: its own buffer, or (offload) one of two buffers taken in turn
static inline bf16 *layer_input(const workspace *w, const run_ctx &rc, int64_t l) {
  return rc.offl ? w->xs[l & 1] : w->xs[l];
}

static pose_status run_device(pose_model *m, pose_model_run_args *a, const run_ctx &rc, workspace *w) {
  pose_gpu_model *G = m->gpu;
  const pose_model_cfg *c = &m->cfg;
  const int64_t N = rc.N, D = c->hidden, V = c->vocab, Lc = c->layers;
  cudaStream_t s = G->s;
  PC_CU(cudaMemcpyAsync(w->ids, a->ids, sizeof(int64_t) * (size_t)N, cudaMemcpyHostToDevice, s), "copy ids");
  PC_CU(cudaMemcpyAsync(w->pos, a->pos, sizeof(int64_t) * (size_t)N, cudaMemcpyHostToDevice, s), "copy positions");
  if (a->tgt)
    PC_CU(cudaMemcpyAsync(w->tgt, a->tgt, sizeof(int64_t) * (size_t)N, cudaMemcpyHostToDevice, s), "copy targets");
  // the rope state was advanced by the caller for this call's positions (dynamic types change inv_freq)
  PC_CU(cudaMemcpyAsync(G->inv_freq, pose_rope_inv_freq(m->rope), sizeof(float) * (size_t)(m->rot / 2),
                        cudaMemcpyHostToDevice, s), "copy inv_freq");

  POSE_TRY(pose_cuda_embed_fwd(WC(m, m->embed), POSE_BF16, w->ids, N, D, V, w->xs[0], s));
  const size_t xbytes = sizeof(bf16) * (size_t)(N * D);
  for (int64_t l = 0; l < Lc; l++) {
    layer_acts *A = &w->acts[rc.train && !rc.rec ? l : 0];
    if (!rc.train) {
      POSE_TRY(layer_fwd(m, l, A, w->xs[0], w->xs[0], w->xs[0], w, rc));
      continue;
    }
    bf16 *x = layer_input(w, rc, l), *y = layer_input(w, rc, l + 1);
    if (rc.keep) {
      A->att = w->att_s[l];
      A->lse = w->lse_s[l];
    }
    if (rc.offl) {
      // y's buffer held x_{l-1}: its copy to the host must be done before the layer overwrites it
      if (l >= 1) PC_CU(cudaStreamWaitEvent(s, w->ev_saved[(l + 1) & 1], 0), "event wait");
      if (l + 1 < Lc) { // x_l to the host while the layer runs (x_{L-1} stays on the device for the backward)
        PC_CU(cudaEventRecord(w->ev_mark, s), "event record");
        PC_CU(cudaStreamWaitEvent(w->cs, w->ev_mark, 0), "event wait");
        PC_CU(cudaMemcpyAsync(w->host + (size_t)l * N * D, x, xbytes, cudaMemcpyDeviceToHost, w->cs), "offload copy");
        PC_CU(cudaEventRecord(w->ev_saved[l & 1], w->cs), "event record");
      }
    }
    POSE_TRY(layer_fwd(m, l, A, x, A->x1, y, w, rc));
  }
  const bf16 *xL = rc.train ? layer_input(w, rc, Lc) : w->xs[0];
  POSE_TRY(rms_fwd(m, m->final_w, xL, N, w->hf, w->rsf));

  const bf16 *Wlm = WC(m, m->lm_w);
  if (rc.kv) { // each row's last token: rows (T-1), (2T-1), ... of hf, read with a leading dimension of T*D
    if (G->bf16 && m->lm_b >= 0)
      return pose_error(POSE_EUNSUPPORTED, "model: fp32 logits with an LM-head bias under the bf16 policy");
    float *lg = (float *)w->head;
    for (int64_t b0 = 0; b0 < rc.B; b0 += w->R) {
      const int64_t bb = rc.B - b0 < w->R ? rc.B - b0 : w->R;
      POSE_TRY(gemm(G, 0, 1, bb, V, D, w->hf + (b0 * rc.T + rc.T - 1) * D, rc.T * D, Wlm, D, lg, POSE_F32, V, 0.0f,
                    W32(m, m->lm_b)));
      PC_CU(cudaMemcpyAsync(a->logits + b0 * V, lg, sizeof(float) * (size_t)(bb * V), cudaMemcpyDeviceToHost, s),
            "copy logits");
    }
    return POSE_OK;
  }
  for (int64_t r0 = 0; r0 < N; r0 += w->R) {
    const int64_t rr = N - r0 < w->R ? N - r0 : w->R;
    const bf16 *h = w->hf + r0 * D;
    if (a->logits) { // fp32 logits straight out of the GEMM, then to the host
      float *lg = (float *)w->head;
      if (G->bf16 && m->lm_b >= 0)
        return pose_error(POSE_EUNSUPPORTED, "model: fp32 logits with an LM-head bias under the bf16 policy");
      POSE_TRY(gemm(G, 0, 1, rr, V, D, h, D, Wlm, D, lg, POSE_F32, V, 0.0f, W32(m, m->lm_b)));
      PC_CU(cudaMemcpyAsync(a->logits + r0 * V, lg, sizeof(float) * (size_t)(rr * V), cudaMemcpyDeviceToHost, s),
            "copy logits");
      continue;
    }
    POSE_TRY(lin_fwd(G, h, rr, D, Wlm, V, WC(m, m->lm_b), w->head, 0.0f));
    if (!rc.train) {
      POSE_TRY(pose_cuda_xent_fwd(w->head, POSE_BF16, V, rr, V, w->tgt + r0, w->nll + r0, NULL, s));
      continue;
    }
    // loss and dlogits in place, then the head's two products from the chunk
    POSE_TRY(pose_cuda_xent_fwd_bwd(w->head, POSE_BF16, V, rr, V, w->tgt + r0, a->scale, w->nll + r0, NULL, w->head,
                                    POSE_BF16, V, s));
    POSE_TRY(lin_dx(G, w->head, V, rr, V, Wlm, D, w->dh + r0 * D, 0.0f));
    POSE_TRY(lin_dw_lazy(m, m->lm_w, -1, w->head, V, rr, V, h, D));
    POSE_TRY(bias_grad_lazy(m, m->lm_b, -1, w->head, V, rr, V));
  }
  if (!rc.train) return POSE_OK;
  const pose_gpu_bwd_hook *hk = rc.hook;
  if (hk && hk->loss_sum) // the fused update skips every group when the loss is not finite
    POSE_TRY(pose_cuda_sum_small(w->nll, N, hk->loss_sum, s));
  POSE_TRY(rms_bwd(m, m->final_w, xL, w->rsf, w->dh, N, w->dres, 0));
  for (int64_t l = Lc - 1; l >= 0; l--) {
    layer_acts *A = &w->acts[rc.rec ? 0 : l];
    bf16 *x = layer_input(w, rc, l);
    if (rc.offl) {
      if (l < Lc - 1) PC_CU(cudaStreamWaitEvent(s, w->ev_loaded[l & 1], 0), "event wait");
      if (l >= 1) { // prefetch x_{l-1} into the other buffer, free since layer l+1's backward (queued before)
        PC_CU(cudaEventRecord(w->ev_mark, s), "event record");
        PC_CU(cudaStreamWaitEvent(w->cs, w->ev_mark, 0), "event wait");
        PC_CU(cudaMemcpyAsync(layer_input(w, rc, l - 1), w->host + (size_t)(l - 1) * N * D, xbytes,
                              cudaMemcpyHostToDevice, w->cs), "offload prefetch");
        PC_CU(cudaEventRecord(w->ev_loaded[(l - 1) & 1], w->cs), "event record");
      }
    }
    if (rc.keep) {
      A->att = w->att_s[l];
      A->lse = w->lse_s[l];
    }
    if (rc.rec) POSE_TRY(layer_fwd(m, l, A, x, A->x1, NULL, w, rc));
    // the slot this layer writes may still be read by the update of layer l + 2 (on the optimizer's stream)
    if (hk) POSE_TRY(hk->slot_wait(hk->ctx, l, (int)(l % 2)));
    POSE_TRY(layer_bwd(m, l, A, x, w, rc));
    POSE_TRY(grads_settle(m, (int)l));
    // layer l's gradients are complete in stream order and nothing after this point reads its weights (the
    // layers below and the embedding backward do not; the next step's forward waits for the update)
    if (hk) POSE_TRY(hk->layer_done(hk->ctx, l, (int)(l % 2)));
  }
  POSE_TRY(grad_clear(m, m->embed));
  POSE_TRY(pose_cuda_embed_bwd(w->ids, w->dres, POSE_BF16, N, D, V, c->pad_id, G32(m, m->embed), 1, s));
  POSE_TRY(grads_settle(m, -1));
  if (hk) POSE_TRY(hk->rest_done(hk->ctx));
  return POSE_OK;
}

static void run_ctx_init(const pose_model *m, int64_t B, int64_t T, int train, pose_recompute r, run_ctx *rc) {
  memset(rc, 0, sizeof *rc);
  rc->B = B;
  rc->T = T;
  rc->N = B * T;
  rc->train = train;
  rc->rec = train && r != POSE_RECOMPUTE_NONE;
  rc->offl = train && r == POSE_RECOMPUTE_OFFLOAD;
  rc->keep = train && r == POSE_RECOMPUTE_SELECTIVE;
  rc->C = mlp_chunk_rows(m, rc->N);
}

// Pinned host memory for layer inputs 0..L-2 (the last one stays on the device), kept by the model between calls.
static pose_status offload_host(pose_model *m, size_t bytes) {
  pose_gpu_model *G = m->gpu;
  if (!G->cs) PC_CU(cudaStreamCreateWithFlags(&G->cs, cudaStreamNonBlocking), "stream creation");
  if (G->host_bytes >= bytes) return POSE_OK;
  if (G->host_ckpt) {
    PC_CU(cudaStreamSynchronize(G->s), "model");
    cudaFreeHost(G->host_ckpt);
    G->host_ckpt = NULL;
    G->host_bytes = 0;
  }
  if (!bytes) return POSE_OK;
  cudaError_t e = cudaHostAlloc(&G->host_ckpt, bytes, cudaHostAllocDefault);
  if (e != cudaSuccess) {
    cudaGetLastError();
    G->host_ckpt = NULL;
    return pose_error(POSE_ENOMEM, "model: recompute=offload needs %.2f GB of pinned host memory for the layer "
                      "inputs: %s", bytes / 1e9, cudaGetErrorString(e));
  }
  G->host_bytes = bytes;
  return POSE_OK;
}

static size_t offload_bytes(const pose_model *m, const run_ctx &rc) {
  if (!rc.offl || m->cfg.layers < 2) return 0;
  return sizeof(bf16) * (size_t)(rc.N * m->cfg.hidden) * (size_t)(m->cfg.layers - 1);
}

extern "C" pose_status pose_gpu_model_reserve_offload(pose_model *m, int64_t B, int64_t T) {
  PC_REQUIRE(B > 0 && T > 0, "model: bad shape B=%lld T=%lld", (long long)B, (long long)T);
  PC_CU(cudaSetDevice(m->gpu->dev), "cudaSetDevice");
  run_ctx rc;
  run_ctx_init(m, B, T, 1, POSE_RECOMPUTE_OFFLOAD, &rc);
  return offload_host(m, offload_bytes(m, rc));
}

extern "C" pose_status pose_gpu_model_set_chunk_rows(pose_model *m, int64_t rows) {
  if (rows < 0) return pose_error(POSE_EINVAL, "model: MLP chunk rows %lld < 0", (long long)rows);
  m->gpu->chunk_rows = rows;
  return POSE_OK;
}

extern "C" pose_status pose_gpu_model_plan(const pose_model *m, int64_t B, int64_t T, int train, pose_recompute r,
                                           pose_memory_plan *p) {
  const pose_gpu_model *G = m->gpu;
  PC_REQUIRE(B > 0 && T > 0, "memory plan: bad shape B=%lld T=%lld", (long long)B, (long long)T);
  PC_REQUIRE(r == POSE_RECOMPUTE_NONE || r == POSE_RECOMPUTE_LAYER || r == POSE_RECOMPUTE_OFFLOAD ||
                 r == POSE_RECOMPUTE_SELECTIVE,
             "memory plan: unknown recompute policy %d", (int)r);
  memset(p, 0, sizeof *p);
  run_ctx rc;
  run_ctx_init(m, B, T, train != 0, r, &rc);
  workspace w;
  POSE_TRY(ws_arrays(m, rc, &w));
  bump b = {NULL, 0};
  ws_layout(m, rc, &w, &b);
  ws_arrays_free(&w);
  const size_t n = G->numel;
  p->chunk_rows = rc.C;
  p->weights = n * sizeof(bf16) + (G->bf16 ? 0 : n * sizeof(float));
  // the gradient arena, or the fused update's slots when a fused trainer put the model in that mode
  const size_t slot_n = (G->bf16 && !G->no_bf16_slots ? G->span : 2 * G->span) + (G->numel - G->rest_lo);
  p->grads = train ? (G->slots ? slot_n : n) * sizeof(float) : 0;
  p->optimizer = train ? n * (G->bf16 ? 2 * sizeof(bf16) : 2 * sizeof(float)) : 0;
  p->activations = b.off;
  p->temporary = run_scratch_bytes(m, rc);
  p->total = p->weights + p->grads + p->optimizer + p->activations + p->temporary;
  p->host_pinned = offload_bytes(m, rc);
  return POSE_OK;
}

// ---- the end of every run (both decoders) ----------------------------------------------------------------------

// Waits for the run; the per-row NLL to the host (a->nll or a temporary), summed and counted over the scored rows
// in row order (a->sum, a->count); a non-finite training loss is an error. A decode step advances its cache.
pose_status pc_run_finish(pose_model *m, pose_model_run_args *a, const float *dev_nll, int64_t N, int64_t T,
                          int train, pose_kv_cache *kv) {
  pose_gpu_model *G = m->gpu;
  if (!(a->nll || train)) {
    cudaError_t e = cudaStreamSynchronize(G->s);
    if (e != cudaSuccess) return pose_cuda_fail(e, "model run");
    if (kv) kv->len += T;
    return POSE_OK;
  }
  float *nll_host = a->nll ? a->nll : (float *)malloc(sizeof(float) * (size_t)N);
  if (!nll_host) return pose_error(POSE_ENOMEM, "model: out of memory");
  pose_status st = POSE_OK;
  cudaError_t e = cudaMemcpyAsync(nll_host, dev_nll, sizeof(float) * (size_t)N, cudaMemcpyDeviceToHost, G->s);
  if (e == cudaSuccess) e = cudaStreamSynchronize(G->s);
  if (e != cudaSuccess) st = pose_cuda_fail(e, "model run");
  if (st == POSE_OK) {
    double sum = 0;
    int64_t cnt = 0;
    for (int64_t n = 0; n < N; n++)
      if (a->tgt[n] != POSE_IGNORE_INDEX) {
        sum += nll_host[n];
        cnt++;
      }
    a->sum = sum;
    a->count = cnt;
    if (train && !isfinite(sum)) st = pose_error(POSE_ENUMERIC, "loss is not finite (%g)", sum);
  }
  if (!a->nll) free(nll_host);
  return st;
}

extern "C" pose_status pose_gpu_model_run(pose_model *m, pose_model_run_args *a) {
  if (pc_fam_generic(m)) { // gptj, gpt_neox, baichuan: cuda/model_gpu_families.cu
    if (a->hook) return pose_error(POSE_EUNSUPPORTED, "model: per-layer optimizer callbacks need the LLaMA family");
    return pc_fam_run(m, a);
  }
  pose_gpu_model *G = m->gpu;
  PC_CU(cudaSetDevice(G->dev), "cudaSetDevice");
  run_ctx rc;
  run_ctx_init(m, a->B, a->T, a->backward, m->recompute, &rc);
  rc.logits32 = a->logits != NULL;
  rc.kv = a->kv;
  rc.hook = a->hook;
  rc.head_rows = G->head_rows;
  if (rc.hook && !rc.train) return pose_error(POSE_EINVAL, "model: an optimizer hook needs a backward");
  if (rc.kv && (rc.train || !a->logits || !rc.kv->dev_kv))
    return pose_error(POSE_EINVAL, "decode: a cuda decode step needs a device cache and a logits output");
  if ((a->nll || rc.train) && !a->tgt) return pose_error(POSE_EINVAL, "model: targets are required");
  if (rc.train) {
    POSE_TRY(pose_gpu_model_ensure_grads(m));
    // slots hold one backward's gradients: every call starts from zero (no accumulation across calls)
    if (G->slots) memset(G->gz, 1, m->n_params);
    if (G->scr_pending) memset(G->scr_pending, 0, m->n_params); // (a failed earlier run may have left some)
  }
  if (rc.offl) POSE_TRY(offload_host(m, offload_bytes(m, rc)));
  workspace w;
  POSE_TRY(ws_arrays(m, rc, &w));
  bump b = {NULL, 0};
  ws_layout(m, rc, &w, &b);
  void *mem = NULL;
  pose_status st = pc_scratch_alloc(&mem, b.off, G->s);
  if (st != POSE_OK) {
    ws_arrays_free(&w);
    return pose_error_prefix(st, "model: activations for %lld tokens (%.2f GB, recompute %s): ", (long long)rc.N,
                             b.off / 1e9, rc.train ? pose_recompute_name(m->recompute) : "-");
  }
  b.base = (char *)mem;
  b.off = 0;
  ws_layout(m, rc, &w, &b);
  int nev = 0;
  if (rc.offl) {
    w.host = (bf16 *)G->host_ckpt;
    w.cs = G->cs;
    cudaEvent_t *evs[5] = {&w.ev_mark, &w.ev_saved[0], &w.ev_saved[1], &w.ev_loaded[0], &w.ev_loaded[1]};
    for (; nev < 5 && st == POSE_OK; nev++) {
      cudaError_t e = cudaEventCreateWithFlags(evs[nev], cudaEventDisableTiming);
      if (e != cudaSuccess) st = pose_cuda_fail(e, "event creation");
    }
    if (st != POSE_OK) nev--;
  }
  if (st == POSE_OK) st = run_device(m, a, rc, &w);
  if (rc.offl) { // whatever happened, nothing may stay queued on the copy stream past this call
    cudaError_t e = nev == 5 ? cudaEventRecord(w.ev_mark, w.cs) : cudaSuccess;
    if (e == cudaSuccess && nev == 5) e = cudaStreamWaitEvent(G->s, w.ev_mark, 0);
    if (e != cudaSuccess) e = cudaStreamSynchronize(w.cs);
    if (e != cudaSuccess && st == POSE_OK) st = pose_cuda_fail(e, "offload copies");
    cudaEvent_t evs[5] = {w.ev_mark, w.ev_saved[0], w.ev_saved[1], w.ev_loaded[0], w.ev_loaded[1]};
    for (int i = 0; i < nev; i++) cudaEventDestroy(evs[i]); // destruction waits for nothing (the work is ordered)
  }
  // per-row NLL to the host (this waits for the whole run)
  if (st == POSE_OK) st = pc_run_finish(m, a, w.nll, rc.N, rc.T, rc.train, rc.kv);
  pc_scratch_free(mem, G->s);
  ws_arrays_free(&w);
  return st;
}
