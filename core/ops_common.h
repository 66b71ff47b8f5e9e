/* Shared by the CPU kernels. */
#ifndef POSE_OPS_COMMON_H
#define POSE_OPS_COMMON_H

/* Elementwise loops over fewer elements than this run on one thread: opening a parallel region (and its barrier)
 * costs more than it saves there, and much more when the cores are shared with other processes. */
#define POSE_PAR_MIN (1 << 15)

#endif
