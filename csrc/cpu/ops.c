/* CPU backend: every op of backend.h with OpenBLAS for the linear layers' matrix
 * products (the attention's per-head ones: cpu_attn_gemm, attn_gemm.c) and
 * OpenMP for element-wise work and reductions. All reductions use a fixed
 * partition (no atomics, no thread-order dependence), so results repeat
 * exactly for a given thread count. The row and column-block loops of LayerNorm,
 * the bias gradient and the attention's softmax are compiled three times
 * (ME_VARIANTS_OF, cpu/dispatch.h) and compute the same bits in each. */
#define _GNU_SOURCE /* mmap flags */
#include "cpu/blas.h"
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "backend.h"
#include "cpu/cpu_ops.h"
#include "cpu/dispatch.h"
#include "cpu/gemm_bf16.h"
#include "cpu/vmath.h"

#define PAR_MIN 4096 /* below this many elements, stay single-threaded */

/* ------------------------------------------------------------------ memory */

/* Large buffers (parameters, gradients, optimizer moments, workspaces) are
 * mapped with MAP_POPULATE: the kernel hands them out zero-filled and already
 * faulted in, so the pages are cleared once, when the buffer is made, and never
 * again inside a training step (a memset after malloc would touch every page a
 * second time). Small ones come from the heap. Both carry a 64-byte header
 * saying which. Under AddressSanitizer every buffer comes from the heap so that
 * overruns are caught. */
#define ALLOC_HEADER 64
#define ALLOC_MAP_MIN ((size_t)1 << 20)

static void *cpu_alloc(size_t bytes) {
    size_t total = (bytes + 63) / 64 * 64 + ALLOC_HEADER;
    char *p;
#if !defined(__SANITIZE_ADDRESS__)
    if (total >= ALLOC_MAP_MIN) {
        void *m = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
        if (m == MAP_FAILED) return NULL;
        p = m;
        *(size_t *)p = total;
        return p + ALLOC_HEADER;
    }
#endif
    p = aligned_alloc(64, total);
    if (!p) return NULL;
    memset(p, 0, total);
    return p + ALLOC_HEADER; /* header size 0: from the heap */
}
static void cpu_release(void *ptr) {
    if (!ptr) return;
    char *p = (char *)ptr - ALLOC_HEADER;
    size_t mapped = *(size_t *)p;
    if (mapped)
        munmap(p, mapped);
    else
        free(p);
}
static void cpu_zero(void *p, size_t bytes) {
    if (bytes) memset(p, 0, bytes);
}
static void cpu_copy(void *dst, const void *src, size_t bytes) {
    if (bytes) memcpy(dst, src, bytes);
}

/* --------------------------------------------------------------- embedding */

static void embedding_forward(float *out, const int32_t *ids, const float *table, int N, int C,
                              int accumulate) {
#pragma omp parallel for if ((size_t)N * C > PAR_MIN) schedule(static)
    for (int n = 0; n < N; n++) {
        const float *row = table + (size_t)ids[n] * C;
        float *o = out + (size_t)n * C;
        if (accumulate)
            for (int c = 0; c < C; c++) o[c] += row[c];
        else
            memcpy(o, row, sizeof(float) * C);
    }
}

/* Column blocks are split across threads and every thread walks all tokens in
 * order, so repeated ids accumulate in a fixed order. */
static void embedding_backward(float *dtable, const float *dout, const int32_t *ids, int N, int C,
                               int padding_idx) {
    const int BLK = 64;
    int nblk = (C + BLK - 1) / BLK;
#pragma omp parallel for if ((size_t)N * C > PAR_MIN) schedule(static)
    for (int blk = 0; blk < nblk; blk++) {
        int c0 = blk * BLK, c1 = c0 + BLK < C ? c0 + BLK : C;
        for (int n = 0; n < N; n++) {
            if (ids[n] == padding_idx) continue;
            float *d = dtable + (size_t)ids[n] * C;
            const float *g = dout + (size_t)n * C;
            for (int c = c0; c < c1; c++) d[c] += g[c];
        }
    }
}

/* --------------------------------------------------------------- layernorm */

/* LayerNorm of row n */
ME_INLINE void ln_forward_row_body(float *out, float *mean, float *rstd, const float *inp, const float *w,
                                   const float *b, int n, int C, float eps) {
    const float *x = inp + (size_t)n * C;
    const double m = me_sum_f64(x, (size_t)C) / C;
    const double v = me_sumsq_dev_f64(x, m, (size_t)C) / C; /* biased variance, as torch */
    float mf = (float)m;
    float r = (float)(1.0 / sqrt(v + (double)eps));
    float *o = out + (size_t)n * C;
    for (int c = 0; c < C; c++) o[c] = ((x[c] - mf) * r) * w[c] + b[c];
    mean[n] = mf;
    rstd[n] = r;
}
ME_VARIANTS_OF(ln_forward_row,
               (float *out, float *mean, float *rstd, const float *inp, const float *w, const float *b, int n, int C,
                float eps),
               (out, mean, rstd, inp, w, b, n, C, eps))

