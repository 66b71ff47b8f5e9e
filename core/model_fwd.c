/* The decoder's forward and hand-written backward on the CPU (fp32). Layer by layer:
 *   sequential (LLaMA, Mistral, Qwen2, Baichuan, NeoX without parallel residual):
 *       x1 = x + attn(ln1(x));  y = x1 + mlp(ln2(x1))
 *   parallel (NeoX):   y = (mlp(ln2(x)) + attn(ln1(x))) + x
 *   GPT-J:             h = ln_1(x);  y = (attn(h) + mlp(h)) + x
 * (sums associated as transformers writes them). Training keeps every layer's activations; inference reuses one
 * set of buffers for all layers. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops_common.h"
#include "attention.h"
#include "model_internal.h"
#include "ops_act.h"
#include "ops_linear.h"
#include "ops_norm.h"
#include "ops_rope_apply.h"
#include "ops_xent.h"
#ifdef POSE_HAVE_CUDA
#include "model_gpu.h"
#endif

/* ---- workspace: one allocation carved into buffers (laid out twice: once to size, once to place) -------------- */

typedef struct {
  float *base;
  size_t off;
} bump;

static float *take(bump *b, size_t n) {
  float *p = b->base ? b->base + b->off : NULL;
  b->off += (n + 15) & ~(size_t)15; /* 64-byte granules keep rows aligned for BLAS */
  return p;
}

typedef struct {
  float *x;               /* layer input [N,D] */
  float *h1, *mu1, *rs1;  /* ln1 output and row statistics */
  float *q, *k, *v;       /* [N,Q], [N,KV], [N,KV]; q and k rotated */
  float *att;             /* attention output [N,Q] */
  float *lse;             /* [B,Hq,T] */
  float *x1;              /* sequential: x + attn */
  float *h2, *mu2, *rs2;  /* ln2 */
  float *g, *u, *a;       /* MLP pre-activations and activation [N,I] */
} layer_acts;

typedef struct {
  int64_t N;
  layer_acts *acts;       /* training: one per layer; else one shared */
  float *xL, *hf, *muf, *rsf; /* final residual, final norm output and statistics */
  float *tmp_o, *tmp_m;   /* attention and MLP block outputs [N,D] */
  float *qkv;             /* fused projections [N,3D] */
  float *cos, *sin;       /* [N, r/2] */
  /* backward */
  float *dres, *dh1, *dh2, *datt, *dq, *dk, *dv, *dqkv, *dg, *du, *da, *dhat;
} workspace;

static void layout(const pose_model *m, int64_t N, int64_t B, int train, workspace *w, bump *b) {
  const pose_model_cfg *c = &m->cfg;
  const size_t D = (size_t)c->hidden, I = (size_t)c->inter, Q = (size_t)m->qdim, KV = (size_t)m->kvdim;
  const size_t n = (size_t)N;
  int64_t nsets = train ? c->layers : 1;
  for (int64_t l = 0; l < nsets; l++) {
    layer_acts *A = &w->acts[l];
    A->x = take(b, n * D);
    A->h1 = take(b, n * D); A->mu1 = take(b, n); A->rs1 = take(b, n);
    A->q = take(b, n * Q); A->k = take(b, n * KV); A->v = take(b, n * KV);
    A->att = take(b, n * Q);
    A->lse = train ? take(b, (size_t)(B * c->heads) * (n / (size_t)B)) : NULL;
    A->x1 = (!c->parallel && train) ? take(b, n * D) : NULL;
    int ln2 = !c->shared_ln;
    A->h2 = ln2 ? take(b, n * D) : NULL;
    A->mu2 = ln2 ? take(b, n) : NULL; A->rs2 = ln2 ? take(b, n) : NULL;
    A->g = take(b, n * I); A->u = c->glu ? take(b, n * I) : NULL; A->a = take(b, n * I);
  }
  w->xL = train ? take(b, n * D) : NULL;
  w->hf = take(b, n * D); w->muf = take(b, n); w->rsf = take(b, n);
  w->tmp_o = take(b, n * D); w->tmp_m = take(b, n * D);
  w->qkv = c->qkv != POSE_QKV_SEPARATE ? take(b, n * 3 * D) : NULL;
  w->cos = take(b, n * (size_t)(m->rot / 2)); w->sin = take(b, n * (size_t)(m->rot / 2));
  if (train) {
    w->dres = take(b, n * D); w->dh1 = take(b, n * D); w->dh2 = take(b, n * D);
    w->datt = take(b, n * Q); w->dq = take(b, n * Q); w->dk = take(b, n * KV); w->dv = take(b, n * KV);
    w->dqkv = c->qkv != POSE_QKV_SEPARATE ? take(b, n * 3 * D) : NULL;
    w->dg = take(b, n * I); w->du = c->glu ? take(b, n * I) : NULL; w->da = take(b, n * I);
    w->dhat = c->norm_head ? take(b, (size_t)(c->vocab * c->hidden)) : NULL;
  }
}

