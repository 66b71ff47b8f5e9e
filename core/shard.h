/* Token shards: one file holds many tokenized documents, read by memory-mapping (no parsing, no copy).
 *
 * File layout (version 1; every integer little-endian; sections follow each other without gaps):
 *
 *   offset  size  field
 *   0       8     magic "POSESHRD"
 *   8       4     u32 version (1)
 *   12      4     u32 dtype: 1 = u16 tokens, 2 = u32 tokens
 *   16      8     u64 num_tokens  T
 *   24      8     u64 num_docs    D
 *   32      4     u32 vocab_size  (0 = not recorded; else every token is < vocab_size)
 *   36      4     i32 eos_id      (-1 = not recorded; the loader packs documents with it)
 *   40      8     u64 names_bytes (0 = no source-name table)
 *   48      16    reserved, zero
 *   64      8(D+1)              document index: u64 token offsets, index[0] = 0, non-decreasing, index[D] = T;
 *                               document i is tokens[index[i] .. index[i+1])
 *   ...     T*w, padded with zeros to a multiple of 8 bytes: the tokens (w = 2 or 4 bytes)
 *   ...     names (only when names_bytes > 0): 8(D+1) bytes of u64 byte offsets into the blob (names[0] = 0,
 *           increasing, names[D] = size of the blob), then the blob; each name ends with a NUL byte that
 *           belongs to it, so that the reader hands out C strings straight from the mapping.
 *           names_bytes counts the offset table and the blob together.
 *   The file ends there: its size must equal the sum of the sections exactly.
 *
 * The reader validates all of this on open (O(D), the tokens themselves are not read) and reports a truncated or
 * corrupt file as POSE_EFORMAT naming the file and what is wrong. pose_shard_check_tokens scans the tokens against
 * the vocabulary when wanted (O(T)). The writer streams tokens to a side file, so shards of any size are written
 * in constant memory beyond the index, and the final file appears atomically (temp + rename) on close. */
#ifndef POSE_SHARD_H
#define POSE_SHARD_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

#define POSE_SHARD_MAGIC "POSESHRD"
#define POSE_SHARD_VERSION 1u
#define POSE_SHARD_HEADER_BYTES 64

typedef enum { POSE_SHARD_U16 = 1, POSE_SHARD_U32 = 2 } pose_shard_dtype;

/* ---- writer ---------------------------------------------------------------------------------------------- */
typedef struct pose_shard_writer pose_shard_writer;

typedef struct {
  pose_shard_dtype dtype; /* default u16 */
  uint32_t vocab_size;    /* 0 = not recorded; else add() rejects ids >= vocab_size */
  int32_t eos_id;         /* -1 = not recorded */
} pose_shard_writer_opts;

void pose_shard_writer_defaults(pose_shard_writer_opts *o);
/* Creates `path`.tmp.<pid> (and a side file for the tokens); nothing appears at `path` until close succeeds. */
pose_status pose_shard_writer_open(const char *path, const pose_shard_writer_opts *o, pose_shard_writer **out);
/* Appends one document. source may be NULL; as soon as one document has a source, the shard gets a name table
 * (documents without one get ""). A token that does not fit the dtype or the vocabulary is POSE_EINVAL naming it. */
pose_status pose_shard_writer_add(pose_shard_writer *w, const int64_t *ids, int64_t n, const char *source);
pose_status pose_shard_writer_add_u32(pose_shard_writer *w, const uint32_t *ids, int64_t n, const char *source);
int64_t pose_shard_writer_num_docs(const pose_shard_writer *w);
int64_t pose_shard_writer_num_tokens(const pose_shard_writer *w);
/* Writes the header, index and names, fsyncs and renames into place, then frees w (also on failure). */
pose_status pose_shard_writer_close(pose_shard_writer *w);
/* Drops everything written so far (temporary files removed) and frees w. */
void pose_shard_writer_abort(pose_shard_writer *w);

/* ---- reader ---------------------------------------------------------------------------------------------- */
typedef struct pose_shard pose_shard;

pose_status pose_shard_open(const char *path, pose_shard **out);
void pose_shard_close(pose_shard *s);

const char *pose_shard_path(const pose_shard *s);
int64_t pose_shard_num_docs(const pose_shard *s);
int64_t pose_shard_num_tokens(const pose_shard *s);
pose_shard_dtype pose_shard_get_dtype(const pose_shard *s);
uint32_t pose_shard_vocab_size(const pose_shard *s); /* 0 = not recorded */
int32_t pose_shard_eos_id(const pose_shard *s);      /* -1 = not recorded */
int pose_shard_has_names(const pose_shard *s);

/* Length and first-token index of document i (0 <= i < num_docs; out of range: 0 and -1). */
int64_t pose_shard_doc_len(const pose_shard *s, int64_t i);
int64_t pose_shard_doc_start(const pose_shard *s, int64_t i);
/* Source name of document i ("" when the shard has no name table or the document has none). */
const char *pose_shard_source(const pose_shard *s, int64_t i);
/* Token at global token index k (no bounds check: callers index through doc_start/doc_len). */
static inline int64_t pose_shard_token_at(const void *tokens, pose_shard_dtype dt, int64_t k) {
  return dt == POSE_SHARD_U16 ? (int64_t)((const uint16_t *)tokens)[k] : (int64_t)((const uint32_t *)tokens)[k];
}
/* Pointer to the mapped tokens (for pose_shard_token_at). */
const void *pose_shard_tokens(const pose_shard *s);
/* Copies tokens [start, start+n) of document i, widened to i64; a range outside the document is POSE_EINVAL. */
pose_status pose_shard_read(const pose_shard *s, int64_t i, int64_t start, int64_t n, int64_t *out);
/* Scans every token: one >= vocab (vocab > 0; 0 means the shard's own vocab_size, and nothing to check when that
 * is 0 too) is POSE_EFORMAT naming the document and the token. */
pose_status pose_shard_check_tokens(const pose_shard *s, uint32_t vocab);

#endif
