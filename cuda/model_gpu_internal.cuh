// Shared between the decoders on the GPU: cuda/model_gpu.cu (LLaMA family, the arenas, the run of those models) and
// cuda/model_gpu_families.cu (GPT-J, GPT-NeoX, Baichuan): the device state of a model, parameter accessors and the
// GEMM shorthands. Internal to cuda/; everything here is static inline so that each file gets its own copy.
#ifndef POSE_MODEL_GPU_INTERNAL_CUH
#define POSE_MODEL_GPU_INTERNAL_CUH

#include "common.cuh"

extern "C" {
#include "model_gpu.h"
}

#define HEAD_BYTES ((size_t)256 << 20)       // logits chunk of the LM head
#define MLP_CHUNK_BYTES ((size_t)1 << 30)    // MLP row chunk: h2, gate|up, act and its gradient of C rows

// ---- the model's device state --------------------------------------------------------------------------------------

struct pose_gpu_model {
  int dev;
  cudaStream_t s;
  pose_cuda_blas *blas;
  size_t numel;     // arena elements, padding included
  size_t *off;      // offset of each parameter in the arenas
  float *w, *g;     // fp32 master weights, fp32 gradients (NULL until first needed)
  bf16 *wc;         // bf16 compute copies
  float *inv_freq;  // [rot/2]
  int ref_attn;     // head dim other than 64/128: the reference attention kernels
  int bf16;         // pure-bf16 policy: no fp32 masters (w == NULL); wc is the weights (pose_gpu_model_set_bf16)
  // Lazy gradient zeroing (LLaMA-family decoder): gz[i] = 1 means parameter i's gradient is logically zero whatever
  // its memory holds; the first writer of a step overwrites (GEMM beta = 0) or clears the tensor first (norm, bias,
  // embedding gradients: small, or written sparsely), later writers accumulate. zero_grad only sets the flags. (The
  // GPT-J / NeoX / Baichuan decoder always adds: zero_grad memsets for those models and the flags stay 0.)
  unsigned char *gz;
  int eager_zero;   // tests: zero_grad memsets the gradients as before (pose_gpu_model_set_lazy_zero(m, 0))
  // Gradient slots (the trainer's fused update; LLaMA family): instead of the arena, two layer-sized slots that
  // layers use alternately (layer l -> slot l % 2) plus the region of the other parameters (embedding, LM head,
  // final norm).
  int slots;
  float *gslot;
  int *group;       // per parameter: its layer, or cfg.layers for the others
  size_t *layer_lo; // arena offset where layer l's parameters begin (each layer's parameters are contiguous)
  size_t span, rest_lo; // elements of one layer slot (the largest layer), first offset after the layers
  int64_t head_rows; // tests: at most this many rows per LM-head chunk (0: by HEAD_BYTES)
  // Under the bf16 policy the layer slots hold bf16 gradients (params' g_bf16 = 1; the peer's gradient precision:
  // each layer gradient is written once per backward, rounded once from the fp32 accumulators); the region of the
  // other parameters stays fp32 (LM-head chunks and the embedding accumulate into it). no_bf16_slots: fp32 slots
  // anyway (tests: the fused update then reproduces the unfused step bit for bit).
  int slot_bf16, no_bf16_slots;
  // The small gradients of a layer bound for bf16 slots (norm weights, biases: written by kernels that only add, and
  // accumulated over the MLP's row chunks) are summed in fp32 scratch (one region per parameter, scr_off; adjacent
  // pairs adjacent) and converted once when the layer's backward is done (scr_pending).
  float *gscr;
  size_t gscr_n;
  size_t *scr_off;
  unsigned char *scr_pending;
  int64_t chunk_rows;  // MLP row chunk (pose_gpu_model_set_chunk_rows; 0: automatic, MLP_CHUNK_BYTES)
  cudaStream_t cs;     // recompute="offload": copy stream (created on first use)
  void *host_ckpt;     // recompute="offload": pinned host copies of the layer inputs, kept between calls
  size_t host_bytes;
};

