/* What this build of libpose contains, for `pose info` and for tests that skip without a feature. */
#ifndef POSE_BUILD_INFO_H
#define POSE_BUILD_INFO_H
int pose_build_has_cuda(void);
int pose_build_has_nccl(void);
/* One line: "cuda nccl openblas hdf5 ..." */
const char *pose_build_features(void);
#endif
