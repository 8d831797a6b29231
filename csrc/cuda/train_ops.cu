/* CUDA backend, fp32: the ops of the training step after the encoders (pooling, concatenation,
 * combination, cross-entropy, MSE, the linear-chain CRF, sums of squares, scale, AdamW), each with
 * the semantics of backend.h and the CPU backend's arithmetic (csrc/cpu/train_ops.c): the sums the
 * CPU does in double are done in double here, the AdamW update is the same float32 expression.
 *
 * Determinism: no float atomics. Every reduction has a fixed partition and a fixed tree, so a
 * result repeats bit for bit; the CRF runs the CPU's loops, one sentence per thread, and sums the
 * transition gradients in the CPU's order (sentence, then position). */
#include <math.h>

#include "cuda/cuda_common.cuh"

#define BLOCK 256
#define REDUCE_THREADS 1024 /* the single-block reductions: 32 warps */

/* The sum of v over the block (every thread's value), in a fixed tree; every thread gets it.
 * blockDim.x a multiple of 32, at most 1024; `shared` holds 32 doubles. */
static __device__ double block_sum(double v, double *shared) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    const int warp = threadIdx.x / 32, lane = threadIdx.x & 31, nwarps = blockDim.x / 32;
    __syncthreads(); /* shared may still be read by a previous call */
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    v = lane < nwarps ? shared[lane] : 0.0;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* ------------------------------------------------------------------------ pooling */

/* out_b [K, C] = w_b [K, T] @ h_b [T, C] for every sentence b: one strided batched product
 * (column-major: out_b^T = h_b^T @ w_b^T). */
void me_cu_pool_forward(float *out, const float *h, const float *w, int B, int T, int K, int C) {
    if (B <= 0 || K <= 0 || C <= 0) return;
    const float one = 1.0f, zero = 0.0f;
    me_cublas_check(cublasSgemmStridedBatched(me_cu.blas, CUBLAS_OP_N, CUBLAS_OP_N, C, K, T, &one, h, C,
                                              (long long)T * C, w, T, (long long)K * T, &zero, out, C,
                                              (long long)K * C, B),
                    "pool_forward (cublasSgemmStridedBatched)");
}

/* dh_b [T, C] (+)= w_b^T [T, K] @ dout_b [K, C] (column-major: dh_b^T = dout_b^T @ w_b). */
void me_cu_pool_backward(float *dh, const float *dout, const float *w, int B, int T, int K, int C,
                         int accumulate) {
    if (B <= 0 || T <= 0 || C <= 0) return;
    const float one = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    me_cublas_check(cublasSgemmStridedBatched(me_cu.blas, CUBLAS_OP_N, CUBLAS_OP_T, C, T, K, &one, dout, C,
                                              (long long)K * C, w, T, (long long)K * T, &beta, dh, C,
                                              (long long)T * C, B),
                    "pool_backward (cublasSgemmStridedBatched)");
}

/* ------------------------------------------------------------------ concatenation */

__global__ void copy_block_kernel(float *dst, int ldd, const float *src, int lds, int R, int C,
                                  int accumulate) {
    ME_CU_FOR(i, (size_t)R * C) {
        const size_t r = i / C, c = i % C;
        const float v = src[r * lds + c];
        float *d = dst + r * ldd + c;
        *d = accumulate ? *d + v : v;
    }
}

static void copy_block(float *dst, int ldd, const float *src, int lds, int R, int C, int accumulate,
                       const char *what) {
    const size_t n = (size_t)R * C;
    if (R <= 0 || C <= 0) return;
    copy_block_kernel<<<me_cu_grid(n, BLOCK), BLOCK, 0, me_cu.stream>>>(dst, ldd, src, lds, R, C, accumulate);
    ME_CU_LAUNCHED(what);
}

void me_cu_concat_forward(float *dst, int ldd, const float *src, int lds, int R, int C) {
    copy_block(dst, ldd, src, lds, R, C, 0, "concat_forward");
}

void me_cu_concat_backward(float *dsrc, int lds, const float *ddst, int ldd, int R, int C, int accumulate) {
    copy_block(dsrc, lds, ddst, ldd, R, C, accumulate, "concat_backward");
}

