/* HDF5 results files: see results.h. Every HDF5 handle opened here is closed before the function returns, so the
 * only long-lived id is the file itself, and a failed call never leaves objects open. */
#include "results.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <hdf5.h>

#include "device.h"

#ifndef POSE_VERSION
#define POSE_VERSION "unknown"
#endif

/* 1024 elements per chunk: 8 KiB for f64 logs, small enough that the flush after each append stays cheap. */
#define APPEND_CHUNK 1024

struct pose_results {
  hid_t file;
  int readonly;
  char *filename;
};

/* ---- errors ---------------------------------------------------------------------------------------------------- */

static void quiet_hdf5(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

static herr_t innermost_cb(unsigned n, const H5E_error2_t *e, void *data) {
  (void)n;
  /* walking downward, the last entry visited is the innermost, most specific one */
  if (e->desc && e->desc[0]) snprintf((char *)data, 512, "%s", e->desc);
  return 0;
}

/* Formats "<file>: <object>: <what> [HDF5: <innermost description>]" and clears HDF5's error stack. */
static pose_status h5fail(const char *file, const char *obj, pose_status st, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static pose_status h5fail(const char *file, const char *obj, pose_status st, const char *fmt, ...) {
  char what[1024], detail[512] = "";
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, innermost_cb, detail);
  H5Eclear2(H5E_DEFAULT);
  return pose_error(st, "results file '%s'%s%s%s: %s%s%s%s", file, obj ? ", object '" : "", obj ? obj : "",
                    obj ? "'" : "", what, detail[0] ? " [HDF5: " : "", detail, detail[0] ? "]" : "");
}

#define FAIL(r, obj, st, ...) h5fail((r)->filename, (obj), (st), __VA_ARGS__)

/* ---- paths ----------------------------------------------------------------------------------------------------- */

/* Canonical form "/a/b" ("/" for the root) in a malloc'ed string. */
static pose_status norm_path(const pose_results *r, const char *path, char **out) {
  *out = NULL;
  if (!path) return pose_error(POSE_EINVAL, "results file '%s': NULL object path", r->filename);
  size_t n = strlen(path);
  char *p = malloc(n + 2);
  if (!p) return pose_error(POSE_ENOMEM, "results: out of memory");
  size_t k = 0;
  p[k++] = '/';
  const char *s = path;
  while (*s == '/') s++;
  for (; *s; s++) {
    if (*s == '/' && (s[1] == '/')) {
      free(p);
      return pose_error(POSE_EINVAL, "results file '%s': object path '%s' has an empty component", r->filename, path);
    }
    p[k++] = *s;
  }
  while (k > 1 && p[k - 1] == '/') k--;
  p[k] = 0;
  *out = p;
  return POSE_OK;
}

static int is_root(const char *p) { return p[0] == '/' && p[1] == 0; }

static pose_status need_file(const pose_results *r) {
  if (!r) return pose_error(POSE_EINVAL, "results: NULL file handle");
  return POSE_OK;
}

static pose_status need_writable(const pose_results *r) {
  POSE_TRY(need_file(r));
  if (r->readonly) return pose_error(POSE_EINVAL, "results file '%s' is open read-only (mode \"r\")", r->filename);
  return POSE_OK;
}

static pose_status flush(pose_results *r) {
  if (H5Fflush(r->file, H5F_SCOPE_LOCAL) < 0) return FAIL(r, NULL, POSE_EIO, "cannot flush");
  return POSE_OK;
}

/* Kind of the object at a canonical path. Walks the prefixes so that a missing parent, or a dataset used as a
 * parent, reads as "nothing there" rather than an HDF5 error. */
static pose_status kind_at(pose_results *r, const char *p, pose_results_kind *out) {
  *out = POSE_RESULTS_NONE;
  if (!is_root(p)) {
    char *buf = strdup(p);
    if (!buf) return pose_error(POSE_ENOMEM, "results: out of memory");
    for (char *c = buf + 1;; c++) {
      if (*c != '/' && *c != 0) continue;
      char save = *c;
      *c = 0;
      htri_t e = H5Lexists(r->file, buf, H5P_DEFAULT);
      if (e < 0) { pose_status st = FAIL(r, p, POSE_EIO, "cannot look up '%s'", buf); free(buf); return st; }
      if (e == 0) { free(buf); return POSE_OK; }
      if (save == 0) break;
      hid_t o = H5Oopen(r->file, buf, H5P_DEFAULT);
      if (o < 0) { pose_status st = FAIL(r, p, POSE_EIO, "cannot open '%s'", buf); free(buf); return st; }
      H5I_type_t t = H5Iget_type(o);
      H5Oclose(o);
      if (t != H5I_GROUP) { free(buf); return POSE_OK; }
      *c = save;
    }
    free(buf);
  }
  hid_t o = H5Oopen(r->file, p, H5P_DEFAULT);
  if (o < 0) return FAIL(r, p, POSE_EIO, "cannot open object");
  H5I_type_t t = H5Iget_type(o);
  H5Oclose(o);
  *out = t == H5I_GROUP ? POSE_RESULTS_GROUP : t == H5I_DATASET ? POSE_RESULTS_DATASET : POSE_RESULTS_OTHER;
  return POSE_OK;
}

static const char *kind_name(pose_results_kind k) {
  return k == POSE_RESULTS_GROUP ? "a group" : k == POSE_RESULTS_DATASET ? "a dataset" : k ? "not a group or dataset" : "missing";
}

/* Opens the object at a canonical path, with a clean error when nothing is there. */
static pose_status open_obj(pose_results *r, const char *p, pose_results_kind want, hid_t *out) {
  pose_results_kind k;
  POSE_TRY(kind_at(r, p, &k));
  if (k == POSE_RESULTS_NONE) return pose_error(POSE_EINVAL, "results file '%s': no object '%s'", r->filename, p);
  if (want != POSE_RESULTS_NONE && k != want)
    return pose_error(POSE_EINVAL, "results file '%s': '%s' is %s, not %s", r->filename, p, kind_name(k),
                      kind_name(want));
  *out = H5Oopen(r->file, p, H5P_DEFAULT);
  if (*out < 0) return FAIL(r, p, POSE_EIO, "cannot open object");
  return POSE_OK;
}

/* Link creation property list that creates missing parent groups. */
static hid_t lcpl_parents(void) {
  hid_t l = H5Pcreate(H5P_LINK_CREATE);
  if (l >= 0) H5Pset_create_intermediate_group(l, 1);
  return l;
}

/* ---- values and types ------------------------------------------------------------------------------------------ */

const char *pose_results_type_name(pose_results_type t) {
  switch (t) {
    case POSE_RESULTS_F64: return "f64";
    case POSE_RESULTS_F32: return "f32";
    case POSE_RESULTS_I64: return "i64";
    case POSE_RESULTS_STR: return "str";
  }
  return "?";
}

int64_t pose_results_value_numel(const pose_results_value *v) {
  int64_t n = 1;
  for (int i = 0; i < v->ndim; i++) n *= v->dims[i];
  return n;
}

void pose_results_value_free(pose_results_value *v) {
  if (!v) return;
  if (v->type == POSE_RESULTS_STR && v->data) {
    int64_t n = pose_results_value_numel(v);
    for (int64_t i = 0; i < n; i++) free(((char **)v->data)[i]);
  }
  free(v->data);
  memset(v, 0, sizeof *v);
}

static size_t elem_size(pose_results_type t) {
  return t == POSE_RESULTS_F32 ? sizeof(float) : t == POSE_RESULTS_STR ? sizeof(char *) : 8;
}

static pose_status check_value(const pose_results *r, const char *what, const pose_results_value *v) {
  if (!v) return pose_error(POSE_EINVAL, "results file '%s': %s: NULL value", r->filename, what);
  if ((unsigned)v->type > POSE_RESULTS_STR)
    return pose_error(POSE_EINVAL, "results file '%s': %s: unknown value type %d", r->filename, what, (int)v->type);
  if (v->ndim < 0 || v->ndim > POSE_RESULTS_MAX_DIMS)
    return pose_error(POSE_EINVAL, "results file '%s': %s: %d dimensions (0 to %d supported)", r->filename, what,
                      v->ndim, POSE_RESULTS_MAX_DIMS);
  for (int i = 0; i < v->ndim; i++)
    if (v->dims[i] < 0)
      return pose_error(POSE_EINVAL, "results file '%s': %s: negative dimension %lld", r->filename, what,
                        (long long)v->dims[i]);
  int64_t n = pose_results_value_numel(v);
  if (n > 0 && !v->data) return pose_error(POSE_EINVAL, "results file '%s': %s: NULL data", r->filename, what);
  if (v->type == POSE_RESULTS_STR)
    for (int64_t i = 0; i < n; i++)
      if (!((char *const *)v->data)[i])
        return pose_error(POSE_EINVAL, "results file '%s': %s: string %lld is NULL", r->filename, what, (long long)i);
  return POSE_OK;
}

static hid_t vlen_str_type(void) {
  hid_t s = H5Tcopy(H5T_C_S1);
  H5Tset_size(s, H5T_VARIABLE);
  H5Tset_cset(s, H5T_CSET_UTF8);
  return s;
}

/* Type stored in the file (little-endian, as h5py writes) and the matching in-memory type; both to be closed. */
static hid_t file_type(pose_results_type t) {
  switch (t) {
    case POSE_RESULTS_F64: return H5Tcopy(H5T_IEEE_F64LE);
    case POSE_RESULTS_F32: return H5Tcopy(H5T_IEEE_F32LE);
    case POSE_RESULTS_I64: return H5Tcopy(H5T_STD_I64LE);
    case POSE_RESULTS_STR: return vlen_str_type();
  }
  return -1;
}

static hid_t mem_type(pose_results_type t) {
  switch (t) {
    case POSE_RESULTS_F64: return H5Tcopy(H5T_NATIVE_DOUBLE);
    case POSE_RESULTS_F32: return H5Tcopy(H5T_NATIVE_FLOAT);
    case POSE_RESULTS_I64: return H5Tcopy(H5T_NATIVE_INT64);
    case POSE_RESULTS_STR: return vlen_str_type();
  }
  return -1;
}

static hid_t make_space(const pose_results_value *v) {
  if (v->ndim == 0) return H5Screate(H5S_SCALAR);
  hsize_t d[POSE_RESULTS_MAX_DIMS];
  for (int i = 0; i < v->ndim; i++) d[i] = (hsize_t)v->dims[i];
  return H5Screate_simple(v->ndim, d, NULL);
}

/* Reads a whole dataset or attribute into a value of its natural type. */
static pose_status read_obj(pose_results *r, hid_t id, int is_attr, const char *obj, pose_results_value *out) {
  memset(out, 0, sizeof *out);
  pose_status st = POSE_OK;
  hid_t space = -1, ftype = -1, mtype = -1;
  char *fixed = NULL;
  char **vl = NULL;
  space = is_attr ? H5Aget_space(id) : H5Dget_space(id);
  ftype = is_attr ? H5Aget_type(id) : H5Dget_type(id);
  if (space < 0 || ftype < 0) { st = FAIL(r, obj, POSE_EIO, "cannot get shape and type"); goto done; }
  int nd = H5Sget_simple_extent_type(space) == H5S_NULL ? 1 : H5Sget_simple_extent_ndims(space);
  if (nd < 0 || nd > POSE_RESULTS_MAX_DIMS) {
    st = pose_error(POSE_EUNSUPPORTED, "results file '%s', object '%s': %d dimensions (at most %d supported)",
                    r->filename, obj, nd, POSE_RESULTS_MAX_DIMS);
    goto done;
  }
  hsize_t d[POSE_RESULTS_MAX_DIMS] = {0};
  if (H5Sget_simple_extent_type(space) != H5S_NULL) H5Sget_simple_extent_dims(space, d, NULL);
  out->ndim = nd;
  for (int i = 0; i < nd; i++) out->dims[i] = (int64_t)d[i];
  int64_t n = pose_results_value_numel(out);
  H5T_class_t cls = H5Tget_class(ftype);
  if (cls == H5T_FLOAT) out->type = H5Tget_size(ftype) == 4 ? POSE_RESULTS_F32 : POSE_RESULTS_F64;
  else if (cls == H5T_INTEGER) out->type = POSE_RESULTS_I64;
  else if (cls == H5T_STRING) out->type = POSE_RESULTS_STR;
  else {
    st = pose_error(POSE_EUNSUPPORTED, "results file '%s', object '%s': HDF5 type class %d is not a number or string",
                    r->filename, obj, (int)cls);
    goto done;
  }
  out->data = calloc(n ? (size_t)n : 1, elem_size(out->type));
  if (!out->data) { st = pose_error(POSE_ENOMEM, "results: out of memory reading '%s'", obj); goto done; }
  if (n == 0) goto done;
  herr_t rc;
  if (out->type != POSE_RESULTS_STR) {
    mtype = mem_type(out->type);
    rc = is_attr ? H5Aread(id, mtype, out->data) : H5Dread(id, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, out->data);
    if (rc < 0) st = FAIL(r, obj, POSE_EIO, "cannot read");
    goto done;
  }
  char **strs = out->data;
  if (H5Tis_variable_str(ftype) > 0) {
    mtype = vlen_str_type();
    vl = calloc((size_t)n, sizeof *vl);
    if (!vl) { st = pose_error(POSE_ENOMEM, "results: out of memory reading '%s'", obj); goto done; }
    rc = is_attr ? H5Aread(id, mtype, vl) : H5Dread(id, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, vl);
    if (rc < 0) { st = FAIL(r, obj, POSE_EIO, "cannot read"); free(vl); vl = NULL; goto done; }
    for (int64_t i = 0; i < n && st == POSE_OK; i++)
      if (!(strs[i] = strdup(vl[i] ? vl[i] : ""))) st = pose_error(POSE_ENOMEM, "results: out of memory");
#if H5_VERSION_GE(1, 12, 0)
    H5Treclaim(mtype, space, H5P_DEFAULT, vl);
#else
    H5Dvlen_reclaim(mtype, space, H5P_DEFAULT, vl);
#endif
  } else {
    size_t sz = H5Tget_size(ftype);
    mtype = H5Tcopy(H5T_C_S1);
    H5Tset_size(mtype, sz);
    H5Tset_strpad(mtype, H5T_STR_NULLPAD);
    H5Tset_cset(mtype, H5Tget_cset(ftype));
    fixed = malloc((size_t)n * sz);
    if (!fixed) { st = pose_error(POSE_ENOMEM, "results: out of memory reading '%s'", obj); goto done; }
    rc = is_attr ? H5Aread(id, mtype, fixed) : H5Dread(id, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, fixed);
    if (rc < 0) { st = FAIL(r, obj, POSE_EIO, "cannot read"); goto done; }
    for (int64_t i = 0; i < n && st == POSE_OK; i++)
      if (!(strs[i] = strndup(fixed + (size_t)i * sz, sz))) st = pose_error(POSE_ENOMEM, "results: out of memory");
  }
done:
  free(vl);
  free(fixed);
  if (mtype >= 0) H5Tclose(mtype);
  if (ftype >= 0) H5Tclose(ftype);
  if (space >= 0) H5Sclose(space);
  if (st != POSE_OK) pose_results_value_free(out);
  return st;
}

/* ---- open / close ---------------------------------------------------------------------------------------------- */

static void iso_now(char *buf, size_t len) {
  time_t t = time(NULL);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* `git rev-parse HEAD` of the current directory, or "unknown" outside a repository or without git. */
static void git_commit(char *buf, size_t len) {
  snprintf(buf, len, "unknown");
  FILE *p = popen("git rev-parse HEAD 2>/dev/null", "r");
  if (!p) return;
  char line[128] = "";
  if (fgets(line, sizeof line, p)) {
    size_t n = strspn(line, "0123456789abcdef");
    if (n >= 40 && (line[n] == '\n' || line[n] == 0)) { line[n] = 0; snprintf(buf, len, "%s", line); }
  }
  pclose(p);
}

/* "results/ppl.h5" -> "ppl" */
static void stem(const char *path, char *buf, size_t len) {
  const char *b = strrchr(path, '/');
  b = b ? b + 1 : path;
  snprintf(buf, len, "%s", b);
  char *dot = strrchr(buf, '.');
  if (dot && dot != buf) *dot = 0;
}

static pose_status root_attrs(pose_results *r, const pose_results_opts *o, int created_now) {
  char buf[256];
  if (o->experiment) POSE_TRY(pose_results_set_attr_str(r, "/", "experiment", o->experiment));
  else {
    int has;
    POSE_TRY(pose_results_has_attr(r, "/", "experiment", &has));
    if (!has) { stem(r->filename, buf, sizeof buf); POSE_TRY(pose_results_set_attr_str(r, "/", "experiment", buf)); }
  }
  int has_created;
  POSE_TRY(pose_results_has_attr(r, "/", "created", &has_created));
  if (created_now || !has_created) { iso_now(buf, sizeof buf); POSE_TRY(pose_results_set_attr_str(r, "/", "created", buf)); }
  if (o->device) POSE_TRY(pose_results_set_attr_str(r, "/", "device", o->device));
  else {
    pose_device d;
    if (pose_device_default(&d) == POSE_OK) pose_device_format(d, buf, sizeof buf);
    else snprintf(buf, sizeof buf, "unknown");
    POSE_TRY(pose_results_set_attr_str(r, "/", "device", buf));
  }
  POSE_TRY(pose_results_set_attr_str(r, "/", "pose_version", POSE_VERSION));
  git_commit(buf, sizeof buf);
  POSE_TRY(pose_results_set_attr_str(r, "/", "git_commit", buf));
  POSE_TRY(pose_results_set_attr_str(r, "/", "command", o->command ? o->command : "unknown"));
  return flush(r);
}

pose_status pose_results_open(pose_results **out, const char *path, const pose_results_opts *opts) {
  if (!out) return pose_error(POSE_EINVAL, "results: NULL output handle");
  *out = NULL;
  pose_results_opts def = {0};
  const pose_results_opts *o = opts ? opts : &def;
  if (!path || !*path) return pose_error(POSE_EINVAL, "results: empty file path");
  if ((unsigned)o->mode > POSE_RESULTS_READ) return pose_error(POSE_EINVAL, "results file '%s': unknown mode %d", path, (int)o->mode);
  quiet_hdf5();
  struct stat sb;
  int exists = stat(path, &sb) == 0;
  /* an empty file (os.tmpname, mktemp) is a new results file in modes "a" and "w" */
  if (exists && sb.st_size == 0 && o->mode != POSE_RESULTS_READ) exists = 0;
  if (o->mode == POSE_RESULTS_READ && !exists)
    return pose_error(POSE_EIO, "results file '%s': cannot open for reading: %s", path, strerror(errno));
  if (exists && o->mode != POSE_RESULTS_WRITE) {
    htri_t h = H5Fis_hdf5(path);
    if (h == 0) { H5Eclear2(H5E_DEFAULT); return pose_error(POSE_EFORMAT, "results file '%s' is not an HDF5 file", path); }
    if (h < 0) return h5fail(path, NULL, POSE_EIO, "cannot read the file");
  }
  pose_results *r = calloc(1, sizeof *r);
  if (!r || !(r->filename = strdup(path))) { free(r); return pose_error(POSE_ENOMEM, "results: out of memory"); }
  r->readonly = o->mode == POSE_RESULTS_READ;
  /* default file-creation and format settings on purpose (earliest format, no SWMR): see results.h */
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG);
  int create = o->mode == POSE_RESULTS_WRITE || !exists;
  if (create) r->file = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
  else r->file = H5Fopen(path, r->readonly ? H5F_ACC_RDONLY : H5F_ACC_RDWR, fapl);
  if (r->file < 0) {
    /* read HDF5's error stack before any other HDF5 call clears it */
    pose_status st = h5fail(path, NULL, POSE_EIO, create ? "cannot create" : r->readonly ? "cannot open for reading"
                                                                                          : "cannot open for writing");
    H5Pclose(fapl);
    free(r->filename);
    free(r);
    return st;
  }
  H5Pclose(fapl);
  if (!r->readonly) {
    pose_status st = root_attrs(r, o, create);
    if (st != POSE_OK) { pose_results_close(r); return st; }
  }
  *out = r;
  return POSE_OK;
}

pose_status pose_results_close(pose_results *r) {
  if (!r) return POSE_OK;
  pose_status st = POSE_OK;
  if (!r->readonly && H5Fflush(r->file, H5F_SCOPE_LOCAL) < 0) st = FAIL(r, NULL, POSE_EIO, "cannot flush");
  if (H5Fclose(r->file) < 0 && st == POSE_OK) st = FAIL(r, NULL, POSE_EIO, "cannot close");
  free(r->filename);
  free(r);
  return st;
}

pose_status pose_results_flush(pose_results *r) {
  POSE_TRY(need_file(r));
  return r->readonly ? POSE_OK : flush(r);
}

const char *pose_results_filename(const pose_results *r) { return r ? r->filename : NULL; }
int pose_results_readonly(const pose_results *r) { return r ? r->readonly : 1; }

pose_status pose_results_set_command(pose_results *r, const char *command) {
  if (!command) return pose_error(POSE_EINVAL, "results: NULL command");
  return pose_results_set_attr_str(r, "/", "command", command);
}

/* ---- objects --------------------------------------------------------------------------------------------------- */

pose_status pose_results_kind_of(pose_results *r, const char *path, pose_results_kind *out) {
  POSE_TRY(need_file(r));
  char *p;
  POSE_TRY(norm_path(r, path, &p));
  pose_status st = kind_at(r, p, out);
  free(p);
  return st;
}

pose_status pose_results_group(pose_results *r, const char *path) {
  POSE_TRY(need_writable(r));
  char *p;
  POSE_TRY(norm_path(r, path, &p));
  pose_results_kind k;
  pose_status st = kind_at(r, p, &k);
  if (st == POSE_OK && k == POSE_RESULTS_NONE) {
    hid_t l = lcpl_parents();
    hid_t g = H5Gcreate2(r->file, p, l, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0) st = FAIL(r, p, POSE_EIO, "cannot create group");
    else { H5Gclose(g); st = flush(r); }
    H5Pclose(l);
  } else if (st == POSE_OK && k != POSE_RESULTS_GROUP) {
    st = pose_error(POSE_EINVAL, "results file '%s': cannot create group '%s': it exists and is %s", r->filename, p,
                    kind_name(k));
  }
  free(p);
  return st;
}

pose_status pose_results_delete(pose_results *r, const char *path) {
  POSE_TRY(need_writable(r));
  char *p;
  POSE_TRY(norm_path(r, path, &p));
  pose_results_kind k;
  pose_status st = kind_at(r, p, &k);
  if (st == POSE_OK && is_root(p)) st = pose_error(POSE_EINVAL, "results file '%s': cannot delete the root group", r->filename);
  else if (st == POSE_OK && k == POSE_RESULTS_NONE) st = pose_error(POSE_EINVAL, "results file '%s': cannot delete '%s': no such object", r->filename, p);
  else if (st == POSE_OK && H5Ldelete(r->file, p, H5P_DEFAULT) < 0) st = FAIL(r, p, POSE_EIO, "cannot delete");
  else if (st == POSE_OK) st = flush(r);
  free(p);
  return st;
}

/* growable list of strings, delivered as a 1-D STR value */
typedef struct { char **v; int64_t n, cap; int oom; } str_list;

static void list_push(str_list *l, const char *s) {
  if (l->oom) return;
  if (l->n == l->cap) {
    int64_t cap = l->cap ? l->cap * 2 : 16;
    char **v = realloc(l->v, (size_t)cap * sizeof *v);
    if (!v) { l->oom = 1; return; }
    l->v = v;
    l->cap = cap;
  }
  if (!(l->v[l->n] = strdup(s))) { l->oom = 1; return; }
  l->n++;
}

static void list_free(str_list *l) {
  for (int64_t i = 0; i < l->n; i++) free(l->v[i]);
  free(l->v);
}

static pose_status list_finish(str_list *l, pose_results_value *out) {
  if (l->oom) { list_free(l); return pose_error(POSE_ENOMEM, "results: out of memory"); }
  memset(out, 0, sizeof *out);
  out->type = POSE_RESULTS_STR;
  out->ndim = 1;
  out->dims[0] = l->n;
  out->data = l->v ? (void *)l->v : calloc(1, sizeof(char *));
  return POSE_OK;
}

pose_status pose_results_list(pose_results *r, const char *path, pose_results_value *names) {
  POSE_TRY(need_file(r));
  if (!names) return pose_error(POSE_EINVAL, "results: NULL output");
  memset(names, 0, sizeof *names);
  char *p;
  POSE_TRY(norm_path(r, path, &p));
  hid_t g;
  pose_status st = open_obj(r, p, POSE_RESULTS_GROUP, &g);
  if (st != POSE_OK) { free(p); return st; }
  str_list l = {0};
  H5G_info_t info;
  if (H5Gget_info(g, &info) < 0) st = FAIL(r, p, POSE_EIO, "cannot list the group");
  for (hsize_t i = 0; st == POSE_OK && i < info.nlinks; i++) {
    ssize_t len = H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, NULL, 0, H5P_DEFAULT);
    char *name = len >= 0 ? malloc((size_t)len + 1) : NULL;
    if (len < 0) st = FAIL(r, p, POSE_EIO, "cannot read member %llu's name", (unsigned long long)i);
    else if (!name) l.oom = 1;
    else {
      H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, name, (size_t)len + 1, H5P_DEFAULT);
      list_push(&l, name);
    }
    free(name);
  }
  H5Oclose(g);
  free(p);
  if (st != POSE_OK) { list_free(&l); return st; }
  return list_finish(&l, names);
}

