/* transformers' optimization.py lr lambdas, written with the same operations in the same order so that the doubles
 * agree bit for bit with Python's (math.cos is the C library's cos on the platforms we care about). */
#include "schedule.h"

#include <math.h>
#include <string.h>

static double max_i64_as_double(int64_t a, int64_t b) { return (double)(a > b ? a : b); }

double pose_schedule_factor(pose_schedule s, int64_t warmup, int64_t total, int64_t step) {
  /* float(current_step) / float(max(1, num_warmup_steps)) */
  if (step < warmup) return (double)step / max_i64_as_double(1, warmup);
  switch (s) {
  case POSE_SCHED_LINEAR: {
    /* max(0.0, float(num_training_steps - current_step) / float(max(1, num_training_steps - num_warmup_steps))) */
    double f = (double)(total - step) / max_i64_as_double(1, total - warmup);
    return f > 0.0 ? f : 0.0;
  }
  case POSE_SCHED_COSINE: {
    /* progress = float(current_step - num_warmup_steps) / float(max(1, num_training_steps - num_warmup_steps))
     * max(0.0, 0.5 * (1.0 + math.cos(math.pi * float(num_cycles) * 2.0 * progress))) with num_cycles = 0.5 */
    double progress = (double)(step - warmup) / max_i64_as_double(1, total - warmup);
    double f = 0.5 * (1.0 + cos(M_PI * 0.5 * 2.0 * progress));
    return f > 0.0 ? f : 0.0;
  }
  case POSE_SCHED_CONSTANT:
  default:
    return 1.0;
  }
}

static const char *const names[] = {"constant", "linear", "cosine"};

pose_status pose_schedule_parse(const char *name, pose_schedule *out) {
  for (int i = 0; i < 3; i++)
    if (name && strcmp(name, names[i]) == 0) {
      *out = (pose_schedule)i;
      return POSE_OK;
    }
  return pose_error(POSE_EINVAL, "unknown lr schedule '%s' (expected constant, linear or cosine)", name ? name : "(null)");
}

const char *pose_schedule_name(pose_schedule s) {
  return (unsigned)s < 3 ? names[s] : "?";
}
