#define PCRE2_CODE_UNIT_WIDTH 8
#include "hf_pipeline.h"

#include <pcre2.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* ---- piece lists -------------------------------------------------------------------------------------------- */

static pose_status reserve(void **p, size_t *cap, size_t need, size_t elem) {
  if (need <= *cap) return POSE_OK;
  size_t nc = *cap ? *cap : 64;
  while (nc < need) nc *= 2;
  void *q = realloc(*p, nc * elem);
  if (!q) return pose_error(POSE_ENOMEM, "tokenizer: out of memory");
  *p = q;
  *cap = nc;
  return POSE_OK;
}

pose_status hf_list_open(hf_list *l, int at_start) {
  POSE_TRY(reserve((void **)&l->v, &l->cap, l->n + 1, sizeof *l->v));
  l->v[l->n++] = (hf_span){l->blen, 0, at_start};
  return POSE_OK;
}

pose_status hf_list_append(hf_list *l, const char *s, size_t n) {
  POSE_TRY(reserve((void **)&l->buf, &l->bcap, l->blen + n + 1, 1));
  if (n) memcpy(l->buf + l->blen, s, n);
  l->blen += n;
  l->buf[l->blen] = 0;
  l->v[l->n - 1].len += n;
  return POSE_OK;
}

pose_status hf_list_add(hf_list *l, const char *s, size_t n, int at_start) {
  POSE_TRY(hf_list_open(l, at_start));
  return hf_list_append(l, s, n);
}

void hf_list_clear(hf_list *l) { l->n = 0; l->blen = 0; }

void hf_list_free(hf_list *l) {
  free(l->buf);
  free(l->v);
  memset(l, 0, sizeof *l);
}

static void list_swap(hf_list *a, hf_list *b) { hf_list t = *a; *a = *b; *b = t; }

/* ---- UTF-8 ---------------------------------------------------------------------------------------------------- */

size_t hf_utf8_seq(const char *p, size_t n, size_t *bad) {
  const unsigned char *s = (const unsigned char *)p;
  unsigned c = s[0];
  size_t need;
  unsigned lo = 0x80, hi = 0xBF;
  if (c < 0x80) return 1;
  else if (c >= 0xC2 && c <= 0xDF) need = 2;
  else if (c >= 0xE0 && c <= 0xEF) { need = 3; if (c == 0xE0) lo = 0xA0; if (c == 0xED) hi = 0x9F; }
  else if (c >= 0xF0 && c <= 0xF4) { need = 4; if (c == 0xF0) lo = 0x90; if (c == 0xF4) hi = 0x8F; }
  else { *bad = 1; return 0; }
  /* the maximal prefix of a valid sequence counts as one bad unit (Unicode's "substitution of maximal subparts") */
  for (size_t i = 1; i < need; i++) {
    if (i >= n || s[i] < lo || s[i] > hi) { *bad = i; return 0; }
    lo = 0x80; hi = 0xBF;
  }
  return need;
}

