/* multienc.engine._C.Model: the task model (LMs + combiner + decoder + loss) and its
 * one-call training step. Inputs are checked here; compute runs with the GIL
 * released while holding the model's lock and every LM's lock, in one global order (lock_all). */
#include "python/bindings.h"
#include "common.h"
#include "model/model.h"
#include "model/profile.h"

#include <stdlib.h>

#define MAX_LMS 64

typedef struct {
    PyObject_HEAD
    MeModel *model;
    PyObject *encoders; /* tuple of EncoderObject, kept alive */
    PyThread_type_lock lock;
    /* What a compute call holds: this model's lock, then its encoders' locks in ascending address
     * order. One global order (a model lock before encoder locks, encoder locks by address) means
     * models that share encoders, listed in any order, never wait on each other in a circle. */
    int nlocks;
    PyThread_type_lock locks[1 + MAX_LMS];
} ModelObject;

static int by_address(const void *a, const void *b) {
    const uintptr_t x = (uintptr_t)*(const PyThread_type_lock *)a, y = (uintptr_t)*(const PyThread_type_lock *)b;
    return (x > y) - (x < y);
}

static void lock_all(ModelObject *self) {
    for (int i = 0; i < self->nlocks; i++) PyThread_acquire_lock(self->locks[i], WAIT_LOCK);
}

static void unlock_all(ModelObject *self) {
    for (int i = self->nlocks - 1; i >= 0; i--) PyThread_release_lock(self->locks[i]);
}

/* Entries of Model_init's config dict `cfgd` (all optional). */
#define HEAD_INT(key, field, dflt) me_cfg_int(cfgd, "model config", key, 0, dflt, field)
#define HEAD_FLOAT(key, field, dflt) me_cfg_float(cfgd, "model config", key, dflt, field)

static int Model_init(ModelObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"encoders", "config", NULL};
    PyObject *encs, *cfgd;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO!", kwlist, &encs, &PyDict_Type, &cfgd)) return -1;
    PyObject *tup = PySequence_Tuple(encs);
    if (!tup) return -1;
    Py_ssize_t n = PyTuple_GET_SIZE(tup);
    if (n < 1 || n > MAX_LMS) {
        Py_DECREF(tup);
        PyErr_SetString(PyExc_ValueError, "a model needs between 1 and 64 encoders");
        return -1;
    }
    MeEncoder *lms[MAX_LMS];
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *e = PyTuple_GET_ITEM(tup, i);
        if (!PyObject_TypeCheck(e, &MeEncoderType) || !((EncoderObject *)e)->enc) {
            Py_DECREF(tup);
            PyErr_Format(PyExc_TypeError, "encoders[%zd] is not an initialised multienc.engine._C.Encoder", i);
            return -1;
        }
        lms[i] = ((EncoderObject *)e)->enc;
        for (Py_ssize_t j = 0; j < i; j++)
            if (lms[j] == lms[i]) {
                Py_DECREF(tup);
                PyErr_Format(PyExc_ValueError, "encoders[%zd] is encoders[%zd]: a model needs distinct encoders "
                             "(one encoder's activations cannot serve two positions)", i, j);
                return -1;
            }
    }
    MeHeadConfig c;
    if (HEAD_INT("combine", &c.combine, 0) || HEAD_INT("use_layer_norm", &c.use_layer_norm, 0) ||
        HEAD_FLOAT("ln_eps", &c.ln_eps, 1e-3f) || HEAD_FLOAT("combine_dropout", &c.combine_dropout, 0.0f) ||
        HEAD_INT("task", &c.task, 0) || HEAD_INT("num_classes", &c.num_classes, 2) ||
        HEAD_INT("pool_rows", &c.pool_rows, 1)) {
        Py_DECREF(tup);
        return -1;
    }
    /* Another thread may be computing with a live model: it is never replaced. */
    if (self->model) {
        Py_DECREF(tup);
        PyErr_SetString(PyExc_RuntimeError, "Model is already initialised: create a new Model instead");
        return -1;
    }
    if (!self->lock && !(self->lock = PyThread_allocate_lock())) {
        Py_DECREF(tup);
        PyErr_NoMemory();
        return -1;
    }
    char err[ME_ERRLEN] = {0};
    int st = me_model_create(&self->model, lms, (int)n, &c, lms[0]->be, err);
    if (st) {
        Py_DECREF(tup);
        me_raise(st, err);
        return -1;
    }
    self->encoders = tup;
    self->locks[0] = self->lock;
    for (Py_ssize_t i = 0; i < n; i++) self->locks[1 + i] = ((EncoderObject *)PyTuple_GET_ITEM(tup, i))->lock;
    qsort(self->locks + 1, (size_t)n, sizeof self->locks[0], by_address);
    self->nlocks = 1 + (int)n;
    return 0;
}

