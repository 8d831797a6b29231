/* Shared by the CUDA backend's translation units: the backend's state (one
 * device, one stream, one cuBLAS handle per process), error recording and
 * launch helpers. Every op queues work on me_cu.stream and records the first
 * failure (a launch error, a cuBLAS status, a failed copy) instead of
 * aborting; status() reports it. */
#ifndef MULTIENC_CUDA_COMMON_CUH
#define MULTIENC_CUDA_COMMON_CUH

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <stddef.h>
#include <stdint.h>

#include "backend.h"

typedef struct {
    int device;
    cudaStream_t stream;
    cublasHandle_t blas;
} MeCudaState;

extern MeCudaState me_cu;

/* Record a failure (the first one since status() wins); `what` names the op. */
void me_cu_fail(int status, const char *what, const char *detail);

/* Make the backend's device current on the calling thread (cheap when it is). */
void me_cu_use_device(void);

/* Record `e` if it is an error; returns nonzero on error. */
static inline int me_cu_check(cudaError_t e, const char *what) {
    if (e == cudaSuccess) return 0;
    me_cu_fail(e == cudaErrorMemoryAllocation ? 4 /* ME_ERR_NOMEM */ : 6 /* ME_ERR_RUNTIME */, what,
               cudaGetErrorString(e));
    return 1;
}

static inline int me_cublas_check(cublasStatus_t s, const char *what) {
    if (s == CUBLAS_STATUS_SUCCESS) return 0;
    me_cu_fail(s == CUBLAS_STATUS_ALLOC_FAILED ? 4 : 6, what, cublasGetStatusString(s));
    return 1;
}

/* After a kernel launch: record a bad configuration or an earlier asynchronous error. */
#define ME_CU_LAUNCHED(what) me_cu_check(cudaGetLastError(), what)

/* Grid for a grid-stride loop over n items with `block` threads per block. */
static inline unsigned me_cu_grid(size_t n, int block) {
    size_t g = (n + (size_t)block - 1) / (size_t)block;
    const size_t cap = 65535u * 32u; /* the loops stride over the rest */
    return (unsigned)(g < 1 ? 1 : g > cap ? cap : g);
}

#define ME_CU_FOR(i, n)                                                                     \
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);                 \
         i += (size_t)gridDim.x * blockDim.x)

static __device__ __forceinline__ float me_warp_sum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

static __device__ __forceinline__ float me_warp_max(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* The ops of ops.cu and attention.cu, gathered into the table by backend.cu. */
void me_cu_embedding_forward(float *out, const int32_t *ids, const float *table, int N, int C,
                             int accumulate);
void me_cu_embedding_backward(float *dtable, const float *dout, const int32_t *ids, int N, int C,
                              int padding_idx);
void me_cu_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                             const float *w, const float *b, int N, int C, float eps);
void me_cu_layernorm_backward(float *dinp, float *dw, float *db, const float *dout,
                              const float *inp, const float *mean, const float *rstd,
                              const float *w, int N, int C, int accumulate);
void me_cu_matmul_forward(float *out, const float *inp, const float *w, const float *b, int N,
                          int C, int OC);
void me_cu_matmul_backward(float *dinp, float *dw, float *db, const float *dout,
                           const float *inp, const float *w, int N, int C, int OC,
                           int accumulate);
void me_cu_gelu_forward(float *out, float *dact, const float *inp, size_t n, MeActivation act);
void me_cu_gelu_backward(float *dinp, const float *dact, const float *dout, size_t n);
void me_cu_add_forward(float *out, const float *a, const float *b, size_t n);
void me_cu_add_backward(float *da, float *db, const float *dout, size_t n, int accumulate);
void me_cu_dropout_forward(float *out, const float *inp, size_t n, float p, uint64_t seed,
                           uint64_t site);
void me_cu_dropout_backward(float *dinp, const float *dout, size_t n, float p, uint64_t seed,
                            uint64_t site);
void me_cu_attention_forward(float *ctx, float *probs, const float *qkv, const int32_t *mask,
                             int B, int T, int NH, int HS, float p, uint64_t seed, uint64_t site,
                             float *scratch);
void me_cu_attention_backward(float *dqkv, const float *dctx, const float *qkv,
                              const float *probs, const int32_t *mask, int B, int T, int NH,
                              int HS, float p, uint64_t seed, uint64_t site, float *scratch);
size_t me_cu_attention_scratch_floats(int B, int T, int NH, int HS);

#endif
