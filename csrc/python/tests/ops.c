/* The op test entry points of multienc.engine._C_tests: every backend op on numpy arrays, so that each
 * forward/backward pair is tested on its own against a float64 reference and every backend against
 * the CPU one. Per op only what is op-specific: its arguments and results (the table at the end),
 * its shape and value checks with the results' shapes (*_check), and the backend call (*_run); the
 * rest is me_op_call (op_driver.c). Ops with device = 1 take a trailing device ("cpu" by default,
 * "cuda", "cuda:N"): their arrays are staged through that backend's memory. */
#include "python/tests/op_driver.h"
#include "common.h"
#include "model/modernbert.h"

#include <limits.h>
#include <omp.h>
#include <time.h>

#define BE(c) ((c)->be)

/* ---------------------------------------------------------------------------- encoder ops */

static int ids_in_range(OpCall *c, int ids, int V) {
    for (int n = 0; n < DIM(c, ids, 0); n++)
        if (HOST_I32(c, ids)[n] < 0 || HOST_I32(c, ids)[n] >= V) return op_fail("id out of range");
    return 0;
}

/* embedding_forward(ids [N], table [V, C]) -> out [N, C] */
static int embedding_forward_check(OpCall *c) {
    return ids_in_range(c, 0, DIM(c, 1, 0)) || op_result(c, 0, 2, DIM(c, 0, 0), DIM(c, 1, 1));
}
static void embedding_forward_run(OpCall *c) {
    BE(c)->embedding_forward(OUT(c, 0), I32(c, 0), F(c, 1), DIM(c, 0, 0), DIM(c, 1, 1), 0);
}

/* embedding_backward(dout [N, C], ids [N], V, padding_idx) -> dtable [V, C] */
static int embedding_backward_check(OpCall *c) {
    const int V = c->val[2].i;
    if (DIM(c, 1, 0) != DIM(c, 0, 0) || V <= 0) return op_fail("shape mismatch");
    return ids_in_range(c, 1, V) || op_result(c, 0, 2, V, DIM(c, 0, 1));
}
static void embedding_backward_run(OpCall *c) {
    BE(c)->embedding_backward(OUT(c, 0), F(c, 0), I32(c, 1), DIM(c, 0, 0), DIM(c, 0, 1), c->val[3].i);
}

/* layernorm_forward(inp [N, C], w [C], b [C], eps) -> (out [N, C], mean [N], rstd [N]) */
static int layernorm_forward_check(OpCall *c) {
    const int N = DIM(c, 0, 0), C = DIM(c, 0, 1);
    if (DIM(c, 1, 0) != C || DIM(c, 2, 0) != C) return op_fail("shape mismatch");
    return op_result(c, 0, 2, N, C) || op_result(c, 1, 1, N) || op_result(c, 2, 1, N);
}
static void layernorm_forward_run(OpCall *c) {
    BE(c)->layernorm_forward(OUT(c, 0), OUT(c, 1), OUT(c, 2), F(c, 0), F(c, 1), F(c, 2), DIM(c, 0, 0),
                             DIM(c, 0, 1), c->val[3].f);
}

/* layernorm_backward(dout [N, C], inp [N, C], mean [N], rstd [N], w [C]) -> (dinp, dw, db) */
static int layernorm_backward_check(OpCall *c) {
    const int N = DIM(c, 1, 0), C = DIM(c, 1, 1);
    if (DIM(c, 0, 0) != N || DIM(c, 0, 1) != C || DIM(c, 2, 0) != N || DIM(c, 3, 0) != N || DIM(c, 4, 0) != C)
        return op_fail("shape mismatch");
    return op_result(c, 0, 2, N, C) || op_result(c, 1, 1, C) || op_result(c, 2, 1, C);
}
static void layernorm_backward_run(OpCall *c) {
    BE(c)->layernorm_backward(OUT(c, 0), OUT(c, 1), OUT(c, 2), F(c, 0), F(c, 1), F(c, 2), F(c, 3), F(c, 4),
                              DIM(c, 1, 0), DIM(c, 1, 1), 0);
}

/* matmul_forward(inp [N, C], w [OC, C], b [OC] | None) -> out [N, OC] */
static int matmul_forward_check(OpCall *c) {
    if (DIM(c, 1, 1) != DIM(c, 0, 1) || (c->arr[2] && DIM(c, 2, 0) != DIM(c, 1, 0))) return op_fail("shape mismatch");
    return op_result(c, 0, 2, DIM(c, 0, 0), DIM(c, 1, 0));
}
static void matmul_forward_run(OpCall *c) {
    BE(c)->matmul_forward(OUT(c, 0), F(c, 0), F(c, 1), F(c, 2), DIM(c, 0, 0), DIM(c, 0, 1), DIM(c, 1, 0));
}

/* matmul_backward(dout [N, OC], inp [N, C], w [OC, C]) -> (dinp, dw, db) */
static int matmul_backward_check(OpCall *c) {
    const int N = DIM(c, 1, 0), C = DIM(c, 1, 1), OC = DIM(c, 2, 0);
    if (DIM(c, 0, 0) != N || DIM(c, 0, 1) != OC || DIM(c, 2, 1) != C) return op_fail("shape mismatch");
    return op_result(c, 0, 2, N, C) || op_result(c, 1, 2, OC, C) || op_result(c, 2, 1, OC);
}
static void matmul_backward_run(OpCall *c) {
    BE(c)->matmul_backward(OUT(c, 0), OUT(c, 1), OUT(c, 2), F(c, 0), F(c, 1), F(c, 2), DIM(c, 1, 0),
                           DIM(c, 1, 1), DIM(c, 2, 0), 0);
}

/* Arguments 0..n-1 are 1-d arrays of one length; result 0 (if any) has it too. */
static int same_lengths(OpCall *c, int n, int result) {
    for (int i = 1; i < n; i++)
        if (DIM(c, i, 0) != DIM(c, 0, 0)) return op_fail("shape mismatch");
    return result ? op_result(c, 0, 1, DIM(c, 0, 0)) : 0;
}

/* gelu_forward(x [n], act, out, dact) -> (y | None, dact | None): the results asked for;
 * gelu_backward(dact [n], dout [n]) -> dx */
static int gelu_forward_check(OpCall *c) {
    if (c->val[1].i != ME_ACT_GELU && c->val[1].i != ME_ACT_GELU_TANH) return op_fail("unknown activation");
    const int n = DIM(c, 0, 0);
    return (c->val[2].i ? op_result(c, 0, 1, n) : op_result(c, 0, -1)) ||
           (c->val[3].i ? op_result(c, 1, 1, n) : op_result(c, 1, -1));
}
static void gelu_forward_run(OpCall *c) {
    BE(c)->gelu_forward(OUT(c, 0), OUT(c, 1), F(c, 0), (size_t)DIM(c, 0, 0), (MeActivation)c->val[1].i);
}
static int gelu_backward_check(OpCall *c) { return same_lengths(c, 2, 1); }
static void gelu_backward_run(OpCall *c) {
    BE(c)->gelu_backward(OUT(c, 0), F(c, 0), F(c, 1), (size_t)DIM(c, 0, 0));
}

/* add_forward(a [n], b [n]) -> a + b */
static int add_forward_check(OpCall *c) { return same_lengths(c, 2, 1); }
static void add_forward_run(OpCall *c) { BE(c)->add_forward(OUT(c, 0), F(c, 0), F(c, 1), (size_t)DIM(c, 0, 0)); }

/* add_backward(dout [n], da0 [n], db0 [n], accumulate) -> (da, db), updated copies of da0, db0 */
static int add_backward_check(OpCall *c) { return same_lengths(c, 3, 0); }
static void add_backward_run(OpCall *c) {
    BE(c)->add_backward(F(c, 1), F(c, 2), F(c, 0), (size_t)DIM(c, 0, 0), c->val[3].i);
}

/* dropout_forward / dropout_backward(x [n], p, seed, site) -> y */
static int dropout_check(OpCall *c) {
    if (!(c->val[1].f >= 0.0f && c->val[1].f <= 1.0f)) return op_fail("p must be in [0, 1]");
    return op_result(c, 0, 1, DIM(c, 0, 0));
}
static void dropout_forward_run(OpCall *c) {
    BE(c)->dropout_forward(OUT(c, 0), F(c, 0), (size_t)DIM(c, 0, 0), c->val[1].f, c->val[2].u, c->val[3].u);
}
static void dropout_backward_run(OpCall *c) {
    BE(c)->dropout_backward(OUT(c, 0), F(c, 0), (size_t)DIM(c, 0, 0), c->val[1].f, c->val[2].u, c->val[3].u);
}

/* rng_uniform(seed, site, n) -> the dropout RNG's first n uniforms (host only) */
static int rng_uniform_check(OpCall *c) {
    if (c->val[2].n < 0) return op_fail("n must be >= 0");
    if (c->val[2].n > INT_MAX) return op_fail("n is too large");
    return op_result(c, 0, 1, (int)c->val[2].n);
}
static void rng_uniform_run(OpCall *c) {
    for (Py_ssize_t i = 0; i < c->val[2].n; i++) OUT(c, 0)[i] = me_uniform(c->val[0].u, c->val[1].u, (uint64_t)i);
}

