/* Transformer encoder (BERT / RoBERTa / XLM-RoBERTa / ELECTRA / DistilBERT / ALBERT / MPNet /
 * DeBERTa-v2/v3; ModernBERT in model/modernbert.c) forward and backward on a backend. Parameters
 * and gradients live in one contiguous buffer each; every HF parameter tensor is a contiguous
 * slice of it (the query/key/value weights of a layer are consecutive, so together they form the
 * fused [3H, H] qkv weight the model multiplies by).
 * A layer *application* runs one layer *weight set*: one set per layer, except ALBERT, whose
 * num_hidden_groups x inner_group_num sets are shared by num_hidden_layers x inner_group_num
 * applications (their gradients sum over the uses). MPNet adds one relative position bias,
 * gathered from a bucket table (model/mpnet.c), to every layer's attention scores; DeBERTa
 * computes its embeddings in another order and its attention in model/deberta.c. Activations
 * live in one workspace that grows to the largest (batch x length) seen and is reused. */
#ifndef MULTIENC_ENCODER_H
#define MULTIENC_ENCODER_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "common.h"
#include "model/params.h"

/* XLM-RoBERTa is RoBERTa's architecture (ME_FAMILY_ROBERTA). */
typedef enum {
    ME_FAMILY_BERT = 0,
    ME_FAMILY_ROBERTA = 1,
    ME_FAMILY_ELECTRA = 2,
    ME_FAMILY_DISTILBERT = 3,
    ME_FAMILY_ALBERT = 4,
    ME_FAMILY_MPNET = 5,
    ME_FAMILY_DEBERTA_V2 = 6, /* DeBERTa-v2 and v3 (model_type deberta-v2) */
    ME_FAMILY_MODERNBERT = 7  /* its own layer loop: model/modernbert.c */
} MeFamily;
#define ME_FAMILY_LAST ME_FAMILY_DEBERTA_V2 /* the last family of encoder.c's own layer loop */

/* DeBERTa's pos_att_type terms */
enum { ME_POS_C2P = 1, ME_POS_P2C = 2 };

typedef struct {
    int family; /* MeFamily */
    int vocab_size, hidden_size, num_layers, num_heads, intermediate_size;
    int max_position_embeddings;
    int type_vocab_size; /* 0: no token type embeddings (DistilBERT) */
    int task_type_vocab_size; /* ERNIE with use_task_id: rows of its task type table, whose row 0 (the task id
                                 HF's ErnieModel gives every token when none is passed) is added to every
                                 token's embedding sum; 0: none (every other model) */
    int embedding_size;  /* != hidden_size: ELECTRA (projected when different), ALBERT (always) */
    int num_groups, inner_group_num; /* ALBERT's num_hidden_groups, inner_group_num; 1 otherwise */
    int frozen_positions; /* 1: the position table gets no gradient and no update (DistilBERT's
                             sinusoidal_pos_embds); it is the last tensor, past ntrain */
    float layer_norm_eps;
    float hidden_dropout, attention_dropout;
    int activation; /* MeActivation */
    int pad_token_id;
    int relative_buckets; /* MPNet: rows of the relative attention bias table; 0 otherwise */
    /* DeBERTa-v2/v3 (0 / 1 elsewhere): */
    int position_biased_input;   /* 1: absolute position embeddings (every other family) */
    int relative_attention;      /* relative embeddings and the c2p / p2c terms */
    int position_buckets;        /* <= 0: no log buckets */
    int max_relative_positions;  /* resolved (>= 1: config's, else max_position_embeddings) */
    int pos_att;                 /* ME_POS_C2P | ME_POS_P2C */
    int share_att_key, norm_rel_ebd;
    int zero_key_biases;         /* DeBERTa (v1): its layers have no key bias (content and c2p projections):
                                    those entries of the v2 layout hold 0 and their gradient is cleared in
                                    every backward (before the norm reads it), so they stay 0 */
    int conv_kernel_size, conv_groups, conv_act; /* v2's ConvLayer after layer 0 (0: none); MeActivation */
    /* ModernBERT only (layer_norm_eps is its norm_eps, attention_dropout its attention_dropout) */
    int local_attention;       /* a local layer's query sees keys within local_attention / 2 */
    int global_every;          /* global_attn_every_n_layers: layer l is global iff l % n == 0 */
    float global_rope_theta, local_rope_theta;
    int norm_bias, attention_bias, mlp_bias; /* 1: the LayerNorms / attention / MLP linears have biases */
    float embedding_dropout, mlp_dropout;
} MeEncoderConfig;

