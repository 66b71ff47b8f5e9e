/* Tensors: contiguous, row-major, up to 4 dimensions, on the CPU or one CUDA device. Views (reshape, slices along
 * the first axis) share a reference-counted storage with their parent, so a view may outlive the tensor it came
 * from. The struct is visible to the library; programs embedding pose and Lua only hold pointers. */
#ifndef POSE_TENSOR_H
#define POSE_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#include "device.h"
#include "dtype.h"
#include "status.h"

#define POSE_MAX_DIMS 4

typedef struct pose_storage pose_storage;

typedef struct pose_tensor {
  pose_dtype dtype;
  pose_device device;
  int ndim;
  int64_t shape[POSE_MAX_DIMS];
  int64_t numel;
  pose_storage *storage;
  size_t offset; /* bytes from the storage start */
} pose_tensor;

/* New tensor filled with zeros. ndim 0 is a scalar (numel 1). */
pose_status pose_tensor_zeros(pose_tensor **out, pose_dtype dt, pose_device dev, int ndim, const int64_t *shape);
/* New CPU tensor holding a copy of `data` (n = product of shape elements of dtype dt). */
pose_status pose_tensor_from_data(pose_tensor **out, pose_dtype dt, int ndim, const int64_t *shape, const void *data);
void pose_tensor_free(pose_tensor *t);

/* Host pointer of a CPU tensor's first element (NULL for device tensors: use pose_tensor_device_ptr). */
void *pose_tensor_data(const pose_tensor *t);
/* Raw pointer of the first element on its own device. */
void *pose_tensor_device_ptr(const pose_tensor *t);
size_t pose_tensor_nbytes(const pose_tensor *t);

/* A copy converted to dtype `dt` on device `dev` (round-to-nearest-even for bf16/f16). */
pose_status pose_tensor_to(const pose_tensor *src, pose_dtype dt, pose_device dev, pose_tensor **out);
/* dst <- src element-wise, converting dtype and crossing devices; shapes must have the same numel. */
pose_status pose_tensor_copy(pose_tensor *dst, const pose_tensor *src);
pose_status pose_tensor_fill(pose_tensor *t, double value);

/* View with a new shape (one dimension may be -1); numel must agree. */
pose_status pose_tensor_reshape(const pose_tensor *t, int ndim, const int64_t *shape, pose_tensor **out);
/* View of rows [start, stop) of the first axis. */
pose_status pose_tensor_slice(const pose_tensor *t, int64_t start, int64_t stop, pose_tensor **out);

/* Element access by multi-index (ndim entries); values pass through double (exact for all but huge i64). */
pose_status pose_tensor_get(const pose_tensor *t, const int64_t *index, double *out);
pose_status pose_tensor_set(pose_tensor *t, const int64_t *index, double value);
pose_status pose_tensor_get_i64(const pose_tensor *t, const int64_t *index, int64_t *out);

/* Random fill from (seed, stream): element k gets the k-th draw of that stream, on any device. */
pose_status pose_tensor_rand_normal(pose_tensor *t, uint64_t seed, uint64_t stream, double mean, double std);
pose_status pose_tensor_rand_uniform(pose_tensor *t, uint64_t seed, uint64_t stream, double lo, double hi);

int pose_tensor_same_shape(const pose_tensor *a, const pose_tensor *b);
/* "[2, 3]" for messages */
void pose_tensor_shape_str(const pose_tensor *t, char *buf, size_t len);

#endif
