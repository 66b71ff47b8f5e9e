/* safetensors files: validating reader over a read-only mmap, and a writer. See safetensors.h. */
#define _GNU_SOURCE
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* The format is little-endian on disk; we read lengths and element data in place. */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "pose's safetensors reader assumes a little-endian host"
#endif

/* ---- dtypes ------------------------------------------------------------------------------------------------- */

static const struct {
  const char *name;
  size_t size; /* 0: sub-byte, not addressable here */
  int pose_dt;
} st_dtypes[] = {
    {"F32", 4, POSE_F32},  {"BF16", 2, POSE_BF16}, {"F16", 2, POSE_F16},   {"I32", 4, POSE_I32},
    {"I64", 8, POSE_I64},  {"F64", 8, -1},         {"I16", 2, -1},         {"I8", 1, -1},
    {"U8", 1, -1},         {"U16", 2, -1},         {"U32", 4, -1},         {"U64", 8, -1},
    {"BOOL", 1, -1},       {"F8_E4M3", 1, -1},     {"F8_E5M2", 1, -1},     {"F8_E8M0", 1, -1},
    {"C64", 8, -1},        {"F4", 0, -1},          {"F6_E2M3", 0, -1},     {"F6_E3M2", 0, -1},
};

static int st_dtype_index(const char *name) {
  for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
    if (strcmp(name, st_dtypes[i].name) == 0) return (int)i;
  return -1;
}

size_t pose_st_dtype_size(const char *name, int *pose_dt) {
  int i = st_dtype_index(name);
  if (pose_dt) *pose_dt = i < 0 ? -1 : st_dtypes[i].pose_dt;
  return i < 0 ? 0 : st_dtypes[i].size;
}

const char *pose_st_dtype_name(pose_dtype dt) {
  switch (dt) {
    case POSE_F32: return "F32";
    case POSE_BF16: return "BF16";
    case POSE_F16: return "F16";
    case POSE_I32: return "I32";
    case POSE_I64: return "I64";
    default: return "?";
  }
}

/* ---- reader ------------------------------------------------------------------------------------------------- */

static void free_tensors(pose_st_tensor *t, size_t n) {
  for (size_t i = 0; i < n; i++) free(t[i].name);
  free(t);
}

void pose_st_close(pose_st_file *f) {
  if (!f) return;
  if (f->map) munmap(f->map, f->size);
  free_tensors(f->tensors, f->n);
  cJSON_Delete(f->metadata);
  free(f->path);
  free(f);
}

static int cmp_name(const void *a, const void *b) {
  return strcmp(((const pose_st_tensor *)a)->name, ((const pose_st_tensor *)b)->name);
}

static int cmp_begin(const void *a, const void *b) {
  const pose_st_tensor *x = *(const pose_st_tensor *const *)a, *y = *(const pose_st_tensor *const *)b;
  return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : 0;
}

const pose_st_tensor *pose_st_find(const pose_st_file *f, const char *name) {
  pose_st_tensor key = {.name = (char *)name};
  return f->n ? bsearch(&key, f->tensors, f->n, sizeof key, cmp_name) : NULL;
}

/* JSON numbers are doubles: accept only exact non-negative integers that a double still represents exactly. */
static int json_uint(const cJSON *j, uint64_t *out) {
  if (!cJSON_IsNumber(j)) return 0;
  double v = j->valuedouble;
  if (!(v >= 0) || v > 9007199254740992.0 || v != floor(v)) return 0;
  *out = (uint64_t)v;
  return 1;
}

/* A JSON value as short text for an error message. */
static void json_snippet(const cJSON *j, char *buf, size_t cap) {
  char *s = j ? cJSON_PrintUnformatted((cJSON *)j) : NULL;
  snprintf(buf, cap, "%s", s ? s : "(missing)");
  if (s && strlen(s) >= cap && cap > 4) memcpy(buf + cap - 4, "...", 4);
  free(s);
}

static void shape_str(const int64_t *shape, int ndim, char *buf, size_t cap) {
  size_t k = (size_t)snprintf(buf, cap, "[");
  for (int i = 0; i < ndim && k < cap; i++) k += (size_t)snprintf(buf + k, cap - k, "%s%" PRId64, i ? ", " : "", shape[i]);
  if (k < cap) snprintf(buf + k, cap - k, "]");
}