static void layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                              const float *w, const float *b, int N, int C, float eps) {
#pragma omp parallel for if ((size_t)N * C > PAR_MIN) schedule(static)
    for (int n = 0; n < N; n++) ln_forward_row(out, mean, rstd, inp, w, b, n, C, eps);
}

/* d(input) of LayerNorm's row n (accumulate: added to dinp's row) */
ME_INLINE void ln_backward_row_body(float *dinp, const float *dout, const float *inp, const float *mean,
                                    const float *rstd, const float *w, int n, int C, int accumulate) {
    const float *x = inp + (size_t)n * C, *g = dout + (size_t)n * C;
    const float m = mean[n], r = rstd[n];
    double sd[8] = {0, 0, 0, 0, 0, 0, 0, 0}, sdx[8] = {0, 0, 0, 0, 0, 0, 0, 0}; /* as me_sum_f64 */
    int c0 = 0;
    for (; c0 + 8 <= C; c0 += 8)
        for (int k = 0; k < 8; k++) {
            const float xh = (x[c0 + k] - m) * r, dn = g[c0 + k] * w[c0 + k];
            sd[k] += dn;
            sdx[k] += (double)dn * xh;
        }
    for (int k = 0; c0 + k < C; k++) {
        const float xh = (x[c0 + k] - m) * r, dn = g[c0 + k] * w[c0 + k];
        sd[k] += dn;
        sdx[k] += (double)dn * xh;
    }
    const float md = (float)(me_sum8_total(sd) / C), mdx = (float)(me_sum8_total(sdx) / C);
    float *d = dinp + (size_t)n * C;
    for (int c = 0; c < C; c++) {
        const float xh = (x[c] - m) * r, v = (g[c] * w[c] - md - xh * mdx) * r;
        d[c] = accumulate ? d[c] + v : v;
    }
}
ME_VARIANTS_OF(ln_backward_row,
               (float *dinp, const float *dout, const float *inp, const float *mean, const float *rstd,
                const float *w, int n, int C, int accumulate),
               (dinp, dout, inp, mean, rstd, w, n, C, accumulate))

/* Column blocks of this many columns, one per OpenMP iteration: each walks every row in order, so
 * a column's sum has one order whatever the thread count (and the block width). */
#define COL_BLOCK 64

/* LayerNorm's weight and bias gradients of columns c0 .. c1 - 1, added to dw and db */
ME_INLINE void ln_params_backward_cols_body(float *dw, float *db, const float *dout, const float *inp,
                                            const float *mean, const float *rstd, int N, int C, int c0, int c1) {
    float aw[COL_BLOCK], ab[COL_BLOCK];
    for (int c = c0; c < c1; c++) aw[c - c0] = ab[c - c0] = 0.0f;
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C, *g = dout + (size_t)n * C;
        const float m = mean[n], r = rstd[n];
        for (int c = c0; c < c1; c++) {
            aw[c - c0] += g[c] * ((x[c] - m) * r);
            ab[c - c0] += g[c];
        }
    }
    for (int c = c0; c < c1; c++) {
        dw[c] += aw[c - c0];
        db[c] += ab[c - c0];
    }
}
ME_VARIANTS_OF(ln_params_backward_cols,
               (float *dw, float *db, const float *dout, const float *inp, const float *mean, const float *rstd,
                int N, int C, int c0, int c1),
               (dw, db, dout, inp, mean, rstd, N, C, c0, c1))

static void layernorm_backward(float *dinp, float *dw, float *db, const float *dout,
                               const float *inp, const float *mean, const float *rstd,
                               const float *w, int N, int C, int accumulate) {
    if (dinp) {
#pragma omp parallel for if ((size_t)N * C > PAR_MIN) schedule(static)
        for (int n = 0; n < N; n++) ln_backward_row(dinp, dout, inp, mean, rstd, w, n, C, accumulate);
    }
    const int nblk = (C + COL_BLOCK - 1) / COL_BLOCK;
#pragma omp parallel for if ((size_t)N * C > PAR_MIN) schedule(static)
    for (int blk = 0; blk < nblk; blk++) {
        const int c0 = blk * COL_BLOCK;
        ln_params_backward_cols(dw, db, dout, inp, mean, rstd, N, C, c0, c0 + COL_BLOCK < C ? c0 + COL_BLOCK : C);
    }
}

/* ------------------------------------------------------------------ matmul */

/* Row-major C[M,N] = alpha * op(A) op(B) + beta * C with one thread pool: OpenBLAS
 * runs single-threaded (me_cpu_init) and the OpenMP threads each take a block of
 * C's rows (or columns when M is small), so BLAS and element-wise threads never
 * compete. The partition depends only on the thread count: results repeat. */
