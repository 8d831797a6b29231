/* The bf16 GEMM of the CPU backend's bf16 table: AVX512-BF16's vdpbf16ps, which multiplies pairs of
 * bf16 numbers and adds both products to a float32 lane, on operands rounded to bf16 while they are
 * packed (OpenBLAS has no bf16 GEMM in the scipy-openblas32 wheel).
 *
 * BLIS-style: C is computed in MR x NR tiles, each a register-blocked microkernel over a KC-long
 * slice of K, reading A and B from packed copies: MR rows of op(A) (an A micro-panel) and NR columns
 * of op(B) (a B micro-panel), each stored as bf16 pairs along K, pair p of row/column x at dword
 * p * width + x, so that one 64-byte load of B feeds 16 lanes two products each and one dword of A
 * is broadcast. Packing rounds fp32 to bf16 (vcvtne2ps2bf16: round to nearest even, NaN kept quiet,
 * subnormals flushed to signed zero) and pads with zeros: rows or columns past M / N, and the second
 * half of the last pair when K is odd, so the microkernel always computes a whole tile and only the
 * store is cut to the edge.
 *
 * Loops (Goto's order, per thread on its part of C): KC-long slices of K; in each, NC columns of
 * op(B) at a time are packed (KC x NC, 384 KiB, in L2 with room to spare or in L3), then MC rows of
 * op(A) (MC x KC, 252 KiB, in L2); every B micro-panel (KC x NR, 24 KiB) stays in L1 while all
 * MR-row micro-panels of the A block sweep it. So B is packed once, A once per NC columns. The
 * packing streams whole source rows where it can and prefetches where the hardware prefetcher
 * cannot follow (16 short rows at a time, rows of the next pair); the microkernel prefetches its C
 * tile. The blocking was chosen by measurement on AMD EPYC (Zen 5: 48 KiB L1d, 1 MiB L2 per core;
 * docs/ARCHITECTURE.md).
 *
 * Every element of C sees the same arithmetic wherever it lies in a tile or a thread's part (the
 * lanes of vdpbf16ps are independent, padding adds exact zeros), so the result depends on K, the
 * inputs, alpha and beta only: the same bits for every thread count and partition. The packed
 * buffers live on each thread's stack (about 640 KiB; glibc gives threads 8 MiB by default, the
 * RLIMIT_STACK, for libgomp's workers as for Python's): no allocation, nothing that can fail. */
#include "cpu/gemm_bf16.h"

#include <stdint.h>
#include <stdlib.h>

#include "backend.h"
#include "cpu/dispatch.h"

#if defined(__x86_64__) && defined(__GNUC__)
#define BF16_KERNEL 1
#include <immintrin.h>
#include <omp.h>
#define BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma")))
#endif

/* Not me_cpu_level(): that is 0 under AddressSanitizer, where the ME_VARIANTS kernels run their
 * baseline variant; this kernel has none, so it stays on there and the sanitizer run covers it. */
