/* Open-addressing hash maps used by the tokenizers: byte string -> int32, and uint64 -> two int32. */
#ifndef MULTIENC_TOKENIZE_STRMAP_H
#define MULTIENC_TOKENIZE_STRMAP_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint64_t hash;   /* 0 = empty slot */
    size_t off;      /* key bytes in arena */
    uint32_t len;
    int32_t value;
} me_strmap_slot;

typedef struct {
    me_strmap_slot *slots;
    size_t cap, count; /* cap is a power of two */
    char *arena;
    size_t arena_len, arena_cap;
    size_t max_key_len;
} me_strmap;

/* Insert or overwrite; ME_OK or ME_ERR_NOMEM. */
int me_strmap_put(me_strmap *m, const char *key, size_t len, int32_t value);
/* Value for key, or -1. */
int32_t me_strmap_get(const me_strmap *m, const char *key, size_t len);
void me_strmap_clear(me_strmap *m);
void me_strmap_free(me_strmap *m);

typedef struct {
    uint64_t key; /* UINT64_MAX = empty */
    int32_t a, b;
} me_pairmap_slot;

typedef struct {
    me_pairmap_slot *slots;
    size_t cap, count;
} me_pairmap;

int me_pairmap_put(me_pairmap *m, uint64_t key, int32_t a, int32_t b);
/* Pointer to the slot holding key, or NULL. */
const me_pairmap_slot *me_pairmap_get(const me_pairmap *m, uint64_t key);
void me_pairmap_free(me_pairmap *m);

#endif
