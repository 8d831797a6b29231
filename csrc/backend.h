/* The backend interface: every tensor op the model code calls, as a
 * forward/backward pair, plus memory management. The CPU backend
 * (csrc/cpu/) implements it with OpenBLAS + OpenMP; a CUDA backend plugs in
 * behind the same table without touching model code.
 *
 * Conventions
 * - All tensors are contiguous row-major float32 on the backend's device
 *   unless a leading dimension is given. Shapes: N = rows (tokens), C = input
 *   features, OC = output features, B = batch, T = sequence length,
 *   NH = heads, HS = head size.
 * - Linear weights follow PyTorch: w is [OC, C]; out = inp @ w^T + b.
 * - Gradients of parameters always ACCUMULATE (+=). Gradients of inputs
 *   overwrite unless the op takes an `accumulate` flag that says otherwise.
 * - Dropout masks come from a counter-based RNG: element i of dropout site
 *   `site` under `seed` is kept iff me_uniform(seed, site, i) >= p. The same
 *   (seed, site) regenerates the same mask in backward, so masks are never
 *   stored.
 * - Ops do not return errors: the model validates shapes and ids before
 *   calling them. A device backend whose launches or library calls can still
 *   fail records the first failure and reports it through status(), which the
 *   model checks after each forward and backward (and the bindings after
 *   each copy); the CPU backend's status() is always ME_OK.
 */
#ifndef MULTIENC_BACKEND_H
#define MULTIENC_BACKEND_H

#include <stddef.h>
#include <stdint.h>

/* Functions the CUDA backend also calls from device code (me_uniform). */
#ifdef __CUDACC__
#define ME_HOSTDEV __host__ __device__
#else
#define ME_HOSTDEV
#endif

typedef enum { ME_ACT_GELU = 0, ME_ACT_GELU_TANH = 1 } MeActivation;

