/* multienc.engine._C_nccl: NCCL communicators over the CUDA backend's buffers (data-parallel
 * training with one process per GPU, docs/distributed.md). A separate extension module, built
 * only when nvcc and NCCL are found (setup.py) and imported only by multi-GPU training, so that
 * the CUDA backend itself never needs libnccl. The all-reduce is queued on the CUDA backend's
 * stream (taken from multienc.engine._C_cuda's API capsule), in place, so it runs after the
 * backward that produced the gradients and before the optimizer ops that read them, with no
 * host synchronisation in between. Rank bootstrap (sharing the unique id) is the caller's:
 * MPI in multienc.parallel, a file in the GPU smoke test. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <nccl.h>
#include <stdint.h>
#include <string.h>

#include "cuda/cuda_backend.h"

typedef struct {
    PyObject_HEAD
    ncclComm_t comm;
    cudaStream_t stream;
    int nranks, rank;
} CommObject;

static PyObject *nccl_error(ncclResult_t r, ncclComm_t comm, const char *what) {
    const char *last = comm ? ncclGetLastError(comm) : NULL;
    PyErr_Format(PyExc_RuntimeError, "NCCL %s failed: %s%s%s", what, ncclGetErrorString(r),
                 last && last[0] ? ": " : "", last && last[0] ? last : "");
    return NULL;
}

/* The CUDA backend's stream, or NULL with RuntimeError set (no CUDA model or encoder yet). */
static cudaStream_t backend_stream(void) {
    PyObject *mod = PyImport_ImportModule("multienc.engine._C_cuda");
    if (!mod) return NULL;
    const MeCudaApi *api = PyCapsule_Import(ME_CUDA_CAPSULE, 0);
    Py_DECREF(mod);
    if (!api) return NULL;
    if (api->version != ME_CUDA_API_VERSION) {
        PyErr_Format(PyExc_RuntimeError, "multienc.engine._C_cuda is from another build (API %d, expected %d); "
                     "reinstall multienc", api->version, ME_CUDA_API_VERSION);
        return NULL;
    }
    void *s = api->stream();
    if (!s) {
        PyErr_SetString(PyExc_RuntimeError, "the CUDA backend is not set up in this process: create the CUDA model "
                        "(or encoder) before its NCCL communicator");
        return NULL;
    }
    return (cudaStream_t)s;
}

static PyObject *unique_id(PyObject *self, PyObject *noargs) {
    ncclUniqueId id;
    ncclResult_t r;
    Py_BEGIN_ALLOW_THREADS r = ncclGetUniqueId(&id);
    Py_END_ALLOW_THREADS
    if (r != ncclSuccess) return nccl_error(r, NULL, "ncclGetUniqueId");
    return PyBytes_FromStringAndSize(id.internal, sizeof id.internal);
}

static int Comm_init(CommObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"unique_id", "nranks", "rank", NULL};
    const char *idb;
    Py_ssize_t idn;
    int nranks, rank;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "y#ii", kwlist, &idb, &idn, &nranks, &rank)) return -1;
    if (self->comm) {
        PyErr_SetString(PyExc_RuntimeError, "the communicator is already initialised");
        return -1;
    }
    ncclUniqueId id;
    if (idn != (Py_ssize_t)sizeof id.internal) {
        PyErr_Format(PyExc_ValueError, "unique_id must be the %zu bytes of unique_id(), got %zd",
                     sizeof id.internal, idn);
        return -1;
    }
    if (nranks < 1 || rank < 0 || rank >= nranks) {
        PyErr_Format(PyExc_ValueError, "rank %d is outside 0..%d", rank, nranks - 1);
        return -1;
    }
    memcpy(id.internal, idb, sizeof id.internal);
    cudaStream_t stream = backend_stream(); /* also makes the backend's device current here */
    if (!stream) return -1;
    ncclComm_t comm = NULL;
    ncclResult_t r;
    Py_BEGIN_ALLOW_THREADS r = ncclCommInitRank(&comm, nranks, id, rank);
    Py_END_ALLOW_THREADS
    if (r != ncclSuccess) {
        nccl_error(r, comm, "ncclCommInitRank");
        if (comm) ncclCommAbort(comm);
        return -1;
    }
    self->comm = comm;
    self->stream = stream;
    self->nranks = nranks;
    self->rank = rank;
    return 0;
}

