#include "tensor.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"

struct pose_storage {
  void *ptr;
  size_t bytes;
  pose_device device;
  int refcount;
};

static pose_status storage_new(pose_device dev, size_t bytes, pose_storage **out) {
  pose_storage *s = calloc(1, sizeof *s);
  if (!s) return pose_error(POSE_ENOMEM, "out of memory allocating a tensor header");
  s->bytes = bytes;
  s->device = dev;
  s->refcount = 1;
  size_t alloc = bytes ? bytes : 1;
  if (dev.type == POSE_CPU) {
    /* 64-byte alignment for vector loads; calloc-like zeroing so new tensors read as zeros */
    size_t rounded = (alloc + 63) & ~(size_t)63;
    s->ptr = aligned_alloc(64, rounded);
    if (!s->ptr) { free(s); return pose_error(POSE_ENOMEM, "out of memory allocating %zu bytes", bytes); }
    memset(s->ptr, 0, rounded);
  } else {
    const pose_backend *be = pose_cuda_backend(NULL);
    if (!be) { free(s); return pose_error(POSE_EUNSUPPORTED, "no CUDA backend for a cuda tensor"); }
    pose_status st = be->alloc(dev.index, alloc, &s->ptr);
    if (st == POSE_OK) st = be->memset0(dev.index, s->ptr, alloc);
    if (st != POSE_OK) { free(s); return st; }
  }
  *out = s;
  return POSE_OK;
}

static void storage_release(pose_storage *s) {
  if (!s || --s->refcount > 0) return;
  if (s->device.type == POSE_CPU) free(s->ptr);
  else {
    const pose_backend *be = pose_cuda_backend(NULL);
    if (be) be->free(s->device.index, s->ptr);
  }
  free(s);
}

static pose_status check_shape(int ndim, const int64_t *shape, int64_t *numel) {
  if (ndim < 0 || ndim > POSE_MAX_DIMS)
    return pose_error(POSE_EINVAL, "tensors have 0 to %d dimensions, got %d", POSE_MAX_DIMS, ndim);
  int64_t n = 1;
  for (int i = 0; i < ndim; i++) {
    if (shape[i] < 0) return pose_error(POSE_EINVAL, "negative size %lld in dimension %d", (long long)shape[i], i + 1);
    if (shape[i] && n > INT64_MAX / 8 / shape[i]) return pose_error(POSE_EINVAL, "tensor too large");
    n *= shape[i];
  }
  *numel = n;
  return POSE_OK;
}

pose_status pose_tensor_zeros(pose_tensor **out, pose_dtype dt, pose_device dev, int ndim, const int64_t *shape) {
  int64_t n = 0;
  if ((unsigned)dt >= POSE_DTYPE_COUNT) return pose_error(POSE_EINVAL, "unknown dtype %d", (int)dt);
  POSE_TRY(check_shape(ndim, shape, &n));
  pose_tensor *t = calloc(1, sizeof *t);
  if (!t) return pose_error(POSE_ENOMEM, "out of memory");
  t->dtype = dt;
  t->device = dev;
  t->ndim = ndim;
  for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
  t->numel = n;
  pose_status st = storage_new(dev, (size_t)n * pose_dtype_size(dt), &t->storage);
  if (st != POSE_OK) { free(t); return st; }
  *out = t;
  return POSE_OK;
}

pose_status pose_tensor_from_data(pose_tensor **out, pose_dtype dt, int ndim, const int64_t *shape, const void *data) {
  POSE_TRY(pose_tensor_zeros(out, dt, POSE_DEVICE_CPU, ndim, shape));
  memcpy(pose_tensor_data(*out), data, pose_tensor_nbytes(*out));
  return POSE_OK;
}

void pose_tensor_free(pose_tensor *t) {
  if (!t) return;
  storage_release(t->storage);
  free(t);
}

void *pose_tensor_device_ptr(const pose_tensor *t) { return (char *)t->storage->ptr + t->offset; }

