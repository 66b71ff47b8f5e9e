// The decoder of GPT-J, GPT-NeoX and Baichuan on the GPU: the same function as core/model_fwd.c for those families,
// assembled from the kernels of pose_cuda.h like the LLaMA family's (cuda/model_gpu.cu, whose arenas, parameter
// functions and GEMM shorthands it shares through model_gpu_internal.cuh). bf16 activations, fp32 accumulation and
// statistics, fp32 master weights and gradients (or the pure-bf16 policy's bf16 weights).
//
// One layer, as the CPU writes it (every tensor bf16 [N rows, ...] unless noted):
//   h1 = norm1(x)  (RMSNorm, or LayerNorm with bias: mean and rstd fp32)
//   q [N,Q], k|v [N,2KV] from h1:  separate q and adjacent k|v weights (GPT-J: two GEMMs);  W_pack = [q; k; v] rows
//       (Baichuan: the same two GEMMs on the two row ranges of W_pack, no copies);  NeoX's query_key_value rows per
//       head [q_h; k_h; v_h]: one GEMM into [N,3D] and a split kernel into q and k|v (the layout the rope and
//       attention kernels take)
//   rope(q), rope(k) in place (half-split or interleaved, partial rotary: channels >= rot untouched)
//   att = attention(q, k, v)                      (flash kernels; reference kernels for other head dims)
//   sequential (Baichuan, NeoX use_parallel_residual=false):
//       x1 = x + att Wo^T (+bo);  h2 = norm2(x1);  y = x1 + mlp(h2)
//   parallel (NeoX):  h2 = norm2(x);  y = x + att Wo^T (+bo) + mlp(h2)
//   GPT-J (one ln_1 for both):                    y = x + att Wo^T + mlp(h1)
//   mlp(h) = act(h Wg^T + bg) Wd^T + bd (GELU, non-gated), or SwiGLU with gate|up adjacent (Baichuan)
// The residual sums are GEMMs with beta = 1 onto a copy of x (each partial sum rounded to bf16 once). The LM head:
// optional bias (GPT-J) and NormHead (Baichuan: rows divided by max(||row||, 1e-12), computed each call from the
// weights into a bf16 [V,D] copy; the backward collects the gradient at the normalised rows in fp32 and maps it back
// to the raw rows as the CPU's norm_head_bwd). Training keeps every layer's activations or (recompute="layer") only
// the layer inputs; KV-cache decoding stores each token's rotated k|v row as the LLaMA path does.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model_gpu_internal.cuh"

// ---- the run's workspace ------------------------------------------------------------------------------------------

struct fam_acts {
  bf16 *h1, *h2, *q, *kv, *att, *x1, *g, *a;
  float *mu1, *rs1, *mu2, *rs2, *lse;
};

struct fam_ws {
  bf16 **xs;          // layer inputs: training L+1 (xs[L] the final residual); inference one, updated in place
  fam_acts *acts;     // training without recompute: one per layer; else one shared
  bf16 *qkv3;         // NeoX: the fused projection [N,3D] in the checkpoint's per-head order (fwd and bwd)
  bf16 *hf;           // final norm output
  float *muf, *rsf;
  bf16 *head;         // logits chunk [R,V] (bf16; fp32 when the caller wants logits)
  int64_t R;
  float *nll;         // [N]
  int64_t *ids, *pos, *tgt;
  bf16 *hat;          // NormHead: normalised LM-head rows [V,D]
  float *hnorm;       // NormHead: row norms [V]
  float *dhat;        // NormHead, training: gradient at the normalised rows [V,D] fp32
  float *lmb32;       // fp32 copy of a bf16 LM-head bias (fp32 logits under the bf16 policy)
  bf16 *dres, *dh, *dA, *dB; // backward: residual gradient, norm-input gradient, [N,max(Q,I)], [N,max(Q+2KV,F)]
};

struct fam_bump {
  char *base;
  size_t off;
  template <typename T> T *take(size_t n) {
    T *p = base ? (T *)(base + off) : NULL;
    off += (n * sizeof(T) + 255) & ~(size_t)255;
    return p;
  }
};

struct fam_ctx {
  int64_t B, T, N;
  int train, rec, logits32;
  pose_kv_cache *kv;
};

// MLP width of the first projection's output: gate|up (2I) or I
static inline int64_t mlp_f(const pose_model_cfg *c) { return c->glu ? 2 * c->inter : c->inter; }

