/* STUB (placeholder for the AVX512-BF16 kernel): rounds copies of A and B to bf16 and calls sgemm. */
#include "cpu/gemm_bf16.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"

int me_cpu_has_bf16(void) {
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    return me_cpu_level() >= 2 && __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512bw");
#else
    return 0;
#endif
}

static float round_bf16(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) u |= 0x00400000u; /* quiet NaN */
    else u += 0x7fffu + ((u >> 16) & 1u);
    u &= 0xffff0000u;
    memcpy(&x, &u, 4);
    return x;
}

static float *rounded(const float *X, int rows, int cols, int ld) {
    float *r = malloc(sizeof(float) * (size_t)rows * cols + 1);
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++) r[(size_t)i * cols + j] = round_bf16(X[(size_t)i * ld + j]);
    return r;
}

void me_gemm_bf16(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N, int K, float alpha, const float *A,
                  int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    int ar = ta == CblasNoTrans ? M : K, ac = ta == CblasNoTrans ? K : M;
    int br = tb == CblasNoTrans ? K : N, bc = tb == CblasNoTrans ? N : K;
    float *a = rounded(A, ar, ac, lda), *b = rounded(B, br, bc, ldb);
    cblas_sgemm(CblasRowMajor, ta, tb, M, N, K, alpha, a, ac ? ac : 1, b, bc ? bc : 1, beta, C, ldc);
    free(a);
    free(b);
}
