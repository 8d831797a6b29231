/* Transformer encoder (BERT / RoBERTa / ELECTRA) forward and backward on a
 * backend. Parameters and gradients live in one contiguous buffer each; every
 * HF parameter tensor is a contiguous slice of it (the query/key/value
 * weights of a layer are consecutive, so together they form the fused
 * [3H, H] qkv weight the model multiplies by). Activations live in one
 * workspace that grows to the largest (batch x length) seen and is reused. */
#ifndef MULTIENC_ENCODER_H
#define MULTIENC_ENCODER_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "common.h"
#include "model/params.h"

typedef enum { ME_FAMILY_BERT = 0, ME_FAMILY_ROBERTA = 1, ME_FAMILY_ELECTRA = 2 } MeFamily;

typedef struct {
    int family; /* MeFamily */
    int vocab_size, hidden_size, num_layers, num_heads, intermediate_size;
    int max_position_embeddings, type_vocab_size;
    int embedding_size; /* == hidden_size except ELECTRA small/base generators etc. */
    float layer_norm_eps;
    float hidden_dropout, attention_dropout;
    int activation; /* MeActivation */
    int pad_token_id;
} MeEncoderConfig;

typedef struct {
    size_t qkv_w, qkv_b, ao_w, ao_b, ln1_w, ln1_b, fc_w, fc_b, out_w, out_b, ln2_w, ln2_b;
} MeLayerOffsets;

typedef struct {
    float *qkv, *probs, *ctx, *r1, *mean1, *rstd1, *h1, *f1pre, *r2, *mean2, *rstd2, *h2;
} MeLayerActs;

typedef struct MeEncoder {
    MeEncoderConfig cfg;
    const MeBackend *be;

    int nparams;
    MeParamInfo *info;
    size_t nfloats;
    float *params, *grads;
    size_t wte, wpe, wtt, eln_w, eln_b, proj_w, proj_b; /* offsets; proj only when E != H */
    MeLayerOffsets *lo;

    /* workspace (device) and its carving for the last (B, T) */
    float *ws;
    size_t ws_floats;
    int B, T;         /* shape of the last forward */
    int has_forward;  /* backward allowed */
    int train;        /* last forward's mode */
    uint64_t seed;    /* last forward's dropout seed */
    uint64_t row0;    /* last forward's first row in the whole batch (dropout masks; 0 unless sharded) */
    int32_t *ids, *types, *pos, *mask; /* device copies of the inputs */
    float *emb_sum, *emb_mean, *emb_rstd, *emb_ln, *x0;
    MeLayerActs *la;
    float *ff, *att_scratch, *tmp;            /* forward/backward scratch */
    float *d_h, *d_a, *d_b, *d_qkv, *d_ff;    /* backward buffers */
    int32_t *host_ints; /* host staging: position ids [N] | the distinct rows below [3N] */
    size_t host_ints_cap;
    int32_t *rows;      /* device: distinct ids, positions, token types of a train-mode forward [3N] */
    int nrows[3];
    uint8_t *seen;      /* host scratch for finding distinct rows (max table size bytes, all 0) */
    int grads_zero;     /* the gradient buffer is all zero (nothing accumulated since it was cleared) */
    int M;              /* rows the last layer computed (N = B*T unless the caller reads fewer) */
    int32_t *sel, *qstart, *qpos; /* device: those rows [M], per sentence their start [B+1] and position [M] */
    float *xs;          /* the last layer's input at those rows [M, H] */
} MeEncoder;

/* Create an encoder with zeroed parameters in *out; a status + message on failure. */
int me_encoder_create(MeEncoder **out, const MeEncoderConfig *cfg, const MeBackend *be, char *err);
void me_encoder_free(MeEncoder *enc);

/* Forward. ids/types/mask are host int32 [B,T] (types may be NULL = zeros).
 * out (host, may be NULL) receives the last hidden state [B,T,H]. */
int me_encoder_forward(MeEncoder *enc, const int32_t *ids, const int32_t *types,
                       const int32_t *mask, int B, int T, int train, uint64_t seed, float *out,
                       char *err);

/* The same for rows row0 .. row0 + B - 1 of a larger batch padded to the same T (a data-parallel
 * shard): dropout keeps exactly the units that the whole batch's forward keeps in those rows.
 * read_rows (host, may be NULL): the rows b*T + t of the last hidden state the caller will read,
 * ascending, nread of them; with fewer than B*T the last layer computes only those rows (its
 * keys and values still from every row) and the other rows of the output are zero. Exact: the
 * read rows are what the full layer gives, up to the order of float additions. */
int me_encoder_forward_rows(MeEncoder *enc, const int32_t *ids, const int32_t *types, const int32_t *mask,
                            int B, int T, int train, uint64_t seed, uint64_t row0, const int32_t *read_rows,
                            int nread, float *out, char *err);

/* Backward of the last forward given dL/d(last hidden state) (host [B,T,H]);
 * parameter gradients accumulate into enc->grads. */
int me_encoder_backward(MeEncoder *enc, const float *dout, char *err);

/* Backward when dL/d(last hidden state) is already in me_encoder_grad_output(). With grad_sumsq
 * (only after a train-mode forward, on zeroed gradients): adds the sum of squares of the
 * gradients to *grad_sumsq, each layer's right after it is computed (while it is in cache) and
 * only the rows of the embedding tables this batch used (the others are zero). */
int me_encoder_backward_device(MeEncoder *enc, double *grad_sumsq, char *err);

/* Set the gradients to zero (nothing to do when they are: grads_zero). */
void me_encoder_zero_grad(MeEncoder *enc);

/* Device buffer [B*T, H] that me_encoder_backward_device reads (NULL before a forward). */
float *me_encoder_grad_output(MeEncoder *enc);

/* Device pointer of the last hidden state [B*T, H] after a forward. */
const float *me_encoder_output(const MeEncoder *enc);

#endif
