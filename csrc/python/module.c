/* multienc.engine._C: module initialisation only. Each area registers its own types and functions
 * (bindings.h lists them); the shared helpers are in convert.c and device.c. The op test entry
 * points are not here: they are the separate extension multienc.engine._C_tests (csrc/python/tests/). */
#define MULTIENC_MODULE_MAIN
#include "python/bindings.h"

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "multienc.engine._C", "multienc's C engine.", -1, NULL,
};

PyMODINIT_FUNC PyInit__C(void) {
    import_array();
    PyObject *m = PyModule_Create(&moduledef);
    if (!m) return NULL;
    if (me_register_build_info(m) < 0 || me_register_engine(m) < 0 || me_register_model(m) < 0 ||
        me_register_tokenizer(m) < 0 || me_register_buffers(m) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