static void fam_layout(const pose_model *m, const fam_ctx &rc, fam_ws *w, fam_bump *b) {
  const pose_model_cfg *c = &m->cfg;
  const size_t D = (size_t)c->hidden, I = (size_t)c->inter, Q = (size_t)m->qdim, KV = (size_t)m->kvdim,
               V = (size_t)c->vocab, n = (size_t)rc.N, F = (size_t)mlp_f(c);
  const int ln = c->norm == POSE_NORM_LAYER;
  const int64_t nx = rc.train ? c->layers + 1 : 1, nsets = rc.train && !rc.rec ? c->layers : 1;
  for (int64_t l = 0; l < nx; l++) w->xs[l] = b->take<bf16>(n * D);
  for (int64_t l = 0; l < nsets; l++) {
    fam_acts *A = &w->acts[l];
    A->h1 = b->take<bf16>(n * D);
    A->mu1 = ln ? b->take<float>(n) : NULL;
    A->rs1 = b->take<float>(n);
    A->q = b->take<bf16>(n * Q);
    A->kv = b->take<bf16>(n * 2 * KV);
    A->att = b->take<bf16>(n * Q);
    A->lse = b->take<float>((size_t)(rc.B * c->heads * rc.T));
    A->x1 = rc.train && !c->parallel ? b->take<bf16>(n * D) : NULL;
    A->h2 = c->shared_ln ? NULL : b->take<bf16>(n * D);
    A->mu2 = !c->shared_ln && ln ? b->take<float>(n) : NULL;
    A->rs2 = c->shared_ln ? NULL : b->take<float>(n);
    A->g = b->take<bf16>(n * F);
    A->a = b->take<bf16>(n * I);
  }
  w->qkv3 = c->qkv == POSE_QKV_NEOX ? b->take<bf16>(n * (Q + 2 * KV)) : NULL;
  w->hf = b->take<bf16>(n * D);
  w->muf = ln ? b->take<float>(n) : NULL;
  w->rsf = b->take<float>(n);
  size_t elt = rc.logits32 ? 4 : 2;
  int64_t R = (int64_t)(HEAD_BYTES / (V * elt));
  R = R >= 64 ? R / 64 * 64 : (R < 1 ? 1 : R);
  if (R > rc.N) R = rc.N;
  w->R = R;
  w->head = (bf16 *)b->take<char>((size_t)R * V * elt);
  w->nll = b->take<float>(n);
  w->ids = b->take<int64_t>(n);
  w->pos = b->take<int64_t>(n);
  w->tgt = b->take<int64_t>(n);
  w->hat = c->norm_head ? b->take<bf16>(V * D) : NULL;
  w->hnorm = c->norm_head ? b->take<float>(V) : NULL;
  w->dhat = c->norm_head && rc.train ? b->take<float>(V * D) : NULL;
  w->lmb32 = m->lm_b >= 0 && rc.logits32 && m->gpu->bf16 ? b->take<float>(V) : NULL;
  if (rc.train) {
    size_t da = Q > I ? Q : I, db = Q + 2 * KV > F ? Q + 2 * KV : F;
    w->dres = b->take<bf16>(n * D);
    w->dh = b->take<bf16>(n * D);
    w->dA = b->take<bf16>(n * da);
    w->dB = b->take<bf16>(n * db);
  }
}

// ---- kernels of these families ----------------------------------------------------------------------------------

// NeoX's fused projection [N][H][q|k|v][Hd] -> q [N][H][Hd] and k|v [N][2][H][Hd] (the LLaMA path's layouts)
__global__ void k_neox_split(const bf16 *__restrict__ src, bf16 *__restrict__ q, bf16 *__restrict__ kv, int64_t N,
                             int64_t H, int64_t Hd) {
  const int64_t Q = H * Hd, D3 = 3 * Q, total = N * D3;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
    int64_t n = i / D3, c = i - n * D3, h = c / (3 * Hd), r = c - h * 3 * Hd, part = r / Hd, e = r - part * Hd;
    bf16 v = src[i];
    if (part == 0) q[n * Q + h * Hd + e] = v;
    else kv[n * 2 * Q + (part - 1) * Q + h * Hd + e] = v;
  }
}

// the reverse, for the gradients dq, dk|dv -> the fused projection's order
__global__ void k_neox_merge(const bf16 *__restrict__ dq, const bf16 *__restrict__ dkv, bf16 *__restrict__ dst,
                             int64_t N, int64_t H, int64_t Hd) {
  const int64_t Q = H * Hd, D3 = 3 * Q, total = N * D3;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
    int64_t n = i / D3, c = i - n * D3, h = c / (3 * Hd), r = c - h * 3 * Hd, part = r / Hd, e = r - part * Hd;
    dst[i] = part == 0 ? dq[n * Q + h * Hd + e] : dkv[n * 2 * Q + (part - 1) * Q + h * Hd + e];
  }
}

