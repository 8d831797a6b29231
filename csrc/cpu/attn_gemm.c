/* The attention's per-(batch, head) matrix products (128 x 128 x 64 at BERT-base's shapes), in
 * place of one OpenBLAS call each: OpenBLAS packs both operands and clears C (beta 0) on every
 * call, which at these sizes cost about as much as the multiply-adds. Here one kernel reads A with
 * any pair of strides (a transposed operand is just other strides: one value broadcast at a time)
 * and B's rows as they lie; the attention hands it B contiguous (a head's rows of K, V, Q or dctx
 * copied, or K or V transposed: T x HS floats per product, against T x T x HS multiply-adds). Tiles
 * of 6 rows x 4 vectors keep 24 accumulators in registers; a row's last partial vector is read as
 * the whole vector that ends at its last column and stored through a mask, so any T of at least
 * one vector runs at the vectors' rate. Compiled for AVX-512 (16 lanes), AVX2 (8)
 * and baseline (1) from cpu/attn_gemm_body.h; all three compute the same bits. */
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "cpu/cpu_ops.h"
#include "cpu/dispatch.h"
#ifdef ME_VARIANTS
#include <immintrin.h>
#endif

/* ------------------------------------------------------------ baseline: one lane, scalar C */
#define W 1
#define VF float
#define FN(name) name##_base
#define ATTR
#define VZERO() 0.0f
#define VSET1(x) (x)
#define VLOAD(p) (*(p))
#define VSTORE(p, v) (*(p) = (v))
#define VFMA(a, b, c) fmaf((a), (b), (c))
#define VMUL(a, b) ((a) * (b))
#define VADD(a, b) ((a) + (b))
#define MASKT int /* one lane: never a partial vector */
#define VMASK_FROM(s) (s)
#define VLOADM(p, m) (*(p))
#define VSTOREM(p, m, v) (*(p) = (v))
#include "cpu/attn_gemm_body.h"

#ifdef ME_VARIANTS
/* ------------------------------------------------------------ AVX-512: 16 floats */
#define W 16
#define VF __m512
#define FN(name) name##_avx512
#define ATTR ME_TARGET_AVX512
#define VZERO() _mm512_setzero_ps()
#define VSET1(x) _mm512_set1_ps(x)
#define VLOAD(p) _mm512_loadu_ps(p)
#define VSTORE(p, v) _mm512_storeu_ps((p), (v))
#define VFMA(a, b, c) _mm512_fmadd_ps((a), (b), (c))
#define VMUL(a, b) _mm512_mul_ps((a), (b))
#define VADD(a, b) _mm512_add_ps((a), (b))
#define MASKT __mmask16
#define VMASK_FROM(s) ((__mmask16)(0xffffu << (s)))
#define VLOADM(p, m) _mm512_maskz_loadu_ps((m), (p))
#define VSTOREM(p, m, v) _mm512_mask_storeu_ps((p), (m), (v))
#include "cpu/attn_gemm_body.h"

/* ------------------------------------------------------------ AVX2: 8 floats */
#define W 8
#define VF __m256
#define FN(name) name##_avx2
#define ATTR ME_TARGET_AVX2
#define VZERO() _mm256_setzero_ps()
#define VSET1(x) _mm256_set1_ps(x)
#define VLOAD(p) _mm256_loadu_ps(p)
#define VSTORE(p, v) _mm256_storeu_ps((p), (v))
#define VFMA(a, b, c) _mm256_fmadd_ps((a), (b), (c))
#define VMUL(a, b) _mm256_mul_ps((a), (b))
#define VADD(a, b) _mm256_add_ps((a), (b))
#define MASKT __m256i
#define VMASK_FROM(s) _mm256_cmpgt_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32((s) - 1))
#define VLOADM(p, m) _mm256_maskload_ps((p), (m))
#define VSTOREM(p, m, v) _mm256_maskstore_ps((p), (m), (v))
#include "cpu/attn_gemm_body.h"
#endif

void cpu_transpose_rows(float *dst, int ldd, const float *x, int ld, int T, int HS) {
    for (int t = 0; t < T; t++)
        for (int d = 0; d < HS; d++) dst[(size_t)d * ldd + t] = x[(size_t)t * ld + d];
}

void cpu_copy_rows(float *dst, const float *x, int ld, int T, int HS) {
    for (int t = 0; t < T; t++) memcpy(dst + (size_t)t * HS, x + (size_t)t * ld, (size_t)HS * sizeof(float));
}

void cpu_attn_gemm(int M, int N, int K, float alpha, const float *A, int ars, int aks, const float *B, int ldb,
                   float *C, int ldc, int accumulate) {
    ME_DISPATCH(attn_gemm, M, N, K, alpha, A, ars, aks, B, ldb, C, ldc, accumulate);
}
