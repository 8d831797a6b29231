/* multienc.engine._C.ops_*: each backend op exposed on numpy arrays, so every
 * forward/backward pair is tested on its own against a float64 reference and
 * every backend against the CPU one. Inputs are converted to C-contiguous
 * float32 / int32; outputs are new arrays. Each function takes an optional
 * last argument `device` ("cpu" default, "cuda", "cuda:N"): on a device
 * backend the arrays are staged through device buffers. */
#include "python/bindings.h"
#include "backend.h"
#include "common.h"
#include "cpu/dispatch.h"
#include "cpu/vmath.h"

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

/* The training-step ops below run on the CPU backend only, until their CUDA versions exist. */
#define BE me_cpu_backend()

/* Query rows of attention_rows_*: qstart [B+1] from 0 to M, positions qpos [M] ascending within
 * each sentence and below T; 0, or -1 with an exception set. */
static int check_query_rows(PyArrayObject *qs, PyArrayObject *qp, int B, int T, int M) {
    if (D(qs, 0) != B + 1 || D(qp, 0) != M || I32(qs)[0] != 0 || I32(qs)[B] != M) {
        PyErr_SetString(PyExc_ValueError, "qstart must run from 0 to the number of query rows, qpos one per row");
        return -1;
    }
    for (int b = 0; b < B; b++)
        for (int r = I32(qs)[b]; r < I32(qs)[b + 1]; r++)
            if (r < 0 || r >= M || I32(qp)[r] < 0 || I32(qp)[r] >= T || (r > I32(qs)[b] && I32(qp)[r] <= I32(qp)[r - 1])) {
                PyErr_SetString(PyExc_ValueError, "qpos: positions of a sentence must ascend within 0..T-1");
                return -1;
            }
    return 0;
}

/* attention_rows_forward(q [M,D], kv [B,T,2D], mask [B,T], qstart [B+1], qpos [M], NH, p, seed, site)
 * -> (ctx [M,D], probs [M*NH*T]) */
static PyObject *ops_attention_rows_forward(PyObject *s, PyObject *args) {
    PyObject *qo, *ko, *mo, *so, *po;
    int NH;
    float p;
    unsigned long long seed, site;
    if (!PyArg_ParseTuple(args, "OOOOOifKK", &qo, &ko, &mo, &so, &po, &NH, &p, &seed, &site)) return NULL;
    PyArrayObject *q = farr(qo, 2, "q"), *kv = q ? farr(ko, 3, "kv") : NULL, *m = kv ? iarr(mo, 2, "mask") : NULL;
    PyArrayObject *qs = m ? iarr(so, 1, "qstart") : NULL, *qp = qs ? iarr(po, 1, "qpos") : NULL;
    PyArrayObject *ctx = NULL, *probs = NULL;
    float *scratch = NULL;
    if (!qp) goto fail;
    int M = D(q, 0), B = D(kv, 0), T = D(kv, 1);
    if (NH <= 0 || D(q, 1) % NH || D(kv, 2) != 2 * D(q, 1) || D(m, 0) != B || D(m, 1) != T) FAIL("shape mismatch");
    if (check_query_rows(qs, qp, B, T, M)) goto fail;
    int HS = D(q, 1) / NH;
    npy_intp cd[2] = {M, NH * HS}, pd[1] = {(npy_intp)M * NH * T};
    if (!(ctx = zeros(2, cd)) || !(probs = zeros(1, pd))) goto fail;
    scratch = BE->alloc(sizeof(float) * BE->attention_scratch_floats(B, T, NH, HS));
    if (!scratch) { PyErr_NoMemory(); goto fail; }
    Py_BEGIN_ALLOW_THREADS
    BE->attention_rows_forward(F(ctx), F(probs), F(q), F(kv), I32(m), I32(qs), I32(qp), B, T, NH, HS, p, seed, site,
                               scratch);
    Py_END_ALLOW_THREADS
    BE->release(scratch);
    Py_DECREF(q); Py_DECREF(kv); Py_DECREF(m); Py_DECREF(qs); Py_DECREF(qp);
    return Py_BuildValue("(NN)", ctx, probs);
fail:
    Py_XDECREF(q); Py_XDECREF(kv); Py_XDECREF(m); Py_XDECREF(qs); Py_XDECREF(qp); Py_XDECREF(ctx); Py_XDECREF(probs);
    return NULL;
}

