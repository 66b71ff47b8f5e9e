/* MLP activations, forward and backward: SiLU, GELU (exact erf), GELU tanh approximation ("gelu_new"), ReLU, either
 * applied alone (GPT-J, GPT-NeoX: a = act(u)) or gating (LLaMA's SwiGLU: a = act(g) * u). */
#ifndef POSE_OPS_ACT_H
#define POSE_OPS_ACT_H

#include <stdint.h>

#include "model_config.h"

/* a[i] = act(g[i]) * u[i] when u != NULL (gated), else act(g[i]); n elements. */
void pose_act_fwd(pose_act_kind k, const float *g, const float *u, float *a, int64_t n);
/* Backward: dg[i] = da[i] * (u[i]) * act'(g[i]); du[i] = da[i] * act(g[i]) (gated only). dg/du are overwritten. */
void pose_act_bwd(pose_act_kind k, const float *g, const float *u, const float *da, float *dg, float *du, int64_t n);

#endif
