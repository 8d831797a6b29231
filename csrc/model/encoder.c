#include "model/encoder.h"

#include "model/profile.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Dropout sites: one per (layer, place); attention adds b*NH + h (b counted from row0). */
#define SITE_EMB 1ULL
#define SITE(layer, kind) ((((uint64_t)(layer) + 1) << 40) | ((uint64_t)(kind) << 36))
enum { SITE_ATT = 1, SITE_ATT_OUT = 2, SITE_FFN_OUT = 3 };

/* ------------------------------------------------------------ parameters */

static int check_config(const MeEncoderConfig *c, char *err) {
#define POS(field)                                                                           \
    if (c->field <= 0) return me_error(err, ME_ERR_VALUE, "config: " #field " must be > 0, got %d", c->field)
    POS(vocab_size);
    POS(hidden_size);
    POS(num_layers);
    POS(num_heads);
    POS(intermediate_size);
    POS(max_position_embeddings);
    POS(type_vocab_size);
    POS(embedding_size);
#undef POS
    if (c->hidden_size % c->num_heads)
        return me_error(err, ME_ERR_VALUE,
                        "config: hidden_size %d is not a multiple of num_attention_heads %d",
                        c->hidden_size, c->num_heads);
    if (c->family < ME_FAMILY_BERT || c->family > ME_FAMILY_ELECTRA)
        return me_error(err, ME_ERR_VALUE, "config: unknown model family %d", c->family);
    if (c->activation != ME_ACT_GELU && c->activation != ME_ACT_GELU_TANH)
        return me_error(err, ME_ERR_VALUE, "config: unknown activation %d", c->activation);
    if (!(c->hidden_dropout >= 0.0f && c->hidden_dropout < 1.0f) ||
        !(c->attention_dropout >= 0.0f && c->attention_dropout < 1.0f))
        return me_error(err, ME_ERR_VALUE, "config: dropout probabilities must be in [0, 1)");
    if (!(c->layer_norm_eps > 0.0f))
        return me_error(err, ME_ERR_VALUE, "config: layer_norm_eps must be > 0");
    if (c->embedding_size != c->hidden_size && c->family != ME_FAMILY_ELECTRA)
        return me_error(err, ME_ERR_VALUE,
                        "config: embedding_size != hidden_size is only supported for ELECTRA");
    if (c->pad_token_id < -1 || c->pad_token_id >= c->vocab_size)
        return me_error(err, ME_ERR_VALUE, "config: pad_token_id %d outside the vocabulary",
                        c->pad_token_id);
    if (c->family == ME_FAMILY_ROBERTA && c->pad_token_id < 0)
        return me_error(err, ME_ERR_VALUE, "config: RoBERTa needs a pad_token_id");
    if (c->family == ME_FAMILY_ROBERTA && c->max_position_embeddings <= c->pad_token_id + 1)
        return me_error(err, ME_ERR_VALUE,
                        "config: max_position_embeddings %d leaves no positions after padding_idx %d",
                        c->max_position_embeddings, c->pad_token_id);
    return ME_OK;
}

int me_encoder_create(MeEncoder **out, const MeEncoderConfig *cfg, const MeBackend *be,
                      char *err) {
    *out = NULL;
    int st = check_config(cfg, err);
    if (st) return st;
    MeEncoder *enc = calloc(1, sizeof(MeEncoder));
    if (!enc) return me_error(err, ME_ERR_NOMEM, "out of memory creating the encoder");
    enc->cfg = *cfg;
    enc->be = be;
    const int H = cfg->hidden_size, E = cfg->embedding_size, I = cfg->intermediate_size;
    MeParamList pl = {0};
    enc->wte = me_params_add(&pl, "embeddings.word_embeddings.weight", cfg->vocab_size, E, 1);
    enc->wpe = me_params_add(&pl, "embeddings.position_embeddings.weight", cfg->max_position_embeddings, E, 1);
    enc->wtt = me_params_add(&pl, "embeddings.token_type_embeddings.weight", cfg->type_vocab_size, E, 1);
    enc->eln_w = me_params_add(&pl, "embeddings.LayerNorm.weight", E, 0, 1);
    enc->eln_b = me_params_add(&pl, "embeddings.LayerNorm.bias", E, 0, 1);
    if (E != H) {
        enc->proj_w = me_params_add(&pl, "embeddings_project.weight", H, E, 1);
        enc->proj_b = me_params_add(&pl, "embeddings_project.bias", H, 0, 1);
    }
    enc->lo = calloc((size_t)cfg->num_layers, sizeof(MeLayerOffsets));
    enc->la = calloc((size_t)cfg->num_layers, sizeof(MeLayerActs));
    if (!enc->lo || !enc->la) pl.failed = 1;
    char nm[96];
    for (int l = 0; l < cfg->num_layers && !pl.failed; l++) {
        MeLayerOffsets *o = &enc->lo[l];
        /* q, k, v weights consecutive -> fused [3H, H]; biases likewise -> [3H] */
#define PP(field, suffix, d0, d1, pad)                                            \
    snprintf(nm, sizeof nm, "encoder.layer.%d.%s", l, suffix);                    \
    field = me_params_add(&pl, nm, d0, d1, pad)
#define P(field, suffix, d0, d1) PP(field, suffix, d0, d1, 1)
        size_t unused;
        PP(o->qkv_w, "attention.self.query.weight", H, H, 0);
        PP(unused, "attention.self.key.weight", H, H, 0);
        PP(unused, "attention.self.value.weight", H, H, 1);
        PP(o->qkv_b, "attention.self.query.bias", H, 0, 0);
        PP(unused, "attention.self.key.bias", H, 0, 0);
        PP(unused, "attention.self.value.bias", H, 0, 1);
        (void)unused;
        P(o->ao_w, "attention.output.dense.weight", H, H);
        P(o->ao_b, "attention.output.dense.bias", H, 0);
        P(o->ln1_w, "attention.output.LayerNorm.weight", H, 0);
        P(o->ln1_b, "attention.output.LayerNorm.bias", H, 0);
        P(o->fc_w, "intermediate.dense.weight", I, H);
        P(o->fc_b, "intermediate.dense.bias", I, 0);
        P(o->out_w, "output.dense.weight", H, I);
        P(o->out_b, "output.dense.bias", H, 0);
        P(o->ln2_w, "output.LayerNorm.weight", H, 0);
        P(o->ln2_b, "output.LayerNorm.bias", H, 0);
#undef P
#undef PP
    }
    if (pl.failed) {
        free(pl.info);
        me_encoder_free(enc);
        return me_error(err, ME_ERR_NOMEM, "out of memory creating the encoder");
    }
    enc->info = pl.info;
    enc->nparams = pl.n;
    enc->nfloats = pl.nfloats;
    enc->params = be->alloc(enc->nfloats * sizeof(float));
    enc->grads = be->alloc(enc->nfloats * sizeof(float));
    enc->grads_zero = 1;
    int tables = cfg->vocab_size > cfg->max_position_embeddings ? cfg->vocab_size : cfg->max_position_embeddings;
    enc->seen = calloc((size_t)(tables > cfg->type_vocab_size ? tables : cfg->type_vocab_size), 1);
    if (!enc->params || !enc->grads || !enc->seen) {
        me_encoder_free(enc);
        return me_error(err, ME_ERR_NOMEM, "out of memory allocating %zu parameters", pl.nfloats);
    }
    *out = enc;
    return ME_OK;
}

void me_encoder_free(MeEncoder *enc) {
    if (!enc) return;
    if (enc->be) {
        if (enc->params) enc->be->release(enc->params);
        if (enc->grads) enc->be->release(enc->grads);
        if (enc->ws) enc->be->release(enc->ws);
    }
    free(enc->info);
    free(enc->lo);
    free(enc->la);
    free(enc->host_ints);
    free(enc->seen);
    free(enc);
}

/* ------------------------------------------------------------- workspace */

/* Carve the workspace for (B, T); with base == NULL only count floats. */
static size_t carve(MeEncoder *enc, float *base, int B, int T) {
    const MeEncoderConfig *c = &enc->cfg;
    const size_t N = (size_t)B * T, H = c->hidden_size, E = c->embedding_size,
                 I = c->intermediate_size, NH = c->num_heads, HS = H / NH;
    const size_t W = E > H ? E : H;
    size_t off = 0;
    enc->ids = (int32_t *)me_carve(base, &off, N);
    enc->types = (int32_t *)me_carve(base, &off, N);
    enc->pos = (int32_t *)me_carve(base, &off, N);
    enc->mask = (int32_t *)me_carve(base, &off, N);
    enc->rows = (int32_t *)me_carve(base, &off, 3 * N);
    enc->sel = (int32_t *)me_carve(base, &off, N);
    enc->qstart = (int32_t *)me_carve(base, &off, (size_t)B + 1);
    enc->qpos = (int32_t *)me_carve(base, &off, N);
    enc->xs = me_carve(base, &off, N * H);
    enc->emb_sum = me_carve(base, &off, N * E);
    enc->emb_mean = me_carve(base, &off, N);
    enc->emb_rstd = me_carve(base, &off, N);
    enc->emb_ln = me_carve(base, &off, N * E);
    if (E != H)
        enc->x0 = me_carve(base, &off, N * H);
    else if (base)
        enc->x0 = enc->emb_ln;
    for (int l = 0; l < c->num_layers; l++) {
        MeLayerActs *a = &enc->la[l];
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
    }
    enc->ff = me_carve(base, &off, N * I);
    enc->att_scratch = me_carve(base, &off, enc->be->attention_scratch_floats(B, T, (int)NH, (int)HS));
    enc->tmp = me_carve(base, &off, N * H);
    enc->d_h = me_carve(base, &off, N * W);
    enc->d_a = me_carve(base, &off, N * W);
    enc->d_b = me_carve(base, &off, N * W);
    enc->d_qkv = me_carve(base, &off, N * 3 * H);
    enc->d_ff = me_carve(base, &off, N * I);
    return off;
}

static int ensure_workspace(MeEncoder *enc, int B, int T, char *err) {
    size_t need = carve(enc, NULL, B, T);
    if (need > enc->ws_floats) {
        /* grow by half at least: batches of growing length reallocate (and clear) a few times, not each time */
        size_t grow = enc->ws_floats + enc->ws_floats / 2 > need ? enc->ws_floats + enc->ws_floats / 2 : need;
        if (enc->ws) enc->be->release(enc->ws);
        enc->ws = enc->be->alloc(grow * sizeof(float));
        enc->ws_floats = enc->ws ? grow : 0;
        if (!enc->ws)
            return me_error(err, ME_ERR_NOMEM,
                            "out of memory: the activations of a %d x %d batch need %.1f MiB", B, T,
                            need * 4.0 / (1 << 20));
    }
    carve(enc, enc->ws, B, T);
    size_t ni = 6 * (size_t)B * T + B + 1; /* positions | distinct rows (3N) | query starts and positions */
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
 * seen [> max id] is all 0 before and after. */
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
    int max_len = c->family == ME_FAMILY_ROBERTA ? c->max_position_embeddings - c->pad_token_id - 1
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

/* The dropout site of a [B*T, width] tensor's mask for the rows of the last forward: the
 * whole batch's mask from row row0 on (me_dropout_site_at), so a shard keeps the units that
 * the whole batch would keep. */
static uint64_t rows_site(const MeEncoder *enc, uint64_t site, int width) {
    return me_dropout_site_at(enc->seed, site, enc->row0 * (uint64_t)enc->T * (uint64_t)width);
}

/* The FFN of a layer on `rows` rows: pre-activation a->f1pre from a->h1, GELU into enc->ff, output
 * (before dropout and the residual) into enc->tmp. */
static void ffn_forward(MeEncoder *enc, const MeLayerOffsets *o, MeLayerActs *a, int rows) {
    const MeBackend *be = enc->be;
    const MeEncoderConfig *c = &enc->cfg;
    const float *P = enc->params;
    const int H = c->hidden_size, I = c->intermediate_size;
    ME_TIMED(ME_PHASE_GEMM, be->matmul_forward(a->f1pre, a->h1, P + o->fc_w, P + o->fc_b, rows, H, I));
    ME_TIMED(ME_PHASE_ELEMENTWISE,
             be->gelu_forward(enc->ff, a->f1pre, (size_t)rows * I, (MeActivation)c->activation));
    ME_TIMED(ME_PHASE_GEMM, be->matmul_forward(enc->tmp, enc->ff, P + o->out_w, P + o->out_b, rows, I, H));
}

/* The last layer for the M rows enc->sel only (a sentence head reads one or a few): keys and
 * values come from every row of x, the query, attention output, residuals, LayerNorms and FFN
 * from the read rows alone, held compactly ([M, .]: the layer's buffers are large enough). Its
 * output h2 [N, H] is zero outside the read rows. Dropout masks are those of the full layer. */
static void last_layer_forward_rows(MeEncoder *enc, const float *x, float ph, float pa, uint64_t seed) {
    const MeBackend *be = enc->be;
    const MeEncoderConfig *c = &enc->cfg;
    const int l = c->num_layers - 1, B = enc->B, T = enc->T, N = B * T, M = enc->M, H = c->hidden_size,
              NH = c->num_heads, HS = H / NH;
    const MeLayerOffsets *o = &enc->lo[l];
    MeLayerActs *a = &enc->la[l];
    const float *P = enc->params;
    float *kv = a->qkv, *q = a->qkv + (size_t)N * 2 * H; /* kv [N, 2H] | q [M, H] */
    ME_TIMED(ME_PHASE_ELEMENTWISE, be->embedding_forward(enc->xs, enc->sel, x, M, H, 0));
    ME_TIMED(ME_PHASE_GEMM,
             be->matmul_forward(kv, x, P + o->qkv_w + (size_t)H * H, P + o->qkv_b + H, N, H, 2 * H);
             be->matmul_forward(q, enc->xs, P + o->qkv_w, P + o->qkv_b, M, H, H));
    ME_TIMED(ME_PHASE_ATTENTION, be->attention_rows_forward(a->ctx, a->probs, q, kv, enc->mask, enc->qstart, enc->qpos,
                                                            B, T, NH, HS, pa, seed, SITE(l, SITE_ATT) + enc->row0 * NH,
                                                            enc->att_scratch));
    ME_TIMED(ME_PHASE_GEMM, be->matmul_forward(enc->tmp, a->ctx, P + o->ao_w, P + o->ao_b, M, H, H));
    ME_TIMED(ME_PHASE_ELEMENTWISE,
             be->dropout_rows_forward(enc->tmp, enc->tmp, enc->sel, M, H, ph, seed, rows_site(enc, SITE(l, SITE_ATT_OUT), H));
             be->add_forward(a->r1, enc->tmp, enc->xs, (size_t)M * H);
             be->layernorm_forward(a->h1, a->mean1, a->rstd1, a->r1, P + o->ln1_w, P + o->ln1_b, M, H,
                                   c->layer_norm_eps));
    ffn_forward(enc, o, a, M);
    ME_TIMED(ME_PHASE_ELEMENTWISE,
             be->dropout_rows_forward(enc->tmp, enc->tmp, enc->sel, M, H, ph, seed, rows_site(enc, SITE(l, SITE_FFN_OUT), H));
             be->add_forward(a->r2, enc->tmp, a->h1, (size_t)M * H);
             be->layernorm_forward(enc->tmp, a->mean2, a->rstd2, a->r2, P + o->ln2_w, P + o->ln2_b, M, H,
                                   c->layer_norm_eps);
             be->zero(a->h2, sizeof(float) * (size_t)N * H);
             be->embedding_backward(a->h2, enc->tmp, enc->sel, M, H, -1)); /* scatter the read rows */
}

/* Backward of last_layer_forward_rows: reads d(h2) [N, H] in dh (zero outside the read rows) and
 * leaves d(x) [N, H] in db; da and dh are scratch. */
static void last_layer_backward_rows(MeEncoder *enc, const float *x, float *dh, float *da, float *db, float ph,
                                     float pa, uint64_t seed) {
    const MeBackend *be = enc->be;
    const MeEncoderConfig *c = &enc->cfg;
    const int l = c->num_layers - 1, B = enc->B, T = enc->T, N = B * T, M = enc->M, H = c->hidden_size,
              I = c->intermediate_size, NH = c->num_heads, HS = H / NH;
    const MeLayerOffsets *o = &enc->lo[l];
    const MeLayerActs *a = &enc->la[l];
    const float *P = enc->params, *kv = a->qkv, *q = a->qkv + (size_t)N * 2 * H;
    float *G = enc->grads, *dkv = enc->d_qkv, *dq = enc->d_qkv + (size_t)N * 2 * H, *dff = enc->d_ff;
    ME_TIMED(ME_PHASE_ELEMENTWISE,
             be->embedding_forward(db, enc->sel, dh, M, H, 0); /* gather d(h2) of the read rows */
             be->layernorm_backward(da, G + o->ln2_w, G + o->ln2_b, db, a->r2, a->mean2, a->rstd2, P + o->ln2_w, M,
                                    H, 0);
             be->dropout_rows_backward(db, da, enc->sel, M, H, ph, seed, rows_site(enc, SITE(l, SITE_FFN_OUT), H));
             be->gelu_forward(enc->ff, a->f1pre, (size_t)M * I, (MeActivation)c->activation));
    ME_TIMED(ME_PHASE_GEMM, be->matmul_backward(dff, G + o->out_w, G + o->out_b, db, enc->ff, P + o->out_w, M, I, H, 0));
    ME_TIMED(ME_PHASE_ELEMENTWISE, be->gelu_backward(dff, a->f1pre, dff, (size_t)M * I, (MeActivation)c->activation));
    ME_TIMED(ME_PHASE_GEMM, be->matmul_backward(da, G + o->fc_w, G + o->fc_b, dff, a->h1, P + o->fc_w, M, H, I, 1));
    ME_TIMED(ME_PHASE_ELEMENTWISE,
             be->layernorm_backward(db, G + o->ln1_w, G + o->ln1_b, da, a->r1, a->mean1, a->rstd1, P + o->ln1_w, M,
                                    H, 0);
             be->dropout_rows_backward(da, db, enc->sel, M, H, ph, seed, rows_site(enc, SITE(l, SITE_ATT_OUT), H)));
    ME_TIMED(ME_PHASE_GEMM, be->matmul_backward(dh, G + o->ao_w, G + o->ao_b, da, a->ctx, P + o->ao_w, M, H, H, 0));
    ME_TIMED(ME_PHASE_ATTENTION, be->attention_rows_backward(dq, dkv, dh, q, kv, a->probs, enc->mask, enc->qstart,
                                                             enc->qpos, B, T, NH, HS, pa, seed, SITE(l, SITE_ATT) + enc->row0 * NH,
                                                             enc->att_scratch));
    /* d(x) = dkv Wkv on every row, plus dq Wq + d(r1) on the read rows */
    ME_TIMED(ME_PHASE_GEMM,
             be->matmul_backward(da, G + o->qkv_w, G + o->qkv_b, dq, enc->xs, P + o->qkv_w, M, H, H, 0);
             be->add_backward(da, NULL, db, (size_t)M * H, 1);
             be->matmul_backward(db, G + o->qkv_w + (size_t)H * H, G + o->qkv_b + H, dkv, x, P + o->qkv_w + (size_t)H * H,
                                 N, H, 2 * H, 0));
    ME_TIMED(ME_PHASE_ELEMENTWISE, be->embedding_backward(db, da, enc->sel, M, H, -1));
}

int me_encoder_forward(MeEncoder *enc, const int32_t *ids, const int32_t *types,
                       const int32_t *mask, int B, int T, int train, uint64_t seed, float *out,
                       char *err) {
    return me_encoder_forward_rows(enc, ids, types, mask, B, T, train, seed, 0, NULL, 0, out, err);
}

int me_encoder_forward_rows(MeEncoder *enc, const int32_t *ids, const int32_t *types, const int32_t *mask,
                            int B, int T, int train, uint64_t seed, uint64_t row0, const int32_t *read_rows,
                            int nread, float *out, char *err) {
    int st = validate_inputs(enc, ids, types, mask, B, T, err);
    if (st) return st;
    enc->has_forward = 0; /* the workspace is about to be re-carved (or lost on failure) */
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
    enc->train = train;
    enc->seed = seed;
    enc->row0 = row0;

    /* inputs; position ids as HF computes them */
    int32_t *pos = enc->host_ints;
    for (int b = 0; b < B; b++) {
        if (c->family == ME_FAMILY_ROBERTA) {
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
        int pos_pad = c->family == ME_FAMILY_ROBERTA ? c->pad_token_id : -1;
        enc->nrows[0] = distinct_rows(ids, N, c->pad_token_id, enc->seen, rows);
        enc->nrows[1] = distinct_rows(pos, N, pos_pad, enc->seen, rows + N);
        enc->nrows[2] = distinct_rows(types, N, -1, enc->seen, rows + 2 * N);
        be->to_device(enc->rows, rows, sizeof(int32_t) * 3 * N);
    }
    /* the last layer computes only the rows the caller reads (when it reads fewer than all) */
    enc->M = N;
    if (read_rows && nread < N && c->num_layers > 0 && be->attention_rows_forward && be->dropout_rows_forward) {
        int32_t *qstart = enc->host_ints + 4 * N, *qpos = qstart + B + 1;
        for (int b = 0, r = 0; b <= B; b++) {
            qstart[b] = r;
            while (b < B && r < nread && read_rows[r] < (b + 1) * T) qpos[r] = read_rows[r] - b * T, r++;
        }
        enc->M = nread;
        be->to_device(enc->sel, read_rows, sizeof(int32_t) * nread);
        be->to_device(enc->qstart, qstart, sizeof(int32_t) * (B + 1));
        be->to_device(enc->qpos, qpos, sizeof(int32_t) * nread);
    }
    be->to_device(enc->ids, ids, sizeof(int32_t) * N);
    be->to_device(enc->pos, pos, sizeof(int32_t) * N);
    be->to_device(enc->mask, mask, sizeof(int32_t) * N);
    if (types)
        be->to_device(enc->types, types, sizeof(int32_t) * N);
    else
        be->zero(enc->types, sizeof(int32_t) * N);

    /* embeddings: (word + type) + position, LayerNorm, dropout, optional projection */
    ME_TIMED(ME_PHASE_ELEMENTWISE,
             be->embedding_forward(enc->emb_sum, enc->ids, P + enc->wte, N, E, 0);
             be->embedding_forward(enc->emb_sum, enc->types, P + enc->wtt, N, E, 1);
             be->embedding_forward(enc->emb_sum, enc->pos, P + enc->wpe, N, E, 1);
             be->layernorm_forward(enc->emb_ln, enc->emb_mean, enc->emb_rstd, enc->emb_sum, P + enc->eln_w,
                                   P + enc->eln_b, N, E, c->layer_norm_eps);
             be->dropout_forward(enc->emb_ln, enc->emb_ln, (size_t)N * E, ph, seed, rows_site(enc, SITE_EMB, E)));
    if (E != H) ME_TIMED(ME_PHASE_GEMM, be->matmul_forward(enc->x0, enc->emb_ln, P + enc->proj_w, P + enc->proj_b, N, E, H));

    const float *x = enc->x0;
    for (int l = 0; l < c->num_layers; l++) {
        if (l == c->num_layers - 1 && enc->M < N) {
            last_layer_forward_rows(enc, x, ph, pa, seed);
            x = enc->la[l].h2;
            break;
        }
        const MeLayerOffsets *o = &enc->lo[l];
        MeLayerActs *a = &enc->la[l];
        ME_TIMED(ME_PHASE_GEMM, be->matmul_forward(a->qkv, x, P + o->qkv_w, P + o->qkv_b, N, H, 3 * H));
        ME_TIMED(ME_PHASE_ATTENTION, be->attention_forward(a->ctx, a->probs, a->qkv, enc->mask, B, T, NH, HS, pa,
                                                           seed, SITE(l, SITE_ATT) + enc->row0 * NH, enc->att_scratch));
        ME_TIMED(ME_PHASE_GEMM, be->matmul_forward(enc->tmp, a->ctx, P + o->ao_w, P + o->ao_b, N, H, H));
        ME_TIMED(ME_PHASE_ELEMENTWISE,
                 be->dropout_forward(enc->tmp, enc->tmp, (size_t)N * H, ph, seed, rows_site(enc, SITE(l, SITE_ATT_OUT), H));
                 be->add_forward(a->r1, enc->tmp, x, (size_t)N * H);
                 be->layernorm_forward(a->h1, a->mean1, a->rstd1, a->r1, P + o->ln1_w, P + o->ln1_b, N, H,
                                       c->layer_norm_eps));
        ffn_forward(enc, o, a, N);
        ME_TIMED(ME_PHASE_ELEMENTWISE,
                 be->dropout_forward(enc->tmp, enc->tmp, (size_t)N * H, ph, seed, rows_site(enc, SITE(l, SITE_FFN_OUT), H));
                 be->add_forward(a->r2, enc->tmp, a->h1, (size_t)N * H);
                 be->layernorm_forward(a->h2, a->mean2, a->rstd2, a->r2, P + o->ln2_w, P + o->ln2_b, N, H,
                                       c->layer_norm_eps));
        x = a->h2;
    }
    if (out) be->to_host(out, x, sizeof(float) * (size_t)N * H);
    st = be->status(err);
    if (st) return st;
    enc->has_forward = 1;
    return ME_OK;
}

const float *me_encoder_output(const MeEncoder *enc) {
    return enc->cfg.num_layers ? enc->la[enc->cfg.num_layers - 1].h2 : enc->x0;
}

/* -------------------------------------------------------------- backward */

float *me_encoder_grad_output(MeEncoder *enc) { return enc->has_forward ? enc->d_h : NULL; }

int me_encoder_backward(MeEncoder *enc, const float *dout, char *err) {
    if (!enc->has_forward)
        return me_error(err, ME_ERR_RUNTIME, "backward() needs a forward() first");
    enc->be->to_device(enc->d_h, dout, sizeof(float) * (size_t)enc->B * enc->T * enc->cfg.hidden_size);
    return me_encoder_backward_device(enc, NULL, err);
}

void me_encoder_zero_grad(MeEncoder *enc) {
    if (enc->grads_zero) return;
    enc->be->zero(enc->grads, enc->nfloats * sizeof(float));
    enc->grads_zero = 1;
}

int me_encoder_backward_device(MeEncoder *enc, double *grad_sumsq, char *err) {
    if (!enc->has_forward)
        return me_error(err, ME_ERR_RUNTIME, "backward() needs a forward() first");
    if (grad_sumsq && !(enc->grads_zero && enc->train))
        return me_error(err, ME_ERR_RUNTIME, "the gradient norm of a backward needs zeroed gradients and a "
                        "train-mode forward");
    enc->grads_zero = 0;
    const MeBackend *be = enc->be;
    const MeEncoderConfig *c = &enc->cfg;
    const int B = enc->B, T = enc->T, N = B * T, H = c->hidden_size, E = c->embedding_size,
              I = c->intermediate_size, NH = c->num_heads, HS = H / NH;
    const float ph = enc->train ? c->hidden_dropout : 0.0f,
                pa = enc->train ? c->attention_dropout : 0.0f;
    const uint64_t seed = enc->seed;
    const float *P = enc->params;
    float *G = enc->grads;
    float *dh = enc->d_h, *da = enc->d_a, *db = enc->d_b;

    for (int l = c->num_layers - 1; l >= 0; l--) {
        const MeLayerOffsets *o = &enc->lo[l];
        const MeLayerActs *a = &enc->la[l];
        const float *x = l ? enc->la[l - 1].h2 : enc->x0;
        if (l == c->num_layers - 1 && enc->M < N)
            last_layer_backward_rows(enc, x, dh, da, db, ph, pa, seed);
        else {
        /* h2 = LN2(r2), r2 = dropout(ff_out) + h1 */
        ME_TIMED(ME_PHASE_ELEMENTWISE,
                 be->layernorm_backward(da, G + o->ln2_w, G + o->ln2_b, dh, a->r2, a->mean2, a->rstd2,
                                        P + o->ln2_w, N, H, 0);
                 be->dropout_backward(db, da, (size_t)N * H, ph, seed, rows_site(enc, SITE(l, SITE_FFN_OUT), H));
                 be->gelu_forward(enc->ff, a->f1pre, (size_t)N * I, (MeActivation)c->activation));
        float *dff = enc->d_ff;
        ME_TIMED(ME_PHASE_GEMM,
                 be->matmul_backward(dff, G + o->out_w, G + o->out_b, db, enc->ff, P + o->out_w, N, I, H, 0));
        ME_TIMED(ME_PHASE_ELEMENTWISE,
                 be->gelu_backward(dff, a->f1pre, dff, (size_t)N * I, (MeActivation)c->activation));
        /* d(h1) = d(r2) + dff @ W1 */
        ME_TIMED(ME_PHASE_GEMM, be->matmul_backward(da, G + o->fc_w, G + o->fc_b, dff, a->h1, P + o->fc_w, N, H, I, 1));
        /* h1 = LN1(r1), r1 = dropout(att_out) + x */
        ME_TIMED(ME_PHASE_ELEMENTWISE,
                 be->layernorm_backward(db, G + o->ln1_w, G + o->ln1_b, da, a->r1, a->mean1, a->rstd1,
                                        P + o->ln1_w, N, H, 0);
                 be->dropout_backward(da, db, (size_t)N * H, ph, seed, rows_site(enc, SITE(l, SITE_ATT_OUT), H)));
        ME_TIMED(ME_PHASE_GEMM, be->matmul_backward(dh, G + o->ao_w, G + o->ao_b, da, a->ctx, P + o->ao_w, N, H, H, 0));
        ME_TIMED(ME_PHASE_ATTENTION, be->attention_backward(enc->d_qkv, dh, a->qkv, a->probs, enc->mask, B, T, NH, HS,
                                                            pa, seed, SITE(l, SITE_ATT) + enc->row0 * NH, enc->att_scratch));
        /* d(x) = d(r1) + dqkv @ Wqkv */
        ME_TIMED(ME_PHASE_GEMM, be->matmul_backward(db, G + o->qkv_w, G + o->qkv_b, enc->d_qkv, x, P + o->qkv_w, N,
                                                    H, 3 * H, 1));
        }
        /* this layer's gradients are complete (and still in cache): add their squares */
        if (grad_sumsq)
            ME_TIMED(ME_PHASE_OPTIMIZER, *grad_sumsq += be->sum_squares(G + o->qkv_w, o->ln2_b + H - o->qkv_w));
        float *t = dh;
        dh = db;
        db = t;
    }
    /* dh holds d(x0) */
    float *demb = dh;
    if (E != H) {
        ME_TIMED(ME_PHASE_GEMM, be->matmul_backward(da, G + enc->proj_w, G + enc->proj_b, dh, enc->emb_ln,
                                                    P + enc->proj_w, N, E, H, 0));
        demb = da;
    }
    float *dln = demb == da ? dh : da;
    int word_pad = c->pad_token_id;
    int pos_pad = c->family == ME_FAMILY_ROBERTA ? c->pad_token_id : -1;
    ME_TIMED(ME_PHASE_ELEMENTWISE,
             be->dropout_backward(demb, demb, (size_t)N * E, ph, seed, rows_site(enc, SITE_EMB, E));
             be->layernorm_backward(dln, G + enc->eln_w, G + enc->eln_b, demb, enc->emb_sum, enc->emb_mean,
                                    enc->emb_rstd, P + enc->eln_w, N, E, 0);
             be->embedding_backward(G + enc->wte, dln, enc->ids, N, E, word_pad);
             be->embedding_backward(G + enc->wtt, dln, enc->types, N, E, -1);
             be->embedding_backward(G + enc->wpe, dln, enc->pos, N, E, pos_pad));
    if (grad_sumsq) /* the embedding tables' gradients are zero outside the rows this batch used */
        ME_TIMED(ME_PHASE_OPTIMIZER,
                 size_t end = E != H ? enc->proj_b + H : enc->eln_b + E;
                 *grad_sumsq += be->sum_squares(G + enc->eln_w, end - enc->eln_w) +
                                be->sum_squares_rows(G + enc->wte, enc->rows, enc->nrows[0], E) +
                                be->sum_squares_rows(G + enc->wpe, enc->rows + N, enc->nrows[1], E) +
                                be->sum_squares_rows(G + enc->wtt, enc->rows + 2 * N, enc->nrows[2], E));
    return be->status(err);
}