static void gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N, int K, float alpha,
                 const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    int nt = omp_get_max_threads();
    if (nt <= 1 || (double)M * N * K < 2e6) {
        cblas_sgemm(CblasRowMajor, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    int by_rows = M >= 64 * nt || M >= N;
    int len = by_rows ? M : N;
    int chunk = ((len + nt - 1) / nt + 15) / 16 * 16;
    int nchunks = (len + chunk - 1) / chunk;
#pragma omp parallel for schedule(static) num_threads(nchunks < nt ? nchunks : nt)
    for (int t = 0; t < nchunks; t++) {
        int s0 = t * chunk, n = s0 + chunk <= len ? chunk : len - s0;
        if (by_rows) {
            const float *a = ta == CblasNoTrans ? A + (size_t)s0 * lda : A + s0;
            cblas_sgemm(CblasRowMajor, ta, tb, n, N, K, alpha, a, lda, B, ldb, beta,
                        C + (size_t)s0 * ldc, ldc);
        } else {
            const float *b = tb == CblasNoTrans ? B + s0 : B + (size_t)s0 * ldb;
            cblas_sgemm(CblasRowMajor, ta, tb, M, n, K, alpha, A, lda, b, ldb, beta, C + s0, ldc);
        }
    }
}

/* db[c] += the sum of dout's column c over its N rows, for columns c0 .. c1 - 1 */
ME_INLINE void colsum_cols_body(float *db, const float *dout, int N, int OC, int c0, int c1) {
    float acc[COL_BLOCK];
    for (int c = c0; c < c1; c++) acc[c - c0] = 0.0f;
    for (int n = 0; n < N; n++) {
        const float *g = dout + (size_t)n * OC;
        for (int c = c0; c < c1; c++) acc[c - c0] += g[c];
    }
    for (int c = c0; c < c1; c++) db[c] += acc[c - c0];
}
ME_VARIANTS_OF(colsum_cols, (float *db, const float *dout, int N, int OC, int c0, int c1), (db, dout, N, OC, c0, c1))

static void colsum_accumulate(float *db, const float *dout, int N, int OC) {
    const int nblk = (OC + COL_BLOCK - 1) / COL_BLOCK;
#pragma omp parallel for if ((size_t)N * OC > PAR_MIN) schedule(static)
    for (int blk = 0; blk < nblk; blk++) {
        const int c0 = blk * COL_BLOCK;
        colsum_cols(db, dout, N, OC, c0, c0 + COL_BLOCK < OC ? c0 + COL_BLOCK : OC);
    }
}

typedef void (*GemmFn)(CBLAS_TRANSPOSE, CBLAS_TRANSPOSE, int, int, int, float, const float *, int,
                       const float *, int, float, float *, int);

static void matmul_forward_with(GemmFn mm, float *out, const float *inp, const float *w, const float *b,
                                int N, int C, int OC) {
    if (N == 0 || OC == 0) return;
    if (b) {
#pragma omp parallel for if ((size_t)N * OC > PAR_MIN) schedule(static)
        for (int n = 0; n < N; n++) memcpy(out + (size_t)n * OC, b, sizeof(float) * OC);
    }
    mm(CblasNoTrans, CblasTrans, N, OC, C, 1.0f, inp, C, w, C, b ? 1.0f : 0.0f, out, OC);
}

static void matmul_backward_with(GemmFn mm, float *dinp, float *dw, float *db, const float *dout,
                                 const float *inp, const float *w, int N, int C, int OC, int accumulate) {
    if (N == 0) return;
    if (db) colsum_accumulate(db, dout, N, OC); /* first: dout is still in cache from its producer */
    if (dinp)
        mm(CblasNoTrans, CblasNoTrans, N, C, OC, 1.0f, dout, OC, w, C, accumulate ? 1.0f : 0.0f, dinp, C);
    if (dw) mm(CblasTrans, CblasNoTrans, OC, C, N, 1.0f, dout, OC, inp, C, 1.0f, dw, C);
}

static void matmul_forward(float *out, const float *inp, const float *w, const float *b, int N,
                           int C, int OC) {
    matmul_forward_with(gemm, out, inp, w, b, N, C, OC);
}

static void matmul_backward(float *dinp, float *dw, float *db, const float *dout,
                            const float *inp, const float *w, int N, int C, int OC,
                            int accumulate) {
    matmul_backward_with(gemm, dinp, dw, db, dout, inp, w, N, C, OC, accumulate);
}

void me_cpu_gemm(int bf16, int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                 const float *B, int ldb, float beta, float *C, int ldc) {
    (bf16 ? me_gemm_bf16 : gemm)(ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda,
                                 B, ldb, beta, C, ldc);
}

/* The bf16 table's linear layers (the attention products stay in float32). */
static void matmul_forward_bf16(float *out, const float *inp, const float *w, const float *b, int N,
                                int C, int OC) {
    matmul_forward_with(me_gemm_bf16, out, inp, w, b, N, C, OC);
}

static void matmul_backward_bf16(float *dinp, float *dw, float *db, const float *dout,
                                 const float *inp, const float *w, int N, int C, int OC,
                                 int accumulate) {
    matmul_backward_with(me_gemm_bf16, dinp, dw, db, dout, inp, w, N, C, OC, accumulate);
}

/* -------------------------------------------------------------------- gelu */

/* cpu/vmath.c over fixed chunks, one per thread. */
#define CHUNKED(n, call)                                                             \
    do {                                                                             \
        const int nt_ = omp_get_max_threads();                                       \
        const size_t chunk_ = (((n) + nt_ - 1) / nt_ + 15) / 16 * 16;                \
        _Pragma("omp parallel for schedule(static) if ((n) > PAR_MIN)")              \
        for (int t_ = 0; t_ < nt_; t_++) {                                           \
            size_t a = t_ * chunk_, len = a < (n) ? ((n) - a < chunk_ ? (n) - a : chunk_) : 0; \
            if (len) call;                                                           \
        }                                                                            \
    } while (0)

static void gelu_forward(float *out, float *dact, const float *inp, size_t n, MeActivation act) {
    CHUNKED(n, me_vgelu_forward(out ? out + a : NULL, dact ? dact + a : NULL, inp + a, len,
                                act == ME_ACT_GELU_TANH));
}

static void gelu_backward(float *dinp, const float *dact, const float *dout, size_t n) {
#pragma omp parallel for if (n > PAR_MIN) schedule(static)
    for (size_t i = 0; i < n; i++) dinp[i] = dout[i] * dact[i];
}

/* --------------------------------------------------------------------- add */

static void add_forward(float *out, const float *a, const float *b, size_t n) {
#pragma omp parallel for if (n > PAR_MIN) schedule(static)
    for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

static void add_backward(float *da, float *db, const float *dout, size_t n, int accumulate) {
#pragma omp parallel for if (n > PAR_MIN) schedule(static)
    for (size_t i = 0; i < n; i++) {
        if (da) da[i] = accumulate ? da[i] + dout[i] : dout[i];
        if (db) db[i] = accumulate ? db[i] + dout[i] : dout[i];
    }
}

/* ----------------------------------------------------------------- dropout */

static void dropout_apply(float *out, const float *inp, size_t n, float p, uint64_t seed,
                          uint64_t site) {
    if (p <= 0.0f) {
        if (out != inp) memcpy(out, inp, n * sizeof(float));
        return;
    }
    if (p >= 1.0f) {
        memset(out, 0, n * sizeof(float));
        return;
    }
    const float scale = 1.0f / (1.0f - p);
    CHUNKED(n, me_vdropout(out + a, inp + a, len, p, scale, seed, site, a));
}

static void dropout_forward(float *out, const float *inp, size_t n, float p, uint64_t seed,
                            uint64_t site) {
    dropout_apply(out, inp, n, p, seed, site);
}

/* The mask and scale are the same as forward's, so backward is the same map. */
static void dropout_backward(float *dinp, const float *dout, size_t n, float p, uint64_t seed,
                             uint64_t site) {
    dropout_apply(dinp, dout, n, p, seed, site);
}

/* Dropout of rows `rows` [M] of a [*, C] tensor held compactly in [M, C]: element (m, c) is
 * element rows[m] * C + c of the full tensor, so it keeps or drops as it does there. */
static void dropout_rows(float *out, const float *inp, const int32_t *rows, int M, int C, float p, uint64_t seed,
                         uint64_t site) {
    if (p <= 0.0f) {
        if (out != inp) memcpy(out, inp, sizeof(float) * (size_t)M * C);
        return;
    }
    const float scale = p >= 1.0f ? 0.0f : 1.0f / (1.0f - p);
#pragma omp parallel for if ((size_t)M * C > PAR_MIN) schedule(static)
    for (int m = 0; m < M; m++)
        me_vdropout(out + (size_t)m * C, inp + (size_t)m * C, (size_t)C, p, scale, seed, site, (size_t)rows[m] * C);
}

/* --------------------------------------------------------------- attention */

/* One (batch, head) pair per OpenMP iteration: scores, softmax, dropout and the
 * context product stay in that thread's cache; each thread owns three T x T
 * scratch tiles (backward: dropped probabilities, their gradient, the dropout factors)
 * and two of T x HS floats: cpu_attn_gemm's B operands, K or V transposed (q.k and dP) or
 * a head's rows of K, V, Q or dctx made contiguous (their rows lie thousands of bytes apart in
 * the fused layouts: read in place, the same few cache sets and a page per row served them).
 * The transposed operand and the probabilities' gradient, which the products read and write by
 * rows of T, have rows of cpu_line_stride(T) floats. */
static size_t attention_thread_floats(int T, int HS) {
    const size_t ldt = (size_t)cpu_line_stride(T);
    return 2 * (size_t)T * T + (T + HS) * ldt + (size_t)HS * T;
}
static size_t attention_scratch_floats(int B, int T, int NH, int HS) {
    return (size_t)omp_get_max_threads() * attention_thread_floats(T, HS);
}

/* Softmax over keys of one row of scores, masked keys excluded (probability
 * exactly 0, as HF's additive finfo.min mask gives); a row whose keys are all
 * masked, or (row_masked) the row of a padded query, becomes uniform over all
 * keys, as it does in HF. */
ME_INLINE void masked_softmax_row_body(float *row, const int32_t *mask, int T, int row_masked) {
    float mx = -INFINITY;
    uint32_t any = 0;
    if (!row_masked) {
        const uint32_t ninf = 0xff800000u; /* -inf */
#pragma omp simd reduction(max : mx) reduction(| : any)
        for (int j = 0; j < T; j++) { /* masked keys become -inf, selected in integer bits: it vectorises */
            const uint32_t keep = 0u - (uint32_t)(mask[j] != 0);
            uint32_t bits;
            float v;
            memcpy(&bits, row + j, sizeof bits);
            bits = (bits & keep) | (ninf & ~keep);
            memcpy(&v, &bits, sizeof v);
            row[j] = v;
            mx = v > mx ? v : mx; /* a NaN score never becomes the max */
            any |= keep;
        }
    }
    if (!any) {
        for (int j = 0; j < T; j++) row[j] = 1.0f / (float)T;
        return;
    }
    for (int j = 0; j < T; j++) row[j] -= mx; /* masked keys stay -inf */
    me_vexp(row, row, (size_t)T); /* exp(-inf) = 0: masked keys */
    float inv = (float)(1.0 / me_sum_f64(row, (size_t)T));
    for (int j = 0; j < T; j++) row[j] *= inv;
}
ME_VARIANTS_OF(masked_softmax_row, (float *row, const int32_t *mask, int T, int row_masked), (row, mask, T, row_masked))

/* The queries of one sentence: rows q0 .. q0 + m - 1 of q; row r is position pos(r) of the
 * sentence (pos NULL: position r, all T of them). */
typedef struct {
    int q0, m;
    const int32_t *pos;
} Queries;

static Queries sentence_queries(int b, int T, const int32_t *qstart, const int32_t *qpos) {
    Queries s = {b * T, T, NULL};
    if (qstart) {
        s.q0 = qstart[b];
        s.m = qstart[b + 1] - qstart[b];
        s.pos = qpos + s.q0;
    }
    return s;
}

/* dst [m, T] = P with attention dropout applied: element (r, j) keeps iff
 * me_uniform(seed, site, pos(r) * T + j) >= p, so a subset of query rows sees the same masks as
 * the full matrix. */
static void attention_dropout(float *dst, const float *P, const Queries *s, int T, float p, uint64_t seed,
                              uint64_t site) {
    const float scl = p >= 1.0f ? 0.0f : 1.0f / (1.0f - p);
    for (int r = 0; r < s->m; r++)
        me_vdropout(dst + (size_t)r * T, P + (size_t)r * T, (size_t)T, p, scl, seed, site,
                    (size_t)(s->pos ? s->pos[r] : r) * T);
}

/* dst = x dropped out by the factors attention_dropout drew for a tile of ones (0 or 1/(1-p)):
 * the same as drawing the mask again (a dropped element is +0 whatever x is) */
ME_INLINE void apply_dropout_factors_body(float *dst, const float *x, const float *keep, size_t n) {
#pragma omp simd
    for (size_t i = 0; i < n; i++) { /* in integer bits, which vectorise: keep is +0 or > 0 */
        const float v = x[i] * keep[i];
        uint32_t vb, kb;
        memcpy(&vb, &v, sizeof vb);
        memcpy(&kb, keep + i, sizeof kb);
        vb &= 0u - (uint32_t)(kb != 0);
        memcpy(dst + i, &vb, sizeof vb);
    }
}
ME_VARIANTS_OF(apply_dropout_factors, (float *dst, const float *x, const float *keep, size_t n), (dst, x, keep, n))

/* Back through one row's dropout and softmax: g holds the gradient of the row's dropped-out
 * probabilities, pr the probabilities, keep the dropout factors (NULL: no dropout). Leaves the
 * scores' gradient dS = P * (dP - sum(dP * P)) in ds (NULL: not wanted) and dS * scale in g. */
ME_INLINE void softmax_backward_row_body(float *g, float *ds, const float *pr, const float *keep, int T, float scale) {
    if (keep) apply_dropout_factors_body(g, g, keep, (size_t)T);
    const float df = (float)me_dot_f64(g, pr, (size_t)T);
    for (int j = 0; j < T; j++) g[j] = pr[j] * (g[j] - df);
    if (ds) memcpy(ds, g, (size_t)T * sizeof(float));
    for (int j = 0; j < T; j++) g[j] *= scale;
}
ME_VARIANTS_OF(softmax_backward_row, (float *g, float *ds, const float *pr, const float *keep, int T, float scale),
               (g, ds, pr, keep, T, scale))

/* Attention over the query rows of qstart / qpos (NULL: every position) with keys and values
 * of every position: q [*, ldq], k and v [B*T, ldkv] (row b*T + t), ctx [*, ldc]; probs holds
 * each (b, h)'s [m_b, T] block at (q0_b * NH + h * m_b) * T, which for all positions is the
 * [B, NH, T, T] layout. scores = scale * q.k + bias (bias as attention_bias_forward's, read at
 * the queries' positions; NULL: none); query_mask as there. */
static void attention_core_forward(float *ctx, int ldc, float *probs, const float *q, int ldq, const float *k,
                                   const float *v, int ldkv, const int32_t *mask, const float *bias,
                                   int bias_per_batch, float scale, int query_mask, const int32_t *qstart,
                                   const int32_t *qpos, int B, int T, int NH, int HS, float p, uint64_t seed,
                                   uint64_t site, float *scratch) {
    const size_t TT = (size_t)T * T;
#pragma omp parallel for collapse(2) schedule(static) if ((size_t)B * NH * TT * HS > 100000)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            const Queries s = sentence_queries(b, T, qstart, qpos);
            if (s.m == 0) continue;
            const float *qb = q + (size_t)s.q0 * ldq + h * HS;
            const float *kb = k + (size_t)b * T * ldkv + h * HS, *vb = v + (size_t)b * T * ldkv + h * HS;
            float *P = probs + ((size_t)s.q0 * NH + (size_t)h * s.m) * T;
            float *tile = scratch + attention_thread_floats(T, HS) * omp_get_thread_num(), *bt = tile + TT;
            const int ldt = cpu_line_stride(T);
            if (bias) {
                const float *bb = bias + ((bias_per_batch ? (size_t)b * NH : 0) + h) * TT;
                for (int r = 0; r < s.m; r++)
                    memcpy(P + (size_t)r * T, bb + (size_t)(s.pos ? s.pos[r] : r) * T, (size_t)T * sizeof(float));
            }
            cpu_transpose_rows(bt, ldt, kb, ldkv, T, HS);
            cpu_attn_gemm(s.m, T, HS, scale, qb, ldq, 1, bt, ldt, P, T, bias != NULL); /* scale q.k (+ bias) */
            const int32_t *mk = mask + (size_t)b * T;
            for (int r = 0; r < s.m; r++)
                masked_softmax_row(P + (size_t)r * T, mk, T, query_mask && !mk[s.pos ? s.pos[r] : r]);
            const float *Pd = P;
            if (p > 0.0f) {
                attention_dropout(tile, P, &s, T, p, seed, site + (uint64_t)b * NH + h);
                Pd = tile;
            }
            cpu_copy_rows(bt, vb, ldkv, T, HS); /* V's rows, contiguous, where K^T was */
            cpu_attn_gemm(s.m, HS, T, 1.0f, Pd, T, 1, bt, HS, ctx + (size_t)s.q0 * ldc + h * HS, ldc, 0);
        }
}

/* Backward of attention_core_forward: dq (rows as q), dk and dv of every position (overwritten);
 * dscores (NULL: not wanted) as attention_bias_backward's at the queries' positions, 0 in the rows
 * of the positions no query reads. */
static void attention_core_backward(float *dq, int ldq, float *dk, float *dv, int ldkv, float *dscores,
                                    const float *dctx, int ldc, const float *q, const float *k, const float *v,
                                    const float *probs, const int32_t *mask, float scale, int query_mask,
                                    const int32_t *qstart, const int32_t *qpos, int B, int T, int NH, int HS, float p,
                                    uint64_t seed, uint64_t site, float *scratch) {
    const size_t TT = (size_t)T * T;
#pragma omp parallel for collapse(2) schedule(static) if ((size_t)B * NH * TT * HS > 100000)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            const Queries s = sentence_queries(b, T, qstart, qpos);
            const size_t kv0 = (size_t)b * T * ldkv + h * HS;
            float *ds = dscores ? dscores + ((size_t)b * NH + h) * TT : NULL;
            if (ds && s.m < T) memset(ds, 0, TT * sizeof(float)); /* the rows no query reads */
            if (s.m == 0) { /* no query reads this sentence: its keys and values get no gradient */
                for (int t = 0; t < T; t++) {
                    memset(dk + kv0 + (size_t)t * ldkv, 0, sizeof(float) * HS);
                    memset(dv + kv0 + (size_t)t * ldkv, 0, sizeof(float) * HS);
                }
                continue;
            }
            const float *qb = q + (size_t)s.q0 * ldq + h * HS, *kb = k + kv0, *vb = v + kv0;
            const float *dc = dctx + (size_t)s.q0 * ldc + h * HS;
            const float *P = probs + ((size_t)s.q0 * NH + (size_t)h * s.m) * T;
            const int32_t *mk = mask + (size_t)b * T;
            const int ldt = cpu_line_stride(T);
            float *tile = scratch + attention_thread_floats(T, HS) * omp_get_thread_num(), *keep = tile + TT,
                  *dP = keep + TT, *bt = dP + (size_t)T * ldt, *rows = bt + (size_t)HS * ldt;
            const uint64_t st = site + (uint64_t)b * NH + h;
            const float *Pd = P;
            if (p > 0.0f) { /* the mask drawn once: keep = 1/(1-p) where kept, 0 where dropped */
                for (size_t i = 0; i < (size_t)s.m * T; i++) keep[i] = 1.0f;
                attention_dropout(keep, keep, &s, T, p, seed, st);
                apply_dropout_factors(tile, P, keep, (size_t)s.m * T);
                Pd = tile;
            }
            /* dV = Pd^T dctx ; dPd = dctx V^T (B operands: dctx's rows, V transposed) */
            cpu_copy_rows(rows, dc, ldc, s.m, HS);
            cpu_attn_gemm(T, HS, s.m, 1.0f, Pd, 1, T, rows, HS, dv + kv0, ldkv, 0);
            cpu_transpose_rows(bt, ldt, vb, ldkv, T, HS);
            cpu_attn_gemm(s.m, T, HS, 1.0f, dc, ldc, 1, bt, ldt, dP, ldt, 0);
            /* through dropout, then softmax; a padded query's row (query_mask) was filled, not
             * computed, so its dS is 0. dS is the bias gradient; scaled, the gradient of q.k */
            for (int r = 0; r < s.m; r++) {
                float *g = dP + (size_t)r * ldt, *dsr = ds ? ds + (size_t)(s.pos ? s.pos[r] : r) * T : NULL;
                if (query_mask && !mk[s.pos ? s.pos[r] : r]) {
                    memset(g, 0, (size_t)T * sizeof(float));
                    if (dsr) memset(dsr, 0, (size_t)T * sizeof(float));
                } else {
                    softmax_backward_row(g, dsr, P + (size_t)r * T, p > 0.0f ? keep + (size_t)r * T : NULL, T, scale);
                }
            }
            /* dQ = dS K ; dK = dS^T Q (B operands: K's rows, Q's rows) */
            cpu_copy_rows(bt, kb, ldkv, T, HS);
            cpu_attn_gemm(s.m, HS, T, 1.0f, dP, ldt, 1, bt, HS, dq + (size_t)s.q0 * ldq + h * HS, ldq, 0);
            cpu_copy_rows(rows, qb, ldq, s.m, HS);
            cpu_attn_gemm(T, HS, s.m, 1.0f, dP, 1, ldt, rows, HS, dk + kv0, ldkv, 0);
        }
}

