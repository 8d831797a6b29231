/* WordPiece, byte-level BPE and Unigram pipelines (normalizer, pre-tokenizer, model, added tokens,
 * truncation, post-processing) matching HuggingFace `tokenizers`, and fastBPE matching transformers'
 * BertweetTokenizer; see docs/ARCHITECTURE.md. */
#include "tokenize/tokenizer.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "tokenize/normalizers.h"
#include "tokenize/strmap.h"
#include "tokenize/unigram.h"
#include "tokenize/unicode.h"

#define BPE_CACHE_WORDS 10000
#define BPE_CACHE_INTS (1u << 20)
#define BYTE_LEVEL_SPACE 0x120u /* 'Ġ', the byte-level char of ' ' */

typedef struct {
    int kind; /* ME_PRE_STEP_* */
    uint32_t repl;
    int scheme, split, behavior;
} pre_step;

typedef struct {
    uint32_t *cp; /* what is matched: the content, normalized for `normalized` tokens */
    size_t ncp;
    int32_t id;
    int flags;
} added_tok;

struct me_tok {
    me_tok_options o;
    me_strmap vocab; /* token -> id */
    me_strmap cont;  /* WordPiece: continuation token without its "##" -> id */
    /* id -> token (UTF-8) */
    size_t *tok_off;
    uint32_t *tok_len; /* UINT32_MAX: no token has this id */
    size_t ntok;       /* ids 0 .. ntok-1 have slots */
    char *tok_arena;
    size_t tok_arena_len, tok_arena_cap;
    me_pairmap merges; /* (left id << 32 | right id) -> (rank, merged id); fastBPE: symbol ids */
    int32_t nmerges;
    me_strmap fsym;    /* fastBPE: symbol -> symbol id */
    int32_t nfsym;
    int32_t byte_id[256]; /* BPE: vocabulary id of each byte's byte-level char, -1 if absent */
    added_tok *added;
    size_t nadded;
    int has_normalized_added, has_raw_added;
    me_tmpl_item *tmpl[2];
    size_t ntmpl[2];
    me_norm_step *norms; /* normalizer chain (no BertNormalizer) */
    size_t nnorms;
    pre_step *pres;      /* ME_PRE_STEPS */
    size_t npres;
    me_unigram *ug;
    int finalized;
};

/* A pre-token of the ME_PRE_STEPS pipeline: chars [off, off + len) of a pool string; orig is its
 * original start (tokenizers' original_shift), which Metaspace's `first` scheme tests. */
typedef struct {
    size_t off, len;
    int32_t orig;
} psplit;

typedef struct {
    psplit *v;
    size_t n, cap;
} psplit_vec;

typedef struct {
    int32_t c, prev, next;
    uint32_t len; /* bytes; 0 once merged into its left neighbour */
} bpe_sym;

typedef struct {
    int32_t pos, rank, new_id;
} bpe_merge;

typedef struct {
    size_t start, stop;
    int32_t added; /* index into t->added, or -1 for text */
} split;

typedef struct {
    split *v;
    size_t n, cap;
} split_vec;

struct me_ws {
    /* normalized text of one segment: code point and source index in the original */
    uint32_t *nc, *tc;
    int32_t *ns, *ts;
    size_t nn, ncap, tcap;
    /* one pre-token: code points with sources (ByteLevel may prepend a space) */
    uint32_t *pc;
    int32_t *ps;
    size_t pcap;
    /* UTF-8 of one word / piece, with the char index of each byte and the byte offset of each char */
    char *ub;
    int32_t *ubc, *cb;
    size_t ucap, cbcap, ubccap;
    bpe_sym *sym;
    size_t symcap;
    bpe_merge *heap, *round; /* round: fastBPE's merges of one rank */
    size_t heapn, heapcap, roundcap;
    int32_t *bpe_out; /* (id, byte length) pairs of the current piece */
    size_t bpe_outcap;
    split_vec raw, norm;
    me_enc seq[2], out; /* the two sequences; a batch item's encoding */
    me_strmap cache; /* piece bytes -> index into cache_val: n, then n (id, length) pairs */
    int32_t *cache_val;
    size_t cache_n, cache_cap;
    /* ME_PRE_STEPS pipeline: the normalized segment, pre-token pools (double-buffered), Unigram */
    me_nstr g, pool[2], mtmp;
    psplit_vec sp[3]; /* [2]: the pieces inside split_into */
    me_norm_ws nw;
    me_ug_ws ug;
};

/* ------------------------------------------------------------------ buffers */

static int enc_reserve(me_enc *e, size_t need) {
    if (need <= e->cap) return ME_OK;
    size_t n = e->cap ? e->cap : 64;
    while (n < need) n *= 2;
    int32_t *ids = realloc(e->ids, n * sizeof *ids);
    if (!ids) return ME_ERR_NOMEM;
    e->ids = ids;
    int32_t *ty = realloc(e->type_ids, n * sizeof *ty);
    if (!ty) return ME_ERR_NOMEM;
    e->type_ids = ty;
    int32_t *wd = realloc(e->word_ids, n * sizeof *wd);
    if (!wd) return ME_ERR_NOMEM;
    e->word_ids = wd;
    int32_t *sq = realloc(e->seq_ids, n * sizeof *sq);
    if (!sq) return ME_ERR_NOMEM;
    e->seq_ids = sq;
    int32_t *sr = realloc(e->sref, n * sizeof *sr);
    if (!sr) return ME_ERR_NOMEM;
    e->sref = sr;
    int32_t *of = realloc(e->offsets, 2 * n * sizeof *of);
    if (!of) return ME_ERR_NOMEM;
    e->offsets = of;
    uint8_t *sp = realloc(e->special, n);
    if (!sp) return ME_ERR_NOMEM;
    e->special = sp;
    e->cap = n;
    return ME_OK;
}

static int enc_push(me_enc *e, int32_t id, int32_t type_id, int32_t word, int32_t seq, int32_t start,
                    int32_t end, int special) {
    if (e->n == e->cap) {
        int st = enc_reserve(e, e->n + 1);
        if (st) return st;
    }
    size_t i = e->n++;
    e->ids[i] = id;
    e->type_ids[i] = type_id;
    e->word_ids[i] = word;
    e->seq_ids[i] = seq;
    e->offsets[2 * i] = start;
    e->offsets[2 * i + 1] = end;
    e->special[i] = (uint8_t)special;
    e->sref[i] = -1;
    return ME_OK;
}

/* Give token i of e the string of bytes s[0..len). */
static int enc_set_string(me_enc *e, size_t i, const char *s, size_t len) {
    if (e->slen + 4 + len > INT32_MAX) return ME_ERR_NOMEM;
    if (me_grow((void **)&e->sbuf, &e->scap, e->slen + 4 + len, 1)) return ME_ERR_NOMEM;
    uint32_t l32 = (uint32_t)len;
    memcpy(e->sbuf + e->slen, &l32, 4);
    memcpy(e->sbuf + e->slen + 4, s, len);
    e->sref[i] = (int32_t)e->slen;
    e->slen += 4 + len;
    return ME_OK;
}

const char *me_enc_token(const me_tok *t, const me_enc *e, size_t i, size_t *len) {
    if (e->sref[i] < 0) return me_tok_id_to_token(t, e->ids[i], len);
    uint32_t l32;
    memcpy(&l32, e->sbuf + e->sref[i], 4);
    *len = l32;
    return e->sbuf + e->sref[i] + 4;
}

void me_enc_free(me_enc *e) {
    free(e->ids);
    free(e->type_ids);
    free(e->word_ids);
    free(e->seq_ids);
    free(e->offsets);
    free(e->special);
    free(e->sref);
    free(e->sbuf);
    memset(e, 0, sizeof *e);
}

/* Decode one UTF-8 char of s[0..n) (input produced by utf8_put or validated by Python). */
static uint32_t utf8_get(const unsigned char *s, size_t n, size_t *used) {
    unsigned c = s[0];
    size_t k = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    if (k > n) k = n;
    uint32_t v = k == 1 ? c : k == 2 ? (c & 0x1F) : k == 3 ? (c & 0x0F) : (c & 0x07);
    for (size_t i = 1; i < k; i++) v = (v << 6) | (s[i] & 0x3F);
    *used = k;
    return v;
}

/* ------------------------------------------------------------------ construction */

static void free_template(me_tmpl_item *items, size_t n) {
    if (!items) return;
    for (size_t i = 0; i < n; i++) free((char *)items[i].str);
    free(items);
}

int me_tok_new(const me_tok_options *opt, me_tok **out, char *err) {
    *out = NULL;
    if (opt->model < ME_TOK_WORDPIECE || opt->model > ME_TOK_FASTBPE)
        return me_error(err, ME_ERR_VALUE, "unknown tokenizer model kind %d", opt->model);
    if (opt->pre_tokenizer < ME_PRE_NONE || opt->pre_tokenizer > ME_PRE_PY_WORDS)
        return me_error(err, ME_ERR_VALUE, "unknown pre-tokenizer kind %d", opt->pre_tokenizer);
    me_tok *t = calloc(1, sizeof *t);
    if (!t) return me_error(err, ME_ERR_NOMEM, "out of memory creating a tokenizer");
    t->o = *opt;
    for (int i = 0; i < 256; i++) t->byte_id[i] = -1;
    *out = t;
    return ME_OK;
}

