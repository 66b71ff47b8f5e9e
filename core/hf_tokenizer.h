/* Hugging Face tokenizer.json with a BPE model, run as the `tokenizers` library runs it: added tokens split out
 * of the raw text (leftmost-longest, honouring single_word/lstrip/rstrip), normalizer, tokens of normalized added
 * tokens, pre-tokenizer, BPE per word; decoding through the decoder chain. Internal to tokenizer.c. */
#ifndef POSE_HF_TOKENIZER_H
#define POSE_HF_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "bpe.h"
#include "status.h"

typedef struct pose_hf pose_hf;

/* path: the tokenizer.json; a tokenizer_config.json beside it, when present, names the BOS/EOS/PAD tokens */
pose_status pose_hf_load(pose_hf **out, const char *path);
void pose_hf_free(pose_hf *h);

pose_status pose_hf_encode(const pose_hf *h, const char *text, size_t len, pose_ivec *out);
pose_status pose_hf_decode(const pose_hf *h, const int32_t *ids, size_t n, char **text, size_t *len);

int32_t pose_hf_vocab_size(const pose_hf *h);
int32_t pose_hf_bos_id(const pose_hf *h);
int32_t pose_hf_eos_id(const pose_hf *h);
int32_t pose_hf_unk_id(const pose_hf *h);
int32_t pose_hf_pad_id(const pose_hf *h);
const char *pose_hf_piece(const pose_hf *h, int32_t id, size_t *len); /* NULL outside the vocabulary */
int32_t pose_hf_id(const pose_hf *h, const char *piece, size_t len);  /* -1 when absent */
int pose_hf_is_special(const pose_hf *h, int32_t id);

#endif
