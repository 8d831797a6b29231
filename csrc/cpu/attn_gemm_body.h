/* The attention's small matrix products (attn_gemm.c), written once over a vector "ISA" that
 * attn_gemm.c defines before each inclusion and this file undefines at its end (no include guard
 * on purpose):
 *   W          lanes;  VF: W floats;  FN(name): the name with the variant's suffix;  ATTR: its target
 *   VZERO()    W zeros;  VSET1(x): x in every lane;  VLOAD / VSTORE: W floats from / to memory
 *   VFMA(a, b, c) = a * b + c rounded once;  VMUL, VADD: each rounded, as scalar C
 *   MASKT: a lane mask;  VMASK_FROM(s): lanes s .. W - 1;  VLOADM / VSTOREM(p, m, v): the
 *              mask's lanes from / to memory (the others read as 0, and neither touched)
 * Every output element is the same sequence of operations whatever W is (a running fused
 * multiply-add over k = 0 .. K-1 from 0, times alpha, then plus C when accumulating), so every
 * variant computes the same bits. */

/* C[r, v W + l] for r < R, v < NV, l < W: the tile at A's and C's first row and B's and C's first
 * column (see attn_gemm). SHIFTED: the last vector's columns start sh (0 < sh < W) columns
 * earlier, overlapping the one before, and only its lanes of m (its last W - sh) are stored: a
 * partial last vector read with whole loads that stay inside B's rows (a masked load in the k loop
 * would keep GCC from holding the accumulators in registers). MASKED_B: B's last vector read through
 * m as well, for a row narrower than one vector (NV 1), where no whole load stays inside the row;
 * tile_any's nv 0 selects it. */
ATTR static inline __attribute__((always_inline)) void FN(tile)(const int R, const int NV, const int SHIFTED,
                                                                const int MASKED_B, int sh, MASKT m, int K, float alpha,
                                                                const float *A, int ars, int aks, const float *B,
                                                                int ldb, float *C, int ldc, int accumulate) {
    const int last = (NV - 1) * W - (SHIFTED ? sh : 0); /* the last vector's first column */
    VF acc[6][4];
    for (int r = 0; r < R; r++)
        for (int v = 0; v < NV; v++) acc[r][v] = VZERO();
    for (int k = 0; k < K; k++) {
        const float *b = B + (size_t)k * ldb;
        VF bv[4];
        for (int v = 0; v < NV - 1; v++) bv[v] = VLOAD(b + v * W);
        bv[NV - 1] = MASKED_B ? VLOADM(b + last, m) : VLOAD(b + last);
        for (int r = 0; r < R; r++) {
            const VF a = VSET1(A[(size_t)r * ars + (size_t)k * aks]);
            for (int v = 0; v < NV; v++) acc[r][v] = VFMA(a, bv[v], acc[r][v]);
        }
    }
    const VF al = VSET1(alpha);
    for (int r = 0; r < R; r++) {
        float *c = C + (size_t)r * ldc;
        for (int v = 0; v < NV - SHIFTED; v++) {
            const VF x = VMUL(acc[r][v], al);
            VSTORE(c + v * W, accumulate ? VADD(VLOAD(c + v * W), x) : x);
        }
        if (SHIFTED) {
            const VF x = VMUL(acc[r][NV - 1], al);
            VSTOREM(c + last, m, accumulate ? VADD(VLOADM(c + last, m), x) : x);
        }
    }
}

/* The tile of R rows and NV vectors, the last one shifted or not: R, NV and SHIFTED constants in
 * each case (the accumulators stay in registers) */
#define ATTN_TILE_NV(R, NV)                                                                               \
    (sh ? FN(tile)(R, NV, 1, 0, sh, m, K, alpha, A, ars, aks, B, ldb, C, ldc, accumulate)                 \
        : FN(tile)(R, NV, 0, 0, sh, m, K, alpha, A, ars, aks, B, ldb, C, ldc, accumulate))
/* fewer columns than lanes: the row's one vector shifted, B read through the mask too */
#define ATTN_TILE_NARROW(R) FN(tile)(R, 1, 1, 1, sh, m, K, alpha, A, ars, aks, B, ldb, C, ldc, accumulate)
#define ATTN_TILE_R(R)                                          \
    case R:                                                     \
        switch (nv) {                                           \
        case 0: ATTN_TILE_NARROW(R); break;                     \
        case 1: ATTN_TILE_NV(R, 1); break;                      \
        case 2: ATTN_TILE_NV(R, 2); break;                      \
        case 3: ATTN_TILE_NV(R, 3); break;                      \
        default: ATTN_TILE_NV(R, 4); break;                     \
        }                                                       \
        break

ATTR static void FN(tile_any)(int rows, int nv, int sh, MASKT m, int K, float alpha, const float *A, int ars,
                              int aks, const float *B, int ldb, float *C, int ldc, int accumulate) {
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
#undef ATTN_TILE_NARROW

ATTR static void FN(attn_gemm)(int M, int N, int K, float alpha, const float *A, int ars, int aks, const float *B,
                               int ldb, float *C, int ldc, int accumulate) {
    const int full = N / (4 * W) * (4 * W), rest = N - full; /* columns after the tiles of 4 vectors */
    const int nv = (rest + W - 1) / W, sh = nv * W - rest;     /* their vectors; the last one's shift */
    const MASKT m = VMASK_FROM(sh);                              /* its lanes from sh on */
    const int vec = N >= W; /* a shifted last vector needs a whole vector's columns in the row */
    for (int i0 = 0; i0 < M; i0 += 6) {
        const int rows = M - i0 < 6 ? M - i0 : 6;
        const float *Ai = A + (size_t)i0 * ars;
        float *Ci = C + (size_t)i0 * ldc;
        for (int j0 = 0; j0 < full; j0 += 4 * W)
            FN(tile_any)(rows, 4, 0, m, K, alpha, Ai, ars, aks, B + j0, ldb, Ci + j0, ldc, accumulate);
        if (nv && vec)
            FN(tile_any)(rows, nv, sh, m, K, alpha, Ai, ars, aks, B + full, ldb, Ci + full, ldc, accumulate);
        if (!vec && N > 0) /* fewer columns than lanes: one vector per row, B read and C written masked */
            FN(tile_any)(rows, 0, sh, m, K, alpha, Ai, ars, aks, B, ldb, Ci, ldc, accumulate);
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
#undef MASKT
#undef VMASK_FROM
#undef VLOADM
#undef VSTOREM
