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
// The backward mirrors it (weight gradients accumulate into the fp32 arena through GEMMs with beta = 1), the LM
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
    PC_CU(cudaStreamCreateWithFlags(&g_streams[dev], cudaStreamNonBlocking), "stream creation");
    g_stream_ok[dev] = 1;
  }
  *out = g_streams[dev];
  return POSE_OK;
}

extern "C" pose_status pc_device_stream(int dev, cudaStream_t *out) { return dev_stream(dev, out); }

static size_t g_reset_used[MAX_DEV];

extern "C" pose_status pose_gpu_memory(int dev, int reset, size_t *used, size_t *peak) {
  cudaStream_t s;
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
static size_t gpu_layout(const pose_model *m, size_t *off) {
  size_t n = m->n_params, cur = 0;
  char *placed = (char *)calloc(n ? n : 1, 1);
  if (!placed) return 0;
  auto align = [&]() { cur = (cur + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN; };
  auto group = [&](int a, int b) {
    align();
    if (a >= 0 && !placed[a]) { off[a] = cur; cur += (size_t)m->params[a].numel; placed[a] = 1; }
    if (b >= 0 && !placed[b]) { off[b] = cur; cur += (size_t)m->params[b].numel; placed[b] = 1; }
  };
  for (int64_t l = 0; l < m->cfg.layers; l++) {
    const pose_layer_idx *L = &m->layer[l];
    group(L->q_w, -1); group(L->k_w, L->v_w); group(L->q_b, -1); group(L->k_b, L->v_b);
    group(L->o_w, -1); group(L->o_b, -1); group(L->mg_w, L->mu_w); group(L->mg_b, L->mu_b);
    group(L->md_w, -1); group(L->md_b, -1); group(L->ln1_w, -1); group(L->ln2_w, -1);
  }
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
  if (!G->off) return pose_error(POSE_ENOMEM, "model: out of memory");
  G->numel = gpu_layout(m, G->off);
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
    pc_scratch_free(G->wc, G->s);
    pc_scratch_free(G->inv_freq, G->s);
    cudaStreamSynchronize(G->s);
  }
  if (G->blas) pose_cuda_blas_free(G->blas);
  free(G->off);
  free(G);
  m->gpu = NULL;
  for (size_t i = 0; i < m->n_params; i++) m->params[i].w = m->params[i].g = NULL, m->params[i].w_bf16 = NULL;
}

extern "C" pose_status pose_gpu_model_ensure_grads(pose_model *m) {
  pose_gpu_model *G = m->gpu;
  if (G->g) return POSE_OK;
  PC_CU(cudaSetDevice(G->dev), "cudaSetDevice");
  pose_status st = galloc((void **)&G->g, G->numel * sizeof(float), G->s);
  if (st != POSE_OK) return pose_error_prefix(st, "model: gradients (%.2f GB): ", G->numel * 4.0 / 1e9);
  PC_CU(cudaMemsetAsync(G->g, 0, G->numel * sizeof(float), G->s), "memset");
  for (size_t i = 0; i < m->n_params; i++) m->params[i].g = G->g + G->off[i];
  return POSE_OK;
}

extern "C" pose_status pose_gpu_model_zero_grad(pose_model *m) {
  POSE_TRY(pose_gpu_model_ensure_grads(m));
  PC_CU(cudaMemsetAsync(m->gpu->g, 0, m->gpu->numel * sizeof(float), m->gpu->s), "memset");
  return POSE_OK;
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
  return POSE_OK;
}

extern "C" int pose_gpu_model_is_bf16(const pose_model *m) { return m->gpu && m->gpu->bf16; }

// host fp32 <-> device bf16 through a device fp32 staging buffer (RNE on the way in)
extern "C" pose_status pose_gpu_bf16_get(int dev, const uint16_t *src, int64_t n, float *dst) {
  cudaStream_t s;
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
  cudaStream_t s;
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
  cudaStream_t s;
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
  if (which == 1 && !p->g) {
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
};

struct workspace {
  bf16 **xs;          // layer inputs: training L+1 (xs[L] the final residual); inference one, updated in place
  layer_acts *acts;   // training without recompute: one per layer; else one shared
  bf16 *hf;           // final norm output
  float *rsf;
  bf16 *head;         // logits chunk [R,V] (bf16; fp32 when the caller wants logits)
  int64_t R;
  float *nll;         // [N]
  int64_t *ids, *pos, *tgt;
  bf16 *dres, *dh, *dA, *dB; // backward: residual gradient, norm-input gradient, [N,max(Q,I)], [N,max(Q+2KV,2I)]
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
};

static void ws_layout(const pose_model *m, const run_ctx &rc, workspace *w, bump *b) {
  const pose_model_cfg *c = &m->cfg;
  const size_t D = (size_t)c->hidden, I = (size_t)c->inter, Q = (size_t)m->qdim, KV = (size_t)m->kvdim,
               V = (size_t)c->vocab, n = (size_t)rc.N;
  const int64_t nx = rc.train ? c->layers + 1 : 1, nsets = rc.train && !rc.rec ? c->layers : 1;
  for (int64_t l = 0; l < nx; l++) w->xs[l] = b->take<bf16>(n * D);
  for (int64_t l = 0; l < nsets; l++) {
    layer_acts *A = &w->acts[l];
    A->h1 = b->take<bf16>(n * D);
    A->rs1 = b->take<float>(n);
    A->q = b->take<bf16>(n * Q);
    A->kv = b->take<bf16>(n * 2 * KV);
    A->att = b->take<bf16>(n * Q);
    A->lse = b->take<float>((size_t)(rc.B * c->heads * rc.T));
    A->x1 = rc.train ? b->take<bf16>(n * D) : NULL;
    A->h2 = b->take<bf16>(n * D);
    A->rs2 = b->take<float>(n);
    A->gu = b->take<bf16>(n * 2 * I);
    A->a = b->take<bf16>(n * I);
  }
  w->hf = b->take<bf16>(n * D);
  w->rsf = b->take<float>(n);
  size_t elt = rc.logits32 ? 4 : 2;
  int64_t R = (int64_t)(HEAD_BYTES / (V * elt));
  R = R >= 64 ? R / 64 * 64 : (R < 1 ? 1 : R);
  if (R > rc.N) R = rc.N;
  w->R = R;
  w->head = (bf16 *)b->take<char>((size_t)R * V * elt);
  w->nll = b->take<float>(n);
  w->ids = b->take<int64_t>(n);
  w->pos = b->take<int64_t>(n);
  w->tgt = b->take<int64_t>(n);
  if (rc.train) {
    size_t a = Q > I ? Q : I, bb = Q + 2 * KV > 2 * I ? Q + 2 * KV : 2 * I;
    w->dres = b->take<bf16>(n * D);
    w->dh = b->take<bf16>(n * D);
    w->dA = b->take<bf16>(n * a);
    w->dB = b->take<bf16>(n * bb);
  }
}

// ---- blocks ------------------------------------------------------------------------------------------------------

static pose_status rms_fwd(pose_model *m, int w_idx, const bf16 *x, int64_t N, bf16 *y, float *rs) {
  return pose_cuda_norm_fwd(1, x, POSE_BF16, NW(m, w_idx), NULL, NWDT(m), (float)m->cfg.norm_eps, N, m->cfg.hidden,
                            y, NULL, rs, m->gpu->s);
}

// dx (+)= the gradient at the norm's input; the norm weight's gradient is added to its fp32 slot
static pose_status rms_bwd(pose_model *m, int w_idx, const bf16 *x, const float *rs, const bf16 *dy, int64_t N,
                           bf16 *dx, int acc) {
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

// x -> y through layer l (x1: where x + attention goes; == x in inference, in place). y NULL: stop after the MLP's
// activation (a recomputation for the backward needs nothing after it).
static pose_status layer_fwd(pose_model *m, int64_t l, layer_acts *A, const bf16 *x, bf16 *x1, bf16 *y,
                             const workspace *w, const run_ctx &rc) {
  pose_gpu_model *G = m->gpu;
  const pose_model_cfg *c = &m->cfg;
  const pose_layer_idx *L = &m->layer[l];
  const int64_t N = rc.N, D = c->hidden, I = c->inter, Q = m->qdim, KV = m->kvdim;
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
  POSE_TRY(G->ref_attn ? pose_cuda_attn_ref_fwd(&d, q, k, v, (uint16_t *)A->att, A->lse, G->s)
                       : pose_cuda_attn_fwd(&d, q, k, v, (uint16_t *)A->att, A->lse, G->s));
  if (x1 != x) PC_CU(cudaMemcpyAsync(x1, x, sizeof(bf16) * (size_t)(N * D), cudaMemcpyDeviceToDevice, G->s), "copy");
  POSE_TRY(lin_fwd(G, A->att, N, Q, WC(m, L->o_w), D, WC(m, L->o_b), x1, 1.0f));
  POSE_TRY(rms_fwd(m, L->ln2_w, x1, N, A->h2, A->rs2));
  POSE_TRY(lin_fwd(G, A->h2, N, D, WC(m, L->mg_w), 2 * I, WC(m, L->mg_b), A->gu, 0.0f));
  POSE_TRY(pose_cuda_act_fwd(act_kind(m), A->gu, A->gu + I, 2 * I, POSE_BF16, N, I, A->a, G->s));
  if (!y) return POSE_OK;
  if (y != x1) PC_CU(cudaMemcpyAsync(y, x1, sizeof(bf16) * (size_t)(N * D), cudaMemcpyDeviceToDevice, G->s), "copy");
  return lin_fwd(G, A->a, N, I, WC(m, L->md_w), D, WC(m, L->md_b), y, 1.0f);
}

// w->dres: gradient at the layer's output on entry, at its input x on return
static pose_status layer_bwd(pose_model *m, int64_t l, const layer_acts *A, const bf16 *x, const workspace *w,
                             const run_ctx &rc) {
  pose_gpu_model *G = m->gpu;
  const pose_model_cfg *c = &m->cfg;
  const pose_layer_idx *L = &m->layer[l];
  const int64_t N = rc.N, D = c->hidden, I = c->inter, Q = m->qdim, KV = m->kvdim;
  // MLP: da = dres Wd; dg|du = act'; dh2 = dgu [Wg;Wu]
  bf16 *da = w->dA, *dgu = w->dB;
  POSE_TRY(lin_dx(G, w->dres, D, N, D, WC(m, L->md_w), I, da, 0.0f));
  POSE_TRY(lin_dw(G, w->dres, D, N, D, A->a, I, G32(m, L->md_w)));
  POSE_TRY(bias_grad(G, w->dres, D, N, D, G32(m, L->md_b)));
  POSE_TRY(pose_cuda_act_bwd(act_kind(m), A->gu, A->gu + I, 2 * I, POSE_BF16, N, I, da, dgu, dgu + I, 2 * I, G->s));
  POSE_TRY(lin_dx(G, dgu, 2 * I, N, 2 * I, WC(m, L->mg_w), D, w->dh, 0.0f));
  POSE_TRY(lin_dw(G, dgu, 2 * I, N, 2 * I, A->h2, D, G32(m, L->mg_w)));
  POSE_TRY(bias_grad(G, dgu, 2 * I, N, 2 * I, G32(m, L->mg_b)));
  POSE_TRY(rms_bwd(m, L->ln2_w, A->x1, A->rs2, w->dh, N, w->dres, 1));
  // attention: datt = dres Wo; flash backward; inverse rotation; dh1 = dq Wq + dkv [Wk;Wv]
  bf16 *datt = w->dA, *dq = w->dB, *dkv = w->dB + N * Q;
  POSE_TRY(lin_dx(G, w->dres, D, N, D, WC(m, L->o_w), Q, datt, 0.0f));
  POSE_TRY(lin_dw(G, w->dres, D, N, D, A->att, Q, G32(m, L->o_w)));
  POSE_TRY(bias_grad(G, w->dres, D, N, D, G32(m, L->o_b)));
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
  POSE_TRY(lin_dw(G, dq, Q, N, Q, A->h1, D, G32(m, L->q_w)));
  POSE_TRY(lin_dw(G, dkv, 2 * KV, N, 2 * KV, A->h1, D, G32(m, L->k_w)));
  POSE_TRY(bias_grad(G, dq, Q, N, Q, G32(m, L->q_b)));
  POSE_TRY(bias_grad(G, dkv, 2 * KV, N, 2 * KV, G32(m, L->k_b)));
  return rms_bwd(m, L->ln1_w, x, A->rs1, w->dh, N, w->dres, 1);
}

// ---- the run ---------------------------------------------------------------------------------------------------

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
  for (int64_t l = 0; l < Lc; l++) {
    layer_acts *A = &w->acts[rc.train && !rc.rec ? l : 0];
    if (rc.train) POSE_TRY(layer_fwd(m, l, A, w->xs[l], A->x1, w->xs[l + 1], w, rc));
    else POSE_TRY(layer_fwd(m, l, A, w->xs[0], w->xs[0], w->xs[0], w, rc));
  }
  const bf16 *xL = rc.train ? w->xs[Lc] : w->xs[0];
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
    POSE_TRY(lin_dw(G, w->head, V, rr, V, h, D, G32(m, m->lm_w)));
    POSE_TRY(bias_grad(G, w->head, V, rr, V, G32(m, m->lm_b)));
  }
  if (!rc.train) return POSE_OK;
  POSE_TRY(rms_bwd(m, m->final_w, xL, w->rsf, w->dh, N, w->dres, 0));
  for (int64_t l = Lc - 1; l >= 0; l--) {
    layer_acts *A = &w->acts[rc.rec ? 0 : l];
    if (rc.rec) POSE_TRY(layer_fwd(m, l, A, w->xs[l], A->x1, NULL, w, rc));
    POSE_TRY(layer_bwd(m, l, A, w->xs[l], w, rc));
  }
  return pose_cuda_embed_bwd(w->ids, w->dres, POSE_BF16, N, D, V, c->pad_id, G32(m, m->embed), 1, s);
}

extern "C" pose_status pose_gpu_model_run(pose_model *m, pose_model_run_args *a) {
  if (pc_fam_generic(m)) return pc_fam_run(m, a); // gptj, gpt_neox, baichuan: cuda/model_gpu_families.cu
  pose_gpu_model *G = m->gpu;
  const pose_model_cfg *c = &m->cfg;
  PC_CU(cudaSetDevice(G->dev), "cudaSetDevice");
  run_ctx rc = {a->B, a->T, a->B * a->T, a->backward, 0, a->logits != NULL, a->kv};
  if (rc.kv && (rc.train || !a->logits || !rc.kv->dev_kv))
    return pose_error(POSE_EINVAL, "decode: a cuda decode step needs a device cache and a logits output");
  rc.rec = rc.train && m->recompute == POSE_RECOMPUTE_LAYER;
  if ((a->nll || rc.train) && !a->tgt) return pose_error(POSE_EINVAL, "model: targets are required");
  if (rc.train) POSE_TRY(pose_gpu_model_ensure_grads(m));
  workspace w;
  memset(&w, 0, sizeof w);
  const int64_t nx = rc.train ? c->layers + 1 : 1, nsets = rc.train && !rc.rec ? c->layers : 1;
  w.xs = (bf16 **)calloc((size_t)nx, sizeof *w.xs);
  w.acts = (layer_acts *)calloc((size_t)nsets, sizeof *w.acts);
  float *nll_host = NULL;
  if (!w.xs || !w.acts) {
    free(w.xs);
    free(w.acts);
    return pose_error(POSE_ENOMEM, "model: out of memory");
  }
  bump b = {NULL, 0};
  ws_layout(m, rc, &w, &b);
  void *mem = NULL;
  pose_status st = pc_scratch_alloc(&mem, b.off, G->s);
  if (st != POSE_OK) {
    free(w.xs);
    free(w.acts);
    return pose_error_prefix(st, "model: activations for %lld tokens (%.2f GB, recompute %s): ", (long long)rc.N,
                             b.off / 1e9, m->recompute == POSE_RECOMPUTE_LAYER ? "layer" : "none");
  }
  b.base = (char *)mem;
  b.off = 0;
  ws_layout(m, rc, &w, &b);
  st = run_device(m, a, rc, &w);
  // per-row NLL to the host (this waits for the whole run); sum and count over the scored rows in row order
  if (st == POSE_OK && (a->nll || rc.train)) {
    nll_host = a->nll ? a->nll : (float *)malloc(sizeof(float) * (size_t)rc.N);
    if (!nll_host) st = pose_error(POSE_ENOMEM, "model: out of memory");
    else {
      cudaError_t e = cudaMemcpyAsync(nll_host, w.nll, sizeof(float) * (size_t)rc.N, cudaMemcpyDeviceToHost, G->s);
      if (e == cudaSuccess) e = cudaStreamSynchronize(G->s);
      if (e != cudaSuccess) st = pose_cuda_fail(e, "model run");
    }
    if (st == POSE_OK) {
      double sum = 0;
      int64_t cnt = 0;
      for (int64_t n = 0; n < rc.N; n++)
        if (a->tgt[n] != POSE_IGNORE_INDEX) {
          sum += nll_host[n];
          cnt++;
        }
      a->sum = sum;
      a->count = cnt;
      if (rc.train && !isfinite(sum)) st = pose_error(POSE_ENUMERIC, "loss is not finite (%g)", sum);
    }
    if (!a->nll) free(nll_host);
  } else if (st == POSE_OK) {
    cudaError_t e = cudaStreamSynchronize(G->s);
    if (e != cudaSuccess) st = pose_cuda_fail(e, "model run");
    if (st == POSE_OK && rc.kv) rc.kv->len += rc.T;
  }
  pc_scratch_free(mem, G->s);
  free(w.xs);
  free(w.acts);
  return st;
}