/* ---- datasets -------------------------------------------------------------------------------------------------- */

/* Creates dataset p (replacing a dataset there) and writes v into it. */
static pose_status write_at(pose_results *r, const char *p, const pose_results_value *v) {
  if (is_root(p)) return pose_error(POSE_EINVAL, "results file '%s': cannot write a dataset at the root", r->filename);
  pose_results_kind k;
  POSE_TRY(kind_at(r, p, &k));
  if (k == POSE_RESULTS_GROUP || k == POSE_RESULTS_OTHER)
    return pose_error(POSE_EINVAL, "results file '%s': cannot write dataset '%s': it exists and is %s", r->filename, p,
                      kind_name(k));
  if (k == POSE_RESULTS_DATASET && H5Ldelete(r->file, p, H5P_DEFAULT) < 0) return FAIL(r, p, POSE_EIO, "cannot replace");
  hid_t ft = file_type(v->type), mt = mem_type(v->type), sp = make_space(v), l = lcpl_parents();
  pose_status st = POSE_OK;
  hid_t d = H5Dcreate2(r->file, p, ft, sp, l, H5P_DEFAULT, H5P_DEFAULT);
  if (d < 0) st = FAIL(r, p, POSE_EIO, "cannot create dataset");
  else {
    if (pose_results_value_numel(v) > 0 && H5Dwrite(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, v->data) < 0)
      st = FAIL(r, p, POSE_EIO, "cannot write");
    H5Dclose(d);
  }
  H5Pclose(l);
  H5Sclose(sp);
  H5Tclose(mt);
  H5Tclose(ft);
  return st;
}

