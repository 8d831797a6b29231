/* CPU backend, part 3: the ops ModernBERT adds to the BERT block: rotary position embeddings,
 * the gated linear unit of its feed-forward and self-attention limited to a window of keys.
 * Same conventions as ops.c: OpenMP over independent rows or (batch, head) pairs, the attention's
 * products single-threaded inside (cpu_attn_gemm), fixed summation orders, so results repeat for a
 * given thread count. */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "cpu/cpu_ops.h"
#include "cpu/vmath.h"

#define PAR_MIN 4096

/* ------------------------------------------------------------------ rotary */

/* Rotate the q and k blocks of every row by the position's angles; inverse = 1 rotates back
 * (sin negated), which is the gradient map of the forward rotation. */
static void rope_apply(float *qkv, const float *cos_t, const float *sin_t, int B, int T, int NH, int HS,
                       int inverse) {
    const int D = NH * HS, half = HS / 2, N = B * T;
#pragma omp parallel for if ((size_t)N * D > PAR_MIN) schedule(static)
    for (int n = 0; n < N; n++) {
        const float *c = cos_t + (size_t)(n % T) * half, *s = sin_t + (size_t)(n % T) * half;
        float *row = qkv + (size_t)n * 3 * D;
        for (int blk = 0; blk < 2 * NH; blk++) { /* q heads, then k heads */
            float *x = row + (size_t)blk * HS;
            for (int i = 0; i < half; i++) {
                const float a = x[i], b = x[i + half], si = inverse ? -s[i] : s[i];
                x[i] = a * c[i] - b * si;
                x[i + half] = b * c[i] + a * si;
            }
        }
    }
}

void cpu_rope_forward(float *qkv, const float *cos_t, const float *sin_t, int B, int T, int NH, int HS) {
    rope_apply(qkv, cos_t, sin_t, B, T, NH, HS, 0);
}

void cpu_rope_backward(float *dqkv, const float *cos_t, const float *sin_t, int B, int T, int NH, int HS) {
    rope_apply(dqkv, cos_t, sin_t, B, T, NH, HS, 1);
}

/* ------------------------------------------------------------- gated unit */

void cpu_glu_forward(float *out, const float *inp, int N, int C, MeActivation act) {
#pragma omp parallel for if ((size_t)N * C > PAR_MIN) schedule(static)
    for (int n = 0; n < N; n++) {
        const float *a = inp + (size_t)n * 2 * C, *g = a + C;
        float *o = out + (size_t)n * C;
        me_vgelu_forward(o, NULL, a, (size_t)C, act == ME_ACT_GELU_TANH);
        for (int i = 0; i < C; i++) o[i] *= g[i];
    }
}

void cpu_glu_backward(float *dinp, float *out, const float *inp, const float *dout, int N, int C,
                      MeActivation act) {
#pragma omp parallel for if ((size_t)N * C > PAR_MIN) schedule(static)
    for (int n = 0; n < N; n++) {
        const float *a = inp + (size_t)n * 2 * C, *g = a + C, *d = dout + (size_t)n * C;
        float *da = dinp + (size_t)n * 2 * C, *dg = da + C, *o = out ? out + (size_t)n * C : NULL;
        me_vgelu_forward(dg, da, a, (size_t)C, act == ME_ACT_GELU_TANH); /* y = act(a), act'(a) */
        for (int i = 0; i < C; i++) {
            if (o) o[i] = dg[i] * g[i];
            dg[i] *= d[i];
            da[i] *= g[i] * d[i];
        }
    }
}

/* ------------------------------------------------------- windowed attention */

/* exp(x) for the softmax's x <= 0, within 1 ulp of exp (0.99 at worst over every float in
 * [-88, 0], against double exp): x clamped at -88 (the reduction below
 * needs |x| < 2^21), Cody-Waite reduction x = n ln2 + r, Cephes' degree-6 polynomial for e^r, and
 * 2^n built in the exponent bits (0 below 2^-126, where a softmax term is nothing next to the
 * maximum's 1). Neither calls nor branches nor float-to-int conversions, so loops over it vectorize. */
