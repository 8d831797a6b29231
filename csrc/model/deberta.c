#include "model/deberta.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "model/encoder.h"

const char *const ME_DEBERTA_LAYER[16] = {
    "attention.self.query_proj.weight", "attention.self.key_proj.weight",
    "attention.self.value_proj.weight", "attention.self.query_proj.bias",
    "attention.self.key_proj.bias", "attention.self.value_proj.bias",
    "attention.output.dense.weight", "attention.output.dense.bias",
    "attention.output.LayerNorm.weight", "attention.output.LayerNorm.bias",
    "intermediate.dense.weight", "intermediate.dense.bias", "output.dense.weight",
    "output.dense.bias", "output.LayerNorm.weight", "output.LayerNorm.bias"};

/* make_log_bucket_position in float32 as torch computes it: mid = buckets / 2; inside
 * (-mid, mid) the distance itself; beyond, sign * (ceil(log(|d| / mid) /
 * log(float((max_position - 1) / mid)) * (mid - 1)) + mid), with |d| <= mid kept exact. */
int me_deberta_bucket(int rel, int buckets, int max_position) {
    if (buckets <= 0) return rel;
    const int mid = buckets / 2;
    const int abs_pos = (rel < mid && rel > -mid) ? mid - 1 : abs(rel);
    if (abs_pos <= mid) return rel;
    const float denom = logf((float)((double)(max_position - 1) / mid));
    const float log_pos = ceilf(logf((float)abs_pos / (float)mid) / denom * (float)(mid - 1)) + (float)mid;
    return (int)(rel < 0 ? -log_pos : log_pos);
}

/* c2p / p2c terms are computed: relative attention with at least one of them (without relative
 * attention pos_att_type still counts in the scale, as in transformers) */
static int has_terms(const MeEncoderConfig *c) { return c->relative_attention && c->pos_att; }

int me_deberta_add_params(MeEncoder *enc, MeParamList *pl) {
    const MeEncoderConfig *c = &enc->cfg;
    MeDeberta *d = calloc(1, sizeof(MeDeberta));
    if (!d) return -1;
    enc->deb = d;
    d->layer = calloc((size_t)c->num_layers, sizeof(MeDebertaLayer));
    if (!d->layer) return -1;
    const int H = c->hidden_size;
    d->span = c->position_buckets > 0 ? c->position_buckets : c->max_relative_positions;
    char nm[sizeof(((MeParamInfo *)0)->name)];
    for (int l = 0; l < c->num_layers && c->relative_attention; l++) {
        MeDebertaLayer *dl = &d->layer[l];
        const MeLayerOffsets *o = &enc->lo[l];
        if (c->share_att_key) { /* the key / query blocks of the fused qkv */
            dl->pq_w = o->qkv_w;
            dl->pq_b = o->qkv_b;
            dl->pk_w = o->qkv_w + (size_t)H * H;
            dl->pk_b = o->qkv_b + H;
            continue;
        }
        if (c->pos_att & ME_POS_C2P) {
            snprintf(nm, sizeof nm, "encoder.layer.%d.attention.self.pos_key_proj.weight", l);
            dl->pk_w = me_params_add(pl, nm, H, H, 1);
            snprintf(nm, sizeof nm, "encoder.layer.%d.attention.self.pos_key_proj.bias", l);
            dl->pk_b = me_params_add(pl, nm, H, 0, 1);
        }
        if (c->pos_att & ME_POS_P2C) {
            snprintf(nm, sizeof nm, "encoder.layer.%d.attention.self.pos_query_proj.weight", l);
            dl->pq_w = me_params_add(pl, nm, H, H, 1);
            snprintf(nm, sizeof nm, "encoder.layer.%d.attention.self.pos_query_proj.bias", l);
            dl->pq_b = me_params_add(pl, nm, H, 0, 1);
        }
    }
    if (c->relative_attention)
        d->rel = me_params_add(pl, "encoder.rel_embeddings.weight", 2 * (int64_t)d->span, H, 1);
    if (c->norm_rel_ebd) { /* transformers creates it with or without relative attention */
        d->rln_w = me_params_add(pl, "encoder.LayerNorm.weight", H, 0, 1);
        d->rln_b = me_params_add(pl, "encoder.LayerNorm.bias", H, 0, 1);
    }
    if (c->conv_kernel_size > 0) {
        d->conv_w = me_params_add3(pl, "encoder.conv.conv.weight", H, H / c->conv_groups, c->conv_kernel_size, 1);
        d->conv_b = me_params_add(pl, "encoder.conv.conv.bias", H, 0, 1);
        d->cln_w = me_params_add(pl, "encoder.conv.LayerNorm.weight", H, 0, 1);
        d->cln_b = me_params_add(pl, "encoder.conv.LayerNorm.bias", H, 0, 1);
    }
    return 0;
}