static size_t put_utf8(char *o, uint32_t cp) {
  if (cp < 0x80) { o[0] = (char)cp; return 1; }
  if (cp < 0x800) { o[0] = (char)(0xC0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
  if (cp < 0x10000) {
    o[0] = (char)(0xE0 | (cp >> 12)); o[1] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  o[0] = (char)(0xF0 | (cp >> 18)); o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
  o[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

/* decodes the (valid) character at s, returning its length */
static size_t get_utf8(const char *p, uint32_t *cp) {
  const unsigned char *s = (const unsigned char *)p;
  if (s[0] < 0x80) { *cp = s[0]; return 1; }
  if (s[0] < 0xE0) { *cp = ((s[0] & 0x1Fu) << 6) | (s[1] & 0x3Fu); return 2; }
  if (s[0] < 0xF0) { *cp = ((s[0] & 0x0Fu) << 12) | ((s[1] & 0x3Fu) << 6) | (s[2] & 0x3Fu); return 3; }
  *cp = ((s[0] & 0x07u) << 18) | ((s[1] & 0x3Fu) << 12) | ((s[2] & 0x3Fu) << 6) | (s[3] & 0x3Fu);
  return 4;
}

pose_status hf_append_lossy(hf_list *l, const char *s, size_t n) {
  static const char fffd[] = "\xEF\xBF\xBD";
  size_t i = 0, run = 0; /* s[run..i) is valid and not yet copied */
  while (i < n) {
    size_t bad = 0, k = hf_utf8_seq(s + i, n - i, &bad);
    if (k) { i += k; continue; }
    POSE_TRY(hf_list_append(l, s + run, i - run));
    POSE_TRY(hf_list_append(l, fffd, 3));
    i += bad;
    run = i;
  }
  return hf_list_append(l, s + run, n - run);
}

/* ---- GPT-2 byte <-> character map ------------------------------------------------------------------------------ */

uint32_t hf_byte_char(uint8_t b) {
  /* printable Latin-1 bytes stand for themselves; the other 68 bytes take 256, 257, ... in byte order */
  if ((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE)) return b;
  uint32_t n = 0;
  for (unsigned x = 0; x < b; x++)
    if (!((x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE))) n++;
  return 256 + n;
}

typedef struct { char utf8[256][2]; uint8_t len[256]; int16_t rev[324]; } byte_map;

static byte_map the_byte_map;

static void init_byte_map(void) {
  byte_map *t = &the_byte_map;
  for (int i = 0; i < 324; i++) t->rev[i] = -1;
  for (int b = 0; b < 256; b++) {
    uint32_t cp = hf_byte_char((uint8_t)b);
    char o[4];
    t->len[b] = (uint8_t)put_utf8(o, cp);
    memcpy(t->utf8[b], o, 2);
    t->rev[cp] = (int16_t)b;
  }
}

static const byte_map *get_byte_map(void) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, init_byte_map);
  return &the_byte_map;
}

static pose_status append_byte_mapped(hf_list *l, const char *s, size_t n) {
  const byte_map *m = get_byte_map();
  for (size_t i = 0; i < n; i++) POSE_TRY(hf_list_append(l, m->utf8[(uint8_t)s[i]], m->len[(uint8_t)s[i]]));
  return POSE_OK;
}

/* ---- regexes ----------------------------------------------------------------------------------------------------- */

struct hf_regex { pcre2_code *code; };

/* tokenizers runs its regexes through Oniguruma, whose Unicode \s is exactly White_Space (HT..CR, NEL, Zs, Zl,
 * Zp); PCRE2's also takes U+180E and depends on the PCRE2 version. So \s becomes that explicit set, and \S its
 * complement (outside character classes; \S inside a class is left as it is). */
#define WHITE_SPACE "\\t\\n\\x{0B}\\f\\r\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"

static char *translate_pattern(const char *p) {
  size_t n = strlen(p);
  char *o = malloc(n * (sizeof WHITE_SPACE + 4) / 2 + 1), *q = o;
  if (!o) return NULL;
  int in_class = 0;
  for (size_t i = 0; i < n; i++) {
    if (p[i] == '\\' && i + 1 < n) {
      char c = p[i + 1];
      const char *rep = NULL;
      if (c == 's') rep = in_class ? WHITE_SPACE : "[" WHITE_SPACE "]";
      else if (c == 'S' && !in_class) rep = "[^" WHITE_SPACE "]";
      if (rep) { size_t k = strlen(rep); memcpy(q, rep, k); q += k; }
      else { *q++ = p[i]; *q++ = c; }
      i++;
      continue;
    }
    if (p[i] == '[' && !in_class) {
      in_class = 1;
      *q++ = p[i];
      /* a ']' right after '[' or '[^' is a literal member */
      if (i + 1 < n && p[i + 1] == '^') *q++ = p[++i];
      if (i + 1 < n && p[i + 1] == ']') *q++ = p[++i];
      continue;
    }
    if (p[i] == ']' && in_class) in_class = 0;
    *q++ = p[i];
  }
  *q = 0;
  return o;
}

pose_status hf_regex_compile(hf_regex **out, const char *pattern, int literal) {
  *out = NULL;
  char *pat = literal ? strdup(pattern) : translate_pattern(pattern);
  if (!pat) return pose_error(POSE_ENOMEM, "tokenizer: out of memory");
  int err;
  PCRE2_SIZE off;
  uint32_t opts = PCRE2_UTF | (literal ? PCRE2_LITERAL : PCRE2_UCP); /* LITERAL refuses UCP (and needs none) */
  pcre2_code *code = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, opts, &err, &off, NULL);
  free(pat);
  if (!code) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    return pose_error(POSE_EUNSUPPORTED, "regex /%s/ does not compile under PCRE2: %s (near offset %zu)", pattern,
                      (const char *)msg, (size_t)off);
  }
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE); /* the interpreter runs it when JIT is not available */
  hf_regex *re = malloc(sizeof *re);
  if (!re) { pcre2_code_free(code); return pose_error(POSE_ENOMEM, "tokenizer: out of memory"); }
  re->code = code;
  *out = re;
  return POSE_OK;
}