pose_status pose_results_write(pose_results *r, const char *path, const pose_results_value *v) {
  POSE_TRY(need_writable(r));
  char *p;
  POSE_TRY(norm_path(r, path, &p));
  pose_status st = check_value(r, p, v);
  if (st == POSE_OK) st = write_at(r, p, v);
  if (st == POSE_OK) st = flush(r);
  free(p);
  return st;
}

pose_status pose_results_write_f64(pose_results *r, const char *path, double x) {
  pose_results_value v = {.type = POSE_RESULTS_F64, .data = &x};
  return pose_results_write(r, path, &v);
}

pose_status pose_results_write_i64(pose_results *r, const char *path, int64_t x) {
  pose_results_value v = {.type = POSE_RESULTS_I64, .data = &x};
  return pose_results_write(r, path, &v);
}

pose_status pose_results_write_str(pose_results *r, const char *path, const char *s) {
  pose_results_value v = {.type = POSE_RESULTS_STR, .data = (void *)&s};
  return pose_results_write(r, path, &v);
}

pose_status pose_results_read(pose_results *r, const char *path, pose_results_value *out) {
  POSE_TRY(need_file(r));
  if (!out) return pose_error(POSE_EINVAL, "results: NULL output");
  memset(out, 0, sizeof *out);
  char *p;
  POSE_TRY(norm_path(r, path, &p));
  hid_t d;
  pose_status st = open_obj(r, p, POSE_RESULTS_DATASET, &d);
  if (st == POSE_OK) {
    st = read_obj(r, d, 0, p, out);
    H5Oclose(d);
  }
  free(p);
  return st;
}

