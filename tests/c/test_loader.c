/* Loader from C: the same batches with 1 and 2 threads (a batch big enough for the parallel path), batch-size
 * splits, rank partitions, state restore, error paths, and the time of an 8 x 2048 batch. */
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "loader.h"
#include "testutil.h"

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif
#endif
#ifndef RUNNING_ON_VALGRIND
#define RUNNING_ON_VALGRIND 0
#endif

static char path[256];

static void make_shard(void) {
  pose_shard_writer_opts o;
  pose_shard_writer_defaults(&o);
  o.eos_id = 1;
  pose_shard_writer *w;
  CHECK_OK(pose_shard_writer_open(path, &o, &w));
  int64_t *ids = malloc(sizeof(int64_t) * 9000);
  for (int d = 0; d < 30; d++) {
    int64_t n = 3000 + 200 * d;
    for (int64_t k = 0; k < n; k++) ids[k] = (d * 1009 + k) % 60000;
    CHECK_OK(pose_shard_writer_add(w, ids, n, NULL));
  }
  free(ids);
  CHECK_OK(pose_shard_writer_close(w));
}

static pose_sampler *sampler(pose_sample_method m, int64_t lc, int64_t lt) {
  pose_sampler_opts so;
  pose_sampler_defaults(&so);
  so.method = m;
  so.train_len = lc;
  so.target_len = lt;
  so.seed = 11;
  pose_sampler *s = NULL;
  CHECK_OK(pose_sampler_new(&so, &s));
  return s;
}

static int64_t *alloc3(int64_t n) { return calloc((size_t)(3 * n), sizeof(int64_t)); }

static void test_threads_and_splits(pose_shard *sh) {
  pose_sampler *s = sampler(POSE_SAMPLE_POSE, 2048, 16384);
  pose_loader_opts o;
  pose_loader_defaults(&o);
  o.batch = 72; /* 72 x 2048 > the parallel threshold */
  o.seed = 4;
  pose_loader *a, *b;
  CHECK_OK(pose_loader_new(&sh, 1, s, &o, &a));
  int64_t n = o.batch * 2048;
  int64_t *x = alloc3(n), *y = alloc3(n);
  omp_set_num_threads(1);
  CHECK_OK(pose_loader_next(a, x, x + n, x + 2 * n, NULL));
  omp_set_num_threads(2);
  pose_loader_set_state(a, 0);
  CHECK_OK(pose_loader_next(a, y, y + n, y + 2 * n, NULL));
  CHECK(memcmp(x, y, sizeof(int64_t) * 3 * (size_t)n) == 0);
  /* batch 72 = 8 batches of 9 */
  o.batch = 9;
  CHECK_OK(pose_loader_new(&sh, 1, s, &o, &b));
  int same = 1;
  for (int k = 0; k < 8; k++) {
    CHECK_OK(pose_loader_next(b, y, y + 9 * 2048, y + 18 * 2048, NULL));
    same &= memcmp(y, x + k * 9 * 2048, sizeof(int64_t) * 9 * 2048) == 0;
    same &= memcmp(y + 9 * 2048, x + n + k * 9 * 2048, sizeof(int64_t) * 9 * 2048) == 0;
  }
  CHECK(same);
  CHECK(pose_loader_state(b) == 72);
  /* world 3: rank r's row j is global example 3j + r */
  o.batch = 4;
  o.world = 3;
  int part = 1;
  for (int r = 0; r < 3; r++) {
    pose_loader *c;
    o.rank = r;
    CHECK_OK(pose_loader_new(&sh, 1, s, &o, &c));
    int64_t docs[4];
    CHECK_OK(pose_loader_next(c, y, NULL, NULL, docs));
    for (int j = 0; j < 4; j++) {
      int64_t e = 3 * j + r, d;
      int64_t row[2048];
      CHECK_OK(pose_loader_example(c, (uint64_t)e, row, NULL, NULL, &d));
      part &= memcmp(row, y + j * 2048, sizeof row) == 0 && memcmp(row, x + e * 2048, sizeof row) == 0;
      part &= d == docs[j];
    }
    CHECK(pose_loader_state(c) == 12);
    pose_loader_free(c);
  }
  CHECK(part);
  free(x); free(y);
  pose_loader_free(a);
  pose_loader_free(b);
  pose_sampler_free(s);
}

static void test_errors(pose_shard *sh) {
  pose_sampler *s = sampler(POSE_SAMPLE_PI, 64, 64);
  pose_loader_opts o;
  pose_loader_defaults(&o);
  pose_loader *ld = NULL;
  CHECK_ERR(pose_loader_new(&sh, 0, s, &o, &ld), POSE_EINVAL, "no shards");
  CHECK_ERR(pose_loader_new(&sh, 1, NULL, &o, &ld), POSE_EINVAL, "no sampler");
  o.batch = 0;
  CHECK_ERR(pose_loader_new(&sh, 1, s, &o, &ld), POSE_EINVAL, "batch must be >= 1");
  o.batch = 1;
  o.rank = 1;
  CHECK_ERR(pose_loader_new(&sh, 1, s, &o, &ld), POSE_EINVAL, "rank 1 outside world 1");
  o.rank = 0;
  o.eos_id = 70000;
  pose_shard *two[2] = {sh, sh};
  CHECK_OK(pose_loader_new(two, 2, s, &o, &ld)); /* no vocab recorded: any eos goes */
  CHECK(ld && pose_loader_num_units(ld) == 60 && pose_loader_eos_id(ld) == 70000);
  int sh_i;
  int64_t loc;
  CHECK_OK(pose_loader_locate(ld, 45, &sh_i, &loc));
  CHECK(sh_i == 1 && loc == 15);
  CHECK_ERR(pose_loader_locate(ld, 60, &sh_i, &loc), POSE_EINVAL, "document 60 out of range");
  pose_loader_free(ld);
  pose_sampler_free(s);
  s = sampler(POSE_SAMPLE_PI, 10000, 10000);
  o.eos_id = -1;
  o.pack = 0;
  CHECK_ERR(pose_loader_new(&sh, 1, s, &o, &ld), POSE_EINVAL, "no usable document in 30 (30 shorter");
  pose_sampler_free(s);
}

static void test_speed(pose_shard *sh) {
  pose_sampler *s = sampler(POSE_SAMPLE_POSE, 2048, 16384);
  pose_loader_opts o;
  pose_loader_defaults(&o);
  o.batch = 8;
  pose_loader *ld;
  CHECK_OK(pose_loader_new(&sh, 1, s, &o, &ld));
  int64_t *x = alloc3(8 * 2048);
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (int i = 0; i < 200; i++) CHECK_OK(pose_loader_next(ld, x, x + 8 * 2048, x + 16 * 2048, NULL));
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double per = ((double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec)) / 200;
  printf("loader: 8 x 2048 PoSE batch in %.1f us\n", per * 1e6);
  if (!RUNNING_ON_VALGRIND) CHECK(per < 1e-3); /* "well under a millisecond"; valgrind is ~30x slower */
  free(x);
  pose_loader_free(ld);
  pose_sampler_free(s);
}

int main(void) {
  snprintf(path, sizeof path, "/tmp/pose_test_loader_%ld.shard", (long)getpid());
  make_shard();
  pose_shard *sh = NULL;
  CHECK_OK(pose_shard_open(path, &sh));
  if (sh) {
    test_threads_and_splits(sh);
    test_errors(sh);
    test_speed(sh);
    pose_shard_close(sh);
  }
  unlink(path);
  return test_summary("test_loader");
}
