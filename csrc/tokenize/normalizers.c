/* Normalizers of the SentencePiece pipelines with tokenizers' alignment rules; see normalizers.h
 * and docs/ARCHITECTURE.md ("SentencePiece Unigram"). */
#include "tokenize/normalizers.h"

#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "tokenize/unicode.h"

/* ------------------------------------------------------------------ strings */

int me_grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return ME_OK;
    size_t n = *cap ? *cap : 64;
    while (n < need) n *= 2;
    void *q = realloc(*p, n * elem);
    if (!q) return ME_ERR_NOMEM;
    *p = q;
    *cap = n;
    return ME_OK;
}

int me_grow2(void **a, size_t ea, void **b, size_t eb, size_t *cap, size_t need) {
    if (need <= *cap) return ME_OK;
    size_t n = *cap ? *cap : 64;
    while (n < need) n *= 2;
    void *qa = realloc(*a, n * ea);
    if (!qa) return ME_ERR_NOMEM;
    *a = qa;
    void *qb = realloc(*b, n * eb);
    if (!qb) return ME_ERR_NOMEM;
    *b = qb;
    *cap = n;
    return ME_OK;
}

/* Also allocates for need == 0, so the buffers are never NULL (memcpy's arguments must not be,
 * even for zero bytes). */
int me_nstr_reserve(me_nstr *s, size_t need) {
    if (s->c && need <= s->cap) return ME_OK;
    size_t n = s->cap ? s->cap : 64;
    while (n < need) n *= 2;
    uint32_t *c = realloc(s->c, n * sizeof *c);
    if (!c) return ME_ERR_NOMEM;
    s->c = c;
    int32_t *a = realloc(s->a, n * sizeof *a);
    if (!a) return ME_ERR_NOMEM;
    s->a = a;
    int32_t *b = realloc(s->b, n * sizeof *b);
    if (!b) return ME_ERR_NOMEM;
    s->b = b;
    s->cap = n;
    return ME_OK;
}

void me_nstr_free(me_nstr *s) {
    free(s->c);
    free(s->a);
    free(s->b);
    memset(s, 0, sizeof *s);
}

void me_norm_ws_free(me_norm_ws *w) {
    me_nstr_free(&w->tmp);
    free(w->dc);
    free(w->dchg);
    free(w->rc);
    free(w->rchg);
    memset(w, 0, sizeof *w);
}

