/* multienc.engine._C.Encoder: the C encoder as a Python type, on the backend of its
 * `device` ("cpu", "cuda", "cuda:N"). Arrays are checked here (dtype, shape,
 * contiguity); values are checked by the model. Compute runs with the GIL
 * released under a per-object lock. */
#include "python/bindings.h"
#include "common.h"
#include "model/encoder.h"
#include <math.h>

/* Entries of Encoder_init's config dict `cfgd`. */
#define ENGINE_INT(key, field, required, dflt) me_cfg_int(cfgd, "engine config", key, required, dflt, field)
#define ENGINE_FLOAT(key, field, dflt) me_cfg_float(cfgd, "engine config", key, dflt, field)

/* An engine config dict (multienc.engine.encoder.engine_config) as the C struct. */
static int parse_config(PyObject *cfgd, MeEncoderConfig *out) {
    MeEncoderConfig c;
    if (ENGINE_INT("family", &c.family, 1, 0) || ENGINE_INT("vocab_size", &c.vocab_size, 1, 0) ||
        ENGINE_INT("hidden_size", &c.hidden_size, 1, 0) || ENGINE_INT("num_hidden_layers", &c.num_layers, 1, 0) ||
        ENGINE_INT("num_attention_heads", &c.num_heads, 1, 0) ||
        ENGINE_INT("intermediate_size", &c.intermediate_size, 1, 0) ||
        ENGINE_INT("max_position_embeddings", &c.max_position_embeddings, 1, 0) ||
        ENGINE_INT("type_vocab_size", &c.type_vocab_size, 1, 0) ||
        ENGINE_INT("task_type_vocab_size", &c.task_type_vocab_size, 0, 0) ||
        ENGINE_INT("embedding_size", &c.embedding_size, 0, c.hidden_size) ||
        ENGINE_INT("num_hidden_groups", &c.num_groups, 0, 1) ||
        ENGINE_INT("inner_group_num", &c.inner_group_num, 0, 1) ||
        ENGINE_INT("frozen_position_embeddings", &c.frozen_positions, 0, 0) ||
        ENGINE_INT("activation", &c.activation, 1, 0) || ENGINE_INT("pad_token_id", &c.pad_token_id, 0, -1) ||
        ENGINE_INT("relative_attention_num_buckets", &c.relative_buckets, 0, 0) ||
        ENGINE_INT("position_biased_input", &c.position_biased_input, 0, 1) ||
        ENGINE_INT("relative_attention", &c.relative_attention, 0, 0) ||
        ENGINE_INT("position_buckets", &c.position_buckets, 0, -1) ||
        ENGINE_INT("max_relative_positions", &c.max_relative_positions, 0, -1) ||
        ENGINE_INT("pos_att", &c.pos_att, 0, 0) || ENGINE_INT("share_att_key", &c.share_att_key, 0, 0) ||
        ENGINE_INT("norm_rel_ebd", &c.norm_rel_ebd, 0, 0) ||
        ENGINE_INT("zero_key_biases", &c.zero_key_biases, 0, 0) ||
        ENGINE_INT("conv_kernel_size", &c.conv_kernel_size, 0, 0) ||
        ENGINE_INT("conv_groups", &c.conv_groups, 0, 1) || ENGINE_INT("conv_act", &c.conv_act, 0, 0) ||
        ENGINE_FLOAT("layer_norm_eps", &c.layer_norm_eps, 1e-12f) ||
        ENGINE_FLOAT("hidden_dropout_prob", &c.hidden_dropout, 0.1f) ||
        ENGINE_FLOAT("attention_probs_dropout_prob", &c.attention_dropout, 0.1f) ||
        /* ModernBERT's keys (multienc.engine.encoder.engine_config writes them for model_type modernbert) */
        ENGINE_INT("local_attention", &c.local_attention, 0, 0) ||
        ENGINE_INT("global_attn_every_n_layers", &c.global_every, 0, 1) ||
        ENGINE_FLOAT("global_rope_theta", &c.global_rope_theta, 160000.0f) ||
        ENGINE_FLOAT("local_rope_theta", &c.local_rope_theta, 10000.0f) ||
        ENGINE_INT("norm_bias", &c.norm_bias, 0, 0) || ENGINE_INT("attention_bias", &c.attention_bias, 0, 0) ||
        ENGINE_INT("mlp_bias", &c.mlp_bias, 0, 0) ||
        ENGINE_FLOAT("embedding_dropout", &c.embedding_dropout, 0.0f) ||
        ENGINE_FLOAT("mlp_dropout", &c.mlp_dropout, 0.0f))
        return -1;
    *out = c;
    return 0;
}

