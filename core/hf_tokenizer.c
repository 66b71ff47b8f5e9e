#include "hf_tokenizer.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hashmap.h"
#include "hf_pipeline.h"

typedef struct {
  char *content;     /* as written */
  char *pattern;     /* what is matched: the content, normalised when `normalized` (tokenizers' normalized_cache) */
  size_t clen, plen;
  int32_t id;
  int special, single_word, lstrip, rstrip, normalized;
} added_tok;

/* the added tokens of one matching pass, indexed by first byte, longest first (leftmost-longest matching) */
typedef struct { int32_t *idx[256]; int32_t cnt[256]; int any; } match_set;

struct pose_hf {
  pose_bpe *bpe;
  added_tok *added;
  size_t nadded;
  pose_strmap added_map; /* content -> index in added */
  match_set raw, norm;   /* non-normalized tokens match the raw text, normalized ones the normalised text */
  int32_t *added_of;     /* id -> index in added, or -1 (size entries) */
  hf_stage *normalizer, *pretok, *decoder;
  int32_t size, bos, eos, pad;
};

/* ---- loading ------------------------------------------------------------------------------------------------------ */

static pose_status read_file(const char *path, char **out, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return pose_error(POSE_EIO, "cannot open: %s", strerror(errno));
  char *buf = NULL;
  size_t n = 0, cap = 0;
  pose_status st = POSE_OK;
  for (;;) {
    if (cap - n < 65536) {
      cap = cap ? cap * 2 : 1 << 20;
      char *p = realloc(buf, cap + 1);
      if (!p) { st = pose_error(POSE_ENOMEM, "out of memory reading the file"); break; }
      buf = p;
    }
    size_t k = fread(buf + n, 1, cap - n, f);
    n += k;
    if (k == 0) {
      if (ferror(f)) st = pose_error(POSE_EIO, "read error");
      break;
    }
  }
  fclose(f);
  if (st) { free(buf); return st; }
  buf[n] = 0;
  *out = buf;
  *len = n;
  return POSE_OK;
}

static pose_status parse_json(const char *path, cJSON **out) {
  char *text = NULL;
  size_t len = 0;
  POSE_TRY(read_file(path, &text, &len));
  const char *end = NULL;
  *out = cJSON_ParseWithLengthOpts(text, len, &end, 0);
  if (!*out) {
    const char *at = end ? end : cJSON_GetErrorPtr();
    size_t off = at && at >= text && at <= text + len ? (size_t)(at - text) : 0, line = 1;
    for (size_t i = 0; i < off; i++) line += text[i] == '\n';
    free(text);
    return pose_error(POSE_EFORMAT, "malformed JSON near byte %zu (line %zu)", off, line);
  }
  free(text);
  return POSE_OK;
}

static int json_int(const cJSON *v, int32_t *out) {
  if (!cJSON_IsNumber(v) || v->valuedouble != (double)(int64_t)v->valuedouble || v->valuedouble < 0 ||
      v->valuedouble > INT32_MAX)
    return 0;
  *out = (int32_t)v->valuedouble;
  return 1;
}

