/* tokenizer.json BPE tokenizers built in the test, with ids derived by hand: GPT-2 byte-level (merge ranks,
 * whitespace runs, contractions, digits, added tokens, emoji), LLaMA-3 style (Split regex + ByteLevel,
 * ignore_merges), LLaMA-2 style (Prepend/Replace normalizer, byte fallback, unk, decoder chain), Metaspace, every
 * Split behaviour, Digits; the error paths of loading, encoding and decoding. */
#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "testutil.h"
#include "tokenizer.h"

static char tmpdir[64];

/* GPT-2's bytes_to_unicode, written out independently of the library */
static uint32_t gpt2_char(int b) {
  int printable[256] = {0}, n = 0;
  for (int x = '!'; x <= '~'; x++) printable[x] = 1;
  for (int x = 0xA1; x <= 0xAC; x++) printable[x] = 1;
  for (int x = 0xAE; x <= 0xFF; x++) printable[x] = 1;
  if (printable[b]) return (uint32_t)b;
  for (int x = 0; x < b; x++) n += !printable[x];
  return 256u + (uint32_t)n;
}

static void utf8(uint32_t cp, char *o) {
  if (cp < 0x80) { o[0] = (char)cp; o[1] = 0; }
  else { o[0] = (char)(0xC0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 0x3F)); o[2] = 0; }
}

static char *write_json(const char *name, cJSON *root) {
  static char path[256];
  snprintf(path, sizeof path, "%s/%s", tmpdir, name);
  char *s = cJSON_Print(root);
  FILE *f = fopen(path, "w");
  fputs(s, f);
  fclose(f);
  free(s);
  cJSON_Delete(root);
  return path;
}

static void write_text(const char *name, const char *text) {
  char path[256];
  snprintf(path, sizeof path, "%s/%s", tmpdir, name);
  FILE *f = fopen(path, "w");
  fputs(text, f);
  fclose(f);
}

/* the 256 byte symbols as ids 0..255 (id = byte value) plus the given merges (ids 256, 257, ... in order; every
 * merge's result is added to the vocabulary) and extra pieces; merges as "a b" strings or [a, b] pairs */
static cJSON *bytelevel_model(const char *const *merges, int nm, const char *const *extra, int pairs, int ignore) {
  cJSON *model = cJSON_CreateObject(), *vocab = cJSON_CreateObject(), *ml = cJSON_CreateArray();
  cJSON_AddStringToObject(model, "type", "BPE");
  cJSON_AddNullToObject(model, "dropout");
  cJSON_AddNullToObject(model, "unk_token");
  cJSON_AddBoolToObject(model, "ignore_merges", ignore);
  for (int b = 0; b < 256; b++) {
    char k[4];
    utf8(gpt2_char(b), k);
    cJSON_AddNumberToObject(vocab, k, b);
  }
  int id = 256;
  for (int i = 0; i < nm; i++) {
    char a[32], c[32], cat[64];
    sscanf(merges[i], "%31s %31s", a, c);
    snprintf(cat, sizeof cat, "%s%s", a, c);
    if (!cJSON_GetObjectItemCaseSensitive(vocab, cat)) cJSON_AddNumberToObject(vocab, cat, id++);
    if (pairs) {
      cJSON *p = cJSON_CreateArray();
      cJSON_AddItemToArray(p, cJSON_CreateString(a));
      cJSON_AddItemToArray(p, cJSON_CreateString(c));
      cJSON_AddItemToArray(ml, p);
    } else cJSON_AddItemToArray(ml, cJSON_CreateString(merges[i]));
  }
  for (int i = 0; extra && extra[i]; i++) cJSON_AddNumberToObject(vocab, extra[i], id++);
  cJSON_AddItemToObject(model, "vocab", vocab);
  cJSON_AddItemToObject(model, "merges", ml);
  return model;
}

static cJSON *added(int id, const char *content, int special) {
  cJSON *t = cJSON_CreateObject();
  cJSON_AddNumberToObject(t, "id", id);
  cJSON_AddStringToObject(t, "content", content);
  cJSON_AddBoolToObject(t, "single_word", 0);
  cJSON_AddBoolToObject(t, "lstrip", 0);
  cJSON_AddBoolToObject(t, "rstrip", 0);
  cJSON_AddBoolToObject(t, "normalized", 0);
  cJSON_AddBoolToObject(t, "special", special);
  return t;
}