/* encoder_param_table(config) -> ([(name, shape, offset), ...], num_floats): the layout, nothing allocated. */
static PyObject *encoder_param_table(PyObject *module, PyObject *cfgd) {
    if (!PyDict_Check(cfgd)) {
        PyErr_SetString(PyExc_TypeError, "encoder_param_table expects an engine config dict");
        return NULL;
    }
    MeEncoderConfig c;
    if (parse_config(cfgd, &c)) return NULL;
    MeParamInfo *info;
    int n = 0;
    size_t nfloats = 0;
    char err[ME_ERRLEN] = {0};
    int st = me_encoder_param_table(&c, &info, &n, &nfloats, err);
    if (st) return me_raise(st, err);
    PyObject *list = me_param_info_list(info, n);
    free(info);
    return list ? Py_BuildValue("(Nn)", list, (Py_ssize_t)nfloats) : NULL;
}

static int Encoder_init(EncoderObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"config", "device", NULL};
    PyObject *cfgd;
    const char *device = "cpu";
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O!|s", kwlist, &PyDict_Type, &cfgd, &device))
        return -1;
    MeEncoderConfig c;
    if (parse_config(cfgd, &c)) return -1;
    const MeBackend *be = me_backend_for_device(device);
    if (!be) return -1;
    /* Checked with the GIL held until self->enc is set: a model may hold this encoder's pointer,
     * and another thread may be computing with it, so a live encoder is never replaced. */
    if (self->enc) {
        PyErr_SetString(PyExc_RuntimeError, "Encoder is already initialised (models may be using it): "
                                            "create a new Encoder instead");
        return -1;
    }
    if (!self->lock && !(self->lock = PyThread_allocate_lock())) {
        PyErr_NoMemory();
        return -1;
    }
    char err[ME_ERRLEN] = {0};
    int st = me_encoder_create(&self->enc, &c, be, err);
    if (st) {
        me_raise(st, err);
        return -1;
    }
    return 0;
}

