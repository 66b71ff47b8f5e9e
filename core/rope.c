/* RoPE inverse frequencies, attention factor, the dynamic/longrope state machines and the cos/sin tables, computed
 * in the float32 operation order of transformers 5.17 on the CPU (../shared/spec/rope.md §2-§4). Every `(float)`
 * below is one torch op's rounding; changing the order of any of them changes bits. */
#define _GNU_SOURCE /* sincos */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rope_internal.h"

/* A fused multiply-add would skip a rounding torch performs (yarn's blend, llama3's smoothing). */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

/* pow rounded once from double: a correctly rounded powf in all but astronomically rare cases. torch-CPU uses Sleef
 * (<= 1 ulp), so isolated 1-ulp differences against torch are expected (spec §2). */
static float pow_f32(float b, float e) { return (float)pow((double)b, (double)e); }

/* P[j] = fl32(pow(fl32(theta), fl32(fl32(2j) / fl32(denom)))), j < n: `theta ** (arange(0, r, 2).float() / r)`. */
static void base_powers(float theta, int n, int denom, float *P) {
  for (int j = 0; j < n; j++) {
    float e = (float)(2 * j) / (float)denom;
    P[j] = pow_f32(theta, e);
  }
}

/* default / vanilla_ntk / dynamic: inv = 1 / P with theta already final. */
static void inv_plain(float theta, int r, float *inv) {
  int h = r / 2;
  base_powers(theta, h, r, inv);
  for (int j = 0; j < h; j++) inv[j] = 1.0f / inv[j];
}

/* Python's yarn find_correction_dim, in double with the same association. */
static double yarn_correction_dim(double n_rot, int r, double theta, double L) {
  return ((double)r * log(L / (n_rot * 2 * M_PI))) / (2 * log(theta));
}

static double yarn_mscale(double s, double m) { return s <= 1 ? 1.0 : 0.1 * m * log(s) + 1.0; }

/* The ramp's ends: pairs <= low keep their frequency, pairs >= high are interpolated by s. */
static void yarn_range(const pose_rope *r, double *lo, double *hi) {
  int dim = r->dim;
  double low = yarn_correction_dim(r->beta_fast, dim, r->theta, (double)r->orig_max_pos);
  double high = yarn_correction_dim(r->beta_slow, dim, r->theta, (double)r->orig_max_pos);
  if (r->truncate) { low = floor(low); high = ceil(high); }
  if (low < 0) low = 0;
  if (high > dim - 1) high = dim - 1; /* upstream clamps at dim-1, not dim/2-1 */
  if (low == high) high += 0.001;     /* keeps the ramp's division finite */
  *lo = low;
  *hi = high;
}

pose_status pose_rope_yarn_range(const pose_rope *r, double *low, double *high) {
  if (r->type != POSE_ROPE_YARN) return pose_error(POSE_EINVAL, "rope: yarn_range of a %s scheme", pose_rope_type_name(r));
  yarn_range(r, low, high);
  return POSE_OK;
}

static void inv_yarn(const pose_rope *r, float *inv) {
  int dim = r->dim, h = dim / 2;
  float thf = (float)r->theta;
  double low, high;
  yarn_range(r, &low, &high);
  float lowf = (float)low, span = (float)(high - low), sf = (float)r->factor, xf = (float)r->extrapolation_factor;
  for (int i = 0; i < h; i++) {
    float P = pow_f32(thf, (float)(2 * i) / (float)dim);
    float ramp = ((float)i - lowf) / span;
    if (ramp < 0.0f) ramp = 0.0f;
    if (ramp > 1.0f) ramp = 1.0f;
    float ef = 1.0f - ramp;
    if (r->extrapolation_factor != 1.0) ef = ef * xf;
    if (r->revised) {
      /* PoSE: inv0 / ((1 - ef) * s + ef), a blend of wavelengths */
      float inv0 = 1.0f / P;
      float den = (1.0f - ef) * sf + ef;
      inv[i] = inv0 / den;
    } else {
      float extra = 1.0f / P;
      float inter = 1.0f / (sf * P);
      float a = inter * (1.0f - ef);
      float b = extra * ef;
      inv[i] = a + b;
    }
  }
}

static void inv_llama3(const pose_rope *r, float *inv) {
  int h = r->dim / 2;
  inv_plain((float)r->theta, r->dim, inv);
  double lo = (double)r->orig_max_pos;
  double a = r->low_freq_factor, b = r->high_freq_factor;
  /* torch compares a float32 tensor with a Python float in float32 */
  float lw = (float)(lo / a), hw = (float)(lo / b);
  float sf = (float)r->factor, twopi = (float)(2 * M_PI), lof = (float)lo, af = (float)a, ba = (float)(b - a);
  for (int j = 0; j < h; j++) {
    float wl = (1.0f / inv[j]) * twopi; /* scalar / tensor is reciprocal, then multiply */
    float v = wl > lw ? inv[j] / sf : inv[j];
    if (!(wl < hw) && !(wl > lw)) {
      float sm = ((1.0f / wl) * lof - af) / ba;
      float x = ((1.0f - sm) * v) / sf;
      float y = sm * v;
      v = x + y;
    }
    inv[j] = v;
  }
}

