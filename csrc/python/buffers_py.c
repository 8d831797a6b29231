/* multienc.engine._C.buffer_views / buffer_addresses: the flat parameter and gradient buffers
 * of a Model (the head's, then each LM's) or of an Encoder, for collective operations across
 * processes (data parallelism, docs/distributed.md): numpy views of CPU buffers that MPI reduces
 * in place, device addresses of CUDA buffers that NCCL reduces in place. Callers use them only
 * between steps or in the stages a staged step allows (a buffer that no running call writes). */
#include "python/bindings.h"
#include "common.h"

typedef struct {
    char name[24];
    float *ptr;
    size_t n;
} Buffer;

/* The buffers of obj (at most 65); -1 with an exception set when obj has none (TypeError) or its
 * gradient buffers, made here when they do not exist yet, cannot be. */
static int buffers_of(PyObject *obj, int grads, Buffer *out, const MeBackend **be) {
    MeModel *m = me_model_of(obj);
    if (m) {
        if (grads && me_model_obj_ensure_grads(obj)) return -1;
        *be = m->be;
        snprintf(out[0].name, sizeof out[0].name, "head");
        out[0].ptr = grads ? m->grads : m->params;
        out[0].n = m->nfloats;
        for (int i = 0; i < m->n; i++) {
            snprintf(out[i + 1].name, sizeof out[i + 1].name, "lm.%d", i);
            out[i + 1].ptr = grads ? m->lms[i]->grads : m->lms[i]->params;
            out[i + 1].n = m->lms[i]->nfloats;
        }
        return m->n + 1;
    }
    if (PyObject_TypeCheck(obj, &MeEncoderType) && ((EncoderObject *)obj)->enc) {
        EncoderObject *self = (EncoderObject *)obj;
        MeEncoder *enc = self->enc;
        if (grads) {
            char err[ME_ERRLEN] = {0};
            int st;
            LOCKED_COMPUTE(self, st = me_encoder_ensure_grads(enc, err));
            if (st) {
                me_raise(st, err);
                return -1;
            }
        }
        *be = enc->be;
        snprintf(out[0].name, sizeof out[0].name, "encoder");
        out[0].ptr = grads ? enc->grads : enc->params;
        out[0].n = enc->nfloats;
        return 1;
    }
    PyErr_Format(PyExc_TypeError, "expected an initialised multienc.engine._C.Model or Encoder, got %s",
                 Py_TYPE(obj)->tp_name);
    return -1;
}

static int parse(PyObject *args, const char *fname, PyObject **obj, int *grads) {
    const char *which;
    if (!PyArg_ParseTuple(args, "Os", obj, &which)) return -1;
    if (strcmp(which, "grads") && strcmp(which, "params")) {
        PyErr_Format(PyExc_ValueError, "%s: which must be 'params' or 'grads', got '%s'", fname, which);
        return -1;
    }
    *grads = which[0] == 'g';
    return 0;
}

static PyObject *buffer_views(PyObject *self, PyObject *args) {
    PyObject *obj;
    int grads;
    Buffer b[65];
    const MeBackend *be = NULL;
    if (parse(args, "buffer_views", &obj, &grads)) return NULL;
    int n = buffers_of(obj, grads, b, &be);
    if (n < 0) return NULL;
    if (strcmp(be->name, "cpu") != 0) {
        PyErr_Format(PyExc_RuntimeError, "buffer_views: the buffers live on the '%s' backend, not in host memory; "
                     "use buffer_addresses", be->name);
        return NULL;
    }
    PyObject *list = PyList_New(n);
    for (int i = 0; list && i < n; i++) {
        npy_intp dim = (npy_intp)b[i].n;
        PyObject *arr = PyArray_SimpleNewFromData(1, &dim, NPY_FLOAT32, b[i].ptr);
        if (arr) {
            Py_INCREF(obj); /* the view keeps the model (and so its encoders) alive */
            if (PyArray_SetBaseObject((PyArrayObject *)arr, obj) < 0) Py_CLEAR(arr);
        }
        PyObject *item = arr ? Py_BuildValue("(sN)", b[i].name, arr) : NULL;
        if (!item) {
            Py_CLEAR(list);
            break;
        }
        PyList_SET_ITEM(list, i, item);
    }
    return list;
}

static PyObject *buffer_addresses(PyObject *self, PyObject *args) {
    PyObject *obj;
    int grads;
    Buffer b[65];
    const MeBackend *be = NULL;
    if (parse(args, "buffer_addresses", &obj, &grads)) return NULL;
    int n = buffers_of(obj, grads, b, &be);
    if (n < 0) return NULL;
    PyObject *list = PyList_New(n);
    for (int i = 0; list && i < n; i++) {
        PyObject *item = Py_BuildValue("(sKn)", b[i].name, (unsigned long long)(uintptr_t)b[i].ptr, (Py_ssize_t)b[i].n);
        if (!item) {
            Py_CLEAR(list);
            break;
        }
        PyList_SET_ITEM(list, i, item);
    }
    return list;
}

static PyMethodDef methods[] = {
    {"buffer_views", buffer_views, METH_VARARGS,
     "buffer_views(model_or_encoder, 'params' | 'grads') -> [(name, float32 view)]: the head's buffer ('head') "
     "then each LM's ('lm.i'), or an encoder's ('encoder'); CPU backend only. Writable views of the live memory."},
    {"buffer_addresses", buffer_addresses, METH_VARARGS,
     "buffer_addresses(model_or_encoder, 'params' | 'grads') -> [(name, device address, floats)] in the order of "
     "buffer_views, on any backend (for NCCL)."},
    {NULL, NULL, 0, NULL},
};

int me_register_buffers(PyObject *module) { return PyModule_AddFunctions(module, methods); }
