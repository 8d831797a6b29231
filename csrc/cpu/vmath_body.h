/* The vectorised erf / exp / tanh kernels of vmath.c, written once over a vector "ISA" that
 * vmath.c defines before each inclusion and this file undefines at its end (no include guard on
 * purpose):
 *   W                      lanes;  VD / VF: W doubles / W floats;  MASK: a lane mask
 *   FN(name)               the name with the variant's suffix;  ATTR: its target attribute
 *   LOADF/STOREF           W floats from / to memory;  F2D / D2F: widen / round to nearest
 *   FMASK: a float lane mask;  FMASK_FIRST(k): the first k lanes;  LOADFM / STOREFM(p, m, v): the
 *                          mask's lanes from / to memory (the others read as 0, and neither touched)
 *   DSET, DADD, DSUB, DMUL, DDIV, DFMA(a, b, c) = a * b + c rounded once, DMIN, DMAX (non-NaN operands)
 *   DABS, DCOPYSIGN(magnitude, sign), DLT / DGE / DNAN (masks), DSEL(mask, then, else)
 *   MASK: a lane mask's type;  MOR(a, b);  MANY(m) / MALL(m): some lane / every lane set
 *   POW2(t)                2^n for t = n + 1.5 * 2^52 (n a small integer held in t's low bits)
 *   FSET, FADD, FSUB, FMUL float arithmetic (each rounded to float, as scalar C)
 * Every variant does the same operations in the same order, so all compute the same bits (the
 * baseline's fma() is exact too; it is slow only on x86 CPUs without FMA, which predate AVX2). */

/* exp(v) for doubles v (results that round to float 0 or inf clamp to them; NaN stays NaN). */
ATTR static inline VD FN(exp_d)(VD v0) {
    VD v = DMIN(DMAX(v0, DSET(-110.0)), DSET(89.0));
    VD t = DFMA(v, DSET(1.4426950408889634), DSET(VM_SHIFT)); /* n = round(v / ln 2) in t's low bits */
    VD n = DSUB(t, DSET(VM_SHIFT));
    VD r = DFMA(n, DSET(-0.6931471805599453), v);             /* r = v - n ln 2, |r| <= ln(2) / 2 */
    r = DFMA(n, DSET(-2.3190468138462996e-17), r);
    VD p = DSET(EXP_P[10]);
    for (int k = 9; k >= 0; k--) p = DFMA(p, r, DSET(EXP_P[k]));
    return DSEL(DNAN(v0), v0, DMUL(p, POW2(t)));
}

/* erf(x) of floats, computed in double (see ERF_P and ERFC_R), rounded to float. WITH_EXP: also
 * *e = exp(-y^2) for y = |x| (computed for every lane, where the erfc branch needs it for some). */
ATTR static inline VF FN(erf_exp_f)(VF xf, VD *e, const int WITH_EXP) {
    VD x = F2D(xf), y = DABS(x), t = DMUL(y, y);
    MASK low = DLT(y, DSET(1.0)), low_or_high = MOR(low, DGE(y, DSET(4.0)));
    if (WITH_EXP) *e = FN(exp_d)(DSUB(DSET(0.0), t));
    VD r = DSET(1.0); /* y >= 4 */
    if (MANY(low)) { /* each branch only where a lane needs it (lanes are independent: same bits) */
        VD p = DSET(ERF_P[9]);
        for (int k = 8; k >= 0; k--) p = DFMA(p, t, DSET(ERF_P[k]));
        r = DSEL(low, DMUL(p, y), r); /* 0 <= y < 1: erf(y) = y P(y^2) */
    }
    if (!MALL(low_or_high)) { /* 1 <= y < 4 and NaN */
        VD u = DMUL(DSUB(y, DSET(2.5)), DSET(2.0 / 3.0));
        VD q = DSET(ERFC_R[16]);
        for (int k = 15; k >= 0; k--) q = DFMA(q, u, DSET(ERFC_R[k]));
        q = DSUB(DSET(1.0), DMUL(WITH_EXP ? *e : FN(exp_d)(DSUB(DSET(0.0), t)), q)); /* 1 - exp(-y^2) R */
        r = DSEL(low_or_high, r, q);
    }
    return D2F(DCOPYSIGN(r, x));
}

ATTR static inline VF FN(erf_f)(VF xf) { return FN(erf_exp_f)(xf, NULL, 0); }

/* tanh(x) of floats in double: x (1 - x^2/3 + 2x^4/15 - 17x^6/315) below 1/64, else
 * (e - 1) / (e + 1) with e = exp(2x); rounded to float. */
