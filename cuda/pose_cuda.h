/* The GPU kernels of pose, callable from C: every function takes device pointers, sizes and a stream, checks its
 * arguments (POSE_EINVAL / POSE_EUNSUPPORTED with a message), launches, and reports launch failures as POSE_EDEVICE.
 * Kernels run asynchronously on the stream; errors raised while a kernel runs surface at the next synchronising
 * call. The CPU path (core/ops_*.c, core/attention.c) is the numerical reference for each operation; tests/gpu
 * checks every kernel against a CPU computation.
 *
 * Conventions
 * - Matrices are row-major; "ld" is the distance in elements between consecutive rows.
 * - bf16 values are stored as raw uint16_t (as in core/dtype.h); a `pose_dtype` argument says whether a buffer is
 *   POSE_F32 or POSE_BF16 (f16 is not supported on the GPU yet).
 * - Arithmetic is fp32 (statistics, softmax, accumulation), inputs and outputs bf16 or fp32.
 * - Reductions over rows (weight gradients of norms, gradient norms) are deterministic: fixed partitions summed in a
 *   fixed order, never float atomics, unless a function says otherwise.
 * - Temporary buffers come from the stream-ordered allocator (cudaMallocAsync) on the given stream.
 * - Token positions and ids are int64 on the device, as the CPU path holds them. */
#ifndef POSE_CUDA_H
#define POSE_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "dtype.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The same type as cudaStream_t; NULL is the default stream. */
typedef struct CUstream_st *pose_cuda_stream;

/* Number of multiprocessors of the current device (cached per device); 0 when no device is usable. */
int pose_cuda_sm_count(void);

/* ---- conversions ------------------------------------------------------------------------------------------- */
/* dst[i] = src[i] converted (f32 <-> bf16 with round-to-nearest-even, NaN kept; same dtype = copy). */
pose_status pose_cuda_convert(void *dst, pose_dtype dst_dt, const void *src, pose_dtype src_dt, int64_t n,
                              pose_cuda_stream s);

/* Random fill as pose_tensor_rand_normal (normal = 1: a + b * N(0,1)) or pose_tensor_rand_uniform (normal = 0:
 * uniform in [a, b)): element i takes the i-th draw of Philox stream (seed, stream), so the GPU and the CPU produce
 * the same tensor (uniforms bit for bit; normals up to the last bit of double log/cos, rarely). */
pose_status pose_cuda_rand(void *x, pose_dtype dt, int64_t n, uint64_t seed, uint64_t stream, double a, double b,
                           int normal, pose_cuda_stream s);

/* ---- GEMM through cuBLASLt ----------------------------------------------------------------------------------
 * C[M,N] = alpha * op(A) op(B) + beta * C (+ bias[N] on every row), row-major, fp32 accumulation. op(A) is [M,K]:
 * A is stored [M,K] (trans_a = 0) or [K,M] (trans_a = 1); op(B) is [K,N]: B is stored [K,N] or [N,K] (trans_b = 1).
 * For a Hugging Face linear layer W[out,in]: forward y = x W^T (trans_b = 1), dx = dy W (plain), dW += dy^T x
 * (trans_a = 1, beta = 1, fp32 C). Types: A and B both bf16 (C bf16 or fp32) or both fp32 (C fp32, true fp32
 * arithmetic, no TF32). batch > 1: strided batches (strides in elements). A handle owns a workspace and a cache of
 * the heuristic's choice per shape; it belongs to one device and must not be used by two streams at once. */
typedef struct pose_cuda_blas pose_cuda_blas;

typedef struct {
  int trans_a, trans_b;
  int64_t M, N, K;
  const void *A;
  pose_dtype a_dt;
  int64_t lda;
  const void *B;
  pose_dtype b_dt;
  int64_t ldb;
  void *C;
  pose_dtype c_dt;
  int64_t ldc;
  float alpha, beta;
  const void *bias; /* [N] of c_dt, or NULL */
  int64_t batch;    /* 0 or 1: one product */
  int64_t stride_a, stride_b, stride_c;
} pose_cuda_gemm_args;

/* Fills defaults: no transposes, alpha 1, beta 0, dtype bf16 for A/B/C, one batch, ld = 0 (meaning "packed":
 * K or M for A, N or K for B, N for C). */