void me_deberta_free(MeEncoder *enc) {
    if (!enc->deb) return;
    free(enc->deb->layer);
    free(enc->deb);
    enc->deb = NULL;
}

void me_deberta_carve(MeEncoder *enc, float *base, size_t *off, int B, int T) {
    MeDeberta *d = enc->deb;
    const MeEncoderConfig *c = &enc->cfg;
    const size_t N = (size_t)B * T, H = c->hidden_size;
    /* not d->pk: NULL when only counting (base NULL); a ConvLayer model only prunes its last layer */
    const int pack = me_encoder_can_pack(enc), last = me_encoder_can_prune_last(enc);
    d->pk = pack || last ? me_carve(base, off, N * (pack ? 3 : 1) * H) : NULL;
    d->qrow = pack || last ? (int32_t *)me_carve(base, off, N) : NULL;
    if (c->conv_kernel_size > 0) {
        d->conv_pre = me_carve(base, off, N * H);
        d->conv_r = me_carve(base, off, N * H);
        d->conv_mean = me_carve(base, off, N);
        d->conv_rstd = me_carve(base, off, N);
        d->conv_out = me_carve(base, off, N * H);
        d->conv_dx = me_carve(base, off, N * H);
    }
    if (!has_terms(c)) return;
    const size_t S2 = 2 * (size_t)d->span;
    d->rel_ln = c->norm_rel_ebd ? me_carve(base, off, S2 * H) : NULL;
    d->rel_mean = me_carve(base, off, S2);
    d->rel_rstd = me_carve(base, off, S2);
    for (int l = 0; l < c->num_layers; l++) {
        MeDebertaLayer *dl = &d->layer[l];
        dl->rel_d = me_carve(base, off, S2 * H);
        dl->posk = c->pos_att & ME_POS_C2P ? me_carve(base, off, S2 * H) : NULL;
        dl->posq = c->pos_att & ME_POS_P2C ? me_carve(base, off, S2 * H) : NULL;
    }
    d->d_rel = me_carve(base, off, S2 * H);
    d->d_tmp = me_carve(base, off, S2 * H);
    d->d_posk = me_carve(base, off, S2 * H);
    d->d_posq = me_carve(base, off, S2 * H);
    d->idx = (int32_t *)me_carve(base, off, 2 * (size_t)T);
    d->dis_scratch = enc->att_scratch;
}

size_t me_deberta_scratch_floats(const MeEncoder *enc, int T) {
    const MeEncoderConfig *c = &enc->cfg;
    if (!has_terms(c)) return 0;
    return enc->be->disentangled_scratch_floats(T, c->hidden_size / c->num_heads, 2 * enc->deb->span);
}

/* The relative embeddings the layers read: the table, or its LayerNorm (norm_rel_ebd). */
static const float *rel_input(const MeEncoder *enc) {
    const MeDeberta *d = enc->deb;
    return enc->cfg.norm_rel_ebd ? d->rel_ln : enc->params + d->rel;
}

void me_deberta_prepare(MeEncoder *enc, int32_t *host_ints) {
    const MeBackend *be = enc->be;
    const MeEncoderConfig *c = &enc->cfg;
    MeDeberta *d = enc->deb;
    const int T = enc->T, S = d->span;
    if (!has_terms(c)) return;
    /* relative position j - i -> row clamp(bucket(i - j) + S, 0, 2S - 1), as c2p_pos (and
     * p2c_pos, which is the same row: the bucket is odd in the distance) */
    d->c0 = 2 * S;
    int hi = 0;
    for (int r = -(T - 1); r <= T - 1; r++) {
        int row = me_deberta_bucket(-r, c->position_buckets, c->max_relative_positions) + S;
        row = row < 0 ? 0 : row > 2 * S - 1 ? 2 * S - 1 : row;
        host_ints[r + T - 1] = row;
        if (row < d->c0) d->c0 = row;
        if (row > hi) hi = row;
    }
    d->nc = hi - d->c0 + 1;
    be->to_device(d->idx, host_ints, sizeof(int32_t) * (2 * (size_t)T - 1));
    if (c->norm_rel_ebd)
        be->layernorm_forward(d->rel_ln, d->rel_mean, d->rel_rstd, enc->params + d->rel,
                              enc->params + d->rln_w, enc->params + d->rln_b, 2 * S,
                              c->hidden_size, c->layer_norm_eps);
}

static int nterms(const MeEncoderConfig *c) {
    return 1 + !!(c->pos_att & ME_POS_C2P) + !!(c->pos_att & ME_POS_P2C);
}