static pose_status load_model(pose_hf *h, const cJSON *model) {
  if (!cJSON_IsObject(model)) return pose_error(POSE_EFORMAT, "'model' is missing or not an object");
  const cJSON *type = cJSON_GetObjectItemCaseSensitive(model, "type");
  if (cJSON_IsString(type) && strcmp(type->valuestring, "BPE") != 0)
    return pose_error(POSE_EUNSUPPORTED, "model type '%s' is not supported (only BPE)", type->valuestring);
  const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
  const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
  if (!cJSON_IsObject(vocab)) return pose_error(POSE_EFORMAT, "model.vocab must be an object");
  if (!cJSON_IsArray(merges)) return pose_error(POSE_EFORMAT, "model.merges must be an array");
  const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(model, "dropout");
  if (cJSON_IsNumber(dropout) && dropout->valuedouble > 0)
    return pose_error(POSE_EUNSUPPORTED, "BPE dropout (%g) is not supported", dropout->valuedouble);
  static const char *const affixes[] = {"continuing_subword_prefix", "end_of_word_suffix"};
  for (int i = 0; i < 2; i++) {
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(model, affixes[i]);
    if (cJSON_IsString(a) && a->valuestring[0])
      return pose_error(POSE_EUNSUPPORTED, "BPE %s '%s' is not supported", affixes[i], a->valuestring);
  }
  POSE_TRY(pose_bpe_new(&h->bpe));
  const cJSON *it;
  cJSON_ArrayForEach(it, vocab) {
    int32_t id;
    if (!json_int(it, &id)) return pose_error(POSE_EFORMAT, "model.vocab['%s'] is not a non-negative integer", it->string);
    POSE_TRY(pose_bpe_add_piece(h->bpe, it->string, strlen(it->string), id));
  }
  int32_t rank = 0;
  cJSON_ArrayForEach(it, merges) {
    if (cJSON_IsString(it)) {
      /* "a b": exactly one space, as tokenizers' legacy form; "#version" lines are comments */
      const char *s = it->valuestring, *sp = strchr(s, ' ');
      if (!strncmp(s, "#version", 8)) continue;
      if (!sp || strchr(sp + 1, ' '))
        return pose_error(POSE_EFORMAT, "merge %d ('%s') is not two pieces separated by one space", rank, s);
      POSE_TRY(pose_bpe_add_merge(h->bpe, s, (size_t)(sp - s), sp + 1, strlen(sp + 1), rank));
    } else if (cJSON_IsArray(it) && cJSON_GetArraySize(it) == 2 && cJSON_IsString(cJSON_GetArrayItem(it, 0)) &&
               cJSON_IsString(cJSON_GetArrayItem(it, 1))) {
      const char *a = cJSON_GetArrayItem(it, 0)->valuestring, *b = cJSON_GetArrayItem(it, 1)->valuestring;
      POSE_TRY(pose_bpe_add_merge(h->bpe, a, strlen(a), b, strlen(b), rank));
    } else {
      return pose_error(POSE_EFORMAT, "merge %d is neither \"a b\" nor [\"a\", \"b\"]", rank);
    }
    rank++;
  }
  const cJSON *unk = cJSON_GetObjectItemCaseSensitive(model, "unk_token");
  const cJSON *fb = cJSON_GetObjectItemCaseSensitive(model, "byte_fallback");
  const cJSON *fuse = cJSON_GetObjectItemCaseSensitive(model, "fuse_unk");
  const cJSON *ign = cJSON_GetObjectItemCaseSensitive(model, "ignore_merges");
  return pose_bpe_set_options(h->bpe, cJSON_IsString(unk) ? unk->valuestring : NULL, cJSON_IsTrue(fb),
                              cJSON_IsTrue(fuse), cJSON_IsTrue(ign));
}

static pose_status normalize_string(const pose_hf *h, const char *s, size_t n, char **out, size_t *olen) {
  hf_list a = {0}, b = {0};
  pose_status st = hf_list_add(&a, s, n, 1);
  if (!st) st = hf_stage_run(h->normalizer, &a, &b);
  size_t total = 0;
  for (size_t i = 0; !st && i < a.n; i++) total += a.v[i].len;
  char *o = st ? NULL : malloc(total + 1);
  if (!st && !o) st = pose_error(POSE_ENOMEM, "out of memory");
  if (!st) {
    size_t k = 0;
    for (size_t i = 0; i < a.n; i++) { memcpy(o + k, hf_list_str(&a, i), a.v[i].len); k += a.v[i].len; }
    o[k] = 0;
    *out = o;
    *olen = k;
  }
  hf_list_free(&a);
  hf_list_free(&b);
  return st;
}

