/* Vectorised transcendental functions of the CPU backend (vmath.c): the GELU (exact erf form
 * and tanh form) and its derivative, and exp of a float array (the softmax). Results are the
 * same on every CPU and within 1 ulp of libm's erff / expf / tanhf (see vmath.c). And the
 * dropout masks of backend.h's counter-based RNG, drawn several elements at a time, and the
 * double-precision sums of LayerNorm and the softmax. */
#ifndef MULTIENC_CPU_VMATH_H
#define MULTIENC_CPU_VMATH_H
#include "backend.h" /* me_vexp, me_verf */

/* out = GELU(inp): x/2 (1 + erf(x / sqrt 2)), or with tanh_form the tanh approximation, and
 * dact = GELU'(inp), computed with the same erf (or tanh); out or dact NULL when not wanted, and
 * either may be inp */
void me_vgelu_forward(float *out, float *dact, const float *inp, size_t n, int tanh_form);

/* Sums in double of n floats with 8 running partial sums, added up in one fixed order at the end:
 * the compiler vectorises them (one running sum waits on every add's latency, which bound LayerNorm
 * and the softmax), and every CPU computes the same bits. */
static inline double me_sum8_total(const double a[8]) {
    return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
}

/* sum of x */
static inline double me_sum_f64(const float *x, size_t n) {
    double a[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) a[k] += x[i + k];
    for (; i < n; i++) a[i % 8] += x[i];
    return me_sum8_total(a);
}

/* sum of (x - m)^2 */
static inline double me_sumsq_dev_f64(const float *x, double m, size_t n) {
    double a[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) {
            const double d = x[i + k] - m;
            a[k] += d * d;
        }
    for (; i < n; i++) {
        const double d = x[i] - m;
        a[i % 8] += d * d;
    }
    return me_sum8_total(a);
}

/* sum of x * y, each product in double */
static inline double me_dot_f64(const float *x, const float *y, size_t n) {
    double a[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int k = 0; k < 8; k++) a[k] += (double)x[i + k] * y[i + k];
    for (; i < n; i++) a[i % 8] += (double)x[i] * y[i];
    return me_sum8_total(a);
}

/* out[i] = inp[i] * scale where me_uniform(seed, site, index0 + i) >= p, else 0: dropout of n
 * elements starting at element index0 of a site's mask (in place allowed; the same bits on every CPU) */
void me_vdropout(float *out, const float *inp, size_t n, float p, float scale, uint64_t seed, uint64_t site,
                 uint64_t index0);

#endif
