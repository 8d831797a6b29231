/* MPNet's pieces of the encoder (encoder.c runs the layers): its parameter names and the
 * relative position buckets of its attention bias, exactly as transformers computes them. */
#ifndef MULTIENC_MPNET_H
#define MULTIENC_MPNET_H

#include <stdint.h>

/* MPNetEmbeddings' padding_idx: 1 in transformers' code whatever config.pad_token_id says. */
#define ME_MPNET_PADDING_IDX 1
/* MPNetEncoder.compute_position_bias buckets with num_buckets=32 whatever
 * config.relative_attention_num_buckets (the table's rows) says. */
#define ME_MPNET_BUCKETS 32

/* HF names of a layer's 16 tensors, in encoder.c's layer order (q, k, v weights, q, k, v
 * biases, attention output, its LayerNorm, FFN in, FFN out, output LayerNorm). */
extern const char *const ME_MPNET_LAYER[16];

/* MPNetEncoder.relative_position_bucket(memory - context) for one relative position. */
int me_mpnet_bucket(int relative_position);

/* out[r + T - 1] = the bucket of relative position r for r in -(T-1) .. T-1. */
void me_mpnet_buckets(int32_t *out, int T);

#endif
