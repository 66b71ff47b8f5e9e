#include "bpe.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hashmap.h"

/* as in `tokenizers`: words up to this many bytes are cached; the cache stops growing at CACHE_CAP words */
#define CACHE_MAX_WORD 256
#define CACHE_CAP 65536

struct pose_bpe {
  pose_strmap vocab;    /* piece -> id */
  char **pieces;        /* id -> piece (NULL for holes) */
  uint32_t *piece_len;
  int32_t size, cap;    /* size = largest id + 1 */
  pose_pairmap merges;  /* (left id, right id) -> (rank, merged id) */
  int32_t unk_id;
  int32_t byte_ids[256]; /* byte-fallback pieces "<0x00>".."<0xFF>" by byte value, -1 when absent */
  int byte_fallback, fuse_unk, ignore_merges;
  pthread_mutex_t mu;   /* guards the cache */
  pose_strmap cache;    /* word -> index into cached */
  int32_t **cached;     /* [0] = count, then the ids */
  size_t ncached;
};

pose_status pose_ivec_push(pose_ivec *v, int32_t x) {
  if (v->n == v->cap) {
    size_t nc = v->cap ? v->cap * 2 : 64;
    int32_t *p = realloc(v->v, nc * sizeof *p);
    if (!p) return pose_error(POSE_ENOMEM, "out of memory");
    v->v = p;
    v->cap = nc;
  }
  v->v[v->n++] = x;
  return POSE_OK;
}

pose_status pose_bpe_new(pose_bpe **out) {
  pose_bpe *b = calloc(1, sizeof *b);
  if (!b) return pose_error(POSE_ENOMEM, "out of memory");
  b->unk_id = -1;
  for (int i = 0; i < 256; i++) b->byte_ids[i] = -1;
  pthread_mutex_init(&b->mu, NULL);
  *out = b;
  return POSE_OK;
}

void pose_bpe_free(pose_bpe *b) {
  if (!b) return;
  pose_strmap_free(&b->vocab);
  for (int32_t i = 0; i < b->size; i++) free(b->pieces[i]);
  free(b->pieces);
  free(b->piece_len);
  pose_pairmap_free(&b->merges);
  pose_strmap_free(&b->cache);
  for (size_t i = 0; i < b->ncached; i++) free(b->cached[i]);
  free(b->cached);
  pthread_mutex_destroy(&b->mu);
  free(b);
}

pose_status pose_bpe_add_piece(pose_bpe *b, const char *piece, size_t len, int32_t id) {
  if (id < 0) return pose_error(POSE_EFORMAT, "vocabulary id %d of '%.*s' is negative", id, (int)len, piece);
  int32_t old;
  if (pose_strmap_get(&b->vocab, piece, len, &old))
    return pose_error(POSE_EFORMAT, "piece '%.*s' appears twice in the vocabulary (ids %d and %d)", (int)len, piece,
                      old, id);
  if (id >= b->cap) {
    int32_t nc = b->cap ? b->cap : 1024;
    while (nc <= id) nc = nc > INT32_MAX / 2 ? INT32_MAX : nc * 2;
    char **p = realloc(b->pieces, (size_t)nc * sizeof *p);
    if (!p) return pose_error(POSE_ENOMEM, "out of memory");
    b->pieces = p;
    uint32_t *l = realloc(b->piece_len, (size_t)nc * sizeof *l);
    if (!l) return pose_error(POSE_ENOMEM, "out of memory");
    b->piece_len = l;
    memset(b->pieces + b->cap, 0, (size_t)(nc - b->cap) * sizeof *p);
    memset(b->piece_len + b->cap, 0, (size_t)(nc - b->cap) * sizeof *l);
    b->cap = nc;
  }
  if (b->pieces[id])
    return pose_error(POSE_EFORMAT, "id %d is given to both '%s' and '%.*s'", id, b->pieces[id], (int)len, piece);
  char *c = malloc(len + 1);
  if (!c) return pose_error(POSE_ENOMEM, "out of memory");
  memcpy(c, piece, len);
  c[len] = 0;
  b->pieces[id] = c;
  b->piece_len[id] = (uint32_t)len;
  if (id >= b->size) b->size = id + 1;
  return pose_strmap_put(&b->vocab, piece, len, id);
}

pose_status pose_bpe_add_merge(pose_bpe *b, const char *a, size_t alen, const char *bb, size_t blen, int32_t rank) {
  int32_t ia, ib, im;
  if (!pose_strmap_get(&b->vocab, a, alen, &ia))
    return pose_error(POSE_EFORMAT, "merge %d: '%.*s' is not in the vocabulary", rank, (int)alen, a);
  if (!pose_strmap_get(&b->vocab, bb, blen, &ib))
    return pose_error(POSE_EFORMAT, "merge %d: '%.*s' is not in the vocabulary", rank, (int)blen, bb);
  char small[256], *cat = alen + blen <= sizeof small ? small : malloc(alen + blen);
  if (!cat) return pose_error(POSE_ENOMEM, "out of memory");
  memcpy(cat, a, alen);
  memcpy(cat + alen, bb, blen);
  int found = pose_strmap_get(&b->vocab, cat, alen + blen, &im);
  pose_status st = found ? POSE_OK
                         : pose_error(POSE_EFORMAT, "merge %d: '%.*s' + '%.*s' = '%.*s' is not in the vocabulary", rank,
                                      (int)alen, a, (int)blen, bb, (int)(alen + blen), cat);
  if (cat != small) free(cat);
  if (st) return st;
  return pose_pairmap_put(&b->merges, ia, ib, rank, im);
}

