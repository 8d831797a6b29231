/* me_op_call: parse -> convert -> check -> allocate -> stage -> run (GIL released) -> copy back ->
 * status -> clean up, the same for every op of multienc.engine._C_tests (see op_driver.h). */
#include "python/tests/op_driver.h"
#include "common.h"

#include <limits.h>
#include <stdarg.h>
#include <string.h>

#define CAPSULE "multienc.engine._C_tests.op"

int op_fail(const char *message) {
    PyErr_SetString(PyExc_ValueError, message);
    return -1;
}

int op_result(OpCall *c, int k, int nd, ...) {
    va_list ap;
    va_start(ap, nd);
    c->res_nd[k] = nd;
    for (int d = 0; d < nd; d++) c->res_dims[k][d] = va_arg(ap, int);
    va_end(ap);
    return 0;
}

static int count_args(const OpDesc *op) {
    int n = 0;
    while (n < OP_MAX_ARGS && op->args[n].kind != ARG_END) n++;
    return n;
}

static PyArrayObject *to_array(PyObject *o, const OpArg *a, int type, int copy) {
    int flags = NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED | (copy ? NPY_ARRAY_ENSURECOPY : 0);
    PyArrayObject *arr = (PyArrayObject *)PyArray_FROMANY(o, type, a->ndim, a->ndim, flags);
    if (!arr)
        PyErr_Format(PyExc_ValueError, "%s: expected a %d-d %s array", a->name, a->ndim,
                     type == NPY_INT32 ? "int" : "float");
    return arr;
}

static int to_parts(OpCall *c, PyObject *o, const OpArg *a) {
    PyObject *tup = PySequence_Tuple(o);
    if (!tup) return -1;
    Py_ssize_t n = PyTuple_GET_SIZE(tup);
    int st = 0;
    if (n < 1 || n > OP_MAX_PARTS) {
        PyErr_Format(PyExc_ValueError, "1..%d inputs", OP_MAX_PARTS);
        st = -1;
    }
    const OpArg part = {ARG_F32, "part", a->ndim};
    for (Py_ssize_t i = 0; !st && i < n; i++)
        if (!(c->part[c->nparts++] = to_array(PyTuple_GET_ITEM(tup, i), &part, NPY_FLOAT32, 0))) st = -1;
    Py_DECREF(tup);
    return st;
}

/* Positional argument i of the op into c->arr / c->val / c->part. */
static int convert(OpCall *c, int i, PyObject *o) {
    const OpArg *a = &c->op->args[i];
    switch (a->kind) {
    case ARG_F32:
    case ARG_F32_INOUT:
        return (c->arr[i] = to_array(o, a, NPY_FLOAT32, a->kind == ARG_F32_INOUT)) ? 0 : -1;
    case ARG_F32_OPT:
        return o == Py_None || (c->arr[i] = to_array(o, a, NPY_FLOAT32, 0)) ? 0 : -1;
    case ARG_I32:
        return (c->arr[i] = to_array(o, a, NPY_INT32, 0)) ? 0 : -1;
    case ARG_F32_LIST:
        return to_parts(c, o, a);
    case ARG_INT: {
        long v = PyLong_AsLong(o);
        if (v == -1 && PyErr_Occurred()) return -1;
        if (v < INT_MIN || v > INT_MAX) {
            PyErr_Format(PyExc_OverflowError, "%s = %ld does not fit a C int", a->name, v);
            return -1;
        }
        c->val[i].i = (int)v;
        return 0;
    }
    case ARG_FLOAT:
    case ARG_DOUBLE: {
        double v = PyFloat_AsDouble(o);
        if (v == -1.0 && PyErr_Occurred()) return -1;
        if (a->kind == ARG_FLOAT)
            c->val[i].f = (float)v;
        else
            c->val[i].d = v;
        return 0;
    }
    case ARG_U64: {
        unsigned long long v = PyLong_AsUnsignedLongLongMask(o);
        if (v == (unsigned long long)-1 && PyErr_Occurred()) return -1;
        c->val[i].u = v;
        return 0;
    }
    case ARG_BOOL:
        return (c->val[i].i = PyObject_IsTrue(o)) < 0 ? -1 : 0;
    case ARG_SIZE:
        c->val[i].n = PyLong_AsSsize_t(o);
        return c->val[i].n == -1 && PyErr_Occurred() ? -1 : 0;
    case ARG_END:
        break;
    }
    PyErr_SetString(PyExc_SystemError, "multienc.engine._C_tests: bad argument kind");
    return -1;
}

/* "cpu:staged", a device of this extension only: the CPU backend's table at another address, so
 * the driver takes the device path (separate buffers, copies in and out) on any machine. */