static void Encoder_dealloc(EncoderObject *self) {
    me_encoder_free(self->enc);
    if (self->lock) PyThread_free_lock(self->lock);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int ready(EncoderObject *self) {
    if (!self->enc) {
        PyErr_SetString(PyExc_RuntimeError, "Encoder is not initialised");
        return 0;
    }
    return 1;
}

static PyObject *Encoder_param_info(EncoderObject *self, PyObject *noargs) {
    if (!ready(self)) return NULL;
    return me_param_info_list(self->enc->info, self->enc->nparams);
}

static PyObject *copy_buffer(EncoderObject *self, PyObject *arg, int which, int to_host) {
    if (!ready(self)) return NULL;
    return me_copy_flat(self->lock, self->enc->be, which ? &self->enc->grads : &self->enc->params, 0,
                        self->enc->nfloats, arg, to_host);
}

static PyObject *Encoder_read_params(EncoderObject *self, PyObject *a) { return copy_buffer(self, a, 0, 1); }

/* write_params(array): the whole buffer; write_params(array, offset): array's floats from offset on */
static PyObject *Encoder_write_params(EncoderObject *self, PyObject *args) {
    PyObject *arr, *offset_o = Py_None;
    if (!PyArg_ParseTuple(args, "O|O:write_params", &arr, &offset_o)) return NULL;
    if (offset_o == Py_None) return copy_buffer(self, arr, 0, 0);
    if (!ready(self)) return NULL;
    const Py_ssize_t offset = PyLong_AsSsize_t(offset_o);
    if (offset == -1 && PyErr_Occurred()) return NULL;
    const size_t n = self->enc->nfloats;
    if (offset < 0 || (size_t)offset > n) {
        PyErr_Format(PyExc_ValueError, "write_params: offset %zd is outside the parameter buffer of %zu floats", offset,
                     n);
        return NULL;
    }
    /* a 1-d array's own length, checked to fit; anything else gets me_copy_flat's message */
    size_t k = n - (size_t)offset;
    if (PyArray_Check(arr) && PyArray_NDIM((PyArrayObject *)arr) == 1) {
        k = (size_t)PyArray_DIM((PyArrayObject *)arr, 0);
        if (k > n - (size_t)offset) {
            PyErr_Format(PyExc_ValueError, "write_params: %zu floats at offset %zd overrun the parameter buffer of "
                         "%zu floats", k, offset, n);
            return NULL;
        }
    }
    return me_copy_flat(self->lock, self->enc->be, &self->enc->params, (size_t)offset, k, arr, 0);
}
static PyObject *Encoder_read_grads(EncoderObject *self, PyObject *a) { return copy_buffer(self, a, 1, 1); }

/* params_finite() -> whether every parameter is finite: their sum of squares, accumulated in double
 * (which no float32's square overflows), is. One read pass on the device, no copy: the trainer's
 * end-of-epoch check (a state_dict copied every weight for it). */
static PyObject *Encoder_params_finite(EncoderObject *self, PyObject *noargs) {
    if (!ready(self)) return NULL;
    char err[ME_ERRLEN] = {0};
    int st;
    double s = 0.0;
    LOCKED_COMPUTE(self, {
        s = self->enc->be->sum_squares(self->enc->params, self->enc->nfloats);
        st = self->enc->be->status(err);
    });
    if (st) return me_raise(st, err);
    return PyBool_FromLong(isfinite(s));
}

static PyObject *Encoder_set_precision(EncoderObject *self, PyObject *arg) {
    if (!ready(self)) return NULL;
    const char *precision = me_precision_arg(arg);
    if (!precision) return NULL;
    char err[ME_ERRLEN] = {0};
    int st;
    LOCKED_COMPUTE(self, st = me_encoder_set_precision(self->enc, precision, err));
    if (st) return me_raise(st, err);
    Py_RETURN_NONE;
}

static PyObject *Encoder_get_precision(EncoderObject *self, void *c) {
    if (!ready(self)) return NULL;
    const char *precision;
    LOCKED_COMPUTE(self, precision = self->enc->be->precision);
    return PyUnicode_FromString(precision);
}

static PyObject *Encoder_get_workspace_bytes(EncoderObject *self, void *c) {
    if (!ready(self)) return NULL;
    size_t floats;
    LOCKED_COMPUTE(self, floats = self->enc->ws_floats);
    return PyLong_FromSize_t(floats * sizeof(float));
}

static PyObject *Encoder_get_gradient_bytes(EncoderObject *self, void *c) {
    if (!ready(self)) return NULL;
    size_t floats;
    LOCKED_COMPUTE(self, floats = self->enc->grads ? self->enc->nfloats : 0);
    return PyLong_FromSize_t(floats * sizeof(float));
}

static PyObject *Encoder_zero_grad(EncoderObject *self, PyObject *noargs) {
    if (!ready(self)) return NULL;
    const MeBackend *be = self->enc->be;
    char err[ME_ERRLEN] = {0};
    int st;
    LOCKED_COMPUTE(self, me_encoder_zero_grad(self->enc); st = be->status(err));
    if (st) return me_raise(st, err);
    Py_RETURN_NONE;
}

/* An int32 C-contiguous [B,T] array (the Python layer converts dtypes). */
static int int2d_arg(PyObject *obj, const char *name, int B, int T, PyArrayObject **out) {
    if (!PyArray_Check(obj) || PyArray_TYPE((PyArrayObject *)obj) != NPY_INT32 ||
        PyArray_NDIM((PyArrayObject *)obj) != 2 || !PyArray_IS_C_CONTIGUOUS((PyArrayObject *)obj)) {
        PyErr_Format(PyExc_TypeError, "%s must be a C-contiguous int32 array of shape (batch, length)", name);
        return -1;
    }
    PyArrayObject *a = (PyArrayObject *)obj;
    if (B >= 0 && (PyArray_DIM(a, 0) != B || PyArray_DIM(a, 1) != T)) {
        PyErr_Format(PyExc_ValueError, "%s has shape (%ld, %ld) but input_ids has (%d, %d)", name,
                     (long)PyArray_DIM(a, 0), (long)PyArray_DIM(a, 1), B, T);
        return -1;
    }
    *out = a;
    return 0;
}

static PyObject *Encoder_forward(EncoderObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"input_ids", "attention_mask", "token_type_ids", "train", "seed", "output",
                             "inference", NULL};
    PyObject *ids_o, *mask_o, *types_o = Py_None;
    int train = 0, want_output = 1, inference = 0;
    unsigned long long seed = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO|OpKpp", kwlist, &ids_o, &mask_o, &types_o, &train, &seed,
                                     &want_output, &inference))
        return NULL;
    if (train && inference) {
        PyErr_SetString(PyExc_ValueError, "a forward is either train=True or inference=True, not both");
        return NULL;
    }
    const int mode = train ? ME_FORWARD_TRAIN : inference ? ME_FORWARD_INFER : ME_FORWARD_EVAL;
    if (!ready(self)) return NULL;
    PyArrayObject *ids, *mask, *types = NULL;
    if (int2d_arg(ids_o, "input_ids", -1, -1, &ids)) return NULL;
    int B = (int)PyArray_DIM(ids, 0), T = (int)PyArray_DIM(ids, 1);
    if (PyArray_DIM(ids, 0) > 1 << 20 || PyArray_DIM(ids, 1) > 1 << 20) {
        PyErr_SetString(PyExc_ValueError, "input_ids is too large");
        return NULL;
    }
    if (int2d_arg(mask_o, "attention_mask", B, T, &mask)) return NULL;
    if (types_o != Py_None && int2d_arg(types_o, "token_type_ids", B, T, &types)) return NULL;
    npy_intp dims[3] = {B, T, self->enc->cfg.hidden_size};
    PyObject *out = Py_None;
    if (want_output)
        out = PyArray_SimpleNew(3, dims, NPY_FLOAT32);
    else
        Py_INCREF(Py_None);
    if (!out) return NULL;
    char err[ME_ERRLEN] = {0};
    int st;
    const int32_t *pi = PyArray_DATA(ids), *pm = PyArray_DATA(mask);
    const int32_t *pt = types ? PyArray_DATA(types) : NULL;
    float *po = want_output ? PyArray_DATA((PyArrayObject *)out) : NULL;
    LOCKED_COMPUTE(self, st = me_encoder_forward(self->enc, pi, pt, pm, B, T, mode, seed, po, err));
    if (st) {
        Py_DECREF(out);
        return me_raise(st, err);
    }
    return out;
}

