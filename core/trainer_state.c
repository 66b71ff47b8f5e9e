/* Saving and restoring the full training state (trainer.h documents the file format). The file is written to a
 * temporary name, fsynced and renamed into place; on load everything is validated (sizes, checksum, parameter
 * names and shapes) before the trainer is touched. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "trainer_impl.h"
#ifdef POSE_HAVE_CUDA
#include "model_gpu.h"
#endif

#define STATE_FILE "trainer_state.bin"
#define STATE_VERSION 1
static const char MAGIC[8] = {'P', 'O', 'S', 'E', 'T', 'R', 'N', '\0'};

static int little_endian(void) {
  const uint16_t one = 1;
  return *(const uint8_t *)&one == 1;
}

/* FNV-1a, 64 bit */
#define FNV_INIT 0xcbf29ce484222325ULL
static uint64_t fnv1a(uint64_t h, const void *data, size_t n) {
  const uint8_t *p = data;
  for (size_t i = 0; i < n; i++) {
    h ^= p[i];
    h *= 0x100000001b3ULL;
  }
  return h;
}

/* mkdir -p */
static pose_status make_dirs(const char *dir) {
  char buf[PATH_MAX];
  size_t n = strlen(dir);
  if (n == 0 || n >= sizeof buf) return pose_error(POSE_EINVAL, "trainer state: bad directory name '%s'", dir);
  memcpy(buf, dir, n + 1);
  for (size_t i = 1; i <= n; i++) {
    if (buf[i] != '/' && buf[i] != '\0') continue;
    char c = buf[i];
    buf[i] = '\0';
    if (mkdir(buf, 0777) != 0 && errno != EEXIST)
      return pose_error(POSE_EIO, "trainer state: cannot create directory '%s': %s", buf, strerror(errno));
    buf[i] = c;
  }
  struct stat sb;
  if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
    return pose_error(POSE_EIO, "trainer state: '%s' is not a directory", dir);
  return POSE_OK;
}

typedef struct {
  FILE *f;
  uint64_t h;
  int err;
} writer;

static void put(writer *w, const void *p, size_t n) {
  if (w->err || n == 0) return;
  if (fwrite(p, 1, n, w->f) != n) w->err = errno ? errno : EIO;
  w->h = fnv1a(w->h, p, n);
}

static cJSON *opts_json(const pose_trainer_opts *o) {
  cJSON *j = cJSON_CreateObject();
  if (!j) return NULL;
  cJSON_AddNumberToObject(j, "lr", o->lr);
  cJSON_AddNumberToObject(j, "beta1", o->beta1);
  cJSON_AddNumberToObject(j, "beta2", o->beta2);
  cJSON_AddNumberToObject(j, "eps", o->eps);
  cJSON_AddNumberToObject(j, "weight_decay", o->weight_decay);
  cJSON_AddNumberToObject(j, "clip", o->clip);
  cJSON_AddNumberToObject(j, "warmup", (double)o->warmup);
  cJSON_AddNumberToObject(j, "steps", (double)o->steps);
  cJSON_AddStringToObject(j, "schedule", pose_schedule_name(o->schedule));
  cJSON_AddNumberToObject(j, "accum", o->accum);
  /* a decimal string: a double would not hold every 64-bit seed */
  char seed[24];
  snprintf(seed, sizeof seed, "%llu", (unsigned long long)o->sr_seed);
  cJSON_AddStringToObject(j, "sr_seed", seed);
  return j;
}

static char *header_json(const pose_trainer *t, size_t user_len) {
  cJSON *root = cJSON_CreateObject();
  if (!root) return NULL;
  cJSON_AddNumberToObject(root, "version", STATE_VERSION);
  cJSON_AddNumberToObject(root, "step", (double)t->step);
  cJSON *o = opts_json(&t->o);
  if (o) cJSON_AddItemToObject(root, "opts", o);
  cJSON *arr = cJSON_AddArrayToObject(root, "params");
  for (size_t i = 0; arr && i < t->np; i++) {
    const pose_param *p = t->ps[i];
    cJSON *e = cJSON_CreateObject();
    if (!e) break;
    cJSON_AddStringToObject(e, "name", p->name ? p->name : "");
    cJSON *sh = cJSON_AddArrayToObject(e, "shape");
    for (int d = 0; sh && d < p->ndim && d < 4; d++) cJSON_AddItemToArray(sh, cJSON_CreateNumber((double)p->shape[d]));
    cJSON_AddNumberToObject(e, "numel", (double)p->numel);
    cJSON_AddNumberToObject(e, "decay", p->decay ? 1 : 0);
    cJSON_AddItemToArray(arr, e);
  }
  cJSON_AddNumberToObject(root, "user_len", (double)user_len);
  char *s = cJSON_PrintUnformatted(root);
  cJSON_Delete(root);
  return s;
}

