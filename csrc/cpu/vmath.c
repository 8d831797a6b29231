/* Vectorised erf, exp and tanh for the CPU backend's GELU and softmax, in place of libm's
 * erff / expf / tanhf (which the compiler cannot vectorise; erff alone was 4-5% of a training
 * step). Each function of a float is computed in double from polynomials good to 1e-11
 * (tools/fit_erf_exp.py) and rounded once, so results are the correctly rounded floats except
 * within 1e-11 of a rounding boundary: never more than 1 ulp from the exact value, or from libm.
 * Compiled for AVX-512 (8 lanes), AVX2 (4 lanes) and baseline (1 lane, the same code) from
 * cpu/vmath_body.h; all three compute the same bits. Dropout (me_vdropout) draws me_uniform's
 * integer steps 8 or 4 lanes at a time. */
#include "cpu/vmath.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cpu/dispatch.h"
#ifdef ME_VARIANTS
#include <immintrin.h>
#endif

/* tools/fit_erf_exp.py: erf(y) / y in powers of y^2, 0 <= y < 1; max relative error 2.1e-14 */
static const double ERF_P[10] = {1.1283791670954937, -0.37612638902808615, 0.11283791658548713,
                                 -0.026866169050599326, 0.005223967193543899, -0.0008547933736519633,
                                 0.00012046261269779797, -1.4795031400662045e-05, 1.5306373163641084e-06,
                                 -1.0469110332151208e-07};
/* erfc(y) * exp(y^2) in powers of u = (y - 2.5) / 1.5, 1 <= y < 4; max relative error 5.9e-12 */
static const double ERFC_R[17] = {0.2108063640611436, -0.111521020166433, 0.05611049343905012,
                                  -0.027005297539129766, 0.012489374163431244, -0.0055706939996416896,
                                  0.0024036437310381714, -0.0010059073126846983, 0.0004091094785966628,
                                  -0.00016176248976652324, 6.249842547895193e-05, -2.4069947374138474e-05,
                                  8.860847089031764e-06, -2.671312099623873e-06, 9.59334995094123e-07,
                                  -6.36497045800298e-07, 2.1340922384406343e-07};
/* exp(r), |r| <= ln(2) / 2; max relative error 4.4e-16 */
static const double EXP_P[11] = {1.0, 1.0000000000000067, 0.5000000000000006, 0.16666666666554408,
                                 0.04166666666657314, 0.008333333385667784, 0.00138888889324886,
                                 0.00019841170270440073, 2.4801504346997693e-05, 2.7640180796209863e-06,
                                 2.7626357241447233e-07};

#define VM_SHIFT 6755399441055744.0 /* 1.5 * 2^52: adding it rounds to an integer kept in the low bits */
#define VM_SHIFT_BITS 0x4338000000000000LL
#define VM_GELU_K 0.7978845608028654f        /* sqrt(2 / pi), as the scalar GELU had it */
#define VM_SQRT1_2 0.70710678118654752440f
#define VM_INV_SQRT_2PI 0.3989422804014327f

/* ------------------------------------------------------------ baseline: one lane, scalar C */
static inline double vm_pow2(double t) {
    int64_t bits;
    memcpy(&bits, &t, sizeof bits);
    bits = (bits - VM_SHIFT_BITS + 1023) << 52;
    double s;
    memcpy(&s, &bits, sizeof s);
    return s;
}

#define W 1
#define VD double
#define VF float
#define FN(name) name##_base
#define ATTR
#define LOADF(p) (*(p))
#define STOREF(p, v) (*(p) = (v))
#define FMASK int /* one lane: never a partial vector */
#define FMASK_FIRST(k) (k)
#define LOADFM(p, m) ((void)(m), *(p))
#define STOREFM(p, m, v) ((void)(m), *(p) = (v))
#define F2D(x) ((double)(x))
#define D2F(x) ((float)(x))
#define DSET(c) ((double)(c))
#define DADD(a, b) ((a) + (b))
#define DSUB(a, b) ((a) - (b))
#define DMUL(a, b) ((a) * (b))
#define DFMA(a, b, c) fma((a), (b), (c))
#define DDIV(a, b) ((a) / (b))
#define DMIN(a, b) ((a) < (b) ? (a) : (b))
#define DMAX(a, b) ((a) > (b) ? (a) : (b))
#define DABS(a) fabs(a)
#define DCOPYSIGN(m, s) copysign((m), (s))
#define DLT(a, b) ((a) < (b))
#define DGE(a, b) ((a) >= (b))
#define DNAN(a) ((a) != (a))
#define DSEL(m, a, b) ((m) ? (a) : (b))
#define MASK int
#define MOR(a, b) ((a) || (b))
#define MANY(m) (m)
#define MALL(m) (m)
#define POW2(t) vm_pow2(t)
#define FSET(c) ((float)(c))
#define FADD(a, b) ((a) + (b))
#define FSUB(a, b) ((a) - (b))
#define FMUL(a, b) ((a) * (b))
#include "cpu/vmath_body.h"