/* ------------------------------------------------------------------- combination */

/* One block per row r: thread 0 writes the row's n weights into alpha, which the block's threads read
 * back after the barrier (it orders their global memory accesses too). */
__global__ void combine_forward_kernel(float *out, float *alpha, const float *x, const float *scores, int n,
                                       int R, int C) {
    const int r = blockIdx.x;
    if (threadIdx.x == 0) {
        if (scores) { /* the CPU's softmax: max in float, exp and sum in double */
            float mx = scores[r];
            for (int i = 1; i < n; i++) mx = scores[(size_t)i * R + r] > mx ? scores[(size_t)i * R + r] : mx;
            double sum = 0.0;
            for (int i = 0; i < n; i++) sum += exp((double)scores[(size_t)i * R + r] - mx);
            for (int i = 0; i < n; i++)
                alpha[(size_t)i * R + r] = (float)(exp((double)scores[(size_t)i * R + r] - mx) / sum);
        } else {
            for (int i = 0; i < n; i++) alpha[(size_t)i * R + r] = 1.0f / (float)n;
        }
    }
    __syncthreads();
    for (int c = threadIdx.x; c < C; c += blockDim.x) {
        float o = 0.0f;
        for (int i = 0; i < n; i++) o += alpha[(size_t)i * R + r] * x[((size_t)i * R + r) * C + c];
        out[(size_t)r * C + c] = o;
    }
}

void me_cu_combine_forward(float *out, float *alpha, const float *x, const float *scores, int n, int R,
                           int C) {
    if (n <= 0 || R <= 0) return;
    combine_forward_kernel<<<R, BLOCK, 0, me_cu.stream>>>(out, alpha, x, scores, n, R, C);
    ME_CU_LAUNCHED("combine_forward");
}

/* One block per row r: dx = alpha * dout; dalpha_i = dout . x_i in double (block_sum). */
__global__ void combine_backward_kernel(float *dx, float *dscores, const float *dout, const float *x,
                                        const float *alpha, int n, int R, int C) {
    __shared__ double red[32];
    const int r = blockIdx.x;
    const float *g = dout + (size_t)r * C;
    double dot_sum = 0.0, dal_mine = 0.0; /* thread i < n keeps dalpha_i */
    for (int i = 0; i < n; i++) {
        const float a = alpha[(size_t)i * R + r], *xi = x + ((size_t)i * R + r) * C;
        float *di = dx + ((size_t)i * R + r) * C;
        double part = 0.0;
        for (int c = threadIdx.x; c < C; c += blockDim.x) {
            di[c] = a * g[c];
            part += (double)g[c] * xi[c];
        }
        const double dal = block_sum(part, red);
        if (threadIdx.x == i) dal_mine = dal;
        dot_sum += a * dal;
    }
    if (dscores && threadIdx.x < n)
        dscores[(size_t)threadIdx.x * R + r] =
            (float)(alpha[(size_t)threadIdx.x * R + r] * ((double)(float)dal_mine - dot_sum));
}

void me_cu_combine_backward(float *dx, float *dscores, const float *dout, const float *x, const float *alpha,
                            int n, int R, int C) {
    if (n <= 0 || R <= 0) return;
    /* a thread per LM for dscores: n <= 1024 (a model has at most 64) */
    const int threads = n > BLOCK ? (n + 31) / 32 * 32 : BLOCK;
    combine_backward_kernel<<<R, threads, 0, me_cu.stream>>>(dx, dscores, dout, x, alpha, n, R, C);
    ME_CU_LAUNCHED("combine_backward");
}

/* ------------------------------------------------------------------------ losses */

/* One block, a warp per row (rows r = warp, warp + 32, ...): probs and the row's loss in double;
 * the loss = the rows' sum over the counted ones, summed per warp in row order, then over the warps
 * in a fixed tree. */
