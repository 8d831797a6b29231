/* Shared header of the CPython binding files in csrc/python/ (multienc.engine._C and the test extension
 * multienc.engine._C_tests). This folder is the only code that includes Python.h or numpy headers.
 *
 * Sections: the Python and numpy set-up; conversion and error helpers (convert.c); devices and the
 * build (device.c); the areas of multienc.engine._C, each registered by module.c through one
 * me_register_* function. convert.c and device.c are shared by both extensions (setup.py builds
 * them into a static library); each extension's init file defines MULTIENC_MODULE_MAIN. */
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

#include "backend.h"
#include "model/params.h"

/* ------------------------------------------------------------ conversion and errors (convert.c) */

/* Raise the Python exception matching a C status code (see csrc/common.h); returns NULL. */
PyObject *me_raise(int status, const char *message);

/* The precision name of a set_precision call ('fp32' / 'bf16' are checked in C); NULL with a
 * TypeError when arg is not a str. Valid while arg lives. */
const char *me_precision_arg(PyObject *arg);

/* [(name, shape, offset), ...] of a parameter table. */
PyObject *me_param_info_list(const MeParamInfo *info, int n);

/* Copy between n floats of a buffer on `be` from `offset` on and a contiguous float32 numpy array
 * of shape (n,): to_host reads the buffer into the array, else writes it. `*buf` is read under
 * `lock` (a gradient buffer is made at its first need, possibly on another thread); to_host from
 * a buffer not made yet (NULL) gives zeros. Runs under `lock` with the GIL released; None, or
 * NULL with an exception set. */
PyObject *me_copy_flat(PyThread_type_lock lock, const MeBackend *be, float *const *buf, size_t offset, size_t n,
                       PyObject *arr, int to_host);

/* The config dicts the engine, the task model and the tokenizer are built from: entry `key` of
 * dict `d`, which messages call `what` ("engine config", ...). A missing entry is a KeyError when
 * `required`, else `dflt`; a non-number a TypeError; an int outside the C int range a
 * ValueError. 0, or -1 with an exception set. */
int me_cfg_int(PyObject *d, const char *what, const char *key, int required, int dflt, int *out);
int me_cfg_float(PyObject *d, const char *what, const char *key, float dflt, float *out);

/* ------------------------------------------------------------------- devices and build (device.c) */

/* The backend for "cpu", "cuda" or "cuda:N"; NULL with ValueError (bad string) or RuntimeError
 * (CUDA not built, not loadable or no such GPU) set. */
const MeBackend *me_backend_for_device(const char *device);

/* The op table of that device's backend without setting up a device (which ops exist); NULL with
 * the same errors, except that no GPU is needed. */
const MeBackend *me_op_table_for_device(const char *device);

/* ------------------------------------------------------------------- the areas of multienc.engine._C */

/* Each returns 0 on success, -1 with a Python exception set. */
int me_register_build_info(PyObject *module); /* device.c: build_info() */
int me_register_engine(PyObject *module);     /* engine_py.c: Encoder */
int me_register_model(PyObject *module);      /* model_py.c: Model, model_runs_on() */
int me_register_tokenizer(PyObject *module);  /* tokenizer_py.c: Tokenizer, Encoding */
int me_register_buffers(PyObject *module);    /* buffers_py.c: buffer_views, buffer_addresses */

struct MeEncoder;

/* multienc.engine._C.Encoder instances (engine_py.c); the model binding borrows their encoders. `enc`
 * is set once by __init__ and never replaced (a second __init__ is refused); `lock` guards
 * everything *enc holds (see docs/ARCHITECTURE.md, "Threads"). */
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

#include "model/model.h"

/* The task model of a multienc.engine._C.Model, or NULL when obj is none (or not initialised). */
MeModel *me_model_of(PyObject *obj);

/* me_model_ensure_grads on the model of obj (me_model_of(obj) must not be NULL) under every lock
 * it holds; 0, or -1 with an exception set. */
int me_model_obj_ensure_grads(PyObject *obj);

#endif
