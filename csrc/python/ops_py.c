/* multienc._C.ops_*: each backend op exposed on numpy arrays, so every
 * forward/backward pair is tested on its own against a float64 reference and
 * every backend against the CPU one. Inputs are converted to C-contiguous
 * float32 / int32; outputs are new arrays. Each function takes an optional
 * last argument `device` ("cpu" default, "cuda", "cuda:N"): on a device
 * backend the arrays are staged through device buffers. */
#include "python/bindings.h"
#include "backend.h"
#include "common.h"

static PyArrayObject *farr(PyObject *o, int ndim, const char *name) {
    PyArrayObject *a = (PyArrayObject *)PyArray_FROMANY(o, NPY_FLOAT32, ndim, ndim,
                                                        NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED);
    if (!a) PyErr_Format(PyExc_ValueError, "%s: expected a %d-d float array", name, ndim);
    return a;
}
static PyArrayObject *iarr(PyObject *o, int ndim, const char *name) {
    PyArrayObject *a = (PyArrayObject *)PyArray_FROMANY(o, NPY_INT32, ndim, ndim,
                                                        NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED);
    if (!a) PyErr_Format(PyExc_ValueError, "%s: expected a %d-d int array", name, ndim);
    return a;
}
static PyArrayObject *zeros(int nd, npy_intp *dims) {
    return (PyArrayObject *)PyArray_ZEROS(nd, dims, NPY_FLOAT32, 0);
}

/* The arrays an op reads and writes, as the backend sees them: on the CPU the
 * numpy buffers themselves; on a device, zero-filled device copies (inputs and
 * outputs are copied in, outputs copied back by stage_finish). */
#define STAGE_MAX 8
typedef struct {
    const MeBackend *be;
    int n, failed;
    struct {
        PyArrayObject *a;
        void *dev;
        int out;
    } t[STAGE_MAX];
} Stage;

static void *stage(Stage *s, PyArrayObject *a, int out) {
    if (s->be == me_cpu_backend()) return PyArray_DATA(a);
    size_t bytes = (size_t)PyArray_NBYTES(a);
    void *d = s->n < STAGE_MAX ? s->be->alloc(bytes) : NULL;
    if (!d) {
        s->failed = 1;
        return NULL;
    }
    s->t[s->n].a = a;
    s->t[s->n].dev = d;
    s->t[s->n].out = out;
    s->n++;
    s->be->to_device(d, PyArray_DATA(a), bytes);
    return d;
}
#define IN(s, a) ((float *)stage(&(s), (a), 0))
#define IN_I(s, a) ((int32_t *)stage(&(s), (a), 0))
#define OUT(s, a) ((float *)stage(&(s), (a), 1))

/* Copy outputs back, release device buffers; 0, or -1 with an exception set. */
static int stage_finish(Stage *s) {
    char err[ME_ERRLEN] = {0};
    int st = ME_OK;
    Py_BEGIN_ALLOW_THREADS
    if (!s->failed) {
        for (int i = 0; i < s->n; i++)
            if (s->t[i].out) s->be->to_host(PyArray_DATA(s->t[i].a), s->t[i].dev, (size_t)PyArray_NBYTES(s->t[i].a));
        st = s->be->status(err);
    }
    for (int i = 0; i < s->n; i++) s->be->release(s->t[i].dev);
    Py_END_ALLOW_THREADS
    s->n = 0;
    if (s->failed) {
        PyErr_NoMemory();
        return -1;
    }
    if (st) {
        me_raise(st, err);
        return -1;
    }
    return 0;
}

/* The backend named by an optional device string (NULL = "cpu"). */
static const MeBackend *backend_arg(const char *device) {
    return me_backend_for_device(device ? device : "cpu");
}

#define F(a) ((float *)PyArray_DATA(a))
#define I32(a) ((int32_t *)PyArray_DATA(a))
#define D(a, i) ((int)PyArray_DIM(a, i))
#define FAIL(msg) do { PyErr_SetString(PyExc_ValueError, msg); goto fail; } while (0)

