/* CPU implementations of the training-step ops (train_ops.c) and of the rotary, gated-linear and
 * windowed-attention ops (modern_ops.c); see backend.h for their semantics. ops.c puts them into
 * the CPU backend table. */
#ifndef MULTIENC_CPU_OPS_H
#define MULTIENC_CPU_OPS_H
#include <stddef.h>
#include <stdint.h>

#include "backend.h"

/* C[i, j] = alpha * sum_k A(i, k) B[k, j] (+ C[i, j] when accumulate) for i < M, j < N: A(i, k) =
 * A[i * ars + k * aks], B and C row-major with row strides ldb and ldc. The attention's products,
 * single-threaded (each OpenMP thread runs its own heads); see attn_gemm.c. */
void cpu_attn_gemm(int M, int N, int K, float alpha, const float *A, int ars, int aks, const float *B, int ldb,
                   float *C, int ldc, int accumulate);
/* cpu_attn_gemm's B operands: dst [HS, ldd] = the T rows of x [T, ld] (their first HS columns)
 * transposed (columns T .. ldd - 1 untouched); dst [T, HS] = those rows, contiguous */
void cpu_transpose_rows(float *dst, int ldd, const float *x, int ld, int T, int HS);
void cpu_copy_rows(float *dst, const float *x, int ld, int T, int HS);
/* A row stride for n floats that starts every row on a 64-byte line when the first does (rows of
 * B and C that straddle lines cost the products two accesses per vector) */
static inline int cpu_line_stride(int n) { return (n + 15) & ~15; }
void cpu_rope_forward(float *qkv, const float *cos_t, const float *sin_t, int B, int T, int NH, int HS);
void cpu_rope_backward(float *dqkv, const float *cos_t, const float *sin_t, int B, int T, int NH, int HS);
void cpu_glu_forward(float *out, const float *inp, int N, int C, MeActivation act);
void cpu_glu_backward(float *dinp, float *out, const float *inp, const float *dout, int N, int C,
                      MeActivation act);
void cpu_window_attention_forward(float *ctx, float *stats, const float *qkv, const int32_t *mask, int B, int T,
                                  int NH, int HS, int window, float p, uint64_t seed, uint64_t site,
                                  float *scratch);
void cpu_window_attention_backward(float *dqkv, const float *dctx, const float *qkv, const float *stats,
                                   const int32_t *mask, int B, int T, int NH, int HS, int window, float p,
                                   uint64_t seed, uint64_t site, float *scratch);
size_t cpu_window_attention_scratch_floats(int B, int T, int NH, int HS, int window);

void cpu_pool_forward(float *out, const float *h, const float *w, int B, int T, int K, int C);
void cpu_pool_backward(float *dh, const float *dout, const float *w, int B, int T, int K, int C,
                       int accumulate);
void cpu_concat_forward(float *dst, int ldd, const float *src, int lds, int R, int C);
void cpu_concat_backward(float *dsrc, int lds, const float *ddst, int ldd, int R, int C, int accumulate);
void cpu_combine_forward(float *out, float *alpha, const float *x, const float *scores, int n, int R, int C);
void cpu_combine_backward(float *dx, float *dscores, const float *dout, const float *x,
                          const float *alpha, int n, int R, int C);
void cpu_cross_entropy_forward(float *loss, float *probs, const float *logits, const int32_t *targets,
                               int R, int C);
void cpu_cross_entropy_backward(float *dlogits, const float *probs, const int32_t *targets, int R, int C);
void cpu_mse_forward(float *loss, const float *pred, const float *target, int R, int C);
void cpu_mse_backward(float *dpred, const float *pred, const float *target, int R, int C);
void cpu_crf_forward(float *loss, double *scratch, const float *em, const int32_t *tags, const int32_t *lengths,
                     const float *trans, const float *start, const float *end, int B, int K, int C);
void cpu_crf_backward(float *dem, float *dtrans, float *dstart, float *dend, double *scratch, const float *em,
                      const int32_t *tags, const int32_t *lengths, const float *trans, const float *start,
                      const float *end, int B, int K, int C);
void cpu_crf_viterbi(int32_t *path, double *scratch, const float *em, const int32_t *lengths, const float *trans,
                     const float *start, const float *end, int B, int K, int C);
double cpu_sum_squares(const float *x, size_t n);
double cpu_sum_squares_rows(const float *x, const int32_t *rows, int nrows, int C);
void cpu_scale(float *x, size_t n, float factor);
void cpu_adamw_update(float *p, float *g, float *m, float *v, size_t n, double lr, double beta1, double beta2,
                      double eps, double weight_decay, int step, float grad_scale);
void cpu_disentangled_forward(float *bias, const float *qkv, const float *posk, const float *posq,
                              const int32_t *idx, float scale, int B, int T, int NH, int HS, int S2,
                              float *scratch);
void cpu_disentangled_backward(float *dqkv, float *dposk, float *dposq, const float *dbias, const float *qkv,
                               const float *posk, const float *posq, const int32_t *idx, float scale, int B,
                               int T, int NH, int HS, int S2, float *scratch);
size_t cpu_disentangled_scratch_floats(int T, int HS, int S2);
void cpu_conv1d_forward(float *out, const float *inp, const float *w, const float *bias, int B, int T, int C,
                       int K, int G);
void cpu_conv1d_backward(float *dinp, float *dw, float *dbias, const float *dout, const float *inp, const float *w,
                        int B, int T, int C, int K, int G);
#endif