__global__ void cross_entropy_forward_kernel(float *loss, float *probs, const float *logits,
                                             const int32_t *targets, int R, int C) {
    __shared__ double red[32];
    const int warp = threadIdx.x / 32, lane = threadIdx.x & 31;
    double total = 0.0, counted = 0.0;
    for (int r = warp; r < R; r += blockDim.x / 32) {
        const float *l = logits + (size_t)r * C;
        float *p = probs + (size_t)r * C;
        float mx = -INFINITY;
        for (int c = lane; c < C; c += 32) mx = fmaxf(mx, l[c]);
        mx = me_warp_max(mx);
        double s = 0.0;
        for (int c = lane; c < C; c += 32) s += exp((double)l[c] - mx);
        for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
        for (int c = lane; c < C; c += 32) p[c] = (float)(exp((double)l[c] - mx) / s);
        if (targets[r] >= 0) {
            total += log(s) + mx - l[targets[r]];
            counted += 1.0;
        }
    }
    if (lane != 0) total = counted = 0.0; /* every lane holds its warp's sums */
    total = block_sum(total, red);
    counted = block_sum(counted, red);
    if (threadIdx.x == 0) *loss = counted > 0.0 ? (float)(total / counted) : 0.0f;
}

void me_cu_cross_entropy_forward(float *loss, float *probs, const float *logits, const int32_t *targets, int R,
                                 int C) {
    cross_entropy_forward_kernel<<<1, REDUCE_THREADS, 0, me_cu.stream>>>(loss, probs, logits, targets, R, C);
    ME_CU_LAUNCHED("cross_entropy_forward");
}

/* One block: count the rows with a target, then dlogits = (probs - onehot) / counted. */
__global__ void cross_entropy_backward_kernel(float *dlogits, const float *probs, const int32_t *targets,
                                              int R, int C) {
    __shared__ double red[32];
    double mine = 0.0;
    for (int r = threadIdx.x; r < R; r += blockDim.x) mine += targets[r] >= 0;
    const double counted = block_sum(mine, red);
    const float inv = counted > 0.0 ? 1.0f / (float)counted : 0.0f;
    for (size_t i = threadIdx.x; i < (size_t)R * C; i += blockDim.x) {
        const int r = (int)(i / C), c = (int)(i % C);
        dlogits[i] = targets[r] < 0 ? 0.0f : (probs[i] - (c == targets[r] ? 1.0f : 0.0f)) * inv;
    }
}

void me_cu_cross_entropy_backward(float *dlogits, const float *probs, const int32_t *targets, int R, int C) {
    cross_entropy_backward_kernel<<<1, REDUCE_THREADS, 0, me_cu.stream>>>(dlogits, probs, targets, R, C);
    ME_CU_LAUNCHED("cross_entropy_backward");
}

__global__ void mse_forward_kernel(float *loss, const float *pred, const float *target, size_t n) {
    __shared__ double red[32];
    double s = 0.0;
    for (size_t i = threadIdx.x; i < n; i += blockDim.x) {
        const double d = (double)pred[i] - target[i];
        s += d * d;
    }
    s = block_sum(s, red);
    if (threadIdx.x == 0) *loss = n ? (float)(s / (double)n) : 0.0f;
}

void me_cu_mse_forward(float *loss, const float *pred, const float *target, int R, int C) {
    mse_forward_kernel<<<1, REDUCE_THREADS, 0, me_cu.stream>>>(loss, pred, target, (size_t)R * C);
    ME_CU_LAUNCHED("mse_forward");
}

__global__ void mse_backward_kernel(float *dpred, const float *pred, const float *target, size_t n, float k) {
    ME_CU_FOR(i, n) dpred[i] = k * (pred[i] - target[i]);
}

void me_cu_mse_backward(float *dpred, const float *pred, const float *target, int R, int C) {
    const size_t n = (size_t)R * C;
    if (!n) return;
    mse_backward_kernel<<<me_cu_grid(n, BLOCK), BLOCK, 0, me_cu.stream>>>(dpred, pred, target, n,
                                                                         2.0f / (float)n);
    ME_CU_LAUNCHED("mse_backward");
}

/* ------------------------------------------------------------------- linear-chain CRF
 * The CPU's algorithm and scratch layout (alpha [B*K*C] | beta [B*K*C] | logZ [B] | nll [B];
 * Viterbi: delta | back pointers), one sentence per thread; log-sum-exp in two passes instead of
 * through a temporary row. */

