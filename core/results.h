/* HDF5 results files (DESIGN.md section 5): one file per experiment, groups created on demand, datasets and
 * attributes of f64/f32/i64/string values with read back, extendable 1-D logs flushed as they grow, and paper tables.
 *
 * Crash safety: files use HDF5's default (earliest) format, without SWMR, because HDF5 1.10 cannot reopen a
 * SIGKILLed SWMR/latest-format file without h5clear. Every call that changes the file ends with H5Fflush, so a
 * process killed at any point leaves a readable file holding everything written before the last completed call.
 *
 * Paths name objects from the root: "runs/a/train/loss" and "/runs/a/train/loss" are the same; "" and "/" are the
 * root. Empty components ("a//b") are rejected. Strings are stored as variable-length UTF-8 (h5py reads them as
 * str); fixed-length strings written by other tools are read too.
 *
 * HDF5's automatic error printing is switched off; every HDF5 failure becomes a pose_status with a message that
 * names the file and the object, followed by HDF5's innermost description in brackets. */
#ifndef POSE_RESULTS_H
#define POSE_RESULTS_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

#define POSE_RESULTS_MAX_DIMS 4

typedef struct pose_results pose_results;

typedef enum {
  POSE_RESULTS_APPEND = 0, /* "a": open for writing, create when missing (the default) */
  POSE_RESULTS_WRITE,      /* "w": create, truncating an existing file */
  POSE_RESULTS_READ        /* "r": read only; the file must exist; nothing is written, not even root attributes */
} pose_results_mode;

typedef struct {
  pose_results_mode mode;
  const char *experiment; /* root `experiment`; NULL keeps the stored one, or the file name's stem on create */
  const char *device;     /* root `device`; NULL: the default device ("cpu", "cuda:0"; "unknown" if that fails) */
  const char *command;    /* root `command` of this writer; NULL: "unknown" */
} pose_results_opts;

typedef enum { POSE_RESULTS_F64 = 0, POSE_RESULTS_F32, POSE_RESULTS_I64, POSE_RESULTS_STR } pose_results_type;

/* A value to write or a value read back: scalar (ndim 0) or an array of up to 4 dimensions, row-major.
 * data points at numel numbers (double, float, int64_t) or, for STR, at numel `char *` (UTF-8, NUL-terminated).
 * Values filled by the library own their memory: release them with pose_results_value_free. */
typedef struct {
  pose_results_type type;
  int ndim;
  int64_t dims[POSE_RESULTS_MAX_DIMS];
  void *data;
} pose_results_value;

typedef enum {
  POSE_RESULTS_NONE = 0, /* nothing at that path */
  POSE_RESULTS_GROUP,
  POSE_RESULTS_DATASET,
  POSE_RESULTS_OTHER     /* a named datatype or another object kind */
} pose_results_kind;

/* Opens or creates `path` (opts NULL: mode "a", defaults). Unless read-only, sets the root attributes
 * `experiment`, `created` (ISO 8601 UTC, kept when it exists), `device`, `pose_version`, `git_commit`
 * (`git rev-parse HEAD` in the current directory, else "unknown") and `command`, then flushes.
 * A missing file in mode "r" is POSE_EIO; an existing file that is not HDF5 (modes "a", "r") is POSE_EFORMAT,
 * except that an empty file (as os.tmpname leaves) is taken as a new one in mode "a".
 * HDF5 locks files it opens: to read a file with h5py while a run still writes it, set HDF5_USE_FILE_LOCKING=FALSE
 * in the reader's environment; without SWMR such a reader can catch a change half written, so read and retry. */
pose_status pose_results_open(pose_results **out, const char *path, const pose_results_opts *opts);
/* Flushes and closes; NULL is accepted. The handle is freed even when closing reports an error. */
pose_status pose_results_close(pose_results *r);
pose_status pose_results_flush(pose_results *r);
const char *pose_results_filename(const pose_results *r);
int pose_results_readonly(const pose_results *r);
/* Overwrites the root `command` attribute. */
pose_status pose_results_set_command(pose_results *r, const char *command);