void me_tok_free(me_tok *t) {
    if (!t) return;
    me_strmap_free(&t->vocab);
    me_strmap_free(&t->cont);
    free(t->tok_off);
    free(t->tok_len);
    free(t->tok_arena);
    me_pairmap_free(&t->merges);
    me_strmap_free(&t->fsym);
    for (size_t i = 0; i < t->nadded; i++) free(t->added[i].cp);
    free(t->added);
    free_template(t->tmpl[0], t->ntmpl[0]);
    free_template(t->tmpl[1], t->ntmpl[1]);
    for (size_t i = 0; i < t->nnorms; i++) me_norm_step_free(&t->norms[i]);
    free(t->norms);
    free(t->pres);
    me_unigram_free(t->ug);
    free(t);
}

static int set_id_token(me_tok *t, int32_t id, const char *s, size_t len, char *err) {
    if (id < 0) return me_error(err, ME_ERR_VALUE, "token id %d is negative", (int)id);
    if ((size_t)id >= t->ntok) {
        size_t n = t->ntok ? t->ntok : 1024;
        while (n <= (size_t)id) n *= 2;
        size_t *off = realloc(t->tok_off, n * sizeof *off);
        if (!off) return me_error(err, ME_ERR_NOMEM, "out of memory storing the vocabulary");
        t->tok_off = off;
        uint32_t *ln = realloc(t->tok_len, n * sizeof *ln);
        if (!ln) return me_error(err, ME_ERR_NOMEM, "out of memory storing the vocabulary");
        t->tok_len = ln;
        for (size_t i = t->ntok; i < n; i++) ln[i] = UINT32_MAX;
        t->ntok = n;
    }
    size_t cap = t->tok_arena_cap;
    if (me_grow((void **)&t->tok_arena, &cap, t->tok_arena_len + len + 1, 1))
        return me_error(err, ME_ERR_NOMEM, "out of memory storing the vocabulary");
    t->tok_arena_cap = cap;
    memcpy(t->tok_arena + t->tok_arena_len, s, len);
    t->tok_off[id] = t->tok_arena_len;
    t->tok_len[id] = (uint32_t)len;
    t->tok_arena_len += len;
    return ME_OK;
}

int me_tok_add_vocab(me_tok *t, const char *tok, size_t len, int32_t id, char *err) {
    if (t->finalized) return me_error(err, ME_ERR_VALUE, "tokenizer already finalized");
    if (len >= UINT32_MAX) return me_error(err, ME_ERR_VALUE, "vocabulary token too long");
    int st = set_id_token(t, id, tok, len, err);
    if (st) return st;
    if (me_strmap_put(&t->vocab, tok, len, id)) return me_error(err, ME_ERR_NOMEM, "out of memory storing the vocabulary");
    return ME_OK;
}

/* The id of fastBPE symbol s[0..n), given a new one if it has none. */
static int fsym_id(me_tok *t, const char *s, size_t n, int32_t *id) {
    *id = me_strmap_get(&t->fsym, s, n);
    if (*id >= 0) return ME_OK;
    if (t->nfsym == INT32_MAX || me_strmap_put(&t->fsym, s, n, t->nfsym)) return ME_ERR_NOMEM;
    *id = t->nfsym++;
    return ME_OK;
}

static int add_fastbpe_merge(me_tok *t, const char *a, size_t alen, const char *b, size_t blen, char *err) {
    char *buf = malloc(alen + blen + 1);
    if (!buf) return me_error(err, ME_ERR_NOMEM, "out of memory reading merges");
    memcpy(buf, a, alen);
    memcpy(buf + alen, b, blen);
    int32_t ia, ib, im;
    int st = fsym_id(t, a, alen, &ia);
    if (!st) st = fsym_id(t, b, blen, &ib);
    if (!st) st = fsym_id(t, buf, alen + blen, &im);
    free(buf);
    uint64_t key = ((uint64_t)(uint32_t)ia << 32) | (uint32_t)ib;
    if (st || me_pairmap_put(&t->merges, key, t->nmerges, im))
        return me_error(err, ME_ERR_NOMEM, "out of memory reading merges");
    t->nmerges++;
    return ME_OK;
}

int me_tok_add_merge(me_tok *t, const char *a, size_t alen, const char *b, size_t blen, char *err) {
    if (t->finalized) return me_error(err, ME_ERR_VALUE, "tokenizer already finalized");
    if (t->nmerges == INT32_MAX) return me_error(err, ME_ERR_VALUE, "too many merges");
    if (t->o.model == ME_TOK_FASTBPE) return add_fastbpe_merge(t, a, alen, b, blen, err);
    int32_t ia = me_strmap_get(&t->vocab, a, alen), ib = me_strmap_get(&t->vocab, b, blen);
    if (ia < 0 || ib < 0)
        return me_error(err, ME_ERR_VALUE, "merge %d: token '%.*s' is not in the vocabulary", (int)t->nmerges + 1,
                        (int)(ia < 0 ? (alen > 200 ? 200 : alen) : (blen > 200 ? 200 : blen)), ia < 0 ? a : b);
    char *buf = malloc(alen + blen + 1);
    if (!buf) return me_error(err, ME_ERR_NOMEM, "out of memory reading merges");
    memcpy(buf, a, alen);
    memcpy(buf + alen, b, blen);
    int32_t im = me_strmap_get(&t->vocab, buf, alen + blen);
    free(buf);
    if (im < 0)
        return me_error(err, ME_ERR_VALUE, "merge %d: merged token '%.*s%.*s' is not in the vocabulary",
                        (int)t->nmerges + 1, (int)(alen > 100 ? 100 : alen), a, (int)(blen > 100 ? 100 : blen), b);
    uint64_t key = ((uint64_t)(uint32_t)ia << 32) | (uint32_t)ib;
    /* HF builds its merge map from the list in order: a repeated pair keeps the later rank. */
    if (me_pairmap_put(&t->merges, key, t->nmerges, im)) return me_error(err, ME_ERR_NOMEM, "out of memory reading merges");
    t->nmerges++;
    return ME_OK;
}

int me_tok_add_added(me_tok *t, const uint32_t *content, size_t ncp, const char *utf8, size_t nbytes, int32_t id,
                     int flags, char *err) {
    if (!ncp) return me_error(err, ME_ERR_VALUE, "added token with id %d is empty", (int)id);
    added_tok *na = realloc(t->added, (t->nadded + 1) * sizeof *na);
    if (!na) return me_error(err, ME_ERR_NOMEM, "out of memory storing added tokens");
    t->added = na;
    uint32_t *cp = malloc(ncp * sizeof *cp);
    if (!cp) return me_error(err, ME_ERR_NOMEM, "out of memory storing added tokens");
    memcpy(cp, content, ncp * sizeof *cp);
    t->added[t->nadded++] = (added_tok){cp, ncp, id, flags};
    if (flags & ME_AT_NORMALIZED) t->has_normalized_added = 1;
    else t->has_raw_added = 1;
    return set_id_token(t, id, utf8, nbytes, err);
}

int me_tok_set_template(me_tok *t, int pair, const me_tmpl_item *items, size_t n, char *err) {
    pair = pair ? 1 : 0;
    me_tmpl_item *c = calloc(n ? n : 1, sizeof *c);
    if (!c) return me_error(err, ME_ERR_NOMEM, "out of memory storing the template");
    for (size_t i = 0; i < n; i++) {
        if (items[i].what < ME_TMPL_B || (items[i].what == ME_TMPL_B && !pair)) {
            free_template(c, n);
            return me_error(err, ME_ERR_VALUE, "template item %zu is invalid", i);
        }
        c[i] = items[i];
        c[i].str = NULL;
        if (items[i].str && items[i].what >= 0) {
            char *s = malloc(items[i].str_len + 1);
            if (!s) {
                free_template(c, n);
                return me_error(err, ME_ERR_NOMEM, "out of memory storing the template");
            }
            memcpy(s, items[i].str, items[i].str_len);
            c[i].str = s;
        }
    }
    free_template(t->tmpl[pair], t->ntmpl[pair]);
    t->tmpl[pair] = c;
    t->ntmpl[pair] = n;
    return ME_OK;
}

int me_tok_add_normalizer(me_tok *t, const me_norm_def *d, char *err) {
    if (t->finalized) return me_error(err, ME_ERR_VALUE, "tokenizer already finalized");
    if (d->kind < ME_NORM_PRECOMPILED || d->kind > ME_NORM_LOWERCASE)
        return me_error(err, ME_ERR_VALUE, "unknown normalizer kind %d", d->kind);
    me_norm_step st = {d->kind, d->left, d->right, NULL, NULL, NULL, 0};
    int r = ME_OK;
    if (d->kind == ME_NORM_PRECOMPILED) {
        r = me_charsmap_parse(d->blob, d->blob_len, &st.map, err);
    } else if (d->kind == ME_NORM_REPLACE) {
        r = me_regex_new(d->prog, d->nprog, &st.re, err);
        if (!r && d->ncontent) {
            if (!(st.content = malloc(d->ncontent * sizeof *st.content))) r = me_error(err, ME_ERR_NOMEM, "out of memory");
            else memcpy(st.content, d->content, d->ncontent * sizeof *st.content);
            st.ncontent = d->ncontent;
        }
    }
    me_norm_step *ns = r ? NULL : realloc(t->norms, (t->nnorms + 1) * sizeof *ns);
    if (!r && !ns) r = me_error(err, ME_ERR_NOMEM, "out of memory storing normalizers");
    if (r) {
        me_norm_step_free(&st);
        return r;
    }
    t->norms = ns;
    t->norms[t->nnorms++] = st;
    return ME_OK;
}