static const MeBackend *staged_cpu(void) {
    static MeBackend table;
    if (!table.name) {
        table = *me_cpu_backend();
        table.name = "cpu:staged";
    }
    return &table;
}

/* The backend of the trailing device argument (None or absent: "cpu"), with every function the
 * op calls. */
static const MeBackend *backend(const OpDesc *op, PyObject *device) {
    const char *name = "cpu";
    if (device && device != Py_None) {
        if (!PyUnicode_Check(device)) {
            PyErr_Format(PyExc_TypeError, "%s: device must be a str or None", op->name);
            return NULL;
        }
        if (!(name = PyUnicode_AsUTF8(device))) return NULL;
    }
    const MeBackend *be = strcmp(name, "cpu:staged") == 0 ? staged_cpu() : me_backend_for_device(name);
    for (int u = 0; be && u < OP_MAX_USES && op->uses[u].name; u++) {
        void (*fn)(void);
        memcpy(&fn, (const char *)be + op->uses[u].offset, sizeof fn);
        if (!fn) {
            PyErr_Format(PyExc_NotImplementedError, "%s: the '%s' backend has no %s yet", op->name, be->name,
                         op->uses[u].name);
            return NULL;
        }
    }
    return be;
}

/* Parse and convert the arguments, check them, allocate the results. 0, or -1 with an exception. */
static int prepare(OpCall *c, PyObject *args) {
    const OpDesc *op = c->op;
    const int n = count_args(op);
    const Py_ssize_t given = PyTuple_GET_SIZE(args);
    if (given < n || given > n + op->device) {
        PyErr_Format(PyExc_TypeError, "%s() takes %d%s positional arguments, got %zd (see its __doc__)", op->name,
                     n, op->device ? " or, with a device, one more" : "", given);
        return -1;
    }
    if (!(c->be = backend(op, given > n ? PyTuple_GET_ITEM(args, n) : NULL))) return -1;
    for (int i = 0; i < n; i++)
        if (convert(c, i, PyTuple_GET_ITEM(args, i))) return -1;
    if (op->check(c)) return -1;
    for (int k = 0; k < OP_MAX_RESULTS && op->res[k].kind != RES_END; k++) {
        const OpResKind kind = op->res[k].kind;
        if (kind == RES_LOSS) op_result(c, k, 1, 1);
        if (kind != RES_F32 && kind != RES_I32 && kind != RES_LOSS) continue;
        if (c->res_nd[k] < -1) {
            PyErr_Format(PyExc_SystemError, "%s: result %d has no shape", op->name, k);
            return -1;
        }
        if (c->res_nd[k] >= 0 &&
            !(c->res[k] = (PyArrayObject *)PyArray_ZEROS(c->res_nd[k], c->res_dims[k],
                                                         kind == RES_I32 ? NPY_INT32 : NPY_FLOAT32, 0)))
            return -1;
    }
    return 0;
}

/* An array as the backend sees it: its host data, or a device copy. */
typedef struct {
    void *host;
    size_t bytes;
    void **slot; /* where run finds it */
    void *dev;
    int back;    /* copied back to the host after run */
} Staged;

static int add_staged(Staged *s, int n, PyArrayObject *a, void **slot, int back) {
    if (!a) return n;
    s[n] = (Staged){PyArray_DATA(a), (size_t)PyArray_NBYTES(a), slot, NULL, back};
    return n + 1;
}

/* GIL released: stage, run, copy back, release. A status code, the message in err. */
static int stage_and_run(OpCall *c, Staged *s, int n, char *err) {
    const MeBackend *be = c->be;
    const int host = be == me_cpu_backend();
    int st = ME_OK;
    for (int i = 0; i < n && st == ME_OK; i++) {
        if (host) {
            *s[i].slot = s[i].host;
        } else if ((s[i].dev = be->alloc(s[i].bytes ? s[i].bytes : sizeof(float)))) {
            be->to_device(s[i].dev, s[i].host, s[i].bytes); /* results too: ops may accumulate */
            *s[i].slot = s[i].dev;
        } else {
            st = me_error(err, ME_ERR_NOMEM, "%s: out of device memory", c->op->name);
        }
    }
    if (st == ME_OK && c->scratch_bytes && !(c->scratch = be->alloc(c->scratch_bytes)))
        st = me_error(err, ME_ERR_NOMEM, "%s: out of memory for scratch", c->op->name);
    if (st == ME_OK) {
        c->op->run(c);
        for (int i = 0; i < n; i++)
            if (s[i].back && !host) be->to_host(s[i].host, s[i].dev, s[i].bytes);
        st = be->status(err);
    }
    for (int i = 0; i < n; i++)
        if (s[i].dev) be->release(s[i].dev);
    if (c->scratch) be->release(c->scratch);
    c->scratch = NULL;
    return st;
}