// NormHead forward, one block per row: n = max(fl32(sqrt(sum r^2)), 1e-12) (squares summed in double, as the CPU),
// hat = fl32(r / n) rounded to bf16.
template <typename T>
__global__ void k_normhead_fwd(const T *__restrict__ W, int64_t V, int64_t D, bf16 *__restrict__ hat,
                               float *__restrict__ norms) {
  __shared__ double sh[32];
  for (int64_t v = blockIdx.x; v < V; v += gridDim.x) {
    const T *r = W + v * D;
    double ss = 0;
    for (int64_t e = threadIdx.x; e < D; e += blockDim.x) {
      double x = (double)pc_ld(r, e);
      ss += x * x;
    }
    ss = pc_block_sum(ss, sh);
    float nv = (float)sqrt(ss);
    if (nv < 1e-12f) nv = 1e-12f;
    for (int64_t e = threadIdx.x; e < D; e += blockDim.x) hat[v * D + e] = __float2bfloat16_rn(pc_ld(r, e) / nv);
    if (threadIdx.x == 0) norms[v] = nv;
  }
}

// NormHead backward (the CPU's norm_head_bwd): g(row) += (dhat - hat (hat . dhat)) / n, or dhat / n where the norm was
// clamped; hat = fl32(r / n) in fp32 as the CPU keeps it.
template <typename T>
__global__ void k_normhead_bwd(const T *__restrict__ W, const float *__restrict__ norms,
                               const float *__restrict__ dhat, int64_t V, int64_t D, float *__restrict__ g) {
  __shared__ double sh[32];
  for (int64_t v = blockIdx.x; v < V; v += gridDim.x) {
    const T *r = W + v * D;
    const float *dh = dhat + v * D;
    const float nv = norms[v];
    double dot = 0, ss = 0;
    for (int64_t e = threadIdx.x; e < D; e += blockDim.x) {
      float x = pc_ld(r, e), h = x / nv;
      dot += (double)h * dh[e];
      ss += (double)x * x;
    }
    dot = pc_block_sum(dot, sh);
    ss = pc_block_sum(ss, sh);
    const int clamped = sqrt(ss) < 1e-12;
    for (int64_t e = threadIdx.x; e < D; e += blockDim.x) {
      float h = pc_ld(r, e) / nv;
      g[v * D + e] += clamped ? dh[e] / nv : (float)(((double)dh[e] - (double)h * dot) / (double)nv);
    }
  }
}

// ---- blocks ------------------------------------------------------------------------------------------------------

static inline const bf16 *offb(const bf16 *p, int64_t k) { return p ? p + k : NULL; }
static inline float *offf(float *p, int64_t k) { return p ? p + k : NULL; }

static pose_status norm_fwd(pose_model *m, int w_idx, int b_idx, const bf16 *x, int64_t N, bf16 *y, float *mu,
                            float *rs) {
  const int rms = m->cfg.norm == POSE_NORM_RMS;
  return pose_cuda_norm_fwd(rms, x, POSE_BF16, NW(m, w_idx), rms ? NULL : NW(m, b_idx), NWDT(m),
                            (float)m->cfg.norm_eps, N, m->cfg.hidden, y, rms ? NULL : mu, rs, m->gpu->s);
}

// dx (+)= the gradient at the norm's input; the weight's (and bias's) gradient is added to its fp32 slot
static pose_status norm_bwd(pose_model *m, int w_idx, int b_idx, const bf16 *x, const float *mu, const float *rs,
                            const bf16 *dy, int64_t N, bf16 *dx, int acc) {
  const int rms = m->cfg.norm == POSE_NORM_RMS;
  return pose_cuda_norm_bwd(rms, x, POSE_BF16, NW(m, w_idx), NWDT(m), rms ? NULL : mu, rs, dy, N, m->cfg.hidden, dx,
                            acc, G32(m, w_idx), rms ? NULL : G32(m, b_idx), m->gpu->s);
}

static pose_status rope(pose_model *m, bf16 *x, int64_t N, int64_t stride, int64_t H, const int64_t *pos,
                        int inverse) {
  return pose_cuda_rope_apply(x, POSE_BF16, N, stride, H, m->cfg.head_dim, m->rot, pos, m->gpu->inv_freq,
                              (float)pose_rope_attention_factor(m->rope), m->cfg.interleaved, inverse, m->gpu->s);
}

static void attn_dims(const pose_model *m, int64_t l, const fam_ctx &rc, pose_cuda_attn_dims *d) {
  const pose_model_cfg *c = &m->cfg;
  pose_cuda_attn_dims_init(d, rc.B, rc.T, rc.T, c->heads, c->kv_heads, c->head_dim, c->window[l]);
  d->q_rstride = m->qdim;
  d->q_bstride = rc.T * m->qdim;
  d->kv_rstride = 2 * m->kvdim;
  d->kv_bstride = rc.T * 2 * m->kvdim;
}

// The q and k|v weights (and biases) of the separate and W_pack layouts: W_pack's rows [0,Q) are q's, [Q,Q+2KV)
// k's then v's; separate layouts keep k and v adjacent in the arena (cuda/model_gpu.cu gpu_layout).
struct qkv_ptrs {
  const bf16 *wq, *wkv, *bq, *bkv;
  float *gq, *gkv, *gbq, *gbkv;
};

