/* Token shards (format in shard.h): a streaming writer that renames into place, and a validating mmap reader. */
#define _GNU_SOURCE
#include "shard.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "pose shards are little-endian and read in place: a big-endian host would need byte swapping"
#endif

static size_t dtype_width(uint32_t dt) { return dt == POSE_SHARD_U16 ? 2 : dt == POSE_SHARD_U32 ? 4 : 0; }
static uint64_t pad8(uint64_t n) { return (n + 7) & ~(uint64_t)7; }

/* Header as it sits in the file (64 bytes, no padding on any ABI pose builds for). */
typedef struct {
  char magic[8];
  uint32_t version, dtype;
  uint64_t num_tokens, num_docs;
  uint32_t vocab_size;
  int32_t eos_id;
  uint64_t names_bytes;
  uint64_t reserved[2];
} shard_header;
_Static_assert(sizeof(shard_header) == POSE_SHARD_HEADER_BYTES, "shard header must be 64 bytes");

/* ---- writer ---------------------------------------------------------------------------------------------- */

struct pose_shard_writer {
  char *path, *tmp_path, *tok_path;
  FILE *tok;                 /* side file receiving the tokens as they come */
  pose_shard_writer_opts o;
  uint64_t *index;           /* D+1 token offsets */
  uint64_t *name_off;        /* D+1 byte offsets into names */
  char *names;               /* NUL-terminated names back to back */
  size_t names_len, names_cap;
  int64_t n_docs, cap_docs;
  uint64_t n_tokens;
  int any_name;
  int failed; /* a write to the side file failed: the tokens no longer match the index, close() must fail */
};

void pose_shard_writer_defaults(pose_shard_writer_opts *o) {
  o->dtype = POSE_SHARD_U16;
  o->vocab_size = 0;
  o->eos_id = -1;
}

static char *str_printf(const char *fmt, const char *a, long b) {
  int n = snprintf(NULL, 0, fmt, a, b);
  char *s = malloc((size_t)n + 1);
  if (s) snprintf(s, (size_t)n + 1, fmt, a, b);
  return s;
}

static void writer_free(pose_shard_writer *w) {
  if (!w) return;
  if (w->tok) fclose(w->tok);
  if (w->tok_path) unlink(w->tok_path);
  free(w->path); free(w->tmp_path); free(w->tok_path);
  free(w->index); free(w->name_off); free(w->names);
  free(w);
}

pose_status pose_shard_writer_open(const char *path, const pose_shard_writer_opts *o, pose_shard_writer **out) {
  *out = NULL;
  pose_shard_writer_opts def;
  if (!o) { pose_shard_writer_defaults(&def); o = &def; }
  if (!path || !*path) return pose_error(POSE_EINVAL, "shard writer: empty path");
  if (!dtype_width(o->dtype)) return pose_error(POSE_EINVAL, "shard writer %s: unknown dtype %d (1 = u16, 2 = u32)",
                                                path, (int)o->dtype);
  if (o->dtype == POSE_SHARD_U16 && o->vocab_size > 65536)
    return pose_error(POSE_EINVAL, "shard writer %s: vocab_size %u does not fit u16 tokens (use u32)", path,
                      o->vocab_size);
  if (o->eos_id < -1 || (o->vocab_size && o->eos_id >= (int64_t)o->vocab_size))
    return pose_error(POSE_EINVAL, "shard writer %s: eos_id %d outside the vocabulary", path, o->eos_id);
  pose_shard_writer *w = calloc(1, sizeof *w);
  if (!w) return pose_error(POSE_ENOMEM, "shard writer: out of memory");
  w->o = *o;
  w->path = strdup(path);
  w->tmp_path = str_printf("%s.tmp.%ld", path, (long)getpid());
  w->tok_path = str_printf("%s.tok.%ld", path, (long)getpid());
  w->cap_docs = 1024;
  w->index = malloc(sizeof(uint64_t) * (size_t)(w->cap_docs + 1));
  w->name_off = malloc(sizeof(uint64_t) * (size_t)(w->cap_docs + 1));
  w->names_cap = 4096;
  w->names = malloc(w->names_cap);
  if (!w->path || !w->tmp_path || !w->tok_path || !w->index || !w->name_off || !w->names) {
    writer_free(w);
    return pose_error(POSE_ENOMEM, "shard writer: out of memory");
  }
  w->index[0] = 0;
  w->name_off[0] = 0;
  w->tok = fopen(w->tok_path, "wb");
  if (!w->tok) {
    pose_status st = pose_error(POSE_EIO, "shard writer: cannot create %s: %s", w->tok_path, strerror(errno));
    free(w->tok_path); w->tok_path = NULL; /* nothing to unlink */
    writer_free(w);
    return st;
  }
  setvbuf(w->tok, NULL, _IOFBF, 1 << 20);
  *out = w;
  return POSE_OK;
}