/* Fills t from one header entry; the caller owns t->name already. */
static pose_status parse_entry(const char *path, const cJSON *e, uint64_t data_size, pose_st_tensor *t) {
  const char *name = t->name;
  char snip[96];
  if (!cJSON_IsObject(e))
    return pose_error(POSE_EFORMAT, "%s: tensor '%s': header entry is not an object", path, name);
  const cJSON *dt = cJSON_GetObjectItemCaseSensitive(e, "dtype");
  const cJSON *sh = cJSON_GetObjectItemCaseSensitive(e, "shape");
  const cJSON *off = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
  if (!cJSON_IsString(dt))
    return pose_error(POSE_EFORMAT, "%s: tensor '%s': missing or non-string \"dtype\"", path, name);
  int di = st_dtype_index(dt->valuestring);
  if (di < 0)
    return pose_error(POSE_EFORMAT, "%s: tensor '%s': unknown dtype '%s' (safetensors knows F32, BF16, F16, F64, "
                      "I64, I32, I16, I8, U64, U32, U16, U8, BOOL, F8_E4M3, F8_E5M2, F8_E8M0, C64)", path, name,
                      dt->valuestring);
  if (st_dtypes[di].size == 0)
    return pose_error(POSE_EUNSUPPORTED, "%s: tensor '%s': dtype %s packs sub-byte elements, which pose does not "
                      "support", path, name, dt->valuestring);
  t->dtype = st_dtypes[di].name;
  t->pose_dtype = st_dtypes[di].pose_dt;
  t->elem_size = st_dtypes[di].size;

  if (!cJSON_IsArray(sh)) {
    json_snippet(sh, snip, sizeof snip);
    return pose_error(POSE_EFORMAT, "%s: tensor '%s': \"shape\" must be a list of non-negative integers, got %s",
                      path, name, snip);
  }
  int nd = cJSON_GetArraySize(sh);
  if (nd > POSE_ST_MAX_DIMS)
    return pose_error(POSE_EUNSUPPORTED, "%s: tensor '%s': %d dimensions, more than the %d pose supports", path,
                      name, nd, POSE_ST_MAX_DIMS);
  t->ndim = nd;
  uint64_t numel = 1;
  int overflow = 0;
  for (int i = 0; i < nd; i++) {
    const cJSON *d = cJSON_GetArrayItem(sh, i);
    uint64_t v;
    if (!json_uint(d, &v)) {
      json_snippet(d, snip, sizeof snip);
      return pose_error(POSE_EFORMAT, "%s: tensor '%s': \"shape\" must be a list of non-negative integers, entry "
                        "%d is %s", path, name, i, snip);
    }
    t->shape[i] = (int64_t)v;
    if (v && numel > UINT64_MAX / v) overflow = 1;
    else numel *= v;
  }
  t->numel = numel;
  if (overflow || numel > UINT64_MAX / t->elem_size) {
    char s[160];
    shape_str(t->shape, nd, s, sizeof s);
    return pose_error(POSE_EFORMAT, "%s: tensor '%s': shape %s is too large to address", path, name, s);
  }

  uint64_t b, en;
  if (!cJSON_IsArray(off) || cJSON_GetArraySize(off) != 2 || !json_uint(cJSON_GetArrayItem(off, 0), &b) ||
      !json_uint(cJSON_GetArrayItem(off, 1), &en)) {
    json_snippet(off, snip, sizeof snip);
    return pose_error(POSE_EFORMAT, "%s: tensor '%s': \"data_offsets\" must be [begin, end] with non-negative "
                      "integers, got %s", path, name, snip);
  }
  if (b > en)
    return pose_error(POSE_EFORMAT, "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 ") end before they "
                      "begin", path, name, b, en);
  if (en > data_size)
    return pose_error(POSE_EFORMAT, "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 ") extend past the end "
                      "of the file (%" PRIu64 " bytes of data after the header); the file is truncated or the header "
                      "lies", path, name, b, en, data_size);
  uint64_t need = numel * t->elem_size;
  if (en - b != need) {
    char s[160];
    shape_str(t->shape, nd, s, sizeof s);
    return pose_error(POSE_EFORMAT, "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 ") hold %" PRIu64
                      " bytes, but dtype %s and shape %s need %" PRIu64, path, name, b, en, en - b, t->dtype, s, need);
  }
  t->begin = b;
  t->end = en;
  return POSE_OK;
}

