/* HDF5 results files: round trips of every value kind, attributes, extendable logs, tables, root attributes, error
 * paths (with HDF5's own error printing checked to be silent), and a child process SIGKILLed while appending. */
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "results.h"
#include "testutil.h"

static char dir[] = "/tmp/pose_test_results_XXXXXX";
static char *tmp(const char *name) {
  static char buf[8][512];
  static int k = 0;
  char *b = buf[k++ % 8];
  snprintf(b, 512, "%s/%s", dir, name);
  return b;
}

static int is_iso(const char *s) {
  /* 2024-05-01T12:34:56Z */
  if (strlen(s) != 20) return 0;
  for (int i = 0; i < 20; i++) {
    char c = s[i];
    int want_digit = !(i == 4 || i == 7 || i == 10 || i == 13 || i == 16 || i == 19);
    if (want_digit && (c < '0' || c > '9')) return 0;
  }
  return s[4] == '-' && s[10] == 'T' && s[19] == 'Z';
}

static int attr_str_is(pose_results *r, const char *path, const char *name, const char *want) {
  char *s = NULL;
  if (pose_results_get_attr_str(r, path, name, &s) != POSE_OK) return 0;
  int ok = strcmp(s, want) == 0;
  if (!ok) fprintf(stderr, "attribute %s@%s = '%s', expected '%s'\n", path, name, s, want);
  free(s);
  return ok;
}

static void test_root_attributes(void) {
  pose_results *r;
  pose_results_opts o = {.experiment = "ppl", .device = "cpu", .command = "pose run a.lua --x 1"};
  CHECK_OK(pose_results_open(&r, tmp("root.h5"), &o));
  CHECK(attr_str_is(r, "/", "experiment", "ppl"));
  CHECK(attr_str_is(r, "/", "device", "cpu"));
  CHECK(attr_str_is(r, "", "command", "pose run a.lua --x 1"));
  CHECK(attr_str_is(r, "/", "pose_version", POSE_VERSION));
  char *s = NULL;
  CHECK_OK(pose_results_get_attr_str(r, "/", "created", &s));
  CHECK(s && is_iso(s));
  free(s);
  CHECK_OK(pose_results_get_attr_str(r, "/", "git_commit", &s));
  CHECK(s && (strcmp(s, "unknown") == 0 || (strlen(s) >= 40 && strspn(s, "0123456789abcdef") == strlen(s))));
  free(s);
  /* `created` is kept on reopen; `command` is the last writer's; `experiment` stays when not given */
  CHECK_OK(pose_results_set_attr_str(r, "/", "created", "2000-01-01T00:00:00Z"));
  CHECK_OK(pose_results_close(r));
  pose_results_opts o2 = {.command = "second"};
  CHECK_OK(pose_results_open(&r, tmp("root.h5"), &o2));
  CHECK(attr_str_is(r, "/", "created", "2000-01-01T00:00:00Z"));
  CHECK(attr_str_is(r, "/", "command", "second"));
  CHECK(attr_str_is(r, "/", "experiment", "ppl"));
  CHECK_OK(pose_results_set_command(r, "third"));
  CHECK(attr_str_is(r, "/", "command", "third"));
  CHECK_OK(pose_results_close(r));
  /* mode "w" starts afresh; the default experiment name is the file's stem */
  pose_results_opts ow = {.mode = POSE_RESULTS_WRITE};
  CHECK_OK(pose_results_open(&r, tmp("root.h5"), &ow));
  CHECK(attr_str_is(r, "/", "experiment", "root"));
  CHECK(attr_str_is(r, "/", "command", "unknown"));
  CHECK_OK(pose_results_get_attr_str(r, "/", "created", &s));
  CHECK(strcmp(s, "2000-01-01T00:00:00Z") != 0);
  free(s);
  CHECK_OK(pose_results_close(r));
  /* mode "r" writes nothing */
  struct stat st0, st1;
  stat(tmp("root.h5"), &st0);
  pose_results_opts orr = {.mode = POSE_RESULTS_READ, .command = "reader"};
  CHECK_OK(pose_results_open(&r, tmp("root.h5"), &orr));
  CHECK(pose_results_readonly(r));
  CHECK(attr_str_is(r, "/", "command", "unknown"));
  CHECK_ERR(pose_results_group(r, "g"), POSE_EINVAL, "read-only");
  CHECK_ERR(pose_results_write_f64(r, "x", 1), POSE_EINVAL, "read-only");
  CHECK_ERR(pose_results_append_f64(r, "x", 1), POSE_EINVAL, "read-only");
  CHECK_ERR(pose_results_set_attr_i64(r, "/", "a", 1), POSE_EINVAL, "read-only");
  CHECK_ERR(pose_results_delete(r, "x"), POSE_EINVAL, "read-only");
  CHECK_OK(pose_results_flush(r));
  CHECK_OK(pose_results_close(r));
  stat(tmp("root.h5"), &st1);
  CHECK(st0.st_size == st1.st_size && st0.st_mtime == st1.st_mtime);
}