/* attention_rows_backward(dctx [M,D], q, kv, probs, mask, qstart, qpos, NH, p, seed, site) -> (dq [M,D], dkv [B,T,2D]) */
static PyObject *ops_attention_rows_backward(PyObject *s, PyObject *args) {
    PyObject *go, *qo, *ko, *pro, *mo, *so, *po;
    int NH;
    float p;
    unsigned long long seed, site;
    if (!PyArg_ParseTuple(args, "OOOOOOOifKK", &go, &qo, &ko, &pro, &mo, &so, &po, &NH, &p, &seed, &site))
        return NULL;
    PyArrayObject *g = farr(go, 2, "dctx"), *q = g ? farr(qo, 2, "q") : NULL, *kv = q ? farr(ko, 3, "kv") : NULL;
    PyArrayObject *pr = kv ? farr(pro, 1, "probs") : NULL, *m = pr ? iarr(mo, 2, "mask") : NULL;
    PyArrayObject *qs = m ? iarr(so, 1, "qstart") : NULL, *qp = qs ? iarr(po, 1, "qpos") : NULL;
    PyArrayObject *dq = NULL, *dkv = NULL;
    float *scratch = NULL;
    if (!qp) goto fail;
    int M = D(q, 0), B = D(kv, 0), T = D(kv, 1);
    if (NH <= 0 || D(q, 1) % NH || D(kv, 2) != 2 * D(q, 1) || D(m, 0) != B || D(m, 1) != T || D(g, 0) != M ||
        D(g, 1) != D(q, 1) || D(pr, 0) != M * NH * T)
        FAIL("shape mismatch");
    if (check_query_rows(qs, qp, B, T, M)) goto fail;
    int HS = D(q, 1) / NH;
    npy_intp qd[2] = {M, NH * HS}, kd[3] = {B, T, 2 * NH * HS};
    if (!(dq = zeros(2, qd)) || !(dkv = zeros(3, kd))) goto fail;
    scratch = BE->alloc(sizeof(float) * BE->attention_scratch_floats(B, T, NH, HS));
    if (!scratch) { PyErr_NoMemory(); goto fail; }
    Py_BEGIN_ALLOW_THREADS
    BE->attention_rows_backward(F(dq), F(dkv), F(g), F(q), F(kv), F(pr), I32(m), I32(qs), I32(qp), B, T, NH, HS, p,
                                seed, site, scratch);
    Py_END_ALLOW_THREADS
    BE->release(scratch);
    Py_DECREF(g); Py_DECREF(q); Py_DECREF(kv); Py_DECREF(pr); Py_DECREF(m); Py_DECREF(qs); Py_DECREF(qp);
    return Py_BuildValue("(NN)", dq, dkv);
fail:
    Py_XDECREF(g); Py_XDECREF(q); Py_XDECREF(kv); Py_XDECREF(pr); Py_XDECREF(m); Py_XDECREF(qs); Py_XDECREF(qp);
    Py_XDECREF(dq); Py_XDECREF(dkv);
    return NULL;
}

/* dropout_rows(x [M,C], rows [M], p, seed, site, backward) -> y */
static PyObject *ops_dropout_rows(PyObject *s, PyObject *args) {
    PyObject *xo, *ro;
    float p;
    unsigned long long seed, site;
    int backward;
    if (!PyArg_ParseTuple(args, "OOfKKp", &xo, &ro, &p, &seed, &site, &backward)) return NULL;
    PyArrayObject *x = farr(xo, 2, "x"), *r = x ? iarr(ro, 1, "rows") : NULL, *out = NULL;
    if (!r) goto fail;
    if (D(r, 0) != D(x, 0)) FAIL("one row index per row of x");
    npy_intp d[2] = {D(x, 0), D(x, 1)};
    if (!(out = zeros(2, d))) goto fail;
    (backward ? BE->dropout_rows_backward : BE->dropout_rows_forward)(F(out), F(x), I32(r), D(x, 0), D(x, 1), p, seed,
                                                                      site);
    Py_DECREF(x); Py_DECREF(r);
    return (PyObject *)out;
fail:
    Py_XDECREF(x); Py_XDECREF(r); Py_XDECREF(out);
    return NULL;
}

