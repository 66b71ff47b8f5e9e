/* The decoder: one implementation parameterised by family traits (DESIGN.md section 3): LLaMA 1/2/3, Mistral, Qwen2,
 * GPT-J, GPT-NeoX, Baichuan2. Every forward takes explicit position ids [B,T]. The CPU path computes in fp32 and is
 * the numerical reference. Targets follow transformers' `labels`: targets[b,t] = the token expected at t, so the
 * prediction made at t is scored against targets[b,t+1]; -100 is ignored; by default targets = ids. */
#ifndef POSE_MODEL_H
#define POSE_MODEL_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "device.h"
#include "dtype.h"
#include "rope.h"
#include "status.h"

#define POSE_IGNORE_INDEX (-100)

typedef struct pose_model pose_model;

/* A trainable tensor with its gradient, fp32. decay: whether weight decay applies (the transformers Trainer exempts
 * biases and norm weights). On a cuda model w and g are DEVICE pointers (fp32 master weights and gradients) and
 * w_bf16 is the bf16 copy the GPU computes with, which whoever changes w must refresh (the trainer's AdamW writes
 * both in one pass); read and write weights from the host with pose_model_param_get / _set. */
typedef struct {
  const char *name; /* Hugging Face name, e.g. "model.layers.0.self_attn.q_proj.weight" */
  float *w, *g;
  int64_t numel;
  int ndim;
  int64_t shape[4];
  int decay;
  void *w_bf16; /* cuda models: device bf16 compute copy of w; NULL on the cpu */
  int g_bf16;   /* 1: g actually holds bf16 values (cuda models under the bf16 policy with the trainer's fused
                 * update: the decoder layers' transient gradient slots); 0: fp32 */
} pose_param;

/* Loads a checkpoint directory (config.json + safetensors; f32, bf16 or f16 tensors, held as f32). rope_override:
 * pose.rope keys replacing the config's scheme (may be NULL); a max_position_embeddings among them becomes the
 * model's. On a cuda device (a build with the CUDA backend and a GPU) the weights live on the GPU as fp32 masters
 * plus bf16 compute copies and every forward/backward runs there in bf16 with fp32 accumulation (cuda/model_gpu.cu);
 * the GPU decoder covers the LLaMA family (llama, mistral, qwen2) and answers POSE_EUNSUPPORTED for the others. */
pose_status pose_model_load(const char *dir, const cJSON *rope_override, pose_device dev, pose_model **out);
/* A freshly initialised model (normal(0, initializer_range) weights as transformers' _init_weights) from a
 * config.json-shaped object; the same seed gives the same weights. */
pose_status pose_model_init(const cJSON *config, uint64_t seed, pose_device dev, pose_model **out);
void pose_model_free(pose_model *m);
/* Writes config.json (DESIGN.md "Saving") and safetensors in `dtype`. */
pose_status pose_model_save(pose_model *m, const char *dir, pose_dtype dtype);

/* config.json's keys plus the resolved "rope" object (owned by the model). */
const cJSON *pose_model_config(const pose_model *m);
int64_t pose_model_vocab(const pose_model *m);
pose_rope *pose_model_rope(pose_model *m);
/* Replaces the rope scheme (pose.rope keys over the checkpoint's config); saved with the model. */
pose_status pose_model_set_rope(pose_model *m, const cJSON *override);

/* logits: [B,T,V] fp32. */
pose_status pose_model_forward(pose_model *m, const int64_t *ids, const int64_t *pos, int64_t B, int64_t T,
                               float *logits);
/* Per-token NLL [B,T-1] without materialising [B,T,V] logits (ignored targets get 0). targets may be NULL. */
pose_status pose_model_nll(pose_model *m, const int64_t *ids, const int64_t *pos, const int64_t *targets, int64_t B,
                           int64_t T, float *nll);
/* Forward + backward: ADDS d(loss * loss_scale)/dparam into the params' g, where loss is the mean NLL over the
 * scored targets of this call. Returns that mean loss and the number of scored targets. A non-finite loss is
 * POSE_ENUMERIC. */
pose_status pose_model_backward(pose_model *m, const int64_t *ids, const int64_t *pos, const int64_t *targets,
                                int64_t B, int64_t T, double loss_scale, double *loss, int64_t *count);
size_t pose_model_num_params(const pose_model *m); /* number of parameter tensors (tied ones once) */
int64_t pose_model_numel(const pose_model *m);     /* number of trainable scalars (tied ones once) */
pose_param *pose_model_param(pose_model *m, size_t i);
/* The same without allocating gradients (g is NULL until the first backward / pose_model_param / zero_grad). */
const pose_param *pose_model_param_info(const pose_model *m, size_t i);
void pose_model_zero_grad(pose_model *m);

