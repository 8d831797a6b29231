/* Hash maps for vocabularies, merges and the BPE word cache. */
#include "tokenize/strmap.h"

#include <stdlib.h>
#include <string.h>

#include "common.h"

static uint64_t hash_bytes(const char *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325ull ^ (uint64_t)n;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        h = (h ^ w) * 0x100000001b3ull;
        h ^= h >> 29;
    }
    for (; i < n; i++) h = (h ^ (unsigned char)p[i]) * 0x100000001b3ull;
    h ^= h >> 32;
    h *= 0x9e3779b97f4a7c15ull;
    h ^= h >> 29;
    return h ? h : 1;
}

static int strmap_grow(me_strmap *m) {
    size_t ncap = m->cap ? m->cap * 2 : 64;
    me_strmap_slot *ns = calloc(ncap, sizeof *ns);
    if (!ns) return ME_ERR_NOMEM;
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->slots[i].hash) continue;
        size_t j = m->slots[i].hash & (ncap - 1);
        while (ns[j].hash) j = (j + 1) & (ncap - 1);
        ns[j] = m->slots[i];
    }
    free(m->slots);
    m->slots = ns;
    m->cap = ncap;
    return ME_OK;
}

int me_strmap_put(me_strmap *m, const char *key, size_t len, int32_t value) {
    if (len > UINT32_MAX) return ME_ERR_NOMEM;
    if ((m->count + 1) * 2 > m->cap) {
        int st = strmap_grow(m);
        if (st) return st;
    }
    uint64_t h = hash_bytes(key, len);
    size_t j = h & (m->cap - 1);
    while (m->slots[j].hash) {
        me_strmap_slot *s = &m->slots[j];
        if (s->hash == h && s->len == len && memcmp(m->arena + s->off, key, len) == 0) {
            s->value = value;
            return ME_OK;
        }
        j = (j + 1) & (m->cap - 1);
    }
    if (m->arena_len + len > m->arena_cap) {
        size_t ncap = m->arena_cap ? m->arena_cap : 256;
        while (ncap < m->arena_len + len) ncap *= 2;
        char *na = realloc(m->arena, ncap);
        if (!na) return ME_ERR_NOMEM;
        m->arena = na;
        m->arena_cap = ncap;
    }
    if (len) memcpy(m->arena + m->arena_len, key, len);
    m->slots[j].hash = h;
    m->slots[j].off = m->arena_len;
    m->slots[j].len = (uint32_t)len;
    m->slots[j].value = value;
    m->arena_len += len;
    m->count++;
    if (len > m->max_key_len) m->max_key_len = len;
    return ME_OK;
}

int32_t me_strmap_get(const me_strmap *m, const char *key, size_t len) {
    if (!m->cap) return -1;
    uint64_t h = hash_bytes(key, len);
    size_t j = h & (m->cap - 1);
    while (m->slots[j].hash) {
        const me_strmap_slot *s = &m->slots[j];
        if (s->hash == h && s->len == len && memcmp(m->arena + s->off, key, len) == 0) return s->value;
        j = (j + 1) & (m->cap - 1);
    }
    return -1;
}

void me_strmap_clear(me_strmap *m) {
    if (m->slots) memset(m->slots, 0, m->cap * sizeof *m->slots);
    m->count = 0;
    m->arena_len = 0;
    m->max_key_len = 0;
}

void me_strmap_free(me_strmap *m) {
    free(m->slots);
    free(m->arena);
    memset(m, 0, sizeof *m);
}

static size_t pair_slot(uint64_t key, size_t cap) {
    uint64_t h = key * 0x9e3779b97f4a7c15ull;
    return (size_t)(h ^ (h >> 32)) & (cap - 1);
}

int me_pairmap_put(me_pairmap *m, uint64_t key, int32_t a, int32_t b) {
    if ((m->count + 1) * 2 > m->cap) {
        size_t ncap = m->cap ? m->cap * 2 : 64;
        me_pairmap_slot *ns = malloc(ncap * sizeof *ns);
        if (!ns) return ME_ERR_NOMEM;
        for (size_t i = 0; i < ncap; i++) ns[i].key = UINT64_MAX;
        for (size_t i = 0; i < m->cap; i++) {
            if (m->slots[i].key == UINT64_MAX) continue;
            size_t j = pair_slot(m->slots[i].key, ncap);
            while (ns[j].key != UINT64_MAX) j = (j + 1) & (ncap - 1);
            ns[j] = m->slots[i];
        }
        free(m->slots);
        m->slots = ns;
        m->cap = ncap;
    }
    size_t j = pair_slot(key, m->cap);
    while (m->slots[j].key != UINT64_MAX && m->slots[j].key != key) j = (j + 1) & (m->cap - 1);
    if (m->slots[j].key == UINT64_MAX) m->count++;
    m->slots[j].key = key;
    m->slots[j].a = a;
    m->slots[j].b = b;
    return ME_OK;
}

const me_pairmap_slot *me_pairmap_get(const me_pairmap *m, uint64_t key) {
    if (!m->cap) return NULL;
    size_t j = pair_slot(key, m->cap);
    while (m->slots[j].key != UINT64_MAX) {
        if (m->slots[j].key == key) return &m->slots[j];
        j = (j + 1) & (m->cap - 1);
    }
    return NULL;
}

void me_pairmap_free(me_pairmap *m) {
    free(m->slots);
    memset(m, 0, sizeof *m);
}