static pose_status build_match_set(pose_hf *h, match_set *m, int normalized) {
  for (size_t pass = 0; pass < 2; pass++) { /* count, then fill */
    int32_t fill[256] = {0};
    for (size_t i = 0; i < h->nadded; i++) {
      const added_tok *t = &h->added[i];
      if (t->normalized != normalized || t->plen == 0) continue;
      unsigned char c = (unsigned char)t->pattern[0];
      if (pass == 0) m->cnt[c]++;
      else m->idx[c][fill[c]++] = (int32_t)i;
    }
    if (pass == 0)
      for (int c = 0; c < 256; c++) {
        if (!m->cnt[c]) continue;
        m->any = 1;
        if (!(m->idx[c] = malloc((size_t)m->cnt[c] * sizeof(int32_t)))) return pose_error(POSE_ENOMEM, "out of memory");
      }
  }
  for (int c = 0; c < 256; c++) /* longest first; insertion sort, the lists are short */
    for (int32_t i = 1; i < m->cnt[c]; i++)
      for (int32_t j = i; j > 0 && h->added[m->idx[c][j]].plen > h->added[m->idx[c][j - 1]].plen; j--) {
        int32_t t = m->idx[c][j]; m->idx[c][j] = m->idx[c][j - 1]; m->idx[c][j - 1] = t;
      }
  return POSE_OK;
}

static pose_status load_added(pose_hf *h, const cJSON *arr) {
  if (!arr || cJSON_IsNull(arr)) return POSE_OK;
  if (!cJSON_IsArray(arr)) return pose_error(POSE_EFORMAT, "'added_tokens' must be an array");
  int n = cJSON_GetArraySize(arr);
  h->added = calloc((size_t)n + 1, sizeof *h->added);
  if (!h->added) return pose_error(POSE_ENOMEM, "out of memory");
  const cJSON *it;
  cJSON_ArrayForEach(it, arr) {
    added_tok *t = &h->added[h->nadded];
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(it, "content");
    if (!cJSON_IsString(c)) return pose_error(POSE_EFORMAT, "added_tokens[%zu]: 'content' must be a string", h->nadded);
    if (!json_int(cJSON_GetObjectItemCaseSensitive(it, "id"), &t->id))
      return pose_error(POSE_EFORMAT, "added_tokens[%zu] ('%s'): 'id' must be a non-negative integer", h->nadded,
                        c->valuestring);
    if (!(t->content = strdup(c->valuestring))) return pose_error(POSE_ENOMEM, "out of memory");
    t->clen = strlen(t->content);
    h->nadded++;
    t->special = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(it, "special"));
    t->single_word = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(it, "single_word"));
    t->lstrip = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(it, "lstrip"));
    t->rstrip = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(it, "rstrip"));
    const cJSON *nz = cJSON_GetObjectItemCaseSensitive(it, "normalized");
    t->normalized = cJSON_IsBool(nz) ? cJSON_IsTrue(nz) : !t->special; /* tokenizers' default */
    int32_t model_id = pose_bpe_id(h->bpe, t->content, t->clen);
    if (model_id >= 0 && model_id != t->id)
      return pose_error(POSE_EFORMAT, "added token '%s' has id %d but the model vocabulary gives it %d", t->content,
                        t->id, model_id);
    size_t other_len;
    if (model_id < 0 && pose_bpe_piece(h->bpe, t->id, &other_len))
      return pose_error(POSE_EFORMAT, "added token '%s' takes id %d from '%s'", t->content, t->id,
                        pose_bpe_piece(h->bpe, t->id, &other_len));
    if (t->normalized && !hf_stage_is_empty(h->normalizer)) POSE_TRY(normalize_string(h, t->content, t->clen, &t->pattern, &t->plen));
    else if (!(t->pattern = strdup(t->content))) return pose_error(POSE_ENOMEM, "out of memory");
    else t->plen = t->clen;
    POSE_TRY(pose_strmap_put(&h->added_map, t->content, t->clen, (int32_t)(h->nadded - 1)));
    if (t->id >= h->size) h->size = t->id + 1;
  }
  if (!(h->added_of = malloc((size_t)(h->size ? h->size : 1) * sizeof(int32_t)))) return pose_error(POSE_ENOMEM, "out of memory");
  for (int32_t i = 0; i < h->size; i++) h->added_of[i] = -1;
  for (size_t i = 0; i < h->nadded; i++) h->added_of[h->added[i].id] = (int32_t)i;
  POSE_TRY(build_match_set(h, &h->raw, 0));
  return build_match_set(h, &h->norm, 1);
}

