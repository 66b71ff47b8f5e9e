// Building blocks of the flash-attention kernels: bf16 tensor-core MMAs (mma.sync m16n8k16, fp32 accumulation),
// ldmatrix fragment loads from shared memory, cp.async tile loads, and the two warp-level products every kernel is
// made of. A warp always owns 16 rows of its tile.
//
// Fragment layouts of m16n8k16 (lane = 4 * g + t, g = lane / 4, t = lane % 4):
//   A (16x16, row-major):  a0 = A[g][2t..2t+1], a1 = A[g+8][2t..], a2 = A[g][8+2t..], a3 = A[g+8][8+2t..]
//   B (16x8, "col"):       b0 = B[2t..2t+1][g],  b1 = B[8+2t..][g]
//   C (16x8):              c0,c1 = C[g][2t..2t+1], c2,c3 = C[g+8][2t..2t+1]
// The accumulator of one product is laid out like the A operand of the next (two n8 tiles = one k16 step), which
// is how P (or dS) goes from the softmax straight into the next MMA without shared memory.
//
// Hopper note: these are the sm_80 instructions (HMMA in SASS). The fast path on sm_90a is wgmma (a warpgroup of
// 4 warps, B and optionally A from shared memory, tiles loaded by TMA with mbarriers, FA3-style producer/consumer
// warp specialisation); warp_qk and warp_pv below are where that would replace the mma.sync loops.
#ifndef POSE_ATTN_COMMON_CUH
#define POSE_ATTN_COMMON_CUH

#include "common.cuh"

#define ATTN_THREADS 128
#define ATTN_LOG2E 1.4426950408889634f
#define ATTN_LN2 0.6931471805599453f

__device__ __forceinline__ uint32_t smem_u32(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

__device__ __forceinline__ void ldsm_x4(uint32_t *r, const void *p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(p)));
}

__device__ __forceinline__ void ldsm_x4_t(uint32_t *r, const void *p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_u32(p)));
}

__device__ __forceinline__ void mma16816(float *d, const uint32_t *a, uint32_t b0, uint32_t b1) {
  asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
               "{%0,%1,%2,%3};\n"
               : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
               : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *(uint32_t *)&v;
}