static cJSON *bytelevel(int use_regex) {
  cJSON *b = cJSON_CreateObject();
  cJSON_AddStringToObject(b, "type", "ByteLevel");
  cJSON_AddBoolToObject(b, "add_prefix_space", 0);
  cJSON_AddBoolToObject(b, "trim_offsets", 1);
  cJSON_AddBoolToObject(b, "use_regex", use_regex);
  return b;
}

/* Ġ = space, Ċ = newline in GPT-2's map */
/* İ (U+0130) stands for byte 0x8E, the last byte of U+180E */
static const char *const gpt2_merges[] = {"Ġ t", "h e", "Ġt he", "i n", "t h", "th in", "Ġ Ġ", "Ċ Ċ", "İ !"};
enum { GT = 256, HE, GTHE, IN, TH, THIN, GG, NN, MVS, GIN, EOT };
#define NMERGES 9

static char *gpt2_file(const char *name, int pairs, const char *normalizer) {
  static const char *const extra[] = {"Ġin", NULL};
  cJSON *root = cJSON_CreateObject();
  cJSON_AddStringToObject(root, "version", "1.0");
  cJSON *add = cJSON_CreateArray();
  cJSON_AddItemToArray(add, added(EOT, "<|endoftext|>", 1));
  cJSON_AddItemToObject(root, "added_tokens", add);
  if (normalizer) {
    cJSON *n = cJSON_CreateObject();
    cJSON_AddStringToObject(n, "type", normalizer);
    cJSON_AddItemToObject(root, "normalizer", n);
  } else cJSON_AddNullToObject(root, "normalizer");
  cJSON_AddItemToObject(root, "pre_tokenizer", bytelevel(1));
  cJSON_AddItemToObject(root, "post_processor", bytelevel(1));
  cJSON_AddItemToObject(root, "decoder", bytelevel(1));
  cJSON_AddItemToObject(root, "model", bytelevel_model(gpt2_merges, NMERGES, extra, pairs, 0));
  return write_json(name, root);
}

static int enc_is(pose_tokenizer *t, const char *text, const int32_t *want, size_t nw) {
  int32_t *ids;
  size_t n;
  if (pose_tokenizer_encode(t, text, strlen(text), 0, 0, &ids, &n)) {
    fprintf(stderr, "encode('%s') failed: %s\n", text, pose_error_message());
    return 0;
  }
  int ok = n == nw && (n == 0 || memcmp(ids, want, n * sizeof *ids) == 0);
  if (!ok) {
    fprintf(stderr, "encode('%s') = [", text);
    for (size_t i = 0; i < n; i++) fprintf(stderr, "%s%d", i ? " " : "", ids[i]);
    fprintf(stderr, "], expected [");
    for (size_t i = 0; i < nw; i++) fprintf(stderr, "%s%d", i ? " " : "", want[i]);
    fprintf(stderr, "]\n");
  }
  free(ids);
  return ok;
}
#define ENC(t, text, ...) \
  do { const int32_t w_[] = {__VA_ARGS__}; CHECK(enc_is(t, text, w_, sizeof w_ / sizeof w_[0])); } while (0)

static int dec_is(pose_tokenizer *t, const int32_t *ids, size_t n, const char *want) {
  char *s;
  size_t len;
  if (pose_tokenizer_decode(t, ids, n, &s, &len)) { fprintf(stderr, "decode failed: %s\n", pose_error_message()); return 0; }
  int ok = len == strlen(want) && strcmp(s, want) == 0;
  if (!ok) fprintf(stderr, "decode = '%s', expected '%s'\n", s, want);
  free(s);
  return ok;
}
#define DEC(t, want, ...) \
  do { const int32_t i_[] = {__VA_ARGS__}; CHECK(dec_is(t, i_, sizeof i_ / sizeof i_[0], want)); } while (0)

static int round_trips(pose_tokenizer *t, const char *text) {
  int32_t *ids;
  size_t n;
  char *s;
  size_t len;
  if (pose_tokenizer_encode(t, text, strlen(text), 0, 0, &ids, &n)) return 0;
  pose_status st = pose_tokenizer_decode(t, ids, n, &s, &len);
  free(ids);
  if (st) return 0;
  int ok = len == strlen(text) && !memcmp(s, text, len);
  if (!ok) fprintf(stderr, "round trip of '%s' gave '%s'\n", text, s);
  free(s);
  return ok;
}

static void test_byte_map(void) {
  CHECK(gpt2_char(' ') == 0x120 && gpt2_char('\n') == 0x10A && gpt2_char(0) == 0x100);
  CHECK(gpt2_char(0x7F) == 0x121 && gpt2_char(0xAD) == 0x143 && gpt2_char('A') == 'A');
}