static pose_status add_doc_meta(pose_shard_writer *w, int64_t n, const char *source) {
  if (w->n_docs == w->cap_docs) {
    int64_t cap = w->cap_docs * 2;
    uint64_t *a = realloc(w->index, sizeof(uint64_t) * (size_t)(cap + 1));
    if (!a) return pose_error(POSE_ENOMEM, "shard writer: out of memory");
    w->index = a;
    a = realloc(w->name_off, sizeof(uint64_t) * (size_t)(cap + 1));
    if (!a) return pose_error(POSE_ENOMEM, "shard writer: out of memory");
    w->name_off = a;
    w->cap_docs = cap;
  }
  size_t sl = source ? strlen(source) : 0;
  if (sl) w->any_name = 1;
  if (w->names_len + sl + 1 > w->names_cap) {
    size_t cap = w->names_cap * 2;
    while (cap < w->names_len + sl + 1) cap *= 2;
    char *p = realloc(w->names, cap);
    if (!p) return pose_error(POSE_ENOMEM, "shard writer: out of memory");
    w->names = p;
    w->names_cap = cap;
  }
  if (sl) memcpy(w->names + w->names_len, source, sl);
  w->names[w->names_len + sl] = 0;
  w->names_len += sl + 1;
  w->n_tokens += (uint64_t)n;
  w->n_docs++;
  w->index[w->n_docs] = w->n_tokens;
  w->name_off[w->n_docs] = w->names_len;
  return POSE_OK;
}

/* Shared body of the two add functions: T is the input element type. Tokens are checked and converted in blocks. */
#define WRITER_ADD_BODY(T)                                                                                         \
  if (!w) return pose_error(POSE_EINVAL, "shard writer: closed");                                                \
  if (w->failed) return pose_error(POSE_EIO, "shard writer %s: an earlier write failed", w->path);                \
  if (n < 0 || (n > 0 && !ids)) return pose_error(POSE_EINVAL, "shard writer %s: bad document (n = %lld)", w->path, \
                                                  (long long)n);                                                  \
  int64_t limit = w->o.dtype == POSE_SHARD_U16 ? 65536 : (int64_t)UINT32_MAX + 1;                                \
  if (w->o.vocab_size) limit = w->o.vocab_size;                                                                 \
  for (int64_t i = 0; i < n; i++)                                                                                \
    if ((int64_t)ids[i] < 0 || (int64_t)ids[i] >= limit)                                                         \
      return pose_error(POSE_EINVAL, "shard writer %s: document %lld token %lld is %lld, outside [0, %lld) (%s)", \
                        w->path, (long long)w->n_docs, (long long)i, (long long)ids[i], (long long)limit,        \
                        w->o.vocab_size ? "the vocabulary" : w->o.dtype == POSE_SHARD_U16 ? "u16" : "u32");     \
  uint8_t buf[8192];                                                                                             \
  size_t width = dtype_width(w->o.dtype), per = sizeof buf / width;                                              \
  for (int64_t i = 0; i < n;) {                                                                                  \
    size_t k = (size_t)(n - i) < per ? (size_t)(n - i) : per;                                                    \
    if (width == 2) for (size_t j = 0; j < k; j++) ((uint16_t *)buf)[j] = (uint16_t)ids[i + (int64_t)j];          \
    else for (size_t j = 0; j < k; j++) ((uint32_t *)buf)[j] = (uint32_t)ids[i + (int64_t)j];                    \
    if (fwrite(buf, width, k, w->tok) != k) {                                                                    \
      w->failed = 1;                                                                                             \
      return pose_error(POSE_EIO, "shard writer: writing %s: %s", w->tok_path, strerror(errno));                  \
    }                                                                                                            \
    i += (int64_t)k;                                                                                             \
  }                                                                                                              \
  pose_status meta_st = add_doc_meta(w, n, source);                                                             \
  if (meta_st != POSE_OK) w->failed = 1;                                                                         \
  return meta_st;