pose_status pose_trainer_save_state(const pose_trainer *t, const char *dir, const void *user, size_t user_len) {
  if (!t || !dir) return pose_error(POSE_EINVAL, "trainer state: NULL trainer or directory");
  if (user_len && !user) return pose_error(POSE_EINVAL, "trainer state: user blob is NULL but user_len is %zu", user_len);
  if (!little_endian()) return pose_error(POSE_EUNSUPPORTED, "trainer state: big-endian hosts are not supported");
  POSE_TRY(make_dirs(dir));
  char path[PATH_MAX], tmp[PATH_MAX];
  if (snprintf(path, sizeof path, "%s/%s", dir, STATE_FILE) >= (int)sizeof path ||
      snprintf(tmp, sizeof tmp, "%s/.%s.tmp.%ld", dir, STATE_FILE, (long)getpid()) >= (int)sizeof tmp)
    return pose_error(POSE_EINVAL, "trainer state: path too long in '%s'", dir);
  char *hdr = header_json(t, user_len);
  if (!hdr) return pose_error(POSE_ENOMEM, "trainer state: out of memory");
  writer w = {fopen(tmp, "wb"), FNV_INIT, 0};
  if (!w.f) {
    int e = errno;
    free(hdr);
    return pose_error(POSE_EIO, "trainer state: cannot create '%s': %s", tmp, strerror(e));
  }
  uint64_t hlen = strlen(hdr);
  put(&w, MAGIC, sizeof MAGIC);
  put(&w, &hlen, sizeof hlen);
  put(&w, hdr, hlen);
  free(hdr);
  float *stage = NULL; /* device parameters: weights and moments through the host, one tensor at a time */
#ifdef POSE_HAVE_CUDA
  if (t->gpu) {
    int64_t big = 1;
    for (size_t i = 0; i < t->np; i++) big = t->ps[i]->numel > big ? t->ps[i]->numel : big;
    stage = malloc(3 * sizeof(float) * (size_t)big);
    if (!stage) w.err = ENOMEM;
  }
#endif
  for (size_t i = 0; i < t->np && !w.err; i++) {
    size_t n = (size_t)t->ps[i]->numel * sizeof(float);
    if (!stage) {
      put(&w, t->ps[i]->w, n);
      put(&w, t->m[i], n);
      put(&w, t->v[i], n);
      continue;
    }
#ifdef POSE_HAVE_CUDA
    float *sw = stage, *sm = stage + t->ps[i]->numel, *sv = sm + t->ps[i]->numel;
    if (pose_gpu_weights_get(t->tb.dev.index, t->ps[i], sw) != POSE_OK ||
        pose_gpu_optim_get(t->gpu, i, t->ps[i]->numel, sm, sv) != POSE_OK) {
      w.err = EIO;
      break;
    }
    put(&w, sw, n);
    put(&w, sm, n);
    put(&w, sv, n);
#endif
  }
  free(stage);
  put(&w, user, user_len);
  uint64_t sum = w.h;
  if (!w.err && fwrite(&sum, sizeof sum, 1, w.f) != 1) w.err = errno ? errno : EIO;
  if (!w.err && fflush(w.f) != 0) w.err = errno;
  if (!w.err && fsync(fileno(w.f)) != 0) w.err = errno;
  if (fclose(w.f) != 0 && !w.err) w.err = errno;
  if (!w.err && rename(tmp, path) != 0) w.err = errno;
  if (w.err) {
    remove(tmp);
    return pose_error(POSE_EIO, "trainer state: writing '%s' failed: %s", path, strerror(w.err));
  }
  int dfd = open(dir, O_RDONLY | O_DIRECTORY);
  if (dfd >= 0) { /* make the rename itself durable; best effort */
    fsync(dfd);
    close(dfd);
  }
  return POSE_OK;
}