static qkv_ptrs qkv_split_ptrs(pose_model *m, const pose_layer_idx *L) {
  qkv_ptrs p;
  const int64_t Q = m->qdim, D = m->cfg.hidden;
  if (m->cfg.qkv == POSE_QKV_WPACK) {
    p.wq = WC(m, L->qkv_w);
    p.wkv = offb(p.wq, Q * D);
    p.bq = WC(m, L->qkv_b);
    p.bkv = offb(p.bq, Q);
    p.gq = G32(m, L->qkv_w);
    p.gkv = offf(p.gq, Q * D);
    p.gbq = G32(m, L->qkv_b);
    p.gbkv = offf(p.gbq, Q);
  } else {
    p.wq = WC(m, L->q_w);
    p.wkv = WC(m, L->k_w);
    p.bq = WC(m, L->q_b);
    p.bkv = WC(m, L->k_b);
    p.gq = G32(m, L->q_w);
    p.gkv = G32(m, L->k_w);
    p.gbq = G32(m, L->q_b);
    p.gbkv = G32(m, L->k_b);
  }
  return p;
}

// q, k|v from A->h1, rotated; attention (appending to the cache when decoding) into A->att and A->lse
static pose_status attn_fwd(pose_model *m, int64_t l, fam_acts *A, const fam_ws *w, const fam_ctx &rc) {
  pose_gpu_model *G = m->gpu;
  const pose_model_cfg *c = &m->cfg;
  const pose_layer_idx *L = &m->layer[l];
  const int64_t N = rc.N, D = c->hidden, Q = m->qdim, KV = m->kvdim;
  if (c->qkv == POSE_QKV_NEOX) {
    POSE_TRY(lin_fwd(G, A->h1, N, D, WC(m, L->qkv_w), Q + 2 * KV, WC(m, L->qkv_b), w->qkv3, 0.0f));
    k_neox_split<<<pc_grid(N * (Q + 2 * KV), 256), 256, 0, G->s>>>(w->qkv3, A->q, A->kv, N, c->heads, c->head_dim);
    PC_LAUNCHED("neox qkv split");
  } else {
    qkv_ptrs p = qkv_split_ptrs(m, L);
    POSE_TRY(lin_fwd(G, A->h1, N, D, p.wq, Q, p.bq, A->q, 0.0f));
    POSE_TRY(lin_fwd(G, A->h1, N, D, p.wkv, 2 * KV, p.bkv, A->kv, 0.0f));
  }
  POSE_TRY(rope(m, A->q, N, Q, c->heads, w->pos, 0));
  POSE_TRY(rope(m, A->kv, N, 2 * KV, c->kv_heads, w->pos, 0));
  pose_cuda_attn_dims d;
  attn_dims(m, l, rc, &d);
  const uint16_t *q = (const uint16_t *)A->q, *k = (const uint16_t *)A->kv, *v = (const uint16_t *)(A->kv + KV);
  if (rc.kv) { // append this call's rotated k|v rows at len.. of every batch row, then attend over the cache
    pose_kv_cache *kc = rc.kv;
    bf16 *cl = (bf16 *)kc->dev_kv + (size_t)(l * kc->B * kc->cap * 2 * KV);
    PC_CU(cudaMemcpy2DAsync(cl + kc->len * 2 * KV, sizeof(bf16) * (size_t)(kc->cap * 2 * KV), A->kv,
                            sizeof(bf16) * (size_t)(rc.T * 2 * KV), sizeof(bf16) * (size_t)(rc.T * 2 * KV),
                            (size_t)rc.B, cudaMemcpyDeviceToDevice, G->s), "kv cache append");
    d.Tk = kc->len + rc.T;
    d.q_off = kc->len;
    d.kv_bstride = kc->cap * 2 * KV;
    k = (const uint16_t *)cl;
    v = (const uint16_t *)(cl + KV);
  }
  return G->ref_attn ? pose_cuda_attn_ref_fwd(&d, q, k, v, (uint16_t *)A->att, A->lse, G->s)
                     : pose_cuda_attn_fwd(&d, q, k, v, (uint16_t *)A->att, A->lse, G->s);
}

// first MLP projection and activation from h: A->g [N,F], A->a [N,I]
static pose_status mlp_fwd(pose_model *m, const pose_layer_idx *L, const bf16 *h, fam_acts *A, int64_t N) {
  pose_gpu_model *G = m->gpu;
  const pose_model_cfg *c = &m->cfg;
  const int64_t D = c->hidden, I = c->inter, F = mlp_f(c);
  POSE_TRY(lin_fwd(G, h, N, D, WC(m, L->mg_w), F, WC(m, L->mg_b), A->g, 0.0f));
  return pose_cuda_act_fwd((pose_cuda_act)c->act, A->g, c->glu ? A->g + I : NULL, F, POSE_BF16, N, I, A->a, G->s);
}