/* Objects. */
pose_status pose_results_kind_of(pose_results *r, const char *path, pose_results_kind *out);
/* Creates the group and any missing parents; an existing group is fine, a dataset at that path is an error. */
pose_status pose_results_group(pose_results *r, const char *path);
/* Unlinks a group (with everything below it) or a dataset. HDF5 does not shrink the file; h5repack does. */
pose_status pose_results_delete(pose_results *r, const char *path);
/* Names of a group's members in name order, as a 1-D STR value. */
pose_status pose_results_list(pose_results *r, const char *path, pose_results_value *names);

/* Datasets. write creates a fixed-shape dataset (parents created on demand), replacing a dataset already at that
 * path (a group there is an error). read returns the stored shape; floats come back as F32 when stored in 4 bytes,
 * else F64; integers as I64; strings as STR. */
pose_status pose_results_write(pose_results *r, const char *path, const pose_results_value *v);
pose_status pose_results_read(pose_results *r, const char *path, pose_results_value *out);
pose_status pose_results_write_f64(pose_results *r, const char *path, double x);
pose_status pose_results_write_i64(pose_results *r, const char *path, int64_t x);
pose_status pose_results_write_str(pose_results *r, const char *path, const char *s);

/* Extendable 1-D datasets (chunked, unlimited): appends a scalar or the elements of a 1-D numeric value, creating
 * the dataset on first use with the value's type, then flushes the file. Appending floats to an integer dataset
 * is accepted only for integral values; a dataset made by pose_results_write cannot be appended to. */
pose_status pose_results_append(pose_results *r, const char *path, const pose_results_value *v);
pose_status pose_results_append_f64(pose_results *r, const char *path, double x);
pose_status pose_results_append_i64(pose_results *r, const char *path, int64_t x);

/* The paper-shaped table /tables/<name>: a rows x cols f64 dataset (NaN for an empty cell) with string-array
 * attributes `row_labels` and `col_labels`. `name` must not contain '/'. */
pose_status pose_results_table(pose_results *r, const char *name, int64_t rows, int64_t cols, const double *values,
                               const char *const *row_labels, const char *const *col_labels);

/* Attributes on the root, a group or a dataset: scalars or arrays (ndim <= 4) of any pose_results_type.
 * set replaces an attribute of the same name whatever its type. get of a missing attribute is POSE_EINVAL. */
pose_status pose_results_set_attr(pose_results *r, const char *path, const char *name, const pose_results_value *v);
pose_status pose_results_get_attr(pose_results *r, const char *path, const char *name, pose_results_value *out);
pose_status pose_results_has_attr(pose_results *r, const char *path, const char *name, int *out);
/* Attribute names in name order, as a 1-D STR value. */
pose_status pose_results_attr_names(pose_results *r, const char *path, pose_results_value *names);
pose_status pose_results_set_attr_f64(pose_results *r, const char *path, const char *name, double x);
pose_status pose_results_set_attr_i64(pose_results *r, const char *path, const char *name, int64_t x);
pose_status pose_results_set_attr_str(pose_results *r, const char *path, const char *name, const char *s);
/* Scalar getters: f64 accepts integer attributes, i64 accepts integral floats, str returns a malloc'ed copy. */
pose_status pose_results_get_attr_f64(pose_results *r, const char *path, const char *name, double *out);
pose_status pose_results_get_attr_i64(pose_results *r, const char *path, const char *name, int64_t *out);
pose_status pose_results_get_attr_str(pose_results *r, const char *path, const char *name, char **out);

int64_t pose_results_value_numel(const pose_results_value *v);
/* Frees what the library allocated in *v (strings included) and zeroes it; safe on a zeroed value. */
void pose_results_value_free(pose_results_value *v);
const char *pose_results_type_name(pose_results_type t); /* "f64", "f32", "i64", "str" */

#endif
