/* GPU: AdamW (fp32 master weights with the bf16 copy: bit-exact against torch's operation order computed here on
 * the CPU; pure bf16 with Philox stochastic rounding: bit-exact against core/adamw.c's reference of the same
 * rounding stream, on the 16-byte and the element paths, and unbiased), the multi-tensor AdamW with its guards,
 * deterministic sums, per-group and global gradient norms and the clipping coefficient. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("fp-contract=off") /* the reference must round every operation, like torch */
#endif
#include "adamw.h"
#include "gputest.h"

static float cpu_lerp(float start, float end, float w) {
  return fabsf(w) < 0.5f ? fmaf(w, end - start, start) : fmaf(w - 1.0f, end - start, end);
}

static void cpu_adam(const pose_cuda_adamw_coefs *k, float *w, float g, float *m, float *v) {
  float wi = *w;
  if (k->apply_decay) wi = wi * k->decay;
  float mi = cpu_lerp(*m, g, k->lerp_w);
  float vi = *v * k->beta2;
  float t = k->one_minus_beta2 * g;
  t = t * g;
  vi = vi + t;
  float d = sqrtf(vi);
  d = d / k->bc2_sqrt;
  d = d + k->eps;
  float u = k->neg_step_size * mi;
  u = u / d;
  *w = wi + u;
  *m = mi;
  *v = vi;
}

static pose_adamw_coefs cpu_coefs(const pose_cuda_adamw_coefs *k) {
  pose_adamw_coefs c = {k->decay, k->apply_decay, k->lerp_w, k->beta2, k->one_minus_beta2, k->bc2_sqrt, k->eps,
                        k->neg_step_size};
  return c;
}

static void test_adamw_f32(void) {
  const int64_t n = 100003;
  float *w = hrandn((size_t)n, 0.5f), *g = hrandn((size_t)n, 0.1f), *m = hrandn((size_t)n, 0.01f);
  float *v = hrandu((size_t)n, 1e-6f, 1e-3f);
  for (int variant = 0; variant < 3; variant++) {
    double wd = variant == 1 ? 0.0 : 0.1, lr = variant == 2 ? 0.9 : 1e-3, beta1 = variant == 2 ? 0.3 : 0.9;
    float coef = 0.7f;
    pose_cuda_adamw_coefs k;
    pose_cuda_adamw_coefs_init(&k, lr, beta1, 0.999, 1e-8, wd, 3 + variant);
    float *dw = gup(w, (size_t)n * 4), *dg = gup(g, (size_t)n * 4), *dm = gup(m, (size_t)n * 4);
    float *dv = gup(v, (size_t)n * 4), *dcoef = gup(&coef, 4);
    uint16_t *dwb = galloc((size_t)n * 2);
    CHECK_OK(pose_cuda_adamw(dw, dg, dm, dv, dwb, n, &k, variant == 0 ? dcoef : NULL, NULL));
    float *ow = malloc((size_t)n * 4), *om = malloc((size_t)n * 4), *ov = malloc((size_t)n * 4);
    uint16_t *owb = malloc((size_t)n * 2);
    gget(ow, dw, (size_t)n * 4);
    gget(om, dm, (size_t)n * 4);
    gget(ov, dv, (size_t)n * 4);
    gget(owb, dwb, (size_t)n * 2);
    size_t bad = 0, badb = 0;
    for (int64_t i = 0; i < n; i++) {
      float wi = w[i], mi = m[i], vi = v[i], gi = variant == 0 ? g[i] * coef : g[i];
      cpu_adam(&k, &wi, gi, &mi, &vi);
      bad += memcmp(&wi, &ow[i], 4) != 0 || memcmp(&mi, &om[i], 4) != 0 || memcmp(&vi, &ov[i], 4) != 0;
      badb += owb[i] != pose_f32_to_bf16(wi);
    }
    printf("  adamw f32 (wd %g, lr %g, beta1 %g%s): %zu of %lld elements differ from torch's arithmetic, "
           "%zu bf16 copies\n", wd, lr, beta1, variant == 0 ? ", clip coef" : "", bad, (long long)n, badb);
    CHECK(bad == 0);
    CHECK(badb == 0);
    free(ow); free(om); free(ov); free(owb);
  }
  free(w); free(g); free(m); free(v);
}