/* pool_forward(h [B,T,C], w [B,K,T]) -> out [B,K,C] */
static PyObject *ops_pool_forward(PyObject *s, PyObject *args) {
    PyObject *ho, *wo;
    if (!PyArg_ParseTuple(args, "OO", &ho, &wo)) return NULL;
    PyArrayObject *h = farr(ho, 3, "h"), *w = h ? farr(wo, 3, "w") : NULL, *out = NULL;
    if (!w) goto fail;
    if (D(w, 0) != D(h, 0) || D(w, 2) != D(h, 1)) FAIL("shape mismatch");
    npy_intp dims[3] = {D(h, 0), D(w, 1), D(h, 2)};
    if (!(out = zeros(3, dims))) goto fail;
    BE->pool_forward(F(out), F(h), F(w), D(h, 0), D(h, 1), D(w, 1), D(h, 2));
    Py_DECREF(h); Py_DECREF(w);
    return (PyObject *)out;
fail:
    Py_XDECREF(h); Py_XDECREF(w); Py_XDECREF(out);
    return NULL;
}

/* pool_backward(dout [B,K,C], w [B,K,T]) -> dh [B,T,C] */
static PyObject *ops_pool_backward(PyObject *s, PyObject *args) {
    PyObject *go, *wo;
    if (!PyArg_ParseTuple(args, "OO", &go, &wo)) return NULL;
    PyArrayObject *g = farr(go, 3, "dout"), *w = g ? farr(wo, 3, "w") : NULL, *out = NULL;
    if (!w) goto fail;
    if (D(w, 0) != D(g, 0) || D(w, 1) != D(g, 1)) FAIL("shape mismatch");
    npy_intp dims[3] = {D(g, 0), D(w, 2), D(g, 2)};
    if (!(out = zeros(3, dims))) goto fail;
    BE->pool_backward(F(out), F(g), F(w), D(g, 0), D(w, 2), D(w, 1), D(g, 2), 0);
    Py_DECREF(g); Py_DECREF(w);
    return (PyObject *)out;
fail:
    Py_XDECREF(g); Py_XDECREF(w); Py_XDECREF(out);
    return NULL;
}

/* concat_forward(list of [R, C_i]) -> [R, sum C_i] */
static PyObject *ops_concat_forward(PyObject *s, PyObject *args) {
    PyObject *lo;
    if (!PyArg_ParseTuple(args, "O", &lo)) return NULL;
    PyObject *tup = PySequence_Tuple(lo);
    if (!tup) return NULL;
    Py_ssize_t n = PyTuple_GET_SIZE(tup);
    PyArrayObject *parts[16] = {0}, *out = NULL;
    int R = -1, total = 0;
    if (n < 1 || n > 16) { PyErr_SetString(PyExc_ValueError, "1..16 inputs"); goto fail; }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!(parts[i] = farr(PyTuple_GET_ITEM(tup, i), 2, "part"))) goto fail;
        if (R >= 0 && D(parts[i], 0) != R) FAIL("row counts differ");
        R = D(parts[i], 0);
        total += D(parts[i], 1);
    }
    npy_intp dims[2] = {R, total};
    if (!(out = zeros(2, dims))) goto fail;
    for (Py_ssize_t i = 0, col = 0; i < n; col += D(parts[i], 1), i++)
        BE->concat_forward(F(out) + col, total, F(parts[i]), D(parts[i], 1), R, D(parts[i], 1));
    for (Py_ssize_t i = 0; i < n; i++) Py_DECREF(parts[i]);
    Py_DECREF(tup);
    return (PyObject *)out;