static PyObject *ops_embedding_forward(PyObject *s, PyObject *args) {
    PyObject *io, *to;
    const char *device = NULL;
    if (!PyArg_ParseTuple(args, "OO|z", &io, &to, &device)) return NULL;
    const MeBackend *be = backend_arg(device);
    if (!be) return NULL;
    PyArrayObject *ids = iarr(io, 1, "ids"), *tab = ids ? farr(to, 2, "table") : NULL, *out = NULL;
    if (!tab) goto fail;
    for (int n = 0; n < D(ids, 0); n++)
        if (I32(ids)[n] < 0 || I32(ids)[n] >= D(tab, 0)) FAIL("id out of range");
    npy_intp dims[2] = {D(ids, 0), D(tab, 1)};
    if (!(out = zeros(2, dims))) goto fail;
    Stage st = {be};
    float *o = OUT(st, out), *t = IN(st, tab);
    int32_t *i = IN_I(st, ids);
    if (!st.failed) {
        Py_BEGIN_ALLOW_THREADS be->embedding_forward(o, i, t, D(ids, 0), D(tab, 1), 0);
        Py_END_ALLOW_THREADS
    }
    if (stage_finish(&st)) goto fail;
    Py_DECREF(ids); Py_DECREF(tab);
    return (PyObject *)out;
fail:
    Py_XDECREF(ids); Py_XDECREF(tab); Py_XDECREF(out);
    return NULL;
}

static PyObject *ops_embedding_backward(PyObject *s, PyObject *args) {
    PyObject *go, *io;
    int V, pad;
    const char *device = NULL;
    if (!PyArg_ParseTuple(args, "OOii|z", &go, &io, &V, &pad, &device)) return NULL;
    const MeBackend *be = backend_arg(device);
    if (!be) return NULL;
    PyArrayObject *g = farr(go, 2, "dout"), *ids = g ? iarr(io, 1, "ids") : NULL, *out = NULL;
    if (!ids) goto fail;
    if (D(ids, 0) != D(g, 0) || V <= 0) FAIL("shape mismatch");
    for (int n = 0; n < D(ids, 0); n++)
        if (I32(ids)[n] < 0 || I32(ids)[n] >= V) FAIL("id out of range");
    npy_intp dims[2] = {V, D(g, 1)};
    if (!(out = zeros(2, dims))) goto fail;
    Stage st = {be};
    float *o = OUT(st, out), *dg = IN(st, g);
    int32_t *i = IN_I(st, ids);
    if (!st.failed) {
        Py_BEGIN_ALLOW_THREADS be->embedding_backward(o, dg, i, D(g, 0), D(g, 1), pad);
        Py_END_ALLOW_THREADS
    }
    if (stage_finish(&st)) goto fail;
    Py_DECREF(g); Py_DECREF(ids);
    return (PyObject *)out;
fail:
    Py_XDECREF(g); Py_XDECREF(ids); Py_XDECREF(out);
    return NULL;
}

static PyObject *ops_layernorm_forward(PyObject *s, PyObject *args) {
    PyObject *xo, *wo, *bo;
    float eps;
    const char *device = NULL;
    if (!PyArg_ParseTuple(args, "OOOf|z", &xo, &wo, &bo, &eps, &device)) return NULL;
    const MeBackend *be = backend_arg(device);
    if (!be) return NULL;
    PyArrayObject *x = farr(xo, 2, "inp"), *w = x ? farr(wo, 1, "w") : NULL, *b = w ? farr(bo, 1, "b") : NULL;
    PyArrayObject *out = NULL, *mean = NULL, *rstd = NULL;
    if (!b) goto fail;
    if (D(w, 0) != D(x, 1) || D(b, 0) != D(x, 1)) FAIL("shape mismatch");
    npy_intp dims[2] = {D(x, 0), D(x, 1)};
    if (!(out = zeros(2, dims)) || !(mean = zeros(1, dims)) || !(rstd = zeros(1, dims))) goto fail;
    Stage st = {be};
    float *o = OUT(st, out), *m = OUT(st, mean), *r = OUT(st, rstd), *px = IN(st, x), *pw = IN(st, w),
          *pb = IN(st, b);
    if (!st.failed) {
        Py_BEGIN_ALLOW_THREADS
        be->layernorm_forward(o, m, r, px, pw, pb, D(x, 0), D(x, 1), eps);
        Py_END_ALLOW_THREADS
    }
    if (stage_finish(&st)) goto fail;
    Py_DECREF(x); Py_DECREF(w); Py_DECREF(b);
    return Py_BuildValue("(NNN)", out, mean, rstd);
fail:
    Py_XDECREF(x); Py_XDECREF(w); Py_XDECREF(b); Py_XDECREF(out); Py_XDECREF(mean); Py_XDECREF(rstd);
    return NULL;
}

