/* The trainer without a real model: AdamW against a double-precision reference of torch's formula, clipping, the
 * transformers lr schedules, token-weighted gradient accumulation, NaN/Inf detection, bit-exact save/resume and the
 * error paths, on a toy least-squares "model" whose gradient is computed here. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "adamw.h"
#include "grad_clip.h"
#include "rng.h"
#include "schedule.h"
#include "testutil.h"
#include "trainer.h"

/* ---- toy model ----------------------------------------------------------------------------------------------
 * Parameters A [2, D/2] (decay) and b [D] (no decay). The prediction at (row, s) uses x = ids[row, s], p =
 * pos[row, s] and is scored against y = targets[row, s+1] (ids when targets is NULL), like the real model:
 *   r_d = A_d * sin(0.37 x + 0.11 d + 0.05 p) + b_d - cos(0.23 y + 0.7 d),  loss = mean over scored of 0.5 sum r_d^2.
 * Special ids poison the result: 999 -> NaN gradient with a finite loss, 998 -> NaN loss, 997 -> POSE_ENUMERIC. */
#define D 8
typedef struct {
  float A[D], gA[D], b[D], gb[D];
  pose_param p[2];
  int calls;
} toy;

static void toy_init(toy *t, uint64_t seed) {
  memset(t, 0, sizeof *t);
  pose_rng r;
  pose_rng_init(&r, seed, 0);
  for (int d = 0; d < D; d++) {
    t->A[d] = pose_rng_normal(&r);
    t->b[d] = 0.5f * pose_rng_normal(&r);
  }
  t->p[0] = (pose_param){"toy.weight", t->A, t->gA, D, 2, {2, D / 2}, 1, NULL, 0};
  t->p[1] = (pose_param){"toy.bias", t->b, t->gb, D, 1, {D}, 0, NULL, 0};
}

static size_t toy_num(void *c) { (void)c; return 2; }
static size_t toy_num1(void *c) { (void)c; return 1; }
static pose_param *toy_param(void *c, size_t i) { return i < 2 ? &((toy *)c)->p[i] : NULL; }
static void toy_zero(void *c) {
  toy *t = c;
  memset(t->gA, 0, sizeof t->gA);
  memset(t->gb, 0, sizeof t->gb);
}
static pose_status toy_backward(void *c, const int64_t *ids, const int64_t *pos, const int64_t *targets, int64_t B,
                                int64_t T, double scale, double *loss, int64_t *count) {
  toy *t = c;
  t->calls++;
  const int64_t *y = targets ? targets : ids;
  double gA[D] = {0}, gb[D] = {0}, L = 0;
  int64_t n = 0;
  int poison = 0;
  for (int64_t r = 0; r < B; r++)
    for (int64_t s = 0; s + 1 < T; s++) {
      int64_t tgt = y[r * T + s + 1];
      if (tgt == POSE_IGNORE_INDEX) continue;
      int64_t x = ids[r * T + s], p = pos ? pos[r * T + s] : s;
      if (x >= 997) poison = (int)x;
      n++;
      for (int d = 0; d < D; d++) {
        double f = sin(0.37 * x + 0.11 * d + 0.05 * p);
        double res = t->A[d] * f + t->b[d] - cos(0.23 * tgt + 0.7 * d);
        L += 0.5 * res * res;
        gA[d] += res * f;
        gb[d] += res;
      }
    }
  if (poison == 997) return pose_error(POSE_ENUMERIC, "loss is nan");
  *count = n;
  *loss = n ? L / n : 0;
  if (poison == 998) *loss = NAN;
  for (int d = 0; d < D && n; d++) {
    t->gA[d] += (float)(scale * gA[d] / n);
    t->gb[d] += (float)(scale * gb[d] / n);
  }
  if (poison == 999) t->gb[3] = NAN;
  return POSE_OK;
}
static pose_trainable toy_trainable(toy *t) { return (pose_trainable){t, toy_num, toy_param, toy_zero, toy_backward, POSE_DEVICE_CPU}; }

/* rows x T token ids for step `step` (a pure function of it, as a data loader position would be) */
static void make_batch(int64_t *ids, int64_t rows, int64_t T, uint64_t step) {
  pose_rng r;
  pose_rng_init(&r, 1234, step);
  for (int64_t i = 0; i < rows * T; i++) ids[i] = (int64_t)pose_rng_below(&r, 50);
}

static uint32_t bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static double ulp(double x) { return fabs(x) > 1e-30 ? ldexp(1.0, ilogb(x) - 23) : 1e-45; }

/* ---- AdamW kernel -------------------------------------------------------------------------------------------- */

/* One step of torch's formula in double. torch hands each Python scalar to an fp32 kernel, so the scalars it
 * actually uses are the float-rounded ones (f32 = 1: rounded as torch does; 0: exact doubles). */
static void ref_step(double *w, double *m, double *v, double g, double lr, double b1, double b2, double eps, double wd,
                     int64_t step, int f32) {
#define S(x) (f32 ? (double)(float)(x) : (x))
  double bc1 = 1 - pow(b1, (double)step), bc2 = 1 - pow(b2, (double)step);
  if (wd != 0) *w = *w * S(1 - lr * wd);
  *m = *m + S(1 - b1) * (g - *m);
  *v = S(b2) * *v + S(1 - b2) * g * g;
  double denom = sqrt(*v) / S(pow(bc2, 0.5)) + S(eps);
  *w = *w + S(-(lr / bc1)) * *m / denom;
#undef S
}