void pose_cuda_gemm_args_init(pose_cuda_gemm_args *g);
/* workspace_bytes 0 = 32 MiB (what cuBLAS recommends for Hopper). */
pose_status pose_cuda_blas_create(int device, size_t workspace_bytes, pose_cuda_blas **out);
void pose_cuda_blas_free(pose_cuda_blas *h);
pose_status pose_cuda_gemm(pose_cuda_blas *h, const pose_cuda_gemm_args *g, pose_cuda_stream s);
/* Heuristic cache statistics (for tests and benchmarks). */
void pose_cuda_blas_stats(const pose_cuda_blas *h, int64_t *hits, int64_t *misses);

/* out[c] += sum over rows n of a[n*ld + c] (bias gradients), deterministic; a bf16 or fp32, out fp32. */
pose_status pose_cuda_colsum_add(const void *a, pose_dtype dt, int64_t N, int64_t C, int64_t ld, float *out,
                                 pose_cuda_stream s);

/* ---- normalisation -------------------------------------------------------------------------------------------
 * RMSNorm (rms = 1): y = w * x * rstd, rstd = 1/sqrt(mean(x^2) + eps); LayerNorm: y = w * (x - mean) * rstd + b,
 * biased variance. x, y: [N,C] of dt (rows ld = C); w, b: [C] of wdt (b may be NULL for LayerNorm without bias);
 * mean, rstd: [N] fp32 outputs saved for the backward (mean unused and may be NULL for RMSNorm). */
pose_status pose_cuda_norm_fwd(int rms, const void *x, pose_dtype dt, const void *w, const void *b, pose_dtype wdt,
                               float eps, int64_t N, int64_t C, void *y, float *mean, float *rstd,
                               pose_cuda_stream s);
/* dx (dt) = d/dx, written, or added to when accumulate_dx (a residual stream); dw += sum_n dy * xhat and
 * db += sum_n dy (fp32, may be NULL). C must be at most 16384. */
pose_status pose_cuda_norm_bwd(int rms, const void *x, pose_dtype dt, const void *w, pose_dtype wdt,
                               const float *mean, const float *rstd, const void *dy, int64_t N, int64_t C, void *dx,
                               int accumulate_dx, float *dw, float *db, pose_cuda_stream s);

/* ---- rotary embedding -----------------------------------------------------------------------------------------
 * In place on x: [N tokens][H heads][D] with `stride` elements between tokens (>= H*D; a fused QKV buffer works),
 * rotating the first r channels of each head: half-split pairs (j, j + r/2) or interleaved pairs (2j, 2j+1);
 * channels >= r pass through untouched. The angle of pair j at token n is phi = fl32(inv_freq[j] * fl32(pos[n]))
 * and cos, sin are fl32(cos(phi) * A), fl32(sin(phi) * A), computed on the GPU (spec/rope.md section 4); inv_freq
 * is a device array of r/2 floats and pos a device array of N int64. transpose = 1 applies the inverse rotation
 * (s -> -s): the backward. The rotation is computed in fp32 and rounded once to dt. */
pose_status pose_cuda_rope_apply(void *x, pose_dtype dt, int64_t N, int64_t stride, int64_t H, int64_t D, int64_t r,
                                 const int64_t *pos, const float *inv_freq, float attn_factor, int interleaved,
                                 int transpose, pose_cuda_stream s);

/* ---- MLP activations -----------------------------------------------------------------------------------------
 * Same kinds and order as the CPU's pose_act_kind. Gated (u != NULL): a = act(g) * u (SwiGLU with SILU, GeGLU with
 * GELU), else a = act(g). g and u are [N,F] with rows ld_in apart (a fused gate|up projection output: g = buf,
 * u = buf + F, ld_in = 2F); a is [N,F] packed. */
typedef enum { POSE_CUDA_SILU = 0, POSE_CUDA_GELU_ERF, POSE_CUDA_GELU_TANH, POSE_CUDA_RELU } pose_cuda_act;
pose_status pose_cuda_act_fwd(pose_cuda_act k, const void *g, const void *u, int64_t ld_in, pose_dtype dt,
                              int64_t N, int64_t F, void *a, pose_cuda_stream s);
/* dg = da * u * act'(g) and du = da * act(g) (gated), or dg = da * act'(g); dg and du are written with rows ld_out
 * apart (du may be NULL when ungated). da is [N,F] packed. */
pose_status pose_cuda_act_bwd(pose_cuda_act k, const void *g, const void *u, int64_t ld_in, pose_dtype dt, int64_t N,
                              int64_t F, const void *da, void *dg, void *du, int64_t ld_out, pose_cuda_stream s);