void *pose_tensor_data(const pose_tensor *t) {
  return t->device.type == POSE_CPU ? pose_tensor_device_ptr(t) : NULL;
}

size_t pose_tensor_nbytes(const pose_tensor *t) { return (size_t)t->numel * pose_dtype_size(t->dtype); }

static pose_status view_of(const pose_tensor *t, pose_tensor **out) {
  pose_tensor *v = malloc(sizeof *v);
  if (!v) return pose_error(POSE_ENOMEM, "out of memory");
  *v = *t;
  v->storage->refcount++;
  *out = v;
  return POSE_OK;
}

pose_status pose_tensor_copy(pose_tensor *dst, const pose_tensor *src) {
  if (dst->numel != src->numel) {
    char a[64], b[64];
    pose_tensor_shape_str(dst, a, sizeof a);
    pose_tensor_shape_str(src, b, sizeof b);
    return pose_error(POSE_EINVAL, "copy between tensors of %lld and %lld elements (%s <- %s)",
                      (long long)dst->numel, (long long)src->numel, a, b);
  }
  size_t n = (size_t)src->numel;
  if (dst->device.type == POSE_CPU && src->device.type == POSE_CPU) {
    pose_convert(pose_tensor_data(dst), dst->dtype, pose_tensor_data(src), src->dtype, n);
    return POSE_OK;
  }
  const pose_backend *be = pose_cuda_backend(NULL);
  if (!be) return pose_error(POSE_EUNSUPPORTED, "no CUDA backend");
  if (src->dtype == dst->dtype) { /* raw copy */
    size_t bytes = pose_tensor_nbytes(src);
    if (src->device.type == POSE_CPU) return be->copy_h2d(dst->device.index, pose_tensor_device_ptr(dst), pose_tensor_data(src), bytes);
    if (dst->device.type == POSE_CPU) return be->copy_d2h(src->device.index, pose_tensor_data(dst), pose_tensor_device_ptr(src), bytes);
    return be->copy_d2d(dst->device.index, pose_tensor_device_ptr(dst), src->device.index, pose_tensor_device_ptr(src), bytes);
  }
  /* dtype change across or on devices: stage through host memory, where the conversion rules live */
  pose_tensor *h_src = NULL, *h_dst = NULL;
  pose_status st = pose_tensor_zeros(&h_src, src->dtype, POSE_DEVICE_CPU, src->ndim, src->shape);
  if (st == POSE_OK) st = pose_tensor_copy(h_src, src);
  if (st == POSE_OK) st = pose_tensor_zeros(&h_dst, dst->dtype, POSE_DEVICE_CPU, dst->ndim, dst->shape);
  if (st == POSE_OK) {
    pose_convert(pose_tensor_data(h_dst), dst->dtype, pose_tensor_data(h_src), src->dtype, n);
    st = pose_tensor_copy(dst, h_dst);
  }
  pose_tensor_free(h_src);
  pose_tensor_free(h_dst);
  return st;
}

pose_status pose_tensor_to(const pose_tensor *src, pose_dtype dt, pose_device dev, pose_tensor **out) {
  POSE_TRY(pose_tensor_zeros(out, dt, dev, src->ndim, src->shape));
  pose_status st = pose_tensor_copy(*out, src);
  if (st != POSE_OK) { pose_tensor_free(*out); *out = NULL; }
  return st;
}

/* Runs `fill` on a host staging tensor when t lives on a device, then copies it over. */
typedef void (*host_fill_fn)(pose_tensor *host, const void *arg);
static pose_status fill_via_host(pose_tensor *t, host_fill_fn fn, const void *arg) {
  if (t->device.type == POSE_CPU) { fn(t, arg); return POSE_OK; }
  pose_tensor *h;
  POSE_TRY(pose_tensor_zeros(&h, t->dtype, POSE_DEVICE_CPU, t->ndim, t->shape));
  fn(h, arg);
  pose_status st = pose_tensor_copy(t, h);
  pose_tensor_free(h);
  return st;
}