static inline float softmax_exp(float x) {
    x = x < -88.0f ? -88.0f : x; /* NaN stays NaN */
    const float big = 12582912.0f; /* 1.5 * 2^23: adding and subtracting it rounds to an integer */
    const float n = (x * 1.44269504088896341f + big) - big;
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    const float e = p * r * r + r + 1.0f;
    const float biased = n + (127.0f + big); /* n + 127 in the low mantissa bits */
    int32_t k;
    memcpy(&k, &biased, sizeof k);
    k -= 0x4B400000;
    const int32_t bits = k > 0 ? k << 23 : 0;
    float two_n;
    memcpy(&two_n, &bits, sizeof two_n);
    return e * two_n;
}

/* Row sums: vectorized float partial sums over chunks of WA_CHUNK keys, added up in double. */
#define WA_CHUNK 64

/* Query rows are processed in blocks; a block's keys are one contiguous range that holds every key
 * its rows may see: all T keys without a window, else the block plus `window` keys on each side,
 * clipped to the sequence (a fixed width, shifted inside at the ends). */
typedef struct {
    int QB, KW; /* rows per block, keys per block */
} WaGeometry;

static WaGeometry wa_geometry(int T, int window) {
    WaGeometry g;
    const int global = window < 0 || window >= T;
    g.QB = global ? 64 : 32;
    if (g.QB > T) g.QB = T;
    g.KW = global || g.QB + 2 * window >= T ? T : g.QB + 2 * window;
    return g;
}

static int wa_key_start(int r0, int window, int T, int KW) {
    int ks = KW == T ? 0 : r0 - window;
    if (ks < 0) ks = 0;
    if (ks > T - KW) ks = T - KW;
    return ks;
}

/* Query r's window [lo, hi), its real keys counted by the prefix counts cnt (cnt[j] = real keys
 * before j): 0 -> no allowed key (a uniform row); hi - lo -> every key in the window is real. */
typedef struct {
    int lo, hi, real;
} WaRow;

static WaRow wa_row(int r, int window, int T, const int32_t *cnt) {
    WaRow w;
    w.lo = window < 0 || r - window < 0 ? 0 : r - window;
    w.hi = window < 0 || r + window + 1 > T ? T : r + window + 1;
    w.real = cnt[w.hi] - cnt[w.lo];
    return w;
}

/* Per thread: two QB x KW tiles; cpu_attn_gemm's B operands: three T x HS (the head's K or V
 * transposed, or its rows of K or V made contiguous, once per head: a band is a slice of them)
 * and one QB x HS (a block's rows of Q or dO); T floats, T + 1 prefix counts. */
static size_t wa_thread_floats(WaGeometry g, int T, int HS) {
    return 2 * (size_t)g.QB * g.KW + 3 * (size_t)T * HS + (size_t)g.QB * HS + 2 * (size_t)T + 1;
}

size_t cpu_window_attention_scratch_floats(int B, int T, int NH, int HS, int window) {
    return (size_t)omp_get_max_threads() * wa_thread_floats(wa_geometry(T, window), T, HS);
}

static float keep_scale(float p) { return p >= 1.0f ? 0.0f : 1.0f / (1.0f - p); }

/* Scores row (band coordinates, key j at row[j - ks]) -> the softmax over its allowed keys, 0 on
 * the others; returns the row maximum and 1 / sum through mx / inv (inv 0: no allowed key). */