fail:
    for (Py_ssize_t i = 0; i < 16; i++) Py_XDECREF(parts[i]);
    Py_XDECREF(out);
    Py_DECREF(tup);
    return NULL;
}

/* concat_backward(dout [R, total], col, width) -> [R, width] */
static PyObject *ops_concat_backward(PyObject *s, PyObject *args) {
    PyObject *go;
    int col, width;
    if (!PyArg_ParseTuple(args, "Oii", &go, &col, &width)) return NULL;
    PyArrayObject *g = farr(go, 2, "dout"), *out = NULL;
    if (!g) goto fail;
    if (col < 0 || width < 0 || col + width > D(g, 1)) FAIL("block outside the input");
    npy_intp dims[2] = {D(g, 0), width};
    if (!(out = zeros(2, dims))) goto fail;
    BE->concat_backward(F(out), width, F(g) + col, D(g, 1), D(g, 0), width, 0);
    Py_DECREF(g);
    return (PyObject *)out;
fail:
    Py_XDECREF(g); Py_XDECREF(out);
    return NULL;
}

/* combine_forward(x [n,R,C], scores [n,R] | None) -> (out [R,C], alpha [n,R]) */
static PyObject *ops_combine_forward(PyObject *s, PyObject *args) {
    PyObject *xo, *so;
    if (!PyArg_ParseTuple(args, "OO", &xo, &so)) return NULL;
    PyArrayObject *x = farr(xo, 3, "x"), *sc = NULL, *out = NULL, *alpha = NULL;
    if (!x) goto fail;
    if (so != Py_None && !(sc = farr(so, 2, "scores"))) goto fail;
    if (sc && (D(sc, 0) != D(x, 0) || D(sc, 1) != D(x, 1))) FAIL("shape mismatch");
    npy_intp od[2] = {D(x, 1), D(x, 2)}, ad[2] = {D(x, 0), D(x, 1)};
    if (!(out = zeros(2, od)) || !(alpha = zeros(2, ad))) goto fail;
    BE->combine_forward(F(out), F(alpha), F(x), sc ? F(sc) : NULL, D(x, 0), D(x, 1), D(x, 2));
    Py_DECREF(x); Py_XDECREF(sc);
    return Py_BuildValue("(NN)", out, alpha);
fail:
    Py_XDECREF(x); Py_XDECREF(sc); Py_XDECREF(out); Py_XDECREF(alpha);
    return NULL;
}

/* combine_backward(dout [R,C], x [n,R,C], alpha [n,R], with_scores) -> (dx, dscores | None) */
static PyObject *ops_combine_backward(PyObject *s, PyObject *args) {
    PyObject *go, *xo, *ao;
    int ws;
    if (!PyArg_ParseTuple(args, "OOOp", &go, &xo, &ao, &ws)) return NULL;
    PyArrayObject *g = farr(go, 2, "dout"), *x = g ? farr(xo, 3, "x") : NULL, *a = x ? farr(ao, 2, "alpha") : NULL;
    PyArrayObject *dx = NULL, *ds = NULL;
    if (!a) goto fail;
    int n = D(x, 0), R = D(x, 1), C = D(x, 2);
    if (D(g, 0) != R || D(g, 1) != C || D(a, 0) != n || D(a, 1) != R) FAIL("shape mismatch");
    npy_intp xd[3] = {n, R, C}, sd[2] = {n, R};
    if (!(dx = zeros(3, xd)) || !(ds = zeros(2, sd))) goto fail;
    BE->combine_backward(F(dx), ws ? F(ds) : NULL, F(g), F(x), F(a), n, R, C);
    Py_DECREF(g); Py_DECREF(x); Py_DECREF(a);
    if (!ws) { Py_DECREF(ds); ds = (PyArrayObject *)Py_None; Py_INCREF(Py_None); }
    return Py_BuildValue("(NN)", dx, ds);
fail:
    Py_XDECREF(g); Py_XDECREF(x); Py_XDECREF(a); Py_XDECREF(dx); Py_XDECREF(ds);
    return NULL;
}