static void test_adamw_bf16(void) {
  const int64_t n = 70001;
  const uint64_t seed = 1234, stream = (7ull << 32) | 5;
  for (int gt = 0; gt < 2; gt++) {
    pose_dtype gdt = gt ? POSE_BF16 : POSE_F32;
    float *w = hrandn((size_t)n, 0.5f), *g = hrandn((size_t)n, 0.1f), *m = hrandn((size_t)n, 0.01f);
    float *v = hrandu((size_t)n, 1e-6f, 1e-3f);
    uint16_t *wb = hround_bf16(w, (size_t)n), *mb = hround_bf16(m, (size_t)n), *vb = hround_bf16(v, (size_t)n);
    void *dg = gup_as(g, (size_t)n, gdt);
    uint16_t *dw = gup(wb, (size_t)n * 2), *dm = gup(mb, (size_t)n * 2), *dv = gup(vb, (size_t)n * 2);
    pose_cuda_adamw_coefs k;
    pose_cuda_adamw_coefs_init(&k, 1e-3, 0.9, 0.999, 1e-8, 0.01, 2);
    CHECK_OK(pose_cuda_adamw_bf16(dw, dg, gdt, dm, dv, n, &k, NULL, seed, stream, NULL));
    uint16_t *ow = malloc((size_t)n * 2), *om = malloc((size_t)n * 2), *ov = malloc((size_t)n * 2);
    gget(ow, dw, (size_t)n * 2);
    gget(om, dm, (size_t)n * 2);
    gget(ov, dv, (size_t)n * 2);
    /* the CPU reference (core/adamw.c) of the same rounding stream; g as the device sees it */
    pose_adamw_coefs ck = cpu_coefs(&k);
    pose_adamw_bf16_sr_range(wb, g, mb, vb, 0, n, &ck, seed, stream);
    size_t bad = 0;
    for (int64_t i = 0; i < n; i++) bad += ow[i] != wb[i] || om[i] != mb[i] || ov[i] != vb[i];
    printf("  adamw bf16 + stochastic rounding (grad %s, 16-byte path): %zu of %lld elements differ from the CPU's "
           "Philox rounding\n", dtn(gdt), bad, (long long)n);
    CHECK(bad == 0);
    free(w); free(g); free(m); free(v); free(wb); free(mb); free(vb); free(ow); free(om); free(ov);
  }
  /* unbiased: a step of -1e-4 from 1.0 is lost by round-to-nearest (the bf16 spacing below 1 is 2^-8) but kept
   * on average by stochastic rounding */
  const int64_t nn = 1 << 20;
  uint16_t *w1 = malloc((size_t)nn * 2), *z = calloc((size_t)nn, 2);
  float *g1 = malloc((size_t)nn * 4);
  for (int64_t i = 0; i < nn; i++) { w1[i] = pose_f32_to_bf16(1.0f); g1[i] = 1.0f; }
  uint16_t *dw = gup(w1, (size_t)nn * 2), *dm = gup(z, (size_t)nn * 2), *dv = gup(z, (size_t)nn * 2);
  float *dg = gup(g1, (size_t)nn * 4);
  pose_cuda_adamw_coefs k;
  pose_cuda_adamw_coefs_init(&k, 1e-4, 0.9, 0.999, 1e-8, 0.0, 1);
  CHECK_OK(pose_cuda_adamw_bf16(dw, dg, POSE_F32, dm, dv, nn, &k, NULL, 77, 0, NULL));
  gget(w1, dw, (size_t)nn * 2);
  double mean = 0;
  for (int64_t i = 0; i < nn; i++) mean += pose_bf16_to_f32(w1[i]);
  mean /= nn;
  float exact = 1.0f, m0 = 0, v0 = 0;
  cpu_adam(&k, &exact, 1.0f, &m0, &v0);
  printf("  stochastic rounding: mean of %lld updated weights %.8f, fp32 update %.8f (round-to-nearest: 1.0)\n",
         (long long)nn, mean, (double)exact);
  CHECK(fabs(mean - exact) < 5e-6);
  free(w1); free(z); free(g1);
}