static void wa_softmax_row(float *row, int KW, int ks, WaRow w, const int32_t *m, float *mx_out,
                           float *inv_out) {
    const int a = w.lo - ks, b = w.hi - ks;
    float mx = -INFINITY;
    double sum = 0.0;
    if (w.real == w.hi - w.lo) { /* every key in the window is real */
#pragma omp simd reduction(max : mx)
        for (int j = a; j < b; j++) mx = row[j] > mx ? row[j] : mx;
        for (int j0 = a; j0 < b; j0 += WA_CHUNK) { /* float partial sums (vectorized), in double across */
            const int j1 = j0 + WA_CHUNK < b ? j0 + WA_CHUNK : b;
            float part = 0.0f;
#pragma omp simd reduction(+ : part)
            for (int j = j0; j < j1; j++) {
                const float e = softmax_exp(row[j] - mx);
                row[j] = e;
                part += e;
            }
            sum += part;
        }
    } else if (w.real > 0) {
        for (int j = a; j < b; j++)
            if (m[ks + j] && row[j] > mx) mx = row[j];
        for (int j = a; j < b; j++) {
            const float e = m[ks + j] ? softmax_exp(row[j] - mx) : 0.0f;
            row[j] = e;
            sum += e;
        }
    }
    const float inv = sum > 0.0 ? (float)(1.0 / sum) : 0.0f;
    for (int j = 0; j < a; j++) row[j] = 0.0f;
#pragma omp simd
    for (int j = a; j < b; j++) row[j] *= inv;
    for (int j = b; j < KW; j++) row[j] = 0.0f;
    *mx_out = mx;
    *inv_out = inv;
}

/* The same probabilities again from the row statistics (backward). */
static void wa_probs_row(float *row, int KW, int ks, WaRow w, const int32_t *m, float mx, float inv) {
    const int a = w.lo - ks, b = w.hi - ks;
    for (int j = 0; j < a; j++) row[j] = 0.0f;
    if (w.real == w.hi - w.lo) {
#pragma omp simd
        for (int j = a; j < b; j++) row[j] = softmax_exp(row[j] - mx) * inv;
    } else {
        for (int j = a; j < b; j++) row[j] = w.real && m[ks + j] ? softmax_exp(row[j] - mx) * inv : 0.0f;
    }
    for (int j = b; j < KW; j++) row[j] = 0.0f;
}

/* dst = src with dropout (in place when dst == src): the n x KW band of query rows r0.. and keys ks.., each element drawn
 * at its place (query, key) in the T x T matrix of the (batch row, head) site s. Returns dst. */
static const float *wa_dropout_band(float *dst, const float *src, int n, int KW, int r0, int ks, int T, float p,
                                    float scl, uint64_t seed, uint64_t s) {
    for (int i = 0; i < n; i++)
        me_vdropout(dst + (size_t)i * KW, src + (size_t)i * KW, (size_t)KW, p, scl, seed, s, (size_t)(r0 + i) * T + ks);
    return dst;
}

static void prefix_counts(int32_t *cnt, const int32_t *m, int T) {
    cnt[0] = 0;
    for (int j = 0; j < T; j++) cnt[j + 1] = cnt[j] + (m[j] != 0);
}

