/* Op timing by phase for benchmarks (off by default): the model code wraps its
 * backend calls in ME_TIMED(phase, call), which costs one relaxed atomic load
 * when profiling is off. Times are wall-clock nanoseconds summed over calls (and
 * over LMs that run at the same time), read and reset by me_profile_read. A device
 * backend whose ops return before they finish is timed as it queues them. */
#ifndef MULTIENC_PROFILE_H
#define MULTIENC_PROFILE_H

#include <stdint.h>

typedef enum {
    ME_PHASE_GEMM = 0,        /* matrix products of the encoders */
    ME_PHASE_ATTENTION = 1,   /* scores, softmax, dropout and context products */
    ME_PHASE_ELEMENTWISE = 2, /* embeddings, LayerNorm, GELU, dropout, residual adds, copies */
    ME_PHASE_HEAD = 3,        /* pooling, combination, decoder, losses (forward and backward) */
    ME_PHASE_OPTIMIZER = 4,   /* gradient norm, clipping, AdamW, gradient zeroing */
    ME_PHASE_COUNT = 5
} MePhase;

/* Names of the phases, in MePhase order. */
extern const char *const me_phase_names[ME_PHASE_COUNT];

void me_profile_enable(int on);
/* Seconds per phase since the last read (or since profiling was enabled); resets them. */
void me_profile_read(double seconds[ME_PHASE_COUNT]);
/* A start time when profiling is on, else 0. */
uint64_t me_profile_begin(void);
/* Add the time since `start` to `phase` (nothing when start is 0). */
void me_profile_end(int phase, uint64_t start);

#define ME_TIMED(phase, ...)                           \
    do {                                               \
        uint64_t me_t0_ = me_profile_begin();          \
        __VA_ARGS__;                                   \
        me_profile_end((phase), me_t0_);               \
    } while (0)

#endif
