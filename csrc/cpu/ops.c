/* CPU backend: every op of backend.h with OpenBLAS for matrix products and
 * OpenMP for element-wise work and reductions. All reductions use a fixed
 * partition (no atomics, no thread-order dependence), so results repeat
 * exactly for a given thread count. */
#include "cpu/blas.h"
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "cpu/cpu_ops.h"

#define PAR_MIN 4096 /* below this many elements, stay single-threaded */

/* ------------------------------------------------------------------ memory */

static void *cpu_alloc(size_t bytes) {
    if (bytes == 0) bytes = 64;
    size_t rounded = (bytes + 63) / 64 * 64;
    void *p = aligned_alloc(64, rounded);
    if (p) memset(p, 0, rounded);
    return p;
}
static void cpu_release(void *p) { free(p); }
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

static void layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                              const float *w, const float *b, int N, int C, float eps) {
#pragma omp parallel for if ((size_t)N * C > PAR_MIN) schedule(static)
    for (int n = 0; n < N; n++) {
        const float *x = inp + (size_t)n * C;
        double s = 0.0;
        for (int c = 0; c < C; c++) s += x[c];
        double m = s / C;
        double v = 0.0;
        for (int c = 0; c < C; c++) {
            double d = x[c] - m;
            v += d * d;
        }
        v /= C; /* biased variance, as torch */
        float mf = (float)m;
        float r = (float)(1.0 / sqrt(v + (double)eps));
        float *o = out + (size_t)n * C;
        for (int c = 0; c < C; c++) o[c] = ((x[c] - mf) * r) * w[c] + b[c];
        mean[n] = mf;
        rstd[n] = r;
    }
}