/* Heads and head size of a fused qkv [B, T, 3 * NH * HS] argument and the NH argument. */
static int attention_shape(OpCall *c, int qkv, int nh, int *HS) {
    const int NH = c->val[nh].i;
    if (NH <= 0 || DIM(c, qkv, 2) % (3 * NH)) return op_fail("shape mismatch");
    *HS = DIM(c, qkv, 2) / (3 * NH);
    c->scratch_bytes = sizeof(float) * BE(c)->attention_scratch_floats(DIM(c, qkv, 0), DIM(c, qkv, 1), NH, *HS);
    return 0;
}

/* attention_forward(qkv [B, T, 3D], mask [B, T], NH, p, seed, site) -> (ctx [B, T, D], probs [B, NH, T, T]) */
static int attention_forward_check(OpCall *c) {
    const int B = DIM(c, 0, 0), T = DIM(c, 0, 1), NH = c->val[2].i;
    int HS = 0;
    if (attention_shape(c, 0, 2, &HS)) return -1;
    if (DIM(c, 1, 0) != B || DIM(c, 1, 1) != T) return op_fail("shape mismatch");
    return op_result(c, 0, 3, B, T, NH * HS) || op_result(c, 1, 4, B, NH, T, T);
}
static void attention_forward_run(OpCall *c) {
    const int NH = c->val[2].i;
    BE(c)->attention_forward(OUT(c, 0), OUT(c, 1), F(c, 0), I32(c, 1), DIM(c, 0, 0), DIM(c, 0, 1), NH,
                             DIM(c, 0, 2) / (3 * NH), c->val[3].f, c->val[4].u, c->val[5].u, c->scratch);
}

/* The arguments (dctx, qkv, probs, mask, NH, ...) of the attention backward ops: their shapes
 * agree; *HS = the head size. */
static int attention_backward_shapes(OpCall *c, int *HS) {
    const int B = DIM(c, 1, 0), T = DIM(c, 1, 1), NH = c->val[4].i;
    if (attention_shape(c, 1, 4, HS)) return -1;
    if (DIM(c, 0, 0) != B || DIM(c, 0, 1) != T || DIM(c, 0, 2) != NH * *HS || DIM(c, 2, 0) != B ||
        DIM(c, 2, 1) != NH || DIM(c, 2, 2) != T || DIM(c, 2, 3) != T || DIM(c, 3, 0) != B || DIM(c, 3, 1) != T)
        return op_fail("shape mismatch");
    return 0;
}

/* attention_backward(dctx, qkv, probs, mask, NH, p, seed, site) -> dqkv */
static int attention_backward_check(OpCall *c) {
    int HS = 0;
    return attention_backward_shapes(c, &HS) ||
           op_result(c, 0, 3, DIM(c, 1, 0), DIM(c, 1, 1), 3 * c->val[4].i * HS);
}
static void attention_backward_run(OpCall *c) {
    const int NH = c->val[4].i;
    BE(c)->attention_backward(OUT(c, 0), F(c, 0), F(c, 1), F(c, 2), I32(c, 3), DIM(c, 1, 0), DIM(c, 1, 1), NH,
                              DIM(c, 1, 2) / (3 * NH), c->val[5].f, c->val[6].u, c->val[7].u, c->scratch);
}

/* Query rows of attention_rows_* (qstart argument qs [B+1] from 0 to M, positions argument qp [M]
 * ascending within each sentence and below T). */
static int check_query_rows(OpCall *c, int qs, int qp, int B, int T, int M) {
    const int32_t *start = HOST_I32(c, qs), *pos = HOST_I32(c, qp);
    if (DIM(c, qs, 0) != B + 1 || DIM(c, qp, 0) != M || start[0] != 0 || start[B] != M)
        return op_fail("qstart must run from 0 to the number of query rows, qpos one per row");
    for (int b = 0; b < B; b++)
        for (int r = start[b]; r < start[b + 1]; r++)
            if (r < 0 || r >= M || pos[r] < 0 || pos[r] >= T || (r > start[b] && pos[r] <= pos[r - 1]))
                return op_fail("qpos: positions of a sentence must ascend within 0..T-1");
    return 0;
}

/* attention_rows_*'s q [M, D] with kv [B, T, 2D] (k | v) or [B, T, 3D] (a fused qkv: k and v at D and 2D of
 * its rows): the offset of k in kv's rows; -1 for neither. */
static int rows_kv_offset(OpCall *c, int q, int kv, int NH) {
    const int D = DIM(c, q, 1), W = DIM(c, kv, 2);
    if (NH <= 0 || D % NH || (W != 2 * D && W != 3 * D))
        return op_fail("q [M, D] with kv [B, T, 2D] (k | v) or [B, T, 3D] (a fused qkv)");
    return W == 3 * D ? D : 0;
}

/* attention_rows_forward(q [M, D], kv (rows_kv_offset), mask [B, T], bias [1 or B, NH, T, T] or None,
 * qstart [B+1], qpos [M], NH, scale, query_mask, p, seed, site) -> (ctx [M, D], probs [M*NH*T]) */
static int attention_rows_forward_check(OpCall *c) {
    const int M = DIM(c, 0, 0), D = DIM(c, 0, 1), B = DIM(c, 1, 0), T = DIM(c, 1, 1), NH = c->val[6].i;
    if (rows_kv_offset(c, 0, 1, NH) < 0) return -1;
    if (DIM(c, 2, 0) != B || DIM(c, 2, 1) != T) return op_fail("shape mismatch");
    if (c->arr[3] && ((DIM(c, 3, 0) != 1 && DIM(c, 3, 0) != B) || DIM(c, 3, 1) != NH || DIM(c, 3, 2) != T ||
                      DIM(c, 3, 3) != T))
        return op_fail("bias must have shape (1 or B, NH, T, T)");
    if (check_query_rows(c, 4, 5, B, T, M)) return -1;
    c->scratch_bytes = sizeof(float) * BE(c)->attention_scratch_floats(B, T, NH, D / NH);
    return op_result(c, 0, 2, M, D) || op_result(c, 1, 1, M * NH * T);
}
static void attention_rows_forward_run(OpCall *c) {
    const int B = DIM(c, 1, 0), NH = c->val[6].i, D = DIM(c, 0, 1), W = DIM(c, 1, 2), k0 = W == 3 * D ? D : 0;
    const int per_batch = c->arr[3] && B > 1 && DIM(c, 3, 0) == B;
    BE(c)->attention_rows_forward(OUT(c, 0), OUT(c, 1), F(c, 0), D, F(c, 1) + k0, F(c, 1) + k0 + D, W, I32(c, 2),
                                  F(c, 3), per_batch, c->val[7].f, c->val[8].i, I32(c, 4), I32(c, 5), B,
                                  DIM(c, 1, 1), NH, D / NH, c->val[9].f, c->val[10].u, c->val[11].u, c->scratch);
}

/* attention_rows_backward(dctx [M, D], q, kv, probs, mask, qstart, qpos, NH, scale, query_mask, p, seed, site)
 * -> (dq [M, D], dkv as kv (zero in a fused qkv's q block), dscores [B, NH, T, T]) */
static int attention_rows_backward_check(OpCall *c) {
    const int M = DIM(c, 1, 0), D = DIM(c, 1, 1), B = DIM(c, 2, 0), T = DIM(c, 2, 1), NH = c->val[7].i;
    if (rows_kv_offset(c, 1, 2, NH) < 0) return -1;
    if (DIM(c, 4, 0) != B || DIM(c, 4, 1) != T || DIM(c, 0, 0) != M || DIM(c, 0, 1) != D ||
        DIM(c, 3, 0) != M * NH * T)
        return op_fail("shape mismatch");
    if (check_query_rows(c, 5, 6, B, T, M)) return -1;
    c->scratch_bytes = sizeof(float) * BE(c)->attention_scratch_floats(B, T, NH, D / NH);
    return op_result(c, 0, 2, M, D) || op_result(c, 1, 3, B, T, DIM(c, 2, 2)) || op_result(c, 2, 4, B, NH, T, T);
}
static void attention_rows_backward_run(OpCall *c) {
    const int NH = c->val[7].i, D = DIM(c, 1, 1), W = DIM(c, 2, 2), k0 = W == 3 * D ? D : 0;
    BE(c)->attention_rows_backward(OUT(c, 0), OUT(c, 1) + k0, OUT(c, 1) + k0 + D, OUT(c, 2), F(c, 0), F(c, 1), D,
                                   F(c, 2) + k0, F(c, 2) + k0 + D, W, F(c, 3), I32(c, 4), c->val[8].f, c->val[9].i,
                                   I32(c, 5), I32(c, 6), DIM(c, 2, 0), DIM(c, 2, 1), NH, D / NH, c->val[10].f,
                                   c->val[11].u, c->val[12].u, c->scratch);
}

/* dropout_rows(x [M, C], rows [M], p, seed, site, backward) -> y: dropout of rows `rows` of a tensor
 * held compactly */
static int dropout_rows_check(OpCall *c) {
    if (DIM(c, 1, 0) != DIM(c, 0, 0)) return op_fail("one row index per row of x");
    if (!(c->val[2].f >= 0.0f && c->val[2].f <= 1.0f)) return op_fail("p must be in [0, 1]");
    return op_result(c, 0, 2, DIM(c, 0, 0), DIM(c, 0, 1));
}
static void dropout_rows_run(OpCall *c) {
    (c->val[5].i ? BE(c)->dropout_rows_backward : BE(c)->dropout_rows_forward)(
        OUT(c, 0), F(c, 0), I32(c, 1), DIM(c, 0, 0), DIM(c, 0, 1), c->val[2].f, c->val[3].u, c->val[4].u);
}