/* The bf16 kernel through element accesses (a pointer off 16-byte alignment) gives the same bits as the reference. */
static void test_adamw_bf16_unaligned(void) {
  const int64_t n = 5003;
  float *w = hrandn((size_t)n + 1, 0.5f), *g = hrandn((size_t)n + 1, 0.1f), *m = hrandn((size_t)n + 1, 0.01f);
  float *v = hrandu((size_t)n + 1, 1e-6f, 1e-3f);
  uint16_t *wb = hround_bf16(w, (size_t)n + 1), *mb = hround_bf16(m, (size_t)n + 1), *vb = hround_bf16(v, (size_t)n + 1);
  uint16_t *dw = gup(wb, (size_t)(n + 1) * 2), *dm = gup(mb, (size_t)(n + 1) * 2), *dv = gup(vb, (size_t)(n + 1) * 2);
  float *dg = gup(g, (size_t)(n + 1) * 4);
  pose_cuda_adamw_coefs k;
  pose_cuda_adamw_coefs_init(&k, 2e-3, 0.9, 0.95, 1e-8, 0.1, 7);
  /* elements 1..n: every pointer 2 (or 4) bytes past a 16-byte boundary */
  CHECK_OK(pose_cuda_adamw_bf16(dw + 1, dg + 1, POSE_F32, dm + 1, dv + 1, n, &k, NULL, 5, 9, NULL));
  uint16_t *ow = malloc((size_t)(n + 1) * 2), *om = malloc((size_t)(n + 1) * 2), *ov = malloc((size_t)(n + 1) * 2);
  gget(ow, dw, (size_t)(n + 1) * 2);
  gget(om, dm, (size_t)(n + 1) * 2);
  gget(ov, dv, (size_t)(n + 1) * 2);
  pose_adamw_coefs ck = cpu_coefs(&k);
  pose_adamw_bf16_sr_range(wb + 1, g + 1, mb + 1, vb + 1, 0, n, &ck, 5, 9);
  size_t bad = 0;
  for (int64_t i = 0; i <= n; i++) bad += ow[i] != wb[i] || om[i] != mb[i] || ov[i] != vb[i];
  printf("  adamw bf16, unaligned (element path): %zu of %lld differ from the CPU reference\n", bad, (long long)n);
  CHECK(bad == 0);
  free(w); free(g); free(m); free(v); free(wb); free(mb); free(vb); free(ow); free(om); free(ov);
}

/* Multi-tensor AdamW: a table of tensors of awkward sizes (empty, 1, 7, a chunk + 1, unaligned), both policies,
 * the per-entry weight decay and stream ids, and the guards that leave tensors untouched. */
