/* CPU backend, part 2: the ops of the training step after the encoders —
 * pooling, combination, losses and the optimizer. Same conventions as ops.c:
 * fixed partitions, so results repeat for a given thread count. */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "cpu/blas.h"
#include "cpu/cpu_ops.h"

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

/* Hot loops over whole parameter buffers are compiled three times (AVX-512,
 * AVX2+FMA, baseline x86-64) and picked at run time by CPU features, so a wheel
 * stays portable. FMA is only ever explicit (fmaf) and -ffp-contract is off, so
 * every variant computes the same bits; only the sum of squares' lane order
 * follows the vector width. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__SANITIZE_ADDRESS__)
#define ME_VARIANTS 1
#define ME_INLINE static inline __attribute__((always_inline))
#else
#define ME_INLINE static inline
#endif

static int cpu_level(void) { /* 2: AVX-512 + FMA, 1: AVX2 + FMA, 0: baseline */
#ifdef ME_VARIANTS
    static int level = -1;
    if (level < 0) {
        __builtin_cpu_init();
        int fma = __builtin_cpu_supports("fma");
        level = fma && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") ? 2
                : fma && __builtin_cpu_supports("avx2") ? 1 : 0;
    }
    return level;
#else
    return 0;
#endif
}

ME_INLINE double sum_squares_body(const float *x, size_t a, size_t b) {
    double s = 0.0;
#pragma omp simd reduction(+ : s)
    for (size_t i = a; i < b; i++) s += (double)x[i] * x[i];
    return s;
}
static double sum_squares_base(const float *x, size_t a, size_t b) { return sum_squares_body(x, a, b); }
#ifdef ME_VARIANTS
__attribute__((target("avx512f,avx512vl,fma"))) static double sum_squares_avx512(const float *x, size_t a, size_t b) {
    return sum_squares_body(x, a, b);
}
__attribute__((target("avx2,fma"))) static double sum_squares_avx2(const float *x, size_t a, size_t b) {
    return sum_squares_body(x, a, b);
}
#endif

static double sum_squares_range(const float *x, size_t a, size_t b) {
#ifdef ME_VARIANTS
    switch (cpu_level()) {
    case 2: return sum_squares_avx512(x, a, b);
    case 1: return sum_squares_avx2(x, a, b);
    }
#endif
    return sum_squares_base(x, a, b);
}

double cpu_sum_squares(const float *x, size_t n) {
    int nt = omp_get_max_threads();
    if (nt > 64) nt = 64;
    double part[64] = {0};
    size_t chunk = (n + nt - 1) / nt;
#pragma omp parallel for num_threads(nt) schedule(static) if (n > PAR_MIN)
    for (int t = 0; t < nt; t++) {
        size_t a = t * chunk, b = a + chunk < n ? a + chunk : n;
        part[t] = a < b ? sum_squares_range(x, a, b) : 0.0;
    }
    double s = 0.0;
    for (int t = 0; t < nt; t++) s += part[t];
    return s;
}

void cpu_scale(float *x, size_t n, float factor) {
#pragma omp parallel for if (n > PAR_MIN) schedule(static)
    for (size_t i = 0; i < n; i++) x[i] *= factor;
}

#define ADAMW_ARGS float *p, const float *g, float *m, float *v, size_t a, size_t b, float decay, float w1, \
                   float b2, float w2, float bc2_sqrt, float epsf, float neg_step
#define ADAMW_CALL p, g, m, v, a, b, decay, w1, b2, w2, bc2_sqrt, epsf, neg_step

ME_INLINE void adamw_body(ADAMW_ARGS) {
#pragma omp simd
    for (size_t i = a; i < b; i++) {
        float pi = p[i] * decay;
        float mi = fmaf(w1, g[i] - m[i], m[i]);
        float vi = v[i] * b2;
        vi = vi + w2 * g[i] * g[i];
        float denom = sqrtf(vi) / bc2_sqrt + epsf;
        p[i] = pi + neg_step * mi / denom;
        m[i] = mi;
        v[i] = vi;
    }
}
static void adamw_base(ADAMW_ARGS) { adamw_body(ADAMW_CALL); }
#ifdef ME_VARIANTS
__attribute__((target("avx512f,avx512vl,fma"))) static void adamw_avx512(ADAMW_ARGS) { adamw_body(ADAMW_CALL); }
__attribute__((target("avx2,fma"))) static void adamw_avx2(ADAMW_ARGS) { adamw_body(ADAMW_CALL); }
#endif

static void adamw_range(ADAMW_ARGS) {
#ifdef ME_VARIANTS
    switch (cpu_level()) {
    case 2: adamw_avx512(ADAMW_CALL); return;
    case 1: adamw_avx2(ADAMW_CALL); return;
    }
#endif
    adamw_base(ADAMW_CALL);
}

/* torch.optim.AdamW (single-tensor path, amsgrad off): scalars are computed in
 * double as Python does, then applied in float32 as the tensor ops do. */
void cpu_adamw_update(float *p, const float *g, float *m, float *v, size_t n, double lr, double beta1,
                      double beta2, double eps, double weight_decay, int step) {
    const float decay = (float)(1.0 - lr * weight_decay);
    const float w1 = (float)(1.0 - beta1), b2 = (float)beta2, w2 = (float)(1.0 - beta2);
    const double bc1 = 1.0 - pow(beta1, step), bc2 = 1.0 - pow(beta2, step);
    const float step_size = (float)(lr / bc1), bc2_sqrt = (float)sqrt(bc2), epsf = (float)eps;
    const int nt = omp_get_max_threads();
    const size_t chunk = ((n + nt - 1) / nt + 15) / 16 * 16;
#pragma omp parallel for schedule(static) if (n > PAR_MIN)
    for (int t = 0; t < nt; t++) {
        size_t a = t * chunk, b = a + chunk < n ? a + chunk : n;
        if (a < b) adamw_range(p, g, m, v, a, b, decay, w1, b2, w2, bc2_sqrt, epsf, -step_size);
    }
}
