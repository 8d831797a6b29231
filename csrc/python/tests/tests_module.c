/* multienc.engine._C_tests: module initialisation only. The op test entry points (ops.c, through the
 * driver in op_driver.c) in their own extension, as numpy keeps its C test functions in
 * _multiarray_tests: built by `make build` / `make sanitize` / tests/gpu/run_all.sh
 * (MULTIENC_TEST_EXTENSION=1, see setup.py), never part of a wheel. */
#define MULTIENC_MODULE_MAIN
#include "python/tests/op_driver.h"

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "multienc.engine._C_tests",
    "Test entry points of multienc's C engine: each backend op on numpy arrays (not shipped).", -1, NULL,
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
