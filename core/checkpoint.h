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

/* The directory the checkpoint was opened from. */
const char *pose_checkpoint_dir(const pose_checkpoint *c);
/* The tensor's dtype as the safetensors header names it ("BF16", "I64", "BOOL", ...), or NULL if there is no such
 * tensor. Unlike pose_checkpoint_info this also answers for dtypes pose has no type for. */
const char *pose_checkpoint_st_dtype(const pose_checkpoint *c, const char *name);
/* The tensor's bytes as stored (little-endian, on-disk dtype), inside the read-only mapping: valid until close and
 * not necessarily aligned to the element size. For uploading bf16/f16 weights to a device without converting. */
pose_status pose_checkpoint_raw(const pose_checkpoint *c, const char *name, const void **data, size_t *nbytes);

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
 * model.safetensors.index.json. Files are written to a temporary name and renamed, so a crash leaves no half file.
 * Details: save_dtype is f32, bf16 or f16 and applies to float entries (i32/i64 entries keep their type);
 * shard_bytes 0 means no limit; shards are filled greedily in entry order (a tensor larger than shard_bytes gets a
 * shard of its own, as transformers does); weight files of an earlier save in dir that the new layout does not
 * use (model.safetensors, the index, model-*-of-*.safetensors) are removed after the new files are in place.
 * Saving into the directory of an open checkpoint is safe: its mappings keep the old files' contents. */
pose_status pose_checkpoint_save(const char *dir, const cJSON *config, const pose_st_entry *entries, size_t n,
                                 pose_dtype save_dtype, size_t shard_bytes);

/* A JSON number that prints as a float even when integral ("4.0", not "4"), shortest round-trip digits otherwise.
 * cJSON keeps no int/float distinction, but Python does, and transformers' rope validation warns when e.g. a
 * rope_scaling factor is an int. It is a cJSON raw item (cJSON_IsNumber is false on it; its text is valuestring);
 * NULL for NaN/Inf, which JSON cannot hold. */
cJSON *pose_json_float(double v);

#endif
