/* The one path every op test entry point of multienc.engine._C_tests takes. An OpDesc per op (ops.c)
 * declares its positional arguments, its results and the two pieces that are truly op-specific:
 * `check` (shapes and values of the host arguments, the results' shapes, scratch) and `run` (the
 * backend call). me_op_call does the rest, the same for every op: parse and convert the arguments,
 * pick the backend of the optional trailing `device` argument, call `check`, allocate the results,
 * stage arrays to the device, run with the GIL released, copy back, check the backend's status,
 * release everything and build the return value.
 *
 * Besides the devices of multienc.engine._C, the driver knows "cpu:staged": the CPU backend reached
 * through the device path (its own buffers, copies both ways), so staging is tested without a GPU.
 *
 * Ideas from numpy's _multiarray_tests (test entry points in their own extension) and
 * npy_argparse (argument parsing described once, not per function). */
#ifndef MULTIENC_OP_DRIVER_H
#define MULTIENC_OP_DRIVER_H

#include "python/bindings.h"

#define OP_MAX_ARGS 14
#define OP_MAX_RESULTS 5
#define OP_MAX_PARTS 16
#define OP_MAX_USES 2

/* How a positional argument is converted. Arrays become C-contiguous, aligned float32 / int32
 * arrays of exactly `ndim` dimensions (copied only when needed). */
typedef enum {
    ARG_END = 0,
    ARG_F32,       /* float array */
    ARG_F32_OPT,   /* float array or None (a NULL pointer for the backend) */
    ARG_F32_INOUT, /* float array, always copied: the op updates it in place (RES_ARG returns it) */
    ARG_I32,       /* int array */
    ARG_F32_LIST,  /* a sequence of 1..OP_MAX_PARTS float arrays ("part") */
    ARG_INT,       /* int (C int) */
    ARG_FLOAT,     /* float (C float) */
    ARG_DOUBLE,    /* float (C double) */
    ARG_U64,       /* int, modulo 2**64 (seeds, dropout sites) */
    ARG_BOOL,      /* truth value */
    ARG_SIZE,      /* int (Py_ssize_t) */
} OpArgKind;

typedef struct {
    OpArgKind kind;
    const char *name;
    int ndim;
} OpArg;

/* What the call returns, in order (a single result is returned bare, several as a tuple). */
typedef enum {
    RES_END = 0,
    RES_F32,  /* a new zero-filled float32 array; `check` sets its shape (op_result), or None */
    RES_I32,  /* a new zero-filled int32 array, likewise */
    RES_LOSS, /* one float the op writes through a pointer (on the device), as a Python float */
    RES_ARG,  /* the ARG_F32_INOUT argument number `arg`, as the op left it */
    RES_RET,  /* the double `run` stores in call->ret, as a Python float */
} OpResKind;

typedef struct {
    OpResKind kind;
    int arg;
} OpRes;

/* A backend function the op calls, so that a backend without it is refused with a message. */
typedef struct {
    size_t offset; /* offsetof(MeBackend, fn) */
    const char *name;
} OpUse;
#define USES(fn) {offsetof(MeBackend, fn), #fn}

typedef struct OpCall OpCall;

typedef struct {
    const char *name; /* the Python name, ops_... */
    const char *doc;
    int device;       /* 1: takes a trailing device ("cpu" by default, "cuda", "cuda:N"); 0: CPU only */
    OpArg args[OP_MAX_ARGS];
    OpRes res[OP_MAX_RESULTS];
    OpUse uses[OP_MAX_USES];
    /* GIL held, on the host arrays: validate (ValueError through op_fail), set every RES_F32 /
     * RES_I32 result's shape with op_result and call->scratch_bytes; 0, or nonzero with an
     * exception set. */
    int (*check)(OpCall *c);
    /* GIL released: the backend call(s), on the staged pointers. */
    void (*run)(OpCall *c);
    PyMethodDef def; /* filled in by me_register_ops */
} OpDesc;

/* One call in progress. `check` reads arr/val (host) and be; `run` reads the staged pointers. */
struct OpCall {
    const OpDesc *op;
    const MeBackend *be;
    PyArrayObject *arr[OP_MAX_ARGS]; /* array arguments (NULL: a scalar, or None) */
    union {
        int i;
        float f;
        double d;
        unsigned long long u;
        Py_ssize_t n;
    } val[OP_MAX_ARGS];              /* scalar arguments */
    void *p[OP_MAX_ARGS];            /* the array arguments as the backend sees them */
    int nparts;                      /* the ARG_F32_LIST argument's arrays */
    PyArrayObject *part[OP_MAX_PARTS];
    float *pp[OP_MAX_PARTS];
    int res_nd[OP_MAX_RESULTS];      /* results: shapes (nd < 0: None), arrays, backend pointers */
    npy_intp res_dims[OP_MAX_RESULTS][4];
    PyArrayObject *res[OP_MAX_RESULTS];
    void *out[OP_MAX_RESULTS];
    size_t scratch_bytes;            /* zero-filled scratch on the backend for run (0: none) */
    void *scratch;
    double ret;                      /* RES_RET */
};

/* For check functions: dimension d of array argument i, host data of an int argument. */
#define DIM(c, i, d) ((int)PyArray_DIM((c)->arr[i], d))
#define HOST_I32(c, i) ((const int32_t *)PyArray_DATA((c)->arr[i]))

/* ValueError(message); returns -1. */
int op_fail(const char *message);

/* Result k has shape (dims...) of nd dimensions (nd < 0: the result is None); returns 0. */
int op_result(OpCall *c, int k, int nd, ...);

/* For run functions: argument i / result k as the backend's float or int pointer. */
#define F(c, i) ((float *)(c)->p[i])
#define I32(c, i) ((int32_t *)(c)->p[i])
#define OUT(c, k) ((float *)(c)->out[k])
#define OUT_I32(c, k) ((int32_t *)(c)->out[k])

/* Add one Python function per descriptor (n of them) to `module`. 0, or -1 with an exception. */
int me_register_ops(PyObject *module, OpDesc *ops, int n);

/* ops.c: every op of the table. */
int me_register_test_ops(PyObject *module);

#endif