static pose_status parse_header(pose_st_file *f, const char *hdr, uint64_t hlen) {
  const char *path = f->path;
  if (memchr(hdr, 0, hlen))
    return pose_error(POSE_EFORMAT, "%s: the %" PRIu64 "-byte header contains a NUL byte; not a safetensors file",
                      path, hlen);
  const char *end = NULL;
  cJSON *root = cJSON_ParseWithOpts(hdr, &end, 1);
  if (!root) {
    size_t at = end && end >= hdr ? (size_t)(end - hdr) : 0;
    char near[41];
    snprintf(near, sizeof near, "%.40s", hdr + (at < hlen ? at : hlen));
    for (char *p = near; *p; p++)
      if ((unsigned char)*p < 32) *p = ' ';
    return pose_error(POSE_EFORMAT, "%s: the %" PRIu64 "-byte header is not valid JSON (error near byte %zu: \"%s\")",
                      path, hlen, at, near);
  }
  pose_status st = POSE_OK;
  if (!cJSON_IsObject(root)) {
    st = pose_error(POSE_EFORMAT, "%s: the header JSON is not an object (safetensors headers map tensor names to "
                    "{dtype, shape, data_offsets})", path);
    goto done;
  }
  size_t n = 0;
  for (cJSON *e = root->child; e; e = e->next)
    if (strcmp(e->string, "__metadata__") != 0) n++;
  f->tensors = calloc(n ? n : 1, sizeof *f->tensors);
  if (!f->tensors) { st = pose_error(POSE_ENOMEM, "%s: out of memory for %zu tensor entries", path, n); goto done; }
  for (cJSON *e = root->child; e; e = e->next) {
    if (strcmp(e->string, "__metadata__") == 0) {
      if (!cJSON_IsObject(e)) {
        st = pose_error(POSE_EFORMAT, "%s: \"__metadata__\" must be an object of strings", path);
        goto done;
      }
      if (f->metadata) { st = pose_error(POSE_EFORMAT, "%s: \"__metadata__\" appears twice", path); goto done; }
      f->metadata = cJSON_Duplicate(e, 1);
      continue;
    }
    pose_st_tensor *t = &f->tensors[f->n];
    if (!(t->name = strdup(e->string))) { st = pose_error(POSE_ENOMEM, "%s: out of memory", path); goto done; }
    f->n++;
    if ((st = parse_entry(path, e, f->data_size, t)) != POSE_OK) goto done;
  }
  /* Overlaps: sort (non-empty) tensors by their first byte; each must end before the next begins. */
  pose_st_tensor **by_off = malloc((f->n ? f->n : 1) * sizeof *by_off);
  if (!by_off) { st = pose_error(POSE_ENOMEM, "%s: out of memory", path); goto done; }
  size_t m = 0;
  for (size_t i = 0; i < f->n; i++)
    if (f->tensors[i].end > f->tensors[i].begin) by_off[m++] = &f->tensors[i];
  qsort(by_off, m, sizeof *by_off, cmp_begin);
  for (size_t i = 1; i < m; i++) {
    const pose_st_tensor *a = by_off[i - 1], *b = by_off[i];
    if (b->begin < a->end) {
      st = pose_error(POSE_EFORMAT, "%s: tensors '%s' [%" PRIu64 ", %" PRIu64 ") and '%s' [%" PRIu64 ", %" PRIu64
                      ") overlap in the data section", path, a->name, a->begin, a->end, b->name, b->begin, b->end);
      break;
    }
  }
  free(by_off);
  if (st != POSE_OK) goto done;
  qsort(f->tensors, f->n, sizeof *f->tensors, cmp_name);
  for (size_t i = 1; i < f->n; i++)
    if (strcmp(f->tensors[i - 1].name, f->tensors[i].name) == 0) {
      st = pose_error(POSE_EFORMAT, "%s: tensor '%s' appears twice in the header", path, f->tensors[i].name);
      break;
    }
done:
  cJSON_Delete(root);
  return st;
}