static void test_adamw_vs_double(double b1, double b2, double wd) {
  enum { N = 37, STEPS = 7 };
  float w[N], g[N], m[N] = {0}, v[N] = {0};
  double W[N], M[N] = {0}, V[N] = {0}; /* an independent double trajectory */
  pose_rng r;
  pose_rng_init(&r, 7, 1);
  for (int i = 0; i < N; i++) W[i] = w[i] = pose_rng_normal(&r);
  const double lr = 1e-2, eps = 1e-8;
  int bad_step = 0, bad_ord = 0;
  for (int64_t s = 1; s <= STEPS; s++) {
    for (int i = 0; i < N; i++) g[i] = pose_rng_normal(&r) * (i == 5 ? 1e-6f : 1.0f); /* one tiny gradient: eps matters */
    /* per-step reference from the same fp32 state */
    double w1[N], m1[N], v1[N];
    for (int i = 0; i < N; i++) {
      w1[i] = w[i]; m1[i] = m[i]; v1[i] = v[i];
      ref_step(&w1[i], &m1[i], &v1[i], g[i], lr, b1, b2, eps, wd, s, 1);
    }
    /* the documented fp32 operation order, written out here */
    pose_adamw_coefs c;
    pose_adamw_coefs_init(&c, lr, b1, b2, eps, wd, s);
    float wo[N], mo[N], vo[N];
    for (int i = 0; i < N; i++) {
      float cw = (float)(1 - b1);
      float wi = wd != 0 ? w[i] * (float)(1 - lr * wd) : w[i];
      float mi = fabsf(cw) < 0.5f ? fmaf(cw, g[i] - m[i], m[i]) : fmaf(cw - 1.0f, g[i] - m[i], g[i]);
      float t = (float)(1 - b2) * g[i];
      t = t * g[i];
      float vi = v[i] * (float)b2;
      vi = vi + t;
      float d = sqrtf(vi) / (float)pow(1 - pow(b2, (double)s), 0.5);
      d = d + (float)eps;
      float u = (float)(-(lr / (1 - pow(b1, (double)s)))) * mi;
      u = u / d;
      wo[i] = wi + u; mo[i] = mi; vo[i] = vi;
    }
    pose_adamw_update(w, g, m, v, N, &c);
    for (int i = 0; i < N; i++) {
      if (bits(w[i]) != bits(wo[i]) || bits(m[i]) != bits(mo[i]) || bits(v[i]) != bits(vo[i])) bad_ord++;
      /* each fp32 operation rounds once: m inherits half an ulp of (g - m) times (1 - beta1), w inherits the
       * update's relative error (a few roundings plus m's) */
      double step_mag = fabs((lr / (1 - pow(b1, (double)s))) * m1[i] / (sqrt(v1[i]) / sqrt(1 - pow(b2, (double)s)) + eps));
      double tol_m = 2 * ulp(m1[i]) + fabs(1 - b1) * ulp(g[i] - m1[i]);
      double tol_v = 3 * ulp(v1[i]);
      double tol_w = 2 * ulp(w1[i]) + step_mag * (6 * ldexp(1, -24) + tol_m / fabs(m1[i]) + 0.5 * tol_v / v1[i]);
      if (fabs(m[i] - m1[i]) > tol_m || fabs(v[i] - v1[i]) > tol_v || fabs(w[i] - w1[i]) > tol_w) {
        if (bad_step < 5)
          fprintf(stderr, "adamw step %lld elem %d: w %.9g ref %.9g, m %.9g ref %.9g, v %.9g ref %.9g\n", (long long)s, i,
                  w[i], w1[i], m[i], m1[i], v[i], v1[i]);
        bad_step++;
      }
      ref_step(&W[i], &M[i], &V[i], g[i], lr, b1, b2, eps, wd, s, 0);
    }
  }
  CHECK(bad_step == 0);
  CHECK(bad_ord == 0);
  int bad_traj = 0;
  for (int i = 0; i < N; i++)
    if (fabs(w[i] - W[i]) > 1e-5 * (fabs(W[i]) + 1e-2)) bad_traj++;
  CHECK(bad_traj == 0);
}

