/* Token shards: round trips (u16/u32, with and without names, empty documents, empty shard), writer errors, atomic
 * close, and every corruption the reader must report as POSE_EFORMAT naming the file (never a crash). */
#include <stdint.h>
#include <stdlib.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shard.h"
#include "testutil.h"

static char dir[256];

static void path_of(char *buf, size_t n, const char *name) { snprintf(buf, n, "%s/%s", dir, name); }

static int exists(const char *p) { struct stat st; return stat(p, &st) == 0; }

static size_t read_file(const char *p, uint8_t **out) {
  FILE *f = fopen(p, "rb");
  if (!f) { *out = NULL; return 0; }
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  *out = malloc((size_t)n + 16);
  size_t got = fread(*out, 1, (size_t)n, f);
  fclose(f);
  return got;
}

static void write_file(const char *p, const uint8_t *b, size_t n) {
  FILE *f = fopen(p, "wb");
  if (n) fwrite(b, 1, n, f);
  fclose(f);
}

static void put_u64(uint8_t *b, size_t off, uint64_t v) { memcpy(b + off, &v, 8); }
static void put_u32(uint8_t *b, size_t off, uint32_t v) { memcpy(b + off, &v, 4); }

/* three documents: {1,2,3}, {}, {65535, 0} with names "a", "", "bb" */
static void write_sample(const char *p, pose_shard_dtype dt, int names) {
  pose_shard_writer_opts o;
  pose_shard_writer_defaults(&o);
  o.dtype = dt;
  o.eos_id = 2;
  pose_shard_writer *w;
  unlink(p);
  CHECK_OK(pose_shard_writer_open(p, &o, &w));
  int64_t d0[] = {1, 2, 3}, d2[] = {65535, 0};
  CHECK_OK(pose_shard_writer_add(w, d0, 3, names ? "a" : NULL));
  CHECK_OK(pose_shard_writer_add(w, NULL, 0, NULL));
  CHECK_OK(pose_shard_writer_add(w, d2, 2, names ? "bb" : NULL));
  CHECK(pose_shard_writer_num_docs(w) == 3 && pose_shard_writer_num_tokens(w) == 5);
  CHECK(!exists(p)); /* nothing at the final path before close */
  CHECK_OK(pose_shard_writer_close(w));
}

