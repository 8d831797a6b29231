/* Canonical decomposition of one code point: generated table plus the Hangul algorithm. */
#include "tokenize/unicode.h"

#if ME_UDECOMP_MAX > ME_NFD_MAX
#error "ME_NFD_MAX is smaller than the longest generated decomposition"
#endif

/* Unicode 3.12 "Conjoining Jamo Behavior". */
enum { S_BASE = 0xAC00, L_BASE = 0x1100, V_BASE = 0x1161, T_BASE = 0x11A7,
       L_COUNT = 19, V_COUNT = 21, T_COUNT = 28, N_COUNT = V_COUNT * T_COUNT, S_COUNT = L_COUNT * N_COUNT };

int me_unfd_char(uint32_t cp, uint32_t *out) {
    if (cp >= S_BASE && cp < S_BASE + S_COUNT) {
        uint32_t s = cp - S_BASE;
        out[0] = L_BASE + s / N_COUNT;
        out[1] = V_BASE + (s % N_COUNT) / T_COUNT;
        if (s % T_COUNT == 0) return 2;
        out[2] = T_BASE + s % T_COUNT;
        return 3;
    }
    if (cp >= ME_UNICODE_END) { out[0] = cp; return 1; }
    unsigned idx = me_udecomp_stage2[((size_t)me_udecomp_stage1[cp >> 8] << 8) | (cp & 255u)];
    if (!idx) { out[0] = cp; return 1; }
    int n = (int)me_udecomp_data[idx];
    for (int i = 0; i < n; i++) out[i] = me_udecomp_data[idx + 1 + i];
    return n;
}