/* ---- extendable 1-D datasets ----------------------------------------------------------------------------------- */

static pose_status create_extendable(pose_results *r, const char *p, pose_results_type t) {
  hsize_t zero = 0, unlim = H5S_UNLIMITED, chunk = APPEND_CHUNK;
  hid_t sp = H5Screate_simple(1, &zero, &unlim), dcpl = H5Pcreate(H5P_DATASET_CREATE), ft = file_type(t),
        l = lcpl_parents();
  H5Pset_chunk(dcpl, 1, &chunk);
  hid_t d = H5Dcreate2(r->file, p, ft, sp, l, dcpl, H5P_DEFAULT);
  pose_status st = d < 0 ? FAIL(r, p, POSE_EIO, "cannot create extendable dataset") : POSE_OK;
  if (d >= 0) H5Dclose(d);
  H5Pclose(l);
  H5Tclose(ft);
  H5Pclose(dcpl);
  H5Sclose(sp);
  return st;
}

static pose_status append_at(pose_results *r, const char *p, const pose_results_value *v) {
  if (v->type == POSE_RESULTS_STR)
    return pose_error(POSE_EINVAL, "results file '%s': cannot append strings to '%s' (numbers only)", r->filename, p);
  if (v->ndim > 1)
    return pose_error(POSE_EINVAL, "results file '%s': cannot append a %d-D value to '%s' (a scalar or 1-D values)",
                      r->filename, v->ndim, p);
  if (is_root(p)) return pose_error(POSE_EINVAL, "results file '%s': cannot append at the root", r->filename);
  pose_results_kind k;
  POSE_TRY(kind_at(r, p, &k));
  if (k == POSE_RESULTS_NONE) POSE_TRY(create_extendable(r, p, v->type));
  else if (k != POSE_RESULTS_DATASET)
    return pose_error(POSE_EINVAL, "results file '%s': cannot append to '%s': it is %s", r->filename, p, kind_name(k));
  hsize_t n = (hsize_t)pose_results_value_numel(v);
  hid_t d = H5Dopen2(r->file, p, H5P_DEFAULT);
  if (d < 0) return FAIL(r, p, POSE_EIO, "cannot open dataset");
  pose_status st = POSE_OK;
  hid_t sp = H5Dget_space(d), ft = H5Dget_type(d), mt = -1, msp = -1;
  int64_t *ints = NULL;
  const void *src = v->data;
  hsize_t cur = 0, maxd = 0;
  if (H5Sget_simple_extent_ndims(sp) != 1 || (H5Sget_simple_extent_dims(sp, &cur, &maxd), maxd != H5S_UNLIMITED)) {
    st = pose_error(POSE_EINVAL, "results file '%s': cannot append to '%s': not an extendable 1-D dataset (made by "
                    "write, not append?)", r->filename, p);
    goto done;
  }
  H5T_class_t cls = H5Tget_class(ft);
  if (cls != H5T_INTEGER && cls != H5T_FLOAT) {
    st = pose_error(POSE_EINVAL, "results file '%s': cannot append numbers to '%s': it holds non-numeric values", r->filename, p);
    goto done;
  }
  if (cls == H5T_INTEGER && v->type != POSE_RESULTS_I64) {
    /* integer logs (steps) stay exact: accept floats only when they are whole numbers */
    ints = malloc((n ? n : 1) * sizeof *ints);
    if (!ints) { st = pose_error(POSE_ENOMEM, "results: out of memory"); goto done; }
    for (hsize_t i = 0; i < n; i++) {
      double x = v->type == POSE_RESULTS_F64 ? ((const double *)v->data)[i] : ((const float *)v->data)[i];
      if (!(x == floor(x)) || fabs(x) > 9.2e18) {
        st = pose_error(POSE_EINVAL, "results file '%s': cannot append %.17g to '%s': it holds integers", r->filename, x, p);
        goto done;
      }
      ints[i] = (int64_t)x;
    }
    src = ints;
    mt = mem_type(POSE_RESULTS_I64);
  } else {
    mt = mem_type(v->type);
  }
  if (n == 0) goto done;
  hsize_t newsize = cur + n;
  if (H5Dset_extent(d, &newsize) < 0) { st = FAIL(r, p, POSE_EIO, "cannot extend"); goto done; }
  H5Sclose(sp);
  sp = H5Dget_space(d);
  H5Sselect_hyperslab(sp, H5S_SELECT_SET, &cur, NULL, &n, NULL);
  msp = H5Screate_simple(1, &n, NULL);
  if (H5Dwrite(d, mt, msp, sp, H5P_DEFAULT, src) < 0) st = FAIL(r, p, POSE_EIO, "cannot append");
done:
  free(ints);
  if (msp >= 0) H5Sclose(msp);
  if (mt >= 0) H5Tclose(mt);
  H5Tclose(ft);
  H5Sclose(sp);
  H5Dclose(d);
  return st;
}

