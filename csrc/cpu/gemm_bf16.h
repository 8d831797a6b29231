/* bf16 matrix products on CPUs with AVX512-BF16: the CPU backend's bf16 table (ops.c) calls
 * me_gemm_bf16 where the fp32 table calls sgemm. */
#ifndef MULTIENC_GEMM_BF16_H
#define MULTIENC_GEMM_BF16_H
#include "cpu/blas.h"

/* Row-major C[M,N] = alpha * op(A) op(B) + beta * C, like cblas_sgemm, where every element of
 * A and B is first rounded to bfloat16 (round to nearest even; NaN stays NaN, infinities stay,
 * subnormals become zero of the same sign) and the products are accumulated in float32. beta == 0
 * overwrites C without reading it; K == 0 or alpha == 0 leaves beta * C, as BLAS. The result depends
 * on the inputs, K, alpha and beta only: the same bits for every thread count. Only call it when
 * me_cpu_has_bf16() is 1. */
void me_gemm_bf16(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N, int K, float alpha, const float *A,
                  int lda, const float *B, int ldb, float beta, float *C, int ldc);
#endif
