/* Causal multi-head attention on the CPU at any length, without a T x T buffer: queries are processed in tiles
 * against key tiles with an online softmax (flash-attention style); the forward saves one log-sum-exp per query
 * row and the backward recomputes the scores tile by tile from it. Causality is over token index (key j is visible
 * to query i when j <= i); positions only enter through the rotary angles applied before. Grouped-query attention
 * (Hkv divides Hq) and a sliding window over token index (Mistral: i - j < window) are supported. */
#ifndef POSE_ATTENTION_H
#define POSE_ATTENTION_H

#include <stdint.h>

typedef struct {
  int64_t B;          /* batch rows */
  int64_t Tq, Tk;     /* queries and keys per row; query i has token index q_off + i and sees keys <= that */
  int64_t q_off;      /* 0 for self-attention over one window; the cache length when appending to a KV cache */
  int64_t Hq, Hkv, D; /* query heads, key/value heads, head dim */
  int64_t window;     /* 0 = none */
  float scale;        /* usually 1/sqrt(D) */
  /* strides in floats: q, o, dq, do use (q_bstride, q_rstride); k, v, dk, dv use (kv_bstride, kv_rstride); the head
   * h of token t in batch row b starts at b*bstride + t*rstride + h*D */
  int64_t q_bstride, q_rstride, kv_bstride, kv_rstride;
  int64_t tile_q, tile_k; /* 0 = defaults */
} pose_attn_dims;

/* Fills strides for contiguous [B,Tq,Hq,D] queries and [B,Tk,Hkv,D] keys, q_off = Tk - Tq, scale 1/sqrt(D). */
void pose_attn_dims_init(pose_attn_dims *d, int64_t B, int64_t Tq, int64_t Tk, int64_t Hq, int64_t Hkv, int64_t D,
                         int64_t window);

/* o gets the attention output (same layout as q); lse [B][Hq][Tq] (may be NULL) the per-row log-sum-exp of the
 * scaled scores. Returns 0, or -1 when out of memory. */
int pose_attention_fwd(const pose_attn_dims *d, const float *q, const float *k, const float *v, float *o, float *lse);
/* Gradients for dO; dq, dk, dv are overwritten. Needs the forward's o and lse. Returns 0, or -1 when out of memory. */
int pose_attention_bwd(const pose_attn_dims *d, const float *q, const float *k, const float *v, const float *o,
                       const float *lse, const float *dout, float *dq, float *dk, float *dv);

#endif