static void layernorm_backward(float *dinp, float *dw, float *db, const float *dout,
                               const float *inp, const float *mean, const float *rstd,
                               const float *w, int N, int C, int accumulate) {
    if (dinp) {
#pragma omp parallel for if ((size_t)N * C > PAR_MIN) schedule(static)
        for (int n = 0; n < N; n++) {
            const float *x = inp + (size_t)n * C, *g = dout + (size_t)n * C;
            float m = mean[n], r = rstd[n];
            double sd = 0.0, sdx = 0.0;
            for (int c = 0; c < C; c++) {
                float xh = (x[c] - m) * r;
                float dn = g[c] * w[c];
                sd += dn;
                sdx += (double)dn * xh;
            }
            float md = (float)(sd / C), mdx = (float)(sdx / C);
            float *d = dinp + (size_t)n * C;
            for (int c = 0; c < C; c++) {
                float xh = (x[c] - m) * r;
                float v = (g[c] * w[c] - md - xh * mdx) * r;
                d[c] = accumulate ? d[c] + v : v;
            }
        }
    }
    const int BLK = 32;
    int nblk = (C + BLK - 1) / BLK;
#pragma omp parallel for if ((size_t)N * C > PAR_MIN) schedule(static)
    for (int blk = 0; blk < nblk; blk++) {
        int c0 = blk * BLK, c1 = c0 + BLK < C ? c0 + BLK : C;
        float aw[32], ab[32];
        for (int c = c0; c < c1; c++) aw[c - c0] = ab[c - c0] = 0.0f;
        for (int n = 0; n < N; n++) {
            const float *x = inp + (size_t)n * C, *g = dout + (size_t)n * C;
            float m = mean[n], r = rstd[n];
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

static void colsum_accumulate(float *db, const float *dout, int N, int OC) {
    const int BLK = 32;
    int nblk = (OC + BLK - 1) / BLK;
#pragma omp parallel for if ((size_t)N * OC > PAR_MIN) schedule(static)
    for (int blk = 0; blk < nblk; blk++) {
        int c0 = blk * BLK, c1 = c0 + BLK < OC ? c0 + BLK : OC;
        float acc[32];
        for (int c = c0; c < c1; c++) acc[c - c0] = 0.0f;
        for (int n = 0; n < N; n++) {
            const float *g = dout + (size_t)n * OC;
            for (int c = c0; c < c1; c++) acc[c - c0] += g[c];
        }
        for (int c = c0; c < c1; c++) db[c] += acc[c - c0];
    }
}

static void matmul_forward(float *out, const float *inp, const float *w, const float *b, int N,
                           int C, int OC) {
    if (N == 0 || OC == 0) return;
    if (b) {
#pragma omp parallel for if ((size_t)N * OC > PAR_MIN) schedule(static)
        for (int n = 0; n < N; n++) memcpy(out + (size_t)n * OC, b, sizeof(float) * OC);
    }
    gemm(CblasNoTrans, CblasTrans, N, OC, C, 1.0f, inp, C, w, C, b ? 1.0f : 0.0f, out, OC);
}

static void matmul_backward(float *dinp, float *dw, float *db, const float *dout,
                            const float *inp, const float *w, int N, int C, int OC,
                            int accumulate) {
    if (N == 0) return;
    if (dinp)
        gemm(CblasNoTrans, CblasNoTrans, N, C, OC, 1.0f, dout, OC, w, C, accumulate ? 1.0f : 0.0f,
             dinp, C);
    if (dw)
        gemm(CblasTrans, CblasNoTrans, OC, C, N, 1.0f, dout, OC, inp, C, 1.0f, dw, C);
    if (db) colsum_accumulate(db, dout, N, OC);
}

/* -------------------------------------------------------------------- gelu */

static void gelu_forward(float *out, const float *inp, size_t n, MeActivation act) {
#pragma omp parallel for if (n > PAR_MIN) schedule(static)
    for (size_t i = 0; i < n; i++) out[i] = cpu_gelu(inp[i], act, NULL);
}

static void gelu_backward(float *dinp, const float *inp, const float *dout, size_t n,
                          MeActivation act) {
#pragma omp parallel for if (n > PAR_MIN) schedule(static)
    for (size_t i = 0; i < n; i++) {
        float grad;
        cpu_gelu(inp[i], act, &grad);
        dinp[i] = dout[i] * grad;
    }
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
    float scale = 1.0f / (1.0f - p);
#pragma omp parallel for if (n > PAR_MIN) schedule(static)
    for (size_t i = 0; i < n; i++) out[i] = me_uniform(seed, site, i) >= p ? inp[i] * scale : 0.0f;
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

/* --------------------------------------------------------------- attention */

/* One (batch, head) pair per OpenMP iteration: scores, softmax, dropout and the
 * context product stay in that thread's cache; each thread owns two T x T
 * scratch tiles. */
static size_t attention_scratch_floats(int B, int T, int NH, int HS) {
    return 2 * (size_t)omp_get_max_threads() * T * T;
}

/* Softmax over keys of one row of scores, masked keys excluded (probability
 * exactly 0, as HF's additive finfo.min mask gives); a row whose keys are all
 * masked, or (row_masked) the row of a padded query, becomes uniform over all
 * keys, as it does in HF. */
static void masked_softmax_row(float *row, const int32_t *mask, int T, int row_masked) {
    float mx = -INFINITY;
    int any = 0;
    for (int j = 0; j < T && !row_masked; j++)
        if (mask[j]) {
            any = 1;
            if (row[j] > mx) mx = row[j];
        }
    if (!any) {
        for (int j = 0; j < T; j++) row[j] = 1.0f / (float)T;
        return;
    }
    double s = 0.0;
    for (int j = 0; j < T; j++) {
        float e = mask[j] ? expf(row[j] - mx) : 0.0f;
        row[j] = e;
        s += e;
    }
    float inv = (float)(1.0 / s);
    for (int j = 0; j < T; j++) row[j] *= inv;
}

/* dst = P with attention dropout applied (mask from (seed, site, index)) */
static void attention_dropout(float *dst, const float *P, size_t n, float p, uint64_t seed,
                              uint64_t site) {
    float scl = p >= 1.0f ? 0.0f : 1.0f / (1.0f - p);
    for (size_t i = 0; i < n; i++) dst[i] = me_uniform(seed, site, i) >= p ? P[i] * scl : 0.0f;
}

/* The biased attention of backend.h; plain attention is bias = NULL, scale = 1/sqrt(HS),
 * query_mask = 0. */
static void attention_bias_forward(float *ctx, float *probs, const float *qkv, const int32_t *mask,
                                   const float *bias, int bias_per_batch, float scale, int query_mask,
                                   int B, int T, int NH, int HS, float p, uint64_t seed,
                                   uint64_t site, float *scratch) {
    const int D = NH * HS, D3 = 3 * D;
    const size_t TT = (size_t)T * T;
#pragma omp parallel for collapse(2) schedule(static) if ((size_t)B * NH * TT * HS > 100000)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            const float *q = qkv + (size_t)b * T * D3 + h * HS, *k = q + D, *v = q + 2 * D;
            float *P = probs + ((size_t)b * NH + h) * TT;
            float beta = 0.0f;
            if (bias) {
                memcpy(P, bias + ((bias_per_batch ? (size_t)b * NH : 0) + h) * TT, TT * sizeof(float));
                beta = 1.0f;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, HS, scale, q, D3, k, D3,
                        beta, P, T);
            const int32_t *m = mask + (size_t)b * T;
            for (int r = 0; r < T; r++) masked_softmax_row(P + (size_t)r * T, m, T, query_mask && !m[r]);
            const float *Pd = P;
            if (p > 0.0f) {
                float *tile = scratch + 2 * TT * omp_get_thread_num();
                attention_dropout(tile, P, TT, p, seed, site + (uint64_t)b * NH + h);
                Pd = tile;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, HS, T, 1.0f, Pd, T, v, D3,
                        0.0f, ctx + (size_t)b * T * D + h * HS, D);
        }
}

static void attention_forward(float *ctx, float *probs, const float *qkv, const int32_t *mask,
                              int B, int T, int NH, int HS, float p, uint64_t seed, uint64_t site,
                              float *scratch) {
    attention_bias_forward(ctx, probs, qkv, mask, NULL, 0, 1.0f / sqrtf((float)HS), 0, B, T, NH, HS,
                           p, seed, site, scratch);
}

static void attention_bias_backward(float *dqkv, float *dscores, const float *dctx,
                                    const float *qkv, const float *probs, const int32_t *mask,
                                    float scale, int query_mask, int B, int T, int NH, int HS,
                                    float p, uint64_t seed, uint64_t site, float *scratch) {
    const int D = NH * HS, D3 = 3 * D;
    const size_t TT = (size_t)T * T;
    const float scl = p >= 1.0f ? 0.0f : 1.0f / (1.0f - p);
#pragma omp parallel for collapse(2) schedule(static) if ((size_t)B * NH * TT * HS > 100000)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            const size_t row0 = (size_t)b * T * D3 + h * HS;
            const float *q = qkv + row0, *k = q + D, *v = q + 2 * D;
            float *dq = dqkv + row0, *dk = dq + D, *dv = dq + 2 * D;
            const float *dc = dctx + (size_t)b * T * D + h * HS;
            const float *P = probs + ((size_t)b * NH + h) * TT;
            const int32_t *m = mask + (size_t)b * T;
            float *tile = scratch + 2 * TT * omp_get_thread_num(), *dP = tile + TT;
            const uint64_t st = site + (uint64_t)b * NH + h;
            const float *Pd = P;
            if (p > 0.0f) {
                attention_dropout(tile, P, TT, p, seed, st);
                Pd = tile;
            }
            /* dV = Pd^T dctx ; dPd = dctx V^T */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, HS, T, 1.0f, Pd, T, dc, D, 0.0f,
                        dv, D3);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, HS, 1.0f, dc, D, v, D3, 0.0f,
                        dP, T);
            /* through dropout, then softmax: dS = P * (dP - sum(dP * P)); a padded query's row
             * (query_mask) was filled, not computed, so its dS is 0. dS is the bias gradient;
             * scaled, the gradient of q.k */
            float *ds = dscores ? dscores + ((size_t)b * NH + h) * TT : NULL;
            for (int r = 0; r < T; r++) {
                float *g = dP + (size_t)r * T;
                const float *pr = P + (size_t)r * T;
                if (query_mask && !m[r]) {
                    memset(g, 0, (size_t)T * sizeof(float));
                } else {
                    if (p > 0.0f)
                        for (int j = 0; j < T; j++)
                            g[j] = me_uniform(seed, st, (size_t)r * T + j) >= p ? g[j] * scl : 0.0f;
                    double dot = 0.0;
                    for (int j = 0; j < T; j++) dot += (double)g[j] * pr[j];
                    float df = (float)dot;
                    for (int j = 0; j < T; j++) g[j] = pr[j] * (g[j] - df);
                }
                if (ds) memcpy(ds + (size_t)r * T, g, (size_t)T * sizeof(float));
                for (int j = 0; j < T; j++) g[j] *= scale;
            }
            /* dQ = dS K ; dK = dS^T Q */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, HS, T, 1.0f, dP, T, k, D3,
                        0.0f, dq, D3);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, HS, T, 1.0f, dP, T, q, D3, 0.0f,
                        dk, D3);
        }
}

static void attention_backward(float *dqkv, const float *dctx, const float *qkv,
                               const float *probs, const int32_t *mask, int B, int T, int NH,
                               int HS, float p, uint64_t seed, uint64_t site, float *scratch) {
    attention_bias_backward(dqkv, NULL, dctx, qkv, probs, mask, 1.0f / sqrtf((float)HS), 0, B, T,
                            NH, HS, p, seed, site, scratch);
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
