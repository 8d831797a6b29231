#include "model/encoder.h"
#include "model/deberta.h"
#include "model/modernbert.h"
#include "model/mpnet.h"
#include "model/profile.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Dropout sites: one per (layer, place); attention adds b*NH + h (b counted from row0). */
#define SITE_EMB 1ULL
#define SITE(layer, kind) ((((uint64_t)(layer) + 1) << 40) | ((uint64_t)(kind) << 36))
enum { SITE_ATT = 1, SITE_ATT_OUT = 2, SITE_FFN_OUT = 3, SITE_REL = 4 /* DeBERTa's pos_dropout */,
       SITE_CONV = 5 /* DeBERTa-v2's ConvLayer */ };

/* The hidden state after layer application l: its output, or after layer 0 DeBERTa-v2's ConvLayer. */
static const float *layer_output(const MeEncoder *enc, int l) {
    return l == 0 && enc->cfg.conv_kernel_size > 0 ? enc->deb->conv_out : enc->la[l].h2;
}

/* ------------------------------------------------------------ parameters */

static const char *const FAMILY_NAMES[] = {"BERT", "RoBERTa", "ELECTRA", "DistilBERT", "ALBERT", "MPNet",
                                            "DeBERTa-v2"};

/* Position ids from pad_token_id + 1 over the real tokens (RoBERTa's, MPNet's) */
static int roberta_positions(const MeEncoderConfig *c) {
    return c->family == ME_FAMILY_ROBERTA || c->family == ME_FAMILY_MPNET;
}

