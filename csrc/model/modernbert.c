#include "model/modernbert.h"
#include "model/profile.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Dropout sites: one per (layer, place); attention adds b*NH + h (b counted from row0), the others
 * are taken at the rows of the last forward (me_encoder_rows_site). */
#define MB_SITE_EMB 1ULL
#define MB_SITE(layer, kind) ((((uint64_t)(layer) + 1) << 40) | ((uint64_t)(kind) << 36))
enum { MB_ATT = 1, MB_ATT_OUT = 2, MB_MLP = 3 };

typedef struct {
    size_t an_w, an_b, qkv_w, qkv_b, ao_w, ao_b, mn_w, mn_b, wi_w, wi_b, wo_w, wo_b;
} MbLayer;

typedef struct {
    float *mean1, *rstd1, *qkv, *stats, *ctx, *r1, *mean2, *rstd2, *wi, *out;
} MbActs;

struct MeModernBert {
    size_t wte, eln_w, eln_b, fn_w, fn_b;
    MbLayer *lo;
    MbActs *la;
    float *zeros, *sink; /* [H]: the bias of a bias-less LayerNorm, and where its gradient goes */
    float *rope;         /* cos, sin of the global base, then of the local base: [rope_T, HS/2] each */
    int rope_T;
    /* workspace carving */
    float *emb, *emb_mean, *emb_rstd, *x0, *fn_mean, *fn_rstd, *final;
    float *xn, *hn, *ff, *tmp, *att_scratch, *d_x, *d_a, *d_b, *d_qkv, *d_wi, *d_ff;
    float *pk; /* packed: the real rows' fused qkv (their gradient on the way back), context, final output
                  [R, 3H] */
};

static int is_global(const MeEncoderConfig *c, int l) { return l % c->global_every == 0; }

/* Half-width of layer l's attention window (-1: global), HF's config.sliding_window. */
static int window_of(const MeEncoderConfig *c, int l) { return is_global(c, l) ? -1 : c->local_attention / 2; }

/* ------------------------------------------------------------ parameters */

static int check_config(const MeEncoderConfig *c, char *err) {
    int st = me_encoder_check_sizes(c, err);
    if (st) return st;
    if (c->global_every <= 0)
        return me_error(err, ME_ERR_VALUE, "config: global_every must be > 0, got %d", c->global_every);
    if (c->hidden_size % c->num_heads || (c->hidden_size / c->num_heads) % 2)
        return me_error(err, ME_ERR_VALUE,
                        "config: hidden_size %d must be num_attention_heads %d times an even head size "
                        "(rotary embeddings rotate pairs)", c->hidden_size, c->num_heads);
    if (c->local_attention < 0)
        return me_error(err, ME_ERR_VALUE, "config: local_attention must be >= 0, got %d", c->local_attention);
    if (c->activation != ME_ACT_GELU && c->activation != ME_ACT_GELU_TANH)
        return me_error(err, ME_ERR_VALUE, "config: unknown activation %d", c->activation);
    if (!(c->attention_dropout >= 0.0f && c->attention_dropout < 1.0f) ||
        !(c->embedding_dropout >= 0.0f && c->embedding_dropout < 1.0f) ||
        !(c->mlp_dropout >= 0.0f && c->mlp_dropout < 1.0f))
        return me_error(err, ME_ERR_VALUE, "config: dropout probabilities must be in [0, 1)");
    if (!(c->layer_norm_eps > 0.0f)) return me_error(err, ME_ERR_VALUE, "config: norm_eps must be > 0");
    if (!(c->global_rope_theta > 0.0f) || !(c->local_rope_theta > 0.0f))
        return me_error(err, ME_ERR_VALUE, "config: rope thetas must be > 0");
    if (c->pad_token_id < -1 || c->pad_token_id >= c->vocab_size)
        return me_error(err, ME_ERR_VALUE, "config: pad_token_id %d outside the vocabulary", c->pad_token_id);
    return ME_OK;
}