void hf_regex_free(hf_regex *re) {
  if (!re) return;
  pcre2_code_free(re->code);
  free(re);
}

static pcre2_code *word_re;

static void init_word_re(void) {
  int err;
  PCRE2_SIZE off;
  word_re = pcre2_compile((PCRE2_SPTR) "[\\p{L}\\p{M}\\p{Nd}\\p{Pc}\\p{Nl}]", PCRE2_ZERO_TERMINATED,
                          PCRE2_UTF | PCRE2_UCP | PCRE2_ANCHORED, &err, &off, NULL);
}

int hf_word_char(const char *s, size_t n) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, init_word_re);
  if (!word_re || n == 0) return 0;
  pcre2_match_data *md = pcre2_match_data_create(1, NULL);
  if (!md) return 0;
  int rc = pcre2_match(word_re, (PCRE2_SPTR)s, n, 0, PCRE2_NO_UTF_CHECK, md, NULL);
  pcre2_match_data_free(md);
  return rc >= 0;
}

typedef struct { size_t start, end; int match; } part;
typedef struct { part *v; size_t n, cap; } parts;

static pose_status parts_add(parts *p, size_t s, size_t e, int m) {
  POSE_TRY(reserve((void **)&p->v, &p->cap, p->n + 1, sizeof *p->v));
  p->v[p->n++] = (part){s, e, m};
  return POSE_OK;
}

/* Cuts s[0..n) into matches and the gaps between them, in order, covering it all (empty matches are skipped, as
 * they would only produce the empty pieces that tokenizers drops). The text is already known to be valid UTF-8. */
static pose_status find_parts(const hf_regex *re, const char *s, size_t n, parts *out) {
  out->n = 0;
  pcre2_match_data *md = pcre2_match_data_create(1, NULL);
  if (!md) return pose_error(POSE_ENOMEM, "tokenizer: out of memory");
  pose_status st = POSE_OK;
  size_t pos = 0, prev = 0;
  while (pos <= n && !st) {
    int rc = pcre2_match(re->code, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, md, NULL);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT) /* a very long run for the JIT's stack: let the interpreter do it */
      rc = pcre2_match(re->code, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md, NULL);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(rc, msg, sizeof msg);
      st = pose_error(POSE_EINVAL, "tokenizer: regex match failed: %s", (const char *)msg);
      break;
    }
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
    size_t ms = ov[0], me = ov[1];
    if (me == ms) { /* empty match: step over one character */
      if (ms >= n) break;
      size_t bad = 0, k = hf_utf8_seq(s + ms, n - ms, &bad);
      pos = ms + (k ? k : 1);
      continue;
    }
    if (ms > prev) st = parts_add(out, prev, ms, 0);
    if (!st) st = parts_add(out, ms, me, 1);
    prev = pos = me;
  }
  if (!st && prev < n) st = parts_add(out, prev, n, 0);
  pcre2_match_data_free(md);
  return st;
}

typedef enum { B_ISOLATED, B_REMOVED, B_MERGED_PREV, B_MERGED_NEXT, B_CONTIGUOUS } behavior;

/* NormalizedString::split of tokenizers: regroup the parts by the delimiter behaviour; the `match` flag of the
 * result means "remove". */
static void apply_behavior(parts *p, behavior b) {
  size_t k = 0;
  int prev_match = 0;
  switch (b) {
    case B_ISOLATED:
      for (size_t i = 0; i < p->n; i++) p->v[i].match = 0;
      return;
    case B_REMOVED:
      return;
    case B_CONTIGUOUS:
      for (size_t i = 0; i < p->n; i++) {
        int m = p->v[i].match;
        if (m == prev_match && k > 0) p->v[k - 1].end = p->v[i].end;
        else p->v[k++] = (part){p->v[i].start, p->v[i].end, 0};
        prev_match = m;
      }
      break;
    case B_MERGED_PREV:
      for (size_t i = 0; i < p->n; i++) {
        int m = p->v[i].match;
        if (m && !prev_match && k > 0) p->v[k - 1].end = p->v[i].end;
        else p->v[k++] = (part){p->v[i].start, p->v[i].end, 0};
        prev_match = m;
      }
      break;
    case B_MERGED_NEXT: /* the same from the right end */
      k = p->n;
      for (size_t i = p->n; i-- > 0;) {
        int m = p->v[i].match;
        if (m && !prev_match && k < p->n) p->v[k].start = p->v[i].start;
        else p->v[--k] = (part){p->v[i].start, p->v[i].end, 0};
        prev_match = m;
      }
      memmove(p->v, p->v + k, (p->n - k) * sizeof *p->v);
      k = p->n - k;
      break;
  }
  p->n = k;
}

