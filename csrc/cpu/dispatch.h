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

/* The most me_cpu_set_level allows (2 unless lowered), whatever the CPU and the build: for kernels
 * that check CPU features of their own (cpu/gemm_bf16.c). */
int me_cpu_level_cap(void);

#endif
