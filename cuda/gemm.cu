// GEMMs through cuBLASLt. cuBLASLt is column-major; a row-major C[M,N] = op(A) op(B) is computed as the
// column-major C^T[N,M] = op(B)^T op(A)^T, i.e. with the operands swapped: Lt's "A" is our B and Lt's "B" our A,
// each keeping its own transpose flag. The handle caches, per distinct problem (shapes, leading dimensions, types,
// pointer alignments), the descriptors and the algorithm the heuristic picked, so a training step pays the
// heuristic once per shape.
#include <cublasLt.h>
#include <stdlib.h>
#include <string.h>

#include "common.cuh"

#define PC_GEMM_CACHE 128

typedef struct {
  int trans_a, trans_b, a_dt, b_dt, c_dt, has_bias;
  int64_t M, N, K, lda, ldb, ldc, batch, stride_a, stride_b, stride_c;
  int align_a, align_b, align_c, align_bias;
} gemm_key;

typedef struct {
  gemm_key key;
  int used;
  uint64_t last_use;
  cublasLtMatmulDesc_t op;
  cublasLtMatrixLayout_t la, lb, lc; // Lt's A (our B), Lt's B (our A), C = D
  cublasLtMatmulAlgo_t algo;
} gemm_entry;

struct pose_cuda_blas {
  int device;
  cublasLtHandle_t lt;
  void *workspace;
  size_t ws_bytes;
  gemm_entry cache[PC_GEMM_CACHE];
  uint64_t clock;
  int64_t hits, misses;
};

static pose_status lt_fail(cublasStatus_t st, const char *what) {
  return pose_error(POSE_EDEVICE, "cuBLASLt %s failed: %s (%d)", what, cublasGetStatusString(st), (int)st);
}

#define LT(expr, what)                                   \
  do {                                                   \
    cublasStatus_t lt_st_ = (expr);                      \
    if (lt_st_ != CUBLAS_STATUS_SUCCESS) return lt_fail(lt_st_, what); \
  } while (0)

extern "C" void pose_cuda_gemm_args_init(pose_cuda_gemm_args *g) {
  memset(g, 0, sizeof *g);
  g->a_dt = g->b_dt = g->c_dt = POSE_BF16;
  g->alpha = 1.0f;
  g->beta = 0.0f;
  g->batch = 1;
}

extern "C" pose_status pose_cuda_blas_create(int device, size_t workspace_bytes, pose_cuda_blas **out) {
  *out = NULL;
  PC_CU(cudaSetDevice(device), "cudaSetDevice");
  pose_cuda_blas *h = (pose_cuda_blas *)calloc(1, sizeof *h);
  if (!h) return pose_error(POSE_ENOMEM, "out of memory (cuBLASLt handle)");
  h->device = device;
  h->ws_bytes = workspace_bytes ? workspace_bytes : (size_t)32 << 20;
  cublasStatus_t st = cublasLtCreate(&h->lt);
  if (st != CUBLAS_STATUS_SUCCESS) {
    free(h);
    return lt_fail(st, "cublasLtCreate");
  }
  cudaError_t e = cudaMalloc(&h->workspace, h->ws_bytes);
  if (e != cudaSuccess) {
    cublasLtDestroy(h->lt);
    free(h);
    return pose_error(POSE_ENOMEM, "cuda: cannot allocate the %.0f MiB GEMM workspace: %s", h->ws_bytes / 1048576.0,
                      cudaGetErrorString(e));
  }
  *out = h;
  return POSE_OK;
}

static void entry_release(gemm_entry *e) {
  if (!e->used) return;
  if (e->op) cublasLtMatmulDescDestroy(e->op);
  if (e->la) cublasLtMatrixLayoutDestroy(e->la);
  if (e->lb) cublasLtMatrixLayoutDestroy(e->lb);
  if (e->lc) cublasLtMatrixLayoutDestroy(e->lc);
  memset(e, 0, sizeof *e);
}