static PyObject *ops_layernorm_backward(PyObject *s, PyObject *args) {
    PyObject *go, *xo, *mo, *ro, *wo;
    const char *device = NULL;
    if (!PyArg_ParseTuple(args, "OOOOO|z", &go, &xo, &mo, &ro, &wo, &device)) return NULL;
    const MeBackend *be = backend_arg(device);
    if (!be) return NULL;
    PyArrayObject *g = farr(go, 2, "dout"), *x = g ? farr(xo, 2, "inp") : NULL,
                  *m = x ? farr(mo, 1, "mean") : NULL, *r = m ? farr(ro, 1, "rstd") : NULL,
                  *w = r ? farr(wo, 1, "w") : NULL;
    PyArrayObject *dx = NULL, *dw = NULL, *db = NULL;
    if (!w) goto fail;
    if (D(g, 0) != D(x, 0) || D(g, 1) != D(x, 1) || D(m, 0) != D(x, 0) || D(r, 0) != D(x, 0) ||
        D(w, 0) != D(x, 1))
        FAIL("shape mismatch");
    npy_intp dims[2] = {D(x, 0), D(x, 1)}, cd[1] = {D(x, 1)};
    if (!(dx = zeros(2, dims)) || !(dw = zeros(1, cd)) || !(db = zeros(1, cd))) goto fail;
    Stage st = {be};
    float *pdx = OUT(st, dx), *pdw = OUT(st, dw), *pdb = OUT(st, db), *pg = IN(st, g), *px = IN(st, x),
          *pm = IN(st, m), *pr = IN(st, r), *pw = IN(st, w);
    if (!st.failed) {
        Py_BEGIN_ALLOW_THREADS
        be->layernorm_backward(pdx, pdw, pdb, pg, px, pm, pr, pw, D(x, 0), D(x, 1), 0);
        Py_END_ALLOW_THREADS
    }
    if (stage_finish(&st)) goto fail;
    Py_DECREF(g); Py_DECREF(x); Py_DECREF(m); Py_DECREF(r); Py_DECREF(w);
    return Py_BuildValue("(NNN)", dx, dw, db);
fail:
    Py_XDECREF(g); Py_XDECREF(x); Py_XDECREF(m); Py_XDECREF(r); Py_XDECREF(w);
    Py_XDECREF(dx); Py_XDECREF(dw); Py_XDECREF(db);
    return NULL;
}

static PyObject *ops_matmul_forward(PyObject *s, PyObject *args) {
    PyObject *xo, *wo, *bo;
    const char *device = NULL;
    if (!PyArg_ParseTuple(args, "OOO|z", &xo, &wo, &bo, &device)) return NULL;
    const MeBackend *be = backend_arg(device);
    if (!be) return NULL;
    PyArrayObject *x = farr(xo, 2, "inp"), *w = x ? farr(wo, 2, "w") : NULL, *b = NULL, *out = NULL;
    if (!w) goto fail;
    if (bo != Py_None && !(b = farr(bo, 1, "b"))) goto fail;
    if (D(w, 1) != D(x, 1) || (b && D(b, 0) != D(w, 0))) FAIL("shape mismatch");
    npy_intp dims[2] = {D(x, 0), D(w, 0)};
    if (!(out = zeros(2, dims))) goto fail;
    Stage st = {be};
    float *o = OUT(st, out), *px = IN(st, x), *pw = IN(st, w), *pb = b ? IN(st, b) : NULL;
    if (!st.failed) {
        Py_BEGIN_ALLOW_THREADS
        be->matmul_forward(o, px, pw, pb, D(x, 0), D(x, 1), D(w, 0));
        Py_END_ALLOW_THREADS
    }
    if (stage_finish(&st)) goto fail;
    Py_DECREF(x); Py_DECREF(w); Py_XDECREF(b);
    return (PyObject *)out;
fail:
    Py_XDECREF(x); Py_XDECREF(w); Py_XDECREF(b); Py_XDECREF(out);
    return NULL;
}

