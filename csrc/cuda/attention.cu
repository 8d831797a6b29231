/* CUDA backend, fp32 attention: the straightforward version. q, k, v are
 * copied into head-major [B, NH, T, HS] tiles, the two products per
 * direction are cuBLAS strided-batched GEMMs over the B*NH heads, and the
 * masked softmax (forward) and its backward through dropout are one warp per
 * row of the T x T matrix. The goal is a flash-style fused kernel that never
 * writes the T x T matrix (docs/ARCHITECTURE.md, CUDA backend).
 *
 * Scratch (floats, each piece rounded up to 64): q, k, v, a head-major
 * context or context gradient, dq, dk, dv (7 x B*T*D) and two B*NH*T*T
 * matrices: the dropped-out probabilities and the probability gradient. */
#include <math.h>

#include "cuda/cuda_common.cuh"

#define BLOCK 256
#define ROWS_PER_BLOCK 8 /* one warp per softmax row */

static size_t seg(size_t n) { return (n + 63) / 64 * 64; }

size_t me_cu_attention_scratch_floats(int B, int T, int NH, int HS) {
    size_t nd = (size_t)B * T * NH * HS, btt = (size_t)B * NH * T * T;
    return 7 * seg(nd) + 2 * seg(btt);
}

typedef struct {
    float *q, *k, *v, *h, *dq, *dk, *dv, *pd, *dp;
} Scratch;

static Scratch carve(float *s, int B, int T, int NH, int HS) {
    size_t nd = seg((size_t)B * T * NH * HS), btt = seg((size_t)B * NH * T * T);
    Scratch r;
    r.q = s;
    r.k = r.q + nd;
    r.v = r.k + nd;
    r.h = r.v + nd;
    r.dq = r.h + nd;
    r.dk = r.dq + nd;
    r.dv = r.dk + nd;
    r.pd = r.dv + nd;
    r.dp = r.pd + btt;
    return r;
}

/* dst [B, NH, T, HS] <- src rows [B*T] of stride ld, head h at column h*HS */
__global__ void to_heads_kernel(float *dst, const float *src, int ld, int B, int T, int NH,
                                int HS) {
    ME_CU_FOR(i, (size_t)B * NH * T * HS) {
        size_t s = i % HS, t = i / HS % T, h = i / ((size_t)HS * T) % NH,
               b = i / ((size_t)HS * T * NH);
        dst[i] = src[(b * T + t) * ld + h * HS + s];
    }
}

/* the inverse: dst rows of stride ld <- src [B, NH, T, HS] */
__global__ void from_heads_kernel(float *dst, const float *src, int ld, int B, int T, int NH,
                                  int HS) {
    ME_CU_FOR(i, (size_t)B * NH * T * HS) {
        size_t s = i % HS, t = i / HS % T, h = i / ((size_t)HS * T) % NH,
               b = i / ((size_t)HS * T * NH);
        dst[(b * T + t) * ld + h * HS + s] = src[i];
    }
}

static int to_heads(float *dst, const float *src, int ld, int B, int T, int NH, int HS) {
    to_heads_kernel<<<me_cu_grid((size_t)B * NH * T * HS, BLOCK), BLOCK, 0, me_cu.stream>>>(
        dst, src, ld, B, T, NH, HS);
    return ME_CU_LAUNCHED("attention (to heads)");
}

static int from_heads(float *dst, const float *src, int ld, int B, int T, int NH, int HS) {
    from_heads_kernel<<<me_cu_grid((size_t)B * NH * T * HS, BLOCK), BLOCK, 0, me_cu.stream>>>(
        dst, src, ld, B, T, NH, HS);
    return ME_CU_LAUNCHED("attention (from heads)");
}

/* Softmax over keys of each row of P [B*NH*T, T] in place, masked keys
 * excluded (probability exactly 0); a row whose keys are all masked becomes
 * uniform, as in HF (see the CPU backend). */