pose_status pose_results_append(pose_results *r, const char *path, const pose_results_value *v) {
  POSE_TRY(need_writable(r));
  char *p;
  POSE_TRY(norm_path(r, path, &p));
  pose_status st = check_value(r, p, v);
  if (st == POSE_OK) st = append_at(r, p, v);
  if (st == POSE_OK) st = flush(r);
  free(p);
  return st;
}

pose_status pose_results_append_f64(pose_results *r, const char *path, double x) {
  pose_results_value v = {.type = POSE_RESULTS_F64, .data = &x};
  return pose_results_append(r, path, &v);
}

pose_status pose_results_append_i64(pose_results *r, const char *path, int64_t x) {
  pose_results_value v = {.type = POSE_RESULTS_I64, .data = &x};
  return pose_results_append(r, path, &v);
}

/* ---- attributes ------------------------------------------------------------------------------------------------ */

static pose_status check_attr_name(const pose_results *r, const char *name) {
  if (!name || !*name) return pose_error(POSE_EINVAL, "results file '%s': empty attribute name", r->filename);
  return POSE_OK;
}

pose_status pose_results_set_attr(pose_results *r, const char *path, const char *name, const pose_results_value *v) {
  POSE_TRY(need_writable(r));
  POSE_TRY(check_attr_name(r, name));
  char *p;
  POSE_TRY(norm_path(r, path, &p));
  hid_t o = -1;
  pose_status st = check_value(r, p, v);
  if (st == POSE_OK) st = open_obj(r, p, POSE_RESULTS_NONE, &o);
  if (st != POSE_OK) { free(p); return st; }
  htri_t e = H5Aexists(o, name);
  if (e < 0) st = FAIL(r, p, POSE_EIO, "cannot look up attribute '%s'", name);
  else if (e > 0 && H5Adelete(o, name) < 0) st = FAIL(r, p, POSE_EIO, "cannot replace attribute '%s'", name);
  if (st == POSE_OK) {
    hid_t ft = file_type(v->type), mt = mem_type(v->type), sp = make_space(v);
    hid_t a = H5Acreate2(o, name, ft, sp, H5P_DEFAULT, H5P_DEFAULT);
    if (a < 0) st = FAIL(r, p, POSE_EIO, "cannot create attribute '%s'", name);
    else {
      if (pose_results_value_numel(v) > 0 && H5Awrite(a, mt, v->data) < 0)
        st = FAIL(r, p, POSE_EIO, "cannot write attribute '%s'", name);
      H5Aclose(a);
    }
    H5Sclose(sp);
    H5Tclose(mt);
    H5Tclose(ft);
  }
  H5Oclose(o);
  if (st == POSE_OK) st = flush(r);
  free(p);
  return st;
}