static void test_groups(pose_results *r) {
  pose_results_kind k;
  CHECK_OK(pose_results_group(r, "runs/a/train"));
  CHECK_OK(pose_results_kind_of(r, "/runs", &k));
  CHECK(k == POSE_RESULTS_GROUP);
  CHECK_OK(pose_results_kind_of(r, "runs/a/train/", &k));
  CHECK(k == POSE_RESULTS_GROUP);
  CHECK_OK(pose_results_kind_of(r, "/", &k));
  CHECK(k == POSE_RESULTS_GROUP);
  CHECK_OK(pose_results_kind_of(r, "runs/zzz/q", &k));
  CHECK(k == POSE_RESULTS_NONE);
  CHECK_OK(pose_results_group(r, "runs/a")); /* existing: fine */
  CHECK_OK(pose_results_group(r, "runs/b"));
  CHECK_OK(pose_results_write_f64(r, "runs/c", 1.0));
  pose_results_value names;
  CHECK_OK(pose_results_list(r, "runs", &names));
  CHECK(names.type == POSE_RESULTS_STR && names.ndim == 1 && names.dims[0] == 3);
  if (names.dims[0] == 3) {
    char **s = names.data;
    CHECK(!strcmp(s[0], "a") && !strcmp(s[1], "b") && !strcmp(s[2], "c"));
  }
  pose_results_value_free(&names);
  CHECK_OK(pose_results_list(r, "runs/b", &names));
  CHECK(names.dims[0] == 0);
  pose_results_value_free(&names);
  /* a dataset is neither a group nor a parent */
  CHECK_ERR(pose_results_group(r, "runs/c"), POSE_EINVAL, "is a dataset");
  CHECK_OK(pose_results_kind_of(r, "runs/c/x", &k));
  CHECK(k == POSE_RESULTS_NONE);
  CHECK_ERR(pose_results_list(r, "runs/c", &names), POSE_EINVAL, "not a group");
  CHECK_ERR(pose_results_list(r, "nope", &names), POSE_EINVAL, "no object '/nope'");
  CHECK_ERR(pose_results_kind_of(r, "a//b", &k), POSE_EINVAL, "empty component");
  /* delete */
  CHECK_OK(pose_results_delete(r, "runs/b"));
  CHECK_OK(pose_results_kind_of(r, "runs/b", &k));
  CHECK(k == POSE_RESULTS_NONE);
  CHECK_ERR(pose_results_delete(r, "runs/b"), POSE_EINVAL, "no such object");
  CHECK_ERR(pose_results_delete(r, "/"), POSE_EINVAL, "root");
}