/* The biased attention of backend.h over a fused qkv; plain attention is bias = NULL,
 * scale = 1/sqrt(HS), query_mask = 0. */
static void attention_bias_forward(float *ctx, float *probs, const float *qkv, const int32_t *mask,
                                   const float *bias, int bias_per_batch, float scale, int query_mask,
                                   int B, int T, int NH, int HS, float p, uint64_t seed,
                                   uint64_t site, float *scratch) {
    const int D = NH * HS;
    attention_core_forward(ctx, D, probs, qkv, 3 * D, qkv + D, qkv + 2 * D, 3 * D, mask, bias, bias_per_batch,
                           scale, query_mask, NULL, NULL, B, T, NH, HS, p, seed, site, scratch);
}

static void attention_bias_backward(float *dqkv, float *dscores, const float *dctx,
                                    const float *qkv, const float *probs, const int32_t *mask,
                                    float scale, int query_mask, int B, int T, int NH, int HS,
                                    float p, uint64_t seed, uint64_t site, float *scratch) {
    const int D = NH * HS;
    attention_core_backward(dqkv, 3 * D, dqkv + D, dqkv + 2 * D, 3 * D, dscores, dctx, D, qkv, qkv + D,
                            qkv + 2 * D, probs, mask, scale, query_mask, NULL, NULL, B, T, NH, HS, p, seed, site,
                            scratch);
}

