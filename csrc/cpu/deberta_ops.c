/* CPU implementations of DeBERTa's disentangled attention terms (backend.h): the c2p and p2c
 * gathers fused with their products, so the [T, 2S] products are never materialised, and
 * DeBERTa-v2's ConvLayer. */
#include <omp.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "cpu/cpu_ops.h"

/* ---------------------------------------------- disentangled attention (c2p, p2c) */

/* The products run in blocks of DIS_RB rows ("owner" rows: the queries of c2p, the keys of p2c).
 * A block's rows reach only the relative rows idx takes over the distances they see, a contiguous
 * range [c0, c0 + nc) of the projected table: one product per block against that range gives a
 * [DIS_RB, nc] tile, from which the (i, j) entries are read (forward) or into which their
 * gradients are added (backward). Nothing of size T x 2S is stored. The products are
 * cpu_attn_gemm's: a thread lays out the rows of posk and posq that idx reaches, for the head it
 * works on, as their B operands (transposed for the forward, contiguous for the backward; in the
 * tables a head's rows lie NH * HS floats apart), and keeps its tile and a block of q or k rows,
 * contiguous (the B operand of dpos). */
#define DIS_RB 32

/* The range [*c0, *c0 + *nc) of idx over the distances r in [r0, r1]. */
static void idx_range(const int32_t *idx, int r0, int r1, int *c0, int *nc) {
    int lo = idx[r0], hi = idx[r0];
    for (int r = r0 + 1; r <= r1; r++) {
        if (idx[r] < lo) lo = idx[r];
        if (idx[r] > hi) hi = idx[r];
    }
    *c0 = lo;
    *nc = hi - lo + 1;
}

static int dis_rows(int T) { return T < DIS_RB ? T : DIS_RB; }
static int min_int(int a, int b) { return a < b ? a : b; }

/* A thread's scratch: one head's rows of each table, transposed or contiguous (idx reaches at most
 * 2T - 1 rows), then its tile (a block's rows reach at most DIS_RB + T - 1 table rows), then its
 * block of x rows */
typedef struct {
    float *table[2], *tile, *xrows;
} DisScratch;

static size_t dis_table_floats(int T, int HS, int S2) {
    return (size_t)HS * cpu_line_stride(min_int(S2, 2 * T - 1));
}
static int dis_tile_stride(int T, int S2) { return cpu_line_stride(min_int(S2, dis_rows(T) + T - 1)); }
static size_t dis_thread_floats(int T, int HS, int S2) {
    return 2 * dis_table_floats(T, HS, S2) + (size_t)dis_rows(T) * ((size_t)dis_tile_stride(T, S2) + (size_t)HS);
}

size_t cpu_disentangled_scratch_floats(int T, int HS, int S2) {
    return (size_t)omp_get_max_threads() * dis_thread_floats(T, HS, S2);
}

static DisScratch dis_scratch(float *scratch, int T, int HS, int S2) {
    float *base = scratch + (size_t)omp_get_thread_num() * dis_thread_floats(T, HS, S2);
    const size_t table = dis_table_floats(T, HS, S2);
    DisScratch d = {{base, base + table}, base + 2 * table, NULL};
    d.xrows = d.tile + (size_t)dis_rows(T) * dis_tile_stride(T, S2);
    return d;
}

/* The block of owner rows [a0, a1) from a0 (at most DIS_RB of them), the range [c0, c0 + nc) of
 * table rows it reaches and its tile's row stride. The distances it sees: c2p (query rows i,
 * r = j - i + T - 1 over the keys j) or p2c (key rows j, r = j - i + T - 1 over the queries i). */
typedef struct {
    int a1, c0, nc, ldt;
} DisBlock;

static DisBlock dis_block(int p2c, int a0, int T, const int32_t *idx) {
    DisBlock k;
    k.a1 = a0 + dis_rows(T) < T ? a0 + dis_rows(T) : T;
    idx_range(idx, p2c ? a0 : T - k.a1, p2c ? k.a1 + T - 2 : 2 * T - 2 - a0, &k.c0, &k.nc);
    k.ldt = cpu_line_stride(k.nc);
    return k;
}

