/* AdamW training over a model's parameters, exactly as torch.optim.AdamW (decoupled weight decay, bias correction,
 * eps added after the square root of the corrected second moment; the per-element operation order is in adamw.h),
 * with the transformers Trainer's defaults: lr 5e-5, constant lr, no warmup, no clipping, weight_decay 0,
 * betas 0.9/0.999, eps 1e-8, one micro-batch per step.
 *
 * One step (pose_trainer_step), in the transformers Trainer's order:
 *   1. zero the gradients; run the backward of each of the `accum` micro-batches, ADDING into the gradients;
 *   2. gradient accumulation is token-weighted: micro-batch i, with c_i scored targets out of C in the whole step,
 *      gets loss_scale c_i / C, so the accumulated gradient is the gradient of the mean NLL over all C targets, the
 *      same as one batch of accum*B rows (transformers' Trainer does the same since 4.46 through num_items_in_batch
 *      for causal LMs; older versions averaged per-micro-batch means, which differs when the c_i differ). The
 *      reported loss is that token-weighted mean. Micro-batches without scored targets are skipped; a step without
 *      any is an error;
 *   3. total_norm = ||all gradients||_2 (always computed and returned; a NaN/Inf loss or gradient is POSE_ENUMERIC
 *      naming the step, and nothing is updated); when clip > 0 the gradients are scaled as
 *      torch.nn.utils.clip_grad_norm_ does (grad_clip.h);
 *   4. lr = opts.lr * pose_schedule_factor(schedule, warmup, steps, k) for the k-th update (k = 0 first: with
 *      warmup the first update has lr 0, as in transformers);
 *   5. AdamW on every parameter, with weight decay only where pose_param.decay is 1 (the transformers Trainer
 *      exempts biases and norm weights).
 * Weight decay uses the lr of the step (param *= 1 - lr*wd), as torch does. */
#ifndef POSE_TRAINER_H
#define POSE_TRAINER_H

#include <stddef.h>
#include <stdint.h>

#include "dtype.h" /* model.h uses pose_dtype without including it */
#include "model.h"
#include "schedule.h"
#include "status.h"

typedef struct {
  double lr, beta1, beta2, eps, weight_decay;
  double clip;       /* global-norm clipping threshold (max_grad_norm); 0 = off */
  int64_t warmup;    /* linear warmup steps */
  int64_t steps;     /* total steps (needed by linear/cosine decay; 0 = unset) */
  pose_schedule schedule;
  int accum;         /* micro-batches per optimizer step */
  uint64_t sr_seed;  /* pure-bf16 cuda models: Philox key of AdamW's stochastic rounding (default 0) */
  int fused_update;  /* cuda models only (see below); 0 = off (default) */
} pose_trainer_opts;

/* fused_update = 1 (cuda models created through pose_trainer_new; needs accum == 1 and clip == 0): the AdamW of
 * each decoder layer runs inside the backward, as soon as that layer's gradients exist, on a second CUDA stream that
 * overlaps the next layers' backward; the gradients live in two alternating layer-sized slots plus the embedding /
 * final norm / LM head region instead of a full fp32 gradient per parameter (4 bytes per parameter less; the model
 * keeps these slots, and pose_model_grad_get answers POSE_EUNSUPPORTED, until a trainer without fused_update is
 * created on it). With fp32 masters the numbers are those of the unfused step bit for bit: same gradients, same
 * global norm (reported as grad_norm), same update arithmetic. Under the bf16 policy the layer slots hold bf16
 * gradients (the peer's precision; 2 more bytes per parameter of traffic saved), each rounded once from the fp32
 * accumulators, so the trajectory follows the unfused one within the policy's tolerance; grad_norm is the norm of
 * those gradients; the stochastic-rounding stream (sr_seed, step, parameter, element) is the same.
 * Why not with clipping or accumulation: the clip coefficient needs the global norm before any update, and
 * accumulation needs every micro-batch before any update. The cpu trainer refuses it (POSE_EUNSUPPORTED): its
 * update is a small part of a cpu step and there is no second stream to overlap it with.
 * Non-finite values: a non-finite loss skips every update. A non-finite gradient is found per layer (its sum of
 * squares, on the device) only after the layers above it were already updated: the step then answers POSE_ENUMERIC
 * naming the first parameter (in parameter order) whose gradient is not finite, and leaves the model as follows:
 * every layer whose gradients were all finite (and the embedding / final norm / LM head group, if its were) got
 * AdamW update number steps_done + 1 (weights, moments, bf16 copies); every layer with a non-finite gradient is
 * unchanged; the step count is NOT advanced. Such a model is a mix of two steps: reload a saved trainer state. */

void pose_trainer_defaults(pose_trainer_opts *o);
/* POSE_EINVAL naming the first bad field: lr < 0, betas outside [0, 1), eps < 0, weight_decay < 0, clip < 0,
 * warmup < 0, steps < 0, linear/cosine without steps (or with warmup > steps), accum < 1, non-finite values,
 * fused_update with accum > 1 or clip > 0. */