typedef struct MeBackend {
    const char *name;
    const char *precision; /* of the matrix products: "fp32", or "bf16" (float32 accumulation) */

    /* memory on the backend's device */
    void *(*alloc)(size_t bytes); /* zero-filled; NULL when out of memory */
    void (*release)(void *ptr);
    void (*zero)(void *ptr, size_t bytes);
    void (*to_device)(void *dst, const void *host_src, size_t bytes);
    void (*to_host)(void *host_dst, const void *src, size_t bytes);

    /* out[n] (+)= table[ids[n]]  (accumulate selects +=) */
    void (*embedding_forward)(float *out, const int32_t *ids, const float *table, int N, int C,
                              int accumulate);
    /* dtable[ids[n]] += dout[n], skipping rows whose id == padding_idx (-1: none) */
    void (*embedding_backward)(float *dtable, const float *dout, const int32_t *ids, int N, int C,
                               int padding_idx);

    /* out = (inp - mean) * rstd * w + b per row; mean/rstd [N] saved for backward */
    void (*layernorm_forward)(float *out, float *mean, float *rstd, const float *inp,
                              const float *w, const float *b, int N, int C, float eps);
    /* dinp (+)= ..., dw += ..., db += ... */
    void (*layernorm_backward)(float *dinp, float *dw, float *db, const float *dout,
                               const float *inp, const float *mean, const float *rstd,
                               const float *w, int N, int C, int accumulate);

    /* out[N,OC] = inp[N,C] @ w[OC,C]^T + b[OC] (b may be NULL) */
    void (*matmul_forward)(float *out, const float *inp, const float *w, const float *b, int N,
                           int C, int OC);
    /* dinp (+)= dout @ w; dw += dout^T @ inp; db += colsum(dout). dinp, dw or db may be NULL. */
    void (*matmul_backward)(float *dinp, float *dw, float *db, const float *dout,
                            const float *inp, const float *w, int N, int C, int OC,
                            int accumulate);

    /* out = act(inp) and dact = act'(inp) in one pass, each NULL when not wanted and either may
     * be inp (a training forward keeps the derivative for backward instead of the input) */
    void (*gelu_forward)(float *out, float *dact, const float *inp, size_t n, MeActivation act);
    /* dinp = dact * dout, dact from gelu_forward (dinp may be either) */
    void (*gelu_backward)(float *dinp, const float *dact, const float *dout, size_t n);

    /* out = a + b */
    void (*add_forward)(float *out, const float *a, const float *b, size_t n);
    /* da (+)= dout; db (+)= dout */
    void (*add_backward)(float *da, float *db, const float *dout, size_t n, int accumulate);

    /* out = x * keep / (1 - p) with keep = me_uniform(seed, site, i) >= p; in place allowed */
    void (*dropout_forward)(float *out, const float *inp, size_t n, float p, uint64_t seed,
                            uint64_t site);
    void (*dropout_backward)(float *dinp, const float *dout, size_t n, float p, uint64_t seed,
                             uint64_t site);

    /* Multi-head self-attention on a fused qkv [B*T, 3*NH*HS] (q | k | v blocks per row).
     * mask [B,T] (1 = real token, 0 = padding; keys only). ctx [B*T, NH*HS].
     * probs [B,NH,T,T] receives the softmax (before dropout) for backward.
     * Attention dropout p uses sites site + b*NH + h. scratch: attention_scratch_floats(). */
    void (*attention_forward)(float *ctx, float *probs, const float *qkv, const int32_t *mask,
                              int B, int T, int NH, int HS, float p, uint64_t seed, uint64_t site,
                              float *scratch);
    /* dqkv = d(ctx)/d(qkv) applied to dctx (overwrites dqkv) */
    void (*attention_backward)(float *dqkv, const float *dctx, const float *qkv,
                               const float *probs, const int32_t *mask, int B, int T, int NH,
                               int HS, float p, uint64_t seed, uint64_t site, float *scratch);
    size_t (*attention_scratch_floats)(int B, int T, int NH, int HS);

    /* attention_bias_forward for some query rows only (a layer whose output is read at a few
     * positions): sentence b's queries are rows qstart[b] .. qstart[b+1]-1 of q (qstart [B+1]), row
     * m being position qpos[m] of its sentence (ascending); q [M, ldq] (each row's first NH*HS
     * floats); the keys and values of every position k, v [B*T, ldkv] (row b*T + t); ctx
     * [M, NH*HS]; probs [M*NH*T] holds each (b, h)'s [m_b, T] block at (qstart[b]*NH + h*m_b)*T.
     * bias, bias_per_batch, scale and query_mask as attention_bias_forward's, the bias read at the
     * queries' positions; dropout as there at those positions. Optional (NULL: the model computes
     * every row). */
    void (*attention_rows_forward)(float *ctx, float *probs, const float *q, int ldq, const float *k,
                                   const float *v, int ldkv, const int32_t *mask, const float *bias,
                                   int bias_per_batch, float scale, int query_mask, const int32_t *qstart,
                                   const int32_t *qpos, int B, int T, int NH, int HS, float p, uint64_t seed,
                                   uint64_t site, float *scratch);
    /* dq (as q: [M, ldq]), dk and dv of every position ([B*T, ldkv]) overwritten, their first NH*HS
     * floats of each row and nothing else; dscores [B,NH,T,T] (NULL: not wanted; overwritten) as
     * attention_bias_backward's at the queries' positions and 0 in every other row */
    void (*attention_rows_backward)(float *dq, float *dk, float *dv, float *dscores, const float *dctx,
                                    const float *q, int ldq, const float *k, const float *v, int ldkv,
                                    const float *probs, const int32_t *mask, float scale, int query_mask,
                                    const int32_t *qstart, const int32_t *qpos, int B, int T, int NH, int HS,
                                    float p, uint64_t seed, uint64_t site, float *scratch);
    /* dropout of rows rows [M] of a [*, C] tensor held as [M, C]: element (m, c) keeps iff element
     * rows[m]*C + c of the whole tensor would (dropout_forward's mask); in place allowed.
     * Optional, with attention_rows_*. */
    void (*dropout_rows_forward)(float *out, const float *inp, const int32_t *rows, int M, int C, float p,
                                 uint64_t seed, uint64_t site);
    void (*dropout_rows_backward)(float *dinp, const float *dout, const int32_t *rows, int M, int C,
                                  float p, uint64_t seed, uint64_t site);
    /* ---- rotary positions, gated linear units, windowed attention (ModernBERT) ---- */

    /* Rotary position embedding in place on the q and k blocks of a fused qkv [B*T, 3*NH*HS] (v is
     * untouched); a row's position is its index t in its sequence. Per head, for i < HS/2 with
     * c = cos_t[t, i], s = sin_t[t, i] (tables [T, HS/2]): (x_i, x_{i+HS/2}) <- (x_i c - x_{i+HS/2} s,
     * x_{i+HS/2} c + x_i s), HF's q * cos + rotate_half(q) * sin. */
    void (*rope_forward)(float *qkv, const float *cos_t, const float *sin_t, int B, int T, int NH, int HS);
    /* The inverse (transposed) rotation in place on dqkv's q and k blocks: the gradient with
     * respect to q and k before the rotation. */
    void (*rope_backward)(float *dqkv, const float *cos_t, const float *sin_t, int B, int T, int NH, int HS);

    /* Gated linear unit over inp [N, 2C] = (a | g): out[n, i] = act(a[n, i]) * g[n, i], out [N, C]. */
    void (*glu_forward)(float *out, const float *inp, int N, int C, MeActivation act);
    /* dinp [N, 2C] = (act'(a) g dout | act(a) dout) (overwrites); out [N, C], unless NULL, receives
     * the forward's act(a) * g on the way (a backward that needs it saves a second pass). */
    void (*glu_backward)(float *dinp, float *out, const float *inp, const float *dout, int N, int C,
                         MeActivation act);

    /* Self-attention as attention_forward, keys also limited to |query - key| <= window (window < 0:
     * no limit), and the probabilities are not stored: stats [B, NH, T, 2] receives each row's
     * softmax maximum and 1 / sum, from which backward recomputes them. A row with no allowed key
     * (padding and window together) is uniform over all T keys, as HF's eager attention with its
     * additive finfo.min masks. Dropout as attention_forward (site + b*NH + h, index
     * query * T + key). scratch: window_attention_scratch_floats(). */
    void (*window_attention_forward)(float *ctx, float *stats, const float *qkv, const int32_t *mask, int B,
                                     int T, int NH, int HS, int window, float p, uint64_t seed, uint64_t site,
                                     float *scratch);
    /* dqkv = d(ctx)/d(qkv) applied to dctx (overwrites dqkv) */
    void (*window_attention_backward)(float *dqkv, const float *dctx, const float *qkv, const float *stats,
                                      const int32_t *mask, int B, int T, int NH, int HS, int window, float p,
                                      uint64_t seed, uint64_t site, float *scratch);
    size_t (*window_attention_scratch_floats)(int B, int T, int NH, int HS, int window);
    /* Attention with an additive score bias (MPNet's relative position bias, DeBERTa's
     * disentangled terms): scores = scale * q.k + bias, then as attention_forward.
     * bias [NH,T,T] shared by the batch (bias_per_batch 0) or [B,NH,T,T] (1); NULL: none.
     * query_mask 1: the row of a padded query (mask 0) is filled, not computed, and becomes
     * uniform over all keys (HF's masked_fill of a query x key mask). Scratch as attention's.
     * Optional (NULL in a backend without it). */
    void (*attention_bias_forward)(float *ctx, float *probs, const float *qkv, const int32_t *mask,
                                   const float *bias, int bias_per_batch, float scale, int query_mask,
                                   int B, int T, int NH, int HS, float p, uint64_t seed,
                                   uint64_t site, float *scratch);
    /* dqkv as attention_backward; dscores [B,NH,T,T] (NULL: not wanted) = the gradient of the
     * scores before softmax, i.e. of the bias (0 in filled rows). Both overwritten. */
    void (*attention_bias_backward)(float *dqkv, float *dscores, const float *dctx,
                                    const float *qkv, const float *probs, const int32_t *mask,
                                    float scale, int query_mask, int B, int T, int NH, int HS,
                                    float p, uint64_t seed, uint64_t site, float *scratch);
    /* Relative position bias from a bucket table: bias[h,i,j] = table[buckets[j - i + T - 1], h]
     * (table [NB, NH], buckets [2T - 1] of the relative positions -(T-1) .. T-1, bias [NH,T,T]). */
    void (*relbias_forward)(float *bias, const float *table, const int32_t *buckets, int T, int NH);
    /* dtable[buckets[j - i + T - 1], h] += sum_b dbias[b,h,i,j] (dbias [B,NH,T,T]) */
    void (*relbias_backward)(float *dtable, const float *dbias, const int32_t *buckets, int B, int T,
                             int NH);
    /* x[n, :] *= mask[n] (mask 0/1) in place, x [N, C]: DeBERTa's mask on the embedding output.
     * The backward is the same map on the gradient. */
    void (*mask_rows_forward)(float *x, const int32_t *mask, int N, int C);
    void (*mask_rows_backward)(float *dx, const int32_t *mask, int N, int C);
    /* DeBERTa-v2's ConvLayer: a 1-D convolution over time of rows [B*T, C], kernel K (odd),
     * zero padding (K-1)/2, G groups: out[b,t,o] = bias[o] + sum over the c of o's group and k of
     * w[o, c - g*C/G, k] * inp[b, t + k - (K-1)/2, c]; w [C, C/G, K] (PyTorch's Conv1d layout). */
    void (*conv1d_forward)(float *out, const float *inp, const float *w, const float *bias, int B,
                           int T, int C, int K, int G);
    /* dinp = ... (overwrites); dw, dbias += ... (deterministic: one output channel per thread) */
    void (*conv1d_backward)(float *dinp, float *dw, float *dbias, const float *dout,
                            const float *inp, const float *w, int B, int T, int C, int K, int G);
    /* DeBERTa's disentangled attention terms, the gathers fused with the products: with
     * r = idx[j - i + T - 1] (a row of the projected relative embeddings, idx [2T - 1] in [0, S2)),
     * bias[b,h,i,j] = scale * (q[b,i,h] . posk[r,h] + k[b,j,h] . posq[r,h]) (c2p + p2c; posk or
     * posq NULL drops its term). q, k: the q and k blocks of a fused qkv [B*T, 3*NH*HS];
     * posk, posq [S2, NH*HS]; bias [B,NH,T,T]. scratch: disentangled_scratch_floats(T, HS, S2).
     * Optional. */
    void (*disentangled_forward)(float *bias, const float *qkv, const float *posk, const float *posq,
                                 const int32_t *idx, float scale, int B, int T, int NH, int HS, int S2,
                                 float *scratch);
    /* Given dbias: the q and k blocks of dqkv += ... (its v block untouched); dposk, dposq
     * (+)= ... (each NULL when its term is absent). Deterministic (fixed summation order). */
    void (*disentangled_backward)(float *dqkv, float *dposk, float *dposq, const float *dbias,
                                  const float *qkv, const float *posk, const float *posq,
                                  const int32_t *idx, float scale, int B, int T, int NH, int HS, int S2,
                                  float *scratch);
    size_t (*disentangled_scratch_floats)(int T, int HS, int S2);

    /* ---- pooling, combination, heads, losses, optimizer (the training step) ---- */

    /* out[b*K + k] = sum_t w[b,k,t] * h[b*T + t]   (h [B*T, C], w [B,K,T], out [B*K, C]) */
    void (*pool_forward)(float *out, const float *h, const float *w, int B, int T, int K, int C);
    /* dh[b*T + t] (+)= sum_k w[b,k,t] * dout[b*K + k] */
    void (*pool_backward)(float *dh, const float *dout, const float *w, int B, int T, int K,
                          int C, int accumulate);

    /* Column block copy: dst[r, 0:C] (+)= src[r, 0:C] with leading dimensions. Concatenation's
     * forward copies each input into its block; its backward copies the blocks back out. */
    void (*concat_forward)(float *dst, int ldd, const float *src, int lds, int R, int C);
    void (*concat_backward)(float *dsrc, int lds, const float *ddst, int ldd, int R, int C,
                            int accumulate);

    /* Weighted sum over n stacked inputs x [n, R, C]: out[r] = sum_i alpha[i,r] x[i,r].
     * scores [n, R] != NULL: alpha [n, R] = softmax over i (DME); NULL: alpha = 1/n (mean). */
    void (*combine_forward)(float *out, float *alpha, const float *x, const float *scores, int n,
                            int R, int C);
    /* dx[i,r] = alpha[i,r] * dout[r] (overwrites); dscores[i,r] (when scores were used) =
     * alpha * (dalpha - sum_j alpha_j dalpha_j) with dalpha_i = dout[r] . x[i,r] */
    void (*combine_backward)(float *dx, float *dscores, const float *dout, const float *x,
                             const float *alpha, int n, int R, int C);

    /* Cross-entropy over rows with target >= 0 (negative = ignored): probs [R,C] = softmax,
     * returns the mean loss over counted rows through *loss (0 rows -> 0). */
    void (*cross_entropy_forward)(float *loss, float *probs, const float *logits,
                                  const int32_t *targets, int R, int C);
    /* dlogits = (probs - onehot) / counted rows (0 for ignored rows) */
    void (*cross_entropy_backward)(float *dlogits, const float *probs, const int32_t *targets,
                                   int R, int C);
    /* Mean squared error over R x C values. */
    void (*mse_forward)(float *loss, const float *pred, const float *target, int R, int C);
    void (*mse_backward)(float *dpred, const float *pred, const float *target, int R, int C);

    /* Linear-chain CRF over B sentences of K rows (pytorch-crf semantics). em [B*K, C]: emission
     * scores, row b*K + k; tags [B*K]: gold tags, read for k < lengths[b]; lengths [B] in 0..K.
     * trans [C, C]: trans[i*C + j] scores tag i followed by tag j; start / end [C]: scores of the
     * first / last tag. *loss = sum_b (log Z_b - score_b(tags)) / sum_b lengths[b] (0 words -> 0).
     * scratch: ME_CRF_SCRATCH(B, K, C) doubles; forward leaves there what backward reads. */
    void (*crf_forward)(float *loss, double *scratch, const float *em, const int32_t *tags,
                        const int32_t *lengths, const float *trans, const float *start,
                        const float *end, int B, int K, int C);
    /* dem = (marginals - onehot(tags)) / sum lengths (overwrites; 0 past each length);
     * dtrans, dstart, dend += expected minus gold counts / sum lengths (forward-backward). */
    void (*crf_backward)(float *dem, float *dtrans, float *dstart, float *dend, double *scratch,
                         const float *em, const int32_t *tags, const int32_t *lengths,
                         const float *trans, const float *start, const float *end, int B, int K,
                         int C);
    /* Viterbi: path [B*K] = the highest-scoring tag sequence of each sentence (ties: lowest tag
     * id), -1 past its length. scratch: ME_CRF_SCRATCH(B, K, C) doubles. */
    void (*crf_viterbi)(int32_t *path, double *scratch, const float *em, const int32_t *lengths,
                        const float *trans, const float *start, const float *end, int B, int K,
                        int C);

    /* sum of squares of x (double accumulation), for gradient-norm clipping */
    double (*sum_squares)(const float *x, size_t n);
    /* the same over rows `rows` [nrows] (distinct) of x [*, C]: a sparse gradient's norm */
    double (*sum_squares_rows)(const float *x, const int32_t *rows, int nrows, int C);
    /* x *= factor (a data-parallel shard's share of the batch's mean loss) */
    void (*scale)(float *x, size_t n, float factor);
    /* torch.optim.AdamW, one step on n parameters (see HF-SEMANTICS.md section 9) with the
     * gradient first scaled by grad_scale (clipping: torch's g *= coef in float32); the
     * gradient is set to zero afterwards, ready for the next step's accumulation. */
    void (*adamw_update)(float *p, float *g, float *m, float *v, size_t n, double lr, double beta1,
                         double beta2, double eps, double weight_decay, int step, float grad_scale);
    /* Wait for queued work, then return ME_OK or the first failure since the last
     * call (a common.h status; the message goes into err, ME_ERRLEN bytes) and clear it. */
    int (*status)(char *err);
} MeBackend;