void cpu_disentangled_forward(float *bias, const float *qkv, const float *posk, const float *posq,
                              const int32_t *idx, float scale, int B, int T, int NH, int HS, int S2,
                              float *scratch) {
    const size_t D = (size_t)NH * HS, D3 = 3 * D, TT = (size_t)T * T;
    const int RB = dis_rows(T);
    int cb, ncols; /* the table rows idx reaches at all */
    idx_range(idx, 0, 2 * T - 2, &cb, &ncols);
    const int ldp = cpu_line_stride(ncols);
#pragma omp parallel if ((size_t)B * NH * TT * HS > 100000)
    {
        const DisScratch sc = dis_scratch(scratch, T, HS, S2);
        int head = -1; /* the head sc.table holds (a thread's (h, b) pairs are consecutive) */
#pragma omp for collapse(2) schedule(static)
        for (int h = 0; h < NH; h++)
            for (int b = 0; b < B; b++) {
                const float *q = qkv + (size_t)b * T * D3 + (size_t)h * HS, *k = q + D;
                float *out = bias + ((size_t)b * NH + h) * TT;
                for (int term = 0; term < 2; term++) {
                    const float *pos = term ? posq : posk, *x = term ? k : q;
                    if (!pos) {
                        if (!term) memset(out, 0, TT * sizeof(float));
                        continue;
                    }
                    if (h != head) /* table [HS, ldp] = pos[cb .. cb + ncols, h]^T */
                        cpu_transpose_rows(sc.table[term], ldp, pos + (size_t)cb * D + (size_t)h * HS, (int)D,
                                           ncols, HS);
                    for (int a0 = 0; a0 < T; a0 += RB) {
                        const DisBlock bk = dis_block(term, a0, T, idx);
                        const int a1 = bk.a1, c0 = bk.c0, nc = bk.nc, ldt = bk.ldt;
                        float *tile = sc.tile;
                        /* tile[a - a0, c - c0] = scale * x_a . pos[c, h] */
                        cpu_attn_gemm(a1 - a0, nc, HS, scale, x + (size_t)a0 * D3, (int)D3, 1, sc.table[term] + (c0 - cb),
                                      ldp, tile, ldt, 0);
                        if (!term) /* c2p: bias[i, j] = tile[i, idx[j - i + T - 1]] */
                            for (int i = a0; i < a1; i++) {
                                const float *t = tile + (size_t)(i - a0) * ldt;
                                const int32_t *ix = idx + (T - 1 - i);
                                float *o = out + (size_t)i * T;
                                for (int j = 0; j < T; j++) o[j] = t[ix[j] - c0];
                            }
                        else /* p2c: bias[i, j] += tile[j, idx[j - i + T - 1]] */
                            for (int i = 0; i < T; i++) {
                                const int32_t *ix = idx + (T - 1 - i);
                                float *o = out + (size_t)i * T;
                                for (int j = a0; j < a1; j++) o[j] += tile[(size_t)(j - a0) * ldt + ix[j] - c0];
                            }
                    }
                }
                head = h;
            }
    }
}

void cpu_disentangled_backward(float *dqkv, float *dposk, float *dposq, const float *dbias, const float *qkv,
                               const float *posk, const float *posq, const int32_t *idx, float scale, int B,
                               int T, int NH, int HS, int S2, float *scratch) {
    const size_t D = (size_t)NH * HS, D3 = 3 * D, TT = (size_t)T * T;
    const int RB = dis_rows(T);
    int cb, ncols;
    idx_range(idx, 0, 2 * T - 2, &cb, &ncols);
    /* One head per thread: its columns of dq and dk, and its columns of dposk and dposq summed over
     * b and the row blocks in order (deterministic) */
#pragma omp parallel for schedule(static) if ((size_t)B * NH * TT * HS > 100000)
    for (int h = 0; h < NH; h++) {
        const DisScratch sc = dis_scratch(scratch, T, HS, S2);
        float *tile = sc.tile;
        for (int term = 0; term < 2; term++) { /* table [ncols, HS] = pos[cb .. cb + ncols, h] */
            const float *pos = term ? posq : posk;
            if (pos) cpu_copy_rows(sc.table[term], pos + (size_t)cb * D + (size_t)h * HS, (int)D, ncols, HS);
        }
        for (int b = 0; b < B; b++) {
            const float *q = qkv + (size_t)b * T * D3 + (size_t)h * HS, *k = q + D;
            float *dq = dqkv + (size_t)b * T * D3 + (size_t)h * HS, *dk = dq + D;
            const float *g = dbias + ((size_t)b * NH + h) * TT;
            for (int term = 0; term < 2; term++) {
                const float *x = term ? k : q;
                float *dpos = term ? dposq : dposk, *dx = term ? dk : dq;
                if (!(term ? posq : posk)) continue;
                for (int a0 = 0; a0 < T; a0 += RB) {
                    const DisBlock bk = dis_block(term, a0, T, idx);
                    const int a1 = bk.a1, c0 = bk.c0, nc = bk.nc, ldt = bk.ldt;
                    memset(tile, 0, (size_t)(a1 - a0) * ldt * sizeof(float));
                    if (!term) /* c2p: tile[i, idx[j - i + T - 1]] += g[i, j] */
                        for (int i = a0; i < a1; i++) {
                            float *t = tile + (size_t)(i - a0) * ldt;
                            const int32_t *ix = idx + (T - 1 - i);
                            const float *gr = g + (size_t)i * T;
                            for (int j = 0; j < T; j++) t[ix[j] - c0] += gr[j];
                        }
                    else /* p2c: tile[j, idx[j - i + T - 1]] += g[i, j] */
                        for (int i = 0; i < T; i++) {
                            const int32_t *ix = idx + (T - 1 - i);
                            const float *gr = g + (size_t)i * T;
                            for (int j = a0; j < a1; j++) tile[(size_t)(j - a0) * ldt + ix[j] - c0] += gr[j];
                        }
                    /* dx[a] += scale * tile pos[c0:c0+nc, h] ; dpos[c0:c0+nc, h] += scale * tile^T x[a] */
                    cpu_attn_gemm(a1 - a0, HS, nc, scale, tile, ldt, 1, sc.table[term] + (size_t)(c0 - cb) * HS, HS,
                                  dx + (size_t)a0 * D3, (int)D3, 1);
                    if (dpos) {
                        cpu_copy_rows(sc.xrows, x + (size_t)a0 * D3, (int)D3, a1 - a0, HS);
                        cpu_attn_gemm(nc, HS, a1 - a0, scale, tile, 1, ldt, sc.xrows, HS,
                                      dpos + (size_t)c0 * D + (size_t)h * HS, (int)D, 1);
                    }
                }
            }
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