static PyObject *result_item(OpCall *c, int k) {
    const OpRes *r = &c->op->res[k];
    PyObject *item;
    switch (r->kind) {
    case RES_LOSS:
        return PyFloat_FromDouble(*(const float *)PyArray_DATA(c->res[k]));
    case RES_RET:
        return PyFloat_FromDouble(c->ret);
    case RES_ARG:
        item = (PyObject *)c->arr[r->arg];
        break;
    default:
        item = c->res[k] ? (PyObject *)c->res[k] : Py_None;
        break;
    }
    Py_INCREF(item);
    return item;
}

/* The run and the return value. */
static PyObject *execute(OpCall *c) {
    Staged s[OP_MAX_ARGS + OP_MAX_PARTS + OP_MAX_RESULTS];
    int n = 0, nres = 0;
    for (int i = 0; i < OP_MAX_ARGS; i++)
        n = add_staged(s, n, c->arr[i], &c->p[i], c->op->args[i].kind == ARG_F32_INOUT);
    for (int j = 0; j < c->nparts; j++) n = add_staged(s, n, c->part[j], (void **)&c->pp[j], 0);
    for (int k = 0; k < OP_MAX_RESULTS && c->op->res[k].kind != RES_END; k++, nres++)
        n = add_staged(s, n, c->res[k], &c->out[k], 1);
    char err[ME_ERRLEN] = {0};
    int st;
    Py_BEGIN_ALLOW_THREADS
    st = stage_and_run(c, s, n, err);
    Py_END_ALLOW_THREADS
    if (st) return me_raise(st, err);
    if (nres == 1) return result_item(c, 0);
    PyObject *tup = PyTuple_New(nres);
    for (int k = 0; tup && k < nres; k++) {
        PyObject *item = result_item(c, k);
        if (!item) Py_CLEAR(tup);
        else PyTuple_SET_ITEM(tup, k, item);
    }
    return tup;
}

static PyObject *op_call(PyObject *self, PyObject *args) {
    OpCall c;
    memset(&c, 0, sizeof c);
    if (!(c.op = PyCapsule_GetPointer(self, CAPSULE))) return NULL;
    for (int k = 0; k < OP_MAX_RESULTS; k++) c.res_nd[k] = -2; /* not set by check */
    PyObject *out = prepare(&c, args) ? NULL : execute(&c);
    for (int i = 0; i < OP_MAX_ARGS; i++) Py_XDECREF(c.arr[i]);
    for (int j = 0; j < c.nparts; j++) Py_XDECREF(c.part[j]);
    for (int k = 0; k < OP_MAX_RESULTS; k++) Py_XDECREF(c.res[k]);
    return out;
}

/* "ops_x(a, b[, device]) -> what": the signature from the argument table, then the op's doc. */
static char *signature_doc(const OpDesc *op) {
    size_t len = strlen(op->name) + strlen(op->doc) + 32;
    for (int i = 0; i < count_args(op); i++) len += strlen(op->args[i].name) + 2;
    char *doc = PyMem_Malloc(len);
    if (!doc) return NULL;
    size_t at = (size_t)snprintf(doc, len, "%s(", op->name);
    for (int i = 0; i < count_args(op); i++) at += (size_t)snprintf(doc + at, len - at, "%s%s", i ? ", " : "", op->args[i].name);
    snprintf(doc + at, len - at, "%s) %s", op->device ? "[, device]" : "", op->doc);
    return doc;
}

int me_register_ops(PyObject *module, OpDesc *ops, int n) {
    PyObject *modname = PyModule_GetNameObject(module);
    if (!modname) return -1;
    for (int i = 0; i < n; i++) {
        char *doc = signature_doc(&ops[i]); /* kept for the life of the process, as the module */
        if (!doc) {
            Py_DECREF(modname);
            PyErr_NoMemory();
            return -1;
        }
        ops[i].def = (PyMethodDef){ops[i].name, (PyCFunction)op_call, METH_VARARGS, doc};
        PyObject *cap = PyCapsule_New(&ops[i], CAPSULE, NULL);
        PyObject *fn = cap ? PyCFunction_NewEx(&ops[i].def, cap, modname) : NULL;
        Py_XDECREF(cap);
        if (!fn || PyModule_AddObject(module, ops[i].name, fn) < 0) {
            Py_XDECREF(fn);
            Py_DECREF(modname);
            return -1;
        }
    }
    Py_DECREF(modname);
    return 0;
}