const MeBackend *me_cpu_backend(void);
/* The CPU backend with bf16 linear layers (inputs rounded to bf16, float32 accumulation; every
 * other op, the attention products included, as in me_cpu_backend); NULL on CPUs without
 * AVX512-BF16. Parameters, gradients and optimizer state stay float32. */
const MeBackend *me_cpu_bf16_backend(void);

/* The CPU backend's vector code level, chosen at run time (cpu/vmath.c): 2 AVX-512 (F, VL, DQ)
 * + FMA, 1 AVX2 + FMA, 0 baseline; the CPU's best unless me_cpu_set_level lowered it. */
int me_cpu_level(void);
/* Use at most `level` (tests compare the variants); returns the level now in use. */
int me_cpu_set_level(int level);
/* 1 when this CPU executes AVX512-BF16 (with AVX-512 F/BW/VL) and me_cpu_set_level has not lowered
 * the level below 2, so that me_cpu_bf16_backend() is not NULL; 0 otherwise (cpu/gemm_bf16.c). */
int me_cpu_has_bf16(void);
/* Its two matrix products, the ones the fp32 and bf16 tables' linear layers use (cpu/ops.c; for tests
 * and benchmarks): row-major C[M,N] = alpha * op(A) op(B) + beta * C as cblas_sgemm, op(X) = X^T when
 * tX is 1. bf16 0: float32 (OpenBLAS sgemm on the OpenMP threads); 1: inputs rounded to bf16, float32
 * accumulation (cpu/gemm_bf16.h), only when me_cpu_has_bf16(). */