/* The backward of the last forward, whichever thread ran it: the gradient's shape is compared with
 * that forward's under the encoder's lock (another thread's forward changes it), then used. */
static int backward_locked(MeEncoder *e, const npy_intp *shape, const float *grad, char *err) {
    if (!e->has_forward) return me_error(err, ME_ERR_RUNTIME, "backward() needs a forward() first");
    if (shape[0] != e->B || shape[1] != e->T || shape[2] != e->cfg.hidden_size)
        return me_error(err, ME_ERR_VALUE, "grad must have the last forward's output shape (%d, %d, %d)", e->B,
                        e->T, e->cfg.hidden_size);
    return me_encoder_backward(e, grad, err);
}

static PyObject *Encoder_backward(EncoderObject *self, PyObject *arg) {
    if (!ready(self)) return NULL;
    if (!PyArray_Check(arg) || PyArray_TYPE((PyArrayObject *)arg) != NPY_FLOAT32 ||
        !PyArray_IS_C_CONTIGUOUS((PyArrayObject *)arg)) {
        PyErr_SetString(PyExc_TypeError, "grad must be a C-contiguous float32 array");
        return NULL;
    }
    PyArrayObject *g = (PyArrayObject *)arg;
    npy_intp shape[3] = {-1, -1, -1};
    if (PyArray_NDIM(g) == 3) memcpy(shape, PyArray_DIMS(g), sizeof shape);
    char err[ME_ERRLEN] = {0};
    int st;
    const float *pg = PyArray_DATA(g);
    LOCKED_COMPUTE(self, st = backward_locked(self->enc, shape, pg, err));
    if (st) return me_raise(st, err);
    Py_RETURN_NONE;
}

