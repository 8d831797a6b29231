/* libFuzzer target for the one file format C parses itself: the SentencePiece precompiled charsmap
 * of a Precompiled normalizer (csrc/tokenize/normalizers.c, me_charsmap_parse), then the lookups
 * and the normalization of a text through it (me_charsmap_lookup, me_norm_apply).
 *
 * Input: a little-endian uint16 n, then n bytes of charsmap blob, then the text as little-endian
 * uint16 code units (each taken as a code point; surrogates become U+FFFD) and as raw bytes for
 * the lookups. Built by `make fuzz-c` with clang -fsanitize=fuzzer,address,undefined; an error
 * return is fine, a crash or sanitizer report is a finding. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "tokenize/normalizers.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    size_t n = (size_t)data[0] | (size_t)data[1] << 8;
    data += 2;
    size -= 2;
    if (n > size) n = size;
    char err[ME_ERRLEN] = {0};
    me_charsmap *map = NULL;
    if (me_charsmap_parse(data, n, &map, err) != ME_OK) return 0;
    const uint8_t *text = data + n;
    size_t len = size - n;
    unsigned sum = 0;
    for (size_t i = 0; i < len; i++) { /* every suffix as a lookup key; the replacement is read whole */
        const char *rep;
        size_t replen;
        if (me_charsmap_lookup(map, text + i, len - i, &rep, &replen))
            for (size_t k = 0; k < replen; k++) sum += (unsigned char)rep[k];
    }
    volatile unsigned sink = sum; /* keeps the reads */
    (void)sink;
    me_nstr s = {0};
    size_t chars = len / 2;
    if (me_nstr_reserve(&s, chars + 1) == ME_OK) {
        for (size_t i = 0; i < chars; i++) {
            uint32_t c = (uint32_t)text[2 * i] | (uint32_t)text[2 * i + 1] << 8;
            s.c[i] = (c >= 0xD800 && c <= 0xDFFF) ? 0xFFFD : c;
            s.a[i] = (int32_t)i;
            s.b[i] = (int32_t)i + 1;
        }
        s.n = chars;
        me_norm_step step = {.kind = ME_NORM_PRECOMPILED, .map = map};
        me_norm_ws ws = {0};
        me_norm_apply(&step, &s, 0, &ws);
        for (size_t i = 0; i < s.n; i++) /* alignments stay inside the original text */
            if (s.a[i] < 0 || s.b[i] < s.a[i] || (size_t)s.b[i] > chars) abort();
        me_norm_ws_free(&ws);
    }
    me_nstr_free(&s);
    me_charsmap_free(map);
    return 0;
}