pose_status pose_results_has_attr(pose_results *r, const char *path, const char *name, int *out) {
  POSE_TRY(need_file(r));
  POSE_TRY(check_attr_name(r, name));
  char *p;
  POSE_TRY(norm_path(r, path, &p));
  hid_t o;
  pose_status st = open_obj(r, p, POSE_RESULTS_NONE, &o);
  if (st == POSE_OK) {
    htri_t e = H5Aexists(o, name);
    if (e < 0) st = FAIL(r, p, POSE_EIO, "cannot look up attribute '%s'", name);
    else *out = e > 0;
    H5Oclose(o);
  }
  free(p);
  return st;
}

pose_status pose_results_get_attr(pose_results *r, const char *path, const char *name, pose_results_value *out) {
  POSE_TRY(need_file(r));
  if (!out) return pose_error(POSE_EINVAL, "results: NULL output");
  memset(out, 0, sizeof *out);
  POSE_TRY(check_attr_name(r, name));
  char *p;
  POSE_TRY(norm_path(r, path, &p));
  hid_t o;
  pose_status st = open_obj(r, p, POSE_RESULTS_NONE, &o);
  if (st != POSE_OK) { free(p); return st; }
  htri_t e = H5Aexists(o, name);
  if (e < 0) st = FAIL(r, p, POSE_EIO, "cannot look up attribute '%s'", name);
  else if (e == 0) st = pose_error(POSE_EINVAL, "results file '%s': '%s' has no attribute '%s'", r->filename, p, name);
  else {
    hid_t a = H5Aopen(o, name, H5P_DEFAULT);
    if (a < 0) st = FAIL(r, p, POSE_EIO, "cannot open attribute '%s'", name);
    else {
      char what[512];
      snprintf(what, sizeof what, "%s@%s", p, name);
      st = read_obj(r, a, 1, what, out);
      H5Aclose(a);
    }
  }
  H5Oclose(o);
  free(p);
  return st;
}