int me_modernbert_lay_out(MeEncoder *enc, MeParamList *pl, char *err) {
    const MeEncoderConfig *cfg = &enc->cfg;
    int st = check_config(cfg, err);
    if (st) return st;
    struct MeModernBert *mb = enc->mb = calloc(1, sizeof(struct MeModernBert));
    if (!mb) return me_error(err, ME_ERR_NOMEM, "out of memory laying out the encoder's parameters");
    const int H = cfg->hidden_size, I = cfg->intermediate_size, L = cfg->num_layers;
    char nm[96];
    /* an optional bias: its offset, or 0 (never read) when the config has none */
#define BIAS(has, name, d0) ((has) ? me_params_add(pl, name, d0, 0, 1) : 0)
    mb->wte = me_params_add(pl, "embeddings.tok_embeddings.weight", cfg->vocab_size, H, 1);
    mb->eln_w = me_params_add(pl, "embeddings.norm.weight", H, 0, 1);
    mb->eln_b = BIAS(cfg->norm_bias, "embeddings.norm.bias", H);
    mb->lo = calloc((size_t)L, sizeof(MbLayer));
    mb->la = calloc((size_t)L, sizeof(MbActs));
    if (!mb->lo || !mb->la) pl->failed = 1;
    for (int l = 0; l < L && !pl->failed; l++) {
        MbLayer *o = &mb->lo[l];
#define W(field, suffix, d0, d1)                                 \
    snprintf(nm, sizeof nm, "layers.%d.%s.weight", l, suffix);   \
    o->field##_w = me_params_add(pl, nm, d0, d1, 1);
#define B(field, suffix, has, d0)                                \
    snprintf(nm, sizeof nm, "layers.%d.%s.bias", l, suffix);     \
    o->field##_b = BIAS(has, nm, d0);
        if (l > 0) { /* layer 0's attention norm is the identity */
            W(an, "attn_norm", H, 0);
            B(an, "attn_norm", cfg->norm_bias, H);
        }
        W(qkv, "attn.Wqkv", 3 * H, H);
        B(qkv, "attn.Wqkv", cfg->attention_bias, 3 * H);
        W(ao, "attn.Wo", H, H);
        B(ao, "attn.Wo", cfg->attention_bias, H);
        W(mn, "mlp_norm", H, 0);
        B(mn, "mlp_norm", cfg->norm_bias, H);
        W(wi, "mlp.Wi", 2 * I, H);
        B(wi, "mlp.Wi", cfg->mlp_bias, 2 * I);
        W(wo, "mlp.Wo", H, I);
        B(wo, "mlp.Wo", cfg->mlp_bias, H);
#undef W
#undef B
    }
    mb->fn_w = me_params_add(pl, "final_norm.weight", H, 0, 1);
    mb->fn_b = BIAS(cfg->norm_bias, "final_norm.bias", H);
#undef BIAS
    return pl->failed ? me_error(err, ME_ERR_NOMEM, "out of memory laying out the encoder's parameters") : ME_OK;
}

int me_modernbert_create(MeEncoder **out, const MeEncoderConfig *cfg, const MeBackend *be, char *err) {
    *out = NULL;
    MeEncoder *enc = calloc(1, sizeof(MeEncoder));
    if (!enc) return me_error(err, ME_ERR_NOMEM, "out of memory creating the encoder");
    enc->cfg = *cfg;
    enc->be = be;
    MeParamList pl = {0};
    int st = me_modernbert_lay_out(enc, &pl, err);
    enc->info = pl.info;
    enc->nparams = pl.n;
    enc->nfloats = pl.nfloats;
    enc->ntrain = pl.nfloats; /* every tensor trains (none frozen) */
    if (st) {
        me_encoder_free(enc);
        return st;
    }
    const int H = cfg->hidden_size;
    struct MeModernBert *mb = enc->mb;
    enc->params = be->alloc(enc->nfloats * sizeof(float));
    enc->grads_zero = 1; /* no buffer yet (me_encoder_ensure_grads makes it zero-filled) */
    mb->zeros = be->alloc((size_t)H * sizeof(float));
    mb->sink = be->alloc((size_t)H * sizeof(float));
    if (!enc->params || !mb->zeros || !mb->sink) {
        int st = me_alloc_failed(be, err, "out of memory allocating %zu parameters", pl.nfloats);
        me_encoder_free(enc);
        return st;
    }
    *out = enc;
    return ME_OK;
}

