/* CUDA backend: device selection and set-up, memory, the error status and
 * the MeBackend table. The ops themselves are in ops.cu, attention.cu and train_ops.cu. */
#include <atomic>
#include <mutex>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common.h"
#include "cuda/cuda_backend.h"
#include "cuda/cuda_common.cuh"

MeCudaState me_cu = {-1, nullptr, nullptr};

/* ------------------------------------------------------------------ errors */

/* common.c's me_error lives in multienc.engine._C, which this module does not link. */
static int fail(char *err, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(char *err, int status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, ME_ERRLEN, fmt, ap);
    va_end(ap);
    return status;
}

static std::atomic<int> g_status{ME_OK};
static char g_message[ME_ERRLEN];

void me_cu_fail(int status, const char *what, const char *detail) {
    int expected = ME_OK;
    if (g_status.compare_exchange_strong(expected, -1)) { /* -1: message being written */
        snprintf(g_message, sizeof g_message, "CUDA backend: %s failed: %s", what, detail);
        g_status.store(status);
    }
}

/* Synchronise the stream (asynchronous kernel faults surface here), then
 * report and clear the first recorded failure. A fault that leaves the
 * context unusable makes every later call fail again, so it is re-reported. */
static int cuda_status(char *err) {
    me_cu_use_device();
    me_cu_check(cudaStreamSynchronize(me_cu.stream), "synchronize");
    int st = g_status.load();
    if (st == ME_OK || st == -1) return ME_OK;
    fail(err, st, "%s", g_message);
    g_status.store(ME_OK);
    return st;
}

void me_cu_use_device(void) {
    static thread_local int current = -1;
    if (current != me_cu.device && !me_cu_check(cudaSetDevice(me_cu.device), "cudaSetDevice"))
        current = me_cu.device;
}

/* ------------------------------------------------------------------ memory */

static void *cuda_alloc(size_t bytes) {
    me_cu_use_device();
    void *p = nullptr;
    if (bytes == 0) bytes = 256;
    const cudaError_t e = cudaMalloc(&p, bytes);
    if (e != cudaSuccess) {
        /* out of memory is reported by the NULL alone; anything else (a device fault earlier, which
         * fails every later call) is recorded too, so that status() names it */
        if (e == cudaErrorMemoryAllocation)
            cudaGetLastError();
        else
            me_cu_check(e, "cudaMalloc");
        return nullptr;
    }
    if (me_cu_check(cudaMemsetAsync(p, 0, bytes, me_cu.stream), "alloc (zero fill)")) {
        cudaFree(p);
        return nullptr;
    }
    return p;
}

static void cuda_release(void *p) {
    if (!p) return;
    me_cu_use_device();
    me_cu_check(cudaFree(p), "cudaFree");
}

static void cuda_zero(void *p, size_t bytes) {
    if (!bytes) return;
    me_cu_use_device();
    me_cu_check(cudaMemsetAsync(p, 0, bytes, me_cu.stream), "zero");
}

/* From pageable host memory the copy returns once the source has been read,
 * so the caller may reuse it at once. */
static void cuda_to_device(void *dst, const void *host_src, size_t bytes) {
    if (!bytes) return;
    me_cu_use_device();
    me_cu_check(cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyHostToDevice, me_cu.stream),
                "copy to device");
}

static void cuda_to_host(void *host_dst, const void *src, size_t bytes) {
    if (!bytes) return;
    me_cu_use_device();
    if (!me_cu_check(cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, me_cu.stream),
                     "copy to host"))
        me_cu_check(cudaStreamSynchronize(me_cu.stream), "copy to host");
}

/* ---------------------------------------------------------------- backend */

static const MeBackend CUDA_BACKEND = {
    .name = "cuda",
    .precision = "fp32",
    .alloc = cuda_alloc,
    .release = cuda_release,
    .zero = cuda_zero,
    .to_device = cuda_to_device,
    .to_host = cuda_to_host,
    .embedding_forward = me_cu_embedding_forward,
    .embedding_backward = me_cu_embedding_backward,
    .layernorm_forward = me_cu_layernorm_forward,
    .layernorm_backward = me_cu_layernorm_backward,
    .matmul_forward = me_cu_matmul_forward,
    .matmul_backward = me_cu_matmul_backward,
    .gelu_forward = me_cu_gelu_forward,
    .gelu_backward = me_cu_gelu_backward,
    .add_forward = me_cu_add_forward,
    .add_backward = me_cu_add_backward,
    .dropout_forward = me_cu_dropout_forward,
    .dropout_backward = me_cu_dropout_backward,
    .attention_forward = me_cu_attention_forward,
    .attention_backward = me_cu_attention_backward,
    .attention_scratch_floats = me_cu_attention_scratch_floats,
    .pool_forward = me_cu_pool_forward,
    .pool_backward = me_cu_pool_backward,
    .concat_forward = me_cu_concat_forward,
    .concat_backward = me_cu_concat_backward,
    .combine_forward = me_cu_combine_forward,
    .combine_backward = me_cu_combine_backward,
    .cross_entropy_forward = me_cu_cross_entropy_forward,
    .cross_entropy_backward = me_cu_cross_entropy_backward,
    .mse_forward = me_cu_mse_forward,
    .mse_backward = me_cu_mse_backward,
    .crf_forward = me_cu_crf_forward,
    .crf_backward = me_cu_crf_backward,
    .crf_viterbi = me_cu_crf_viterbi,
    .sum_squares = me_cu_sum_squares,
    .sum_squares_rows = me_cu_sum_squares_rows,
    .scale = me_cu_scale,
    .adamw_update = me_cu_adamw_update,
    .status = cuda_status,
};