static void Model_dealloc(ModelObject *self) {
    me_model_free(self->model);
    Py_XDECREF(self->encoders);
    if (self->lock) PyThread_free_lock(self->lock);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int ready(ModelObject *self) {
    if (!self->model) {
        PyErr_SetString(PyExc_RuntimeError, "Model is not initialised");
        return 0;
    }
    return 1;
}

static PyObject *Model_param_info(ModelObject *self, PyObject *noargs) {
    if (!ready(self)) return NULL;
    return me_param_info_list(self->model->info, self->model->nparams);
}

static PyObject *copy_buffer(ModelObject *self, PyObject *obj, int grads, int to_host) {
    if (!ready(self)) return NULL;
    return me_copy_flat(self->lock, self->model->be, grads ? &self->model->grads : &self->model->params, 0,
                        self->model->nfloats, obj, to_host);
}
static PyObject *Model_read_params(ModelObject *self, PyObject *a) { return copy_buffer(self, a, 0, 1); }
static PyObject *Model_write_params(ModelObject *self, PyObject *a) { return copy_buffer(self, a, 0, 0); }
static PyObject *Model_read_grads(ModelObject *self, PyObject *a) { return copy_buffer(self, a, 1, 1); }

/* Parsed per-LM inputs; arrays are owned references released by free_inputs. */
typedef struct {
    int n, B, K;
    MeLmInput in[MAX_LMS];
    PyArrayObject *arrays[MAX_LMS * 4];
    int narrays;
} Inputs;

static void free_inputs(Inputs *x) {
    for (int i = 0; i < x->narrays; i++) Py_XDECREF(x->arrays[i]);
    x->narrays = 0;
}

static PyArrayObject *take(Inputs *x, PyObject *o, int type, int nd, const char *what, int lm) {
    PyArrayObject *a = (PyArrayObject *)PyArray_FROMANY(o, type, nd, nd, NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED);
    if (!a) {
        PyErr_Format(PyExc_TypeError, "inputs[%d]: %s must be a %d-d %s array", lm, what, nd,
                     type == NPY_INT32 ? "integer" : "float");
        return NULL;
    }
    x->arrays[x->narrays++] = a;
    return a;
}

/* inputs: sequence (one per LM) of (ids [B,T], mask [B,T], types [B,T] | None, pool [B,K*pool_rows,T]) */
static int parse_inputs(ModelObject *self, PyObject *seq, Inputs *x) {
    memset(x, 0, sizeof *x);
    PyObject *tup = PySequence_Tuple(seq);
    if (!tup) return -1;
    x->n = self->model->n;
    if (PyTuple_GET_SIZE(tup) != x->n) {
        PyErr_Format(PyExc_ValueError, "expected inputs for %d language models, got %zd", x->n, PyTuple_GET_SIZE(tup));
        Py_DECREF(tup);
        return -1;
    }
    for (int i = 0; i < x->n; i++) {
        PyObject *ids_o, *mask_o, *types_o, *pool_o;
        if (!PyArg_ParseTuple(PyTuple_GET_ITEM(tup, i), "OOOO;each input is (ids, mask, types, pool)", &ids_o, &mask_o,
                              &types_o, &pool_o))
            goto fail;
        PyArrayObject *ids = take(x, ids_o, NPY_INT32, 2, "ids", i);
        PyArrayObject *mask = ids ? take(x, mask_o, NPY_INT32, 2, "mask", i) : NULL;
        PyArrayObject *types = NULL;
        if (mask && types_o != Py_None) types = take(x, types_o, NPY_INT32, 2, "token types", i);
        PyArrayObject *pool = (mask && (types || types_o == Py_None)) ? take(x, pool_o, NPY_FLOAT32, 3, "pool", i) : NULL;
        if (!pool) goto fail;
        const int pr = self->model->cfg.pool_rows;
        int B = (int)PyArray_DIM(ids, 0), T = (int)PyArray_DIM(ids, 1), K = (int)PyArray_DIM(pool, 1) / pr;
        if (PyArray_DIM(pool, 1) % pr) {
            PyErr_Format(PyExc_ValueError, "inputs[%d]: pool has %d rows per sentence, not a multiple of the "
                         "model's %d pooled rows per output row", i, (int)PyArray_DIM(pool, 1), pr);
            goto fail;
        }
        if (i == 0) {
            x->B = B;
            x->K = K;
        }
        if (B != x->B || K != x->K || PyArray_DIM(mask, 0) != B || PyArray_DIM(mask, 1) != T ||
            (types && (PyArray_DIM(types, 0) != B || PyArray_DIM(types, 1) != T)) || PyArray_DIM(pool, 0) != B ||
            PyArray_DIM(pool, 2) != T) {
            PyErr_Format(PyExc_ValueError,
                         "inputs[%d]: shapes disagree (ids %dx%d; every LM needs the same batch size and rows per "
                         "sentence, mask/types like ids, pool (batch, rows, length))", i, B, T);
            goto fail;
        }
        x->in[i].ids = PyArray_DATA(ids);
        x->in[i].mask = PyArray_DATA(mask);
        x->in[i].types = types ? PyArray_DATA(types) : NULL;
        x->in[i].pool = PyArray_DATA(pool);
        x->in[i].T = T;
    }
    Py_DECREF(tup);
    return 0;
fail:
    Py_DECREF(tup);
    free_inputs(x);
    return -1;
}

/* targets: int class / tag ids [R] for classification and the CRF, float [R, C] (or [R] when C == 1)
 * for regression */
static PyArrayObject *parse_targets(ModelObject *self, PyObject *o, int R) {
    const MeModel *m = self->model;
    int cls = m->cfg.task != ME_TASK_REGRESS;
    PyArrayObject *t = (PyArrayObject *)PyArray_FROMANY(o, cls ? NPY_INT32 : NPY_FLOAT32, 1, 2,
                                                        NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED);
    if (!t) return NULL;
    npy_intp size = PyArray_SIZE(t);
    if ((cls && (PyArray_NDIM(t) != 1 || size != R)) || (!cls && size != (npy_intp)R * m->C)) {
        PyErr_Format(PyExc_ValueError, "targets: expected %d %s (one per row), got %ld", cls ? R : R * m->C,
                     cls ? "class ids" : "values", (long)size);
        Py_DECREF(t);
        return NULL;
    }
    return t;
}

/* lengths: int [B] (words per sentence, for the CRF); None -> NULL, or every sentence's K rows
 * when required (a CRF step). Returns 0, or -1 with an exception set. */
static int parse_lengths(ModelObject *self, PyObject *o, int B, int K, int required, PyArrayObject **out) {
    *out = NULL;
    if (o == Py_None) {
        if (!required) return 0;
        npy_intp d[1] = {B};
        if (!(*out = (PyArrayObject *)PyArray_EMPTY(1, d, NPY_INT32, 0))) return -1;
        for (int b = 0; b < B; b++) ((int32_t *)PyArray_DATA(*out))[b] = K;
        return 0;
    }
    *out = (PyArrayObject *)PyArray_FROMANY(o, NPY_INT32, 1, 1, NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED);
    if (!*out) return -1;
    if (PyArray_DIM(*out, 0) != B) {
        PyErr_Format(PyExc_ValueError, "lengths: expected %d values (one per sentence), got %ld", B,
                     (long)PyArray_DIM(*out, 0));
        Py_CLEAR(*out);
        return -1;
    }
    return 0;
}

/* A training batch: the inputs, targets [R] and lengths (every sentence's K words when none are
 * given for a CRF). Returns 0, or -1 with an exception set and nothing left to free. */
static int parse_batch(ModelObject *self, PyObject *inputs, PyObject *targets_o, PyObject *lengths_o, Inputs *x,
                       PyArrayObject **t, PyArrayObject **lens) {
    *lens = NULL;
    if (parse_inputs(self, inputs, x)) return -1;
    *t = parse_targets(self, targets_o, x->B * x->K);
    if (!*t || parse_lengths(self, lengths_o, x->B, x->K, self->model->cfg.task == ME_TASK_CRF, lens)) {
        Py_XDECREF(*t);
        free_inputs(x);
        return -1;
    }
    return 0;
}

static PyObject *Model_forward(ModelObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"inputs", "targets", "train", "seed", "embedding", "lengths", "decode", NULL};
    PyObject *inputs, *targets_o = Py_None, *lengths_o = Py_None;
    int train = 0, want_emb = 0, decode = 0;
    unsigned long long seed = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|OpKpOp", kwlist, &inputs, &targets_o, &train, &seed, &want_emb,
                                     &lengths_o, &decode))
        return NULL;
    if (!ready(self)) return NULL;
    Inputs x;
    if (parse_inputs(self, inputs, &x)) return NULL;
    MeModel *m = self->model;
    int R = x.B * x.K;
    PyArrayObject *t = NULL, *lens = NULL;
    int crf_needs = m->cfg.task == ME_TASK_CRF && (decode || targets_o != Py_None);
    if ((targets_o != Py_None && !(t = parse_targets(self, targets_o, R))) ||
        parse_lengths(self, lengths_o, x.B, x.K, crf_needs, &lens)) {
        Py_XDECREF(t);
        free_inputs(&x);
        return NULL;
    }
    npy_intp od[2] = {R, m->C}, ad[2] = {m->n, R}, ed[2] = {R, want_emb ? m->E : 0}, pd[2] = {x.B, decode ? x.K : 0};
    PyObject *out = PyArray_ZEROS(2, od, NPY_FLOAT32, 0);
    PyObject *alpha = out ? PyArray_ZEROS(2, ad, NPY_FLOAT32, 0) : NULL;
    PyObject *emb = alpha ? PyArray_ZEROS(2, ed, NPY_FLOAT32, 0) : NULL;
    PyObject *path = emb ? PyArray_ZEROS(2, pd, NPY_INT32, 0) : NULL;
    if (!path) {
        Py_XDECREF(out);
        Py_XDECREF(alpha);
        Py_XDECREF(emb);
        Py_XDECREF(t);
        Py_XDECREF(lens);
        free_inputs(&x);
        return NULL;
    }
    char err[ME_ERRLEN] = {0};
    float loss = 0.0f;
    int st;
    const void *tp = t ? PyArray_DATA(t) : NULL;
    const int32_t *lp = lens ? PyArray_DATA(lens) : NULL;
    float *po = PyArray_DATA((PyArrayObject *)out), *pa = PyArray_DATA((PyArrayObject *)alpha);
    float *pe = want_emb ? PyArray_DATA((PyArrayObject *)emb) : NULL;
    int32_t *pp = decode ? PyArray_DATA((PyArrayObject *)path) : NULL;
    Py_BEGIN_ALLOW_THREADS
    lock_all(self);
    st = me_model_forward(m, x.in, x.B, x.K, lp, tp, train, seed, po, pp, pa, pe, &loss, err);
    unlock_all(self);
    Py_END_ALLOW_THREADS
    Py_XDECREF(t);
    Py_XDECREF(lens);
    free_inputs(&x);
    if (st) {
        Py_DECREF(out);
        Py_DECREF(alpha);
        Py_DECREF(emb);
        Py_DECREF(path);
        return me_raise(st, err);
    }
    PyObject *lo = tp ? PyFloat_FromDouble(loss) : (Py_INCREF(Py_None), Py_None);
    if (!want_emb) {
        Py_DECREF(emb);
        emb = (Py_INCREF(Py_None), Py_None);
    }
    if (decode) return Py_BuildValue("(NNNNN)", out, alpha, lo, emb, path);
    Py_DECREF(path);
    return Py_BuildValue("(NNNN)", out, alpha, lo, emb);
}