static void attention_forward(float *ctx, float *probs, const float *qkv, const int32_t *mask,
                              int B, int T, int NH, int HS, float p, uint64_t seed, uint64_t site,
                              float *scratch) {
    attention_bias_forward(ctx, probs, qkv, mask, NULL, 0, 1.0f / sqrtf((float)HS), 0, B, T, NH, HS,
                           p, seed, site, scratch);
}

static void attention_backward(float *dqkv, const float *dctx, const float *qkv,
                               const float *probs, const int32_t *mask, int B, int T, int NH,
                               int HS, float p, uint64_t seed, uint64_t site, float *scratch) {
    attention_bias_backward(dqkv, NULL, dctx, qkv, probs, mask, 1.0f / sqrtf((float)HS), 0, B, T,
                            NH, HS, p, seed, site, scratch);
}

static void attention_rows_forward(float *ctx, float *probs, const float *q, int ldq, const float *k, const float *v,
                                   int ldkv, const int32_t *mask, const float *bias, int bias_per_batch, float scale,
                                   int query_mask, const int32_t *qstart, const int32_t *qpos, int B, int T, int NH,
                                   int HS, float p, uint64_t seed, uint64_t site, float *scratch) {
    attention_core_forward(ctx, NH * HS, probs, q, ldq, k, v, ldkv, mask, bias, bias_per_batch, scale, query_mask,
                           qstart, qpos, B, T, NH, HS, p, seed, site, scratch);
}

