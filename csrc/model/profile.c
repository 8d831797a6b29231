#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L /* clock_gettime */
#endif
#include "model/profile.h"

#include <stdatomic.h>
#include <time.h>

const char *const me_phase_names[ME_PHASE_COUNT] = {"matrix products", "attention", "other element-wise",
                                                    "head", "optimizer"};

static atomic_int profile_on;
static atomic_uint_fast64_t phase_ns[ME_PHASE_COUNT];

void me_profile_enable(int on) { atomic_store(&profile_on, on ? 1 : 0); }

void me_profile_read(double seconds[ME_PHASE_COUNT]) {
    for (int i = 0; i < ME_PHASE_COUNT; i++) seconds[i] = atomic_exchange(&phase_ns[i], 0) * 1e-9;
}

uint64_t me_profile_begin(void) {
    if (!atomic_load_explicit(&profile_on, memory_order_relaxed)) return 0;
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec + 1; /* never 0 */
}

void me_profile_end(int phase, uint64_t start) {
    if (!start) return;
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    uint64_t now = (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec + 1;
    atomic_fetch_add_explicit(&phase_ns[phase], now - start, memory_order_relaxed);
}