#define CRF_THREADS 64

/* result = log sum_{var < n} exp(x), as the CPU's lse: the maximum first, -inf stays -inf */
#define CRF_LSE(result, var, n, x)                                                                \
    do {                                                                                          \
        double mx_ = -INFINITY;                                                                   \
        for (int var = 0; var < (n); var++) mx_ = (x) > mx_ ? (x) : mx_;                          \
        if (isinf(mx_)) {                                                                         \
            (result) = mx_;                                                                       \
        } else {                                                                                  \
            double s_ = 0.0;                                                                      \
            for (int var = 0; var < (n); var++) s_ += exp((x)-mx_);                               \
            (result) = mx_ + log(s_);                                                             \
        }                                                                                         \
    } while (0)

static unsigned crf_blocks(int B) { return (unsigned)((B + CRF_THREADS - 1) / CRF_THREADS); }

/* the forward algorithm and the gold path's score of sentence b */
__global__ void crf_forward_kernel(double *scratch, const float *em, const int32_t *tags, const int32_t *lengths,
                                   const float *trans, const float *start, const float *end, int B, int K, int C) {
    const int b = blockIdx.x * blockDim.x + threadIdx.x;
    if (b >= B) return;
    double *logz = scratch + 2 * (size_t)B * K * C, *nll = logz + B;
    const int L = lengths[b];
    logz[b] = nll[b] = 0.0;
    if (L <= 0) return;
    double *a = scratch + (size_t)b * K * C;
    const float *e = em + (size_t)b * K * C;
    const int32_t *y = tags + (size_t)b * K;
    for (int j = 0; j < C; j++) a[j] = (double)start[j] + e[j];
    for (int k = 1; k < L; k++)
        for (int j = 0; j < C; j++) {
            double v;
            CRF_LSE(v, i, C, a[(size_t)(k - 1) * C + i] + trans[(size_t)i * C + j]);
            a[(size_t)k * C + j] = v + e[(size_t)k * C + j];
        }
    double z;
    CRF_LSE(z, j, C, a[(size_t)(L - 1) * C + j] + end[j]);
    logz[b] = z;
    double score = (double)start[y[0]] + e[y[0]] + end[y[L - 1]];
    for (int k = 1; k < L; k++) score += (double)trans[(size_t)y[k - 1] * C + y[k]] + e[(size_t)k * C + y[k]];
    nll[b] = z - score;
}

/* 1 / the number of words (0 for none), summed in sentence order */
static __device__ double crf_inv(const int32_t *lengths, int B) {
    long long n = 0;
    for (int b = 0; b < B; b++) n += lengths[b];
    return n ? 1.0 / (double)n : 0.0;
}

/* *loss = sum_b nll[b] / the number of words, both summed in sentence order (one thread) */
__global__ void crf_loss_kernel(float *loss, const double *scratch, const int32_t *lengths, int B, int K, int C) {
    const double *nll = scratch + 2 * (size_t)B * K * C + B;
    double total = 0.0;
    long long n = 0;
    for (int b = 0; b < B; b++) {
        total += nll[b];
        n += lengths[b];
    }
    *loss = n ? (float)(total / (double)n) : 0.0f;
}

void me_cu_crf_forward(float *loss, double *scratch, const float *em, const int32_t *tags, const int32_t *lengths,
                       const float *trans, const float *start, const float *end, int B, int K, int C) {
    if (B <= 0 || C <= 0) {
        me_cu_check(cudaMemsetAsync(loss, 0, sizeof(float), me_cu.stream), "crf_forward");
        return;
    }
    crf_forward_kernel<<<crf_blocks(B), CRF_THREADS, 0, me_cu.stream>>>(scratch, em, tags, lengths, trans, start,
                                                                        end, B, K, C);
    if (ME_CU_LAUNCHED("crf_forward")) return;
    crf_loss_kernel<<<1, 1, 0, me_cu.stream>>>(loss, scratch, lengths, B, K, C);
    ME_CU_LAUNCHED("crf_forward (loss)");
}