/* cross_entropy(logits [R,C], targets [R]) -> (loss, probs, dlogits) */
static PyObject *ops_cross_entropy(PyObject *s, PyObject *args) {
    PyObject *lo, *to;
    if (!PyArg_ParseTuple(args, "OO", &lo, &to)) return NULL;
    PyArrayObject *l = farr(lo, 2, "logits"), *t = l ? iarr(to, 1, "targets") : NULL, *p = NULL, *d = NULL;
    if (!t) goto fail;
    if (D(t, 0) != D(l, 0)) FAIL("shape mismatch");
    for (int r = 0; r < D(t, 0); r++)
        if (I32(t)[r] >= D(l, 1)) FAIL("target out of range");
    npy_intp dims[2] = {D(l, 0), D(l, 1)};
    if (!(p = zeros(2, dims)) || !(d = zeros(2, dims))) goto fail;
    float loss;
    BE->cross_entropy_forward(&loss, F(p), F(l), I32(t), D(l, 0), D(l, 1));
    BE->cross_entropy_backward(F(d), F(p), I32(t), D(l, 0), D(l, 1));
    Py_DECREF(l); Py_DECREF(t);
    return Py_BuildValue("(dNN)", (double)loss, p, d);
fail:
    Py_XDECREF(l); Py_XDECREF(t); Py_XDECREF(p); Py_XDECREF(d);
    return NULL;
}

/* mse(pred [R,C], target [R,C]) -> (loss, dpred) */
static PyObject *ops_mse(PyObject *s, PyObject *args) {
    PyObject *po, *to;
    if (!PyArg_ParseTuple(args, "OO", &po, &to)) return NULL;
    PyArrayObject *p = farr(po, 2, "pred"), *t = p ? farr(to, 2, "target") : NULL, *d = NULL;
    if (!t) goto fail;
    if (D(t, 0) != D(p, 0) || D(t, 1) != D(p, 1)) FAIL("shape mismatch");
    npy_intp dims[2] = {D(p, 0), D(p, 1)};
    if (!(d = zeros(2, dims))) goto fail;
    float loss;
    BE->mse_forward(&loss, F(p), F(t), D(p, 0), D(p, 1));
    BE->mse_backward(F(d), F(p), F(t), D(p, 0), D(p, 1));
    Py_DECREF(p); Py_DECREF(t);
    return Py_BuildValue("(dN)", (double)loss, d);
fail:
    Py_XDECREF(p); Py_XDECREF(t); Py_XDECREF(d);
    return NULL;
}

/* Validated CRF arguments: emissions [B,K,C], lengths [B] (0..K), trans [C,C], start/end [C],
 * tags [B,K] with ids in 0..C-1 inside each length (tags may be NULL). */
typedef struct {
    PyArrayObject *em, *tags, *len, *tr, *st, *en;
    int B, K, C;
} CrfArgs;

static void crf_release(CrfArgs *a) {
    Py_XDECREF(a->em); Py_XDECREF(a->tags); Py_XDECREF(a->len); Py_XDECREF(a->tr); Py_XDECREF(a->st);
    Py_XDECREF(a->en);
}

static int crf_parse(CrfArgs *a, PyObject *emo, PyObject *tgo, PyObject *lo, PyObject *tro, PyObject *sto, PyObject *eno) {
    memset(a, 0, sizeof *a);
    if (!(a->em = farr(emo, 3, "emissions")) || (tgo && !(a->tags = iarr(tgo, 2, "tags"))) ||
        !(a->len = iarr(lo, 1, "lengths")) || !(a->tr = farr(tro, 2, "transitions")) ||
        !(a->st = farr(sto, 1, "start")) || !(a->en = farr(eno, 1, "end")))
        return -1;
    a->B = D(a->em, 0);
    a->K = D(a->em, 1);
    a->C = D(a->em, 2);
    if (a->C < 1 || D(a->len, 0) != a->B || D(a->tr, 0) != a->C || D(a->tr, 1) != a->C || D(a->st, 0) != a->C ||
        D(a->en, 0) != a->C || (a->tags && (D(a->tags, 0) != a->B || D(a->tags, 1) != a->K))) {
        PyErr_SetString(PyExc_ValueError, "shape mismatch");
        return -1;
    }
    for (int b = 0; b < a->B; b++) {
        int L = I32(a->len)[b];
        if (L < 0 || L > a->K) {
            PyErr_Format(PyExc_ValueError, "lengths[%d] = %d is outside 0..%d", b, L, a->K);
            return -1;
        }
        for (int k = 0; a->tags && k < L; k++) {
            int t = I32(a->tags)[(size_t)b * a->K + k];
            if (t < 0 || t >= a->C) {
                PyErr_Format(PyExc_ValueError, "tags[%d, %d] = %d is outside 0..%d", b, k, t, a->C - 1);
                return -1;
            }
        }
    }
    return 0;
}