static void test_round_trip(void) {
  char p[512];
  for (int dt = 1; dt <= 2; dt++)
    for (int names = 0; names <= 1; names++) {
      path_of(p, sizeof p, "rt.shard");
      write_sample(p, (pose_shard_dtype)dt, names);
      pose_shard *s;
      CHECK_OK(pose_shard_open(p, &s));
      if (!s) continue;
      CHECK(pose_shard_num_docs(s) == 3);
      CHECK(pose_shard_num_tokens(s) == 5);
      CHECK((int)pose_shard_get_dtype(s) == dt);
      CHECK(pose_shard_eos_id(s) == 2 && pose_shard_vocab_size(s) == 0);
      CHECK(pose_shard_has_names(s) == names);
      CHECK(pose_shard_doc_len(s, 0) == 3 && pose_shard_doc_len(s, 1) == 0 && pose_shard_doc_len(s, 2) == 2);
      CHECK(pose_shard_doc_start(s, 2) == 3 && pose_shard_doc_start(s, 3) == -1 && pose_shard_doc_len(s, -1) == 0);
      int64_t got[3] = {0};
      CHECK_OK(pose_shard_read(s, 0, 0, 3, got));
      CHECK(got[0] == 1 && got[1] == 2 && got[2] == 3);
      CHECK_OK(pose_shard_read(s, 2, 0, 2, got));
      CHECK(got[0] == 65535 && got[1] == 0);
      CHECK_OK(pose_shard_read(s, 1, 0, 0, got));
      CHECK_ERR(pose_shard_read(s, 2, 1, 2, got), POSE_EINVAL, "outside document 2");
      CHECK_ERR(pose_shard_read(s, 3, 0, 1, got), POSE_EINVAL, "document 3 out of range");
      CHECK(!strcmp(pose_shard_source(s, 0), names ? "a" : ""));
      CHECK(!strcmp(pose_shard_source(s, 1), ""));
      CHECK(!strcmp(pose_shard_source(s, 2), names ? "bb" : ""));
      CHECK(!strcmp(pose_shard_source(s, 7), ""));
      CHECK_OK(pose_shard_check_tokens(s, 0)); /* nothing recorded: nothing to check */
      CHECK_OK(pose_shard_check_tokens(s, 65536));
      CHECK_ERR(pose_shard_check_tokens(s, 100), POSE_EFORMAT, "document 2 token 0 is 65535");
      pose_shard_close(s);
    }
  /* a large u32 document streams through the side file in blocks */
  path_of(p, sizeof p, "big.shard");
  pose_shard_writer_opts o;
  pose_shard_writer_defaults(&o);
  o.dtype = POSE_SHARD_U32;
  pose_shard_writer *w;
  CHECK_OK(pose_shard_writer_open(p, &o, &w));
  int64_t n = 100003;
  uint32_t *big = malloc(sizeof(uint32_t) * (size_t)n);
  for (int64_t i = 0; i < n; i++) big[i] = (uint32_t)(i * 2654435761u);
  CHECK_OK(pose_shard_writer_add_u32(w, big, n, "big"));
  CHECK_OK(pose_shard_writer_add_u32(w, big, 7, NULL));
  CHECK_OK(pose_shard_writer_close(w));
  pose_shard *s;
  CHECK_OK(pose_shard_open(p, &s));
  if (s) {
    int64_t *back = malloc(sizeof(int64_t) * (size_t)n);
    CHECK_OK(pose_shard_read(s, 0, 0, n, back));
    int bad = 0;
    for (int64_t i = 0; i < n; i++) bad += back[i] != (int64_t)big[i];
    CHECK(bad == 0);
    CHECK(pose_shard_doc_len(s, 1) == 7 && !strcmp(pose_shard_source(s, 1), ""));
    free(back);
    pose_shard_close(s);
  }
  free(big);
  /* an empty shard is valid */
  path_of(p, sizeof p, "empty.shard");
  CHECK_OK(pose_shard_writer_open(p, NULL, &w));
  CHECK_OK(pose_shard_writer_close(w));
  CHECK_OK(pose_shard_open(p, &s));
  if (s) { CHECK(pose_shard_num_docs(s) == 0 && pose_shard_num_tokens(s) == 0); pose_shard_close(s); }
}