typedef struct {
    size_t qkv_w, qkv_b, ao_w, ao_b, ln1_w, ln1_b, fc_w, fc_b, out_w, out_b, ln2_w, ln2_b;
} MeLayerOffsets;

typedef struct {
    float *qkv, *probs, *ctx, *r1, *mean1, *rstd1, *h1, *f1pre, *r2, *mean2, *rstd2, *h2;
    /* after a training forward: the GELU's output, f1pre then holding its derivative at the
     * pre-activation (what backward reads); NULL after an eval forward (f1pre: the pre-activation) */
    float *ff;
} MeLayerActs;

typedef struct MeEncoder {
    MeEncoderConfig cfg;
    const MeBackend *be;

    int nparams;
    MeParamInfo *info;
    size_t nfloats;
    size_t ntrain; /* leading floats the optimizer updates; frozen tensors lie after them */
    float *params;
    float *grads; /* NULL until me_encoder_ensure_grads: an encoder that only predicts holds none */
    size_t wte, wpe, wtt, wtk, eln_w, eln_b, proj_w, proj_b; /* offsets; wtt with token types, wtk with
                                                               task types, proj only with has_proj */
    int has_proj; /* an embedding -> hidden projection (ELECTRA with E != H, ALBERT) */
    int nsets, napps; /* layer weight sets; layer applications (forward order) */
    int *app_set;     /* [napps]: the weight set each application runs */
    MeLayerOffsets *lo; /* [nsets] */
    size_t relb;        /* MPNet: the relative attention bias table [relative_buckets, NH] */
    struct MeDeberta *deb; /* DeBERTa's relative attention (model/deberta.h) */

    /* workspace (device) and its carving for the last (B, T) */
    float *ws;
    size_t ws_floats;
    int B, T;         /* shape of the last forward */
    int has_forward;  /* the last forward's output is in the workspace */
    int train;        /* last forward's mode: dropout applied */
    int infer;        /* last forward was ME_FORWARD_INFER: it kept no activations for a backward */
    uint64_t seed;    /* last forward's dropout seed */
    uint64_t row0;    /* last forward's first row in the whole batch (dropout masks; 0 unless sharded) */
    int32_t *ids, *types, *pos, *mask; /* device copies of the inputs */
    int32_t *task_ids;                 /* ERNIE's task ids: zeros [N] (task_type_vocab_size > 0) */
    float *emb_sum, *emb_mean, *emb_rstd, *emb_ln, *x0;
    MeLayerActs *la; /* [napps] */
    float *ff, *att_scratch, *tmp;            /* forward/backward scratch (ff: eval forwards) */
    float *d_h, *d_a, *d_b, *d_qkv, *d_ff;    /* backward buffers */
    float *relbias, *d_scores; /* MPNet: the bias [NH,T,T] all layers add; a layer's score gradient
                                  (DeBERTa: a layer's bias [B,NH,T,T], then its gradient) */
    float *emb_proj;           /* DeBERTa with embedding_size != hidden_size: the projection, LN's input */
    int32_t *buckets;          /* MPNet: the bucket of each relative position [2T - 1] */
    struct MeModernBert *mb; /* ModernBERT's offsets and activations (NULL for the other families) */
    int32_t *host_ints; /* host staging: position ids [N] | the distinct rows below [3N] */
    size_t host_ints_cap;
    int32_t *rows;      /* device: distinct ids, positions, token types of a train-mode forward [3N] */
    int nrows[3];
    uint8_t *seen;      /* host scratch for finding distinct rows (max table size bytes, all 0) */
    int grads_zero;     /* the gradient buffer is all zero (nothing accumulated since it was cleared) */
    int M;              /* rows the last layer computed (N = B*T unless the caller reads fewer) */
    int32_t *sel, *qstart, *qpos; /* device: those rows [M], per sentence their start [B+1] and position [M] */
    int32_t *sel_in;    /* device: the same rows as rows of the last layer's input (sel unless packed;
                           NULL when packed and every real row is read) */
    float *xs;          /* the last layer's input at those rows [M, H] */
    int packed;         /* the last forward ran the real tokens' rows alone (the caller read only those) */
    int R;              /* rows the embeddings and the layers before the last computed: R real ones when
                           packed, else N */
    int32_t *real, *rstart, *rpos; /* device, when packed: packed row r is row real[r] of the batch [R];
                                      per sentence its first packed row [B+1]; each one's position [R] */
    float *kvp;         /* the packed rows' keys and values [R, 2H] before they go to their rows of the
                           batch (and their gradients on the way back) */
} MeEncoder;