__global__ void masked_softmax_kernel(float *P, const int32_t *mask, int rows, int NH, int T) {
    const int row = blockIdx.x * ROWS_PER_BLOCK + threadIdx.x / 32, lane = threadIdx.x & 31;
    if (row >= rows) return;
    const int32_t *m = mask + (size_t)(row / ((size_t)NH * T)) * T;
    float *r = P + (size_t)row * T;
    float mx = -INFINITY;
    int any = 0;
    for (int j = lane; j < T; j += 32)
        if (m[j]) {
            any = 1;
            mx = fmaxf(mx, r[j]);
        }
    if (!__any_sync(0xffffffffu, any)) {
        for (int j = lane; j < T; j += 32) r[j] = 1.0f / (float)T;
        return;
    }
    mx = me_warp_max(mx);
    float s = 0.0f;
    for (int j = lane; j < T; j += 32) {
        float e = m[j] ? expf(r[j] - mx) : 0.0f;
        r[j] = e;
        s += e;
    }
    const float inv = 1.0f / me_warp_sum(s);
    for (int j = lane; j < T; j += 32) r[j] *= inv;
}

/* Pd = P with attention dropout: element i of head bh kept iff
 * me_uniform(seed, site + bh, i) >= p (the CPU backend's mask). */
__global__ void attention_dropout_kernel(float *Pd, const float *P, size_t total, size_t TT,
                                         float p, float scale, uint64_t seed, uint64_t site) {
    ME_CU_FOR(i, total) {
        Pd[i] = me_uniform(seed, site + i / TT, i % TT) >= p ? P[i] * scale : 0.0f;
    }
}

/* dP [rows, T] in place -> dS = P * (dPd' - sum(dPd' * P)) * scale, where dPd'
 * is dP through the dropout mask (row = bh*T + r; element r*T + j of head bh). */
__global__ void softmax_backward_kernel(float *dP, const float *P, int rows, int T, float p,
                                        float drop_scale, uint64_t seed, uint64_t site,
                                        float scale) {
    const int row = blockIdx.x * ROWS_PER_BLOCK + threadIdx.x / 32, lane = threadIdx.x & 31;
    if (row >= rows) return;
    float *g = dP + (size_t)row * T;
    const float *pr = P + (size_t)row * T;
    const uint64_t st = site + (uint64_t)(row / T), base = (uint64_t)(row % T) * T;
    float dot = 0.0f;
    for (int j = lane; j < T; j += 32) {
        float v = g[j];
        if (p > 0.0f) v = me_uniform(seed, st, base + j) >= p ? v * drop_scale : 0.0f;
        g[j] = v;
        dot += v * pr[j];
    }
    dot = me_warp_sum(dot);
    for (int j = lane; j < T; j += 32) g[j] = pr[j] * (g[j] - dot) * scale;
}

/* Row-major per head: S[T,T] = A[T,HS] B[T,HS]^T etc. Column-major cuBLAS sees
 * each row-major tile transposed; the calls below are those identities. */
static int batched(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float alpha,
                   const float *A, int lda, long long sa, const float *Bm, int ldb, long long sb,
                   float *Cm, int ldc, long long sc, int batch, const char *what) {
    const float beta = 0.0f;
    return me_cublas_check(cublasSgemmStridedBatched(me_cu.blas, ta, tb, m, n, k, &alpha, A, lda,
                                                     sa, Bm, ldb, sb, &beta, Cm, ldc, sc, batch),
                           what);
}