static void test_adamw_details(void) {
  /* weight decay 0: the decay multiply is skipped (torch's `if weight_decay != 0`) */
  pose_adamw_coefs c;
  pose_adamw_coefs_init(&c, 1e-3, 0.9, 0.999, 1e-8, 0.0, 1);
  CHECK(c.apply_decay == 0);
  pose_adamw_coefs_init(&c, 1e-3, 0.9, 0.999, 1e-8, 0.1, 1);
  CHECK(c.apply_decay == 1 && c.decay == (float)(1 - 1e-4));
  /* first step of Adam: m = 0.1 g, v = 0.001 g^2, the corrected update is lr * sign(g) (up to eps) */
  float w[2] = {1.0f, -2.0f}, g[2] = {0.5f, -3.0f}, m[2] = {0}, v[2] = {0};
  pose_adamw_coefs_init(&c, 0.01, 0.9, 0.999, 1e-8, 0.0, 1);
  pose_adamw_update(w, g, m, v, 2, &c);
  CHECK_NEAR(w[0], 1.0 - 0.01, 1e-6);
  CHECK_NEAR(w[1], -2.0 + 0.01, 1e-6);
  CHECK(m[0] == fmaf(0.1f, 0.5f, 0.0f));
  /* zero gradient and zero state: the update is exactly 0 (0 / eps) */
  float w0 = 3.0f, g0 = 0, m0 = 0, v0 = 0;
  pose_adamw_update(&w0, &g0, &m0, &v0, 1, &c);
  CHECK(w0 == 3.0f);
  /* large elementwise arrays take the threaded path and give the same bits as the serial range */
  int64_t n = 200000;
  float *a = malloc(n * 4), *b2 = malloc(n * 4), *gg = malloc(n * 4), *ma = calloc(n, 4), *mb = calloc(n, 4),
        *va = calloc(n, 4), *vb = calloc(n, 4);
  pose_rng r;
  pose_rng_init(&r, 3, 3);
  for (int64_t i = 0; i < n; i++) { a[i] = b2[i] = pose_rng_normal(&r); gg[i] = pose_rng_normal(&r); }
  pose_adamw_coefs_init(&c, 1e-3, 0.9, 0.95, 1e-6, 0.1, 3);
  pose_adamw_update(a, gg, ma, va, n, &c);
  pose_adamw_update_range(b2, gg, mb, vb, 0, n, &c);
  CHECK(memcmp(a, b2, n * 4) == 0 && memcmp(ma, mb, n * 4) == 0 && memcmp(va, vb, n * 4) == 0);
  free(a); free(b2); free(gg); free(ma); free(mb); free(va); free(vb);
}

/* ---- clipping -------------------------------------------------------------------------------------------------- */

static void test_clip(void) {
  float w1[2] = {0}, g1[2] = {3, 0}, w2[1] = {0}, g2[1] = {4};
  pose_param p1 = {"a", w1, g1, 2, 1, {2}, 1, NULL, 0}, p2 = {"b", w2, g2, 1, 1, {1}, 0, NULL, 0};
  pose_param *ps[2] = {&p1, &p2};
  float norm = pose_grad_global_norm(ps, 2);
  CHECK(norm == 5.0f);
  float coef = pose_grad_clip_coef(norm, 1.0);
  CHECK(coef == (1.0f / (5.0f + (float)1e-6)) * 1.0f);
  pose_grad_scale(ps, 2, coef);
  CHECK_NEAR(g1[0], 0.6, 1e-6);
  CHECK_NEAR(g2[0], 0.8, 1e-6);
  CHECK_NEAR(pose_grad_global_norm(ps, 2), 1.0, 1e-6);
  CHECK(pose_grad_clip_coef(5.0f, 10.0) == 1.0f); /* norm below the threshold: unchanged */
  CHECK(isnan(pose_grad_clip_coef(NAN, 1.0)));
  CHECK(pose_grad_first_nonfinite(ps, 2) == 2);
  g2[0] = INFINITY;
  CHECK(pose_grad_first_nonfinite(ps, 2) == 1);
  CHECK(isinf(pose_grad_global_norm(ps, 2)));
  /* a long gradient: the blocked double sum is the exact-ish norm */
  int64_t n = 100000;
  float *w = calloc(n, 4), *g = malloc(n * 4);
  for (int64_t i = 0; i < n; i++) g[i] = (i % 2) ? 0.5f : -0.5f;
  pose_param p3 = {"c", w, g, n, 1, {n}, 1, NULL, 0};
  pose_param *ps3[1] = {&p3};
  CHECK(pose_grad_global_norm(ps3, 1) == (float)sqrt(n * 0.25));
  free(w);
  free(g);
}

static void test_trainer_clip(void) {
  /* clipping inside the step: the returned norm is the one before clipping, and the moments see clipped grads */
  toy a, b;
  toy_init(&a, 5);
  toy_init(&b, 5);
  pose_trainable ta = toy_trainable(&a), tb = toy_trainable(&b);
  pose_trainer_opts o;
  pose_trainer_defaults(&o);
  o.lr = 0.01;
  pose_trainer *tra, *trb;
  CHECK_OK(pose_trainer_new_trainable(&ta, &o, &tra));
  o.clip = 0.01;
  CHECK_OK(pose_trainer_new_trainable(&tb, &o, &trb));
  int64_t ids[2 * 6];
  make_batch(ids, 2, 6, 0);
  double la, lb, na, nb;
  CHECK_OK(pose_trainer_step(tra, ids, NULL, NULL, 2, 6, &la, NULL, &na));
  CHECK_OK(pose_trainer_step(trb, ids, NULL, NULL, 2, 6, &lb, NULL, &nb));
  CHECK(la == lb && na == nb && na > 0.01);
  /* exp_avg after one step is 0.1 * grad: compare b's (clipped) to a's (unclipped) times the coefficient */
  float coef = pose_grad_clip_coef((float)na, 0.01);
  CHECK_NEAR(pose_trainer_exp_avg(trb, 0)[1], pose_trainer_exp_avg(tra, 0)[1] * coef, 1e-7);
  pose_trainer_free(tra);
  pose_trainer_free(trb);
}

