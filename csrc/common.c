#include "common.h"

#include <omp.h>
#include <stdarg.h>
#include <stdio.h>

int me_error(char *err, int status, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, ME_ERRLEN, fmt, ap);
        va_end(ap);
    }
    return status;
}

int me_max_threads(void) { return omp_get_max_threads(); }
