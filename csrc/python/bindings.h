/* Shared header for the CPython binding files in csrc/python/.
 * This directory is the only code that includes Python.h or numpy headers.
 * Each binding file exposes one `me_register_*` function that module.c calls. */
#ifndef MULTIENC_BINDINGS_H
#define MULTIENC_BINDINGS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#define PY_ARRAY_UNIQUE_SYMBOL multienc_ARRAY_API
#ifndef MULTIENC_MODULE_MAIN
#define NO_IMPORT_ARRAY
#endif
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>

#include <pythread.h>

struct MeEncoder;

/* multienc.engine._C.Encoder instances (engine_py.c); the model binding borrows their encoders. */
typedef struct {
    PyObject_HEAD
    struct MeEncoder *enc;
    PyThread_type_lock lock;
} EncoderObject;
extern PyTypeObject MeEncoderType;

/* Run `stmt` holding `lock`, with the GIL released. */
#define LOCKED_COMPUTE(self, stmt)                          \
    do {                                                    \
        Py_BEGIN_ALLOW_THREADS                              \
        PyThread_acquire_lock((self)->lock, WAIT_LOCK);     \
        stmt;                                               \
        PyThread_release_lock((self)->lock);                \
        Py_END_ALLOW_THREADS                                \
    } while (0)
#include "backend.h"

/* Each returns 0 on success, -1 with a Python exception set. */
int me_register_engine(PyObject *module);
int me_register_ops(PyObject *module);
int me_register_model(PyObject *module);
int me_register_tokenizer(PyObject *module);

/* The backend for "cpu", "cuda" or "cuda:N"; NULL with ValueError (bad string)
 * or RuntimeError (CUDA not built, not loadable or no such GPU) set. */
const MeBackend *me_backend_for_device(const char *device);

/* The op table of that device's backend without setting up a device (which ops exist);
 * NULL with the same errors, except that no GPU is needed. */
const MeBackend *me_op_table_for_device(const char *device);

#include "model/params.h"

/* [(name, shape, offset), ...] of a parameter table. */
PyObject *me_param_info_list(const MeParamInfo *info, int n);

/* Copy between a parameter-sized buffer on `be` (n floats) and a contiguous float32
 * numpy array of shape (n,): to_host reads the buffer into the array, else writes it.
 * Runs under `lock` with the GIL released; None, or NULL with an exception set. */
PyObject *me_copy_flat(PyThread_type_lock lock, const MeBackend *be, float *buf, size_t n, PyObject *arr,
                       int to_host);

#include "model/model.h"

/* The task model of a multienc.engine._C.Model, or NULL when obj is none (or not initialised). */
MeModel *me_model_of(PyObject *obj);

/* multienc.engine._C.buffer_views / buffer_addresses (buffers_py.c). */
int me_register_buffers(PyObject *module);

/* Raise the Python exception matching a C status code (see csrc/common.h). */
PyObject *me_raise(int status, const char *message);

#endif