/* ---- schedules ------------------------------------------------------------------------------------------------- */

static void test_schedules(void) {
  /* linear: warmup 10, then decay to 0 at 100 */
  CHECK(pose_schedule_factor(POSE_SCHED_LINEAR, 10, 100, 0) == 0.0);
  CHECK(pose_schedule_factor(POSE_SCHED_LINEAR, 10, 100, 1) == 0.1);
  CHECK(pose_schedule_factor(POSE_SCHED_LINEAR, 10, 100, 5) == 0.5);
  CHECK(pose_schedule_factor(POSE_SCHED_LINEAR, 10, 100, 10) == 1.0);
  CHECK(pose_schedule_factor(POSE_SCHED_LINEAR, 10, 100, 55) == 0.5);
  CHECK(pose_schedule_factor(POSE_SCHED_LINEAR, 10, 100, 99) == 1.0 / 90.0);
  CHECK(pose_schedule_factor(POSE_SCHED_LINEAR, 10, 100, 100) == 0.0);
  CHECK(pose_schedule_factor(POSE_SCHED_LINEAR, 10, 100, 130) == 0.0);
  for (int s = 10; s <= 100; s++) CHECK(pose_schedule_factor(POSE_SCHED_LINEAR, 10, 100, s) == (100.0 - s) / 90.0);
  /* cosine: warmup 10, half a cosine period over 90 steps */
  CHECK(pose_schedule_factor(POSE_SCHED_COSINE, 10, 100, 3) == 0.3);
  CHECK(pose_schedule_factor(POSE_SCHED_COSINE, 10, 100, 10) == 1.0);
  CHECK_NEAR(pose_schedule_factor(POSE_SCHED_COSINE, 10, 100, 55), 0.5, 1e-15);
  CHECK(pose_schedule_factor(POSE_SCHED_COSINE, 10, 100, 100) == 0.0);
  for (int s = 10; s <= 100; s++)
    CHECK_NEAR(pose_schedule_factor(POSE_SCHED_COSINE, 10, 100, s), 0.5 * (1 + cos(M_PI * (s - 10) / 90.0)), 1e-15);
  CHECK_NEAR(pose_schedule_factor(POSE_SCHED_COSINE, 10, 100, 145), 0.5, 1e-15); /* transformers' curve rises again */
  /* constant: no warmup = 1 always; warmup = constant_with_warmup */
  CHECK(pose_schedule_factor(POSE_SCHED_CONSTANT, 0, 0, 0) == 1.0);
  CHECK(pose_schedule_factor(POSE_SCHED_CONSTANT, 0, 0, 12345) == 1.0);
  CHECK(pose_schedule_factor(POSE_SCHED_CONSTANT, 4, 0, 0) == 0.0);
  CHECK(pose_schedule_factor(POSE_SCHED_CONSTANT, 4, 0, 1) == 0.25);
  CHECK(pose_schedule_factor(POSE_SCHED_CONSTANT, 4, 0, 4) == 1.0);
  /* no warmup: the first update already has the full lr; linear over 4 steps: 1, 3/4, 1/2, 1/4 */
  CHECK(pose_schedule_factor(POSE_SCHED_LINEAR, 0, 4, 0) == 1.0);
  CHECK(pose_schedule_factor(POSE_SCHED_LINEAR, 0, 4, 3) == 0.25);
  pose_schedule s;
  CHECK_OK(pose_schedule_parse("cosine", &s));
  CHECK(s == POSE_SCHED_COSINE && strcmp(pose_schedule_name(s), "cosine") == 0);
  CHECK_ERR(pose_schedule_parse("cosine_with_restarts", &s), POSE_EINVAL, "expected constant, linear or cosine");

  /* the trainer uses factor(k) for its k-th update (0-based): warmup 2 -> lrs 0, lr/2, lr, then linear decay */
  toy t;
  toy_init(&t, 1);
  pose_trainable tb = toy_trainable(&t);
  pose_trainer_opts o;
  pose_trainer_defaults(&o);
  o.lr = 0.1;
  o.warmup = 2;
  o.steps = 6;
  o.schedule = POSE_SCHED_LINEAR;
  pose_trainer *tr;
  CHECK_OK(pose_trainer_new_trainable(&tb, &o, &tr));
  float w0[D];
  memcpy(w0, t.A, sizeof w0);
  const double want[6] = {0, 0.05, 0.1, 0.1 * (4.0 / 4.0) * 0.75, 0.1 * 0.5, 0.1 * 0.25};
  int64_t ids[12];
  for (int k = 0; k < 6; k++) {
    CHECK(pose_trainer_lr_at(tr, k) == 0.1 * pose_schedule_factor(POSE_SCHED_LINEAR, 2, 6, k));
    make_batch(ids, 2, 6, k);
    double lr;
    CHECK_OK(pose_trainer_step(tr, ids, NULL, NULL, 2, 6, NULL, &lr, NULL));
    CHECK_NEAR(lr, want[k], 1e-17);
    if (k == 0) CHECK(memcmp(w0, t.A, sizeof w0) == 0); /* lr 0 (no weight decay): nothing moves */
  }
  CHECK(pose_trainer_steps_done(tr) == 6);
  CHECK_ERR(pose_trainer_step(tr, ids, NULL, NULL, 2, 6, NULL, NULL, NULL), POSE_EINVAL, "past the schedule's steps=6");
  pose_trainer_free(tr);
}