static void store_f32(pose_tensor *t, int64_t i, float v) {
  pose_convert((char *)pose_tensor_data(t) + (size_t)i * pose_dtype_size(t->dtype), t->dtype, &v, POSE_F32, 1);
}

static void fill_const(pose_tensor *t, const void *arg) {
  double v = *(const double *)arg;
  if (t->dtype == POSE_I64) {
    for (int64_t i = 0; i < t->numel; i++) ((int64_t *)pose_tensor_data(t))[i] = (int64_t)v;
  } else if (t->dtype == POSE_I32) {
    for (int64_t i = 0; i < t->numel; i++) ((int32_t *)pose_tensor_data(t))[i] = (int32_t)v;
  } else {
    for (int64_t i = 0; i < t->numel; i++) store_f32(t, i, (float)v);
  }
}

pose_status pose_tensor_fill(pose_tensor *t, double value) { return fill_via_host(t, fill_const, &value); }

struct rand_arg { uint64_t seed, stream; double a, b; int normal; };
static void fill_rand(pose_tensor *t, const void *argp) {
  const struct rand_arg *a = argp;
  pose_rng r;
  pose_rng_init(&r, a->seed, a->stream);
  for (int64_t i = 0; i < t->numel; i++) {
    double v = a->normal ? a->a + a->b * pose_rng_normal(&r) : a->a + (a->b - a->a) * pose_rng_uniform(&r);
    if (t->dtype == POSE_I32) ((int32_t *)pose_tensor_data(t))[i] = (int32_t)v;
    else if (t->dtype == POSE_I64) ((int64_t *)pose_tensor_data(t))[i] = (int64_t)v;
    else store_f32(t, i, (float)v);
  }
}

pose_status pose_tensor_rand_normal(pose_tensor *t, uint64_t seed, uint64_t stream, double mean, double std) {
  struct rand_arg a = {seed, stream, mean, std, 1};
  return fill_via_host(t, fill_rand, &a);
}

pose_status pose_tensor_rand_uniform(pose_tensor *t, uint64_t seed, uint64_t stream, double lo, double hi) {
  struct rand_arg a = {seed, stream, lo, hi, 0};
  return fill_via_host(t, fill_rand, &a);
}

pose_status pose_tensor_reshape(const pose_tensor *t, int ndim, const int64_t *shape, pose_tensor **out) {
  if (ndim < 0 || ndim > POSE_MAX_DIMS) return pose_error(POSE_EINVAL, "reshape to %d dimensions (max %d)", ndim, POSE_MAX_DIMS);
  int64_t s[POSE_MAX_DIMS], known = 1;
  int infer = -1;
  for (int i = 0; i < ndim; i++) {
    s[i] = shape[i];
    if (s[i] == -1) {
      if (infer >= 0) return pose_error(POSE_EINVAL, "reshape: only one dimension may be -1");
      infer = i;
    } else if (s[i] < 0) return pose_error(POSE_EINVAL, "reshape: negative size %lld", (long long)s[i]);
    else known *= s[i];
  }
  if (infer >= 0) {
    if (known == 0 || t->numel % known) return pose_error(POSE_EINVAL, "reshape: cannot infer -1 for %lld elements", (long long)t->numel);
    s[infer] = t->numel / known;
    known *= s[infer];
  }
  if (known != t->numel) {
    char a[64];
    pose_tensor_shape_str(t, a, sizeof a);
    return pose_error(POSE_EINVAL, "reshape: %s has %lld elements, the new shape %lld", a, (long long)t->numel, (long long)known);
  }
  POSE_TRY(view_of(t, out));
  (*out)->ndim = ndim;
  for (int i = 0; i < ndim; i++) (*out)->shape[i] = s[i];
  return POSE_OK;
}