pose_status pose_shard_writer_add(pose_shard_writer *w, const int64_t *ids, int64_t n, const char *source) {
  WRITER_ADD_BODY(int64_t)
}

pose_status pose_shard_writer_add_u32(pose_shard_writer *w, const uint32_t *ids, int64_t n, const char *source) {
  WRITER_ADD_BODY(uint32_t)
}

int64_t pose_shard_writer_num_docs(const pose_shard_writer *w) { return w ? w->n_docs : 0; }
int64_t pose_shard_writer_num_tokens(const pose_shard_writer *w) { return w ? (int64_t)w->n_tokens : 0; }

static int write_all(FILE *f, const void *p, size_t n) { return n == 0 || fwrite(p, 1, n, f) == n; }

pose_status pose_shard_writer_close(pose_shard_writer *w) {
  if (!w) return pose_error(POSE_EINVAL, "shard writer: closed");
  pose_status st = POSE_OK;
  FILE *f = NULL;
  if (w->failed || fflush(w->tok) != 0 || ferror(w->tok)) {
    st = pose_error(POSE_EIO, "shard writer: writing %s: %s", w->tok_path, strerror(errno));
    goto done;
  }
  f = fopen(w->tmp_path, "wb");
  if (!f) { st = pose_error(POSE_EIO, "shard writer: cannot create %s: %s", w->tmp_path, strerror(errno)); goto done; }
  setvbuf(f, NULL, _IOFBF, 1 << 20);
  size_t width = dtype_width(w->o.dtype);
  uint64_t tok_bytes = w->n_tokens * width;
  shard_header h;
  memset(&h, 0, sizeof h);
  memcpy(h.magic, POSE_SHARD_MAGIC, 8);
  h.version = POSE_SHARD_VERSION;
  h.dtype = w->o.dtype;
  h.num_tokens = w->n_tokens;
  h.num_docs = (uint64_t)w->n_docs;
  h.vocab_size = w->o.vocab_size;
  h.eos_id = w->o.eos_id;
  h.names_bytes = w->any_name ? 8 * ((uint64_t)w->n_docs + 1) + w->names_len : 0;
  int ok = write_all(f, &h, sizeof h) && write_all(f, w->index, 8 * ((size_t)w->n_docs + 1));
  /* copy the tokens from the side file */
  static const uint8_t zeros[8] = {0};
  if (ok) {
    FILE *in = fopen(w->tok_path, "rb");
    if (!in) { ok = 0; }
    else {
      char *buf = malloc(1 << 20);
      uint64_t left = tok_bytes;
      while (ok && buf && left) {
        size_t k = left < (1u << 20) ? (size_t)left : (1u << 20);
        if (fread(buf, 1, k, in) != k) ok = 0;
        else ok = write_all(f, buf, k);
        left -= k;
      }
      if (!buf) ok = 0;
      free(buf);
      fclose(in);
    }
  }
  ok = ok && write_all(f, zeros, (size_t)(pad8(tok_bytes) - tok_bytes));
  if (ok && w->any_name)
    ok = write_all(f, w->name_off, 8 * ((size_t)w->n_docs + 1)) && write_all(f, w->names, w->names_len);
  if (ok) ok = fflush(f) == 0 && fsync(fileno(f)) == 0;
  if (fclose(f) != 0) ok = 0;
  f = NULL;
  if (!ok) { st = pose_error(POSE_EIO, "shard writer: writing %s: %s", w->tmp_path, strerror(errno)); goto done; }
  if (rename(w->tmp_path, w->path) != 0) {
    st = pose_error(POSE_EIO, "shard writer: renaming %s to %s: %s", w->tmp_path, w->path, strerror(errno));
    goto done;
  }
done:
  if (st != POSE_OK) unlink(w->tmp_path);
  writer_free(w);
  return st;
}