/* ---- embedding -------------------------------------------------------------------------------------------------
 * y[n] = E[ids[n]] (E [V,D] and y [N,D] of dt). ids must lie in [0, V): callers validate them on the host, where
 * they come from; a row with an id out of range is filled with NaN so that the error cannot pass unnoticed. */
pose_status pose_cuda_embed_fwd(const void *E, pose_dtype dt, const int64_t *ids, int64_t N, int64_t D, int64_t V,
                                void *y, pose_cuda_stream s);
/* dE[ids[n]] += dy[n] (dE fp32 [V,D]); rows whose id is skip_id get nothing (-1 = none). deterministic = 1 sorts
 * the ids and sums each id's rows in order of n; 0 uses float atomics (faster, order-dependent rounding). */
pose_status pose_cuda_embed_bwd(const int64_t *ids, const void *dy, pose_dtype dt, int64_t N, int64_t D, int64_t V,
                                int64_t skip_id, float *dE, int deterministic, pose_cuda_stream s);

/* ---- cross-entropy over the vocabulary ---------------------------------------------------------------------------
 * Rows of logits [N,V] (dt, rows ld apart) with targets tgt[N] (int64, -100 = ignored, else in [0, V)). Each row is
 * reduced in one pass with an online max/sum (any V, fp32 statistics), so the model can feed the LM head's output in
 * row chunks and never hold fp32 logits for the whole batch.
 * nll[n] = lse[n] - logit[n, tgt[n]] (0 for ignored rows); lse[n] (may be NULL) = log sum_j exp(logit[n,j]). */
pose_status pose_cuda_xent_fwd(const void *logits, pose_dtype dt, int64_t ld, int64_t N, int64_t V,
                               const int64_t *tgt, float *nll, float *lse, pose_cuda_stream s);
/* Forward and backward in one kernel: also writes dlogits = (softmax - onehot(tgt)) * scale (0 on ignored rows)
 * in ddt with rows ld_d apart; dlogits may be the logits buffer itself (same dt and ld): in place. */
pose_status pose_cuda_xent_fwd_bwd(const void *logits, pose_dtype dt, int64_t ld, int64_t N, int64_t V,
                                   const int64_t *tgt, float scale, float *nll, float *lse, void *dlogits,
                                   pose_dtype ddt, int64_t ld_d, pose_cuda_stream s);
/* Backward alone from a saved lse (recomputed logits). */
pose_status pose_cuda_xent_bwd(const void *logits, pose_dtype dt, int64_t ld, int64_t N, int64_t V,
                               const int64_t *tgt, const float *lse, float scale, void *dlogits, pose_dtype ddt,
                               int64_t ld_d, pose_cuda_stream s);

/* ---- reductions, gradient norm, clipping -------------------------------------------------------------------------- */
/* *out (device double) = sum of x[0..n) (fp32 or bf16), deterministic. */
pose_status pose_cuda_sum(const void *x, pose_dtype dt, int64_t n, double *out, pose_cuda_stream s);
/* *out (device double) = sum of the fp32 x[0..n) by one block (no host staging; for guards on short arrays). */
pose_status pose_cuda_sum_small(const float *x, int64_t n, double *out, pose_cuda_stream s);
/* torch.nn.utils.clip_grad_norm_'s total norm over `count` tensors (host arrays of device pointers and sizes):
 * each tensor's norm is rounded to float, then the norm of those norms; squares are summed in double over fixed
 * blocks of 16384 elements, in order, as the CPU trainer does. *norm is a device float. */
pose_status pose_cuda_grad_norm(const void *const *grads, const int64_t *numel, int count, pose_dtype dt,
                                float *norm, pose_cuda_stream s);
/* *coef = min(1, max_norm * (1 / (*norm + 1e-6))) in float, as torch (NaN stays NaN). Device to device. */
pose_status pose_cuda_clip_coef(const float *norm, double max_norm, float *coef, pose_cuda_stream s);

/* ---- AdamW -----------------------------------------------------------------------------------------------------
 * torch.optim.AdamW's single-tensor arithmetic, operation for operation (see core/adamw.h on the trainer branch):
 * each mul/add/div/sqrt rounded once, the lerp as one fma, so fp32 results match the CPU bit for bit. */
