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

/* The ops of ops.cu and attention.cu, gathered into the table by backend.cu (with train_ops.cu's below). */
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

/* The ops of train_ops.cu: pooling, combination, losses, CRF, gradient norm, AdamW. */
void me_cu_pool_forward(float *out, const float *h, const float *w, int B, int T, int K, int C);
void me_cu_pool_backward(float *dh, const float *dout, const float *w, int B, int T, int K, int C,
                         int accumulate);
void me_cu_concat_forward(float *dst, int ldd, const float *src, int lds, int R, int C);
void me_cu_concat_backward(float *dsrc, int lds, const float *ddst, int ldd, int R, int C, int accumulate);
void me_cu_combine_forward(float *out, float *alpha, const float *x, const float *scores, int n, int R,
                           int C);
void me_cu_combine_backward(float *dx, float *dscores, const float *dout, const float *x, const float *alpha,
                            int n, int R, int C);
void me_cu_cross_entropy_forward(float *loss, float *probs, const float *logits, const int32_t *targets, int R,
                                 int C);
void me_cu_cross_entropy_backward(float *dlogits, const float *probs, const int32_t *targets, int R, int C);
void me_cu_mse_forward(float *loss, const float *pred, const float *target, int R, int C);
void me_cu_mse_backward(float *dpred, const float *pred, const float *target, int R, int C);
void me_cu_crf_forward(float *loss, double *scratch, const float *em, const int32_t *tags,
                       const int32_t *lengths, const float *trans, const float *start, const float *end, int B,
                       int K, int C);
void me_cu_crf_backward(float *dem, float *dtrans, float *dstart, float *dend, double *scratch, const float *em,
                        const int32_t *tags, const int32_t *lengths, const float *trans, const float *start,
                        const float *end, int B, int K, int C);
void me_cu_crf_viterbi(int32_t *path, double *scratch, const float *em, const int32_t *lengths,
                       const float *trans, const float *start, const float *end, int B, int K, int C);
double me_cu_sum_squares(const float *x, size_t n);
double me_cu_sum_squares_rows(const float *x, const int32_t *rows, int nrows, int C);
void me_cu_scale(float *x, size_t n, float factor);
void me_cu_adamw_update(float *p, float *g, float *m, float *v, size_t n, double lr, double beta1, double beta2,
                        double eps, double weight_decay, int step, float grad_scale);

#endif