static void test_datasets(pose_results *r) {
  pose_results_value v;
  /* scalars */
  CHECK_OK(pose_results_write_f64(r, "s/f64", 0.1));
  CHECK_OK(pose_results_read(r, "s/f64", &v));
  CHECK(v.type == POSE_RESULTS_F64 && v.ndim == 0 && *(double *)v.data == 0.1);
  pose_results_value_free(&v);
  CHECK_OK(pose_results_write_i64(r, "s/i64", -9007199254740993LL));
  CHECK_OK(pose_results_read(r, "/s/i64", &v));
  CHECK(v.type == POSE_RESULTS_I64 && v.ndim == 0 && *(int64_t *)v.data == -9007199254740993LL);
  pose_results_value_free(&v);
  CHECK_OK(pose_results_write_str(r, "s/str", "héllo \"x\""));
  CHECK_OK(pose_results_read(r, "s/str", &v));
  CHECK(v.type == POSE_RESULTS_STR && v.ndim == 0 && !strcmp(((char **)v.data)[0], "héllo \"x\""));
  pose_results_value_free(&v);
  /* arrays */
  double d[6] = {1, 2.5, -3, 1e300, 0, -0.0};
  pose_results_value w = {.type = POSE_RESULTS_F64, .ndim = 2, .dims = {2, 3}, .data = d};
  CHECK_OK(pose_results_write(r, "a/f64", &w));
  CHECK_OK(pose_results_read(r, "a/f64", &v));
  CHECK(v.type == POSE_RESULTS_F64 && v.ndim == 2 && v.dims[0] == 2 && v.dims[1] == 3);
  CHECK(v.data && !memcmp(v.data, d, sizeof d));
  pose_results_value_free(&v);
  float f[4] = {1.5f, -2.25f, 3e-8f, 7};
  w = (pose_results_value){.type = POSE_RESULTS_F32, .ndim = 1, .dims = {4}, .data = f};
  CHECK_OK(pose_results_write(r, "a/f32", &w));
  CHECK_OK(pose_results_read(r, "a/f32", &v));
  CHECK(v.type == POSE_RESULTS_F32 && v.ndim == 1 && v.dims[0] == 4 && !memcmp(v.data, f, sizeof f));
  pose_results_value_free(&v);
  int64_t ix[24];
  for (int i = 0; i < 24; i++) ix[i] = (int64_t)i * 1000000000000LL - 7;
  w = (pose_results_value){.type = POSE_RESULTS_I64, .ndim = 3, .dims = {2, 3, 4}, .data = ix};
  CHECK_OK(pose_results_write(r, "a/i64", &w));
  CHECK_OK(pose_results_read(r, "a/i64", &v));
  CHECK(v.type == POSE_RESULTS_I64 && v.ndim == 3 && v.dims[2] == 4 && !memcmp(v.data, ix, sizeof ix));
  pose_results_value_free(&v);
  const char *strs[3] = {"wiki", "", "pg19 ✓"};
  w = (pose_results_value){.type = POSE_RESULTS_STR, .ndim = 1, .dims = {3}, .data = strs};
  CHECK_OK(pose_results_write(r, "a/str", &w));
  CHECK_OK(pose_results_read(r, "a/str", &v));
  CHECK(v.type == POSE_RESULTS_STR && v.dims[0] == 3);
  if (v.dims[0] == 3) for (int i = 0; i < 3; i++) CHECK(!strcmp(((char **)v.data)[i], strs[i]));
  pose_results_value_free(&v);
  /* empty array */
  w = (pose_results_value){.type = POSE_RESULTS_F64, .ndim = 1, .dims = {0}, .data = NULL};
  CHECK_OK(pose_results_write(r, "a/empty", &w));
  CHECK_OK(pose_results_read(r, "a/empty", &v));
  CHECK(v.ndim == 1 && v.dims[0] == 0);
  pose_results_value_free(&v);
  /* replacing a dataset with another shape and type */
  CHECK_OK(pose_results_write_str(r, "a/f64", "now a string"));
  CHECK_OK(pose_results_read(r, "a/f64", &v));
  CHECK(v.type == POSE_RESULTS_STR && v.ndim == 0);
  pose_results_value_free(&v);
  /* errors */
  CHECK_ERR(pose_results_read(r, "a/missing", &v), POSE_EINVAL, "no object '/a/missing'");
  CHECK(strstr(pose_error_message(), dir) != NULL); /* names the file */
  CHECK_ERR(pose_results_read(r, "a", &v), POSE_EINVAL, "is a group, not a dataset");
  CHECK_ERR(pose_results_write_f64(r, "a", 1), POSE_EINVAL, "is a group");
  CHECK_ERR(pose_results_write_f64(r, "/", 1), POSE_EINVAL, "root");
  CHECK_ERR(pose_results_write_f64(r, "s/f64/below", 1), POSE_EIO, "cannot create dataset");
  w = (pose_results_value){.type = POSE_RESULTS_F64, .ndim = 5, .dims = {1, 1, 1, 1}, .data = d};
  CHECK_ERR(pose_results_write(r, "x", &w), POSE_EINVAL, "5 dimensions");
  w = (pose_results_value){.type = POSE_RESULTS_F64, .ndim = 1, .dims = {-1}, .data = d};
  CHECK_ERR(pose_results_write(r, "x", &w), POSE_EINVAL, "negative dimension");
  w = (pose_results_value){.type = POSE_RESULTS_F64, .ndim = 1, .dims = {2}, .data = NULL};
  CHECK_ERR(pose_results_write(r, "x", &w), POSE_EINVAL, "NULL data");
  w = (pose_results_value){.type = (pose_results_type)9, .ndim = 0, .data = d};
  CHECK_ERR(pose_results_write(r, "x", &w), POSE_EINVAL, "unknown value type");
  const char *bad[2] = {"a", NULL};
  w = (pose_results_value){.type = POSE_RESULTS_STR, .ndim = 1, .dims = {2}, .data = bad};
  CHECK_ERR(pose_results_write(r, "x", &w), POSE_EINVAL, "string 1 is NULL");
  pose_results_kind k;
  CHECK_OK(pose_results_kind_of(r, "x", &k));
  CHECK(k == POSE_RESULTS_NONE);
}