void me_modernbert_free(MeEncoder *enc) {
    struct MeModernBert *mb = enc->mb;
    if (enc->be) {
        if (mb->zeros) enc->be->release(mb->zeros);
        if (mb->sink) enc->be->release(mb->sink);
        if (mb->rope) enc->be->release(mb->rope);
    }
    free(mb->lo);
    free(mb->la);
    free(mb);
    enc->mb = NULL;
}

/* ------------------------------------------------------------- workspace */

size_t me_modernbert_carve(MeEncoder *enc, float *base, int B, int T) {
    const MeEncoderConfig *c = &enc->cfg;
    struct MeModernBert *mb = enc->mb;
    const size_t N = (size_t)B * T, H = c->hidden_size, I = c->intermediate_size, NH = c->num_heads,
                 HS = H / NH;
    size_t off = 0, scratch = 0;
    enc->ids = (int32_t *)me_carve(base, &off, N);
    enc->mask = (int32_t *)me_carve(base, &off, N);
    if (me_encoder_can_pack(enc)) { /* the real rows; the read rows of the last layer's tail (choose_rows) */
        enc->real = (int32_t *)me_carve(base, &off, N);
        enc->sel = (int32_t *)me_carve(base, &off, N);
        enc->sel_in = (int32_t *)me_carve(base, &off, N);
        enc->qstart = (int32_t *)me_carve(base, &off, (size_t)B + 1);
        enc->qpos = (int32_t *)me_carve(base, &off, N);
        mb->pk = me_carve(base, &off, N * 3 * H);
    }
    mb->emb = me_carve(base, &off, N * H);
    mb->emb_mean = me_carve(base, &off, N);
    mb->emb_rstd = me_carve(base, &off, N);
    mb->x0 = me_carve(base, &off, N * H);
    for (int l = 0; l < c->num_layers; l++) {
        MbActs *a = &mb->la[l];
        if (enc->infer && l >= 2) { /* layer l reads l - 1's output only: it may write over l - 2's */
            if (base) *a = mb->la[l % 2];
            continue;
        }
        a->mean1 = me_carve(base, &off, N); /* layer 0 has no attention norm, but layer 2 may take its place */
        a->rstd1 = me_carve(base, &off, N);
        a->qkv = me_carve(base, &off, N * 3 * H);
        a->stats = me_carve(base, &off, N * NH * 2);
        a->ctx = me_carve(base, &off, N * H);
        a->r1 = me_carve(base, &off, N * H);
        a->mean2 = me_carve(base, &off, N);
        a->rstd2 = me_carve(base, &off, N);
        a->wi = me_carve(base, &off, N * 2 * I);
        a->out = me_carve(base, &off, N * H);
        size_t s = enc->be->window_attention_scratch_floats(B, T, (int)NH, (int)HS, window_of(c, l));
        if (s > scratch) scratch = s;
    }
    mb->fn_mean = me_carve(base, &off, N);
    mb->fn_rstd = me_carve(base, &off, N);
    mb->final = me_carve(base, &off, N * H);
    mb->xn = me_carve(base, &off, N * H);
    mb->hn = me_carve(base, &off, N * H);
    mb->ff = me_carve(base, &off, N * I);
    mb->tmp = me_carve(base, &off, N * H);
    mb->att_scratch = me_carve(base, &off, scratch);
    if (enc->infer) { /* no backward follows an inference forward */
        if (base) enc->d_h = mb->d_x = mb->d_a = mb->d_b = mb->d_qkv = mb->d_wi = mb->d_ff = NULL;
        return off;
    }
    enc->d_h = me_carve(base, &off, N * H);
    mb->d_x = me_carve(base, &off, N * H);
    mb->d_a = me_carve(base, &off, N * H);
    mb->d_b = me_carve(base, &off, N * H);
    mb->d_qkv = me_carve(base, &off, N * 3 * H);
    mb->d_wi = me_carve(base, &off, N * 2 * I);
    mb->d_ff = me_carve(base, &off, N * I);
    return off;
}