/* ---- stages ------------------------------------------------------------------------------------------------------ */

typedef enum {
  N_PREPEND, N_REPLACE, N_NFC, N_BYTELEVEL,                 /* normalizers */
  P_SPLIT, P_BYTELEVEL, P_METASPACE,                        /* pre-tokenizers (Digits is a Split) */
  D_BYTELEVEL, D_REPLACE, D_BYTEFALLBACK, D_FUSE, D_STRIP, D_METASPACE /* decoders */
} step_kind;

typedef enum { SCHEME_ALWAYS, SCHEME_FIRST, SCHEME_NEVER } prepend_scheme;

typedef struct {
  step_kind kind;
  hf_regex *re;      /* Replace, Split, ByteLevel(use_regex), Metaspace(split) */
  char *str;         /* Prepend's text, Replace's content, Metaspace's replacement, Strip's content (UTF-8) */
  size_t slen;
  behavior behav;
  int invert, add_prefix_space, split, start, stop;
  prepend_scheme scheme;
} step;

struct hf_stage { step *v; size_t n, cap; };

int hf_stage_is_empty(const hf_stage *s) { return !s || s->n == 0; }

void hf_stage_free(hf_stage *s) {
  if (!s) return;
  for (size_t i = 0; i < s->n; i++) { hf_regex_free(s->v[i].re); free(s->v[i].str); }
  free(s->v);
  free(s);
}

static pose_status stage_add(hf_stage *s, step st) {
  POSE_TRY(reserve((void **)&s->v, &s->cap, s->n + 1, sizeof *s->v));
  s->v[s->n++] = st;
  return POSE_OK;
}

static const char *type_of(const cJSON *j) {
  const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "type");
  return cJSON_IsString(t) ? t->valuestring : NULL;
}

static int get_bool(const cJSON *j, const char *key, int def) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
  return cJSON_IsBool(v) ? cJSON_IsTrue(v) : def;
}

static pose_status get_string(const cJSON *j, const char *key, const char *what, char **out, size_t *len) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
  if (!cJSON_IsString(v)) return pose_error(POSE_EFORMAT, "%s: '%s' must be a string", what, key);
  *out = strdup(v->valuestring);
  if (!*out) return pose_error(POSE_ENOMEM, "tokenizer: out of memory");
  if (len) *len = strlen(*out);
  return POSE_OK;
}

/* {"String": "..."} or {"Regex": "..."} */
static pose_status get_pattern(const cJSON *j, const char *what, hf_regex **re) {
  const cJSON *p = cJSON_GetObjectItemCaseSensitive(j, "pattern");
  const cJSON *s = cJSON_GetObjectItemCaseSensitive(p, "String"), *r = cJSON_GetObjectItemCaseSensitive(p, "Regex");
  if (cJSON_IsString(s)) return hf_regex_compile(re, s->valuestring, 1);
  if (cJSON_IsString(r)) return hf_regex_compile(re, r->valuestring, 0);
  return pose_error(POSE_EFORMAT, "%s: 'pattern' must be {\"String\": ...} or {\"Regex\": ...}", what);
}

static pose_status get_scheme(const cJSON *j, prepend_scheme *out) {
  const cJSON *ps = cJSON_GetObjectItemCaseSensitive(j, "prepend_scheme");
  *out = SCHEME_ALWAYS;
  if (cJSON_IsString(ps)) {
    if (!strcmp(ps->valuestring, "always")) *out = SCHEME_ALWAYS;
    else if (!strcmp(ps->valuestring, "first")) *out = SCHEME_FIRST;
    else if (!strcmp(ps->valuestring, "never")) *out = SCHEME_NEVER;
    else return pose_error(POSE_EFORMAT, "Metaspace: unknown prepend_scheme '%s'", ps->valuestring);
  }
  const cJSON *aps = cJSON_GetObjectItemCaseSensitive(j, "add_prefix_space"); /* the older spelling */
  if (cJSON_IsBool(aps) && !cJSON_IsTrue(aps)) {
    if (cJSON_IsString(ps) && *out != SCHEME_NEVER)
      return pose_error(POSE_EFORMAT, "Metaspace: add_prefix_space does not match declared prepend_scheme");
    *out = SCHEME_NEVER;
  }
  return POSE_OK;
}

