/* The trainer's state, shared by trainer.c (stepping) and trainer_state.c (save/load); not a public header. */
#ifndef POSE_TRAINER_IMPL_H
#define POSE_TRAINER_IMPL_H

#include "trainer.h"

struct pose_trainer {
  pose_trainable tb;
  pose_trainer_opts o;
  int64_t step;     /* updates done */
  size_t np;
  pose_param **ps;  /* the trainable's parameters, in its order */
  float **m, **v;   /* exp_avg, exp_avg_sq per parameter (CPU parameters) */
  struct pose_gpu_optim *gpu; /* the moments and the update on the device (GPU parameters) */
  pose_model *model;          /* the model when created by pose_trainer_new (NULL for other trainables) */
};

#endif