/* The rotary tables for T positions (grown, never shrunk). */
static int ensure_rope(MeEncoder *enc, int T, char *err) {
    struct MeModernBert *mb = enc->mb;
    if (T <= mb->rope_T) return ME_OK;
    const int half = enc->cfg.hidden_size / enc->cfg.num_heads / 2;
    const size_t n = (size_t)T * half;
    float *host = malloc(4 * n * sizeof(float));
    float *dev = enc->be->alloc(4 * n * sizeof(float));
    if (!host || !dev) {
        free(host);
        if (dev) enc->be->release(dev);
        return me_alloc_failed(enc->be, err, "out of memory for the rotary tables of %d positions", T);
    }
    me_rope_tables(host, host + n, T, 2 * half, enc->cfg.global_rope_theta);
    me_rope_tables(host + 2 * n, host + 3 * n, T, 2 * half, enc->cfg.local_rope_theta);
    enc->be->to_device(dev, host, 4 * n * sizeof(float));
    free(host);
    if (mb->rope) enc->be->release(mb->rope);
    mb->rope = dev;
    mb->rope_T = T;
    return ME_OK;
}

void me_rope_tables(float *cos_out, float *sin_out, int T, int HS, float theta) {
    const int half = HS / 2;
    for (int i = 0; i < half; i++) {
        const float e = (float)(2 * i) / (float)HS;
        const float inv = 1.0f / (float)pow((double)theta, (double)e);
        for (int t = 0; t < T; t++) {
            const double angle = (double)((float)t * inv);
            cos_out[(size_t)t * half + i] = (float)cos(angle);
            sin_out[(size_t)t * half + i] = (float)sin(angle);
        }
    }
}

/* Layer l's cos and sin tables (rows 0..T-1 are used). */
static void rope_of(const MeEncoder *enc, int l, const float **cos_t, const float **sin_t) {
    const size_t n = (size_t)enc->mb->rope_T * (enc->cfg.hidden_size / enc->cfg.num_heads / 2);
    const float *base = enc->mb->rope + (is_global(&enc->cfg, l) ? 0 : 2 * n);
    *cos_t = base;
    *sin_t = base + n;
}

/* --------------------------------------------------------------- forward */

/* Packed (enc->packed): every op but the attention runs on the R real rows; the attention, with its
 * rotary embedding, on the padded batch layout, whose padding rows hold zeros (no real query
 * attends to a padding key, and nothing reads a padding query's output). */

/* What a forward or backward reads of the encoder: the sizes of the last forward (R: the rows computed,
 * N = B*T unless packed; rows: theirs in the batch, NULL for every row), and the dropout
 * probabilities of its mode (0 in eval mode). */
typedef struct {
    int B, T, N, R, H, I, NH, HS;
    const int32_t *rows;
    float pe, pa, pm, eps; /* embedding, attention, MLP dropout; norm_eps */
    MeActivation act;
    uint64_t seed;
} MbRun;

static MbRun mb_run(const MeEncoder *enc) {
    const MeEncoderConfig *c = &enc->cfg;
    MbRun r;
    r.B = enc->B;
    r.T = enc->T;
    r.N = r.B * r.T;
    r.R = enc->R;
    r.rows = me_computed_rows(enc);
    r.H = c->hidden_size;
    r.I = c->intermediate_size;
    r.NH = c->num_heads;
    r.HS = r.H / r.NH;
    r.pe = enc->train ? c->embedding_dropout : 0.0f;
    r.pa = enc->train ? c->attention_dropout : 0.0f;
    r.pm = enc->train ? c->mlp_dropout : 0.0f;
    r.eps = c->layer_norm_eps;
    r.act = (MeActivation)c->activation;
    r.seed = enc->seed;
    return r;
}