static int32_t token_id(const pose_hf *h, const char *name) {
  return name ? pose_hf_id(h, name, strlen(name)) : -1;
}

/* bos from the special tokens a TemplateProcessing puts before $A, eos from those after it; cls/sep likewise */
static void special_from_processor(const pose_hf *h, const cJSON *pp, int32_t *bos, int32_t *eos) {
  const char *t = cJSON_IsObject(pp) ? (cJSON_IsString(cJSON_GetObjectItemCaseSensitive(pp, "type"))
                                            ? cJSON_GetObjectItemCaseSensitive(pp, "type")->valuestring : "") : "";
  if (!strcmp(t, "Sequence")) {
    const cJSON *it;
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(pp, "processors")) special_from_processor(h, it, bos, eos);
  } else if (!strcmp(t, "TemplateProcessing")) {
    const cJSON *single = cJSON_GetObjectItemCaseSensitive(pp, "single"), *it;
    const cJSON *specials = cJSON_GetObjectItemCaseSensitive(pp, "special_tokens");
    int seen_seq = 0;
    cJSON_ArrayForEach(it, single) {
      if (cJSON_GetObjectItemCaseSensitive(it, "Sequence")) { seen_seq = 1; continue; }
      const cJSON *sp = cJSON_GetObjectItemCaseSensitive(it, "SpecialToken");
      const cJSON *name = cJSON_GetObjectItemCaseSensitive(sp, "id");
      if (!cJSON_IsString(name)) continue;
      const cJSON *ids = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(specials, name->valuestring), "ids");
      int32_t id = -1;
      if (!(cJSON_GetArraySize(ids) == 1 && json_int(cJSON_GetArrayItem(ids, 0), &id))) id = token_id(h, name->valuestring);
      if (id < 0) continue;
      if (!seen_seq && *bos < 0) *bos = id;
      if (seen_seq) *eos = id;
    }
  } else if (!strcmp(t, "RobertaProcessing") || !strcmp(t, "BertProcessing")) {
    int32_t id;
    const cJSON *cls = cJSON_GetObjectItemCaseSensitive(pp, "cls"), *sep = cJSON_GetObjectItemCaseSensitive(pp, "sep");
    if (cJSON_GetArraySize(cls) == 2 && json_int(cJSON_GetArrayItem(cls, 1), &id)) *bos = id;
    if (cJSON_GetArraySize(sep) == 2 && json_int(cJSON_GetArrayItem(sep, 1), &id)) *eos = id;
  }
}

/* tokenizer_config.json: "bos_token": "<s>" or {"content": "<s>", ...} or null. Returns 1 when the key is there. */
static int config_token(const pose_hf *h, const cJSON *cfg, const char *key, int32_t *id) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(cfg, key);
  if (!v) return 0;
  if (cJSON_IsObject(v)) v = cJSON_GetObjectItemCaseSensitive(v, "content");
  *id = cJSON_IsString(v) ? token_id(h, v->valuestring) : -1;
  return 1;
}