/* vexp / verf(x [n]) -> the CPU backend's vectorised exp / erf (host only) */
static int vmath_check(OpCall *c) { return op_result(c, 0, 1, DIM(c, 0, 0)); }
#define vexp_check vmath_check
#define verf_check vmath_check
static void vexp_run(OpCall *c) { me_vexp(OUT(c, 0), F(c, 0), (size_t)DIM(c, 0, 0)); }
static void verf_run(OpCall *c) { me_verf(OUT(c, 0), F(c, 0), (size_t)DIM(c, 0, 0)); }
/* ------------------------------------------------- rotary, gated unit, windowed attention */

/* rope_forward / rope_backward(qkv [B, T, 3 * NH * HS], cos [T, HS/2], sin [T, HS/2], NH) -> the
 * rotated copy of qkv */
static int rope_check(OpCall *c) {
    const int T = DIM(c, 0, 1), NH = c->val[3].i;
    if (NH <= 0 || DIM(c, 0, 2) % (6 * NH)) return op_fail("shape mismatch");
    const int half = DIM(c, 0, 2) / (6 * NH);
    if (DIM(c, 1, 0) != T || DIM(c, 1, 1) != half || DIM(c, 2, 0) != T || DIM(c, 2, 1) != half)
        return op_fail("shape mismatch");
    return 0;
}
static void rope_forward_run(OpCall *c) {
    const int NH = c->val[3].i;
    BE(c)->rope_forward(F(c, 0), F(c, 1), F(c, 2), DIM(c, 0, 0), DIM(c, 0, 1), NH, DIM(c, 0, 2) / (3 * NH));
}
static void rope_backward_run(OpCall *c) {
    const int NH = c->val[3].i;
    BE(c)->rope_backward(F(c, 0), F(c, 1), F(c, 2), DIM(c, 0, 0), DIM(c, 0, 1), NH, DIM(c, 0, 2) / (3 * NH));
}

/* rope_tables(T, HS, theta) -> (cos [T, HS/2], sin [T, HS/2]) as the ModernBERT encoder computes them */
static int rope_tables_check(OpCall *c) {
    const int T = c->val[0].i, HS = c->val[1].i;
    if (T <= 0 || HS <= 0 || HS % 2 || !(c->val[2].f > 0.0f)) return op_fail("bad arguments");
    return op_result(c, 0, 2, T, HS / 2) || op_result(c, 1, 2, T, HS / 2);
}
static void rope_tables_run(OpCall *c) { me_rope_tables(OUT(c, 0), OUT(c, 1), c->val[0].i, c->val[1].i, c->val[2].f); }

/* glu_forward(inp [N, 2C], act) -> out [N, C];
 * glu_backward(inp [N, 2C], dout [N, C], act) -> (dinp [N, 2C], out [N, C]) */
static int glu_check(OpCall *c, int act) {
    const int N = DIM(c, 0, 0), C = DIM(c, 0, 1) / 2;
    if (c->val[act].i != ME_ACT_GELU && c->val[act].i != ME_ACT_GELU_TANH) return op_fail("unknown activation");
    if (DIM(c, 0, 1) % 2) return op_fail("inp must have an even number of columns");
    if (act == 1) return op_result(c, 0, 2, N, C);
    if (DIM(c, 1, 0) != N || DIM(c, 1, 1) != C) return op_fail("shape mismatch");
    return op_result(c, 0, 2, N, 2 * C) || op_result(c, 1, 2, N, C);
}
static int glu_forward_check(OpCall *c) { return glu_check(c, 1); }
static int glu_backward_check(OpCall *c) { return glu_check(c, 2); }
static void glu_forward_run(OpCall *c) {
    BE(c)->glu_forward(OUT(c, 0), F(c, 0), DIM(c, 0, 0), DIM(c, 0, 1) / 2, (MeActivation)c->val[1].i);
}
static void glu_backward_run(OpCall *c) {
    BE(c)->glu_backward(OUT(c, 0), OUT(c, 1), F(c, 0), F(c, 1), DIM(c, 0, 0), DIM(c, 0, 1) / 2,
                        (MeActivation)c->val[2].i);
}

/* Heads, head size and scratch of a windowed attention call (qkv argument, NH and window arguments). */
static int window_shape(OpCall *c, int qkv, int nh, int win, int *HS) {
    if (attention_shape(c, qkv, nh, HS)) return -1;
    c->scratch_bytes = sizeof(float) * BE(c)->window_attention_scratch_floats(DIM(c, qkv, 0), DIM(c, qkv, 1),
                                                                             c->val[nh].i, *HS, c->val[win].i);
    return 0;
}

/* window_attention_forward(qkv [B, T, 3D], mask [B, T], NH, window, p, seed, site)
 * -> (ctx [B, T, D], stats [B, NH, T, 2]) */
static int window_attention_forward_check(OpCall *c) {
    const int B = DIM(c, 0, 0), T = DIM(c, 0, 1), NH = c->val[2].i;
    int HS = 0;
    if (window_shape(c, 0, 2, 3, &HS)) return -1;
    if (DIM(c, 1, 0) != B || DIM(c, 1, 1) != T) return op_fail("shape mismatch");
    return op_result(c, 0, 3, B, T, NH * HS) || op_result(c, 1, 4, B, NH, T, 2);
}
static void window_attention_forward_run(OpCall *c) {
    const int NH = c->val[2].i;
    BE(c)->window_attention_forward(OUT(c, 0), OUT(c, 1), F(c, 0), I32(c, 1), DIM(c, 0, 0), DIM(c, 0, 1), NH,
                                    DIM(c, 0, 2) / (3 * NH), c->val[3].i, c->val[4].f, c->val[5].u, c->val[6].u,
                                    c->scratch);
}

/* window_attention_backward(dctx, qkv, stats, mask, NH, window, p, seed, site) -> dqkv */
static int window_attention_backward_check(OpCall *c) {
    const int B = DIM(c, 1, 0), T = DIM(c, 1, 1), NH = c->val[4].i;
    int HS = 0;
    if (window_shape(c, 1, 4, 5, &HS)) return -1;
    if (DIM(c, 0, 0) != B || DIM(c, 0, 1) != T || DIM(c, 0, 2) != NH * HS || DIM(c, 2, 0) != B ||
        DIM(c, 2, 1) != NH || DIM(c, 2, 2) != T || DIM(c, 2, 3) != 2 || DIM(c, 3, 0) != B || DIM(c, 3, 1) != T)
        return op_fail("shape mismatch");
    return op_result(c, 0, 3, B, T, 3 * NH * HS);
}
static void window_attention_backward_run(OpCall *c) {
    const int NH = c->val[4].i;
    BE(c)->window_attention_backward(OUT(c, 0), F(c, 0), F(c, 1), F(c, 2), I32(c, 3), DIM(c, 1, 0), DIM(c, 1, 1),
                                     NH, DIM(c, 1, 2) / (3 * NH), c->val[5].i, c->val[6].f, c->val[7].u, c->val[8].u,
                                     c->scratch);
}

/* attention_bias_forward(qkv [B, T, 3D], mask [B, T], bias [1 or B, NH, T, T] | None, NH, scale,
 * query_mask, p, seed, site) -> (ctx [B, T, D], probs [B, NH, T, T]) */
static int attention_bias_forward_check(OpCall *c) {
    const int B = DIM(c, 0, 0), T = DIM(c, 0, 1), NH = c->val[3].i;
    int HS = 0;
    if (attention_shape(c, 0, 3, &HS)) return -1;
    if (DIM(c, 1, 0) != B || DIM(c, 1, 1) != T) return op_fail("shape mismatch");
    if (c->arr[2] && ((DIM(c, 2, 0) != 1 && DIM(c, 2, 0) != B) || DIM(c, 2, 1) != NH || DIM(c, 2, 2) != T ||
                      DIM(c, 2, 3) != T))
        return op_fail("bias must have shape (1 or B, NH, T, T)");
    return op_result(c, 0, 3, B, T, NH * HS) || op_result(c, 1, 4, B, NH, T, T);
}
static void attention_bias_forward_run(OpCall *c) {
    const int B = DIM(c, 0, 0), NH = c->val[3].i;
    const int per_batch = c->arr[2] && B > 1 && DIM(c, 2, 0) == B;
    BE(c)->attention_bias_forward(OUT(c, 0), OUT(c, 1), F(c, 0), I32(c, 1), F(c, 2), per_batch, c->val[4].f,
                                  c->val[5].i, B, DIM(c, 0, 1), NH, DIM(c, 0, 2) / (3 * NH), c->val[6].f,
                                  c->val[7].u, c->val[8].u, c->scratch);
}

/* attention_bias_backward(dctx, qkv, probs, mask, NH, scale, query_mask, p, seed, site)
 * -> (dqkv, dscores [B, NH, T, T]) */
static int attention_bias_backward_check(OpCall *c) {
    const int B = DIM(c, 1, 0), T = DIM(c, 1, 1), NH = c->val[4].i;
    int HS = 0;
    return attention_backward_shapes(c, &HS) || op_result(c, 0, 3, B, T, 3 * NH * HS) ||
           op_result(c, 1, 4, B, NH, T, T);
}
static void attention_bias_backward_run(OpCall *c) {
    const int NH = c->val[4].i;
    BE(c)->attention_bias_backward(OUT(c, 0), OUT(c, 1), F(c, 0), F(c, 1), F(c, 2), I32(c, 3), c->val[5].f,
                                   c->val[6].i, DIM(c, 1, 0), DIM(c, 1, 1), NH, DIM(c, 1, 2) / (3 * NH),
                                   c->val[7].f, c->val[8].u, c->val[9].u, c->scratch);
}

