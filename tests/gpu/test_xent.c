/* GPU: cross-entropy over the vocabulary (online max/sum), forward, fused forward+backward (out of place and in
 * place) and backward from a saved lse, bf16 and fp32 logits, odd vocabularies, vectorised and scalar row paths,
 * ignored targets; against double references. */
#include "gputest.h"

static void xent_case(pose_dtype dt, int64_t V, int64_t ld, pose_dtype ddt, int inplace) {
  const int64_t N = 23;
  const float scale = 1.0f / 17.0f;
  size_t nl = (size_t)(N * ld);
  float *lg = hrandn(nl, 3.0f);
  int64_t *tgt = malloc((size_t)N * sizeof *tgt);
  pose_rng rg;
  pose_rng_init(&rg, 11, (uint64_t)V);
  for (int64_t n = 0; n < N; n++) tgt[n] = n % 5 == 3 ? -100 : (int64_t)pose_rng_below(&rg, (uint64_t)V);
  tgt[0] = V - 1;
  void *dl = gup_as(lg, nl, dt);
  int64_t *dt_ = gup(tgt, (size_t)N * 8);
  float *dnll = galloc((size_t)N * 4), *dlse = galloc((size_t)N * 4);
  double *rn = malloc((size_t)N * sizeof *rn), *rl = malloc((size_t)N * sizeof *rl);
  double *rg_ = malloc((size_t)(N * V) * sizeof *rg_);
  for (int64_t n = 0; n < N; n++) {
    const float *r = lg + n * ld;
    double m = -INFINITY, s = 0;
    for (int64_t c = 0; c < V; c++) m = r[c] > m ? r[c] : m;
    for (int64_t c = 0; c < V; c++) s += exp(r[c] - m);
    double lse = m + log(s);
    int ign = tgt[n] == -100;
    rl[n] = ign ? 0.0 : lse;
    rn[n] = ign ? 0.0 : lse - r[tgt[n]];
    for (int64_t c = 0; c < V; c++) rg_[n * V + c] = ign ? 0.0 : (exp(r[c] - lse) - (c == tgt[n])) * scale;
  }
  const char *path = ((ld * (int64_t)pose_dtype_size(dt)) % 16 == 0) ? "vector" : "scalar";

  /* forward alone */
  CHECK_OK(pose_cuda_xent_fwd(dl, dt, ld, N, V, dt_, dnll, dlse, NULL));
  float *nll = gget_f32(dnll, (size_t)N, POSE_F32), *lse = gget_f32(dlse, (size_t)N, POSE_F32);
  CHECK_REL(nll, rn, (size_t)N, 1e-6, "xent fwd nll %s V=%lld ld=%lld (%s rows)", dtn(dt), (long long)V, (long long)ld,
            path);
  CHECK_REL(lse, rl, (size_t)N, 1e-6, "xent fwd lse %s V=%lld", dtn(dt), (long long)V);

  /* fused forward + backward */
  gpoison(dnll, (size_t)N * 4);
  void *dg = inplace ? dl : galloc((size_t)(N * ld) * pose_dtype_size(ddt));
  CHECK_OK(pose_cuda_xent_fwd_bwd(dl, dt, ld, N, V, dt_, scale, dnll, NULL, dg, ddt, ld, NULL));
  float *nll2 = gget_f32(dnll, (size_t)N, POSE_F32), *g = gget_f32(dg, nl, ddt);
  float *gp = malloc((size_t)(N * V) * 4);
  for (int64_t n = 0; n < N; n++)
    for (int64_t c = 0; c < V; c++) gp[n * V + c] = g[n * ld + c];
  CHECK_REL(nll2, rn, (size_t)N, 1e-6, "xent fwd_bwd nll %s", dtn(dt));
  CHECK_REL(gp, rg_, (size_t)(N * V), tol_for(ddt, 1e-6, 1e-2), "xent fwd_bwd dlogits %s -> %s%s V=%lld", dtn(dt),
            dtn(ddt), inplace ? " in place" : "", (long long)V);

  /* backward from the saved lse (fresh logits when the fused call overwrote them) */
  if (inplace) gput(dl, dt == POSE_F32 ? (void *)lg : (void *)hround_bf16(lg, nl), nl * pose_dtype_size(dt));
  void *dg2 = galloc((size_t)(N * V) * 4);
  CHECK_OK(pose_cuda_xent_bwd(dl, dt, ld, N, V, dt_, dlse, scale, dg2, POSE_F32, V, NULL));
  float *g2 = gget_f32(dg2, (size_t)(N * V), POSE_F32);
  CHECK_REL(g2, rg_, (size_t)(N * V), 1e-6, "xent bwd (saved lse) %s -> f32", dtn(dt));
  free(lg); free(tgt); free(rn); free(rl); free(rg_); free(nll); free(lse); free(nll2); free(g); free(gp); free(g2);
}

static void test_xent(void) {
  for (int t = 0; t < 2; t++) {
    pose_dtype dt = t ? POSE_BF16 : POSE_F32;
    xent_case(dt, 5003, 5003, POSE_F32, 0);         /* odd rows: scalar loads */
    xent_case(dt, 5003, 5008, dt, 1);               /* aligned rows, in place */
    xent_case(dt, 32007, 32008, POSE_BF16, 0);      /* large vocabulary, bf16 gradient */
    xent_case(dt, 128, 128, POSE_F32, 0);
  }
  void *d = galloc(1024);
  CHECK_ERR(pose_cuda_xent_fwd(d, POSE_F32, 4, 2, 8, d, d, NULL, NULL), POSE_EINVAL, "bad sizes");
  CHECK_ERR(pose_cuda_xent_fwd_bwd(d, POSE_F32, 8, 2, 8, d, 1.0f, d, NULL, d, POSE_BF16, 8, NULL), POSE_EINVAL,
            "in-place");
  CHECK_ERR(pose_cuda_xent_bwd(d, POSE_F32, 8, 2, 8, d, NULL, 1.0f, d, POSE_F32, 8, NULL), POSE_EINVAL, "NULL");
}

int main(void) {
  gpu_require("gpu_test_xent");
  test_xent();
  gfree_all();
  return test_summary("gpu_test_xent");
}