static void test_gpt2(int pairs) {
  pose_tokenizer *t;
  CHECK_OK(pose_tokenizer_open(&t, gpt2_file(pairs ? "gpt2_pairs.json" : "gpt2.json", pairs, NULL)));
  if (!t) return;
  CHECK(strcmp(pose_tokenizer_kind_name(t), "bpe") == 0);
  CHECK(pose_tokenizer_vocab_size(t) == EOT + 1);
  CHECK(pose_tokenizer_bos_id(t) == -1);              /* GPT-2: no BOS, <|endoftext|> ends texts */
  CHECK(pose_tokenizer_eos_id(t) == EOT);
  ENC(t, "the", 't', HE);                            /* (h,e) ranks before (t,h) */
  ENC(t, " the", GTHE);                              /* Ġt + he -> Ġthe */
  ENC(t, "thin", THIN);                              /* in, then th, then th+in */
  ENC(t, " thin", GT, 'h', IN);                      /* Ġt takes the t that th wanted */
  ENC(t, " in", 32, IN);                             /* Ġin is in the vocabulary, but no merge makes it */
  ENC(t, "a  b", 'a', 32, 32, 'b');                  /* \s+(?!\S) leaves the last space to " b" */
  ENC(t, "a   b", 'a', GG, 32, 'b');
  ENC(t, "a  ", 'a', GG);                            /* trailing run stays whole */
  ENC(t, "x\n\n", 'x', NN);
  ENC(t, "I'm 42", 'I', '\'', 'm', 32, '4', '2');
  ENC(t, "hi<|endoftext|>the", 'h', 'i', EOT, 't', HE);
  ENC(t, "\xF0\x9F\x98\x80", 0xF0, 0x9F, 0x98, 0x80); /* emoji: its four bytes */
  ENC(t, "\xC3\xA9", 0xC3, 0xA9);
  ENC(t, "\t", '\t');
  /* \s is Unicode White_Space as in Oniguruma: U+0085 is a space, U+180E (PCRE2's own \s has it) is not, so
   * it stays in one piece with the "!" after it and their bytes can merge */
  ENC(t, "\xC2\x85!", 0xC2, 0x85, '!');
  ENC(t, "\xE1\xA0\x8E!", 0xE1, 0xA0, MVS);
  int32_t *ids = (int32_t *)1;
  size_t n = 5;
  CHECK_OK(pose_tokenizer_encode(t, "", 0, 0, 0, &ids, &n));
  CHECK(ids == NULL && n == 0);
  DEC(t, " the", GTHE);
  DEC(t, "hithe", 'h', 'i', EOT, 't', HE);           /* special tokens decode to nothing */
  DEC(t, "\xEF\xBF\xBD", 0xC3);                      /* a lone lead byte becomes U+FFFD */
  DEC(t, "");
  const char *texts[] = {"Hello, world!  It's 2024.\n\tTabs\tand\r\nCRLF", "  leading and trailing  ",
                         "\xE4\xBD\xA0\xE5\xA5\xBD \xD9\x85\xD8\xB1\xD8\xAD\xD8\xA8\xD8\xA7",
                         "e\xCC\x81 \xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD", "\x7F\x01 nul-free control"};
  for (int i = 0; i < 5; i++) CHECK(round_trips(t, texts[i]));
  const char *p;
  size_t len;
  CHECK_OK(pose_tokenizer_id_to_piece(t, GTHE, &p, &len));
  CHECK(len == 5 && memcmp(p, "\xC4\xA0the", 5) == 0);
  CHECK_OK(pose_tokenizer_id_to_piece(t, EOT, &p, &len));
  CHECK(len == 13 && memcmp(p, "<|endoftext|>", 13) == 0);
  CHECK(pose_tokenizer_piece_to_id(t, "\xC4\xA0the", 5) == GTHE);
  CHECK(pose_tokenizer_piece_to_id(t, "<|endoftext|>", 13) == EOT);
  CHECK(pose_tokenizer_piece_to_id(t, "nope", 4) == -1);
  CHECK(pose_tokenizer_is_special(t, EOT) && !pose_tokenizer_is_special(t, GTHE));
  /* errors */
  CHECK_ERR(pose_tokenizer_id_to_piece(t, EOT + 1, &p, &len), POSE_EINVAL, "not in the vocabulary");
  CHECK_ERR(pose_tokenizer_id_to_piece(t, -1, &p, &len), POSE_EINVAL, "not in the vocabulary");
  CHECK_ERR(pose_tokenizer_encode(t, "a\xFF" "b", 3, 0, 0, &ids, &n), POSE_EINVAL, "not valid UTF-8 (byte 0xFF at offset 1)");
  CHECK_ERR(pose_tokenizer_encode(t, "\xC3", 1, 0, 0, &ids, &n), POSE_EINVAL, "not valid UTF-8");
  CHECK_ERR(pose_tokenizer_encode(t, "\xED\xA0\x80", 3, 0, 0, &ids, &n), POSE_EINVAL, "not valid UTF-8"); /* surrogate */
  CHECK_ERR(pose_tokenizer_encode(t, "\xC0\xAF", 2, 0, 0, &ids, &n), POSE_EINVAL, "not valid UTF-8");     /* overlong */
  CHECK_ERR(pose_tokenizer_encode(t, "a", 1, 1, 0, &ids, &n), POSE_EINVAL, "no BOS token");
  CHECK_OK(pose_tokenizer_encode(t, "a", 1, 0, 1, &ids, &n));
  CHECK(n == 2 && ids[0] == 'a' && ids[1] == EOT);
  free(ids);
  char *s;
  const int32_t bad[] = {1, EOT + 1};
  CHECK_ERR(pose_tokenizer_decode(t, bad, 2, &s, &len), POSE_EINVAL, "id 267 at position 1 is outside the vocabulary");
  const int32_t neg[] = {-3};
  CHECK_ERR(pose_tokenizer_decode(t, neg, 1, &s, &len), POSE_EINVAL, "outside the vocabulary");
  pose_tokenizer_free(t);
}