/* Buckets [2T - 1] (odd length) with every entry in [0, NB). */
static int relbias_buckets(OpCall *c, int buckets, int NB) {
    const int L = DIM(c, buckets, 0);
    if (L % 2 == 0) return op_fail("buckets must have odd length 2T - 1");
    for (int n = 0; n < L; n++)
        if (HOST_I32(c, buckets)[n] < 0 || HOST_I32(c, buckets)[n] >= NB) return op_fail("bucket out of range");
    return 0;
}

/* relbias_forward(table [NB, NH], buckets [2T - 1]) -> bias [NH, T, T] */
static int relbias_forward_check(OpCall *c) {
    const int T = (DIM(c, 1, 0) + 1) / 2;
    return relbias_buckets(c, 1, DIM(c, 0, 0)) || op_result(c, 0, 3, DIM(c, 0, 1), T, T);
}
static void relbias_forward_run(OpCall *c) {
    BE(c)->relbias_forward(OUT(c, 0), F(c, 0), I32(c, 1), (DIM(c, 1, 0) + 1) / 2, DIM(c, 0, 1));
}

/* relbias_backward(dbias [B, NH, T, T], buckets [2T - 1], NB) -> dtable [NB, NH] */
static int relbias_backward_check(OpCall *c) {
    const int T = (DIM(c, 1, 0) + 1) / 2, NB = c->val[2].i;
    if (NB <= 0 || DIM(c, 0, 2) != T || DIM(c, 0, 3) != T) return op_fail("shape mismatch");
    return relbias_buckets(c, 1, NB) || op_result(c, 0, 2, NB, DIM(c, 0, 1));
}
static void relbias_backward_run(OpCall *c) {
    BE(c)->relbias_backward(OUT(c, 0), F(c, 0), I32(c, 1), DIM(c, 0, 0), DIM(c, 0, 2), DIM(c, 0, 1));
}

/* qkv [B, T, 3 NH HS], posk / posq [S2, NH HS] | None, idx [2T - 1] in [0, S2): the shapes of the
 * disentangled ops; *S2 = the rows of the relative embeddings. */
static int disentangled_shape(OpCall *c, int qkv, int posk, int posq, int idx, int nh, int *S2) {
    int HS = 0;
    if (attention_shape(c, qkv, nh, &HS)) return -1;
    const int T = DIM(c, qkv, 1), D = c->val[nh].i * HS;
    *S2 = c->arr[posk] ? DIM(c, posk, 0) : c->arr[posq] ? DIM(c, posq, 0) : 0;
    for (int a = posk; a <= posq; a++)
        if (c->arr[a] && (DIM(c, a, 0) != *S2 || DIM(c, a, 1) != D)) return op_fail("posk/posq must be [S2, NH*HS]");
    if (DIM(c, idx, 0) != 2 * T - 1) return op_fail("idx must have length 2T - 1");
    if (relbias_buckets(c, idx, *S2 > 0 ? *S2 : 1)) return -1;
    c->scratch_bytes = sizeof(float) * BE(c)->disentangled_scratch_floats(T, HS, *S2);
    return 0;
}

/* disentangled_forward(qkv, posk | None, posq | None, idx, NH, scale) -> bias [B, NH, T, T] */
static int disentangled_forward_check(OpCall *c) {
    int S2;
    if (disentangled_shape(c, 0, 1, 2, 3, 4, &S2)) return -1;
    return op_result(c, 0, 4, DIM(c, 0, 0), c->val[4].i, DIM(c, 0, 1), DIM(c, 0, 1));
}
static void disentangled_forward_run(OpCall *c) {
    const int NH = c->val[4].i;
    const int S2 = c->arr[1] ? DIM(c, 1, 0) : DIM(c, 2, 0);
    BE(c)->disentangled_forward(OUT(c, 0), F(c, 0), F(c, 1), F(c, 2), I32(c, 3), c->val[5].f, DIM(c, 0, 0),
                                DIM(c, 0, 1), NH, DIM(c, 0, 2) / (3 * NH), S2, c->scratch);
}

/* disentangled_backward(dbias, qkv, posk | None, posq | None, idx, NH, scale)
 * -> (dqkv (v block 0), dposk | None, dposq | None) */
static int disentangled_backward_check(OpCall *c) {
    int S2;
    if (disentangled_shape(c, 1, 2, 3, 4, 5, &S2)) return -1;
    const int B = DIM(c, 1, 0), T = DIM(c, 1, 1), NH = c->val[5].i, D = DIM(c, 1, 2) / 3;
    if (DIM(c, 0, 0) != B || DIM(c, 0, 1) != NH || DIM(c, 0, 2) != T || DIM(c, 0, 3) != T)
        return op_fail("dbias must be [B, NH, T, T]");
    return op_result(c, 0, 3, B, T, 3 * D) || op_result(c, 1, c->arr[2] ? 2 : -1, S2, D) ||
           op_result(c, 2, c->arr[3] ? 2 : -1, S2, D);
}
static void disentangled_backward_run(OpCall *c) {
    const int NH = c->val[5].i;
    BE(c)->disentangled_backward(OUT(c, 0), OUT(c, 1), OUT(c, 2), F(c, 0), F(c, 1), F(c, 2), F(c, 3), I32(c, 4),
                                 c->val[6].f, DIM(c, 1, 0), DIM(c, 1, 1), NH, DIM(c, 1, 2) / (3 * NH),
                                 c->arr[2] ? DIM(c, 2, 0) : DIM(c, 3, 0), c->scratch);
}

/* mask_rows_forward / _backward(x [N, C], mask [N]) -> x with the masked rows zeroed */
static int mask_rows_check(OpCall *c) {
    if (DIM(c, 1, 0) != DIM(c, 0, 0)) return op_fail("mask must have one entry per row");
    for (int n = 0; n < DIM(c, 1, 0); n++)
        if (HOST_I32(c, 1)[n] != 0 && HOST_I32(c, 1)[n] != 1) return op_fail("mask entries must be 0 or 1");
    return 0;
}
static void mask_rows_forward_run(OpCall *c) { BE(c)->mask_rows_forward(F(c, 0), I32(c, 1), DIM(c, 0, 0), DIM(c, 0, 1)); }
static void mask_rows_backward_run(OpCall *c) { BE(c)->mask_rows_backward(F(c, 0), I32(c, 1), DIM(c, 0, 0), DIM(c, 0, 1)); }

/* conv1d_forward(inp [B, T, C], w [C, C/G, K], bias [C] | None, G) -> out [B, T, C] */
static int conv1d_shape(OpCall *c, int inp, int w, int G) {
    const int C = DIM(c, inp, 2);
    if (G <= 0 || C % G || DIM(c, w, 0) != C || DIM(c, w, 1) != C / G || DIM(c, w, 2) % 2 == 0)
        return op_fail("w must be [C, C/G, K] with C divisible by G and K odd");
    return 0;
}
static int conv1d_forward_check(OpCall *c) {
    if (conv1d_shape(c, 0, 1, c->val[3].i)) return -1;
    if (c->arr[2] && DIM(c, 2, 0) != DIM(c, 0, 2)) return op_fail("bias must be [C]");
    return op_result(c, 0, 3, DIM(c, 0, 0), DIM(c, 0, 1), DIM(c, 0, 2));
}
static void conv1d_forward_run(OpCall *c) {
    BE(c)->conv1d_forward(OUT(c, 0), F(c, 0), F(c, 1), F(c, 2), DIM(c, 0, 0), DIM(c, 0, 1), DIM(c, 0, 2),
                          DIM(c, 1, 2), c->val[3].i);
}

/* conv1d_backward(dout [B, T, C], inp [B, T, C], w, G) -> (dinp, dw, dbias) */
static int conv1d_backward_check(OpCall *c) {
    if (conv1d_shape(c, 1, 2, c->val[3].i)) return -1;
    for (int d = 0; d < 3; d++)
        if (DIM(c, 0, d) != DIM(c, 1, d)) return op_fail("dout and inp must have the same shape");
    return op_result(c, 0, 3, DIM(c, 1, 0), DIM(c, 1, 1), DIM(c, 1, 2)) ||
           op_result(c, 1, 3, DIM(c, 2, 0), DIM(c, 2, 1), DIM(c, 2, 2)) || op_result(c, 2, 1, DIM(c, 1, 2));
}
static void conv1d_backward_run(OpCall *c) {
    BE(c)->conv1d_backward(OUT(c, 0), OUT(c, 1), OUT(c, 2), F(c, 0), F(c, 1), F(c, 2), DIM(c, 1, 0), DIM(c, 1, 1),
                           DIM(c, 1, 2), DIM(c, 2, 2), c->val[3].i);
}

/* ------------------------------------------------------------------------- training-step ops */

/* pool_forward(h [B, T, C], w [B, K, T]) -> out [B, K, C] */
static int pool_forward_check(OpCall *c) {
    if (DIM(c, 1, 0) != DIM(c, 0, 0) || DIM(c, 1, 2) != DIM(c, 0, 1)) return op_fail("shape mismatch");
    return op_result(c, 0, 3, DIM(c, 0, 0), DIM(c, 1, 1), DIM(c, 0, 2));
}
static void pool_forward_run(OpCall *c) {
    BE(c)->pool_forward(OUT(c, 0), F(c, 0), F(c, 1), DIM(c, 0, 0), DIM(c, 0, 1), DIM(c, 1, 1), DIM(c, 0, 2));
}

