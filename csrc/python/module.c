/* multienc._C: module definition; each area registers its own types and functions. */
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
    {"build_info", build_info, METH_NOARGS, "What this build of multienc._C was compiled with."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "multienc._C", "multienc's C engine.", -1, module_methods,
};

PyMODINIT_FUNC PyInit__C(void) {
    import_array();
    PyObject *m = PyModule_Create(&moduledef);
    if (!m) return NULL;
    if (me_register_engine(m) < 0 || me_register_ops(m) < 0 || me_register_model(m) < 0 || me_register_tokenizer(m) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