static void test_attributes(pose_results *r) {
  pose_results_value v;
  CHECK_OK(pose_results_group(r, "g"));
  CHECK_OK(pose_results_write_f64(r, "g/d", 3));
  const char *paths[3] = {"/", "g", "g/d"};
  for (int i = 0; i < 3; i++) {
    const char *p = paths[i];
    double x;
    int64_t n;
    CHECK_OK(pose_results_set_attr_f64(r, p, "num", 2.5));
    CHECK_OK(pose_results_get_attr_f64(r, p, "num", &x));
    CHECK(x == 2.5);
    CHECK_ERR(pose_results_get_attr_i64(r, p, "num", &n), POSE_EINVAL, "not an integer");
    CHECK_OK(pose_results_set_attr_i64(r, p, "int", INT64_MAX));
    CHECK_OK(pose_results_get_attr_i64(r, p, "int", &n));
    CHECK(n == INT64_MAX);
    CHECK_OK(pose_results_set_attr_i64(r, p, "small", 7));
    CHECK_OK(pose_results_get_attr_f64(r, p, "small", &x));
    CHECK(x == 7.0);
    CHECK_OK(pose_results_set_attr_str(r, p, "s", "{\"a\": 1}"));
    CHECK(attr_str_is(r, p, "s", "{\"a\": 1}"));
    double arr[3] = {0.5, 1.5, 2.5};
    pose_results_value w = {.type = POSE_RESULTS_F64, .ndim = 1, .dims = {3}, .data = arr};
    CHECK_OK(pose_results_set_attr(r, p, "farr", &w));
    CHECK_OK(pose_results_get_attr(r, p, "farr", &v));
    CHECK(v.type == POSE_RESULTS_F64 && v.ndim == 1 && v.dims[0] == 3 && !memcmp(v.data, arr, sizeof arr));
    pose_results_value_free(&v);
    int64_t iarr[2] = {2048, 4096};
    w = (pose_results_value){.type = POSE_RESULTS_I64, .ndim = 1, .dims = {2}, .data = iarr};
    CHECK_OK(pose_results_set_attr(r, p, "iarr", &w));
    CHECK_OK(pose_results_get_attr(r, p, "iarr", &v));
    CHECK(v.type == POSE_RESULTS_I64 && v.dims[0] == 2 && !memcmp(v.data, iarr, sizeof iarr));
    pose_results_value_free(&v);
    const char *sarr[2] = {"sliding", "truncate"};
    w = (pose_results_value){.type = POSE_RESULTS_STR, .ndim = 1, .dims = {2}, .data = sarr};
    CHECK_OK(pose_results_set_attr(r, p, "sarr", &w));
    CHECK_OK(pose_results_get_attr(r, p, "sarr", &v));
    CHECK(v.type == POSE_RESULTS_STR && v.dims[0] == 2 && !strcmp(((char **)v.data)[1], "truncate"));
    pose_results_value_free(&v);
    w = (pose_results_value){.type = POSE_RESULTS_F64, .ndim = 1, .dims = {0}, .data = NULL};
    CHECK_OK(pose_results_set_attr(r, p, "empty", &w));
    CHECK_OK(pose_results_get_attr(r, p, "empty", &v));
    CHECK(v.ndim == 1 && v.dims[0] == 0);
    pose_results_value_free(&v);
    /* replacing changes the type */
    CHECK_OK(pose_results_set_attr_str(r, p, "num", "now text"));
    CHECK(attr_str_is(r, p, "num", "now text"));
    CHECK_ERR(pose_results_get_attr_f64(r, p, "num", &x), POSE_EINVAL, "not a scalar number");
    CHECK_ERR(pose_results_get_attr_f64(r, p, "farr", &x), POSE_EINVAL, "not a scalar number");
    int has = -1;
    CHECK_OK(pose_results_has_attr(r, p, "num", &has));
    CHECK(has == 1);
    CHECK_OK(pose_results_has_attr(r, p, "nope", &has));
    CHECK(has == 0);
    CHECK_ERR(pose_results_get_attr(r, p, "nope", &v), POSE_EINVAL, "has no attribute 'nope'");
  }
  pose_results_value names;
  CHECK_OK(pose_results_attr_names(r, "g/d", &names));
  const char *want[] = {"empty", "farr", "iarr", "int", "num", "s", "sarr", "small"};
  CHECK(names.dims[0] == 8);
  if (names.dims[0] == 8) for (int i = 0; i < 8; i++) CHECK(!strcmp(((char **)names.data)[i], want[i]));
  pose_results_value_free(&names);
  CHECK_ERR(pose_results_set_attr_f64(r, "missing/obj", "a", 1), POSE_EINVAL, "no object '/missing/obj'");
  CHECK_ERR(pose_results_set_attr_f64(r, "g", "", 1), POSE_EINVAL, "empty attribute name");
  CHECK_ERR(pose_results_attr_names(r, "nothing", &names), POSE_EINVAL, "no object");
  char *s;
  CHECK_ERR(pose_results_get_attr_str(r, "g", "int", &s), POSE_EINVAL, "not a scalar string");
}

