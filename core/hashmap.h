/* Two small open-addressing hash maps for the tokenizers: byte string -> int32 (vocabularies, word caches) and
 * (int32, int32) pair -> (rank, id) (BPE merges). Keys are copied; maps only grow. */
#ifndef POSE_HASHMAP_H
#define POSE_HASHMAP_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

typedef struct {
  char **keys;     /* NULL = empty slot */
  uint32_t *klen;
  int32_t *vals;
  size_t cap, n;   /* cap is a power of two */
} pose_strmap;

/* Inserts or overwrites. */
pose_status pose_strmap_put(pose_strmap *m, const char *key, size_t len, int32_t val);
/* 1 and *val when present, else 0 */
int pose_strmap_get(const pose_strmap *m, const char *key, size_t len, int32_t *val);
void pose_strmap_free(pose_strmap *m);

typedef struct {
  uint64_t *keys;  /* UINT64_MAX = empty slot */
  int32_t *rank, *id;
  size_t cap, n;
} pose_pairmap;

pose_status pose_pairmap_put(pose_pairmap *m, int32_t a, int32_t b, int32_t rank, int32_t id);
int pose_pairmap_get(const pose_pairmap *m, int32_t a, int32_t b, int32_t *rank, int32_t *id);
void pose_pairmap_free(pose_pairmap *m);

#endif