/* beta and the emission gradient of sentence b (the CPU's per-sentence loop) */
__global__ void crf_backward_em_kernel(float *dem, double *scratch, const float *em, const int32_t *tags,
                                       const int32_t *lengths, const float *trans, const float *end, int B, int K,
                                       int C) {
    const int b = blockIdx.x * blockDim.x + threadIdx.x;
    if (b >= B) return;
    const size_t BKC = (size_t)B * K * C;
    float *d = dem + (size_t)b * K * C;
    for (size_t i = 0; i < (size_t)K * C; i++) d[i] = 0.0f;
    const int L = lengths[b];
    if (L <= 0) return;
    const double inv = crf_inv(lengths, B), logz = scratch[2 * BKC + b];
    const double *a = scratch + (size_t)b * K * C;
    double *be = scratch + BKC + (size_t)b * K * C;
    const float *e = em + (size_t)b * K * C;
    const int32_t *y = tags + (size_t)b * K;
    for (int i = 0; i < C; i++) be[(size_t)(L - 1) * C + i] = end[i];
    for (int k = L - 2; k >= 0; k--)
        for (int i = 0; i < C; i++) {
            double v;
            CRF_LSE(v, j, C,
                    (double)trans[(size_t)i * C + j] + e[(size_t)(k + 1) * C + j] + be[(size_t)(k + 1) * C + j]);
            be[(size_t)k * C + i] = v;
        }
    for (int k = 0; k < L; k++)
        for (int j = 0; j < C; j++)
            d[(size_t)k * C + j] = (float)((exp(a[(size_t)k * C + j] + be[(size_t)k * C + j] - logz) -
                                            (y[k] == j ? 1.0 : 0.0)) * inv);
}

/* One thread per element of dtrans [C*C], then dstart [C], then dend [C]: expected minus gold
 * counts added in the CPU's order (sentence, then position). */
__global__ void crf_backward_params_kernel(float *dtrans, float *dstart, float *dend, const double *scratch,
                                           const float *em, const int32_t *tags, const int32_t *lengths,
                                           const float *trans, int B, int K, int C) {
    const int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= C * C + 2 * C) return;
    const size_t BKC = (size_t)B * K * C;
    const double inv = crf_inv(lengths, B);
    const double *alpha = scratch, *beta = scratch + BKC, *logz = scratch + 2 * BKC;
    const int i = t / C, j = t % C; /* dtrans[i, j] for t < C*C */
    float acc = t < C * C ? dtrans[t] : t < C * C + C ? dstart[t - C * C] : dend[t - C * C - C];
    for (int b = 0; b < B; b++) {
        const int L = lengths[b];
        if (L <= 0) continue;
        const double *a = alpha + (size_t)b * K * C, *be = beta + (size_t)b * K * C;
        const int32_t *y = tags + (size_t)b * K;
        if (t < C * C) {
            const float *e = em + (size_t)b * K * C;
            for (int k = 1; k < L; k++) {
                const double p = exp(a[(size_t)(k - 1) * C + i] + trans[t] + e[(size_t)k * C + j] +
                                     be[(size_t)k * C + j] - logz[b]);
                acc += (float)(p * inv);
                if (y[k - 1] == i && y[k] == j) acc -= (float)inv;
            }
        } else if (t < C * C + C) {
            const int s = t - C * C;
            acc += (float)((exp(a[s] + be[s] - logz[b]) - (y[0] == s)) * inv);
        } else {
            const int s = t - C * C - C;
            acc += (float)((exp(a[(size_t)(L - 1) * C + s] + be[(size_t)(L - 1) * C + s] - logz[b]) -
                            (y[L - 1] == s)) * inv);
        }
    }
    if (t < C * C) dtrans[t] = acc;
    else if (t < C * C + C) dstart[t - C * C] = acc;
    else dend[t - C * C - C] = acc;
}