static void attention_rows_backward(float *dq, float *dk, float *dv, float *dscores, const float *dctx,
                                    const float *q, int ldq, const float *k, const float *v, int ldkv,
                                    const float *probs, const int32_t *mask, float scale, int query_mask,
                                    const int32_t *qstart, const int32_t *qpos, int B, int T, int NH, int HS,
                                    float p, uint64_t seed, uint64_t site, float *scratch) {
    attention_core_backward(dq, ldq, dk, dv, ldkv, dscores, dctx, NH * HS, q, k, v, probs, mask, scale, query_mask,
                            qstart, qpos, B, T, NH, HS, p, seed, site, scratch);
}

/* ------------------------------------------------------------------ row mask */

static void mask_rows(float *x, const int32_t *mask, int N, int C) {
#pragma omp parallel for schedule(static) if ((size_t)N * C > PAR_MIN)
    for (int n = 0; n < N; n++)
        if (!mask[n]) memset(x + (size_t)n * C, 0, (size_t)C * sizeof(float));
}

/* --------------------------------------------------- relative position bias */

/* bias[h, i, j] = table[buckets[j - i + T - 1], h] */
static void relbias_forward(float *bias, const float *table, const int32_t *buckets, int T, int NH) {
#pragma omp parallel for schedule(static) if ((size_t)NH * T * T > PAR_MIN)
    for (int h = 0; h < NH; h++)
        for (int i = 0; i < T; i++) {
            float *row = bias + ((size_t)h * T + i) * T;
            const int32_t *bk = buckets + (T - 1 - i);
            for (int j = 0; j < T; j++) row[j] = table[(size_t)bk[j] * NH + h];
        }
}