static void test_append(pose_results *r) {
  pose_results_value v;
  CHECK_OK(pose_results_append_f64(r, "runs/x/train/loss", 2.5));
  double more[3] = {2.0, 1.5, 1.25};
  pose_results_value w = {.type = POSE_RESULTS_F64, .ndim = 1, .dims = {3}, .data = more};
  CHECK_OK(pose_results_append(r, "runs/x/train/loss", &w));
  int64_t step = 4;
  w = (pose_results_value){.type = POSE_RESULTS_I64, .data = &step};
  CHECK_OK(pose_results_append(r, "runs/x/train/loss", &w)); /* integers into a float log: converted */
  CHECK_OK(pose_results_read(r, "runs/x/train/loss", &v));
  CHECK(v.type == POSE_RESULTS_F64 && v.ndim == 1 && v.dims[0] == 5);
  if (v.dims[0] == 5) {
    double *x = v.data;
    CHECK(x[0] == 2.5 && x[1] == 2.0 && x[3] == 1.25 && x[4] == 4.0);
  }
  pose_results_value_free(&v);
  /* integer logs */
  for (int64_t i = 0; i < 2500; i++) CHECK_OK(pose_results_append_i64(r, "runs/x/train/step", i * 10));
  CHECK_OK(pose_results_append_f64(r, "runs/x/train/step", 25000.0)); /* whole float: fine */
  CHECK_ERR(pose_results_append_f64(r, "runs/x/train/step", 0.5), POSE_EINVAL, "holds integers");
  CHECK_OK(pose_results_read(r, "runs/x/train/step", &v));
  CHECK(v.type == POSE_RESULTS_I64 && v.dims[0] == 2501);
  if (v.dims[0] == 2501) CHECK(((int64_t *)v.data)[1234] == 12340 && ((int64_t *)v.data)[2500] == 25000);
  pose_results_value_free(&v);
  /* f32 logs stay f32 */
  float f = 0.25f;
  w = (pose_results_value){.type = POSE_RESULTS_F32, .data = &f};
  CHECK_OK(pose_results_append(r, "f32log", &w));
  CHECK_OK(pose_results_append(r, "f32log", &w));
  CHECK_OK(pose_results_read(r, "f32log", &v));
  CHECK(v.type == POSE_RESULTS_F32 && v.dims[0] == 2 && ((float *)v.data)[1] == 0.25f);
  pose_results_value_free(&v);
  /* an empty append creates the dataset with no rows */
  w = (pose_results_value){.type = POSE_RESULTS_F64, .ndim = 1, .dims = {0}, .data = NULL};
  CHECK_OK(pose_results_append(r, "emptylog", &w));
  CHECK_OK(pose_results_read(r, "emptylog", &v));
  CHECK(v.ndim == 1 && v.dims[0] == 0);
  pose_results_value_free(&v);
  /* errors */
  CHECK_OK(pose_results_write_f64(r, "fixed", 1));
  CHECK_ERR(pose_results_append_f64(r, "fixed", 2), POSE_EINVAL, "not an extendable 1-D dataset");
  CHECK_ERR(pose_results_append_f64(r, "runs/x", 2), POSE_EINVAL, "is a group");
  const char *s = "x";
  w = (pose_results_value){.type = POSE_RESULTS_STR, .data = &s};
  CHECK_ERR(pose_results_append(r, "slog", &w), POSE_EINVAL, "cannot append strings");
  double m[4] = {0};
  w = (pose_results_value){.type = POSE_RESULTS_F64, .ndim = 2, .dims = {2, 2}, .data = m};
  CHECK_ERR(pose_results_append(r, "mlog", &w), POSE_EINVAL, "2-D");
  CHECK_OK(pose_results_write_str(r, "strds", "x"));
  CHECK_ERR(pose_results_append_f64(r, "strds", 1), POSE_EINVAL, "not an extendable");
}

