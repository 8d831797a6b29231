/* Normalizers with HF tokenizers' alignment bookkeeping (NormalizedString::transform), for the
 * SentencePiece-style pipelines: Precompiled (SentencePiece charsmap), Replace, NFC/NFD/NFKC/NFKD,
 * Strip, StripAccents, Lowercase. Also the grapheme cluster segmentation Precompiled needs.
 *
 * A normalized string is code points, each with its alignment [a, b) in original code points
 * (absolute: indices into the text of the sequence). tokenizers keeps one alignment per byte, but
 * every byte of a char carries the same one, so one per code point is exact. */
#ifndef MULTIENC_TOKENIZE_NORMALIZERS_H
#define MULTIENC_TOKENIZE_NORMALIZERS_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t *c;
    int32_t *a, *b;
    size_t n, cap;
} me_nstr;

int me_nstr_reserve(me_nstr *s, size_t need);
void me_nstr_free(me_nstr *s);

/* The SentencePiece precompiled charsmap: u32 LE trie size in bytes, the darts-clone double array,
 * then NUL-terminated UTF-8 replacement strings. */
typedef struct me_charsmap me_charsmap;
int me_charsmap_parse(const uint8_t *blob, size_t len, me_charsmap **out, char *err);
void me_charsmap_free(me_charsmap *m);
/* The replacement of the first (shortest) prefix of key[0..len) that has an entry, as
 * spm_precompiled's transform(); returns 0 when there is none. */
int me_charsmap_lookup(const me_charsmap *m, const uint8_t *key, size_t len, const char **rep, size_t *replen);

/* A small regular expression for Replace: alternatives of sequences of quantified char sets and the
 * anchors \A, \z, compiled by multienc/tokenization.py into int32 words:
 *   nalts, then per alternative: nitems, then per item: kind, min, max (-1: unbounded), nranges,
 *   nranges (lo, hi) pairs. kind: ME_RE_SET, ME_RE_NSET (negated), ME_RE_BEGIN (\A), ME_RE_END (\z);
 *   ME_RE_SPACE_BIT added to a set kind also puts \s (Oniguruma's White_Space) in the set.
 * Matching is leftmost, first alternative, greedy with backtracking (Oniguruma's semantics for these). */
enum { ME_RE_SET = 0, ME_RE_NSET = 1, ME_RE_BEGIN = 2, ME_RE_END = 3, ME_RE_SPACE_BIT = 8 };
typedef struct me_regex me_regex;
int me_regex_new(const int32_t *prog, size_t n, me_regex **out, char *err);
void me_regex_free(me_regex *r);
/* Leftmost match in c[0..n) starting at or after `from`: [*ms, *me). Returns 0 when none. */
int me_regex_find(const me_regex *r, const uint32_t *c, size_t n, size_t from, size_t *ms, size_t *me);

enum {
    ME_NORM_PRECOMPILED = 1, ME_NORM_REPLACE = 2, ME_NORM_NFC = 3, ME_NORM_NFD = 4, ME_NORM_NFKC = 5,
    ME_NORM_NFKD = 6, ME_NORM_STRIP = 7, ME_NORM_STRIP_ACCENTS = 8, ME_NORM_LOWERCASE = 9
};

typedef struct {
    int kind;
    int left, right;   /* Strip */
    me_charsmap *map;  /* Precompiled (owned) */
    me_regex *re;      /* Replace (owned) */
    uint32_t *content; /* Replace (owned) */
    size_t ncontent;
} me_norm_step;

void me_norm_step_free(me_norm_step *s);

/* Scratch space of one thread. */
typedef struct {
    me_nstr tmp;
    uint32_t *dc;   /* transformation: new chars ... */
    int32_t *dchg;  /* ... and their change (1 inserted, 0 replaces one, -N replaces one and removes N) */
    size_t dn, dcap;
    uint32_t *rc;   /* second transformation buffer (composition) */
    int32_t *rchg;
    size_t rn, rcap;
} me_norm_ws;

void me_norm_ws_free(me_norm_ws *w);

/* Apply one normalizer to s. `base` is the original start of the string (where tokenizers' (0, 0)
 * alignment of a char inserted at the very start points). Returns ME_OK or ME_ERR_NOMEM. */
int me_norm_apply(const me_norm_step *step, me_nstr *s, int32_t base, me_norm_ws *w);

/* End of the extended grapheme cluster of c[0..n) that starts at i (unicode-segmentation's rules). */
size_t me_grapheme_end(const uint32_t *c, size_t n, size_t i);

/* UTF-8 of c into o (4 bytes room); returns the byte count. */
size_t me_utf8_put(uint32_t c, char *o);

/* Grow *p to hold `need` elements (capacity doubles from 64); ME_OK or ME_ERR_NOMEM. */
int me_grow(void **p, size_t *cap, size_t need, size_t elem);
/* The same for two parallel arrays sharing one capacity. */
int me_grow2(void **a, size_t ea, void **b, size_t eb, size_t *cap, size_t need);

#endif