extern "C" void pose_cuda_blas_free(pose_cuda_blas *h) {
  if (!h) return;
  cudaSetDevice(h->device);
  for (int i = 0; i < PC_GEMM_CACHE; i++) entry_release(&h->cache[i]);
  cudaFree(h->workspace);
  cublasLtDestroy(h->lt);
  free(h);
}

extern "C" void pose_cuda_blas_stats(const pose_cuda_blas *h, int64_t *hits, int64_t *misses) {
  if (hits) *hits = h ? h->hits : 0;
  if (misses) *misses = h ? h->misses : 0;
}

static cudaDataType_t lt_type(pose_dtype dt) { return dt == POSE_F32 ? CUDA_R_32F : CUDA_R_16BF; }

// Largest power of two (at most 256) dividing the address: the heuristic must only offer kernels that cope.
static int ptr_align(const void *p) {
  uintptr_t a = (uintptr_t)p;
  int al = 256;
  while (al > 1 && (a % (uintptr_t)al)) al >>= 1;
  return al;
}

static pose_status make_layout(cublasLtMatrixLayout_t *l, pose_dtype dt, int64_t rows, int64_t cols, int64_t ld,
                               int64_t batch, int64_t stride) {
  LT(cublasLtMatrixLayoutCreate(l, lt_type(dt), (uint64_t)rows, (uint64_t)cols, ld), "MatrixLayoutCreate");
  if (batch > 1) {
    int32_t bc = (int32_t)batch;
    LT(cublasLtMatrixLayoutSetAttribute(*l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &bc, sizeof bc), "batch count");
    LT(cublasLtMatrixLayoutSetAttribute(*l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof stride),
       "batch stride");
  }
  return POSE_OK;
}

static pose_status entry_build(pose_cuda_blas *h, const gemm_key *k, gemm_entry *e) {
  memset(e, 0, sizeof *e);
  e->key = *k;
  LT(cublasLtMatmulDescCreate(&e->op, CUBLAS_COMPUTE_32F, CUDA_R_32F), "MatmulDescCreate");
  e->used = 1; // from here on, entry_release frees what exists (layouts are created below; destroy NULL is a no-op)
  cublasOperation_t ta = k->trans_b ? CUBLAS_OP_T : CUBLAS_OP_N; // Lt's A is our B
  cublasOperation_t tb = k->trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  LT(cublasLtMatmulDescSetAttribute(e->op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta), "TRANSA");
  LT(cublasLtMatmulDescSetAttribute(e->op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb), "TRANSB");
  if (k->has_bias) {
    cublasLtEpilogue_t ep = CUBLASLT_EPILOGUE_BIAS;
    LT(cublasLtMatmulDescSetAttribute(e->op, CUBLASLT_MATMUL_DESC_EPILOGUE, &ep, sizeof ep), "EPILOGUE");
    cudaDataType_t bt = lt_type((pose_dtype)k->c_dt);
    LT(cublasLtMatmulDescSetAttribute(e->op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof bt), "BIAS_DATA_TYPE");
  }
  // Column-major shapes: our B as stored is (trans_b ? [N,K] : [K,N]) row-major = (trans_b ? K x N : N x K) col-major.
  POSE_TRY(make_layout(&e->la, (pose_dtype)k->b_dt, k->trans_b ? k->K : k->N, k->trans_b ? k->N : k->K, k->ldb,
                       k->batch, k->stride_b));
  POSE_TRY(make_layout(&e->lb, (pose_dtype)k->a_dt, k->trans_a ? k->M : k->K, k->trans_a ? k->K : k->M, k->lda,
                       k->batch, k->stride_a));
  POSE_TRY(make_layout(&e->lc, (pose_dtype)k->c_dt, k->N, k->M, k->ldc, k->batch, k->stride_c));

  cublasLtMatmulPreference_t pref;
  LT(cublasLtMatmulPreferenceCreate(&pref), "PreferenceCreate");
  uint64_t ws = h->ws_bytes;
  uint32_t aa = (uint32_t)k->align_b, ab = (uint32_t)k->align_a, ac = (uint32_t)k->align_c;
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &aa, sizeof aa);
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &ab, sizeof ab);
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &ac, sizeof ac);
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &ac, sizeof ac);
  cublasLtMatmulHeuristicResult_t res;
  int found = 0;
  cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(h->lt, e->op, e->la, e->lb, e->lc, e->lc, pref, 1, &res, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  if (st != CUBLAS_STATUS_SUCCESS || found < 1)
    return pose_error(POSE_EUNSUPPORTED,
                      "cuBLASLt has no algorithm for %s%s GEMM M=%lld N=%lld K=%lld (lda %lld ldb %lld ldc %lld, "
                      "%s x %s -> %s): %s",
                      k->trans_a ? "T" : "N", k->trans_b ? "T" : "N", (long long)k->M, (long long)k->N,
                      (long long)k->K, (long long)k->lda, (long long)k->ldb, (long long)k->ldc,
                      pose_dtype_name((pose_dtype)k->a_dt), pose_dtype_name((pose_dtype)k->b_dt),
                      pose_dtype_name((pose_dtype)k->c_dt), cublasGetStatusString(st));
  e->algo = res.algo;
  return POSE_OK;
}