/* crf(emissions [B,K,C], tags [B,K], lengths [B], trans [C,C], start [C], end [C])
 * -> (loss, demissions [B,K,C], dtrans, dstart, dend) */
static PyObject *ops_crf(PyObject *s, PyObject *args) {
    PyObject *emo, *tgo, *lo, *tro, *sto, *eno;
    if (!PyArg_ParseTuple(args, "OOOOOO", &emo, &tgo, &lo, &tro, &sto, &eno)) return NULL;
    CrfArgs a;
    PyArrayObject *dem = NULL, *dtr = NULL, *dst = NULL, *den = NULL;
    double *scratch = NULL;
    if (crf_parse(&a, emo, tgo, lo, tro, sto, eno)) goto fail;
    npy_intp ed[3] = {a.B, a.K, a.C}, td[2] = {a.C, a.C}, cd[1] = {a.C};
    if (!(dem = zeros(3, ed)) || !(dtr = zeros(2, td)) || !(dst = zeros(1, cd)) || !(den = zeros(1, cd))) goto fail;
    scratch = PyMem_Malloc(sizeof(double) * (ME_CRF_SCRATCH(a.B, a.K, a.C) + 1));
    if (!scratch) {
        PyErr_NoMemory();
        goto fail;
    }
    float loss;
    Py_BEGIN_ALLOW_THREADS
    BE->crf_forward(&loss, scratch, F(a.em), I32(a.tags), I32(a.len), F(a.tr), F(a.st), F(a.en), a.B, a.K, a.C);
    BE->crf_backward(F(dem), F(dtr), F(dst), F(den), scratch, F(a.em), I32(a.tags), I32(a.len), F(a.tr), F(a.st),
                     F(a.en), a.B, a.K, a.C);
    Py_END_ALLOW_THREADS
    PyMem_Free(scratch);
    crf_release(&a);
    return Py_BuildValue("(dNNNN)", (double)loss, dem, dtr, dst, den);
fail:
    crf_release(&a);
    Py_XDECREF(dem); Py_XDECREF(dtr); Py_XDECREF(dst); Py_XDECREF(den);
    return NULL;
}

/* crf_viterbi(emissions [B,K,C], lengths [B], trans [C,C], start [C], end [C]) -> path int32 [B,K] */
static PyObject *ops_crf_viterbi(PyObject *s, PyObject *args) {
    PyObject *emo, *lo, *tro, *sto, *eno;
    if (!PyArg_ParseTuple(args, "OOOOO", &emo, &lo, &tro, &sto, &eno)) return NULL;
    CrfArgs a;
    PyArrayObject *path = NULL;
    double *scratch = NULL;
    if (crf_parse(&a, emo, NULL, lo, tro, sto, eno)) goto fail;
    npy_intp pd[2] = {a.B, a.K};
    if (!(path = (PyArrayObject *)PyArray_ZEROS(2, pd, NPY_INT32, 0))) goto fail;
    scratch = PyMem_Malloc(sizeof(double) * (ME_CRF_SCRATCH(a.B, a.K, a.C) + 1));
    if (!scratch) {
        PyErr_NoMemory();
        goto fail;
    }
    Py_BEGIN_ALLOW_THREADS
    BE->crf_viterbi(I32(path), scratch, F(a.em), I32(a.len), F(a.tr), F(a.st), F(a.en), a.B, a.K, a.C);
    Py_END_ALLOW_THREADS
    PyMem_Free(scratch);
    crf_release(&a);
    return (PyObject *)path;
fail:
    crf_release(&a);
    Py_XDECREF(path);
    return NULL;
}

