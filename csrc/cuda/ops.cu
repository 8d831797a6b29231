/* CUDA backend, fp32: embedding, LayerNorm, matmul (cuBLAS), GELU, add and
 * dropout, each a forward/backward pair with the semantics of backend.h.
 *
 * Determinism: no float atomics anywhere. Reductions over rows (LayerNorm
 * weight/bias gradients, bias gradients) use a fixed split and a fixed tree;
 * the embedding gradient gives each distinct id one block that adds that id's
 * token rows in token order, so it is bit-identical to the CPU backend. */
#include <math.h>

#include "cuda/cuda_common.cuh"

#define BLOCK 256

/* --------------------------------------------------------------- embedding */

__global__ void embedding_forward_kernel(float *out, const int32_t *ids, const float *table,
                                         int N, int C, int accumulate) {
    ME_CU_FOR(i, (size_t)N * C) {
        size_t n = i / C, c = i % C;
        float v = table[(size_t)ids[n] * C + c];
        out[i] = accumulate ? out[i] + v : v;
    }
}

void me_cu_embedding_forward(float *out, const int32_t *ids, const float *table, int N, int C,
                             int accumulate) {
    size_t n = (size_t)N * C;
    if (!n) return;
    embedding_forward_kernel<<<me_cu_grid(n, BLOCK), BLOCK, 0, me_cu.stream>>>(out, ids, table, N,
                                                                                C, accumulate);
    ME_CU_LAUNCHED("embedding_forward");
}

#define EMB_LIST 1024 /* token positions gathered per pass */

/* One block per token n. Only the block of an id's first occurrence works: warp 0
 * gathers the positions holding that id in ascending order (ballots, EMB_LIST at a
 * time), then every thread adds those rows of dout into its columns of the table
 * row in that order: dtable[id] = ((dtable[id] + g0) + g1) + ..., the CPU's order. */
__global__ void embedding_backward_kernel(float *dtable, const float *dout, const int32_t *ids,
                                          int N, int C, int padding_idx) {
    __shared__ int list[EMB_LIST];
    __shared__ int count, next, seen_before;
    const int n = blockIdx.x, id = ids[n], lane = threadIdx.x & 31;
    if (id == padding_idx) return;
    if (threadIdx.x < 32) {
        int dup = 0;
        for (int j0 = 0; j0 < n && !dup; j0 += 32) {
            int j = j0 + lane;
            dup = __any_sync(0xffffffffu, j < n && ids[j] == id);
        }
        if (lane == 0) seen_before = dup;
    }
    __syncthreads();
    if (seen_before) return;
    float *row = dtable + (size_t)id * C;
    for (int from = n; from < N;) {
        if (threadIdx.x < 32) {
            int c = 0, j0 = from;
            for (; j0 < N && c + 32 <= EMB_LIST; j0 += 32) {
                int j = j0 + lane;
                int hit = j < N && ids[j] == id;
                unsigned m = __ballot_sync(0xffffffffu, hit);
                if (hit) list[c + __popc(m & ((1u << lane) - 1u))] = j;
                c += __popc(m);
            }
            if (lane == 0) {
                count = c;
                next = j0;
            }
        }
        __syncthreads();
        for (int col = threadIdx.x; col < C; col += blockDim.x) {
            float acc = row[col];
#pragma unroll 16 /* loads in flight; the adds stay in order */
            for (int k = 0; k < count; k++) acc += dout[(size_t)list[k] * C + col];
            row[col] = acc;
        }
        from = next;
        __syncthreads(); /* list, count and next are rewritten by the next pass */
    }
}

void me_cu_embedding_backward(float *dtable, const float *dout, const int32_t *ids, int N, int C,
                              int padding_idx) {
    if (N <= 0 || C <= 0) return;
    const int threads = C >= 1024 ? 1024 : (C + 31) / 32 * 32; /* a thread per column */
    embedding_backward_kernel<<<N, threads, 0, me_cu.stream>>>(dtable, dout, ids, N, C,
                                                               padding_idx);
    ME_CU_LAUNCHED("embedding_backward");
}

