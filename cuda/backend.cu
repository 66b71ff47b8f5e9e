// The CUDA backend's memory and copy half of pose_backend (core/device.h). Kernels live in their own files.
// Probing happens once; a build with CUDA on a machine without a usable GPU falls back to the CPU with one
// notice on stderr.
#include <cuda_runtime.h>
#include <pthread.h>
#include <stdio.h>

extern "C" {
#include "device.h"
}

static pose_status cuda_fail(cudaError_t e, const char *what) {
  return pose_error(POSE_EDEVICE, "CUDA %s failed: %s", what, cudaGetErrorString(e));
}

#define CU(expr, what)                        \
  do {                                        \
    cudaError_t e_ = (expr);                  \
    if (e_ != cudaSuccess) return cuda_fail(e_, what); \
  } while (0)

static int g_count = -1;
static const char *g_why = "not probed";

static int cu_device_count(void) { return g_count > 0 ? g_count : 0; }

static pose_status cu_alloc(int dev, size_t bytes, void **out) {
  CU(cudaSetDevice(dev), "cudaSetDevice");
  cudaError_t e = cudaMalloc(out, bytes);
  if (e != cudaSuccess) {
    size_t fr = 0, tot = 0;
    cudaMemGetInfo(&fr, &tot);
    return pose_error(POSE_ENOMEM, "cuda:%d out of memory allocating %.2f GiB (%.2f GiB free of %.2f)", dev,
                      bytes / 1073741824.0, fr / 1073741824.0, tot / 1073741824.0);
  }
  return POSE_OK;
}

static void cu_free(int dev, void *p) {
  cudaSetDevice(dev);
  cudaFree(p);
}

static pose_status cu_h2d(int dev, void *dst, const void *src, size_t n) {
  CU(cudaSetDevice(dev), "cudaSetDevice");
  CU(cudaMemcpy(dst, src, n, cudaMemcpyHostToDevice), "copy to device");
  return POSE_OK;
}

static pose_status cu_d2h(int dev, void *dst, const void *src, size_t n) {
  CU(cudaSetDevice(dev), "cudaSetDevice");
  CU(cudaMemcpy(dst, src, n, cudaMemcpyDeviceToHost), "copy to host");
  return POSE_OK;
}

static pose_status cu_d2d(int ddev, void *dst, int sdev, const void *src, size_t n) {
  if (ddev == sdev) {
    CU(cudaSetDevice(ddev), "cudaSetDevice");
    CU(cudaMemcpy(dst, src, n, cudaMemcpyDeviceToDevice), "device copy");
  } else {
    CU(cudaMemcpyPeer(dst, ddev, src, sdev, n), "peer copy");
  }
  return POSE_OK;
}

static pose_status cu_memset0(int dev, void *p, size_t n) {
  CU(cudaSetDevice(dev), "cudaSetDevice");
  CU(cudaMemset(p, 0, n), "memset");
  return POSE_OK;
}

static pose_status cu_mem_info(int dev, size_t *fr, size_t *tot) {
  CU(cudaSetDevice(dev), "cudaSetDevice");
  CU(cudaMemGetInfo(fr, tot), "cudaMemGetInfo");
  return POSE_OK;
}

static pose_status cu_name(int dev, char *buf, size_t len) {
  cudaDeviceProp p;
  CU(cudaGetDeviceProperties(&p, dev), "cudaGetDeviceProperties");
  snprintf(buf, len, "%s (sm_%d%d, %d SMs)", p.name, p.major, p.minor, p.multiProcessorCount);
  return POSE_OK;
}

static const pose_backend g_backend = {"cuda",     cu_device_count, cu_alloc,    cu_free,     cu_h2d,
                                       cu_d2h,     cu_d2d,          cu_memset0,  cu_mem_info, cu_name};

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static void probe(void) {
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess || n == 0) {
    g_count = 0;
    g_why = e != cudaSuccess ? cudaGetErrorString(e) : "no CUDA device visible";
    fprintf(stderr, "pose: CUDA backend built but no GPU is usable (%s); using the CPU\n", g_why);
    cudaGetLastError();
    return;
  }
  g_count = n;
  g_why = NULL;
}

extern "C" const pose_backend *pose_cuda_backend_probe(const char **why) {
  pthread_once(&g_once, probe);
  if (g_count <= 0) {
    if (why) *why = g_why;
    return NULL;
  }
  return &g_backend;
}