static void find_specials(pose_hf *h, const cJSON *root, const char *path) {
  h->bos = h->eos = h->pad = -1;
  int have_bos = 0, have_eos = 0;
  /* 1. tokenizer_config.json beside the file: what transformers uses */
  const char *slash = strrchr(path, '/');
  size_t dl = slash ? (size_t)(slash - path + 1) : 0;
  char *cfgp = malloc(dl + sizeof "tokenizer_config.json");
  if (cfgp) {
    memcpy(cfgp, path, dl);
    strcpy(cfgp + dl, "tokenizer_config.json");
    cJSON *cfg = NULL;
    FILE *f = fopen(cfgp, "rb");
    if (f) {
      fclose(f);
      if (parse_json(cfgp, &cfg)) { cfg = NULL; pose_error_clear(); } /* an unreadable config is only a hint lost */
    }
    if (cfg) {
      have_bos = config_token(h, cfg, "bos_token", &h->bos);
      have_eos = config_token(h, cfg, "eos_token", &h->eos);
      config_token(h, cfg, "pad_token", &h->pad);
      cJSON_Delete(cfg);
    }
    free(cfgp);
  }
  /* 2. the post-processor's template */
  int32_t pbos = -1, peos = -1;
  special_from_processor(h, cJSON_GetObjectItemCaseSensitive(root, "post_processor"), &pbos, &peos);
  if (!have_bos && pbos >= 0) { h->bos = pbos; have_bos = 1; }
  if (!have_eos && peos >= 0) { h->eos = peos; have_eos = 1; }
  /* 3. the usual names among the special added tokens */
  static const char *const bos_names[] = {"<s>", "<|begin_of_text|>", "<bos>", "<|startoftext|>", NULL};
  static const char *const eos_names[] = {"</s>", "<|endoftext|>", "<|end_of_text|>", "<eos>", NULL};
  for (int i = 0; !have_bos && bos_names[i]; i++) {
    int32_t id = token_id(h, bos_names[i]);
    if (id >= 0 && pose_hf_is_special(h, id)) { h->bos = id; have_bos = 1; }
  }
  for (int i = 0; !have_eos && eos_names[i]; i++) {
    int32_t id = token_id(h, eos_names[i]);
    if (id >= 0 && pose_hf_is_special(h, id)) { h->eos = id; have_eos = 1; }
  }
}

pose_status pose_hf_load(pose_hf **out, const char *path) {
  *out = NULL;
  pose_hf *h = calloc(1, sizeof *h);
  if (!h) return pose_error(POSE_ENOMEM, "out of memory");
  cJSON *root = NULL;
  pose_status st = parse_json(path, &root);
  if (!st && !cJSON_IsObject(root)) st = pose_error(POSE_EFORMAT, "not a tokenizer.json (the top level is not an object)");
  if (!st) st = hf_normalizer_parse(cJSON_GetObjectItemCaseSensitive(root, "normalizer"), &h->normalizer);
  if (!st) st = hf_pretokenizer_parse(cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), &h->pretok);
  if (!st) st = hf_decoder_parse(cJSON_GetObjectItemCaseSensitive(root, "decoder"), &h->decoder);
  if (!st) st = load_model(h, cJSON_GetObjectItemCaseSensitive(root, "model"));
  if (!st) h->size = pose_bpe_size(h->bpe);
  if (!st) st = load_added(h, cJSON_GetObjectItemCaseSensitive(root, "added_tokens"));
  if (!st) find_specials(h, root, path);
  cJSON_Delete(root);
  if (st) {
    pose_hf_free(h);
    return pose_error_prefix(st, "%s: ", path);
  }
  *out = h;
  return POSE_OK;
}

void pose_hf_free(pose_hf *h) {
  if (!h) return;
  pose_bpe_free(h->bpe);
  for (size_t i = 0; i < h->nadded; i++) { free(h->added[i].content); free(h->added[i].pattern); }
  free(h->added);
  free(h->added_of);
  pose_strmap_free(&h->added_map);
  for (int c = 0; c < 256; c++) { free(h->raw.idx[c]); free(h->norm.idx[c]); }
  hf_stage_free(h->normalizer);
  hf_stage_free(h->pretok);
  hf_stage_free(h->decoder);
  free(h);
}

/* ---- encoding ---------------------------------------------------------------------------------------------------- */

/* Unicode White_Space, which Rust's \s matches (lstrip/rstrip of added tokens) */
static int white_space(uint32_t c) {
  return (c >= 9 && c <= 13) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) ||
         c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

static uint32_t decode_at(const char *p, size_t *len) {
  const unsigned char *s = (const unsigned char *)p;
  if (s[0] < 0x80) { *len = 1; return s[0]; }
  if (s[0] < 0xE0) { *len = 2; return ((s[0] & 0x1Fu) << 6) | (s[1] & 0x3Fu); }
  if (s[0] < 0xF0) { *len = 3; return ((s[0] & 0x0Fu) << 12) | ((s[1] & 0x3Fu) << 6) | (s[2] & 0x3Fu); }
  *len = 4;
  return ((s[0] & 0x07u) << 18) | ((s[1] & 0x3Fu) << 12) | ((s[2] & 0x3Fu) << 6) | (s[3] & 0x3Fu);
}

