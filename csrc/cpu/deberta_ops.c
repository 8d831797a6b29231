/* CPU implementations of DeBERTa's disentangled attention terms (backend.h): the c2p and p2c
 * gathers fused with their dot products, so the [T, 2S] products are never materialised. */
#include <omp.h>
#include <stddef.h>
#include <stdint.h>

#include "cpu/cpu_ops.h"

static float dot(const float *a, const float *b, int n) {
    float s = 0.0f;
    for (int d = 0; d < n; d++) s += a[d] * b[d];
    return s;
}

static void axpy(float *y, float a, const float *x, int n) {
    for (int d = 0; d < n; d++) y[d] += a * x[d];
}

void cpu_disentangled_forward(float *bias, const float *qkv, const float *posk, const float *posq,
                              const int32_t *idx, float scale, int B, int T, int NH, int HS) {
    const size_t D = (size_t)NH * HS, D3 = 3 * D;
#pragma omp parallel for collapse(2) schedule(static) if ((size_t)B * NH * T * T * HS > 100000)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            const float *q = qkv + (size_t)b * T * D3 + (size_t)h * HS, *k = q + D;
            float *out = bias + ((size_t)b * NH + h) * T * T;
            for (int i = 0; i < T; i++)
                for (int j = 0; j < T; j++) {
                    const size_t r = (size_t)idx[j - i + T - 1] * D + (size_t)h * HS;
                    float s = 0.0f;
                    if (posk) s += dot(q + (size_t)i * D3, posk + r, HS);
                    if (posq) s += dot(k + (size_t)j * D3, posq + r, HS);
                    out[(size_t)i * T + j] = s * scale;
                }
        }
}

void cpu_disentangled_backward(float *dqkv, float *dposk, float *dposq, const float *dbias, const float *qkv,
                               const float *posk, const float *posq, const int32_t *idx, float scale, int B,
                               int T, int NH, int HS) {
    const size_t D = (size_t)NH * HS, D3 = 3 * D;
    const int par = (size_t)B * NH * T * T * HS > 100000;
    /* dq, dk: each (b, h) owns its rows' head columns */
#pragma omp parallel for collapse(2) schedule(static) if (par)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            float *dq = dqkv + (size_t)b * T * D3 + (size_t)h * HS, *dk = dq + D;
            const float *g = dbias + ((size_t)b * NH + h) * T * T;
            for (int i = 0; i < T; i++)
                for (int j = 0; j < T; j++) {
                    const float gs = g[(size_t)i * T + j] * scale;
                    const size_t r = (size_t)idx[j - i + T - 1] * D + (size_t)h * HS;
                    if (posk) axpy(dq + (size_t)i * D3, gs, posk + r, HS);
                    if (posq) axpy(dk + (size_t)j * D3, gs, posq + r, HS);
                }
        }
    /* dposk, dposq: one head per thread, summed over b, i, j in order */
#pragma omp parallel for schedule(static) if (par)
    for (int h = 0; h < NH; h++)
        for (int b = 0; b < B; b++) {
            const float *q = qkv + (size_t)b * T * D3 + (size_t)h * HS, *k = q + D;
            const float *g = dbias + ((size_t)b * NH + h) * T * T;
            for (int i = 0; i < T; i++)
                for (int j = 0; j < T; j++) {
                    const float gs = g[(size_t)i * T + j] * scale;
                    const size_t r = (size_t)idx[j - i + T - 1] * D + (size_t)h * HS;
                    if (dposk) axpy(dposk + r, gs, q + (size_t)i * D3, HS);
                    if (dposq) axpy(dposq + r, gs, k + (size_t)j * D3, HS);
                }
        }
}

/* ------------------------------------------------------------ ConvLayer's conv1d */

void cpu_conv1d_forward(float *out, const float *inp, const float *w, const float *bias, int B, int T, int C,
                        int K, int G) {
    const int CG = C / G, pad = (K - 1) / 2;
#pragma omp parallel for collapse(2) schedule(static) if ((size_t)B * T * C * CG * K > 100000)
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            float *o = out + ((size_t)b * T + t) * C;
            for (int oc = 0; oc < C; oc++) {
                const int c0 = oc / CG * CG;
                float s = bias ? bias[oc] : 0.0f;
                for (int k = 0; k < K; k++) {
                    const int ts = t + k - pad;
                    if (ts < 0 || ts >= T) continue;
                    const float *x = inp + ((size_t)b * T + ts) * C + c0;
                    const float *wk = w + (size_t)oc * CG * K + k;
                    for (int c = 0; c < CG; c++) s += wk[(size_t)c * K] * x[c];
                }
                o[oc] = s;
            }
        }
}

void cpu_conv1d_backward(float *dinp, float *dw, float *dbias, const float *dout, const float *inp, const float *w,
                         int B, int T, int C, int K, int G) {
    const int CG = C / G, pad = (K - 1) / 2;
    const int par = (size_t)B * T * C * CG * K > 100000;
    /* dinp[b, ts, c] = sum over (oc of c's group, k) with t = ts - k + pad of w[oc, c, k] dout[b, t, oc] */
#pragma omp parallel for collapse(2) schedule(static) if (par)
    for (int b = 0; b < B; b++)
        for (int ts = 0; ts < T; ts++) {
            float *dx = dinp + ((size_t)b * T + ts) * C;
            for (int c = 0; c < C; c++) dx[c] = 0.0f;
            for (int k = 0; k < K; k++) {
                const int t = ts - k + pad;
                if (t < 0 || t >= T) continue;
                const float *g = dout + ((size_t)b * T + t) * C;
                for (int oc = 0; oc < C; oc++) {
                    const int c0 = oc / CG * CG;
                    const float *wk = w + (size_t)oc * CG * K + k;
                    for (int c = 0; c < CG; c++) dx[c0 + c] += wk[(size_t)c * K] * g[oc];
                }
            }
        }
#pragma omp parallel for schedule(static) if (par)
    for (int oc = 0; oc < C; oc++) {
        const int c0 = oc / CG * CG;
        float *dwo = dw + (size_t)oc * CG * K;
        for (int b = 0; b < B; b++)
            for (int t = 0; t < T; t++) {
                const float g = dout[((size_t)b * T + t) * C + oc];
                if (dbias) dbias[oc] += g;
                for (int k = 0; k < K; k++) {
                    const int ts = t + k - pad;
                    if (ts < 0 || ts >= T) continue;
                    const float *x = inp + ((size_t)b * T + ts) * C + c0;
                    for (int c = 0; c < CG; c++) dwo[(size_t)c * K + k] += g * x[c];
                }
            }
    }
}