#ifdef ME_VARIANTS
/* ------------------------------------------------------------ AVX-512: 8 doubles, 8 floats */
#define W 8
#define VD __m512d
#define VF __m256
#define FN(name) name##_avx512
#define ATTR ME_TARGET_AVX512
#define LOADF(p) _mm256_loadu_ps(p)
#define STOREF(p, v) _mm256_storeu_ps((p), (v))
#define FMASK __mmask8
#define FMASK_FIRST(k) ((__mmask8)((1u << (k)) - 1u))
#define LOADFM(p, m) _mm256_maskz_loadu_ps((m), (p))
#define STOREFM(p, m, v) _mm256_mask_storeu_ps((p), (m), (v))
#define F2D(x) _mm512_cvtps_pd(x)
#define D2F(x) _mm512_cvtpd_ps(x)
#define DSET(c) _mm512_set1_pd(c)
#define DADD(a, b) _mm512_add_pd((a), (b))
#define DSUB(a, b) _mm512_sub_pd((a), (b))
#define DMUL(a, b) _mm512_mul_pd((a), (b))
#define DFMA(a, b, c) _mm512_fmadd_pd((a), (b), (c))
#define DDIV(a, b) _mm512_div_pd((a), (b))
#define DMIN(a, b) _mm512_min_pd((a), (b))
#define DMAX(a, b) _mm512_max_pd((a), (b))
#define DABS(a) _mm512_abs_pd(a)
#define DCOPYSIGN(m, s) _mm512_or_pd(DABS(m), _mm512_and_pd((s), _mm512_set1_pd(-0.0)))
#define DLT(a, b) _mm512_cmp_pd_mask((a), (b), _CMP_LT_OQ)
#define DGE(a, b) _mm512_cmp_pd_mask((a), (b), _CMP_GE_OQ)
#define DNAN(a) _mm512_cmp_pd_mask((a), (a), _CMP_UNORD_Q)
#define DSEL(m, a, b) _mm512_mask_blend_pd((m), (b), (a))
#define MASK __mmask8
#define MOR(a, b) ((__mmask8)((a) | (b)))
#define MANY(m) ((m) != 0)
#define MALL(m) ((m) == 0xFF)
#define POW2(t)                                                                                              \
    _mm512_castsi512_pd(_mm512_slli_epi64(                                                                   \
        _mm512_add_epi64(_mm512_sub_epi64(_mm512_castpd_si512(t), _mm512_set1_epi64(VM_SHIFT_BITS)),         \
                         _mm512_set1_epi64(1023)),                                                           \
        52))
#define FSET(c) _mm256_set1_ps(c)
#define FADD(a, b) _mm256_add_ps((a), (b))
#define FSUB(a, b) _mm256_sub_ps((a), (b))
#define FMUL(a, b) _mm256_mul_ps((a), (b))
#include "cpu/vmath_body.h"

/* ------------------------------------------------------------ AVX2: 4 doubles, 4 floats */
#define W 4
#define VD __m256d
#define VF __m128
#define FN(name) name##_avx2
#define ATTR ME_TARGET_AVX2
#define LOADF(p) _mm_loadu_ps(p)
#define STOREF(p, v) _mm_storeu_ps((p), (v))
#define FMASK __m128i
#define FMASK_FIRST(k) _mm_cmpgt_epi32(_mm_set1_epi32(k), _mm_setr_epi32(0, 1, 2, 3))
#define LOADFM(p, m) _mm_maskload_ps((p), (m))
#define STOREFM(p, m, v) _mm_maskstore_ps((p), (m), (v))
#define F2D(x) _mm256_cvtps_pd(x)
#define D2F(x) _mm256_cvtpd_ps(x)
#define DSET(c) _mm256_set1_pd(c)
#define DADD(a, b) _mm256_add_pd((a), (b))
#define DSUB(a, b) _mm256_sub_pd((a), (b))
#define DMUL(a, b) _mm256_mul_pd((a), (b))
#define DFMA(a, b, c) _mm256_fmadd_pd((a), (b), (c))
#define DDIV(a, b) _mm256_div_pd((a), (b))
#define DMIN(a, b) _mm256_min_pd((a), (b))
#define DMAX(a, b) _mm256_max_pd((a), (b))
#define DABS(a) _mm256_andnot_pd(_mm256_set1_pd(-0.0), (a))
#define DCOPYSIGN(m, s) _mm256_or_pd(DABS(m), _mm256_and_pd((s), _mm256_set1_pd(-0.0)))
#define DLT(a, b) _mm256_cmp_pd((a), (b), _CMP_LT_OQ)
#define DGE(a, b) _mm256_cmp_pd((a), (b), _CMP_GE_OQ)
#define DNAN(a) _mm256_cmp_pd((a), (a), _CMP_UNORD_Q)
#define DSEL(m, a, b) _mm256_blendv_pd((b), (a), (m))
#define MASK __m256d
#define MOR(a, b) _mm256_or_pd((a), (b))
#define MANY(m) (_mm256_movemask_pd(m) != 0)
#define MALL(m) (_mm256_movemask_pd(m) == 0xF)
#define POW2(t)                                                                                              \
    _mm256_castsi256_pd(_mm256_slli_epi64(                                                                   \
        _mm256_add_epi64(_mm256_sub_epi64(_mm256_castpd_si256(t), _mm256_set1_epi64x(VM_SHIFT_BITS)),        \
                         _mm256_set1_epi64x(1023)),                                                          \
        52))