void me_cu_crf_backward(float *dem, float *dtrans, float *dstart, float *dend, double *scratch, const float *em,
                        const int32_t *tags, const int32_t *lengths, const float *trans, const float *start,
                        const float *end, int B, int K, int C) {
    (void)start;
    if (B <= 0 || C <= 0) return;
    crf_backward_em_kernel<<<crf_blocks(B), CRF_THREADS, 0, me_cu.stream>>>(dem, scratch, em, tags, lengths, trans,
                                                                            end, B, K, C);
    if (ME_CU_LAUNCHED("crf_backward (emissions)")) return;
    const int items = C * C + 2 * C;
    crf_backward_params_kernel<<<(items + CRF_THREADS - 1) / CRF_THREADS, CRF_THREADS, 0, me_cu.stream>>>(
        dtrans, dstart, dend, scratch, em, tags, lengths, trans, B, K, C);
    ME_CU_LAUNCHED("crf_backward (transitions)");
}

__global__ void crf_viterbi_kernel(int32_t *path, double *scratch, const float *em, const int32_t *lengths,
                                   const float *trans, const float *start, const float *end, int B, int K, int C) {
    const int b = blockIdx.x * blockDim.x + threadIdx.x;
    if (b >= B) return;
    const size_t BKC = (size_t)B * K * C;
    const int L = lengths[b];
    int32_t *p = path + (size_t)b * K;
    for (int k = 0; k < K; k++) p[k] = -1;
    if (L <= 0) return;
    double *dl = scratch + (size_t)b * K * C, *bk = scratch + BKC + (size_t)b * K * C;
    const float *e = em + (size_t)b * K * C;
    for (int j = 0; j < C; j++) dl[j] = (double)start[j] + e[j];
    for (int k = 1; k < L; k++)
        for (int j = 0; j < C; j++) {
            int best = 0;
            double bs = dl[(size_t)(k - 1) * C] + trans[j];
            for (int i = 1; i < C; i++) {
                const double s = dl[(size_t)(k - 1) * C + i] + trans[(size_t)i * C + j];
                if (s > bs) {
                    bs = s;
                    best = i;
                }
            }
            dl[(size_t)k * C + j] = bs + e[(size_t)k * C + j];
            bk[(size_t)k * C + j] = best;
        }
    int cur = 0;
    double bs = dl[(size_t)(L - 1) * C] + end[0];
    for (int j = 1; j < C; j++) {
        const double s = dl[(size_t)(L - 1) * C + j] + end[j];
        if (s > bs) {
            bs = s;
            cur = j;
        }
    }
    for (int k = L - 1; k >= 0; k--) {
        p[k] = cur;
        if (k > 0) cur = (int)bk[(size_t)k * C + cur];
    }
}

void me_cu_crf_viterbi(int32_t *path, double *scratch, const float *em, const int32_t *lengths, const float *trans,
                       const float *start, const float *end, int B, int K, int C) {
    if (B <= 0 || C <= 0) return;
    crf_viterbi_kernel<<<crf_blocks(B), CRF_THREADS, 0, me_cu.stream>>>(path, scratch, em, lengths, trans, start,
                                                                        end, B, K, C);
    ME_CU_LAUNCHED("crf_viterbi");
}

/* ------------------------------------------------------------- the gradient norm, scale */

#define SUMSQ_BLOCKS 512

/* Block k sums the squares of items [k*chunk, (k+1)*chunk) (item i: x[i], or with rows the element
 * i % C of row rows[i / C]) in double; part[k] receives it. */
__global__ void sum_squares_kernel(double *part, const float *x, const int32_t *rows, int C, size_t n,
                                   size_t chunk) {
    __shared__ double red[32];
    const size_t a = (size_t)blockIdx.x * chunk, b = a + chunk < n ? a + chunk : n;
    double s = 0.0;
    for (size_t i = a + threadIdx.x; i < b; i += blockDim.x) {
        const float v = rows ? x[(size_t)rows[i / C] * C + i % C] : x[i];
        s += (double)v * v;
    }
    s = block_sum(s, red);
    if (threadIdx.x == 0) part[blockIdx.x] = s;
}

__global__ void sum_parts_kernel(double *out, const double *part, int nparts) {
    __shared__ double red[32];
    double s = 0.0;
    for (int k = threadIdx.x; k < nparts; k += blockDim.x) s += part[k];
    s = block_sum(s, red);
    if (threadIdx.x == 0) *out = s;
}

