/* CPU backend, part 2: the ops of the training step after the encoders —
 * pooling, combination, losses and the optimizer. Same conventions as ops.c:
 * fixed partitions, so results repeat for a given thread count. */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "cpu/blas.h"
#include "cpu/cpu_ops.h"
#include "cpu/dispatch.h"

#define PAR_MIN 4096

void cpu_pool_forward(float *out, const float *h, const float *w, int B, int T, int K, int C) {
#pragma omp parallel for if ((size_t)B * K * T * C > 100000) schedule(static)
    for (int b = 0; b < B; b++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, K, C, T, 1.0f, w + (size_t)b * K * T, T,
                    h + (size_t)b * T * C, C, 0.0f, out + (size_t)b * K * C, C);
}

void cpu_pool_backward(float *dh, const float *dout, const float *w, int B, int T, int K, int C,
                       int accumulate) {
#pragma omp parallel for if ((size_t)B * K * T * C > 100000) schedule(static)
    for (int b = 0; b < B; b++)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, C, K, 1.0f, w + (size_t)b * K * T, T,
                    dout + (size_t)b * K * C, C, accumulate ? 1.0f : 0.0f, dh + (size_t)b * T * C, C);
}

static void copy_block(float *dst, int ldd, const float *src, int lds, int R, int C, int accumulate) {
#pragma omp parallel for if ((size_t)R * C > PAR_MIN) schedule(static)
    for (int r = 0; r < R; r++) {
        float *d = dst + (size_t)r * ldd;
        const float *s = src + (size_t)r * lds;
        if (accumulate)
            for (int c = 0; c < C; c++) d[c] += s[c];
        else
            memcpy(d, s, sizeof(float) * C);
    }
}

void cpu_concat_forward(float *dst, int ldd, const float *src, int lds, int R, int C) {
    copy_block(dst, ldd, src, lds, R, C, 0);
}

void cpu_concat_backward(float *dsrc, int lds, const float *ddst, int ldd, int R, int C, int accumulate) {
    copy_block(dsrc, lds, ddst, ldd, R, C, accumulate);
}

void cpu_combine_forward(float *out, float *alpha, const float *x, const float *scores, int n, int R,
                         int C) {
#pragma omp parallel for if ((size_t)R * C * n > PAR_MIN) schedule(static)
    for (int r = 0; r < R; r++) {
        if (scores) {
            float mx = scores[r];
            for (int i = 1; i < n; i++) mx = scores[(size_t)i * R + r] > mx ? scores[(size_t)i * R + r] : mx;
            double sum = 0.0;
            for (int i = 0; i < n; i++) sum += exp((double)scores[(size_t)i * R + r] - mx);
            for (int i = 0; i < n; i++)
                alpha[(size_t)i * R + r] = (float)(exp((double)scores[(size_t)i * R + r] - mx) / sum);
        } else {
            for (int i = 0; i < n; i++) alpha[(size_t)i * R + r] = 1.0f / (float)n;
        }
        float *o = out + (size_t)r * C;
        for (int c = 0; c < C; c++) o[c] = 0.0f;
        for (int i = 0; i < n; i++) {
            const float a = alpha[(size_t)i * R + r], *xi = x + ((size_t)i * R + r) * C;
            for (int c = 0; c < C; c++) o[c] += a * xi[c];
        }
    }
}

void cpu_combine_backward(float *dx, float *dscores, const float *dout, const float *x,
                          const float *alpha, int n, int R, int C) {
#pragma omp parallel for if ((size_t)R * C * n > PAR_MIN) schedule(static)
    for (int r = 0; r < R; r++) {
        const float *g = dout + (size_t)r * C;
        double dot_sum = 0.0;
        for (int i = 0; i < n; i++) {
            const float a = alpha[(size_t)i * R + r], *xi = x + ((size_t)i * R + r) * C;
            float *di = dx + ((size_t)i * R + r) * C;
            double dal = 0.0;
            for (int c = 0; c < C; c++) {
                di[c] = a * g[c];
                dal += (double)g[c] * xi[c];
            }
            if (dscores) dscores[(size_t)i * R + r] = (float)dal;
            dot_sum += a * dal;
        }
        if (dscores)
            for (int i = 0; i < n; i++) {
                float *ds = dscores + (size_t)i * R + r;
                *ds = (float)(alpha[(size_t)i * R + r] * ((double)*ds - dot_sum));
            }
    }
}