extern "C" pose_status pose_cuda_gemm(pose_cuda_blas *h, const pose_cuda_gemm_args *g, pose_cuda_stream s) {
  PC_REQUIRE(h && g, "gemm: NULL handle or arguments");
  PC_REQUIRE(g->M >= 0 && g->N >= 0 && g->K >= 0, "gemm: negative size (M=%lld N=%lld K=%lld)", (long long)g->M,
             (long long)g->N, (long long)g->K);
  int bf = g->a_dt == POSE_BF16 && g->b_dt == POSE_BF16 && (g->c_dt == POSE_BF16 || g->c_dt == POSE_F32);
  int f32 = g->a_dt == POSE_F32 && g->b_dt == POSE_F32 && g->c_dt == POSE_F32;
  if (!bf && !f32)
    return pose_error(POSE_EUNSUPPORTED, "gemm: unsupported types %s x %s -> %s (bf16 x bf16 -> bf16/f32, or f32)",
                      pose_dtype_name(g->a_dt), pose_dtype_name(g->b_dt), pose_dtype_name(g->c_dt));
  int64_t batch = g->batch > 1 ? g->batch : 1;
  if (g->M == 0 || g->N == 0 || batch == 0) return POSE_OK;
  PC_REQUIRE(g->A && g->B && g->C, "gemm: NULL matrix pointer");
  // Packed leading dimensions by default; explicit ones must cover a row.
  int64_t a_cols = g->trans_a ? g->M : g->K, b_cols = g->trans_b ? g->K : g->N;
  int64_t lda = g->lda ? g->lda : (a_cols > 0 ? a_cols : 1), ldb = g->ldb ? g->ldb : (b_cols > 0 ? b_cols : 1);
  int64_t ldc = g->ldc ? g->ldc : g->N;
  PC_REQUIRE(lda >= a_cols && ldb >= b_cols && ldc >= g->N && lda > 0 && ldb > 0,
             "gemm: leading dimension smaller than a row (lda %lld < %lld, ldb %lld < %lld or ldc %lld < %lld)",
             (long long)lda, (long long)a_cols, (long long)ldb, (long long)b_cols, (long long)ldc, (long long)g->N);
  if (g->K == 0) {
    // Lt rejects k = 0; the product is empty: C = beta * C.
    PC_REQUIRE(g->beta == 0.0f && !g->bias, "gemm: K = 0 is supported only with beta = 0 and no bias");
    size_t es = pose_dtype_size(g->c_dt);
    for (int64_t b = 0; b < batch; b++)
      PC_CU(cudaMemset2DAsync((char *)g->C + (size_t)(b * g->stride_c) * es, (size_t)ldc * es, 0, (size_t)g->N * es,
                              (size_t)g->M, s),
            "memset");
    return POSE_OK;
  }
  PC_CU(cudaSetDevice(h->device), "cudaSetDevice");
  gemm_key k;
  memset(&k, 0, sizeof k);
  k.trans_a = !!g->trans_a;
  k.trans_b = !!g->trans_b;
  k.a_dt = g->a_dt; k.b_dt = g->b_dt; k.c_dt = g->c_dt;
  k.has_bias = g->bias != NULL;
  k.M = g->M; k.N = g->N; k.K = g->K;
  k.lda = lda; k.ldb = ldb; k.ldc = ldc;
  k.batch = batch;
  if (batch > 1) { k.stride_a = g->stride_a; k.stride_b = g->stride_b; k.stride_c = g->stride_c; }
  k.align_a = ptr_align(g->A); k.align_b = ptr_align(g->B); k.align_c = ptr_align(g->C);
  k.align_bias = g->bias ? ptr_align(g->bias) : 0;

  gemm_entry *e = NULL, *victim = NULL;
  for (int i = 0; i < PC_GEMM_CACHE && !e; i++)
    if (h->cache[i].used && memcmp(&h->cache[i].key, &k, sizeof k) == 0) e = &h->cache[i];
  for (int i = 0; i < PC_GEMM_CACHE && !e; i++) { // replace an empty slot, else the least recently used one
    gemm_entry *c = &h->cache[i];
    if (!c->used) { victim = c; break; }
    if (!victim || c->last_use < victim->last_use) victim = c;
  }
  if (e) {
    h->hits++;
  } else {
    h->misses++;
    entry_release(victim);
    pose_status st = entry_build(h, &k, victim);
    if (st != POSE_OK) {
      entry_release(victim);
      return st;
    }
    e = victim;
  }
  e->last_use = ++h->clock;
  if (g->bias)
    LT(cublasLtMatmulDescSetAttribute(e->op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &g->bias, sizeof g->bias),
       "BIAS_POINTER");
  float alpha = g->alpha, beta = g->beta;
  LT(cublasLtMatmul(h->lt, e->op, &alpha, g->B, e->la, g->A, e->lb, &beta, g->C, e->lc, g->C, e->lc, &e->algo,
                    h->workspace, h->ws_bytes, s),
     "matmul");
  return POSE_OK;
}