static void test_adamw_mt(void) {
  enum { NT = 6 };
  const int64_t sizes[NT] = {0, 1, 7, POSE_CUDA_ADAMW_CHUNK + 1, 100003, 3001};
  const int unaligned[NT] = {0, 0, 0, 0, 0, 1};
  const int decay[NT] = {1, 0, 1, 1, 0, 1};
  for (int pol = 0; pol < 2; pol++) {
    for (int gmode = 0; gmode < 3; gmode++) { /* 0: no guards; 1: guard of entry 4 NaN; 2: guard_all Inf */
      pose_cuda_adamw_entry tab[NT];
      float *hw[NT], *hg[NT], *hm[NT], *hv[NT];
      uint16_t *hwb[NT], *hmb[NT], *hvb[NT];
      void *dws[NT], *dms[NT], *dvs[NT], *dwbs[NT];
      memset(tab, 0, sizeof tab);
      for (int t = 0; t < NT; t++) {
        const int64_t n = sizes[t], off = unaligned[t], tot = n + off + 1;
        hw[t] = hrandn((size_t)tot, 0.5f); hg[t] = hrandn((size_t)tot, 0.1f); hm[t] = hrandn((size_t)tot, 0.01f);
        hv[t] = hrandu((size_t)tot, 1e-6f, 1e-3f);
        hwb[t] = hround_bf16(hw[t], (size_t)tot); hmb[t] = hround_bf16(hm[t], (size_t)tot);
        hvb[t] = hround_bf16(hv[t], (size_t)tot);
        const size_t es = pol ? 2 : 4;
        dws[t] = pol ? gup(hwb[t], (size_t)tot * 2) : gup(hw[t], (size_t)tot * 4);
        dms[t] = pol ? gup(hmb[t], (size_t)tot * 2) : gup(hm[t], (size_t)tot * 4);
        dvs[t] = pol ? gup(hvb[t], (size_t)tot * 2) : gup(hv[t], (size_t)tot * 4);
        dwbs[t] = galloc((size_t)tot * 2);
        tab[t].w = (char *)dws[t] + off * es;
        if (t == 3) { /* a bf16 gradient (the fused update's bf16 slots) */
          uint16_t *gb = hround_bf16(hg[t], (size_t)tot);
          tab[t].g = (uint16_t *)gup(gb, (size_t)tot * 2) + off;
          tab[t].g_bf16 = 1;
          free(gb);
        } else {
          tab[t].g = (float *)gup(hg[t], (size_t)tot * 4) + off;
        }
        tab[t].m = (char *)dms[t] + off * es;
        tab[t].v = (char *)dvs[t] + off * es;
        tab[t].w_bf16 = pol ? NULL : (uint16_t *)dwbs[t] + off;
        tab[t].n = n;
        tab[t].stream_id = 1000 + (uint64_t)t;
        tab[t].decay = decay[t];
        tab[t].guard = t == 4 ? 1 : 0;
      }
      int64_t chunks = pose_cuda_adamw_mt_plan(tab, NT);
      pose_cuda_adamw_entry *dtab = gup(tab, sizeof tab);
      double guards[2] = {1.0, gmode == 1 ? NAN : 2.0}, all = gmode == 2 ? INFINITY : 3.0;
      double *dguard = gup(guards, sizeof guards), *dall = gup(&all, sizeof all);
      pose_cuda_adamw_coefs k0, k1;
      pose_cuda_adamw_coefs_init(&k0, 1e-3, 0.9, 0.999, 1e-8, 0.0, 4);
      pose_cuda_adamw_coefs_init(&k1, 1e-3, 0.9, 0.999, 1e-8, 0.05, 4);
      CHECK_OK(pose_cuda_adamw_mt(dtab, NT, chunks, pol, &k0, &k1, NULL, 31, gmode ? dguard : NULL,
                                  gmode ? dall : NULL, NULL));
      size_t bad = 0, total = 0;
      for (int t = 0; t < NT; t++) {
        const int64_t n = sizes[t], off = unaligned[t], tot = n + off + 1;
        const int skip = (gmode == 1 && t == 4) || gmode == 2;
        pose_cuda_adamw_coefs *kk = decay[t] ? &k1 : &k0;
        if (pol) {
          uint16_t *ow = malloc((size_t)tot * 2), *om = malloc((size_t)tot * 2), *ov = malloc((size_t)tot * 2);
          gget(ow, dws[t], (size_t)tot * 2); gget(om, dms[t], (size_t)tot * 2); gget(ov, dvs[t], (size_t)tot * 2);
          pose_adamw_coefs ck = cpu_coefs(kk);
          if (!skip) pose_adamw_bf16_sr_range(hwb[t] + off, hg[t] + off, hmb[t] + off, hvb[t] + off, 0, n, &ck, 31, 1000 + (uint64_t)t);
          for (int64_t i = 0; i < tot; i++) bad += ow[i] != hwb[t][i] || om[i] != hmb[t][i] || ov[i] != hvb[t][i];
          free(ow); free(om); free(ov);
        } else {
          float *ow = malloc((size_t)tot * 4), *om = malloc((size_t)tot * 4), *ov = malloc((size_t)tot * 4);
          uint16_t *owb = malloc((size_t)tot * 2);
          gget(ow, dws[t], (size_t)tot * 4); gget(om, dms[t], (size_t)tot * 4); gget(ov, dvs[t], (size_t)tot * 4);
          gget(owb, dwbs[t], (size_t)tot * 2);
          for (int64_t i = 0; i < tot; i++) {
            float wi = hw[t][i], mi = hm[t][i], vi = hv[t][i];
            const int inside = i >= off && i < off + n;
            if (inside && !skip) cpu_adam(kk, &wi, hg[t][i], &mi, &vi);
            bad += memcmp(&wi, &ow[i], 4) != 0 || memcmp(&mi, &om[i], 4) != 0 || memcmp(&vi, &ov[i], 4) != 0;
            /* the bf16 copy: written exactly where the update ran, untouched (0xff poison) elsewhere */
            bad += inside && !skip ? owb[i] != pose_f32_to_bf16(wi) : owb[i] != 0xffff;
          }
          free(ow); free(om); free(ov); free(owb);
        }
        total += (size_t)tot;
      }
      printf("  multi-tensor adamw (%s, %s): %zu of %zu elements (guard bands included) differ from the reference\n",
             pol ? "bf16 + SR" : "fp32 + bf16 copy",
             gmode == 0 ? "no guards" : gmode == 1 ? "entry 4 guarded by NaN: untouched" : "guard_all Inf: all untouched",
             bad, total);
      CHECK(bad == 0);
      for (int t = 0; t < NT; t++) {
        free(hw[t]); free(hg[t]); free(hm[t]); free(hv[t]); free(hwb[t]); free(hmb[t]); free(hvb[t]);
      }
    }
  }
  pose_cuda_adamw_coefs k;
  pose_cuda_adamw_coefs_init(&k, 1e-3, 0.9, 0.999, 1e-8, 0.0, 1);
  CHECK_ERR(pose_cuda_adamw_mt(NULL, 2, 5, 0, &k, &k, NULL, 0, NULL, NULL, NULL), POSE_EINVAL, "NULL table");
  CHECK_ERR(pose_cuda_adamw_mt(NULL, 2, (int64_t)1 << 32, 0, &k, &k, NULL, 0, NULL, NULL, NULL), POSE_EINVAL, "grid");
  CHECK_OK(pose_cuda_adamw_mt(NULL, 0, 0, 1, &k, &k, NULL, 0, NULL, NULL, NULL)); /* nothing to do */
}

