/* 64-bit indexing of the kernels the decoder launches, at shapes whose buffers cross 2^31 elements (the sizes of
 * LLaMA-7B at 256k tokens and beyond: N*I, N*2KV, N*Q, N*V): every kernel is run once over the whole buffer and the
 * rows at the far end (past element 2^31), plus row 0, are checked against a CPU computation in double. A 32-bit
 * index anywhere would write those rows into the wrong place (or not at all: the buffers are poisoned with NaN).
 * About 20 GB of device memory at the peak (one kernel's buffers at a time); each part runs in milliseconds. */
#include <limits.h>

#include "gputest.h"

#define BIG ((int64_t)1 << 31)

static void *big(size_t bytes) { /* poisoned with NaN, freed by the caller with cudaFree */
  void *p = NULL;
  CUDA_OK(cudaMalloc(&p, bytes));
  CUDA_OK(cudaMemset(p, 0xff, bytes));
  return p;
}

static void fill(void *p, pose_dtype dt, int64_t n, uint64_t stream) {
  CHECK_OK(pose_cuda_rand(p, dt, n, 77, stream, -1.0, 1.0, 0, NULL));
}

/* n floats of a device buffer of dtype dt starting at element off */
static float *rows(const void *d, pose_dtype dt, int64_t off, int64_t n) {
  return gget_f32((const char *)d + (size_t)off * pose_dtype_size(dt), (size_t)n, dt);
}

static void test_act(void) {
  const int64_t N = 131073, F = 16384; /* a: N*F = 2^31 + 2^14 elements; gate|up twice that */
  printf("SwiGLU fwd/bwd: N=%lld F=%lld (%lld elements in a, %lld in gate|up)\n", (long long)N, (long long)F,
         (long long)(N * F), (long long)(2 * N * F));
  uint16_t *gu = big((size_t)(N * 2 * F) * 2), *a = big((size_t)(N * F) * 2), *da = big((size_t)(N * F) * 2);
  fill(gu, POSE_BF16, N * 2 * F, 1);
  fill(da, POSE_BF16, N * F, 2);
  CHECK_OK(pose_cuda_act_fwd(POSE_CUDA_SILU, gu, gu + F, 2 * F, POSE_BF16, N, F, a, NULL));
  const int64_t check[2] = {0, N - 1};
  float *in[2], *dain[2];
  for (int k = 0; k < 2; k++) {
    in[k] = rows(gu, POSE_BF16, check[k] * 2 * F, 2 * F);
    dain[k] = rows(da, POSE_BF16, check[k] * F, F);
  }
  for (int k = 0; k < 2; k++) {
    float *out = rows(a, POSE_BF16, check[k] * F, F);
    double *ref = malloc(sizeof(double) * (size_t)F);
    for (int64_t c = 0; c < F; c++) {
      double g = in[k][c], u = in[k][F + c];
      ref[c] = g / (1 + exp(-g)) * u;
    }
    CHECK_REL(out, ref, (size_t)F, 1e-2, "act_fwd row %lld (elements from %lld)", (long long)check[k],
              (long long)(check[k] * F));
    free(out);
    free(ref);
  }
  /* backward in place over gate|up, as the model runs it */
  CHECK_OK(pose_cuda_act_bwd(POSE_CUDA_SILU, gu, gu + F, 2 * F, POSE_BF16, N, F, da, gu, gu + F, 2 * F, NULL));
  for (int k = 0; k < 2; k++) {
    float *out = rows(gu, POSE_BF16, check[k] * 2 * F, 2 * F);
    double *ref = malloc(sizeof(double) * (size_t)(2 * F));
    for (int64_t c = 0; c < F; c++) {
      double g = in[k][c], u = in[k][F + c], s = 1 / (1 + exp(-g)), d = dain[k][c];
      ref[c] = d * u * s * (1 + g * (1 - s));
      ref[F + c] = d * g * s;
    }
    CHECK_REL(out, ref, (size_t)(2 * F), 1e-2, "act_bwd (in place) row %lld", (long long)check[k]);
    free(out);
    free(ref);
    free(in[k]);
    free(dain[k]);
  }
  cudaFree(gu);
  cudaFree(a);
  cudaFree(da);
}