#define FSET(c) _mm_set1_ps(c)
#define FADD(a, b) _mm_add_ps((a), (b))
#define FSUB(a, b) _mm_sub_ps((a), (b))
#define FMUL(a, b) _mm_mul_ps((a), (b))
#include "cpu/vmath_body.h"
#endif

/* ------------------------------------------------------------ dispatch */

static int cpu_cap = 2;

/* MULTIENC_CPU_LEVEL=0|1|2 lowers the level for the whole process (multienc.engine checks the value). */
static int env_cap(void) {
    const char *cap = getenv("MULTIENC_CPU_LEVEL");
    return cap && cap[0] >= '0' && cap[0] <= '2' && !cap[1] ? cap[0] - '0' : 2;
}
#ifdef ME_VARIANTS
static int cpu_best = -1;
#endif

int me_cpu_level(void) {
#ifdef ME_VARIANTS
    if (cpu_best < 0) {
        __builtin_cpu_init();
        int fma = __builtin_cpu_supports("fma");
        int best = fma && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                           __builtin_cpu_supports("avx512dq")
                       ? 2
                   : fma && __builtin_cpu_supports("avx2") ? 1
                                                           : 0;
        cpu_best = best < env_cap() ? best : env_cap();
    }
    return cpu_best < cpu_cap ? cpu_best : cpu_cap;
#else
    return 0;
#endif
}

int me_cpu_level_cap(void) { return cpu_cap < env_cap() ? cpu_cap : env_cap(); }

int me_cpu_set_level(int level) {
    cpu_cap = level < 0 ? 0 : level;
    return me_cpu_level();
}


void me_vgelu_forward(float *out, float *dact, const float *inp, size_t n, int tanh_form) {
    ME_DISPATCH(gelu_forward, out, dact, inp, n, tanh_form);
}

void me_vexp(float *out, const float *inp, size_t n) { ME_DISPATCH(exp, out, inp, n); }

/* ------------------------------------------------------------ dropout masks */

static void dropout_base(float *out, const float *inp, size_t n, float p, float scale, uint64_t seed,
                         uint64_t site, uint64_t index0) {
    for (size_t i = 0; i < n; i++) out[i] = me_uniform(seed, site, index0 + i) >= p ? inp[i] * scale : 0.0f;
}

#ifdef ME_VARIANTS
/* the mask's lanes of 8 elements, z0 their counters' SplitMix64 states before the finaliser */
ME_TARGET_AVX512 static inline __attribute__((always_inline)) void dropout8_avx512(float *out, const float *inp,
                                                                                   __m512i z0, __m512i keep_from,
                                                                                   __m256 vscale, __mmask8 m) {
    __m512i z = _mm512_mullo_epi64(_mm512_xor_si512(z0, _mm512_srli_epi64(z0, 30)),
                                   _mm512_set1_epi64((long long)0xBF58476D1CE4E5B9ULL));
    z = _mm512_mullo_epi64(_mm512_xor_si512(z, _mm512_srli_epi64(z, 27)), _mm512_set1_epi64((long long)0x94D049BB133111EBULL));
    z = _mm512_xor_si512(z, _mm512_srli_epi64(z, 31));
    const __m256 x = _mm256_mul_ps(_mm256_maskz_loadu_ps(m, inp), vscale);
    _mm256_mask_storeu_ps(out, m, _mm256_maskz_mov_ps(_mm512_cmpge_epu64_mask(z, keep_from), x));
}

/* The same integer steps as me_uniform (backend.h), W lanes at a time: z = me_uniform_key +
 * (index + 1) G, the SplitMix64 finaliser, then u = (z >> 40) 2^-24 (exact in float) against p; kept
 * elements are inp * scale. AVX-512 compares in integers: u >= p iff (z >> 40) >= ceil(p 2^24) iff
 * z >= ceil(p 2^24) 2^40 (p 2^24 is exact; for p >= 1 no element is kept). */