pose_status pose_bpe_set_options(pose_bpe *b, const char *unk, int byte_fallback, int fuse_unk, int ignore_merges) {
  b->unk_id = -1;
  if (unk && !pose_strmap_get(&b->vocab, unk, strlen(unk), &b->unk_id))
    return pose_error(POSE_EFORMAT, "unk_token '%s' is not in the vocabulary", unk);
  b->byte_fallback = byte_fallback;
  b->fuse_unk = fuse_unk;
  b->ignore_merges = ignore_merges;
  for (int i = 0; i < 256; i++) {
    char name[8];
    snprintf(name, sizeof name, "<0x%02X>", i);
    b->byte_ids[i] = -1;
    pose_strmap_get(&b->vocab, name, 6, &b->byte_ids[i]);
  }
  return POSE_OK;
}

int32_t pose_bpe_size(const pose_bpe *b) { return b->size; }
int32_t pose_bpe_unk_id(const pose_bpe *b) { return b->unk_id; }

const char *pose_bpe_piece(const pose_bpe *b, int32_t id, size_t *len) {
  if (id < 0 || id >= b->size || !b->pieces[id]) return NULL;
  *len = b->piece_len[id];
  return b->pieces[id];
}

int32_t pose_bpe_id(const pose_bpe *b, const char *piece, size_t len) {
  int32_t id;
  return pose_strmap_get(&b->vocab, piece, len, &id) ? id : -1;
}

static size_t utf8_char_len(unsigned char c) { return c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4; }

/* ---- the merge loop ------------------------------------------------------------------------------------------ */

typedef struct { int32_t id, prev, next, len; } sym;   /* len 0 = merged into its left neighbour */
typedef struct { int32_t rank, pos, id; } cand;          /* a ranked adjacent pair, keyed on (rank, pos) */

static int cand_less(cand a, cand b) { return a.rank != b.rank ? a.rank < b.rank : a.pos < b.pos; }

typedef struct { cand *v; size_t n, cap; } heap;

static pose_status heap_push(heap *h, cand c) {
  if (h->n == h->cap) {
    size_t nc = h->cap ? h->cap * 2 : 64;
    cand *p = realloc(h->v, nc * sizeof *p);
    if (!p) return pose_error(POSE_ENOMEM, "out of memory");
    h->v = p;
    h->cap = nc;
  }
  size_t i = h->n++;
  while (i > 0 && cand_less(c, h->v[(i - 1) / 2])) { h->v[i] = h->v[(i - 1) / 2]; i = (i - 1) / 2; }
  h->v[i] = c;
  return POSE_OK;
}

static cand heap_pop(heap *h) {
  cand top = h->v[0], last = h->v[--h->n];
  size_t i = 0;
  for (;;) {
    size_t l = 2 * i + 1, r = l + 1, m = i;
    cand best = last;
    if (l < h->n && cand_less(h->v[l], best)) { m = l; best = h->v[l]; }
    if (r < h->n && cand_less(h->v[r], best)) m = r;
    if (m == i) break;
    h->v[i] = h->v[m];
    i = m;
  }
  if (h->n) h->v[i] = last;
  return top;
}

static pose_status push_pair(const pose_bpe *b, heap *h, const sym *s, int32_t pos) {
  int32_t rank, id;
  if (s[pos].next < 0 || !pose_pairmap_get(&b->merges, s[pos].id, s[s[pos].next].id, &rank, &id)) return POSE_OK;
  return heap_push(h, (cand){rank, pos, id});
}

/* Initial symbols: one per character (its piece), else its bytes' byte-fallback pieces ("<0x41>" for byte 0x41),
 * else the unknown piece (runs of unknown characters fused into one when fuse_unk). Mirrors BPE::merge_word in `tokenizers`. */