static void test_norm_convert_colsum(void) {
  const int64_t N = 524289, C = 4096; /* 2^31 + 4096 elements */
  printf("RMSNorm fwd/bwd, convert, colsum: N=%lld C=%lld (%lld elements)\n", (long long)N, (long long)C,
         (long long)(N * C));
  uint16_t *x = big((size_t)(N * C) * 2), *y = big((size_t)(N * C) * 2), *dx = big((size_t)(N * C) * 2);
  float *w = big(sizeof(float) * (size_t)C), *rs = big(sizeof(float) * (size_t)N), *dw = big(sizeof(float) * (size_t)C);
  fill(x, POSE_BF16, N * C, 3);
  fill(w, POSE_F32, C, 4);
  CUDA_OK(cudaMemset(dw, 0, sizeof(float) * (size_t)C));
  CHECK_OK(pose_cuda_norm_fwd(1, x, POSE_BF16, w, NULL, POSE_F32, 1e-5f, N, C, y, NULL, rs, NULL));
  float *hw = rows(w, POSE_F32, 0, C);
  const int64_t check[2] = {0, N - 1};
  for (int k = 0; k < 2; k++) {
    float *xr = rows(x, POSE_BF16, check[k] * C, C), *out = rows(y, POSE_BF16, check[k] * C, C);
    double ss = 0, *ref = malloc(sizeof(double) * (size_t)C);
    for (int64_t c = 0; c < C; c++) ss += (double)xr[c] * xr[c];
    double r = 1 / sqrt(ss / C + 1e-5);
    for (int64_t c = 0; c < C; c++) ref[c] = xr[c] * r * hw[c];
    CHECK_REL(out, ref, (size_t)C, 1e-2, "norm_fwd row %lld", (long long)check[k]);
    free(xr);
    free(out);
    free(ref);
  }
  /* backward with dy = y: dx of the checked rows */
  CHECK_OK(pose_cuda_norm_bwd(1, x, POSE_BF16, w, POSE_F32, NULL, rs, y, N, C, dx, 0, dw, NULL, NULL));
  float *hrs = rows(rs, POSE_F32, N - 1, 1);
  for (int k = 0; k < 2; k++) {
    float *xr = rows(x, POSE_BF16, check[k] * C, C), *dy = rows(y, POSE_BF16, check[k] * C, C);
    float *out = rows(dx, POSE_BF16, check[k] * C, C);
    double ss = 0, m = 0, *ref = malloc(sizeof(double) * (size_t)C);
    for (int64_t c = 0; c < C; c++) ss += (double)xr[c] * xr[c];
    double r = 1 / sqrt(ss / C + 1e-5);
    for (int64_t c = 0; c < C; c++) m += (double)dy[c] * hw[c] * xr[c] * r;
    m /= C;
    for (int64_t c = 0; c < C; c++) ref[c] = r * ((double)dy[c] * hw[c] - xr[c] * r * m);
    CHECK_REL(out, ref, (size_t)C, 2e-2, "norm_bwd dx row %lld", (long long)check[k]);
    if (k == 1) {
      printf("  rstd of the last row %.6g, CPU %.6g\n", hrs[0], r);
      CHECK(fabs(hrs[0] - r) <= 1e-5 * r);
    }
    free(xr);
    free(dy);
    free(out);
    free(ref);
  }
  free(hrs);
  free(hw);
  cudaFree(y);
  cudaFree(dx);
  /* bf16 -> f32 over all 2^31 + 4096 elements: the last 4096 */
  float *xf = big(sizeof(float) * (size_t)(N * C));
  CHECK_OK(pose_cuda_convert(xf, POSE_F32, x, POSE_BF16, N * C, NULL));
  {
    float *a = rows(xf, POSE_F32, (N - 1) * C, C), *b = rows(x, POSE_BF16, (N - 1) * C, C);
    CHECK(memcmp(a, b, sizeof(float) * (size_t)C) == 0);
    free(a);
    free(b);
  }
  cudaFree(xf);
  /* column sums of 8 columns over N rows 4096 apart (offsets past 2^31) */
  float *cs = big(sizeof(float) * 8);
  CUDA_OK(cudaMemset(cs, 0, sizeof(float) * 8));
  CHECK_OK(pose_cuda_colsum_add(x, POSE_BF16, N, 8, C, cs, NULL));
  uint16_t *col = malloc(sizeof(uint16_t) * 8 * (size_t)N);
  CUDA_OK(cudaMemcpy2D(col, 16, x, (size_t)C * 2, 16, (size_t)N, cudaMemcpyDeviceToHost));
  double ref[8] = {0};
  for (int64_t n = 0; n < N; n++)
    for (int c = 0; c < 8; c++) ref[c] += pose_bf16_to_f32(col[n * 8 + c]);
  float *out = rows(cs, POSE_F32, 0, 8);
  double sref = 0;
  for (int c = 0; c < 8; c++) sref += fabs(ref[c]);
  double worst = 0;
  for (int c = 0; c < 8; c++) worst = fmax(worst, fabs(out[c] - ref[c]));
  printf("  colsum of 8 columns over %lld rows: worst |diff| %.3e (sum of |ref| %.3e)\n", (long long)N, worst, sref);
  CHECK(worst <= 1e-3 * sqrt((double)N)); /* fp32 accumulation of ~N/8 terms of magnitude <= 1 per partial */
  free(out);
  free(col);
  cudaFree(cs);
  cudaFree(x);
  cudaFree(w);
  cudaFree(rs);
  cudaFree(dw);
}