void cpu_cross_entropy_forward(float *loss, float *probs, const float *logits, const int32_t *targets,
                               int R, int C) {
    double total = 0.0;
    int counted = 0;
    for (int r = 0; r < R; r++) {
        const float *l = logits + (size_t)r * C;
        float *p = probs + (size_t)r * C;
        float mx = l[0];
        for (int c = 1; c < C; c++) mx = l[c] > mx ? l[c] : mx;
        double sum = 0.0;
        for (int c = 0; c < C; c++) sum += exp((double)l[c] - mx);
        for (int c = 0; c < C; c++) p[c] = (float)(exp((double)l[c] - mx) / sum);
        if (targets[r] >= 0) {
            total += log(sum) + mx - l[targets[r]];
            counted++;
        }
    }
    *loss = counted ? (float)(total / counted) : 0.0f;
}

void cpu_cross_entropy_backward(float *dlogits, const float *probs, const int32_t *targets, int R, int C) {
    int counted = 0;
    for (int r = 0; r < R; r++) counted += targets[r] >= 0;
    float inv = counted ? 1.0f / (float)counted : 0.0f;
    for (int r = 0; r < R; r++) {
        float *d = dlogits + (size_t)r * C;
        const float *p = probs + (size_t)r * C;
        if (targets[r] < 0) {
            memset(d, 0, sizeof(float) * C);
            continue;
        }
        for (int c = 0; c < C; c++) d[c] = (p[c] - (c == targets[r] ? 1.0f : 0.0f)) * inv;
    }
}

void cpu_mse_forward(float *loss, const float *pred, const float *target, int R, int C) {
    double s = 0.0;
    size_t n = (size_t)R * C;
    for (size_t i = 0; i < n; i++) {
        double d = (double)pred[i] - target[i];
        s += d * d;
    }
    *loss = n ? (float)(s / n) : 0.0f;
}

void cpu_mse_backward(float *dpred, const float *pred, const float *target, int R, int C) {
    size_t n = (size_t)R * C;
    float k = n ? 2.0f / (float)n : 0.0f;
    for (size_t i = 0; i < n; i++) dpred[i] = k * (pred[i] - target[i]);
}

/* Hot loops over whole parameter buffers are compiled three times (cpu/dispatch.h); only the
 * sum of squares' lane order follows the vector width. */
ME_INLINE double sum_squares_body(const float *x, size_t a, size_t b) {
    double s = 0.0;
#pragma omp simd reduction(+ : s)
    for (size_t i = a; i < b; i++) s += (double)x[i] * x[i];
    return s;
}
static double sum_squares_base(const float *x, size_t a, size_t b) { return sum_squares_body(x, a, b); }
#ifdef ME_VARIANTS
ME_TARGET_AVX512 static double sum_squares_avx512(const float *x, size_t a, size_t b) {
    return sum_squares_body(x, a, b);
}
ME_TARGET_AVX2 static double sum_squares_avx2(const float *x, size_t a, size_t b) {
    return sum_squares_body(x, a, b);
}
#endif

static double sum_squares_range(const float *x, size_t a, size_t b) {
#ifdef ME_VARIANTS
    switch (me_cpu_level()) {
    case 2: return sum_squares_avx512(x, a, b);
    case 1: return sum_squares_avx2(x, a, b);
    }
#endif
    return sum_squares_base(x, a, b);
}

