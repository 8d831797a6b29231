/* The whole trainable model of a task: one or more encoders (LMs), pooling of
 * each LM's hidden states into row vectors (sentence: one row per sentence;
 * word level: one row per word), a combiner (none / concat / mean / DME with
 * per-LM projections and an optional shared LayerNorm), dropout, a linear
 * decoder and a loss (cross-entropy per row, MSE, or a linear-chain CRF over
 * each sentence's rows). One call runs the forward of every LM, the head, the
 * loss, the whole backward, gradient-norm clipping and AdamW with per-group
 * learning rates. */
#ifndef MULTIENC_MODEL_H
#define MULTIENC_MODEL_H

#include "model/encoder.h"

typedef enum { ME_COMBINE_NONE = 0, ME_COMBINE_CONCAT = 1, ME_COMBINE_MEAN = 2, ME_COMBINE_DME = 3 } MeCombine;
/* CLASSIFY: cross-entropy per row (sentence classes, or word tags without a CRF); REGRESS: MSE;
 * CRF: each sentence's first lengths[b] rows are one tag sequence scored by a linear-chain CRF. */
typedef enum { ME_TASK_CLASSIFY = 0, ME_TASK_REGRESS = 1, ME_TASK_CRF = 2 } MeTask;

typedef struct {
    int combine;        /* MeCombine */
    int use_layer_norm; /* shared LayerNorm on each (projected) LM output */
    float ln_eps;
    float combine_dropout;
    int task;           /* MeTask */
    int num_classes;    /* outputs per row (1 for single-target regression; 0: no decoder, no loss) */
    int pool_rows;      /* pooled hidden-state rows per output row, joined side by side: 1, or 2 for
                           word vectors made of the first and the last sub-word (width 2H per LM) */
} MeHeadConfig;

/* One LM's part of a batch (host memory). pool [B, K * pool_rows, T] weights hidden states into
 * K * pool_rows rows per sentence (a one-hot row for CLS pooling, 1/len over real tokens for mean
 * pooling, sub-word weights per word for word-level pooling); rows p*r .. p*r + p-1 (p = pool_rows)
 * are joined side by side into output row r. */
typedef struct {
    const int32_t *ids, *mask, *types; /* [B, T]; types may be NULL */
    const float *pool;                 /* [B, K * pool_rows, T] */
    int T;
} MeLmInput;

typedef struct {
    const double *lr;           /* [n + 2]: each LM, the combiner, the decoder */
    const double *weight_decay; /* [n + 2] */
    const int *trainable;       /* [n]: 0 = this LM runs forward only this step */
    double beta1, beta2, eps;
    double max_grad_norm;       /* <= 0: no clipping */
} MeOptimConfig;

typedef struct {
    MeHeadConfig cfg;
    const MeBackend *be;
    int n;              /* number of LMs */
    MeEncoder **lms;    /* borrowed; the binding keeps them alive */
    int *H;             /* width of each LM's pooled row: pool_rows x its hidden size */
    int P;              /* projection size (dme/mean) */
    int E;              /* combined embedding length */
    int C;              /* num_classes */

    int nparams;
    MeParamInfo *info;
    size_t nfloats, decoder_start;
    float *params, *grads, *adam_m, *adam_v;
    int step;                   /* optimizer steps taken by the head */
    size_t *proj_w, *proj_b;    /* per LM (dme/mean) */
    size_t ln_w, ln_b, att_w, att_b, dec_w, dec_b, crf_trans, crf_start, crf_end;
    float **lm_m, **lm_v;       /* AdamW moments per LM (me_model_prepare_training, else the first update) */
    int grads_zero;             /* the head's gradient buffer is all zero */
    int side_fixed;             /* LMs side by side: -1 measure and choose, 0 never, 1 always */
    int side_now;               /* the schedule of the last forward (its backward uses it too) */
    int probes[2];              /* measured forwards per schedule (0 one after another, 1 side by side) */
    double seconds[2], work[2]; /* their wall time and multiply-adds */
    int *lm_step;
    int *lm_T;                  /* each LM's length in this model's last forward */

    float *ws;
    size_t ws_floats;
    int B, K, R, has_forward, train;
    int head_backward;          /* the head's backward of the last forward is done (LMs' may follow) */
    uint64_t seed, row0;
    int *trainable_now;
    float **pool_w, **pooled, **d_pooled;
    float *proj, *ln_out, *ln_mean, *ln_rstd, *scores, *alpha, *comb, *drop, *logits, *probs, *loss;
    int32_t *targets_i, *lengths_i, *path_i;
    double *crf_scratch;
    float *targets_f;
    float *d_logits, *d_drop, *d_comb, *d_x, *d_proj, *d_scores;
} MeModel;

/* ME_OK when backend `be` has every op the head of a task model of `task` (ME_TASK_*) runs: pooling,
 * combination, losses (the CRF's for ME_TASK_CRF), gradient norm and AdamW; else ME_ERR_NOTIMPL with a
 * message. Its LMs' families are checked by me_encoder_check_backend. Reads only the op table. */
int me_model_check_backend(const MeBackend *be, int task, char *err);

/* lms: n encoders (borrowed). Parameters start at zero; set them with the param buffer. */
int me_model_create(MeModel **out, MeEncoder **lms, int n, const MeHeadConfig *cfg,
                    const MeBackend *be, char *err);