void me_cpu_gemm(int bf16, int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                 const float *B, int ldb, float beta, float *C, int ldc);
/* Its vectorised exp and erf (cpu/vmath.c; for tests against float64): out = f(inp), in place allowed. */
void me_vexp(float *out, const float *inp, size_t n);
void me_verf(float *out, const float *inp, size_t n);

/* Doubles of CRF scratch for B sentences of K rows and C tags: alpha | beta | log Z | NLL. */
#define ME_CRF_SCRATCH(B, K, C) (2 * (size_t)(B) * (size_t)(K) * (size_t)(C) + 2 * (size_t)(B))

/* The dropout RNG's golden gamma (the step between a site's elements) and its per-site key. */
#define ME_RNG_GAMMA 0x9E3779B97F4A7C15ULL
#define ME_RNG_SITE_MUL 0xD1B54A32D192ED03ULL
static inline ME_HOSTDEV uint64_t me_uniform_key(uint64_t seed, uint64_t site) {
    const uint64_t key = seed * ME_RNG_GAMMA + site * ME_RNG_SITE_MUL;
    return key ^ (key >> 31);
}

/* Counter-based uniform in [0, 1): a pure function of (seed, site, index). */
static inline ME_HOSTDEV float me_uniform(uint64_t seed, uint64_t site, uint64_t index) {
    /* SplitMix64 finaliser over a per-site key stepped by the golden gamma. */
    uint64_t z = me_uniform_key(seed, site) + (index + 1) * ME_RNG_GAMMA;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    return (float)(z >> 40) * (1.0f / 16777216.0f);
}

/* The site whose mask is site's mask moved by `delta` elements: for every index i,
 * me_uniform(seed, me_dropout_site_at(seed, site, delta), i) == me_uniform(seed, site, i + delta).
 * A shard of a batch that starts at element `delta` of the whole batch's tensor draws the
 * whole batch's mask for its elements through the existing ops (data parallelism). Exact
 * because the index only enters me_uniform as (index + 1) * gamma added to a per-site key,
 * and the key's mixing (seed * gamma + site * D, then z ^= z >> 31) is invertible for odd D. */
static inline uint64_t me_dropout_site_at(uint64_t seed, uint64_t site, uint64_t delta) {
    if (!delta) return site;
    const uint64_t G = ME_RNG_GAMMA, D = ME_RNG_SITE_MUL;
    const uint64_t key = me_uniform_key(seed, site) + delta * G; /* the shifted key */
    uint64_t x = key ^ (key >> 31);        /* invert z ^= z >> 31 (two rounds cover 64 bits) */
    x = key ^ (x >> 31);
    uint64_t inv = D;                      /* D^-1 mod 2^64 by Newton's iteration */
    for (int i = 0; i < 5; i++) inv *= 2 - D * inv;
    return (x - seed * G) * inv;
}

#endif
