/* multienc.engine._C: module definition; each area registers its own types and functions. */
#define MULTIENC_MODULE_MAIN
#include "python/bindings.h"
#include "common.h"

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

#ifdef MULTIENC_WITH_CUDA
#define CUDA_BUILT Py_True
#else
#define CUDA_BUILT Py_False
#define MULTIENC_CUDA_VERSION ""
#define MULTIENC_CUDA_ARCHS ""
#endif

PyObject *me_param_info_list(const MeParamInfo *info, int n) {
    PyObject *list = PyList_New(n);
    if (!list) return NULL;
    for (int i = 0; i < n; i++) {
        const MeParamInfo *p = &info[i];
        PyObject *shape = p->ndim == 2 ? Py_BuildValue("(LL)", (long long)p->shape[0], (long long)p->shape[1])
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

PyObject *me_copy_flat(PyThread_type_lock lock, const MeBackend *be, float *buf, size_t n, PyObject *arr,
                       int to_host) {
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
    if (to_host)
        be->to_host(host, buf, n * sizeof(float));
    else
        be->to_device(buf, host, n * sizeof(float));
    st = be->status(err);
    PyThread_release_lock(lock);
    Py_END_ALLOW_THREADS
    if (st) return me_raise(st, err);
    Py_RETURN_NONE;
}

static PyObject *build_info(PyObject *self, PyObject *noargs) {
    return Py_BuildValue("{s:O,s:s,s:s,s:s,s:O,s:i}",
                         "cuda", CUDA_BUILT,
                         "cuda_version", MULTIENC_CUDA_VERSION,
                         "cuda_archs", MULTIENC_CUDA_ARCHS,
                         "blas", "OpenBLAS (scipy-openblas32)",
                         "openmp", Py_True,
                         "openmp_max_threads", me_max_threads());
}

static PyMethodDef module_methods[] = {
    {"build_info", build_info, METH_NOARGS, "What this build of multienc.engine._C was compiled with."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "multienc.engine._C", "multienc's C engine.", -1, module_methods,
};

PyMODINIT_FUNC PyInit__C(void) {
    import_array();
    PyObject *m = PyModule_Create(&moduledef);
    if (!m) return NULL;
    if (me_register_engine(m) < 0 || me_register_ops(m) < 0 || me_register_model(m) < 0 || me_register_tokenizer(m) < 0 ||
        me_register_buffers(m) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