static void test_rope(void) {
  const int64_t N = 262145, H = 64, D = 128, S = H * D; /* N*S = 2^31 + 8192 */
  printf("RoPE: N=%lld tokens x %lld heads x %lld (%lld elements)\n", (long long)N, (long long)H, (long long)D,
         (long long)(N * S));
  uint16_t *x = big((size_t)(N * S) * 2);
  fill(x, POSE_BF16, N * S, 5);
  int64_t *hpos = malloc(sizeof(int64_t) * (size_t)N);
  for (int64_t n = 0; n < N; n++) hpos[n] = 3 * n + 7;
  float hinv[64];
  for (int j = 0; j < 64; j++) hinv[j] = (float)pow(10000.0, -2.0 * j / 128.0);
  int64_t *pos = gup(hpos, sizeof(int64_t) * (size_t)N);
  float *inv = gup(hinv, sizeof hinv);
  float *before = rows(x, POSE_BF16, (N - 1) * S, S);
  CHECK_OK(pose_cuda_rope_apply(x, POSE_BF16, N, S, H, D, D, pos, inv, 1.0f, 0, 0, NULL));
  float *after = rows(x, POSE_BF16, (N - 1) * S, S);
  double *ref = malloc(sizeof(double) * (size_t)S);
  for (int64_t h = 0; h < H; h++)
    for (int j = 0; j < 64; j++) {
      float phi = hinv[j] * (float)hpos[N - 1];
      double c = cos((double)phi), s = sin((double)phi), a = before[h * D + j], b = before[h * D + j + 64];
      ref[h * D + j] = a * c - b * s;
      ref[h * D + j + 64] = b * c + a * s;
    }
  CHECK_REL(after, ref, (size_t)S, 1e-2, "rope of the last token (position %lld)", (long long)hpos[N - 1]);
  free(before);
  free(after);
  free(ref);
  free(hpos);
  cudaFree(x);
}

static void test_embed(void) {
  const int64_t N = 524289, D = 4096, V = 1000; /* y: 2^31 + 4096 elements */
  printf("embedding fwd/bwd: N=%lld D=%lld (%lld elements)\n", (long long)N, (long long)D, (long long)(N * D));
  uint16_t *E = big((size_t)(V * D) * 2), *y = big((size_t)(N * D) * 2);
  fill(E, POSE_BF16, V * D, 6);
  int64_t *hid = malloc(sizeof(int64_t) * (size_t)N);
  for (int64_t n = 0; n < N; n++) hid[n] = (n * 7919) % (V - 1); /* id V-1 only at the last row */
  hid[N - 1] = V - 1;
  int64_t *ids = gup(hid, sizeof(int64_t) * (size_t)N);
  CHECK_OK(pose_cuda_embed_fwd(E, POSE_BF16, ids, N, D, V, y, NULL));
  float *a = rows(y, POSE_BF16, (N - 1) * D, D), *b = rows(E, POSE_BF16, (V - 1) * D, D);
  CHECK(memcmp(a, b, sizeof(float) * (size_t)D) == 0);
  free(a);
  free(b);
  /* sorted backward: the id of the last row has that row alone, so its gradient row is exactly dy's last row */
  float *dE = big(sizeof(float) * (size_t)(V * D));
  CUDA_OK(cudaMemset(dE, 0, sizeof(float) * (size_t)(V * D)));
  CHECK_OK(pose_cuda_embed_bwd(ids, y, POSE_BF16, N, D, V, -1, dE, 1, NULL));
  a = rows(dE, POSE_F32, (V - 1) * D, D);
  b = rows(y, POSE_BF16, (N - 1) * D, D);
  CHECK(memcmp(a, b, sizeof(float) * (size_t)D) == 0);
  printf("  last row: forward copy and sorted backward exact\n");
  free(a);
  free(b);
  free(hid);
  cudaFree(E);
  cudaFree(y);
  cudaFree(dE);
}