static PyObject *Encoder_get_num_floats(EncoderObject *self, void *closure) {
    if (!ready(self)) return NULL;
    return PyLong_FromSize_t(self->enc->nfloats);
}

static PyMethodDef Encoder_methods[] = {
    {"param_info", (PyCFunction)Encoder_param_info, METH_NOARGS,
     "List of (hf_name, shape, offset) for every parameter tensor in the flat buffer."},
    {"read_params", (PyCFunction)Encoder_read_params, METH_O, "Copy the parameter buffer into a float32 array."},
    {"write_params", (PyCFunction)Encoder_write_params, METH_VARARGS,
     "write_params(array[, offset]): copy a float32 array into the parameter buffer: the whole buffer, or the "
     "array's length from offset on."},
    {"read_grads", (PyCFunction)Encoder_read_grads, METH_O, "Copy the gradient buffer into a float32 array."},
    {"params_finite", (PyCFunction)Encoder_params_finite, METH_NOARGS,
     "params_finite() -> whether every parameter is finite (no NaN, no infinity), without copying them."},
    {"zero_grad", (PyCFunction)Encoder_zero_grad, METH_NOARGS, "Set all gradients to zero."},
    {"set_precision", (PyCFunction)Encoder_set_precision, METH_O,
     "set_precision('fp32' | 'bf16'): the precision of the linear layers (bf16: CPUs with AVX512-BF16 only)."},
    {"forward", (PyCFunction)(void (*)(void))Encoder_forward, METH_VARARGS | METH_KEYWORDS,
     "forward(input_ids, attention_mask, token_type_ids=None, train=False, seed=0, output=True, inference=False)\n"
     "-> float32 (B, T, H) (None with output=False: the result stays on the device for backward);\n"
     "inference=True keeps no activations for a backward (two layers' at a time)"},
    {"backward", (PyCFunction)Encoder_backward, METH_O,
     "backward(grad): accumulate parameter gradients of the last forward."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Encoder_getset[] = {
    {"num_floats", (getter)Encoder_get_num_floats, NULL, "Length of the flat parameter buffer.", NULL},
    {"precision", (getter)Encoder_get_precision, NULL, "Precision of the linear layers: 'fp32' or 'bf16'.", NULL},
    {"workspace_bytes", (getter)Encoder_get_workspace_bytes, NULL,
     "Bytes of the activation workspace (grown to the largest forward so far, never shrunk).", NULL},
    {"gradient_bytes", (getter)Encoder_get_gradient_bytes, NULL,
     "Bytes of the gradient buffer: 0 until the first need of one (a backward, training's preparation).", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyTypeObject MeEncoderType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "multienc.engine._C.Encoder",
    .tp_basicsize = sizeof(EncoderObject),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "C transformer encoder (low level; see multienc.engine.Encoder).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Encoder_init,
    .tp_dealloc = (destructor)Encoder_dealloc,
    .tp_methods = Encoder_methods,
    .tp_getset = Encoder_getset,
};

static PyMethodDef engine_functions[] = {
    {"encoder_param_table", encoder_param_table, METH_O,
     "encoder_param_table(config) -> ([(hf_name, shape, offset), ...], num_floats): the parameters an engine "
     "config implies, computed without allocating them."},
    {NULL, NULL, 0, NULL},
};

int me_register_engine(PyObject *module) {
    if (PyModule_AddFunctions(module, engine_functions) < 0) return -1;
    if (PyType_Ready(&MeEncoderType) < 0) return -1;
    Py_INCREF(&MeEncoderType);
    if (PyModule_AddObject(module, "Encoder", (PyObject *)&MeEncoderType) < 0) {
        Py_DECREF(&MeEncoderType);
        return -1;
    }
    return 0;
}