static pose_status ws_alloc(const pose_model *m, int64_t N, int64_t B, int train, workspace *w, float **mem) {
  memset(w, 0, sizeof *w);
  w->N = N;
  w->acts = calloc((size_t)(train ? m->cfg.layers : 1), sizeof *w->acts);
  if (!w->acts) return pose_error(POSE_ENOMEM, "model: out of memory");
  bump b = {NULL, 0};
  layout(m, N, B, train, w, &b);
  *mem = malloc(b.off * sizeof(float) + 64);
  if (!*mem) {
    free(w->acts);
    return pose_error(POSE_ENOMEM, "model: cannot allocate %.1f MB of activations for %lld tokens",
                      b.off * 4.0 / 1e6, (long long)N);
  }
  b.base = *mem;
  b.off = 0;
  layout(m, N, B, train, w, &b);
  return POSE_OK;
}

/* ---- blocks ---------------------------------------------------------------------------------------------------- */

static void add3(float *y, const float *a, const float *b, const float *c, int64_t n) {
#pragma omp parallel for schedule(static) if (n > POSE_PAR_MIN)
  for (int64_t i = 0; i < n; i++) y[i] = (a[i] + b[i]) + c[i];
}

static void add2(float *y, const float *a, const float *b, int64_t n) {
#pragma omp parallel for schedule(static) if (n > POSE_PAR_MIN)
  for (int64_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}

static void norm_fwd(pose_model *m, int w_idx, int b_idx, const float *x, int64_t N, float *y, float *mu, float *rs) {
  pose_norm_fwd(m->cfg.norm == POSE_NORM_RMS, x, pose_model_w(m, w_idx), pose_model_w(m, b_idx),
                (float)m->cfg.norm_eps, N, m->cfg.hidden, y, mu, rs);
}

static void norm_bwd(pose_model *m, int w_idx, int b_idx, const float *x, const float *mu, const float *rs,
                     const float *dy, int64_t N, float *dx) {
  pose_norm_bwd(m->cfg.norm == POSE_NORM_RMS, x, pose_model_w(m, w_idx), mu, rs, dy, N, m->cfg.hidden, dx, 1,
                pose_model_g(m, w_idx), pose_model_g(m, b_idx));
}

/* q, k, v from the attention input h (fused layouts through ws->qkv) */
static void qkv_fwd(pose_model *m, const pose_layer_idx *L, const float *h, int64_t N, float *qkv, float *q, float *k,
                    float *v) {
  const int64_t D = m->cfg.hidden, Q = m->qdim, KV = m->kvdim, Hd = m->cfg.head_dim, H = m->cfg.heads;
  if (m->cfg.qkv == POSE_QKV_SEPARATE) {
    pose_linear_fwd(h, pose_model_w(m, L->q_w), pose_model_w(m, L->q_b), q, N, D, Q);
    pose_linear_fwd(h, pose_model_w(m, L->k_w), pose_model_w(m, L->k_b), k, N, D, KV);
    pose_linear_fwd(h, pose_model_w(m, L->v_w), pose_model_w(m, L->v_b), v, N, D, KV);
    return;
  }
  pose_linear_fwd(h, pose_model_w(m, L->qkv_w), pose_model_w(m, L->qkv_b), qkv, N, D, 3 * D);
  int neox = m->cfg.qkv == POSE_QKV_NEOX;
#pragma omp parallel for schedule(static) if (N * D > POSE_PAR_MIN)
  for (int64_t n = 0; n < N; n++) {
    const float *src = qkv + n * 3 * D;
    if (neox) { /* [heads][q | k | v] per head */
      for (int64_t hh = 0; hh < H; hh++) {
        memcpy(q + n * Q + hh * Hd, src + hh * 3 * Hd, sizeof(float) * (size_t)Hd);
        memcpy(k + n * KV + hh * Hd, src + hh * 3 * Hd + Hd, sizeof(float) * (size_t)Hd);
        memcpy(v + n * KV + hh * Hd, src + hh * 3 * Hd + 2 * Hd, sizeof(float) * (size_t)Hd);
      }
    } else { /* W_pack: [q; k; v] in thirds */
      memcpy(q + n * Q, src, sizeof(float) * (size_t)D);
      memcpy(k + n * KV, src + D, sizeof(float) * (size_t)D);
      memcpy(v + n * KV, src + 2 * D, sizeof(float) * (size_t)D);
    }
  }
}

static void qkv_bwd(pose_model *m, const pose_layer_idx *L, const float *h, int64_t N, const float *dq,
                    const float *dk, const float *dv, float *dqkv, float *dh, int acc) {
  const int64_t D = m->cfg.hidden, Q = m->qdim, KV = m->kvdim, Hd = m->cfg.head_dim, H = m->cfg.heads;
  if (m->cfg.qkv == POSE_QKV_SEPARATE) {
    pose_linear_bwd(h, pose_model_w(m, L->q_w), dq, dh, acc, pose_model_g(m, L->q_w), pose_model_g(m, L->q_b), N, D, Q);
    pose_linear_bwd(h, pose_model_w(m, L->k_w), dk, dh, 1, pose_model_g(m, L->k_w), pose_model_g(m, L->k_b), N, D, KV);
    pose_linear_bwd(h, pose_model_w(m, L->v_w), dv, dh, 1, pose_model_g(m, L->v_w), pose_model_g(m, L->v_b), N, D, KV);
    return;
  }
  int neox = m->cfg.qkv == POSE_QKV_NEOX;
#pragma omp parallel for schedule(static) if (N * D > POSE_PAR_MIN)
  for (int64_t n = 0; n < N; n++) {
    float *dst = dqkv + n * 3 * D;
    if (neox) {
      for (int64_t hh = 0; hh < H; hh++) {
        memcpy(dst + hh * 3 * Hd, dq + n * Q + hh * Hd, sizeof(float) * (size_t)Hd);
        memcpy(dst + hh * 3 * Hd + Hd, dk + n * KV + hh * Hd, sizeof(float) * (size_t)Hd);
        memcpy(dst + hh * 3 * Hd + 2 * Hd, dv + n * KV + hh * Hd, sizeof(float) * (size_t)Hd);
      }
    } else {
      memcpy(dst, dq + n * Q, sizeof(float) * (size_t)D);
      memcpy(dst + D, dk + n * KV, sizeof(float) * (size_t)D);
      memcpy(dst + 2 * D, dv + n * KV, sizeof(float) * (size_t)D);
    }
  }
  pose_linear_bwd(h, pose_model_w(m, L->qkv_w), dqkv, dh, acc, pose_model_g(m, L->qkv_w), pose_model_g(m, L->qkv_b),
                  N, D, 3 * D);
}

static void mlp_fwd(pose_model *m, const pose_layer_idx *L, const float *h, int64_t N, layer_acts *A, float *out) {
  const int64_t D = m->cfg.hidden, I = m->cfg.inter;
  pose_linear_fwd(h, pose_model_w(m, L->mg_w), pose_model_w(m, L->mg_b), A->g, N, D, I);
  if (m->cfg.glu) pose_linear_fwd(h, pose_model_w(m, L->mu_w), pose_model_w(m, L->mu_b), A->u, N, D, I);
  pose_act_fwd(m->cfg.act, A->g, m->cfg.glu ? A->u : NULL, A->a, N * I);
  pose_linear_fwd(A->a, pose_model_w(m, L->md_w), pose_model_w(m, L->md_b), out, N, I, D);
}

static void mlp_bwd(pose_model *m, const pose_layer_idx *L, const float *h, int64_t N, const layer_acts *A,
                    const float *dout, workspace *w, float *dh, int acc) {
  const int64_t D = m->cfg.hidden, I = m->cfg.inter;
  pose_linear_bwd(A->a, pose_model_w(m, L->md_w), dout, w->da, 0, pose_model_g(m, L->md_w), pose_model_g(m, L->md_b),
                  N, I, D);
  pose_act_bwd(m->cfg.act, A->g, m->cfg.glu ? A->u : NULL, w->da, w->dg, w->du, N * I);
  pose_linear_bwd(h, pose_model_w(m, L->mg_w), w->dg, dh, acc, pose_model_g(m, L->mg_w), pose_model_g(m, L->mg_b),
                  N, D, I);
  if (m->cfg.glu)
    pose_linear_bwd(h, pose_model_w(m, L->mu_w), w->du, dh, 1, pose_model_g(m, L->mu_w), pose_model_g(m, L->mu_b),
                    N, D, I);
}

typedef struct {
  int64_t B, T, N;
  int train;
  pose_kv_cache *kv;
} run_ctx;

static pose_status attn_fwd(pose_model *m, int64_t l, layer_acts *A, workspace *w, const run_ctx *rc) {
  const pose_model_cfg *c = &m->cfg;
  const pose_layer_idx *L = &m->layer[l];
  const int64_t N = rc->N, Hd = c->head_dim;
  qkv_fwd(m, L, A->h1, N, w->qkv, A->q, A->k, A->v);
  pose_rope_apply(A->q, N, m->qdim, c->heads, Hd, m->rot, w->cos, w->sin, c->interleaved, 0);
  pose_rope_apply(A->k, N, m->kvdim, c->kv_heads, Hd, m->rot, w->cos, w->sin, c->interleaved, 0);
  pose_attn_dims d;
  int rcode;
  if (rc->kv) {
    pose_kv_cache *kv = rc->kv;
    const int64_t KV = m->kvdim;
    float *kc = kv->k + l * kv->B * kv->cap * KV, *vc = kv->v + l * kv->B * kv->cap * KV;
    for (int64_t b = 0; b < rc->B; b++) {
      memcpy(kc + (b * kv->cap + kv->len) * KV, A->k + b * rc->T * KV, sizeof(float) * (size_t)(rc->T * KV));
      memcpy(vc + (b * kv->cap + kv->len) * KV, A->v + b * rc->T * KV, sizeof(float) * (size_t)(rc->T * KV));
    }
    pose_attn_dims_init(&d, rc->B, rc->T, kv->len + rc->T, c->heads, c->kv_heads, Hd, c->window[l]);
    d.kv_bstride = kv->cap * KV;
    rcode = pose_attention_fwd(&d, A->q, kc, vc, A->att, NULL);
  } else {
    pose_attn_dims_init(&d, rc->B, rc->T, rc->T, c->heads, c->kv_heads, Hd, c->window[l]);
    rcode = pose_attention_fwd(&d, A->q, A->k, A->v, A->att, rc->train ? A->lse : NULL);
  }
  if (rcode) return pose_error(POSE_ENOMEM, "attention: out of memory");
  pose_linear_fwd(A->att, pose_model_w(m, L->o_w), pose_model_w(m, L->o_b), w->tmp_o, N, m->qdim, c->hidden);
  return POSE_OK;
}

/* dout: gradient at the attention block's output; dh gets (acc: += ) the gradient at its input h1 */
static pose_status attn_bwd(pose_model *m, int64_t l, const layer_acts *A, workspace *w, const run_ctx *rc,
                            const float *dout, float *dh, int acc) {
  const pose_model_cfg *c = &m->cfg;
  const pose_layer_idx *L = &m->layer[l];
  const int64_t N = rc->N, Hd = c->head_dim;
  pose_linear_bwd(A->att, pose_model_w(m, L->o_w), dout, w->datt, 0, pose_model_g(m, L->o_w), pose_model_g(m, L->o_b),
                  N, m->qdim, c->hidden);
  pose_attn_dims d;
  pose_attn_dims_init(&d, rc->B, rc->T, rc->T, c->heads, c->kv_heads, Hd, c->window[l]);
  if (pose_attention_bwd(&d, A->q, A->k, A->v, A->att, A->lse, w->datt, w->dq, w->dk, w->dv))
    return pose_error(POSE_ENOMEM, "attention backward: out of memory");
  pose_rope_apply(w->dq, N, m->qdim, c->heads, Hd, m->rot, w->cos, w->sin, c->interleaved, 1);
  pose_rope_apply(w->dk, N, m->kvdim, c->kv_heads, Hd, m->rot, w->cos, w->sin, c->interleaved, 1);
  qkv_bwd(m, L, A->h1, N, w->dq, w->dk, w->dv, w->dqkv, dh, acc);
  return POSE_OK;
}

/* x -> y (y may be x in inference) */
static pose_status layer_fwd(pose_model *m, int64_t l, layer_acts *A, float *y, workspace *w, const run_ctx *rc) {
  const pose_model_cfg *c = &m->cfg;
  const pose_layer_idx *L = &m->layer[l];
  const int64_t N = rc->N, ND = N * c->hidden;
  norm_fwd(m, L->ln1_w, L->ln1_b, A->x, N, A->h1, A->mu1, A->rs1);
  POSE_TRY(attn_fwd(m, l, A, w, rc));
  if (c->shared_ln) {
    mlp_fwd(m, L, A->h1, N, A, w->tmp_m);
    add3(y, w->tmp_o, w->tmp_m, A->x, ND);
  } else if (c->parallel) {
    norm_fwd(m, L->ln2_w, L->ln2_b, A->x, N, A->h2, A->mu2, A->rs2);
    mlp_fwd(m, L, A->h2, N, A, w->tmp_m);
    add3(y, w->tmp_m, w->tmp_o, A->x, ND);
  } else {
    float *x1 = A->x1 ? A->x1 : y;
    add2(x1, w->tmp_o, A->x, ND);
    norm_fwd(m, L->ln2_w, L->ln2_b, x1, N, A->h2, A->mu2, A->rs2);
    mlp_fwd(m, L, A->h2, N, A, w->tmp_m);
    add2(y, w->tmp_m, x1, ND);
  }
  return POSE_OK;
}

/* w->dres: gradient at the layer's output on entry, at its input on return */
static pose_status layer_bwd(pose_model *m, int64_t l, const layer_acts *A, workspace *w, const run_ctx *rc) {
  const pose_model_cfg *c = &m->cfg;
  const pose_layer_idx *L = &m->layer[l];
  const int64_t N = rc->N;
  if (c->shared_ln) {
    mlp_bwd(m, L, A->h1, N, A, w->dres, w, w->dh1, 0);
    POSE_TRY(attn_bwd(m, l, A, w, rc, w->dres, w->dh1, 1));
    norm_bwd(m, L->ln1_w, L->ln1_b, A->x, A->mu1, A->rs1, w->dh1, N, w->dres);
  } else if (c->parallel) {
    mlp_bwd(m, L, A->h2, N, A, w->dres, w, w->dh2, 0);
    POSE_TRY(attn_bwd(m, l, A, w, rc, w->dres, w->dh1, 0));
    norm_bwd(m, L->ln2_w, L->ln2_b, A->x, A->mu2, A->rs2, w->dh2, N, w->dres);
    norm_bwd(m, L->ln1_w, L->ln1_b, A->x, A->mu1, A->rs1, w->dh1, N, w->dres);
  } else {
    mlp_bwd(m, L, A->h2, N, A, w->dres, w, w->dh2, 0);
    norm_bwd(m, L->ln2_w, L->ln2_b, A->x1, A->mu2, A->rs2, w->dh2, N, w->dres);
    POSE_TRY(attn_bwd(m, l, A, w, rc, w->dres, w->dh1, 0));
    norm_bwd(m, L->ln1_w, L->ln1_b, A->x, A->mu1, A->rs1, w->dh1, N, w->dres);
  }
  return POSE_OK;
}

/* ---- LM head ----------------------------------------------------------------------------------------------- */

/* The weight the logits use: lm_head itself, or (NormHead) its rows divided by max(||row||, 1e-12). */
static pose_status head_weight(pose_model *m, const float **W) {
  const float *raw = pose_model_w(m, m->lm_w);
  if (!m->cfg.norm_head) { *W = raw; return POSE_OK; }
  const int64_t V = m->cfg.vocab, D = m->cfg.hidden;
  if (!m->lm_hat) {
    m->lm_hat = malloc(sizeof(float) * (size_t)(V * D));
    m->lm_norm = malloc(sizeof(float) * (size_t)V);
    if (!m->lm_hat || !m->lm_norm) return pose_error(POSE_ENOMEM, "NormHead: out of memory");
  }
#pragma omp parallel for schedule(static)
  for (int64_t v = 0; v < V; v++) {
    const float *r = raw + v * D;
    double ss = 0;
    for (int64_t e = 0; e < D; e++) ss += (double)r[e] * r[e];
    float n = (float)sqrt(ss);
    if (n < 1e-12f) n = 1e-12f;
    m->lm_norm[v] = n;
    for (int64_t e = 0; e < D; e++) m->lm_hat[v * D + e] = r[e] / n;
  }
  *W = m->lm_hat;
  return POSE_OK;
}

/* NormHead backward: g(raw row) += (dhat - hat (hat . dhat)) / n, or dhat / n where the norm was clamped */
static void norm_head_bwd(pose_model *m, const float *dhat) {
  const int64_t V = m->cfg.vocab, D = m->cfg.hidden;
  const float *raw = pose_model_w(m, m->lm_w);
  float *g = pose_model_g(m, m->lm_w);
#pragma omp parallel for schedule(static)
  for (int64_t v = 0; v < V; v++) {
    const float *hat = m->lm_hat + v * D, *dh = dhat + v * D;
    float n = m->lm_norm[v];
    double dot = 0, ss = 0;
    for (int64_t e = 0; e < D; e++) { dot += (double)hat[e] * dh[e]; ss += (double)raw[v * D + e] * raw[v * D + e]; }
    int clamped = sqrt(ss) < 1e-12;
    for (int64_t e = 0; e < D; e++) g[v * D + e] += clamped ? dh[e] / n : (float)((dh[e] - hat[e] * dot) / n);
  }
}

/* ---- the run ------------------------------------------------------------------------------------------------ */

static pose_status check_inputs(const pose_model *m, const int64_t *ids, const int64_t *pos, int64_t N,
                                int64_t *maxpos) {
  int64_t mx = 0;
  for (int64_t n = 0; n < N; n++) {
    if (ids[n] < 0 || ids[n] >= m->cfg.vocab)
      return pose_error(POSE_EINVAL, "token id %lld at index %lld is outside the vocabulary [0, %lld)",
                        (long long)ids[n], (long long)n, (long long)m->cfg.vocab);
    if (pos[n] < 0)
      return pose_error(POSE_EINVAL, "position %lld at index %lld is negative", (long long)pos[n], (long long)n);
    if (pos[n] > ((int64_t)1 << 40))
      return pose_error(POSE_EINVAL, "position %lld at index %lld is too large", (long long)pos[n], (long long)n);
    if (pos[n] > mx) mx = pos[n];
  }
  *maxpos = mx;
  return POSE_OK;
}

pose_status pose_model_run(pose_model *m, pose_model_run_args *a) {
  const pose_model_cfg *c = &m->cfg;
  if (a->B < 1 || a->T < 1)
    return pose_error(POSE_EINVAL, "model: batch %lld x length %lld must both be positive", (long long)a->B,
                      (long long)a->T);
  const int64_t N = a->B * a->T, D = c->hidden, V = c->vocab;
  int64_t maxpos;
  POSE_TRY(check_inputs(m, a->ids, a->pos, N, &maxpos));
  if (a->kv) {
    if ((a->kv->dev_kv != NULL) != (m->gpu != NULL) || (m->gpu && a->kv->dev != m->dev.index))
      return pose_error(POSE_EINVAL, "decode: the cache was made for a model on another device");
    if (a->kv->B != a->B)
      return pose_error(POSE_EINVAL, "decode: batch %lld differs from the cache's %lld", (long long)a->B,
                        (long long)a->kv->B);
    if (a->kv->len + a->T > a->kv->cap)
      return pose_error(POSE_EINVAL, "decode: %lld + %lld tokens exceed the cache capacity %lld",
                        (long long)a->kv->len, (long long)a->T, (long long)a->kv->cap);
    if (a->kv->layers != c->layers || a->kv->kvdim != m->kvdim)
      return pose_error(POSE_EINVAL, "decode: the cache was made for another model");
  }
#ifdef POSE_HAVE_CUDA
  if (m->gpu) {
    pose_rope_update(m->rope, maxpos);
    return pose_gpu_model_run(m, a);
  }
#endif
  if (a->hook) return pose_error(POSE_EUNSUPPORTED, "model: per-layer optimizer callbacks need a cuda model");
  int train = a->backward;
  if (train) POSE_TRY(pose_model_ensure_grads(m));
  workspace w;
  float *mem = NULL;
  POSE_TRY(ws_alloc(m, N, a->B, train, &w, &mem));
  run_ctx rc = {a->B, a->T, N, train, a->kv};
  pose_status st = POSE_OK;

  /* rotary angles for every token, after advancing the dynamic/longrope state with this call's largest position */
  pose_rope_update(m->rope, maxpos);
  pose_rope_cos_sin(m->rope, a->pos, N, w.cos, w.sin);

  pose_embed_fwd(pose_model_w(m, m->embed), a->ids, N, D, w.acts[0].x);
  for (int64_t l = 0; l < c->layers && st == POSE_OK; l++) {
    layer_acts *A = &w.acts[train ? l : 0];
    float *y = !train ? A->x : (l + 1 < c->layers ? w.acts[l + 1].x : w.xL);
    st = layer_fwd(m, l, A, y, &w, &rc);
  }
  if (st != POSE_OK) goto done;
  float *xL = train ? w.xL : w.acts[0].x;

  const float *W = NULL;
  if (a->kv) { /* the last token of each row only */
    for (int64_t b = 0; b < a->B; b++) memcpy(w.tmp_o + b * D, xL + (b * a->T + a->T - 1) * D, sizeof(float) * (size_t)D);
    norm_fwd(m, m->final_w, m->final_b, w.tmp_o, a->B, w.hf, w.muf, w.rsf);
    if ((st = head_weight(m, &W)) != POSE_OK) goto done;
    pose_linear_fwd(w.hf, W, pose_model_w(m, m->lm_b), a->logits, a->B, D, V);
    a->kv->len += a->T;
    goto done;
  }
  norm_fwd(m, m->final_w, m->final_b, xL, N, w.hf, w.muf, w.rsf);
  if ((st = head_weight(m, &W)) != POSE_OK) goto done;
  pose_xent_head hd = {W, pose_model_w(m, m->lm_b), V, D};
  if (a->logits) {
    pose_linear_fwd(w.hf, W, hd.bias, a->logits, N, D, V);
  } else if (!train) {
    st = pose_xent_nll(&hd, w.hf, a->tgt, N, a->nll, &a->sum, &a->count);
  } else {
    float *dW = c->norm_head ? w.dhat : pose_model_g(m, m->lm_w);
    if (c->norm_head) memset(w.dhat, 0, sizeof(float) * (size_t)(V * D));
    st = pose_xent_bwd(&hd, w.hf, a->tgt, N, a->scale, w.dh1, dW, pose_model_g(m, m->lm_b), &a->sum);
    if (st != POSE_OK) goto done;
    if (!isfinite(a->sum)) {
      st = pose_error(POSE_ENUMERIC, "loss is not finite (%g)", a->sum);
      goto done;
    }
    if (c->norm_head) norm_head_bwd(m, w.dhat);
    memset(w.dres, 0, sizeof(float) * (size_t)(N * D));
    norm_bwd(m, m->final_w, m->final_b, xL, w.muf, w.rsf, w.dh1, N, w.dres);
    for (int64_t l = c->layers - 1; l >= 0 && st == POSE_OK; l--) st = layer_bwd(m, l, &w.acts[l], &w, &rc);
    if (st == POSE_OK)
      pose_embed_bwd(a->ids, w.dres, N, D, c->pad_id, pose_model_g(m, m->embed));
  }
done:
  free(mem);
  free(w.acts);
  return st;
}

/* ---- public entry points ------------------------------------------------------------------------------------- */

/* positions default to 0..T-1 per row; per-row targets: the token expected after (b,t) is targets[b,t+1] */
static pose_status prepare(const int64_t *ids, const int64_t *pos, const int64_t *targets, int64_t B, int64_t T,
                           int64_t **pos_out, int64_t **tgt_out) {
  if (B < 1 || T < 1)
    return pose_error(POSE_EINVAL, "model: batch %lld x length %lld must both be positive", (long long)B, (long long)T);
  *pos_out = NULL;
  if (tgt_out) *tgt_out = NULL;
  if (!pos) {
    int64_t *p = malloc(sizeof(int64_t) * (size_t)(B * T));
    if (!p) return pose_error(POSE_ENOMEM, "model: out of memory");
    for (int64_t b = 0; b < B; b++) for (int64_t t = 0; t < T; t++) p[b * T + t] = t;
    *pos_out = p;
  }
  if (tgt_out) {
    const int64_t *src = targets ? targets : ids;
    int64_t *tg = malloc(sizeof(int64_t) * (size_t)(B * T));
    if (!tg) { free(*pos_out); *pos_out = NULL; return pose_error(POSE_ENOMEM, "model: out of memory"); }
    for (int64_t b = 0; b < B; b++) {
      for (int64_t t = 0; t + 1 < T; t++) tg[b * T + t] = src[b * T + t + 1];
      tg[b * T + T - 1] = POSE_IGNORE_INDEX;
    }
    *tgt_out = tg;
  }
  return POSE_OK;
}

pose_status pose_model_forward(pose_model *m, const int64_t *ids, const int64_t *pos, int64_t B, int64_t T,
                               float *logits) {
  int64_t *dpos;
  POSE_TRY(prepare(ids, pos, NULL, B, T, &dpos, NULL));
  pose_model_run_args a = {.ids = ids, .pos = pos ? pos : dpos, .B = B, .T = T, .logits = logits};
  pose_status st = pose_model_run(m, &a);
  free(dpos);
  return st;
}

pose_status pose_model_nll(pose_model *m, const int64_t *ids, const int64_t *pos, const int64_t *targets, int64_t B,
                           int64_t T, float *nll) {
  int64_t *dpos, *tgt;
  POSE_TRY(prepare(ids, pos, targets, B, T, &dpos, &tgt));
  float *rows = malloc(sizeof(float) * (size_t)(B * T));
  if (!rows) { free(dpos); free(tgt); return pose_error(POSE_ENOMEM, "model: out of memory"); }
  pose_model_run_args a = {.ids = ids, .pos = pos ? pos : dpos, .B = B, .T = T, .tgt = tgt, .nll = rows};
  pose_status st = pose_model_run(m, &a);
  if (st == POSE_OK)
    for (int64_t b = 0; b < B; b++) memcpy(nll + b * (T - 1), rows + b * T, sizeof(float) * (size_t)(T - 1));
  free(rows);
  free(dpos);
  free(tgt);
  return st;
}

pose_status pose_model_backward(pose_model *m, const int64_t *ids, const int64_t *pos, const int64_t *targets,
                                int64_t B, int64_t T, double loss_scale, double *loss, int64_t *count) {
  return pose_model_backward_hook(m, ids, pos, targets, B, T, loss_scale, loss, count, NULL);
}

pose_status pose_model_backward_hook(pose_model *m, const int64_t *ids, const int64_t *pos, const int64_t *targets,
                                     int64_t B, int64_t T, double loss_scale, double *loss, int64_t *count,
                                     const struct pose_gpu_bwd_hook *hook) {
  int64_t *dpos, *tgt;
  POSE_TRY(prepare(ids, pos, targets, B, T, &dpos, &tgt));
  int64_t n = 0;
  for (int64_t i = 0; i < B * T; i++) n += tgt[i] != POSE_IGNORE_INDEX;
  pose_status st = POSE_OK;
  if (n == 0) { /* nothing scored: no loss, no gradient (still validate the inputs) */
    int64_t mx;
    st = check_inputs(m, ids, pos ? pos : dpos, B * T, &mx);
    if (loss) *loss = 0;
    if (count) *count = 0;
  } else {
    pose_model_run_args a = {.ids = ids, .pos = pos ? pos : dpos, .B = B, .T = T, .tgt = tgt, .backward = 1,
                             .scale = (float)(loss_scale / (double)n), .hook = hook};
    st = pose_model_run(m, &a);
    if (st == POSE_OK) {
      if (loss) *loss = a.sum / (double)n;
      if (count) *count = n;
    }
  }
  free(dpos);
  free(tgt);
  return st;
}