static void inv_longrope(const pose_rope *r, const double *ext, float *inv) {
  int h = r->dim / 2;
  base_powers((float)r->theta, h, r->dim, inv);
  for (int j = 0; j < h; j++) inv[j] = 1.0f / ((float)ext[j] * inv[j]);
}

static void inv_proportional(const pose_rope *r, float *inv) {
  int h = r->dim / 2;
  base_powers((float)r->theta, r->pairs, r->dim, inv); /* exponent denominator is H */
  for (int j = 0; j < r->pairs; j++) inv[j] = 1.0f / inv[j];
  for (int j = r->pairs; j < h; j++) inv[j] = 0.0f;
  float sf = (float)r->factor;
  for (int j = 0; j < h; j++) inv[j] = inv[j] / sf;
}

/* Dynamic NTK at init/reset: Python evaluates the bracket in double with seq_len = max_position_embeddings. */
static double dynamic_init_base(const pose_rope *r) {
  double s = r->factor, L0 = (double)r->max_pos, rr = r->dim;
  return r->theta * pow((s * L0 / L0) - (s - 1), rr / (rr - 2));
}

/* Dynamic NTK in forward: L is an int64 tensor, so the bracket, the power and the product are float32 ops. */
static void inv_dynamic_runtime(pose_rope *r, int64_t L, float *inv) {
  float t1 = (float)r->factor * (float)L;
  float t2 = t1 / (float)r->max_pos;
  float t3 = t2 - (float)(r->factor - 1);
  float t4 = pow_f32(t3, (float)((double)r->dim / (double)(r->dim - 2)));
  float base = (float)r->theta * t4;
  inv_plain(base, r->dim, inv);
  r->base_now = base;
}

pose_status pose_rope_init_state(pose_rope *r) {
  int h = r->dim / 2;
  size_t n = (size_t)(h > 0 ? h : 1);
  r->inv = calloc(n, sizeof(float));
  r->inv_orig = calloc(n, sizeof(float));
  if (!r->inv || !r->inv_orig) return pose_error(POSE_ENOMEM, "rope: out of memory for %d frequencies", h);
  r->attention = 1.0;
  r->base_orig = r->theta;
  switch (r->type) {
    case POSE_ROPE_DEFAULT: inv_plain((float)r->theta, r->dim, r->inv_orig); break;
    case POSE_ROPE_LINEAR: {
      inv_plain((float)r->theta, r->dim, r->inv_orig);
      float sf = (float)r->factor;
      for (int j = 0; j < h; j++) r->inv_orig[j] = r->inv_orig[j] / sf;
      break;
    }
    case POSE_ROPE_DYNAMIC:
      r->base_orig = dynamic_init_base(r);
      inv_plain((float)r->base_orig, r->dim, r->inv_orig);
      break;
    case POSE_ROPE_VANILLA_NTK:
      /* PoSE: base * alpha ** (dim / (dim - 2)) in double, then the ordinary pipeline */
      r->base_orig = r->theta * pow(r->factor, (double)r->dim / (double)(r->dim - 2));
      inv_plain((float)r->base_orig, r->dim, r->inv_orig);
      break;
    case POSE_ROPE_YARN:
      inv_yarn(r, r->inv_orig);
      if (r->has_attention_factor) r->attention = r->attention_factor_in;
      else if (r->mscale != 0 && r->mscale_all_dim != 0)
        r->attention = yarn_mscale(r->factor, r->mscale) / yarn_mscale(r->factor, r->mscale_all_dim);
      else r->attention = yarn_mscale(r->factor, 1);
      r->attention *= r->attn_factor;
      break;
    case POSE_ROPE_LLAMA3: inv_llama3(r, r->inv_orig); break;
    case POSE_ROPE_LONGROPE:
      r->inv_long = calloc(n, sizeof(float));
      if (!r->inv_long) return pose_error(POSE_ENOMEM, "rope: out of memory for %d frequencies", h);
      inv_longrope(r, r->short_factor, r->inv_orig);
      inv_longrope(r, r->long_factor, r->inv_long);
      if (r->has_attention_factor) r->attention = r->attention_factor_in;
      else if (r->factor <= 1.0) r->attention = 1.0;
      else r->attention = sqrt(1 + log(r->factor) / log((double)r->orig_max_pos));
      break;
    case POSE_ROPE_PROPORTIONAL: inv_proportional(r, r->inv_orig); break;
  }
  memcpy(r->inv, r->inv_orig, sizeof(float) * (size_t)h);
  r->base_now = r->base_orig;
  r->cached = r->max_pos;
  r->long_active = 0;
  return POSE_OK;
}

