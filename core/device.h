/* Devices and the backend interface. "cpu" is always there; "cuda:N" exists when the library was built with the
 * CUDA backend and a GPU is visible at run time. Core code never calls CUDA directly: it goes through the
 * pose_backend table, which cuda/ fills in. */
#ifndef POSE_DEVICE_H
#define POSE_DEVICE_H

#include <stddef.h>

#include "status.h"

typedef enum { POSE_CPU = 0, POSE_CUDA = 1 } pose_device_type;
typedef struct {
  pose_device_type type;
  int index;
} pose_device;

#define POSE_DEVICE_CPU ((pose_device){POSE_CPU, 0})

/* Memory and copies on one accelerator family. Every function returns a status and sets the message. */
typedef struct pose_backend {
  const char *name;
  int (*device_count)(void);
  pose_status (*alloc)(int device, size_t bytes, void **out);
  void (*free)(int device, void *ptr);
  pose_status (*copy_h2d)(int device, void *dst, const void *src, size_t bytes);
  pose_status (*copy_d2h)(int device, void *dst, const void *src, size_t bytes);
  pose_status (*copy_d2d)(int dst_device, void *dst, int src_device, const void *src, size_t bytes);
  pose_status (*memset0)(int device, void *ptr, size_t bytes);
  pose_status (*mem_info)(int device, size_t *free_bytes, size_t *total_bytes);
  pose_status (*device_name)(int device, char *buf, size_t len);
} pose_backend;

/* The CUDA backend, or NULL when it was not built or no GPU is usable (with the reason in *why when non-NULL). */
const pose_backend *pose_cuda_backend(const char **why);

/* Parses "cpu", "cuda", "cuda:N"; checks that the device exists. */
pose_status pose_device_parse(const char *name, pose_device *out);
/* "cpu" or "cuda:N" */
void pose_device_format(pose_device d, char *buf, size_t len);
/* The default device: POSE_DEVICE env ("cpu", "cuda", "cuda:N") when set, else cuda:0 if usable, else cpu. */
pose_status pose_device_default(pose_device *out);
int pose_device_equal(pose_device a, pose_device b);

#endif