pose_status pose_st_open(const char *path, pose_st_file **out) {
  *out = NULL;
  pose_st_file *f = calloc(1, sizeof *f);
  if (!f || !(f->path = strdup(path))) {
    free(f);
    return pose_error(POSE_ENOMEM, "%s: out of memory", path);
  }
  pose_status st = POSE_OK;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) { st = pose_error(POSE_EIO, "%s: cannot open: %s", path, strerror(errno)); goto fail; }
  struct stat sb;
  if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
    st = pose_error(POSE_EIO, "%s: not a regular file", path);
    close(fd);
    goto fail;
  }
  f->size = (size_t)sb.st_size;
  if (f->size < 8) {
    close(fd);
    st = pose_error(POSE_EFORMAT, "%s: the file is %zu bytes, too short for the 8-byte header length; the file is "
                    "truncated or not safetensors", path, f->size);
    goto fail;
  }
  void *map = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd); /* the mapping keeps the file alive */
  if (map == MAP_FAILED) { st = pose_error(POSE_EIO, "%s: mmap failed: %s", path, strerror(errno)); goto fail; }
  f->map = map;
  uint64_t hlen;
  memcpy(&hlen, map, 8);
  if (hlen > POSE_ST_MAX_HEADER) {
    st = pose_error(POSE_EFORMAT, "%s: header length %" PRIu64 " exceeds the %llu-byte limit; the file is corrupt "
                    "or not safetensors", path, hlen, POSE_ST_MAX_HEADER);
    goto fail;
  }
  if (hlen > f->size - 8) {
    st = pose_error(POSE_EFORMAT, "%s: header length %" PRIu64 " runs past the end of the file (%zu bytes); the "
                    "file is truncated or not safetensors", path, hlen, f->size);
    goto fail;
  }
  f->data = (const uint8_t *)map + 8 + hlen;
  f->data_size = f->size - 8 - hlen;
  char *hdr = malloc(hlen + 1); /* NUL-terminated copy for cJSON */
  if (!hdr) { st = pose_error(POSE_ENOMEM, "%s: out of memory for the header", path); goto fail; }
  memcpy(hdr, (const char *)map + 8, hlen);
  hdr[hlen] = 0;
  st = parse_header(f, hdr, hlen);
  free(hdr);
  if (st != POSE_OK) goto fail;
  *out = f;
  return POSE_OK;
fail:
  pose_st_close(f);
  return st;
}

/* ---- writer ------------------------------------------------------------------------------------------------- */

static pose_dtype out_dtype(const pose_st_entry *e, pose_dtype save_dtype) {
  return pose_dtype_is_float(e->dtype) ? save_dtype : e->dtype;
}

static uint64_t entry_numel(const pose_st_entry *e) {
  uint64_t n = 1;
  for (int i = 0; i < e->ndim; i++) n *= (uint64_t)e->shape[i];
  return n;
}

uint64_t pose_st_entry_bytes(const pose_st_entry *e, pose_dtype save_dtype) {
  return entry_numel(e) * pose_dtype_size(out_dtype(e, save_dtype));
}

/* Growable string for the header. */
typedef struct { char *s; size_t len, cap; int oom; } sbuf;

static void sb_add(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_add(sbuf *b, const char *fmt, ...) {
  if (b->oom) return;
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->cap - b->len : 0, fmt, ap);
    va_end(ap);
    if (k < 0) { b->oom = 1; return; }
    if (b->s && b->len + (size_t)k < b->cap) { b->len += (size_t)k; return; }
    size_t cap = (b->cap ? b->cap * 2 : 4096) + (size_t)k;
    char *s = realloc(b->s, cap);
    if (!s) { b->oom = 1; return; }
    b->s = s;
    b->cap = cap;
  }
}

