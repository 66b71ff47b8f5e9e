#include "device.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef POSE_HAVE_CUDA
const pose_backend *pose_cuda_backend_probe(const char **why); /* cuda/backend.cu */
#endif

const pose_backend *pose_cuda_backend(const char **why) {
#ifdef POSE_HAVE_CUDA
  return pose_cuda_backend_probe(why);
#else
  if (why) *why = "pose was built without the CUDA backend";
  return NULL;
#endif
}

pose_status pose_device_parse(const char *name, pose_device *out) {
  if (strcmp(name, "cpu") == 0) { *out = POSE_DEVICE_CPU; return POSE_OK; }
  int index = 0;
  if (strcmp(name, "cuda") == 0) index = 0;
  else if (strncmp(name, "cuda:", 5) == 0) {
    char *end;
    long v = strtol(name + 5, &end, 10);
    if (*end || end == name + 5 || v < 0 || v > 1024)
      return pose_error(POSE_EINVAL, "bad device name '%s' (expected cpu, cuda or cuda:N)", name);
    index = (int)v;
  } else {
    return pose_error(POSE_EINVAL, "unknown device '%s' (expected cpu, cuda or cuda:N)", name);
  }
  const char *why = NULL;
  const pose_backend *be = pose_cuda_backend(&why);
  if (!be) return pose_error(POSE_EUNSUPPORTED, "device '%s' is not available: %s", name, why ? why : "no GPU");
  int n = be->device_count();
  if (index >= n) return pose_error(POSE_EINVAL, "device '%s' does not exist (%d CUDA device(s))", name, n);
  out->type = POSE_CUDA;
  out->index = index;
  return POSE_OK;
}

void pose_device_format(pose_device d, char *buf, size_t len) {
  if (d.type == POSE_CPU) snprintf(buf, len, "cpu");
  else snprintf(buf, len, "cuda:%d", d.index);
}

pose_status pose_device_default(pose_device *out) {
  const char *env = getenv("POSE_DEVICE");
  if (env && *env) return pose_device_parse(env, out);
  const pose_backend *be = pose_cuda_backend(NULL);
  if (be && be->device_count() > 0) { out->type = POSE_CUDA; out->index = 0; }
  else *out = POSE_DEVICE_CPU;
  return POSE_OK;
}

int pose_device_equal(pose_device a, pose_device b) { return a.type == b.type && a.index == b.index; }