static PyObject *ops_matmul_backward(PyObject *s, PyObject *args) {
    PyObject *go, *xo, *wo;
    const char *device = NULL;
    if (!PyArg_ParseTuple(args, "OOO|z", &go, &xo, &wo, &device)) return NULL;
    const MeBackend *be = backend_arg(device);
    if (!be) return NULL;
    PyArrayObject *g = farr(go, 2, "dout"), *x = g ? farr(xo, 2, "inp") : NULL, *w = x ? farr(wo, 2, "w") : NULL;
    PyArrayObject *dx = NULL, *dw = NULL, *db = NULL;
    if (!w) goto fail;
    if (D(g, 0) != D(x, 0) || D(g, 1) != D(w, 0) || D(w, 1) != D(x, 1)) FAIL("shape mismatch");
    npy_intp xd[2] = {D(x, 0), D(x, 1)}, wd[2] = {D(w, 0), D(w, 1)}, bd[1] = {D(w, 0)};
    if (!(dx = zeros(2, xd)) || !(dw = zeros(2, wd)) || !(db = zeros(1, bd))) goto fail;
    Stage st = {be};
    float *pdx = OUT(st, dx), *pdw = OUT(st, dw), *pdb = OUT(st, db), *pg = IN(st, g), *px = IN(st, x),
          *pw = IN(st, w);
    if (!st.failed) {
        Py_BEGIN_ALLOW_THREADS
        be->matmul_backward(pdx, pdw, pdb, pg, px, pw, D(x, 0), D(x, 1), D(w, 0), 0);
        Py_END_ALLOW_THREADS
    }
    if (stage_finish(&st)) goto fail;
    Py_DECREF(g); Py_DECREF(x); Py_DECREF(w);
    return Py_BuildValue("(NNN)", dx, dw, db);
fail:
    Py_XDECREF(g); Py_XDECREF(x); Py_XDECREF(w); Py_XDECREF(dx); Py_XDECREF(dw); Py_XDECREF(db);
    return NULL;
}

static PyObject *ops_gelu(PyObject *s, PyObject *args, int backward) {
    PyObject *xo, *go = NULL;
    int act;
    const char *device = NULL;
    if (backward ? !PyArg_ParseTuple(args, "OOi|z", &xo, &go, &act, &device)
                 : !PyArg_ParseTuple(args, "Oi|z", &xo, &act, &device))
        return NULL;
    const MeBackend *be = backend_arg(device);
    if (!be) return NULL;
    if (act != ME_ACT_GELU && act != ME_ACT_GELU_TANH) {
        PyErr_SetString(PyExc_ValueError, "unknown activation");
        return NULL;
    }
    PyArrayObject *x = farr(xo, 1, "inp"), *g = NULL, *out = NULL;
    if (!x) goto fail;
    if (backward && !(g = farr(go, 1, "dout"))) goto fail;
    if (g && D(g, 0) != D(x, 0)) FAIL("shape mismatch");
    npy_intp dims[1] = {D(x, 0)};
    if (!(out = zeros(1, dims))) goto fail;
    Stage st = {be};
    float *o = OUT(st, out), *px = IN(st, x), *pg = g ? IN(st, g) : NULL;
    if (!st.failed) {
        Py_BEGIN_ALLOW_THREADS
        if (backward) be->gelu_backward(o, px, pg, (size_t)D(x, 0), (MeActivation)act);
        else be->gelu_forward(o, px, (size_t)D(x, 0), (MeActivation)act);
        Py_END_ALLOW_THREADS
    }
    if (stage_finish(&st)) goto fail;
    Py_DECREF(x); Py_XDECREF(g);
    return (PyObject *)out;
fail:
    Py_XDECREF(x); Py_XDECREF(g); Py_XDECREF(out);
    return NULL;
}
static PyObject *ops_gelu_forward(PyObject *s, PyObject *a) { return ops_gelu(s, a, 0); }
static PyObject *ops_gelu_backward(PyObject *s, PyObject *a) { return ops_gelu(s, a, 1); }

