/* Learning-rate schedules exactly as transformers' get_constant_schedule_with_warmup,
 * get_linear_schedule_with_warmup and get_cosine_schedule_with_warmup (num_cycles 0.5) wrapped in torch's LambdaLR:
 * the lr of an update is base_lr * factor(step), where `step` counts the updates done before it. The first update
 * therefore uses factor(0), which is 0 when warmup > 0 (the Hugging Face convention: LambdaLR evaluates the lambda
 * at 0 on construction, optimizer.step() runs, then scheduler.step() moves to 1). */
#ifndef POSE_SCHEDULE_H
#define POSE_SCHEDULE_H

#include <stdint.h>

#include "status.h"

typedef enum { POSE_SCHED_CONSTANT = 0, POSE_SCHED_LINEAR, POSE_SCHED_COSINE } pose_schedule;

/* The lr multiplier for the update with 0-based index `step`. CONSTANT with warmup > 0 is transformers'
 * constant_with_warmup (with warmup 0 it is get_constant_schedule: always 1). Beyond `total` the formulas are
 * transformers' as well: linear stays at 0, cosine rises again (the trainer refuses to step past `total`).
 * The arithmetic is Python's, operation for operation, in double. */
double pose_schedule_factor(pose_schedule s, int64_t warmup, int64_t total, int64_t step);

/* "constant" | "linear" | "cosine" <-> enum; parse fails with POSE_EINVAL naming the accepted values. */
pose_status pose_schedule_parse(const char *name, pose_schedule *out);
const char *pose_schedule_name(pose_schedule s);

#endif
