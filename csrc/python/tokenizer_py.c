/* Python binding of the C tokenizers: multienc.engine._C.Tokenizer (used by multienc/engine/tokenization.py). */
#include "python/bindings.h"

#include <pythread.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "tokenize/tokenizer.h"

typedef struct {
    PyObject_HEAD
    me_tok *tok;
    me_ws **ws;  /* one per thread; ws[0] also serves encode() */
    int nws;
    me_enc single;           /* encode()'s result buffer */
    PyThread_type_lock lock; /* guards ws and single (taken with the GIL released) */
} TokenizerObject;

/* ------------------------------------------------------------------ input conversion */

typedef struct {
    uint32_t *cp;
    size_t n, cap;
    size_t *ws; /* word starts */
    size_t nws, capws;
} textbuf;

static int tb_grow_cp(textbuf *b, size_t extra) {
    if (b->n + extra <= b->cap) return 0;
    size_t c = b->cap ? b->cap : 4096;
    while (c < b->n + extra) c *= 2;
    uint32_t *p = realloc(b->cp, c * sizeof *p);
    if (!p) { PyErr_NoMemory(); return -1; }
    b->cp = p;
    b->cap = c;
    return 0;
}

static int tb_push_ws(textbuf *b, size_t v) {
    if (b->nws == b->capws) {
        size_t c = b->capws ? b->capws * 2 : 256;
        size_t *p = realloc(b->ws, c * sizeof *p);
        if (!p) { PyErr_NoMemory(); return -1; }
        b->ws = p;
        b->capws = c;
    }
    b->ws[b->nws++] = v;
    return 0;
}

static void tb_free(textbuf *b) {
    free(b->cp);
    free(b->ws);
}

/* Names an input in error messages; formatted only when an error is raised. */
typedef struct {
    const char *label;  /* "input" (batch), "text", "pair", "added token" */
    Py_ssize_t index;   /* batch index, or -1 */
    int part;           /* 0, or 1 / 2 for the first / second of a pair */
    Py_ssize_t word;    /* word index, or -1 */
} where_t;

static void where_str(const where_t *w, char *buf, size_t size) {
    int k = w->index >= 0 ? snprintf(buf, size, "%s %zd", w->label, w->index) : snprintf(buf, size, "%s", w->label);
    if (k < 0 || (size_t)k >= size) return;
    if (w->part) k += snprintf(buf + k, size - (size_t)k, ", %s of pair", w->part == 1 ? "first" : "second");
    if (k >= 0 && (size_t)k < size && w->word >= 0) snprintf(buf + k, size - (size_t)k, ", word %zd", w->word);
}

/* Append the code points of str s; `wh` names the input for error messages. */
static int tb_append_str(textbuf *b, PyObject *s, const where_t *wh) {
    char where[128];
    if (!PyUnicode_Check(s)) {
        where_str(wh, where, sizeof where);
        PyErr_Format(PyExc_TypeError, "%s: expected str, got %s", where, s == Py_None ? "None" : Py_TYPE(s)->tp_name);
        return -1;
    }
    Py_ssize_t n = PyUnicode_GET_LENGTH(s);
    if ((size_t)n > (size_t)INT32_MAX - 1) {
        where_str(wh, where, sizeof where);
        PyErr_Format(PyExc_ValueError, "%s: str of %zd characters is too long to tokenize (limit 2**31 - 2)", where, n);
        return -1;
    }
    if (tb_grow_cp(b, (size_t)n) < 0) return -1;
    int kind = PyUnicode_KIND(s);
    const void *data = PyUnicode_DATA(s);
    uint32_t *o = b->cp + b->n;
    if (kind == PyUnicode_1BYTE_KIND) {
        const Py_UCS1 *d = data;
        for (Py_ssize_t i = 0; i < n; i++) o[i] = d[i];
    } else {
        for (Py_ssize_t i = 0; i < n; i++) {
            Py_UCS4 c = PyUnicode_READ(kind, data, i);
            if (c >= 0xD800 && c <= 0xDFFF) {
                char cp[16];
                snprintf(cp, sizeof cp, "U+%04X", (unsigned)c);
                where_str(wh, where, sizeof where);
                PyErr_Format(PyExc_TypeError,
                             "%s: str contains a lone surrogate %s at position %zd, which is not valid "
                             "Unicode text (HF tokenizers rejects such strings too); clean it first, e.g. "
                             "s.encode('utf-8', 'replace').decode('utf-8')",
                             where, cp, i);
                return -1;
            }
            o[i] = c;
        }
    }
    b->n += (size_t)n;
    return 0;
}