static int parse_trainable(ModelObject *self, PyObject *o, int *out) {
    PyObject *tup = PySequence_Tuple(o);
    if (!tup) return -1;
    if (PyTuple_GET_SIZE(tup) != self->model->n) {
        PyErr_Format(PyExc_ValueError, "trainable: expected %d flags", self->model->n);
        Py_DECREF(tup);
        return -1;
    }
    for (int i = 0; i < self->model->n; i++) {
        int v = PyObject_IsTrue(PyTuple_GET_ITEM(tup, i));
        if (v < 0) {
            Py_DECREF(tup);
            return -1;
        }
        out[i] = v;
    }
    Py_DECREF(tup);
    return 0;
}

/* fn(model, trainable, err) on the flags in arg, under every lock with the GIL released */
static PyObject *call_with_trainable(ModelObject *self, PyObject *arg, int (*fn)(MeModel *, const int *, char *)) {
    if (!ready(self)) return NULL;
    int trainable[MAX_LMS];
    if (parse_trainable(self, arg, trainable)) return NULL;
    char err[ME_ERRLEN] = {0};
    int st;
    Py_BEGIN_ALLOW_THREADS
    lock_all(self);
    st = fn(self->model, trainable, err);
    unlock_all(self);
    Py_END_ALLOW_THREADS
    if (st) return me_raise(st, err);
    Py_RETURN_NONE;
}