size_t me_utf8_put(uint32_t c, char *o) {
    if (c < 0x80) { o[0] = (char)c; return 1; }
    if (c < 0x800) { o[0] = (char)(0xC0 | (c >> 6)); o[1] = (char)(0x80 | (c & 0x3F)); return 2; }
    if (c < 0x10000) {
        o[0] = (char)(0xE0 | (c >> 12));
        o[1] = (char)(0x80 | ((c >> 6) & 0x3F));
        o[2] = (char)(0x80 | (c & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (c >> 18));
    o[1] = (char)(0x80 | ((c >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((c >> 6) & 0x3F));
    o[3] = (char)(0x80 | (c & 0x3F));
    return 4;
}

static size_t utf8_len(uint32_t c) { return c < 0x80 ? 1 : c < 0x800 ? 2 : c < 0x10000 ? 3 : 4; }

/* Decode valid UTF-8 (the charsmap's strings are validated at load). */
static uint32_t utf8_next(const unsigned char *s, size_t n, size_t *i) {
    unsigned c = s[*i];
    size_t k = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    if (*i + k > n) k = n - *i;
    uint32_t v = k == 1 ? c : k == 2 ? (c & 0x1F) : k == 3 ? (c & 0x0F) : (c & 0x07);
    for (size_t j = 1; j < k; j++) v = (v << 6) | (s[*i + j] & 0x3F);
    *i += k;
    return v;
}

/* ------------------------------------------------------------------ transformations */

static int dest_push(me_norm_ws *w, uint32_t c, int32_t chg) {
    if (me_grow2((void **)&w->dc, sizeof *w->dc, (void **)&w->dchg, sizeof *w->dchg, &w->dcap, w->dn + 1))
        return ME_ERR_NOMEM;
    w->dc[w->dn] = c;
    w->dchg[w->dn++] = chg;
    return ME_OK;
}

/* NormalizedString::transform over the whole string: the new chars w->dc with their changes replace
 * s; `initial` chars at the start are removed first. An inserted char takes the alignment of the char
 * before the current position (or (base, base) at the very start); any other char takes the
 * alignment of the char it replaces. */
static int transform(me_nstr *s, me_norm_ws *w, size_t initial, int32_t base) {
    me_nstr *o = &w->tmp;
    if (me_nstr_reserve(o, w->dn ? w->dn : 1)) return ME_ERR_NOMEM;
    size_t j = initial < s->n ? initial : s->n;
    for (size_t k = 0; k < w->dn; k++) {
        int32_t chg = w->dchg[k], a, b;
        if (chg > 0) {
            a = j ? s->a[j - 1] : base;
            b = j ? s->b[j - 1] : base;
        } else {
            size_t q = j < s->n ? j : s->n - 1; /* j == n only for a malformed transformation */
            a = s->n ? s->a[q] : base;
            b = s->n ? s->b[q] : base;
            if (j < s->n) j++;
            if (chg < 0) {
                size_t r = (size_t)(-(int64_t)chg);
                j = r > s->n - j ? s->n : j + r;
            }
        }
        o->c[k] = w->dc[k];
        o->a[k] = a;
        o->b[k] = b;
    }
    o->n = w->dn;
    me_nstr t = *s;
    *s = *o;
    *o = t;
    return ME_OK;
}

/* ------------------------------------------------------------------ graphemes */

enum { PAIR_NOT, PAIR_BREAK, PAIR_INCB, PAIR_REGIONAL, PAIR_EMOJI };

static int check_pair(unsigned before, unsigned after) {
    if (before == ME_GC_CR && after == ME_GC_LF) return PAIR_NOT;                      /* GB3 */
    if (before == ME_GC_CONTROL || before == ME_GC_CR || before == ME_GC_LF) return PAIR_BREAK; /* GB4 */
    if (after == ME_GC_CONTROL || after == ME_GC_CR || after == ME_GC_LF) return PAIR_BREAK;    /* GB5 */
    if (before == ME_GC_L && (after == ME_GC_L || after == ME_GC_V || after == ME_GC_LV || after == ME_GC_LVT))
        return PAIR_NOT;                                                                  /* GB6 */
    if ((before == ME_GC_LV || before == ME_GC_V) && (after == ME_GC_V || after == ME_GC_T)) return PAIR_NOT; /* GB7 */
    if ((before == ME_GC_LVT || before == ME_GC_T) && after == ME_GC_T) return PAIR_NOT;  /* GB8 */
    if (after == ME_GC_EXTEND || after == ME_GC_ZWJ) return PAIR_NOT;                    /* GB9 */
    if (after == ME_GC_SPACINGMARK) return PAIR_NOT;                                     /* GB9a */
    if (before == ME_GC_PREPEND) return PAIR_NOT;                                        /* GB9b */
    if (after == ME_GC_INCB_CONSONANT) return PAIR_INCB;                                 /* GB9c */
    if (before == ME_GC_ZWJ && after == ME_GC_EXTPICT) return PAIR_EMOJI;                /* GB11 */
    if (before == ME_GC_RI && after == ME_GC_RI) return PAIR_REGIONAL;                   /* GB12, GB13 */
    return PAIR_BREAK;                                                                   /* GB999 */
}

static int is_boundary(const uint32_t *c, size_t j) {
    unsigned before = me_ugraph(c[j - 1]) & ME_UG_CAT, after = me_ugraph(c[j]) & ME_UG_CAT;
    switch (check_pair(before, after)) {
    case PAIR_NOT: return 0;
    case PAIR_BREAK: return 1;
    case PAIR_INCB: {
        /* no break iff Consonant [Extend Linker]* Linker [Extend Linker]* precedes */
        size_t linkers = 0;
        for (size_t k = j; k-- > 0;) {
            unsigned f = me_ugraph(c[k]);
            if (f & ME_UG_INCB_LINKER) linkers++;
            else if (!(f & ME_UG_INCB_EXTEND)) return !(linkers > 0 && (f & ME_UG_CAT) == ME_GC_INCB_CONSONANT);
        }
        return 1;
    }
    case PAIR_REGIONAL: {
        size_t ris = 0;
        for (size_t k = j; k-- > 0 && (me_ugraph(c[k]) & ME_UG_CAT) == ME_GC_RI;) ris++;
        return ris % 2 == 0;
    }
    default: /* PAIR_EMOJI: ExtPict Extend* ZWJ x ExtPict */
        for (size_t k = j - 1; k-- > 0;) {
            unsigned g = me_ugraph(c[k]) & ME_UG_CAT;
            if (g == ME_GC_EXTEND) continue;
            return g != ME_GC_EXTPICT;
        }
        return 1;
    }
}

size_t me_grapheme_end(const uint32_t *c, size_t n, size_t i) {
    size_t j = i + 1;
    while (j < n && !is_boundary(c, j)) j++;
    return j;
}

/* ------------------------------------------------------------------ Precompiled */

struct me_charsmap {
    uint32_t *units;
    size_t nunits;
    char *norm;
    size_t nnorm;
    /* lookups of the 128 one-byte keys, done once */
    int8_t ascii_has[128];
    uint32_t ascii_off[128], ascii_len[128];
};

static int charsmap_search(const me_charsmap *m, const uint8_t *key, size_t len, const char **rep, size_t *replen) {
    if (!m->nunits) return 0;
    uint64_t pos = 0;
    uint32_t u = m->units[0];
    pos ^= (uint64_t)(u >> 10) << ((u & 0x200u) >> 6);
    for (size_t i = 0; i < len; i++) {
        uint8_t c = key[i];
        if (!c) break;
        pos ^= c;
        if (pos >= m->nunits) return 0;
        u = m->units[pos];
        if ((u & 0x800000FFu) != c) return 0;
        pos ^= (uint64_t)(u >> 10) << ((u & 0x200u) >> 6);
        if ((u >> 8) & 1) {
            if (pos >= m->nunits) return 0;
            size_t idx = m->units[pos] & 0x7FFFFFFFu;
            /* spm_precompiled panics on an index past the strings or inside a char: no entry here */
            if (idx > m->nnorm || (idx < m->nnorm && ((unsigned char)m->norm[idx] & 0xC0) == 0x80)) return 0;
            size_t end = idx;
            while (end < m->nnorm && m->norm[end]) end++;
            *rep = m->norm + idx;
            *replen = end - idx;
            return 1;
        }
    }
    return 0;
}

int me_charsmap_lookup(const me_charsmap *m, const uint8_t *key, size_t len, const char **rep, size_t *replen) {
    if (len == 1 && key[0] < 128) {
        if (!m->ascii_has[key[0]]) return 0;
        *rep = m->norm + m->ascii_off[key[0]];
        *replen = m->ascii_len[key[0]];
        return 1;
    }
    return charsmap_search(m, key, len, rep, replen);
}

static int valid_utf8(const unsigned char *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t k;
        uint32_t v, min;
        if (c < 0x80) { i++; continue; }
        if (c >= 0xC2 && c < 0xE0) { k = 2; v = c & 0x1F; min = 0x80; }
        else if (c >= 0xE0 && c < 0xF0) { k = 3; v = c & 0x0F; min = 0x800; }
        else if (c >= 0xF0 && c < 0xF5) { k = 4; v = c & 0x07; min = 0x10000; }
        else return 0;
        if (i + k > n) return 0;
        for (size_t j = 1; j < k; j++) {
            if ((s[i + j] & 0xC0) != 0x80) return 0;
            v = (v << 6) | (s[i + j] & 0x3F);
        }
        if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
        i += k;
    }
    return 1;
}

int me_charsmap_parse(const uint8_t *blob, size_t len, me_charsmap **out, char *err) {
    *out = NULL;
    if (len < 4)
        return me_error(err, ME_ERR_VALUE, "precompiled_charsmap: %zu bytes, too short for its trie size", len);
    uint32_t trie_bytes = (uint32_t)blob[0] | (uint32_t)blob[1] << 8 | (uint32_t)blob[2] << 16 | (uint32_t)blob[3] << 24;
    size_t nunits = trie_bytes / 4;
    if (nunits > (len - 4) / 4)
        return me_error(err, ME_ERR_VALUE, "precompiled_charsmap: trie of %u bytes does not fit in the %zu-byte blob",
                        trie_bytes, len);
    size_t off = 4 + 4 * nunits; /* as spm_precompiled: trie_bytes % 4 bytes fall into the strings */
    if (!valid_utf8(blob + off, len - off))
        return me_error(err, ME_ERR_VALUE, "precompiled_charsmap: the normalized strings are not valid UTF-8");
    me_charsmap *m = calloc(1, sizeof *m);
    if (!m) return me_error(err, ME_ERR_NOMEM, "out of memory reading precompiled_charsmap");
    m->units = malloc((nunits ? nunits : 1) * sizeof *m->units);
    m->norm = malloc(len - off + 1);
    if (!m->units || !m->norm) {
        me_charsmap_free(m);
        return me_error(err, ME_ERR_NOMEM, "out of memory reading precompiled_charsmap");
    }
    for (size_t i = 0; i < nunits; i++) {
        const uint8_t *p = blob + 4 + 4 * i;
        m->units[i] = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    }
    m->nunits = nunits;
    memcpy(m->norm, blob + off, len - off);
    m->nnorm = len - off;
    m->norm[m->nnorm] = 0;
    for (int c = 0; c < 128; c++) {
        uint8_t k = (uint8_t)c;
        const char *rep;
        size_t rl;
        m->ascii_has[c] = (int8_t)charsmap_search(m, &k, 1, &rep, &rl);
        if (m->ascii_has[c]) {
            m->ascii_off[c] = (uint32_t)(rep - m->norm);
            m->ascii_len[c] = (uint32_t)rl;
        }
    }
    *out = m;
    return ME_OK;
}

void me_charsmap_free(me_charsmap *m) {
    if (!m) return;
    free(m->units);
    free(m->norm);
    free(m);
}

/* precompiled.rs `replace`: the replacement's chars replace old_count chars. */
static int replace_part(me_norm_ws *w, size_t old_count, const char *rep, size_t replen) {
    size_t i = 0, added = 0;
    while (i < replen) {
        if (dest_push(w, utf8_next((const unsigned char *)rep, replen, &i), 0)) return ME_ERR_NOMEM;
        added++;
    }
    if (added > old_count) {
        for (size_t k = 0; k < added - old_count; k++) w->dchg[w->dn - 1 - k] = 1;
    } else if (added < old_count && w->dn) {
        w->dchg[w->dn - 1] -= (int32_t)(old_count - added);
    }
    return ME_OK;
}

/* Per grapheme cluster: a cluster shorter than 6 bytes with an entry for one of its prefixes is
 * replaced whole by the shortest prefix's replacement; otherwise each char alone. */
static int precompiled(const me_charsmap *m, me_nstr *s, int32_t base, me_norm_ws *w) {
    /* fast path: an ASCII string whose chars have no entry (and no CR LF cluster) stays as it is */
    size_t i0 = 0;
    while (i0 < s->n && s->c[i0] < 128 && !m->ascii_has[s->c[i0]]) i0++;
    if (i0 == s->n) return ME_OK;
    w->dn = 0;
    int modified = 0;
    uint8_t key[8];
    const char *rep;
    size_t replen;
    for (size_t i = 0; i < s->n;) {
        uint32_t c = s->c[i];
        size_t g;
        if (c < 128 && (i + 1 == s->n || (s->c[i + 1] < 128 && !(c == '\r' && s->c[i + 1] == '\n')))) {
            g = i + 1; /* an ASCII char followed by one (other than CR LF) is a cluster of its own */
        } else {
            g = me_grapheme_end(s->c, s->n, i);
            size_t nb = 0;
            for (size_t k = i; k < g && nb < 6; k++) nb += utf8_len(s->c[k]);
            if (g - i > 1 && nb < 6) {
                nb = 0;
                for (size_t k = i; k < g; k++) nb += me_utf8_put(s->c[k], (char *)key + nb);
                if (me_charsmap_lookup(m, key, nb, &rep, &replen)) {
                    modified = 1;
                    if (replace_part(w, g - i, rep, replen)) return ME_ERR_NOMEM;
                    i = g;
                    continue;
                }
            }
        }
        for (; i < g; i++) {
            size_t nb = me_utf8_put(s->c[i], (char *)key);
            if (me_charsmap_lookup(m, key, nb, &rep, &replen)) {
                modified = 1;
                if (replace_part(w, 1, rep, replen)) return ME_ERR_NOMEM;
            } else if (dest_push(w, s->c[i], 0)) {
                return ME_ERR_NOMEM;
            }
        }
    }
    return modified ? transform(s, w, 0, base) : ME_OK;
}

/* ------------------------------------------------------------------ regex (Replace) */

typedef struct {
    int kind;
    int32_t min, max;
    size_t r0, nr; /* ranges in me_regex.ranges */
} re_item;

struct me_regex {
    uint8_t start_ascii[128]; /* whether a match may start at this ASCII char ... */
    uint8_t start_other;      /* ... or at a non-ASCII char */
    uint8_t filtered;         /* every alternative starts with a positive set of at least one char */
    size_t nalts;
    size_t *alt_start; /* nalts + 1 item indices */
    re_item *items;
    uint32_t *ranges;  /* lo, hi pairs */
};

enum { RE_MAX_ALTS = 64, RE_MAX_ITEMS = 64, RE_MAX_RANGES = 4096 };

void me_regex_free(me_regex *r) {
    if (!r) return;
    free(r->alt_start);
    free(r->items);
    free(r->ranges);
    free(r);
}

static int re_in(const me_regex *r, const re_item *x, uint32_t c);

int me_regex_new(const int32_t *prog, size_t n, me_regex **out, char *err) {
    *out = NULL;
    size_t p = 0, nitems = 0, nranges = 0;
    /* validate and count */
    if (n < 1 || prog[0] < 1 || prog[0] > RE_MAX_ALTS) return me_error(err, ME_ERR_VALUE, "Replace: malformed pattern program");
    size_t nalts = (size_t)prog[p++];
    for (size_t a = 0; a < nalts; a++) {
        if (p >= n || prog[p] < 1 || prog[p] > RE_MAX_ITEMS) return me_error(err, ME_ERR_VALUE, "Replace: malformed pattern program");
        size_t ni = (size_t)prog[p++];
        for (size_t i = 0; i < ni; i++) {
            if (p + 4 > n) return me_error(err, ME_ERR_VALUE, "Replace: malformed pattern program");
            int kind = prog[p] & ~ME_RE_SPACE_BIT;
            int32_t mn = prog[p + 1], mx = prog[p + 2], nr = prog[p + 3];
            if (kind < ME_RE_SET || kind > ME_RE_END || mn < 0 || (mx >= 0 && mx < mn) || mx < -1 || nr < 0 ||
                nr > RE_MAX_RANGES || (size_t)nr * 2 > n - p - 4)
                return me_error(err, ME_ERR_VALUE, "Replace: malformed pattern program");
            p += 4 + 2 * (size_t)nr;
            nitems++;
            nranges += (size_t)nr;
            if (nranges > RE_MAX_RANGES) return me_error(err, ME_ERR_VALUE, "Replace: pattern too large");
        }
    }
    if (p != n) return me_error(err, ME_ERR_VALUE, "Replace: malformed pattern program");
    me_regex *r = calloc(1, sizeof *r);
    if (!r) return me_error(err, ME_ERR_NOMEM, "out of memory compiling a Replace pattern");
    r->alt_start = malloc((nalts + 1) * sizeof *r->alt_start);
    r->items = malloc(nitems * sizeof *r->items);
    r->ranges = malloc((2 * nranges + 1) * sizeof *r->ranges);
    if (!r->alt_start || !r->items || !r->ranges) {
        me_regex_free(r);
        return me_error(err, ME_ERR_NOMEM, "out of memory compiling a Replace pattern");
    }
    r->nalts = nalts;
    p = 1;
    size_t it = 0, rg = 0;
    for (size_t a = 0; a < nalts; a++) {
        r->alt_start[a] = it;
        size_t ni = (size_t)prog[p++];
        for (size_t i = 0; i < ni; i++) {
            re_item *x = &r->items[it++];
            x->kind = prog[p];
            x->min = prog[p + 1];
            x->max = prog[p + 2];
            x->nr = (size_t)prog[p + 3];
            x->r0 = rg;
            for (size_t k = 0; k < 2 * x->nr; k++) r->ranges[rg++] = (uint32_t)prog[p + 4 + k];
            p += 4 + 2 * x->nr;
        }
    }
    r->alt_start[nalts] = it;
    /* first-char filter: only an alternative starting with a positive set that needs a char restricts it */
    r->filtered = 1;
    for (size_t a = 0; a < nalts; a++) {
        const re_item *x = &r->items[r->alt_start[a]];
        if (x->kind != ME_RE_SET || x->min < 1) {
            memset(r->start_ascii, 1, sizeof r->start_ascii);
            r->start_other = 1;
            r->filtered = 0;
            break;
        }
        for (uint32_t c = 0; c < 128; c++)
            if (re_in(r, x, c)) r->start_ascii[c] = 1;
        for (size_t k = 0; k < x->nr; k++)
            if (r->ranges[x->r0 + 2 * k + 1] >= 128) r->start_other = 1;
    }
    *out = r;
    return ME_OK;
}

static int re_in(const me_regex *r, const re_item *x, uint32_t c) {
    int in = (x->kind & ME_RE_SPACE_BIT) && (me_uflags(c) & ME_UF_RE_SPACE);
    for (size_t k = 0; !in && k < x->nr; k++) in = c >= r->ranges[x->r0 + 2 * k] && c <= r->ranges[x->r0 + 2 * k + 1];
    return (x->kind & ~ME_RE_SPACE_BIT) == ME_RE_NSET ? !in : in;
}

static int re_items(const me_regex *r, size_t k, size_t end_item, const uint32_t *c, size_t n, size_t p, size_t *me) {
    if (k == end_item) { *me = p; return 1; }
    const re_item *x = &r->items[k];
    int kind = x->kind & ~ME_RE_SPACE_BIT;
    if (kind == ME_RE_BEGIN) return p == 0 && re_items(r, k + 1, end_item, c, n, p, me);
    if (kind == ME_RE_END) return p == n && re_items(r, k + 1, end_item, c, n, p, me);
    size_t lim = n - p, m = 0;
    if (x->max >= 0 && (size_t)x->max < lim) lim = (size_t)x->max;
    while (m < lim && re_in(r, x, c[p + m])) m++;
    if (m < (size_t)x->min) return 0;
    for (size_t q = m + 1; q-- > (size_t)x->min;)
        if (re_items(r, k + 1, end_item, c, n, p + q, me)) return 1;
    return 0;
}

int me_regex_find(const me_regex *r, const uint32_t *c, size_t n, size_t from, size_t *ms, size_t *me) {
    for (size_t p = from; p <= n; p++) {
        if (p < n && !(c[p] < 128 ? r->start_ascii[c[p]] : r->start_other)) continue;
        if (p == n && r->filtered) break; /* every alternative needs a char */
        for (size_t a = 0; a < r->nalts; a++)
            if (re_items(r, r->alt_start[a], r->alt_start[a + 1], c, n, p, me)) {
                *ms = p;
                return 1;
            }
    }
    return 0;
}

/* NormalizedString::replace: each match is replaced by the content, whose chars all take the
 * alignment of the match's last char. */
static int replace(const me_norm_step *st, me_nstr *s, me_norm_ws *w) {
    size_t ms, me;
    if (!me_regex_find(st->re, s->c, s->n, 0, &ms, &me)) return ME_OK;
    me_nstr *o = &w->tmp;
    o->n = 0;
    size_t last = 0;
    for (;;) {
        size_t need = o->n + (ms - last) + st->ncontent;
        if (me_nstr_reserve(o, need)) return ME_ERR_NOMEM;
        memcpy(o->c + o->n, s->c + last, (ms - last) * sizeof *o->c);
        memcpy(o->a + o->n, s->a + last, (ms - last) * sizeof *o->a);
        memcpy(o->b + o->n, s->b + last, (ms - last) * sizeof *o->b);
        o->n += ms - last;
        for (size_t k = 0; k < st->ncontent; k++) {
            o->c[o->n] = st->content[k];
            o->a[o->n] = s->a[me - 1];
            o->b[o->n] = s->b[me - 1];
            o->n++;
        }
        last = me;
        /* patterns never match empty (checked when compiled in Python), so me > ms */
        if (me >= s->n || !me_regex_find(st->re, s->c, s->n, me, &ms, &me)) break;
    }
    if (me_nstr_reserve(o, o->n + (s->n - last) + 1)) return ME_ERR_NOMEM;
    memcpy(o->c + o->n, s->c + last, (s->n - last) * sizeof *o->c);
    memcpy(o->a + o->n, s->a + last, (s->n - last) * sizeof *o->a);
    memcpy(o->b + o->n, s->b + last, (s->n - last) * sizeof *o->b);
    o->n += s->n - last;
    me_nstr t = *s;
    *s = *o;
    *o = t;
    return ME_OK;
}

/* ------------------------------------------------------------------ Unicode normalization forms */

/* Decomposition as unicode-normalization-alignments: each char's decomposition (change 0 for its
 * first char, 1 for the others), then each run of non-starters stably sorted by combining class. */
static int decompose(const me_nstr *s, int compat, me_norm_ws *w) {
    w->dn = 0;
    uint32_t d[ME_NFKD_MAX];
    for (size_t i = 0; i < s->n; i++) {
        int k = compat ? me_unfkd_char(s->c[i], d) : me_unfd_char(s->c[i], d);
        for (int j = 0; j < k; j++) {
            if (dest_push(w, d[j], j > 0)) return ME_ERR_NOMEM;
            size_t pos = w->dn - 1;
            unsigned cc = me_uccc(d[j]);
            while (cc && pos > 0 && me_uccc(w->dc[pos - 1]) > cc) {
                uint32_t tc = w->dc[pos];
                w->dc[pos] = w->dc[pos - 1];
                w->dc[pos - 1] = tc;
                int32_t tg = w->dchg[pos];
                w->dchg[pos] = w->dchg[pos - 1];
                w->dchg[pos - 1] = tg;
                pos--;
            }
        }
    }
    return ME_OK;
}

static int rpush(me_norm_ws *w, uint32_t c, int32_t chg) {
    if (me_grow2((void **)&w->rc, sizeof *w->rc, (void **)&w->rchg, sizeof *w->rchg, &w->rcap, w->rn + 1))
        return ME_ERR_NOMEM;
    w->rc[w->rn] = c;
    w->rchg[w->rn++] = chg;
    return ME_OK;
}

/* unicode-normalization-alignments' Recompositions state machine over the decomposition in dc/dchg
 * (a composed pair's change is first + second - 1); the result replaces dc/dchg. */
static int recompose(me_norm_ws *w) {
    w->rn = 0;
    int has_k = 0, has_last = 0;
    uint32_t kc = 0;
    int32_t kg = 0;
    unsigned last_ccc = 0;
    me_nstr *bufs = &w->tmp; /* the blocked chars (and their changes, in .a) */
    bufs->n = 0;
    for (size_t i = 0; i < w->dn; i++) {
        uint32_t ch = w->dc[i];
        int32_t chg = w->dchg[i];
        unsigned cls = me_uccc(ch);
        if (!has_k) {
            if (cls != 0) {
                if (rpush(w, ch, chg)) return ME_ERR_NOMEM;
                continue;
            }
            has_k = 1;
            kc = ch;
            kg = chg;
            continue;
        }
        if (!has_last) {
            uint32_t r = me_ucompose(kc, ch);
            if (r) {
                kc = r;
                kg = kg + chg - 1;
                continue;
            }
            if (cls == 0) {
                if (rpush(w, kc, kg)) return ME_ERR_NOMEM;
                kc = ch;
                kg = chg;
                continue;
            }
        } else {
            if (last_ccc >= cls) {
                if (cls == 0) {
                    if (rpush(w, kc, kg)) return ME_ERR_NOMEM;
                    for (size_t q = 0; q < bufs->n; q++)
                        if (rpush(w, bufs->c[q], bufs->a[q])) return ME_ERR_NOMEM;
                    bufs->n = 0;
                    kc = ch;
                    kg = chg;
                    has_last = 0;
                    continue;
                }
                if (me_nstr_reserve(bufs, bufs->n + 1)) return ME_ERR_NOMEM;
                bufs->c[bufs->n] = ch;
                bufs->a[bufs->n++] = chg;
                last_ccc = cls;
                continue;
            }
            uint32_t r = me_ucompose(kc, ch);
            if (r) {
                kc = r;
                kg = kg + chg - 1;
                continue;
            }
        }
        if (me_nstr_reserve(bufs, bufs->n + 1)) return ME_ERR_NOMEM;
        bufs->c[bufs->n] = ch;
        bufs->a[bufs->n++] = chg;
        last_ccc = cls;
        has_last = 1;
    }
    if (has_k && rpush(w, kc, kg)) return ME_ERR_NOMEM;
    for (size_t q = 0; q < bufs->n; q++)
        if (rpush(w, bufs->c[q], bufs->a[q])) return ME_ERR_NOMEM;
    bufs->n = 0;
    /* swap rc/rchg into dc/dchg */
    uint32_t *tc = w->dc;
    w->dc = w->rc;
    w->rc = tc;
    int32_t *tg = w->dchg;
    w->dchg = w->rchg;
    w->rchg = tg;
    size_t cap = w->dcap;
    w->dcap = w->rcap;
    w->rcap = cap;
    w->dn = w->rn;
    return ME_OK;
}

/* ------------------------------------------------------------------ the steps */

void me_norm_step_free(me_norm_step *s) {
    me_charsmap_free(s->map);
    me_regex_free(s->re);
    free(s->content);
    memset(s, 0, sizeof *s);
}

int me_norm_apply(const me_norm_step *st, me_nstr *s, int32_t base, me_norm_ws *w) {
    int r;
    switch (st->kind) {
    case ME_NORM_PRECOMPILED:
        return precompiled(st->map, s, base, w);
    case ME_NORM_REPLACE:
        return replace(st, s, w);
    case ME_NORM_NFD:
    case ME_NORM_NFKD:
    case ME_NORM_NFC:
    case ME_NORM_NFKC: {
        /* below U+00A0 nothing decomposes, composes or reorders */
        size_t i = 0;
        while (i < s->n && s->c[i] < 0xA0) i++;
        if (i == s->n) return ME_OK;
        int compat = st->kind == ME_NORM_NFKD || st->kind == ME_NORM_NFKC;
        if ((r = decompose(s, compat, w))) return r;
        if ((st->kind == ME_NORM_NFC || st->kind == ME_NORM_NFKC) && (r = recompose(w))) return r;
        return transform(s, w, 0, base);
    }
    case ME_NORM_STRIP: {
        size_t lead = 0, trail = 0;
        if (st->left)
            while (lead < s->n && (me_uflags(s->c[lead]) & ME_UF_SPACE)) lead++;
        if (st->right)
            while (trail < s->n && (me_uflags(s->c[s->n - 1 - trail]) & ME_UF_SPACE)) trail++;
        if (!lead && !trail) return ME_OK;
        w->dn = 0;
        for (size_t i = lead; i + trail < s->n; i++)
            if (dest_push(w, s->c[i], 0)) return ME_ERR_NOMEM;
        return transform(s, w, lead, base);
    }
    case ME_NORM_STRIP_ACCENTS: {
        size_t i = 0;
        while (i < s->n && !(me_ugraph(s->c[i]) & ME_UG_MARK)) i++;
        if (i == s->n) return ME_OK;
        /* NormalizedString::filter: each kept char carries the removal of the chars after it */
        size_t removed = 0, removed_start = 0;
        int have_last = 0;
        uint32_t last = 0;
        w->dn = 0;
        for (size_t i = 0; i < s->n; i++) {
            if (me_ugraph(s->c[i]) & ME_UG_MARK) {
                removed++;
                continue;
            }
            if (have_last) {
                if (dest_push(w, last, -(int32_t)removed)) return ME_ERR_NOMEM;
            } else {
                removed_start = removed;
            }
            have_last = 1;
            last = s->c[i];
            removed = 0;
        }
        if (have_last && dest_push(w, last, -(int32_t)removed)) return ME_ERR_NOMEM;
        return transform(s, w, removed_start, base);
    }
    case ME_NORM_LOWERCASE: {
        uint32_t l[ME_ULOWER_MAX];
        size_t i = 0; /* chars that map to themselves alone keep their place */
        for (; i < s->n; i++) {
            if (s->c[i] < 128) {
                if (s->c[i] >= 'A' && s->c[i] <= 'Z') s->c[i] += 32;
                continue;
            }
            if (me_ulower(s->c[i], l) != 1) break;
            s->c[i] = l[0];
        }
        if (i == s->n) return ME_OK;
        w->dn = 0;
        for (size_t i = 0; i < s->n; i++) {
            int k = me_ulower(s->c[i], l);
            for (int j = 0; j < k; j++)
                if (dest_push(w, l[j], j > 0)) return ME_ERR_NOMEM;
        }
        return transform(s, w, 0, base);
    }
    default:
        return ME_ERR_VALUE;
    }
}