static size_t prev_char(const char *s, size_t i) { /* start of the character ending just before i (i > 0) */
  do i--; while (i > 0 && ((unsigned char)s[i] & 0xC0) == 0x80);
  return i;
}

typedef struct { size_t start, end; int32_t id; } seg; /* id -1: text to tokenize */
typedef struct { seg *v; size_t n, cap; } segs;

static pose_status segs_add(segs *s, size_t a, size_t b, int32_t id) {
  if (s->n == s->cap) {
    size_t nc = s->cap ? s->cap * 2 : 16;
    seg *p = realloc(s->v, nc * sizeof *p);
    if (!p) return pose_error(POSE_ENOMEM, "out of memory");
    s->v = p;
    s->cap = nc;
  }
  s->v[s->n++] = (seg){a, b, id};
  return POSE_OK;
}

/* AddedVocabulary::find_matches: leftmost-longest matches of the set, with single_word / lstrip / rstrip */
static pose_status split_added(const pose_hf *h, const match_set *m, const char *s, size_t n, segs *out) {
  out->n = 0;
  size_t done = 0; /* end of the last split */
  for (size_t i = 0; m->any && i < n;) {
    const added_tok *best = NULL;
    size_t at = i;
    for (; at < n && !best; at++) {
      unsigned char c = (unsigned char)s[at];
      for (int32_t k = 0; k < m->cnt[c]; k++) {
        const added_tok *t = &h->added[m->idx[c][k]];
        if (t->plen <= n - at && !memcmp(s + at, t->pattern, t->plen)) { best = t; break; }
      }
    }
    if (!best) break;
    size_t start = at - 1, stop = start + best->plen;
    i = stop;
    if (best->single_word) {
      int before = start > 0 && hf_word_char(s + prev_char(s, start), start - prev_char(s, start));
      int after = stop < n && hf_word_char(s + stop, n - stop);
      if (before || after) continue;
    }
    if (best->lstrip) {
      size_t a = start, l;
      while (a > done) { size_t p = prev_char(s, a); if (!white_space(decode_at(s + p, &l))) break; a = p; }
      start = a;
    }
    if (best->rstrip) {
      size_t l;
      while (stop < n && white_space(decode_at(s + stop, &l))) stop += l;
      i = stop;
    }
    if (done < start) POSE_TRY(segs_add(out, done, start, -1));
    POSE_TRY(segs_add(out, start, stop, best->id));
    done = stop;
  }
  if (done < n) POSE_TRY(segs_add(out, done, n, -1));
  return POSE_OK;
}

typedef struct { hf_list a, b; segs s1, s2; } enc_scratch;

static pose_status encode_text(const pose_hf *h, const char *s, size_t n, int at_start, enc_scratch *x, pose_ivec *out) {
  /* normalise the segment, then split the normalized added tokens out of it */
  hf_list_clear(&x->a);
  POSE_TRY(hf_list_add(&x->a, s, n, at_start));
  POSE_TRY(hf_stage_run(h->normalizer, &x->a, &x->b));
  if (x->a.n == 0) return POSE_OK;
  size_t total = 0;
  for (size_t i = 0; i < x->a.n; i++) total += x->a.v[i].len;
  char *norm = malloc(total + 1);
  if (!norm) return pose_error(POSE_ENOMEM, "out of memory");
  size_t k = 0;
  for (size_t i = 0; i < x->a.n; i++) { memcpy(norm + k, hf_list_str(&x->a, i), x->a.v[i].len); k += x->a.v[i].len; }
  pose_status st = split_added(h, &h->norm, norm, total, &x->s2);
  for (size_t j = 0; j < x->s2.n && !st; j++) {
    const seg *g = &x->s2.v[j];
    if (g->id >= 0) { st = pose_ivec_push(out, g->id); continue; }
    hf_list_clear(&x->a);
    st = hf_list_add(&x->a, norm + g->start, g->end - g->start, at_start && g->start == 0);
    if (!st) st = hf_stage_run(h->pretok, &x->a, &x->b);
    for (size_t w = 0; w < x->a.n && !st; w++) st = pose_bpe_encode_word(h->bpe, hf_list_str(&x->a, w), x->a.v[w].len, out);
  }
  free(norm);
  return st;
}