/* Per-group squared norms, stored by parameter index, summed into the global norm: bit for bit the global norm. */
static void test_group_norms(void) {
  const int64_t sizes[] = {16385, 1, 0, 100000, 4096, 50001, 7};
  const int cnt = 7;
  const void *ptrs[7];
  float *hs[7];
  for (int i = 0; i < cnt; i++) {
    hs[i] = hrandn((size_t)(sizes[i] ? sizes[i] : 1), 0.02f * (float)(i + 1));
    ptrs[i] = gup(hs[i], (size_t)(sizes[i] ? sizes[i] : 1) * 4);
  }
  float *dn = galloc(4), want, got;
  CHECK_OK(pose_cuda_grad_norm(ptrs, sizes, cnt, POSE_F32, dn, NULL));
  gget(&want, dn, 4);
  /* groups {3, 0}, {6, 1, 2}, {5, 4} (out of parameter order on purpose) */
  const int grp[3][3] = {{3, 0, -1}, {6, 1, 2}, {5, 4, -1}};
  double *tn = galloc(sizeof(double) * (size_t)cnt), *gsq = galloc(sizeof(double) * 3), *part = galloc(sizeof(double) * 64);
  double host_gsq[3], tn_h[7];
  for (int g = 0; g < 3; g++) {
    const void *gp[3];
    int64_t gn[3], gf[3];
    int32_t gi[3];
    int c = 0;
    for (int j = 0; j < 3 && grp[g][j] >= 0; j++, c++) {
      gp[c] = ptrs[grp[g][j]];
      gn[c] = sizes[grp[g][j]];
      gi[c] = grp[g][j];
    }
    int64_t np = pose_cuda_sumsq_plan(gn, c, gf);
    CHECK_OK(pose_cuda_group_sumsq(gup(gp, sizeof gp), gup(gn, sizeof gn), gup(gf, sizeof gf), gup(gi, sizeof gi), NULL,
                                   c, np, POSE_F32, part, tn, gsq + g, NULL));
    gsync();
  }
  CHECK_OK(pose_cuda_norm_from_sq(tn, cnt, dn, NULL));
  gget(&got, dn, 4);
  gget(host_gsq, gsq, sizeof host_gsq);
  gget(tn_h, tn, sizeof tn_h);
  double sum_g = tn_h[3] + tn_h[0];
  printf("  per-group norms -> global norm %.9g vs pose_cuda_grad_norm %.9g (%s); group 0 sum %.9g (tensors %.9g)\n",
         (double)got, (double)want, got == want ? "identical" : "differs", host_gsq[0], sum_g);
  CHECK(got == want);
  CHECK(host_gsq[0] == sum_g);
  CHECK(tn_h[2] == 0.0);
  CHECK_ERR(pose_cuda_group_sumsq(NULL, NULL, NULL, NULL, NULL, 0, 0, POSE_F32, part, tn, NULL, NULL), POSE_EINVAL,
            "bad arguments");
  /* mixed dtypes in one group: each tensor's square as pose_cuda_grad_norm computes that tensor's norm */
  {
    float *hx = hrandn(40000, 0.1f), *hy = hrandn(20001, 0.3f);
    const void *mp[2] = {gup(hx, 40000 * 4), gup_as(hy, 20001, POSE_BF16)};
    int64_t mn[2] = {40000, 20001}, mf[2];
    int32_t mi[2] = {0, 1}, mb[2] = {0, 1};
    int64_t np = pose_cuda_sumsq_plan(mn, 2, mf);
    CHECK_OK(pose_cuda_group_sumsq(gup(mp, sizeof mp), gup(mn, sizeof mn), gup(mf, sizeof mf), gup(mi, sizeof mi),
                                   gup(mb, sizeof mb), 2, np, POSE_F32, part, tn, gsq, NULL));
    double t2[2];
    gget(t2, tn, sizeof t2);
    float nx, ny;
    CHECK_OK(pose_cuda_grad_norm(&mp[0], &mn[0], 1, POSE_F32, dn, NULL));
    gget(&nx, dn, 4);
    CHECK_OK(pose_cuda_grad_norm(&mp[1], &mn[1], 1, POSE_BF16, dn, NULL));
    gget(&ny, dn, 4);
    printf("  mixed group: fp32 tensor %.9g vs %.9g, bf16 tensor %.9g vs %.9g\n", sqrt(t2[0]), (double)nx, sqrt(t2[1]),
           (double)ny);
    CHECK((float)sqrt(t2[0]) == nx && (float)sqrt(t2[1]) == ny);
    free(hx);
    free(hy);
  }
  CHECK_ERR(pose_cuda_norm_from_sq(NULL, 3, dn, NULL), POSE_EINVAL, "bad arguments");
  /* a non-finite gradient shows in its tensor's square and its group's sum */
  float bad[3] = {1.0f, NAN, 2.0f};
  const void *bp[1] = {gup(bad, sizeof bad)};
  int64_t bn[1] = {3}, bf[1];
  int32_t bi[1] = {1};
  int64_t np = pose_cuda_sumsq_plan(bn, 1, bf);
  CHECK_OK(pose_cuda_group_sumsq(gup(bp, sizeof bp), gup(bn, sizeof bn), gup(bf, sizeof bf), gup(bi, sizeof bi), NULL, 1,
                                 np, POSE_F32, part, tn, gsq, NULL));
  gget(host_gsq, gsq, sizeof(double));
  CHECK(!isfinite(host_gsq[0]));
  for (int i = 0; i < cnt; i++) free(hs[i]);
}