/* One sequence as offsets into a textbuf (pointers are fixed once the buffer stops moving). */
typedef struct {
    size_t start, len;
    size_t ws_start; /* index into textbuf.ws of the first word start, or SIZE_MAX */
    size_t nwords;
} seqref;

static int tb_add_seq(textbuf *b, PyObject *obj, int words, where_t wh, seqref *r) {
    r->start = b->n;
    r->ws_start = SIZE_MAX;
    r->nwords = 0;
    if (!words) {
        if (tb_append_str(b, obj, &wh) < 0) return -1;
    } else {
        if (!PyList_Check(obj) && !PyTuple_Check(obj)) {
            char where[128];
            where_str(&wh, where, sizeof where);
            PyErr_Format(PyExc_TypeError, "%s: with is_split_into_words=True expected a list of str, got %s", where,
                         obj == Py_None ? "None" : Py_TYPE(obj)->tp_name);
            return -1;
        }
        Py_ssize_t nw = PySequence_Fast_GET_SIZE(obj);
        r->ws_start = b->nws;
        for (Py_ssize_t i = 0; i < nw; i++) {
            wh.word = i;
            if (tb_push_ws(b, b->n - r->start) < 0 || tb_append_str(b, PySequence_Fast_GET_ITEM(obj, i), &wh) < 0)
                return -1;
        }
        if (tb_push_ws(b, b->n - r->start) < 0) return -1;
        r->nwords = (size_t)nw;
    }
    r->len = b->n - r->start;
    return 0;
}

static me_seq seq_of(const textbuf *b, const seqref *r) {
    me_seq s = {b->cp ? b->cp + r->start : NULL, r->len, NULL, 0};
    if (r->ws_start != SIZE_MAX) {
        s.word_start = b->ws + r->ws_start;
        s.nwords = r->nwords;
    }
    return s;
}

static int is_seq(PyObject *o) { return PyList_Check(o) || PyTuple_Check(o); }

/* Parse one batch item: text, (text, text), words, or (words, words). Returns 1 for a pair. */
static int parse_item(textbuf *b, PyObject *item, int words, Py_ssize_t index, seqref *ra, seqref *rb) {
    where_t wh = {"input", index, 0, -1};
    int pair;
    if (!words) pair = is_seq(item);
    else pair = is_seq(item) && PySequence_Fast_GET_SIZE(item) == 2 && is_seq(PySequence_Fast_GET_ITEM(item, 0)) &&
                is_seq(PySequence_Fast_GET_ITEM(item, 1));
    if (!pair) return tb_add_seq(b, item, words, wh, ra) < 0 ? -1 : 0;
    if (PySequence_Fast_GET_SIZE(item) != 2) {
        PyErr_Format(PyExc_TypeError, "input %zd: expected a str or a pair (text, text_pair), got a %s of length %zd",
                     index, Py_TYPE(item)->tp_name, PySequence_Fast_GET_SIZE(item));
        return -1;
    }
    where_t wa = {"input", index, 1, -1}, wb = {"input", index, 2, -1};
    if (tb_add_seq(b, PySequence_Fast_GET_ITEM(item, 0), words, wa, ra) < 0 ||
        tb_add_seq(b, PySequence_Fast_GET_ITEM(item, 1), words, wb, rb) < 0)
        return -1;
    return 1;
}

/* ------------------------------------------------------------------ construction */

static int opt_int(PyObject *d, const char *key, int *out) {
    return me_cfg_int(d, "tokenizer options", key, 1, 0, out);
}

static void tok_dealloc(TokenizerObject *self) {
    me_tok_free(self->tok);
    me_enc_free(&self->single);
    if (self->ws)
        for (int i = 0; i < self->nws; i++) me_ws_free(self->ws[i]);
    free(self->ws);
    if (self->lock) PyThread_free_lock(self->lock);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int raise_status(int st, const char *err) {
    me_raise(st, err);
    return -1;
}

static int build_template(me_tok *t, int pair, PyObject *items) {
    PyObject *fast = PySequence_Fast(items, "template must be a sequence of (what, type_id[, token])");
    if (!fast) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    me_tmpl_item *v = malloc((size_t)(n ? n : 1) * sizeof *v);
    if (!v) { Py_DECREF(fast); PyErr_NoMemory(); return -1; }
    for (Py_ssize_t i = 0; i < n; i++) {
        int what, type_id;
        const char *str = NULL;
        Py_ssize_t len = 0;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(fast, i), "ii|z#", &what, &type_id, &str, &len)) {
            free(v);
            Py_DECREF(fast);
            return -1;
        }
        v[i] = (me_tmpl_item){what, type_id, str, (size_t)len};
    }
    Py_DECREF(fast);
    char err[ME_ERRLEN];
    int st = me_tok_set_template(t, pair, v, (size_t)n, err);
    free(v);
    return st ? raise_status(st, err) : 0;
}