void pose_rope_update(pose_rope *r, int64_t max_pos) {
  int64_t L = max_pos + 1;
  size_t bytes = sizeof(float) * (size_t)(r->dim / 2);
  if (r->type == POSE_ROPE_DYNAMIC) {
    int64_t cached = r->cached;
    if (L > cached) { /* growth: frequencies for this L, kept until a longer batch or a reset */
      inv_dynamic_runtime(r, L, r->inv);
      r->cached = L;
    }
    if (L < r->max_pos && cached > r->max_pos) { /* back inside the original window: original frequencies */
      memcpy(r->inv, r->inv_orig, bytes);
      r->base_now = r->base_orig;
      r->cached = r->max_pos;
    }
  } else if (r->type == POSE_ROPE_LONGROPE) {
    int want_long = L > r->orig_max_pos;
    if (want_long != r->long_active) {
      memcpy(r->inv, want_long ? r->inv_long : r->inv_orig, bytes);
      r->long_active = want_long;
    }
  }
}

void pose_rope_update_positions(pose_rope *r, const int64_t *pos, int64_t n) {
  if (n <= 0 || (r->type != POSE_ROPE_DYNAMIC && r->type != POSE_ROPE_LONGROPE)) return;
  int64_t m = pos[0];
  for (int64_t i = 1; i < n; i++) if (pos[i] > m) m = pos[i];
  pose_rope_update(r, m);
}

const float *pose_rope_inv_freq(const pose_rope *r) { return r->inv; }
pose_rope_type pose_rope_kind(const pose_rope *r) { return r->type; }
int pose_rope_dim(const pose_rope *r) { return r->dim; }
double pose_rope_attention_factor(const pose_rope *r) { return r->attention; }
double pose_rope_base(const pose_rope *r) { return r->base_now; }
int64_t pose_rope_cached_len(const pose_rope *r) { return r->type == POSE_ROPE_DYNAMIC ? r->cached : 0; }

void pose_rope_cos_sin(const pose_rope *r, const int64_t *pos, int64_t n, float *cos_out, float *sin_out) {
  const int h = r->dim / 2;
  const float *inv = r->inv;
  const float a = (float)r->attention;
  const int scale = r->attention != 1.0;
  /* cos/sin in double and rounded once: the correctly rounded value of the float32 angle (spec §4, §8). */
#pragma omp parallel for schedule(static) if (n * (int64_t)h >= 16384)
  for (int64_t t = 0; t < n; t++) {
    const float p = (float)pos[t];
    float *c = cos_out + t * h, *s = sin_out + t * h;
    for (int j = 0; j < h; j++) {
      float phi = inv[j] * p; /* one float32 multiply, never a double angle */
      double sd, cd;
      sincos((double)phi, &sd, &cd);
      float cf = (float)cd, sf = (float)sd;
      if (scale) { cf = cf * a; sf = sf * a; }
      c[j] = cf;
      s[j] = sf;
    }
  }
}

pose_rope *pose_rope_clone(const pose_rope *r) {
  if (!r) return NULL;
  pose_rope *c = malloc(sizeof *c);
  if (!c) return NULL;
  *c = *r;
  size_t h = (size_t)(r->dim / 2 > 0 ? r->dim / 2 : 1);
  c->inv = malloc(h * sizeof(float));
  c->inv_orig = malloc(h * sizeof(float));
  c->inv_long = r->inv_long ? malloc(h * sizeof(float)) : NULL;
  c->short_factor = r->short_factor ? malloc(h * sizeof(double)) : NULL;
  c->long_factor = r->long_factor ? malloc(h * sizeof(double)) : NULL;
  if (!c->inv || !c->inv_orig || (r->inv_long && !c->inv_long) || (r->short_factor && !c->short_factor) ||
      (r->long_factor && !c->long_factor)) {
    pose_rope_free(c);
    return NULL;
  }
  memcpy(c->inv, r->inv, h * sizeof(float));
  memcpy(c->inv_orig, r->inv_orig, h * sizeof(float));
  if (r->inv_long) memcpy(c->inv_long, r->inv_long, h * sizeof(float));
  if (r->short_factor) memcpy(c->short_factor, r->short_factor, h * sizeof(double));
  if (r->long_factor) memcpy(c->long_factor, r->long_factor, h * sizeof(double));
  return c;
}

void pose_rope_free(pose_rope *r) {
  if (!r) return;
  free(r->inv);
  free(r->inv_orig);
  free(r->inv_long);
  free(r->short_factor);
  free(r->long_factor);
  free(r);
}