/* ---- load ------------------------------------------------------------------------------------------------ */

static int get_num(const cJSON *o, const char *key, double *out) {
  const cJSON *x = cJSON_GetObjectItemCaseSensitive(o, key);
  if (!cJSON_IsNumber(x)) return 0;
  *out = x->valuedouble;
  return 1;
}

static int is_count(double x) { return x >= 0 && x <= 9007199254740992.0 && x == (double)(int64_t)x; }

static pose_status parse_opts(const cJSON *j, const char *path, pose_trainer_opts *o) {
  if (!cJSON_IsObject(j)) return pose_error(POSE_EFORMAT, "trainer state '%s': header has no \"opts\" object", path);
  double warmup, steps, accum;
  if (!get_num(j, "lr", &o->lr) || !get_num(j, "beta1", &o->beta1) || !get_num(j, "beta2", &o->beta2) ||
      !get_num(j, "eps", &o->eps) || !get_num(j, "weight_decay", &o->weight_decay) || !get_num(j, "clip", &o->clip) ||
      !get_num(j, "warmup", &warmup) || !get_num(j, "steps", &steps) || !get_num(j, "accum", &accum) ||
      !is_count(warmup) || !is_count(steps) || !is_count(accum) || accum > INT_MAX)
    return pose_error(POSE_EFORMAT, "trainer state '%s': \"opts\" lacks a field or has a bad value", path);
  o->warmup = (int64_t)warmup;
  o->steps = (int64_t)steps;
  o->accum = (int)accum;
  /* optional (states written before the pure-bf16 policy have none: 0) */
  const cJSON *sr = cJSON_GetObjectItemCaseSensitive(j, "sr_seed");
  o->sr_seed = 0;
  if (sr) {
    char *end = NULL;
    if (!cJSON_IsString(sr) || !sr->valuestring[0] || sr->valuestring[0] == '-' ||
        (o->sr_seed = strtoull(sr->valuestring, &end, 10), *end))
      return pose_error(POSE_EFORMAT, "trainer state '%s': bad \"sr_seed\" in \"opts\"", path);
  }
  const cJSON *s = cJSON_GetObjectItemCaseSensitive(j, "schedule");
  if (!cJSON_IsString(s) || pose_schedule_parse(s->valuestring, &o->schedule) != POSE_OK)
    return pose_error(POSE_EFORMAT, "trainer state '%s': bad \"schedule\" in \"opts\"", path);
  if (pose_trainer_opts_check(o) != POSE_OK)
    return pose_error_prefix(POSE_EFORMAT, "trainer state '%s': ", path);
  return POSE_OK;
}

static void shape_str(int ndim, const int64_t *shape, char *buf, size_t len) {
  size_t k = (size_t)snprintf(buf, len, "[");
  for (int d = 0; d < ndim && k < len; d++) k += (size_t)snprintf(buf + k, len - k, d ? ", %lld" : "%lld", (long long)shape[d]);
  if (k < len) snprintf(buf + k, len - k, "]");
}