pose_status pose_hf_encode(const pose_hf *h, const char *text, size_t len, pose_ivec *out) {
  enc_scratch x = {0};
  pose_status st = split_added(h, &h->raw, text, len, &x.s1);
  for (size_t i = 0; i < x.s1.n && !st; i++) {
    const seg *g = &x.s1.v[i];
    st = g->id >= 0 ? pose_ivec_push(out, g->id) : encode_text(h, text + g->start, g->end - g->start, g->start == 0, &x, out);
  }
  hf_list_free(&x.a);
  hf_list_free(&x.b);
  free(x.s1.v);
  free(x.s2.v);
  return st;
}

/* ---- decoding and look-ups ------------------------------------------------------------------------------------------ */

static const added_tok *added_by_id(const pose_hf *h, int32_t id) {
  if (!h->added_of || id < 0 || id >= h->size || h->added_of[id] < 0) return NULL;
  return &h->added[h->added_of[id]];
}

pose_status pose_hf_decode(const pose_hf *h, const int32_t *ids, size_t n, char **text, size_t *len) {
  hf_list toks = {0}, tmp = {0}, out = {0};
  pose_status st = POSE_OK;
  for (size_t i = 0; i < n && !st; i++) {
    if (ids[i] < 0 || ids[i] >= h->size) { st = pose_error(POSE_EINVAL, "id %d at position %zu is outside the vocabulary (size %d)", ids[i], i, h->size); break; }
    const added_tok *t = added_by_id(h, ids[i]);
    if (t) {
      /* as tokenizers' decode(skip_special_tokens=True) */
      if (!t->special) st = hf_list_add(&toks, t->pattern, t->plen, 0);
      continue;
    }
    size_t pl;
    const char *p = pose_bpe_piece(h->bpe, ids[i], &pl);
    if (!p) { st = pose_error(POSE_EINVAL, "id %d at position %zu has no piece in the vocabulary", ids[i], i); break; }
    st = hf_list_add(&toks, p, pl, 0);
  }
  if (!st) st = hf_decode_run(h->decoder, &toks, &tmp, &out);
  if (!st) {
    size_t k = out.v[0].len;
    char *o = malloc(k + 1);
    if (!o) st = pose_error(POSE_ENOMEM, "out of memory");
    else {
      memcpy(o, hf_list_str(&out, 0), k);
      o[k] = 0;
      *text = o;
      if (len) *len = k;
    }
  }
  hf_list_free(&toks);
  hf_list_free(&tmp);
  hf_list_free(&out);
  return st;
}

int32_t pose_hf_vocab_size(const pose_hf *h) { return h->size; }
int32_t pose_hf_bos_id(const pose_hf *h) { return h->bos; }
int32_t pose_hf_eos_id(const pose_hf *h) { return h->eos; }
int32_t pose_hf_unk_id(const pose_hf *h) { return pose_bpe_unk_id(h->bpe); }
int32_t pose_hf_pad_id(const pose_hf *h) { return h->pad; }

const char *pose_hf_piece(const pose_hf *h, int32_t id, size_t *len) {
  const added_tok *t = added_by_id(h, id);
  if (t) { *len = t->clen; return t->content; }
  return pose_bpe_piece(h->bpe, id, len);
}

int32_t pose_hf_id(const pose_hf *h, const char *piece, size_t len) {
  int32_t i;
  if (pose_strmap_get(&h->added_map, piece, len, &i)) return h->added[i].id;
  return pose_bpe_id(h->bpe, piece, len);
}

int pose_hf_is_special(const pose_hf *h, int32_t id) {
  const added_tok *t = added_by_id(h, id);
  return t && t->special;
}
