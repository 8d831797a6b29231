/* What this build runs on. Device strings -> backends: "cpu", "cuda" (= "cuda:0") or "cuda:N";
 * the CUDA backend is reached through the capsule of multienc.engine._C_cuda, imported here on first use
 * (see csrc/python/cuda_module.c). And multienc.engine._C.build_info(): what the build was compiled with. */
#include "python/bindings.h"
#include "common.h"
#include "cuda/cuda_backend.h"

#include <stdlib.h>
#include <string.h>

/* "cuda" -> 0, "cuda:N" -> N, anything else -> -1 */
static int cuda_index(const char *device) {
    if (strcmp(device, "cuda") == 0) return 0;
    if (strncmp(device, "cuda:", 5) != 0 || !device[5]) return -1;
    char *end;
    long n = strtol(device + 5, &end, 10);
    if (*end || n < 0 || n > 1023 || device[5] < '0' || device[5] > '9') return -1;
    return (int)n;
}

#ifdef MULTIENC_WITH_CUDA
/* The API table of multienc.engine._C_cuda (imported on first use), or NULL with RuntimeError set. */
static const MeCudaApi *cuda_api(const char *device) {
    PyObject *mod = PyImport_ImportModule("multienc.engine._C_cuda");
    if (!mod) {
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyObject *msg = value ? PyObject_Str(value) : NULL;
        PyErr_Format(PyExc_RuntimeError,
                     "device '%s' asked for, but the CUDA part of multienc could not be loaded: %s",
                     device, msg ? PyUnicode_AsUTF8(msg) : "unknown error");
        Py_XDECREF(msg);
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(tb);
        return NULL;
    }
    const MeCudaApi *api = PyCapsule_Import(ME_CUDA_CAPSULE, 0);
    Py_DECREF(mod);
    if (!api) return NULL;
    if (api->version != ME_CUDA_API_VERSION) {
        PyErr_Format(PyExc_RuntimeError,
                     "multienc.engine._C_cuda is from another build (API %d, expected %d); reinstall multienc",
                     api->version, ME_CUDA_API_VERSION);
        return NULL;
    }
    return api;
}
#endif

/* Index of a CUDA device string, or -1 with ValueError (bad string) or RuntimeError (a build
 * without CUDA) set. */
static int checked_cuda_index(const char *device) {
    int index = cuda_index(device);
    if (index < 0) {
        PyErr_Format(PyExc_ValueError, "device must be 'cpu', 'cuda' or 'cuda:N', got '%s'", device);
        return -1;
    }
#ifndef MULTIENC_WITH_CUDA
    PyErr_Format(PyExc_RuntimeError,
                 "device '%s' asked for, but this multienc was built without CUDA (nvcc was not "
                 "found at install time, or MULTIENC_CUDA=0)", device);
    return -1;
#else
    return index;
#endif
}

const MeBackend *me_backend_for_device(const char *device) {
    if (strcmp(device, "cpu") == 0) return me_cpu_backend();
    int index = checked_cuda_index(device);
    if (index < 0) return NULL;
#ifdef MULTIENC_WITH_CUDA
    const MeCudaApi *api = cuda_api(device);
    if (!api) return NULL;
    char err[ME_ERRLEN] = {0};
    const MeBackend *be;
    Py_BEGIN_ALLOW_THREADS be = api->backend(index, err);
    Py_END_ALLOW_THREADS
    if (!be) {
        PyErr_Format(PyExc_RuntimeError, "device '%s' is not available: %s", device, err);
        return NULL;
    }
    return be;
#else
    return NULL;
#endif
}

const MeBackend *me_op_table_for_device(const char *device) {
    if (strcmp(device, "cpu") == 0) return me_cpu_backend();
    if (checked_cuda_index(device) < 0) return NULL;
#ifdef MULTIENC_WITH_CUDA
    const MeCudaApi *api = cuda_api(device);
    return api ? api->op_table() : NULL;
#else
    return NULL;
#endif
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

static PyMethodDef build_methods[] = {
    {"build_info", build_info, METH_NOARGS, "What this build of multienc.engine._C was compiled with."},
    {NULL, NULL, 0, NULL},
};

int me_register_build_info(PyObject *module) { return PyModule_AddFunctions(module, build_methods); }