static PyObject *ops_add_forward(PyObject *s, PyObject *args) {
    PyObject *ao, *bo;
    const char *device = NULL;
    if (!PyArg_ParseTuple(args, "OO|z", &ao, &bo, &device)) return NULL;
    const MeBackend *be = backend_arg(device);
    if (!be) return NULL;
    PyArrayObject *a = farr(ao, 1, "a"), *b = a ? farr(bo, 1, "b") : NULL, *out = NULL;
    if (!b) goto fail;
    if (D(a, 0) != D(b, 0)) FAIL("shape mismatch");
    npy_intp dims[1] = {D(a, 0)};
    if (!(out = zeros(1, dims))) goto fail;
    Stage st = {be};
    float *o = OUT(st, out), *pa = IN(st, a), *pb = IN(st, b);
    if (!st.failed) be->add_forward(o, pa, pb, (size_t)D(a, 0));
    if (stage_finish(&st)) goto fail;
    Py_DECREF(a); Py_DECREF(b);
    return (PyObject *)out;
fail:
    Py_XDECREF(a); Py_XDECREF(b); Py_XDECREF(out);
    return NULL;
}

/* add_backward(dout, da_init, db_init, accumulate) -> (da, db) */
static PyObject *ops_add_backward(PyObject *s, PyObject *args) {
    PyObject *go, *ao, *bo;
    int acc;
    const char *device = NULL;
    if (!PyArg_ParseTuple(args, "OOOp|z", &go, &ao, &bo, &acc, &device)) return NULL;
    const MeBackend *be = backend_arg(device);
    if (!be) return NULL;
    PyArrayObject *g = farr(go, 1, "dout"), *a = NULL, *b = NULL;
    if (!g) goto fail;
    a = (PyArrayObject *)PyArray_FROMANY(ao, NPY_FLOAT32, 1, 1, NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ENSURECOPY);
    b = a ? (PyArrayObject *)PyArray_FROMANY(bo, NPY_FLOAT32, 1, 1, NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ENSURECOPY) : NULL;
    if (!b) goto fail;
    if (D(a, 0) != D(g, 0) || D(b, 0) != D(g, 0)) FAIL("shape mismatch");
    Stage st = {be};
    float *pa = OUT(st, a), *pb = OUT(st, b), *pg = IN(st, g);
    if (!st.failed) be->add_backward(pa, pb, pg, (size_t)D(g, 0), acc);
    if (stage_finish(&st)) goto fail;
    Py_DECREF(g);
    return Py_BuildValue("(NN)", a, b);
fail:
    Py_XDECREF(g); Py_XDECREF(a); Py_XDECREF(b);
    return NULL;
}

static PyObject *ops_dropout(PyObject *s, PyObject *args, int backward) {
    PyObject *xo;
    float p;
    unsigned long long seed, site;
    const char *device = NULL;
    if (!PyArg_ParseTuple(args, "OfKK|z", &xo, &p, &seed, &site, &device)) return NULL;
    const MeBackend *be = backend_arg(device);
    if (!be) return NULL;
    PyArrayObject *x = farr(xo, 1, "inp"), *out = NULL;
    if (!x) goto fail;
    if (!(p >= 0.0f && p <= 1.0f)) FAIL("p must be in [0, 1]");
    npy_intp dims[1] = {D(x, 0)};
    if (!(out = zeros(1, dims))) goto fail;
    Stage st = {be};
    float *o = OUT(st, out), *px = IN(st, x);
    if (!st.failed) {
        Py_BEGIN_ALLOW_THREADS
        if (backward) be->dropout_backward(o, px, (size_t)D(x, 0), p, seed, site);
        else be->dropout_forward(o, px, (size_t)D(x, 0), p, seed, site);
        Py_END_ALLOW_THREADS
    }
    if (stage_finish(&st)) goto fail;
    Py_DECREF(x);
    return (PyObject *)out;
fail:
    Py_XDECREF(x); Py_XDECREF(out);
    return NULL;
}
static PyObject *ops_dropout_forward(PyObject *s, PyObject *a) { return ops_dropout(s, a, 0); }
static PyObject *ops_dropout_backward(PyObject *s, PyObject *a) { return ops_dropout(s, a, 1); }