ATTR static inline VF FN(tanh_f)(VF xf) {
    VD x = F2D(xf), x2 = DMUL(x, x);
    VD s = DFMA(x2, DSET(-17.0 / 315.0), DSET(2.0 / 15.0));
    s = DFMA(s, x2, DSET(-1.0 / 3.0));
    s = DMUL(x, DFMA(s, x2, DSET(1.0)));
    VD e = FN(exp_d)(DADD(x, x));
    VD l = DDIV(DSUB(e, DSET(1.0)), DADD(e, DSET(1.0)));
    return D2F(DSEL(DLT(DABS(x), DSET(1.0 / 64.0)), s, l));
}

ATTR static inline VF FN(exp_f)(VF x) { return D2F(FN(exp_d)(F2D(x))); }

/* The ops' loops: W elements at a time, then the last n % W through masked loads and stores (the
 * lanes are independent: the same bits). The bodies read and write with LD and ST. */
#define VM_LOOP(i, n, VECTOR_BODY)                                                      \
    size_t i = 0;                                                                       \
    {                                                                                   \
        const int vm_part = 0;                                                          \
        const FMASK vm_m = FMASK_FIRST(W);                                              \
        for (; i + W <= (n); i += W) VECTOR_BODY;                                       \
    }                                                                                   \
    if (i < (n)) {                                                                      \
        const int vm_part = 1;                                                          \
        const FMASK vm_m = FMASK_FIRST((int)((n) - i));                                 \
        VECTOR_BODY;                                                                    \
    }
#define LD(p) (vm_part ? LOADFM((p), vm_m) : LOADF(p))
#define ST(p, v)                          \
    do {                                  \
        if (vm_part)                      \
            STOREFM((p), vm_m, (v));      \
        else                              \
            STOREF((p), (v));             \
    } while (0)

/* out = GELU(inp) and dact = GELU'(inp), either NULL when not wanted; each may be inp. */
ATTR static void FN(gelu_forward)(float *out, float *dact, const float *inp, size_t n, int tanh_form) {
    if (tanh_form) {
        VM_LOOP(i, n, {
            VF x = LD(inp + i);
            VF t = FN(tanh_f)(FMUL(FSET(VM_GELU_K), FADD(x, FMUL(FMUL(FMUL(FSET(0.044715f), x), x), x))));
            if (dact) {
                VF dt = FMUL(FMUL(FSUB(FSET(1.0f), FMUL(t, t)), FSET(VM_GELU_K)),
                             FADD(FSET(1.0f), FMUL(FMUL(FSET(3.0f * 0.044715f), x), x)));
                ST(dact + i, FADD(FMUL(FSET(0.5f), FADD(FSET(1.0f), t)), FMUL(FMUL(FSET(0.5f), x), dt)));
            }
            if (out) ST(out + i, FMUL(FMUL(FSET(0.5f), x), FADD(FSET(1.0f), t)));
        });
    } else {
        VM_LOOP(i, n, {
            VF x = LD(inp + i);
            VD g; /* with dact: exp(-y^2) = exp(-x^2 / 2) for y = x / sqrt 2, erf's and the density's */
            VF e = dact ? FN(erf_exp_f)(FMUL(x, FSET(VM_SQRT1_2)), &g, 1) : FN(erf_f)(FMUL(x, FSET(VM_SQRT1_2)));
            if (dact) {
                VF cdf = FMUL(FSET(0.5f), FADD(FSET(1.0f), e));
                VF pdf = FMUL(FSET(VM_INV_SQRT_2PI), D2F(g));
                ST(dact + i, FADD(cdf, FMUL(x, pdf)));
            }
            if (out) ST(out + i, FMUL(FMUL(x, FSET(0.5f)), FADD(FSET(1.0f), e)));
        });
    }
}

ATTR static void FN(exp)(float *out, const float *inp, size_t n) {
    VM_LOOP(i, n, ST(out + i, FN(exp_f)(LD(inp + i))));
}

ATTR static void FN(erf)(float *out, const float *inp, size_t n) {
    VM_LOOP(i, n, ST(out + i, FN(erf_f)(LD(inp + i))));
}

#undef VM_LOOP
#undef LD
#undef ST
/* the ISA of this inclusion: the next one defines its own */
#undef W
#undef VD
#undef VF
#undef FN
#undef ATTR
#undef LOADF
#undef STOREF
#undef FMASK
#undef FMASK_FIRST
#undef LOADFM
#undef STOREFM
#undef F2D
#undef D2F
#undef DSET
#undef DADD
#undef DSUB
#undef DMUL
#undef DFMA
#undef DDIV
#undef DMIN
#undef DMAX
#undef DABS
#undef DCOPYSIGN
#undef DLT
#undef DGE
#undef DNAN
#undef DSEL
#undef MASK
#undef MOR
#undef MANY
#undef MALL
#undef POW2
#undef FSET
#undef FADD
#undef FSUB
#undef FMUL