static pose_status copy_rows(pose_gpu_model *G, bf16 *dst, const bf16 *src, int64_t n) {
  if (dst != src) PC_CU(cudaMemcpyAsync(dst, src, sizeof(bf16) * (size_t)n, cudaMemcpyDeviceToDevice, G->s), "copy");
  return POSE_OK;
}

// x -> y through layer l. x1 (sequential residual only): where x + attention goes (== x in inference, in place;
// NULL for parallel layouts). y NULL: stop after the MLP activation (a recomputation for the backward).
static pose_status layer_fwd(pose_model *m, int64_t l, fam_acts *A, bf16 *x, bf16 *x1, bf16 *y, const fam_ws *w,
                             const fam_ctx &rc) {
  pose_gpu_model *G = m->gpu;
  const pose_model_cfg *c = &m->cfg;
  const pose_layer_idx *L = &m->layer[l];
  const int64_t N = rc.N, D = c->hidden, I = c->inter, Q = m->qdim;
  POSE_TRY(norm_fwd(m, L->ln1_w, L->ln1_b, x, N, A->h1, A->mu1, A->rs1));
  POSE_TRY(attn_fwd(m, l, A, w, rc));
  if (!c->parallel) {
    POSE_TRY(copy_rows(G, x1, x, N * D));
    POSE_TRY(lin_fwd(G, A->att, N, Q, WC(m, L->o_w), D, WC(m, L->o_b), x1, 1.0f));
    POSE_TRY(norm_fwd(m, L->ln2_w, L->ln2_b, x1, N, A->h2, A->mu2, A->rs2));
    POSE_TRY(mlp_fwd(m, L, A->h2, A, N));
    if (!y) return POSE_OK;
    POSE_TRY(copy_rows(G, y, x1, N * D));
  } else {
    // every read of x (both norms) happens before y, which may be x itself, is written
    if (!c->shared_ln) POSE_TRY(norm_fwd(m, L->ln2_w, L->ln2_b, x, N, A->h2, A->mu2, A->rs2));
    POSE_TRY(mlp_fwd(m, L, c->shared_ln ? A->h1 : A->h2, A, N));
    if (!y) return POSE_OK;
    POSE_TRY(copy_rows(G, y, x, N * D));
    POSE_TRY(lin_fwd(G, A->att, N, Q, WC(m, L->o_w), D, WC(m, L->o_b), y, 1.0f));
  }
  return lin_fwd(G, A->a, N, I, WC(m, L->md_w), D, WC(m, L->md_b), y, 1.0f);
}