static PyObject *ops_rng_uniform(PyObject *s, PyObject *args) {
    unsigned long long seed, site;
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "KKn", &seed, &site, &n)) return NULL;
    if (n < 0) {
        PyErr_SetString(PyExc_ValueError, "n must be >= 0");
        return NULL;
    }
    npy_intp dims[1] = {n};
    PyArrayObject *out = zeros(1, dims);
    if (!out) return NULL;
    for (Py_ssize_t i = 0; i < n; i++) F(out)[i] = me_uniform(seed, site, (uint64_t)i);
    return (PyObject *)out;
}

/* attention_forward(qkv [B,T,3D], mask [B,T], NH, p, seed, site) -> (ctx [B,T,D], probs [B,NH,T,T]) */
static PyObject *ops_attention_forward(PyObject *s, PyObject *args) {
    PyObject *qo, *mo;
    int NH;
    float p;
    unsigned long long seed, site;
    const char *device = NULL;
    if (!PyArg_ParseTuple(args, "OOifKK|z", &qo, &mo, &NH, &p, &seed, &site, &device)) return NULL;
    const MeBackend *be = backend_arg(device);
    if (!be) return NULL;
    PyArrayObject *q = farr(qo, 3, "qkv"), *m = q ? iarr(mo, 2, "mask") : NULL;
    PyArrayObject *ctx = NULL, *probs = NULL;
    float *scratch = NULL;
    if (!m) goto fail;
    int B = D(q, 0), T = D(q, 1);
    if (NH <= 0 || D(q, 2) % (3 * NH) || D(m, 0) != B || D(m, 1) != T) FAIL("shape mismatch");
    int HS = D(q, 2) / (3 * NH);
    npy_intp cd[3] = {B, T, NH * HS}, pd[4] = {B, NH, T, T};
    if (!(ctx = zeros(3, cd)) || !(probs = zeros(4, pd))) goto fail;
    scratch = be->alloc(sizeof(float) * be->attention_scratch_floats(B, T, NH, HS));
    if (!scratch) { PyErr_NoMemory(); goto fail; }
    Stage st = {be};
    float *pc = OUT(st, ctx), *pp = OUT(st, probs), *pq = IN(st, q);
    int32_t *pm = IN_I(st, m);
    if (!st.failed) {
        Py_BEGIN_ALLOW_THREADS
        be->attention_forward(pc, pp, pq, pm, B, T, NH, HS, p, seed, site, scratch);
        Py_END_ALLOW_THREADS
    }
    int bad = stage_finish(&st);
    be->release(scratch);
    if (bad) goto fail;
    Py_DECREF(q); Py_DECREF(m);
    return Py_BuildValue("(NN)", ctx, probs);
fail:
    Py_XDECREF(q); Py_XDECREF(m); Py_XDECREF(ctx); Py_XDECREF(probs);
    return NULL;
}