/* Normalizers: (kind, left, right, charsmap bytes | None, pattern program list[int] | None,
 * content str | None) each, in order. */
static int add_normalizers(me_tok *t, PyObject *list) {
    PyObject *fast = PySequence_Fast(list, "normalizers must be a sequence of tuples");
    if (!fast) return -1;
    int rc = 0;
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(fast) && !rc; i++) {
        me_norm_def d;
        memset(&d, 0, sizeof d);
        PyObject *blob, *prog, *content;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(fast, i), "iiiOOO", &d.kind, &d.left, &d.right, &blob, &prog,
                              &content)) { rc = -1; break; }
        char *bp = NULL;
        Py_ssize_t bl = 0;
        if (blob != Py_None && PyBytes_AsStringAndSize(blob, &bp, &bl) < 0) { rc = -1; break; }
        d.blob = (const uint8_t *)bp;
        d.blob_len = (size_t)bl;
        int32_t *pv = NULL;
        textbuf tb = {0};
        if (prog != Py_None) {
            PyObject *pf = PySequence_Fast(prog, "pattern program must be a sequence of int");
            if (!pf) { rc = -1; break; }
            Py_ssize_t np = PySequence_Fast_GET_SIZE(pf);
            pv = malloc((size_t)(np ? np : 1) * sizeof *pv);
            if (!pv) { Py_DECREF(pf); PyErr_NoMemory(); rc = -1; break; }
            for (Py_ssize_t k = 0; k < np && !rc; k++) {
                long v = PyLong_AsLong(PySequence_Fast_GET_ITEM(pf, k));
                if (v == -1 && PyErr_Occurred()) rc = -1;
                else if (v < INT32_MIN || v > INT32_MAX) { PyErr_SetString(PyExc_ValueError, "pattern word out of range"); rc = -1; }
                else pv[k] = (int32_t)v;
            }
            Py_DECREF(pf);
            d.prog = pv;
            d.nprog = (size_t)np;
        }
        where_t wh = {"normalizer content", -1, 0, -1};
        if (!rc && content != Py_None && tb_append_str(&tb, content, &wh) < 0) rc = -1;
        d.content = tb.cp;
        d.ncontent = tb.n;
        char err[ME_ERRLEN];
        int st;
        if (!rc && (st = me_tok_add_normalizer(t, &d, err))) rc = raise_status(st, err);
        free(pv);
        tb_free(&tb);
    }
    Py_DECREF(fast);
    return rc;
}

/* Pre-tokenizers: (kind, replacement str of one char, prepend scheme, split, behavior) each. */
static int add_pretokenizers(me_tok *t, PyObject *list) {
    PyObject *fast = PySequence_Fast(list, "pre_tokenizers must be a sequence of tuples");
    if (!fast) return -1;
    int rc = 0;
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(fast) && !rc; i++) {
        int kind, scheme, split, behavior;
        PyObject *repl;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(fast, i), "iUiii", &kind, &repl, &scheme, &split, &behavior)) {
            rc = -1;
            break;
        }
        if (PyUnicode_GET_LENGTH(repl) != 1) {
            PyErr_SetString(PyExc_ValueError, "pre-tokenizer replacement must be one character");
            rc = -1;
            break;
        }
        char err[ME_ERRLEN];
        int st = me_tok_add_pretokenizer(t, kind, (uint32_t)PyUnicode_READ_CHAR(repl, 0), scheme, split, behavior, err);
        if (st) rc = raise_status(st, err);
    }
    Py_DECREF(fast);
    return rc;
}

static int set_unigram(me_tok *t, PyObject *scores, int byte_fallback) {
    PyObject *fast = PySequence_Fast(scores, "scores must be a sequence of float");
    if (!fast) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    double *v = malloc((size_t)(n ? n : 1) * sizeof *v);
    if (!v) { Py_DECREF(fast); PyErr_NoMemory(); return -1; }
    int rc = 0;
    for (Py_ssize_t i = 0; i < n && !rc; i++) {
        v[i] = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(fast, i));
        if (v[i] == -1.0 && PyErr_Occurred()) rc = -1;
    }
    Py_DECREF(fast);
    char err[ME_ERRLEN];
    int st;
    if (!rc && (st = me_tok_set_unigram(t, v, (size_t)n, byte_fallback, err))) rc = raise_status(st, err);
    free(v);
    return rc;
}

/* Tokenizer(options: dict, vocab: list[(str, int)], merges: list[(str, str)],
 *           added: list[(str, int, int flags)], single: list[(int, int)], pair: list[(int, int)]
 *           [, scores: list[float] | None, normalizers: list, pre_tokenizers: list]) */