int me_tok_add_pretokenizer(me_tok *t, int kind, uint32_t replacement, int prepend_scheme, int split, int behavior,
                            char *err) {
    if (t->finalized) return me_error(err, ME_ERR_VALUE, "tokenizer already finalized");
    if (kind < ME_PRE_STEP_METASPACE || kind > ME_PRE_STEP_PUNCTUATION)
        return me_error(err, ME_ERR_VALUE, "unknown pre-tokenizer kind %d", kind);
    if (prepend_scheme < ME_PREPEND_ALWAYS || prepend_scheme > ME_PREPEND_NEVER || behavior < ME_SPLIT_REMOVED ||
        behavior > ME_SPLIT_CONTIGUOUS || replacement >= 0x110000u || (replacement >= 0xD800 && replacement < 0xE000))
        return me_error(err, ME_ERR_VALUE, "invalid pre-tokenizer settings");
    pre_step *ps = realloc(t->pres, (t->npres + 1) * sizeof *ps);
    if (!ps) return me_error(err, ME_ERR_NOMEM, "out of memory storing pre-tokenizers");
    t->pres = ps;
    t->pres[t->npres++] = (pre_step){kind, replacement, prepend_scheme, split != 0, behavior};
    return ME_OK;
}

int me_tok_set_unigram(me_tok *t, const double *scores, size_t n, int byte_fallback, char *err) {
    if (t->o.model != ME_TOK_UNIGRAM) return me_error(err, ME_ERR_VALUE, "not a Unigram tokenizer");
    if (n > t->ntok && n) return me_error(err, ME_ERR_VALUE, "Unigram: %zu scores for a smaller vocabulary", n);
    const char **pieces = malloc((n ? n : 1) * sizeof *pieces);
    uint32_t *lens = malloc((n ? n : 1) * sizeof *lens);
    int r = ME_OK;
    if (!pieces || !lens) r = me_error(err, ME_ERR_NOMEM, "out of memory building the Unigram model");
    for (size_t i = 0; !r && i < n; i++) {
        if (t->tok_len[i] == UINT32_MAX) {
            r = me_error(err, ME_ERR_VALUE, "Unigram: vocabulary id %zu is missing (ids must be 0 .. %zu)", i, n - 1);
            break;
        }
        pieces[i] = t->tok_arena + t->tok_off[i];
        lens[i] = t->tok_len[i];
    }
    me_unigram_free(t->ug);
    t->ug = NULL;
    if (!r) r = me_unigram_new(pieces, lens, scores, n, &t->vocab, t->o.unk_id, byte_fallback, &t->ug, err);
    free(pieces);
    free(lens);
    return r;
}

static int normalize_steps(const me_tok *t, me_ws *w, const uint32_t *text, size_t a, size_t b);
static int normalize(const me_tok *t, me_ws *w, const uint32_t *text, size_t a, size_t b);

int me_tok_finalize(me_tok *t, char *err) {
    if (t->o.model == ME_TOK_UNIGRAM) {
        if (!t->ug) return me_error(err, ME_ERR_VALUE, "Unigram: the model has no vocabulary scores");
        if (t->o.pre_tokenizer != ME_PRE_STEPS && t->o.pre_tokenizer != ME_PRE_NONE)
            return me_error(err, ME_ERR_VALUE, "Unigram: unsupported pre-tokenizer kind %d", t->o.pre_tokenizer);
    } else if (t->o.model == ME_TOK_WORDPIECE || t->o.model == ME_TOK_FASTBPE) {
        int wp = t->o.model == ME_TOK_WORDPIECE;
        if (t->o.unk_id < 0 || (size_t)t->o.unk_id >= t->ntok || t->tok_len[t->o.unk_id] == UINT32_MAX)
            return me_error(err, ME_ERR_VALUE, "%s: the unknown token is not in the vocabulary",
                            wp ? "WordPiece" : "fastBPE");
        if (!wp && t->o.pre_tokenizer == ME_PRE_STEPS)
            return me_error(err, ME_ERR_VALUE, "fastBPE: unsupported pre-tokenizer kind %d", t->o.pre_tokenizer);
        /* WordPiece: "##x" continues a word as x; fastBPE: "x@@" is x inside a word */
        me_strmap_clear(&t->cont);
        for (size_t i = 0; i < t->vocab.cap; i++) {
            const me_strmap_slot *s = &t->vocab.slots[i];
            const char *k = t->vocab.arena + s->off;
            if (!s->hash || s->len <= 2 || memcmp(wp ? k : k + s->len - 2, wp ? "##" : "@@", 2) != 0) continue;
            if (me_strmap_put(&t->cont, wp ? k + 2 : k, s->len - 2, s->value))
                return me_error(err, ME_ERR_NOMEM, "out of memory indexing the vocabulary");
        }
    } else {
        /* GPT-2 byte-to-unicode table: printable bytes map to themselves, the 68 others to U+0100... */
        uint32_t next = 0x100;
        for (int b = 0; b < 256; b++) {
            int keep = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            uint32_t cp = keep ? (uint32_t)b : next++;
            char u[4];
            size_t n = me_utf8_put(cp, u);
            t->byte_id[b] = me_strmap_get(&t->vocab, u, n);
        }
    }
    /* tokenizers matches `normalized` added tokens by their normalized content */
    if (t->has_normalized_added && (t->o.bert_normalizer || t->nnorms)) {
        me_ws *w = me_ws_new();
        if (!w) return me_error(err, ME_ERR_NOMEM, "out of memory normalizing added tokens");
        for (size_t i = 0; i < t->nadded; i++) {
            added_tok *a = &t->added[i];
            if (!(a->flags & ME_AT_NORMALIZED)) continue;
            uint32_t *cp = NULL;
            int st = t->o.bert_normalizer ? normalize(t, w, a->cp, 0, a->ncp) : normalize_steps(t, w, a->cp, 0, a->ncp);
            const uint32_t *res = t->o.bert_normalizer ? w->nc : w->g.c;
            size_t nres = t->o.bert_normalizer ? w->nn : w->g.n;
            if (st || (nres && !(cp = malloc(nres * sizeof *cp)))) {
                me_ws_free(w);
                return me_error(err, ME_ERR_NOMEM, "out of memory normalizing added tokens");
            }
            if (nres) memcpy(cp, res, nres * sizeof *cp);
            free(a->cp);
            a->cp = cp;
            a->ncp = nres; /* 0: never matches, as in tokenizers */
        }
        me_ws_free(w);
    }
    if (t->o.post == ME_POST_TEMPLATE && (!t->tmpl[0] || !t->tmpl[1]))
        return me_error(err, ME_ERR_VALUE, "post-processor template: single and pair templates are both required");
    t->finalized = 1;
    return ME_OK;
}

const char *me_tok_id_to_token(const me_tok *t, int32_t id, size_t *len) {
    if (id < 0 || (size_t)id >= t->ntok || t->tok_len[id] == UINT32_MAX) return NULL;
    *len = t->tok_len[id];
    return t->tok_arena + t->tok_off[id];
}

size_t me_tok_num_added(const me_tok *t, int pair) {
    if (t->o.post != ME_POST_TEMPLATE) return 0;
    size_t n = 0;
    const me_tmpl_item *it = t->tmpl[pair ? 1 : 0];
    for (size_t i = 0; i < t->ntmpl[pair ? 1 : 0]; i++) n += it[i].what >= 0;
    return n;
}

me_ws *me_ws_new(void) { return calloc(1, sizeof(me_ws)); }

void me_ws_free(me_ws *w) {
    if (!w) return;
    free(w->nc);
    free(w->tc);
    free(w->ns);
    free(w->ts);
    free(w->pc);
    free(w->ps);
    free(w->ub);
    free(w->ubc);
    free(w->cb);
    free(w->sym);
    free(w->heap);
    free(w->round);
    free(w->bpe_out);
    free(w->raw.v);
    free(w->norm.v);
    me_enc_free(&w->seq[0]);
    me_enc_free(&w->seq[1]);
    me_enc_free(&w->out);
    me_strmap_free(&w->cache);
    free(w->cache_val);
    me_nstr_free(&w->g);
    me_nstr_free(&w->pool[0]);
    me_nstr_free(&w->pool[1]);
    me_nstr_free(&w->mtmp);
    free(w->sp[0].v);
    free(w->sp[1].v);
    free(w->sp[2].v);
    me_norm_ws_free(&w->nw);
    me_ug_ws_free(&w->ug);
    free(w);
}

/* ------------------------------------------------------------------ added tokens */

/* \w of the regex crate for single_word checks: letters, numbers, marks, connector punctuation. */
static int is_word_char(uint32_t c) {
    unsigned f = me_uflags(c);
    return (f & (ME_UF_LETTER | ME_UF_NUMBER | ME_UF_MN)) || c == '_' || c == 0x200C || c == 0x200D;
}