// w->dres: gradient at the layer's output on entry, at its input x on return. The order keeps dres intact until the
// attention output's backward has read it (parallel layouts) and reuses dh for the MLP's and the attention's input
// gradients.
static pose_status layer_bwd(pose_model *m, int64_t l, const fam_acts *A, const bf16 *x, const fam_ws *w,
                             const fam_ctx &rc) {
  pose_gpu_model *G = m->gpu;
  const pose_model_cfg *c = &m->cfg;
  const pose_layer_idx *L = &m->layer[l];
  const int64_t N = rc.N, D = c->hidden, I = c->inter, Q = m->qdim, KV = m->kvdim, F = mlp_f(c);
  const bf16 *hm = c->shared_ln ? A->h1 : A->h2; // the MLP's input
  // MLP: da = dres Wd; dg (|du) = act'; dh = dg Wg (GLU: [Wg;Wu], one product)
  bf16 *da = w->dA, *dg = w->dB;
  POSE_TRY(lin_dx(G, w->dres, D, N, D, WC(m, L->md_w), I, da, 0.0f));
  POSE_TRY(lin_dw(G, w->dres, D, N, D, A->a, I, G32(m, L->md_w)));
  POSE_TRY(bias_grad(G, w->dres, D, N, D, G32(m, L->md_b)));
  POSE_TRY(pose_cuda_act_bwd((pose_cuda_act)c->act, A->g, c->glu ? A->g + I : NULL, F, POSE_BF16, N, I, da, dg,
                             c->glu ? dg + I : NULL, F, G->s));
  POSE_TRY(lin_dx(G, dg, F, N, F, WC(m, L->mg_w), D, w->dh, 0.0f));
  POSE_TRY(lin_dw(G, dg, F, N, F, hm, D, G32(m, L->mg_w)));
  POSE_TRY(bias_grad(G, dg, F, N, F, G32(m, L->mg_b)));
  // sequential: dres becomes the gradient at x1 = x + attention
  if (!c->parallel) POSE_TRY(norm_bwd(m, L->ln2_w, L->ln2_b, A->x1, A->mu2, A->rs2, w->dh, N, w->dres, 1));
  // attention output: datt = dres Wo
  bf16 *datt = w->dA, *dq = w->dB, *dkv = w->dB + N * Q;
  POSE_TRY(lin_dx(G, w->dres, D, N, D, WC(m, L->o_w), Q, datt, 0.0f));
  POSE_TRY(lin_dw(G, w->dres, D, N, D, A->att, Q, G32(m, L->o_w)));
  POSE_TRY(bias_grad(G, w->dres, D, N, D, G32(m, L->o_b)));
  // parallel with its own ln2: its input gradient can join dres now (dres is not read again); dh is free after
  if (c->parallel && !c->shared_ln)
    POSE_TRY(norm_bwd(m, L->ln2_w, L->ln2_b, x, A->mu2, A->rs2, w->dh, N, w->dres, 1));
  pose_cuda_attn_dims d;
  attn_dims(m, l, rc, &d);
  const uint16_t *q = (const uint16_t *)A->q, *k = (const uint16_t *)A->kv, *v = (const uint16_t *)(A->kv + KV);
  POSE_TRY(G->ref_attn ? pose_cuda_attn_ref_bwd(&d, q, k, v, (const uint16_t *)A->att, A->lse, (const uint16_t *)datt,
                                                (uint16_t *)dq, (uint16_t *)dkv, (uint16_t *)(dkv + KV), G->s)
                       : pose_cuda_attn_bwd(&d, q, k, v, (const uint16_t *)A->att, A->lse, (const uint16_t *)datt,
                                            (uint16_t *)dq, (uint16_t *)dkv, (uint16_t *)(dkv + KV), G->s));
  POSE_TRY(rope(m, dq, N, Q, c->heads, w->pos, 1));
  POSE_TRY(rope(m, dkv, N, 2 * KV, c->kv_heads, w->pos, 1));
  // GPT-J: the attention's input gradient adds to the MLP's (both read h1)
  const float beta = c->shared_ln ? 1.0f : 0.0f;
  if (c->qkv == POSE_QKV_NEOX) {
    const int64_t P = Q + 2 * KV;
    k_neox_merge<<<pc_grid(N * P, 256), 256, 0, G->s>>>(dq, dkv, w->qkv3, N, c->heads, c->head_dim);
    PC_LAUNCHED("neox qkv merge");
    POSE_TRY(lin_dx(G, w->qkv3, P, N, P, WC(m, L->qkv_w), D, w->dh, beta));
    POSE_TRY(lin_dw(G, w->qkv3, P, N, P, A->h1, D, G32(m, L->qkv_w)));
    POSE_TRY(bias_grad(G, w->qkv3, P, N, P, G32(m, L->qkv_b)));
  } else {
    qkv_ptrs p = qkv_split_ptrs(m, L);
    POSE_TRY(lin_dx(G, dq, Q, N, Q, p.wq, D, w->dh, beta));
    POSE_TRY(lin_dx(G, dkv, 2 * KV, N, 2 * KV, p.wkv, D, w->dh, 1.0f));
    POSE_TRY(lin_dw(G, dq, Q, N, Q, A->h1, D, p.gq));
    POSE_TRY(lin_dw(G, dkv, 2 * KV, N, 2 * KV, A->h1, D, p.gkv));
    POSE_TRY(bias_grad(G, dq, Q, N, Q, p.gbq));
    POSE_TRY(bias_grad(G, dkv, 2 * KV, N, 2 * KV, p.gbkv));
  }
  return norm_bwd(m, L->ln1_w, L->ln1_b, x, A->mu1, A->rs1, w->dh, N, w->dres, 1);
}

// ---- LM head ------------------------------------------------------------------------------------------------------

static unsigned row_blocks(int64_t V) { return (unsigned)(V < 65536 ? V : 65536); }

// The bf16 weight the logits use: the lm_head copy, or (NormHead) its rows normalised into w->hat.
static pose_status head_weight(pose_model *m, const fam_ws *w, const bf16 **W) {
  pose_gpu_model *G = m->gpu;
  if (!m->cfg.norm_head) {
    *W = WC(m, m->lm_w);
    return POSE_OK;
  }
  const int64_t V = m->cfg.vocab, D = m->cfg.hidden;
  if (G->bf16) k_normhead_fwd<bf16><<<row_blocks(V), 256, 0, G->s>>>(WC(m, m->lm_w), V, D, w->hat, w->hnorm);
  else k_normhead_fwd<float><<<row_blocks(V), 256, 0, G->s>>>(W32(m, m->lm_w), V, D, w->hat, w->hnorm);
  PC_LAUNCHED("NormHead");
  *W = w->hat;
  return POSE_OK;
}

static pose_status norm_head_bwd(pose_model *m, const fam_ws *w) {
  pose_gpu_model *G = m->gpu;
  const int64_t V = m->cfg.vocab, D = m->cfg.hidden;
  float *g = G32(m, m->lm_w);
  if (G->bf16) k_normhead_bwd<bf16><<<row_blocks(V), 256, 0, G->s>>>(WC(m, m->lm_w), w->hnorm, w->dhat, V, D, g);
  else k_normhead_bwd<float><<<row_blocks(V), 256, 0, G->s>>>(W32(m, m->lm_w), w->hnorm, w->dhat, V, D, g);
  PC_LAUNCHED("NormHead backward");
  return POSE_OK;
}