/* Blocks of a fixed size (at most SUMSQ_BLOCKS of them), summed in block order: the result does
 * not depend on the thread count, so the LMs' schedule (cpu/model.c) cannot change it. */
#define SUMSQ_BLOCKS 1024
double cpu_sum_squares(const float *x, size_t n) {
    size_t blk = (n + SUMSQ_BLOCKS - 1) / SUMSQ_BLOCKS;
    blk = blk < 4096 ? 4096 : (blk + 15) / 16 * 16;
    const int nblk = (int)((n + blk - 1) / blk);
    double part[SUMSQ_BLOCKS];
#pragma omp parallel for schedule(static) if (n > PAR_MIN)
    for (int k = 0; k < nblk; k++) {
        size_t a = k * blk, b = a + blk < n ? a + blk : n;
        part[k] = sum_squares_range(x, a, b);
    }
    double s = 0.0;
    for (int k = 0; k < nblk; k++) s += part[k];
    return s;
}

/* Sum of squares of the rows `rows` (each once) of a [*, C] matrix: a sparse gradient's norm. */
double cpu_sum_squares_rows(const float *x, const int32_t *rows, int nrows, int C) {
    double s = 0.0;
    for (int r = 0; r < nrows; r++) s += sum_squares_range(x + (size_t)rows[r] * C, 0, (size_t)C);
    return s;
}

void cpu_scale(float *x, size_t n, float factor) {
#pragma omp parallel for if (n > PAR_MIN) schedule(static)
    for (size_t i = 0; i < n; i++) x[i] *= factor;
}

#define ADAMW_ARGS float *p, float *g, float *m, float *v, size_t a, size_t b, float decay, float w1, \
                   float b2, float w2, float bc2_sqrt, float epsf, float neg_step, float gscale
#define ADAMW_CALL p, g, m, v, a, b, decay, w1, b2, w2, bc2_sqrt, epsf, neg_step, gscale

/* One pass: clip (g * gscale, torch's in-place multiply), AdamW, then the gradient is zeroed
 * for the next step's accumulation. */
ME_INLINE void adamw_body(ADAMW_ARGS) {
#pragma omp simd
    for (size_t i = a; i < b; i++) {
        float gi = g[i] * gscale;
        float pi = p[i] * decay;
        float mi = fmaf(w1, gi - m[i], m[i]);
        float vi = v[i] * b2;
        vi = vi + w2 * gi * gi;
        float denom = sqrtf(vi) / bc2_sqrt + epsf;
        p[i] = pi + neg_step * mi / denom;
        m[i] = mi;
        v[i] = vi;
        g[i] = 0.0f;
    }
}
ME_VARIANTS_OF(adamw, (ADAMW_ARGS), (ADAMW_CALL))

/* torch.optim.AdamW (single-tensor path, amsgrad off): scalars are computed in
 * double as Python does, then applied in float32 as the tensor ops do. */
void cpu_adamw_update(float *p, float *g, float *m, float *v, size_t n, double lr, double beta1, double beta2,
                      double eps, double weight_decay, int step, float grad_scale) {
    const float decay = (float)(1.0 - lr * weight_decay);
    const float w1 = (float)(1.0 - beta1), b2 = (float)beta2, w2 = (float)(1.0 - beta2);
    const double bc1 = 1.0 - pow(beta1, step), bc2 = 1.0 - pow(beta2, step);
    const float step_size = (float)(lr / bc1), bc2_sqrt = (float)sqrt(bc2), epsf = (float)eps;
    const int nt = omp_get_max_threads();
    const size_t chunk = ((n + nt - 1) / nt + 15) / 16 * 16;
#pragma omp parallel for schedule(static) if (n > PAR_MIN)
    for (int t = 0; t < nt; t++) {
        size_t a = t * chunk, b = a + chunk < n ? a + chunk : n;
        if (a < b) adamw(p, g, m, v, a, b, decay, w1, b2, w2, bc2_sqrt, epsf, -step_size, grad_scale);
    }
}