static int tok_init(TokenizerObject *self, PyObject *args, PyObject *kwds) {
    PyObject *opts, *vocab, *merges, *added, *single, *pair, *scores = Py_None, *norms = Py_None, *pres = Py_None;
    if (!PyArg_ParseTuple(args, "O!OOOOO|OOO", &PyDict_Type, &opts, &vocab, &merges, &added, &single, &pair, &scores,
                          &norms, &pres))
        return -1;
    if (self->tok) {
        PyErr_SetString(PyExc_RuntimeError, "Tokenizer is already initialized");
        return -1;
    }
    me_tok_options o;
    memset(&o, 0, sizeof o);
    int unk;
    if (opt_int(opts, "model", &o.model) || opt_int(opts, "bert_normalizer", &o.bert_normalizer) ||
        opt_int(opts, "clean_text", &o.clean_text) || opt_int(opts, "handle_chinese_chars", &o.handle_chinese_chars) ||
        opt_int(opts, "strip_accents", &o.strip_accents) || opt_int(opts, "lowercase", &o.lowercase) ||
        opt_int(opts, "pre_tokenizer", &o.pre_tokenizer) || opt_int(opts, "add_prefix_space", &o.add_prefix_space) ||
        opt_int(opts, "use_regex", &o.use_regex) || opt_int(opts, "post", &o.post) ||
        opt_int(opts, "trim_offsets", &o.trim_offsets) || opt_int(opts, "post_add_prefix_space", &o.post_add_prefix_space) ||
        opt_int(opts, "unk_id", &unk) || opt_int(opts, "max_input_chars_per_word", &o.max_input_chars_per_word) ||
        me_cfg_int(opts, "tokenizer options", "python_truncation", 0, 0, &o.python_truncation))
        return -1;
    o.unk_id = unk;
    char err[ME_ERRLEN];
    int st = me_tok_new(&o, &self->tok, err);
    if (st) return raise_status(st, err);

    PyObject *it = PyObject_GetIter(vocab);
    if (!it) return -1;
    PyObject *item;
    while ((item = PyIter_Next(it))) {
        const char *s;
        Py_ssize_t len;
        int id;
        int ok = PyArg_ParseTuple(item, "s#i", &s, &len, &id);
        Py_DECREF(item);
        if (!ok) { Py_DECREF(it); return -1; }
        if ((st = me_tok_add_vocab(self->tok, s, (size_t)len, id, err))) { Py_DECREF(it); return raise_status(st, err); }
    }
    Py_DECREF(it);
    if (PyErr_Occurred()) return -1;
    if (o.model == ME_TOK_UNIGRAM) {
        int byte_fallback;
        if (opt_int(opts, "byte_fallback", &byte_fallback) || set_unigram(self->tok, scores, byte_fallback) < 0)
            return -1;
    }
    if ((norms != Py_None && add_normalizers(self->tok, norms) < 0) ||
        (pres != Py_None && add_pretokenizers(self->tok, pres) < 0))
        return -1;

    it = PyObject_GetIter(merges);
    if (!it) return -1;
    while ((item = PyIter_Next(it))) {
        const char *a, *b;
        Py_ssize_t la, lb;
        int ok = PyArg_ParseTuple(item, "s#s#", &a, &la, &b, &lb);
        Py_DECREF(item);
        if (!ok) { Py_DECREF(it); return -1; }
        if ((st = me_tok_add_merge(self->tok, a, (size_t)la, b, (size_t)lb, err))) { Py_DECREF(it); return raise_status(st, err); }
    }
    Py_DECREF(it);
    if (PyErr_Occurred()) return -1;

    it = PyObject_GetIter(added);
    if (!it) return -1;
    while ((item = PyIter_Next(it))) {
        PyObject *content;
        int id, flags;
        int ok = PyArg_ParseTuple(item, "Uii", &content, &id, &flags);
        textbuf tb = {0};
        Py_ssize_t nbytes = 0;
        const char *utf8 = ok ? PyUnicode_AsUTF8AndSize(content, &nbytes) : NULL;
        where_t wh = {"added token", -1, 0, -1};
        ok = ok && utf8 && tb_append_str(&tb, content, &wh) == 0;
        if (ok && (st = me_tok_add_added(self->tok, tb.cp, tb.n, utf8, (size_t)nbytes, id, flags, err))) {
            raise_status(st, err);
            ok = 0;
        }
        tb_free(&tb);
        Py_DECREF(item);
        if (!ok) { Py_DECREF(it); return -1; }
    }
    Py_DECREF(it);
    if (PyErr_Occurred()) return -1;

    if (o.post == ME_POST_TEMPLATE && (build_template(self->tok, 0, single) < 0 || build_template(self->tok, 1, pair) < 0))
        return -1;
    if ((st = me_tok_finalize(self->tok, err))) return raise_status(st, err);

    self->nws = me_max_threads();
    if (self->nws < 1) self->nws = 1;
    self->ws = calloc((size_t)self->nws, sizeof *self->ws);
    if (!self->ws) { PyErr_NoMemory(); return -1; }
    for (int i = 0; i < self->nws; i++)
        if (!(self->ws[i] = me_ws_new())) { PyErr_NoMemory(); return -1; }
    self->lock = PyThread_allocate_lock();
    if (!self->lock) { PyErr_SetString(PyExc_RuntimeError, "cannot allocate a lock"); return -1; }
    return 0;
}