int me_modernbert_forward(MeEncoder *enc, const int32_t *ids, const int32_t *mask, float *out, char *err) {
    int st = ensure_rope(enc, enc->T, err);
    if (st) return st;
    const MeBackend *be = enc->be;
    const MeEncoderConfig *c = &enc->cfg;
    struct MeModernBert *mb = enc->mb;
    const MbRun r = mb_run(enc);
    const int B = r.B, T = r.T, N = r.N, R = r.R, H = r.H, I = r.I, NH = r.NH, HS = r.HS;
    const float *P = enc->params;
    /* an optional bias as the op wants it: the linears' NULL, the LayerNorms' zeros */
#define LIN_B(has, off) ((has) ? P + (off) : NULL)
#define LN_B(off) (c->norm_bias ? P + (off) : mb->zeros)
    be->to_device(enc->ids, ids, sizeof(int32_t) * R);
    be->to_device(enc->mask, mask, sizeof(int32_t) * N);

    /* embeddings: token embedding, LayerNorm, dropout (positions enter through the rotary tables) */
    ME_TIMED(ME_PHASE_ELEMENTWISE, be->embedding_forward(mb->emb, enc->ids, P + mb->wte, R, H, 0));
    ME_TIMED(ME_PHASE_ELEMENTWISE, be->layernorm_forward(mb->x0, mb->emb_mean, mb->emb_rstd, mb->emb, P + mb->eln_w,
                                                         LN_B(mb->eln_b), R, H, r.eps));
    ME_TIMED(ME_PHASE_ELEMENTWISE, me_dropout_fwd(enc, mb->x0, r.rows, R, H, r.pe, MB_SITE_EMB));

    /* the caller reads fewer rows than the layers compute: the last layer's tail runs only those */
    const int prune = enc->M < R;
    const float *x = mb->x0;
    for (int l = 0; l < c->num_layers; l++) {
        const MbLayer *o = &mb->lo[l];
        MbActs *a = &mb->la[l];
        const float *cos_t, *sin_t;
        rope_of(enc, l, &cos_t, &sin_t);
        /* x + attn(attn_norm(x)) */
        const float *xn = x;
        if (l > 0) {
            ME_TIMED(ME_PHASE_ELEMENTWISE,
                     be->layernorm_forward(mb->xn, a->mean1, a->rstd1, x, P + o->an_w, LN_B(o->an_b), R, H, r.eps));
            xn = mb->xn;
        }
        ME_TIMED(ME_PHASE_GEMM, be->matmul_forward(enc->packed ? mb->pk : a->qkv, xn, P + o->qkv_w,
                                                   LIN_B(c->attention_bias, o->qkv_b), R, H, 3 * H));
        if (enc->packed) ME_TIMED(ME_PHASE_ELEMENTWISE, me_packed_to_batch(enc, a->qkv, mb->pk, 3 * H));
        ME_TIMED(ME_PHASE_ATTENTION, be->rope_forward(a->qkv, cos_t, sin_t, B, T, NH, HS));
        ME_TIMED(ME_PHASE_ATTENTION,
                 be->window_attention_forward(a->ctx, a->stats, a->qkv, enc->mask, B, T, NH, HS, window_of(c, l), r.pa,
                                              r.seed, MB_SITE(l, MB_ATT) + enc->row0 * NH, mb->att_scratch));
        /* the rest on the rows computed, or in the last layer the read rows only */
        const int tail = l == c->num_layers - 1 && prune, M = tail ? enc->M : R;
        const int32_t *rows = tail ? enc->sel : r.rows; /* as rows of the batch (NULL: every row) */
        const float *ctx = a->ctx;
        if (rows) {
            ME_TIMED(ME_PHASE_ELEMENTWISE, be->embedding_forward(mb->pk, rows, a->ctx, M, H, 0));
            ctx = mb->pk;
        }
        float *att = tail ? a->r1 : mb->tmp; /* the tail adds x's read rows to it in place */
        ME_TIMED(ME_PHASE_GEMM, be->matmul_forward(att, ctx, P + o->ao_w, LIN_B(c->attention_bias, o->ao_b), M, H, H));
        ME_TIMED(ME_PHASE_ELEMENTWISE, me_dropout_fwd(enc, att, rows, M, H, r.pa, MB_SITE(l, MB_ATT_OUT)));
        if (tail)
            ME_TIMED(ME_PHASE_ELEMENTWISE, be->embedding_forward(a->r1, enc->sel_in, x, M, H, 1));
        else
            ME_TIMED(ME_PHASE_ELEMENTWISE, be->add_forward(a->r1, mb->tmp, x, (size_t)M * H));
        /* r1 + Wo(dropout(GeGLU(Wi(mlp_norm(r1))))) */
        ME_TIMED(ME_PHASE_ELEMENTWISE,
                 be->layernorm_forward(mb->hn, a->mean2, a->rstd2, a->r1, P + o->mn_w, LN_B(o->mn_b), M, H, r.eps));
        ME_TIMED(ME_PHASE_GEMM,
                 be->matmul_forward(a->wi, mb->hn, P + o->wi_w, LIN_B(c->mlp_bias, o->wi_b), M, H, 2 * I));
        ME_TIMED(ME_PHASE_ELEMENTWISE, be->glu_forward(mb->ff, a->wi, M, I, r.act));
        ME_TIMED(ME_PHASE_ELEMENTWISE, me_dropout_fwd(enc, mb->ff, rows, M, I, r.pm, MB_SITE(l, MB_MLP)));
        ME_TIMED(ME_PHASE_GEMM, be->matmul_forward(mb->tmp, mb->ff, P + o->wo_w, LIN_B(c->mlp_bias, o->wo_b), M, I, H));
        ME_TIMED(ME_PHASE_ELEMENTWISE, be->add_forward(a->out, mb->tmp, a->r1, (size_t)M * H));
        x = a->out;
    }
    /* the final norm on the last layer's rows, which go to their rows of the batch */
    const int M = prune ? enc->M : R;
    const int32_t *rows = prune ? enc->sel : r.rows;
    ME_TIMED(ME_PHASE_ELEMENTWISE, be->layernorm_forward(rows ? mb->pk : mb->final, mb->fn_mean, mb->fn_rstd, x,
                                                         P + mb->fn_w, LN_B(mb->fn_b), M, H, r.eps));
    if (rows)
        ME_TIMED(ME_PHASE_ELEMENTWISE, be->zero(mb->final, sizeof(float) * (size_t)N * H);
                 be->embedding_backward(mb->final, mb->pk, rows, M, H, -1));
#undef LIN_B
#undef LN_B
    if (out) be->to_host(out, mb->final, sizeof(float) * (size_t)N * H);
    return be->status(err);
}