static pose_status get_char(const cJSON *j, const char *key, const char *what, char **out, size_t *len) {
  POSE_TRY(get_string(j, key, what, out, len));
  size_t bad = 0;
  if (*len == 0 || hf_utf8_seq(*out, *len, &bad) != *len)
    return pose_error(POSE_EFORMAT, "%s: '%s' must be a single character", what, key);
  return POSE_OK;
}

typedef enum { NORMALIZER, PRETOKENIZER, DECODER } stage_role;

static pose_status parse_into(const cJSON *j, stage_role role, hf_stage *s);

static pose_status parse_step(const cJSON *j, stage_role role, hf_stage *s) {
  static const char *const role_names[] = {"normalizer", "pre_tokenizer", "decoder"};
  const char *rn = role_names[role];
  const char *t = type_of(j);
  if (!t) return pose_error(POSE_EFORMAT, "%s without a 'type'", rn);
  step st = {0};
  pose_status e = POSE_OK;
  if (!strcmp(t, "Sequence")) {
    const char *key = role == NORMALIZER ? "normalizers" : role == PRETOKENIZER ? "pretokenizers" : "decoders";
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!cJSON_IsArray(arr)) return pose_error(POSE_EFORMAT, "%s Sequence: '%s' must be an array", rn, key);
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) POSE_TRY(parse_into(it, role, s));
    return POSE_OK;
  }
  if (role == NORMALIZER && !strcmp(t, "Prepend")) {
    st.kind = N_PREPEND;
    e = get_string(j, "prepend", "Prepend", &st.str, &st.slen);
  } else if (role != PRETOKENIZER && !strcmp(t, "Replace")) {
    st.kind = role == NORMALIZER ? N_REPLACE : D_REPLACE;
    e = get_pattern(j, "Replace", &st.re);
    if (!e) e = get_string(j, "content", "Replace", &st.str, &st.slen);
  } else if (role == NORMALIZER && !strcmp(t, "NFC")) {
    st.kind = N_NFC;
  } else if (!strcmp(t, "ByteLevel")) {
    st.kind = role == NORMALIZER ? N_BYTELEVEL : role == PRETOKENIZER ? P_BYTELEVEL : D_BYTELEVEL;
    st.add_prefix_space = get_bool(j, "add_prefix_space", 1);
    if (role == PRETOKENIZER && get_bool(j, "use_regex", 1))
      e = hf_regex_compile(&st.re, "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+", 0);
  } else if (role == PRETOKENIZER && !strcmp(t, "Split")) {
    st.kind = P_SPLIT;
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(j, "behavior");
    static const char *const names[] = {"Isolated", "Removed", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
    int found = -1;
    for (int i = 0; i < 5 && cJSON_IsString(b); i++) if (!strcmp(b->valuestring, names[i])) found = i;
    if (found < 0) return pose_error(POSE_EFORMAT, "Split: unknown behavior %s", cJSON_IsString(b) ? b->valuestring : "(none)");
    st.behav = (behavior)found;
    st.invert = get_bool(j, "invert", 0);
    e = get_pattern(j, "Split", &st.re);
  } else if (role == PRETOKENIZER && !strcmp(t, "Digits")) {
    /* tokenizers splits on char::is_numeric, i.e. the Unicode N categories, one character per match */
    st.kind = P_SPLIT;
    st.behav = get_bool(j, "individual_digits", 0) ? B_ISOLATED : B_CONTIGUOUS;
    e = hf_regex_compile(&st.re, "\\p{N}", 0);
  } else if (role != NORMALIZER && !strcmp(t, "Metaspace")) {
    st.kind = role == PRETOKENIZER ? P_METASPACE : D_METASPACE;
    e = get_char(j, "replacement", "Metaspace", &st.str, &st.slen);
    if (!e) e = get_scheme(j, &st.scheme);
    st.split = get_bool(j, "split", 1);
    if (!e && role == PRETOKENIZER && st.split) { st.behav = B_MERGED_NEXT; e = hf_regex_compile(&st.re, st.str, 1); }
  } else if (role == DECODER && !strcmp(t, "ByteFallback")) {
    st.kind = D_BYTEFALLBACK;
  } else if (role == DECODER && !strcmp(t, "Fuse")) {
    st.kind = D_FUSE;
  } else if (role == DECODER && !strcmp(t, "Strip")) {
    st.kind = D_STRIP;
    e = get_char(j, "content", "Strip", &st.str, &st.slen);
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(j, "start"), *b = cJSON_GetObjectItemCaseSensitive(j, "stop");
    if (!e && (!cJSON_IsNumber(a) || !cJSON_IsNumber(b) || a->valuedouble < 0 || b->valuedouble < 0))
      e = pose_error(POSE_EFORMAT, "Strip: 'start' and 'stop' must be non-negative numbers");
    if (!e) { st.start = a->valueint; st.stop = b->valueint; }
  } else {
    return pose_error(POSE_EUNSUPPORTED, "%s type '%s' is not supported (pose handles BPE tokenizers: normalizers "
                      "Sequence/Prepend/Replace/NFC/ByteLevel, pre-tokenizers Sequence/Split/ByteLevel/Metaspace/"
                      "Digits, decoders Sequence/ByteLevel/Replace/ByteFallback/Fuse/Strip/Metaspace)", rn, t);
  }
  if (!e) e = stage_add(s, st);
  if (e) { hf_regex_free(st.re); free(st.str); }
  return e;
}

