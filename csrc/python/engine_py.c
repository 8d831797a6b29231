#include "python/bindings.h"

int me_register_engine(PyObject *module) { return 0; }