/* LLaMA-3: Split by its regex, then ByteLevel without regex; ignore_merges */
static void test_llama3(void) {
  static const char *const extra[] = {"Ġin", NULL};
  cJSON *root = cJSON_CreateObject(), *seq = cJSON_CreateObject(), *list = cJSON_CreateArray();
  cJSON *split = cJSON_CreateObject(), *pat = cJSON_CreateObject();
  cJSON_AddStringToObject(pat, "Regex", "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?"
                                        "[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+");
  cJSON_AddStringToObject(split, "type", "Split");
  cJSON_AddItemToObject(split, "pattern", pat);
  cJSON_AddStringToObject(split, "behavior", "Isolated");
  cJSON_AddBoolToObject(split, "invert", 0);
  cJSON_AddItemToArray(list, split);
  cJSON_AddItemToArray(list, bytelevel(0));
  cJSON_AddStringToObject(seq, "type", "Sequence");
  cJSON_AddItemToObject(seq, "pretokenizers", list);
  cJSON_AddItemToObject(root, "pre_tokenizer", seq);
  cJSON *add = cJSON_CreateArray();
  cJSON_AddItemToArray(add, added(EOT, "<|begin_of_text|>", 1));
  cJSON_AddItemToArray(add, added(EOT + 1, "<|end_of_text|>", 1));
  cJSON_AddItemToObject(root, "added_tokens", add);
  char ppj[1024];
  snprintf(ppj, sizeof ppj, "{\"type\":\"Sequence\",\"processors\":[{\"type\":\"ByteLevel\"},{\"type\":"
           "\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<|begin_of_text|>\",\"type_id\":0}},"
           "{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}],\"special_tokens\":{\"<|begin_of_text|>\":"
           "{\"id\":\"<|begin_of_text|>\",\"ids\":[%d],\"tokens\":[\"<|begin_of_text|>\"]}}}]}", EOT);
  cJSON *pp = cJSON_Parse(ppj);
  cJSON_AddItemToObject(root, "post_processor", pp);
  cJSON_AddItemToObject(root, "decoder", bytelevel(1));
  cJSON_AddItemToObject(root, "model", bytelevel_model(gpt2_merges, NMERGES, extra, 0, 1));
  pose_tokenizer *t;
  CHECK_OK(pose_tokenizer_open(&t, write_json("llama3.json", root)));
  if (!t) return;
  CHECK(pose_tokenizer_bos_id(t) == EOT && pose_tokenizer_eos_id(t) == EOT + 1);
  ENC(t, "123456", '1', '2', '3', '4', '5', '6');
  ENC(t, " in", GIN);                                /* ignore_merges: the whole word is a piece */
  ENC(t, "I'M", 'I', '\'', 'M');                     /* case-insensitive contractions */
  ENC(t, "a\n\n b", 'a', NN, 32, 'b');
  int32_t *ids;
  size_t n;
  CHECK_OK(pose_tokenizer_encode(t, " the", 4, 1, 1, &ids, &n));
  CHECK(n == 3 && ids[0] == EOT && ids[1] == GTHE && ids[2] == EOT + 1);
  free(ids);
  CHECK(round_trips(t, "x = 1234567;\n\n  y\t'll \xE4\xB8\xAD\xE6\x96\x87 \xF0\x9F\x98\x80!"));
  pose_tokenizer_free(t);
}