void me_deberta_attention_forward(MeEncoder *enc, int l, const float *q, float *ctx, float p_att, float p_rel,
                                  uint64_t seed, uint64_t att_site, uint64_t rel_site) {
    const MeBackend *be = enc->be;
    const MeEncoderConfig *c = &enc->cfg;
    MeDeberta *d = enc->deb;
    MeDebertaLayer *dl = &d->layer[l];
    MeLayerActs *a = &enc->la[l];
    const float *P = enc->params;
    const int B = enc->B, T = enc->T, H = c->hidden_size, NH = c->num_heads, HS = H / NH,
              S2 = 2 * d->span;
    const float scale = 1.0f / sqrtf((float)HS * (float)nterms(c));
    const float *bias = NULL;
    if (has_terms(c)) {
        /* pos_dropout on the relative embeddings, one mask per layer (of the whole table: at the rows
         * the distances reach, its elements from c0 * H on), and their projections */
        const size_t off = (size_t)d->c0 * H;
        be->dropout_forward(dl->rel_d + off, rel_input(enc) + off, (size_t)d->nc * H, p_rel, seed,
                            me_dropout_site_at(seed, rel_site, off));
        if (dl->posk)
            be->matmul_forward(dl->posk + off, dl->rel_d + off, P + dl->pk_w, P + dl->pk_b, d->nc, H, H);
        if (dl->posq)
            be->matmul_forward(dl->posq + off, dl->rel_d + off, P + dl->pq_w, P + dl->pq_b, d->nc, H, H);
        be->disentangled_forward(enc->d_scores, a->qkv, dl->posk, dl->posq, d->idx, scale, B, T, NH, HS,
                                 S2, d->dis_scratch);
        bias = enc->d_scores;
    }
    if (q)
        be->attention_rows_forward(ctx, a->probs, q, H, a->qkv + H, a->qkv + 2 * H, 3 * H, enc->mask, bias, 1,
                                   scale, 1, enc->qstart, enc->qpos, B, T, NH, HS, p_att, seed, att_site,
                                   enc->att_scratch);
    else
        be->attention_bias_forward(ctx, a->probs, a->qkv, enc->mask, bias, 1, scale, 1, B, T, NH, HS,
                                   p_att, seed, att_site, enc->att_scratch);
}

void me_deberta_attention_backward(MeEncoder *enc, int l, const float *q, float *dq, const float *dctx,
                                   float p_att, float p_rel, uint64_t seed, uint64_t att_site,
                                   uint64_t rel_site) {
    const MeBackend *be = enc->be;
    const MeEncoderConfig *c = &enc->cfg;
    MeDeberta *d = enc->deb;
    MeDebertaLayer *dl = &d->layer[l];
    const MeLayerActs *a = &enc->la[l];
    const float *P = enc->params;
    float *G = enc->grads;
    const int B = enc->B, T = enc->T, H = c->hidden_size, NH = c->num_heads, HS = H / NH,
              S2 = 2 * d->span;
    const float scale = 1.0f / sqrtf((float)HS * (float)nterms(c));
    float *dscores = has_terms(c) ? enc->d_scores : NULL;
    if (q) { /* the read rows' dq to their rows of d_qkv, 0 in the other rows' q blocks */
        be->zero(enc->d_qkv, sizeof(float) * (size_t)B * T * 3 * H);
        be->attention_rows_backward(dq, enc->d_qkv + H, enc->d_qkv + 2 * H, dscores, dctx, q, H, a->qkv + H,
                                    a->qkv + 2 * H, 3 * H, a->probs, enc->mask, scale, 1, enc->qstart, enc->qpos, B,
                                    T, NH, HS, p_att, seed, att_site, enc->att_scratch);
        be->embedding_backward(enc->d_qkv, dq, d->qrow, enc->M, H, -1);
    } else {
        be->attention_bias_backward(enc->d_qkv, dscores, dctx, a->qkv, a->probs, enc->mask, scale, 1, B, T, NH,
                                    HS, p_att, seed, att_site, enc->att_scratch);
    }
    if (!has_terms(c)) return;
    /* the rows c0 .. c0 + nc - 1, the only ones read (d_rel is zero elsewhere) */
    const size_t off = (size_t)d->c0 * H, n = (size_t)d->nc * H;
    if (dl->posk) be->zero(d->d_posk + off, n * sizeof(float));
    if (dl->posq) be->zero(d->d_posq + off, n * sizeof(float));
    be->disentangled_backward(enc->d_qkv, dl->posk ? d->d_posk : NULL, dl->posq ? d->d_posq : NULL,
                              enc->d_scores, a->qkv, dl->posk, dl->posq, d->idx, scale, B, T, NH, HS, S2,
                              d->dis_scratch);
    /* through the projections (with share_att_key into the layer's key / query weights) */
    int acc = 0;
    if (dl->posk) {
        be->matmul_backward(d->d_tmp + off, G + dl->pk_w, G + dl->pk_b, d->d_posk + off, dl->rel_d + off,
                            P + dl->pk_w, d->nc, H, H, 0);
        acc = 1;
    }
    if (dl->posq)
        be->matmul_backward(d->d_tmp + off, G + dl->pq_w, G + dl->pq_b, d->d_posq + off, dl->rel_d + off,
                            P + dl->pq_w, d->nc, H, H, acc);
    be->dropout_backward(d->d_tmp + off, d->d_tmp + off, n, p_rel, seed, me_dropout_site_at(seed, rel_site, off));
    be->add_forward(d->d_rel + off, d->d_rel + off, d->d_tmp + off, n);
}