/* The parameter table a config implies (names, shapes, offsets; *nfloats the buffer length) without
 * allocating the buffers, so callers can check a weight file against it first. *info is the
 * caller's to free. */
int me_encoder_param_table(const MeEncoderConfig *cfg, MeParamInfo **info, int *n, size_t *nfloats, char *err);

/* ME_OK when backend `be` has every op an encoder of `family` (ME_FAMILY_*) runs; else ME_ERR_NOTIMPL
 * with a message (ModernBERT: rotary, gated-unit and windowed-attention ops; MPNet, DeBERTa-v2/v3:
 * the relative-attention ops). Reads only the op table: no device is set up. */
int me_encoder_check_backend(int family, const MeBackend *be, char *err);

/* The status of a failed allocation on `be`: the failure the backend recorded, if any (a device
 * fault earlier, which makes every allocation fail), else ME_ERR_NOMEM with the printf-style message. */
int me_alloc_failed(const MeBackend *be, char *err, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Create an encoder with zeroed parameters in *out; a status + message on failure (the backend
 * first: me_encoder_check_backend). */
int me_encoder_create(MeEncoder **out, const MeEncoderConfig *cfg, const MeBackend *be, char *err);
void me_encoder_free(MeEncoder *enc);

/* What a forward is for (its mode). */
enum {
    ME_FORWARD_EVAL = 0,  /* no dropout; keeps every layer's activations for a backward (gradients in eval mode) */
    ME_FORWARD_TRAIN = 1, /* dropout seeded by the seed; keeps every layer's activations for a backward */
    ME_FORWARD_INFER = 2  /* no dropout and no backward: two layers' activations, each layer writing over the
                             one before last, and no backward buffers (a prediction's memory is then about
                             2/L of an L-layer eval forward's) */
};

/* Forward in mode ME_FORWARD_*. ids/types/mask are host int32 [B,T] (types may be NULL = zeros).
 * out (host, may be NULL) receives the last hidden state [B,T,H]. */
int me_encoder_forward(MeEncoder *enc, const int32_t *ids, const int32_t *types,
                       const int32_t *mask, int B, int T, int mode, uint64_t seed, float *out,
                       char *err);

/* The same for rows row0 .. row0 + B - 1 of a larger batch padded to the same T (a data-parallel
 * shard): dropout keeps exactly the units that the whole batch's forward keeps in those rows.
 * read_rows (host, may be NULL): the rows b*T + t of the last hidden state the caller will read,
 * ascending, nread of them; with fewer than B*T the last layer computes only those rows (its
 * keys and values still from every row) and the other rows of the output are zero. When every
 * read row is a real token (mask 1) and the batch has padding, the embeddings and every layer
 * compute the real tokens' rows alone (packed; a padding row's keys and values are zeros no
 * query sees). Exact: the read rows are what the full layers give, up to the order of float
 * additions, since no real token attends to a padding one and nothing reads a padding row.
 * ModernBERT and DeBERTa pack but run their attention on the padded layout; in the last layer
 * ModernBERT computes the attention of every row and the rest at the read rows, DeBERTa the read
 * rows (the disentangled scores of every row); DeBERTa-v2 with a ConvLayer computes every row. */
int me_encoder_forward_rows(MeEncoder *enc, const int32_t *ids, const int32_t *types, const int32_t *mask,
                            int B, int T, int mode, uint64_t seed, uint64_t row0, const int32_t *read_rows,
                            int nread, float *out, char *err);

/* Checks the sizes every family needs (vocabulary, hidden, layers, heads, intermediate, positions
 * all > 0); ME_ERR_VALUE naming the field otherwise. */
int me_encoder_check_sizes(const MeEncoderConfig *c, char *err);

/* The dropout site of a [B*T, width] tensor's mask for the rows of the last forward: the whole
 * batch's mask from row row0 on (me_dropout_site_at), so a shard keeps the units that the whole
 * batch would keep. (Attention masks, per row and head, add row0 * NH to their site instead.) */
uint64_t me_encoder_rows_site(const MeEncoder *enc, uint64_t site, int width);

/* Dropout at `site` (of the last forward's rows, me_encoder_rows_site) of a [*, width] tensor's M
 * rows in place: every row of the batch (rows NULL, M = B*T) or the rows `rows` of it, held
 * compactly; and its backward, dy into dx. */
void me_dropout_fwd(const MeEncoder *enc, float *x, const int32_t *rows, int M, int width, float p, uint64_t site);
void me_dropout_bwd(const MeEncoder *enc, float *dx, const float *dy, const int32_t *rows, int M, int width,
                    float p, uint64_t site);

/* The rows of the batch the embeddings and the layers before the last compute, for dropout: the
 * real ones when packed, NULL (every row) otherwise. */
const int32_t *me_computed_rows(const MeEncoder *enc);

/* When packed: the packed rows packed [R, C] to their rows of out [B*T, C], the padding rows zero
 * (me_packed_to_batch); the real rows of x [B*T, C] into packed [R, C] (me_batch_to_packed). */
void me_packed_to_batch(const MeEncoder *enc, float *out, const float *packed, int C);
void me_batch_to_packed(const MeEncoder *enc, float *packed, const float *x, int C);

/* Whether a forward may compute only the real tokens (packed) when its caller reads nothing else:
 * the backend has the row-wise dropout (the CPU's), and no op mixes positions other than the
 * attention, which runs on a padded layout that the packed rows go to and come back from (every
 * family but DeBERTa-v2 with a ConvLayer). */
int me_encoder_can_pack(const MeEncoder *enc);
/* Whether the last layer can compute only the rows a caller reads: the families whose layers pack,
 * DeBERTa's (the disentangled scores of every row, the attention and the rest at the read rows; with
 * v2's ConvLayer, which reads every row of layer 0's output, when a layer follows layer 0) and
 * ModernBERT's (the attention of every row, the rest at the read rows). */
int me_encoder_can_prune_last(const MeEncoder *enc);

/* Backward of the last forward given dL/d(last hidden state) (host [B,T,H]);
 * parameter gradients accumulate into enc->grads. */
int me_encoder_backward(MeEncoder *enc, const float *dout, char *err);

/* Backward when dL/d(last hidden state) is already in me_encoder_grad_output(). With grad_sumsq
 * (only after a train-mode forward, on zeroed gradients): adds the sum of squares of the
 * gradients to *grad_sumsq, each layer weight set's right after its gradients are complete (while
 * they are in cache) and only the rows of the embedding tables this batch used (the others are
 * zero); ModernBERT's in one pass after its backward. */
int me_encoder_backward_device(MeEncoder *enc, double *grad_sumsq, char *err);

/* Set the gradients to zero (nothing to do when they are: grads_zero, as they are before the
 * buffer exists). */
void me_encoder_zero_grad(MeEncoder *enc);

/* Make the gradient buffer, zero-filled, unless it exists. It is made at the first need (a
 * backward, training's preparation, zeroing for a data-parallel sum, a view of the buffers), not
 * with the encoder: one that only predicts holds no gradients, as a torch module before its first
 * backward. ME_ERR_NOMEM when it cannot be allocated. */
int me_encoder_ensure_grads(MeEncoder *enc, char *err);

/* The table that runs `precision` ("fp32" or "bf16") on the device of `now`: bf16 is the CPU's
 * bf16 table (CPUs with AVX512-BF16 only; float32 accumulation, weights and gradients; every op
 * but the linear layers as in fp32). ME_ERR_VALUE for another string, ME_ERR_NOTIMPL where bf16
 * does not run; *out is untouched then. */
int me_backend_for_precision(const MeBackend *now, const char *precision, const MeBackend **out, char *err);

/* Run this encoder's linear layers in `precision` (me_backend_for_precision). */
int me_encoder_set_precision(MeEncoder *enc, const char *precision, char *err);

/* Device buffer [B*T, H] that me_encoder_backward_device reads (NULL before a forward). */
float *me_encoder_grad_output(MeEncoder *enc);

/* Device pointer of the last hidden state [B*T, H] after a forward. */
const float *me_encoder_output(const MeEncoder *enc);

#endif