typedef struct {
  float decay;     /* f32(1 - lr*wd) */
  int apply_decay; /* weight_decay != 0 */
  float lerp_w;    /* f32(1 - beta1) */
  float beta2, one_minus_beta2;
  float bc2_sqrt;  /* f32((1 - beta2^step)^0.5) */
  float eps;
  float neg_step_size; /* f32(-lr / (1 - beta1^step)) */
} pose_cuda_adamw_coefs;

/* The scalars of update number `step` (1-based), computed in double as torch does in Python. */
void pose_cuda_adamw_coefs_init(pose_cuda_adamw_coefs *c, double lr, double beta1, double beta2, double eps,
                                double weight_decay, int64_t step);
/* fp32 master weights w, moments m and v, fp32 gradient g; gscale (device float, may be NULL) multiplies g first
 * (the clipping coefficient: g * coef rounded once, as torch's in-place scaling). w_bf16 (may be NULL) receives
 * the updated weights rounded to bf16: the compute copy, written in the same pass. */
pose_status pose_cuda_adamw(float *w, const float *g, float *m, float *v, uint16_t *w_bf16, int64_t n,
                            const pose_cuda_adamw_coefs *c, const float *gscale, pose_cuda_stream s);
/* Pure-bf16 policy: w, m, v stored in bf16 (memory parity with a bf16 PyTorch model and optimizer), the update
 * computed in fp32 as above, each of w, m, v rounded back to bf16 stochastically: the fp32 bit pattern plus 16
 * random bits is truncated to bf16 (NaN/Inf rounded to nearest). The random bits: one Philox4x32-10 block
 * r = Philox(key = seed, counter = (j, stream_id)) per element PAIR j = i / 2 (128 bits for 6 x 16 needed):
 * element 2j rounds w with r[0] & 0xffff, m with r[0] >> 16, v with r[1] & 0xffff; element 2j+1 rounds w with
 * r[1] >> 16, m with r[2] & 0xffff, v with r[2] >> 16; r[3] is unused. core/adamw.h's pose_adamw_bf16_sr_range is
 * the CPU reference, bit for bit. g is fp32 or bf16. Both AdamW kernels use 16-byte accesses (8 elements per
 * thread) where every pointer is 16-byte aligned, element accesses otherwise; the results are the same. */
pose_status pose_cuda_adamw_bf16(uint16_t *w, const void *g, pose_dtype gdt, uint16_t *m, uint16_t *v, int64_t n,
                                 const pose_cuda_adamw_coefs *c, const float *gscale, uint64_t seed,
                                 uint64_t stream_id, pose_cuda_stream s);

/* Multi-tensor AdamW: one launch over a DEVICE table of tensors (fp32 masters: w, m, v fp32 and w_bf16 the copy
 * to refresh or NULL; bf16 policy: w, m, v bf16, w_bf16 unused). g is fp32, or bf16 where g_bf16. Each tensor's elements are split into
 * chunks of POSE_CUDA_ADAMW_CHUNK (one block each); pose_cuda_adamw_mt_plan fills `first` on the host copy of the
 * table and returns the number of chunks to pass. decay picks the coefficients (decay ? *decay : *no_decay).
 * guard (device doubles, may be NULL): an entry with guard >= 0 is left untouched (w, m, v, w_bf16) when
 * guard[entry.guard] is not finite (the fused update's per-layer sum of squared gradients); guard_all (device
 * double, may be NULL): every entry is left untouched when *guard_all is not finite (the loss). Per element the
 * arithmetic and the rounding stream are those of pose_cuda_adamw / pose_cuda_adamw_bf16 (stream_id per entry). */
#define POSE_CUDA_ADAMW_CHUNK 8192
typedef struct {
  void *w;
  const void *g;
  void *m, *v;
  void *w_bf16;
  int64_t n;
  int64_t first;      /* first chunk (pose_cuda_adamw_mt_plan) */
  uint64_t stream_id; /* bf16 policy: Philox counter's high word */
  int32_t decay;      /* 1: weight decay applies */
  int32_t guard;      /* index into guard, -1 = none */
  int32_t g_bf16;     /* 1: g is bf16 (else fp32) */
  int32_t pad_;
} pose_cuda_adamw_entry;
int64_t pose_cuda_adamw_mt_plan(pose_cuda_adamw_entry *host_table, int count);
pose_status pose_cuda_adamw_mt(const pose_cuda_adamw_entry *table, int count, int64_t chunks, int bf16_policy,
                               const pose_cuda_adamw_coefs *no_decay, const pose_cuda_adamw_coefs *decay,
                               const float *gscale, uint64_t seed, const double *guard, const double *guard_all,
                               pose_cuda_stream s);