/* pool_backward(dout [B, K, C], w [B, K, T]) -> dh [B, T, C] */
static int pool_backward_check(OpCall *c) {
    if (DIM(c, 1, 0) != DIM(c, 0, 0) || DIM(c, 1, 1) != DIM(c, 0, 1)) return op_fail("shape mismatch");
    return op_result(c, 0, 3, DIM(c, 0, 0), DIM(c, 1, 2), DIM(c, 0, 2));
}
static void pool_backward_run(OpCall *c) {
    BE(c)->pool_backward(OUT(c, 0), F(c, 0), F(c, 1), DIM(c, 0, 0), DIM(c, 1, 2), DIM(c, 1, 1), DIM(c, 0, 2), 0);
}

/* concat_forward([parts [R, C_i]]) -> [R, sum C_i] */
static int concat_forward_check(OpCall *c) {
    int total = 0;
    for (int i = 0; i < c->nparts; i++) {
        if (PyArray_DIM(c->part[i], 0) != PyArray_DIM(c->part[0], 0)) return op_fail("row counts differ");
        total += (int)PyArray_DIM(c->part[i], 1);
    }
    return op_result(c, 0, 2, (int)PyArray_DIM(c->part[0], 0), total);
}
static void concat_forward_run(OpCall *c) {
    const int R = (int)PyArray_DIM(c->part[0], 0), total = (int)c->res_dims[0][1];
    for (int i = 0, col = 0; i < c->nparts; col += (int)PyArray_DIM(c->part[i], 1), i++)
        BE(c)->concat_forward(OUT(c, 0) + col, total, c->pp[i], (int)PyArray_DIM(c->part[i], 1), R,
                              (int)PyArray_DIM(c->part[i], 1));
}

/* concat_backward(dout [R, total], col, width) -> [R, width] */
static int concat_backward_check(OpCall *c) {
    const int col = c->val[1].i, width = c->val[2].i;
    if (col < 0 || width < 0 || col + width > DIM(c, 0, 1)) return op_fail("block outside the input");
    return op_result(c, 0, 2, DIM(c, 0, 0), width);
}
static void concat_backward_run(OpCall *c) {
    const int width = c->val[2].i;
    BE(c)->concat_backward(OUT(c, 0), width, F(c, 0) + c->val[1].i, DIM(c, 0, 1), DIM(c, 0, 0), width, 0);
}

/* combine_forward(x [n, R, C], scores [n, R] | None) -> (out [R, C], alpha [n, R]) */
static int combine_forward_check(OpCall *c) {
    const int n = DIM(c, 0, 0), R = DIM(c, 0, 1);
    if (c->arr[1] && (DIM(c, 1, 0) != n || DIM(c, 1, 1) != R)) return op_fail("shape mismatch");
    return op_result(c, 0, 2, R, DIM(c, 0, 2)) || op_result(c, 1, 2, n, R);
}
static void combine_forward_run(OpCall *c) {
    BE(c)->combine_forward(OUT(c, 0), OUT(c, 1), F(c, 0), F(c, 1), DIM(c, 0, 0), DIM(c, 0, 1), DIM(c, 0, 2));
}

/* combine_backward(dout [R, C], x [n, R, C], alpha [n, R], with_scores) -> (dx, dscores | None) */
static int combine_backward_check(OpCall *c) {
    const int n = DIM(c, 1, 0), R = DIM(c, 1, 1), C = DIM(c, 1, 2);
    if (DIM(c, 0, 0) != R || DIM(c, 0, 1) != C || DIM(c, 2, 0) != n || DIM(c, 2, 1) != R)
        return op_fail("shape mismatch");
    return op_result(c, 0, 3, n, R, C) || (c->val[3].i ? op_result(c, 1, 2, n, R) : op_result(c, 1, -1));
}
static void combine_backward_run(OpCall *c) {
    BE(c)->combine_backward(OUT(c, 0), OUT(c, 1), F(c, 0), F(c, 1), F(c, 2), DIM(c, 1, 0), DIM(c, 1, 1),
                            DIM(c, 1, 2));
}

/* cross_entropy(logits [R, C], targets [R]) -> (loss, probs, dlogits) */
static int cross_entropy_check(OpCall *c) {
    const int R = DIM(c, 0, 0), C = DIM(c, 0, 1);
    if (DIM(c, 1, 0) != R) return op_fail("shape mismatch");
    for (int r = 0; r < R; r++)
        if (HOST_I32(c, 1)[r] >= C) return op_fail("target out of range");
    return op_result(c, 1, 2, R, C) || op_result(c, 2, 2, R, C);
}
static void cross_entropy_run(OpCall *c) {
    const int R = DIM(c, 0, 0), C = DIM(c, 0, 1);
    BE(c)->cross_entropy_forward(OUT(c, 0), OUT(c, 1), F(c, 0), I32(c, 1), R, C);
    BE(c)->cross_entropy_backward(OUT(c, 2), OUT(c, 1), I32(c, 1), R, C);
}

/* mse(pred [R, C], target [R, C]) -> (loss, dpred) */
static int mse_check(OpCall *c) {
    if (DIM(c, 1, 0) != DIM(c, 0, 0) || DIM(c, 1, 1) != DIM(c, 0, 1)) return op_fail("shape mismatch");
    return op_result(c, 1, 2, DIM(c, 0, 0), DIM(c, 0, 1));
}
static void mse_run(OpCall *c) {
    BE(c)->mse_forward(OUT(c, 0), F(c, 0), F(c, 1), DIM(c, 0, 0), DIM(c, 0, 1));
    BE(c)->mse_backward(OUT(c, 1), F(c, 0), F(c, 1), DIM(c, 0, 0), DIM(c, 0, 1));
}

/* CRF arguments (indices; tags < 0: none): emissions [B, K, C], tags [B, K] with ids in 0..C-1 inside
 * each length, lengths [B] in 0..K, trans [C, C], start [C], end [C]. Sets the CRF scratch. */
static int crf_check(OpCall *c, int em, int tags, int len, int tr, int st, int en) {
    const int B = DIM(c, em, 0), K = DIM(c, em, 1), C = DIM(c, em, 2);
    if (C < 1 || DIM(c, len, 0) != B || DIM(c, tr, 0) != C || DIM(c, tr, 1) != C || DIM(c, st, 0) != C ||
        DIM(c, en, 0) != C || (tags >= 0 && (DIM(c, tags, 0) != B || DIM(c, tags, 1) != K)))
        return op_fail("shape mismatch");
    for (int b = 0; b < B; b++) {
        const int L = HOST_I32(c, len)[b];
        if (L < 0 || L > K) {
            PyErr_Format(PyExc_ValueError, "lengths[%d] = %d is outside 0..%d", b, L, K);
            return -1;
        }
        for (int k = 0; tags >= 0 && k < L; k++) {
            const int t = HOST_I32(c, tags)[(size_t)b * K + k];
            if (t < 0 || t >= C) {
                PyErr_Format(PyExc_ValueError, "tags[%d, %d] = %d is outside 0..%d", b, k, t, C - 1);
                return -1;
            }
        }
    }
    c->scratch_bytes = sizeof(double) * (ME_CRF_SCRATCH(B, K, C) + 1);
    return 0;
}

/* crf(emissions, tags, lengths, trans, start, end) -> (loss, demissions, dtrans, dstart, dend) */
static int crf_loss_check(OpCall *c) {
    const int B = DIM(c, 0, 0), K = DIM(c, 0, 1), C = DIM(c, 0, 2);
    return crf_check(c, 0, 1, 2, 3, 4, 5) || op_result(c, 1, 3, B, K, C) || op_result(c, 2, 2, C, C) ||
           op_result(c, 3, 1, C) || op_result(c, 4, 1, C);
}
static void crf_loss_run(OpCall *c) {
    const int B = DIM(c, 0, 0), K = DIM(c, 0, 1), C = DIM(c, 0, 2);
    BE(c)->crf_forward(OUT(c, 0), c->scratch, F(c, 0), I32(c, 1), I32(c, 2), F(c, 3), F(c, 4), F(c, 5), B, K, C);
    BE(c)->crf_backward(OUT(c, 1), OUT(c, 2), OUT(c, 3), OUT(c, 4), c->scratch, F(c, 0), I32(c, 1), I32(c, 2),
                        F(c, 3), F(c, 4), F(c, 5), B, K, C);
}

/* crf_viterbi(emissions, lengths, trans, start, end) -> path int32 [B, K] */
static int crf_viterbi_check(OpCall *c) {
    return crf_check(c, 0, -1, 1, 2, 3, 4) || op_result(c, 0, 2, DIM(c, 0, 0), DIM(c, 0, 1));
}
static void crf_viterbi_run(OpCall *c) {
    BE(c)->crf_viterbi(OUT_I32(c, 0), c->scratch, F(c, 0), I32(c, 1), F(c, 2), F(c, 3), F(c, 4), DIM(c, 0, 0),
                       DIM(c, 0, 1), DIM(c, 0, 2));
}

/* sum_squares(x [n]) -> float;  scale(x [n], factor) -> x * factor */
static int no_check(OpCall *c) { return 0; }
static void sum_squares_run(OpCall *c) { c->ret = BE(c)->sum_squares(F(c, 0), (size_t)DIM(c, 0, 0)); }
static void scale_run(OpCall *c) { BE(c)->scale(F(c, 0), (size_t)DIM(c, 0, 0), c->val[1].f); }