static PyObject *ops_sum_squares(PyObject *s, PyObject *args) {
    PyObject *xo;
    if (!PyArg_ParseTuple(args, "O", &xo)) return NULL;
    PyArrayObject *x = farr(xo, 1, "x");
    if (!x) return NULL;
    double v = BE->sum_squares(F(x), (size_t)D(x, 0));
    Py_DECREF(x);
    return PyFloat_FromDouble(v);
}

/* sum_squares_rows(x [V, C], rows [n]) -> sum of squares of those rows (distinct, in range) */
static PyObject *ops_sum_squares_rows(PyObject *s, PyObject *args) {
    PyObject *xo, *ro;
    if (!PyArg_ParseTuple(args, "OO", &xo, &ro)) return NULL;
    PyArrayObject *x = farr(xo, 2, "x"), *r = x ? iarr(ro, 1, "rows") : NULL;
    if (!r) goto fail;
    for (int i = 0; i < D(r, 0); i++)
        if (I32(r)[i] < 0 || I32(r)[i] >= D(x, 0)) FAIL("row out of range");
    double v = BE->sum_squares_rows(F(x), I32(r), D(r, 0), D(x, 1));
    Py_DECREF(x); Py_DECREF(r);
    return PyFloat_FromDouble(v);
fail:
    Py_XDECREF(x); Py_XDECREF(r);
    return NULL;
}

/* adamw(p, g, m, v, lr, beta1, beta2, eps, wd, step, grad_scale=1) -> (p, m, v, g) new arrays (g zeroed) */
static PyObject *ops_adamw(PyObject *s, PyObject *args) {
    PyObject *po, *go, *mo, *vo;
    double lr, b1, b2, eps, wd;
    int step;
    float gscale = 1.0f;
    if (!PyArg_ParseTuple(args, "OOOOdddddi|f", &po, &go, &mo, &vo, &lr, &b1, &b2, &eps, &wd, &step, &gscale))
        return NULL;
    int fl = NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ENSURECOPY;
    PyArrayObject *p = (PyArrayObject *)PyArray_FROMANY(po, NPY_FLOAT32, 1, 1, fl);
    PyArrayObject *g = p ? (PyArrayObject *)PyArray_FROMANY(go, NPY_FLOAT32, 1, 1, fl) : NULL;
    PyArrayObject *m = g ? (PyArrayObject *)PyArray_FROMANY(mo, NPY_FLOAT32, 1, 1, fl) : NULL;
    PyArrayObject *v = m ? (PyArrayObject *)PyArray_FROMANY(vo, NPY_FLOAT32, 1, 1, fl) : NULL;
    if (!v) goto fail;
    if (D(g, 0) != D(p, 0) || D(m, 0) != D(p, 0) || D(v, 0) != D(p, 0) || step < 1) FAIL("bad arguments");
    BE->adamw_update(F(p), F(g), F(m), F(v), (size_t)D(p, 0), lr, b1, b2, eps, wd, step, gscale);
    return Py_BuildValue("(NNNN)", p, m, v, g);
fail:
    Py_XDECREF(p); Py_XDECREF(g); Py_XDECREF(m); Py_XDECREF(v);
    return NULL;
}