/* ---- gradient accumulation --------------------------------------------------------------------------------------- */

static void test_accumulation(void) {
  enum { R = 4, T = 7, STEPS = 3 };
  toy a, b;
  toy_init(&a, 11);
  toy_init(&b, 11);
  pose_trainable ta = toy_trainable(&a), tb = toy_trainable(&b);
  pose_trainer_opts o;
  pose_trainer_defaults(&o);
  o.lr = 0.05;
  o.weight_decay = 0.1;
  pose_trainer *t1, *t2;
  CHECK_OK(pose_trainer_new_trainable(&ta, &o, &t1));
  o.accum = 2;
  CHECK_OK(pose_trainer_new_trainable(&tb, &o, &t2));
  int64_t ids[R * T], tg[R * T], pos[R * T];
  double worst = 0, lworst = 0;
  int differs_from_mean_of_means = 0;
  for (int s = 0; s < STEPS; s++) {
    make_batch(ids, R, T, 100 + s);
    memcpy(tg, ids, sizeof tg);
    for (int i = 0; i < R * T; i++) pos[i] = 3 * (i % T) + s;
    /* the first micro-batch (rows 0-1) scores fewer targets than the second */
    for (int i = 2; i < T; i++) tg[i] = POSE_IGNORE_INDEX;
    tg[T + 4] = POSE_IGNORE_INDEX;
    double l1, l2, n1, n2;
    a.calls = b.calls = 0;
    CHECK_OK(pose_trainer_step(t1, ids, pos, tg, R, T, &l1, NULL, &n1));
    CHECK_OK(pose_trainer_step(t2, ids, pos, tg, R / 2, T, &l2, NULL, &n2));
    CHECK(a.calls == 1 && b.calls == 2);
    lworst = fmax(lworst, fabs(l1 - l2) / l1 * (s == 0 ? 1e6 : 1)); /* step 0: same weights, so ~exact */
    worst = fmax(worst, fabs(n1 - n2) / n1);
    /* what averaging the two micro-batch means would have reported instead */
    toy c = b;
    double m1, m2;
    int64_t c1, c2;
    toy_backward(&c, ids, pos, tg, R / 2, T, 1, &m1, &c1);
    toy_backward(&c, ids + R / 2 * T, pos + R / 2 * T, tg + R / 2 * T, R / 2, T, 1, &m2, &c2);
    (void)m1; (void)m2;
    CHECK(c1 != c2);
  }
  for (int d = 0; d < D; d++) {
    worst = fmax(worst, fabs(a.A[d] - b.A[d]) / (fabs(a.A[d]) + 1e-3));
    worst = fmax(worst, fabs(a.b[d] - b.b[d]) / (fabs(a.b[d]) + 1e-3));
    worst = fmax(worst, fabs(pose_trainer_exp_avg_sq(t1, 0)[d] - pose_trainer_exp_avg_sq(t2, 0)[d]) /
                            pose_trainer_exp_avg_sq(t1, 0)[d]);
  }
  CHECK(worst < 1e-5);
  CHECK(lworst < 1e-6);
  /* negative control: with unequal counts, the mean of the micro-batch means is not the token-weighted loss */
  {
    toy c;
    toy_init(&c, 11);
    make_batch(ids, R, T, 100);
    memcpy(tg, ids, sizeof tg);
    for (int i = 2; i < T; i++) tg[i] = POSE_IGNORE_INDEX;
    tg[T + 4] = POSE_IGNORE_INDEX;
    double m1, m2, all;
    int64_t c1, c2, call;
    toy_backward(&c, ids, NULL, tg, R / 2, T, 1, &m1, &c1);
    toy_backward(&c, ids + R / 2 * T, NULL, tg + R / 2 * T, R / 2, T, 1, &m2, &c2);
    toy_backward(&c, ids, NULL, tg, R, T, 1, &all, &call);
    differs_from_mean_of_means = fabs(0.5 * (m1 + m2) - all) > 1e-3 * all;
    CHECK(fabs((m1 * c1 + m2 * c2) / (c1 + c2) - all) < 1e-12 * all);
  }
  CHECK(differs_from_mean_of_means);
  /* a micro-batch with nothing scored is skipped; the step still equals the one big batch */
  {
    toy e, f;
    toy_init(&e, 12);
    toy_init(&f, 12);
    pose_trainable te = toy_trainable(&e), tf = toy_trainable(&f);
    pose_trainer *u1, *u2;
    o.accum = 1;
    CHECK_OK(pose_trainer_new_trainable(&te, &o, &u1));
    o.accum = 2;
    CHECK_OK(pose_trainer_new_trainable(&tf, &o, &u2));
    make_batch(ids, R, T, 200);
    memcpy(tg, ids, sizeof tg);
    for (int i = 0; i < R / 2 * T; i++) tg[i] = POSE_IGNORE_INDEX;
    double l1, l2;
    f.calls = 0;
    CHECK_OK(pose_trainer_step(u1, ids, NULL, tg, R, T, &l1, NULL, NULL));
    CHECK_OK(pose_trainer_step(u2, ids, NULL, tg, R / 2, T, &l2, NULL, NULL));
    CHECK(f.calls == 1);
    CHECK(l1 == l2);
    CHECK(memcmp(e.A, f.A, sizeof e.A) == 0);
    pose_trainer_free(u1);
    pose_trainer_free(u2);
  }
  pose_trainer_free(t1);
  pose_trainer_free(t2);
}