/* The sum over n items in a fixed partition (at most SUMSQ_BLOCKS blocks), read back to the host
 * (the one synchronisation). Its buffer comes from the stream's memory pool, per call, so calls
 * from several threads do not share it. A failure is recorded and 0 returned. */
static double sum_squares_items(const float *x, const int32_t *rows, int C, size_t n, const char *what) {
    if (!n) return 0.0;
    me_cu_use_device();
    const size_t chunk = ((n + SUMSQ_BLOCKS - 1) / SUMSQ_BLOCKS + BLOCK - 1) / BLOCK * BLOCK;
    const int nparts = (int)((n + chunk - 1) / chunk);
    double *buf = nullptr, result = 0.0;
    if (me_cu_check(cudaMallocAsync((void **)&buf, sizeof(double) * (nparts + 1), me_cu.stream), what)) return 0.0;
    sum_squares_kernel<<<nparts, BLOCK, 0, me_cu.stream>>>(buf + 1, x, rows, C, n, chunk);
    if (!ME_CU_LAUNCHED(what)) {
        sum_parts_kernel<<<1, BLOCK, 0, me_cu.stream>>>(buf, buf + 1, nparts);
        if (!ME_CU_LAUNCHED(what) &&
            !me_cu_check(cudaMemcpyAsync(&result, buf, sizeof(double), cudaMemcpyDeviceToHost, me_cu.stream), what))
            me_cu_check(cudaStreamSynchronize(me_cu.stream), what);
    }
    me_cu_check(cudaFreeAsync(buf, me_cu.stream), what);
    return result;
}

double me_cu_sum_squares(const float *x, size_t n) { return sum_squares_items(x, nullptr, 1, n, "sum_squares"); }

double me_cu_sum_squares_rows(const float *x, const int32_t *rows, int nrows, int C) {
    if (nrows <= 0 || C <= 0) return 0.0;
    return sum_squares_items(x, rows, C, (size_t)nrows * C, "sum_squares_rows");
}

__global__ void scale_kernel(float *x, size_t n, float factor) {
    ME_CU_FOR(i, n) x[i] *= factor;
}

void me_cu_scale(float *x, size_t n, float factor) {
    if (!n) return;
    scale_kernel<<<me_cu_grid(n, BLOCK), BLOCK, 0, me_cu.stream>>>(x, n, factor);
    ME_CU_LAUNCHED("scale");
}

/* ---------------------------------------------------------------------------- AdamW */

/* The CPU's adamw_body: clip (g * gscale), torch.optim.AdamW's float32 update, g zeroed. */
__global__ void adamw_kernel(float *p, float *g, float *m, float *v, size_t n, float decay, float w1, float b2,
                             float w2, float bc2_sqrt, float epsf, float neg_step, float gscale) {
    ME_CU_FOR(i, n) {
        const float gi = g[i] * gscale;
        const float pi = p[i] * decay;
        const float mi = fmaf(w1, gi - m[i], m[i]);
        float vi = v[i] * b2;
        vi = vi + w2 * gi * gi;
        const float denom = sqrtf(vi) / bc2_sqrt + epsf;
        p[i] = pi + neg_step * mi / denom;
        m[i] = mi;
        v[i] = vi;
        g[i] = 0.0f;
    }
}

/* Scalars in double as Python computes them, applied in float32 (the CPU's cpu_adamw_update). */
void me_cu_adamw_update(float *p, float *g, float *m, float *v, size_t n, double lr, double beta1, double beta2,
                        double eps, double weight_decay, int step, float grad_scale) {
    if (!n) return;
    const double bc1 = 1.0 - pow(beta1, step), bc2 = 1.0 - pow(beta2, step);
    adamw_kernel<<<me_cu_grid(n, BLOCK), BLOCK, 0, me_cu.stream>>>(
        p, g, m, v, n, (float)(1.0 - lr * weight_decay), (float)(1.0 - beta1), (float)beta2, (float)(1.0 - beta2),
        (float)sqrt(bc2), (float)eps, -(float)(lr / bc1), grad_scale);
    ME_CU_LAUNCHED("adamw_update");
}