static PyObject *Model_backward(ModelObject *self, PyObject *arg) {
    return call_with_trainable(self, arg, me_model_backward);
}

static int parse_doubles(PyObject *o, int n, double *out, const char *what) {
    PyObject *tup = PySequence_Tuple(o);
    if (!tup) return -1;
    if (PyTuple_GET_SIZE(tup) != n) {
        PyErr_Format(PyExc_ValueError, "%s: expected %d values", what, n);
        Py_DECREF(tup);
        return -1;
    }
    for (int i = 0; i < n; i++) {
        out[i] = PyFloat_AsDouble(PyTuple_GET_ITEM(tup, i));
        if (out[i] == -1.0 && PyErr_Occurred()) {
            Py_DECREF(tup);
            return -1;
        }
    }
    Py_DECREF(tup);
    return 0;
}

static PyObject *Model_train_step(ModelObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"inputs", "targets", "lr", "weight_decay", "trainable", "seed",
                             "max_grad_norm", "beta1", "beta2", "eps", "lengths", NULL};
    PyObject *inputs, *targets_o, *lr_o, *wd_o, *tr_o, *lengths_o = Py_None;
    unsigned long long seed = 0;
    double max_norm = 5.0, beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOOO|KddddO", kwlist, &inputs, &targets_o, &lr_o, &wd_o, &tr_o,
                                     &seed, &max_norm, &beta1, &beta2, &eps, &lengths_o))
        return NULL;
    if (!ready(self)) return NULL;
    MeModel *m = self->model;
    double lr[MAX_LMS + 2], wd[MAX_LMS + 2];
    int trainable[MAX_LMS];
    if (parse_doubles(lr_o, m->n + 2, lr, "lr") || parse_doubles(wd_o, m->n + 2, wd, "weight_decay") ||
        parse_trainable(self, tr_o, trainable))
        return NULL;
    Inputs x;
    PyArrayObject *t, *lens;
    if (parse_batch(self, inputs, targets_o, lengths_o, &x, &t, &lens)) return NULL;
    MeOptimConfig oc = {lr, wd, trainable, beta1, beta2, eps, max_norm};
    char err[ME_ERRLEN] = {0};
    float loss = 0.0f;
    double gnorm = 0.0;
    int st;
    const void *tp = PyArray_DATA(t);
    Py_BEGIN_ALLOW_THREADS
    lock_all(self);
    st = me_model_train_step(m, x.in, x.B, x.K, lens ? PyArray_DATA(lens) : NULL, tp, seed, &oc, NULL, &loss, &gnorm,
                             err);
    unlock_all(self);
    Py_END_ALLOW_THREADS
    Py_DECREF(t);
    Py_XDECREF(lens);
    free_inputs(&x);
    if (st) return me_raise(st, err);
    return Py_BuildValue("(dd)", (double)loss, gnorm);
}