/* LLaMA-2's tokenizer.json: normalizer Prepend("▁") + Replace(" ", "▁"), no pre-tokenizer, BPE with byte
 * fallback, decoder Replace + ByteFallback + Fuse + Strip. With metaspace=1, the newer form: no normalizer and a
 * Metaspace pre-tokenizer (prepend_scheme "first") and decoder. */
static char *llama2_file(const char *name, int byte_fallback, int metaspace) {
  const char *json_head =
      "{\"version\":\"1.0\",\"added_tokens\":["
      "{\"id\":0,\"content\":\"<unk>\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,\"normalized\":false,\"special\":true},"
      "{\"id\":1,\"content\":\"<s>\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,\"normalized\":false,\"special\":true},"
      "{\"id\":2,\"content\":\"</s>\",\"single_word\":false,\"lstrip\":false,\"rstrip\":false,\"normalized\":false,\"special\":true}],";
  const char *classic =
      "\"normalizer\":{\"type\":\"Sequence\",\"normalizers\":[{\"type\":\"Prepend\",\"prepend\":\"\xE2\x96\x81\"},"
      "{\"type\":\"Replace\",\"pattern\":{\"String\":\" \"},\"content\":\"\xE2\x96\x81\"}]},\"pre_tokenizer\":null,"
      "\"decoder\":{\"type\":\"Sequence\",\"decoders\":[{\"type\":\"Replace\",\"pattern\":{\"String\":\"\xE2\x96\x81\"},"
      "\"content\":\" \"},{\"type\":\"ByteFallback\"},{\"type\":\"Fuse\"},{\"type\":\"Strip\",\"content\":\" \","
      "\"start\":1,\"stop\":0}]},";
  const char *meta =
      "\"normalizer\":null,\"pre_tokenizer\":{\"type\":\"Metaspace\",\"replacement\":\"\xE2\x96\x81\","
      "\"prepend_scheme\":\"first\",\"split\":false},\"decoder\":{\"type\":\"Sequence\",\"decoders\":["
      "{\"type\":\"ByteFallback\"},{\"type\":\"Metaspace\",\"replacement\":\"\xE2\x96\x81\",\"prepend_scheme\":\"first\","
      "\"split\":false}]},";
  const char *tail_fmt =
      "\"post_processor\":{\"type\":\"TemplateProcessing\",\"single\":[{\"SpecialToken\":{\"id\":\"<s>\",\"type_id\":0}},"
      "{\"Sequence\":{\"id\":\"A\",\"type_id\":0}}],\"pair\":[],\"special_tokens\":{\"<s>\":{\"id\":\"<s>\",\"ids\":[1],"
      "\"tokens\":[\"<s>\"]}}},\"model\":{\"type\":\"BPE\",\"dropout\":null,\"unk_token\":\"<unk>\","
      "\"continuing_subword_prefix\":null,\"end_of_word_suffix\":null,\"fuse_unk\":true,\"byte_fallback\":%s,"
      "\"vocab\":{\"<unk>\":0,\"<s>\":1,\"</s>\":2,%s\"\xE2\x96\x81\":259,\"h\":260,\"i\":261,\"\xE2\x96\x81h\":262,"
      "\"\xE2\x96\x81hi\":263,\"t\":264,\"e\":265,\"r\":266},\"merges\":[\"\xE2\x96\x81 h\",\"\xE2\x96\x81h i\"]}}";
  char bytes[256 * 16] = "";
  for (int b = 0; b < 256; b++) sprintf(bytes + strlen(bytes), "\"<0x%02X>\":%d,", b, 3 + b);
  static char buf[16384];
  snprintf(buf, sizeof buf, "%s%s", json_head, metaspace ? meta : classic);
  snprintf(buf + strlen(buf), sizeof buf - strlen(buf), tail_fmt, byte_fallback ? "true" : "false", bytes);
  write_text(name, buf);
  static char path[256];
  snprintf(path, sizeof path, "%s/%s", tmpdir, name);
  return path;
}