static int split_push(split_vec *v, size_t start, size_t stop, int32_t added) {
    if (me_grow((void **)&v->v, &v->cap, v->n + 1, sizeof *v->v)) return ME_ERR_NOMEM;
    v->v[v->n++] = (split){start, stop, added};
    return ME_OK;
}

/* HF AddedVocabulary::find_matches over c[0..n) for the added tokens whose `normalized` flag is
 * `normalized`: leftmost-longest non-overlapping matches, then single_word / lstrip / rstrip. */
static int find_added(const me_tok *t, const uint32_t *c, size_t n, int normalized, split_vec *out) {
    out->n = 0;
    size_t start_offset = 0, p = 0;
    while (p < n) {
        /* leftmost position with a match, longest token there */
        size_t ms = n, best = 0;
        int32_t bk = -1;
        for (size_t q = p; q < n && bk < 0; q++) {
            for (size_t k = 0; k < t->nadded; k++) {
                const added_tok *a = &t->added[k];
                if (((a->flags & ME_AT_NORMALIZED) != 0) != (normalized != 0)) continue;
                if (!a->ncp || a->cp[0] != c[q] || a->ncp > n - q || a->ncp <= best) continue;
                if (memcmp(a->cp, c + q, a->ncp * sizeof *c) == 0) {
                    best = a->ncp;
                    bk = (int32_t)k;
                    ms = q;
                }
            }
        }
        if (bk < 0) break;
        const added_tok *a = &t->added[bk];
        size_t start = ms, stop = ms + best;
        p = stop;
        if (a->flags & ME_AT_SINGLE_WORD) {
            int start_ok = start == 0 || !is_word_char(c[start - 1]);
            int stop_ok = stop == n || !is_word_char(c[stop]);
            if (!start_ok || !stop_ok) continue;
        }
        if (a->flags & ME_AT_LSTRIP)
            while (start > start_offset && (me_uflags(c[start - 1]) & ME_UF_SPACE)) start--;
        if (a->flags & ME_AT_RSTRIP)
            while (stop < n && (me_uflags(c[stop]) & ME_UF_SPACE)) stop++;
        if (start_offset < start && split_push(out, start_offset, start, -1)) return ME_ERR_NOMEM;
        if (split_push(out, start, stop, bk)) return ME_ERR_NOMEM;
        start_offset = stop;
        if (p < stop) p = stop;
    }
    if (start_offset < n && split_push(out, start_offset, n, -1)) return ME_ERR_NOMEM;
    return ME_OK;
}

/* ------------------------------------------------------------------ normalizer */

static int norm_push(me_ws *w, uint32_t c, int32_t s) {
    if (w->nn == w->ncap && me_grow2((void **)&w->nc, sizeof *w->nc, (void **)&w->ns, sizeof *w->ns, &w->ncap, w->nn + 1))
        return ME_ERR_NOMEM;
    w->nc[w->nn] = c;
    w->ns[w->nn++] = s;
    return ME_OK;
}

/* Move the current normalized text to the t* buffers and empty nc/ns for the next pass. */
static void norm_swap(me_ws *w, size_t *n) {
    uint32_t *c = w->nc;
    w->nc = w->tc;
    w->tc = c;
    int32_t *s = w->ns;
    w->ns = w->ts;
    w->ts = s;
    size_t cap = w->ncap;
    w->ncap = w->tcap;
    w->tcap = cap;
    *n = w->nn;
    w->nn = 0;
}

/* Normalize text[a..b) (sources are indices into text) into nc/ns. */
static int normalize(const me_tok *t, me_ws *w, const uint32_t *text, size_t a, size_t b) {
    const me_tok_options *o = &t->o;
    w->nn = 0;
    for (size_t i = a; i < b; i++) {
        uint32_t c = text[i];
        if (o->bert_normalizer && o->clean_text) {
            unsigned f = me_uflags(c);
            int tnr = c == '\t' || c == '\n' || c == '\r';
            if (c == 0 || c == 0xFFFD || ((f & ME_UF_CONTROL) && !tnr)) continue;
            if (tnr || (f & ME_UF_SPACE)) c = ' ';
        }
        if (o->bert_normalizer && o->handle_chinese_chars && (me_uflags(c) & ME_UF_CJK)) {
            if (norm_push(w, ' ', (int32_t)i) || norm_push(w, c, (int32_t)i) || norm_push(w, ' ', (int32_t)i))
                return ME_ERR_NOMEM;
        } else if (norm_push(w, c, (int32_t)i)) {
            return ME_ERR_NOMEM;
        }
    }
    if (!o->bert_normalizer) return ME_OK;
    size_t n;
    if (o->strip_accents) {
        /* NFD: decompose, then stably order each run of non-starters by combining class. Like
         * tokenizers (unicode-normalization-alignments + NormalizedString::transform), the flag
         * "first char of its source's decomposition" travels with each char and the sources are
         * then assigned positionally: a first char takes the next source in order, any other char
         * the last source taken. ns holds the flag (0 first, 1 other) until then. Then drop Mn. */
        norm_swap(w, &n);
        for (size_t i = 0; i < n; i++) {
            uint32_t d[ME_NFD_MAX];
            int k = me_unfd_char(w->tc[i], d);
            for (int j = 0; j < k; j++) {
                if (norm_push(w, d[j], j > 0)) return ME_ERR_NOMEM;
                size_t pos = w->nn - 1;
                unsigned cc = me_uccc(d[j]);
                while (cc && pos > 0 && me_uccc(w->nc[pos - 1]) > cc) {
                    uint32_t tc = w->nc[pos];
                    w->nc[pos] = w->nc[pos - 1];
                    w->nc[pos - 1] = tc;
                    int32_t tf = w->ns[pos];
                    w->ns[pos] = w->ns[pos - 1];
                    w->ns[pos - 1] = tf;
                    pos--;
                }
            }
        }
        size_t next = 0;
        int32_t cur = n ? w->ts[0] : 0;
        for (size_t i = 0; i < w->nn; i++) {
            if (w->ns[i] == 0 && next < n) cur = w->ts[next++];
            w->ns[i] = cur;
        }
        size_t m = 0;
        for (size_t i = 0; i < w->nn; i++) {
            if (me_uflags(w->nc[i]) & ME_UF_MN) continue;
            w->nc[m] = w->nc[i];
            w->ns[m++] = w->ns[i];
        }
        w->nn = m;
    }
    if (o->lowercase) {
        norm_swap(w, &n);
        for (size_t i = 0; i < n; i++) {
            uint32_t l[ME_ULOWER_MAX];
            int k = me_ulower(w->tc[i], l);
            for (int j = 0; j < k; j++)
                if (norm_push(w, l[j], w->ts[i])) return ME_ERR_NOMEM;
        }
    }
    return ME_OK;
}

/* ------------------------------------------------------------------ models */

typedef struct {
    const me_tok *t;
    me_ws *w;
    me_enc *e;
    int32_t word;   /* next word index */
    int forced;     /* pre-split word: every token gets `word` */
    char *err;      /* message of a failure other than out of memory */
} ctx;

static int32_t next_word(ctx *x) { return x->forced ? x->word : x->word++; }

/* WordPiece on the normalized chars nc[a..b). */
static int wordpiece(ctx *x, size_t a, size_t b) {
    const me_tok *t = x->t;
    me_ws *w = x->w;
    me_enc *e = x->e;
    size_t nch = b - a;
    int32_t wid = next_word(x);
    int32_t ws = w->ns[a], we = w->ns[b - 1] + 1;
    if (nch > (size_t)t->o.max_input_chars_per_word) return enc_push(e, t->o.unk_id, 0, wid, 0, ws, we, 0);
    if (me_grow((void **)&w->ub, &w->ucap, 4 * nch, 1) || me_grow((void **)&w->cb, &w->cbcap, nch + 1, sizeof *w->cb))
        return ME_ERR_NOMEM;
    size_t nb = 0;
    for (size_t i = 0; i < nch; i++) {
        w->cb[i] = (int32_t)nb;
        nb += me_utf8_put(w->nc[a + i], w->ub + nb);
    }
    w->cb[nch] = (int32_t)nb;
    size_t saved = e->n, start = 0;
    while (start < nch) {
        const me_strmap *m = start ? &t->cont : &t->vocab;
        size_t end = nch;
        while (end > start && (size_t)(w->cb[end] - w->cb[start]) > m->max_key_len) end--;
        int32_t id = -1;
        for (; end > start; end--) {
            id = me_strmap_get(m, w->ub + w->cb[start], (size_t)(w->cb[end] - w->cb[start]));
            if (id >= 0) break;
        }
        if (id < 0) {
            e->n = saved;
            return enc_push(e, t->o.unk_id, 0, wid, 0, ws, we, 0);
        }
        int st = enc_push(e, id, 0, wid, 0, w->ns[a + start], w->ns[a + end - 1] + 1, 0);
        if (st) return st;
        start = end;
    }
    return ME_OK;
}

static int heap_less(const bpe_merge *x, const bpe_merge *y) {
    return x->rank < y->rank || (x->rank == y->rank && x->pos < y->pos);
}

static int heap_push(me_ws *w, bpe_merge m) {
    if (me_grow((void **)&w->heap, &w->heapcap, w->heapn + 1, sizeof *w->heap)) return ME_ERR_NOMEM;
    size_t i = w->heapn++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!heap_less(&m, &w->heap[p])) break;
        w->heap[i] = w->heap[p];
        i = p;
    }
    w->heap[i] = m;
    return ME_OK;
}