/* read_adamw(which, first, second) -> step / write_adamw(which, first, second, step): the AdamW moments
 * and update count of the head (which = -1) or of language model `which`, through float32 arrays of its
 * buffer's length. Reading a language model never updated gives zeros and step 0; writing step 0 and
 * zeros to one leaves its moments unallocated (as a fresh model has them). */
static PyObject *adamw_copy(ModelObject *self, PyObject *args, int to_host) {
    int which, step = 0;
    PyObject *first_o, *second_o;
    if (to_host ? !PyArg_ParseTuple(args, "iOO:read_adamw", &which, &first_o, &second_o)
                : !PyArg_ParseTuple(args, "iOOi:write_adamw", &which, &first_o, &second_o, &step))
        return NULL;
    if (!ready(self)) return NULL;
    if (step < 0) {
        PyErr_SetString(PyExc_ValueError, "the optimizer step count must be >= 0");
        return NULL;
    }
    PyArrayObject *arrs[2] = {(PyArrayObject *)first_o, (PyArrayObject *)second_o};
    for (int k = 0; k < 2; k++)
        if (!PyArray_Check((PyObject *)arrs[k]) || PyArray_TYPE(arrs[k]) != NPY_FLOAT32 || PyArray_NDIM(arrs[k]) != 1 ||
            !PyArray_IS_C_CONTIGUOUS(arrs[k]) || (to_host && !PyArray_ISWRITEABLE(arrs[k]))) {
            PyErr_SetString(PyExc_TypeError, "the moments must be contiguous 1-d float32 arrays (writable to read)");
            return NULL;
        }
    float *host[2] = {PyArray_DATA(arrs[0]), PyArray_DATA(arrs[1])};
    npy_intp have[2] = {PyArray_DIM(arrs[0], 0), PyArray_DIM(arrs[1], 0)};
    char err[ME_ERRLEN] = {0};
    int st = ME_OK, *stepp = NULL, skip = 0;
    float *dev[2] = {NULL, NULL};
    size_t numel = 0;
    const MeBackend *be = self->model->be;
    Py_BEGIN_ALLOW_THREADS
    PyThread_acquire_lock(self->lock, WAIT_LOCK);
    st = me_model_adamw_state(self->model, which, 0, &dev[0], &dev[1], &numel, &stepp, err);
    if (!st && ((size_t)have[0] != numel || (size_t)have[1] != numel))
        st = me_error(err, ME_ERR_VALUE, "the moments of optimizer group owner %d have %zu floats, got arrays of "
                      "%ld and %ld", which, numel, (long)have[0], (long)have[1]);
    if (!st && !to_host && !dev[0]) {
        int zero = step == 0;
        for (size_t i = 0; zero && i < numel; i++) zero = host[0][i] == 0.0f && host[1][i] == 0.0f;
        skip = zero;
        if (!skip) st = me_model_adamw_state(self->model, which, 1, &dev[0], &dev[1], &numel, &stepp, err);
    }
    if (!st && !skip) {
        for (int k = 0; k < 2; k++) {
            if (to_host && !dev[k])
                memset(host[k], 0, numel * sizeof(float));
            else if (to_host)
                be->to_host(host[k], dev[k], numel * sizeof(float));
            else
                be->to_device(dev[k], host[k], numel * sizeof(float));
        }
        if (to_host)
            step = *stepp;
        else
            *stepp = step;
        st = be->status(err);
    }
    PyThread_release_lock(self->lock);
    Py_END_ALLOW_THREADS
    if (st) return me_raise(st, err);
    if (to_host) return PyLong_FromLong(step);
    Py_RETURN_NONE;
}
static PyObject *Model_read_adamw(ModelObject *self, PyObject *args) { return adamw_copy(self, args, 1); }
static PyObject *Model_write_adamw(ModelObject *self, PyObject *args) { return adamw_copy(self, args, 0); }