pose_status pose_tensor_slice(const pose_tensor *t, int64_t start, int64_t stop, pose_tensor **out) {
  if (t->ndim < 1) return pose_error(POSE_EINVAL, "cannot slice a scalar");
  if (start < 0 || stop < start || stop > t->shape[0])
    return pose_error(POSE_EINVAL, "slice [%lld, %lld) out of range for first dimension %lld", (long long)start,
                      (long long)stop, (long long)t->shape[0]);
  int64_t row = t->shape[0] ? t->numel / t->shape[0] : 0;
  POSE_TRY(view_of(t, out));
  (*out)->shape[0] = stop - start;
  (*out)->numel = row * (stop - start);
  (*out)->offset += (size_t)(row * start) * pose_dtype_size(t->dtype);
  return POSE_OK;
}

static pose_status flat_index(const pose_tensor *t, const int64_t *index, int64_t *flat) {
  int64_t f = 0;
  for (int i = 0; i < t->ndim; i++) {
    if (index[i] < 0 || index[i] >= t->shape[i])
      return pose_error(POSE_EINVAL, "index %lld out of range for dimension %d of size %lld", (long long)index[i],
                        i + 1, (long long)t->shape[i]);
    f = f * t->shape[i] + index[i];
  }
  *flat = f;
  return POSE_OK;
}

/* Reads or writes one element, through a one-element host bounce when the tensor is on a device. */
static pose_status element_io(const pose_tensor *t, const int64_t *index, void *host, int write) {
  int64_t f = 0;
  POSE_TRY(flat_index(t, index, &f));
  size_t es = pose_dtype_size(t->dtype);
  char *p = (char *)pose_tensor_device_ptr(t) + (size_t)f * es;
  if (t->device.type == POSE_CPU) {
    if (write) memcpy(p, host, es); else memcpy(host, p, es);
    return POSE_OK;
  }
  const pose_backend *be = pose_cuda_backend(NULL);
  if (!be) return pose_error(POSE_EUNSUPPORTED, "no CUDA backend");
  return write ? be->copy_h2d(t->device.index, p, host, es) : be->copy_d2h(t->device.index, host, p, es);
}

pose_status pose_tensor_get(const pose_tensor *t, const int64_t *index, double *out) {
  unsigned char raw[8];
  POSE_TRY(element_io(t, index, raw, 0));
  if (t->dtype == POSE_I64) { *out = (double)*(int64_t *)raw; return POSE_OK; }
  float f;
  if (t->dtype == POSE_I32) { *out = *(int32_t *)raw; return POSE_OK; }
  pose_convert(&f, POSE_F32, raw, t->dtype, 1);
  *out = f;
  return POSE_OK;
}

pose_status pose_tensor_get_i64(const pose_tensor *t, const int64_t *index, int64_t *out) {
  unsigned char raw[8];
  POSE_TRY(element_io(t, index, raw, 0));
  if (t->dtype == POSE_I64) *out = *(int64_t *)raw;
  else if (t->dtype == POSE_I32) *out = *(int32_t *)raw;
  else { float f; pose_convert(&f, POSE_F32, raw, t->dtype, 1); *out = (int64_t)f; }
  return POSE_OK;
}

pose_status pose_tensor_set(pose_tensor *t, const int64_t *index, double value) {
  unsigned char raw[8];
  if (t->dtype == POSE_I64) *(int64_t *)raw = (int64_t)value;
  else if (t->dtype == POSE_I32) *(int32_t *)raw = (int32_t)value;
  else { float f = (float)value; pose_convert(raw, t->dtype, &f, POSE_F32, 1); }
  return element_io(t, index, raw, 1);
}

int pose_tensor_same_shape(const pose_tensor *a, const pose_tensor *b) {
  if (a->ndim != b->ndim) return 0;
  for (int i = 0; i < a->ndim; i++) if (a->shape[i] != b->shape[i]) return 0;
  return 1;
}

void pose_tensor_shape_str(const pose_tensor *t, char *buf, size_t len) {
  size_t n = (size_t)snprintf(buf, len, "[");
  for (int i = 0; i < t->ndim && n < len; i++)
    n += (size_t)snprintf(buf + n, len - n, i ? ", %lld" : "%lld", (long long)t->shape[i]);
  if (n < len) snprintf(buf + n, len - n, "]");
}