// fp32 bias for the fp32 logits GEMM: the master, or under the bf16 policy a converted copy
static pose_status head_bias32(pose_model *m, const fam_ws *w, const float **b) {
  *b = NULL;
  if (m->lm_b < 0) return POSE_OK;
  if (!m->gpu->bf16) {
    *b = W32(m, m->lm_b);
    return POSE_OK;
  }
  POSE_TRY(pose_cuda_convert(w->lmb32, POSE_F32, WC(m, m->lm_b), POSE_BF16, m->cfg.vocab, m->gpu->s));
  *b = w->lmb32;
  return POSE_OK;
}

// ---- the run ---------------------------------------------------------------------------------------------------

static pose_status run_device(pose_model *m, pose_model_run_args *a, const fam_ctx &rc, fam_ws *w) {
  pose_gpu_model *G = m->gpu;
  const pose_model_cfg *c = &m->cfg;
  const int64_t N = rc.N, D = c->hidden, V = c->vocab, Lc = c->layers;
  cudaStream_t s = G->s;
  PC_CU(cudaMemcpyAsync(w->ids, a->ids, sizeof(int64_t) * (size_t)N, cudaMemcpyHostToDevice, s), "copy ids");
  PC_CU(cudaMemcpyAsync(w->pos, a->pos, sizeof(int64_t) * (size_t)N, cudaMemcpyHostToDevice, s), "copy positions");
  if (a->tgt)
    PC_CU(cudaMemcpyAsync(w->tgt, a->tgt, sizeof(int64_t) * (size_t)N, cudaMemcpyHostToDevice, s), "copy targets");
  // the rope state was advanced by the caller for this call's positions (dynamic types change inv_freq)
  PC_CU(cudaMemcpyAsync(G->inv_freq, pose_rope_inv_freq(m->rope), sizeof(float) * (size_t)(m->rot / 2),
                        cudaMemcpyHostToDevice, s), "copy inv_freq");

  POSE_TRY(pose_cuda_embed_fwd(WC(m, m->embed), POSE_BF16, w->ids, N, D, V, w->xs[0], s));
  for (int64_t l = 0; l < Lc; l++) {
    fam_acts *A = &w->acts[rc.train && !rc.rec ? l : 0];
    if (rc.train) POSE_TRY(layer_fwd(m, l, A, w->xs[l], A->x1, w->xs[l + 1], w, rc));
    else POSE_TRY(layer_fwd(m, l, A, w->xs[0], w->xs[0], w->xs[0], w, rc));
  }
  const bf16 *xL = rc.train ? w->xs[Lc] : w->xs[0];
  POSE_TRY(norm_fwd(m, m->final_w, m->final_b, xL, N, w->hf, w->muf, w->rsf));

  const bf16 *Wlm = NULL;
  POSE_TRY(head_weight(m, w, &Wlm));
  if (rc.kv || a->logits) { // fp32 logits: every row, or (decoding) each row's last token
    const float *bias = NULL;
    POSE_TRY(head_bias32(m, w, &bias));
    float *lg = (float *)w->head;
    const int64_t rows = rc.kv ? rc.B : N;
    for (int64_t r0 = 0; r0 < rows; r0 += w->R) {
      const int64_t rr = rows - r0 < w->R ? rows - r0 : w->R;
      // decoding reads rows T-1, 2T-1, ... of hf with a leading dimension of T*D
      const bf16 *h = rc.kv ? w->hf + (r0 * rc.T + rc.T - 1) * D : w->hf + r0 * D;
      POSE_TRY(gemm(G, 0, 1, rr, V, D, h, rc.kv ? rc.T * D : D, Wlm, D, lg, POSE_F32, V, 0.0f, bias));
      PC_CU(cudaMemcpyAsync(a->logits + r0 * V, lg, sizeof(float) * (size_t)(rr * V), cudaMemcpyDeviceToHost, s),
            "copy logits");
    }
    return POSE_OK;
  }
  float *dWlm = c->norm_head ? w->dhat : G32(m, m->lm_w);
  if (rc.train && c->norm_head) PC_CU(cudaMemsetAsync(w->dhat, 0, sizeof(float) * (size_t)(V * D), s), "memset");
  for (int64_t r0 = 0; r0 < N; r0 += w->R) {
    const int64_t rr = N - r0 < w->R ? N - r0 : w->R;
    const bf16 *h = w->hf + r0 * D;
    POSE_TRY(lin_fwd(G, h, rr, D, Wlm, V, WC(m, m->lm_b), w->head, 0.0f));
    if (!rc.train) {
      POSE_TRY(pose_cuda_xent_fwd(w->head, POSE_BF16, V, rr, V, w->tgt + r0, w->nll + r0, NULL, s));
      continue;
    }
    // loss and dlogits in place, then the head's two products from the chunk
    POSE_TRY(pose_cuda_xent_fwd_bwd(w->head, POSE_BF16, V, rr, V, w->tgt + r0, a->scale, w->nll + r0, NULL, w->head,
                                    POSE_BF16, V, s));
    POSE_TRY(lin_dx(G, w->head, V, rr, V, Wlm, D, w->dh + r0 * D, 0.0f));
    POSE_TRY(lin_dw(G, w->head, V, rr, V, h, D, dWlm));
    POSE_TRY(bias_grad(G, w->head, V, rr, V, G32(m, m->lm_b)));
  }
  if (!rc.train) return POSE_OK;
  if (c->norm_head) POSE_TRY(norm_head_bwd(m, w));
  POSE_TRY(norm_bwd(m, m->final_w, m->final_b, xL, w->muf, w->rsf, w->dh, N, w->dres, 0));
  for (int64_t l = Lc - 1; l >= 0; l--) {
    fam_acts *A = &w->acts[rc.rec ? 0 : l];
    if (rc.rec) POSE_TRY(layer_fwd(m, l, A, w->xs[l], A->x1, NULL, w, rc));
    POSE_TRY(layer_bwd(m, l, A, w->xs[l], w, rc));
  }
  return pose_cuda_embed_bwd(w->ids, w->dres, POSE_BF16, N, D, V, c->pad_id, G32(m, m->embed), 1, s);
}