/* --------------------------------------------------------------- layernorm */

#define ROWS_PER_BLOCK 8 /* one warp per row */

__global__ void layernorm_forward_kernel(float *out, float *mean, float *rstd, const float *inp,
                                         const float *w, const float *b, int N, int C,
                                         float eps) {
    const int row = blockIdx.x * ROWS_PER_BLOCK + threadIdx.x / 32, lane = threadIdx.x & 31;
    if (row >= N) return;
    const float *x = inp + (size_t)row * C;
    float s = 0.0f;
    for (int c = lane; c < C; c += 32) s += x[c];
    const float m = me_warp_sum(s) / C;
    float v = 0.0f;
    for (int c = lane; c < C; c += 32) {
        float d = x[c] - m;
        v += d * d;
    }
    const float r = 1.0f / sqrtf(me_warp_sum(v) / C + eps); /* biased variance, as torch */
    float *o = out + (size_t)row * C;
    for (int c = lane; c < C; c += 32) o[c] = ((x[c] - m) * r) * w[c] + b[c];
    if (lane == 0) {
        mean[row] = m;
        rstd[row] = r;
    }
}

void me_cu_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                             const float *w, const float *b, int N, int C, float eps) {
    if (N <= 0) return;
    layernorm_forward_kernel<<<(N + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK, 32 * ROWS_PER_BLOCK, 0,
                               me_cu.stream>>>(out, mean, rstd, inp, w, b, N, C, eps);
    ME_CU_LAUNCHED("layernorm_forward");
}

__global__ void layernorm_backward_input_kernel(float *dinp, const float *dout, const float *inp,
                                                const float *mean, const float *rstd,
                                                const float *w, int N, int C, int accumulate) {
    const int row = blockIdx.x * ROWS_PER_BLOCK + threadIdx.x / 32, lane = threadIdx.x & 31;
    if (row >= N) return;
    const float *x = inp + (size_t)row * C, *g = dout + (size_t)row * C;
    const float m = mean[row], r = rstd[row];
    float sd = 0.0f, sdx = 0.0f;
    for (int c = lane; c < C; c += 32) {
        float dn = g[c] * w[c];
        sd += dn;
        sdx += dn * ((x[c] - m) * r);
    }
    const float md = me_warp_sum(sd) / C, mdx = me_warp_sum(sdx) / C;
    float *d = dinp + (size_t)row * C;
    for (int c = lane; c < C; c += 32) {
        float v = (g[c] * w[c] - md - ((x[c] - m) * r) * mdx) * r;
        d[c] = accumulate ? d[c] + v : v;
    }
}

/* Column sums over N rows, accumulated into db (and, with LN, dw += sum of
 * dout * xhat). A 32 x 32 block owns 32 columns: thread (x, y) sums rows
 * y, y+32, ... of column x, then row y == 0 adds the 32 partials in order. */
template <bool LN>
__global__ void column_sums_kernel(float *dw, float *db, const float *dout, const float *inp,
                                   const float *mean, const float *rstd, int N, int C) {
    __shared__ float pw[32][33], pb[32][33];
    const int tx = threadIdx.x, ty = threadIdx.y, c = blockIdx.x * 32 + tx;
    float aw = 0.0f, ab = 0.0f;
    if (c < C)
        for (int n = ty; n < N; n += 32) {
            float g = dout[(size_t)n * C + c];
            if (LN) aw += g * ((inp[(size_t)n * C + c] - mean[n]) * rstd[n]);
            ab += g;
        }
    pw[ty][tx] = aw;
    pb[ty][tx] = ab;
    __syncthreads();
    if (ty == 0 && c < C) {
        float sw = 0.0f, sb = 0.0f;
        for (int k = 0; k < 32; k++) {
            sw += pw[k][tx];
            sb += pb[k][tx];
        }
        if (LN) dw[c] += sw;
        db[c] += sb;
    }
}

void me_cu_layernorm_backward(float *dinp, float *dw, float *db, const float *dout,
                              const float *inp, const float *mean, const float *rstd,
                              const float *w, int N, int C, int accumulate) {
    if (N <= 0 || C <= 0) return;
    if (dinp) {
        layernorm_backward_input_kernel<<<(N + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK,
                                          32 * ROWS_PER_BLOCK, 0, me_cu.stream>>>(
            dinp, dout, inp, mean, rstd, w, N, C, accumulate);
        ME_CU_LAUNCHED("layernorm_backward");
    }
    column_sums_kernel<true><<<(C + 31) / 32, dim3(32, 32), 0, me_cu.stream>>>(
        dw, db, dout, inp, mean, rstd, N, C);
    ME_CU_LAUNCHED("layernorm_backward (weight gradient)");
}

/* ------------------------------------------------------------------ matmul */

/* cuBLAS is column-major: a row-major [R, K] matrix is its transpose there, so
 * row-major out = inp @ w^T is column-major out^T = w^T^T inp^T. */

__global__ void broadcast_rows_kernel(float *out, const float *b, int N, int OC) {
    ME_CU_FOR(i, (size_t)N * OC) out[i] = b[i % OC];
}

void me_cu_matmul_forward(float *out, const float *inp, const float *w, const float *b, int N,
                          int C, int OC) {
    if (N <= 0 || OC <= 0) return;
    if (b) { /* out = b, then out += inp @ w^T (the CPU backend's order) */
        broadcast_rows_kernel<<<me_cu_grid((size_t)N * OC, BLOCK), BLOCK, 0, me_cu.stream>>>(
            out, b, N, OC);
        if (ME_CU_LAUNCHED("matmul_forward (bias)")) return;
    }
    const float one = 1.0f, beta = b ? 1.0f : 0.0f;
    me_cublas_check(cublasSgemm(me_cu.blas, CUBLAS_OP_T, CUBLAS_OP_N, OC, N, C, &one, w, C, inp, C,
                                &beta, out, OC),
                    "matmul_forward (cublasSgemm)");
}

void me_cu_matmul_backward(float *dinp, float *dw, float *db, const float *dout,
                           const float *inp, const float *w, int N, int C, int OC,
                           int accumulate) {
    if (N <= 0) return;
    const float one = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    if (dinp) /* dinp[N,C] (+)= dout[N,OC] @ w[OC,C] */
        me_cublas_check(cublasSgemm(me_cu.blas, CUBLAS_OP_N, CUBLAS_OP_N, C, N, OC, &one, w, C,
                                    dout, OC, &beta, dinp, C),
                        "matmul_backward (input gradient)");
    if (dw) /* dw[OC,C] += dout^T @ inp */
        me_cublas_check(cublasSgemm(me_cu.blas, CUBLAS_OP_N, CUBLAS_OP_T, C, OC, N, &one, inp, C,
                                    dout, OC, &one, dw, C),
                        "matmul_backward (weight gradient)");
    if (db && OC > 0) {
        column_sums_kernel<false><<<(OC + 31) / 32, dim3(32, 32), 0, me_cu.stream>>>(
            nullptr, db, dout, nullptr, nullptr, nullptr, N, OC);
        ME_CU_LAUNCHED("matmul_backward (bias gradient)");
    }
}

/* -------------------------------------------------------------------- gelu */

#define GELU_K 0.7978845608028654f /* sqrt(2/pi) */

__global__ void gelu_forward_kernel(float *out, float *dact, const float *inp, size_t n, int tanh_form) {
    ME_CU_FOR(i, n) {
        float x = inp[i];
        if (tanh_form) {
            float t = tanhf(GELU_K * (x + 0.044715f * x * x * x));
            if (dact) {
                float dt = (1.0f - t * t) * GELU_K * (1.0f + 3.0f * 0.044715f * x * x);
                dact[i] = 0.5f * (1.0f + t) + 0.5f * x * dt;
            }
            if (out) out[i] = 0.5f * x * (1.0f + t);
        } else {
            float e = erff(x * 0.70710678118654752440f);
            if (dact) dact[i] = 0.5f * (1.0f + e) + x * (0.3989422804014327f * expf(-0.5f * x * x));
            if (out) out[i] = x * 0.5f * (1.0f + e);
        }
    }
}

__global__ void gelu_backward_kernel(float *dinp, const float *dact, const float *dout, size_t n) {
    ME_CU_FOR(i, n) dinp[i] = dout[i] * dact[i];
}

void me_cu_gelu_forward(float *out, float *dact, const float *inp, size_t n, MeActivation act) {
    if (!n) return;
    gelu_forward_kernel<<<me_cu_grid(n, BLOCK), BLOCK, 0, me_cu.stream>>>(
        out, dact, inp, n, act == ME_ACT_GELU_TANH);
    ME_CU_LAUNCHED("gelu_forward");
}

void me_cu_gelu_backward(float *dinp, const float *dact, const float *dout, size_t n) {
    if (!n) return;
    gelu_backward_kernel<<<me_cu_grid(n, BLOCK), BLOCK, 0, me_cu.stream>>>(dinp, dact, dout, n);
    ME_CU_LAUNCHED("gelu_backward");
}

/* --------------------------------------------------------------------- add */

__global__ void add_kernel(float *out, const float *a, const float *b, size_t n) {
    ME_CU_FOR(i, n) out[i] = a[i] + b[i];
}

__global__ void add_backward_kernel(float *da, float *db, const float *dout, size_t n,
                                    int accumulate) {
    ME_CU_FOR(i, n) {
        float g = dout[i];
        if (da) da[i] = accumulate ? da[i] + g : g;
        if (db) db[i] = accumulate ? db[i] + g : g;
    }
}

void me_cu_add_forward(float *out, const float *a, const float *b, size_t n) {
    if (!n) return;
    add_kernel<<<me_cu_grid(n, BLOCK), BLOCK, 0, me_cu.stream>>>(out, a, b, n);
    ME_CU_LAUNCHED("add_forward");
}

void me_cu_add_backward(float *da, float *db, const float *dout, size_t n, int accumulate) {
    if (!n || (!da && !db)) return;
    add_backward_kernel<<<me_cu_grid(n, BLOCK), BLOCK, 0, me_cu.stream>>>(da, db, dout, n,
                                                                          accumulate);
    ME_CU_LAUNCHED("add_backward");
}

/* ----------------------------------------------------------------- dropout */

__global__ void dropout_kernel(float *out, const float *inp, size_t n, float p, float scale,
                               uint64_t seed, uint64_t site) {
    ME_CU_FOR(i, n) out[i] = me_uniform(seed, site, i) >= p ? inp[i] * scale : 0.0f;
}

/* Backward regenerates forward's mask from (seed, site): the same map. */
static void dropout_apply(float *out, const float *inp, size_t n, float p, uint64_t seed,
                          uint64_t site, const char *what) {
    if (!n) return;
    if (p <= 0.0f) {
        if (out != inp)
            me_cu_check(cudaMemcpyAsync(out, inp, n * sizeof(float), cudaMemcpyDeviceToDevice,
                                        me_cu.stream),
                        what);
        return;
    }
    if (p >= 1.0f) {
        me_cu_check(cudaMemsetAsync(out, 0, n * sizeof(float), me_cu.stream), what);
        return;
    }
    dropout_kernel<<<me_cu_grid(n, BLOCK), BLOCK, 0, me_cu.stream>>>(out, inp, n, p,
                                                                     1.0f / (1.0f - p), seed, site);
    ME_CU_LAUNCHED(what);
}

void me_cu_dropout_forward(float *out, const float *inp, size_t n, float p, uint64_t seed,
                           uint64_t site) {
    dropout_apply(out, inp, n, p, seed, site, "dropout_forward");
}

void me_cu_dropout_backward(float *dinp, const float *dout, size_t n, float p, uint64_t seed,
                            uint64_t site) {
    dropout_apply(dinp, dout, n, p, seed, site, "dropout_backward");
}