void pose_shard_writer_abort(pose_shard_writer *w) {
  if (!w) return;
  unlink(w->tmp_path);
  writer_free(w);
}

/* ---- reader ---------------------------------------------------------------------------------------------- */

struct pose_shard {
  char *path;
  const uint8_t *map;
  size_t size;
  shard_header h;
  const uint64_t *index;
  const void *tokens;
  const uint64_t *name_off; /* NULL when no name table */
  const char *names;
};

static pose_status corrupt(const char *path, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static pose_status corrupt(const char *path, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return pose_error(POSE_EFORMAT, "shard %s: %s", path, msg);
}

static pose_status validate(pose_shard *s) {
  const char *p = s->path;
  const uint64_t size = s->size;
  if (size < sizeof(shard_header))
    return corrupt(p, "truncated header (%llu bytes, a shard has at least %d)", (unsigned long long)size,
                   POSE_SHARD_HEADER_BYTES);
  memcpy(&s->h, s->map, sizeof s->h);
  const shard_header *h = &s->h;
  if (memcmp(h->magic, POSE_SHARD_MAGIC, 8) != 0) return corrupt(p, "bad magic (not a pose token shard)");
  if (h->version != POSE_SHARD_VERSION)
    return corrupt(p, "unknown version %u (this build reads version %u)", h->version, POSE_SHARD_VERSION);
  size_t width = dtype_width(h->dtype);
  if (!width) return corrupt(p, "unknown token dtype %u (1 = u16, 2 = u32)", h->dtype);
  if (h->eos_id < -1 || (h->vocab_size && h->eos_id >= (int64_t)h->vocab_size))
    return corrupt(p, "eos_id %d outside the vocabulary of %u", h->eos_id, h->vocab_size);
  if (h->dtype == POSE_SHARD_U16 && h->vocab_size > 65536)
    return corrupt(p, "vocab_size %u does not fit u16 tokens", h->vocab_size);
  if (h->reserved[0] || h->reserved[1]) return corrupt(p, "reserved header bytes are not zero");
  /* index */
  uint64_t room = size - sizeof(shard_header);
  if (h->num_docs >= room / 8)
    return corrupt(p, "truncated index (%llu documents need %llu bytes of index, %llu bytes follow the header)",
                   (unsigned long long)h->num_docs,
                   h->num_docs < UINT64_MAX / 8 ? (unsigned long long)(8 * (h->num_docs + 1)) : 0ull,
                   (unsigned long long)room);
  uint64_t idx_bytes = 8 * (h->num_docs + 1);
  uint64_t tok_off = sizeof(shard_header) + idx_bytes;
  room = size - tok_off;
  if (h->num_tokens > room / width)
    return corrupt(p, "token count %llu past the end of the file (%llu bytes of tokens at offset %llu, file has %llu)",
                   (unsigned long long)h->num_tokens, (unsigned long long)(h->num_tokens * (uint64_t)width),
                   (unsigned long long)tok_off, (unsigned long long)size);
  uint64_t tok_bytes = pad8(h->num_tokens * width);
  uint64_t names_off = tok_off + tok_bytes;
  if (names_off > size)
    return corrupt(p, "token section padding past the end of the file (%llu > %llu bytes)",
                   (unsigned long long)names_off, (unsigned long long)size);
  if (h->names_bytes > size - names_off)
    return corrupt(p, "name table of %llu bytes past the end of the file (at offset %llu, file has %llu)",
                   (unsigned long long)h->names_bytes, (unsigned long long)names_off, (unsigned long long)size);
  if (names_off + h->names_bytes != size)
    return corrupt(p, "%llu unexpected bytes after the last section (file has %llu, sections end at %llu)",
                   (unsigned long long)(size - names_off - h->names_bytes), (unsigned long long)size,
                   (unsigned long long)(names_off + h->names_bytes));
  s->index = (const uint64_t *)(s->map + sizeof(shard_header));
  s->tokens = s->map + tok_off;
  if (s->index[0] != 0) return corrupt(p, "document index starts at %llu, not 0", (unsigned long long)s->index[0]);
  for (uint64_t i = 0; i < h->num_docs; i++)
    if (s->index[i + 1] < s->index[i])
      return corrupt(p, "document offsets not monotonic at document %llu (%llu after %llu)", (unsigned long long)i,
                     (unsigned long long)s->index[i + 1], (unsigned long long)s->index[i]);
  if (s->index[h->num_docs] != h->num_tokens)
    return corrupt(p, "document index ends at %llu, but the header says %llu tokens",
                   (unsigned long long)s->index[h->num_docs], (unsigned long long)h->num_tokens);
  /* names */
  if (h->names_bytes) {
    if (h->names_bytes < idx_bytes)
      return corrupt(p, "name table of %llu bytes is shorter than its %llu-byte offset table",
                     (unsigned long long)h->names_bytes, (unsigned long long)idx_bytes);
    s->name_off = (const uint64_t *)(s->map + names_off);
    s->names = (const char *)(s->map + names_off + idx_bytes);
    uint64_t blob = h->names_bytes - idx_bytes;
    if (s->name_off[0] != 0) return corrupt(p, "name offsets start at %llu, not 0", (unsigned long long)s->name_off[0]);
    if (s->name_off[h->num_docs] != blob)
      return corrupt(p, "name offsets end at %llu, but the name blob has %llu bytes",
                     (unsigned long long)s->name_off[h->num_docs], (unsigned long long)blob);
    for (uint64_t i = 0; i < h->num_docs; i++) {
      uint64_t a = s->name_off[i], b = s->name_off[i + 1];
      if (b <= a || b > blob)
        return corrupt(p, "name offsets not increasing at document %llu (%llu after %llu)", (unsigned long long)i,
                       (unsigned long long)b, (unsigned long long)a);
      if (s->names[b - 1] != 0) return corrupt(p, "name of document %llu is not NUL-terminated", (unsigned long long)i);
    }
  }
  return POSE_OK;
}

pose_status pose_shard_open(const char *path, pose_shard **out) {
  *out = NULL;
  if (!path) return pose_error(POSE_EINVAL, "shard: no path");
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return pose_error(POSE_EIO, "shard %s: cannot open: %s", path, strerror(errno));
  struct stat stbuf;
  if (fstat(fd, &stbuf) != 0) {
    int e = errno;
    close(fd);
    return pose_error(POSE_EIO, "shard %s: cannot stat: %s", path, strerror(e));
  }
  if (!S_ISREG(stbuf.st_mode)) { close(fd); return pose_error(POSE_EIO, "shard %s: not a regular file", path); }
  pose_shard *s = calloc(1, sizeof *s);
  if (!s || !(s->path = strdup(path))) {
    close(fd);
    free(s);
    return pose_error(POSE_ENOMEM, "shard: out of memory");
  }
  s->size = (size_t)stbuf.st_size;
  if (s->size > 0) {
    void *m = mmap(NULL, s->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED) {
      int e = errno;
      close(fd);
      free(s->path);
      free(s);
      return pose_error(POSE_EIO, "shard %s: cannot map: %s", path, strerror(e));
    }
    s->map = m;
  }
  close(fd);
  pose_status st = validate(s);
  if (st != POSE_OK) { pose_shard_close(s); return st; }
  *out = s;
  return POSE_OK;
}

void pose_shard_close(pose_shard *s) {
  if (!s) return;
  if (s->map) munmap((void *)s->map, s->size);
  free(s->path);
  free(s);
}

const char *pose_shard_path(const pose_shard *s) { return s->path; }
int64_t pose_shard_num_docs(const pose_shard *s) { return (int64_t)s->h.num_docs; }
int64_t pose_shard_num_tokens(const pose_shard *s) { return (int64_t)s->h.num_tokens; }
pose_shard_dtype pose_shard_get_dtype(const pose_shard *s) { return (pose_shard_dtype)s->h.dtype; }
uint32_t pose_shard_vocab_size(const pose_shard *s) { return s->h.vocab_size; }
int32_t pose_shard_eos_id(const pose_shard *s) { return s->h.eos_id; }
int pose_shard_has_names(const pose_shard *s) { return s->name_off != NULL; }
const void *pose_shard_tokens(const pose_shard *s) { return s->tokens; }

int64_t pose_shard_doc_len(const pose_shard *s, int64_t i) {
  if (i < 0 || (uint64_t)i >= s->h.num_docs) return 0;
  return (int64_t)(s->index[i + 1] - s->index[i]);
}

int64_t pose_shard_doc_start(const pose_shard *s, int64_t i) {
  if (i < 0 || (uint64_t)i >= s->h.num_docs) return -1;
  return (int64_t)s->index[i];
}

const char *pose_shard_source(const pose_shard *s, int64_t i) {
  if (!s->name_off || i < 0 || (uint64_t)i >= s->h.num_docs) return "";
  return s->names + s->name_off[i];
}

pose_status pose_shard_read(const pose_shard *s, int64_t i, int64_t start, int64_t n, int64_t *out) {
  if (i < 0 || (uint64_t)i >= s->h.num_docs)
    return pose_error(POSE_EINVAL, "shard %s: document %lld out of range (%llu documents)", s->path, (long long)i,
                      (unsigned long long)s->h.num_docs);
  int64_t len = pose_shard_doc_len(s, i);
  if (start < 0 || n < 0 || start > len || n > len - start)
    return pose_error(POSE_EINVAL, "shard %s: tokens [%lld, %lld) outside document %lld of %lld tokens", s->path,
                      (long long)start, (long long)(start + n), (long long)i, (long long)len);
  int64_t base = (int64_t)s->index[i] + start;
  pose_shard_dtype dt = (pose_shard_dtype)s->h.dtype;
  for (int64_t k = 0; k < n; k++) out[k] = pose_shard_token_at(s->tokens, dt, base + k);
  return POSE_OK;
}

pose_status pose_shard_check_tokens(const pose_shard *s, uint32_t vocab) {
  if (!vocab) vocab = s->h.vocab_size;
  if (!vocab) return POSE_OK;
  pose_shard_dtype dt = (pose_shard_dtype)s->h.dtype;
  uint64_t bad = UINT64_MAX;
  if (dt == POSE_SHARD_U16) {
    const uint16_t *t = s->tokens;
    for (uint64_t k = 0; k < s->h.num_tokens; k++) if (t[k] >= vocab) { bad = k; break; }
  } else {
    const uint32_t *t = s->tokens;
    for (uint64_t k = 0; k < s->h.num_tokens; k++) if (t[k] >= vocab) { bad = k; break; }
  }
  if (bad == UINT64_MAX) return POSE_OK;
  /* find the document holding token `bad` */
  uint64_t lo = 0, hi = s->h.num_docs;
  while (hi - lo > 1) {
    uint64_t mid = (lo + hi) / 2;
    if (s->index[mid] <= bad) lo = mid; else hi = mid;
  }
  return corrupt(s->path, "document %llu token %llu is %lld, outside the vocabulary of %u", (unsigned long long)lo,
                 (unsigned long long)(bad - s->index[lo]), (long long)pose_shard_token_at(s->tokens, dt, (int64_t)bad),
                 vocab);
}