static int check_ready(TokenizerObject *self) {
    if (!self->tok || !self->lock) {
        PyErr_SetString(PyExc_RuntimeError, "Tokenizer is not initialized");
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------ encode */

/* ------------------------------------------------------------------ Encoding */

/* One encoding, returned by encode(): the arrays are copied from the C encoding and turned into
 * lists on attribute access (like HF's Encoding), so holding many encodings costs no GC work. */
typedef struct {
    PyObject_HEAD
    TokenizerObject *owner; /* for token strings */
    size_t n;
    int32_t *v; /* ids, type ids, word ids, sequence ids, special mask, sref (n each), offsets (2n) */
    char *sbuf; /* strings of added tokens found in the text (me_enc.sbuf) */
} EncodingObject;

enum { EV_IDS, EV_TYPES, EV_WORDS, EV_SEQS, EV_SPECIAL, EV_SREF, EV_OFFSETS };

static void encoding_dealloc(EncodingObject *self) {
    Py_XDECREF(self->owner);
    free(self->v);
    free(self->sbuf);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *ev_list(EncodingObject *self, int which, int none_if_negative) {
    PyObject *l = PyList_New((Py_ssize_t)self->n);
    if (!l) return NULL;
    const int32_t *v = self->v + (size_t)which * self->n;
    for (size_t i = 0; i < self->n; i++) {
        PyObject *o;
        if (none_if_negative && v[i] < 0) {
            o = Py_None;
            Py_INCREF(o);
        } else if (!(o = PyLong_FromLong(v[i]))) {
            Py_DECREF(l);
            return NULL;
        }
        PyList_SET_ITEM(l, (Py_ssize_t)i, o);
    }
    return l;
}

static PyObject *enc_ids(EncodingObject *self, void *c) { return ev_list(self, EV_IDS, 0); }
static PyObject *enc_type_ids(EncodingObject *self, void *c) { return ev_list(self, EV_TYPES, 0); }
static PyObject *enc_word_ids(EncodingObject *self, void *c) { return ev_list(self, EV_WORDS, 1); }
static PyObject *enc_sequence_ids(EncodingObject *self, void *c) { return ev_list(self, EV_SEQS, 1); }
static PyObject *enc_special(EncodingObject *self, void *c) { return ev_list(self, EV_SPECIAL, 0); }

static PyObject *enc_attention(EncodingObject *self, void *c) {
    PyObject *l = PyList_New((Py_ssize_t)self->n);
    if (!l) return NULL;
    for (size_t i = 0; i < self->n; i++) {
        PyObject *one = PyLong_FromLong(1);
        if (!one) { Py_DECREF(l); return NULL; }
        PyList_SET_ITEM(l, (Py_ssize_t)i, one);
    }
    return l;
}

static PyObject *enc_offsets(EncodingObject *self, void *c) {
    PyObject *l = PyList_New((Py_ssize_t)self->n);
    if (!l) return NULL;
    const int32_t *o = self->v + (size_t)EV_OFFSETS * self->n;
    for (size_t i = 0; i < self->n; i++) {
        PyObject *t = Py_BuildValue("(ii)", (int)o[2 * i], (int)o[2 * i + 1]);
        if (!t) { Py_DECREF(l); return NULL; }
        PyList_SET_ITEM(l, (Py_ssize_t)i, t);
    }
    return l;
}

static PyObject *enc_tokens(EncodingObject *self, void *c) {
    PyObject *l = PyList_New((Py_ssize_t)self->n);
    if (!l) return NULL;
    const int32_t *ids = self->v, *sref = self->v + (size_t)EV_SREF * self->n;
    for (size_t i = 0; i < self->n; i++) {
        size_t len = 0;
        const char *s;
        if (sref[i] >= 0) {
            uint32_t l32;
            memcpy(&l32, self->sbuf + sref[i], 4);
            len = l32;
            s = self->sbuf + sref[i] + 4;
        } else {
            s = me_tok_id_to_token(self->owner->tok, ids[i], &len);
        }
        PyObject *t = s ? PyUnicode_DecodeUTF8(s, (Py_ssize_t)len, "replace") : PyUnicode_FromString("");
        if (!t) { Py_DECREF(l); return NULL; }
        PyList_SET_ITEM(l, (Py_ssize_t)i, t);
    }
    return l;
}

static Py_ssize_t enc_len(EncodingObject *self) { return (Py_ssize_t)self->n; }

static PyObject *enc_repr(EncodingObject *self) {
    return PyUnicode_FromFormat("Encoding(num_tokens=%zu, attributes=[ids, type_ids, tokens, offsets, attention_mask, "
                                "special_tokens_mask, word_ids, sequence_ids])", self->n);
}

static PyGetSetDef enc_getset[] = {
    {"ids", (getter)enc_ids, NULL, "Token ids.", NULL},
    {"type_ids", (getter)enc_type_ids, NULL, "Token type (segment) ids.", NULL},
    {"tokens", (getter)enc_tokens, NULL, "Token strings.", NULL},
    {"offsets", (getter)enc_offsets, NULL, "(start, end) code-point offsets; (0, 0) for special tokens.", NULL},
    {"word_ids", (getter)enc_word_ids, NULL, "Word index of each token; None for special tokens.", NULL},
    {"sequence_ids", (getter)enc_sequence_ids, NULL, "0 / 1 for the first / second sequence; None for specials.", NULL},
    {"special_tokens_mask", (getter)enc_special, NULL, "1 for special tokens added by the template.", NULL},
    {"attention_mask", (getter)enc_attention, NULL, "1 for every token (no padding in a single encoding).", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PySequenceMethods enc_as_sequence = {.sq_length = (lenfunc)enc_len};

static PyTypeObject EncodingType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "multienc.engine._C.Encoding",
    .tp_basicsize = sizeof(EncodingObject),
    .tp_dealloc = (destructor)encoding_dealloc,
    .tp_repr = (reprfunc)enc_repr,
    .tp_as_sequence = &enc_as_sequence,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "One encoded input, with the list attributes of HF tokenizers.Encoding.\n\n"
              "ids, type_ids, tokens, offsets, word_ids, sequence_ids, special_tokens_mask, attention_mask:\n"
              "lists with one entry per token, built on access; len(enc) is the token count. offsets are\n"
              "(start, end) code-point offsets into the input str (for pairs: into the token's own\n"
              "sequence; for pre-split words: into the token's word); special tokens have (0, 0) and\n"
              "word/sequence id None. An added token found in the text has the matched text as token.",
    .tp_getset = enc_getset,
};

static PyObject *encoding_new(TokenizerObject *owner, const me_enc *e) {
    EncodingObject *o = PyObject_New(EncodingObject, &EncodingType);
    if (!o) return NULL;
    o->owner = NULL;
    o->sbuf = NULL;
    o->n = e->n;
    o->v = malloc((e->n ? 8 * e->n : 1) * sizeof *o->v);
    if (!o->v || (e->slen && !(o->sbuf = malloc(e->slen)))) {
        Py_DECREF(o);
        return PyErr_NoMemory();
    }
    size_t n = e->n;
    if (n) {
        memcpy(o->v + EV_IDS * n, e->ids, n * sizeof(int32_t));
        memcpy(o->v + EV_TYPES * n, e->type_ids, n * sizeof(int32_t));
        memcpy(o->v + EV_WORDS * n, e->word_ids, n * sizeof(int32_t));
        memcpy(o->v + EV_SEQS * n, e->seq_ids, n * sizeof(int32_t));
        memcpy(o->v + EV_SREF * n, e->sref, n * sizeof(int32_t));
        memcpy(o->v + EV_OFFSETS * n, e->offsets, 2 * n * sizeof(int32_t));
        for (size_t i = 0; i < n; i++) o->v[EV_SPECIAL * n + i] = e->special[i];
    }
    if (e->slen) memcpy(o->sbuf, e->sbuf, e->slen);
    Py_INCREF(owner);
    o->owner = owner;
    return (PyObject *)o;
}

/* encode(text, pair, add_special_tokens, max_length, is_split_into_words) -> Encoding */
static PyObject *tok_encode(TokenizerObject *self, PyObject *args) {
    PyObject *text, *pair;
    int add_special, words;
    long max_length;
    if (!PyArg_ParseTuple(args, "OOpli", &text, &pair, &add_special, &max_length, &words)) return NULL;
    if (check_ready(self) < 0) return NULL;
    textbuf tb = {0};
    seqref ra, rb;
    where_t wt = {"text", -1, 0, -1}, wp = {"pair", -1, 0, -1};
    if (tb_add_seq(&tb, text, words, wt, &ra) < 0 || (pair != Py_None && tb_add_seq(&tb, pair, words, wp, &rb) < 0)) {
        tb_free(&tb);
        return NULL;
    }
    me_seq sa = seq_of(&tb, &ra), sb = {0};
    if (pair != Py_None) sb = seq_of(&tb, &rb);
    char err[ME_ERRLEN];
    int st;
    PyObject *res = NULL;
    Py_BEGIN_ALLOW_THREADS
    PyThread_acquire_lock(self->lock, WAIT_LOCK);
    st = me_tok_encode(self->tok, self->ws[0], &sa, pair != Py_None ? &sb : NULL, add_special, max_length,
                       &self->single, err);
    Py_BLOCK_THREADS
    res = st ? me_raise(st, err) : encoding_new(self, &self->single);
    Py_UNBLOCK_THREADS
    PyThread_release_lock(self->lock);
    Py_END_ALLOW_THREADS
    tb_free(&tb);
    return res;
}

static PyObject *new_array(int nd, npy_intp *dims, PyObject *dict, const char *key) {
    PyObject *a = PyArray_SimpleNew(nd, dims, NPY_INT64);
    if (!a) return NULL;
    int rc = PyDict_SetItemString(dict, key, a);
    Py_DECREF(a);
    return rc < 0 ? NULL : a;
}

/* encode_batch(inputs, add_special_tokens, max_length, is_split_into_words, pad_id, num_threads)
 * -> dict of int64 arrays padded to the longest encoding. */
static PyObject *tok_encode_batch(TokenizerObject *self, PyObject *args) {
    PyObject *inputs;
    int add_special, words, pad_id, num_threads;
    long max_length;
    if (!PyArg_ParseTuple(args, "Opliii", &inputs, &add_special, &max_length, &words, &pad_id, &num_threads)) return NULL;
    if (check_ready(self) < 0) return NULL;
    PyObject *fast = PySequence_Fast(inputs, "encode_batch expects a list of inputs");
    if (!fast) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    size_t nn = n ? (size_t)n : 1;
    int nth = num_threads > 0 && num_threads < self->nws ? num_threads : self->nws;
    textbuf tb = {0};
    seqref *refs = calloc(2 * nn, sizeof *refs);
    me_seq *sa = calloc(nn, sizeof *sa), *sb = calloc(nn, sizeof *sb);
    const me_seq **pb = calloc(nn, sizeof *pb);
    me_batch_item *item = calloc(nn, sizeof *item);
    me_enc *store = calloc((size_t)nth, sizeof *store);
    char *is_pair = calloc(nn, 1);
    PyObject *dict = NULL;
    if (!refs || !sa || !sb || !pb || !item || !store || !is_pair) { PyErr_NoMemory(); goto fail; }
    for (Py_ssize_t i = 0; i < n; i++) {
        int r = parse_item(&tb, PySequence_Fast_GET_ITEM(fast, i), words, i, &refs[2 * i], &refs[2 * i + 1]);
        if (r < 0) goto fail;
        is_pair[i] = (char)r;
    }
    for (Py_ssize_t i = 0; i < n; i++) { /* the text buffer no longer moves */
        sa[i] = seq_of(&tb, &refs[2 * i]);
        if (is_pair[i]) {
            sb[i] = seq_of(&tb, &refs[2 * i + 1]);
            pb[i] = &sb[i];
        }
    }
    char err[ME_ERRLEN];
    size_t failed = 0;
    int st;
    Py_BEGIN_ALLOW_THREADS
    PyThread_acquire_lock(self->lock, WAIT_LOCK);
    st = me_tok_encode_batch(self->tok, self->ws, nth, sa, pb, (size_t)n, add_special, max_length, store, item,
                             &failed, err);
    PyThread_release_lock(self->lock);
    Py_END_ALLOW_THREADS
    if (st) {
        char msg[ME_ERRLEN + 64];
        snprintf(msg, sizeof msg, "input %zu: %s", failed, err);
        me_raise(st, msg);
        goto fail;
    }
    size_t L = 0;
    for (Py_ssize_t i = 0; i < n; i++)
        if (item[i].len > L) L = item[i].len;
    dict = PyDict_New();
    if (!dict) goto fail;
    npy_intp d2[2] = {n, (npy_intp)L}, d3[3] = {n, (npy_intp)L, 2};
    PyObject *a_ids = new_array(2, d2, dict, "input_ids"), *a_att = new_array(2, d2, dict, "attention_mask");
    PyObject *a_typ = new_array(2, d2, dict, "token_type_ids"), *a_spe = new_array(2, d2, dict, "special_tokens_mask");
    PyObject *a_wrd = new_array(2, d2, dict, "word_ids"), *a_seq = new_array(2, d2, dict, "sequence_ids");
    PyObject *a_off = new_array(3, d3, dict, "offset_mapping");
    if (!a_ids || !a_att || !a_typ || !a_spe || !a_wrd || !a_seq || !a_off) goto fail;
    int64_t *ids = PyArray_DATA((PyArrayObject *)a_ids), *att = PyArray_DATA((PyArrayObject *)a_att);
    int64_t *typ = PyArray_DATA((PyArrayObject *)a_typ), *spe = PyArray_DATA((PyArrayObject *)a_spe);
    int64_t *wrd = PyArray_DATA((PyArrayObject *)a_wrd), *seq = PyArray_DATA((PyArrayObject *)a_seq);
    int64_t *off = PyArray_DATA((PyArrayObject *)a_off);
    for (Py_ssize_t i = 0; i < n; i++) {
        const me_enc *e = &store[item[i].store];
        size_t base = (size_t)i * L, s0 = item[i].start, m = item[i].len;
        for (size_t j = 0; j < m; j++) {
            size_t k = base + j, q = s0 + j;
            ids[k] = e->ids[q];
            att[k] = 1;
            typ[k] = e->type_ids[q];
            spe[k] = e->special[q];
            wrd[k] = e->word_ids[q];
            seq[k] = e->seq_ids[q];
            off[2 * k] = e->offsets[2 * q];
            off[2 * k + 1] = e->offsets[2 * q + 1];
        }
        for (size_t j = m; j < L; j++) {
            size_t k = base + j;
            ids[k] = pad_id;
            att[k] = typ[k] = 0;
            spe[k] = 1;
            wrd[k] = seq[k] = -1;
            off[2 * k] = off[2 * k + 1] = 0;
        }
    }
    goto done;
fail:
    Py_CLEAR(dict);
done:
    if (store)
        for (int k = 0; k < nth; k++) me_enc_free(&store[k]);
    free(store);
    free(item);
    free(refs);
    free(sa);
    free(sb);
    free(pb);
    free(is_pair);
    tb_free(&tb);
    Py_DECREF(fast);
    return dict;
}

static PyObject *tok_id_to_token(TokenizerObject *self, PyObject *arg) {
    if (check_ready(self) < 0) return NULL;
    long id = PyLong_AsLong(arg);
    if (id == -1 && PyErr_Occurred()) return NULL;
    size_t len;
    const char *s = id >= INT32_MIN && id <= INT32_MAX ? me_tok_id_to_token(self->tok, (int32_t)id, &len) : NULL;
    if (!s) Py_RETURN_NONE;
    return PyUnicode_DecodeUTF8(s, (Py_ssize_t)len, "replace");
}

static PyObject *tok_num_special(TokenizerObject *self, PyObject *arg) {
    if (check_ready(self) < 0) return NULL;
    int pair = PyObject_IsTrue(arg);
    if (pair < 0) return NULL;
    return PyLong_FromSize_t(me_tok_num_added(self->tok, pair));
}

static PyMethodDef tok_methods[] = {
    {"encode", (PyCFunction)tok_encode, METH_VARARGS,
     "encode(text, pair, add_special_tokens, max_length, is_split_into_words) -> Encoding"},
    {"encode_batch", (PyCFunction)tok_encode_batch, METH_VARARGS,
     "encode_batch(inputs, add_special_tokens, max_length, is_split_into_words, pad_id, num_threads) -> dict"},
    {"id_to_token", (PyCFunction)tok_id_to_token, METH_O, "Token string of an id, or None."},
    {"num_special_tokens_to_add", (PyCFunction)tok_num_special, METH_O,
     "Special tokens the post-processor adds for a single (False) or pair (True) input."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject TokenizerType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "multienc.engine._C.Tokenizer",
    .tp_basicsize = sizeof(TokenizerObject),
    .tp_dealloc = (destructor)tok_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "C WordPiece / byte-level BPE / Unigram tokenizer; build it through multienc.tokenization.Tokenizer.",
    .tp_methods = tok_methods,
    .tp_init = (initproc)tok_init,
    .tp_new = PyType_GenericNew,
};

int me_register_tokenizer(PyObject *module) {
    if (PyType_Ready(&TokenizerType) < 0 || PyType_Ready(&EncodingType) < 0) return -1;
    Py_INCREF(&EncodingType);
    if (PyModule_AddObject(module, "Encoding", (PyObject *)&EncodingType) < 0) {
        Py_DECREF(&EncodingType);
        return -1;
    }
    Py_INCREF(&TokenizerType);
    if (PyModule_AddObject(module, "Tokenizer", (PyObject *)&TokenizerType) < 0) {
        Py_DECREF(&TokenizerType);
        return -1;
    }
    return 0;
}
