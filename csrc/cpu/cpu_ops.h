/* CPU implementations of the training-step ops (train_ops.c); see backend.h
 * for their semantics. ops.c puts them into the CPU backend table. */
#ifndef MULTIENC_CPU_OPS_H
#define MULTIENC_CPU_OPS_H
#include <stddef.h>
#include <stdint.h>

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
#endif