static void test_table(pose_results *r) {
  double vals[6] = {7.5, 6.25, 0.0 / 0.0, 5.0, 4.5, 4.0};
  const char *rows[2] = {"PoSE-linear", "full-length"};
  const char *cols[3] = {"2k", "4k", "8k"};
  CHECK_OK(pose_results_table(r, "table1", 2, 3, vals, rows, cols));
  pose_results_value v;
  CHECK_OK(pose_results_read(r, "tables/table1", &v));
  CHECK(v.type == POSE_RESULTS_F64 && v.ndim == 2 && v.dims[0] == 2 && v.dims[1] == 3);
  if (v.data) CHECK(((double *)v.data)[0] == 7.5 && isnan(((double *)v.data)[2]) && ((double *)v.data)[5] == 4.0);
  pose_results_value_free(&v);
  CHECK_OK(pose_results_get_attr(r, "tables/table1", "row_labels", &v));
  CHECK(v.type == POSE_RESULTS_STR && v.dims[0] == 2 && !strcmp(((char **)v.data)[0], "PoSE-linear"));
  pose_results_value_free(&v);
  CHECK_OK(pose_results_get_attr(r, "tables/table1", "col_labels", &v));
  CHECK(v.dims[0] == 3 && !strcmp(((char **)v.data)[2], "8k"));
  pose_results_value_free(&v);
  /* rewriting a table replaces it */
  CHECK_OK(pose_results_table(r, "table1", 1, 1, vals, rows, cols));
  CHECK_OK(pose_results_read(r, "tables/table1", &v));
  CHECK(v.dims[0] == 1 && v.dims[1] == 1);
  pose_results_value_free(&v);
  CHECK_ERR(pose_results_table(r, "a/b", 1, 1, vals, rows, cols), POSE_EINVAL, "contain no '/'");
  CHECK_ERR(pose_results_table(r, "", 1, 1, vals, rows, cols), POSE_EINVAL, "non-empty");
  CHECK_ERR(pose_results_table(r, "t", 1, 1, vals, NULL, cols), POSE_EINVAL, "labels");
  CHECK_ERR(pose_results_table(r, "t", -1, 1, vals, rows, cols), POSE_EINVAL, "negative");
}

/* Runs fn with fd 2 redirected to a file; returns how many bytes it printed there. */
static long stderr_bytes_during(void (*fn)(void)) {
  fflush(stderr);
  int saved = dup(2);
  char *path = tmp("stderr.txt");
  int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0600);
  dup2(fd, 2);
  close(fd);
  fn();
  fflush(stderr);
  dup2(saved, 2);
  close(saved);
  struct stat s;
  stat(path, &s);
  return (long)s.st_size;
}

