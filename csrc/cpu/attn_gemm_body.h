/* The attention's small matrix products (attn_gemm.c), written once over a vector "ISA" that
 * attn_gemm.c defines before each inclusion and this file undefines at its end (no include guard
 * on purpose):
 *   W          lanes;  VF: W floats;  FN(name): the name with the variant's suffix;  ATTR: its target
 *   VZERO()    W zeros;  VSET1(x): x in every lane;  VLOAD / VSTORE: W floats from / to memory
 *   VFMA(a, b, c) = a * b + c rounded once;  VMUL, VADD: each rounded, as scalar C
 * Every output element is the same sequence of operations whatever W is (a running fused
 * multiply-add over k = 0 .. K-1 from 0, times alpha, then plus C when accumulating), so every
 * variant computes the same bits. */

/* C[r, v W + l] for r < R, v < NV, l < W: the tile at A's and C's first row and B's and C's first
 * column (see attn_gemm) */
ATTR static inline __attribute__((always_inline)) void FN(tile)(const int R, const int NV, int K, float alpha,
                                                                const float *A, int ars, int aks, const float *B,
                                                                int ldb, float *C, int ldc, int accumulate) {
    VF acc[6][4];
    for (int r = 0; r < R; r++)
        for (int v = 0; v < NV; v++) acc[r][v] = VZERO();
    for (int k = 0; k < K; k++) {
        const float *b = B + (size_t)k * ldb;
        VF bv[4];
        for (int v = 0; v < NV; v++) bv[v] = VLOAD(b + v * W);
        for (int r = 0; r < R; r++) {
            const VF a = VSET1(A[(size_t)r * ars + (size_t)k * aks]);
            for (int v = 0; v < NV; v++) acc[r][v] = VFMA(a, bv[v], acc[r][v]);
        }
    }
    const VF al = VSET1(alpha);
    for (int r = 0; r < R; r++)
        for (int v = 0; v < NV; v++) {
            float *c = C + (size_t)r * ldc + v * W;
            const VF x = VMUL(acc[r][v], al);
            VSTORE(c, accumulate ? VADD(VLOAD(c), x) : x);
        }
}

/* The tile of R rows and NV vectors, R and NV constants in each case (the accumulators stay in
 * registers) */
#define ATTN_TILE_NV(R, NV) FN(tile)(R, NV, K, alpha, A, ars, aks, B, ldb, C, ldc, accumulate)
#define ATTN_TILE_R(R)                                          \
    case R:                                                     \
        switch (nv) {                                           \
        case 1: ATTN_TILE_NV(R, 1); break;                      \
        case 2: ATTN_TILE_NV(R, 2); break;                      \
        case 3: ATTN_TILE_NV(R, 3); break;                      \
        default: ATTN_TILE_NV(R, 4); break;                     \
        }                                                       \
        break

ATTR static void FN(tile_any)(int rows, int nv, int K, float alpha, const float *A, int ars, int aks,
                              const float *B, int ldb, float *C, int ldc, int accumulate) {
    switch (rows) {
        ATTN_TILE_R(1);
        ATTN_TILE_R(2);
        ATTN_TILE_R(3);
        ATTN_TILE_R(4);
        ATTN_TILE_R(5);
        ATTN_TILE_R(6);
    }
}
#undef ATTN_TILE_R
#undef ATTN_TILE_NV

ATTR static void FN(attn_gemm)(int M, int N, int K, float alpha, const float *A, int ars, int aks, const float *B,
                               int ldb, float *C, int ldc, int accumulate) {
    for (int i0 = 0; i0 < M; i0 += 6) {
        const int rows = M - i0 < 6 ? M - i0 : 6;
        const float *Ai = A + (size_t)i0 * ars;
        float *Ci = C + (size_t)i0 * ldc;
        int j0 = 0;
        for (; j0 + 4 * W <= N; j0 += 4 * W) FN(tile_any)(rows, 4, K, alpha, Ai, ars, aks, B + j0, ldb, Ci + j0, ldc,
                                                          accumulate);
        const int nv = (N - j0) / W;
        if (nv) {
            FN(tile_any)(rows, nv, K, alpha, Ai, ars, aks, B + j0, ldb, Ci + j0, ldc, accumulate);
            j0 += nv * W;
        }
        for (; j0 < N; j0++) /* the last N % W columns, one lane at a time: the same operations */
            for (int r = 0; r < rows; r++) {
                float acc = 0.0f;
                for (int k = 0; k < K; k++) acc = fmaf(Ai[(size_t)r * ars + (size_t)k * aks], B[(size_t)k * ldb + j0], acc);
                float *c = Ci + (size_t)r * ldc + j0;
                *c = accumulate ? *c + acc * alpha : acc * alpha;
            }
    }
}

/* the ISA of this inclusion: the next one defines its own */
#undef W
#undef VF
#undef FN
#undef ATTR
#undef VZERO
#undef VSET1
#undef VLOAD
#undef VSTORE
#undef VFMA
#undef VMUL
#undef VADD
