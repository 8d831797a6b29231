/* Run-time choice between code compiled for AVX-512, AVX2 + FMA and baseline x86-64, so that
 * a portable wheel still uses the wide vectors of the CPU it runs on. Every variant of a kernel
 * computes the same bits (FMA only where the code asks for it: fma() / _mm*_fmadd_*, and
 * -ffp-contract is off in ISO C mode). Off under AddressSanitizer and outside x86-64/GCC. */
#ifndef MULTIENC_CPU_DISPATCH_H
#define MULTIENC_CPU_DISPATCH_H
#include "backend.h" /* me_cpu_level, me_cpu_set_level */

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__SANITIZE_ADDRESS__)
#define ME_VARIANTS 1
#define ME_INLINE static inline __attribute__((always_inline))
#define ME_TARGET_AVX512 __attribute__((target("avx512f,avx512vl,avx512dq,fma")))
#define ME_TARGET_AVX2 __attribute__((target("avx2,fma")))
#else
#define ME_INLINE static inline
#endif

/* The statement that runs void kernel NAME's variant for me_cpu_level() (NAME_avx512, NAME_avx2,
 * else NAME_base) on the arguments, then returns from the enclosing void function. */
#ifdef ME_VARIANTS
#define ME_DISPATCH(name, ...)                      \
    switch (me_cpu_level()) {                       \
    case 2: name##_avx512(__VA_ARGS__); return;     \
    case 1: name##_avx2(__VA_ARGS__); return;       \
    }                                               \
    name##_base(__VA_ARGS__)
#else
#define ME_DISPATCH(name, ...) name##_base(__VA_ARGS__)
#endif

/* A void kernel compiled three times from its ME_INLINE body NAME_body: NAME_base, NAME_avx2 and
 * NAME_avx512, and NAME, which runs the one me_cpu_level() picks. PARAMS is the parenthesised
 * parameter list, ARGS the parenthesised arguments that pass them on. */
#define ME_UNPAREN(...) __VA_ARGS__ /* (a, b) -> a, b */
#ifdef ME_VARIANTS
#define ME_VARIANTS_OF(name, PARAMS, ARGS)                                   \
    static void name##_base PARAMS { name##_body ARGS; }                     \
    ME_TARGET_AVX2 static void name##_avx2 PARAMS { name##_body ARGS; }      \
    ME_TARGET_AVX512 static void name##_avx512 PARAMS { name##_body ARGS; }  \
    static void name PARAMS { ME_DISPATCH(name, ME_UNPAREN ARGS); }
#else
#define ME_VARIANTS_OF(name, PARAMS, ARGS) \
    static void name PARAMS { name##_body ARGS; }
#endif

/* The most me_cpu_set_level allows (2 unless lowered), whatever the CPU and the build: for kernels
 * that check CPU features of their own (cpu/gemm_bf16.c). */
int me_cpu_level_cap(void);

#endif
