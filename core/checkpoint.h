/* Hugging Face checkpoints on disk: config.json plus model.safetensors, or shards listed by
 * model.safetensors.index.json. Files are memory-mapped and every header is validated against the file (dtypes,
 * shapes, offsets inside the data section, no overlaps) before anything is read; errors name the file and tensor. */
#ifndef POSE_CHECKPOINT_H
#define POSE_CHECKPOINT_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#include "dtype.h"
#include "status.h"

typedef struct pose_checkpoint pose_checkpoint;

pose_status pose_checkpoint_open(const char *dir, pose_checkpoint **out);
void pose_checkpoint_close(pose_checkpoint *c);

/* The parsed config.json (owned by the checkpoint). */
const cJSON *pose_checkpoint_config(const pose_checkpoint *c);

size_t pose_checkpoint_count(const pose_checkpoint *c);
const char *pose_checkpoint_name(const pose_checkpoint *c, size_t i);
int pose_checkpoint_has(const pose_checkpoint *c, const char *name);
pose_status pose_checkpoint_info(const pose_checkpoint *c, const char *name, pose_dtype *dtype, int *ndim,
                                 int64_t shape[4]);
/* Reads tensor `name` (f32, bf16 or f16 on disk) converted to f32 into dst, after checking that its shape is
 * exactly shape[0..ndim-1]; a missing tensor or a different shape is an error naming the file and tensor. */
pose_status pose_checkpoint_read_f32(const pose_checkpoint *c, const char *name, int ndim, const int64_t *shape,
                                     float *dst);

/* One tensor to save: data holds numel elements of `dtype` (row-major). */
typedef struct {
  const char *name;
  pose_dtype dtype;
  int ndim;
  int64_t shape[4];
  const void *data;
} pose_st_entry;

/* Writes config.json and the tensors converted to `save_dtype` into dir (created if missing): one
 * model.safetensors when the total is at most shard_bytes, else model-0000i-of-0000N.safetensors plus
 * model.safetensors.index.json. Files are written to a temporary name and renamed, so a crash leaves no half file. */
pose_status pose_checkpoint_save(const char *dir, const cJSON *config, const pose_st_entry *entries, size_t n,
                                 pose_dtype save_dtype, size_t shard_bytes);

#endif
