/* Unigram model: a byte trie (edges in one open-addressing hash table) and tokenizers' optimized
 * Viterbi; see unigram.h. */
#include "tokenize/unigram.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "tokenize/normalizers.h"

#define UNK_PENALTY 10.0

struct me_unigram {
    uint64_t *ekey;    /* (parent node << 8 | byte) + 1; 0 = empty slot */
    int32_t *eval;     /* child node */
    size_t ecap;       /* power of two */
    int32_t root[256]; /* children of the root, -1 for none */
    int32_t *leaf;     /* node -> id of the piece ending there, or -1 */
    size_t nnodes, nodecap;
    double *score;     /* id -> score */
    const me_strmap *vocab;
    int32_t unk_id;
    int byte_fallback;
    int32_t byte_id[256];
    double unk_score;
};

static size_t edge_slot(uint64_t key, size_t cap) {
    uint64_t h = key * 0x9e3779b97f4a7c15ull;
    return (size_t)(h ^ (h >> 29)) & (cap - 1);
}

static int32_t child(const me_unigram *u, int32_t node, unsigned char c) {
    if (node == 0) return u->root[c];
    if (!u->ecap) return -1;
    uint64_t key = (((uint64_t)node << 8) | c) + 1;
    for (size_t j = edge_slot(key, u->ecap);; j = (j + 1) & (u->ecap - 1)) {
        if (u->ekey[j] == key) return u->eval[j];
        if (!u->ekey[j]) return -1;
    }
}

static int new_node(me_unigram *u, int32_t *out) {
    if (u->nnodes >= INT32_MAX) return ME_ERR_NOMEM;
    if (me_grow((void **)&u->leaf, &u->nodecap, u->nnodes + 1, sizeof *u->leaf)) return ME_ERR_NOMEM;
    u->leaf[u->nnodes] = -1;
    *out = (int32_t)u->nnodes++;
    return ME_OK;
}

static int add_edge(me_unigram *u, int32_t node, unsigned char c, int32_t *out) {
    if (node == 0) {
        if (u->root[c] < 0 && new_node(u, &u->root[c])) return ME_ERR_NOMEM;
        *out = u->root[c];
        return ME_OK;
    }
    size_t nedges = u->nnodes; /* upper bound: every node but the root has one parent edge */
    if ((nedges + 1) * 2 > u->ecap) {
        size_t ncap = u->ecap ? u->ecap * 2 : 1024;
        while ((nedges + 1) * 2 > ncap) ncap *= 2;
        uint64_t *nk = calloc(ncap, sizeof *nk);
        int32_t *nv = malloc(ncap * sizeof *nv);
        if (!nk || !nv) { free(nk); free(nv); return ME_ERR_NOMEM; }
        for (size_t i = 0; i < u->ecap; i++) {
            if (!u->ekey[i]) continue;
            size_t j = edge_slot(u->ekey[i], ncap);
            while (nk[j]) j = (j + 1) & (ncap - 1);
            nk[j] = u->ekey[i];
            nv[j] = u->eval[i];
        }
        free(u->ekey);
        free(u->eval);
        u->ekey = nk;
        u->eval = nv;
        u->ecap = ncap;
    }
    uint64_t key = (((uint64_t)node << 8) | c) + 1;
    size_t j = edge_slot(key, u->ecap);
    for (; u->ekey[j]; j = (j + 1) & (u->ecap - 1))
        if (u->ekey[j] == key) { *out = u->eval[j]; return ME_OK; }
    int32_t nn;
    if (new_node(u, &nn)) return ME_ERR_NOMEM;
    u->ekey[j] = key;
    u->eval[j] = nn;
    *out = nn;
    return ME_OK;
}

void me_unigram_free(me_unigram *u) {
    if (!u) return;
    free(u->ekey);
    free(u->eval);
    free(u->leaf);
    free(u->score);
    free(u);
}

int me_unigram_new(const char *const *pieces, const uint32_t *lens, const double *scores, size_t n,
                   const me_strmap *vocab, int32_t unk_id, int byte_fallback, me_unigram **out, char *err) {
    *out = NULL;
    if (unk_id >= 0 && n == 0) return me_error(err, ME_ERR_VALUE, "Unigram: the vocabulary is empty but at least <unk> is needed");
    if (unk_id >= 0 && (size_t)unk_id >= n)
        return me_error(err, ME_ERR_VALUE, "Unigram: unk_id %d is not below the vocabulary size %zu", (int)unk_id, n);
    me_unigram *u = calloc(1, sizeof *u);
    if (!u) return me_error(err, ME_ERR_NOMEM, "out of memory building the Unigram model");
    for (int c = 0; c < 256; c++) u->root[c] = -1;
    u->score = malloc((n ? n : 1) * sizeof *u->score);
    int32_t root;
    if (!u->score || new_node(u, &root)) goto nomem;
    u->vocab = vocab;
    u->unk_id = unk_id;
    u->byte_fallback = byte_fallback;
    double min_score = INFINITY;
    for (size_t i = 0; i < n; i++) {
        u->score[i] = scores[i];
        if (scores[i] < min_score) min_score = scores[i];
        int32_t node = 0;
        for (uint32_t k = 0; k < lens[i]; k++)
            if (add_edge(u, node, (unsigned char)pieces[i][k], &node)) goto nomem;
        if (node != 0) u->leaf[node] = me_strmap_get(vocab, pieces[i], lens[i]);
    }
    u->unk_score = min_score - UNK_PENALTY;
    for (int b = 0; b < 256; b++) {
        char name[8];
        snprintf(name, sizeof name, "<0x%02X>", b);
        u->byte_id[b] = me_strmap_get(vocab, name, 6);
    }
    *out = u;
    return ME_OK;
nomem:
    me_unigram_free(u);
    return me_error(err, ME_ERR_NOMEM, "out of memory building the Unigram model");
}

