/* AdamW training over a model's parameters, exactly as torch.optim.AdamW (decoupled weight decay, bias correction,
 * eps added after the square root of the corrected second moment), with the transformers Trainer's defaults: constant
 * lr, no warmup, no clipping, weight_decay 0, betas 0.9/0.999, eps 1e-8. */
#ifndef POSE_TRAINER_H
#define POSE_TRAINER_H

#include <stdint.h>

#include "model.h"
#include "status.h"

typedef enum { POSE_SCHED_CONSTANT = 0, POSE_SCHED_LINEAR, POSE_SCHED_COSINE } pose_schedule;

typedef struct {
  double lr, beta1, beta2, eps, weight_decay;
  double clip;       /* global-norm clipping threshold; 0 = off */
  int64_t warmup;    /* linear warmup steps */
  int64_t steps;     /* total steps (for linear/cosine decay) */
  pose_schedule schedule;
  int accum;         /* micro-batches per optimizer step */
} pose_trainer_opts;

void pose_trainer_defaults(pose_trainer_opts *o);

typedef struct pose_trainer pose_trainer;

pose_status pose_trainer_new(pose_model *m, const pose_trainer_opts *o, pose_trainer **out);
void pose_trainer_free(pose_trainer *t);
/* One optimizer step over `accum` micro-batches (ids/pos/targets each [accum*B, T], split along the batch); returns
 * the mean loss before the update (token-weighted over the micro-batches) and the lr used. */
pose_status pose_trainer_step(pose_trainer *t, const int64_t *ids, const int64_t *pos, const int64_t *targets,
                              int64_t B, int64_t T, double *loss, double *lr_used, double *grad_norm);
int64_t pose_trainer_steps_done(const pose_trainer *t);
double pose_trainer_lr_at(const pose_trainer *t, int64_t step);
/* Full training state (weights, moments, step, options, plus an opaque user blob such as RNG and data position)
 * written to / read from dir, so that a resumed run reproduces the uninterrupted loss curve bit for bit. */
pose_status pose_trainer_save_state(const pose_trainer *t, const char *dir, const void *user, size_t user_len);
pose_status pose_trainer_load_state(pose_trainer *t, const char *dir, void **user, size_t *user_len);

#endif