static void Comm_dealloc(CommObject *self) {
    if (self->comm) {
        /* after an error the peers may be gone: abort rather than wait for them */
        ncclResult_t async = ncclSuccess;
        if (ncclCommGetAsyncError(self->comm, &async) != ncclSuccess || async != ncclSuccess)
            ncclCommAbort(self->comm);
        else
            ncclCommDestroy(self->comm);
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Comm_all_reduce(CommObject *self, PyObject *arg) {
    if (!self->comm) {
        PyErr_SetString(PyExc_RuntimeError, "the communicator is not initialised");
        return NULL;
    }
    PyObject *seq = PySequence_Fast(arg, "all_reduce takes a list of (device address, floats)");
    if (!seq) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n > 256) {
        Py_DECREF(seq);
        PyErr_SetString(PyExc_ValueError, "all_reduce: at most 256 buffers per call");
        return NULL;
    }
    unsigned long long addr[256];
    Py_ssize_t count[256];
    for (Py_ssize_t i = 0; i < n; i++)
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), "Kn;each buffer is (device address, floats)",
                              &addr[i], &count[i])) {
            Py_DECREF(seq);
            return NULL;
        }
    Py_DECREF(seq);
    ncclResult_t r = ncclSuccess;
    Py_BEGIN_ALLOW_THREADS
    r = ncclGroupStart();
    for (Py_ssize_t i = 0; r == ncclSuccess && i < n; i++) {
        void *p = (void *)(uintptr_t)addr[i];
        r = ncclAllReduce(p, p, (size_t)count[i], ncclFloat32, ncclSum, self->comm, self->stream);
    }
    ncclResult_t r2 = ncclGroupEnd();
    if (r == ncclSuccess) r = r2;
    Py_END_ALLOW_THREADS
    if (r != ncclSuccess) return nccl_error(r, self->comm, "ncclAllReduce");
    Py_RETURN_NONE;
}

static PyObject *Comm_async_error(CommObject *self, PyObject *noargs) {
    if (!self->comm) Py_RETURN_NONE;
    ncclResult_t async = ncclSuccess, r = ncclCommGetAsyncError(self->comm, &async);
    if (r != ncclSuccess) return nccl_error(r, self->comm, "ncclCommGetAsyncError");
    if (async == ncclSuccess || async == ncclInProgress) Py_RETURN_NONE;
    return PyUnicode_FromString(ncclGetErrorString(async));
}

static PyObject *Comm_get_rank(CommObject *self, void *c) { return PyLong_FromLong(self->rank); }
static PyObject *Comm_get_nranks(CommObject *self, void *c) { return PyLong_FromLong(self->nranks); }

static PyMethodDef Comm_methods[] = {
    {"all_reduce", (PyCFunction)Comm_all_reduce, METH_O,
     "all_reduce([(address, floats), ...]): sum each float32 device buffer across the ranks, in place, queued on "
     "the CUDA backend's stream (one NCCL group; returns before the transfer ends)."},
    {"async_error", (PyCFunction)Comm_async_error, METH_NOARGS,
     "The communicator's asynchronous error (a peer failed, a network error) as a string, or None."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Comm_getset[] = {
    {"rank", (getter)Comm_get_rank, NULL, "This process's rank.", NULL},
    {"nranks", (getter)Comm_get_nranks, NULL, "Number of ranks.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject CommType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "multienc.engine._C_nccl.Communicator",
    .tp_basicsize = sizeof(CommObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Communicator(unique_id, nranks, rank): an NCCL communicator on the CUDA backend's device and stream.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Comm_init,
    .tp_dealloc = (destructor)Comm_dealloc,
    .tp_methods = Comm_methods,
    .tp_getset = Comm_getset,
};

static PyObject *version(PyObject *self, PyObject *noargs) {
    int v = 0;
    ncclGetVersion(&v);
    return PyLong_FromLong(v);
}

static PyMethodDef methods[] = {
    {"unique_id", unique_id, METH_NOARGS, "A new NCCL unique id (bytes) for rank 0 to share with the other ranks."},
    {"version", version, METH_NOARGS, "The NCCL library's version code (e.g. 22809 for 2.28.9)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "multienc.engine._C_nccl", "NCCL all-reduce over multienc's CUDA buffers.", -1, methods,
};

PyMODINIT_FUNC PyInit__C_nccl(void) {
    if (PyType_Ready(&CommType) < 0) return NULL;
    PyObject *m = PyModule_Create(&moduledef);
    if (!m) return NULL;
    Py_INCREF(&CommType);
    if (PyModule_AddObject(m, "Communicator", (PyObject *)&CommType) < 0) {
        Py_DECREF(&CommType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