/* ---- NaN / Inf ------------------------------------------------------------------------------------------------- */

static void test_nonfinite(void) {
  toy t;
  toy_init(&t, 21);
  pose_trainable tb = toy_trainable(&t);
  pose_trainer *tr;
  pose_trainer_opts o;
  pose_trainer_defaults(&o);
  o.lr = 0.01;
  CHECK_OK(pose_trainer_new_trainable(&tb, &o, &tr));
  int64_t ids[2 * 5];
  make_batch(ids, 2, 5, 0);
  CHECK_OK(pose_trainer_step(tr, ids, NULL, NULL, 2, 5, NULL, NULL, NULL));
  float A[D], b[D];
  memcpy(A, t.A, sizeof A);
  memcpy(b, t.b, sizeof b);
  ids[6] = 999; /* NaN gradient in toy.bias, finite loss */
  CHECK_ERR(pose_trainer_step(tr, ids, NULL, NULL, 2, 5, NULL, NULL, NULL), POSE_ENUMERIC, "trainer step 2: gradient norm is nan");
  CHECK(strstr(pose_error_message(), "toy.bias") != NULL);
  ids[6] = 998; /* NaN loss reported as OK by the backward */
  CHECK_ERR(pose_trainer_step(tr, ids, NULL, NULL, 2, 5, NULL, NULL, NULL), POSE_ENUMERIC, "trainer step 2: loss is nan");
  ids[6] = 997; /* the backward's own POSE_ENUMERIC gets the step prefixed */
  CHECK_ERR(pose_trainer_step(tr, ids, NULL, NULL, 2, 5, NULL, NULL, NULL), POSE_ENUMERIC, "trainer step 2: loss is nan");
  /* with accumulation the micro-batch is named too */
  o.accum = 2;
  pose_trainer *tr2;
  CHECK_OK(pose_trainer_new_trainable(&tb, &o, &tr2));
  CHECK_ERR(pose_trainer_step(tr2, ids, NULL, NULL, 1, 5, NULL, NULL, NULL), POSE_ENUMERIC,
            "trainer step 1, micro-batch 2: loss is nan");
  pose_trainer_free(tr2);
  /* nothing moved, the step count did not advance, and a good batch continues as step 2 */
  CHECK(memcmp(A, t.A, sizeof A) == 0 && memcmp(b, t.b, sizeof b) == 0);
  CHECK(pose_trainer_steps_done(tr) == 1);
  make_batch(ids, 2, 5, 1);
  CHECK_OK(pose_trainer_step(tr, ids, NULL, NULL, 2, 5, NULL, NULL, NULL));
  CHECK(pose_trainer_steps_done(tr) == 2);
  pose_trainer_free(tr);
}

/* ---- save / resume ----------------------------------------------------------------------------------------------- */

static char tmpdir[256];

static void run_steps(pose_trainer *tr, int from, int to, double *losses) {
  int64_t ids[4 * 6];
  for (int s = from; s < to; s++) {
    make_batch(ids, 4, 6, (uint64_t)s);
    CHECK_OK(pose_trainer_step(tr, ids, NULL, NULL, 2, 6, &losses[s], NULL, NULL));
  }
}

