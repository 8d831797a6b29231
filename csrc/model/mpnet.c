#include "model/mpnet.h"

#include <math.h>
#include <stdlib.h>

const char *const ME_MPNET_LAYER[16] = {
    "attention.attn.q.weight", "attention.attn.k.weight", "attention.attn.v.weight",
    "attention.attn.q.bias", "attention.attn.k.bias", "attention.attn.v.bias",
    "attention.attn.o.weight", "attention.attn.o.bias", "attention.LayerNorm.weight",
    "attention.LayerNorm.bias", "intermediate.dense.weight", "intermediate.dense.bias",
    "output.dense.weight", "output.dense.bias", "output.LayerNorm.weight", "output.LayerNorm.bias"};

/* transformers' relative_position_bucket(relative_position, num_buckets=32, max_distance=128):
 * n = -relative_position; half the buckets for n < 0; |n| < 8 exact; beyond,
 * 8 + long(log(float(|n|) / 8) / log(128 / 8) * 8) in float32 (torch.log of a float tensor,
 * divided by the Python float math.log(16), times 8, truncated), capped at 15. */
int me_mpnet_bucket(int relative_position) {
    const int half = ME_MPNET_BUCKETS / 2, max_exact = half / 2, max_distance = 128;
    int n = -relative_position;
    int ret = n < 0 ? half : 0;
    n = abs(n);
    if (n < max_exact) return ret + n;
    const float log_ratio = (float)log((double)max_distance / max_exact);
    float x = logf((float)n / (float)max_exact) / log_ratio * (float)(half - max_exact);
    int large = max_exact + (int)x;
    return ret + (large < half - 1 ? large : half - 1);
}

void me_mpnet_buckets(int32_t *out, int T) {
    for (int r = -(T - 1); r <= T - 1; r++) out[r + T - 1] = me_mpnet_bucket(r);
}