static bpe_merge heap_pop(me_ws *w) {
    bpe_merge top = w->heap[0], last = w->heap[--w->heapn];
    size_t i = 0, n = w->heapn;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, s = i;
        const bpe_merge *best = &last;
        if (l < n && heap_less(&w->heap[l], best)) { s = l; best = &w->heap[l]; }
        if (r < n && heap_less(&w->heap[r], best)) s = r;
        if (s == i) break;
        w->heap[i] = w->heap[s];
        i = s;
    }
    if (n) w->heap[i] = last;
    return top;
}

static const me_pairmap_slot *merge_of(const me_tok *t, int32_t a, int32_t b) {
    return me_pairmap_get(&t->merges, ((uint64_t)(uint32_t)a << 32) | (uint32_t)b);
}

/* BPE of the bytes ub[0..nb) into bpe_out as (id, byte length) pairs; returns the pair count
 * through *nout. Mirrors tokenizers' Word::merge_all (priority queue on (rank, position)). */
static int bpe_word(const me_tok *t, me_ws *w, size_t nb, size_t *nout) {
    if (me_grow((void **)&w->sym, &w->symcap, nb, sizeof *w->sym)) return ME_ERR_NOMEM;
    size_t ns = 0;
    for (size_t i = 0; i < nb; i++) {
        int32_t id = t->byte_id[(unsigned char)w->ub[i]];
        if (id < 0) id = t->o.unk_id;
        if (id < 0) continue; /* HF drops a char missing from the vocabulary when there is no unk */
        w->sym[ns] = (bpe_sym){id, (int32_t)ns - 1, (int32_t)ns + 1, 1};
        ns++;
    }
    if (ns) w->sym[ns - 1].next = -1;
    w->heapn = 0;
    for (size_t i = 0; i + 1 < ns; i++) {
        const me_pairmap_slot *m = merge_of(t, w->sym[i].c, w->sym[i + 1].c);
        if (m && heap_push(w, (bpe_merge){(int32_t)i, m->a, m->b})) return ME_ERR_NOMEM;
    }
    while (w->heapn) {
        bpe_merge top = heap_pop(w);
        bpe_sym *cur = &w->sym[top.pos];
        if (cur->len == 0 || cur->next == -1) continue;
        int32_t np = cur->next;
        bpe_sym right = w->sym[np];
        const me_pairmap_slot *m = merge_of(t, cur->c, right.c);
        if (!m || m->b != top.new_id) continue;
        cur->c = top.new_id;
        cur->len += right.len;
        cur->next = right.next;
        w->sym[np].len = 0;
        if (right.next >= 0) w->sym[right.next].prev = top.pos;
        if (cur->prev >= 0) {
            const me_pairmap_slot *pm = merge_of(t, w->sym[cur->prev].c, cur->c);
            if (pm && heap_push(w, (bpe_merge){cur->prev, pm->a, pm->b})) return ME_ERR_NOMEM;
        }
        if (cur->next >= 0) {
            const me_pairmap_slot *nm = merge_of(t, cur->c, w->sym[cur->next].c);
            if (nm && heap_push(w, (bpe_merge){top.pos, nm->a, nm->b})) return ME_ERR_NOMEM;
        }
    }
    size_t k = 0;
    if (me_grow((void **)&w->bpe_out, &w->bpe_outcap, 2 * (ns ? ns : 1), sizeof *w->bpe_out)) return ME_ERR_NOMEM;
    for (int32_t i = ns ? 0 : -1; i >= 0; i = w->sym[i].next) {
        w->bpe_out[2 * k] = w->sym[i].c;
        w->bpe_out[2 * k + 1] = (int32_t)w->sym[i].len;
        k++;
    }
    *nout = k;
    return ME_OK;
}

static const me_pairmap_slot *fastbpe_merge_of(const me_tok *t, int32_t a, int32_t b) {
    return a < 0 || b < 0 ? NULL : merge_of(t, a, b); /* -1: a symbol no merge names */
}

static int fastbpe_push_pair(const me_tok *t, me_ws *w, int32_t pos) {
    int32_t next = w->sym[pos].next;
    if (next < 0) return ME_OK;
    const me_pairmap_slot *m = fastbpe_merge_of(t, w->sym[pos].c, w->sym[next].c);
    return m ? heap_push(w, (bpe_merge){pos, m->a, m->b}) : ME_OK;
}

/* fastBPE of the bytes ub[0..nb) (chars as ubc marks them) into bpe_out as (id, byte length)
 * pairs, as BertweetTokenizer.bpe: each round takes the lowest rank among the adjacent pairs and
 * merges its occurrences left to right, an occurrence whose left symbol was just merged away
 * skipped (a merged symbol never forms the same pair again: its string is longer). */
static int fastbpe_word(const me_tok *t, me_ws *w, size_t nb, size_t *nout) {
    if (me_grow((void **)&w->sym, &w->symcap, nb, sizeof *w->sym)) return ME_ERR_NOMEM;
    size_t ns = 0;
    for (size_t i = 0; i < nb;) {
        size_t j = i + 1;
        while (j < nb && w->ubc[j] == w->ubc[i]) j++;
        int32_t id = -1;
        if (j < nb) {
            id = me_strmap_get(&t->fsym, w->ub + i, j - i);
        } else if (j - i <= 4) { /* the word's last char, marked */
            char last[8];
            memcpy(last, w->ub + i, j - i);
            memcpy(last + (j - i), "</w>", 4);
            id = me_strmap_get(&t->fsym, last, j - i + 4);
        }
        w->sym[ns] = (bpe_sym){id, (int32_t)ns - 1, (int32_t)ns + 1, (uint32_t)(j - i)};
        ns++;
        i = j;
    }
    if (ns) w->sym[ns - 1].next = -1;
    w->heapn = 0;
    for (size_t i = 0; i + 1 < ns; i++)
        if (fastbpe_push_pair(t, w, (int32_t)i)) return ME_ERR_NOMEM;
    while (w->heapn) {
        int32_t rank = w->heap[0].rank;
        size_t nr = 0;
        if (me_grow((void **)&w->round, &w->roundcap, w->heapn, sizeof *w->round)) return ME_ERR_NOMEM;
        while (w->heapn && w->heap[0].rank == rank) w->round[nr++] = heap_pop(w); /* in position order */
        for (size_t r = 0; r < nr; r++) {
            int32_t pos = w->round[r].pos;
            bpe_sym *cur = &w->sym[pos];
            if (cur->len == 0 || cur->next == -1) continue;
            int32_t np = cur->next;
            bpe_sym right = w->sym[np];
            const me_pairmap_slot *m = fastbpe_merge_of(t, cur->c, right.c);
            if (!m || m->a != rank) continue;
            cur->c = m->b;
            cur->len += right.len;
            cur->next = right.next;
            w->sym[np].len = 0;
            if (right.next >= 0) w->sym[right.next].prev = pos;
            /* the new pairs rank elsewhere than this round's, so they wait in the heap */
            if ((cur->prev >= 0 && fastbpe_push_pair(t, w, cur->prev)) || fastbpe_push_pair(t, w, pos))
                return ME_ERR_NOMEM;
        }
    }
    if (me_grow((void **)&w->bpe_out, &w->bpe_outcap, 2 * (ns ? ns : 1), sizeof *w->bpe_out)) return ME_ERR_NOMEM;
    size_t k = 0, off = 0;
    for (int32_t i = ns ? 0 : -1; i >= 0; i = w->sym[i].next) {
        size_t len = w->sym[i].len;
        int32_t id = me_strmap_get(w->sym[i].next < 0 ? &t->vocab : &t->cont, w->ub + off, len);
        w->bpe_out[2 * k] = id >= 0 ? id : t->o.unk_id;
        w->bpe_out[2 * k + 1] = (int32_t)len;
        off += len;
        k++;
    }
    *nout = k;
    return ME_OK;
}

/* BPE (or fastBPE) of the pre-token pc[a..b): bytes, cache, merges, tokens with char offsets. */
static int bpe_piece(ctx *x, size_t a, size_t b) {
    const me_tok *t = x->t;
    me_ws *w = x->w;
    size_t nch = b - a;
    if (me_grow((void **)&w->ub, &w->ucap, 4 * nch, 1) || me_grow((void **)&w->ubc, &w->ubccap, 4 * nch, sizeof *w->ubc))
        return ME_ERR_NOMEM;
    size_t nb = 0;
    for (size_t i = a; i < b; i++) {
        size_t k = me_utf8_put(w->pc[i], w->ub + nb);
        for (size_t j = 0; j < k; j++) w->ubc[nb + j] = (int32_t)i;
        nb += k;
    }
    int32_t wid = next_word(x);
    const int32_t *toks;
    size_t ntok;
    int32_t hit = me_strmap_get(&w->cache, w->ub, nb);
    if (hit >= 0) {
        ntok = (size_t)w->cache_val[hit];
        toks = w->cache_val + hit + 1;
    } else {
        int st = t->o.model == ME_TOK_FASTBPE ? fastbpe_word(t, w, nb, &ntok) : bpe_word(t, w, nb, &ntok);
        if (st) return st;
        toks = w->bpe_out;
        if (w->cache.count >= BPE_CACHE_WORDS || w->cache_n + 1 + 2 * ntok > BPE_CACHE_INTS) {
            me_strmap_clear(&w->cache);
            w->cache_n = 0;
        }
        if (1 + 2 * ntok <= BPE_CACHE_INTS &&
            !me_grow((void **)&w->cache_val, &w->cache_cap, w->cache_n + 1 + 2 * ntok, sizeof *w->cache_val) &&
            !me_strmap_put(&w->cache, w->ub, nb, (int32_t)w->cache_n)) {
            w->cache_val[w->cache_n] = (int32_t)ntok;
            memcpy(w->cache_val + w->cache_n + 1, toks, 2 * ntok * sizeof *toks);
            w->cache_n += 1 + 2 * ntok;
        }
    }
    size_t off = 0;
    for (size_t k = 0; k < ntok; k++) {
        size_t len = (size_t)toks[2 * k + 1];
        int32_t s = w->ps[w->ubc[off]], e = w->ps[w->ubc[off + len - 1]] + 1;
        int st = enc_push(x->e, toks[2 * k], 0, wid, 0, s, e, 0);
        if (st) return st;
        off += len;
    }
    return ME_OK;
}

