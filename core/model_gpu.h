/* The decoder and the optimizer on the GPU: the interface between core/ (model.c, model_io.c, model_fwd.c,
 * trainer.c) and the CUDA side (cuda/model_gpu.cu, cuda/optim_gpu.cu). Only compiled into builds with the CUDA
 * backend (POSE_HAVE_CUDA); core code calls it under that macro. Not part of the public API.
 *
 * A cuda model keeps three arenas on its device, laid out alike (parameter i at the same offset in each): fp32
 * master weights (pose_param.w), fp32 gradients (pose_param.g, allocated on first use; or, for the trainer's fused
 * update, two layer-sized slots, see pose_gpu_model_set_grad_slots) and bf16 compute copies (pose_param.w_bf16).
 * Each layer's parameters are contiguous in the arenas. The offsets are not the parameter table's order: the tensors that one GEMM reads together are
 * adjacent (k|v projections, gate|up projections and their biases), so the fused products need no copies. */
#ifndef POSE_MODEL_GPU_H
#define POSE_MODEL_GPU_H

#include <stddef.h>
#include <stdint.h>

#include "model_internal.h"
#include "trainer.h"

typedef struct pose_gpu_model pose_gpu_model;

/* Checks that the family and shapes are supported on the GPU, allocates the weight and bf16 arenas on m->dev and
 * points every pose_param.w / w_bf16 into them (weights zero). */
pose_status pose_gpu_model_new(pose_model *m);
void pose_gpu_model_free(pose_model *m);
/* Gradient arena (zeroed) on first use. */
pose_status pose_gpu_model_ensure_grads(pose_model *m);
pose_status pose_gpu_model_zero_grad(pose_model *m);
/* transformers' _init_weights on the device with the CPU's Philox streams (one per parameter index). */
pose_status pose_gpu_model_init_weights(pose_model *m, uint64_t seed);
/* Host <-> device copies of one parameter (set refreshes its bf16 copy); which: 0 weights, 1 gradient. */
pose_status pose_gpu_param_get(pose_model *m, size_t i, int which, float *dst);
pose_status pose_gpu_param_set(pose_model *m, size_t i, const float *src);
/* Pure-bf16 training policy (on = 1): the bf16 copies become the weights and the fp32 masters are freed (params'
 * w NULL); on = 0 rebuilds fp32 masters from them. Gradients stay fp32. */
pose_status pose_gpu_model_set_bf16(pose_model *m, int on);
int pose_gpu_model_is_bf16(const pose_model *m);
/* Host fp32 <-> device bf16 (n elements; RNE to bf16), synchronous. */
pose_status pose_gpu_bf16_get(int device, const uint16_t *src, int64_t n, float *dst);
pose_status pose_gpu_bf16_set(int device, uint16_t *dst, int64_t n, const float *src);
/* Device KV cache of a cuda model (kv->dev_kv; see model_internal.h), and its release (no-op without one). */
pose_status pose_gpu_kv_alloc(const pose_model *m, pose_kv_cache *kv);
void pose_gpu_kv_free(pose_kv_cache *kv);
/* One decoder call (pose_model_run's contract, KV-cache decoding included), after the caller validated the inputs and advanced
 * the rope state. */
pose_status pose_gpu_model_run(pose_model *m, pose_model_run_args *a);

/* Lazy gradient zeroing (on by default): zero_grad only marks every gradient as zero and the first writer of each
 * overwrites it; off (tests) = zero_grad memsets the gradients. The gradients are the same either way. */
void pose_gpu_model_set_lazy_zero(pose_model *m, int on);
/* Tests: at most `rows` rows per LM-head chunk (0 = by the default 256 MiB of logits), to exercise accumulation over
 * chunks on small models. */
void pose_gpu_model_set_head_rows(pose_model *m, int64_t rows);
/* Gradient slots (on = 1; the trainer's fused update): the fp32 gradient arena is freed and replaced by two
 * layer-sized slots used alternately by the layers (layer l writes slot l % 2) plus one region for the parameters
 * outside the layers (embedding, final norm, LM head); under the bf16 policy the layer slots are bf16 (below).
 * params' g point into them, so layers l and l + 2 share
 * memory: every backward then starts from zero (no accumulation across calls) and gradients cannot be read back
 * (pose_gpu_param_get(.., 1, ..) answers POSE_EUNSUPPORTED). on = 0 goes back to the arena (zeroed). */
pose_status pose_gpu_model_set_grad_slots(pose_model *m, int on);
int pose_gpu_model_grad_slots(const pose_model *m);
/* Under the bf16 policy the layer slots hold bf16 gradients (params' g_bf16 = 1; on by default): the dW GEMMs write
 * bf16 and the norm / bias gradients are converted; the other parameters' region stays fp32. off: fp32 slots (the
 * fused update then gives the unfused step's numbers bit for bit; tests). */
pose_status pose_gpu_model_set_bf16_slots(pose_model *m, int on);
/* Layer of parameter i (0..layers-1), or cfg.layers for the parameters outside the layers. */
int pose_gpu_model_param_group(const pose_model *m, size_t i);
/* Bytes of gradient memory held now (arena or slots). */
size_t pose_gpu_model_grad_bytes(const pose_model *m);