static int err_checks_ok;
static void open_errors(void) {
  /* failures that go through HDF5; checked quietly here and for their messages below */
  pose_results *r = NULL;
  FILE *f = fopen(tmp("not.h5"), "w");
  fputs("this is not an HDF5 file\n", f);
  fclose(f);
  err_checks_ok = 0;
  err_checks_ok += pose_results_open(&r, tmp("not.h5"), NULL) == POSE_EFORMAT && strstr(pose_error_message(), "not an HDF5 file");
  pose_results_opts ro = {.mode = POSE_RESULTS_READ};
  err_checks_ok += pose_results_open(&r, tmp("not.h5"), &ro) == POSE_EFORMAT;
  err_checks_ok += pose_results_open(&r, tmp("missing.h5"), &ro) == POSE_EIO && strstr(pose_error_message(), "missing.h5");
  pose_results_opts wo = {.mode = POSE_RESULTS_WRITE};
  pose_status st = pose_results_open(&r, tmp("no/such/dir/x.h5"), &wo);
  err_checks_ok += st == POSE_EIO && strstr(pose_error_message(), "cannot create") && strstr(pose_error_message(), "[HDF5:") &&
                   strstr(pose_error_message(), "no/such/dir/x.h5");
  err_checks_ok += r == NULL;
}

static void test_errors(void) {
  long printed = stderr_bytes_during(open_errors);
  CHECK(err_checks_ok == 5);
  CHECK(printed == 0); /* HDF5's automatic error stack printing is off */
  pose_results *r;
  CHECK_ERR(pose_results_open(&r, tmp("not.h5"), NULL), POSE_EFORMAT, "not.h5' is not an HDF5 file");
  CHECK_ERR(pose_results_open(&r, "", NULL), POSE_EINVAL, "empty file path");
  pose_results_opts bad = {.mode = (pose_results_mode)7};
  CHECK_ERR(pose_results_open(&r, tmp("x.h5"), &bad), POSE_EINVAL, "unknown mode");
  CHECK_ERR(pose_results_flush(NULL), POSE_EINVAL, "NULL file handle");
  CHECK_OK(pose_results_close(NULL));
  /* an empty file (mkstemp, os.tmpname) is a new results file in mode "a", but not readable in mode "r" */
  FILE *ef = fopen(tmp("empty.h5"), "w");
  fclose(ef);
  pose_results_opts ro = {.mode = POSE_RESULTS_READ};
  CHECK_ERR(pose_results_open(&r, tmp("empty.h5"), &ro), POSE_EFORMAT, "not an HDF5 file");
  CHECK_OK(pose_results_open(&r, tmp("empty.h5"), NULL));
  CHECK_OK(pose_results_write_i64(r, "x", 5));
  CHECK_OK(pose_results_close(r));
  CHECK_OK(pose_results_open(&r, tmp("empty.h5"), &ro));
  int64_t got = 0;
  pose_results_value v;
  CHECK_OK(pose_results_read(r, "x", &v));
  if (v.data) got = *(int64_t *)v.data;
  CHECK(got == 5);
  pose_results_value_free(&v);
  CHECK_OK(pose_results_close(r));
  /* "w" replaces a non-HDF5 file */
  pose_results_opts wo = {.mode = POSE_RESULTS_WRITE};
  CHECK_OK(pose_results_open(&r, tmp("not.h5"), &wo));
  CHECK_OK(pose_results_close(r));
}

/* ---- crash safety ---------------------------------------------------------------------------------------------- */

/* The child appends rows (flushing after each), tells the parent once `signal_after` rows are flushed, and keeps
 * appending until it is killed. */
static void child_writer(const char *path, int wfd, int signal_after) {
  pose_results *r;
  pose_results_opts o = {.mode = POSE_RESULTS_WRITE, .experiment = "kill", .command = "child"};
  if (pose_results_open(&r, path, &o) != POSE_OK) _exit(2);
  if (pose_results_set_attr_str(r, "/", "note", "before rows") != POSE_OK) _exit(2);
  for (int64_t i = 0;; i++) {
    if (pose_results_append_i64(r, "runs/k/train/step", i) != POSE_OK) _exit(3);
    if (pose_results_append_f64(r, "runs/k/train/loss", 10.0 / (double)(i + 1)) != POSE_OK) _exit(3);
    if (i + 1 == signal_after) {
      char c = 'x';
      if (write(wfd, &c, 1) != 1) _exit(4);
    }
    if (i > 2000000) _exit(5); /* never reached in practice: the parent kills us long before */
  }
}