// ---- column sums (bias gradients): each block owns 32 columns x 8 row-groups, partial sums in fixed order ----
template <typename T>
__global__ void k_colsum(const T *__restrict__ a, int64_t N, int64_t C, int64_t ld, float *__restrict__ out) {
  __shared__ float part[8][33];
  int64_t c = blockIdx.x * 32 + threadIdx.x;
  float acc = 0.0f;
  if (c < C)
    for (int64_t n = threadIdx.y; n < N; n += 8) acc += pc_ld(a, n * ld + c);
  part[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && c < C) {
    float s = 0.0f;
    for (int i = 0; i < 8; i++) s += part[i][threadIdx.x];
    out[c] += s;
  }
}

extern "C" pose_status pose_cuda_colsum_add(const void *a, pose_dtype dt, int64_t N, int64_t C, int64_t ld,
                                            float *out, pose_cuda_stream s) {
  PC_DTYPE(dt, "colsum");
  PC_REQUIRE(N >= 0 && C >= 0 && ld >= C, "colsum: bad sizes N=%lld C=%lld ld=%lld", (long long)N, (long long)C,
             (long long)ld);
  if (N == 0 || C == 0) return POSE_OK;
  dim3 th(32, 8), gr((unsigned)((C + 31) / 32));
  if (dt == POSE_F32) k_colsum<<<gr, th, 0, s>>>((const float *)a, N, C, ld, out);
  else k_colsum<<<gr, th, 0, s>>>((const bf16 *)a, N, C, ld, out);
  PC_LAUNCHED("colsum");
  return POSE_OK;
}
