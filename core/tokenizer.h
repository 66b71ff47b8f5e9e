/* Tokenizers: one handle for SentencePiece models (`tokenizer.model`, through libsentencepiece) and Hugging Face
 * `tokenizer.json` files with a BPE model (byte-level BPE as in GPT-2 / GPT-J / LLaMA-3 / Qwen2, and the
 * LLaMA-style BPE with byte fallback and "▁" for spaces). Ids are vocabulary indices, 0-based.
 *
 * encode/decode and the look-ups are safe to call from several threads on one handle. */
#ifndef POSE_TOKENIZER_H
#define POSE_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "status.h"

typedef struct pose_tokenizer pose_tokenizer;

typedef enum { POSE_TOK_SENTENCEPIECE = 0, POSE_TOK_HF_BPE } pose_tokenizer_kind;

/* Opens `path`: a file ending in .model (SentencePiece), a file ending in .json (Hugging Face tokenizer.json), or
 * a directory holding tokenizer.json (preferred: it is what transformers' AutoTokenizer loads) or tokenizer.model.
 * Another file name is identified by its first byte ('{' = JSON). Errors name the file. */
pose_status pose_tokenizer_open(pose_tokenizer **out, const char *path);
void pose_tokenizer_free(pose_tokenizer *t);

/* text[0..len) (valid UTF-8, else an error giving the byte offset) -> *ids (malloc'd, caller frees; NULL when
 * *n == 0). add_bos / add_eos prepend / append the BOS / EOS id; asking for one the tokenizer lacks is an error.
 * Hugging Face added tokens (e.g. "<|endoftext|>") that occur in the text are encoded as their ids, as the
 * `tokenizers` library does. */
pose_status pose_tokenizer_encode(const pose_tokenizer *t, const char *text, size_t len, int add_bos, int add_eos,
                                  int32_t **ids, size_t *n);
/* ids -> *text (malloc'd, NUL-terminated, caller frees), *len bytes without the NUL (len may be NULL). Special
 * tokens (SentencePiece control pieces, Hugging Face added tokens marked special) decode to nothing. An id outside
 * [0, vocab_size) is an error. */
pose_status pose_tokenizer_decode(const pose_tokenizer *t, const int32_t *ids, size_t n, char **text, size_t *len);

pose_tokenizer_kind pose_tokenizer_kind_of(const pose_tokenizer *t);
const char *pose_tokenizer_kind_name(const pose_tokenizer *t); /* "sentencepiece" | "bpe" */
const char *pose_tokenizer_path(const pose_tokenizer *t);       /* the file actually loaded */
/* One more than the largest id (the embedding rows a model needs for it). */
int32_t pose_tokenizer_vocab_size(const pose_tokenizer *t);
/* -1 when absent */
int32_t pose_tokenizer_bos_id(const pose_tokenizer *t);
int32_t pose_tokenizer_eos_id(const pose_tokenizer *t);
int32_t pose_tokenizer_unk_id(const pose_tokenizer *t);
int32_t pose_tokenizer_pad_id(const pose_tokenizer *t);

/* The vocabulary string of `id` (not NUL-terminated in general: use *len); an error outside the vocabulary. */
pose_status pose_tokenizer_id_to_piece(const pose_tokenizer *t, int32_t id, const char **piece, size_t *len);
/* The id of vocabulary string piece[0..len), -1 when it is not in the vocabulary. */
int32_t pose_tokenizer_piece_to_id(const pose_tokenizer *t, const char *piece, size_t len);
/* 1 when `id` is a special token (SentencePiece control/unknown piece; Hugging Face added token marked special). */
int pose_tokenizer_is_special(const pose_tokenizer *t, int32_t id);

/* Trains a SentencePiece model with SentencePieceTrainer::Train. keys/values are the trainer's flags without the
 * leading "--" (input, model_prefix, vocab_size, model_type, byte_fallback, ...); the trainer writes
 * <model_prefix>.model and <model_prefix>.vocab. Unknown keys and bad values come back as errors. */
pose_status pose_tokenizer_train(const char *const *keys, const char *const *values, int n);

/* The first byte offset where text[0..len) is not valid UTF-8, or len when it all is. */
size_t pose_utf8_valid_prefix(const char *text, size_t len);

#endif
