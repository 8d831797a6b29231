/* Parameter tables: the name, shape and offset of every tensor in a flat
 * parameter buffer (encoders and task heads share this bookkeeping). */
#ifndef MULTIENC_PARAMS_H
#define MULTIENC_PARAMS_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    char name[96];
    int ndim;
    int64_t shape[3];
    size_t offset, numel; /* in floats, into the parameter buffer */
} MeParamInfo;

typedef struct {
    MeParamInfo *info;
    int n, cap;
    size_t nfloats;
    int failed; /* an allocation failed; the list is unusable */
} MeParamList;

/* Append a tensor of shape (d0) or (d0, d1) (d1 <= 0: 1-D) and return its offset.
 * `pad` rounds the buffer up to 64 bytes after it; without padding consecutive
 * tensors stay contiguous (the fused q/k/v groups rely on that). */
size_t me_params_add(MeParamList *pl, const char *name, int64_t d0, int64_t d1, int pad);
/* The same for a 3-D tensor (d0, d1, d2) (a convolution's weight). */
size_t me_params_add3(MeParamList *pl, const char *name, int64_t d0, int64_t d1, int64_t d2, int pad);

/* Workspace carving: the next `count` floats of `base` (64-byte aligned slices), advancing
 * *off; with base == NULL only *off advances (a first pass that sizes the workspace). */
static inline float *me_carve(float *base, size_t *off, size_t count) {
    float *p = base ? base + *off : NULL;
    *off += (count + 15) / 16 * 16;
    return p;
}

#endif