/* sum_squares_rows(x [V, C], rows [n]) -> sum of squares of those rows (distinct, in range) */
static int sum_squares_rows_check(OpCall *c) { return ids_in_range(c, 1, DIM(c, 0, 0)); }
static void sum_squares_rows_run(OpCall *c) {
    c->ret = BE(c)->sum_squares_rows(F(c, 0), I32(c, 1), DIM(c, 1, 0), DIM(c, 0, 1));
}

/* adamw(p, g, m, v, lr, beta1, beta2, eps, wd, step, grad_scale) -> (p, m, v, g), updated copies (g zeroed) */
static int adamw_check(OpCall *c) {
    if (DIM(c, 1, 0) != DIM(c, 0, 0) || DIM(c, 2, 0) != DIM(c, 0, 0) || DIM(c, 3, 0) != DIM(c, 0, 0) ||
        c->val[9].i < 1)
        return op_fail("bad arguments");
    return 0;
}
static void adamw_run(OpCall *c) {
    BE(c)->adamw_update(F(c, 0), F(c, 1), F(c, 2), F(c, 3), (size_t)DIM(c, 0, 0), c->val[4].d, c->val[5].d,
                        c->val[6].d, c->val[7].d, c->val[8].d, c->val[9].i, c->val[10].f);
}

/* ------------------------------------------------------------------------- matrix products */

/* gemm_bf16 / gemm_fp32(A, B, C, ta, tb, M, N, K, alpha, beta, threads, repeat) -> (C', seconds): the
 * CPU backend's products on row-major arrays, lda / ldb / ldc their row lengths (wider than op(A)'s
 * etc. when the arrays are), C' a copy of C updated `repeat` times (with beta, as BLAS) by `threads`
 * OpenMP threads (0: as configured), seconds the time all repeats took (for the benchmark). */
static int gemm_check(OpCall *c) {
    const int ta = c->val[3].i, tb = c->val[4].i, M = c->val[5].i, N = c->val[6].i, K = c->val[7].i;
    if (M < 0 || N < 0 || K < 0 || c->val[10].i < 0 || c->val[11].i < 1) return op_fail("bad arguments");
    if (DIM(c, 0, 1) < 1 || DIM(c, 1, 1) < 1 || DIM(c, 2, 1) < 1) return op_fail("rows must not be empty");
    if (DIM(c, 0, 0) < (ta ? K : M) || DIM(c, 0, 1) < (ta ? M : K) || DIM(c, 1, 0) < (tb ? N : K) ||
        DIM(c, 1, 1) < (tb ? K : N) || DIM(c, 2, 0) < M || DIM(c, 2, 1) < N)
        return op_fail("an array is smaller than the product needs");
    return 0;
}
static int gemm_bf16_check(OpCall *c) {
    if (!me_cpu_has_bf16()) return op_fail("gemm_bf16: this CPU has no AVX512-BF16 (or cpu_level is capped)");
    return gemm_check(c);
}
static void gemm_run(OpCall *c, int bf16) {
    const int threads = omp_get_max_threads();
    if (c->val[10].i) omp_set_num_threads(c->val[10].i);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int r = 0; r < c->val[11].i; r++)
        me_cpu_gemm(bf16, c->val[3].i, c->val[4].i, c->val[5].i, c->val[6].i, c->val[7].i, c->val[8].f, F(c, 0),
                    DIM(c, 0, 1), F(c, 1), DIM(c, 1, 1), c->val[9].f, F(c, 2), DIM(c, 2, 1));
    clock_gettime(CLOCK_MONOTONIC, &t1);
    omp_set_num_threads(threads);
    c->ret = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
}
static void gemm_bf16_run(OpCall *c) { gemm_run(c, 1); }
static void gemm_fp32_run(OpCall *c) { gemm_run(c, 0); }

/* ---------------------------------------------------------------------------------- the table */