static void test_resume(void) {
  enum { N = 10, CUT = 4 };
  pose_trainer_opts o;
  pose_trainer_defaults(&o);
  o.lr = 0.05;
  o.beta1 = 0.8;
  o.sr_seed = 18446744073709551557ull; /* above 2^53: must survive the JSON header exactly */
  o.beta2 = 0.95;
  o.eps = 1e-6;
  o.weight_decay = 0.1;
  o.clip = 0.5;
  o.warmup = 2;
  o.steps = N;
  o.schedule = POSE_SCHED_COSINE;
  o.accum = 2;
  /* uninterrupted */
  toy a;
  toy_init(&a, 31);
  pose_trainable ta = toy_trainable(&a);
  pose_trainer *tra;
  CHECK_OK(pose_trainer_new_trainable(&ta, &o, &tra));
  double la[N], lb[N];
  run_steps(tra, 0, N, la);
  CHECK(la[N - 1] < la[1]);
  /* interrupted at CUT, saved, resumed into a fresh model and a trainer with default options */
  toy b;
  toy_init(&b, 31);
  pose_trainable tb = toy_trainable(&b);
  pose_trainer *trb;
  CHECK_OK(pose_trainer_new_trainable(&tb, &o, &trb));
  run_steps(trb, 0, CUT, lb);
  char dir[300];
  snprintf(dir, sizeof dir, "%s/ckpt/step4", tmpdir);
  const char blob[] = "data position 4\0with a NUL";
  CHECK_OK(pose_trainer_save_state(trb, dir, blob, sizeof blob));
  CHECK_OK(pose_trainer_save_state(trb, dir, blob, sizeof blob)); /* overwriting is fine */
  pose_trainer_free(trb);
  toy c;
  toy_init(&c, 99); /* different weights: the state must bring them back */
  pose_trainable tc = toy_trainable(&c);
  pose_trainer *trc;
  CHECK_OK(pose_trainer_new_trainable(&tc, NULL, &trc));
  void *user = NULL;
  size_t ulen = 0;
  CHECK_OK(pose_trainer_load_state(trc, dir, &user, &ulen));
  CHECK(ulen == sizeof blob && user && memcmp(user, blob, sizeof blob) == 0);
  free(user);
  CHECK(pose_trainer_steps_done(trc) == CUT);
  const pose_trainer_opts *r = pose_trainer_get_opts(trc);
  CHECK(r->lr == o.lr && r->beta1 == o.beta1 && r->beta2 == o.beta2 && r->eps == o.eps &&
        r->weight_decay == o.weight_decay && r->clip == o.clip && r->warmup == o.warmup && r->steps == o.steps &&
        r->schedule == o.schedule && r->accum == o.accum && r->sr_seed == o.sr_seed);
  CHECK(memcmp(c.A, b.A, sizeof c.A) == 0 && memcmp(c.b, b.b, sizeof c.b) == 0);
  run_steps(trc, CUT, N, lb);
  int same = 1;
  for (int s = 0; s < N; s++) same &= memcmp(&la[s], &lb[s], sizeof(double)) == 0;
  CHECK(same);
  CHECK(memcmp(a.A, c.A, sizeof a.A) == 0 && memcmp(a.b, c.b, sizeof a.b) == 0);
  for (size_t i = 0; i < 2; i++) {
    CHECK(memcmp(pose_trainer_exp_avg(tra, i), pose_trainer_exp_avg(trc, i), D * 4) == 0);
    CHECK(memcmp(pose_trainer_exp_avg_sq(tra, i), pose_trainer_exp_avg_sq(trc, i), D * 4) == 0);
  }
  /* no user blob: NULL and 0 back; a NULL user pointer ignores it */
  CHECK_OK(pose_trainer_save_state(trc, dir, NULL, 0));
  user = (void *)1;
  CHECK_OK(pose_trainer_load_state(trc, dir, &user, &ulen));
  CHECK(user == NULL && ulen == 0);
  CHECK_OK(pose_trainer_load_state(trc, dir, NULL, NULL));
  /* no temporary file left behind */
  char tmp[400];
  snprintf(tmp, sizeof tmp, "%s/.trainer_state.bin.tmp.%ld", dir, (long)getpid());
  CHECK(access(tmp, F_OK) != 0);
  pose_trainer_free(tra);
  pose_trainer_free(trc);
}

/* ---- errors ------------------------------------------------------------------------------------------------------ */

static void corrupt(const char *path, long off, int whence, const void *bytes, size_t n) {
  FILE *f = fopen(path, "r+b");
  fseek(f, off, whence);
  fwrite(bytes, 1, n, f);
  fclose(f);
}

