/* The trainer against torch.optim.AdamW + transformers' schedules + clip_grad_norm_ (tests/fixtures/gen_adamw.py,
 * run on a machine with torch). Skips (77) while tests/fixtures/adamw_torch.json is absent. The same gradients are
 * fed through pose_trainer_step; the parameters must agree with torch's to a few ulps after every step (the output
 * says how many agree bit for bit). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "testutil.h"
#include "trainer.h"

#define FIXTURE "tests/fixtures/adamw_torch.json"
#define MAXP 8

typedef struct {
  size_t np;
  pose_param p[MAXP];
  const cJSON *grads; /* [step][param][elem] */
  int step;
} fixed;

static size_t fx_num(void *c) { return ((fixed *)c)->np; }
static pose_param *fx_param(void *c, size_t i) { return &((fixed *)c)->p[i]; }
static void fx_zero(void *c) {
  fixed *f = c;
  for (size_t i = 0; i < f->np; i++) memset(f->p[i].g, 0, (size_t)f->p[i].numel * sizeof(float));
}
static pose_status fx_backward(void *c, const int64_t *ids, const int64_t *pos, const int64_t *targets, int64_t B,
                               int64_t T, double scale, double *loss, int64_t *count) {
  fixed *f = c;
  const cJSON *gs = cJSON_GetArrayItem(f->grads, f->step++);
  for (size_t i = 0; i < f->np; i++) {
    const cJSON *gi = cJSON_GetArrayItem(gs, (int)i);
    int64_t j = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, gi) f->p[i].g[j++] += (float)(scale * (float)x->valuedouble);
  }
  *loss = 0;
  *count = B * (T - 1);
  return POSE_OK;
}

static void read_floats(const cJSON *arr, float *dst) {
  int64_t j = 0;
  const cJSON *x;
  cJSON_ArrayForEach(x, arr) dst[j++] = (float)x->valuedouble;
}

static double ulps(float a, float b) {
  if (a == b) return 0;
  double u = ldexp(1.0, ilogb(fmax(fabs(a), fabs(b))) - 23);
  return fabs((double)a - b) / u;
}

static double num(const cJSON *o, const char *k) { return cJSON_GetObjectItem(o, k)->valuedouble; }