static pose_status parse_into(const cJSON *j, stage_role role, hf_stage *s) {
  if (!j || cJSON_IsNull(j)) return POSE_OK;
  if (!cJSON_IsObject(j)) return pose_error(POSE_EFORMAT, "a normalizer/pre_tokenizer/decoder must be an object");
  return parse_step(j, role, s);
}

static pose_status parse_stage(const cJSON *j, stage_role role, hf_stage **out) {
  *out = calloc(1, sizeof **out);
  if (!*out) return pose_error(POSE_ENOMEM, "tokenizer: out of memory");
  pose_status st = parse_into(j, role, *out);
  if (st) { hf_stage_free(*out); *out = NULL; }
  return st;
}

pose_status hf_normalizer_parse(const cJSON *j, hf_stage **out) { return parse_stage(j, NORMALIZER, out); }
pose_status hf_pretokenizer_parse(const cJSON *j, hf_stage **out) { return parse_stage(j, PRETOKENIZER, out); }
pose_status hf_decoder_parse(const cJSON *j, hf_stage **out) { return parse_stage(j, DECODER, out); }

/* ---- running the stages ---------------------------------------------------------------------------------------- */

/* Code points NFC leaves alone whatever surrounds them (NFC_Quick_Check = Yes and never composing with a
 * predecessor): pose has no Unicode normalisation tables, so it applies NFC only where it is the identity. */
static int nfc_stable(uint32_t cp) {
  return cp < 0x300 || (cp >= 0x2002 && cp <= 0x206F) || (cp >= 0x20A0 && cp <= 0x20CF) ||
         (cp >= 0x3000 && cp <= 0x3029) || (cp >= 0x3030 && cp <= 0x3098) || (cp >= 0x309B && cp <= 0x30FF) || (cp >= 0x3400 && cp <= 0x4DBF) ||
         (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0xAC00 && cp <= 0xD7A3) || (cp >= 0xFF01 && cp <= 0xFF9D) ||
         (cp >= 0x1F000 && cp <= 0x1FAFF);
}

static pose_status run_split(const hf_regex *re, behavior b, int invert, const char *s, size_t n, int at_start,
                             hf_list *out) {
  parts p = {0};
  pose_status st = find_parts(re, s, n, &p);
  if (!st && invert) for (size_t i = 0; i < p.n; i++) p.v[i].match = !p.v[i].match;
  if (!st) apply_behavior(&p, b);
  for (size_t i = 0; i < p.n && !st; i++)
    if (!p.v[i].match && p.v[i].end > p.v[i].start)
      st = hf_list_add(out, s + p.v[i].start, p.v[i].end - p.v[i].start, at_start && p.v[i].start == 0);
  free(p.v);
  return st;
}

static pose_status replace_all(const hf_regex *re, const char *rep, size_t rlen, const char *s, size_t n,
                               hf_list *out) {
  parts p = {0};
  pose_status st = find_parts(re, s, n, &p);
  for (size_t i = 0; i < p.n && !st; i++)
    st = p.v[i].match ? hf_list_append(out, rep, rlen) : hf_list_append(out, s + p.v[i].start, p.v[i].end - p.v[i].start);
  free(p.v);
  return st;
}