/* ------------------------------------------------------------------ linear-chain CRF
 * Scratch layout (doubles): alpha [B*K*C] | beta [B*K*C] | logZ [B] | nll [B]. Every
 * sentence is independent (one OpenMP iteration each); sums run in sentence order. */

static double lse(const double *x, int n) {
    double mx = x[0];
    for (int i = 1; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    if (isinf(mx)) return mx;
    double s = 0.0;
    for (int i = 0; i < n; i++) s += exp(x[i] - mx);
    return mx + log(s);
}

static int crf_count(const int32_t *lengths, int B) {
    int n = 0;
    for (int b = 0; b < B; b++) n += lengths[b];
    return n;
}

/* Forward algorithm of one sentence: alpha rows 0..L-1 (log space). tmp holds C doubles. */
static void crf_alpha(double *alpha, const float *em, const float *trans, const float *start, int L, int C,
                        double *tmp) {
    for (int j = 0; j < C; j++) alpha[j] = (double)start[j] + em[j];
    for (int k = 1; k < L; k++)
        for (int j = 0; j < C; j++) {
            for (int i = 0; i < C; i++) tmp[i] = alpha[(size_t)(k - 1) * C + i] + trans[(size_t)i * C + j];
            alpha[(size_t)k * C + j] = lse(tmp, C) + em[(size_t)k * C + j];
        }
}

void cpu_crf_forward(float *loss, double *scratch, const float *em, const int32_t *tags, const int32_t *lengths,
                     const float *trans, const float *start, const float *end, int B, int K, int C) {
    const size_t BKC = (size_t)B * K * C;
    double *alpha = scratch, *logz = scratch + 2 * BKC, *nll = logz + B;
#pragma omp parallel for if ((size_t)B * K * C * C > PAR_MIN) schedule(static)
    for (int b = 0; b < B; b++) {
        const int L = lengths[b];
        double tmp[C];
        logz[b] = nll[b] = 0.0;
        if (L <= 0) continue;
        double *a = alpha + (size_t)b * K * C;
        const float *e = em + (size_t)b * K * C;
        const int32_t *y = tags + (size_t)b * K;
        crf_alpha(a, e, trans, start, L, C, tmp);
        for (int j = 0; j < C; j++) tmp[j] = a[(size_t)(L - 1) * C + j] + end[j];
        logz[b] = lse(tmp, C);
        double score = (double)start[y[0]] + e[y[0]] + end[y[L - 1]];
        for (int k = 1; k < L; k++) score += (double)trans[(size_t)y[k - 1] * C + y[k]] + e[(size_t)k * C + y[k]];
        nll[b] = logz[b] - score;
    }
    double total = 0.0;
    for (int b = 0; b < B; b++) total += nll[b];
    int n = crf_count(lengths, B);
    *loss = n ? (float)(total / n) : 0.0f;
}

void cpu_crf_backward(float *dem, float *dtrans, float *dstart, float *dend, double *scratch, const float *em,
                      const int32_t *tags, const int32_t *lengths, const float *trans, const float *start,
                      const float *end, int B, int K, int C) {
    const size_t BKC = (size_t)B * K * C;
    const double *alpha = scratch, *logz = scratch + 2 * BKC;
    double *beta = scratch + BKC;
    const int n = crf_count(lengths, B);
    const double inv = n ? 1.0 / n : 0.0;
    memset(dem, 0, sizeof(float) * BKC);
    /* emissions: per sentence in parallel (beta, unary marginals) */
#pragma omp parallel for if ((size_t)B * K * C * C > PAR_MIN) schedule(static)
    for (int b = 0; b < B; b++) {
        const int L = lengths[b];
        if (L <= 0) continue;
        double tmp[C];
        const double *a = alpha + (size_t)b * K * C;
        double *be = beta + (size_t)b * K * C;
        const float *e = em + (size_t)b * K * C;
        float *d = dem + (size_t)b * K * C;
        const int32_t *y = tags + (size_t)b * K;
        for (int i = 0; i < C; i++) be[(size_t)(L - 1) * C + i] = end[i];
        for (int k = L - 2; k >= 0; k--)
            for (int i = 0; i < C; i++) {
                for (int j = 0; j < C; j++)
                    tmp[j] = (double)trans[(size_t)i * C + j] + e[(size_t)(k + 1) * C + j] +
                             be[(size_t)(k + 1) * C + j];
                be[(size_t)k * C + i] = lse(tmp, C);
            }
        for (int k = 0; k < L; k++)
            for (int j = 0; j < C; j++)
                d[(size_t)k * C + j] = (float)((exp(a[(size_t)k * C + j] + be[(size_t)k * C + j] - logz[b]) -
                                                (y[k] == j ? 1.0 : 0.0)) * inv);
    }
    /* transitions, start, end: sentence order (deterministic sums) */
    for (int b = 0; b < B; b++) {
        const int L = lengths[b];
        if (L <= 0) continue;
        const double *a = alpha + (size_t)b * K * C, *be = beta + (size_t)b * K * C;
        const float *e = em + (size_t)b * K * C;
        const int32_t *y = tags + (size_t)b * K;
        for (int j = 0; j < C; j++) {
            dstart[j] += (float)((exp(a[j] + be[j] - logz[b]) - (y[0] == j)) * inv);
            dend[j] += (float)((exp(a[(size_t)(L - 1) * C + j] + be[(size_t)(L - 1) * C + j] - logz[b]) -
                                (y[L - 1] == j)) * inv);
        }
        for (int k = 1; k < L; k++) {
            for (int i = 0; i < C; i++)
                for (int j = 0; j < C; j++) {
                    double p = exp(a[(size_t)(k - 1) * C + i] + trans[(size_t)i * C + j] + e[(size_t)k * C + j] +
                                   be[(size_t)k * C + j] - logz[b]);
                    dtrans[(size_t)i * C + j] += (float)(p * inv);
                }
            dtrans[(size_t)y[k - 1] * C + y[k]] -= (float)inv;
        }
    }
}

void cpu_crf_viterbi(int32_t *path, double *scratch, const float *em, const int32_t *lengths, const float *trans,
                     const float *start, const float *end, int B, int K, int C) {
    const size_t BKC = (size_t)B * K * C;
    double *delta = scratch, *back = scratch + BKC;
#pragma omp parallel for if ((size_t)B * K * C * C > PAR_MIN) schedule(static)
    for (int b = 0; b < B; b++) {
        const int L = lengths[b];
        int32_t *p = path + (size_t)b * K;
        for (int k = 0; k < K; k++) p[k] = -1;
        if (L <= 0) continue;
        double *dl = delta + (size_t)b * K * C, *bk = back + (size_t)b * K * C;
        const float *e = em + (size_t)b * K * C;
        for (int j = 0; j < C; j++) dl[j] = (double)start[j] + e[j];
        for (int k = 1; k < L; k++)
            for (int j = 0; j < C; j++) {
                int best = 0;
                double bs = dl[(size_t)(k - 1) * C] + trans[j];
                for (int i = 1; i < C; i++) {
                    double s = dl[(size_t)(k - 1) * C + i] + trans[(size_t)i * C + j];
                    if (s > bs) {
                        bs = s;
                        best = i;
                    }
                }
                dl[(size_t)k * C + j] = bs + e[(size_t)k * C + j];
                bk[(size_t)k * C + j] = best;
            }
        int cur = 0;
        double bs = dl[(size_t)(L - 1) * C] + end[0];
        for (int j = 1; j < C; j++) {
            double s = dl[(size_t)(L - 1) * C + j] + end[j];
            if (s > bs) {
                bs = s;
                cur = j;
            }
        }
        for (int k = L - 1; k >= 0; k--) {
            p[k] = cur;
            if (k > 0) cur = (int)bk[(size_t)k * C + cur];
        }
    }
}
