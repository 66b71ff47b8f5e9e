/* The text-to-words and tokens-to-text stages of a Hugging Face tokenizer.json, as `tokenizers` runs them:
 * normalizers (Sequence, Prepend, Replace, NFC for text it leaves unchanged, ByteLevel), pre-tokenizers
 * (Sequence, Split, ByteLevel, Metaspace, Digits) and decoders (Sequence, ByteLevel, Replace, ByteFallback, Fuse,
 * Strip, Metaspace). Regexes run through PCRE2 in UTF + UCP mode (so \p{L}, \s, \w are Unicode-aware), compiled
 * once and JIT-compiled where available. Internal to the tokenizer. */
#ifndef POSE_HF_PIPELINE_H
#define POSE_HF_PIPELINE_H

#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "status.h"

/* A list of byte strings kept in one arena: the pieces a stage produces. at_start marks a piece that begins at the
 * start of the caller's input (Metaspace's prepend_scheme "first" needs it). */
typedef struct { size_t off, len; int at_start; } hf_span;
typedef struct {
  char *buf;
  size_t blen, bcap;
  hf_span *v;
  size_t n, cap;
} hf_list;

/* hf_list_open starts a new, empty piece; hf_list_append extends the last piece. s must not point into l. */
pose_status hf_list_open(hf_list *l, int at_start);
pose_status hf_list_append(hf_list *l, const char *s, size_t n);
pose_status hf_list_add(hf_list *l, const char *s, size_t n, int at_start);
static inline const char *hf_list_str(const hf_list *l, size_t i) { return l->buf + l->v[i].off; }
void hf_list_clear(hf_list *l);
void hf_list_free(hf_list *l);

typedef struct hf_regex hf_regex;
/* literal: match the text itself (a {"String": ...} pattern) */
pose_status hf_regex_compile(hf_regex **out, const char *pattern, int literal);
void hf_regex_free(hf_regex *re);

typedef struct hf_stage hf_stage; /* a normalizer, pre-tokenizer or decoder, Sequences flattened */

/* JSON -> stages; a null/absent object gives no stage. Unsupported types are errors naming the type. */
pose_status hf_normalizer_parse(const cJSON *j, hf_stage **out);
pose_status hf_pretokenizer_parse(const cJSON *j, hf_stage **out);
pose_status hf_decoder_parse(const cJSON *j, hf_stage **out);
void hf_stage_free(hf_stage *s);
int hf_stage_is_empty(const hf_stage *s);

/* Runs the stages over every piece of `in`, leaving the result in `in` (tmp is scratch). */
pose_status hf_stage_run(const hf_stage *s, hf_list *in, hf_list *tmp);
/* Decoders: the token strings in `in` -> the decoded text, appended to `out` as one piece (joined with "" after
 * the decoders, or with " " when there is none, as `tokenizers` does). */
pose_status hf_decode_run(const hf_stage *s, hf_list *in, hf_list *tmp, hf_list *out);

/* 1 when the character starting s[0..n) is a word character as Rust's regex \w sees it (letters, marks, decimal
 * digits, connector punctuation, letter numbers): the test of added tokens with single_word. */
int hf_word_char(const char *s, size_t n);

/* The length of the valid UTF-8 character at s[0..n), or 0 with *bad = the bytes of the invalid sequence there
 * (its maximal valid-looking prefix, at least 1). */
size_t hf_utf8_seq(const char *s, size_t n, size_t *bad);

/* GPT-2's byte <-> printable character map: byte b -> UTF-8 of code point byte_char(b) */
uint32_t hf_byte_char(uint8_t b);
/* Appends s[0..n) to the last piece of l with invalid UTF-8 replaced by U+FFFD, as Rust's from_utf8_lossy. */
pose_status hf_append_lossy(hf_list *l, const char *s, size_t n);

#endif
