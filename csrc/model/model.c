#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#endif
#include "model/model.h"

#include "model/profile.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SITE_COMBINE_DROPOUT (1ULL << 62)

static uint64_t mix64(uint64_t z) {
    z += 0x9E3779B97F4A7C15ULL;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* Dropout seed of LM i for a step seed: independent streams per LM. */
static uint64_t lm_seed(uint64_t seed, int i) { return mix64(seed ^ mix64((uint64_t)i + 1)); }

/* ------------------------------------------------------------ parameters */

int me_model_check_backend(const MeBackend *be, int task, char *err) {
    if (!be->pool_forward || !be->combine_forward || !be->cross_entropy_forward || !be->adamw_update)
        return me_error(err, ME_ERR_NOTIMPL,
                        "the task model (pooling, combiner, losses, optimizer) is not implemented on the "
                        "'%s' backend yet; use device='cpu'", be->name);
    if (task == ME_TASK_CRF && !be->crf_forward)
        return me_error(err, ME_ERR_NOTIMPL, "the CRF is not implemented on the '%s' backend yet; use device='cpu'",
                        be->name);
    return ME_OK;
}

int me_model_create(MeModel **out, MeEncoder **lms, int n, const MeHeadConfig *cfg,
                    const MeBackend *be, char *err) {
    *out = NULL;
    if (n < 1) return me_error(err, ME_ERR_VALUE, "a model needs at least one language model");
    if (cfg->combine < ME_COMBINE_NONE || cfg->combine > ME_COMBINE_DME)
        return me_error(err, ME_ERR_VALUE, "unknown combine method %d", cfg->combine);
    if ((cfg->combine == ME_COMBINE_NONE) != (n == 1))
        return me_error(err, ME_ERR_VALUE, "combine 'none' is for exactly one language model");
    if (cfg->task != ME_TASK_CLASSIFY && cfg->task != ME_TASK_REGRESS && cfg->task != ME_TASK_CRF)
        return me_error(err, ME_ERR_VALUE, "unknown task %d", cfg->task);
    if (cfg->num_classes < 0 || (cfg->task != ME_TASK_REGRESS && cfg->num_classes == 1) ||
        (cfg->task == ME_TASK_CRF && cfg->num_classes == 0))
        return me_error(err, ME_ERR_VALUE,
                        "num_classes must be >= 2 for classification and tagging, >= 1 for regression, or 0 for "
                        "no decoder (got %d)", cfg->num_classes);
    if (cfg->pool_rows != 1 && cfg->pool_rows != 2)
        return me_error(err, ME_ERR_VALUE, "pool_rows must be 1 or 2 (got %d)", cfg->pool_rows);
    if (!(cfg->combine_dropout >= 0.0f && cfg->combine_dropout < 1.0f))
        return me_error(err, ME_ERR_VALUE, "combine_dropout must be in [0, 1)");
    for (int i = 0; i < n; i++)
        if (strcmp(lms[i]->be->name, be->name) != 0)
            return me_error(err, ME_ERR_VALUE, "language model %d lives on another device", i + 1);
    int st = me_model_check_backend(be, cfg->task, err);
    if (st) return st;
    MeModel *m = calloc(1, sizeof(MeModel));
    if (!m) return me_error(err, ME_ERR_NOMEM, "out of memory");
    m->cfg = *cfg;
    m->be = be;
    const char *sched = getenv("MULTIENC_LM_SCHEDULE");
    m->side_fixed = sched && !strcmp(sched, "sequential") ? 0 : sched && !strcmp(sched, "side-by-side") ? 1 : -1;
    m->n = n;
    m->C = cfg->num_classes;
    int failed = 0;
    m->lms = calloc(n, sizeof(MeEncoder *));
    m->H = calloc(n, sizeof(int));
    m->proj_w = calloc(n, sizeof(size_t));
    m->proj_b = calloc(n, sizeof(size_t));
    m->lm_m = calloc(n, sizeof(float *));
    m->lm_v = calloc(n, sizeof(float *));
    m->lm_step = calloc(n, sizeof(int));
    m->lm_T = calloc(n, sizeof(int));
    m->trainable_now = calloc(n, sizeof(int));
    m->pool_w = calloc(n, sizeof(float *));
    m->pooled = calloc(n, sizeof(float *));
    m->d_pooled = calloc(n, sizeof(float *));
    if (!m->lms || !m->H || !m->proj_w || !m->proj_b || !m->lm_m || !m->lm_v || !m->lm_step ||
        !m->lm_T || !m->trainable_now || !m->pool_w || !m->pooled || !m->d_pooled) {
        me_model_free(m);
        return me_error(err, ME_ERR_NOMEM, "out of memory");
    }
    int P = 0, sum = 0;
    for (int i = 0; i < n; i++) {
        m->lms[i] = lms[i];
        m->H[i] = cfg->pool_rows * lms[i]->cfg.hidden_size;
        P = m->H[i] > P ? m->H[i] : P;
        sum += m->H[i];
    }
    m->P = P;
    if (cfg->combine == ME_COMBINE_CONCAT && cfg->use_layer_norm)
        for (int i = 0; i < n; i++)
            if (m->H[i] != P) {
                const int h = m->H[i];
                me_model_free(m);
                return me_error(err, ME_ERR_VALUE,
                                "use_layer_norm with combine_method='concat' shares one LayerNorm, so the "
                                "language models need equal hidden sizes (got %d and %d)", h, P);
            }
    m->E = cfg->combine == ME_COMBINE_CONCAT ? sum : cfg->combine == ME_COMBINE_NONE ? m->H[0] : P;
    MeParamList pl = {0};
    char nm[96];
    if (cfg->combine == ME_COMBINE_MEAN || cfg->combine == ME_COMBINE_DME)
        for (int i = 0; i < n; i++) {
            snprintf(nm, sizeof nm, "combiner.projections.%d.weight", i);
            m->proj_w[i] = me_params_add(&pl, nm, P, m->H[i], 1);
            snprintf(nm, sizeof nm, "combiner.projections.%d.bias", i);
            m->proj_b[i] = me_params_add(&pl, nm, P, 0, 1);
        }
    if (cfg->use_layer_norm && cfg->combine != ME_COMBINE_NONE) {
        m->ln_w = me_params_add(&pl, "combiner.layer_norm.weight", P, 0, 1);
        m->ln_b = me_params_add(&pl, "combiner.layer_norm.bias", P, 0, 1);
    }
    if (cfg->combine == ME_COMBINE_DME) {
        m->att_w = me_params_add(&pl, "combiner.attention.weight", 1, P, 1);
        m->att_b = me_params_add(&pl, "combiner.attention.bias", 1, 0, 1);
    }
    m->decoder_start = pl.nfloats;
    if (m->C > 0) {
        m->dec_w = me_params_add(&pl, "decoder.weight", m->C, m->E, 1);
        m->dec_b = me_params_add(&pl, "decoder.bias", m->C, 0, 1);
    }
    if (cfg->task == ME_TASK_CRF) { /* pytorch-crf's names; trained with the decoder's group */
        m->crf_trans = me_params_add(&pl, "crf.transitions", m->C, m->C, 1);
        m->crf_start = me_params_add(&pl, "crf.start_transitions", m->C, 0, 1);
        m->crf_end = me_params_add(&pl, "crf.end_transitions", m->C, 0, 1);
    }
    m->info = pl.info;
    m->nparams = pl.n;
    m->nfloats = pl.nfloats;
    failed = pl.failed;
    if (!failed) {
        m->params = be->alloc(m->nfloats * sizeof(float));
        m->grads = be->alloc(m->nfloats * sizeof(float));
        m->adam_m = be->alloc(m->nfloats * sizeof(float));
        m->adam_v = be->alloc(m->nfloats * sizeof(float));
        failed = !m->params || !m->grads || !m->adam_m || !m->adam_v;
        m->grads_zero = 1;
    }
    if (failed) {
        st = me_alloc_failed(be, err, "out of memory allocating the head");
        me_model_free(m);
        return st;
    }
    *out = m;
    return ME_OK;
}

void me_model_free(MeModel *m) {
    if (!m) return;
    const MeBackend *be = m->be;
    if (be) {
        if (m->params) be->release(m->params);
        if (m->grads) be->release(m->grads);
        if (m->adam_m) be->release(m->adam_m);
        if (m->adam_v) be->release(m->adam_v);
        if (m->ws) be->release(m->ws);
        for (int i = 0; i < m->n; i++) {
            if (m->lm_m && m->lm_m[i]) be->release(m->lm_m[i]);
            if (m->lm_v && m->lm_v[i]) be->release(m->lm_v[i]);
        }
    }
    free(m->lms);
    free(m->H);
    free(m->proj_w);
    free(m->proj_b);
    free(m->lm_m);
    free(m->lm_v);
    free(m->lm_step);
    free(m->lm_T);
    free(m->trainable_now);
    free(m->pool_w);
    free(m->pooled);
    free(m->d_pooled);
    free(m->info);
    free(m);
}

/* ------------------------------------------------------------- workspace */

static size_t carve(MeModel *m, float *base, const MeLmInput *in, int B, int K) {
    const size_t R = (size_t)B * K, n = m->n, P = m->P, E = m->E, C = m->C;
    size_t off = 0;
    for (int i = 0; i < m->n; i++) {
        m->pool_w[i] = me_carve(base, &off, (size_t)B * K * m->cfg.pool_rows * in[i].T);
        m->pooled[i] = me_carve(base, &off, R * m->H[i]);
        m->d_pooled[i] = me_carve(base, &off, R * m->H[i]);
    }
    m->proj = me_carve(base, &off, n * R * P);
    m->ln_out = me_carve(base, &off, n * R * P);
    m->ln_mean = me_carve(base, &off, n * R);
    m->ln_rstd = me_carve(base, &off, n * R);
    m->scores = me_carve(base, &off, n * R);
    m->alpha = me_carve(base, &off, n * R);
    m->comb = me_carve(base, &off, R * E);
    m->drop = me_carve(base, &off, R * E);
    m->logits = me_carve(base, &off, R * C);
    m->probs = me_carve(base, &off, R * C);
    m->loss = me_carve(base, &off, 1);
    m->targets_f = me_carve(base, &off, R * C);
    if (base) m->targets_i = (int32_t *)m->targets_f;
    m->d_logits = me_carve(base, &off, R * C);
    m->d_drop = me_carve(base, &off, R * E);
    m->d_comb = me_carve(base, &off, R * E);
    m->d_x = me_carve(base, &off, n * R * P);
    m->d_proj = me_carve(base, &off, n * R * P);
    m->d_scores = me_carve(base, &off, n * R);
    float *ints = NULL, *crf = NULL;
    ints = me_carve(base, &off, (size_t)B + R); /* lengths_i [B] | path_i [R] */
    crf = me_carve(base, &off, m->cfg.task == ME_TASK_CRF ? 2 * ME_CRF_SCRATCH(B, K, C) : 0);
    if (base) {
        m->lengths_i = (int32_t *)ints;
        m->path_i = m->lengths_i + B;
        m->crf_scratch = (double *)crf; /* offsets are multiples of 16 floats: aligned for double */
    }
    return off;
}

static int ensure_workspace(MeModel *m, const MeLmInput *in, int B, int K, char *err) {
    size_t need = carve(m, NULL, in, B, K);
    if (need > m->ws_floats) {
        /* grow by half at least: batches of growing length reallocate (and clear) a few times, not each time */
        size_t grow = m->ws_floats + m->ws_floats / 2 > need ? m->ws_floats + m->ws_floats / 2 : need;
        if (m->ws) m->be->release(m->ws);
        m->ws = m->be->alloc(grow * sizeof(float));
        m->ws_floats = m->ws ? grow : 0;
        if (!m->ws) return me_alloc_failed(m->be, err, "out of memory for the head's activations");
    }
    carve(m, m->ws, in, B, K);
    return ME_OK;
}

/* ------------------------------------------------------- the LMs' schedule
 * With n >= 2 LMs and T >= 2 threads the LMs can run side by side: LM i on team i % t of
 * t = min(n, T) teams of T / t threads each, all at once, rather than one after another on all
 * T threads. Side by side each GEMM packs its weights once instead of once per thread and no
 * thread waits at the end of each small op; but the slowest LM sets the pace, so with LMs of
 * unequal size one after another can win. The model measures: its first forwards alternate
 * between the two (LM_PROBES each), timing the LMs per unit of work, and it keeps the faster
 * (MULTIENC_LM_SCHEDULE=sequential or =side-by-side at creation fixes one). The results are the
 * same bits either way: every op's partition of work is fixed by the thread count of its team,
 * and no op's result depends on that count. */
#define LM_PROBES 3

static double now_seconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Multiply-adds of the LMs' forward (proportional to their time). */
static double lm_work(const MeModel *m, const MeLmInput *in, int B) {
    double w = 0.0;
    for (int i = 0; i < m->n; i++) {
        const MeEncoderConfig *c = &m->lms[i]->cfg;
        const double N = (double)B * in[i].T, H = c->hidden_size;
        w += c->num_layers * N * (4.0 * H * H + 2.0 * H * c->intermediate_size + 2.0 * in[i].T * H);
    }
    return w;
}

/* Side by side needs several LMs, several threads and the CPU backend (a GPU backend has one
 * stream and one BLAS handle, not to be driven from several threads at once). */
static int can_run_side_by_side(const MeModel *m) {
    return m->n >= 2 && omp_get_max_threads() >= 2 && strcmp(m->be->name, "cpu") == 0;
}

/* 1: side by side for this call, 0: one after another. */
static int lm_schedule(const MeModel *m) {
    if (!can_run_side_by_side(m) || m->side_fixed == 0) return 0;
    if (m->side_fixed == 1) return 1;
    return m->probes[1] < m->probes[0] ? 1 : m->probes[0] < LM_PROBES ? 0 : m->seconds[0] * m->work[1] >
                                                                             m->seconds[1] * m->work[0];
}

static void record_schedule(MeModel *m, int side, double seconds, double work) {
    if (m->side_fixed >= 0 || m->probes[side] >= LM_PROBES || !can_run_side_by_side(m)) return;
    m->probes[side]++;
    m->seconds[side] += seconds;
    m->work[side] += work;
}

const char *me_model_lm_schedule(const MeModel *m) {
    if (!can_run_side_by_side(m))
        return strcmp(m->be->name, "cpu") != 0 ? "one language model at a time (a GPU backend runs one stream)"
                                         : "one language model at a time (one LM or one thread)";
    if (m->side_fixed >= 0)
        return m->side_fixed ? "side by side (MULTIENC_LM_SCHEDULE)" : "one after another (MULTIENC_LM_SCHEDULE)";
    if (m->probes[0] < LM_PROBES || m->probes[1] < LM_PROBES) return "not measured yet";
    return lm_schedule(m) ? "side by side (measured faster)" : "one after another (measured faster)";
}

int me_model_set_precision(MeModel *m, const char *precision, char *err) {
    const MeBackend *be;
    int st = me_backend_for_precision(m->be, precision, &be, err);
    if (st) return st;
    m->be = be;
    for (int i = 0; i < m->n; i++) m->lms[i]->be = be;
    return ME_OK;
}

typedef int (*LmTask)(void *ctx, int i, char *err);

/* task(ctx, i) for every LM i (those flagged in active, when given) on the chosen schedule; the
 * first failure's status and message. */
static int run_lms(MeModel *m, int side, const int *active, LmTask task, void *ctx, char *err) {
    int list[64], k = 0;
    for (int i = 0; i < m->n; i++)
        if (!active || active[i]) list[k++] = i;
    if (!side || k < 2) {
        for (int j = 0; j < k; j++) {
            int st = task(ctx, list[j], err);
            if (st) return st;
        }
        return ME_OK;
    }
    const int nt = omp_get_max_threads(), teams = k < nt ? k : nt, per = nt / teams;
    if (per > 1 && omp_get_max_active_levels() < 2) omp_set_max_active_levels(2);
    int status = ME_OK;
#pragma omp parallel num_threads(teams)
    {
        omp_set_num_threads(per); /* this team's ops partition their work for its own threads */
        char e[ME_ERRLEN];
        for (int j = omp_get_thread_num(); j < k; j += teams) {
            int st = task(ctx, list[j], e);
            if (st) {
#pragma omp critical(me_lm_failure)
                if (status == ME_OK) {
                    status = st;
                    memcpy(err, e, ME_ERRLEN);
                }
                break;
            }
        }
    }
    return status;
}

typedef struct {
    MeModel *m;
    const MeLmInput *in;
    int B, K, mode; /* the LMs' ME_FORWARD_* */
    uint64_t seed, row0;
} LmForward;

/* LM i's forward and its pooling */
static int lm_forward(void *ctx, int i, char *err) {
    LmForward *f = ctx;
    MeModel *m = f->m;
    const MeBackend *be = m->be;
    MeEncoder *enc = m->lms[i];
    const MeLmInput *in = &f->in[i];
    const int pr = m->cfg.pool_rows, N = f->B * in->T;
    /* the hidden-state rows the pooling reads: the LM's last layer computes only those */
    int32_t *rows = malloc(sizeof(int32_t) * (size_t)(N > 0 ? N : 1));
    if (!rows) return me_error(err, ME_ERR_NOMEM, "out of memory");
    int nrows = 0;
    for (int b = 0; b < f->B; b++)
        for (int t = 0; t < in->T; t++) {
            const float *w = in->pool + (size_t)b * f->K * pr * in->T + t;
            int read = 0;
            for (int k = 0; k < f->K * pr && !read; k++) read = w[(size_t)k * in->T] != 0.0f;
            if (read) rows[nrows++] = b * in->T + t;
        }
    int st = me_encoder_forward_rows(enc, in->ids, in->types, in->mask, f->B, in->T, f->mode, lm_seed(f->seed, i),
                                     f->row0, rows, nrows, NULL, err);
    free(rows);
    if (st) {
        char tmp[ME_ERRLEN];
        snprintf(tmp, sizeof tmp, "language model %d: %s", i + 1, err);
        memcpy(err, tmp, ME_ERRLEN);
        return st;
    }
    be->to_device(m->pool_w[i], in->pool, sizeof(float) * (size_t)f->B * f->K * pr * in->T);
    /* [B*K*pr, H/pr] rows, read from here on as [B*K, H] */
    ME_TIMED(ME_PHASE_HEAD, be->pool_forward(m->pooled[i], me_encoder_output(enc), m->pool_w[i], f->B, in->T,
                                             f->K * pr, m->H[i] / pr));
    return ME_OK;
}

typedef struct {
    MeModel *m;
    double *sumsq; /* [n] or NULL */
} LmBackward;

/* ME_OK when LM i's workspace still holds this model's last forward with its activations. Another
 * model, a prediction or Encoder.forward (possibly on another thread) may have run one since. */
static int lm_forward_kept(const MeModel *m, int i, char *err) {
    const MeEncoder *enc = m->lms[i];
    if (!enc->has_forward || enc->infer || enc->B != m->B || enc->T != m->lm_T[i])
        return me_error(err, ME_ERR_RUNTIME,
                        "language model %d's last forward is not this model's (another model, a prediction "
                        "or Encoder.forward used it since, possibly on another thread): run the model's "
                        "forward again before backward", i + 1);
    return ME_OK;
}

/* LM i's pooling backward and its backward into its zeroed gradient buffer */
static int lm_backward(void *ctx, int i, char *err) {
    LmBackward *b = ctx;
    MeModel *m = b->m;
    MeEncoder *enc = m->lms[i];
    const int pr = m->cfg.pool_rows;
    int st = lm_forward_kept(m, i, err); /* checked again: a staged step's LM backward is a call of its own */
    if (st) return st;
    ME_TIMED(ME_PHASE_OPTIMIZER, me_encoder_zero_grad(enc));
    ME_TIMED(ME_PHASE_HEAD, m->be->pool_backward(me_encoder_grad_output(enc), m->d_pooled[i], m->pool_w[i], m->B,
                                                 enc->T, m->K * pr, m->H[i] / pr, 0));
    return me_encoder_backward_device(enc, b->sumsq ? &b->sumsq[i] : NULL, err);
}

/* ---------------------------------------------------------------- forward */

/* The combiner dropout's site for the rows of the last forward (see me_dropout_site_at). */
static uint64_t combine_site(const MeModel *m) {
    return me_dropout_site_at(m->seed, SITE_COMBINE_DROPOUT, m->row0 * (uint64_t)m->K * (uint64_t)m->E);
}

int me_model_forward(MeModel *m, const MeLmInput *in, int B, int K, const int32_t *lengths,
                     const void *targets, int train, uint64_t seed, float *outputs, int32_t *tags,
                     float *alpha, float *embedding, float *loss, char *err) {
    return me_model_forward_rows(m, in, B, K, lengths, targets, train, seed, 0, outputs, tags, alpha, embedding,
                                 loss, err);
}

int me_model_forward_rows(MeModel *m, const MeLmInput *in, int B, int K, const int32_t *lengths,
                          const void *targets, int train, uint64_t seed, uint64_t row0, float *outputs,
                          int32_t *tags, float *alpha, float *embedding, float *loss, char *err) {
    const MeBackend *be = m->be;
    const int crf = m->cfg.task == ME_TASK_CRF;
    if (targets && m->C == 0) return me_error(err, ME_ERR_VALUE, "a model without decoder has no loss");
    if (tags && !crf) return me_error(err, ME_ERR_VALUE, "Viterbi tags come from a CRF head; this head has none");
    if (crf && (tags || targets) && !lengths)
        return me_error(err, ME_ERR_VALUE, "the CRF needs each sentence's length (number of words)");
    if (B <= 0 || K <= 0) return me_error(err, ME_ERR_VALUE, "empty batch (%d sentences, %d rows each)", B, K);
    for (int b = 0; lengths && b < B; b++)
        if (lengths[b] < 0 || lengths[b] > K)
            return me_error(err, ME_ERR_VALUE, "sentence %d: length %d is outside 0..%d rows", b, lengths[b], K);
    if (crf && targets)
        for (int b = 0; b < B; b++)
            for (int k = 0; k < lengths[b]; k++) {
                int32_t t = ((const int32_t *)targets)[(size_t)b * K + k];
                if (t < 0 || t >= m->C)
                    return me_error(err, ME_ERR_VALUE,
                                    "sentence %d, word %d: tag %d is outside the %d tags (the CRF needs a tag for "
                                    "every word inside the sentence's length)", b, k, t, m->C);
            }
    for (int i = 0; i < m->n; i++)
        if (!in[i].pool || in[i].T <= 0) return me_error(err, ME_ERR_VALUE, "language model %d: empty input", i + 1);
    m->has_forward = 0; /* the workspace is about to be re-carved (or lost on failure) */
    m->head_backward = 0;
    int st = ensure_workspace(m, in, B, K, err);
    if (st) return st;
    const int R = B * K, n = m->n, P = m->P, E = m->E, C = m->C;
    m->B = B;
    m->K = K;
    m->R = R;
    m->train = train;
    m->seed = seed;
    m->row0 = row0;
    const float *Wt = m->params;

    /* without targets no backward follows: the LMs keep only what their outputs need */
    const int mode = train ? ME_FORWARD_TRAIN : targets ? ME_FORWARD_EVAL : ME_FORWARD_INFER;
    LmForward fw = {m, in, B, K, mode, seed, row0};
    m->side_now = lm_schedule(m);
    double t0 = now_seconds();
    st = run_lms(m, m->side_now, NULL, lm_forward, &fw, err);
    if (st) return st;
    record_schedule(m, m->side_now, now_seconds() - t0, lm_work(m, in, B));
    for (int i = 0; i < n; i++) m->lm_T[i] = in[i].T;
    uint64_t t_head = me_profile_begin();

    const int ln = m->cfg.use_layer_norm && m->cfg.combine != ME_COMBINE_NONE;
    switch (m->cfg.combine) {
    case ME_COMBINE_NONE:
        be->concat_forward(m->comb, E, m->pooled[0], E, R, E);
        break;
    case ME_COMBINE_CONCAT: {
        int col = 0;
        for (int i = 0; i < n; i++) {
            const float *src = m->pooled[i];
            if (ln) {
                float *o = m->ln_out + (size_t)i * R * P;
                be->layernorm_forward(o, m->ln_mean + (size_t)i * R, m->ln_rstd + (size_t)i * R, src,
                                      Wt + m->ln_w, Wt + m->ln_b, R, P, m->cfg.ln_eps);
                src = o;
            }
            be->concat_forward(m->comb + col, E, src, m->H[i], R, m->H[i]);
            col += m->H[i];
        }
        break;
    }
    case ME_COMBINE_MEAN:
    case ME_COMBINE_DME: {
        for (int i = 0; i < n; i++)
            be->matmul_forward(m->proj + (size_t)i * R * P, m->pooled[i], Wt + m->proj_w[i],
                               Wt + m->proj_b[i], R, m->H[i], P);
        const float *x = m->proj;
        if (ln) {
            be->layernorm_forward(m->ln_out, m->ln_mean, m->ln_rstd, m->proj, Wt + m->ln_w, Wt + m->ln_b,
                                  n * R, P, m->cfg.ln_eps);
            x = m->ln_out;
        }
        const float *scores = NULL;
        if (m->cfg.combine == ME_COMBINE_DME) {
            be->matmul_forward(m->scores, x, Wt + m->att_w, Wt + m->att_b, n * R, P, 1);
            scores = m->scores;
        }
        be->combine_forward(m->comb, m->alpha, x, scores, n, R, P);
        break;
    }
    }
    be->dropout_forward(m->drop, m->comb, (size_t)R * E, train ? m->cfg.combine_dropout : 0.0f, seed,
                        combine_site(m));
    if (embedding) be->to_host(embedding, m->comb, sizeof(float) * (size_t)R * E);
    if (C > 0) be->matmul_forward(m->logits, m->drop, Wt + m->dec_w, Wt + m->dec_b, R, E, C);

    if (crf && lengths) be->to_device(m->lengths_i, lengths, sizeof(int32_t) * B);
    if (tags) { /* before the loss: Viterbi reuses the scratch that the CRF's backward reads */
        be->crf_viterbi(m->path_i, m->crf_scratch, m->logits, m->lengths_i, Wt + m->crf_trans, Wt + m->crf_start,
                        Wt + m->crf_end, B, K, C);
        be->to_host(tags, m->path_i, sizeof(int32_t) * R);
    }
    if (targets) {
        if (crf) {
            be->to_device(m->targets_i, targets, sizeof(int32_t) * R);
            be->crf_forward(m->loss, m->crf_scratch, m->logits, m->targets_i, m->lengths_i, Wt + m->crf_trans,
                            Wt + m->crf_start, Wt + m->crf_end, B, K, C);
        } else if (m->cfg.task == ME_TASK_CLASSIFY) {
            const int32_t *t = targets;
            for (int r = 0; r < R; r++)
                if (t[r] >= C)
                    return me_error(err, ME_ERR_VALUE, "target %d of row %d is outside the %d classes", t[r], r, C);
            be->to_device(m->targets_i, t, sizeof(int32_t) * R);
            be->cross_entropy_forward(m->loss, m->probs, m->logits, m->targets_i, R, C);
        } else {
            be->to_device(m->targets_f, targets, sizeof(float) * (size_t)R * C);
            be->mse_forward(m->loss, m->logits, m->targets_f, R, C);
        }
        if (loss) be->to_host(loss, m->loss, sizeof(float));
    }
    me_profile_end(ME_PHASE_HEAD, t_head);
    if (outputs && C > 0) be->to_host(outputs, m->logits, sizeof(float) * (size_t)R * C);
    if (alpha && (m->cfg.combine == ME_COMBINE_DME || m->cfg.combine == ME_COMBINE_MEAN))
        be->to_host(alpha, m->alpha, sizeof(float) * (size_t)n * R);
    m->has_forward = targets ? 1 : 0;
    return ME_OK;
}

/* --------------------------------------------------------------- backward */

static void zero_head_grads(MeModel *m) {
    if (m->grads_zero) return;
    m->be->zero(m->grads, m->nfloats * sizeof(float));
    m->grads_zero = 1;
}

/* The head's backward into its zeroed gradient buffer (the loss's gradient times grad_scale) and
 * the gradients at the pooled LM outputs; with grad_sumsq, the sum of squares of the head's
 * gradients is added to it. */
static int backward_head(MeModel *m, const int *trainable, float grad_scale, double *grad_sumsq, char *err) {
    if (!m->has_forward)
        return me_error(err, ME_ERR_RUNTIME, "backward needs a forward with targets first");
    /* Backward reads each trainable LM's last forward, which must still be this model's. */
    for (int i = 0; i < m->n; i++) {
        int st = trainable[i] ? lm_forward_kept(m, i, err) : ME_OK;
        if (st) return st;
    }
    const MeBackend *be = m->be;
    const int R = m->R, n = m->n, P = m->P, E = m->E, C = m->C, B = m->B, K = m->K;
    const float *Wt = m->params;
    float *G = m->grads;
    ME_TIMED(ME_PHASE_OPTIMIZER, zero_head_grads(m));
    for (int i = 0; i < n; i++) m->trainable_now[i] = trainable[i];
    m->grads_zero = 0;
    uint64_t t_head = me_profile_begin();
    if (m->cfg.task == ME_TASK_CRF)
        be->crf_backward(m->d_logits, G + m->crf_trans, G + m->crf_start, G + m->crf_end, m->crf_scratch, m->logits,
                         m->targets_i, m->lengths_i, Wt + m->crf_trans, Wt + m->crf_start, Wt + m->crf_end, B, K, C);
    else if (m->cfg.task == ME_TASK_CLASSIFY)
        be->cross_entropy_backward(m->d_logits, m->probs, m->targets_i, R, C);
    else
        be->mse_backward(m->d_logits, m->logits, m->targets_f, R, C);
    if (grad_scale != 1.0f) { /* this shard's share of the whole batch's mean loss */
        be->scale(m->d_logits, (size_t)R * C, grad_scale);
        if (m->cfg.task == ME_TASK_CRF) { /* the CRF's own gradients do not flow through d_logits */
            be->scale(G + m->crf_trans, (size_t)C * C, grad_scale);
            be->scale(G + m->crf_start, (size_t)C, grad_scale);
            be->scale(G + m->crf_end, (size_t)C, grad_scale);
        }
    }
    be->matmul_backward(m->d_drop, G + m->dec_w, G + m->dec_b, m->d_logits, m->drop, Wt + m->dec_w, R, E,
                        C, 0);
    be->dropout_backward(m->d_comb, m->d_drop, (size_t)R * E, m->train ? m->cfg.combine_dropout : 0.0f,
                         m->seed, combine_site(m));

    const int ln = m->cfg.use_layer_norm && m->cfg.combine != ME_COMBINE_NONE;
    switch (m->cfg.combine) {
    case ME_COMBINE_NONE:
        be->concat_backward(m->d_pooled[0], E, m->d_comb, E, R, E, 0);
        break;
    case ME_COMBINE_CONCAT: {
        int col = 0;
        for (int i = 0; i < n; i++) {
            if (ln) {
                float *dln = m->d_x + (size_t)i * R * P;
                be->concat_backward(dln, P, m->d_comb + col, E, R, P, 0);
                be->layernorm_backward(m->d_pooled[i], G + m->ln_w, G + m->ln_b, dln, m->pooled[i],
                                       m->ln_mean + (size_t)i * R, m->ln_rstd + (size_t)i * R,
                                       Wt + m->ln_w, R, P, 0);
            } else {
                be->concat_backward(m->d_pooled[i], m->H[i], m->d_comb + col, E, R, m->H[i], 0);
            }
            col += m->H[i];
        }
        break;
    }
    case ME_COMBINE_MEAN:
    case ME_COMBINE_DME: {
        const float *x = ln ? m->ln_out : m->proj;
        int dme = m->cfg.combine == ME_COMBINE_DME;
        be->combine_backward(m->d_x, dme ? m->d_scores : NULL, m->d_comb, x, m->alpha, n, R, P);
        if (dme)
            be->matmul_backward(m->d_x, G + m->att_w, G + m->att_b, m->d_scores, x, Wt + m->att_w, n * R, P,
                                1, 1);
        const float *dproj = m->d_x;
        if (ln) {
            be->layernorm_backward(m->d_proj, G + m->ln_w, G + m->ln_b, m->d_x, m->proj, m->ln_mean,
                                   m->ln_rstd, Wt + m->ln_w, n * R, P, 0);
            dproj = m->d_proj;
        }
        for (int i = 0; i < n; i++)
            be->matmul_backward(m->d_pooled[i], G + m->proj_w[i], G + m->proj_b[i], dproj + (size_t)i * R * P,
                                m->pooled[i], Wt + m->proj_w[i], R, m->H[i], P, 0);
        break;
    }
    }
    me_profile_end(ME_PHASE_HEAD, t_head);
    if (grad_sumsq) ME_TIMED(ME_PHASE_OPTIMIZER, *grad_sumsq += be->sum_squares(G, m->nfloats));
    m->head_backward = 1;
    return be->status(err);
}

int me_model_backward_head(MeModel *m, const int *trainable, float grad_scale, char *err) {
    return backward_head(m, trainable, grad_scale, NULL, err);
}

int me_model_backward_lm(MeModel *m, int i, char *err) {
    if (!m->has_forward || !m->head_backward)
        return me_error(err, ME_ERR_RUNTIME, "a language model's backward needs the head's backward first");
    if (i < 0 || i >= m->n) return me_error(err, ME_ERR_VALUE, "no language model %d (the model has %d)", i + 1, m->n);
    if (!m->trainable_now[i]) return ME_OK;
    LmBackward bw = {m, NULL};
    return lm_backward(&bw, i, err);
}

/* Backward into zeroed gradient buffers, the LMs on the last forward's schedule; with grad_sumsq,
 * the sum of squares of every gradient computed (see me_encoder_backward_device) is added to it. */
static int backward(MeModel *m, const int *trainable, double *grad_sumsq, char *err) {
    int st = backward_head(m, trainable, 1.0f, grad_sumsq, err);
    if (st) return st;
    double sumsq[64] = {0};
    LmBackward bw = {m, grad_sumsq ? sumsq : NULL};
    st = run_lms(m, m->side_now, trainable, lm_backward, &bw, err);
    if (st) return st;
    for (int i = 0; grad_sumsq && i < m->n; i++) *grad_sumsq += sumsq[i];
    return ME_OK;
}

int me_model_backward(MeModel *m, const int *trainable, char *err) { return backward(m, trainable, NULL, err); }

/* -------------------------------------------------------------- optimizer */

/* LM i's gradient buffer and AdamW moments */
static int ensure_training_state(MeModel *m, int i, char *err) {
    int st = me_encoder_ensure_grads(m->lms[i], err);
    if (st || m->lm_m[i]) return st;
    /* the whole buffer's length, as me_model_adamw_state reports it (read_adamw / write_adamw copy
       that many); AdamW updates the first ntrain, the frozen tail's moments stay zero */
    size_t bytes = m->lms[i]->nfloats * sizeof(float);
    m->lm_m[i] = m->be->alloc(bytes);
    m->lm_v[i] = m->be->alloc(bytes);
    if (!m->lm_m[i] || !m->lm_v[i])
        return me_alloc_failed(m->be, err, "out of memory for the optimizer state of language model %d", i + 1);
    return ME_OK;
}

int me_model_prepare_training(MeModel *m, const int *trainable, char *err) {
    for (int i = 0; i < m->n; i++) {
        int st = trainable[i] ? ensure_training_state(m, i, err) : ME_OK;
        if (st) return st;
    }
    return ME_OK;
}

/* The buffers go to the caller, who may write them (a data-parallel sum): not marked zero. */
int me_model_zero_grads(MeModel *m, const int *trainable, char *err) {
    for (int i = 0; i < m->n; i++) {
        int st = trainable[i] ? me_encoder_ensure_grads(m->lms[i], err) : ME_OK;
        if (st) return st;
    }
    m->be->zero(m->grads, m->nfloats * sizeof(float));
    m->grads_zero = 0;
    for (int i = 0; i < m->n; i++) {
        m->trainable_now[i] = trainable[i];
        if (!trainable[i]) continue;
        me_encoder_zero_grad(m->lms[i]);
        m->lms[i]->grads_zero = 0;
    }
    return m->be->status(err);
}

int me_model_ensure_grads(MeModel *m, char *err) {
    for (int i = 0; i < m->n; i++) {
        int st = me_encoder_ensure_grads(m->lms[i], err);
        if (st) return st;
    }
    return ME_OK;
}

static int apply_update(MeModel *m, const MeOptimConfig *oc, double ss, double *grad_norm, char *err);

int me_model_adamw_state(MeModel *m, int which, int allocate, float **first, float **second, size_t *numel,
                         int **step, char *err) {
    if (which < -1 || which >= m->n)
        return me_error(err, ME_ERR_VALUE, "optimizer group owner %d: expected -1 (the head) or 0..%d", which,
                        m->n - 1);
    if (which == -1) {
        *first = m->adam_m;
        *second = m->adam_v;
        *numel = m->nfloats;
        *step = &m->step;
        return ME_OK;
    }
    if (allocate) {
        int st = ensure_training_state(m, which, err);
        if (st) return st;
    }
    *first = m->lm_m[which];
    *second = m->lm_v[which];
    *numel = m->lms[which]->nfloats;
    *step = &m->lm_step[which];
    return ME_OK;
}

int me_model_train_step(MeModel *m, const MeLmInput *in, int B, int K, const int32_t *lengths,
                        const void *targets, uint64_t seed, const MeOptimConfig *oc, float *outputs, float *loss,
                        double *grad_norm, char *err) {
    if (!targets) return me_error(err, ME_ERR_VALUE, "a training step needs targets");
    float l = 0.0f;
    int st = me_model_forward(m, in, B, K, lengths, targets, 1, seed, outputs, NULL, NULL, NULL, &l, err);
    if (st) return st;
    if (loss) *loss = l;
    if (!isfinite(l))
        return me_error(err, ME_ERR_VALUE, "the loss is %s; no update was made", isnan(l) ? "NaN" : "infinite");
    st = me_model_prepare_training(m, oc->trainable, err);
    if (st) return st;
    double ss = 0.0;
    st = backward(m, oc->trainable, &ss, err);
    if (st) return st;
    return apply_update(m, oc, ss, grad_norm, err);
}

int me_model_update(MeModel *m, const MeOptimConfig *oc, double *grad_norm, char *err) {
    const MeBackend *be = m->be;
    for (int i = 0; i < m->n; i++) {
        if (oc->trainable[i] != m->trainable_now[i])
            return me_error(err, ME_ERR_VALUE, "language model %d: trainable is %d but its gradients were %s", i + 1,
                            oc->trainable[i], m->trainable_now[i] ? "computed" : "not computed");
        int st = oc->trainable[i] ? ensure_training_state(m, i, err) : ME_OK;
        if (st) return st;
    }
    double ss = be->sum_squares(m->grads, m->nfloats);
    for (int i = 0; i < m->n; i++)
        if (oc->trainable[i]) ss += be->sum_squares(m->lms[i]->grads, m->lms[i]->ntrain);
    return apply_update(m, oc, ss, grad_norm, err);
}

/* Clipping by the global norm sqrt(ss) and AdamW on every group, in one pass over each buffer
 * that also zeroes the gradients; ME_ERR_VALUE without any change when the norm is not finite. */
static int apply_update(MeModel *m, const MeOptimConfig *oc, double ss, double *grad_norm, char *err) {
    const MeBackend *be = m->be;
    double norm = sqrt(ss);
    if (grad_norm) *grad_norm = norm;
    if (!isfinite(norm))
        return me_error(err, ME_ERR_VALUE, "the gradient norm is %s; no update was made",
                        isnan(norm) ? "NaN" : "infinite");
    float c = 1.0f;
    if (oc->max_grad_norm > 0) {
        /* torch.nn.utils.clip_grad_norm_: coef = max / (norm + 1e-6), clamped to 1, always applied */
        double coef = oc->max_grad_norm / (norm + 1e-6);
        c = (float)(coef < 1.0 ? coef : 1.0);
    }
    /* one pass over each buffer: clipping, AdamW and zeroing the gradients for the next step */
    uint64_t t0 = me_profile_begin();
    for (int i = 0; i < m->n; i++) {
        if (!oc->trainable[i]) continue;
        MeEncoder *enc = m->lms[i];
        m->lm_step[i]++;
        /* frozen tensors (past ntrain) are not in the optimizer, as requires_grad=False ones; they get
           no gradient, so theirs stays zero */
        be->adamw_update(enc->params, enc->grads, m->lm_m[i], m->lm_v[i], enc->ntrain, oc->lr[i], oc->beta1,
                         oc->beta2, oc->eps, oc->weight_decay[i], m->lm_step[i], c);
        enc->grads_zero = 1;
    }
    m->step++;
    const int n = m->n;
    size_t ds = m->decoder_start;
    if (ds)
        be->adamw_update(m->params, m->grads, m->adam_m, m->adam_v, ds, oc->lr[n], oc->beta1, oc->beta2, oc->eps,
                         oc->weight_decay[n], m->step, c);
    be->adamw_update(m->params + ds, m->grads + ds, m->adam_m + ds, m->adam_v + ds, m->nfloats - ds,
                     oc->lr[n + 1], oc->beta1, oc->beta2, oc->eps, oc->weight_decay[n + 1], m->step, c);
    m->grads_zero = 1;
    me_profile_end(ME_PHASE_OPTIMIZER, t0);
    m->has_forward = 0; /* parameters changed: the stored activations are stale */
    m->head_backward = 0;
    return be->status(err);
}