/* ---- the training step in stages, for data parallelism (docs/distributed.md): forward_backward
 * (forward of a shard + the head's backward), backward_lm per LM, then update on the gradients
 * summed across processes; zero_grads for a process whose shard is empty. */

static PyObject *Model_forward_backward(ModelObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"inputs", "targets", "trainable", "seed", "row0", "grad_scale", "lengths", NULL};
    PyObject *inputs, *targets_o, *tr_o, *lengths_o = Py_None;
    unsigned long long seed = 0, row0 = 0;
    double scale = 1.0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOO|KKdO", kwlist, &inputs, &targets_o, &tr_o, &seed, &row0, &scale,
                                     &lengths_o))
        return NULL;
    if (!ready(self)) return NULL;
    MeModel *m = self->model;
    int trainable[64];
    if (parse_trainable(self, tr_o, trainable)) return NULL;
    Inputs x;
    PyArrayObject *t, *lens;
    if (parse_batch(self, inputs, targets_o, lengths_o, &x, &t, &lens)) return NULL;
    char err[ME_ERRLEN] = {0};
    float loss = 0.0f;
    int st;
    const void *tp = PyArray_DATA(t);
    const int32_t *lp = lens ? PyArray_DATA(lens) : NULL;
    Py_BEGIN_ALLOW_THREADS
    lock_all(self);
    st = me_model_forward_rows(m, x.in, x.B, x.K, lp, tp, 1, seed, row0, NULL, NULL, NULL, NULL, &loss, err);
    if (!st) st = me_model_backward_head(m, trainable, (float)scale, err);
    unlock_all(self);
    Py_END_ALLOW_THREADS
    Py_DECREF(t);
    Py_XDECREF(lens);
    free_inputs(&x);
    if (st) return me_raise(st, err);
    return PyFloat_FromDouble(loss);
}

static PyObject *Model_backward_lm(ModelObject *self, PyObject *arg) {
    if (!ready(self)) return NULL;
    long i = PyLong_AsLong(arg);
    if (i == -1 && PyErr_Occurred()) return NULL;
    char err[ME_ERRLEN] = {0};
    int st;
    Py_BEGIN_ALLOW_THREADS
    lock_all(self);
    st = me_model_backward_lm(self->model, (int)i, err);
    unlock_all(self);
    Py_END_ALLOW_THREADS
    if (st) return me_raise(st, err);
    Py_RETURN_NONE;
}

static PyObject *Model_zero_grads(ModelObject *self, PyObject *arg) {
    return call_with_trainable(self, arg, me_model_zero_grads);
}

static PyObject *Model_update(ModelObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"lr", "weight_decay", "trainable", "max_grad_norm", "beta1", "beta2", "eps", NULL};
    PyObject *lr_o, *wd_o, *tr_o;
    double max_norm = 5.0, beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOO|dddd", kwlist, &lr_o, &wd_o, &tr_o, &max_norm, &beta1, &beta2,
                                     &eps))
        return NULL;
    if (!ready(self)) return NULL;
    MeModel *m = self->model;
    double lr[66], wd[66];
    int trainable[64];
    if (parse_doubles(lr_o, m->n + 2, lr, "lr") || parse_doubles(wd_o, m->n + 2, wd, "weight_decay") ||
        parse_trainable(self, tr_o, trainable))
        return NULL;
    MeOptimConfig oc = {lr, wd, trainable, beta1, beta2, eps, max_norm};
    char err[ME_ERRLEN] = {0};
    double gnorm = 0.0;
    int st;
    Py_BEGIN_ALLOW_THREADS
    lock_all(self);
    st = me_model_update(m, &oc, &gnorm, err);
    unlock_all(self);
    Py_END_ALLOW_THREADS
    if (st) return me_raise(st, err);
    return PyFloat_FromDouble(gnorm);
}

static PyObject *Model_prepare_training(ModelObject *self, PyObject *arg) {
    return call_with_trainable(self, arg, me_model_prepare_training);
}

static PyObject *Model_lm_schedule(ModelObject *self, PyObject *noargs) {
    if (!ready(self)) return NULL;
    PyThread_acquire_lock(self->lock, WAIT_LOCK);
    PyObject *r = PyUnicode_FromString(me_model_lm_schedule(self->model));
    PyThread_release_lock(self->lock);
    return r;
}