/* attention_backward(dctx, qkv, probs, mask, NH, p, seed, site) -> dqkv */
static PyObject *ops_attention_backward(PyObject *s, PyObject *args) {
    PyObject *go, *qo, *po, *mo;
    int NH;
    float p;
    unsigned long long seed, site;
    const char *device = NULL;
    if (!PyArg_ParseTuple(args, "OOOOifKK|z", &go, &qo, &po, &mo, &NH, &p, &seed, &site, &device))
        return NULL;
    const MeBackend *be = backend_arg(device);
    if (!be) return NULL;
    PyArrayObject *g = farr(go, 3, "dctx"), *q = g ? farr(qo, 3, "qkv") : NULL,
                  *pr = q ? farr(po, 4, "probs") : NULL, *m = pr ? iarr(mo, 2, "mask") : NULL;
    PyArrayObject *dq = NULL;
    float *scratch = NULL;
    if (!m) goto fail;
    int B = D(q, 0), T = D(q, 1);
    if (NH <= 0 || D(q, 2) % (3 * NH)) FAIL("shape mismatch");
    int HS = D(q, 2) / (3 * NH);
    if (D(g, 0) != B || D(g, 1) != T || D(g, 2) != NH * HS || D(pr, 0) != B || D(pr, 1) != NH ||
        D(pr, 2) != T || D(pr, 3) != T || D(m, 0) != B || D(m, 1) != T)
        FAIL("shape mismatch");
    npy_intp qd[3] = {B, T, 3 * NH * HS};
    if (!(dq = zeros(3, qd))) goto fail;
    scratch = be->alloc(sizeof(float) * be->attention_scratch_floats(B, T, NH, HS));
    if (!scratch) { PyErr_NoMemory(); goto fail; }
    Stage st = {be};
    float *pd = OUT(st, dq), *pg = IN(st, g), *pq = IN(st, q), *pp = IN(st, pr);
    int32_t *pm = IN_I(st, m);
    if (!st.failed) {
        Py_BEGIN_ALLOW_THREADS
        be->attention_backward(pd, pg, pq, pp, pm, B, T, NH, HS, p, seed, site, scratch);
        Py_END_ALLOW_THREADS
    }
    int bad = stage_finish(&st);
    be->release(scratch);
    if (bad) goto fail;
    Py_DECREF(g); Py_DECREF(q); Py_DECREF(pr); Py_DECREF(m);
    return (PyObject *)dq;
fail:
    Py_XDECREF(g); Py_XDECREF(q); Py_XDECREF(pr); Py_XDECREF(m); Py_XDECREF(dq);
    return NULL;
}

static PyMethodDef ops_methods[] = {
    {"ops_embedding_forward", ops_embedding_forward, METH_VARARGS, "(ids, table) -> out"},
    {"ops_embedding_backward", ops_embedding_backward, METH_VARARGS, "(dout, ids, V, padding_idx) -> dtable"},
    {"ops_layernorm_forward", ops_layernorm_forward, METH_VARARGS, "(inp, w, b, eps) -> (out, mean, rstd)"},
    {"ops_layernorm_backward", ops_layernorm_backward, METH_VARARGS, "(dout, inp, mean, rstd, w) -> (dinp, dw, db)"},
    {"ops_matmul_forward", ops_matmul_forward, METH_VARARGS, "(inp, w, b|None) -> out"},
    {"ops_matmul_backward", ops_matmul_backward, METH_VARARGS, "(dout, inp, w) -> (dinp, dw, db)"},
    {"ops_gelu_forward", ops_gelu_forward, METH_VARARGS, "(x, act) -> y"},
    {"ops_gelu_backward", ops_gelu_backward, METH_VARARGS, "(x, dout, act) -> dx"},
    {"ops_add_forward", ops_add_forward, METH_VARARGS, "(a, b) -> a + b"},
    {"ops_add_backward", ops_add_backward, METH_VARARGS, "(dout, da0, db0, accumulate) -> (da, db)"},
    {"ops_dropout_forward", ops_dropout_forward, METH_VARARGS, "(x, p, seed, site) -> y"},
    {"ops_dropout_backward", ops_dropout_backward, METH_VARARGS, "(dout, p, seed, site) -> dx"},
    {"ops_rng_uniform", ops_rng_uniform, METH_VARARGS, "(seed, site, n) -> the dropout RNG's uniforms"},
    {"ops_attention_forward", ops_attention_forward, METH_VARARGS, "(qkv, mask, NH, p, seed, site) -> (ctx, probs)"},
    {"ops_attention_backward", ops_attention_backward, METH_VARARGS, "(dctx, qkv, probs, mask, NH, p, seed, site) -> dqkv"},
    {NULL, NULL, 0, NULL},
};

int me_register_ops(PyObject *module) { return PyModule_AddFunctions(module, ops_methods); }