static void test_xent(void) {
  const int64_t N = 65537, V = 32768; /* 2^31 + 32768 logits */
  printf("cross-entropy fwd+bwd in place: N=%lld V=%lld (%lld logits)\n", (long long)N, (long long)V,
         (long long)(N * V));
  uint16_t *lg = big((size_t)(N * V) * 2);
  fill(lg, POSE_BF16, N * V, 7);
  int64_t *ht = malloc(sizeof(int64_t) * (size_t)N);
  for (int64_t n = 0; n < N; n++) ht[n] = (n * 131) % V;
  int64_t *tgt = gup(ht, sizeof(int64_t) * (size_t)N);
  float *nll = big(sizeof(float) * (size_t)N);
  float *row = rows(lg, POSE_BF16, (N - 1) * V, V);
  CHECK_OK(pose_cuda_xent_fwd_bwd(lg, POSE_BF16, V, N, V, tgt, 0.5f, nll, NULL, lg, POSE_BF16, V, NULL));
  double mx = -INFINITY, s = 0;
  for (int64_t c = 0; c < V; c++) mx = fmax(mx, row[c]);
  for (int64_t c = 0; c < V; c++) s += exp(row[c] - mx);
  double lse = mx + log(s);
  float *got = rows(nll, POSE_F32, N - 1, 1), *d = rows(lg, POSE_BF16, (N - 1) * V, V);
  printf("  nll of the last row %.7f, CPU %.7f\n", got[0], lse - row[ht[N - 1]]);
  CHECK(fabs(got[0] - (lse - row[ht[N - 1]])) <= 1e-4);
  double *ref = malloc(sizeof(double) * (size_t)V);
  for (int64_t c = 0; c < V; c++) ref[c] = (exp(row[c] - lse) - (c == ht[N - 1])) * 0.5;
  CHECK_REL(d, ref, (size_t)V, 1e-2, "dlogits of the last row");
  free(ref);
  free(row);
  free(got);
  free(d);
  free(ht);
  cudaFree(lg);
  cudaFree(nll);
}

