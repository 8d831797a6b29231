#include "python/bindings.h"

int me_register_ops(PyObject *module) { return 0; }
