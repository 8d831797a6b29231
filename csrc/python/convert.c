/* Conversion and error helpers every binding file uses (declared in bindings.h): C status codes to
 * Python exceptions, parameter tables to lists, flat buffers to and from numpy arrays, and the
 * config-dict readers. */
#include "python/bindings.h"
#include "common.h"

#include <limits.h>

PyObject *me_raise(int status, const char *message) {
    PyObject *type;
    switch (status) {
    case ME_ERR_VALUE: type = PyExc_ValueError; break;
    case ME_ERR_TYPE: type = PyExc_TypeError; break;
    case ME_ERR_IO: type = PyExc_OSError; break;
    case ME_ERR_NOMEM: type = PyExc_MemoryError; break;
    case ME_ERR_NOTIMPL: type = PyExc_NotImplementedError; break;
    default: type = PyExc_RuntimeError; break;
    }
    PyErr_SetString(type, message && message[0] ? message : "multienc: internal error");
    return NULL;
}

PyObject *me_param_info_list(const MeParamInfo *info, int n) {
    PyObject *list = PyList_New(n);
    if (!list) return NULL;
    for (int i = 0; i < n; i++) {
        const MeParamInfo *p = &info[i];
        PyObject *shape = p->ndim == 3   ? Py_BuildValue("(LLL)", (long long)p->shape[0], (long long)p->shape[1],
                                                         (long long)p->shape[2])
                          : p->ndim == 2 ? Py_BuildValue("(LL)", (long long)p->shape[0], (long long)p->shape[1])
                                         : Py_BuildValue("(L)", (long long)p->shape[0]);
        PyObject *item = shape ? Py_BuildValue("(sNn)", p->name, shape, (Py_ssize_t)p->offset) : NULL;
        if (!item) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, item);
    }
    return list;
}

PyObject *me_copy_flat(PyThread_type_lock lock, const MeBackend *be, float *const *buf, size_t offset, size_t n,
                       PyObject *arr, int to_host) {
    PyArrayObject *a = (PyArrayObject *)arr;
    if (!PyArray_Check(arr)) {
        PyErr_SetString(PyExc_TypeError, "expected a numpy.ndarray");
        return NULL;
    }
    if (PyArray_TYPE(a) != NPY_FLOAT32 || PyArray_NDIM(a) != 1 || !PyArray_IS_C_CONTIGUOUS(a) ||
        (size_t)PyArray_DIM(a, 0) != n || (to_host && !PyArray_ISWRITEABLE(a))) {
        PyErr_Format(PyExc_ValueError, "expected a contiguous%s float32 array of shape (%zu,)",
                     to_host ? " writable" : "", n);
        return NULL;
    }
    void *host = PyArray_DATA(a);
    char err[ME_ERRLEN] = {0};
    int st;
    Py_BEGIN_ALLOW_THREADS
    PyThread_acquire_lock(lock, WAIT_LOCK);
    if (to_host && !*buf)
        memset(host, 0, n * sizeof(float));
    else if (to_host)
        be->to_host(host, *buf + offset, n * sizeof(float));
    else
        be->to_device(*buf + offset, host, n * sizeof(float));
    st = be->status(err);
    PyThread_release_lock(lock);
    Py_END_ALLOW_THREADS
    if (st) return me_raise(st, err);
    Py_RETURN_NONE;
}

/* The entry, or NULL: then *out = dflt, or a KeyError when required (-1). */
static int cfg_entry(PyObject *d, const char *what, const char *key, int required, PyObject **v) {
    *v = PyDict_GetItemString(d, key);
    if (!*v && required) {
        PyErr_Format(PyExc_KeyError, "'%s' is missing from the %s", key, what);
        return -1;
    }
    return 0;
}

int me_cfg_int(PyObject *d, const char *what, const char *key, int required, int dflt, int *out) {
    PyObject *v;
    if (cfg_entry(d, what, key, required, &v)) return -1;
    if (!v) {
        *out = dflt;
        return 0;
    }
    if (!PyLong_Check(v)) {
        PyErr_Format(PyExc_TypeError, "%s '%s' must be an int, got %s", what, key, Py_TYPE(v)->tp_name);
        return -1;
    }
    int overflow;
    long x = PyLong_AsLongAndOverflow(v, &overflow);
    if (x == -1 && PyErr_Occurred()) return -1;
    if (overflow || x < INT_MIN || x > INT_MAX) {
        PyErr_Format(PyExc_ValueError, "%s '%s' = %R is out of range", what, key, v);
        return -1;
    }
    *out = (int)x;
    return 0;
}

int me_cfg_float(PyObject *d, const char *what, const char *key, float dflt, float *out) {
    PyObject *v;
    if (cfg_entry(d, what, key, 0, &v)) return -1;
    if (!v) {
        *out = dflt;
        return 0;
    }
    double x = PyFloat_AsDouble(v);
    if (x == -1.0 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_TypeError)) return -1;
        PyErr_Format(PyExc_TypeError, "%s '%s' must be a number, got %s", what, key, Py_TYPE(v)->tp_name);
        return -1;
    }
    *out = (float)x;
    return 0;
}

const char *me_precision_arg(PyObject *arg) {
    if (!PyUnicode_Check(arg)) {
        PyErr_Format(PyExc_TypeError, "precision must be a str ('fp32' or 'bf16'), not %s", Py_TYPE(arg)->tp_name);
        return NULL;
    }
    return PyUnicode_AsUTF8(arg);
}