/* A tensor name as a JSON string literal (cJSON does the escaping). */
static void sb_add_json_string(sbuf *b, const char *str) {
  cJSON *j = cJSON_CreateString(str);
  char *s = j ? cJSON_PrintUnformatted(j) : NULL;
  if (s) sb_add(b, "%s", s);
  else b->oom = 1;
  free(s);
  cJSON_Delete(j);
}

static pose_status write_all(FILE *fp, const void *p, size_t n, const char *path) {
  if (n && fwrite(p, 1, n, fp) != n) return pose_error(POSE_EIO, "%s: write failed: %s", path, strerror(errno));
  return POSE_OK;
}

static pose_status write_body(FILE *fp, const char *path, const pose_st_entry *const *entries, size_t n,
                              pose_dtype save_dtype) {
  /* Header: offsets are printed by us (not through cJSON's doubles) so every integer is exact. */
  sbuf b = {0};
  uint64_t off = 0;
  sb_add(&b, "{\"__metadata__\":{\"format\":\"pt\"}");
  for (size_t i = 0; i < n; i++) {
    const pose_st_entry *e = entries[i];
    uint64_t bytes = pose_st_entry_bytes(e, save_dtype);
    sb_add(&b, ",");
    sb_add_json_string(&b, e->name);
    sb_add(&b, ":{\"dtype\":\"%s\",\"shape\":[", pose_st_dtype_name(out_dtype(e, save_dtype)));
    for (int d = 0; d < e->ndim; d++) sb_add(&b, "%s%" PRId64, d ? "," : "", e->shape[d]);
    sb_add(&b, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}", off, off + bytes);
    off += bytes;
  }
  sb_add(&b, "}");
  /* Pad with spaces so the data section starts 8-byte aligned, as the safetensors library does. */
  while (!b.oom && (8 + b.len) % 8) sb_add(&b, " ");
  if (b.oom) { free(b.s); return pose_error(POSE_ENOMEM, "%s: out of memory building the header", path); }
  uint64_t hlen = b.len;
  pose_status st = write_all(fp, &hlen, 8, path);
  if (st == POSE_OK) st = write_all(fp, b.s, b.len, path);
  free(b.s);
  if (st != POSE_OK) return st;

  enum { CHUNK = 1 << 16 };
  void *buf = NULL;
  for (size_t i = 0; i < n && st == POSE_OK; i++) {
    const pose_st_entry *e = entries[i];
    pose_dtype odt = out_dtype(e, save_dtype);
    uint64_t numel = entry_numel(e);
    if (odt == e->dtype) {
      st = write_all(fp, e->data, numel * pose_dtype_size(odt), path);
      continue;
    }
    if (!buf && !(buf = malloc(CHUNK * 8))) return pose_error(POSE_ENOMEM, "%s: out of memory", path);
    const char *src = e->data;
    for (uint64_t k = 0; k < numel && st == POSE_OK; k += CHUNK) {
      size_t m = numel - k < CHUNK ? (size_t)(numel - k) : CHUNK;
      pose_convert(buf, odt, src + k * pose_dtype_size(e->dtype), e->dtype, m);
      st = write_all(fp, buf, m * pose_dtype_size(odt), path);
    }
  }
  free(buf);
  return st;
}

pose_status pose_st_write(const char *path, const pose_st_entry *const *entries, size_t n, pose_dtype save_dtype) {
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return pose_error(POSE_EIO, "%s: cannot create: %s", path, strerror(errno));
  FILE *fp = fdopen(fd, "wb");
  if (!fp) {
    close(fd);
    return pose_error(POSE_EIO, "%s: fdopen failed: %s", path, strerror(errno));
  }
  setvbuf(fp, NULL, _IOFBF, 1 << 20);
  pose_status st = write_body(fp, path, entries, n, save_dtype);
  /* Flush and fsync before the caller renames: the new name must never point at data still in flight. */
  if (st == POSE_OK && (fflush(fp) != 0 || fsync(fileno(fp)) != 0))
    st = pose_error(POSE_EIO, "%s: flush failed: %s", path, strerror(errno));
  if (fclose(fp) != 0 && st == POSE_OK) st = pose_error(POSE_EIO, "%s: close failed: %s", path, strerror(errno));
  return st;
}
