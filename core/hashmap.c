#include "hashmap.h"

#include <stdlib.h>
#include <string.h>

/* FNV-1a, then a final avalanche so that short keys spread over the low bits used as the slot index */
static uint64_t hash_bytes(const char *s, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; i++) { h ^= (unsigned char)s[i]; h *= 1099511628211ull; }
  h ^= h >> 33; h *= 0xff51afd7ed558ccdull; h ^= h >> 33;
  return h;
}

static uint64_t hash_u64(uint64_t x) {
  x ^= x >> 33; x *= 0xff51afd7ed558ccdull; x ^= x >> 33; x *= 0xc4ceb9fe1a85ec53ull; x ^= x >> 33;
  return x;
}

static size_t str_find(const pose_strmap *m, const char *key, size_t len) {
  size_t mask = m->cap - 1, i = hash_bytes(key, len) & mask;
  while (m->keys[i] && !(m->klen[i] == len && memcmp(m->keys[i], key, len) == 0)) i = (i + 1) & mask;
  return i;
}

static pose_status str_grow(pose_strmap *m) {
  size_t ncap = m->cap ? m->cap * 2 : 64;
  pose_strmap g = {calloc(ncap, sizeof(char *)), malloc(ncap * sizeof(uint32_t)), malloc(ncap * sizeof(int32_t)),
                   ncap, m->n};
  if (!g.keys || !g.klen || !g.vals) {
    free(g.keys); free(g.klen); free(g.vals);
    return pose_error(POSE_ENOMEM, "hash map: out of memory");
  }
  for (size_t i = 0; i < m->cap; i++) {
    if (!m->keys[i]) continue;
    size_t j = str_find(&g, m->keys[i], m->klen[i]);
    g.keys[j] = m->keys[i]; g.klen[j] = m->klen[i]; g.vals[j] = m->vals[i];
  }
  free(m->keys); free(m->klen); free(m->vals);
  *m = g;
  return POSE_OK;
}

pose_status pose_strmap_put(pose_strmap *m, const char *key, size_t len, int32_t val) {
  if (len > UINT32_MAX) return pose_error(POSE_EINVAL, "hash map: key too long");
  if ((m->n + 1) * 4 > m->cap * 3) POSE_TRY(str_grow(m)); /* load factor <= 3/4 */
  size_t i = str_find(m, key, len);
  if (!m->keys[i]) {
    char *k = malloc(len + 1);
    if (!k) return pose_error(POSE_ENOMEM, "hash map: out of memory");
    memcpy(k, key, len);
    k[len] = 0;
    m->keys[i] = k;
    m->klen[i] = (uint32_t)len;
    m->n++;
  }
  m->vals[i] = val;
  return POSE_OK;
}

int pose_strmap_get(const pose_strmap *m, const char *key, size_t len, int32_t *val) {
  if (!m->cap) return 0;
  size_t i = str_find(m, key, len);
  if (!m->keys[i]) return 0;
  if (val) *val = m->vals[i];
  return 1;
}

void pose_strmap_free(pose_strmap *m) {
  for (size_t i = 0; i < m->cap; i++) free(m->keys[i]);
  free(m->keys); free(m->klen); free(m->vals);
  memset(m, 0, sizeof *m);
}

static uint64_t pair_key(int32_t a, int32_t b) { return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b; }

static size_t pair_find(const pose_pairmap *m, uint64_t key) {
  size_t mask = m->cap - 1, i = hash_u64(key) & mask;
  while (m->keys[i] != UINT64_MAX && m->keys[i] != key) i = (i + 1) & mask;
  return i;
}

static pose_status pair_grow(pose_pairmap *m) {
  size_t ncap = m->cap ? m->cap * 2 : 64;
  pose_pairmap g = {malloc(ncap * sizeof(uint64_t)), malloc(ncap * sizeof(int32_t)), malloc(ncap * sizeof(int32_t)),
                    ncap, m->n};
  if (!g.keys || !g.rank || !g.id) {
    free(g.keys); free(g.rank); free(g.id);
    return pose_error(POSE_ENOMEM, "hash map: out of memory");
  }
  memset(g.keys, 0xff, ncap * sizeof(uint64_t));
  for (size_t i = 0; i < m->cap; i++) {
    if (m->keys[i] == UINT64_MAX) continue;
    size_t j = pair_find(&g, m->keys[i]);
    g.keys[j] = m->keys[i]; g.rank[j] = m->rank[i]; g.id[j] = m->id[i];
  }
  free(m->keys); free(m->rank); free(m->id);
  *m = g;
  return POSE_OK;
}

pose_status pose_pairmap_put(pose_pairmap *m, int32_t a, int32_t b, int32_t rank, int32_t id) {
  if ((m->n + 1) * 2 > m->cap) POSE_TRY(pair_grow(m)); /* load factor <= 1/2: lookups are the BPE hot path */
  uint64_t key = pair_key(a, b);
  size_t i = pair_find(m, key);
  if (m->keys[i] == UINT64_MAX) { m->keys[i] = key; m->n++; }
  m->rank[i] = rank;
  m->id[i] = id;
  return POSE_OK;
}

int pose_pairmap_get(const pose_pairmap *m, int32_t a, int32_t b, int32_t *rank, int32_t *id) {
  if (!m->cap) return 0;
  size_t i = pair_find(m, pair_key(a, b));
  if (m->keys[i] == UINT64_MAX) return 0;
  *rank = m->rank[i];
  *id = m->id[i];
  return 1;
}

void pose_pairmap_free(pose_pairmap *m) {
  free(m->keys); free(m->rank); free(m->id);
  memset(m, 0, sizeof *m);
}