int me_cpu_has_bf16(void) {
#ifdef BF16_KERNEL
    __builtin_cpu_init();
    return me_cpu_level_cap() >= 2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

#ifdef BF16_KERNEL

/* MR x NR: 14 rows of two zmm accumulators (28 of the 32 registers, 2 for B, 1 for the broadcast).
 * KC: even, so pairs never straddle two slices. MC, NC: the A and B blocks, multiples of MR, NR. */
enum { MR = 14, NR = 32, KC = 384, MC = MR * 24, NC = NR * 16 };

typedef struct {
    int ta, tb; /* op(A) = A^T, op(B) = B^T */
    int M, N, K;
    float alpha, beta;
    const float *A, *B;
    float *C;
    size_t lda, ldb, ldc;
} Gemm;

/* Bits of the mask that select the first n (clamped to 0..16) of 16 lanes. */
static inline __mmask16 first_lanes(int n) { return n <= 0 ? 0 : n >= 16 ? 0xffff : (__mmask16)((1u << n) - 1); }

/* 16-bit lane order that interleaves the two halves of a vcvtne2ps2bf16 result, [x0..x15 | y0..y15]
 * -> [x0 y0 x1 y1 ...]: the pairs (x[i], y[i]) as dwords. */
static const uint16_t INTERLEAVE[32] = {0, 16, 1, 17, 2,  18, 3,  19, 4,  20, 5,  21, 6,  22, 7,  23,
                                        8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};

/* Pack kc values along K of nx rows/columns into micro-panels of width W (the last one zero-padded),
 * panel q at dst + q * W * kp, from a source where K is the strided direction: element (k, x) at
 * src[k * ld + x] (op(A) = A^T, op(B) = B). Rows k and k + 1 are rounded together and interleaved
 * into pairs; each pass reads both rows across the whole block, so the reads stream. */
BF16_TARGET static void pack_k_strided(uint32_t *dst, const float *src, size_t ld, int kc, int nx, int W) {
    const __m512i inter = _mm512_loadu_si512(INTERLEAVE);
    const int kp = (kc + 1) / 2;
    for (int p = 0; p < kp; p++) {
        const float *r0 = src + (size_t)2 * p * ld;
        for (int q0 = 0; q0 < nx; q0 += W) {
            uint32_t *d = dst + (size_t)q0 * kp + (size_t)p * W;
            for (int x0 = 0; x0 < W; x0 += 16) {
                const __mmask16 m = first_lanes(nx - q0 - x0 < W - x0 ? nx - q0 - x0 : W - x0);
                __m512 lo = _mm512_setzero_ps(), hi = _mm512_setzero_ps();
                if (m) {
                    lo = _mm512_maskz_loadu_ps(m, r0 + q0 + x0);
                    if (2 * p + 1 < kc) hi = _mm512_maskz_loadu_ps(m, r0 + ld + q0 + x0);
                    /* the next pair's rows: the hardware prefetcher starts each row late */
                    if (2 * p + 2 < kc) _mm_prefetch((const char *)(r0 + 2 * ld + q0 + x0), _MM_HINT_T0);
                    if (2 * p + 3 < kc) _mm_prefetch((const char *)(r0 + 3 * ld + q0 + x0), _MM_HINT_T0);
                }
                const __m512i v = _mm512_permutexvar_epi16(inter, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
                _mm512_mask_storeu_epi32(d + x0, first_lanes(W - x0), v);
            }
        }
    }
}

/* Transpose 16 rows of 16 dwords in place. Interleaving dwords, then qwords, works within each
 * 128-bit lane; two rounds of 128-bit lane shuffles finish it. */
BF16_TARGET static inline __attribute__((always_inline)) void transpose16(__m512i r[16]) {
    __m512i a[16], b[16];
    for (int i = 0; i < 16; i += 2) {
        a[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        a[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
    /* b[4g + c], 128-bit lane L: column 4L + c of rows 4g .. 4g + 3 */
    for (int g = 0; g < 16; g += 4) {
        b[g] = _mm512_unpacklo_epi64(a[g], a[g + 2]);
        b[g + 1] = _mm512_unpackhi_epi64(a[g], a[g + 2]);
        b[g + 2] = _mm512_unpacklo_epi64(a[g + 1], a[g + 3]);
        b[g + 3] = _mm512_unpackhi_epi64(a[g + 1], a[g + 3]);
    }
    for (int c = 0; c < 4; c++) {
        const __m512i e0 = _mm512_shuffle_i32x4(b[c], b[4 + c], 0x44), e1 = _mm512_shuffle_i32x4(b[c], b[4 + c], 0xee);
        const __m512i f0 = _mm512_shuffle_i32x4(b[8 + c], b[12 + c], 0x44);
        const __m512i f1 = _mm512_shuffle_i32x4(b[8 + c], b[12 + c], 0xee);
        r[c] = _mm512_shuffle_i32x4(e0, f0, 0x88);
        r[4 + c] = _mm512_shuffle_i32x4(e0, f0, 0xdd);
        r[8 + c] = _mm512_shuffle_i32x4(e1, f1, 0x88);
        r[12 + c] = _mm512_shuffle_i32x4(e1, f1, 0xdd);
    }
}

/* The same packing from a source where K is contiguous: element (k, x) at src[x * ld + k]
 * (op(A) = A, op(B) = B^T). 32 values of K of one row round to 16 pairs in order; 16 rows of
 * those are transposed into 16 pairs of 16 rows. */
BF16_TARGET static void pack_k_contiguous(uint32_t *dst, const float *src, size_t ld, int kc, int nx, int W) {
    const int kp = (kc + 1) / 2, step = W < 16 ? W : 16; /* rows visited per group */
    for (int q0 = 0; q0 < nx; q0 += W) {
        uint32_t *d = dst + (size_t)q0 * kp;
        for (int x0 = 0; x0 < W; x0 += 16) {
            const __mmask16 store = first_lanes(W - x0);
            for (int k0 = 0; k0 < kc; k0 += 32) {
                const __mmask16 mlo = first_lanes(kc - k0), mhi = first_lanes(kc - k0 - 16);
                __m512i r[16];
                for (int x = 0; x < 16; x++) {
                    __m512 lo = _mm512_setzero_ps(), hi = _mm512_setzero_ps();
                    if (x0 + x < W && q0 + x0 + x < nx) {
                        const float *s = src + (size_t)(q0 + x0 + x) * ld + k0;
                        lo = _mm512_maskz_loadu_ps(mlo, s);
                        if (mhi) hi = _mm512_maskz_loadu_ps(mhi, s + 16);
                        /* the same values of the row visited next group: 16 short rows at a time
                         * are too many streams for the hardware prefetcher */
                        if (q0 + x0 + x + step < nx) {
                            _mm_prefetch((const char *)(s + step * ld), _MM_HINT_T0);
                            _mm_prefetch((const char *)(s + step * ld + 16), _MM_HINT_T0);
                        }
                    }
                    r[x] = (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
                }
                transpose16(r);
                const int np = kp - k0 / 2 < 16 ? kp - k0 / 2 : 16;
                for (int q = 0; q < np; q++) _mm512_mask_storeu_epi32(d + (size_t)(k0 / 2 + q) * W + x0, store, r[q]);
            }
        }
    }
}

/* kc values along K of nx rows (A) or columns (B) starting at row / column x of op(X). */
BF16_TARGET static void pack(uint32_t *dst, const float *X, size_t ld, int trans, int is_b, int x, int k, int kc,
                             int nx, int W) {
    /* op(A) = A and op(B) = B^T hold K contiguously */
    if (trans == is_b)
        pack_k_contiguous(dst, X + (size_t)x * ld + k, ld, kc, nx, W);
    else
        pack_k_strided(dst, X + (size_t)k * ld + x, ld, kc, nx, W);
}

/* C[mr, nr] = alpha * (A micro-panel . B micro-panel over kp pairs) + beta * C, C not read when beta
 * is 0. The accumulators are indexed by constants only (loops fully unrolled), so they stay in
 * registers. */
BF16_TARGET static void microkernel(int kp, const uint32_t *a, const uint32_t *b, float *c, size_t ldc, int mr,
                                    int nr, float alpha, float beta) {
    __m512 acc[MR][2];
#pragma GCC unroll 14
    for (int i = 0; i < MR; i++) {
        acc[i][0] = acc[i][1] = _mm512_setzero_ps();
        /* C's tile is written (and read) after the loop: fetch its lines meanwhile */
        if (i < mr) {
            _mm_prefetch((const char *)(c + (size_t)i * ldc), _MM_HINT_T0);
            _mm_prefetch((const char *)(c + (size_t)i * ldc + nr - 1), _MM_HINT_T0);
        }
    }
    for (int p = 0; p < kp; p++, a += MR, b += NR) {
        const __m512bh b0 = (__m512bh)_mm512_load_si512(b), b1 = (__m512bh)_mm512_load_si512(b + 16);
#pragma GCC unroll 14
        for (int i = 0; i < MR; i++) {
            const __m512bh ai = (__m512bh)_mm512_set1_epi32((int)a[i]);
            acc[i][0] = _mm512_dpbf16_ps(acc[i][0], ai, b0);
            acc[i][1] = _mm512_dpbf16_ps(acc[i][1], ai, b1);
        }
    }
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
    const __mmask16 m0 = first_lanes(nr), m1 = first_lanes(nr - 16);
#pragma GCC unroll 14
    for (int i = 0; i < MR; i++) {
        if (i == mr) break;
        float *ci = c + (size_t)i * ldc;
        for (int h = 0; h < 2; h++) {
            const __mmask16 m = h ? m1 : m0;
            if (!m) break;
            __m512 v = _mm512_mul_ps(va, acc[i][h]);
            if (beta != 0.0f) v = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m, ci + 16 * h), v);
            _mm512_mask_storeu_ps(ci + 16 * h, m, v);
        }
    }
}

/* C = beta * C (beta 0: zeros, C not read): BLAS's answer when K is 0 or alpha is 0. */
static void scale_c(int M, int N, float beta, float *C, int ldc) {
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) C[(size_t)i * ldc + j] = beta == 0.0f ? 0.0f : beta * C[(size_t)i * ldc + j];
}

/* Rows [m0, m1) x columns [n0, n1) of C: one thread's part. */
BF16_TARGET static void gemm_part(const Gemm *g, int m0, int m1, int n0, int n1) {
    _Alignas(64) uint32_t ap[MC * KC / 2];
    _Alignas(64) uint32_t bp[KC / 2 * NC];
    for (int k0 = 0; k0 < g->K; k0 += KC) {
        const int kc = g->K - k0 < KC ? g->K - k0 : KC, kp = (kc + 1) / 2;
        const float beta = k0 == 0 ? g->beta : 1.0f; /* later slices add to C */
        for (int j0 = n0; j0 < n1; j0 += NC) {
            const int nc = n1 - j0 < NC ? n1 - j0 : NC;
            pack(bp, g->B, g->ldb, g->tb, 1, j0, k0, kc, nc, NR);
            for (int i0 = m0; i0 < m1; i0 += MC) {
                const int mc = m1 - i0 < MC ? m1 - i0 : MC;
                pack(ap, g->A, g->lda, g->ta, 0, i0, k0, kc, mc, MR);
                for (int j = 0; j < nc; j += NR)
                    for (int i = 0; i < mc; i += MR)
                        microkernel(kp, ap + (size_t)i * kp, bp + (size_t)j * kp,
                                    g->C + (size_t)(i0 + i) * g->ldc + j0 + j, g->ldc, mc - i < MR ? mc - i : MR,
                                    nc - j < NR ? nc - j : NR, g->alpha, beta);
            }
        }
    }
}

void me_gemm_bf16(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N, int K, float alpha, const float *A,
                  int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0 || alpha == 0.0f) {
        scale_c(M, N, beta, C, ldc);
        return;
    }
    const Gemm g = {ta != CblasNoTrans, tb != CblasNoTrans, M, N, K, alpha, beta, A, B, C,
                    (size_t)lda, (size_t)ldb, (size_t)ldc};
    /* Threads take column panels or row panels of C, whichever packs fewer values: every thread
     * packs A once per NC-wide block of its columns and its part of B once, so by columns A is
     * packed nt * ceil(N / (nt NC)) times and B once, by rows A ceil(N / NC) times and B nt times.
     * Small products stay on one thread. None of this changes the result. */
    const int npan = (N + NR - 1) / NR, mpan = (M + MR - 1) / MR;
    int nt = (double)M * N * K < 2e6 ? 1 : omp_get_max_threads();
    const double a_cols = (double)nt * ((N + (long)nt * NC - 1) / ((long)nt * NC)), a_rows = (N + NC - 1) / NC;
    const int by_cols = a_cols * M + N <= a_rows * M + (double)nt * N, units = by_cols ? npan : mpan;
    if (nt > units) nt = units;
#pragma omp parallel num_threads(nt)
    {
        const int t = omp_get_thread_num(), n = omp_get_num_threads();
        const int u0 = (int)((long)units * t / n), u1 = (int)((long)units * (t + 1) / n);
        if (by_cols)
            gemm_part(&g, 0, M, u0 * NR, u1 * NR < N ? u1 * NR : N);
        else
            gemm_part(&g, u0 * MR, u1 * MR < M ? u1 * MR : M, 0, N);
    }
}

#else

/* me_cpu_has_bf16() is 0 here, so the bf16 table does not exist and nothing calls this. */
void me_gemm_bf16(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N, int K, float alpha, const float *A,
                  int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    abort();
}

#endif
