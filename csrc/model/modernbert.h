/* ModernBERT (transformers' ModernBertModel) on the MeEncoder of encoder.h: the encoder's
 * functions (me_encoder_create/forward/backward/free) call these for ME_FAMILY_MODERNBERT.
 *
 * Pre-LayerNorm blocks (the first layer's attention norm is the identity), LayerNorms and linears
 * with or without biases (norm_bias, attention_bias, mlp_bias), rotary position embeddings with
 * one base for global and one for local layers, local layers attending to keys within
 * local_attention / 2 positions, a GeGLU feed-forward (Wi -> act(a) * g -> Wo), a final LayerNorm.
 * Parameters use HF's names of the bare model (embeddings.tok_embeddings.weight, layers.N.attn.Wqkv
 * .weight, ...), in HF's order, in the encoder's one flat buffer. */
#ifndef MULTIENC_MODERNBERT_H
#define MULTIENC_MODERNBERT_H

#include "model/encoder.h"
#include "model/params.h"

int me_modernbert_create(MeEncoder **out, const MeEncoderConfig *cfg, const MeBackend *be, char *err);

/* Check enc->cfg and lay out its parameter table into *pl, the offsets into enc->mb (allocated
 * here, freed by me_modernbert_free); nothing of the backend is touched (enc->be may be NULL). */
int me_modernbert_lay_out(MeEncoder *enc, MeParamList *pl, char *err);

/* Free what the ModernBERT part holds (me_encoder_free frees the rest). */
void me_modernbert_free(MeEncoder *enc);

/* Carve the workspace for (B, T) (base NULL: only count floats), as encoder.c's carve. */
size_t me_modernbert_carve(MeEncoder *enc, float *base, int B, int T);

/* The forward after me_encoder_forward's checks and workspace set-up (enc->B, T, train, seed set);
 * token types are not used (ModernBERT has no token type embeddings). */
int me_modernbert_forward(MeEncoder *enc, const int32_t *ids, const int32_t *mask, float *out, char *err);

/* The backward of the last forward; dL/d(last hidden state) is in enc->d_h. */
int me_modernbert_backward(MeEncoder *enc, char *err);

const float *me_modernbert_output(const MeEncoder *enc);

/* Host tables of the rotary angles for positions 0..T-1, HS / 2 columns each, as transformers
 * computes them in float32: inv_freq[i] = 1 / theta^((2i) / HS) (the power rounded once to
 * float32), angle = t * inv_freq[i] in float32, cos and sin of it. */
void me_rope_tables(float *cos_out, float *sin_out, int T, int HS, float theta);

#endif