static void kill_once(int signal_after, int extra_usleep) {
  char name[64];
  snprintf(name, sizeof name, "kill_%d.h5", signal_after);
  char path[512];
  snprintf(path, sizeof path, "%s", tmp(name));
  int fds[2];
  if (pipe(fds) != 0) { CHECK(0); return; }
  pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    child_writer(path, fds[1], signal_after);
    _exit(0);
  }
  close(fds[1]);
  char c = 0;
  ssize_t got = read(fds[0], &c, 1);
  close(fds[0]);
  CHECK(got == 1);
  if (extra_usleep) usleep((useconds_t)extra_usleep); /* let it get further, into the middle of some append */
  kill(pid, SIGKILL);
  int status = 0;
  waitpid(pid, &status, 0);
  CHECK(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

  pose_results *r;
  pose_results_opts ro = {.mode = POSE_RESULTS_READ};
  CHECK_OK(pose_results_open(&r, path, &ro));
  if (!r) return;
  CHECK(attr_str_is(r, "/", "note", "before rows"));
  CHECK(attr_str_is(r, "/", "command", "child"));
  pose_results_value steps, loss;
  CHECK_OK(pose_results_read(r, "runs/k/train/step", &steps));
  CHECK_OK(pose_results_read(r, "runs/k/train/loss", &loss));
  CHECK(steps.ndim == 1 && steps.dims[0] >= signal_after);
  CHECK(loss.ndim == 1 && loss.dims[0] >= signal_after);
  /* the step column is appended first, so it may lead the loss column by one row */
  CHECK(steps.dims[0] == loss.dims[0] || steps.dims[0] == loss.dims[0] + 1);
  int ok = steps.data && loss.data;
  for (int64_t i = 0; ok && i < steps.dims[0]; i++) ok = ((int64_t *)steps.data)[i] == i;
  for (int64_t i = 0; ok && i < loss.dims[0]; i++) ok = ((double *)loss.data)[i] == 10.0 / (double)(i + 1);
  CHECK(ok);
  pose_results_value_free(&steps);
  pose_results_value_free(&loss);
  CHECK_OK(pose_results_close(r));
  /* another HDF5 reader agrees, when the tools are installed */
  if (system("command -v h5dump >/dev/null 2>&1") == 0) {
    char cmd[700];
    snprintf(cmd, sizeof cmd, "h5dump -d /runs/k/train/loss '%s' >/dev/null 2>&1", path);
    CHECK(system(cmd) == 0);
  }
  /* and the file can be reopened for writing and extended */
  CHECK_OK(pose_results_open(&r, path, NULL));
  CHECK_OK(pose_results_append_i64(r, "runs/k/train/step", -1));
  CHECK_OK(pose_results_close(r));
}

static void test_kill(void) {
  kill_once(50, 0);
  kill_once(300, 2000);
  kill_once(1, 500);
}

int main(void) {
  if (!mkdtemp(dir)) { perror("mkdtemp"); return 1; }
  test_root_attributes();
  pose_results *r;
  pose_results_opts o = {.experiment = "unit", .device = "cpu", .command = "test_results"};
  CHECK_OK(pose_results_open(&r, tmp("unit.h5"), &o));
  if (r) {
    test_groups(r);
    test_datasets(r);
    test_attributes(r);
    test_append(r);
    test_table(r);
    CHECK_OK(pose_results_close(r));
  }
  /* everything survives a reopen */
  pose_results_opts ro = {.mode = POSE_RESULTS_READ};
  CHECK_OK(pose_results_open(&r, tmp("unit.h5"), &ro));
  if (r) {
    pose_results_value v;
    CHECK_OK(pose_results_read(r, "runs/x/train/step", &v));
    CHECK(v.dims[0] == 2501);
    pose_results_value_free(&v);
    CHECK(attr_str_is(r, "g/d", "s", "{\"a\": 1}"));
    CHECK_OK(pose_results_close(r));
  }
  test_errors();
  test_kill();
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
  return test_summary("test_results");
}