/* vmath(name, x) -> float32 array: the CPU backend's vectorised "erf" or "exp" of x */
static PyObject *ops_vmath(PyObject *s, PyObject *args) {
    const char *name;
    PyObject *xo;
    if (!PyArg_ParseTuple(args, "sO", &name, &xo)) return NULL;
    int erf = strcmp(name, "erf") == 0;
    if (!erf && strcmp(name, "exp") != 0) {
        PyErr_Format(PyExc_ValueError, "vmath: unknown function '%s' (erf, exp)", name);
        return NULL;
    }
    PyArrayObject *x = farr(xo, 1, "x"), *out = NULL;
    if (!x) return NULL;
    npy_intp d[1] = {D(x, 0)};
    if (!(out = zeros(1, d))) goto fail;
    Py_BEGIN_ALLOW_THREADS
    if (erf)
        me_verf(F(out), F(x), (size_t)D(x, 0));
    else
        me_vexp(F(out), F(x), (size_t)D(x, 0));
    Py_END_ALLOW_THREADS
    Py_DECREF(x);
    return (PyObject *)out;
fail:
    Py_XDECREF(x);
    return NULL;
}

/* cpu_level(cap=None) -> the vector level CPU kernels use (2 AVX-512, 1 AVX2, 0 baseline); with cap,
 * use at most that level from now on (tests compare the variants). */
static PyObject *cpu_level(PyObject *s, PyObject *args) {
    int cap = -1;
    if (!PyArg_ParseTuple(args, "|i", &cap)) return NULL;
    return PyLong_FromLong(cap >= 0 ? me_cpu_set_level(cap) : me_cpu_level());
}

static PyMethodDef ops_methods[] = {
    {"ops_vmath", ops_vmath, METH_VARARGS, "(name, x) -> the vectorised 'erf' or 'exp' of a float32 array"},
    {"cpu_level", cpu_level, METH_VARARGS,
     "cpu_level(cap=None) -> the vector code level in use (2 AVX-512, 1 AVX2, 0 baseline); cap limits it"},
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
    {"ops_attention_rows_forward", ops_attention_rows_forward, METH_VARARGS,
     "(q, kv, mask, qstart, qpos, NH, p, seed, site) -> (ctx, probs): attention for some query rows"},
    {"ops_attention_rows_backward", ops_attention_rows_backward, METH_VARARGS,
     "(dctx, q, kv, probs, mask, qstart, qpos, NH, p, seed, site) -> (dq, dkv)"},
    {"ops_dropout_rows", ops_dropout_rows, METH_VARARGS,
     "(x, rows, p, seed, site, backward) -> dropout of rows `rows` of a tensor held compactly"},
    {"ops_pool_forward", ops_pool_forward, METH_VARARGS, "(h, w) -> out"},
    {"ops_pool_backward", ops_pool_backward, METH_VARARGS, "(dout, w) -> dh"},
    {"ops_concat_forward", ops_concat_forward, METH_VARARGS, "([parts]) -> out"},
    {"ops_concat_backward", ops_concat_backward, METH_VARARGS, "(dout, col, width) -> dpart"},
    {"ops_combine_forward", ops_combine_forward, METH_VARARGS, "(x, scores|None) -> (out, alpha)"},
    {"ops_combine_backward", ops_combine_backward, METH_VARARGS, "(dout, x, alpha, with_scores) -> (dx, dscores)"},
    {"ops_cross_entropy", ops_cross_entropy, METH_VARARGS, "(logits, targets) -> (loss, probs, dlogits)"},
    {"ops_mse", ops_mse, METH_VARARGS, "(pred, target) -> (loss, dpred)"},
    {"ops_crf", ops_crf, METH_VARARGS, "(emissions, tags, lengths, trans, start, end) -> (loss, dem, dtrans, dstart, dend)"},
    {"ops_crf_viterbi", ops_crf_viterbi, METH_VARARGS, "(emissions, lengths, trans, start, end) -> path"},
    {"ops_sum_squares", ops_sum_squares, METH_VARARGS, "(x) -> sum of squares"},
    {"ops_sum_squares_rows", ops_sum_squares_rows, METH_VARARGS, "(x, rows) -> sum of squares of those rows"},
    {"ops_adamw", ops_adamw, METH_VARARGS,
     "(p, g, m, v, lr, beta1, beta2, eps, wd, step, grad_scale=1) -> (p, m, v, g): g scaled, used, then zeroed"},
    {NULL, NULL, 0, NULL},
};

int me_register_ops(PyObject *module) { return PyModule_AddFunctions(module, ops_methods); }