pose_status pose_trainer_opts_check(const pose_trainer_opts *o);

/* What the trainer drives: a list of fp32 parameters with gradients and a backward that ADDS
 * d(mean NLL * loss_scale)/dparam into them, with pose_model_backward's contract (returns the mean loss over the
 * call's scored targets and their count; targets NULL = ids; the prediction at t is scored against
 * targets[b, t+1]). pose_trainer_new wraps a pose_model; other objectives (tests, toy problems) plug in directly.
 * Parameter pointers must stay valid for the trainer's lifetime. */
typedef struct {
  void *ctx;
  size_t (*num_params)(void *ctx);
  pose_param *(*param)(void *ctx, size_t i);
  void (*zero_grad)(void *ctx);
  pose_status (*backward)(void *ctx, const int64_t *ids, const int64_t *pos, const int64_t *targets, int64_t B,
                          int64_t T, double loss_scale, double *loss, int64_t *count);
  /* Where the parameters' w and g live (zero-initialised = the CPU). On a cuda device the moments live there too,
   * the norm, clipping and AdamW run there, and AdamW also refreshes each parameter's w_bf16 copy. */
  pose_device dev;
} pose_trainable;

typedef struct pose_trainer pose_trainer;

pose_status pose_trainer_new(pose_model *m, const pose_trainer_opts *o, pose_trainer **out);
pose_status pose_trainer_new_trainable(const pose_trainable *tb, const pose_trainer_opts *o, pose_trainer **out);
void pose_trainer_free(pose_trainer *t);
/* One optimizer step over `accum` micro-batches of B rows each: ids, pos and targets each hold [accum*B, T]
 * (row-major), split along the batch into consecutive groups of B rows. pos NULL = 0..T-1 on every row; targets
 * NULL = ids. Returns the token-weighted mean loss before the update, the lr used and the gradient norm before
 * clipping (any output pointer may be NULL). On error nothing is updated and the step count is unchanged. */
pose_status pose_trainer_step(pose_trainer *t, const int64_t *ids, const int64_t *pos, const int64_t *targets,
                              int64_t B, int64_t T, double *loss, double *lr_used, double *grad_norm);
int64_t pose_trainer_steps_done(const pose_trainer *t);
/* The lr of the update with 0-based index `step` (pose_trainer_lr_at(t, steps_done) is the next one). */
double pose_trainer_lr_at(const pose_trainer *t, int64_t step);
const pose_trainer_opts *pose_trainer_get_opts(const pose_trainer *t);
/* The AdamW moments of parameter i (numel floats each), e.g. for inspection; NULL when i is out of range or the
 * moments live on a GPU (use pose_trainer_moments). */
const float *pose_trainer_exp_avg(const pose_trainer *t, size_t i);
const float *pose_trainer_exp_avg_sq(const pose_trainer *t, size_t i);
/* Host copies of parameter i's moments on any device (either output may be NULL). */
pose_status pose_trainer_moments(const pose_trainer *t, size_t i, float *exp_avg, float *exp_avg_sq);

/* Full training state (weights, moments, step, options, plus an opaque user blob such as RNG and data position)
 * written to / read from dir, so that a resumed run reproduces the uninterrupted loss curve bit for bit.
 * save creates dir (one level) when missing and writes dir/trainer_state.bin through a temporary file and a
 * rename, so a crash leaves either the old state or the new one. load checks the file (magic, version, sizes,
 * checksum) and that every parameter's name and shape matches the trainer's before changing anything, then
 * restores weights, moments, step count and options (the saved options replace the trainer's, except fused_update,
 * which is how this trainer runs rather than training state: it is not saved and is kept; a fused trainer refuses
 * a state saved with accum > 1 or clip > 0). *user receives a
 * malloc'ed copy of the blob (caller frees; NULL when user_len is 0); user may be NULL to ignore it.
 *
 * trainer_state.bin, all integers and floats little-endian:
 *   8 bytes  magic "POSETRN\0"
 *   u64      header length H
 *   H bytes  JSON header: {"version":1, "step":N, "opts":{"lr":..,"beta1":..,"beta2":..,"eps":..,
 *            "weight_decay":..,"clip":..,"warmup":..,"steps":..,"schedule":"cosine","accum":..},
 *            "params":[{"name":..,"shape":[..],"numel":..,"decay":0|1}, ...], "user_len":U}
 *            (doubles are printed so that they read back exactly)
 *   then for each parameter in order: numel f32 weights, numel f32 exp_avg, numel f32 exp_avg_sq
 *   U bytes  user blob
 *   u64      FNV-1a 64 checksum of every byte before it */
pose_status pose_trainer_save_state(const pose_trainer *t, const char *dir, const void *user, size_t user_len);
pose_status pose_trainer_load_state(pose_trainer *t, const char *dir, void **user, size_t *user_len);

#endif
