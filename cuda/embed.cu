// Token embedding lookup and its backward. The deterministic backward sorts (id, row) pairs with CUB's radix sort
// (stable, so each id's rows stay in order of n), then one block per run of equal ids sums that run's gradient rows
// in order and adds the sum to the id's row of dE: the same bits whatever the launch configuration.
#include <cub/device/device_radix_sort.cuh>

#include "common.cuh"

template <typename T>
__global__ void k_embed_fwd(const T *__restrict__ E, const int64_t *__restrict__ ids, int64_t N, int64_t D,
                            int64_t V, T *__restrict__ y) {
  int64_t total = N * D;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
    int64_t n = i / D, c = i - n * D, id = ids[n];
    pc_st(y, i, (id >= 0 && id < V) ? pc_ld(E, id * D + c) : __int_as_float(0x7fc00000));
  }
}

template <typename T>
__global__ void k_embed_bwd_atomic(const int64_t *__restrict__ ids, const T *__restrict__ dy, int64_t N, int64_t D,
                                   int64_t V, int64_t skip, float *__restrict__ dE) {
  int64_t total = N * D;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
    int64_t n = i / D, c = i - n * D, id = ids[n];
    if (id < 0 || id >= V || id == skip) continue;
    atomicAdd(dE + id * D + c, pc_ld(dy, i));
  }
}

// Block b looks at sorted slot b; only the first slot of a run does work.
template <typename T>
__global__ void k_embed_bwd_runs(const int64_t *__restrict__ keys, const int64_t *__restrict__ rows,
                                 const T *__restrict__ dy, int64_t N, int64_t D, int64_t V, int64_t skip,
                                 float *__restrict__ dE) {
  int64_t i = blockIdx.x;
  int64_t id = keys[i];
  if (i > 0 && keys[i - 1] == id) return;
  if (id < 0 || id >= V || id == skip) return;
  int64_t end = i + 1;
  while (end < N && keys[end] == id) end++;
  for (int64_t c = threadIdx.x; c < D; c += blockDim.x) {
    float s = 0.0f;
    for (int64_t j = i; j < end; j++) s += pc_ld(dy, rows[j] * D + c);
    dE[id * D + c] += s;
  }
}

__global__ void k_iota(int64_t *__restrict__ a, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    a[i] = i;
}

extern "C" pose_status pose_cuda_embed_fwd(const void *E, pose_dtype dt, const int64_t *ids, int64_t N, int64_t D,
                                           int64_t V, void *y, pose_cuda_stream s) {
  PC_DTYPE(dt, "embed_fwd");
  PC_REQUIRE(N >= 0 && D > 0 && V > 0, "embed_fwd: bad sizes N=%lld D=%lld V=%lld", (long long)N, (long long)D,
             (long long)V);
  if (N == 0) return POSE_OK;
  PC_REQUIRE(E && ids && y, "embed_fwd: NULL buffer");
  const int th = 256;
  unsigned gr = pc_grid(N * D, th);
  if (dt == POSE_F32) k_embed_fwd<<<gr, th, 0, s>>>((const float *)E, ids, N, D, V, (float *)y);
  else k_embed_fwd<<<gr, th, 0, s>>>((const bf16 *)E, ids, N, D, V, (bf16 *)y);
  PC_LAUNCHED("embed_fwd");
  return POSE_OK;
}

extern "C" pose_status pose_cuda_embed_bwd(const int64_t *ids, const void *dy, pose_dtype dt, int64_t N, int64_t D,
                                           int64_t V, int64_t skip_id, float *dE, int deterministic,
                                           pose_cuda_stream s) {
  PC_DTYPE(dt, "embed_bwd");
  PC_REQUIRE(N >= 0 && D > 0 && V > 0, "embed_bwd: bad sizes N=%lld D=%lld V=%lld", (long long)N, (long long)D,
             (long long)V);
  PC_REQUIRE(N < ((int64_t)1 << 31), "embed_bwd: %lld rows exceed the sort's range", (long long)N);
  if (N == 0) return POSE_OK;
  PC_REQUIRE(ids && dy && dE, "embed_bwd: NULL buffer");
  const int th = 256;
  if (!deterministic) {
    unsigned gr = pc_grid(N * D, th);
    if (dt == POSE_F32) k_embed_bwd_atomic<<<gr, th, 0, s>>>(ids, (const float *)dy, N, D, V, skip_id, dE);
    else k_embed_bwd_atomic<<<gr, th, 0, s>>>(ids, (const bf16 *)dy, N, D, V, skip_id, dE);
    PC_LAUNCHED("embed_bwd");
    return POSE_OK;
  }
  // scratch: rows_in, keys_out, rows_out, then CUB's temporary storage
  size_t temp = 0;
  int n = (int)N;
  PC_CU(cub::DeviceRadixSort::SortPairs(NULL, temp, ids, (int64_t *)NULL, (const int64_t *)NULL, (int64_t *)NULL, n,
                                        0, 64, s),
        "radix sort sizing");
  size_t arr = ((size_t)N * sizeof(int64_t) + 255) & ~(size_t)255;
  char *buf = NULL;
  POSE_TRY(pc_scratch_alloc((void **)&buf, 3 * arr + temp, s));
  int64_t *rows_in = (int64_t *)buf, *keys_out = (int64_t *)(buf + arr), *rows_out = (int64_t *)(buf + 2 * arr);
  k_iota<<<pc_grid(N, th), th, 0, s>>>(rows_in, N);
  cudaError_t e = cudaGetLastError();
  if (e == cudaSuccess)
    e = cub::DeviceRadixSort::SortPairs(buf + 3 * arr, temp, ids, keys_out, rows_in, rows_out, n, 0, 64, s);
  if (e == cudaSuccess) {
    int tb = D >= 256 ? 256 : 128;
    if (dt == POSE_F32)
      k_embed_bwd_runs<<<(unsigned)N, tb, 0, s>>>(keys_out, rows_out, (const float *)dy, N, D, V, skip_id, dE);
    else
      k_embed_bwd_runs<<<(unsigned)N, tb, 0, s>>>(keys_out, rows_out, (const bf16 *)dy, N, D, V, skip_id, dE);
    e = cudaGetLastError();
  }
  pc_scratch_free(buf, s);
  if (e != cudaSuccess) return pose_cuda_fail(e, "embed_bwd (sorted)");
  return POSE_OK;
}
