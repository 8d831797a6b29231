/* The Unigram model of HF tokenizers (models/unigram/model.rs, encode_optimized): Viterbi over the
 * byte positions of one pre-token with a trie of every vocabulary entry, unknown chars fused, and
 * optional byte fallback (<0xNN> pieces). */
#ifndef MULTIENC_TOKENIZE_UNIGRAM_H
#define MULTIENC_TOKENIZE_UNIGRAM_H

#include <stddef.h>
#include <stdint.h>

#include "tokenize/strmap.h"

typedef struct me_unigram me_unigram;

/* pieces[i] (UTF-8, lens[i] bytes) with scores[i] is id i; `vocab` maps each piece to its id (a
 * repeated piece: the later id) and must outlive the model. unk_id < 0: none. */
int me_unigram_new(const char *const *pieces, const uint32_t *lens, const double *scores, size_t n,
                   const me_strmap *vocab, int32_t unk_id, int byte_fallback, me_unigram **out, char *err);
void me_unigram_free(me_unigram *u);

/* One token: id, bytes [start, end) of the pre-token, and whether its string differs from the
 * vocabulary string of its id (a fused unknown piece: the string is then the bytes it covers). */
typedef struct {
    int32_t id;
    uint32_t start, end;
    int own_string;
} me_ug_tok;

typedef struct {
    double *score;
    int32_t *from, *id;
    size_t cap;
    me_ug_tok *tok;
    size_t ntok, tokcap;
} me_ug_ws;

void me_ug_ws_free(me_ug_ws *w);

/* Tokens of s[0..n) (valid UTF-8) into w->tok / w->ntok. ME_ERR_VALUE (message in err) when an
 * unknown char needs the missing unk id, as tokenizers' MissingUnkId. */
int me_unigram_encode(const me_unigram *u, const char *s, size_t n, me_ug_ws *w, char *err);

#endif