/* End of the GPT-2 pattern match starting at i:
 * 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ */
static size_t gpt2_match(const uint32_t *c, size_t n, size_t i) {
    if (c[i] == '\'' && i + 1 < n) {
        uint32_t d = c[i + 1];
        if (d == 's' || d == 't' || d == 'm' || d == 'd') return i + 2;
        if (i + 2 < n) {
            uint32_t e = c[i + 2];
            if ((d == 'r' && e == 'e') || (d == 'v' && e == 'e') || (d == 'l' && e == 'l')) return i + 3;
        }
    }
    const unsigned L = ME_UF_LETTER, N = ME_UF_NUMBER, S = ME_UF_RE_SPACE;
    size_t j = i;
    if (c[i] == ' ' && i + 1 < n && !(me_uflags(c[i + 1]) & S)) j = i + 1; /* the optional leading space */
    unsigned f = me_uflags(c[j]);
    if (j > i || !(f & S)) {
        /* a run of letters, of numbers, or of other chars */
        size_t k = j + 1;
        if (f & (L | N)) {
            unsigned cls = (f & L) ? L : N;
            while (k < n && (me_uflags(c[k]) & cls)) k++;
        } else {
            while (k < n && !(me_uflags(c[k]) & (L | N | S))) k++;
        }
        return k;
    }
    /* whitespace run: \s+(?!\S) leaves its last char to the next match when a non-space follows;
     * a single whitespace char before a non-space is matched alone by \s+ */
    size_t k = i;
    while (k < n && (me_uflags(c[k]) & S)) k++;
    if (k == n || k - i == 1) return k;
    return k - 1;
}

/* ------------------------------------------------------------------ pipeline */

/* The model on the normalized chars nc[i..j) (BPE: copied to the piece buffer first). */
static int model_run(ctx *x, size_t i, size_t j) {
    if (x->t->o.model == ME_TOK_WORDPIECE) return wordpiece(x, i, j);
    me_ws *w = x->w;
    if (me_grow2((void **)&w->pc, sizeof *w->pc, (void **)&w->ps, sizeof *w->ps, &w->pcap, j - i)) return ME_ERR_NOMEM;
    memcpy(w->pc, w->nc + i, (j - i) * sizeof *w->pc);
    memcpy(w->ps, w->ns + i, (j - i) * sizeof *w->ps);
    return bpe_piece(x, 0, j - i);
}

/* Python's str.isspace(): White_Space and the separators U+001C..U+001F. */
static int py_space(uint32_t c) { return (me_uflags(c) & ME_UF_RE_SPACE) || (c >= 0x1C && c <= 0x1F); }

static int pretokenize_and_model(ctx *x, size_t a, size_t b) {
    const me_tok *t = x->t;
    me_ws *w = x->w;
    if (a >= b) return ME_OK;
    if (t->o.pre_tokenizer == ME_PRE_BYTELEVEL) {
        int prefix = t->o.add_prefix_space && w->nc[a] != ' ';
        size_t m = b - a + (size_t)prefix;
        if (me_grow2((void **)&w->pc, sizeof *w->pc, (void **)&w->ps, sizeof *w->ps, &w->pcap, m)) return ME_ERR_NOMEM;
        if (prefix) {
            w->pc[0] = ' ';
            w->ps[0] = w->ns[a];
        }
        memcpy(w->pc + prefix, w->nc + a, (b - a) * sizeof *w->pc);
        memcpy(w->ps + prefix, w->ns + a, (b - a) * sizeof *w->ps);
        if (!t->o.use_regex) return bpe_piece(x, 0, m);
        for (size_t i = 0; i < m;) {
            size_t j = gpt2_match(w->pc, m, i);
            int st = bpe_piece(x, i, j);
            if (st) return st;
            i = j;
        }
        return ME_OK;
    }
    if (t->o.pre_tokenizer == ME_PRE_PY_WORDS) { /* re.findall(r"\S+\n?") */
        for (size_t i = a; i < b;) {
            size_t j = i + 1;
            if (py_space(w->nc[i])) { i = j; continue; }
            while (j < b && !py_space(w->nc[j])) j++;
            if (j < b && w->nc[j] == '\n') j++;
            int st = model_run(x, i, j);
            if (st) return st;
            i = j;
        }
        return ME_OK;
    }
    /* BERT pre-tokenizer (or none): split on whitespace, isolate punctuation. */
    unsigned brk = t->o.pre_tokenizer == ME_PRE_BERT ? (ME_UF_SPACE | ME_UF_PUNCT) : 0;
    for (size_t i = a; i < b;) {
        unsigned f = me_uflags(w->nc[i]) & brk;
        size_t j = i + 1;
        if (f & ME_UF_SPACE) { i = j; continue; }
        if (!(f & ME_UF_PUNCT))
            while (j < b && !(me_uflags(w->nc[j]) & brk)) j++;
        int st = model_run(x, i, j);
        if (st) return st;
        i = j;
    }
    return ME_OK;
}

/* An added token matched as span[0..n) (original or normalized text) from source start to end. */
static int push_added(ctx *x, int32_t k, int32_t start, int32_t end, const uint32_t *span, size_t n) {
    const added_tok *a = &x->t->added[k];
    int st = enc_push(x->e, a->id, 0, next_word(x), 0, start, end, 0);
    if (st) return st;
    me_ws *w = x->w;
    if (me_grow((void **)&w->ub, &w->ucap, 4 * n + 1, 1)) return ME_ERR_NOMEM;
    size_t nb = 0;
    for (size_t i = 0; i < n; i++) nb += me_utf8_put(span[i], w->ub + nb);
    return enc_set_string(x->e, x->e->n - 1, w->ub, nb);
}

/* ------------------------------------------------------------------ SentencePiece-style pipeline */

/* The normalizer chain over text[a..b) into w->g; alignments are indices into text. */
static int normalize_steps(const me_tok *t, me_ws *w, const uint32_t *text, size_t a, size_t b) {
    me_nstr *g = &w->g;
    if (me_nstr_reserve(g, b - a + 1)) return ME_ERR_NOMEM;
    for (size_t i = a; i < b; i++) {
        g->c[i - a] = text[i];
        g->a[i - a] = (int32_t)i;
        g->b[i - a] = (int32_t)i + 1;
    }
    g->n = b - a;
    for (size_t k = 0; k < t->nnorms; k++) {
        int st = me_norm_apply(&t->norms[k], g, (int32_t)a, &w->nw);
        if (st) return st;
    }
    return ME_OK;
}

/* Chars [i, j) of src as a new pre-token of dst (empty ones are dropped, as PreTokenizedString::split). */
static int pool_add(me_nstr *dst, psplit_vec *out, const me_nstr *src, size_t i, size_t j, int32_t orig) {
    if (i >= j) return ME_OK;
    size_t len = j - i;
    if (me_nstr_reserve(dst, dst->n + len) || me_grow((void **)&out->v, &out->cap, out->n + 1, sizeof *out->v))
        return ME_ERR_NOMEM;
    memcpy(dst->c + dst->n, src->c + i, len * sizeof *dst->c);
    memcpy(dst->a + dst->n, src->a + i, len * sizeof *dst->a);
    memcpy(dst->b + dst->n, src->b + i, len * sizeof *dst->b);
    out->v[out->n++] = (psplit){dst->n, len, orig};
    dst->n += len;
    return ME_OK;
}

enum { PRED_SPACE, PRED_PUNCT, PRED_CHAR };

static int is_delim(int mode, uint32_t arg, uint32_t c) {
    if (mode == PRED_SPACE) return (me_uflags(c) & ME_UF_SPACE) != 0;
    if (mode == PRED_PUNCT) return (me_uflags(c) & ME_UF_PUNCT) != 0;
    return c == arg;
}

/* NormalizedString::split of src[i0, i1) on single chars (a predicate pattern: each delimiter is a
 * match of its own) with a SplitDelimiterBehavior; every piece is a slice (original start = its
 * first char's alignment). */