/* q [T, Hq*D] past 2^31 elements; a window of 64 keys keeps it cheap */
static void test_attention(void) {
  const int64_t T = 262208, Hq = 64, Hkv = 8, D = 128, W = 64, QS = Hq * D, KS = Hkv * D;
  printf("flash attention fwd/bwd: T=%lld Hq=%lld Hkv=%lld D=%lld window %lld (q: %lld elements)\n", (long long)T,
         (long long)Hq, (long long)Hkv, (long long)D, (long long)W, (long long)(T * QS));
  uint16_t *q = big((size_t)(T * QS) * 2), *k = big((size_t)(T * KS) * 2), *v = big((size_t)(T * KS) * 2);
  uint16_t *o = big((size_t)(T * QS) * 2), *dout = big((size_t)(T * QS) * 2), *dq = big((size_t)(T * QS) * 2);
  uint16_t *dk = big((size_t)(T * KS) * 2), *dv = big((size_t)(T * KS) * 2);
  float *lse = big(sizeof(float) * (size_t)(Hq * T));
  fill(q, POSE_BF16, T * QS, 8);
  fill(k, POSE_BF16, T * KS, 9);
  fill(v, POSE_BF16, T * KS, 10);
  fill(dout, POSE_BF16, T * QS, 11);
  pose_cuda_attn_dims d;
  pose_cuda_attn_dims_init(&d, 1, T, T, Hq, Hkv, D, W);
  CHECK_OK(pose_cuda_attn_fwd(&d, q, k, v, o, lse, NULL));
  CHECK_OK(pose_cuda_attn_bwd(&d, q, k, v, o, lse, dout, dq, dk, dv, NULL));
  const int64_t i = T - 1, j0 = i - W + 1;
  float *hq = rows(q, POSE_BF16, i * QS, QS), *hdo = rows(dout, POSE_BF16, i * QS, QS);
  float *hkey = rows(k, POSE_BF16, j0 * KS, W * KS), *hval = rows(v, POSE_BF16, j0 * KS, W * KS);
  float *ho = rows(o, POSE_BF16, i * QS, QS), *hdq = rows(dq, POSE_BF16, i * QS, QS);
  float *hl = malloc(sizeof(float) * (size_t)Hq);
  for (int64_t h = 0; h < Hq; h++) gget(&hl[h], lse + h * T + i, sizeof(float));
  float *hdk = rows(dk, POSE_BF16, i * KS, KS), *hdv = rows(dv, POSE_BF16, i * KS, KS);
  double *ro = calloc((size_t)QS, sizeof(double)), *rdq = calloc((size_t)QS, sizeof(double));
  double *rdk = calloc((size_t)KS, sizeof(double)), *rdv = calloc((size_t)KS, sizeof(double));
  double lse_err = 0, sc = 1 / sqrt((double)D);
  for (int64_t h = 0; h < Hq; h++) {
    const int64_t hk = h / (Hq / Hkv); /* kv head */
    double s[64], p[64], dp[64], mx = -INFINITY, sum = 0, dsum = 0;
    for (int64_t j = 0; j < W; j++) {
      double acc = 0;
      for (int64_t c = 0; c < D; c++) acc += (double)hq[h * D + c] * hkey[j * KS + hk * D + c];
      s[j] = acc * sc;
      mx = fmax(mx, s[j]);
    }
    for (int64_t j = 0; j < W; j++) sum += (p[j] = exp(s[j] - mx));
    lse_err = fmax(lse_err, fabs(hl[h] - (mx + log(sum))));
    for (int64_t j = 0; j < W; j++) p[j] /= sum;
    for (int64_t c = 0; c < D; c++) {
      for (int64_t j = 0; j < W; j++) ro[h * D + c] += p[j] * hval[j * KS + hk * D + c];
      dsum += (double)hdo[h * D + c] * ro[h * D + c];
    }
    for (int64_t j = 0; j < W; j++) {
      double acc = 0;
      for (int64_t c = 0; c < D; c++) acc += (double)hdo[h * D + c] * hval[j * KS + hk * D + c];
      dp[j] = acc;
    }
    for (int64_t c = 0; c < D; c++)
      for (int64_t j = 0; j < W; j++) rdq[h * D + c] += sc * p[j] * (dp[j] - dsum) * hkey[j * KS + hk * D + c];
    /* key i (the last) is seen by query i alone: its dk, dv sum over the group's query heads */
    const double ds = p[W - 1] * (dp[W - 1] - dsum);
    for (int64_t c = 0; c < D; c++) {
      rdk[hk * D + c] += sc * ds * hq[h * D + c];
      rdv[hk * D + c] += p[W - 1] * hdo[h * D + c];
    }
  }
  printf("  lse of the last query, worst |diff| over heads %.3e\n", lse_err);
  CHECK(lse_err <= 1e-4);
  CHECK_REL(ho, ro, (size_t)QS, 2e-2, "O of the last query (offsets past 2^31)");
  CHECK_REL(hdq, rdq, (size_t)QS, 3e-2, "dQ of the last query");
  CHECK_REL(hdk, rdk, (size_t)KS, 3e-2, "dK of the last key");
  CHECK_REL(hdv, rdv, (size_t)KS, 3e-2, "dV of the last key");
  free(hq); free(hdo); free(hkey); free(hval); free(ho); free(hdq); free(hl); free(hdk); free(hdv);
  free(ro); free(rdq); free(rdk); free(rdv);
  cudaFree(q); cudaFree(k); cudaFree(v); cudaFree(o); cudaFree(dout); cudaFree(dq); cudaFree(dk); cudaFree(dv);
  cudaFree(lse);
}

int main(void) {
  gpu_require("test_bigindex");
  size_t fr = 0, tot = 0;
  CUDA_OK(cudaMemGetInfo(&fr, &tot));
  if (fr < ((size_t)24 << 30)) {
    printf("test_bigindex: SKIP (needs 24 GiB of free device memory, %.1f GiB free)\n", fr / 1073741824.0);
    return 77;
  }
  test_act();
  gsync();
  test_norm_convert_colsum();
  gsync();
  test_rope();
  gsync();
  test_embed();
  gsync();
  test_xent();
  gsync();
  test_attention();
  gsync();
  gfree_all();
  return test_summary("test_bigindex");
}