static void test_writer_errors(void) {
  char p[512];
  path_of(p, sizeof p, "err.shard");
  pose_shard_writer_opts o;
  pose_shard_writer_defaults(&o);
  pose_shard_writer *w;
  int64_t big[] = {5, 65536}, neg[] = {-1};
  CHECK_OK(pose_shard_writer_open(p, &o, &w));
  CHECK_ERR(pose_shard_writer_add(w, big, 2, NULL), POSE_EINVAL, "token 1 is 65536, outside [0, 65536) (u16)");
  CHECK_ERR(pose_shard_writer_add(w, neg, 1, NULL), POSE_EINVAL, "token 0 is -1");
  CHECK_ERR(pose_shard_writer_add(w, NULL, 3, NULL), POSE_EINVAL, "bad document");
  CHECK(pose_shard_writer_num_docs(w) == 0); /* rejected documents leave no trace */
  pose_shard_writer_abort(w);
  CHECK(!exists(p));
  o.vocab_size = 10;
  o.eos_id = 9;
  CHECK_OK(pose_shard_writer_open(p, &o, &w));
  int64_t d[] = {9, 10};
  CHECK_ERR(pose_shard_writer_add(w, d, 2, NULL), POSE_EINVAL, "outside [0, 10) (the vocabulary)");
  CHECK_OK(pose_shard_writer_add(w, d, 1, NULL));
  CHECK_OK(pose_shard_writer_close(w));
  pose_shard *s;
  CHECK_OK(pose_shard_open(p, &s));
  if (s) { CHECK(pose_shard_vocab_size(s) == 10); CHECK_OK(pose_shard_check_tokens(s, 0)); pose_shard_close(s); }
  o.eos_id = 10;
  CHECK_ERR(pose_shard_writer_open(p, &o, &w), POSE_EINVAL, "eos_id 10 outside");
  o.eos_id = -1;
  o.vocab_size = 70000;
  CHECK_ERR(pose_shard_writer_open(p, &o, &w), POSE_EINVAL, "does not fit u16");
  o.vocab_size = 0;
  o.dtype = (pose_shard_dtype)3;
  CHECK_ERR(pose_shard_writer_open(p, &o, &w), POSE_EINVAL, "unknown dtype 3");
  o.dtype = POSE_SHARD_U16;
  CHECK_ERR(pose_shard_writer_open("/nonexistent-dir/x.shard", &o, &w), POSE_EIO, "cannot create");
  CHECK_ERR(pose_shard_writer_add(NULL, d, 1, NULL), POSE_EINVAL, "closed");
  /* a shard that cannot be renamed into place (the target is a directory) fails and leaves no temp file */
  char dp[512];
  path_of(dp, sizeof dp, "adir.shard");
  mkdir(dp, 0755);
  CHECK_OK(pose_shard_writer_open(dp, &o, &w));
  CHECK_ERR(pose_shard_writer_close(w), POSE_EIO, "renaming");
  char tmp[600];
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld", dp, (long)getpid());
  CHECK(!exists(tmp));
  snprintf(tmp, sizeof tmp, "%s.tok.%ld", dp, (long)getpid());
  CHECK(!exists(tmp));
  rmdir(dp);
}

/* A write that fails half way (file size limit) leaves the writer failed: no later add, no shard at the path. */
static void test_write_failure(void) {
  char p[512];
  path_of(p, sizeof p, "full.shard");
  struct rlimit old, lim;
  getrlimit(RLIMIT_FSIZE, &old);
  void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
  lim = old;
  lim.rlim_cur = 100000;
  setrlimit(RLIMIT_FSIZE, &lim);
  pose_shard_writer *w;
  CHECK_OK(pose_shard_writer_open(p, NULL, &w));
  int64_t n = 3000000; /* 6 MB of u16: beyond the 1 MB stdio buffer and the limit */
  int64_t *ids = calloc((size_t)n, sizeof *ids);
  CHECK_ERR(pose_shard_writer_add(w, ids, n, NULL), POSE_EIO, "writing");
  CHECK_ERR(pose_shard_writer_add(w, ids, 1, NULL), POSE_EIO, "an earlier write failed");
  CHECK_ERR(pose_shard_writer_close(w), POSE_EIO, "writing");
  setrlimit(RLIMIT_FSIZE, &old);
  signal(SIGXFSZ, prev);
  CHECK(!exists(p));
  free(ids);
}

/* Opens a modified copy of the sample shard and expects POSE_EFORMAT with the file name and `what`. */
static void expect_corrupt(const uint8_t *orig, size_t n, size_t new_size, void (*edit)(uint8_t *), const char *what) {
  char p[512];
  path_of(p, sizeof p, "bad.shard");
  uint8_t *b = calloc(1, n + 64);
  memcpy(b, orig, n);
  if (edit) edit(b);
  write_file(p, b, new_size);
  free(b);
  pose_shard *s = (pose_shard *)0x1;
  CHECK_ERR(pose_shard_open(p, &s), POSE_EFORMAT, what);
  CHECK(s == NULL);
  CHECK(strstr(pose_error_message(), "bad.shard") != NULL);
}

/* Offsets in the sample (3 docs, 5 tokens, u16, names): header 0..64, index 64..96, tokens 96..106 (+6 pad) = 112,
 * names: offsets 112..144, blob "a\0\0bb\0" 144..150. */