static herr_t attr_name_cb(hid_t loc, const char *name, const H5A_info_t *info, void *data) {
  (void)loc;
  (void)info;
  list_push(data, name);
  return 0;
}

pose_status pose_results_attr_names(pose_results *r, const char *path, pose_results_value *names) {
  POSE_TRY(need_file(r));
  if (!names) return pose_error(POSE_EINVAL, "results: NULL output");
  memset(names, 0, sizeof *names);
  char *p;
  POSE_TRY(norm_path(r, path, &p));
  hid_t o;
  pose_status st = open_obj(r, p, POSE_RESULTS_NONE, &o);
  if (st != POSE_OK) { free(p); return st; }
  str_list l = {0};
  hsize_t idx = 0;
  if (H5Aiterate2(o, H5_INDEX_NAME, H5_ITER_INC, &idx, attr_name_cb, &l) < 0)
    st = FAIL(r, p, POSE_EIO, "cannot list attributes");
  H5Oclose(o);
  free(p);
  if (st != POSE_OK) { list_free(&l); return st; }
  return list_finish(&l, names);
}

pose_status pose_results_set_attr_f64(pose_results *r, const char *path, const char *name, double x) {
  pose_results_value v = {.type = POSE_RESULTS_F64, .data = &x};
  return pose_results_set_attr(r, path, name, &v);
}