/* Checks the header's parameter list against the trainer's parameters. */
static pose_status check_params(const pose_trainer *t, const cJSON *arr, const char *path, uint64_t *data_bytes) {
  if (!cJSON_IsArray(arr)) return pose_error(POSE_EFORMAT, "trainer state '%s': header has no \"params\" array", path);
  size_t n = (size_t)cJSON_GetArraySize(arr);
  if (n != t->np)
    return pose_error(POSE_EINVAL, "trainer state '%s' holds %zu parameters but the model has %zu (a different model?)",
                      path, n, t->np);
  uint64_t bytes = 0;
  size_t i = 0;
  const cJSON *e;
  cJSON_ArrayForEach(e, arr) {
    const pose_param *p = t->ps[i];
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(e, "name");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(e, "shape");
    double numel;
    if (!cJSON_IsString(name) || !cJSON_IsArray(shape) || cJSON_GetArraySize(shape) > 4 || !get_num(e, "numel", &numel) ||
        !is_count(numel))
      return pose_error(POSE_EFORMAT, "trainer state '%s': malformed entry %zu of \"params\"", path, i);
    int ndim = cJSON_GetArraySize(shape);
    int64_t sh[4] = {0};
    int d = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, shape) {
      if (!cJSON_IsNumber(x) || !is_count(x->valuedouble))
        return pose_error(POSE_EFORMAT, "trainer state '%s': bad shape of parameter %zu", path, i);
      sh[d++] = (int64_t)x->valuedouble;
    }
    const char *mine = p->name ? p->name : "";
    int same = strcmp(name->valuestring, mine) == 0 && ndim == p->ndim && (int64_t)numel == p->numel;
    for (d = 0; same && d < ndim; d++) same = sh[d] == p->shape[d];
    if (!same) {
      char a[96], b[96];
      shape_str(ndim, sh, a, sizeof a);
      shape_str(p->ndim, p->shape, b, sizeof b);
      return pose_error(POSE_EINVAL,
                        "trainer state '%s' does not fit this model: parameter %zu is '%s' %s in the file but '%s' %s "
                        "in the model",
                        path, i, name->valuestring, a, mine, b);
    }
    bytes += 3 * (uint64_t)p->numel * sizeof(float);
    i++;
  }
  *data_bytes = bytes;
  return POSE_OK;
}

static pose_status read_exact(FILE *f, void *p, size_t n, const char *path) {
  if (n && fread(p, 1, n, f) != n) return pose_error(POSE_EIO, "trainer state '%s': read failed (file changed while loading?)", path);
  return POSE_OK;
}

