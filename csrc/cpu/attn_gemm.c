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

/* dst[d * ldd + t] = x[t * ld + d] for t0 <= t < t1, d0 <= d < d1 */
static void transpose_block(float *dst, int ldd, const float *x, int ld, int t0, int t1, int d0, int d1) {
    for (int t = t0; t < t1; t++)
        for (int d = d0; d < d1; d++) dst[(size_t)d * ldd + t] = x[(size_t)t * ld + d];
}

static void transpose_rows_base(float *dst, int ldd, const float *x, int ld, int T, int HS) {
    transpose_block(dst, ldd, x, ld, 0, T, 0, HS);
}

#ifdef ME_VARIANTS
/* AVX-512: blocks of 16 x 16 through registers (unpacks, then in-lane and 128-bit-lane shuffles),
 * the edges one element at a time; AVX2 uses the baseline (a copy: every variant's bits agree) */
#define transpose_rows_avx2 transpose_rows_base
ME_TARGET_AVX512 static void transpose16_avx512(float *dst, int ldd, const float *x, int ld) {
    __m512 r[16], t[16];
    for (int i = 0; i < 16; i++) r[i] = _mm512_loadu_ps(x + (size_t)i * ld);
    for (int k = 0; k < 8; k++) { /* pairs of rows interleaved */
        t[2 * k] = _mm512_unpacklo_ps(r[2 * k], r[2 * k + 1]);
        t[2 * k + 1] = _mm512_unpackhi_ps(r[2 * k], r[2 * k + 1]);
    }
    for (int k = 0; k < 4; k++) { /* 4 x 4 within each 128-bit lane */
        r[4 * k + 0] = _mm512_shuffle_ps(t[4 * k], t[4 * k + 2], 0x44);
        r[4 * k + 1] = _mm512_shuffle_ps(t[4 * k], t[4 * k + 2], 0xEE);
        r[4 * k + 2] = _mm512_shuffle_ps(t[4 * k + 1], t[4 * k + 3], 0x44);
        r[4 * k + 3] = _mm512_shuffle_ps(t[4 * k + 1], t[4 * k + 3], 0xEE);
    }
    for (int i = 0; i < 4; i++) { /* then the 128-bit lanes */
        t[i] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0x88);
        t[i + 4] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0xdd);
        t[i + 8] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0x88);
        t[i + 12] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0xdd);
    }
    for (int i = 0; i < 8; i++) {
        r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
        r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xdd);
    }
    for (int i = 0; i < 16; i++) _mm512_storeu_ps(dst + (size_t)i * ldd, r[i]);
}

ME_TARGET_AVX512 static void transpose_rows_avx512(float *dst, int ldd, const float *x, int ld, int T, int HS) {
    const int T16 = T / 16 * 16, H16 = HS / 16 * 16;
    for (int t0 = 0; t0 < T16; t0 += 16)
        for (int d0 = 0; d0 < H16; d0 += 16)
            transpose16_avx512(dst + (size_t)d0 * ldd + t0, ldd, x + (size_t)t0 * ld + d0, ld);
    transpose_block(dst, ldd, x, ld, 0, T16, H16, HS);
    transpose_block(dst, ldd, x, ld, T16, T, 0, HS);
}
#endif

void cpu_transpose_rows(float *dst, int ldd, const float *x, int ld, int T, int HS) {
    ME_DISPATCH(transpose_rows, dst, ldd, x, ld, T, HS);
}

void cpu_copy_rows(float *dst, const float *x, int ld, int T, int HS) {
    for (int t = 0; t < T; t++) memcpy(dst + (size_t)t * HS, x + (size_t)t * ld, (size_t)HS * sizeof(float));
}

void cpu_attn_gemm(int M, int N, int K, float alpha, const float *A, int ars, int aks, const float *B, int ldb,
                   float *C, int ldc, int accumulate) {
    ME_DISPATCH(attn_gemm, M, N, K, alpha, A, ars, aks, B, ldb, C, ldc, accumulate);
}
