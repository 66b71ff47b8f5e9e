/* The BPE model of Hugging Face tokenizers: a vocabulary, merges ranked by their order in the file, optional byte
 * fallback (pieces "<0x00>".."<0xFF>") and unknown piece. Turns one pre-tokenized word into ids exactly as
 * `tokenizers` does: symbols start as the word's characters, and the adjacent pair of lowest merge rank (leftmost on ties) is merged
 * until no ranked pair is left, using a priority queue so that a long word costs O(n log n), not O(n^2). Results
 * of short words are cached (thread-safe). */
#ifndef POSE_BPE_H
#define POSE_BPE_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

typedef struct { int32_t *v; size_t n, cap; } pose_ivec;
pose_status pose_ivec_push(pose_ivec *v, int32_t x);

typedef struct pose_bpe pose_bpe;

pose_status pose_bpe_new(pose_bpe **out);
void pose_bpe_free(pose_bpe *b);
/* Vocabulary entries, any order; ids need not be dense (holes have no piece). A repeated piece is an error. */
pose_status pose_bpe_add_piece(pose_bpe *b, const char *piece, size_t len, int32_t id);
/* The merge (a, b) of rank `rank`; a, b and a+b must be in the vocabulary. A repeated pair keeps its last rank,
 * as in `tokenizers`. */
pose_status pose_bpe_add_merge(pose_bpe *b, const char *a, size_t alen, const char *bb, size_t blen, int32_t rank);
/* Options, after the vocabulary: unk (NULL = none), byte fallback, fusing runs of unknown characters into one
 * unknown id, and ignore_merges (a word that is itself in the vocabulary is emitted whole, as LLaMA-3 does). */
pose_status pose_bpe_set_options(pose_bpe *b, const char *unk, int byte_fallback, int fuse_unk, int ignore_merges);

/* Appends the ids of word w[0..n) (valid UTF-8) to out. A character with no piece, no byte fallback and no unknown
 * piece is an error. */
pose_status pose_bpe_encode_word(pose_bpe *b, const char *w, size_t n, pose_ivec *out);

int32_t pose_bpe_size(const pose_bpe *b); /* largest id + 1 */
/* NULL for an id outside the vocabulary or a hole */
const char *pose_bpe_piece(const pose_bpe *b, int32_t id, size_t *len);
int32_t pose_bpe_id(const pose_bpe *b, const char *piece, size_t len); /* -1 when absent */
int32_t pose_bpe_unk_id(const pose_bpe *b);

#endif