static double cpu_sumsq_blocks(const float *x, int64_t n) {
  double s = 0;
  for (int64_t b = 0; b * 16384 < n; b++) {
    double p = 0;
    for (int64_t i = b * 16384; i < n && i < (b + 1) * 16384; i++) p += (double)x[i] * x[i];
    s += p;
  }
  return s;
}

static void test_norms(void) {
  const int64_t sizes[] = {1, 16384, 16385, 100000, 0, 3000};
  const int cnt = 6;
  for (int t = 0; t < 2; t++) {
    pose_dtype dt = t ? POSE_BF16 : POSE_F32;
    const void *ptrs[6];
    float *hs[6];
    double tot = 0;
    for (int i = 0; i < cnt; i++) {
      hs[i] = hrandn((size_t)(sizes[i] ? sizes[i] : 1), 0.01f * (float)(i + 1));
      ptrs[i] = sizes[i] ? gup_as(hs[i], (size_t)sizes[i], dt) : NULL;
      float ni = (float)sqrt(cpu_sumsq_blocks(hs[i], sizes[i]));
      tot += (double)ni * ni;
    }
    float want = (float)sqrt(tot);
    float *dn = galloc(4), got;
    CHECK_OK(pose_cuda_grad_norm(ptrs, sizes, cnt, dt, dn, NULL));
    gget(&got, dn, 4);
    printf("  grad norm %s: %.9g vs CPU %.9g (%s)\n", dtn(dt), (double)got, (double)want,
           got == want ? "identical" : "differs");
    CHECK_NEAR(got, want, 1e-6 * want);
    /* clipping coefficient from the device norm, as torch computes it */
    float *dc = galloc(4), c;
    CHECK_OK(pose_cuda_clip_coef(dn, 0.5 * want, dc, NULL));
    gget(&c, dc, 4);
    float cw = (1.0f / (got + 1e-6f)) * (float)(0.5 * want);
    CHECK(c == (cw < 1.0f ? cw : 1.0f));
    CHECK_OK(pose_cuda_clip_coef(dn, 10.0 * want, dc, NULL));
    gget(&c, dc, 4);
    CHECK(c == 1.0f);
    for (int i = 0; i < cnt; i++) free(hs[i]);
  }
  float nanv = NAN, *dn = gup(&nanv, 4), *dc = galloc(4), c = 0;
  CHECK_OK(pose_cuda_clip_coef(dn, 1.0, dc, NULL));
  gget(&c, dc, 4);
  CHECK(isnan(c));
  CHECK_ERR(pose_cuda_clip_coef(dn, 0.0, dc, NULL), POSE_EINVAL, "positive");
  const void *bad[1] = {NULL};
  int64_t badn[1] = {5};
  CHECK_ERR(pose_cuda_grad_norm(bad, badn, 1, POSE_F32, dn, NULL), POSE_EINVAL, "NULL pointer");

  /* plain sum */
  const int64_t n = 1000001;
  float *x = hrandn((size_t)n, 1.0f);
  double ref = 0, got = 0;
  for (int64_t i = 0; i < n; i++) ref += x[i];
  float *dx = gup(x, (size_t)n * 4);
  double *ds = galloc(8);
  CHECK_OK(pose_cuda_sum(dx, POSE_F32, n, ds, NULL));
  gget(&got, ds, 8);
  printf("  sum of %lld floats: %.12g vs %.12g\n", (long long)n, got, ref);
  CHECK_NEAR(got, ref, 1e-9 * fabs(ref) + 1e-9);
  free(x);
}

int main(void) {
  gpu_require("gpu_test_optim");
  test_adamw_f32();
  test_adamw_bf16();
  test_adamw_bf16_unaligned();
  test_adamw_mt();
  test_group_norms();
  test_norms();
  gfree_all();
  return test_summary("gpu_test_optim");
}