static void test_llama2(void) {
  pose_tokenizer *t;
  CHECK_OK(pose_tokenizer_open(&t, llama2_file("llama2.json", 1, 0)));
  if (!t) return;
  CHECK(pose_tokenizer_bos_id(t) == 1 && pose_tokenizer_eos_id(t) == 2 && pose_tokenizer_unk_id(t) == 0);
  ENC(t, "hi there", 263, 259, 264, 260, 265, 266, 265);
  ENC(t, "h\xC3\xA9", 262, 3 + 0xC3, 3 + 0xA9);     /* é by byte fallback */
  ENC(t, "<s>hi", 1, 263);                           /* the segment after <s> gets its own ▁ (legacy HF) */
  DEC(t, "hi there", 1, 263, 259, 264, 260, 265, 266, 265, 2);
  DEC(t, "h\xC3\xA9", 262, 3 + 0xC3, 3 + 0xA9);
  DEC(t, "h\xEF\xBF\xBD", 262, 3 + 0xC3);            /* an incomplete byte sequence: U+FFFD per byte */
  CHECK(round_trips(t, "hi  there\n\xE4\xBD\xA0 \xF0\x9F\x98\x80"));
  pose_tokenizer_free(t);

  CHECK_OK(pose_tokenizer_open(&t, llama2_file("llama2_unk.json", 0, 0)));
  if (!t) return;
  ENC(t, "h\xC3\xA9\xE2\x82\xAC", 262, 0);           /* no byte fallback: é€ fuse into one <unk> */
  ENC(t, "hi", 263);
  pose_tokenizer_free(t);

  CHECK_OK(pose_tokenizer_open(&t, llama2_file("llama2_meta.json", 1, 1)));
  if (!t) return;
  ENC(t, "hi there", 263, 259, 264, 260, 265, 266, 265);
  ENC(t, "<s>hi", 1, 260, 261);                      /* prepend_scheme "first": not after <s> */
  DEC(t, "hi there", 263, 259, 264, 260, 265, 266, 265);
  pose_tokenizer_free(t);
}