void cpu_window_attention_forward(float *ctx, float *stats, const float *qkv, const int32_t *mask, int B, int T,
                                  int NH, int HS, int window, float p, uint64_t seed, uint64_t site,
                                  float *scratch) {
    const int D = NH * HS, D3 = 3 * D;
    const float scale = 1.0f / sqrtf((float)HS), scl = keep_scale(p);
    const WaGeometry g = wa_geometry(T, window);
    const size_t per_thread = wa_thread_floats(g, T, HS);
#pragma omp parallel for collapse(2) schedule(static) if ((size_t)B * NH * T * g.KW * HS > 100000)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            const float *q = qkv + (size_t)b * T * D3 + h * HS, *k = q + D, *v = q + 2 * D;
            float *o = ctx + (size_t)b * T * D + h * HS, *st = stats + ((size_t)b * NH + h) * T * 2;
            const int32_t *m = mask + (size_t)b * T;
            const uint64_t s = site + (uint64_t)b * NH + h;
            float *S = scratch + per_thread * omp_get_thread_num(), *Pd = S + (size_t)g.QB * g.KW;
            float *kt = Pd + (size_t)g.QB * g.KW, *vr = kt + (size_t)T * HS; /* K^T [HS, T], V [T, HS] */
            int32_t *cnt = (int32_t *)(kt + 3 * (size_t)T * HS + (size_t)g.QB * HS + T);
            prefix_counts(cnt, m, T);
            cpu_transpose_rows(kt, T, k, D3, T, HS);
            cpu_copy_rows(vr, v, D3, T, HS);
            for (int r0 = 0; r0 < T; r0 += g.QB) {
                const int n = r0 + g.QB <= T ? g.QB : T - r0, ks = wa_key_start(r0, window, T, g.KW);
                cpu_attn_gemm(n, g.KW, HS, scale, q + (size_t)r0 * D3, D3, 1, kt + ks, T, S, g.KW, 0);
                for (int i = 0; i < n; i++)
                    wa_softmax_row(S + (size_t)i * g.KW, g.KW, ks, wa_row(r0 + i, window, T, cnt), m,
                                   &st[2 * (r0 + i)], &st[2 * (r0 + i) + 1]);
                const float *P = p > 0.0f ? wa_dropout_band(Pd, S, n, g.KW, r0, ks, T, p, scl, seed, s) : S;
                cpu_attn_gemm(n, HS, g.KW, 1.0f, P, g.KW, 1, vr + (size_t)ks * HS, HS, o + (size_t)r0 * D, D, 0);
                for (int i = 0; i < n; i++) {
                    const int r = r0 + i;
                    if (wa_row(r, window, T, cnt).real) continue;
                    /* no allowed key: uniform over all T keys (with dropout) */
                    float *orow = o + (size_t)r * D;
                    for (int c = 0; c < HS; c++) orow[c] = 0.0f;
                    for (int j = 0; j < T; j++) {
                        const float w = p > 0.0f && me_uniform(seed, s, (size_t)r * T + j) < p ? 0.0f
                                                                                               : scl / (float)T;
                        const float *vj = v + (size_t)j * D3;
                        for (int c = 0; c < HS; c++) orow[c] += w * vj[c];
                    }
                }
            }
        }
}

