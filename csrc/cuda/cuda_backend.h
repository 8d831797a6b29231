/* The CUDA backend's entry points (C linkage). They live in the separately
 * loaded extension multienc.engine._C_cuda, so that `import multienc` never needs the
 * CUDA libraries; multienc.engine._C reaches them through the MeCudaApi table that
 * _C_cuda publishes as a PyCapsule named ME_CUDA_CAPSULE. */
#ifndef MULTIENC_CUDA_BACKEND_H
#define MULTIENC_CUDA_BACKEND_H

#include <stddef.h>

#include "backend.h"

#define ME_CUDA_CAPSULE "multienc.engine._C_cuda.api"
#define ME_CUDA_API_VERSION 3

#ifdef __cplusplus
extern "C" {
#endif

/* The backend bound to CUDA device `device`, or NULL with a message in err
 * (ME_ERRLEN bytes): no driver or GPU, no such device, a GPU older than
 * compute capability 8.0, or a failed set-up. One device per process: a
 * second device number is refused while the first is in use. */
const MeBackend *me_cuda_backend(int device, char *err);

/* Number of visible devices this build can run on (0 without a driver). */
int me_cuda_device_count(void);

/* Free and total memory of the backend's device in bytes; -1 before
 * me_cuda_backend succeeded or on error. */
int me_cuda_mem_info(size_t *free_bytes, size_t *total_bytes);

/* The backend's op table without setting up any device: which ops exist. */
const MeBackend *me_cuda_op_table(void);

/* The stream every op is queued on (a cudaStream_t), after me_cuda_backend made the device
 * current on the calling thread; NULL before me_cuda_backend succeeded. Collective operations
 * (NCCL, multienc.engine._C_nccl) are queued on it, so they run in order with the ops. */
void *me_cuda_stream(void);

typedef struct {
    int version; /* ME_CUDA_API_VERSION */
    const MeBackend *(*backend)(int device, char *err);
    const MeBackend *(*op_table)(void);
    void *(*stream)(void);
} MeCudaApi;

#ifdef __cplusplus
}
#endif

#endif