/* One step over one piece, appending its result pieces to out. */
static pose_status run_step(const step *st, const char *s, size_t n, int at_start, hf_list *out) {
  switch (st->kind) {
    case N_PREPEND:
      POSE_TRY(hf_list_open(out, at_start));
      if (n) POSE_TRY(hf_list_append(out, st->str, st->slen));
      return hf_list_append(out, s, n);
    case N_REPLACE:
      POSE_TRY(hf_list_open(out, at_start));
      return replace_all(st->re, st->str, st->slen, s, n, out);
    case N_NFC:
      for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t k = get_utf8(s + i, &cp);
        if (!nfc_stable(cp))
          return pose_error(POSE_EUNSUPPORTED, "the tokenizer's NFC normalizer needs Unicode normalisation tables "
                            "for U+%04X, which pose does not have", cp);
        i += k;
      }
      return hf_list_add(out, s, n, at_start);
    case N_BYTELEVEL:
      POSE_TRY(hf_list_open(out, at_start));
      return append_byte_mapped(out, s, n);
    case P_SPLIT:
      return run_split(st->re, st->behav, st->invert, s, n, at_start, out);
    case P_BYTELEVEL: {
      hf_list words = {0};
      pose_status e = POSE_OK;
      if (st->add_prefix_space && (n == 0 || s[0] != ' ')) e = hf_list_add(&words, " ", 1, at_start);
      if (!e && words.n) e = hf_list_append(&words, s, n);
      else if (!e) e = hf_list_add(&words, s, n, at_start);
      if (!e && st->re) { /* split the (prefixed) piece by the GPT-2 regex, then map every word */
        hf_list w2 = {0};
        e = run_split(st->re, B_ISOLATED, 0, hf_list_str(&words, 0), words.v[0].len, words.v[0].at_start, &w2);
        list_swap(&words, &w2);
        hf_list_free(&w2);
      }
      for (size_t i = 0; i < words.n && !e; i++) {
        if (!words.v[i].len) continue;
        e = hf_list_open(out, words.v[i].at_start);
        if (!e) e = append_byte_mapped(out, hf_list_str(&words, i), words.v[i].len);
      }
      hf_list_free(&words);
      return e;
    }
    case P_METASPACE: {
      hf_list tmp = {0};
      pose_status e = hf_list_open(&tmp, at_start);
      int starts = n >= st->slen && memcmp(s, st->str, st->slen) == 0;
      /* spaces become the replacement first, so a leading space counts as "already starts with it" */
      if (!e && n > 0 && s[0] == ' ') starts = 1;
      if (!e && !starts && (st->scheme == SCHEME_ALWAYS || (st->scheme == SCHEME_FIRST && at_start)))
        e = hf_list_append(&tmp, st->str, st->slen);
      for (size_t i = 0; i < n && !e; i++) e = s[i] == ' ' ? hf_list_append(&tmp, st->str, st->slen) : hf_list_append(&tmp, s + i, 1);
      if (!e) e = st->re ? run_split(st->re, B_MERGED_NEXT, 0, hf_list_str(&tmp, 0), tmp.v[0].len, at_start, out)
                         : hf_list_add(out, hf_list_str(&tmp, 0), tmp.v[0].len, at_start);
      hf_list_free(&tmp);
      return e;
    }
    default:
      return pose_error(POSE_EINVAL, "tokenizer: decoder step used as a normalizer or pre-tokenizer");
  }
}

pose_status hf_stage_run(const hf_stage *s, hf_list *in, hf_list *tmp) {
  for (size_t k = 0; s && k < s->n; k++) {
    hf_list_clear(tmp);
    for (size_t i = 0; i < in->n; i++) POSE_TRY(run_step(&s->v[k], hf_list_str(in, i), in->v[i].len, in->v[i].at_start, tmp));
    /* tokenizers drops the empty pieces a split leaves; an empty normalised segment likewise has no words */
    size_t j = 0;
    for (size_t i = 0; i < tmp->n; i++) if (tmp->v[i].len) tmp->v[j++] = tmp->v[i];
    tmp->n = j;
    list_swap(in, tmp);
  }
  return POSE_OK;
}

/* ---- decoders ------------------------------------------------------------------------------------------------------ */

static int byte_token(const char *s, size_t n, uint8_t *b) {
  if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>') return 0;
  unsigned v = 0;
  for (int i = 3; i < 5; i++) {
    char c = s[i];
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
    if (d < 0) return 0;
    v = v * 16 + (unsigned)d;
  }
  *b = (uint8_t)v;
  return 1;
}

static pose_status flush_bytes(hf_list *out, const char *b, size_t n) {
  if (!n) return POSE_OK;
  size_t i = 0, bad = 0;
  while (i < n) { size_t k = hf_utf8_seq(b + i, n - i, &bad); if (!k) break; i += k; }
  if (i == n) return hf_list_add(out, b, n, 0);
  for (size_t j = 0; j < n; j++) POSE_TRY(hf_list_add(out, "\xEF\xBF\xBD", 3, 0)); /* one U+FFFD per byte */
  return POSE_OK;
}

