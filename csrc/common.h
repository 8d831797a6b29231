/* Status codes, error messages and small helpers shared by all C code. */
#ifndef MULTIENC_COMMON_H
#define MULTIENC_COMMON_H

#include <stddef.h>
#include <stdint.h>

enum {
    ME_OK = 0,
    ME_ERR_VALUE = 1,   /* bad argument value  -> ValueError */
    ME_ERR_TYPE = 2,    /* bad argument type   -> TypeError */
    ME_ERR_IO = 3,      /* file problem        -> OSError */
    ME_ERR_NOMEM = 4,   /* allocation failed   -> MemoryError */
    ME_ERR_NOTIMPL = 5, /* unsupported         -> NotImplementedError */
    ME_ERR_RUNTIME = 6, /* anything else       -> RuntimeError */
};

#define ME_ERRLEN 512

/* Fill `err` (ME_ERRLEN bytes) printf-style and return `status`. */
int me_error(char *err, int status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Number of threads OpenMP regions will use. */
int me_max_threads(void);

#endif
