#include "build_info.h"

int pose_build_has_cuda(void) {
#ifdef POSE_HAVE_CUDA
  return 1;
#else
  return 0;
#endif
}

int pose_build_has_nccl(void) {
#ifdef POSE_HAVE_NCCL
  return 1;
#else
  return 0;
#endif
}

const char *pose_build_features(void) {
  return "openblas openmp hdf5 cjson sentencepiece pcre2"
#ifdef POSE_HAVE_CUDA
         " cuda cublas"
#endif
#ifdef POSE_HAVE_NCCL
         " nccl"
#endif
      ;
}