static int split_into(me_ws *w, me_nstr *dst, psplit_vec *out, const me_nstr *src, size_t i0, size_t i1, int mode,
                      uint32_t arg, int behavior) {
    /* the pieces of find_matches: (off, len, orig = is_match) */
    psplit_vec *pc = &w->sp[2];
    pc->n = 0;
    for (size_t i = i0; i < i1;) {
        size_t j = i;
        int m = is_delim(mode, arg, src->c[i]);
        if (m) j = i + 1;
        else while (j < i1 && !is_delim(mode, arg, src->c[j])) j++;
        if (me_grow((void **)&pc->v, &pc->cap, pc->n + 1, sizeof *pc->v)) return ME_ERR_NOMEM;
        pc->v[pc->n++] = (psplit){i, j - i, m};
        i = j;
    }
    size_t k = 0; /* merged pieces are written back into pc->v[0..k) */
    if (behavior == ME_SPLIT_MERGED_NEXT) {
        int prev = 0;
        for (size_t q = pc->n; q-- > 0;) {
            psplit p = pc->v[q];
            if (p.orig && !prev && k) { /* extend the following piece to the left */
                pc->v[pc->n - k].len += pc->v[pc->n - k].off - p.off;
                pc->v[pc->n - k].off = p.off;
            } else {
                k++;
                pc->v[pc->n - k] = p;
            }
            prev = p.orig;
        }
        memmove(pc->v, pc->v + pc->n - k, k * sizeof *pc->v);
    } else {
        int prev = 0;
        for (size_t q = 0; q < pc->n; q++) {
            psplit p = pc->v[q];
            int merge = (behavior == ME_SPLIT_MERGED_PREVIOUS && p.orig && !prev) ||
                        (behavior == ME_SPLIT_CONTIGUOUS && p.orig == prev);
            if (merge && k) {
                pc->v[k - 1].len = p.off + p.len - pc->v[k - 1].off;
            } else if (!(behavior == ME_SPLIT_REMOVED && p.orig)) {
                pc->v[k++] = p;
            }
            prev = p.orig;
        }
    }
    for (size_t q = 0; q < k; q++) {
        psplit p = pc->v[q];
        if (pool_add(dst, out, src, p.off, p.off + p.len, src->a[p.off])) return ME_ERR_NOMEM;
    }
    return ME_OK;
}

/* Metaspace on one pre-token: ' ' -> replacement, the prefix, then the split before each replacement. */
static int metaspace(me_ws *w, const pre_step *ps, const me_nstr *src, psplit sp, me_nstr *dst, psplit_vec *out) {
    me_nstr *m = &w->mtmp;
    if (me_nstr_reserve(m, sp.len + 1)) return ME_ERR_NOMEM;
    size_t pre = ps->scheme != ME_PREPEND_NEVER && src->c[sp.off] != ' ' && src->c[sp.off] != ps->repl &&
                 (ps->scheme == ME_PREPEND_ALWAYS || sp.orig == 0);
    for (size_t i = 0; i < sp.len; i++) {
        uint32_t c = src->c[sp.off + i];
        m->c[pre + i] = c == ' ' ? ps->repl : c;
        m->a[pre + i] = src->a[sp.off + i];
        m->b[pre + i] = src->b[sp.off + i];
    }
    if (pre) {
        m->c[0] = ps->repl;
        m->a[0] = src->a[sp.off];
        m->b[0] = src->b[sp.off];
    }
    m->n = sp.len + pre;
    if (!ps->split) return pool_add(dst, out, m, 0, m->n, sp.orig);
    return split_into(w, dst, out, m, 0, m->n, PRED_CHAR, ps->repl, ME_SPLIT_MERGED_NEXT);
}

/* Unigram over one pre-token; token offsets through the alignments of its first and last char. */
static int unigram_split(ctx *x, const me_nstr *p, psplit sp) {
    const me_tok *t = x->t;
    me_ws *w = x->w;
    if (me_grow((void **)&w->ub, &w->ucap, 4 * sp.len, 1) || me_grow((void **)&w->ubc, &w->ubccap, 4 * sp.len, sizeof *w->ubc))
        return ME_ERR_NOMEM;
    size_t nb = 0;
    for (size_t i = 0; i < sp.len; i++) {
        size_t k = me_utf8_put(p->c[sp.off + i], w->ub + nb);
        for (size_t j = 0; j < k; j++) w->ubc[nb + j] = (int32_t)i;
        nb += k;
    }
    int32_t wid = next_word(x);
    int st = me_unigram_encode(t->ug, w->ub, nb, &w->ug, x->err);
    if (st) return st;
    for (size_t k = 0; k < w->ug.ntok; k++) {
        const me_ug_tok *tk = &w->ug.tok[k];
        size_t cs = sp.off + (size_t)w->ubc[tk->start], ce = sp.off + (size_t)w->ubc[tk->end - 1];
        if ((st = enc_push(x->e, tk->id, 0, wid, 0, p->a[cs], p->b[ce], 0))) return st;
        if (tk->own_string && (st = enc_set_string(x->e, x->e->n - 1, w->ub + tk->start, tk->end - tk->start)))
            return st;
    }
    return ME_OK;
}

/* The pre-tokenizers over w->g[a..b), then the model on each pre-token. */
static int pretokenize_steps(ctx *x, size_t a, size_t b) {
    const me_tok *t = x->t;
    me_ws *w = x->w;
    if (a >= b) return ME_OK;
    int cur = 0, st;
    w->pool[0].n = w->sp[0].n = 0;
    if ((st = pool_add(&w->pool[0], &w->sp[0], &w->g, a, b, w->g.a[a]))) return st;
    for (size_t k = 0; k < t->npres; k++) {
        const pre_step *ps = &t->pres[k];
        int nxt = 1 - cur;
        me_nstr *src = &w->pool[cur], *dst = &w->pool[nxt];
        psplit_vec *out = &w->sp[nxt];
        dst->n = out->n = 0;
        for (size_t q = 0; q < w->sp[cur].n; q++) {
            psplit sp = w->sp[cur].v[q];
            if (ps->kind == ME_PRE_STEP_METASPACE) st = metaspace(w, ps, src, sp, dst, out);
            else if (ps->kind == ME_PRE_STEP_WHITESPACE_SPLIT)
                st = split_into(w, dst, out, src, sp.off, sp.off + sp.len, PRED_SPACE, 0, ME_SPLIT_REMOVED);
            else st = split_into(w, dst, out, src, sp.off, sp.off + sp.len, PRED_PUNCT, 0, ps->behavior);
            if (st) return st;
        }
        cur = nxt;
    }
    for (size_t q = 0; q < w->sp[cur].n; q++)
        if ((st = unigram_split(x, &w->pool[cur], w->sp[cur].v[q]))) return st;
    return ME_OK;
}

/* Added tokens, normalizer, pre-tokenizer and model over text[0..n). */
static int encode_text(ctx *x, const uint32_t *text, size_t n) {
    const me_tok *t = x->t;
    me_ws *w = x->w;
    int steps = t->o.model == ME_TOK_UNIGRAM; /* the normalizer chain and pre-tokenizer steps */
    int st;
    if (t->has_raw_added) {
        st = find_added(t, text, n, 0, &w->raw);
    } else {
        w->raw.n = 0;
        st = n ? split_push(&w->raw, 0, n, -1) : ME_OK;
    }
    if (st) return st;
    for (size_t r = 0; r < w->raw.n; r++) {
        split sp = w->raw.v[r];
        if (sp.added >= 0) {
            st = push_added(x, sp.added, (int32_t)sp.start, (int32_t)sp.stop, text + sp.start, sp.stop - sp.start);
            if (st) return st;
            continue;
        }
        if ((st = steps ? normalize_steps(t, w, text, sp.start, sp.stop) : normalize(t, w, text, sp.start, sp.stop)))
            return st;
        const uint32_t *nc = steps ? w->g.c : w->nc;
        size_t nn = steps ? w->g.n : w->nn;
        if (!t->has_normalized_added) {
            if ((st = steps ? pretokenize_steps(x, 0, nn) : pretokenize_and_model(x, 0, nn))) return st;
            continue;
        }
        if ((st = find_added(t, nc, nn, 1, &w->norm))) return st;
        for (size_t q = 0; q < w->norm.n; q++) {
            split s2 = w->norm.v[q];
            if (s2.added >= 0) {
                int32_t os = steps ? w->g.a[s2.start] : w->ns[s2.start];
                int32_t oe = steps ? w->g.b[s2.stop - 1] : w->ns[s2.stop - 1] + 1;
                st = push_added(x, s2.added, os, oe, nc + s2.start, s2.stop - s2.start);
            } else {
                st = steps ? pretokenize_steps(x, s2.start, s2.stop) : pretokenize_and_model(x, s2.start, s2.stop);
            }
            if (st) return st;
        }
    }
    return ME_OK;
}

static int encode_seq(const me_tok *t, me_ws *w, const me_seq *s, me_enc *e, char *err) {
    e->n = 0;
    e->slen = 0;
    ctx x = {t, w, e, 0, 0, err};
    if (!s->word_start) return encode_text(&x, s->text, s->len);
    x.forced = 1;
    for (size_t i = 0; i < s->nwords; i++) {
        size_t a = s->word_start[i], b = s->word_start[i + 1];
        x.word = (int32_t)i;
        int st = encode_text(&x, s->text + a, b - a);
        if (st) return st;
    }
    return ME_OK;
}