/* Launched by nobody: cudaFuncGetAttributes on it tells whether this build
 * carries code the device can run (an sm_80/sm_90 binary or PTX it can JIT). */
__global__ void me_cu_probe_kernel(void) {}

int me_cuda_device_count(void) {
    int n = 0, usable = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    for (int d = 0; d < n; d++) {
        int major = 0;
        if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, d) == cudaSuccess &&
            major >= 8)
            usable++;
    }
    cudaGetLastError();
    return usable;
}

static int setup(int device, char *err) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        const char *why = e == cudaErrorInsufficientDriver
                              ? "no NVIDIA driver was found, or it is older than the CUDA runtime "
                                "multienc was built with"
                          : e != cudaSuccess ? cudaGetErrorString(e)
                                             : "no device is visible";
        cudaGetLastError();
        return fail(err, ME_ERR_RUNTIME, "no CUDA GPU is available (%s)", why);
    }
    if (device < 0 || device >= n)
        return fail(err, ME_ERR_VALUE, "cuda:%d does not exist: %d CUDA device%s visible",
                        device, n, n == 1 ? " is" : "s are");
    cudaDeviceProp prop;
    if ((e = cudaGetDeviceProperties(&prop, device)) != cudaSuccess)
        return fail(err, ME_ERR_RUNTIME, "cuda:%d: %s", device, cudaGetErrorString(e));
    if (prop.major < 8)
        return fail(err, ME_ERR_RUNTIME,
                        "cuda:%d (%s) has compute capability %d.%d; multienc's CUDA kernels need "
                        "8.0 (Ampere) or newer",
                        device, prop.name, prop.major, prop.minor);
    if ((e = cudaSetDevice(device)) != cudaSuccess)
        return fail(err, ME_ERR_RUNTIME, "cuda:%d: %s", device, cudaGetErrorString(e));
    cudaFuncAttributes attr;
    if ((e = cudaFuncGetAttributes(&attr, me_cu_probe_kernel)) != cudaSuccess) {
        cudaGetLastError();
        return fail(err, ME_ERR_RUNTIME,
                        "cuda:%d (%s, compute capability %d.%d) cannot run this build's kernels "
                        "(%s); rebuild multienc with a CUDA toolkit that supports it",
                        device, prop.name, prop.major, prop.minor, cudaGetErrorString(e));
    }
    if ((e = cudaStreamCreateWithFlags(&me_cu.stream, cudaStreamNonBlocking)) != cudaSuccess)
        return fail(err, ME_ERR_RUNTIME, "cuda:%d: creating a stream: %s", device,
                        cudaGetErrorString(e));
    cublasStatus_t s = cublasCreate(&me_cu.blas);
    if (s == CUBLAS_STATUS_SUCCESS) s = cublasSetStream(me_cu.blas, me_cu.stream);
    /* fp32 products stay fp32 (no TF32), as the CPU backend computes them */
    if (s == CUBLAS_STATUS_SUCCESS) s = cublasSetMathMode(me_cu.blas, CUBLAS_DEFAULT_MATH);
    if (s != CUBLAS_STATUS_SUCCESS) {
        if (me_cu.blas) cublasDestroy(me_cu.blas);
        me_cu.blas = nullptr;
        cudaStreamDestroy(me_cu.stream);
        me_cu.stream = nullptr;
        return fail(err, ME_ERR_RUNTIME, "cuda:%d: cuBLAS initialisation failed: %s", device,
                        cublasGetStatusString(s));
    }
    me_cu.device = device;
    return ME_OK;
}

const MeBackend *me_cuda_op_table(void) { return &CUDA_BACKEND; }

void *me_cuda_stream(void) {
    if (me_cu.device < 0) return nullptr;
    me_cu_use_device();
    return (void *)me_cu.stream;
}

const MeBackend *me_cuda_backend(int device, char *err) {
    static std::mutex lock;
    std::lock_guard<std::mutex> guard(lock);
    if (me_cu.device < 0 && setup(device, err) != ME_OK) return nullptr;
    if (device != me_cu.device) {
        fail(err, ME_ERR_VALUE,
                 "multienc uses one CUDA device per process: cuda:%d is in use, cuda:%d was asked "
                 "for (choose the GPU with CUDA_VISIBLE_DEVICES)",
                 me_cu.device, device);
        return nullptr;
    }
    return &CUDA_BACKEND;
}

int me_cuda_mem_info(size_t *free_bytes, size_t *total_bytes) {
    if (me_cu.device < 0) return -1;
    me_cu_use_device();
    if (cudaMemGetInfo(free_bytes, total_bytes) != cudaSuccess) {
        cudaGetLastError();
        return -1;
    }
    return 0;
}
