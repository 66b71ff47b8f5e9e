/* Errors are values: every library function that can fail returns a pose_status and, on failure, leaves a
 * human-readable message in a thread-local buffer. The Lua layer turns (status, message) into a Lua error. */
#ifndef POSE_STATUS_H
#define POSE_STATUS_H

typedef enum {
  POSE_OK = 0,
  POSE_EINVAL,      /* bad argument: wrong shape, unknown option, out-of-range value */
  POSE_ENOMEM,      /* allocation failed */
  POSE_EIO,         /* file system error */
  POSE_EFORMAT,     /* malformed input file: checkpoint, shard, JSON */
  POSE_EUNSUPPORTED,/* valid but not supported here (architecture, dtype, device) */
  POSE_ENUMERIC,    /* NaN/Inf where a finite number was required */
  POSE_EDEVICE      /* device (CUDA) failure */
} pose_status;

/* Sets the message (printf-style) and returns `st`, so that `return pose_error(POSE_EINVAL, "...")` reads well. */
pose_status pose_error(pose_status st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prepends context ("loading x: ") to the current message and returns `st`. */
pose_status pose_error_prefix(pose_status st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *pose_error_message(void);
const char *pose_status_name(pose_status st);
void pose_error_clear(void);

/* Propagate a failure: `POSE_TRY(pose_x(...));` */
#define POSE_TRY(expr)                 \
  do {                                 \
    pose_status pose_try_st_ = (expr); \
    if (pose_try_st_ != POSE_OK)       \
      return pose_try_st_;             \
  } while (0)

#endif