void cpu_window_attention_backward(float *dqkv, const float *dctx, const float *qkv, const float *stats,
                                   const int32_t *mask, int B, int T, int NH, int HS, int window, float p,
                                   uint64_t seed, uint64_t site, float *scratch) {
    const int D = NH * HS, D3 = 3 * D;
    const float scale = 1.0f / sqrtf((float)HS), scl = keep_scale(p);
    const WaGeometry g = wa_geometry(T, window);
    const size_t per_thread = wa_thread_floats(g, T, HS);
#pragma omp parallel for collapse(2) schedule(static) if ((size_t)B * NH * T * g.KW * HS > 100000)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            const size_t row0 = (size_t)b * T * D3 + h * HS;
            const float *q = qkv + row0, *k = q + D, *v = q + 2 * D;
            float *dq = dqkv + row0, *dk = dq + D, *dv = dq + 2 * D;
            const float *dO = dctx + (size_t)b * T * D + h * HS, *st = stats + ((size_t)b * NH + h) * T * 2;
            const int32_t *m = mask + (size_t)b * T;
            const uint64_t s = site + (uint64_t)b * NH + h;
            float *P = scratch + per_thread * omp_get_thread_num(), *G = P + (size_t)g.QB * g.KW;
            float *kt = G + (size_t)g.QB * g.KW, *vt = kt + (size_t)T * HS, *kr = vt + (size_t)T * HS;
            float *rows = kr + (size_t)T * HS; /* K^T, V^T [HS, T], K [T, HS]; a block's rows [QB, HS] */
            float *dS = rows + (size_t)g.QB * HS; /* T floats: a uniform row's score gradients */
            int32_t *cnt = (int32_t *)(dS + T);
            prefix_counts(cnt, m, T);
            cpu_transpose_rows(kt, T, k, D3, T, HS);
            cpu_transpose_rows(vt, T, v, D3, T, HS);
            cpu_copy_rows(kr, k, D3, T, HS);
            for (int t = 0; t < T; t++) {
                memset(dk + (size_t)t * D3, 0, sizeof(float) * HS);
                memset(dv + (size_t)t * D3, 0, sizeof(float) * HS);
            }
            for (int r0 = 0; r0 < T; r0 += g.QB) {
                const int n = r0 + g.QB <= T ? g.QB : T - r0, ks = wa_key_start(r0, window, T, g.KW);
                /* the forward's probabilities, recomputed from its row statistics */
                cpu_attn_gemm(n, g.KW, HS, scale, q + (size_t)r0 * D3, D3, 1, kt + ks, T, P, g.KW, 0);
                for (int i = 0; i < n; i++)
                    wa_probs_row(P + (size_t)i * g.KW, g.KW, ks, wa_row(r0 + i, window, T, cnt), m, st[2 * (r0 + i)],
                                 st[2 * (r0 + i) + 1]);
                /* dV += Pd^T dO (Pd: P with dropout, built in G) */
                const float *Pd = p > 0.0f ? wa_dropout_band(G, P, n, g.KW, r0, ks, T, p, scl, seed, s) : P;
                cpu_copy_rows(rows, dO + (size_t)r0 * D, D, n, HS);
                cpu_attn_gemm(g.KW, HS, n, 1.0f, Pd, 1, g.KW, rows, HS, dv + (size_t)ks * D3, D3, 1);
                /* dPd = dO V^T; through dropout, then softmax: dS = P (dP - sum(dP P)) scale */
                cpu_attn_gemm(n, g.KW, HS, 1.0f, dO + (size_t)r0 * D, D, 1, vt + ks, T, G, g.KW, 0);
                if (p > 0.0f) wa_dropout_band(G, G, n, g.KW, r0, ks, T, p, scl, seed, s);
                for (int i = 0; i < n; i++) {
                    float *gr = G + (size_t)i * g.KW;
                    const float *pr = P + (size_t)i * g.KW;
                    double dot = 0.0;
                    for (int j0 = 0; j0 < g.KW; j0 += WA_CHUNK) {
                        const int j1 = j0 + WA_CHUNK < g.KW ? j0 + WA_CHUNK : g.KW;
                        float part = 0.0f;
#pragma omp simd reduction(+ : part)
                        for (int jj = j0; jj < j1; jj++) part += gr[jj] * pr[jj];
                        dot += part;
                    }
                    const float df = (float)dot;
#pragma omp simd
                    for (int jj = 0; jj < g.KW; jj++) gr[jj] = pr[jj] * (gr[jj] - df) * scale;
                }
                /* dQ = dS K ; dK += dS^T Q */
                cpu_attn_gemm(n, HS, g.KW, 1.0f, G, g.KW, 1, kr + (size_t)ks * HS, HS, dq + (size_t)r0 * D3, D3, 0);
                cpu_copy_rows(rows, q + (size_t)r0 * D3, D3, n, HS);
                cpu_attn_gemm(g.KW, HS, n, 1.0f, G, 1, g.KW, rows, HS, dk + (size_t)ks * D3, D3, 1);
                /* rows without an allowed key: uniform over all T keys */
                for (int i = 0; i < n; i++) {
                    const int r = r0 + i;
                    if (wa_row(r, window, T, cnt).real) continue;
                    const float *dOr = dO + (size_t)r * D, *qr = q + (size_t)r * D3;
                    float *dqr = dq + (size_t)r * D3;
                    const float pu = 1.0f / (float)T;
                    double dot = 0.0;
                    for (int j = 0; j < T; j++) {
                        const int keep = !(p > 0.0f) || me_uniform(seed, s, (size_t)r * T + j) >= p;
                        const float *vj = v + (size_t)j * D3;
                        float *dvj = dv + (size_t)j * D3;
                        const float w = keep ? pu * scl : 0.0f;
                        float gj = 0.0f;
                        for (int c = 0; c < HS; c++) {
                            dvj[c] += w * dOr[c];
                            gj += dOr[c] * vj[c];
                        }
                        dS[j] = p > 0.0f ? (keep ? gj * scl : 0.0f) : gj;
                        dot += (double)dS[j] * pu;
                    }
                    const float df = (float)dot;
                    for (int j = 0; j < T; j++) {
                        const float d = pu * (dS[j] - df) * scale;
                        const float *kj = k + (size_t)j * D3;
                        float *dkj = dk + (size_t)j * D3;
                        for (int c = 0; c < HS; c++) {
                            dqr[c] += d * kj[c];
                            dkj[c] += d * qr[c];
                        }
                    }
                }
            }
        }
}