void me_model_free(MeModel *m);

/* Forward of every LM and the head on B sentences (K rows each). lengths (host, [B], 0..K)
 * says how many rows of each sentence the CRF reads (needed with targets or tags; other tasks
 * ignore it).
 * targets (host) may be NULL; else int32 [R] class ids (negative = ignored row; for the CRF
 * read only inside each length, where they must be valid) or float [R, C]. Host outputs,
 * each may be NULL: outputs = logits / predictions / CRF emissions [R, C]; tags = the CRF's
 * Viterbi tags [R] (-1 past each length; CRF only); alpha = DME / mean weights [n, R];
 * embedding = the combined vectors before dropout [R, E]; *loss when targets were given.
 * Without targets no backward can follow: the LMs then run ME_FORWARD_INFER (two layers'
 * activations at a time, none kept for a backward). */
int me_model_forward(MeModel *m, const MeLmInput *in, int B, int K, const int32_t *lengths,
                     const void *targets, int train, uint64_t seed, float *outputs, int32_t *tags,
                     float *alpha, float *embedding, float *loss, char *err);

/* me_model_forward on rows row0 .. row0 + B - 1 of a larger batch padded to the same T and K (a
 * data-parallel shard): every dropout keeps exactly the units that the whole batch's forward keeps
 * in those rows (me_dropout_site_at), so shards reproduce the whole batch's activations. */
int me_model_forward_rows(MeModel *m, const MeLmInput *in, int B, int K, const int32_t *lengths,
                          const void *targets, int train, uint64_t seed, uint64_t row0, float *outputs,
                          int32_t *tags, float *alpha, float *embedding, float *loss, char *err);

/* A whole training step: forward (train mode), loss, backward, clipping, AdamW.
 * *grad_norm receives the total norm before clipping. */
int me_model_train_step(MeModel *m, const MeLmInput *in, int B, int K, const int32_t *lengths,
                        const void *targets, uint64_t seed, const MeOptimConfig *oc, float *outputs, float *loss,
                        double *grad_norm, char *err);

/* How the model runs its LMs now (a sentence for logs and benchmarks). */
const char *me_model_lm_schedule(const MeModel *m);

/* The precision of the linear layers of the model and of its language models: "fp32" or "bf16"
 * (cpu only, on CPUs with AVX512-BF16: inputs rounded to bf16, float32 accumulation; parameters,
 * gradients, optimizer state and every other op stay float32). ME_ERR_VALUE for another string,
 * ME_ERR_NOTIMPL for bf16 on a CPU without AVX512-BF16 or on another backend. */
int me_model_set_precision(MeModel *m, const char *precision, char *err);

/* Allocate (zero-filled, pages already mapped) the gradient buffers and AdamW moments of the LMs
 * flagged in trainable [n] that have none yet, so that the first step does not; a training step
 * does it too. A model that only predicts never holds either. */
int me_model_prepare_training(MeModel *m, const int *trainable, char *err);
/* The AdamW state of `which` (-1: the head's buffer; 0..n-1: language model i), for saving and
 * restoring a training run: *first / *second its moment buffers on the backend (*numel floats
 * each; NULL for a language model never updated, unless `allocate` creates them zeroed) and
 * *step its update count (bias correction), which the caller may read or set. */
int me_model_adamw_state(MeModel *m, int which, int allocate, float **first, float **second, size_t *numel,
                         int **step, char *err);

/* Backward of the last forward into the gradient buffers (zeroed first); for tests and
 * for callers that run their own optimizer. trainable [n] as in MeOptimConfig.
 * = me_model_backward_head(m, trainable, 1, err) then me_model_backward_lm for each LM. */
int me_model_backward(MeModel *m, const int *trainable, char *err);

/* The backward in stages, so that a caller can reduce each finished gradient buffer across
 * processes while the next stage computes (data parallelism). _head: the loss's gradient times
 * grad_scale (a shard's rows over the whole batch's counted rows), then the head's buffer (zeroed
 * first) and the gradients at the pooled LM outputs. _lm: LM i's buffer (zeroed first) when
 * trainable[i]; nothing otherwise. */
int me_model_backward_head(MeModel *m, const int *trainable, float grad_scale, char *err);
int me_model_backward_lm(MeModel *m, int i, char *err);

/* Zero gradients of a process whose shard of the batch is empty: the head's buffer and those of
 * the trainable LMs (their sum across processes is then the others' gradients). ME_ERR_NOMEM
 * when a trainable LM's gradient buffer, made here if it has none, cannot be allocated. */
int me_model_zero_grads(MeModel *m, const int *trainable, char *err);

/* Make every LM's gradient buffer that does not exist yet (me_encoder_ensure_grads), for callers
 * that hold their addresses (views for collective operations). */
int me_model_ensure_grads(MeModel *m, char *err);

/* The optimizer half of the step on the gradients in the buffers: the global norm over the head
 * and the trainable LMs (oc->trainable must be the flags the backward ran with), clipping, AdamW
 * per group. ME_ERR_VALUE without any change when the norm is not finite. */
int me_model_update(MeModel *m, const MeOptimConfig *oc, double *grad_norm, char *err);

#endif