/* Split behaviours on "a-b--c" with merges "- -", "a -", "- b"; then Digits */
static void test_split_behaviours(void) {
  static const char *const merges[] = {"- -", "a -", "- b", "1 2"};
  enum { DD = 256, AD, DB, D12 };
  static const char *const behav[] = {"Isolated", "Removed", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
  static const int32_t want[5][6] = {{'a', '-', 'b', '-', '-', 'c'}, {'a', 'b', 'c'}, {AD, 'b', '-', '-', 'c'},
                                     {'a', DB, '-', '-', 'c'}, {'a', '-', 'b', DD, 'c'}};
  static const size_t nwant[5] = {6, 3, 5, 5, 5};
  for (int b = 0; b < 5; b++) {
    for (int invert = 0; invert < 2; invert++) {
      if (invert && b != 1) continue;
      cJSON *root = cJSON_CreateObject(), *seq = cJSON_CreateObject(), *list = cJSON_CreateArray();
      cJSON *split = cJSON_CreateObject(), *pat = cJSON_CreateObject();
      cJSON_AddStringToObject(pat, "String", "-");
      cJSON_AddStringToObject(split, "type", "Split");
      cJSON_AddItemToObject(split, "pattern", pat);
      cJSON_AddStringToObject(split, "behavior", behav[b]);
      cJSON_AddBoolToObject(split, "invert", invert);
      cJSON_AddItemToArray(list, split);
      cJSON_AddItemToArray(list, bytelevel(0));
      cJSON_AddStringToObject(seq, "type", "Sequence");
      cJSON_AddItemToObject(seq, "pretokenizers", list);
      cJSON_AddItemToObject(root, "pre_tokenizer", seq);
      cJSON_AddItemToObject(root, "model", bytelevel_model(merges, 4, NULL, 1, 0));
      pose_tokenizer *t;
      CHECK_OK(pose_tokenizer_open(&t, write_json("split.json", root)));
      if (!t) continue;
      if (invert) ENC(t, "a-b--c", '-', '-', '-'); /* inverted and removed: the dashes stay, one piece each */
      else CHECK(enc_is(t, "a-b--c", want[b], nwant[b]));
      pose_tokenizer_free(t);
    }
  }
  for (int individual = 0; individual < 2; individual++) {
    cJSON *root = cJSON_CreateObject(), *seq = cJSON_CreateObject(), *list = cJSON_CreateArray();
    cJSON *dg = cJSON_CreateObject();
    cJSON_AddStringToObject(dg, "type", "Digits");
    cJSON_AddBoolToObject(dg, "individual_digits", individual);
    cJSON_AddItemToArray(list, dg);
    cJSON_AddItemToArray(list, bytelevel(0));
    cJSON_AddStringToObject(seq, "type", "Sequence");
    cJSON_AddItemToObject(seq, "pretokenizers", list);
    cJSON_AddItemToObject(root, "pre_tokenizer", seq);
    cJSON_AddItemToObject(root, "model", bytelevel_model(merges, 4, NULL, 0, 0));
    pose_tokenizer *t;
    CHECK_OK(pose_tokenizer_open(&t, write_json("digits.json", root)));
    if (!t) continue;
    if (individual) ENC(t, "a12", 'a', '1', '2');
    else ENC(t, "a12", 'a', D12);
    pose_tokenizer_free(t);
  }
}

static void test_nfc(void) {
  pose_tokenizer *t;
  CHECK_OK(pose_tokenizer_open(&t, gpt2_file("nfc.json", 0, "NFC")));
  if (!t) return;
  ENC(t, "\xC3\xA9", 0xC3, 0xA9);                    /* already composed: NFC leaves it */
  int32_t *ids;
  size_t n;
  CHECK_ERR(pose_tokenizer_encode(t, "e\xCC\x81", 3, 0, 0, &ids, &n), POSE_EUNSUPPORTED, "U+0301");
  pose_tokenizer_free(t);
}

static void test_load_errors(void) {
  pose_tokenizer *t = NULL;
  char path[300];
  CHECK_ERR(pose_tokenizer_open(&t, "/nonexistent/tokenizer.json"), POSE_EIO, "/nonexistent/tokenizer.json");
  CHECK(t == NULL);
  CHECK_ERR(pose_tokenizer_open(&t, ""), POSE_EINVAL, "empty path");
  CHECK_ERR(pose_tokenizer_open(&t, tmpdir), POSE_EIO, "neither tokenizer.json nor tokenizer.model");
  write_text("bad.json", "{\"model\": {\"vocab\": {\"a\": 0,}}");
  snprintf(path, sizeof path, "%s/bad.json", tmpdir);
  CHECK_ERR(pose_tokenizer_open(&t, path), POSE_EFORMAT, "bad.json: malformed JSON near byte");
  write_text("wp.json", "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}");
  snprintf(path, sizeof path, "%s/wp.json", tmpdir);
  CHECK_ERR(pose_tokenizer_open(&t, path), POSE_EUNSUPPORTED, "model type 'WordPiece' is not supported");
  write_text("nomerge.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [\"a b\"]}}");
  snprintf(path, sizeof path, "%s/nomerge.json", tmpdir);
  CHECK_ERR(pose_tokenizer_open(&t, path), POSE_EFORMAT, "nomerge.json: merge 0: 'a' + 'b' = 'ab' is not in the vocabulary");
  write_text("badmerge.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"a x\"]}}");
  snprintf(path, sizeof path, "%s/badmerge.json", tmpdir);
  CHECK_ERR(pose_tokenizer_open(&t, path), POSE_EFORMAT, "'x' is not in the vocabulary");
  write_text("threemerge.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"a a a\"]}}");
  snprintf(path, sizeof path, "%s/threemerge.json", tmpdir);
  CHECK_ERR(pose_tokenizer_open(&t, path), POSE_EFORMAT, "not two pieces");
  write_text("dup.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 0}, \"merges\": []}}");
  snprintf(path, sizeof path, "%s/dup.json", tmpdir);
  CHECK_ERR(pose_tokenizer_open(&t, path), POSE_EFORMAT, "id 0 is given to both");
  write_text("lower.json", "{\"normalizer\": {\"type\": \"Lowercase\"}, \"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": []}}");
  snprintf(path, sizeof path, "%s/lower.json", tmpdir);
  CHECK_ERR(pose_tokenizer_open(&t, path), POSE_EUNSUPPORTED, "normalizer type 'Lowercase' is not supported");
  write_text("re.json", "{\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"(a\"}, \"behavior\": \"Isolated\","
                        " \"invert\": false}, \"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": []}}");
  snprintf(path, sizeof path, "%s/re.json", tmpdir);
  CHECK_ERR(pose_tokenizer_open(&t, path), POSE_EUNSUPPORTED, "does not compile under PCRE2");
  write_text("nounk.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}");
  snprintf(path, sizeof path, "%s/nounk.json", tmpdir);
  CHECK_OK(pose_tokenizer_open(&t, path));
  if (t) {
    int32_t *ids;
    size_t n;
    CHECK_ERR(pose_tokenizer_encode(t, "ab", 2, 0, 0, &ids, &n), POSE_EINVAL, "'b'");
    CHECK_ERR(pose_tokenizer_encode(t, "ab", 2, 0, 0, &ids, &n), POSE_EINVAL, "nounk.json");
    pose_tokenizer_free(t);
  }
  write_text("junk.model", "this is not a protobuf");
  snprintf(path, sizeof path, "%s/junk.model", tmpdir);
  CHECK_ERR(pose_tokenizer_open(&t, path), POSE_EFORMAT, "junk.model: not a SentencePiece model");
  /* a directory with tokenizer.json; a file without a telling extension is sniffed */
  gpt2_file("tokenizer.json", 0, NULL);
  CHECK_OK(pose_tokenizer_open(&t, tmpdir));
  if (t) {
    CHECK(strstr(pose_tokenizer_path(t), "/tokenizer.json") != NULL);
    pose_tokenizer_free(t);
  }
  snprintf(path, sizeof path, "%s/tokenizer.json", tmpdir);
  char other[300];
  snprintf(other, sizeof other, "%s/tok.bin", tmpdir);
  CHECK(rename(path, other) == 0);
  CHECK_OK(pose_tokenizer_open(&t, other));
  if (t) { CHECK(pose_tokenizer_kind_of(t) == POSE_TOK_HF_BPE); pose_tokenizer_free(t); }
}