static void run_one(const cJSON *doc, const cJSON *run) {
  const cJSON *params = cJSON_GetObjectItem(doc, "params");
  fixed f = {0};
  f.grads = cJSON_GetObjectItem(doc, "grads");
  const cJSON *pj;
  cJSON_ArrayForEach(pj, params) {
    pose_param *p = &f.p[f.np++];
    const cJSON *shape = cJSON_GetObjectItem(pj, "shape");
    p->name = cJSON_GetObjectItem(pj, "name")->valuestring;
    p->ndim = cJSON_GetArraySize(shape);
    p->numel = 1;
    for (int d = 0; d < p->ndim; d++) p->numel *= (p->shape[d] = (int64_t)cJSON_GetArrayItem(shape, d)->valuedouble);
    p->decay = (int)num(pj, "decay");
    p->w = malloc((size_t)p->numel * sizeof(float));
    p->g = calloc((size_t)p->numel, sizeof(float));
    read_floats(cJSON_GetObjectItem(pj, "init"), p->w);
  }
  pose_trainer_opts o;
  pose_trainer_defaults(&o);
  o.lr = num(run, "lr");
  o.beta1 = num(run, "beta1");
  o.beta2 = num(run, "beta2");
  o.eps = num(run, "eps");
  o.weight_decay = num(run, "weight_decay");
  o.clip = num(run, "clip");
  o.warmup = (int64_t)num(run, "warmup");
  o.steps = (int64_t)num(run, "steps");
  CHECK_OK(pose_schedule_parse(cJSON_GetObjectItem(run, "schedule")->valuestring, &o.schedule));
  pose_trainable tb = {&f, fx_num, fx_param, fx_zero, fx_backward, POSE_DEVICE_CPU};
  pose_trainer *tr;
  CHECK_OK(pose_trainer_new_trainable(&tb, &o, &tr));
  const char *name = cJSON_GetObjectItem(run, "name")->valuestring;
  const cJSON *lrs = cJSON_GetObjectItem(run, "lr_used"), *norms = cJSON_GetObjectItem(run, "grad_norm");
  const cJSON *traj = cJSON_GetObjectItem(run, "params");
  int steps = cJSON_GetArraySize(traj);
  double worst = 0, worst_norm = 0;
  int64_t exact = 0, total = 0, lr_exact = 0;
  float *want = NULL;
  int64_t ids[2] = {1, 2};
  for (int s = 0; s < steps; s++) {
    double lr, norm;
    CHECK_OK(pose_trainer_step(tr, ids, NULL, NULL, 1, 2, NULL, &lr, &norm));
    double tlr = cJSON_GetArrayItem(lrs, s)->valuedouble;
    lr_exact += lr == tlr;
    CHECK_NEAR(lr, tlr, 1e-15 * fabs(tlr));
    worst_norm = fmax(worst_norm, ulps((float)norm, (float)cJSON_GetArrayItem(norms, s)->valuedouble));
    const cJSON *ps = cJSON_GetArrayItem(traj, s);
    for (size_t i = 0; i < f.np; i++) {
      want = realloc(want, (size_t)f.p[i].numel * sizeof(float));
      read_floats(cJSON_GetArrayItem(ps, (int)i), want);
      for (int64_t j = 0; j < f.p[i].numel; j++) {
        double u = ulps(f.p[i].w[j], want[j]);
        if (u > worst) worst = u;
        exact += u == 0;
        total++;
      }
    }
  }
  /* final moments */
  double worst_m = 0;
  const char *mk[2] = {"exp_avg", "exp_avg_sq"};
  for (int k = 0; k < 2; k++)
    for (size_t i = 0; i < f.np; i++) {
      want = realloc(want, (size_t)f.p[i].numel * sizeof(float));
      read_floats(cJSON_GetArrayItem(cJSON_GetObjectItem(run, mk[k]), (int)i), want);
      const float *mine = k ? pose_trainer_exp_avg_sq(tr, i) : pose_trainer_exp_avg(tr, i);
      for (int64_t j = 0; j < f.p[i].numel; j++) worst_m = fmax(worst_m, ulps(mine[j], want[j]));
    }
  printf("  %-20s params %lld/%lld bit-exact, worst %.1f ulp; moments worst %.1f ulp; grad norm worst %.1f ulp; "
         "lr %lld/%d exact\n", name, (long long)exact, (long long)total, worst, worst_m, worst_norm, (long long)lr_exact, steps);
  CHECK(worst <= 4);
  CHECK(worst_norm <= 2);
  free(want);
  pose_trainer_free(tr);
  for (size_t i = 0; i < f.np; i++) {
    free(f.p[i].w);
    free(f.p[i].g);
  }
}

static void schedules(const cJSON *doc) {
  const cJSON *s;
  cJSON_ArrayForEach(s, cJSON_GetObjectItem(doc, "schedules")) {
    pose_schedule kind;
    CHECK_OK(pose_schedule_parse(cJSON_GetObjectItem(s, "schedule")->valuestring, &kind));
    int64_t warmup = (int64_t)num(s, "warmup"), steps = (int64_t)num(s, "steps");
    int k = 0, exact = 0, n = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, cJSON_GetObjectItem(s, "factor")) {
      double mine = pose_schedule_factor(kind, warmup, steps, k++);
      exact += mine == x->valuedouble;
      n++;
      CHECK_NEAR(mine, x->valuedouble, 1e-15);
    }
    printf("  schedule %-8s warmup %3lld steps %3lld: %d/%d factors bit-exact\n", pose_schedule_name(kind),
           (long long)warmup, (long long)steps, exact, n);
  }
}

int main(void) {
  FILE *fp = fopen(FIXTURE, "rb");
  if (!fp) {
    printf("SKIP: %s is absent (generate it with tests/fixtures/gen_adamw.py on a machine with torch)\n", FIXTURE);
    return 77;
  }
  fseek(fp, 0, SEEK_END);
  long n = ftell(fp);
  fseek(fp, 0, SEEK_SET);
  char *txt = malloc((size_t)n + 1);
  size_t got = fread(txt, 1, (size_t)n, fp);
  fclose(fp);
  txt[got] = '\0';
  cJSON *doc = cJSON_Parse(txt);
  free(txt);
  CHECK(doc != NULL);
  if (!doc) return test_summary("test_adamw_torch");
  printf("fixture: torch %s, transformers %s, cpu capability %s\n", cJSON_GetObjectItem(doc, "torch_version")->valuestring,
         cJSON_GetObjectItem(doc, "transformers_version")->valuestring,
         cJSON_GetObjectItem(doc, "cpu_capability")->valuestring);
  const cJSON *run;
  cJSON_ArrayForEach(run, cJSON_GetObjectItem(doc, "runs")) run_one(doc, run);
  schedules(doc);
  cJSON_Delete(doc);
  return test_summary("test_adamw_torch");
}