ME_TARGET_AVX512 static void dropout_avx512(float *out, const float *inp, size_t n, float p, float scale,
                                            uint64_t seed, uint64_t site, uint64_t index0) {
    if (!(p < 1.0f)) { /* u < 1 <= p (or p NaN): every element dropped */
        memset(out, 0, n * sizeof(float));
        return;
    }
    const __m512i step = _mm512_set1_epi64((long long)(8 * ME_RNG_GAMMA));
    const __m512i keep_from = _mm512_set1_epi64((long long)((uint64_t)(p > 0.0f ? ceilf(p * 16777216.0f) : 0.0f) << 40));
    const __m256 vscale = _mm256_set1_ps(scale);
    __m512i z0 = _mm512_add_epi64(
        _mm512_set1_epi64((long long)(me_uniform_key(seed, site) + (index0 + 1) * ME_RNG_GAMMA)),
        _mm512_mullo_epi64(_mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7), _mm512_set1_epi64((long long)ME_RNG_GAMMA)));
    size_t i = 0;
    for (; i + 8 <= n; i += 8, z0 = _mm512_add_epi64(z0, step))
        dropout8_avx512(out + i, inp + i, z0, keep_from, vscale, (__mmask8)0xFF);
    if (i < n) dropout8_avx512(out + i, inp + i, z0, keep_from, vscale, (__mmask8)((1u << (n - i)) - 1u));
}

/* a * b mod 2^64 of 4 lanes from 32-bit products (AVX2 has no 64-bit multiply) */
ME_TARGET_AVX2 static inline __m256i vm_mul64_avx2(__m256i a, __m256i b) {
    const __m256i cross = _mm256_add_epi64(_mm256_mul_epu32(_mm256_srli_epi64(a, 32), b),
                                           _mm256_mul_epu32(a, _mm256_srli_epi64(b, 32)));
    return _mm256_add_epi64(_mm256_mul_epu32(a, b), _mm256_slli_epi64(cross, 32));
}

ME_TARGET_AVX2 static void dropout_avx2(float *out, const float *inp, size_t n, float p, float scale,
                                        uint64_t seed, uint64_t site, uint64_t index0) {
    const __m256i step = _mm256_set1_epi64x((long long)(4 * ME_RNG_GAMMA));
    const __m256i m1 = _mm256_set1_epi64x((long long)0xBF58476D1CE4E5B9ULL);
    const __m256i m2 = _mm256_set1_epi64x((long long)0x94D049BB133111EBULL);
    const __m256i low32 = _mm256_setr_epi32(0, 2, 4, 6, 0, 0, 0, 0);
    const __m128 vp = _mm_set1_ps(p), vscale = _mm_set1_ps(scale), unit = _mm_set1_ps(1.0f / 16777216.0f);
    const uint64_t z00 = me_uniform_key(seed, site) + (index0 + 1) * ME_RNG_GAMMA;
    __m256i z0 = _mm256_setr_epi64x((long long)z00, (long long)(z00 + ME_RNG_GAMMA), (long long)(z00 + 2 * ME_RNG_GAMMA),
                                    (long long)(z00 + 3 * ME_RNG_GAMMA));
    size_t i = 0;
    for (; i + 4 <= n; i += 4, z0 = _mm256_add_epi64(z0, step)) {
        __m256i z = vm_mul64_avx2(_mm256_xor_si256(z0, _mm256_srli_epi64(z0, 30)), m1);
        z = vm_mul64_avx2(_mm256_xor_si256(z, _mm256_srli_epi64(z, 27)), m2);
        z = _mm256_srli_epi64(_mm256_xor_si256(z, _mm256_srli_epi64(z, 31)), 40); /* < 2^24: its low 32 bits */
        const __m128 u = _mm_mul_ps(_mm_cvtepi32_ps(_mm256_castsi256_si128(_mm256_permutevar8x32_epi32(z, low32))),
                                    unit);
        const __m128 x = _mm_mul_ps(_mm_loadu_ps(inp + i), vscale);
        _mm_storeu_ps(out + i, _mm_and_ps(_mm_cmp_ps(u, vp, _CMP_GE_OQ), x));
    }
    dropout_base(out + i, inp + i, n - i, p, scale, seed, site, index0 + i);
}
#endif

void me_vdropout(float *out, const float *inp, size_t n, float p, float scale, uint64_t seed, uint64_t site,
                 uint64_t index0) {
    ME_DISPATCH(dropout, out, inp, n, p, scale, seed, site, index0);
}

void me_verf(float *out, const float *inp, size_t n) { ME_DISPATCH(erf, out, inp, n); }