// 16 bytes global -> shared; when !pred the shared bytes are zero-filled and nothing is read.
__device__ __forceinline__ void cp_async16(void *dst, const void *src, bool pred) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(dst)), "l"(src), "r"(pred ? 16 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// Loads rows [r0, r0 + ROWS) of a [rows][D] bf16 matrix (rows `rstride` elements apart) into shared memory with a
// pitch of P elements; rows at or past `limit` are zero-filled.
template <int ROWS, int D, int P>
__device__ __forceinline__ void load_tile(bf16 *sm, const bf16 *g, int64_t rstride, int64_t r0, int64_t limit) {
  constexpr int CH = D / 8; // 16-byte chunks per row
  for (int i = threadIdx.x; i < ROWS * CH; i += ATTN_THREADS) {
    int r = i / CH, c = i % CH;
    int64_t row = r0 + r;
    bool ok = row < limit;
    cp_async16(sm + r * P + c * 8, ok ? g + row * rstride + c * 8 : g, ok);
  }
}

// acc[NT][4] = A(16 x D) . B(NT*8 x D)^T, A = 16 rows at sa, B = NT*8 rows at sb (both row-major, pitch P).
template <int NT, int D, int P>
__device__ __forceinline__ void warp_qk(float (*acc)[4], const bf16 *sa, const bf16 *sb) {
  int lane = threadIdx.x & 31, mi = lane >> 3, lr = lane & 7;
#pragma unroll
  for (int n = 0; n < NT; n++) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;
#pragma unroll
  for (int ks = 0; ks < D / 16; ks++) {
    uint32_t a[4];
    ldsm_x4(a, sa + (lr + (mi & 1) * 8) * P + ks * 16 + (mi >> 1) * 8);
#pragma unroll
    for (int np = 0; np < NT / 2; np++) {
      uint32_t b[4]; // b0,b1 of n-tile 2np, then of 2np+1
      ldsm_x4(b, sb + (np * 16 + lr + (mi >> 1) * 8) * P + ks * 16 + (mi & 1) * 8);
      mma16816(acc[2 * np], a, b[0], b[1]);
      mma16816(acc[2 * np + 1], a, b[2], b[3]);
    }
  }
}

// acc[D/8][4] += P(16 x KT*8) . B(KT*8 x D): P from registers (an accumulator of warp_qk), B row-major at sb.
template <int KT, int D, int P>
__device__ __forceinline__ void warp_pv(float (*acc)[4], const float (*p)[4], const bf16 *sb) {
  int lane = threadIdx.x & 31, mi = lane >> 3, lr = lane & 7;
#pragma unroll
  for (int kk = 0; kk < KT / 2; kk++) {
    uint32_t a[4];
    a[0] = pack_bf16(p[2 * kk][0], p[2 * kk][1]);
    a[1] = pack_bf16(p[2 * kk][2], p[2 * kk][3]);
    a[2] = pack_bf16(p[2 * kk + 1][0], p[2 * kk + 1][1]);
    a[3] = pack_bf16(p[2 * kk + 1][2], p[2 * kk + 1][3]);
#pragma unroll
    for (int dp = 0; dp < D / 16; dp++) {
      uint32_t b[4]; // b0,b1 of d-tile 2dp, then of 2dp+1
      ldsm_x4_t(b, sb + (kk * 16 + lr + (mi & 1) * 8) * P + dp * 16 + (mi >> 1) * 8);
      mma16816(acc[2 * dp], a, b[0], b[1]);
      mma16816(acc[2 * dp + 1], a, b[2], b[3]);
    }
  }
}

// Multi-row-block versions: the warp owns MB blocks of 16 rows (A at sa + mb*16*P, P in p[mb]); each B fragment
// is loaded from shared memory once and used for MB products, which cuts the shared-memory traffic per MMA (the
// limit of the MB = 1 kernels, where every warp reloads every B fragment for only 2 MMAs).
template <int MB, int NT, int D, int P>
__device__ __forceinline__ void warp_qk_mb(float (*acc)[NT][4], const bf16 *sa, const bf16 *sb) {
  int lane = threadIdx.x & 31, mi = lane >> 3, lr = lane & 7;
#pragma unroll
  for (int m = 0; m < MB; m++)
#pragma unroll
    for (int n = 0; n < NT; n++) acc[m][n][0] = acc[m][n][1] = acc[m][n][2] = acc[m][n][3] = 0.0f;
#pragma unroll
  for (int ks = 0; ks < D / 16; ks++) {
    uint32_t a[MB][4];
#pragma unroll
    for (int m = 0; m < MB; m++) ldsm_x4(a[m], sa + (m * 16 + lr + (mi & 1) * 8) * P + ks * 16 + (mi >> 1) * 8);
#pragma unroll
    for (int np = 0; np < NT / 2; np++) {
      uint32_t b[4];
      ldsm_x4(b, sb + (np * 16 + lr + (mi >> 1) * 8) * P + ks * 16 + (mi & 1) * 8);
#pragma unroll
      for (int m = 0; m < MB; m++) {
        mma16816(acc[m][2 * np], a[m], b[0], b[1]);
        mma16816(acc[m][2 * np + 1], a[m], b[2], b[3]);
      }
    }
  }
}

template <int MB, int KT, int D, int P>
__device__ __forceinline__ void warp_pv_mb(float (*acc)[D / 8][4], const float (*p)[KT][4], const bf16 *sb) {
  int lane = threadIdx.x & 31, mi = lane >> 3, lr = lane & 7;
#pragma unroll
  for (int kk = 0; kk < KT / 2; kk++) {
    uint32_t a[MB][4];
#pragma unroll
    for (int m = 0; m < MB; m++) {
      a[m][0] = pack_bf16(p[m][2 * kk][0], p[m][2 * kk][1]);
      a[m][1] = pack_bf16(p[m][2 * kk][2], p[m][2 * kk][3]);
      a[m][2] = pack_bf16(p[m][2 * kk + 1][0], p[m][2 * kk + 1][1]);
      a[m][3] = pack_bf16(p[m][2 * kk + 1][2], p[m][2 * kk + 1][3]);
    }
#pragma unroll
    for (int dp = 0; dp < D / 16; dp++) {
      uint32_t b[4];
      ldsm_x4_t(b, sb + (kk * 16 + lr + (mi & 1) * 8) * P + dp * 16 + (mi >> 1) * 8);
#pragma unroll
      for (int m = 0; m < MB; m++) {
        mma16816(acc[m][2 * dp], a[m], b[0], b[1]);
        mma16816(acc[m][2 * dp + 1], a[m], b[2], b[3]);
      }
    }
  }
}

// A fragments kept in registers: operands that stay fixed for a whole kernel (Q and dO rows in dQ, K and V rows in
// dK/dV) loaded from shared memory once instead of once per tile. The backward kernels are limited by shared-memory
// bandwidth (ldmatrix); this trades it for registers, which paid at D = 64 and cost occupancy at D = 128 (run 4).
template <int D, int P>
__device__ __forceinline__ void load_afrags(uint32_t (*a)[4], const bf16 *sa) {
  int lane = threadIdx.x & 31, mi = lane >> 3, lr = lane & 7;
#pragma unroll
  for (int ks = 0; ks < D / 16; ks++) ldsm_x4(a[ks], sa + (lr + (mi & 1) * 8) * P + ks * 16 + (mi >> 1) * 8);
}

template <int NT, int D, int P>
__device__ __forceinline__ void warp_qk_areg(float (*acc)[4], const uint32_t (*a)[4], const bf16 *sb) {
  int lane = threadIdx.x & 31, mi = lane >> 3, lr = lane & 7;
#pragma unroll
  for (int n = 0; n < NT; n++) acc[n][0] = acc[n][1] = acc[n][2] = acc[n][3] = 0.0f;
#pragma unroll
  for (int ks = 0; ks < D / 16; ks++)
#pragma unroll
    for (int np = 0; np < NT / 2; np++) {
      uint32_t b[4];
      ldsm_x4(b, sb + (np * 16 + lr + (mi >> 1) * 8) * P + ks * 16 + (mi & 1) * 8);
      mma16816(acc[2 * np], a[ks], b[0], b[1]);
      mma16816(acc[2 * np + 1], a[ks], b[2], b[3]);
    }
}

// 2^x on the special-function unit (what FlashAttention uses via fast math): relative error ~2^-22, far below the
// bf16 rounding of P; exp2(-inf) = +0 as the masks need. exp2f() without fast math adds denormal handling.
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// 32-bit index form of attn_visible for the inner loops (lengths are checked to fit on the host): the 64-bit
// compares cost as much ALU time as the softmax itself in the backward.
__device__ __forceinline__ bool attn_visible32(int qi, int kj, int Tq, int Tk, int q_off, int window) {
  int qa = qi + q_off;
  return qi < Tq && kj < Tk && kj <= qa && (window <= 0 || qa - kj < window);
}

// Is key `kj` visible to query `qi` (indices within the row; q_off shifts queries)?
__device__ __forceinline__ bool attn_visible(int64_t qi, int64_t kj, int64_t Tq, int64_t Tk, int64_t q_off,
                                             int64_t window) {
  int64_t qa = qi + q_off;
  return qi < Tq && kj < Tk && kj <= qa && (window <= 0 || qa - kj < window);
}

struct attn_params {
  const bf16 *q, *k, *v, *o, *dout;
  bf16 *out; // o for the forward, dq / dk for the backward kernels
  bf16 *out2; // dv
  float *lse;
  const float *lse_in, *dsum;
  int64_t Tq, Tk, q_off, Hq, Hkv, window;
  int64_t q_bstride, q_rstride, kv_bstride, kv_rstride;
  float scale;
};

// The sm_90a (wgmma) forward of attn_fwd_wg.cu: usable for this head dim on this device and build?
int pc_attn_fwd_wg_usable(int64_t D);
cudaError_t pc_attn_fwd_wg(const attn_params &p, int64_t B, int64_t D, cudaStream_t s);
// The sm_90a backward of attn_bwd_wg.cu (dK/dV and dQ; p.dsum computed first).
int pc_attn_bwd_wg_usable(int64_t D);
cudaError_t pc_attn_bwd_wg(const attn_params &p, int64_t B, int64_t D, bf16 *dq, bf16 *dk, bf16 *dv, cudaStream_t s);

#endif
