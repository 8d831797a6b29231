/* multienc.engine._C_cuda: the CUDA backend as its own extension module, loaded only
 * when a CUDA device is asked for (or cuda_available() is called), so that
 * `import multienc` and the CPU backend never need the CUDA libraries. It
 * publishes the backend's entry points to multienc.engine._C as a capsule. Built
 * only when nvcc is found (setup.py); not part of multienc.engine._C. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "cuda/cuda_backend.h"

static const MeCudaApi API = {ME_CUDA_API_VERSION, me_cuda_backend, me_cuda_op_table, me_cuda_stream};

static PyObject *device_count(PyObject *self, PyObject *noargs) {
    int n;
    Py_BEGIN_ALLOW_THREADS n = me_cuda_device_count();
    Py_END_ALLOW_THREADS
    return PyLong_FromLong(n);
}

static PyObject *mem_info(PyObject *self, PyObject *noargs) {
    size_t free_b = 0, total_b = 0;
    if (me_cuda_mem_info(&free_b, &total_b)) {
        PyErr_SetString(PyExc_RuntimeError, "the CUDA backend is not initialised (create a CUDA encoder first)");
        return NULL;
    }
    return Py_BuildValue("(nn)", (Py_ssize_t)free_b, (Py_ssize_t)total_b);
}

static PyMethodDef methods[] = {
    {"device_count", device_count, METH_NOARGS,
     "Number of visible CUDA devices this build can run on (compute capability >= 8.0); 0 without a driver."},
    {"mem_info", mem_info, METH_NOARGS,
     "(free, total) bytes of the backend's device, once a CUDA encoder exists."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "multienc.engine._C_cuda", "multienc's CUDA backend (loaded on demand).", -1, methods,
};

PyMODINIT_FUNC PyInit__C_cuda(void) {
    PyObject *m = PyModule_Create(&moduledef);
    if (!m) return NULL;
    PyObject *cap = PyCapsule_New((void *)&API, ME_CUDA_CAPSULE, NULL);
    if (!cap || PyModule_AddObject(m, "api", cap) < 0) {
        Py_XDECREF(cap);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