/* dtable[buckets[j - i + T - 1], h] += sum_b dbias[b, h, i, j]: one head per thread, each
 * column of dtable summed in a fixed order (deterministic). */
static void relbias_backward(float *dtable, const float *dbias, const int32_t *buckets, int B, int T,
                             int NH) {
#pragma omp parallel for schedule(static) if ((size_t)B * NH * T * T > PAR_MIN)
    for (int h = 0; h < NH; h++)
        for (int b = 0; b < B; b++)
            for (int i = 0; i < T; i++) {
                const float *row = dbias + (((size_t)b * NH + h) * T + i) * T;
                const int32_t *bk = buckets + (T - 1 - i);
                for (int j = 0; j < T; j++) dtable[(size_t)bk[j] * NH + h] += row[j];
            }
}

/* ---------------------------------------------------------------- backend */

/* CPU ops complete before they return and cannot fail. */
static int cpu_status(char *err) { return 0; }

static const MeBackend CPU_BACKEND = {
    .name = "cpu",
    .precision = "fp32",
    .alloc = cpu_alloc,
    .release = cpu_release,
    .zero = cpu_zero,
    .to_device = cpu_copy,
    .to_host = cpu_copy,
    .embedding_forward = embedding_forward,
    .embedding_backward = embedding_backward,
    .layernorm_forward = layernorm_forward,
    .layernorm_backward = layernorm_backward,
    .matmul_forward = matmul_forward,
    .matmul_backward = matmul_backward,
    .gelu_forward = gelu_forward,
    .gelu_backward = gelu_backward,
    .add_forward = add_forward,
    .add_backward = add_backward,
    .dropout_forward = dropout_forward,
    .dropout_backward = dropout_backward,
    .attention_forward = attention_forward,
    .attention_backward = attention_backward,
    .attention_scratch_floats = attention_scratch_floats,
    .attention_rows_forward = attention_rows_forward,
    .attention_rows_backward = attention_rows_backward,
    .dropout_rows_forward = dropout_rows,
    .dropout_rows_backward = dropout_rows,
    .rope_forward = cpu_rope_forward,
    .rope_backward = cpu_rope_backward,
    .glu_forward = cpu_glu_forward,
    .glu_backward = cpu_glu_backward,
    .window_attention_forward = cpu_window_attention_forward,
    .window_attention_backward = cpu_window_attention_backward,
    .window_attention_scratch_floats = cpu_window_attention_scratch_floats,
    .attention_bias_forward = attention_bias_forward,
    .attention_bias_backward = attention_bias_backward,
    .relbias_forward = relbias_forward,
    .relbias_backward = relbias_backward,
    .mask_rows_forward = mask_rows,
    .mask_rows_backward = mask_rows,
    .conv1d_forward = cpu_conv1d_forward,
    .conv1d_backward = cpu_conv1d_backward,
    .disentangled_forward = cpu_disentangled_forward,
    .disentangled_backward = cpu_disentangled_backward,
    .disentangled_scratch_floats = cpu_disentangled_scratch_floats,
    .pool_forward = cpu_pool_forward,
    .pool_backward = cpu_pool_backward,
    .concat_forward = cpu_concat_forward,
    .concat_backward = cpu_concat_backward,
    .combine_forward = cpu_combine_forward,
    .combine_backward = cpu_combine_backward,
    .cross_entropy_forward = cpu_cross_entropy_forward,
    .cross_entropy_backward = cpu_cross_entropy_backward,
    .mse_forward = cpu_mse_forward,
    .mse_backward = cpu_mse_backward,
    .crf_forward = cpu_crf_forward,
    .crf_backward = cpu_crf_backward,
    .crf_viterbi = cpu_crf_viterbi,
    .sum_squares = cpu_sum_squares,
    .sum_squares_rows = cpu_sum_squares_rows,
    .scale = cpu_scale,
    .adamw_update = cpu_adamw_update,
    .status = cpu_status,
};

const MeBackend *me_cpu_backend(void) {
    static int initialised = 0;
    if (!initialised) { /* single pool: OpenMP threads, OpenBLAS single-threaded inside */
        me_blas_set_threads(1);
        initialised = 1;
    }
    return &CPU_BACKEND;
}

/* The same table with bf16 linear layers; built on first use, NULL without AVX512-BF16. */
const MeBackend *me_cpu_bf16_backend(void) {
    static MeBackend table;
    static int built = 0;
    if (!me_cpu_has_bf16()) return NULL;
#pragma omp critical(me_cpu_bf16_table)
    if (!built) {
        table = *me_cpu_backend();
        table.precision = "bf16";
        table.matmul_forward = matmul_forward_bf16;
        table.matmul_backward = matmul_backward_bf16;
        built = 1;
    }
    return &table;
}