static pose_status initial_symbols(const pose_bpe *b, const char *w, size_t n, sym **out, int32_t *count) {
  sym *s = malloc((n + 1) * sizeof *s); /* at most one symbol per byte */
  if (!s) return pose_error(POSE_ENOMEM, "out of memory");
  int32_t k = 0, unk_len = 0;
  for (size_t i = 0; i < n;) {
    size_t cl = utf8_char_len((unsigned char)w[i]);
    if (i + cl > n) cl = n - i;
    int32_t id;
    if (pose_strmap_get(&b->vocab, w + i, cl, &id)) {
      if (unk_len) { s[k++] = (sym){b->unk_id, 0, 0, unk_len}; unk_len = 0; }
      s[k++] = (sym){id, 0, 0, (int32_t)cl};
    } else {
      int all = b->byte_fallback;
      for (size_t j = 0; all && j < cl; j++) all = b->byte_ids[(unsigned char)w[i + j]] >= 0;
      if (all) {
        for (size_t j = 0; j < cl; j++) s[k++] = (sym){b->byte_ids[(unsigned char)w[i + j]], 0, 0, 1};
      } else if (b->unk_id >= 0) {
        if (unk_len && !b->fuse_unk) { s[k++] = (sym){b->unk_id, 0, 0, unk_len}; unk_len = 0; }
        unk_len += (int32_t)cl;
      } else {
        unsigned cp = 0;
        for (size_t j = 0; j < cl; j++) cp = (cp << 8) | (unsigned char)w[i + j];
        free(s);
        return pose_error(POSE_EINVAL, "character '%.*s' (UTF-8 bytes 0x%X) has no piece, no byte fallback and the "
                          "model has no unk_token", (int)cl, w + i, cp);
      }
    }
    i += cl;
  }
  if (unk_len) s[k++] = (sym){b->unk_id, 0, 0, unk_len};
  for (int32_t i = 0; i < k; i++) { s[i].prev = i - 1; s[i].next = i + 1 < k ? i + 1 : -1; }
  *out = s;
  *count = k;
  return POSE_OK;
}

static pose_status merge_word(const pose_bpe *b, const char *w, size_t n, pose_ivec *out) {
  sym *s = NULL;
  int32_t k = 0;
  POSE_TRY(initial_symbols(b, w, n, &s, &k));
  heap h = {0};
  pose_status st = POSE_OK;
  for (int32_t i = 0; i + 1 < k && !st; i++) st = push_pair(b, &h, s, i);
  while (!st && h.n) {
    cand c = heap_pop(&h);
    sym *l = &s[c.pos];
    if (l->len == 0 || l->next < 0) continue; /* merged away, or now the last symbol */
    int32_t rank, id;
    /* a stale entry: the pair at pos changed since it was queued (the check `tokenizers` makes) */
    if (!pose_pairmap_get(&b->merges, l->id, s[l->next].id, &rank, &id) || id != c.id) continue;
    sym *r = &s[l->next];
    l->id = c.id;
    l->len += r->len;
    l->next = r->next;
    r->len = 0;
    if (l->next >= 0) s[l->next].prev = c.pos;
    if (l->prev >= 0) st = push_pair(b, &h, s, l->prev);
    if (!st) st = push_pair(b, &h, s, c.pos);
  }
  for (int32_t i = k ? 0 : -1; !st && i >= 0; i = s[i].next) st = pose_ivec_push(out, s[i].id);
  free(h.v);
  free(s);
  return st;
}

static pose_status cache_put(pose_bpe *b, const char *w, size_t n, const int32_t *ids, size_t m) {
  if (b->ncached >= CACHE_CAP || n > CACHE_MAX_WORD) return POSE_OK;
  if (!b->cached && !(b->cached = malloc(CACHE_CAP * sizeof *b->cached)))
    return pose_error(POSE_ENOMEM, "out of memory");
  int32_t *e = malloc((m + 1) * sizeof *e);
  if (!e) return pose_error(POSE_ENOMEM, "out of memory");
  e[0] = (int32_t)m;
  memcpy(e + 1, ids, m * sizeof *e);
  pose_status st = pose_strmap_put(&b->cache, w, n, (int32_t)b->ncached);
  if (st) { free(e); return st; }
  b->cached[b->ncached++] = e;
  return POSE_OK;
}

pose_status pose_bpe_encode_word(pose_bpe *b, const char *w, size_t n, pose_ivec *out) {
  if (n == 0) return POSE_OK;
  int32_t id;
  if (b->ignore_merges && pose_strmap_get(&b->vocab, w, n, &id)) return pose_ivec_push(out, id);
  if (n <= CACHE_MAX_WORD) {
    pthread_mutex_lock(&b->mu);
    int32_t slot;
    int hit = pose_strmap_get(&b->cache, w, n, &slot);
    const int32_t *e = hit ? b->cached[slot] : NULL;
    pose_status st = POSE_OK;
    for (int32_t i = 0; e && i < e[0] && !st; i++) st = pose_ivec_push(out, e[1 + i]);
    pthread_mutex_unlock(&b->mu);
    if (hit) return st;
  }
  size_t start = out->n;
  POSE_TRY(merge_word(b, w, n, out));
  if (n > CACHE_MAX_WORD) return POSE_OK;
  pthread_mutex_lock(&b->mu);
  int32_t slot;
  pose_status st = pose_strmap_get(&b->cache, w, n, &slot) ? POSE_OK : cache_put(b, w, n, out->v + start, out->n - start);
  pthread_mutex_unlock(&b->mu);
  return st;
}
