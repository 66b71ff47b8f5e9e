// Hopper (sm_90a) building blocks: warpgroup MMAs (wgmma) reading their operands from shared memory through
// 64-bit matrix descriptors, and the 128-byte swizzled shared-memory layout those descriptors describe.
//
// Layout (the "128B swizzle" of the PTX ISA): a tile of ROWS x COLS bf16 is stored as COLS/64 column blocks, each
// ROWS x 64 elements = ROWS rows of 128 bytes; within a block, the 16-byte chunk c of row r sits at chunk position
// c ^ (r % 8). Eight rows form a 1024-byte swizzle atom; blocks must start 1024-byte aligned (base offset 0).
//
// Descriptors (bits 0-13 start address >> 4, 16-29 leading byte offset >> 4, 32-45 stride byte offset >> 4,
// 62-63 swizzle mode, 1 = 128B):
//  - K-major operand (the contraction index runs along the 128-byte rows: Q and K in S = Q K^T): the stride byte
//    offset is the distance between 8-row groups (1024 in a block); the leading offset is unused. A k16 step
//    within a column block moves the start address by 32 bytes; the next block starts ROWS*128 bytes later.
//  - MN-major operand (the output index runs along the rows: V in O = P V, contraction over its rows): the
//    leading byte offset is the distance between 64-column blocks (ROWS*128), the stride byte offset the distance
//    between 8-row groups along the contraction (1024); a k16 step moves the start by 16 rows = 2048 bytes.
// tests/gpu/test_attention.c checks the kernels built on these against the CPU; cuda/NOTES.md records the runs.
#ifndef POSE_WGMMA_CUH
#define POSE_WGMMA_CUH

#include "attn_common.cuh"
#include "wgmma_ops.cuh"

__device__ __forceinline__ uint64_t wg_desc(uint32_t saddr, uint32_t lbo, uint32_t sbo) {
  return (uint64_t)((saddr & 0x3FFFF) >> 4) | ((uint64_t)((lbo & 0x3FFFF) >> 4) << 16) |
         ((uint64_t)((sbo & 0x3FFFF) >> 4) << 32) | (1ull << 62);
}

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
__device__ __forceinline__ void wg_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wg_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void wg_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
// ---- mbarriers and the tensor-memory-access (TMA) engine ----
// A "full" barrier of a pipeline stage completes when its expected bytes have landed (one arrive.expect_tx by the
// producer + the copies' complete_tx); an "empty" barrier when every consumer thread has arrived after its last read.
// Parity waits: the n-th completion of a barrier ends phase n; wait(parity n & 1) returns once it has.
__device__ __forceinline__ void mbar_init(uint32_t bar, int count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_init_fence() { asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory"); }
__device__ __forceinline__ void mbar_expect_tx(uint32_t bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint32_t bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
__device__ __forceinline__ void mbar_wait(uint32_t bar, int parity) {
  // labels are local to the { } scope, so the inlined copies do not clash
  asm volatile("{\n.reg .pred P1;\nLAB_WAIT:\n"
               "mbarrier.try_wait.parity.shared::cta.b64 P1, [%0], %1;\n"
               "@P1 bra DONE;\nbra LAB_WAIT;\nDONE:\n}\n" ::"r"(bar), "r"(parity) : "memory");
}
// One box of a 4-D tensor map (coordinates innermost first) into shared memory, completing on `bar`.
__device__ __forceinline__ void tma_load_4d(uint32_t dst, const void *tmap, int c0, int c1, int c2, int c3,
                                            uint32_t bar) {
  asm volatile("cp.async.bulk.tensor.4d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, "
               "%4, %5}], [%6];\n" ::"r"(dst), "l"(tmap), "r"(c0), "r"(c1), "r"(c2), "r"(c3), "r"(bar)
               : "memory");
}
// keep the compiler from moving accumulator reads/writes across an in-flight wgmma
template <int N>
__device__ __forceinline__ void wg_acc_fence(float *d) {
#pragma unroll
  for (int i = 0; i < N; i++) asm volatile("" : "+f"(d[i])::"memory");
}
#endif

#endif