/* tokenizers' process_offsets: trim leading/trailing 'Ġ' or whitespace of byte-level tokens. */
static void trim_offsets(const me_tok *t, me_enc *e, int add_prefix_space) {
    for (size_t i = 0; i < e->n; i++) {
        size_t len;
        const unsigned char *s = (const unsigned char *)me_enc_token(t, e, i, &len);
        if (!s) continue;
        size_t lead = 0, trail = 0, p = 0, used;
        while (p < len) {
            uint32_t c = utf8_get(s + p, len - p, &used);
            if (c != BYTE_LEVEL_SPACE && !(me_uflags(c) & ME_UF_SPACE)) break;
            lead++;
            p += used;
        }
        size_t q = len;
        while (q > 0) {
            size_t b = q - 1;
            while (b > 0 && (s[b] & 0xC0) == 0x80) b--;
            uint32_t c = utf8_get(s + b, q - b, &used);
            if (c != BYTE_LEVEL_SPACE && !(me_uflags(c) & ME_UF_SPACE)) break;
            trail++;
            q = b;
        }
        int32_t *o = e->offsets + 2 * i;
        if (lead) {
            if ((i == 0 || o[0] == 0) && add_prefix_space && lead == 1) lead = 0;
            int32_t ns = o[0] + (int32_t)lead;
            o[0] = ns < o[1] ? ns : o[1];
        }
        if (trail && o[1] >= (int32_t)trail) {
            int32_t ne = o[1] - (int32_t)trail;
            o[1] = ne > o[0] ? ne : o[0];
        }
    }
}

/* longest_first of transformers' Python tokenizers (truncate_sequences): the longer sequence loses
 * the difference, then the two share the rest, the second losing the odd one. */
static void truncate_python(me_enc *a, me_enc *b, size_t max) {
    size_t na = a->n, nb = b->n, remove = na + nb - max;
    size_t diff = na > nb ? na - nb : nb - na, first = diff < remove ? diff : remove, second = remove - first;
    size_t ra = second / 2 + (na > nb ? first : 0), rb = remove - ra;
    a->n = ra < na ? na - ra : 0;
    b->n = rb < nb ? nb - rb : 0;
}

/* tokenizers' truncate_encodings, strategy longest_first, direction right, stride 0 (or the Python
 * tokenizers' split with python_truncation). */
static void truncate_longest_first(const me_tok *t, me_enc *a, me_enc *b, size_t max) {
    if (!b) {
        if (a->n > max) a->n = max;
        return;
    }
    if (a->n + b->n <= max) return;
    if (t->o.python_truncation) {
        truncate_python(a, b, max);
        return;
    }
    size_t n1 = a->n, n2 = b->n;
    int swap = n1 > n2;
    if (swap) { size_t tmp = n1; n1 = n2; n2 = tmp; }
    n2 = n1 > max ? n1 : (n1 > max - n1 ? n1 : max - n1);
    if (n1 + n2 > max) {
        n1 = max / 2;
        n2 = n1 + max % 2;
    }
    if (swap) { size_t tmp = n1; n1 = n2; n2 = tmp; }
    if (a->n > n1) a->n = n1;
    if (b->n > n2) b->n = n2;
}

static int append_seq(me_enc *out, const me_enc *s, int32_t type_id, int32_t seq_id) {
    int st = enc_reserve(out, out->n + s->n);
    if (st) return st;
    for (size_t i = 0; i < s->n; i++) {
        size_t j = out->n++;
        out->ids[j] = s->ids[i];
        out->type_ids[j] = type_id;
        out->word_ids[j] = s->word_ids[i];
        out->seq_ids[j] = seq_id;
        out->offsets[2 * j] = s->offsets[2 * i];
        out->offsets[2 * j + 1] = s->offsets[2 * i + 1];
        out->special[j] = 0;
        out->sref[j] = -1;
        if (s->sref[i] >= 0) {
            size_t len;
            const char *str = me_enc_token(NULL, s, i, &len);
            st = enc_set_string(out, j, str, len);
            if (st) return st;
        }
    }
    return ME_OK;
}

int me_tok_encode(const me_tok *t, me_ws *w, const me_seq *a, const me_seq *b, int add_special_tokens,
                  long max_length, me_enc *out, char *err) {
    out->n = 0;
    out->slen = 0;
    if (!t->finalized) return me_error(err, ME_ERR_RUNTIME, "tokenizer is not finalized");
    size_t added = add_special_tokens ? me_tok_num_added(t, b != NULL) : 0;
    if (max_length >= 0 && (size_t)max_length < added)
        return me_error(err, ME_ERR_VALUE, "max_length=%ld leaves no room for the %zu special tokens added to %s; "
                        "use a larger max_length", max_length, added, b ? "a pair" : "a single input");
    me_enc *ea = &w->seq[0], *eb = b ? &w->seq[1] : NULL;
    int st = encode_seq(t, w, a, ea, err);
    if (!st && b) st = encode_seq(t, w, b, eb, err);
    if (st == ME_ERR_NOMEM) return me_error(err, st, "out of memory while tokenizing");
    if (st) return st;
    if (max_length >= 0) {
        size_t max = (size_t)max_length > added ? (size_t)max_length - added : 0;
        truncate_longest_first(t, ea, eb, max);
    }
    if (t->o.trim_offsets) {
        trim_offsets(t, ea, t->o.post_add_prefix_space);
        if (eb) trim_offsets(t, eb, t->o.post_add_prefix_space);
    }
    if (t->o.post != ME_POST_TEMPLATE) {
        st = append_seq(out, ea, 0, 0);
        if (!st && eb) st = append_seq(out, eb, 1, 1);
    } else {
        const me_tmpl_item *it = t->tmpl[b ? 1 : 0];
        for (size_t i = 0; i < t->ntmpl[b ? 1 : 0] && !st; i++) {
            if (it[i].what == ME_TMPL_A) st = append_seq(out, ea, it[i].type_id, 0);
            else if (it[i].what == ME_TMPL_B) st = append_seq(out, eb, it[i].type_id, 1);
            else if (add_special_tokens) {
                st = enc_push(out, it[i].what, it[i].type_id, -1, -1, 0, 0, 1);
                size_t len;
                const char *own = me_tok_id_to_token(t, it[i].what, &len);
                if (!st && it[i].str && (!own || len != it[i].str_len || memcmp(own, it[i].str, len)))
                    st = enc_set_string(out, out->n - 1, it[i].str, it[i].str_len);
            }
        }
    }
    if (st) return me_error(err, st, "out of memory while tokenizing");
    return ME_OK;
}

/* Append all tokens of src to dst (token strings rebased into dst's string buffer). */
static int enc_append(me_enc *dst, const me_enc *src) {
    if (!src->n) return ME_OK; /* an item without tokens (its buffers may be NULL: nothing to copy) */
    int st = enc_reserve(dst, dst->n + src->n);
    if (st) return st;
    if (src->slen && me_grow((void **)&dst->sbuf, &dst->scap, dst->slen + src->slen, 1)) return ME_ERR_NOMEM;
    if (dst->slen + src->slen > INT32_MAX) return ME_ERR_NOMEM;
    size_t n = src->n, at = dst->n;
    memcpy(dst->ids + at, src->ids, n * sizeof *src->ids);
    memcpy(dst->type_ids + at, src->type_ids, n * sizeof *src->type_ids);
    memcpy(dst->word_ids + at, src->word_ids, n * sizeof *src->word_ids);
    memcpy(dst->seq_ids + at, src->seq_ids, n * sizeof *src->seq_ids);
    memcpy(dst->offsets + 2 * at, src->offsets, 2 * n * sizeof *src->offsets);
    memcpy(dst->special + at, src->special, n);
    for (size_t i = 0; i < n; i++) dst->sref[at + i] = src->sref[i] < 0 ? -1 : src->sref[i] + (int32_t)dst->slen;
    if (src->slen) memcpy(dst->sbuf + dst->slen, src->sbuf, src->slen);
    dst->slen += src->slen;
    dst->n += n;
    return ME_OK;
}

int me_tok_encode_batch(const me_tok *t, me_ws **ws, int nws, const me_seq *a, const me_seq *const *b, size_t n,
                        int add_special_tokens, long max_length, me_enc *store, me_batch_item *item,
                        size_t *failed, char *err) {
    int status = ME_OK;
    size_t bad = n;
    if (nws < 1) nws = 1;
    for (int k = 0; k < nws; k++) store[k].n = store[k].slen = 0;
    #pragma omp parallel for schedule(dynamic, 32) num_threads(nws) if (n > 64)
    for (size_t i = 0; i < n; i++) {
        int st;
        #pragma omp atomic read
        st = status;
        if (st) continue;
        char e2[ME_ERRLEN];
        int k = omp_get_thread_num();
        me_ws *w = ws[k];
        st = me_tok_encode(t, w, &a[i], b[i], add_special_tokens, max_length, &w->out, e2);
        if (!st) {
            item[i] = (me_batch_item){k, store[k].n, w->out.n};
            if (enc_append(&store[k], &w->out)) st = me_error(e2, ME_ERR_NOMEM, "out of memory storing encodings");
        }
        if (st) {
            #pragma omp critical(me_tok_batch_error)
            {
                if (i < bad) {
                    bad = i;
                    memcpy(err, e2, ME_ERRLEN);
                    #pragma omp atomic write
                    status = st;
                }
            }
        }
    }
    *failed = bad;
    return status;
}