pose_status pose_trainer_load_state(pose_trainer *t, const char *dir, void **user, size_t *user_len) {
  if (user) *user = NULL;
  if (user_len) *user_len = 0;
  if (!t || !dir) return pose_error(POSE_EINVAL, "trainer state: NULL trainer or directory");
  if (!little_endian()) return pose_error(POSE_EUNSUPPORTED, "trainer state: big-endian hosts are not supported");
  char path[PATH_MAX];
  if (snprintf(path, sizeof path, "%s/%s", dir, STATE_FILE) >= (int)sizeof path)
    return pose_error(POSE_EINVAL, "trainer state: path too long in '%s'", dir);
  FILE *f = fopen(path, "rb");
  if (!f) return pose_error(POSE_EIO, "trainer state: cannot open '%s': %s", path, strerror(errno));
  pose_status st = POSE_OK;
  char *hdr = NULL;
  cJSON *root = NULL;
  void *blob = NULL;
  uint8_t *buf = NULL;
  struct stat sb;
  char magic[8];
  uint64_t hlen = 0;
  if (fstat(fileno(f), &sb) != 0) { st = pose_error(POSE_EIO, "trainer state: cannot stat '%s'", path); goto done; }
  uint64_t size = (uint64_t)sb.st_size;
  if (size < 24 || fread(magic, 1, 8, f) != 8 || memcmp(magic, MAGIC, 8) != 0) {
    st = pose_error(POSE_EFORMAT, "trainer state '%s': not a pose trainer state file", path);
    goto done;
  }
  if (fread(&hlen, sizeof hlen, 1, f) != 1 || hlen == 0 || hlen > size - 24) {
    st = pose_error(POSE_EFORMAT, "trainer state '%s': bad header length", path);
    goto done;
  }
  hdr = malloc(hlen + 1);
  if (!hdr) { st = pose_error(POSE_ENOMEM, "trainer state: out of memory"); goto done; }
  if ((st = read_exact(f, hdr, hlen, path))) goto done;
  hdr[hlen] = '\0';
  root = cJSON_Parse(hdr);
  if (!cJSON_IsObject(root)) { st = pose_error(POSE_EFORMAT, "trainer state '%s': header is not JSON", path); goto done; }
  double version, stepd, ulen;
  if (!get_num(root, "version", &version) || version != STATE_VERSION) {
    st = pose_error(POSE_EFORMAT, "trainer state '%s': unsupported version (this build reads version %d)", path, STATE_VERSION);
    goto done;
  }
  if (!get_num(root, "step", &stepd) || !is_count(stepd) || !get_num(root, "user_len", &ulen) || !is_count(ulen)) {
    st = pose_error(POSE_EFORMAT, "trainer state '%s': bad \"step\" or \"user_len\"", path);
    goto done;
  }
  pose_trainer_opts o;
  pose_trainer_defaults(&o);
  if ((st = parse_opts(cJSON_GetObjectItemCaseSensitive(root, "opts"), path, &o))) goto done;
  o.fused_update = t->o.fused_update; /* how this trainer runs, not training state */
  if (o.fused_update && (o.accum != 1 || o.clip != 0)) {
    st = pose_error(POSE_EINVAL, "trainer state '%s': saved with accum=%d, clip=%g, which a trainer with fused_update "
                    "cannot run (it needs accum 1 and clip 0)", path, o.accum, o.clip);
    goto done;
  }
  uint64_t data_bytes = 0;
  if ((st = check_params(t, cJSON_GetObjectItemCaseSensitive(root, "params"), path, &data_bytes))) goto done;
  uint64_t ul = (uint64_t)ulen;
  if (16 + hlen + data_bytes + ul + 8 != size) {
    st = pose_error(POSE_EFORMAT, "trainer state '%s': file is %llu bytes, the header implies %llu (truncated?)", path,
                    (unsigned long long)size, (unsigned long long)(16 + hlen + data_bytes + ul + 8));
    goto done;
  }
  /* pass 1: checksum everything before touching the trainer */
  const size_t CH = 1 << 20;
  buf = malloc(CH);
  if (!buf) { st = pose_error(POSE_ENOMEM, "trainer state: out of memory"); goto done; }
  if (fseek(f, 0, SEEK_SET) != 0) { st = pose_error(POSE_EIO, "trainer state '%s': seek failed", path); goto done; }
  uint64_t h = FNV_INIT;
  for (uint64_t left = size - 8; left > 0;) {
    size_t n = left < CH ? (size_t)left : CH;
    if ((st = read_exact(f, buf, n, path))) goto done;
    h = fnv1a(h, buf, n);
    left -= n;
  }
  uint64_t sum;
  if (fread(&sum, sizeof sum, 1, f) != 1 || sum != h) {
    st = pose_error(POSE_EFORMAT, "trainer state '%s': checksum mismatch (the file is damaged)", path);
    goto done;
  }
  if (ul) {
    blob = malloc((size_t)ul);
    if (!blob) { st = pose_error(POSE_ENOMEM, "trainer state: out of memory for the user blob"); goto done; }
  }
  /* pass 2: the data */
  if (fseek(f, (long)(16 + hlen), SEEK_SET) != 0) { st = pose_error(POSE_EIO, "trainer state '%s': seek failed", path); goto done; }
  for (size_t i = 0; i < t->np; i++) {
    size_t n = (size_t)t->ps[i]->numel * sizeof(float);
#ifdef POSE_HAVE_CUDA
    if (t->gpu) { /* through a host buffer, one tensor at a time */
      float *sw = malloc(3 * n + 4);
      if (!sw) { st = pose_error(POSE_ENOMEM, "trainer state: out of memory"); goto done; }
      float *sm = sw + t->ps[i]->numel, *sv = sm + t->ps[i]->numel;
      if ((st = read_exact(f, sw, n, path)) == POSE_OK && (st = read_exact(f, sm, n, path)) == POSE_OK &&
          (st = read_exact(f, sv, n, path)) == POSE_OK && (st = pose_gpu_weights_set(t->tb.dev.index, t->ps[i], sw)) == POSE_OK)
        st = pose_gpu_optim_set(t->gpu, i, t->ps[i]->numel, sm, sv);
      free(sw);
      if (st) goto done;
      continue;
    }
#endif
    if ((st = read_exact(f, t->ps[i]->w, n, path)) || (st = read_exact(f, t->m[i], n, path)) ||
        (st = read_exact(f, t->v[i], n, path)))
      goto done;
  }
  if ((st = read_exact(f, blob, (size_t)ul, path))) goto done;
  t->o = o;
  t->step = (int64_t)stepd;
  if (user) {
    *user = blob;
    blob = NULL;
  }
  if (user_len) *user_len = (size_t)ul;
done:
  free(buf);
  free(blob);
  cJSON_Delete(root);
  free(hdr);
  fclose(f);
  return st;
}