#define A(kind, name, ndim) {ARG_##kind, name, ndim}
#define S(kind, name) {ARG_##kind, name, 0}
#define OUTS(...) {__VA_ARGS__}
#define R_F32 {RES_F32, 0}
#define R_I32 {RES_I32, 0}
#define R_LOSS {RES_LOSS, 0}
#define R_RET {RES_RET, 0}
#define R_ARG(i) {RES_ARG, i}
#define OP(name, doc, device, args, res, uses) \
    {"ops_" #name, doc, device, args, res, uses, name##_check, name##_run, {0}}
#define ARGS(...) {__VA_ARGS__}
#define USING(...) {__VA_ARGS__}

static OpDesc OPS[] = {
    OP(embedding_forward, "-> out", 1, ARGS(A(I32, "ids", 1), A(F32, "table", 2)), OUTS(R_F32),
       USING(USES(embedding_forward))),
    OP(embedding_backward, "-> dtable", 1,
       ARGS(A(F32, "dout", 2), A(I32, "ids", 1), S(INT, "V"), S(INT, "padding_idx")), OUTS(R_F32),
       USING(USES(embedding_backward))),
    OP(layernorm_forward, "-> (out, mean, rstd)", 1,
       ARGS(A(F32, "inp", 2), A(F32, "w", 1), A(F32, "b", 1), S(FLOAT, "eps")), OUTS(R_F32, R_F32, R_F32),
       USING(USES(layernorm_forward))),
    OP(layernorm_backward, "-> (dinp, dw, db)", 1,
       ARGS(A(F32, "dout", 2), A(F32, "inp", 2), A(F32, "mean", 1), A(F32, "rstd", 1), A(F32, "w", 1)),
       OUTS(R_F32, R_F32, R_F32), USING(USES(layernorm_backward))),
    OP(matmul_forward, "-> out (b may be None)", 1, ARGS(A(F32, "inp", 2), A(F32, "w", 2), A(F32_OPT, "b", 1)),
       OUTS(R_F32), USING(USES(matmul_forward))),
    OP(matmul_backward, "-> (dinp, dw, db)", 1, ARGS(A(F32, "dout", 2), A(F32, "inp", 2), A(F32, "w", 2)),
       OUTS(R_F32, R_F32, R_F32), USING(USES(matmul_backward))),
    OP(gelu_forward, "-> (y | None, dact | None): act(inp) and act'(inp) where asked for", 1,
       ARGS(A(F32, "inp", 1), S(INT, "act"), S(BOOL, "out"), S(BOOL, "dact")), OUTS(R_F32, R_F32),
       USING(USES(gelu_forward))),
    OP(gelu_backward, "-> dx = dact * dout", 1, ARGS(A(F32, "dact", 1), A(F32, "dout", 1)), OUTS(R_F32),
       USING(USES(gelu_backward))),
    OP(add_forward, "-> a + b", 1, ARGS(A(F32, "a", 1), A(F32, "b", 1)), OUTS(R_F32), USING(USES(add_forward))),
    OP(add_backward, "-> (da, db): da0 and db0 with dout added (accumulate) or written", 1,
       ARGS(A(F32, "dout", 1), A(F32_INOUT, "da0", 1), A(F32_INOUT, "db0", 1), S(BOOL, "accumulate")),
       OUTS(R_ARG(1), R_ARG(2)), USING(USES(add_backward))),
    {"ops_dropout_forward", "-> y", 1,
     ARGS(A(F32, "inp", 1), S(FLOAT, "p"), S(U64, "seed"), S(U64, "site")), OUTS(R_F32),
     USING(USES(dropout_forward)), dropout_check, dropout_forward_run, {0}},
    {"ops_dropout_backward", "-> dx", 1,
     ARGS(A(F32, "dout", 1), S(FLOAT, "p"), S(U64, "seed"), S(U64, "site")), OUTS(R_F32),
     USING(USES(dropout_backward)), dropout_check, dropout_backward_run, {0}},
    OP(rng_uniform, "-> the dropout RNG's first n uniforms", 0, ARGS(S(U64, "seed"), S(U64, "site"), S(SIZE, "n")),
       OUTS(R_F32), USING({0})),
    OP(attention_forward, "-> (ctx, probs)", 1,
       ARGS(A(F32, "qkv", 3), A(I32, "mask", 2), S(INT, "NH"), S(FLOAT, "p"), S(U64, "seed"), S(U64, "site")),
       OUTS(R_F32, R_F32), USING(USES(attention_forward))),
    OP(attention_backward, "-> dqkv", 1,
       ARGS(A(F32, "dctx", 3), A(F32, "qkv", 3), A(F32, "probs", 4), A(I32, "mask", 2), S(INT, "NH"),
            S(FLOAT, "p"), S(U64, "seed"), S(U64, "site")),
       OUTS(R_F32), USING(USES(attention_backward))),
    OP(attention_rows_forward,
       "-> (ctx, probs): attention for some query rows (q [M, D], kv [B, T, 2D] or a fused qkv [B, T, 3D]; bias "
       "[1 or B, NH, T, T] or None)", 1,
       ARGS(A(F32, "q", 2), A(F32, "kv", 3), A(I32, "mask", 2), A(F32_OPT, "bias", 4), A(I32, "qstart", 1),
            A(I32, "qpos", 1), S(INT, "NH"), S(FLOAT, "scale"), S(BOOL, "query_mask"), S(FLOAT, "p"), S(U64, "seed"),
            S(U64, "site")),
       OUTS(R_F32, R_F32), USING(USES(attention_rows_forward))),
    OP(attention_rows_backward, "-> (dq, dkv, dscores)", 1,
       ARGS(A(F32, "dctx", 2), A(F32, "q", 2), A(F32, "kv", 3), A(F32, "probs", 1), A(I32, "mask", 2),
            A(I32, "qstart", 1), A(I32, "qpos", 1), S(INT, "NH"), S(FLOAT, "scale"), S(BOOL, "query_mask"),
            S(FLOAT, "p"), S(U64, "seed"), S(U64, "site")),
       OUTS(R_F32, R_F32, R_F32), USING(USES(attention_rows_backward))),
    OP(dropout_rows, "-> dropout (or its backward) of rows `rows` of a tensor held compactly", 1,
       ARGS(A(F32, "x", 2), A(I32, "rows", 1), S(FLOAT, "p"), S(U64, "seed"), S(U64, "site"), S(BOOL, "backward")),
       OUTS(R_F32), USING(USES(dropout_rows_forward), USES(dropout_rows_backward))),
    OP(vexp, "-> the CPU backend's vectorised exp", 0, ARGS(A(F32, "x", 1)), OUTS(R_F32), USING({0})),
    OP(verf, "-> the CPU backend's vectorised erf", 0, ARGS(A(F32, "x", 1)), OUTS(R_F32), USING({0})),
    {"ops_rope_forward", "-> qkv with q and k rotated", 1,
     ARGS(A(F32_INOUT, "qkv", 3), A(F32, "cos", 2), A(F32, "sin", 2), S(INT, "NH")), OUTS(R_ARG(0)),
     USING(USES(rope_forward)), rope_check, rope_forward_run, {0}},
    {"ops_rope_backward", "-> dqkv with dq and dk rotated back", 1,
     ARGS(A(F32_INOUT, "dqkv", 3), A(F32, "cos", 2), A(F32, "sin", 2), S(INT, "NH")), OUTS(R_ARG(0)),
     USING(USES(rope_backward)), rope_check, rope_backward_run, {0}},
    OP(rope_tables, "-> (cos, sin): the ModernBERT encoder's rotary tables (host only)", 0,
       ARGS(S(INT, "T"), S(INT, "HS"), S(FLOAT, "theta")), OUTS(R_F32, R_F32), USING({0})),
    OP(glu_forward, "-> act(a) * g", 1, ARGS(A(F32, "inp", 2), S(INT, "act")), OUTS(R_F32), USING(USES(glu_forward))),
    OP(glu_backward, "-> (dinp, the forward's output)", 1, ARGS(A(F32, "inp", 2), A(F32, "dout", 2), S(INT, "act")),
       OUTS(R_F32, R_F32), USING(USES(glu_backward))),
    OP(window_attention_forward, "-> (ctx, stats)", 1,
       ARGS(A(F32, "qkv", 3), A(I32, "mask", 2), S(INT, "NH"), S(INT, "window"), S(FLOAT, "p"), S(U64, "seed"),
            S(U64, "site")),
       OUTS(R_F32, R_F32), USING(USES(window_attention_forward), USES(window_attention_scratch_floats))),
    OP(window_attention_backward, "-> dqkv", 1,
       ARGS(A(F32, "dctx", 3), A(F32, "qkv", 3), A(F32, "stats", 4), A(I32, "mask", 2), S(INT, "NH"),
            S(INT, "window"), S(FLOAT, "p"), S(U64, "seed"), S(U64, "site")),
       OUTS(R_F32), USING(USES(window_attention_backward), USES(window_attention_scratch_floats))),
    OP(attention_bias_forward, "-> (ctx, probs) (bias [1 or B, NH, T, T] or None)", 1,
       ARGS(A(F32, "qkv", 3), A(I32, "mask", 2), A(F32_OPT, "bias", 4), S(INT, "NH"), S(FLOAT, "scale"),
            S(BOOL, "query_mask"), S(FLOAT, "p"), S(U64, "seed"), S(U64, "site")),
       OUTS(R_F32, R_F32), USING(USES(attention_bias_forward))),
    OP(attention_bias_backward, "-> (dqkv, dscores)", 1,
       ARGS(A(F32, "dctx", 3), A(F32, "qkv", 3), A(F32, "probs", 4), A(I32, "mask", 2), S(INT, "NH"),
            S(FLOAT, "scale"), S(BOOL, "query_mask"), S(FLOAT, "p"), S(U64, "seed"), S(U64, "site")),
       OUTS(R_F32, R_F32), USING(USES(attention_bias_backward))),
    OP(relbias_forward, "-> bias [NH, T, T]", 1, ARGS(A(F32, "table", 2), A(I32, "buckets", 1)), OUTS(R_F32),
       USING(USES(relbias_forward))),
    OP(relbias_backward, "-> dtable [NB, NH]", 1, ARGS(A(F32, "dbias", 4), A(I32, "buckets", 1), S(INT, "NB")),
       OUTS(R_F32), USING(USES(relbias_backward))),
    {"ops_mask_rows_forward", "-> x with rows of mask 0 zeroed", 1, ARGS(A(F32_INOUT, "x", 2), A(I32, "mask", 1)),
     OUTS(R_ARG(0)), USING(USES(mask_rows_forward)), mask_rows_check, mask_rows_forward_run, {0}},
    {"ops_mask_rows_backward", "-> dx: dout with rows of mask 0 zeroed", 1,
     ARGS(A(F32_INOUT, "dout", 2), A(I32, "mask", 1)), OUTS(R_ARG(0)), USING(USES(mask_rows_backward)),
     mask_rows_check, mask_rows_backward_run, {0}},
    OP(conv1d_forward, "-> out (bias may be None)", 1,
       ARGS(A(F32, "inp", 3), A(F32, "w", 3), A(F32_OPT, "bias", 1), S(INT, "G")), OUTS(R_F32),
       USING(USES(conv1d_forward))),
    OP(conv1d_backward, "-> (dinp, dw, dbias)", 1, ARGS(A(F32, "dout", 3), A(F32, "inp", 3), A(F32, "w", 3), S(INT, "G")),
       OUTS(R_F32, R_F32, R_F32), USING(USES(conv1d_backward))),
    OP(disentangled_forward, "-> bias [B, NH, T, T] (posk / posq None: no c2p / p2c term)", 1,
       ARGS(A(F32, "qkv", 3), A(F32_OPT, "posk", 2), A(F32_OPT, "posq", 2), A(I32, "idx", 1), S(INT, "NH"),
            S(FLOAT, "scale")),
       OUTS(R_F32), USING(USES(disentangled_forward), USES(disentangled_scratch_floats))),
    OP(disentangled_backward, "-> (dqkv, dposk | None, dposq | None)", 1,
       ARGS(A(F32, "dbias", 4), A(F32, "qkv", 3), A(F32_OPT, "posk", 2), A(F32_OPT, "posq", 2), A(I32, "idx", 1),
            S(INT, "NH"), S(FLOAT, "scale")),
       OUTS(R_F32, R_F32, R_F32), USING(USES(disentangled_backward), USES(disentangled_scratch_floats))),
    OP(pool_forward, "-> out", 1, ARGS(A(F32, "h", 3), A(F32, "w", 3)), OUTS(R_F32), USING(USES(pool_forward))),
    OP(pool_backward, "-> dh", 1, ARGS(A(F32, "dout", 3), A(F32, "w", 3)), OUTS(R_F32), USING(USES(pool_backward))),
    OP(concat_forward, "-> out", 1, ARGS(A(F32_LIST, "parts", 2)), OUTS(R_F32), USING(USES(concat_forward))),
    OP(concat_backward, "-> dpart", 1, ARGS(A(F32, "dout", 2), S(INT, "col"), S(INT, "width")), OUTS(R_F32),
       USING(USES(concat_backward))),
    OP(combine_forward, "-> (out, alpha) (scores None: the mean)", 1, ARGS(A(F32, "x", 3), A(F32_OPT, "scores", 2)),
       OUTS(R_F32, R_F32), USING(USES(combine_forward))),
    OP(combine_backward, "-> (dx, dscores | None)", 1,
       ARGS(A(F32, "dout", 2), A(F32, "x", 3), A(F32, "alpha", 2), S(BOOL, "with_scores")), OUTS(R_F32, R_F32),
       USING(USES(combine_backward))),
    OP(cross_entropy, "-> (loss, probs, dlogits)", 1, ARGS(A(F32, "logits", 2), A(I32, "targets", 1)),
       OUTS(R_LOSS, R_F32, R_F32), USING(USES(cross_entropy_forward), USES(cross_entropy_backward))),
    OP(mse, "-> (loss, dpred)", 1, ARGS(A(F32, "pred", 2), A(F32, "target", 2)), OUTS(R_LOSS, R_F32),
       USING(USES(mse_forward), USES(mse_backward))),
    {"ops_crf", "-> (loss, demissions, dtrans, dstart, dend)", 1,
     ARGS(A(F32, "emissions", 3), A(I32, "tags", 2), A(I32, "lengths", 1), A(F32, "trans", 2), A(F32, "start", 1),
          A(F32, "end", 1)),
     OUTS(R_LOSS, R_F32, R_F32, R_F32, R_F32), USING(USES(crf_forward), USES(crf_backward)), crf_loss_check,
     crf_loss_run, {0}},
    OP(crf_viterbi, "-> path (int32, -1 past each length)", 1,
       ARGS(A(F32, "emissions", 3), A(I32, "lengths", 1), A(F32, "trans", 2), A(F32, "start", 1), A(F32, "end", 1)),
       OUTS(R_I32), USING(USES(crf_viterbi))),
    {"ops_sum_squares", "-> sum of squares (double accumulation)", 1, ARGS(A(F32, "x", 1)), OUTS(R_RET),
     USING(USES(sum_squares)), no_check, sum_squares_run, {0}},
    {"ops_scale", "-> x * factor", 1, ARGS(A(F32_INOUT, "x", 1), S(FLOAT, "factor")), OUTS(R_ARG(0)),
     USING(USES(scale)), no_check, scale_run, {0}},
    {"ops_sum_squares_rows", "-> sum of squares of those rows", 1, ARGS(A(F32, "x", 2), A(I32, "rows", 1)),
     OUTS(R_RET), USING(USES(sum_squares_rows)), sum_squares_rows_check, sum_squares_rows_run, {0}},
#define GEMM_ARGS                                                                                             \
    ARGS(A(F32, "A", 2), A(F32, "B", 2), A(F32_INOUT, "C", 2), S(BOOL, "ta"), S(BOOL, "tb"), S(INT, "M"),         \
         S(INT, "N"), S(INT, "K"), S(FLOAT, "alpha"), S(FLOAT, "beta"), S(INT, "threads"), S(INT, "repeat"))
    {"ops_gemm_bf16", "-> (C updated, seconds): me_gemm_bf16 (AVX512-BF16 CPUs)", 0, GEMM_ARGS, OUTS(R_ARG(2), R_RET),
     USING({0}), gemm_bf16_check, gemm_bf16_run, {0}},
    {"ops_gemm_fp32", "-> (C updated, seconds): the fp32 table's sgemm", 0, GEMM_ARGS, OUTS(R_ARG(2), R_RET),
     USING({0}), gemm_check, gemm_fp32_run, {0}},
    OP(adamw, "-> (p, m, v, g) after one AdamW step on g * grad_scale (g left zeroed)", 1,
       ARGS(A(F32_INOUT, "p", 1), A(F32_INOUT, "g", 1), A(F32_INOUT, "m", 1), A(F32_INOUT, "v", 1), S(DOUBLE, "lr"),
            S(DOUBLE, "beta1"), S(DOUBLE, "beta2"), S(DOUBLE, "eps"), S(DOUBLE, "weight_decay"), S(INT, "step"),
            S(FLOAT, "grad_scale")),
       OUTS(R_ARG(0), R_ARG(2), R_ARG(3), R_ARG(1)), USING(USES(adamw_update))),
};

/* cpu_level(cap=-1) -> the vector code level CPU kernels use (2 AVX-512, 1 AVX2, 0 baseline); a cap >= 0
 * limits it from now on (tests compare the variants). Not an op: no arrays, no device. */
static PyObject *cpu_level(PyObject *self, PyObject *args) {
    int cap = -1;
    if (!PyArg_ParseTuple(args, "|i", &cap)) return NULL;
    return PyLong_FromLong(cap >= 0 ? me_cpu_set_level(cap) : me_cpu_level());
}

/* cpu_has_bf16() -> me_cpu_has_bf16() of this extension's copy of the engine, the one cpu_level caps
 * (multienc.engine._C has its own). */
static PyObject *cpu_has_bf16(PyObject *self, PyObject *noargs) { return PyBool_FromLong(me_cpu_has_bf16()); }

/* fma_peak(threads=0, iterations=20000000) -> GFLOP/s: the cores' float32 multiply-add peak, the
 * yardstick beside benchmarks/bench_encoder.py's sgemm ceiling; bf16_dot_peak(...) the same for
 * AVX512-BF16's vdpbf16ps (two bf16 products added to each float32 lane), the yardstick beside
 * benchmarks/bench_gemm_bf16.py's bf16 kernel. Each of `threads` OpenMP threads (0: as configured)
 * runs `iterations` rounds of 12 independent chains of the instruction (enough to hide the latency
 * of two pipes) on the widest vectors the CPU has (fma_peak: zmm with AVX-512F, else ymm with FMA;
 * bf16_dot_peak: zmm), 2 FLOPs a product; the rate is all threads' FLOPs over the slowest thread's
 * time, the best of 3 runs. x86-64 only; a CPU without the instruction gets a ValueError. */
#if defined(__x86_64__) && defined(__GNUC__)
#define PEAK_ROUND(op, r) op " %%" r "14, %%" r "15, %%" r "0\n\t"                                              \
    op " %%" r "14, %%" r "15, %%" r "1\n\t" op " %%" r "14, %%" r "15, %%" r "2\n\t"                            \
    op " %%" r "14, %%" r "15, %%" r "3\n\t" op " %%" r "14, %%" r "15, %%" r "4\n\t"                            \
    op " %%" r "14, %%" r "15, %%" r "5\n\t" op " %%" r "14, %%" r "15, %%" r "6\n\t"                            \
    op " %%" r "14, %%" r "15, %%" r "7\n\t" op " %%" r "14, %%" r "15, %%" r "8\n\t"                            \
    op " %%" r "14, %%" r "15, %%" r "9\n\t" op " %%" r "14, %%" r "15, %%" r "10\n\t"                           \
    op " %%" r "14, %%" r "15, %%" r "11\n\t"
#define PEAK_LOOP(op, r)                                                                                    \
    __asm__ volatile("vxorps %%xmm14, %%xmm14, %%xmm14\n\t vxorps %%xmm15, %%xmm15, %%xmm15\n\t"            \
                     "1:\n\t" PEAK_ROUND(op, r) "dec %0\n\t jnz 1b\n\t vzeroupper"                           \
                     : "+r"(n)                                                                              \
                     :                                                                                      \
                     : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", \
                       "xmm11", "xmm14", "xmm15", "cc")

enum { PEAK_FMA_YMM, PEAK_FMA_ZMM, PEAK_BF16_ZMM };

static double peak_seconds(long n, int form) {
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (form == PEAK_BF16_ZMM)
        PEAK_LOOP("vdpbf16ps", "zmm");
    else if (form == PEAK_FMA_ZMM)
        PEAK_LOOP("vfmadd231ps", "zmm");
    else
        PEAK_LOOP("vfmadd231ps", "ymm");
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
}
#endif

/* The rate of `name` (fma_peak or bf16_dot_peak): its arguments checked, then the loop above. */
static PyObject *peak_rate(PyObject *args, int bf16, const char *name) {
    int threads = 0;
    long iterations = 20000000;
    if (!PyArg_ParseTuple(args, "|il", &threads, &iterations)) return NULL;
    if (threads < 0 || iterations < 1)
        return PyErr_Format(PyExc_ValueError, "%s: threads must be >= 0 and iterations >= 1, got %d and %ld", name,
                            threads, iterations);
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    if (bf16 && !(__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16")))
        return PyErr_Format(PyExc_ValueError, "%s: this CPU has no AVX512-BF16", name);
    if (!bf16 && !__builtin_cpu_supports("fma")) return PyErr_Format(PyExc_ValueError, "%s: this CPU has no FMA", name);
    const int form = bf16 ? PEAK_BF16_ZMM : __builtin_cpu_supports("avx512f") ? PEAK_FMA_ZMM : PEAK_FMA_YMM;
    const int nt = threads ? threads : omp_get_max_threads();
    /* FLOPs per instruction: 2 per product, a product per float32 lane (two with vdpbf16ps) */
    const double flops = form == PEAK_BF16_ZMM ? 64 : form == PEAK_FMA_ZMM ? 32 : 16;
    double best = 0.0;
    Py_BEGIN_ALLOW_THREADS;
    for (int run = 0; run < 3; run++) {
        double slowest = 0.0;
#pragma omp parallel num_threads(nt) reduction(max : slowest)
        {
#pragma omp barrier
            slowest = peak_seconds(iterations, form);
        }
        const double rate = (double)nt * iterations * 12 * flops / slowest / 1e9;
        if (rate > best) best = rate;
    }
    Py_END_ALLOW_THREADS;
    return PyFloat_FromDouble(best);
#else
    return PyErr_Format(PyExc_ValueError, "%s: x86-64 only", name);
#endif
}

static PyObject *fma_peak(PyObject *self, PyObject *args) { return peak_rate(args, 0, "fma_peak"); }
static PyObject *bf16_dot_peak(PyObject *self, PyObject *args) { return peak_rate(args, 1, "bf16_dot_peak"); }

static PyMethodDef FUNCTIONS[] = {
    {"cpu_level", cpu_level, METH_VARARGS,
     "cpu_level(cap=-1) -> the vector code level in use (2 AVX-512, 1 AVX2, 0 baseline); cap limits it"},
    {"cpu_has_bf16", cpu_has_bf16, METH_NOARGS,
     "cpu_has_bf16() -> whether ops_gemm_bf16 runs: AVX512-BF16 and cpu_level not capped below 2"},
    {"fma_peak", fma_peak, METH_VARARGS,
     "fma_peak(threads=0, iterations=20000000) -> GFLOP/s: the cores' float32 multiply-add peak"},
    {"bf16_dot_peak", bf16_dot_peak, METH_VARARGS,
     "bf16_dot_peak(threads=0, iterations=20000000) -> GFLOP/s: the cores' vdpbf16ps peak (AVX512-BF16)"},
    {NULL, NULL, 0, NULL},
};

int me_register_test_ops(PyObject *module) {
    if (PyModule_AddFunctions(module, FUNCTIONS) < 0) return -1;
    return me_register_ops(module, OPS, (int)(sizeof OPS / sizeof OPS[0]));
}