#define POS(field)                                                                           \
    if (c->field <= 0) return me_error(err, ME_ERR_VALUE, "config: " #field " must be > 0, got %d", c->field)

int me_encoder_check_sizes(const MeEncoderConfig *c, char *err) {
    POS(vocab_size);
    POS(hidden_size);
    POS(num_layers);
    POS(num_heads);
    POS(intermediate_size);
    POS(max_position_embeddings);
    return ME_OK;
}

static int check_config(const MeEncoderConfig *c, char *err) {
    int st = me_encoder_check_sizes(c, err);
    if (st) return st;
    POS(embedding_size);
#undef POS
    if (c->num_groups <= 0 || c->inner_group_num <= 0)
        return me_error(err, ME_ERR_VALUE,
                        "config: num_hidden_groups and inner_group_num must be > 0, got %d and %d",
                        c->num_groups, c->inner_group_num);
    if (c->family < ME_FAMILY_BERT || c->family > ME_FAMILY_LAST)
        return me_error(err, ME_ERR_VALUE, "config: unknown model family %d", c->family);
    const char *fam = FAMILY_NAMES[c->family];
    if (c->hidden_size % c->num_heads)
        return me_error(err, ME_ERR_VALUE,
                        "config: hidden_size %d is not a multiple of num_attention_heads %d",
                        c->hidden_size, c->num_heads);
    const int no_types = c->family == ME_FAMILY_DISTILBERT || c->family == ME_FAMILY_MPNET;
    const int deberta = c->family == ME_FAMILY_DEBERTA_V2;
    if (deberta ? c->type_vocab_size < 0 : no_types ? c->type_vocab_size != 0 : c->type_vocab_size <= 0)
        return me_error(err, ME_ERR_VALUE,
                        no_types
                            ? "config: %s has no token types (type_vocab_size must be 0, got %d)"
                            : "config: %s needs type_vocab_size > 0, got %d",
                        fam, c->type_vocab_size);
    if (c->task_type_vocab_size < 0 || (c->task_type_vocab_size > 0 && c->family != ME_FAMILY_BERT))
        return me_error(err, ME_ERR_VALUE,
                        "config: task type embeddings (task_type_vocab_size %d) are ERNIE's, a BERT-family model's; "
                        "%s has none", c->task_type_vocab_size, fam);
    if (c->activation != ME_ACT_GELU && c->activation != ME_ACT_GELU_TANH)
        return me_error(err, ME_ERR_VALUE, "config: unknown activation %d", c->activation);
    if (!(c->hidden_dropout >= 0.0f && c->hidden_dropout < 1.0f) ||
        !(c->attention_dropout >= 0.0f && c->attention_dropout < 1.0f))
        return me_error(err, ME_ERR_VALUE, "config: dropout probabilities must be in [0, 1)");
    if (!(c->layer_norm_eps > 0.0f))
        return me_error(err, ME_ERR_VALUE, "config: layer_norm_eps must be > 0");
    if (c->embedding_size != c->hidden_size && c->family != ME_FAMILY_ELECTRA &&
        c->family != ME_FAMILY_ALBERT && !deberta)
        return me_error(err, ME_ERR_VALUE,
                        "config: embedding_size != hidden_size is only supported for ELECTRA, "
                        "ALBERT and DeBERTa, not %s", fam);
    if (!deberta && (!c->position_biased_input || c->relative_attention || c->pos_att ||
                     c->share_att_key || c->norm_rel_ebd || c->zero_key_biases))
        return me_error(err, ME_ERR_VALUE,
                        "config: relative attention and position_biased_input are DeBERTa's, not %s's",
                        fam);
    if (deberta && c->relative_attention && c->max_relative_positions < 1)
        return me_error(err, ME_ERR_VALUE, "config: max_relative_positions must be >= 1, got %d",
                        c->max_relative_positions);
    if (deberta && c->relative_attention && c->position_buckets == 1)
        return me_error(err, ME_ERR_VALUE, "config: position_buckets must be -1 (none) or >= 2, got 1");
    if (c->conv_kernel_size != 0 &&
        (!deberta || c->conv_kernel_size < 0 || c->conv_kernel_size % 2 == 0 || c->conv_groups <= 0 ||
         c->hidden_size % c->conv_groups ||
         (c->conv_act != ME_ACT_GELU && c->conv_act != ME_ACT_GELU_TANH)))
        return me_error(err, ME_ERR_VALUE,
                        "config: the convolution layer is DeBERTa-v2's and needs an odd conv_kernel_size, "
                        "conv_groups dividing hidden_size and a GELU conv_act (got %d, %d, %d for %s)",
                        c->conv_kernel_size, c->conv_groups, c->conv_act, fam);
    if (deberta && (c->pos_att & ~(ME_POS_C2P | ME_POS_P2C)))
        return me_error(err, ME_ERR_VALUE, "config: unknown pos_att_type bits %d", c->pos_att);
    if ((c->num_groups != 1 || c->inner_group_num != 1) && c->family != ME_FAMILY_ALBERT)
        return me_error(err, ME_ERR_VALUE,
                        "config: shared layer groups (num_hidden_groups, inner_group_num) are "
                        "ALBERT's, not %s's", fam);
    if (c->pad_token_id < -1 || c->pad_token_id >= c->vocab_size)
        return me_error(err, ME_ERR_VALUE, "config: pad_token_id %d outside the vocabulary",
                        c->pad_token_id);
    if (c->family == ME_FAMILY_ROBERTA && c->pad_token_id < 0)
        return me_error(err, ME_ERR_VALUE, "config: RoBERTa needs a pad_token_id");
    if (c->family == ME_FAMILY_MPNET && c->pad_token_id != ME_MPNET_PADDING_IDX)
        return me_error(err, ME_ERR_VALUE,
                        "config: MPNet's padding index is %d (MPNetEmbeddings), got pad_token_id %d",
                        ME_MPNET_PADDING_IDX, c->pad_token_id);
    if ((c->family == ME_FAMILY_MPNET) != (c->relative_buckets != 0))
        return me_error(err, ME_ERR_VALUE,
                        "config: relative_attention_num_buckets is MPNet's (and required there), got %d "
                        "for %s", c->relative_buckets, fam);
    if (c->family == ME_FAMILY_MPNET && c->relative_buckets < ME_MPNET_BUCKETS)
        return me_error(err, ME_ERR_VALUE,
                        "config: relative_attention_num_buckets %d is below the %d buckets transformers' "
                        "MPNet computes positions into", c->relative_buckets, ME_MPNET_BUCKETS);
    if (roberta_positions(c) && c->max_position_embeddings <= c->pad_token_id + 1)
        return me_error(err, ME_ERR_VALUE,
                        "config: max_position_embeddings %d leaves no positions after padding_idx %d",
                        c->max_position_embeddings, c->pad_token_id);
    return ME_OK;
}

/* HF names of a layer weight set's tensors, in buffer order: q, k, v weights, q, k, v biases
 * (consecutive: the fused qkv weight and bias), then attention output dense, its LayerNorm,
 * FFN in, FFN out, the output LayerNorm (weight, bias each). */
enum { LAYER_TENSORS = 16 };
static const char *const BERT_LAYER[LAYER_TENSORS] = {
    "attention.self.query.weight", "attention.self.key.weight", "attention.self.value.weight",
    "attention.self.query.bias", "attention.self.key.bias", "attention.self.value.bias",
    "attention.output.dense.weight", "attention.output.dense.bias",
    "attention.output.LayerNorm.weight", "attention.output.LayerNorm.bias",
    "intermediate.dense.weight", "intermediate.dense.bias", "output.dense.weight",
    "output.dense.bias", "output.LayerNorm.weight", "output.LayerNorm.bias"};
static const char *const DISTILBERT_LAYER[LAYER_TENSORS] = {
    "attention.q_lin.weight", "attention.k_lin.weight", "attention.v_lin.weight",
    "attention.q_lin.bias", "attention.k_lin.bias", "attention.v_lin.bias",
    "attention.out_lin.weight", "attention.out_lin.bias", "sa_layer_norm.weight",
    "sa_layer_norm.bias", "ffn.lin1.weight", "ffn.lin1.bias", "ffn.lin2.weight", "ffn.lin2.bias",
    "output_layer_norm.weight", "output_layer_norm.bias"};
static const char *const ALBERT_LAYER[LAYER_TENSORS] = {
    "attention.query.weight", "attention.key.weight", "attention.value.weight",
    "attention.query.bias", "attention.key.bias", "attention.value.bias",
    "attention.dense.weight", "attention.dense.bias", "attention.LayerNorm.weight",
    "attention.LayerNorm.bias", "ffn.weight", "ffn.bias", "ffn_output.weight", "ffn_output.bias",
    "full_layer_layer_norm.weight", "full_layer_layer_norm.bias"};

/* Append weight set s's tensors to pl, its offsets into o. */
static void add_layer_set(MeParamList *pl, MeLayerOffsets *o, const MeEncoderConfig *c, int s) {
    const int H = c->hidden_size, I = c->intermediate_size;
    const char *const *names = c->family == ME_FAMILY_DISTILBERT ? DISTILBERT_LAYER
                               : c->family == ME_FAMILY_ALBERT   ? ALBERT_LAYER
                               : c->family == ME_FAMILY_MPNET    ? ME_MPNET_LAYER
                               : c->family == ME_FAMILY_DEBERTA_V2 ? ME_DEBERTA_LAYER
                                                                 : BERT_LAYER;
    char prefix[80], nm[sizeof(((MeParamInfo *)0)->name)];
    if (c->family == ME_FAMILY_DISTILBERT)
        snprintf(prefix, sizeof prefix, "transformer.layer.%d.", s);
    else if (c->family == ME_FAMILY_ALBERT)
        snprintf(prefix, sizeof prefix, "encoder.albert_layer_groups.%d.albert_layers.%d.",
                 s / c->inner_group_num, s % c->inner_group_num);
    else
        snprintf(prefix, sizeof prefix, "encoder.layer.%d.", s);
    /* shape (d0, d1) per tensor; pad = 0 keeps q/k/v weights and biases contiguous */
    const int d0[LAYER_TENSORS] = {H, H, H, H, H, H, H, H, H, H, I, I, H, H, H, H};
    const int d1[LAYER_TENSORS] = {H, H, H, 0, 0, 0, H, 0, 0, 0, H, 0, I, 0, 0, 0};
    const int pad[LAYER_TENSORS] = {0, 0, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    size_t off[LAYER_TENSORS];
    for (int t = 0; t < LAYER_TENSORS; t++) {
        snprintf(nm, sizeof nm, "%s%s", prefix, names[t]);
        off[t] = me_params_add(pl, nm, d0[t], d1[t], pad[t]);
    }
    *o = (MeLayerOffsets){off[0], off[3], off[6], off[7], off[8], off[9],
                          off[10], off[11], off[12], off[13], off[14], off[15]};
}

/* ALBERT's group of layer i: int(i / (num_hidden_layers / num_hidden_groups)) in doubles, as
 * AlbertTransformer computes it in Python. */
static int albert_group(const MeEncoderConfig *c, int i) {
    int g = (int)((double)i / ((double)c->num_layers / (double)c->num_groups));
    return g < c->num_groups ? g : c->num_groups - 1;
}

/* The parameter table of enc->cfg into *pl, with the offsets into enc's fields (enc->lo, enc->la,
 * enc->app_set and DeBERTa's enc->deb allocated here); pl->failed on an allocation failure.
 * Trainable parameters first (enc->ntrain floats), then frozen sinusoidal positions. */
static void lay_out(MeEncoder *enc, MeParamList *pl) {
    const MeEncoderConfig *cfg = &enc->cfg;
    const int H = cfg->hidden_size, E = cfg->embedding_size;
    const int albert = cfg->family == ME_FAMILY_ALBERT, deberta = cfg->family == ME_FAMILY_DEBERTA_V2;
    enc->has_proj = albert || E != H;
    enc->nsets = albert ? cfg->num_groups * cfg->inner_group_num : cfg->num_layers;
    enc->napps = albert ? cfg->num_layers * cfg->inner_group_num : cfg->num_layers;
    enc->wte = me_params_add(pl, "embeddings.word_embeddings.weight", cfg->vocab_size, E, 1);
    if (!cfg->frozen_positions && cfg->position_biased_input)
        enc->wpe = me_params_add(pl, "embeddings.position_embeddings.weight",
                                 cfg->max_position_embeddings, E, 1);
    if (cfg->type_vocab_size > 0)
        enc->wtt = me_params_add(pl, "embeddings.token_type_embeddings.weight",
                                 cfg->type_vocab_size, E, 1);
    if (cfg->task_type_vocab_size > 0)
        enc->wtk = me_params_add(pl, "embeddings.task_type_embeddings.weight", cfg->task_type_vocab_size, E, 1);
    /* DeBERTa projects (without bias) before its LayerNorm, over the hidden size */
    if (deberta && enc->has_proj) enc->proj_w = me_params_add(pl, "embeddings.embed_proj.weight", H, E, 1);
    enc->eln_w = me_params_add(pl, "embeddings.LayerNorm.weight", deberta ? H : E, 0, 1);
    enc->eln_b = me_params_add(pl, "embeddings.LayerNorm.bias", deberta ? H : E, 0, 1);
    if (enc->has_proj && !deberta) {
        const char *w = albert ? "encoder.embedding_hidden_mapping_in.weight" : "embeddings_project.weight";
        const char *b = albert ? "encoder.embedding_hidden_mapping_in.bias" : "embeddings_project.bias";
        enc->proj_w = me_params_add(pl, w, H, E, 1);
        enc->proj_b = me_params_add(pl, b, H, 0, 1);
    }
    enc->lo = calloc((size_t)enc->nsets, sizeof(MeLayerOffsets));
    enc->la = calloc((size_t)enc->napps, sizeof(MeLayerActs));
    enc->app_set = calloc((size_t)enc->napps, sizeof(int));
    if (!enc->lo || !enc->la || !enc->app_set) pl->failed = 1;
    for (int s = 0; s < enc->nsets && !pl->failed; s++) add_layer_set(pl, &enc->lo[s], cfg, s);
    for (int a = 0; a < enc->napps && !pl->failed; a++)
        enc->app_set[a] = albert ? albert_group(cfg, a / cfg->inner_group_num) * cfg->inner_group_num +
                                       a % cfg->inner_group_num
                                 : a;
    if (cfg->relative_buckets)
        enc->relb = me_params_add(pl, "encoder.relative_attention_bias.weight", cfg->relative_buckets,
                                  cfg->num_heads, 1);
    if (deberta && !pl->failed && me_deberta_add_params(enc, pl)) pl->failed = 1;
    enc->ntrain = pl->nfloats;
    if (cfg->frozen_positions)
        enc->wpe = me_params_add(pl, "embeddings.position_embeddings.weight",
                                 cfg->max_position_embeddings, E, 1);
}

int me_encoder_param_table(const MeEncoderConfig *cfg, MeParamInfo **info, int *n, size_t *nfloats, char *err) {
    *info = NULL;
    const int modern = cfg->family == ME_FAMILY_MODERNBERT; /* checked by its own lay-out */
    int st = modern ? ME_OK : check_config(cfg, err);
    if (st) return st;
    MeEncoder *scratch = calloc(1, sizeof(MeEncoder)); /* no backend: nothing of it is allocated */
    if (!scratch) return me_error(err, ME_ERR_NOMEM, "out of memory laying out the encoder's parameters");
    scratch->cfg = *cfg;
    MeParamList pl = {0};
    if (modern)
        st = me_modernbert_lay_out(scratch, &pl, err);
    else
        lay_out(scratch, &pl);
    me_encoder_free(scratch);
    if (st) {
        free(pl.info);
        return st;
    }
    if (pl.failed) {
        free(pl.info);
        return me_error(err, ME_ERR_NOMEM, "out of memory laying out the encoder's parameters");
    }
    *info = pl.info;
    *n = pl.n;
    *nfloats = pl.nfloats;
    return ME_OK;
}

int me_alloc_failed(const MeBackend *be, char *err, const char *fmt, ...) {
    int st = be->status(err);
    if (st != ME_OK) return st;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, ME_ERRLEN, fmt, ap);
    va_end(ap);
    return ME_ERR_NOMEM;
}

int me_encoder_check_backend(int family, const MeBackend *be, char *err) {
    if (family == ME_FAMILY_MODERNBERT && (!be->rope_forward || !be->glu_forward || !be->window_attention_forward))
        return me_error(err, ME_ERR_NOTIMPL,
                        "ModernBERT is not implemented on the '%s' backend yet (rotary embeddings, gated "
                        "linear units, windowed attention); use device='cpu'", be->name);
    if ((family == ME_FAMILY_MPNET || family == ME_FAMILY_DEBERTA_V2) &&
        (!be->attention_bias_forward || !be->relbias_forward || !be->disentangled_forward ||
         !be->mask_rows_forward || !be->conv1d_forward))
        return me_error(err, ME_ERR_NOTIMPL,
                        "%s is not implemented on the '%s' backend yet (its relative attention); use device='cpu'",
                        FAMILY_NAMES[family], be->name);
    return ME_OK;
}

int me_encoder_create(MeEncoder **out, const MeEncoderConfig *cfg, const MeBackend *be,
                      char *err) {
    *out = NULL;
    int st = me_encoder_check_backend(cfg->family, be, err);
    if (st) return st;
    if (cfg->family == ME_FAMILY_MODERNBERT) return me_modernbert_create(out, cfg, be, err);
    st = check_config(cfg, err);
    if (st) return st;
    MeEncoder *enc = calloc(1, sizeof(MeEncoder));
    if (!enc) return me_error(err, ME_ERR_NOMEM, "out of memory creating the encoder");
    enc->cfg = *cfg;
    enc->be = be;
    MeParamList pl = {0};
    lay_out(enc, &pl);
    if (pl.failed) {
        free(pl.info);
        me_encoder_free(enc);
        return me_error(err, ME_ERR_NOMEM, "out of memory creating the encoder");
    }
    enc->info = pl.info;
    enc->nparams = pl.n;
    enc->nfloats = pl.nfloats;
    enc->params = be->alloc(enc->nfloats * sizeof(float));
    enc->grads_zero = 1; /* no buffer yet (me_encoder_ensure_grads makes it zero-filled) */
    int tables = cfg->vocab_size > cfg->max_position_embeddings ? cfg->vocab_size : cfg->max_position_embeddings;
    enc->seen = calloc((size_t)(tables > cfg->type_vocab_size ? tables : cfg->type_vocab_size), 1);
    if (!enc->params || !enc->seen) {
        st = me_alloc_failed(be, err, "out of memory allocating %zu parameters", pl.nfloats);
        me_encoder_free(enc);
        return st;
    }
    *out = enc;
    return ME_OK;
}

void me_encoder_free(MeEncoder *enc) {
    if (!enc) return;
    if (enc->mb) me_modernbert_free(enc);
    if (enc->be) {
        if (enc->params) enc->be->release(enc->params);
        if (enc->grads) enc->be->release(enc->grads);
        if (enc->ws) enc->be->release(enc->ws);
    }
    free(enc->info);
    free(enc->lo);
    free(enc->la);
    free(enc->app_set);
    free(enc->host_ints);
    free(enc->seen);
    me_deberta_free(enc);
    free(enc);
}

/* ------------------------------------------------------------- workspace */

/* The layers can compute only some rows (the last only the rows a caller reads, every one only
 * the real tokens) where the attention is the plain one or has MPNet's shared bias: BERT,
 * RoBERTa, ELECTRA, DistilBERT, ALBERT, MPNet. ModernBERT's loop and DeBERTa's layers pack the real
 * tokens but run their attention (windowed; disentangled) on the padded layout; DeBERTa-v2's
 * ConvLayer (across positions) computes every row. */
static int can_prune_rows(const MeEncoder *enc) {
    return !enc->mb && !enc->deb && enc->be->attention_rows_forward && enc->be->dropout_rows_forward;
}

int me_encoder_can_prune_last(const MeEncoder *enc) {
    if (enc->mb) return enc->be->dropout_rows_forward != NULL;
    return can_prune_rows(enc) || (enc->deb && (enc->cfg.conv_kernel_size <= 0 || enc->napps > 1) &&
                                   enc->be->attention_rows_forward && enc->be->dropout_rows_forward);
}

int me_encoder_can_pack(const MeEncoder *enc) {
    if (enc->mb || (enc->deb && enc->cfg.conv_kernel_size <= 0)) return enc->be->dropout_rows_forward != NULL;
    return can_prune_rows(enc);
}

/* Carve the workspace for (B, T); with base == NULL only count floats. */
static size_t carve(MeEncoder *enc, float *base, int B, int T) {
    const MeEncoderConfig *c = &enc->cfg;
    const size_t N = (size_t)B * T, H = c->hidden_size, E = c->embedding_size,
                 I = c->intermediate_size, NH = c->num_heads, HS = H / NH;
    const size_t W = E > H ? E : H;
    size_t off = 0;
    enc->ids = (int32_t *)me_carve(base, &off, N);
    enc->types = (int32_t *)me_carve(base, &off, N);
    if (c->task_type_vocab_size > 0) enc->task_ids = (int32_t *)me_carve(base, &off, N);
    enc->pos = (int32_t *)me_carve(base, &off, N);
    enc->mask = (int32_t *)me_carve(base, &off, N);
    enc->rows = (int32_t *)me_carve(base, &off, 3 * N);
    enc->sel = (int32_t *)me_carve(base, &off, N);
    enc->qstart = (int32_t *)me_carve(base, &off, (size_t)B + 1);
    enc->qpos = (int32_t *)me_carve(base, &off, N);
    enc->xs = me_carve(base, &off, N * H);
    if (me_encoder_can_pack(enc)) enc->real = (int32_t *)me_carve(base, &off, N);
    if (me_encoder_can_prune_last(enc)) enc->sel_in = (int32_t *)me_carve(base, &off, N);
    if (can_prune_rows(enc)) {
        enc->rstart = (int32_t *)me_carve(base, &off, (size_t)B + 1);
        enc->rpos = (int32_t *)me_carve(base, &off, N);
        enc->kvp = me_carve(base, &off, N * 2 * H);
    }
    enc->emb_sum = me_carve(base, &off, N * E);
    enc->emb_mean = me_carve(base, &off, N);
    enc->emb_rstd = me_carve(base, &off, N);
    enc->emb_ln = me_carve(base, &off, N * W);
    if (c->family == ME_FAMILY_DEBERTA_V2) { /* project, LayerNorm over H into emb_ln = x0 */
        enc->emb_proj = enc->has_proj ? me_carve(base, &off, N * H) : NULL;
        if (base) enc->x0 = enc->emb_ln;
    } else if (enc->has_proj) {
        enc->x0 = me_carve(base, &off, N * H);
    } else if (base) {
        enc->x0 = enc->emb_ln;
    }
    for (int l = 0; l < enc->napps; l++) {
        MeLayerActs *a = &enc->la[l];
        if (enc->infer && l >= 2) { /* layer l reads l - 1's output only: it may write over l - 2's */
            if (base) *a = enc->la[l % 2];
            continue;
        }
        a->qkv = me_carve(base, &off, N * 3 * H);
        a->probs = me_carve(base, &off, (size_t)B * NH * T * T);
        a->ctx = me_carve(base, &off, N * H);
        a->r1 = me_carve(base, &off, N * H);
        a->mean1 = me_carve(base, &off, N);
        a->rstd1 = me_carve(base, &off, N);
        a->h1 = me_carve(base, &off, N * H);
        a->f1pre = me_carve(base, &off, N * I);
        a->r2 = me_carve(base, &off, N * H);
        a->mean2 = me_carve(base, &off, N);
        a->rstd2 = me_carve(base, &off, N);
        a->h2 = me_carve(base, &off, N * H);
        a->ff = enc->train ? me_carve(base, &off, N * I) : NULL;
    }
    enc->ff = enc->train ? NULL : me_carve(base, &off, N * I);
    size_t att_floats = enc->be->attention_scratch_floats(B, T, (int)NH, (int)HS);
    if (enc->deb && me_deberta_scratch_floats(enc, T) > att_floats) att_floats = me_deberta_scratch_floats(enc, T);
    enc->att_scratch = me_carve(base, &off, att_floats);
    enc->tmp = me_carve(base, &off, N * H);
    if (enc->infer) {
        if (base) enc->d_h = enc->d_a = enc->d_b = enc->d_qkv = enc->d_ff = NULL;
    } else {
        enc->d_h = me_carve(base, &off, N * W);
        enc->d_a = me_carve(base, &off, N * W);
        enc->d_b = me_carve(base, &off, N * W);
        enc->d_qkv = me_carve(base, &off, N * 3 * H);
        enc->d_ff = me_carve(base, &off, N * I);
    }
    if (c->relative_buckets) {
        enc->relbias = me_carve(base, &off, NH * T * T);
        enc->buckets = (int32_t *)me_carve(base, &off, 2 * (size_t)T);
    }
    if (c->relative_buckets || enc->deb) enc->d_scores = me_carve(base, &off, (size_t)B * NH * T * T);
    if (enc->deb) me_deberta_carve(enc, base, &off, B, T);
    return off;
}

/* Where choose_rows's host arrays begin in host_ints: past the positions, the distinct rows and the
 * query starts and positions. */
#define HOST_PACKED(B, T) (5 * (size_t)(B) * (T) + (B) + 1)

static int ensure_workspace(MeEncoder *enc, int B, int T, char *err) {
    size_t (*carve_fn)(MeEncoder *, float *, int, int) = enc->mb ? me_modernbert_carve : carve;
    size_t need = carve_fn(enc, NULL, B, T);
    if (need > enc->ws_floats) {
        /* grow by half at least when the batch shape changed: batches of growing length reallocate (and
         * clear) a few times, not each time; a training forward after an eval forward of the same shape
         * (a training forward keeps more, see carve) takes what it needs */
        const size_t half = enc->ws_floats + enc->ws_floats / 2;
        const size_t grow = !(B == enc->B && T == enc->T) && half > need ? half : need;
        if (enc->ws) enc->be->release(enc->ws);
        enc->ws = enc->be->alloc(grow * sizeof(float));
        enc->ws_floats = enc->ws ? grow : 0;
        if (!enc->ws)
            return me_alloc_failed(enc->be, err, "out of memory: the activations of a %d x %d batch need %.1f MiB",
                                   B, T, need * 4.0 / (1 << 20));
    }
    if (carve_fn(enc, enc->ws, B, T) != need) /* the counting pass and the carving pass must agree */
        return me_error(err, ME_ERR_RUNTIME, "internal error: the workspace of a %d x %d batch was laid out "
                        "differently when counted and when carved", B, T);
    /* positions | distinct rows (3N) | query starts and positions | the packed rows | DeBERTa's query rows
     * (choose_rows); or the buckets (2T) */
    size_t ni = HOST_PACKED(B, T) + 7 * (size_t)B * T + B + 1;
    if (ni < 2 * (size_t)T) ni = 2 * (size_t)T;
    if (ni > enc->host_ints_cap) {
        int32_t *p = realloc(enc->host_ints, ni * sizeof(int32_t));
        if (!p) return me_error(err, ME_ERR_NOMEM, "out of memory for position ids");
        enc->host_ints = p;
        enc->host_ints_cap = ni;
    }
    return ME_OK;
}

/* --------------------------------------------------------------- forward */

/* The distinct values of ids [N] other than `skip`, in first-seen order, into out; their count.
 * seen [> max id] is all 0 before and after. ids NULL: all 0. */
static int distinct_rows(const int32_t *ids, int N, int skip, uint8_t *seen, int32_t *out) {
    int n = 0;
    for (int i = 0; i < N; i++) {
        int32_t id = ids ? ids[i] : 0;
        if (id == skip || seen[id]) continue;
        seen[id] = 1;
        out[n++] = id;
    }
    for (int i = 0; i < n; i++) seen[out[i]] = 0;
    return n;
}

static int validate_inputs(const MeEncoder *enc, const int32_t *ids, const int32_t *types,
                           const int32_t *mask, int B, int T, char *err) {
    const MeEncoderConfig *c = &enc->cfg;
    if (B <= 0 || T <= 0)
        return me_error(err, ME_ERR_VALUE, "input_ids must have shape (batch, length) with both > 0, got (%d, %d)", B, T);
    if (types && c->type_vocab_size == 0)
        return me_error(err, ME_ERR_VALUE,
                        "this %s model has no token type embeddings; pass no token_type_ids",
                        FAMILY_NAMES[c->family]);
    int max_len = roberta_positions(c) ? c->max_position_embeddings - c->pad_token_id - 1
                                                 : c->max_position_embeddings;
    if (T > max_len)
        return me_error(err, ME_ERR_VALUE,
                        "sequence length %d exceeds the model's maximum of %d positions "
                        "(max_position_embeddings=%d); truncate the input",
                        T, max_len, c->max_position_embeddings);
    for (size_t i = 0; i < (size_t)B * T; i++) {
        if (ids[i] < 0 || ids[i] >= c->vocab_size)
            return me_error(err, ME_ERR_VALUE,
                            "input_ids[%zu][%zu] = %d is outside the vocabulary (size %d)",
                            i / T, i % T, ids[i], c->vocab_size);
        if (types && (types[i] < 0 || types[i] >= c->type_vocab_size))
            return me_error(err, ME_ERR_VALUE,
                            "token_type_ids[%zu][%zu] = %d is outside type_vocab_size %d", i / T,
                            i % T, types[i], c->type_vocab_size);
        if (mask[i] != 0 && mask[i] != 1)
            return me_error(err, ME_ERR_VALUE, "attention_mask[%zu][%zu] = %d must be 0 or 1",
                            i / T, i % T, mask[i]);
    }
    return ME_OK;
}

uint64_t me_encoder_rows_site(const MeEncoder *enc, uint64_t site, int width) {
    return me_dropout_site_at(enc->seed, site, enc->row0 * (uint64_t)enc->T * (uint64_t)width);
}

/* DistilBERT has no dropout after the attention output projection, ALBERT none after the FFN */
static float p_att_out(const MeEncoderConfig *c, float ph) { return c->family == ME_FAMILY_DISTILBERT ? 0.0f : ph; }
static float p_ffn_out(const MeEncoderConfig *c, float ph) { return c->family == ME_FAMILY_ALBERT ? 0.0f : ph; }

/* The FFN of weight set o on `rows` rows: pre-activation a->f1pre from a->h1, GELU into a->ff
 * (training: the GELU's derivative replaces the pre-activation, erf evaluated once per step) or
 * enc->ff, output (before dropout and the residual) into enc->tmp. */
static void ffn_forward(MeEncoder *enc, const MeLayerOffsets *o, MeLayerActs *a, int rows) {
    const MeBackend *be = enc->be;
    const MeEncoderConfig *c = &enc->cfg;
    const float *P = enc->params;
    const int H = c->hidden_size, I = c->intermediate_size;
    float *y = a->ff ? a->ff : enc->ff;
    ME_TIMED(ME_PHASE_GEMM, be->matmul_forward(a->f1pre, a->h1, P + o->fc_w, P + o->fc_b, rows, H, I));
    ME_TIMED(ME_PHASE_ELEMENTWISE, be->gelu_forward(y, a->ff ? a->f1pre : NULL, a->f1pre, (size_t)rows * I,
                                                    (MeActivation)c->activation));
    ME_TIMED(ME_PHASE_GEMM, be->matmul_forward(enc->tmp, y, P + o->out_w, P + o->out_b, rows, I, H));
}

/* Backward of ffn_forward on `rows` rows: dout, the gradient of the FFN's output, to the weight
 * gradients and dx += d(h1). After an eval forward the GELU and its derivative are recomputed
 * (enc->ff, enc->d_ff) and the output's gradient waits in enc->ff, free once dW is done. */
static void ffn_backward(MeEncoder *enc, const MeLayerOffsets *o, const MeLayerActs *a, const float *dout,
                         float *dx, int rows) {
    const MeBackend *be = enc->be;
    const MeEncoderConfig *c = &enc->cfg;
    const float *P = enc->params;
    float *G = enc->grads;
    const int H = c->hidden_size, I = c->intermediate_size;
    const size_t n = (size_t)rows * I;
    const float *y = a->ff, *dact = a->f1pre;
    float *dy = enc->d_ff;
    if (!a->ff) {
        ME_TIMED(ME_PHASE_ELEMENTWISE, be->gelu_forward(enc->ff, enc->d_ff, a->f1pre, n, (MeActivation)c->activation));
        y = dy = enc->ff;
        dact = enc->d_ff;
    }
    ME_TIMED(ME_PHASE_GEMM,
             be->matmul_backward(NULL, G + o->out_w, G + o->out_b, dout, y, P + o->out_w, rows, I, H, 0);
             be->matmul_backward(dy, NULL, NULL, dout, NULL, P + o->out_w, rows, I, H, 0));
    ME_TIMED(ME_PHASE_ELEMENTWISE, be->gelu_backward(enc->d_ff, dact, dy, n));
    ME_TIMED(ME_PHASE_GEMM,
             be->matmul_backward(dx, G + o->fc_w, G + o->fc_b, enc->d_ff, a->h1, P + o->fc_w, rows, H, I, 1));
}

void me_dropout_fwd(const MeEncoder *enc, float *x, const int32_t *rows, int M, int width, float p, uint64_t site) {
    const uint64_t s = me_encoder_rows_site(enc, site, width);
    if (rows)
        enc->be->dropout_rows_forward(x, x, rows, M, width, p, enc->seed, s);
    else
        enc->be->dropout_forward(x, x, (size_t)M * width, p, enc->seed, s);
}

void me_dropout_bwd(const MeEncoder *enc, float *dx, const float *dy, const int32_t *rows, int M, int width,
                    float p, uint64_t site) {
    const uint64_t s = me_encoder_rows_site(enc, site, width);
    if (rows)
        enc->be->dropout_rows_backward(dx, dy, rows, M, width, p, enc->seed, s);
    else
        enc->be->dropout_backward(dx, dy, (size_t)M * width, p, enc->seed, s);
}

const int32_t *me_computed_rows(const MeEncoder *enc) { return enc->packed ? enc->real : NULL; }

void me_packed_to_batch(const MeEncoder *enc, float *out, const float *packed, int C) {
    enc->be->zero(out, sizeof(float) * (size_t)enc->B * enc->T * C);
    enc->be->embedding_backward(out, packed, enc->real, enc->R, C, -1);
}

void me_batch_to_packed(const MeEncoder *enc, float *packed, const float *x, int C) {
    enc->be->embedding_forward(packed, enc->real, x, enc->R, C, 0);
}

/* Layer application l after its attention, on M rows (rows: their places in the batch, for dropout;
 * NULL: every row): the attention output projection of a->ctx [M, H], dropout, the residual x [M, H],
 * LayerNorm, the FFN, dropout, the residual, LayerNorm into out [M, H] (may be enc->tmp). */
static void layer_tail_forward(MeEncoder *enc, int l, MeLayerActs *a, const float *x, const int32_t *rows, int M,
                               float ph, float *out) {
    const MeBackend *be = enc->be;
    const MeEncoderConfig *c = &enc->cfg;
    const MeLayerOffsets *o = &enc->lo[enc->app_set[l]];
    const float *P = enc->params;
    const int H = c->hidden_size;
    ME_TIMED(ME_PHASE_GEMM, be->matmul_forward(enc->tmp, a->ctx, P + o->ao_w, P + o->ao_b, M, H, H));
    ME_TIMED(ME_PHASE_ELEMENTWISE,
             me_dropout_fwd(enc, enc->tmp, rows, M, H, p_att_out(c, ph), SITE(l, SITE_ATT_OUT));
             be->add_forward(a->r1, enc->tmp, x, (size_t)M * H);
             be->layernorm_forward(a->h1, a->mean1, a->rstd1, a->r1, P + o->ln1_w, P + o->ln1_b, M, H,
                                   c->layer_norm_eps));
    ffn_forward(enc, o, a, M);
    ME_TIMED(ME_PHASE_ELEMENTWISE,
             me_dropout_fwd(enc, enc->tmp, rows, M, H, p_ffn_out(c, ph), SITE(l, SITE_FFN_OUT));
             be->add_forward(a->r2, enc->tmp, a->h1, (size_t)M * H);
             be->layernorm_forward(out, a->mean2, a->rstd2, a->r2, P + o->ln2_w, P + o->ln2_b, M, H,
                                   c->layer_norm_eps));
}

/* Backward of layer_tail_forward: reads d(out) in g and leaves d(a->ctx) there, the residual's share
 * of d(x) in dres; s is scratch (all [M, H]). */
static void layer_tail_backward(MeEncoder *enc, int l, const MeLayerActs *a, float *g, float *s, float *dres,
                                const int32_t *rows, int M, float ph) {
    const MeBackend *be = enc->be;
    const MeEncoderConfig *c = &enc->cfg;
    const MeLayerOffsets *o = &enc->lo[enc->app_set[l]];
    const float *P = enc->params;
    float *G = enc->grads;
    const int H = c->hidden_size;
    /* out = LN2(r2), r2 = dropout(ffn_out) + h1 */
    ME_TIMED(ME_PHASE_ELEMENTWISE,
             be->layernorm_backward(s, G + o->ln2_w, G + o->ln2_b, g, a->r2, a->mean2, a->rstd2, P + o->ln2_w, M,
                                    H, 0);
             me_dropout_bwd(enc, dres, s, rows, M, H, p_ffn_out(c, ph), SITE(l, SITE_FFN_OUT)));
    ffn_backward(enc, o, a, dres, s, M); /* d(h1) = d(r2) + the FFN's */
    /* h1 = LN1(r1), r1 = dropout(att_out) + x */
    ME_TIMED(ME_PHASE_ELEMENTWISE,
             be->layernorm_backward(dres, G + o->ln1_w, G + o->ln1_b, s, a->r1, a->mean1, a->rstd1, P + o->ln1_w,
                                    M, H, 0);
             me_dropout_bwd(enc, s, dres, rows, M, H, p_att_out(c, ph), SITE(l, SITE_ATT_OUT)));
    ME_TIMED(ME_PHASE_GEMM, be->matmul_backward(g, G + o->ao_w, G + o->ao_b, s, a->ctx, P + o->ao_w, M, H, H, 0));
}

/* The keys and values [N, 2H] of every row of the batch from a layer's input x: x's N rows, or when
 * packed its R real rows, the padding rows then getting zeros (no query sees them). */
static void kv_forward(MeEncoder *enc, const MeLayerOffsets *o, float *kv, const float *x) {
    const MeBackend *be = enc->be;
    const size_t H = enc->cfg.hidden_size, N = (size_t)enc->B * enc->T;
    const float *W = enc->params + o->qkv_w + H * H, *bias = enc->params + o->qkv_b + H;
    if (!enc->packed) {
        ME_TIMED(ME_PHASE_GEMM, be->matmul_forward(kv, x, W, bias, (int)N, (int)H, 2 * (int)H));
        return;
    }
    ME_TIMED(ME_PHASE_GEMM, be->matmul_forward(enc->kvp, x, W, bias, enc->R, (int)H, 2 * (int)H));
    ME_TIMED(ME_PHASE_ELEMENTWISE, me_packed_to_batch(enc, kv, enc->kvp, 2 * (int)H));
}

/* Backward of kv_forward: dkv [N, 2H] into the weights' gradients and dx (+)= dkv Wkv on x's rows. */
static void kv_backward(MeEncoder *enc, const MeLayerOffsets *o, const float *dkv, const float *x, float *dx,
                        int accumulate) {
    const MeBackend *be = enc->be;
    const int H = enc->cfg.hidden_size;
    const float *W = enc->params + o->qkv_w + (size_t)H * H;
    float *GW = enc->grads + o->qkv_w + (size_t)H * H, *Gb = enc->grads + o->qkv_b + H;
    if (enc->packed) {
        ME_TIMED(ME_PHASE_ELEMENTWISE, me_batch_to_packed(enc, enc->kvp, dkv, 2 * H));
        dkv = enc->kvp;
    }
    ME_TIMED(ME_PHASE_GEMM, be->matmul_backward(dx, GW, Gb, dkv, x, W, enc->packed ? enc->R : enc->B * enc->T, H,
                                                2 * H, accumulate));
}

/* The last layer's input at its M query rows: x's rows `in` gathered into enc->xs, or x itself (in NULL:
 * they are x's rows). */
static const float *query_rows_input(MeEncoder *enc, const float *x, const int32_t *in, int M) {
    if (!in) return x;
    ME_TIMED(ME_PHASE_ELEMENTWISE, enc->be->embedding_forward(enc->xs, in, x, M, enc->cfg.hidden_size, 0));
    return enc->xs;
}

/* Layer application l with queries at M rows only: keys and values from every row of the batch
 * (kv_forward of the input x), the query, attention output, residuals, LayerNorms and FFN at the M
 * rows, held compactly ([M, .]: the layer's buffers are large enough), output into out [M, H].
 * Sentence b's queries are rows qstart[b] .. qstart[b+1]-1 of the M, at positions qpos; `in`
 * [M] picks them from x's rows (NULL: they are x's rows); `rows` [M] are their places in the batch
 * (dropout: the masks are those of the full layer). */
static void layer_forward_rows(MeEncoder *enc, int l, const float *x, const int32_t *in, const int32_t *rows,
                               const int32_t *qstart, const int32_t *qpos, int M, float ph, float pa, float *out) {
    const MeBackend *be = enc->be;
    const MeEncoderConfig *c = &enc->cfg;
    const int B = enc->B, T = enc->T, N = B * T, H = c->hidden_size, NH = c->num_heads, HS = H / NH;
    const MeLayerOffsets *o = &enc->lo[enc->app_set[l]];
    MeLayerActs *a = &enc->la[l];
    const float *P = enc->params, *xq = query_rows_input(enc, x, in, M);
    float *kv = a->qkv, *q = a->qkv + (size_t)N * 2 * H; /* kv [N, 2H] | q [M, H] */
    kv_forward(enc, o, kv, x);
    ME_TIMED(ME_PHASE_GEMM, be->matmul_forward(q, xq, P + o->qkv_w, P + o->qkv_b, M, H, H));
    ME_TIMED(ME_PHASE_ATTENTION,
             be->attention_rows_forward(a->ctx, a->probs, q, H, kv, kv + H, 2 * H, enc->mask,
                                        c->relative_buckets ? enc->relbias : NULL, 0, 1.0f / sqrtf((float)HS), 0,
                                        qstart, qpos, B, T, NH, HS, pa, enc->seed, SITE(l, SITE_ATT) + enc->row0 * NH,
                                        enc->att_scratch));
    layer_tail_forward(enc, l, a, xq, rows, M, ph, out);
}

/* Backward of layer_forward_rows: d(out) [M, H] in g; leaves d(x) (x's rows) in dx; g and s are
 * scratch. */
static void layer_backward_rows(MeEncoder *enc, int l, const float *x, const int32_t *in, const int32_t *rows,
                                const int32_t *qstart, const int32_t *qpos, int M, float *g, float *s, float *dx,
                                float ph, float pa) {
    const MeBackend *be = enc->be;
    const MeEncoderConfig *c = &enc->cfg;
    const int B = enc->B, T = enc->T, N = B * T, H = c->hidden_size, NH = c->num_heads, HS = H / NH;
    const MeLayerOffsets *o = &enc->lo[enc->app_set[l]];
    const MeLayerActs *a = &enc->la[l];
    const float *P = enc->params, *kv = a->qkv, *q = a->qkv + (size_t)N * 2 * H, *xq = in ? enc->xs : x;
    float *G = enc->grads, *dkv = enc->d_qkv, *dq = enc->d_qkv + (size_t)N * 2 * H;
    layer_tail_backward(enc, l, a, g, s, dx, rows, M, ph); /* g: d(ctx); dx: d(r1) */
    ME_TIMED(ME_PHASE_ATTENTION,
             be->attention_rows_backward(dq, dkv, dkv + H, c->relative_buckets ? enc->d_scores : NULL, g, q, H, kv,
                                         kv + H, 2 * H, a->probs, enc->mask, 1.0f / sqrtf((float)HS), 0, qstart, qpos,
                                         B, T, NH, HS, pa, enc->seed, SITE(l, SITE_ATT) + enc->row0 * NH,
                                         enc->att_scratch);
             if (c->relative_buckets) /* MPNet: the queries' score gradients into the shared bias table */
                 be->relbias_backward(G + enc->relb, enc->d_scores, enc->buckets, B, T, NH));
    /* d(x) = dkv Wkv on every row, plus dq Wq + d(r1) on the query rows */
    if (!in) {
        ME_TIMED(ME_PHASE_GEMM, be->matmul_backward(dx, G + o->qkv_w, G + o->qkv_b, dq, xq, P + o->qkv_w, M, H, H, 1));
        kv_backward(enc, o, dkv, x, dx, 1);
        return;
    }
    ME_TIMED(ME_PHASE_GEMM, be->matmul_backward(s, G + o->qkv_w, G + o->qkv_b, dq, xq, P + o->qkv_w, M, H, H, 0));
    ME_TIMED(ME_PHASE_ELEMENTWISE, be->add_backward(s, NULL, dx, (size_t)M * H, 1));
    kv_backward(enc, o, dkv, x, dx, 0);
    ME_TIMED(ME_PHASE_ELEMENTWISE, be->embedding_backward(dx, s, in, M, H, -1));
}

/* DeBERTa layer l's fused qkv of the rows the layers compute (the R real ones when packed: through
 * MeDeberta.pk) into a->qkv on the batch layout, where its attention runs. */
static void deberta_qkv_forward(MeEncoder *enc, int l, const float *x) {
    const MeBackend *be = enc->be;
    const MeLayerOffsets *o = &enc->lo[enc->app_set[l]];
    const int H = enc->cfg.hidden_size;
    float *qkv = enc->la[l].qkv;
    ME_TIMED(ME_PHASE_GEMM, be->matmul_forward(enc->packed ? enc->deb->pk : qkv, x, enc->params + o->qkv_w,
                                               enc->params + o->qkv_b, enc->R, H, 3 * H));
    if (enc->packed) ME_TIMED(ME_PHASE_ELEMENTWISE, me_packed_to_batch(enc, qkv, enc->deb->pk, 3 * H));
}

/* DeBERTa's last layer at the M read rows (enc->sel; in [M] picks them from x's rows, NULL: they are
 * x's rows): the qkv and the disentangled scores of every row as in the full layer, the attention
 * of the read rows' queries (gathered into MeDeberta.pk), the rest at the M rows into out [M, H]. */
static void deberta_forward_rows(MeEncoder *enc, int l, const float *x, const int32_t *in, float ph, float pa,
                                 float *out) {
    const MeBackend *be = enc->be;
    const int M = enc->M, H = enc->cfg.hidden_size, NH = enc->cfg.num_heads;
    MeLayerActs *a = &enc->la[l];
    const float *xq = query_rows_input(enc, x, in, M);
    deberta_qkv_forward(enc, l, x);
    ME_TIMED(ME_PHASE_ELEMENTWISE, be->embedding_forward(enc->deb->pk, enc->deb->qrow, a->qkv, M, H, 0));
    ME_TIMED(ME_PHASE_ATTENTION, me_deberta_attention_forward(enc, l, enc->deb->pk, a->ctx, pa, ph, enc->seed,
                                                              SITE(l, SITE_ATT) + enc->row0 * NH, SITE(l, SITE_REL)));
    layer_tail_forward(enc, l, a, xq, enc->sel, M, ph, out);
}

/* Backward of deberta_forward_rows: d(out) [M, H] in g; leaves d(x) (x's rows) in dx; g and s are
 * scratch. */
static void deberta_backward_rows(MeEncoder *enc, int l, const float *x, const int32_t *in, float *g, float *s,
                                  float *dx, float ph, float pa) {
    const MeBackend *be = enc->be;
    const int M = enc->M, H = enc->cfg.hidden_size, NH = enc->cfg.num_heads;
    const MeLayerOffsets *o = &enc->lo[enc->app_set[l]];
    const float *dqkv = enc->d_qkv;
    layer_tail_backward(enc, l, &enc->la[l], g, dx, s, enc->sel, M, ph); /* g: d(ctx); s: d(r1) */
    ME_TIMED(ME_PHASE_ATTENTION, me_deberta_attention_backward(enc, l, enc->deb->pk, dx, g, pa, ph, enc->seed,
                                                               SITE(l, SITE_ATT) + enc->row0 * NH,
                                                               SITE(l, SITE_REL)));
    if (enc->packed) {
        ME_TIMED(ME_PHASE_ELEMENTWISE, me_batch_to_packed(enc, enc->deb->pk, enc->d_qkv, 3 * H));
        dqkv = enc->deb->pk;
    }
    /* d(x) = d_qkv Wqkv, plus d(r1) at the read rows */
    ME_TIMED(ME_PHASE_GEMM, be->matmul_backward(dx, enc->grads + o->qkv_w, enc->grads + o->qkv_b, dqkv, x,
                                                enc->params + o->qkv_w, enc->R, H, 3 * H, 0));
    ME_TIMED(ME_PHASE_ELEMENTWISE, if (in) be->embedding_backward(dx, s, in, M, H, -1);
             else be->add_forward(dx, dx, s, (size_t)M * H));
}

/* Decide which rows a forward computes, its caller reading read_rows [nread] (NULL: every row):
 * the last layer only those rows when fewer than all (enc->M; sel, sel_in, qstart, qpos; not a
 * one-layer DeBERTa-v2 ConvLayer model's); when every read row is a real token and some rows
 * are padding (not with a ConvLayer), every layer only the real tokens (packed: enc->R, real, rstart,
 * rpos), *ids, *types, *pos (those not NULL) then pointing at the packed rows' (host arrays in
 * host_ints). Bad read rows (not ascending, out of range) compute every row. */
static void choose_rows(MeEncoder *enc, const int32_t *mask, const int32_t *read_rows, int nread,
                        const int32_t **ids, const int32_t **types, const int32_t **pos) {
    const MeBackend *be = enc->be;
    const int B = enc->B, T = enc->T, N = B * T;
    enc->M = enc->R = N;
    enc->packed = 0;
    const int pack = me_encoder_can_pack(enc), last = me_encoder_can_prune_last(enc);
    if (!read_rows || !(pack || last) || nread < 0 || nread > N) return;
    for (int r = 0; r < nread; r++)
        if (read_rows[r] < 0 || read_rows[r] >= N || (r && read_rows[r] <= read_rows[r - 1])) return;
    int32_t *qstart = enc->host_ints + 4 * (size_t)N, *qpos = qstart + B + 1;
    int32_t *real = enc->host_ints + HOST_PACKED(B, T), *rpos = real + N, *rstart = rpos + N;
    int32_t *sel_in = rstart + B + 1, *pids = sel_in + N, *ptypes = pids + N, *ppos = ptypes + N;
    int R = 0;
    for (int b = 0; b < B; b++) {
        rstart[b] = R;
        for (int t = 0; t < T; t++)
            if (mask[b * T + t]) rpos[R] = t, real[R++] = b * T + t;
    }
    rstart[B] = R;
    int packed = pack && R > 0 && R < N; /* not a DeBERTa-v2 ConvLayer model's (its convolution reads every row) */
    for (int r = 0, k = 0; r < nread && packed; r++) { /* each read row's place among the real ones */
        while (k < R && real[k] < read_rows[r]) k++;
        packed = k < R && real[k] == read_rows[r];
        sel_in[r] = k;
    }
    if (!packed && (nread == N || !last)) return;
    if (last) {
        for (int b = 0, r = 0; b <= B; b++) {
            qstart[b] = r;
            while (b < B && r < nread && read_rows[r] < (b + 1) * T) qpos[r] = read_rows[r] - b * T, r++;
        }
        enc->M = nread;
        be->to_device(enc->sel, read_rows, sizeof(int32_t) * nread);
        if (enc->deb) { /* the read rows' q blocks, rows of the qkv viewed as [3N, H] */
            int32_t *qrow = enc->host_ints + HOST_PACKED(B, T) + 6 * (size_t)N + B + 1;
            for (int r = 0; r < nread; r++) qrow[r] = 3 * read_rows[r];
            be->to_device(enc->deb->qrow, qrow, sizeof(int32_t) * nread);
        }
        be->to_device(enc->qstart, qstart, sizeof(int32_t) * (B + 1));
        be->to_device(enc->qpos, qpos, sizeof(int32_t) * nread);
        if (!packed) {
            enc->sel_in = enc->sel;
            return;
        }
    }
    enc->packed = 1;
    enc->R = R;
    for (int r = 0; r < R; r++) {
        pids[r] = (*ids)[real[r]];
        ptypes[r] = *types ? (*types)[real[r]] : 0;
        ppos[r] = *pos ? (*pos)[real[r]] : 0;
    }
    *ids = pids;
    *types = *types ? ptypes : NULL;
    *pos = *pos ? ppos : NULL;
    if (!last || nread == R) /* every real row is read (a mean): the last layer's queries are its input's rows */
        enc->sel_in = NULL;
    else
        be->to_device(enc->sel_in, sel_in, sizeof(int32_t) * nread);
    be->to_device(enc->real, real, sizeof(int32_t) * R);
    if (can_prune_rows(enc)) { /* the packed layers' queries (DeBERTa's, ModernBERT's attention: the batch layout) */
        be->to_device(enc->rstart, rstart, sizeof(int32_t) * (B + 1));
        be->to_device(enc->rpos, rpos, sizeof(int32_t) * R);
    }
}

int me_encoder_forward(MeEncoder *enc, const int32_t *ids, const int32_t *types,
                       const int32_t *mask, int B, int T, int mode, uint64_t seed, float *out,
                       char *err) {
    return me_encoder_forward_rows(enc, ids, types, mask, B, T, mode, seed, 0, NULL, 0, out, err);
}

int me_encoder_forward_rows(MeEncoder *enc, const int32_t *ids, const int32_t *types, const int32_t *mask,
                            int B, int T, int mode, uint64_t seed, uint64_t row0, const int32_t *read_rows,
                            int nread, float *out, char *err) {
    if (mode != ME_FORWARD_EVAL && mode != ME_FORWARD_TRAIN && mode != ME_FORWARD_INFER)
        return me_error(err, ME_ERR_VALUE, "forward mode %d is none of eval (0), train (1), inference (2)", mode);
    /* ModernBERT has no token type embeddings: its token types are not read */
    int st = validate_inputs(enc, ids, enc->mb ? NULL : types, mask, B, T, err);
    if (st) return st;
    const int train = mode == ME_FORWARD_TRAIN;
    enc->has_forward = 0; /* the workspace is about to be re-carved (or lost on failure) */
    enc->train = train;   /* a training forward keeps more, an inference forward less (carve) */
    enc->infer = mode == ME_FORWARD_INFER;
    st = ensure_workspace(enc, B, T, err);
    if (st) return st;
    const MeBackend *be = enc->be;
    const MeEncoderConfig *c = &enc->cfg;
    const int N = B * T, H = c->hidden_size, E = c->embedding_size, NH = c->num_heads, HS = H / NH;
    const float ph = train ? c->hidden_dropout : 0.0f, pa = train ? c->attention_dropout : 0.0f;
    float *P = enc->params;
    enc->has_forward = 0;
    enc->B = B;
    enc->T = T;
    enc->seed = seed;
    enc->row0 = row0;
    if (enc->mb) {
        const int32_t *no_types = NULL, *no_pos = NULL; /* positions enter through the rotary tables */
        choose_rows(enc, mask, read_rows, nread, &ids, &no_types, &no_pos);
        st = me_modernbert_forward(enc, ids, mask, out, err);
        enc->has_forward = st == ME_OK;
        return st;
    }

    /* inputs; position ids as HF computes them */
    int32_t *pos = enc->host_ints;
    for (int b = 0; b < B; b++) {
        if (roberta_positions(c)) {
            int run = 0;
            for (int t = 0; t < T; t++) {
                int real = ids[b * T + t] != c->pad_token_id;
                run += real;
                pos[b * T + t] = real ? run + c->pad_token_id : c->pad_token_id;
            }
        } else {
            for (int t = 0; t < T; t++) pos[b * T + t] = t;
        }
    }
    if (train) { /* the embedding rows this batch touches (their gradients' norm is all that is nonzero) */
        int32_t *rows = enc->host_ints + N;
        enc->nrows[0] = distinct_rows(ids, N, c->pad_token_id, enc->seen, rows);
        enc->nrows[1] = c->position_biased_input && !c->frozen_positions
                            ? distinct_rows(pos, N, roberta_positions(c) ? c->pad_token_id : -1, enc->seen, rows + N)
                            : 0;
        enc->nrows[2] = c->type_vocab_size > 0 ? distinct_rows(types, N, -1, enc->seen, rows + 2 * N) : 0;
        be->to_device(enc->rows, rows, sizeof(int32_t) * 3 * N);
    }
    const int32_t *row_pos = pos;
    choose_rows(enc, mask, read_rows, nread, &ids, &types, &row_pos);
    const int R = enc->R; /* the rows the embeddings and the layers before the last compute */
    be->to_device(enc->ids, ids, sizeof(int32_t) * R);
    be->to_device(enc->pos, row_pos, sizeof(int32_t) * R);
    be->to_device(enc->mask, mask, sizeof(int32_t) * N);
    if (types)
        be->to_device(enc->types, types, sizeof(int32_t) * R);
    else
        be->zero(enc->types, sizeof(int32_t) * R);
    if (c->relative_buckets) { /* MPNet: one bias [NH,T,T] for every layer */
        me_mpnet_buckets(enc->host_ints, T);
        be->to_device(enc->buckets, enc->host_ints, sizeof(int32_t) * (2 * (size_t)T - 1));
        ME_TIMED(ME_PHASE_ATTENTION, be->relbias_forward(enc->relbias, P + enc->relb, enc->buckets, T, NH));
    }
    if (enc->deb) ME_TIMED(ME_PHASE_ATTENTION, me_deberta_prepare(enc, enc->host_ints));

    /* embeddings: (word + type) + position, LayerNorm, dropout, optional projection */
    ME_TIMED(ME_PHASE_ELEMENTWISE,
             be->embedding_forward(enc->emb_sum, enc->ids, P + enc->wte, R, E, 0);
             if (c->type_vocab_size > 0) be->embedding_forward(enc->emb_sum, enc->types, P + enc->wtt, R, E, 1);
             if (c->position_biased_input) be->embedding_forward(enc->emb_sum, enc->pos, P + enc->wpe, R, E, 1);
             if (c->task_type_vocab_size > 0) { /* ERNIE: task id 0 for every token, added last as in HF */
                 be->zero(enc->task_ids, sizeof(int32_t) * R);
                 be->embedding_forward(enc->emb_sum, enc->task_ids, P + enc->wtk, R, E, 1);
             });
    if (enc->deb) { /* DeBERTa: projection (no bias), LayerNorm over H, the mask (packed: every row real), dropout */
        const float *ln_in = enc->emb_sum;
        if (enc->has_proj) {
            ME_TIMED(ME_PHASE_GEMM, be->matmul_forward(enc->emb_proj, enc->emb_sum, P + enc->proj_w, NULL, R, E, H));
            ln_in = enc->emb_proj;
        }
        ME_TIMED(ME_PHASE_ELEMENTWISE,
                 be->layernorm_forward(enc->emb_ln, enc->emb_mean, enc->emb_rstd, ln_in, P + enc->eln_w,
                                       P + enc->eln_b, R, H, c->layer_norm_eps);
                 if (!enc->packed) be->mask_rows_forward(enc->emb_ln, enc->mask, N, H);
                 me_dropout_fwd(enc, enc->emb_ln, me_computed_rows(enc), R, H, ph, SITE_EMB));
    } else {
        ME_TIMED(ME_PHASE_ELEMENTWISE,
                 be->layernorm_forward(enc->emb_ln, enc->emb_mean, enc->emb_rstd, enc->emb_sum, P + enc->eln_w,
                                       P + enc->eln_b, R, E, c->layer_norm_eps);
                 me_dropout_fwd(enc, enc->emb_ln, me_computed_rows(enc), R, E, ph, SITE_EMB));
        if (enc->has_proj)
            ME_TIMED(ME_PHASE_GEMM,
                     be->matmul_forward(enc->x0, enc->emb_ln, P + enc->proj_w, P + enc->proj_b, R, E, H));
    }

    const float *x = enc->x0;
    const int prune = can_prune_rows(enc);
    for (int l = 0; l < enc->napps; l++) {
        MeLayerActs *a = &enc->la[l];
        if (l == enc->napps - 1 && enc->M < N) { /* the read rows only */
            if (enc->deb)
                deberta_forward_rows(enc, l, x, enc->sel_in, ph, pa, enc->tmp);
            else
                layer_forward_rows(enc, l, x, enc->sel_in, enc->sel, enc->qstart, enc->qpos, enc->M, ph, pa, enc->tmp);
            ME_TIMED(ME_PHASE_ELEMENTWISE, be->zero(a->h2, sizeof(float) * (size_t)N * H);
                     be->embedding_backward(a->h2, enc->tmp, enc->sel, enc->M, H, -1)); /* to their rows */
            x = a->h2;
            break;
        }
        if (enc->packed && prune) { /* the real tokens only */
            layer_forward_rows(enc, l, x, NULL, enc->real, enc->rstart, enc->rpos, R, ph, pa, a->h2);
            x = a->h2;
            continue;
        }
        /* every row, or DeBERTa packed (a layer before the last): the real rows' qkv to the batch layout, its
         * attention there, the context back to the real rows, the rest on them */
        const MeLayerOffsets *o = &enc->lo[enc->app_set[l]];
        if (enc->deb) {
            deberta_qkv_forward(enc, l, x);
            ME_TIMED(ME_PHASE_ATTENTION, me_deberta_attention_forward(enc, l, NULL, enc->packed ? enc->tmp : a->ctx, pa,
                                                                      ph, seed, SITE(l, SITE_ATT) + row0 * NH,
                                                                      SITE(l, SITE_REL)));
        } else {
            ME_TIMED(ME_PHASE_GEMM, be->matmul_forward(a->qkv, x, P + o->qkv_w, P + o->qkv_b, R, H, 3 * H));
            if (c->relative_buckets)
                ME_TIMED(ME_PHASE_ATTENTION,
                         be->attention_bias_forward(a->ctx, a->probs, a->qkv, enc->mask, enc->relbias, 0,
                                                    1.0f / sqrtf((float)HS), 0, B, T, NH, HS, pa, seed,
                                                    SITE(l, SITE_ATT) + row0 * NH, enc->att_scratch));
            else
                ME_TIMED(ME_PHASE_ATTENTION,
                         be->attention_forward(a->ctx, a->probs, a->qkv, enc->mask, B, T, NH, HS, pa, seed,
                                               SITE(l, SITE_ATT) + row0 * NH, enc->att_scratch));
        }
        if (enc->packed) ME_TIMED(ME_PHASE_ELEMENTWISE, me_batch_to_packed(enc, a->ctx, enc->tmp, H));
        layer_tail_forward(enc, l, a, x, me_computed_rows(enc), R, ph, a->h2);
        if (l == 0 && c->conv_kernel_size > 0)
            ME_TIMED(ME_PHASE_ELEMENTWISE, me_deberta_conv_forward(enc, enc->x0, a->h2, ph,
                                                                   me_encoder_rows_site(enc, SITE(0, SITE_CONV), H)));
        x = layer_output(enc, l);
    }
    if (out) be->to_host(out, x, sizeof(float) * (size_t)N * H);
    st = be->status(err);
    if (st) return st;
    enc->has_forward = 1;
    return ME_OK;
}

const float *me_encoder_output(const MeEncoder *enc) {
    if (enc->mb) return me_modernbert_output(enc);
    return enc->napps ? layer_output(enc, enc->napps - 1) : enc->x0;
}

/* -------------------------------------------------------------- backward */

float *me_encoder_grad_output(MeEncoder *enc) { return enc->has_forward && !enc->infer ? enc->d_h : NULL; }

/* ME_OK when the workspace holds a forward that a backward can run on. */
static int backward_ready(const MeEncoder *enc, char *err) {
    if (!enc->has_forward)
        return me_error(err, ME_ERR_RUNTIME, "backward() needs a forward() first");
    if (enc->infer)
        return me_error(err, ME_ERR_RUNTIME, "backward() after an inference forward, which keeps no activations "
                        "for one: run forward() in eval or train mode first");
    return ME_OK;
}

int me_encoder_backward(MeEncoder *enc, const float *dout, char *err) {
    int st = backward_ready(enc, err);
    if (st) return st;
    enc->be->to_device(enc->d_h, dout, sizeof(float) * (size_t)enc->B * enc->T * enc->cfg.hidden_size);
    return me_encoder_backward_device(enc, NULL, err);
}

int me_backend_for_precision(const MeBackend *now, const char *precision, const MeBackend **out, char *err) {
    int bf16 = strcmp(precision, "bf16") == 0;
    if (!bf16 && strcmp(precision, "fp32") != 0)
        return me_error(err, ME_ERR_VALUE, "precision must be 'fp32' or 'bf16' (got '%s')", precision);
    if (strcmp(now->name, "cpu") != 0) {
        if (bf16)
            return me_error(err, ME_ERR_NOTIMPL, "precision 'bf16' is implemented on the CPU only, not on the "
                            "'%s' backend yet; use precision='fp32'", now->name);
        *out = now;
        return ME_OK;
    }
    const MeBackend *be = bf16 ? me_cpu_bf16_backend() : me_cpu_backend();
    if (!be)
        return me_error(err, ME_ERR_NOTIMPL, "precision 'bf16' needs a CPU with AVX512-BF16 (the avx512_bf16 flag "
                        "in /proc/cpuinfo), and this CPU has none; use precision='fp32'");
    *out = be;
    return ME_OK;
}

int me_encoder_set_precision(MeEncoder *enc, const char *precision, char *err) {
    return me_backend_for_precision(enc->be, precision, &enc->be, err);
}

void me_encoder_zero_grad(MeEncoder *enc) {
    if (enc->grads_zero) return;
    enc->be->zero(enc->grads, enc->nfloats * sizeof(float));
    enc->grads_zero = 1;
}

int me_encoder_ensure_grads(MeEncoder *enc, char *err) {
    if (enc->grads) return ME_OK;
    enc->grads = enc->be->alloc(enc->nfloats * sizeof(float)); /* zero-filled, as grads_zero says */
    if (!enc->grads)
        return me_alloc_failed(enc->be, err, "out of memory allocating the gradients of %zu parameters",
                               enc->nfloats);
    return ME_OK;
}

/* Weight set s's gradients are complete once its first application's backward has run. */
static int first_application(const MeEncoder *enc, int l) {
    for (int k = 0; k < l; k++)
        if (enc->app_set[k] == enc->app_set[l]) return 0;
    return 1;
}

/* The sum of squares of the gradients outside the layer weight sets, after the backward: the
 * embedding tables at the rows this batch used (zero elsewhere), the dense tensors between the
 * tables and the first set (ERNIE's task type table, LayerNorm, projection), and those after the
 * last set (MPNet's bias table, DeBERTa's relative embeddings, projections and convolution) up to
 * ntrain. */
static double outer_sum_squares(const MeEncoder *enc) {
    const MeBackend *be = enc->be;
    const MeEncoderConfig *c = &enc->cfg;
    const float *G = enc->grads;
    const int N = enc->B * enc->T, E = c->embedding_size, H = c->hidden_size;
    const int wpe = c->position_biased_input && !c->frozen_positions, wtt = c->type_vocab_size > 0;
    size_t tables_end = enc->wte + (size_t)c->vocab_size * E;
    if (wpe && enc->wpe + (size_t)c->max_position_embeddings * E > tables_end)
        tables_end = enc->wpe + (size_t)c->max_position_embeddings * E;
    if (wtt && enc->wtt + (size_t)c->type_vocab_size * E > tables_end)
        tables_end = enc->wtt + (size_t)c->type_vocab_size * E;
    const size_t sets_begin = enc->lo[0].qkv_w, sets_end = enc->lo[enc->nsets - 1].ln2_b + H;
    double s = be->sum_squares(G + tables_end, sets_begin - tables_end) +
               be->sum_squares(G + sets_end, enc->ntrain - sets_end) +
               be->sum_squares_rows(G + enc->wte, enc->rows, enc->nrows[0], E);
    if (wpe) s += be->sum_squares_rows(G + enc->wpe, enc->rows + N, enc->nrows[1], E);
    if (wtt) s += be->sum_squares_rows(G + enc->wtt, enc->rows + 2 * N, enc->nrows[2], E);
    return s;
}

int me_encoder_backward_device(MeEncoder *enc, double *grad_sumsq, char *err) {
    int st = backward_ready(enc, err);
    if (st) return st;
    if (grad_sumsq && !(enc->grads_zero && enc->train))
        return me_error(err, ME_ERR_RUNTIME, "the gradient norm of a backward needs zeroed gradients and a "
                        "train-mode forward");
    st = me_encoder_ensure_grads(enc, err);
    if (st) return st;
    enc->grads_zero = 0;
    const MeBackend *be = enc->be;
    if (enc->mb) { /* ModernBERT: its own loop; the norm in one pass after it */
        st = me_modernbert_backward(enc, err);
        if (!st && grad_sumsq)
            ME_TIMED(ME_PHASE_OPTIMIZER, *grad_sumsq += be->sum_squares(enc->grads, enc->ntrain));
        return st;
    }
    const MeEncoderConfig *c = &enc->cfg;
    const int B = enc->B, T = enc->T, N = B * T, R = enc->R, H = c->hidden_size, E = c->embedding_size,
              NH = c->num_heads, HS = H / NH;
    const float ph = enc->train ? c->hidden_dropout : 0.0f,
                pa = enc->train ? c->attention_dropout : 0.0f;
    const uint64_t seed = enc->seed;
    const float *P = enc->params;
    float *G = enc->grads;
    float *dh = enc->d_h, *da = enc->d_a, *db = enc->d_b;

    const int prune = can_prune_rows(enc);
    if (enc->deb) ME_TIMED(ME_PHASE_ATTENTION, me_deberta_backward_begin(enc));
    /* Applications in reverse: a shared weight set's gradients arrive last use first, the
     * order in which PyTorch's autograd accumulates them. */
    for (int l = enc->napps - 1; l >= 0; l--) {
        const MeLayerOffsets *o = &enc->lo[enc->app_set[l]];
        const MeLayerActs *a = &enc->la[l];
        const float *x = l ? layer_output(enc, l - 1) : enc->x0;
        if (l == 0 && c->conv_kernel_size > 0) { /* dh: d(conv_out) -> d(layer 0's output) */
            ME_TIMED(ME_PHASE_ELEMENTWISE, me_deberta_conv_backward(enc, da, dh, enc->x0, db, ph,
                                                                    me_encoder_rows_site(enc, SITE(0, SITE_CONV), H)));
            float *t = dh;
            dh = da;
            da = t;
        }
        if (l == enc->napps - 1 && enc->M < N) { /* the read rows only */
            ME_TIMED(ME_PHASE_ELEMENTWISE, be->embedding_forward(da, enc->sel, dh, enc->M, H, 0)); /* their d(h2) */
            if (enc->deb)
                deberta_backward_rows(enc, l, x, enc->sel_in, da, dh, db, ph, pa);
            else
                layer_backward_rows(enc, l, x, enc->sel_in, enc->sel, enc->qstart, enc->qpos, enc->M, da, dh, db, ph,
                                    pa);
        } else if (enc->packed && prune) { /* the real tokens only */
            layer_backward_rows(enc, l, x, NULL, enc->real, enc->rstart, enc->rpos, R, dh, da, db, ph, pa);
        } else {
            layer_tail_backward(enc, l, a, dh, da, db, me_computed_rows(enc), R, ph); /* dh: d(ctx); db: d(r1) */
            const float *dqkv = enc->d_qkv;
            if (enc->deb) {
                const float *dctx = dh;
                if (enc->packed) { /* DeBERTa packed: d(ctx) to the batch layout, d(qkv) back to the real rows */
                    ME_TIMED(ME_PHASE_ELEMENTWISE, me_packed_to_batch(enc, enc->tmp, dh, H));
                    dctx = enc->tmp;
                }
                ME_TIMED(ME_PHASE_ATTENTION, me_deberta_attention_backward(enc, l, NULL, NULL, dctx, pa, ph, seed,
                                                                           SITE(l, SITE_ATT) + enc->row0 * NH,
                                                                           SITE(l, SITE_REL)));
                if (enc->packed) {
                    ME_TIMED(ME_PHASE_ELEMENTWISE, me_batch_to_packed(enc, enc->deb->pk, enc->d_qkv, 3 * H));
                    dqkv = enc->deb->pk;
                }
            } else if (c->relative_buckets) { /* the shared bias table sums every layer's score gradient */
                ME_TIMED(ME_PHASE_ATTENTION,
                         be->attention_bias_backward(enc->d_qkv, enc->d_scores, dh, a->qkv, a->probs, enc->mask,
                                                     1.0f / sqrtf((float)HS), 0, B, T, NH, HS, pa, seed,
                                                     SITE(l, SITE_ATT) + enc->row0 * NH, enc->att_scratch);
                         be->relbias_backward(G + enc->relb, enc->d_scores, enc->buckets, B, T, NH));
            } else {
                ME_TIMED(ME_PHASE_ATTENTION,
                         be->attention_backward(enc->d_qkv, dh, a->qkv, a->probs, enc->mask, B, T, NH, HS, pa, seed,
                                                SITE(l, SITE_ATT) + enc->row0 * NH, enc->att_scratch));
            }
            /* d(x) = d(r1) + dqkv @ Wqkv */
            ME_TIMED(ME_PHASE_GEMM,
                     be->matmul_backward(db, G + o->qkv_w, G + o->qkv_b, dqkv, x, P + o->qkv_w, R, H, 3 * H, 1));
        }
        if (c->zero_key_biases) /* DeBERTa v1 has no key bias: its slot of the qkv bias stays 0 */
            ME_TIMED(ME_PHASE_OPTIMIZER, be->zero(G + o->qkv_b + H, (size_t)H * sizeof(float)));
        /* this weight set's gradients are complete (and still in cache): add their squares */
        if (grad_sumsq && first_application(enc, l))
            ME_TIMED(ME_PHASE_OPTIMIZER, *grad_sumsq += be->sum_squares(G + o->qkv_w, o->ln2_b + H - o->qkv_w));
        float *t = dh;
        dh = db;
        db = t;
    }
    /* dh holds d(x0) (plus the ConvLayer's share) */
    float *dln;
    if (c->conv_kernel_size > 0) ME_TIMED(ME_PHASE_ELEMENTWISE, be->add_forward(dh, dh, enc->deb->conv_dx, (size_t)N * H));
    if (enc->deb) {
        ME_TIMED(ME_PHASE_ATTENTION, me_deberta_backward_end(enc));
        ME_TIMED(ME_PHASE_ELEMENTWISE,
                 me_dropout_bwd(enc, dh, dh, me_computed_rows(enc), R, H, ph, SITE_EMB);
                 if (!enc->packed) be->mask_rows_backward(dh, enc->mask, N, H);
                 be->layernorm_backward(da, G + enc->eln_w, G + enc->eln_b, dh,
                                        enc->has_proj ? enc->emb_proj : enc->emb_sum, enc->emb_mean,
                                        enc->emb_rstd, P + enc->eln_w, R, H, 0));
        dln = da;
        if (enc->has_proj) {
            ME_TIMED(ME_PHASE_GEMM,
                     be->matmul_backward(db, G + enc->proj_w, NULL, da, enc->emb_sum, P + enc->proj_w, R, E, H, 0));
            dln = db;
        }
    } else {
        float *demb = dh;
        if (enc->has_proj) {
            ME_TIMED(ME_PHASE_GEMM, be->matmul_backward(da, G + enc->proj_w, G + enc->proj_b, dh, enc->emb_ln,
                                                        P + enc->proj_w, R, E, H, 0));
            demb = da;
        }
        dln = demb == da ? dh : da;
        ME_TIMED(ME_PHASE_ELEMENTWISE,
                 me_dropout_bwd(enc, demb, demb, me_computed_rows(enc), R, E, ph, SITE_EMB);
                 be->layernorm_backward(dln, G + enc->eln_w, G + enc->eln_b, demb, enc->emb_sum, enc->emb_mean,
                                        enc->emb_rstd, P + enc->eln_w, R, E, 0));
    }
    int word_pad = c->pad_token_id;
    int pos_pad = roberta_positions(c) ? c->pad_token_id : -1;
    ME_TIMED(ME_PHASE_ELEMENTWISE,
             be->embedding_backward(G + enc->wte, dln, enc->ids, R, E, word_pad);
             if (c->type_vocab_size > 0) be->embedding_backward(G + enc->wtt, dln, enc->types, R, E, -1);
             if (c->task_type_vocab_size > 0) be->embedding_backward(G + enc->wtk, dln, enc->task_ids, R, E, -1);
             if (!c->frozen_positions && c->position_biased_input)
                 be->embedding_backward(G + enc->wpe, dln, enc->pos, R, E, pos_pad));
    if (grad_sumsq) ME_TIMED(ME_PHASE_OPTIMIZER, *grad_sumsq += outer_sum_squares(enc));
    return be->status(err);
}
