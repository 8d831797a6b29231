/* OpenBLAS from the scipy-openblas32 wheel exports its symbols with a
 * `scipy_` prefix; map the standard CBLAS names used by the CPU backend. */
#ifndef MULTIENC_BLAS_H
#define MULTIENC_BLAS_H
#include <cblas.h>

#define cblas_sgemm scipy_cblas_sgemm
#define cblas_sgemm_batch_strided scipy_cblas_sgemm_batch_strided
#define me_blas_set_threads scipy_openblas_set_num_threads
#define me_blas_get_threads scipy_openblas_get_num_threads
#endif