pose_device pose_model_device(const pose_model *m);
/* Host copies of parameter i's weights or gradient (numel floats; a gradient never computed reads as zeros), on any
 * device; _set writes the weights (and, on a cuda model, refreshes the bf16 compute copy). */
pose_status pose_model_param_get(pose_model *m, size_t i, float *dst);
pose_status pose_model_param_set(pose_model *m, size_t i, const float *src);
pose_status pose_model_grad_get(pose_model *m, size_t i, float *dst);

/* Activation memory policy of training (cuda models; the CPU path always keeps every activation, the results are
 * the same): NONE keeps every layer's activations from the forward for the backward; LAYER keeps only each layer's
 * input and recomputes the layer's forward just before its backward (full per-layer checkpointing: about one
 * more forward of compute for a fraction of the memory); OFFLOAD is LAYER with the layer inputs kept in pinned host
 * memory instead of on the device (copied out during the forward and prefetched back one layer ahead during the
 * backward, on a second stream), so that device memory no longer grows with layers x tokens. The three give
 * bit-identical gradients. */
typedef enum { POSE_RECOMPUTE_NONE = 0, POSE_RECOMPUTE_LAYER, POSE_RECOMPUTE_OFFLOAD } pose_recompute;
pose_status pose_model_set_recompute(pose_model *m, pose_recompute r);
pose_recompute pose_model_get_recompute(const pose_model *m);
/* "none" / "layer" / "offload" */
pose_status pose_recompute_parse(const char *s, pose_recompute *out);
/* The name of a policy ("none", "layer", "offload"; "?" for anything else). */
const char *pose_recompute_name(pose_recompute r);

/* Device memory a cuda model would use for one call on B rows of T tokens (train = 1: a training step with its
 * gradients and a trainer's AdamW moments; 0: a forward) under recompute policy r and the model's precision policy,
 * known before anything is allocated, so a caller can tell whether a length fits. Bytes. total = weights + grads +
 * optimizer + activations + temporary (the run's workspace is one allocation; temporary is the largest scratch a
 * kernel takes on top of it). grads: the gradient arena, or the slots of the trainer's fused update when a fused
 * trainer has put the model in that mode. host_pinned: pinned host memory of recompute=offload. chunk_rows: rows per
 * MLP chunk.
 * cpu models: POSE_EUNSUPPORTED. */
typedef struct {
  int64_t chunk_rows;
  size_t weights, grads, optimizer, activations, temporary, total, host_pinned;
} pose_memory_plan;
pose_status pose_model_memory_plan(pose_model *m, int64_t B, int64_t T, int train, pose_recompute r,
                                   pose_memory_plan *out);

/* Training precision policy of a cuda model. FP32_MASTER (default): fp32 master weights, bf16 compute copies, fp32
 * gradients and fp32 AdamW moments (18 bytes per parameter). BF16: the bf16 weights are the weights (the masters are
 * dropped, rounding them to nearest), gradients stay fp32, AdamW moments are bf16 and the update rounds w, m and v
 * stochastically (Philox, reproducible from pose_trainer_opts.sr_seed and the step): 10 bytes per parameter. Set it
 * before creating a trainer (a trainer keeps the policy it was created with and refuses a change). On the cpu only
 * FP32_MASTER exists (BF16 is POSE_EUNSUPPORTED). */
typedef enum { POSE_PRECISION_FP32_MASTER = 0, POSE_PRECISION_BF16 } pose_precision;
pose_status pose_model_set_precision(pose_model *m, pose_precision p);
pose_precision pose_model_get_precision(const pose_model *m);
/* "fp32-master" / "bf16" */
pose_status pose_precision_parse(const char *s, pose_precision *out);
const char *pose_precision_name(pose_precision p);

/* Incremental decoding with a KV cache (generation, passkey). Positions are explicit as everywhere; keys are rotated
 * once, with the rope state in force at their step (as transformers does for dynamic types). A cuda model's cache
 * lives on its device in bf16 (the rotated k|v rows as its decoder produces them) and its steps run there; a cache
 * serves only models of the device it was made for. */
typedef struct pose_kv_cache pose_kv_cache;
pose_status pose_kv_cache_new(const pose_model *m, int64_t B, int64_t capacity, pose_kv_cache **out);
void pose_kv_cache_free(pose_kv_cache *kv);
void pose_kv_cache_reset(pose_kv_cache *kv);
int64_t pose_kv_cache_len(const pose_kv_cache *kv);
/* Appends T tokens per row and writes the logits of each row's last token to logits_last [B,V]. pos NULL:
 * positions continue the cache (len + t). */
pose_status pose_model_decode(pose_model *m, pose_kv_cache *kv, const int64_t *ids, const int64_t *pos, int64_t B,
                              int64_t T, float *logits_last);

#endif