static void test_errors(void) {
  pose_trainer_opts o;
  pose_trainer *tr = NULL;
  toy t;
  toy_init(&t, 41);
  pose_trainable tb = toy_trainable(&t);
#define BAD_OPT(field, value, needle)              \
  do {                                             \
    pose_trainer_defaults(&o);                     \
    o.field = value;                               \
    CHECK_ERR(pose_trainer_new_trainable(&tb, &o, &tr), POSE_EINVAL, needle); \
    CHECK(tr == NULL);                             \
  } while (0)
  BAD_OPT(lr, -1e-3, "lr must be >= 0");
  BAD_OPT(lr, NAN, "lr must be >= 0");
  BAD_OPT(beta1, 1.0, "beta1 must be in [0, 1)");
  BAD_OPT(beta1, -0.1, "beta1 must be in [0, 1)");
  BAD_OPT(beta2, 1.5, "beta2 must be in [0, 1)");
  BAD_OPT(eps, -1, "eps must be >= 0");
  BAD_OPT(weight_decay, -0.1, "weight_decay must be >= 0");
  BAD_OPT(clip, -1, "clip must be >= 0");
  BAD_OPT(warmup, -1, "warmup must be >= 0");
  BAD_OPT(steps, -5, "steps must be >= 0");
  BAD_OPT(accum, 0, "accum must be >= 1");
  BAD_OPT(schedule, POSE_SCHED_LINEAR, "schedule 'linear' needs the total number of steps");
  pose_trainer_defaults(&o);
  o.schedule = POSE_SCHED_COSINE;
  o.steps = 5;
  o.warmup = 6;
  CHECK_ERR(pose_trainer_new_trainable(&tb, &o, &tr), POSE_EINVAL, "warmup (6) exceeds steps (5)");
  pose_trainable incomplete = tb;
  incomplete.backward = NULL;
  CHECK_ERR(pose_trainer_new_trainable(&incomplete, NULL, &tr), POSE_EINVAL, "incomplete trainable");
  CHECK_ERR(pose_trainer_new(NULL, NULL, &tr), POSE_EINVAL, "model is NULL");

  CHECK_OK(pose_trainer_new_trainable(&tb, NULL, &tr));
  const pose_trainer_opts *d = pose_trainer_get_opts(tr);
  CHECK(d->lr == 5e-5 && d->beta1 == 0.9 && d->beta2 == 0.999 && d->eps == 1e-8 && d->weight_decay == 0 &&
        d->clip == 0 && d->warmup == 0 && d->schedule == POSE_SCHED_CONSTANT && d->accum == 1);
  int64_t ids[2 * 4], tg[2 * 4];
  make_batch(ids, 2, 4, 0);
  CHECK_ERR(pose_trainer_step(tr, NULL, NULL, NULL, 2, 4, NULL, NULL, NULL), POSE_EINVAL, "ids are NULL");
  CHECK_ERR(pose_trainer_step(tr, ids, NULL, NULL, 0, 4, NULL, NULL, NULL), POSE_EINVAL, "need B >= 1");
  CHECK_ERR(pose_trainer_step(tr, ids, NULL, NULL, 2, 1, NULL, NULL, NULL), POSE_EINVAL, "T >= 2");
  for (int i = 0; i < 8; i++) tg[i] = i % 4 == 0 ? 5 : POSE_IGNORE_INDEX; /* only position 0, which is never scored */
  CHECK_ERR(pose_trainer_step(tr, ids, NULL, tg, 2, 4, NULL, NULL, NULL), POSE_EINVAL, "no scored targets");
  CHECK(pose_trainer_steps_done(tr) == 0);
  CHECK(pose_trainer_exp_avg(tr, 2) == NULL);

  /* save/load failures */
  char dir[300], path[400], file[300];
  snprintf(dir, sizeof dir, "%s/errs", tmpdir);
  snprintf(path, sizeof path, "%s/trainer_state.bin", dir);
  CHECK_ERR(pose_trainer_load_state(tr, dir, NULL, NULL), POSE_EIO, "cannot open");
  snprintf(file, sizeof file, "%s/plainfile", tmpdir);
  FILE *f = fopen(file, "w");
  fputs("x", f);
  fclose(f);
  char under[400];
  snprintf(under, sizeof under, "%s/sub", file);
  CHECK_ERR(pose_trainer_save_state(tr, under, NULL, 0), POSE_EIO, "cannot create directory");
  CHECK_ERR(pose_trainer_save_state(tr, dir, NULL, 5), POSE_EINVAL, "user blob is NULL");
  CHECK_OK(pose_trainer_save_state(tr, dir, "u", 1));

  /* another model shape */
  toy big;
  toy_init(&big, 1);
  big.p[1].numel = 4;
  big.p[1].shape[0] = 4;
  pose_trainable tbig = toy_trainable(&big);
  pose_trainer *trbig;
  CHECK_OK(pose_trainer_new_trainable(&tbig, NULL, &trbig));
  CHECK_ERR(pose_trainer_load_state(trbig, dir, NULL, NULL), POSE_EINVAL,
            "parameter 1 is 'toy.bias' [8] in the file but 'toy.bias' [4] in the model");
  pose_trainer_free(trbig);
  /* another parameter count */
  toy one;
  toy_init(&one, 1);
  pose_trainable tone = toy_trainable(&one);
  tone.num_params = toy_num1;
  pose_trainer *trone;
  CHECK_OK(pose_trainer_new_trainable(&tone, NULL, &trone));
  CHECK_ERR(pose_trainer_load_state(trone, dir, NULL, NULL), POSE_EINVAL, "holds 2 parameters but the model has 1");
  pose_trainer_free(trone);
  /* damaged files: checksum, truncation, magic; the trainer is left untouched by each failure */
  float before[D];
  t.A[0] += 1; /* differs from the saved weights, so a partial load would show */
  memcpy(before, t.A, sizeof before);
  f = fopen(path, "rb");
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  fclose(f);
  unsigned char x = 0x5a;
  corrupt(path, size - 20, SEEK_SET, &x, 1);
  CHECK_ERR(pose_trainer_load_state(tr, dir, NULL, NULL), POSE_EFORMAT, "checksum mismatch");
  CHECK(memcmp(before, t.A, sizeof before) == 0);
  CHECK_OK(truncate(path, size - 3) == 0 ? POSE_OK : POSE_EIO);
  CHECK_ERR(pose_trainer_load_state(tr, dir, NULL, NULL), POSE_EFORMAT, "truncated?");
  corrupt(path, 0, SEEK_SET, "JUNKJUNK", 8);
  CHECK_ERR(pose_trainer_load_state(tr, dir, NULL, NULL), POSE_EFORMAT, "not a pose trainer state file");
  CHECK(memcmp(before, t.A, sizeof before) == 0);
  CHECK(pose_trainer_steps_done(tr) == 0);
  pose_trainer_free(tr);
}

int main(void) {
  snprintf(tmpdir, sizeof tmpdir, "/tmp/pose_test_adamw_%ld", (long)getpid());
  mkdir(tmpdir, 0777);
  test_adamw_vs_double(0.9, 0.999, 0.0);
  test_adamw_vs_double(0.9, 0.999, 0.1);
  test_adamw_vs_double(0.8, 0.95, 0.01);
  test_adamw_vs_double(0.3, 0.5, 0.1); /* 1 - beta1 >= 0.5: the other lerp branch */
  test_adamw_details();
  test_clip();
  test_trainer_clip();
  test_schedules();
  test_accumulation();
  test_nonfinite();
  test_resume();
  test_errors();
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
  return test_summary("test_adamw");
}