static inline const bf16 *WC(pose_model *m, int i) { return i < 0 ? NULL : (const bf16 *)m->params[i].w_bf16; }
static inline const float *W32(pose_model *m, int i) { return i < 0 ? NULL : m->params[i].w; }
// norm weights: the fp32 masters, or under the pure-bf16 policy the bf16 weights themselves
static inline const void *NW(pose_model *m, int i) { return m->gpu->bf16 ? (const void *)WC(m, i) : (const void *)W32(m, i); }
static inline pose_dtype NWDT(const pose_model *m) { return m->gpu->bf16 ? POSE_BF16 : POSE_F32; }
static inline float *G32(pose_model *m, int i) { return i < 0 ? NULL : m->params[i].g; }

// The per-device stream that the model and its optimizer order on (cuda/model_gpu.cu).
extern "C" pose_status pc_device_stream(int dev, cudaStream_t *out);

// ---- GEMM shorthands (row-major; W is a Hugging Face [out, in] weight) -------------------------------------------

static inline pose_status gemm(pose_gpu_model *G, int ta, int tb, int64_t M, int64_t N, int64_t K, const void *A, int64_t lda,
                        const void *B, int64_t ldb, void *C, pose_dtype cdt, int64_t ldc, float beta,
                        const void *bias) {
  pose_cuda_gemm_args g;
  pose_cuda_gemm_args_init(&g);
  g.trans_a = ta; g.trans_b = tb;
  g.M = M; g.N = N; g.K = K;
  g.A = A; g.a_dt = POSE_BF16; g.lda = lda;
  g.B = B; g.b_dt = POSE_BF16; g.ldb = ldb;
  g.C = C; g.c_dt = cdt; g.ldc = ldc;
  g.beta = beta;
  g.bias = bias;
  return pose_cuda_gemm(G->blas, &g, G->s);
}

// y[N,out] (beta: +)= x[N,in] W^T + bias
static inline pose_status lin_fwd(pose_gpu_model *G, const bf16 *x, int64_t N, int64_t in, const bf16 *W, int64_t out,
                           const bf16 *bias, bf16 *y, float beta) {
  return gemm(G, 0, 1, N, out, in, x, in, W, in, y, POSE_BF16, out, beta, bias);
}
// dx[N,in] (beta: +)= dy[N,out] W
static inline pose_status lin_dx(pose_gpu_model *G, const bf16 *dy, int64_t lddy, int64_t N, int64_t out, const bf16 *W,
                          int64_t in, bf16 *dx, float beta) {
  return gemm(G, 0, 0, N, in, out, dy, lddy, W, in, dx, POSE_BF16, in, beta, NULL);
}
// dW[out,in] += dy[N,out]^T x[N,in] (fp32)
static inline pose_status lin_dw(pose_gpu_model *G, const bf16 *dy, int64_t lddy, int64_t N, int64_t out, const bf16 *x,
                          int64_t in, float *dW) {
  if (!dW) return POSE_OK;
  return gemm(G, 1, 0, out, in, N, dy, lddy, x, in, dW, POSE_F32, in, 1.0f, NULL);
}
static inline pose_status bias_grad(pose_gpu_model *G, const bf16 *dy, int64_t ld, int64_t N, int64_t C, float *db) {
  if (!db) return POSE_OK;
  return pose_cuda_colsum_add(dy, POSE_BF16, N, C, ld, db, G->s);
}

// The decoder of GPT-J, GPT-NeoX and Baichuan (cuda/model_gpu_families.cu): whether it runs model m (its family
// is not one of the LLaMA family's), the shape checks of those families, and one call of pose_gpu_model_run.
static inline int pc_fam_generic(const pose_model *m) {
  pose_family f = m->cfg.family;
  return f == POSE_FAMILY_GPTJ || f == POSE_FAMILY_NEOX || f == POSE_FAMILY_BAICHUAN;
}
pose_status pc_fam_check(const pose_model *m);
pose_status pc_fam_run(pose_model *m, pose_model_run_args *a);
// The end of a run of either decoder: wait, per-row NLL to the host, loss sum and count (model_gpu.cu)
pose_status pc_run_finish(pose_model *m, pose_model_run_args *a, const float *dev_nll, int64_t N, int64_t T,
                          int train, pose_kv_cache *kv);

#endif
