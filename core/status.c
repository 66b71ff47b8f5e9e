#include "status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* One message per thread: OpenMP workers and the Lua thread never overwrite each other's errors. */
static _Thread_local char msg_buf[2048];

pose_status pose_error(pose_status st, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg_buf, sizeof msg_buf, fmt, ap);
  va_end(ap);
  return st;
}

pose_status pose_error_prefix(pose_status st, const char *fmt, ...) {
  char prefix[1024], old[sizeof msg_buf];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(prefix, sizeof prefix, fmt, ap);
  va_end(ap);
  memcpy(old, msg_buf, sizeof old);
  size_t pl = strlen(prefix);
  if (pl >= sizeof msg_buf) pl = sizeof msg_buf - 1;
  memcpy(msg_buf, prefix, pl);
  size_t ol = strlen(old);
  if (ol > sizeof msg_buf - 1 - pl) ol = sizeof msg_buf - 1 - pl;
  memcpy(msg_buf + pl, old, ol);
  msg_buf[pl + ol] = 0;
  return st;
}

const char *pose_error_message(void) { return msg_buf[0] ? msg_buf : "unknown error"; }

void pose_error_clear(void) { msg_buf[0] = 0; }

const char *pose_status_name(pose_status st) {
  switch (st) {
    case POSE_OK: return "ok";
    case POSE_EINVAL: return "invalid argument";
    case POSE_ENOMEM: return "out of memory";
    case POSE_EIO: return "I/O error";
    case POSE_EFORMAT: return "malformed input";
    case POSE_EUNSUPPORTED: return "unsupported";
    case POSE_ENUMERIC: return "numeric error";
    case POSE_EDEVICE: return "device error";
  }
  return "unknown status";
}