const float *me_modernbert_output(const MeEncoder *enc) { return enc->mb->final; }

/* -------------------------------------------------------------- backward */

int me_modernbert_backward(MeEncoder *enc, char *err) {
    const MeBackend *be = enc->be;
    const MeEncoderConfig *c = &enc->cfg;
    struct MeModernBert *mb = enc->mb;
    const MbRun r = mb_run(enc);
    const int B = r.B, T = r.T, R = r.R, H = r.H, I = r.I, NH = r.NH, HS = r.HS;
    const float *P = enc->params;
    float *G = enc->grads, *D = mb->d_x;
#define LIN_G(has, off) ((has) ? G + (off) : NULL)
#define LN_B(off) (c->norm_bias ? P + (off) : mb->zeros)
#define LN_G(off) (c->norm_bias ? G + (off) : mb->sink)
    be->zero(mb->sink, sizeof(float) * H);
    /* the last layer's tail ran the read rows only (prune): its gradients, d(out) to d(r1), are held
     * at those rows in Dt, the rest of the layer's in D (at the rows computed) */
    const int prune = enc->M < R, Mt = prune ? enc->M : R;
    const int32_t *rows_t = prune ? enc->sel : r.rows;
    float *Dt = prune ? mb->d_b : D;
    const float *last = c->num_layers ? mb->la[c->num_layers - 1].out : mb->x0, *dfinal = enc->d_h;
    if (rows_t) {
        float *g = prune ? D : mb->d_b;
        ME_TIMED(ME_PHASE_ELEMENTWISE, be->embedding_forward(g, rows_t, enc->d_h, Mt, H, 0));
        dfinal = g;
    }
    ME_TIMED(ME_PHASE_ELEMENTWISE, be->layernorm_backward(Dt, G + mb->fn_w, LN_G(mb->fn_b), dfinal, last, mb->fn_mean,
                                                          mb->fn_rstd, P + mb->fn_w, Mt, H, 0));
    /* D (Dt) holds d(out of layer l) */
    for (int l = c->num_layers - 1; l >= 0; l--) {
        const MbLayer *o = &mb->lo[l];
        const MbActs *a = &mb->la[l];
        const float *x = l ? mb->la[l - 1].out : mb->x0;
        const float *cos_t, *sin_t;
        rope_of(enc, l, &cos_t, &sin_t);
        const int tail = l == c->num_layers - 1 && prune, M = tail ? Mt : R;
        const int32_t *rows = tail ? enc->sel : r.rows; /* as rows of the batch (NULL: every row) */
        float *Dl = tail ? Dt : D;
        /* MLP branch: out = r1 + Wo(dropout(GeGLU(wi))), wi = Wi(mlp_norm(r1)); the GeGLU output
         * Wo's weight gradient needs is recomputed by glu_backward on the way */
        ME_TIMED(ME_PHASE_GEMM, be->matmul_backward(mb->d_ff, NULL, NULL, Dl, NULL, P + o->wo_w, M, I, H, 0));
        ME_TIMED(ME_PHASE_ELEMENTWISE, me_dropout_bwd(enc, mb->d_ff, mb->d_ff, rows, M, I, r.pm, MB_SITE(l, MB_MLP)));
        ME_TIMED(ME_PHASE_ELEMENTWISE, be->glu_backward(mb->d_wi, mb->ff, a->wi, mb->d_ff, M, I, r.act));
        ME_TIMED(ME_PHASE_ELEMENTWISE, me_dropout_fwd(enc, mb->ff, rows, M, I, r.pm, MB_SITE(l, MB_MLP)));
        ME_TIMED(ME_PHASE_GEMM, be->matmul_backward(NULL, G + o->wo_w, LIN_G(c->mlp_bias, o->wo_b), Dl, mb->ff,
                                                    P + o->wo_w, M, I, H, 0));
        ME_TIMED(ME_PHASE_ELEMENTWISE,
                 be->layernorm_forward(mb->hn, a->mean2, a->rstd2, a->r1, P + o->mn_w, LN_B(o->mn_b), M, H, r.eps));
        ME_TIMED(ME_PHASE_GEMM, be->matmul_backward(mb->d_a, G + o->wi_w, LIN_G(c->mlp_bias, o->wi_b), mb->d_wi, mb->hn,
                                                    P + o->wi_w, M, H, 2 * I, 0));
        /* Dl becomes d(r1): the residual plus the branch */
        ME_TIMED(ME_PHASE_ELEMENTWISE, be->layernorm_backward(Dl, G + o->mn_w, LN_G(o->mn_b), mb->d_a, a->r1, a->mean2,
                                                              a->rstd2, P + o->mn_w, M, H, 1));
        /* attention branch: r1 = x + dropout(Wo(attn(qkv))), qkv = rope(Wqkv(attn_norm(x))); packed or
         * pruned, the context's gradient goes to the batch layout for the attention, qkv's comes back */
        ME_TIMED(ME_PHASE_ELEMENTWISE, me_dropout_bwd(enc, mb->d_a, Dl, rows, M, H, r.pa, MB_SITE(l, MB_ATT_OUT)));
        const float *ctx = a->ctx;
        if (rows) {
            ME_TIMED(ME_PHASE_ELEMENTWISE, be->embedding_forward(mb->pk, rows, a->ctx, M, H, 0));
            ctx = mb->pk;
        }
        float *dctx = tail ? D : mb->d_b, *dqkv = mb->d_qkv; /* Dt (d_b) keeps d(r1) in the tail */
        ME_TIMED(ME_PHASE_GEMM, be->matmul_backward(dctx, G + o->ao_w, LIN_G(c->attention_bias, o->ao_b), mb->d_a,
                                                    ctx, P + o->ao_w, M, H, H, 0));
        if (rows) {
            ME_TIMED(ME_PHASE_ELEMENTWISE, be->zero(mb->d_a, sizeof(float) * (size_t)B * T * H);
                     be->embedding_backward(mb->d_a, dctx, rows, M, H, -1));
            dctx = mb->d_a;
        }
        ME_TIMED(ME_PHASE_ATTENTION, be->window_attention_backward(
                                         mb->d_qkv, dctx, a->qkv, a->stats, enc->mask, B, T, NH, HS, window_of(c, l),
                                         r.pa, r.seed, MB_SITE(l, MB_ATT) + enc->row0 * NH, mb->att_scratch));
        ME_TIMED(ME_PHASE_ATTENTION, be->rope_backward(mb->d_qkv, cos_t, sin_t, B, T, NH, HS));
        if (enc->packed) {
            ME_TIMED(ME_PHASE_ELEMENTWISE, me_batch_to_packed(enc, mb->pk, mb->d_qkv, 3 * H));
            dqkv = mb->pk;
        }
        /* d(x) = d(r1) + the attention branch's: the tail's d(r1) is added at the read rows after */
        if (l == 0) { /* attn_norm is the identity: d(x) (+)= dqkv @ Wqkv */
            ME_TIMED(ME_PHASE_GEMM, be->matmul_backward(D, G + o->qkv_w, LIN_G(c->attention_bias, o->qkv_b), dqkv, x,
                                                        P + o->qkv_w, R, H, 3 * H, !tail));
        } else {
            ME_TIMED(ME_PHASE_ELEMENTWISE,
                     be->layernorm_forward(mb->xn, a->mean1, a->rstd1, x, P + o->an_w, LN_B(o->an_b), R, H, r.eps));
            ME_TIMED(ME_PHASE_GEMM, be->matmul_backward(mb->d_a, G + o->qkv_w, LIN_G(c->attention_bias, o->qkv_b), dqkv,
                                                        mb->xn, P + o->qkv_w, R, H, 3 * H, 0));
            ME_TIMED(ME_PHASE_ELEMENTWISE, be->layernorm_backward(D, G + o->an_w, LN_G(o->an_b), mb->d_a, x, a->mean1,
                                                                  a->rstd1, P + o->an_w, R, H, !tail));
        }
        if (tail) ME_TIMED(ME_PHASE_ELEMENTWISE, be->embedding_backward(D, Dt, enc->sel_in, M, H, -1));
    }
    /* D holds d(x0): embedding dropout, LayerNorm, table (the padding row gets nothing) */
    ME_TIMED(ME_PHASE_ELEMENTWISE, me_dropout_bwd(enc, D, D, r.rows, R, H, r.pe, MB_SITE_EMB));
    ME_TIMED(ME_PHASE_ELEMENTWISE, be->layernorm_backward(mb->d_a, G + mb->eln_w, LN_G(mb->eln_b), D, mb->emb,
                                                          mb->emb_mean, mb->emb_rstd, P + mb->eln_w, R, H, 0));
    ME_TIMED(ME_PHASE_ELEMENTWISE, be->embedding_backward(G + mb->wte, mb->d_a, enc->ids, R, H, c->pad_token_id));
#undef LIN_G
#undef LN_B
#undef LN_G
    return be->status(err);
}