static pose_status run_decoder(const step *st, hf_list *in, hf_list *out) {
  pose_status e = POSE_OK;
  switch (st->kind) {
    case D_BYTELEVEL: {
      /* every token back to bytes (a token with a character outside the map keeps its own bytes), then one string */
      const byte_map *m = get_byte_map();
      char *bytes = malloc(in->blen + 1);
      size_t nb = 0;
      if (!bytes) return pose_error(POSE_ENOMEM, "tokenizer: out of memory");
      for (size_t i = 0; i < in->n; i++) {
        const char *s = hf_list_str(in, i);
        size_t n = in->v[i].len, start = nb, j = 0;
        while (j < n) {
          uint32_t cp;
          size_t k = get_utf8(s + j, &cp);
          if (cp >= 324 || m->rev[cp] < 0) break;
          bytes[nb++] = (char)m->rev[cp];
          j += k;
        }
        if (j < n) { nb = start; memcpy(bytes + nb, s, n); nb += n; }
      }
      e = hf_list_open(out, 0);
      if (!e) e = hf_append_lossy(out, bytes, nb);
      free(bytes);
      return e;
    }
    case D_REPLACE:
      for (size_t i = 0; i < in->n && !e; i++) {
        e = hf_list_open(out, 0);
        if (!e) e = replace_all(st->re, st->str, st->slen, hf_list_str(in, i), in->v[i].len, out);
      }
      return e;
    case D_BYTEFALLBACK: {
      char *pend = malloc(in->n + 1);
      size_t np = 0;
      if (!pend) return pose_error(POSE_ENOMEM, "tokenizer: out of memory");
      for (size_t i = 0; i < in->n && !e; i++) {
        uint8_t b;
        if (byte_token(hf_list_str(in, i), in->v[i].len, &b)) { pend[np++] = (char)b; continue; }
        e = flush_bytes(out, pend, np);
        np = 0;
        if (!e) e = hf_list_add(out, hf_list_str(in, i), in->v[i].len, 0);
      }
      if (!e) e = flush_bytes(out, pend, np);
      free(pend);
      return e;
    }
    case D_FUSE:
      e = hf_list_open(out, 0);
      for (size_t i = 0; i < in->n && !e; i++) e = hf_list_append(out, hf_list_str(in, i), in->v[i].len);
      return e;
    case D_STRIP:
      for (size_t i = 0; i < in->n && !e; i++) {
        const char *s = hf_list_str(in, i);
        size_t a = 0, b = in->v[i].len;
        for (int k = 0; k < st->start && b - a >= st->slen && !memcmp(s + a, st->str, st->slen); k++) a += st->slen;
        for (int k = 0; k < st->stop && b - a >= st->slen && !memcmp(s + b - st->slen, st->str, st->slen); k++) b -= st->slen;
        e = hf_list_add(out, s + a, b - a, 0);
      }
      return e;
    case D_METASPACE:
      for (size_t i = 0; i < in->n && !e; i++) {
        const char *s = hf_list_str(in, i);
        size_t n = in->v[i].len;
        e = hf_list_open(out, 0);
        for (size_t j = 0; j < n && !e;) {
          if (n - j >= st->slen && !memcmp(s + j, st->str, st->slen)) {
            /* the first token loses its replacement characters when a prefix was prepended on encoding */
            if (!(i == 0 && st->scheme != SCHEME_NEVER)) e = hf_list_append(out, " ", 1);
            j += st->slen;
          } else {
            uint32_t cp;
            size_t k = get_utf8(s + j, &cp);
            e = hf_list_append(out, s + j, k);
            j += k;
          }
        }
      }
      return e;
    default:
      return pose_error(POSE_EINVAL, "tokenizer: normalizer or pre-tokenizer step used as a decoder");
  }
}

pose_status hf_decode_run(const hf_stage *s, hf_list *in, hf_list *tmp, hf_list *out) {
  for (size_t k = 0; s && k < s->n; k++) {
    hf_list_clear(tmp);
    POSE_TRY(run_decoder(&s->v[k], in, tmp));
    list_swap(in, tmp);
  }
  POSE_TRY(hf_list_open(out, 0));
  for (size_t i = 0; i < in->n; i++) {
    if (i && hf_stage_is_empty(s)) POSE_TRY(hf_list_append(out, " ", 1));
    POSE_TRY(hf_list_append(out, hf_list_str(in, i), in->v[i].len));
  }
  return POSE_OK;
}
