#include "model/params.h"

#include <stdio.h>
#include <stdlib.h>

size_t me_params_add(MeParamList *pl, const char *name, int64_t d0, int64_t d1, int pad) {
    return me_params_add3(pl, name, d0, d1, 0, pad);
}

size_t me_params_add3(MeParamList *pl, const char *name, int64_t d0, int64_t d1, int64_t d2, int pad) {
    if (pl->failed) return 0;
    if (pl->n == pl->cap) {
        int cap = pl->cap ? pl->cap * 2 : 32;
        MeParamInfo *p = realloc(pl->info, sizeof(MeParamInfo) * cap);
        if (!p) {
            pl->failed = 1;
            return 0;
        }
        pl->info = p;
        pl->cap = cap;
    }
    MeParamInfo *pi = &pl->info[pl->n++];
    snprintf(pi->name, sizeof pi->name, "%s", name);
    pi->ndim = d1 <= 0 ? 1 : d2 <= 0 ? 2 : 3;
    pi->shape[0] = d0;
    pi->shape[1] = d1 > 0 ? d1 : 0;
    pi->shape[2] = d1 > 0 && d2 > 0 ? d2 : 0;
    pi->numel = (size_t)d0 * (size_t)(d1 > 0 ? d1 : 1) * (size_t)(d1 > 0 && d2 > 0 ? d2 : 1);
    pi->offset = pl->nfloats;
    pl->nfloats += pad ? (pi->numel + 15) / 16 * 16 : pi->numel;
    return pi->offset;
}
