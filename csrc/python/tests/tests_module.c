/* multienc.engine._C_tests: module initialisation only. The op test entry points (ops.c, through the
 * driver in op_driver.c) in their own extension, as numpy keeps its C test functions in
 * _multiarray_tests: built by `make build` / `make sanitize` / tests/gpu/run_all.sh
 * (MULTIENC_TEST_EXTENSION=1, see setup.py), never part of a wheel. */
#define MULTIENC_MODULE_MAIN
#include "python/tests/op_driver.h"

#include "common.h"
#include "model/encoder.h"

static int fault_recorded(char *err) {
    return me_error(err, ME_ERR_RUNTIME, "CUDA backend: a kernel failed: an illegal memory access was encountered");
}
static int nothing_recorded(char *err) {
    (void)err;
    return ME_OK;
}

/* alloc_failed(recorded): raise what the engine raises for an allocation that failed on a backend with
 * a device fault recorded (recorded true) or none (me_alloc_failed). */
static PyObject *alloc_failed(PyObject *self, PyObject *arg) {
    (void)self;
    const int recorded = PyObject_IsTrue(arg);
    if (recorded < 0) return NULL;
    MeBackend be = *me_cpu_backend();
    be.status = recorded ? fault_recorded : nothing_recorded;
    char err[ME_ERRLEN] = {0};
    return me_raise(me_alloc_failed(&be, err, "out of memory allocating %d parameters", 7), err);
}

static PyMethodDef methods[] = {
    {"alloc_failed", alloc_failed, METH_O,
     "alloc_failed(recorded): raise what the engine raises for a failed allocation on a backend with a device "
     "fault recorded (True: that fault's RuntimeError) or none (MemoryError)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "multienc.engine._C_tests",
    "Test entry points of multienc's C engine: each backend op on numpy arrays (not shipped).", -1, methods,
};

PyMODINIT_FUNC PyInit__C_tests(void) {
    import_array();
    PyObject *m = PyModule_Create(&moduledef);
    if (!m) return NULL;
    if (me_register_test_ops(m) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