pose_status pose_results_set_attr_i64(pose_results *r, const char *path, const char *name, int64_t x) {
  pose_results_value v = {.type = POSE_RESULTS_I64, .data = &x};
  return pose_results_set_attr(r, path, name, &v);
}

pose_status pose_results_set_attr_str(pose_results *r, const char *path, const char *name, const char *s) {
  if (!s) return pose_error(POSE_EINVAL, "results: NULL string for attribute '%s'", name ? name : "?");
  pose_results_value v = {.type = POSE_RESULTS_STR, .data = (void *)&s};
  return pose_results_set_attr(r, path, name, &v);
}

/* Reads a scalar attribute, insisting on a scalar of a numeric (want_num) or string type. */
static pose_status get_scalar(pose_results *r, const char *path, const char *name, int want_num, pose_results_value *v) {
  POSE_TRY(pose_results_get_attr(r, path, name, v));
  int num = v->type != POSE_RESULTS_STR;
  if (pose_results_value_numel(v) != 1 || num != want_num) {
    pose_status st = pose_error(POSE_EINVAL, "results file '%s': attribute '%s' of '%s' is not a scalar %s (%s, %d-D)",
                                r->filename, name, path, want_num ? "number" : "string",
                                pose_results_type_name(v->type), v->ndim);
    pose_results_value_free(v);
    return st;
  }
  return POSE_OK;
}

pose_status pose_results_get_attr_f64(pose_results *r, const char *path, const char *name, double *out) {
  pose_results_value v;
  POSE_TRY(get_scalar(r, path, name, 1, &v));
  *out = v.type == POSE_RESULTS_I64 ? (double)*(int64_t *)v.data
       : v.type == POSE_RESULTS_F32 ? *(float *)v.data : *(double *)v.data;
  pose_results_value_free(&v);
  return POSE_OK;
}

pose_status pose_results_get_attr_i64(pose_results *r, const char *path, const char *name, int64_t *out) {
  pose_results_value v;
  POSE_TRY(get_scalar(r, path, name, 1, &v));
  pose_status st = POSE_OK;
  if (v.type == POSE_RESULTS_I64) *out = *(int64_t *)v.data;
  else {
    double x = v.type == POSE_RESULTS_F32 ? *(float *)v.data : *(double *)v.data;
    if (x == floor(x) && fabs(x) < 9.2e18) *out = (int64_t)x;
    else st = pose_error(POSE_EINVAL, "results file '%s': attribute '%s' of '%s' is %.17g, not an integer",
                         r->filename, name, path, x);
  }
  pose_results_value_free(&v);
  return st;
}

pose_status pose_results_get_attr_str(pose_results *r, const char *path, const char *name, char **out) {
  pose_results_value v;
  POSE_TRY(get_scalar(r, path, name, 0, &v));
  char **s = v.data;
  *out = s[0];
  s[0] = NULL; /* hand the string over */
  pose_results_value_free(&v);
  return POSE_OK;
}

/* ---- paper tables ---------------------------------------------------------------------------------------------- */

pose_status pose_results_table(pose_results *r, const char *name, int64_t rows, int64_t cols, const double *values,
                               const char *const *row_labels, const char *const *col_labels) {
  POSE_TRY(need_writable(r));
  if (!name || !*name || strchr(name, '/'))
    return pose_error(POSE_EINVAL, "results file '%s': table name '%s' must be non-empty and contain no '/'",
                      r->filename, name ? name : "(null)");
  if (rows < 0 || cols < 0) return pose_error(POSE_EINVAL, "results file '%s': table '%s': negative size", r->filename, name);
  if (!row_labels || !col_labels)
    return pose_error(POSE_EINVAL, "results file '%s': table '%s' needs row and column labels", r->filename, name);
  char path[1024];
  snprintf(path, sizeof path, "/tables/%s", name);
  pose_results_value v = {.type = POSE_RESULTS_F64, .ndim = 2, .dims = {rows, cols}, .data = (void *)values};
  pose_results_value rl = {.type = POSE_RESULTS_STR, .ndim = 1, .dims = {rows}, .data = (void *)row_labels};
  pose_results_value cl = {.type = POSE_RESULTS_STR, .ndim = 1, .dims = {cols}, .data = (void *)col_labels};
  POSE_TRY(check_value(r, path, &rl));
  POSE_TRY(check_value(r, path, &cl));
  POSE_TRY(pose_results_write(r, path, &v));
  POSE_TRY(pose_results_set_attr(r, path, "row_labels", &rl));
  return pose_results_set_attr(r, path, "col_labels", &cl);
}
