/* The tokenizer handle: picks SentencePiece or tokenizer.json by the path, then forwards to spm_shim or
 * hf_tokenizer. BOS/EOS, UTF-8 checking and id range checks live here, once for both. */
#include "tokenizer.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bpe.h"
#include "hf_pipeline.h"
#include "hf_tokenizer.h"
#include "spm_shim.h"

struct pose_tokenizer {
  pose_tokenizer_kind kind;
  pose_spm *spm;
  pose_hf *hf;
  char *path;
  int32_t vocab_size;
};

size_t pose_utf8_valid_prefix(const char *text, size_t len) {
  size_t i = 0, bad;
  while (i < len) {
    size_t k = hf_utf8_seq(text + i, len - i, &bad);
    if (!k) return i;
    i += k;
  }
  return len;
}

static int ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), k = strlen(suffix);
  return n >= k && strcmp(s + n - k, suffix) == 0;
}

static int is_file(const char *p) {
  struct stat sb;
  return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* Which file to load, and as what. */
static pose_status resolve(const char *path, char **file, pose_tokenizer_kind *kind) {
  struct stat sb;
  if (stat(path, &sb) != 0) return pose_error(POSE_EIO, "tokenizer %s: %s", path, strerror(errno));
  if (S_ISDIR(sb.st_mode)) {
    static const char *const names[] = {"tokenizer.json", "tokenizer.model"};
    for (int i = 0; i < 2; i++) {
      size_t n = strlen(path);
      char *f = malloc(n + 2 + strlen(names[i]));
      if (!f) return pose_error(POSE_ENOMEM, "out of memory");
      sprintf(f, "%s%s%s", path, n && path[n - 1] == '/' ? "" : "/", names[i]);
      if (is_file(f)) {
        *file = f;
        *kind = i == 0 ? POSE_TOK_HF_BPE : POSE_TOK_SENTENCEPIECE;
        return POSE_OK;
      }
      free(f);
    }
    return pose_error(POSE_EIO, "tokenizer directory %s holds neither tokenizer.json nor tokenizer.model", path);
  }
  if (!(*file = strdup(path))) return pose_error(POSE_ENOMEM, "out of memory");
  if (ends_with(path, ".json")) *kind = POSE_TOK_HF_BPE;
  else if (ends_with(path, ".model")) *kind = POSE_TOK_SENTENCEPIECE;
  else { /* by content: JSON starts with '{' (after blanks); a SentencePiece model is a binary protobuf */
    FILE *f = fopen(path, "rb");
    if (!f) { pose_status st = pose_error(POSE_EIO, "tokenizer %s: %s", path, strerror(errno)); free(*file); return st; }
    int c;
    while ((c = fgetc(f)) == ' ' || c == '\n' || c == '\r' || c == '\t') {}
    fclose(f);
    *kind = c == '{' ? POSE_TOK_HF_BPE : POSE_TOK_SENTENCEPIECE;
  }
  return POSE_OK;
}

pose_status pose_tokenizer_open(pose_tokenizer **out, const char *path) {
  *out = NULL;
  if (!path || !*path) return pose_error(POSE_EINVAL, "tokenizer: empty path");
  pose_tokenizer *t = calloc(1, sizeof *t);
  if (!t) return pose_error(POSE_ENOMEM, "out of memory");
  pose_status st = resolve(path, &t->path, &t->kind);
  if (!st) {
    if (t->kind == POSE_TOK_SENTENCEPIECE) {
      st = pose_spm_load(&t->spm, t->path);
      if (!st) t->vocab_size = pose_spm_piece_size(t->spm);
    } else {
      st = pose_hf_load(&t->hf, t->path);
      if (!st) t->vocab_size = pose_hf_vocab_size(t->hf);
    }
  }
  if (st) { pose_tokenizer_free(t); return st; }
  *out = t;
  return POSE_OK;
}

void pose_tokenizer_free(pose_tokenizer *t) {
  if (!t) return;
  pose_spm_free(t->spm);
  pose_hf_free(t->hf);
  free(t->path);
  free(t);
}

pose_tokenizer_kind pose_tokenizer_kind_of(const pose_tokenizer *t) { return t->kind; }
const char *pose_tokenizer_kind_name(const pose_tokenizer *t) {
  return t->kind == POSE_TOK_SENTENCEPIECE ? "sentencepiece" : "bpe";
}
const char *pose_tokenizer_path(const pose_tokenizer *t) { return t->path; }
int32_t pose_tokenizer_vocab_size(const pose_tokenizer *t) { return t->vocab_size; }
int32_t pose_tokenizer_bos_id(const pose_tokenizer *t) { return t->spm ? pose_spm_bos_id(t->spm) : pose_hf_bos_id(t->hf); }
int32_t pose_tokenizer_eos_id(const pose_tokenizer *t) { return t->spm ? pose_spm_eos_id(t->spm) : pose_hf_eos_id(t->hf); }
int32_t pose_tokenizer_unk_id(const pose_tokenizer *t) { return t->spm ? pose_spm_unk_id(t->spm) : pose_hf_unk_id(t->hf); }
int32_t pose_tokenizer_pad_id(const pose_tokenizer *t) { return t->spm ? pose_spm_pad_id(t->spm) : pose_hf_pad_id(t->hf); }

pose_status pose_tokenizer_encode(const pose_tokenizer *t, const char *text, size_t len, int add_bos, int add_eos,
                                  int32_t **ids, size_t *n) {
  *ids = NULL;
  *n = 0;
  int32_t bos = pose_tokenizer_bos_id(t), eos = pose_tokenizer_eos_id(t);
  if (add_bos && bos < 0) return pose_error(POSE_EINVAL, "%s: the tokenizer has no BOS token", t->path);
  if (add_eos && eos < 0) return pose_error(POSE_EINVAL, "%s: the tokenizer has no EOS token", t->path);
  size_t ok = pose_utf8_valid_prefix(text, len);
  if (ok < len)
    return pose_error(POSE_EINVAL, "%s: text is not valid UTF-8 (byte 0x%02X at offset %zu)", t->path,
                      (unsigned char)text[ok], ok);
  pose_ivec v = {0};
  pose_status st = POSE_OK;
  if (add_bos) st = pose_ivec_push(&v, bos);
  if (!st && t->spm) {
    int32_t *body;
    size_t m;
    st = pose_spm_encode(t->spm, text, len, &body, &m);
    for (size_t i = 0; !st && i < m; i++) st = pose_ivec_push(&v, body[i]);
    free(body);
  } else if (!st) {
    st = pose_hf_encode(t->hf, text, len, &v);
    if (st) pose_error_prefix(st, "%s: ", t->path);
  }
  if (!st && add_eos) st = pose_ivec_push(&v, eos);
  if (st) { free(v.v); return st; }
  if (v.n == 0) { free(v.v); return POSE_OK; }
  *ids = v.v;
  *n = v.n;
  return POSE_OK;
}

pose_status pose_tokenizer_decode(const pose_tokenizer *t, const int32_t *ids, size_t n, char **text, size_t *len) {
  *text = NULL;
  if (len) *len = 0;
  for (size_t i = 0; i < n; i++)
    if (ids[i] < 0 || ids[i] >= t->vocab_size)
      return pose_error(POSE_EINVAL, "%s: id %d at position %zu is outside the vocabulary [0, %d)", t->path, ids[i], i,
                        t->vocab_size);
  pose_status st = t->spm ? pose_spm_decode(t->spm, ids, n, text, len) : pose_hf_decode(t->hf, ids, n, text, len);
  if (st && t->hf) pose_error_prefix(st, "%s: ", t->path);
  return st;
}

pose_status pose_tokenizer_id_to_piece(const pose_tokenizer *t, int32_t id, const char **piece, size_t *len) {
  const char *p = NULL;
  if (id >= 0 && id < t->vocab_size) p = t->spm ? pose_spm_id_to_piece(t->spm, id, len) : pose_hf_piece(t->hf, id, len);
  if (!p) return pose_error(POSE_EINVAL, "%s: id %d is not in the vocabulary (size %d)", t->path, id, t->vocab_size);
  *piece = p;
  return POSE_OK;
}

int32_t pose_tokenizer_piece_to_id(const pose_tokenizer *t, const char *piece, size_t len) {
  return t->spm ? pose_spm_piece_to_id(t->spm, piece, len) : pose_hf_id(t->hf, piece, len);
}

int pose_tokenizer_is_special(const pose_tokenizer *t, int32_t id) {
  if (id < 0 || id >= t->vocab_size) return 0;
  return t->spm ? pose_spm_is_special(t->spm, id) : pose_hf_is_special(t->hf, id);
}

pose_status pose_tokenizer_train(const char *const *keys, const char *const *values, int n) {
  return pose_spm_train(keys, values, n);
}