void me_cu_attention_forward(float *ctx, float *probs, const float *qkv, const int32_t *mask,
                             int B, int T, int NH, int HS, float p, uint64_t seed, uint64_t site,
                             float *scratch) {
    if (B <= 0 || T <= 0 || NH <= 0 || HS <= 0) return;
    const int D = NH * HS, BH = B * NH, rows = BH * T;
    const long long sHS = (long long)T * HS, sTT = (long long)T * T;
    Scratch s = carve(scratch, B, T, NH, HS);
    if (to_heads(s.q, qkv, 3 * D, B, T, NH, HS) || to_heads(s.k, qkv + D, 3 * D, B, T, NH, HS) ||
        to_heads(s.v, qkv + 2 * D, 3 * D, B, T, NH, HS))
        return;
    /* S = scale * Q K^T  (column-major: S^T = K Q^T) */
    if (batched(CUBLAS_OP_T, CUBLAS_OP_N, T, T, HS, 1.0f / sqrtf((float)HS), s.k, HS, sHS, s.q,
                HS, sHS, probs, T, sTT, BH, "attention_forward (scores)"))
        return;
    masked_softmax_kernel<<<(rows + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK, 32 * ROWS_PER_BLOCK, 0,
                            me_cu.stream>>>(probs, mask, rows, NH, T);
    if (ME_CU_LAUNCHED("attention_forward (softmax)")) return;
    const float *Pd = probs;
    if (p > 0.0f) {
        size_t total = (size_t)rows * T;
        attention_dropout_kernel<<<me_cu_grid(total, BLOCK), BLOCK, 0, me_cu.stream>>>(
            s.pd, probs, total, (size_t)sTT, p, p >= 1.0f ? 0.0f : 1.0f / (1.0f - p), seed, site);
        if (ME_CU_LAUNCHED("attention_forward (dropout)")) return;
        Pd = s.pd;
    }
    /* ctx = Pd V  (column-major: ctx^T = V^T Pd^T) */
    if (batched(CUBLAS_OP_N, CUBLAS_OP_N, HS, T, T, 1.0f, s.v, HS, sHS, Pd, T, sTT, s.h, HS, sHS,
                BH, "attention_forward (context)"))
        return;
    from_heads(ctx, s.h, D, B, T, NH, HS);
}

void me_cu_attention_backward(float *dqkv, const float *dctx, const float *qkv,
                              const float *probs, const int32_t *mask, int B, int T, int NH,
                              int HS, float p, uint64_t seed, uint64_t site, float *scratch) {
    if (B <= 0 || T <= 0 || NH <= 0 || HS <= 0) return;
    const int D = NH * HS, BH = B * NH, rows = BH * T;
    const long long sHS = (long long)T * HS, sTT = (long long)T * T;
    Scratch s = carve(scratch, B, T, NH, HS);
    if (to_heads(s.q, qkv, 3 * D, B, T, NH, HS) || to_heads(s.k, qkv + D, 3 * D, B, T, NH, HS) ||
        to_heads(s.v, qkv + 2 * D, 3 * D, B, T, NH, HS) || to_heads(s.h, dctx, D, B, T, NH, HS))
        return;
    const float *Pd = probs;
    const float drop_scale = p >= 1.0f ? 0.0f : 1.0f / (1.0f - p);
    if (p > 0.0f) {
        size_t total = (size_t)rows * T;
        attention_dropout_kernel<<<me_cu_grid(total, BLOCK), BLOCK, 0, me_cu.stream>>>(
            s.pd, probs, total, (size_t)sTT, p, drop_scale, seed, site);
        if (ME_CU_LAUNCHED("attention_backward (dropout)")) return;
        Pd = s.pd;
    }
    /* dV = Pd^T dctx  (column-major: dV^T = dctx^T Pd) */
    if (batched(CUBLAS_OP_N, CUBLAS_OP_T, HS, T, T, 1.0f, s.h, HS, sHS, Pd, T, sTT, s.dv, HS, sHS,
                BH, "attention_backward (dV)"))
        return;
    /* dPd = dctx V^T  (column-major: dPd^T = V dctx^T) */
    if (batched(CUBLAS_OP_T, CUBLAS_OP_N, T, T, HS, 1.0f, s.v, HS, sHS, s.h, HS, sHS, s.dp, T, sTT,
                BH, "attention_backward (dP)"))
        return;
    softmax_backward_kernel<<<(rows + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK, 32 * ROWS_PER_BLOCK, 0,
                              me_cu.stream>>>(s.dp, probs, rows, T, p, drop_scale, seed, site,
                                              1.0f / sqrtf((float)HS));
    if (ME_CU_LAUNCHED("attention_backward (softmax)")) return;
    /* dQ = dS K  (column-major: dQ^T = K^T dS^T) */
    if (batched(CUBLAS_OP_N, CUBLAS_OP_N, HS, T, T, 1.0f, s.k, HS, sHS, s.dp, T, sTT, s.dq, HS, sHS,
                BH, "attention_backward (dQ)"))
        return;
    /* dK = dS^T Q  (column-major: dK^T = Q^T dS) */
    if (batched(CUBLAS_OP_N, CUBLAS_OP_T, HS, T, T, 1.0f, s.q, HS, sHS, s.dp, T, sTT, s.dk, HS, sHS,
                BH, "attention_backward (dK)"))
        return;
    if (from_heads(dqkv, s.dq, 3 * D, B, T, NH, HS) ||
        from_heads(dqkv + D, s.dk, 3 * D, B, T, NH, HS))
        return;
    from_heads(dqkv + 2 * D, s.dv, 3 * D, B, T, NH, HS);
}