static void test_long_word(void) {
  /* a 200k-character word: the priority queue keeps it far from quadratic; the result is checked exactly */
  pose_tokenizer *t;
  CHECK_OK(pose_tokenizer_open(&t, gpt2_file("long.json", 0, NULL)));
  if (!t) return;
  size_t n = 200000;
  char *s = malloc(n + 1);
  for (size_t i = 0; i < n; i += 4) memcpy(s + i, "thin", 4);
  s[n] = 0;
  int32_t *ids;
  size_t m;
  CHECK_OK(pose_tokenizer_encode(t, s, n, 0, 0, &ids, &m));
  int all = m == n / 4;
  for (size_t i = 0; all && i < m; i++) all = ids[i] == THIN;
  CHECK(all);
  free(ids);
  free(s);
  pose_tokenizer_free(t);
}

/* one handle, several threads: the word cache is shared under a lock, regex match data is per call */
static const char *const mt_texts[] = {"the thin thing", "  in the\n\nthin\t", "I'm 42 thin the", "\xE4\xB8\xAD the",
                                       "thinthin the the", "a  b   c", "<|endoftext|>the", "x\xF0\x9F\x98\x80"};
typedef struct { pose_tokenizer *t; int32_t *want[8]; size_t nwant[8]; int bad; } mt_job;

static void *mt_worker(void *arg) {
  mt_job *j = arg;
  for (int r = 0; r < 300; r++)
    for (int i = 0; i < 8; i++) {
      int32_t *ids;
      size_t n;
      if (pose_tokenizer_encode(j->t, mt_texts[i], strlen(mt_texts[i]), 0, 0, &ids, &n)) { __atomic_add_fetch(&j->bad, 1, __ATOMIC_RELAXED); continue; }
      if (n != j->nwant[i] || memcmp(ids, j->want[i], n * sizeof *ids)) __atomic_add_fetch(&j->bad, 1, __ATOMIC_RELAXED);
      free(ids);
    }
  return NULL;
}

static void test_threads(void) {
  pose_tokenizer *ref, *t;
  CHECK_OK(pose_tokenizer_open(&ref, gpt2_file("mt_ref.json", 0, NULL)));
  CHECK_OK(pose_tokenizer_open(&t, gpt2_file("mt.json", 0, NULL)));
  if (!ref || !t) return;
  mt_job job = {t, {0}, {0}, 0};
  for (int i = 0; i < 8; i++) CHECK_OK(pose_tokenizer_encode(ref, mt_texts[i], strlen(mt_texts[i]), 0, 0, &job.want[i], &job.nwant[i]));
  pthread_t th[4];
  for (int k = 0; k < 4; k++) pthread_create(&th[k], NULL, mt_worker, &job);
  for (int k = 0; k < 4; k++) pthread_join(th[k], NULL);
  CHECK(job.bad == 0);
  for (int i = 0; i < 8; i++) free(job.want[i]);
  pose_tokenizer_free(ref);
  pose_tokenizer_free(t);
}

int main(void) {
  snprintf(tmpdir, sizeof tmpdir, "/tmp/pose_tok_XXXXXX");
  if (!mkdtemp(tmpdir)) { perror("mkdtemp"); return 1; }
  test_byte_map();
  test_gpt2(0);
  test_gpt2(1);
  test_llama3();
  test_llama2();
  test_split_behaviours();
  test_nfc();
  test_long_word();
  test_threads();
  test_load_errors();
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
  return test_summary("test_tokenizer");
}
