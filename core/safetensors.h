/* One safetensors file (https://github.com/huggingface/safetensors): an 8-byte little-endian header length N, N
 * bytes of JSON {"__metadata__": {...}, "name": {"dtype", "shape", "data_offsets": [begin, end]}, ...}, then the
 * data section, offsets being relative to its start. A file is memory-mapped read-only and its header is checked
 * against the file before any tensor is handed out, so a truncated or lying file is an error, never a wild read.
 * checkpoint.c builds directories (config.json, shards, index) on top of this. */
#ifndef POSE_SAFETENSORS_H
#define POSE_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "checkpoint.h"
#include "dtype.h"
#include "status.h"

/* The safetensors crate refuses headers above 100 MB; so do we (a corrupt length must not make us allocate GBs). */
#define POSE_ST_MAX_HEADER 100000000ull
/* safetensors itself has no rank limit; 8 covers everything real while keeping the struct flat. */
#define POSE_ST_MAX_DIMS 8

typedef struct {
  char *name;
  const char *dtype;   /* the header's dtype name ("BF16", "I64", "BOOL", ...), a static string */
  int pose_dtype;      /* the matching pose_dtype, or -1 when pose has none (BOOL, U8, F64, F8_*, ...) */
  size_t elem_size;    /* bytes per element */
  int ndim;
  int64_t shape[POSE_ST_MAX_DIMS];
  uint64_t numel;
  uint64_t begin, end; /* byte range within the data section */
} pose_st_tensor;

typedef struct pose_st_file {
  char *path;
  void *map;             /* the whole file, read-only */
  size_t size;
  const uint8_t *data;   /* start of the data section */
  uint64_t data_size;
  pose_st_tensor *tensors; /* sorted by name */
  size_t n;
  cJSON *metadata;       /* the header's __metadata__ object, or NULL */
} pose_st_file;

/* Maps and validates `path`; every error message starts with the path and names the offending tensor. */
pose_status pose_st_open(const char *path, pose_st_file **out);
void pose_st_close(pose_st_file *f);
/* Tensor by name (binary search), or NULL. */
const pose_st_tensor *pose_st_find(const pose_st_file *f, const char *name);
/* First byte of a tensor's data inside the mapping (not necessarily aligned to its element size). */
static inline const void *pose_st_data(const pose_st_file *f, const pose_st_tensor *t) { return f->data + t->begin; }

/* Element size of a safetensors dtype name, and its pose_dtype (-1 if none). 0 for names safetensors does not
 * define, and for the sub-byte types (F4, F6_*) that pose cannot address. */
size_t pose_st_dtype_size(const char *name, int *pose_dt);
/* The safetensors name of a pose dtype ("F32", "BF16", "F16", "I32", "I64"). */
const char *pose_st_dtype_name(pose_dtype dt);

/* Bytes that entry e occupies when saved with save_dtype (float tensors take save_dtype, integer ones keep theirs). */
uint64_t pose_st_entry_bytes(const pose_st_entry *e, pose_dtype save_dtype);
/* Writes one safetensors file at `path` (which must not exist: it is a temporary name the caller renames) holding
 * entries[0..n-1] in that order, float tensors converted to save_dtype, header __metadata__ {"format": "pt"} padded
 * with spaces to a multiple of 8 bytes. The file is fsync'ed before returning. Entries must already be validated. */
pose_status pose_st_write(const char *path, const pose_st_entry *const *entries, size_t n, pose_dtype save_dtype);

#endif