/* Squared gradient norms of one group of tensors (device arrays ptrs, numel, first, idx, and is_bf16 (may be NULL:
 * every tensor of dtype dt; else 1 = bf16, 0 = fp32 per tensor); first from
 * pose_cuda_sumsq_plan on the host, which returns the number of partials nparts): as pose_cuda_grad_norm, each
 * tensor's norm is summed over blocks of 16384 and rounded to float; tn[idx[t]] receives that norm squared (double)
 * and *group_sq (may be NULL) their sum in table order. part: device scratch of nparts doubles.
 * pose_cuda_norm_from_sq: *norm = f32(sqrt(sum of tn[0..count) in order)): with tn indexed by parameter, exactly
 * pose_cuda_grad_norm over all parameters. */
int64_t pose_cuda_sumsq_plan(const int64_t *numel, int count, int64_t *first);
pose_status pose_cuda_group_sumsq(const void *const *ptrs, const int64_t *numel, const int64_t *first,
                                  const int32_t *idx, const int32_t *is_bf16, int count, int64_t nparts, pose_dtype dt,
                                  double *part, double *tn, double *group_sq, pose_cuda_stream s);
pose_status pose_cuda_norm_from_sq(const double *tn, int count, float *norm, pose_cuda_stream s);

/* ---- attention -------------------------------------------------------------------------------------------------
 * Causal multi-head attention, bf16 in and out, fp32 softmax, flash-style (tiled online softmax; no T x T buffer).
 * Same meaning as the CPU's pose_attn_dims: query i of a row has token index q_off + i and sees keys j <= q_off + i
 * (and q_off + i - j < window when window > 0); Hkv divides Hq (grouped-query attention). Strides in elements:
 * head h of token t in batch row b starts at b*bstride + t*rstride + h*D (q, o, dq, dout use q_*; k, v, dk, dv use
 * kv_*). D must be 64 or 128; strides must be multiples of 8 and pointers 16-byte aligned. */
typedef struct {
  int64_t B, Tq, Tk, q_off, Hq, Hkv, D, window;
  float scale;
  int64_t q_bstride, q_rstride, kv_bstride, kv_rstride;
} pose_cuda_attn_dims;

/* Contiguous [B,Tq,Hq,D] queries and [B,Tk,Hkv,D] keys/values, q_off = Tk - Tq, scale = 1/sqrt(D). */
void pose_cuda_attn_dims_init(pose_cuda_attn_dims *d, int64_t B, int64_t Tq, int64_t Tk, int64_t Hq, int64_t Hkv,
                              int64_t D, int64_t window);
/* o (q's layout) and lse [B][Hq][Tq] fp32 (natural log of the sum of exp(scale * q.k) over visible keys). */
pose_status pose_cuda_attn_fwd(const pose_cuda_attn_dims *d, const uint16_t *q, const uint16_t *k, const uint16_t *v,
                               uint16_t *o, float *lse, pose_cuda_stream s);
/* Gradients from dout; dq, dk, dv are overwritten. Deterministic: dk/dv are summed over a group's query heads inside
 * one block and dq is computed by a second kernel over query tiles (no atomics). */
pose_status pose_cuda_attn_bwd(const pose_cuda_attn_dims *d, const uint16_t *q, const uint16_t *k, const uint16_t *v,
                               const uint16_t *o, const float *lse, const uint16_t *dout, uint16_t *dq, uint16_t *dk,
                               uint16_t *dv, pose_cuda_stream s);

/* The same contracts for any head dim up to 256 (cuda/attn_ref.cu): one warp per query or key row, fp32 arithmetic
 * from bf16 operands, no tensor cores, no alignment requirements. For heads the flash kernels do not take (the tiny
 * test models); O(T^2 D) and slow at length. The backward is deterministic (no atomics). */
pose_status pose_cuda_attn_ref_fwd(const pose_cuda_attn_dims *d, const uint16_t *q, const uint16_t *k,
                                   const uint16_t *v, uint16_t *o, float *lse, pose_cuda_stream s);
pose_status pose_cuda_attn_ref_bwd(const pose_cuda_attn_dims *d, const uint16_t *q, const uint16_t *k,
                                   const uint16_t *v, const uint16_t *o, const float *lse, const uint16_t *dout,
                                   uint16_t *dq, uint16_t *dk, uint16_t *dv, pose_cuda_stream s);

#ifdef __cplusplus
}
#endif

#endif
