/* Hugging Face checkpoint directories: config.json + model.safetensors, or shards named by
 * model.safetensors.index.json. Reading validates everything up front (safetensors.c checks each file; here the
 * index and the cross-shard rules); saving writes temporary files, fsyncs them, and renames them into place. */
#define _GNU_SOURCE
#include "checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "safetensors.h"

#define SINGLE_NAME "model.safetensors"
#define INDEX_NAME "model.safetensors.index.json"

typedef struct {
  const char *name;
  const pose_st_file *file;
  const pose_st_tensor *t;
} ck_entry;

struct pose_checkpoint {
  char *dir;
  cJSON *config;
  pose_st_file **files;
  size_t nfiles;
  ck_entry *entries; /* sorted by name */
  size_t n;
};

/* ---- small file helpers ------------------------------------------------------------------------------------- */

static char *path_join(const char *dir, const char *name) {
  size_t a = strlen(dir), b = strlen(name);
  char *p = malloc(a + b + 2);
  if (!p) return NULL;
  memcpy(p, dir, a);
  size_t k = a;
  if (a && dir[a - 1] != '/') p[k++] = '/';
  memcpy(p + k, name, b + 1);
  return p;
}

static int is_file(const char *path) {
  struct stat sb;
  return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

static pose_status read_text(const char *path, char **out) {
  *out = NULL;
  FILE *fp = fopen(path, "rb");
  if (!fp) return pose_error(POSE_EIO, "%s: cannot open: %s", path, strerror(errno));
  size_t cap = 1 << 16, len = 0;
  char *buf = malloc(cap);
  for (;;) {
    if (!buf) { fclose(fp); return pose_error(POSE_ENOMEM, "%s: out of memory", path); }
    len += fread(buf + len, 1, cap - 1 - len, fp);
    if (len < cap - 1) break;
    if (cap >= POSE_ST_MAX_HEADER) { /* a config or index this big is not a config or index */
      free(buf);
      fclose(fp);
      return pose_error(POSE_EFORMAT, "%s: larger than %llu bytes; not a JSON config", path, POSE_ST_MAX_HEADER);
    }
    char *nb = realloc(buf, cap * 2);
    if (!nb) free(buf);
    buf = nb;
    cap *= 2;
  }
  int err = ferror(fp);
  fclose(fp);
  if (err) { free(buf); return pose_error(POSE_EIO, "%s: read failed", path); }
  buf[len] = 0;
  *out = buf;
  return POSE_OK;
}

/* Parses a JSON object file; errors give line and column, which is what one needs to fix a hand-edited config. */
static pose_status read_json_object(const char *path, cJSON **out) {
  char *text;
  POSE_TRY(read_text(path, &text));
  const char *end = NULL;
  cJSON *j = cJSON_ParseWithOpts(text, &end, 1);
  if (!j) {
    const char *at = end && end >= text ? end : text;
    int line = 1, col = 1;
    for (const char *p = text; p < at && *p; p++) {
      if (*p == '\n') { line++; col = 1; }
      else col++;
    }
    char near[41];
    snprintf(near, sizeof near, "%.40s", at);
    for (char *p = near; *p; p++)
      if ((unsigned char)*p < 32) *p = ' ';
    free(text);
    return pose_error(POSE_EFORMAT, "%s: not valid JSON (error at line %d, column %d, near \"%s\")", path, line, col,
                      near);
  }
  free(text);
  if (!cJSON_IsObject(j)) {
    cJSON_Delete(j);
    return pose_error(POSE_EFORMAT, "%s: the top-level JSON value is not an object", path);
  }
  *out = j;
  return POSE_OK;
}

/* ---- reading ------------------------------------------------------------------------------------------------ */

void pose_checkpoint_close(pose_checkpoint *c) {
  if (!c) return;
  for (size_t i = 0; i < c->nfiles; i++) pose_st_close(c->files[i]);
  free(c->files);
  free(c->entries);
  cJSON_Delete(c->config);
  free(c->dir);
  free(c);
}

static pose_status add_file(pose_checkpoint *c, const char *path, pose_st_file **out) {
  pose_st_file **nf = realloc(c->files, (c->nfiles + 1) * sizeof *nf);
  if (!nf) return pose_error(POSE_ENOMEM, "out of memory");
  c->files = nf;
  POSE_TRY(pose_st_open(path, &c->files[c->nfiles]));
  *out = c->files[c->nfiles++];
  return POSE_OK;
}

/* Shard names come from a file we did not write: keep them inside the checkpoint directory. */
static int plain_file_name(const char *s) {
  return s[0] && !strchr(s, '/') && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

static pose_status load_index(pose_checkpoint *c, const char *index_path) {
  cJSON *idx;
  POSE_TRY(read_json_object(index_path, &idx));
  pose_status st = POSE_OK;
  const cJSON *wm = cJSON_GetObjectItemCaseSensitive(idx, "weight_map");
  if (!cJSON_IsObject(wm) || !wm->child) {
    st = pose_error(POSE_EFORMAT, "%s: \"weight_map\" is missing, not an object, or empty", index_path);
    goto done;
  }
  for (const cJSON *e = wm->child; e; e = e->next) {
    if (!cJSON_IsString(e) || !plain_file_name(e->valuestring)) {
      st = pose_error(POSE_EFORMAT, "%s: weight_map entry for tensor '%s' must be the file name of a shard in the "
                      "checkpoint directory", index_path, e->string);
      goto done;
    }
    pose_st_file *shard = NULL;
    for (size_t i = 0; i < c->nfiles && !shard; i++) {
      const char *base = strrchr(c->files[i]->path, '/');
      if (strcmp(base ? base + 1 : c->files[i]->path, e->valuestring) == 0) shard = c->files[i];
    }
    if (!shard) {
      char *p = path_join(c->dir, e->valuestring);
      if (!p) { st = pose_error(POSE_ENOMEM, "out of memory"); goto done; }
      if (!is_file(p)) {
        st = pose_error(POSE_EIO, "%s: weight_map puts tensor '%s' in shard '%s', which does not exist in %s",
                        index_path, e->string, e->valuestring, c->dir);
        free(p);
        goto done;
      }
      st = add_file(c, p, &shard);
      free(p);
      if (st != POSE_OK) goto done;
    }
    if (!pose_st_find(shard, e->string)) {
      st = pose_error(POSE_EFORMAT, "%s: weight_map puts tensor '%s' in shard '%s', but that shard has no such "
                      "tensor", index_path, e->string, e->valuestring);
      goto done;
    }
  }
done:
  cJSON_Delete(idx);
  return st;
}

static int cmp_entry(const void *a, const void *b) {
  return strcmp(((const ck_entry *)a)->name, ((const ck_entry *)b)->name);
}

/* One table of all tensors of all files; a name in two shards is ambiguous, so it is an error. */
static pose_status build_entries(pose_checkpoint *c) {
  size_t n = 0;
  for (size_t i = 0; i < c->nfiles; i++) n += c->files[i]->n;
  c->entries = calloc(n ? n : 1, sizeof *c->entries);
  if (!c->entries) return pose_error(POSE_ENOMEM, "out of memory");
  for (size_t i = 0; i < c->nfiles; i++)
    for (size_t k = 0; k < c->files[i]->n; k++)
      c->entries[c->n++] = (ck_entry){c->files[i]->tensors[k].name, c->files[i], &c->files[i]->tensors[k]};
  qsort(c->entries, c->n, sizeof *c->entries, cmp_entry);
  for (size_t i = 1; i < c->n; i++)
    if (strcmp(c->entries[i - 1].name, c->entries[i].name) == 0)
      return pose_error(POSE_EFORMAT, "%s: tensor '%s' appears in two shards, %s and %s; the checkpoint is ambiguous",
                        c->dir, c->entries[i].name, c->entries[i - 1].file->path, c->entries[i].file->path);
  return POSE_OK;
}

pose_status pose_checkpoint_open(const char *dir, pose_checkpoint **out) {
  if (!out) return pose_error(POSE_EINVAL, "pose_checkpoint_open: out is NULL");
  *out = NULL;
  if (!dir || !*dir) return pose_error(POSE_EINVAL, "pose_checkpoint_open: empty directory name");
  struct stat sb;
  if (stat(dir, &sb) != 0) return pose_error(POSE_EIO, "checkpoint directory %s: %s", dir, strerror(errno));
  if (!S_ISDIR(sb.st_mode))
    return pose_error(POSE_EINVAL, "%s is not a directory; a checkpoint is a directory holding config.json and "
                      "safetensors files", dir);
  pose_checkpoint *c = calloc(1, sizeof *c);
  if (!c || !(c->dir = strdup(dir))) {
    free(c);
    return pose_error(POSE_ENOMEM, "out of memory");
  }
  pose_status st;
  char *cfg = path_join(dir, "config.json"), *single = path_join(dir, SINGLE_NAME), *index = path_join(dir, INDEX_NAME);
  if (!cfg || !single || !index) { st = pose_error(POSE_ENOMEM, "out of memory"); goto done; }
  if (!is_file(cfg)) {
    st = pose_error(POSE_EIO, "%s: no config.json in the checkpoint directory; pose needs it for the architecture",
                    dir);
    goto done;
  }
  if ((st = read_json_object(cfg, &c->config)) != POSE_OK) goto done;
  /* transformers prefers the single file when both exist; so do we. */
  if (is_file(single)) {
    pose_st_file *f;
    st = add_file(c, single, &f);
  } else if (is_file(index)) {
    st = load_index(c, index);
  } else {
    char *bin = path_join(dir, "pytorch_model.bin");
    int has_bin = bin && is_file(bin);
    free(bin);
    st = pose_error(POSE_EIO, "%s: no %s or %s%s", dir, SINGLE_NAME, INDEX_NAME,
                    has_bin ? " (only pytorch_model.bin, which pose does not read: convert it to safetensors)" : "");
  }
  if (st == POSE_OK) st = build_entries(c);
done:
  free(cfg);
  free(single);
  free(index);
  if (st != POSE_OK) pose_checkpoint_close(c);
  else *out = c;
  return st;
}

const cJSON *pose_checkpoint_config(const pose_checkpoint *c) { return c->config; }
const char *pose_checkpoint_dir(const pose_checkpoint *c) { return c->dir; }
size_t pose_checkpoint_count(const pose_checkpoint *c) { return c->n; }
const char *pose_checkpoint_name(const pose_checkpoint *c, size_t i) { return i < c->n ? c->entries[i].name : NULL; }

static const ck_entry *find(const pose_checkpoint *c, const char *name) {
  if (!name || !c->n) return NULL;
  ck_entry key = {.name = name};
  return bsearch(&key, c->entries, c->n, sizeof key, cmp_entry);
}

int pose_checkpoint_has(const pose_checkpoint *c, const char *name) { return find(c, name) != NULL; }

const char *pose_checkpoint_st_dtype(const pose_checkpoint *c, const char *name) {
  const ck_entry *e = find(c, name);
  return e ? e->t->dtype : NULL;
}

/* A missing tensor is often a prefix mismatch ("model." or "transformer."): suggest the name that differs only so. */
static pose_status missing(const pose_checkpoint *c, const char *name) {
  const char *hint = NULL;
  size_t ln = strlen(name);
  for (size_t i = 0; i < c->n && !hint; i++) {
    const char *o = c->entries[i].name;
    size_t lo = strlen(o);
    if (lo > ln && strcmp(o + lo - ln, name) == 0 && o[lo - ln - 1] == '.') hint = o;
    if (ln > lo && strcmp(name + ln - lo, o) == 0 && name[ln - lo - 1] == '.') hint = o;
  }
  return pose_error(POSE_EINVAL, "tensor '%s' not found in checkpoint %s (%zu tensors)%s%s%s", name ? name : "(null)",
                    c->dir, c->n, hint ? "; did you mean '" : "", hint ? hint : "", hint ? "'?" : "");
}

static void fmt_shape(const int64_t *shape, int ndim, char *buf, size_t cap) {
  size_t k = (size_t)snprintf(buf, cap, "[");
  for (int i = 0; i < ndim && k < cap; i++) k += (size_t)snprintf(buf + k, cap - k, "%s%" PRId64, i ? ", " : "", shape[i]);
  if (k < cap) snprintf(buf + k, cap - k, "]");
}

pose_status pose_checkpoint_info(const pose_checkpoint *c, const char *name, pose_dtype *dtype, int *ndim,
                                 int64_t shape[4]) {
  const ck_entry *e = find(c, name);
  if (!e) return missing(c, name);
  if (e->t->pose_dtype < 0)
    return pose_error(POSE_EUNSUPPORTED, "%s: tensor '%s' has dtype %s, which pose has no type for", e->file->path,
                      name, e->t->dtype);
  if (e->t->ndim > 4)
    return pose_error(POSE_EUNSUPPORTED, "%s: tensor '%s' has %d dimensions; pose tensors have at most 4",
                      e->file->path, name, e->t->ndim);
  if (dtype) *dtype = (pose_dtype)e->t->pose_dtype;
  if (ndim) *ndim = e->t->ndim;
  if (shape)
    for (int i = 0; i < 4; i++) shape[i] = i < e->t->ndim ? e->t->shape[i] : 0;
  return POSE_OK;
}

pose_status pose_checkpoint_raw(const pose_checkpoint *c, const char *name, const void **data, size_t *nbytes) {
  const ck_entry *e = find(c, name);
  if (!e) return missing(c, name);
  if (data) *data = pose_st_data(e->file, e->t);
  if (nbytes) *nbytes = (size_t)(e->t->end - e->t->begin);
  return POSE_OK;
}

pose_status pose_checkpoint_read_f32(const pose_checkpoint *c, const char *name, int ndim, const int64_t *shape,
                                     float *dst) {
  if (ndim < 0 || ndim > POSE_ST_MAX_DIMS || (ndim && !shape))
    return pose_error(POSE_EINVAL, "pose_checkpoint_read_f32('%s'): bad expected shape (ndim %d)", name ? name : "",
                      ndim);
  const ck_entry *e = find(c, name);
  if (!e) return missing(c, name);
  const pose_st_tensor *t = e->t;
  if (t->pose_dtype != POSE_F32 && t->pose_dtype != POSE_BF16 && t->pose_dtype != POSE_F16)
    return pose_error(POSE_EUNSUPPORTED, "%s: tensor '%s' has dtype %s; only F32, BF16 and F16 tensors can be read "
                      "as weights", e->file->path, name, t->dtype);
  int same = t->ndim == ndim;
  for (int i = 0; same && i < ndim; i++) same = t->shape[i] == shape[i];
  if (!same) {
    char have[160], want[160];
    fmt_shape(t->shape, t->ndim, have, sizeof have);
    fmt_shape(shape, ndim, want, sizeof want);
    return pose_error(POSE_EFORMAT, "%s: tensor '%s' has shape %s, the config implies %s", e->file->path, name, have,
                      want);
  }
  if (t->numel == 0) return POSE_OK;
  if (!dst) return pose_error(POSE_EINVAL, "pose_checkpoint_read_f32('%s'): dst is NULL", name);
  const uint8_t *src = pose_st_data(e->file, t);
  int64_t n = (int64_t)t->numel;
  if (t->pose_dtype == POSE_F32) {
    memcpy(dst, src, (size_t)n * 4); /* memcpy: the data may sit at any byte offset */
    return POSE_OK;
  }
  /* Elements are loaded with memcpy because third-party files need not align them; the loop stays vectorisable. */
  if (t->pose_dtype == POSE_BF16) {
#pragma omp parallel for schedule(static) if (n > (1 << 20))
    for (int64_t i = 0; i < n; i++) {
      uint16_t h;
      memcpy(&h, src + 2 * i, 2);
      dst[i] = pose_bf16_to_f32(h);
    }
  } else {
#pragma omp parallel for schedule(static) if (n > (1 << 20))
    for (int64_t i = 0; i < n; i++) {
      uint16_t h;
      memcpy(&h, src + 2 * i, 2);
      dst[i] = pose_f16_to_f32(h);
    }
  }
  return POSE_OK;
}

/* ---- saving ------------------------------------------------------------------------------------------------- */

static pose_status mkdir_p(const char *dir) {
  char *p = strdup(dir);
  if (!p) return pose_error(POSE_ENOMEM, "out of memory");
  for (char *s = p + 1; *s; s++) {
    if (*s != '/') continue;
    *s = 0;
    if (mkdir(p, 0755) != 0 && errno != EEXIST) {
      pose_status st = pose_error(POSE_EIO, "cannot create directory %s: %s", p, strerror(errno));
      free(p);
      return st;
    }
    *s = '/';
  }
  free(p);
  if (mkdir(dir, 0755) != 0 && errno != EEXIST)
    return pose_error(POSE_EIO, "cannot create directory %s: %s", dir, strerror(errno));
  struct stat sb;
  if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
    return pose_error(POSE_EIO, "%s exists and is not a directory", dir);
  return POSE_OK;
}

static pose_status write_text_file(const char *path, const char *text) {
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return pose_error(POSE_EIO, "%s: cannot create: %s", path, strerror(errno));
  size_t len = strlen(text), done = 0;
  while (done < len) {
    ssize_t k = write(fd, text + done, len - done);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) {
      pose_status st = pose_error(POSE_EIO, "%s: write failed: %s", path, strerror(errno));
      close(fd);
      return st;
    }
    done += (size_t)k;
  }
  if (fsync(fd) != 0 || close(fd) != 0) return pose_error(POSE_EIO, "%s: flush failed: %s", path, strerror(errno));
  return POSE_OK;
}

/* cJSON indents with tabs; transformers writes two spaces. Raw tabs only occur as formatting (cJSON escapes those
 * inside strings), so they can be rewritten blindly. */
static char *print_json(const cJSON *j) {
  char *s = cJSON_Print(j);
  if (!s) return NULL;
  size_t tabs = 0, len = strlen(s);
  for (size_t i = 0; i < len; i++) tabs += s[i] == '\t';
  char *o = malloc(len + tabs + 2);
  if (!o) { free(s); return NULL; }
  size_t k = 0;
  for (size_t i = 0; i < len; i++) {
    if (s[i] != '\t') o[k++] = s[i];
    else if (i && s[i - 1] == ':') o[k++] = ' ';
    else { o[k++] = ' '; o[k++] = ' '; }
  }
  o[k++] = '\n';
  o[k] = 0;
  free(s);
  return o;
}

cJSON *pose_json_float(double v) {
  if (!isfinite(v)) return NULL;
  char buf[40];
  for (int prec = 15; prec <= 17; prec++) { /* the shortest of these that reads back exactly */
    snprintf(buf, sizeof buf - 2, "%.*g", prec, v);
    if (strtod(buf, NULL) == v) break;
  }
  if (!strpbrk(buf, ".eE")) strcat(buf, ".0");
  return cJSON_CreateRaw(buf);
}

/* model-00001-of-00002.safetensors: returns 1 and the two numbers. */
static int shard_name_parse(const char *s, unsigned *i, unsigned *n) {
  if (strlen(s) != 32 || strncmp(s, "model-", 6) || strncmp(s + 11, "-of-", 4) || strcmp(s + 20, ".safetensors"))
    return 0;
  for (int k = 0; k < 5; k++)
    if (s[6 + k] < '0' || s[6 + k] > '9' || s[15 + k] < '0' || s[15 + k] > '9') return 0;
  *i = (unsigned)atoi(s + 6);
  *n = (unsigned)atoi(s + 15);
  return 1;
}

static int cmp_entry_ptr(const void *a, const void *b) {
  return strcmp((*(const pose_st_entry *const *)a)->name, (*(const pose_st_entry *const *)b)->name);
}

static pose_status check_entries(const pose_st_entry *entries, size_t n) {
  for (size_t i = 0; i < n; i++) {
    const pose_st_entry *e = &entries[i];
    if (!e->name || !*e->name || strcmp(e->name, "__metadata__") == 0)
      return pose_error(POSE_EINVAL, "pose_checkpoint_save: entry %zu has an empty or reserved name", i);
    if ((unsigned)e->dtype >= POSE_DTYPE_COUNT)
      return pose_error(POSE_EINVAL, "pose_checkpoint_save: tensor '%s' has an invalid dtype", e->name);
    if (e->ndim < 0 || e->ndim > 4)
      return pose_error(POSE_EINVAL, "pose_checkpoint_save: tensor '%s' has %d dimensions (0 to 4 allowed)", e->name,
                        e->ndim);
    uint64_t numel = 1;
    for (int d = 0; d < e->ndim; d++) {
      if (e->shape[d] < 0)
        return pose_error(POSE_EINVAL, "pose_checkpoint_save: tensor '%s' has a negative dimension", e->name);
      numel *= (uint64_t)e->shape[d];
    }
    if (numel && !e->data) return pose_error(POSE_EINVAL, "pose_checkpoint_save: tensor '%s' has no data", e->name);
  }
  const pose_st_entry **sorted = malloc((n ? n : 1) * sizeof *sorted);
  if (!sorted) return pose_error(POSE_ENOMEM, "out of memory");
  for (size_t i = 0; i < n; i++) sorted[i] = &entries[i];
  qsort(sorted, n, sizeof *sorted, cmp_entry_ptr);
  pose_status st = POSE_OK;
  for (size_t i = 1; i < n && st == POSE_OK; i++)
    if (strcmp(sorted[i - 1]->name, sorted[i]->name) == 0)
      st = pose_error(POSE_EINVAL, "pose_checkpoint_save: tensor name '%s' is given twice", sorted[i]->name);
  free(sorted);
  return st;
}

typedef struct {
  char *tmp, *final;
} pending_file;

static _Atomic unsigned save_counter;

static pose_status add_pending(pending_file *pf, size_t *np, const char *dir, const char *name) {
  char tmpname[512];
  snprintf(tmpname, sizeof tmpname, ".%s.tmp-%ld-%u", name, (long)getpid(), atomic_fetch_add(&save_counter, 1));
  pf[*np].final = path_join(dir, name);
  pf[*np].tmp = path_join(dir, tmpname);
  (*np)++;
  if (!pf[*np - 1].final || !pf[*np - 1].tmp) return pose_error(POSE_ENOMEM, "out of memory");
  return POSE_OK;
}

/* Weight files of an earlier save that the new layout does not use would confuse a later load: remove them. */
static void remove_stale(const char *dir, int sharded, unsigned nshards) {
  char *p = path_join(dir, sharded ? SINGLE_NAME : INDEX_NAME);
  if (p) unlink(p);
  free(p);
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *de;
  while ((de = readdir(d))) {
    unsigned i, n;
    if (!shard_name_parse(de->d_name, &i, &n)) continue;
    if (sharded && n == nshards && i >= 1 && i <= nshards) continue;
    if ((p = path_join(dir, de->d_name))) unlink(p);
    free(p);
  }
  closedir(d);
}

pose_status pose_checkpoint_save(const char *dir, const cJSON *config, const pose_st_entry *entries, size_t n,
                                 pose_dtype save_dtype, size_t shard_bytes) {
  if (!dir || !*dir) return pose_error(POSE_EINVAL, "pose_checkpoint_save: empty directory name");
  if (!cJSON_IsObject(config)) return pose_error(POSE_EINVAL, "pose_checkpoint_save: config must be a JSON object");
  if (!pose_dtype_is_float(save_dtype))
    return pose_error(POSE_EINVAL, "pose_checkpoint_save: save dtype must be f32, bf16 or f16, not %s",
                      pose_dtype_name(save_dtype));
  if (n && !entries) return pose_error(POSE_EINVAL, "pose_checkpoint_save: entries is NULL");
  POSE_TRY(check_entries(entries, n));
  POSE_TRY(mkdir_p(dir));

  /* Plan: shard[i] is entry i's shard (0-based), filled greedily in entry order. */
  uint64_t total = 0;
  for (size_t i = 0; i < n; i++) total += pose_st_entry_bytes(&entries[i], save_dtype);
  int sharded = shard_bytes != 0 && total > shard_bytes;
  unsigned *shard = calloc(n ? n : 1, sizeof *shard);
  const pose_st_entry **group = malloc((n ? n : 1) * sizeof *group);
  pending_file *pf = NULL;
  size_t npf = 0;
  char *text = NULL;
  cJSON *index = NULL;
  pose_status st = POSE_OK;
  if (!shard || !group) { st = pose_error(POSE_ENOMEM, "out of memory"); goto cleanup; }
  unsigned nshards = 1;
  if (sharded) {
    uint64_t fill = 0;
    nshards = 0;
    for (size_t i = 0; i < n; i++) {
      uint64_t b = pose_st_entry_bytes(&entries[i], save_dtype);
      if (nshards == 0 || (fill > 0 && fill + b > shard_bytes)) { nshards++; fill = 0; }
      shard[i] = nshards - 1;
      fill += b;
    }
    if (nshards > 99999) {
      st = pose_error(POSE_EINVAL, "pose_checkpoint_save: %u shards of at most %zu bytes exceed the 99999 that "
                      "5-digit shard names allow", nshards, shard_bytes);
      goto cleanup;
    }
  }
  pf = calloc(nshards + 2, sizeof *pf);
  if (!pf) { st = pose_error(POSE_ENOMEM, "out of memory"); goto cleanup; }

  /* 1. every file under a temporary name, fsync'ed */
  for (unsigned s = 0; s < nshards; s++) {
    char name[64];
    if (sharded) snprintf(name, sizeof name, "model-%05u-of-%05u.safetensors", s + 1, nshards);
    else snprintf(name, sizeof name, SINGLE_NAME);
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
      if (shard[i] == s) group[m++] = &entries[i];
    if ((st = add_pending(pf, &npf, dir, name)) != POSE_OK) goto cleanup;
    if ((st = pose_st_write(pf[npf - 1].tmp, group, m, save_dtype)) != POSE_OK) goto cleanup;
  }
  if (sharded) {
    index = cJSON_CreateObject();
    cJSON *meta = cJSON_AddObjectToObject(index, "metadata");
    cJSON_AddNumberToObject(meta, "total_size", (double)total);
    cJSON *wm = cJSON_AddObjectToObject(index, "weight_map");
    /* sorted by name, as transformers writes it */
    size_t *order = malloc((n ? n : 1) * sizeof *order);
    if (!order) { st = pose_error(POSE_ENOMEM, "out of memory"); goto cleanup; }
    for (size_t i = 0; i < n; i++) group[i] = &entries[i];
    qsort(group, n, sizeof *group, cmp_entry_ptr);
    for (size_t i = 0; i < n; i++) order[i] = (size_t)(group[i] - entries);
    for (size_t i = 0; i < n; i++) {
      char name[64];
      snprintf(name, sizeof name, "model-%05u-of-%05u.safetensors", shard[order[i]] + 1, nshards);
      cJSON_AddStringToObject(wm, entries[order[i]].name, name);
    }
    free(order);
    if (!(text = print_json(index))) { st = pose_error(POSE_ENOMEM, "out of memory"); goto cleanup; }
    if ((st = add_pending(pf, &npf, dir, INDEX_NAME)) != POSE_OK) goto cleanup;
    if ((st = write_text_file(pf[npf - 1].tmp, text)) != POSE_OK) goto cleanup;
    free(text);
    text = NULL;
  }
  if (!(text = print_json(config))) { st = pose_error(POSE_ENOMEM, "out of memory printing config.json"); goto cleanup; }
  if ((st = add_pending(pf, &npf, dir, "config.json")) != POSE_OK) goto cleanup;
  if ((st = write_text_file(pf[npf - 1].tmp, text)) != POSE_OK) goto cleanup;

  /* 2. rename into place (each rename is atomic), 3. drop what the old layout left, 4. persist the directory */
  for (size_t i = 0; i < npf; i++) {
    if (rename(pf[i].tmp, pf[i].final) != 0) {
      st = pose_error(POSE_EIO, "cannot rename %s to %s: %s", pf[i].tmp, pf[i].final, strerror(errno));
      goto cleanup;
    }
    free(pf[i].tmp);
    pf[i].tmp = NULL;
  }
  remove_stale(dir, sharded, nshards);
  int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    fsync(dfd); /* some file systems refuse directory fsync; the data files themselves are already synced */
    close(dfd);
  }

cleanup:
  for (size_t i = 0; pf && i < npf; i++) {
    if (pf[i].tmp) unlink(pf[i].tmp); /* after a failure: no temporary file is left behind */
    free(pf[i].tmp);
    free(pf[i].final);
  }
  free(pf);
  free(text);
  cJSON_Delete(index);
  free(group);
  free(shard);
  return st;
}
