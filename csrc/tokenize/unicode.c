/* Canonical / compatibility decomposition and canonical composition of code points: generated
 * tables plus the Hangul algorithm. */
#include "tokenize/unicode.h"

#if ME_UDECOMP_MAX > ME_NFD_MAX || ME_UKDECOMP_MAX > ME_NFKD_MAX
#error "ME_NFD_MAX is smaller than the longest generated decomposition"
#endif

/* Unicode 3.12 "Conjoining Jamo Behavior". */
enum { S_BASE = 0xAC00, L_BASE = 0x1100, V_BASE = 0x1161, T_BASE = 0x11A7,
       L_COUNT = 19, V_COUNT = 21, T_COUNT = 28, N_COUNT = V_COUNT * T_COUNT, S_COUNT = L_COUNT * N_COUNT };

static int decompose(uint32_t cp, uint32_t *out, const uint8_t *s1, const uint16_t *s2, const uint32_t *data) {
    if (cp >= S_BASE && cp < S_BASE + S_COUNT) {
        uint32_t s = cp - S_BASE;
        out[0] = L_BASE + s / N_COUNT;
        out[1] = V_BASE + (s % N_COUNT) / T_COUNT;
        if (s % T_COUNT == 0) return 2;
        out[2] = T_BASE + s % T_COUNT;
        return 3;
    }
    if (cp >= ME_UNICODE_END) { out[0] = cp; return 1; }
    unsigned idx = s2[((size_t)s1[cp >> 8] << 8) | (cp & 255u)];
    if (!idx) { out[0] = cp; return 1; }
    int n = (int)data[idx];
    for (int i = 0; i < n; i++) out[i] = data[idx + 1 + i];
    return n;
}

int me_unfd_char(uint32_t cp, uint32_t *out) {
    return decompose(cp, out, me_udecomp_stage1, me_udecomp_stage2, me_udecomp_data);
}

int me_unfkd_char(uint32_t cp, uint32_t *out) {
    return decompose(cp, out, me_ukdecomp_stage1, me_ukdecomp_stage2, me_ukdecomp_data);
}

/* unicode-normalization's compose(): Hangul L+V and LV+T, then the table of primary composites. */
uint32_t me_ucompose(uint32_t a, uint32_t b) {
    if (a >= L_BASE && a < L_BASE + L_COUNT && b >= V_BASE && b < V_BASE + V_COUNT)
        return S_BASE + (a - L_BASE) * N_COUNT + (b - V_BASE) * T_COUNT;
    if (a >= S_BASE && a < S_BASE + S_COUNT && (a - S_BASE) % T_COUNT == 0 && b > T_BASE && b < T_BASE + T_COUNT)
        return a + (b - T_BASE);
    if (a >= ME_UNICODE_END || b >= ME_UNICODE_END) return 0;
    uint64_t key = ((uint64_t)a << 21) | b;
    size_t lo = 0, hi = ME_UCOMP_COUNT;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (me_ucomp_keys[mid] < key) lo = mid + 1;
        else hi = mid;
    }
    return lo < ME_UCOMP_COUNT && me_ucomp_keys[lo] == key ? me_ucomp_vals[lo] : 0;
}
