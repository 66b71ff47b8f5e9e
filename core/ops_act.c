#include "ops_common.h"
#include "ops_act.h"

#include <math.h>

/* value and derivative of one activation at x (fp32 results; the transcendental parts in double so that both stay
 * within an ulp or two of torch's fp32 kernels) */
static inline void act_eval(pose_act_kind k, float x, float *f, float *df) {
  switch (k) {
  case POSE_ACT_SILU: {
    double s = 1.0 / (1.0 + exp(-(double)x));
    *f = (float)(x * s);
    *df = (float)(s * (1.0 + x * (1.0 - s)));
    break;
  }
  case POSE_ACT_GELU_ERF: {
    double xd = x, cdf = 0.5 * (1.0 + erf(xd * 0.70710678118654752440));
    *f = (float)(xd * cdf);
    *df = (float)(cdf + xd * exp(-0.5 * xd * xd) * 0.39894228040143267794);
    break;
  }
  case POSE_ACT_GELU_TANH: {
    /* 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */
    const double k0 = 0.79788456080286535588, k1 = 0.044715;
    double xd = x, u = k0 * (xd + k1 * xd * xd * xd), t = tanh(u);
    *f = (float)(0.5 * xd * (1.0 + t));
    *df = (float)(0.5 * (1.0 + t) + 0.5 * xd * (1.0 - t * t) * k0 * (1.0 + 3.0 * k1 * xd * xd));
    break;
  }
  default: /* ReLU */
    *f = x > 0 ? x : 0.0f;
    *df = x > 0 ? 1.0f : 0.0f;
    break;
  }
}

void pose_act_fwd(pose_act_kind k, const float *g, const float *u, float *a, int64_t n) {
#pragma omp parallel for schedule(static) if (n > POSE_PAR_MIN / 8)
  for (int64_t i = 0; i < n; i++) {
    float f, df;
    act_eval(k, g[i], &f, &df);
    a[i] = u ? f * u[i] : f;
  }
}

void pose_act_bwd(pose_act_kind k, const float *g, const float *u, const float *da, float *dg, float *du, int64_t n) {
#pragma omp parallel for schedule(static) if (n > POSE_PAR_MIN / 8)
  for (int64_t i = 0; i < n; i++) {
    float f, df;
    act_eval(k, g[i], &f, &df);
    if (u) {
      dg[i] = da[i] * u[i] * df;
      du[i] = da[i] * f;
    } else {
      dg[i] = da[i] * df;
    }
  }
}