void me_deberta_backward_begin(MeEncoder *enc) {
    if (!has_terms(&enc->cfg)) return;
    const MeDeberta *d = enc->deb;
    enc->be->zero(d->d_rel, 2 * (size_t)d->span * enc->cfg.hidden_size * sizeof(float));
}

void me_deberta_backward_end(MeEncoder *enc) {
    const MeEncoderConfig *c = &enc->cfg;
    const MeDeberta *d = enc->deb;
    const int H = c->hidden_size;
    float *G = enc->grads;
    if (c->zero_key_biases && c->relative_attention && (c->pos_att & ME_POS_C2P))
        for (int l = 0; l < c->num_layers; l++) /* v1's pos_proj has no bias: its slot stays 0 */
            enc->be->zero(G + d->layer[l].pk_b, (size_t)H * sizeof(float));
    if (!has_terms(c)) return;
    const int S2 = 2 * d->span;
    if (c->norm_rel_ebd)
        enc->be->layernorm_backward(G + d->rel, G + d->rln_w, G + d->rln_b, d->d_rel,
                                    enc->params + d->rel, d->rel_mean, d->rel_rstd,
                                    enc->params + d->rln_w, S2, H, 1);
    else
        enc->be->add_forward(G + d->rel, G + d->rel, d->d_rel, (size_t)S2 * H);
}

void me_deberta_conv_forward(MeEncoder *enc, const float *x0, const float *h0, float p, uint64_t site) {
    const MeBackend *be = enc->be;
    const MeEncoderConfig *c = &enc->cfg;
    MeDeberta *d = enc->deb;
    const float *P = enc->params;
    const int B = enc->B, T = enc->T, N = B * T, H = c->hidden_size;
    be->conv1d_forward(d->conv_pre, x0, P + d->conv_w, P + d->conv_b, B, T, H, c->conv_kernel_size,
                       c->conv_groups);
    be->mask_rows_forward(d->conv_pre, enc->mask, N, H);
    be->dropout_forward(d->conv_pre, d->conv_pre, (size_t)N * H, p, enc->seed, site);
    be->gelu_forward(d->conv_r, NULL, d->conv_pre, (size_t)N * H, (MeActivation)c->conv_act);
    be->add_forward(d->conv_r, d->conv_r, h0, (size_t)N * H);
    be->layernorm_forward(d->conv_out, d->conv_mean, d->conv_rstd, d->conv_r, P + d->cln_w,
                          P + d->cln_b, N, H, c->layer_norm_eps);
    be->mask_rows_forward(d->conv_out, enc->mask, N, H);
}

void me_deberta_conv_backward(MeEncoder *enc, float *dh0, float *dout, const float *x0,
                              float *scratch, float p, uint64_t site) {
    const MeBackend *be = enc->be;
    const MeEncoderConfig *c = &enc->cfg;
    MeDeberta *d = enc->deb;
    const float *P = enc->params;
    float *G = enc->grads;
    const int B = enc->B, T = enc->T, N = B * T, H = c->hidden_size;
    /* dh0 = d(conv_r): the residual's gradient and the activation's */
    be->mask_rows_backward(dout, enc->mask, N, H);
    be->layernorm_backward(dh0, G + d->cln_w, G + d->cln_b, dout, d->conv_r, d->conv_mean,
                           d->conv_rstd, P + d->cln_w, N, H, 0);
    be->gelu_forward(NULL, scratch, d->conv_pre, (size_t)N * H, (MeActivation)c->conv_act);
    be->gelu_backward(scratch, scratch, dh0, (size_t)N * H);
    be->dropout_backward(scratch, scratch, (size_t)N * H, p, enc->seed, site);
    be->mask_rows_backward(scratch, enc->mask, N, H);
    be->conv1d_backward(d->conv_dx, G + d->conv_w, G + d->conv_b, scratch, x0, P + d->conv_w, B, T, H,
                        c->conv_kernel_size, c->conv_groups);
}