void me_ug_ws_free(me_ug_ws *w) {
    free(w->score);
    free(w->from);
    free(w->id);
    free(w->tok);
    memset(w, 0, sizeof *w);
}

static int tok_push(me_ug_ws *w, int32_t id, size_t start, size_t end, int own) {
    if (me_grow((void **)&w->tok, &w->tokcap, w->ntok + 1, sizeof *w->tok)) return ME_ERR_NOMEM;
    w->tok[w->ntok++] = (me_ug_tok){id, (uint32_t)start, (uint32_t)end, own};
    return ME_OK;
}

/* A piece string -> tokens, as Model::tokenize: its id, else its bytes as <0xNN> pieces (all of
 * them must exist), else the unk id. */
static int emit_piece(const me_unigram *u, me_ug_ws *w, const char *s, size_t a, size_t b, char *err) {
    int32_t id = me_strmap_get(u->vocab, s + a, b - a);
    if (id >= 0) return tok_push(w, id, a, b, 0);
    if (u->byte_fallback) {
        size_t k = a;
        while (k < b && u->byte_id[(unsigned char)s[k]] >= 0) k++;
        if (k == b) {
            for (k = a; k < b; k++)
                if (tok_push(w, u->byte_id[(unsigned char)s[k]], a, b, 0)) return ME_ERR_NOMEM;
            return ME_OK;
        }
    }
    if (u->unk_id < 0) return me_error(err, ME_ERR_VALUE, "Encountered an unknown token but `unk_id` is missing");
    return tok_push(w, u->unk_id, a, b, 1);
}

int me_unigram_encode(const me_unigram *u, const char *s, size_t n, me_ug_ws *w, char *err) {
    w->ntok = 0;
    if (!n) return ME_OK;
    if (n >= UINT32_MAX) return me_error(err, ME_ERR_VALUE, "pre-token too long");
    if (n + 1 > w->cap) {
        size_t cap = w->cap;
        if (me_grow((void **)&w->score, &cap, n + 1, sizeof *w->score)) return ME_ERR_NOMEM;
        cap = w->cap;
        if (me_grow((void **)&w->from, &cap, n + 1, sizeof *w->from)) return ME_ERR_NOMEM;
        cap = w->cap;
        if (me_grow((void **)&w->id, &cap, n + 1, sizeof *w->id)) return ME_ERR_NOMEM;
        w->cap = cap;
    }
    for (size_t i = 0; i <= n; i++) {
        w->score[i] = 0.0;
        w->from[i] = -1;
    }
    const unsigned char *us = (const unsigned char *)s;
    for (size_t p = 0; p < n;) {
        unsigned c0 = us[p];
        size_t mblen = c0 < 0x80 ? 1 : c0 < 0xE0 ? 2 : c0 < 0xF0 ? 3 : 4;
        if (p + mblen > n) mblen = n - p;
        double base = w->score[p];
        int single = 0;
        int32_t node = 0;
        for (size_t q = p; q < n; q++) {
            node = child(u, node, us[q]);
            if (node < 0) break;
            int32_t id = u->leaf[node];
            if (id < 0) continue;
            size_t end = q + 1;
            double cand = u->score[id] + base;
            if (w->from[end] < 0 || cand > w->score[end]) {
                w->score[end] = cand;
                w->from[end] = (int32_t)p;
                w->id[end] = id;
            }
            if (end - p == mblen) single = 1;
        }
        if (!single) {
            size_t end = p + mblen;
            double cand = u->unk_score + base;
            if (w->from[end] < 0 || cand > w->score[end]) {
                if (u->unk_id < 0)
                    return me_error(err, ME_ERR_VALUE, "Encountered an unknown token but `unk_id` is missing");
                w->score[end] = cand;
                w->from[end] = (int32_t)p;
                w->id[end] = u->unk_id;
            }
        }
        p += mblen;
    }
    /* backtrack: pieces right to left (reversed below), consecutive unk-id nodes fused (id -1: their
     * string decides, as in Model::tokenize) */
    size_t end = n, fuse_end = 0;
    int fusing = 0;
    while (end > 0) {
        if (w->from[end] < 0) return me_error(err, ME_ERR_RUNTIME, "Unigram: no path through the lattice");
        size_t start = (size_t)w->from[end];
        if (u->unk_id >= 0 && w->id[end] == u->unk_id) {
            if (!fusing) { fusing = 1; fuse_end = end; }
        } else {
            if (fusing) {
                if (tok_push(w, -1, end, fuse_end, 0)) return ME_ERR_NOMEM;
                fusing = 0;
            }
            /* a piece the trie matched: its string is a vocabulary key, its id the key's id */
            if (tok_push(w, w->id[end], start, end, 0)) return ME_ERR_NOMEM;
        }
        end = start;
    }
    if (fusing && tok_push(w, -1, 0, fuse_end, 0)) return ME_ERR_NOMEM;
    /* the pieces now lie reversed in tok[0..m): turn them into tokens, appended after them */
    size_t m = w->ntok;
    for (size_t k = m; k-- > 0;) {
        me_ug_tok p = w->tok[k];
        int st = p.id >= 0 ? tok_push(w, p.id, p.start, p.end, 0) : emit_piece(u, w, s, p.start, p.end, err);
        if (st) return st;
    }
    memmove(w->tok, w->tok + m, (w->ntok - m) * sizeof *w->tok);
    w->ntok -= m;
    return ME_OK;
}