pose_status pc_fam_check(const pose_model *m) {
  const pose_model_cfg *c = &m->cfg;
  // the split/merge kernels and W_pack's row ranges assume full q, k and v (the config parser enforces it)
  if ((c->qkv == POSE_QKV_NEOX || c->qkv == POSE_QKV_WPACK) && (c->kv_heads != c->heads || m->qdim != c->hidden))
    return pose_error(POSE_EUNSUPPORTED, "model: a fused %s q/k/v projection with %lld of %lld key/value heads is not "
                      "supported on the GPU", c->model_type, (long long)c->kv_heads, (long long)c->heads);
  return POSE_OK;
}

pose_status pc_fam_run(pose_model *m, pose_model_run_args *a) {
  pose_gpu_model *G = m->gpu;
  const pose_model_cfg *c = &m->cfg;
  PC_CU(cudaSetDevice(G->dev), "cudaSetDevice");
  fam_ctx rc = {a->B, a->T, a->B * a->T, a->backward, 0, a->logits != NULL, a->kv};
  if (rc.kv && (rc.train || !a->logits || !rc.kv->dev_kv))
    return pose_error(POSE_EINVAL, "decode: a cuda decode step needs a device cache and a logits output");
  if (rc.train && (m->recompute == POSE_RECOMPUTE_OFFLOAD || m->recompute == POSE_RECOMPUTE_SELECTIVE))
    return pose_error(POSE_EUNSUPPORTED, "model: recompute=\"%s\" is implemented for the LLaMA family on the GPU; "
                      "use recompute=\"layer\" for this %s model", pose_recompute_name(m->recompute), c->model_type);
  rc.rec = rc.train && m->recompute == POSE_RECOMPUTE_LAYER;
  if ((a->nll || rc.train) && !a->tgt) return pose_error(POSE_EINVAL, "model: targets are required");
  if (rc.train) POSE_TRY(pose_gpu_model_ensure_grads(m));
  fam_ws w;
  memset(&w, 0, sizeof w);
  const int64_t nx = rc.train ? c->layers + 1 : 1, nsets = rc.train && !rc.rec ? c->layers : 1;
  w.xs = (bf16 **)calloc((size_t)nx, sizeof *w.xs);
  w.acts = (fam_acts *)calloc((size_t)nsets, sizeof *w.acts);
  if (!w.xs || !w.acts) {
    free(w.xs);
    free(w.acts);
    return pose_error(POSE_ENOMEM, "model: out of memory");
  }
  fam_bump b = {NULL, 0};
  fam_layout(m, rc, &w, &b);
  void *mem = NULL;
  pose_status st = pc_scratch_alloc(&mem, b.off, G->s);
  if (st != POSE_OK) {
    free(w.xs);
    free(w.acts);
    return pose_error_prefix(st, "model: activations for %lld tokens (%.2f GB, recompute %s): ", (long long)rc.N,
                             b.off / 1e9, m->recompute == POSE_RECOMPUTE_LAYER ? "layer" : "none");
  }
  b.base = (char *)mem;
  b.off = 0;
  fam_layout(m, rc, &w, &b);
  st = run_device(m, a, rc, &w);
  // per-row NLL to the host (this waits for the whole run)
  if (st == POSE_OK) st = pc_run_finish(m, a, w.nll, rc.N, rc.T, rc.train, rc.kv);
  pc_scratch_free(mem, G->s);
  free(w.xs);
  free(w.acts);
  return st;
}
