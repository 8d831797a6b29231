/* DeBERTa-v2/v3's pieces of the encoder (encoder.c runs the layers and calls these): the
 * relative embeddings (an optional LayerNorm, per-layer dropout and projections by the layer's
 * key/query weights or its own pos_key_proj / pos_query_proj), the log-bucket relative
 * positions exactly as transformers computes them, and the disentangled attention (content to
 * content plus c2p and p2c, scaled by 1/sqrt(head_size * (1 + #terms)), query x key masking). */
#ifndef MULTIENC_DEBERTA_H
#define MULTIENC_DEBERTA_H

#include <stddef.h>
#include <stdint.h>

#include "model/params.h"

struct MeEncoder;

typedef struct {
    size_t pk_w, pk_b, pq_w, pq_b; /* the projections of the relative embeddings (shared: the
                                      layer's key / query weights in the fused qkv) */
    float *rel_d;                  /* the layer's dropped-out relative embeddings (train) */
    float *posk, *posq;            /* [2S, D] projected relative embeddings (c2p / p2c) */
} MeDebertaLayer;

typedef struct MeDeberta {
    int span;                 /* S: position_buckets > 0 ? position_buckets : max_relative_positions */
    size_t rel, rln_w, rln_b; /* encoder.rel_embeddings [2S, H]; encoder.LayerNorm (norm_rel_ebd) */
    MeDebertaLayer *layer;    /* [num_layers] */
    float *rel_ln, *rel_mean, *rel_rstd; /* the (normalised) relative embeddings [2S, H] */
    float *d_rel, *d_tmp, *d_posk, *d_posq;
    float *dis_scratch;       /* the disentangled ops' scratch: the encoder's att_scratch (see
                                 me_deberta_scratch_floats) */
    float *pk;                /* [B*T, 3H] (me_encoder_can_pack; [B*T, H] for a ConvLayer model, whose
                                 last layer alone prunes): packed, the real rows' fused qkv [R, 3H]
                                 before they go to their rows of the batch (their gradient on the way
                                 back); from the last layer's forward to its attention's backward, when
                                 it computes the read rows only, their queries [M, H] */
    int32_t *qrow;            /* device, with pk: the read rows' q blocks as rows of a [B*T, 3H] qkv
                                 viewed as [3*B*T, H] (3 * enc->sel) [M] */
    int32_t *idx;             /* row of the relative embeddings per relative position [2T - 1] */
    int c0, nc;               /* the rows idx reaches, [c0, c0 + nc): the only ones dropped out, projected
                                 and given gradients (the others' projections are never read) */
    /* v2's ConvLayer (conv_kernel_size > 0): encoder.conv.{conv,LayerNorm} */
    size_t conv_w, conv_b, cln_w, cln_b;
    float *conv_pre, *conv_r, *conv_mean, *conv_rstd, *conv_out, *conv_dx; /* [N, H] / [N] */
} MeDeberta;

/* HF names of a layer's 16 tensors in encoder.c's layer order. */
extern const char *const ME_DEBERTA_LAYER[16];

/* transformers' make_log_bucket_position(relative_pos) for one query - key distance
 * (position_buckets <= 0: the distance itself). */
int me_deberta_bucket(int relative_pos, int position_buckets, int max_relative_positions);

/* Append the relative-attention tensors (after the layers) to pl; allocates enc->deb. 0, or -1
 * when out of memory. */
int me_deberta_add_params(struct MeEncoder *enc, MeParamList *pl);
void me_deberta_free(struct MeEncoder *enc);

/* Carve DeBERTa's workspace for (B, T) (base NULL: count only), after the encoder's att_scratch. */
void me_deberta_carve(struct MeEncoder *enc, float *base, size_t *off, int B, int T);
/* The floats of scratch the disentangled terms need at length T (0 without them): they share the
 * attention's scratch, which the encoder sizes for both (the terms run before the attention in the
 * forward and after it in the backward). */
size_t me_deberta_scratch_floats(const struct MeEncoder *enc, int T);

/* v2's ConvLayer after layer 0: conv_out = mask * LN(h0 + act(dropout(mask * conv(x0)))), where x0
 * is the embedding output and h0 layer 0's output. */
void me_deberta_conv_forward(struct MeEncoder *enc, const float *x0, const float *h0, float p,
                             uint64_t site);
/* Its backward given d(conv_out) in dout (masked in place): d(h0) into dh0, d(x0)'s share into
 * conv_dx, the parameters' gradients; scratch [N, H]. */
void me_deberta_conv_backward(struct MeEncoder *enc, float *dh0, float *dout, const float *x0,
                              float *scratch, float p, uint64_t site);

/* Once per forward, before the layers: the relative rows per distance and the normalised
 * relative embeddings. host_ints: host scratch of at least 2T ints. */
void me_deberta_prepare(struct MeEncoder *enc, int32_t *host_ints);

/* Layer l's attention with the disentangled bias (computed for every row) from its qkv [B*T, 3H] on
 * the batch layout, probs saved: every query row (q NULL; ctx [B*T, H]) or only the read rows' of
 * the last forward (enc->M of them, enc->qstart / enc->qpos): q [M, H] their queries, ctx [M, H]. */
void me_deberta_attention_forward(struct MeEncoder *enc, int l, const float *q, float *ctx, float p_att,
                                  float p_rel, uint64_t seed, uint64_t att_site, uint64_t rel_site);
/* Its backward, q as in the forward: d(ctx) -> enc->d_qkv (with q, the read rows' query gradient
 * goes through dq [M, H], scratch, to their rows), the projections' and relative embeddings'
 * gradients. */
void me_deberta_attention_backward(struct MeEncoder *enc, int l, const float *q, float *dq, const float *dctx,
                                   float p_att, float p_rel, uint64_t seed, uint64_t att_site,
                                   uint64_t rel_site);
/* Zero the relative embeddings' gradient accumulator (start of backward) / pass it through the
 * LayerNorm into the table's gradient and clear v1's c2p key bias gradients (end of backward). */
void me_deberta_backward_begin(struct MeEncoder *enc);
void me_deberta_backward_end(struct MeEncoder *enc);

#endif
