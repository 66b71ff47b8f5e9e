/* Minimal C test harness: CHECK-style macros that count, and a summary line "N passed, N failed". */
#ifndef POSE_TESTUTIL_H
#define POSE_TESTUTIL_H

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "status.h"

static int t_pass = 0, t_fail = 0;

#define CHECK(cond)                                                              \
  do {                                                                           \
    if (cond) t_pass++;                                                          \
    else { t_fail++; fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); } \
  } while (0)

#define CHECK_OK(expr)                                                                       \
  do {                                                                                       \
    pose_status st_ = (expr);                                                                \
    if (st_ == POSE_OK) t_pass++;                                                            \
    else { t_fail++; fprintf(stderr, "%s:%d: %s -> %s: %s\n", __FILE__, __LINE__, #expr,    \
                             pose_status_name(st_), pose_error_message()); }                \
  } while (0)

/* expects failure with status `code` and a message containing `needle` */
#define CHECK_ERR(expr, code, needle)                                                        \
  do {                                                                                       \
    pose_error_clear();                                                                      \
    pose_status st_ = (expr);                                                                \
    if (st_ == (code) && strstr(pose_error_message(), (needle))) t_pass++;                   \
    else { t_fail++; fprintf(stderr, "%s:%d: %s -> %s '%s', expected %s containing '%s'\n", __FILE__, __LINE__, \
                             #expr, pose_status_name(st_), pose_error_message(), pose_status_name(code), (needle)); } \
  } while (0)

#define CHECK_NEAR(a, b, tol)                                                                  \
  do {                                                                                         \
    double a_ = (a), b_ = (b);                                                                 \
    if (fabs(a_ - b_) <= (tol)) t_pass++;                                                      \
    else { t_fail++; fprintf(stderr, "%s:%d: %s = %.9g, %s = %.9g, |diff| %.3g > %.3g\n", __FILE__, __LINE__, \
                             #a, a_, #b, b_, fabs(a_ - b_), (double)(tol)); }                 \
  } while (0)

static inline int test_summary(const char *name) {
  printf("%s: %d passed, %d failed\n", name, t_pass, t_fail);
  return t_fail ? 1 : 0;
}

#endif
