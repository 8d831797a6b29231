/* Tokenizer bindings (issue: tokenizers in C). Placeholder until the tokenizer lands. */
#include "python/bindings.h"

int me_register_tokenizer(PyObject *module) { return 0; }