static PyObject *Model_set_precision(ModelObject *self, PyObject *arg) {
    if (!ready(self)) return NULL;
    const char *precision = me_precision_arg(arg);
    if (!precision) return NULL;
    char err[ME_ERRLEN] = {0};
    int st;
    Py_BEGIN_ALLOW_THREADS
    lock_all(self);
    st = me_model_set_precision(self->model, precision, err);
    unlock_all(self);
    Py_END_ALLOW_THREADS
    if (st) return me_raise(st, err);
    Py_RETURN_NONE;
}

static PyObject *Model_get_precision(ModelObject *self, void *c) {
    if (!ready(self)) return NULL;
    PyThread_acquire_lock(self->lock, WAIT_LOCK);
    PyObject *r = PyUnicode_FromString(self->model->be->precision);
    PyThread_release_lock(self->lock);
    return r;
}

static PyObject *Model_get_num_floats(ModelObject *self, void *c) {
    if (!ready(self)) return NULL;
    return PyLong_FromSize_t(self->model->nfloats);
}

static PyObject *Model_get_embedding_length(ModelObject *self, void *c) {
    if (!ready(self)) return NULL;
    return PyLong_FromLong(self->model->E);
}

static PyMethodDef Model_methods[] = {
    {"param_info", (PyCFunction)Model_param_info, METH_NOARGS, "(name, shape, offset) of the head's parameters."},
    {"read_params", (PyCFunction)Model_read_params, METH_O, "Copy the head's parameters into a float32 array."},
    {"write_params", (PyCFunction)Model_write_params, METH_O, "Set the head's parameters from a float32 array."},
    {"read_grads", (PyCFunction)Model_read_grads, METH_O, "Copy the head's gradients into a float32 array."},
    {"forward", (PyCFunction)(void (*)(void))Model_forward, METH_VARARGS | METH_KEYWORDS,
     "forward(inputs, targets=None, train=False, seed=0, embedding=False, lengths=None, decode=False) -> "
     "(outputs [R, C], weights [n, R], loss | None, embedding [R, E] | None), plus the CRF's Viterbi tags "
     "int32 [B, K] (-1 past each length) when decode. lengths [B]: words per sentence (CRF; default K)."},
    {"backward", (PyCFunction)Model_backward, METH_O,
     "backward(trainable): gradients of the last forward (with targets) into the gradient buffers."},
    {"set_precision", (PyCFunction)Model_set_precision, METH_O,
     "set_precision('fp32' | 'bf16'): the precision of the linear layers of this model and its language models "
     "(bf16: CPUs with AVX512-BF16 only; float32 accumulation, weights, gradients and optimizer state)."},
    {"lm_schedule", (PyCFunction)Model_lm_schedule, METH_NOARGS,
     "lm_schedule() -> how the language models run now: side by side, one after another, or not measured yet."},
    {"prepare_training", (PyCFunction)Model_prepare_training, METH_O,
     "prepare_training(trainable): allocate the gradient buffers and optimizer state of the flagged LMs now, not "
     "in the first step."},
    {"read_adamw", (PyCFunction)Model_read_adamw, METH_VARARGS,
     "read_adamw(which, first, second) -> step: copy the AdamW moments of the head (which=-1) or of language "
     "model `which` into float32 arrays of its buffer's length; returns its update count."},
    {"write_adamw", (PyCFunction)Model_write_adamw, METH_VARARGS,
     "write_adamw(which, first, second, step): set the AdamW moments and update count (resuming a run)."},
    {"train_step", (PyCFunction)(void (*)(void))Model_train_step, METH_VARARGS | METH_KEYWORDS,
     "train_step(inputs, targets, lr, weight_decay, trainable, seed=0, max_grad_norm=5.0, beta1=0.9, "
     "beta2=0.999, eps=1e-8, lengths=None) -> (loss, grad_norm)"},
    {"forward_backward", (PyCFunction)(void (*)(void))Model_forward_backward, METH_VARARGS | METH_KEYWORDS,
     "forward_backward(inputs, targets, trainable, seed=0, row0=0, grad_scale=1.0, lengths=None) -> loss: forward "
     "(train mode) of rows row0.. of a larger batch padded alike (dropout as the whole batch's), then the head's "
     "backward with the loss's gradient times grad_scale. Then backward_lm(i) per LM and update(...)."},
    {"backward_lm", (PyCFunction)Model_backward_lm, METH_O,
     "backward_lm(i): LM i's gradients (zeroed first) after forward_backward; nothing when it is not trainable."},
    {"zero_grads", (PyCFunction)Model_zero_grads, METH_O,
     "zero_grads(trainable): zero the head's gradients and those of the trainable LMs (an empty shard)."},
    {"update", (PyCFunction)(void (*)(void))Model_update, METH_VARARGS | METH_KEYWORDS,
     "update(lr, weight_decay, trainable, max_grad_norm=5.0, beta1=0.9, beta2=0.999, eps=1e-8) -> grad_norm: "
     "clipping and AdamW on the gradients in the buffers (trainable as in the backward)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Model_getset[] = {
    {"num_floats", (getter)Model_get_num_floats, NULL, "Length of the head's parameter buffer.", NULL},
    {"embedding_length", (getter)Model_get_embedding_length, NULL, "Width of the combined vector.", NULL},
    {"precision", (getter)Model_get_precision, NULL, "Precision of the linear layers: 'fp32' or 'bf16'.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject ModelType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "multienc.engine._C.Model",
    .tp_basicsize = sizeof(ModelObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Task model: encoders + combiner + decoder + loss with a one-call training step (low level).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Model_init,
    .tp_dealloc = (destructor)Model_dealloc,
    .tp_methods = Model_methods,
    .tp_getset = Model_getset,
};

MeModel *me_model_of(PyObject *obj) {
    if (!PyObject_TypeCheck(obj, &ModelType) || !((ModelObject *)obj)->model) return NULL;
    return ((ModelObject *)obj)->model;
}

int me_model_obj_ensure_grads(PyObject *obj) {
    ModelObject *self = (ModelObject *)obj;
    char err[ME_ERRLEN] = {0};
    int st;
    Py_BEGIN_ALLOW_THREADS
    lock_all(self);
    st = me_model_ensure_grads(self->model, err);
    unlock_all(self);
    Py_END_ALLOW_THREADS
    if (st) {
        me_raise(st, err);
        return -1;
    }
    return 0;
}

static PyObject *model_runs_on(PyObject *self, PyObject *args) {
    const char *device;
    int task = ME_TASK_CLASSIFY, family = -1;
    if (!PyArg_ParseTuple(args, "s|ii:model_runs_on", &device, &task, &family)) return NULL;
    const MeBackend *be = me_op_table_for_device(device);
    if (!be) {
        if (!PyErr_ExceptionMatches(PyExc_RuntimeError)) return NULL; /* a bad device string */
        PyErr_Clear(); /* CUDA not built or not loadable: nothing runs there */
        Py_RETURN_FALSE;
    }
    char err[ME_ERRLEN] = {0};
    int st = me_model_check_backend(be, task, err);
    for (int f = 0; f <= ME_FAMILY_MODERNBERT && st == ME_OK; f++)
        if (family < 0 || f == family) st = me_encoder_check_backend(f, be, err);
    return PyBool_FromLong(st == ME_OK);
}

static PyObject *cpu_has_bf16(PyObject *self, PyObject *noargs) { return PyBool_FromLong(me_cpu_has_bf16()); }

static PyObject *profile_ops(PyObject *self, PyObject *arg) {
    int on = PyObject_IsTrue(arg);
    if (on < 0) return NULL;
    me_profile_enable(on);
    Py_RETURN_NONE;
}

static PyObject *profile_read(PyObject *self, PyObject *noargs) {
    double sec[ME_PHASE_COUNT];
    me_profile_read(sec);
    PyObject *d = PyDict_New();
    for (int i = 0; d && i < ME_PHASE_COUNT; i++) {
        PyObject *v = PyFloat_FromDouble(sec[i]);
        if (!v || PyDict_SetItemString(d, me_phase_names[i], v) < 0) {
            Py_XDECREF(v);
            Py_CLEAR(d);
            break;
        }
        Py_DECREF(v);
    }
    return d;
}

static PyMethodDef module_methods[] = {
    {"profile_ops", profile_ops, METH_O,
     "profile_ops(on): time the task model's backend calls by phase (process-wide; off by default)."},
    {"profile_read", profile_read, METH_NOARGS,
     "profile_read() -> {phase: seconds} summed since the last read (then reset)."},
    {"cpu_has_bf16", cpu_has_bf16, METH_NOARGS,
     "cpu_has_bf16() -> bool: whether this CPU runs precision='bf16' (AVX512-BF16)."},
    {"model_runs_on", model_runs_on, METH_VARARGS,
     "model_runs_on(device, task=0, family=-1) -> bool: whether the backend of device ('cpu', 'cuda', 'cuda:N') "
     "has every op of a task model (encoders, pooling, combiner, head, loss, optimizer; task 2 = with a CRF) whose "
     "LMs are of engine family `family` (-1: of every family). Reads the backend's op table only: no GPU is "
     "needed to ask."},
    {NULL, NULL, 0, NULL},
};

int me_register_model(PyObject *module) {
    if (PyModule_AddFunctions(module, module_methods) < 0) return -1;
    if (PyType_Ready(&ModelType) < 0) return -1;
    Py_INCREF(&ModelType);
    if (PyModule_AddObject(module, "Model", (PyObject *)&ModelType) < 0) {
        Py_DECREF(&ModelType);
        return -1;
    }
    return 0;
}