static void e_magic(uint8_t *b) { b[0] = 'X'; }
static void e_version(uint8_t *b) { put_u32(b, 8, 2); }
static void e_dtype(uint8_t *b) { put_u32(b, 12, 3); }
static void e_dtype0(uint8_t *b) { put_u32(b, 12, 0); }
static void e_ndocs(uint8_t *b) { put_u64(b, 24, 1000); }
static void e_ndocs_huge(uint8_t *b) { put_u64(b, 24, UINT64_MAX); }
static void e_ntok(uint8_t *b) { put_u64(b, 16, 100); }
static void e_ntok_huge(uint8_t *b) { put_u64(b, 16, UINT64_MAX / 2); }
static void e_mono(uint8_t *b) { put_u64(b, 64 + 8, 4); put_u64(b, 64 + 16, 3); }
static void e_first(uint8_t *b) { put_u64(b, 64, 1); }
static void e_last(uint8_t *b) { put_u64(b, 64 + 24, 4); }
static void e_names_len(uint8_t *b) { put_u64(b, 40, 500); }
static void e_names_nul(uint8_t *b) { b[145] = 'x'; }
static void e_names_order(uint8_t *b) { put_u64(b, 112 + 16, 1); }
static void e_eos(uint8_t *b) { put_u32(b, 32, 2); } /* vocab 2, eos 2 */
static void e_reserved(uint8_t *b) { b[50] = 1; }

static void test_corruption(void) {
  char p[512];
  path_of(p, sizeof p, "good.shard");
  write_sample(p, POSE_SHARD_U16, 1);
  uint8_t *orig;
  size_t n = read_file(p, &orig);
  CHECK(n == 150);
  if (n != 150) { free(orig); return; }
  expect_corrupt(orig, n, n, e_magic, "bad magic");
  expect_corrupt(orig, n, n, e_version, "unknown version 2");
  expect_corrupt(orig, n, n, e_dtype, "unknown token dtype 3");
  expect_corrupt(orig, n, n, e_dtype0, "unknown token dtype 0");
  expect_corrupt(orig, n, 0, NULL, "truncated header (0 bytes");
  expect_corrupt(orig, n, 63, NULL, "truncated header (63 bytes");
  expect_corrupt(orig, n, 80, NULL, "truncated index");
  expect_corrupt(orig, n, n, e_ndocs, "truncated index (1000 documents");
  expect_corrupt(orig, n, n, e_ndocs_huge, "truncated index");
  expect_corrupt(orig, n, 100, NULL, "token count 5 past the end");
  expect_corrupt(orig, n, n, e_ntok, "token count 100 past the end");
  expect_corrupt(orig, n, n, e_ntok_huge, "past the end");
  expect_corrupt(orig, n, 106, NULL, "padding past the end");
  expect_corrupt(orig, n, 140, NULL, "name table of 38 bytes past the end");
  expect_corrupt(orig, n, n + 8, NULL, "8 unexpected bytes after the last section");
  expect_corrupt(orig, n, n, e_mono, "offsets not monotonic at document 1");
  expect_corrupt(orig, n, n, e_first, "index starts at 1");
  expect_corrupt(orig, n, n, e_last, "index ends at 4");
  expect_corrupt(orig, n, n, e_names_len, "name table of 500 bytes past the end");
  expect_corrupt(orig, n, n, e_names_nul, "not NUL-terminated");
  expect_corrupt(orig, n, n, e_names_order, "name offsets not increasing");
  expect_corrupt(orig, n, n, e_eos, "eos_id 2 outside the vocabulary of 2");
  expect_corrupt(orig, n, n, e_reserved, "reserved header bytes");
  free(orig);
  pose_shard *s;
  CHECK_ERR(pose_shard_open("/nonexistent/x.shard", &s), POSE_EIO, "cannot open");
  CHECK_ERR(pose_shard_open(dir, &s), POSE_EIO, "not a regular file");
}

int main(void) {
  snprintf(dir, sizeof dir, "/tmp/pose_test_shard_XXXXXX");
  if (!mkdtemp(dir)) { perror("mkdtemp"); return 1; }
  test_round_trip();
  test_writer_errors();
  test_write_failure();
  test_corruption();
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
  return test_summary("test_shard");
}