/* The fused update's callbacks during a cuda backward (pose_model_run_args.hook; cuda/optim_gpu.cu implements them).
 * The model calls, on the host, in stream order of its own stream:
 *   slot_wait(l, slot)   before layer l's backward writes its gradients into `slot` (l % 2): the optimizer makes the
 *                        model's stream wait until the update that read that slot (layer l + 2's) is done;
 *   layer_done(l, slot)  after layer l's backward is enqueued: its gradients are complete in stream order and no
 *                        later work of this backward reads layer l's weights, so the layer's AdamW may run now;
 *   rest_done()          after the embedding backward: the parameters outside the layers (embedding, LM head, final
 *                        norm: tied weights get both contributions first), then the model's stream must wait for
 *                        every update before anything else runs on it.
 * loss_sum (device double, may be NULL) receives the sum of the per-row NLL before the first callback, so that the
 * updates can be skipped when the loss is not finite. */
typedef struct pose_gpu_bwd_hook {
  void *ctx;
  double *loss_sum;
  pose_status (*slot_wait)(void *ctx, int64_t layer, int slot);
  pose_status (*layer_done)(void *ctx, int64_t layer, int slot);
  pose_status (*rest_done)(void *ctx);
} pose_gpu_bwd_hook;

/* ---- optimizer state on the device (the trainer's AdamW when the parameters live on a GPU) ----------------------
 * Parameters without fp32 masters (w NULL: the pure-bf16 policy) get bf16 moments and the stochastic-rounding AdamW
 * (Philox key opts->sr_seed, counter (element, step * n + parameter index)); the get/set functions convert. */
typedef struct pose_gpu_optim pose_gpu_optim;
/* group NULL: the update runs after the backward (pose_gpu_optim_update), one launch over every parameter. Otherwise
 * the fused update: group[i] in [0, ngroups) is parameter i's layer (ngroups - 1: the parameters outside the layers,
 * as pose_gpu_model_param_group), and the updates run inside the backward through pose_gpu_optim_fused_begin. */
pose_status pose_gpu_optim_new(int device, pose_param *const *ps, size_t n, const int *group, int ngroups,
                               pose_gpu_optim **out);
void pose_gpu_optim_free(pose_gpu_optim *o);
/* torch's global gradient norm (as pose_grad_global_norm), returned on the host (synchronises). */
pose_status pose_gpu_optim_grad_norm(pose_gpu_optim *o, pose_param *const *ps, float *norm);
/* Index of the first parameter with a non-finite gradient, or n. */
pose_status pose_gpu_optim_first_nonfinite(pose_gpu_optim *o, pose_param *const *ps, size_t *idx);
/* AdamW update number `step` (1-based) of every parameter with learning rate lr; clip > 0 scales the gradients by
 * torch's clip coefficient of the norm computed by the last pose_gpu_optim_grad_norm. Refreshes w_bf16. */
pose_status pose_gpu_optim_update(pose_gpu_optim *o, pose_param *const *ps, const pose_trainer_opts *opts, double lr,
                                  int64_t step);
/* The fused update of step `step` (accum 1, no clipping): returns the callbacks to pass to the model's backward
 * (pose_model_backward_hook). Per layer, on the optimizer's own stream after an event recorded on the model's
 * stream: each gradient's squared norm (stored by parameter index), the layer's sum of them, and one multi-tensor
 * AdamW over the layer that leaves the layer untouched when that sum or the loss is not finite. The model's stream
 * waits for layer l + 2's update before layer l overwrites their shared gradient slot, and for every update at the
 * end of the backward. Then pose_gpu_optim_fused_end (always, also after a failed backward): joins the streams and,
 * when ok, returns the global gradient norm (the same number as pose_gpu_optim_grad_norm over the same gradients)
 * and the index of the first parameter whose gradient is not finite (n when none). */
pose_status pose_gpu_optim_fused_begin(pose_gpu_optim *o, pose_param *const *ps, const pose_trainer_opts *opts,
                                       double lr, int64_t step, const pose_gpu_bwd_hook **hook);
pose_status pose_gpu_optim_fused_end(pose_gpu_optim *o, int ok, float *norm, size_t *bad);
/* Host copies of parameter i's moments (either pointer may be NULL), and the reverse. */
pose_status pose_gpu_optim_get(pose_gpu_optim *o, size_t i, int64_t numel, float *m, float *v);
pose_status pose_gpu_optim_set(pose_gpu_optim *o, size_t i, int64_t numel, const float *m, const float *v);
/* Host <-> device copies of a parameter's fp32 weights for the trainer state (set also refreshes w_bf16). */
pose_status pose_gpu_weights_get(int device, const pose_param *p, float *dst);
pose_status pose_gpu_weights_set(int device, pose_param *p, const float *src);

/* Rows per MLP chunk of the next calls (0: automatic, chunks of at most 1 GiB of MLP buffers); for tests that check
 * chunked against unchunked results on small models. */
pose_status pose_gpu_model_set_chunk_rows(pose_model *m, int64_t rows);
/* recompute="offload": allocates (pins) the host copies of the layer inputs for calls of B x T tokens now instead
 * of in the first such call (tens of GB take seconds to pin; benchmarks keep that out of their timed steps). */
pose_status pose_gpu_model_reserve_offload(pose_model *m, int64_t B, int64_t T);
/* pose_model_memory_plan of a cuda model (arguments checked by the caller). */
pose_status pose_gpu_model_plan(const pose_model *m, int64_t B, int64_t T, int train, pose_recompute r,
                                pose_memory_plan *out);

/* Memory of the device's allocation pool (every model buffer comes from it): bytes in use now and the high-water
 * mark since the last reset (reset = 1 restarts it at the current use). */
pose_status pose_gpu_memory(int device, int reset, size_t *used, size_t *peak);

#endif
